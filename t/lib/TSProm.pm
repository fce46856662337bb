package TSProm;

# A checker of the Prometheus text exposition format (version 0.0.4), for
# the tests of GET /metrics.  Core Perl only.
#
#   my $m = TSProm::parse($text);
#   is_deeply($m->{errors}, [], 'valid exposition');
#   is(TSProm::value($m, 'traffic_shift_requests_total',
#                    upstream => 'app', pool => 'blue'), 50);
#
# parse() returns
#   errors   list of "line N: problem" (empty when the text is valid)
#   types    { family => counter|gauge|... }
#   help     { family => text }
#   samples  [ { name, labels => { k => v }, value, line } ] in order
#   series   { 'name{k="v",...}' (labels sorted) => value }
#
# Checked: metric and label names, label value escapes (\\ \" \n only),
# HELP escapes, one HELP and one TYPE per family, TYPE before the family's
# samples, the samples of a family contiguous, no duplicate series, values
# that are numbers, NaN or +-Inf, optional integer timestamps, counters
# not negative, a final newline.

use strict;
use warnings;

my $NAME = qr/[a-zA-Z_:][a-zA-Z0-9_:]*/;
my $LABEL = qr/[a-zA-Z_][a-zA-Z0-9_]*/;
my $VALUE = qr/[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?
               |[-+]?Inf|NaN/x;

sub parse {
    my ($text) = @_;

    my (@errors, %types, %help, @samples, %series, %done, $current);
    my $err = sub { push @errors, "line $_[0]: $_[1]" };

    push @errors, 'no final newline' if length $text && $text !~ /\n\z/;

    my $n = 0;
    for my $line (split /\n/, $text) {
        $n++;

        next if $line eq '';

        if ($line =~ /^#\s*(HELP|TYPE)\s+(\S+)(?:\s(.*))?$/) {
            my ($kw, $family, $rest) = ($1, $2, $3 // '');
            $err->($n, "bad metric name '$family'")
                unless $family =~ /^$NAME$/;
            if ($kw eq 'HELP') {
                $err->($n, "second HELP for $family") if exists $help{$family};
                $err->($n, "bad escape in HELP of $family")
                    if $rest =~ /\\(?![\\n])/;
                $help{$family} = $rest;
            } else {
                $err->($n, "second TYPE for $family")
                    if exists $types{$family};
                $err->($n, "bad type '$rest' for $family")
                    unless $rest =~ /^(?:counter|gauge|histogram|summary|
                                         untyped)$/x;
                $err->($n, "TYPE of $family after its samples")
                    if $done{$family} || (defined $current
                                          && $current eq $family);
                $types{$family} = $rest;
            }
            next;
        }

        next if $line =~ /^#/;

        my ($name, $labels, $value, $ts) =
            $line =~ /^($NAME)(?:\{(.*)\})?[ \t]+(\S+)(?:[ \t]+(\S+))?$/;

        if (!defined $name) {
            $err->($n, "not a sample: '$line'");
            next;
        }

        my %l;
        if (defined $labels) {
            my $rest = $labels;
            while (length $rest) {
                if ($rest !~ s/^\s*($LABEL)\s*=\s*"((?:[^"\\\n]|\\.)*)"\s*//)
                {
                    $err->($n, "bad labels '{$labels}'");
                    last;
                }
                my ($k, $v) = ($1, $2);
                if ($v =~ /\\(?![\\"n])/) {
                    $err->($n, "bad escape in label $k");
                }
                $v =~ s/\\(.)/$1 eq 'n' ? "\n" : $1/ge;
                $err->($n, "label $k twice") if exists $l{$k};
                $l{$k} = $v;
                last if $rest eq '';
                if ($rest !~ s/^,//) {
                    $err->($n, "bad labels '{$labels}'");
                    last;
                }
            }
        }

        $err->($n, "bad value '$value'") unless $value =~ /^(?:$VALUE)$/;
        $err->($n, "bad timestamp '$ts'")
            if defined $ts && $ts !~ /^-?[0-9]+$/;

        # the family: the name itself, or the name less a histogram or
        # summary suffix
        my $family = $name;
        if (!exists $types{$family}) {
            (my $base = $name) =~ s/_(?:bucket|sum|count)$//;
            $family = $base if exists $types{$base}
                && $types{$base} =~ /^(?:histogram|summary)$/;
        }

        if (!defined $current || $current ne $family) {
            $err->($n, "samples of $family are not together")
                if $done{$family};
            $done{$current} = 1 if defined $current;
            $current = $family;
        }

        $err->($n, "negative counter $name")
            if ($types{$family} // '') eq 'counter' && $value =~ /^-/;

        my $key = $name . '{' . join(',', map {
            my $v = $l{$_};
            $v =~ s/([\\"])/\\$1/g;
            $v =~ s/\n/\\n/g;
            "$_=\"$v\"";
        } sort keys %l) . '}';

        $err->($n, "duplicate series $key") if exists $series{$key};
        $series{$key} = $value;

        push @samples, {
            name => $name, labels => \%l, value => $value, line => $n,
        };
    }

    return {
        errors => \@errors, types => \%types, help => \%help,
        samples => \@samples, series => \%series,
    };
}

# The value of one series, undef if absent.
sub value {
    my ($m, $name, %labels) = @_;
    for my $s (@{$m->{samples}}) {
        next unless $s->{name} eq $name;
        next unless keys %{$s->{labels}} == keys %labels;
        next if grep {
            !exists $s->{labels}{$_} || $s->{labels}{$_} ne $labels{$_}
        } keys %labels;
        return $s->{value};
    }
    return undef;
}

# Every sample of a metric: list of { labels, value }.
sub samples {
    my ($m, $name) = @_;
    return grep { $_->{name} eq $name } @{$m->{samples}};
}

1;
