
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#ifndef _NGX_HTTP_TRAFFIC_SHIFT_API_H_INCLUDED_
#define _NGX_HTTP_TRAFFIC_SHIFT_API_H_INCLUDED_


#include "ngx_http_traffic_shift.h"


char *ngx_http_traffic_shift_api(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


#endif /* _NGX_HTTP_TRAFFIC_SHIFT_API_H_INCLUDED_ */
