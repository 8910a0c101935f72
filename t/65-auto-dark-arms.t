#!/usr/bin/perl

# t/64-auto-dark.t with arms: both rollouts have two arms (blue, green,
# 1:1) instead of one canary, so the dark phase's shadow figures ("d:")
# travel beside the arms' own ("arm:<name>:") and are read back from the
# row after the arms'.  Everything t/64-auto-dark.t checks holds:
#
#   - a canary whose shadows fail is rolled back in the dark phase, no
#     user ever sees it, percent never above 0, history and alert say
#     phase "dark", the decision counts both nodes;
#   - a healthy one passes 2 dark intervals and goes on to step 1, where
#     users reach the arms.

use strict;
use warnings;

use FindBin;

$ENV{CANARY_DARK_ARMS} = 1;
exec $^X, "$FindBin::Bin/64-auto-dark.t" or die "exec: $!";
