/*
 * Copyright (C) nginx-traffic-shift developers
 */


#include "ngx_http_traffic_shift_health_probe.h"


/*
 * The response to a probe, as it is read: the status line, the headers,
 * the body as framed by Content-Length or chunked encoding (HEAD, 1xx, 204
 * and 304 have none; without either, to the end of the connection), up to
 * 64 KiB of it kept for body=, then the status and the body judged.  The
 * probe (ngx_http_traffic_shift_health_probe.c) reads and records: what it
 * is given here is a result, with the reason of a failure in probe->reason.
 */


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
static ngx_int_t ngx_http_traffic_shift_health_complete(
    ngx_http_traffic_shift_probe_t *probe);
#if (NGX_PCRE)
static char *ngx_http_traffic_shift_health_match(
    ngx_http_traffic_shift_probe_t *probe);
#endif
static ngx_uint_t ngx_http_traffic_shift_health_status_ok(
    ngx_http_traffic_shift_health_conf_t *conf, ngx_uint_t code);


/*
 * What was read: NGX_AGAIN: more is needed; NGX_OK: the response is
 * complete and passes; NGX_DECLINED: it fails, probe->reason says why;
 * NGX_ERROR: no memory, which says nothing of the server
 */

ngx_int_t
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
            probe->reason = "bad status line";
            return NGX_DECLINED;
        }

        probe->status_parsed = 1;

        if (!ngx_http_traffic_shift_health_status_ok(probe->conf,
                                                     probe->status.code))
        {
            /* no need to read further: the status says it */
            return ngx_http_traffic_shift_health_eof(probe);
        }
    }

    if (!probe->headers_done) {
        rc = ngx_http_traffic_shift_health_headers(probe);

        if (rc != NGX_OK) {
            return rc;
        }
    }

    rc = ngx_http_traffic_shift_health_body(probe);

    if (rc != NGX_OK) {
        return rc;
    }

    return ngx_http_traffic_shift_health_complete(probe);
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
                return NGX_DECLINED;
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

        probe->reason = "bad header";
        return NGX_DECLINED;
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
            probe->reason = "bad content length";
            return NGX_DECLINED;
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
            probe->reason = "unknown transfer encoding";
            return NGX_DECLINED;
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
            return NGX_ERROR;
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
            probe->reason = "bad chunked body";
            return NGX_DECLINED;
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

            d = ngx_hextoi(&ch, 1);

            if (d != NGX_ERROR) {
                if (probe->rest > (NGX_MAX_OFF_T_VALUE - 15) / 16) {
                    return NGX_ERROR;
                }

                probe->rest = probe->rest * 16 + d;
                probe->chunk_state = NGX_HTTP_TS_HC_CHUNK_HEX;

            } else if (probe->chunk_state == NGX_HTTP_TS_HC_CHUNK_SIZE) {
                return NGX_ERROR;

            } else if (ch == ';' || ch == ' ' || ch == '\t') {
                probe->chunk_state = NGX_HTTP_TS_HC_CHUNK_EXT;

            } else if (ch == CR) {
                probe->chunk_state = NGX_HTTP_TS_HC_CHUNK_SIZE_LF;

            } else if (ch == LF) {
                goto size;

            } else {
                return NGX_ERROR;
            }

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


/*
 * The connection closed, or a status that fails: what was read says,
 * NGX_OK or NGX_DECLINED
 */

ngx_int_t
ngx_http_traffic_shift_health_eof(ngx_http_traffic_shift_probe_t *probe)
{
    ngx_uint_t  code;

    probe->keep = 0;

    if (!probe->status_parsed) {
        probe->reason = (probe->buf.last == probe->buf.start)
                        ? "empty response" : "bad status line";
        return NGX_DECLINED;
    }

    code = probe->status.code;

    if (!ngx_http_traffic_shift_health_status_ok(probe->conf, code)) {
        ngx_snprintf(probe->error, sizeof(probe->error), "status %ui%Z",
                     code);
        probe->reason = (char *) probe->error;
        return NGX_DECLINED;
    }

    if (!probe->headers_done) {
        probe->reason = "incomplete response";
        return NGX_DECLINED;
    }

    if (probe->framing != NGX_HTTP_TS_HC_BODY_EOF) {
        probe->reason = "incomplete response body";
        return NGX_DECLINED;
    }

    return ngx_http_traffic_shift_health_complete(probe);
}


/* the whole response is read: the body's match */

static ngx_int_t
ngx_http_traffic_shift_health_complete(ngx_http_traffic_shift_probe_t *probe)
{
#if (NGX_PCRE)
    char  *reason;

    if (probe->conf->body) {
        reason = ngx_http_traffic_shift_health_match(probe);

        if (reason) {
            probe->keep = 0;
            probe->reason = reason;
            return NGX_DECLINED;
        }
    }
#endif

    return NGX_OK;
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
