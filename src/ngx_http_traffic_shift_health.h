
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#ifndef _NGX_HTTP_TRAFFIC_SHIFT_HEALTH_H_INCLUDED_
#define _NGX_HTTP_TRAFFIC_SHIFT_HEALTH_H_INCLUDED_


#include "ngx_http_traffic_shift.h"


struct ngx_http_traffic_shift_health_conf_s {
    ngx_uint_t  type;
};


char *ngx_http_traffic_shift_health_check(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_traffic_shift_health_init(ngx_conf_t *cf,
    ngx_http_traffic_shift_main_conf_t *mcf);
ngx_int_t ngx_http_traffic_shift_health_init_process(ngx_cycle_t *cycle);
void ngx_http_traffic_shift_health_exit_process(ngx_cycle_t *cycle);


#endif /* _NGX_HTTP_TRAFFIC_SHIFT_HEALTH_H_INCLUDED_ */
