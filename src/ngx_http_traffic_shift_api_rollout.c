
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#include "ngx_http_traffic_shift_api.h"


/*
 * /upstreams/NAME/rollout: PUT or POST starts a rollout, PATCH acts on it
 * (pause, resume, promote, abort), DELETE aborts it, GET reads it.  The
 * body is checked completely before anything changes.
 */


/* a ramp: at most this many steps, at most one a second */
#define NGX_HTTP_TS_RO_RAMP_STEPS    20


static ngx_int_t ngx_http_traffic_shift_api_rollout_unsynced(
    ngx_http_traffic_shift_api_err_t *err);
static ngx_int_t ngx_http_traffic_shift_api_rollout_result(
    ngx_http_traffic_shift_split_t *split, ngx_int_t rc,
    ngx_http_traffic_shift_change_t *change,
    ngx_http_traffic_shift_api_err_t *err);


static char  *ngx_http_traffic_shift_api_ro_actions[] = {
    "pause", "resume", "promote", "abort"
};


/* PUT, POST: a new rollout; PATCH: an action */

ngx_int_t
ngx_http_traffic_shift_api_rollout_change(ngx_http_request_t *r,
    ngx_http_traffic_shift_api_req_t *req, json_t *root, ngx_uint_t if_match,
    ngx_http_traffic_shift_api_err_t *err)
{
    json_t                               *value;
    ngx_int_t                             rc;
    ngx_uint_t                            action;
    const char                           *key, *name;
    ngx_http_traffic_shift_split_t       *split;
    ngx_http_traffic_shift_pool_t        *pool;
    ngx_http_traffic_shift_sh_rollout_t  *ro;
    ngx_http_traffic_shift_main_conf_t   *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_traffic_shift_module);
    split = req->path.split;
    pool = split->pools.elts;

    if (r->method != NGX_HTTP_PATCH) {
        ro = ngx_pcalloc(r->pool, sizeof(ngx_http_traffic_shift_sh_rollout_t));
        if (ro == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (ngx_http_traffic_shift_api_rollout_parse(split, root, ro, err)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        if (mcf->sync && !mcf->sh->sync_up) {
            return ngx_http_traffic_shift_api_rollout_unsynced(err);
        }

        rc = ngx_http_traffic_shift_zone_rollout_start(mcf, split, ro,
                                                       if_match,
                                                       &req->change);

        if (rc != NGX_OK) {
            return ngx_http_traffic_shift_api_rollout_result(split, rc,
                                                           &req->change, err);
        }

        req->status = NGX_HTTP_CREATED;

        ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                      "traffic_shift \"%V\": rollout of pool \"%V\" started "
                      "by client %V, %ui steps, first %ui.%02ui%%, "
                      "generation %ui", &split->name, &pool[ro->pool].name,
                      &r->connection->addr_text, ro->nsteps,
                      ro->steps[0] / 100, ro->steps[0] % 100,
                      req->change.new.generation);

        return NGX_OK;
    }

    name = NULL;

    json_object_foreach(root, key, value) {
        if (ngx_strcmp(key, "action") != 0) {
            return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_BAD_REQUEST,
                                                   "unknown_field",
                                                   "unknown field, expected "
                                                   "\"action\"");
        }

        if (!json_is_string(value)) {
            return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_BAD_REQUEST,
                                                   "invalid_type",
                                                   "\"action\" must be a "
                                                   "string");
        }

        name = json_string_value(value);
    }

    for (action = 0; name && action < 4; action++) {
        if (ngx_strcmp(name, ngx_http_traffic_shift_api_ro_actions[action])
            == 0)
        {
            break;
        }
    }

    if (name == NULL || action == 4) {
        return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_BAD_REQUEST,
                                               name ? "invalid_action"
                                                    : "missing_field",
                                               "the body must have "
                                               "\"action\": \"pause\", "
                                               "\"resume\", \"promote\" or "
                                               "\"abort\"");
    }

    return ngx_http_traffic_shift_api_rollout_act(r, req, action, if_match,
                                                  err);
}


/*
 * PATCH /upstreams/NAME {"active": "green", "ramp": "60s"}: a rollout of
 * the pool against the pools that have weight now, in linear steps over
 * the ramp (at most 20, at most one a second), with a fast abort only.
 */

ngx_int_t
ngx_http_traffic_shift_api_rollout_ramp(ngx_http_request_t *r,
    ngx_http_traffic_shift_api_req_t *req, json_t *root, ngx_uint_t if_match,
    ngx_http_traffic_shift_api_err_t *err)
{
    ngx_int_t                             rc;
    ngx_uint_t                            i, n, from;
    ngx_msec_t                            ramp;
    ngx_http_traffic_shift_pool_t        *pool;
    ngx_http_traffic_shift_split_t       *split;
    ngx_http_traffic_shift_weights_t      w;
    ngx_http_traffic_shift_sh_rollout_t  *ro;
    ngx_http_traffic_shift_main_conf_t   *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_traffic_shift_module);
    split = req->path.split;
    pool = split->pools.elts;

    ro = ngx_pcalloc(r->pool, sizeof(ngx_http_traffic_shift_sh_rollout_t));
    if (ro == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_traffic_shift_api_rollout_ramp_parse(split, root, ro, err)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_http_traffic_shift_zone_read(split, &w) != NGX_OK) {
        return ngx_http_traffic_shift_api_rollout_result(split, NGX_ABORT,
                                                       &req->change, err);
    }

    for (i = 0; i < split->pools.nelts; i++) {
        if (i != ro->pool && w.weights[i]) {
            ro->baseline |= (ngx_uint_t) 1 << i;
        }
    }

    if (ro->baseline == 0) {
        return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_CONFLICT,
                                               "nothing_to_ramp",
                                               "pool \"%V\" has all the "
                                               "traffic already",
                                               &pool[ro->pool].name);
    }

    /* linear steps from the pool's weight now to 100 */

    ramp = ro->interval;
    from = w.weights[ro->pool];
    n = ngx_min(ngx_max(ramp / 1000, 1), NGX_HTTP_TS_RO_RAMP_STEPS);
    n = ngx_min(n, NGX_HTTP_TS_TOTAL - from);

    ro->nsteps = n;
    ro->interval = ramp / n;

    for (i = 0; i < n; i++) {
        ro->steps[i] = from + (NGX_HTTP_TS_TOTAL - from) * (i + 1) / n;
    }

    if (mcf->sync && !mcf->sh->sync_up) {
        return ngx_http_traffic_shift_api_rollout_unsynced(err);
    }

    rc = ngx_http_traffic_shift_zone_rollout_start(mcf, split, ro, if_match,
                                                   &req->change);

    if (rc != NGX_OK) {
        return ngx_http_traffic_shift_api_rollout_result(split, rc,
                                                       &req->change, err);
    }

    req->status = NGX_HTTP_OK;
    req->ramp = 1;

    ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                  "traffic_shift \"%V\": ramp of pool \"%V\" over %Mms "
                  "started by client %V, %ui steps of %Mms, generation %ui",
                  &split->name, &pool[ro->pool].name, ramp,
                  &r->connection->addr_text, n, ro->interval,
                  req->change.new.generation);

    return NGX_OK;
}



/* an action on the rollout: PATCH, or DELETE (abort) */

ngx_int_t
ngx_http_traffic_shift_api_rollout_act(ngx_http_request_t *r,
    ngx_http_traffic_shift_api_req_t *req, ngx_uint_t action,
    ngx_uint_t if_match, ngx_http_traffic_shift_api_err_t *err)
{
    u_char                              *p, text[128];
    ngx_int_t                            rc;
    ngx_http_traffic_shift_split_t      *split;
    ngx_http_traffic_shift_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_traffic_shift_module);
    split = req->path.split;

    switch (action) {

    case NGX_HTTP_TS_RO_PAUSE:
        p = ngx_snprintf(text, sizeof(text), "paused by client %V",
                         &r->connection->addr_text);
        rc = ngx_http_traffic_shift_zone_rollout_end(mcf, split, 0,
                                                     NGX_HTTP_TS_RO_PAUSED,
                                                     NULL, text, p - text,
                                                     if_match,
                                                     &req->change);
        break;

    case NGX_HTTP_TS_RO_ABORT:
        p = ngx_snprintf(text, sizeof(text), "aborted by client %V",
                         &r->connection->addr_text);
        rc = ngx_http_traffic_shift_zone_rollout_end(mcf, split, 0,
                                                     NGX_HTTP_TS_RO_ABORTED,
                                                     NULL, text, p - text,
                                                     if_match,
                                                     &req->change);
        break;

    default:
        rc = ngx_http_traffic_shift_zone_rollout_resume(mcf, split,
                                        action == NGX_HTTP_TS_RO_PROMOTE,
                                        if_match, &req->change);
    }

    if (rc != NGX_OK) {
        return ngx_http_traffic_shift_api_rollout_result(split, rc,
                                                       &req->change, err);
    }

    ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                  "traffic_shift \"%V\": rollout %s by client %V, "
                  "generation %ui", &split->name,
                  action == NGX_HTTP_TS_RO_PAUSE ? "paused"
                  : action == NGX_HTTP_TS_RO_RESUME ? "resumed"
                  : action == NGX_HTTP_TS_RO_PROMOTE ? "promoted"
                  : "aborted, weights from before the rollout restored",
                  &r->connection->addr_text, req->change.new.generation);

    req->status = NGX_HTTP_OK;

    return NGX_OK;
}


static ngx_int_t
ngx_http_traffic_shift_api_rollout_result(ngx_http_traffic_shift_split_t *split,
    ngx_int_t rc, ngx_http_traffic_shift_change_t *change,
    ngx_http_traffic_shift_api_err_t *err)
{
    u_char                              node[NGX_HTTP_TS_NODE_LEN];
    size_t                              len;
    ngx_http_traffic_shift_pool_t      *pool;
    ngx_http_traffic_shift_main_conf_t *mcf;

    pool = split->pools.elts;

    switch (rc) {

    case NGX_HTTP_PRECONDITION_FAILED:
        return ngx_http_traffic_shift_api_fail(err,
                                               NGX_HTTP_PRECONDITION_FAILED,
                                               "precondition_failed",
                                               "upstream \"%V\" is at "
                                               "generation %ui, If-Match "
                                               "differs", &split->name,
                                               change->old.generation);

    case NGX_DECLINED:
        return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_CONFLICT,
                                               "no_rollout",
                                               "upstream \"%V\" has no "
                                               "rollout in a state for this "
                                               "action", &split->name);

    case NGX_AGAIN:
        mcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                              ngx_http_traffic_shift_module);
        len = mcf ? ngx_http_traffic_shift_zone_sync_driven(mcf, split, node)
                  : 0;

        if (len) {
            return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_CONFLICT,
                                               "rollout_in_progress",
                                               "node \"%*s\" of the fleet "
                                               "drives a rollout of "
                                               "upstream \"%V\"", len, node,
                                               &split->name);
        }

        return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_CONFLICT,
                                               "rollout_in_progress",
                                               "upstream \"%V\" has a "
                                               "rollout in progress or "
                                               "paused; abort it first",
                                               &split->name);

    case NGX_BUSY:
        return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_CONFLICT,
                                               "pool_unavailable",
                                               "pool \"%V\" (upstream "
                                               "\"%V\") has no live server",
                                               &pool[change->dead_pool].name,
                                               &pool[change->dead_pool]
                                                   .upstream);

    case NGX_ERROR:
        return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_CONFLICT,
                                               "no_room",
                                               "the last step and the "
                                               "weights of the pools outside "
                                               "the rollout total more than "
                                               "100");

    default: /* NGX_ABORT */
        return ngx_http_traffic_shift_api_fail(err,
                                               NGX_HTTP_SERVICE_UNAVAILABLE,
                                               "reloading",
                                               "the configuration of "
                                               "upstream \"%V\" is being "
                                               "reloaded, retry",
                                               &split->name);
    }
}


/* fleet mode: a rollout is driven through etcd, which does not answer */

static ngx_int_t
ngx_http_traffic_shift_api_rollout_unsynced(
    ngx_http_traffic_shift_api_err_t *err)
{
    return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_SERVICE_UNAVAILABLE,
                                           "sync_unavailable",
                                           "etcd cannot be reached; in "
                                           "fleet mode a rollout needs it, "
                                           "nothing was started");
}
