
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#ifndef _NGX_HTTP_TRAFFIC_SHIFT_METRICS_H_INCLUDED_
#define _NGX_HTTP_TRAFFIC_SHIFT_METRICS_H_INCLUDED_


#include "ngx_http_traffic_shift.h"


ngx_int_t ngx_http_traffic_shift_metrics(ngx_http_request_t *r,
    ngx_http_traffic_shift_main_conf_t *mcf, ngx_str_t *body);


#endif /* _NGX_HTTP_TRAFFIC_SHIFT_METRICS_H_INCLUDED_ */
