
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#include "ngx_http_traffic_shift_api.h"


/* GET /upstreams/NAME/rollout: the rollout's document */


static ngx_int_t ngx_http_traffic_shift_api_rollout_limits(json_t *root,
    ngx_http_traffic_shift_sh_rollout_t *ro);
static json_t *ngx_http_traffic_shift_api_rollout_counts(
    ngx_http_traffic_shift_ro_step_t *e, ngx_uint_t k);
static json_t *ngx_http_traffic_shift_api_rollout_msec_json(ngx_msec_t ms);
static json_t *ngx_http_traffic_shift_api_rollout_history(
    ngx_http_traffic_shift_sh_rollout_t *ro);


static char  *ngx_http_traffic_shift_api_ro_verdicts[] = {
    "pass", "fail", "inconclusive"
};


/* GET: the rollout, or NULL with the error */

json_t *
ngx_http_traffic_shift_api_rollout_json(ngx_http_request_t *r,
    ngx_http_traffic_shift_split_t *split,
    ngx_http_traffic_shift_api_err_t *err)
{
    json_t                               *root, *obj;
    ngx_uint_t                            state;
    u_char                                node[NGX_HTTP_TS_NODE_LEN];
    size_t                                len;
    ngx_http_traffic_shift_pool_t        *pool;
    ngx_http_traffic_shift_weights_t      w;
    ngx_http_traffic_shift_ro_step_t      e;
    ngx_http_traffic_shift_sh_rollout_t  *ro;
    ngx_http_traffic_shift_main_conf_t   *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_traffic_shift_module);
    pool = split->pools.elts;

    ro = ngx_palloc(r->pool, sizeof(ngx_http_traffic_shift_sh_rollout_t));
    if (ro == NULL) {
        return NULL;
    }

    if (ngx_http_traffic_shift_zone_rollout_copy(mcf, split, ro, &w)
        != NGX_OK)
    {
        (void) ngx_http_traffic_shift_api_fail(err,
                                               NGX_HTTP_SERVICE_UNAVAILABLE,
                                               "reloading",
                                               "the configuration of "
                                               "upstream \"%V\" is being "
                                               "reloaded, retry",
                                               &split->name);
        return NULL;
    }

    state = ro->state;
    len = ngx_http_traffic_shift_zone_sync_driven(mcf, split, node);

    if (len) {
        /* fleet mode: another node drives it */
        (void) ngx_http_traffic_shift_api_fail(err, NGX_HTTP_NOT_FOUND,
                                               "no_rollout",
                                               "node \"%*s\" of the fleet "
                                               "drives the rollout of "
                                               "upstream \"%V\": ask it",
                                               len, node, &split->name);
        return NULL;
    }

    if (state == NGX_HTTP_TS_RO_NONE || state >= NGX_HTTP_TS_RO_STATES) {
        (void) ngx_http_traffic_shift_api_fail(err, NGX_HTTP_NOT_FOUND,
                                               "no_rollout",
                                               "upstream \"%V\" has had no "
                                               "rollout", &split->name);
        return NULL;
    }

    root = json_object();
    if (root == NULL) {
        return NULL;
    }

    if (json_object_set_new(root, "id", json_integer(ro->id))
        || json_object_set_new(root, "state",
                     json_string(ngx_http_traffic_shift_ro_states[state]))
        || json_object_set_new(root, "pool",
                     ngx_http_traffic_shift_json_str(pool[ro->pool].name.data,
                                                     pool[ro->pool].name.len))
        || json_object_set_new(root, "generation",
                               json_integer(w.generation))
        || json_object_set_new(root, "ramp", json_boolean(ro->ramp)))
    {
        goto failed;
    }

    if (json_object_set_new(root, "baseline",
                     ngx_http_traffic_shift_json_pools(split, ro->baseline))
        || json_object_set_new(root, "steps",
                     ngx_http_traffic_shift_json_weights(NULL, ro->steps,
                                                         ro->nsteps)))
    {
        goto failed;
    }

    if (json_object_set_new(root, "step", json_integer(ro->step + 1))
        || json_object_set_new(root, "weight",
                     ngx_http_traffic_shift_json_weight(ro->steps[ro->step]))
        || json_object_set_new(root, "interval",
                    ngx_http_traffic_shift_api_rollout_msec_json(ro->interval))
        || json_object_set_new(root, "min_requests",
                               json_integer(ro->min_requests))
        || json_object_set_new(root, "max_hold",
                    ngx_http_traffic_shift_api_rollout_msec_json(ro->max_hold))
        || json_object_set_new(root, "started",
                               ngx_http_traffic_shift_json_time(ro->started))
        || json_object_set_new(root, "step_started",
                      ngx_http_traffic_shift_json_time(ro->step_started))
        || json_object_set_new(root, "step_ends",
                      state == NGX_HTTP_TS_RO_PROGRESSING
                      ? ngx_http_traffic_shift_json_time(ro->step_started
                                                  + ro->interval / 1000)
                      : json_null())
        || json_object_set_new(root, "holding", json_boolean(ro->holding))
        || json_object_set_new(root, "ended",
                               ro->ended
                               ? ngx_http_traffic_shift_json_time(ro->ended)
                               : json_null()))
    {
        goto failed;
    }

    if (ngx_http_traffic_shift_api_rollout_limits(root, ro) != NGX_OK) {
        goto failed;
    }

    if (json_object_set_new(root, "before",
                     ngx_http_traffic_shift_json_weights(split, ro->before,
                                                         ro->npools)))
    {
        goto failed;
    }

    ngx_http_traffic_shift_zone_rollout_window(split->sh, ro, &e);

    obj = json_object();

    if (json_object_set_new(root, "window", obj)
        || json_object_set_new(obj, "pool",
                     ngx_http_traffic_shift_api_rollout_counts(&e, 0))
        || json_object_set_new(obj, "baseline",
                     ngx_http_traffic_shift_api_rollout_counts(&e, 1))
        || json_object_set_new(root, "history",
                     ngx_http_traffic_shift_api_rollout_history(ro))
        || json_object_set_new(root, "reason",
                     (state != NGX_HTTP_TS_RO_PROGRESSING
                      && state != NGX_HTTP_TS_RO_SUCCEEDED
                      && ro->reason[0])
                     ? json_string((char *) ro->reason) : json_null()))
    {
        goto failed;
    }

    return root;

failed:

    json_decref(root);

    return NULL;
}


/* "analysis" and "fast_abort": the limits the rollout was started with */

static ngx_int_t
ngx_http_traffic_shift_api_rollout_limits(json_t *root,
    ngx_http_traffic_shift_sh_rollout_t *ro)
{
    json_t  *obj;

    obj = json_object();

    if (json_object_set_new(root, "analysis", obj)
        || (ro->max_error_ratio != NGX_CONF_UNSET_UINT
            && json_object_set_new(obj, "max_error_ratio",
                                   json_real(ro->max_error_ratio / 10000.0)))
        || (ro->max_error_ratio_vs != NGX_CONF_UNSET_UINT
            && json_object_set_new(obj, "max_error_ratio_vs_baseline",
                                   json_real(ro->max_error_ratio_vs / 100.0)))
        || (ro->max_p99 != NGX_CONF_UNSET_MSEC
            && json_object_set_new(obj, "max_p99",
                     ngx_http_traffic_shift_api_rollout_msec_json(ro->max_p99)))
        || (ro->max_p99_vs != NGX_CONF_UNSET_UINT
            && json_object_set_new(obj, "max_p99_vs_baseline",
                                   json_real(ro->max_p99_vs / 100.0))))
    {
        return NGX_ERROR;
    }

    if (ro->fa_window) {
        obj = json_object();

        if (json_object_set_new(root, "fast_abort", obj)
            || json_object_set_new(obj, "error_ratio",
                                   json_real(ro->fa_ratio / 10000.0))
            || json_object_set_new(obj, "window",
                                   json_integer(ro->fa_window))
            || json_object_set_new(obj, "errors",
                     json_integer(ngx_max((ngx_atomic_int_t) ro->fa_errors,
                                          0))))
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static json_t *
ngx_http_traffic_shift_api_rollout_counts(ngx_http_traffic_shift_ro_step_t *e,
    ngx_uint_t k)
{
    json_t  *obj;

    obj = json_object();
    if (obj == NULL) {
        return NULL;
    }

    if (json_object_set_new(obj, "responses", json_integer(e->responses[k]))
        || json_object_set_new(obj, "errors", json_integer(e->errors[k]))
        || json_object_set_new(obj, "error_ratio",
                               json_real(e->responses[k]
                                         ? (double) e->errors[k]
                                           / e->responses[k]
                                         : 0))
        || json_object_set_new(obj, "p50", json_real(e->p50[k] / 1000.0))
        || json_object_set_new(obj, "p99", json_real(e->p99[k] / 1000.0)))
    {
        json_decref(obj);
        return NULL;
    }

    return obj;
}


static json_t *
ngx_http_traffic_shift_api_rollout_history(
    ngx_http_traffic_shift_sh_rollout_t *ro)
{
    json_t                            *list, *obj;
    ngx_uint_t                         i;
    ngx_http_traffic_shift_ro_step_t  *e;

    list = json_array();
    if (list == NULL) {
        return NULL;
    }

    for (i = 0; i < ro->nhistory && i < NGX_HTTP_TS_RO_MAX_STEPS; i++) {
        e = &ro->history[i];

        obj = json_object();

        if (json_array_append_new(list, obj)
            || json_object_set_new(obj, "step", json_integer(e->step))
            || json_object_set_new(obj, "weight",
                            ngx_http_traffic_shift_json_weight(e->weight))
            || json_object_set_new(obj, "verdict",
                     json_string(ngx_http_traffic_shift_api_ro_verdicts[
                                     e->verdict > 2 ? 2 : e->verdict]))
            || json_object_set_new(obj, "time",
                                   ngx_http_traffic_shift_json_time(e->time))
            || json_object_set_new(obj, "pool",
                     ngx_http_traffic_shift_api_rollout_counts(e, 0))
            || json_object_set_new(obj, "baseline",
                     ngx_http_traffic_shift_api_rollout_counts(e, 1)))
        {
            json_decref(list);
            return NULL;
        }
    }

    return list;
}


static json_t *
ngx_http_traffic_shift_api_rollout_msec_json(ngx_msec_t ms)
{
    u_char  *p, text[NGX_INT_T_LEN + 4];

    if (ms == NGX_CONF_UNSET_MSEC) {
        return json_null();
    }

    if (ms % 1000) {
        p = ngx_sprintf(text, "%Mms", ms);

    } else {
        p = ngx_sprintf(text, "%Ms", ms / 1000);
    }

    return ngx_http_traffic_shift_json_str(text, p - text);
}
