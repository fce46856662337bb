
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#ifndef _NGX_HTTP_TRAFFIC_SHIFT_API_H_INCLUDED_
#define _NGX_HTTP_TRAFFIC_SHIFT_API_H_INCLUDED_


#include "ngx_http_traffic_shift.h"
#include "ngx_http_traffic_shift_zone.h"

#include <jansson.h>


char *ngx_http_traffic_shift_api(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_traffic_shift_api_init(ngx_conf_t *cf);

/* the documents, in ngx_http_traffic_shift_api_json.c */

json_t *ngx_http_traffic_shift_api_index_json(
    ngx_http_traffic_shift_main_conf_t *mcf);
json_t *ngx_http_traffic_shift_api_split_json(
    ngx_http_traffic_shift_split_t *split,
    ngx_http_traffic_shift_weights_t *w);
json_t *ngx_http_traffic_shift_api_server_json(
    ngx_http_traffic_shift_upstream_t *ups, ngx_uint_t id);
ngx_int_t ngx_http_traffic_shift_api_health(ngx_http_request_t *r,
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_upstream_t *only, ngx_str_t *body);

json_t *ngx_http_traffic_shift_api_json_str(u_char *p, size_t len);
json_t *ngx_http_traffic_shift_api_json_time(time_t t);
json_t *ngx_http_traffic_shift_api_json_weight(ngx_uint_t weight);
ngx_int_t ngx_http_traffic_shift_api_json_to_weight(json_t *value);
ngx_int_t ngx_http_traffic_shift_api_set(json_t *obj, ngx_str_t *key,
    json_t *value);


#endif /* _NGX_HTTP_TRAFFIC_SHIFT_API_H_INCLUDED_ */
