package CanarySync;

# Helpers for the Redis sync tests: keys of known buckets, a check that
# routing follows a given percent, polling with a deadline, and a tiny
# fake Redis server that answers garbage.

use strict;
use warnings;

use Exporter qw(import);
use IO::Socket::INET;
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);

use CanaryTest;

our @EXPORT = qw(time_to_route sync_conf test_keys routes_by wait_until variants
                 fake_redis log_count);


# an nginx config with one rollout "checkout" and / answering
# "variant|bucket|reason|pid"; %%REDIS%% holds canary_redis's arguments

sub sync_conf {
    my (%o) = @_;
    my $extra = $o{extra} // '';
    my $rollout = $o{rollout} // '';
    my $zone = $o{zone} // '1m';
    return <<"EOF";
canary_zone $zone;
canary_redis %%REDIS%%;
$extra

canary_rollout checkout {
    key \$http_x_user_id;
    stable s;
    canary c;
    percent %%PCT%%;
    segment \$http_x_country;
    $rollout
}

server {
    listen 127.0.0.1:%%PORT%% reuseport;
    location / {
        canary checkout;
        return 200 "\$canary_variant|\$canary_bucket|\$canary_reason|\$pid\\n";
    }
}
EOF
}


# keys spread over the buckets: [key, bucket]

sub test_keys {
    my ($n, $salt) = @_;
    $salt //= 'checkout';
    return map { my $k = "u$_"; [$k, murmur3_32("$salt:$k") % 10000] }
           1 .. ($n // 200);
}


# answers for the keys over one connection: list of {variant,bucket,pid}

sub variants {
    my ($port, $keys, @h) = @_;
    my @res = http_client($port)->pipeline(
        map { ['/', 'X-User-Id' => $_->[0], @h] } @$keys);
    return map {
        my ($st, undef, $body) = @$_;
        chomp $body;
        my %a;
        @a{qw(variant bucket reason pid)} = split /\|/, $body, -1;
        $a{status} = $st;
        \%a;
    } @res;
}


# true when every key routes as the percent says

sub routes_by {
    my ($port, $pct, $keys, @h) = @_;
    my @a = variants($port, $keys, @h);
    for my $i (0 .. $#$keys) {
        return 0 unless $a[$i]{status} == 200;
        my $want = $keys->[$i][1] < $pct * 100 ? 'canary' : 'stable';
        return 0 unless $a[$i]{variant} eq $want;
    }
    return 1;
}


# runs $change (an HSET...), then times how long until a key whose variant
# differs between $from and $to percent routes by $to: one request per
# poll, so the figure is the propagation, not the time to check many keys;
# returns seconds or undef after $timeout

sub time_to_route {
    my ($port, $from, $to, $keys, $change, $timeout) = @_;
    my ($k) = grep { ($_->[1] < $from * 100) != ($_->[1] < $to * 100) }
              @$keys;
    die "no key tells $from% from $to%" unless $k;
    my $want = $k->[1] < $to * 100 ? 'canary' : 'stable';
    my $c = http_client($port);
    $change->();
    my $t0 = time;
    while (time - $t0 < ($timeout // 5)) {
        my ($res) = $c->pipeline(['/', 'X-User-Id' => $k->[0]]);
        return time - $t0 if ($res->[2] // '') =~ /^\Q$want\E\|/;
        sleep 0.001;
    }
    return undef;
}


# polls $cond every few ms until true or $timeout seconds pass; returns
# the seconds it took, or undef

sub wait_until {
    my ($cond, $timeout, $step) = @_;
    my $t0 = time;
    while (1) {
        return time - $t0 if $cond->();
        return undef if time - $t0 > $timeout;
        sleep($step // 0.005);
    }
}


sub log_count {
    my ($ng, $re) = @_;
    return scalar grep { /$re/ } split /\n/, $ng->error_log;
}


# a fake Redis on a port: accepts, and answers $reply to whatever comes
# (garbage by default); returns its pid (kill it when done)

sub fake_redis {
    my ($port, $reply) = @_;
    $reply //= "this is not RESP\r\n";
    # the Redis it replaces may still be closing its listener: retry the
    # bind for up to 5 s
    my $srv;
    for (1 .. 100) {
        $srv = IO::Socket::INET->new(
            LocalAddr => '127.0.0.1', LocalPort => $port, Proto => 'tcp',
            Listen => 16, ReuseAddr => 1) and last;
        sleep 0.05;
    }
    $srv or die "fake redis on $port: $!";
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        $SIG{CHLD} = 'IGNORE';
        while (1) {
            my $c = $srv->accept or next;
            my $k = fork;
            next if !defined $k || $k;
            close $srv;
            while (sysread($c, my $buf, 65536)) {
                syswrite($c, $reply);
            }
            POSIX::_exit(0);
        }
    }
    close $srv;
    return $pid;
}

1;
