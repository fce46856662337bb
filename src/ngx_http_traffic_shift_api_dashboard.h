
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#ifndef _NGX_HTTP_TRAFFIC_SHIFT_API_DASHBOARD_H_INCLUDED_
#define _NGX_HTTP_TRAFFIC_SHIFT_API_DASHBOARD_H_INCLUDED_


#include "ngx_http_traffic_shift_api.h"


/*
 * The status page of the API location (docs/dashboard.md): its HTML, CSS
 * and JavaScript, built into the module from src/dashboard/, and the
 * check that keeps other sites' pages from sending changes.
 */

ngx_int_t ngx_http_traffic_shift_api_dashboard(ngx_http_request_t *r);
ngx_int_t ngx_http_traffic_shift_api_cross_site(ngx_http_request_t *r,
    ngx_http_traffic_shift_api_err_t *err);


#endif /* _NGX_HTTP_TRAFFIC_SHIFT_API_DASHBOARD_H_INCLUDED_ */
