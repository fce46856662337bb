
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#ifndef _NGX_HTTP_TRAFFIC_SHIFT_H_INCLUDED_
#define _NGX_HTTP_TRAFFIC_SHIFT_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_traffic_shift_compat.h"


/*
 * the release: GET / reports it as "module_version", the master logs it at
 * start; the Makefile, the CLI and debian/changelog carry the same
 * (scripts/check-version)
 */
#define NGX_HTTP_TS_VERSION       "0.2.0"

/* weights are kept in hundredths of a percent: 100.00% is 10000 */
#define NGX_HTTP_TS_TOTAL         10000

#define NGX_HTTP_TS_MAX_POOLS     16
#define NGX_HTTP_TS_NAME_LEN      32
#define NGX_HTTP_TS_ERR_LEN       64

/* a node's name in a fleet (traffic_shift_sync node=) */
#define NGX_HTTP_TS_NODE_LEN      64

/* the layout of the shared zone; bump on any incompatible change */
#define NGX_HTTP_TS_ZONE_MAGIC    0x74730007

#define NGX_HTTP_TS_SRC_CONFIG    0
#define NGX_HTTP_TS_SRC_API       1
#define NGX_HTTP_TS_SRC_STATE     2
#define NGX_HTTP_TS_SRC_FLEET     3

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

/*
 * upstream response times per pool: fixed log-spaced buckets, their upper
 * bounds in milliseconds (ngx_http_traffic_shift_buckets[], lib.c), the
 * last one unbounded
 */
#define NGX_HTTP_TS_BUCKETS       28

/* rollouts */
#define NGX_HTTP_TS_RO_NONE         0
#define NGX_HTTP_TS_RO_PROGRESSING  1
#define NGX_HTTP_TS_RO_PAUSED       2
#define NGX_HTTP_TS_RO_SUCCEEDED    3
#define NGX_HTTP_TS_RO_ROLLED_BACK  4
#define NGX_HTTP_TS_RO_ABORTED      5
#define NGX_HTTP_TS_RO_STATES       6

#define NGX_HTTP_TS_RO_PASS         0
#define NGX_HTTP_TS_RO_FAIL         1
#define NGX_HTTP_TS_RO_INCONCLUSIVE 2

#define NGX_HTTP_TS_RO_MAX_STEPS    64
#define NGX_HTTP_TS_RO_MAX_WINDOW   1024
#define NGX_HTTP_TS_RO_REASON_LEN   192


typedef struct ngx_http_traffic_shift_health_conf_s
    ngx_http_traffic_shift_health_conf_t;
typedef struct ngx_http_traffic_shift_upstream_s
    ngx_http_traffic_shift_upstream_t;


/* outlier_detection of an upstream{} block (ngx_..._outlier.c) */

typedef struct {
    /* ejection: 0 is off; the ratio in 1/10000 */
    ngx_uint_t                           consecutive_5xx;
    ngx_uint_t                           consecutive_gateway;
    ngx_uint_t                           failure_ratio;
    ngx_uint_t                           min_requests;
    ngx_msec_t                           window;
    ngx_msec_t                           ejection;
    ngx_msec_t                           max_ejection;
    ngx_uint_t                           max_ejected;      /* percent */

    /* slow start: 0 is off */
    ngx_msec_t                           slow_start;

    unsigned                             eject:1;

    u_char                              *file_name;
    ngx_uint_t                           line;
} ngx_http_traffic_shift_outlier_conf_t;


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

    /*
     * atomic increments on the request path, once per upstream attempt:
     * errors (status >= 500, connect errors, timeouts, invalid headers),
     * response times (milliseconds) by bucket, and their sum
     */
    ngx_atomic_t                         errors;
    ngx_atomic_t                         time_sum;
    ngx_atomic_t                         buckets[NGX_HTTP_TS_BUCKETS];
} ngx_http_traffic_shift_sh_pool_t;


/*
 * fleet mode, atomic increments by the worker that holds the watch, on
 * the node that drives a rollout: the other nodes' errors and responses
 * by bucket, added up as they publish them
 */

typedef struct {
    ngx_atomic_t                         errors;
    ngx_atomic_t                         buckets[NGX_HTTP_TS_BUCKETS];
} ngx_http_traffic_shift_sh_fleet_t;


/* counters of pools added up, for a rollout's window */

typedef struct {
    ngx_uint_t                           errors;
    ngx_uint_t                           buckets[NGX_HTTP_TS_BUCKETS];
} ngx_http_traffic_shift_counts_t;


/* a finished step of a rollout */

typedef struct {
    ngx_uint_t                           step;
    ngx_uint_t                           weight;
    ngx_uint_t                           verdict;
    time_t                               time;

    /* the canary pool, then the baseline; p50, p99 in microseconds */
    ngx_uint_t                           responses[2];
    ngx_uint_t                           errors[2];
    ngx_uint_t                           p50[2];
    ngx_uint_t                           p99[2];
} ngx_http_traffic_shift_ro_step_t;


/*
 * A rollout, in the record of its traffic_shift upstream.  Everything is
 * written under the slab mutex; "active" (the canary pool's index + 1
 * while progressing) and the fast-abort window are also read and written
 * by the log phase without a lock: the window is a ring of bits changed
 * with compare-and-swap, "fa_errors" the count of its set bits.
 */

typedef struct {
    ngx_atomic_t                         active;
    ngx_atomic_t                         fa_pos;
    ngx_atomic_t                         fa_errors;
    ngx_atomic_t                         fa_bits[NGX_HTTP_TS_RO_MAX_WINDOW
                                                 / (8 * sizeof(ngx_atomic_t))];

    ngx_uint_t                           state;
    ngx_uint_t                           id;
    ngx_uint_t                           ramp;
    ngx_uint_t                           pool;
    ngx_uint_t                           baseline;      /* bit per pool */

    ngx_uint_t                           nsteps;
    ngx_uint_t                           steps[NGX_HTTP_TS_RO_MAX_STEPS];
    ngx_msec_t                           interval;
    ngx_uint_t                           min_requests;

    /* limits: ratios in 1/10000, multipliers in 1/100, 0 is none */
    ngx_uint_t                           max_error_ratio;
    ngx_uint_t                           max_error_ratio_vs;
    ngx_msec_t                           max_p99;
    ngx_uint_t                           max_p99_vs;
    ngx_uint_t                           fa_ratio;
    ngx_uint_t                           fa_window;
    ngx_msec_t                           max_hold;

    /* progress: step index, its start (wall clock and ngx_current_msec) */
    ngx_uint_t                           step;
    time_t                               started;
    time_t                               step_started;
    ngx_msec_t                           step_msec;
    time_t                               ended;
    unsigned                             holding:1;

    /* the weights before the rollout, restored by a rollback */
    ngx_uint_t                           npools;
    ngx_uint_t                           before[NGX_HTTP_TS_MAX_POOLS];

    /* the counters when the step's window opened: canary, baseline */
    ngx_http_traffic_shift_counts_t      base[2];

    /* fleet mode: the other nodes' counters, canary and baseline */
    ngx_http_traffic_shift_sh_fleet_t    fleet[2];

    ngx_uint_t                           nhistory;
    ngx_http_traffic_shift_ro_step_t     history[NGX_HTTP_TS_RO_MAX_STEPS];

    u_char                               reason[NGX_HTTP_TS_RO_REASON_LEN];

    /* rollouts ended, by state (succeeded, rolled back, aborted) */
    ngx_uint_t                           results[NGX_HTTP_TS_RO_STATES];
} ngx_http_traffic_shift_sh_rollout_t;


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

    /* mutex; see the type */
    ngx_http_traffic_shift_sh_rollout_t  rollout;

    /*
     * fleet mode, mutex to write, read atomically: the etcd mod revision
     * of the weights applied last (0: none, the key is not in etcd)
     */
    ngx_atomic_t                         sync_revision;

    /*
     * fleet mode, mutex: the rollout of this node in etcd, its key's
     * create revision (0: none), and the rollout's id, step and state
     * and the generation last written there
     */
    ngx_uint_t                           fleet_claim;
    ngx_uint_t                           fleet_id;
    ngx_uint_t                           fleet_step;
    ngx_uint_t                           fleet_state;
    ngx_uint_t                           fleet_generation;

    /* fleet mode, mutex: the node driving a rollout here, if another */
    size_t                               fleet_driver_len;
    u_char                               fleet_driver[NGX_HTTP_TS_NODE_LEN];
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
     * outlier detection, atomic on the request path: consecutive 5xx and
     * gateway failures of real responses, and the failure ratio's window
     * (its start in ngx_current_msec, responses, failures)
     */
    ngx_atomic_t                         c5xx;
    ngx_atomic_t                         cgateway;
    ngx_atomic_t                         win_start;
    ngx_atomic_t                         win_total;
    ngx_atomic_t                         win_fail;

    /*
     * mutex to write, "ejected" and "ejections" read without a lock: the
     * ejection (until and for how long, its wall-clock start, the doubling
     * level, what crossed the limit), when the server last came back
     */
    ngx_atomic_t                         ejected;
    ngx_atomic_t                         ejections;
    ngx_msec_t                           eject_until;
    ngx_msec_t                           eject_for;
    time_t                               eject_time;
    ngx_uint_t                           eject_level;
    ngx_uint_t                           eject_why;
    ngx_msec_t                           back_msec;

    /*
     * mutex to write, read without a lock: the server became up (probe
     * recovery, end of an ejection, admin up, new in a reload) at
     * "up_msec"; "ramp" is set then, for slow start
     */
    ngx_atomic_t                         ramp;
    ngx_msec_t                           up_msec;

    /*
     * mutex: an address resolved at run time: the list of those, and when
     * a worker last found it resolved (0: a configured server)
     */
    ngx_queue_t                          queue;
    time_t                               resolved;

    /*
     * fleet mode, mutex: the etcd mod revision of the admin mark applied
     * last (0: none; a mark set with "local=on" leaves it)
     */
    uint64_t                             sync_revision;
} ngx_http_traffic_shift_sh_server_t;


/* a worker's lease in the zone: which worker, until when */

typedef struct {
    ngx_pid_t                            pid;
    ngx_msec_t                           expire;
} ngx_http_traffic_shift_lease_t;


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

    /* atomic: the earliest end of an ejection (ngx_current_msec), 0: none */
    ngx_atomic_t                         outlier_next;

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
    /* mutex: the worker that drives the rollouts */
    ngx_http_traffic_shift_lease_t       ro_lease;

    /* mutex: the last rollout id given */
    ngx_uint_t                           ro_next_id;

    /*
     * set under the mutex by every change of a rollout; the driver clears
     * it with compare-and-swap and saves the state file
     */
    ngx_atomic_t                         ro_changed;

    /* mutex: the worker that holds the fleet's watch */
    ngx_http_traffic_shift_lease_t       sync_lease;

    /* atomic: the fleet's watch runs (etcd answers), set by its worker */
    ngx_atomic_t                         sync_up;
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

    /* per worker: its peer's name and index among the primary peers (or
     * -1), as of the last sync */
    ngx_str_t                           *peer_name;
    ngx_int_t                            position;

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
    ngx_http_traffic_shift_outlier_conf_t *outlier;

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

    /* per worker, as of the last sync: primary peers not down, and the
     * end of the last slow start (ngx_current_msec) */
    ngx_uint_t                           primary_live;
    ngx_msec_t                           ramp_until;

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

    void                                *rollout;    /* rollout driver */

    void                                *outlier;    /* ejection timer */

    void                                *sync;       /* fleet (etcd) */
} ngx_http_traffic_shift_main_conf_t;


typedef struct {
    ngx_http_traffic_shift_health_conf_t  *health;
    ngx_http_traffic_shift_outlier_conf_t *outlier;
    ngx_http_traffic_shift_upstream_t     *ups;
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

    /*
     * the request and the first of its upstream_states that belongs to
     * the pool: its attempts are counted when the request ends
     */
    ngx_http_request_t                  *request;
    ngx_uint_t                           first_state;
} ngx_http_traffic_shift_ctx_t;


extern ngx_module_t  ngx_http_traffic_shift_module;


/*
 * Closes a connection the module opened (a probe, etcd): TLS is shut down
 * without waiting for the peer's answer, then the socket is closed.
 */

static ngx_inline void
ngx_http_traffic_shift_close_connection(ngx_connection_t *c)
{
#if (NGX_HTTP_SSL)
    if (c->ssl) {
        c->ssl->no_wait_shutdown = 1;

        if (ngx_ssl_shutdown(c) == NGX_AGAIN) {
            /* nothing is waited for: drop the TLS state at once */
            c->error = 1;
            (void) ngx_ssl_shutdown(c);
        }
    }
#endif

    ngx_close_connection(c);
}


#endif /* _NGX_HTTP_TRAFFIC_SHIFT_H_INCLUDED_ */
