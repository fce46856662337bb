
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#ifndef _NGX_HTTP_TRAFFIC_SHIFT_STATE_H_INCLUDED_
#define _NGX_HTTP_TRAFFIC_SHIFT_STATE_H_INCLUDED_


#include "ngx_http_traffic_shift.h"
#include "ngx_http_traffic_shift_lib.h"


#define NGX_HTTP_TS_STATE_ERR_LEN  512

#define NGX_HTTP_TS_STATE_FORMAT   "nginx-traffic-shift-state"
#define NGX_HTTP_TS_STATE_VERSION  1

/* generations are JSON numbers: at most 2^53 - 1 */
#define NGX_HTTP_TS_STATE_MAX_GEN  9007199254740991LL


typedef struct ngx_http_traffic_shift_state_save_s
    ngx_http_traffic_shift_state_save_t;

typedef void (*ngx_http_traffic_shift_state_done_pt)(ngx_http_request_t *r,
    ngx_http_traffic_shift_state_save_t *save);


/* a write of the state file after a change, and its outcome */

struct ngx_http_traffic_shift_state_save_s {
    ngx_http_traffic_shift_main_conf_t   *mcf;

    /* the request that made the change, or NULL */
    ngx_http_request_t                   *r;
    /* without a request: a change (1), or the check at a worker's start */
    ngx_uint_t                            changed;
    ngx_pool_t                           *pool;
    ngx_log_t                            *log;
    ngx_http_traffic_shift_state_done_pt  done;
    void                                 *data;

#if (NGX_THREADS)
    ngx_thread_task_t                    *task;
#endif
    ngx_event_t                           guard;

    u_char                               *file;
    u_char                               *temp;
    u_char                               *lock;
    u_char                               *dir;

    /* NGX_OK: the file holds the change (written now or before) */
    ngx_int_t                             rc;
    size_t                                error_len;
    u_char                                error[NGX_HTTP_TS_STATE_ERR_LEN];
};


/* ngx_http_traffic_shift_state.c: reading at start */

ngx_int_t ngx_http_traffic_shift_state_load(
    ngx_http_traffic_shift_main_conf_t *mcf, ngx_log_t *log);
void ngx_http_traffic_shift_state_check_dir(
    ngx_http_traffic_shift_main_conf_t *mcf, ngx_log_t *log,
    ngx_uint_t writable);

/* ngx_http_traffic_shift_state_rollout.c: saved values, checked */

ngx_int_t ngx_http_traffic_shift_state_number(json_t *value, ngx_uint_t min,
    ngx_uint_t *n);
ngx_int_t ngx_http_traffic_shift_state_weights(
    ngx_http_traffic_shift_split_t *split, json_t *weights,
    ngx_uint_t *value_of);
ngx_int_t ngx_http_traffic_shift_state_rollout(
    ngx_http_traffic_shift_split_t *split, json_t *obj,
    ngx_http_traffic_shift_sh_rollout_t *ro);

/* ngx_http_traffic_shift_state_json.c: the document, in the thread */

json_t *ngx_http_traffic_shift_state_json(
    ngx_http_traffic_shift_state_save_t *save);
void ngx_http_traffic_shift_state_error(
    ngx_http_traffic_shift_state_save_t *save, ngx_err_t err,
    const char *fmt, ...);

/* ngx_http_traffic_shift_state_write.c: writing in workers */

char *ngx_http_traffic_shift_state_conf(ngx_conf_t *cf,
    ngx_http_traffic_shift_main_conf_t *mcf);
ngx_int_t ngx_http_traffic_shift_state_save(ngx_http_request_t *r,
    ngx_http_traffic_shift_state_done_pt done, void *data);
void ngx_http_traffic_shift_state_save_change(
    ngx_http_traffic_shift_main_conf_t *mcf, ngx_log_t *log);
void ngx_http_traffic_shift_state_init_process(ngx_cycle_t *cycle);


#endif /* _NGX_HTTP_TRAFFIC_SHIFT_STATE_H_INCLUDED_ */
