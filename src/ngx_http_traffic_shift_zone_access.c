
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#include "ngx_http_traffic_shift_zone.h"


/*
 * The zone at run time: lock-free reads of the weights, and every change
 * of a record, each under the slab pool's mutex (the locking rules are in
 * ngx_http_traffic_shift.h, field by field).
 */


/*
 * A consistent copy of the published weights, without a lock.  A writer
 * only fills the copy not in use, so once a writer has stayed inside its
 * section for a while (stalled, or dead with the sequence odd) the
 * published copy is read anyway, valid as long as neither the sequence nor
 * "current" moved meanwhile.  Should that never settle, the slab mutex
 * ends the wait: no writer is inside its section while it is held.
 */

ngx_int_t
ngx_http_traffic_shift_zone_read(ngx_http_traffic_shift_split_t *split,
    ngx_http_traffic_shift_weights_t *w)
{
    ngx_uint_t                          n;
    ngx_atomic_uint_t                   seq, cur;
    ngx_http_traffic_shift_sh_split_t  *rec;

    rec = split->sh;

    for (n = 0; n < 128; n++) {
        seq = rec->seq;

        if ((seq & 1) && n < 64) {
            ngx_cpu_pause();
            continue;
        }

        ngx_memory_barrier();

        if (rec->layout != split->layout) {
            return NGX_DECLINED;
        }

        cur = rec->current;
        *w = rec->copy[cur & 1];

        ngx_memory_barrier();

        if (rec->seq == seq && rec->current == cur) {
            return NGX_OK;
        }
    }

    ngx_shmtx_lock(&split->shpool->mutex);

    if (rec->seq & 1) {
        rec->seq++;
    }

    if (rec->layout != split->layout) {
        ngx_shmtx_unlock(&split->shpool->mutex);
        return NGX_DECLINED;
    }

    *w = rec->copy[rec->current & 1];

    ngx_shmtx_unlock(&split->shpool->mutex);

    return NGX_OK;
}


/* under the slab mutex, inside the seqlock */

void
ngx_http_traffic_shift_zone_publish(ngx_http_traffic_shift_sh_split_t *rec,
    ngx_http_traffic_shift_weights_t *w)
{
    ngx_uint_t  next;

    next = (rec->current & 1) ^ 1;

    rec->copy[next] = *w;

    ngx_memory_barrier();

    rec->current = next;
    rec->generation = w->generation;
}


ngx_int_t
ngx_http_traffic_shift_zone_set_weights(
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_split_t *split, ngx_uint_t *weights,
    ngx_uint_t source, ngx_uint_t if_match, ngx_uint_t force,
    ngx_http_traffic_shift_change_t *change)
{
    ngx_uint_t                          i, n;
    ngx_http_traffic_shift_pool_t      *pool;
    ngx_http_traffic_shift_sh_split_t  *rec;

    rec = split->sh;
    pool = split->pools.elts;
    n = split->pools.nelts;

    ngx_shmtx_lock(&mcf->shpool->mutex);

    if (rec->seq & 1) {
        /* a writer died inside the section: repair before reading */
        rec->seq++;
    }

    if (rec->layout != split->layout || mcf->sh->retired) {
        /* a reload gave this upstream other pools, or another zone */
        ngx_shmtx_unlock(&mcf->shpool->mutex);
        return NGX_ABORT;
    }

    change->old = rec->copy[rec->current & 1];

    if (if_match && if_match != change->old.generation) {
        ngx_shmtx_unlock(&mcf->shpool->mutex);
        return NGX_DECLINED;
    }

    /*
     * a progressing rollout owns the weights: a change through the API
     * needs "force", which ends the rollout, aborted, in this same change
     */

    if (rec->rollout.state == NGX_HTTP_TS_RO_PROGRESSING
        && source == NGX_HTTP_TS_SRC_API)
    {
        if (!force) {
            ngx_shmtx_unlock(&mcf->shpool->mutex);
            return NGX_AGAIN;
        }

        rec->rollout.active = 0;
        rec->rollout.state = NGX_HTTP_TS_RO_ABORTED;
        rec->rollout.ended = ngx_time();
        rec->rollout.results[NGX_HTTP_TS_RO_ABORTED]++;
        ngx_cpystrn(rec->rollout.reason,
                    (u_char *) "weights forced through the API",
                    NGX_HTTP_TS_RO_REASON_LEN);
        change->rollout_aborted = 1;
    }

    if (!force) {
        for (i = 0; i < n; i++) {
            if (weights[i]
                && ngx_http_traffic_shift_zone_live(pool[i].ups) == 0)
            {
                change->dead_pool = i;
                ngx_shmtx_unlock(&mcf->shpool->mutex);
                return NGX_BUSY;
            }
        }
    }

    change->new.generation = change->old.generation + 1;
    change->new.source = source;
    change->new.updated = ngx_time();
    change->new.npools = n;

    for (i = 0; i < n; i++) {
        change->new.weights[i] = weights[i];
    }

    ngx_http_traffic_shift_write_begin(&rec->seq);
    ngx_http_traffic_shift_zone_publish(rec, &change->new);
    ngx_http_traffic_shift_write_end(&rec->seq);

    ngx_http_traffic_shift_zone_changed(mcf);

    ngx_shmtx_unlock(&mcf->shpool->mutex);

    return NGX_OK;
}


ngx_uint_t
ngx_http_traffic_shift_zone_server_live(ngx_http_traffic_shift_server_t *server)
{
    return !server->conf_down
           && !server->sh->admin_down
           && !server->sh->ejected
           && server->sh->state != NGX_HTTP_TS_DOWN;
}


ngx_uint_t
ngx_http_traffic_shift_zone_live(ngx_http_traffic_shift_upstream_t *ups)
{
    ngx_uint_t  i, n;

    n = 0;

    for (i = 0; i < ups->nservers; i++) {
        n += ngx_http_traffic_shift_zone_server_live(&ups->servers[i]);
    }

    return n;
}


/*
 * An admin mark, set through the API or restored from the state file:
 * "if_match", when not 0, is the zone version the client saw; a newer one
 * declines.  "version", when not NULL, gets the zone version after it.
 * NGX_ABORT: the zone was replaced by a reload.
 */

ngx_int_t
ngx_http_traffic_shift_zone_admin_down(
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_server_t *server, ngx_uint_t down,
    ngx_uint_t if_match, ngx_uint_t *version)
{
    ngx_shmtx_lock(&mcf->shpool->mutex);

    if (mcf->sh->retired) {
        ngx_shmtx_unlock(&mcf->shpool->mutex);
        return NGX_ABORT;
    }

    if (if_match && if_match != mcf->sh->version) {
        if (version) {
            *version = mcf->sh->version;
        }

        ngx_shmtx_unlock(&mcf->shpool->mutex);
        return NGX_DECLINED;
    }

    /*
     * a conditional change always moves the version, even when it changes
     * nothing: of two writers holding the same ETag, one wins
     */

    if (!ngx_http_traffic_shift_zone_mark_locked(mcf, server->sh, down)
        && if_match)
    {
        ngx_http_traffic_shift_zone_changed(mcf);
    }

    if (version) {
        *version = mcf->sh->version;
    }

    ngx_shmtx_unlock(&mcf->shpool->mutex);

    return NGX_OK;
}


/*
 * Under the mutex: the admin mark of a server set or cleared, through the
 * API, the state file or the fleet.  1 if it changed (the zone's version
 * moved), 0 if it was so already.
 */

ngx_uint_t
ngx_http_traffic_shift_zone_mark_locked(
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_sh_server_t *sh, ngx_uint_t down)
{
    if (sh->admin_down == down) {
        return 0;
    }

    if (sh->admin_down && !down) {
        ngx_http_traffic_shift_zone_server_up(sh);
    }

    sh->admin_down = down;
    ngx_http_traffic_shift_zone_changed(mcf);

    return 1;
}


/*
 * Weights restored from the state file at start: they keep their saved
 * generation unless the zone is past it, and never go below the floor.
 * "updated" 0 keeps the time of the record.
 */

ngx_int_t
ngx_http_traffic_shift_zone_restore(ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_split_t *split, ngx_uint_t *weights,
    ngx_uint_t source, ngx_uint_t generation, time_t updated)
{
    ngx_uint_t                          i;
    ngx_http_traffic_shift_weights_t    w, *cur;
    ngx_http_traffic_shift_sh_split_t  *rec;

    rec = split->sh;

    ngx_shmtx_lock(&mcf->shpool->mutex);

    if (rec->layout != split->layout) {
        ngx_shmtx_unlock(&mcf->shpool->mutex);
        return NGX_ABORT;
    }

    if (rec->seq & 1) {
        rec->seq++;
    }

    cur = &rec->copy[rec->current & 1];

    w.npools = split->pools.nelts;
    w.source = source;
    w.updated = updated ? updated : cur->updated;
    w.generation = ngx_max(generation, cur->generation);
    w.generation = ngx_max(w.generation, mcf->sh->floor + 1);

    for (i = 0; i < split->pools.nelts; i++) {
        w.weights[i] = weights[i];
    }

    ngx_http_traffic_shift_write_begin(&rec->seq);
    ngx_http_traffic_shift_zone_publish(rec, &w);
    ngx_http_traffic_shift_write_end(&rec->seq);

    ngx_http_traffic_shift_zone_changed(mcf);

    ngx_shmtx_unlock(&mcf->shpool->mutex);

    return NGX_OK;
}


void
ngx_http_traffic_shift_zone_set_floor(ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_uint_t floor)
{
    ngx_shmtx_lock(&mcf->shpool->mutex);

    if (floor > mcf->sh->floor) {
        mcf->sh->floor = floor;
    }

    ngx_shmtx_unlock(&mcf->shpool->mutex);
}


/*
 * A probe's result, under the zone's mutex: "fails" consecutive failures
 * mark the server down, "passes" consecutive successes bring it back.
 * Returns 1 when the state changed (published to the workers), with the
 * count of consecutive results in "n".
 */

ngx_uint_t
ngx_http_traffic_shift_zone_probe(ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_sh_server_t *sh, ngx_uint_t result, char *reason,
    ngx_uint_t fails, ngx_uint_t passes, ngx_uint_t *n)
{
    ngx_uint_t  flip;

    flip = 0;

    ngx_shmtx_lock(&mcf->shpool->mutex);

    sh->last_probe = ngx_time();
    sh->probes[result]++;

    if (result == NGX_HTTP_TS_PROBE_OK) {
        sh->fails = 0;
        sh->passes++;
        *n = sh->passes;

        if (sh->state == NGX_HTTP_TS_DOWN && sh->passes >= passes) {
            sh->state = NGX_HTTP_TS_UP;
            ngx_http_traffic_shift_zone_server_up(sh);
            flip = 1;
        }

        /* a passing probe ends an ejection */

        if (sh->ejected) {
            sh->ejected = 0;
            sh->back_msec = ngx_current_msec;
            ngx_http_traffic_shift_zone_server_up(sh);
            ngx_http_traffic_shift_zone_changed(mcf);

            ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                          "traffic_shift: server \"%V\" is back from its "
                          "ejection: a health check passed", &sh->key);
        }

    } else {
        sh->passes = 0;
        sh->fails++;
        *n = sh->fails;

        ngx_cpystrn(sh->last_error, (u_char *) reason, NGX_HTTP_TS_ERR_LEN);

        if (sh->state != NGX_HTTP_TS_DOWN && sh->fails >= fails) {
            sh->state = NGX_HTTP_TS_DOWN;
            flip = 1;
        }
    }

    if (flip) {
        ngx_http_traffic_shift_zone_changed(mcf);
    }

    ngx_shmtx_unlock(&mcf->shpool->mutex);

    return flip;
}


/* a worker that stops probing a server lets another one take it over */

void
ngx_http_traffic_shift_zone_release(ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_sh_server_t *sh)
{
    ngx_shmtx_lock(&mcf->shpool->mutex);

    if (sh->lease_pid == ngx_pid) {
        sh->lease_pid = 0;
        sh->lease_expire = 0;
    }

    ngx_shmtx_unlock(&mcf->shpool->mutex);
}


/* the outlier and slow start fields of a record: anew, or as in another */

void
ngx_http_traffic_shift_zone_server_reset(ngx_http_traffic_shift_sh_server_t *sh)
{
    sh->c5xx = 0;
    sh->cgateway = 0;
    sh->win_start = 0;
    sh->win_total = 0;
    sh->win_fail = 0;
    sh->ejected = 0;
    sh->ejections = 0;
    sh->eject_until = 0;
    sh->eject_for = 0;
    sh->eject_time = 0;
    sh->eject_level = 0;
    sh->eject_why = 0;
    sh->back_msec = 0;
    sh->ramp = 0;
    sh->up_msec = 0;
}


void
ngx_http_traffic_shift_zone_server_copy(ngx_http_traffic_shift_sh_server_t *sh,
    ngx_http_traffic_shift_sh_server_t *src)
{
    sh->c5xx = 0;
    sh->cgateway = 0;
    sh->win_start = 0;
    sh->win_total = 0;
    sh->win_fail = 0;
    sh->ejected = src->ejected;
    sh->ejections = src->ejections;
    sh->eject_until = src->eject_until;
    sh->eject_for = src->eject_for;
    sh->eject_time = src->eject_time;
    sh->eject_level = src->eject_level;
    sh->eject_why = src->eject_why;
    sh->back_msec = src->back_msec;
    sh->ramp = src->ramp;
    sh->up_msec = src->up_msec;
}


/*
 * A lease of one worker among all (the rollout driver, the fleet's
 * watch): NGX_OK while this worker holds it, taken when it is free,
 * expired or its own and kept "lease" ms more; "release" gives it back.
 */

ngx_int_t
ngx_http_traffic_shift_zone_lease(ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_lease_t *l, ngx_msec_t lease, ngx_uint_t release)
{
    ngx_int_t  rc;

    rc = NGX_DECLINED;

    ngx_shmtx_lock(&mcf->shpool->mutex);

    if (release) {
        if (l->pid == ngx_pid) {
            l->pid = 0;
            l->expire = 0;
        }

    } else if (l->pid == ngx_pid || l->pid == 0
               || (ngx_msec_int_t) (l->expire - ngx_current_msec) < 0)
    {
        l->pid = ngx_pid;
        l->expire = ngx_current_msec + lease;
        rc = NGX_OK;
    }

    ngx_shmtx_unlock(&mcf->shpool->mutex);

    return rc;
}
