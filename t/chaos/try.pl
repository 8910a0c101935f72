use strict; use warnings;
use lib 't/lib';
use Test::More;
use CanaryTest; use CanaryChaos;
my %want = map { $_ => 1 } @ARGV;
for my $c (chaos_cases()) {
    next if %want && !$want{$c->[0]};
    my $res = run_case($c->[0], $c->[2], down => 1.5);
    diag(join ' ', map { "$_=" . ($res->{$_} // 'undef') } grep { $_ ne 'log' } sort keys %$res);
    diag(join "\n", grep { /\[(?:error|alert|crit|emerg)\]/ } split /\n/, $res->{log});
}
ok(1);
done_testing();
