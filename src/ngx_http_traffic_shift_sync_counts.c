
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#include "ngx_http_traffic_shift_sync.h"


/*
 * Fleet mode, on the node that drives a rollout: the other nodes'
 * counters.  Every node writes its own counters of each pool in its node
 * key (ngx_http_traffic_shift_sync_node.c); twice a second the worker
 * holding the watch reads the node keys and adds each other node's
 * increase since its last read to the rollout's fleet counters (its
 * canary's, its baseline's) and the canary's to the fast abort.  A node
 * read for the first time, restarted (another pid, counters that went
 * down), or read before this rollout counted (forget), counts from then.
 */


#define NGX_HTTP_TS_SR_COLLECT_EVERY  500
#define NGX_HTTP_TS_SR_MAX_SEEN       1024


/* another node's counters of a pool, as last read */

typedef struct {
    u_char                                node[NGX_HTTP_TS_NODE_LEN];
    size_t                                len;
    uint64_t                              pid;
    ngx_uint_t                            split;
    ngx_uint_t                            pool;
    uint64_t                              counts[NGX_HTTP_TS_BUCKETS + 1];
} ngx_http_traffic_shift_sync_seen_t;


static void ngx_http_traffic_shift_sync_counts_read(
    ngx_http_traffic_shift_etcd_t *e, json_t *json);
static void ngx_http_traffic_shift_sync_counts_node(
    ngx_http_traffic_shift_sync_rollouts_t *sr, json_t *doc,
    ngx_str_t *node, uint64_t pid);


ngx_int_t
ngx_http_traffic_shift_sync_counts_init(
    ngx_http_traffic_shift_sync_rollouts_t *sr, ngx_pool_t *pool)
{
    return ngx_array_init(&sr->seen, pool, 16,
                          sizeof(ngx_http_traffic_shift_sync_seen_t));
}


/* the node keys read, at most every NGX_HTTP_TS_SR_COLLECT_EVERY */

void
ngx_http_traffic_shift_sync_counts_collect(
    ngx_http_traffic_shift_sync_rollouts_t *sr)
{
    if ((ngx_msec_int_t) (ngx_current_msec - sr->collect) < 0) {
        return;
    }

    sr->collect = ngx_current_msec + NGX_HTTP_TS_SR_COLLECT_EVERY;
    sr->what = NGX_HTTP_TS_SR_COLLECT;
    sr->etcd.handler = ngx_http_traffic_shift_sync_counts_read;

    if (ngx_http_traffic_shift_sync_nodes(&sr->etcd, sr->mcf->sync)
        != NGX_OK)
    {
        sr->what = NGX_HTTP_TS_SR_IDLE;
    }
}


/* the node keys: the other nodes' counters added up */

static void
ngx_http_traffic_shift_sync_counts_read(ngx_http_traffic_shift_etcd_t *e,
    json_t *json)
{
    json_t                                  *nodes, *doc, *node;
    size_t                                   i;
    uint64_t                                 pid;
    ngx_str_t                                n;
    ngx_http_traffic_shift_sync_conf_t      *scf;
    ngx_http_traffic_shift_sync_rollouts_t  *sr;

    sr = e->data;
    sr->what = NGX_HTTP_TS_SR_IDLE;
    scf = sr->mcf->sync;

    if (json == NULL || e->status != NGX_HTTP_OK) {
        return;
    }

    nodes = ngx_http_traffic_shift_sync_nodes_json(e, json);

    json_array_foreach(nodes, i, doc) {
        node = json_object_get(doc, "node");

        if (node == NULL || !json_is_string(node)
            || ngx_http_traffic_shift_etcd_int(doc, "pid", &pid) != NGX_OK)
        {
            continue;
        }

        n.data = (u_char *) json_string_value(node);
        n.len = json_string_length(node);

        if (n.len == 0 || n.len > NGX_HTTP_TS_NODE_LEN
            || (n.len == scf->node.len
                && ngx_strncmp(n.data, scf->node.data, n.len) == 0))
        {
            continue;
        }

        ngx_http_traffic_shift_sync_counts_node(sr, doc, &n, pid);
    }

    json_decref(nodes);
}

/*
 * A node's counters, {"upstreams":{"app":{"counts":{"canary":[errors,
 * bucket 0, ...]}}}}: their increase since the last read is added to the
 * zone for the upstreams whose rollout this node drives.  A node seen for
 * the first time, or restarted (another pid, lower counters), counts from
 * now.
 */

static void
ngx_http_traffic_shift_sync_counts_node(
    ngx_http_traffic_shift_sync_rollouts_t *sr, json_t *doc,
    ngx_str_t *node, uint64_t pid)
{
    json_t                              *counts, *arr;
    uint64_t                             now[NGX_HTTP_TS_BUCKETS + 1];
    uint64_t                             delta[NGX_HTTP_TS_BUCKETS + 1];
    uint64_t                             n;
    ngx_uint_t                           i, j, k, fresh;
    ngx_http_traffic_shift_pool_t       *pool;
    ngx_http_traffic_shift_split_t     **splitp;
    ngx_http_traffic_shift_sync_seen_t  *seen, *s;

    splitp = sr->mcf->splits.elts;

    for (i = 0; i < sr->mcf->splits.nelts; i++) {
        if (splitp[i]->sh == NULL || splitp[i]->sh->fleet_claim == 0
            || splitp[i]->sh->rollout.state != NGX_HTTP_TS_RO_PROGRESSING)
        {
            continue;
        }

        counts = json_object_get(json_object_getn(
                                     json_object_get(doc, "upstreams"),
                                     (char *) splitp[i]->name.data,
                                     splitp[i]->name.len),
                                 "counts");
        pool = splitp[i]->pools.elts;

        for (j = 0; j < splitp[i]->pools.nelts; j++) {
            arr = json_object_getn(counts, (char *) pool[j].name.data,
                                   pool[j].name.len);

            if (!json_is_array(arr)
                || json_array_size(arr) != NGX_HTTP_TS_BUCKETS + 1)
            {
                continue;
            }

            for (k = 0; k <= NGX_HTTP_TS_BUCKETS; k++) {
                now[k] = json_is_integer(json_array_get(arr, k))
                         ? (uint64_t) json_integer_value(
                                          json_array_get(arr, k))
                         : 0;
            }

            seen = sr->seen.elts;
            s = NULL;

            for (k = 0; k < sr->seen.nelts; k++) {
                if (seen[k].split == i && seen[k].pool == j
                    && seen[k].len == node->len
                    && ngx_strncmp(seen[k].node, node->data, node->len) == 0)
                {
                    s = &seen[k];
                    break;
                }
            }

            if (s == NULL) {
                if (sr->seen.nelts >= NGX_HTTP_TS_SR_MAX_SEEN) {
                    sr->seen.nelts = 0;
                }

                s = ngx_array_push(&sr->seen);
                if (s == NULL) {
                    return;
                }

                ngx_memcpy(s->node, node->data, node->len);
                s->len = node->len;
                s->split = i;
                s->pool = j;
                s->pid = pid;
                ngx_memcpy(s->counts, now, sizeof(now));
                continue;
            }

            fresh = (s->pid != pid);
            n = 0;

            for (k = 0; k <= NGX_HTTP_TS_BUCKETS; k++) {
                fresh |= (now[k] < s->counts[k]);
                delta[k] = now[k] - s->counts[k];
                n += k ? delta[k] : 0;
            }

            s->pid = pid;
            ngx_memcpy(s->counts, now, sizeof(now));

            if (fresh || n == 0) {
                continue;
            }

            ngx_http_traffic_shift_zone_sync_count(splitp[i], j, delta[0],
                                                   &delta[1]);

            if (j == splitp[i]->sh->rollout.pool) {
                /* the fast abort: at most a window's worth, as a ratio */
                k = ngx_max(splitp[i]->sh->rollout.fa_window, 1);

                ngx_http_traffic_shift_zone_rollout_count(sr->mcf, splitp[i],
                                   ngx_min(n, k),
                                   (ngx_uint_t) (ngx_min(delta[0], n)
                                                 * ngx_min(n, k) / n),
                                   sr->etcd.log);
            }
        }
    }
}

/* the other nodes' counters of upstream "i" last read: forgotten */

void
ngx_http_traffic_shift_sync_counts_forget(
    ngx_http_traffic_shift_sync_rollouts_t *sr, ngx_uint_t i)
{
    ngx_uint_t                           k, n;
    ngx_http_traffic_shift_sync_seen_t  *seen;

    seen = sr->seen.elts;
    n = 0;

    for (k = 0; k < sr->seen.nelts; k++) {
        if (seen[k].split != i) {
            seen[n++] = seen[k];
        }
    }

    sr->seen.nelts = n;
}
