#!/usr/bin/perl

# Webhooks ("canary_webhook"): two nginx nodes on one redis-server, and a
# third nginx as the receiver, whose access log records each POST's body:
#
#   - a whole ramp reaches both formats, in order: the alert channel's
#     JSON, and {"text": "..."} for Slack;
#   - only the node that made a decision sends it (no event twice, each
#     from the node the history names);
#   - a receiver that is down for 10 s: the events queued meanwhile
#     arrive, in order, once it is back (retries 1, 2, 4, 8 s apart), and
#     routing goes on (its latency with the receiver down and up is
#     printed);
#   - the events no controller decides: the control API's writes (start,
#     approve at a gate, abort), each sent by the node whose API wrote it;
#     an operator's change with redis-cli, sent by the leader; a Redis
#     restarted empty, each rollout's "restored" sent by the node that
#     wrote it back.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use HTTP::Tiny;
use JSON::PP ();
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

my $recv = start_nginx(<<"EOF");
log_format hook escape=none '\$content_type \$request_body';
server {
    listen 127.0.0.1:%%PORT_T%% ssl;
    ssl_certificate $certs->{server_crt};
    ssl_certificate_key $certs->{server_key};
    client_body_buffer_size 64k;
    location /tls {
        access_log %%PREFIX%%/logs/tls.log hook;
        proxy_pass http://127.0.0.1:%%PORT%%/ok;
    }
}
server {
    listen 127.0.0.1:%%PORT%%;
    client_body_buffer_size 64k;
    location /json {
        access_log %%PREFIX%%/logs/json.log hook;
        proxy_pass http://127.0.0.1:%%PORT%%/ok;
    }
    location /slack {
        access_log %%PREFIX%%/logs/slack.log hook;
        proxy_pass http://127.0.0.1:%%PORT%%/ok;
    }
    location /other {
        access_log %%PREFIX%%/logs/other.log hook;
        proxy_pass http://127.0.0.1:%%PORT%%/ok;
    }
    location /q {
        access_log %%PREFIX%%/logs/q.log hook;
        proxy_pass http://127.0.0.1:%%PORT%%/ok;
    }
    location /ok { access_log off; return 200; }
}
EOF
my $rp = $recv->port;
my $rpt = $recv->port('PORT_T');
my $decisions = 'events=start,advance,promote,rollback,waiting,approved';

sub node_conf {
    my ($id) = @_;
    return <<"EOF";
canary_zone 1m;
canary_redis 127.0.0.1:$rport;
canary_node_id $id;
canary_webhook http://hook:secret\@127.0.0.1:$rp/json?token=secret
               format=json timeout=2s $decisions;
canary_webhook http://127.0.0.1:$rp/slack format=slack $decisions;
canary_webhook https://localhost:$rpt/tls ca=$certs->{ca} events=promote;
canary_webhook http://127.0.0.1:$rp/q queue=2 events=start,advance,promote;
canary_webhook http://127.0.0.1:$rp/other
               events=start,approve,approved,abort,operator,restored,patch;
canary_webhook https://localhost:$rpt/tls ca=$certs->{other_ca}
               events=promote;

upstream stable_up { server 127.0.0.1:%%PORT_S%%; }
upstream canary_up { server 127.0.0.1:%%PORT_C%%; }

canary_rollout hooks {
    key \$arg_u;
    stable stable_up;
    canary canary_up;
    auto steps=10,50,100 interval=1s max_error_rate=5% min_requests=10;
}

canary_rollout gated {
    key \$arg_u;
    stable stable_up;
    canary canary_up;
    auto steps=10,50,100 interval=1s max_error_rate=5% min_requests=10
         approve=50;
}

canary_rollout down {
    key \$arg_u;
    stable stable_up;
    canary canary_up;
    auto steps=10,50,100 interval=1s max_error_rate=5% min_requests=10;
}

server {
    listen 127.0.0.1:%%PORT%%;
    location /hooks { canary hooks; proxy_pass http://\$canary_upstream; }
    location /down { canary down; proxy_pass http://\$canary_upstream; }
    location /gated { canary gated; proxy_pass http://\$canary_upstream; }
    location /canary/api/ { canary_api; canary_api_actor ci-\$arg_who; }
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
}

my $na = start_nginx(node_conf('node-a'));
my $nb = start_nginx(node_conf('node-b'));

my $user = 0;

# traffic on both nodes until cond() holds; the latency of each request

sub drive {
    my ($cond, $timeout, $path, $lat) = @_;
    my $t0 = time;
    while (time - $t0 < $timeout) {
        return 1 if $cond->();
        for my $ng ($na, $nb) {
            for (1 .. 20) {
                my $t = time;
                http_get($ng->port, "$path?u=" . $user++);
                push @$lat, time - $t if $lat;
            }
        }
        sleep 0.05;
    }
    return $cond->();
}

sub field { $r->cli('HGET', "canary:rollout:$_[0]", $_[1]) }

# the bodies received, decoded, for one rollout

sub received {
    my ($format, $rollout) = @_;
    my @out;
    for my $line (split /\n/,
                  CanaryTest::read_file($recv->prefix . "/logs/$format.log"))
    {
        my ($type, $body) = split / /, $line, 2;
        my $j = eval { JSON::PP::decode_json($body) };
        next unless $j;
        $j->{_type} = $type;
        next if $format =~ /^(?:json|q|other)$/
                && $j->{rollout} ne $rollout;
        next if $format eq 'slack' && $j->{text} !~ /^canary "\Q$rollout\E" /;
        push @out, $j;
    }
    return @out;
}

sub decided {
    grep { $_->{event} =~ /^(?:start|advance|promote|rollback|waiting|approved)$/ }
        history_of($r, "canary:rollout:$_[0]");
}

sub p99 {
    my @s = sort { $a <=> $b } @_;
    return @s ? $s[int(0.99 * $#s)] * 1000 : 0;
}

ok(defined wait_until(sub { $r->cli('GET', 'canary:leader') =~ /^node-/ },
                      10), 'a node holds the lease');


# 0. bad directives fail nginx -t, naming file and line

for my $case (
    ['ftp://127.0.0.1/', qr/invalid canary_webhook URL: it must begin with http/],
    ['http://127.0.0.1/ format=xml',
     qr/invalid canary_webhook parameter "format=xml"/],
    ['http://127.0.0.1/ timeout=0', qr/the timeout must be above 0/],
    ['http://127.0.0.1/ timeout=61s', qr/the timeout must be above 0/],
    ['http://127.0.0.1/ events=start,deploy',
     qr/unknown event "deploy"/],
    ['http://127.0.0.1/ events=', qr/invalid canary_webhook parameter/],
    ['http://127.0.0.1/ queue=0', qr/the queue must be 1\.\.10000 events/],
    ['http://127.0.0.1/ queue=10001', qr/the queue must be 1\.\.10000/],
) {
    my ($args, $msg) = @$case;
    my ($rc, $out) = nginx_t("canary_webhook $args;\n"
                             . "server { listen 127.0.0.1:%%PORT%%; }");
    isnt($rc, 0, "canary_webhook $args: nginx -t fails");
    like($out, qr/$msg.* in \S+nginx\.conf:\d+/,
         "canary_webhook $args: the reason and the line") or diag $out;
}
{
    my ($rc, $out) = nginx_t("canary_webhook http://127.0.0.1/ queue=10000 "
                             . "timeout=60s format=slack events=rollback;\n"
                             . "server { listen 127.0.0.1:%%PORT%%; }");
    is($rc, 0, 'canary_webhook at its limits: nginx -t passes') or diag $out;
}


# 1. a whole ramp, in both formats, from the node that decided

{
    $r->cli('HSET', 'canary:rollout:hooks', 'state', 'progressing');
    ok(drive(sub { field('hooks', 'state') eq 'promoted' }, 20, '/hooks'),
       'the ramp is promoted');

    my @h = decided('hooks');
    is_deeply([map { $_->{event} } @h], [qw(start advance promote)],
              'history: start, advance, promote');

    ok(defined wait_until(sub { received('slack', 'hooks') >= 3 }, 5),
       'the receiver has the events');

    my @json = received('json', 'hooks');
    is_deeply([map { $_->{event} } @json], [qw(start advance promote)],
              'JSON webhook: the whole ramp, in order, each once')
        or diag explain \@json;
    is_deeply([map { $_->{node} } @json], [map { $_->{node} } @h],
              'each sent by the node that made it');
    is_deeply([map { $_->{percent} } @json], [10, 50, 100],
              'JSON: the percents');
    is_deeply([map { $_->{old_percent} } @json], [undef, 10, 50],
              'JSON: the percents before (none before the start)');
    is($json[1]{state}, 'progressing', 'JSON: the state');
    like($json[1]{reason}, qr/^passed: /, 'JSON: the reason');
    is($json[1]{_type}, 'application/json', 'Content-Type: application/json');
    note 'json: ' . JSON::PP->new->canonical->encode($json[1]);

    my @slack = received('slack', 'hooks');
    is(scalar @slack, 3, 'Slack webhook: three events');
    like($slack[0]{text}, qr/^canary "hooks" start: - -> 10%, progressing, step 1 of 3, by node-[ab]: /,
         'Slack: the start');
    like($slack[1]{text}, qr/^canary "hooks" advance: 10% -> 50%, progressing, step 2 of 3, by node-[ab]: passed: /,
         'Slack: the advance');
    like($slack[2]{text}, qr/^canary "hooks" promote: 50% -> 100%, promoted, step 3 of 3/,
         'Slack: the promotion');
    note "slack: $_->{text}" for @slack;

    ok(defined wait_until(sub {
           CanaryTest::read_file($recv->prefix . '/logs/tls.log')
               =~ /"event":"promote"/ }, 5),
       'https webhook against the test CA: received');
    my $tls = CanaryTest::read_file($recv->prefix . '/logs/tls.log');
    is(() = $tls =~ /"rollout":"hooks"/g, 1,
       'once: the webhook that trusts another CA never got through');
    ok(defined wait_until(sub {
           ($na->error_log . $nb->error_log)
               =~ /\[warn\].*canary webhook: https:\/\/localhost:$rpt\/tls failed: SSL certificate problem/ }, 5),
       'the untrusted certificate is logged');

    unlike($na->error_log . $nb->error_log, qr/secret/,
           'the URL\'s userinfo and query are in no log line');
}


# 2. the receiver down while the ramp goes on: the events come after

{
    my (@lat_up, @lat_down);
    drive(sub { 0 }, 1, '/down', \@lat_up);

    $recv->stop;
    my $down_at = time;
    $r->cli('HSET', 'canary:rollout:down', 'state', 'progressing');
    ok(drive(sub { field('down', 'state') eq 'promoted' }, 20, '/down',
             \@lat_down), 'the ramp goes on with the receiver down');
    drive(sub { time - $down_at > 10 }, 12, '/down', \@lat_down);
    is(scalar received('json', 'down'), 0, 'nothing received meanwhile');
    like($na->error_log . $nb->error_log,
         qr/\[warn\].*canary webhook: http:\/\/127\.0\.0\.1:$rp\/json failed: .* on the "start" event \(attempt 1 of 5\), again in 1000ms/,
         'each failed attempt is logged');

    $recv->start;
    note sprintf 'receiver back after %.1f s', time - $down_at;

    ok(defined wait_until(sub { received('slack', 'down') >= 3 }, 15),
       'the queued events arrive once it is back');
    is_deeply([map { $_->{event} } received('json', 'down')],
              [qw(start advance promote)], 'all of them, in order');

    # queue=2: the third event found two queued and was dropped
    ok(defined wait_until(sub { received('q', 'down') >= 2 }, 5),
       'queue=2: two events kept');
    is_deeply([map { $_->{event} } received('q', 'down')], [qw(start advance)],
              'queue=2: the first two, the third dropped');
    like($na->error_log . $nb->error_log,
         qr/\[error\].*canary webhook: http:\/\/127\.0\.0\.1:$rp\/q has 2 events queued, the "promote" event is dropped/,
         'the dropped event is logged');

    note sprintf 'routing p99 over %d requests: %.2f ms with the receiver '
        . 'up, %.2f ms with it down (%d requests)', scalar @lat_up,
        p99(@lat_up), p99(@lat_down), scalar @lat_down;
}


# 3. the events no controller decides, each from the node that made it:
#    the control API's writes, an operator's change, a restore

my $http = HTTP::Tiny->new(timeout => 10);

sub api_post {
    my ($ng, $path, $who) = @_;
    my $res = $http->request('POST', 'http://127.0.0.1:' . $ng->port
                             . "/canary/api/rollouts/$path?who=$who",
                             { headers => { 'Content-Type'
                                            => 'application/json' },
                               content => '{}' });
    note "POST $path: $res->{status} $res->{content}"
        if $res->{status} != 200;
    return $res->{status};
}

sub other { grep { $_->{rollout} eq $_[0] } received('other', $_[0]) }

sub wait_other {
    my ($rollout, $event, $n) = @_;
    return defined wait_until(sub {
        (grep { $_->{event} eq $event } other($rollout)) >= ($n // 1) }, 10);
}

{
    is(api_post($nb, 'gated/start', 'bob'), 200,
       'POST start through node-b\'s API');
    ok(drive(sub { field('gated', 'state') eq 'waiting' }, 20, '/gated'),
       'the rollout waits at its gate');
    ok(wait_other('gated', 'start', 2), 'both starts sent: the API\'s and '
       . 'the controller\'s');

    is(api_post($na, 'hooks/approve', 'alice'), 409,
       'POST approve of a rollout that waits at no gate: 409');
    is(api_post($na, 'gated/approve', 'alice'), 200,
       'POST approve through node-a\'s API');
    ok(defined wait_until(sub { field('gated', 'percent') eq '50' }, 5),
       'the step awaited is entered') or diag explain [history_of($r,
       'canary:rollout:gated')];
    ok(wait_other('gated', 'approved'), 'the approval and its use sent');

    $r->cli('HSET', 'canary:rollout:gated', 'state', 'paused');
    ok(wait_other('gated', 'operator'), 'the operator\'s change sent');

    is(api_post($nb, 'gated/abort', 'bob'), 200,
       'POST abort through node-b\'s API');
    ok(wait_other('gated', 'abort'), 'the abort sent');

    my @o = other('gated');
    my %by = map { ("$_->{event}/" . ($_->{source} // '')) => $_ } @o;
    is_deeply([map { "$_->{event}/" . ($_->{source} // '') } @o],
              [qw(start/api start/ approve/api approved/ operator/ abort/api)],
              'every event, in order, each once') or diag explain \@o;
    note 'api: ' . JSON::PP->new->canonical->encode($_) for @o;

    is($by{'start/api'}{node}, 'node-b', 'the API\'s start: from node-b');
    is($by{'start/api'}{actor}, 'ci-bob', 'with its actor');
    is($by{'approve/api'}{node}, 'node-a', 'the approval: from node-a');
    is($by{'approve/api'}{fields}{approve}, '50',
       'the approval names the step awaited');
    is($by{'abort/api'}{node}, 'node-b', 'the abort: from node-b');
    is($by{'abort/api'}{state}, 'rolled_back', 'the abort: its state');
    is($by{'abort/api'}{percent}, 0, 'the abort: its percent');

    my %hist = map { ($_->{event} => $_) } history_of($r,
                                                     'canary:rollout:gated');
    is($by{'approved/'}{node}, $hist{approved}{node},
       'the approval used: from the node the history names');
    is($by{'operator/'}{node}, $r->cli('GET', 'canary:leader'),
       'the operator\'s change: from the leader');
    is($by{'operator/'}{state}, 'paused', 'the operator\'s change: the state');
    like($by{'operator/'}{reason}, qr/^changed by an operator: state progressing -> paused$/,
         'the operator\'s change: the reason');

    # a PATCH larger than an event holds (2048 bytes): its fields cut
    # short, the JSON whole
    my %seg = map { (('"x' x 300) . $_ => 10) } 1 .. 7;
    my $res = $http->request('PATCH', 'http://127.0.0.1:' . $na->port
                             . '/canary/api/rollouts/hooks?who=carol',
                             { headers => { 'Content-Type'
                                            => 'application/json' },
                               content => JSON::PP::encode_json(
                                              { segments => \%seg }) });
    is($res->{status}, 200, 'a PATCH of 7 segments of 600 bytes each');
    ok(defined wait_until(sub {
           grep { $_->{event} eq 'patch' } received('other', 'hooks') }, 10),
       'its event is sent, as JSON that parses');
    my ($patch) = grep { $_->{event} eq 'patch' } received('other', 'hooks');
    is($patch->{actor}, 'ci-carol', 'the PATCH\'s actor');
    my $nf = scalar keys %{ $patch->{fields} // {} };
    ok($nf >= 1 && $nf < 7, "the fields that fit ($nf of 7)");

    my @slack = map { $_->{text} } grep { $_->{text} =~ /^canary "gated" /}
                received('slack', 'gated');
    note "slack: $_" for @slack;

    is($http->request('GET', 'http://127.0.0.1:' . $na->port
                      . '/canary/api/rollouts/gated')->{status}, 200,
       'the API still answers');
}


# 4. Redis restarted empty: each rollout restored once, by the node that
#    wrote it back, sent by that node

{
    $r->stop;
    $r->start;
    ok(defined wait_until(sub { field('gated', 'state') eq 'rolled_back'
                                && field('hooks', 'state') eq 'promoted' },
                          20), 'the rollouts are written back');
    ok(defined wait_until(sub {
           (grep { $_->{event} eq 'restored' } received('other', 'hooks'),
                  received('other', 'gated')) >= 2 }, 10),
       'the restored events are sent');
    for my $ro (qw(hooks gated)) {
        my @ev = grep { $_->{event} eq 'restored' } other($ro);
        my ($h) = grep { $_->{event} eq 'restored' }
                  history_of($r, "canary:rollout:$ro");
        is(scalar @ev, 1, "\"$ro\" restored: sent once");
        ok($h, "\"$ro\" restored: a history entry");
        is($ev[0]{node}, $h->{node}, "\"$ro\" restored: sent by the node "
           . 'that wrote it back');
        is($ev[0]{from}, 'zone', "\"$ro\" restored: from the zone");
    }
}


done();
