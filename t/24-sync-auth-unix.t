#!/usr/bin/perl

# canary_redis with password= (AUTH) and db= (SELECT), keyspace
# notifications of that db; a wrong password is logged once and routing
# keeps going; a unix socket (in a temp dir the worker user can reach);
# prefix=.

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

# AUTH and db=2

my $r = start_redis(password => 's3cret', notify => 'Kh$s');
my $ng = start_nginx(sync_conf(extra => 'canary_sync_interval 60s;'),
                     vars => { REDIS => '127.0.0.1:' . $r->port
                                        . ' password=s3cret db=2',
                               PCT => 5 });
my $port = $ng->port;

ok(defined wait_until(sub { $r->cli('PUBSUB', 'NUMPAT') eq '1' }, 10),
   'subscribed after AUTH');
like($r->cli('CLIENT', 'LIST'), qr/ db=2 sub=1 psub=1 /,
     'the subscription runs in db 2');

$r->cli('-n', 0, 'HSET', 'canary:rollout:checkout', 'percent', '50');
my $t = time_to_route($port, 5, 25, \@keys, sub {
    $r->cli('-n', 2, 'HSET', 'canary:rollout:checkout', 'percent', '25') });
ok(defined $t, 'the HSET in db 2 applies');
ok(routes_by($port, 25, \@keys), 'not the one in db 0');
cmp_ok($t // 99, '<', 0.1 * $CanaryTest::SCALE,
       'within 100 ms (keyspace notification in db 2)');

$r->cli('-n', 2, 'HSET', 'canary:rollout:checkout', 'percent', '26');
$r->cli('-n', 0, 'PUBLISH', 'canary:changed', 'checkout');
ok(defined wait_until(sub { routes_by($port, 26, \@keys) }, 5),
   'PUBLISH (channels are not per db) applies too');
$ng->stop;

# a wrong password: logged once, config routing

$ng = start_nginx(sync_conf(extra => 'canary_sync_interval 100ms;'),
                  vars => { REDIS => '127.0.0.1:' . $r->port
                                     . ' password=wrong db=2',
                            PCT => 5 });
ok(defined wait_until(sub { $ng->error_log =~ /AUTH on .* refused/ }, 5),
   'a refused AUTH is logged');
sleep 1;
is(log_count($ng, qr/AUTH on .* refused/), 1, 'once, not per try');
ok(routes_by($ng->port, 5, \@keys), 'routing by the config meanwhile');
$ng->stop;


# a unix socket and a prefix

my $u = start_redis(unix => 1);
ok(-S $u->unix, 'redis listens on ' . $u->unix);
$ng = start_nginx(sync_conf(extra => 'canary_sync_interval 60s;'),
                  vars => { REDIS => 'unix:' . $u->unix . ' prefix=app1:',
                            PCT => 5 });
$port = $ng->port;
ok(defined wait_until(sub { $u->cli('PUBSUB', 'NUMSUB', 'app1:changed')
                            =~ /app1:changed\n1/ }, 10),
   'subscribed over the unix socket to app1:changed');

$u->cli('HSET', 'canary:rollout:checkout', 'percent', '90');
$u->cli('HSET', 'app1:rollout:checkout', 'percent', '15');
$u->cli('PUBLISH', 'app1:changed', 'checkout');
ok(defined wait_until(sub { routes_by($port, 15, \@keys) }, 5),
   'over the unix socket, with the prefix');

done();
