#!/usr/bin/perl

# User sets: canary_users / stable_users read with SSCAN when their SCARD
# changes or a push names them; large sets in batches while requests are
# served; a set too large for the zone is refused, the last good one stays.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(sleep time);
use CanaryTest;
use CanarySync;

need_module();

my $key = 'canary:rollout:checkout';
my @keys = test_keys(300);

my $r = start_redis(notify => 'Kh$s');
my $ng = start_nginx(sync_conf(extra => 'canary_sync_interval 200ms;',
                               zone => '32m'),
                     vars => { REDIS => '127.0.0.1:' . $r->port, PCT => 0 });
my $port = $ng->port;

sub reason {
    my ($k) = @_;
    my ($a) = variants($port, [[$k, 0]]);
    return "$a->{variant}/$a->{reason}";
}

$r->cli('SADD', "$key:canary_users", 'alice', 'bob');
$r->cli('SADD', "$key:stable_users", 'carol');
ok(defined wait_until(sub { reason('alice') eq 'canary/canary_users'
                            && reason('carol') eq 'stable/stable_users' },
                      5), 'members from both sets');
is(reason('bob'), 'canary/canary_users', 'bob too');
is(reason('dave'), 'stable/percent', 'others by percent');

# same size, different members: a push names the set
$r->cli('SREM', "$key:canary_users", 'bob');
$r->cli('SADD', "$key:canary_users", 'erin');
ok(defined wait_until(sub { reason('erin') eq 'canary/canary_users'
                            && reason('bob') eq 'stable/percent' }, 5),
   'a change of members at the same size (keyspace notification)');

# emptied
$r->cli('DEL', "$key:stable_users");
ok(defined wait_until(sub { reason('carol') eq 'stable/percent' }, 5),
   'a deleted set is dropped');


# 100,000 members, served meanwhile

# built beside, then swapped in with one RENAME: one change to read

my @batch;
for my $i (1 .. 100_000) {
    push @batch, "m$i";
    if (@batch == 10_000) {
        $r->cli('SADD', 'tmpset', @batch);
        @batch = ();
    }
}
$r->cli('SUNIONSTORE', 'tmpset', 'tmpset', "$key:canary_users");
$r->cli('RENAME', 'tmpset', "$key:canary_users");

my ($n, $bad, $t0) = (0, 0, time);
until (reason('m99999') eq 'canary/canary_users') {
    $n++;
    $bad++ unless reason('alice') eq 'canary/canary_users';
    last if time - $t0 > 20;
}
is(reason('m99999'), 'canary/canary_users', '100,000 members loaded');
ok(!$bad, "requests answered while loading ($n)");
ok(defined wait_until(sub {
       $ng->error_log =~ /canary_users\ now\ has\ 100002\ members
                          \ in\ \d+\ bytes\ of\ the\ zone\ \((\d+)\ SSCAN/x
   }, 10), 'in SSCAN batches');
is(reason('m1'), 'canary/canary_users', 'first member');
is(reason('m100001'), 'stable/percent', 'not a member');


# too large for a 1m zone: refused, the last good set stays

my $r2 = start_redis();
my $ng2 = start_nginx(sync_conf(extra => 'canary_sync_interval 200ms;'),
                      vars => { REDIS => '127.0.0.1:' . $r2->port,
                                PCT => 0 });
$r2->cli('SADD', "$key:canary_users", 'alice');
ok(defined wait_until(sub {
       my ($a) = variants($ng2->port, [['alice', 0]]);
       $a->{reason} eq 'canary_users' }, 5), 'small zone: a small set fits');

my @big;
for my $i (1 .. 60_000) {
    push @big, "member-with-a-long-name-$i";
    if (@big == 10_000) {
        $r2->cli('SADD', "$key:canary_users", @big);
        @big = ();
    }
}
ok(defined wait_until(sub {
       $ng2->error_log =~ /no room in canary_zone for "\Q$key\E:canary_users" \(60001 members\) of rollout "checkout": needs (\d+\.\d) MB, (\d+\.\d) KB free of 1\.0 MB/
   }, 10), 'a set too large for the zone is refused, naming it, its size, '
           . 'what it needs and what is free');
diag($1) if $ng2->error_log =~ /(no room in canary_zone for [^;]*)/;
my ($a) = variants($ng2->port, [['alice', 0]]);
is($a->{reason}, 'canary_users', 'the last good set stays in force');
($a) = variants($ng2->port, [['member-with-a-long-name-60000', 0]]);
is($a->{reason}, 'percent', 'the refused members are not');
my $lines = log_count($ng2, qr/no room in canary_zone/);
sleep 0.6;
is(log_count($ng2, qr/no room in canary_zone/), $lines,
   'refused once, not per round');

done();
