#!/usr/bin/perl

# What "auto" counts as an error: a 5xx answer, or an upstream error even
# when the user got a 200 in the end.  The canary's upstream has a peer
# that refuses connections (max_fails=0, so it keeps being tried) beside
# a live one: proxy_next_upstream answers every request 200 from the live
# peer, half of them after a failed connect.  The rollout is rolled back
# for its error rate; a healthy twin with the same traffic is promoted.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP ();
use Test::More;
use Time::HiRes qw(sleep time);
use CanaryTest;
use CanarySync qw(wait_until);

need_module();

my $r = start_redis();
my $dead = free_port();

my $ng = start_nginx(<<"EOF", vars => { REDIS => $r->port });
canary_zone 1m;
canary_redis 127.0.0.1:%%REDIS%%;

upstream stable_up  { server 127.0.0.1:%%PORT_B%%; }
upstream flaky_up   { server 127.0.0.1:$dead max_fails=0;
                      server 127.0.0.1:%%PORT_B%%; }
upstream healthy_up { server 127.0.0.1:%%PORT_B%%; }

canary_rollout flaky {
    key \$arg_u;
    stable stable_up;
    canary flaky_up;
    auto steps=50,100 interval=1s max_error_rate=5% min_requests=20;
}

canary_rollout healthy {
    key \$arg_u;
    stable stable_up;
    canary healthy_up;
    auto steps=50,100 interval=1s max_error_rate=5% min_requests=20;
}

server {
    listen 127.0.0.1:%%PORT%%;
    location /flaky   { canary flaky;   proxy_pass http://\$canary_upstream; }
    location /healthy { canary healthy; proxy_pass http://\$canary_upstream; }
    location = /canary { canary_status; }
}

server {
    listen 127.0.0.1:%%PORT_B%%;
    location / { return 200 "ok\\n"; }
}
EOF
my $port = $ng->port;

$r->cli('HSET', "canary:rollout:$_", 'state', 'progressing') for qw(flaky healthy);

my ($user, %status) = (0);

sub state_of { scalar $r->cli('HGET', "canary:rollout:$_[0]", 'state') }

my $t = wait_until(sub {
    for my $path (qw(flaky healthy)) {
        $status{$_->[0]}++ for http_client($port)->pipeline(
            map { ["/$path/?u=" . $user++] } 1 .. 50);
    }
    state_of('flaky') eq 'rolled_back' && state_of('healthy') eq 'promoted';
}, 20, 0.05);

ok(defined $t, 'the flaky canary is rolled back and the healthy one promoted')
    or diag 'flaky: ' . state_of('flaky') . ', healthy: ' . state_of('healthy');
is_deeply([keys %status], [200], 'every request was answered 200')
    or diag explain \%status;
like($r->cli('HGET', 'canary:rollout:flaky', 'reason'),
     qr/^error rate \d+\.\d+% above 5\.0000%$/, 'the reason: its error rate');
is($r->cli('HGET', 'canary:rollout:flaky', 'percent'), '0', 'percent 0');

my (undef, undef, $json) = http_get($port, '/canary?format=json');
my ($flaky) = grep { $_->{name} eq 'flaky' } @{ JSON::PP::decode_json($json)->{rollouts} };
cmp_ok($flaky->{variants}{canary}{upstream_errors}, '>', 0,
       'the status counts the canary\'s upstream errors');
is($flaky->{variants}{canary}{responses}{'5xx'}, 0, 'and no 5xx');

done();
