#!/usr/bin/perl

# make demo: demo/run.sh starts Redis, nginx with the module and the two
# demo backends on the ports it is given, routes users by the documented
# hash, serves the status page, prints how to use it, refuses to start
# twice, and stops everything on `stop` and on Ctrl-C (SIGINT).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use File::Temp qw(tempdir);
use IO::Socket::INET;
use POSIX qw(WNOHANG);
use Test::More;
use Time::HiRes qw(sleep time);
use CanaryTest;

need_module();

my $script = "$FindBin::Bin/../demo/run.sh";
my $src = join '', map { CanaryTest::read_file($_) }
                   glob "$FindBin::Bin/../src/*.c";
my $has_redis = $src =~ /ngx_string\("canary_redis"\)/;

my $dir = tempdir('canary-demo-XXXXXX', TMPDIR => 1,
                  CLEANUP => !$ENV{CANARY_KEEP});
chmod 0777, $dir;

my %port = map { $_ => free_port() } qw(APP STABLE CANARY REDIS);

# not `local`: the END block below must still see them
$ENV{DEMO_DIR} = "$dir/demo";
$ENV{DEMO_PORT} = $port{APP};
$ENV{DEMO_STABLE_PORT} = $port{STABLE};
$ENV{DEMO_CANARY_PORT} = $port{CANARY};
$ENV{DEMO_REDIS_PORT} = $port{REDIS};
$ENV{DEMO_PERCENT} = 10;
$ENV{CANARY_MODULE} = module_path();

# whatever happens (a failed assertion, a croak in a client), stop this
# test's demo: its nginx and redis are daemons and would outlive us
my $fg_pid;
END {
    local $?;
    if ($fg_pid && kill 0, $fg_pid) {
        kill 'INT', $fg_pid;
        waitpid($fg_pid, 0);
    }
    system($script, 'stop') if $script && $ENV{DEMO_DIR};
}

sub listening {
    my ($p) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $p,
                                  Proto => 'tcp');
    return $s ? 1 : 0;
}

sub wait_until {
    my ($cond, $timeout) = @_;
    my $end = time + $timeout;
    while (time < $end) {
        return 1 if $cond->();
        sleep 0.1;
    }
    return 0;
}

sub all_down {
    return !grep { listening($_) } values %port;
}

sub expected {
    my ($key) = @_;
    my $bucket = murmur3_32("demo:$key") % 10000;
    return ($bucket < 1000 ? 'canary' : 'stable', $bucket);
}


# detached start

my $out = `'$script' start --detach 2>&1`;
is($? >> 8, 0, 'demo starts') or diag($out);
like($out, qr/curl .*--cookie uid=/, 'prints how to see a user\'s variant');
like($out, qr/redis-cli -p $port{REDIS} HSET canary:rollout:demo percent/,
     'prints how to change the percentage with redis-cli');
ok(listening($port{$_}), "$_ port listens") for sort keys %port;

my $again = `'$script' start --detach 2>&1`;
isnt($? >> 8, 0, 'a second start is refused');
like($again, qr/already running/, '... saying why');

# users are routed by the documented hash, always the same way

my $mismatch = 0;
my %seen;
for my $n (1 .. 60) {
    my $u = "user$n";
    my ($want, $bucket) = expected($u);
    for (1 .. 2) {
        my ($st, $h, $body) = http_get($port{APP}, '/', Cookie => "uid=$u");
        my $line = $want eq 'canary' ? "canary v2 variant=canary"
                                     : "stable v1 variant=stable";
        unless ($st == 200 && $body =~ /^\Q$line\E bucket=$bucket reason=percent$/m
                && ($h->{'x-canary'} // '') eq $want)
        {
            diag("$u: want $want/$bucket, got $st $body") if $mismatch++ < 5;
        }
        $seen{$want}++;
    }
}
is($mismatch, 0, 'every user gets the variant of the documented hash');
ok($seen{canary} && $seen{stable}, 'both variants are served');

my ($st, $h, $body) = http_get($port{APP}, '/', 'X-User-Id' => 'user1');
like($body, qr/reason=percent/, 'X-User-Id is a key too');

($st, $h, $body) = http_get($port{APP}, '/');
like($body, qr/^stable v1 variant=stable bucket= reason=no_key/,
     'no key: stable, no_key');

($st, $h, $body) = http_get($port{APP}, '/', Cookie => 'uid=user1',
                            'X-Canary-Override' => 'always');
like($body, qr/^canary v2 variant=canary .*reason=override/,
     'testers force the canary with the override header');

($st, $h, $body) = http_get($port{APP}, '/canary');
is($st, 200, 'status page answers');
like($body, qr/demo/, 'status page names the demo rollout');

if ($has_redis) {
    # the percentage is changed from Redis, without a reload
    my $cli = "redis-cli -h 127.0.0.1 -p $port{REDIS}";
    my $out = `$cli HSET canary:rollout:demo percent 100 2>&1`;
    is($? >> 8, 0, 'redis-cli HSET') or diag($out);
    `$cli PUBLISH canary:changed demo`;
    ok(wait_until(sub {
        my (undef, undef, $b) = http_get($port{APP}, '/',
                                         Cookie => 'uid=user1');
        $b =~ /^canary v2/;
    }, 10), 'percent 100 set with redis-cli applies without a reload');
} else {
    note('canary_redis not in src/ yet: the demo routes by the config');
}

my $log = CanaryTest::read_file("$dir/demo/logs/error.log");
unlike($log, qr/\[(?:alert|emerg|crit)\]/, 'no alerts in the demo log');

$out = `'$script' stop 2>&1`;
is($? >> 8, 0, 'demo-stop succeeds');
ok(wait_until(\&all_down, 10), 'demo-stop stops nginx and redis');
ok(!-e "$dir/demo/logs/nginx.pid" && !-e "$dir/demo/redis/redis.pid",
   'no pid files left');

# foreground start, stopped with Ctrl-C

my $pid = $fg_pid = fork // die "fork: $!";
if ($pid == 0) {
    open STDOUT, '>', "$dir/fg.out";
    open STDERR, '>&', \*STDOUT;
    exec $script, 'start' or POSIX::_exit(127);
}

ok(wait_until(sub { listening($port{APP}) }, 20), 'foreground demo starts')
    or diag(CanaryTest::read_file("$dir/fg.out"));
ok(wait_until(sub { CanaryTest::read_file("$dir/fg.out") =~ /Ctrl-C/ }, 10),
   'it says how to stop it');
($st) = http_get($port{APP}, '/', Cookie => 'uid=x');
is($st, 200, 'foreground demo answers');

kill 'INT', $pid;
my $rc;
ok(wait_until(sub {
    return 0 unless waitpid($pid, WNOHANG) == $pid;
    $rc = $? >> 8;
    undef $fg_pid;
    return 1;
}, 20), 'Ctrl-C ends the script');
is($rc, 0, '... with status 0');
ok(wait_until(\&all_down, 10), 'Ctrl-C stops nginx and redis');

done();
