#!/usr/bin/perl

# A module built for another nginx is refused by nginx itself, with its
# own words, the file and the line, and nginx exits normally (no crash):
#
#  - the same nginx tree configured without --with-compat (and without the
#    run's other options; `make test` builds it and passes it as
#    CANARY_FOREIGN_MODULE): "module ... is not binary compatible" from
#    the nginx under test, also when the module is built into it (the
#    .so's symbols are hidden, so it checks its own module structure, not
#    the binary's copy);
#  - the module built for this run loaded into Debian's nginx, when this
#    run is another nginx version (`make test NGINX_VERSION=...`):
#    "module ... version N instead of M".
#
# The module built for the run passes the same `nginx -t`, so the config
# itself is good; and the module built from the same tree with nothing but
# --with-compat (CANARY_COMPAT_MODULE, the README's recipe for an
# installed nginx such as nginx.org's packages) loads into the nginx under
# test, whose other options differ, and routes.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Cwd qw(abs_path);
use Test::More;
use CanaryTest;

need_module();

my $foreign = $ENV{CANARY_FOREIGN_MODULE};
plan skip_all => 'CANARY_FOREIGN_MODULE is not set (`make test` sets it;'
                 . ' `make foreign-module` builds it)'
    unless $foreign;
plan skip_all => "CANARY_FOREIGN_MODULE=$foreign does not exist"
    unless -f $foreign;

my $conf = <<'EOF';
events { }
http {
    canary_zone 1m;
}
EOF

# `nginx -t` of $conf with $load in the main context, by $nginx:
# (exit status, signal, output)

sub nginx_test {
    my ($nginx, $load) = @_;
    my $p = CanaryTest::make_prefix();
    CanaryTest::write_file("$p/nginx.conf", "$load\n"
                           . "error_log $p/logs/error.log;\n"
                           . "pid $p/logs/nginx.pid;\n" . $conf);
    my $out = `'$nginx' -t -p '$p/' -c nginx.conf 2>&1`;
    return ($? >> 8, $? & 127, $out);
}

# the run's own module: accepted

my ($rc, $sig, $out) = nginx_test($CanaryTest::NGINX, load_module_line());
is($rc, 0, 'the module built for this nginx: nginx -t passes') or diag $out;

# the module from the same tree without --with-compat

($rc, $sig, $out) = nginx_test($CanaryTest::NGINX, "load_module $foreign;");
is($sig, 0, 'a module built without --with-compat: nginx exits, no signal');
is($rc, 1, '... with status 1') or diag $out;
my ($msg, $file, $line) = conf_error($out);
is($msg, "module \"$foreign\" is not binary compatible",
   '... nginx\'s own "is not binary compatible"'
   . (module_static() ? ' (the module built in too)' : '')) or diag $out;
like($file // '', qr{/nginx\.conf$}, '... naming the file');
is($line, 1, '... and the line of load_module');

# the module built with --with-compat alone: loaded, and routing

SKIP: {
    my $compat = $ENV{CANARY_COMPAT_MODULE} // '';
    skip 'the module is built into this run\'s nginx', 4 if module_static();
    skip 'CANARY_COMPAT_MODULE is not set (`make test` sets it)', 4
        unless -f $compat;

    ($rc, $sig, $out) = nginx_test($CanaryTest::NGINX,
                                   "load_module $compat;");
    is($rc, 0, 'a module built with --with-compat alone: nginx -t passes')
        or diag $out;

    local $ENV{CANARY_MODULE} = $compat;
    my $ng = start_nginx(<<'EOF');
upstream s { server 127.0.0.1:1; }
upstream c { server 127.0.0.1:2; }
canary_zone 1m;
canary_rollout app { key $arg_u; stable s; canary c; percent 50; }
server {
    listen 127.0.0.1:%%PORT%%;
    location / { canary app; return 200 "$canary_variant $canary_bucket"; }
}
EOF
    like($ng->conf_text, qr/^load_module \Q$compat\E;$/m,
         '... nginx runs with that module');
    for my $u (qw(u1 u2)) {
        my $b = murmur3_32("app:$u") % 10000;
        my (undef, undef, $body) = http_get($ng->port, "/?u=$u");
        is($body, ($b < 5000 ? 'canary' : 'stable') . " $b",
           "... and routes $u by the documented hash");
    }
    $ng->stop;
}

# the run's module in Debian's nginx, when this run is another version

SKIP: {
    my $debian = '/usr/sbin/nginx';
    my $real = abs_path($ENV{CANARY_REAL_NGINX} || $CanaryTest::NGINX) // '';
    skip 'the module is built into this run\'s nginx', 4 if module_static();
    skip "no $debian", 4 unless -x $debian;
    skip 'this run tests Debian\'s nginx itself', 4
        if $real eq (abs_path($debian) // '');

    my ($dv) = `$debian -v 2>&1` =~ m{nginx/(\d+)\.(\d+)\.(\d+)}
        ? sprintf('%d%03d%03d', $1, $2, $3) : ();
    my ($mv) = nginx_version() =~ /^(\d+)\.(\d+)\.(\d+)$/
        ? sprintf('%d%03d%03d', $1, $2, $3) : ();
    skip "this run's nginx is the version of $debian", 4
        if ($dv // '') eq ($mv // '');

    my $so = module_path();
    ($rc, $sig, $out) = nginx_test($debian, "load_module $so;");
    is($sig, 0, "the module for nginx " . nginx_version()
                . " in $debian: nginx exits, no signal");
    is($rc, 1, '... with status 1') or diag $out;
    ($msg, $file, $line) = conf_error($out);
    is($msg, "module \"$so\" version $mv instead of $dv",
       '... nginx\'s own "version N instead of M"') or diag $out;
    is($line, 1, '... at the line of load_module');
}

done();
