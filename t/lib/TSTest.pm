package TSTest;

# Test harness for nginx-traffic-shift: real nginx processes on loopback,
# config templates, backends that name themselves, bounded waits, and a
# check at the end of every test file that the error log is clean.
#
# Core Perl only.  See t/README for a tutorial; the API is summarised in the
# POD at the end of this file.

use strict;
use warnings;

use Carp qw(croak);
use Errno qw(EINTR EAGAIN EWOULDBLOCK EINPROGRESS);
use Fcntl qw(:flock O_CREAT O_RDONLY F_GETFL F_SETFL O_NONBLOCK);
use File::Path qw(remove_tree);
use File::Spec;
use File::Temp qw(tempdir);
use IO::Socket::INET;
use JSON::PP ();
use POSIX qw(WNOHANG);
use Socket qw(PF_INET SOCK_STREAM IPPROTO_TCP TCP_NODELAY SOL_SOCKET SO_ERROR
              inet_aton pack_sockaddr_in);
use Test::More ();
use Time::HiRes qw(time sleep);

our $VERSION = '0.1';

my $ROOT = do {
    my $dir = File::Spec->rel2abs(__FILE__);
    $dir =~ s{/[^/]+$}{};               # t/lib
    $dir =~ s{/[^/]+/[^/]+$}{};         # project root
    $dir;
};

my $PID = $$;                           # only this process cleans up
my @INSTANCES;                          # every TSTest object created
my %PORTS;                              # port name => port (process-wide)
my %PORT_USED;                          # port => name
my @PORT_LOCKS;                         # lock handles held for our ports
my $BLACKHOLE;                          # listening socket that never answers
my $FINISHED = 0;                       # end-of-test checks done
my $JSON = JSON::PP->new->utf8->canonical;
my $INSTANCE_ID = 0;
my $LOOPBACK = inet_aton('127.0.0.1');

my $VERBOSE = $ENV{TS_VERBOSE} || 0;

# TS_STATIC=1: the module is compiled into the nginx under test
# (--add-module): configurations get no load_module line.
my $STATIC = ($ENV{TS_STATIC} // '') =~ /^(?:1|yes|on|true)$/i ? 1 : 0;
my %NGINX_VERSION;                      # nginx binary => its version

$SIG{PIPE} = 'IGNORE';
for my $sig (qw(INT TERM HUP)) {
    next if defined $SIG{$sig} && $SIG{$sig} ne '' && $SIG{$sig} ne 'DEFAULT';
    $SIG{$sig} = sub { die "TSTest: killed by SIG$sig\n" };
}

# The end-of-test log checks are Test::More tests; they must run before
# done_testing() counts the tests, so done_testing() runs them first.
{
    no warnings 'redefine';
    my $orig = \&Test::Builder::done_testing;
    *Test::Builder::done_testing = sub {
        _finish_all(1) if $$ == $PID;
        goto &$orig;
    };
}

END {
    if ($$ == $PID) {
        my $status = $?;
        my $tb = Test::More->builder;
        # With an explicit plan, extra tests would break the count: the
        # checks then only report through diag.
        my $plan = $tb->has_plan;
        _finish_all(defined $plan && $plan =~ /^\d+$/ ? 0 : 1);
        my $failed = $status != 0 || !$tb->is_passing;
        for my $t (@INSTANCES) {
            $t->_cleanup_dir($failed);
        }
        $? = $status;
    }
}


###########################################################################
# construction

sub new {
    my ($class, %opts) = @_;

    my $id = ++$INSTANCE_ID;
    my $self = bless {
        id => $id,
        name => $opts{name} // ((grep { $_->{name} eq 'main' } @INSTANCES)
                                 ? "nginx$id" : 'main'),
        workers => $opts{workers} // 1,
        module => $opts{module} // 1,
        log_level => $opts{log_level} // $ENV{TS_LOG_LEVEL} // 'info',
        nginx => $ENV{TS_NGINX} || '/usr/sbin/nginx',
        module_path => $ENV{TS_MODULE}
            || "$ROOT/build/ngx_http_traffic_shift_module.so",
        start_timeout => $opts{start_timeout} // 10,
        stop_timeout => $opts{stop_timeout} // 10,
        reload_timeout => $opts{reload_timeout} // 10,
        serial => 0,
        backends => {},
        backend_order => [],
        allowed => [],
        problems => [],
        conns => {},
    }, $class;

    croak "TSTest: nginx binary $self->{nginx} is not executable"
        unless -x $self->{nginx};
    $self->{module_path} = File::Spec->rel2abs($self->{module_path});

    my $dir = tempdir("ts-$self->{name}-XXXXXX", TMPDIR => 1, CLEANUP => 0);
    chmod 0755, $dir;
    if ($> == 0) {
        # nginx started by root runs its workers as "nobody": let them
        # write in the test directory, like nginx's own state directory.
        my (undef, undef, $uid, $gid) = getpwnam('nobody');
        chown $uid, $gid, $dir if defined $uid;
    }
    $self->{testdir} = $dir;
    _note(1, "$self->{name}: test directory $dir");

    push @INSTANCES, $self;
    return $self;
}

sub testdir { $_[0]{testdir} }
sub name { $_[0]{name} }
sub workers { $_[0]{workers} }
sub serial { $_[0]{serial} }
sub module_path { $_[0]{module_path} }

# true when the module is compiled into nginx (TS_STATIC=1)
sub static { $STATIC }

# the version of the nginx under test ("1.26.3"), from "nginx -v"
sub nginx_version {
    my ($self) = @_;
    my $nginx = ref $self ? $self->{nginx}
                          : $ENV{TS_NGINX} || '/usr/sbin/nginx';
    return $NGINX_VERSION{$nginx} //= do {
        my ($rc, $out) = _run_capture($nginx, '-v');
        ($out =~ m{nginx/(\d+\.\d+\.\d+)})[0]
            // croak "TSTest: $nginx -v: no version in: $out";
    };
}

# true when the nginx under test is at least that version
sub nginx_at_least {
    my ($self, $want) = @_;
    my @have = split /\./, $self->nginx_version;
    my @want = split /\./, $want;
    for my $i (0 .. 2) {
        return $have[$i] > $want[$i] if $have[$i] != $want[$i];
    }
    return 1;
}


###########################################################################
# ports

sub port {
    my ($self, $name) = @_;
    croak 'TSTest: port name required' unless defined $name;
    croak "TSTest: bad port name '$name'" unless $name =~ /^\w+$/;
    return $PORTS{$name} //= _alloc_port($name);
}

sub has_port {
    my ($self, $name) = @_;
    return exists $PORTS{$name};
}

sub _port_range {
    my ($lo, $hi) = (20000, 32767);
    if (open(my $fh, '<', '/proc/sys/net/ipv4/ip_local_port_range')) {
        my ($elo) = split ' ', scalar <$fh>;
        # stay below the ephemeral range, used by outgoing connections
        $hi = $elo - 1 if $elo && $elo - 1 < $hi && $elo - 1 > 12000;
        $lo = $hi - 10000 if $hi - 10000 < $lo;
    }
    return ($lo, $hi);
}

sub _alloc_port {
    my ($name) = @_;

    my ($lo, $hi) = _port_range();
    my $lockdir = File::Spec->catdir(File::Spec->tmpdir, 'ts-test-ports');
    if (!-d $lockdir) {
        mkdir $lockdir;
        chmod 01777, $lockdir;
    }

    for (1 .. 2000) {
        my $port = $lo + int(rand($hi - $lo + 1));
        next if $PORT_USED{$port};

        # a lock per port, held until we exit, keeps parallel test files
        # (prove -j) from picking the same port
        my $lock = File::Spec->catfile($lockdir, "$port.lock");
        sysopen(my $fh, $lock, O_RDONLY | O_CREAT, 0666) or next;
        if (!flock($fh, LOCK_EX | LOCK_NB)) {
            close $fh;
            next;
        }

        my $s = IO::Socket::INET->new(
            LocalAddr => '127.0.0.1',
            LocalPort => $port,
            Proto => 'tcp',
            Listen => 1,
        );
        if (!$s) {
            close $fh;
            next;
        }
        close $s;

        push @PORT_LOCKS, $fh;
        $PORT_USED{$port} = $name;
        return $port;
    }

    croak "TSTest: no free port found for '$name'";
}

sub _blackhole_port {
    # A listening socket nobody ever reads from: connections to it
    # complete, requests sent to it are never answered.  Backends use it
    # to delay responses (proxy_read_timeout + error_page).
    $BLACKHOLE //= IO::Socket::INET->new(
        LocalAddr => '127.0.0.1',
        LocalPort => 0,
        Proto => 'tcp',
        Listen => 1024,
    ) or croak "TSTest: cannot create blackhole socket: $!";
    return $BLACKHOLE->sockport;
}


###########################################################################
# backends

my %BACKEND_OPTS = map { $_ => 1 } qw(status health delay slow);

sub backend {
    my ($self, $name, %opts) = @_;

    croak "TSTest: bad backend name '$name'" unless $name =~ /^\w+$/;
    croak "TSTest: backend '$name' declared twice"
        if $self->{backends}{$name};
    for my $k (keys %opts) {
        croak "TSTest: unknown backend option '$k'" unless $BACKEND_OPTS{$k};
    }
    for my $k (qw(status health)) {
        croak "TSTest: backend $k must be 200..599 and not 3xx"
            if defined $opts{$k}
                && ($opts{$k} !~ /^[2-5]\d\d$/ || $opts{$k} =~ /^3/);
    }
    for my $k (qw(delay slow)) {
        croak "TSTest: backend $k must be a number of seconds"
            if defined $opts{$k} && $opts{$k} !~ /^\d+(\.\d+)?$/;
    }

    $self->{backends}{$name} = {
        name => $name,
        status => $opts{status} // 200,
        health => $opts{health} // 200,
        delay => $opts{delay} // 0,
        slow => $opts{slow} // 1,
        stopped => 0,
    };
    push @{$self->{backend_order}}, $name;
    $self->port($name);
    return $self;
}

sub backends {
    my ($self) = @_;
    return @{$self->{backend_order}};
}

sub _ms {
    my ($sec) = @_;
    my $ms = int($sec * 1000 + 0.5);
    return ($ms < 1 ? 1 : $ms) . 'ms';
}

sub _backend_conf {
    my ($self, $b) = @_;

    my $d = $self->{testdir};
    my $n = $b->{name};
    my $port = $self->port($n);
    my $bh = _blackhole_port();

    my $delayed = sub {
        my ($sec, $named) = @_;
        my $t = _ms($sec);
        return "proxy_pass http://127.0.0.1:$bh; proxy_connect_timeout $t; "
            . "proxy_send_timeout $t; proxy_read_timeout $t; "
            . "error_page 504 = $named;";
    };

    my $main = $b->{delay}
        ? $delayed->($b->{delay}, "\@ts_answer_$n")
        : "return $b->{status} \"$n\\n\";";

    return "server { listen 127.0.0.1:$port; server_name $n; "
        . "access_log $d/backend-$n.log ts_backend; "
        . "add_header X-Backend $n always; "
        . "location / { if (-f $d/backend-$n.failing) "
        .     "{ return 503 \"$n\\n\"; } $main } "
        . "location = /healthz { if (-f $d/backend-$n.unhealthy) "
        .     "{ return 503 \"unhealthy\\n\"; } "
        .     "return $b->{health} \"ok\\n\"; } "
        . "location /slow { "
        .     $delayed->($b->{slow}, "\@ts_answer_$n") . " } "
        . "location \@ts_answer_$n { return $b->{status} \"$n\\n\"; } "
        . "}";
}

sub _backends_conf {
    my ($self) = @_;
    return join ' ', map { $self->_backend_conf($self->{backends}{$_}) }
        grep { !$self->{backends}{$_}{stopped} } @{$self->{backend_order}};
}

sub _backend {
    my ($self, $name) = @_;
    my $b = $self->{backends}{$name}
        or croak "TSTest: no backend '$name' in $self->{name}";
    return $b;
}

sub set_backend {
    my ($self, $name, %opts) = @_;
    $self->_backend($name);
    for my $k (keys %opts) {
        my $file = {
            healthy => "backend-$name.unhealthy",
            failing => "backend-$name.failing",
        }->{$k} or croak "TSTest: set_backend: unknown option '$k'";
        my $path = "$self->{testdir}/$file";
        my $on = $k eq 'healthy' ? !$opts{$k} : $opts{$k};
        if ($on) {
            $self->write_file($file, '');
        } else {
            unlink $path;
        }
    }
    return $self;
}

sub stop_backend {
    my ($self, $name) = @_;
    $self->_backend($name)->{stopped} = 1;
    return $self->_backend_change($name, 0);
}

sub start_backend {
    my ($self, $name) = @_;
    $self->_backend($name)->{stopped} = 0;
    return $self->_backend_change($name, 1);
}

sub _backend_change {
    my ($self, $name, $up) = @_;
    return 1 unless $self->is_running;
    $self->reload or return 0;
    my $port = $self->port($name);
    return $self->wait_for(
        sub { _port_open($port) == $up },
        timeout => $self->{reload_timeout},
        what => "backend $name " . ($up ? 'accepting' : 'refusing'),
    );
}

sub backend_log {
    my ($self, $name) = @_;
    $self->_backend($name);
    my $text = $self->read_file("backend-$name.log") // '';
    my @entries;
    for my $line (split /\n/, $text) {
        my ($t, $addr, $method, $uri, $status) =
            $line =~ /^(\S+) (\S+) "(\S+) (\S+)[^"]*" (\d+)/ or next;
        push @entries, {
            time => $t, addr => $addr, method => $method, uri => $uri,
            status => $status,
        };
    }
    return @entries;
}

sub backend_hits {
    my ($self, $name, $uri_re) = @_;
    $uri_re //= qr/./;
    return scalar grep { $_->{uri} =~ $uri_re } $self->backend_log($name);
}


###########################################################################
# configuration

sub _main_conf {
    my ($self, $error_log) = @_;
    my $d = $self->{testdir};
    return "daemon off; master_process on; "
        . "worker_processes $self->{workers}; pid $d/nginx.pid; "
        . "error_log $error_log $self->{log_level};";
}

sub _http_globals {
    my ($self, $with_backends) = @_;
    my $d = $self->{testdir};
    my $ctl = $self->port("_ctl$self->{id}");
    my $s = "client_body_temp_path $d/client_body_temp; "
        . "proxy_temp_path $d/proxy_temp; "
        . "fastcgi_temp_path $d/fastcgi_temp; "
        . "uwsgi_temp_path $d/uwsgi_temp; "
        . "scgi_temp_path $d/scgi_temp; "
        . "log_format ts_backend '\$msec \$remote_addr \"\$request\" "
        .     "\$status'; "
        . "access_log $d/access.log; "
        . "server { listen 127.0.0.1:$ctl; access_log off; "
        .     "location = /ts-serial { return 200 \"$self->{serial}\"; } } ";
    $s .= $self->_backends_conf . ' ' if $with_backends;
    return $s;
}

sub _expand {
    my ($self, $template, $error_log) = @_;

    croak 'TSTest: config template required' unless defined $template;

    my $conf = $template;
    my $d = $self->{testdir};
    my $has = sub { index($template, "%%$_[0]%%") >= 0 };

    my $has_main = $has->('MAIN');
    my $has_backends = $has->('BACKENDS');
    my $has_http = $has->('HTTP_GLOBALS');
    my $has_load = $has->('LOAD_MODULE');
    my $load = $self->{module} && !$STATIC;

    croak "TSTest: TS_STATIC: the module is compiled into nginx, a template"
        . " cannot load it" if $STATIC && $template =~ /^\s*load_module\b/m;
    if ($load && ($has_load || $template !~ /^\s*load_module\b/m)) {
        _check_module($self->{module_path});
    }

    my %macro = (
        TESTDIR => $d,
        WORKERS => $self->{workers},
        ERROR_LOG => $error_log,
        MODULE => $self->{module_path},
        LOAD_MODULE => $load ? "load_module $self->{module_path};" : '',
        MAIN => $self->_main_conf($error_log),
        BACKENDS => $self->_backends_conf,
        HTTP_GLOBALS => $self->_http_globals(!$has_backends),
    );

    $conf =~ s{%%PORT_(\w+)%%}{$self->port($1)}ge;
    $conf =~ s{%%LISTEN_H2_(\w+)%%}{$self->_listen_h2($1)}ge;
    $conf =~ s{%%(\w+)%%}{
        exists $macro{$1} ? $macro{$1}
                          : croak "TSTest: unknown macro %%$1%% in template"
    }ge;

    # Additions keep the line numbers of the template: line N of the
    # template is line N of nginx.conf, so tests can assert "nginx.conf:N".

    # the globals are what keeps nginx off its compiled-in paths (logs/,
    # /var/log/nginx): an http{} block never goes without them
    if (!$has_http) {
        my $globals = $self->_http_globals(!$has_backends);
        $conf =~ s{^((?:[^\n#]*;)?\s*http\s*\{)}{$1 $globals}m
            or $conf !~ /^[^#]*\bhttp\s*\{/m
            or croak 'TSTest: no "http {" at the start of a line or after'
                . ' a directive: use %%HTTP_GLOBALS%%';
    }

    if ($load && !$has_load && $conf !~ /^\s*load_module\b/m) {
        $conf = "load_module $self->{module_path}; " . $conf;
    }

    $conf .= "\n" unless $conf =~ /\n\z/;
    $conf .= $self->_main_conf($error_log) . "\n" unless $has_main;
    $conf .= "events { worker_connections 1024; }\n"
        unless $conf =~ /^\s*events\s*\{/m;

    return $conf;
}

# A cleartext HTTP/2 listening socket: "listen ... http2" is deprecated
# (a warning) since nginx 1.25.1, which has the "http2" directive instead.
sub _listen_h2 {
    my ($self, $name) = @_;
    my $listen = 'listen 127.0.0.1:' . $self->port($name);
    return $self->nginx_at_least('1.25.1') ? "$listen; http2 on"
                                           : "$listen http2";
}

sub _check_module {
    my ($path) = @_;
    return if -f $path;
    Test::More->builder->BAIL_OUT(
        "module $path not found: run 'make' or set TS_MODULE");
}

sub write_config {
    my ($self, $template) = @_;
    $template //= $self->{template}
        // croak 'TSTest: write_config: no template';
    $self->{serial}++;
    my $conf = $self->_expand($template, "$self->{testdir}/error.log");
    $self->{template} = $template;
    $self->{conf} = $conf;
    $self->write_file('nginx.conf', $conf);
    _note(1, "$self->{name}: nginx.conf (serial $self->{serial}):\n$conf");
    return "$self->{testdir}/nginx.conf";
}

sub config {
    my ($self) = @_;
    return $self->{conf};
}

sub nginx_t {
    my ($self, $template) = @_;
    my $d = $self->{testdir};
    my $log = "$d/nginx-t.log";
    $template //= $self->{template}
        // croak 'TSTest: nginx_t: no template';
    # errors of "nginx -t" go to their own log, not to error.log, which
    # the end-of-test check reads
    my $conf = $self->_expand($template, $log);
    $self->write_file('nginx.conf', $conf);
    my ($rc, $out) = _run_capture($self->{nginx}, '-t', '-p', "$d/",
        '-c', "$d/nginx.conf", '-e', $log);
    _note(1, "$self->{name}: nginx -t: exit $rc\n$out");
    if (my @san = grep { _is_sanitizer($_) } split /\n/, $out) {
        push @{$self->{problems}}, map { "nginx -t: $_" } @san;
    }
    return ($rc, $out);
}


###########################################################################
# processes

sub is_running {
    my ($self) = @_;
    return 0 unless $self->{pid};
    my $r = waitpid($self->{pid}, WNOHANG);
    if ($r == $self->{pid}) {
        $self->{exit_status} = $?;
        if ($self->{serving} && !$self->{stopping}) {
            push @{$self->{problems}}, "$self->{name}: nginx exited on its own"
                . " (wait status $?)";
        }
        # a master that died leaves its workers: they are in its group
        kill 'KILL', -$self->{pid} if $?;
        $self->{serving} = 0;
        $self->{pid} = undef;
        return 0;
    }
    return 1;
}

sub master_pid {
    my ($self) = @_;
    return $self->is_running ? $self->{pid} : undef;
}

sub _children {
    my ($ppid) = @_;
    my @kids;
    opendir(my $dh, '/proc') or return;
    for my $pid (grep { /^\d+$/ } readdir $dh) {
        open(my $fh, '<', "/proc/$pid/stat") or next;
        my $stat = <$fh> // next;
        close $fh;
        # pid (comm) state ppid ...; comm may contain spaces and parens
        my $rest = substr($stat, rindex($stat, ')') + 2);
        my (undef, $parent) = split ' ', $rest;
        next unless defined $parent && $parent == $ppid;
        open($fh, '<', "/proc/$pid/cmdline") or next;
        my $cmd = do { local $/; <$fh> } // '';
        close $fh;
        $cmd =~ s/\0+/ /g;
        $cmd =~ s/\s+$//;
        push @kids, { pid => $pid, cmd => $cmd };
    }
    closedir $dh;
    return @kids;
}

sub worker_pids {
    my ($self, %opts) = @_;
    my $master = $self->master_pid or return;
    my @kids = _children($master);
    return map { $_->{pid} } @kids if $opts{all};
    return sort { $a <=> $b } map { $_->{pid} }
        grep { $_->{cmd} =~ /worker process$/ } @kids;
}

sub worker_count {
    my ($self) = @_;
    my @w = $self->worker_pids;
    return scalar @w;
}

sub start {
    my ($self, %opts) = @_;

    croak "TSTest: $self->{name} is already running" if $self->is_running;
    croak "TSTest: $self->{name}: write_config before start"
        unless defined $self->{conf};

    my $d = $self->{testdir};
    my $mark = $self->log_mark;

    _note(1, "$self->{name}: starting $self->{nginx}");
    my $pid = fork() // croak "TSTest: fork: $!";
    if ($pid == 0) {
        $SIG{$_} = 'DEFAULT' for qw(PIPE INT TERM HUP);
        setpgrp(0, 0);
        open(STDIN, '<', '/dev/null');
        open(STDOUT, '>>', "$d/stderr.log");
        open(STDERR, '>&', \*STDOUT);
        no warnings 'exec';
        exec { $self->{nginx} } $self->{nginx}, '-p', "$d/",
            '-c', "$d/nginx.conf", '-e', "$d/error.log";
        print STDERR "exec $self->{nginx}: $!\n";
        POSIX::_exit(127);
    }
    $self->{pid} = $pid;
    $self->{started} = 1;

    my @ports = $self->listen_ports;
    my $ctl = $self->_ctl_port;
    my $why;
    my $ok = $self->wait_for(sub {
        if (!$self->is_running) {
            $why = 'nginx exited with status ' . ($self->{exit_status} >> 8);
            return -1;
        }
        # connect once per port: each probe is logged by nginx at info
        @ports = grep { !_port_open($_) } @ports;
        return 0 if @ports;
        return 0 if $self->worker_count < $self->{workers};
        return 0 if $ctl && $self->_serial_seen ne $self->{serial};
        return 1;
    }, timeout => $self->{start_timeout}, what => "$self->{name} start",
       quiet => 1);

    if ($ok && $ok > 0) {
        $self->{serving} = 1;
        _note(1, "$self->{name}: started, master pid $pid, ports "
            . join(" ", $self->listen_ports));
        return 1;
    }

    $why //= "not serving within $self->{start_timeout}s";
    my $msg = "TSTest: $self->{name} failed to start: $why\n"
        . _tail($self->error_log(since => $mark), 20);
    $self->stop if $self->is_running;
    if ($opts{may_fail}) {
        _note(1, $msg);
        return 0;
    }
    croak $msg;
}

sub _ctl_port {
    my ($self) = @_;
    return undef unless defined $self->{conf};
    my $ctl = $self->port("_ctl$self->{id}");
    return $self->{conf} =~ /listen 127\.0\.0\.1:$ctl;/ ? $ctl : undef;
}

sub _serial_seen {
    my ($self) = @_;
    my $r = $self->http('GET', '/ts-serial', port => $self->_ctl_port,
        timeout => 2, quiet => 1);
    return $r->{status} == 200 ? $r->{body} : '';
}

sub listen_ports {
    my ($self) = @_;
    my %seen;
    my @ports;
    my $conf = $self->{conf} // return;
    while ($conf =~ /\blisten\s+([^;]+);/g) {
        my @args = split ' ', $1;
        next if grep { $_ eq 'udp' } @args;
        my ($port) = $args[0] =~ /(?:^|:)(\d+)$/ or next;
        push @ports, $port unless $seen{$port}++;
    }
    return @ports;
}

sub stop {
    my ($self) = @_;

    return 1 unless $self->is_running;
    my $pid = $self->{pid};
    $self->_close_conns;

    local $self->{stopping} = 1;
    _note(1, "$self->{name}: stopping (QUIT)");
    kill 'QUIT', $pid;
    my $graceful = $self->_wait_exit($self->{stop_timeout});
    if (!$graceful) {
        my $msg = "$self->{name}: nginx did not exit within "
            . "$self->{stop_timeout}s after QUIT (graceful shutdown hangs)";
        push @{$self->{problems}}, $msg;
        Test::More::diag("TSTest: $msg; sending TERM");
        kill 'TERM', $pid;
        if (!$self->_wait_exit(3)) {
            kill 'KILL', -$pid, $pid;
            $self->_wait_exit(3);
        }
        # whatever is left in nginx's process group (orphaned workers)
        kill 'KILL', -$pid;
    } elsif (my $st = $self->{exit_status}) {
        push @{$self->{problems}}, "$self->{name}: nginx master exited with "
            . ($st & 127 ? "signal " . ($st & 127) : "status " . ($st >> 8));
    }
    return $graceful;
}

# SIGKILL to the master and its workers at once, as a machine that dies:
# expected, so not reported as nginx exiting on its own
sub kill9 {
    my ($self) = @_;
    return unless $self->is_running;
    my @pids = ($self->{pid}, $self->worker_pids);
    local $self->{stopping} = 1;
    kill 'KILL', @pids;
    $self->_wait_exit(5);
    return scalar @pids;
}

sub _wait_exit {
    my ($self, $timeout) = @_;
    my $deadline = time + $timeout;
    while (time < $deadline) {
        return 1 unless $self->is_running;
        sleep 0.01;
    }
    return !$self->is_running;
}

sub reload {
    my ($self, @args) = @_;
    my $template = @args % 2 ? shift @args : undef;
    my %opts = @args;

    croak "TSTest: $self->{name} is not running" unless $self->is_running;
    my $master = $self->{pid};

    my @old = $self->worker_pids(all => 1);
    my %old_port = map { $_ => 1 } $self->listen_ports;
    $self->write_config($template);
    my $mark = $self->log_mark;
    my $ctl = $self->_ctl_port;
    # ports the master already listens on need no check
    my @ports = grep { !$old_port{$_} } $self->listen_ports;

    _note(1, "$self->{name}: reload (HUP), serial $self->{serial}");
    $self->_close_conns;
    kill 'HUP', $master;

    my $why;
    my $ok = $self->wait_for(sub {
        if (!$self->is_running) {
            $why = 'nginx exited';
            return -1;
        }
        my $log = $self->error_log(since => $mark);
        if ($log =~ /^(.*\[emerg\].*)$/m) {
            $why = "new configuration refused: $1";
            return -1;
        }
        return 0 if grep { kill 0, $_ } @old;
        return 0 if $self->worker_count < $self->{workers};
        @ports = grep { !_port_open($_) } @ports;
        return 0 if @ports;
        return 0 if $ctl && $self->_serial_seen ne $self->{serial};
        return 1;
    }, timeout => $self->{reload_timeout}, what => "$self->{name} reload",
       quiet => 1);

    if ($ok && $ok > 0) {
        _note(1, "$self->{name}: reloaded, workers " .
            join(' ', $self->worker_pids));
        return 1;
    }

    if (!defined $why) {
        my @left = grep { kill 0, $_ } @old;
        $why = @left
            ? "old worker(s) @left still running after "
                . "$self->{reload_timeout}s"
            : "new configuration not serving after "
                . "$self->{reload_timeout}s";
    }
    my $msg = "TSTest: $self->{name} reload failed: $why";
    if ($opts{quiet}) {
        _note(1, $msg);
    } else {
        Test::More::diag($msg);
    }
    return 0;
}


###########################################################################
# HTTP client

sub _port_open {
    my ($port) = @_;
    my $s = IO::Socket::INET->new(
        PeerAddr => '127.0.0.1',
        PeerPort => $port,
        Proto => 'tcp',
        Timeout => 1,
    );
    return $s ? 1 : 0;
}

sub _resolve_port {
    my ($self, $port) = @_;
    $port //= 'main';
    return $port if $port =~ /^\d+$/;
    croak "TSTest: no port named '$port'" unless exists $PORTS{$port};
    return $PORTS{$port};
}

sub _connect {
    my ($port, $timeout) = @_;
    my $what = "connect to 127.0.0.1:$port";
    socket(my $s, PF_INET, SOCK_STREAM, IPPROTO_TCP)
        or return (undef, "socket: $!");
    my $flags = fcntl($s, F_GETFL, 0) or return (undef, "fcntl: $!");
    fcntl($s, F_SETFL, $flags | O_NONBLOCK) or return (undef, "fcntl: $!");
    if (!connect($s, pack_sockaddr_in($port, $LOOPBACK))) {
        return (undef, "$what: $!") unless $! == EINPROGRESS;
        return (undef, "$what: timeout")
            unless _wait_fd($s, 1, time + $timeout);
        my $err = unpack('i', getsockopt($s, SOL_SOCKET, SO_ERROR));
        if ($err) {
            $! = $err;
            return (undef, "$what: $!");
        }
    }
    setsockopt($s, IPPROTO_TCP, TCP_NODELAY, 1);
    return ($s, undef);
}

# Waits until $s is readable (or writable); false on timeout.
sub _wait_fd {
    my ($s, $write, $deadline) = @_;
    return 0 unless defined $s;
    my $bits = '';
    vec($bits, fileno($s), 1) = 1;
    for (;;) {
        my $left = $deadline - time;
        return 0 if $left <= 0;
        my $v = $bits;
        my $n = $write ? select(undef, $v, undef, $left)
                       : select($v, undef, undef, $left);
        return 1 if $n > 0;
        return 0 if $n < 0 && $! != EINTR;
    }
}

sub _write_all {
    my ($s, $data, $deadline) = @_;
    my $off = 0;
    while ($off < length $data) {
        my $n = syswrite($s, $data, length($data) - $off, $off);
        if (!defined $n) {
            return "write: $!"
                unless $! == EINTR || $! == EAGAIN || $! == EWOULDBLOCK;
            return 'timeout writing request'
                unless _wait_fd($s, 1, $deadline);
            next;
        }
        $off += $n;
    }
    return undef;
}

# Reads more data into $$buf; returns bytes read, 0 on EOF, undef + error.
sub _fill {
    my ($s, $buf, $deadline) = @_;
    for (;;) {
        return (undef, 'timeout') unless _wait_fd($s, 0, $deadline);
        my $n = sysread($s, $$buf, 65536, length $$buf);
        if (!defined $n) {
            next if $! == EINTR || $! == EAGAIN || $! == EWOULDBLOCK;
            return (undef, "read: $!");
        }
        return ($n, undef);
    }
}

# Reads one HTTP response from $s (framing by Content-Length, chunked or
# EOF).  Returns the response hash, or undef and an error.
sub _read_response {
    my ($s, $method, $deadline, $buf) = @_;
    my $data = $buf // '';

    my $hend;
    while (($hend = index($data, "\r\n\r\n")) < 0) {
        my ($n, $err) = _fill($s, \$data, $deadline);
        return (undef, $err) unless defined $n;
        return (undef, length $data ? 'connection closed in headers'
                                    : 'connection closed') if $n == 0;
    }

    my $head = substr($data, 0, $hend);
    my $rest = substr($data, $hend + 4);
    my ($status_line, @lines) = split /\r\n/, $head;
    my ($proto, $status, $reason) =
        $status_line =~ m{^(HTTP/\d\.\d) (\d{3})(?: (.*))?$}
        or return (undef, "bad status line: $status_line");

    my (%h, @list);
    for my $line (@lines) {
        my ($k, $v) = $line =~ /^([^:]+):\s*(.*?)\s*$/ or next;
        push @list, [$k, $v];
        $k = lc $k;
        $h{$k} = exists $h{$k} ? "$h{$k}, $v" : $v;
    }

    my $res = {
        status => $status + 0, reason => $reason // '', protocol => $proto,
        headers => \%h, header_list => \@list, body => '',
    };

    my $no_body = $method eq 'HEAD' || $status =~ /^1/ || $status == 204
        || $status == 304;

    if ($no_body) {
        # nothing
    } elsif (($h{'transfer-encoding'} // '') =~ /chunked/i) {
        my $body = '';
        for (;;) {
            my $eol;
            while (($eol = index($rest, "\r\n")) < 0) {
                my ($n, $err) = _fill($s, \$rest, $deadline);
                return (undef, $err // 'connection closed in chunk')
                    unless $n;
            }
            my ($size) = substr($rest, 0, $eol) =~ /^([0-9a-fA-F]+)/
                or return (undef, 'bad chunk size');
            $size = hex $size;
            if ($size == 0) {
                # trailer section, up to an empty line
                while (index($rest, "\r\n\r\n", $eol) < 0) {
                    my ($n, $err) = _fill($s, \$rest, $deadline);
                    return (undef, $err // 'connection closed in trailer')
                        unless $n;
                }
                last;
            }
            while (length($rest) < $eol + 2 + $size + 2) {
                my ($n, $err) = _fill($s, \$rest, $deadline);
                return (undef, $err // 'connection closed in chunk')
                    unless $n;
            }
            $body .= substr($rest, $eol + 2, $size);
            $rest = substr($rest, $eol + 2 + $size + 2);
        }
        $res->{body} = $body;
    } elsif (defined $h{'content-length'}) {
        my $len = $h{'content-length'};
        while (length($rest) < $len) {
            my ($n, $err) = _fill($s, \$rest, $deadline);
            return (undef, $err // 'connection closed in body') unless $n;
        }
        $res->{body} = substr($rest, 0, $len);
    } else {
        for (;;) {
            my ($n, $err) = _fill($s, \$rest, $deadline);
            return (undef, $err) unless defined $n;
            last if $n == 0;
        }
        $res->{body} = $rest;
        $res->{closed} = 1;
    }

    if (($h{'content-type'} // '') =~ m{\bjson\b}i
        && length $res->{body})
    {
        $res->{json} = eval { $JSON->decode($res->{body}) };
        $res->{json_error} = $@ if $@;
    }

    $res->{closed} = 1 if ($h{connection} // '') =~ /close/i
        || $proto eq 'HTTP/1.0';

    return ($res, undef);
}

sub _close_conns {
    my ($self) = @_;
    close $_ for values %{$self->{conns}};
    $self->{conns} = {};
}

sub http {
    my ($self, $method, $path, %o) = @_;

    my $port = $self->_resolve_port($o{port});
    my $timeout = $o{timeout} // 10;
    my $deadline = time + $timeout;

    my $body = $o{body};
    my @headers;
    my $hdrs = $o{headers} // {};
    @headers = ref $hdrs eq 'ARRAY'
        ? @$hdrs : map { ($_, $hdrs->{$_}) } sort keys %$hdrs;
    my %given = map { lc($headers[2 * $_]) => 1 } 0 .. @headers / 2 - 1;

    if (exists $o{json}) {
        $body = ref $o{json} ? $JSON->encode($o{json}) : $o{json};
        push @headers, 'Content-Type' => 'application/json'
            unless $given{'content-type'};
    }

    my $req = "$method $path HTTP/1.1\r\n";
    $req .= "Host: " . ($o{host} // 'localhost') . "\r\n"
        unless $given{host};
    while (my ($k, $v) = splice(@headers, 0, 2)) {
        $req .= "$k: $v\r\n";
    }
    if (defined $body && !$given{'content-length'}
        && !$given{'transfer-encoding'})
    {
        $req .= 'Content-Length: ' . length($body) . "\r\n";
    } elsif (!defined $body && $method =~ /^(POST|PUT|PATCH)$/
             && !$given{'content-length'} && !$given{'transfer-encoding'})
    {
        $req .= "Content-Length: 0\r\n";
    }
    $req .= "Connection: close\r\n" unless $o{keepalive};
    $req .= "\r\n";
    $req .= $body if defined $body;

    my ($res, $err);
    for my $attempt (1, 2) {
        my $s = $o{keepalive} ? $self->{conns}{$port} : undef;
        my $reused = $s ? 1 : 0;
        if (!$s) {
            ($s, $err) = _connect($port, $timeout);
            last unless $s;
        }
        $err = _write_all($s, $req, $deadline);
        ($res, $err) = _read_response($s, $method, $deadline) unless $err;

        if ($o{keepalive} && $res && !$res->{closed}) {
            $self->{conns}{$port} = $s;
        } else {
            delete $self->{conns}{$port};
            close $s;
        }
        # a kept-alive connection the server closed meanwhile: retry once
        last unless $reused && !$res;
    }

    if (!$res) {
        $res = {
            status => 599, reason => 'Harness Error', error => $err,
            headers => {}, header_list => [], body => '',
        };
    }

    _note(2, "$method $path (port $port) -> $res->{status}"
        . ($res->{error} ? " ($res->{error})" : ''))
        unless $o{quiet};
    return $res;
}

sub http_raw {
    my ($self, $raw, %o) = @_;
    my $port = $self->_resolve_port($o{port});
    my $timeout = $o{timeout} // 10;
    my $deadline = time + $timeout;
    my ($s, $err) = _connect($port, $timeout);
    my $res;
    if ($s) {
        $err = _write_all($s, $raw, $deadline);
        if (!$err) {
            my $data = '';
            for (;;) {
                my ($n, $e) = _fill($s, \$data, $deadline);
                if (!defined $n) { $err = $e; last; }
                last if $n == 0;
            }
            if (length $data) {
                my $m = ($raw =~ /^(\S+)/)[0] // 'GET';
                # parse the first response from what was received
                ($res) = _read_response(undef, $m, 0, $data);
                $res->{raw} = $data if $res;
                $res //= { status => 0, headers => {}, body => '',
                           raw => $data };
            }
        }
        close $s;
    }
    $res //= {
        status => 599, reason => 'Harness Error', error => $err // 'no data',
        headers => {}, header_list => [], body => '', raw => '',
    };
    return $res;
}

sub _body_args {
    my ($args) = @_;
    return (json => shift @$args) if @$args % 2 && ref $args->[0];
    return (body => shift @$args) if @$args % 2;
    return ();
}

sub get    { my ($t, $p, @a) = @_; $t->http('GET', $p, @a) }
sub head   { my ($t, $p, @a) = @_; $t->http('HEAD', $p, @a) }
sub delete { my ($t, $p, @a) = @_; $t->http('DELETE', $p, @a) }

sub patch {
    my ($t, $p, @a) = @_;
    my @b = _body_args(\@a);
    return $t->http('PATCH', $p, @b, @a);
}

sub post {
    my ($t, $p, @a) = @_;
    my @b = _body_args(\@a);
    return $t->http('POST', $p, @b, @a);
}

sub put {
    my ($t, $p, @a) = @_;
    my @b = _body_args(\@a);
    return $t->http('PUT', $p, @b, @a);
}

sub count_backends {
    my ($self, %o) = @_;
    my $n = $o{n} // 100;
    my $header = lc($o{header} // 'x-backend');
    my $method = $o{method} // 'GET';
    my $path = $o{path} // '/';
    my %count;
    for my $i (1 .. $n) {
        my $h = ref $o{headers} eq 'CODE' ? $o{headers}->($i)
                                          : $o{headers};
        my $r = $self->http($method, $path,
            port => $o{port}, headers => $h // {},
            keepalive => $o{keepalive}, timeout => $o{timeout}, quiet => 1);
        my $key;
        if ($r->{status} == 599) {
            $key = '_error';
        } elsif ($r->{status} >= 400) {
            $key = "_status_$r->{status}";
        } else {
            $key = $r->{headers}{$header} // '_none';
        }
        $count{$key}++;
    }
    _note(2, "count_backends($n): "
        . join(', ', map { "$_=$count{$_}" } sort keys %count));
    return \%count;
}


###########################################################################
# waiting, logs, files

sub wait_for {
    my ($self, $cond, %o) = @_;
    my $timeout = $o{timeout} // 10;
    my $interval = $o{interval} // 0.02;
    my $deadline = time + $timeout;
    for (;;) {
        my $r = $cond->();
        return $r if $r;
        last if time >= $deadline;
        sleep $interval;
    }
    Test::More::diag('TSTest: timed out after ' . $timeout . 's waiting for '
        . ($o{what} // 'condition')) unless $o{quiet};
    return 0;
}

sub log_mark {
    my ($self) = @_;
    return -s "$self->{testdir}/error.log" // 0;
}

sub error_log {
    my ($self, %o) = @_;
    my $text = $self->read_file('error.log') // '';
    $text = substr($text, $o{since}) if $o{since} && $o{since} <= length $text;
    return $text;
}

sub allow_log {
    my ($self, @re) = @_;
    push @{$self->{allowed}}, @re;
    return $self;
}

sub read_file {
    my ($self, $name) = @_;
    my $path = $name =~ m{^/} ? $name : "$self->{testdir}/$name";
    open(my $fh, '<:raw', $path) or return undef;
    local $/;
    my $data = <$fh>;
    return $data // '';
}

sub write_file {
    my ($self, $name, $data) = @_;
    my $path = $name =~ m{^/} ? $name : "$self->{testdir}/$name";
    open(my $fh, '>:raw', "$path.tmp.$$") or croak "TSTest: $path: $!";
    print $fh $data;
    close $fh or croak "TSTest: $path: $!";
    rename "$path.tmp.$$", $path or croak "TSTest: rename $path: $!";
    return $path;
}

sub _is_sanitizer {
    my ($line) = @_;
    return $line =~ /(?:Address|Leak|Thread|Memory|UndefinedBehavior)
                     Sanitizer|runtime\ error:/x;
}

sub _problems {
    my ($self) = @_;
    my @bad;
    my $allowed = sub {
        my ($line) = @_;
        return grep { $line =~ $_ } @{$self->{allowed}};
    };
    for my $file (qw(error.log stderr.log)) {
        my $text = $self->read_file($file) // next;
        for my $line (split /\n/, $text) {
            next if $allowed->($line);
            push @bad, "$file: $line"
                if $line =~ /\[(?:alert|crit|emerg)\]/ || _is_sanitizer($line);
        }
    }
    push @bad, grep { !$allowed->($_) } @{$self->{problems}};
    return @bad;
}

sub _check_logs {
    my ($self, $as_test) = @_;
    my @bad = $self->_problems;
    my $what = "$self->{name}: no alert, crit, emerg or sanitizer report";
    if ($as_test) {
        Test::More::ok(!@bad, $what)
            or Test::More::diag(join "\n", @bad[0 .. ($#bad > 30 ? 30 : $#bad)]);
    } elsif (@bad) {
        Test::More::diag("TSTest: $what: FAILED\n" . join "\n", @bad);
    }
}

sub _finish_all {
    my ($as_test) = @_;
    return if $FINISHED++;
    $_->stop for grep { $_->is_running } @INSTANCES;
    $_->_check_logs($as_test) for grep { $_->{started} } @INSTANCES;
}

sub _cleanup_dir {
    my ($self, $failed) = @_;
    my $d = $self->{testdir} // return;
    return unless -d $d;
    if ($failed || $ENV{TS_KEEP}) {
        Test::More::diag("TSTest: $self->{name}: test directory kept: $d");
        return;
    }
    remove_tree($d);
}

sub _tail {
    my ($text, $n) = @_;
    my @l = split /\n/, $text // '';
    @l = @l[-$n .. -1] if @l > $n;
    return join '', map { "    $_\n" } @l;
}

sub _run_capture {
    my (@cmd) = @_;
    my $out = File::Temp->new;
    my $pid = fork() // croak "TSTest: fork: $!";
    if ($pid == 0) {
        $SIG{$_} = 'DEFAULT' for qw(PIPE INT TERM HUP);
        open(STDIN, '<', '/dev/null');
        open(STDOUT, '>', $out->filename);
        open(STDERR, '>&', \*STDOUT);
        no warnings 'exec';
        exec { $cmd[0] } @cmd;
        print STDERR "exec $cmd[0]: $!\n";
        POSIX::_exit(127);
    }
    waitpid($pid, 0);
    my $rc = $? >> 8;
    open(my $fh, '<', $out->filename) or croak "TSTest: $!";
    my $text = do { local $/; <$fh> } // '';
    return ($rc, $text);
}

sub _note {
    my ($level, $msg) = @_;
    return unless $VERBOSE >= $level;
    Test::More::note($msg);
}

sub DESTROY {
    my ($self) = @_;
    # objects normally live until END; stop nginx if one goes away earlier
    local ($?, $@, $!);
    $self->stop if $$ == $PID && $self->{pid} && !$FINISHED;
}


###########################################################################

package TSTest::Backends;

# A second, plain nginx (no module) serving named backends, which tests
# can stop and start, as a whole or one backend at a time.

use strict;
use warnings;

use Carp qw(croak);

our @ISA = ('TSTest');

my $BACKENDS_COUNT = 0;

sub new {
    my ($class, %opts) = @_;
    my $list = delete $opts{backends} // [];
    my $n = ++$BACKENDS_COUNT;
    my $self = TSTest::new($class, module => 0,
        name => $n == 1 ? 'backends' : "backends$n", %opts);
    my @l = @$list;
    while (@l) {
        my $name = shift @l;
        my %bo = ref $l[0] eq 'HASH' ? %{shift @l} : ();
        $self->backend($name, %bo);
    }
    return $self;
}

sub start {
    my ($self, %opts) = @_;
    $self->write_config("http {\n%%BACKENDS%%\n}\n");
    return $self->SUPER::start(%opts);
}

sub reload {
    my ($self, @args) = @_;
    my $template = @args % 2 ? shift @args : undef;
    return $self->SUPER::reload($template // "http {\n%%BACKENDS%%\n}\n",
        @args);
}

1;

__END__

=head1 NAME

TSTest - test harness for nginx-traffic-shift

=head1 SYNOPSIS

    use strict;
    use warnings;
    use Test::More;
    use FindBin;
    use lib "$FindBin::Bin/lib";
    use TSTest;

    my $t = TSTest->new(workers => 2);
    $t->backend($_) for qw(blue1 blue2);
    $t->write_config(<<'EOF');
    http {
        upstream blue { server 127.0.0.1:%%PORT_blue1%%;
                        server 127.0.0.1:%%PORT_blue2%%; }
        server {
            listen 127.0.0.1:%%PORT_main%%;
            location / { proxy_pass http://blue; }
        }
    }
    EOF
    $t->start;

    is($t->get('/')->{status}, 200, 'proxied');
    is_deeply($t->count_backends(n => 100),
              { blue1 => 50, blue2 => 50 }, 'round robin');

    done_testing();

See t/README for the full API.

=cut
