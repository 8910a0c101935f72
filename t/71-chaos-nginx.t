#!/usr/bin/perl

# Chaos, short form (make chaos runs the long one): under a bounded load
# loop, nginx -s reload ten times in a row; a worker SIGKILLed; the sync
# worker (worker 0) SIGKILLed in the middle of reading a big user set.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use CanaryTest;
use CanaryChaos;

need_module();

for my $c (grep { $_->[0] =~ /^(?:reload|kill)-/ } chaos_cases()) {
    my ($name, $what, $fault) = @$c;
    my $r = run_case($name, $fault, down => 1, max => 20000,
                     allow_log => [qr/exited on signal 9/,
                                  # killed holding the zone's mutex: nginx
                                  # unlocks it and says so
                                  qr/shared memory zone "canary" was locked by/]);
    note("$name: $r->{requests} requests, resync "
         . sprintf('%.2f s', $r->{recovery} // -1) . " $r->{note}");
    cmp_ok($r->{requests}, '>', 100, "$name: the load ran");
    is($r->{failed}, 0, "$name: no failed request");
    is($r->{misrouted}, 0, "$name: routing stayed on the last good state");
    ok($r->{monotonic}, "$name: counters never went down");

    # a request resent after its keep-alive connection closed before any
    # byte of the answer may have been counted on its first try (by a
    # worker killed, or exiting after a reload, just after answering)
    # and a worker SIGKILLed after the last byte of an answer went out but
    # before that request's log phase ran has not counted it: at most the
    # one request it was finishing (counting happens in the log phase)
    my $lost = $name =~ /^kill-/ ? 1 : 0;
    ok(defined $r->{extra} && $r->{extra} >= -$lost
       && $r->{extra} <= $r->{retried},
       "$name: counters exact but for requests resent")
        or diag("counted $r->{counted}, answered $r->{answered}, "
                . "resent $r->{retried}");
    ok(defined $r->{recovery}, "$name: sync resumed");
}

done();
