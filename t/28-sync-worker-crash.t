#!/usr/bin/perl

# The sync worker SIGKILLed while it builds a big user set, three times:
# the half-built set is in the zone and in no snapshot; the next sync
# worker frees it (and says so).  Once the sets replaced meanwhile are
# past their 30 s grace, the zone holds what it held before the kills:
# one set of 100,000 members, and not the 4 MB table of each set left
# half-built.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use JSON::PP ();
use Time::HiRes qw(sleep time);
use CanaryTest;
use CanarySync;
use CanaryChaos;

need_module();

my $n = 100_000;
my $key = 'canary:rollout:checkout';

my $r = start_redis();
my $ng = start_nginx(sync_conf(zone => '64m',
                               extra => "canary_sync_interval 200ms;\n"
                                        . "server { listen 127.0.0.1:%%PORT_S%%;\n"
                                        . "    location = /canary { canary_status; } }"),
                     workers => 2,
                     vars => { REDIS => '127.0.0.1:' . $r->port, PCT => 0 },
                     allow_log => [qr/exited on signal 9/,
                                   qr/shared memory zone "canary" was locked by/]);
my $port = $ng->port;

sub variant_of {
    my ($user) = @_;
    my ($a) = variants($port, [[$user]]);
    return "$a->{variant} $a->{reason}";
}

$r->cli('EVAL', "for i=1,$n,1000 do local t={} for j=i,math.min(i+999,$n) "
        . "do t[#t+1]='m'..j end redis.call('SADD',KEYS[1],unpack(t)) "
        . "end return 1", 1, "$key:canary_users");

sub zone_used {
    my (undef, undef, $body) = http_get($ng->port('PORT_S'), '/canary?format=json');
    return JSON::PP::decode_json($body)->{zone}{used};
}

ok(defined wait_until(sub { variant_of("m$n") eq 'canary canary_users' }, 30, 0.05),
   "$n members synced");
my $before = zone_used();

# SSCAN calls so far: a kill once the count moves falls inside a build
sub sscans {
    return ($r->cli('INFO', 'commandstats') =~ /cmdstat_sscan:calls=(\d+)/)[0]
           // 0;
}

my $killed = 0;
for my $i (1 .. 3) {
    my $sync = CanaryChaos::sync_worker($ng, $r->port);
    my $scans = sscans();
    $r->cli('SADD', "$key:canary_users", "extra$i");
    $r->cli('PUBLISH', 'canary:changed', 'checkout');
    wait_until(sub { sscans() > $scans + 2 }, 5, 0.002);
    if ($sync && kill 'KILL', $sync) {
        $killed++;
    }
    $ng->wait_workers(10);
    # the new sync worker connects before the next kill
    wait_until(sub { my $s = CanaryChaos::sync_worker($ng, $r->port);
                     $s && $s != ($sync // 0) }, 10, 0.02);
}
is($killed, 3, 'the sync worker was killed three times');

ok(defined wait_until(sub { variant_of('extra3') eq 'canary canary_users' }, 30, 0.05),
   'the set with the last change is in force');
is(variant_of('m1'), 'canary canary_users', 'and it is whole');

my $freed = log_count($ng, qr/canary sync: freed the user set of \d+ members that worker \d+ left half-built/);
cmp_ok($freed, '>=', 1, "half-built sets freed ($freed of 3 kills fell in a build)");
is(log_count($ng, qr/no room in canary_zone/), 0, 'no set refused for room');

my $after;
ok(defined wait_until(sub { $after = zone_used(); $after <= $before + 256 * 1024 },
                      10, 0.1),
   "the zone is back to what it held before the kills ($before -> $after bytes)");

done();
