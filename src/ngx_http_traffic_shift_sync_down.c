
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#include "ngx_http_traffic_shift_sync_down.h"


/*
 * Admin marks in fleet mode: one key per server,
 * PREFIX/servers/UPSTREAM/ADDRESS, whose value is {"down":true} or
 * {"down":false}.  ADDRESS is the server's address as the API shows it
 * ("127.0.0.1:8080", "[::1]:8080"), never its index, which may differ
 * between nodes; an upstream's name and an address have no "/".
 *
 * The watch (ngx_http_traffic_shift_sync.c) hands every such key here;
 * the mark is applied with the key's mod revision, so an older revision
 * never undoes a newer one and the watch's copy of a mark this node put
 * is a no-op.  A write through the API is a put, then the same apply with
 * the revision etcd gave, then the answer.  Probe results and outlier
 * ejections stay per node: only the admin mark is shared.
 */


typedef struct {
    ngx_http_traffic_shift_etcd_t         etcd;
    ngx_http_request_t                   *r;
    ngx_http_traffic_shift_sync_conf_t   *conf;
    ngx_http_traffic_shift_api_path_t    *path;
    ngx_str_t                             body;
    ngx_uint_t                            down;
    ngx_uint_t                            tries;
    ngx_uint_t                           *version;
    ngx_http_traffic_shift_sync_done_pt   done;
    void                                 *data;
} ngx_http_traffic_shift_sync_down_t;


static ngx_int_t ngx_http_traffic_shift_sync_down_args(ngx_http_request_t *r,
    ngx_http_traffic_shift_api_path_t *path,
    ngx_http_traffic_shift_api_err_t *err);
static ngx_int_t ngx_http_traffic_shift_sync_down_body(
    ngx_http_traffic_shift_sync_down_t *sd);
static ngx_int_t ngx_http_traffic_shift_sync_down_send(
    ngx_http_traffic_shift_sync_down_t *sd);
static void ngx_http_traffic_shift_sync_down_put(
    ngx_http_traffic_shift_etcd_t *e, json_t *json);
static void ngx_http_traffic_shift_sync_down_cleanup(void *data);


/*
 * A key PREFIX/servers/UPSTREAM/ADDRESS from etcd, "tail" being
 * UPSTREAM/ADDRESS, "value" NULL for a deleted key: a deleted key changes
 * nothing (the last mark stays).  NGX_OK: the mark changed here;
 * NGX_DECLINED: nothing changed.
 */

ngx_int_t
ngx_http_traffic_shift_sync_down_kv(ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_log_t *log, ngx_str_t *tail, ngx_str_t *value, uint64_t revision)
{
    u_char                             *slash;
    json_t                             *root;
    ngx_int_t                           rc, i;
    ngx_str_t                           name, addr;
    ngx_uint_t                          down, version;
    ngx_http_traffic_shift_server_t    *server;
    ngx_http_traffic_shift_api_err_t    err;
    ngx_http_traffic_shift_upstream_t  *ups;

    if (value == NULL) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, log, 0,
                       "traffic_shift_sync: mark \"%V\" deleted in etcd, "
                       "the last mark stays", tail);
        return NGX_DECLINED;
    }

    slash = ngx_strlchr(tail->data, tail->data + tail->len, '/');

    if (slash == NULL || slash == tail->data
        || slash == tail->data + tail->len - 1)
    {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "traffic_shift_sync: invalid key \"servers/%V\" in "
                      "etcd, expected \"servers/UPSTREAM/ADDRESS\", ignored",
                      tail);
        return NGX_DECLINED;
    }

    name.data = tail->data;
    name.len = slash - tail->data;
    addr.data = slash + 1;
    addr.len = tail->data + tail->len - addr.data;

    ups = ngx_http_traffic_shift_find_upstream(mcf, name.data, name.len);

    if (ups == NULL || ups->nservers == 0 || ups->servers[0].sh == NULL) {
        ngx_log_error(NGX_LOG_INFO, log, 0,
                      "traffic_shift_sync: upstream \"%V\" of an admin "
                      "mark in etcd has no tracked servers here, ignored",
                      &name);
        return NGX_DECLINED;
    }

    root = ngx_http_traffic_shift_api_parse(value, &err);

    if (root == NULL) {
        goto invalid;
    }

    rc = ngx_http_traffic_shift_api_parse_down(root, &down, &err);
    json_decref(root);

    if (rc != NGX_OK) {
        goto invalid;
    }

    (void) ngx_http_traffic_shift_zone_discover(mcf, ups, log);

    i = ngx_http_traffic_shift_find_server(ups, addr.data, addr.len);

    if (i == NGX_ERROR) {
        ngx_log_error(NGX_LOG_INFO, log, 0,
                      "traffic_shift_sync: no server \"%V\" in upstream "
                      "\"%V\" here for an admin mark in etcd, ignored",
                      &addr, &name);
        return NGX_DECLINED;
    }

    server = &ups->servers[i];

    rc = ngx_http_traffic_shift_zone_sync_down(mcf, server, down, revision,
                                               &version);

    if (rc != NGX_OK) {
        /* so already, applied already, or a reload replaced the zone */
        return NGX_DECLINED;
    }

    ngx_log_error(NGX_LOG_NOTICE, log, 0,
                  "traffic_shift: server \"%V\" of upstream \"%V\" %s "
                  "from the fleet, version %ui, revision %uL",
                  &server->name, &ups->uscf->host,
                  down ? "set admin-down" : "back from admin-down",
                  version, revision);

    return NGX_OK;

invalid:

    ngx_log_error(NGX_LOG_ERR, log, 0,
                  "traffic_shift_sync: invalid admin mark for server \"%V\" "
                  "of upstream \"%V\" at revision %uL in etcd, ignored: %*s",
                  &addr, &name, revision, err.len, err.text);

    return NGX_DECLINED;
}


/*
 * PATCH /health/UPSTREAM/servers/ID in fleet mode, its body and path
 * checked already: a put of the server's key.  NGX_DONE: "done" is called
 * later, once.  NGX_DECLINED: "local=on", the caller marks this node only.
 * If-Match is the zone's version of this node, checked here before the
 * put.
 */

ngx_int_t
ngx_http_traffic_shift_sync_down_write(ngx_http_request_t *r,
    ngx_http_traffic_shift_api_path_t *path, ngx_uint_t down,
    ngx_uint_t if_match, ngx_uint_t *version,
    ngx_http_traffic_shift_api_err_t *err,
    ngx_http_traffic_shift_sync_done_pt done, void *data)
{
    ngx_int_t                             rc;
    ngx_pool_cleanup_t                   *cln;
    ngx_http_traffic_shift_main_conf_t   *mcf;
    ngx_http_traffic_shift_sync_down_t   *sd;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_traffic_shift_module);

    rc = ngx_http_traffic_shift_sync_down_args(r, path, err);

    if (rc != NGX_OK) {
        return rc;
    }

    if (if_match && if_match != mcf->sh->version) {
        return ngx_http_traffic_shift_api_fail(err,
                                            NGX_HTTP_PRECONDITION_FAILED,
                                            "precondition_failed",
                                            "the version is %ui, If-Match "
                                            "expected %ui", mcf->sh->version,
                                            if_match);
    }

    if (mcf->sh->retired) {
        return ngx_http_traffic_shift_api_fail(err,
                                            NGX_HTTP_SERVICE_UNAVAILABLE,
                                            "reloading",
                                            "the configuration is being "
                                            "reloaded, retry");
    }

    sd = ngx_pcalloc(r->pool, sizeof(ngx_http_traffic_shift_sync_down_t));
    if (sd == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_traffic_shift_sync_down_cleanup;
    cln->data = sd;

    sd->r = r;
    sd->conf = mcf->sync;
    sd->path = path;
    sd->down = down;
    sd->version = version;
    sd->done = done;
    sd->data = data;

    sd->etcd.log = r->connection->log;
    sd->etcd.timeout = sd->conf->timeout;
    sd->etcd.data = sd;
    sd->etcd.handler = ngx_http_traffic_shift_sync_down_put;

    if (ngx_http_traffic_shift_sync_down_body(sd) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_traffic_shift_sync_down_send(sd) != NGX_OK) {
        return ngx_http_traffic_shift_api_fail(err,
                                            NGX_HTTP_SERVICE_UNAVAILABLE,
                                            "sync_unavailable",
                                            "etcd cannot be reached, the "
                                            "mark was not changed; the "
                                            "fleet keeps its last state");
    }

    return NGX_DONE;
}


/*
 * "?local=on": this node only (NGX_DECLINED); "wait" is for weights.
 * NGX_OK: the mark goes through etcd.
 */

static ngx_int_t
ngx_http_traffic_shift_sync_down_args(ngx_http_request_t *r,
    ngx_http_traffic_shift_api_path_t *path,
    ngx_http_traffic_shift_api_err_t *err)
{
    ngx_str_t  arg, wait;

    ngx_str_null(&arg);

    if (ngx_http_arg(r, (u_char *) "wait", 4, &wait) == NGX_OK) {
        return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_BAD_REQUEST,
                                            "invalid_value",
                                            "\"wait\" is not supported for "
                                            "a server's admin mark");
    }

    if (ngx_http_arg(r, (u_char *) "local", 5, &arg) != NGX_OK) {
        return NGX_OK;
    }

    if (arg.len != 2 || ngx_strncmp(arg.data, "on", 2) != 0) {
        return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_BAD_REQUEST,
                                            "invalid_value",
                                            "invalid \"local\" argument, "
                                            "expected \"local=on\"");
    }

    /* the local override: this node only, until the fleet's next mark */

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "traffic_shift: admin mark of server \"%V\" of upstream "
                  "\"%V\" changed on this node only (local=on), not in the "
                  "fleet", &path->ups->servers[path->id].name,
                  &path->ups->uscf->host);

    return NGX_DECLINED;
}


/* {"key": PREFIX/servers/UPSTREAM/ADDRESS, "value": {"down":...}} */

static ngx_int_t
ngx_http_traffic_shift_sync_down_body(ngx_http_traffic_shift_sync_down_t *sd)
{
    u_char                           *p;
    json_t                           *json;
    ngx_str_t                         key, tail, value;
    ngx_pool_t                       *pool;
    ngx_http_traffic_shift_server_t  *server;

    pool = sd->r->pool;
    server = &sd->path->ups->servers[sd->path->id];

    tail.len = sd->path->ups->uscf->host.len + 1 + server->name.len;
    tail.data = ngx_pnalloc(pool, tail.len);
    if (tail.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(tail.data, sd->path->ups->uscf->host.data,
                   sd->path->ups->uscf->host.len);
    *p++ = '/';
    ngx_memcpy(p, server->name.data, server->name.len);

    if (ngx_http_traffic_shift_etcd_key(pool, &sd->conf->prefix, "servers/",
                                        &tail, &key)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (sd->down) {
        ngx_str_set(&value, "{\"down\":true}");

    } else {
        ngx_str_set(&value, "{\"down\":false}");
    }

    json = json_pack("{s:o,s:o}",
                     "key", ngx_http_traffic_shift_etcd_b64(pool, key.data,
                                                            key.len),
                     "value", ngx_http_traffic_shift_etcd_b64(pool,
                                                              value.data,
                                                              value.len));

    return ngx_http_traffic_shift_etcd_json(pool, json, &sd->body);
}


/* the put, to the next endpoint that takes a connection */

static ngx_int_t
ngx_http_traffic_shift_sync_down_send(ngx_http_traffic_shift_sync_down_t *sd)
{
    ngx_int_t                                rc;
    ngx_http_traffic_shift_etcd_endpoint_t  *ep;

    ep = sd->conf->endpoints.elts;

    for ( /* void */ ; sd->tries < sd->conf->endpoints.nelts; sd->tries++) {
        sd->etcd.endpoint = &ep[sd->tries];

        rc = ngx_http_traffic_shift_etcd_start(&sd->etcd, "/v3/kv/put",
                                               sd->body.data, sd->body.len);

        if (rc == NGX_OK) {
            sd->tries++;
            return NGX_OK;
        }

        ngx_log_error(NGX_LOG_WARN, sd->r->connection->log, 0,
                      "traffic_shift_sync: etcd \"%V\": cannot connect",
                      &ep[sd->tries].name);
    }

    return NGX_ERROR;
}


/* etcd's answer: applied here with its revision, then "done" */

static void
ngx_http_traffic_shift_sync_down_put(ngx_http_traffic_shift_etcd_t *e,
    json_t *json)
{
    uint64_t                              revision;
    ngx_int_t                             rc;
    ngx_http_request_t                   *r;
    ngx_http_traffic_shift_server_t      *server;
    ngx_http_traffic_shift_api_err_t      err;
    ngx_http_traffic_shift_api_path_t    *path;
    ngx_http_traffic_shift_main_conf_t   *mcf;
    ngx_http_traffic_shift_sync_down_t   *sd;

    sd = e->data;
    r = sd->r;
    path = sd->path;
    err.status = 0;

    if (json == NULL && !e->sent && sd->tries < sd->conf->endpoints.nelts) {
        /* not sent: the next endpoint may take it */
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "traffic_shift_sync: etcd \"%V\": %s",
                      &e->endpoint->name, e->error);

        if (ngx_http_traffic_shift_sync_down_send(sd) == NGX_OK) {
            return;
        }
    }

    if (json == NULL || e->status != NGX_HTTP_OK
        || ngx_http_traffic_shift_etcd_int(json_object_get(json, "header"),
                                           "revision", &revision)
           != NGX_OK
        || revision == 0)
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "traffic_shift_sync: etcd \"%V\": %s, the admin mark "
                      "of a server of upstream \"%V\" was not changed",
                      &e->endpoint->name, json ? "put refused" : e->error,
                      &path->ups->uscf->host);

        (void) ngx_http_traffic_shift_api_fail(&err,
                                            NGX_HTTP_SERVICE_UNAVAILABLE,
                                            "sync_unavailable",
                                            "etcd cannot be reached, the "
                                            "mark was not changed; the "
                                            "fleet keeps its last state");
        rc = NGX_ERROR;
        goto done;
    }

    /* etcd took it: applied here before the answer (or by the watch) */

    mcf = ngx_http_get_module_main_conf(r, ngx_http_traffic_shift_module);

    if (ngx_http_traffic_shift_api_server_again(path) != NGX_OK) {
        (void) ngx_http_traffic_shift_api_fail(&err, NGX_HTTP_NOT_FOUND,
                                            "unknown_server",
                                            "the server is no longer "
                                            "resolved in upstream \"%V\"; "
                                            "the mark is in etcd at "
                                            "revision %uL",
                                            &path->ups->uscf->host, revision);
        rc = NGX_ERROR;
        goto done;
    }

    server = &path->ups->servers[path->id];

    rc = ngx_http_traffic_shift_zone_sync_down(mcf, server, sd->down,
                                               revision, sd->version);

    if (rc == NGX_ABORT) {
        (void) ngx_http_traffic_shift_api_fail(&err,
                                            NGX_HTTP_SERVICE_UNAVAILABLE,
                                            "reloading",
                                            "the configuration is being "
                                            "reloaded; the mark is in etcd "
                                            "at revision %uL", revision);
        rc = NGX_ERROR;
        goto done;
    }

    ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                  "traffic_shift: server \"%V\" of upstream \"%V\" %s by "
                  "client %V in the fleet, version %ui, revision %uL",
                  &server->name, &path->ups->uscf->host,
                  sd->down ? "set admin-down" : "back from admin-down",
                  &r->connection->addr_text, *sd->version, revision);

    rc = NGX_OK;

done:

    sd->done(r, sd->data, rc, &err, NULL);
}


static void
ngx_http_traffic_shift_sync_down_cleanup(void *data)
{
    ngx_http_traffic_shift_sync_down_t  *sd = data;

    ngx_http_traffic_shift_etcd_close(&sd->etcd);
}
