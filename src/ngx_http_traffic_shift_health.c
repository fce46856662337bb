
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#include "ngx_http_traffic_shift_health.h"


char *
ngx_http_traffic_shift_health_check(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    return "is not supported yet";
}


ngx_int_t
ngx_http_traffic_shift_health_init(ngx_conf_t *cf,
    ngx_http_traffic_shift_main_conf_t *mcf)
{
    return NGX_OK;
}


ngx_int_t
ngx_http_traffic_shift_health_init_process(ngx_cycle_t *cycle)
{
    return NGX_OK;
}


void
ngx_http_traffic_shift_health_exit_process(ngx_cycle_t *cycle)
{
}
