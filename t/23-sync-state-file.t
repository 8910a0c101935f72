#!/usr/bin/perl

# canary_state_file: written atomically after each change by the sync
# worker (running as nobody: the folder is writable by it); nginx
# restarted with Redis down routes by the file; a file that does not
# parse is ignored as a whole, naming the line; Redis overrides the file
# once reachable.

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

my @keys = test_keys(300);
my $key = 'canary:rollout:checkout';

my $dir = tempdir('canary-state-XXXXXX', TMPDIR => 1,
                  CLEANUP => !$ENV{CANARY_KEEP});
chmod 0777, $dir;
my $file = "$dir/canary.state";

my $conf = sync_conf(extra => "canary_sync_interval 200ms;\n"
                              . "canary_state_file %%SF%%;");

my $r = start_redis();
my %vars = (REDIS => '127.0.0.1:' . $r->port . ' timeout=200ms', PCT => 5,
            SF => $file);
my $ng = start_nginx($conf, vars => \%vars);
my $port = $ng->port;

$r->cli('HSET', $key, 'percent', '42.5', 'percent:US', '90',
        'percent:a b%', '1', 'state', 'progressing', 'start', '946684800');
ok(defined wait_until(sub { routes_by($port, 42.5, \@keys) }, 5),
   'percent 42.5 from Redis');
ok(defined wait_until(sub { -s $file }, 5), 'state file written');

my $text = CanaryTest::read_file($file);
my ($run_id) = $r->cli('INFO', 'server') =~ /run_id:([0-9a-f]{40})/;
is($text, "canary_state 2\n"
          . "redis $run_id\n"
          . "rollout checkout 42.50 946684800 0 progressing\n"
          . "segment checkout 90.00 US\n"
          . "segment checkout 1.00 a%20b%25\n"
          . "end\n", 'state file contents');
ok(!-e "$file.tmp", 'no temporary file left');
my @st = stat $file;
is(getpwuid($st[4]), 'nobody', 'written by the worker user')
    if $> == 0;

$ng->stop;


# restart with Redis down: the file's values

$r->stop;
$ng = start_nginx($conf, vars => \%vars);
$port = $ng->port;
ok(routes_by($port, 42.5, \@keys), 'Redis down: routes by the state file');
ok(routes_by($port, 90, \@keys, 'X-Country' => 'US'),
   'segments from the state file');
ok(routes_by($port, 1, \@keys, 'X-Country' => 'a b%'),
   'escaped segment values from the state file');
like($ng->error_log, qr/percent 42\.50 .*from state_file/,
     'logged as coming from the state file');
$ng->stop;


# a config that changed meanwhile: its own percent where the file says
# nothing, and a rollout gone from the config is ignored

open my $fh, '>', $file or die;
print $fh "canary_state 1\nrollout gone 10.00 0 0 -\n"
          . "rollout checkout 7.00 0 0 paused\nend\n";
close $fh;
$ng = start_nginx($conf, vars => \%vars);
ok(routes_by($ng->port, 7, \@keys), 'the file routes a known rollout');
$ng->stop;


# bad files are ignored as a whole

for my $bad (["canary_state 1\nrollout checkout 42.50 0 0 -\n",
              qr/line 2: no "end" line/],
             ["canary_state 3\nend\n", qr/line 1: not "canary_state 1"/],
             ["canary_state 2\nredis 12ab\nend\n", qr/line 2: bad run_id/],
             ["canary_state 1\nrollout checkout 101 0 0 -\nend\n",
              qr/line 2: bad percent/],
             ["canary_state 1\nrollout checkout 42.50 0 0 running\nend\n",
              qr/line 2: bad state/],
             ["canary_state 1\nrollout checkout 42.50 0 0 -\n"
              . "segment checkout 5.00 a b\nend\n", qr/line 3: /],
             ["canary_state 1\nrollout checkout 42.50 0 0 -\n"
              . "segment checkout 5.00 %zz\nend\n",
              qr/line 3: bad segment value/],
             ["canary_state 1\nrollout  checkout 42.50 0 0 -\nend\n",
              qr/line 2: bad spacing/],
             ["canary_state 1\nrollout checkout 42.50 0 0 -\nend\nx\n",
              qr/line 4: text after "end"/],
             ["canary_state 1\nend", qr/line 2: no newline/],
             ["canary_state 1\nrollout checkout 1.00 0 0 -\n"
              . "rollout checkout 2.00 0 0 -\nend\n", qr/line 3: rollout given twice/],
             ["canary_state 1\nwhat checkout\nend\n", qr/line 2: unknown line/])
{
    open my $fh, '>', $file or die;
    print $fh $bad->[0];
    close $fh;

    $ng = start_nginx($conf, vars => \%vars);
    ok(routes_by($ng->port, 5, \@keys), 'bad state file: config percent');
    like($ng->error_log,
         qr/\[error\].*canary: state file "\Q$file\E" $bad->[1].*ignored/,
         "refused: $bad->[1]");
    $ng->stop;
}

# a missing file is not an error
unlink $file;
$ng = start_nginx($conf, vars => \%vars);
ok(routes_by($ng->port, 5, \@keys), 'no state file: config percent');
like($ng->error_log, qr/\[notice\].*no state file/, 'noted');


# Redis back: it overrides the file, and the file follows

$r->start;
$r->cli('HSET', $key, 'percent', '11');
ok(defined wait_until(sub { routes_by($ng->port, 11, \@keys) }, 10),
   'Redis back: its values win');
ok(defined wait_until(sub {
       CanaryTest::read_file($file) =~ /^rollout checkout 11\.00 0 0 -$/m },
       5), 'and the state file follows');
$ng->stop;


# a folder the worker cannot write to: one error line, routing unharmed

SKIP: {
    skip 'needs root to run workers as nobody', 3 unless $> == 0;

    my $ro = tempdir('canary-ro-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    chmod 0755, $ro;
    $ng = start_nginx($conf, vars => { %vars, SF => "$ro/canary.state" });
    $r->cli('HSET', $key, 'percent', '12');
    ok(defined wait_until(sub { routes_by($ng->port, 12, \@keys) }, 10),
       'unwritable state file: routing still follows Redis');
    $r->cli('HSET', $key, 'percent', '13');
    ok(defined wait_until(sub { routes_by($ng->port, 13, \@keys) }, 10),
       'twice');
    is(log_count($ng, qr/cannot write state file.*writable by the worker/),
       1, 'one error line');
}

done();
