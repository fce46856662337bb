package TSDelay;

# A TCP proxy on loopback that delays every byte it forwards, in both
# directions, by D milliseconds: a slow network link, without tc/netem (no
# root).  One child process; each accepted client is connected to the
# target port, and every chunk read on either side is held until now + D
# before it is written to the other side.  An end of connection is
# delayed the same way (the bytes in flight still arrive, then the FIN),
# as on a real link.  D is read from a file the test changes at any time
# (set_delay); chunks already queued keep their time, and the order of
# the bytes is kept.
#
# Core Perl only.
#
#   my $p = TSDelay->new($t, name => 'slow_proxy', to => $etcd->port,
#                        delay => 150);
#   $p->port;                      # where clients connect
#   $p->url;                       # http://127.0.0.1:PORT
#   $p->set_delay(1500);           # ms, each way
#   $p->connections;               # clients accepted since the start
#   $p->open_connections;          # clients connected now
#   $p->cut;                       # the clients connected now are cut
#                                  # at their next byte (not forwarded)
#   $p->stop;                      # also at DESTROY and END

use strict;
use warnings;

use Carp qw(croak);
use Errno qw(EINTR EAGAIN EWOULDBLOCK);
use IO::Select;
use IO::Socket::INET;
use POSIX ();
use Socket qw(IPPROTO_TCP TCP_NODELAY);
use Time::HiRes qw(time sleep);

my @RUNNING;

sub new {
    my ($class, $t, %o) = @_;
    my $name = $o{name} // 'delay_proxy';
    croak 'TSDelay: "to" (a port) required' unless $o{to};
    my $self = bless {
        name => $name,
        port => $t->port($name),
        to => $o{to},
        file => $t->testdir . "/$name.delay",
        count => $t->testdir . "/$name.count",
        cutfile => $t->testdir . "/$name.cut",
        parent => $$,
    }, $class;
    $self->set_delay($o{delay} // 0);

    # bound before the fork: connections wait in the backlog until the
    # child accepts them
    my $listen = IO::Socket::INET->new(
        LocalAddr => '127.0.0.1', LocalPort => $self->{port},
        Proto => 'tcp', Listen => 128, ReuseAddr => 1,
    ) or croak "TSDelay: listen on $self->{port}: $!";

    my $pid = fork;
    croak "TSDelay: fork: $!" unless defined $pid;
    if ($pid == 0) {
        $SIG{$_} = 'DEFAULT' for qw(TERM INT HUP);
        $SIG{PIPE} = 'IGNORE';
        eval { _run($listen, $self->{to}, $self->{file}, $self->{count},
                    $self->{cutfile}) };
        print STDERR "TSDelay: $@" if $@;
        POSIX::_exit(0);
    }
    close $listen;
    $self->{pid} = $pid;
    push @RUNNING, $self;
    return $self;
}

sub port { $_[0]{port} }
sub url { "http://127.0.0.1:$_[0]{port}" }
sub pid { $_[0]{pid} }

# the delay, in ms each way, from now on
sub set_delay {
    my ($self, $ms) = @_;
    croak "TSDelay: bad delay '$ms'" unless $ms =~ /^\d+$/;
    my $tmp = "$self->{file}.tmp";
    open(my $fh, '>', $tmp) or croak "TSDelay: $tmp: $!";
    print $fh "$ms\n";
    close $fh or croak "TSDelay: $tmp: $!";
    rename $tmp, $self->{file} or croak "TSDelay: rename: $!";
    $self->{delay} = $ms;
    return $self;
}

sub delay { $_[0]{delay} }

# "ACCEPTED OPEN", written by the child at each change
sub _counts {
    my ($self) = @_;
    open(my $fh, '<', $self->{count}) or return (0, 0);
    my $line = <$fh> // '';
    return $line =~ /^(\d+) (\d+)/ ? ($1, $2) : (0, 0);
}

sub connections { ($_[0]->_counts)[0] }
sub open_connections { ($_[0]->_counts)[1] }

# the clients connected now: the next byte one sends closes it, unsent
# (a peer that closed the connection as the request came); the clients
# accepted from now on are forwarded as usual
sub cut {
    my ($self) = @_;
    my $tmp = "$self->{cutfile}.tmp";
    open(my $fh, '>', $tmp) or croak "TSDelay: $tmp: $!";
    print $fh $self->connections, "\n";
    close $fh or croak "TSDelay: $tmp: $!";
    rename $tmp, $self->{cutfile} or croak "TSDelay: rename: $!";
    return $self;
}

sub stop {
    my ($self) = @_;
    local ($?, $!);
    return unless $self->{pid} && $$ == $self->{parent};
    kill 'TERM', $self->{pid};
    my $deadline = time + 5;
    while (time < $deadline) {
        last if waitpid($self->{pid}, POSIX::WNOHANG()) == $self->{pid};
        sleep 0.01;
    }
    if (kill 0, $self->{pid}) {
        kill 'KILL', $self->{pid};
        waitpid $self->{pid}, 0;
    }
    delete $self->{pid};
}

sub DESTROY { $_[0]->stop }
END { $_->stop for @RUNNING }


###########################################################################
# the child

sub _read_delay {
    my ($file) = @_;
    open(my $fh, '<', $file) or return undef;
    my $line = <$fh>;
    return defined $line && $line =~ /^(\d+)/ ? $1 / 1000 : undef;
}

sub _write_counts {
    my ($file, $accepted, $open) = @_;
    open(my $fh, '>', "$file.tmp") or return;
    print $fh "$accepted $open\n";
    close $fh;
    rename "$file.tmp", $file;
}

sub _read_cut {
    my ($file) = @_;
    open(my $fh, '<', $file) or return undef;
    my $line = <$fh>;
    return defined $line && $line =~ /^(\d+)/ ? $1 : undef;
}

sub _run {
    my ($listen, $to, $file, $count, $cutfile) = @_;

    my $delay = 0;
    my ($accepted, $open) = (0, 0);
    my $sel = IO::Select->new($listen);
    my %peer;       # fileno => { sock, other (fileno), q => [[due, data]],
                    #             eof (read side ended), shut (written),
                    #             client (the accepted side), n (its
                    #             number, from 1) }

    _write_counts($count, 0, 0);

    my $close = sub {
        my ($fd) = @_;
        my $was = exists $peer{$fd};
        for my $f ($fd, ($peer{$fd} ? $peer{$fd}{other} : ())) {
            my $p = delete $peer{$f} or next;
            $sel->remove($p->{sock});
            close $p->{sock};
        }
        _write_counts($count, $accepted, --$open) if $was;
    };

    for (;;) {
        my $now = time;

        # write what is due; the queue of a side holds what goes to it
        my $next;
        for my $fd (keys %peer) {
            my $p = $peer{$fd} or next;
            while (@{$p->{q}} && $p->{q}[0][0] <= $now) {
                my (undef, $data) = @{shift @{$p->{q}}};
                if (!defined $data) {
                    shutdown($p->{sock}, 1);
                    $p->{shut} = 1;
                    last;
                }
                my $off = 0;
                while ($off < length $data) {
                    my $n = syswrite($p->{sock}, $data, length($data) - $off,
                                     $off);
                    if (!defined $n) {
                        next if $! == EINTR;
                        if ($! == EAGAIN || $! == EWOULDBLOCK) {
                            sleep 0.001;
                            next;
                        }
                        last;
                    }
                    $off += $n;
                }
                if ($off < length $data) {
                    $close->($fd);
                    last;
                }
            }
            next unless $peer{$fd};
            my $o = $peer{$p->{other}};
            if ($p->{shut} && $o && $o->{shut}) {
                $close->($fd);
                next;
            }
            if (@{$p->{q}}) {
                $next = $p->{q}[0][0]
                    if !defined $next || $p->{q}[0][0] < $next;
            }
        }

        my $wait = 0.01;
        if (defined $next) {
            my $until = $next - time;
            $wait = $until if $until < $wait;
            $wait = 0 if $wait < 0;
        }

        for my $s ($sel->can_read($wait)) {
            if ($s == $listen) {
                my $c = $listen->accept or next;
                my $u = IO::Socket::INET->new(
                    PeerAddr => '127.0.0.1', PeerPort => $to,
                    Proto => 'tcp');
                if (!$u) {
                    close $c;
                    next;
                }
                for my $x ($c, $u) {
                    setsockopt($x, IPPROTO_TCP, TCP_NODELAY, 1);
                    $x->blocking(0);
                }
                my ($cf, $uf) = (fileno $c, fileno $u);
                $accepted++;
                $peer{$cf} = { sock => $c, other => $uf, q => [],
                               client => 1, n => $accepted };
                $peer{$uf} = { sock => $u, other => $cf, q => [] };
                $sel->add($c, $u);
                _write_counts($count, $accepted, ++$open);
                next;
            }
            my $fd = fileno $s;
            my $p = $peer{$fd} or next;
            my $o = $peer{$p->{other}} or next;
            my $buf;
            my $n = sysread($s, $buf, 65536);
            next if !defined $n && ($! == EINTR || $! == EAGAIN
                                    || $! == EWOULDBLOCK);
            if ($n && $p->{client} && $p->{n} <= (_read_cut($cutfile) // 0))
            {
                $close->($fd);
                next;
            }
            # what is read here is written to the other side, later;
            # never before what is queued already.  The delay file is
            # read at each chunk: a new delay counts from the next byte
            $delay = _read_delay($file) // $delay;
            my $due = time + $delay;
            $due = $o->{q}[-1][0] if @{$o->{q}} && $o->{q}[-1][0] > $due;
            if ($n) {
                push @{$o->{q}}, [$due, $buf];
            } else {
                push @{$o->{q}}, [$due, undef];
                $sel->remove($s);
                $p->{eof} = 1;
            }
        }
    }
}

1;
