
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#ifndef _NGX_HTTP_TRAFFIC_SHIFT_STATE_H_INCLUDED_
#define _NGX_HTTP_TRAFFIC_SHIFT_STATE_H_INCLUDED_


#include "ngx_http_traffic_shift.h"


#define NGX_HTTP_TS_STATE_ERR_LEN  512


typedef struct ngx_http_traffic_shift_state_save_s
    ngx_http_traffic_shift_state_save_t;

typedef void (*ngx_http_traffic_shift_state_done_pt)(ngx_http_request_t *r,
    ngx_http_traffic_shift_state_save_t *save);


/* a write of the state file after a change, and its outcome */

struct ngx_http_traffic_shift_state_save_s {
    ngx_http_traffic_shift_main_conf_t   *mcf;
    ngx_http_request_t                   *r;
    ngx_http_traffic_shift_state_done_pt  done;
    void                                 *data;

    u_char                               *file;
    u_char                               *temp;
    u_char                               *lock;
    u_char                               *dir;

    /* NGX_OK: the file holds the change (written now or before) */
    ngx_int_t                             rc;
    size_t                                error_len;
    u_char                                error[NGX_HTTP_TS_STATE_ERR_LEN];
};


char *ngx_http_traffic_shift_state_conf(ngx_conf_t *cf,
    ngx_http_traffic_shift_main_conf_t *mcf);
ngx_int_t ngx_http_traffic_shift_state_load(
    ngx_http_traffic_shift_main_conf_t *mcf, ngx_log_t *log);
ngx_int_t ngx_http_traffic_shift_state_save(ngx_http_request_t *r,
    ngx_http_traffic_shift_state_done_pt done, void *data);


#endif /* _NGX_HTTP_TRAFFIC_SHIFT_STATE_H_INCLUDED_ */
