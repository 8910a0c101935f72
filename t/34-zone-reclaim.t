#!/usr/bin/perl

# Reclamation follows the readers, not the clock: a replaced snapshot is
# freed once every worker has passed a quiescent point, and never while a
# worker may still read it.
#
# - A worker stopped in the middle of a decision (gdb holds it at a
#   breakpoint after it loaded the snapshot, percent 0): 60 changes to
#   99.xx% and 100% are published meanwhile and nothing is freed (status says
#   whom the zone waits for); let go, the worker finishes its decision
#   with the snapshot it had (stable), which a debug build would have
#   poisoned had it been freed; then everything is freed.
# - A worker stopped with SIGSTOP holds what was retired after it stopped;
#   SIGKILLed, it holds nothing (the zone finds it gone).
# - Old workers of a reload, once exited, hold nothing.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Socket::INET;
use JSON::PP;
use POSIX qw(WNOHANG);
use Test::More;
use Time::HiRes qw(sleep time);
use CanaryTest;
use CanarySync;

need_module();

my $GDB = `sh -c 'command -v gdb'`;
chomp $GDB;

my $r = start_redis(notify => 'Kh$s');
my $conf = <<'EOF';
canary_zone 1m;
canary_redis %%REDIS%%;

canary_rollout checkout {
    key $http_x_user_id;
    stable s;
    canary c;
    percent 0;
}

server {
    listen 127.0.0.1:%%PORT%%;
    location / {
        canary checkout;
        return 200 "$canary_variant|$canary_bucket|$canary_reason|$pid\n";
    }
    location = /status { canary_status; }
}
EOF
my $ng = start_nginx($conf, workers => 2,
                     vars => { REDIS => '127.0.0.1:' . $r->port });
my $port = $ng->port;
my $prefix = $ng->prefix;

sub status {
    my ($st, undef, $body) = http_get($port, '/status?format=json');
    return $st == 200 ? decode_json($body) : {};
}

sub zone { status()->{zone} // {} }

# writes on one connection (a redis-cli per write is slow on a busy
# machine, and the held request waits for all of them)
sub hset {
    my ($p) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $r->port, Proto => 'tcp')
        || die "redis: $!";
    print $s "*4\r\n\$4\r\nHSET\r\n\$23\r\ncanary:rollout:checkout\r\n"
             . "\$7\r\npercent\r\n\$" . length($p) . "\r\n$p\r\n";
    <$s>;
    close $s;
}

sub churn {
    my ($n) = @_;
    # every value differs from the one before and from 100, the last one:
    # each round that reads one publishes, and so does the last
    for my $i (1 .. $n) {
        hset(sprintf '99.%02d', $i % 100);
        sleep 0.02;
    }
    hset('100');
    return wait_until(sub {
        (status()->{rollouts}[0]{percent} // -1) == 100 }, 5);
}

ok(defined wait_until(sub { status()->{redis}{connected} }, 10), 'synced');

my ($sync) = $ng->error_log =~ /canary sync: worker (\d+) syncs/;
my ($w) = grep { $_ != $sync } $ng->pids;
ok($w, "worker $w reads, worker $sync syncs too");


# a worker stopped in the middle of a decision

SKIP: {
    skip 'no gdb', 9 unless $GDB;
    # a debugger cannot hold a process that runs under valgrind
    skip 'under valgrind', 9 if $ENV{CANARY_VALGRIND_DIR};

    unlink "$prefix/hit", "$prefix/go";
    my $gdb = fork // die "fork: $!";
    if ($gdb == 0) {
        open STDOUT, '>', "$prefix/gdb.log";
        open STDERR, '>&', \*STDOUT;
        exec $GDB, '-q', '-nx', '-batch', '-p', $w,
            '-ex', 'set confirm off',
            '-ex', 'break ngx_http_canary_murmur3_key',
            '-ex', 'continue',
            '-ex', 'bt 3',
            '-ex', "shell touch $prefix/hit",
            '-ex', "shell while [ ! -e $prefix/go ]; do sleep 0.05; done",
            '-ex', 'delete',
            '-ex', 'detach'
            or POSIX::_exit(127);
    }

    ok(defined wait_until(sub {
           CanaryTest::read_file("$prefix/gdb.log") =~ /Breakpoint 1 at/ },
           30), 'gdb attached, a breakpoint after the snapshot is read');

    # requests, each in a child, until one is held in worker $w
    my ($held, $tries) = (undef, 0);
    while (!$held && $tries++ < 50) {
        my $pid = fork // die "fork: $!";
        if ($pid == 0) {
            my $c = CanaryTest::Client->new($port, timeout => 120);
            my ($st, undef, $body) = $c->get('/', 'X-User-Id' => 'u-held',
                                             Connection => 'close');
            CanaryTest::write_file("$prefix/resp.$$", $body // '');
            POSIX::_exit(0);
        }
        my $t0 = time;
        while (time - $t0 < 2) {
            if (-e "$prefix/hit") {
                $held = $pid;
                last;
            }
            last if waitpid($pid, WNOHANG) == $pid;
            sleep 0.01;
        }
    }
    ok($held, "a request is held in worker $w in the middle of its "
              . "decision ($tries tries)");
    like(CanaryTest::read_file("$prefix/gdb.log"),
         qr/ngx_http_canary_(decide_plain|evaluate)/,
         'held inside the decision');

    my $published = log_count($ng, qr/canary sync: rollout "checkout" percent/);
    ok(defined churn(60), '60 changes published while it is held');
    sleep 0.5;
    $published = log_count($ng, qr/canary sync: rollout "checkout" percent/)
                 - $published;
    my $z = zone();
    ok($published >= 5 && $z->{retired} >= $published,
       "nothing freed while it may read: $published snapshots published, "
       . "$z->{retired} retired, $z->{retired_bytes} bytes");
    is($z->{waiting_for}, $w, "status: the zone waits for worker $w");

    CanaryTest::write_file("$prefix/go", '');
    waitpid($gdb, 0);
    waitpid($held, 0);
    my $body = CanaryTest::read_file("$prefix/resp.$held");
    like($body, qr/^stable\|\d+\|percent\|$w$/,
         "the held decision finishes with its own snapshot: $body");

    ok(defined wait_until(sub { zone()->{retired} == 0 }, 3),
       'freed once the worker passed a quiescent point');
    ok(status()->{zone}{freed} >= $published,
       'freed: ' . status()->{zone}{freed});
}


# SIGSTOP, then SIGKILL: a dead reader holds nothing

kill 'STOP', $w;
ok(defined churn(20), 'changes published while a worker is stopped');
sleep 0.4;
my $z = zone();
ok($z->{retired} > 0 && $z->{waiting_for} == $w,
   "retired kept for the stopped worker ($z->{retired})");
expect_log(qr/worker process $w exited on signal 9/);
kill 'KILL', $w;
ok(defined wait_until(sub { zone()->{retired} == 0 }, 5),
   'the killed worker holds nothing: freed');
ok(defined wait_until(sub { $ng->error_log
                            =~ /canary zone: process $w is gone/ }, 2),
   'logged');
ok($ng->wait_workers(10), 'the master started another worker');


# a reload: the old workers exit and hold nothing; every change applies

my %old = map { $_ => 1 } $ng->pids;
ok($ng->reload(vars => { REDIS => '127.0.0.1:' . $r->port }), 'reloaded');
ok(defined churn(20), 'changes after the reload');
ok(defined wait_until(sub { zone()->{retired} == 0 }, 5),
   'all freed after the reload');
ok(!grep({ $old{$_} } $ng->pids), 'old workers gone');

my ($k) = grep { $_->[1] < 10000 } test_keys(10);
my @a = variants($port, [[$k->[0], 0]]);
is($a[0]{variant}, 'canary', 'routing follows the last value');

done();
