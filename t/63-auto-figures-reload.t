#!/usr/bin/perl

# The fleet's figures of an interval in which nginx reloads, or worker 0
# is killed: the node adds every request of that interval once.  Worker 0
# keeps the counters it last flushed in the zone, so the one that follows
# a reload or a crash carries on from them, and a boundary that the old
# worker 0 flushed is not flushed again.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(sleep time);
use CanaryTest;
use CanarySync qw(wait_until);
use CanaryChaos ();

need_module();

my $r = start_redis();
my $interval = 3000;

my $conf = <<'EOF';
canary_zone 1m;
canary_redis 127.0.0.1:%%REDIS%%;

upstream app { server 127.0.0.1:%%PORT_B%%; }

canary_rollout checkout {
    key $arg_u;
    stable app;
    canary app;
    override $http_x_canary;
    auto steps=50,100 interval=3s;
}

server {
    listen 127.0.0.1:%%PORT%%;
    location / { canary checkout; proxy_pass http://$canary_upstream; }
}

server {
    listen 127.0.0.1:%%PORT_B%%;
    location / { return 200 "ok\n"; }
}
EOF

my $ng = start_nginx($conf, vars => { REDIS => $r->port }, workers => 2,
                     allow_log => [qr/exited on signal 9/,
                                   qr/shared memory zone "canary" was locked by/]);
my $port = $ng->port;

sub now_ms { int(time * 1000) }

# n canary requests, all answered 200

sub send_canary {
    my ($n) = @_;
    my @res = http_client($port)->pipeline(
        map { ["/?u=$_", 'X-Canary' => 'always'] } 1 .. $n);
    return scalar grep { $_->[0] == 200 } @res;
}

# waits for the start of an interval, does what $during says inside it
# (with requests before and after), then reads the interval's figures

sub one_interval {
    my ($during) = @_;

    # early in an interval, with time to spare before its end
    my $start;
    wait_until(sub { my $t = now_ms(); $start = $t - $t % $interval;
                     $t - $start > 100 && $t - $start < 400 }, 10, 0.01);

    my $sent = send_canary(30);
    $during->();
    $sent += send_canary(30);
    my $end = now_ms();

    my $key = "canary:rollout:checkout:fig:$start";
    my $got;
    wait_until(sub { $got = $r->cli('HGET', $key, 'c:req');
                     now_ms() > $start + $interval + 1500 }, 10, 0.1);
    return ($sent, $got, $end - $start);
}

# a first interval, so that worker 0 has flushed a boundary

wait_until(sub { $r->cli('KEYS', 'canary:rollout:checkout:fig:*') ne '' }, 10, 0.1);

my ($sent, $got, $took) = one_interval(sub { });
is($got, $sent, "a quiet interval: $sent canary requests in the figures");

($sent, $got, $took) = one_interval(sub {
    my $old = CanaryChaos::sync_worker($ng, $r->port);
    $ng->reload;
    wait_until(sub { my $s = CanaryChaos::sync_worker($ng, $r->port);
                     $s && $s != ($old // 0) }, 2, 0.02);
});
cmp_ok($took, '<', $interval, 'the reload fell inside the interval')
    or diag "took $took ms";
is($got, $sent, "nginx -s reload inside the interval: all $sent requests in the figures");

($sent, $got, $took) = one_interval(sub {
    my $w0 = CanaryChaos::sync_worker($ng, $r->port);
    kill 'KILL', $w0 if $w0;
    $ng->wait_workers(5);
    wait_until(sub { my $s = CanaryChaos::sync_worker($ng, $r->port);
                     $s && $s != ($w0 // 0) }, 2, 0.02);
});
cmp_ok($took, '<', $interval, 'the kill fell inside the interval')
    or diag "took $took ms";
# a worker SIGKILLed between an answer and its log phase has not counted
# that request (see t/71): at most one
ok($got <= $sent && $got >= $sent - 1,
   "worker 0 SIGKILLed inside the interval: $got of $sent requests in the figures");

done();
