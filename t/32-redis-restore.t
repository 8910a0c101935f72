#!/usr/bin/perl

# An empty Redis is restored, not obeyed.  Under a bounded load loop:
#
#   - Redis killed and restarted without persistence (another run_id, no
#     key): routing never leaves the last good state, and the first round
#     after reconnecting writes the hash fields, the user sets and the
#     automatic rollout's state and step back; status shows "restored";
#   - a plain DEL on the live Redis the module knows (same run_id): back
#     to the configuration, nothing written back;
#   - two nginx nodes on one Redis that restarts empty: each key is
#     written once (INFO commandstats of the new instance counts them);
#   - nginx and Redis both restarted: the state file (which remembers the
#     run_id) and the users files are written back; a restore another node
#     began and did not finish is finished; an operator's key written
#     first into the new instance is obeyed instead;
#   - a Redis that refuses the scripts: the last good state stays.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use File::Temp qw(tempdir);
use Test::More;
use Time::HiRes qw(sleep time);
use CanaryTest;
use CanarySync qw(wait_until);
use CanaryChaos;

need_module();

my $BIG = 2500;

sub conf {
    my ($node, $state) = @_;
    $state = $state ? "canary_state_file $state;" : '';
    return <<"EOF";
canary_zone 4m;
canary_redis 127.0.0.1:%%RPORT%% timeout=300ms;
canary_sync_interval 200ms;
canary_node_id $node;
$state

canary_rollout checkout {
    key \$http_x_user_id;
    stable s;
    canary c;
    percent 0;
    segment \$http_x_country;
}

canary_rollout ramp {
    key \$http_x_user_id;
    stable s;
    canary c;
    percent 0;
    auto steps=10,50,100 interval=1s max_error_rate=5% min_requests=10;
}

server {
    listen 127.0.0.1:%%PORT%%;
    location / {
        canary checkout;
        return 200 "\$canary_variant|\$canary_bucket|\$canary_reason\\n";
    }
    location = /status { canary_status; }
    location = /probe {
        return 200 "\$canary_variant_checkout|0|probe\\n";
    }
}
EOF
}

# the known good state: CanaryChaos' (percent 30, a canary user, a
# segment), a stable set read in several batches, and a paused automatic
# rollout at step 2
sub seed {
    my ($r) = @_;
    $r->cli('EVAL', "for i=1,$BIG,500 do local t={} "
            . "for j=i,math.min(i+499,$BIG) do t[#t+1]='big'..j end "
            . "redis.call('SADD',KEYS[1],unpack(t)) end return 1", 1,
            'canary:rollout:checkout:stable_users');
    $r->cli('HSET', 'canary:rollout:ramp', 'percent', '50', 'state',
            'paused', 'step', '2', 'since', '1000', 'checked', '2000');
    CanaryChaos::seed($r);
}

sub applied {
    my ($ng) = @_;
    my (undef, undef, $body) = http_get($ng->port, '/status');
    return CanaryChaos::marker_applied($ng->port, 'ZZ')
        && $body =~ /^Rollout ramp percent 50\b/m
        && $body =~ /auto step 2 of 3/
        && $ng->error_log =~ /stable_users now has $BIG members/
        && $ng->error_log =~ /canary_users now has 1 members/;
}

sub hash { my %h = split /\n/, $_[0]->cli('HGETALL', $_[1]); \%h }

sub restores {
    my ($ng) = @_;
    my (undef, undef, $body) = http_get($ng->port, '/status?format=json');
    return $body =~ /"restored":\{"count":(\d+)/ ? $1 : 0;
}


# 1. killed and restarted empty, under load

my $r = start_redis(notify => 'Kh$s');
my $ng = start_nginx(conf('node-a'), workers => 2,
                     vars => { RPORT => $r->port });
my $port = $ng->port;

seed($r);
my $old_id = ($r->cli('INFO', 'server') =~ /run_id:(\w+)/)[0];
ok(defined wait_until(sub { applied($ng) }, 10, 0.05),
   'the known state is applied');

my $load = CanaryChaos::load_start($port, 1e9, 60);
sleep 0.5;
$r->kill('KILL');
sleep 1;
$r->start;
my $new_id = ($r->cli('INFO', 'server') =~ /run_id:(\w+)/)[0];
isnt($new_id, $old_id, 'the restarted Redis has another run_id');

my $back = wait_until(sub {
    $r->cli('HGET', 'canary:rollout:checkout', 'percent') eq '30.00'
        && $r->cli('SCARD', 'canary:rollout:checkout:stable_users') == $BIG
}, 10, 0.01);
ok(defined $back, 'the state is back in Redis');
note(sprintf 'written back %.2f s after the restart (reconnect backoff '
     . 'included)', $back // -1);
sleep 1;
my $l = CanaryChaos::load_stop($load);

cmp_ok($l->{requests}, '>', 100, 'the load ran');
is($l->{failed}, 0, 'no failed request');
is($l->{misrouted}, 0, 'routing never left the last good state');

my $log = $ng->error_log;
unlike($log, qr/rollout "checkout" percent 0\.00 \(was 30\.00\)/,
       'the config was never published');
if ($log =~ /restoring Redis at \S+ stopped/) {
    # broken off by a timeout on a slow run (valgrind) and resumed: the
    # last attempt's line counts the keys it wrote itself
    like($log, qr/came back empty \(run_id $new_id, was $old_id\): (?#
                 )restored 2 rollouts from the zone/,
         'one notice line (after a resumed attempt)');
} else {
    like($log, qr/came back empty \(run_id $new_id, was $old_id\): (?#
                 )restored 2 rollouts from the zone, 4 keys written (?#
                 )\(${\($BIG + 1)} user set members\), 0 kept/,
         'one notice line');
}

my $h = hash($r, 'canary:rollout:checkout');
is($h->{percent}, '30.00', 'percent back');
is($h->{'percent:ZZ'}, '100.00', 'segment back');
is($r->cli('SCARD', 'canary:rollout:checkout:canary_users'), '1',
   'canary set back');
is($r->cli('SISMEMBER', 'canary:rollout:checkout:stable_users', "big$BIG"),
   '1', 'stable set back, last member too');
is($r->cli('TTL', 'canary:rollout:checkout:stable_users'), '-1',
   'the set has no expiry');
is($r->cli('KEYS', '*:restore'), '', 'no temporary key left');
is($r->cli('EXISTS', 'canary:restore', 'canary:restoring'), '0',
   'the lease released, the mark deleted');

$h = hash($r, 'canary:rollout:ramp');
is_deeply([@$h{qw(percent state step since checked)}],
          ['50.00', 'paused', '2', '1000', '2000'],
          'automatic state and step back');

my (undef, undef, $text) = http_get($port, '/status');
like($text, qr/^Restored: 1 rollouts 2 at \d{10}$/m, 'status text');
my (undef, undef, $json) = http_get($port, '/status?format=json');
like($json, qr/"restored":\{"count":1,"rollouts":2,"at":\d{10}\}/,
     'status JSON');
my (undef, undef, $prom) = http_get($port, '/status?format=prometheus');
like($prom, qr/^nginx_canary_restores_total 1$/m, 'Prometheus counter');
like($prom, qr/^nginx_canary_restored_timestamp_seconds \d{10}$/m,
     'Prometheus timestamp');
like($text, qr/^Rollout checkout percent 30\b.* source redis/m,
     'the rollout reads Redis again');

# the sync goes on as before
ok(defined CanaryChaos::resync_time($r, $port, 'M1', 5), 'sync resumed');


# 2. a plain DEL on the Redis the module knows: back to the config

$load = CanaryChaos::load_start($port, 1e9, 60);
sleep 0.3;
$r->cli('DEL', 'canary:rollout:checkout',
        'canary:rollout:checkout:canary_users',
        'canary:rollout:checkout:stable_users');
ok(defined wait_until(sub {
    my (undef, undef, $b) = http_get($port, '/status');
    $b =~ /^Rollout checkout percent 0 .*source config/m
}, 5, 0.02), 'DEL: back to the config');
sleep 1;
$l = CanaryChaos::load_stop($load);
is($l->{failed}, 0, 'DEL: no failed request');
is($r->cli('EXISTS', 'canary:rollout:checkout'), '0',
   'DEL: nothing written back');
is(restores($ng), 1, 'DEL: no restore counted');
my $conn;
is(CanaryChaos::request(\$conn, $port, 'u1')->[1], 'stable',
   'DEL: routing follows the config (percent 0)');

$ng->stop;
$r->stop;


# 3. two nodes, one Redis restarted empty: each key written once

$r = start_redis(notify => 'Kh$s');
my @ng = map { start_nginx(conf("node-$_"), workers => 1,
                           vars => { RPORT => $r->port }) } qw(a b);
seed($r);
ok(defined wait_until(sub { applied($ng[0]) && applied($ng[1]) }, 10, 0.05),
   'two nodes: the known state is applied on both');

$r->kill('KILL');
sleep 1;
$r->start;

ok(defined wait_until(sub {
    $r->cli('SCARD', 'canary:rollout:checkout:stable_users') == $BIG
        && restores($ng[0]) + restores($ng[1]) > 0
}, 10, 0.02), 'two nodes: restored');
sleep 1;

my $stats = $r->cli('INFO', 'commandstats');
my %calls = $stats =~ /^cmdstat_(\w+):calls=(\d+)/mg;
my $fields = keys(%{ hash($r, 'canary:rollout:checkout') })
             + keys(%{ hash($r, 'canary:rollout:ramp') });
is($calls{hset}, $fields, "two nodes: $fields hash fields written once");
is($calls{rename}, 2, 'two nodes: each user set renamed into place once');
# a restore broken off (a timeout on a slow run, e.g. under valgrind) is
# taken up again by the node holding the lease: the temporary set is
# filled again, the user set still written once
my $resumed = grep { $_->error_log =~ /restoring Redis at \S+ stopped/ } @ng;
if ($resumed) {
    cmp_ok($calls{sadd}, '>=', 1 + int(($BIG + 999) / 1000),
           'two nodes: the sets were filled (a restore was resumed)');
} else {
    is($calls{sadd}, 1 + int(($BIG + 999) / 1000),
       'two nodes: one node filled the sets');
}
is(restores($ng[0]) + restores($ng[1]), 1, 'two nodes: one restore');
for my $n (@ng) {
    ok(defined wait_until(sub {
        CanaryChaos::marker_applied($n->port, 'ZZ')
    }, 5, 0.02), 'two nodes: each routes on the state');
}

$_->stop for @ng;
$r->stop;


# 4. nginx and Redis both restarted: from the state file

my $dir = tempdir('canary-restore-XXXXXX', TMPDIR => 1,
                  CLEANUP => !$ENV{CANARY_KEEP});
chmod 0777, $dir;

$r = start_redis(notify => 'Kh$s');
$ng = start_nginx(conf('node-a', "$dir/state"), workers => 1,
                  vars => { RPORT => $r->port });
seed($r);
$old_id = ($r->cli('INFO', 'server') =~ /run_id:(\w+)/)[0];
ok(defined wait_until(sub {
    applied($ng) && CanaryTest::read_file("$dir/state") =~ /^redis $old_id$/m
}, 10, 0.05), 'state file: written with the run_id');
ok(defined wait_until(sub {
    CanaryTest::read_file("$dir/state") =~ /^auto ramp 2 0 1000 2000$/m
}, 10, 0.05), 'state file: the automatic step too');
$ng->stop;

$r->kill('KILL');
$r->start;
$ng = start_nginx(conf('node-a', "$dir/state"), workers => 1,
                  vars => { RPORT => $r->port });
ok(defined wait_until(sub {
    $r->cli('HGET', 'canary:rollout:checkout', 'percent') eq '30.00'
        && $r->cli('SCARD', 'canary:rollout:checkout:stable_users') == $BIG
}, 10, 0.02), 'state file: the state is back in Redis');
like($ng->error_log, qr/came back empty .*: restored 2 rollouts from the (?#
                        )state file/, 'state file: named as the source');
$h = hash($r, 'canary:rollout:ramp');
is_deeply([@$h{qw(percent state step since checked)}],
          ['50.00', 'paused', '2', '1000', '2000'],
          'state file: automatic state and step back');
ok(CanaryChaos::marker_applied($ng->port, 'ZZ'), 'state file: routing kept');
$ng->stop;


# 4b. a restore that a node began and did not finish (it died; its lease
# expired): the mark <prefix>restoring names the instance, and the next
# node writes the keys still missing

$r->kill('KILL');
$r->start;
my $id = ($r->cli('INFO', 'server') =~ /run_id:(\w+)/)[0];
$r->cli('HSET', 'canary:rollout:checkout', 'percent', '30', 'percent:ZZ',
        '100');
$r->cli('SET', 'canary:restoring', $id);
$ng = start_nginx(conf('node-b', "$dir/state"), workers => 1,
                  vars => { RPORT => $r->port });
ok(defined wait_until(sub {
    $r->cli('SCARD', 'canary:rollout:checkout:stable_users') == $BIG
}, 10, 0.02), 'unfinished: the missing keys are written');
if ($ng->error_log =~ /restoring Redis at \S+ stopped/) {
    # broken off by a timeout on a slow run (valgrind) and resumed: the
    # last attempt's line counts the keys it wrote itself
    like($ng->error_log, qr/came back empty .*: restored 2 rollouts/,
         'unfinished: finished after a resumed attempt');
} else {
    like($ng->error_log, qr/restored 2 rollouts from the state file, 3 (?#
                            )keys written \(${\($BIG + 1)} user set (?#
                            )members\), 1 kept/,
         'unfinished: the key already there kept');
}
is($r->cli('HGET', 'canary:rollout:checkout', 'percent'), '30',
   'unfinished: the hash found there is left as it was');
is($r->cli('EXISTS', 'canary:restoring'), '0', 'unfinished: the mark is gone');
$ng->stop;


# 5. the same, but an operator wrote a key first: obeyed

$r->kill('KILL');
$r->start;
$r->cli('HSET', 'canary:rollout:checkout', 'percent', '50');
$ng = start_nginx(conf('node-a', "$dir/state"), workers => 1,
                  vars => { RPORT => $r->port });
ok(defined wait_until(sub {
    my (undef, undef, $b) = http_get($ng->port, '/status');
    $b =~ /^Rollout checkout percent 50 .*source redis/m
}, 5, 0.02), "operator's key: obeyed");
sleep 0.5;
is($r->cli('EXISTS', 'canary:rollout:checkout:stable_users'), '0',
   "operator's key: nothing written back");
like($ng->error_log, qr/another instance .* that holds rollout keys: its (?#
                        )state is obeyed/, "operator's key: logged");
is(restores($ng), 0, "operator's key: no restore");
$ng->stop;
$r->stop;


# 6. a Redis that refuses the restore's scripts (EVAL renamed away): the
# last good state stays, one error line, and an operator's write applies

$r = start_redis(notify => 'Kh$s', args => ['--rename-command', 'EVAL', '']);
$ng = start_nginx(conf('node-a'), workers => 1,
                  vars => { RPORT => $r->port });
seed($r);
ok(defined wait_until(sub { CanaryChaos::marker_applied($ng->port, 'ZZ') },
                      10, 0.05), 'no EVAL: the known state is applied');
$r->kill('KILL');
$r->start;
ok(defined wait_until(sub {
    $ng->error_log =~ /restoring Redis at \S+ stopped, the lease was not (?#
                       )taken: ERR unknown command/
}, 10, 0.05), 'no EVAL: the restore stops with an error line');
sleep 1;
my $lines = () = $ng->error_log =~ /restoring Redis at \S+ stopped/g;
is($lines, 1, 'no EVAL: logged once, not once a round');
ok(CanaryChaos::marker_applied($ng->port, 'ZZ'),
   'no EVAL: routing stays on the last good state');
$r->cli('HSET', 'canary:rollout:checkout', 'percent', '30', 'percent:Z3',
        '100');
ok(defined wait_until(sub { CanaryChaos::marker_applied($ng->port, 'Z3') },
                      5, 0.02), "no EVAL: an operator's write applies");
$ng->stop;
$r->stop;

done();
