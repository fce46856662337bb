
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#include "ngx_http_traffic_shift_api.h"
#include "ngx_http_traffic_shift_zone.h"


/*
 * The documents of the admin API: the index, a traffic_shift upstream, and
 * the health of tracked upstreams and their servers.  Single objects are
 * built with jansson; lists of servers, which may hold thousands, are
 * written directly into one buffer sized beforehand.
 */


#define NGX_HTTP_TS_API_VERSION     1


/*
 * GET /health and /health/UPSTREAM.  A server takes at most
 * NGX_HTTP_TS_API_SERVER_LEN bytes besides its escaped address and error.
 */

#define NGX_HTTP_TS_API_SERVER_LEN                                            \
    (sizeof("{\"id\":,\"address\":\"\",\"state\":\"admin_down\","             \
            "\"admin_down\":false,\"config_down\":false,\"backup\":false,"    \
            "\"passes\":,\"fails\":,\"last_probe\":\"1970-01-01T00:00:00Z\"," \
            "\"last_error\":\"\",\"probes\":{\"ok\":,\"fail\":,"               \
            "\"timeout\":},\"down_reason\":\"outlier\",\"outlier\":{"        \
            "\"ejected\":false,\"ejections\":,\"ejected_at\":"              \
            "\"1970-01-01T00:00:00Z\",\"ejected_for_ms\":,"                  \
            "\"consecutive_5xx\":,\"consecutive_gateway\":},"                \
            "\"slow_start\":{\"ramping\":false,\"share_percent\":100}},")    \
     + 11 * NGX_ATOMIC_T_LEN)

#define NGX_HTTP_TS_API_UPS_LEN                                               \
    (sizeof("\"\":{\"name\":\"\",\"health_check\":false,\"live\":,"            \
            "\"servers\":[]},") + NGX_INT_T_LEN)


static u_char *ngx_http_traffic_shift_api_ups_text(u_char *p,
    ngx_http_traffic_shift_upstream_t *ups);
static u_char *ngx_http_traffic_shift_api_server_text(u_char *p,
    ngx_http_traffic_shift_upstream_t *ups, ngx_uint_t id);
static char *ngx_http_traffic_shift_api_state(
    ngx_http_traffic_shift_upstream_t *ups,
    ngx_http_traffic_shift_server_t *server);
static u_char *ngx_http_traffic_shift_api_time(u_char *p, time_t t);
static char *ngx_http_traffic_shift_api_down_reason(
    ngx_http_traffic_shift_server_t *server);
static u_char *ngx_http_traffic_shift_api_outlier_text(u_char *p,
    ngx_http_traffic_shift_upstream_t *ups,
    ngx_http_traffic_shift_server_t *server);
static size_t ngx_http_traffic_shift_api_last_error(
    ngx_http_traffic_shift_sh_server_t *sh, u_char *error);


static char  *ngx_http_traffic_shift_api_sources[] = {
    "config", "api", "state", "fleet"
};


json_t *
ngx_http_traffic_shift_api_index_json(ngx_http_traffic_shift_main_conf_t *mcf)
{
    json_t                              *root, *list;
    ngx_uint_t                           i;
    ngx_http_traffic_shift_split_t     **splitp;
    ngx_http_traffic_shift_upstream_t  **upsp;

    root = json_object();
    if (root == NULL) {
        return NULL;
    }

    if (json_object_set_new(root, "api_version",
                            json_integer(NGX_HTTP_TS_API_VERSION))
        || json_object_set_new(root, "module_version",
                               json_string(NGX_HTTP_TS_VERSION))
        || json_object_set_new(root, "version",
                               json_integer(mcf->sh ? mcf->sh->version : 0)))
    {
        goto failed;
    }

    list = json_array();

    if (json_object_set_new(root, "upstreams", list)) {
        goto failed;
    }

    splitp = mcf->splits.elts;

    for (i = 0; i < mcf->splits.nelts; i++) {
        if (json_array_append_new(list,
                ngx_http_traffic_shift_json_str(splitp[i]->name.data,
                                                    splitp[i]->name.len)))
        {
            goto failed;
        }
    }

    list = json_array();

    if (json_object_set_new(root, "health", list)) {
        goto failed;
    }

    upsp = mcf->upstreams.elts;

    for (i = 0; i < mcf->upstreams.nelts; i++) {
        if (json_array_append_new(list,
                ngx_http_traffic_shift_json_str(upsp[i]->uscf->host.data,
                                                    upsp[i]->uscf->host.len)))
        {
            goto failed;
        }
    }

    return root;

failed:

    json_decref(root);

    return NULL;
}


json_t *
ngx_http_traffic_shift_api_split_json(ngx_http_traffic_shift_split_t *split,
    ngx_http_traffic_shift_weights_t *w)
{
    json_t                              *root, *weights, *pools, *obj;
    ngx_uint_t                           i, live;
    ngx_http_traffic_shift_pool_t       *pool;
    ngx_http_traffic_shift_upstream_t   *ups;

    root = json_object();
    if (root == NULL) {
        return NULL;
    }

    if (json_object_set_new(root, "name",
                            ngx_http_traffic_shift_json_str(
                                split->name.data, split->name.len))
        || json_object_set_new(root, "generation",
                               json_integer(w->generation)))
    {
        goto failed;
    }

    weights = json_object();

    if (json_object_set_new(root, "weights", weights)) {
        goto failed;
    }

    pools = json_object();

    if (json_object_set_new(root, "pools", pools)) {
        goto failed;
    }

    pool = split->pools.elts;

    for (i = 0; i < split->pools.nelts; i++) {

        if (ngx_http_traffic_shift_json_set(weights, &pool[i].name,
                   ngx_http_traffic_shift_json_weight(w->weights[i]))
            != NGX_OK)
        {
            goto failed;
        }

        ups = pool[i].ups;
        live = ngx_http_traffic_shift_zone_live(ups);

        obj = json_object();

        if (ngx_http_traffic_shift_json_set(pools, &pool[i].name, obj)
            != NGX_OK
            || json_object_set_new(obj, "upstream",
                                   ngx_http_traffic_shift_json_str(
                                       pool[i].upstream.data,
                                       pool[i].upstream.len))
            || json_object_set_new(obj, "weight",
                      ngx_http_traffic_shift_json_weight(w->weights[i]))
            || json_object_set_new(obj, "configured",
                      ngx_http_traffic_shift_json_weight(pool[i].weight))
            || json_object_set_new(obj, "servers",
                                   json_integer(ups->nservers))
            || json_object_set_new(obj, "healthy", json_integer(live)))
        {
            goto failed;
        }
    }

    if (json_object_set_new(root, "sticky", json_boolean(split->sticky))
        || json_object_set_new(root, "route", json_boolean(split->route))
        || json_object_set_new(root, "updated",
                               ngx_http_traffic_shift_json_time(
                                   w->updated))
        || json_object_set_new(root, "source",
                      json_string(ngx_http_traffic_shift_api_sources[
                                      w->source > NGX_HTTP_TS_SRC_FLEET
                                      ? 0 : w->source])))
    {
        goto failed;
    }

    return root;

failed:

    json_decref(root);

    return NULL;
}


ngx_int_t
ngx_http_traffic_shift_api_health(ngx_http_request_t *r,
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_upstream_t *only, ngx_str_t *body)
{
    u_char                              *p;
    size_t                               size, host;
    ngx_uint_t                           i, j, n, first;
    ngx_http_traffic_shift_upstream_t  **upsp, *ups;

    if (only) {
        upsp = &only;
        n = 1;

    } else {
        upsp = mcf->upstreams.elts;
        n = mcf->upstreams.nelts;
    }

    size = sizeof("{}\n");

    for (i = 0; i < n; i++) {
        ups = upsp[i];

        host = ups->uscf->host.len
               + ngx_escape_json(NULL, ups->uscf->host.data,
                                 ups->uscf->host.len);

        size += NGX_HTTP_TS_API_UPS_LEN + 2 * host;

        for (j = 0; j < ups->nservers; j++) {
            size += NGX_HTTP_TS_API_SERVER_LEN
                    + ups->servers[j].name.len
                    + ngx_escape_json(NULL, ups->servers[j].name.data,
                                      ups->servers[j].name.len)
                    + 2 * NGX_HTTP_TS_ERR_LEN;
        }
    }

    p = ngx_pnalloc(r->pool, size);
    if (p == NULL) {
        return NGX_ERROR;
    }

    body->data = p;

    if (only) {
        p = ngx_http_traffic_shift_api_ups_text(p, only);

    } else {
        *p++ = '{';
        first = 1;

        for (i = 0; i < n; i++) {
            ups = upsp[i];

            if (ups->nservers && ups->servers[0].sh == NULL) {
                continue;
            }

            if (!first) {
                *p++ = ',';
            }

            first = 0;

            *p++ = '"';
            p = (u_char *) ngx_escape_json(p, ups->uscf->host.data,
                                           ups->uscf->host.len);
            *p++ = '"';
            *p++ = ':';

            p = ngx_http_traffic_shift_api_ups_text(p, ups);
        }

        *p++ = '}';
    }

    *p++ = LF;

    body->len = p - body->data;

    return NGX_OK;
}


static u_char *
ngx_http_traffic_shift_api_ups_text(u_char *p,
    ngx_http_traffic_shift_upstream_t *ups)
{
    ngx_uint_t  i, live;

    live = ngx_http_traffic_shift_zone_live(ups);

    p = ngx_cpymem(p, "{\"name\":\"", sizeof("{\"name\":\"") - 1);
    p = (u_char *) ngx_escape_json(p, ups->uscf->host.data,
                                   ups->uscf->host.len);
    p = ngx_sprintf(p, "\",\"health_check\":%s,\"live\":%ui,\"servers\":[",
                    ups->health ? "true" : "false", live);

    for (i = 0; i < ups->nservers; i++) {
        if (i) {
            *p++ = ',';
        }

        p = ngx_http_traffic_shift_api_server_text(p, ups, i);
    }

    *p++ = ']';
    *p++ = '}';

    return p;
}


static u_char *
ngx_http_traffic_shift_api_server_text(u_char *p,
    ngx_http_traffic_shift_upstream_t *ups, ngx_uint_t id)
{
    char                                *reason;
    u_char                               error[NGX_HTTP_TS_ERR_LEN];
    size_t                               len;
    ngx_http_traffic_shift_server_t     *server;
    ngx_http_traffic_shift_sh_server_t  *sh;

    server = &ups->servers[id];
    sh = server->sh;

    p = ngx_sprintf(p, "{\"id\":%ui,\"address\":\"", id);
    p = (u_char *) ngx_escape_json(p, server->name.data, server->name.len);

    p = ngx_sprintf(p, "\",\"state\":\"%s\",\"admin_down\":%s,"
                    "\"config_down\":%s,\"backup\":%s,\"passes\":%ui,"
                    "\"fails\":%ui,\"last_probe\":",
                    ngx_http_traffic_shift_api_state(ups, server),
                    sh->admin_down ? "true" : "false",
                    ngx_http_traffic_shift_conf_failed(server->conf_down)
                    ? "true" : "false",
                    server->backup ? "true" : "false",
                    sh->passes, sh->fails);

    p = ngx_http_traffic_shift_api_time(p, sh->last_probe);

    p = ngx_cpymem(p, ",\"last_error\":", sizeof(",\"last_error\":") - 1);

    len = ngx_http_traffic_shift_api_last_error(sh, error);

    if (len) {
        *p++ = '"';
        p = (u_char *) ngx_escape_json(p, error, len);
        *p++ = '"';

    } else {
        p = ngx_cpymem(p, "null", 4);
    }

    p = ngx_sprintf(p, ",\"probes\":{\"ok\":%uA,\"fail\":%uA,"
                    "\"timeout\":%uA},\"down_reason\":",
                    sh->probes[NGX_HTTP_TS_PROBE_OK],
                    sh->probes[NGX_HTTP_TS_PROBE_FAIL],
                    sh->probes[NGX_HTTP_TS_PROBE_TIMEOUT]);

    reason = ngx_http_traffic_shift_api_down_reason(server);

    if (reason) {
        p = ngx_sprintf(p, "\"%s\"", reason);

    } else {
        p = ngx_cpymem(p, "null", 4);
    }

    if (ups->outlier) {
        p = ngx_http_traffic_shift_api_outlier_text(p, ups, server);
    }

    *p++ = '}';

    return p;
}


/* a time as a JSON string, or null for none */

static u_char *
ngx_http_traffic_shift_api_time(u_char *p, time_t t)
{
    if (t == 0) {
        return ngx_cpymem(p, "null", 4);
    }

    *p++ = '"';
    p = ngx_http_traffic_shift_time_text(p, t);
    *p++ = '"';

    return p;
}


/* why the server takes no requests: the first of these, or NULL */

static char *
ngx_http_traffic_shift_api_down_reason(ngx_http_traffic_shift_server_t *server)
{
    ngx_http_traffic_shift_sh_server_t  *sh;

    sh = server->sh;

    if (sh->admin_down) {
        return "admin";
    }

    if (ngx_http_traffic_shift_conf_failed(server->conf_down)) {
        return "config";
    }

    if (sh->state == NGX_HTTP_TS_DOWN) {
        return "probe";
    }

    if (sh->ejected) {
        return "outlier";
    }

    return NULL;
}


/* outlier detection and slow start, as the zone has them now */

static u_char *
ngx_http_traffic_shift_api_outlier_text(u_char *p,
    ngx_http_traffic_shift_upstream_t *ups,
    ngx_http_traffic_shift_server_t *server)
{
    ngx_msec_t                           elapsed, window;
    ngx_uint_t                           share;
    ngx_http_traffic_shift_sh_server_t  *sh;

    sh = server->sh;

    if (ups->outlier->eject) {
        p = ngx_sprintf(p, ",\"outlier\":{\"ejected\":%s,\"ejections\":%uA,"
                        "\"ejected_at\":",
                        sh->ejected ? "true" : "false", sh->ejections);

        p = ngx_http_traffic_shift_api_time(p, sh->eject_time);

        p = ngx_sprintf(p, ",\"ejected_for_ms\":%M,\"consecutive_5xx\":%uA,"
                        "\"consecutive_gateway\":%uA}",
                        sh->eject_for, sh->c5xx, sh->cgateway);
    }

    window = ups->outlier->slow_start;

    if (window == 0) {
        return p;
    }

    share = 100;
    elapsed = ngx_current_msec - sh->up_msec;

    if (sh->ramp && (ngx_msec_int_t) elapsed >= 0 && elapsed < window) {
        share = 10 + 90 * elapsed / window;
    }

    return ngx_sprintf(p, ",\"slow_start\":{\"ramping\":%s,"
                       "\"share_percent\":%ui}",
                       share < 100 ? "true" : "false", share);
}


static char *
ngx_http_traffic_shift_api_state(ngx_http_traffic_shift_upstream_t *ups,
    ngx_http_traffic_shift_server_t *server)
{
    ngx_http_traffic_shift_sh_server_t  *sh;

    sh = server->sh;

    if (sh->admin_down) {
        return "admin_down";
    }

    if (ngx_http_traffic_shift_conf_failed(server->conf_down)
        || sh->state == NGX_HTTP_TS_DOWN || sh->ejected)
    {
        return "down";
    }

    if (ngx_http_traffic_shift_conf_draining(server->conf_down)) {
        return "draining";
    }

    if (ups->health && sh->last_probe == 0) {
        return "checking";
    }

    return "up";
}


/* the prober may be writing it: a copy, cut at the first NUL, printable */

static size_t
ngx_http_traffic_shift_api_last_error(ngx_http_traffic_shift_sh_server_t *sh,
    u_char *error)
{
    size_t  len;

    ngx_memcpy(error, sh->last_error, NGX_HTTP_TS_ERR_LEN);

    for (len = 0; len < NGX_HTTP_TS_ERR_LEN && error[len]; len++) {
        if (error[len] < 0x20 || error[len] >= 0x7f) {
            error[len] = '?';
        }
    }

    return len;
}


/*
 * GET and PATCH /health/UPSTREAM/servers/ID: the server as the list writes
 * it, taken up by jansson for the fields a change answer adds.
 */

json_t *
ngx_http_traffic_shift_api_server_json(ngx_http_traffic_shift_upstream_t *ups,
    ngx_uint_t id)
{
    u_char        *text, *p;
    size_t         size;
    json_t        *root;
    json_error_t   error;

    size = NGX_HTTP_TS_API_SERVER_LEN + ups->servers[id].name.len
           + ngx_escape_json(NULL, ups->servers[id].name.data,
                             ups->servers[id].name.len)
           + 2 * NGX_HTTP_TS_ERR_LEN;

    text = ngx_alloc(size, ngx_cycle->log);
    if (text == NULL) {
        return NULL;
    }

    p = ngx_http_traffic_shift_api_server_text(text, ups, id);

    root = json_loadb((char *) text, p - text, 0, &error);

    ngx_free(text);

    return root;
}
