
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#include "ngx_http_traffic_shift_sync.h"


/*
 * Every node says what it applied: PREFIX/nodes/NODE holds its name, the
 * time of its last contact, and per traffic_shift upstream the generation
 * it routes by and the live servers of each pool.  The key is under an
 * etcd lease of NGX_HTTP_TS_NODE_TTL seconds that the worker holding the
 * watch keeps alive every second; the key is rewritten at once after a
 * change (the zone's version moved, or a change came from the fleet), and
 * every NGX_HTTP_TS_NODE_REFRESH anyway.  A node that stops or loses etcd
 * disappears from the fleet within the lease.  GET /fleet reads these
 * keys.
 */


#define NGX_HTTP_TS_NODE_TTL      5
#define NGX_HTTP_TS_NODE_BEAT     1000
#define NGX_HTTP_TS_NODE_REFRESH  10000

/* while a rollout of the fleet progresses: the counters twice a second */
#define NGX_HTTP_TS_NODE_COUNTS   500


typedef struct {
    ngx_http_traffic_shift_etcd_t         etcd;
    ngx_http_request_t                   *r;
    ngx_uint_t                            tries;
} ngx_http_traffic_shift_sync_fleet_t;


static void ngx_http_traffic_shift_sync_node_granted(
    ngx_http_traffic_shift_etcd_t *e, json_t *json);
static void ngx_http_traffic_shift_sync_node_kept(
    ngx_http_traffic_shift_etcd_t *e, json_t *json);
static void ngx_http_traffic_shift_sync_node_put(
    ngx_http_traffic_shift_sync_node_t *n);
static void ngx_http_traffic_shift_sync_node_done(
    ngx_http_traffic_shift_etcd_t *e, json_t *json);
static json_t *ngx_http_traffic_shift_sync_node_json(
    ngx_http_traffic_shift_main_conf_t *mcf);
static json_t *ngx_http_traffic_shift_sync_node_counts(
    ngx_http_traffic_shift_split_t *split);
static ngx_int_t ngx_http_traffic_shift_sync_fleet_send(
    ngx_http_traffic_shift_sync_fleet_t *f);
static void ngx_http_traffic_shift_sync_fleet_read(
    ngx_http_traffic_shift_etcd_t *e, json_t *json);
static void ngx_http_traffic_shift_sync_fleet_cleanup(void *data);


/*
 * every tick of the watch, while it runs: the lease kept alive every
 * second; the key written after a change (of the zone, or from the
 * fleet), and every NGX_HTTP_TS_NODE_REFRESH anyway
 */

void
ngx_http_traffic_shift_sync_node_beat(ngx_http_traffic_shift_sync_node_t *n,
    ngx_http_traffic_shift_etcd_endpoint_t *ep)
{
    u_char     *p, buf[64];
    ngx_int_t   rc;
    ngx_uint_t  changed;

    if (n->etcd.busy) {
        return;
    }

    changed = n->dirty || n->version != n->mcf->sh->version
              || (ngx_msec_int_t) (ngx_current_msec - n->refresh) >= 0;

    if (!changed && (ngx_msec_int_t) (ngx_current_msec - n->next) < 0) {
        return;
    }

    n->next = ngx_current_msec + NGX_HTTP_TS_NODE_BEAT;
    n->put = changed;
    n->dirty = 0;
    n->etcd.endpoint = ep;
    n->etcd.stream = 0;
    n->etcd.data = n;

    if (n->lease[0] == '\0') {
        p = ngx_sprintf(buf, "{\"TTL\":%d}", NGX_HTTP_TS_NODE_TTL);
        n->etcd.handler = ngx_http_traffic_shift_sync_node_granted;
        rc = ngx_http_traffic_shift_etcd_start(&n->etcd, "/v3/lease/grant",
                                               buf, p - buf);

    } else {
        p = ngx_sprintf(buf, "{\"ID\":\"%s\"}", n->lease);
        n->etcd.handler = ngx_http_traffic_shift_sync_node_kept;
        rc = ngx_http_traffic_shift_etcd_start(&n->etcd,
                                               "/v3/lease/keepalive",
                                               buf, p - buf);
    }

    if (rc != NGX_OK) {
        /* again at the next tick */
        n->dirty |= changed;
    }
}


static void
ngx_http_traffic_shift_sync_node_granted(ngx_http_traffic_shift_etcd_t *e,
    json_t *json)
{
    json_t                              *id;
    ngx_http_traffic_shift_sync_node_t  *n;

    n = e->data;

    id = json ? json_object_get(json, "ID") : NULL;

    if (id == NULL || !json_is_string(id)
        || json_string_length(id) == 0
        || json_string_length(id) > NGX_INT64_LEN)
    {
        return;
    }

    ngx_memcpy(n->lease, json_string_value(id), json_string_length(id) + 1);

    ngx_http_traffic_shift_sync_node_put(n);
}


static void
ngx_http_traffic_shift_sync_node_kept(ngx_http_traffic_shift_etcd_t *e,
    json_t *json)
{
    uint64_t                             ttl;
    ngx_http_traffic_shift_sync_node_t  *n;

    n = e->data;

    if (json == NULL) {
        return;
    }

    if (ngx_http_traffic_shift_etcd_int(json_object_get(json, "result"),
                                        "TTL", &ttl)
        != NGX_OK
        || ttl == 0)
    {
        /* the lease expired (etcd lost us for a while): a new one */
        n->lease[0] = '\0';
        n->dirty = 1;
        ngx_http_traffic_shift_sync_node_beat(n, e->endpoint);
        return;
    }

    n->ok = ngx_current_msec;

    if (n->put) {
        ngx_http_traffic_shift_sync_node_put(n);
    }
}


static void
ngx_http_traffic_shift_sync_node_put(ngx_http_traffic_shift_sync_node_t *n)
{
    json_t                              *json, *doc;
    ngx_str_t                            key, value, body;
    ngx_uint_t                           i;
    ngx_pool_t                          *pool;
    ngx_http_traffic_shift_split_t     **splitp;
    ngx_http_traffic_shift_sync_conf_t  *scf;

    scf = n->mcf->sync;

    pool = ngx_create_pool(1024, n->etcd.log);
    if (pool == NULL) {
        return;
    }

    n->version = n->mcf->sh->version;
    n->refresh = ngx_current_msec + NGX_HTTP_TS_NODE_REFRESH;

    doc = ngx_http_traffic_shift_sync_node_json(n->mcf);

    splitp = n->mcf->splits.elts;

    for (i = 0; i < n->mcf->splits.nelts; i++) {
        if (splitp[i]->sh
            && (splitp[i]->sh->fleet_driver_len || splitp[i]->sh->fleet_claim))
        {
            /* a rollout of the fleet: its driver sums the counters */
            n->refresh = ngx_current_msec + NGX_HTTP_TS_NODE_COUNTS;
        }
    }

    if (ngx_http_traffic_shift_etcd_key(pool, &scf->prefix, "nodes/",
                                        &scf->node, &key)
        != NGX_OK
        || ngx_http_traffic_shift_etcd_json(pool, doc, &value) != NGX_OK)
    {
        goto done;
    }

    json = json_pack("{s:o,s:o,s:s}",
                     "key", ngx_http_traffic_shift_etcd_b64(pool, key.data,
                                                            key.len),
                     "value", ngx_http_traffic_shift_etcd_b64(pool,
                                                    value.data, value.len),
                     "lease", (char *) n->lease);

    if (ngx_http_traffic_shift_etcd_json(pool, json, &body) != NGX_OK) {
        goto done;
    }

    n->etcd.handler = ngx_http_traffic_shift_sync_node_done;

    (void) ngx_http_traffic_shift_etcd_start(&n->etcd, "/v3/kv/put",
                                             body.data, body.len);

done:

    ngx_destroy_pool(pool);
}


static void
ngx_http_traffic_shift_sync_node_done(ngx_http_traffic_shift_etcd_t *e,
    json_t *json)
{
    ngx_http_traffic_shift_sync_node_t  *n;

    n = e->data;

    if (json && e->status == NGX_HTTP_OK) {
        n->ok = ngx_current_msec;
    }

    if (n->dirty) {
        /* a change was applied meanwhile: say so at once */
        ngx_http_traffic_shift_sync_node_beat(n, e->endpoint);
    }
}


/*
 * {"node":N,"pid":P,"contact":T,
 *  "upstreams":{"app":{"generation":G,"live":{"blue":2,"green":1},
 *                      "counts":{"blue":[errors, responses by bucket]}}}}
 */

static json_t *
ngx_http_traffic_shift_sync_node_json(ngx_http_traffic_shift_main_conf_t *mcf)
{
    json_t                              *doc, *ups, *u, *live;
    ngx_uint_t                           i, j;
    ngx_http_traffic_shift_pool_t       *pool;
    ngx_http_traffic_shift_split_t     **splitp;
    ngx_http_traffic_shift_weights_t     w;
    ngx_http_traffic_shift_sh_split_t   *rec;
    ngx_http_traffic_shift_sync_conf_t  *scf;

    scf = mcf->sync;

    ups = json_object();

    doc = json_pack("{s:s%,s:I,s:I,s:o}",
                    "node", scf->node.data, scf->node.len,
                    "pid", (json_int_t) ngx_pid,
                    "contact", (json_int_t) ngx_time(),
                    "upstreams", ups);
    if (doc == NULL) {
        return NULL;
    }

    splitp = mcf->splits.elts;

    for (i = 0; i < mcf->splits.nelts; i++) {
        if (ngx_http_traffic_shift_zone_read(splitp[i], &w) != NGX_OK) {
            continue;
        }

        live = json_object();
        pool = splitp[i]->pools.elts;

        for (j = 0; live && j < splitp[i]->pools.nelts; j++) {
            (void) ngx_http_traffic_shift_json_set(live, &pool[j].name,
                      json_integer(pool[j].ups
                          ? ngx_http_traffic_shift_zone_live(pool[j].ups)
                          : 0));
        }

        u = json_pack("{s:I,s:o,s:o}",
                      "generation", (json_int_t) w.generation,
                      "live", live,
                      "counts",
                      ngx_http_traffic_shift_sync_node_counts(splitp[i]));

        rec = splitp[i]->sh;

        if (u && rec->fleet_claim
            && (rec->rollout.state == NGX_HTTP_TS_RO_PROGRESSING
                || rec->rollout.state == NGX_HTTP_TS_RO_PAUSED))
        {
            /* the rollout of the fleet this node drives */
            (void) json_object_set_new(u, "rollout",
                     json_pack("{s:I,s:s,s:I}",
                               "id", (json_int_t) rec->rollout.id,
                               "state", ngx_http_traffic_shift_ro_states[
                                            rec->rollout.state],
                               "step", (json_int_t) (rec->rollout.step + 1)));
        }

        if (ngx_http_traffic_shift_json_set(ups, &splitp[i]->name, u)
            != NGX_OK)
        {
            json_decref(doc);
            return NULL;
        }
    }

    return doc;
}


/*
 * this node's own counters of each pool (not the fleet's): the upstream
 * errors, then the responses by latency bucket
 */

static json_t *
ngx_http_traffic_shift_sync_node_counts(ngx_http_traffic_shift_split_t *split)
{
    json_t                            *counts, *arr;
    ngx_uint_t                         j, b;
    ngx_http_traffic_shift_pool_t     *pool;
    ngx_http_traffic_shift_sh_pool_t  *shp;

    counts = json_object();
    pool = split->pools.elts;

    for (j = 0; counts && j < split->pools.nelts; j++) {
        shp = &split->sh->pools[j];

        arr = json_array();

        if (arr == NULL
            || json_array_append_new(arr, json_integer(
                                         (json_int_t) shp->errors))
               != 0)
        {
            json_decref(arr);
            json_decref(counts);
            return NULL;
        }

        for (b = 0; b < NGX_HTTP_TS_BUCKETS; b++) {
            (void) json_array_append_new(arr, json_integer(
                                             (json_int_t) shp->buckets[b]));
        }

        (void) ngx_http_traffic_shift_json_set(counts, &pool[j].name, arr);
    }

    return counts;
}


/* a range of the nodes' keys on "e" (its endpoint, handler and data set) */

ngx_int_t
ngx_http_traffic_shift_sync_nodes(ngx_http_traffic_shift_etcd_t *e,
    ngx_http_traffic_shift_sync_conf_t *scf)
{
    json_t      *json;
    ngx_int_t    rc;
    ngx_str_t    body;
    ngx_pool_t  *pool;

    pool = ngx_create_pool(1024, e->log);
    if (pool == NULL) {
        return NGX_ERROR;
    }

    rc = NGX_ERROR;

    json = ngx_http_traffic_shift_etcd_range(pool, &scf->prefix, "nodes/",
                                              NULL);

    if (ngx_http_traffic_shift_etcd_json(pool, json, &body) != NGX_OK) {
        goto done;
    }

    e->stream = 0;

    rc = ngx_http_traffic_shift_etcd_start(e, "/v3/kv/range", body.data,
                                           body.len);

done:

    ngx_destroy_pool(pool);

    return rc;
}


/* the nodes' documents of a range, each with its "age" in seconds */

json_t *
ngx_http_traffic_shift_sync_nodes_json(ngx_http_traffic_shift_etcd_t *e,
    json_t *json)
{
    json_t        *nodes, *kv, *doc;
    size_t         i;
    uint64_t       contact;
    ngx_str_t      value;
    ngx_pool_t    *pool;
    json_error_t   error;

    nodes = json_array();
    if (nodes == NULL) {
        return NULL;
    }

    pool = ngx_create_pool(1024, e->log);
    if (pool == NULL) {
        json_decref(nodes);
        return NULL;
    }

    json_array_foreach(json_object_get(json, "kvs"), i, kv) {
        if (ngx_http_traffic_shift_etcd_unb64(pool,
                                              json_object_get(kv, "value"),
                                              &value)
            != NGX_OK)
        {
            continue;
        }

        doc = json_loadb((char *) value.data, value.len, 0, &error);

        if (doc == NULL || !json_is_object(doc)
            || ngx_http_traffic_shift_etcd_int(doc, "contact", &contact)
               != NGX_OK)
        {
            json_decref(doc);
            continue;
        }

        (void) json_object_set_new(doc, "age",
                     json_integer(ngx_max(ngx_time() - (time_t) contact, 0)));

        (void) json_array_append_new(nodes, doc);
    }

    ngx_destroy_pool(pool);

    return nodes;
}


/* GET /fleet: the nodes' keys, read from etcd */

ngx_int_t
ngx_http_traffic_shift_sync_fleet(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t                   *cln;
    ngx_http_traffic_shift_api_err_t      err;
    ngx_http_traffic_shift_main_conf_t   *mcf;
    ngx_http_traffic_shift_sync_conf_t   *scf;
    ngx_http_traffic_shift_sync_fleet_t  *f;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_traffic_shift_module);
    scf = mcf->sync;

    if (scf == NULL) {
        (void) ngx_http_traffic_shift_api_fail(&err, NGX_HTTP_NOT_FOUND,
                                            "not_in_fleet",
                                            "this node is not in a fleet: "
                                            "no traffic_shift_sync");
        return ngx_http_traffic_shift_api_error(r, &err, 0, NULL);
    }

    f = ngx_pcalloc(r->pool, sizeof(ngx_http_traffic_shift_sync_fleet_t));
    if (f == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_traffic_shift_sync_fleet_cleanup;
    cln->data = f;

    f->r = r;
    f->etcd.log = r->connection->log;
    f->etcd.timeout = scf->timeout;
    f->etcd.data = f;
    f->etcd.handler = ngx_http_traffic_shift_sync_fleet_read;

    if (ngx_http_traffic_shift_sync_fleet_send(f) != NGX_OK) {
        (void) ngx_http_traffic_shift_api_fail(&err,
                                            NGX_HTTP_SERVICE_UNAVAILABLE,
                                            "sync_unavailable",
                                            "etcd cannot be reached");
        return ngx_http_traffic_shift_api_error(r, &err, 0, NULL);
    }

    r->main->count++;

    return NGX_DONE;
}


static ngx_int_t
ngx_http_traffic_shift_sync_fleet_send(ngx_http_traffic_shift_sync_fleet_t *f)
{
    ngx_http_traffic_shift_main_conf_t      *mcf;
    ngx_http_traffic_shift_sync_conf_t      *scf;
    ngx_http_traffic_shift_etcd_endpoint_t  *ep;

    mcf = ngx_http_get_module_main_conf(f->r, ngx_http_traffic_shift_module);
    scf = mcf->sync;
    ep = scf->endpoints.elts;

    while (f->tries < scf->endpoints.nelts) {
        f->etcd.endpoint = &ep[f->tries++];

        if (ngx_http_traffic_shift_sync_nodes(&f->etcd, scf) == NGX_OK) {
            return NGX_OK;
        }
    }

    return NGX_ERROR;
}


static void
ngx_http_traffic_shift_sync_fleet_read(ngx_http_traffic_shift_etcd_t *e,
    json_t *json)
{
    json_t                               *doc, *nodes, *node, *u;
    size_t                                i;
    ngx_int_t                             rc;
    const char                           *key;
    ngx_http_request_t                   *r;
    ngx_http_traffic_shift_api_err_t      err;
    ngx_http_traffic_shift_main_conf_t   *mcf;
    ngx_http_traffic_shift_sync_conf_t   *scf;
    ngx_http_traffic_shift_sync_fleet_t  *f;

    f = e->data;
    r = f->r;

    if (json == NULL && !e->sent
        && ngx_http_traffic_shift_sync_fleet_send(f) == NGX_OK)
    {
        return;
    }

    if (json == NULL || e->status != NGX_HTTP_OK) {
        (void) ngx_http_traffic_shift_api_fail(&err,
                                            NGX_HTTP_SERVICE_UNAVAILABLE,
                                            "sync_unavailable",
                                            "etcd cannot be reached");
        ngx_http_finalize_request(r,
                          ngx_http_traffic_shift_api_error(r, &err, 0, NULL));
        return;
    }

    mcf = ngx_http_get_module_main_conf(r, ngx_http_traffic_shift_module);
    scf = mcf->sync;

    nodes = ngx_http_traffic_shift_sync_nodes_json(e, json);

    json_array_foreach(nodes, i, node) {
        json_object_foreach(json_object_get(node, "upstreams"), key, u) {
            /* the counters are for the driver of a rollout */
            (void) json_object_del(u, "counts");
        }
    }

    doc = json_pack("{s:s%,s:o}", "node", scf->node.data, scf->node.len,
                    "nodes", nodes);

    if (doc == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    rc = ngx_http_traffic_shift_api_send_json(r, NGX_HTTP_OK, doc, 0);

    ngx_http_finalize_request(r, rc);
}


static void
ngx_http_traffic_shift_sync_fleet_cleanup(void *data)
{
    ngx_http_traffic_shift_sync_fleet_t  *f = data;

    ngx_http_traffic_shift_etcd_close(&f->etcd);
}
