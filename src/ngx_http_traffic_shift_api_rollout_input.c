
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#include "ngx_http_traffic_shift_api.h"


/*
 * The body that starts a rollout, or a ramp: parsed and checked
 * completely, without changing anything.
 */


#define NGX_HTTP_TS_RO_MIN_INTERVAL  1000
#define NGX_HTTP_TS_RO_MAX_DURATION  (24 * 60 * 60 * 1000)
#define NGX_HTTP_TS_RO_MAX_REQUESTS  1000000000

/* a ramp's fast abort unless the body gives one: 20% of 50 responses */
#define NGX_HTTP_TS_RO_RAMP_RATIO    2000
#define NGX_HTTP_TS_RO_RAMP_WINDOW   50


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


/* {"active": POOL, "ramp": DURATION, "fast_abort": {...}} */

ngx_int_t
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


ngx_int_t
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
