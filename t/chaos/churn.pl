#!/usr/bin/perl

# make chaos (its churn case): sustained churn under wrk for a few
# minutes, all at once: percent changes on five rollouts every few
# milliseconds, a 20,000-member canary_users set gaining and losing
# members, a reload every 30 s, and Redis killed and restarted empty
# halfway (the zone writes the state back).  Expects 0 failed requests,
# the zone's use flat and the workers' private memory flat; prints a table
# (also in build/chaos-churn.txt).
#
#   perl t/chaos/churn.pl [--seconds 180]

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/../lib";

use Getopt::Long;
use IO::Socket::INET;
use JSON::PP;
use POSIX qw(WNOHANG);
use Test::More;
use Time::HiRes qw(sleep time);
use CanaryTest;
use CanarySync;

my $seconds = 180;
GetOptions('seconds=i' => \$seconds) or die "bad options\n";

need_module();

my $wrk = `sh -c 'command -v wrk'`;
chomp $wrk;
plan skip_all => 'no wrk' unless $wrk;

my $r = start_redis(notify => 'Kh$s');
my @names = map { "r$_" } 1 .. 5;
my $rollouts = join '', map { <<"EOF" } @names;
canary_rollout $_ {
    key \$http_x_user_id;
    stable s;
    canary c;
    percent 10;
}
EOF
my $locations = join '', map { <<"EOF" } @names;
    location /$_ {
        canary $_;
        return 200 "\$canary_variant|\$canary_reason\\n";
    }
EOF
my $conf = <<"EOF";
canary_zone 16m;
canary_redis %%REDIS%%;
$rollouts
server {
    listen 127.0.0.1:%%PORT%%;
$locations
    location = /status { canary_status; }
}
EOF
my %vars = (REDIS => '127.0.0.1:' . $r->port);
my $ng = start_nginx($conf, workers => 2, vars => \%vars);
my $port = $ng->port;
$ng->{allow_log} = [qr/exited on signal 9/];

sub status {
    my ($st, undef, $body) = http_get($port, '/status?format=json');
    return $st == 200 ? decode_json($body) : undef;
}

sub rss {
    my $anon = 0;
    for my $pid ($ng->pids) {
        my $s = CanaryTest::read_file("/proc/$pid/status");
        $anon += $1 if $s =~ /^RssAnon:\s+(\d+) kB/m;
    }
    return $anon;
}

# the set, 20,000 members
my $set = 'canary:rollout:r1:canary_users';
for my $b (0 .. 19) {
    $r->cli('SADD', $set, map { "m-$_" } $b * 1000 + 1 .. $b * 1000 + 1000);
}
ok(defined wait_until(sub {
       my $s = status() or return 0;
       ($s->{rollouts}[0]{canary_users} // 0) == 20_000 }, 30),
   'the set is loaded');

# wrk, keys from 100,000 users over the five rollouts
my $lua = $ng->prefix . '/churn.lua';
CanaryTest::write_file($lua, <<'EOF');
math.randomseed(os.time())
request = function()
    return wrk.format(nil, "/r" .. math.random(1, 5),
                      {["X-User-Id"] = "m-" .. math.random(1, 100000)})
end
EOF
my $wrk_out = $ng->prefix . '/wrk.out';
my $wpid = fork // die "fork: $!";
if ($wpid == 0) {
    open STDOUT, '>', $wrk_out;
    open STDERR, '>&', \*STDOUT;
    exec $wrk, '-t1', '-c8', "-d${seconds}s", '-s', $lua,
        "http://127.0.0.1:$port/"
        or POSIX::_exit(127);
}

my $redis = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $r->port, Proto => 'tcp')
    || die "redis: $!";
my $sent = 0;
sub send_cmd {
    my @a = @_;
    print $redis '*' . @a . "\r\n"
                 . join('', map { '$' . length($_) . "\r\n$_\r\n" } @a);
    $sent++;
}
sub drain {
    my $rin = '';
    vec($rin, fileno($redis), 1) = 1;
    while (select(my $rout = $rin, undef, undef, 0) > 0) {
        last unless sysread($redis, my $buf, 65536);
    }
}

my @samples;
my ($changes, $adds, $rems, $reloads, $restarted) = (0, 0, 0, 0, 0);
my $t0 = time;
my ($next_sample, $next_reload) = ($t0, $t0 + 30);
while (time - $t0 < $seconds - 2) {
    my $now = time;

    # percent changes
    send_cmd('HSET', 'canary:rollout:' . $names[$changes % 5], 'percent',
             sprintf('%d.%02d', 5 + int(rand 20), int(rand 100)));
    $changes++;

    # the set: a member in every 10 changes, one out every 50
    if ($changes % 10 == 0) {
        send_cmd('SADD', $set, 'n-' . ++$adds);
    }
    if ($changes % 50 == 0) {
        send_cmd('SREM', $set, 'm-' . ++$rems);
    }
    drain();

    if ($now >= $next_reload) {
        $next_reload += 30;
        $reloads++ if $ng->reload(vars => \%vars);
    }

    if (!$restarted && $now - $t0 > $seconds / 2) {
        $restarted = 1;
        $r->kill('KILL');
        sleep 0.5;
        $r->start;
        close $redis;
        # no writes until the zone's state is back in Redis: a Redis that
        # an operator already wrote to is obeyed, not restored
        wait_until(sub { $ng->error_log =~ /came back empty/ }, 10, 0.05);
        $redis = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                       PeerPort => $r->port, Proto => 'tcp')
            || die "redis: $!";
    }

    if ($now >= $next_sample) {
        $next_sample += 5;
        my $s = status();
        push @samples, [$now - $t0, $s ? $s->{zone}{used} : -1,
                        $s ? $s->{zone}{retired} : -1, rss(),
                        $s ? $s->{rollouts}[0]{canary_users} : -1]
            if $s;
    }

    sleep 0.005;
}

waitpid $wpid, 0;
my $out = CanaryTest::read_file($wrk_out);
print $out;
my ($requests) = $out =~ /(\d+) requests in/;
my ($non2xx) = $out =~ /Non-2xx or 3xx responses: (\d+)/;
my ($connect, $read, $write, $timeout) = $out
    =~ /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/;
$_ //= 0 for $connect, $read, $write, $timeout;

# a keep-alive connection that an old worker closes at a reload while wrk
# sends on it is a read or write error to wrk (nginx closes idle
# keep-alive connections when it exits; a client resends): counted apart
my $failed = ($non2xx // 0) + $connect + $timeout;
my $closed = $read + $write;

ok($requests && $requests > 1000, "wrk: $requests requests");
is($failed, 0, 'no failed request (non-2xx, connect errors, timeouts)');
ok($closed <= 64 * ($reloads + 1),
   "$closed keep-alive connections closed under wrk by reloads");
ok($restarted && $ng->error_log =~ /came back empty/,
   'Redis restarted empty and the state was written back');
is($reloads, int(($seconds - 2) / 30), "$reloads reloads");

# flat: after the first sample (the set loaded), the zone within 1 MB and
# the workers' private memory within 8 MB of their first figures
my @used = map { $_->[1] } @samples;
my @rss = map { $_->[3] } @samples;
my ($umin, $umax) = (sort { $a <=> $b } @used)[0, -1];
my ($rmin, $rmax) = (sort { $a <=> $b } @rss)[0, -1];
ok($umax - $used[0] <= 1024 * 1024,
   "zone use flat: $used[0] at first, $umin..$umax");
ok($rmax - $rss[0] <= 8 * 1024,
   "workers' private memory flat: $rss[0] kB at first, $rmin..$rmax kB");
is(log_count($ng, qr/no room in canary_zone/), 0, 'nothing refused');

my $table = sprintf("%d s, %d percent changes, %d members added, %d "
                    . "removed, %d reloads, Redis restarted once; wrk: "
                    . "%s requests, %d failed, %d keep-alive connections "
                    . "closed by reloads\n\n",
                    $seconds, $changes, $adds, $rems, $reloads,
                    $requests // 0, $failed, $closed)
          . "| s | zone used | retired | workers' RssAnon kB | set |\n"
          . "|---|---|---|---|---|\n"
          . join('', map { sprintf("| %.0f | %d | %d | %d | %d |\n", @$_) }
                 @samples);
print "\n$table";
mkdir "$FindBin::Bin/../../build";
CanaryTest::write_file("$FindBin::Bin/../../build/chaos-churn.txt", $table);

done();
