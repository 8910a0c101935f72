#!/usr/bin/perl

# Shadow traffic: canary_shadow copies a stable request whose bucket lies
# in [percent, percent + shadow) to an internal location proxying to the
# canary, as a background subrequest.
#
# - 10,000 keys at percent 10, shadow 5: the shadowed keys are exactly
#   those with a bucket in [1000, 1500) (the canary backend's access log
#   and $canary_shadow agree), their share is 5 +- 1, and every user gets
#   the same answer as from a location without canary_shadow
# - POST is not shadowed by default; with canary_shadow_methods it is,
#   body and all, and the user's answer does not change
# - the shadow counters (variant "shadow") are exact in text, JSON and
#   Prometheus: 2xx, 5xx, an upstream connect error, the histogram
# - a canary that takes 1 s to answer its shadow: the user's answer comes
#   before the canary has answered (its log says so); the next request on
#   the same keep-alive connection is read only once the shadow is over,
#   while a request on another connection is not held
# - the shadow share from Redis (field "shadow"), strict as percent

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Socket::INET;
use JSON::PP;
use POSIX ();
use Test::More;
use Time::HiRes qw(sleep time);
use CanaryTest;

need_module();


# a canary backend that takes 1 s: logs "recv <uri> <t>" when a request
# is in and "sent <uri> <t>" just before it answers

my $slow_tmp = File::Temp->new;
my $slow_log = $slow_tmp->filename;

sub slow_server {
    my $listen = IO::Socket::INET->new(
        LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp',
        Listen => 64, ReuseAddr => 1) or die "listen: $!";
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        $SIG{PIPE} = 'IGNORE';
        $SIG{CHLD} = 'IGNORE';
        while (1) {
            my $c = $listen->accept or next;
            if (fork) {
                close $c;
                next;
            }
            my $req = '';
            while ($req !~ /\r\n\r\n/) {
                my $n = sysread($c, $req, 4096, length $req);
                last unless $n;
            }
            my ($uri) = $req =~ m{^\w+ (\S+)} or POSIX::_exit(0);
            note_line("recv $uri " . time);
            sleep 1;

            # logged before the answer leaves: nobody can have it earlier
            note_line("sent $uri " . time);
            syswrite($c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
                         . "Connection: close\r\n\r\nslow\n");
            close $c;
            POSIX::_exit(0);
        }
    }
    return ($listen->sockport, $pid);
}

sub note_line {
    open my $fh, '>>', $slow_log or return;
    print $fh "$_[0]\n";
    close $fh;
}

sub slow_events {
    my %e;
    for (split /\n/, CanaryTest::read_file($slow_log)) {
        my ($what, $uri, $t) = split / /;
        $e{"$what $uri"} = $t;
    }
    return \%e;
}

use File::Temp ();

my ($slow_port, $slow_pid) = slow_server();
my $closed_port = free_port();

END { kill 'KILL', $slow_pid if $slow_pid; }

my $r = start_redis();

my $conf = <<'EOF';
log_format shadowlog '$request_method $uri $http_x_user_id '
                     '$http_x_canary_shadow $http_content_length';

upstream stable_b { server 127.0.0.1:%%PORT_S%%; }
upstream canary_b { server 127.0.0.1:%%PORT_C%%; }

server {
    listen 127.0.0.1:%%PORT_S%%;
    location / { return 200 "stable $http_x_user_id\n"; }
}

server {
    listen 127.0.0.1:%%PORT_C%%;
    access_log %%PREFIX%%/logs/shadow.log shadowlog;
    location /       { return 200 "canary $http_x_user_id\n"; }
    location /s500/  { return 500; }
}

canary_zone 1m;
canary_redis 127.0.0.1:%%RPORT%%;
canary_sync_interval 200ms;
canary_state_file %%PREFIX%%/canary.state;

canary_rollout checkout {
    key     $http_x_user_id;
    stable  stable_b;
    canary  canary_b;
    percent 10;
    shadow  5;
}

canary_rollout errs {
    key     $http_x_user_id;
    stable  stable_b;
    canary  canary_b;
    percent 0;
    shadow  100;
}

canary_rollout slow {
    key     $http_x_user_id;
    stable  stable_b;
    canary  canary_b;
    percent 0;
    shadow  100;
}

server {
    listen 127.0.0.1:%%PORT%%;

    location / {
        canary checkout;
        canary_shadow /_shadow;
        add_header X-Shadow $canary_shadow always;
        proxy_pass http://$canary_upstream;
    }

    location /plain/ {
        canary checkout;
        add_header X-Shadow $canary_shadow always;
        proxy_pass http://$canary_upstream;
    }

    location /post/ {
        canary checkout;
        canary_shadow /_shadow;
        canary_shadow_methods GET POST;
        add_header X-Shadow $canary_shadow always;
        proxy_pass http://$canary_upstream;
    }

    location /_shadow {
        internal;
        proxy_set_header X-Canary-Shadow $canary_shadow;
        proxy_pass http://canary_b$request_uri;
    }

    location /e/ok/ {
        canary errs;
        canary_shadow /_shadow;
        proxy_pass http://$canary_upstream;
    }

    location /e/500/ {
        canary errs;
        canary_shadow /_s500;
        proxy_pass http://$canary_upstream;
    }

    location /e/closed/ {
        canary errs;
        canary_shadow /_closed;
        proxy_pass http://$canary_upstream;
    }

    location /_s500 {
        internal;
        proxy_pass http://canary_b/s500/;
    }

    location /_closed {
        internal;
        proxy_pass http://127.0.0.1:%%CLOSED%%;
    }

    location /slow/ {
        canary slow;
        canary_shadow /_slow;
        proxy_pass http://stable_b;
    }

    location /_slow {
        internal;
        proxy_pass http://127.0.0.1:%%SLOW%%$request_uri;
    }

    location = /canary {
        canary_status;
    }
}
EOF

my $ng = start_nginx($conf, vars => { SLOW => $slow_port,
                                      CLOSED => $closed_port,
                                      RPORT => $r->port });

expect_log(qr/connect\(\) failed .* while connecting to upstream/);

my $port = $ng->port;
my $shadow_log = $ng->prefix . '/logs/shadow.log';

sub wait_until {
    my ($cond, $timeout) = @_;
    my $end = time + $timeout * $CanaryTest::SCALE;
    while (time < $end) {
        return 1 if $cond->();
        sleep 0.1;
    }
    return $cond->();
}

sub shadow_lines {
    return grep { length } split /\n/, CanaryTest::read_file($shadow_log);
}

sub status_json {
    my ($s, $h, $body) = http_get($port, '/canary?format=json');
    my $j = decode_json($body);
    my %ro = map { $_->{name} => $_ } @{ $j->{rollouts} };
    return \%ro;
}

sub bucket { murmur3_32("checkout:$_[0]") % 10000 }


# 1. 10,000 keys: exactly the bucket range, 5 +- 1, answers unchanged

my $n = 10000;
my @keys = map { "u$_" } 1 .. $n;
my %want = map { $_ => 1 } grep { my $b = bucket($_); $b >= 1000 && $b < 1500 }
           @keys;

my $c = http_client($port);
my @res = $c->pipeline(map { ['/k', 'X-User-Id' => $_] } @keys);
my @plain = $c->pipeline(map { ['/plain/k', 'X-User-Id' => $_] } @keys);
$c->close;

is(scalar @res, $n, "$n answers");

my (%flagged, $wrong, $differs);
for my $i (0 .. $#keys) {
    my $k = $keys[$i];
    my $canary = bucket($k) < 1000;
    my $body = $canary ? "canary $k\n" : "stable $k\n";
    $wrong++ unless $res[$i][0] == 200 && $res[$i][2] eq $body;
    $differs++ unless $res[$i][2] eq $plain[$i][2]
                      && $res[$i][0] == $plain[$i][0];
    $flagged{$k} = 1 if ($res[$i][1]{'x-shadow'} // '') eq '1';
}

ok(!$wrong, 'every user gets the variant its bucket says, with its body');
ok(!$differs, 'every answer equals that of a location without '
              . 'canary_shadow');
is_deeply([sort keys %flagged], [sort keys %want],
          '$canary_shadow is 1 for exactly the keys in [1000, 1500)');
ok(!grep({ ($_->[1]{'x-shadow'} // '') ne '0' } @plain),
   '$canary_shadow is 0 where the location has no canary_shadow');

my $expected = keys %want;

ok(wait_until(sub {
       scalar(grep { m{^GET /k } } shadow_lines()) >= $expected }, 10),
   'the canary backend got the shadows');

# the canary backend's log: its users' own requests (no X-Canary-Shadow)
# and the shadows, marked by $canary_shadow in the shadow location

my (%got, %direct);
for (shadow_lines()) {
    my ($m, $uri, $key, $mark) = split / /;
    next unless $uri eq '/k';
    if ($mark eq '1') {
        $got{$key}++;
    } else {
        $direct{$key}++;
    }
}

is_deeply([sort keys %got], [sort keys %want],
          "the canary backend saw exactly the $expected shadowed keys")
    or diag(join ' ', 'extra:', grep({ !$want{$_} } keys %got),
            'missing:', grep({ !$got{$_} } keys %want));
ok(!grep({ $_ != 1 } values %got), 'each of them once');
is_deeply([sort keys %direct], [sort grep { bucket($_) < 1000 } @keys],
          'unmarked requests at the canary are exactly its users\' '
          . '(so $canary_shadow is 1 inside the shadow location)');

my $share = 100 * $expected / $n;
ok(abs($share - 5) <= 1, sprintf('shadowed share %.2f%% is 5 +- 1', $share));

ok(wait_until(sub {
       status_json()->{checkout}{variants}{shadow}{requests} == $expected },
       10),
   'the shadow counter of "checkout" equals the shadowed requests');

# explain says who is shadowed

{
    my ($in) = sort keys %want;
    my ($out) = grep { !$want{$_} && bucket($_) >= 1000 } @keys;
    my ($can) = grep { bucket($_) < 1000 } @keys;
    my %e;
    for ([in => $in], [out => $out], [can => $can]) {
        my (undef, undef, $body) =
            http_get($port, "/canary?explain=checkout&key=$_->[1]");
        $e{ $_->[0] } = decode_json($body)->{shadowed};
    }
    is_deeply([map { $e{$_} ? 1 : 0 } qw(in out can)], [1, 0, 0],
              'explain: "shadowed" true in [1000, 1500) only');
}

my $ro = status_json()->{checkout};
is($ro->{shadow}, 5, 'JSON: shadow 5');
is($ro->{variants}{shadow}{responses}{'2xx'}, $expected, 'shadow 2xx');
is($ro->{variants}{stable}{requests} + $ro->{variants}{canary}{requests},
   2 * $n, 'users\' requests counted as before, shadows not among them');


# 2. POST: not by default; with canary_shadow_methods, with its body

sub post {
    my ($uri, $key, $body) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port)
        or die "connect: $!";
    print $s "POST $uri HTTP/1.1\r\nHost: x\r\nX-User-Id: $key\r\n"
             . "Content-Length: " . length($body) . "\r\n"
             . "Connection: close\r\n\r\n$body";
    local $/;
    my $text = <$s>;
    close $s;
    my ($status) = $text =~ m{^HTTP/1\.1 (\d+)};
    my ($shadow) = $text =~ m{\r\nX-Shadow: (\d)};
    my ($answer) = $text =~ m{\r\n\r\n(.*)\z}s;
    return ($status, $shadow, $answer);
}

my ($pk) = sort keys %want;
my $before = () = grep { /^POST / } shadow_lines();

my ($st, $sh, $ans) = post('/k', $pk, 'hello');
is($st, 200, 'POST answered');
is($sh, '0', 'POST not shadowed by default ($canary_shadow 0)');
is($ans, "stable $pk\n", 'POST answer from stable');

($st, $sh, $ans) = post('/post/k', $pk, 'hello shadow');
is($st, 200, 'POST with canary_shadow_methods GET POST answered');
is($sh, '1', 'and shadowed');
is($ans, "stable $pk\n", 'the answer is still stable\'s');

ok(wait_until(sub { grep { m{^POST /post/k } } shadow_lines() }, 5),
   'the canary got the POST');
my ($pline) = grep { m{^POST /post/k } } shadow_lines();
like($pline, qr/ 12$/, 'with its body (Content-Length 12)');
is(scalar(grep { m{^POST /k } } shadow_lines()), 0,
   'no shadow for the default location\'s POST');


# 3. counters exact in every format

{
    my $cl = http_client($port);
    $cl->pipeline((map { ['/e/ok/', 'X-User-Id' => "a$_"] } 1 .. 4),
                  (map { ['/e/500/', 'X-User-Id' => "b$_"] } 1 .. 3),
                  (map { ['/e/closed/', 'X-User-Id' => "c$_"] } 1 .. 2));
    $cl->close;
}

ok(wait_until(sub {
       status_json()->{errs}{variants}{shadow}{requests} == 9 }, 10),
   'errs: 9 shadows counted');

my $j = status_json()->{errs}{variants};
is_deeply([@{ $j->{shadow} }{qw(requests upstream_errors errors)},
           @{ $j->{shadow}{responses} }{qw(2xx 5xx)},
           $j->{shadow}{request_time_count}],
          [9, 2, 5, 4, 5, 9],
          'JSON: shadow requests 9, upstream errors 2, errors 5, '
          . '2xx 4, 5xx 5, histogram count 9');
is($j->{stable}{requests}, 9, 'the users\' 9 requests are stable\'s');
is($j->{stable}{errors}, 0, 'and none of them an error');

my ($s, $h, $text) = http_get($port, '/canary');
like($text, qr/^ shadow requests 9 1xx 0 2xx 4 3xx 0 4xx 0 5xx 5 (?x)
               upstream_errors\ 2\ errors\ 5$/m,
     'text: the shadow line of errs')
    or diag $text;
like($text, qr/^Rollout errs .*\n shadow_percent 100\n/m,
     'text: shadow_percent 100');

my $prom;
($s, $h, $prom) = http_get($port, '/canary?format=prometheus');
my %p;
for (split /\n/, $prom) {
    next if /^#/;
    my ($k, $v) = /^(\S+) (\S+)$/ or next;
    $p{$k} = $v;
}
my $l = 'rollout="errs",variant="shadow"';
is_deeply([map { $p{$_} }
           "nginx_canary_requests_total{$l}",
           "nginx_canary_upstream_errors_total{$l}",
           "nginx_canary_errors_total{$l}",
           "nginx_canary_responses_total{$l,code=\"2xx\"}",
           "nginx_canary_responses_total{$l,code=\"5xx\"}",
           "nginx_canary_request_duration_seconds_count{$l}",
           "nginx_canary_request_duration_seconds_bucket{$l,le=\"+Inf\"}",
           'nginx_canary_shadow_percent{rollout="errs"}'],
          [9, 2, 5, 4, 5, 9, 9, 100],
          'Prometheus: the same figures and shadow_percent');

SKIP: {
    skip 'promtool not installed', 1
        unless system('command -v promtool >/dev/null 2>&1') == 0;
    my $f = File::Temp->new;
    print $f $prom;
    close $f;
    my $out = `promtool check metrics < $f 2>&1`;
    is($? >> 8, 0, 'promtool check metrics passes') or diag $out;
}


# 4. a canary that takes 1 s: the user does not wait, the connection does

{
    my $cl = http_client($port);
    $cl->connect;

    my $t0 = time;
    my ($s1, $h1, $b1) = $cl->get('/slow/first', 'X-User-Id' => 'k1');
    my $t1 = time;
    my $ev = slow_events();

    is($b1, "stable k1\n", 'the user gets stable\'s answer');
    ok(!$ev->{'sent /slow/first'},
       'and gets it before the canary has answered its shadow')
        or diag explain $ev;
    ok(wait_until(sub { slow_events()->{'recv /slow/first'} }, 2),
       'the canary did get the shadow');
    diag(sprintf 'answer in %.3f s while the shadow takes 1 s', $t1 - $t0);

    # meanwhile, another connection is not held

    my ($s3, $h3, $b3) = http_get($port, '/plain/x', 'X-User-Id' => 'k3');
    ok(!slow_events()->{'sent /slow/first'},
       'another connection is answered while the shadow runs');

    # the next request on the same connection waits for the shadow

    my ($s2, $h2, $b2) = $cl->get('/slow/second', 'X-User-Id' => 'k2');
    my $t2 = time;
    $ev = slow_events();

    is($b2, "stable k2\n", 'the next request on the connection answered');
    ok($ev->{'sent /slow/first'},
       'but only once the first request\'s shadow was over');
    diag(sprintf 'the next request on that connection: %.3f s',
                 $t2 - $t1);
    $cl->close;

    ok(wait_until(sub {
           status_json()->{slow}{variants}{shadow}{requests} == 2 }, 5),
       'slow: 2 shadows counted');
    my $hist = status_json()->{slow}{variants}{shadow};
    ok($hist->{request_time_sum_ms} >= 2000,
       "their time is the canary's: $hist->{request_time_sum_ms} ms");
}


# 5. the share from Redis, strict

{
    $r->cli('HSET', 'canary:rollout:checkout', 'shadow', '12.5');
    ok(wait_until(sub { status_json()->{checkout}{shadow} == 12.5 }, 5),
       'shadow 12.5 from Redis');
    ok(wait_until(sub { CanaryTest::read_file($ng->prefix . '/canary.state')
                        =~ /^shadow checkout 12\.50$/m }, 5),
       'the state file keeps it');

    $r->cli('HSET', 'canary:rollout:checkout', 'shadow', '101');
    ok(wait_until(sub { $ng->error_log =~ /refused "101" for field "shadow" (?x)
                                          of\ "canary:rollout:checkout"/ },
              5),
       'shadow 101 refused with a log line naming field and value');
    is(status_json()->{checkout}{shadow}, 12.5, 'the last good share stays');

    my ($k) = grep { my $b = bucket($_); $b >= 1500 && $b < 2250 }
              map { "r$_" } 1 .. 1000;
    my ($s, $h) = http_get($port, '/k', 'X-User-Id' => $k);
    is($h->{'x-shadow'}, '1', "a key in [1000, 2250) is shadowed now");

    $r->cli('HSET', 'canary:rollout:checkout', 'shadow', '0');
    ok(wait_until(sub { status_json()->{checkout}{shadow} == 0 }, 5),
       'shadow 0 from Redis');
    ($s, $h) = http_get($port, '/k', 'X-User-Id' => $pk);
    is($h->{'x-shadow'}, '0', 'nobody is shadowed at 0');
}


# 6. nginx -t

{
    my ($rc, $out) = nginx_t(<<'EOF');
server {
    listen 127.0.0.1:%%PORT%%;
    location / { canary_shadow /_s; return 200; }
}
EOF
    isnt($rc, 0, 'canary_shadow without canary fails nginx -t');
    like($out, qr/"canary_shadow \/_s" needs "canary" .* in \S+:\d+/,
         'saying why, with file and line') or diag $out;

    ($rc, $out) = nginx_t(<<'EOF');
canary_zone 1m;
canary_rollout a { key $arg_k; stable s; canary c; shadow 100.001; }
EOF
    isnt($rc, 0, 'shadow 100.001 fails nginx -t');
    like($out, qr/invalid shadow "100.001" in canary_rollout "a".*:\d+/,
         'with file and line');

    ($rc, $out) = nginx_t(<<'EOF');
canary_zone 1m;
canary_rollout a { key $arg_k; stable s; canary c; }
server {
    listen 127.0.0.1:%%PORT%%;
    location / { canary a; canary_shadow_methods GET TRACE; }
}
EOF
    isnt($rc, 0, 'canary_shadow_methods TRACE fails nginx -t');
}

done();
