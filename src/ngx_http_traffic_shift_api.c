
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#include "ngx_http_traffic_shift_api.h"
#include "ngx_http_traffic_shift_metrics.h"


#define NGX_HTTP_TS_API_SEGMENTS    4


static ngx_int_t ngx_http_traffic_shift_api_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_traffic_shift_api_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static ngx_int_t ngx_http_traffic_shift_api_path(ngx_http_request_t *r,
    ngx_http_traffic_shift_api_path_t *path,
    ngx_http_traffic_shift_api_err_t *err);
static ngx_int_t ngx_http_traffic_shift_api_segments(ngx_http_request_t *r,
    ngx_str_t *seg);
static ngx_int_t ngx_http_traffic_shift_api_raw_path(ngx_http_request_t *r);
static ngx_int_t ngx_http_traffic_shift_api_server(
    ngx_http_traffic_shift_upstream_t *ups, ngx_str_t *id, ngx_uint_t *index);
static ngx_int_t ngx_http_traffic_shift_api_get(ngx_http_request_t *r,
    ngx_http_traffic_shift_api_path_t *path);
static ngx_uint_t ngx_http_traffic_shift_api_json_type(ngx_http_request_t *r);

static json_t *ngx_http_traffic_shift_api_splits_json(
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_api_err_t *err);
static ngx_int_t ngx_http_traffic_shift_api_read(
    ngx_http_traffic_shift_split_t *split,
    ngx_http_traffic_shift_weights_t *w,
    ngx_http_traffic_shift_api_err_t *err);


static ngx_http_request_body_filter_pt  ngx_http_next_request_body_filter;


char *
ngx_http_traffic_shift_api(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_traffic_shift_loc_conf_t *lcf = conf;

    ngx_str_t                 *value;
    ngx_http_core_loc_conf_t  *clcf;

    if (lcf->api != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;

    lcf->api = 1;
    lcf->write = 0;

    if (cf->args->nelts == 2) {

        if (ngx_strcmp(value[1].data, "write=on") == 0) {
            lcf->write = 1;

        } else if (ngx_strcmp(value[1].data, "write=off") != 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\", expected "
                               "\"write=on\" or \"write=off\"", &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_traffic_shift_api_handler;

    return NGX_CONF_OK;
}


ngx_int_t
ngx_http_traffic_shift_api_init(ngx_conf_t *cf)
{
    ngx_http_next_request_body_filter = ngx_http_top_request_body_filter;
    ngx_http_top_request_body_filter = ngx_http_traffic_shift_api_body_filter;

    return NGX_OK;
}


/*
 * Bodies of API requests over the limit are read but not kept: whatever
 * way they arrive (content length, chunked, HTTP/2), at most 64 KiB are
 * buffered, and the handler answers 413.
 */

static ngx_int_t
ngx_http_traffic_shift_api_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    off_t                      received;
    ngx_buf_t                 *b;
    ngx_uint_t                 last;
    ngx_chain_t               *cl;
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (clcf->handler != ngx_http_traffic_shift_api_handler
        || r->request_body == NULL)
    {
        return ngx_http_next_request_body_filter(r, in);
    }

    received = ngx_max(r->headers_in.content_length_n,
                       r->request_body->received);

    if (received <= NGX_HTTP_TS_API_MAX_BODY) {
        return ngx_http_next_request_body_filter(r, in);
    }

    last = 0;

    for (cl = in; cl; cl = cl->next) {
        if (cl->buf->last_buf) {
            last = 1;
        }

        cl->buf->pos = cl->buf->last;
    }

    if (!last) {
        return ngx_http_next_request_body_filter(r, NULL);
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last_buf = 1;

    cl = ngx_alloc_chain_link(r->pool);
    if (cl == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cl->buf = b;
    cl->next = NULL;

    return ngx_http_next_request_body_filter(r, cl);
}


static ngx_int_t
ngx_http_traffic_shift_api_handler(ngx_http_request_t *r)
{
    char                               *allow;
    ngx_int_t                           rc;
    ngx_uint_t                          writable;
    ngx_http_traffic_shift_ctx_t       *ctx;
    ngx_http_traffic_shift_api_err_t    err;
    ngx_http_traffic_shift_api_req_t   *req;
    ngx_http_traffic_shift_loc_conf_t  *lcf;

    req = ngx_pcalloc(r->pool, sizeof(ngx_http_traffic_shift_api_req_t));
    if (req == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    allow = NULL;

    if (ngx_http_traffic_shift_api_path(r, &req->path, &err) != NGX_OK) {
        goto discard;
    }

    if (r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)) {
        rc = ngx_http_discard_request_body(r);

        if (rc != NGX_OK) {
            return rc;
        }

        return ngx_http_traffic_shift_api_get(r, &req->path);
    }

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_traffic_shift_module);

    writable = (req->path.what == NGX_HTTP_TS_API_UPSTREAM
                || req->path.what == NGX_HTTP_TS_API_SERVER);

    if (r->method != NGX_HTTP_PATCH || !writable) {
        allow = (writable && lcf->write) ? "GET, HEAD, PATCH" : "GET, HEAD";

        (void) ngx_http_traffic_shift_api_fail(&err, NGX_HTTP_NOT_ALLOWED,
                                             "method_not_allowed",
                                             "method %V is not allowed here, "
                                             "allowed: %s",
                                             &r->method_name, allow);
        goto discard;
    }

    if (!lcf->write) {
        (void) ngx_http_traffic_shift_api_fail(&err, NGX_HTTP_FORBIDDEN,
                                             "read_only",
                                             "this API location is read-only, "
                                             "changes need "
                                             "\"traffic_shift_api write=on\"");
        goto discard;
    }

    if (!ngx_http_traffic_shift_api_json_type(r)) {
        (void) ngx_http_traffic_shift_api_fail(&err,
                                             NGX_HTTP_UNSUPPORTED_MEDIA_TYPE,
                                             "unsupported_media_type",
                                             "the body must be sent with "
                                             "\"Content-Type: "
                                             "application/json\"");
        goto discard;
    }

    if (ngx_http_traffic_shift_api_too_large(r, &err)) {
        goto discard;
    }

    /* the body handler finds the parsed path here */

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_traffic_shift_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->api = req;
    ngx_http_set_ctx(r, ctx, ngx_http_traffic_shift_module);

    rc = ngx_http_read_client_request_body(r,
                                     ngx_http_traffic_shift_api_body_handler);

    if (rc == NGX_HTTP_REQUEST_ENTITY_TOO_LARGE) {
        /* over client_max_body_size, seen at once */
        (void) ngx_http_traffic_shift_api_too_large(r, &err);
        return ngx_http_traffic_shift_api_error(r, &err,
                             ngx_http_traffic_shift_api_etag(r, &req->path),
                             NULL);
    }

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;

discard:

    /* no "100 Continue" for a body that is refused anyway */
    r->expect_tested = 1;

    rc = ngx_http_discard_request_body(r);

    if (rc != NGX_OK) {
        return rc;
    }

    return ngx_http_traffic_shift_api_error(r, &err,
                             ngx_http_traffic_shift_api_etag(r, &req->path),
                             allow);
}


/*
 * Paths are relative to the location: "", "upstreams", "upstreams/NAME",
 * "health", "health/UPSTREAM", "health/UPSTREAM/servers/ID", "metrics".
 */

static ngx_int_t
ngx_http_traffic_shift_api_path(ngx_http_request_t *r,
    ngx_http_traffic_shift_api_path_t *path,
    ngx_http_traffic_shift_api_err_t *err)
{
    u_char                               buf[80];
    ngx_str_t                            seg[NGX_HTTP_TS_API_SEGMENTS], q;
    ngx_int_t                            n;
    ngx_http_traffic_shift_upstream_t   *ups;
    ngx_http_traffic_shift_main_conf_t  *mcf;

    ngx_memzero(path, sizeof(ngx_http_traffic_shift_api_path_t));

    if (ngx_http_traffic_shift_api_raw_path(r) != NGX_OK) {
        return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_BAD_REQUEST,
                                               "invalid_path",
                                               "the path has an encoded "
                                               "slash or a \".\" or \"..\" "
                                               "segment; names are matched "
                                               "as sent");
    }

    mcf = ngx_http_get_module_main_conf(r, ngx_http_traffic_shift_module);

    n = ngx_http_traffic_shift_api_segments(r, seg);

    if (n == NGX_ERROR) {
        goto not_found;
    }

    if (n == 0) {
        path->what = NGX_HTTP_TS_API_INDEX;
        return NGX_OK;
    }

    if (seg[0].len == sizeof("metrics") - 1
        && ngx_strncmp(seg[0].data, "metrics", seg[0].len) == 0)
    {
        if (n != 1) {
            goto not_found;
        }

        path->what = NGX_HTTP_TS_API_METRICS;
        return NGX_OK;
    }

    if (seg[0].len == sizeof("upstreams") - 1
        && ngx_strncmp(seg[0].data, "upstreams", seg[0].len) == 0)
    {
        if (n == 1) {
            path->what = NGX_HTTP_TS_API_UPSTREAMS;
            return NGX_OK;
        }

        if (n != 2) {
            goto not_found;
        }

        path->split = ngx_http_traffic_shift_find_split(mcf, seg[1].data,
                                                        seg[1].len);

        if (path->split && path->split->sh) {
            path->what = NGX_HTTP_TS_API_UPSTREAM;
            return NGX_OK;
        }

        path->split = NULL;

        q = ngx_http_traffic_shift_api_quote(buf, seg[1].data, seg[1].len);

        return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_NOT_FOUND,
                                               "unknown_upstream",
                                               "no traffic_shift upstream "
                                               "\"%V\"", &q);
    }

    if (seg[0].len == sizeof("health") - 1
        && ngx_strncmp(seg[0].data, "health", seg[0].len) == 0)
    {
        if (n == 1) {
            path->what = NGX_HTTP_TS_API_HEALTH;
            return NGX_OK;
        }

        if (n == 3
            || (n == 4
                && (seg[2].len != sizeof("servers") - 1
                    || ngx_strncmp(seg[2].data, "servers", seg[2].len) != 0)))
        {
            goto not_found;
        }

        ups = ngx_http_traffic_shift_find_upstream(mcf, seg[1].data,
                                                   seg[1].len);

        if (ups == NULL || (ups->nservers && ups->servers[0].sh == NULL)) {
            q = ngx_http_traffic_shift_api_quote(buf, seg[1].data,
                                                 seg[1].len);

            return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_NOT_FOUND,
                                                   "unknown_upstream",
                                                   "no upstream \"%V\" with "
                                                   "tracked servers", &q);
        }

        path->ups = ups;

        if (n == 2) {
            path->what = NGX_HTTP_TS_API_HEALTH_UPS;
            return NGX_OK;
        }

        if (ngx_http_traffic_shift_api_server(ups, &seg[3], &path->id)
            != NGX_OK)
        {
            q = ngx_http_traffic_shift_api_quote(buf, seg[3].data,
                                                 seg[3].len);

            return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_NOT_FOUND,
                                                   "unknown_server",
                                                   "no server \"%V\" in "
                                                   "upstream \"%V\"", &q,
                                                   &ups->uscf->host);
        }

        path->what = NGX_HTTP_TS_API_SERVER;
        return NGX_OK;
    }

not_found:

    q = ngx_http_traffic_shift_api_quote(buf, r->uri.data, r->uri.len);

    return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_NOT_FOUND,
                                           "not_found",
                                           "no API resource \"%V\"", &q);
}


/* the segments of the path after the location: at most 4, none empty */

static ngx_int_t
ngx_http_traffic_shift_api_segments(ngx_http_request_t *r, ngx_str_t *seg)
{
    u_char                    *p, *last, *start;
    ngx_int_t                  n;
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    p = r->uri.data;
    last = p + r->uri.len;

    if (clcf->name.len <= r->uri.len
        && ngx_strncmp(p, clcf->name.data, clcf->name.len) == 0)
    {
        p += clcf->name.len;
    }

    if (p < last && *p == '/') {
        p++;
    }

    if (p < last && last[-1] == '/') {
        last--;
    }

    n = 0;

    while (p < last) {
        if (n == NGX_HTTP_TS_API_SEGMENTS) {
            return NGX_ERROR;
        }

        start = p;

        while (p < last && *p != '/') {
            p++;
        }

        seg[n].data = start;
        seg[n].len = p - start;

        if (seg[n].len == 0) {
            return NGX_ERROR;
        }

        n++;

        if (p < last) {
            p++;

            if (p == last) {
                return NGX_ERROR;
            }
        }
    }

    return n;
}


/*
 * nginx resolves "%2F", "." and ".." before the handler sees the URI: an
 * API path is taken as sent, so a path that has any of them is refused
 * rather than read as another resource.
 */

static ngx_int_t
ngx_http_traffic_shift_api_raw_path(ngx_http_request_t *r)
{
    u_char      *p, *last, c;
    ngx_int_t    hi, lo;
    ngx_uint_t   n, dots;

    p = r->unparsed_uri.data;
    last = p + r->unparsed_uri.len;

    n = 0;
    dots = 1;

    for ( ;; ) {

        if (p == last || *p == '?' || *p == '/') {

            if (n && n <= 2 && dots) {
                return NGX_DECLINED;
            }

            if (p == last || *p == '?') {
                return NGX_OK;
            }

            p++;
            n = 0;
            dots = 1;
            continue;
        }

        c = *p++;

        if (c == '%' && last - p >= 2) {
            hi = ngx_hextoi(p, 1);
            lo = ngx_hextoi(p + 1, 1);

            if (hi != NGX_ERROR && lo != NGX_ERROR) {
                c = (u_char) (hi * 16 + lo);
                p += 2;

                if (c == '/' || c == '\\' || c == '\0') {
                    return NGX_DECLINED;
                }
            }
        }

        n++;

        if (c != '.') {
            dots = 0;
        }
    }
}


/* a server by its index in the upstream, or by its address */

static ngx_int_t
ngx_http_traffic_shift_api_server(ngx_http_traffic_shift_upstream_t *ups,
    ngx_str_t *id, ngx_uint_t *index)
{
    ngx_int_t  n;

    if (id->len <= 5) {
        n = ngx_atoi(id->data, id->len);

        if (n != NGX_ERROR) {
            if ((ngx_uint_t) n >= ups->nservers) {
                return NGX_DECLINED;
            }

            *index = n;
            return NGX_OK;
        }
    }

    n = ngx_http_traffic_shift_find_server(ups, id->data, id->len);

    if (n == NGX_ERROR) {
        return NGX_DECLINED;
    }

    *index = n;

    return NGX_OK;
}


static ngx_int_t
ngx_http_traffic_shift_api_get(ngx_http_request_t *r,
    ngx_http_traffic_shift_api_path_t *path)
{
    json_t                              *json;
    ngx_str_t                            body, type;
    ngx_uint_t                           etag;
    ngx_http_traffic_shift_api_err_t     err;
    ngx_http_traffic_shift_weights_t     w;
    ngx_http_traffic_shift_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_traffic_shift_module);

    etag = ngx_http_traffic_shift_api_etag(r, NULL);
    err.status = 0;
    json = NULL;

    switch (path->what) {

    case NGX_HTTP_TS_API_INDEX:
        json = ngx_http_traffic_shift_api_index_json(mcf);
        break;

    case NGX_HTTP_TS_API_UPSTREAMS:
        json = ngx_http_traffic_shift_api_splits_json(mcf, &err);
        break;

    case NGX_HTTP_TS_API_UPSTREAM:
        if (ngx_http_traffic_shift_api_read(path->split, &w, &err)
            == NGX_OK)
        {
            etag = w.generation;
            json = ngx_http_traffic_shift_api_split_json(path->split, &w);
        }

        break;

    case NGX_HTTP_TS_API_HEALTH:
    case NGX_HTTP_TS_API_HEALTH_UPS:

        /* thousands of servers: written directly, not through jansson */

        if (ngx_http_traffic_shift_api_health(r, mcf, path->ups, &body)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_traffic_shift_api_send(r, NGX_HTTP_OK,
                                   &ngx_http_traffic_shift_api_type_json,
                                   body.data, body.len, etag, NULL);

    case NGX_HTTP_TS_API_SERVER:
        json = ngx_http_traffic_shift_api_server_json(path->ups, path->id);
        break;

    default: /* NGX_HTTP_TS_API_METRICS */

        if (ngx_http_traffic_shift_metrics(r, mcf, &body) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_str_set(&type, "text/plain; version=0.0.4; charset=utf-8");

        return ngx_http_traffic_shift_api_send(r, NGX_HTTP_OK, &type,
                                               body.data, body.len, etag,
                                               NULL);
    }

    if (err.status) {
        return ngx_http_traffic_shift_api_error(r, &err, etag, NULL);
    }

    if (json == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_traffic_shift_api_send_json(r, NGX_HTTP_OK, json, etag);
}












/* "application/json", with parameters such as charset */

static ngx_uint_t
ngx_http_traffic_shift_api_json_type(ngx_http_request_t *r)
{
    u_char  *p, *last;

    if (r->headers_in.content_type == NULL) {
        return 0;
    }

    p = r->headers_in.content_type->value.data;
    last = p + r->headers_in.content_type->value.len;

    while (p < last && (*p == ' ' || *p == '\t')) {
        p++;
    }

    if ((size_t) (last - p) < sizeof("application/json") - 1
        || ngx_strncasecmp(p, (u_char *) "application/json",
                           sizeof("application/json") - 1)
           != 0)
    {
        return 0;
    }

    p += sizeof("application/json") - 1;

    while (p < last && (*p == ' ' || *p == '\t')) {
        p++;
    }

    return p == last || *p == ';';
}



static json_t *
ngx_http_traffic_shift_api_splits_json(ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_api_err_t *err)
{
    json_t                            *root;
    ngx_uint_t                         i;
    ngx_http_traffic_shift_split_t   **splitp;
    ngx_http_traffic_shift_weights_t   w;

    root = json_object();
    if (root == NULL) {
        return NULL;
    }

    splitp = mcf->splits.elts;

    for (i = 0; i < mcf->splits.nelts; i++) {

        if (splitp[i]->sh == NULL) {
            continue;
        }

        if (ngx_http_traffic_shift_api_read(splitp[i], &w, err) != NGX_OK) {
            json_decref(root);
            return NULL;
        }

        if (ngx_http_traffic_shift_json_set(root, &splitp[i]->name,
                   ngx_http_traffic_shift_api_split_json(splitp[i], &w))
            != NGX_OK)
        {
            json_decref(root);
            return NULL;
        }
    }

    return root;
}


static ngx_int_t
ngx_http_traffic_shift_api_read(ngx_http_traffic_shift_split_t *split,
    ngx_http_traffic_shift_weights_t *w, ngx_http_traffic_shift_api_err_t *err)
{
    if (ngx_http_traffic_shift_zone_read(split, w) == NGX_OK) {
        return NGX_OK;
    }

    return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_SERVICE_UNAVAILABLE,
                                           "reloading",
                                           "the configuration of upstream "
                                           "\"%V\" is being reloaded, retry",
                                           &split->name);
}







