#!/usr/bin/perl

# The dark phase of an automatic rollout, across two nginx nodes sharing
# one redis-server, intervals of 1 s:
#
#   - "auto ... shadow=50 shadow_intervals=2": a rollout that starts
#     progressing first runs at percent 0 with shadow 50 in Redis;
#   - a canary that answers 500 only to shadow traffic is rolled back in
#     the dark phase: no user ever gets a canary answer, percent is never
#     above 0 in Redis or on either node, the history and the alert say
#     phase "dark", the decision counts both nodes' figures;
#   - a healthy canary passes 2 dark intervals and goes on to step 1
#     (percent 10, the dark fields removed), both nodes agree;
#   - nginx -t refuses shadow= without a canary_shadow location.
#
# With CANARY_DARK_ARMS=1 (t/65-auto-dark-arms.t) both rollouts have two
# arms (blue, green, 1:1) instead of one canary: the dark phase's shadow
# figures ("d:") then travel beside the arms' own ("arm:<name>:") and are
# read back from the row after the arms', and every check above holds.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP ();
use POSIX ();
use Test::More;
use Time::HiRes qw(sleep time);
use CanaryTest;
use CanarySync qw(wait_until);
use CanaryAuto;

need_module();

my $r = start_redis();
my $rport = $r->port;

my $arms = $ENV{CANARY_DARK_ARMS}
    ? "variant blue  canary_up weight=1;\n    variant green canary_up weight=1;"
    : "canary canary_up;";

sub node_conf {
    my ($id) = @_;
    return <<"EOF";
canary_zone 1m;
canary_redis 127.0.0.1:$rport;
canary_node_id $id;
canary_sync_interval 200ms;

upstream stable_up { server 127.0.0.1:%%PORT_S%%; }
upstream canary_up { server 127.0.0.1:%%PORT_C%%; }

canary_rollout bad {
    key \$arg_u;
    stable stable_up;
    $arms
    auto steps=10,50,100 interval=1s max_error_rate=5% min_requests=10
         shadow=50 shadow_intervals=2;
}

canary_rollout good {
    key \$arg_u;
    stable stable_up;
    $arms
    auto steps=10,50,100 interval=1s max_error_rate=5% min_requests=10
         shadow=50 shadow_intervals=2;
}

server {
    listen 127.0.0.1:%%PORT%%;

    location /bad {
        canary bad;
        canary_shadow /_shadow_bad;
        proxy_pass http://\$canary_upstream;
    }

    location /good {
        canary good;
        canary_shadow /_shadow_good;
        proxy_pass http://\$canary_upstream;
    }

    location /_shadow_bad {
        internal;
        proxy_set_header X-Canary-Shadow \$canary_shadow;
        proxy_pass http://canary_up/bad;
    }

    location /_shadow_good {
        internal;
        proxy_set_header X-Canary-Shadow \$canary_shadow;
        proxy_pass http://canary_up/good;
    }

    location = /canary { canary_status; }
}

server {
    listen 127.0.0.1:%%PORT_S%%;
    location / { return 200 "stable\\n"; }
}

server {
    listen 127.0.0.1:%%PORT_C%%;
    location /bad {
        if (\$http_x_canary_shadow) { return 500 "shadow fails\\n"; }
        return 200 "canary\\n";
    }
    location / { return 200 "canary\\n"; }
}
EOF
}

my $na = start_nginx(node_conf('node-a'));
my $nb = start_nginx(node_conf('node-b'));
my @nodes = ($na, $nb);

my $user = 0;

sub traffic {
    my ($n, $path) = @_;
    my %seen;
    for my $ng (@nodes) {
        my @res = http_client($ng->port)->pipeline(
            map { ["$path?u=" . $user++] } 1 .. $n);
        for (@res) {
            my ($st, undef, $body) = @$_;
            chomp $body;
            $seen{$st == 200 ? $body : $st}++;
        }
    }
    return \%seen;
}

sub status {
    my ($ng, $name) = @_;
    my (undef, undef, $body) = http_get($ng->port, '/canary?format=json');
    my ($ro) = grep { $_->{name} eq $name }
               @{ JSON::PP::decode_json($body)->{rollouts} };
    return $ro;
}

sub history {
    my ($k) = @_;
    return history_of($r, $k);
}

# alerts, through a redis-cli subscriber

my $alerts_file = $r->prefix . '/alerts.txt';
my $sub_pid = fork // die "fork: $!";
if ($sub_pid == 0) {
    open STDOUT, '>', $alerts_file or POSIX::_exit(1);
    open STDERR, '>&', \*STDOUT;
    exec $CanaryTest::REDIS_CLI, '-h', '127.0.0.1', '-p', $rport,
         'SUBSCRIBE', 'canary:alerts'
        or POSIX::_exit(127);
}
END { kill 'TERM', $sub_pid if $sub_pid; }

ok(defined wait_until(sub {
       $r->cli('PUBSUB', 'NUMSUB', 'canary:alerts') =~ /\n1$/ }, 5),
   'alert subscriber is listening');
ok(defined wait_until(sub { $r->cli('GET', 'canary:leader') =~ /^node-/ },
                      10), 'a node holds the lease');


# 1. the shadow fails: rolled back in the dark

{
    my $k = 'canary:rollout:bad';
    $r->cli('HSET', $k, 'state', 'progressing');
    $r->cli('PUBLISH', 'canary:changed', 'bad');

    my ($max_redis, $max_node, $canary_answers, $shadow_seen) = (0, 0, 0, 0);
    my $t0 = time;

    while (time - $t0 < 20 * $CanaryTest::SCALE) {
        my $seen = traffic(40, '/bad');
        $canary_answers += $seen->{canary} // 0;

        my $p = $r->cli('HGET', $k, 'percent');
        $max_redis = $p if $p ne '' && $p > $max_redis;
        $shadow_seen = 1 if $r->cli('HGET', $k, 'shadow') eq '50';

        for my $ng (@nodes) {
            my $ro = status($ng, 'bad');
            $max_node = $ro->{percent} if $ro->{percent} > $max_node;
        }

        last if $r->cli('HGET', $k, 'state') eq 'rolled_back';
        sleep 0.05;
    }

    is($r->cli('HGET', $k, 'state'), 'rolled_back', 'bad: rolled back');
    is($max_redis, 0, 'bad: percent never above 0 in Redis');
    is($max_node, 0, 'bad: percent never above 0 on either node');
    is($canary_answers, 0, 'bad: no user ever got a canary answer');
    is($r->cli('HGET', $k, 'phase'), '', 'bad: the dark fields removed');

    # "hold" entries (too few requests in an interval) on a slow machine
    my @h = grep { $_->{event} !~ /^(?:operator|hold)$/ } history($k);
    is_deeply([map { "$_->{event}/$_->{phase}" } @h],
              ['start/dark', 'rollback/dark'],
              'bad: history start and rollback, both phase dark')
        or diag explain \@h;
    my $rb = $h[-1];
    is($rb->{percent}, '0', 'bad: the rollback left percent 0');
    is($rb->{nodes}, '2', 'bad: the decision summed both nodes\' figures');
    # in the dark phase the canary_* figures are the shadow's
    cmp_ok($rb->{canary_requests}, '>=', 10, 'bad: judged on the shadow\'s '
           . "$rb->{canary_requests} requests");
    is($rb->{canary_errors}, $rb->{canary_requests},
       'bad: all of them errors');
    is($r->cli('HGET', $k, 'c_errors'), $rb->{canary_errors},
       'bad: the hash holds the figures that decided');
    like($rb->{reason}, qr/^dark phase failed, nobody was exposed: shadow /,
         'bad: the reason says the dark phase decided');

    ok(defined wait_until(sub { -s $alerts_file
                                && CanaryTest::read_file($alerts_file)
                                   =~ /"rollout":"bad"/ }, 5),
       'bad: an alert came');
    my ($alert) = grep { /"rollout":"bad"/ }
                  split /\n/, CanaryTest::read_file($alerts_file);
    my $a = JSON::PP::decode_json($alert);
    is_deeply([@$a{qw(event phase percent)}], ['rollback', 'dark', 0],
              'bad: the alert says rollback in phase dark at percent 0');
    ok($a->{shadow} && $a->{shadow}{requests} >= 10,
       'bad: with the shadow\'s figures');

    ok(defined wait_until(sub {
           !grep { status($_, 'bad')->{state} ne 'rolled_back' } @nodes },
                          5),
       'bad: both nodes show rolled_back');
    like($na->error_log, qr/canary auto: .*"bad"/, 'node log names it');
}


# 2. the shadow is healthy: two dark intervals, then step 1

{
    my $k = 'canary:rollout:good';
    $r->cli('HSET', $k, 'state', 'progressing');
    $r->cli('PUBLISH', 'canary:changed', 'good');

    my ($canary_dark, $shadow_seen, $t0) = (0, 0, time);

    while (time - $t0 < 20 * $CanaryTest::SCALE) {
        my $dark = $r->cli('HGET', $k, 'phase') eq 'dark'
                   || $r->cli('HGET', $k, 'step') eq '';
        $shadow_seen = 1 if $r->cli('HGET', $k, 'shadow') eq '50';
        my $seen = traffic(40, '/good');
        $canary_dark += $seen->{canary} // 0
            if $dark && $r->cli('HGET', $k, 'phase') eq 'dark';
        last if ($r->cli('HGET', $k, 'step') || 0) >= 1;
        sleep 0.05;
    }

    is($r->cli('HGET', $k, 'step'), '1', 'good: step 1 after the dark phase');
    is($r->cli('HGET', $k, 'percent'), '10', 'good: percent 10');
    is($r->cli('HGET', $k, 'phase') . $r->cli('HGET', $k, 'shadow'), '',
       'good: phase and shadow removed');
    is($canary_dark, 0, 'good: nobody saw the canary in the dark phase');
    ok($shadow_seen, 'good: shadow 50 was in Redis during the dark phase');

    # up to the first advance: under load the live steps may go on
    my @h;
    for (grep { $_->{event} !~ /^(?:operator|hold)$/ } history($k)) {
        push @h, $_;
        last if $_->{event} eq 'advance';
    }
    is_deeply([map { "$_->{event}/$_->{phase}/$_->{percent}" } @h],
              ['start/dark/0', 'dark_passed/dark/0', 'advance/dark/10'],
              'good: start, one dark interval passed, then step 1')
        or diag explain \@h;
    like($h[-1]{reason}, qr/^dark phase passed 2 of 2: shadow .*; step 1 of 3/,
         'good: the reason');

    ok(defined wait_until(sub {
           my $p = $r->cli('HGET', $k, 'percent');
           $p >= 10 && !grep { status($_, 'good')->{percent} != $p } @nodes
       }, 5),
       'good: both nodes at Redis\' percent, 10 or (a step later) more');
    # the auto block of the status page follows each node's poll (1 s)
    ok(defined wait_until(sub {
           !grep { status($_, 'good')->{auto}{phase} ne 'live' } @nodes },
                          5),
       'good: both nodes show phase live');

    my $share = 0;
    my $s = traffic(200, '/good');
    $share = ($s->{canary} // 0) / 400;
    ok($share > 0.04, "good: users see the canary now ($share of 400)");
}


# 3. nginx -t

{
    my ($rc, $out) = nginx_t(<<"EOF");
canary_zone 1m;
canary_redis 127.0.0.1:$rport;
canary_rollout d {
    key \$arg_u; stable s; canary c;
    auto steps=10,100 interval=1s shadow=5;
}
server {
    listen 127.0.0.1:%%PORT%%;
    location / { canary d; return 200; }
}
EOF
    isnt($rc, 0, 'shadow= without canary_shadow fails nginx -t');
    like($out, qr/"auto ... shadow=" in canary_rollout "d" needs a location/,
         'saying why') or diag $out;
}

done();
