package TSEtcd;

# A real etcd (Debian's etcd-server, /usr/bin/etcd) for the fleet tests:
# one member (or a cluster of several) on loopback ports the harness
# allocates, its data in the test's directory.  Stopped, started again on the same data, and asked
# through its v3 JSON gateway (keys and values base64, 64-bit numbers as
# JSON strings).
#
# Core Perl only.
#
#   my $etcd = TSEtcd->new($t);          # skips (or fails under CI=1)
#   $etcd->put('/traffic-shift/upstreams/app', '{"weights":{...}}');
#   my ($value, $mod) = $etcd->get('/traffic-shift/upstreams/app');
#   $etcd->stop; $etcd->start;
#   $etcd->watchers;                     # watchers open (its /metrics)
#   $etcd->url;                          # http://127.0.0.1:PORT
#   my @members = TSEtcd->cluster($t, 3);  # a 3-member cluster
#   $member->is_leader; $member->kill9;
#   TSEtcd->new($t, args => ['--auth-token-ttl', 2]);  # more etcd flags
#   $etcd->enable_auth('ts', 'secret');  # users and roles, auth enabled;
#                                        # call/put/get then go as root
#   $etcd->etcdctl('user', 'add', 'x:y');  # etcdctl as root

use strict;
use warnings;

use Carp qw(croak);
use HTTP::Tiny;
use JSON::PP;
use MIME::Base64 qw(encode_base64 decode_base64);
use POSIX ();
use Test::More;
use Time::HiRes qw(time sleep);

my $ETCD = $ENV{TS_ETCD} || '/usr/bin/etcd';
my @RUNNING;

# the etcd binary, or skip the test (fail it under CI=1)
sub require_etcd {
    return 1 if -x $ETCD;
    if ($ENV{CI}) {
        BAIL_OUT("$ETCD not found: install etcd-server (scripts/install-deps)");
    }
    plan skip_all => "$ETCD not found (etcd-server is not installed)";
}

sub new {
    my ($class, $t, %o) = @_;
    my $self = $class->_member($t, $o{name} // 'etcd');
    $self->{tls} = $o{tls};
    $self->{args} = $o{args};
    $self->{cluster} = "$self->{name}=http://127.0.0.1:$self->{peer}";
    $self->start;
    return $self;
}

# N members of one cluster, started together: (member, ...)
sub cluster {
    my ($class, $t, $n) = @_;
    my @m = map { $class->_member($t, "etcd$_") } 1 .. $n;
    my $cluster = join ',',
        map { "$_->{name}=http://127.0.0.1:$_->{peer}" } @m;
    for my $m (@m) {
        $m->{cluster} = $cluster;
        $m->_spawn;
    }
    $_->_wait_healthy for @m;
    return @m;
}

sub _member {
    my ($class, $t, $name) = @_;
    require_etcd();
    my $self = bless {
        t => $t,
        name => $name,
        client => $t->port("${name}_client"),
        peer => $t->port("${name}_peer"),
        dir => $t->testdir . "/$name",
        http => HTTP::Tiny->new(timeout => 3),
        json => JSON::PP->new->canonical,
        parent => $$,
    }, $class;
    push @RUNNING, $self;
    return $self;
}

sub url {
    my ($self) = @_;
    return ($self->{tls} ? 'https' : 'http') . "://127.0.0.1:$self->{client}";
}
sub port { $_[0]{client} }
sub pid { $_[0]{pid} }

sub start {
    my ($self) = @_;
    $self->_spawn;
    return $self->_wait_healthy;
}

sub _spawn {
    my ($self) = @_;
    croak 'TSEtcd: already running' if $self->{pid};
    my $pid = fork;
    croak "TSEtcd: fork: $!" unless defined $pid;
    if ($pid == 0) {
        open(STDOUT, '>>', "$self->{dir}.log");
        open(STDERR, '>&', \*STDOUT);
        exec($ETCD, '--name', $self->{name},
             '--data-dir', $self->{dir},
             '--listen-client-urls', $self->url,
             '--advertise-client-urls', $self->url,
             '--listen-peer-urls', "http://127.0.0.1:$self->{peer}",
             '--initial-advertise-peer-urls',
             "http://127.0.0.1:$self->{peer}",
             '--initial-cluster', $self->{cluster},
             '--initial-cluster-token', "ts-$self->{parent}",
             $self->_tls_args,
             @{ $self->{args} // [] },
             '--log-level', 'warn')
            or POSIX::_exit(127);
    }
    $self->{pid} = $pid;
}

# TLS on the client port: {cert, key, ca}; with ca, client certificates
# signed by it are required
sub _tls_args {
    my ($self) = @_;
    my $tls = $self->{tls} or return ();
    return ('--cert-file', $tls->{cert}, '--key-file', $tls->{key},
            $tls->{ca} ? ('--client-cert-auth',
                          '--trusted-ca-file', $tls->{ca}) : ());
}

sub _healthy {
    my ($self) = @_;
    if (my $tls = $self->{tls}) {
        # HTTP::Tiny has no TLS without modules outside the core: etcdctl
        my $out = qx{ETCDCTL_API=3 etcdctl --endpoints=${\ $self->url} \\
            --cacert=$tls->{cacert} \\
            ${\ ($tls->{client_cert} ? "--cert=$tls->{client_cert} --key=$tls->{client_key}" : '')} \\
            --dial-timeout=1s endpoint health 2>&1};
        return $out =~ /is healthy/;
    }
    my $r = $self->{http}->get($self->url . '/health');
    return $r->{success} && $r->{content} =~ /"health":\s*"true"/;
}

sub _wait_healthy {
    my ($self) = @_;
    my $deadline = time + 15;
    while (time < $deadline) {
        return $self if $self->_healthy;
        croak "TSEtcd: etcd exited at start, see $self->{dir}.log"
            if waitpid($self->{pid}, POSIX::WNOHANG()) == $self->{pid};
        sleep 0.05;
    }
    croak "TSEtcd: etcd not healthy within 15 s, see $self->{dir}.log";
}

# SIGKILL, as a crash
sub kill9 {
    my ($self) = @_;
    return unless $self->{pid};
    kill 'KILL', $self->{pid};
    waitpid $self->{pid}, 0;
    delete $self->{pid};
}

# true if this member is the cluster's leader now
sub is_leader {
    my ($self) = @_;
    my $s = $self->call('/v3/maintenance/status', {});
    return $s->{leader} && $s->{leader} eq $s->{header}{member_id};
}

sub stop {
    my ($self) = @_;
    local $?;
    return unless $self->{pid} && $$ == $self->{parent};
    kill 'TERM', $self->{pid};
    my $deadline = time + 10;
    while (time < $deadline) {
        last if waitpid($self->{pid}, POSIX::WNOHANG()) == $self->{pid};
        sleep 0.02;
    }
    if (kill 0, $self->{pid}) {
        kill 'KILL', $self->{pid};
        waitpid $self->{pid}, 0;
    }
    delete $self->{pid};
}

sub DESTROY { $_[0]->stop }
END { $_->stop for @RUNNING }

sub call {
    my ($self, $path, $req) = @_;
    my $r = $self->_post($path, $req);
    if ($r->{status} == 401 && $self->{root}) {
        # an expired token (enable_auth): once more with a new one
        delete $self->{token};
        $r = $self->_post($path, $req);
    }
    croak "TSEtcd: $path: $r->{status} $r->{content}" unless $r->{success};
    return decode_json($r->{content});
}

sub _post {
    my ($self, $path, $req) = @_;
    my %headers = ('Content-Type' => 'application/json');
    if ($self->{root} && $path ne '/v3/auth/authenticate') {
        $self->{token} //= $self->call('/v3/auth/authenticate',
            { name => 'root', password => $self->{root} })->{token};
        $headers{Authorization} = $self->{token};
    }
    return $self->{http}->post($self->url . $path, {
        content => $self->{json}->encode($req), headers => \%headers });
}

# etcdctl against this member, as root once auth is enabled; its output
sub etcdctl {
    my ($self, @args) = @_;
    croak 'TSEtcd: etcdctl without TLS only' if $self->{tls};
    my @user = $self->{root} ? ("--user=root:$self->{root}") : ();
    local $ENV{ETCDCTL_API} = 3;
    my $pid = open(my $fh, '-|') // croak "TSEtcd: fork: $!";
    if ($pid == 0) {
        open(STDERR, '>&', \*STDOUT);
        exec('etcdctl', "--endpoints=${\ $self->url}", '--dial-timeout=2s',
             @user, @args) or POSIX::_exit(127);
    }
    my $out = do { local $/; <$fh> } // '';
    close $fh;
    croak "TSEtcd: etcdctl @args: $out" if $?;
    return $out;
}

# etcd's authentication: root (password "root-PID"), USER with PASSWORD
# and a role that may read and write every key under PREFIX (default
# /traffic-shift/), then "auth enable"; call, put and get then go as root
sub enable_auth {
    my ($self, $user, $password, $prefix) = @_;
    $prefix //= '/traffic-shift/';
    my $root = "root-$$";
    $self->etcdctl('user', 'add', "root:$root");
    $self->etcdctl('user', 'grant-role', 'root', 'root');
    $self->etcdctl('user', 'add', "$user:$password");
    $self->etcdctl('role', 'add', "$user-rw");
    $self->etcdctl('role', 'grant-permission', "$user-rw", 'readwrite',
                   '--prefix=true', $prefix);
    $self->etcdctl('user', 'grant-role', $user, "$user-rw");
    $self->etcdctl('auth', 'enable');
    $self->{root} = $root;
    return $self;
}

sub _b64 { encode_base64($_[0], '') }

sub put {
    my ($self, $key, $value) = @_;
    my $res = $self->call('/v3/kv/put',
                          { key => _b64($key), value => _b64($value) });
    return $res->{header}{revision};
}

# (value, mod_revision) of a key, or () if it is not there
sub get {
    my ($self, $key) = @_;
    my $res = $self->call('/v3/kv/range', { key => _b64($key) });
    my $kv = ($res->{kvs} // [])->[0] or return;
    return (decode_base64($kv->{value} // ''), $kv->{mod_revision});
}

sub compact {
    my ($self, $revision) = @_;
    return $self->call('/v3/kv/compaction',
                       { revision => "$revision", physical => JSON::PP::true });
}

# the number of watchers etcd has open (its Prometheus metrics)
sub watchers {
    my ($self) = @_;
    my $r = $self->{http}->get($self->url . '/metrics');
    croak "TSEtcd: /metrics: $r->{status}" unless $r->{success};
    return $r->{content} =~ /^etcd_debugging_mvcc_watcher_total (\d+)/m
        ? $1 : croak 'TSEtcd: no etcd_debugging_mvcc_watcher_total';
}

1;
