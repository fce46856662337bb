
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#ifndef _NGX_HTTP_TRAFFIC_SHIFT_H_INCLUDED_
#define _NGX_HTTP_TRAFFIC_SHIFT_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


extern ngx_module_t  ngx_http_traffic_shift_module;


#endif /* _NGX_HTTP_TRAFFIC_SHIFT_H_INCLUDED_ */
