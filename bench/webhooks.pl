#!/usr/bin/perl

# Routing latency with a webhook receiver that is down against one that
# is up, in one run: two nginx nodes (one worker each), each the leader
# of its own Redis, each
# with an automatic rollout that makes a decision every second (a step of
# 1% per 1 s interval, so an event a second for the webhooks), node A's
# webhooks pointing at a port nobody listens on, node B's at a live
# receiver; wrk against A and B in alternating rounds.
#
#   CANARY_MODULE=build/nginx/objs/ngx_http_canary_module.so \
#       perl bench/webhooks.pl [rounds=3] [seconds=3]

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/../t/lib";

use CanaryTest;
use CanarySync qw(wait_until);

my ($rounds, $secs) = (@ARGV, 3, 3)[0, 1];

my @redis = (start_redis(), start_redis());
my $dead = CanaryTest::free_port();

my $recv = start_nginx(<<'EOF');
server {
    listen 127.0.0.1:%%PORT%%;
    access_log off;
    location / { return 200; }
}
EOF

sub node {
    my ($id, $hook, $r) = @_;
    my $rp = $r->port;
    return start_nginx(<<"EOF", workers => 1);
canary_zone 1m;
canary_redis 127.0.0.1:$rp;
canary_node_id $id;
canary_webhook $hook/json format=json;
canary_webhook $hook/slack format=slack;
upstream stable_up { server 127.0.0.1:%%PORT_S%%; keepalive 16; }
upstream canary_up { server 127.0.0.1:%%PORT_S%%; keepalive 16; }
canary_rollout ramp {
    key \$arg_u;
    stable stable_up;
    canary canary_up;
    auto start=1 step=1 max=100 interval=1s min_requests=0;
}
server {
    listen 127.0.0.1:%%PORT%%;
    access_log off;
    location / {
        canary ramp;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_pass http://\$canary_upstream;
    }
}
server {
    listen 127.0.0.1:%%PORT_S%%;
    access_log off;
    location / { return 200 "ok\\n"; }
}
EOF
}

my $na = node('node-dead', "http://127.0.0.1:$dead", $redis[0]);
my $nb = node('node-live', 'http://127.0.0.1:' . $recv->port, $redis[1]);

for my $r (@redis) {
    $r->cli('HSET', 'canary:rollout:ramp', 'state', 'progressing');
    wait_until(sub { ($r->cli('HGET', 'canary:rollout:ramp', 'step') || 0)
                     > 1 }, 10) or die "the ramp does not move\n";
}

sub p99 {
    my ($port) = @_;
    my $out = `wrk -t1 -c8 -d${secs}s --latency 'http://127.0.0.1:$port/?u=1' 2>&1`;
    my ($v, $unit) = $out =~ /^\s+99%\s+([\d.]+)(us|ms|s)$/m
        or die "wrk: $out";
    return $v / 1000 if $unit eq 'us';
    return $v * 1000 if $unit eq 's';
    return $v;
}

my (@dead, @live);
for (1 .. $rounds) {
    push @dead, p99($na->port);
    push @live, p99($nb->port);
}

printf "routing p99, ms, %d rounds of %d s each (wrk -t1 -c8):\n", $rounds,
    $secs;
printf "  receiver down: %s\n", join ' ', map { sprintf '%.2f', $_ } @dead;
printf "  receiver up:   %s\n", join ' ', map { sprintf '%.2f', $_ } @live;
my @s_dead = sort { $a <=> $b } @dead;
my @s_live = sort { $a <=> $b } @live;
printf "  medians: down %.2f, up %.2f, ratio %.2f\n",
    $s_dead[$#s_dead / 2], $s_live[$#s_live / 2],
    $s_dead[$#s_dead / 2] / $s_live[$#s_live / 2];
my $failed = () = $na->error_log =~ /canary webhook: .* failed: /g;
printf "  node A logged %d failed webhook attempts meanwhile\n", $failed;
