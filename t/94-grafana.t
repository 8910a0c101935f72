#!/usr/bin/perl

# conf-examples/grafana-dashboard.json: parses (JSON::PP); every metric it
# queries is one the module emits on /canary?format=prometheus, with only
# the labels it emits; per rollout it shows percent, request rate, error
# rate and p99 per variant; every query is valid PromQL (promtool).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use File::Temp qw(tempdir);
use JSON::PP;
use Test::More;
use CanaryTest;

need_module();

my $file = "$FindBin::Bin/../conf-examples/grafana-dashboard.json";
my $dash = eval { JSON::PP->new->decode(CanaryTest::read_file($file)) };
ok($dash, 'grafana-dashboard.json parses') or BAIL_OUT($@);

# every query in the dashboard, panels and template variables

my @exprs;
sub walk {
    my ($n) = @_;
    if (ref $n eq 'HASH') {
        for my $k (sort keys %$n) {
            if ($k eq 'expr' || $k eq 'definition') {
                push @exprs, $n->{$k};
            }
            walk($n->{$k});
        }
    } elsif (ref $n eq 'ARRAY') {
        walk($_) for @$n;
    }
}
walk($dash);
ok(@exprs >= 8, scalar(@exprs) . ' queries');

my %used = map { $_ => 1 } map { /\b(nginx_canary_\w+)/g } @exprs;

# the names the module really emits

my $ng = start_nginx(<<'EOF');
upstream s { server 127.0.0.1:%%PORT_B%%; }
upstream c { server 127.0.0.1:%%PORT_B%%; }
server { listen 127.0.0.1:%%PORT_B%%; location / { return 200 ok; }
         location /fail { return 503; } }
canary_zone 1m;
canary_rollout app { key $arg_u; stable s; canary c; percent 50; }
server {
    listen 127.0.0.1:%%PORT%%;
    location / { canary app; proxy_pass http://$canary_upstream; }
    location = /canary { canary_status; }
}
EOF

# traffic on both variants, with errors, so that every series exists
for my $u (1 .. 40) {
    http_get($ng->port, "/?u=u$u");
    http_get($ng->port, "/fail?u=u$u") if $u % 4 == 0;
}

my ($st, $h, $prom) = http_get($ng->port, '/canary?format=prometheus');
my $real = $st == 200 && $prom =~ /^# TYPE nginx_canary_/m;
ok($real, '/canary?format=prometheus answers') or diag("$st $prom");
my %emitted = map { $_ => 1 } $prom =~ /^(nginx_canary_\w+)[{ ]/mg;

for my $m (sort keys %used) {
    ok($emitted{$m}, "$m is emitted by the module");
}

# labels: only those the module puts on its series

my %labels = map { $_ => 1 } map { /(\w+)="/g }
             $prom =~ /^nginx_canary_\w+\{([^}]*)\}/mg;
my %used_labels;
for my $e (@exprs) {
    for my $list ($e =~ /\bby \(([^)]*)\)/g) {
        $used_labels{$_}++ for split /\s*,\s*/, $list;
    }
    $used_labels{$_}++ for $e =~ /[{,]\s*(\w+)\s*=~?"/g;
}
for my $l (sort keys %used_labels) {
    ok($labels{$l}, "label $l is emitted");
}
like($prom, qr/code="5xx"/, 'the 5xx class the error rate uses is emitted');

# what the issue asks for, per rollout and per variant

my ($row) = grep { ($_->{type} // '') eq 'row' && ($_->{repeat} // '') }
            @{ $dash->{panels} };
is($row && $row->{repeat}, 'rollout', 'a row repeated per rollout');
my ($var) = grep { $_->{name} eq 'rollout' }
            @{ $dash->{templating}{list} };
ok($var, 'a rollout template variable');

my $all = join "\n", @exprs;
like($all, qr/nginx_canary_percent\{rollout="\$rollout"\}/,
     'percent over time');
like($all, qr/sum by \(variant\) \(rate\(nginx_canary_requests_total/,
     'request rate per variant');
like($all, qr/rate\(nginx_canary_errors_total\{rollout="\$rollout"\}.*\/\s*sum by \(variant\) \(rate\(nginx_canary_requests_total/,
     'error rate per variant');
like($all, qr/histogram_quantile\(0\.99, sum by \(variant, le\)/,
     'p99 per variant');

# every query parses as PromQL

SKIP: {
    my ($promtool) = grep { -x } map { "$_/promtool" } split /:/, $ENV{PATH};
    skip 'promtool not installed', 1 unless $promtool;

    my $dir = tempdir('canary-grafana-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    my $rules = "groups:\n  - name: dashboard\n    rules:\n";
    my $n = 0;
    for my $e (@exprs) {
        (my $q = $e) =~ s/\$__rate_interval|\$__range/5m/g;
        $q =~ s/\$rollout/checkout/g;
        $q =~ s/'/''/g;
        $n++;
        # label_values() is Grafana's, not PromQL: check its metric
        $q = $1 if $q =~ /^label_values\((\w+)/;
        $rules .= "      - record: dashboard:q$n\n        expr: '$q'\n";
    }
    CanaryTest::write_file("$dir/rules.yml", $rules);
    my $out = `'$promtool' check rules '$dir/rules.yml' 2>&1`;
    is($? >> 8, 0, 'promtool check rules: every query is valid PromQL')
        or diag($out);
}

done();
