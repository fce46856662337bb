
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#ifndef _NGX_HTTP_TRAFFIC_SHIFT_ETCD_AUTH_H_INCLUDED_
#define _NGX_HTTP_TRAFFIC_SHIFT_ETCD_AUTH_H_INCLUDED_


#include "ngx_http_traffic_shift.h"

#include <jansson.h>


/*
 * etcd's user and password authentication: POST /v3/auth/authenticate
 * {"name": USER, "password": PASSWORD} answers {"token": TOKEN}, and every
 * later request carries "Authorization: TOKEN".  One per endpoint, made at
 * the configuration's load; the token is each worker's own (the
 * configuration's memory is the worker's after the fork), never logged.
 */


#define NGX_HTTP_TS_ETCD_TOKEN_MAX  2048

/* what etcd said of a request that carried a token */
#define NGX_HTTP_TS_ETCD_AUTH_OK       0
#define NGX_HTTP_TS_ETCD_AUTH_EXPIRED  1   /* invalid or expired token */
#define NGX_HTTP_TS_ETCD_AUTH_DENIED   2   /* the user may not do it */


typedef struct {
    ngx_str_t                            user;
    ngx_str_t                            password;

    /* the current token, empty without one */
    u_char                              *token;
    size_t                               token_len;

    /* the refusal of the user was logged, until it is taken again */
    unsigned                             refused:1;
} ngx_http_traffic_shift_etcd_auth_t;


char *ngx_http_traffic_shift_etcd_auth_conf(ngx_conf_t *cf, ngx_str_t *user,
    ngx_str_t *password_file, ngx_str_t *password);
ngx_http_traffic_shift_etcd_auth_t *ngx_http_traffic_shift_etcd_auth_create(
    ngx_pool_t *pool, ngx_str_t *user, ngx_str_t *password);
ngx_int_t ngx_http_traffic_shift_etcd_auth_body(ngx_pool_t *pool,
    ngx_http_traffic_shift_etcd_auth_t *auth, ngx_str_t *body);
const char *ngx_http_traffic_shift_etcd_auth_token(
    ngx_http_traffic_shift_etcd_auth_t *auth, ngx_uint_t status, json_t *json,
    ngx_log_t *log, ngx_str_t *name);
ngx_uint_t ngx_http_traffic_shift_etcd_auth_check(ngx_uint_t status,
    json_t *json);


#endif /* _NGX_HTTP_TRAFFIC_SHIFT_ETCD_AUTH_H_INCLUDED_ */
