#!/usr/bin/perl

# External checks of the automatic rollout ("auto ... check=<url>"), one
# nginx node that is also the check server (its access log records each
# check's headers), a redis-server, intervals of 1 s:
#
#   - passing checks let the ramp go on; every judgement requests the URL
#     with X-Canary-Rollout, X-Canary-Step and X-Canary-Percent;
#   - a check answering 500 at step 2 rolls the canary back, the reason
#     naming the URL (without its userinfo and query) and the status;
#   - a check nobody answers, and an https check whose certificate is not
#     trusted, fail the same way; https against the test CA passes.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(sleep time);
use CanaryTest;
use CanarySync qw(wait_until);
use CanaryAuto;
use CanaryTLS;

need_module();

my $certs = make_certs();
my $r = start_redis();
my $rport = $r->port;
my $fail_flag = $r->prefix . '/check-fails';
my $dead = CanaryTest::free_port();

my $auto = 'interval=1s max_error_rate=5% min_requests=10';

my $conf = <<"EOF";
canary_zone 1m;
canary_redis 127.0.0.1:$rport;
canary_node_id node-a;

upstream stable_up { server 127.0.0.1:%%PORT_S%%; }
upstream canary_up { server 127.0.0.1:%%PORT_C%%; }

canary_rollout chk {
    key \$arg_u;
    stable stable_up;
    canary canary_up;
    auto steps=10,50,100 $auto check_timeout=2s
         check=http://user:pw\@127.0.0.1:%%PORT_K%%/smoke?token=secret;
}

canary_rollout dead {
    key \$arg_u;
    stable stable_up;
    canary canary_up;
    auto steps=10,100 $auto check=http://127.0.0.1:$dead/ check_timeout=1s;
}

canary_rollout tls {
    key \$arg_u;
    stable stable_up;
    canary canary_up;
    auto steps=10,100 $auto check=https://localhost:%%PORT_T%%/ok
         check_ca=$certs->{ca};
}

canary_rollout untrusted {
    key \$arg_u;
    stable stable_up;
    canary canary_up;
    auto steps=10,100 $auto check=https://localhost:%%PORT_T%%/ok
         check_ca=$certs->{other_ca};
}

log_format checks '\$http_x_canary_rollout \$http_x_canary_step '
                  '\$http_x_canary_percent \$request_method \$uri \$status';

server {
    listen 127.0.0.1:%%PORT%%;
    location /chk { canary chk; proxy_pass http://\$canary_upstream; }
    location /dead { canary dead; proxy_pass http://\$canary_upstream; }
    location /tls { canary tls; proxy_pass http://\$canary_upstream; }
    location /untrusted {
        canary untrusted;
        proxy_pass http://\$canary_upstream;
    }
}

server {
    listen 127.0.0.1:%%PORT_K%%;
    access_log %%PREFIX%%/logs/checks.log checks;
    location /smoke {
        if (-f $fail_flag) { return 500 "failing\\n"; }
        return 200 "ok\\n";
    }
}

server {
    listen 127.0.0.1:%%PORT_T%% ssl;
    ssl_certificate $certs->{server_crt};
    ssl_certificate_key $certs->{server_key};
    access_log %%PREFIX%%/logs/checks.log checks;
    location /ok { return 204; }
}

server {
    listen 127.0.0.1:%%PORT_S%%;
    location / { return 200 "stable\\n"; }
}

server {
    listen 127.0.0.1:%%PORT_C%%;
    location / { return 200 "canary\\n"; }
}
EOF

my $ng = start_nginx($conf);

my $user = 0;

sub drive {
    my ($cond, $timeout, $path) = @_;
    my $t0 = time;
    while (time - $t0 < $timeout) {
        return 1 if $cond->();
        http_client($ng->port)->pipeline(
            map { ["$path?u=" . $user++] } 1 .. 40);
        sleep 0.05;
    }
    return $cond->();
}

sub field { $r->cli('HGET', "canary:rollout:$_[0]", $_[1]) }

sub checks_log {
    CanaryTest::read_file($ng->prefix . '/logs/checks.log');
}

ok(defined wait_until(sub { $r->cli('GET', 'canary:leader') eq 'node-a' },
                      10), 'the node holds the lease')
    or diag $ng->error_log;


# 1. checks pass at step 1, fail at step 2: rolled back, with the reason

{
    $r->cli('HSET', 'canary:rollout:chk', 'state', 'progressing');
    ok(drive(sub { field('chk', 'percent') eq '50' }, 15, '/chk'),
       'passing checks: step 2') or diag $ng->error_log;

    like(checks_log(), qr/^chk 1 10\.00 GET \/smoke 200$/m,
         'the check was requested at step 1 with its headers')
        or diag checks_log();

    open my $fh, '>', $fail_flag or die;
    close $fh;

    ok(drive(sub { field('chk', 'state') eq 'rolled_back' }, 10, '/chk'),
       'a check answering 500 rolls back');
    is(field('chk', 'percent'), '0', 'percent 0');
    my $port = $ng->port('PORT_K');
    my $reason = field('chk', 'reason');
    is($reason, "check http://127.0.0.1:$port/smoke answered 500",
       'the reason names the URL and the status');
    note "rolled back: $reason";
    unlike($reason . $ng->error_log, qr/secret|user:pw/,
           'neither the query nor the userinfo in the reason or the log');
    like(checks_log(), qr/^chk 2 50\.00 GET \/smoke 500$/m,
         'the failing check was at step 2');
    my ($rb) = grep { $_->{event} eq 'rollback' }
        history_of($r, 'canary:rollout:chk');
    like($rb->{reason} // '', qr/^check http:\S+\/smoke answered 500$/,
         'the history says so');
    like($ng->error_log,
         qr/\[warn\].*canary auto: "chk" check http:\S+\/smoke answered 500/,
         'a log line for the failed check');
}


# 2. nobody answers: the check fails, the canary is rolled back

{
    $r->cli('HSET', 'canary:rollout:dead', 'state', 'progressing');
    ok(drive(sub { field('dead', 'state') eq 'rolled_back' }, 15, '/dead'),
       'a check that cannot connect rolls back');
    like(field('dead', 'reason'),
         qr/^check http:\/\/127\.0\.0\.1:$dead\/ failed: \S.*/,
         'the reason names the URL and the failure');
    note 'rolled back: ' . field('dead', 'reason');
}


# 3. https: the test CA passes, another CA fails

{
    $r->cli('HSET', 'canary:rollout:tls', 'state', 'progressing');
    $r->cli('HSET', 'canary:rollout:untrusted', 'state', 'progressing');

    ok(drive(sub { field('tls', 'state') eq 'promoted' }, 15, '/tls'),
       'https check against the test CA: promoted');
    like(checks_log(), qr/^tls 1 10\.00 GET \/ok 204$/m,
         'the https check was requested');

    ok(drive(sub { field('untrusted', 'state') eq 'rolled_back' }, 15,
             '/untrusted'), 'https check with an untrusted certificate '
                            . 'rolls back');
    like(field('untrusted', 'reason'),
         qr/^check https:\/\/localhost:\d+\/ok failed: .*certificate/i,
         'the reason says why');
    note 'rolled back: ' . field('untrusted', 'reason');
}

unlink $fail_flag;

done();
