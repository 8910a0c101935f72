#!/usr/bin/perl

# Redis sync: an HSET governs routing within 100 ms with keyspace
# notifications, within 100 ms with PUBLISH <prefix>changed, within one
# canary_sync_interval (+100 ms) with neither; with 4 workers, in all of
# them; the status page's updated_ms is when the change was published, by
# the node's clock; segments, windows and state from Redis; a deleted
# hash brings the config back.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP qw(decode_json);
use Test::More;
use Time::HiRes qw(sleep time);
use CanaryTest;
use CanarySync;

need_module();

my @keys = test_keys(300);
my $key = 'canary:rollout:checkout';


# push: a 60 s interval, so only a push explains a change within 100 ms

my $r = start_redis(notify => 'Kh$s');
my $status = <<'EOF';
canary_sync_interval 60s;
server {
    listen 127.0.0.1:%%PORT_S%%;
    location /canary { canary_status; }
}
EOF
my $ng = start_nginx(sync_conf(extra => $status),
                     workers => 4,
                     vars => { REDIS => '127.0.0.1:' . $r->port, PCT => 5 });
my $port = $ng->port;

ok(routes_by($port, 5, \@keys), 'config percent before Redis has a hash');

# the first sync happened at connect: wait for the subscription to be up
ok(defined wait_until(sub { $r->cli('PUBSUB', 'NUMPAT') eq '1' }, 10),
   'keyspace pattern subscribed');

my $t = time_to_route($port, 5, 30, \@keys,
                      sub { $r->cli('HSET', $key, 'percent', '30') });
ok(defined $t, 'HSET applied with keyspace notifications');
cmp_ok($t // 99, '<', 0.1, 'within 100 ms') and note(sprintf '%.1f ms', $t * 1000);
ok(routes_by($port, 30, \@keys), 'every key routes by 30%');

$t = time_to_route($port, 30, 12.5, \@keys,
                   sub { $r->cli('HSET', $key, 'percent', '12.5') });
cmp_ok($t // 99, '<', 0.1, 'percent 12.5 within 100 ms');
ok(routes_by($port, 12.5, \@keys), 'every key routes by 12.5%');

# notifications off: nothing applies until the PUBLISH
$r->cli('CONFIG', 'SET', 'notify-keyspace-events', '');
$r->cli('HSET', $key, 'percent', '40');
sleep 0.3;
ok(routes_by($port, 12.5, \@keys),
   'without notifications nor PUBLISH, the 60 s interval has not come');

$t = time_to_route($port, 12.5, 40, \@keys,
                   sub { $r->cli('PUBLISH', 'canary:changed', 'checkout') });
ok(defined $t, 'PUBLISH canary:changed applied');
cmp_ok($t // 99, '<', 0.1, 'within 100 ms') and note(sprintf '%.1f ms', $t * 1000);
ok(routes_by($port, 40, \@keys), 'every key routes by 40%');


# every worker: many connections, so that all 4 worker pids answer

my $before = int(time * 1000);
$r->cli('HSET', $key, 'percent', '70');
$r->cli('PUBLISH', 'canary:changed', 'checkout');
ok(defined wait_until(sub { routes_by($port, 70, \@keys) }, 5),
   'percent 70 applied');
my $after = int(time * 1000) + 1;

my (undef, undef, $json) = http_get($ng->port('PORT_S'),
                                    '/canary?format=json');
my ($st) = grep { $_->{name} eq 'checkout' }
           @{ decode_json($json)->{rollouts} };
ok($st->{updated_ms} >= $before && $st->{updated_ms} <= $after
   && int($st->{updated_ms} / 1000) == $st->{updated},
   'updated_ms: when the change was published, in ms')
    or diag "$before <= $st->{updated_ms} <= $after, $st->{updated}";

my (%pids, $bad);
for (1 .. 60) {
    my @a = variants($port, [@keys[0 .. 29]]);
    for my $i (0 .. 29) {
        $pids{ $a[$i]{pid} }++;
        $bad++ if $a[$i]{variant}
                  ne ($keys[$i][1] < 7000 ? 'canary' : 'stable');
    }
    last if keys %pids == 4;
}
is(scalar keys %pids, 4, 'answers from all 4 workers');
ok(!$bad, 'every worker routes by the new percent');


# segments, window, state; other fields are left alone

$r->cli('HSET', $key, 'percent:US', '90', 'percent:DE', '0',
        'state', 'paused', 'step', '3');
$r->cli('PUBLISH', 'canary:changed', 'checkout');
ok(defined wait_until(sub {
       routes_by($port, 90, \@keys, 'X-Country' => 'US')
       && routes_by($port, 0, \@keys, 'X-Country' => 'DE')
   }, 5), 'per-segment percents');
ok(routes_by($port, 70, \@keys, 'X-Country' => 'FR'),
   'a segment without a value uses percent');
my ($a) = variants($port, [$keys[0]], 'X-Country' => 'US');
is($a->{reason}, 'segment', 'reason segment');

$r->cli('HSET', $key, 'start', '2000-01-01T00:00:00Z',
        'end', '2001-01-01T00:00:00Z');
$r->cli('PUBLISH', 'canary:changed', 'checkout');
ok(defined wait_until(sub { routes_by($port, 0, \@keys) }, 5),
   'past window: everyone stable');
($a) = variants($port, [$keys[0]]);
is($a->{reason}, 'window', 'reason window');

$r->cli('HSET', $key, 'start', '946684800', 'end', int(time) + 3600);
$r->cli('PUBLISH', 'canary:changed', 'checkout');
ok(defined wait_until(sub { routes_by($port, 70, \@keys) }, 5),
   'open window (unix seconds)');

$r->cli('HDEL', $key, 'percent:US', 'percent:DE', 'start', 'end');
$r->cli('PUBLISH', 'canary:changed', 'checkout');
ok(defined wait_until(sub {
       routes_by($port, 70, \@keys, 'X-Country' => 'US') }, 5),
   'segments removed');

# a deleted hash: back to the config's percent
$r->cli('DEL', $key);
$r->cli('PUBLISH', 'canary:changed', 'checkout');
ok(defined wait_until(sub { routes_by($port, 5, \@keys) }, 5),
   'hash deleted: the config percent again');

like($ng->error_log, qr/canary sync: rollout "checkout" percent 70\.00 .*from redis/,
     'each change is logged');


# polling only: no notifications, no PUBLISH, canary_sync_interval 1s

my $r2 = start_redis();
my $ng2 = start_nginx(sync_conf(extra => 'canary_sync_interval 1s;'),
                      vars => { REDIS => '127.0.0.1:' . $r2->port,
                                PCT => 5 });
my $port2 = $ng2->port;

ok(defined wait_until(sub {
       $r2->cli('INFO', 'commandstats') =~ /cmdstat_hgetall:calls=[1-9]/ },
       5), 'the sync worker talks to Redis');

# right after a round, so that a full interval lies ahead
my $syncs = $r2->cli('INFO', 'commandstats') =~ /cmdstat_hgetall:calls=(\d+)/
            ? $1 : 0;
wait_until(sub {
    ($r2->cli('INFO', 'commandstats') =~ /cmdstat_hgetall:calls=(\d+)/
     ? $1 : 0) > $syncs }, 3, 0.002);

$t = time_to_route($port2, 5, 60, \@keys,
                   sub { $r2->cli('HSET', $key, 'percent', '60') });
ok(defined $t, 'HSET applied by polling');
ok(routes_by($port2, 60, \@keys), 'every key routes by 60%');
cmp_ok($t // 99, '<', 1.1, 'within one interval + 100 ms')
    and note(sprintf '%.0f ms', $t * 1000);
cmp_ok($t // 0, '>', 0.3, 'and not by a push (there is none)');

done();
