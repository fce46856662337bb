
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#include "ngx_http_traffic_shift_lib.h"


ngx_int_t
ngx_http_traffic_shift_parse_weight(u_char *p, size_t len)
{
    u_char     *dot;
    ngx_int_t   w;

    /*
     * ngx_atofp() takes "5.", ".5" and "0000100": a weight has 1 to 3
     * digits, then optionally a point and 1 or 2 digits (ngx_atofp()
     * refuses a third)
     */

    dot = ngx_strlchr(p, p + len, '.');

    if (len == 0 || p[0] == '.' || p[len - 1] == '.'
        || (dot ? dot - p : (ssize_t) len) > 3)
    {
        return NGX_ERROR;
    }

    w = ngx_atofp(p, len, 2);

    if (w == NGX_ERROR || w > NGX_HTTP_TS_TOTAL) {
        return NGX_ERROR;
    }

    return w;
}


u_char *
ngx_http_traffic_shift_print_weight(u_char *p, ngx_uint_t weight)
{
    p = ngx_sprintf(p, "%ui", weight / 100);

    weight %= 100;

    if (weight == 0) {
        return p;
    }

    if (weight % 10 == 0) {
        return ngx_sprintf(p, ".%ui", weight / 10);
    }

    return ngx_sprintf(p, ".%02ui", weight);
}


ngx_int_t
ngx_http_traffic_shift_valid_name(u_char *p, size_t len)
{
    size_t  i;

    if (len == 0 || len > NGX_HTTP_TS_NAME_LEN) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (!((p[i] >= 'a' && p[i] <= 'z')
              || (p[i] >= 'A' && p[i] <= 'Z')
              || (p[i] >= '0' && p[i] <= '9')
              || p[i] == '_' || p[i] == '-'))
        {
            return 0;
        }
    }

    return 1;
}


/* a traffic_shift upstream by name; NULL if there is none */

ngx_http_traffic_shift_split_t *
ngx_http_traffic_shift_find_split(ngx_http_traffic_shift_main_conf_t *mcf,
    u_char *name, size_t len)
{
    ngx_uint_t                        i;
    ngx_http_traffic_shift_split_t  **splitp;

    splitp = mcf->splits.elts;

    for (i = 0; i < mcf->splits.nelts; i++) {
        if (splitp[i]->name.len == len
            && ngx_strncmp(splitp[i]->name.data, name, len) == 0)
        {
            return splitp[i];
        }
    }

    return NULL;
}


/* the index of a pool by name; NGX_ERROR if there is none */

ngx_int_t
ngx_http_traffic_shift_find_pool(ngx_http_traffic_shift_split_t *split,
    u_char *name, size_t len)
{
    ngx_uint_t                      i;
    ngx_http_traffic_shift_pool_t  *pool;

    pool = split->pools.elts;

    for (i = 0; i < split->pools.nelts; i++) {
        if (pool[i].name.len == len
            && ngx_strncmp(pool[i].name.data, name, len) == 0)
        {
            return i;
        }
    }

    return NGX_ERROR;
}


/* a tracked upstream{} block by name; NULL if there is none */

ngx_http_traffic_shift_upstream_t *
ngx_http_traffic_shift_find_upstream(ngx_http_traffic_shift_main_conf_t *mcf,
    u_char *name, size_t len)
{
    ngx_uint_t                           i;
    ngx_http_traffic_shift_upstream_t  **upsp;

    upsp = mcf->upstreams.elts;

    for (i = 0; i < mcf->upstreams.nelts; i++) {
        if (upsp[i]->uscf->host.len == len
            && ngx_strncmp(upsp[i]->uscf->host.data, name, len) == 0)
        {
            return upsp[i];
        }
    }

    return NULL;
}


/* the index of a server by address; NGX_ERROR if there is none */

ngx_int_t
ngx_http_traffic_shift_find_server(ngx_http_traffic_shift_upstream_t *ups,
    u_char *name, size_t len)
{
    ngx_uint_t  i;

    for (i = 0; i < ups->nservers; i++) {
        if (ups->servers[i].name.len == len
            && ngx_strncmp(ups->servers[i].name.data, name, len) == 0)
        {
            return i;
        }
    }

    return NGX_ERROR;
}


/* a string from the configuration, valid UTF-8 or made ASCII */

json_t *
ngx_http_traffic_shift_json_str(u_char *p, size_t len)
{
    u_char  *copy;
    json_t  *json;
    size_t   i;

    json = json_stringn((char *) p, len);

    if (json || len == 0) {
        return json;
    }

    copy = ngx_alloc(len, ngx_cycle->log);
    if (copy == NULL) {
        return NULL;
    }

    for (i = 0; i < len; i++) {
        copy[i] = (p[i] >= 0x20 && p[i] < 0x7f) ? p[i] : '?';
    }

    json = json_stringn((char *) copy, len);

    ngx_free(copy);

    return json;
}


json_t *
ngx_http_traffic_shift_json_time(time_t t)
{
    u_char  text[NGX_HTTP_TS_TIME_LEN];

    if (t == 0) {
        return json_null();
    }

    (void) ngx_http_traffic_shift_time_text(text, t);

    return json_stringn((char *) text, NGX_HTTP_TS_TIME_LEN);
}


/* ISO 8601 in UTC, NGX_HTTP_TS_TIME_LEN bytes, not NUL-terminated */

u_char *
ngx_http_traffic_shift_time_text(u_char *p, time_t t)
{
    ngx_tm_t  tm;

    ngx_gmtime(t, &tm);

    return ngx_sprintf(p, "%4d-%02d-%02dT%02d:%02d:%02dZ",
                       tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                       tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec);
}


/* 9000 -> 90, 1250 -> 12.5, 3333 -> 33.33 */

json_t *
ngx_http_traffic_shift_json_weight(ngx_uint_t weight)
{
    if (weight % 100 == 0) {
        return json_integer(weight / 100);
    }

    return json_real((double) weight / 100);
}


/*
 * A JSON number as hundredths of a percent; NGX_ERROR if it is not
 * from 0 to 100, NGX_DECLINED if it has more than 2 decimals.
 */

ngx_int_t
ngx_http_traffic_shift_json_to_weight(json_t *value)
{
    double      x;
    json_int_t  n;
    ngx_int_t   w;

    if (json_is_integer(value)) {
        n = json_integer_value(value);

        if (n < 0 || n > 100) {
            return NGX_ERROR;
        }

        return (ngx_int_t) n * 100;
    }

    x = json_real_value(value);

    if (!(x >= 0 && x <= 100)) {
        return NGX_ERROR;
    }

    /*
     * exact to the hundredth: the double nearest to w / 100 is what
     * strtod() makes of a number written with at most 2 decimals
     */

    w = (ngx_int_t) (x * 100 + 0.5);

    if ((double) w / 100 != x) {
        return NGX_DECLINED;
    }

    return w;
}


/* obj[key] = value, a key that is not valid UTF-8 made ASCII */

ngx_int_t
ngx_http_traffic_shift_json_set(json_t *obj, ngx_str_t *key, json_t *value)
{
    u_char     *copy;
    size_t      i;
    ngx_int_t   rc;

    if (value == NULL) {
        return NGX_ERROR;
    }

    /* the value is kept for a second try */
    json_incref(value);

    if (json_object_setn_new(obj, (char *) key->data, key->len, value)
        == 0)
    {
        json_decref(value);
        return NGX_OK;
    }

    /* a key that is not valid UTF-8: made ASCII */

    copy = ngx_alloc(key->len + 1, ngx_cycle->log);
    if (copy == NULL) {
        json_decref(value);
        return NGX_ERROR;
    }

    for (i = 0; i < key->len; i++) {
        copy[i] = (key->data[i] >= 0x20 && key->data[i] < 0x7f)
                  ? key->data[i] : '?';
    }

    rc = json_object_setn_new(obj, (char *) copy, key->len, value)
         ? NGX_ERROR : NGX_OK;

    ngx_free(copy);

    return rc;
}


/* the names of a rollout's states, by NGX_HTTP_TS_RO_* */

const char  *ngx_http_traffic_shift_ro_states[NGX_HTTP_TS_RO_STATES] = {
    "none", "progressing", "paused", "succeeded", "rolled_back", "aborted"
};


/* the upper bounds of the response time buckets, in milliseconds */

ngx_msec_t  ngx_http_traffic_shift_buckets[NGX_HTTP_TS_BUCKETS] = {
    1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100, 150, 200, 300, 500, 700,
    1000, 1500, 2000, 3000, 5000, 7000, 10000, 15000, 30000, 60000,
    NGX_MAX_INT32_VALUE
};


/*
 * A quantile ("q" in 1/10000) of counts by bucket, in microseconds,
 * interpolated linearly inside its bucket; the unbounded last bucket
 * answers its lower bound.  0 when there is nothing counted.
 */

ngx_uint_t
ngx_http_traffic_shift_quantile(ngx_uint_t *counts, ngx_uint_t q)
{
    uint64_t    total, rank, cum, lower, upper;
    ngx_uint_t  i;

    total = 0;

    for (i = 0; i < NGX_HTTP_TS_BUCKETS; i++) {
        total += counts[i];
    }

    if (total == 0) {
        return 0;
    }

    /* ranks in 1/10000 of a response */

    rank = total * q;
    cum = 0;

    for (i = 0; i < NGX_HTTP_TS_BUCKETS; i++) {

        if (counts[i] && cum + (uint64_t) counts[i] * 10000 >= rank) {
            break;
        }

        cum += (uint64_t) counts[i] * 10000;
    }

    if (i == NGX_HTTP_TS_BUCKETS) {
        i--;
    }

    lower = i ? ngx_http_traffic_shift_buckets[i - 1] * 1000 : 0;

    if (i == NGX_HTTP_TS_BUCKETS - 1) {
        return (ngx_uint_t) lower;
    }

    upper = ngx_http_traffic_shift_buckets[i] * 1000;

    return (ngx_uint_t) (lower + (upper - lower) * (rank - cum)
                                 / ((uint64_t) counts[i] * 10000));
}


/* "60s", "800ms", "10m": milliseconds, or NGX_ERROR */

ngx_int_t
ngx_http_traffic_shift_parse_msec(u_char *p, size_t len)
{
    ngx_str_t  s;

    s.data = p;
    s.len = len;

    if (len == 0 || p[0] < '0' || p[0] > '9') {
        return NGX_ERROR;
    }

    return ngx_parse_time(&s, 0);
}


/* the names of the pools of "mask", in the order of the configuration */

json_t *
ngx_http_traffic_shift_json_pools(ngx_http_traffic_shift_split_t *split,
    ngx_uint_t mask)
{
    json_t                         *list;
    ngx_uint_t                      i;
    ngx_http_traffic_shift_pool_t  *pool;

    pool = split->pools.elts;

    list = json_array();
    if (list == NULL) {
        return NULL;
    }

    for (i = 0; i < split->pools.nelts; i++) {
        if ((mask & ((ngx_uint_t) 1 << i))
            && json_array_append_new(list,
                     ngx_http_traffic_shift_json_str(pool[i].name.data,
                                                     pool[i].name.len)))
        {
            json_decref(list);
            return NULL;
        }
    }

    return list;
}


/*
 * Weights: "n" of them as an array when "split" is NULL, else one per
 * pool by name
 */

json_t *
ngx_http_traffic_shift_json_weights(ngx_http_traffic_shift_split_t *split,
    ngx_uint_t *weights, ngx_uint_t n)
{
    json_t                         *json;
    ngx_int_t                       rc;
    ngx_uint_t                      i;
    ngx_http_traffic_shift_pool_t  *pool;

    json = split ? json_object() : json_array();
    if (json == NULL) {
        return NULL;
    }

    for (i = 0; i < n; i++) {
        if (split) {
            pool = split->pools.elts;
            rc = ngx_http_traffic_shift_json_set(json, &pool[i].name,
                              ngx_http_traffic_shift_json_weight(weights[i]));

        } else {
            rc = json_array_append_new(json,
                              ngx_http_traffic_shift_json_weight(weights[i]))
                 ? NGX_ERROR : NGX_OK;
        }

        if (rc != NGX_OK) {
            json_decref(json);
            return NULL;
        }
    }

    return json;
}
