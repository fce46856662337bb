#!/usr/bin/perl

# The operator scripts parse (bash -n) and, when shellcheck is installed,
# have no shellcheck finding.

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use File::Temp qw(tempdir);
use TSCli qw(run_capture $ROOT);

my @scripts = map { "$ROOT/scripts/$_" } qw(traffic-shift demo);
my $dir = tempdir(CLEANUP => 1);

for my $s (@scripts) {
    ok(-x $s, "$s is executable");
    my $r = run_capture({ dir => $dir }, 'bash', '-n', $s);
    is($r->{rc}, 0, "bash -n $s") or diag($r->{err});
}

SKIP: {
    my $sc = (grep { -x "$_/shellcheck" } split /:/, $ENV{PATH} // '')[0];
    skip('shellcheck is not installed', scalar @scripts) unless $sc;
    for my $s (@scripts) {
        my $r = run_capture({ dir => $dir }, "$sc/shellcheck", $s);
        is($r->{rc}, 0, "shellcheck $s") or diag($r->{out});
    }
}

done_testing();
