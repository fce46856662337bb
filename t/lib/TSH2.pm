package TSH2;

# A minimal HTTP/2 client over cleartext with prior knowledge (a port of
# the harness's %%LISTEN_H2_name%% macro), for tests of request bodies sent
# in DATA frames.  One request per connection, core Perl only.
#
#   my $r = TSH2::request(port => $t->port('h2'), method => 'PATCH',
#       path => '/traffic/upstreams/app',
#       headers => ['content-type' => 'application/json'],
#       body => $json, frame => 1000, content_length => 0);
#
# Options: frame (the size of the DATA frames, default 16384),
# content_length (send a content-length header, default 1), timeout,
# cancel (reset the stream with CANCEL once the request is sent, close the
# connection and return without an answer).
# Flow control is honoured.  Returns { status, body, json (when the body
# decodes as JSON), reset (RST_STREAM error code, when the server reset
# the stream), error (on a failure of the exchange) }.  Response headers
# other than :status are not decoded (HPACK Huffman is not implemented).

use strict;
use warnings;

use Errno qw(EINTR EAGAIN EWOULDBLOCK);
use IO::Select;
use IO::Socket::INET;
use JSON::PP ();
use Time::HiRes qw(time);

use constant {
    DATA => 0, HEADERS => 1, RST_STREAM => 3, SETTINGS => 4, PING => 6,
    GOAWAY => 7, WINDOW_UPDATE => 8, CONTINUATION => 9,
    END_STREAM => 0x1, ACK => 0x1, END_HEADERS => 0x4,
};

# the static table entries for :status
my %STATUS = (8 => 200, 9 => 204, 10 => 206, 11 => 304, 12 => 400,
              13 => 404, 14 => 500);

sub _frame {
    my ($type, $flags, $sid, $payload) = @_;
    my $len = length $payload;
    return pack('CnCCN', $len >> 16, $len & 0xffff, $type, $flags, $sid)
        . $payload;
}

sub _hpack_int {
    my ($n, $prefix, $first) = @_;
    my $max = (1 << $prefix) - 1;
    return chr($first | $n) if $n < $max;
    my $s = chr($first | $max);
    $n -= $max;
    while ($n >= 128) {
        $s .= chr(($n & 0x7f) | 0x80);
        $n >>= 7;
    }
    return $s . chr($n);
}

# literal header field without indexing, new name, no Huffman
sub _header {
    my ($name, $value) = @_;
    return "\x00" . _hpack_int(length $name, 7, 0) . lc($name)
        . _hpack_int(length $value, 7, 0) . $value;
}

sub request {
    my (%o) = @_;

    my $timeout = $o{timeout} // 10;
    my $deadline = time + $timeout;
    my $body = $o{body};
    my $frame_size = $o{frame} // 16384;
    my $res = { status => 0, body => '' };

    my $s = IO::Socket::INET->new(
        PeerAddr => '127.0.0.1', PeerPort => $o{port}, Proto => 'tcp',
        Timeout => $timeout,
    ) or return { %$res, error => "connect: $!" };
    $s->blocking(0);

    my $out = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" . _frame(SETTINGS, 0, 0, '');

    my $block = _header(':method', $o{method} // 'GET')
        . _header(':scheme', 'http')
        . _header(':path', $o{path} // '/')
        . _header(':authority', 'localhost');
    my @h = @{$o{headers} // []};
    while (my ($k, $v) = splice(@h, 0, 2)) {
        $block .= _header($k, $v);
    }
    if (defined $body && ($o{content_length} // 1)) {
        $block .= _header('content-length', length $body);
    }

    $out .= _frame(HEADERS, END_HEADERS | (defined $body ? 0 : END_STREAM),
                   1, $block);

    # the peer's windows: 65535 until its SETTINGS say otherwise
    my $conn_window = 65535;
    my $stream_window = 65535;
    my $sent = 0;
    my $body_done = !defined $body;
    my $in = '';
    my $settings_seen = 0;
    my $sel = IO::Select->new($s);

    while (time < $deadline) {

        # queue DATA frames as the windows allow
        while (!$body_done && $settings_seen) {
            my $n = length($body) - $sent;
            $n = $frame_size if $n > $frame_size;
            $n = $conn_window if $n > $conn_window;
            $n = $stream_window if $n > $stream_window;
            last if $n <= 0 && length($body) - $sent > 0;
            my $last = $sent + $n == length $body;
            $out .= _frame(DATA, $last ? END_STREAM : 0, 1,
                           substr($body, $sent, $n));
            $sent += $n;
            $conn_window -= $n;
            $stream_window -= $n;
            $body_done = 1 if $last;
        }

        if ($o{cancel} && $body_done) {
            $out .= _frame(RST_STREAM, 0, 1, pack('N', 8));
            $s->blocking(1);
            syswrite($s, $out);
            close $s;
            return { %$res, cancelled => 1 };
        }

        if (length $out && $sel->can_write(0)) {
            my $n = syswrite($s, $out);
            if (!defined $n) {
                if ($! != EINTR && $! != EAGAIN && $! != EWOULDBLOCK) {
                    # the server may have answered and closed
                    $out = '';
                    $body_done = 1;
                }
            } else {
                substr($out, 0, $n) = '';
            }
        }

        next unless $sel->can_read(length $out ? 0.01 : 0.2);

        my $n = sysread($s, $in, 65536, length $in);
        if (!defined $n) {
            next if $! == EINTR || $! == EAGAIN || $! == EWOULDBLOCK;
            $res->{error} = "read: $!";
            last;
        }
        if ($n == 0) {
            $res->{error} //= 'connection closed' unless $res->{done};
            last;
        }

        while (length($in) >= 9) {
            my ($l1, $l2, $type, $flags, $sid) = unpack('CnCCN', $in);
            my $len = ($l1 << 16) | $l2;
            last if length($in) < 9 + $len;
            my $payload = substr($in, 9, $len);
            substr($in, 0, 9 + $len) = '';
            $sid &= 0x7fffffff;

            if ($type == SETTINGS) {
                next if $flags & ACK;
                for (my $i = 0; $i + 6 <= length $payload; $i += 6) {
                    my ($id, $v) = unpack('nN', substr($payload, $i, 6));
                    $stream_window += $v - 65535 if $id == 4;
                }
                $settings_seen = 1;
                $out .= _frame(SETTINGS, ACK, 0, '');

            } elsif ($type == WINDOW_UPDATE) {
                my $inc = unpack('N', $payload) & 0x7fffffff;
                if ($sid == 0) {
                    $conn_window += $inc;
                } else {
                    $stream_window += $inc;
                }

            } elsif ($type == PING) {
                $out .= _frame(PING, ACK, 0, $payload) unless $flags & ACK;

            } elsif ($type == HEADERS && $sid == 1) {
                $res->{status} ||= _status($payload, $flags);
                $res->{done} = 1 if $flags & END_STREAM;

            } elsif ($type == DATA && $sid == 1) {
                $res->{body} .= $payload;
                # give the window back, so that large answers flow
                if ($len) {
                    $out .= _frame(WINDOW_UPDATE, 0, 0, pack('N', $len))
                        . _frame(WINDOW_UPDATE, 0, 1, pack('N', $len));
                }
                $res->{done} = 1 if $flags & END_STREAM;

            } elsif ($type == RST_STREAM && $sid == 1) {
                $res->{reset} = unpack('N', $payload);
                $res->{done} = 1;

            } elsif ($type == GOAWAY) {
                $res->{goaway} = 1;
                $res->{done} = 1;
            }
        }

        last if $res->{done};
    }

    close $s;

    $res->{error} //= 'timeout' unless $res->{done};

    if (length $res->{body}) {
        $res->{json} = eval { JSON::PP->new->utf8->decode($res->{body}) };
    }

    return $res;
}

# :status from a header block nginx wrote (it comes first)
sub _status {
    my ($block, $flags) = @_;

    # skip the priority fields
    $block = substr($block, 5) if $flags & 0x20;

    my $b = ord $block;

    if ($b & 0x80) {
        return $STATUS{$b & 0x7f} // 0;
    }

    # literal with the name of static entry 8 (:status), raw value
    if (($b & 0xc0) == 0x40 || ($b & 0xf0) == 0 || ($b & 0xf0) == 0x10) {
        my $len = ord(substr($block, 1, 1));
        return 0 if $len & 0x80;
        return substr($block, 2, $len) + 0;
    }

    return 0;
}

1;
