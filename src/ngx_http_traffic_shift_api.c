
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#include "ngx_http_traffic_shift_api.h"
#include "ngx_http_traffic_shift_zone.h"
#include "ngx_http_traffic_shift_state.h"
#include "ngx_http_traffic_shift_metrics.h"


#define NGX_HTTP_TS_API_MAX_BODY    65536
#define NGX_HTTP_TS_API_TEXT_LEN    320
#define NGX_HTTP_TS_API_QUOTE_LEN   64

/* what a path names */
#define NGX_HTTP_TS_API_INDEX       0
#define NGX_HTTP_TS_API_UPSTREAMS   1
#define NGX_HTTP_TS_API_UPSTREAM    2
#define NGX_HTTP_TS_API_HEALTH      3
#define NGX_HTTP_TS_API_HEALTH_UPS  4
#define NGX_HTTP_TS_API_SERVER      5
#define NGX_HTTP_TS_API_METRICS     6

#define NGX_HTTP_TS_API_SEGMENTS    4


typedef struct {
    ngx_uint_t                            what;
    ngx_http_traffic_shift_split_t       *split;
    ngx_http_traffic_shift_upstream_t    *ups;
    ngx_uint_t                            id;
} ngx_http_traffic_shift_api_path_t;


typedef struct {
    ngx_uint_t                            status;
    char                                 *code;
    size_t                                len;
    u_char                                text[NGX_HTTP_TS_API_TEXT_LEN];
} ngx_http_traffic_shift_api_err_t;


/* an accepted change, answered once the state file is written */

typedef struct {
    ngx_http_traffic_shift_api_path_t     path;
    ngx_http_traffic_shift_change_t       change;
    ngx_uint_t                            version;
} ngx_http_traffic_shift_api_answer_t;


static ngx_int_t ngx_http_traffic_shift_api_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_traffic_shift_api_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static ngx_int_t ngx_http_traffic_shift_api_path(ngx_http_request_t *r,
    ngx_http_traffic_shift_api_path_t *path,
    ngx_http_traffic_shift_api_err_t *err);
static ngx_int_t ngx_http_traffic_shift_api_raw_path(ngx_http_request_t *r);
static ngx_http_traffic_shift_server_t *ngx_http_traffic_shift_api_server(
    ngx_http_traffic_shift_upstream_t *ups, ngx_str_t *id, ngx_uint_t *index);
static ngx_int_t ngx_http_traffic_shift_api_get(ngx_http_request_t *r,
    ngx_http_traffic_shift_api_path_t *path);
static void ngx_http_traffic_shift_api_body_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_traffic_shift_api_patch(ngx_http_request_t *r);
static ngx_int_t ngx_http_traffic_shift_api_read_body(ngx_http_request_t *r,
    ngx_str_t *body);
static ngx_int_t ngx_http_traffic_shift_api_patch_split(ngx_http_request_t *r,
    ngx_http_traffic_shift_api_path_t *path, json_t *root,
    ngx_http_traffic_shift_api_err_t *err);
static ngx_int_t ngx_http_traffic_shift_api_parse_weights(
    ngx_http_traffic_shift_split_t *split, json_t *root, ngx_uint_t *weights,
    ngx_uint_t *force, ngx_http_traffic_shift_api_err_t *err);
static ngx_int_t ngx_http_traffic_shift_api_patch_server(
    ngx_http_request_t *r, ngx_http_traffic_shift_api_path_t *path,
    json_t *root, ngx_http_traffic_shift_api_err_t *err);
static ngx_int_t ngx_http_traffic_shift_api_changed(ngx_http_request_t *r,
    ngx_http_traffic_shift_api_answer_t *answer);
static void ngx_http_traffic_shift_api_saved(ngx_http_request_t *r,
    ngx_http_traffic_shift_state_save_t *save);
static ngx_int_t ngx_http_traffic_shift_api_answer(ngx_http_request_t *r,
    ngx_http_traffic_shift_api_answer_t *answer,
    ngx_http_traffic_shift_state_save_t *save);
static ngx_int_t ngx_http_traffic_shift_api_if_match(ngx_http_request_t *r,
    ngx_uint_t *generation);
static ngx_uint_t ngx_http_traffic_shift_api_json_type(ngx_http_request_t *r);
static void ngx_http_traffic_shift_api_log_change(ngx_http_request_t *r,
    ngx_http_traffic_shift_split_t *split,
    ngx_http_traffic_shift_change_t *change);

static json_t *ngx_http_traffic_shift_api_splits_json(
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_api_err_t *err);
static ngx_int_t ngx_http_traffic_shift_api_read(
    ngx_http_traffic_shift_split_t *split,
    ngx_http_traffic_shift_weights_t *w,
    ngx_http_traffic_shift_api_err_t *err);

static ngx_int_t ngx_http_traffic_shift_api_send_json(ngx_http_request_t *r,
    ngx_uint_t status, json_t *json, ngx_uint_t etag);
static ngx_int_t ngx_http_traffic_shift_api_send(ngx_http_request_t *r,
    ngx_uint_t status, ngx_str_t *type, u_char *data, size_t len,
    ngx_uint_t etag, char *allow);
static ngx_int_t ngx_http_traffic_shift_api_error(ngx_http_request_t *r,
    ngx_http_traffic_shift_api_err_t *err, ngx_uint_t etag, char *allow);
static ngx_int_t ngx_http_traffic_shift_api_fail(
    ngx_http_traffic_shift_api_err_t *err, ngx_uint_t status, char *code,
    const char *fmt, ...);
static void ngx_http_traffic_shift_api_too_large(
    ngx_http_traffic_shift_api_err_t *err);
static ngx_str_t ngx_http_traffic_shift_api_quote(u_char *buf, u_char *p,
    size_t len);
static ngx_uint_t ngx_http_traffic_shift_api_version(ngx_http_request_t *r);


static ngx_http_request_body_filter_pt  ngx_http_next_request_body_filter;

static ngx_str_t  ngx_http_traffic_shift_api_json_type_str =
    ngx_string("application/json");


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
    ngx_uint_t                          etag;
    ngx_http_traffic_shift_api_err_t    err;
    ngx_http_traffic_shift_api_path_t   path;
    ngx_http_traffic_shift_loc_conf_t  *lcf;

    etag = ngx_http_traffic_shift_api_version(r);

    if (ngx_http_traffic_shift_api_path(r, &path, &err) != NGX_OK) {
        goto discard;
    }

    if (path.split) {
        etag = path.split->sh->generation;
    }

    if (r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)) {
        rc = ngx_http_discard_request_body(r);

        if (rc != NGX_OK) {
            return rc;
        }

        return ngx_http_traffic_shift_api_get(r, &path);
    }

    allow = (path.what == NGX_HTTP_TS_API_UPSTREAM
             || path.what == NGX_HTTP_TS_API_SERVER)
            ? "GET, HEAD, PATCH" : "GET, HEAD";

    if (r->method != NGX_HTTP_PATCH
        || (path.what != NGX_HTTP_TS_API_UPSTREAM
            && path.what != NGX_HTTP_TS_API_SERVER))
    {
        (void) ngx_http_traffic_shift_api_fail(&err,
                                             NGX_HTTP_NOT_ALLOWED,
                                             "method_not_allowed",
                                             "method %V is not allowed here, "
                                             "allowed: %s",
                                             &r->method_name, allow);
        r->expect_tested = 1;

        rc = ngx_http_discard_request_body(r);

        if (rc != NGX_OK) {
            return rc;
        }

        return ngx_http_traffic_shift_api_error(r, &err, etag, allow);
    }

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_traffic_shift_module);

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

    if (r->headers_in.content_length_n > NGX_HTTP_TS_API_MAX_BODY) {
        ngx_http_traffic_shift_api_too_large(&err);
        goto discard;
    }

    rc = ngx_http_read_client_request_body(r,
                                     ngx_http_traffic_shift_api_body_handler);

    if (rc == NGX_HTTP_REQUEST_ENTITY_TOO_LARGE) {
        /* over client_max_body_size, seen at once */
        ngx_http_traffic_shift_api_too_large(&err);
        return ngx_http_traffic_shift_api_error(r, &err, etag, NULL);
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

    return ngx_http_traffic_shift_api_error(r, &err, etag, NULL);
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
    u_char                               *p, *last, *start, buf[80];
    ngx_str_t                             seg[NGX_HTTP_TS_API_SEGMENTS], q;
    ngx_uint_t                            i, n;
    ngx_http_core_loc_conf_t             *clcf;
    ngx_http_traffic_shift_split_t      **splitp;
    ngx_http_traffic_shift_upstream_t   **upsp;
    ngx_http_traffic_shift_main_conf_t   *mcf;

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
            goto not_found;
        }

        start = p;

        while (p < last && *p != '/') {
            p++;
        }

        seg[n].data = start;
        seg[n].len = p - start;

        if (seg[n].len == 0) {
            goto not_found;
        }

        n++;

        if (p < last) {
            p++;

            if (p == last) {
                goto not_found;
            }
        }
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

        splitp = mcf->splits.elts;

        for (i = 0; i < mcf->splits.nelts; i++) {
            if (splitp[i]->name.len == seg[1].len
                && ngx_strncmp(splitp[i]->name.data, seg[1].data, seg[1].len)
                   == 0
                && splitp[i]->sh)
            {
                path->what = NGX_HTTP_TS_API_UPSTREAM;
                path->split = splitp[i];
                return NGX_OK;
            }
        }

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

        upsp = mcf->upstreams.elts;

        for (i = 0; i < mcf->upstreams.nelts; i++) {
            if (upsp[i]->uscf->host.len == seg[1].len
                && ngx_strncmp(upsp[i]->uscf->host.data, seg[1].data,
                               seg[1].len)
                   == 0
                && (upsp[i]->nservers == 0 || upsp[i]->servers[0].sh))
            {
                break;
            }
        }

        if (i == mcf->upstreams.nelts) {
            q = ngx_http_traffic_shift_api_quote(buf, seg[1].data,
                                                 seg[1].len);

            return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_NOT_FOUND,
                                                   "unknown_upstream",
                                                   "no upstream \"%V\" with "
                                                   "tracked servers", &q);
        }

        path->ups = upsp[i];

        if (n == 2) {
            path->what = NGX_HTTP_TS_API_HEALTH_UPS;
            return NGX_OK;
        }

        if (ngx_http_traffic_shift_api_server(upsp[i], &seg[3], &path->id)
            == NULL)
        {
            q = ngx_http_traffic_shift_api_quote(buf, seg[3].data,
                                                 seg[3].len);

            return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_NOT_FOUND,
                                                   "unknown_server",
                                                   "no server \"%V\" in "
                                                   "upstream \"%V\"", &q,
                                                   &upsp[i]->uscf->host);
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

static ngx_http_traffic_shift_server_t *
ngx_http_traffic_shift_api_server(ngx_http_traffic_shift_upstream_t *ups,
    ngx_str_t *id, ngx_uint_t *index)
{
    ngx_int_t   n;
    ngx_uint_t  i;

    if (id->len <= 5) {
        n = ngx_atoi(id->data, id->len);

        if (n != NGX_ERROR) {
            if ((ngx_uint_t) n >= ups->nservers) {
                return NULL;
            }

            *index = n;
            return &ups->servers[n];
        }
    }

    for (i = 0; i < ups->nservers; i++) {
        if (ups->servers[i].name.len == id->len
            && ngx_strncmp(ups->servers[i].name.data, id->data, id->len) == 0)
        {
            *index = i;
            return &ups->servers[i];
        }
    }

    return NULL;
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

    etag = ngx_http_traffic_shift_api_version(r);
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
                                   &ngx_http_traffic_shift_api_json_type_str,
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


static void
ngx_http_traffic_shift_api_body_handler(ngx_http_request_t *r)
{
    ngx_int_t  rc;

    rc = ngx_http_traffic_shift_api_patch(r);

    if (rc == NGX_DONE) {
        /* answered, or answered once the state file is written */
        return;
    }

    ngx_http_finalize_request(r, rc);
}


static ngx_int_t
ngx_http_traffic_shift_api_patch(ngx_http_request_t *r)
{
    off_t                               received;
    u_char                             *p, buf[80];
    json_t                             *root;
    ngx_int_t                           rc;
    ngx_str_t                           body, q;
    ngx_uint_t                          etag;
    json_error_t                        error;
    ngx_http_traffic_shift_api_err_t    err;
    ngx_http_traffic_shift_api_path_t   path;

    etag = ngx_http_traffic_shift_api_version(r);

    if (ngx_http_traffic_shift_api_path(r, &path, &err) != NGX_OK) {
        return ngx_http_traffic_shift_api_error(r, &err, etag, NULL);
    }

    if (path.split) {
        etag = path.split->sh->generation;
    }

    received = r->headers_in.content_length_n;

    if (r->request_body) {
        received = ngx_max(received, r->request_body->received);
    }

    if (received > NGX_HTTP_TS_API_MAX_BODY) {
        ngx_http_traffic_shift_api_too_large(&err);
        return ngx_http_traffic_shift_api_error(r, &err, etag, NULL);
    }

    rc = ngx_http_traffic_shift_api_read_body(r, &body);

    if (rc != NGX_OK) {
        if (rc == NGX_HTTP_REQUEST_ENTITY_TOO_LARGE) {
            ngx_http_traffic_shift_api_too_large(&err);
            return ngx_http_traffic_shift_api_error(r, &err, etag, NULL);
        }

        return rc;
    }

    root = json_loadb((char *) body.data, body.len, JSON_REJECT_DUPLICATES,
                      &error);

    if (root == NULL) {
        p = (u_char *) error.text;
        q = ngx_http_traffic_shift_api_quote(buf, p, ngx_strlen(p));

        switch (json_error_code(&error)) {

        case json_error_invalid_utf8:
            (void) ngx_http_traffic_shift_api_fail(&err,
                                               NGX_HTTP_BAD_REQUEST,
                                               "invalid_utf8",
                                               "the body is not valid UTF-8 "
                                               "(line %d, column %d)",
                                               error.line, error.column);
            break;

        case json_error_duplicate_key:
            (void) ngx_http_traffic_shift_api_fail(&err,
                                               NGX_HTTP_BAD_REQUEST,
                                               "duplicate_key",
                                               "the body repeats a key: %V "
                                               "(line %d, column %d)",
                                               &q, error.line, error.column);
            break;

        default:
            (void) ngx_http_traffic_shift_api_fail(&err,
                                               NGX_HTTP_BAD_REQUEST,
                                               "invalid_json",
                                               "the body is not valid JSON: "
                                               "%V (line %d, column %d)",
                                               &q, error.line, error.column);
        }

        return ngx_http_traffic_shift_api_error(r, &err, etag, NULL);
    }

    if (!json_is_object(root)) {
        json_decref(root);

        (void) ngx_http_traffic_shift_api_fail(&err, NGX_HTTP_BAD_REQUEST,
                                               "invalid_type",
                                               "the body must be a JSON "
                                               "object");
        return ngx_http_traffic_shift_api_error(r, &err, etag, NULL);
    }

    err.status = 0;

    if (path.what == NGX_HTTP_TS_API_UPSTREAM) {
        rc = ngx_http_traffic_shift_api_patch_split(r, &path, root, &err);

    } else {
        rc = ngx_http_traffic_shift_api_patch_server(r, &path, root, &err);
    }

    /* the request may be finalized already: nothing here may use it */

    json_decref(root);

    if (rc == NGX_ERROR && err.status) {
        if (path.split) {
            etag = path.split->sh->generation;

        } else {
            etag = ngx_http_traffic_shift_api_version(r);
        }

        return ngx_http_traffic_shift_api_error(r, &err, etag, NULL);
    }

    return rc;
}


/* the body in one piece: it may be in several buffers and in a file */

static ngx_int_t
ngx_http_traffic_shift_api_read_body(ngx_http_request_t *r, ngx_str_t *body)
{
    off_t         size;
    u_char       *p;
    ssize_t       n;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    size = 0;

    if (r->request_body) {
        for (cl = r->request_body->bufs; cl; cl = cl->next) {
            size += ngx_buf_size(cl->buf);
        }
    }

    if (size > NGX_HTTP_TS_API_MAX_BODY) {
        return NGX_HTTP_REQUEST_ENTITY_TOO_LARGE;
    }

    p = ngx_pnalloc(r->pool, (size_t) size + 1);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    body->data = p;

    if (size) {
        for (cl = r->request_body->bufs; cl; cl = cl->next) {
            b = cl->buf;

            if (b->in_file && !ngx_buf_in_memory(b)) {
                n = ngx_read_file(b->file, p, b->file_last - b->file_pos,
                                  b->file_pos);

                if (n != b->file_last - b->file_pos) {
                    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                                  "traffic_shift_api: cannot read the body "
                                  "from \"%V\"", &b->file->name);
                    return NGX_HTTP_INTERNAL_SERVER_ERROR;
                }

                p += n;

            } else if (b->last != b->pos) {
                /* an empty buffer may have no memory: no memcpy(p, NULL) */
                p = ngx_cpymem(p, b->pos, b->last - b->pos);
            }
        }
    }

    body->len = p - body->data;

    return NGX_OK;
}


static ngx_int_t
ngx_http_traffic_shift_api_patch_split(ngx_http_request_t *r,
    ngx_http_traffic_shift_api_path_t *path, json_t *root,
    ngx_http_traffic_shift_api_err_t *err)
{
    ngx_int_t                             rc;
    ngx_uint_t                            force, if_match;
    ngx_uint_t                            weights[NGX_HTTP_TS_MAX_POOLS];
    ngx_http_traffic_shift_pool_t        *pool;
    ngx_http_traffic_shift_split_t       *split;
    ngx_http_traffic_shift_main_conf_t   *mcf;
    ngx_http_traffic_shift_api_answer_t  *answer;

    split = path->split;

    if (ngx_http_traffic_shift_api_parse_weights(split, root, weights, &force,
                                                 err)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_http_traffic_shift_api_if_match(r, &if_match) != NGX_OK) {
        return ngx_http_traffic_shift_api_fail(err,
                                            NGX_HTTP_PRECONDITION_FAILED,
                                            "precondition_failed",
                                            "If-Match does not match the "
                                            "generation %ui of upstream "
                                            "\"%V\"", split->sh->generation,
                                            &split->name);
    }

    answer = ngx_pcalloc(r->pool, sizeof(ngx_http_traffic_shift_api_answer_t));
    if (answer == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    answer->path = *path;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_traffic_shift_module);

    rc = ngx_http_traffic_shift_zone_set_weights(mcf, split, weights,
                                                 NGX_HTTP_TS_SRC_API,
                                                 if_match, force,
                                                 &answer->change);

    switch (rc) {

    case NGX_OK:
        break;

    case NGX_DECLINED:
        return ngx_http_traffic_shift_api_fail(err,
                                            NGX_HTTP_PRECONDITION_FAILED,
                                            "precondition_failed",
                                            "upstream \"%V\" is at generation "
                                            "%ui, If-Match expected %ui",
                                            &split->name,
                                            answer->change.old.generation,
                                            if_match);

    case NGX_BUSY:
        pool = split->pools.elts;

        return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_CONFLICT,
                                            "pool_unavailable",
                                            "pool \"%V\" (upstream \"%V\") "
                                            "has no live server; send "
                                            "\"force\":true to change the "
                                            "weights anyway",
                                            &pool[answer->change.dead_pool]
                                                .name,
                                            &pool[answer->change.dead_pool]
                                                .upstream);

    default: /* NGX_ABORT */
        return ngx_http_traffic_shift_api_fail(err,
                                            NGX_HTTP_SERVICE_UNAVAILABLE,
                                            "reloading",
                                            "the configuration of upstream "
                                            "\"%V\" is being reloaded, retry",
                                            &split->name);
    }

    ngx_http_traffic_shift_api_log_change(r, split, &answer->change);

    return ngx_http_traffic_shift_api_changed(r, answer);
}


/* {"weights":{"blue":90,"green":10}} or {"active":"green"}, "force" */

static ngx_int_t
ngx_http_traffic_shift_api_parse_weights(ngx_http_traffic_shift_split_t *split,
    json_t *root, ngx_uint_t *weights, ngx_uint_t *force,
    ngx_http_traffic_shift_api_err_t *err)
{
    u_char                         *p, buf[80], total_text[16];
    json_t                         *value, *weights_obj, *active;
    ngx_int_t                       w;
    ngx_str_t                       q;
    ngx_uint_t                      i, n, total;
    const char                     *key;
    ngx_http_traffic_shift_pool_t  *pool;

    weights_obj = NULL;
    active = NULL;
    *force = 0;

    json_object_foreach(root, key, value) {

        if (ngx_strcmp(key, "weights") == 0) {
            if (!json_is_object(value)) {
                return ngx_http_traffic_shift_api_fail(err,
                                               NGX_HTTP_BAD_REQUEST,
                                               "invalid_type",
                                               "\"weights\" must be an object "
                                               "of pool names and "
                                               "percentages");
            }

            weights_obj = value;

        } else if (ngx_strcmp(key, "active") == 0) {
            if (!json_is_string(value)) {
                return ngx_http_traffic_shift_api_fail(err,
                                               NGX_HTTP_BAD_REQUEST,
                                               "invalid_type",
                                               "\"active\" must be a pool "
                                               "name");
            }

            active = value;

        } else if (ngx_strcmp(key, "force") == 0) {
            if (!json_is_boolean(value)) {
                return ngx_http_traffic_shift_api_fail(err,
                                               NGX_HTTP_BAD_REQUEST,
                                               "invalid_type",
                                               "\"force\" must be true or "
                                               "false");
            }

            *force = json_is_true(value);

        } else {
            q = ngx_http_traffic_shift_api_quote(buf, (u_char *) key,
                                                 ngx_strlen(key));

            return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_BAD_REQUEST,
                                               "unknown_field",
                                               "unknown field \"%V\", "
                                               "expected \"weights\" or "
                                               "\"active\", and \"force\"",
                                               &q);
        }
    }

    if (weights_obj && active) {
        return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_BAD_REQUEST,
                                               "conflicting_fields",
                                               "\"weights\" and \"active\" "
                                               "cannot be used together");
    }

    if (weights_obj == NULL && active == NULL) {
        return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_BAD_REQUEST,
                                               "missing_field",
                                               "the body must have "
                                               "\"weights\" or \"active\"");
    }

    pool = split->pools.elts;
    n = split->pools.nelts;

    for (i = 0; i < n; i++) {
        weights[i] = 0;
    }

    if (active) {
        key = json_string_value(active);
        w = json_string_length(active);

        if (!ngx_http_traffic_shift_valid_name((u_char *) key, w)) {
            q = ngx_http_traffic_shift_api_quote(buf, (u_char *) key, w);

            return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_BAD_REQUEST,
                                               "invalid_name",
                                               "invalid pool name \"%V\", "
                                               "expected 1 to 32 of A-Z, "
                                               "a-z, 0-9, \"_\" and \"-\"",
                                               &q);
        }

        for (i = 0; i < n; i++) {
            if (pool[i].name.len == (size_t) w
                && ngx_strncmp(pool[i].name.data, key, w) == 0)
            {
                weights[i] = NGX_HTTP_TS_TOTAL;
                return NGX_OK;
            }
        }

        return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_NOT_FOUND,
                                               "unknown_pool",
                                               "upstream \"%V\" has no pool "
                                               "\"%s\"", &split->name, key);
    }

    total = 0;

    json_object_foreach(weights_obj, key, value) {

        if (!ngx_http_traffic_shift_valid_name((u_char *) key,
                                               ngx_strlen(key)))
        {
            q = ngx_http_traffic_shift_api_quote(buf, (u_char *) key,
                                                 ngx_strlen(key));

            return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_BAD_REQUEST,
                                               "invalid_name",
                                               "invalid pool name \"%V\", "
                                               "expected 1 to 32 of A-Z, "
                                               "a-z, 0-9, \"_\" and \"-\"",
                                               &q);
        }

        for (i = 0; i < n; i++) {
            if (pool[i].name.len == ngx_strlen(key)
                && ngx_strncmp(pool[i].name.data, key, pool[i].name.len)
                   == 0)
            {
                break;
            }
        }

        if (i == n) {
            return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_NOT_FOUND,
                                               "unknown_pool",
                                               "upstream \"%V\" has no pool "
                                               "\"%s\"", &split->name, key);
        }

        if (!json_is_number(value)) {
            return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_BAD_REQUEST,
                                               "invalid_type",
                                               "the weight of pool \"%s\" "
                                               "must be a number", key);
        }

        w = ngx_http_traffic_shift_api_json_to_weight(value);

        if (w == NGX_DECLINED) {
            return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_BAD_REQUEST,
                                               "invalid_weight",
                                               "the weight of pool \"%s\" has "
                                               "more than 2 decimals", key);
        }

        if (w < 0) {
            return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_BAD_REQUEST,
                                               "invalid_weight",
                                               "the weight of pool \"%s\" "
                                               "must be from 0 to 100", key);
        }

        weights[i] = w;
        total += w;
    }

    if (total != NGX_HTTP_TS_TOTAL) {
        p = ngx_http_traffic_shift_print_weight(total_text,
                                       ngx_min(total, 99999999));

        return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_BAD_REQUEST,
                                               "invalid_total",
                                               "the weights total %*s, they "
                                               "must total 100",
                                               p - total_text, total_text);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_traffic_shift_api_patch_server(ngx_http_request_t *r,
    ngx_http_traffic_shift_api_path_t *path, json_t *root,
    ngx_http_traffic_shift_api_err_t *err)
{
    u_char                                buf[80];
    json_t                               *value, *down;
    ngx_str_t                             q;
    ngx_uint_t                            if_match;
    const char                           *key;
    ngx_http_traffic_shift_server_t      *server;
    ngx_http_traffic_shift_main_conf_t   *mcf;
    ngx_http_traffic_shift_api_answer_t  *answer;

    down = NULL;

    json_object_foreach(root, key, value) {

        if (ngx_strcmp(key, "down") != 0) {
            q = ngx_http_traffic_shift_api_quote(buf, (u_char *) key,
                                                 ngx_strlen(key));

            return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_BAD_REQUEST,
                                                   "unknown_field",
                                                   "unknown field \"%V\", "
                                                   "expected \"down\"", &q);
        }

        if (!json_is_boolean(value)) {
            return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_BAD_REQUEST,
                                                   "invalid_type",
                                                   "\"down\" must be true or "
                                                   "false");
        }

        down = value;
    }

    if (down == NULL) {
        return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_BAD_REQUEST,
                                               "missing_field",
                                               "the body must have \"down\": "
                                               "true or false");
    }

    mcf = ngx_http_get_module_main_conf(r, ngx_http_traffic_shift_module);

    if (ngx_http_traffic_shift_api_if_match(r, &if_match) != NGX_OK) {
        return ngx_http_traffic_shift_api_fail(err,
                                            NGX_HTTP_PRECONDITION_FAILED,
                                            "precondition_failed",
                                            "If-Match does not match the "
                                            "version %ui", mcf->sh->version);
    }

    answer = ngx_pcalloc(r->pool, sizeof(ngx_http_traffic_shift_api_answer_t));
    if (answer == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    answer->path = *path;
    server = &path->ups->servers[path->id];

    if (ngx_http_traffic_shift_zone_admin_down(mcf, server,
                                               json_is_true(down), if_match,
                                               &answer->version)
        != NGX_OK)
    {
        return ngx_http_traffic_shift_api_fail(err,
                                            NGX_HTTP_PRECONDITION_FAILED,
                                            "precondition_failed",
                                            "the version is %ui, If-Match "
                                            "expected %ui", answer->version,
                                            if_match);
    }

    ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                  "traffic_shift: server \"%V\" of upstream \"%V\" %s by "
                  "client %V, version %ui", &server->name,
                  &path->ups->uscf->host,
                  json_is_true(down) ? "set admin-down"
                                     : "back from admin-down",
                  &r->connection->addr_text, answer->version);

    return ngx_http_traffic_shift_api_changed(r, answer);
}


/* the change is live: save it if there is a state file, then answer */

static ngx_int_t
ngx_http_traffic_shift_api_changed(ngx_http_request_t *r,
    ngx_http_traffic_shift_api_answer_t *answer)
{
    ngx_int_t                            rc;
    ngx_http_traffic_shift_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_traffic_shift_module);

    if (mcf->state_file.len == 0) {
        return ngx_http_traffic_shift_api_answer(r, answer, NULL);
    }

    rc = ngx_http_traffic_shift_state_save(r, ngx_http_traffic_shift_api_saved,
                                           answer);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return NGX_DONE;
}


static void
ngx_http_traffic_shift_api_saved(ngx_http_request_t *r,
    ngx_http_traffic_shift_state_save_t *save)
{
    ngx_http_finalize_request(r,
                   ngx_http_traffic_shift_api_answer(r, save->data, save));
}


static ngx_int_t
ngx_http_traffic_shift_api_answer(ngx_http_request_t *r,
    ngx_http_traffic_shift_api_answer_t *answer,
    ngx_http_traffic_shift_state_save_t *save)
{
    u_char      *p, text[NGX_HTTP_TS_STATE_ERR_LEN + 64];
    json_t      *json;
    ngx_uint_t   etag;

    if (answer->path.what == NGX_HTTP_TS_API_UPSTREAM) {
        json = ngx_http_traffic_shift_api_split_json(answer->path.split,
                                                     &answer->change.new);
        etag = answer->change.new.generation;

    } else {
        json = ngx_http_traffic_shift_api_server_json(answer->path.ups,
                                                      answer->path.id);
        etag = answer->version;
    }

    if (json == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (save) {
        if (json_object_set_new(json, "persisted",
                                json_boolean(save->rc == NGX_OK)))
        {
            goto failed;
        }

        if (save->rc != NGX_OK) {
            p = ngx_snprintf(text, sizeof(text),
                             "the change is live but not saved: %*s",
                             save->error_len, save->error);

            if (json_object_set_new(json, "warning",
                         ngx_http_traffic_shift_api_json_str(text, p - text)))
            {
                goto failed;
            }
        }
    }

    return ngx_http_traffic_shift_api_send_json(r, NGX_HTTP_OK, json, etag);

failed:

    json_decref(json);

    return NGX_HTTP_INTERNAL_SERVER_ERROR;
}


/*
 * If-Match: "GEN" or GEN, or "*".  NGX_OK with the generation (0: no
 * condition), NGX_DECLINED if the header can match no generation.
 */

static ngx_int_t
ngx_http_traffic_shift_api_if_match(ngx_http_request_t *r,
    ngx_uint_t *generation)
{
    u_char     *p, *last;
    ngx_int_t   n;

    *generation = 0;

    if (r->headers_in.if_match == NULL) {
        return NGX_OK;
    }

    p = r->headers_in.if_match->value.data;
    last = p + r->headers_in.if_match->value.len;

    while (p < last && (*p == ' ' || *p == '\t')) {
        p++;
    }

    while (last > p && (last[-1] == ' ' || last[-1] == '\t')) {
        last--;
    }

    if (last - p == 1 && *p == '*') {
        return NGX_OK;
    }

    if (last - p >= 2 && *p == '"' && last[-1] == '"') {
        p++;
        last--;
    }

    n = ngx_atoi(p, last - p);

    if (n == NGX_ERROR || n == 0) {
        return NGX_DECLINED;
    }

    *generation = n;

    return NGX_OK;
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


static void
ngx_http_traffic_shift_api_log_change(ngx_http_request_t *r,
    ngx_http_traffic_shift_split_t *split,
    ngx_http_traffic_shift_change_t *change)
{
    u_char                         *p, *last;
    ngx_uint_t                      i, n;
    ngx_http_traffic_shift_pool_t  *pool;
    u_char                          text[2 * NGX_HTTP_TS_MAX_POOLS
                                         * (NGX_HTTP_TS_NAME_LEN + 9) + 8];

    pool = split->pools.elts;
    n = split->pools.nelts;

    p = text;
    last = text + sizeof(text);

    for (i = 0; i < n; i++) {
        p = ngx_slprintf(p, last, "%s%V=", i ? " " : "", &pool[i].name);
        p = ngx_http_traffic_shift_print_weight(p, change->old.weights[i]);
    }

    p = ngx_slprintf(p, last, " -> ");

    for (i = 0; i < n; i++) {
        p = ngx_slprintf(p, last, "%s%V=", i ? " " : "", &pool[i].name);
        p = ngx_http_traffic_shift_print_weight(p, change->new.weights[i]);
    }

    ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                  "traffic_shift \"%V\": weights %*s by client %V, "
                  "generation %ui", &split->name, p - text, text,
                  &r->connection->addr_text, change->new.generation);
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

        if (ngx_http_traffic_shift_api_set(root, &splitp[i]->name,
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
    ngx_int_t   rc;
    ngx_uint_t  n;

    for (n = 0; n < 100; n++) {
        rc = ngx_http_traffic_shift_zone_read(split, w);

        if (rc == NGX_OK) {
            return NGX_OK;
        }

        if (rc == NGX_DECLINED) {
            break;
        }
    }

    return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_SERVICE_UNAVAILABLE,
                                           "reloading",
                                           "the configuration of upstream "
                                           "\"%V\" is being reloaded, retry",
                                           &split->name);
}


static ngx_int_t
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
                                   &ngx_http_traffic_shift_api_json_type_str,
                                   data, p - data, etag, NULL);
}


static ngx_int_t
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
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif

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
#if (nginx_version >= 1023000)
        h->next = NULL;
#endif
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

static ngx_int_t
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
                                   &ngx_http_traffic_shift_api_json_type_str,
                                   data, p - data, etag, allow);
}


static void
ngx_http_traffic_shift_api_too_large(ngx_http_traffic_shift_api_err_t *err)
{
    (void) ngx_http_traffic_shift_api_fail(err,
                                          NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                          "body_too_large",
                                          "the body is larger than %d bytes",
                                          NGX_HTTP_TS_API_MAX_BODY);
}


static ngx_int_t
ngx_http_traffic_shift_api_fail(ngx_http_traffic_shift_api_err_t *err,
    ngx_uint_t status, char *code, const char *fmt, ...)
{
    u_char   *p;
    va_list   args;

    err->status = status;
    err->code = code;

    va_start(args, fmt);
    p = ngx_vslprintf(err->text, err->text + NGX_HTTP_TS_API_TEXT_LEN, fmt,
                      args);
    va_end(args);

    err->len = p - err->text;

    return NGX_ERROR;
}


/* a name sent by the client, fit for a message: printable ASCII, short */

static ngx_str_t
ngx_http_traffic_shift_api_quote(u_char *buf, u_char *p, size_t len)
{
    size_t     i;
    ngx_str_t  s;

    s.data = buf;

    for (i = 0; i < len && i < NGX_HTTP_TS_API_QUOTE_LEN; i++) {
        buf[i] = (p[i] >= 0x20 && p[i] < 0x7f) ? p[i] : '?';
    }

    if (i < len) {
        buf[i++] = '.';
        buf[i++] = '.';
        buf[i++] = '.';
    }

    s.len = i;

    return s;
}


static ngx_uint_t
ngx_http_traffic_shift_api_version(ngx_http_request_t *r)
{
    ngx_http_traffic_shift_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_traffic_shift_module);

    return mcf->sh ? mcf->sh->version : 0;
}
