#!/usr/bin/perl

# Bucketing: stable answers across requests, workers and instances; the
# documented hash (murmur3 and unleash); shares; percent raises; rollouts
# with different salts; no key; 0% and 100%; the proxied upstream.

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

server {
    listen 127.0.0.1:%%PORT_B1%%;
    location / { return 200 "stable $http_x_canary\n"; }
}

server {
    listen 127.0.0.1:%%PORT_B2%%;
    location / { return 200 "canary $http_x_canary\n"; }
}

canary_zone 1m;

canary_rollout checkout {
    key $cookie_uid $http_x_user_id;
    stable app_stable;
    canary app_canary;
    percent %%PCT%%;
}

canary_rollout zero { key $http_x_user_id; stable app_stable;
                      canary app_canary; percent 0; }
canary_rollout full { key $http_x_user_id; stable app_stable;
                      canary app_canary; percent 100; }
canary_rollout sa   { key $http_x_user_id; stable app_stable;
                      canary app_canary; percent 50; salt s1; }
canary_rollout sb   { key $http_x_user_id; stable app_stable;
                      canary app_canary; percent 50; salt s2; }
canary_rollout gr   { key $http_x_user_id; stable app_stable;
                      canary app_canary; percent %%UPCT%%; salt gr1;
                      hash unleash; }
canary_rollout gx   { key $http_x_user_id; stable app_stable;
                      canary app_canary; percent %%XPCT%%; salt groupX;
                      hash unleash; }

server {
    listen 127.0.0.1:%%PORT%% %%LISTEN%%;

    location / {
        canary checkout;
        proxy_pass http://$canary_upstream;
        proxy_set_header X-Canary $canary_variant;
    }

    location = /v    { canary checkout; return 200 "%%V%%"; }
    location = /v0   { canary zero;     return 200 "%%V%%"; }
    location = /v100 { canary full;     return 200 "%%V%%"; }
    location = /vgr  { canary gr;       return 200 "%%V%%"; }
    location = /vgx  { canary gx;       return 200 "%%V%%"; }
    location = /ab   { return 200 "$canary_variant_sa|$canary_variant_sb\n"; }
}
EOF

my %vars = (PCT => 10, UPCT => 73, XPCT => 25, LISTEN => 'reuseport',
            V => '$canary_variant|$canary_bucket|$canary_reason|'
                 . '$canary_rollout|$canary_upstream|$pid\n');

my $ng = start_nginx($conf, workers => 4, vars => \%vars);
my $port = $ng->port;

# answers for many keys over one keep-alive connection:
# a list of {variant, bucket, reason, rollout, upstream, pid}

sub ask {
    my ($port, $path, @keys) = @_;
    my @res = http_client($port)->pipeline(
        map { [$path, defined $_ ? ('X-User-Id' => $_) : ()] } @keys);
    return map { parse($_) } @res;
}

sub parse {
    my ($r) = @_;
    my ($status, undef, $body) = @$r;
    chomp $body;
    my %a;
    @a{qw(variant bucket reason rollout upstream pid)} = split /\|/, $body, -1;
    $a{status} = $status;
    return \%a;
}

sub share {
    my ($want, @a) = @_;
    return 100 * (grep { $_->{variant} eq $want } @a) / @a;
}

my @keys = map { "user-$_" } 1 .. 20000;


# the documented murmur3 bucketing, exactly: h(<salt>:<key>) % 10000,
# canary iff bucket < percent * 100; the rollout name is the default salt

my @a = ask($port, '/v', @keys);
is(scalar @a, 20000, '20000 answers');

my @wrong = grep {
    my ($k, $a) = ($keys[$_], $a[$_]);
    my $b = murmur3_32("checkout:$k") % 10000;
    my $v = $b < 1000 ? 'canary' : 'stable';
    !($a->{status} == 200 && $a->{bucket} eq $b && $a->{variant} eq $v
      && $a->{reason} eq 'percent' && $a->{rollout} eq 'checkout'
      && $a->{upstream} eq "app_$v")
} 0 .. $#keys;

ok(!@wrong, 'bucket, variant, reason, rollout, upstream as documented')
    or diag explain [map { [$keys[$_], $a[$_]] } @wrong[0 .. 4]];

my $share = share('canary', @a);
ok($share >= 9.5 && $share <= 10.5, "10% gives $share% canary");

my %canary10 = map { $keys[$_] => 1 } grep { $a[$_]{variant} eq 'canary' }
               0 .. $#keys;


# the first non-empty key wins: cookie uid before X-User-Id

for my $case (
    [{ Cookie => 'uid=alice', 'X-User-Id' => 'bob' }, 'alice'],
    [{ 'X-User-Id' => 'bob' }, 'bob'],
    [{ Cookie => 'uid=', 'X-User-Id' => 'bob' }, 'bob'],
    [{ Cookie => 'other=1; uid=carol' }, 'carol'],
)
{
    my ($h, $key) = @$case;
    my (undef, undef, $body) = http_get($port, '/v', %$h);
    my $a = parse([200, {}, $body]);
    is($a->{bucket}, murmur3_32("checkout:$key") % 10000,
       "key is \"$key\" for " . join ', ', map { "$_: $h->{$_}" } sort keys %$h);
}


# same key, same answer: repeated on one connection, and on many fresh
# connections spread over 4 workers by reuseport

my @some = @keys[0 .. 19];
my %first = map { $keys[$_] => $a[$_]{bucket} } 0 .. $#some;

my @rep = ask($port, '/v', map { @some } 1 .. 20);
ok(!grep({ $rep[$_]{bucket} ne $first{ $some[$_ % 20] } } 0 .. $#rep),
   'same key, same bucket: 400 keep-alive requests');

my (%pids, $diff);
for my $i (0 .. 199) {
    my $key = $some[$i % 20];
    my (undef, undef, $body) = http_get($port, '/v', 'X-User-Id' => $key);
    my $a = parse([200, {}, $body]);
    $pids{ $a->{pid} }++;
    $diff++ if $a->{bucket} ne $first{$key};
}
ok(!$diff, 'same key, same bucket: 200 connections');
cmp_ok(scalar keys %pids, '>=', 2, 'answered by ' . (keys %pids) . ' workers');


# a second instance (other ports, 1 worker) gives identical answers

my $ng2 = start_nginx($conf, vars => { %vars, LISTEN => '' });
my @b = ask($ng2->port, '/v', @keys[0 .. 1999]);
ok(!grep({ "$a[$_]{variant} $a[$_]{bucket}" ne "$b[$_]{variant} $b[$_]{bucket}" }
         0 .. 1999), 'second instance: identical answers for 2000 keys');
$ng2->stop;


# no key -> stable, no_key

for my $path (qw(/v /v100)) {
    my ($a) = ask($port, $path, undef);
    is("$a->{variant} $a->{reason} $a->{upstream}", 'stable no_key app_stable',
       "no key on $path: stable, no_key");
}


# 0% -> nobody, 100% -> everybody

my @z = ask($port, '/v0', @keys[0 .. 1999]);
is(scalar(grep { $_->{variant} eq 'stable' && $_->{reason} eq 'percent' } @z),
   2000, '0%: all 2000 stable, reason percent');

my @f = ask($port, '/v100', @keys[0 .. 1999]);
is(scalar(grep { $_->{variant} eq 'canary' && $_->{reason} eq 'percent'
                 && $_->{upstream} eq 'app_canary' } @f),
   2000, '100%: all 2000 canary, reason percent');


# independent salts: 50% and 50% overlap on about 25%; $canary_variant_NAME
# works in a location without "canary NAME"

my @ab = map { [split /\|/, $_->[2] =~ s/\n\z//r] }
         http_client($port)->pipeline(
             map { ['/ab', 'X-User-Id' => $_] } @keys[0 .. 9999]);

my @bad = grep {
    my $k = $keys[$_];
    my $wa = murmur3_32("s1:$k") % 10000 < 5000 ? 'canary' : 'stable';
    my $wb = murmur3_32("s2:$k") % 10000 < 5000 ? 'canary' : 'stable';
    "$ab[$_][0]|$ab[$_][1]" ne "$wa|$wb"
} 0 .. $#ab;
ok(!@bad, '$canary_variant_sa/_sb follow their salts')
    or diag explain [map { [$keys[$_], $ab[$_]] } @bad[0 .. 4]];

my $sa = 100 * (grep { $_->[0] eq 'canary' } @ab) / @ab;
my $sb = 100 * (grep { $_->[1] eq 'canary' } @ab) / @ab;
my $both = 100 * (grep { $_->[0] eq 'canary' && $_->[1] eq 'canary' } @ab)
           / @ab;
ok(abs($sa - 50) <= 2 && abs($sb - 50) <= 2, "shares $sa% and $sb%");
ok(abs($both - 25) <= 2, "overlap $both% near 25%");


# unleash: "gr1:123" normalizes to 73, "groupX:999" to 25

for my $c (['/vgr', '123', 'canary'], ['/vgx', '999', 'canary'],
           ['/vgr', undef, 'stable'])
{
    my ($path, $key, $want) = @$c;
    my ($a) = ask($port, $path, $key);
    is($a->{variant}, $want, "unleash $path key " . ($key // 'none'));
}

my @u = ask($port, '/vgr', @keys[0 .. 1999]);
my @ubad = grep {
    my $n = murmur3_32("gr1:$keys[$_]") % 100 + 1;
    $u[$_]{variant} ne ($n <= 73 ? 'canary' : 'stable')
} 0 .. $#u;
ok(!@ubad, 'unleash: canary iff (h % 100) + 1 <= 73 for 2000 keys')
    or diag explain [map { [$keys[$_], $u[$_]] } @ubad[0 .. 4]];


# the proxied request reaches the upstream $canary_variant names, with the
# X-Canary header set

my @p = ask($port, '/v', @keys[0 .. 299]);
my @r = http_client($port)->pipeline(
    map { ['/', 'X-User-Id' => $_] } @keys[0 .. 299]);
my @pbad = grep {
    $r[$_][0] != 200 || $r[$_][2] ne "$p[$_]{variant} $p[$_]{variant}\n"
} 0 .. 299;
ok(!@pbad, 'proxied to the chosen upstream, X-Canary passed')
    or diag explain [map { [$keys[$_], $r[$_][2]] } @pbad[0 .. 4]];
my %seen = map { $_->[2] => 1 } @r;
ok($seen{"stable stable\n"} && $seen{"canary canary\n"},
   'both upstreams reached');


# raising 10% -> 20% by reload keeps every canary key canary;
# unleash 73 -> 72 makes "gr1:123" stable, 25 -> 24 "groupX:999" stable

ok($ng->reload(vars => { PCT => 20, UPCT => 72, XPCT => 24 }),
   'reload with percent 20');

my @a20 = ask($port, '/v', @keys);
my @lost = grep { $canary10{ $keys[$_] } && $a20[$_]{variant} ne 'canary' }
           0 .. $#keys;
ok(!@lost, 'every 10% canary key is still canary at 20%')
    or diag scalar(@lost) . ' lost, e.g. ' . join ' ', @keys[@lost[0 .. 4]];

$share = share('canary', @a20);
ok($share >= 19.5 && $share <= 20.5, "20% gives $share% canary");
ok(!grep({ $a20[$_]{variant} ne
           (murmur3_32("checkout:$keys[$_]") % 10000 < 2000
            ? 'canary' : 'stable') } 0 .. $#keys),
   '20%: canary iff bucket < 2000');

for my $c (['/vgr', '123'], ['/vgx', '999']) {
    my ($a) = ask($port, @$c);
    is($a->{variant}, 'stable', "unleash $c->[0] key $c->[1] at percent - 1");
}

done();
