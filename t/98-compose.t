#!/usr/bin/perl

# compose.yaml: `compose up` (docker compose, or docker-compose against
# podman's Docker API: tools/containers.sh compose) brings up
# Redis, nginx-canary and the two demo backends on the ports it is given
# (DEMO_*), and they answer as `make demo` (demo/run.sh, on other ports)
# does, user by user; a percent set in the compose Redis applies; `down`
# stops every container.  Once per CI (t/lib/CanaryContainer.pm).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(sleep time);
use CanaryTest;
use CanaryContainer;

need_module();
once_per_ci();

my $repo = $CanaryContainer::REPO;
my $c = "$repo/tools/containers.sh";
my $project = "canary-t98-$$";

# the images: nginx-canary (t/96 built it: cached) and the Redis one
my $out = `env -u MAKEFLAGS -u MAKELEVEL -u MFLAGS make -s -C '$repo' image 2>&1`;
is($?, 0, 'make image') or diag(substr($out, -3000));
$out = `'$c' build nginx-canary-redis '$repo/docker/redis' 2>&1`;
is($?, 0, 'the Redis image of compose.yaml') or diag(substr($out, -3000));

sub ports {
    my %p = map { ($_ => free_port()) }
            qw(DEMO_PORT DEMO_STABLE_PORT DEMO_CANARY_PORT DEMO_REDIS_PORT);
    return (%p, DEMO_PERCENT => 30);
}

my %compose = ports();
my %demo = ports();

sub compose {
    my (@args) = @_;
    local @ENV{keys %compose} = values %compose;
    my $cmd = join ' ', map { "'$_'" } $c, 'compose', '-p', $project,
                                       '-f', "$repo/compose.yaml", @args;
    my $out = `$cmd 2>&1`;
    return ($? >> 8, $out);
}

my $tmp = CanaryTest::tmp_prefix();
sub demo {
    my ($what) = @_;
    local @ENV{keys %demo} = values %demo;
    local $ENV{DEMO_DIR} = "$tmp/demo";
    my $out = `'$repo/demo/run.sh' $what 2>&1`;
    return ($? >> 8, $out);
}

END {
    local $?;
    compose('down', '-v');
    demo('stop');
}

my ($rc, $log) = compose('up', '-d');
is($rc, 0, 'compose up -d') or diag($log);
my $port = $compose{DEMO_PORT};
ok(CanaryTest::wait_port($port, 30)
   && eventually(sub { (eval { (http_get($port, '/canary'))[0] } // 0)
                       == 200 }, 20),
   'nginx-canary answers') or diag((compose('logs'))[1]);

($rc, $log) = demo('start --detach');
is($rc, 0, 'make demo\'s demo/run.sh starts on other ports') or diag($log);


sub answers {
    my ($p) = @_;
    return join '', map { (http_get($p, '/', Cookie => "uid=u$_"))[2] // '' }
                    1 .. 40;
}

my $want = answers($demo{DEMO_PORT});
like($want, qr/^stable v1 variant=stable bucket=\d+ reason=percent$/m,
     'the demo answers stable ...');
like($want, qr/^canary v2 variant=canary bucket=\d+ reason=percent$/m,
     '... and canary at 30%');
is(answers($port), $want, 'compose answers as the demo, user by user');

my ($st, $h, $body) = http_get($port, '/canary');
like($body, qr/\bdemo\b/, 'the status page names the rollout demo');

# redis-cli against the compose Redis
my $rport = $compose{DEMO_REDIS_PORT};
system("'$CanaryTest::REDIS_CLI' -p $rport HSET canary:rollout:demo"
       . ' percent 100 > /dev/null') == 0 or die 'redis-cli';
ok(eventually(sub { answers($port) !~ /^stable/m }, 10),
   'percent 100 set in the compose Redis: every user on canary');

($rc, $log) = compose('down', '-v');
is($rc, 0, 'compose down');
ok(!CanaryTest::wait_port($port, 1), 'nothing listens any more');

done();
