#!/usr/bin/perl

# Targeting without Redis: override, match, requires, $canary_reason,
# $canary_variant_<name> as feature flags in one header, the order of the
# steps that need no Redis state, and the configuration errors of match
# and requires (nginx -t names file and line).  The steps that read Redis
# (user lists, window, segment) are in t/11-targeting-redis.t.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use CanaryTest;

need_module();

my $conf = <<'EOF';
upstream app_stable { server 127.0.0.1:%%PORT_B1%%; }
upstream app_canary { server 127.0.0.1:%%PORT_B2%%; }
upstream app_flags  { server 127.0.0.1:%%PORT_B3%%; }

server {
    listen 127.0.0.1:%%PORT_B1%%;
    location / { return 200 "stable\n"; }
}

server {
    listen 127.0.0.1:%%PORT_B2%%;
    location / { return 200 "canary\n"; }
}

server {
    listen 127.0.0.1:%%PORT_B3%%;
    location / { return 200 "$http_x_flags\n"; }
}

canary_zone 1m;

# override alone, at 0% and 100%
canary_rollout ov0   { key $http_x_user_id; stable app_stable;
                       canary app_canary; percent 0;
                       override $http_x_canary; }
canary_rollout ov100 { key $http_x_user_id; stable app_stable;
                       canary app_canary; percent 100;
                       override $http_x_canary; }

# match alone: case-sensitive, case-insensitive, with a capture group, on a
# complex value
canary_rollout ms    { key $http_x_user_id; stable app_stable;
                       canary app_canary; percent 100;
                       match $http_user_agent ~Mobile; }
canary_rollout mi    { key $http_x_user_id; stable app_stable;
                       canary app_canary; percent 100;
                       match $http_user_agent "~*(iphone|android)"; }
canary_rollout mc    { key $http_x_user_id; stable app_stable;
                       canary app_canary; percent 100;
                       match "$http_x_plan/$http_x_region" ~^pro/eu-; }

# requires: "both" is canary only if pa and pb are; "chain" needs "both";
# the parents are steered by their overrides
canary_rollout pa    { key $http_x_user_id; stable app_stable;
                       canary app_canary; percent 0;
                       override $http_x_a; }
canary_rollout pb    { key $http_x_user_id; stable app_stable;
                       canary app_canary; percent 0;
                       override $http_x_b; }
canary_rollout both  { key $http_x_user_id; stable app_stable;
                       canary app_canary; percent 100;
                       requires pa pb; }
canary_rollout chain { key $http_x_user_id; stable app_stable;
                       canary app_canary; percent 100;
                       requires both; }

# every step at once, to prove the order:
# override > no_key > match > requires > percent
canary_rollout all   { key $http_x_user_id; stable app_stable;
                       canary app_canary; percent 100;
                       override $http_x_canary;
                       match $http_user_agent ~*mobile;
                       requires pa; }

# feature flags, each at its own percent and salt
canary_rollout fa    { key $http_x_user_id; stable app_stable;
                       canary app_canary; percent 10; }
canary_rollout fb    { key $http_x_user_id; stable app_stable;
                       canary app_canary; percent 50; }
canary_rollout fc    { key $http_x_user_id; stable app_stable;
                       canary app_canary; percent 90; salt flag-c; }
canary_rollout new-fd { key $http_x_user_id; stable app_stable;
                       canary app_canary; percent 30; }

server {
    listen 127.0.0.1:%%PORT%%;

    location = /r {
        return 200 "$canary_variant_pa|$canary_variant_pb|$canary_variant_both|$canary_variant_chain\n";
    }

    location = /ov0   { canary ov0;   return 200 "%%V%%"; }
    location = /ov100 { canary ov100; return 200 "%%V%%"; }
    location = /ms    { canary ms;    return 200 "%%V%%"; }
    location = /mi    { canary mi;    return 200 "%%V%%"; }
    location = /mc    { canary mc;    return 200 "%%V%%"; }
    location = /both  { canary both;  return 200 "%%V%%"; }
    location = /chain { canary chain; return 200 "%%V%%"; }
    location = /all   { canary all;   return 200 "%%V%%"; }

    location = /proxy {
        canary all;
        proxy_pass http://$canary_upstream;
    }

    location = /flags {
        proxy_pass http://app_flags;
        proxy_set_header X-Flags
            "fa=$canary_variant_fa,fb=$canary_variant_fb,fc=$canary_variant_fc,fd=$canary_variant_new_fd";
    }
}
EOF

my %vars = (V => '$canary_variant|$canary_reason|$canary_bucket\n');

my $ng = start_nginx($conf, vars => \%vars);
my $port = $ng->port;

sub ask {
    my ($path, %h) = @_;
    my ($status, undef, $body) = http_get($port, $path, %h);
    chomp $body;
    return "$status $body" if $status != 200;
    my ($variant, $reason) = split /\|/, $body;
    return "$variant $reason";
}

sub case {
    my ($path, $h, $want, $what) = @_;
    is(ask($path, %$h), $want,
       "$path " . join(', ', map { "$_: $h->{$_}" } sort keys %$h)
       . ($what ? " ($what)" : '') . ": $want");
}

my %u = ('X-User-Id' => 'u1');


# 1. override: always/canary -> canary, never/stable -> stable, any case;
# other values and an empty one are ignored

for my $v (qw(always canary ALWAYS Canary aLwAyS CANARY)) {
    case('/ov0', { %u, 'X-Canary' => $v }, 'canary override');
}
for my $v (qw(never stable NEVER Stable nEvEr STABLE)) {
    case('/ov100', { %u, 'X-Canary' => $v }, 'stable override');
}
for my $v ('yes', 'on', 'alwaysx', 'alway', 'stables', '1', 'c anary',
           'can-ary')
{
    case('/ov0', { %u, 'X-Canary' => $v }, 'stable percent', 'ignored');
    case('/ov100', { %u, 'X-Canary' => $v }, 'canary percent', 'ignored');
}
case('/ov100', { %u }, 'canary percent', 'no override header');

# the override decides without a key
case('/ov0', { 'X-Canary' => 'always' }, 'canary override', 'no key');
case('/ov100', { 'X-Canary' => 'never' }, 'stable override', 'no key');
case('/ov100', {}, 'stable no_key');


# 5. match: ~ is case-sensitive, ~* is not; no value -> no match

my @ua = (
    # user agent, ms (~Mobile), mi (~*(iphone|android))
    ['Mozilla/5.0 (iPhone) Mobile Safari', 'canary percent', 'canary percent'],
    ['Mozilla/5.0 (Linux; Android 14) mobile', 'stable match', 'canary percent'],
    ['Mozilla/5.0 (X11; Linux) Firefox', 'stable match', 'stable match'],
    ['ANDROID-MOBILE', 'stable match', 'canary percent'],
    ['MobileAndroid', 'canary percent', 'canary percent'],
);
for my $c (@ua) {
    my ($ua, $ms, $mi) = @$c;
    case('/ms', { %u, 'User-Agent' => $ua }, $ms);
    case('/mi', { %u, 'User-Agent' => $ua }, $mi);
}
case('/ms', { %u }, 'stable match', 'no User-Agent');
case('/mi', { %u }, 'stable match', 'no User-Agent');
case('/mi', { %u, 'User-Agent' => '' }, 'stable match', 'empty User-Agent');

# on a complex value
case('/mc', { %u, 'X-Plan' => 'pro', 'X-Region' => 'eu-west' },
     'canary percent');
case('/mc', { %u, 'X-Plan' => 'free', 'X-Region' => 'eu-west' },
     'stable match');
case('/mc', { %u, 'X-Plan' => 'pro', 'X-Region' => 'us-east' },
     'stable match');
case('/mc', { %u }, 'stable match', 'no headers');


# 6. requires: canary only if every named rollout is canary

for my $c (['always', 'always', 'canary percent'],
           ['always', 'never',  'stable requires'],
           ['never',  'always', 'stable requires'],
           ['never',  'never',  'stable requires'],
           [undef,    'always', 'stable requires'])
{
    my ($a, $b, $want) = @$c;
    my %h = (%u, defined $a ? ('X-A' => $a) : (), 'X-B' => $b);
    case('/both', \%h, $want);
    case('/chain', \%h, $want, 'through "both"');
}

# the required rollouts keep their own answers in the same request
my (undef, undef, $body) = http_get($port, '/r', %u, 'X-A' => 'always',
                                    'X-B' => 'never');
is($body, "canary|stable|stable|stable\n",
   'pa canary, pb stable: both and chain stable in one request');


# the order: each earlier step beats each later one

my %mob = ('User-Agent' => 'mobile');
my %desk = ('User-Agent' => 'desktop');

# override beats no_key, match and requires (pa is stable without X-A)
case('/all', { 'X-Canary' => 'always', %desk }, 'canary override',
     'override beats no_key and match');
case('/all', { %u, 'X-Canary' => 'always', %desk }, 'canary override',
     'override beats match');
case('/all', { %u, 'X-Canary' => 'always', %mob }, 'canary override',
     'override beats requires');
case('/all', { %u, 'X-Canary' => 'never', %mob, 'X-A' => 'always' },
     'stable override', 'override beats percent');

# no_key beats match and requires
case('/all', { %desk }, 'stable no_key', 'no_key beats match');
case('/all', { %mob }, 'stable no_key', 'no_key beats requires');

# match beats requires
case('/all', { %u, %desk }, 'stable match', 'match beats requires');
case('/all', { %u, %desk, 'X-A' => 'always' }, 'stable match',
     'match beats percent');

# requires beats percent
case('/all', { %u, %mob }, 'stable requires', 'requires beats percent');

# all passed: percent
case('/all', { %u, %mob, 'X-A' => 'always' }, 'canary percent',
     'every step passed');

# an ignored override value falls through to the next step
case('/all', { %u, %desk, 'X-Canary' => 'maybe' }, 'stable match',
     'ignored override');

# the proxied request follows the same decision
for my $c ([{ %u, %mob, 'X-A' => 'always' }, 'canary'],
           [{ %u, %desk }, 'stable'],
           [{ %u, %desk, 'X-Canary' => 'canary' }, 'canary'])
{
    my ($h, $want) = @$c;
    my ($st, undef, $b) = http_get($port, '/proxy', %$h);
    is("$st $b", "200 $want\n", "proxied to $want");
}


# $canary_variant_<name>: several rollouts in one header to the backend,
# each by its own salt and percent

my @keys = map { "flag-user-$_" } 1 .. 2000;
my @res = http_client($port)->pipeline(
    map { ['/flags', 'X-User-Id' => $_] } @keys);

my (@bad, %n);
for my $i (0 .. $#keys) {
    my $k = $keys[$i];
    my %want;
    for my $f (['fa', 'fa', 1000], ['fb', 'fb', 5000], ['fc', 'flag-c', 9000],
               ['fd', 'new-fd', 3000])
    {
        my ($name, $salt, $limit) = @$f;
        $want{$name} = murmur3_32("$salt:$k") % 10000 < $limit
                       ? 'canary' : 'stable';
        $n{$name}++ if $want{$name} eq 'canary';
    }
    my $want = "fa=$want{fa},fb=$want{fb},fc=$want{fc},fd=$want{fd}\n";
    push @bad, [$k, $res[$i][2], $want] if $res[$i][2] ne $want;
}
ok(!@bad, 'X-Flags carries fa, fb, fc and new-fd (as $canary_variant_new_fd) for 2000 users')
    or diag explain [@bad[0 .. 4]];
ok($n{fa} > 100 && $n{fa} < 300 && $n{fb} > 850 && $n{fb} < 1150
   && $n{fc} > 1700 && $n{fc} < 1900,
   "flag shares near 10/50/90%: $n{fa} $n{fb} $n{fc} of 2000");

my ($st, undef, $nokey) = http_get($port, '/flags');
is($nokey, "fa=stable,fb=stable,fc=stable,fd=stable\n", 'no key: every flag stable');


# configuration errors: nginx -t fails naming the directive's file:line

my $base = <<'EOF';
upstream s { server 127.0.0.1:1; }
upstream c { server 127.0.0.1:2; }
canary_zone 1m;
EOF

sub ro {
    my ($name, @lines) = @_;
    return "canary_rollout $name {\n    key \$http_x_user_id;\n"
         . "    stable s;\n    canary c;\n"
         . join('', map { "    $_\n" } @lines) . "}\n";
}

my @bad_conf = (
    ['bad regex', qr/pcre2_compile\(\) failed|missing closing parenthesis/,
     ro('a', 'match $http_user_agent "~*(iphone"; #!')],
    ['bad case-sensitive regex', qr/pcre2_compile\(\) failed/,
     ro('a', 'match $http_user_agent ~a[b; #!')],
    ['match without ~', qr/"mobile"/,
     ro('a', 'match $http_user_agent mobile; #!')],
    ['empty match regex', qr/empty/,
     ro('a', 'match $http_user_agent ~*; #!')],
    ['match with one argument', qr/number of arguments/,
     ro('a', 'match ~mobile; #!')],
    ['duplicate match', qr/duplicate/,
     ro('a', 'match $http_user_agent ~a;', 'match $http_user_agent ~b; #!')],
    ['duplicate override', qr/duplicate/,
     ro('a', 'override $http_x_a;', 'override $http_x_b; #!')],
    ['requires an unknown rollout', qr/"a".*"nosuch"/,
     ro('a', 'requires nosuch; #!')],
    ['requires an unknown rollout among known ones', qr/"b".*"nosuch"/,
     ro('a') . ro('b', 'requires a nosuch; #!')],
    ['requires itself', qr/"a".*cycle.*a -> a/,
     ro('a', 'requires a; #!')],
    ['requires cycle of two', qr/cycle.*(?:a -> b -> a|b -> a -> b)/,
     ro('a', 'requires b; #!') . ro('b', 'requires a; #!')],
    ['requires cycle of three, entered from outside',
     qr/cycle.*(?:b -> c -> d -> b|c -> d -> b -> c|d -> b -> c -> d)/,
     ro('a', 'requires b;') . ro('b', 'requires c; #!')
     . ro('c', 'requires d; #!') . ro('d', 'requires x b; #!')
     . ro('x')],
);

for my $case (@bad_conf) {
    my ($name, $msg, $body) = @$case;
    my ($rc, $out, $conf) = nginx_t($base . $body);

    my @cl = split /\n/, $conf;
    my @lines = grep { $cl[$_ - 1] =~ /#!/ } 1 .. @cl;
    my ($text, $file, $at) = conf_error($out);
    undef $at unless ($file // '') =~ /nginx\.conf$/;

    isnt($rc, 0, "$name: nginx -t fails");
    ok(defined $at && grep({ $_ == $at } @lines),
       "$name: error at nginx.conf:" . join('|', @lines))
        or diag $out;
    like($text // '', $msg, "$name: message names the culprit")
        or diag $out;
}

my @good_conf = (
    ['diamond of requires', ro('a') . ro('b', 'requires a;')
     . ro('c', 'requires a;') . ro('d', 'requires b c;', 'requires a;')],
    ['requires a rollout declared later', ro('a', 'requires z;') . ro('z')],
    ['match ~ and ~* with a capture', ro('a', 'match $http_user_agent ~(x);')
     . ro('b', 'match "$http_x_a$http_x_b" "~*^y z$";')],
);

for my $case (@good_conf) {
    my ($name, $body) = @$case;
    my ($rc, $out) = nginx_t($base . $body);
    is($rc, 0, "$name: nginx -t passes") or diag $out;
}

done();
