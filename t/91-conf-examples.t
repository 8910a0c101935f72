#!/usr/bin/perl

# conf-examples/: every *.conf passes `nginx -t` with the built module.
# Each snippet is tested the way the folder says to use it: inside the
# wrapper conf-examples/nginx.conf, with the module path, log and pid paths
# pointed into a temporary prefix and every listen on a free loopback
# port. The wrapper itself is checked by being the main file each time.
# A tls_ca= file is replaced by a CA made with openssl in the prefix.
# The minimal, tester-override and feature-flags examples also run for
# real against local backends (country-first.conf: t/13-country-first.t).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use CanaryTest;

need_module();

my $dir = "$FindBin::Bin/../conf-examples";
my $wrapper = CanaryTest::read_file("$dir/nginx.conf");
my @examples = grep { !m{/nginx\.conf$} } sort glob "$dir/*.conf";

ok(@examples >= 5, scalar(@examples) . ' examples in conf-examples/');

# the wrapper as a test prefix's main file; each substitution must apply,
# so that a change to the wrapper cannot make this test vacuous

sub main_conf {
    my ($prefix) = @_;
    my $c = $wrapper;
    my $load = load_module_line();
    my %n;
    $n{load} = $c =~ s{^load_module\s+modules/ngx_http_canary_module\.so;}
                      {$load}m;
    $n{error} = $c =~ s{^error_log\s+\S+}{error_log $prefix/logs/error.log}m;
    $n{pid} = $c =~ s{^pid\s+\S+;}{pid $prefix/logs/nginx.pid;}m;
    $n{access} = $c =~ s{^(\s+)access_log\s+\S+;}
                        {$1access_log $prefix/logs/access.log;}m;
    my $temp = join '', map { "    ${_}_temp_path $prefix/temp/$_;\n" }
                   qw(client_body proxy fastcgi uwsgi scgi);
    $n{temp} = $c =~ s/^http \{\n/http {\n$temp/m;
    $n{include} = $c =~ /^\s+include canary-example\.conf;/m;
    my @missing = grep { !$n{$_} } sort keys %n;
    die "conf-examples/nginx.conf changed shape, not found: @missing\n"
        if @missing;
    return $c;
}

sub snippet {
    my ($file, $ports) = @_;
    my $text = CanaryTest::read_file($file);
    my $n = 0;
    $text =~ s{^(\s*listen\s+)(?:[\w.\[\]:]+:)?(\d+)\b}{
        $n++;
        $ports->{$2} //= free_port();
        "${1}127.0.0.1:$ports->{$2}";
    }gme;
    return ($text, $n);
}

sub prefix_for {
    my ($name, $body) = @_;
    my $prefix = CanaryTest::make_prefix();
    $body =~ s{canary_state_file\s+\S+;}{canary_state_file $prefix/canary.state;}g;
    # a CA file made here, so that the system's CA bundle is not needed
    if ($body =~ /tls_ca=/ && !system('openssl version >/dev/null 2>&1')) {
        system("openssl req -x509 -newkey rsa:2048 -nodes -days 1 "
               . "-subj /CN=example-ca -keyout '$prefix/ca.key' "
               . "-out '$prefix/ca.crt' >/dev/null 2>&1") == 0
            or die "openssl failed";
        $body =~ s{tls_ca=\S+}{tls_ca=$prefix/ca.crt}g;
    }
    CanaryTest::write_file("$prefix/nginx.conf", main_conf($prefix));
    CanaryTest::write_file("$prefix/canary-example.conf", $body);
    return $prefix;
}

for my $file (@examples) {
    (my $name = $file) =~ s{.*/}{};
    my ($body, $listens) = snippet($file, {});
    ok($listens > 0, "$name: has a server to try");

    my $prefix = prefix_for($name, $body);
    my $out = `'$CanaryTest::NGINX' -t -p '$prefix/' -c nginx.conf 2>&1`;
    is($? >> 8, 0, "$name: nginx -t") or diag($out);
    unlike($out, qr/\[(?:emerg|alert|crit|warn)\]/, "$name: no warnings")
        or diag($out);
}

# examples running for real: 10.0.0.1:8080 -> a local "stable" backend,
# 10.0.0.2:8080 -> a local "canary" one

sub run_example {
    my ($name, @subst) = @_;
    my ($body) = snippet("$dir/$name", {});
    $body =~ s{server 10\.0\.0\.1:8080;}{server 127.0.0.1:%%PORT_S%%;};
    $body =~ s{server 10\.0\.0\.2:8080;}{server 127.0.0.1:%%PORT_C%%;};
    $body =~ s{(listen\s+127\.0\.0\.1:)\d+}{$1%%PORT%%};
    while (my ($from, $to) = splice @subst, 0, 2) {
        $body =~ s/\Q$from\E/$to/ or die "$name: no '$from'";
    }
    $body .= <<'EOF';
server { listen 127.0.0.1:%%PORT_S%%;
         add_header X-Features-Seen $http_x_features;
         return 200 "stable $http_x_canary\n"; }
server { listen 127.0.0.1:%%PORT_C%%;
         add_header X-Features-Seen $http_x_features;
         return 200 "canary $http_x_canary\n"; }
EOF
    return start_nginx($body);
}

my $ng = run_example('minimal-cookie.conf');
my %got;
for my $u (1 .. 200) {
    my ($st, undef, $b) = http_get($ng->port, '/', Cookie => "uid=u$u");
    my $want = murmur3_32("app:u$u") % 10000 < 1000 ? 'canary' : 'stable';
    $got{$b eq "$want $want\n" ? 'ok' : 'bad'}++;
}
is($got{bad} // 0, 0, 'minimal-cookie.conf routes by the cookie, 10%');

# a user that is stable at 5%
my ($user) = grep { murmur3_32("app:$_") % 10000 >= 500 } map { "t$_" } 1 .. 50;

# from outside the office the override header is ignored
$ng = run_example('tester-override.conf');
my ($st, $h, $b) = http_get($ng->port, '/', Cookie => "uid=$user",
                            'X-Canary' => 'always');
is($b, "stable stable\n", 'tester-override.conf: outsiders cannot opt in');
is($h->{'x-canary-reason'}, 'percent', '... reason percent');

# from the office (here: loopback) header and cookie both work
$ng = run_example('tester-override.conf',
                  '192.168.0.0/24 1;' => '127.0.0.0/8 1;');
($st, $h, $b) = http_get($ng->port, '/', Cookie => "uid=$user",
                         'X-Canary' => 'always');
is($b, "canary canary\n", 'tester-override.conf: testers opt in by header');
is($h->{'x-canary-reason'}, 'override', '... reason override');
($st, $h, $b) = http_get($ng->port, '/', Cookie => "uid=$user; canary=canary");
is($b, "canary canary\n", '... or by cookie');
($st, $h, $b) = http_get($ng->port, '/', Cookie => "uid=$user; canary=canary",
                         'X-Canary' => 'never');
is($b, "stable stable\n", '... the header wins over the cookie');
is($h->{'x-canary-reason'}, 'override', '... reason override');

# feature flags: one header with every flag, each by its own salt;
# one_click only for users who have new_search

my $flags_ok = 0;
my %flag_seen;
$ng = run_example('feature-flags.conf');
for my $u (map { "f$_" } 1 .. 300) {
    my %want;
    $want{new_search} = murmur3_32("new_search:$u") % 10000 < 2500;
    $want{dark_mode} = murmur3_32("dark_mode:$u") % 10000 < 5000;
    $want{one_click} = $want{new_search}
                       && murmur3_32("one_click:$u") % 10000 < 100;
    my $line = join ',', map { "$_=" . ($want{$_} ? 'canary' : 'stable') }
                         qw(new_search dark_mode one_click);
    my (undef, $h) = http_get($ng->port, '/', Cookie => "uid=$u");
    $flags_ok++ if ($h->{'x-features-seen'} // '') eq $line;
    $flag_seen{$_}++ for grep { $want{$_} } keys %want;
}
is($flags_ok, 300, 'feature-flags.conf: X-Features carries every flag');
ok($flag_seen{new_search} && $flag_seen{dark_mode},
   '... with users on both sides');

# country-first.conf runs step by step in t/13-country-first.t

done();
