
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#ifndef _NGX_HTTP_TRAFFIC_SHIFT_ROLLOUT_H_INCLUDED_
#define _NGX_HTTP_TRAFFIC_SHIFT_ROLLOUT_H_INCLUDED_


#include "ngx_http_traffic_shift.h"


ngx_int_t ngx_http_traffic_shift_rollout_init_process(ngx_cycle_t *cycle);
void ngx_http_traffic_shift_rollout_exit_process(ngx_cycle_t *cycle);


#endif /* _NGX_HTTP_TRAFFIC_SHIFT_ROLLOUT_H_INCLUDED_ */
