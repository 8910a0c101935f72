#!/usr/bin/perl

# The zone under churn: every change applies whatever its rate, and the
# memory a change replaces is freed once no worker reads it.
#
# (a) 30,000 pipelined HSETs over five rollouts in a 1m zone: the last
#     value of each is in force within a second, nothing is refused, the
#     zone's use stays flat, and the burst costs a bounded number of
#     publications (rounds at most every 100 ms); then 20,000 HSETs spread
#     over 4 s (a loop, a tool syncing flags), the same.
# (b) A 150,000-member canary_users set, one SADD every 100 ms and one
#     SREM every 500 ms for 20 s: the set changes in place, the zone's use
#     stays at most twice its use after the first load, members that never
#     leave are never routed elsewhere meanwhile, and at the end status and
#     routing match Redis exactly.
#
# CANARY_CHURN_SECONDS shortens (b) while developing; the figures go to
# diag() (docs/dev/reliability.md has them).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Socket::INET;
use JSON::PP;
use Test::More;
use Time::HiRes qw(sleep time);
use CanaryTest;
use CanarySync;

need_module();

my $SECONDS = $ENV{CANARY_CHURN_SECONDS} || 20;

# one connection to Redis for many commands: RESP written, replies read

sub resp_conn {
    my ($port) = @_;
    return IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                 Proto => 'tcp') || die "redis: $!";
}

sub resp_cmd {
    return '*' . scalar(@_) . "\r\n"
           . join('', map { '$' . length($_) . "\r\n$_\r\n" } @_);
}

sub resp_read {
    my ($s) = @_;
    my $line = <$s> // die 'redis closed';
    if ($line =~ /^\$(-?\d+)/) {
        return undef if $1 < 0;
        read($s, my $buf, $1 + 2);
        return substr($buf, 0, $1);
    }
    if ($line =~ /^\*(\d+)/) {
        return [map { resp_read($s) } 1 .. $1];
    }
    $line =~ s/\r\n\z//;
    return substr($line, 1);
}

sub redis {
    my ($s, @args) = @_;
    print $s resp_cmd(@args);
    return resp_read($s);
}

sub status {
    my ($port) = @_;
    my ($st, undef, $body) = http_get($port, '/status?format=json');
    return $st == 200 ? decode_json($body) : undef;
}


# (a) a burst of hash writes over five rollouts

{
    my $r = start_redis(notify => 'Kh$s');
    my @names = map { "r$_" } 1 .. 5;
    my $rollouts = join '', map { <<"EOF" } @names;
canary_rollout $_ {
    key \$http_x_user_id;
    stable s;
    canary c;
    percent 0;
}
EOF
    my $locations = join '', map { <<"EOF" } @names;
    location /$_ {
        canary $_;
        return 200 "\$canary_variant|\$canary_bucket|\$canary_reason\\n";
    }
EOF
    my $ng = start_nginx(<<"EOF", workers => 2,
canary_zone 1m;
canary_redis %%REDIS%%;
$rollouts
server {
    listen 127.0.0.1:%%PORT%%;
$locations
    location = /status { canary_status; }
}
EOF
        vars => { REDIS => '127.0.0.1:' . $r->port });
    my $port = $ng->port;

    ok(defined wait_until(sub { (status($port) // {})->{redis}{connected} },
                          10), 'a: synced with Redis');
    sleep 0.3;
    my $s0 = status($port);
    my $used0 = $s0->{zone}{used};
    my $refused0 = $s0->{redis}{refused_values};

    # 30,000 HSETs, the last of each rollout a value of its own
    my $n = 30_000;
    my %last;
    my $pipe = '';
    for my $i (1 .. $n) {
        my $name = $names[$i % 5];
        my $p = $i > $n - 5 ? sprintf('%d.%02d', 10 * ($i % 5 + 1), 11)
                            : sprintf('%d.%02d', int(rand 100),
                                      int(rand 100));
        $last{$name} = $p;
        $pipe .= resp_cmd('HSET', "canary:rollout:$name", 'percent', $p);
    }

    my @samples;
    my $sock = resp_conn($r->port);
    my $t0 = time;
    print $sock $pipe;
    resp_read($sock) for 1 .. $n;
    my $written = time;

    my $in_force;
    while (time - $written < 10) {
        my $st = status($port) or next;
        push @samples, [time - $t0, $st->{zone}{used},
                        $st->{zone}{retired_bytes}];
        my %pct = map { $_->{name} => $_->{percent} } @{ $st->{rollouts} };
        if (!grep { ($pct{$_} // -1) != $last{$_} } @names) {
            $in_force = time - $written;
            last;
        }
        sleep 0.02;
    }
    # the zone a little longer, for the table
    for (1 .. 10) {
        sleep 0.05;
        my $st = status($port) or next;
        push @samples, [time - $t0, $st->{zone}{used},
                        $st->{zone}{retired_bytes}];
    }

    ok(defined $in_force && $in_force < 1 * $CanaryTest::SCALE,
       sprintf('a: the last value of each of 5 rollouts in force %.3f s '
               . 'after the last of %d writes (%.3f s to write them)',
               $in_force // -1, $n, $written - $t0));

    my $max = 0;
    $max < $_->[1] and $max = $_->[1] for @samples;
    ok($max <= $used0 + 64 * 1024,
       "a: zone use stays flat: $used0 before, at most $max during");
    is(log_count($ng, qr/no room in canary_zone/), 0, 'a: nothing refused');
    is(status($port)->{redis}{refused_values}, $refused0,
       'a: no refused value counted');

    my $published = log_count($ng, qr/canary sync: rollout "r\d" percent/);
    my $bound = 5 * (int((time - $t0) * 10) + 2);
    ok($published <= $bound,
       "a: $published publications for $n writes (bound $bound: a round "
       . 'at most every 100 ms)');

    for my $name (@names) {
        my ($k) = grep { $_->[1] < $last{$name} * 100 }
                  test_keys(200, $name);
        my ($st, undef, $body) = http_get($port, "/$name",
                                          'X-User-Id' => $k->[0]);
        like($body, qr/^canary\|/, "a: $name routes by $last{$name}%");
    }

    # (a2) as a loop or a tool syncing flags writes: 20,000 HSETs spread
    # over about 4 s (50 every 10 ms), then one more value each

    my $used_a2 = status($port)->{zone}{used};
    my ($max2, @samples2) = (0);
    my $t2 = time;
    for my $b (1 .. 400) {
        my $chunk = '';
        for my $i (1 .. 50) {
            $chunk .= resp_cmd('HSET', 'canary:rollout:' . $names[$i % 5],
                               'percent', sprintf('%d.%02d', int(rand 100),
                                                  int(rand 100)));
        }
        print $sock $chunk;
        resp_read($sock) for 1 .. 50;
        if ($b % 20 == 0) {
            my $st = status($port);
            push @samples2, [time - $t2, $st->{zone}{used},
                             $st->{zone}{retired_bytes}] if $st;
        }
        my $due = $t2 + $b * 0.01;
        sleep($due - time) if $due > time;
    }
    for my $name (@names) {
        $last{$name} = sprintf('%d.%02d', 60 + substr($name, 1), 22);
        redis($sock, 'HSET', "canary:rollout:$name", 'percent', $last{$name});
    }
    my $spread = time - $t2;
    my $in_force2 = wait_until(sub {
        my $st = status($port) or return 0;
        my %pct = map { $_->{name} => $_->{percent} } @{ $st->{rollouts} };
        !grep { ($pct{$_} // -1) != $last{$_} } @names;
    }, 10, 0.01);
    ok(defined $in_force2 && $in_force2 < 1 * $CanaryTest::SCALE,
       sprintf('a2: 20,000 writes over %.1f s: the last value of each in '
               . 'force %.3f s after it', $spread, $in_force2 // -1));
    $max2 < $_->[1] and $max2 = $_->[1] for @samples2;
    ok($max2 <= $used_a2 + 64 * 1024,
       "a2: zone use stays flat: $used_a2 before, at most $max2 during");
    is(log_count($ng, qr/no room in canary_zone/), 0,
       'a2: nothing refused');
    diag(sprintf('a2: zone used over time (s, used, retired bytes): %s',
                 join(' ', map { sprintf('%.2f:%d:%d', $_->[0], $_->[1],
                                         $_->[2] // 0) } @samples2)));

    diag(sprintf('a: zone used over time (s, used, retired bytes): %s',
                 join(' ', map { sprintf('%.2f:%d:%d', @$_) }
                      @samples[grep { $_ % 5 == 0 || $_ == $#samples }
                               0 .. $#samples])));
}


# (b) a large set changed a member at a time

{
    my $r = start_redis(notify => 'Kh$s');
    my $ng = start_nginx(<<'EOF', workers => 2,
canary_zone 32m;
canary_redis %%REDIS%%;

canary_rollout r {
    key $http_x_user_id;
    stable s;
    canary c;
    percent 0;
}

server {
    listen 127.0.0.1:%%PORT%%;
    location / {
        canary r;
        return 200 "$canary_variant|$canary_bucket|$canary_reason\n";
    }
    location = /status { canary_status; }
}
EOF
        vars => { REDIS => '127.0.0.1:' . $r->port });
    my $port = $ng->port;
    my $key = 'canary:rollout:r:canary_users';
    my $N = 150_000;

    my $sock = resp_conn($r->port);
    my @batch;
    for my $i (1 .. $N) {
        push @batch, "m-$i";
        if (@batch == 10_000) {
            redis($sock, 'SADD', 'staging', @batch);
            @batch = ();
        }
    }
    redis($sock, 'RENAME', 'staging', $key);

    my $count = sub {
        my $st = status($port) or return -1;
        return $st->{rollouts}[0]{canary_users} // 0;
    };
    ok(defined wait_until(sub { $count->() == $N }, 60),
       "b: $N members loaded");
    ok(defined wait_until(sub { status($port)->{zone}{retired} == 0 }, 5),
       'b: what the load replaced is freed');
    my $used1 = status($port)->{zone}{used};

    my $client = http_client($port);
    my ($bad, $asked, $adds, $rems) = (0, 0, 0, 0);
    my @samples;
    my $t0 = time;
    my ($next_add, $next_rem, $next_sample) = ($t0, $t0 + 0.5, $t0);

    while (time - $t0 < $SECONDS) {
        my $now = time;
        if ($now >= $next_add) {
            $adds++;
            redis($sock, 'SADD', $key, "n-$adds");
            $next_add += 0.1;
        }
        if ($now >= $next_rem) {
            $rems++;
            redis($sock, 'SREM', $key, "m-$rems");
            $next_rem += 0.5;
        }
        if ($now >= $next_sample) {
            my $st = status($port);
            push @samples, [$now - $t0, $st->{zone}{used},
                            $st->{zone}{retired_bytes},
                            $st->{rollouts}[0]{canary_users}]
                if $st;
            $next_sample += 0.5;
        }

        # members that never leave (m-1000 and up): always the canary
        my @keys = map { 'm-' . (1000 + int(rand($N - 1000))) } 1 .. 20;
        my @res = $client->pipeline(map { ['/', 'X-User-Id' => $_] } @keys);
        for (@res) {
            $asked++;
            $bad++ unless ($_->[2] // '') =~ /^canary\|\d+\|canary_users$/;
        }
    }

    my $want = $N + $adds - $rems;
    is(redis($sock, 'SCARD', $key), $want, "b: Redis has $want members");

    # the last SADD and SREM came together (the count does not tell): the
    # read they started ends within a second or so
    my @added = map { "n-$_" } 1 .. $adds;
    my @removed = map { "m-$_" } 1 .. $rems;
    my ($in, $out) = (0, 0);
    my $settled = wait_until(sub {
        my @res = http_client($port)->pipeline(
            map { ['/', 'X-User-Id' => $_] } @added, @removed);
        $in = grep { $_->[2] =~ /^canary\|\d+\|canary_users$/ }
              @res[0 .. $#added];
        $out = grep { $_->[2] =~ /^stable\|\d+\|percent$/ }
               @res[$#added + 1 .. $#res];
        $in == $adds && $out == $rems;
    }, 5, 0.05);
    is($in, $adds, "b: all $adds added members are canary");
    is($out, $rems, "b: all $rems removed members are no longer");
    note(sprintf 'b: settled %.2f s after the last write', $settled // -1);
    is($count->(), $want, "b: status shows $want members, as Redis");
    is($bad, 0, "b: $asked requests for members that never leave, "
                . 'all canary during the churn');

    my $max = 0;
    $max < $_->[1] and $max = $_->[1] for @samples;
    ok($max <= 2 * $used1,
       "b: zone use at most 2x its use after the first load ($used1, "
       . "at most $max during $SECONDS s)");
    is(log_count($ng, qr/no room in canary_zone/), 0, 'b: nothing refused');
    ok(log_count($ng, qr/canary_users now has \d+ members \(\d+ added/),
       'b: the set changed in place');

    diag(sprintf('b: zone used over time (s, used, retired bytes, '
                 . 'members): %s',
                 join(' ', map { sprintf('%.1f:%d:%d:%d', @$_) }
                      @samples)));
}

done();
