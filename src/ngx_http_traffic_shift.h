
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#ifndef _NGX_HTTP_TRAFFIC_SHIFT_H_INCLUDED_
#define _NGX_HTTP_TRAFFIC_SHIFT_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_traffic_shift_compat.h"


/* weights are kept in hundredths of a percent: 100.00% is 10000 */
#define NGX_HTTP_TS_TOTAL         10000

#define NGX_HTTP_TS_MAX_POOLS     16
#define NGX_HTTP_TS_NAME_LEN      32
#define NGX_HTTP_TS_ERR_LEN       64

/* the layout of the shared zone; bump on any incompatible change */
#define NGX_HTTP_TS_ZONE_MAGIC    0x74730003

#define NGX_HTTP_TS_SRC_CONFIG    0
#define NGX_HTTP_TS_SRC_API       1
#define NGX_HTTP_TS_SRC_STATE     2

/* health state of a server, as probes see it */
#define NGX_HTTP_TS_UP            0
#define NGX_HTTP_TS_DOWN          1

/*
 * servers resolved at run time ("server NAME resolve"): at most this many
 * addresses tracked per upstream{} block; the record of an address no
 * worker has resolved for this long (seconds) is freed
 */
#define NGX_HTTP_TS_MAX_RESOLVED  32
#define NGX_HTTP_TS_RESOLVED_KEEP 60

/* response classes counted per pool: 1xx..5xx */
#define NGX_HTTP_TS_CLASSES       5

/* probe results counted per server */
#define NGX_HTTP_TS_PROBE_OK      0
#define NGX_HTTP_TS_PROBE_FAIL    1
#define NGX_HTTP_TS_PROBE_TIMEOUT 2
#define NGX_HTTP_TS_PROBE_RESULTS 3


typedef struct ngx_http_traffic_shift_health_conf_s
    ngx_http_traffic_shift_health_conf_t;
typedef struct ngx_http_traffic_shift_upstream_s
    ngx_http_traffic_shift_upstream_t;


/* a state of a traffic_shift upstream's weights */

typedef struct {
    ngx_uint_t                           generation;
    ngx_uint_t                           source;
    time_t                               updated;
    ngx_uint_t                           npools;
    ngx_uint_t                           weights[NGX_HTTP_TS_MAX_POOLS];
} ngx_http_traffic_shift_weights_t;


/* shared memory */

typedef struct {
    /* mutex, at configuration load */
    u_char                               name[NGX_HTTP_TS_NAME_LEN];
    size_t                               len;
    ngx_uint_t                           conf_weight;

    /* atomic increments on the request path */
    ngx_atomic_t                         requests;
    ngx_atomic_t                         responses[NGX_HTTP_TS_CLASSES];
} ngx_http_traffic_shift_sh_pool_t;


/*
 * A traffic_shift upstream in the zone.  The record is found by name and
 * never moves while its name is configured.  Its weights are kept twice: a
 * writer, holding the slab mutex, fills the copy not in use and publishes
 * it with one store of "current", all inside a seqlock ("seq" odd while
 * writing).  Readers take no lock; a writer that dies at any point leaves
 * either the old or the new state published, never a mix.  "layout"
 * identifies the list of pool names: workers of an older cycle compare it
 * with their own and ignore a record rewritten for other pools.
 */

typedef struct {
    /* mutex: the list, the name and the configuration load that saw it */
    ngx_queue_t                          queue;
    ngx_str_t                            name;
    ngx_uint_t                           seen;

    /* mutex to write, seqlock to read */
    ngx_atomic_t                         seq;
    ngx_atomic_t                         layout;
    ngx_atomic_t                         current;

    /* the generation of the published copy, for a cheap look */
    ngx_atomic_t                         generation;

    ngx_uint_t                           npools;
    ngx_http_traffic_shift_weights_t     copy[2];
    ngx_http_traffic_shift_sh_pool_t     pools[NGX_HTTP_TS_MAX_POOLS];
} ngx_http_traffic_shift_sh_split_t;


/* a server (one address) of an upstream{} block, keyed "upstream/address" */

typedef struct {
    /* mutex: the tree, the key and the configuration load that saw it */
    ngx_rbtree_node_t                    node;
    ngx_str_t                            key;
    ngx_uint_t                           seen;

    /* mutex to write, read without a lock (one word each) */
    ngx_atomic_t                         state;
    ngx_atomic_t                         admin_down;

    /* mutex: written by the lease holder's probe results */
    ngx_uint_t                           passes;
    ngx_uint_t                           fails;
    time_t                               last_probe;
    ngx_msec_t                           last_probe_msec;

    /* mutex: the prober lease, one worker probes a server per interval */
    ngx_pid_t                            lease_pid;
    ngx_msec_t                           lease_expire;

    /* mutex to write; read without a lock, the text as a copy */
    ngx_atomic_t                         probes[NGX_HTTP_TS_PROBE_RESULTS];
    u_char                               last_error[NGX_HTTP_TS_ERR_LEN];

    /*
     * mutex: an address resolved at run time: the list of those, and when
     * a worker last found it resolved (0: a configured server)
     */
    ngx_queue_t                          queue;
    time_t                               resolved;
} ngx_http_traffic_shift_sh_server_t;


/*
 * The zone's root.  Fields marked "mutex" are written only under the slab
 * pool's mutex; "atomic" ones are read without it.
 */

typedef struct {
    ngx_uint_t                           magic;

    /* atomic: bumped after every change of weights, health or marks */
    ngx_atomic_t                         version;

    /* mutex: bumped at every configuration load; records keep the last */
    ngx_uint_t                           epoch;
    ngx_uint_t                           next_layout;

    /*
     * mutex: the highest generation an upstream had when it left the
     * configuration; an upstream that comes (back) starts above it
     */
    ngx_uint_t                           floor;

    /*
     * atomic, set once under the mutex: a reload replaced this zone by
     * another one (new size or name); no change is accepted here any more
     */
    ngx_atomic_t                         retired;

    /* state file lock: the highest version written to the state file */
    ngx_atomic_t                         saved;

    /* state file lock: the file was invalid at start; keep it until a
     * change is made through the API */
    ngx_atomic_t                         keep_file;

    ngx_queue_t                          splits;
    ngx_rbtree_t                         servers;
    ngx_rbtree_node_t                    sentinel;

    /* mutex: the records of addresses resolved at run time */
    ngx_queue_t                          resolved;
} ngx_http_traffic_shift_sh_t;


/* configuration, one copy per cycle; per-worker parts are marked */

typedef struct {
    ngx_str_t                            name;
    struct sockaddr                     *sockaddr;
    socklen_t                            socklen;

    /* nginx's "down" of the configuration, whole: down, drain (1.29.6+) */
    ngx_uint_t                           conf_down;

    unsigned                             backup:1;

    /* an address listed before in the block: it shares the record */
    unsigned                             duplicate:1;

    /* per worker: an address of a "server NAME resolve" */
    unsigned                             resolved:1;

    ngx_http_traffic_shift_sh_server_t  *sh;
} ngx_http_traffic_shift_server_t;


/* per worker: the storage of a resolved server's address */

typedef struct {
    ngx_sockaddr_t                       sockaddr;
    u_char                               name[NGX_SOCKADDR_STRLEN];
} ngx_http_traffic_shift_addr_t;


struct ngx_http_traffic_shift_upstream_s {
    ngx_http_upstream_srv_conf_t        *uscf;
    ngx_http_upstream_init_peer_pt       original_init_peer;
    ngx_http_traffic_shift_health_conf_t *health;

    /*
     * the configured servers ("nconf"), then, per worker, the addresses
     * resolved at run time, as the worker last read its peers
     */
    ngx_uint_t                           nservers;
    ngx_uint_t                           nconf;
    ngx_http_traffic_shift_server_t     *servers;

    /* per worker: where the resolved addresses are kept, the peers' change
     * count when they were read, and a count of the list's changes */
    ngx_http_traffic_shift_addr_t       *addrs;
    ngx_uint_t                           config;
    ngx_uint_t                           changes;

    /* some servers are resolved at run time; they were read once */
    unsigned                             resolve:1;
    unsigned                             resolved:1;

    /* per worker: any server live, as of the last sync */
    unsigned                             live:1;
};


typedef struct {
    ngx_str_t                            name;
    ngx_str_t                            upstream;
    ngx_uint_t                           weight;
    ngx_http_traffic_shift_upstream_t   *ups;

    u_char                              *file_name;
    ngx_uint_t                           line;
} ngx_http_traffic_shift_pool_t;


/* per worker: what the request path reads */

typedef struct {
    /* smooth weighted round robin over the eligible pools */
    ngx_uint_t                           eligible[NGX_HTTP_TS_MAX_POOLS];
    ngx_int_t                            current[NGX_HTTP_TS_MAX_POOLS];
    ngx_uint_t                           total;

    /* sticky: upper bounds of the pools' ranges over 0..9999 */
    ngx_uint_t                           bound[NGX_HTTP_TS_MAX_POOLS];

    unsigned                             fail_open:1;
    unsigned                             valid:1;
} ngx_http_traffic_shift_snapshot_t;


typedef struct {
    ngx_str_t                            name;
    ngx_http_upstream_srv_conf_t        *uscf;
    ngx_array_t                          pools;
    ngx_http_complex_value_t            *sticky;
    ngx_http_complex_value_t            *route;

    ngx_http_traffic_shift_sh_split_t   *sh;
    ngx_slab_pool_t                     *shpool;
    ngx_uint_t                           layout;

    ngx_http_traffic_shift_snapshot_t    snap;

    u_char                              *file_name;
    ngx_uint_t                           line;
} ngx_http_traffic_shift_split_t;


typedef struct {
    ngx_shm_zone_t                      *shm_zone;
    ngx_slab_pool_t                     *shpool;
    ngx_http_traffic_shift_sh_t         *sh;

    /* master, during a reload: the zone this one replaces, and its version
     * when its state was carried over */
    ngx_http_traffic_shift_sh_t         *old_sh;
    ngx_slab_pool_t                     *old_shpool;
    ngx_uint_t                           old_version;

    u_char                              *zone_file;
    ngx_uint_t                           zone_line;

    ngx_str_t                            state_file;

    ngx_array_t                          splits;     /* split_t * */
    ngx_array_t                          upstreams;  /* upstream_t * */

    /* per worker: the zone version seen last */
    ngx_uint_t                           version;

    void                                *health;     /* health checker */
} ngx_http_traffic_shift_main_conf_t;


typedef struct {
    ngx_http_traffic_shift_health_conf_t *health;
    ngx_http_traffic_shift_upstream_t    *ups;
} ngx_http_traffic_shift_srv_conf_t;


typedef struct {
    ngx_flag_t                           api;
    ngx_flag_t                           write;
} ngx_http_traffic_shift_loc_conf_t;


/* the decision made for a request, kept in the request ctx */

typedef struct {
    ngx_http_traffic_shift_split_t      *split;
    ngx_http_traffic_shift_pool_t       *pool;
    ngx_uint_t                           index;
    unsigned                             counted:1;

    /* a request to the admin API instead: split is NULL */
    void                                *api;
} ngx_http_traffic_shift_ctx_t;


extern ngx_module_t  ngx_http_traffic_shift_module;


#endif /* _NGX_HTTP_TRAFFIC_SHIFT_H_INCLUDED_ */
