#!/usr/bin/perl

# The request context: a main request's decisions and the rollout it is
# counted under live in two slots of r->variables, the decisions of the
# first three rollouts the request reads in the slots themselves, and
# with a fourth every decision in memory the slots point to.  With 2 and
# with 6 rollouts configured, across try_files to a named location,
# error_page and a mirror subrequest: the decision is the same before
# and after the redirect (the bucket is murmur3 of "<rollout>:<key>"),
# the request is counted once under the first "canary" location it
# entered, and a subrequest in another rollout's location decides on its
# own and counts nothing.  A request that reads all six rollouts, three
# before the fourth and the rest after, before and after a redirect, gets
# each rollout's own decision.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP qw(decode_json);
use Test::More;
use CanaryTest;

need_module();

sub conf {
    my ($extra) = @_;

    my $rollouts = join '', map { <<"EOF" } (qw(r1 r2), @$extra);
canary_rollout $_ {
    key     \$http_x_user;
    stable  app_stable;
    canary  app_canary;
    percent 50;
}
EOF

    # every rollout read, r1 last before the redirect, again after it
    my @all = map { "\$canary_variant_$_" } (qw(r2), @$extra, qw(r1));
    my $every = @$extra ? <<"EOF" : '';
    location /every/ {
        canary r1;
        set \$before "@all";
        try_files /nonexistent \@every;
    }

    location \@every {
        return 200 "\$before|@all\\n";
    }
EOF

    return (<<'EOF' . $rollouts . <<'EOF') =~ s/#EVERY#\n/$every/r;
upstream app_stable { server 127.0.0.1:%%PORT_B%%; }
upstream app_canary { server 127.0.0.1:%%PORT_B%%; }

server {
    listen 127.0.0.1:%%PORT_B%%;
    location / { return 200 "backend $uri\n"; }
    location /nf { return 404; }
}

canary_zone 1m;

EOF

server {
    listen 127.0.0.1:%%PORT%% reuseport;

    # entered under r1, answered by a location without "canary": the
    # variables give r1's decision, made after the redirect
    location /tf/ {
        canary r1;
        try_files /nonexistent @plain;
    }

    location @plain {
        return 200 "$canary_rollout $canary_variant $canary_bucket\n";
    }

    # r1's decision made before the redirect (proxy_pass asked for it),
    # then a location of r2: counted under r1, and $canary_variant_r1
    # there is the decision made before
    location /ep/ {
        canary r1;
        proxy_pass http://$canary_upstream/nf;
        proxy_intercept_errors on;
        error_page 404 = @r2;
    }

    location @r2 {
        canary r2;
        return 200 "$canary_variant_r1 $canary_bucket\n";
    }

    # a mirror subrequest into r2's location: its own context
    location /m/ {
        canary r1;
        mirror /mirror;
        return 200 "$canary_variant $canary_bucket\n";
    }

    location = /mirror {
        internal;
        canary r2;
        proxy_pass http://$canary_upstream/mirrored;
    }

#EVERY#
    location = /canary { canary_status; }
}
EOF
}

sub counts {
    my ($port, $name) = @_;
    my ($st, $h, $body) = http_get($port, '/canary?format=json');
    my ($r) = grep { $_->{name} eq $name }
              @{ decode_json($body)->{rollouts} };
    return ($r->{variants}{stable}{requests},
            $r->{variants}{canary}{requests});
}

sub wait_counted {
    my ($port, $want) = @_;
    my $end = time + 10;
    while (time < $end) {
        my ($s, $c) = counts($port, 'r1');
        return if $s + $c >= $want;
        select undef, undef, undef, 0.05;
    }
}

sub bucket {
    my ($rollout, $key) = @_;
    return murmur3_32("$rollout:$key") % 10000;
}

for my $case (['2 rollouts', []],
              ['6 rollouts', [qw(r3 r4 r5 r6)]])
{
    my ($what, $extra) = @$case;
    my $ng = start_nginx(conf($extra));
    my $port = $ng->port;

    my $n = 40;
    my %want = (stable => 0, canary => 0);
    my (@tf, @ep, @m, @every);

    for my $i (1 .. $n) {
        my $key = "user$i";
        my $b = bucket('r1', $key);
        my $v = $b < 5000 ? 'canary' : 'stable';
        $want{$v} += 3;

        my (undef, undef, $body) = http_get($port, "/tf/$i", 'X-User' => $key);
        push @tf, "$i: $body" unless $body eq "r1 $v $b\n";

        (undef, undef, $body) = http_get($port, "/ep/$i", 'X-User' => $key);
        push @ep, "$i: $body" unless $body eq "$v " . bucket('r2', $key)
                                              . "\n";

        (undef, undef, $body) = http_get($port, "/m/$i", 'X-User' => $key);
        push @m, "$i: $body" unless $body eq "$v $b\n";

        next unless @$extra;

        $want{$v}++;
        my $all = join ' ', map { bucket($_, $key) < 5000 ? 'canary'
                                                          : 'stable' }
                                (qw(r2), @$extra, qw(r1));
        (undef, undef, $body) = http_get($port, "/every/$i",
                                         'X-User' => $key);
        push @every, "$i: $body" unless $body eq "$all|$all\n";
    }

    ok(!@tf, "$what: after try_files, the rollout that routed the request "
             . 'and its decision') or diag "@tf";
    ok(!@ep, "$what: after error_page, the decision made before it")
        or diag "@ep";
    ok(!@m, "$what: a mirror subrequest leaves the main request's decision")
        or diag "@m";

    if (@$extra) {
        ok(!@every, "$what: six rollouts read, before and after a "
                    . 'redirect, each its own decision') or diag "@every";
    }

    wait_counted($port, (@$extra ? 4 : 3) * $n);

    my ($s, $c) = counts($port, 'r1');
    is_deeply({ stable => $s, canary => $c }, \%want,
              "$what: every request counted once under r1, by its variant");

    ($s, $c) = counts($port, 'r2');
    is($s + $c, 0, "$what: nothing counted under r2 (error_page target, "
                   . 'mirror subrequest)');

    $ng->stop;
}

done();
