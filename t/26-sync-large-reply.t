#!/usr/bin/perl

# Replies larger than what the sync worker reads in one event-loop turn
# (a 2 MB field in the rollout's hash: 128 reads of 16 KB, 8 turns) and a
# burst of messages on the subscribed connection are read across turns:
# the rounds still complete and later changes still apply.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use IO::Socket::INET;
use CanaryTest;
use CanarySync;

need_module();

my @keys = test_keys(300);
my $key = 'canary:rollout:checkout';

my $r = start_redis();
my $ng = start_nginx(sync_conf(extra => 'canary_sync_interval 100ms;'),
                     vars => { REDIS => '127.0.0.1:' . $r->port, PCT => 5 });
my $port = $ng->port;

# RESP over a socket of its own: redis-cli cannot take a 2 MB argument

my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $r->port,
                              Proto => 'tcp', Timeout => 10)
    or die "redis: $!";

sub resp {
    my $cmd = '*' . @_ . "\r\n";
    $cmd .= '$' . length($_) . "\r\n$_\r\n" for @_;
    return $cmd;
}

sub call {
    my (@cmds) = @_;
    print $s join '', map { resp(@$_) } @cmds;
    for (@cmds) {
        my $line = <$s>;
        die "redis: $line" if $line =~ /^-/;
    }
}

call(['HSET', $key, 'percent', '20', 'junk', 'x' x (2 * 1024 * 1024)]);
ok(defined wait_until(sub { routes_by($port, 20, \@keys) }, 10),
   'a round with a 2 MB reply completes');

call(['HSET', $key, 'percent', '40']);
ok(defined wait_until(sub { routes_by($port, 40, \@keys) }, 10),
   'and the next one too');

# 5,000 messages at once on the subscribed connection, then a change
call(map { ['PUBLISH', 'canary:changed', 'nothing'] } 1 .. 5000);
call(['HSET', $key, 'percent', '60']);
ok(defined wait_until(sub { routes_by($port, 60, \@keys) }, 10),
   'a burst of messages is read and the change applies');

close $s;
done();
