
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#include "ngx_http_traffic_shift_state.h"
#include "ngx_http_traffic_shift_zone.h"
#include "ngx_http_traffic_shift_lib.h"


/*
 * The state file's document, made in the writer's thread from the zone as
 * it is (its format: ngx_http_traffic_shift_state.c and
 * docs/operations.md).
 */


static ngx_int_t ngx_http_traffic_shift_state_json_split(json_t *upstreams,
    ngx_http_traffic_shift_split_t *split,
    ngx_http_traffic_shift_weights_t *w,
    ngx_http_traffic_shift_sh_rollout_t *ro);
static json_t *ngx_http_traffic_shift_state_json_rollout(
    ngx_http_traffic_shift_split_t *split,
    ngx_http_traffic_shift_sh_rollout_t *ro);
static ngx_int_t ngx_http_traffic_shift_state_json_step(json_t *list,
    ngx_http_traffic_shift_ro_step_t *e);
static ngx_int_t ngx_http_traffic_shift_state_json_down(json_t *down,
    ngx_http_traffic_shift_main_conf_t *mcf);


/*
 * The zone as it is now: every upstream's weights, source and generation
 * (weights from the configuration too, so that generations never go back),
 * the floor of generations, and the admin-down marks.
 */

json_t *
ngx_http_traffic_shift_state_json(ngx_http_traffic_shift_state_save_t *save)
{
    json_t                               *root, *upstreams, *down;
    ngx_uint_t                            i;
    ngx_http_traffic_shift_split_t      **splitp;
    ngx_http_traffic_shift_weights_t      w;
    ngx_http_traffic_shift_sh_rollout_t   ro;
    ngx_http_traffic_shift_main_conf_t   *mcf;

    mcf = save->mcf;

    root = json_object();
    upstreams = json_object();
    down = json_array();

    if (root == NULL || upstreams == NULL || down == NULL) {
        goto nomem;
    }

    if (json_object_set_new(root, "format",
                            json_string(NGX_HTTP_TS_STATE_FORMAT))
        || json_object_set_new(root, "version",
                               json_integer(NGX_HTTP_TS_STATE_VERSION))
        || json_object_set_new(root, "written", json_integer(time(NULL)))
        || json_object_set_new(root, "floor",
                               json_integer(mcf->sh->floor)))
    {
        goto nomem;
    }

    splitp = mcf->splits.elts;

    for (i = 0; i < mcf->splits.nelts; i++) {

        /* the weights and the rollout as one */

        if (ngx_http_traffic_shift_zone_rollout_copy(mcf, splitp[i], &ro, &w)
            != NGX_OK)
        {
            ngx_http_traffic_shift_state_error(save, 0,
                           "the configuration was reloaded, the new one "
                           "saves the state");
            goto failed;
        }

        if (ngx_http_traffic_shift_state_json_split(upstreams, splitp[i], &w,
                                                    &ro)
            != NGX_OK)
        {
            goto nomem;
        }
    }

    if (ngx_http_traffic_shift_state_json_down(down, mcf) != NGX_OK) {
        goto nomem;
    }

    if (json_object_set_new(root, "upstreams", upstreams)) {
        upstreams = NULL;
        goto nomem;
    }

    upstreams = NULL;

    if (json_object_set_new(root, "admin_down", down)) {
        down = NULL;
        goto nomem;
    }

    return root;

nomem:

    ngx_http_traffic_shift_state_error(save, 0, "out of memory");

failed:

    json_decref(root);
    json_decref(upstreams);
    json_decref(down);

    return NULL;
}


static ngx_int_t
ngx_http_traffic_shift_state_json_split(json_t *upstreams,
    ngx_http_traffic_shift_split_t *split, ngx_http_traffic_shift_weights_t *w,
    ngx_http_traffic_shift_sh_rollout_t *ro)
{
    json_t                         *obj, *weights;
    ngx_uint_t                      i;
    ngx_http_traffic_shift_pool_t  *pool;

    obj = json_object();
    weights = json_object();

    if (obj == NULL || weights == NULL
        || json_object_set_new(obj, "weights", weights)
        || json_object_setn_new_nocheck(upstreams, (char *) split->name.data,
                                        split->name.len, obj))
    {
        json_decref(obj);
        return NGX_ERROR;
    }

    pool = split->pools.elts;

    for (i = 0; i < split->pools.nelts; i++) {
        if (json_object_setn_new_nocheck(weights, (char *) pool[i].name.data,
                        pool[i].name.len,
                        ngx_http_traffic_shift_json_weight(w->weights[i])))
        {
            return NGX_ERROR;
        }
    }

    if (json_object_set_new(obj, "source",
                    json_string(w->source == NGX_HTTP_TS_SRC_CONFIG
                                ? "config" : "api"))
        || json_object_set_new(obj, "generation", json_integer(w->generation))
        || json_object_set_new(obj, "updated", json_integer(w->updated)))
    {
        return NGX_ERROR;
    }

    if (ro->state == NGX_HTTP_TS_RO_NONE || ro->state >= NGX_HTTP_TS_RO_STATES
        || ro->npools != split->pools.nelts)
    {
        return NGX_OK;
    }

    if (json_object_set_new(obj, "rollout",
                     ngx_http_traffic_shift_state_json_rollout(split, ro)))
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * A rollout: its settings in the module's own units (milliseconds,
 * ratios in 1/10000, multipliers in 1/100, latencies in microseconds),
 * its state, step (from 1), the weights from before it, its history.
 */

static json_t *
ngx_http_traffic_shift_state_json_rollout(ngx_http_traffic_shift_split_t *split,
    ngx_http_traffic_shift_sh_rollout_t *ro)
{
    json_t                         *obj, *list;
    ngx_uint_t                      i;
    ngx_http_traffic_shift_pool_t  *pool;

    pool = split->pools.elts;

    obj = json_object();
    if (obj == NULL) {
        return NULL;
    }

    if (json_object_set_new(obj, "id", json_integer(ro->id))
        || json_object_set_new(obj, "state",
                     json_string(ngx_http_traffic_shift_ro_states[ro->state]))
        || json_object_set_new(obj, "ramp", json_boolean(ro->ramp))
        || json_object_set_new(obj, "pool",
                     ngx_http_traffic_shift_json_str(pool[ro->pool].name.data,
                                                     pool[ro->pool].name.len))
        || json_object_set_new(obj, "step", json_integer(ro->step + 1))
        || json_object_set_new(obj, "interval_ms",
                               json_integer(ro->interval))
        || json_object_set_new(obj, "min_requests",
                               json_integer(ro->min_requests))
        || (ro->max_hold != NGX_CONF_UNSET_MSEC
            && json_object_set_new(obj, "max_hold_ms",
                                   json_integer(ro->max_hold)))
        || (ro->max_error_ratio != NGX_CONF_UNSET_UINT
            && json_object_set_new(obj, "max_error_ratio_bp",
                                   json_integer(ro->max_error_ratio)))
        || (ro->max_error_ratio_vs != NGX_CONF_UNSET_UINT
            && json_object_set_new(obj, "max_error_ratio_vs_pct",
                                   json_integer(ro->max_error_ratio_vs)))
        || (ro->max_p99 != NGX_CONF_UNSET_MSEC
            && json_object_set_new(obj, "max_p99_ms",
                                   json_integer(ro->max_p99)))
        || (ro->max_p99_vs != NGX_CONF_UNSET_UINT
            && json_object_set_new(obj, "max_p99_vs_pct",
                                   json_integer(ro->max_p99_vs)))
        || (ro->fa_window
            && (json_object_set_new(obj, "fast_abort_ratio_bp",
                                    json_integer(ro->fa_ratio))
                || json_object_set_new(obj, "fast_abort_window",
                                       json_integer(ro->fa_window))))
        || json_object_set_new(obj, "started", json_integer(ro->started))
        || json_object_set_new(obj, "step_started",
                               json_integer(ro->step_started))
        || json_object_set_new(obj, "ended", json_integer(ro->ended))
        || json_object_set_new(obj, "reason",
                               json_string((char *) ro->reason)))
    {
        goto failed;
    }

    if (json_object_set_new(obj, "baseline",
                     ngx_http_traffic_shift_json_pools(split, ro->baseline))
        || json_object_set_new(obj, "steps",
                     ngx_http_traffic_shift_json_weights(NULL, ro->steps,
                                                         ro->nsteps))
        || json_object_set_new(obj, "before",
                     ngx_http_traffic_shift_json_weights(split, ro->before,
                                                         ro->npools)))
    {
        goto failed;
    }

    list = json_array();

    if (json_object_set_new(obj, "history", list)) {
        goto failed;
    }

    for (i = 0; i < ro->nhistory && i < NGX_HTTP_TS_RO_MAX_STEPS; i++) {
        if (ngx_http_traffic_shift_state_json_step(list, &ro->history[i])
            != NGX_OK)
        {
            goto failed;
        }
    }

    return obj;

failed:

    json_decref(obj);

    return NULL;
}


static ngx_int_t
ngx_http_traffic_shift_state_json_step(json_t *list,
    ngx_http_traffic_shift_ro_step_t *e)
{
    json_t      *obj;
    ngx_uint_t   k, *v[4];

    static char  *verdicts[] = { "pass", "fail", "inconclusive" };
    static char  *counts[] = { "responses", "errors", "p50_us", "p99_us" };

    v[0] = e->responses;
    v[1] = e->errors;
    v[2] = e->p50;
    v[3] = e->p99;

    obj = json_object();

    if (json_array_append_new(list, obj)
        || json_object_set_new(obj, "step", json_integer(e->step))
        || json_object_set_new(obj, "weight",
                               ngx_http_traffic_shift_json_weight(e->weight))
        || json_object_set_new(obj, "verdict",
                     json_string(verdicts[e->verdict > 2 ? 2 : e->verdict]))
        || json_object_set_new(obj, "time", json_integer(e->time)))
    {
        return NGX_ERROR;
    }

    for (k = 0; k < 4; k++) {
        list = json_pack("[II]", (json_int_t) v[k][0], (json_int_t) v[k][1]);

        if (json_object_set_new(obj, counts[k], list)) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * "upstream/address" of every server set admin-down, each once: the
 * configured servers, then the addresses resolved at run time, from the
 * zone's list of them (the worker's own list changes meanwhile)
 */

static ngx_int_t
ngx_http_traffic_shift_state_json_down(json_t *down,
    ngx_http_traffic_shift_main_conf_t *mcf)
{
    u_char                              *p, *slash, key[NGX_HTTP_TS_KEY_LEN];
    ngx_int_t                            rc;
    ngx_uint_t                           i, j;
    ngx_queue_t                         *q;
    ngx_http_traffic_shift_server_t     *server;
    ngx_http_traffic_shift_upstream_t  **upsp, *ups;
    ngx_http_traffic_shift_sh_server_t  *rec;

    upsp = mcf->upstreams.elts;

    for (i = 0; i < mcf->upstreams.nelts; i++) {
        for (j = 0; j < upsp[i]->nconf; j++) {
            server = &upsp[i]->servers[j];

            if (!server->sh->admin_down || server->duplicate) {
                continue;
            }

            p = ngx_snprintf(key, sizeof(key), "%V/%V",
                             &upsp[i]->uscf->host, &server->name);

            if (json_array_append_new(down,
                                      json_stringn_nocheck((char *) key,
                                                           p - key)))
            {
                return NGX_ERROR;
            }
        }
    }

    rc = NGX_OK;

    ngx_shmtx_lock(&mcf->shpool->mutex);

    for (q = ngx_queue_head(&mcf->sh->resolved);
         q != ngx_queue_sentinel(&mcf->sh->resolved);
         q = ngx_queue_next(q))
    {
        rec = ngx_queue_data(q, ngx_http_traffic_shift_sh_server_t, queue);

        if (!rec->admin_down) {
            continue;
        }

        slash = ngx_strlchr(rec->key.data, rec->key.data + rec->key.len, '/');

        if (slash == NULL) {
            continue;
        }

        ups = ngx_http_traffic_shift_find_upstream(mcf, rec->key.data,
                                                   slash - rec->key.data);

        if (ups == NULL || !ups->resolve) {
            continue;
        }

        if (json_array_append_new(down,
                                  json_stringn_nocheck((char *) rec->key.data,
                                                       rec->key.len)))
        {
            rc = NGX_ERROR;
            break;
        }
    }

    ngx_shmtx_unlock(&mcf->shpool->mutex);

    return rc;
}


void
ngx_http_traffic_shift_state_error(ngx_http_traffic_shift_state_save_t *save,
    ngx_err_t err, const char *fmt, ...)
{
    u_char   *p, *last;
    va_list   args;

    p = save->error;
    last = save->error + NGX_HTTP_TS_STATE_ERR_LEN;

    va_start(args, fmt);
    p = ngx_vslprintf(p, last, fmt, args);
    va_end(args);

    if (err) {
        p = ngx_slprintf(p, last, " (%d: ", err);
        p = ngx_strerror(err, p, last - p);
        p = ngx_slprintf(p, last, ")");
    }

    save->error_len = p - save->error;
}
