package TSStress;

# Helpers of the reliability tests (t/stress/): durations, load clients in
# forked processes that record every request, and the checks made on their
# records.  Core Perl only, loopback only.
#
# Times are read from CLOCK_MONOTONIC, one clock for every process of the
# machine, so the records of the clients and the times of the API calls
# made by the test itself can be compared directly.

use strict;
use warnings;

use Errno qw(EINTR EAGAIN EWOULDBLOCK EINPROGRESS);
use Fcntl qw(F_GETFL F_SETFL O_NONBLOCK);
use POSIX ();
use Socket qw(PF_INET SOCK_STREAM IPPROTO_TCP TCP_NODELAY SOL_SOCKET
              SO_ERROR inet_aton pack_sockaddr_in);
use Test::More ();
use TSTest ();
use Time::HiRes qw(clock_gettime CLOCK_MONOTONIC sleep);

use Exporter 'import';
our @EXPORT_OK = qw(now short dur);

my $PARENT = $$;
my @CHILDREN;                       # every process started, until reaped
my $LOOPBACK = inet_aton('127.0.0.1');

# every process this module started is killed when the test ends, also
# when it dies
END {
    if ($$ == $PARENT) {
        local ($?, $!);
        kill_all();
    }
}


###########################################################################
# time

sub now { clock_gettime(CLOCK_MONOTONIC) }

# STRESS_SHORT=1: the short pass (CI)
sub short { ($ENV{STRESS_SHORT} // '') =~ /^(?:1|yes|on|true)$/i ? 1 : 0 }

# a duration (or count): the full one, or the short one with STRESS_SHORT
sub dur {
    my ($full, $short) = @_;
    return short() ? $short : $full;
}


###########################################################################
# processes

# Forks a process that runs $code and exits; its result is what $code
# returns (a string), kept in a file of the test directory.
sub spawn {
    my ($dir, $name, $code) = @_;

    my $file = "$dir/stress-$name.out";
    unlink $file;

    my $pid = fork() // die "TSStress: fork: $!";

    if ($pid == 0) {
        # the harness makes these signals die; a client finishes its
        # request and writes its records instead
        my $stop = 0;
        $SIG{TERM} = sub { $stop = 1 };
        $SIG{INT} = $SIG{HUP} = 'DEFAULT';
        $SIG{PIPE} = 'IGNORE';
        srand($$ ^ int(now() * 1000));
        my $out = eval { $code->(\$stop) };
        $out = "error: $@" unless defined $out;
        if (open(my $fh, '>', "$file.tmp")) {
            print $fh $out;
            close $fh;
            rename "$file.tmp", $file;
        }
        POSIX::_exit(0);
    }

    my $p = { pid => $pid, name => $name, file => $file };
    push @CHILDREN, $p;
    return $p;
}

# Asks the processes to stop (TERM), waits for them (at most $timeout
# seconds, then KILL) and returns their outputs, in order.
sub finish {
    my ($timeout, @procs) = @_;
    kill 'TERM', map { $_->{pid} } grep { !$_->{done} } @procs;
    return collect($timeout, @procs);
}

# Waits for processes that stop by themselves.
sub collect {
    my ($timeout, @procs) = @_;
    my $deadline = now() + $timeout;
    for my $p (@procs) {
        while (!$p->{done}) {
            my $r = waitpid($p->{pid}, POSIX::WNOHANG());
            if ($r == $p->{pid} || $r < 0) {
                $p->{done} = 1;
                last;
            }
            if (now() > $deadline) {
                Test::More::diag("TSStress: $p->{name} did not stop within "
                    . "${timeout}s: killed");
                kill 'KILL', $p->{pid};
                waitpid($p->{pid}, 0);
                $p->{done} = 1;
                $p->{killed} = 1;
                last;
            }
            sleep 0.01;
        }
        @CHILDREN = grep { $_ != $p } @CHILDREN;
        if (open(my $fh, '<', $p->{file})) {
            local $/;
            $p->{out} = <$fh>;
        }
        $p->{out} //= '';
    }
    return map { $_->{out} } @procs;
}

sub kill_all {
    for my $p (@CHILDREN) {
        kill 'KILL', $p->{pid};
        waitpid($p->{pid}, 0);
    }
    @CHILDREN = ();
}


###########################################################################
# HTTP

# TSTest's connect, with this file's monotonic deadline
sub _connect {
    my ($port, $deadline) = @_;
    my $left = $deadline - now();
    return TSTest::_connect($port, $left > 0.001 ? $left : 0.001);
}

# TSTest's wait, with this file's monotonic deadline
sub _wait {
    my ($s, $write, $deadline) = @_;
    return TSTest::_wait_fd($s, $write,
        Time::HiRes::time() + $deadline - now());
}

# One request on $s; returns ({status, pool, backend, close}, undef) or
# (undef, error, bytes received).
sub _exchange {
    my ($s, $req, $deadline, $pool_header) = @_;

    my $off = 0;
    while ($off < length $req) {
        my $n = syswrite($s, $req, length($req) - $off, $off);
        if (!defined $n) {
            return (undef, "write: $!", 0)
                unless $! == EINTR || $! == EAGAIN || $! == EWOULDBLOCK;
            return (undef, 'write: timeout', 0) unless _wait($s, 1, $deadline);
            next;
        }
        $off += $n;
    }

    my $buf = '';
    my ($hend, $len, $res);
    for (;;) {
        if (!defined $res && ($hend = index($buf, "\r\n\r\n")) >= 0) {
            my $head = substr($buf, 0, $hend);
            my ($status) = $head =~ m{^HTTP/1\.[01] (\d{3})}
                or return (undef, 'bad status line', length $buf);
            $res = { status => $status + 0 };
            $res->{pool} = $1 if $head =~ /\r\n\Q$pool_header\E: *([^\r]*)/i;
            $res->{backend} = $1 if $head =~ /\r\nX-Backend: *([^\r]*)/i;
            $res->{close} = 1 if $head =~ /\r\nConnection: *close/i
                || $head =~ m{^HTTP/1\.0};
            if ($head =~ /\r\nContent-Length: *(\d+)/i) {
                $len = $1;
            } elsif ($head =~ /\r\nTransfer-Encoding:/i) {
                return (undef, 'chunked response', length $buf);
            } else {
                $len = -1;
                $res->{close} = 1;
            }
            $buf = substr($buf, $hend + 4);
        }
        return ($res, undef) if defined $res && $len >= 0
            && length($buf) >= $len;

        return (undef, 'read: timeout', length $buf)
            unless _wait($s, 0, $deadline);
        my $n = sysread($s, $buf, 65536, length $buf);
        if (!defined $n) {
            next if $! == EINTR || $! == EAGAIN || $! == EWOULDBLOCK;
            return (undef, "read: $!", length($buf) + ($res ? 1 : 0));
        }
        if ($n == 0) {
            return ($res, undef) if defined $res && $len < 0;
            return (undef, 'connection closed',
                    length($buf) + ($res ? 1 : 0));
        }
    }
}


###########################################################################
# load clients

# Starts a client process sending GET requests to 127.0.0.1:$o{port} as
# fast as it can, one after the other, until it is stopped (finish()) or
# $o{max} seconds passed.  Options:
#   per_conn => N     requests per connection (1: "Connection: close")
#   path => '/'       pool_header => 'X-Pool'    timeout => 10 (per request)
# A request sent on a reused connection that the server closed before
# answering anything (a kept-alive connection closed by a worker that
# exits) is sent again on a new one, as HTTP clients do; it is counted
# as retried.  Nothing else is retried.
#
# The output, one line per request:
#   START END STATUS POOL BACKEND RETRIED ERROR
# START and END monotonic times around the whole exchange, STATUS 0 and
# ERROR set when no response arrived, "-" for a missing value.
sub client {
    my ($dir, $name, %o) = @_;
    my $port = $o{port} // die 'TSStress: client: port';
    my $per_conn = $o{per_conn} // 100;
    my $path = $o{path} // '/';
    my $max = $o{max} // 300;
    my $timeout = $o{timeout} // 10;
    my $pool_header = $o{pool_header} // 'X-Pool';

    my $req = "GET $path HTTP/1.1\r\nHost: localhost\r\n"
        . ($per_conn == 1 ? "Connection: close\r\n" : '') . "\r\n";

    return spawn($dir, $name, sub {
        my ($stop) = @_;
        my $end = now() + $max;
        my ($s, $used) = (undef, 0);
        my @rec;

        while (!$$stop && now() < $end && getppid() == $PARENT) {
            my $start = now();
            my ($res, $err, $got);
            my $retried = 0;

            for my $attempt (1, 2) {
                my $deadline = now() + $timeout;
                if (!$s) {
                    ($s, $err) = _connect($port, $deadline);
                    last unless $s;
                    $used = 0;
                }
                my $reused = $used > 0;
                ($res, $err, $got) = _exchange($s, $req, $deadline,
                                               $pool_header);
                $used++;
                if (!$res || $res->{close} || $used >= $per_conn) {
                    close $s;
                    undef $s;
                }
                last if $res || !$reused || $got;
                $retried++;
            }

            my $r = $res // { status => 0 };
            push @rec, sprintf("%.6f %.6f %d %s %s %d %s\n", $start, now(),
                $r->{status}, _word($r->{pool}), _word($r->{backend}),
                $retried, _word($err));
        }

        close $s if $s;
        return join '', @rec;
    });
}

sub _word {
    my ($v) = @_;
    return '-' unless defined $v && length $v;
    $v =~ s/\s+/_/g;
    return $v;
}

# Parses the outputs of clients: a list of records
#   { start, end, status, pool, backend, retried, error, client }
# sorted by start.
sub records {
    my (@outs) = @_;
    my @rec;
    my $c = 0;
    for my $out (@outs) {
        $c++;
        for my $line (split /\n/, $out) {
            my @f = split / /, $line;
            if (@f != 7) {
                push @rec, { start => 0, end => 0, status => 0,
                             pool => '-', backend => '-', retried => 0,
                             error => "client $c: $line", client => $c };
                next;
            }
            push @rec, {
                start => $f[0], end => $f[1], status => $f[2],
                pool => $f[3], backend => $f[4], retried => $f[5],
                error => $f[6] eq '-' ? undef : $f[6], client => $c,
            };
        }
    }
    return sort { $a->{start} <=> $b->{start} } @rec;
}

# Counts of records: total, ok (200 from a backend of the pool named),
# failed (no response), by status, retried, per pool; and a few examples
# of what went wrong.
sub summary {
    my (@rec) = @_;
    my %s = (total => scalar @rec, ok => 0, failed => 0, retried => 0,
             status => {}, pool => {}, mismatch => 0, bad => []);
    for my $r (@rec) {
        $s{retried}++ if $r->{retried};
        if ($r->{status} == 0) {
            $s{failed}++;
            push @{$s{bad}}, $r;
            next;
        }
        $s{status}{$r->{status}}++;
        $s{pool}{$r->{pool}}++;
        if ($r->{status} != 200) {
            push @{$s{bad}}, $r;
            next;
        }
        if ($r->{backend} !~ /^\Q$r->{pool}\E\d+$/) {
            $s{mismatch}++;
            push @{$s{bad}}, $r;
            next;
        }
        $s{ok}++;
    }
    return \%s;
}

sub show {
    my ($r) = @_;
    return sprintf('client %d: %.6f..%.6f status %d pool %s backend %s%s',
        $r->{client}, $r->{start}, $r->{end}, $r->{status}, $r->{pool},
        $r->{backend}, defined $r->{error} ? " error $r->{error}" : '');
}

# The requests that could not have been answered by the pool that answered
# them, given the flips made meanwhile.
#
# $initial is the pool active before the first flip; $flips a list of
# { sent, answered, pool } (monotonic times around the API call that made
# that pool active, answered with 200), in order, one at a time.  State j
# (0: initial, j: after flip j) can be seen by a request from the moment
# flip j was sent until the moment flip j+1 was answered.  A request
# [start, end] may be answered by the pool of any state visible at some
# time inside it, and by no other: so a request that started after flip
# k's answer and ended before flip k+1 was sent must be answered by flip
# k's pool, and one in flight during flip k+1 by flip k's or flip k+1's.
#
# Returns (violations, number of requests that had exactly one allowed
# pool).
sub check_flips {
    my ($initial, $flips, @rec) = @_;

    my @pool = ($initial, map { $_->{pool} } @$flips);
    my @from = (-9**9**9, map { $_->{sent} } @$flips);
    my @until = ((map { $_->{answered} } @$flips), 9**9**9);

    my (@bad, $strict);
    for my $r (grep { $_->{status} == 200 } @rec) {
        # last state already sent when the request ended
        my $hi = _last_le(\@from, $r->{end});
        # first state not yet superseded when the request started
        my $lo = _first_ge(\@until, $r->{start});
        my %ok = map { $pool[$_] => 1 } $lo .. $hi;
        $strict++ if $lo == $hi;
        push @bad, { %$r, allowed => join(',', sort keys %ok),
                     states => "$lo..$hi" }
            unless $ok{$r->{pool}};
    }
    return (\@bad, $strict // 0);
}

# index of the last element <= $v in the sorted @$a (-1 if none)
sub _last_le {
    my ($a, $v) = @_;
    my ($lo, $hi) = (0, scalar @$a);
    while ($lo < $hi) {
        my $mid = int(($lo + $hi) / 2);
        if ($a->[$mid] <= $v) { $lo = $mid + 1 } else { $hi = $mid }
    }
    return $lo - 1;
}

# index of the first element >= $v in the sorted @$a (@$a if none)
sub _first_ge {
    my ($a, $v) = @_;
    my ($lo, $hi) = (0, scalar @$a);
    while ($lo < $hi) {
        my $mid = int(($lo + $hi) / 2);
        if ($a->[$mid] < $v) { $lo = $mid + 1 } else { $hi = $mid }
    }
    return $lo;
}


###########################################################################
# worker killer

# The worker processes of an nginx master (not those shutting down).
sub worker_pids {
    my ($master) = @_;
    my @pids;
    opendir(my $dh, '/proc') or return;
    for my $pid (grep { /^\d+$/ } readdir $dh) {
        open(my $fh, '<', "/proc/$pid/stat") or next;
        my $stat = <$fh> // next;
        close $fh;
        my (undef, $ppid) = split ' ', substr($stat, rindex($stat, ')') + 2);
        next unless defined $ppid && $ppid == $master;
        open($fh, '<', "/proc/$pid/cmdline") or next;
        my $cmd = do { local $/; <$fh> } // '';
        close $fh;
        push @pids, $pid if $cmd =~ /worker process\0*$/;
    }
    closedir $dh;
    return sort { $a <=> $b } @pids;
}

# Starts a process that sends SIGKILL to a random worker of $master every
# $period seconds, at a random moment of each period, until stopped.
# Output: one line "TIME PID" per kill (monotonic time).
sub killer {
    my ($dir, $master, $period, %o) = @_;
    my $max = $o{max} // 300;
    return spawn($dir, 'killer', sub {
        my ($stop) = @_;
        my $start = now();
        my $end = $start + $max;
        my @kills;
        for (my $k = 0; !$$stop && now() < $end; $k++) {
            my $at = $start + ($k + rand()) * $period;
            while (!$$stop && now() < $at) {
                sleep(0.005);
            }
            last if $$stop;
            my @w = worker_pids($master);
            next unless @w;
            my $victim = $w[int rand @w];
            push @kills, sprintf("%.6f %d\n", now(), $victim)
                if kill 'KILL', $victim;
            # the next period starts where this one ends
            my $next = $start + ($k + 1) * $period;
            sleep($next - now()) if $next > now();
        }
        return join '', @kills;
    });
}


###########################################################################
# killing the worker that serves a request

# On one connection to 127.0.0.1:$port: sends $first (a request whose
# answer names the worker in the header $o{pid_header}, X-Worker by
# default, and keeps the connection open), then $req, and $delay seconds
# later, unless the answer has arrived, SIGKILLs that worker; then reads
# the answer.  Returns { status (0 if none), body, error, killed (pid or
# undef), sent, answered (monotonic times around $req) }.
sub request_and_kill {
    my ($port, $first, $req, $delay, %o) = @_;
    my $timeout = $o{timeout} // 5;
    my $header = $o{pid_header} // 'X-Worker';
    my $deadline = now() + $timeout;
    my %r = (status => 0);

    my ($s, $err) = _connect($port, $deadline);
    my ($res, $pid);
    ($res, $err) = _send_read($s, $first, $deadline) if $s;
    if ($res) {
        ($pid) = $res->{head} =~ /\r\n\Q$header\E: *(\d+)/i;
        $err = "no $header header" unless $pid;
    }
    if ($err) {
        close $s if $s;
        $r{error} = "first request: $err";
        $r{sent} = $r{answered} = now();
        return \%r;
    }

    $r{sent} = now();
    $err = _send($s, $req, $deadline);
    if (!$err) {
        sleep($delay) if $delay > 0;
        my $bits = '';
        vec($bits, fileno($s), 1) = 1;
        if (select($bits, undef, undef, 0) == 0) {
            # no answer yet: the worker is still at it
            $r{killed} = $pid if kill 'KILL', $pid;
        }
        ($res, $err) = _read($s, '', $deadline);
    }
    close $s;
    $r{answered} = now();
    if ($res) {
        $r{status} = $res->{status};
        $r{body} = $res->{body};
    } else {
        $r{error} = $err;
    }
    return \%r;
}

sub _send {
    my ($s, $req, $deadline) = @_;
    my $off = 0;
    while ($off < length $req) {
        my $n = syswrite($s, $req, length($req) - $off, $off);
        if (!defined $n) {
            return "write: $!"
                unless $! == EINTR || $! == EAGAIN || $! == EWOULDBLOCK;
            return 'write: timeout' unless _wait($s, 1, $deadline);
            next;
        }
        $off += $n;
    }
    return undef;
}

sub _send_read {
    my ($s, $req, $deadline) = @_;
    my $err = _send($s, $req, $deadline);
    return (undef, $err) if $err;
    return _read($s, '', $deadline);
}

# reads one answer framed by Content-Length; ({status, head, body}, undef)
# or (undef, error)
sub _read {
    my ($s, $buf, $deadline) = @_;
    for (;;) {
        my $hend = index($buf, "\r\n\r\n");
        if ($hend >= 0) {
            my $head = substr($buf, 0, $hend);
            my ($status) = $head =~ m{^HTTP/1\.[01] (\d{3})}
                or return (undef, 'bad status line');
            my ($len) = $head =~ /\r\nContent-Length: *(\d+)/i;
            return (undef, 'no Content-Length') unless defined $len;
            if (length($buf) >= $hend + 4 + $len) {
                return ({ status => $status + 0, head => $head,
                          body => substr($buf, $hend + 4, $len) }, undef);
            }
        }
        return (undef, 'read: timeout') unless _wait($s, 0, $deadline);
        my $n = sysread($s, $buf, 65536, length $buf);
        if (!defined $n) {
            next if $! == EINTR || $! == EAGAIN || $! == EWOULDBLOCK;
            return (undef, "read: $!");
        }
        return (undef, 'connection closed') if $n == 0;
    }
}


###########################################################################
# wrk

# Starts wrk against 127.0.0.1:$port for $seconds (when it is installed
# and STRESS_WRK is not 0); returns a process to collect(), or undef.
sub wrk {
    my ($dir, $port, $seconds, %o) = @_;
    return undef if ($ENV{STRESS_WRK} // '') eq '0';
    my ($wrk) = grep { -x } map { "$_/wrk" } split /:/, $ENV{PATH} // '';
    return undef unless $wrk;
    my $threads = $o{threads} // 1;
    my $conns = $o{connections} // 4;
    my $secs = int($seconds + 0.5) || 1;
    my $file = "$dir/stress-wrk.out";
    my $pid = fork() // die "TSStress: fork: $!";
    if ($pid == 0) {
        $SIG{$_} = 'DEFAULT' for qw(PIPE INT TERM HUP);
        open(STDIN, '<', '/dev/null');
        open(STDOUT, '>', $file);
        open(STDERR, '>&', \*STDOUT);
        no warnings 'exec';
        exec { $wrk } $wrk, "-t$threads", "-c$conns", "-d${secs}s",
            "http://127.0.0.1:$port/";
        POSIX::_exit(127);
    }
    my $p = { pid => $pid, name => 'wrk', file => $file };
    push @CHILDREN, $p;
    return $p;
}


# Parses wrk's report: { requests, non2xx, errors, rate, text }.
sub wrk_result {
    my ($out) = @_;
    my %r = (text => $out, non2xx => 0, errors => 0);
    ($r{requests}) = $out =~ /(\d+) requests in/;
    ($r{rate}) = $out =~ m{Requests/sec:\s*([\d.]+)};
    $r{non2xx} = $1 if $out =~ /Non-2xx or 3xx responses: (\d+)/;
    if ($out =~ /Socket errors: connect (\d+), read (\d+), write (\d+),
                 \ timeout (\d+)/x)
    {
        $r{errors} = $1 + $2 + $3 + $4;
    }
    return \%r;
}

1;
