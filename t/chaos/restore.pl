#!/usr/bin/perl

# How long writing the last good state back into an empty Redis takes, and
# what it costs the requests the sync worker serves meanwhile:
#
#   perl t/chaos/restore.pl [members ...]     (default 10000 100000)
#
# For each size: a real redis-server and nginx (1 worker, so every request
# meets the sync worker), a canary_users set of that many members read
# into the zone, then Redis killed and restarted empty.  Printed: the time
# from nginx's new connection (seen in CLIENT LIST, polled every 0.5 ms)
# to the whole set being back (SCARD after every 20 requests), and the
# slowest of the requests a client sent back to back meanwhile, next to
# the slowest before the fault.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/../lib";

use IO::Socket::INET;
use Time::HiRes qw(sleep time);
use CanaryTest;
use CanarySync qw(wait_until);

my @sizes = @ARGV ? @ARGV : (10_000, 100_000);

my $conf = <<'EOF';
canary_zone 256m;
canary_redis 127.0.0.1:%%RPORT%% timeout=2s;
canary_sync_interval 1s;

canary_rollout checkout {
    key $http_x_user_id;
    stable s;
    canary c;
    percent 0;
}

server {
    listen 127.0.0.1:%%PORT%%;
    location / {
        canary checkout;
        return 200 "$canary_variant\n";
    }
}
EOF

# the slowest of back-to-back requests on keep-alive connections while
# $cond is false (or for $secs), in ms; and how many were sent
sub probe {
    my ($port, $cond, $secs) = @_;
    my ($s, $max, $n, $t0) = (undef, 0, 0, time);
    while (time - $t0 < $secs && !($cond && $cond->())) {
        for (1 .. 20) {
            my $t = time;
            # a new connection after nginx's keepalive_requests (100)
            $s //= IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                         PeerPort => $port)
                or die "connect: $!";
            print $s "GET / HTTP/1.1\r\nHost: l\r\nX-User-Id: u$n\r\n\r\n";
            my $buf = '';
            while ($buf !~ /\r\n\r\n.*\n/s) {
                sysread($s, $buf, 4096, length $buf) or die "no answer";
            }
            $s = undef if $buf =~ /^Connection: close/mi;
            my $dt = (time - $t) * 1000;
            $max = $dt if $dt > $max;
            $n++;
        }
    }
    return ($max, $n);
}

# SCARD on a connection of its own (redis-cli's fork would dominate)
sub scard {
    my ($rs, $key) = @_;
    print $rs "SCARD $key\r\n";
    my $l = <$rs> // die "redis: no answer";
    return $l =~ /^:(\d+)/ ? $1 : -1;
}

# has nginx connected (a client other than this one)?
sub nginx_connected {
    my ($rs) = @_;
    print $rs "CLIENT LIST\r\n";
    my $l = <$rs> // die "redis: no answer";
    my ($len) = $l =~ /^\$(\d+)/ or die "redis: $l";
    my $body = '';
    read($rs, $body, $len + 2);
    return ($body =~ tr/\n//) > 1;
}

printf "%10s %12s %14s %14s %10s\n", 'members', 'restore ms',
       'max req ms', 'max req ms', 'requests';
printf "%10s %12s %14s %14s %10s\n", '', '', '(before)', '(restoring)',
       '(restoring)';

for my $n (@sizes) {
    my $r = start_redis();
    my $ng = start_nginx($conf, workers => 1, vars => { RPORT => $r->port },
                         log_level => 'notice');
    my $key = 'canary:rollout:checkout:canary_users';
    $r->cli('EVAL', "for i=1,$n,1000 do local t={} "
            . "for j=i,math.min(i+999,$n) do t[#t+1]='m'..j end "
            . "redis.call('SADD',KEYS[1],unpack(t)) end return 1", 1, $key);
    $r->cli('PUBLISH', 'canary:changed', 'checkout');
    wait_until(sub { $ng->error_log =~ /canary_users now has $n members/ },
               120, 0.1) // die "the set was not read";

    my ($before) = probe($ng->port, undef, 2);

    $r->kill('KILL');
    $r->start;
    my $rs = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                   PeerPort => $r->port) or die;
    wait_until(sub { nginx_connected($rs) }, 30, 0.0005)
        // die "no reconnect";
    my $t0 = time;
    my ($during, $reqs) = probe($ng->port, sub { scard($rs, $key) == $n },
                                120);
    my $restore = (time - $t0) * 1000;

    printf "%10d %12.0f %14.1f %14.1f %10d\n", $n, $restore, $before,
           $during, $reqs;

    $ng->stop;
    $r->stop;
}

done();   # the logs: no alert, no sanitizer report
