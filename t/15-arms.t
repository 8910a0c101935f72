#!/usr/bin/perl

# Arms (A/B/n): "variant NAME UPSTREAM weight=N" in a rollout.  The
# exposure (percent) and the allocation (Unleash's variant selection, seed
# 86028157) are separate: three arms 1:1:2 at 40% over 20,000 keys share
# 60/10/10/20 %, every key exactly as the formula says, the same on 4
# workers and on a second nginx; raising the exposure keeps every exposed
# key in its arm; "arm:<arm> off" in Redis moves only that arm's users (to
# stable, reason arm_off); new weights give the formula's new answer for
# every key; bad weight/arm values are refused and logged; overrides by
# arm name; explain names the arm; the counters of every arm are exact in
# text, JSON and Prometheus (promtool); the state file keeps the
# allocation; config errors fail nginx -t with file and line.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use File::Temp qw(tempdir);
use JSON::PP;
use List::Util qw(sum);
use Test::More;
use Time::HiRes qw(sleep time);
use CanaryTest;
use CanarySync;

need_module();

my $conf = <<'EOF';
upstream h_stable { server 127.0.0.1:1; }
upstream h_blue   { server 127.0.0.1:2; }
upstream h_green  { server 127.0.0.1:3; }
upstream h_red    { server 127.0.0.1:4; }

canary_zone 1m;
canary_redis %%REDIS%%;
canary_sync_interval 100ms;
canary_state_file %%SF%%;

canary_rollout home {
    key      $http_x_user_id;
    stable   h_stable;
    variant  blue  h_blue;
    variant  green h_green weight=1;
    variant  red   h_red   weight=2;
    percent  10;
    override $http_x_canary;
}

canary_rollout two {
    key    $http_x_user_id;
    stable h_stable;
    canary h_blue;
    percent 50;
}

canary_rollout one {
    key      $http_x_user_id;
    stable   h_stable;
    variant  solo h_red;
    percent  0;
    override $http_x_canary;
}

server {
    listen 127.0.0.1:%%PORT%% %%LISTEN%%;

    location / {
        canary home;
        return 200 "$canary_variant|$canary_reason|$canary_upstream|$canary_variant_home|$pid\n";
    }

    location /one {
        canary one;
        return 200 "$canary_variant|$canary_reason|$canary_upstream|$canary_variant_one|$pid\n";
    }

    location /two {
        canary two;
        return 200 "$canary_variant|$canary_reason|$canary_upstream|$canary_variant_two|$pid\n";
    }

    location = /canary { canary_status; }
}
EOF

my @names = qw(blue green red);
my %up = (stable => 'h_stable', blue => 'h_blue', green => 'h_green',
          red => 'h_red');

# the documented formula, independently of the module

sub expect {
    my ($key, $pct, $w, $off) = @_;
    my $b = murmur3_32("home:$key") % 10000;
    return ['stable', 'percent'] if $b >= $pct * 100;
    my $total = sum(@$w);
    return ['stable', 'arm_off'] if $total == 0;
    my $t = murmur3_32("home:$key", 86028157) % $total + 1;
    my $c = 0;
    for my $i (0 .. $#$w) {
        next unless $w->[$i];
        $c += $w->[$i];
        next if $c < $t;
        return ['stable', 'arm_off'] if $off && $off->{ $names[$i] };
        return [$names[$i], 'percent'];
    }
    die 'unreachable';
}

# every answer of a counted location, by variant, to check the counters
my %tally;

sub ask {
    my ($port, $path, $keys, @h) = @_;
    my @res = http_client($port)->pipeline(
        map { [$path, 'X-User-Id' => $_, @h] } @$keys);
    return map {
        my ($st, undef, $body) = @$_;
        chomp $body;
        my %a;
        @a{qw(variant reason upstream named pid)} = split /\|/, $body, -1;
        $a{status} = $st;
        $tally{$port}{ $path eq '/' ? 'home' : 'two' }{ $a{variant} }++;
        \%a;
    } @res;
}

sub mismatches {
    my ($a, $keys, $pct, $w, $off) = @_;
    return grep {
        my ($x, $e) = ($a->[$_], expect($keys->[$_], $pct, $w, $off));
        !($x->{status} == 200 && $x->{variant} eq $e->[0]
          && $x->{reason} eq $e->[1] && $x->{named} eq $e->[0]
          && $x->{upstream} eq $up{ $e->[0] })
    } 0 .. $#$keys;
}

sub share {
    my ($a, $v) = @_;
    return 100 * (grep { $_->{variant} eq $v } @$a) / @$a;
}

# config errors: nginx -t fails at the line marked "#!"

sub arms_rollout {
    my (@v) = @_;
    return "upstream s { server 127.0.0.1:1; }\n"
         . "upstream a { server 127.0.0.1:2; }\n"
         . "upstream b { server 127.0.0.1:3; }\n"
         . "canary_zone 1m;\n"
         . "canary_rollout exp {\n    key \$http_x_user_id;\n"
         . "    stable s;\n" . join('', map { "    $_\n" } @v)
         . "    percent 10;\n}\n"
         . "server {\n    listen 127.0.0.1:%%PORT%%;\n"
         . "    location / { canary exp; return 200; }\n}\n";
}

for my $case (
    ['duplicate variant', qr/duplicate variant "blue"/,
     'variant blue a;', 'variant blue b; #!'],
    ['"canary" and a variant named canary', qr/"canary" is duplicate/,
     'variant canary a;', 'canary b; #!'],
    ['a variant named canary after "canary"', qr/duplicate variant "canary"/,
     'canary a;', 'variant canary b; #!'],
    ['unknown upstream', qr/unknown upstream "nosuch" of variant "green"/,
     'variant blue a;', 'variant green nosuch; #!'],
    ['host without a port', qr/unknown upstream "example\.com"/,
     'variant blue example.com; #!'],
    ['weight 10001', qr/invalid weight "weight=10001"/,
     'variant blue a weight=10001; #!'],
    ['weight -1', qr/invalid weight "weight=-1"/,
     'variant blue a weight=-1; #!'],
    ['weight 1.5', qr/invalid weight "weight=1\.5"/,
     'variant blue a weight=1.5; #!'],
    ['not weight=', qr/invalid parameter "w=1"/,
     'variant blue a w=1; #!'],
    ['stable is reserved', qr/"stable" is reserved/,
     'variant stable a; #!'],
    ['a quote in a name', qr/invalid variant name/,
     "variant 'bl\"ue' a; #!"],
    ['17 arms', qr/too many variants .* at most 16/,
     (map { "variant v$_ a;" } 1 .. 16), 'variant v17 a; #!'],
    ['too many arguments', qr/invalid number of arguments in "variant"/,
     'variant blue a weight=1 x; #!'],
)
{
    my ($name, $msg, @v) = @$case;
    my ($rc, $out, $text) = nginx_t(arms_rollout(@v));
    my @cl = split /\n/, $text;
    my @lines = grep { $cl[$_ - 1] =~ /#!/ } 1 .. @cl;
    my ($err, $file, $at) = conf_error($out);
    undef $at unless ($file // '') =~ /nginx\.conf$/;
    isnt($rc, 0, "$name: nginx -t fails");
    ok(defined $at && grep({ $_ == $at } @lines),
       "$name: error at nginx.conf:@lines") or diag $out;
    like($err // '', $msg, "$name: message") or diag $out;
}

for my $case (
    ['16 arms, weights 0 and 10000, an address with a port',
     (map { "variant v$_ a;" } 1 .. 14), 'variant v15 b weight=0;',
     'variant v16 127.0.0.1:8080 weight=10000;'],
    ['"canary" and variants', 'canary a;', 'variant blue b weight=3;'],
)
{
    my ($name, @v) = @$case;
    my ($rc, $out) = nginx_t(arms_rollout(@v));
    is($rc, 0, "$name: nginx -t passes") or diag $out;
}


my @keys = map { "user-$_" } 1 .. 20000;
my $hkey = 'canary:rollout:home';

my $r = start_redis();
my $dir = tempdir('canary-arms-XXXXXX', TMPDIR => 1,
                  CLEANUP => !$ENV{CANARY_KEEP});
chmod 0777, $dir;
my $sf = "$dir/canary.state";
my %vars = (REDIS => '127.0.0.1:' . $r->port, LISTEN => 'reuseport',
            SF => $sf);
my $ng = start_nginx($conf, workers => 4, vars => \%vars);
my $port = $ng->port;


# 10% exposure from the config, weights 1:1:2

my @a10 = ask($port, '/', \@keys);
my @bad = mismatches(\@a10, \@keys, 10, [1, 1, 2]);
ok(!@bad, '10%: every key as the formula says (variant, reason, '
          . 'upstream, $canary_variant_home)')
    or diag explain [map { [$keys[$_], $a10[$_]] } @bad[0 .. 4]];


# 40% from Redis: 60/10/10/20, every key exact, exposed keys keep their arm

$r->cli('HSET', $hkey, 'percent', '40');
ok(defined wait_until(sub {
       my @a = ask($port, '/', [@keys[0 .. 499]]);
       !mismatches(\@a, [@keys[0 .. 499]], 40, [1, 1, 2]) }, 10),
   'percent 40 applied');

my @a40 = ask($port, '/', \@keys);
@bad = mismatches(\@a40, \@keys, 40, [1, 1, 2]);
ok(!@bad, '40%: every key of 20,000 as the formula says')
    or diag explain [map { [$keys[$_], $a40[$_]] } @bad[0 .. 4]];

for my $s (['stable', 60], ['blue', 10], ['green', 10], ['red', 20]) {
    my $got = share(\@a40, $s->[0]);
    ok(abs($got - $s->[1]) <= 1, "$s->[0]: $got% (want $s->[1] +- 1)");
}

my @moved = grep { $a10[$_]{variant} ne 'stable'
                   && $a40[$_]{variant} ne $a10[$_]{variant} } 0 .. $#keys;
my $exposed10 = grep { $_->{variant} ne 'stable' } @a10;
ok(!@moved && $exposed10 > 1500,
   "10% -> 40%: all $exposed10 exposed keys keep their arm");

# fresh connections, spread over the 4 workers by reuseport

my (%seen, @diff);
for my $i (0 .. 199) {
    my ($a) = ask($port, '/', [$keys[$i % 50]]);
    $seen{ $a->{pid} } = 1;
    push @diff, $i if $a->{variant} ne $a40[$i % 50]{variant};
}
ok(!@diff, 'the same key, the same arm: 200 connections');
cmp_ok(scalar keys %seen, '>=', 2, 'answered by ' . keys(%seen) . ' workers');


# a second nginx (1 worker) on the same Redis: the same arms

my $ng2 = start_nginx($conf, vars => { %vars, LISTEN => '',
                                       SF => "$dir/other.state" });
ok(defined wait_until(sub {
       my (undef, undef, $b) = http_get($ng2->port, '/canary?format=json');
       ($b // '') =~ /"name":"home","percent":40\b/ }, 10),
   'second nginx synced');
my @b = ask($ng2->port, '/', [@keys[0 .. 1999]]);
ok(!grep({ $b[$_]{variant} ne $a40[$_]{variant} } 0 .. 1999),
   'second nginx: identical arms for 2,000 keys');
$ng2->stop;


# arm:green off moves only green's users, to stable, reason arm_off

$r->cli('HSET', $hkey, 'arm:green', 'off');
ok(defined wait_until(sub {
       my @a = ask($port, '/', [@keys[0 .. 499]]);
       !mismatches(\@a, [@keys[0 .. 499]], 40, [1, 1, 2], { green => 1 }) },
       10), 'arm:green off applied');

my @off = ask($port, '/', \@keys);
@bad = mismatches(\@off, \@keys, 40, [1, 1, 2], { green => 1 });
ok(!@bad, 'green off: every key as expected');
my @changed = grep { $off[$_]{variant} ne $a40[$_]{variant} } 0 .. $#keys;
ok(@changed > 1000 && !grep({ $a40[$_]{variant} ne 'green'
                              || $off[$_]{variant} ne 'stable'
                              || $off[$_]{reason} ne 'arm_off' } @changed),
   scalar(@changed) . ' keys moved: all were green, all now stable/arm_off');

# explain names the arm and the reason

my $green = $keys[ (grep { $a40[$_]{variant} eq 'green' } 0 .. $#keys)[0] ];
my $red = $keys[ (grep { $a40[$_]{variant} eq 'red' } 0 .. $#keys)[0] ];
my (undef, undef, $body) = http_get($port, "/canary?explain=home&key=$green");
my $x = decode_json($body);
is("$x->{variant} $x->{reason}", 'stable arm_off', 'explain: arm off');
(undef, undef, $body) = http_get($port, "/canary?explain=home&key=$red");
$x = decode_json($body);
is("$x->{variant} $x->{reason}", 'red percent', 'explain: the arm');
(undef, undef, $body) = http_get($port,
                                 "/canary?explain=home&key=$red&override=blue");
$x = decode_json($body);
is("$x->{variant} $x->{reason}", 'blue override', 'explain: override blue');

$r->cli('HSET', $hkey, 'arm:green', 'on');
ok(defined wait_until(sub {
       my @a = ask($port, '/', [@keys[0 .. 499]]);
       !mismatches(\@a, [@keys[0 .. 499]], 40, [1, 1, 2]) }, 10),
   'arm:green on again: everyone back');


# new weights: exactly the formula's new answer for every key

$r->cli('HSET', $hkey, 'weight:blue', '3', 'weight:red', '0');
ok(defined wait_until(sub {
       my @a = ask($port, '/', [@keys[0 .. 499]]);
       !mismatches(\@a, [@keys[0 .. 499]], 40, [3, 1, 0]) }, 10),
   'weights 3:1:0 applied');
my @w = ask($port, '/', \@keys);
@bad = mismatches(\@w, \@keys, 40, [3, 1, 0]);
ok(!@bad, 'weights 3:1:0: every key of 20,000 as the formula says');
is(scalar(grep { $_->{variant} eq 'red' } @w), 0, 'weight 0: nobody red');


# bad values are refused, logged once, and the last good value stays

sub refused_re {
    my ($value, $field) = @_;
    return qr/\[error\].*canary sync: refused "\Q$value\E" for field "\Q$field\E" of "\Q$hkey\E"/;
}

for my $bad (['weight:blue', '-1'], ['weight:blue', '10001'],
             ['weight:blue', '1.5'], ['weight:blue', ''],
             ['arm:red', 'maybe'], ['weight:purple', '5'],
             ['arm:purple', 'off'])
{
    $r->cli('HSET', $hkey, @$bad);
    ok(defined wait_until(sub { log_count($ng, refused_re($bad->[1],
                                                          $bad->[0])) == 1 },
                          5), "$bad->[0] \"$bad->[1]\" refused and logged");
    $r->cli('HDEL', $hkey, $bad->[0]) if $bad->[0] =~ /purple|arm:/;
}
$r->cli('HSET', $hkey, 'weight:blue', '3');
sleep 0.3;
@w = ask($port, '/', [@keys[0 .. 1999]]);
ok(!mismatches(\@w, [@keys[0 .. 1999]], 40, [3, 1, 0]),
   'the last good weights stayed in force');


# overrides by arm name; "canary" is the first arm

for my $o (['green', 'green'], ['red', 'red'], ['canary', 'blue'],
           ['always', 'blue'], ['stable', 'stable'], ['never', 'stable'])
{
    my ($a) = ask($port, '/', [$keys[0]], 'X-Canary' => $o->[0]);
    is("$a->{variant} $a->{reason} $a->{upstream}",
       "$o->[1] override $up{ $o->[1] }", "override $o->[0] -> $o->[1]");
}


# users:<arm> sets pin users to an arm, before stable_users; an arm that
# is off sends its pinned users to stable too

my @pin = grep { $w[$_]{variant} eq 'stable' } 0 .. 1999;
my @g = map { $keys[$_] } @pin[0 .. 2];
my @rd = map { $keys[$_] } @pin[3 .. 4];
$r->cli('SADD', "$hkey:users:green", @g);
$r->cli('SADD', "$hkey:users:red", @rd);
$r->cli('SADD', "$hkey:stable_users", @g, @rd);
ok(defined wait_until(sub {
       my @a = ask($port, '/', [@g, @rd]);
       join(' ', map { "$_->{variant}/$_->{reason}" } @a) eq
       join(' ', ('green/canary_users') x 3, ('red/canary_users') x 2) },
       10), 'users:green and users:red pin their users (weight 0 or not)');
(undef, undef, $body) = http_get($port, "/canary?explain=home&key=$g[0]");
$x = decode_json($body);
is("$x->{variant} $x->{reason}", 'green canary_users', 'explain: pinned');
$r->cli('HSET', $hkey, 'arm:red', 'off');
ok(defined wait_until(sub {
       my @a = ask($port, '/', [@rd]);
       !grep { "$_->{variant}/$_->{reason}" ne 'stable/arm_off' } @a }, 10),
   'arm:red off: its pinned users go to stable, arm_off');
$r->cli('HDEL', $hkey, 'arm:red');
ok(defined wait_until(sub {
       my @a = ask($port, '/', [@rd]);
       !grep { "$_->{variant}" ne 'red' } @a }, 10), 'arm:red on again');


# a rollout of one arm not named canary: override by its name, or canary

for my $o (['solo', 'solo'], ['canary', 'solo'], ['nosuch', 'stable']) {
    my (undef, undef, $b) = http_get($port, '/one', 'X-User-Id' => 'k1',
                                     'X-Canary' => $o->[0]);
    like($b, qr/^\Q$o->[1]\E\|/, "one arm: override $o->[0] -> $o->[1]");
}


# a two-sided rollout as before; arm:canary off sends its users to stable

my @t = ask($port, '/two', [@keys[0 .. 999]]);
ok(!grep({ my $b = murmur3_32("two:$keys[$_]") % 10000;
           $t[$_]{variant} ne ($b < 5000 ? 'canary' : 'stable')
           || $t[$_]{reason} ne 'percent'
           || $t[$_]{upstream} ne ($b < 5000 ? 'h_blue' : 'h_stable') }
         0 .. 999), 'two-sided rollout: canary and stable as ever');

$r->cli('HSET', 'canary:rollout:two', 'arm:canary', 'off');
ok(defined wait_until(sub {
       my @a = ask($port, '/two', [@keys[0 .. 199]]);
       !grep { $_->{variant} ne 'stable' } @a }, 10),
   'arm:canary off: nobody canary');
@t = ask($port, '/two', [@keys[0 .. 999]]);
ok(!grep({ my $b = murmur3_32("two:$keys[$_]") % 10000;
           $t[$_]{reason} ne ($b < 5000 ? 'arm_off' : 'percent') } 0 .. 999),
   'the exposed keys say arm_off, the others percent');
$r->cli('DEL', 'canary:rollout:two');


# counters: every arm exact in text, JSON and Prometheus

%tally = %{ $tally{$port} };

sleep 0.2;
(undef, undef, $body) = http_get($port, '/canary?format=json');
my $j = decode_json($body);
my ($home) = grep { $_->{name} eq 'home' } @{ $j->{rollouts} };
my ($two) = grep { $_->{name} eq 'two' } @{ $j->{rollouts} };

is_deeply([sort keys %{ $home->{variants} }],
          [qw(blue green red stable)], 'JSON: one entry per variant');
for my $v (qw(stable blue green red)) {
    is($home->{variants}{$v}{requests}, $tally{home}{$v} // 0,
       "JSON: $v requests $tally{home}{$v}");
    is($home->{variants}{$v}{responses}{'2xx'}, $tally{home}{$v} // 0,
       "JSON: $v 2xx");
}
is_deeply([map { "$_->{name} $_->{upstream} $_->{weight} "
                 . ($_->{on} ? 'on' : 'off') . " $_->{users}" }
               @{ $home->{arms} }],
          ['blue h_blue 3 on 0', 'green h_green 1 on 3', 'red h_red 0 on 2'],
          'JSON: the arms, their weights and states');
is_deeply([sort keys %{ $two->{variants} }], [qw(canary stable)],
          'JSON: a two-sided rollout has stable and canary');
ok(!exists $two->{arms}, 'JSON: a two-sided rollout shows no arms');
is($two->{variants}{$_}{requests}, $tally{two}{$_}, "JSON: two $_")
    for qw(stable canary);

(undef, undef, $body) = http_get($port, '/canary');
for my $v (qw(stable blue green red)) {
    like($body, qr/^ \Q$v\E requests $tally{home}{$v} 1xx 0 2xx $tally{home}{$v} /m,
         "text: $v requests");
}
like($body, qr/^ arm blue weight 3 on users 0\n arm green weight 1 on users 3\n arm red weight 0 on users 2$/m,
     'text: the arms');

(undef, undef, $body) = http_get($port, '/canary?format=prometheus');
for my $v (qw(stable blue green red)) {
    like($body, qr/^nginx_canary_requests_total\{rollout="home",variant="\Q$v\E"\} $tally{home}{$v}$/m,
         "prometheus: $v requests");
    like($body, qr/^nginx_canary_request_duration_seconds_count\{rollout="home",variant="\Q$v\E"\} $tally{home}{$v}$/m,
         "prometheus: $v histogram count");
}
SKIP: {
    skip 'promtool not installed', 1
        unless system('command -v promtool >/dev/null 2>&1') == 0;
    my $f = File::Temp->new;
    print $f $body;
    close $f;
    my $out = `promtool check metrics < $f 2>&1`;
    is($? >> 8, 0, 'promtool check metrics passes') or diag $out;
}


# the state file keeps the allocation and the users files the pinned
# users: a restart with Redis down routes as before

$r->cli('HSET', $hkey, 'arm:green', 'off');
ok(defined wait_until(sub {
       (CanaryTest::read_file($sf) // '') =~ /^arm home green 1 off$/m }, 10),
   'state file: the arm that is off');
my $state = CanaryTest::read_file($sf);
like($state, qr/^arm home blue 3 on$/m, 'state file: a changed weight');
like($state, qr/^arm home red 0 on$/m, 'state file: weight 0');
unlike($state, qr/^arm two /m, 'state file: nothing for the two-sided one');

my @before = ask($port, '/', [@keys[0 .. 1999], @g, @rd]);
$ng->stop;
$r->stop;
$ng = start_nginx($conf, workers => 2, vars => \%vars);
like($ng->error_log, qr/starts with 3 arm users/, 'users:green from its file');
my @after = ask($ng->port, '/', [@keys[0 .. 1999], @g, @rd]);
my @d = grep { "$before[$_]{variant} $before[$_]{reason}"
               ne "$after[$_]{variant} $after[$_]{reason}" } 0 .. $#after;
ok(!@d, 'after a restart with Redis down: the same answers for '
        . scalar(@after) . ' keys, the pinned ones too')
    or diag explain [map { [$before[$_], $after[$_]] } @d[0 .. 2]];
is(scalar(grep { $_->{reason} eq 'arm_off' } @after[0 .. 1999]) > 100, 1,
   'green still off');


# a reload that changes the arms (green gone, purple new, another order)
# keeps the counters of the variants whose names stay

sub counts {
    my ($port) = @_;
    my (undef, undef, $b) = http_get($port, '/canary?format=json');
    my ($h) = grep { $_->{name} eq 'home' } @{ decode_json($b)->{rollouts} };
    return { map { $_ => $h->{variants}{$_}{requests} }
             keys %{ $h->{variants} } };
}

sleep 0.2;
my $c1 = counts($ng->port);
is_deeply($c1, { map { $_ => $tally{ $ng->port }{home}{$_} // 0 }
                 qw(stable blue green red) },
          'after the restart: the counts of what it answered');

(my $conf2 = $conf) =~ s{    variant  blue  h_blue;
    variant  green h_green weight=1;
    variant  red   h_red   weight=2;}{    variant  red    h_red   weight=2;
    variant  blue   h_blue;
    variant  purple h_green weight=1;} or die 'conf2';
ok($ng->reload(body => $conf2), 'reload with red, blue, purple');
my $c2 = counts($ng->port);
is_deeply($c2, { stable => $c1->{stable}, red => $c1->{red},
                 blue => $c1->{blue}, purple => 0 },
          'stable, red and blue keep their counts; purple starts at 0');

# the allocation follows the arms by name: red and blue keep what the
# state file said (0 and 3), purple takes its configured weight

my %t2 = %{ $tally{ $ng->port }{home} };
my (undef, undef, $jb) = http_get($ng->port, '/canary?format=json');
my ($hj) = grep { $_->{name} eq 'home' } @{ decode_json($jb)->{rollouts} };
is_deeply([map { "$_->{name} $_->{weight} " . ($_->{on} ? 'on' : 'off') }
           @{ $hj->{arms} }], ['red 0 on', 'blue 3 on', 'purple 1 on'],
          'after the reload: the arms by name, in the new order');
@names = qw(red blue purple);
$up{purple} = 'h_green';
my %pinned = map { $_ => 1 } @g, @rd;
my @free = grep { !$pinned{$_} } @keys[0 .. 1999];
my @rl = ask($ng->port, '/', \@free);
@bad = mismatches(\@rl, \@free, 40, [0, 3, 1]);
ok(!@bad, 'after the reload: every key as the formula says for 0:3:1')
    or diag explain [map { [$free[$_], $rl[$_]] } @bad[0 .. 2]];
my @pr = ask($ng->port, '/', \@rd);
ok(!grep({ "$_->{variant} $_->{reason}" ne 'red canary_users' } @pr),
   'users:red still pins its users to red');

ask($ng->port, '/', [@keys[0 .. 999]], 'X-Canary' => 'purple');
ask($ng->port, '/', [@keys[0 .. 499]], 'X-Canary' => 'red');
sleep 0.2;
my $c3 = counts($ng->port);
my %t3 = %{ $tally{ $ng->port }{home} };
is_deeply($c3, { map { $_ => $c2->{$_} + ($t3{$_} // 0) - ($t2{$_} // 0) }
                 qw(stable red blue purple) },
          'every variant counted on exactly after the reload');
cmp_ok($c3->{purple}, '>=', 1000, 'purple counted');

done();
