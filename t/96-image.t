#!/usr/bin/perl

# The Dockerfile's image, built (`make image`: docker or podman) and run
# as a user runs it, with host networking against a Redis and two
# backends on this host's loopback:
#  - its size, and no compiler in the runtime stage;
#  - it routes, serves /canary, follows a redis-cli change;
#  - nginx workers run as www-data, not root; the HEALTHCHECK passes, and
#    fails when nothing answers;
#  - `stop` (STOPSIGNAL SIGQUIT) lets requests in flight finish, exit 0;
#  - the state file, kept in a volume, routes a new container while Redis
#    is down.
# Once per CI (t/lib/CanaryContainer.pm).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Socket::INET;
use POSIX qw(WNOHANG);
use Test::More;
use Time::HiRes qw(sleep time);
use CanaryTest;
use CanaryContainer;

need_module();
once_per_ci();

my $repo = $CanaryContainer::REPO;
my $image = 'nginx-canary';
my $name = "canary-t96-$$";
my $volume = "canary-t96-$$";

# --- the build

my $t0 = time;
my $out = `env -u MAKEFLAGS -u MAKELEVEL -u MFLAGS make -s -C '$repo' image IMAGE=$image 2>&1`;
is($?, 0, 'make image') or diag(substr($out, -4000));
note(sprintf 'make image took %.0f s', time - $t0);

my ($rc, $size) = engine_out('image', 'inspect', '--format', '{{.Size}}',
                             $image);
chomp $size;
ok($rc == 0 && $size =~ /^\d+$/, 'image size known') or diag($size);
diag(sprintf 'image %s: %.0f MB', $image, $size / 1e6);
# bookworm-slim (~75 MB as Debian's, ~120 MB as debootstrap makes it
# here) and nginx with its libraries (~20 MB)
cmp_ok($size, '<', 200e6, 'image under 200 MB');

($rc, $out) = engine_out('run', '--rm', '--no-healthcheck', '--entrypoint',
                          'sh', $image, '-c',
    'for c in cc gcc clang make ld; do command -v $c; done; '
    . q{dpkg-query -W -f '${Package}\n' }
    . q{| grep -E '^(gcc|g\+\+|cpp|clang)(-[0-9]+)?$|^binutils|^make$|-dev$';}
    . ' true');
is($rc, 0, 'a shell in the image');
is($out, '', 'runtime stage: no compiler, linker, make or -dev package');

($rc, $out) = engine_out('image', 'inspect', '--format',
                         '{{json .Config.Healthcheck}}', $image);
like($out, qr/canary-healthcheck/, 'the image has a HEALTHCHECK');
($rc, $out) = engine_out('image', 'inspect', '--format',
                         '{{.Config.StopSignal}}', $image);
like($out, qr/^SIGQUIT$/m, 'STOPSIGNAL SIGQUIT');

# --- a Redis and two backends on the host

my $redis = start_redis();
my ($port, $sport, $cport) = map { free_port() } 1 .. 3;
my $mark = CanaryTest::tmp_prefix() . '/slow';
host_backend('stable-host', $sport, $mark);
host_backend('canary-host', $cport, $mark);

engine('volume', 'create', $volume);

END {
    local $?;
    engine('rm', '-f', '-t', '0', $name);
    engine('volume', 'rm', '-f', $volume);
}

sub run_container {
    my (%env) = @_;
    %env = (CANARY_REDIS => '127.0.0.1:' . $redis->port,
            CANARY_LISTEN => "127.0.0.1:$port",
            CANARY_STABLE => "127.0.0.1:$sport",
            CANARY_CANARY => "127.0.0.1:$cport",
            CANARY_STATE_FILE => '/var/lib/canary/canary.state',
            CANARY_PERCENT => 0, %env);
    engine('rm', '-f', '-t', '0', $name);
    my ($rc, $out) = engine_out('run', '-d', '--name', $name,
        '--network', 'host', '-v', "$volume:/var/lib/canary",
        (map { ('-e', "$_=$env{$_}") } sort keys %env), $image);
    return 0 if $rc != 0 && diag($out);
    return eventually(sub { (eval { (http_get($port, '/canary'))[0] } // 0)
                            == 200 }, 20);
}


sub body {
    my ($user) = @_;
    return (http_get($port, '/', Cookie => "uid=$user"))[2] // '';
}

# --- run

ok(run_container(), 'the container starts and answers /canary')
    or diag((engine_out('logs', $name))[1]);

my ($st, $h, $b) = http_get($port, '/canary');
like($b, qr/\bapp\b/, 'the status page names the rollout');
is(body('alice'), "stable-host /\n", 'percent 0: routed to stable');

$redis->cli(qw(HSET canary:rollout:app percent 100));
$redis->cli(qw(PUBLISH canary:changed app));
ok(eventually(sub { body('alice') eq "canary-host /\n" }, 10),
   'percent 100 set with redis-cli: routed to canary');
($st, $h, $b) = http_get($port, '/', Cookie => 'uid=bob');
is($h->{'x-canary'}, 'canary', 'X-Canary: canary');

($rc, $out) = engine_out('top', $name, 'user', 'args');
my @workers = $out =~ /^(\S+)\s+nginx: worker process/mg;
ok(@workers >= 1, 'nginx workers seen') or diag($out);
is_deeply([grep { $_ ne 'www-data' } @workers], [],
          'every worker runs as www-data, not root');
like($out, qr/^root\s+nginx: master process/m, 'the master as root');

my $podman = `'$repo/tools/containers.sh' engine` =~ /podman/;
is(engine($podman ? ('healthcheck', 'run', $name)
                  : ('exec', $name, 'canary-healthcheck')), 0,
   'healthcheck: healthy');
my $dead = free_port();
isnt(engine('exec', '-e', "CANARY_LISTEN=127.0.0.1:$dead", $name,
            'canary-healthcheck'), 0,
     'healthcheck: fails when nothing answers on CANARY_LISTEN');

ok(eventually(sub {
       my ($rc, $s) = engine_out('exec', $name, 'cat',
                                 '/var/lib/canary/canary.state');
       $rc == 0 && $s =~ /^rollout app 100\.00 /m }, 10),
   'the state file in the volume holds percent 100');

# --- graceful stop: three requests in flight (the backend answers after
# 3 s) finish, then the container exits 0

my @inflight;
for my $i (1 .. 3) {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $port, Proto => 'tcp')
        or die "connect: $!";
    print $s "GET /slow/3 HTTP/1.1\r\nHost: t\r\nCookie: uid=u$i\r\n"
             . "Connection: close\r\n\r\n";
    push @inflight, $s;
}
ok(eventually(sub { my @m = glob "$mark.*"; @m == 3 }, 10),
   'three slow requests reached the backend');

my $t_stop = time;
my $stopper = fork // die;
if ($stopper == 0) {
    open STDOUT, '>', '/dev/null';
    open STDERR, '>&', \*STDOUT;
    { exec "$repo/tools/containers.sh", 'cmd', 'stop', '-t', '30', $name; }
    POSIX::_exit(127);
}
my $done = 0;
for my $s (@inflight) {
    local $/;
    my $resp = <$s> // '';
    $done++ if $resp =~ m{\AHTTP/1\.1 200 .*\r\n\r\ncanary-host /slow/3\n\z}s;
}
is($done, 3, 'stop: the three requests in flight finish with their answer');
waitpid($stopper, 0);
is($? >> 8, 0, 'stop returns');
my $took = time - $t_stop;
($rc, $out) = engine_out('inspect', '--format', '{{.State.ExitCode}}', $name);
is($out, "0\n", 'the container exits 0 (SIGQUIT, not killed)');
note(sprintf 'stop took %.1f s', $took);

($rc, $out) = engine_out('logs', $name);
my @bad = grep { /\[(?:alert|emerg|crit)\]/ } split /\n/, $out;
ok(!@bad, 'no alerts in the container log') or diag(join "\n", @bad);

# --- the volume across a restart: a new container, Redis down, routes by
# the state file (its own CANARY_PERCENT would say 0)

$redis->stop;
ok(run_container(), 'a new container on the same volume starts (Redis down)')
    or diag((engine_out('logs', $name))[1]);
is(body('alice'), "canary-host /\n",
   'and routes by the state file from the volume: percent 100');

done();
