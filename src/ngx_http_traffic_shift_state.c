
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#include "ngx_http_traffic_shift_state.h"


ngx_int_t
ngx_http_traffic_shift_state_load(ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_log_t *log)
{
    return NGX_OK;
}
