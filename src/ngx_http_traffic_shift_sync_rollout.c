
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#include "ngx_http_traffic_shift_sync.h"


/*
 * Rollouts in fleet mode.  A rollout runs on the node that received it
 * (its driver, ngx_http_traffic_shift_rollout.c, unchanged); this node's
 * worker holding the watch makes it the fleet's:
 *
 * - claim: a transaction creates PREFIX/rollouts/NAME under the node's
 *   lease, if no node has one and the upstream's key is still at the
 *   revision applied here, and puts the rollout's first weights;
 * - push: every change of the rollout (a step, a pause, its end) puts the
 *   weights and the record again, if the key is still the one created;
 *   the generation etcd gives is applied here;
 * - release: after the end was pushed, the key is deleted;
 * - collect: twice a second, the other nodes' counters (in their node
 *   keys) are read and their increase added to the rollout's fleet
 *   counters, which the analysis adds to this node's; the canary pool's
 *   go to the fast abort too.
 *
 * Other nodes see the key in the watch: a rollout driven elsewhere refuses
 * a local one, and makes them publish their counters twice a second.  A key
 * deleted while its rollout progressed means the driver left (its lease
 * expired): the nodes put the weights from before the rollout back, once
 * (a transaction on the revision they know; the first one wins).  A
 * driver that lost etcd for the lease's time ends its rollout itself.
 */



#define NGX_HTTP_TS_SR_SILENCE   5000

/* claim[]: the key's create revision, the id, step, state, generation */
#define NGX_HTTP_TS_SR_KEY       0
#define NGX_HTTP_TS_SR_ID        1
#define NGX_HTTP_TS_SR_STEP      2
#define NGX_HTTP_TS_SR_STATE     3
#define NGX_HTTP_TS_SR_GEN       4




static ngx_int_t ngx_http_traffic_shift_sync_rollout_index(
    ngx_http_traffic_shift_sync_rollouts_t *sr, ngx_str_t *name,
    ngx_http_traffic_shift_split_t **split);
static ngx_int_t ngx_http_traffic_shift_sync_rollout_step(
    ngx_http_traffic_shift_sync_rollouts_t *sr, ngx_uint_t i);
static ngx_int_t ngx_http_traffic_shift_sync_rollout_txn(
    ngx_http_traffic_shift_sync_rollouts_t *sr, ngx_uint_t what,
    json_t *compare, json_t *success, json_t *failure);
static void ngx_http_traffic_shift_sync_rollout_yield(
    ngx_http_traffic_shift_sync_rollouts_t *sr,
    ngx_http_traffic_shift_split_t *split, json_t *json);
static json_t *ngx_http_traffic_shift_sync_rollout_cmp(ngx_pool_t *pool,
    ngx_str_t *key, const char *target, uint64_t value);
static json_t *ngx_http_traffic_shift_sync_rollout_put(ngx_pool_t *pool,
    ngx_str_t *key, json_t *value, u_char *lease);
static json_t *ngx_http_traffic_shift_sync_rollout_record(
    ngx_http_traffic_shift_sync_rollouts_t *sr,
    ngx_http_traffic_shift_split_t *split,
    ngx_http_traffic_shift_sh_rollout_t *ro);
static void ngx_http_traffic_shift_sync_rollout_done(
    ngx_http_traffic_shift_etcd_t *e, json_t *json);
static void ngx_http_traffic_shift_sync_rollout_lost(
    ngx_http_traffic_shift_sync_rollouts_t *sr,
    ngx_http_traffic_shift_split_t *split, const char *why);


ngx_int_t
ngx_http_traffic_shift_sync_rollouts_init(
    ngx_http_traffic_shift_sync_rollouts_t *sr,
    ngx_http_traffic_shift_main_conf_t *mcf, ngx_pool_t *pool, ngx_log_t *log)
{
    ngx_uint_t  n;

    n = ngx_max(mcf->splits.nelts, 1);

    sr->mcf = mcf;
    sr->pool = pool;
    sr->etcd.log = log;
    sr->etcd.timeout = ((ngx_http_traffic_shift_sync_conf_t *) mcf->sync)
                       ->timeout;
    sr->etcd.data = sr;

    sr->rollback = ngx_pcalloc(pool, n * sizeof(uint64_t));
    sr->orphan = ngx_pcalloc(pool, n * sizeof(uint64_t));
    sr->renew = ngx_pcalloc(pool, n);
    sr->collecting = ngx_pcalloc(pool, n);
    sr->before = ngx_pcalloc(pool, n * NGX_HTTP_TS_MAX_POOLS
                                   * sizeof(ngx_uint_t));

    if (sr->rollback == NULL || sr->orphan == NULL || sr->renew == NULL
        || sr->collecting == NULL || sr->before == NULL)
    {
        return NGX_ERROR;
    }

    return ngx_http_traffic_shift_sync_counts_init(sr, pool);
}


void
ngx_http_traffic_shift_sync_rollouts_stop(
    ngx_http_traffic_shift_sync_rollouts_t *sr)
{
    ngx_http_traffic_shift_etcd_close(&sr->etcd);
    sr->what = NGX_HTTP_TS_SR_IDLE;
    sr->lease[0] = '\0';
    sr->seen.nelts = 0;
    ngx_memzero(sr->collecting, ngx_max(sr->mcf->splits.nelts, 1));
}


/*
 * PREFIX/rollouts/NAME from the watch: "value" NULL when deleted, with
 * the value before it in "prev"; "create" is the key's create revision.
 */

void
ngx_http_traffic_shift_sync_rollout_kv(
    ngx_http_traffic_shift_sync_rollouts_t *sr, ngx_str_t *name,
    ngx_str_t *value, ngx_str_t *prev, uint64_t create)
{
    json_t                              *root, *node, *state, *before;
    ngx_int_t                            k, i;
    ngx_str_t                            n, *doc;
    ngx_uint_t                           force, active, claim[5];
    ngx_uint_t                           weights[NGX_HTTP_TS_MAX_POOLS];
    ngx_http_traffic_shift_split_t      *split;
    ngx_http_traffic_shift_api_err_t     err;
    ngx_http_traffic_shift_weights_t     w;
    ngx_http_traffic_shift_sync_conf_t  *scf;

    scf = sr->mcf->sync;

    i = ngx_http_traffic_shift_sync_rollout_index(sr, name, &split);
    if (i == NGX_ERROR) {
        return;
    }

    doc = value ? value : prev;

    if (doc == NULL) {
        /* deleted, and etcd did not say what it was */
        ngx_http_traffic_shift_zone_sync_driver(sr->mcf, split, NULL);
        return;
    }

    root = ngx_http_traffic_shift_api_parse(doc, &err);
    node = root ? json_object_get(root, "node") : NULL;
    state = root ? json_object_get(root, "state") : NULL;
    before = root ? json_object_get(root, "before") : NULL;

    if (node == NULL || !json_is_string(node)
        || state == NULL || !json_is_string(state)
        || before == NULL
        || ngx_http_traffic_shift_api_parse_weights(split, before, weights,
                                                    &force, &err)
           != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ERR, sr->etcd.log, 0,
                      "traffic_shift_sync: invalid rollout of \"%V\" in "
                      "etcd, ignored", &split->name);
        json_decref(root);
        return;
    }

    n.data = (u_char *) json_string_value(node);
    n.len = json_string_length(node);

    active = 0;

    for (k = 1; k < 3; k++) {
        if (ngx_strcmp(json_string_value(state),
                       ngx_http_traffic_shift_ro_states[k])
            == 0)
        {
            active = 1;
        }
    }

    if (n.len == scf->node.len
        && ngx_strncmp(n.data, scf->node.data, n.len) == 0)
    {
        ngx_http_traffic_shift_zone_sync_driver(sr->mcf, split, NULL);
        ngx_http_traffic_shift_zone_sync_claim(sr->mcf, split, claim, 1);

        if (value && active && claim[NGX_HTTP_TS_SR_KEY] != create
            && !(sr->what == NGX_HTTP_TS_SR_CLAIM
                 && sr->split == (ngx_uint_t) i))
        {
            /*
             * this node's, from before a restart: its rollout was lost
             * with the zone; the weights from before it are put back
             */
            sr->orphan[i] = create;
            ngx_memcpy(&sr->before[i * NGX_HTTP_TS_MAX_POOLS],
                       weights, sizeof(weights));
        }

        json_decref(root);
        return;
    }

    if (value) {
        /* until the key goes, even after the end: its driver releases it */
        ngx_http_traffic_shift_zone_sync_driver(sr->mcf, split, &n);
        json_decref(root);
        return;
    }

    ngx_http_traffic_shift_zone_sync_driver(sr->mcf, split, NULL);

    if (active && ngx_http_traffic_shift_zone_read(split, &w) == NGX_OK
        && ngx_memcmp(w.weights, weights,
                      split->pools.nelts * sizeof(ngx_uint_t))
           != 0)
    {
        ngx_log_error(NGX_LOG_WARN, sr->etcd.log, 0,
                      "traffic_shift \"%V\": node \"%V\" driving a rollout "
                      "left the fleet, putting the weights from before the "
                      "rollout back", &split->name, &n);

        sr->rollback[i] = split->sh->sync_revision + 1;
        ngx_memcpy(&sr->before[i * NGX_HTTP_TS_MAX_POOLS],
                   weights, sizeof(weights));
    }

    json_decref(root);
}


/*
 * Every tick of the watch's worker, the watch running or not: at most one
 * request to etcd at a time, the most urgent first.  "lease" is the
 * node's lease ("" none yet), "ok" when etcd last kept it.
 */

void
ngx_http_traffic_shift_sync_rollouts_tick(
    ngx_http_traffic_shift_sync_rollouts_t *sr,
    ngx_http_traffic_shift_etcd_endpoint_t *ep, u_char *lease, ngx_msec_t ok,
    ngx_uint_t up)
{
    ngx_uint_t                        i, progress;
    ngx_http_traffic_shift_split_t  **splitp;

    splitp = sr->mcf->splits.elts;
    progress = 0;

    for (i = 0; i < sr->mcf->splits.nelts; i++) {
        if (!(splitp[i]->sh && splitp[i]->sh->layout == splitp[i]->layout
              && splitp[i]->sh->fleet_claim
              && splitp[i]->sh->rollout.state == NGX_HTTP_TS_RO_PROGRESSING))
        {
            sr->collecting[i] = 0;
            continue;
        }

        if (!sr->collecting[i]) {
            /*
             * counted from the next read on: what the nodes served before
             * (another rollout, a pause) is not this rollout's
             */
            ngx_http_traffic_shift_sync_counts_forget(sr, i);
            sr->collecting[i] = 1;
        }

        progress = 1;

        if ((ngx_msec_int_t) (ngx_current_msec - ok)
            > NGX_HTTP_TS_SR_SILENCE)
        {
            ngx_http_traffic_shift_sync_rollout_lost(sr, splitp[i],
                                  "this node lost etcd, the other nodes "
                                  "put the weights from before it back");
        }
    }

    if (!up || sr->etcd.busy || lease[0] == '\0') {
        return;
    }

    sr->etcd.endpoint = ep;

    if (ngx_strcmp(sr->lease, lease) != 0) {
        /* a new lease (another worker, or etcd lost it): records again */
        ngx_memcpy(sr->lease, lease, ngx_strlen(lease) + 1);
        ngx_memset(sr->renew, 1, ngx_max(sr->mcf->splits.nelts, 1));
    }

    for (i = 0; i < sr->mcf->splits.nelts; i++) {
        if (ngx_http_traffic_shift_sync_rollout_step(sr, i) != NGX_DECLINED) {
            return;
        }
    }

    if (progress) {
        ngx_http_traffic_shift_sync_counts_collect(sr);
    }
}


/*
 * What upstream "i" needs from etcd, sent: NGX_OK (sent), NGX_ERROR (not
 * sent), NGX_DECLINED (nothing to do).
 */

static ngx_int_t
ngx_http_traffic_shift_sync_rollout_step(
    ngx_http_traffic_shift_sync_rollouts_t *sr, ngx_uint_t i)
{
    json_t                               *cmp, *ops, *rec, *fail;
    ngx_str_t                             key, ukey;
    ngx_uint_t                            claim[5], active, what;
    ngx_pool_t                           *pool;
    ngx_http_traffic_shift_split_t       *split;
    ngx_http_traffic_shift_weights_t      w;
    ngx_http_traffic_shift_sh_rollout_t  *ro;
    ngx_http_traffic_shift_sync_conf_t   *scf;

    split = ((ngx_http_traffic_shift_split_t **) sr->mcf->splits.elts)[i];
    scf = sr->mcf->sync;
    ro = &sr->ro;

    if (split->sh == NULL
        || ngx_http_traffic_shift_zone_rollout_copy(sr->mcf, split, ro, &w)
           != NGX_OK)
    {
        return NGX_DECLINED;
    }

    ngx_http_traffic_shift_zone_sync_claim(sr->mcf, split, claim, 1);

    active = (ro->state == NGX_HTTP_TS_RO_PROGRESSING
              || ro->state == NGX_HTTP_TS_RO_PAUSED);

    if (sr->rollback[i] || sr->orphan[i]) {
        what = NGX_HTTP_TS_SR_ROLLBACK;

    } else if (claim[NGX_HTTP_TS_SR_KEY] == 0) {
        if (!active) {
            return NGX_DECLINED;
        }

        /* a rollout started here: the fleet's, if nobody else drives one */
        what = NGX_HTTP_TS_SR_CLAIM;

    } else if (claim[NGX_HTTP_TS_SR_ID] == ro->id
               && (claim[NGX_HTTP_TS_SR_STEP] != ro->step
                   || claim[NGX_HTTP_TS_SR_STATE] != ro->state
                   || claim[NGX_HTTP_TS_SR_GEN] != w.generation
                   || sr->renew[i]))
    {
        what = NGX_HTTP_TS_SR_PUSH;

    } else if (claim[NGX_HTTP_TS_SR_ID] != ro->id || !active) {
        /* the end was pushed (or another rollout began): the key goes */
        what = NGX_HTTP_TS_SR_RELEASE;

    } else {
        return NGX_DECLINED;
    }

    pool = ngx_create_pool(2048, sr->etcd.log);
    if (pool == NULL) {
        return NGX_ERROR;
    }

    if (ngx_http_traffic_shift_etcd_key(pool, &scf->prefix, "rollouts/",
                                        &split->name, &key)
        != NGX_OK
        || ngx_http_traffic_shift_etcd_key(pool, &scf->prefix, "upstreams/",
                                           &split->name, &ukey)
           != NGX_OK)
    {
        ngx_destroy_pool(pool);
        return NGX_ERROR;
    }

    sr->split = i;
    sr->pool_tmp = pool;
    cmp = json_array();
    ops = json_array();

    if (what == NGX_HTTP_TS_SR_ROLLBACK) {
        /* the weights from before a rollout whose driver left */

        json_array_append_new(cmp,
            ngx_http_traffic_shift_sync_rollout_cmp(pool, &ukey, "MOD",
                                 sr->orphan[i] ? split->sh->sync_revision
                                               : sr->rollback[i] - 1));
        json_array_append_new(ops,
            ngx_http_traffic_shift_sync_rollout_put(pool, &ukey,
                json_pack("{s:o}", "weights",
                          ngx_http_traffic_shift_json_weights(split,
                              &sr->before[i * NGX_HTTP_TS_MAX_POOLS],
                              split->pools.nelts)),
                NULL));

        if (sr->orphan[i]) {
            json_array_append_new(cmp,
                ngx_http_traffic_shift_sync_rollout_cmp(pool, &key, "CREATE",
                                                        sr->orphan[i]));
            json_array_append_new(ops,
                json_pack("{s:{s:o}}", "request_delete_range", "key",
                          ngx_http_traffic_shift_etcd_b64(pool, key.data,
                                                          key.len)));
        }

    } else if (what == NGX_HTTP_TS_SR_CLAIM) {
        json_array_append_new(cmp,
            ngx_http_traffic_shift_sync_rollout_cmp(pool, &key, "CREATE", 0));
        json_array_append_new(cmp,
            ngx_http_traffic_shift_sync_rollout_cmp(pool, &ukey, "MOD",
                                                 split->sh->sync_revision));

    } else if (what == NGX_HTTP_TS_SR_PUSH) {
        json_array_append_new(cmp,
            ngx_http_traffic_shift_sync_rollout_cmp(pool, &key, "CREATE",
                                                 claim[NGX_HTTP_TS_SR_KEY]));

    } else {
        json_array_append_new(cmp,
            ngx_http_traffic_shift_sync_rollout_cmp(pool, &key, "CREATE",
                                                 claim[NGX_HTTP_TS_SR_KEY]));
        json_array_append_new(ops,
            json_pack("{s:{s:o}}", "request_delete_range", "key",
                      ngx_http_traffic_shift_etcd_b64(pool, key.data,
                                                      key.len)));
    }

    if (what == NGX_HTTP_TS_SR_CLAIM || what == NGX_HTTP_TS_SR_PUSH) {
        rec = ngx_http_traffic_shift_sync_rollout_record(sr, split, ro);

        json_array_append_new(ops,
            ngx_http_traffic_shift_sync_rollout_put(pool, &ukey,
                json_pack("{s:o}", "weights",
                          ngx_http_traffic_shift_json_weights(split,
                                 w.weights, split->pools.nelts)),
                NULL));
        json_array_append_new(ops,
            ngx_http_traffic_shift_sync_rollout_put(pool, &key, rec,
                                                    (u_char *) sr->lease));

        sr->claim[NGX_HTTP_TS_SR_KEY] = claim[NGX_HTTP_TS_SR_KEY];
        sr->claim[NGX_HTTP_TS_SR_ID] = ro->id;
        sr->claim[NGX_HTTP_TS_SR_STEP] = ro->step;
        sr->claim[NGX_HTTP_TS_SR_STATE] = ro->state;
        ngx_memcpy(sr->weights, w.weights, sizeof(sr->weights));
    }

    /* a claim refused reads the fleet's weights in the same transaction */

    fail = (what != NGX_HTTP_TS_SR_CLAIM) ? NULL
           : json_pack("[{s:{s:o}}]", "request_range", "key",
                       ngx_http_traffic_shift_etcd_b64(pool, ukey.data,
                                                       ukey.len));

    return ngx_http_traffic_shift_sync_rollout_txn(sr, what, cmp, ops, fail);
}


/* a transaction of "compare", "success" and "failure" (NULL: none) */

static ngx_int_t
ngx_http_traffic_shift_sync_rollout_txn(
    ngx_http_traffic_shift_sync_rollouts_t *sr, ngx_uint_t what,
    json_t *compare, json_t *success, json_t *failure)
{
    json_t     *json;
    ngx_int_t   rc;
    ngx_str_t   body;

    json = json_pack("{s:o,s:o,s:o*}", "compare", compare, "success", success,
                     "failure", failure);

    rc = NGX_ERROR;

    if (ngx_http_traffic_shift_etcd_json(sr->pool_tmp, json, &body)
        == NGX_OK)
    {
        sr->what = what;
        sr->etcd.stream = 0;
        sr->etcd.handler = ngx_http_traffic_shift_sync_rollout_done;

        rc = ngx_http_traffic_shift_etcd_start(&sr->etcd, "/v3/kv/txn",
                                               body.data, body.len);
    }

    ngx_destroy_pool(sr->pool_tmp);
    sr->pool_tmp = NULL;

    if (rc != NGX_OK) {
        sr->what = NGX_HTTP_TS_SR_IDLE;
        return NGX_ERROR;
    }

    return NGX_OK;
}


static json_t *
ngx_http_traffic_shift_sync_rollout_cmp(ngx_pool_t *pool, ngx_str_t *key,
    const char *target, uint64_t value)
{
    return json_pack("{s:s,s:o,s:s,s:I}", "target", target,
                     "key", ngx_http_traffic_shift_etcd_b64(pool, key->data,
                                                            key->len),
                     "result", "EQUAL",
                     ngx_strcmp(target, "MOD") == 0 ? "mod_revision"
                                                    : "create_revision",
                     (json_int_t) value);
}


/* {"request_put":{...}}, "value" consumed */

static json_t *
ngx_http_traffic_shift_sync_rollout_put(ngx_pool_t *pool, ngx_str_t *key,
    json_t *value, u_char *lease)
{
    json_t     *put;
    ngx_str_t   v;

    if (ngx_http_traffic_shift_etcd_json(pool, value, &v) != NGX_OK) {
        return NULL;
    }

    put = json_pack("{s:o,s:o}",
                    "key", ngx_http_traffic_shift_etcd_b64(pool, key->data,
                                                           key->len),
                    "value", ngx_http_traffic_shift_etcd_b64(pool, v.data,
                                                             v.len));

    if (put && lease
        && json_object_set_new(put, "lease",
                               json_string((char *) lease))
           != 0)
    {
        json_decref(put);
        put = NULL;
    }

    return put ? json_pack("{s:o}", "request_put", put) : NULL;
}


/*
 * {"node":"edge-1","id":3,"state":"progressing","pool":"canary",
 *  "step":1,"steps":[5,25,50,100],"before":{"weights":{...}}}
 */

static json_t *
ngx_http_traffic_shift_sync_rollout_record(
    ngx_http_traffic_shift_sync_rollouts_t *sr,
    ngx_http_traffic_shift_split_t *split,
    ngx_http_traffic_shift_sh_rollout_t *ro)
{
    json_t                              *steps;
    ngx_uint_t                           k;
    ngx_http_traffic_shift_pool_t       *pool;
    ngx_http_traffic_shift_sync_conf_t  *scf;

    scf = sr->mcf->sync;
    pool = split->pools.elts;

    steps = json_array();

    for (k = 0; steps && k < ro->nsteps; k++) {
        json_array_append_new(steps,
                              ngx_http_traffic_shift_json_weight(
                                  ro->steps[k]));
    }

    return json_pack("{s:s%,s:I,s:s,s:s%,s:I,s:o,s:b,s:{s:o}}",
                     "node", scf->node.data, scf->node.len,
                     "id", (json_int_t) ro->id,
                     "state", ngx_http_traffic_shift_ro_states[
                                  ngx_min(ro->state,
                                          NGX_HTTP_TS_RO_STATES - 1)],
                     "pool", pool[ro->pool].name.data, pool[ro->pool].name.len,
                     "step", (json_int_t) (ro->step + 1),
                     "steps", steps,
                     "ramp", (int) ro->ramp,
                     "before", "weights",
                     ngx_http_traffic_shift_json_weights(split, ro->before,
                                                         split->pools.nelts));
}


static void
ngx_http_traffic_shift_sync_rollout_done(ngx_http_traffic_shift_etcd_t *e,
    json_t *json)
{
    uint64_t                                 revision;
    ngx_uint_t                               i, what, claim[5];
    ngx_http_traffic_shift_split_t          *split;
    ngx_http_traffic_shift_change_t          change;
    ngx_http_traffic_shift_weights_t         w;
    ngx_http_traffic_shift_sync_rollouts_t  *sr;

    sr = e->data;
    what = sr->what;
    i = sr->split;
    sr->what = NGX_HTTP_TS_SR_IDLE;

    split = ((ngx_http_traffic_shift_split_t **) sr->mcf->splits.elts)[i];

    if (json == NULL || e->status != NGX_HTTP_OK
        || ngx_http_traffic_shift_etcd_int(json_object_get(json, "header"),
                                           "revision", &revision)
           != NGX_OK)
    {
        /* etcd did not answer: again at a next tick */
        ngx_log_error(NGX_LOG_INFO, e->log, 0,
                      "traffic_shift_sync: etcd \"%V\": %s, the rollout of "
                      "\"%V\" is sent again", &e->endpoint->name,
                      json ? "transaction refused" : e->error, &split->name);
        return;
    }

    if (what == NGX_HTTP_TS_SR_ROLLBACK) {
        if (json_is_true(json_object_get(json, "succeeded"))) {
            ngx_log_error(NGX_LOG_WARN, e->log, 0,
                          "traffic_shift \"%V\": weights from before the "
                          "rollout put back in the fleet, generation %uL",
                          &split->name, revision);
        }

        sr->rollback[i] = 0;
        sr->orphan[i] = 0;
        return;
    }

    ngx_http_traffic_shift_zone_sync_claim(sr->mcf, split, claim, 1);

    if (!json_is_true(json_object_get(json, "succeeded"))) {

        if (what == NGX_HTTP_TS_SR_CLAIM) {
            ngx_http_traffic_shift_sync_rollout_yield(sr, split, json);
            return;
        }

        /* the key is gone: its lease expired, the fleet rolled back */

        ngx_http_traffic_shift_sync_rollout_lost(sr, split,
                                "its key in etcd expired, the other nodes "
                                "put the weights from before it back");

        ngx_memzero(claim, sizeof(claim));
        ngx_http_traffic_shift_zone_sync_claim(sr->mcf, split, claim, 0);
        return;
    }

    if (what == NGX_HTTP_TS_SR_RELEASE) {
        ngx_memzero(claim, sizeof(claim));
        ngx_http_traffic_shift_zone_sync_claim(sr->mcf, split, claim, 0);
        return;
    }

    if (what == NGX_HTTP_TS_SR_CLAIM) {
        ngx_log_error(NGX_LOG_NOTICE, e->log, 0,
                      "traffic_shift \"%V\": this node drives the rollout "
                      "in the fleet, generation %uL", &split->name, revision);
        sr->claim[NGX_HTTP_TS_SR_KEY] = revision;
        sr->collect = ngx_current_msec;
    }

    /*
     * the weights pushed are applied here with etcd's revision (or were,
     * by the watch); the generation routed by is the one written
     */

    (void) ngx_http_traffic_shift_zone_sync_apply(sr->mcf, split, sr->weights,
                                                  revision,
                                                  NGX_HTTP_TS_SRC_API,
                                                  &change);

    if (ngx_http_traffic_shift_zone_read(split, &w) != NGX_OK) {
        return;
    }

    sr->claim[NGX_HTTP_TS_SR_GEN] = w.generation;
    sr->renew[i] = 0;

    ngx_http_traffic_shift_zone_sync_claim(sr->mcf, split, sr->claim, 0);

    /* the end pushed: the key goes at once */
    (void) ngx_http_traffic_shift_sync_rollout_step(sr, i);
}


/*
 * A claim refused: another node drives a rollout, or the weights changed
 * in etcd.  The rollout started here ends, and the node takes the
 * fleet's weights the transaction read (its failure branch).
 */

static void
ngx_http_traffic_shift_sync_rollout_yield(
    ngx_http_traffic_shift_sync_rollouts_t *sr,
    ngx_http_traffic_shift_split_t *split, json_t *json)
{
    json_t                            *kv, *root;
    uint64_t                           revision;
    ngx_str_t                          value;
    ngx_uint_t                         force;
    ngx_uint_t                         weights[NGX_HTTP_TS_MAX_POOLS];
    ngx_pool_t                        *pool;
    ngx_http_traffic_shift_api_err_t   err;

    static u_char  reason[] = "ended in the fleet: another node drives a "
                              "rollout of it, or its weights changed in "
                              "the fleet";

    kv = json_array_get(json_object_get(json_object_get(
             json_array_get(json_object_get(json, "responses"), 0),
             "response_range"), "kvs"), 0);

    pool = ngx_create_pool(1024, sr->etcd.log);
    if (pool == NULL) {
        return;
    }

    root = NULL;

    if (kv == NULL
        || ngx_http_traffic_shift_etcd_int(kv, "mod_revision", &revision)
           != NGX_OK
        || ngx_http_traffic_shift_etcd_unb64(pool,
                                             json_object_get(kv, "value"),
                                             &value)
           != NGX_OK
        || (root = ngx_http_traffic_shift_api_parse(&value, &err)) == NULL
        || ngx_http_traffic_shift_api_parse_weights(split, root, weights,
                                                    &force, &err)
           != NGX_OK)
    {
        /* no usable weights in etcd: the weights from before come back */
        json_decref(root);
        ngx_destroy_pool(pool);
        ngx_http_traffic_shift_sync_rollout_lost(sr, split,
                                                 (char *) reason
                                                 + sizeof("ended in the "
                                                          "fleet: ") - 1);
        return;
    }

    json_decref(root);
    ngx_destroy_pool(pool);

    if (ngx_http_traffic_shift_zone_rollout_yield(sr->mcf, split,
                                                  sr->claim[NGX_HTTP_TS_SR_ID],
                                                  weights, revision, reason,
                                                  sizeof(reason) - 1)
        == NGX_OK)
    {
        ngx_log_error(NGX_LOG_WARN, sr->etcd.log, 0,
                      "traffic_shift \"%V\": rollout aborted, %s; the "
                      "fleet's weights applied, generation %uL",
                      &split->name, reason, revision);
    }
}


/* this node's rollout cannot be the fleet's: it ends here (aborted) */

static void
ngx_http_traffic_shift_sync_rollout_lost(
    ngx_http_traffic_shift_sync_rollouts_t *sr,
    ngx_http_traffic_shift_split_t *split, const char *why)
{
    u_char                           *p, text[NGX_HTTP_TS_RO_REASON_LEN];
    ngx_http_traffic_shift_change_t   change;

    p = ngx_snprintf(text, sizeof(text), "ended in the fleet: %s", why);

    if (ngx_http_traffic_shift_zone_rollout_end(sr->mcf, split, 0,
                                                NGX_HTTP_TS_RO_ABORTED, NULL,
                                                text, p - text, 0, &change)
        == NGX_OK)
    {
        ngx_log_error(NGX_LOG_WARN, sr->etcd.log, 0,
                      "traffic_shift \"%V\": rollout aborted, %*s; weights "
                      "from before the rollout restored here, generation "
                      "%ui", &split->name, p - text, text,
                      change.new.generation);
    }
}


/* the index of an upstream by name, and the upstream; NGX_ERROR: none */

static ngx_int_t
ngx_http_traffic_shift_sync_rollout_index(
    ngx_http_traffic_shift_sync_rollouts_t *sr, ngx_str_t *name,
    ngx_http_traffic_shift_split_t **split)
{
    ngx_uint_t                        i;
    ngx_http_traffic_shift_split_t  **splitp;

    splitp = sr->mcf->splits.elts;

    for (i = 0; i < sr->mcf->splits.nelts; i++) {
        if (splitp[i]->name.len == name->len
            && ngx_strncmp(splitp[i]->name.data, name->data, name->len) == 0
            && splitp[i]->sh)
        {
            *split = splitp[i];
            return i;
        }
    }

    return NGX_ERROR;
}


