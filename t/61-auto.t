#!/usr/bin/perl

# Automatic progressive delivery across a fleet: two nginx nodes sharing
# one redis-server, intervals of 1 s.
#
#   - a healthy canary climbs every step to promoted, on every node;
#   - a canary that turns to 500s is rolled back within one interval of
#     crossing the threshold, on every node, with an error log line and
#     one JSON alert on canary:alerts;
#   - too few requests hold the step, and the history says so;
#   - paused holds; progressing again resumes from the same step;
#   - killing the lease holder hands the lease to the other node, which
#     carries on from the same step without skipping or repeating one;
#   - the history holds every transition with its figures.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP ();
use POSIX qw(WNOHANG);
use Test::More;
use Time::HiRes qw(sleep time);
use CanaryTest;
use CanarySync qw(wait_until);
use CanaryAuto;

need_module();

my $r = start_redis();
my $rport = $r->port;
my $key = 'canary:rollout:checkout';
my $fail_flag;

sub node_conf {
    my ($id) = @_;
    return <<"EOF";
canary_zone 1m;
canary_redis 127.0.0.1:$rport;
canary_node_id $id;

upstream stable_up { server 127.0.0.1:%%PORT_S%%; }
upstream canary_up { server 127.0.0.1:%%PORT_C%%; }

canary_rollout checkout {
    key \$arg_u;
    stable stable_up;
    canary canary_up;
    auto steps=10,50,100 interval=1s max_error_rate=5% min_requests=10;
}

canary_rollout fails {
    key \$arg_u;
    stable stable_up;
    canary canary_up;
    auto steps=10,20,30,40,50,100 interval=1s max_error_rate=5%
         min_requests=10;
}

canary_rollout ramp {
    key \$arg_u;
    stable stable_up;
    canary canary_up;
    auto steps=5,10,20,30,40,50,60,100 interval=1s max_error_rate=5%
         min_requests=5;
}

server {
    listen 127.0.0.1:%%PORT%%;
    location / {
        canary checkout;
        proxy_pass http://\$canary_upstream;
    }
    location /ramp {
        canary ramp;
        proxy_pass http://\$canary_upstream;
    }
    location /fails {
        canary fails;
        proxy_pass http://\$canary_upstream;
    }
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
}

$fail_flag = $r->prefix . '/fail';
my $na = start_nginx(node_conf('node-a'), vars => { FAIL => $fail_flag });
my $nb = start_nginx(node_conf('node-b'), vars => { FAIL => $fail_flag });
my @nodes = ($na, $nb);

my $user = 0;

# one round of traffic: n requests per node, new users each time

sub traffic {
    my ($n, $path, @which) = @_;
    $path //= '/';
    @which = @nodes unless @which;
    my %seen;
    for my $ng (@which) {
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

# drives traffic until cond() is true or the deadline passes; returns the
# seconds it took, undef on timeout

sub drive {
    my ($cond, $timeout, %o) = @_;
    my $t0 = time;
    while (time - $t0 < $timeout) {
        return time - $t0 if $cond->();
        traffic($o{n} // 40, $o{path}, @{ $o{nodes} || [] });
        sleep 0.05;
    }
    return $cond->() ? time - $t0 : undef;
}

sub field { $r->cli('HGET', $key, $_[0]) }

# the history stream: a list of {id, field => value}

sub history {
    my ($k) = @_;
    return history_of($r, $k // $key);
}

sub reset_rollout {
    my ($k) = @_;
    $k //= $key;
    $r->cli('DEL', $k, "$k:history");
    $r->cli('PUBLISH', 'canary:changed', 'x');
    unlink $fail_flag;
}

# the share of canary answers on every node

sub canary_share {
    my ($ng, $path) = @_;
    my $s = traffic(200, $path, $ng);
    return ($s->{canary} // 0) / 200;
}

# an alert subscriber: redis-cli SUBSCRIBE writing to a file

my $alerts_file = $r->prefix . '/alerts.txt';
my $sub_pid = fork // die "fork: $!";
if ($sub_pid == 0) {
    open STDOUT, '>', $alerts_file or POSIX::_exit(1);
    open STDERR, '>&', \*STDOUT;
    exec $CanaryTest::REDIS_CLI, '-h', '127.0.0.1', '-p', $rport,
         'SUBSCRIBE', 'canary:alerts'
        or POSIX::_exit(127);
}
ok(defined wait_until(sub {
       $r->cli('PUBSUB', 'NUMSUB', 'canary:alerts') =~ /\n1$/ }, 5),
   'alert subscriber is listening');

ok(defined wait_until(sub { $r->cli('GET', 'canary:leader') =~ /^node-/ },
                      10), 'a node holds the lease')
    or diag $na->error_log;
note 'leader: ' . $r->cli('GET', 'canary:leader');


# 1. a healthy canary climbs every step to promoted

{
    reset_rollout();
    $r->cli('HSET', $key, 'state', 'progressing');

    my (@percents, %seen);
    my $t = drive(sub {
        my ($p, $state) = split /\n/, $r->cli('HMGET', $key, 'percent',
                                               'state');
        push @percents, $p if defined $p && $p ne '' && !$seen{$p}++;
        ($state // '') eq 'promoted';
    }, 20);

    ok(defined $t, 'healthy canary promoted') or diag explain [history()];
    is_deeply(\@percents, [10, 50, 100], 'through every step, in order')
        or diag explain [\@percents, history()];
    is(field('step'), 3, 'at the last step');

    for my $ng (@nodes) {
        ok(defined wait_until(sub { canary_share($ng) == 1 }, 3),
           'node ' . $ng->port . ' sends everyone to the canary');
    }

    my @all = history();
    ok((grep { $_->{event} eq 'operator' && $_->{state} eq 'progressing' }
        @all), 'history: the operator\'s start');
    # a hold (too few requests in an interval on a slow machine) may come
    my @h = grep { $_->{event} !~ /^(?:operator|hold)$/ } @all;
    is_deeply([map { $_->{event} } @h], [qw(start advance promote)],
              'history: start, advance, promote') or diag explain \@all;
    is_deeply([map { "$_->{old_percent}>$_->{percent}" } @h],
              ['>10', '10>50', '50>100'], 'history: old and new percents');
    for my $e (@h[1, 2]) {
        cmp_ok($e->{canary_requests}, '>=', 10,
               "$e->{event}: canary requests recorded");
        cmp_ok($e->{stable_requests}, '>', 0,
               "$e->{event}: stable requests recorded");
        is($e->{canary_error_rate}, '0.0000%', "$e->{event}: error rate");
        like($e->{canary_p99_ms}, qr/^\d+$/, "$e->{event}: p99");
        is($e->{nodes}, 2, "$e->{event}: figures of both nodes");
        like($e->{node}, qr/^node-[ab]$/, "$e->{event}: the node");
        like($e->{time}, qr/^\d{13}$/, "$e->{event}: the time");
    }
    is($h[2]{state}, 'promoted', 'promote entry: new state');
    is($h[2]{old_state}, 'progressing', 'promote entry: old state');

    # every node shows what Redis holds, read about once a second
    for my $ng (@nodes) {
        my $body = '';
        wait_until(sub {
            (undef, undef, $body) = http_get($ng->port, '/canary');
            $body =~ /auto last promote/;
        }, 5);
        like($body, qr/checkout .*\n(?: .*\n)* auto step 3 of 3/,
             'status shows the step');
        like($body, qr/ auto last promote by node-[ab]: passed/,
             'status shows the last decision');

        (undef, undef, $body) = http_get($ng->port, '/canary?format=json');
        my $j = eval { JSON::PP::decode_json($body) };
        ok($j, 'status JSON parses') or diag $body;
        my ($ro) = grep { $_->{name} eq 'checkout' } @{ $j->{rollouts} };
        my $auto = $ro->{auto} // {};
        is($auto->{step}, 3, 'JSON: step');
        is($auto->{steps}, 3, 'JSON: steps');
        ok(exists $auto->{next_decision_ms}, 'JSON: next decision');
        is($auto->{last_decision}{decision}, 'promote',
           'JSON: last decision');
        cmp_ok($auto->{last_decision}{canary}{requests} // 0, '>=', 10,
               'JSON: its figures');
    }
}


# 2. a canary that turns to 500s is rolled back on every node, alerting

{
    my $fk = 'canary:rollout:fails';
    reset_rollout($fk);
    $r->cli('HSET', $fk, 'state', 'progressing');

    ok(defined drive(sub { $r->cli('HGET', $fk, 'percent') eq '20' }, 10,
                     path => '/fails'),
       'second step reached');

    open my $fh, '>', $fail_flag or die;
    close $fh;
    my $failing_since = int(time * 1000);

    my $t = drive(sub { $r->cli('HGET', $fk, 'state') eq 'rolled_back' },
                  10, path => '/fails');
    ok(defined $t, 'failing canary rolled back');
    note sprintf 'rolled back %.2f s after the backend failed', $t // -1;

    is($r->cli('HGET', $fk, 'percent'), '0', 'percent 0');
    like($r->cli('HGET', $fk, 'reason'), qr/error rate \d+\.\d+% above 5\.0000%/,
         'the reason is in the hash');

    for my $ng (@nodes) {
        ok(defined wait_until(sub { canary_share($ng, '/fails') == 0 }, 2),
           'node ' . $ng->port . ' sends no one to the canary');
    }

    my @h = history($fk);
    is($h[-1]{event}, 'rollback', 'history ends with the rollback');
    is($h[-1]{percent}, '0', 'rollback entry: percent 0');
    like($h[-1]{old_percent}, qr/^(?:20|30|40|50)$/,
         'rollback entry: from the step it was at');
    like($h[-1]{canary_error_rate}, qr/^[1-9]\d*\.\d{4}%$/,
         'rollback entry: the failing error rate');
    like($h[-1]{reason}, qr/error rate/, 'rollback entry: the reason');

    # the failures start inside an interval; that interval, or when they
    # start too late in it to cross the threshold the next one, is the one
    # judged, 0.2 s after it ends: within one interval of crossing
    my $first = int($failing_since / 1000) * 1000;
    cmp_ok($h[-1]{interval} // 0, '<=', $first + 1000,
           'the interval judged is the first failing one or the next');
    cmp_ok(($h[-1]{time} // 0) - ($h[-1]{interval} // 0), '<', 2000,
           'judged within an interval of its end')
        and note sprintf 'judged %d ms after the judged interval ended',
                         $h[-1]{time} - $h[-1]{interval} - 1000;

    ok(defined wait_until(sub { -s $alerts_file }, 3), 'an alert came');
    my @msgs = grep { /^\{/ } split /\n/, CanaryTest::read_file($alerts_file);
    is(scalar @msgs, 1, 'one alert message');
    like($msgs[0] // '', qr/"rollout":"fails","event":"rollback"/,
         'alert names the rollout and the event');
    like($msgs[0] // '', qr/"canary":\{"requests":\d+,"errors":[1-9]/,
         'alert has the figures');

    my $logs = join '', map { $_->error_log } @nodes;
    like($logs, qr/\[error\].*canary auto: "fails" rollback/,
         'rollback logged at error level');

    unlink $fail_flag;
}


# 3. too few requests hold the step

{
    reset_rollout();
    $r->cli('HSET', $key, 'state', 'progressing');
    ok(defined wait_until(sub { field('step') eq '1' }, 5), 'started');

    # one request a node now and then: fewer than min_requests=10
    my $t0 = time;
    while (time - $t0 < 3.5) {
        traffic(1);
        sleep 0.3;
    }

    is(field('step'), '1', 'still at step 1');
    is(field('percent'), '10', 'still at 10%');
    is(field('decision'), 'hold', 'the last decision is a hold');
    my @holds = grep { $_->{event} eq 'hold' } history();
    cmp_ok(scalar @holds, '>=', 2, 'the history has the holds');
    like($holds[0]{reason} // '',
         qr/too few requests: canary had \d+, min_requests is 10/,
         'and says why');
}


# 4. paused holds; progressing again resumes from the same step

{
    # carries on from 3: step 1, progressing
    $r->cli('HSET', $key, 'state', 'paused');
    sleep 1.2;
    my $n = scalar history();

    drive(sub { 0 }, 3.5);
    is(field('state'), 'paused', 'still paused');
    is(field('step'), '1', 'paused: step held under traffic');
    is(field('percent'), '10', 'paused: percent held');

    my @h = history();
    my @new = @h[$n .. $#h];
    is_deeply([map { $_->{event} } @new], [],
              'no decision while paused');
    ok((grep { $_->{event} eq 'operator' && $_->{state} eq 'paused'
               && $_->{old_state} eq 'progressing' } @h),
       'the operator\'s pause is in the history');

    $r->cli('HSET', $key, 'state', 'progressing');
    ok(defined drive(sub { field('step') eq '2' }, 6),
       'resumed: the next step');
    is(field('percent'), '50', 'resumed at 50, not restarted');
    ok((grep { $_->{event} eq 'operator' && $_->{state} eq 'progressing'
               && $_->{old_state} eq 'paused' } history()),
       'the operator\'s resume is in the history');
    $r->cli('HSET', $key, 'state', 'paused');
}


# 5. killing the lease holder: the other node carries on from the step

{
    my $rk = 'canary:rollout:ramp';
    reset_rollout($rk);
    $r->cli('HSET', $rk, 'state', 'progressing');

    ok(defined drive(sub { ($r->cli('HGET', $rk, 'step') || 0) >= 3 }, 15,
                     path => '/ramp'),
       'ramp at step 3');

    my $leader = $r->cli('GET', 'canary:leader');
    my ($dead, $alive) = $leader eq 'node-a' ? ($na, $nb) : ($nb, $na);
    my $other = $leader eq 'node-a' ? 'node-b' : 'node-a';
    my $step = $r->cli('HGET', $rk, 'step');
    note "killing $leader at step $step";

    # the master first, so that no one reports the workers' deaths
    my @workers = $dead->pids;
    kill 'KILL', $dead->master_pid;
    kill 'KILL', @workers;
    waitpid $dead->master_pid, 0;
    $dead->running;

    ok(defined drive(sub { $r->cli('GET', 'canary:leader') eq $other }, 20,
                     path => '/ramp', nodes => [$alive]),
       "the lease passes to $other");

    ok(defined drive(sub { $r->cli('HGET', $rk, 'state') eq 'promoted' },
                     20, path => '/ramp', nodes => [$alive]),
       'the ramp is promoted by the new leader');

    my @h = grep { $_->{event} =~ /^(?:start|advance|promote)$/ }
            history($rk);
    my @steps = map { $_->{step} } @h;
    is_deeply(\@steps, [1 .. 8], 'every step once, in order: no skip, '
              . 'no repeat') or diag explain \@h;
    # the dead node may have advanced once more between our read and the
    # kill: the handover is after its last entry
    my @by = map { $_->{node} } @h;
    my ($last) = grep { $by[$_] eq $leader } reverse 0 .. $#by;
    ok(defined $last && $last < $#by, "$other wrote steps after $leader");
    ok(!(grep { $_ ne $other } @by[$last + 1 .. $#by]),
       "every step after the handover written by $other");
    is($h[$last + 1]{old_step} // '', $h[$last]{step},
       'the first step after the handover comes from the old one');

    for my $e (grep { $_->{event} eq 'advance' } @h) {
        is($e->{step}, $e->{old_step} + 1,
           "advance $e->{old_step} -> $e->{step}");
    }

    # the promotion reaches the survivor's zone with its next round
    ok(defined wait_until(sub { canary_share($alive, '/ramp') == 1 }, 3),
       'the survivor routes by 100%');
}

kill 'TERM', $sub_pid;
waitpid $sub_pid, 0;

done();
