/*
 * Copyright (C) nginx-traffic-shift developers
 */


#include "ngx_http_traffic_shift_health_probe.h"


/*
 * One probe on nginx's event loop: connect (or reuse the connection kept
 * from the last probe), the TLS handshake and the verification of the
 * certificate for https, send the request, read the status line, the
 * headers and the body as framed by Content-Length or chunked encoding
 * (HEAD, 1xx, 204 and 304 have none; without either, to the end of the
 * connection), keep up to 64 KiB of it for body=, then record the result.
 * tcp probes end when the connection is established.
 *
 * A kept connection that fails before any byte of the response came back
 * (the server closed it while the probe was sent) is not the server's
 * failure: the probe is sent again once on a new connection.
 */


#define NGX_HTTP_TS_HC_CHUNK_SIZE      0
#define NGX_HTTP_TS_HC_CHUNK_EXT       1
#define NGX_HTTP_TS_HC_CHUNK_SIZE_LF   2
#define NGX_HTTP_TS_HC_CHUNK_DATA      3
#define NGX_HTTP_TS_HC_CHUNK_DATA_CR   4
#define NGX_HTTP_TS_HC_CHUNK_DATA_LF   5
#define NGX_HTTP_TS_HC_CHUNK_TRAILER   6
#define NGX_HTTP_TS_HC_CHUNK_LINE      7
#define NGX_HTTP_TS_HC_CHUNK_LAST_LF   8
#define NGX_HTTP_TS_HC_CHUNK_HEX       9


static ngx_int_t ngx_http_traffic_shift_health_reuse(
    ngx_http_traffic_shift_probe_t *probe);
static void ngx_http_traffic_shift_health_handler(ngx_event_t *ev);
static ngx_int_t ngx_http_traffic_shift_health_test_connect(
    ngx_http_traffic_shift_probe_t *probe);
static char *ngx_http_traffic_shift_health_connect_error(ngx_err_t err);
static void ngx_http_traffic_shift_health_connected(
    ngx_http_traffic_shift_probe_t *probe);
#if (NGX_HTTP_SSL)
static void ngx_http_traffic_shift_health_ssl(
    ngx_http_traffic_shift_probe_t *probe);
static void ngx_http_traffic_shift_health_ssl_handshake(ngx_connection_t *c);
static ngx_int_t ngx_http_traffic_shift_health_ssl_verify(
    ngx_http_traffic_shift_probe_t *probe);
#endif
static void ngx_http_traffic_shift_health_send(
    ngx_http_traffic_shift_probe_t *probe);
static void ngx_http_traffic_shift_health_recv(
    ngx_http_traffic_shift_probe_t *probe);
static ngx_int_t ngx_http_traffic_shift_health_room(
    ngx_http_traffic_shift_probe_t *probe);
static void ngx_http_traffic_shift_health_lost(
    ngx_http_traffic_shift_probe_t *probe, char *reason);
static ngx_int_t ngx_http_traffic_shift_health_parse(
    ngx_http_traffic_shift_probe_t *probe);
static ngx_int_t ngx_http_traffic_shift_health_headers(
    ngx_http_traffic_shift_probe_t *probe);
static ngx_int_t ngx_http_traffic_shift_health_header(
    ngx_http_traffic_shift_probe_t *probe);
static ngx_int_t ngx_http_traffic_shift_health_framing(
    ngx_http_traffic_shift_probe_t *probe);
static ngx_int_t ngx_http_traffic_shift_health_body(
    ngx_http_traffic_shift_probe_t *probe);
static ngx_int_t ngx_http_traffic_shift_health_chunked(
    ngx_http_traffic_shift_probe_t *probe);
static void ngx_http_traffic_shift_health_keep_body(
    ngx_http_traffic_shift_probe_t *probe, u_char *p, size_t n);
static void ngx_http_traffic_shift_health_eof(
    ngx_http_traffic_shift_probe_t *probe);
static void ngx_http_traffic_shift_health_complete(
    ngx_http_traffic_shift_probe_t *probe);
#if (NGX_PCRE)
static char *ngx_http_traffic_shift_health_match(
    ngx_http_traffic_shift_probe_t *probe);
#endif
static ngx_uint_t ngx_http_traffic_shift_health_status_ok(
    ngx_http_traffic_shift_health_conf_t *conf, ngx_uint_t code);
static void ngx_http_traffic_shift_health_done(
    ngx_http_traffic_shift_probe_t *probe, ngx_uint_t result, char *reason);
static void ngx_http_traffic_shift_health_record(
    ngx_http_traffic_shift_probe_t *probe, ngx_uint_t result, char *reason);
static void ngx_http_traffic_shift_health_keep(
    ngx_http_traffic_shift_probe_t *probe);
static void ngx_http_traffic_shift_health_idle(ngx_event_t *ev);
static void ngx_http_traffic_shift_health_idle_write(ngx_event_t *ev);
static void ngx_http_traffic_shift_health_free(
    ngx_http_traffic_shift_probe_t *probe);


void
ngx_http_traffic_shift_probe_start(ngx_http_traffic_shift_probe_t *probe)
{
    char              *reason;
    ngx_int_t          rc;
    ngx_err_t          err;
    ngx_connection_t  *c;

    probe->busy = 1;
    probe->status_parsed = 0;
    probe->headers_done = 0;
    probe->reused = 0;
    probe->received = 0;
    probe->keep = 0;
    probe->has_length = 0;
    probe->chunked = 0;
    probe->close = 0;
    probe->request = NULL;
    probe->body = NULL;
    probe->body_len = 0;
    probe->body_size = 0;
    probe->rest = 0;
    probe->framing = NGX_HTTP_TS_HC_BODY_NONE;
    probe->chunk_state = NGX_HTTP_TS_HC_CHUNK_SIZE;
    probe->sent = probe->conf->request.data;

    ngx_memzero(&probe->buf, sizeof(ngx_buf_t));
    ngx_memzero(&probe->status, sizeof(ngx_http_status_t));

    if (probe->pc.connection) {
        if (ngx_http_traffic_shift_health_reuse(probe) == NGX_OK) {
            return;
        }

        /* closed, or not usable: a new one */
        ngx_http_traffic_shift_probe_close(probe);
        probe->busy = 1;
    }

    probe->pool = ngx_create_pool(2048, &probe->log);
    if (probe->pool == NULL) {
        probe->busy = 0;
        return;
    }

    probe->phase = NGX_HTTP_TS_HC_CONNECT;

    ngx_memzero(&probe->pc, sizeof(ngx_peer_connection_t));

    probe->pc.sockaddr = probe->sockaddr;
    probe->pc.socklen = probe->socklen;
    probe->pc.name = &probe->name;
    probe->pc.get = ngx_event_get_peer;
    probe->pc.log = &probe->log;
    probe->pc.log_error = NGX_ERROR_INFO;
    probe->pc.tries = 1;

    /*
     * a refused connection is the probe's result, recorded with its
     * reason: it is not logged at "error" on every probe
     */

    if (probe->log.log_level > NGX_LOG_CRIT
        && probe->log.log_level < NGX_LOG_DEBUG)
    {
        probe->log.log_level = NGX_LOG_CRIT;
    }

    rc = ngx_event_connect_peer(&probe->pc);
    err = ngx_socket_errno;

    probe->log.log_level = probe->log_level;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, &probe->log, 0,
                   "traffic_shift health check of %V in \"%V\": connect %i",
                   &probe->name, &probe->ups->uscf->host, rc);

    if (rc == NGX_DECLINED) {
        probe->pc.connection = NULL;
        reason = ngx_http_traffic_shift_health_connect_error(err);
        ngx_http_traffic_shift_health_done(probe, NGX_HTTP_TS_PROBE_FAIL,
                                           reason);
        return;
    }

    if (rc == NGX_ERROR || rc == NGX_BUSY) {

        /*
         * no socket or connection here, already logged: the probe was not
         * sent, which says nothing of the server
         */

        probe->pc.connection = NULL;
        ngx_http_traffic_shift_probe_close(probe);
        return;
    }

    c = probe->pc.connection;

    c->data = probe;
    c->pool = probe->pool;

    /* closed at once when the worker shuts down */
    c->idle = 1;

    c->read->handler = ngx_http_traffic_shift_health_handler;
    c->write->handler = ngx_http_traffic_shift_health_handler;

    /* the timeout counts from the probe's start, whatever the phase */

    c->read->cancelable = 1;
    c->write->cancelable = 1;
    ngx_add_timer(c->read, probe->conf->timeout);

    if (rc == NGX_AGAIN) {
        return;
    }

    ngx_http_traffic_shift_health_connected(probe);
}


/* the connection kept from the last probe: the request goes on it */

static ngx_int_t
ngx_http_traffic_shift_health_reuse(ngx_http_traffic_shift_probe_t *probe)
{
    ngx_connection_t  *c;

    c = probe->pc.connection;

    if (c->close || c->error || c->read->eof || c->read->error) {
        return NGX_DECLINED;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, &probe->log, 0,
                   "traffic_shift health check of %V: kept connection",
                   &probe->name);

    ngx_reusable_connection(c, 0);

    probe->reused = 1;
    probe->phase = NGX_HTTP_TS_HC_SEND;

    c->read->handler = ngx_http_traffic_shift_health_handler;
    c->write->handler = ngx_http_traffic_shift_health_handler;

    ngx_add_timer(c->read, probe->conf->timeout);

    ngx_http_traffic_shift_health_send(probe);

    return NGX_OK;
}


static void
ngx_http_traffic_shift_health_handler(ngx_event_t *ev)
{
    char                            *reason;
    ngx_connection_t                *c;
    ngx_http_traffic_shift_probe_t  *probe;

    c = ev->data;
    probe = c->data;

    if (c->close || ngx_exiting || ngx_terminate) {
        ngx_http_traffic_shift_probe_close(probe);
        ngx_http_traffic_shift_zone_release(probe->mcf, probe->server->sh);
        return;
    }

    if (ev->timedout) {
        c->timedout = 1;

        switch (probe->phase) {

        case NGX_HTTP_TS_HC_CONNECT:
            reason = "timeout while connecting";
            break;

        case NGX_HTTP_TS_HC_SEND:
            reason = "timeout while sending request";
            break;

        default:
            reason = "timeout while reading response";
        }

        ngx_http_traffic_shift_health_done(probe, NGX_HTTP_TS_PROBE_TIMEOUT,
                                           reason);
        return;
    }

    switch (probe->phase) {

    case NGX_HTTP_TS_HC_CONNECT:

        if (ngx_http_traffic_shift_health_test_connect(probe) == NGX_OK) {
            ngx_http_traffic_shift_health_connected(probe);
        }

        return;

    case NGX_HTTP_TS_HC_SEND:

        if (ev->write) {
            ngx_http_traffic_shift_health_send(probe);
        }

        return;

    case NGX_HTTP_TS_HC_RECV:

        if (!ev->write) {
            ngx_http_traffic_shift_health_recv(probe);
        }

        return;

    default:
        return;
    }
}


static ngx_int_t
ngx_http_traffic_shift_health_test_connect(
    ngx_http_traffic_shift_probe_t *probe)
{
    int                err;
    char              *reason;
    socklen_t          len;
    ngx_connection_t  *c;

    c = probe->pc.connection;

#if (NGX_HAVE_KQUEUE)

    if (ngx_event_flags & NGX_USE_KQUEUE_EVENT) {
        err = 0;

        if (c->write->pending_eof || c->read->pending_eof) {
            err = c->write->pending_eof ? c->write->kq_errno
                                        : c->read->kq_errno;
            if (err == 0) {
                err = NGX_ECONNREFUSED;
            }
        }

    } else
#endif
    {
        err = 0;
        len = sizeof(int);

        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, (void *) &err, &len)
            == -1)
        {
            err = ngx_socket_errno;
        }
    }

    if (err == 0) {
        return NGX_OK;
    }

    c->error = 1;

    reason = ngx_http_traffic_shift_health_connect_error(err);
    ngx_http_traffic_shift_health_done(probe, NGX_HTTP_TS_PROBE_FAIL, reason);

    return NGX_ERROR;
}


static char *
ngx_http_traffic_shift_health_connect_error(ngx_err_t err)
{
    switch (err) {

    case NGX_ECONNREFUSED:
        return "connect refused";

    case NGX_ETIMEDOUT:
        return "connect timed out";

    case NGX_EHOSTUNREACH:
    case NGX_ENETUNREACH:
        return "host unreachable";

    default:
        return "connect failed";
    }
}


static void
ngx_http_traffic_shift_health_connected(ngx_http_traffic_shift_probe_t *probe)
{
    switch (probe->conf->type) {

    case NGX_HTTP_TS_HC_TCP:
        ngx_http_traffic_shift_health_done(probe, NGX_HTTP_TS_PROBE_OK, NULL);
        return;

#if (NGX_HTTP_SSL)
    case NGX_HTTP_TS_HC_HTTPS:
        ngx_http_traffic_shift_health_ssl(probe);
        return;
#endif

    default:
        probe->phase = NGX_HTTP_TS_HC_SEND;
        ngx_http_traffic_shift_health_send(probe);
        return;
    }
}


#if (NGX_HTTP_SSL)

static void
ngx_http_traffic_shift_health_ssl(ngx_http_traffic_shift_probe_t *probe)
{
    ngx_int_t                              rc;
    ngx_connection_t                      *c;
    ngx_http_traffic_shift_health_conf_t  *conf;

    c = probe->pc.connection;
    conf = probe->conf;

    if (ngx_ssl_create_connection(conf->ssl, c,
                                  NGX_SSL_BUFFER|NGX_SSL_CLIENT)
        != NGX_OK)
    {
        ngx_http_traffic_shift_health_done(probe, NGX_HTTP_TS_PROBE_FAIL,
                                           "tls setup failed");
        return;
    }

#ifdef SSL_CTRL_SET_TLSEXT_HOSTNAME

    if (conf->sni.len
        && SSL_set_tlsext_host_name(c->ssl->connection,
                                    (char *) conf->sni.data)
           == 0)
    {
        ngx_ssl_error(NGX_LOG_ERR, &probe->log, 0,
                      "SSL_set_tlsext_host_name(\"%s\") failed",
                      conf->sni.data);
        ngx_http_traffic_shift_health_done(probe, NGX_HTTP_TS_PROBE_FAIL,
                                           "tls setup failed");
        return;
    }

#endif

    probe->phase = NGX_HTTP_TS_HC_HANDSHAKE;

    rc = ngx_ssl_handshake(c);

    if (rc == NGX_AGAIN) {
        c->ssl->handler = ngx_http_traffic_shift_health_ssl_handshake;
        return;
    }

    ngx_http_traffic_shift_health_ssl_handshake(c);
}


static void
ngx_http_traffic_shift_health_ssl_handshake(ngx_connection_t *c)
{
    ngx_http_traffic_shift_probe_t  *probe;

    probe = c->data;

    if (c->close || ngx_exiting || ngx_terminate) {
        ngx_http_traffic_shift_probe_close(probe);
        ngx_http_traffic_shift_zone_release(probe->mcf, probe->server->sh);
        return;
    }

    if (c->read->timedout) {
        c->timedout = 1;
        ngx_http_traffic_shift_health_done(probe, NGX_HTTP_TS_PROBE_TIMEOUT,
                                           "timeout during tls handshake");
        return;
    }

    if (!c->ssl->handshaked) {
        c->error = 1;
        ngx_http_traffic_shift_health_done(probe, NGX_HTTP_TS_PROBE_FAIL,
                                           "tls handshake failed");
        return;
    }

    if (probe->conf->ssl_verify
        && ngx_http_traffic_shift_health_ssl_verify(probe) != NGX_OK)
    {
        return;
    }

    c->read->handler = ngx_http_traffic_shift_health_handler;
    c->write->handler = ngx_http_traffic_shift_health_handler;

    probe->phase = NGX_HTTP_TS_HC_SEND;

    ngx_http_traffic_shift_health_send(probe);
}


/*
 * The chain to a trusted certificate, then the name: a failure is the
 * probe's, with OpenSSL's reason, as "ssl verify: certificate has expired"
 */

static ngx_int_t
ngx_http_traffic_shift_health_ssl_verify(ngx_http_traffic_shift_probe_t *probe)
{
    long               rc;
    u_char            *p;
    ngx_connection_t  *c;
    u_char             reason[NGX_HTTP_TS_ERR_LEN];

    c = probe->pc.connection;

    rc = SSL_get_verify_result(c->ssl->connection);

    if (rc != X509_V_OK) {
        p = ngx_snprintf(reason, sizeof(reason) - 1, "ssl verify: %s",
                         X509_verify_cert_error_string(rc));
        *p = '\0';

        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, &probe->log, 0,
                       "traffic_shift health check: verify error %l: %s",
                       rc, reason);

        c->error = 1;
        ngx_http_traffic_shift_health_done(probe, NGX_HTTP_TS_PROBE_FAIL,
                                           (char *) reason);
        return NGX_ERROR;
    }

    if (ngx_ssl_check_host(c, &probe->conf->ssl_name) != NGX_OK) {
        p = ngx_snprintf(reason, sizeof(reason) - 1,
                         "ssl verify: certificate does not match \"%V\"",
                         &probe->conf->ssl_name);
        *p = '\0';

        c->error = 1;
        ngx_http_traffic_shift_health_done(probe, NGX_HTTP_TS_PROBE_FAIL,
                                           (char *) reason);
        return NGX_ERROR;
    }

    return NGX_OK;
}

#endif


static void
ngx_http_traffic_shift_health_send(ngx_http_traffic_shift_probe_t *probe)
{
    u_char            *last;
    ssize_t            n;
    ngx_connection_t  *c;

    c = probe->pc.connection;
    last = probe->conf->request.data + probe->conf->request.len;

    while (probe->sent < last) {

        n = c->send(c, probe->sent, last - probe->sent);

        if (n == NGX_AGAIN) {
            if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
                ngx_http_traffic_shift_health_lost(probe, "send failed");
            }

            return;
        }

        if (n == NGX_ERROR || n <= 0) {
            ngx_http_traffic_shift_health_lost(probe, "send failed");
            return;
        }

        probe->sent += n;
    }

    probe->phase = NGX_HTTP_TS_HC_RECV;

    probe->buf.start = ngx_alloc(NGX_HTTP_TS_HC_BUF_SIZE, &probe->log);
    probe->request = ngx_calloc(sizeof(ngx_http_request_t), &probe->log);

    if (probe->buf.start == NULL || probe->request == NULL) {
        /* not the server's failure */
        ngx_http_traffic_shift_probe_close(probe);
        return;
    }

    probe->buf.pos = probe->buf.start;
    probe->buf.last = probe->buf.start;
    probe->buf.end = probe->buf.start + NGX_HTTP_TS_HC_BUF_SIZE;
    probe->buf.temporary = 1;

    ngx_http_traffic_shift_health_recv(probe);
}


static void
ngx_http_traffic_shift_health_recv(ngx_http_traffic_shift_probe_t *probe)
{
    ssize_t            n;
    ngx_int_t          rc;
    ngx_buf_t         *b;
    ngx_connection_t  *c;

    c = probe->pc.connection;
    b = &probe->buf;

    for ( ;; ) {

        if (b->last == b->end
            && ngx_http_traffic_shift_health_room(probe) != NGX_OK)
        {
            return;
        }

        n = c->recv(c, b->last, b->end - b->last);

        if (n == NGX_AGAIN) {
            if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
                ngx_http_traffic_shift_health_lost(probe, "read failed");
            }

            return;
        }

        if (n == NGX_ERROR) {
            ngx_http_traffic_shift_health_lost(probe,
                                               probe->status_parsed
                                               ? "read failed"
                                               : "connection reset");
            return;
        }

        if (n == 0) {
            if (probe->reused && !probe->received) {
                ngx_http_traffic_shift_health_lost(probe, "empty response");
                return;
            }

            ngx_http_traffic_shift_health_eof(probe);
            return;
        }

        b->last += n;
        probe->received = 1;

        rc = ngx_http_traffic_shift_health_parse(probe);

        if (rc == NGX_AGAIN) {
            continue;
        }

        if (rc == NGX_OK) {
            ngx_http_traffic_shift_health_complete(probe);
        }

        /* NGX_DONE: the probe is over */

        return;
    }
}


/*
 * The buffer is full: what is parsed goes; a status line or a header line
 * that does not fit is a failure
 */

static ngx_int_t
ngx_http_traffic_shift_health_room(ngx_http_traffic_shift_probe_t *probe)
{
    size_t      len;
    ngx_buf_t  *b;

    b = &probe->buf;

    if (!probe->status_parsed) {
        ngx_http_traffic_shift_health_done(probe, NGX_HTTP_TS_PROBE_FAIL,
                                           "bad status line");
        return NGX_ERROR;
    }

    if (!probe->headers_done && b->pos == b->start) {
        ngx_http_traffic_shift_health_done(probe, NGX_HTTP_TS_PROBE_FAIL,
                                           "response header too long");
        return NGX_ERROR;
    }

    len = b->last - b->pos;
    ngx_memmove(b->start, b->pos, len);
    b->pos = b->start;
    b->last = b->start + len;

    return NGX_OK;
}


/*
 * The connection failed.  Kept from an earlier probe and nothing of the
 * response came back: the server closed it as the request was sent, which
 * says nothing of its health; the probe is sent again on a new connection.
 */

static void
ngx_http_traffic_shift_health_lost(ngx_http_traffic_shift_probe_t *probe,
    char *reason)
{
    if (probe->reused && !probe->received) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, &probe->log, 0,
                       "traffic_shift health check of %V: kept connection "
                       "lost, again on a new one", &probe->name);

        ngx_http_traffic_shift_probe_close(probe);
        ngx_http_traffic_shift_probe_start(probe);
        return;
    }

    if (probe->pc.connection) {
        probe->pc.connection->error = 1;
    }

    ngx_http_traffic_shift_health_done(probe, NGX_HTTP_TS_PROBE_FAIL, reason);
}


/*
 * What was read: NGX_AGAIN: more is needed; NGX_OK: the response is
 * complete; NGX_DONE: the probe is over (a failure)
 */

static ngx_int_t
ngx_http_traffic_shift_health_parse(ngx_http_traffic_shift_probe_t *probe)
{
    ngx_int_t  rc;

    if (!probe->status_parsed) {
        rc = ngx_http_parse_status_line(probe->request, &probe->buf,
                                        &probe->status);

        if (rc == NGX_AGAIN) {
            return NGX_AGAIN;
        }

        if (rc != NGX_OK) {
            ngx_http_traffic_shift_health_done(probe, NGX_HTTP_TS_PROBE_FAIL,
                                               "bad status line");
            return NGX_DONE;
        }

        probe->status_parsed = 1;

        if (!ngx_http_traffic_shift_health_status_ok(probe->conf,
                                                     probe->status.code))
        {
            /* no need to read further: the status says it */
            ngx_http_traffic_shift_health_eof(probe);
            return NGX_DONE;
        }
    }

    if (!probe->headers_done) {
        rc = ngx_http_traffic_shift_health_headers(probe);

        if (rc != NGX_OK) {
            return rc;
        }
    }

    return ngx_http_traffic_shift_health_body(probe);
}


/*
 * The headers are read to their end, as nginx's proxy does: a response
 * cut off inside them is a failure.  A header line cut by the end of what
 * was read is parsed again from its start with more.
 */

static ngx_int_t
ngx_http_traffic_shift_health_headers(ngx_http_traffic_shift_probe_t *probe)
{
    u_char     *start;
    ngx_int_t   rc;

    for ( ;; ) {
        start = probe->buf.pos;

        rc = ngx_http_parse_header_line(probe->request, &probe->buf, 1);

        if (rc == NGX_OK) {
            if (ngx_http_traffic_shift_health_header(probe) != NGX_OK) {
                return NGX_DONE;
            }

            continue;
        }

        if (rc == NGX_AGAIN) {
            probe->buf.pos = start;
            probe->request->state = 0;
            return NGX_AGAIN;
        }

        if (rc == NGX_HTTP_PARSE_HEADER_DONE) {
            probe->headers_done = 1;
            return ngx_http_traffic_shift_health_framing(probe);
        }

        ngx_http_traffic_shift_health_done(probe, NGX_HTTP_TS_PROBE_FAIL,
                                           "bad header");
        return NGX_DONE;
    }
}


/* Content-Length, Transfer-Encoding and Connection frame the response */

static ngx_int_t
ngx_http_traffic_shift_health_header(ngx_http_traffic_shift_probe_t *probe)
{
    off_t                n;
    ngx_str_t            name, value;
    ngx_http_request_t  *r;

    r = probe->request;

    name.data = r->header_name_start;
    name.len = r->header_name_end - r->header_name_start;
    value.data = r->header_start;
    value.len = r->header_end - r->header_start;

    if (name.len == sizeof("Content-Length") - 1
        && ngx_strncasecmp(name.data, (u_char *) "Content-Length", name.len)
           == 0)
    {
        n = ngx_atoof(value.data, value.len);

        if (n == NGX_ERROR || (probe->has_length && n != probe->rest)) {
            ngx_http_traffic_shift_health_done(probe, NGX_HTTP_TS_PROBE_FAIL,
                                               "bad content length");
            return NGX_ERROR;
        }

        probe->has_length = 1;
        probe->rest = n;
        return NGX_OK;
    }

    if (name.len == sizeof("Transfer-Encoding") - 1
        && ngx_strncasecmp(name.data, (u_char *) "Transfer-Encoding",
                           name.len)
           == 0)
    {
        if (value.len != sizeof("chunked") - 1
            || ngx_strncasecmp(value.data, (u_char *) "chunked", value.len)
               != 0)
        {
            ngx_http_traffic_shift_health_done(probe, NGX_HTTP_TS_PROBE_FAIL,
                                               "unknown transfer encoding");
            return NGX_ERROR;
        }

        probe->chunked = 1;
        return NGX_OK;
    }

    if (name.len == sizeof("Connection") - 1
        && ngx_strncasecmp(name.data, (u_char *) "Connection", name.len)
           == 0
        && ngx_strlcasestrn(value.data, value.data + value.len,
                            (u_char *) "close", sizeof("close") - 2)
           != NULL)
    {
        probe->close = 1;
    }

    return NGX_OK;
}


/* how the body ends, whether the connection can be kept, where it goes */

static ngx_int_t
ngx_http_traffic_shift_health_framing(ngx_http_traffic_shift_probe_t *probe)
{
    ngx_uint_t  code;

    code = probe->status.code;

    if (probe->conf->method == NGX_HTTP_TS_HC_HEAD
        || code < 200 || code == 204 || code == 304)
    {
        probe->framing = NGX_HTTP_TS_HC_BODY_NONE;

    } else if (probe->chunked) {
        probe->framing = NGX_HTTP_TS_HC_BODY_CHUNKED;
        probe->rest = 0;

    } else if (probe->has_length) {
        probe->framing = probe->rest ? NGX_HTTP_TS_HC_BODY_LENGTH
                                     : NGX_HTTP_TS_HC_BODY_NONE;

    } else {
        probe->framing = NGX_HTTP_TS_HC_BODY_EOF;
    }

    probe->keep = probe->conf->keepalive
                  && probe->status.http_version >= NGX_HTTP_VERSION_11
                  && !probe->close
                  && probe->framing != NGX_HTTP_TS_HC_BODY_EOF;

#if (NGX_PCRE)

    if (probe->conf->body && probe->framing != NGX_HTTP_TS_HC_BODY_NONE) {
        probe->body_size = NGX_HTTP_TS_HC_BODY_MAX;

        if (probe->framing == NGX_HTTP_TS_HC_BODY_LENGTH
            && probe->rest < NGX_HTTP_TS_HC_BODY_MAX)
        {
            probe->body_size = (size_t) probe->rest;
        }

        probe->body = ngx_alloc(probe->body_size, &probe->log);
        if (probe->body == NULL) {
            ngx_http_traffic_shift_probe_close(probe);
            return NGX_DONE;
        }
    }

#endif

    return NGX_OK;
}


/* the body read so far: NGX_OK once it is complete */

static ngx_int_t
ngx_http_traffic_shift_health_body(ngx_http_traffic_shift_probe_t *probe)
{
    size_t      n;
    ngx_int_t   rc;
    ngx_buf_t  *b;

    b = &probe->buf;

    switch (probe->framing) {

    case NGX_HTTP_TS_HC_BODY_NONE:
        rc = NGX_OK;
        break;

    case NGX_HTTP_TS_HC_BODY_LENGTH:
        n = b->last - b->pos;

        if ((off_t) n > probe->rest) {
            n = (size_t) probe->rest;
        }

        ngx_http_traffic_shift_health_keep_body(probe, b->pos, n);
        b->pos += n;
        probe->rest -= n;

        rc = probe->rest ? NGX_AGAIN : NGX_OK;
        break;

    case NGX_HTTP_TS_HC_BODY_CHUNKED:
        rc = ngx_http_traffic_shift_health_chunked(probe);

        if (rc == NGX_ERROR) {
            ngx_http_traffic_shift_health_done(probe, NGX_HTTP_TS_PROBE_FAIL,
                                               "bad chunked body");
            return NGX_DONE;
        }

        break;

    default: /* NGX_HTTP_TS_HC_BODY_EOF */
        ngx_http_traffic_shift_health_keep_body(probe, b->pos,
                                                b->last - b->pos);
        b->pos = b->last;
        return NGX_AGAIN;
    }

    if (b->pos == b->last) {
        /* all of it is parsed: the buffer is free again */
        b->pos = b->start;
        b->last = b->start;

    } else if (rc == NGX_OK) {
        /* more than the response: the connection is not kept */
        probe->keep = 0;
    }

    return rc;
}


/* chunked encoding: sizes in hex, extensions, data, trailers */

static ngx_int_t
ngx_http_traffic_shift_health_chunked(ngx_http_traffic_shift_probe_t *probe)
{
    u_char      ch, *p, *last;
    size_t      n;
    ngx_int_t   d;
    ngx_buf_t  *b;

    b = &probe->buf;
    p = b->pos;
    last = b->last;

    while (p < last) {

        switch (probe->chunk_state) {

        case NGX_HTTP_TS_HC_CHUNK_DATA:
            n = last - p;

            if ((off_t) n > probe->rest) {
                n = (size_t) probe->rest;
            }

            ngx_http_traffic_shift_health_keep_body(probe, p, n);
            p += n;
            probe->rest -= n;

            if (probe->rest == 0) {
                probe->chunk_state = NGX_HTTP_TS_HC_CHUNK_DATA_CR;
            }

            continue;

        default:
            break;
        }

        ch = *p++;

        switch (probe->chunk_state) {

        case NGX_HTTP_TS_HC_CHUNK_SIZE:
        case NGX_HTTP_TS_HC_CHUNK_HEX:

            if (ch >= '0' && ch <= '9') {
                d = ch - '0';

            } else if ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'f') {
                d = (ch | 0x20) - 'a' + 10;

            } else if (probe->chunk_state == NGX_HTTP_TS_HC_CHUNK_SIZE) {
                return NGX_ERROR;

            } else if (ch == ';' || ch == ' ' || ch == '\t') {
                probe->chunk_state = NGX_HTTP_TS_HC_CHUNK_EXT;
                break;

            } else if (ch == CR) {
                probe->chunk_state = NGX_HTTP_TS_HC_CHUNK_SIZE_LF;
                break;

            } else if (ch == LF) {
                goto size;

            } else {
                return NGX_ERROR;
            }

            if (probe->rest > (NGX_MAX_OFF_T_VALUE - 15) / 16) {
                return NGX_ERROR;
            }

            probe->rest = probe->rest * 16 + d;
            probe->chunk_state = NGX_HTTP_TS_HC_CHUNK_HEX;
            break;

        case NGX_HTTP_TS_HC_CHUNK_EXT:
            if (ch == LF) {
                goto size;
            }

            break;

        case NGX_HTTP_TS_HC_CHUNK_SIZE_LF:
            if (ch != LF) {
                return NGX_ERROR;
            }

            goto size;

        case NGX_HTTP_TS_HC_CHUNK_DATA_CR:
            if (ch == LF) {
                probe->chunk_state = NGX_HTTP_TS_HC_CHUNK_SIZE;
                break;
            }

            if (ch != CR) {
                return NGX_ERROR;
            }

            probe->chunk_state = NGX_HTTP_TS_HC_CHUNK_DATA_LF;
            break;

        case NGX_HTTP_TS_HC_CHUNK_DATA_LF:
            if (ch != LF) {
                return NGX_ERROR;
            }

            probe->chunk_state = NGX_HTTP_TS_HC_CHUNK_SIZE;
            break;

        case NGX_HTTP_TS_HC_CHUNK_TRAILER:
            if (ch == LF) {
                goto done;
            }

            probe->chunk_state = (ch == CR) ? NGX_HTTP_TS_HC_CHUNK_LAST_LF
                                            : NGX_HTTP_TS_HC_CHUNK_LINE;
            break;

        case NGX_HTTP_TS_HC_CHUNK_LINE:
            if (ch == LF) {
                probe->chunk_state = NGX_HTTP_TS_HC_CHUNK_TRAILER;
            }

            break;

        case NGX_HTTP_TS_HC_CHUNK_LAST_LF:
            if (ch != LF) {
                return NGX_ERROR;
            }

            goto done;
        }

        continue;

    size:

        probe->chunk_state = probe->rest ? NGX_HTTP_TS_HC_CHUNK_DATA
                                         : NGX_HTTP_TS_HC_CHUNK_TRAILER;
    }

    b->pos = p;

    return NGX_AGAIN;

done:

    b->pos = p;

    return NGX_OK;
}


/* up to NGX_HTTP_TS_HC_BODY_MAX of the body, for body= */

static void
ngx_http_traffic_shift_health_keep_body(ngx_http_traffic_shift_probe_t *probe,
    u_char *p, size_t n)
{
    if (probe->body == NULL || probe->body_len == probe->body_size) {
        return;
    }

    if (n > probe->body_size - probe->body_len) {
        n = probe->body_size - probe->body_len;
    }

    ngx_memcpy(probe->body + probe->body_len, p, n);
    probe->body_len += n;
}


/* the connection closed, or a status that fails: what was read says */

static void
ngx_http_traffic_shift_health_eof(ngx_http_traffic_shift_probe_t *probe)
{
    char        *reason;
    ngx_uint_t   code;
    u_char       status[NGX_HTTP_TS_ERR_LEN];

    probe->keep = 0;

    if (!probe->status_parsed) {
        reason = (probe->buf.last == probe->buf.start) ? "empty response"
                                                       : "bad status line";
        ngx_http_traffic_shift_health_done(probe, NGX_HTTP_TS_PROBE_FAIL,
                                           reason);
        return;
    }

    code = probe->status.code;

    if (!ngx_http_traffic_shift_health_status_ok(probe->conf, code)) {
        ngx_snprintf(status, sizeof(status), "status %ui%Z", code);
        ngx_http_traffic_shift_health_done(probe, NGX_HTTP_TS_PROBE_FAIL,
                                           (char *) status);
        return;
    }

    if (!probe->headers_done) {
        ngx_http_traffic_shift_health_done(probe, NGX_HTTP_TS_PROBE_FAIL,
                                           "incomplete response");
        return;
    }

    if (probe->framing != NGX_HTTP_TS_HC_BODY_EOF) {
        ngx_http_traffic_shift_health_done(probe, NGX_HTTP_TS_PROBE_FAIL,
                                           "incomplete response body");
        return;
    }

    ngx_http_traffic_shift_health_complete(probe);
}


/* the whole response is read: the body's match */

static void
ngx_http_traffic_shift_health_complete(ngx_http_traffic_shift_probe_t *probe)
{
#if (NGX_PCRE)
    char  *reason;

    if (probe->conf->body) {
        reason = ngx_http_traffic_shift_health_match(probe);

        if (reason) {
            probe->keep = 0;
            ngx_http_traffic_shift_health_done(probe, NGX_HTTP_TS_PROBE_FAIL,
                                               reason);
            return;
        }
    }
#endif

    ngx_http_traffic_shift_health_done(probe, NGX_HTTP_TS_PROBE_OK, NULL);
}


#if (NGX_PCRE)

/* the body as kept: NULL if it matches */

static char *
ngx_http_traffic_shift_health_match(ngx_http_traffic_shift_probe_t *probe)
{
    ngx_int_t  rc;
    ngx_str_t  body;

    body.data = probe->body ? probe->body : (u_char *) "";
    body.len = probe->body_len;

    rc = ngx_regex_exec(probe->conf->body, &body, NULL, 0);

    if (rc >= 0) {
        return NULL;
    }

    if (rc == NGX_REGEX_NO_MATCHED) {
        return "body mismatch";
    }

    ngx_log_error(NGX_LOG_ALERT, &probe->log, 0,
                  ngx_regex_exec_n " failed: %i on \"%V\"",
                  rc, &probe->conf->body_pattern);

    return "body match failed";
}

#endif


static ngx_uint_t
ngx_http_traffic_shift_health_status_ok(
    ngx_http_traffic_shift_health_conf_t *conf, ngx_uint_t code)
{
    if (code >= NGX_HTTP_TS_HC_STATUS_MAX) {
        return 0;
    }

    return (conf->status[code / 32] & ((uint32_t) 1 << (code % 32))) != 0;
}


static void
ngx_http_traffic_shift_health_done(ngx_http_traffic_shift_probe_t *probe,
    ngx_uint_t result, char *reason)
{
    if (!ngx_exiting && !ngx_terminate) {
        ngx_http_traffic_shift_health_record(probe, result, reason);
    }

    if (result == NGX_HTTP_TS_PROBE_OK && probe->keep
        && !ngx_exiting && !ngx_terminate && !ngx_quit)
    {
        ngx_http_traffic_shift_health_keep(probe);
        return;
    }

    ngx_http_traffic_shift_probe_close(probe);
}


/* the result in the zone; a change of state is logged */

static void
ngx_http_traffic_shift_health_record(ngx_http_traffic_shift_probe_t *probe,
    ngx_uint_t result, char *reason)
{
    ngx_uint_t  flip, n;

    flip = ngx_http_traffic_shift_zone_probe(probe->mcf, probe->server->sh,
                                             result, reason,
                                             probe->conf->fails,
                                             probe->conf->passes, &n);

    if (result != NGX_HTTP_TS_PROBE_OK) {
        ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                      "traffic_shift: health check of server %V "
                      "in upstream \"%V\" failed: %s",
                      &probe->server->name, &probe->ups->uscf->host, reason);
    }

    if (!flip) {
        return;
    }

    if (result == NGX_HTTP_TS_PROBE_OK) {
        ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                      "traffic_shift: server %V in upstream \"%V\" is up "
                      "after %ui passed health check(s)",
                      &probe->server->name, &probe->ups->uscf->host, n);

    } else {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "traffic_shift: server %V in upstream \"%V\" is down "
                      "after %ui failed health check(s), last: %s",
                      &probe->server->name, &probe->ups->uscf->host, n,
                      reason);
    }
}


/*
 * The connection stays for the next probe, idle: not timed, reusable (nginx
 * may close it when it runs short of connections), closed when the server
 * closes it or sends anything, and when the worker shuts down (c->idle).
 */

static void
ngx_http_traffic_shift_health_keep(ngx_http_traffic_shift_probe_t *probe)
{
    ngx_connection_t  *c;

    c = probe->pc.connection;

    ngx_http_traffic_shift_health_free(probe);

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    c->read->handler = ngx_http_traffic_shift_health_idle;
    c->write->handler = ngx_http_traffic_shift_health_idle_write;

    probe->busy = 0;

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_http_traffic_shift_probe_close(probe);
        return;
    }

    ngx_reusable_connection(c, 1);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, &probe->log, 0,
                   "traffic_shift health check of %V: connection kept",
                   &probe->name);
}


static void
ngx_http_traffic_shift_health_idle(ngx_event_t *ev)
{
    int                              n;
    char                             buf[1];
    ngx_err_t                        err;
    ngx_connection_t                *c;
    ngx_http_traffic_shift_probe_t  *probe;

    c = ev->data;
    probe = c->data;

    if (c->close || ev->timedout) {
        goto close;
    }

    n = recv(c->fd, buf, 1, MSG_PEEK);
    err = ngx_socket_errno;

    if (n == -1 && err == NGX_EAGAIN) {
        ev->ready = 0;

        if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
            goto close;
        }

        return;
    }

close:

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, &probe->log, 0,
                   "traffic_shift health check of %V: kept connection "
                   "closed", &probe->name);

    ngx_http_traffic_shift_probe_close(probe);
}


static void
ngx_http_traffic_shift_health_idle_write(ngx_event_t *ev)
{
    /* void */
}


/* the memory of the probe in flight */

static void
ngx_http_traffic_shift_health_free(ngx_http_traffic_shift_probe_t *probe)
{
    if (probe->buf.start) {
        ngx_free(probe->buf.start);
    }

    if (probe->request) {
        ngx_free(probe->request);
    }

    if (probe->body) {
        ngx_free(probe->body);
    }

    ngx_memzero(&probe->buf, sizeof(ngx_buf_t));
    probe->request = NULL;
    probe->body = NULL;
    probe->body_len = 0;
}


void
ngx_http_traffic_shift_probe_close(ngx_http_traffic_shift_probe_t *probe)
{
    ngx_connection_t  *c;

    c = probe->pc.connection;

    if (c) {

#if (NGX_HTTP_SSL)
        if (c->ssl) {
            c->ssl->no_wait_shutdown = 1;

            if (ngx_ssl_shutdown(c) == NGX_AGAIN) {
                /* nothing is waited for: drop the TLS state at once */
                c->error = 1;
                (void) ngx_ssl_shutdown(c);
            }
        }
#endif

        ngx_close_connection(c);
        probe->pc.connection = NULL;
    }

    if (probe->pool) {
        ngx_destroy_pool(probe->pool);
        probe->pool = NULL;
    }

    ngx_http_traffic_shift_health_free(probe);

    probe->busy = 0;
}
