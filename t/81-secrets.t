#!/usr/bin/perl

# Secrets: the Redis password never appears in the status output (text,
# JSON, Prometheus, HTML, explain) nor in error.log at debug level, when
# AUTH succeeds, when it is refused, when Redis goes away and comes
# back; nor the ACL user's password, the sentinel password, nor the
# contents of TLS key files, over TLS with a client certificate, with
# AUTH accepted and refused.  Outside strings in the status output are escaped: a segment value with quotes, angle brackets and control bytes
# does not break the JSON or the HTML.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(sleep);
use CanaryTest;
use CanarySync;

need_module();

my $secret = 'Sup3r-s3cret-PW';

my $body = <<'EOF';
canary_zone 1m;
canary_redis 127.0.0.1:%%RPORT%% password=%%PW%% timeout=300ms;
canary_sync_interval 200ms;

canary_rollout checkout {
    key $http_x_user_id;
    stable s;
    canary c;
    percent 5;
    segment $http_x_country;
}

server {
    listen 127.0.0.1:%%PORT%%;
    location / { canary checkout; return 200 "$canary_variant\n"; }
    location = /status { canary_status; }
}
EOF

sub all_status {
    my ($port) = @_;
    my $out = '';
    for my $q ('', '?format=json', '?format=prometheus', '?format=html',
               '?explain=checkout&key=u1', '?format=nonsense')
    {
        my (undef, undef, $b) = http_get($port, "/status$q");
        $out .= $b // '';
    }
    return $out;
}

my $r = start_redis(password => $secret, notify => 'Kh$s');
my $ng = start_nginx($body, workers => 2, log_level => 'debug',
                     vars => { RPORT => $r->port, PW => $secret });
my $port = $ng->port;

my $nasty = qq{"><script>alert(1)</script>\\\x01\x7f\xe2\x80\xa8};
$r->cli('HSET', 'canary:rollout:checkout', 'percent', '40',
        "percent:$nasty", '60');
$r->cli('PUBLISH', 'canary:changed', 'checkout');
ok(defined wait_until(sub {
       (http_get($port, '/status?format=json'))[2] =~ /"percent":40\b/ }, 10),
   'synced with AUTH');

# the JSON is still JSON with the nasty segment in it
my (undef, undef, $json) = http_get($port, '/status?format=json');
SKIP: {
    skip 'no JSON::PP', 2 unless eval { require JSON::PP; 1 };
    my $doc = eval { JSON::PP->new->decode($json) };
    ok($doc, 'the JSON parses with a hostile segment value') or diag($@);
    my ($ro) = grep { $_->{name} eq 'checkout' } @{ $doc->{rollouts} || [] };
    my @segs = map { ref $_ eq 'HASH' ? ($_->{value} // $_->{name} // '') : $_ }
               @{ ref $ro->{segments} eq 'ARRAY' ? $ro->{segments} : [] };
    ok((grep { /script/ } @segs) || $json =~ /script/,
       'the segment value is there, escaped');
}
my (undef, undef, $html) = http_get($port, '/status?format=html');
unlike($html, qr/<script>alert/, 'no raw markup from Redis in the HTML');

# a refused value naming the secret as its value is logged (as a value):
# that is the operator's own data, not the password leaking
$r->cli('HSET', 'canary:rollout:checkout', 'percent:XX', 'not-a-number');
$r->cli('PUBLISH', 'canary:changed', 'checkout');
sleep 0.5;

# Redis away and back (empty), AUTH again
$r->stop;
sleep 1;
$r->start;
ok(defined wait_until(sub { $ng->error_log =~ /again after/ }, 15),
   'reconnected with AUTH after Redis came back');

my $status = all_status($port);
unlike($status, qr/\Q$secret\E/, 'the password is in no status output');
unlike($ng->error_log, qr/\Q$secret\E/,
       'the password is not in error.log at debug level');

$ng->stop;

# a wrong password: refused, logged, and still not in any log line
my $ng2 = start_nginx($body, log_level => 'debug',
                      vars => { RPORT => $r->port, PW => "$secret-wrong" });
ok(defined wait_until(sub { $ng2->error_log =~ /refused/ }, 10),
   'a wrong password is refused');
unlike(all_status($ng2->port), qr/\Q$secret\E/,
       'the wrong password is in no status output');
unlike($ng2->error_log, qr/\Q$secret\E/,
       'the wrong password is not in error.log at debug level');

$ng2->stop;


# TLS with a client key and an ACL user, at debug level

SKIP: {
    eval { require CanaryTLS; 1 } or skip 'no CanaryTLS', 9;
    skip 'no openssl or no TLS in redis-server', 9
        if system('openssl version >/dev/null 2>&1')
           || !CanaryTLS::redis_has_tls();

    my $c = CanaryTLS::make_certs();
    my $tport = free_port();
    my $acl_pw = 'Acl-user-Pa55';
    my $rt = start_redis(notify => 'Kh$s', args => [
        '--tls-port', $tport, '--tls-cert-file', $c->{server_crt},
        '--tls-key-file', $c->{server_key}, '--tls-ca-cert-file', $c->{ca},
        '--tls-auth-clients', 'yes']);
    $rt->cli('ACL', 'SETUSER', 'canary', 'on', ">$acl_pw", '~canary:*',
             '&*', '+@all');

    # the key files' base64 lines, any of which would be a leak
    my @key_lines = grep { length > 40 && !/-----/ }
        map { split /\n/, CanaryTest::read_file($_) }
        $c->{client_key}, $c->{server_key};
    ok(@key_lines > 10, 'key file lines to look for');

    my $tls_body = $body;
    $tls_body =~ s{canary_redis [^;]*;}{canary_redis 127.0.0.1:%%TPORT%% tls
        tls_ca=%%CA%% tls_name=redis.test tls_cert=%%CRT%% tls_key=%%KEY%%
        user=canary password=%%PW%% timeout=300ms;};
    my %v = (TPORT => $tport, CA => $c->{ca}, CRT => $c->{client_crt},
             KEY => $c->{client_key}, PW => $acl_pw);

    my $ng3 = start_nginx($tls_body, log_level => 'debug', vars => \%v);
    $rt->cli('HSET', 'canary:rollout:checkout', 'percent', '44');
    ok(defined wait_until(sub {
           (http_get($ng3->port, '/status?format=json'))[2]
               =~ /"percent":44\b/ }, 10),
       'synced over TLS with a client certificate as an ACL user');
    $rt->restart;
    $rt->cli('ACL', 'SETUSER', 'canary', 'on', ">$acl_pw", '~canary:*',
             '&*', '+@all');
    ok(defined wait_until(sub { $ng3->error_log =~ /again after/ }, 15),
       'reconnected over TLS after Redis came back');
    my $out = all_status($ng3->port) . $ng3->error_log;
    unlike($out, qr/\Q$acl_pw\E/,
           'the ACL password is in no status output nor log line');
    is((grep { index($out, $_) >= 0 } @key_lines), 0,
       'no line of the key files either');
    $ng3->stop;

    $v{PW} = "$acl_pw-wrong";
    $ng3 = start_nginx($tls_body, log_level => 'debug', vars => \%v);
    ok(defined wait_until(sub {
           $ng3->error_log =~ /AUTH on .* refused: WRONGPASS/ }, 10),
       'a wrong ACL password over TLS is refused');
    $out = all_status($ng3->port) . $ng3->error_log;
    unlike($out, qr/\Q$acl_pw\E/, 'and is in no status output nor log line');
    is((grep { index($out, $_) >= 0 } @key_lines), 0,
       'no line of the key files either');
    $ng3->stop;

    # the sentinel password: a server that asks for one (a plain Redis:
    # AUTH passes, then it knows no SENTINEL command)
    my $sp = 'Sentinel-Pa55';
    my $rs = start_redis(password => $sp);
    $v{SPW} = $sp;
    $v{SPORT} = $rs->port;
    my $sbody = $body;
    $sbody =~ s{canary_redis [^;]*;}{canary_redis sentinel=127.0.0.1:%%SPORT%%
        master=mymaster sentinel_password=%%SPW%% password=%%PW%%;};
    my $ng4 = start_nginx($sbody, log_level => 'debug', vars => \%v);
    ok(defined wait_until(sub {
           $ng4->error_log =~ /refused SENTINEL get-master-addr-by-name/ },
                          10), 'AUTH with the sentinel password passed')
        or diag($ng4->error_log);
    $out = all_status($ng4->port) . $ng4->error_log;
    unlike($out, qr/\Q$sp\E/,
           'the sentinel password is in no status output nor log line');
}

done();
