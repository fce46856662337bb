#!/usr/bin/perl

# The operator scripts and the bash completion parse (bash -n) and, when shellcheck is installed,
# have no shellcheck finding.

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use File::Temp qw(tempdir);
use TSCli qw(run_capture $ROOT);

my @scripts = ((map { "$ROOT/scripts/$_" }
                    qw(traffic-shift demo deb-smoke dist-check)),
               "$ROOT/contrib/bash-completion/traffic-shift");
my $dir = tempdir(CLEANUP => 1);

for my $s (@scripts) {
    ok(-x $s || $s =~ /completion/, "$s is executable");
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

# the completion: commands, actions of rollout, options
{
    my $comp = "$ROOT/contrib/bash-completion/traffic-shift";
    for my $c (['st', 'status'], ['rollout p', 'pause promote'],
               ['--ret', '--retry'], ['status --wat', '--watch'],
               ['help w', 'wait-healthy']) {
        my ($line, $want) = @$c;
        my @w = ('traffic-shift', split / /, $line);
        my $r = run_capture({ dir => $dir }, 'bash', '-c',
            'source "$1"; shift; COMP_WORDS=("$@"); '
            . 'COMP_CWORD=$(($# - 1)); _traffic_shift; '
            . 'echo "${COMPREPLY[*]}"', 'bash', $comp, @w);
        is($r->{out}, "$want\n", "completion of \"$line\": $want");
    }
}

done_testing();
