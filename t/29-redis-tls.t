#!/usr/bin/perl

# canary_redis ... tls: certificates made by openssl at test time, a real
# redis-server with --tls-port (--tls-auth-clients optional, then yes).
#
#   - sync, push (the subscriber) and the auto controller work over TLS,
#     with the certificate verified against tls_ca= for tls_name=;
#   - tls-auth-clients yes: refused without tls_cert=/tls_key=, works with;
#   - a wrong CA, a wrong name, an expired certificate, and TLS to a
#     plaintext port are each refused with one clear line naming the peer
#     and the reason, and routing stays as it was;
#   - tls_verify=off connects whatever the certificate;
#   - bad "tls" parameters fail nginx -t with file and line (and "tls"
#     itself on an nginx built without OpenSSL).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(sleep time);
use CanaryTest;
use CanarySync;
use CanaryTLS;

need_module();

# every wait, stretched for slow runs (valgrind)
my $T = 10 * $CanaryTest::SCALE;

# an nginx built without OpenSSL: "tls" is an nginx -t error, and that
# is all there is to test
if (`'$CanaryTest::NGINX' -V 2>&1` !~ /built with OpenSSL/) {
    my ($rc, $out) = nginx_t(sync_conf(), vars => {
        REDIS => '127.0.0.1:6379 tls', PCT => 5 });
    isnt($rc, 0, 'no OpenSSL in this nginx: "tls" fails nginx -t');
    like($out, qr/"tls" needs nginx built with OpenSSL.* in \S+:\d+/,
         '... saying why, with file and line');
    done();
    exit 0;
}

my $c = make_certs();
my @keys = test_keys(300);

sub tls_redis {
    my (%o) = @_;
    my $tport = free_port();
    my $r = start_redis(notify => 'Kh$s', args => [
        '--tls-port', $tport,
        '--tls-cert-file', $o{crt} // $c->{server_crt},
        '--tls-key-file', $c->{server_key},
        '--tls-ca-cert-file', $c->{ca},
        '--tls-auth-clients', $o{auth} // 'optional',
    ]);
    return ($r, $tport);
}

sub tls_nginx {
    my ($tport, $args, %o) = @_;
    return start_nginx(sync_conf(extra => $o{extra}
                                          // 'canary_sync_interval 60s;'),
                       workers => 2,
                       vars => { REDIS => "127.0.0.1:$tport tls $args",
                                 PCT => 5 });
}

# a refused connection: one line that names the peer and the reason, the
# config's percent meanwhile, and the line once, not per try

sub refused {
    my ($ng, $tport, $reason, $name) = @_;
    my $re = qr/canary redis: 127\.0\.0\.1:$tport is unavailable \($reason/;
    ok(defined wait_until(sub { $ng->error_log =~ $re }, $T),
       "$name: refused with the reason in the log")
        or diag($ng->error_log);
    sleep 0.5;
    is(log_count($ng, $re), 1, "$name: one line, not one per try");
    ok(routes_by($ng->port, 5, \@keys), "$name: routing as it was (5%)");
    unlike($ng->error_log, qr/syncs with Redis.*\n.*answers again/,
           "$name: never synced");
}


# --tls-auth-clients optional: sync, push, auto over TLS

my ($r, $tport) = tls_redis();
$r->cli('HSET', 'canary:rollout:checkout', 'percent', '30');

my $ng = tls_nginx($tport, "tls_ca=$c->{ca} tls_name=redis.test");
ok(defined wait_until(sub { routes_by($ng->port, 30, \@keys) }, $T),
   'sync over TLS, certificate verified');
ok(defined wait_until(sub { $r->cli('PUBSUB', 'NUMPAT') eq '1' }, $T),
   'the subscriber is connected over TLS');

my $t = time_to_route($ng->port, 30, 45, \@keys, sub {
    $r->cli('HSET', 'canary:rollout:checkout', 'percent', '45') });
ok(defined $t, 'a push over TLS applies (sync interval 60 s)');
cmp_ok($t // 99, '<', 0.5 * $CanaryTest::SCALE, 'within 500 ms');
like($r->cli('CLIENT', 'LIST'), qr/cmd=psubscribe/,
     'the TLS connections are Redis clients');
unlike($ng->error_log, qr/canary redis: .*unavailable/, 'no outage logged');
$ng->stop;

# the auto controller over TLS: it takes the lease and writes the step

my $auto = <<'EOF';
canary_zone 1m;
canary_redis %%REDIS%%;
canary_node_id tls-node;

canary_rollout checkout {
    key $http_x_user_id;
    stable s;
    canary c;
    auto steps=10,50 interval=1s max_error_rate=5% min_requests=1000;
}

server {
    listen 127.0.0.1:%%PORT%%;
    location / { canary checkout; return 200 "$canary_variant\n"; }
}
EOF
$r->cli('DEL', 'canary:rollout:checkout');
$ng = start_nginx($auto, vars => {
    REDIS => "127.0.0.1:$tport tls tls_ca=$c->{ca} tls_name=redis.test" });
ok(defined wait_until(sub { $r->cli('GET', 'canary:leader') =~ /tls-node/ },
                      $T),
   'the auto controller holds the lease over TLS')
    or diag($r->cli('KEYS', '*'));
$r->cli('HSET', 'canary:rollout:checkout', 'state', 'progressing');
ok(defined wait_until(sub {
       $r->cli('HGET', 'canary:rollout:checkout', 'checked') =~ /^\d+$/ },
                      $T),
   'and judges intervals there (the "checked" field)')
    or diag($r->cli('HGETALL', 'canary:rollout:checkout'));
$ng->stop;


# verification failures, each with routing unchanged

$r->cli('HSET', 'canary:rollout:checkout', 'percent', '30');

$ng = tls_nginx($tport, "tls_ca=$c->{other_ca} tls_name=redis.test");
refused($ng, $tport, qr/TLS certificate verify error: \d+: (?x:
            self-signed\ certificate\ in\ certificate\ chain
            | unable\ to\ get\ local\ issuer)/, 'a wrong CA');
$ng->stop;

$ng = tls_nginx($tport, "tls_ca=$c->{ca} tls_name=other.test");
refused($ng, $tport,
        qr/TLS certificate does not match: not "other\.test"/,
        'a wrong name');
$ng->stop;

$ng = tls_nginx($tport, "tls_verify=off tls_name=other.test");
ok(defined wait_until(sub { routes_by($ng->port, 30, \@keys) }, $T),
   'tls_verify=off: connects whatever the certificate says');
$ng->stop;
$r->stop;

my ($re, $eport) = tls_redis(crt => $c->{expired_crt});
$re->cli('HSET', 'canary:rollout:checkout', 'percent', '30');
$ng = tls_nginx($eport, "tls_ca=$c->{ca} tls_name=redis.test");
refused($ng, $eport,
        qr/TLS certificate verify error: \d+: certificate has expired/,
        'an expired certificate');
$ng->stop;

# TLS to the plaintext port: the handshake fails

$ng = tls_nginx($re->port, "tls_ca=$c->{ca} tls_name=redis.test");
my $pp = $re->port;
refused($ng, $pp, qr/TLS handshake (?:timed out|failed: SSL_do_handshake)/,
        'TLS to a plaintext port');
$ng->stop;
$re->stop;


# --tls-auth-clients yes

my ($ra, $aport) = tls_redis(auth => 'yes');
$ra->cli('HSET', 'canary:rollout:checkout', 'percent', '30');

$ng = tls_nginx($aport, "tls_ca=$c->{ca} tls_name=redis.test");
refused($ng, $aport,
        qr/(?:send|recv)\(\) failed: SSL_(?:write|read)\(\) failed|alert/,
        'tls-auth-clients yes, no client certificate');
$ng->stop;

$ng = tls_nginx($aport, "tls_ca=$c->{ca} tls_name=redis.test "
                        . "tls_cert=$c->{client_crt} tls_key=$c->{client_key}");
ok(defined wait_until(sub { routes_by($ng->port, 30, \@keys) }, $T),
   'tls-auth-clients yes: works with tls_cert= and tls_key=');
my $tp = time_to_route($ng->port, 30, 12, \@keys, sub {
    $ra->cli('HSET', 'canary:rollout:checkout', 'percent', '12') });
ok(defined $tp, '... and so does push');
$ng->stop;


# nginx -t

for my $case (
    ["tls_ca=$c->{ca}", qr/"tls_\*" parameters need "tls"/],
    ["tls tls_cert=$c->{client_crt}", qr/"tls_cert=" and "tls_key=" go/],
    ['tls tls_ca=/nonexistent/ca.pem', qr/"\/nonexistent\/ca\.pem" failed/],
    ['tls tls_verify=maybe', qr/invalid parameter "tls_verify=maybe"/],
    ['user=canary', qr/"user=" needs "password="/],
    ['master=mymaster', qr/"master=".* need "sentinel="/],
)
{
    my ($args, $want) = @$case;
    my ($rc, $out) = nginx_t(sync_conf(), vars => {
        REDIS => "127.0.0.1:6379 $args", PCT => 5 });
    isnt($rc, 0, "nginx -t refuses \"$args\"");
    like($out, $want, '... saying why');
    like($out, qr/in \S+nginx\.conf:\d+/, '... with file and line');
}

my ($rc, $out) = nginx_t(sync_conf(), vars => {
    REDIS => "sentinel=127.0.0.1:1 tls", PCT => 5 });
like($out, qr/"sentinel=" needs "master="/, 'sentinel= needs master=');

done();
