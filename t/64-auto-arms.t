#!/usr/bin/perl

# "auto" with arms, over two nginx nodes sharing one redis-server,
# intervals of 1 s: the arm whose backend fails (green) is switched off
# ("arm:green" off, a history entry "arm_off" and an alert naming it)
# while the healthy arm (blue) and the ramp carry on to promoted; blue's
# users never move, green's go to stable; the fleet's figures hold each
# arm's own.  When every arm fails, the rollout is rolled back as a
# two-sided one is.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP ();
use POSIX ();
use Test::More;
use Time::HiRes qw(sleep time);
use CanaryTest;
use CanarySync qw(wait_until);
use CanaryAuto;

need_module();

my $r = start_redis();
my $rport = $r->port;
my $key = 'canary:rollout:exp';
my $fail_green = $r->prefix . '/fail-green';
my $fail_blue = $r->prefix . '/fail-blue';

sub node_conf {
    my ($id) = @_;
    return <<"EOF";
canary_zone 1m;
canary_redis 127.0.0.1:$rport;
canary_node_id $id;
canary_sync_interval 200ms;

upstream stable_up { server 127.0.0.1:%%PORT_S%%; }
upstream blue_up   { server 127.0.0.1:%%PORT_B%%; }
upstream green_up  { server 127.0.0.1:%%PORT_G%%; }

canary_rollout exp {
    key \$arg_u;
    stable  stable_up;
    variant blue  blue_up;
    variant green green_up;
    auto steps=10,50,100 interval=1s max_error_rate=5% min_requests=10;
}

server {
    listen 127.0.0.1:%%PORT%%;
    location / {
        canary exp;
        proxy_pass http://\$canary_upstream;
    }
    location = /v {
        canary exp;
        return 200 "\$canary_variant \$canary_reason\\n";
    }
    location = /canary { canary_status; }
}

server {
    listen 127.0.0.1:%%PORT_S%%;
    location / { return 200 "stable\\n"; }
}

server {
    listen 127.0.0.1:%%PORT_B%%;
    location / {
        if (-f %%FAIL_BLUE%%) { return 500 "blue failing\\n"; }
        return 200 "blue\\n";
    }
}

server {
    listen 127.0.0.1:%%PORT_G%%;
    location / {
        if (-f %%FAIL_GREEN%%) { return 500 "green failing\\n"; }
        return 200 "green\\n";
    }
}
EOF
}

my %vars = (FAIL_GREEN => $fail_green, FAIL_BLUE => $fail_blue);
my $na = start_nginx(node_conf('node-a'), vars => \%vars);
my $nb = start_nginx(node_conf('node-b'), vars => \%vars);
my @nodes = ($na, $nb);

my $user = 0;

sub traffic {
    my ($n) = @_;
    for my $ng (@nodes) {
        http_client($ng->port)->pipeline(map { ['/?u=' . $user++] } 1 .. $n);
    }
}

sub drive {
    my ($cond, $timeout, $n) = @_;
    my $t0 = time;
    while (time - $t0 < $timeout) {
        return time - $t0 if $cond->();
        traffic($n // 40);
        sleep 0.05;
    }
    return $cond->() ? time - $t0 : undef;
}

# the variant and reason of fixed users, on one node
my @users = map { "fixed-$_" } 1 .. 600;

sub arms_of {
    my ($ng) = @_;
    my @res = http_client($ng->port)->pipeline(map { ["/v?u=$_"] } @users);
    return map { my $b = $_->[2]; chomp $b; $b } @res;
}

sub history {
    return history_of($r, $key);
}

# an alert subscriber: redis-cli SUBSCRIBE writing to a file

my $alerts_file = $r->prefix . '/alerts.txt';
my $sub_pid = fork // die "fork: $!";
if ($sub_pid == 0) {
    open STDOUT, '>', $alerts_file or POSIX::_exit(1);
    open STDERR, '>&', \*STDOUT;
    exec $CanaryTest::REDIS_CLI, '-h', '127.0.0.1', '-p', $rport,
         'SUBSCRIBE', 'canary:alerts'
        or POSIX::_exit(127);
}
END { kill 'TERM', $sub_pid if $sub_pid; }

ok(defined wait_until(sub {
       $r->cli('PUBSUB', 'NUMSUB', 'canary:alerts') =~ /\n1$/ }, 5),
   'alert subscriber is listening');
ok(defined wait_until(sub { $r->cli('GET', 'canary:leader') =~ /^node-/ },
                      10), 'a node holds the lease');

sub alerts {
    my @a;
    for (split /\n/, CanaryTest::read_file($alerts_file) // '') {
        next unless /^\{/;
        push @a, JSON::PP::decode_json($_);
    }
    return @a;
}


# 1. green's backend fails from the start: green is switched off, blue
#    and the ramp carry on to promoted

touch($fail_green);

sub touch { open my $fh, '>', $_[0] or die "$_[0]: $!"; close $fh; }

$r->cli('HSET', $key, 'state', 'progressing');

ok(defined wait_until(sub { ($r->cli('HGET', $key, 'percent') // '') eq '10' },
                      10), 'the ramp starts at 10%');
# in force on node A within a round (rounds start at most 100 ms apart)
my @at10;
wait_until(sub { @at10 = arms_of($na);
                 (grep { /^(?:blue|green) percent$/ } @at10) > 20 },
           5, 0.02);
my %blue10 = map { $users[$_] => 1 } grep { $at10[$_] eq 'blue percent' }
             0 .. $#users;
my %green10 = map { $users[$_] => 1 } grep { $at10[$_] eq 'green percent' }
              0 .. $#users;
cmp_ok(scalar keys %blue10, '>', 10, scalar(keys %blue10) . ' users in blue');
cmp_ok(scalar keys %green10, '>', 10, scalar(keys %green10) . ' users in green');

my $t = drive(sub {
    ($r->cli('HGET', $key, 'arm:green') // '') eq 'off' }, 20);
ok(defined $t, 'green switched off in Redis') or diag explain [history()];

my @h = history();
my ($off) = grep { $_->{event} eq 'arm_off' } @h;
ok($off, 'history: an arm_off entry');
is($off->{arm}, 'green', 'history: it names green');
like($off->{reason} // '', qr/^arm "green" failed: /, 'history: the reason');
cmp_ok($off->{canary_errors} // 0, '>', 0, 'history: green\'s own errors');

ok(defined wait_until(sub { grep { $_->{event} eq 'arm_off' } alerts() }, 5),
   'an alert');
my ($alert) = grep { $_->{event} eq 'arm_off' } alerts();
is("$alert->{rollout} $alert->{arm}", 'exp green', 'the alert names the arm');

like($na->error_log . $nb->error_log,
     qr/canary auto: "exp" switching arm "green" off: arm "green" failed/,
     'the leader logs it');

# the ramp carries on with blue

$t = drive(sub { ($r->cli('HGET', $key, 'state') // '') eq 'promoted' }, 20);
ok(defined $t, 'blue promoted') or diag explain [history()];
is($r->cli('HGET', $key, 'percent'), '100', 'at 100%');
my @events = map { $_->{event} } grep { $_->{event} !~ /^(?:operator|hold)$/ }
             history();
ok((grep { $_ eq 'promote' } @events) && !(grep { $_ eq 'rollback' } @events),
   'history: promoted, never rolled back: @events');

# blue's users never moved; green's went to stable; at 100% every other
# user is in blue or, when green would have had them, in stable

for my $ng (@nodes) {
    ok(defined wait_until(sub {
           my @a = arms_of($ng);
           !grep { $a[$_] !~ /^(?:blue|stable) / } 0 .. $#users }, 5),
       'node ' . $ng->port . ' synced');
    my @a = arms_of($ng);
    my @moved = grep { $blue10{ $users[$_] } && $a[$_] ne 'blue percent' }
                0 .. $#users;
    ok(!@moved, 'node ' . $ng->port . ': every blue user of 10% still blue');
    my @g = grep { $green10{ $users[$_] } && $a[$_] ne 'stable arm_off' }
            0 .. $#users;
    ok(!@g, 'node ' . $ng->port . ': every green user of 10% stable, arm_off');
    is(scalar(grep { /^green/ } @a), 0, 'nobody in green');
}

my $fig = join ' ', grep { /^arm:/ } split /\n/,
          join "\n", map { $r->cli('HKEYS', $_) }
                     split /\n/, $r->cli('KEYS', "$key:fig:*");
like($fig, qr/arm:blue:req/, 'the fleet\'s figures hold blue\'s own');
like($fig, qr/arm:green:err/, 'and green\'s errors');


# 2. every arm failing: the rollout is rolled back as a whole, no arm
#    switched off by the controller (enough traffic that both arms have
#    min_requests in every interval: an arm that fails while the other
#    cannot be judged yet is switched off, as in 1.)

$r->cli('DEL', $key, "$key:history");
$r->cli('PUBLISH', 'canary:changed', 'exp');
touch($fail_blue);
sleep 0.5;
$r->cli('HSET', $key, 'state', 'progressing');

$t = drive(sub { ($r->cli('HGET', $key, 'state') // '') eq 'rolled_back' },
           20, 200);
ok(defined $t, 'both arms failing: rolled back') or diag explain [history()];
ok(!grep({ $_->{event} eq 'arm_off' } history()),
   'no arm_off when every arm fails');
is($r->cli('HGET', $key, 'arm:blue') // '', '', 'blue not switched off');

unlink $fail_green, $fail_blue;

done();
