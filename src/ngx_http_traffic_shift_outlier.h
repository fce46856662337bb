
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#ifndef _NGX_HTTP_TRAFFIC_SHIFT_OUTLIER_H_INCLUDED_
#define _NGX_HTTP_TRAFFIC_SHIFT_OUTLIER_H_INCLUDED_


#include "ngx_http_traffic_shift.h"


char *ngx_http_traffic_shift_outlier_detection(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
ngx_int_t ngx_http_traffic_shift_outlier_check(ngx_conf_t *cf,
    ngx_http_traffic_shift_upstream_t *ups);
ngx_int_t ngx_http_traffic_shift_outlier_init_peer(ngx_http_request_t *r,
    ngx_http_traffic_shift_upstream_t *ups);
ngx_int_t ngx_http_traffic_shift_outlier_init_process(ngx_cycle_t *cycle);
void ngx_http_traffic_shift_outlier_exit_process(ngx_cycle_t *cycle);


#endif /* _NGX_HTTP_TRAFFIC_SHIFT_OUTLIER_H_INCLUDED_ */
