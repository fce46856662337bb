
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#include "ngx_http_traffic_shift_state.h"
#include "ngx_http_traffic_shift_zone.h"
#include "ngx_http_traffic_shift_lib.h"


/*
 * Values read back from the state file at start, each checked: numbers,
 * saved weights, and a saved rollout.  Nothing here changes the zone.
 */


/* a field of a rollout that must be there */
#define NGX_HTTP_TS_STATE_REQUIRED  ((ngx_uint_t) -2)

#define NGX_HTTP_TS_RO_OFF(field)                                            \
    offsetof(ngx_http_traffic_shift_sh_rollout_t, field)


/* the numbers of a saved rollout, in the units of the zone */

typedef struct {
    char                                *name;
    size_t                               offset;
    ngx_uint_t                           min;
    ngx_uint_t                           max;
    ngx_uint_t                           unset;
} ngx_http_traffic_shift_state_field_t;


static ngx_int_t ngx_http_traffic_shift_state_rollout_pools(
    ngx_http_traffic_shift_split_t *split, json_t *obj,
    ngx_http_traffic_shift_sh_rollout_t *ro);
static ngx_int_t ngx_http_traffic_shift_state_step(json_t *obj,
    ngx_http_traffic_shift_ro_step_t *e);
static ngx_int_t ngx_http_traffic_shift_state_field(json_t *obj,
    const char *name, ngx_uint_t min, ngx_uint_t max, ngx_uint_t unset,
    ngx_uint_t *n);
static ngx_int_t ngx_http_traffic_shift_state_name(
    ngx_http_traffic_shift_split_t *split, json_t *value, ngx_uint_t *index);


static ngx_http_traffic_shift_state_field_t
    ngx_http_traffic_shift_state_fields[] = {

    { "id", NGX_HTTP_TS_RO_OFF(id), 1, NGX_HTTP_TS_STATE_MAX_GEN,
      NGX_HTTP_TS_STATE_REQUIRED },
    { "step", NGX_HTTP_TS_RO_OFF(step), 1, NGX_HTTP_TS_RO_MAX_STEPS,
      NGX_HTTP_TS_STATE_REQUIRED },
    { "interval_ms", NGX_HTTP_TS_RO_OFF(interval), 1000, 86400000,
      NGX_HTTP_TS_STATE_REQUIRED },
    { "min_requests", NGX_HTTP_TS_RO_OFF(min_requests), 0, 1000000000,
      NGX_HTTP_TS_STATE_REQUIRED },
    { "max_hold_ms", NGX_HTTP_TS_RO_OFF(max_hold), 1000, 86400000,
      NGX_CONF_UNSET_MSEC },
    { "max_error_ratio_bp", NGX_HTTP_TS_RO_OFF(max_error_ratio), 0, 10000,
      NGX_CONF_UNSET_UINT },
    { "max_error_ratio_vs_pct", NGX_HTTP_TS_RO_OFF(max_error_ratio_vs), 1,
      100000000, NGX_CONF_UNSET_UINT },
    { "max_p99_ms", NGX_HTTP_TS_RO_OFF(max_p99), 1, 86400000,
      NGX_CONF_UNSET_MSEC },
    { "max_p99_vs_pct", NGX_HTTP_TS_RO_OFF(max_p99_vs), 1, 100000000,
      NGX_CONF_UNSET_UINT },
    { "fast_abort_ratio_bp", NGX_HTTP_TS_RO_OFF(fa_ratio), 0, 10000,
      NGX_CONF_UNSET_UINT },
    { "fast_abort_window", NGX_HTTP_TS_RO_OFF(fa_window), 1,
      NGX_HTTP_TS_RO_MAX_WINDOW, 0 },
    { NULL, 0, 0, 0, 0 }
};


/* an integer from "min" to 2^53 - 1 */

ngx_int_t
ngx_http_traffic_shift_state_number(json_t *value, ngx_uint_t min,
    ngx_uint_t *n)
{
    json_int_t  v;

    if (!json_is_integer(value)) {
        return NGX_ERROR;
    }

    v = json_integer_value(value);

    if (v < (json_int_t) min || v > NGX_HTTP_TS_STATE_MAX_GEN) {
        return NGX_ERROR;
    }

    *n = (ngx_uint_t) v;

    return NGX_OK;
}


/*
 * Saved weights, valid and totalling 100: NGX_OK when they name exactly
 * the configured pools, NGX_DECLINED for other pools, NGX_ERROR if invalid.
 */

ngx_int_t
ngx_http_traffic_shift_state_weights(ngx_http_traffic_shift_split_t *split,
    json_t *weights, ngx_uint_t *value_of)
{
    void        *it;
    json_t      *value;
    ngx_int_t    w, k;
    ngx_uint_t   n, total, set;
    const char  *key;

    n = split->pools.nelts;
    total = 0;
    set = 0;

    for (it = json_object_iter(weights);
         it;
         it = json_object_iter_next(weights, it))
    {
        key = json_object_iter_key(it);
        value = json_object_iter_value(it);

        if (!json_is_number(value)) {
            return NGX_ERROR;
        }

        w = ngx_http_traffic_shift_json_to_weight(value);

        if (w < 0) {
            return NGX_ERROR;
        }

        total += w;

        k = ngx_http_traffic_shift_find_pool(split, (u_char *) key,
                                             ngx_strlen(key));

        if (k != NGX_ERROR) {
            value_of[k] = w;
            set |= (ngx_uint_t) 1 << k;
        }
    }

    if (total != NGX_HTTP_TS_TOTAL) {
        return NGX_ERROR;
    }

    if (set != ((ngx_uint_t) 1 << n) - 1 || json_object_size(weights) != n) {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/*
 * An upstream's saved rollout (ngx_http_traffic_shift_state_write.c),
 * checked completely: NGX_ERROR for anything that is not what a writer
 * writes, and the upstream's state is then ignored.
 */

ngx_int_t
ngx_http_traffic_shift_state_rollout(ngx_http_traffic_shift_split_t *split,
    json_t *obj, ngx_http_traffic_shift_sh_rollout_t *ro)
{
    size_t                                 k;
    json_t                                *value, *item;
    ngx_uint_t                             i, n;
    const char                            *state;
    ngx_http_traffic_shift_state_field_t  *f;

    static char  *times[] = { "started", "step_started", "ended" };

    ngx_memzero(ro, sizeof(ngx_http_traffic_shift_sh_rollout_t));

    if (!json_is_object(obj)) {
        return NGX_ERROR;
    }

    value = json_object_get(obj, "state");

    if (!json_is_string(value)) {
        return NGX_ERROR;
    }

    state = json_string_value(value);

    for (i = NGX_HTTP_TS_RO_PROGRESSING; i < NGX_HTTP_TS_RO_STATES; i++) {
        if (ngx_strcmp(state, ngx_http_traffic_shift_ro_states[i]) == 0) {
            ro->state = i;
            break;
        }
    }

    if (ro->state == NGX_HTTP_TS_RO_NONE) {
        return NGX_ERROR;
    }

    value = json_object_get(obj, "ramp");

    if (!json_is_boolean(value)) {
        return NGX_ERROR;
    }

    ro->ramp = json_is_true(value);

    if (ngx_http_traffic_shift_state_name(split, json_object_get(obj, "pool"),
                                          &ro->pool)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_http_traffic_shift_state_rollout_pools(split, obj, ro) != NGX_OK)
    {
        return NGX_ERROR;
    }

    for (f = ngx_http_traffic_shift_state_fields; f->name; f++) {
        if (ngx_http_traffic_shift_state_field(obj, f->name, f->min, f->max,
                                               f->unset,
                                               (ngx_uint_t *) ((u_char *) ro
                                                               + f->offset))
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (ro->step > ro->nsteps) {
        return NGX_ERROR;
    }

    ro->step--;

    /* a fast abort is a ratio and a window, or nothing */

    if ((ro->fa_window == 0) != (ro->fa_ratio == NGX_CONF_UNSET_UINT)) {
        return NGX_ERROR;
    }

    if (ro->fa_window == 0) {
        ro->fa_ratio = 0;
    }

    for (i = 0; i < 3; i++) {
        if (ngx_http_traffic_shift_state_field(obj, times[i], 0,
                                               NGX_HTTP_TS_STATE_MAX_GEN,
                                               NGX_HTTP_TS_STATE_REQUIRED,
                                               &n)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        *(i == 0 ? &ro->started : i == 1 ? &ro->step_started : &ro->ended)
            = (time_t) n;
    }

    value = json_object_get(obj, "reason");

    if (!json_is_string(value)
        || json_string_length(value) >= NGX_HTTP_TS_RO_REASON_LEN
        || ngx_strlen(json_string_value(value)) != json_string_length(value))
    {
        return NGX_ERROR;
    }

    ngx_memcpy(ro->reason, json_string_value(value),
               json_string_length(value) + 1);

    value = json_object_get(obj, "before");

    if (!json_is_object(value)
        || ngx_http_traffic_shift_state_weights(split, value, ro->before)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    ro->npools = split->pools.nelts;

    value = json_object_get(obj, "history");

    if (!json_is_array(value)
        || json_array_size(value) > NGX_HTTP_TS_RO_MAX_STEPS)
    {
        return NGX_ERROR;
    }

    json_array_foreach(value, k, item) {
        if (ngx_http_traffic_shift_state_step(item, &ro->history[k])
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    ro->nhistory = json_array_size(value);

    return NGX_OK;
}


/* a saved rollout's baseline pools and steps */

static ngx_int_t
ngx_http_traffic_shift_state_rollout_pools(
    ngx_http_traffic_shift_split_t *split, json_t *obj,
    ngx_http_traffic_shift_sh_rollout_t *ro)
{
    size_t       k;
    json_t      *value, *item;
    ngx_int_t    w;
    ngx_uint_t   i, last;

    value = json_object_get(obj, "baseline");

    if (!json_is_array(value) || json_array_size(value) == 0) {
        return NGX_ERROR;
    }

    json_array_foreach(value, k, item) {
        if (ngx_http_traffic_shift_state_name(split, item, &i) != NGX_OK
            || i == ro->pool
            || (ro->baseline & ((ngx_uint_t) 1 << i)))
        {
            return NGX_ERROR;
        }

        ro->baseline |= (ngx_uint_t) 1 << i;
    }

    value = json_object_get(obj, "steps");

    if (!json_is_array(value) || json_array_size(value) == 0
        || json_array_size(value) > NGX_HTTP_TS_RO_MAX_STEPS)
    {
        return NGX_ERROR;
    }

    last = 0;

    json_array_foreach(value, k, item) {
        w = json_is_number(item) ? ngx_http_traffic_shift_json_to_weight(item)
                                 : -1;

        if (w <= (ngx_int_t) last || w > NGX_HTTP_TS_TOTAL) {
            return NGX_ERROR;
        }

        ro->steps[k] = w;
        last = w;
    }

    ro->nsteps = json_array_size(value);

    return NGX_OK;
}


static ngx_int_t
ngx_http_traffic_shift_state_step(json_t *obj,
    ngx_http_traffic_shift_ro_step_t *e)
{
    json_t      *value;
    ngx_int_t    w;
    ngx_uint_t   i, k, n, *v[4];
    const char  *verdict;

    static char  *verdicts[] = { "pass", "fail", "inconclusive" };
    static char  *counts[] = { "responses", "errors", "p50_us", "p99_us" };

    if (!json_is_object(obj)
        || ngx_http_traffic_shift_state_field(obj, "step", 1,
                                              NGX_HTTP_TS_RO_MAX_STEPS,
                                              NGX_HTTP_TS_STATE_REQUIRED,
                                              &e->step)
           != NGX_OK
        || ngx_http_traffic_shift_state_field(obj, "time", 0,
                                              NGX_HTTP_TS_STATE_MAX_GEN,
                                              NGX_HTTP_TS_STATE_REQUIRED, &n)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    e->time = n;

    value = json_object_get(obj, "weight");
    w = json_is_number(value) ? ngx_http_traffic_shift_json_to_weight(value)
                              : -1;

    if (w < 0 || w > NGX_HTTP_TS_TOTAL) {
        return NGX_ERROR;
    }

    e->weight = w;

    value = json_object_get(obj, "verdict");

    if (!json_is_string(value)) {
        return NGX_ERROR;
    }

    verdict = json_string_value(value);

    for (i = 0; i < 3; i++) {
        if (ngx_strcmp(verdict, verdicts[i]) == 0) {
            break;
        }
    }

    if (i == 3) {
        return NGX_ERROR;
    }

    e->verdict = i;

    v[0] = e->responses;
    v[1] = e->errors;
    v[2] = e->p50;
    v[3] = e->p99;

    for (k = 0; k < 4; k++) {
        value = json_object_get(obj, counts[k]);

        if (!json_is_array(value) || json_array_size(value) != 2) {
            return NGX_ERROR;
        }

        for (i = 0; i < 2; i++) {
            if (ngx_http_traffic_shift_state_number(json_array_get(value, i),
                                                    0, &v[k][i])
                != NGX_OK)
            {
                return NGX_ERROR;
            }
        }
    }

    return NGX_OK;
}


/* an integer field from "min" to "max"; absent: "unset", if optional */

static ngx_int_t
ngx_http_traffic_shift_state_field(json_t *obj, const char *name,
    ngx_uint_t min, ngx_uint_t max, ngx_uint_t unset, ngx_uint_t *n)
{
    json_t  *value;

    value = json_object_get(obj, name);

    if (value == NULL) {
        *n = unset;
        return (unset == NGX_HTTP_TS_STATE_REQUIRED) ? NGX_ERROR : NGX_OK;
    }

    if (ngx_http_traffic_shift_state_number(value, min, n) != NGX_OK
        || *n > max)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* the name of a configured pool: its index */

static ngx_int_t
ngx_http_traffic_shift_state_name(ngx_http_traffic_shift_split_t *split,
    json_t *value, ngx_uint_t *index)
{
    ngx_int_t  i;

    if (!json_is_string(value)) {
        return NGX_ERROR;
    }

    i = ngx_http_traffic_shift_find_pool(split,
                                         (u_char *) json_string_value(value),
                                         json_string_length(value));
    if (i == NGX_ERROR) {
        return NGX_ERROR;
    }

    *index = i;

    return NGX_OK;
}
