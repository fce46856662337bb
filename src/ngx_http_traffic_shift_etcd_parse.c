
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#include "ngx_http_traffic_shift_etcd.h"


/*
 * An answer of etcd's gateway, read in "in": the status line, the headers
 * that frame the body and say whether the connection may be kept, then
 * the body (without the chunks' framing) copied into "body".
 */


static ngx_int_t ngx_http_traffic_shift_etcd_header(
    ngx_http_traffic_shift_etcd_t *e);
static ngx_int_t ngx_http_traffic_shift_etcd_chunk_size(
    ngx_http_traffic_shift_etcd_t *e);
static ngx_int_t ngx_http_traffic_shift_etcd_trailer(
    ngx_http_traffic_shift_etcd_t *e);
static ngx_int_t ngx_http_traffic_shift_etcd_append(
    ngx_http_traffic_shift_etcd_t *e, size_t n);


/*
 * NGX_OK: the body is complete; NGX_AGAIN: more to read; NGX_DECLINED: a
 * stream's body grew, its lines are to be handed out before parsing on
 */

ngx_int_t
ngx_http_traffic_shift_etcd_parse(ngx_http_traffic_shift_etcd_t *e)
{
    size_t      n;
    ngx_int_t   rc;
    ngx_buf_t  *b;

    b = e->in;

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

            if (e->state != NGX_HTTP_TS_ETCD_UNTIL_EOF && e->rest == 0) {
                e->state = (e->state == NGX_HTTP_TS_ETCD_LENGTH)
                           ? NGX_HTTP_TS_ETCD_DONE
                           : NGX_HTTP_TS_ETCD_CHUNK_END;
            }

            if (ngx_http_traffic_shift_etcd_streaming(e)) {
                return NGX_DECLINED;
            }

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
            rc = ngx_http_traffic_shift_etcd_chunk_size(e);
            if (rc != NGX_OK) {
                return rc;
            }

            break;

        case NGX_HTTP_TS_ETCD_TRAILER:
            rc = ngx_http_traffic_shift_etcd_trailer(e);
            if (rc != NGX_OK) {
                return rc;
            }

            if (e->state == NGX_HTTP_TS_ETCD_DONE) {
                return NGX_OK;
            }

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

    /* HTTP/1.0 closes after the answer */
    e->keep = (b->pos[7] == '1');
    e->state = NGX_HTTP_TS_ETCD_UNTIL_EOF;

    for (line = b->pos; line < end; line = next) {
        next = ngx_strlcasestrn(line, end + 2, (u_char *) CRLF, 1) + 2;

        if (next - line > 16
            && ngx_strncasecmp(line, (u_char *) "content-length:", 15) == 0)
        {
            if (e->state == NGX_HTTP_TS_ETCD_CHUNK_SIZE) {
                continue;
            }

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

        } else if (next - line > 12
                   && ngx_strncasecmp(line, (u_char *) "connection:", 11)
                      == 0
                   && ngx_strlcasestrn(line + 11, next,
                                       (u_char *) "close", 5 - 1))
        {
            e->keep = 0;
        }
    }

    b->pos = end + 4;

    if (e->state == NGX_HTTP_TS_ETCD_LENGTH && e->rest == 0) {
        e->state = NGX_HTTP_TS_ETCD_DONE;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_traffic_shift_etcd_chunk_size(ngx_http_traffic_shift_etcd_t *e)
{
    u_char     *p;
    ngx_int_t   n;
    ngx_buf_t  *b;

    b = e->in;

    p = ngx_strlcasestrn(b->pos, b->last, (u_char *) CRLF, 1);
    if (p == NULL) {
        return b->last - b->pos > 64 ? NGX_ERROR : NGX_AGAIN;
    }

    e->rest = 0;

    for ( /* void */ ; b->pos < p; b->pos++) {
        if (*b->pos == ';' || *b->pos == ' ') {
            break;
        }

        n = ngx_hextoi(b->pos, 1);

        if (n == NGX_ERROR || e->rest > NGX_HTTP_TS_ETCD_MAX_BODY) {
            return NGX_ERROR;
        }

        e->rest = e->rest * 16 + n;
    }

    b->pos = p + 2;

    /* the last chunk: the trailer, if any, and the empty line after it */
    e->state = e->rest ? NGX_HTTP_TS_ETCD_CHUNK_DATA
                       : NGX_HTTP_TS_ETCD_TRAILER;

    return NGX_OK;
}


/*
 * the lines after the last chunk, to the empty one: read, so that a kept
 * connection starts its next answer with the status line
 */

static ngx_int_t
ngx_http_traffic_shift_etcd_trailer(ngx_http_traffic_shift_etcd_t *e)
{
    u_char     *p;
    ngx_buf_t  *b;

    b = e->in;

    for ( ;; ) {
        p = ngx_strlcasestrn(b->pos, b->last, (u_char *) CRLF, 1);
        if (p == NULL) {
            return b->last - b->pos > 4096 ? NGX_ERROR : NGX_AGAIN;
        }

        if (p == b->pos) {
            b->pos += 2;
            e->state = NGX_HTTP_TS_ETCD_DONE;
            return NGX_OK;
        }

        b->pos = p + 2;
    }
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
