
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#ifndef _NGX_HTTP_TRAFFIC_SHIFT_HEALTH_PROBE_H_INCLUDED_
#define _NGX_HTTP_TRAFFIC_SHIFT_HEALTH_PROBE_H_INCLUDED_


#include "ngx_http_traffic_shift_health.h"
#include "ngx_http_traffic_shift_zone.h"


/*
 * A probe of one server: the scheduler (ngx_http_traffic_shift_health.c)
 * owns its timer and lease and starts it; the probe itself
 * (ngx_http_traffic_shift_health_probe.c) connects, asks, reads, and
 * records the result in the zone.
 */


#define NGX_HTTP_TS_HC_CONNECT     0
#define NGX_HTTP_TS_HC_HANDSHAKE   1
#define NGX_HTTP_TS_HC_SEND        2
#define NGX_HTTP_TS_HC_RECV        3

/* the response is read to the end; a body to match is kept up to this */
#define NGX_HTTP_TS_HC_BODY_MAX    16384
#define NGX_HTTP_TS_HC_BUF_SIZE    1024

typedef struct {
    ngx_http_traffic_shift_main_conf_t    *mcf;
    ngx_http_traffic_shift_upstream_t     *ups;
    ngx_http_traffic_shift_server_t       *server;
    ngx_http_traffic_shift_health_conf_t  *conf;

    /* where probes go: the server's address, or its port= override */
    struct sockaddr                       *sockaddr;
    socklen_t                              socklen;
    ngx_str_t                              name;

    ngx_event_t                            timer;
    ngx_log_t                              log;
    ngx_uint_t                             log_level;

    /* the probe in flight */
    ngx_peer_connection_t                  pc;
    ngx_pool_t                            *pool;
    ngx_buf_t                             *buf;
    ngx_http_request_t                    *request;
    ngx_http_status_t                      status;
    u_char                                *sent;
    /* where the body starts, once the headers are read */
    u_char                                *body_start;
    ngx_uint_t                             phase;

    unsigned                               busy:1;
    unsigned                               status_parsed:1;
    unsigned                               headers_done:1;
} ngx_http_traffic_shift_probe_t;


void ngx_http_traffic_shift_probe_start(ngx_http_traffic_shift_probe_t *probe);
void ngx_http_traffic_shift_probe_close(ngx_http_traffic_shift_probe_t *probe);


#endif /* _NGX_HTTP_TRAFFIC_SHIFT_HEALTH_PROBE_H_INCLUDED_ */
