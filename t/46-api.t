#!/usr/bin/perl

# The control API (canary_api): every endpoint and every refusal against
# a real Redis and two nginx nodes on it; a write answered only once this
# node routes by it, seen by the other node within the propagation
# figures; the history's actor and source; the metrics; 503 with Redis
# gone, 504 with Redis stopped; nginx -t errors.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use HTTP::Tiny;
use POSIX ();
use JSON::PP ();
use Test::More;
use Time::HiRes qw(sleep time);
use CanaryTest;
use CanarySync qw(test_keys routes_by wait_until);

need_module();

my $json = JSON::PP->new->canonical;
my $r = start_redis(notify => 'Kh$s');
my $rport = $r->port;

sub node_conf {
    my ($id) = @_;
    return <<"EOF";
canary_zone 1m;
canary_redis 127.0.0.1:$rport timeout=5s;
canary_node_id $id;

upstream s { server 127.0.0.1:1; }
upstream c { server 127.0.0.1:1; }
upstream b { server 127.0.0.1:1; }
upstream g { server 127.0.0.1:1; }

canary_rollout checkout {
    key \$http_x_user_id;
    stable s;
    canary c;
    percent 5;
    segment \$http_x_country;
}

canary_rollout home {
    key \$http_x_user_id;
    stable s;
    variant blue b;
    variant green g;
    percent 20;
}

canary_rollout ramp {
    key \$http_x_user_id;
    stable s;
    canary c;
    auto steps=10,50,100 interval=1h max_error_rate=5%;
}

canary_rollout whole {
    key \$http_x_user_id;
    stable s;
    canary c;
    hash unleash;
}

server {
    listen 127.0.0.1:%%PORT%%;

    location / {
        canary checkout;
        return 200 "\$canary_variant|\$canary_bucket|\$canary_reason|\$pid\\n";
    }

    location /home {
        canary home;
        return 200 "\$canary_variant|\$canary_bucket|\$canary_reason|\$pid\\n";
    }

    location /canary/api/ {
        canary_api timeout=1s;
        canary_api_actor \$http_x_actor;
        allow 127.0.0.1;
        deny all;
    }

    location /basic/ {
        canary_api;
        auth_basic api;
        auth_basic_user_file %%PREFIX%%/htpasswd;
    }

    location = /canary {
        canary_status api=/canary/api/;
    }
}
EOF
}

my $a = start_nginx(node_conf('a'), workers => 2);
my $b = start_nginx(node_conf('b'));
my $port = $a->port;
my $base = "http://127.0.0.1:$port/canary/api";
my $http = HTTP::Tiny->new(timeout => 10);

# "alice:secret" for auth_basic ({SHA} of "secret")
CanaryTest::write_file($a->prefix . '/htpasswd',
                       "alice:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=\n");

sub api {
    my ($method, $path, $body, %h) = @_;
    my %hd = (%h);
    $hd{'Content-Type'} //= 'application/json' if $method ne 'GET';
    delete $hd{'Content-Type'} if defined $hd{'Content-Type'}
                                  && $hd{'Content-Type'} eq '';
    my $res = $http->request($method, $path =~ m{^http} ? $path
                                                        : "$base/$path",
                             { headers => \%hd,
                               defined $body ? (content => $body) : () });
    my $j = eval { $json->decode($res->{content}) };
    return ($res->{status}, $j, $res);
}

sub hget { $r->cli('HGET', 'canary:rollout:' . $_[0], $_[1]) }

ok(defined wait_until(sub {
       $r->cli('PUBSUB', 'NUMSUB', 'canary:changed') =~ /\n2$/ }, 10),
   'both nodes subscribed');


# GET

my ($st, $j, $res) = api('GET', 'rollouts');
is($st, 200, 'GET rollouts');
is($res->{headers}{'content-type'}, 'application/json', 'JSON');
is($res->{headers}{'x-content-type-options'}, 'nosniff', 'nosniff');
is_deeply([map { $_->{name} } @{ $j->{rollouts} }],
          [qw(checkout home ramp whole)], 'every rollout');
($st, $j) = api('GET', 'rollouts/ramp');
is($st, 200, 'GET rollouts/ramp');
is($j->{name}, 'ramp', 'one object');
ok(exists $j->{auto}, 'with its auto block');
($st, $j) = api('GET', 'rollouts/nope');
is($st, 404, 'unknown rollout: 404');
is($j->{error}, 'no such rollout', 'named');
is($j->{field}, 'nope', 'with the name');
($st) = api('GET', 'other');
is($st, 404, 'unknown path: 404');
($st) = api('GET', 'rollouts/checkout/what/ever');
is($st, 404, 'unknown subpath: 404');


# 405 with Allow

($st, $j, $res) = api('DELETE', 'rollouts/checkout');
is($st, 405, 'DELETE a rollout: 405');
is($res->{headers}{allow}, 'GET, HEAD, PATCH', 'Allow');
($st, $j, $res) = api('POST', 'rollouts');
is($res->{headers}{allow}, 'GET, HEAD', 'Allow on rollouts');
($st, $j, $res) = api('GET', 'rollouts/ramp/pause');
is($st, 405, 'GET an action: 405');
is($res->{headers}{allow}, 'POST', 'Allow POST');
($st, $j, $res) = api('POST', 'rollouts/checkout/canary_users/x');
is($res->{headers}{allow}, 'PUT, DELETE', 'Allow on a member');


# refusals before anything is written: 415, 403, 413, 400

($st, $j) = api('PATCH', 'rollouts/checkout', '{"percent":30}',
                'Content-Type' => '');
is($st, 415, 'no Content-Type: 415');
($st, $j) = api('PATCH', 'rollouts/checkout', 'percent=30',
                'Content-Type' => 'application/x-www-form-urlencoded');
is($st, 415, 'a form: 415');
($st, $j) = api('PATCH', 'rollouts/checkout', '{"percent":30}',
                Origin => 'http://evil.example');
is($st, 403, 'another Origin: 403');
($st, $j) = api('PATCH', 'rollouts/checkout', '{"percent":' . (' ' x 9000)
                . '30}');
is($st, 413, 'a body over 8192 bytes: 413');

my @bad = (
    ['{"percent":', 'malformed JSON', ''],
    ['[1]', 'the body is not an object', ''],
    ['{}', 'nothing to change', ''],
    ['{"colour":"red"}', 'unknown field', 'colour'],
    ['{"percent":101}', 'refused "101"', 'percent'],
    ['{"percent":12.345}', 'refused "12.345"', 'percent'],
    ['{"percent":-1}', 'refused "-1"', 'percent'],
    ['{"percent":true}', 'must be a number or a string', 'percent'],
    ['{"percent":null}', 'cannot be null', 'percent'],
    ['{"percent":30,"percent":40}', 'malformed JSON', ''],
    ['{"percent":30,"shadow":"x"}', 'refused "x"', 'shadow'],
    ['{"weights":{"blue":1}}', 'no such arm', 'weights.blue'],
    ['{"segments":{"":5}}', 'empty or too long a name', 'segments.'],
    ['{"segments":{"DE":"1e1"}}', 'refused "1e1"', 'segments.DE'],
    ['{"start":"tomorrow"}', 'refused "tomorrow"', 'start'],
    ['{"segments":[1]}', 'must be an object', 'segments'],
);

for my $c (@bad) {
    ($st, $j) = api('PATCH', 'rollouts/checkout', $c->[0]);
    is($st, 400, "$c->[0]: 400");
    like($j->{error} // '', qr/^\Q$c->[1]\E/, "$c->[0]: $c->[1]");
    is($j->{field} // '', $c->[2], "$c->[0]: field '$c->[2]'");
}

is($r->cli('EXISTS', 'canary:rollout:checkout'), '0',
   'nothing refused was written');

($st, $j) = api('PATCH', 'rollouts/whole', '{"percent":12.5}');
is($st, 400, 'hash unleash: whole percents only');
($st, $j) = api('PATCH', 'rollouts/whole', '{"percent":12}');
is($st, 200, 'hash unleash: 12');


# PATCH: answered once this node routes by it

my @keys = test_keys(300);
ok(routes_by($port, 5, \@keys), 'config percent 5');

# a key that 12.5 moves to the canary: node b is asked for it in a loop
# from the moment node a answers
my ($flip) = grep { $_->[1] >= 500 && $_->[1] < 1250 } @keys;
my $cb = http_client($b->port);
$cb->get('/', 'X-User-Id' => $flip->[0]);

($st, $j) = api('PATCH', 'rollouts/checkout',
                '{"percent":12.5,"segments":{"DE":40}}',
                'X-Actor' => 'ci-job-42');
my $t_answer = time;
my $t_b;
while (time < $t_answer + 5) {
    my (undef, undef, $body) = $cb->get('/', 'X-User-Id' => $flip->[0]);
    if ($body =~ /^canary\|/) {
        $t_b = time - $t_answer;
        last;
    }
}
is($st, 200, 'PATCH percent 12.5, segment DE 40');
is($j->{percent}, 12.5, 'the answer shows 12.5');
is_deeply($j->{segments}, [{ value => 'DE', percent => 40 }],
          'and the segment');
ok(routes_by($port, 12.5, \@keys),
   'the next requests, on every worker, route by 12.5');
is(hget('checkout', 'percent'), '12.5', 'Redis holds 12.5');
is(hget('checkout', 'percent:DE'), '40', 'and percent:DE 40');
ok(defined $t_b, 'node b routes by 12.5 too');
cmp_ok($t_b // 99, '<', 1 * $CanaryTest::SCALE,
       'within a second of node a\'s answer');
note(sprintf 'node b: %.1f ms after node a answered', ($t_b // 99) * 1000);
ok(routes_by($b->port, 12.5, \@keys), 'node b: every key');

my $hist = $r->cli('XREVRANGE', 'canary:rollout:checkout:history', '+', '-',
                   'COUNT', '1');
like($hist, qr/\bactor\nci-job-42\n/, "history: the actor");
like($hist, qr/\btime\n(\d+)\n/, "history: the time");
cmp_ok(abs(($hist =~ /\btime\n(\d+)\n/)[0] / 1000 - time), "<", 60,
       "in unix ms, now");
like($hist, qr/\bsource\napi\n/, 'history: source api');
like($hist, qr/\bevent\npatch\n/, 'history: the action');
like($hist, qr/\bold_percent\n\npercent\n12\.5\n/, 'history: old -> new');
like($hist, qr/\bnode\na\n/, 'history: the node');

($st, $j) = api('PATCH', 'rollouts/checkout', '{"segments":{"DE":null}}');
is($st, 200, 'a segment removed');
is_deeply($j->{segments}, [], 'gone from the answer');
is(hget('checkout', 'percent:DE'), '', 'and from Redis');

($st, $j) = api('PATCH', 'rollouts/home',
                '{"weights":{"blue":1,"green":3},"arms":{"green":"off"},'
                . '"shadow":2}');
is($st, 200, 'weights, an arm off, shadow');
is($j->{shadow}, 2, 'shadow 2');
my %arms = map { $_->{name} => $_ } @{ $j->{arms} // [] };
is($arms{green}{weight}, 3, 'green weight 3');
ok(!$arms{green}{on}, 'green off');
($st, $j) = api('PATCH', 'rollouts/home', '{"arms":{"green":"on"}}');
is($st, 200, 'arm green on again');

# same origin is fine
($st) = api('PATCH', 'rollouts/checkout', '{"percent":12.5}',
            Origin => "http://127.0.0.1:$port");
is($st, 200, 'the request\'s own Origin is a write like any');


# users

my ($k) = grep { $_->[1] >= 1250 } @keys;
sub variant_of {
    my ($path, $user) = @_;
    my (undef, undef, $body) = http_get($port, $path, 'X-User-Id' => $user);
    return (split /\|/, $body)[0] . '|' . (split /\|/, $body)[2];
}
is(variant_of('/', $k->[0]), 'stable|percent', "$k->[0] is stable");
($st, $j) = api('PUT', "rollouts/checkout/canary_users/$k->[0]");
is($st, 200, 'PUT a canary user');
is($j->{canary_users}, 1, 'the answer counts it');
is(variant_of('/', $k->[0]), 'canary|canary_users', 'routed to canary');
is($r->cli('SISMEMBER', 'canary:rollout:checkout:canary_users', $k->[0]),
   '1', 'in Redis');
($st, $j) = api('DELETE', "rollouts/checkout/canary_users/$k->[0]");
is($st, 200, 'DELETE it');
is(variant_of('/', $k->[0]), 'stable|percent', 'stable again');
($st) = api('PUT', 'rollouts/checkout/stable_users/a%2Fb%20c');
is($st, 200, 'a stable user with a slash and a space');
is($r->cli('SISMEMBER', 'canary:rollout:checkout:stable_users', 'a/b c'),
   '1', 'the key decoded');
($st) = api('PUT', 'rollouts/home/arms/green/users/bob');
is($st, 200, 'an arm\'s user');
is(variant_of('/home', 'bob'), 'green|canary_users', 'bob in green');
($st) = api('PUT', 'rollouts/home/arms/red/users/bob');
is($st, 404, 'no such arm: 404');
($st) = api('PUT', 'rollouts/checkout/arms/canary/users/bob');
is($st, 404, 'a two-sided rollout has no arms/ path');
$hist = $r->cli('XREVRANGE', 'canary:rollout:home:history', '+', '-',
                'COUNT', '1');
like($hist, qr/\bevent\nadd_user\n.*\bset\nusers:green\n.*\bmember\nbob\n/s,
     'history of a member');


# actions

($st, $j) = api('POST', 'rollouts/checkout/pause');
is($st, 409, 'pause a rollout without auto: 409');
like($j->{error}, qr/no auto/, 'saying why');
($st, $j) = api('POST', 'rollouts/ramp/dance');
is($st, 404, 'an unknown action: 404');
($st, $j) = api('POST', 'rollouts/ramp/pause');
is($st, 409, 'pause a rollout not started: 409');
is($j->{field}, 'none', 'its state named');
($st, $j) = api('POST', 'rollouts/ramp/start', '', 'X-Actor' => 'bob');
is($st, 200, 'start');
is($j->{state}, 'progressing', 'progressing');
ok(defined wait_until(sub { (hget('ramp', 'step') // '') eq '1' }, 10),
   'the controller took it to step 1');
($st, $j) = api('POST', 'rollouts/ramp/start');
is($st, 409, 'start again: 409');
($st, $j) = api('POST', 'rollouts/ramp/pause');
is($st, 200, 'pause');
is($j->{state}, 'paused', 'paused');
($st, $j) = api('POST', 'rollouts/ramp/pause');
is($st, 409, 'pause a paused rollout: 409');
is($j->{field}, 'paused', 'because it is paused');
($st, $j) = api('POST', 'rollouts/ramp/resume');
is($st, 200, 'resume');
is($j->{state}, 'progressing', 'progressing again');
($st, $j) = api('POST', 'rollouts/ramp/promote', '', 'X-Actor' => 'carol');
is($st, 200, 'promote');
is($j->{state}, 'promoted', 'promoted');
is($j->{percent}, 100, 'at the last step\'s percent');
is(hget('ramp', 'step'), '3', 'step 3 of 3');
($st, $j) = api('POST', 'rollouts/ramp/resume');
is($st, 409, 'resume a promoted rollout: 409');

my $alerts_file = $r->prefix . '/alerts.txt';
my $sub_pid = fork // die "fork: $!";
if ($sub_pid == 0) {
    open STDOUT, '>', $alerts_file or POSIX::_exit(1);
    exec $CanaryTest::REDIS_CLI, '-h', '127.0.0.1', '-p', $rport,
         'SUBSCRIBE', 'canary:alerts'
        or POSIX::_exit(127);
}
ok(defined wait_until(sub {
       $r->cli('PUBSUB', 'NUMSUB', 'canary:alerts') =~ /\n1$/ }, 5),
   'an alert subscriber listens');
($st, $j) = api('POST', 'rollouts/ramp/abort', '', 'X-Actor' => 'dave');
is($st, 200, 'abort');
is($j->{state}, 'rolled_back', 'rolled back');
is($j->{percent}, 0, 'percent 0');
is(hget('ramp', 'reason'), 'aborted by dave', 'reason: aborted by dave');
ok(defined wait_until(sub { CanaryTest::read_file($alerts_file)
                             =~ /"event":"abort".*"actor":"dave"/ }, 5),
   'the alert');
kill 'TERM', $sub_pid;
waitpid $sub_pid, 0;
ok(defined wait_until(sub {
       my (undef, $o) = api('GET', 'http://127.0.0.1:' . $b->port
                                   . '/canary/api/rollouts/ramp');
       $o->{state} eq 'rolled_back' && $o->{percent} == 0 }, 5),
   'node b: ramp rolled back at 0');
$hist = $r->cli('XRANGE', 'canary:rollout:ramp:history', '-', '+');
like($hist, qr/event\nstart\nsource\napi\nactor\nbob\n/, 'start by bob');
like($hist, qr/event\npromote\nsource\napi\nactor\ncarol\n/,
     'promote by carol');
unlike($hist, qr/event\noperator\n/,
       'no "operator" entry from the controller for the API\'s writes');


# the history through the API, newest first

($st, $j) = api('GET', 'rollouts/ramp/history');
is($st, 200, 'GET rollouts/ramp/history');
is($j->{history}[0]{event}, 'abort', 'the newest first');
is($j->{history}[0]{actor}, 'dave', 'with its actor');
like($j->{history}[0]{id}, qr/^\d+-\d+$/, 'and its stream id');
ok((grep { ($_->{event} // '') eq 'start' } @{ $j->{history} }),
   'the start is there too');
($st, $j, $res) = api('POST', 'rollouts/ramp/history');
is($res->{headers}{allow}, 'GET, HEAD', 'history is read-only');


# actor: $remote_user by default

($st) = api('PATCH', "http://127.0.0.1:$port/basic/rollouts/checkout",
            '{"percent":13}');
is($st, 401, 'auth_basic asks');
($st) = api('PATCH', "http://alice:secret\@127.0.0.1:$port/basic/rollouts/"
                     . 'checkout', '{"percent":13}');
is($st, 200, 'alice may');
$hist = $r->cli('XREVRANGE', 'canary:rollout:checkout:history', '+', '-',
                'COUNT', '1');
like($hist, qr/\bactor\nalice\n/, 'actor: $remote_user');
unlike($a->error_log, qr/secret/, 'no password in the log');


# a reload: the old workers close their API connections and exit, the
# new ones write (done() fails on an "open socket left" alert)

ok($a->reload, 'reload of node a');
($st, $j) = api('PATCH', 'rollouts/checkout', '{"percent":13}');
is($st, 200, 'a write after the reload');
ok(defined wait_until(sub {
       $a->error_log =~ /gracefully shutting down.*\n(?:.*\n)*.*exit\n/ }, 10),
   'the old workers exited');


# metrics

my (undef, undef, $prom) = http_get($port, '/canary?format=prometheus');
like($prom, qr/^nginx_canary_api_writes_total\{action="patch",result="ok"\} \d+$/m,
     'writes counted by action and result');
like($prom, qr/^nginx_canary_api_writes_total\{action="pause",result="refused"\} [1-9]/m,
     'refusals too');


# without canary_redis: the zone and the state file, in the worker

my $lconf = <<'EOF';
canary_zone 1m;
canary_state_file %%PREFIX%%/canary.state;

canary_rollout checkout {
    key $http_x_user_id;
    stable s;
    canary c;
    percent 5;
    segment $http_x_country;
}

upstream s { server 127.0.0.1:1; }
upstream c { server 127.0.0.1:1; }

server {
    listen 127.0.0.1:%%PORT%%;
    location / {
        canary checkout;
        return 200 "$canary_variant|$canary_bucket|$canary_reason|$pid\n";
    }
    location /canary/api/ { canary_api; }
}
EOF

my $l = start_nginx($lconf, workers => 2);
my $lapi = 'http://127.0.0.1:' . $l->port . '/canary/api/rollouts/checkout';
($st, $j) = api('PATCH', $lapi, '{"percent":30,"segments":{"DE":60}}');
is($st, 200, 'no canary_redis: PATCH applied to this node');
is($j->{source}, 'state_file', 'its source: the state file');
ok(routes_by($l->port, 30, \@keys), 'routed by 30 on every worker');
like(CanaryTest::read_file($l->prefix . '/canary.state'),
     qr/\bcheckout\b.*\b30\b/s, 'written to the state file');
like($l->error_log, qr/canary api: patch of "checkout" by "127\.0\.0\.1" applied to this node/,
     'the audit line');

# 20 writers at once, each its own segment: none is lost

my @kids;
for my $n (1 .. 20) {
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        my ($s) = api('PATCH', $lapi, qq({"segments":{"S$n":$n}}));
        POSIX::_exit($s == 200 ? 0 : 1);
    }
    push @kids, $pid;
}
my $failed = 0;
for (@kids) { waitpid $_, 0; $failed++ if $?; }
is($failed, 0, '20 concurrent PATCHes answered 200');
($st, $j) = api('GET', $lapi);
is(scalar(grep { $_->{value} =~ /^S\d+$/ } @{ $j->{segments} }), 20,
   'every one of the 20 segments is there');

($st, $j) = api('POST', "$lapi/pause");
is($st, 409, 'no auto there: 409');
($st, $j) = api('PUT', "$lapi/canary_users/bob");
is($st, 503, 'user sets without canary_redis: 503');

$l->stop;
$l->start;
ok(routes_by($l->port, 30, \@keys), 'after a restart: 30 from the state file');


# 504: Redis stopped, with node b's connection up (one worker); 503:
# Redis gone

my $bapi = 'http://127.0.0.1:' . $b->port . '/canary/api/rollouts/checkout';
($st) = api('PATCH', $bapi, '{"percent":13.5}');
is($st, 200, 'a write through node b');
$r->kill('STOP');
my $t0 = time;
($st, $j) = api('PATCH', $bapi, '{"percent":14}');
is($st, 504, 'Redis stopped: 504') or diag explain $j;
cmp_ok(time - $t0, '<', 3, 'after canary_api\'s timeout (1 s)');
$r->kill('CONT');
ok(defined wait_until(sub { $b->error_log =~ /answered 504, then Redis applied it/ }, 10),
   'the outcome logged once Redis answered');

$r->stop;
sleep 0.3;
($st, $j) = api('PATCH', 'rollouts/checkout', '{"percent":15}');
is($st, 503, 'Redis gone: 503');
like($j->{error}, qr/nothing was changed/, 'nothing changed');
ok(routes_by($port, 14, \@keys), 'the last good state stays in force');
expect_log(qr/canary (?:sync|auto|api).*/);


# nginx -t

my ($rc, $out) = nginx_t("canary_zone 1m;\nserver { location /a/ { "
                         . "canary_api wait=1s; } }");
isnt($rc, 0, 'canary_api wait=1s refused');
like($out, qr/invalid parameter "wait=1s"/, 'naming it');
($rc, $out) = nginx_t("canary_zone 1m;\nserver { location /a { "
                      . "canary_status api=x; } }");
like($out, qr/invalid parameter "api=x"/, 'canary_status api=x refused');

done();
