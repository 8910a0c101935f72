package CanaryAuto;

# Helpers for the "auto" tests: a rollout's history stream as a list of
# entries, and a subscriber that writes <prefix>alerts to a file.

use strict;
use warnings;

use Exporter qw(import);
use POSIX ();

use CanaryTest;
use CanarySync qw(wait_until);

our @EXPORT = qw(history_of subscribe_alerts read_alerts);


# XRANGE <key>:history - +, as a list of {id, field => value}

sub history_of {
    my ($r, $key) = @_;
    my @lines = split /\n/, $r->cli('XRANGE', "$key:history", '-', '+');
    my @entries;
    while (@lines) {
        my $line = shift @lines;
        if ($line =~ /^\d{13}-\d+$/) {
            push @entries, { id => $line };
            next;
        }
        next unless @entries;
        my $v = shift @lines;
        $entries[-1]{$line} = $v // '';
    }
    return @entries;
}


# redis-cli SUBSCRIBE <channel> writing to <redis prefix>/alerts.txt;
# returns its pid once Redis counts the subscriber, undef if it does not

sub subscribe_alerts {
    my ($r, $channel) = @_;
    $channel //= 'canary:alerts';
    my $file = $r->prefix . '/alerts.txt';
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDOUT, '>', $file or POSIX::_exit(1);
        open STDERR, '>&', \*STDOUT;
        exec $CanaryTest::REDIS_CLI, '-h', '127.0.0.1', '-p', $r->port,
             'SUBSCRIBE', $channel
            or POSIX::_exit(127);
    }
    return defined wait_until(sub {
        $r->cli('PUBSUB', 'NUMSUB', $channel) =~ /\n1$/ }, 5) ? $pid : undef;
}


# what the subscriber has written so far

sub read_alerts {
    my ($r) = @_;
    return CanaryTest::read_file($r->prefix . '/alerts.txt') // '';
}

1;
