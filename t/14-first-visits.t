#!/usr/bin/perl

# First visits.  With nginx's userid module issuing the id cookie and
# "key $uid_got $uid_set;", a cookie-less client that keeps the cookie it
# is given sees the same variant on its first request and on its next 20:
# 6,000 such clients at 50%, a share of 50% +- 2, nobody moved, and the
# rollout's own counters agree.  With "$request_id" as the last key,
# anonymous traffic is split per request: 100% sends every cookie-less
# request to the canary, 0% none, and at 50% one client gets both.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP;
use Test::More;
use CanaryTest;

need_module();

my $ng = start_nginx(<<'EOF');
canary_zone 1m;

canary_rollout home {
    key     $uid_got $uid_set;
    stable  home_stable;
    canary  home_canary;
    percent 50;
}

canary_rollout anon_all {
    key     $cookie_uid $request_id;
    stable  s;
    canary  c;
    percent 100;
}

canary_rollout anon_none {
    key     $cookie_uid $request_id;
    stable  s;
    canary  c;
    percent 0;
}

canary_rollout anon_half {
    key     $cookie_uid $request_id;
    stable  s;
    canary  c;
    percent 50;
}

server {
    listen 127.0.0.1:%%PORT%%;

    location / {
        userid         on;
        userid_name    uid;
        userid_expires 365d;
        userid_path    /;

        canary home;
        add_header X-Key "$uid_got|$uid_set" always;
        return 200 "$canary_variant $canary_reason $canary_bucket\n";
    }

    location /all {
        canary anon_all;
        return 200 "$canary_variant $canary_reason\n";
    }

    location /none {
        canary anon_none;
        return 200 "$canary_variant $canary_reason\n";
    }

    location /half {
        canary anon_half;
        return 200 "$canary_variant $canary_reason\n";
    }

    location = /canary {
        canary_status;
    }
}
EOF

my $port = $ng->port;


# one visitor: the first request without a cookie, then 20 with the
# cookie the first answer set; returns the 21 variants and the cookie

sub visit {
    my ($c) = @_;

    my ($status, $h, $body) = $c->get('/');
    return unless $status == 200;

    my ($cookie) = ($h->{'set-cookie'} // '') =~ /^(uid=[^;]+)/
        or return;
    my ($v1, $r1) = split / /, $body;

    my @rest = $c->pipeline(map { ['/', Cookie => $cookie] } 1 .. 20);
    my @v = ($v1, map { (split / /, $_->[2])[0] } @rest);

    return (\@v, $cookie, $r1, \@rest);
}


# 2,000 clients as the issue asks would leave 50 +- 2 about one run in 14
# (one standard deviation is 1.1 points); 6,000 make it one in 500

my $clients = 6000;
my ($canary, $moved, $no_cookie, $not_percent, $bad, $reset) = (0) x 6;
my %seen;

my $c = http_client($port);

for my $i (1 .. $clients) {
    my ($v, $cookie, $reason, $rest) = visit($c);

    unless ($v) {
        $no_cookie++;
        next;
    }

    $seen{$cookie}++;
    $not_percent++ if $reason ne 'percent';
    $bad++ if grep { $_->[0] != 200 } @$rest;
    $reset++ if grep { $_->[1]{'set-cookie'} } @$rest;
    $moved++ if grep { $_ ne $v->[0] } @$v;
    $canary++ if $v->[0] eq 'canary';
}

$c->close;

is($no_cookie, 0, 'every first answer sets the uid cookie');
is(scalar keys %seen, $clients, "$clients distinct cookies");
is($not_percent, 0, 'the first request is bucketed (reason percent), '
                    . 'not no_key');
is($bad, 0, 'the next 20 requests of each client answer 200');
is($reset, 0, 'a client that sends its cookie is not given a new one');
is($moved, 0, 'no client changes variant between its first request '
              . 'and its next 20');

my $share = 100 * $canary / $clients;
ok($share >= 48 && $share <= 52,
   sprintf('canary share %.2f%% of %d first visits is 50 +- 2',
           $share, $clients));


my $first;

# the same key on the first request and later: $uid_set then, $uid_got
# after, and the bucket follows the documented hash of that string

{
    my ($s1, $h1, $b1) = http_get($port, '/');
    my ($cookie) = $h1->{'set-cookie'} =~ /^(uid=[^;]+)/;
    my ($got1, $set1) = split /\|/, $h1->{'x-key'}, -1;
    my ($s2, $h2, $b2) = http_get($port, '/', Cookie => $cookie);
    my ($got2, $set2) = split /\|/, $h2->{'x-key'}, -1;

    is($got1, '', 'first request: no $uid_got');
    like($set1, qr/^uid=[0-9A-F]{32}$/, 'first request: $uid_set');
    is($got2, $set1, 'next request: $uid_got is the first one\'s $uid_set');
    is($set2, '', 'next request: no $uid_set');

    my $bucket = murmur3_32("home:$set1") % 10000;
    is((split / /, $b1)[2] + 0, $bucket,
       'the first request\'s bucket is murmur3("home:<uid>") mod 10000');
    is($b2, $b1, 'the next request has the same variant and bucket');
    $first = $b1;
}


# the rollout's counters saw the same split

{
    my ($s, $h, $body) = http_get($port, '/canary?format=json');
    my $j = decode_json($body);
    my ($ro) = grep { $_->{name} eq 'home' } @{ $j->{rollouts} };
    my $total = $ro->{variants}{stable}{requests}
                + $ro->{variants}{canary}{requests};

    is($total, $clients * 21 + 2, 'every request counted under "home"');
    is($ro->{variants}{canary}{requests}, $canary * 21
       + ((split / /, $first)[0] eq 'canary' ? 2 : 0),
       'the canary counter holds the canary visitors\' 21 requests each');
}


# $request_id as the last key: per request for anonymous traffic

{
    my $n = 400;
    my $cl = http_client($port);

    my @all = $cl->pipeline(map { ['/all'] } 1 .. $n);
    is(scalar(grep { $_->[2] eq "canary percent\n" } @all), $n,
       "100%: all $n cookie-less requests go to the canary");

    my @none = $cl->pipeline(map { ['/none'] } 1 .. $n);
    is(scalar(grep { $_->[2] eq "stable percent\n" } @none), $n,
       "0%: none of $n cookie-less requests goes to the canary");

    my @half = $cl->pipeline(map { ['/half'] } 1 .. $n);
    my $k = grep { $_->[2] eq "canary percent\n" } @half;
    ok($k > $n * 0.35 && $k < $n * 0.65,
       "50%: $k of $n requests of one cookie-less client on the canary");

    my @known = $cl->pipeline(map { ['/half', Cookie => 'uid=u42'] } 1 .. 50);
    my %v = map { $_->[2] => 1 } @known;
    is(scalar keys %v, 1, 'a client with a cookie keeps one variant');

    $cl->close;
}

done();
