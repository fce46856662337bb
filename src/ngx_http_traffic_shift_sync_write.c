
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#include "ngx_http_traffic_shift_sync.h"


/*
 * A write through the API in fleet mode is a transaction: put the new
 * weights if the key's mod revision is the one the client read
 * (If-Match).  Once etcd took it, the worker applies it with the new
 * revision, then answers; of two writers with the same If-Match, etcd
 * lets one through.
 */


typedef struct {
    ngx_http_traffic_shift_etcd_t         etcd;
    ngx_http_request_t                   *r;
    ngx_http_traffic_shift_sync_conf_t   *conf;
    ngx_http_traffic_shift_split_t       *split;
    ngx_uint_t                            weights[NGX_HTTP_TS_MAX_POOLS];
    ngx_uint_t                            expected;
    ngx_uint_t                            tries;
    ngx_http_traffic_shift_change_t      *change;
    ngx_http_traffic_shift_sync_done_pt   done;
    void                                 *data;
} ngx_http_traffic_shift_sync_write_t;


static ngx_int_t ngx_http_traffic_shift_sync_send(
    ngx_http_traffic_shift_sync_write_t *sw);
static void ngx_http_traffic_shift_sync_written(
    ngx_http_traffic_shift_etcd_t *e, json_t *json);
static void ngx_http_traffic_shift_sync_cleanup(void *data);


/*
 * A weight change through the API in fleet mode: checked here as the zone
 * would (a pool given weight needs a live server unless forced), then sent
 * to etcd as a transaction.  NGX_DONE: "done" is called later, once.
 */

ngx_int_t
ngx_http_traffic_shift_sync_write(ngx_http_request_t *r,
    ngx_http_traffic_shift_split_t *split, ngx_uint_t *weights,
    ngx_uint_t force, ngx_uint_t if_match,
    ngx_http_traffic_shift_change_t *change,
    ngx_http_traffic_shift_api_err_t *err,
    ngx_http_traffic_shift_sync_done_pt done, void *data)
{
    ngx_uint_t                            i;
    ngx_pool_cleanup_t                   *cln;
    ngx_http_traffic_shift_pool_t        *pool;
    ngx_http_traffic_shift_weights_t      cur;
    ngx_http_traffic_shift_main_conf_t   *mcf;
    ngx_http_traffic_shift_sync_write_t  *sw;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_traffic_shift_module);
    pool = split->pools.elts;

    if (ngx_http_traffic_shift_zone_read(split, &cur) != NGX_OK
        || mcf->sh->retired)
    {
        return ngx_http_traffic_shift_api_fail(err,
                                            NGX_HTTP_SERVICE_UNAVAILABLE,
                                            "reloading",
                                            "the configuration of upstream "
                                            "\"%V\" is being reloaded, retry",
                                            &split->name);
    }

    for (i = 0; !force && i < split->pools.nelts; i++) {
        if (weights[i] && pool[i].ups
            && ngx_http_traffic_shift_zone_live(pool[i].ups) == 0)
        {
            return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_CONFLICT,
                                            "pool_unavailable",
                                            "pool \"%V\" (upstream \"%V\") "
                                            "has no live server; send "
                                            "\"force\":true to change the "
                                            "weights anyway",
                                            &pool[i].name, &pool[i].upstream);
        }
    }

    sw = ngx_pcalloc(r->pool, sizeof(ngx_http_traffic_shift_sync_write_t));
    if (sw == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_traffic_shift_sync_cleanup;
    cln->data = sw;

    sw->r = r;
    sw->conf = mcf->sync;
    sw->split = split;
    sw->change = change;
    sw->done = done;
    sw->data = data;

    for (i = 0; i < split->pools.nelts; i++) {
        sw->weights[i] = weights[i];
    }

    /*
     * If-Match names the key's mod revision; a node that never saw the
     * key in etcd has its own generation, which means "no key yet"
     */

    sw->expected = if_match;

    if (if_match && split->sh->sync_revision == 0
        && if_match == cur.generation)
    {
        sw->expected = 0;
    }

    change->old = cur;

    sw->etcd.log = r->connection->log;
    sw->etcd.timeout = sw->conf->timeout;
    sw->etcd.data = sw;
    sw->etcd.handler = ngx_http_traffic_shift_sync_written;

    if (ngx_http_traffic_shift_sync_send(sw) != NGX_OK) {
        return ngx_http_traffic_shift_api_fail(err,
                                            NGX_HTTP_SERVICE_UNAVAILABLE,
                                            "sync_unavailable",
                                            "etcd cannot be reached, the "
                                            "change was not made; the "
                                            "fleet keeps its last state");
    }

    return NGX_DONE;
}


/* the transaction, to the next endpoint that takes a connection */

static ngx_int_t
ngx_http_traffic_shift_sync_send(ngx_http_traffic_shift_sync_write_t *sw)
{
    json_t                                  *json, *value, *k, *put;
    ngx_int_t                                rc;
    ngx_str_t                                body, key, v;
    ngx_pool_t                              *pool;
    ngx_http_traffic_shift_sync_conf_t      *scf;
    ngx_http_traffic_shift_etcd_endpoint_t  *ep;

    scf = sw->conf;
    ep = scf->endpoints.elts;
    pool = sw->r->pool;

    if (ngx_http_traffic_shift_etcd_key(pool, &scf->prefix, "upstreams/",
                                        &sw->split->name, &key)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    value = json_pack("{s:o}", "weights",
                      ngx_http_traffic_shift_json_weights(sw->split,
                                                   sw->weights,
                                                   sw->split->pools.nelts));

    if (ngx_http_traffic_shift_etcd_json(pool, value, &v) != NGX_OK) {
        return NGX_ERROR;
    }

    k = ngx_http_traffic_shift_etcd_b64(pool, key.data, key.len);

    put = json_pack("[{s:{s:O,s:o}}]", "request_put", "key", k,
                    "value", ngx_http_traffic_shift_etcd_b64(pool, v.data,
                                                             v.len));

    json = json_pack("{s:o,s:[{s:{s:O}}]}", "success", put,
                     "failure", "request_range", "key", k);

    if (json && sw->r->headers_in.if_match) {
        if (json_object_set_new(json, "compare",
                json_pack("[{s:s,s:O,s:s,s:I}]", "target", "MOD",
                          "key", k, "result", "EQUAL",
                          "mod_revision", (json_int_t) sw->expected)))
        {
            json_decref(json);
            json = NULL;
        }
    }

    json_decref(k);

    if (ngx_http_traffic_shift_etcd_json(pool, json, &body) != NGX_OK) {
        return NGX_ERROR;
    }

    for ( /* void */ ; sw->tries < scf->endpoints.nelts; sw->tries++) {
        sw->etcd.endpoint = &ep[sw->tries];

        rc = ngx_http_traffic_shift_etcd_start(&sw->etcd, "/v3/kv/txn",
                                               body.data, body.len);

        if (rc == NGX_OK) {
            sw->tries++;
            return NGX_OK;
        }

        ngx_log_error(NGX_LOG_WARN, sw->r->connection->log, 0,
                      "traffic_shift_sync: etcd \"%V\": cannot connect",
                      &ep[sw->tries].name);
    }

    return NGX_ERROR;
}


static void
ngx_http_traffic_shift_sync_written(ngx_http_traffic_shift_etcd_t *e,
    json_t *json)
{
    json_t                                *rsp, *kvs;
    uint64_t                               revision, current;
    ngx_int_t                              rc;
    ngx_http_traffic_shift_main_conf_t    *mcf;
    ngx_http_traffic_shift_api_err_t       err;
    ngx_http_traffic_shift_sync_write_t   *sw;

    sw = e->data;
    err.status = 0;

    if (json == NULL && !e->sent && sw->tries < sw->conf->endpoints.nelts) {
        /* not sent: the next endpoint may take it */
        ngx_log_error(NGX_LOG_WARN, sw->r->connection->log, 0,
                      "traffic_shift_sync: etcd \"%V\": %s",
                      &e->endpoint->name, e->error);

        if (ngx_http_traffic_shift_sync_send(sw) == NGX_OK) {
            return;
        }
    }

    if (json == NULL || e->status != NGX_HTTP_OK
        || ngx_http_traffic_shift_etcd_int(json_object_get(json, "header"),
                                           "revision", &revision)
           != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ERR, sw->r->connection->log, 0,
                      "traffic_shift_sync: etcd \"%V\": %s, the change to "
                      "\"%V\" was not made", &e->endpoint->name,
                      json ? "transaction refused" : e->error,
                      &sw->split->name);

        (void) ngx_http_traffic_shift_api_fail(&err,
                                            NGX_HTTP_SERVICE_UNAVAILABLE,
                                            "sync_unavailable",
                                            "etcd cannot be reached, the "
                                            "change was not made; the "
                                            "fleet keeps its last state");
        rc = NGX_ERROR;
        goto done;
    }

    if (!json_is_true(json_object_get(json, "succeeded"))) {
        rsp = json_array_get(json_object_get(json, "responses"), 0);
        rsp = json_object_get(rsp, "response_range");
        kvs = json_array_get(json_object_get(rsp, "kvs"), 0);

        (void) ngx_http_traffic_shift_etcd_int(kvs, "mod_revision", &current);

        (void) ngx_http_traffic_shift_api_fail(&err,
                                            NGX_HTTP_PRECONDITION_FAILED,
                                            "precondition_failed",
                                            "upstream \"%V\" is at "
                                            "generation %uL in the fleet, "
                                            "If-Match expected %ui",
                                            &sw->split->name,
                                            current ? current
                                                : sw->change->old.generation,
                                            sw->expected);
        rc = NGX_ERROR;
        goto done;
    }

    /* etcd took it: applied here before the answer (or by the watch) */

    mcf = ngx_http_get_module_main_conf(sw->r, ngx_http_traffic_shift_module);

    rc = ngx_http_traffic_shift_zone_sync_apply(mcf, sw->split, sw->weights,
                                                revision, sw->change);

    if (rc == NGX_ABORT) {
        (void) ngx_http_traffic_shift_api_fail(&err,
                                            NGX_HTTP_SERVICE_UNAVAILABLE,
                                            "reloading",
                                            "the configuration of upstream "
                                            "\"%V\" is being reloaded; the "
                                            "change is in etcd at "
                                            "generation %uL",
                                            &sw->split->name, revision);
        rc = NGX_ERROR;
        goto done;
    }

    sw->change->new.npools = sw->split->pools.nelts;
    sw->change->new.source = NGX_HTTP_TS_SRC_API;
    sw->change->new.generation = revision;
    sw->change->new.updated = ngx_time();
    ngx_memcpy(sw->change->new.weights, sw->weights, sizeof(sw->weights));

    rc = NGX_OK;

done:

    sw->done(sw->r, sw->data, rc, &err);
}


static void
ngx_http_traffic_shift_sync_cleanup(void *data)
{
    ngx_http_traffic_shift_sync_write_t  *sw = data;

    ngx_http_traffic_shift_etcd_close(&sw->etcd);
}
