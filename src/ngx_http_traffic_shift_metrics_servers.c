
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#include "ngx_http_traffic_shift_metrics.h"
#include "ngx_http_traffic_shift_zone.h"


/*
 * GET /metrics: the families of the upstream{} blocks and their servers,
 * and the escaping of label values.
 */


static const char  *ngx_http_traffic_shift_metrics_probe_results[] = {
    "ok", "fail", "timeout"
};


#define NGX_HTTP_TS_METRICS_UP                                                \
    "# HELP traffic_shift_server_up 1 if the server takes requests: not "    \
    "down in the configuration, by health checks or by an administrator.\n"  \
    "# TYPE traffic_shift_server_up gauge\n"

#define NGX_HTTP_TS_METRICS_PROBES                                            \
    "# HELP traffic_shift_probes_total Health probes of the server, by "     \
    "result.\n"                                                               \
    "# TYPE traffic_shift_probes_total counter\n"

#define NGX_HTTP_TS_METRICS_EJECTIONS                                         \
    "# HELP traffic_shift_server_ejections_total Ejections of the server "   \
    "by outlier detection.\n"                                                \
    "# TYPE traffic_shift_server_ejections_total counter\n"

/* the families named by Prometheus' rules (0.2.0) */

#define NGX_HTTP_TS_METRICS_N_SERVERS                                         \
    "# HELP traffic_shift_upstream_servers Servers of the upstream{} "       \
    "block.\n"                                                               \
    "# TYPE traffic_shift_upstream_servers gauge\n"

#define NGX_HTTP_TS_METRICS_N_LIVE                                            \
    "# HELP traffic_shift_upstream_live_servers Servers of the upstream{} "  \
    "block that take requests.\n"                                            \
    "# TYPE traffic_shift_upstream_live_servers gauge\n"

#define NGX_HTTP_TS_METRICS_N_DOWN                                            \
    "# HELP traffic_shift_server_down 1 if the server is down for the "      \
    "reason: config (down in the configuration), admin (drained through "   \
    "the API), probe (health checks), outlier (ejected).\n"                  \
    "# TYPE traffic_shift_server_down gauge\n"


/*
 * The escaped names of the upstream{} blocks, and the size of their
 * families with HELP and TYPE.
 */

ngx_int_t
ngx_http_traffic_shift_metrics_servers_prepare(
    ngx_http_traffic_shift_metrics_ctx_t *ctx, size_t *size)
{
    ngx_uint_t                           i, j;
    ngx_http_traffic_shift_upstream_t  **upsp, *ups;
    ngx_http_traffic_shift_main_conf_t  *mcf;

    mcf = ctx->mcf;

    *size += sizeof(NGX_HTTP_TS_METRICS_UP NGX_HTTP_TS_METRICS_PROBES
                    NGX_HTTP_TS_METRICS_EJECTIONS NGX_HTTP_TS_METRICS_N_SERVERS
                    NGX_HTTP_TS_METRICS_N_LIVE NGX_HTTP_TS_METRICS_N_DOWN)
             - 1;

    upsp = mcf->upstreams.elts;

    for (i = 0; mcf->sh && i < mcf->upstreams.nelts; i++) {
        ups = upsp[i];

        if (ups->nservers == 0 || ups->servers[0].sh == NULL) {
            continue;
        }

        if (ngx_http_traffic_shift_metrics_escape(ctx->pool,
                                                  &ups->uscf->host,
                                                  &ctx->ups[i])
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        /* servers, live servers */
        *size += 2 * (NGX_HTTP_TS_METRICS_LINE + ctx->ups[i].len);

        for (j = 0; j < ups->nservers; j++) {
            /* up, down by reason, ejections, probes by result */
            *size += (1 + 4 + (ups->outlier != NULL)
                      + (ups->health ? NGX_HTTP_TS_PROBE_RESULTS : 0))
                     * (NGX_HTTP_TS_METRICS_LINE + ctx->ups[i].len
                        + 2 * ups->servers[j].name.len);
        }
    }

    return NGX_OK;
}


/*
 * The families of the servers.  A server listed twice in an upstream{}
 * block is one server of the zone: it has one series.
 */

ngx_int_t
ngx_http_traffic_shift_metrics_servers(
    ngx_http_traffic_shift_metrics_ctx_t *ctx)
{
    u_char                              *p, *last;
    ngx_str_t                            name;
    ngx_uint_t                           i, j, k, family;
    ngx_http_traffic_shift_server_t     *server;
    ngx_http_traffic_shift_upstream_t  **upsp, *ups;

    last = ctx->last;
    upsp = ctx->mcf->upstreams.elts;

    /* up; probes by result; ejections */

    for (family = 0; family < 3; family++) {

        ctx->p = (family == 0)
            ? ngx_http_traffic_shift_metrics_text(ctx->p,
                                                  NGX_HTTP_TS_METRICS_UP)
            : (family == 1)
            ? ngx_http_traffic_shift_metrics_text(ctx->p,
                                                  NGX_HTTP_TS_METRICS_PROBES)
            : ngx_http_traffic_shift_metrics_text(ctx->p,
                                                NGX_HTTP_TS_METRICS_EJECTIONS);
        p = ctx->p;

        for (i = 0; i < ctx->mcf->upstreams.nelts; i++) {
            ups = upsp[i];

            if (ctx->ups[i].data == NULL || ctx->no_servers
                || (family == 1 && ups->health == NULL)
                || (family == 2 && ups->outlier == NULL))
            {
                continue;
            }

            for (j = 0; j < ups->nservers; j++) {
                server = &ups->servers[j];

                if (server->duplicate) {
                    continue;
                }

                if (ngx_http_traffic_shift_metrics_escape(ctx->pool,
                                                          &server->name,
                                                          &name)
                    != NGX_OK)
                {
                    return NGX_ERROR;
                }

                if (family == 0) {
                    p = ngx_slprintf(p, last,
                             "traffic_shift_server_up{upstream=\"%V\","
                             "server=\"%V\"} %d\n", &ctx->ups[i], &name,
                             ngx_http_traffic_shift_zone_server_live(server)
                             ? 1 : 0);
                    continue;
                }

                if (family == 2) {
                    p = ngx_slprintf(p, last,
                             "traffic_shift_server_ejections_total{"
                             "upstream=\"%V\",server=\"%V\"} %uA\n",
                             &ctx->ups[i], &name, server->sh->ejections);
                    continue;
                }

                for (k = 0; k < NGX_HTTP_TS_PROBE_RESULTS; k++) {
                    p = ngx_slprintf(p, last,
                             "traffic_shift_probes_total{upstream=\"%V\","
                             "server=\"%V\",result=\"%s\"} %uA\n",
                             &ctx->ups[i], &name,
                             ngx_http_traffic_shift_metrics_probe_results[k],
                             server->sh->probes[k]);
                }
            }
        }

        ctx->p = p;
    }

    return NGX_OK;
}


/*
 * Servers and live servers of each upstream{} block (always); each
 * server's reasons to be down (not with ?servers=off).
 */

ngx_int_t
ngx_http_traffic_shift_metrics_reasons(
    ngx_http_traffic_shift_metrics_ctx_t *ctx)
{
    u_char                              *p, *last;
    ngx_str_t                            name;
    ngx_uint_t                           i, j, k, r, total, live, down[4];
    ngx_http_traffic_shift_server_t     *server;
    ngx_http_traffic_shift_upstream_t  **upsp, *ups;

    static const char  *reasons[] = { "config", "admin", "probe", "outlier" };

    p = ctx->p;
    last = ctx->last;
    upsp = ctx->mcf->upstreams.elts;

    for (k = 0; k < 3; k++) {
        p = (k == 0)
            ? ngx_http_traffic_shift_metrics_text(p,
                                                  NGX_HTTP_TS_METRICS_N_SERVERS)
            : (k == 1)
            ? ngx_http_traffic_shift_metrics_text(p,
                                                  NGX_HTTP_TS_METRICS_N_LIVE)
            : ngx_http_traffic_shift_metrics_text(p,
                                                  NGX_HTTP_TS_METRICS_N_DOWN);

        for (i = 0; i < ctx->mcf->upstreams.nelts; i++) {
            ups = upsp[i];

            if (ctx->ups[i].data == NULL) {
                continue;
            }

            total = 0;
            live = 0;

            for (j = 0; j < ups->nservers; j++) {
                server = &ups->servers[j];

                if (server->duplicate) {
                    continue;
                }

                total++;
                live += ngx_http_traffic_shift_zone_server_live(server);

                if (k < 2 || ctx->no_servers) {
                    continue;
                }

                if (ngx_http_traffic_shift_metrics_escape(ctx->pool,
                                                          &server->name,
                                                          &name)
                    != NGX_OK)
                {
                    return NGX_ERROR;
                }

                down[0] = ngx_http_traffic_shift_conf_failed(
                                                         server->conf_down);
                down[1] = (server->sh->admin_down != 0);
                down[2] = (server->sh->state == NGX_HTTP_TS_DOWN);
                down[3] = (server->sh->ejected != 0);

                for (r = 0; r < 4; r++) {
                    p = ngx_slprintf(p, last,
                             "traffic_shift_server_down{upstream=\"%V\","
                             "server=\"%V\",reason=\"%s\"} %d\n",
                             &ctx->ups[i], &name, reasons[r], down[r] ? 1 : 0);
                }
            }

            if (k < 2) {
                p = ngx_slprintf(p, last, "%s{upstream=\"%V\"} %ui\n",
                                 k ? "traffic_shift_upstream_live_servers"
                                   : "traffic_shift_upstream_servers",
                                 &ctx->ups[i], k ? live : total);
            }
        }
    }

    ctx->p = p;

    return NGX_OK;
}


/* label values: backslash, double quote and line feed are escaped */

ngx_int_t
ngx_http_traffic_shift_metrics_escape(ngx_pool_t *pool, ngx_str_t *src,
    ngx_str_t *dst)
{
    u_char  *p;
    size_t   i, n;

    n = 0;

    for (i = 0; i < src->len; i++) {
        if (src->data[i] == '\\' || src->data[i] == '"'
            || src->data[i] == '\n')
        {
            n++;
        }
    }

    if (n == 0) {
        *dst = *src;
        return NGX_OK;
    }

    p = ngx_pnalloc(pool, src->len + n);
    if (p == NULL) {
        return NGX_ERROR;
    }

    dst->data = p;

    for (i = 0; i < src->len; i++) {
        switch (src->data[i]) {

        case '\\':
            *p++ = '\\';
            *p++ = '\\';
            break;

        case '"':
            *p++ = '\\';
            *p++ = '"';
            break;

        case '\n':
            *p++ = '\\';
            *p++ = 'n';
            break;

        default:
            *p++ = src->data[i];
        }
    }

    dst->len = p - dst->data;

    return NGX_OK;
}
