#!/usr/bin/perl

# A canary_users set of 100,000 members, loaded by the sync worker while a
# client measures the latency of concurrent requests to the same (single)
# worker: p99 stays under 50 ms during the load (the bound of issue 5).
# Then membership is exact for 2,000 members and 2,000 non-members, a
# replacement set of 100,000 takes over whole, and a set that does not fit
# its zone is refused with an error naming the rollout and the number of
# members while the last good set stays.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use POSIX qw(_exit);
use Test::More;
use Time::HiRes qw(sleep time);
use CanaryTest;

need_module();

my $N = 100_000;

my $redis = start_redis();

# Only the PUBLISH after each RENAME starts a read: with a short interval a
# round could see the new SCARD first, and the PUBLISH arriving during that
# read would (rightly) ask for a second one, leaving two copies in the zone
# for the grace period and blurring the zone-use figure.

my $conf = <<'EOF';
upstream app_stable { server 127.0.0.1:1; }
upstream app_canary { server 127.0.0.1:2; }

canary_zone %%ZONE%%;
canary_redis 127.0.0.1:%%REDIS%%;
canary_sync_interval 60s;

canary_rollout big { key $http_x_user_id; stable app_stable;
                     canary app_canary; percent 0; }

server {
    listen 127.0.0.1:%%PORT%%;
    location = /big { canary big; return 200 "$canary_variant $canary_reason\n"; }
    location = /canary { canary_status; }
}
EOF

# SADD key m-<from> .. m-<to> through redis-cli --pipe, 1000 per command
sub sadd_range {
    my ($key, $prefix, $from, $to) = @_;
    my $file = $redis->prefix . '/sadd.resp';
    open my $fh, '>', $file or die "$file: $!";
    for (my $i = $from; $i <= $to; $i += 1000) {
        my $last = $i + 999 > $to ? $to : $i + 999;
        my @args = ('SADD', $key, map { "$prefix$_" } $i .. $last);
        print $fh '*' . @args . "\r\n",
                  map { '$' . length($_) . "\r\n$_\r\n" } @args;
    }
    close $fh;
    my $out = `$CanaryTest::REDIS_CLI -h 127.0.0.1 -p @{[$redis->port]} --pipe < $file 2>&1`;
    return $out =~ /errors: 0, replies: \d+/;
}

sub answers {
    my ($port, @k) = @_;
    return map { $_->[2] =~ s/\n\z//r }
           http_client($port)->pipeline(map { ['/big', 'X-User-Id' => $_] } @k);
}

sub wait_answer {
    my ($port, $key, $want, $timeout) = @_;
    my $end = time + ($timeout // 30);
    while (time < $end) {
        my ($a) = answers($port, $key);
        return time if $a eq $want;
        sleep 0.02;
    }
    return undef;
}

my $ng = start_nginx($conf, workers => 1,
                     vars => { REDIS => $redis->port, ZONE => '32m' });
my $port = $ng->port;

# the zone's used bytes from the status endpoint, if it says
sub zone_used {
    my ($st, undef, $body) = http_get($port, '/canary?format=prometheus');
    return $st == 200 && $body =~ /^nginx_canary_zone_used_bytes (\d+)$/m
           ? $1 : undef;
}

my $used0 = zone_used();

ok(sadd_range('staging', 'm-', 1, $N), "$N members staged in Redis");
is($redis->cli('SCARD', 'staging'), $N, "SCARD staging is $N");


# a client in a child process: keep-alive requests one after another,
# each timed, until told to stop; "start end" per line in a file

my $lat_file = $ng->prefix . '/latency.txt';
my $stop_file = $ng->prefix . '/stop';

my $pid = fork // die "fork: $!";
if ($pid == 0) {
    open my $out, '>', $lat_file or _exit(1);
    my $c = http_client($port);
    my $i = 0;
    until (-e $stop_file) {
        my $t0 = time;
        my @r = $c->get('/big', 'X-User-Id' => 'n-' . ($i++ % 5000));
        my $t1 = time;
        printf $out "%.6f %.6f %s\n", $t0, $t1, $r[0];

        # a short pause: a client that spins would take a core from nginx
        # and Redis on a small machine and measure itself
        sleep 0.0002;
    }
    close $out;
    _exit(0);
}

sleep 1.5;

# the whole set appears at once: RENAME is atomic in Redis
my $t_load = time;
$redis->cli('RENAME', 'staging', 'canary:rollout:big:canary_users');
$redis->cli('PUBLISH', 'canary:changed', 'big');

my $t_done = wait_answer($port, "m-$N", 'canary canary_users', 60);
ok(defined $t_done, "member m-$N is canary after the load");
my $load_s = defined $t_done ? $t_done - $t_load : 0;
note sprintf 'load of %d members seen after %.3f s', $N, $load_s;

sleep 0.3;
open my $sf, '>', $stop_file;
close $sf;
waitpid $pid, 0;

my (@lat, @before, @slow);
my $non200 = 0;
open my $lf, '<', $lat_file or die "$lat_file: $!";
while (<$lf>) {
    my ($t0, $t1, $st) = split;
    $non200++ if $st != 200;
    if ($t1 >= $t_load && $t0 <= ($t_done // time)) {
        push @lat, $t1 - $t0;
        push @slow, [$t1 - $t0, $t0 - $t_load];
    } elsif ($t1 < $t_load && $t0 > $t_load - 1) {
        push @before, $t1 - $t0;
    }
}
close $lf;

# the slowest requests of the load, for the record, and the slowest of the
# half second before it (the machine's own noise)
@slow = (sort { $b->[0] <=> $a->[0] } @slow)[0 .. 4];
note sprintf 'slowest during the load: %s; slowest before it: %.2f ms',
    join(', ', map { sprintf '%.2f ms at +%.3f s', $_->[0] * 1000, $_->[1] }
               grep { defined } @slow),
    (sort { $b <=> $a } @before, 0)[0] * 1000;

sub pct {
    my ($q, @v) = @_;
    @v = sort { $a <=> $b } @v;
    return @v ? $v[int($q * $#v + 0.5)] * 1000 : -1;
}

my $msg = sprintf 'during the load: %d requests, p50 %.2f ms, p99 %.2f ms, '
                  . 'max %.2f ms, load %.3f s; the second before it: %d '
                  . 'requests, p99 %.2f ms',
                  scalar @lat, pct(0.5, @lat), pct(0.99, @lat),
                  pct(1, @lat), $load_s, scalar @before, pct(0.99, @before);
diag $msg;
cmp_ok(scalar @lat, '>=', 100, 'requests measured during the load');

SKIP: {
    # a machine so busy that requests wait 50 ms without any load cannot
    # tell whether the load stalls the worker
    skip "the machine is too busy to measure: $msg", 1
        if pct(0.99, @before) >= 50;
    ok(@lat && pct(0.99, @lat) < 50, "p99 under 50 ms ($msg)");
}
is($non200, 0, 'every concurrent request answered 200');


# bytes per member: the set's own figure from the sync worker's log line,
# against the layout (16-byte entries in a power-of-two table at most half
# full, keys packed in 64 KiB chunks), and the zone's pages in use

my $keys_len = 0;
$keys_len += length "m-$_" for 1 .. $N;
my $table = 16;
$table *= 2 while $table < 2 * $N;

my ($bytes) = $ng->error_log =~
    /rollout "big" canary_users now has $N members in (\d+) bytes/;
ok(defined $bytes, 'the sync worker logs the set\'s size in bytes');
$bytes //= 0;
my $expect = 16 * $table + $keys_len;
ok($bytes >= $expect && $bytes <= $expect + 2 * 65536,
   "set bytes $bytes: table $table x 16 + keys $keys_len + chunk slack");
my $avg_key = $keys_len / $N;
diag sprintf '%d members: %d bytes, %.1f bytes per member (table %.1f, '
             . 'keys %.1f, chunk slack %.1f)', $N, $bytes, $bytes / $N,
             16 * $table / $N, $avg_key, ($bytes - $expect) / $N;

my $used1 = zone_used();
SKIP: {
    skip 'no nginx_canary_zone_used_bytes in the status endpoint', 1
        unless defined $used0 && defined $used1;
    my $d = $used1 - $used0;
    diag sprintf 'zone used: %d -> %d bytes, %.1f bytes per member',
                 $used0, $used1, $d / $N;
    # each full read leaves a copy for 30 s (the published set, or one
    # retired for the grace period): a push that arrives after the first
    # SSCAN has gone out makes the sync worker read the set once more,
    # since the change it reports may have come after that SSCAN began
    my $copies = () = $ng->error_log
                      =~ /rollout "big" canary_users now has $N members/g;
    $copies ||= 1;
    # the zone counts whole pages: the small set header shares one
    ok($d >= $copies * $bytes - 4096
       && $d <= $copies * $bytes + 64 * 1024,
       "zone use grew by $d bytes for $copies read(s) of a set of $bytes");
}


# membership is exact: 2000 members, 2000 non-members (some very close)

my @members = map { 'm-' . (1 + int(rand $N)) } 1 .. 2000;
my @others = ((map { 'm-' . ($N + $_) } 1 .. 1000),
              (map { 'n-' . (1 + int(rand $N)) } 1 .. 500),
              (map { ('m-0' . $_, 'M-' . $_, "m-$_-", "m-${_}x", "m$_") }
               map { 1 + int(rand $N) } 1 .. 100));

my @a = answers($port, @members);
is(scalar(grep { $_ eq 'canary canary_users' } @a), 2000,
   '2000 sampled members: canary, canary_users');
@a = answers($port, @others);
is(scalar(grep { $_ eq 'stable percent' } @a), scalar @others,
   scalar(@others) . ' non-members: stable, percent');


# a replacement set takes over whole: the old members leave, the new come

ok(sadd_range('staging', 'r-', 1, $N), "replacement set of $N staged");
$redis->cli('RENAME', 'staging', 'canary:rollout:big:canary_users');
$redis->cli('PUBLISH', 'canary:changed', 'big');
ok(defined wait_answer($port, 'r-1', 'canary canary_users', 60),
   'replacement set published');

@a = answers($port, (map { "r-$_" } 1 .. 1000), (map { "m-$_" } 1 .. 1000));
is(scalar(grep { $_ eq 'canary canary_users' } @a[0 .. 999]), 1000,
   '1000 new members canary');
is(scalar(grep { $_ eq 'stable percent' } @a[1000 .. 1999]), 1000,
   '1000 old members no longer in the set');


# a set that does not fit the zone is refused, naming the rollout and the
# number of members; the last good set stays

my $small = start_nginx($conf, workers => 1,
                        vars => { REDIS => $redis->port, ZONE => '1m' });
my $sport = $small->port;

$redis->cli('DEL', 'canary:rollout:big:canary_users');
$redis->cli('SADD', 'canary:rollout:big:canary_users', 'few-1', 'few-2');
$redis->cli('PUBLISH', 'canary:changed', 'big');
ok(defined wait_answer($sport, 'few-1', 'canary canary_users', 20),
   '1m zone: a small set loads');
ok(defined wait_answer($port, 'few-1', 'canary canary_users', 20),
   '32m zone: the small set too');

ok(sadd_range('staging', 'b-', 1, $N), "big set of $N staged");
$redis->cli('RENAME', 'staging', 'canary:rollout:big:canary_users');
$redis->cli('PUBLISH', 'canary:changed', 'big');

my ($refused, $end) = (undef, time + 60);
while (time < $end) {
    last if ($refused) = $small->error_log =~ /^(.*\[error\].*"?big"?.*\b$N\b.*)$/m;
    sleep 0.2;
}
ok($refused, "1m zone: the set of $N is refused with the rollout and "
             . "its size in the log") or diag $small->error_log;
note $refused if $refused;

ok(defined wait_answer($port, "b-$N", 'canary canary_users', 60),
   '32m zone: the big set loads');
is(join(',', answers($sport, 'few-1', 'few-2', "b-$N", 'b-1')),
   'canary canary_users,canary canary_users,stable percent,stable percent',
   '1m zone: the last good set stays in force');

done();
