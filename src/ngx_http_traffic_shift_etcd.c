
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#include "ngx_http_traffic_shift_etcd.h"


/*
 * A small client of etcd's v3 JSON gateway (see the header): the request
 * is written at once, the answer read into "in", its body (without the
 * chunks' framing) copied into "body".  Nothing here blocks; the
 * connection is closed at once when the worker shuts down (c->idle).
 */


#define NGX_HTTP_TS_ETCD_HEADER      0
#define NGX_HTTP_TS_ETCD_LENGTH      1
#define NGX_HTTP_TS_ETCD_UNTIL_EOF   2
#define NGX_HTTP_TS_ETCD_CHUNK_SIZE  3
#define NGX_HTTP_TS_ETCD_CHUNK_DATA  4
#define NGX_HTTP_TS_ETCD_CHUNK_END   5
#define NGX_HTTP_TS_ETCD_DONE        6

#define NGX_HTTP_TS_ETCD_IN_SIZE     16384

/* a watch's answer, not the authentication before it */
#define ngx_http_traffic_shift_etcd_streaming(e)                             \
    ((e)->stream && !(e)->authenticating)


static ngx_int_t ngx_http_traffic_shift_etcd_send(
    ngx_http_traffic_shift_etcd_t *e);
static ngx_int_t ngx_http_traffic_shift_etcd_request(
    ngx_http_traffic_shift_etcd_t *e);
static void ngx_http_traffic_shift_etcd_write(ngx_event_t *wev);
static void ngx_http_traffic_shift_etcd_read(ngx_event_t *rev);
static ngx_int_t ngx_http_traffic_shift_etcd_parse(
    ngx_http_traffic_shift_etcd_t *e);
static ngx_int_t ngx_http_traffic_shift_etcd_header(
    ngx_http_traffic_shift_etcd_t *e);
static ngx_int_t ngx_http_traffic_shift_etcd_append(
    ngx_http_traffic_shift_etcd_t *e, size_t n);
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
    ngx_http_traffic_shift_etcd_close(e);

    e->serial++;
    e->error = NULL;
    e->reauthenticated = 0;

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
 * the request, or the authentication before it, on a new connection;
 * NGX_DECLINED: it cannot connect ("error" says it)
 */

static ngx_int_t
ngx_http_traffic_shift_etcd_send(ngx_http_traffic_shift_etcd_t *e)
{
    ngx_int_t                            rc;
    ngx_connection_t                    *c;
    ngx_http_traffic_shift_etcd_auth_t  *auth;

    if (e->pc.connection) {
        ngx_http_traffic_shift_close_connection(e->pc.connection);
        e->pc.connection = NULL;
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
    e->in->pos = e->in->start;
    e->in->last = e->in->start;

    auth = e->endpoint->auth;

    e->authenticating = (auth && auth->token_len == 0);
    e->token = (auth && auth->token_len);

    if (ngx_http_traffic_shift_etcd_request(e) != NGX_OK) {
        ngx_http_traffic_shift_etcd_close(e);
        return NGX_ERROR;
    }

    ngx_memzero(&e->pc, sizeof(ngx_peer_connection_t));

    e->pc.sockaddr = e->endpoint->addr.sockaddr;
    e->pc.socklen = e->endpoint->addr.socklen;
    e->pc.name = &e->endpoint->name;
    e->pc.get = ngx_event_get_peer;
    e->pc.log = e->log;
    e->pc.log_error = NGX_ERROR_INFO;
    e->pc.tries = 1;
    e->pc.so_keepalive = 1;

    rc = ngx_event_connect_peer(&e->pc);

    if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
        e->pc.connection = NULL;
        ngx_http_traffic_shift_etcd_close(e);
        e->error = "cannot connect";
        return NGX_DECLINED;
    }

    c = e->pc.connection;

    c->data = e;
    c->pool = e->pool;
    c->idle = 1;

    c->read->handler = ngx_http_traffic_shift_etcd_read;
    c->write->handler = ngx_http_traffic_shift_etcd_write;
    c->read->cancelable = 1;
    c->write->cancelable = 1;

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

    if (!ngx_http_traffic_shift_etcd_streaming(e)) {
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


void
ngx_http_traffic_shift_etcd_close(ngx_http_traffic_shift_etcd_t *e)
{
    ngx_connection_t  *c;

    c = e->pc.connection;

    if (c) {
        ngx_http_traffic_shift_close_connection(c);
        e->pc.connection = NULL;
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

            ngx_http_traffic_shift_etcd_fail(e, e->sent ? "connection closed"
                                                        : "cannot connect");
            return;
        }

        b->last += n;

        rc = ngx_http_traffic_shift_etcd_parse(e);

        if (e->serial != serial) {
            /* the handler closed the request */
            return;
        }

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


/* NGX_OK: the body is complete; NGX_AGAIN: more to read */

static ngx_int_t
ngx_http_traffic_shift_etcd_parse(ngx_http_traffic_shift_etcd_t *e)
{
    size_t      n;
    u_char     *p;
    ngx_int_t   rc;
    ngx_buf_t  *b;
    ngx_uint_t  serial;

    b = e->in;
    serial = e->serial;

    for ( ;; ) {
        n = b->last - b->pos;

        switch (e->state) {

        case NGX_HTTP_TS_ETCD_HEADER:
            rc = ngx_http_traffic_shift_etcd_header(e);
            if (rc != NGX_OK) {
                return rc;
            }

            if (e->state == NGX_HTTP_TS_ETCD_DONE) {
                return NGX_OK;
            }

            break;

        case NGX_HTTP_TS_ETCD_LENGTH:
        case NGX_HTTP_TS_ETCD_CHUNK_DATA:
        case NGX_HTTP_TS_ETCD_UNTIL_EOF:
            if (n == 0) {
                return NGX_AGAIN;
            }

            if (e->state != NGX_HTTP_TS_ETCD_UNTIL_EOF
                && (off_t) n > e->rest)
            {
                n = (size_t) e->rest;
            }

            if (ngx_http_traffic_shift_etcd_append(e, n) != NGX_OK) {
                return NGX_ERROR;
            }

            e->rest -= n;

            if (ngx_http_traffic_shift_etcd_streaming(e)
                && ngx_http_traffic_shift_etcd_lines(e) != NGX_OK)
            {
                return NGX_ERROR;
            }

            if (e->serial != serial) {
                /* the handler closed the request */
                return NGX_AGAIN;
            }

            if (e->state == NGX_HTTP_TS_ETCD_UNTIL_EOF || e->rest > 0) {
                return NGX_AGAIN;
            }

            if (e->state == NGX_HTTP_TS_ETCD_LENGTH) {
                return NGX_OK;
            }

            e->state = NGX_HTTP_TS_ETCD_CHUNK_END;
            break;

        case NGX_HTTP_TS_ETCD_CHUNK_END:
            if (n < 2) {
                return NGX_AGAIN;
            }

            if (b->pos[0] != CR || b->pos[1] != LF) {
                return NGX_ERROR;
            }

            b->pos += 2;
            e->state = NGX_HTTP_TS_ETCD_CHUNK_SIZE;
            break;

        case NGX_HTTP_TS_ETCD_CHUNK_SIZE:
            p = ngx_strlcasestrn(b->pos, b->last, (u_char *) CRLF, 1);
            if (p == NULL) {
                return n > 64 ? NGX_ERROR : NGX_AGAIN;
            }

            e->rest = 0;

            for ( /* void */ ; b->pos < p; b->pos++) {
                n = ngx_hextoi(b->pos, 1);

                if (*b->pos == ';' || *b->pos == ' ') {
                    break;
                }

                if ((ngx_int_t) n == NGX_ERROR
                    || e->rest > NGX_HTTP_TS_ETCD_MAX_BODY)
                {
                    return NGX_ERROR;
                }

                e->rest = e->rest * 16 + n;
            }

            b->pos = p + 2;

            if (e->rest == 0) {
                /* the last chunk; trailers are not waited for */
                e->state = NGX_HTTP_TS_ETCD_DONE;
                return NGX_OK;
            }

            e->state = NGX_HTTP_TS_ETCD_CHUNK_DATA;
            break;

        default: /* NGX_HTTP_TS_ETCD_DONE */
            return NGX_OK;
        }
    }
}


/* the status line and the headers that frame the body */

static ngx_int_t
ngx_http_traffic_shift_etcd_header(ngx_http_traffic_shift_etcd_t *e)
{
    u_char     *p, *end, *line, *next;
    ngx_buf_t  *b;

    b = e->in;

    end = ngx_strlcasestrn(b->pos, b->last, (u_char *) CRLF CRLF, 4 - 1);
    if (end == NULL) {
        return NGX_AGAIN;
    }

    if (end - b->pos < 12 || ngx_strncmp(b->pos, "HTTP/1.", 7) != 0) {
        return NGX_ERROR;
    }

    e->status = ngx_atoi(b->pos + 9, 3);
    if (e->status == (ngx_uint_t) NGX_ERROR) {
        return NGX_ERROR;
    }

    e->state = NGX_HTTP_TS_ETCD_UNTIL_EOF;

    for (line = b->pos; line < end; line = next) {
        next = ngx_strlcasestrn(line, end + 2, (u_char *) CRLF, 1) + 2;

        if (next - line > 16
            && ngx_strncasecmp(line, (u_char *) "content-length:", 15) == 0)
        {
            for (p = line + 15; *p == ' '; p++) { /* void */ }

            e->rest = ngx_atoof(p, next - 2 - p);
            if (e->rest < 0 || e->rest > NGX_HTTP_TS_ETCD_MAX_BODY) {
                return NGX_ERROR;
            }

            e->state = NGX_HTTP_TS_ETCD_LENGTH;

        } else if (next - line > 19
                   && ngx_strncasecmp(line, (u_char *) "transfer-encoding:",
                                      18) == 0
                   && ngx_strlcasestrn(line + 18, next,
                                       (u_char *) "chunked", 7 - 1))
        {
            e->state = NGX_HTTP_TS_ETCD_CHUNK_SIZE;
            break;
        }
    }

    b->pos = end + 4;

    if (e->state == NGX_HTTP_TS_ETCD_LENGTH && e->rest == 0) {
        e->state = NGX_HTTP_TS_ETCD_DONE;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_traffic_shift_etcd_append(ngx_http_traffic_shift_etcd_t *e, size_t n)
{
    u_char  *p;
    size_t   size;

    if (e->len + n > e->size) {
        size = ngx_max(e->size * 2, e->len + n);
        size = ngx_max(size, 4096);

        if (size > NGX_HTTP_TS_ETCD_MAX_BODY) {
            return NGX_ERROR;
        }

        p = ngx_pnalloc(e->pool, size);
        if (p == NULL) {
            return NGX_ERROR;
        }

        if (e->len) {
            ngx_memcpy(p, e->body, e->len);
        }

        e->body = p;
        e->size = size;
    }

    ngx_memcpy(e->body + e->len, e->in->pos, n);
    e->len += n;
    e->in->pos += n;

    return NGX_OK;
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

    if (e->endpoint->auth
        && ngx_http_traffic_shift_etcd_authorized(e, json) != NGX_OK)
    {
        /* the request sent after the authentication, or failed */
        json_decref(json);
        return;
    }

    ngx_http_traffic_shift_etcd_close(e);

    e->handler(e, json);

    json_decref(json);
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
