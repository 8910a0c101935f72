#!/usr/bin/perl

# Chaos, short form (make chaos runs the long one): under a bounded load
# loop, Redis killed and restarted, frozen with SIGSTOP past the timeout,
# replaced by a server that never answers, by one answering malformed
# RESP, by one answering huge replies.  No request fails, routing stays on
# the last good state, counters stay monotonic and exact, sync resumes.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use CanaryTest;
use CanaryChaos;

need_module();

for my $c (grep { $_->[0] !~ /^(?:reload|kill)-/ } chaos_cases()) {
    my ($name, $what, $fault) = @$c;
    my $r = run_case($name, $fault, down => 1, max => 20000);
    note("$name: $r->{requests} requests, resync "
         . sprintf('%.2f s', $r->{recovery} // -1));
    cmp_ok($r->{requests}, '>', 100, "$name: the load ran");
    is($r->{failed}, 0, "$name: no failed request");
    is($r->{misrouted}, 0, "$name: routing stayed on the last good state");
    ok($r->{monotonic}, "$name: counters never went down");
    is($r->{extra}, 0, "$name: counters exact")
        or diag("counted $r->{counted}, answered $r->{answered}");
    ok(defined $r->{recovery}, "$name: sync resumed");
    # one outage, one line (and one more when the case ends); the huge
    # server answers some commands well between timeouts: several outages
    next if $name eq 'huge-replies';
    my $lines = () = $r->{log} =~ /canary redis: .* is unavailable/g;
    cmp_ok($lines, '<=', 2, "$name: the outage logged once, not per try");
}

done();
