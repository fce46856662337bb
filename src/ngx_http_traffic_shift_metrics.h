
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#ifndef _NGX_HTTP_TRAFFIC_SHIFT_METRICS_H_INCLUDED_
#define _NGX_HTTP_TRAFFIC_SHIFT_METRICS_H_INCLUDED_


#include "ngx_http_traffic_shift.h"


/*
 * The body is built in one buffer sized beforehand: a sample line is at
 * most NGX_HTTP_TS_METRICS_LINE bytes besides its escaped label values.
 */

#define NGX_HTTP_TS_METRICS_LINE  (128 + NGX_ATOMIC_T_LEN)


typedef struct {
    ngx_str_t                          name;
    ngx_int_t                          rc;
    ngx_http_traffic_shift_weights_t   w;
} ngx_http_traffic_shift_metrics_split_t;


typedef struct {
    ngx_pool_t                              *pool;
    ngx_http_traffic_shift_main_conf_t      *mcf;
    ngx_http_traffic_shift_metrics_split_t  *splits;
    ngx_str_t                               *ups;
    u_char                                  *p;
    u_char                                  *last;
    /* GET /metrics?servers=off: no series per server */
    ngx_uint_t                               no_servers;
} ngx_http_traffic_shift_metrics_ctx_t;


#define ngx_http_traffic_shift_metrics_text(p, text)                          \
    ngx_cpymem(p, text, sizeof(text) - 1)


ngx_int_t ngx_http_traffic_shift_metrics(ngx_http_request_t *r,
    ngx_http_traffic_shift_main_conf_t *mcf, ngx_str_t *body);

/* ngx_http_traffic_shift_metrics_servers.c */
ngx_int_t ngx_http_traffic_shift_metrics_servers_prepare(
    ngx_http_traffic_shift_metrics_ctx_t *ctx, size_t *size);
ngx_int_t ngx_http_traffic_shift_metrics_servers(
    ngx_http_traffic_shift_metrics_ctx_t *ctx);
ngx_int_t ngx_http_traffic_shift_metrics_reasons(
    ngx_http_traffic_shift_metrics_ctx_t *ctx);
ngx_int_t ngx_http_traffic_shift_metrics_escape(ngx_pool_t *pool,
    ngx_str_t *src, ngx_str_t *dst);


#endif /* _NGX_HTTP_TRAFFIC_SHIFT_METRICS_H_INCLUDED_ */
