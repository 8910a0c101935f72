#!/usr/bin/perl

# Targeting from Redis, changed live through redis-cli: segment percents
# (percent:<value>), time windows (start/end, unix seconds and RFC 3339,
# around the current time), canary_users / stable_users (SADD, SREM, DEL),
# and the order of evaluation with every step in play.  Each change is
# made with redis-cli and a PUBLISH on canary:changed, then polled for with
# a bounded deadline.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use POSIX qw(strftime);
use Test::More;
use Time::HiRes qw(sleep time);
use CanaryTest;

need_module();

my $redis = start_redis();

my $conf = <<'EOF';
upstream app_stable { server 127.0.0.1:1; }
upstream app_canary { server 127.0.0.1:2; }

canary_zone 4m;
canary_redis 127.0.0.1:%%REDIS%%;
canary_sync_interval 1s;

canary_rollout geo   { key $http_x_user_id; stable app_stable;
                       canary app_canary; percent 0;
                       segment $http_x_country; }

canary_rollout win   { key $http_x_user_id; stable app_stable;
                       canary app_canary; percent 100; }

canary_rollout users { key $http_x_user_id; stable app_stable;
                       canary app_canary; percent 0; }

# every step at once
canary_rollout full  { key $http_x_user_id; stable app_stable;
                       canary app_canary; percent 0;
                       override $http_x_canary;
                       segment $http_x_country;
                       match $http_user_agent ~*mobile;
                       requires dep; }

canary_rollout dep   { key $http_x_user_id; stable app_stable;
                       canary app_canary; percent 0;
                       override $http_x_dep; }

server {
    listen 127.0.0.1:%%PORT%%;

    location = /geo   { canary geo;   return 200 "%%V%%"; }
    location = /win   { canary win;   return 200 "%%V%%"; }
    location = /users { canary users; return 200 "%%V%%"; }
    location = /full  { canary full;  return 200 "%%V%%"; }
}
EOF

my $ng = start_nginx($conf, vars => {
    REDIS => $redis->port,
    V => '$canary_variant|$canary_reason|$canary_bucket\n',
});
my $port = $ng->port;

sub cli { $redis->cli(@_) }

sub changed {
    my ($rollout) = @_;
    cli('PUBLISH', 'canary:changed', $rollout);
}

sub answer {
    my ($path, %h) = @_;
    my ($status, undef, $body) = http_get($port, $path, %h);
    chomp $body;
    my ($variant, $reason, $bucket) = split /\|/, $body, -1;
    return wantarray ? ("$variant $reason", $bucket) : "$variant $reason";
}

# poll until the answer is $want (deadline 10 s): true if it came
sub wait_for {
    my ($path, $h, $want) = @_;
    my $end = time + 10;
    my $got;
    while (time < $end) {
        $got = answer($path, %$h);
        return 1 if $got eq $want;
        sleep 0.05;
    }
    diag "$path: still \"$got\", waited for \"$want\"";
    return 0;
}

sub case {
    my ($path, $h, $want, $what) = @_;
    is(scalar answer($path, %$h), $want,
       "$path " . join(', ', map { "$_: $h->{$_}" } sort keys %$h)
       . ($what ? " ($what)" : '') . ": $want");
}

my @keys = map { "user-$_" } 1 .. 2000;

# variant and reason for many keys and one country over one connection
sub ask_many {
    my ($path, $country, @k) = @_;
    my @r = http_client($port)->pipeline(
        map { [$path, 'X-User-Id' => $_,
               defined $country ? ('X-Country' => $country) : ()] } @k);
    return map { [split /\|/, $_->[2] =~ s/\n\z//r, -1] } @r;
}

sub rfc3339 { strftime('%Y-%m-%dT%H:%M:%SZ', gmtime $_[0]) }


# --- segments: percent:<value> replaces percent for that value -----------

cli('HSET', 'canary:rollout:geo', 'percent', '10', 'percent:US', '50',
    'percent:DE', '0', 'percent:NZ', '12.34');
changed('geo');

ok(wait_for('/geo', { 'X-User-Id' => 'u1', 'X-Country' => 'US' },
            (murmur3_32('geo:u1') % 10000 < 5000 ? 'canary' : 'stable')
            . ' segment'), 'percent:US applied');

for my $c (['US', 5000, 'segment'], ['DE', 0, 'segment'],
           ['NZ', 1234, 'segment'], ['FR', 1000, 'percent'],
           ['us', 1000, 'percent'], [undef, 1000, 'percent'],
           ['', 1000, 'percent'], ['USA', 1000, 'percent'],
           ['U', 1000, 'percent'])
{
    my ($country, $limit, $reason) = @$c;
    my @a = ask_many('/geo', $country, @keys);
    my @bad = grep {
        my $b = murmur3_32("geo:$keys[$_]") % 10000;
        my $v = $b < $limit ? 'canary' : 'stable';
        "$a[$_][0] $a[$_][1] $a[$_][2]" ne "$v $reason $b"
    } 0 .. $#keys;
    ok(!@bad, 'country ' . ($country // 'none') . ": canary iff bucket < "
              . "$limit, reason $reason (2000 keys)")
        or diag explain [map { [$keys[$_], $a[$_]] } @bad[0 .. 2]];
}

# live: the US to 100%, then its field removed
cli('HSET', 'canary:rollout:geo', 'percent:US', '100');
changed('geo');
ok(wait_for('/geo', { 'X-User-Id' => 'u2', 'X-Country' => 'US' },
            'canary segment')
   && !grep({ $_->[0] ne 'canary' } ask_many('/geo', 'US', @keys)),
   'percent:US 100: every US user canary');

cli('HDEL', 'canary:rollout:geo', 'percent:US');
changed('geo');
my $u2 = murmur3_32('geo:u2') % 10000 < 1000 ? 'canary' : 'stable';
ok(wait_for('/geo', { 'X-User-Id' => 'u2', 'X-Country' => 'US' },
            "$u2 percent"), 'HDEL percent:US: the US back on percent');

# the global percent moves, the segments stay
cli('HSET', 'canary:rollout:geo', 'percent', '100');
changed('geo');
ok(wait_for('/geo', { 'X-User-Id' => 'u2', 'X-Country' => 'FR' },
            'canary percent'), 'percent 100 for the rest of the world');
case('/geo', { 'X-User-Id' => 'u2', 'X-Country' => 'DE' }, 'stable segment',
     'percent:DE 0 holds DE back');

# a segment percent that does not parse is refused, naming key, field and
# value; that segment keeps its last good percent
cli('HSET', 'canary:rollout:geo', 'percent:DE', '150', 'percent:NZ', '100');
changed('geo');
ok(wait_for('/geo', { 'X-User-Id' => 'u2', 'X-Country' => 'NZ' },
            'canary segment'), 'percent:NZ 100 applied beside a bad value');
ok(scalar(grep {
       /\[error\].*refused/ && /"150"/ && /"percent:DE"/
       && /"canary:rollout:geo"/
   } split /\n/, $ng->error_log), 'percent:DE 150 refused in the log');
case('/geo', { 'X-User-Id' => 'u2', 'X-Country' => 'DE' }, 'stable segment',
     'percent:DE keeps its last good 0');


# --- time window: start/end around the current time ---------------------

cli('HSET', 'canary:rollout:win', 'percent', '100');
changed('win');

my %w = ('X-User-Id' => 'u1');

# set (start, end) and wait for $want; first moves to the opposite answer,
# so that the wait proves the new fields were applied
sub window {
    my ($start, $end, $want, $what) = @_;

    if ($want eq 'canary percent') {
        cli('HDEL', 'canary:rollout:win', 'start');
        cli('HSET', 'canary:rollout:win', 'end', int(time) - 100);
        changed('win');
        wait_for('/win', \%w, 'stable window') or return fail("$what: reset");
    } else {
        cli('HDEL', 'canary:rollout:win', 'start', 'end');
        changed('win');
        wait_for('/win', \%w, 'canary percent') or return fail("$what: reset");
    }

    cli('HDEL', 'canary:rollout:win', 'start', 'end');
    cli('HSET', 'canary:rollout:win', 'start', $start) if defined $start;
    cli('HSET', 'canary:rollout:win', 'end', $end) if defined $end;
    changed('win');

    ok(wait_for('/win', \%w, $want),
       "window start=" . ($start // '-') . " end=" . ($end // '-')
       . " ($what): $want");
}

my $now = int(time);

window($now - 3600, $now + 3600, 'canary percent', 'inside, unix');
window($now + 3600, $now + 7200, 'stable window', 'before, unix');
window($now - 7200, $now - 3600, 'stable window', 'after, unix');
window($now - 3600, undef, 'canary percent', 'after start, no end');
window($now + 3600, undef, 'stable window', 'before start, no end');
window(undef, $now + 3600, 'canary percent', 'before end, no start');
window(undef, $now - 3600, 'stable window', 'after end, no start');
window(rfc3339($now - 3600), rfc3339($now + 3600), 'canary percent',
       'inside, RFC 3339');
window(rfc3339($now + 3600), undef, 'stable window', 'before, RFC 3339');
window(undef, rfc3339($now - 60), 'stable window', 'after, RFC 3339');
window($now - 3600, rfc3339($now + 3600), 'canary percent',
       'unix start, RFC 3339 end');

# every key of the rollout follows the window, whatever its bucket
cli('HDEL', 'canary:rollout:win', 'start');
cli('HSET', 'canary:rollout:win', 'end', $now - 10);
changed('win');
wait_for('/win', \%w, 'stable window');
ok(!grep({ "$_->[0] $_->[1]" ne 'stable window' }
         ask_many('/win', undef, @keys)),
   'closed window: 2000 keys stable, reason window');

# live across the bounds: a start 3 s ahead opens the window then, an end
# 3 s ahead closes it then; each change is seen within a second of its
# time (nginx's clock is cached per event-loop turn)
sub flip {
    my ($field, $from, $to) = @_;
    my $at = int(time) + 3;
    cli('HDEL', 'canary:rollout:win', 'start', 'end');
    cli('HSET', 'canary:rollout:win', $field, $at);
    changed('win');
    ok(wait_for('/win', \%w, $from), "$field in 3 s: $from now");

    my ($first, $early, $end) = (undef, undef, time + 10);
    while (time < $end) {
        my $t = time;
        my $got = answer('/win', %w);
        if ($got eq $to) {
            $first = $t;
            last;
        }
        $early //= "\"$got\" at $t" if $got ne $from;
        sleep 0.05;
    }
    ok(!defined $early, "$field: $from until then")
        or diag "got $early";
    ok(defined $first && $first >= $at - 1 && $first < $at + 2,
       "$field: $to from " . ($first // 'never') . " (bound $at)");
}

flip('start', 'stable window', 'canary percent');
flip('end', 'canary percent', 'stable window');

# a value that does not parse is refused, naming key, field and value;
# the last good window stays
cli('HDEL', 'canary:rollout:win', 'start', 'end');
cli('HSET', 'canary:rollout:win', 'end', $now - 10);
changed('win');
wait_for('/win', \%w, 'stable window');

for my $bad ('yesterday', '2026-13-01T00:00:00Z', '12e9', '-5',
             '2026-11-28 10:00:00')
{
    cli('HSET', 'canary:rollout:win', 'end', $bad);
    changed('win');
    my $end = time + 10;
    my $logged;
    while (time < $end) {
        last if $logged = grep {
            /\[error\].*refused/ && /"\Qcanary:rollout:win\E"/
            && /"end"/ && /"\Q$bad\E"/
        } split /\n/, $ng->error_log;
        sleep 0.1;
    }
    ok($logged, "end \"$bad\" refused with key, field and value in the log");
    case('/win', \%w, 'stable window', "after end \"$bad\": last good end");
}
cli('HSET', 'canary:rollout:win', 'end', $now + 3600);
changed('win');
ok(wait_for('/win', \%w, 'canary percent'), 'a good end applies again');


# --- canary_users / stable_users, SADD and SREM live -----------------------

cli('SADD', 'canary:rollout:users:canary_users', 'u-c1', 'u-c2',
    'user with space', "caf\xc3\xa9", 'x' x 300);
changed('users');
ok(wait_for('/users', { 'X-User-Id' => 'u-c1' }, 'canary canary_users'),
   'SADD canary_users applied');

for my $k ('u-c2', 'user with space', "caf\xc3\xa9", 'x' x 300) {
    case('/users', { 'X-User-Id' => $k }, 'canary canary_users',
         'member ' . substr($k, 0, 20));
}
for my $k ('u-c', 'u-c12', 'U-C1', 'user with', 'cafe', 'x' x 299,
           'x' x 301, 'u-s1')
{
    case('/users', { 'X-User-Id' => $k }, 'stable percent',
         'not a member: ' . substr($k, 0, 20));
}

cli('SREM', 'canary:rollout:users:canary_users', 'u-c1');
changed('users');
ok(wait_for('/users', { 'X-User-Id' => 'u-c1' }, 'stable percent'),
   'SREM canary_users u-c1: back on percent');
case('/users', { 'X-User-Id' => 'u-c2' }, 'canary canary_users',
     'u-c2 still a member');

cli('DEL', 'canary:rollout:users:canary_users');
changed('users');
ok(wait_for('/users', { 'X-User-Id' => 'u-c2' }, 'stable percent'),
   'DEL canary_users: every member back on percent');

cli('HSET', 'canary:rollout:users', 'percent', '100');
cli('SADD', 'canary:rollout:users:stable_users', 'u-s1', 'u-s2');
changed('users');
ok(wait_for('/users', { 'X-User-Id' => 'u-s1' }, 'stable stable_users'),
   'SADD stable_users at 100%: stable, stable_users');
case('/users', { 'X-User-Id' => 'u-s3' }, 'canary percent', 'not a member');

# in both sets: canary_users is asked first
cli('SADD', 'canary:rollout:users:canary_users', 'u-s2');
changed('users');
ok(wait_for('/users', { 'X-User-Id' => 'u-s2' }, 'canary canary_users'),
   'in both sets: canary_users wins');

cli('SREM', 'canary:rollout:users:stable_users', 'u-s1');
changed('users');
ok(wait_for('/users', { 'X-User-Id' => 'u-s1' }, 'canary percent'),
   'SREM stable_users u-s1: back on percent');


# --- the order with every step in play ------------------------------------

# full: percent 0, US 100, DE 0 (by segment); match ~*mobile; requires dep
# (steered by X-Dep); override X-Canary; users c1 (canary) and s1 (stable)
cli('HSET', 'canary:rollout:full', 'percent', '0', 'percent:US', '100',
    'percent:DE', '0');
cli('SADD', 'canary:rollout:full:canary_users', 'c1');
cli('SADD', 'canary:rollout:full:stable_users', 's1');
changed('full');

my %ok = ('User-Agent' => 'Mobile', 'X-Dep' => 'always', 'X-Country' => 'US');
ok(wait_for('/full', { 'X-User-Id' => 'c1' }, 'canary canary_users')
   && wait_for('/full', { 'X-User-Id' => 's1' }, 'stable stable_users')
   && wait_for('/full', { 'X-User-Id' => 'p', %ok }, 'canary segment'),
   'full: sets and segments applied');

sub order {
    my ($h, $want, $what) = @_;
    case('/full', $h, $want, $what);
}

# with the window open
order({ 'X-User-Id' => 'c1', 'X-Canary' => 'never', %ok }, 'stable override',
      'override beats canary_users');
order({ 'X-User-Id' => 's1', 'X-Canary' => 'always' }, 'canary override',
      'override beats stable_users');
order({ 'X-User-Id' => 'c1', 'User-Agent' => 'desktop' },
      'canary canary_users', 'canary_users beats match, requires, segment');
order({ 'X-User-Id' => 's1', %ok }, 'stable stable_users',
      'stable_users beats segment 100');
order({ %ok }, 'stable no_key', 'no key');
order({ 'X-User-Id' => 'p', %ok, 'User-Agent' => 'desktop' }, 'stable match',
      'match beats requires and segment');
order({ 'X-User-Id' => 'p', %ok, 'X-Dep' => 'never' }, 'stable requires',
      'requires beats segment');
order({ 'X-User-Id' => 'p', %ok, 'X-Country' => 'DE' }, 'stable segment',
      'segment 0');
order({ 'X-User-Id' => 'p', %ok, 'X-Country' => 'FR' }, 'stable percent',
      'no segment: percent 0');

# with the window closed
cli('HSET', 'canary:rollout:full', 'end', int(time) - 60);
changed('full');
ok(wait_for('/full', { 'X-User-Id' => 'p', %ok }, 'stable window'),
   'full: window closed');

order({ 'X-User-Id' => 'c1', 'User-Agent' => 'desktop' },
      'canary canary_users', 'canary_users beats window');
order({ 'X-User-Id' => 's1', %ok }, 'stable stable_users',
      'stable_users beats window');
order({ 'X-User-Id' => 'p', %ok, 'X-Canary' => 'canary' }, 'canary override',
      'override beats window');
order({ %ok, 'User-Agent' => 'desktop' }, 'stable no_key',
      'no_key beats window');
order({ 'X-User-Id' => 'p', %ok, 'User-Agent' => 'desktop' },
      'stable window', 'window beats match');
order({ 'X-User-Id' => 'p', %ok, 'X-Dep' => 'never' }, 'stable window',
      'window beats requires');
order({ 'X-User-Id' => 'p', %ok }, 'stable window', 'window beats segment');

# a required rollout's own user list counts for the dependant
cli('HDEL', 'canary:rollout:full', 'end');
cli('SADD', 'canary:rollout:dep:canary_users', 'p');
changed('full');
changed('dep');
ok(wait_for('/full', { 'X-User-Id' => 'p', %ok, 'X-Dep' => '' },
            'canary segment'),
   'dep canary by its canary_users: full canary by segment');

done();
