
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#ifndef _NGX_HTTP_TRAFFIC_SHIFT_API_H_INCLUDED_
#define _NGX_HTTP_TRAFFIC_SHIFT_API_H_INCLUDED_


#include <jansson.h>

#include "ngx_http_traffic_shift.h"


char *ngx_http_traffic_shift_api(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_traffic_shift_api_init(ngx_conf_t *cf);

json_t *ngx_http_traffic_shift_api_json_weight(ngx_uint_t weight);
ngx_int_t ngx_http_traffic_shift_api_json_to_weight(json_t *value);


#endif /* _NGX_HTTP_TRAFFIC_SHIFT_API_H_INCLUDED_ */
