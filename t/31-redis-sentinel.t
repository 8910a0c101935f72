#!/usr/bin/perl

# canary_redis sentinel=... master=NAME: one master, one replica, three
# sentinels on loopback (quorum 2, down-after-milliseconds 400).
#
#   - a sentinel that names a replica: ROLE says so, one line, config
#     routing; a master name no sentinel knows: one line;
#   - the module finds the master through the sentinels and syncs;
#   - under wrk load through nginx, the master is killed: the sentinels
#     promote the replica, the module follows (+switch-master), a percent
#     written to the new master reaches every worker, no request fails;
#     the time from +switch-master to the first good sync is printed;
#   - sentinel_tls: a sentinel that speaks TLS, the data node plaintext.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Select;
use IO::Socket::INET;
use POSIX qw(WNOHANG);
use Test::More;
use Time::HiRes qw(sleep time);
use CanaryTest;
use CanarySync;

need_module();

# every wait, stretched for slow runs (valgrind)
my $T = 10 * $CanaryTest::SCALE;

my $wrk = `command -v wrk 2>/dev/null`;
chomp $wrk;
plan skip_all => 'no wrk' unless $wrk;

my @keys = test_keys(300);
my @sentinels;

END { kill 'KILL', map { $_->{pid} } @sentinels; }

sub start_sentinel {
    my ($master, $mport, $quorum, $extra) = @_;
    my $port = free_port();
    my $dir = CanaryTest::tmp_prefix();
    CanaryTest::write_file("$dir/sentinel.conf", <<"EOF");
port $port
bind 127.0.0.1
dir $dir
sentinel monitor $master 127.0.0.1 $mport $quorum
sentinel down-after-milliseconds $master 400
sentinel failover-timeout $master 4000
EOF
    CanaryTest::write_file("$dir/sentinel.conf",
        CanaryTest::read_file("$dir/sentinel.conf") . $extra) if $extra;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDOUT, '>>', "$dir/sentinel.log";
        open STDERR, '>&', \*STDOUT;
        exec $CanaryTest::REDIS_SERVER, "$dir/sentinel.conf", '--sentinel'
            or POSIX::_exit(127);
    }
    my $s = { pid => $pid, port => $port, dir => $dir };
    push @sentinels, $s;
    wait_until(sub { scli($s, 'PING') eq 'PONG' }, $T)
        // die "sentinel did not start: "
               . CanaryTest::read_file("$dir/sentinel.log");
    return $s;
}

sub scli {
    my ($s, @args) = @_;
    my $cmd = join ' ', map { "'$_'" } $CanaryTest::REDIS_CLI, '-h',
              '127.0.0.1', '-p', $s->{port}, @args;
    my $out = `$cmd 2>&1`;
    $out =~ s/\n\z//;
    return $out;
}

sub sentinel_field {
    my ($s, $field) = @_;
    my %h = split /\n/, scli($s, 'SENTINEL', 'MASTER', 'mymaster');
    return $h{$field} // '';
}

sub nginx_with {
    my ($args, $ival, $more) = @_;
    return start_nginx(sync_conf(extra => "canary_sync_interval $ival;\n"
                                          . ($more // '')),
                       workers => 2,
                       vars => { REDIS => $args, PCT => 5 });
}

# every worker routes by $pct: several connections, reuseport spreads them

sub all_workers_route {
    my ($port, $pct) = @_;
    my %pids;
    for (1 .. 8) {
        my @a = variants($port, [@keys[0 .. 99]]);
        for my $i (0 .. $#a) {
            my $want = $keys[$i][1] < $pct * 100 ? 'canary' : 'stable';
            return 0 unless $a[$i]{status} == 200
                            && $a[$i]{variant} eq $want;
            $pids{ $a[$i]{pid} } = 1;
        }
    }
    return scalar keys %pids;
}

my $m = start_redis(notify => 'Kh$s');
my $rep = start_redis(notify => 'Kh$s',
                      args => ['--replicaof', '127.0.0.1', $m->port]);
ok(defined wait_until(sub {
       $rep->cli('INFO', 'replication') =~ /master_link_status:up/ }, $T),
   'the replica follows the master');


# a sentinel that names the replica as a master: ROLE refuses it

my $odd = start_sentinel('mymaster', $rep->port, 1);
my $ng = nginx_with('sentinel=127.0.0.1:' . $odd->{port}
                    . ' master=mymaster', '200ms');
ok(defined wait_until(sub {
       $ng->error_log
           =~ /is not the master \(role "slave"\), asking the sentinels/
   }, $T), 'a replica named by a sentinel is refused (ROLE)')
    or diag($ng->error_log);
sleep 0.5;
is(log_count($ng, qr/is not the master/), 1, 'one line');
ok(routes_by($ng->port, 5, \@keys), 'config routing meanwhile');
$ng->stop;

$ng = nginx_with('sentinel=127.0.0.1:' . $odd->{port} . ' master=nosuch',
                 '200ms');
ok(defined wait_until(sub {
       $ng->error_log =~ /sentinel 127\.0\.0\.1:\d+ knows no master "nosuch"/
   }, $T), 'a master no sentinel knows: one line says so');
$ng->stop;
kill 'KILL', $odd->{pid};
waitpid($odd->{pid}, 0);
@sentinels = ();


# three sentinels, quorum 2

my @s = map { start_sentinel('mymaster', $m->port, 2) } 1 .. 3;
ok(defined wait_until(sub {
       !grep { sentinel_field($_, 'num-other-sentinels') ne '2'
               || sentinel_field($_, 'num-slaves') ne '1' } @s }, 20),
   'the sentinels know each other and the replica');

$m->cli('HSET', 'canary:rollout:checkout', 'percent', '30');

my $list = join ',', map { "127.0.0.1:$_->{port}" } @s;
# with an automatic rollout: the auto controller follows the master too
my $auto = <<'EOF';
canary_node_id sentinel-node;
canary_rollout ramp {
    key $http_x_user_id;
    stable s;
    canary c;
    auto steps=10,50 interval=1s max_error_rate=5% min_requests=1000;
}
EOF
$ng = nginx_with("sentinel=$list master=mymaster timeout=300ms", '1s',
                 $auto);
my $port = $ng->port;
ok(defined wait_until(sub { routes_by($port, 30, \@keys) }, $T),
   'the module finds the master through the sentinels');
ok(defined wait_until(sub {
       3 == grep { scli($_, 'CLIENT', 'LIST') =~ / sub=1 .*cmd=subscribe/ }
                 @s
   }, $T), 'and subscribes to +switch-master on every sentinel');
my $t = time_to_route($port, 30, 35, \@keys, sub {
    $m->cli('HSET', 'canary:rollout:checkout', 'percent', '35') });
ok(defined $t, 'pushes from the master apply');
ok(defined wait_until(sub {
       $m->cli('GET', 'canary:leader') =~ /sentinel-node/ }, $T),
   'the auto controller holds its lease on the master');


# the failover, under load

# the test's own subscriptions, on every sentinel: the first one to
# publish +switch-master (the failover's leader) marks the promotion

my $sel = IO::Select->new;
for my $x (@s) {
    my $w = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $x->{port}, Proto => 'tcp')
        or die "sentinel: $!";
    print $w "SUBSCRIBE +switch-master\r\n";
    $sel->add($w);
}

my $wrk_out = $ng->prefix . '/wrk.out';
my $wpid = fork // die "fork: $!";
if ($wpid == 0) {
    open STDOUT, '>', $wrk_out;
    open STDERR, '>&', \*STDOUT;
    exec $wrk, '-t1', '-c4', '-d8s', '-H', 'X-User-Id: u1',
         "http://127.0.0.1:$port/"
        or POSIX::_exit(127);
}

sleep 1;
my $t_kill = time;
$m->kill('KILL');

# +switch-master on the test's own subscription

my (%buf, $t_switch, $new_port);
WATCH: while (time - $t_kill < 30 * $CanaryTest::SCALE) {
    for my $w ($sel->can_read(0.05)) {
        sysread($w, $buf{$w}, 65536, length($buf{$w} // '')) or next;
        if ($buf{$w} =~ /mymaster \S+ \d+ (\S+) (\d+)/) {
            $t_switch = time;
            $new_port = $2;
            last WATCH;
        }
    }
}
ok(defined $t_switch, '+switch-master after the master was killed');
is($new_port, $rep->port, 'the replica is the new master');
note(sprintf 'master killed -> +switch-master: %.2f s',
     ($t_switch // time) - $t_kill);

# a percent written to the new master at once: the first good sync is
# timed with one request per poll (the zone is shared: what worker 0
# publishes every worker reads), then every worker is checked

my ($probe) = grep { $_->[1] >= 3500 && $_->[1] < 6000 } @keys;
my $pc = http_client($port);
$rep->cli('HSET', 'canary:rollout:checkout', 'percent', '60');
my $synced;
while (time - ($t_switch // time) < $T) {
    my ($res) = $pc->pipeline(['/', 'X-User-Id' => $probe->[0]]);
    if (($res->[2] // '') =~ /^canary\|/) {
        $synced = time;
        last;
    }
    sleep 0.002;
}
my $since = defined $t_switch && defined $synced ? $synced - $t_switch : 99;
diag(sprintf '+switch-master -> first good sync with the new master: '
             . '%.3f s', $since);
cmp_ok($since, '<', 1 * $CanaryTest::SCALE, 'under 1 s');

my $workers = 0;
ok(defined wait_until(sub { ($workers = all_workers_route($port, 60)) },
                      $T, 0.01),
   'the percent written to the new master reaches the workers');
is($workers, 2, 'both workers');

waitpid($wpid, 0);
my $wout = CanaryTest::read_file($wrk_out);
my ($reqs) = $wout =~ /(\d+) requests in/;
cmp_ok($reqs // 0, '>', 100, 'wrk sent requests through the failover')
    or diag($wout);
unlike($wout, qr/Non-2xx|Socket errors/, '0 failed requests') or diag($wout);
note($wout);

like($ng->error_log, qr/canary redis: sentinel \S+: \+switch-master mymaster/,
     'the module logs the switch');
like($ng->error_log, qr/master "mymaster" moved from \S+ to 127\.0\.0\.1:/,
     'and where the master went');

# pushes from the new master

$t = time_to_route($port, 60, 65, \@keys, sub {
    $rep->cli('HSET', 'canary:rollout:checkout', 'percent', '65') });
ok(defined $t, 'pushes from the new master apply');
cmp_ok($t // 99, '<', 0.5 * $CanaryTest::SCALE, 'within 500 ms');

# the auto controller writes to the new master: its lease, deleted there,
# is taken again
$rep->cli('DEL', 'canary:leader');
ok(defined wait_until(sub {
       $rep->cli('GET', 'canary:leader') =~ /sentinel-node/ }, $T),
   'the auto controller takes its lease on the new master');

$ng->stop;
kill 'TERM', map { $_->{pid} } @sentinels;
waitpid($_->{pid}, 0) for @sentinels;
@sentinels = ();


# sentinel_tls: the sentinel speaks TLS (verified), the master plaintext

SKIP: {
    require CanaryTLS;
    skip 'no openssl or no TLS in redis-server', 3
        if system('openssl version >/dev/null 2>&1')
           || !CanaryTLS::redis_has_tls();
    my $c = CanaryTLS::make_certs();
    my $tport = free_port();
    my $ts = start_sentinel('tlsm', $rep->port, 1, <<"EOF");
tls-port $tport
tls-cert-file $c->{server_crt}
tls-key-file $c->{server_key}
tls-ca-cert-file $c->{ca}
tls-auth-clients no
EOF
    $rep->cli('HSET', 'canary:rollout:checkout', 'percent', '22');
    $ng = nginx_with("sentinel=127.0.0.1:$tport master=tlsm sentinel_tls "
                     . "tls_ca=$c->{ca} tls_name=redis.test", '200ms');
    ok(defined wait_until(sub { routes_by($ng->port, 22, \@keys) }, $T),
       'sentinel_tls: the master found through a TLS sentinel')
        or diag($ng->error_log);
    $ng->stop;

    $ng = nginx_with("sentinel=127.0.0.1:$tport master=tlsm sentinel_tls "
                     . "tls_ca=$c->{other_ca} tls_name=redis.test", '200ms');
    ok(defined wait_until(sub {
           $ng->error_log =~ qr/127\.0\.0\.1:$tport is unavailable /
                              . qr/\(TLS certificate verify error/
       }, $T), 'a TLS sentinel with a wrong CA is refused');
    ok(routes_by($ng->port, 5, \@keys), 'config routing meanwhile');
    $ng->stop;
}

done();
