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
 * tcp probes end when the connection is established.  The response is
 * parsed and judged in ngx_http_traffic_shift_health_response.c.
 *
 * A kept connection that fails before any byte of the response came back
 * (the server closed it while the probe was sent) is not the server's
 * failure: the probe is sent again once on a new connection.
 */


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
static void ngx_http_traffic_shift_health_result(
    ngx_http_traffic_shift_probe_t *probe, ngx_int_t rc);
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
    probe->reason = NULL;
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

            rc = ngx_http_traffic_shift_health_eof(probe);
            ngx_http_traffic_shift_health_result(probe, rc);
            return;
        }

        b->last += n;
        probe->received = 1;

        rc = ngx_http_traffic_shift_health_parse(probe);

        if (rc == NGX_AGAIN) {
            continue;
        }

        ngx_http_traffic_shift_health_result(probe, rc);
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


/* what the response came to (ngx_http_traffic_shift_health_response.c) */

static void
ngx_http_traffic_shift_health_result(ngx_http_traffic_shift_probe_t *probe,
    ngx_int_t rc)
{
    switch (rc) {

    case NGX_OK:
        ngx_http_traffic_shift_health_done(probe, NGX_HTTP_TS_PROBE_OK, NULL);
        return;

    case NGX_DECLINED:
        ngx_http_traffic_shift_health_done(probe, NGX_HTTP_TS_PROBE_FAIL,
                                           probe->reason);
        return;

    default: /* NGX_ERROR */

        /* no memory: not the server's failure */
        ngx_http_traffic_shift_probe_close(probe);
        return;
    }
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
        ngx_http_traffic_shift_close_connection(c);
        probe->pc.connection = NULL;
    }

    if (probe->pool) {
        ngx_destroy_pool(probe->pool);
        probe->pool = NULL;
    }

    ngx_http_traffic_shift_health_free(probe);

    probe->busy = 0;
}
