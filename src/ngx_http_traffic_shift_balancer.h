
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#ifndef _NGX_HTTP_TRAFFIC_SHIFT_BALANCER_H_INCLUDED_
#define _NGX_HTTP_TRAFFIC_SHIFT_BALANCER_H_INCLUDED_


#include "ngx_http_traffic_shift.h"


ngx_int_t ngx_http_traffic_shift_init_upstream(ngx_conf_t *cf,
    ngx_http_upstream_srv_conf_t *us);
ngx_http_traffic_shift_upstream_t *ngx_http_traffic_shift_upstream_add(
    ngx_conf_t *cf, ngx_http_upstream_srv_conf_t *uscf);
ngx_int_t ngx_http_traffic_shift_upstream_wrap(ngx_conf_t *cf,
    ngx_http_traffic_shift_upstream_t *ups);


ngx_int_t ngx_http_traffic_shift_pool_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
ngx_int_t ngx_http_traffic_shift_log_handler(ngx_http_request_t *r);


#endif /* _NGX_HTTP_TRAFFIC_SHIFT_BALANCER_H_INCLUDED_ */
