
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#ifndef _NGX_HTTP_TRAFFIC_SHIFT_ETCD_H_INCLUDED_
#define _NGX_HTTP_TRAFFIC_SHIFT_ETCD_H_INCLUDED_


#include "ngx_http_traffic_shift.h"
#include "ngx_http_traffic_shift_etcd_auth.h"

#include <jansson.h>


/*
 * A request to etcd's v3 JSON gateway on nginx's event loop: one HTTP/1.1
 * POST of a JSON body, the answer framed by Content-Length, chunks or the
 * end of the connection.  A unary request gives its handler the whole
 * body, once; a stream (a watch) gives it every JSON object (one per line)
 * as it comes, then NULL when the stream ends.  NULL means a failure, with
 * "error" set and the connection closed.  A handler may close the request,
 * and may start another one with the same structure.
 *
 * The connection of a unary request is kept after a complete answer (the
 * endpoint's "keepalive" time at most, idle) and the next request of the
 * same structure to the same endpoint is sent on it; one that finds it
 * closed by etcd meanwhile is sent again, once, on a new connection.
 * ngx_http_traffic_shift_etcd_close() closes it, and must be called
 * before the structure is freed.
 *
 * With user and password (the endpoint's "auth"), a request without a
 * token first authenticates; one answered "invalid auth token" (expired)
 * authenticates again and is sent once more.  The callers see neither.
 */


#define NGX_HTTP_TS_ETCD_MAX_BODY    (4 * 1024 * 1024)

/* the answer's parser: where it is */
#define NGX_HTTP_TS_ETCD_HEADER      0
#define NGX_HTTP_TS_ETCD_LENGTH      1
#define NGX_HTTP_TS_ETCD_UNTIL_EOF   2
#define NGX_HTTP_TS_ETCD_CHUNK_SIZE  3
#define NGX_HTTP_TS_ETCD_CHUNK_DATA  4
#define NGX_HTTP_TS_ETCD_CHUNK_END   5
#define NGX_HTTP_TS_ETCD_TRAILER     6
#define NGX_HTTP_TS_ETCD_DONE        7

/* a watch's answer, not the authentication before it */
#define ngx_http_traffic_shift_etcd_streaming(e)                             \
    ((e)->stream && !(e)->authenticating)


typedef struct ngx_http_traffic_shift_etcd_s  ngx_http_traffic_shift_etcd_t;

typedef void (*ngx_http_traffic_shift_etcd_pt)(
    ngx_http_traffic_shift_etcd_t *e, json_t *json);


typedef struct {
    ngx_str_t                            name;      /* host:port */
    ngx_str_t                            host;
    ngx_addr_t                           addr;

#if (NGX_HTTP_SSL)
    /* https://: the certificate is checked against the CA and the host */
    ngx_ssl_t                           *ssl;
#endif

    /* user=, password_file=: the user, its password, the token */
    ngx_http_traffic_shift_etcd_auth_t  *auth;

    /* keepalive=: how long a connection is kept idle; 0: not kept */
    ngx_msec_t                           keepalive;

    unsigned                             https:1;
} ngx_http_traffic_shift_etcd_endpoint_t;


struct ngx_http_traffic_shift_etcd_s {
    ngx_peer_connection_t                pc;
    ngx_pool_t                          *pool;
    ngx_log_t                           *log;
    ngx_http_traffic_shift_etcd_endpoint_t *endpoint;

    /* the endpoint of the open connection (pc.connection) */
    ngx_http_traffic_shift_etcd_endpoint_t *peer;

    ngx_msec_t                           timeout;
    ngx_http_traffic_shift_etcd_pt       handler;
    void                                *data;

    ngx_buf_t                           *out;
    ngx_buf_t                           *in;

    /* the body, without its framing */
    u_char                              *body;
    size_t                               len;
    size_t                               size;

    ngx_uint_t                           state;
    off_t                                rest;
    ngx_uint_t                           status;

    /* incremented by every start and close: a handler's doing is seen */
    ngx_uint_t                           serial;

    const char                          *error;

    /* with auth: the request, kept in the pool while authenticating */
    ngx_str_t                            path;
    ngx_str_t                            request;

    unsigned                             stream:1;
    unsigned                             authenticating:1;
    unsigned                             token:1;       /* carries one */
    unsigned                             reauthenticated:1;
    unsigned                             sent:1;
    unsigned                             connected:1;
    unsigned                             busy:1;

    /* the answer lets the connection be kept */
    unsigned                             keep:1;
    /* sent on a kept connection; sent again on a new one */
    unsigned                             reused:1;
    unsigned                             retried:1;
};


ngx_int_t ngx_http_traffic_shift_etcd_start(ngx_http_traffic_shift_etcd_t *e,
    const char *path, u_char *body, size_t len);
void ngx_http_traffic_shift_etcd_close(ngx_http_traffic_shift_etcd_t *e);

/* ngx_http_traffic_shift_etcd_parse.c: the answer */
ngx_int_t ngx_http_traffic_shift_etcd_parse(ngx_http_traffic_shift_etcd_t *e);

/* ngx_http_traffic_shift_etcd_json.c: etcd's JSON */
json_t *ngx_http_traffic_shift_etcd_b64(ngx_pool_t *pool, u_char *data,
    size_t len);
ngx_int_t ngx_http_traffic_shift_etcd_unb64(ngx_pool_t *pool, json_t *json,
    ngx_str_t *out);
ngx_int_t ngx_http_traffic_shift_etcd_int(json_t *json, const char *key,
    uint64_t *value);
ngx_int_t ngx_http_traffic_shift_etcd_json(ngx_pool_t *pool, json_t *json,
    ngx_str_t *body);
ngx_int_t ngx_http_traffic_shift_etcd_key(ngx_pool_t *pool, ngx_str_t *prefix,
    const char *what, ngx_str_t *name, ngx_str_t *key);
json_t *ngx_http_traffic_shift_etcd_range(ngx_pool_t *pool,
    ngx_str_t *prefix, const char *from, const char *to);


#endif /* _NGX_HTTP_TRAFFIC_SHIFT_ETCD_H_INCLUDED_ */
