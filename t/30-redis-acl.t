#!/usr/bin/perl

# canary_redis user=NAME password=SECRET: AUTH with an ACL user.
#
#   - a user limited to the module's key pattern, channels and commands
#     (the ACL in README's "Production Redis") works: sync, push, the auto
#     controller, and Redis' ACL LOG holds no refusal;
#   - a user without SUBSCRIBE/PSUBSCRIBE: one line says so, changes
#     apply at the next canary_sync_interval;
#   - a wrong password: AUTH refused, logged once without the password,
#     and the last good state stays.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use HTTP::Tiny;
use Test::More;
use Time::HiRes qw(sleep time);
use CanaryTest;
use CanarySync;

need_module();

# every wait, stretched for slow runs (valgrind)
my $T = 10 * $CanaryTest::SCALE;

my @keys = test_keys(300);
my $secret = 'acl-Pa55-word';

# the minimal ACL, as README spells it out
my @acl = (qw(on resetkeys ~canary:* resetchannels &canary:changed
              &canary:alerts &__keyspace@0__:canary:* -@all
              +ping +hgetall +scard +sscan +subscribe +psubscribe +info
              +mget +eval +get +set +exists +hset +sadd +pexpire +rename
              +persist +del +publish
              +eval +get +set +pexpire +hmget +hset +hdel +hincrby +xadd
              +publish
              +eval +hget +hset +hdel +xadd +publish +sadd +srem +xrevrange),
           ">$secret");

my $auto = <<'EOF';
canary_sync_interval %%IVAL%%;
canary_node_id acl-node;
canary_rollout ramp {
    key $http_x_user_id;
    stable s;
    canary c;
    auto steps=10,50 interval=1s max_error_rate=5% min_requests=1000;
}

server {
    listen 127.0.0.1:%%PORT_API%%;
    location /api/ { canary_api; }
}
EOF

sub acl_nginx {
    my ($user, $pw, $ival, $port) = @_;
    return start_nginx(sync_conf(extra => $auto), workers => 2,
                       vars => { REDIS => "127.0.0.1:$port user=$user "
                                          . "password=$pw",
                                 PCT => 5, IVAL => $ival });
}

my $r = start_redis(notify => 'Kh$s');
is($r->cli('ACL', 'SETUSER', 'canary', @acl), 'OK', 'ACL SETUSER canary');
is($r->cli('ACL', 'SETUSER', 'nosub', @acl, '-subscribe', '-psubscribe'),
   'OK', 'ACL SETUSER nosub: the same without SUBSCRIBE/PSUBSCRIBE');
$r->cli('HSET', 'canary:rollout:checkout', 'percent', '30');
$r->cli('ACL', 'LOG', 'RESET');

# the limited user: everything works, nothing is refused

my $ng = acl_nginx('canary', $secret, '60s', $r->port);
ok(defined wait_until(sub { routes_by($ng->port, 30, \@keys) }, $T),
   'sync as the ACL user');
like($r->cli('CLIENT', 'LIST'), qr/cmd=psubscribe user=canary/,
     'connected as user canary, subscribed');
my $t = time_to_route($ng->port, 30, 40, \@keys, sub {
    $r->cli('HSET', 'canary:rollout:checkout', 'percent', '40') });
ok(defined $t, 'a push applies (keyspace notification, interval 60 s)');
$t = time_to_route($ng->port, 40, 41, \@keys, sub {
    $r->cli('PUBLISH', 'canary:changed', 'checkout');
    $r->cli('HSET', 'canary:rollout:checkout', 'percent', '41') });
ok(defined $t, 'and so does canary:changed');

ok(defined wait_until(sub { $r->cli('GET', 'canary:leader') =~ /acl-node/ },
                      $T), 'the auto controller holds the lease');
$r->cli('HSET', 'canary:rollout:ramp', 'state', 'progressing');
ok(defined wait_until(sub {
       $r->cli('HGET', 'canary:rollout:ramp', 'checked') =~ /^\d+$/ }, $T),
   'and judges an interval');

# the control API's writes as the same user

my $api = 'http://127.0.0.1:' . $ng->port('PORT_API') . '/api/rollouts';
my $http = HTTP::Tiny->new(timeout => 10);
my %json = (headers => { 'Content-Type' => 'application/json' });
is($http->request('PATCH', "$api/checkout",
                  { %json, content => '{"percent":42}' })->{status},
   200, 'canary_api: PATCH as the ACL user');
is($http->request('PUT', "$api/checkout/canary_users/u1", \%json)->{status},
   200, 'canary_api: PUT a user');
is($http->request('DELETE', "$api/checkout/canary_users/u1", \%json)
   ->{status}, 200, 'canary_api: DELETE it');
is($http->request('POST', "$api/ramp/pause", \%json)->{status}, 200,
   'canary_api: pause');
is($http->request('GET', "$api/ramp/history")->{status}, 200,
   'canary_api: the history');
is($http->request('POST', "$api/ramp/resume", \%json)->{status}, 200,
   'canary_api: resume');

is($r->cli('ACL', 'LOG'), '', "Redis' ACL LOG holds no refusal")
    or diag($r->cli('ACL', 'LOG'));
unlike($ng->error_log, qr/NOPERM|refused/, 'no refusal in error.log');

# the password changes under it: AUTH refused, the last good state stays

$r->cli('ACL', 'SETUSER', 'canary', 'resetpass', '>another-one');
$r->cli('CLIENT', 'KILL', 'USER', 'canary');
ok(defined wait_until(sub {
       $ng->error_log =~ /AUTH on 127\.0\.0\.1:\d+ refused: WRONGPASS/ }, $T),
   'a refused AUTH is logged');
$r->cli('HSET', 'canary:rollout:checkout', 'percent', '70');
$r->cli('PUBLISH', 'canary:changed', 'checkout');
sleep 1;
ok(routes_by($ng->port, 42, \@keys),
   'the last good state (42%, the API\'s) stays');
is(log_count($ng, qr/AUTH on .* refused/), 1, 'logged once, not per try');
unlike($ng->error_log, qr/\Q$secret\E|another-one/,
       'the password is not in error.log');
$ng->stop;
$r->cli('ACL', 'SETUSER', 'canary', 'resetpass', ">$secret");

# a wrong password from the start: config routing

$ng = acl_nginx('canary', 'wrong-pw', '100ms', $r->port);
ok(defined wait_until(sub { $ng->error_log =~ /AUTH on .* refused/ }, $T),
   'a wrong password is refused');
sleep 0.5;
is(log_count($ng, qr/AUTH on .* refused/), 1, 'once');
ok(routes_by($ng->port, 5, \@keys), 'routing by the config (5%)');
unlike($ng->error_log, qr/wrong-pw/, 'the password is not in error.log');
$ng->stop;

# a user without SUBSCRIBE: logged, changes apply at the sync interval

$r->cli('HSET', 'canary:rollout:checkout', 'percent', '20');
$ng = acl_nginx('nosub', $secret, '300ms', $r->port);
ok(defined wait_until(sub { routes_by($ng->port, 20, \@keys) }, $T),
   'no SUBSCRIBE: still syncs');
ok(defined wait_until(sub {
       $ng->error_log =~ /subscribing failed: NOPERM.*next canary_sync_interval/
   }, $T), 'and says that changes wait for the interval');
$t = time_to_route($ng->port, 20, 25, \@keys, sub {
    $r->cli('HSET', 'canary:rollout:checkout', 'percent', '25') });
ok(defined $t, 'a change applies at the next interval');
cmp_ok($t // 99, '<', 1.5 * $CanaryTest::SCALE, 'within 1.5 s (300 ms)');
$ng->stop;

done();
