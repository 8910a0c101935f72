package CanaryContainer;

# Helpers of the container tests (t/96, t/97): the once-per-CI gate, the
# engine (tools/containers.sh: docker or podman), a host backend that
# answers slowly when asked to.
#
# The container tests build images and start containers (minutes): they
# run in the `make test` against Debian's nginx (the first run of
# .ci/run), and say skipped in the runs against other nginx builds, as
# t/92 does.  CANARY_SKIP_CONTAINERS=1 skips them.

use strict;
use warnings;

use Cwd qw(abs_path);
use Exporter qw(import);
use FindBin;
use IO::Socket::INET;
use POSIX qw(WNOHANG);
use Test::More;
use Time::HiRes qw(sleep time);
use CanaryTest ();
use CanarySync ();

our @EXPORT = qw(once_per_ci engine engine_out host_backend eventually);

our $REPO = abs_path("$FindBin::Bin/..");
my @children;

sub once_per_ci {
    plan skip_all => 'CANARY_SKIP_CONTAINERS=1'
        if $ENV{CANARY_SKIP_CONTAINERS};
    my $real = abs_path($ENV{CANARY_REAL_NGINX} || $CanaryTest::NGINX)
               // '';
    plan skip_all => 'container tests run once, in the run against'
                     . " Debian's nginx; this run tests $real"
        if $real ne (abs_path('/usr/sbin/nginx') // '')
           || CanaryTest::module_static();
    plan skip_all => 'not root: the container tests install packages and'
                     . ' run containers as root'
        if $> != 0;
}

# true once $cond is, polling every 0.1 s for up to $secs seconds
sub eventually {
    my ($cond, $secs) = @_;
    return defined CanarySync::wait_until($cond, $secs, 0.1);
}

# the engine with arguments: (exit code, stdout and stderr)
sub engine_out {
    my (@args) = @_;
    my $pid = open(my $fh, '-|') // die "fork: $!";
    if ($pid == 0) {
        open STDERR, '>&', \*STDOUT;
        { exec "$REPO/tools/containers.sh", 'cmd', @args; }
        POSIX::_exit(127);
    }
    local $/;
    my $out = <$fh> // '';
    close $fh;
    return ($? >> 8, $out);
}

sub engine {
    return (engine_out(@_))[0];
}

# an HTTP backend on 127.0.0.1:PORT answering "NAME PATH\n"; /slow/N
# answers after N seconds and first touches MARK (so the test knows the
# request arrived)
sub host_backend {
    my ($name, $port, $mark) = @_;
    my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
                                  LocalPort => $port, Listen => 64,
                                  ReuseAddr => 1, Proto => 'tcp')
        or die "listen $port: $!";
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        local $SIG{CHLD} = 'IGNORE';
        while (my $c = $l->accept) {
            my $k = fork;
            if (defined $k && $k == 0) {
                my $req = '';
                while (defined(my $line = <$c>)) {
                    $req .= $line;
                    last if $line =~ /^\r?\n$/;
                }
                my ($path) = $req =~ /^GET (\S+)/;
                $path //= '?';
                if ($path =~ m{^/slow/(\d+)$}) {
                    CanaryTest::write_file("$mark.$$", '');
                    sleep $1;
                }
                my $body = "$name $path\n";
                print $c "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                    . "Content-Length: " . length($body)
                    . "\r\nConnection: close\r\n\r\n$body";
                close $c;
                POSIX::_exit(0);
            }
            close $c;
        }
        POSIX::_exit(0);
    }
    close $l;
    push @children, $pid;
    return $pid;
}

END {
    local $?;
    for my $pid (@children) {
        kill 'KILL', $pid;
        waitpid($pid, 0);
    }
}

1;
