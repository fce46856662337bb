
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
 * (ngx_http_traffic_shift_health_probe.c) connects (or reuses the
 * connection kept from the last probe), asks, reads the response as framed
 * by Content-Length or chunked encoding (parsed and judged by
 * ngx_http_traffic_shift_health_response.c), and records the result in
 * the zone.  With keepalive=on the connection then stays open, idle, until
 * the next probe; it is closed on any error, when the server closes it,
 * and when the worker exits.
 */


#define NGX_HTTP_TS_HC_CONNECT     0
#define NGX_HTTP_TS_HC_HANDSHAKE   1
#define NGX_HTTP_TS_HC_SEND        2
#define NGX_HTTP_TS_HC_RECV        3

/* body= matches within this much of the body */
#define NGX_HTTP_TS_HC_BODY_MAX    65536
/* the status line and each header line fit in it */
#define NGX_HTTP_TS_HC_BUF_SIZE    4096

/* how the response's body ends */
#define NGX_HTTP_TS_HC_BODY_NONE     0
#define NGX_HTTP_TS_HC_BODY_LENGTH   1
#define NGX_HTTP_TS_HC_BODY_CHUNKED  2
#define NGX_HTTP_TS_HC_BODY_EOF      3

/* where the chunked parser is */
#define NGX_HTTP_TS_HC_CHUNK_SIZE      0
#define NGX_HTTP_TS_HC_CHUNK_EXT       1
#define NGX_HTTP_TS_HC_CHUNK_SIZE_LF   2
#define NGX_HTTP_TS_HC_CHUNK_DATA      3
#define NGX_HTTP_TS_HC_CHUNK_DATA_CR   4
#define NGX_HTTP_TS_HC_CHUNK_DATA_LF   5
#define NGX_HTTP_TS_HC_CHUNK_TRAILER   6
#define NGX_HTTP_TS_HC_CHUNK_LINE      7
#define NGX_HTTP_TS_HC_CHUNK_LAST_LF   8
#define NGX_HTTP_TS_HC_CHUNK_HEX       9

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

    /* the connection, in flight or kept idle, and its pool */
    ngx_peer_connection_t                  pc;
    ngx_pool_t                            *pool;

    /* the probe in flight; its memory is freed when it ends */
    ngx_buf_t                              buf;
    ngx_http_request_t                    *request;
    ngx_http_status_t                      status;
    u_char                                *sent;
    u_char                                *body;
    size_t                                 body_len;
    size_t                                 body_size;
    off_t                                  rest;
    ngx_uint_t                             phase;
    ngx_uint_t                             framing;
    ngx_uint_t                             chunk_state;

    /* why the response fails, and room for a reason written here */
    char                                  *reason;
    u_char                                 error[NGX_HTTP_TS_ERR_LEN];

    unsigned                               busy:1;
    unsigned                               status_parsed:1;
    unsigned                               headers_done:1;
    /* the connection was kept from an earlier probe */
    unsigned                               reused:1;
    unsigned                               received:1;
    /* the response allows the connection to be kept */
    unsigned                               keep:1;
    unsigned                               has_length:1;
    unsigned                               chunked:1;
    unsigned                               close:1;
} ngx_http_traffic_shift_probe_t;


/* ngx_http_traffic_shift_health_probe.c */

void ngx_http_traffic_shift_probe_start(ngx_http_traffic_shift_probe_t *probe);
void ngx_http_traffic_shift_probe_close(ngx_http_traffic_shift_probe_t *probe);

/* ngx_http_traffic_shift_health_response.c */

ngx_int_t ngx_http_traffic_shift_health_parse(
    ngx_http_traffic_shift_probe_t *probe);
ngx_int_t ngx_http_traffic_shift_health_eof(
    ngx_http_traffic_shift_probe_t *probe);


#endif /* _NGX_HTTP_TRAFFIC_SHIFT_HEALTH_PROBE_H_INCLUDED_ */
