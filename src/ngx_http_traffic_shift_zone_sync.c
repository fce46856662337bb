
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#include "ngx_http_traffic_shift_zone.h"


/*
 * Fleet mode in the zone: the weights that come from etcd, applied with
 * the key's mod revision as their generation, and the servers' admin
 * marks with the revision of their key, under the slab mutex (the
 * lease of the worker that holds the node's one watch is
 * ngx_http_traffic_shift_zone_lease()).
 */


/*
 * Weights read from etcd at "revision" (from "source": the fleet, or this
 * node's API): published as that generation,
 * unless this revision (or a later one) was applied already: NGX_DECLINED.
 * NGX_ABORT: a reload gave the upstream other pools, or retired the zone.
 * A rollout that progresses here is ended (aborted): the fleet's state
 * wins over a local one; weights equal to those applied change only the
 * generation (the fleet took this node's own change, a rollout's step).
 * The source says where a change was made: "api" on the node whose API
 * made it, "fleet" on the others.
 */

ngx_int_t
ngx_http_traffic_shift_zone_sync_apply(ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_split_t *split, ngx_uint_t *weights,
    ngx_uint_t revision, ngx_uint_t source,
    ngx_http_traffic_shift_change_t *change)
{
    ngx_uint_t                           i;
    ngx_http_traffic_shift_weights_t    *cur;
    ngx_http_traffic_shift_sh_split_t   *rec;
    ngx_http_traffic_shift_sh_rollout_t *ro;

    rec = split->sh;

    ngx_shmtx_lock(&mcf->shpool->mutex);

    if (rec->seq & 1) {
        rec->seq++;
    }

    if (rec->layout != split->layout || mcf->sh->retired) {
        ngx_shmtx_unlock(&mcf->shpool->mutex);
        return NGX_ABORT;
    }

    cur = &rec->copy[rec->current & 1];

    if (rec->sync_revision >= revision) {

        if (rec->sync_revision == revision && cur->generation == revision
            && source == NGX_HTTP_TS_SRC_API && cur->source != source)
        {
            /* the watch came first with this node's own change */
            change->new = *cur;
            change->new.source = source;

            ngx_http_traffic_shift_write_begin(&rec->seq);
            ngx_http_traffic_shift_zone_publish(rec, &change->new);
            ngx_http_traffic_shift_write_end(&rec->seq);
        }

        ngx_shmtx_unlock(&mcf->shpool->mutex);
        return NGX_DECLINED;
    }

    change->old = *cur;
    change->rollout_aborted = 0;

    change->new.npools = split->pools.nelts;
    change->new.source = source;
    change->new.updated = ngx_time();
    change->new.generation = revision;

    for (i = 0; i < split->pools.nelts; i++) {
        change->new.weights[i] = weights[i];
    }

    ro = &rec->rollout;

    for (i = 0; i < split->pools.nelts; i++) {
        if (cur->weights[i] != weights[i]) {
            break;
        }
    }

    if (i == split->pools.nelts) {
        change->new.source = cur->source;

    } else if (ro->state == NGX_HTTP_TS_RO_PROGRESSING
               || ro->state == NGX_HTTP_TS_RO_PAUSED)
    {
        ro->active = 0;
        ro->state = NGX_HTTP_TS_RO_ABORTED;
        ro->ended = ngx_time();
        ro->results[NGX_HTTP_TS_RO_ABORTED]++;
        (void) ngx_cpystrn(ro->reason,
                           (u_char *) "ended by a change from the fleet",
                           NGX_HTTP_TS_RO_REASON_LEN);
        mcf->sh->ro_changed = 1;
        change->rollout_aborted = 1;
    }

    ngx_http_traffic_shift_write_begin(&rec->seq);
    ngx_http_traffic_shift_zone_publish(rec, &change->new);
    ngx_http_traffic_shift_write_end(&rec->seq);

    rec->sync_revision = revision;

    ngx_http_traffic_shift_zone_changed(mcf);

    ngx_shmtx_unlock(&mcf->shpool->mutex);

    return NGX_OK;
}


/*
 * What the worker holding the watch learnt of the fleet's rollout of an
 * upstream: the node driving it ("node" NULL: none, or this node).
 */

void
ngx_http_traffic_shift_zone_sync_driver(
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_split_t *split, ngx_str_t *node)
{
    ngx_http_traffic_shift_sh_split_t  *rec;

    rec = split->sh;

    ngx_shmtx_lock(&mcf->shpool->mutex);

    if (rec->layout == split->layout) {
        rec->fleet_driver_len = 0;

        if (node && node->len && node->len <= NGX_HTTP_TS_NODE_LEN) {
            ngx_memcpy(rec->fleet_driver, node->data, node->len);
            rec->fleet_driver_len = node->len;
        }
    }

    ngx_shmtx_unlock(&mcf->shpool->mutex);
}


/* the node driving a rollout here, if another one: into "node", or 0 */

size_t
ngx_http_traffic_shift_zone_sync_driven(
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_split_t *split, u_char *node)
{
    size_t                              len;
    ngx_http_traffic_shift_sh_split_t  *rec;

    rec = split->sh;

    ngx_shmtx_lock(&mcf->shpool->mutex);

    len = (rec->layout == split->layout) ? rec->fleet_driver_len : 0;
    ngx_memcpy(node, rec->fleet_driver, len);

    ngx_shmtx_unlock(&mcf->shpool->mutex);

    return len;
}


/*
 * The state of this node's rollout in etcd, read ("get") or written: its
 * key's create revision, the id, step, state and generation written last.
 */

void
ngx_http_traffic_shift_zone_sync_claim(ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_split_t *split, ngx_uint_t *claim, ngx_uint_t get)
{
    ngx_http_traffic_shift_sh_split_t  *rec;

    rec = split->sh;

    ngx_shmtx_lock(&mcf->shpool->mutex);

    if (get) {
        claim[0] = rec->fleet_claim;
        claim[1] = rec->fleet_id;
        claim[2] = rec->fleet_step;
        claim[3] = rec->fleet_state;
        claim[4] = rec->fleet_generation;

    } else if (rec->layout == split->layout) {
        rec->fleet_claim = claim[0];
        rec->fleet_id = claim[1];
        rec->fleet_step = claim[2];
        rec->fleet_state = claim[3];
        rec->fleet_generation = claim[4];
    }

    ngx_shmtx_unlock(&mcf->shpool->mutex);
}


/*
 * another node's responses of pool "i", added for the analysis of the
 * rollout that progresses: to its canary's or its baseline's
 */

void
ngx_http_traffic_shift_zone_sync_count(ngx_http_traffic_shift_split_t *split,
    ngx_uint_t i, uint64_t errors, uint64_t *buckets)
{
    ngx_uint_t                            b;
    ngx_http_traffic_shift_sh_fleet_t    *fleet;
    ngx_http_traffic_shift_sh_rollout_t  *ro;

    ro = &split->sh->rollout;

    if (split->sh->layout != split->layout
        || ro->state != NGX_HTTP_TS_RO_PROGRESSING)
    {
        return;
    }

    if (i == ro->pool) {
        fleet = &ro->fleet[0];

    } else if (ro->baseline & ((ngx_uint_t) 1 << i)) {
        fleet = &ro->fleet[1];

    } else {
        return;
    }

    (void) ngx_atomic_fetch_add(&fleet->errors, (ngx_atomic_int_t) errors);

    for (b = 0; b < NGX_HTTP_TS_BUCKETS; b++) {
        if (buckets[b]) {
            (void) ngx_atomic_fetch_add(&fleet->buckets[b],
                                        (ngx_atomic_int_t) buckets[b]);
        }
    }
}


/*
 * An admin mark read from etcd (or put there by this node's API) at
 * "revision": set or cleared unless this revision of the server's key, or
 * a later one, was applied already (NGX_DECLINED).  NGX_OK: the mark
 * changed; NGX_DONE: it was so already.  NGX_ABORT: the zone was replaced
 * by a reload.  "version" gets the zone's version after it.
 */

ngx_int_t
ngx_http_traffic_shift_zone_sync_down(ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_server_t *server, ngx_uint_t down,
    uint64_t revision, ngx_uint_t *version)
{
    ngx_int_t  rc;

    ngx_shmtx_lock(&mcf->shpool->mutex);

    if (mcf->sh->retired) {
        ngx_shmtx_unlock(&mcf->shpool->mutex);
        return NGX_ABORT;
    }

    if (server->sh->sync_revision >= revision) {
        rc = NGX_DECLINED;

    } else {
        server->sh->sync_revision = revision;

        rc = ngx_http_traffic_shift_zone_mark_locked(mcf, server->sh, down)
             ? NGX_OK : NGX_DONE;
    }

    *version = mcf->sh->version;

    ngx_shmtx_unlock(&mcf->shpool->mutex);

    return rc;
}
