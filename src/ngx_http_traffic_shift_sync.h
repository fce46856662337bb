
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

    /* how long a connection to etcd is kept idle; 0: not kept */
    ngx_msec_t                            keepalive;

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
 * per worker: rollouts in fleet mode, kept by the worker that holds the
 * watch (ngx_..._sync_rollout.c, the counters in ngx_..._sync_counts.c);
 * "what" it asks etcd now
 */

#define NGX_HTTP_TS_SR_IDLE      0
#define NGX_HTTP_TS_SR_CLAIM     1
#define NGX_HTTP_TS_SR_PUSH      2
#define NGX_HTTP_TS_SR_RELEASE   3
#define NGX_HTTP_TS_SR_ROLLBACK  4
#define NGX_HTTP_TS_SR_COLLECT   5

typedef struct {
    ngx_http_traffic_shift_etcd_t         etcd;
    ngx_http_traffic_shift_main_conf_t   *mcf;
    ngx_pool_t                           *pool;
    ngx_pool_t                           *pool_tmp;

    /* the request in flight: what, for which upstream, what it writes */
    ngx_uint_t                            what;
    ngx_uint_t                            split;
    ngx_uint_t                            claim[5];
    ngx_uint_t                            weights[NGX_HTTP_TS_MAX_POOLS];

    /*
     * per upstream: the weights from before a rollout to put back, on the
     * revision + 1 known ("rollback"), or with this node's key of before
     * a restart (its create revision, "orphan"); the records to write
     * again under a new lease
     */
    uint64_t                             *rollback;
    uint64_t                             *orphan;
    ngx_uint_t                           *before;
    u_char                               *renew;

    /*
     * the other nodes' counters last read, and when to read them again;
     * per upstream, whether its rollout was counted at the last tick
     */
    ngx_array_t                           seen;
    u_char                               *collecting;
    ngx_msec_t                            collect;

    u_char                                lease[NGX_INT64_LEN + 1];
    ngx_http_traffic_shift_sh_rollout_t   ro;
} ngx_http_traffic_shift_sync_rollouts_t;


/*
 * the end of a write through etcd: NGX_OK (applied here) or an error; with
 * ?wait=fleet, "fleet" says which nodes have it (the callee owns it)
 */
typedef void (*ngx_http_traffic_shift_sync_done_pt)(ngx_http_request_t *r,
    void *data, ngx_int_t rc, ngx_http_traffic_shift_api_err_t *err,
    json_t *fleet);


/* ngx_http_traffic_shift_sync_conf.c: the directive */
char *ngx_http_traffic_shift_sync(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/* ngx_http_traffic_shift_sync.c: the watch */
ngx_int_t ngx_http_traffic_shift_sync_init_process(ngx_cycle_t *cycle);
void ngx_http_traffic_shift_sync_exit_process(ngx_cycle_t *cycle);

/* ngx_http_traffic_shift_sync_write.c: a PATCH, through etcd */
ngx_int_t ngx_http_traffic_shift_sync_write(ngx_http_request_t *r,
    ngx_http_traffic_shift_split_t *split, ngx_uint_t *weights,
    ngx_uint_t force, ngx_uint_t if_match,
    ngx_http_traffic_shift_change_t *change,
    ngx_http_traffic_shift_api_err_t *err,
    ngx_http_traffic_shift_sync_done_pt done, void *data);

ngx_int_t ngx_http_traffic_shift_sync_claimed(ngx_http_request_t *r,
    ngx_http_traffic_shift_split_t *split,
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

/* ngx_http_traffic_shift_sync_counts.c: the other nodes' counters */
ngx_int_t ngx_http_traffic_shift_sync_counts_init(
    ngx_http_traffic_shift_sync_rollouts_t *sr, ngx_pool_t *pool);
void ngx_http_traffic_shift_sync_counts_collect(
    ngx_http_traffic_shift_sync_rollouts_t *sr);
void ngx_http_traffic_shift_sync_counts_forget(
    ngx_http_traffic_shift_sync_rollouts_t *sr, ngx_uint_t i);

/* ngx_http_traffic_shift_sync_rollout.c: rollouts in fleet mode */
ngx_int_t ngx_http_traffic_shift_sync_rollouts_init(
    ngx_http_traffic_shift_sync_rollouts_t *sr,
    ngx_http_traffic_shift_main_conf_t *mcf, ngx_pool_t *pool,
    ngx_log_t *log);
void ngx_http_traffic_shift_sync_rollouts_stop(
    ngx_http_traffic_shift_sync_rollouts_t *sr);
void ngx_http_traffic_shift_sync_rollout_kv(
    ngx_http_traffic_shift_sync_rollouts_t *sr, ngx_str_t *name,
    ngx_str_t *value, ngx_str_t *prev, uint64_t create);
void ngx_http_traffic_shift_sync_rollouts_tick(
    ngx_http_traffic_shift_sync_rollouts_t *sr,
    ngx_http_traffic_shift_etcd_endpoint_t *ep, u_char *lease, ngx_msec_t ok,
    ngx_uint_t up);


#endif /* _NGX_HTTP_TRAFFIC_SHIFT_SYNC_H_INCLUDED_ */
