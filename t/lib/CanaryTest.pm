package CanaryTest;

# Integration test harness for ngx_http_canary_module, in the spirit of
# nginx-tests' Test::Nginx: a temporary prefix per instance, `nginx -p`
# with `load_module`, a real redis-server, raw HTTP over IO::Socket, and
# a final check that no error.log holds [alert]/[emerg]/[crit] lines or
# sanitizer reports.
#
# Config text may hold placeholders:
#   %%PORT%%, %%PORT_<X>%%   a free 127.0.0.1 port, allocated on first use
#                            and kept for the life of the instance
#   %%PREFIX%%, %%MODULE%%   the instance prefix, the module .so path
#   %%<NAME>%%               a value from the `vars` option
#
# start_nginx / nginx_t options: workers, vars, ports, main (main-context
# text), events (events-block text), log_level, allow_log => [qr//],
# module => 0 (no load_module, for testing the harness itself)
#
# Environment: CANARY_MODULE (module .so), CANARY_MODULE_KIND=static (the
# module is built into CANARY_NGINX: no load_module), CANARY_NGINX (nginx
# binary; not NGINX, which nginx itself reads as inherited sockets),
# REDIS_SERVER, REDIS_CLI, CANARY_KEEP=1 (keep temp dirs),
# CANARY_DEBUG=1 (error_log level debug).

use strict;
use warnings;

use Carp qw(croak);
use Exporter qw(import);
use File::Spec;
use File::Temp qw(tempdir);
use IO::Socket::INET;
use POSIX qw(WNOHANG);
use Test::More;
use Time::HiRes qw(sleep time);

our @EXPORT = qw(
    free_port start_nginx nginx_t start_redis http_get http_client
    murmur3_32 module_path need_module expect_log done
    module_static load_module_line conf_error nginx_version
);

my $REPO = File::Spec->rel2abs(__FILE__);
$REPO =~ s{/t/lib/CanaryTest\.pm$}{};

our $NGINX = $ENV{CANARY_NGINX} || '/usr/sbin/nginx';
delete $ENV{NGINX};    # nginx reads it as a list of inherited sockets
our $REDIS_SERVER = $ENV{REDIS_SERVER} || 'redis-server';
our $REDIS_CLI = $ENV{REDIS_CLI} || 'redis-cli';

my (%ports_given, @instances, @expected_log);

# slow runs (valgrind) stretch every wait of the harness by this factor
our $SCALE = $ENV{CANARY_TIMEOUT_SCALE} || 1;

my $BAD_LOG = qr/\[(?:alert|emerg|crit)\]|AddressSanitizer|LeakSanitizer
                 |runtime\ error:|ERROR:\ \w+Sanitizer/x;


sub module_path {
    return $ENV{CANARY_MODULE}
        || "$REPO/build/nginx/objs/ngx_http_canary_module.so";
}


# true when the module is compiled into the nginx under test
# (`make NGINX_MODULE_KIND=static`): configs then have no load_module

sub module_static {
    return ($ENV{CANARY_MODULE_KIND} // '') eq 'static';
}


# the main-context line that loads the module, or a comment when it is
# built in

sub load_module_line {
    return module_static() ? '# ngx_http_canary_module is built in'
                           : 'load_module ' . module_path() . ';';
}


# `nginx -V` of the nginx under test, once

my $nginx_V;

sub nginx_V {
    $nginx_V //= `'$NGINX' -V 2>&1`;
    return $nginx_V;
}


# its version, "1.22.1"

sub nginx_version {
    my ($v) = nginx_V() =~ m{nginx version: \S+?/(\d+\.\d+\.\d+)};
    return $v // '';
}


# skip the whole script when the module has not been built yet

sub need_module {
    if (module_static()) {
        plan skip_all => "$NGINX has no module built in (nginx -V shows no"
                         . ' --add-module)'
            unless nginx_V() =~ /--add-module=\S/;
        return;
    }
    plan skip_all => 'module not built: ' . module_path()
        unless -f module_path();
}


# The first [emerg] of `nginx -t` output, as (message, file, line), however
# the build writes it: "nginx: [emerg] MSG in FILE:LINE" on stderr when
# its error log is a file (nginx.org's and self-built nginx), or
# "DATE TIME [emerg] PID#TID: MSG in FILE:LINE" when the error log itself
# is stderr (Debian's --error-log-path=stderr); MSG without the location.
# Empty list if there is no [emerg].

sub conf_error {
    my ($out) = @_;
    my ($msg) = $out =~ /^(?:nginx:\ \[emerg\]\ 
                           |\d{4}\/\d\d\/\d\d\ [\d:]+\ \[emerg\]\ \d+\#\d+:\ )
                           (.*)$/mx
        or return ();
    # the location is the last " in FILE:LINE"; a module may say more
    # after it (", it must be ...")
    my ($text, $file, $line, $more) = $msg =~ /^(.*) in (\S+):(\d+)(,.*)?$/
        or return ($msg);
    return ($text . ($more // ''), $file, $line);
}


sub free_port {
    for (1 .. 50) {
        my $s = IO::Socket::INET->new(
            LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp',
            Listen => 1, ReuseAddr => 1)
            or croak "bind 127.0.0.1:0: $!";
        my $port = $s->sockport;
        close $s;
        next if $ports_given{$port}++;
        return $port;
    }
    croak 'no free port found';
}


sub tmp_prefix {
    my $dir = tempdir('canary-t-XXXXXX', TMPDIR => 1,
                      CLEANUP => !$ENV{CANARY_KEEP});
    # workers run as nobody: they must reach and write the temp dirs
    chmod 0777, $dir;
    return $dir;
}


# declare error.log lines that are expected (they do not fail done())

sub expect_log {
    push @expected_log, @_;
}


sub subst {
    my ($text, $ports, $vars, $prefix) = @_;

    $text =~ s{%%(\w+)%%}{
        my $n = $1;
        $n eq 'PREFIX' ? $prefix
        : $n eq 'MODULE' ? module_path()
        : exists $vars->{$n} ? $vars->{$n}
        : $n =~ /^PORT(?:_\w+)?$/ ? ($ports->{$n} //= free_port())
        : croak "no value for placeholder %%$n%%"
    }ge;

    return $text;
}


sub full_conf {
    my ($body, %o) = @_;

    my $level = $o{log_level} || ($ENV{CANARY_DEBUG} ? 'debug' : 'info');
    my $workers = $o{workers} // 1;
    my $load = ($o{module} // 1) ? load_module_line() : '';
    my $main = $o{main} // '';
    my $events = $o{events} // '';

    return <<"EOF";
$load

daemon off;
master_process on;
worker_processes $workers;
error_log logs/error.log $level;
pid logs/nginx.pid;
$main
events {
    worker_connections 1024;
$events
}

http {
    access_log off;
    client_body_temp_path temp/client_body;
    proxy_temp_path temp/proxy;
    fastcgi_temp_path temp/fastcgi;
    uwsgi_temp_path temp/uwsgi;
    scgi_temp_path temp/scgi;

$body
}
EOF
}


sub make_prefix {
    my $prefix = tmp_prefix();
    for my $d (qw(logs temp temp/client_body temp/proxy temp/fastcgi
                  temp/uwsgi temp/scgi))
    {
        mkdir "$prefix/$d";
        chmod 0777, "$prefix/$d";
    }
    return $prefix;
}


sub write_file {
    my ($path, $text) = @_;
    open my $fh, '>', $path or croak "$path: $!";
    print $fh $text;
    CORE::close $fh;
}


sub read_file {
    my ($path) = @_;
    open my $fh, '<', $path or return '';
    local $/;
    my $text = <$fh>;
    return $text // '';
}


# nginx -t on a config; returns (exit code, output, full config text)

sub nginx_t {
    my ($body, %o) = @_;

    my $prefix = make_prefix();
    my $conf = full_conf(subst($body, $o{ports} // {}, $o{vars} // {},
                               $prefix), %o);
    write_file("$prefix/nginx.conf", $conf);

    my $out = `'$NGINX' -t -p '$prefix/' -c nginx.conf 2>&1`;
    return ($? >> 8, $out, $conf);
}


sub start_nginx {
    my ($body, %o) = @_;
    my $ng = CanaryTest::Nginx->new($body, %o);
    push @instances, $ng;
    return $ng;
}


sub start_redis {
    my (%o) = @_;
    my $r = CanaryTest::Redis->new(%o);
    push @instances, $r;
    return $r;
}


sub wait_port {
    my ($port, $timeout, $alive) = @_;
    my $end = time + ($timeout || 10) * $SCALE;
    while (time < $end) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                      PeerPort => $port, Proto => 'tcp');
        if ($s) {
            close $s;
            return 1;
        }
        return 0 if $alive && !$alive->();
        sleep 0.05;
    }
    return 0;
}


# one-shot GET: (status, {lowercased headers}, body)

sub http_get {
    my ($port, $path, %h) = @_;
    my $c = http_client($port);
    my @r = $c->get($path, %h, Connection => 'close');
    $c->close;
    return @r;
}


sub http_client {
    my ($port) = @_;
    return CanaryTest::Client->new($port);
}


# MurmurHash3_x86_32 in pure Perl, 32-bit arithmetic done in 16-bit halves
# so that no product leaves the 53-bit exact range of a double

sub mul32 {
    my ($a, $b) = @_;
    return ($a * ($b & 0xffff)
            + ((($a * ($b >> 16)) & 0xffff) << 16)) & 0xffffffff;
}

sub rotl32 {
    my ($x, $r) = @_;
    return (($x << $r) | ($x >> (32 - $r))) & 0xffffffff;
}

sub murmur3_32 {
    my ($data, $seed) = @_;
    my ($c1, $c2) = (0xcc9e2d51, 0x1b873593);
    my $h = ($seed // 0) & 0xffffffff;
    my $len = length $data;
    my $nblocks = int($len / 4);

    for my $k (unpack 'V' x $nblocks, $data) {
        $k = mul32(rotl32(mul32($k, $c1), 15), $c2);
        $h = rotl32($h ^ $k, 13);
        $h = (mul32($h, 5) + 0xe6546b64) & 0xffffffff;
    }

    my @tail = unpack 'C*', substr($data, $nblocks * 4);
    if (@tail) {
        my $k = 0;
        $k ^= $tail[2] << 16 if @tail > 2;
        $k ^= $tail[1] << 8 if @tail > 1;
        $k ^= $tail[0];
        $h ^= mul32(rotl32(mul32($k, $c1), 15), $c2);
    }

    $h ^= $len;
    $h ^= $h >> 16;
    $h = mul32($h, 0x85ebca6b);
    $h ^= $h >> 13;
    $h = mul32($h, 0xc2b2ae35);
    $h ^= $h >> 16;
    return $h;
}


# stop everything, check the logs, finish the plan

sub done {
    $_->stop for grep { $_->running } @instances;

    for my $i (grep { $_->can('logs') } @instances) {
        my @allow = (@expected_log, @{ $i->{allow_log} || [] });
        my @bad;
        for my $file ($i->logs) {
            for my $line (split /\n/, read_file($file)) {
                next unless $line =~ $BAD_LOG;
                next if grep { $line =~ $_ } @allow;
                push @bad, $line;
            }
        }
        ok(!@bad, "no alerts or sanitizer reports in $i->{prefix}")
            or diag(join "\n", @bad[0 .. ($#bad < 20 ? $#bad : 19)]);
    }

    done_testing();
}


END {
    local $?;
    for my $i (@instances) {
        eval { $i->stop if $i->running };
    }
}


package CanaryTest::Nginx;

use strict;
use warnings;

use Carp qw(croak);
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);

sub new {
    my ($class, $body, %o) = @_;

    my $self = bless {
        body => $body, opts => \%o, ports => { %{ $o{ports} || {} } },
        vars => { %{ $o{vars} || {} } }, allow_log => $o{allow_log},
        prefix => CanaryTest::make_prefix(), workers => $o{workers} // 1,
    }, $class;

    $self->write_conf;
    $self->start;
    return $self;
}

sub prefix { $_[0]{prefix} }
sub conf_path { "$_[0]{prefix}/nginx.conf" }
sub conf_text { CanaryTest::read_file($_[0]->conf_path) }
sub port { my ($s, $n) = @_; $s->{ports}{ $n // 'PORT' } // croak "no $n" }
sub error_log { CanaryTest::read_file("$_[0]{prefix}/logs/error.log") }
sub logs { ("$_[0]{prefix}/logs/error.log", "$_[0]{prefix}/logs/stderr.log") }
sub master_pid { $_[0]{pid} }

sub running {
    my ($self) = @_;
    return 0 unless $self->{pid};
    return 1 if waitpid($self->{pid}, WNOHANG) == 0;
    delete $self->{pid};
    return 0;
}

sub write_conf {
    my ($self) = @_;
    my $conf = CanaryTest::full_conf(
        CanaryTest::subst($self->{body}, $self->{ports}, $self->{vars},
                          $self->{prefix}),
        %{ $self->{opts} }, workers => $self->{workers});
    CanaryTest::write_file($self->conf_path, $conf);
    return $conf;
}

sub start {
    my ($self) = @_;
    my $prefix = $self->{prefix};

    my $pid = fork // croak "fork: $!";
    if ($pid == 0) {
        open STDOUT, '>>', "$prefix/logs/stderr.log";
        open STDERR, '>>', "$prefix/logs/stderr.log";
        exec $CanaryTest::NGINX, '-p', "$prefix/", '-c', 'nginx.conf'
            or POSIX::_exit(127);
    }
    $self->{pid} = $pid;

    my @listen = $self->conf_text =~ /^\s*listen\s+127\.0\.0\.1:(\d+)/mg;
    for my $port (@listen) {
        next if CanaryTest::wait_port($port, 10, sub { $self->running });
        my $why = CanaryTest::read_file("$prefix/logs/stderr.log")
                  . $self->error_log;
        $self->stop if $self->running;
        croak "nginx did not start listening on $port:\n$why";
    }

    unless ($self->wait_workers(10)) {
        my @p = $self->pids;
        $self->stop;
        croak "nginx workers did not start (have @p)";
    }
    return $self;
}

# worker pids of this master, not counting those shutting down

sub pids {
    my ($self) = @_;
    my @pids;
    return () unless $self->{pid};
    for my $stat (glob '/proc/[0-9]*/stat') {
        my $text = CanaryTest::read_file($stat) or next;
        my ($pid, $ppid) = $text =~ /^(\d+) \(.*\) \S (\d+)/s or next;
        next unless $ppid == $self->{pid};
        my $cmd = CanaryTest::read_file("/proc/$pid/cmdline");
        $cmd =~ s/\0+\z//;
        # under valgrind the title stays valgrind's: every child counts
        push @pids, $pid if $cmd =~ /worker process\z/
                            || ($ENV{CANARY_VALGRIND_DIR}
                                && $cmd !~ /cache|is shutting down/);
    }
    return sort { $a <=> $b } @pids;
}

sub wait_workers {
    my ($self, $timeout, %old) = @_;
    my $end = time + $timeout * $CanaryTest::SCALE;
    while (time < $end) {
        my @p = $self->pids;
        return 1 if @p == $self->{workers} && !grep { $old{$_} } @p;
        return 0 unless $self->running;
        sleep 0.05;
    }
    return 0;
}

# reload(body => NEW, vars => {..}, workers => N, timeout => S, hup => 1):
# rewrite the config, `nginx -s reload` (which parses the config itself
# first) or with hup => 1 a SIGHUP straight to the master (which then
# logs [emerg] and keeps the old workers on a bad config); wait until a
# full set of new workers runs; false if that did not happen

sub reload {
    my ($self, %o) = @_;

    $self->{body} = $o{body} if defined $o{body};
    $self->{vars} = { %{ $self->{vars} }, %{ $o{vars} || {} } };
    $self->{workers} = $o{workers} if defined $o{workers};
    $self->write_conf;

    my %old = map { $_ => 1 } $self->pids;

    if ($o{hup}) {
        CORE::kill 'HUP', $self->{pid};

    } else {
        my $out = `'$CanaryTest::NGINX' -p '$self->{prefix}/' -c nginx.conf -s reload 2>&1`;
        if ($? != 0) {
            Test::More::diag("nginx -s reload: $out");
            return 0;
        }
    }

    return $self->wait_workers($o{timeout} // 10, %old);
}

sub stop {
    my ($self) = @_;
    return unless $self->running;
    my $pid = $self->{pid};
    CORE::kill 'QUIT', $pid;
    my $end = time + 10 * $CanaryTest::SCALE;
    while (time < $end) {
        if (waitpid($pid, WNOHANG) == $pid) {
            delete $self->{pid};
            return 1;
        }
        sleep 0.05;
    }
    CORE::kill 'KILL', $pid;
    waitpid($pid, 0);
    delete $self->{pid};
    Test::More::diag("nginx $pid did not stop on QUIT, killed");
    return 0;
}


package CanaryTest::Redis;

use strict;
use warnings;

use Carp qw(croak);
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);

# options: password => S, unix => 1 (socket in the prefix),
# notify => 'Kh$s' (notify-keyspace-events), args => [more args]

sub new {
    my ($class, %o) = @_;
    my $self = bless {
        opts => \%o, port => $o{port} // CanaryTest::free_port(),
        prefix => CanaryTest::tmp_prefix(),
    }, $class;
    $self->{unix} = "$self->{prefix}/redis.sock" if $o{unix};
    $self->start;
    return $self;
}

sub port { $_[0]{port} }
sub unix { $_[0]{unix} }
sub password { $_[0]{opts}{password} }
sub prefix { $_[0]{prefix} }
sub log_text { CanaryTest::read_file("$_[0]{prefix}/redis.log") }

sub running {
    my ($self) = @_;
    return 0 unless $self->{pid};
    return 1 if waitpid($self->{pid}, WNOHANG) == 0;
    delete $self->{pid};
    return 0;
}

sub start {
    my ($self) = @_;
    my $o = $self->{opts};

    my @args = ('--port', $self->{port}, '--bind', '127.0.0.1',
                '--save', '', '--appendonly', 'no', '--daemonize', 'no',
                '--dir', $self->{prefix});
    push @args, '--requirepass', $o->{password} if defined $o->{password};
    push @args, '--unixsocket', $self->{unix}, '--unixsocketperm', '777'
        if $self->{unix};
    push @args, '--notify-keyspace-events', $o->{notify}
        if defined $o->{notify};
    push @args, @{ $o->{args} || [] };

    my $pid = fork // croak "fork: $!";
    if ($pid == 0) {
        open STDOUT, '>>', "$self->{prefix}/redis.log";
        open STDERR, '>&', \*STDOUT;
        exec $CanaryTest::REDIS_SERVER, @args
            or POSIX::_exit(127);
    }
    $self->{pid} = $pid;

    my $end = time + 10 * $CanaryTest::SCALE;
    while (time < $end) {
        return $self if $self->cli('PING') eq 'PONG';
        last unless $self->running;
        sleep 0.05;
    }
    my $log = $self->log_text;
    $self->stop;
    croak "redis-server did not start:\n$log";
}

# redis-cli -p PORT [-a PASS] ARGS...; output without the final newline

sub cli {
    my ($self, @args) = @_;
    my @cmd = ($CanaryTest::REDIS_CLI, '-h', '127.0.0.1', '-p', $self->{port});
    push @cmd, '-a', $self->password, '--no-auth-warning'
        if defined $self->password;

    my $pid = open(my $fh, '-|') // croak "fork: $!";
    if ($pid == 0) {
        open STDERR, '>&', \*STDOUT;
        exec @cmd, @args
            or POSIX::_exit(127);
    }
    local $/;
    my $out = <$fh> // '';
    CORE::close $fh;
    $out =~ s/\n\z//;
    return $out;
}

sub kill {
    my ($self, $sig) = @_;
    return unless $self->{pid};
    CORE::kill $sig // 'TERM', $self->{pid};
    if (($sig // 'TERM') =~ /^(?:TERM|KILL|INT|9|15|2)$/) {
        waitpid($self->{pid}, 0);
        delete $self->{pid};
    }
}

sub stop {
    my ($self) = @_;
    return unless $self->running;
    CORE::kill 'TERM', $self->{pid};
    my $end = time + 10 * $CanaryTest::SCALE;
    while (time < $end) {
        if (waitpid($self->{pid}, WNOHANG) == $self->{pid}) {
            delete $self->{pid};
            return 1;
        }
        sleep 0.05;
    }
    $self->kill('KILL');
    return 0;
}

sub restart {
    my ($self) = @_;
    $self->stop;
    return $self->start;
}


package CanaryTest::Client;

# a keep-alive HTTP/1.1 client on one 127.0.0.1 port; reconnects when the
# server closes (keepalive_requests, reloads)

use strict;
use warnings;

use Carp qw(croak);
use IO::Socket::INET;
use IO::Select;

sub new {
    my ($class, $port, %o) = @_;
    my $self = bless { port => $port, timeout => ($o{timeout} // 10) * $CanaryTest::SCALE }, $class;
    return $self;
}

sub connect {
    my ($self) = @_;
    $self->close;
    $self->{sock} = IO::Socket::INET->new(
        PeerAddr => '127.0.0.1', PeerPort => $self->{port}, Proto => 'tcp',
        Timeout => $self->{timeout})
        or croak "connect 127.0.0.1:$self->{port}: $!";
    $self->{buf} = '';
    return $self->{sock};
}

sub close {
    my ($self) = @_;
    CORE::close delete $self->{sock} if $self->{sock};
}

sub format_request {
    my ($path, @h) = @_;
    my $req = "GET $path HTTP/1.1\r\nHost: localhost\r\n";
    while (my ($k, $v) = splice @h, 0, 2) {
        $req .= "$k: $v\r\n";
    }
    return "$req\r\n";
}

# more bytes into the buffer; false on EOF

sub fill {
    my ($self) = @_;
    my $sel = IO::Select->new($self->{sock});
    $sel->can_read($self->{timeout})
        or croak "read timeout on port $self->{port}";
    my $n = sysread($self->{sock}, $self->{buf}, 65536, length $self->{buf});
    croak "read: $!" unless defined $n;
    return $n;
}

# one response from the buffer/socket: [status, {headers}, body], or
# undef if the connection closed before any byte of it

sub read_response {
    my ($self) = @_;

    my $end;
    until (($end = index $self->{buf}, "\r\n\r\n") >= 0) {
        unless ($self->fill) {
            return undef if $self->{buf} eq '';
            croak "connection closed inside headers: $self->{buf}";
        }
    }

    my $head = substr $self->{buf}, 0, $end + 4, '';
    my ($status_line, @lines) = split /\r\n/, $head;
    my ($status) = $status_line =~ m{^HTTP/\d\.\d (\d{3})}
        or croak "bad status line: $status_line";

    my %h;
    for (@lines) {
        my ($k, $v) = /^([^:]+):\s*(.*)$/ or next;
        $k = lc $k;
        $h{$k} = exists $h{$k} ? "$h{$k}, $v" : $v;
    }

    my $body = '';
    if (($h{'transfer-encoding'} // '') =~ /chunked/i) {
        while (1) {
            my $e;
            until (($e = index $self->{buf}, "\r\n") >= 0) {
                $self->fill or croak 'closed inside chunked body';
            }
            my $size = hex substr $self->{buf}, 0, $e + 2, '';
            while (length $self->{buf} < $size + 2) {
                $self->fill or croak 'closed inside chunk';
            }
            $body .= substr $self->{buf}, 0, $size, '';
            substr $self->{buf}, 0, 2, '';
            last if $size == 0;
        }
    } elsif (defined $h{'content-length'}) {
        while (length $self->{buf} < $h{'content-length'}) {
            $self->fill or croak 'closed inside body';
        }
        $body = substr $self->{buf}, 0, $h{'content-length'}, '';
    } else {
        1 while $self->fill;
        $body = $self->{buf};
        $self->{buf} = '';
        $h{connection} = 'close';
    }

    return [$status, \%h, $body];
}

# get($path, Header => value, ...) -> (status, headers, body)

sub get {
    my ($self, $path, @h) = @_;
    my ($r) = $self->pipeline([$path, @h]);
    return @$r;
}

# pipeline([$path, H => v, ...], ...) -> list of [status, headers, body],
# sent in batches over keep-alive, resent on a fresh connection when the
# server closes in the middle

sub pipeline {
    my ($self, @reqs) = @_;
    my @res;
    my $batch = 64;
    my $reconnects = 0;

    while (@res < @reqs) {
        $self->connect unless $self->{sock};
        my $from = @res;
        my $to = $from + $batch - 1;
        $to = $#reqs if $to > $#reqs;

        my $out = join '', map { format_request(@$_) } @reqs[$from .. $to];
        local $SIG{PIPE} = 'IGNORE';
        defined syswrite($self->{sock}, $out) or do {
            croak "write: $!" if ++$reconnects > @reqs / 10 + 10;
            $self->close;
            next;
        };

        for ($from .. $to) {
            my $r = $self->read_response;
            unless ($r) {
                croak 'server keeps closing' if ++$reconnects > @reqs / 10 + 10;
                $self->close;
                last;
            }
            push @res, $r;
            if (($r->[1]{connection} // '') =~ /close/i) {
                $self->close;
                last;
            }
        }
    }

    return @res;
}

1;
