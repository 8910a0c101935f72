#!/usr/bin/perl

# The "auto" sub-directive: `nginx -t` refuses bad parameters with a line
# naming the parameter, the rollout, the file and the line, and accepts
# the documented forms.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use CanaryTest;

need_module();

sub conf {
    my ($auto, $redis) = @_;
    $redis //= 'canary_redis 127.0.0.1:1;';
    return <<"EOF";
upstream s { server 127.0.0.1:1; }
upstream c { server 127.0.0.1:2; }
canary_zone 1m;
$redis
canary_rollout checkout {
    key \$http_x_user_id;
    stable s;
    canary c;
    $auto #!
}
server {
    listen 127.0.0.1:%%PORT%%;
    location / { canary checkout; return 200; }
}
EOF
}

my @bad = (
    ['steps not increasing', 'steps=1,5,5,100 interval=1m',
     qr/"steps=1,5,5,100".*steps must increase: "5" after "5"/],
    ['steps decreasing', 'steps=10,5,100 interval=1m',
     qr/steps must increase: "5" after "10"/],
    ['step above 100', 'steps=1,50,150 interval=1m',
     qr/"steps=1,50,150".*invalid step "150"/],
    ['step 0', 'steps=0,50,100 interval=1m', qr/invalid step "0"/],
    ['one step', 'steps=100 interval=1m', qr/at least two steps/],
    ['interval 0', 'steps=1,100 interval=0',
     qr/"interval=0".*interval "0" is too short/],
    ['interval 0s', 'steps=1,100 interval=0s', qr/"interval=0s"/],
    ['interval garbage', 'steps=1,100 interval=soon',
     qr/invalid interval "soon"/],
    ['no interval', 'steps=1,100', qr/"interval" is required/],
    ['no steps', 'interval=1m', qr/"steps" or "step" is required/],
    ['unknown parameter', 'steps=1,100 interval=1m colour=red',
     qr/"colour=red".*unknown parameter "colour"/],
    ['not name=value', 'steps=1,100 interval=1m fast',
     qr/"fast".*name=value/],
    ['duplicate parameter', 'steps=1,100 interval=1m interval=2m',
     qr/duplicate parameter "interval"/],
    ['error rate without %', 'steps=1,100 interval=1m max_error_rate=0.1',
     qr/invalid max_error_rate "0.1"/],
    ['p99 above 60s', 'steps=1,100 interval=1m max_p99=2m',
     qr/invalid max_p99 "2m"/],
    ['failures 0', 'steps=1,100 interval=1m failures=0',
     qr/invalid failures "0"/],
    ['bad vs_stable', 'steps=1,100 interval=1m max_error_rate_vs_stable=2',
     qr/invalid max_error_rate_vs_stable "2"/],
    ['steps and step', 'steps=1,100 step=5 interval=1m',
     qr/"steps" excludes/],
    ['too many steps', 'step=0.5 interval=1m', qr/more than 100 steps/],
    ['no parameters', '', qr/invalid number of arguments in "auto"/],
    ['approve not a step', 'steps=1,50,100 interval=1m approve=20',
     qr/approve "20" is not one of the steps/],
    ['approve 0', 'steps=1,100 interval=1m approve=0',
     qr/"approve=0".*invalid approve "0"/],
    ['approve list', 'steps=1,100 interval=1m approve=1,,100',
     qr/invalid approve ""/],
    ['check not http', 'steps=1,100 interval=1m check=ftp://x/',
     qr/the URL must begin with http:\/\/ or https:\/\//],
    ['check_timeout 0', 'steps=1,100 interval=1m check_timeout=0',
     qr/"check_timeout=0".*check_timeout must be above 0 and at most 60s/],
    ['check_timeout 61s', 'steps=1,100 interval=1m check_timeout=61s',
     qr/check_timeout must be above 0 and at most 60s/],
    ['nine checks', 'steps=1,100 interval=1m '
         . join(' ', map { "check=http://127.0.0.1/$_" } 1 .. 9),
     qr/more than 8 "check=" in canary_rollout "checkout"/],
    ['64 parameters', 'steps=1,100 interval=1m '
         . join(' ', map { "check=http://127.0.0.1/$_" } 1 .. 62),
     qr/more than 8 "check="/],
    ['65 parameters', 'steps=1,100 interval=1m '
         . join(' ', map { "check=http://127.0.0.1/$_" } 1 .. 63),
     qr/invalid number of arguments in "auto"/],
);

for my $case (@bad) {
    my ($name, $args, $msg) = @$case;
    my ($rc, $out, $conf) = nginx_t(conf("auto $args;"));

    my @cl = split /\n/, $conf;
    my ($at) = grep { $cl[$_ - 1] =~ /#!/ } 1 .. @cl;
    my ($text, $file, $line) = conf_error($out);
    undef $line unless ($file // '') =~ /nginx\.conf$/;

    isnt($rc, 0, "$name: nginx -t fails");
    is($line, $at, "$name: error at nginx.conf:$at") or diag $out;
    like($text // '', $msg, "$name: message names the culprit")
        or diag $out;
    like($text // '', qr/canary_rollout "checkout"/,
         "$name: message names the rollout") or diag $out;
}

my @good = (
    'steps=1,5,10,25,50,100 interval=30m max_error_rate=0.1% '
        . 'max_p99=2000ms min_requests=100',
    'start=1 step=5 interval=30m',
    'start=1 step=5 max=50 interval=1h30m failures=3',
    'step=10 interval=1s min_requests=0',
    'steps=0.5,12.25,100 interval=10 max_error_rate=1% '
        . 'max_error_rate_vs_stable=+0.5% max_p99=250ms '
        . 'max_p99_vs_stable=1.5x',
    'steps=1,50,100 interval=1m approve=50,100',
    'step=25 interval=1m approve=all',
    'steps=1,100 interval=1m check=https://checks.example/smoke?t=x '
        . 'check=http://127.0.0.1:81/slo check_timeout=2s check_ca=ca.crt',
    'steps=1,100 interval=1m '
        . join(' ', map { "check=http://127.0.0.1/$_" } 1 .. 8),
);

for my $args (@good) {
    my ($rc, $out) = nginx_t(conf("auto $args;"));
    is($rc, 0, "auto $args: nginx -t passes") or diag $out;
}

{
    my ($rc, $out) = nginx_t(conf('auto step=10 interval=1m;', ''));
    isnt($rc, 0, '"auto" without canary_redis fails');
    like($out, qr/"auto" in canary_rollout "checkout" needs "canary_redis" in \S+nginx\.conf:\d+/,
         '"auto" without canary_redis is named, with its line');
}

{
    my ($rc, $out) = nginx_t(conf("auto step=10 interval=1m;\n"
                                  . "    auto step=5 interval=1m;"));
    isnt($rc, 0, 'a second "auto" fails');
    like($out, qr/"auto" is duplicate/, 'a second "auto" is named');
}

done();
