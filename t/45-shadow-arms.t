#!/usr/bin/perl

# Shadow traffic in a rollout with arms (A/B/n): the shadow is the variant
# after the last arm.
#
# - 600 keys at percent 20, shadow 30, arms blue:green 1:1: every exposed
#   key is in an arm, the shadowed ones are exactly the keys with a bucket
#   in [2000, 5000) (the canary backend's log says which), and the
#   counters of stable, blue, green and shadow are exact in text (in that
#   order, shadow last), JSON and Prometheus
# - a reload that adds an arm (new counters for the arms' layout) keeps
#   the shadow's counters, and shows shadow after the new arm
# - a Redis restarted empty gets "shadow" back from the restore
# - "shadow 0" from Redis on a rollout configured with 30: the state file
#   keeps it, so a restart from the state file does not shadow
# - nginx -t: an arm named "shadow" in a shadowed rollout fails, with the
#   rollout's file and line

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP;
use Test::More;
use Time::HiRes qw(sleep time);
use CanaryTest;

need_module();

my $redis = start_redis();

my $arms = <<'EOF';
    variant blue  canary_b weight=1;
    variant green canary_b weight=1;
EOF

my $conf = <<'EOF';
log_format shadowlog '$uri $arg_k';

upstream stable_b { server 127.0.0.1:%%PORT_S%%; }
upstream canary_b { server 127.0.0.1:%%PORT_C%%; }

server {
    listen 127.0.0.1:%%PORT_S%%;
    location / { return 200 "s\n"; }
}

server {
    listen 127.0.0.1:%%PORT_C%%;
    location / { return 200 "c\n"; }
    location /shadow/ {
        access_log %%PREFIX%%/logs/shadow.log shadowlog;
        return 200 "shadow\n";
    }
}

canary_zone 1m;
canary_redis 127.0.0.1:%%RPORT%%;
canary_sync_interval 100ms;
canary_state_file %%PREFIX%%/canary.state;

canary_rollout ab {
    key     $arg_k;
    stable  stable_b;
%%ARMS%%
    percent 20;
    shadow  30;
}

server {
    listen 127.0.0.1:%%PORT%%;

    location /p/ {
        canary ab;
        canary_shadow /_shadow;
        add_header X-Shadow $canary_shadow always;
        add_header X-Variant $canary_variant always;
        proxy_pass http://$canary_upstream;
    }

    location /_shadow {
        internal;
        proxy_pass http://canary_b/shadow/;
    }

    location = /canary { canary_status; }
}
EOF

my $ng = start_nginx($conf, vars => { RPORT => $redis->port,
                                      ARMS => $arms });
my $port = $ng->port;

sub bucket { murmur3_32("ab:$_[0]") % 10000 }

sub status_json {
    my (undef, undef, $body) = http_get($port, '/canary?format=json');
    my $j = decode_json($body);
    return (grep { $_->{name} eq 'ab' } @{ $j->{rollouts} })[0];
}

sub shadow_keys {
    my $f = $ng->prefix . '/logs/shadow.log';
    return () unless -e $f;
    return map { (split / /)[1] } split /\n/, CanaryTest::read_file($f);
}

sub wait_until {
    my ($cond, $secs) = @_;
    my $end = time + $secs;
    while (time < $end) {
        return 1 if $cond->();
        sleep 0.05;
    }
    return 0;
}


# 1. 600 keys

my @keys = map { "u$_" } 1 .. 600;
my @want_shadow = sort grep { bucket($_) >= 2000 && bucket($_) < 5000 }
                       @keys;
my $exposed = grep { bucket($_) < 2000 } @keys;
cmp_ok(scalar @want_shadow, '>', 100, 'enough keys next in line');

my @res = http_client($port)->pipeline(map { ["/p/?k=$_"] } @keys);
is(scalar(grep { $_->[0] == 200 } @res), 600, '600 answers 200');

my (%by, @sent);
for my $i (0 .. $#keys) {
    my $h = $res[$i][1];
    $by{ $h->{'x-variant'} }++;
    push @sent, $keys[$i] if $h->{'x-shadow'} eq '1';
}
is(($by{blue} // 0) + ($by{green} // 0), $exposed,
   "the $exposed exposed keys are in the arms");
ok($by{blue} && $by{green}, 'both arms have users');
is($by{stable}, 600 - $exposed, 'the others are stable');
is_deeply([sort @sent], \@want_shadow,
          '$canary_shadow: exactly the buckets in [2000, 5000)');

ok(wait_until(sub { shadow_keys() >= @want_shadow }, 10),
   'every shadow reached the canary');
is_deeply([sort(shadow_keys())], \@want_shadow,
          'the canary saw exactly those keys');

my $n = @want_shadow;
my $j;
ok(wait_until(sub { $j = status_json();
                    $j->{variants}{shadow}
                    && $j->{variants}{shadow}{requests} == $n }, 10),
   "JSON: shadow requests $n");
is_deeply([map { $j->{variants}{$_}{requests} } qw(stable blue green)],
          [600 - $exposed, $by{blue}, $by{green}],
          'JSON: stable, blue and green requests');
is($j->{variants}{shadow}{responses}{'2xx'}, $n, 'JSON: shadow 2xx');
is($j->{shadow}, 30, 'JSON: shadow 30');
is_deeply([map { $_->{name} } @{ $j->{arms} }], [qw(blue green)],
          'JSON: the arms');

my (undef, undef, $text) = http_get($port, '/canary');
my @order = $text =~ /^ (\w+) requests \d+/mg;
is_deeply(\@order, [qw(stable blue green shadow)],
          'text: stable, the arms, then shadow')
    or diag $text;
like($text, qr/^ shadow requests $n 1xx 0 2xx $n /m, 'text: shadow line');
like($text, qr/^ shadow_percent 30$/m, 'text: shadow_percent 30');

my (undef, undef, $prom) = http_get($port, '/canary?format=prometheus');
my %p;
for (split /\n/, $prom) {
    next if /^#/;
    my ($k, $v) = /^(\S+) (\S+)$/ or next;
    $p{$k} = $v;
}
is_deeply([map { $p{"nginx_canary_requests_total{rollout=\"ab\","
                    . "variant=\"$_\"}"} } qw(stable blue green shadow)],
          [600 - $exposed, $by{blue}, $by{green}, $n],
          'Prometheus: the four variants');
is($p{'nginx_canary_shadow_percent{rollout="ab"}'}, 30,
   'Prometheus: shadow_percent');


# 2. a reload that adds an arm: new arm counters, the shadow's stay

ok($ng->reload(vars => { ARMS => $arms
                                 . "    variant red   canary_b weight=1;\n" }),
   'reloaded with a third arm');
$j = status_json();
is_deeply([map { $_->{name} } @{ $j->{arms} }], [qw(blue green red)],
          'three arms after the reload');
is($j->{variants}{shadow}{requests}, $n, 'the shadow counters carried on');
is($j->{variants}{blue}{requests}, $by{blue}, 'and blue\'s');
is($j->{variants}{red}{requests}, 0, 'red starts at 0');
(undef, undef, $text) = http_get($port, '/canary');
@order = $text =~ /^ (\w+) requests \d+/mg;
is_deeply(\@order, [qw(stable blue green red shadow)],
          'text: shadow after the new arm');


# 3. a Redis restarted empty gets the shadow share back

$redis->cli('HSET', 'canary:rollout:ab', 'percent', '20', 'shadow', '12.5');
ok(wait_until(sub { status_json()->{shadow} == 12.5 }, 5),
   'shadow 12.5 from Redis');
$redis->kill('KILL');
sleep 0.5;
$redis->start;
ok(wait_until(sub { ($redis->cli('HGET', 'canary:rollout:ab', 'shadow')
                     // '') eq '12.50' }, 10),
   'the restore wrote shadow 12.50 back into the empty Redis');
is(status_json()->{shadow}, 12.5, 'and nginx kept it meanwhile');


# 4. shadow 0 from Redis, kept by the state file across a restart

$redis->cli('HSET', 'canary:rollout:ab', 'percent', '20', 'shadow', '0');
ok(wait_until(sub { status_json()->{shadow} == 0 }, 5),
   'shadow 0 from Redis');
ok(wait_until(sub { CanaryTest::read_file($ng->prefix . '/canary.state')
                        =~ /^shadow ab 0\.00$/m }, 5),
   'the state file keeps shadow 0 (the config says 30)');

$redis->stop;
$ng->stop;
$ng->start;
$port = $ng->port;
is(status_json()->{shadow}, 0, 'restarted without Redis: shadow 0');
my (undef, $h) = http_get($port, "/p/?k=$want_shadow[0]");
is($h->{'x-shadow'}, '0', 'a key next in line is not shadowed');


# 5. nginx -t

my ($rc, $out) = nginx_t(<<'EOF');
canary_zone 1m;
canary_rollout ab {
    key $arg_k;
    stable s;
    variant blue c;
    variant shadow c;
}
server {
    listen 127.0.0.1:%%PORT%%;
    location / { canary ab; canary_shadow /_s; }
}
EOF
isnt($rc, 0, 'an arm named "shadow" in a shadowed rollout fails nginx -t');
like($out, qr/rollout "ab" in \S+:\d+ has an arm named "shadow"/,
     'saying why, with the rollout\'s file and line') or diag $out;

done();
