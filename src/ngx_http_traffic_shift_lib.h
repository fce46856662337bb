
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#ifndef _NGX_HTTP_TRAFFIC_SHIFT_LIB_H_INCLUDED_
#define _NGX_HTTP_TRAFFIC_SHIFT_LIB_H_INCLUDED_


#include "ngx_http_traffic_shift.h"

#include <jansson.h>


/*
 * The bottom layer, with the zone: weights as text and JSON, names, and
 * look-ups in the configuration.  Nothing here touches shared memory or
 * calls any other file of the module.
 */


/* "90", "12.5", "33.33": hundredths of a percent, or NGX_ERROR */
ngx_int_t ngx_http_traffic_shift_parse_weight(u_char *p, size_t len);
/* 9000 -> "90", 1250 -> "12.5", 3333 -> "33.33"; at most 8 bytes */
u_char *ngx_http_traffic_shift_print_weight(u_char *p, ngx_uint_t weight);
/* [A-Za-z0-9_-]{1,32} */
ngx_int_t ngx_http_traffic_shift_valid_name(u_char *p, size_t len);

ngx_http_traffic_shift_split_t *ngx_http_traffic_shift_find_split(
    ngx_http_traffic_shift_main_conf_t *mcf, u_char *name, size_t len);
ngx_int_t ngx_http_traffic_shift_find_pool(
    ngx_http_traffic_shift_split_t *split, u_char *name, size_t len);
ngx_http_traffic_shift_upstream_t *ngx_http_traffic_shift_find_upstream(
    ngx_http_traffic_shift_main_conf_t *mcf, u_char *name, size_t len);
ngx_int_t ngx_http_traffic_shift_find_server(
    ngx_http_traffic_shift_upstream_t *ups, u_char *name, size_t len);

json_t *ngx_http_traffic_shift_json_str(u_char *p, size_t len);
/* "1970-01-01T00:00:00Z" */
#define NGX_HTTP_TS_TIME_LEN  20

json_t *ngx_http_traffic_shift_json_time(time_t t);
u_char *ngx_http_traffic_shift_time_text(u_char *p, time_t t);
json_t *ngx_http_traffic_shift_json_weight(ngx_uint_t weight);
json_t *ngx_http_traffic_shift_json_pools(
    ngx_http_traffic_shift_split_t *split, ngx_uint_t mask);
json_t *ngx_http_traffic_shift_json_weights(
    ngx_http_traffic_shift_split_t *split, ngx_uint_t *weights, ngx_uint_t n);
ngx_int_t ngx_http_traffic_shift_json_to_weight(json_t *value);
ngx_int_t ngx_http_traffic_shift_json_set(json_t *obj, ngx_str_t *key,
    json_t *value);

ngx_uint_t ngx_http_traffic_shift_quantile(ngx_uint_t *counts, ngx_uint_t q);
ngx_int_t ngx_http_traffic_shift_parse_msec(u_char *p, size_t len);


extern ngx_msec_t   ngx_http_traffic_shift_buckets[NGX_HTTP_TS_BUCKETS];
extern const char  *ngx_http_traffic_shift_ro_states[NGX_HTTP_TS_RO_STATES];


/* the bucket of a response time in milliseconds: a binary search */

static ngx_inline ngx_uint_t
ngx_http_traffic_shift_bucket(ngx_msec_t ms)
{
    ngx_uint_t  lo, hi, mid;

    lo = 0;
    hi = NGX_HTTP_TS_BUCKETS - 1;

    while (lo < hi) {
        mid = (lo + hi) / 2;

        if (ms <= ngx_http_traffic_shift_buckets[mid]) {
            hi = mid;

        } else {
            lo = mid + 1;
        }
    }

    return lo;
}


#endif /* _NGX_HTTP_TRAFFIC_SHIFT_LIB_H_INCLUDED_ */
