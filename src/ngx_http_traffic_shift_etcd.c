
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#include "ngx_http_traffic_shift_etcd.h"


/*
 * A small client of etcd's v3 JSON gateway (see the header): the request
 * is written at once, the answer read into "in" and parsed
 * (ngx_http_traffic_shift_etcd_parse.c).  Nothing here blocks; the
 * connection, busy or kept idle, is closed at once when the worker shuts
 * down (c->idle).  The request's memory is "pool", the connection's (its
 * TLS state) a pool of its own, as the connection outlives requests.
 */


#define NGX_HTTP_TS_ETCD_IN_SIZE     16384
#define NGX_HTTP_TS_ETCD_CONN_POOL   512


static void ngx_http_traffic_shift_etcd_end(ngx_http_traffic_shift_etcd_t *e);
static void ngx_http_traffic_shift_etcd_drop(ngx_http_traffic_shift_etcd_t *e);
static ngx_int_t ngx_http_traffic_shift_etcd_send(
    ngx_http_traffic_shift_etcd_t *e);
static ngx_int_t ngx_http_traffic_shift_etcd_connect(
    ngx_http_traffic_shift_etcd_t *e);
static ngx_int_t ngx_http_traffic_shift_etcd_request(
    ngx_http_traffic_shift_etcd_t *e);
static void ngx_http_traffic_shift_etcd_write(ngx_event_t *wev);
static void ngx_http_traffic_shift_etcd_read(ngx_event_t *rev);
static ngx_int_t ngx_http_traffic_shift_etcd_retry(
    ngx_http_traffic_shift_etcd_t *e);
static void ngx_http_traffic_shift_etcd_keep(ngx_http_traffic_shift_etcd_t *e);
static void ngx_http_traffic_shift_etcd_idle(ngx_event_t *rev);
static ngx_int_t ngx_http_traffic_shift_etcd_lines(
    ngx_http_traffic_shift_etcd_t *e);
static void ngx_http_traffic_shift_etcd_done(ngx_http_traffic_shift_etcd_t *e);
static ngx_int_t ngx_http_traffic_shift_etcd_authorized(
    ngx_http_traffic_shift_etcd_t *e, json_t *json);
static void ngx_http_traffic_shift_etcd_fail(ngx_http_traffic_shift_etcd_t *e,
    const char *error);
static void ngx_http_traffic_shift_etcd_dummy(ngx_event_t *ev);
#if (NGX_HTTP_SSL)
static void ngx_http_traffic_shift_etcd_tls(ngx_http_traffic_shift_etcd_t *e);
static void ngx_http_traffic_shift_etcd_handshake(ngx_connection_t *c);
static ngx_int_t ngx_http_traffic_shift_etcd_verify(
    ngx_http_traffic_shift_etcd_t *e);
#endif


ngx_int_t
ngx_http_traffic_shift_etcd_start(ngx_http_traffic_shift_etcd_t *e,
    const char *path, u_char *body, size_t len)
{
    /* the request before, if any, ends; its connection if kept stays */
    ngx_http_traffic_shift_etcd_end(e);

    e->error = NULL;
    e->reauthenticated = 0;
    e->retried = 0;

    e->pool = ngx_create_pool(4096, e->log);
    if (e->pool == NULL) {
        return NGX_ERROR;
    }

    e->in = ngx_create_temp_buf(e->pool, NGX_HTTP_TS_ETCD_IN_SIZE);
    if (e->in == NULL) {
        ngx_http_traffic_shift_etcd_close(e);
        return NGX_ERROR;
    }

    e->path.data = (u_char *) path;
    e->path.len = ngx_strlen(path);
    e->request.data = body;
    e->request.len = len;

    if (e->endpoint->auth) {
        /* sent later, after the authentication */
        e->path.data = ngx_pstrdup(e->pool, &e->path);
        e->request.data = ngx_pnalloc(e->pool, len + 1);

        if (e->path.data == NULL || e->request.data == NULL) {
            ngx_http_traffic_shift_etcd_close(e);
            return NGX_ERROR;
        }

        if (len) {
            ngx_memcpy(e->request.data, body, len);
        }
    }

    return ngx_http_traffic_shift_etcd_send(e);
}


/*
 * the request, or the authentication before it, on the kept connection
 * to the endpoint or a new one; NGX_DECLINED: it cannot connect ("error"
 * says it)
 */

static ngx_int_t
ngx_http_traffic_shift_etcd_send(ngx_http_traffic_shift_etcd_t *e)
{
    ngx_connection_t                    *c;
    ngx_http_traffic_shift_etcd_auth_t  *auth;

    c = e->pc.connection;

    if (c && (e->busy || e->peer != e->endpoint)) {
        /* an answer not read to its end, or another endpoint */
        ngx_http_traffic_shift_etcd_drop(e);
        c = NULL;
    }

    e->serial++;
    e->state = NGX_HTTP_TS_ETCD_HEADER;
    e->status = 0;
    e->rest = 0;
    e->len = 0;
    e->size = 0;
    e->body = NULL;
    e->sent = 0;
    e->connected = 0;
    e->busy = 0;
    e->keep = 0;
    e->reused = (c != NULL);
    e->in->pos = e->in->start;
    e->in->last = e->in->start;

    auth = e->endpoint->auth;

    e->authenticating = (auth && auth->token_len == 0);
    e->token = (auth && auth->token_len);

    if (ngx_http_traffic_shift_etcd_request(e) != NGX_OK) {
        ngx_http_traffic_shift_etcd_close(e);
        return NGX_ERROR;
    }

    if (c == NULL) {
        return ngx_http_traffic_shift_etcd_connect(e);
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, e->log, 0,
                   "traffic_shift_sync: etcd \"%V\": reusing the kept "
                   "connection for %V", &e->endpoint->name, &e->path);

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    c->read->handler = ngx_http_traffic_shift_etcd_read;
    c->write->handler = ngx_http_traffic_shift_etcd_write;

    e->connected = 1;
    e->busy = 1;

    ngx_add_timer(c->write, e->timeout);

    /* written from the event loop, as after a connect: never from here */
    if (!c->write->posted) {
        ngx_post_event(c->write, &ngx_posted_events);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_traffic_shift_etcd_connect(ngx_http_traffic_shift_etcd_t *e)
{
    ngx_int_t          rc;
    ngx_pool_t        *pool;
    ngx_connection_t  *c;

    ngx_memzero(&e->pc, sizeof(ngx_peer_connection_t));

    e->pc.sockaddr = e->endpoint->addr.sockaddr;
    e->pc.socklen = e->endpoint->addr.socklen;
    e->pc.name = &e->endpoint->name;
    e->pc.get = ngx_event_get_peer;
    e->pc.log = e->log;
    e->pc.log_error = NGX_ERROR_INFO;
    e->pc.tries = 1;
    e->pc.so_keepalive = 1;

    pool = ngx_create_pool(NGX_HTTP_TS_ETCD_CONN_POOL, e->log);
    if (pool == NULL) {
        ngx_http_traffic_shift_etcd_close(e);
        return NGX_ERROR;
    }

    rc = ngx_event_connect_peer(&e->pc);

    if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
        ngx_destroy_pool(pool);
        e->pc.connection = NULL;
        ngx_http_traffic_shift_etcd_close(e);
        e->error = "cannot connect";
        return NGX_DECLINED;
    }

    c = e->pc.connection;

    c->data = e;
    c->pool = pool;
    c->idle = 1;

    c->read->handler = ngx_http_traffic_shift_etcd_read;
    c->write->handler = ngx_http_traffic_shift_etcd_write;
    c->read->cancelable = 1;
    c->write->cancelable = 1;

    e->peer = e->endpoint;
    e->busy = 1;

    ngx_add_timer(c->write, e->timeout);

    if (rc == NGX_OK) {
        ngx_http_traffic_shift_etcd_write(c->write);
    }

    return NGX_OK;
}


/* "out": the POST, with the token if there is one; never logged */

static ngx_int_t
ngx_http_traffic_shift_etcd_request(ngx_http_traffic_shift_etcd_t *e)
{
    size_t                               size;
    ngx_str_t                            path, body;
    ngx_http_traffic_shift_etcd_auth_t  *auth;

    auth = e->endpoint->auth;

    if (e->authenticating) {
        ngx_str_set(&path, "/v3/auth/authenticate");

        if (ngx_http_traffic_shift_etcd_auth_body(e->pool, auth, &body)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

    } else {
        path = e->path;
        body = e->request;
    }

    size = sizeof("POST  HTTP/1.1" CRLF "Host: " CRLF
                  "Content-Type: application/json" CRLF
                  "Content-Length: " CRLF "Connection: close" CRLF CRLF) - 1
           + path.len + e->endpoint->name.len + NGX_SIZE_T_LEN + body.len;

    /* "Connection: close" is sent when connections are not kept only */

    if (e->token) {
        size += sizeof("Authorization: " CRLF) - 1 + auth->token_len;
    }

    e->out = ngx_create_temp_buf(e->pool, size);
    if (e->out == NULL) {
        return NGX_ERROR;
    }

    e->out->last = ngx_sprintf(e->out->last,
                               "POST %V HTTP/1.1" CRLF "Host: %V" CRLF
                               "Content-Type: application/json" CRLF
                               "Content-Length: %uz" CRLF,
                               &path, &e->endpoint->name, body.len);

    if (e->token) {
        e->out->last = ngx_sprintf(e->out->last, "Authorization: %*s" CRLF,
                                   auth->token_len, auth->token);
    }

    if (!ngx_http_traffic_shift_etcd_streaming(e)
        && e->endpoint->keepalive == 0)
    {
        e->out->last = ngx_cpymem(e->out->last, "Connection: close" CRLF,
                                  sizeof("Connection: close" CRLF) - 1);
    }

    *e->out->last++ = CR;
    *e->out->last++ = LF;

    if (body.len) {
        e->out->last = ngx_cpymem(e->out->last, body.data, body.len);
    }

    return NGX_OK;
}


/* the request, if any, and the connection, busy or kept */

void
ngx_http_traffic_shift_etcd_close(ngx_http_traffic_shift_etcd_t *e)
{
    ngx_http_traffic_shift_etcd_drop(e);
    ngx_http_traffic_shift_etcd_end(e);
}


/* the request ends; its connection stays only if kept (not busy) */

static void
ngx_http_traffic_shift_etcd_end(ngx_http_traffic_shift_etcd_t *e)
{
    if (e->busy) {
        ngx_http_traffic_shift_etcd_drop(e);
    }

    if (e->pool) {
        ngx_destroy_pool(e->pool);
        e->pool = NULL;
    }

    e->in = NULL;
    e->out = NULL;
    e->body = NULL;
    e->busy = 0;
    e->serial++;
}


static void
ngx_http_traffic_shift_etcd_drop(ngx_http_traffic_shift_etcd_t *e)
{
    ngx_pool_t        *pool;
    ngx_connection_t  *c;

    c = e->pc.connection;

    if (c == NULL) {
        return;
    }

    pool = c->pool;

    ngx_http_traffic_shift_close_connection(c);
    ngx_destroy_pool(pool);

    e->pc.connection = NULL;
    e->peer = NULL;
}


static void
ngx_http_traffic_shift_etcd_write(ngx_event_t *wev)
{
    ssize_t                         n;
    ngx_buf_t                      *b;
    ngx_connection_t               *c;
    ngx_http_traffic_shift_etcd_t  *e;

    c = wev->data;
    e = c->data;
    b = e->out;

    if (wev->timedout) {
        ngx_http_traffic_shift_etcd_fail(e, e->connected ? "timed out"
                                                         : "cannot connect");
        return;
    }

    if (c->close) {
        ngx_http_traffic_shift_etcd_fail(e, "closed");
        return;
    }

#if (NGX_HTTP_SSL)

    if (e->endpoint->ssl && c->ssl == NULL) {
        ngx_http_traffic_shift_etcd_tls(e);
        return;
    }

#endif

    while (b->pos < b->last) {
        n = c->send(c, b->pos, b->last - b->pos);

        if (n == NGX_AGAIN) {
            if (ngx_handle_write_event(wev, 0) != NGX_OK) {
                ngx_http_traffic_shift_etcd_fail(e, "write event");
            }

            return;
        }

        if (n == NGX_ERROR) {
            if (ngx_http_traffic_shift_etcd_retry(e) == NGX_OK) {
                return;
            }

            ngx_http_traffic_shift_etcd_fail(e, e->connected
                                                ? "cannot send"
                                                : "cannot connect");
            return;
        }

        e->connected = 1;
        b->pos += n;
    }

    /* the authentication is not the request: not sent yet */
    e->sent = !e->authenticating;
    wev->handler = ngx_http_traffic_shift_etcd_dummy;

    if (wev->timer_set) {
        ngx_del_timer(wev);
    }

    ngx_add_timer(c->read, e->timeout);

    if (c->read->ready) {
        ngx_http_traffic_shift_etcd_read(c->read);
    }
}


#if (NGX_HTTP_SSL)

/* https://: the handshake, with SNI for a host name, then the request */

static void
ngx_http_traffic_shift_etcd_tls(ngx_http_traffic_shift_etcd_t *e)
{
    ngx_int_t          rc;
    ngx_connection_t  *c;

    c = e->pc.connection;

    if (ngx_ssl_create_connection(e->endpoint->ssl, c,
                                  NGX_SSL_BUFFER|NGX_SSL_CLIENT)
        != NGX_OK)
    {
        ngx_http_traffic_shift_etcd_fail(e, "tls setup failed");
        return;
    }

#ifdef SSL_CTRL_SET_TLSEXT_HOSTNAME

    if (ngx_inet_addr(e->endpoint->host.data, e->endpoint->host.len)
        == INADDR_NONE
        && e->endpoint->host.data[0] != '['
        && SSL_set_tlsext_host_name(c->ssl->connection,
                                    (char *) e->endpoint->host.data)
           == 0)
    {
        ngx_http_traffic_shift_etcd_fail(e, "tls setup failed");
        return;
    }

#endif

    rc = ngx_ssl_handshake(c);

    if (rc == NGX_AGAIN) {
        c->ssl->handler = ngx_http_traffic_shift_etcd_handshake;
        return;
    }

    ngx_http_traffic_shift_etcd_handshake(c);
}


static void
ngx_http_traffic_shift_etcd_handshake(ngx_connection_t *c)
{
    ngx_http_traffic_shift_etcd_t  *e;

    e = c->data;

    if (c->read->timedout || c->write->timedout) {
        ngx_http_traffic_shift_etcd_fail(e, "timed out");
        return;
    }

    if (c->close || !c->ssl->handshaked) {
        ngx_http_traffic_shift_etcd_fail(e, "tls handshake failed");
        return;
    }

    if (ngx_http_traffic_shift_etcd_verify(e) != NGX_OK) {
        ngx_http_traffic_shift_etcd_fail(e, "certificate refused");
        return;
    }

    e->connected = 1;

    c->read->handler = ngx_http_traffic_shift_etcd_read;
    c->write->handler = ngx_http_traffic_shift_etcd_write;

    ngx_http_traffic_shift_etcd_write(c->write);
}


/* the certificate: signed by the CA, and naming the endpoint's host */

static ngx_int_t
ngx_http_traffic_shift_etcd_verify(ngx_http_traffic_shift_etcd_t *e)
{
    long               rc;
    X509              *cert;
    ngx_int_t          ok;
    ngx_connection_t  *c;

    c = e->pc.connection;

    rc = SSL_get_verify_result(c->ssl->connection);

    if (rc != X509_V_OK) {
        ngx_log_error(NGX_LOG_ERR, e->log, 0,
                      "traffic_shift_sync: etcd \"%V\": certificate not "
                      "trusted: %s", &e->endpoint->name,
                      X509_verify_cert_error_string(rc));
        return NGX_ERROR;
    }

    cert = SSL_get_peer_certificate(c->ssl->connection);
    if (cert == NULL) {
        ngx_log_error(NGX_LOG_ERR, e->log, 0,
                      "traffic_shift_sync: etcd \"%V\": no certificate",
                      &e->endpoint->name);
        return NGX_ERROR;
    }

    if (ngx_inet_addr(e->endpoint->host.data, e->endpoint->host.len)
        != INADDR_NONE)
    {
        ok = (X509_check_ip_asc(cert, (char *) e->endpoint->host.data, 0)
              == 1);

    } else {
        ok = (X509_check_host(cert, (char *) e->endpoint->host.data,
                              e->endpoint->host.len, 0, NULL)
              == 1);
    }

    X509_free(cert);

    if (!ok) {
        ngx_log_error(NGX_LOG_ERR, e->log, 0,
                      "traffic_shift_sync: etcd \"%V\": the certificate "
                      "does not name \"%V\"", &e->endpoint->name,
                      &e->endpoint->host);
        return NGX_ERROR;
    }

    return NGX_OK;
}

#endif


static void
ngx_http_traffic_shift_etcd_read(ngx_event_t *rev)
{
    size_t                          left;
    ssize_t                         n;
    ngx_int_t                       rc;
    ngx_buf_t                      *b;
    ngx_uint_t                      serial;
    ngx_connection_t               *c;
    ngx_http_traffic_shift_etcd_t  *e;

    c = rev->data;
    e = c->data;
    b = e->in;
    serial = e->serial;

    if (rev->timedout) {
        ngx_http_traffic_shift_etcd_fail(e, "timed out");
        return;
    }

    if (c->close) {
        ngx_http_traffic_shift_etcd_fail(e, "closed");
        return;
    }

    for ( ;; ) {
        if (b->last == b->end) {
            left = b->last - b->pos;

            if (b->pos == b->start) {
                ngx_http_traffic_shift_etcd_fail(e, "header too long");
                return;
            }

            ngx_memmove(b->start, b->pos, left);
            b->pos = b->start;
            b->last = b->start + left;
        }

        n = c->recv(c, b->last, b->end - b->last);

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == NGX_ERROR || n == 0) {
            if (n == 0 && e->state == NGX_HTTP_TS_ETCD_UNTIL_EOF) {
                ngx_http_traffic_shift_etcd_done(e);
                return;
            }

            if (ngx_http_traffic_shift_etcd_retry(e) == NGX_OK) {
                return;
            }

            ngx_http_traffic_shift_etcd_fail(e, e->sent ? "connection closed"
                                                        : "cannot connect");
            return;
        }

        b->last += n;

        do {
            rc = ngx_http_traffic_shift_etcd_parse(e);

            if (rc == NGX_DECLINED
                && ngx_http_traffic_shift_etcd_lines(e) != NGX_OK)
            {
                rc = NGX_ERROR;
            }

            if (e->serial != serial) {
                /* the handler closed the request */
                return;
            }

        } while (rc == NGX_DECLINED);

        if (rc == NGX_ERROR) {
            ngx_http_traffic_shift_etcd_fail(e, "invalid response");
            return;
        }

        if (rc == NGX_OK) {
            ngx_http_traffic_shift_etcd_done(e);
            return;
        }
    }

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_http_traffic_shift_etcd_fail(e, "read event");
        return;
    }

    if (rev->timer_set) {
        ngx_del_timer(rev);
    }

    /* a watch may stay quiet for long: only its header is timed */

    if (!ngx_http_traffic_shift_etcd_streaming(e)
        || e->state == NGX_HTTP_TS_ETCD_HEADER)
    {
        ngx_add_timer(rev, e->timeout);
    }
}


/* a stream: every complete line is a JSON object, given to the handler */

static ngx_int_t
ngx_http_traffic_shift_etcd_lines(ngx_http_traffic_shift_etcd_t *e)
{
    u_char        *p, *start;
    json_t        *json;
    ngx_uint_t     serial;
    json_error_t   error;

    serial = e->serial;
    start = e->body;

    while (start < e->body + e->len) {
        p = ngx_strlchr(start, e->body + e->len, LF);
        if (p == NULL) {
            break;
        }

        if (p > start) {
            json = json_loadb((char *) start, p - start, 0, &error);
            if (json == NULL) {
                ngx_log_error(NGX_LOG_ERR, e->log, 0,
                              "traffic_shift_sync: invalid JSON from "
                              "\"%V\": %s", &e->endpoint->name, error.text);
                return NGX_ERROR;
            }

            if (e->token
                && ngx_http_traffic_shift_etcd_authorized(e, json) != NGX_OK)
            {
                /* authenticating again, or failed */
                json_decref(json);
                return NGX_OK;
            }

            e->handler(e, json);
            json_decref(json);

            if (e->serial != serial) {
                return NGX_OK;
            }
        }

        start = p + 1;
    }

    e->len -= start - e->body;

    if (e->len) {
        ngx_memmove(e->body, start, e->len);
    }

    return NGX_OK;
}


static void
ngx_http_traffic_shift_etcd_done(ngx_http_traffic_shift_etcd_t *e)
{
    json_t        *json;
    json_error_t   error;

    if (ngx_http_traffic_shift_etcd_streaming(e)) {
        ngx_http_traffic_shift_etcd_fail(e, "the stream ended");
        return;
    }

    json = json_loadb((char *) e->body, e->len, 0, &error);

    if (json == NULL) {
        ngx_log_error(NGX_LOG_ERR, e->log, 0,
                      "traffic_shift_sync: invalid JSON from \"%V\": %s",
                      &e->endpoint->name, error.text);
        ngx_http_traffic_shift_etcd_fail(e, "invalid response");
        return;
    }

    /* the authentication's connection is the request's too */
    ngx_http_traffic_shift_etcd_keep(e);

    if (e->endpoint->auth
        && ngx_http_traffic_shift_etcd_authorized(e, json) != NGX_OK)
    {
        /* the request sent after the authentication, or failed */
        json_decref(json);
        return;
    }

    ngx_http_traffic_shift_etcd_end(e);

    e->handler(e, json);

    json_decref(json);
}


/*
 * A kept connection that etcd closed while it was idle (a restart of
 * etcd, a proxy in between, or a close that crossed the request) fails
 * the next request at once: the send fails, or the read finds the end of
 * the connection or a reset before any byte of an answer.  Such a request
 * is sent again, once, on a new connection, and its "sent" is cleared: the
 * callers see one request.
 *
 * Only then: on a reused connection, before any byte of the answer, and
 * never after a timeout (a request not answered in time may be taken
 * yet).  A close found so is, in practice, a close that came before the
 * request was read; etcd's gateway reads a request whole before it acts
 * on it, and a partly written request is never acted on.  What cannot be
 * told from it is an etcd that read the request, applied it and died
 * before answering: the request then runs twice.  What is sent here bears
 * that: a lease keepalive, a put of the node's own key and a range are
 * the same twice, and every other write is a transaction that compares a
 * revision, which the first run changed: the second one fails its
 * compare and is answered as a conflict, nothing is written twice.
 */

static ngx_int_t
ngx_http_traffic_shift_etcd_retry(ngx_http_traffic_shift_etcd_t *e)
{
    if (!e->reused || e->retried || e->state != NGX_HTTP_TS_ETCD_HEADER
        || e->in->last != e->in->start)
    {
        return NGX_DECLINED;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, e->log, 0,
                   "traffic_shift_sync: etcd \"%V\" closed the kept "
                   "connection, sending again on a new one",
                   &e->endpoint->name);

    e->retried = 1;

    ngx_http_traffic_shift_etcd_drop(e);

    if (ngx_http_traffic_shift_etcd_send(e) != NGX_OK) {
        ngx_http_traffic_shift_etcd_fail(e, e->error ? e->error
                                                     : "no memory");
    }

    return NGX_OK;
}


/*
 * a complete answer: the connection is kept idle for the next request,
 * if the answer allows it and nothing follows it; closed otherwise
 */

static void
ngx_http_traffic_shift_etcd_keep(ngx_http_traffic_shift_etcd_t *e)
{
    ngx_connection_t  *c;

    c = e->pc.connection;

    e->busy = 0;

    if (c == NULL) {
        return;
    }

    if (!e->keep || e->state != NGX_HTTP_TS_ETCD_DONE
        || e->in->pos != e->in->last || e->endpoint->keepalive == 0
        || c->close || c->read->eof || c->read->error)
    {
        ngx_http_traffic_shift_etcd_drop(e);
        return;
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    c->read->handler = ngx_http_traffic_shift_etcd_idle;
    c->write->handler = ngx_http_traffic_shift_etcd_dummy;

    ngx_add_timer(c->read, e->endpoint->keepalive);

    if (c->read->ready && !c->read->posted) {
        /* more than the answer came: seen by the idle handler */
        ngx_post_event(c->read, &ngx_posted_events);
    }
}


/*
 * a kept connection, idle: whatever comes from etcd (the end of the
 * connection, or bytes no request asked for) closes it, as does the idle
 * time and the worker's shutdown; the handler is not called
 */

static void
ngx_http_traffic_shift_etcd_idle(ngx_event_t *rev)
{
    char                            buf[1];
    ssize_t                         n;
    ngx_err_t                       err;
    ngx_connection_t               *c;
    ngx_http_traffic_shift_etcd_t  *e;

    c = rev->data;
    e = c->data;

    if (rev->timedout) {
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, e->log, 0,
                       "traffic_shift_sync: etcd \"%V\": closing the kept "
                       "connection, idle for %Mms", &e->peer->name,
                       e->peer->keepalive);
        ngx_http_traffic_shift_etcd_drop(e);
        return;
    }

    if (c->close) {
        /* the worker shuts down */
        ngx_http_traffic_shift_etcd_drop(e);
        return;
    }

    /* looked at, not read: TLS records included */
    n = recv(c->fd, buf, 1, MSG_PEEK);
    err = ngx_socket_errno;

    if (n == -1 && err == NGX_EAGAIN) {
        rev->ready = 0;

        if (ngx_handle_read_event(rev, 0) != NGX_OK) {
            ngx_http_traffic_shift_etcd_drop(e);
        }

        return;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, e->log, 0,
                   "traffic_shift_sync: etcd \"%V\": closing the kept "
                   "connection, %s", &e->peer->name,
                   n > 0 ? "etcd sent bytes no request asked for"
                         : "etcd closed it");

    ngx_http_traffic_shift_etcd_drop(e);
}


/*
 * with user and password: the answer to the authentication sends the
 * request; a token etcd no longer knows (expired) is taken again once.
 * NGX_OK: the answer is the handler's; NGX_DONE: sent again, or failed.
 */

static ngx_int_t
ngx_http_traffic_shift_etcd_authorized(ngx_http_traffic_shift_etcd_t *e,
    json_t *json)
{
    const char                          *error;
    ngx_http_traffic_shift_etcd_auth_t  *auth;

    auth = e->endpoint->auth;

    if (e->authenticating) {
        error = ngx_http_traffic_shift_etcd_auth_token(auth, e->status, json,
                                                       e->log,
                                                       &e->endpoint->name);
        if (error) {
            ngx_http_traffic_shift_etcd_fail(e, error);
            return NGX_DONE;
        }

    } else if (e->token) {
        switch (ngx_http_traffic_shift_etcd_auth_check(e->status, json)) {

        case NGX_HTTP_TS_ETCD_AUTH_EXPIRED:
            auth->token_len = 0;

            if (e->reauthenticated) {
                ngx_http_traffic_shift_etcd_fail(e, "authentication failed");
                return NGX_DONE;
            }

            ngx_log_error(NGX_LOG_INFO, e->log, 0,
                          "traffic_shift_sync: etcd \"%V\" no longer knows "
                          "the token of user \"%V\", authenticating again",
                          &e->endpoint->name, &auth->user);

            e->reauthenticated = 1;
            break;

        case NGX_HTTP_TS_ETCD_AUTH_DENIED:
            ngx_http_traffic_shift_etcd_fail(e, "permission denied");
            return NGX_DONE;

        default: /* NGX_HTTP_TS_ETCD_AUTH_OK */
            return NGX_OK;
        }

    } else {
        return NGX_OK;
    }

    if (ngx_http_traffic_shift_etcd_send(e) != NGX_OK) {
        ngx_http_traffic_shift_etcd_fail(e, e->error ? e->error
                                                     : "no memory");
    }

    return NGX_DONE;
}


static void
ngx_http_traffic_shift_etcd_fail(ngx_http_traffic_shift_etcd_t *e,
    const char *error)
{
    ngx_http_traffic_shift_etcd_close(e);

    e->error = error;
    e->handler(e, NULL);
}


static void
ngx_http_traffic_shift_etcd_dummy(ngx_event_t *ev)
{
}
