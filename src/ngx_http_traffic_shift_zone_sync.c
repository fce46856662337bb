
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
 * Weights read from etcd at "revision": published as that generation,
 * unless this revision (or a later one) was applied already: NGX_DECLINED.
 * NGX_ABORT: a reload gave the upstream other pools, or retired the zone.
 * A rollout that progresses here is ended (aborted): the fleet's state
 * wins over a local one.
 */

ngx_int_t
ngx_http_traffic_shift_zone_sync_apply(ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_split_t *split, ngx_uint_t *weights,
    ngx_uint_t revision, ngx_http_traffic_shift_change_t *change)
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

    if (rec->sync_revision >= revision) {
        ngx_shmtx_unlock(&mcf->shpool->mutex);
        return NGX_DECLINED;
    }

    cur = &rec->copy[rec->current & 1];

    change->old = *cur;
    change->rollout_aborted = 0;

    change->new.npools = split->pools.nelts;
    change->new.source = NGX_HTTP_TS_SRC_API;
    change->new.updated = ngx_time();
    change->new.generation = revision;

    for (i = 0; i < split->pools.nelts; i++) {
        change->new.weights[i] = weights[i];
    }

    ro = &rec->rollout;

    if (ro->state == NGX_HTTP_TS_RO_PROGRESSING
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
