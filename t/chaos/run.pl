#!/usr/bin/perl

# make chaos: every fault of t/lib/CanaryChaos.pm under load, in its long
# form, and a table of what happened (the README's "Reliability" table).
#
#   perl t/chaos/run.pl [--down S] [--scale N] [case ...]

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/../lib";

use Getopt::Long;
use Test::More;
use CanaryTest;
use CanaryChaos;

my ($down, $scale) = (3, 1);
GetOptions('down=f' => \$down, 'scale=i' => \$scale) or die "bad options\n";
my %want = map { $_ => 1 } @ARGV;

need_module();

my @rows;
for my $c (chaos_cases()) {
    my ($name, $what, $fault) = @$c;
    next if %want && !$want{$name};
    my $r = run_case($name, $fault, down => $down, scale => $scale,
                     allow_log => [qr/exited on signal 9/,
                                  # killed holding the zone's mutex: nginx
                                  # unlocks it and says so
                                  qr/shared memory zone "canary" was locked by/]);
    push @rows, [$name, $what, $r];

    ok($r->{failed} == 0, "$name: no failed request");
    ok($r->{misrouted} == 0, "$name: routing stayed on the last good state");
    # a request resent after its connection closed may have been counted
    # on its first try (a worker killed or exiting just after answering)
    ok($r->{monotonic} && defined $r->{extra} && $r->{extra} >= 0
       && $r->{extra} <= $r->{retried}, "$name: counters monotonic and "
       . "exact (but for requests resent)")
        or diag("counted $r->{counted}, answered $r->{answered}, "
                . "retried $r->{retried}");
    ok(defined $r->{recovery}, "$name: sync resumed");
    note($r->{note}) if $r->{note};
}

my $fmt = "| %-16s | %8s | %6s | %9s | %-30s | %-8s |\n";
my $table = sprintf($fmt, 'fault', 'requests', 'failed', 'misrouted',
                    'counters', 'resync')
          . sprintf($fmt, '-' x 16, '-' x 8, '-' x 6, '-' x 9, '-' x 30,
                    '-' x 8);
for my $row (@rows) {
    my ($name, $what, $r) = @$row;
    $table .= sprintf($fmt, $name, $r->{requests}, $r->{failed},
        $r->{misrouted},
        ($r->{monotonic} ? 'monotonic' : 'WENT DOWN') . ', '
        . ($r->{exact} ? 'exact'
           : defined $r->{extra} ? sprintf('exact%+d (%d resent)',
                                           $r->{extra}, $r->{retried})
           : 'unknown'),
        defined $r->{recovery} ? sprintf('%.2f s', $r->{recovery}) : 'never');
}
$table .= "\n";
$table .= sprintf("- %s: %s%s\n", $_->[0], $_->[1],
                  $_->[2]{note} ? " ($_->[2]{note})" : '') for @rows;

print "\n$table";
mkdir "$FindBin::Bin/../../build";
CanaryTest::write_file("$FindBin::Bin/../../build/chaos.txt", $table);

done();
