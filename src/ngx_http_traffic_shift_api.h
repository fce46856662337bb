
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#ifndef _NGX_HTTP_TRAFFIC_SHIFT_API_H_INCLUDED_
#define _NGX_HTTP_TRAFFIC_SHIFT_API_H_INCLUDED_


#include "ngx_http_traffic_shift.h"


#endif /* _NGX_HTTP_TRAFFIC_SHIFT_API_H_INCLUDED_ */
