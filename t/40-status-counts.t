#!/usr/bin/perl

# Per-variant counters through canary_status: a known mix of statuses,
# upstream errors (the upstream's own 502/503, a closed port, a read
# timeout, an error_page fallback) and delays gives exactly those counts
# in text, JSON and Prometheus (checked by promtool); the request time
# histogram and sum equal what the access log's $request_time says;
# counters survive a reload; with 4 workers the totals are exact.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Socket::INET;
use JSON::PP;
use POSIX ();
use Test::More;
use Time::HiRes qw(sleep time);
use CanaryTest;

need_module();


# a backend that answers after a delay: "GET /<ms>" waits <ms> ms

sub slow_server {
    my $listen = IO::Socket::INET->new(
        LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp',
        Listen => 64, ReuseAddr => 1) or die "listen: $!";
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        $SIG{PIPE} = 'IGNORE';
        $SIG{CHLD} = 'IGNORE';
        while (1) {
            my $c = $listen->accept or next;
            if (fork) {
                close $c;
                next;
            }
            my $req = '';
            while ($req !~ /\r\n\r\n/) {
                my $n = sysread($c, $req, 4096, length $req);
                last unless $n;
            }
            my ($ms) = $req =~ m{^GET /\S*?(\d+)} or POSIX::_exit(0);
            sleep $ms / 1000;
            syswrite($c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
                         . "Connection: close\r\n\r\nslow\n");
            close $c;
            POSIX::_exit(0);
        }
    }
    return ($listen->sockport, $pid);
}

my ($slow_port, $slow_pid) = slow_server();
my $closed_port = free_port();

END { kill 'KILL', $slow_pid if $slow_pid; }

my $conf = <<'EOF';
log_format canary '$canary_variant_checkout $status $request_time $uri';

upstream app_stable { server 127.0.0.1:%%PORT_B%%; }
upstream app_canary { server 127.0.0.1:%%PORT_B%%; }

server {
    listen 127.0.0.1:%%PORT_B%%;
    location ~ ok$   { return 200 "ok\n"; }
    location ~ nf$   { return 404; }
    location ~ 500$  { return 500; }
    location ~ 502$  { return 502; }
    location ~ 503$  { return 503; }
}

canary_zone 1m;

canary_rollout checkout {
    key      $http_x_user_id;
    stable   app_stable;
    canary   app_canary;
    percent  50;
    override $http_x_canary;
}

canary_rollout other {
    key      $http_x_user_id;
    stable   app_stable;
    canary   app_canary;
    percent  100;
}

server {
    listen 127.0.0.1:%%PORT%% reuseport;

    location /p/ {
        canary checkout;
        access_log %%PREFIX%%/logs/canary.log canary;
        proxy_pass http://$canary_upstream;
    }

    location /conn {
        canary checkout;
        access_log %%PREFIX%%/logs/canary.log canary;
        proxy_pass http://127.0.0.1:%%CLOSED%%;
    }

    location /slow/ {
        canary checkout;
        access_log %%PREFIX%%/logs/canary.log canary;
        proxy_pass http://127.0.0.1:%%SLOW%%;
        proxy_read_timeout 5s;
    }

    location /timeout/ {
        canary checkout;
        access_log %%PREFIX%%/logs/canary.log canary;
        proxy_pass http://127.0.0.1:%%SLOW%%;
        proxy_read_timeout 100ms;
    }

    # an upstream error turned into a 200 by error_page, and a 404 sent to
    # a location of another rollout: counted once, under checkout
    location /ep/ {
        canary checkout;
        access_log %%PREFIX%%/logs/canary.log canary;
        proxy_pass http://127.0.0.1:%%CLOSED%%;
        error_page 502 = /fallback;
    }

    location /ep404/ {
        canary checkout;
        access_log %%PREFIX%%/logs/canary.log canary;
        proxy_pass http://$canary_upstream/nf;
        proxy_intercept_errors on;
        error_page 404 /other;
    }

    location = /fallback {
        access_log %%PREFIX%%/logs/canary.log canary;
        return 200 "fallback\n";
    }

    location = /other {
        canary other;
        access_log %%PREFIX%%/logs/canary.log canary;
        return 200 "other\n";
    }

    location /plain { return 200 "not counted\n"; }

    location = /canary { canary_status; }
}
EOF

my %vars = (CLOSED => $closed_port, SLOW => $slow_port);

expect_log(qr/connect\(\) failed|upstream timed out/);

# what each variant gets: path => [count, status, upstream error?]

my %plan = (
    stable => {
        '/p/ok' => [7, 200, 0], '/p/nf' => [3, 404, 0],
        '/p/e500' => [2, 500, 0], '/p/e502' => [2, 502, 1],
        '/p/e503' => [1, 503, 1], '/conn' => [2, 502, 1],
        '/timeout/400' => [1, 504, 1], '/slow/350' => [2, 200, 0],
        '/ep/x' => [2, 200, 1], '/ep404/x' => [1, 404, 0],
    },
    canary => {
        '/p/ok' => [4, 200, 0], '/p/nf' => [1, 404, 0],
        '/p/e500' => [3, 500, 0], '/p/e502' => [1, 502, 1],
        '/p/e503' => [2, 503, 1], '/conn' => [1, 502, 1],
        '/timeout/400' => [2, 504, 1], '/slow/350' => [1, 200, 0],
        '/ep/x' => [1, 200, 1], '/ep404/x' => [2, 404, 0],
    },
);

sub expected {
    my ($mult) = @_;
    my %e;
    for my $v (keys %plan) {
        my $e = $e{$v} = { requests => 0, upstream_errors => 0, errors => 0,
                           map { ("${_}xx" => 0) } 1 .. 5 };
        for my $path (keys %{ $plan{$v} }) {
            my ($n, $status, $ue) = @{ $plan{$v}{$path} };
            $e->{requests} += $n * $mult;
            $e->{ int($status / 100) . 'xx' } += $n * $mult;
            $e->{upstream_errors} += $n * $mult * $ue;
            # what auto judges: 5xx, or an upstream error whatever the
            # answer (the error_page'd 200 of /ep/x)
            $e->{errors} += $n * $mult if $status >= 500 || $ue;
        }
    }
    return \%e;
}

# sends the plan once; returns the statuses seen per variant and path

sub send_plan {
    my ($port, $conns) = @_;
    my @reqs;
    for my $v (sort keys %plan) {
        my $o = $v eq 'canary' ? 'always' : 'never';
        for my $path (sort keys %{ $plan{$v} }) {
            push @reqs, [$path, 'X-Canary' => $o, 'X-User-Id' => "u$_",
                         v => $v] for 1 .. $plan{$v}{$path}[0];
        }
    }

    my @bad;
    for my $i (0 .. $#reqs) {
        my ($path, @h) = @{ $reqs[$i] };
        my %h = @h;
        my $v = delete $h{v};
        my ($status) = http_get($port, $path, %h);
        push @bad, "$v $path: $status" if $status != $plan{$v}{$path}[1];
        # a few plain requests in between, never counted
        http_get($port, '/plain') if $i % 5 == 0;
    }
    return @bad;
}

sub status_json {
    my ($port) = @_;
    my ($st, $h, $body) = http_get($port, '/canary?format=json');
    die "status $st" unless $st == 200;
    return decode_json($body);
}

sub rollout {
    my ($j, $name) = @_;
    my ($r) = grep { $_->{name} eq $name } @{ $j->{rollouts} };
    return $r;
}

# polls until the counted total reaches $want (the log phase runs after
# the response is sent; another worker may answer the status request)

sub wait_total {
    my ($port, $want) = @_;
    my $end = time + 10;
    my $j;
    while (time < $end) {
        $j = status_json($port);
        my $r = rollout($j, 'checkout');
        my $n = $r->{variants}{stable}{requests}
                + $r->{variants}{canary}{requests};
        return $j if $n >= $want;
        sleep 0.05;
    }
    return $j;
}

sub check_json {
    my ($j, $e, $what) = @_;
    my $r = rollout($j, 'checkout');
    for my $v (qw(stable canary)) {
        my $c = $r->{variants}{$v};
        my %got = (requests => $c->{requests},
                   upstream_errors => $c->{upstream_errors},
                   errors => $c->{errors},
                   map { ($_ => $c->{responses}{$_}) } map { "${_}xx" } 1 .. 5);
        is_deeply(\%got, $e->{$v}, "$what: JSON counts of $v");
    }
}

sub text_counts {
    my ($text) = @_;
    my %t;
    my $re = '^ (stable|canary) requests (\d+) 1xx (\d+) 2xx (\d+) 3xx (\d+)'
             . ' 4xx (\d+) 5xx (\d+) upstream_errors (\d+) errors (\d+)$';
    while ($text =~ /$re/mg)
    {
        # the first rollout block is checkout's
        next if $t{$1};
        $t{$1} = { requests => $2, '1xx' => $3, '2xx' => $4, '3xx' => $5,
                   '4xx' => $6, '5xx' => $7, upstream_errors => $8,
                   errors => $9 };
    }
    return \%t;
}

sub prom_samples {
    my ($text) = @_;
    my %s;
    for (split /\n/, $text) {
        next if /^#/;
        my ($name, $labels, $value) = /^(\w+)(?:\{(.*)\})? (\S+)$/
            or next;
        $s{$name . '{' . ($labels // '') . '}'} = $value;
    }
    return \%s;
}

sub promtool_ok {
    my ($text, $what) = @_;
  SKIP: {
        skip 'promtool not installed', 1
            unless system('command -v promtool >/dev/null 2>&1') == 0;
        my $f = File::Temp->new;
        print $f $text;
        close $f;
        my $out = `promtool check metrics < $f 2>&1`;
        is($? >> 8, 0, "$what: promtool check metrics passes")
            or diag $out;
    }
}

use File::Temp ();

my $ng = start_nginx($conf, vars => \%vars);
my $port = $ng->port;

my @bad = send_plan($port);
ok(!@bad, 'every request got its planned status') or diag "@bad";

my $e = expected(1);
my $total = $e->{stable}{requests} + $e->{canary}{requests};
my $j = wait_total($port, $total);

check_json($j, $e, '1 worker');

my $other = rollout($j, 'other');
is($other->{variants}{stable}{requests} + $other->{variants}{canary}{requests},
   0, 'an error_page to another rollout\'s location counts under the first');


# request time: the histogram and the sum are exactly what $request_time
# in the access log says (the same clock, read in the same log phase)

my @bounds = @{ $j->{histogram_bounds_ms} };
is(scalar @bounds, 23, '23 bounds, 1 ms .. 60 s');
is("$bounds[0] $bounds[-1]", '1 60000', 'bounds from 1 ms to 60 s');

my %hist = (stable => [(0) x 24], canary => [(0) x 24]);
my %sum = (stable => 0, canary => 0);
my %slow = (stable => 0, canary => 0);
my $lines = 0;
for (split /\n/, CanaryTest::read_file($ng->prefix . '/logs/canary.log')) {
    my ($v, $st, $t, $uri) = split / /;
    next unless $v eq 'stable' || $v eq 'canary';
    $lines++;
    my $ms = int($t * 1000 + 0.5);
    my $b = 0;
    $b++ while $b < @bounds && $ms > $bounds[$b];
    $hist{$v}[$b]++;
    $sum{$v} += $ms;
    $slow{$v}++ if $ms >= 350 && $uri =~ m{^/slow/};
}
is($lines, $total, "access log has the $total counted requests");

my $r = rollout($j, 'checkout');
for my $v (qw(stable canary)) {
    is_deeply($r->{variants}{$v}{request_time_histogram}, $hist{$v},
              "$v histogram equals \$request_time of the access log");
    is($r->{variants}{$v}{request_time_sum_ms}, $sum{$v},
       "$v request time sum equals the access log's");
    is($slow{$v}, $plan{$v}{'/slow/350'}[0], "$v slow requests took >= 350 ms");
    is($r->{variants}{$v}{request_time_count}, $e->{$v}{requests},
       "$v histogram count");
}


# text

my (undef, undef, $text) = http_get($port, '/canary');
like($text, qr/^Rollouts: 2$/m, 'text: rollouts');
like($text, qr/^Rollout checkout percent 50 state none source config /m,
     'text: percent, state, source');
is_deeply(text_counts($text), $e, 'text: counts per variant');


# Prometheus

my ($st, $h, $prom) = http_get($port, '/canary?format=prometheus');
is($st, 200, 'prometheus: 200');
like($h->{'content-type'}, qr{^text/plain; version=0\.0\.4}, 'content type');
promtool_ok($prom, '1 worker');

my $s = prom_samples($prom);
for my $v (qw(stable canary)) {
    my $l = qq{rollout="checkout",variant="$v"};
    is($s->{"nginx_canary_requests_total{$l}"}, $e->{$v}{requests},
       "prometheus: $v requests");
    is($s->{"nginx_canary_upstream_errors_total{$l}"},
       $e->{$v}{upstream_errors}, "prometheus: $v upstream errors");
    is($s->{"nginx_canary_errors_total{$l}"}, $e->{$v}{errors},
       "prometheus: $v errors (5xx or upstream error)");
    is_deeply([map { $s->{qq{nginx_canary_responses_total{$l,code="${_}xx"}}} }
               1 .. 5],
              [map { $e->{$v}{"${_}xx"} } 1 .. 5], "prometheus: $v classes");

    my ($cum, @want, @got) = (0);
    for my $b (0 .. 23) {
        $cum += $hist{$v}[$b];
        my $le = $b < 23 ? $bounds[$b] / 1000 : '+Inf';
        push @want, $cum;
        push @got, $s->{qq{nginx_canary_request_duration_seconds_bucket{$l,le="$le"}}};
    }
    is_deeply(\@got, \@want, "prometheus: $v cumulative buckets");
    is($s->{"nginx_canary_request_duration_seconds_count{$l}"},
       $e->{$v}{requests}, "prometheus: $v count");
    ok(abs($s->{"nginx_canary_request_duration_seconds_sum{$l}"}
           - $sum{$v} / 1000) < 1e-9, "prometheus: $v sum in seconds");
}
is($s->{'nginx_canary_percent{rollout="checkout"}'}, 50, 'prometheus: percent');
is($s->{'nginx_canary_redis_up{}'}, 0, 'prometheus: redis_up');
is($s->{'nginx_canary_rollout_last_sync_timestamp_seconds{rollout="checkout"}'},
   0, 'prometheus: no Redis, no last sync');
is(rollout($j, 'checkout')->{last_sync}, 0, 'JSON: no Redis, last_sync 0');
for my $m (qw(syncs_total sync_errors_total refused_values_total
              zone_used_bytes zone_free_bytes))
{
    ok(defined $s->{"nginx_canary_$m\{}"}, "prometheus: nginx_canary_$m");
}
is($s->{'nginx_canary_zone_used_bytes{}'} + $s->{'nginx_canary_zone_free_bytes{}'},
   1048576, 'prometheus: zone used + free = 1m');


# content negotiation

my @acc = (
    ['application/json', qr/^\{"version":1/],
    ['text/plain;version=0.0.4;q=0.5,*/*;q=0.1', qr/^# HELP nginx_canary_/],
    ['text/html,application/xhtml+xml,*/*;q=0.8', qr/^<!DOCTYPE html>/i],
    ['*/*', qr/^Rollouts: /],
);
for my $a (@acc) {
    my (undef, $hh, $body) = http_get($port, '/canary', Accept => $a->[0]);
    like($body, $a->[1], "Accept: $a->[0]");
    is($hh->{vary}, 'Accept', "Vary: Accept for $a->[0]");
}


# counters survive a reload (and keep counting after it)

ok($ng->reload, 'reload');
check_json(status_json($port), $e, 'after reload');

send_plan($port);
check_json(wait_total($port, 2 * $total), expected(2), 'after reload, twice');
$ng->stop;


# 4 workers, several connections at once: the totals are exact

my $ng4 = start_nginx($conf, vars => \%vars, workers => 4);
my $port4 = $ng4->port;

my @kids;
for my $k (1 .. 4) {
    my $pid = fork // die;
    if ($pid == 0) {
        my @b = send_plan($port4);
        POSIX::_exit(@b ? 1 : 0);
    }
    push @kids, $pid;
}
my $fails = 0;
for (@kids) {
    waitpid($_, 0);
    $fails++ if $?;
}
is($fails, 0, '4 clients at once got their planned statuses');

my $j4 = wait_total($port4, 4 * $total);
check_json($j4, expected(4), '4 workers, 4 clients');

my %pids;
for (1 .. 40) {
    my (undef, undef, $t) = http_get($port4, '/canary');
    my $c = text_counts($t);
    $pids{ $c->{stable}{requests} . '/' . $c->{canary}{requests} }++;
}
is_deeply([keys %pids], [(4 * $e->{stable}{requests}) . '/'
                         . (4 * $e->{canary}{requests})],
          'every worker answers the same totals');

my (undef, undef, $prom4) = http_get($port4, '/canary?format=prometheus');
promtool_ok($prom4, '4 workers');

done();
