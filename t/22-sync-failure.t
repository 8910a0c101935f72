#!/usr/bin/perl

# Fail-static: Redis stopped (SIGSTOP), killed, restarted, replaced by a
# server that answers garbage: requests keep flowing with the last good
# percent and no error response, the outage is logged once, the client
# reconnects when Redis is back.  Reload and a killed worker 0: the new
# worker takes over, and only one pair of connections stays.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(sleep time);
use CanaryTest;
use CanarySync;

need_module();

my @keys = test_keys(200);
my $key = 'canary:rollout:checkout';

my $r = start_redis(notify => 'Kh$s');
my $rport = $r->port;
my $ng = start_nginx(sync_conf(extra => 'canary_sync_interval 200ms;'),
                     workers => 2,
                     vars => { REDIS => "127.0.0.1:$rport timeout=300ms",
                               PCT => 5 });
my $port = $ng->port;

$r->cli('HSET', $key, 'percent', '30');
ok(defined wait_until(sub { routes_by($port, 30, \@keys) }, 5),
   'percent 30 from Redis');

# requests for a while: all 200, all by percent 30

sub keeps_serving {
    my ($secs) = @_;
    my $end = time + $secs;
    my ($n, $bad) = (0, 0);
    while (time < $end) {
        $n++;
        $bad++ unless routes_by($port, 30, \@keys);
    }
    return ($n, $bad);
}

sub outages { log_count($ng, qr/\[error\].*canary redis: .* is unavailable/) }
sub backs { log_count($ng, qr/\[notice\].*canary redis: .* answers again/) }


# SIGSTOP: connections stay open, replies never come

$r->kill('STOP');
my ($n, $bad) = keeps_serving(2);
ok($n > 5 && !$bad, "Redis stopped: $n rounds of requests, all 200 by 30%");
ok(defined wait_until(sub { outages() == 1 }, 5), 'the outage is logged');
$r->kill('CONT');
ok(defined wait_until(sub { backs() == 1 }, 10), 'reconnected after SIGCONT');
$r->cli('HSET', $key, 'percent', '31');
ok(defined wait_until(sub { routes_by($port, 31, \@keys) }, 5),
   'changes apply again');
$r->cli('HSET', $key, 'percent', '30');
ok(defined wait_until(sub { routes_by($port, 30, \@keys) }, 5), 'back to 30');


# killed, then started again on the same port (empty: no persistence)

$r->kill('KILL');
($n, $bad) = keeps_serving(2.5);
ok($n > 5 && !$bad, "Redis killed: $n rounds of requests, all 200 by 30%");
is(outages(), 2, 'one more line for the second outage, not one per try');

my $tries = () = $ng->error_log =~ /canary redis/g;
cmp_ok($tries, '<', 8, "few lines about Redis in all ($tries)");

$r->start;
$r->cli('CONFIG', 'SET', 'notify-keyspace-events', 'Kh$s');
ok(defined wait_until(sub { backs() == 2 }, 10), 'reconnected after restart');

# the restarted Redis lost its data (another run_id, no key): the last
# good state is written back, not the config obeyed (t/32 has the rest)
ok(defined wait_until(sub {
    $r->cli('HGET', $key, 'percent') eq '30.00'
}, 5), 'an empty Redis gets the last good state back');
ok(routes_by($port, 30, \@keys), 'and routing stays on it');
$r->cli('HSET', $key, 'percent', '31');
ok(defined wait_until(sub { routes_by($port, 31, \@keys) }, 5),
   'HSET after the restart applies');
$r->cli('HSET', $key, 'percent', '30');
ok(defined wait_until(sub { routes_by($port, 30, \@keys) }, 5), 'back to 30');


# a server that answers garbage on the same port

$r->stop;
my $fake = fake_redis($rport);
($n, $bad) = keeps_serving(1.5);
ok($n > 5 && !$bad, "garbage replies: $n rounds of requests, all 200 by 30%");
ok(defined wait_until(sub { $ng->error_log =~ /answers garbage/ }, 5),
   'the garbage is logged');
is(outages(), 3, 'as one outage');
kill 'KILL', $fake;
waitpid($fake, 0);

# valid RESP, but the wrong answers (+OK to everything)
$fake = fake_redis($rport, "+OK\r\n");
($n, $bad) = keeps_serving(1.5);
ok($n > 5 && !$bad, "wrong replies: $n rounds of requests, all 200 by 30%");
kill 'KILL', $fake;
waitpid($fake, 0);

$r->start;
$r->cli('CONFIG', 'SET', 'notify-keyspace-events', 'Kh$s');
$r->cli('HSET', $key, 'percent', '33');
ok(defined wait_until(sub { routes_by($port, 33, \@keys) }, 10),
   'Redis is back: changes apply');


# reload: the new worker 0 syncs, the old one lets go

sub nginx_clients {
    return scalar grep { /cmd=/ } split /\n/, $r->cli('CLIENT', 'LIST');
}

ok($ng->reload, 'reload');
$r->cli('HSET', $key, 'percent', '34');
ok(defined wait_until(sub { routes_by($port, 34, \@keys) }, 5),
   'after a reload, changes apply');
ok(defined wait_until(sub { nginx_clients() == 3 }, 5),
   'two connections from nginx (+ redis-cli), the old worker closed its own')
    or diag($r->cli('CLIENT', 'LIST'));

# a crash of the sync worker: the respawned worker 0 takes over

my ($pid) = $ng->error_log =~ /.*canary sync: worker (\d+) syncs/s;
ok($pid, "sync worker $pid");
expect_log(qr/exited on signal 9/);
kill 'KILL', $pid;
ok(defined wait_until(sub { !kill 0, $pid }, 5), 'killed');
ok($ng->wait_workers(10), 'respawned');
$r->cli('HSET', $key, 'percent', '35');
ok(defined wait_until(sub { routes_by($port, 35, \@keys) }, 5),
   'after a crash of worker 0, changes apply');
ok(defined wait_until(sub { nginx_clients() == 3 }, 5),
   'still two connections from nginx');

done();
