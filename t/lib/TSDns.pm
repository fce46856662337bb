package TSDns;

# A small DNS server on loopback for the tests of "server NAME resolve":
# it answers A queries for one name with the addresses the test sets
# (TTL 1), AAAA queries for it with no address, and any other name with
# NXDOMAIN.  The addresses are kept in a file the server reads at every
# query, so the test changes them with set().  Also: the version of the
# nginx under test, to skip what it cannot do.
#
# Core Perl only.
#
#   my $dns = TSDns->new(name => 'app.test', dir => $t->testdir);
#   $dns->set('127.0.0.2', '127.0.0.3');
#   ... resolver 127.0.0.1:${\ $dns->port} valid=1s; ...
#   $dns->queries;     # A queries answered so far
#
#   my ($num, $text) = TSDns::nginx_version($t);   # 1028000, '1.28.0'

use strict;
use warnings;

use Carp qw(croak);
use IO::Socket::INET;
use POSIX ();
use Socket qw(inet_aton);

my @SERVERS;

sub nginx_version {
    my ($t) = @_;
    my $out = `$t->{nginx} -v 2>&1`;
    return (0, 'unknown') unless $out =~ m{nginx/(\d+)\.(\d+)\.(\d+)};
    return ($1 * 1000000 + $2 * 1000 + $3, "$1.$2.$3");
}

sub new {
    my ($class, %o) = @_;
    my $name = lc($o{name} // croak 'TSDns: name required');
    my $dir = $o{dir} // croak 'TSDns: dir required';

    my $sock = IO::Socket::INET->new(
        LocalAddr => '127.0.0.1',
        LocalPort => 0,
        Proto => 'udp',
    ) or croak "TSDns: cannot bind a UDP socket: $!";

    my $self = bless {
        name => $name,
        file => "$dir/dns-$name.addrs",
        count => "$dir/dns-$name.queries",
        port => $sock->sockport,
        parent => $$,
    }, $class;

    $self->set(@{$o{addrs} // []});

    my $pid = fork;
    croak "TSDns: fork: $!" unless defined $pid;

    if ($pid == 0) {
        $self->_serve($sock);
        POSIX::_exit(0);
    }

    close $sock;
    $self->{pid} = $pid;
    push @SERVERS, $self;
    return $self;
}

sub port { $_[0]{port} }

sub set {
    my ($self, @addrs) = @_;
    for (@addrs) {
        croak "TSDns: bad address '$_'" unless /^\d+\.\d+\.\d+\.\d+$/;
    }
    my $tmp = "$self->{file}.tmp";
    open(my $fh, '>', $tmp) or croak "TSDns: $tmp: $!";
    print $fh map { "$_\n" } @addrs;
    close $fh;
    rename $tmp, $self->{file} or croak "TSDns: rename $tmp: $!";
    return $self;
}

sub queries {
    my ($self) = @_;
    open(my $fh, '<', $self->{count}) or return 0;
    my $n = () = <$fh>;
    close $fh;
    return $n;
}

sub stop {
    my ($self) = @_;
    return unless $self->{pid} && $$ == $self->{parent};
    kill 'TERM', $self->{pid};
    waitpid $self->{pid}, 0;
    delete $self->{pid};
}

sub DESTROY { $_[0]->stop }

END { $_->stop for @SERVERS }

# the child: one datagram at a time, until the test process is gone

sub _serve {
    my ($self, $sock) = @_;
    $SIG{TERM} = sub { POSIX::_exit(0) };

    my $rin = '';
    vec($rin, fileno($sock), 1) = 1;

    for (;;) {
        POSIX::_exit(0) if getppid() != $self->{parent};
        next unless select(my $rout = $rin, undef, undef, 0.5);

        my $from = $sock->recv(my $q, 512) // next;
        my $a = $self->_answer($q) // next;
        $sock->send($a, 0, $from);
    }
}

sub _answer {
    my ($self, $q) = @_;
    return undef if length($q) < 17;

    my ($id, $flags, $qd) = unpack('n n n', $q);
    return undef if $flags & 0x8000 || $qd != 1;

    # the question: labels, type, class
    my ($pos, @labels) = (12);
    for (;;) {
        return undef if $pos >= length($q);
        my $len = ord(substr($q, $pos, 1));
        $pos++;
        last if $len == 0;
        return undef if $len > 63 || $pos + $len > length($q);
        push @labels, substr($q, $pos, $len);
        $pos += $len;
    }
    return undef if $pos + 4 > length($q);
    my ($type, $class) = unpack('n n', substr($q, $pos, 4));
    my $question = substr($q, 12, $pos + 4 - 12);
    my $name = lc join '.', @labels;

    my @answers;
    my $rcode = 0;

    if ($name ne $self->{name}) {
        $rcode = 3;

    } elsif ($type == 1 && $class == 1) {
        if (open(my $fh, '<', $self->{file})) {
            @answers = grep { /^\d+\.\d+\.\d+\.\d+$/ } map { chomp; $_ } <$fh>;
            close $fh;
        }
        if (open(my $fh, '>>', $self->{count})) {
            print $fh scalar(@answers), "\n";
            close $fh;
        }
    }

    # a response, recursion desired and available
    my $a = pack('n n n n n n', $id, 0x8180 | $rcode, 1, scalar(@answers),
                 0, 0) . $question;

    for my $addr (@answers) {
        $a .= pack('n n n N n', 0xc00c, 1, 1, 1, 4) . inet_aton($addr);
    }

    return $a;
}

1;
