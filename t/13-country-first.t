#!/usr/bin/perl

# conf-examples/country-first.conf, run as written (ports and the module
# path aside) and walked through its steps with redis-cli: New Zealand at
# 5%, then 100% with pinned users, then 10% and 100% for everyone.  Each
# step checks 2000 users in NZ and 2000 elsewhere against the documented
# bucketing, through the proxied backends.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(sleep time);
use CanaryTest;

need_module();

my $example = do {
    local $/;
    open my $fh, '<', "$FindBin::Bin/../conf-examples/country-first.conf"
        or die "country-first.conf: $!";
    <$fh>;
};

# the example is an http-level snippet: the test's ports, two backends
my $http = $example;

$http =~ s/listen 80;/listen 127.0.0.1:%%PORT%%;/ or die 'listen';
$http =~ s/127\.0\.0\.1:6379/127.0.0.1:%%REDIS%%/ or die 'redis';
$http =~ s/10\.0\.0\.1:8080/127.0.0.1:%%PORT_B1%%/ or die 'stable';
$http =~ s/10\.0\.0\.2:8080/127.0.0.1:%%PORT_B2%%/ or die 'canary';
$http .= <<'EOF';
server {
    listen 127.0.0.1:%%PORT_B1%%;
    location / { return 200 "stable $http_x_canary\n"; }
}
server {
    listen 127.0.0.1:%%PORT_B2%%;
    location / { return 200 "canary $http_x_canary\n"; }
}
EOF

my $redis = start_redis();
my $ng = start_nginx($http, workers => 2,
                     vars => { REDIS => $redis->port });
my $port = $ng->port;

sub cli { $redis->cli(@_) }

my @users = map { "shopper-$_" } 1 .. 2000;

# [variant, reason] for each user from one country, through the proxy
sub split_of {
    my ($country, @u) = @_;
    my @r = http_client($port)->pipeline(
        map { ['/checkout/', 'X-User-Id' => $_,
               'CloudFront-Viewer-Country' => $country] } @u);
    # the backend that answered, and the X-Canary header it was sent
    return map {
        my ($backend, $header) = $_->[2] =~ /^(\w+) (\w*)\n\z/;
        [defined $backend && $backend eq $header ? $backend
                                                 : "mismatch: $_->[2]",
         $_->[1]{'x-canary-reason'} // '']
    } @r;
}

sub expect {
    my ($country, $limit, $reason) = @_;
    my @a = split_of($country, @users);
    my @bad = grep {
        my $b = murmur3_32("checkout:$users[$_]") % 10000;
        my $v = $b < $limit ? 'canary' : 'stable';
        "$a[$_][0] $a[$_][1]" ne "$v $reason"
    } 0 .. $#users;
    ok(!@bad, "$country: canary iff bucket < $limit, reason $reason")
        or diag explain [map { [$users[$_], $a[$_]] } @bad[0 .. 2]];
    return scalar grep { $_->[0] eq 'canary' } @a;
}

# apply and wait until each probe [user, country, want] answers as it
# wants; the probes must cover the last command: a keyspace event can
# start a round between two commands, and the next round comes up to
# 100 ms later
sub step {
    my ($what, $probes, @cmds) = @_;
    cli(@$_) for @cmds;
    cli('PUBLISH', 'canary:changed', 'checkout');
    my $end = time + 10;
    my ($got, $want);
    while (time < $end) {
        $got = join ',', map {
            my ($g) = split_of($_->[1], $_->[0]);
            "$g->[0] $g->[1]"
        } @$probes;
        $want = join ',', map { $_->[2] } @$probes;
        last if $got eq $want;
        sleep 0.05;
    }
    is($got, $want, "$what: applied");
}

# a user in NZ whose bucket is under 500 (5%), and one over 1000
my ($nz5) = grep { murmur3_32("checkout:$_") % 10000 < 500 } @users;
my ($hi) = grep { murmur3_32("checkout:$_") % 10000 >= 5000 } @users;


# step 0: nobody, but testers

expect('NZ', 0, 'percent');
expect('FR', 0, 'percent');
my ($t) = http_client($port)->pipeline(
    ['/checkout/', 'X-User-Id' => $hi, 'X-Canary' => 'always']);
is("$t->[2]|$t->[1]{'x-canary-reason'}", "canary canary\n|override",
   'step 0: a tester with X-Canary: always reaches the canary');

# step 1: 5% of New Zealand

step('step 1', [[$nz5, 'NZ', 'canary segment']],
     ['HSET', 'canary:rollout:checkout', 'percent:NZ', '5']);
my $n = expect('NZ', 500, 'segment');
ok($n >= 70 && $n <= 130, "step 1: $n of 2000 NZ users canary (5%)");
expect('FR', 0, 'percent');

# step 2: all of New Zealand; staff pinned to canary, a customer to stable

step('step 2', [[$hi, 'NZ', 'canary segment'],
                [qw(staff-17 FR), 'canary canary_users'],
                [qw(cust-9001 NZ), 'stable stable_users']],
     ['HSET', 'canary:rollout:checkout', 'percent:NZ', '100'],
     ['SADD', 'canary:rollout:checkout:canary_users', 'staff-17', 'staff-42'],
     ['SADD', 'canary:rollout:checkout:stable_users', 'cust-9001']);
expect('NZ', 10000, 'segment');
expect('FR', 0, 'percent');
is(join(',', map { "$_->[0] $_->[1]" }
        split_of('FR', 'staff-17', 'staff-42'), split_of('NZ', 'cust-9001')),
   'canary canary_users,canary canary_users,stable stable_users',
   'step 2: staff canary anywhere, the pinned customer stable in NZ');

# step 3: 10% of everyone else, NZ stays at 100%

step('step 3', [[$nz5, 'FR', 'canary percent']],
     ['HSET', 'canary:rollout:checkout', 'percent', '10']);
expect('NZ', 10000, 'segment');
$n = expect('FR', 1000, 'percent');
ok($n >= 160 && $n <= 240, "step 3: $n of 2000 FR users canary (10%)");
expect('', 1000, 'percent');

# step 4: everyone, the segment dropped

step('step 4', [[$hi, 'NZ', 'canary percent']],
     ['HSET', 'canary:rollout:checkout', 'percent', '100'],
     ['HDEL', 'canary:rollout:checkout', 'percent:NZ']);
expect('NZ', 10000, 'percent');
expect('FR', 10000, 'percent');

# roll back

step('roll back', [[$hi, 'NZ', 'stable segment']],
     ['HSET', 'canary:rollout:checkout', 'percent', '0', 'percent:NZ', '0']);
expect('FR', 0, 'percent');
is(join(',', map { "$_->[0] $_->[1]" } split_of('NZ', 'staff-17', $hi)),
   'canary canary_users,stable segment',
   'roll back: staff still canary, NZ stable by its segment');

done();
