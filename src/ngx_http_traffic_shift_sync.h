
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#ifndef _NGX_HTTP_TRAFFIC_SHIFT_SYNC_H_INCLUDED_
#define _NGX_HTTP_TRAFFIC_SHIFT_SYNC_H_INCLUDED_


#include "ngx_http_traffic_shift_api.h"
#include "ngx_http_traffic_shift_etcd.h"


/* traffic_shift_sync: one state for a fleet of nodes, in etcd */

typedef struct {
    ngx_array_t                           endpoints;  /* etcd_endpoint_t */
    ngx_str_t                             prefix;
    ngx_str_t                             node;
    ngx_msec_t                            timeout;

    /* https:// endpoints: the CA, a client certificate and its key */
    ngx_str_t                             ssl_ca;
    ngx_str_t                             ssl_cert;
    ngx_str_t                             ssl_key;
#if (NGX_HTTP_SSL)
    ngx_ssl_t                            *ssl;
#endif

    /* etcd's user and password authentication: the user, the file */
    ngx_str_t                             user;
    ngx_str_t                             password_file;

    /* per worker: the watch, in every worker (one holds the lease) */
    void                                 *watch;
} ngx_http_traffic_shift_sync_conf_t;


/*
 * per worker: this node's key, PREFIX/nodes/NODE, under an etcd lease,
 * kept by the worker that holds the watch (ngx_..._sync_node.c)
 */

typedef struct {
    ngx_http_traffic_shift_etcd_t         etcd;
    ngx_http_traffic_shift_main_conf_t   *mcf;
    u_char                                lease[NGX_INT64_LEN + 1];

    /* the next keepalive, the next write of the key anyway */
    ngx_msec_t                            next;
    ngx_msec_t                            refresh;

    /* the zone's version when the key was written */
    ngx_uint_t                            version;

    /* the last time etcd kept the lease: the watch's etcd still answers */
    ngx_msec_t                            ok;

    unsigned                              dirty:1;
    unsigned                              put:1;
} ngx_http_traffic_shift_sync_node_t;


/*
 * the end of a write through etcd: NGX_OK (applied here) or an error; with
 * ?wait=fleet, "fleet" says which nodes have it (the callee owns it)
 */
typedef void (*ngx_http_traffic_shift_sync_done_pt)(ngx_http_request_t *r,
    void *data, ngx_int_t rc, ngx_http_traffic_shift_api_err_t *err,
    json_t *fleet);


/* ngx_http_traffic_shift_sync.c: the directive, the watch */
char *ngx_http_traffic_shift_sync(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_traffic_shift_sync_init_process(ngx_cycle_t *cycle);
void ngx_http_traffic_shift_sync_exit_process(ngx_cycle_t *cycle);

/* ngx_http_traffic_shift_sync_write.c: a PATCH, through etcd */
ngx_int_t ngx_http_traffic_shift_sync_write(ngx_http_request_t *r,
    ngx_http_traffic_shift_split_t *split, ngx_uint_t *weights,
    ngx_uint_t force, ngx_uint_t if_match,
    ngx_http_traffic_shift_change_t *change,
    ngx_http_traffic_shift_api_err_t *err,
    ngx_http_traffic_shift_sync_done_pt done, void *data);

/* ngx_http_traffic_shift_sync_node.c: this node's key, the fleet */
void ngx_http_traffic_shift_sync_node_beat(
    ngx_http_traffic_shift_sync_node_t *n,
    ngx_http_traffic_shift_etcd_endpoint_t *ep);
ngx_int_t ngx_http_traffic_shift_sync_nodes(ngx_http_traffic_shift_etcd_t *e,
    ngx_http_traffic_shift_sync_conf_t *scf);
json_t *ngx_http_traffic_shift_sync_nodes_json(
    ngx_http_traffic_shift_etcd_t *e, json_t *json);
ngx_int_t ngx_http_traffic_shift_sync_fleet(ngx_http_request_t *r);


#endif /* _NGX_HTTP_TRAFFIC_SHIFT_SYNC_H_INCLUDED_ */
