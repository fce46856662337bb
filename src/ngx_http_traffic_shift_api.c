
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#include "ngx_http_traffic_shift_api.h"
#include "ngx_http_traffic_shift_api_dashboard.h"
#include "ngx_http_traffic_shift_metrics.h"
#include "ngx_http_traffic_shift_sync.h"


static ngx_int_t ngx_http_traffic_shift_api_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_traffic_shift_api_writable(ngx_http_request_t *r,
    ngx_http_traffic_shift_api_path_t *path,
    ngx_http_traffic_shift_api_err_t *err, char **allow);
static ngx_int_t ngx_http_traffic_shift_api_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
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

    if (!ngx_http_traffic_shift_api_too_large(r, NULL)) {
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
    char                                *allow;
    ngx_int_t                            rc;
    ngx_uint_t                           i;
    ngx_http_traffic_shift_ctx_t        *ctx;
    ngx_http_traffic_shift_api_err_t     err;
    ngx_http_traffic_shift_api_req_t    *req;
    ngx_http_traffic_shift_upstream_t  **upsp;
    ngx_http_traffic_shift_main_conf_t  *mcf;

    req = ngx_pcalloc(r->pool, sizeof(ngx_http_traffic_shift_api_req_t));
    if (req == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    allow = NULL;

    /* the servers resolved at run time, as the peers have them now */

    mcf = ngx_http_get_module_main_conf(r, ngx_http_traffic_shift_module);
    upsp = mcf->upstreams.elts;

    for (i = 0; i < mcf->upstreams.nelts; i++) {
        (void) ngx_http_traffic_shift_zone_discover(mcf, upsp[i],
                                                    r->connection->log);
    }

    /* the status page (docs/dashboard.md) */

    rc = ngx_http_traffic_shift_api_dashboard(r);

    if (rc != NGX_DECLINED) {
        return rc;
    }

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

    if (ngx_http_traffic_shift_api_writable(r, &req->path, &err, &allow)
        != NGX_OK)
    {
        goto discard;
    }

    if (r->method == NGX_HTTP_DELETE) {
        rc = ngx_http_discard_request_body(r);

        if (rc != NGX_OK) {
            return rc;
        }

        return ngx_http_traffic_shift_api_delete(r, req);
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
 * A change: a method the path allows, a location with "write=on", and no
 * cross-site browser request; NGX_ERROR with "err" (and "allow" for 405)
 */

static ngx_int_t
ngx_http_traffic_shift_api_writable(ngx_http_request_t *r,
    ngx_http_traffic_shift_api_path_t *path,
    ngx_http_traffic_shift_api_err_t *err, char **allow)
{
    ngx_uint_t                          writable, rollout, allowed;
    ngx_http_traffic_shift_loc_conf_t  *lcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_traffic_shift_module);

    rollout = (path->what == NGX_HTTP_TS_API_ROLLOUT);

    writable = (path->what == NGX_HTTP_TS_API_UPSTREAM
                || path->what == NGX_HTTP_TS_API_SERVER
                || rollout);

    allowed = rollout
              ? (r->method
                 & (NGX_HTTP_PUT|NGX_HTTP_POST|NGX_HTTP_PATCH|NGX_HTTP_DELETE))
              : (r->method == NGX_HTTP_PATCH);

    if (!allowed || !writable) {
        *allow = !(writable && lcf->write) ? "GET, HEAD"
                 : rollout ? "GET, HEAD, PUT, POST, PATCH, DELETE"
                 : "GET, HEAD, PATCH";

        return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_NOT_ALLOWED,
                                             "method_not_allowed",
                                             "method %V is not allowed here, "
                                             "allowed: %s",
                                             &r->method_name, *allow);
    }

    if (!lcf->write) {
        return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_FORBIDDEN,
                                             "read_only",
                                             "this API location is read-only, "
                                             "changes need "
                                             "\"traffic_shift_api write=on\"");
    }

    return ngx_http_traffic_shift_api_cross_site(r, err);
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
    ngx_http_traffic_shift_loc_conf_t   *lcf;
    ngx_http_traffic_shift_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_traffic_shift_module);

    if (path->what == NGX_HTTP_TS_API_FLEET) {
        /* read from etcd: answered later */
        return ngx_http_traffic_shift_sync_fleet(r);
    }

    etag = ngx_http_traffic_shift_api_etag(r, NULL);
    err.status = 0;
    json = NULL;

    switch (path->what) {

    case NGX_HTTP_TS_API_INDEX:
        json = ngx_http_traffic_shift_api_index_json(mcf);

        /* whether this location takes changes: the status page asks */

        lcf = ngx_http_get_module_loc_conf(r, ngx_http_traffic_shift_module);

        if (json
            && json_object_set_new(json, "write", json_boolean(lcf->write)))
        {
            json_decref(json);
            json = NULL;
        }

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

    case NGX_HTTP_TS_API_ROLLOUT:
        etag = path->split->sh->generation;
        json = ngx_http_traffic_shift_api_rollout_json(r, path->split, &err);
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







