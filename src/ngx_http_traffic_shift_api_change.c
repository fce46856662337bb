
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#include "ngx_http_traffic_shift_api.h"
#include "ngx_http_traffic_shift_state.h"
#include "ngx_http_traffic_shift_sync.h"
#include "ngx_http_traffic_shift_sync_down.h"


/*
 * Changes: PATCH /upstreams/NAME and /health/UPSTREAM/servers/ID, once the
 * body is read.  A change is applied to the zone, saved to the state file
 * if there is one, then answered.
 */


static ngx_int_t ngx_http_traffic_shift_api_patch(ngx_http_request_t *r,
    ngx_http_traffic_shift_api_req_t *req);
static ngx_int_t ngx_http_traffic_shift_api_read_body(ngx_http_request_t *r,
    ngx_str_t *body);
static ngx_int_t ngx_http_traffic_shift_api_patch_split(ngx_http_request_t *r,
    ngx_http_traffic_shift_api_req_t *req, json_t *root,
    ngx_http_traffic_shift_api_err_t *err);
static ngx_int_t ngx_http_traffic_shift_api_patch_rollout(
    ngx_http_request_t *r, ngx_http_traffic_shift_api_req_t *req,
    json_t *root, ngx_http_traffic_shift_api_err_t *err);
static ngx_int_t ngx_http_traffic_shift_api_patch_server(
    ngx_http_request_t *r, ngx_http_traffic_shift_api_req_t *req,
    json_t *root, ngx_http_traffic_shift_api_err_t *err);
static ngx_int_t ngx_http_traffic_shift_api_changed(ngx_http_request_t *r,
    ngx_http_traffic_shift_api_req_t *req);
static void ngx_http_traffic_shift_api_saved(ngx_http_request_t *r,
    ngx_http_traffic_shift_state_save_t *save);
static ngx_int_t ngx_http_traffic_shift_api_answer(ngx_http_request_t *r,
    ngx_http_traffic_shift_api_req_t *req,
    ngx_http_traffic_shift_state_save_t *save);
static ngx_int_t ngx_http_traffic_shift_api_gone(
    ngx_http_traffic_shift_api_err_t *err,
    ngx_http_traffic_shift_api_path_t *path);
static ngx_int_t ngx_http_traffic_shift_api_if_match(ngx_http_request_t *r,
    ngx_uint_t *generation);
static ngx_int_t ngx_http_traffic_shift_api_split_if_match(
    ngx_http_request_t *r, ngx_http_traffic_shift_split_t *split,
    ngx_uint_t *generation, ngx_http_traffic_shift_api_err_t *err);
static void ngx_http_traffic_shift_api_log_change(ngx_http_request_t *r,
    ngx_http_traffic_shift_split_t *split,
    ngx_http_traffic_shift_change_t *change);
static void ngx_http_traffic_shift_api_synced(ngx_http_request_t *r,
    void *data, ngx_int_t rc, ngx_http_traffic_shift_api_err_t *err,
    json_t *fleet);
static ngx_int_t ngx_http_traffic_shift_api_started(ngx_http_request_t *r,
    ngx_http_traffic_shift_api_req_t *req);
static void ngx_http_traffic_shift_api_fleet_done(ngx_http_request_t *r,
    void *data, ngx_int_t rc, ngx_http_traffic_shift_api_err_t *err,
    json_t *fleet);


void
ngx_http_traffic_shift_api_body_handler(ngx_http_request_t *r)
{
    ngx_int_t                      rc;
    ngx_http_traffic_shift_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_traffic_shift_module);

    rc = ngx_http_traffic_shift_api_patch(r, ctx->api);

    if (rc == NGX_DONE) {
        /* answered, or answered once the state file is written */
        return;
    }

    ngx_http_finalize_request(r, rc);
}


static ngx_int_t
ngx_http_traffic_shift_api_patch(ngx_http_request_t *r,
    ngx_http_traffic_shift_api_req_t *req)
{
    json_t                            *root;
    ngx_int_t                          rc;
    ngx_str_t                          body;
    ngx_uint_t                         etag;
    ngx_http_traffic_shift_api_err_t   err;

    etag = ngx_http_traffic_shift_api_etag(r, &req->path);

    if (ngx_http_traffic_shift_api_too_large(r, &err)) {
        return ngx_http_traffic_shift_api_error(r, &err, etag, NULL);
    }

    rc = ngx_http_traffic_shift_api_read_body(r, &body);

    if (rc != NGX_OK) {
        return rc;
    }

    root = ngx_http_traffic_shift_api_parse(&body, &err);

    if (root == NULL) {
        return ngx_http_traffic_shift_api_error(r, &err, etag, NULL);
    }

    err.status = 0;

    if (req->path.what == NGX_HTTP_TS_API_UPSTREAM) {
        rc = ngx_http_traffic_shift_api_patch_split(r, req, root, &err);

    } else if (req->path.what == NGX_HTTP_TS_API_ROLLOUT) {
        rc = ngx_http_traffic_shift_api_patch_rollout(r, req, root, &err);

    } else {
        rc = ngx_http_traffic_shift_api_patch_server(r, req, root, &err);
    }

    /* the request may be finalized already: nothing here may use it */

    json_decref(root);

    if (rc == NGX_ERROR && err.status) {
        etag = ngx_http_traffic_shift_api_etag(r, &req->path);
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
    ngx_http_traffic_shift_api_req_t *req, json_t *root,
    ngx_http_traffic_shift_api_err_t *err)
{
    ngx_int_t                             rc;
    ngx_uint_t                            force, if_match;
    ngx_uint_t                            weights[NGX_HTTP_TS_MAX_POOLS];
    ngx_http_traffic_shift_pool_t        *pool;
    ngx_http_traffic_shift_split_t       *split;
    ngx_http_traffic_shift_main_conf_t   *mcf;

    split = req->path.split;

    if (json_object_get(root, "ramp")) {
        if (ngx_http_traffic_shift_api_split_if_match(r, split, &if_match, err)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        rc = ngx_http_traffic_shift_api_rollout_ramp(r, req, root, if_match,
                                                     err);
        if (rc != NGX_OK) {
            return rc;
        }

        return ngx_http_traffic_shift_api_started(r, req);
    }

    if (ngx_http_traffic_shift_api_parse_weights(split, root, weights, &force,
                                                 err)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_http_traffic_shift_api_split_if_match(r, split, &if_match, err)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    mcf = ngx_http_get_module_main_conf(r, ngx_http_traffic_shift_module);

    if (mcf->sync) {
        /* fleet mode: through etcd, answered once applied here */
        rc = ngx_http_traffic_shift_sync_write(r, split, weights, force,
                                     if_match, &req->change, err,
                                     ngx_http_traffic_shift_api_synced, req);
        if (rc != NGX_DECLINED) {
            return rc;
        }

        /* "local=on": this node only */
    }

    rc = ngx_http_traffic_shift_zone_set_weights(mcf, split, weights,
                                                 NGX_HTTP_TS_SRC_API,
                                                 if_match, force,
                                                 &req->change);

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
                                            req->change.old.generation,
                                            if_match);

    case NGX_AGAIN:
        return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_CONFLICT,
                                            "rollout_in_progress",
                                            "upstream \"%V\" has a rollout "
                                            "in progress; pause or abort it "
                                            "first, or send \"force\":true "
                                            "to abort it with this change",
                                            &split->name);

    case NGX_BUSY:
        pool = split->pools.elts;

        return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_CONFLICT,
                                            "pool_unavailable",
                                            "pool \"%V\" (upstream \"%V\") "
                                            "has no live server; send "
                                            "\"force\":true to change the "
                                            "weights anyway",
                                            &pool[req->change.dead_pool]
                                                .name,
                                            &pool[req->change.dead_pool]
                                                .upstream);

    default: /* NGX_ABORT */
        return ngx_http_traffic_shift_api_fail(err,
                                            NGX_HTTP_SERVICE_UNAVAILABLE,
                                            "reloading",
                                            "the configuration of upstream "
                                            "\"%V\" is being reloaded, retry",
                                            &split->name);
    }

    if (req->change.rollout_aborted) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "traffic_shift \"%V\": rollout aborted by weights "
                      "forced by client %V", &split->name,
                      &r->connection->addr_text);
    }

    ngx_http_traffic_shift_api_log_change(r, split, &req->change);

    return ngx_http_traffic_shift_api_changed(r, req);
}


static ngx_int_t
ngx_http_traffic_shift_api_patch_rollout(ngx_http_request_t *r,
    ngx_http_traffic_shift_api_req_t *req, json_t *root,
    ngx_http_traffic_shift_api_err_t *err)
{
    ngx_int_t   rc;
    ngx_uint_t  if_match;

    if (ngx_http_traffic_shift_api_split_if_match(r, req->path.split,
                                                  &if_match, err)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    rc = ngx_http_traffic_shift_api_rollout_change(r, req, root, if_match,
                                                   err);

    if (rc != NGX_OK) {
        return rc;
    }

    if (r->method != NGX_HTTP_PATCH) {
        /* a start: in fleet mode, answered once it is the fleet's */
        return ngx_http_traffic_shift_api_started(r, req);
    }

    return ngx_http_traffic_shift_api_changed(r, req);
}


/* a rollout or a ramp started: answered, in fleet mode once etcd has it */

static ngx_int_t
ngx_http_traffic_shift_api_started(ngx_http_request_t *r,
    ngx_http_traffic_shift_api_req_t *req)
{
    ngx_http_traffic_shift_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_traffic_shift_module);

    if (mcf->sync) {
        return ngx_http_traffic_shift_sync_claimed(r, req->path.split,
                                      ngx_http_traffic_shift_api_fleet_done,
                                      req);
    }

    return ngx_http_traffic_shift_api_changed(r, req);
}


/* DELETE /upstreams/NAME/rollout: abort, with no body */

ngx_int_t
ngx_http_traffic_shift_api_delete(ngx_http_request_t *r,
    ngx_http_traffic_shift_api_req_t *req)
{
    ngx_int_t                          rc;
    ngx_uint_t                         if_match, etag;
    ngx_http_traffic_shift_api_err_t   err;

    etag = ngx_http_traffic_shift_api_etag(r, &req->path);

    rc = ngx_http_traffic_shift_api_split_if_match(r, req->path.split,
                                                   &if_match, &err);

    if (rc == NGX_OK) {
        rc = ngx_http_traffic_shift_api_rollout_act(r, req,
                                                    NGX_HTTP_TS_RO_ABORT,
                                                    if_match, &err);
    }

    if (rc == NGX_ERROR) {
        return ngx_http_traffic_shift_api_error(r, &err, etag, NULL);
    }

    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_http_traffic_shift_api_changed(r, req);

    if (rc == NGX_DONE) {
        /* answered once the state file is written: finalized then */
        r->main->count++;
    }

    return rc;
}




static ngx_int_t
ngx_http_traffic_shift_api_patch_server(ngx_http_request_t *r,
    ngx_http_traffic_shift_api_req_t *req, json_t *root,
    ngx_http_traffic_shift_api_err_t *err)
{
    ngx_int_t                             rc;
    ngx_uint_t                            down, if_match;
    ngx_http_traffic_shift_server_t      *server;
    ngx_http_traffic_shift_main_conf_t   *mcf;

    if (ngx_http_traffic_shift_api_parse_down(root, &down, err) != NGX_OK) {
        return NGX_ERROR;
    }

    mcf = ngx_http_get_module_main_conf(r, ngx_http_traffic_shift_module);

    if (ngx_http_traffic_shift_api_if_match(r, &if_match) != NGX_OK) {
        return ngx_http_traffic_shift_api_fail(err,
                                            NGX_HTTP_PRECONDITION_FAILED,
                                            "precondition_failed",
                                            "If-Match does not match the "
                                            "version %ui", mcf->sh->version);
    }

    (void) ngx_http_traffic_shift_zone_discover(mcf, req->path.ups,
                                                r->connection->log);

    if (ngx_http_traffic_shift_api_server_again(&req->path) != NGX_OK) {
        return ngx_http_traffic_shift_api_gone(err, &req->path);
    }

    server = &req->path.ups->servers[req->path.id];

    if (mcf->sync) {
        /* fleet mode: a put in etcd, answered once applied here */
        rc = ngx_http_traffic_shift_sync_down_write(r, &req->path, down,
                                 if_match, &req->version, err,
                                 ngx_http_traffic_shift_api_fleet_done, req);
        if (rc != NGX_DECLINED) {
            return rc;
        }

        /* "local=on": this node only */
    }

    rc = ngx_http_traffic_shift_zone_admin_down(mcf, server,
                                                down, if_match,
                                                &req->version);

    if (rc == NGX_ABORT) {
        return ngx_http_traffic_shift_api_fail(err,
                                            NGX_HTTP_SERVICE_UNAVAILABLE,
                                            "reloading",
                                            "the configuration is being "
                                            "reloaded, retry");
    }

    if (rc != NGX_OK) {
        return ngx_http_traffic_shift_api_fail(err,
                                            NGX_HTTP_PRECONDITION_FAILED,
                                            "precondition_failed",
                                            "the version is %ui, If-Match "
                                            "expected %ui", req->version,
                                            if_match);
    }

    ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                  "traffic_shift: server \"%V\" of upstream \"%V\" %s by "
                  "client %V, version %ui", &server->name,
                  &req->path.ups->uscf->host,
                  down ? "set admin-down"
                                     : "back from admin-down",
                  &r->connection->addr_text, req->version);

    return ngx_http_traffic_shift_api_changed(r, req);
}


/* the change is live: save it if there is a state file, then answer */

static ngx_int_t
ngx_http_traffic_shift_api_changed(ngx_http_request_t *r,
    ngx_http_traffic_shift_api_req_t *req)
{
    ngx_int_t                            rc;
    ngx_http_traffic_shift_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_traffic_shift_module);

    if (mcf->state_file.len == 0) {
        return ngx_http_traffic_shift_api_answer(r, req, NULL);
    }

    rc = ngx_http_traffic_shift_state_save(r, ngx_http_traffic_shift_api_saved,
                                           req);

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
    ngx_http_traffic_shift_api_req_t *req,
    ngx_http_traffic_shift_state_save_t *save)
{
    u_char                            *p, text[NGX_HTTP_TS_STATE_ERR_LEN + 64];
    json_t                            *json;
    ngx_uint_t                         etag;
    ngx_http_traffic_shift_api_err_t   err;

    if (req->path.what == NGX_HTTP_TS_API_UPSTREAM) {
        json = ngx_http_traffic_shift_api_split_json(req->path.split,
                                                     &req->change.new);
        etag = req->change.new.generation;

        if (json && req->ramp
            && json_object_set_new(json, "rollout",
                     ngx_http_traffic_shift_api_rollout_json(r,
                                                     req->path.split, &err)))
        {
            goto failed;
        }

    } else if (req->path.what == NGX_HTTP_TS_API_ROLLOUT) {
        json = ngx_http_traffic_shift_api_rollout_json(r, req->path.split,
                                                       &err);
        etag = req->change.new.generation;

    } else {
        if (ngx_http_traffic_shift_api_server_again(&req->path) != NGX_OK) {
            (void) ngx_http_traffic_shift_api_gone(&err, &req->path);
            return ngx_http_traffic_shift_api_error(r, &err, req->version,
                                                    NULL);
        }

        json = ngx_http_traffic_shift_api_server_json(req->path.ups,
                                                      req->path.id);
        etag = req->version;
    }

    if (json == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (req->fleet) {
        if (json_object_set_new(json, "fleet", req->fleet)) {
            req->fleet = NULL;
            goto failed;
        }

        req->fleet = NULL;
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
                         ngx_http_traffic_shift_json_str(text, p - text)))
            {
                goto failed;
            }
        }
    }

    return ngx_http_traffic_shift_api_send_json(r,
                                     req->status ? req->status : NGX_HTTP_OK,
                                     json, etag);

failed:

    json_decref(json);

    return NGX_HTTP_INTERNAL_SERVER_ERROR;
}


/* a resolved server whose address went away since the path named it */

static ngx_int_t
ngx_http_traffic_shift_api_gone(ngx_http_traffic_shift_api_err_t *err,
    ngx_http_traffic_shift_api_path_t *path)
{
    return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_NOT_FOUND,
                                           "unknown_server",
                                           "the server is no longer "
                                           "resolved in upstream \"%V\"",
                                           &path->ups->uscf->host);
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


/* If-Match on a traffic_shift upstream or its rollout */

static ngx_int_t
ngx_http_traffic_shift_api_split_if_match(ngx_http_request_t *r,
    ngx_http_traffic_shift_split_t *split, ngx_uint_t *generation,
    ngx_http_traffic_shift_api_err_t *err)
{
    if (ngx_http_traffic_shift_api_if_match(r, generation) == NGX_OK) {
        return NGX_OK;
    }

    return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_PRECONDITION_FAILED,
                                           "precondition_failed",
                                           "If-Match does not match the "
                                           "generation %ui of upstream "
                                           "\"%V\"", split->sh->generation,
                                           &split->name);
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


/* fleet mode: etcd took the change and this node applied it, or not */

static void
ngx_http_traffic_shift_api_synced(ngx_http_request_t *r, void *data,
    ngx_int_t rc, ngx_http_traffic_shift_api_err_t *err, json_t *fleet)
{
    ngx_http_traffic_shift_api_req_t  *req = data;

    req->fleet = fleet;

    if (rc != NGX_OK) {
        ngx_http_finalize_request(r, ngx_http_traffic_shift_api_error(r, err,
                                        req->path.split->sh->generation,
                                        NULL));
        return;
    }

    ngx_http_traffic_shift_api_log_change(r, req->path.split, &req->change);

    rc = ngx_http_traffic_shift_api_changed(r, req);

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


/*
 * fleet mode: etcd took the change (an admin mark, a rollout's claim) and
 * this node applied it, or not
 */

static void
ngx_http_traffic_shift_api_fleet_done(ngx_http_request_t *r, void *data,
    ngx_int_t rc, ngx_http_traffic_shift_api_err_t *err, json_t *fleet)
{
    ngx_http_traffic_shift_api_req_t  *req = data;

    if (rc != NGX_OK) {
        ngx_http_finalize_request(r, ngx_http_traffic_shift_api_error(r, err,
                                 ngx_http_traffic_shift_api_etag(r,
                                                                &req->path),
                                 NULL));
        return;
    }

    rc = ngx_http_traffic_shift_api_changed(r, req);

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}
