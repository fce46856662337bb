/*
 * Copyright (C) nginx-traffic-shift developers
 */


#ifndef _NGX_HTTP_TRAFFIC_SHIFT_HEALTH_SSL_H_INCLUDED_
#define _NGX_HTTP_TRAFFIC_SHIFT_HEALTH_SSL_H_INCLUDED_


#include "ngx_http_traffic_shift_health.h"


/*
 * The ssl_* parameters of health_check and the client TLS context of an
 * https check: its protocols, ciphers, client certificate and the
 * certificates its probes trust.
 */


void ngx_http_traffic_shift_health_ssl_defaults(
    ngx_http_traffic_shift_health_conf_t *hc);
char *ngx_http_traffic_shift_health_ssl_param(ngx_conf_t *cf,
    ngx_http_traffic_shift_health_conf_t *hc, ngx_str_t *arg, ngx_str_t *v,
    ngx_uint_t k);
char *ngx_http_traffic_shift_health_ssl_finish(ngx_conf_t *cf,
    ngx_http_traffic_shift_health_conf_t *hc,
    ngx_http_upstream_srv_conf_t *uscf);


#endif /* _NGX_HTTP_TRAFFIC_SHIFT_HEALTH_SSL_H_INCLUDED_ */
