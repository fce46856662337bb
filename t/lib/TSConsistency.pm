package TSConsistency;

# Helpers for the tests of state consistency across reloads and restarts:
# a request held in a worker of the old configuration, a reload that does
# not wait for that worker to exit, the state file as JSON, and a raw
# backend that answers with bytes of the test's choosing.  Core Perl only.
#
#   my $h = TSConsistency::hold($t, 'PATCH', '/traffic/upstreams/app',
#                               json => { active => 'green' });
#       Sends the request's headers with "Expect: 100-continue" and waits
#       for nginx's "100 Continue": the request is then in a worker, which
#       waits for its body.  Returns undef if no "100 Continue" came.
#   TSConsistency::reload_new($t, $template, port => 'api', path => '/x')
#       Reloads, and returns once every worker of the new configuration
#       runs and answers GET path on port (from a worker whose $pid is in
#       the X-Worker header: the templates add "add_header X-Worker $pid
#       always;"), the old ones shutting down or gone.  Returns the list
#       of old workers, or () if the reload failed.
#   my $r = TSConsistency::finish($h)
#       Sends the body and reads the answer: { status, headers, body, json }
#       or { status => 599, error }.
#   TSConsistency::wait_gone($t, @pids)   until these processes exited
#   TSConsistency::read_json($t, $file)   the file decoded, or undef
#   TSConsistency::app_conf(%o)
#       A template: traffic_shift "app" (pools blue: u_blue on backend
#       blue1, weight 100, and green: u_green on green1) proxied on port
#       main, the API at /traffic/ on port api (write=on, X-Worker).
#       zone => 'shift 1m'   traffic_shift_zone
#       state => FILE        traffic_shift_state
#       pools => '...'       the pool lines of app instead
#       app => 0             no app (nor u_blue, u_green, location /)
#       extra => '...'       more http{} directives
#   my $pid = TSConsistency::raw_server($port, $answer, seconds => 60)
#       A forked listener answering each connection, once it sent a
#       request head, with $answer and a close; it exits after "seconds"
#       or at the end of the test.

use strict;
use warnings;

use Errno qw(EINTR EAGAIN EWOULDBLOCK);
use IO::Socket::INET;
use JSON::PP ();
use POSIX ();
use Socket qw(IPPROTO_TCP TCP_NODELAY);
use Time::HiRes qw(time);
use Test::More ();

my $JSON = JSON::PP->new->utf8->canonical;
my $PARENT = $$;
my @CHILDREN;

END {
    if ($$ == $PARENT) {
        local ($?, $!);
        for my $pid (@CHILDREN) {
            kill 'TERM', $pid;
            waitpid($pid, 0);
        }
    }
}

sub _port {
    my ($t, $port) = @_;
    $port //= 'main';
    return $port =~ /^\d+$/ ? $port : $t->port($port);
}

# reads from $s into $$buf until $done->($$buf) or EOF or the deadline
sub _read_until {
    my ($s, $buf, $deadline, $done) = @_;
    for (;;) {
        return 1 if $done->($$buf);
        my $left = $deadline - time;
        return 0 if $left <= 0;
        my $bits = '';
        vec($bits, fileno($s), 1) = 1;
        my $n = select($bits, undef, undef, $left);
        next if $n < 0 && $! == EINTR;
        next unless $n > 0;
        $n = sysread($s, $$buf, 65536, length $$buf);
        if (!defined $n) {
            next if $! == EINTR || $! == EAGAIN || $! == EWOULDBLOCK;
            return 0;
        }
        return $done->($$buf) ? 1 : -1 if $n == 0;
    }
}

sub hold {
    my ($t, $method, $path, %o) = @_;

    my $body = exists $o{json} ? $JSON->encode($o{json}) : $o{body} // '';
    my $s = IO::Socket::INET->new(
        PeerAddr => '127.0.0.1',
        PeerPort => _port($t, $o{port} // 'api'),
        Proto => 'tcp',
        Timeout => 5,
    ) or return undef;
    setsockopt($s, IPPROTO_TCP, TCP_NODELAY, 1);
    binmode $s;

    my $head = "$method $path HTTP/1.1\r\nHost: localhost\r\n"
        . "Content-Type: application/json\r\n"
        . 'Content-Length: ' . length($body) . "\r\n"
        . "Expect: 100-continue\r\nConnection: close\r\n";
    my $h = $o{headers} // {};
    $head .= "$_: $h->{$_}\r\n" for sort keys %$h;
    $head .= "\r\n";
    syswrite($s, $head) == length $head or return undef;

    my $buf = '';
    my $ok = _read_until($s, \$buf, time + ($o{timeout} // 10),
                         sub { index($_[0], "\r\n\r\n") >= 0 });
    if ($ok != 1 || $buf !~ m{^HTTP/1\.1 100 }) {
        Test::More::diag("TSConsistency: no 100 Continue, got: "
            . substr($buf, 0, 200));
        return undef;
    }
    return { sock => $s, body => $body, method => $method };
}

sub finish {
    my ($h, %o) = @_;
    my $s = $h->{sock};
    syswrite($s, $h->{body}) if length $h->{body};

    my $buf = '';
    my $ok = _read_until($s, \$buf, time + ($o{timeout} // 10), sub { 0 });
    close $s;
    return { status => 599, error => 'timeout', body => $buf } if $ok == 0;
    return { status => 599, error => 'connection closed without an answer',
             body => '' } if $buf eq '';

    my ($head, $rest) = split /\r\n\r\n/, $buf, 2;
    my ($line, @lines) = split /\r\n/, $head;
    my ($status) = $line =~ m{^HTTP/1\.\d (\d{3})}
        or return { status => 599, error => "bad status line: $line",
                    body => $buf };
    my %hdr;
    for (@lines) {
        my ($k, $v) = /^([^:]+):\s*(.*?)\s*$/ or next;
        $hdr{lc $k} = $v;
    }
    $rest //= '';
    $rest = substr($rest, 0, $hdr{'content-length'})
        if defined $hdr{'content-length'};
    my $r = { status => $status + 0, headers => \%hdr, body => $rest };
    $r->{json} = eval { $JSON->decode($rest) }
        if ($hdr{'content-type'} // '') =~ /json/;
    return $r;
}

sub _cmdline {
    my ($pid) = @_;
    open(my $fh, '<', "/proc/$pid/cmdline") or return undef;
    my $cmd = do { local $/; <$fh> } // '';
    $cmd =~ s/\0+/ /g;
    return $cmd;
}

sub reload_new {
    my ($t, $template, %o) = @_;
    my $port = _port($t, $o{port} // 'api');
    my $path = $o{path} // '/';

    my @old = $t->worker_pids(all => 1);
    my %old = map { $_ => 1 } @old;
    my $mark = $t->log_mark;
    $t->write_config($template);
    kill 'HUP', $t->master_pid;

    my $why = '';
    my $ok = $t->wait_for(sub {
        if ($t->error_log(since => $mark) =~ /^(.*\[emerg\].*)$/m) {
            $why = $1;
            return -1;
        }
        my @new = grep { !$old{$_} } $t->worker_pids;
        return 0 if @new < $t->workers;
        for my $pid (@old) {
            my $cmd = _cmdline($pid) // next;
            return 0 unless $cmd =~ /shutting down/;
        }
        my $r = $t->http('GET', $path, port => $port, timeout => 2,
                         quiet => 1);
        my $w = $r->{headers}{'x-worker'} // '';
        return scalar grep { $_ == $w } @new;
    }, timeout => 10, what => 'the new workers serving');

    if (!$ok || $ok < 0) {
        Test::More::diag("TSConsistency: reload failed $why");
        return ();
    }
    return @old;
}

sub wait_gone {
    my ($t, @pids) = @_;
    return $t->wait_for(sub { !grep { kill 0, $_ } @pids },
                        timeout => 10, what => 'old workers exiting');
}

sub read_json {
    my ($t, $file) = @_;
    my $text = $t->read_file($file);
    return undef unless defined $text;
    return eval { JSON::PP->new->decode($text) };
}

sub app_conf {
    my (%o) = @_;
    my $app = $o{app} // 1;
    my $pools = $o{pools}
        // 'pool blue u_blue weight=100; pool green u_green;';
    my $c = "http {\n";
    $c .= "    traffic_shift_zone $o{zone};\n" if $o{zone};
    $c .= "    traffic_shift_state $o{state};\n" if $o{state};
    $c .= <<"EOF" if $app;
    upstream u_blue  { server 127.0.0.1:%%PORT_blue1%%; }
    upstream u_green { server 127.0.0.1:%%PORT_green1%%; }
    traffic_shift app { $pools }
EOF
    $c .= "    $o{extra}\n" if $o{extra};
    $c .= "    server {\n        listen 127.0.0.1:%%PORT_main%%;\n";
    $c .= "        location / { proxy_pass http://app; }\n" if $app;
    $c .= "        location = /ping { return 204; }\n";
    $c .= <<'EOF';
    }
    server {
        listen 127.0.0.1:%%PORT_api%%;
        add_header X-Worker $pid always;
        location /traffic/ { traffic_shift_api write=on; }
    }
}
EOF
    return $c;
}

sub raw_server {
    my ($port, $answer, %o) = @_;
    my $seconds = $o{seconds} // 60;

    my $l = IO::Socket::INET->new(
        LocalAddr => '127.0.0.1',
        LocalPort => $port,
        Proto => 'tcp',
        Listen => 64,
        ReuseAddr => 1,
    ) or die "TSConsistency: listen on $port: $!";

    my $pid = fork() // die "fork: $!";
    if ($pid) {
        close $l;
        push @CHILDREN, $pid;
        return $pid;
    }

    $SIG{ALRM} = sub { POSIX::_exit(0) };
    $SIG{TERM} = sub { POSIX::_exit(0) };
    alarm $seconds;
    while (my $c = $l->accept) {
        binmode $c;
        my $buf = '';
        _read_until($c, \$buf, time + 2,
                    sub { index($_[0], "\r\n\r\n") >= 0 });
        syswrite($c, $answer);
        close $c;
    }
    POSIX::_exit(0);
}

1;
