#!/usr/bin/perl

# Strict values from Redis: each bad value is refused with one error line
# naming key, field and value (not one per round), the last good value
# stays in force, the other fields of the same hash still apply; a
# "hash unleash" rollout takes whole percents only; a key of the wrong
# type is refused too.  Also: bad canary_redis / canary_sync_interval /
# canary_state_file values fail nginx -t with file and line.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(sleep time);
use CanaryTest;
use CanarySync;

need_module();

my @keys = test_keys(300);
my $key = 'canary:rollout:checkout';

my $r = start_redis();
my $ng = start_nginx(sync_conf(extra => 'canary_sync_interval 100ms;'),
                     vars => { REDIS => '127.0.0.1:' . $r->port, PCT => 5 });
my $port = $ng->port;

$r->cli('HSET', $key, 'percent', '20');
ok(defined wait_until(sub { routes_by($port, 20, \@keys) }, 5),
   'good percent applied');

sub refused_re {
    my ($value, $field) = @_;
    return qr/\[error\].*canary sync: refused "\Q$value\E" for field "\Q$field\E" of "\Q$key\E"/;
}

for my $bad ('abc', '-1', '101', '1.234', '50%', '', '100.01', ' 5',
             '1e2', '0x10')
{
    $r->cli('HSET', $key, 'percent', $bad);
    my $re = refused_re($bad, 'percent');
    ok(defined wait_until(sub { log_count($ng, $re) >= 1 }, 5),
       "percent \"$bad\" refused and logged");
    ok(routes_by($port, 20, \@keys), "percent 20 stays in force");
    sleep 0.35;    # three more rounds
    is(log_count($ng, $re), 1, "\"$bad\" logged once, not every round");
}

# bytes that could forge log lines are escaped in the log
$r->cli('HSET', $key, 'percent', "5\nforged \"x\"");
ok(defined wait_until(sub {
       log_count($ng, refused_re('5\x0aforged \x22x\x22', 'percent')) == 1 },
       5), 'a value with a newline and quotes is logged escaped');
ok(routes_by($port, 20, \@keys), 'percent 20 stays in force');

# the other fields still apply while percent is refused
$r->cli('HSET', $key, 'percent', 'abc', 'percent:US', '50');
ok(defined wait_until(sub {
       routes_by($port, 50, \@keys, 'X-Country' => 'US') }, 5),
   'a good segment applies beside a refused percent');
ok(routes_by($port, 20, \@keys), 'percent still 20');

# a refused segment keeps its last good value; a new bad one is dropped
$r->cli('HSET', $key, 'percent:US', '50.5.5', 'percent:DE', 'x');
ok(defined wait_until(sub {
       log_count($ng, refused_re('x', 'percent:DE')) == 1
       && log_count($ng, refused_re('50.5.5', 'percent:US')) == 1 }, 5),
   'bad segment values refused');
ok(routes_by($port, 50, \@keys, 'X-Country' => 'US'), 'US keeps 50');
ok(routes_by($port, 20, \@keys, 'X-Country' => 'DE'),
   'DE without a good value uses percent');

# times and state
for my $bad (['start', 'tomorrow'], ['end', '2026-02-30T00:00:00Z'],
             ['end', '2026-11-28T10:00:00+01:00'], ['start', '-5'],
             ['state', 'running'], ['state', ''])
{
    $r->cli('HSET', $key, @$bad);
    ok(defined wait_until(sub { log_count($ng, refused_re(@$bad[1, 0])) == 1 },
                          5), "$bad->[0] \"$bad->[1]\" refused");
}
ok(routes_by($port, 20, \@keys), 'routing unchanged by refused times');

# a good value again: applies, and a later bad one is logged again
$r->cli('HSET', $key, 'percent', '30');
ok(defined wait_until(sub { routes_by($port, 30, \@keys) }, 5),
   'a good percent applies again');
my $before = log_count($ng, refused_re('abc', 'percent'));
$r->cli('HSET', $key, 'percent', 'abc');
ok(defined wait_until(sub {
       log_count($ng, refused_re('abc', 'percent')) == $before + 1 }, 5),
   'the same bad value after a good one is logged again');
ok(routes_by($port, 30, \@keys), 'percent 30 stays in force');

# a key of the wrong type
$r->cli('SET', 'tmp', 'oops');
$r->cli('RENAME', 'tmp', $key);    # atomic: no round sees no hash
ok(defined wait_until(sub {
       $ng->error_log =~ /HGETALL "\Q$key\E" answered "WRONGTYPE/ }, 5),
   'a string where the hash should be is refused');
ok(routes_by($port, 30, \@keys), 'percent 30 stays in force');
$r->cli('DEL', $key);
ok(defined wait_until(sub { routes_by($port, 5, \@keys) }, 5),
   'no hash at all: the config percent');

my $refused = () = $ng->error_log =~ /canary sync: refused|answered "WRONG/g;
cmp_ok($refused, '>=', 20, "refusals logged: $refused");


# hash unleash: whole percents only

my $r2 = start_redis();
my $ng2 = start_nginx(sync_conf(extra => 'canary_sync_interval 100ms;',
                                rollout => 'hash unleash;'),
                      vars => { REDIS => '127.0.0.1:' . $r2->port,
                                PCT => 5 });
$r2->cli('HSET', $key, 'percent', '12.5');
ok(defined wait_until(sub { log_count($ng2, refused_re('12.5', 'percent')) },
                      5), 'unleash: 12.5 refused');
$r2->cli('HSET', $key, 'percent', '12');
ok(defined wait_until(sub {
       $ng2->error_log =~ /rollout "checkout" percent 12\.00/ }, 5),
   'unleash: 12 applied');


# directives: nginx -t names file and line

for my $c (['canary_redis 127.0.0.1:6379 db=x;', qr/invalid parameter "db=x"/],
           ['canary_redis 127.0.0.1:6379 timeout=0;', qr/timeout=0/],
           ['canary_redis 127.0.0.1:6379 colour=red;', qr/colour=red/],
           ['canary_redis 127.0.0.1:99999;', qr/canary_redis/],
           ['canary_redis 127.0.0.1:6379 password=;', qr/password=/],
           ["canary_redis 127.0.0.1:6379;\ncanary_redis 127.0.0.1:6380;",
            qr/duplicate/],
           ['canary_sync_interval 5ms;', qr/at least 10ms/],
           ['canary_sync_interval soon;', qr/invalid value/],
           ['canary_state_file /nonexistent/dir/canary.state;',
            qr/folder "\/nonexistent\/dir" is missing/])
{
    my ($rc, $out) = nginx_t("canary_zone 1m;\n$c->[0]\n");
    isnt($rc, 0, "nginx -t refuses: $c->[0]");
    like($out, qr/$c->[1].*nginx\.conf:\d+/, 'with the reason, file and line');
}

my ($rc, $out) = nginx_t("canary_zone 1m;\ncanary_redis unix:/tmp/x.sock "
                         . "db=2 password=p prefix=app: timeout=250ms;\n"
                         . "canary_sync_interval 2s;\n"
                         . "canary_state_file %%PREFIX%%/canary.state;\n");
is($rc, 0, 'a good config passes nginx -t') or diag($out);

done();
