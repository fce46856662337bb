
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#include "ngx_http_traffic_shift_api.h"


ngx_str_t  ngx_http_traffic_shift_api_type_json =
    ngx_string("application/json");


ngx_int_t
ngx_http_traffic_shift_api_send_json(ngx_http_request_t *r, ngx_uint_t status,
    json_t *json, ngx_uint_t etag)
{
    char    *text;
    u_char  *p, *data;
    size_t   len;

    text = json_dumps(json, JSON_COMPACT | JSON_REAL_PRECISION(10));

    json_decref(json);

    if (text == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    len = ngx_strlen(text);

    data = ngx_pnalloc(r->pool, len + 1);
    if (data == NULL) {
        free(text);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(data, text, len);
    *p++ = LF;

    free(text);

    return ngx_http_traffic_shift_api_send(r, status,
                                   &ngx_http_traffic_shift_api_type_json,
                                   data, p - data, etag, NULL);
}


ngx_int_t
ngx_http_traffic_shift_api_send(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *type, u_char *data, size_t len, ngx_uint_t etag, char *allow)
{
    u_char           *p;
    ngx_int_t         rc;
    ngx_buf_t        *b;
    ngx_chain_t       out;
    ngx_table_elt_t  *h;

    r->headers_out.status = status;
    r->headers_out.content_type = *type;
    r->headers_out.content_type_len = type->len;
    r->headers_out.content_type_lowcase = NULL;
    r->headers_out.content_length_n = len;

    /* the answer depends on the generation, not on the time */
    r->disable_not_modified = 1;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_pnalloc(r->pool, NGX_INT_T_LEN + 2);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "ETag");
    h->value.data = p;
    h->value.len = ngx_sprintf(p, "\"%ui\"", etag) - p;
    ngx_http_traffic_shift_header_init(h);

    r->headers_out.etag = h;

    if (allow) {
        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        h->hash = 1;
        ngx_str_set(&h->key, "Allow");
        h->value.data = (u_char *) allow;
        h->value.len = ngx_strlen(allow);
        ngx_http_traffic_shift_header_init(h);
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->pos = data;
    b->last = data + len;
    b->memory = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/* {"error":{"status":N,"code":"WORD","text":"human sentence"}} */

ngx_int_t
ngx_http_traffic_shift_api_error(ngx_http_request_t *r,
    ngx_http_traffic_shift_api_err_t *err, ngx_uint_t etag, char *allow)
{
    u_char  *p, *data;
    size_t   len;

    len = sizeof("{\"error\":{\"status\":,\"code\":\"\",\"text\":\"\"}}\n")
          + NGX_INT_T_LEN + ngx_strlen(err->code) + err->len
          + ngx_escape_json(NULL, err->text, err->len);

    data = ngx_pnalloc(r->pool, len);
    if (data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_sprintf(data, "{\"error\":{\"status\":%ui,\"code\":\"%s\","
                    "\"text\":\"", err->status, err->code);
    p = (u_char *) ngx_escape_json(p, err->text, err->len);
    p = ngx_cpymem(p, "\"}}\n", 4);

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "traffic_shift_api: %ui %s: %*s", err->status, err->code,
                   err->len, err->text);

    return ngx_http_traffic_shift_api_send(r, err->status,
                                   &ngx_http_traffic_shift_api_type_json,
                                   data, p - data, etag, allow);
}


/*
 * The one check of a body's size: its announced length, or what arrived;
 * the body filter asks it too (without "err"), and stops buffering past
 * the limit.
 */

ngx_uint_t
ngx_http_traffic_shift_api_too_large(ngx_http_request_t *r,
    ngx_http_traffic_shift_api_err_t *err)
{
    off_t  received;

    received = r->headers_in.content_length_n;

    if (r->request_body) {
        received = ngx_max(received, r->request_body->received);
    }

    if (received <= NGX_HTTP_TS_API_MAX_BODY) {
        return 0;
    }

    if (err == NULL) {
        return 1;
    }

    (void) ngx_http_traffic_shift_api_fail(err,
                                          NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                          "body_too_large",
                                          "the body is larger than %d bytes",
                                          NGX_HTTP_TS_API_MAX_BODY);
    return 1;
}




/* an upstream's generation, or the zone's version for other resources */

ngx_uint_t
ngx_http_traffic_shift_api_etag(ngx_http_request_t *r,
    ngx_http_traffic_shift_api_path_t *path)
{
    ngx_http_traffic_shift_main_conf_t  *mcf;

    if (path && path->split) {
        return path->split->sh->generation;
    }

    mcf = ngx_http_get_module_main_conf(r, ngx_http_traffic_shift_module);

    return mcf->sh ? mcf->sh->version : 0;
}
