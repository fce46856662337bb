#!/usr/bin/perl

# Where the state file cannot be: a path that names a directory, or ends
# in "/", fails "nginx -t" with an emerg naming the file, line and value;
# a directory the workers cannot write is reported at start, at error or
# warn level, before any change.

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use TSTest;
use TSConsistency;

my $t = TSTest->new;
$t->backend($_) for qw(blue1 green1);

my $dir = $t->testdir;
mkdir "$dir/statedir" or die "mkdir: $!";

# traffic_shift_state is on line 3 of every template
sub conf { TSConsistency::app_conf(zone => 'shift 1m', state => $_[0]) }

for my $case (['an existing directory', "$dir/statedir"],
              ['an existing directory and "/"', "$dir/statedir/"],
              ['a path ending in "/"', "$dir/newdir/"])
{
    my ($what, $value) = @$case;
    my ($rc, $out) = $t->nginx_t(conf($value));
    isnt($rc, 0, "$what: nginx -t fails");
    like($out, qr/\[emerg\] .*\Q$value\E.* in \S+nginx\.conf:3\b/,
         "$what: an emerg naming the value and nginx.conf:3");
}

SKIP: {
    skip 'workers run as the user that starts nginx', 4 unless $> == 0;

    # nginx started by root runs its workers as nobody
    my $ro = "$dir/rootonly";
    mkdir $ro or die "mkdir: $!";
    chown 0, 0, $ro;
    chmod 0755, $ro;

    my $mark = $t->log_mark;
    $t->write_config(conf("$ro/state.json"));
    $t->start;

    my $line;
    ok($t->wait_for(sub {
           ($line) = $t->error_log(since => $mark)
               =~ /^(.*\[(?:error|warn)\].*\Q$ro\E.*)$/m;
           $line;
       }, timeout => 3, what => 'a word about the directory'),
       'unwritable directory: reported at start, before any change')
        or diag($t->error_log(since => $mark));
    unlike($t->error_log(since => $mark),
           qr/\[(?:alert|crit|emerg)\].*\Q$ro\E/,
           'not at alert, crit or emerg');
    ok(!-e "$ro/state.json", 'nothing written');

    my $r = $t->patch('/traffic/upstreams/app', { active => 'green' },
                      port => 'api');
    ok($r->{status} == 200 && !$r->{json}{persisted},
       'a change is live, not persisted');
}

done_testing();
