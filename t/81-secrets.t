#!/usr/bin/perl

# Secrets: the Redis password never appears in the status output (text,
# JSON, Prometheus, HTML, explain) nor in error.log at debug level, when
# AUTH succeeds, when it is refused, when Redis goes away and comes
# back.  Outside strings in the status output are escaped: a segment value with quotes, angle brackets and control bytes
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

done();
