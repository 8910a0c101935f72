package CanaryChaos;

# Faults under load, for t/7x-chaos-*.t (short form) and `make chaos`
# (t/chaos/run.pl, long form).  Each case starts a real redis-server and
# nginx (2 workers) on loopback, sets a known state in Redis (percent 30,
# a canary user whose bucket is above 30%, a segment), runs a bounded
# load loop (a forked keep-alive client, bounded in requests and seconds)
# that checks every answer's routing against that state, injects one
# fault, and returns what happened:
#
#   requests    answers received by the load loop
#   failed      non-2xx answers plus requests that got no answer
#   misrouted   2xx answers whose variant differs from the last good state
#   counters    "exact" when the status counters grew by exactly the
#               answers received, and never went down while polled;
#               extra: counted minus answered, at most "retried" (the
#               requests resent once after a keep-alive connection closed
#               before any byte of the answer: nginx may have counted the
#               first try, e.g. a worker killed or exiting just after it)
#   recovery    seconds from the fault's end until a change made in Redis
#               was seen in routing (sync resumed)
#
# The config's own percent is 0: a rollout that fell back to its config
# during a fault would show up as misrouted answers.

use strict;
use warnings;

use Exporter qw(import);
use IO::Socket::INET;
use IO::Select;
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);

use CanaryTest;

our @EXPORT = qw(chaos_cases run_case);

my $PCT = 30;
my $SALT = 'checkout';

sub bucket { murmur3_32("$SALT:$_[0]") % 10000 }

# a canary user whose bucket is stable at 30%, and a probe key for the
# segment check, also above 30%
my ($VIP) = grep { bucket($_) >= 5000 } map { "vip$_" } 1 .. 1000;
my ($PROBE) = grep { bucket($_) >= 5000 } map { "probe$_" } 1 .. 1000;

my @KEYS = ((map { "u$_" } 1 .. 199), $VIP);


sub conf {
    return <<'EOF';
canary_zone 4m;
canary_redis 127.0.0.1:%%RPORT%% timeout=300ms;
canary_sync_interval 200ms;

canary_rollout checkout {
    key $http_x_user_id;
    stable s;
    canary c;
    percent 0;
    segment $http_x_country;
}

server {
    listen 127.0.0.1:%%PORT%%;
    location / {
        canary checkout;
        return 200 "$canary_variant|$canary_bucket|$canary_reason\n";
    }
    location = /status { canary_status; }

    # not counted (no "canary" here): the probe of a sync's arrival
    location = /probe {
        return 200 "$canary_variant_checkout|0|probe\n";
    }
}
EOF
}


sub expected {
    my ($key) = @_;
    return 'canary' if $key eq $VIP;
    return bucket($key) < $PCT * 100 ? 'canary' : 'stable';
}


# the known good state, written into a Redis

sub seed {
    my ($r, $marker) = @_;
    $r->cli('HSET', 'canary:rollout:checkout', 'percent', $PCT,
            'percent:' . ($marker // 'ZZ'), '100');
    $r->cli('SADD', 'canary:rollout:checkout:canary_users', $VIP);
    $r->cli('PUBLISH', 'canary:changed', 'checkout');
}


# one answer: [status, variant, reason] or undef when no answer came

our $RETRIED = 0;

sub request {
    my ($conn, $port, $key, @h) = @_;
    my $path = '/';
    $path = shift(@h)->[1] if @h && $h[0][0] eq 'path';

    for my $try (1, 2) {
        $$conn //= IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                         PeerPort => $port, Timeout => 5)
            or return undef;
        my $s = $$conn;
        my $req = "GET $path HTTP/1.1\r\nHost: l\r\nX-User-Id: $key\r\n"
                  . join('', map { "$_->[0]: $_->[1]\r\n" } @h) . "\r\n";
        my $ok = syswrite($s, $req);
        my $buf = '';
        my $sel = IO::Select->new($s);
        while ($ok && $buf !~ /\r\n\r\n.*\n/s) {
            last unless $sel->can_read(5);
            my $n = sysread($s, $buf, 4096, length $buf);
            last unless $n;
        }
        if ($buf =~ m{^HTTP/1\.1 (\d+)[^\n]*\n.*?\r\n\r\n(\w*)\|\d*\|(\w*)}s) {
            return [$1, $2, $3];
        }
        close $s;
        $$conn = undef;
        # an idle keep-alive connection closed by the server (a reload, a
        # worker's exit) before any byte: resent once, as clients do
        return undef if length $buf || $try == 2;
        $RETRIED++;
    }
    return undef;
}


# the load loop: a child that sends requests for @KEYS in turn until
# $max requests or $secs seconds or SIGTERM; returns a handle for
# load_stop()

sub load_start {
    my ($port, $max, $secs) = @_;
    my $file = CanaryTest::tmp_prefix() . '/load';
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        my %r = (requests => 0, failed => 0, misrouted => 0, noanswer => 0,
                 canary => 0, stable => 0);
        # stopped by a file, not a signal: a signal would interrupt a
        # request after nginx counted it and before its answer was read
        my $end = time + $secs;
        my ($conn, $i);
        while (!-e "$file.stop" && $i++ < $max && time < $end) {
            my $key = $KEYS[$i % @KEYS];
            my $a = request(\$conn, $port, $key);
            if (!$a) {
                $r{failed}++;
                $r{noanswer}++;
                next;
            }
            $r{requests}++;
            $r{failed}++ unless $a->[0] =~ /^2/;
            $r{ $a->[1] }++ if $a->[1] =~ /^(?:canary|stable)$/;
            $r{misrouted}++ if $a->[0] =~ /^2/ && $a->[1] ne expected($key);
        }
        $r{retried} = $RETRIED;
        CanaryTest::write_file($file,
            join("\n", map { "$_ $r{$_}" } sort keys %r) . "\n");
        POSIX::_exit(0);
    }
    return { pid => $pid, file => $file };
}


sub load_stop {
    my ($h) = @_;
    CanaryTest::write_file("$h->{file}.stop", '');
    waitpid $h->{pid}, 0;
    my %r = map { split / / } split /\n/, CanaryTest::read_file($h->{file});
    return \%r;
}


# requests per variant of rollout checkout from the status endpoint:
# (stable, canary), from the JSON when there is one, else from the text

sub counts {
    my ($port) = @_;
    my ($st, undef, $body) = eval { http_get($port, '/status?format=json') };
    if ($st && $st == 200 && $body =~ /^\s*\{/) {
        my %n;
        # {"name":"checkout", ... "variants":{"stable":{"requests":N
        if ($body =~ /"checkout"(.*?)(?:"name"\s*:|\z)/s) {
            my $ro = $1;
            for my $v (qw(stable canary)) {
                ($n{$v}) = $ro =~ /"$v"\s*:\s*\{[^{}]*?"requests"\s*:\s*(\d+)/s;
            }
            return ($n{stable}, $n{canary}) if defined $n{stable};
        }
    }
    ($st, undef, $body) = eval { http_get($port, '/status') };
    return () unless $st && $st == 200;
    my ($ro) = $body =~ /^checkout .*?\n((?:[ \t].*\n)+)/m or return ();
    my ($s) = $ro =~ /stable\D*?requests\D*?(\d+)/;
    my ($c) = $ro =~ /canary\D*?requests\D*?(\d+)/;
    return ($s, $c);
}


# polls the counters every 100 ms while $during runs in slices; false if
# any went down

sub watch_counters {
    my ($port, $prev, $cond) = @_;
    my $mono = 1;
    my @c = counts($port);
    if (@c && defined $c[0]) {
        for my $i (0, 1) {
            $mono = 0 if defined $prev->[$i] && $c[$i] < $prev->[$i];
        }
        @$prev = @c;
    }
    return $mono;
}


# the probe: is the segment marker $m applied (the probe key, above 30%,
# canary by segment)?

sub marker_applied {
    my ($port, $m) = @_;
    my $conn;
    my $a = request(\$conn, $port, $PROBE, [path => '/probe'],
                    ['X-Country', $m]);
    close $conn if $conn;
    return $a && $a->[1] eq 'canary';
}


# writes a new marker now and waits until it is applied: the time it
# was, or undef

sub resync_time {
    my ($r, $port, $m, $timeout) = @_;
    my $t0 = time;
    seed($r, $m);
    while (time - $t0 < $timeout) {
        return time if marker_applied($port, $m);
        sleep 0.02;
    }
    return undef;
}


# a fake server on $port until killed: mode silent (accepts, reads, never
# answers), garbage (answers each read with the next of several malformed
# RESP replies), huge (answers HGETALL with a huge hash, SCARD with a huge
# count, SSCAN with a huge batch; everything else as a real Redis would)

sub fake_server {
    my ($port, $mode, $scale) = @_;
    my $srv;
    for (1 .. 100) {
        $srv = IO::Socket::INET->new(
            LocalAddr => '127.0.0.1', LocalPort => $port, Proto => 'tcp',
            Listen => 64, ReuseAddr => 1) and last;
        sleep 0.05;
    }
    $srv or die "fake server on $port: $!";
    my $pid = fork // die "fork: $!";
    return ($pid, close $srv) if $pid;

    # a group of its own, so that stopping it also ends the children that
    # serve its accepted connections (see stop_pid)
    POSIX::setpgid(0, 0);
    $SIG{CHLD} = 'IGNORE';
    my @garbage = (
        "this is not RESP\r\n", "*-5\r\n", "\$-7\r\n", ":12abc\r\n",
        "*3\r\n\$1\r\nx\r\n:1\r\n*1\r\n", "*2\r\n\$3\r\nabc", "\x00\xff\r\n",
        "+OK\r\n" x 50, "*1\r\n" x 5000 . ":1\r\n", "\$5\r\nabcdefgh\r\n",
        "%2\r\n", "-ERR wrong\r\n" . "*4\r\n\$7\r\npercent\r\n\$3\r\n1e9\r\n"
        . "\$5\r\nstart\r\n\$20\r\n9999-99-99T99:99:99Z\r\n",
    );
    my $n = 0;
    while (1) {
        my $c = $srv->accept or next;
        my $k = fork;
        next if !defined $k || $k;
        close $srv;
        my $buf = '';
        while (sysread($c, $buf, 65536, length $buf)) {
            next if $mode eq 'silent';
            if ($mode eq 'garbage') {
                syswrite($c, $garbage[$n++ % @garbage]);
                $buf = '';
                next;
            }
            # huge: parse whole commands, answer each
            while ($buf =~ s/^\*(\d+)\r\n((?:\$\d+\r\n[^\r]*\r\n)*)//) {
                my @a = $2 =~ /\$\d+\r\n([^\r]*)\r\n/g;
                my $cmd = uc($a[0] // '');
                my $out;
                if ($cmd eq 'HGETALL') {
                    my $f = 50_000 * $scale;
                    $out = '*' . (2 * $f + 2) . "\r\n\$7\r\npercent\r\n"
                         . "\$2\r\n$PCT\r\n"
                         . join '', map { my $s = "percent:S$_";
                             '$' . length($s) . "\r\n$s\r\n\$2\r\n50\r\n" }
                           1 .. $f;
                } elsif ($cmd eq 'SCARD') {
                    $out = ":4611686018427387905\r\n";
                } elsif ($cmd eq 'SSCAN') {
                    my $m = 100_000 * $scale;
                    $out = "*2\r\n\$1\r\n7\r\n*$m\r\n"
                         . join '', map { "\$9\r\nm$_" . ('x' x (8 - length "m$_")) . "\r\n" } 1 .. $m;
                } elsif ($cmd =~ /^P?SUBSCRIBE$/) {
                    my $kind = lc $cmd;
                    $out = "*3\r\n\$" . length($kind) . "\r\n$kind\r\n\$"
                         . length($a[1]) . "\r\n$a[1]\r\n:1\r\n";
                } elsif ($cmd eq 'PING') {
                    $out = "+PONG\r\n";
                } else {
                    # a huge bulk string for anything else
                    $out = '$' . (8 << 20) * $scale . "\r\n"
                         . ('A' x ((8 << 20) * $scale)) . "\r\n";
                }
                syswrite($c, $out);
            }
        }
        POSIX::_exit(0);
    }
}


sub stop_pid {
    my ($pid) = @_;
    return unless $pid;
    kill 'KILL', -$pid;    # a fake server's group: its connections too
    kill 'KILL', $pid;
    waitpid $pid, 0;
}


# the pid of the sync worker: the nginx worker with a connection to Redis

sub sync_worker {
    my ($ng, $rport) = @_;
    my %w = map { $_ => 1 } $ng->pids;
    my $out = `ss -tnpH dst 127.0.0.1:$rport 2>/dev/null`;
    for my $pid ($out =~ /pid=(\d+)/g) {
        return $pid if $w{$pid};
    }
    return undef;
}


# the cases: name => [description, sub (ctx) -> {recovery, note}]

sub fault_restart {
    my ($c) = @_;
    my $r = $c->{redis};
    sleep $c->{before};
    $r->cli('SAVE');            # restarted with its data, as with an RDB
    $r->kill('KILL');
    sleep $c->{down};
    $r->start;
    return { back => time };
}

sub fault_sigstop {
    my ($c) = @_;
    my $r = $c->{redis};
    sleep $c->{before};
    $r->kill('STOP');
    sleep $c->{down};
    $r->kill('CONT');
    return { back => time, keep_data => 1 };
}

sub fault_fake {
    my ($mode) = @_;
    return sub {
        my ($c) = @_;
        my $r = $c->{redis};
        sleep $c->{before};
        $r->cli('SAVE');
        $r->kill('KILL');
        my ($pid) = fake_server($r->port, $mode, $c->{scale});
        sleep $c->{down};
        stop_pid($pid);
        $r->start;
        return { back => time };
    };
}

sub fault_reload {
    my ($c) = @_;
    my $ng = $c->{nginx};
    sleep $c->{before};
    for (1 .. 10) {
        kill 'HUP', $ng->master_pid;
        sleep 0.2;
    }
    $ng->wait_workers(20);
    return { back => time, keep_data => 1 };
}

sub fault_kill_worker {
    my ($c) = @_;
    my $ng = $c->{nginx};
    sleep $c->{before};
    my $sync = sync_worker($ng, $c->{redis}->port) // 0;
    my ($other) = grep { $_ != $sync } $ng->pids;
    kill 'KILL', $other;
    sleep 0.5;
    $ng->wait_workers(10);
    return { back => time, keep_data => 1 };
}

# worker 0 killed while it reads a big user set in SSCAN batches

sub fault_kill_sync {
    my ($c) = @_;
    my $ng = $c->{nginx};
    my $r = $c->{redis};
    sleep $c->{before};
    my $n = 30_000 * $c->{scale};
    $r->cli('EVAL', "for i=1,$n,1000 do local t={} for j=i,math.min(i+999,$n) "
            . "do t[#t+1]='big'..j end redis.call('SADD',KEYS[1],unpack(t)) "
            . "end return 1", 1, 'canary:rollout:checkout:stable_users');
    my $sync = sync_worker($ng, $r->port);
    $r->cli('PUBLISH', 'canary:changed', 'checkout');
    sleep 0.05;
    kill 'KILL', $sync if $sync;
    $c->{note} = $sync ? "killed $sync in the middle of a $n-member SSCAN"
                       : 'sync worker not found';
    sleep 0.5;
    $ng->wait_workers(10);
    return { back => time, keep_data => 1 };
}


sub chaos_cases {
    return (
        ['redis-restart', 'Redis killed (SIGKILL), restarted from its '
         . 'RDB after the outage', \&fault_restart],
        ['redis-sigstop', 'Redis frozen (SIGSTOP) for longer than the '
         . '300 ms timeout, then SIGCONT', \&fault_sigstop],
        ['silent-server', 'Redis replaced by a server that accepts and '
         . 'never answers', fault_fake('silent')],
        ['malformed-resp', 'Redis replaced by a server answering '
         . 'malformed RESP', fault_fake('garbage')],
        ['huge-replies', 'Redis replaced by a server answering huge '
         . 'replies (a 100k-field hash, SCARD 2^62+1, 100k-member SSCAN '
         . 'batch, 8 MB bulk strings)', fault_fake('huge')],
        ['reload-x10', 'nginx -s reload ten times in a row, 200 ms apart',
         \&fault_reload],
        ['kill-worker', 'a worker other than the sync worker SIGKILLed',
         \&fault_kill_worker],
        ['kill-sync-worker', 'the sync worker (worker 0) SIGKILLed in '
         . 'the middle of reading a big user set', \&fault_kill_sync],
    );
}


# run_case(name, fault, %o): o = before (s), down (s), max (requests),
# scale; returns the result hash described at the top

sub run_case {
    my ($name, $fault, %o) = @_;
    my %c = (before => $o{before} // 0.5, down => $o{down} // 1.5,
             scale => $o{scale} // 1);

    my $r = start_redis(notify => 'Kh$s');
    my $ng = start_nginx(conf(), workers => 2,
                         vars => { RPORT => $r->port },
                         allow_log => $o{allow_log} || []);
    my $port = $ng->port;
    @c{qw(redis nginx)} = ($r, $ng);

    seed($r);
    my $t0 = time;
    1 until marker_applied($port, 'ZZ') || time - $t0 > 10 || !sleep 0.02;

    my @c0 = counts($port);
    my $load = load_start($port, $o{max} // 1e9, 60 + $c{down} * 4);

    # the fault runs in a child; this process polls the counters
    my $ff = CanaryTest::tmp_prefix() . '/fault';
    my $fpid = fork // die;
    if ($fpid == 0) {
        my $f = $fault->(\%c);
        CanaryTest::write_file($ff, join "\n",
            map { "$_ " . ($f->{$_} // $c{$_} // '') } qw(back keep_data note));
        POSIX::_exit(0);
    }
    my @prev = @c0;
    my $mono = 1;
    while (waitpid($fpid, WNOHANG) == 0) {
        $mono &&= watch_counters($port, \@prev);
        sleep 0.1;
    }
    my %f = map { /^(\w+) ?(.*)$/ } split /\n/, CanaryTest::read_file($ff);
    # the fault's child restarted Redis: this process's object must know
    # its new pid to stop it at the end
    $r->{pid} = undef;
    my ($rpid) = `ss -tlnpH src 127.0.0.1:@{[$r->port]} 2>/dev/null`
                 =~ /pid=(\d+)/;

    # sync resumed: a new marker in Redis shows in routing
    my $rt = resync_time($r, $port, 'M' . int(rand 1e6), 15);
    my $recovery = defined $rt ? $rt - $f{back} : undef;

    sleep 0.3;
    my $l = load_stop($load);
    $mono &&= watch_counters($port, \@prev);
    my @c1 = counts($port);

    # counted minus answered: 0 when exact; a worker killed with a
    # request in flight may have counted it and died before the client
    # read the answer (the client then retried it)
    my $extra = @c0 && @c1 && defined $c1[0]
        ? ($c1[0] - $c0[0]) - $l->{stable} + ($c1[1] - $c0[1]) - $l->{canary}
        : undef;
    my $exact = @c0 && @c1 && defined $c1[0]
        && ($c1[0] - $c0[0]) >= $l->{stable}
        && ($c1[1] - $c0[1]) >= $l->{canary} && $extra == 0;

    kill 'KILL', $rpid if $rpid && $rpid != ($r->{pid} // 0);
    $ng->stop;

    return {
        name => $name, requests => $l->{requests}, failed => $l->{failed},
        noanswer => $l->{noanswer}, misrouted => $l->{misrouted},
        monotonic => $mono, exact => $exact ? 1 : 0, extra => $extra,
        retried => $l->{retried},
        counted => @c1 ? join('/', map { $c1[$_] - $c0[$_] } 0, 1) : '?',
        answered => "$l->{stable}/$l->{canary}",
        recovery => $recovery, note => $f{note} // '',
        set_done => scalar(() = $ng->error_log
                           =~ /stable_users now has \d+ members/g),
        log => $ng->error_log,
    };
}

1;
