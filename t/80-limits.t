#!/usr/bin/perl

# Resource bounds and hostile keys: a zone too small for the declared
# rollouts refuses to start with a message that says so; keys of 64 KB and
# of every byte value a header can carry are hashed like any other key
# (the bucket is the documented murmur3 of "<salt>:<key>"), and a worker
# survives them.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use CanaryTest;

need_module();

# a zone too small: 32 KB (8 pages, the least accepted) for 400 rollouts
# with 4 worker slots of counters each

my $many = join '', map {
    "canary_rollout r$_ { key \$http_x_user_id; stable s; canary c; }\n"
} 1 .. 400;

my $prefix = CanaryTest::make_prefix();
CanaryTest::write_file("$prefix/nginx.conf", CanaryTest::full_conf(
    "canary_zone 32k;\n$many\nserver { listen 127.0.0.1:"
    . free_port() . "; location / { canary r1; return 204; } }\n",
    workers => 4));
# (timeout: should it start after all, it stays in the foreground)
my $out = `timeout -s QUIT 20 '$CanaryTest::NGINX' -p '$prefix/' -c nginx.conf 2>&1`;
my $rc = $? >> 8;
my $log = $out . CanaryTest::read_file("$prefix/logs/error.log");

isnt($rc, 0, 'a zone too small: nginx does not start');
like($log, qr/canary_zone "canary" of \d+ bytes is too small for 400 rollouts, make it larger/,
     'a zone too small: the message names the zone, its size, the rollouts');
unlike($log, qr/signal|segfault|AddressSanitizer/, 'a zone too small: no crash');

# the same rollouts fit in 4 MB

my $fits = start_nginx(<<"EOF", workers => 4);
canary_zone 4m;
$many
server {
    listen 127.0.0.1:%%PORT%%;
    location / { canary r400; return 200 "\$canary_bucket"; }
}
EOF
my ($st) = http_get($fits->port, '/', 'X-User-Id' => 'u1');
is($st, 200, '400 rollouts fit in 4m');
$fits->stop;

# a zone that fits but leaves little room: `nginx -t` warns with the size
# it estimates (docs/operations.md, "Zone sizing"); at that size, none

my $forty = join '', map {
    "canary_rollout z$_ { key \$http_x_user_id; stable s; canary c; }\n"
} 1 .. 40;

sub zone_t {
    my ($size) = @_;
    return nginx_t("canary_zone $size;\n$forty\nserver { listen 127.0.0.1:"
                   . "%%PORT%%; location / { canary z1; return 204; } }\n",
                   workers => 4);
}

my $warn_text = 'canary_zone "canary" of (\d+) bytes may be too small for '
              . '40 rollouts with 4 workers: about (\d+) bytes are needed';
my $warning = qr/\[warn\] $warn_text/;

# down from a size that fits with room to the first that draws the warning

my ($small, $needed, $warned);
for (my $k = 256; $k >= 160; $k -= 2) {
    my ($rc, $o) = zone_t("${k}k");
    last if $rc != 0;
    if ($o =~ $warning) {
        ($small, $needed, $warned) = ($1, $2, $o);
        last;
    }
}

ok(defined $needed, 'a zone that fits but is small: nginx -t warns');
cmp_ok($needed // 0, '>', $small // 0, 'the warning: more than the zone');
like($warned // '', qr/test is successful/, 'the warning: nginx -t passes');

my ($rc_at, $out_at) = zone_t($needed // 0);
is($rc_at, 0, 'a zone of the size said: nginx -t passes') or diag $out_at;
unlike($out_at, qr/\[warn\]/, 'a zone of the size said: no warning')
    or diag $out_at;

my ($rc_below, $out_below) = zone_t(($needed // 0) - 1);
is($rc_below, 0, 'a byte less: nginx -t passes') or diag $out_below;
like($out_below, $warning, 'a byte less: the warning') or diag $out_below;

# hostile keys

my $ng = start_nginx(<<'EOF', workers => 2);
canary_zone 1m;

canary_rollout big {
    key $http_x_user_id $cookie_uid;
    stable s;
    canary c;
    percent 50;
    salt big;
}

large_client_header_buffers 4 256k;

server {
    listen 127.0.0.1:%%PORT%%;
    location / {
        canary big;
        return 200 "$canary_bucket|$canary_variant|$canary_reason";
    }
}
EOF
my $port = $ng->port;
my $c = http_client($port);

sub bucket_of { murmur3_32("big:$_[0]") % 10000 }

sub check_key {
    my ($key, $name, $header) = @_;
    my ($status, undef, $body) = $c->get('/', $header // 'X-User-Id', $key);
    is($status, 200, "$name: 200");
    my ($b, $v, $why) = split /\|/, $body // '';
    is($b, bucket_of($header ? substr($key, 4) : $key),
       "$name: bucket is murmur3 of salt:key");
    is($why, 'percent', "$name: decided by percent");
}

my $k64 = join '', map { chr(0x21 + ($_ * 7919) % 94) } 1 .. 65536;
check_key($k64, '64 KB key');
check_key('x' x 200000, '200 KB key');

# every byte a header value can hold: not NUL, CR, LF; a leading or
# trailing space or tab is trimmed by the HTTP parser, so none there

my $bin = 'k' . join('', map { chr } grep { $_ != 0 && $_ != 10 && $_ != 13 }
                                     0 .. 255) . 'k';
check_key($bin, 'all byte values');
check_key("\xff\xfe\x80\x81", 'invalid UTF-8');
check_key("uid=\xc3\xa9\x01\x7f", 'a cookie with control bytes', 'Cookie');

# lengths around the block size of murmur3: every tail length

for my $n (1 .. 9) {
    my $k = substr("\x80\x01\xfe\x7f\xc0abcd", 0, $n);
    my ($s, undef, $body) = $c->get('/', 'X-User-Id' => $k);
    is((split /\|/, $body)[0], bucket_of($k), "a $n-byte binary key");
}

# the workers are the same ones: none died on the way

my @before = $ng->pids;
check_key($k64, '64 KB key again');
is_deeply([$ng->pids], \@before, 'no worker was replaced');
unlike($ng->error_log, qr/signal \d+|exited on signal/, 'no worker crashed');

done();
