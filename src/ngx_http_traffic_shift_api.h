
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#ifndef _NGX_HTTP_TRAFFIC_SHIFT_API_H_INCLUDED_
#define _NGX_HTTP_TRAFFIC_SHIFT_API_H_INCLUDED_


#include "ngx_http_traffic_shift_lib.h"
#include "ngx_http_traffic_shift_zone.h"


/*
 * The admin API, in five files, each calling only those after it:
 *   ngx_http_traffic_shift_api.c           the handler, GET
 *   ngx_http_traffic_shift_api_change.c    PATCH: changes and answers
 *   ngx_http_traffic_shift_api_json.c      the documents
 *   ngx_http_traffic_shift_api_response.c  sending answers and errors
 *   ngx_http_traffic_shift_api_input.c     paths and bodies, checked
 */


#define NGX_HTTP_TS_API_MAX_BODY    65536
#define NGX_HTTP_TS_API_TEXT_LEN    320
#define NGX_HTTP_TS_API_QUOTE_LEN   64

/* what a path names */
#define NGX_HTTP_TS_API_INDEX       0
#define NGX_HTTP_TS_API_UPSTREAMS   1
#define NGX_HTTP_TS_API_UPSTREAM    2
#define NGX_HTTP_TS_API_HEALTH      3
#define NGX_HTTP_TS_API_HEALTH_UPS  4
#define NGX_HTTP_TS_API_SERVER      5
#define NGX_HTTP_TS_API_METRICS     6
#define NGX_HTTP_TS_API_ROLLOUT     7
#define NGX_HTTP_TS_API_FLEET       8

/* actions on a rollout */
#define NGX_HTTP_TS_RO_PAUSE        0
#define NGX_HTTP_TS_RO_RESUME       1
#define NGX_HTTP_TS_RO_PROMOTE      2
#define NGX_HTTP_TS_RO_ABORT        3


typedef struct {
    ngx_uint_t                            what;
    ngx_http_traffic_shift_split_t       *split;
    ngx_http_traffic_shift_upstream_t    *ups;
    ngx_uint_t                            id;

    /* the server's record: a resolved server's index may change */
    ngx_http_traffic_shift_sh_server_t   *sh;
} ngx_http_traffic_shift_api_path_t;


typedef struct {
    ngx_uint_t                            status;
    char                                 *code;
    size_t                                len;
    u_char                                text[NGX_HTTP_TS_API_TEXT_LEN];
} ngx_http_traffic_shift_api_err_t;


/*
 * A change request: its path, parsed once by the handler, and once
 * accepted, the change, answered when the state file is written.
 */

typedef struct {
    ngx_http_traffic_shift_api_path_t     path;
    ngx_http_traffic_shift_change_t       change;
    ngx_uint_t                            version;

    /* the status of the answer: 200, or 201 for a new rollout */
    ngx_uint_t                            status;

    /* fleet mode, ?wait=fleet: the nodes that have the change */
    json_t                               *fleet;

    /* a ramp started: the answer has the rollout too */
    unsigned                              ramp:1;
} ngx_http_traffic_shift_api_req_t;


/* ngx_http_traffic_shift_api.c */

char *ngx_http_traffic_shift_api(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_traffic_shift_api_init(ngx_conf_t *cf);

/* ngx_http_traffic_shift_api_change.c */

void ngx_http_traffic_shift_api_body_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_traffic_shift_api_delete(ngx_http_request_t *r,
    ngx_http_traffic_shift_api_req_t *req);

/* ngx_http_traffic_shift_api_rollout.c */

ngx_int_t ngx_http_traffic_shift_api_rollout_change(ngx_http_request_t *r,
    ngx_http_traffic_shift_api_req_t *req, json_t *root, ngx_uint_t if_match,
    ngx_http_traffic_shift_api_err_t *err);
ngx_int_t ngx_http_traffic_shift_api_rollout_ramp(ngx_http_request_t *r,
    ngx_http_traffic_shift_api_req_t *req, json_t *root, ngx_uint_t if_match,
    ngx_http_traffic_shift_api_err_t *err);
ngx_int_t ngx_http_traffic_shift_api_rollout_act(ngx_http_request_t *r,
    ngx_http_traffic_shift_api_req_t *req, ngx_uint_t action,
    ngx_uint_t if_match, ngx_http_traffic_shift_api_err_t *err);
ngx_int_t ngx_http_traffic_shift_api_rollout_parse(
    ngx_http_traffic_shift_split_t *split, json_t *root,
    ngx_http_traffic_shift_sh_rollout_t *ro,
    ngx_http_traffic_shift_api_err_t *err);
ngx_int_t ngx_http_traffic_shift_api_rollout_ramp_parse(
    ngx_http_traffic_shift_split_t *split, json_t *root,
    ngx_http_traffic_shift_sh_rollout_t *ro,
    ngx_http_traffic_shift_api_err_t *err);
json_t *ngx_http_traffic_shift_api_rollout_json(ngx_http_request_t *r,
    ngx_http_traffic_shift_split_t *split,
    ngx_http_traffic_shift_api_err_t *err);

/* ngx_http_traffic_shift_api_json.c */

json_t *ngx_http_traffic_shift_api_index_json(
    ngx_http_traffic_shift_main_conf_t *mcf);
json_t *ngx_http_traffic_shift_api_split_json(
    ngx_http_traffic_shift_split_t *split,
    ngx_http_traffic_shift_weights_t *w);
json_t *ngx_http_traffic_shift_api_server_json(
    ngx_http_traffic_shift_upstream_t *ups, ngx_uint_t id);
ngx_int_t ngx_http_traffic_shift_api_health(ngx_http_request_t *r,
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_upstream_t *only, ngx_str_t *body);

/* ngx_http_traffic_shift_api_input.c */

ngx_int_t ngx_http_traffic_shift_api_path(ngx_http_request_t *r,
    ngx_http_traffic_shift_api_path_t *path,
    ngx_http_traffic_shift_api_err_t *err);
ngx_int_t ngx_http_traffic_shift_api_server_again(
    ngx_http_traffic_shift_api_path_t *path);
json_t *ngx_http_traffic_shift_api_parse(ngx_str_t *body,
    ngx_http_traffic_shift_api_err_t *err);
ngx_int_t ngx_http_traffic_shift_api_parse_weights(
    ngx_http_traffic_shift_split_t *split, json_t *root, ngx_uint_t *weights,
    ngx_uint_t *force, ngx_http_traffic_shift_api_err_t *err);
ngx_int_t ngx_http_traffic_shift_api_parse_down(json_t *root,
    ngx_uint_t *down, ngx_http_traffic_shift_api_err_t *err);
ngx_int_t ngx_http_traffic_shift_api_fail(
    ngx_http_traffic_shift_api_err_t *err, ngx_uint_t status, char *code,
    const char *fmt, ...);

/* ngx_http_traffic_shift_api_response.c */

ngx_int_t ngx_http_traffic_shift_api_send_json(ngx_http_request_t *r,
    ngx_uint_t status, json_t *json, ngx_uint_t etag);
ngx_int_t ngx_http_traffic_shift_api_send(ngx_http_request_t *r,
    ngx_uint_t status, ngx_str_t *type, u_char *data, size_t len,
    ngx_uint_t etag, char *allow);
ngx_int_t ngx_http_traffic_shift_api_error(ngx_http_request_t *r,
    ngx_http_traffic_shift_api_err_t *err, ngx_uint_t etag, char *allow);
ngx_uint_t ngx_http_traffic_shift_api_too_large(ngx_http_request_t *r,
    ngx_http_traffic_shift_api_err_t *err);
ngx_uint_t ngx_http_traffic_shift_api_etag(ngx_http_request_t *r,
    ngx_http_traffic_shift_api_path_t *path);


extern ngx_str_t  ngx_http_traffic_shift_api_type_json;


#endif /* _NGX_HTTP_TRAFFIC_SHIFT_API_H_INCLUDED_ */
