
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#include "ngx_http_traffic_shift_health_probe.h"


/*
 * One probe on nginx's event loop: connect, the TLS handshake for https,
 * send the request, read the status line and the headers to their end and
 * as much of the body as is matched, then record the result.  tcp probes
 * end when the connection is established.
 */


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
#endif
static void ngx_http_traffic_shift_health_send(
    ngx_http_traffic_shift_probe_t *probe);
static void ngx_http_traffic_shift_health_recv(
    ngx_http_traffic_shift_probe_t *probe);
static ngx_int_t ngx_http_traffic_shift_health_headers(
    ngx_http_traffic_shift_probe_t *probe);
static void ngx_http_traffic_shift_health_response(
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


void
ngx_http_traffic_shift_probe_start(ngx_http_traffic_shift_probe_t *probe)
{
    char              *reason;
    ngx_int_t          rc;
    ngx_err_t          err;
    ngx_connection_t  *c;

    probe->pool = ngx_create_pool(2048, &probe->log);
    if (probe->pool == NULL) {
        return;
    }

    probe->busy = 1;
    probe->phase = NGX_HTTP_TS_HC_CONNECT;
    probe->status_parsed = 0;
    probe->headers_done = 0;
    probe->buf = NULL;
    probe->request = NULL;
    probe->body_start = NULL;
    probe->sent = probe->conf->request.data;

    ngx_memzero(&probe->status, sizeof(ngx_http_status_t));
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

    c->read->handler = ngx_http_traffic_shift_health_handler;
    c->write->handler = ngx_http_traffic_shift_health_handler;

    probe->phase = NGX_HTTP_TS_HC_SEND;

    ngx_http_traffic_shift_health_send(probe);
}

#endif


static void
ngx_http_traffic_shift_health_send(ngx_http_traffic_shift_probe_t *probe)
{
    u_char            *last;
    size_t             size;
    ssize_t            n;
    ngx_connection_t  *c;

    c = probe->pc.connection;
    last = probe->conf->request.data + probe->conf->request.len;

    while (probe->sent < last) {

        n = c->send(c, probe->sent, last - probe->sent);

        if (n == NGX_AGAIN) {
            if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
                c->error = 1;
                ngx_http_traffic_shift_health_done(probe,
                                                   NGX_HTTP_TS_PROBE_FAIL,
                                                   "send failed");
            }

            return;
        }

        if (n == NGX_ERROR || n <= 0) {
            c->error = 1;
            ngx_http_traffic_shift_health_done(probe, NGX_HTTP_TS_PROBE_FAIL,
                                               "send failed");
            return;
        }

        probe->sent += n;
    }

    probe->phase = NGX_HTTP_TS_HC_RECV;

#if (NGX_PCRE)
    size = probe->conf->body ? NGX_HTTP_TS_HC_BODY_MAX
                             : NGX_HTTP_TS_HC_BUF_SIZE;
#else
    size = NGX_HTTP_TS_HC_BUF_SIZE;
#endif

    probe->buf = ngx_create_temp_buf(probe->pool, size);
    probe->request = ngx_pcalloc(probe->pool, sizeof(ngx_http_request_t));

    if (probe->buf == NULL || probe->request == NULL) {
        /* not the server's failure */
        ngx_http_traffic_shift_probe_close(probe);
        return;
    }

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
    b = probe->buf;

    for ( ;; ) {

        if (b->last == b->end) {

            if (!probe->status_parsed) {
                ngx_http_traffic_shift_health_done(probe,
                                                   NGX_HTTP_TS_PROBE_FAIL,
                                                   "bad status line");
                return;
            }

#if (NGX_PCRE)
            if (probe->conf->body && probe->headers_done) {
                /* as much of the body as is matched */
                ngx_http_traffic_shift_health_response(probe);
                return;
            }
#endif

            /*
             * parsed headers or a body that is not matched are not needed
             * any more: read on to the end, and discard
             */

            b->pos = b->start;
            b->last = b->start;
            probe->body_start = b->start;
        }

        n = c->recv(c, b->last, b->end - b->last);

        if (n == NGX_AGAIN) {
            if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
                c->error = 1;
                ngx_http_traffic_shift_health_done(probe,
                                                   NGX_HTTP_TS_PROBE_FAIL,
                                                   "read failed");
            }

            return;
        }

        if (n == NGX_ERROR) {
            c->error = 1;
            ngx_http_traffic_shift_health_done(probe, NGX_HTTP_TS_PROBE_FAIL,
                                               probe->status_parsed
                                               ? "read failed"
                                               : "connection reset");
            return;
        }

        if (n == 0) {
            ngx_http_traffic_shift_health_response(probe);
            return;
        }

        b->last += n;

        if (probe->headers_done) {
            continue;
        }

        if (!probe->status_parsed) {
            rc = ngx_http_parse_status_line(probe->request, b,
                                            &probe->status);

            if (rc == NGX_AGAIN) {
                continue;
            }

            if (rc != NGX_OK) {
                ngx_http_traffic_shift_health_done(probe,
                                                   NGX_HTTP_TS_PROBE_FAIL,
                                                   "bad status line");
                return;
            }

            probe->status_parsed = 1;

            if (!ngx_http_traffic_shift_health_status_ok(probe->conf,
                                                         probe->status.code))
            {
                /* no need to read further */
                ngx_http_traffic_shift_health_response(probe);
                return;
            }
        }

        if (ngx_http_traffic_shift_health_headers(probe) != NGX_OK) {
            return;
        }
    }
}


/*
 * The headers are read to their end, as nginx's proxy does: a response
 * cut off inside them is a failure.  NGX_ERROR: the probe is over.
 */

static ngx_int_t
ngx_http_traffic_shift_health_headers(ngx_http_traffic_shift_probe_t *probe)
{
    ngx_int_t  rc;

    for ( ;; ) {
        rc = ngx_http_parse_header_line(probe->request, probe->buf, 1);

        if (rc == NGX_OK) {
            continue;
        }

        if (rc == NGX_AGAIN) {
            return NGX_OK;
        }

        if (rc == NGX_HTTP_PARSE_HEADER_DONE) {
            probe->headers_done = 1;
            probe->body_start = probe->buf->pos;
            return NGX_OK;
        }

        ngx_http_traffic_shift_health_done(probe, NGX_HTTP_TS_PROBE_FAIL,
                                           "bad header");
        return NGX_ERROR;
    }
}


/* the response as received: status, then the body's match */

static void
ngx_http_traffic_shift_health_response(ngx_http_traffic_shift_probe_t *probe)
{
    char        *reason;
    ngx_uint_t   code;
    u_char       status[NGX_HTTP_TS_ERR_LEN];

    if (!probe->status_parsed) {
        reason = (probe->buf->last == probe->buf->start) ? "empty response"
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

#if (NGX_PCRE)

    if (probe->conf->body) {
        reason = ngx_http_traffic_shift_health_match(probe);

        if (reason) {
            ngx_http_traffic_shift_health_done(probe, NGX_HTTP_TS_PROBE_FAIL,
                                               reason);
            return;
        }
    }

#endif

    ngx_http_traffic_shift_health_done(probe, NGX_HTTP_TS_PROBE_OK, NULL);
}


#if (NGX_PCRE)

/* the body as read: NULL if it matches */

static char *
ngx_http_traffic_shift_health_match(ngx_http_traffic_shift_probe_t *probe)
{
    ngx_int_t  rc;
    ngx_str_t  body;

    body.data = probe->body_start;
    body.len = probe->buf->last - probe->body_start;

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

    probe->buf = NULL;
    probe->request = NULL;
    probe->busy = 0;
}
