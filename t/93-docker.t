#!/usr/bin/perl

# The Dockerfile, without a Docker engine:
#  - every RUN step calls only Makefile targets (with Makefile variables)
#    or a short list of shell tools, every COPY source exists, and the
#    runtime stage installs no compiler;
#  - the build stage's steps, run literally on a clean copy of the tree,
#    build the module and the Debian package (it compiles the module once
#    more: skipped while the build procedure is unchanged since it last
#    passed, or with CANARY_SKIP_DOCKER_BUILD=1);
#  - the entrypoint, run directly against a local nginx prefix, writes a
#    working configuration from CANARY_REDIS and friends: nginx routes,
#    takes its percent from that Redis, serves the status page; bad values
#    are refused with a message naming the variable.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use File::Path qw(make_path);
use File::Spec;
use File::Temp qw(tempdir);
use POSIX qw(WNOHANG);
use Test::More;
use Time::HiRes qw(sleep time);
use CanaryTest;

need_module();

my $repo = File::Spec->rel2abs("$FindBin::Bin/..");
my $dockerfile = CanaryTest::read_file("$repo/Dockerfile");
ok($dockerfile ne '', 'Dockerfile exists');

# --- parse: instructions with continuations joined, by stage

my (@stages, $stage);
(my $text = $dockerfile) =~ s/\\\n/ /g;
for my $line (split /\n/, $text) {
    next if $line =~ /^\s*(?:#|$)/;
    my ($ins, $args) = $line =~ /^\s*(\w+)\s+(.*?)\s*$/ or next;
    $ins = uc $ins;
    if ($ins eq 'FROM') {
        $stage = { from => $args, steps => [] };
        push @stages, $stage;
        next;
    }
    push @{ $stage->{steps} }, [$ins, $args];
}

is(scalar @stages, 2, 'two stages');
like($stages[0]{from}, qr/^debian:bookworm-slim AS build$/i,
     'build stage on debian:bookworm-slim');
like($stages[1]{from}, qr/^debian:bookworm-slim$/,
     'runtime stage on debian:bookworm-slim');

# Makefile targets and variables

my %targets = map { $_ => 1 }
    `make -s -C '$repo' -pRrq : 2>/dev/null`
    =~ /^([a-zA-Z0-9][^\$#\/\t=:]*):(?:[^=]|$)/mg;
ok($targets{build} && $targets{deps}, 'Makefile targets found');
my $makefiles = join '', map { CanaryTest::read_file($_) }
                         "$repo/Makefile", glob "$repo/mk/*.mk";

my %tools = map { $_ => 1 } qw(apt-get rm ln mkdir chmod chown cp install);
my @make_steps;

for my $i (0 .. $#stages) {
    for my $step (@{ $stages[$i]{steps} }) {
        my ($ins, $args) = @$step;

        if ($ins eq 'COPY') {
            my @w = split ' ', $args;
            next if grep { /^--from=/ } @w;
            pop @w;
            ok(-e "$repo/$_", "COPY source $_ exists") for @w;
            next;
        }

        next unless $ins eq 'RUN';

        for my $cmd (split /\s*(?:&&|\|\||;)\s*/, $args) {
            my ($word, @rest) = split ' ', $cmd;
            if ($word eq 'make') {
                ok($i == 0, "make only in the build stage: $cmd");
                for my $a (@rest) {
                    if ($a =~ /^([A-Z_]+)=/) {
                        like($makefiles, qr/\$\($1\)/,
                             "$1 is a Makefile variable");
                    } elsif ($a !~ /^-/) {
                        ok($targets{$a}, "make $a: a Makefile target");
                    }
                }
                push @make_steps, $cmd;
            } else {
                ok($tools{$word}, "RUN uses a known tool: $word");
            }
            if ($i == 1 && $word eq 'apt-get' && ($rest[0] // '') eq 'install')
            {
                my @bad = grep { /^(?:gcc|g\+\+|cc|clang|make|build-essential
                                    |.*-dev)$/x } @rest;
                ok(!@bad, 'runtime stage installs no compilers or -dev')
                    or diag("@bad");
            }
        }
    }
}

is_deeply([map { (split ' ', $_)[1] } @make_steps], [qw(deps build deb)],
          'build stage: make deps, make build, make deb');
like($dockerfile, qr{^COPY --from=build /src/dist/ }m,
     'runtime stage takes the package the build stage made');
like($dockerfile, qr{^ENTRYPOINT \["canary-entrypoint"\]}m, 'entrypoint');

# --- the build stage's steps on a clean copy of the tree

# It costs a configure and a compile (minutes on shared cores), so it is
# skipped when what it verifies, the build procedure, is unchanged since
# the last run that passed here: the Dockerfile, Makefiles, config,
# packaging and the names of the source files.
# CANARY_FORCE_DOCKER_BUILD=1 runs it anyway.

use Digest::SHA qw(sha256_hex);

my $stamp = "$repo/build/docker-build-check.stamp";
my $procedure = sha256_hex(join "\0",
    (map { ($_, CanaryTest::read_file($_)) }
         grep { -f } "$repo/Dockerfile", "$repo/.dockerignore",
                     "$repo/Makefile", "$repo/config", "$repo/VERSION",
                     sort(glob("$repo/mk/*.mk")),
                     sort(glob("$repo/packaging/*"))),
    sort(glob("$repo/src/*")));

SKIP: {
    skip 'CANARY_SKIP_DOCKER_BUILD=1', 2 if $ENV{CANARY_SKIP_DOCKER_BUILD};
    skip 'build procedure unchanged since it last passed (build/'
         . 'docker-build-check.stamp; CANARY_FORCE_DOCKER_BUILD=1 forces)', 2
        if !$ENV{CANARY_FORCE_DOCKER_BUILD}
           && CanaryTest::read_file($stamp) eq $procedure;

    my $copy = tempdir('canary-docker-XXXXXX', TMPDIR => 1,
                       CLEANUP => !$ENV{CANARY_KEEP});
    # the build context: the tree without what .dockerignore excludes
    my @files = grep { !m{^(?:build|dist)/} }
                split /\0/, `git -C '$repo' ls-files -z -co --exclude-standard`;
    for my $f (@files) {
        next unless -f "$repo/$f";
        (my $d = "$copy/$f") =~ s{/[^/]+$}{};
        make_path($d);
        system('cp', '-p', "$repo/$f", "$copy/$f") == 0 or die "cp $f";
    }

    my $ok = 1;
    for my $cmd (@make_steps) {
        (my $c = $cmd) =~ s{/src/}{$copy/}g;
        my $out = `cd '$copy' && env -u MAKEFLAGS -u MAKELEVEL -u MFLAGS $c 2>&1`;
        next if $? == 0;
        $ok = 0;
        diag("$c:\n" . substr($out, -3000));
        last;
    }
    ok($ok, 'the build stage\'s make steps succeed on a clean copy');
    my ($deb) = glob("$copy/dist/libnginx-mod-http-canary_*.deb");
    ok($deb, 'and leave the package where the runtime stage takes it');
    CanaryTest::write_file($stamp, $procedure) if $ok && $deb && -d "$repo/build";
}

# --- the entrypoint against a local prefix

my $entry = "$repo/docker/entrypoint.sh";
my $redis = start_redis();
my $prefix = CanaryTest::make_prefix();
my ($port, $load) = (free_port(), load_module_line());

CanaryTest::write_file("$prefix/nginx.conf", <<"EOF");
# as Debian's /etc/nginx/nginx.conf, with the module as modules-enabled
# would load it (or nothing, when it is built in)
$load
worker_processes 2;
error_log logs/error.log notice;
pid logs/nginx.pid;
events { worker_connections 256; }
http {
    client_body_temp_path temp/client_body;
    proxy_temp_path temp/proxy;
    fastcgi_temp_path temp/fastcgi;
    uwsgi_temp_path temp/uwsgi;
    scgi_temp_path temp/scgi;
    access_log off;
    include conf.d/*.conf;
}
EOF

make_path("$prefix/state", "$prefix/run");
chmod 0777, "$prefix/state";

# the entrypoint calls `nginx` from PATH: make that the test's nginx (a
# sanitizer or valgrind wrapper under make test SANITIZE=1 / valgrind)
my $bin = tempdir('canary-bin-XXXXXX', TMPDIR => 1, CLEANUP => 1);
symlink(File::Spec->rel2abs($CanaryTest::NGINX), "$bin/nginx")
    or die "symlink: $!";

my %env = (
    PATH => "$bin:$ENV{PATH}",
    CANARY_REDIS => "127.0.0.1:" . $redis->port,
    CANARY_LISTEN => "127.0.0.1:$port",
    CANARY_PERCENT => 10,
    CANARY_CONF_DIR => $prefix,
    CANARY_TEMPLATE => "$repo/docker/canary.conf.template",
    CANARY_RUN_DIR => "$prefix/run",
    CANARY_STATE_FILE => "$prefix/state/canary.state",
    CANARY_NGINX_ARGS => "-p $prefix/ -c nginx.conf",
);

sub entry {
    my (%e) = @_;
    local @ENV{keys %env} = values %env;
    local @ENV{keys %e} = values %e;
    delete $ENV{$_} for grep { !defined $e{$_} && exists $e{$_} } keys %e;
    my $out = `'$entry' true 2>&1`;
    return ($? >> 8, $out);
}

my ($rc, $out) = entry(CANARY_REDIS => undef);
is($rc, 64, 'no CANARY_REDIS: refused');
like($out, qr/set CANARY_REDIS=host:port/, '... saying what to set');

($rc, $out) = entry(CANARY_REDIS => 'redis:6379; evil');
is($rc, 64, 'a CANARY_REDIS that is no address: refused');
like($out, qr/CANARY_REDIS="redis:6379; evil" is not valid/,
     '... naming variable and value');

($rc, $out) = entry(CANARY_PERCENT => '100.5');
like($out, qr/CANARY_PERCENT="100.5" is not valid/, 'bad percent refused');

($rc, $out) = entry();
is($rc, 0, 'the entrypoint writes a configuration nginx -t accepts')
    or diag($out);
my $conf = CanaryTest::read_file("$prefix/conf.d/canary.conf");
like($conf, qr/^canary_redis 127\.0\.0\.1:\d+;$/m,
     'with canary_redis from CANARY_REDIS');
unlike($conf, qr/@[A-Z_]+@/, 'no placeholder left');

# run it the way the container does: entrypoint, then nginx in the
# foreground

# free_port() can race with the other test suites on this machine: when
# nginx says the port was taken, start again on another one (only then)

sub start_container {
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        @ENV{keys %env} = values %env;
        open STDOUT, '>>', "$prefix/logs/stderr.log";
        open STDERR, '>&', \*STDOUT;
        exec $entry, $CanaryTest::NGINX, '-p', "$prefix/", '-c',
             'nginx.conf', '-g', 'daemon off;'
            or POSIX::_exit(127);
    }
    return $pid;
}

my ($pid, $up);

# whatever happens, do not leave this nginx behind
END {
    local $?;
    if ($pid && waitpid($pid, WNOHANG) == 0) {
        kill 'QUIT', $pid;
        my $end = time + 5;
        sleep 0.05 while waitpid($pid, WNOHANG) == 0 && time < $end;
        if (kill 0, $pid) {
            kill 'KILL', $pid;
            waitpid($pid, 0);
        }
    }
}

for my $try (1 .. 3) {
    $pid = start_container();
    # the entrypoint's `nginx -t` opens the listening socket for a moment
    # too: a connection made then is reset or refused once it exits. The
    # nginx to ask is the one that wrote its pid (the entrypoint execs it,
    # so it is $pid), and only then its port.
    my $t0 = time;
    my $alive = sub { waitpid($pid, WNOHANG) == 0 };
    my $end = time + 20 * $CanaryTest::SCALE;
    sleep 0.05 while $alive->() && time < $end
        && (CanaryTest::read_file("$prefix/logs/nginx.pid") // '') !~ /^$pid$/m;
    my $listens = CanaryTest::wait_port($port, 20, $alive);
    my $st = $listens && eval { (http_get($port, '/canary'))[0] };
    $up = $listens && ($st // 0) == 200;
    last if $up;
    diag(sprintf('try %d: %s after %.1f s', $try,
                 !$listens ? (waitpid($pid, WNOHANG) == 0
                              ? 'port not open' : "nginx exited ($?)")
                           : 'GET /canary: ' . ($st // $@), time - $t0));
    my $log = CanaryTest::read_file("$prefix/logs/stderr.log")
              . CanaryTest::read_file("$prefix/logs/error.log");
    kill 'QUIT', $pid;
    waitpid($pid, 0);
    last unless $log =~ /Address already in use/ && $try < 3;
    diag("port $port was taken by someone else, trying another");
    $port = free_port();
    $env{CANARY_LISTEN} = "127.0.0.1:$port";
    CanaryTest::write_file("$prefix/logs/error.log", '');
}
ok($up, 'nginx started by the entrypoint listens and answers')
    or diag(CanaryTest::read_file("$prefix/logs/stderr.log")
            . CanaryTest::read_file("$prefix/logs/error.log"));

my ($st, $h, $body);
my $end = time + 10;
my ($user) = grep { murmur3_32("app:$_") % 10000 >= 1000 } map { "d$_" } 1 .. 50;
my $b = murmur3_32("app:$user") % 10000;

($st, $h, $body) = http_get($port, '/', Cookie => "uid=$user");
is($body, "stable v1 variant=stable bucket=$b reason=percent\n",
   'demo backend answers, routed by the documented hash');

$redis->cli(qw(HSET canary:rollout:app percent 100));
$redis->cli(qw(PUBLISH canary:changed app));
my $canary = 0;
while (time < $end) {
    ($st, $h, $body) = http_get($port, '/', Cookie => "uid=$user");
    last if $canary = $body =~ /^canary v2 variant=canary/;
    sleep 0.1;
}
ok($canary, 'percent set in that Redis applies (the image\'s Redis wiring)');

($st, $h, $body) = http_get($port, '/canary');
is($st, 200, 'status page');
like($body, qr/app/, '... names the rollout');

kill 'QUIT', $pid;
$end = time + 10;
sleep 0.05 while waitpid($pid, WNOHANG) == 0 && time < $end;
kill 'KILL', $pid if kill 0, $pid;

my @bad = grep { /\[(?:alert|emerg|crit)\]/ }
          split /\n/, CanaryTest::read_file("$prefix/logs/error.log");
ok(!@bad, 'no alerts') or diag(join "\n", @bad);

done();
