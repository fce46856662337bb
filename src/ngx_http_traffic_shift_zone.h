
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#ifndef _NGX_HTTP_TRAFFIC_SHIFT_ZONE_H_INCLUDED_
#define _NGX_HTTP_TRAFFIC_SHIFT_ZONE_H_INCLUDED_


#include "ngx_http_traffic_shift.h"


#define NGX_HTTP_TS_DEFAULT_ZONE  "traffic_shift"

/* the longest "upstream/address" key of a resolved address */
#define NGX_HTTP_TS_KEY_LEN       (NGX_SOCKADDR_STRLEN + 256)

/* a record of an address resolved at run time, on the zone's list */
#define ngx_http_traffic_shift_sh_resolved(rec)  ((rec)->queue.next != NULL)


/* the outcome of a weight change */

typedef struct {
    ngx_http_traffic_shift_weights_t  old;
    ngx_http_traffic_shift_weights_t  new;
    ngx_uint_t                        dead_pool;

    /* a forced change ended the rollout that was progressing */
    ngx_uint_t                        rollout_aborted;
} ngx_http_traffic_shift_change_t;


/* ngx_http_traffic_shift_zone.c: at configuration load, in the master */

/*
 * The shm_zone init: creates or reconciles the records of the
 * configuration.  NGX_DONE: a new zone with no older one to carry state
 * from, that is a start (the caller restores the state file).
 */
ngx_int_t ngx_http_traffic_shift_zone_init(ngx_shm_zone_t *shm_zone,
    void *data);
size_t ngx_http_traffic_shift_zone_estimate(
    ngx_http_traffic_shift_main_conf_t *mcf);
size_t ngx_http_traffic_shift_zone_estimate_min(void);
ngx_int_t ngx_http_traffic_shift_zone_retire(
    ngx_http_traffic_shift_main_conf_t *mcf, ngx_log_t *log);

/* ngx_http_traffic_shift_zone_access.c: at run time */

/*
 * A consistent copy of the published weights, without a lock: NGX_OK, or
 * NGX_DECLINED when a reload gave the upstream other pools (the record's
 * layout is not the one of this configuration).  Never anything else: a
 * stalled or dead writer does not make a reader wait or fail.
 */
ngx_int_t ngx_http_traffic_shift_zone_read(
    ngx_http_traffic_shift_split_t *split,
    ngx_http_traffic_shift_weights_t *w);
/* under the mutex, inside the seqlock: "w" becomes the published copy */
void ngx_http_traffic_shift_zone_publish(
    ngx_http_traffic_shift_sh_split_t *rec,
    ngx_http_traffic_shift_weights_t *w);
ngx_int_t ngx_http_traffic_shift_zone_set_weights(
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_split_t *split, ngx_uint_t *weights,
    ngx_uint_t source, ngx_uint_t if_match, ngx_uint_t force,
    ngx_http_traffic_shift_change_t *change);
ngx_int_t ngx_http_traffic_shift_zone_admin_down(
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_server_t *server, ngx_uint_t down,
    ngx_uint_t if_match, ngx_uint_t *version);
/* under the mutex: the admin mark set or cleared; 1 if it changed */
ngx_uint_t ngx_http_traffic_shift_zone_mark_locked(
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_sh_server_t *sh, ngx_uint_t down);
ngx_int_t ngx_http_traffic_shift_zone_restore(
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_split_t *split, ngx_uint_t *weights,
    ngx_uint_t source, ngx_uint_t generation, time_t updated);
ngx_uint_t ngx_http_traffic_shift_zone_probe(
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_sh_server_t *sh, ngx_uint_t result, char *reason,
    ngx_uint_t fails, ngx_uint_t passes, ngx_uint_t *n);
void ngx_http_traffic_shift_zone_release(
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_sh_server_t *sh);
void ngx_http_traffic_shift_zone_set_floor(
    ngx_http_traffic_shift_main_conf_t *mcf, ngx_uint_t floor);

/* ngx_http_traffic_shift_zone_resolve.c: addresses resolved at run time */

ngx_int_t ngx_http_traffic_shift_zone_discover(
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_upstream_t *ups, ngx_log_t *log);
void ngx_http_traffic_shift_zone_resolved_keep(
    ngx_http_traffic_shift_main_conf_t *mcf);
ngx_int_t ngx_http_traffic_shift_zone_resolved_mark(
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_upstream_t *ups, u_char *name, size_t len,
    ngx_log_t *log);
/* ngx_http_traffic_shift_zone_rollout.c: rollouts, at run time */

ngx_int_t ngx_http_traffic_shift_zone_rollout_start(
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_split_t *split,
    ngx_http_traffic_shift_sh_rollout_t *conf, ngx_uint_t if_match,
    ngx_http_traffic_shift_change_t *change);
ngx_int_t ngx_http_traffic_shift_zone_rollout_yield(
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_split_t *split, ngx_uint_t id, ngx_uint_t *weights,
    ngx_uint_t revision, u_char *reason, size_t len);
void ngx_http_traffic_shift_zone_rollout_counts(
    ngx_http_traffic_shift_sh_split_t *rec,
    ngx_http_traffic_shift_sh_rollout_t *ro, ngx_uint_t k,
    ngx_http_traffic_shift_counts_t *counts);
void ngx_http_traffic_shift_zone_rollout_window(
    ngx_http_traffic_shift_sh_split_t *rec,
    ngx_http_traffic_shift_sh_rollout_t *ro,
    ngx_http_traffic_shift_ro_step_t *e);
void ngx_http_traffic_shift_zone_rollout_restore(
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_split_t *split,
    ngx_http_traffic_shift_sh_rollout_t *saved);
ngx_int_t ngx_http_traffic_shift_zone_rollout_next(
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_split_t *split, ngx_uint_t id, ngx_uint_t step,
    ngx_http_traffic_shift_ro_step_t *entry,
    ngx_http_traffic_shift_change_t *change);
void ngx_http_traffic_shift_zone_rollout_hold(
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_split_t *split, ngx_uint_t id, ngx_uint_t step);
ngx_int_t ngx_http_traffic_shift_zone_rollout_end(
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_split_t *split, ngx_uint_t id, ngx_uint_t state,
    ngx_http_traffic_shift_ro_step_t *entry, u_char *reason, size_t len,
    ngx_uint_t if_match, ngx_http_traffic_shift_change_t *change);
ngx_int_t ngx_http_traffic_shift_zone_rollout_resume(
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_split_t *split, ngx_uint_t promote,
    ngx_uint_t if_match, ngx_http_traffic_shift_change_t *change);
ngx_int_t ngx_http_traffic_shift_zone_rollout_copy(
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_split_t *split,
    ngx_http_traffic_shift_sh_rollout_t *ro,
    ngx_http_traffic_shift_weights_t *w);
void ngx_http_traffic_shift_zone_rollout_count(
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_split_t *split, ngx_uint_t n, ngx_uint_t errors,
    ngx_log_t *log);

/* fleet mode (ngx_http_traffic_shift_zone_sync.c) */

ngx_int_t ngx_http_traffic_shift_zone_sync_apply(
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_split_t *split, ngx_uint_t *weights,
    ngx_uint_t revision, ngx_uint_t source,
    ngx_http_traffic_shift_change_t *change);
void ngx_http_traffic_shift_zone_sync_driver(
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_split_t *split, ngx_str_t *node);
size_t ngx_http_traffic_shift_zone_sync_driven(
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_split_t *split, u_char *node);
void ngx_http_traffic_shift_zone_sync_claim(
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_split_t *split, ngx_uint_t *claim, ngx_uint_t get);
void ngx_http_traffic_shift_zone_sync_count(
    ngx_http_traffic_shift_split_t *split, ngx_uint_t i, uint64_t errors,
    uint64_t *buckets);
ngx_int_t ngx_http_traffic_shift_zone_sync_down(
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_server_t *server, ngx_uint_t down,
    uint64_t revision, ngx_uint_t *version);

/* outlier ejection (ngx_http_traffic_shift_zone_outlier.c) */

#define NGX_HTTP_TS_EJECT_5XX       1
#define NGX_HTTP_TS_EJECT_GATEWAY   2
#define NGX_HTTP_TS_EJECT_RATIO     3

typedef struct {
    ngx_uint_t                           why;
    ngx_uint_t                           count;
    ngx_uint_t                           total;
    ngx_msec_t                           duration;
    ngx_uint_t                           level;
    ngx_uint_t                           ejected;
    ngx_uint_t                           allowed;
    ngx_uint_t                           live;
} ngx_http_traffic_shift_eject_t;

ngx_int_t ngx_http_traffic_shift_zone_outlier_eject(
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_upstream_t *ups,
    ngx_http_traffic_shift_server_t *server,
    ngx_http_traffic_shift_eject_t *e);
void ngx_http_traffic_shift_zone_outlier_sweep(
    ngx_http_traffic_shift_main_conf_t *mcf, ngx_log_t *log);

void ngx_http_traffic_shift_zone_server_reset(
    ngx_http_traffic_shift_sh_server_t *sh);
void ngx_http_traffic_shift_zone_server_copy(
    ngx_http_traffic_shift_sh_server_t *sh,
    ngx_http_traffic_shift_sh_server_t *src);

ngx_int_t ngx_http_traffic_shift_zone_lease(
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_lease_t *l, ngx_msec_t lease, ngx_uint_t release);

/* not down by configuration, probes, an admin mark or an ejection */
ngx_uint_t ngx_http_traffic_shift_zone_server_live(
    ngx_http_traffic_shift_server_t *server);
/* the number of live servers of an upstream{} block */
ngx_uint_t ngx_http_traffic_shift_zone_live(
    ngx_http_traffic_shift_upstream_t *ups);


/*
 * Writers hold the slab mutex.  A writer that died inside the section left
 * the sequence odd: the next writer makes it even before its own update.
 */

static ngx_inline void
ngx_http_traffic_shift_write_begin(ngx_atomic_t *seq)
{
    if (*seq & 1) {
        (*seq)++;
    }

    (*seq)++;
    ngx_memory_barrier();
}


static ngx_inline void
ngx_http_traffic_shift_write_end(ngx_atomic_t *seq)
{
    ngx_memory_barrier();
    (*seq)++;
}


static ngx_inline void
ngx_http_traffic_shift_zone_changed(ngx_http_traffic_shift_main_conf_t *mcf)
{
    (void) ngx_atomic_fetch_add(&mcf->sh->version, 1);
}


/* under the slab mutex: the server became up now; slow start from here */

static ngx_inline void
ngx_http_traffic_shift_zone_server_up(ngx_http_traffic_shift_sh_server_t *sh)
{
    sh->up_msec = ngx_current_msec;
    ngx_memory_barrier();
    sh->ramp = 1;
}


#endif /* _NGX_HTTP_TRAFFIC_SHIFT_ZONE_H_INCLUDED_ */
