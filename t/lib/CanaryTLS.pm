package CanaryTLS;

# Test certificates made with openssl at test time, in a temporary
# directory: a CA, a server certificate for "redis.test" and 127.0.0.1
# signed by it, an expired one, a client certificate, and a second CA
# that signed none of them.  make_certs() returns a hash of file paths:
#
#   ca, ca_key, other_ca, server_crt, server_key, expired_crt, client_crt,
#   client_key, dir
#
# and skips the whole script when openssl or a TLS-enabled redis-server
# is missing.

use strict;
use warnings;

use Carp qw(croak);
use Exporter qw(import);
use Test::More;
use Time::HiRes qw(sleep time);

use CanaryTest;

our @EXPORT = qw(make_certs redis_has_tls);


sub run {
    my ($dir, @cmd) = @_;
    my $out = `cd '$dir' && @cmd 2>&1`;
    croak "@cmd: $out" if $?;
    return $out;
}


sub redis_has_tls {
    # a TLS-enabled server fails on the missing files, others on the option
    my $cmd = "'$CanaryTest::REDIS_SERVER' --port 0 --tls-port 1 --save ''"
            . ' --tls-cert-file /nonexistent --tls-key-file /nonexistent';
    my $out = `$cmd 2>&1`;
    return $out =~ /TLS/ && $out !~ /Bad directive/i;
}


sub make_certs {
    plan skip_all => 'no openssl' if system('openssl version >/dev/null 2>&1');
    plan skip_all => 'redis-server built without TLS' unless redis_has_tls();

    my $dir = CanaryTest::tmp_prefix();
    my $req = 'openssl req -newkey rsa:2048 -nodes -subj';
    my $sign = 'openssl x509 -req -CA ca.crt -CAkey ca.key -CAcreateserial';

    CanaryTest::write_file("$dir/server.ext",
        "subjectAltName=DNS:redis.test,DNS:localhost,IP:127.0.0.1\n");
    CanaryTest::write_file("$dir/client.ext",
        "extendedKeyUsage=clientAuth\n");

    run($dir, 'openssl req -x509 -newkey rsa:2048 -nodes -days 2',
        '-subj /CN=canary-test-ca -keyout ca.key -out ca.crt');
    run($dir, 'openssl req -x509 -newkey rsa:2048 -nodes -days 2',
        '-subj /CN=other-ca -keyout other.key -out other.crt');
    run($dir, "$req /CN=redis.test -keyout server.key -out server.csr");
    run($dir, "$sign -days 2 -in server.csr -extfile server.ext",
        '-out server.crt');
    run($dir, "$sign -days 0 -in server.csr -extfile server.ext",
        '-out expired.crt');
    run($dir, "$req /CN=canary-client -keyout client.key -out client.csr");
    run($dir, "$sign -days 2 -in client.csr -extfile client.ext",
        '-out client.crt');

    # the workers run as nobody: they read the key and certificates
    chmod 0644, glob "$dir/*";

    # "expired": not after now, so expired one second from now
    sleep 1.1;

    return {
        dir => $dir, ca => "$dir/ca.crt", ca_key => "$dir/ca.key",
        other_ca => "$dir/other.crt", server_crt => "$dir/server.crt",
        server_key => "$dir/server.key", expired_crt => "$dir/expired.crt",
        client_crt => "$dir/client.crt", client_key => "$dir/client.key",
    };
}


1;
