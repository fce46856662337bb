
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#include "ngx_http_traffic_shift_sync.h"


/*
 * A write through the API in fleet mode is a transaction: put the new
 * weights if the key's mod revision is the one the client read
 * (If-Match).  Once etcd took it, the worker applies it with the new
 * revision, then answers; of two writers with the same If-Match, etcd
 * lets one through.  With "?wait=fleet", the answer waits until every
 * node in the fleet (every node key) reports the generation, reading the
 * node keys every NGX_HTTP_TS_WAIT_POLL, or until the timeout, and names
 * the nodes that lag.
 */


#define NGX_HTTP_TS_WAIT_POLL  50


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

    /* ?wait=fleet: the generation, until when, the poll's timer */
    ngx_uint_t                            revision;
    ngx_msec_t                            deadline;
    ngx_event_t                           poll;
    unsigned                              wait:1;
} ngx_http_traffic_shift_sync_write_t;


/* a rollout started here, until etcd took this node's claim */

typedef struct {
    ngx_event_t                           poll;
    ngx_http_request_t                   *r;
    ngx_http_traffic_shift_split_t       *split;
    ngx_uint_t                            id;
    ngx_msec_t                            deadline;
    ngx_http_traffic_shift_sync_done_pt   done;
    void                                 *data;
    ngx_http_traffic_shift_sh_rollout_t   ro;
} ngx_http_traffic_shift_sync_claim_t;


static ngx_int_t ngx_http_traffic_shift_sync_send(
    ngx_http_traffic_shift_sync_write_t *sw);
static void ngx_http_traffic_shift_sync_written(
    ngx_http_traffic_shift_etcd_t *e, json_t *json);
static void ngx_http_traffic_shift_sync_poll(ngx_event_t *ev);
static void ngx_http_traffic_shift_sync_polled(
    ngx_http_traffic_shift_etcd_t *e, json_t *json);
static void ngx_http_traffic_shift_sync_waited(
    ngx_http_traffic_shift_sync_write_t *sw, json_t *nodes);
static void ngx_http_traffic_shift_sync_cleanup(void *data);
static void ngx_http_traffic_shift_sync_claim_poll(ngx_event_t *ev);
static void ngx_http_traffic_shift_sync_claim_cleanup(void *data);


/*
 * A weight change through the API in fleet mode: checked here as the zone
 * would (a pool given weight needs a live server unless forced), then sent
 * to etcd as a transaction.  NGX_DONE: "done" is called later, once.
 * NGX_DECLINED: "local=on", the caller changes this node only.
 */

ngx_int_t
ngx_http_traffic_shift_sync_write(ngx_http_request_t *r,
    ngx_http_traffic_shift_split_t *split, ngx_uint_t *weights,
    ngx_uint_t force, ngx_uint_t if_match,
    ngx_http_traffic_shift_change_t *change,
    ngx_http_traffic_shift_api_err_t *err,
    ngx_http_traffic_shift_sync_done_pt done, void *data)
{
    ngx_str_t                             arg;
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

    if (!force
        && (split->sh->fleet_driver_len
            || split->sh->rollout.state == NGX_HTTP_TS_RO_PROGRESSING
            || split->sh->rollout.state == NGX_HTTP_TS_RO_PAUSED))
    {
        /* as without a fleet: a rollout here, or on another node */
        return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_CONFLICT,
                                            "rollout_in_progress",
                                            "upstream \"%V\" has a rollout "
                                            "in progress in the fleet; pause "
                                            "or abort it first, or send "
                                            "\"force\":true to abort it with "
                                            "this change", &split->name);
    }

    ngx_str_null(&arg);

    if (ngx_http_arg(r, (u_char *) "local", 5, &arg) == NGX_OK) {
        if (arg.len != 2 || ngx_strncmp(arg.data, "on", 2) != 0
            || ngx_http_arg(r, (u_char *) "wait", 4, &arg) == NGX_OK)
        {
            return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_BAD_REQUEST,
                                            "invalid_value",
                                            "invalid \"local\" argument, "
                                            "expected \"local=on\" "
                                            "without \"wait\"");
        }

        /* the local override: this node only, until the fleet's next */

        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "traffic_shift \"%V\": weights changed on this node "
                      "only (local=on), not in the fleet", &split->name);

        return NGX_DECLINED;
    }

    ngx_str_null(&arg);

    if (ngx_http_arg(r, (u_char *) "wait", 4, &arg) == NGX_OK
        && (arg.len != 5 || ngx_strncmp(arg.data, "fleet", 5) != 0))
    {
        return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_BAD_REQUEST,
                                            "invalid_value",
                                            "invalid \"wait\" argument, "
                                            "expected \"wait=fleet\"");
    }

    sw = ngx_pcalloc(r->pool, sizeof(ngx_http_traffic_shift_sync_write_t));
    if (sw == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    sw->wait = (arg.len == 5);

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

    if (json == NULL && e->sent && e->status == 0 && e->error
        && ngx_strcmp(e->error, "timed out") == 0)
    {
        /* sent, not answered in time: etcd may take it yet */
        ngx_log_error(NGX_LOG_ERR, sw->r->connection->log, 0,
                      "traffic_shift_sync: etcd \"%V\": %s after the "
                      "change to \"%V\" was sent, it may have been made",
                      &e->endpoint->name, e->error, &sw->split->name);

        (void) ngx_http_traffic_shift_api_fail(&err,
                                            NGX_HTTP_SERVICE_UNAVAILABLE,
                                            "sync_timeout",
                                            "etcd did not answer the change "
                                            "in time; it may have been made: "
                                            "read the generation again "
                                            "before retrying");
        rc = NGX_ERROR;
        goto done;
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
                                                revision, NGX_HTTP_TS_SRC_API,
                                                sw->change);

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

    if (sw->wait) {
        sw->revision = revision;
        sw->deadline = ngx_current_msec + sw->conf->timeout;

        sw->poll.handler = ngx_http_traffic_shift_sync_poll;
        sw->poll.data = sw;
        sw->poll.log = sw->r->connection->log;

        ngx_http_traffic_shift_sync_poll(&sw->poll);
        return;
    }

    rc = NGX_OK;

done:

    sw->done(sw->r, sw->data, rc, &err, NULL);
}


/* ?wait=fleet: the node keys, read again until every node has it */

static void
ngx_http_traffic_shift_sync_poll(ngx_event_t *ev)
{
    ngx_http_traffic_shift_sync_write_t  *sw;

    sw = ev->data;

    sw->tries = 0;
    sw->etcd.handler = ngx_http_traffic_shift_sync_polled;

    while (sw->tries < sw->conf->endpoints.nelts) {
        sw->etcd.endpoint = (ngx_http_traffic_shift_etcd_endpoint_t *)
                                sw->conf->endpoints.elts + sw->tries++;

        if (ngx_http_traffic_shift_sync_nodes(&sw->etcd, sw->conf)
            == NGX_OK)
        {
            return;
        }
    }

    /* the change is made: the answer says who is known to have it */
    ngx_http_traffic_shift_sync_waited(sw, NULL);
}


static void
ngx_http_traffic_shift_sync_polled(ngx_http_traffic_shift_etcd_t *e,
    json_t *json)
{
    json_t                               *nodes, *node, *gen;
    size_t                                i;
    ngx_uint_t                            lagging;
    ngx_http_traffic_shift_sync_write_t  *sw;

    sw = e->data;

    nodes = (json && e->status == NGX_HTTP_OK)
            ? ngx_http_traffic_shift_sync_nodes_json(e, json) : NULL;

    lagging = 0;

    json_array_foreach(nodes, i, node) {
        gen = json_object_get(json_object_getn(json_object_get(node,
                                                          "upstreams"),
                                          (char *) sw->split->name.data,
                                          sw->split->name.len),
                              "generation");

        /* a node without this upstream does not take part */

        if (gen && json_is_integer(gen)
            && (ngx_uint_t) json_integer_value(gen) < sw->revision)
        {
            lagging++;
        }
    }

    if (nodes && lagging
        && (ngx_msec_int_t) (sw->deadline - ngx_current_msec) > 0)
    {
        json_decref(nodes);
        ngx_add_timer(&sw->poll, NGX_HTTP_TS_WAIT_POLL);
        return;
    }

    ngx_http_traffic_shift_sync_waited(sw, nodes);
}


/*
 * "fleet": {"generation":G,"complete":true|false,
 *           "applied":["a","b"],"lagging":["c"]}
 */

static void
ngx_http_traffic_shift_sync_waited(ngx_http_traffic_shift_sync_write_t *sw,
    json_t *nodes)
{
    json_t                            *fleet, *applied, *lagging, *node, *gen;
    size_t                             i;
    ngx_http_traffic_shift_api_err_t   err;

    applied = json_array();
    lagging = json_array();

    json_array_foreach(nodes, i, node) {
        gen = json_object_get(json_object_getn(json_object_get(node,
                                                          "upstreams"),
                                          (char *) sw->split->name.data,
                                          sw->split->name.len),
                              "generation");

        if (gen == NULL || !json_is_integer(gen)) {
            continue;
        }

        (void) json_array_append(
                   (ngx_uint_t) json_integer_value(gen) < sw->revision
                   ? lagging : applied,
                   json_object_get(node, "node"));
    }

    fleet = json_pack("{s:I,s:b,s:o,s:o}",
                      "generation", (json_int_t) sw->revision,
                      "complete", nodes && json_array_size(lagging) == 0,
                      "applied", applied, "lagging", lagging);

    json_decref(nodes);

    err.status = 0;

    sw->done(sw->r, sw->data, fleet ? NGX_OK : NGX_ERROR, &err, fleet);
}


static void
ngx_http_traffic_shift_sync_cleanup(void *data)
{
    ngx_http_traffic_shift_sync_write_t  *sw = data;

    ngx_http_traffic_shift_etcd_close(&sw->etcd);

    if (sw->poll.timer_set) {
        ngx_del_timer(&sw->poll);
    }
}


/*
 * A rollout (or a ramp) just started here in fleet mode: the answer waits
 * until the worker holding the watch made it the fleet's (etcd took its
 * claim: NGX_OK), or it ended because another node drives one or the
 * weights changed in the fleet (NGX_ERROR, 409), at most the sync
 * timeout (NGX_OK: it runs here, etcd is slow).  NGX_DONE: "done" is
 * called later, once.
 */

ngx_int_t
ngx_http_traffic_shift_sync_claimed(ngx_http_request_t *r,
    ngx_http_traffic_shift_split_t *split,
    ngx_http_traffic_shift_sync_done_pt done, void *data)
{
    ngx_pool_cleanup_t                   *cln;
    ngx_http_traffic_shift_main_conf_t   *mcf;
    ngx_http_traffic_shift_sync_claim_t  *sc;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_traffic_shift_module);

    sc = ngx_pcalloc(r->pool, sizeof(ngx_http_traffic_shift_sync_claim_t));
    if (sc == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_traffic_shift_zone_rollout_copy(mcf, split, &sc->ro, NULL)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_traffic_shift_sync_claim_cleanup;
    cln->data = sc;

    sc->r = r;
    sc->split = split;
    sc->id = sc->ro.id;
    sc->done = done;
    sc->data = data;
    sc->deadline = ngx_current_msec
                   + ((ngx_http_traffic_shift_sync_conf_t *) mcf->sync)
                     ->timeout;

    sc->poll.handler = ngx_http_traffic_shift_sync_claim_poll;
    sc->poll.data = sc;
    sc->poll.log = r->connection->log;

    ngx_add_timer(&sc->poll, NGX_HTTP_TS_WAIT_POLL);

    return NGX_DONE;
}


static void
ngx_http_traffic_shift_sync_claim_poll(ngx_event_t *ev)
{
    ngx_uint_t                            claim[5];
    ngx_http_traffic_shift_api_err_t      err;
    ngx_http_traffic_shift_main_conf_t   *mcf;
    ngx_http_traffic_shift_sync_claim_t  *sc;

    sc = ev->data;
    mcf = ngx_http_get_module_main_conf(sc->r, ngx_http_traffic_shift_module);

    err.status = 0;

    ngx_http_traffic_shift_zone_sync_claim(mcf, sc->split, claim, 1);

    if (claim[0] && claim[1] == sc->id) {
        sc->done(sc->r, sc->data, NGX_OK, &err, NULL);
        return;
    }

    if (ngx_http_traffic_shift_zone_rollout_copy(mcf, sc->split, &sc->ro,
                                                 NULL)
        != NGX_OK
        || sc->ro.id != sc->id
        || (sc->ro.state != NGX_HTTP_TS_RO_PROGRESSING
            && sc->ro.state != NGX_HTTP_TS_RO_PAUSED))
    {
        (void) ngx_http_traffic_shift_api_fail(&err, NGX_HTTP_CONFLICT,
                                            "rollout_in_progress",
                                            "the rollout of upstream \"%V\" "
                                            "started here has ended: %s",
                                            &sc->split->name,
                                            sc->ro.id == sc->id
                                            ? (char *) sc->ro.reason
                                            : "another one replaced it");
        sc->done(sc->r, sc->data, NGX_ERROR, &err, NULL);
        return;
    }

    if ((ngx_msec_int_t) (sc->deadline - ngx_current_msec) <= 0) {
        ngx_log_error(NGX_LOG_WARN, ev->log, 0,
                      "traffic_shift \"%V\": etcd did not take the rollout's "
                      "claim in time, it runs here until it does",
                      &sc->split->name);
        sc->done(sc->r, sc->data, NGX_OK, &err, NULL);
        return;
    }

    ngx_add_timer(&sc->poll, NGX_HTTP_TS_WAIT_POLL);
}


static void
ngx_http_traffic_shift_sync_claim_cleanup(void *data)
{
    ngx_http_traffic_shift_sync_claim_t  *sc = data;

    if (sc->poll.timer_set) {
        ngx_del_timer(&sc->poll);
    }
}
