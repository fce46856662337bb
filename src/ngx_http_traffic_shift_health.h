
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#ifndef _NGX_HTTP_TRAFFIC_SHIFT_HEALTH_H_INCLUDED_
#define _NGX_HTTP_TRAFFIC_SHIFT_HEALTH_H_INCLUDED_


#include "ngx_http_traffic_shift.h"


#define NGX_HTTP_TS_HC_HTTP       0
#define NGX_HTTP_TS_HC_TCP        1
#define NGX_HTTP_TS_HC_HTTPS      2

/* status codes 0..599, one bit each */
#define NGX_HTTP_TS_HC_STATUS_MAX 600

#define NGX_HTTP_TS_HC_GET        0
#define NGX_HTTP_TS_HC_HEAD       1


struct ngx_http_traffic_shift_health_conf_s {
    ngx_uint_t                 type;
    ngx_str_t                  uri;
    ngx_str_t                  host;
    in_port_t                  port;

    /* https: the server name sent in SNI, NUL-terminated, or empty */
    ngx_str_t                  sni;

    /* GET or HEAD; HTTP/1.1 and a connection kept between probes */
    ngx_uint_t                 method;
    ngx_flag_t                 keepalive;

    /* header="Name: value" lines, each with its CRLF */
    ngx_str_t                  headers;

#if (NGX_HTTP_SSL)
    /* https: ssl_* parameters (ngx_http_traffic_shift_health_ssl.c) */
    ngx_flag_t                 ssl_verify;
    ngx_flag_t                 ssl_server_name;
    ngx_uint_t                 ssl_protocols;
    ngx_str_t                  ssl_ciphers;
    ngx_str_t                  ssl_trusted_certificate;
    ngx_str_t                  ssl_certificate;
    ngx_str_t                  ssl_certificate_key;
    ngx_str_t                  ssl_name_param;

    /* the name the certificate must match when verified */
    ngx_str_t                  ssl_name;
#endif

    ngx_msec_t                 interval;
    ngx_msec_t                 jitter;
    ngx_msec_t                 timeout;
    ngx_uint_t                 fails;
    ngx_uint_t                 passes;

    uint32_t                   status[(NGX_HTTP_TS_HC_STATUS_MAX + 31) / 32];

#if (NGX_PCRE)
    ngx_regex_t               *body;
#endif
    ngx_str_t                  body_pattern;

    /* "GET uri HTTP/1.1" (or HTTP/1.0 and close) and its headers */
    ngx_str_t                  request;

#if (NGX_HTTP_SSL)
    ngx_ssl_t                 *ssl;
#endif

    u_char                    *file_name;
    ngx_uint_t                 line;
};


char *ngx_http_traffic_shift_health_check(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_traffic_shift_health_init(ngx_conf_t *cf,
    ngx_http_traffic_shift_main_conf_t *mcf);
ngx_int_t ngx_http_traffic_shift_health_init_process(ngx_cycle_t *cycle);
void ngx_http_traffic_shift_health_exit_process(ngx_cycle_t *cycle);


#endif /* _NGX_HTTP_TRAFFIC_SHIFT_HEALTH_H_INCLUDED_ */
