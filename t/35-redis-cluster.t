#!/usr/bin/perl

# canary_redis cluster=...: a real Redis Cluster on loopback, three
# masters and three replicas made by `redis-cli --cluster create`
# (cluster-node-timeout 1000 ms), every key of the module under the hash
# tag "{canary}".
#
#   - nginx -t refuses a cluster prefix without a hash tag, and db=;
#   - seeded with nodes that do not own the slot, the module finds the
#     slot's master from CLUSTER SHARDS (the slot it logs is CLUSTER
#     KEYSLOT's), syncs, and follows writes made with `redis-cli -c`
#     (keyspace notifications of the owner);
#   - an ACL user that may not run CLUSTER SHARDS: CLUSTER SLOTS instead
#     (as a Redis 6 that does not know it);
#   - CLUSTER FAILOVER on the owner's replica: MOVED is followed, a write
#     on the new master routes;
#   - the owner SIGKILLed under wrk: the cluster promotes its replica, the
#     module follows, no request fails; kill -> promotion and promotion ->
#     first routed write are printed;
#   - the slot migrated to another master (MIGRATING/IMPORTING, MIGRATE,
#     SETSLOT NODE) while writes go on: with the hash of a rollout the
#     round reads first on the importing node, a write on the old master
#     routes (replies held behind the one that answered ASK); with the
#     rollout's hash too on the importing node and other keys not yet, a
#     write made there with `redis-cli -c` routes before SETSLOT NODE
#     (the module follows ASK with ASKING); the writes are applied in
#     order, and the last one is in force;
#   - the auto controller's lease lives on the slot's master;
#   - the slot's master restarted empty: the last good state restored;
#   - the status page names the node in use;
#   - the control API's writes (each worker's own connection) reach the
#     slot's master, before and after a failover;
#   - TLS only (tls-cluster) with an ACL user: a cluster of three masters.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use HTTP::Tiny;
use POSIX qw(WNOHANG);
use JSON::PP qw(decode_json);
use Test::More;
use Time::HiRes qw(sleep time);
use CanaryTest;
use CanarySync;

need_module();

# six redis-servers under wrk, a fleet-sized test: run once in CI, in the
# run against Debian's nginx, not again per nginx build (the cluster code
# is the same C on every build; t/31 runs the clients' following of a
# master, which the cluster shares with Sentinel, on each).
# CANARY_CLUSTER_ALL=1 runs it against any nginx.
{
    use Cwd qw(abs_path);
    my $real = abs_path($ENV{CANARY_REAL_NGINX} || $CanaryTest::NGINX) // '';
    plan skip_all => 'the cluster test runs once, against Debian\'s nginx; '
                     . "this run tests $real (CANARY_CLUSTER_ALL=1 runs it)"
        if !$ENV{CANARY_CLUSTER_ALL}
           && ($real ne (abs_path('/usr/sbin/nginx') // '')
               || CanaryTest::module_static());
}

my $T = 10 * $CanaryTest::SCALE;
my $TAG = '{canary}';
my $KEY = "$TAG:rollout:checkout";

my $wrk = `command -v wrk 2>/dev/null`;
chomp $wrk;
plan skip_all => 'no wrk' unless $wrk;

# cluster support in this redis-server?
{
    my $r = start_redis(args => ['--cluster-enabled', 'yes']);
    my $info = $r->cli('CLUSTER', 'INFO');
    $r->stop;
    plan skip_all => "redis-server without cluster support: $info"
        unless $info =~ /cluster_state:/;
}

my @keys = test_keys(300);


# nginx -t: a prefix without a hash tag, db=

my ($rc, $out, $text) = nginx_t(sync_conf(), vars => {
    REDIS => 'cluster=127.0.0.1:7000 prefix=canary:', PCT => 5 });
my ($msg, $file, $line) = CanaryTest::conf_error($out);
is($rc, 1, 'a cluster prefix without a hash tag: nginx -t fails');
like($msg // '', qr/"prefix=canary:" has no hash tag: in a cluster every key/,
     'and says why') or diag($out);
ok(defined $file && $file =~ /nginx\.conf$/
   && (split /\n/, $text)[$line - 1] =~ /^\s*canary_redis cluster=/,
   'with file and line') or diag($out);

($rc, $out) = nginx_t(sync_conf(), vars => {
    REDIS => 'cluster=127.0.0.1:7000 "prefix={a}b{c}:"', PCT => 5 });
is($rc, 0, 'a prefix with a hash tag (quoted) is taken') or diag($out);

($rc, $out) = nginx_t(sync_conf(), vars => {
    REDIS => 'cluster=127.0.0.1:7000 "prefix={}:"', PCT => 5 });
like($out, qr/has no hash tag/, 'an empty hash tag is none');

($rc, $out) = nginx_t(sync_conf(), vars => {
    REDIS => 'cluster=127.0.0.1:7000 db=1', PCT => 5 });
like($out, qr/"cluster=" goes with neither "sentinel=" nor "db="/,
     'db= is refused in a cluster');

($rc, $out) = nginx_t(sync_conf(), vars => {
    REDIS => 'cluster=127.0.0.1:7000,', PCT => 5 });
like($out, qr/empty address in canary_redis "cluster=127\.0\.0\.1:7000,"/,
     'an empty seed is refused');


# a cluster: @nodes started, `redis-cli --cluster create`, all ok

sub ccli {
    my ($node, @args) = @_;
    return $node->cli(@args);
}

# -c: follows MOVED, as an operator's redis-cli does
sub cset {
    my ($node, @args) = @_;
    return $node->cli('-c', @args);
}

sub make_cluster {
    my ($n, $replicas, $common, $cli) = @_;
    my @nodes = map {
        start_redis(notify => 'Kh$s',
                    args => ['--cluster-enabled', 'yes',
                             '--cluster-config-file', 'nodes.conf',
                             '--cluster-node-timeout', '1000',
                             @{ $common // [] }])
    } 1 .. $n;
    my @cmd = ($CanaryTest::REDIS_CLI, @{ $cli // [] }, '--cluster',
               'create', (map { '127.0.0.1:' . $_->port } @nodes),
               '--cluster-replicas', $replicas, '--cluster-yes');
    my $o = `@cmd 2>&1`;
    die "redis-cli --cluster create: $o" if $?;
    return @nodes;
}

# CLUSTER NODES: {port => [id, flags, master id, slot ranges]}
sub nodes_of {
    my ($node) = @_;
    my %n;
    for (split /\n/, ccli($node, 'CLUSTER', 'NODES')) {
        my ($id, $addr, $flags, $master, undef, undef, undef, undef, @slots)
            = split / /;
        next unless defined $addr && $addr =~ /:(\d+)/;
        $n{$1} = { id => $id, flags => $flags, master => $master,
                   slots => \@slots };
    }
    return \%n;
}

sub owner_port {
    my ($node, $slot) = @_;
    my $n = nodes_of($node);
    for my $p (keys %$n) {
        next unless $n->{$p}{flags} =~ /master/
                    && $n->{$p}{flags} !~ /fail/;
        for (@{ $n->{$p}{slots} }) {
            my ($a, $b) = /^(\d+)(?:-(\d+))?$/ or next;
            return $p if $slot >= $a && $slot <= ($b // $a);
        }
    }
    return undef;
}

sub replica_of {
    my ($node, $port) = @_;
    my $n = nodes_of($node);
    my ($r) = grep { $n->{$_}{master} eq $n->{$port}{id}
                     && $n->{$_}{flags} !~ /fail/ } keys %$n;
    return $r;
}

sub cluster_ok {
    my @nodes = @_;
    return !grep { ccli($_, 'CLUSTER', 'INFO') !~ /cluster_state:ok/ }
           grep { $_->running } @nodes;
}

my @nodes = make_cluster(6, 1);
my %by_port = map { ($_->port => $_) } @nodes;
ok(defined wait_until(sub { cluster_ok(@nodes) }, 20), 'the cluster is ok');

my ($slot) = ccli($nodes[0], 'CLUSTER', 'KEYSLOT', $KEY) =~ /(\d+)/;
my $owner = owner_port($nodes[0], $slot);
ok($owner, "slot $slot is on 127.0.0.1:$owner");

# seeds that do not own the slot, after one that does not answer
my @seeds = grep { $_->port != $owner } @nodes;
my $dead = free_port();
my $seeds = join ',', "127.0.0.1:$dead",
                      map { '127.0.0.1:' . $_->port } @seeds[0, 1];

cset($nodes[0], 'HSET', $KEY, 'percent', '30');

my $auto = <<'EOF';
canary_node_id cluster-node;
canary_rollout ramp {
    key $http_x_user_id;
    stable s;
    canary c;
    auto steps=10,50 interval=1s max_error_rate=5% min_requests=1000;
}
EOF

# a rollout the round reads before checkout (configured before it)
my $first = <<'EOF';
canary_rollout first {
    key $http_x_user_id;
    stable s;
    canary c;
    percent 0;
}
EOF
cset($nodes[0], 'HSET', "$TAG:rollout:first", 'percent', '1');

my $status_server = <<'EOF';
server {
    listen 127.0.0.1:%%PORT_S%%;
    location = /status { canary_status; }
}
EOF

# the control API on a node of its own (its workers' clients log apart)
my $api_server = <<'EOF';
server {
    listen 127.0.0.1:%%PORT_S%%;
    location /api/ { canary_api; }
}
EOF

# PATCH rollouts/checkout through the control API: its status
sub api_patch {
    my ($ng, $pct, $quiet) = @_;
    my $res = HTTP::Tiny->new(timeout => 10)->request('PATCH',
        'http://127.0.0.1:' . $ng->port('PORT_S') . '/api/rollouts/checkout',
        { headers => { 'Content-Type' => 'application/json' },
          content => qq({"percent": $pct}) });
    diag("PATCH percent $pct: $res->{status} $res->{content}")
        if $res->{status} != 200 && !$quiet;
    return $res->{status};
}

# the node the status page names
sub node_of {
    my ($ng) = @_;
    my ($st, undef, $body) = http_get($ng->port('PORT_S'),
                                      '/status?format=json');
    return $st == 200 ? (decode_json($body)->{redis}{node} // '') : '';
}

my $ng = start_nginx(sync_conf(extra => "canary_sync_interval 1s;\n$auto"
                                        . $first . $status_server),
                     workers => 2,
                     vars => { REDIS => "cluster=$seeds timeout=300ms",
                               PCT => 5 });
my $port = $ng->port;

ok(defined wait_until(sub { routes_by($port, 30, \@keys) }, $T),
   'the module finds the slot\'s master and syncs') or diag($ng->error_log);
like($ng->error_log,
     qr/cluster slot $slot is on 127\.0\.0\.1:$owner \(CLUSTER SHARDS\)/,
     'the slot is CLUSTER KEYSLOT\'s and its master the owner, from '
     . 'CLUSTER SHARDS');
is(node_of($ng), "127.0.0.1:$owner", 'the status page names the node');
is(log_count($ng, qr/canary redis: 127\.0\.0\.1:$dead is unavailable/), 1,
   'the seed that does not answer: one line');
my ($st, undef, $stext) = http_get($ng->port('PORT_S'), '/status');
like($stext, qr/^Redis node: 127\.0\.0\.1:$owner$/m, 'in text too');

# a user that may not run CLUSTER SHARDS (as a Redis 6 that does not
# know it): CLUSTER SLOTS instead
for my $n (@nodes) {
    ccli($n, 'ACL', 'SETUSER', 'old', 'on', '>pw', '~*', '&*', '+@all',
         '-cluster|shards');
}
my $ng6 = start_nginx(sync_conf(), workers => 1,
                      vars => { REDIS => "cluster=$seeds timeout=300ms "
                                         . 'user=old password=pw',
                                PCT => 5 });
ok(defined wait_until(sub { routes_by($ng6->port, 30, \@keys) }, $T),
   'CLUSTER SHARDS refused: the module syncs') or diag($ng6->error_log);
like($ng6->error_log,
     qr/refused CLUSTER SHARDS \(NOPERM.*\), using CLUSTER SLOTS/,
     'it says so (info)');
like($ng6->error_log,
     qr/cluster slot $slot is on 127\.0\.0\.1:$owner \(CLUSTER SLOTS\)/,
     'and finds the master from CLUSTER SLOTS');
$ng6->stop;

my $t = time_to_route($port, 30, 35, \@keys, sub {
    cset($nodes[0], 'HSET', $KEY, 'percent', '35') });
ok(defined $t, 'a write with redis-cli -c routes (keyspace notification)');
cmp_ok($t // 99, '<', 0.5 * $CanaryTest::SCALE, 'within 500 ms');
note(sprintf 'redis-cli -c write -> routed: %.3f s', $t // 99);

$t = time_to_route($port, 35, 40, \@keys, sub {
    cset($nodes[0], 'HSET', $KEY, 'percent', '40');
    ccli($nodes[0], 'PUBLISH', "$TAG:changed", 'checkout') });
ok(defined $t, 'PUBLISH {canary}:changed on any node reaches the module');

ok(defined wait_until(sub {
       cset($nodes[0], 'GET', "$TAG:leader") =~ /cluster-node/ }, $T),
   'the auto controller holds its lease in the slot');

# the control API: both workers' connections write to the slot's master
my $napi = start_nginx(sync_conf(extra => $api_server), workers => 2,
                       vars => { REDIS => "cluster=$seeds timeout=300ms",
                                 PCT => 5 });
# (503 "nothing was changed" until a worker's connection has found the
# slot's master)
ok(defined wait_until(sub {
       cset($nodes[0], 'HGET', $KEY, 'percent') eq '42'
           || (api_patch($napi, 42, 1) == 200 && 0) }, $T),
   'the API writes once its connections are up');
for my $pct (40, 42, 40, 42, 40) {
    is(api_patch($napi, $pct), 200, "PATCH percent $pct through the API");
    is(cset($nodes[0], 'HGET', $KEY, 'percent'), $pct, 'in the cluster');
}

# a user set (SSCAN) in the slot: a stable user made canary
my ($su) = grep { $_->[1] >= 9000 } @keys;
cset($nodes[0], 'SADD', "$KEY:canary_users", $su->[0]);
ok(defined wait_until(sub {
       (variants($port, [$su]))[0]{variant} eq 'canary' }, $T),
   'a user set in the cluster applies') or diag($ng->error_log);
cset($nodes[0], 'DEL', "$KEY:canary_users");
ok(defined wait_until(sub {
       (variants($port, [$su]))[0]{variant} eq 'stable' }, $T),
   'and its removal');


# a manual failover: CLUSTER FAILOVER on the owner's replica

my $rep = replica_of($nodes[0], $owner);
ok($rep, "127.0.0.1:$rep replicates the owner");
my $t0 = time;
is(ccli($by_port{$rep}, 'CLUSTER', 'FAILOVER'), 'OK', 'CLUSTER FAILOVER');
ok(defined wait_until(sub { ($by_port{$rep}->cli('ROLE') =~ /^master/) },
                      $T), 'the replica is master');
my $t_promoted = time;
note(sprintf 'CLUSTER FAILOVER -> promoted: %.3f s', $t_promoted - $t0);

$t = time_to_route($port, 40, 45, \@keys, sub {
    cset($nodes[0], 'HSET', $KEY, 'percent', '45') }, $T);
ok(defined $t, 'a write on the new master routes after CLUSTER FAILOVER')
    or diag($ng->error_log);
note(sprintf 'after the failover, write -> routed: %.3f s', $t // 99);
ok(defined wait_until(sub {
       $ng->error_log =~ /cluster slot $slot moved from 127\.0\.0\.1:$owner to 127\.0\.0\.1:$rep/
   }, $T), 'the module logs the move') or diag($ng->error_log);
$t = time_to_route($port, 45, 50, \@keys, sub {
    $by_port{$rep}->cli('HSET', $KEY, 'percent', '50') });
cmp_ok($t // 99, '<', 0.5 * $CanaryTest::SCALE,
       'keyspace notifications from the new master, within 500 ms');
is(node_of($ng), "127.0.0.1:$rep", 'the status page names the new master');
for my $pct (52, 50, 52, 50) {
    is(api_patch($napi, $pct), 200,
       "after the failover: PATCH percent $pct through the API");
}
is($by_port{$rep}->cli('HGET', $KEY, 'percent'), 50,
   'written on the new master');
like($napi->error_log, qr/canary api: patch of "checkout" by "127\.0\.0\.1" written to Redis/,
     'the API\'s writes are logged') or diag($napi->error_log);
# a worker whose connection still pointed at the old master gets MOVED
# for its first write, which is then sent again (the sync worker's own
# MOVED moves the API's connection of that process with it: which worker
# takes a PATCH decides whether this happens)
note(sprintf 'writes sent again after MOVED: %d',
     scalar(() = $napi->error_log =~ /refused by a node that no longer owns the slot \(MOVED\), sent again/g));
$napi->stop;


# the master SIGKILLed under wrk: its replica (the old owner) promoted

# wrk in the background for $secs seconds; then the check of its counts

sub wrk_start {
    my ($name, $secs) = @_;
    my $out = $ng->prefix . "/wrk-" . ($name =~ s/\W+/-/gr) . ".out";
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDOUT, '>', $out;
        open STDERR, '>&', \*STDOUT;
        exec $wrk, '-t1', '-c4', "-d${secs}s", '-H', 'X-User-Id: u1',
             "http://127.0.0.1:$port/"
            or POSIX::_exit(127);
    }
    return [$pid, $out, $name];
}

sub wrk_check {
    my ($w) = @_;
    waitpid($w->[0], 0);
    my $wout = CanaryTest::read_file($w->[1]);
    my ($reqs) = $wout =~ /(\d+) requests in/;
    cmp_ok($reqs // 0, '>', 100, "wrk sent requests through $w->[2]")
        or diag($wout);
    unlike($wout, qr/Non-2xx|Socket errors/, "0 failed requests ($w->[2])")
        or diag($wout);
    note("$w->[2]: " . ($reqs // 0) . ' requests');
}

my $w = wrk_start('the failover', 4);
sleep 1;

my $killed = $by_port{$rep};
my $t_kill = time;
$killed->kill('KILL');
my $old = $by_port{$owner};
my $promo = wait_until(sub { $old->cli('ROLE') =~ /^master/ }, 20, 0.01);
ok(defined $promo, 'the cluster promotes the replica');
$t_promoted = time;
diag(sprintf 'master killed -> replica promoted: %.2f s', $promo // 99);

my ($probe) = grep { $_->[1] >= 5000 && $_->[1] < 5500 } @keys;
my $pc = http_client($port);
$old->cli('HSET', $KEY, 'percent', '55');
my $synced;
while (time - $t_promoted < $T) {
    my ($res) = $pc->pipeline(['/', 'X-User-Id' => $probe->[0]]);
    if (($res->[2] // '') =~ /^canary\|/) {
        $synced = time;
        last;
    }
    sleep 0.002;
}
my $since = defined $synced ? $synced - $t_promoted : 99;
diag(sprintf 'promotion -> first write routed: %.3f s', $since);
cmp_ok($since, '<', 1 * $CanaryTest::SCALE, 'under 1 s');

wrk_check($w);

$old->cli('DEL', "$TAG:leader");
ok(defined wait_until(sub {
       $old->cli('GET', "$TAG:leader") =~ /cluster-node/ }, $T),
   'the auto controller takes its lease on the new master');


# the slot migrated to another master while writes go on

my ($dst) = grep { $_->running && $_->port != $old->port
                   && $_->cli('ROLE') =~ /^master/ } @nodes;
my $ids = nodes_of($old);
my ($sid, $did) = ($ids->{ $old->port }{id}, $ids->{ $dst->port }{id});

my $pct = 55;
my $log_at = length $ng->error_log;
$w = wrk_start('the migration', 3);
my $write = sub { $pct++; cset($nodes[0], 'HSET', $KEY, 'percent', $pct) };

$write->();
is(ccli($dst, 'CLUSTER', 'SETSLOT', $slot, 'IMPORTING', $sid), 'OK',
   'SETSLOT IMPORTING');
is(ccli($old, 'CLUSTER', 'SETSLOT', $slot, 'MIGRATING', $did), 'OK',
   'SETSLOT MIGRATING');
$write->();
my $FIRST = "$TAG:rollout:first";
my @k = grep { $_ ne $KEY && $_ ne $FIRST }
        split /\n/, ccli($old, 'CLUSTER', 'GETKEYSINSLOT', $slot, 1000);
ok(scalar(@k) >= 2, scalar(@k) . ' more keys in the slot');
# the other rollout's hash first, which the round reads before this one's:
# its HGETALL is answered ASK, and the reply of this rollout's HGETALL,
# still on the old master, must wait for it and reach its own handler
like(ccli($old, 'MIGRATE', '127.0.0.1', $dst->port, '', 0, 5000, 'KEYS',
          $FIRST), qr/^OK$/, 'MIGRATE, the other rollout\'s hash');
$t = time_to_route($port, $pct, $pct + 1, \@keys, sub { $write->() }, $T);
ok(defined $t, 'a write on the old master routes while a rollout read '
               . 'before it is on the importing node') or diag($ng->error_log);
note(sprintf 'replies held behind ASK, write -> routed: %.3f s', $t // 99);
# the rollout's hash and half of the others first (the slot split between
# two nodes: ASK, TRYAGAIN)
my $half = int(@k / 2);
like(ccli($old, 'MIGRATE', '127.0.0.1', $dst->port, '', 0, 5000, 'KEYS',
          $KEY, @k[0 .. $half - 1]), qr/OK/,
     'MIGRATE, the rollout and half of the other keys');
# redis-cli -c follows ASK: the write is made on the importing node, whose
# keyspace events the module does not hear (the round, each second, reads
# it there with ASKING)
$t = time_to_route($port, $pct, $pct + 1, \@keys, sub { $write->() }, $T);
ok(defined $t, 'while the slot is split, a write made with redis-cli -c on '
               . 'the importing node routes') or diag($ng->error_log);
cmp_ok($t // 99, '<', 1.5 * $CanaryTest::SCALE,
       'within the sync interval (1 s)');
note(sprintf 'slot split, write -> routed: %.3f s', $t // 99);
like($ng->error_log,
     qr/slot $slot is being migrated from 127\.0\.0\.1:${\ $old->port} to 127\.0\.0\.1:${\ $dst->port}, ASK followed/,
     'the module logs that it follows ASK');
$write->();
sleep 0.3;
$write->();
like(ccli($old, 'MIGRATE', '127.0.0.1', $dst->port, '', 0, 5000, 'KEYS',
          @k[$half .. $#k]), qr/OK/, 'MIGRATE, the rest');
$write->();
for my $n ($dst, $old) {
    is(ccli($n, 'CLUSTER', 'SETSLOT', $slot, 'NODE', $did), 'OK',
       'SETSLOT NODE on 127.0.0.1:' . $n->port);
}
$write->();
$write->();
ok(defined wait_until(sub { routes_by($port, $pct, \@keys) }, $T),
   "after the migration, the last write ($pct%) is in force")
    or diag($ng->error_log);
wrk_check($w);

# in order: each percent the sync applied is above the one before
my @applied = substr($ng->error_log, $log_at)
              =~ /rollout "checkout" percent (\d+)\.\d+ \(was/g;
ok(@applied && !grep({ $applied[$_] <= $applied[$_ - 1] } 1 .. $#applied),
   'the writes were applied in order: ' . join(' ', @applied));
like($ng->error_log,
     qr/cluster slot $slot moved from 127\.0\.0\.1:\d+ to 127\.0\.0\.1:${\ $dst->port} \((?:MOVED|CLUSTER SHARDS)\)/,
     'the module followed the slot to the importing node');
is(log_count($ng, qr/ASK followed/), 1, 'ASK followed: one line');
$t = time_to_route($port, $pct, 80, \@keys, sub {
    $dst->cli('HSET', $KEY, 'percent', 80) });
cmp_ok($t // 99, '<', 0.5 * $CanaryTest::SCALE,
       'notifications from the slot\'s new master, within 500 ms');

# the slot's master restarts empty (before its replica takes over): the
# last good state is written back, as into a single Redis

$dst->stop;
$dst->start;
ok(defined wait_until(sub {
       ($dst->cli('HGET', $KEY, 'percent') // '') =~ /^80(?:\.0+)?$/ },
       $T),
   'a shard that restarted empty: the last good state is restored')
    or diag($ng->error_log);
ok(routes_by($port, 80, \@keys), 'routing kept 80% throughout');

my @lines = grep { /\[(?:alert|crit)\]|segfault|exited on signal/ }
            split /\n/, $ng->error_log;
is(scalar @lines, 0, 'no alert, no crash') or diag(join "\n", @lines);
$ng->stop;
$_->stop for @nodes;


# TLS only, an ACL user: three masters

SKIP: {
    require CanaryTLS;
    skip 'no openssl or no TLS in redis-server', 4
        if system('openssl version >/dev/null 2>&1')
           || !CanaryTLS::redis_has_tls();
    my $c = CanaryTLS::make_certs();
    my @tls = ('--tls-cert-file', $c->{server_crt}, '--tls-key-file',
               $c->{server_key}, '--tls-ca-cert-file', $c->{ca},
               '--tls-auth-clients', 'no', '--tls-cluster', 'yes',
               '--tls-replication', 'yes', '--port', '0');
    # start_redis pings the plain port: start by hand on a TLS port
    my @tn;
    for (1 .. 3) {
        my $p = free_port();
        my $dir = CanaryTest::tmp_prefix();
        my $pid = fork // die "fork: $!";
        if ($pid == 0) {
            open STDOUT, '>>', "$dir/redis.log";
            open STDERR, '>&', \*STDOUT;
            exec $CanaryTest::REDIS_SERVER, '--tls-port', $p, '--bind',
                 '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir',
                 $dir, '--cluster-enabled', 'yes', '--cluster-node-timeout',
                 '1000', '--notify-keyspace-events', 'Kh$s',
                 '--user', 'canary', 'on', '>s3cret', '~{canary}:*', '&*',
                 '+@all', @tls
                or POSIX::_exit(127);
        }
        push @tn, { port => $p, pid => $pid, dir => $dir };
    }
    my @tcli = ($CanaryTest::REDIS_CLI, '--tls', '--cacert', $c->{ca},
                '--sni', 'redis.test', '-h', '127.0.0.1');
    for my $n (@tn) {
        wait_until(sub { `@tcli -p $n->{port} PING 2>&1` =~ /PONG/ }, $T);
    }
    my $o = `@tcli --cluster create @{[ map { "127.0.0.1:$_->{port}" } @tn ]} --cluster-yes 2>&1`;
    ok(!$?, 'a TLS cluster of three masters')
        or diag($o, map { CanaryTest::read_file("$_->{dir}/redis.log") } @tn);
    wait_until(sub {
        !grep { `@tcli -p $_->{port} CLUSTER INFO 2>&1`
                !~ /cluster_state:ok/ } @tn }, 20);
    `@tcli -c -p $tn[0]{port} HSET '$KEY' percent 25`;
    $ng = start_nginx(sync_conf(extra => "canary_sync_interval 1s;\n"),
                      workers => 1,
                      vars => { REDIS => "cluster=127.0.0.1:$tn[0]{port} "
                                         . 'user=canary password=s3cret '
                                         . "tls tls_ca=$c->{ca} "
                                         . 'tls_name=redis.test',
                                PCT => 5 });
    ok(defined wait_until(sub { routes_by($ng->port, 25, \@keys) }, $T),
       'TLS and an ACL user limited to {canary}:*: the module syncs')
        or diag($ng->error_log);
    like($ng->error_log,
         qr/cluster slot \d+ is on 127\.0\.0\.1:\d+ \(CLUSTER SHARDS\)/,
         'over TLS, the master\'s tls-port from CLUSTER SHARDS');
    $t = time_to_route($ng->port, 25, 33, \@keys, sub {
        `@tcli -c -p $tn[0]{port} HSET '$KEY' percent 33` });
    ok(defined $t, 'and follows writes') or diag($ng->error_log);
    $ng->stop;
    kill 'TERM', map { $_->{pid} } @tn;
    waitpid($_->{pid}, 0) for @tn;
}

done();
