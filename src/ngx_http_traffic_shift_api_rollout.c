
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#include "ngx_http_traffic_shift_api.h"


/*
 * /upstreams/NAME/rollout: PUT or POST starts a rollout, PATCH acts on it
 * (pause, resume, promote, abort), DELETE aborts it, GET reads it.  The
 * body is checked completely before anything changes.
 */


#define NGX_HTTP_TS_RO_MIN_INTERVAL  1000
#define NGX_HTTP_TS_RO_MAX_DURATION  (24 * 60 * 60 * 1000)
#define NGX_HTTP_TS_RO_MAX_REQUESTS  1000000000

/* a ramp: at most this many steps, at most one a second */
#define NGX_HTTP_TS_RO_RAMP_STEPS    20

/* a ramp's fast abort unless the body gives one: 20% of 50 responses */
#define NGX_HTTP_TS_RO_RAMP_RATIO    2000
#define NGX_HTTP_TS_RO_RAMP_WINDOW   50


static ngx_int_t ngx_http_traffic_shift_api_rollout_parse(
    ngx_http_traffic_shift_split_t *split, json_t *root,
    ngx_http_traffic_shift_sh_rollout_t *ro,
    ngx_http_traffic_shift_api_err_t *err);
static ngx_int_t ngx_http_traffic_shift_api_rollout_ramp_parse(
    ngx_http_traffic_shift_split_t *split, json_t *root,
    ngx_http_traffic_shift_sh_rollout_t *ro,
    ngx_http_traffic_shift_api_err_t *err);
static ngx_int_t ngx_http_traffic_shift_api_rollout_pool(
    ngx_http_traffic_shift_split_t *split, json_t *value, const char *what,
    ngx_uint_t *index, ngx_http_traffic_shift_api_err_t *err);
static ngx_int_t ngx_http_traffic_shift_api_rollout_steps(json_t *value,
    ngx_http_traffic_shift_sh_rollout_t *ro,
    ngx_http_traffic_shift_api_err_t *err);
static ngx_int_t ngx_http_traffic_shift_api_rollout_analysis(json_t *obj,
    ngx_http_traffic_shift_sh_rollout_t *ro,
    ngx_http_traffic_shift_api_err_t *err);
static ngx_int_t ngx_http_traffic_shift_api_rollout_fast_abort(json_t *obj,
    ngx_http_traffic_shift_sh_rollout_t *ro,
    ngx_http_traffic_shift_api_err_t *err);
static ngx_int_t ngx_http_traffic_shift_api_rollout_msec(json_t *value,
    const char *name, ngx_msec_t min, ngx_msec_t *ms,
    ngx_http_traffic_shift_api_err_t *err);
static ngx_int_t ngx_http_traffic_shift_api_rollout_number(json_t *value,
    const char *name, double min, double max, ngx_uint_t scale,
    ngx_uint_t *n, ngx_http_traffic_shift_api_err_t *err);
static ngx_int_t ngx_http_traffic_shift_api_rollout_integer(json_t *value,
    const char *name, ngx_uint_t max, ngx_uint_t *n,
    ngx_http_traffic_shift_api_err_t *err);
static ngx_int_t ngx_http_traffic_shift_api_rollout_result(
    ngx_http_traffic_shift_split_t *split, ngx_int_t rc,
    ngx_http_traffic_shift_change_t *change,
    ngx_http_traffic_shift_api_err_t *err);
static json_t *ngx_http_traffic_shift_api_rollout_counts(
    ngx_http_traffic_shift_ro_step_t *e, ngx_uint_t k);
static json_t *ngx_http_traffic_shift_api_rollout_msec_json(ngx_msec_t ms);
static json_t *ngx_http_traffic_shift_api_rollout_history(
    ngx_http_traffic_shift_sh_rollout_t *ro);


static char  *ngx_http_traffic_shift_api_ro_states[] = {
    "none", "progressing", "paused", "succeeded", "rolled_back", "aborted"
};

static char  *ngx_http_traffic_shift_api_ro_verdicts[] = {
    "pass", "fail", "inconclusive"
};

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


/* {"active": POOL, "ramp": DURATION, "fast_abort": {...}} */

static ngx_int_t
ngx_http_traffic_shift_api_rollout_ramp_parse(
    ngx_http_traffic_shift_split_t *split, json_t *root,
    ngx_http_traffic_shift_sh_rollout_t *ro,
    ngx_http_traffic_shift_api_err_t *err)
{
    json_t      *value;
    ngx_uint_t   have_pool;
    const char  *key;

    ro->ramp = 1;
    ro->min_requests = 0;
    ro->max_error_ratio = NGX_CONF_UNSET_UINT;
    ro->max_error_ratio_vs = NGX_CONF_UNSET_UINT;
    ro->max_p99 = NGX_CONF_UNSET_MSEC;
    ro->max_p99_vs = NGX_CONF_UNSET_UINT;
    ro->max_hold = NGX_CONF_UNSET_MSEC;
    ro->fa_ratio = NGX_HTTP_TS_RO_RAMP_RATIO;
    ro->fa_window = NGX_HTTP_TS_RO_RAMP_WINDOW;

    have_pool = 0;

    json_object_foreach(root, key, value) {

        if (ngx_strcmp(key, "active") == 0) {
            if (ngx_http_traffic_shift_api_rollout_pool(split, value,
                                                         "active", &ro->pool,
                                                         err)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            have_pool = 1;

        } else if (ngx_strcmp(key, "ramp") == 0) {
            if (ngx_http_traffic_shift_api_rollout_msec(value, "ramp",
                                               NGX_HTTP_TS_RO_MIN_INTERVAL,
                                               &ro->interval, err)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

        } else if (ngx_strcmp(key, "fast_abort") == 0) {
            ro->fa_window = 0;

            if (ngx_http_traffic_shift_api_rollout_fast_abort(value, ro, err)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

        } else if (ngx_strcmp(key, "weights") == 0) {
            return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_BAD_REQUEST,
                                               "conflicting_fields",
                                               "\"ramp\" goes with "
                                               "\"active\", not with "
                                               "\"weights\"");

        } else {
            return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_BAD_REQUEST,
                                               "unknown_field",
                                               "unknown field \"%*s\" with "
                                               "\"ramp\", expected "
                                               "\"active\" and "
                                               "\"fast_abort\"",
                                               ngx_min(ngx_strlen(key), 64),
                                               key);
        }
    }

    if (!have_pool) {
        return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_BAD_REQUEST,
                                               "missing_field",
                                               "\"ramp\" needs \"active\": "
                                               "the pool to ramp up");
    }

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
    ngx_http_traffic_shift_pool_t  *pool;

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


static ngx_int_t
ngx_http_traffic_shift_api_rollout_parse(ngx_http_traffic_shift_split_t *split,
    json_t *root, ngx_http_traffic_shift_sh_rollout_t *ro,
    ngx_http_traffic_shift_api_err_t *err)
{
    json_t      *value, *item;
    size_t       n;
    ngx_uint_t   i, have_pool, have_base, have_steps;
    const char  *key;

    ro->interval = 60000;
    ro->min_requests = 100;
    ro->max_error_ratio = NGX_CONF_UNSET_UINT;
    ro->max_error_ratio_vs = NGX_CONF_UNSET_UINT;
    ro->max_p99 = NGX_CONF_UNSET_MSEC;
    ro->max_p99_vs = NGX_CONF_UNSET_UINT;
    ro->max_hold = 600000;

    have_pool = 0;
    have_base = 0;
    have_steps = 0;

    json_object_foreach(root, key, value) {

        if (ngx_strcmp(key, "pool") == 0) {
            if (ngx_http_traffic_shift_api_rollout_pool(split, value,
                                                         "pool", &i, err)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            ro->pool = i;
            have_pool = 1;

        } else if (ngx_strcmp(key, "baseline") == 0) {
            if (!json_is_array(value) || json_array_size(value) == 0) {
                return ngx_http_traffic_shift_api_fail(err,
                                               NGX_HTTP_BAD_REQUEST,
                                               "invalid_type",
                                               "\"baseline\" must be a "
                                               "non-empty array of pool "
                                               "names");
            }

            json_array_foreach(value, n, item) {
                if (ngx_http_traffic_shift_api_rollout_pool(split, item,
                                                         "baseline", &i, err)
                    != NGX_OK)
                {
                    return NGX_ERROR;
                }

                if (ro->baseline & ((ngx_uint_t) 1 << i)) {
                    return ngx_http_traffic_shift_api_fail(err,
                                               NGX_HTTP_BAD_REQUEST,
                                               "invalid_baseline",
                                               "pool \"%s\" is twice in "
                                               "\"baseline\"",
                                               json_string_value(item));
                }

                ro->baseline |= (ngx_uint_t) 1 << i;
            }

            have_base = 1;

        } else if (ngx_strcmp(key, "steps") == 0) {
            if (ngx_http_traffic_shift_api_rollout_steps(value, ro, err)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            have_steps = 1;

        } else if (ngx_strcmp(key, "interval") == 0) {
            if (ngx_http_traffic_shift_api_rollout_msec(value, "interval",
                                               NGX_HTTP_TS_RO_MIN_INTERVAL,
                                               &ro->interval, err)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

        } else if (ngx_strcmp(key, "max_hold") == 0) {
            if (ngx_http_traffic_shift_api_rollout_msec(value, "max_hold",
                                               NGX_HTTP_TS_RO_MIN_INTERVAL,
                                               &ro->max_hold, err)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

        } else if (ngx_strcmp(key, "min_requests") == 0) {
            if (ngx_http_traffic_shift_api_rollout_integer(value,
                                               "min_requests",
                                               NGX_HTTP_TS_RO_MAX_REQUESTS,
                                               &ro->min_requests, err)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

        } else if (ngx_strcmp(key, "analysis") == 0) {
            if (ngx_http_traffic_shift_api_rollout_analysis(value, ro, err)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

        } else if (ngx_strcmp(key, "fast_abort") == 0) {
            if (ngx_http_traffic_shift_api_rollout_fast_abort(value, ro, err)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

        } else {
            return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_BAD_REQUEST,
                                               "unknown_field",
                                               "unknown field \"%*s\", "
                                               "expected \"pool\", "
                                               "\"baseline\", \"steps\", "
                                               "\"interval\", "
                                               "\"min_requests\", "
                                               "\"analysis\", \"fast_abort\" "
                                               "or \"max_hold\"",
                                               ngx_min(ngx_strlen(key), 64),
                                               key);
        }
    }

    if (!have_pool || !have_base || !have_steps) {
        return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_BAD_REQUEST,
                                               "missing_field",
                                               "the body must have \"pool\", "
                                               "\"baseline\" and \"steps\"");
    }

    if (ro->baseline & ((ngx_uint_t) 1 << ro->pool)) {
        return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_BAD_REQUEST,
                                               "invalid_baseline",
                                               "the pool rolled out cannot "
                                               "be in \"baseline\"");
    }

    return NGX_OK;
}


/* a pool name of the upstream: its index */

static ngx_int_t
ngx_http_traffic_shift_api_rollout_pool(ngx_http_traffic_shift_split_t *split,
    json_t *value, const char *what, ngx_uint_t *index,
    ngx_http_traffic_shift_api_err_t *err)
{
    ngx_int_t    i;
    const char  *name;

    if (!json_is_string(value)) {
        return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_BAD_REQUEST,
                                               "invalid_type",
                                               "\"%s\" must have pool names",
                                               what);
    }

    name = json_string_value(value);
    i = ngx_http_traffic_shift_find_pool(split, (u_char *) name,
                                         json_string_length(value));

    if (i == NGX_ERROR) {
        return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_BAD_REQUEST,
                                               "unknown_pool",
                                               "upstream \"%V\" has no pool "
                                               "\"%*s\"", &split->name,
                                               ngx_min(json_string_length(
                                                   value), 64), name);
    }

    *index = i;

    return NGX_OK;
}


/* increasing weights, at most 2 decimals, the last at most 100 */

static ngx_int_t
ngx_http_traffic_shift_api_rollout_steps(json_t *value,
    ngx_http_traffic_shift_sh_rollout_t *ro,
    ngx_http_traffic_shift_api_err_t *err)
{
    json_t      *item;
    ngx_int_t    w;
    ngx_uint_t   i;

    if (!json_is_array(value) || json_array_size(value) == 0
        || json_array_size(value) > NGX_HTTP_TS_RO_MAX_STEPS)
    {
        return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_BAD_REQUEST,
                                               "invalid_steps",
                                               "\"steps\" must be an array "
                                               "of 1 to %d weights",
                                               NGX_HTTP_TS_RO_MAX_STEPS);
    }

    json_array_foreach(value, i, item) {
        w = json_is_number(item)
            ? ngx_http_traffic_shift_json_to_weight(item) : NGX_ERROR;

        if (w <= 0) {
            return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_BAD_REQUEST,
                                               "invalid_steps",
                                               "step %ui must be a weight "
                                               "over 0 and at most 100, with "
                                               "at most 2 decimals", i + 1);
        }

        if (i && (ngx_uint_t) w <= ro->steps[i - 1]) {
            return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_BAD_REQUEST,
                                               "invalid_steps",
                                               "the steps must increase: "
                                               "step %ui is not above step "
                                               "%ui", i + 1, i);
        }

        ro->steps[i] = w;
    }

    ro->nsteps = json_array_size(value);

    return NGX_OK;
}


static ngx_int_t
ngx_http_traffic_shift_api_rollout_analysis(json_t *obj,
    ngx_http_traffic_shift_sh_rollout_t *ro,
    ngx_http_traffic_shift_api_err_t *err)
{
    json_t      *value;
    ngx_int_t    rc;
    const char  *key;

    if (!json_is_object(obj)) {
        return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_BAD_REQUEST,
                                               "invalid_type",
                                               "\"analysis\" must be an "
                                               "object");
    }

    json_object_foreach(obj, key, value) {

        if (ngx_strcmp(key, "max_error_ratio") == 0) {
            rc = ngx_http_traffic_shift_api_rollout_number(value,
                                                 "max_error_ratio", 0, 1,
                                                 10000, &ro->max_error_ratio,
                                                 err);

        } else if (ngx_strcmp(key, "max_error_ratio_vs_baseline") == 0) {
            rc = ngx_http_traffic_shift_api_rollout_number(value,
                                           "max_error_ratio_vs_baseline",
                                           1, 1000, 100,
                                           &ro->max_error_ratio_vs, err);

        } else if (ngx_strcmp(key, "max_p99") == 0) {
            rc = ngx_http_traffic_shift_api_rollout_msec(value, "max_p99", 1,
                                                         &ro->max_p99, err);

        } else if (ngx_strcmp(key, "max_p99_vs_baseline") == 0) {
            rc = ngx_http_traffic_shift_api_rollout_number(value,
                                           "max_p99_vs_baseline", 1, 1000,
                                           100, &ro->max_p99_vs, err);

        } else {
            return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_BAD_REQUEST,
                                               "unknown_field",
                                               "unknown field \"%*s\" in "
                                               "\"analysis\", expected "
                                               "\"max_error_ratio\", "
                                               "\"max_error_ratio_vs_"
                                               "baseline\", \"max_p99\" or "
                                               "\"max_p99_vs_baseline\"",
                                               ngx_min(ngx_strlen(key), 64),
                                               key);
        }

        if (rc != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_traffic_shift_api_rollout_fast_abort(json_t *obj,
    ngx_http_traffic_shift_sh_rollout_t *ro,
    ngx_http_traffic_shift_api_err_t *err)
{
    json_t      *value;
    const char  *key;

    if (!json_is_object(obj)) {
        return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_BAD_REQUEST,
                                               "invalid_type",
                                               "\"fast_abort\" must be an "
                                               "object");
    }

    ro->fa_ratio = NGX_CONF_UNSET_UINT;

    json_object_foreach(obj, key, value) {

        if (ngx_strcmp(key, "error_ratio") == 0) {
            if (ngx_http_traffic_shift_api_rollout_number(value,
                                          "fast_abort.error_ratio", 0, 1,
                                          10000, &ro->fa_ratio, err)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

        } else if (ngx_strcmp(key, "window") == 0) {
            if (ngx_http_traffic_shift_api_rollout_integer(value,
                                               "fast_abort.window",
                                               NGX_HTTP_TS_RO_MAX_WINDOW,
                                               &ro->fa_window, err)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

        } else {
            return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_BAD_REQUEST,
                                               "unknown_field",
                                               "unknown field \"%*s\" in "
                                               "\"fast_abort\", expected "
                                               "\"error_ratio\" and "
                                               "\"window\"",
                                               ngx_min(ngx_strlen(key), 64),
                                               key);
        }
    }

    if (ro->fa_ratio == NGX_CONF_UNSET_UINT || ro->fa_window == 0) {
        return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_BAD_REQUEST,
                                               "missing_field",
                                               "\"fast_abort\" must have "
                                               "\"error_ratio\" and "
                                               "\"window\"");
    }

    return NGX_OK;
}


/* "60s", "800ms": from "min" milliseconds to a day */

static ngx_int_t
ngx_http_traffic_shift_api_rollout_msec(json_t *value, const char *name,
    ngx_msec_t min, ngx_msec_t *ms, ngx_http_traffic_shift_api_err_t *err)
{
    ngx_int_t  n;

    n = json_is_string(value)
        ? ngx_http_traffic_shift_parse_msec((u_char *)
                                            json_string_value(value),
                                            json_string_length(value))
        : NGX_ERROR;

    if (n == NGX_ERROR || (ngx_msec_t) n < min
        || n > NGX_HTTP_TS_RO_MAX_DURATION)
    {
        return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_BAD_REQUEST,
                                               "invalid_duration",
                                               "\"%s\" must be a duration "
                                               "such as \"60s\" or "
                                               "\"800ms\", from %Mms to 24h",
                                               name, min);
    }

    *ms = n;

    return NGX_OK;
}


/* a number from "min" to "max", kept in 1/"scale" */

static ngx_int_t
ngx_http_traffic_shift_api_rollout_number(json_t *value, const char *name,
    double min, double max, ngx_uint_t scale, ngx_uint_t *n,
    ngx_http_traffic_shift_api_err_t *err)
{
    double  v;

    if (!json_is_number(value)) {
        goto invalid;
    }

    v = json_number_value(value);

    if (!(v >= min && v <= max)) {
        goto invalid;
    }

    *n = (ngx_uint_t) (v * scale + 0.5);

    return NGX_OK;

invalid:

    return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_BAD_REQUEST,
                                           "invalid_value",
                                           "\"%s\" must be a number from "
                                           "%d to %d", name, (int) min,
                                           (int) max);
}


/* an integer from 1 to "max" */

static ngx_int_t
ngx_http_traffic_shift_api_rollout_integer(json_t *value, const char *name,
    ngx_uint_t max, ngx_uint_t *n, ngx_http_traffic_shift_api_err_t *err)
{
    if (!json_is_integer(value) || json_integer_value(value) < 1
        || (ngx_uint_t) json_integer_value(value) > max)
    {
        return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_BAD_REQUEST,
                                               "invalid_value",
                                               "\"%s\" must be an integer "
                                               "from 1 to %ui", name, max);
    }

    *n = json_integer_value(value);

    return NGX_OK;
}


/* GET: the rollout, or NULL with the error */

json_t *
ngx_http_traffic_shift_api_rollout_json(ngx_http_request_t *r,
    ngx_http_traffic_shift_split_t *split,
    ngx_http_traffic_shift_api_err_t *err)
{
    json_t                               *root, *obj;
    ngx_uint_t                            state;
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
                     json_string(ngx_http_traffic_shift_api_ro_states[state]))
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
        goto failed;
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
            goto failed;
        }
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
