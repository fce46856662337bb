
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#include "ngx_http_traffic_shift_zone.h"
#include "ngx_http_traffic_shift_lib.h"


/*
 * Rollouts in the zone: every change of a rollout, and the weights it
 * sets, under the slab mutex, each in one change of the weights (one
 * generation).  The log phase counts the canary's responses in the
 * fast-abort window without a lock.
 */


#define NGX_HTTP_TS_RO_BITS  (8 * sizeof(ngx_atomic_t))


static ngx_int_t ngx_http_traffic_shift_zone_rollout_check(
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_split_t *split, ngx_uint_t if_match,
    ngx_http_traffic_shift_change_t *change);
static void ngx_http_traffic_shift_zone_rollout_weights(
    ngx_http_traffic_shift_sh_rollout_t *ro, ngx_uint_t weight,
    ngx_uint_t *weights);
static void ngx_http_traffic_shift_zone_rollout_apply(
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_sh_split_t *rec, ngx_uint_t *weights,
    ngx_http_traffic_shift_change_t *change);
static void ngx_http_traffic_shift_zone_rollout_enter(
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_sh_split_t *rec,
    ngx_http_traffic_shift_change_t *change);
static void ngx_http_traffic_shift_zone_rollout_open(
    ngx_http_traffic_shift_sh_split_t *rec);
static void ngx_http_traffic_shift_zone_rollout_finish(
    ngx_http_traffic_shift_sh_rollout_t *ro, ngx_uint_t state,
    ngx_http_traffic_shift_ro_step_t *entry, u_char *reason, size_t len);


/*
 * Under the mutex: the record is this configuration's, the zone is not
 * retired (NGX_ABORT), and If-Match, when given, is the generation
 * (NGX_HTTP_PRECONDITION_FAILED).
 */

static ngx_int_t
ngx_http_traffic_shift_zone_rollout_check(
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_split_t *split, ngx_uint_t if_match,
    ngx_http_traffic_shift_change_t *change)
{
    ngx_http_traffic_shift_sh_split_t  *rec;

    rec = split->sh;

    if (rec->seq & 1) {
        rec->seq++;
    }

    if (rec->layout != split->layout || mcf->sh->retired) {
        return NGX_ABORT;
    }

    change->old = rec->copy[rec->current & 1];
    change->new = change->old;

    if (if_match && if_match != change->old.generation) {
        return NGX_HTTP_PRECONDITION_FAILED;
    }

    return NGX_OK;
}


/*
 * Starts a rollout described by "conf" (its settings: pool, baseline,
 * steps, interval and limits): NGX_OK with the first step's change,
 * NGX_AGAIN if one runs, NGX_BUSY if the pool has no live server,
 * NGX_ERROR if the steps leave no room for the pools outside the rollout.
 */

ngx_int_t
ngx_http_traffic_shift_zone_rollout_start(
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_split_t *split,
    ngx_http_traffic_shift_sh_rollout_t *conf, ngx_uint_t if_match,
    ngx_http_traffic_shift_change_t *change)
{
    ngx_int_t                             rc;
    ngx_uint_t                            i, others, results[
                                              NGX_HTTP_TS_RO_STATES];
    ngx_http_traffic_shift_pool_t        *pool;
    ngx_http_traffic_shift_sh_split_t    *rec;
    ngx_http_traffic_shift_sh_rollout_t  *ro;

    rec = split->sh;
    ro = &rec->rollout;
    pool = split->pools.elts;

    ngx_shmtx_lock(&mcf->shpool->mutex);

    rc = ngx_http_traffic_shift_zone_rollout_check(mcf, split, if_match,
                                                   change);
    if (rc != NGX_OK) {
        goto done;
    }

    if (ro->state == NGX_HTTP_TS_RO_PROGRESSING
        || ro->state == NGX_HTTP_TS_RO_PAUSED
        || rec->fleet_driver_len)
    {
        /* here, or on another node of the fleet */
        rc = NGX_AGAIN;
        goto done;
    }

    if (ngx_http_traffic_shift_zone_live(pool[conf->pool].ups) == 0) {
        change->dead_pool = conf->pool;
        rc = NGX_BUSY;
        goto done;
    }

    others = 0;

    for (i = 0; i < rec->npools; i++) {
        if (i != conf->pool && !(conf->baseline & ((ngx_uint_t) 1 << i))) {
            others += change->old.weights[i];
        }
    }

    if (conf->steps[conf->nsteps - 1] + others > NGX_HTTP_TS_TOTAL) {
        rc = NGX_ERROR;
        goto done;
    }

    ro->active = 0;
    ngx_memory_barrier();

    ngx_memcpy(results, ro->results, sizeof(results));

    ngx_memcpy(ro, conf, sizeof(ngx_http_traffic_shift_sh_rollout_t));

    ngx_memcpy(ro->results, results, sizeof(results));

    ro->active = 0;
    ro->fa_pos = 0;
    ro->fa_errors = 0;
    ngx_memzero((void *) ro->fa_bits, sizeof(ro->fa_bits));

    ro->state = NGX_HTTP_TS_RO_PROGRESSING;
    ro->id = ++mcf->sh->ro_next_id;
    ro->step = 0;
    ro->started = ngx_time();
    ro->ended = 0;
    ro->nhistory = 0;
    ro->npools = rec->npools;

    for (i = 0; i < rec->npools; i++) {
        ro->before[i] = change->old.weights[i];
    }

    ngx_http_traffic_shift_zone_rollout_enter(mcf, rec, change);

done:

    ngx_shmtx_unlock(&mcf->shpool->mutex);

    return rc;
}


/*
 * The weights of a step: the pool gets "weight", pools outside the
 * rollout keep theirs, the baseline pools share the rest in their
 * proportions before the rollout (evenly if they had none).
 */

static void
ngx_http_traffic_shift_zone_rollout_weights(
    ngx_http_traffic_shift_sh_rollout_t *ro, ngx_uint_t weight,
    ngx_uint_t *weights)
{
    ngx_uint_t  i, rest, sum, nbase, given, last;

    rest = NGX_HTTP_TS_TOTAL - weight;
    sum = 0;
    nbase = 0;
    last = ro->npools;

    for (i = 0; i < ro->npools; i++) {
        if (i == ro->pool) {
            weights[i] = weight;

        } else if (ro->baseline & ((ngx_uint_t) 1 << i)) {
            sum += ro->before[i];
            nbase++;
            last = i;

        } else {
            weights[i] = ro->before[i];
            rest -= ro->before[i];
        }
    }

    given = 0;

    for (i = 0; i < ro->npools; i++) {
        if (i == ro->pool || !(ro->baseline & ((ngx_uint_t) 1 << i))) {
            continue;
        }

        weights[i] = sum ? rest * ro->before[i] / sum : rest / nbase;
        given += weights[i];
    }

    /* what the divisions left goes to the last baseline pool */

    if (last < ro->npools) {
        weights[last] += rest - given;
    }
}


/* under the mutex, inside the seqlock: one change of the weights */

static void
ngx_http_traffic_shift_zone_rollout_apply(
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_sh_split_t *rec, ngx_uint_t *weights,
    ngx_http_traffic_shift_change_t *change)
{
    ngx_uint_t  i;

    change->old = rec->copy[rec->current & 1];
    change->new = change->old;

    change->new.generation = change->old.generation + 1;
    change->new.source = NGX_HTTP_TS_SRC_API;
    change->new.updated = ngx_time();
    change->new.npools = rec->npools;

    for (i = 0; i < rec->npools; i++) {
        change->new.weights[i] = weights[i];
    }

    ngx_http_traffic_shift_write_begin(&rec->seq);
    ngx_http_traffic_shift_zone_publish(rec, &change->new);
    ngx_http_traffic_shift_write_end(&rec->seq);

    ngx_http_traffic_shift_zone_changed(mcf);
}


/*
 * Under the mutex: the current step begins (again), with a fresh window,
 * its weights set in one change; the log phase then counts the pool's
 * responses for the fast abort.
 */

static void
ngx_http_traffic_shift_zone_rollout_enter(
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_sh_split_t *rec,
    ngx_http_traffic_shift_change_t *change)
{
    ngx_uint_t                            weights[NGX_HTTP_TS_MAX_POOLS];
    ngx_http_traffic_shift_sh_rollout_t  *ro;

    ro = &rec->rollout;

    ro->step_started = ngx_time();
    ro->step_msec = ngx_current_msec;
    ro->holding = 0;
    ro->reason[0] = '\0';

    ngx_http_traffic_shift_zone_rollout_open(rec);

    ngx_http_traffic_shift_zone_rollout_weights(ro, ro->steps[ro->step],
                                                weights);
    ngx_http_traffic_shift_zone_rollout_apply(mcf, rec, weights, change);

    ngx_memory_barrier();

    ro->active = ro->pool + 1;

    mcf->sh->ro_changed = 1;
}


/* the counters when a step's window opens */

static void
ngx_http_traffic_shift_zone_rollout_open(
    ngx_http_traffic_shift_sh_split_t *rec)
{
    ngx_http_traffic_shift_sh_rollout_t  *ro;

    ro = &rec->rollout;

    ngx_http_traffic_shift_zone_rollout_counts(rec, ro, 0, &ro->base[0]);
    ngx_http_traffic_shift_zone_rollout_counts(rec, ro, 1, &ro->base[1]);
}


/*
 * The counters of a rollout's canary pool ("k" 0) or of its baseline
 * pools added up (1), read without a lock; in fleet mode, with the other
 * nodes' (on the driving node)
 */

void
ngx_http_traffic_shift_zone_rollout_counts(
    ngx_http_traffic_shift_sh_split_t *rec,
    ngx_http_traffic_shift_sh_rollout_t *ro, ngx_uint_t k,
    ngx_http_traffic_shift_counts_t *counts)
{
    ngx_uint_t                          i, b, mask;
    ngx_http_traffic_shift_sh_pool_t   *shp;
    ngx_http_traffic_shift_sh_fleet_t  *fleet;

    mask = k ? ro->baseline : (ngx_uint_t) 1 << ro->pool;
    fleet = &rec->rollout.fleet[k ? 1 : 0];

    counts->errors = fleet->errors;

    for (b = 0; b < NGX_HTTP_TS_BUCKETS; b++) {
        counts->buckets[b] = fleet->buckets[b];
    }

    for (i = 0; i < rec->npools && i < NGX_HTTP_TS_MAX_POOLS; i++) {

        if (!(mask & ((ngx_uint_t) 1 << i))) {
            continue;
        }

        shp = &rec->pools[i];

        counts->errors += shp->errors;

        for (b = 0; b < NGX_HTTP_TS_BUCKETS; b++) {
            counts->buckets[b] += shp->buckets[b];
        }
    }
}


/*
 * The counters of the current window of a rollout: the canary pool and
 * the baseline, read without a lock, less those at the window's start.
 */

void
ngx_http_traffic_shift_zone_rollout_window(
    ngx_http_traffic_shift_sh_split_t *rec,
    ngx_http_traffic_shift_sh_rollout_t *ro,
    ngx_http_traffic_shift_ro_step_t *e)
{
    ngx_uint_t                       k, b, n;
    ngx_http_traffic_shift_counts_t  now;

    ngx_memzero(e, sizeof(ngx_http_traffic_shift_ro_step_t));

    for (k = 0; k < 2; k++) {
        ngx_http_traffic_shift_zone_rollout_counts(rec, ro, k, &now);
        n = 0;

        for (b = 0; b < NGX_HTTP_TS_BUCKETS; b++) {
            now.buckets[b] = (now.buckets[b] >= ro->base[k].buckets[b])
                             ? now.buckets[b] - ro->base[k].buckets[b] : 0;
            n += now.buckets[b];
        }

        e->responses[k] = n;
        e->errors[k] = (now.errors >= ro->base[k].errors)
                       ? ngx_min(now.errors - ro->base[k].errors, n) : 0;
        e->p99[k] = ngx_http_traffic_shift_quantile(now.buckets, 9900);
        e->p50[k] = ngx_http_traffic_shift_quantile(now.buckets, 5000);
    }
}


/*
 * At start, in the master, with a fresh zone: a rollout read from the
 * state file.  One that progressed resumes its current step with a fresh
 * window, its interval counted from now; the weights are those restored
 * with it.
 */

void
ngx_http_traffic_shift_zone_rollout_restore(
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_split_t *split,
    ngx_http_traffic_shift_sh_rollout_t *saved)
{
    ngx_http_traffic_shift_sh_split_t    *rec;
    ngx_http_traffic_shift_sh_rollout_t  *ro;

    rec = split->sh;
    ro = &rec->rollout;

    ngx_shmtx_lock(&mcf->shpool->mutex);

    ngx_memcpy(ro, saved, sizeof(ngx_http_traffic_shift_sh_rollout_t));

    ro->active = 0;
    ro->fa_pos = 0;
    ro->fa_errors = 0;
    ngx_memzero((void *) ro->fa_bits, sizeof(ro->fa_bits));
    ngx_memzero(ro->results, sizeof(ro->results));
    ro->holding = 0;
    ro->npools = rec->npools;

    if (ro->id > mcf->sh->ro_next_id) {
        mcf->sh->ro_next_id = ro->id;
    }

    if (ro->state == NGX_HTTP_TS_RO_PROGRESSING) {
        ro->step_started = ngx_time();
        ro->step_msec = ngx_current_msec;
        ro->reason[0] = '\0';

        ngx_http_traffic_shift_zone_rollout_open(rec);

        ngx_memory_barrier();

        ro->active = ro->pool + 1;
    }

    ngx_shmtx_unlock(&mcf->shpool->mutex);
}


/*
 * The driver's verdict "pass" on step "step" of rollout "id": the next
 * step's weights (NGX_OK, with the change), or the end, succeeded
 * (NGX_DONE).  NGX_DECLINED: the rollout moved meanwhile.
 */

ngx_int_t
ngx_http_traffic_shift_zone_rollout_next(
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_split_t *split, ngx_uint_t id, ngx_uint_t step,
    ngx_http_traffic_shift_ro_step_t *entry,
    ngx_http_traffic_shift_change_t *change)
{
    ngx_int_t                             rc;
    ngx_http_traffic_shift_sh_split_t    *rec;
    ngx_http_traffic_shift_sh_rollout_t  *ro;

    rec = split->sh;
    ro = &rec->rollout;

    ngx_shmtx_lock(&mcf->shpool->mutex);

    rc = ngx_http_traffic_shift_zone_rollout_check(mcf, split, 0, change);
    if (rc != NGX_OK) {
        goto done;
    }

    if (ro->state != NGX_HTTP_TS_RO_PROGRESSING || ro->id != id
        || ro->step != step)
    {
        rc = NGX_DECLINED;
        goto done;
    }

    if (step + 1 == ro->nsteps) {
        ngx_http_traffic_shift_zone_rollout_finish(ro,
                                                   NGX_HTTP_TS_RO_SUCCEEDED,
                                                   entry, NULL, 0);
        ngx_http_traffic_shift_zone_changed(mcf);
        mcf->sh->ro_changed = 1;
        rc = NGX_DONE;
        goto done;
    }

    if (ro->nhistory < NGX_HTTP_TS_RO_MAX_STEPS) {
        ro->history[ro->nhistory++] = *entry;
    }

    ro->step++;

    ngx_http_traffic_shift_zone_rollout_enter(mcf, rec, change);

done:

    ngx_shmtx_unlock(&mcf->shpool->mutex);

    return rc;
}


/* a step held for too few responses: noted once */

void
ngx_http_traffic_shift_zone_rollout_hold(
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_split_t *split, ngx_uint_t id, ngx_uint_t step)
{
    ngx_http_traffic_shift_sh_rollout_t  *ro;

    ro = &split->sh->rollout;

    ngx_shmtx_lock(&mcf->shpool->mutex);

    if (ro->state == NGX_HTTP_TS_RO_PROGRESSING && ro->id == id
        && ro->step == step)
    {
        ro->holding = 1;
    }

    ngx_shmtx_unlock(&mcf->shpool->mutex);
}


/*
 * The end of a rollout that did not succeed ("state": rolled back or
 * aborted), or a pause: the weights from before the rollout are restored
 * in one change (not for a pause).  "id" 0 is whatever rollout runs.
 * NGX_DECLINED: none runs, or another one.
 */

ngx_int_t
ngx_http_traffic_shift_zone_rollout_end(
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_split_t *split, ngx_uint_t id, ngx_uint_t state,
    ngx_http_traffic_shift_ro_step_t *entry, u_char *reason, size_t len,
    ngx_uint_t if_match, ngx_http_traffic_shift_change_t *change)
{
    ngx_int_t                             rc;
    ngx_http_traffic_shift_sh_split_t    *rec;
    ngx_http_traffic_shift_sh_rollout_t  *ro;

    rec = split->sh;
    ro = &rec->rollout;

    ngx_shmtx_lock(&mcf->shpool->mutex);

    rc = ngx_http_traffic_shift_zone_rollout_check(mcf, split, if_match,
                                                   change);
    if (rc != NGX_OK) {
        goto done;
    }

    if ((ro->state != NGX_HTTP_TS_RO_PROGRESSING
         && ro->state != NGX_HTTP_TS_RO_PAUSED)
        || (id && ro->id != id)
        || (state == NGX_HTTP_TS_RO_PAUSED
            && ro->state != NGX_HTTP_TS_RO_PROGRESSING))
    {
        rc = NGX_DECLINED;
        goto done;
    }

    if (state == NGX_HTTP_TS_RO_PAUSED) {
        ro->active = 0;
        ro->state = NGX_HTTP_TS_RO_PAUSED;

        if (entry && ro->nhistory < NGX_HTTP_TS_RO_MAX_STEPS) {
            ro->history[ro->nhistory++] = *entry;
        }

        len = ngx_min(len, NGX_HTTP_TS_RO_REASON_LEN - 1);
        ngx_memcpy(ro->reason, reason, len);
        ro->reason[len] = '\0';

        ngx_http_traffic_shift_zone_changed(mcf);
        mcf->sh->ro_changed = 1;

        goto done;
    }

    ngx_http_traffic_shift_zone_rollout_finish(ro, state, entry, reason, len);

    ngx_http_traffic_shift_zone_rollout_apply(mcf, rec, ro->before, change);

    mcf->sh->ro_changed = 1;

done:

    ngx_shmtx_unlock(&mcf->shpool->mutex);

    return rc;
}


/*
 * Fleet mode: rollout "id", started here, cannot be the fleet's (another
 * node drives one, or the weights changed in etcd).  It ends, aborted,
 * and the node takes the fleet's weights read at "revision" (not the
 * weights from before the rollout: the fleet may be at another node's
 * step).  NGX_DECLINED: a reload replaced the record.
 */

ngx_int_t
ngx_http_traffic_shift_zone_rollout_yield(
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_split_t *split, ngx_uint_t id, ngx_uint_t *weights,
    ngx_uint_t revision, u_char *reason, size_t len)
{
    ngx_uint_t                            i;
    ngx_http_traffic_shift_weights_t      w;
    ngx_http_traffic_shift_sh_split_t    *rec;
    ngx_http_traffic_shift_sh_rollout_t  *ro;

    rec = split->sh;
    ro = &rec->rollout;

    ngx_shmtx_lock(&mcf->shpool->mutex);

    if (rec->seq & 1) {
        rec->seq++;
    }

    if (rec->layout != split->layout || mcf->sh->retired) {
        ngx_shmtx_unlock(&mcf->shpool->mutex);
        return NGX_DECLINED;
    }

    if (ro->id == id
        && (ro->state == NGX_HTTP_TS_RO_PROGRESSING
            || ro->state == NGX_HTTP_TS_RO_PAUSED))
    {
        ngx_http_traffic_shift_zone_rollout_finish(ro, NGX_HTTP_TS_RO_ABORTED,
                                                   NULL, reason, len);
        mcf->sh->ro_changed = 1;
    }

    if (weights && revision >= rec->sync_revision) {
        w = rec->copy[rec->current & 1];

        w.generation = revision;
        w.source = NGX_HTTP_TS_SRC_FLEET;
        w.updated = ngx_time();

        for (i = 0; i < rec->npools; i++) {
            w.weights[i] = weights[i];
        }

        ngx_http_traffic_shift_write_begin(&rec->seq);
        ngx_http_traffic_shift_zone_publish(rec, &w);
        ngx_http_traffic_shift_write_end(&rec->seq);

        rec->sync_revision = revision;
    }

    ngx_http_traffic_shift_zone_changed(mcf);

    ngx_shmtx_unlock(&mcf->shpool->mutex);

    return NGX_OK;
}


/*
 * PATCH actions "resume" (a fresh window for the current step, whose
 * weights are set again) and "promote" (the last step's weights, and the
 * rollout succeeded).  NGX_DECLINED: no rollout in a state for it;
 * NGX_BUSY: resume with no live server in the pool.
 */

ngx_int_t
ngx_http_traffic_shift_zone_rollout_resume(
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_split_t *split, ngx_uint_t promote,
    ngx_uint_t if_match, ngx_http_traffic_shift_change_t *change)
{
    ngx_int_t                             rc;
    ngx_uint_t                            weights[NGX_HTTP_TS_MAX_POOLS];
    ngx_http_traffic_shift_pool_t        *pool;
    ngx_http_traffic_shift_sh_split_t    *rec;
    ngx_http_traffic_shift_sh_rollout_t  *ro;

    rec = split->sh;
    ro = &rec->rollout;
    pool = split->pools.elts;

    ngx_shmtx_lock(&mcf->shpool->mutex);

    rc = ngx_http_traffic_shift_zone_rollout_check(mcf, split, if_match,
                                                   change);
    if (rc != NGX_OK) {
        goto done;
    }

    if (promote) {
        if (ro->state != NGX_HTTP_TS_RO_PROGRESSING
            && ro->state != NGX_HTTP_TS_RO_PAUSED)
        {
            rc = NGX_DECLINED;
            goto done;
        }

        ngx_http_traffic_shift_zone_rollout_weights(ro,
                                             ro->steps[ro->nsteps - 1],
                                             weights);

        ngx_http_traffic_shift_zone_rollout_finish(ro,
                                                   NGX_HTTP_TS_RO_SUCCEEDED,
                                                   NULL,
                                                   (u_char *) "promoted",
                                                   sizeof("promoted") - 1);

        ngx_http_traffic_shift_zone_rollout_apply(mcf, rec, weights, change);

        mcf->sh->ro_changed = 1;

        goto done;
    }

    if (ro->state != NGX_HTTP_TS_RO_PAUSED) {
        rc = NGX_DECLINED;
        goto done;
    }

    if (ngx_http_traffic_shift_zone_live(pool[ro->pool].ups) == 0) {
        change->dead_pool = ro->pool;
        rc = NGX_BUSY;
        goto done;
    }

    ro->state = NGX_HTTP_TS_RO_PROGRESSING;

    ngx_http_traffic_shift_zone_rollout_enter(mcf, rec, change);

done:

    ngx_shmtx_unlock(&mcf->shpool->mutex);

    return rc;
}


static void
ngx_http_traffic_shift_zone_rollout_finish(
    ngx_http_traffic_shift_sh_rollout_t *ro, ngx_uint_t state,
    ngx_http_traffic_shift_ro_step_t *entry, u_char *reason, size_t len)
{
    ro->active = 0;
    ro->state = state;
    ro->ended = ngx_time();
    ro->holding = 0;
    ro->results[state]++;

    if (entry && ro->nhistory < NGX_HTTP_TS_RO_MAX_STEPS) {
        ro->history[ro->nhistory++] = *entry;
    }

    len = ngx_min(len, NGX_HTTP_TS_RO_REASON_LEN - 1);

    if (len) {
        ngx_memcpy(ro->reason, reason, len);
    }

    ro->reason[len] = '\0';
}


/* a consistent copy, for documents and the driver */

ngx_int_t
ngx_http_traffic_shift_zone_rollout_copy(
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_split_t *split,
    ngx_http_traffic_shift_sh_rollout_t *ro,
    ngx_http_traffic_shift_weights_t *w)
{
    ngx_int_t                           rc;
    ngx_http_traffic_shift_sh_split_t  *rec;

    rec = split->sh;
    rc = NGX_OK;

    ngx_shmtx_lock(&mcf->shpool->mutex);

    if (rec->layout != split->layout) {
        rc = NGX_ABORT;

    } else {
        ngx_memcpy(ro, &rec->rollout,
                   sizeof(ngx_http_traffic_shift_sh_rollout_t));

        if (w) {
            *w = rec->copy[rec->current & 1];
        }
    }

    ngx_shmtx_unlock(&mcf->shpool->mutex);

    return rc;
}


/*
 * The log phase: "n" responses of the canary pool, "errors" of them
 * errors, pushed into the fast-abort window without a lock.  Past the
 * limit, the rollout is rolled back at once.
 */

void
ngx_http_traffic_shift_zone_rollout_count(
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_split_t *split, ngx_uint_t n, ngx_uint_t errors,
    ngx_log_t *log)
{
    u_char                                text[NGX_HTTP_TS_RO_REASON_LEN];
    u_char                               *p;
    ngx_uint_t                            i, err, pos, window, ratio;
    ngx_atomic_t                         *word;
    ngx_atomic_int_t                      bad;
    ngx_atomic_uint_t                     old, new, mask;
    ngx_http_traffic_shift_change_t       change;
    ngx_http_traffic_shift_pool_t        *pool;
    ngx_http_traffic_shift_sh_rollout_t  *ro;

    ro = &split->sh->rollout;
    window = ro->fa_window;
    ratio = ro->fa_ratio;

    if (window == 0 || window > NGX_HTTP_TS_RO_MAX_WINDOW) {
        return;
    }

    for (i = 0; i < n; i++) {
        err = (i < errors);

        pos = ngx_atomic_fetch_add(&ro->fa_pos, 1) % window;
        word = &ro->fa_bits[pos / NGX_HTTP_TS_RO_BITS];
        mask = (ngx_atomic_uint_t) 1 << (pos % NGX_HTTP_TS_RO_BITS);

        do {
            old = *word;
            new = err ? (old | mask) : (old & ~mask);

        } while (old != new && !ngx_atomic_cmp_set(word, old, new));

        if (((old & mask) != 0) != err) {
            (void) ngx_atomic_fetch_add(&ro->fa_errors, err ? 1 : -1);
        }
    }

    bad = (ngx_atomic_int_t) ro->fa_errors;

    if (bad <= 0 || (ngx_uint_t) bad * 10000 <= ratio * window) {
        return;
    }

    pool = split->pools.elts;

    p = ngx_snprintf(text, sizeof(text),
                     "fast abort: %i errors in the last %ui responses of "
                     "pool \"%V\", limit %ui.%02ui%%", bad, window,
                     &pool[ro->pool].name, ratio / 100, ratio % 100);

    if (ngx_http_traffic_shift_zone_rollout_end(mcf, split, 0,
                                                NGX_HTTP_TS_RO_ROLLED_BACK,
                                                NULL, text, p - text, 0,
                                                &change)
        != NGX_OK)
    {
        return;
    }

    ngx_log_error(NGX_LOG_WARN, log, 0,
                  "traffic_shift \"%V\": rollout rolled back, %*s; weights "
                  "from before the rollout restored, generation %ui",
                  &split->name, p - text, text, change.new.generation);
}
