#!/usr/bin/perl

# Gates of the automatic rollout ("auto ... approve="), one nginx node and
# a redis-server, intervals of 1 s:
#
#   - a step that needs an approval is not entered: the rollout waits at
#     the step before (state waiting, field gate, a history entry and an
#     alert), and the status page (text, JSON, Prometheus) shows it;
#   - an approval for another step is refused (log line, history entry)
#     and removed; the right one enters the step, and the last gate
#     promotes;
#   - a canary that fails while it waits is rolled back all the same;
#   - approve=all gates the first step too: the rollout waits at 0%.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP ();
use Test::More;
use Time::HiRes qw(sleep time);
use CanaryTest;
use CanarySync qw(wait_until);
use CanaryAuto;

need_module();

my $r = start_redis();
my $rport = $r->port;
my $fail_flag = $r->prefix . '/fail';

my $conf = <<"EOF";
canary_zone 1m;
canary_redis 127.0.0.1:$rport;
canary_node_id node-a;

upstream stable_up { server 127.0.0.1:%%PORT_S%%; }
upstream canary_up { server 127.0.0.1:%%PORT_C%%; }

canary_rollout gated {
    key \$arg_u;
    stable stable_up;
    canary canary_up;
    auto steps=10,50,100 interval=1s max_error_rate=5% min_requests=10
         approve=50,100;
}

canary_rollout gfail {
    key \$arg_u;
    stable stable_up;
    canary canary_up;
    auto steps=10,100 interval=1s max_error_rate=5% min_requests=10
         approve=100;
}

canary_rollout gall {
    key \$arg_u;
    stable stable_up;
    canary canary_up;
    auto steps=10,100 interval=1s max_error_rate=5% min_requests=10
         approve=all;
}

server {
    listen 127.0.0.1:%%PORT%%;
    location /gated { canary gated; proxy_pass http://\$canary_upstream; }
    location /gfail { canary gfail; proxy_pass http://\$canary_upstream; }
    location /gall { canary gall; proxy_pass http://\$canary_upstream; }
    location = /canary { canary_status; }
}

server {
    listen 127.0.0.1:%%PORT_S%%;
    location / { return 200 "stable\\n"; }
}

server {
    listen 127.0.0.1:%%PORT_C%%;
    location / {
        if (-f %%FAIL%%) { return 500 "canary failing\\n"; }
        return 200 "canary\\n";
    }
}
EOF

my $ng = start_nginx($conf, vars => { FAIL => $fail_flag });

my $user = 0;

sub traffic {
    my ($path) = @_;
    http_client($ng->port)->pipeline(map { ["$path?u=" . $user++] } 1 .. 40);
}

# traffic on "path" until cond() holds; true if it did within "timeout" s

sub drive {
    my ($cond, $timeout, $path) = @_;
    my $t0 = time;
    while (time - $t0 < $timeout) {
        return 1 if $cond->();
        traffic($path);
        sleep 0.05;
    }
    return $cond->();
}

sub field { $r->cli('HGET', "canary:rollout:$_[0]", $_[1]) }

sub history {
    grep { $_->{event} !~ /^(?:operator|hold)$/ }
        history_of($r, "canary:rollout:$_[0]");
}

sub events { join ' ', map { $_->{event} } history($_[0]) }

my $sub_pid = subscribe_alerts($r);
ok($sub_pid, 'alert subscriber is listening');
ok(defined wait_until(sub { $r->cli('GET', 'canary:leader') eq 'node-a' },
                      10), 'the node holds the lease')
    or diag $ng->error_log;


# 1. the gate at 50: waits at 10, shows it, refuses 100, takes 50

{
    $r->cli('HSET', 'canary:rollout:gated', 'state', 'progressing');

    ok(drive(sub { field('gated', 'state') eq 'waiting' }, 15, '/gated'),
       'the rollout waits at the gate') or diag explain [history('gated')];
    is(field('gated', 'percent'), '10', 'at the step before: 10%');
    is(field('gated', 'step'), '1', 'step 1');
    is(field('gated', 'gate'), '50', 'gate: the percent awaited');
    is(events('gated'), 'start waiting', 'history: start, waiting');
    my ($w) = grep { $_->{event} eq 'waiting' } history('gated');
    is($w->{gate}, '50', 'the waiting entry names the gate');
    like($w->{reason}, qr/^passed: .*; waiting for an approval of step 2 of 3 \(50%\)$/,
         'the waiting entry says why') or diag explain $w;
    note "waiting: $w->{reason}";

    ok(defined wait_until(sub {
           read_alerts($r) =~ /"event":"waiting"/ }, 3),
       'an alert for the wait');
    my $a = read_alerts($r);
    my ($json) = $a =~ /^(\{.*"event":"waiting".*\})$/m;
    my $alert = eval { JSON::PP::decode_json($json) };
    is($alert->{gate}, 50, 'the alert names the gate') or diag $a;
    is($alert->{rollout}, 'gated', 'the alert names the rollout');

    # still judged while it waits: held at 10%, no further step
    ok(!drive(sub { field('gated', 'percent') ne '10' }, 2.5, '/gated'),
       'no step without an approval');
    is(field('gated', 'state'), 'waiting', 'still waiting');

    # the status page, in each format
    my $body = '';
    wait_until(sub {
        (undef, undef, $body) = http_get($ng->port, '/canary');
        $body =~ / gate 50/;
    }, 3);
    like($body, qr/Rollout gated percent 10 state waiting /, 'text: state waiting')
        or diag $body;
    like($body, qr/ auto step 1 of 3 next_decision \S+ failures 0 gate 50\n/,
         'text: the gate');
    (undef, undef, $body) = http_get($ng->port, '/canary?format=json');
    my $j = eval { JSON::PP::decode_json($body) };
    my ($ro) = grep { $_->{name} eq 'gated' } @{ $j->{rollouts} // [] };
    is($ro->{state}, 'waiting', 'JSON: state');
    is($ro->{auto}{gate}, 50, 'JSON: gate');
    (undef, undef, $body) = http_get($ng->port, '/canary?format=prometheus');
    like($body, qr/^nginx_canary_auto_gate_percent\{rollout="gated"\} 50$/m,
         'Prometheus: the gate');
    like($body, qr/^nginx_canary_auto_gate_percent\{rollout="gall"\} 0$/m,
         'Prometheus: 0 when not waiting');
    like($body, qr/^nginx_canary_rollout_info\{rollout="gated",state="waiting"/m,
         'Prometheus: state waiting');

    # an approval for another step: refused, removed, still waiting
    $r->cli('HSET', 'canary:rollout:gated', 'approve', '100');
    ok(defined wait_until(sub { events('gated') =~ /approve_refused/ }, 3),
       'a wrong approval is refused');
    is(field('gated', 'approve'), '', 'and removed');
    is(field('gated', 'state'), 'waiting', 'still waiting');
    is(field('gated', 'percent'), '10', 'still at 10%');
    my ($rf) = grep { $_->{event} eq 'approve_refused' } history('gated');
    is($rf->{reason}, 'approve "100" refused: waiting for an approval of '
                      . 'step 2 of 3 (50%)', 'the refusal says why');
    like($ng->error_log, qr/\[warn\].*"gated" approve_refused: .*approve "100" refused/,
         'a log line for the refusal');

    # the right one: the step is entered within a second or two
    my $t0 = time;
    $r->cli('HSET', 'canary:rollout:gated', 'approve', '50');
    ok(defined wait_until(sub { field('gated', 'percent') eq '50' }, 3),
       'the approval enters the step');
    note sprintf 'entered %.2f s after the approval', time - $t0;
    is(field('gated', 'state'), 'progressing', 'progressing again');
    is(field('gated', 'step'), '2', 'step 2');
    is(field('gated', 'gate'), '', 'no gate any more');
    is(field('gated', 'approve'), '', 'the approval used');
    my ($ap) = grep { $_->{event} eq 'approved' } history('gated');
    is($ap->{reason}, 'approved: step 2 of 3 (50%)', 'history: approved');

    # the promotion is gated too
    ok(drive(sub { field('gated', 'state') eq 'waiting' }, 15, '/gated'),
       'waits before the promotion');
    is(field('gated', 'gate'), '100', 'gate 100');
    is(field('gated', 'percent'), '50', 'at 50%');
    $r->cli('HSET', 'canary:rollout:gated', 'approve', '100');
    ok(defined wait_until(sub { field('gated', 'state') eq 'promoted' }, 3),
       'the last approval promotes');
    is(field('gated', 'percent'), '100', 'at 100%');
    is(events('gated'), 'start waiting approve_refused approved waiting '
                        . 'approved', 'the whole history, in order');
    note 'transcript: ' . join ' | ',
        map { "$_->{event} $_->{old_percent}>$_->{percent}: $_->{reason}" }
        history('gated');
}


# 2. a canary that fails while it waits is rolled back

{
    $r->cli('HSET', 'canary:rollout:gfail', 'state', 'progressing');
    ok(drive(sub { field('gfail', 'state') eq 'waiting' }, 15, '/gfail'),
       'gfail waits before the promotion');

    open my $fh, '>', $fail_flag or die;
    close $fh;

    ok(drive(sub { field('gfail', 'state') eq 'rolled_back' }, 10, '/gfail'),
       'failing while waiting: rolled back');
    unlink $fail_flag;
    is(field('gfail', 'percent'), '0', 'percent 0');
    is(field('gfail', 'gate'), '', 'the gate removed');
    like(field('gfail', 'reason'), qr/error rate/, 'the reason');
}


# 3. approve=all: the first step waits too, at 0%

{
    $r->cli('HSET', 'canary:rollout:gall', 'state', 'progressing');
    ok(defined wait_until(sub { field('gall', 'state') eq 'waiting' }, 3),
       'approve=all waits before the first step');
    is(field('gall', 'gate'), '10', 'gate 10');
    is(field('gall', 'percent'), '0', 'nobody exposed');
    is(field('gall', 'step'), '', 'no step yet');

    $r->cli('HSET', 'canary:rollout:gall', 'approve', '10');
    ok(defined wait_until(sub { field('gall', 'percent') eq '10' }, 3),
       'approved: the first step');
    is(field('gall', 'state'), 'progressing', 'progressing');
    is(field('gall', 'step'), '1', 'step 1');
}

if ($sub_pid) {
    kill 'TERM', $sub_pid;
    waitpid $sub_pid, 0;
}

done();
