#!/usr/bin/perl

# A state file of another format, or with a generation out of range
# (negative, zero, not an integer, above 2^53), is logged as invalid and
# ignored at start (the configured weights apply), and left as it is until
# a valid change replaces it.

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use JSON::PP ();
use TSTest;
use TSConsistency;

my $t = TSTest->new;
$t->backend($_) for qw(blue1 green1);

my $file = $t->testdir . '/state.json';
$t->write_config(TSConsistency::app_conf(state => $file));

sub app { $t->get('/traffic/upstreams/app', port => 'api')->{json} }

# a state file as the module writes it, with some fields replaced
sub state_text {
    my (%o) = @_;
    my $format = exists $o{format} ? $o{format}
                                   : '"nginx-traffic-shift-state"';
    my $gen = $o{generation} // 7;
    return qq({"format":$format,"version":1,"written":1795000000,)
        . qq("upstreams":{"app":{"weights":{"blue":30,"green":70},)
        . qq("generation":$gen,"updated":1795000000}},"admin_down":[]}\n);
}

# a valid file is restored: the cases below differ from it in one field
$t->write_file($file, state_text());
$t->start;
my $s = app();
is($s->{source}, 'state', 'a valid file: restored');
is($s->{generation}, 7, 'a valid file: its generation');
$t->stop;

my @cases = (
    [ 'another format', format => '"other-program-state"' ],
    [ 'a format that is not a string', format => '1' ],
    [ 'a negative generation', generation => '-3' ],
    [ 'generation zero', generation => '0' ],
    [ 'a fractional generation', generation => '7.5' ],
    [ 'a generation as a string', generation => '"7"' ],
    [ 'a generation above 2^53', generation => '1152921504606846976' ],
);

for my $case (@cases) {
    my ($what, %o) = @$case;
    my $text = state_text(%o);
    $t->write_file($file, $text);

    my $mark = $t->log_mark;
    $t->start;
    my $log = $t->error_log(since => $mark);
    ok($log =~ /\[(?:warn|error)\] .*traffic_shift_state "\Q$file\E"/
       && $log =~ /invalid|not a state file|format|generation/i,
       "$what: logged as invalid")
        or diag(join "\n", grep { /traffic_shift/ } split /\n/, $log);

    $s = app();
    is($s->{source}, 'config', "$what: ignored, source config");
    is_deeply($s->{weights}, { blue => 100, green => 0 },
        "$what: the configured weights");
    is($t->read_file($file), $text, "$what: the file is left as it was");
    ok($t->reload, "$what: reload");
    $t->stop;
    is($t->read_file($file), $text, "$what: still there after a stop");
}

# a valid change replaces the file

$t->start;
my $r = $t->patch('/traffic/upstreams/app', { active => 'green' },
                  port => 'api');
ok($r->{status} == 200 && $r->{json}{persisted},
   'a valid change replaces the file');
my $saved = TSConsistency::read_json($t, $file);
is($saved && $saved->{format}, 'nginx-traffic-shift-state',
   'with a file of the right format');
is($saved && $saved->{upstreams}{app}{generation}, $r->{json}{generation},
   'and the generation of the change');

done_testing();
