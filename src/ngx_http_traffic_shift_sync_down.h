
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#ifndef _NGX_HTTP_TRAFFIC_SHIFT_SYNC_DOWN_H_INCLUDED_
#define _NGX_HTTP_TRAFFIC_SHIFT_SYNC_DOWN_H_INCLUDED_


#include "ngx_http_traffic_shift_sync.h"


/*
 * ngx_http_traffic_shift_sync_down.c: admin marks through the fleet, one
 * key per server, PREFIX/servers/UPSTREAM/ADDRESS = {"down":true|false};
 * "tail" is UPSTREAM/ADDRESS, "value" NULL for a deleted key
 */

ngx_int_t ngx_http_traffic_shift_sync_down_kv(
    ngx_http_traffic_shift_main_conf_t *mcf, ngx_log_t *log,
    ngx_str_t *tail, ngx_str_t *value, uint64_t revision);
ngx_int_t ngx_http_traffic_shift_sync_down_write(ngx_http_request_t *r,
    ngx_http_traffic_shift_api_path_t *path, ngx_uint_t down,
    ngx_uint_t if_match, ngx_uint_t *version,
    ngx_http_traffic_shift_api_err_t *err,
    ngx_http_traffic_shift_sync_done_pt done, void *data);


#endif /* _NGX_HTTP_TRAFFIC_SHIFT_SYNC_DOWN_H_INCLUDED_ */
