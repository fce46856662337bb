package TSProbe;

# A scripted HTTP/1.1 backend for the probe tests: one forked process per
# port, one connection at a time (a probe's), many requests per
# connection.  For each request, a function returns the response as a list
# of pieces, written with a pause between them, and whether to close after
# it.  Every accept and every request is counted in files of the test
# directory: NAME.accepts (one line per connection) and NAME.requests
# ("CONN N METHOD URI" per request, with the headers after).

use strict;
use warnings;

use IO::Socket::INET;
use POSIX ();
use Time::HiRes qw(sleep time);

my @CHILDREN;
my $PARENT = $$;

END {
    if ($$ == $PARENT) {
        kill 'TERM', @CHILDREN if @CHILDREN;
        waitpid($_, 0) for @CHILDREN;
    }
}

# serve($t, $name, sub { my ($req, $n) = @_; return (\@pieces, $close) },
#       pause => 0.02)
# $req: { method, uri, headers => { lc name => value }, raw }; $n: the
# request's number on its connection (1, 2, ...).  An undef list: close
# without an answer.

sub serve {
    my ($t, $name, $answer, %o) = @_;
    my $pause = $o{pause} // 0.02;
    my $port = $t->port($name);
    my $dir = $t->testdir;

    my $l = IO::Socket::INET->new(
        LocalAddr => '127.0.0.1',
        LocalPort => $port,
        Proto => 'tcp',
        Listen => 64,
        ReuseAddr => 1,
    ) or die "TSProbe: listen on $port: $!";

    my $pid = fork() // die "fork: $!";
    if ($pid) {
        close $l;
        push @CHILDREN, $pid;
        return $pid;
    }

    $SIG{TERM} = sub { POSIX::_exit(0) };
    $SIG{ALRM} = sub { POSIX::_exit(0) };
    alarm($o{seconds} // 120);

    my $conn = 0;
    while (my $c = $l->accept) {
        $conn++;
        _append("$dir/$name.accepts", "$conn\n");
        binmode $c;
        my $buf = '';
        my $n = 0;
        REQUEST: for (;;) {
            while (index($buf, "\r\n\r\n") < 0) {
                my $r = sysread($c, $buf, 65536, length $buf);
                last REQUEST unless $r;
            }
            my $end = index($buf, "\r\n\r\n");
            my $head = substr($buf, 0, $end + 4, '');
            my ($line, @h) = split /\r\n/, $head;
            my ($method, $uri) = split / /, $line;
            my %h = map { my ($k, $v) = split /:\s*/, $_, 2; (lc $k, $v) } @h;
            $n++;
            _append("$dir/$name.requests", "$conn $n $line\n"
                    . join('', map { "  $_\n" } @h));
            my ($pieces, $close) = $answer->(
                { method => $method, uri => $uri, headers => \%h,
                  raw => $head }, $n);
            last REQUEST unless $pieces;
            for my $i (0 .. $#$pieces) {
                sleep($pause) if $i;
                syswrite($c, $pieces->[$i]) // last REQUEST;
            }
            last REQUEST if $close;
        }
        close $c;
    }
    POSIX::_exit(0);
}

sub _append {
    my ($file, $text) = @_;
    open(my $fh, '>>', $file) or return;
    syswrite($fh, $text);
    close $fh;
}

# connections accepted, requests answered so far
sub accepts {
    my ($t, $name) = @_;
    my $s = $t->read_file("$name.accepts") // '';
    return scalar(() = $s =~ /\n/g);
}

sub requests {
    my ($t, $name) = @_;
    my $s = $t->read_file("$name.requests") // '';
    return grep { /^\d/ } split /\n/, $s;
}

# pieces of a body: chunked encoding, one chunk per piece
sub chunked {
    my (@pieces) = @_;
    return ((map { sprintf("%x\r\n%s\r\n", length $_, $_) } @pieces),
            "0\r\n\r\n");
}

# a string cut in pieces of $n bytes
sub cut {
    my ($s, $n) = @_;
    my @p;
    push @p, substr($s, 0, $n, '') while length $s;
    return @p;
}

1;
