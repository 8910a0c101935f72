#!/usr/bin/perl

# The HTML dashboard in a real browser: headless chromium, driven over the
# DevTools protocol on a pipe (--remote-debugging-pipe), loads
# /canary?format=html from the test nginx, waits for its first poll, then
# traffic with a known mix is sent and, once the page has polled again,
# the rollout names, percents, states and per-variant numbers it shows are
# compared with ?format=json: totals exactly, the error rate and p50/p99
# as computed from the histogram.  A rollout and a segment whose names
# hold <script> and quotes show as text, run nothing, and stay valid JSON.
# A rollout with three arms shows a box per arm with its own numbers and
# its allocation (weight, off).  A screenshot is saved in the test's temp
# folder.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use File::Temp qw(tempdir);
use IO::Select;
use JSON::PP;
use MIME::Base64 qw(decode_base64);
use POSIX ();
use Test::More;
use Time::HiRes qw(sleep time);
use CanaryTest;
use CanarySync qw(wait_until);

need_module();

my ($chromium) = grep { -x } map { "$_/chromium" } split /:/, $ENV{PATH};
$chromium ||= (grep { -x } qw(/usr/bin/chromium /usr/bin/chromium-browser))[0];

unless ($chromium) {
    diag 'chromium is missing: apt-get install chromium (make test does)';
    plan skip_all => 'chromium is not installed, the dashboard is untested';
}


# --- a minimal DevTools protocol client over --remote-debugging-pipe ---

package Cdp;

use Fcntl ();
use IO::Select;
use JSON::PP;
use POSIX ();
use Time::HiRes qw(time);

sub new {
    my ($class, $bin, $profile) = @_;

    pipe(my $cmd_r, my $cmd_w) or die "pipe: $!";
    pipe(my $res_r, my $res_w) or die "pipe: $!";

    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        # the pipes to 3 and 4, where chromium looks for them: first to
        # new descriptors above 4 (F_DUPFD), so that neither dup2 can
        # overwrite the other pipe whatever numbers pipe() gave, then
        # down; dup2 clears close-on-exec on 3 and 4
        my $in  = fcntl($cmd_r, Fcntl::F_DUPFD(), 5) // POSIX::_exit(126);
        my $out = fcntl($res_w, Fcntl::F_DUPFD(), 5) // POSIX::_exit(126);
        POSIX::dup2($in, 3) // POSIX::_exit(126);
        POSIX::dup2($out, 4) // POSIX::_exit(126);
        POSIX::close($_) for $in, $out;
        open STDOUT, '>>', "$profile.log";
        open STDERR, '>>', "$profile.log";
        exec $bin, '--headless', '--no-sandbox', '--disable-gpu',
            '--disable-quic', '--no-first-run',
            '--disable-background-networking', '--disable-component-update',
            '--disable-sync', "--user-data-dir=$profile",
            '--remote-debugging-pipe', '--window-size=1280,1000',
            'about:blank'
            or POSIX::_exit(127);
    }

    close $cmd_r;
    close $res_w;
    binmode $cmd_w;
    binmode $res_r;

    my $self = bless { pid => $pid, w => $cmd_w, r => $res_r, id => 0,
                       log => "$profile.log",
                       buf => '', json => JSON::PP->new->utf8 }, $class;
    return $self;
}

# send a command (in a session if given), wait for its answer

sub call {
    my ($self, $method, $params, $session, $timeout) = @_;
    my $id = ++$self->{id};
    my $msg = { id => $id, method => $method, params => $params // {} };
    $msg->{sessionId} = $session if $session;
    my $out = $self->{json}->encode($msg) . "\0";
    local $SIG{PIPE} = 'IGNORE';
    syswrite($self->{w}, $out) == length $out or die "cdp write: $!";

    my $end = time + ($timeout // 30);
    while (1) {
        while ((my $i = index $self->{buf}, "\0") >= 0) {
            my $text = substr $self->{buf}, 0, $i, '';
            substr $self->{buf}, 0, 1, '';
            my $m = $self->{json}->decode($text);
            next unless defined $m->{id} && $m->{id} == $id;
            die "cdp $method: $m->{error}{message}" if $m->{error};
            return $m->{result};
        }
        my $left = $end - time;
        die "cdp: no answer to $method" . $self->log_tail if $left <= 0;
        IO::Select->new($self->{r})->can_read($left) or next;
        my $n = sysread($self->{r}, $self->{buf}, 1 << 20,
                        length $self->{buf});
        die "cdp: chromium went away during $method" . $self->log_tail
            unless $n;
    }
}

# the end of chromium's own log, for a failure's message

sub log_tail {
    my ($self) = @_;
    open my $fh, '<', $self->{log} or return '';
    my @lines = <$fh>;
    splice @lines, 0, -20;
    return join '', "\nchromium's log ($self->{log}):\n", @lines;
}

sub close {
    my ($self) = @_;
    eval { $self->call('Browser.close', {}, undef, 5) };
    my $end = time + 5;
    while (time < $end) {
        return if waitpid($self->{pid}, POSIX::WNOHANG()) == $self->{pid};
        select undef, undef, undef, 0.05;
    }
    kill 'KILL', $self->{pid};
    waitpid($self->{pid}, 0);
}

package main;


# --- nginx with two rollouts, one with a hostile name, and Redis for a
# hostile segment value ---

my $evil = q{<script>window.pwned=1</script><img/src=x/onerror=window.pwned=2>'};
my $evil_segment = q{<script>window.pwned=3</script>"US"'};

# the page is embedded in C with the hashes of its style and script in the
# Content-Security-Policy: a header not made again from the page is a page
# the browser refuses to run
{
    my $src = "$FindBin::Bin/../src";
    my $made = `perl '$FindBin::Bin/../tools/dashboard2c.pl' '$src/ngx_http_canary_dashboard.html'`;
    ok($made eq CanaryTest::read_file("$src/ngx_http_canary_dashboard.h"),
       'src/ngx_http_canary_dashboard.h is made from the page as it is '
       . '(make src/ngx_http_canary_dashboard.h)');
}

my $redis = start_redis();

my $conf = <<'EOF';
variables_hash_bucket_size 256;     # $canary_variant_<the long name>

upstream app_stable { server 127.0.0.1:%%PORT_B%%; }
upstream app_canary { server 127.0.0.1:%%PORT_B%%; }

server {
    listen 127.0.0.1:%%PORT_B%%;
    location ~ ok$   { return 200 "ok\n"; }
    location ~ 500$  { return 500; }
}

canary_zone 1m;
canary_redis 127.0.0.1:%%REDIS%%;
canary_sync_interval 200ms;

canary_rollout checkout {
    key      $http_x_user_id;
    stable   app_stable;
    canary   app_canary;
    percent  12.5;
    override $http_x_canary;
    segment  $http_x_country;
}

canary_rollout home {
    key      $http_x_user_id;
    stable   app_stable;
    variant  blue  app_canary weight=1;
    variant  green app_canary weight=1;
    variant  red   app_canary weight=2;
    percent  40;
    override $http_x_canary;
}

canary_rollout "%%EVIL%%" {
    key      $http_x_user_id;
    stable   app_stable;
    canary   app_canary;
    percent  3;
}

canary_rollout dark {
    key      $http_x_user_id;
    stable   app_stable;
    canary   app_canary;
    percent  0;
    shadow   100;
}

server {
    listen 127.0.0.1:%%PORT%%;

    location / {
        canary checkout;
        proxy_pass http://$canary_upstream;
    }

    location /h/ {
        canary home;
        proxy_pass http://$canary_upstream;
    }

    location /dark/ {
        canary dark;
        canary_shadow /_dark;
        proxy_pass http://$canary_upstream;
    }

    location /_dark {
        internal;
        proxy_pass http://app_canary/e500;
    }

    location = /canary { canary_status; }
    location = /favicon.ico { return 204; }
}
EOF

$redis->cli('HSET', 'canary:rollout:checkout', 'percent', '12.5',
            "percent:$evil_segment", '50');
$redis->cli('HSET', 'canary:rollout:home', 'weight:red', '3',
            'arm:green', 'off');

my $ng = start_nginx($conf, vars => { EVIL => $evil, REDIS => $redis->port });
my $port = $ng->port;

sub status_json {
    my (undef, undef, $body) = http_get($port, '/canary?format=json');
    return decode_json($body);
}

# the segment arrives through the sync

my $j;
my $end = time + 10;
while (time < $end) {
    $j = status_json();
    last if @{ $j->{rollouts}[0]{segments} };
    sleep 0.1;
}
is_deeply($j->{rollouts}[0]{segments}, [{ value => $evil_segment, percent => 50 }],
          'the hostile segment value is intact in JSON');
cmp_ok($j->{rollouts}[0]{last_sync}, '>', 0, 'JSON: the rollout\'s last sync');

my (undef, undef, $raw_html) = http_get($port, '/canary?format=html');
ok(index($raw_html, '&lt;script&gt;window.pwned=1&lt;/script&gt;') >= 0,
   'raw HTML: the rollout name escaped');
ok(index($raw_html, '&lt;script&gt;window.pwned=3&lt;/script&gt;&quot;US&quot;') >= 0,
   'raw HTML: the segment escaped');
ok($raw_html !~ /<script>window\.pwned/, 'raw HTML: no injected script');
my ($home_row) = $raw_html =~ m{(<tr><td class="name">home</td>.*?</tr>)};
is(scalar(() = ($home_row // '') =~ /<td/g), 11,
   'raw HTML: the rollout with arms fills the table\'s 11 columns');

my (undef, undef, $prom) = http_get($port, '/canary?format=prometheus');
ok(index($prom, 'segment="<script>window.pwned=3</script>\"US\"\'"} 50') >= 0,
   'Prometheus: the segment label escaped');


# --- the browser ---

my $tmp = tempdir('canary-chromium-XXXXXX', TMPDIR => 1,
                  CLEANUP => !$ENV{CANARY_KEEP});
my $cdp = Cdp->new($chromium, "$tmp/profile");

my $target = $cdp->call('Target.createTarget', { url => 'about:blank' });
my $sid = $cdp->call('Target.attachToTarget',
                     { targetId => $target->{targetId}, flatten => JSON::PP::true })
          ->{sessionId};

$cdp->call('Emulation.setDeviceMetricsOverride',
           { width => 1280, height => 1000, deviceScaleFactor => 1,
             mobile => JSON::PP::false }, $sid);
$cdp->call('Page.enable', {}, $sid);
$cdp->call('Page.navigate',
           { url => "http://127.0.0.1:$port/canary?format=html" }, $sid);

sub js {
    my ($expr) = @_;
    my $r = $cdp->call('Runtime.evaluate',
                       { expression => $expr,
                         returnByValue => JSON::PP::true }, $sid);
    die "js: $r->{exceptionDetails}{text}: $expr" if $r->{exceptionDetails};
    return $r->{result}{value};
}

sub polls {
    return js(q{+(document.body && document.body.getAttribute('data-polls')) || 0});
}

sub wait_polls {
    my ($n) = @_;
    my $end = time + 20;
    while (time < $end) {
        my $p = eval { polls() } // 0;
        return $p if $p >= $n;
        sleep 0.1;
    }
    return eval { polls() } // 0;
}

my $p0 = wait_polls(1);
cmp_ok($p0, '>=', 1, 'the dashboard polled ?format=json');


# traffic with a known mix after the first poll: stable 40 fast 200s,
# canary 30 200s and 10 500s

my @reqs = ((map { ['/ok', 'X-Canary' => 'never', 'X-User-Id' => "s$_"] } 1 .. 40),
            (map { ['/ok', 'X-Canary' => 'always', 'X-User-Id' => "c$_"] } 1 .. 30),
            (map { ['/e500', 'X-Canary' => 'always', 'X-User-Id' => "e$_"] } 1 .. 10),
            (map { ['/dark/ok', 'X-User-Id' => "d$_"] } 1 .. 6));
# and for the arms: blue 5, green 6 (2 of them 500), red 7, stable 3

push @reqs, (map { ['/h/ok', 'X-Canary' => 'blue', 'X-User-Id' => "b$_"] } 1 .. 5),
            (map { ['/h/ok', 'X-Canary' => 'green', 'X-User-Id' => "g$_"] } 1 .. 4),
            (map { ['/h/e500', 'X-Canary' => 'green', 'X-User-Id' => "G$_"] } 1 .. 2),
            (map { ['/h/ok', 'X-Canary' => 'red', 'X-User-Id' => "r$_"] } 1 .. 7),
            (map { ['/h/ok', 'X-Canary' => 'stable', 'X-User-Id' => "t$_"] } 1 .. 3);
my @res = http_client($port)->pipeline(@reqs);
is(scalar(grep { $_->[0] == 200 } @res), 70 + 6 + 19,
   '95 requests answered 200 (6 of them shadowed)');
is(scalar(grep { $_->[0] == 500 } @res), 12, '12 requests answered 500');

# every request counted, then two more polls, so the page has them all

$end = time + 10;
while (time < $end) {
    $j = status_json();
    my $c = $j->{rollouts}[0]{variants};
    my $h = $j->{rollouts}[1]{variants};
    my $d = $j->{rollouts}[3]{variants};
    last if $c->{stable}{requests} + $c->{canary}{requests} >= 80
            && $h->{red}{requests} + $h->{green}{requests}
               + $h->{blue}{requests} + $h->{stable}{requests} >= 21
            && $d->{shadow} && $d->{shadow}{requests} >= 6;
    sleep 0.05;
}
my $p1 = polls();
cmp_ok(wait_polls($p1 + 2), '>=', $p1 + 2, 'the dashboard polled again');

$j = status_json();

my $shown = js(<<'JS');
(function () {
  var out = [];
  document.querySelectorAll('section.rollout').forEach(function (s) {
    var r = { name: s.querySelector('.name').textContent,
              percent: s.querySelector('.percent').textContent,
              segments: s.querySelector('.segments').textContent,
              state: s.querySelector('.tag').textContent, v: {} };
    s.querySelectorAll('.variant').forEach(function (v) {
      var x = {};
      v.querySelectorAll('[data-field]').forEach(function (f) {
        x[f.getAttribute('data-field')] = { text: f.textContent,
                                            value: f.getAttribute('data-value') };
      });
      x.points = v.querySelector('polyline.rate').getAttribute('points') || '';
      x.arm = v.querySelector('.arm').textContent;
      x.off = v.classList.contains('off');
      x.colour = getComputedStyle(v).borderTopColor;
      r.v[v.getAttribute('data-variant')] = x;
    });
    out.push(r);
  });
  return { rollouts: out, pwned: window.pwned === undefined ? null : window.pwned,
           error: document.getElementById('error').textContent };
})()
JS

is($shown->{pwned}, undef, 'no injected script or handler ran');
is($shown->{error}, '', 'no poll error shown');

is_deeply([map { $_->{name} } @{ $shown->{rollouts} }],
          [map { $_->{name} } @{ $j->{rollouts} }],
          'the rollout names shown are the JSON\'s, in order, as text');
is_deeply([map { $_->{percent} } @{ $shown->{rollouts} }],
          [map { "$_->{percent}%" } @{ $j->{rollouts} }],
          'the percents shown are the JSON\'s');
is_deeply([map { $_->{state} } @{ $shown->{rollouts} }],
          [map { "state $_->{state}" } @{ $j->{rollouts} }], 'the states');
like($shown->{rollouts}[0]{segments}, qr/\Q$evil_segment\E 50%/,
     'the hostile segment shows as text');

# the same quantile as the page and as histogram_quantile()

sub quantile {
    my ($q, $hist, $bounds) = @_;
    my $total = 0;
    $total += $_ for @$hist;
    return undef unless $total;
    my ($rank, $cum) = ($q * $total, 0);
    for my $i (0 .. $#$hist) {
        if ($hist->[$i] > 0 && $cum + $hist->[$i] >= $rank) {
            return 'inf' if $i >= @$bounds;
            my $lower = $i ? $bounds->[$i - 1] : 0;
            return $lower + ($bounds->[$i] - $lower) * ($rank - $cum) / $hist->[$i];
        }
        $cum += $hist->[$i];
    }
    return 'inf';
}

my $c = $j->{rollouts}[0]{variants};
my $s = $shown->{rollouts}[0]{v};

for my $v (qw(stable canary)) {
    is($s->{$v}{requests}{text}, $c->{$v}{requests}, "$v: requests shown");
    is($s->{$v}{'5xx'}{text}, $c->{$v}{responses}{'5xx'}, "$v: 5xx shown");
    is($s->{$v}{upstream_errors}{text}, $c->{$v}{upstream_errors},
       "$v: upstream errors shown");

    # all of the traffic fell between the first poll and the last one,
    # within the 10 s window: the window's figures are the totals'
    is($c->{$v}{errors}, $c->{$v}{responses}{'5xx'},
       "$v: JSON errors are the 5xx (no upstream error here)");
    my $want_err = 100 * $c->{$v}{errors} / $c->{$v}{requests};
    ok(abs($s->{$v}{errors}{value} - $want_err) < 1e-9,
       "$v: error rate $s->{$v}{errors}{text} is errors / requests");
    for my $q ([p50 => 0.5], [p99 => 0.99]) {
        my $want = quantile($q->[1], $c->{$v}{request_time_histogram},
                            $j->{histogram_bounds_ms});
        ok(abs($s->{$v}{ $q->[0] }{value} - $want) < 1e-9,
           "$v: $q->[0] $s->{$v}{$q->[0]}{text} from the histogram ($want)");
    }
    cmp_ok($s->{$v}{rate}{value}, '>', 0, "$v: a request rate shown");
    like($s->{$v}{points}, qr/\d,\d/, "$v: the rate chart has points");
}
is($c->{stable}{requests}, 40, 'JSON: 40 stable');
is($c->{canary}{requests}, 40, 'JSON: 40 canary');
is($s->{canary}{errors}{text}, '25.00%', 'canary: 25.00% errors');
is($s->{stable}{errors}{text}, '0.00%', 'stable: 0.00% errors');

# the rollout with three arms: a box per variant, in order, each with its
# own figures and allocation

my $hj = $j->{rollouts}[1]{variants};
my $hs = $shown->{rollouts}[1];
is($hs->{name}, 'home', 'the rollout with arms');
is_deeply([sort keys %{ $hs->{v} }], [qw(blue green red stable)],
          'a box for stable and for each arm');
my %want = (stable => [3, 0], blue => [5, 0], green => [6, 2], red => [7, 0]);
for my $v (sort keys %want) {
    is($hj->{$v}{requests}, $want{$v}[0], "JSON: home $v requests");
    is($hs->{v}{$v}{requests}{text}, $want{$v}[0], "home $v: requests shown");
    is($hs->{v}{$v}{'5xx'}{text}, $want{$v}[1], "home $v: 5xx shown");
    cmp_ok($hs->{v}{$v}{rate}{value}, '>', 0, "home $v: a request rate");
}
is($hs->{v}{green}{errors}{text}, '33.33%', 'home green: 33.33% errors');
is($hs->{v}{blue}{arm}, 'weight 1', 'blue: weight 1');
is($hs->{v}{green}{arm}, 'weight 1, off', 'green: weight 1, off');
ok($hs->{v}{green}{off} && !$hs->{v}{red}{off}, 'green shown off');
is($hs->{v}{red}{arm}, 'weight 3', 'red: weight 3 from Redis');
my %colours = map { $hs->{v}{$_}{colour} => 1 } keys %{ $hs->{v} };
is(scalar keys %colours, 4, 'four colours for four variants');

my $e = $shown->{rollouts}[2];
is($e->{name}, $evil, 'the hostile rollout name shows as text');
is($e->{v}{stable}{requests}{text}, '0', 'its counters');
ok(!exists $e->{v}{shadow}, 'no "shadow" box for a rollout without one');

# the shadow as a third variant, its 500s from the canary

my $dk = $shown->{rollouts}[3];
my $dj = $j->{rollouts}[3];
is($dk->{name}, 'dark', 'the shadowed rollout');
is_deeply([sort keys %{ $dk->{v} }], [qw(canary shadow stable)],
          'three boxes: stable, canary, shadow');
is_deeply([map { $dk->{v}{shadow}{$_}{text} } qw(requests 5xx)],
          [$dj->{variants}{shadow}{requests},
           $dj->{variants}{shadow}{responses}{'5xx'}],
          'shadow: requests and 5xx shown as in JSON');
is($dj->{variants}{shadow}{requests}, 6, 'JSON: 6 shadows');
is($dk->{v}{shadow}{errors}{text}, '100.00%', 'shadow: 100.00% errors');
is($dk->{v}{stable}{requests}{text}, '6', 'the users\' 6 stable requests');


# a screenshot in the test's temp folder

my $png = $cdp->call('Page.captureScreenshot', { format => 'png' }, $sid);
my $file = $ng->prefix . '/dashboard.png';
open my $fh, '>:raw', $file or die "$file: $!";
print $fh decode_base64($png->{data});
close $fh;
ok(-s $file > 1000, "screenshot saved: $file");
diag "screenshot: $file" if $ENV{CANARY_KEEP};
if ($ENV{CANARY_SCREENSHOT}) {
    system('cp', $file, $ENV{CANARY_SCREENSHOT});
}


# --- the dashboard that acts: canary_status api=, through canary_api ---

is(js(q{document.querySelectorAll('.acting').length}), 0,
   'without api= the page is read-only: no controls shown');

my $aconf = <<'EOF';
upstream app_stable { server 127.0.0.1:1; }
upstream app_canary { server 127.0.0.1:1; }

canary_zone 1m;
canary_redis 127.0.0.1:%%REDIS%%;

canary_rollout checkout {
    key     $http_x_user_id;
    stable  app_stable;
    canary  app_canary;
    percent 5;
}

canary_rollout ramp {
    key     $http_x_user_id;
    stable  app_stable;
    canary  app_canary;
    auto    steps=10,50,100 interval=1h max_error_rate=5%;
}

server {
    listen 127.0.0.1:%%PORT%%;
    location /canary/api/ { canary_api; canary_api_actor "dashboard"; }
    location = /canary { canary_status api=/canary/api/; }
    location = /favicon.ico { return 204; }
}
EOF

$redis->cli('FLUSHALL');
my $ang = start_nginx($aconf, vars => { REDIS => $redis->port });
my $aport = $ang->port;

sub api_json {
    my ($name) = @_;
    my (undef, undef, $b) = http_get($aport, "/canary/api/rollouts/$name");
    return decode_json($b);
}

my ($hst, $hh) = http_get($aport, '/canary?format=html');
my $csp = $hh->{'content-security-policy'} // '';
like($csp, qr/script-src 'sha256-[A-Za-z0-9+\/]{43}='/,
     'the dashboard\'s CSP allows its own script by its hash');
like($csp, qr/frame-ancestors 'none'/, 'and forbids framing');
unlike($csp, qr/unsafe-inline/, 'and any other inline script');
is($hh->{'x-frame-options'}, 'DENY', 'X-Frame-Options DENY');
is($hh->{'x-content-type-options'}, 'nosniff', 'nosniff');

$cdp->call('Page.navigate',
           { url => "http://127.0.0.1:$aport/canary?format=html" }, $sid);
sleep 0.5;
cmp_ok(wait_polls(1), '>=', 1,
       'the acting dashboard polled: its script runs under its CSP');
is(js(q{document.body.getAttribute('data-api')}), '/canary/api/',
   'the page knows the API');

sub in_card {
    my ($name, $code) = @_;
    return js("(function (c) { $code })(document.querySelector("
              . "'section[data-rollout=\"$name\"]'))");
}

sub click {
    my ($name, $action) = @_;
    in_card($name, "c.querySelector('button[data-action=$action]').click();"
                   . " return 1;");
}

sub wait_json {
    my ($name, $check) = @_;
    my $end = time + 15;
    while (time < $end) {
        my $o = api_json($name);
        return $o if $check->($o);
        sleep 0.1;
    }
    return api_json($name);
}

ok(in_card('ramp', q{return c.classList.contains('acting');}),
   'the rollouts get controls');
is(in_card('ramp', q{return c.querySelectorAll('.ladder span').length;}), 3,
   'the step ladder: three steps');
ok(in_card('checkout', q{return c.querySelector('button[data-action=pause]')
                         .offsetParent === null;}),
   'no auto: no action buttons');

click('ramp', 'start');
my $o = wait_json('ramp', sub { $_[0]{state} eq 'progressing' });
is($o->{state}, 'progressing', 'click start: the JSON says progressing');
wait_json('ramp', sub { ($_[0]{auto}{step} // 0) == 1 });
click('ramp', 'pause');
$o = wait_json('ramp', sub { $_[0]{state} eq 'paused' });
is($o->{state}, 'paused', 'click pause: the JSON says paused');

# approve (armed, then confirmed): a paused rollout waits at no gate;
# pause's answer shown first (the card shows the last action's answer
# whatever order they come in)
ok(defined wait_until(sub {
       in_card('ramp', q{return c.querySelector('.msg').textContent;})
           =~ /^pause: done/ }, 5),
   'pause: its answer is shown');
click('ramp', 'approve');
ok(defined wait_until(sub {
       in_card('ramp', q{return c.querySelector('button[data-action=approve]')
                         .textContent;}) eq 'confirm approve' }, 5),
   'approve asks to confirm');
click('ramp', 'approve');
ok(defined wait_until(sub {
       in_card('ramp', q{return c.querySelector('.msg')
                              .getAttribute('data-status');})
           eq '409' }, 5),
   'click approve: the API\'s 409 is shown');
like(in_card('ramp', q{return c.querySelector('.msg').textContent;}),
     qr/approve refused \(409\): the rollout waits at no gate/,
     'with its reason');

click('ramp', 'abort');
sleep 0.5;
is(api_json('ramp')->{state}, 'paused', 'abort clicked once: nothing yet');
ok(in_card('ramp', q{return c.querySelector('button[data-action=abort]')
                     .textContent === 'confirm abort';}),
   'the button asks to confirm');
click('ramp', 'abort');
$o = wait_json('ramp', sub { $_[0]{state} eq 'rolled_back' });
is($o->{state}, 'rolled_back', 'confirmed: rolled back');
is($o->{percent}, 0, 'abort: percent 0');

in_card('checkout', q{c.querySelector('input[data-field=percent]').value
                      = '25'; return 1;});
click('checkout', 'percent');
$o = wait_json('checkout', sub { $_[0]{percent} == 25 });
is($o->{percent}, 25, 'the percent field: 25');

my $hist_end = time + 10;
my $events = '';
while (time < $hist_end) {
    $events = in_card('ramp', q{return Array.prototype.map.call(
        c.querySelectorAll('.history li'),
        function (li) { return li.getAttribute('data-event'); }).join(',');});
    last if $events =~ /^abort,pause,start/;
    sleep 0.2;
}
like($events, qr/^abort,pause,start/, 'the history, newest first');
like(in_card('ramp', q{return c.querySelector('.history li').textContent;}),
     qr/abort by dashboard.*aborted by dashboard/,
     'with the actor and the reason');
like(in_card('ramp', q{return c.querySelector('.msg').textContent;}),
     qr/abort: done, state rolled_back/, 'the answer shown');

$cdp->close;

done();
