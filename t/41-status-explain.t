#!/usr/bin/perl

# canary_status: ?explain= gives the decision a key would get now (the
# same evaluation as the request path); bad requests get 400 with one
# line; names with <script> and quotes are escaped in every format;
# 1,000 rollouts render whole; the embedded dashboard header is what
# tools/dashboard2c.pl makes of the page.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP;
use Test::More;
use CanaryTest;

my $repo = "$FindBin::Bin/..";


# the committed header agrees with the page (no module needed)

{
    my $made = `perl '$repo/tools/dashboard2c.pl' '$repo/src/ngx_http_canary_dashboard.html'`;
    is($?, 0, 'tools/dashboard2c.pl runs');
    my $committed = CanaryTest::read_file("$repo/src/ngx_http_canary_dashboard.h");
    ok($made eq $committed,
       'src/ngx_http_canary_dashboard.h is generated from the page')
        or diag 'run: make src/ngx_http_canary_dashboard.h';
}

need_module();

my $evil = q{<script>alert('x')</script>&};

my $conf = <<'EOF';
upstream s { server 127.0.0.1:1; }
upstream c { server 127.0.0.1:2; }

canary_zone 1m;

canary_rollout checkout {
    key      $http_x_user_id;
    stable   s;
    canary   c;
    percent  12.5;
    override $http_x_canary;
    segment  $http_x_country;
}

canary_rollout search {
    key      $http_x_user_id;
    stable   s;
    canary   c;
    percent  50;
}

canary_rollout mobile {
    key      $http_x_user_id;
    stable   s;
    canary   c;
    percent  100;
    match    $http_user_agent ~*mobile;
    requires search;
}

canary_rollout "%%EVIL%%" {
    key      $http_x_user_id;
    stable   s;
    canary   c;
    percent  3;
}

server {
    listen 127.0.0.1:%%PORT%%;

    location = /v {
        canary checkout;
        return 200 "$canary_variant $canary_bucket $canary_reason\n";
    }

    location = /m {
        canary mobile;
        return 200 "$canary_variant $canary_bucket $canary_reason\n";
    }

    location = /canary { canary_status; }
}
EOF

my $ng = start_nginx($conf, vars => { EVIL => $evil });
my $port = $ng->port;

sub ex {
    my ($q, %h) = @_;
    my ($st, $hd, $body) = http_get($port, "/canary?explain=$q", %h);
    my $j = eval { decode_json($body) };
    return ($st, $j, $body, $hd);
}


# explain agrees with the request path, key by key

my @diff;
for my $k (map { "user-$_" } 1 .. 300) {
    my (undef, undef, $body) = http_get($port, '/v', 'X-User-Id' => $k);
    my ($v, $b, $reason) = split ' ', $body;
    my (undef, $j) = ex("checkout&key=$k");
    push @diff, $k unless $j && $j->{variant} eq $v && $j->{bucket} == $b
                          && $j->{reason} eq $reason;
}
ok(!@diff, 'explain equals the request path for 300 keys') or diag "@diff";

my ($st, $j) = ex('checkout&key=u42');
is($st, 200, 'explain: 200');
is($j->{bucket}, murmur3_32('checkout:u42') % 10000, 'explain: bucket');
is($j->{percent}, 12.5, 'explain: percent used');
is($j->{reason}, 'percent', 'explain: reason');
is($j->{rollout}, 'checkout', 'explain: rollout');
is($j->{key}, 'u42', 'explain: key');

($st, $j) = ex('checkout&key=u42&override=always');
is("$j->{variant} $j->{reason}", 'canary override', 'explain: override');
ok(!defined $j->{percent}, 'explain: no percent used after an override');

($st, $j) = ex('checkout&key=');
is("$j->{variant} $j->{reason}", 'stable no_key', 'explain: empty key');
ok(!defined $j->{bucket}, 'explain: no bucket without a key');

($st, $j) = ex('checkout&key=a+b%20c');
is($j->{key}, 'a b c', 'explain: the key is form-decoded');
is($j->{bucket}, murmur3_32('checkout:a b c') % 10000, 'explain: its bucket');

($st, $j) = ex('checkout&key=u1&segment=US');
is($j->{segment}, 'US', 'explain: segment echoed');
is($j->{reason}, 'percent', 'explain: a segment without a percent');

# match is evaluated on the status request itself; requires with the key

my $k = (grep { murmur3_32("search:$_") % 10000 < 5000 } map { "k$_" } 1 .. 50)[0];
my $ks = (grep { murmur3_32("search:$_") % 10000 >= 5000 } map { "k$_" } 1 .. 50)[0];

($st, $j) = ex("mobile&key=$k", 'User-Agent' => 'Mobile Safari');
is("$j->{variant} $j->{reason}", 'canary percent', 'explain: match and requires');
is($j->{match}, JSON::PP::true, 'explain: match true');
is_deeply($j->{requires},
          [{ rollout => 'search', variant => 'canary', reason => 'percent' }],
          'explain: requires listed');

($st, $j) = ex("mobile&key=$k", 'User-Agent' => 'curl');
is("$j->{variant} $j->{reason}", 'stable match', 'explain: no match');
is($j->{match}, JSON::PP::false, 'explain: match false');

($st, $j) = ex("mobile&key=$ks", 'User-Agent' => 'mobile');
is("$j->{variant} $j->{reason}", 'stable requires', 'explain: requires stable');

my (undef, undef, $body) = http_get($port, '/m', 'X-User-Id' => $ks,
                                    'User-Agent' => 'mobile');
is($body, "stable " . (murmur3_32("mobile:$ks") % 10000) . " requires\n",
   'the request path agrees');


# escaping: a hostile key and segment in explain stay valid JSON

my $raw = qq{a"b\\c</script><script>x</script>\x01\xff};
my $enc = join '', map { sprintf '%%%02X', ord } split //, $raw;
($st, $j, $body) = ex("checkout&key=$enc&segment=$enc");
is($st, 200, 'explain with a hostile key: 200');
ok($j, 'explain with a hostile key: valid JSON') or diag $body;
my $want = $raw =~ s/\xff/\x{fffd}/r;
is($j->{key}, $want, 'the key survives, invalid UTF-8 as U+FFFD');
is($j->{segment}, $want, 'the segment too');


# bad requests: 400 and one line

for my $c (
    ['/canary?format=xml', qr/^unknown format "xml"\n\z/],
    ['/canary?explain=nosuch&key=1', qr/^unknown rollout "nosuch"\n\z/],
    ['/canary?explain=checkout', qr/^explain needs a key\n\z/],
    ['/canary?format=%3Cscript%3E', qr/^unknown format "<script>"\n\z/],
)
{
    my ($s, $h, $b) = http_get($port, $c->[0]);
    is($s, 400, "$c->[0]: 400");
    like($b, $c->[1], "$c->[0]: one-line reason");
    like($h->{'content-type'}, qr{^text/plain}, "$c->[0]: text/plain");
}

my ($s405) = http_client($port)->pipeline(['/canary']) ;
is($s405->[0], 200, 'GET: 200');


# the evil rollout name in every format

my (undef, undef, $json) = http_get($port, '/canary?format=json');
my $all = eval { decode_json($json) };
ok($all, 'JSON with the evil name parses');
ok((grep { $_->{name} eq $evil } @{ $all->{rollouts} || [] }),
   'JSON: the evil name is intact');

my (undef, undef, $html) = http_get($port, '/canary?format=html');
ok(index($html, q{&lt;script&gt;alert('x')&lt;/script&gt;&amp;}) >= 0,
   'HTML: the evil name is escaped');
ok(index($html, "<script>alert(") < 0, 'HTML: no injected script');

my (undef, undef, $prom) = http_get($port, '/canary?format=prometheus');
ok(index($prom, qq{nginx_canary_percent{rollout="$evil"} 3\n}) >= 0,
   'Prometheus: the evil name as a label value');

($st, $j) = ex('%3Cscript%3Ealert(%27x%27)%3C%2Fscript%3E%26&key=1');
is($j->{rollout}, $evil, 'explain finds the evil rollout by its name');

$ng->stop;


# 1,000 rollouts render whole in every format

my $many = "upstream s { server 127.0.0.1:1; }\n"
         . "upstream c { server 127.0.0.1:2; }\ncanary_zone 16m;\n";
$many .= "canary_rollout r$_ { key \$http_x_user_id; stable s; canary c; "
         . "percent " . ($_ % 101) . "; }\n" for 1 .. 1000;
$many .= <<'EOF';
server {
    listen 127.0.0.1:%%PORT%%;
    location / { canary r1000; return 200; }
    location = /canary { canary_status; }
}
EOF

my $ngm = start_nginx($many, workers => 2);
my $pm = $ngm->port;

http_get($pm, '/', 'X-User-Id' => 'x') for 1 .. 3;

my ($sj, undef, $bj) = http_get($pm, '/canary?format=json');
my $jm = decode_json($bj);
is(scalar @{ $jm->{rollouts} }, 1000, 'JSON: 1000 rollouts');
is($jm->{rollouts}[-1]{name}, 'r1000', 'JSON: the last one whole');
is($jm->{rollouts}[-1]{variants}{stable}{requests}
   + $jm->{rollouts}[-1]{variants}{canary}{requests}, 3,
   'JSON: its counts');
ok(!grep({ $jm->{rollouts}[$_ - 1]{percent} != $_ % 101 } 1 .. 1000),
   'JSON: every percent');

my (undef, undef, $tm) = http_get($pm, '/canary');
is(scalar(() = $tm =~ /^Rollout r\d+ /mg), 1000, 'text: 1000 rollouts');
like($tm, qr/ canary le_ms [^\n]* inf:\d+\n\z/, 'text: ends whole');

my (undef, undef, $pmx) = http_get($pm, '/canary?format=prometheus');
is(scalar(() = $pmx =~ /^nginx_canary_percent\{/mg), 1000,
   'Prometheus: 1000 percents');
is(scalar(() = $pmx =~ /^nginx_canary_request_duration_seconds_bucket\{/mg),
   1000 * 2 * 24, 'Prometheus: every bucket');
SKIP: {
    skip 'promtool not installed', 1
        unless system('command -v promtool >/dev/null 2>&1') == 0;
    my $f = File::Temp->new;
    print $f $pmx;
    close $f;
    my $out = `promtool check metrics < $f 2>&1`;
    is($? >> 8, 0, 'Prometheus: 1000 rollouts pass promtool') or diag $out;
}

my (undef, undef, $hm) = http_get($pm, '/canary?format=html');
is(scalar(() = $hm =~ /<tr><td class="name">r\d+</g), 1000,
   'HTML: 1000 rows');
like($hm, qr{</html>\s*\z}, 'HTML: ends whole');

done();

use File::Temp ();
