
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#include "ngx_http_traffic_shift_sync.h"
#include "ngx_http_traffic_shift_sync_down.h"
#include "ngx_http_traffic_shift_state.h"


/*
 * Fleet mode (traffic_shift_sync): etcd holds the weights of every
 * traffic_shift upstream under PREFIX/upstreams/NAME, as {"weights":{..}},
 * and the key's mod revision is the upstream's generation on every node.
 *
 * The watch: every worker has a timer; the worker holding the lease in the
 * zone reads the keys (a range), applies them, then watches the prefix
 * from the next revision and applies every event.  A broken connection is
 * retried on the next endpoint after a backoff; a compacted revision
 * reads the keys again.  The zone makes every worker see what it applied.
 *
 * Writes through the API are in ngx_http_traffic_shift_sync_write.c.
 */


#define NGX_HTTP_TS_SYNC_TICK         250
#define NGX_HTTP_TS_SYNC_LEASE        1500
#define NGX_HTTP_TS_SYNC_BACKOFF_MIN  100
#define NGX_HTTP_TS_SYNC_BACKOFF_MAX  2000

/* a watch is given up when etcd took no node key for this long */
#define NGX_HTTP_TS_SYNC_SILENCE      5000

#define NGX_HTTP_TS_SYNC_IDLE         0
#define NGX_HTTP_TS_SYNC_RANGE        1
#define NGX_HTTP_TS_SYNC_WATCH        2


typedef struct {
    ngx_event_t                           timer;
    ngx_http_traffic_shift_main_conf_t   *mcf;
    ngx_http_traffic_shift_sync_conf_t   *conf;
    ngx_http_traffic_shift_etcd_t         etcd;
    ngx_log_t                             log;

    ngx_uint_t                            endpoint;
    ngx_uint_t                            phase;
    ngx_msec_t                            backoff;
    ngx_msec_t                            retry;
    uint64_t                              revision;
    ngx_uint_t                            failures;

    ngx_http_traffic_shift_sync_node_t    node;
    ngx_http_traffic_shift_sync_rollouts_t  rollouts;

    unsigned                              held:1;
} ngx_http_traffic_shift_sync_watch_t;



static void ngx_http_traffic_shift_sync_timer(ngx_event_t *ev);
static void ngx_http_traffic_shift_sync_stop(
    ngx_http_traffic_shift_sync_watch_t *w);
static void ngx_http_traffic_shift_sync_range(
    ngx_http_traffic_shift_sync_watch_t *w);
static void ngx_http_traffic_shift_sync_ranged(
    ngx_http_traffic_shift_etcd_t *e, json_t *json);
static void ngx_http_traffic_shift_sync_watched(
    ngx_http_traffic_shift_etcd_t *e, json_t *json);
static void ngx_http_traffic_shift_sync_failed(
    ngx_http_traffic_shift_sync_watch_t *w, const char *what);
static void ngx_http_traffic_shift_sync_kv(
    ngx_http_traffic_shift_sync_watch_t *w, json_t *kv, ngx_uint_t deleted,
    json_t *prev);
static void ngx_http_traffic_shift_sync_upstream(
    ngx_http_traffic_shift_sync_watch_t *w, ngx_str_t *name,
    ngx_str_t *value, uint64_t revision);


ngx_int_t
ngx_http_traffic_shift_sync_init_process(ngx_cycle_t *cycle)
{
    ngx_http_traffic_shift_main_conf_t   *mcf;
    ngx_http_traffic_shift_sync_conf_t   *scf;
    ngx_http_traffic_shift_sync_watch_t  *w;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    mcf = ngx_http_cycle_get_module_main_conf(cycle,
                                              ngx_http_traffic_shift_module);

    if (mcf == NULL || mcf->sync == NULL || mcf->sh == NULL) {
        return NGX_OK;
    }

    scf = mcf->sync;

    w = ngx_pcalloc(cycle->pool, sizeof(ngx_http_traffic_shift_sync_watch_t));
    if (w == NULL) {
        return NGX_ERROR;
    }

    w->mcf = mcf;
    w->conf = scf;
    w->log = *cycle->log;
    w->backoff = NGX_HTTP_TS_SYNC_BACKOFF_MIN;
    w->retry = ngx_current_msec;

    w->etcd.log = &w->log;
    w->etcd.timeout = scf->timeout;
    w->etcd.data = w;

    w->node.mcf = mcf;
    w->node.etcd.log = &w->log;
    w->node.etcd.timeout = scf->timeout;

    if (ngx_http_traffic_shift_sync_rollouts_init(&w->rollouts, mcf,
                                                  cycle->pool, &w->log)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    w->timer.handler = ngx_http_traffic_shift_sync_timer;
    w->timer.data = w;
    w->timer.log = cycle->log;
    w->timer.cancelable = 1;

    scf->watch = w;

    ngx_add_timer(&w->timer, 1 + ngx_random() % 50);

    return NGX_OK;
}


void
ngx_http_traffic_shift_sync_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_traffic_shift_main_conf_t   *mcf;
    ngx_http_traffic_shift_sync_conf_t   *scf;
    ngx_http_traffic_shift_sync_watch_t  *w;

    mcf = ngx_http_cycle_get_module_main_conf(cycle,
                                              ngx_http_traffic_shift_module);

    if (mcf == NULL || mcf->sync == NULL) {
        return;
    }

    scf = mcf->sync;
    w = scf->watch;

    if (w == NULL) {
        return;
    }

    if (w->timer.timer_set) {
        ngx_del_timer(&w->timer);
    }

    ngx_http_traffic_shift_sync_stop(w);

    scf->watch = NULL;
}


static void
ngx_http_traffic_shift_sync_timer(ngx_event_t *ev)
{
    ngx_http_traffic_shift_main_conf_t   *mcf;
    ngx_http_traffic_shift_sync_watch_t  *w;

    w = ev->data;
    mcf = w->mcf;

    if (ngx_exiting || ngx_terminate || ngx_quit
        || ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_traffic_shift_module)
           != mcf
        || mcf->sh->retired)
    {
        /* the workers of the new configuration take over */
        ngx_http_traffic_shift_sync_stop(w);
        return;
    }

    ngx_add_timer(ev, NGX_HTTP_TS_SYNC_TICK);

    if (ngx_http_traffic_shift_zone_lease(mcf, &mcf->sh->sync_lease,
                                          NGX_HTTP_TS_SYNC_LEASE, 0)
        != NGX_OK)
    {
        if (w->held) {
            /* another worker holds the watch now */
            ngx_http_traffic_shift_etcd_close(&w->etcd);
            ngx_http_traffic_shift_etcd_close(&w->node.etcd);
            ngx_http_traffic_shift_sync_rollouts_stop(&w->rollouts);
            w->phase = NGX_HTTP_TS_SYNC_IDLE;
            w->held = 0;
        }

        return;
    }

    if (!w->held) {
        /* etcd's silence is counted from now */
        w->held = 1;
        w->node.ok = ngx_current_msec;
    }

    if (w->phase == NGX_HTTP_TS_SYNC_IDLE
        && (ngx_msec_int_t) (ngx_current_msec - w->retry) >= 0)
    {
        ngx_http_traffic_shift_sync_range(w);
    }

    ngx_http_traffic_shift_sync_rollouts_tick(&w->rollouts, w->etcd.endpoint,
                                      w->node.lease, w->node.ok,
                                      w->phase == NGX_HTTP_TS_SYNC_WATCH);

    if (w->phase != NGX_HTTP_TS_SYNC_WATCH) {
        return;
    }

    if ((ngx_msec_int_t) (ngx_current_msec - w->node.ok)
        > NGX_HTTP_TS_SYNC_SILENCE)
    {
        /* a quiet watch cannot tell a lost etcd: its key can */
        ngx_http_traffic_shift_etcd_close(&w->node.etcd);
        ngx_http_traffic_shift_sync_failed(w, "no answer");
        return;
    }

    ngx_http_traffic_shift_sync_node_beat(&w->node, w->etcd.endpoint);
}


static void
ngx_http_traffic_shift_sync_stop(ngx_http_traffic_shift_sync_watch_t *w)
{
    ngx_http_traffic_shift_etcd_close(&w->etcd);
    ngx_http_traffic_shift_etcd_close(&w->node.etcd);
    ngx_http_traffic_shift_sync_rollouts_stop(&w->rollouts);
    w->phase = NGX_HTTP_TS_SYNC_IDLE;

    if (w->held) {
        w->mcf->sh->sync_up = 0;
        w->held = 0;
    }

    (void) ngx_http_traffic_shift_zone_lease(w->mcf, &w->mcf->sh->sync_lease,
                                             0, 1);
}


/* read every key of the prefix, then watch from the next revision */

static void
ngx_http_traffic_shift_sync_range(ngx_http_traffic_shift_sync_watch_t *w)
{
    json_t                              *json;
    ngx_int_t                            rc;
    ngx_str_t                            body;
    ngx_pool_t                          *pool;
    ngx_http_traffic_shift_sync_conf_t  *scf;

    scf = w->conf;

    pool = ngx_create_pool(1024, &w->log);
    if (pool == NULL) {
        return;
    }

    json = ngx_http_traffic_shift_etcd_range(pool, &scf->prefix, "rollouts/",
                                             "upstreams/");

    if (ngx_http_traffic_shift_etcd_json(pool, json, &body) != NGX_OK) {
        goto failed;
    }

    w->etcd.endpoint = (ngx_http_traffic_shift_etcd_endpoint_t *)
                           scf->endpoints.elts + w->endpoint;
    w->etcd.handler = ngx_http_traffic_shift_sync_ranged;
    w->etcd.stream = 0;

    rc = ngx_http_traffic_shift_etcd_start(&w->etcd, "/v3/kv/range",
                                           body.data, body.len);

    ngx_destroy_pool(pool);

    if (rc == NGX_OK) {
        w->phase = NGX_HTTP_TS_SYNC_RANGE;
        return;
    }

    ngx_http_traffic_shift_sync_failed(w, "cannot connect");
    return;

failed:

    ngx_destroy_pool(pool);
}


static void
ngx_http_traffic_shift_sync_ranged(ngx_http_traffic_shift_etcd_t *e,
    json_t *json)
{
    json_t                               *kvs, *kv, *w_json, *range;
    size_t                                i;
    uint64_t                              revision;
    ngx_int_t                             rc;
    ngx_str_t                             body;
    ngx_pool_t                           *pool;
    ngx_http_traffic_shift_sync_watch_t  *w;

    w = e->data;

    if (json == NULL || e->status != NGX_HTTP_OK
        || ngx_http_traffic_shift_etcd_int(json_object_get(json, "header"),
                                           "revision", &revision)
           != NGX_OK
        || revision == 0)
    {
        ngx_http_traffic_shift_sync_failed(w, json ? "range refused"
                                                   : e->error);
        return;
    }

    kvs = json_object_get(json, "kvs");

    json_array_foreach(kvs, i, kv) {
        ngx_http_traffic_shift_sync_kv(w, kv, 0, NULL);
    }

    if (w->failures) {
        ngx_log_error(NGX_LOG_NOTICE, &w->log, 0,
                      "traffic_shift_sync: etcd \"%V\" reached again, "
                      "revision %uL", &e->endpoint->name, revision);
    }

    w->failures = 0;
    w->backoff = NGX_HTTP_TS_SYNC_BACKOFF_MIN;
    w->revision = revision;
    w->mcf->sh->sync_up = 1;
    w->node.dirty = 1;
    w->node.ok = ngx_current_msec;

    /* the watch, from the next revision */

    pool = ngx_create_pool(1024, &w->log);
    if (pool == NULL) {
        ngx_http_traffic_shift_sync_failed(w, "no memory");
        return;
    }

    range = ngx_http_traffic_shift_etcd_range(pool, &w->conf->prefix,
                                              "rollouts/", "upstreams/");

    if (range == NULL
        || json_object_set_new(range, "start_revision",
                               json_integer((json_int_t) (revision + 1)))
           != 0
        || json_object_set_new(range, "prev_kv", json_true()) != 0)
    {
        json_decref(range);
        goto failed;
    }

    w_json = json_pack("{s:o}", "create_request", range);

    if (ngx_http_traffic_shift_etcd_json(pool, w_json, &body) != NGX_OK) {
        goto failed;
    }

    e->handler = ngx_http_traffic_shift_sync_watched;
    e->stream = 1;

    rc = ngx_http_traffic_shift_etcd_start(e, "/v3/watch", body.data,
                                           body.len);

    ngx_destroy_pool(pool);

    if (rc != NGX_OK) {
        ngx_http_traffic_shift_sync_failed(w, "cannot connect");
        return;
    }

    w->phase = NGX_HTTP_TS_SYNC_WATCH;
    return;

failed:

    ngx_destroy_pool(pool);
    ngx_http_traffic_shift_sync_failed(w, "no memory");
}


static void
ngx_http_traffic_shift_sync_watched(ngx_http_traffic_shift_etcd_t *e,
    json_t *json)
{
    json_t                               *result, *events, *ev, *type;
    size_t                                i;
    uint64_t                              compact, revision;
    ngx_http_traffic_shift_sync_watch_t  *w;

    w = e->data;

    if (json == NULL) {
        ngx_http_traffic_shift_sync_failed(w, e->error);
        return;
    }

    result = json_object_get(json, "result");

    if (result == NULL) {
        ngx_http_traffic_shift_etcd_close(e);
        ngx_http_traffic_shift_sync_failed(w, "watch refused");
        return;
    }

    (void) ngx_http_traffic_shift_etcd_int(result, "compact_revision",
                                           &compact);

    if (compact || json_is_true(json_object_get(result, "canceled"))) {
        ngx_log_error(NGX_LOG_WARN, &w->log, 0,
                      "traffic_shift_sync: watch from revision %uL ended "
                      "(compacted at %uL), reading the keys again",
                      w->revision + 1, compact);

        ngx_http_traffic_shift_etcd_close(e);
        w->phase = NGX_HTTP_TS_SYNC_IDLE;
        w->retry = ngx_current_msec;
        return;
    }

    events = json_object_get(result, "events");

    json_array_foreach(events, i, ev) {
        type = json_object_get(ev, "type");

        ngx_http_traffic_shift_sync_kv(w, json_object_get(ev, "kv"),
                                       type && json_is_string(type)
                                       && ngx_strcmp(json_string_value(type),
                                                     "DELETE") == 0,
                                       json_object_get(ev, "prev_kv"));
    }

    if (ngx_http_traffic_shift_etcd_int(json_object_get(result, "header"),
                                        "revision", &revision)
        == NGX_OK
        && revision > w->revision)
    {
        w->revision = revision;
    }

    if (w->node.dirty) {
        ngx_http_traffic_shift_sync_node_beat(&w->node, e->endpoint);
    }
}


static void
ngx_http_traffic_shift_sync_failed(ngx_http_traffic_shift_sync_watch_t *w,
    const char *what)
{
    ngx_http_traffic_shift_sync_conf_t      *scf;
    ngx_http_traffic_shift_etcd_endpoint_t  *ep;

    scf = w->conf;
    ep = scf->endpoints.elts;

    if (ngx_exiting || ngx_quit || ngx_terminate) {
        /* the connection was closed for the shutdown */
        ngx_http_traffic_shift_etcd_close(&w->etcd);
        w->phase = NGX_HTTP_TS_SYNC_IDLE;
        return;
    }

    if (w->failures++ < scf->endpoints.nelts
        || w->failures % 20 == 0)
    {
        ngx_log_error(NGX_LOG_WARN, &w->log, 0,
                      "traffic_shift_sync: etcd \"%V\": %s, keeping the "
                      "last state, retrying in %Mms", &ep[w->endpoint].name,
                      what ? what : "failed", w->backoff);
    }

    ngx_http_traffic_shift_etcd_close(&w->etcd);

    w->mcf->sh->sync_up = 0;
    w->phase = NGX_HTTP_TS_SYNC_IDLE;
    w->endpoint = (w->endpoint + 1) % scf->endpoints.nelts;
    w->retry = ngx_current_msec + w->backoff;
    w->backoff = ngx_min(w->backoff * 2, NGX_HTTP_TS_SYNC_BACKOFF_MAX);
}


/*
 * A key from etcd (a range, or a watch's event: "deleted", with the value
 * before in "prev" if etcd sent it), by what it is: an upstream's weights,
 * a server's admin mark, a rollout in fleet mode; anything else under the
 * watched range ignored.
 */

static void
ngx_http_traffic_shift_sync_kv(ngx_http_traffic_shift_sync_watch_t *w,
    json_t *kv, ngx_uint_t deleted, json_t *prev)
{
    size_t       len;
    uint64_t     revision, create;
    ngx_str_t    key, value, name, before;
    ngx_pool_t  *pool;

    pool = ngx_create_pool(1024, &w->log);
    if (pool == NULL) {
        return;
    }

    ngx_str_null(&value);

    if (kv == NULL
        || ngx_http_traffic_shift_etcd_unb64(pool,
                                             json_object_get(kv, "key"), &key)
           != NGX_OK
        || (!deleted
            && ngx_http_traffic_shift_etcd_unb64(pool,
                                                 json_object_get(kv, "value"),
                                                 &value)
               != NGX_OK)
        || ngx_http_traffic_shift_etcd_int(kv, "mod_revision", &revision)
           != NGX_OK
        || key.len <= w->conf->prefix.len)
    {
        ngx_log_error(NGX_LOG_ERR, &w->log, 0,
                      "traffic_shift_sync: invalid key from etcd");
        goto done;
    }

    name.data = key.data + w->conf->prefix.len;
    name.len = key.len - w->conf->prefix.len;

    len = sizeof("upstreams/") - 1;

    if (name.len > len && ngx_strncmp(name.data, "upstreams/", len) == 0) {
        name.data += len;
        name.len -= len;

        if (!deleted) {
            /* a deleted key: the last weights stay */
            ngx_http_traffic_shift_sync_upstream(w, &name, &value, revision);
        }

        goto done;
    }

    len = sizeof("servers/") - 1;

    if (name.len > len && ngx_strncmp(name.data, "servers/", len) == 0) {
        name.data += len;
        name.len -= len;

        /* a deleted key: the last mark stays */

        if (ngx_http_traffic_shift_sync_down_kv(w->mcf, &w->log, &name,
                                                deleted ? NULL : &value,
                                                revision)
            == NGX_OK)
        {
            w->node.dirty = 1;

            if (w->mcf->state_file.len) {
                ngx_http_traffic_shift_state_save_change(w->mcf, &w->log);
            }
        }

        goto done;
    }

    len = sizeof("rollouts/") - 1;

    if (name.len > len && ngx_strncmp(name.data, "rollouts/", len) == 0) {
        name.data += len;
        name.len -= len;

        create = 0;
        ngx_str_null(&before);

        if (!deleted) {
            (void) ngx_http_traffic_shift_etcd_int(kv, "create_revision",
                                                   &create);

        } else if (prev == NULL
                   || ngx_http_traffic_shift_etcd_unb64(pool,
                                             json_object_get(prev, "value"),
                                             &before)
                      != NGX_OK)
        {
            before.data = NULL;
        }

        ngx_http_traffic_shift_sync_rollout_kv(&w->rollouts, &name,
                                               deleted ? NULL : &value,
                                               before.data ? &before : NULL,
                                               create);
    }

done:

    ngx_destroy_pool(pool);
}


/* an upstream's weights from etcd: applied */

static void
ngx_http_traffic_shift_sync_upstream(ngx_http_traffic_shift_sync_watch_t *w,
    ngx_str_t *name, ngx_str_t *value, uint64_t revision)
{
    json_t                            *root;
    ngx_int_t                          rc;
    ngx_uint_t                         force;
    ngx_uint_t                         weights[NGX_HTTP_TS_MAX_POOLS];
    ngx_http_traffic_shift_split_t    *split;
    ngx_http_traffic_shift_change_t    change;
    ngx_http_traffic_shift_api_err_t   err;

    split = ngx_http_traffic_shift_find_split(w->mcf, name->data, name->len);

    if (split == NULL) {
        ngx_log_error(NGX_LOG_INFO, &w->log, 0,
                      "traffic_shift_sync: \"%V\" in etcd is no "
                      "traffic_shift upstream here, ignored", name);
        return;
    }

    root = ngx_http_traffic_shift_api_parse(value, &err);

    if (root == NULL) {
        goto invalid;
    }

    rc = ngx_http_traffic_shift_api_parse_weights(split, root, weights,
                                                  &force, &err);
    json_decref(root);

    if (rc != NGX_OK) {
        goto invalid;
    }

    rc = ngx_http_traffic_shift_zone_sync_apply(w->mcf, split, weights,
                                                revision,
                                                NGX_HTTP_TS_SRC_FLEET,
                                                &change);

    if (rc == NGX_OK) {
        ngx_log_error(NGX_LOG_NOTICE, &w->log, 0,
                      "traffic_shift \"%V\": weights from the fleet, "
                      "generation %uL", &split->name, revision);

        if (change.rollout_aborted) {
            ngx_log_error(NGX_LOG_WARN, &w->log, 0,
                          "traffic_shift \"%V\": rollout aborted by a "
                          "change from the fleet", &split->name);
        }

        if (w->mcf->state_file.len) {
            ngx_http_traffic_shift_state_save_change(w->mcf, &w->log);
        }
    }

    if (rc != NGX_ABORT) {
        /* applied now, or by the API's write here: the node key says so */
        w->node.dirty = 1;
    }

    return;

invalid:

    ngx_log_error(NGX_LOG_ERR, &w->log, 0,
                  "traffic_shift_sync: invalid weights for \"%V\" at "
                  "revision %uL in etcd, ignored: %*s", &split->name,
                  revision, err.len, err.text);
}
