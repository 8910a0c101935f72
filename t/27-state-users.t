#!/usr/bin/perl

# User sets across a restart with Redis down: the sync worker writes each
# set it reads into a users file beside canary_state_file (escaped, with
# its count); nginx restarted with Redis down routes the pinned users as
# before; once Redis is back the sets are read again even when their sizes
# did not change; an emptied set empties its file; a users file that does
# not parse is ignored as a whole, naming the line, and the others load.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use File::Temp qw(tempdir);
use Test::More;
use Time::HiRes qw(sleep time);
use CanaryTest;
use CanarySync;

need_module();

my $key = 'canary:rollout:checkout';

my $dir = tempdir('canary-users-XXXXXX', TMPDIR => 1,
                  CLEANUP => !$ENV{CANARY_KEEP});
chmod 0777, $dir;
my $file = "$dir/canary.state";

my $conf = sync_conf(extra => "canary_sync_interval 200ms;\n"
                              . "canary_state_file %%SF%%;");

my $r = start_redis();
my %vars = (REDIS => '127.0.0.1:' . $r->port . ' timeout=200ms', PCT => 0,
            SF => $file);
my $ng = start_nginx($conf, vars => \%vars);

# members as the request's key gives them: plain, with a space and a '%',
# UTF-8; and one with a newline that only the file can show

my @canary = ('u1', 'u2', 'a b%', "\xc3\xa9t\xc3\xa9", map { "c$_" } 1 .. 2000);
my @stable = ('s1', 's2');

$r->cli('HSET', $key, 'percent', '100');
$r->cli('SADD', "$key:canary_users", @canary, "line\nbreak");
$r->cli('SADD', "$key:stable_users", @stable);

sub variant_of {
    my ($port, $user) = @_;
    my ($a) = variants($port, [[$user]]);
    return "$a->{variant} $a->{reason}";
}

ok(defined wait_until(sub { variant_of($ng->port, 's1') eq 'stable stable_users'
                            && variant_of($ng->port, 'c2000') eq 'canary canary_users' }, 10),
   'the sets from Redis are in force');

my ($cfile) = glob "$file.canary_users.*";
my ($sfile) = glob "$file.stable_users.*";
ok($cfile && $sfile, 'a users file per set beside the state file')
    or diag `ls -la $dir`;
ok(!glob("$dir/*.tmp"), 'no temporary file left');

my @lines = split /\n/, CanaryTest::read_file($cfile);
is($lines[0], 'canary_users 1 canary checkout', 'the header names the rollout');
is($lines[-1], 'end ' . (@canary + 1), 'the count at the end');
is_deeply([sort @lines[1 .. $#lines - 1]],
          [sort map { my $m = $_; $m =~ s/([^\x21-\x7e]|%)/sprintf '%%%02X', ord $1/ge; $m }
                @canary, "line\nbreak"],
          'every member once, escaped');
like(CanaryTest::read_file($sfile),
     qr/\Acanary_users 1 stable checkout\n(s1\ns2|s2\ns1)\nend 2\n\z/,
     'the stable users file');
if ($> == 0) {
    is(getpwuid((stat $cfile)[4]), 'nobody', 'written by the worker user');
}

$ng->stop;


# restart with Redis down: the users as before.  Meanwhile Redis gets
# other members of the same sizes, saved so that it comes back with them
# (a Redis that came back empty would get the last good sets written
# back, see t/32-redis-restore.t)

$r->cli('DEL', "$key:canary_users", "$key:stable_users");
$r->cli('HSET', $key, 'percent', '100');
$r->cli('SADD', "$key:canary_users", 'u9', grep { $_ ne 'u1' } @canary,
        "line\nbreak");
$r->cli('SADD', "$key:stable_users", 's2', 's9');
$r->cli('SAVE');
$r->stop;
$ng = start_nginx($conf, vars => \%vars);
my $port = $ng->port;

is(variant_of($port, $_), 'canary canary_users', "Redis down: \"$_\" canary")
    for 'u1', 'a b%', "\xc3\xa9t\xc3\xa9", 'c1999';
is(variant_of($port, 's2'), 'stable stable_users', 'Redis down: s2 stable');
is(variant_of($port, 'nobody'), 'canary percent',
   'the others by the state file\'s 100%');
like($ng->error_log,
     qr/\[notice\].*rollout "checkout" starts with 2005 canary users from "\Q$cfile\E"/,
     'the load is logged');


# Redis back with the same sizes but other members, no push: read again

$r->start;
is($r->cli('SCARD', "$key:canary_users"), @canary + 1, 'as many canary users as before');

ok(defined wait_until(sub { variant_of($port, 'u9') eq 'canary canary_users'
                            && variant_of($port, 's9') eq 'stable stable_users' }, 10),
   'Redis back: the sets are read again though their sizes are the same');
is(variant_of($port, 'u1'), 'canary percent', 'u1 is no longer pinned');
is(variant_of($port, 's1'), 'canary percent', 's1 is no longer pinned');
ok(defined wait_until(sub { CanaryTest::read_file($sfile) =~ /^s9$/m }, 5),
   'the file follows');


# an emptied set empties its file; a restart then has no such users

$r->cli('DEL', "$key:stable_users");
ok(defined wait_until(sub { variant_of($port, 's9') eq 'canary percent' }, 10),
   'the stable set deleted in Redis');
ok(defined wait_until(sub { CanaryTest::read_file($sfile) eq
                            "canary_users 1 stable checkout\nend 0\n" }, 5),
   'its file says so');
$ng->stop;
$r->stop;

$ng = start_nginx($conf, vars => \%vars);
is(variant_of($ng->port, 's9'), 'canary percent', 'no stable users after a restart');
is(variant_of($ng->port, 'u9'), 'canary canary_users', 'the canary users stay');
unlike($ng->error_log, qr/users file.*ignored/, 'no file refused');
$ng->stop;


# a bad file is ignored as a whole; the other set still loads

my $good = CanaryTest::read_file($cfile);

for my $bad (["canary_users 1 stable checkout\ns1\n",
              qr/: no "end" line, the file is truncated/],
             ["canary_users 1 stable checkout\ns1\nend 2\n",
              qr/ line 3: the "end" line's count is not the number of members/],
             ["canary_users 2 stable checkout\ns1\nend 1\n",
              qr/ line 1: not "canary_users 1"/],
             ["canary_users 1 stable other\ns1\nend 1\n",
              qr/ line 1: another rollout's or set's file/],
             ["canary_users 1 canary checkout\ns1\nend 1\n",
              qr/ line 1: another rollout's or set's file/],
             ["canary_users 1 stable checkout\ns1\ns%zz\nend 2\n",
              qr/ line 3: a bad or empty member/],
             ["canary_users 1 stable checkout\ns1\n\nend 2\n",
              qr/ line 3: a bad or empty member/],
             ["canary_users 1 stable checkout\ns 1\nend 1\n",
              qr/ line 2: a bad or empty member/],
             ["end 0\n", qr/ line 1: no "canary_users 1" line/])
{
    CanaryTest::write_file($sfile, $bad->[0]);

    $ng = start_nginx($conf, vars => \%vars);
    is(variant_of($ng->port, 's1'), 'canary percent', 'bad users file: no stable users');
    is(variant_of($ng->port, 'u9'), 'canary canary_users', 'the good one loads');
    like($ng->error_log,
         qr/\[error\].*canary: users file "\Q$sfile\E"$bad->[1], the file is ignored/,
         "refused: $bad->[1]");
    $ng->stop;
}

is(CanaryTest::read_file($cfile), $good, 'the good file is untouched');


# SSCAN may give a member twice, so the file may hold it twice: taken once

CanaryTest::write_file($sfile, "canary_users 1 stable checkout\ns1\ns1\ns2\nend 3\n");
$ng = start_nginx($conf, vars => \%vars);
is(variant_of($ng->port, $_), 'stable stable_users', "a member given twice: $_ stable")
    for 's1', 's2';
like($ng->error_log, qr/starts with 2 stable users/, 'two members');
$ng->stop;


# a set that no longer fits the zone (the zone was made smaller): refused
# with the number of members, the rest of the state loads

CanaryTest::write_file($sfile, "canary_users 1 stable checkout\n"
                               . join('', map { "member-$_\n" } 1 .. 40000)
                               . "end 40000\n");
$ng = start_nginx($conf, vars => \%vars);
is(variant_of($ng->port, 'member-1'), 'canary percent', 'too big: not loaded');
is(variant_of($ng->port, 'u9'), 'canary canary_users', 'the canary users load');
like($ng->error_log,
     qr/\[error\].*users file "\Q$sfile\E": 40000 members do not fit in canary_zone/,
     'refused with the number of members');
$ng->stop;

done();
