
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#include "ngx_http_traffic_shift_metrics.h"
#include "ngx_http_traffic_shift_zone.h"
#include "ngx_http_traffic_shift_lib.h"


/*
 * GET /metrics: the Prometheus text exposition format 0.0.4.  The body is
 * built in one buffer sized beforehand: a sample line is at most
 * NGX_HTTP_TS_METRICS_LINE bytes besides its escaped label values.
 */


#define NGX_HTTP_TS_METRICS_LINE  (96 + NGX_ATOMIC_T_LEN)


typedef struct {
    ngx_str_t                          name;
    ngx_int_t                          rc;
    ngx_http_traffic_shift_weights_t   w;
} ngx_http_traffic_shift_metrics_split_t;


static ngx_int_t ngx_http_traffic_shift_metrics_escape(ngx_pool_t *pool,
    ngx_str_t *src, ngx_str_t *dst);


static const char  *ngx_http_traffic_shift_metrics_classes[] = {
    "1xx", "2xx", "3xx", "4xx", "5xx"
};

static const char  *ngx_http_traffic_shift_metrics_results[] = {
    "ok", "fail", "timeout"
};


#define NGX_HTTP_TS_METRICS_WEIGHT                                            \
    "# HELP traffic_shift_weight Share of the requests sent to the pool, "   \
    "in percent.\n"                                                           \
    "# TYPE traffic_shift_weight gauge\n"

#define NGX_HTTP_TS_METRICS_REQUESTS                                          \
    "# HELP traffic_shift_requests_total Requests sent to the pool.\n"       \
    "# TYPE traffic_shift_requests_total counter\n"

#define NGX_HTTP_TS_METRICS_RESPONSES                                         \
    "# HELP traffic_shift_responses_total Responses of requests sent to "    \
    "the pool, by status class.\n"                                            \
    "# TYPE traffic_shift_responses_total counter\n"

#define NGX_HTTP_TS_METRICS_GENERATION                                        \
    "# HELP traffic_shift_generation Changes of the weights of the "         \
    "upstream.\n"                                                             \
    "# TYPE traffic_shift_generation gauge\n"

#define NGX_HTTP_TS_METRICS_UP                                                \
    "# HELP traffic_shift_server_up 1 if the server takes requests: not "    \
    "down in the configuration, by health checks or by an administrator.\n"  \
    "# TYPE traffic_shift_server_up gauge\n"

#define NGX_HTTP_TS_METRICS_PROBES                                            \
    "# HELP traffic_shift_probes_total Health probes of the server, by "     \
    "result.\n"                                                               \
    "# TYPE traffic_shift_probes_total counter\n"

#define NGX_HTTP_TS_METRICS_HEAD                                              \
    NGX_HTTP_TS_METRICS_WEIGHT NGX_HTTP_TS_METRICS_REQUESTS                   \
    NGX_HTTP_TS_METRICS_RESPONSES NGX_HTTP_TS_METRICS_GENERATION              \
    NGX_HTTP_TS_METRICS_UP NGX_HTTP_TS_METRICS_PROBES

#define ngx_http_traffic_shift_metrics_text(p, text)                          \
    ngx_cpymem(p, text, sizeof(text) - 1)


ngx_int_t
ngx_http_traffic_shift_metrics(ngx_http_request_t *r,
    ngx_http_traffic_shift_main_conf_t *mcf, ngx_str_t *body)
{
    u_char                                  *p, *last, weight[16];
    size_t                                   size;
    ngx_str_t                               *ups_name, *server_name, name;
    ngx_uint_t                               i, j, k, n, nservers;
    ngx_http_traffic_shift_pool_t           *pool;
    ngx_http_traffic_shift_split_t         **splitp, *split;
    ngx_http_traffic_shift_server_t         *server;
    ngx_http_traffic_shift_sh_split_t       *rec;
    ngx_http_traffic_shift_upstream_t      **upsp, *ups;
    ngx_http_traffic_shift_metrics_split_t  *ms;

    splitp = mcf->splits.elts;
    upsp = mcf->upstreams.elts;

    ms = ngx_pcalloc(r->pool, (mcf->splits.nelts + 1)
                              * sizeof(ngx_http_traffic_shift_metrics_split_t));
    ups_name = ngx_pcalloc(r->pool, (mcf->upstreams.nelts + 1)
                                    * sizeof(ngx_str_t));

    if (ms == NULL || ups_name == NULL) {
        return NGX_ERROR;
    }

    size = sizeof(NGX_HTTP_TS_METRICS_HEAD) - 1;

    /* a consistent copy of the weights; the counters are read as they go */

    for (i = 0; i < mcf->splits.nelts; i++) {
        split = splitp[i];

        if (mcf->sh == NULL || split->sh == NULL) {
            ms[i].rc = NGX_DECLINED;
            continue;
        }

        for (n = 0; n < 100; n++) {
            ms[i].rc = ngx_http_traffic_shift_zone_read(split, &ms[i].w);

            if (ms[i].rc != NGX_AGAIN) {
                break;
            }
        }

        if (ms[i].rc != NGX_OK) {
            /* a reload changed this upstream's pools: skipped */
            continue;
        }

        if (ngx_http_traffic_shift_metrics_escape(r->pool, &split->name,
                                                  &ms[i].name)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        pool = split->pools.elts;

        for (j = 0; j < split->pools.nelts; j++) {
            /* weight, requests, responses by class */
            size += (2 + NGX_HTTP_TS_CLASSES)
                    * (NGX_HTTP_TS_METRICS_LINE + ms[i].name.len
                       + pool[j].name.len);
        }

        size += NGX_HTTP_TS_METRICS_LINE + ms[i].name.len;
    }

    nservers = 0;

    for (i = 0; mcf->sh && i < mcf->upstreams.nelts; i++) {
        ups = upsp[i];

        if (ups->nservers == 0 || ups->servers[0].sh == NULL) {
            continue;
        }

        if (ngx_http_traffic_shift_metrics_escape(r->pool, &ups->uscf->host,
                                                  &ups_name[i])
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        nservers += ups->nservers;

        for (j = 0; j < ups->nservers; j++) {
            /* up, and probes by result when checked */
            size += (1 + (ups->health ? NGX_HTTP_TS_PROBE_RESULTS : 0))
                    * (NGX_HTTP_TS_METRICS_LINE + ups_name[i].len
                       + 2 * ups->servers[j].name.len);
        }
    }

    server_name = ngx_pcalloc(r->pool, (nservers + 1) * sizeof(ngx_str_t));
    if (server_name == NULL) {
        return NGX_ERROR;
    }

    p = ngx_pnalloc(r->pool, size);
    if (p == NULL) {
        return NGX_ERROR;
    }

    body->data = p;
    last = p + size;

    /* the families in turn, each with its HELP and TYPE lines */

    p = ngx_http_traffic_shift_metrics_text(p, NGX_HTTP_TS_METRICS_WEIGHT);

    for (i = 0; i < mcf->splits.nelts; i++) {
        if (ms[i].rc != NGX_OK) {
            continue;
        }

        pool = splitp[i]->pools.elts;

        for (j = 0; j < splitp[i]->pools.nelts; j++) {
            name.data = weight;
            name.len = ngx_http_traffic_shift_print_weight(weight,
                                                   ms[i].w.weights[j])
                       - weight;

            p = ngx_slprintf(p, last, "traffic_shift_weight{upstream=\"%V\","
                             "pool=\"%V\"} %V\n", &ms[i].name, &pool[j].name,
                             &name);
        }
    }

    p = ngx_http_traffic_shift_metrics_text(p, NGX_HTTP_TS_METRICS_REQUESTS);

    for (i = 0; i < mcf->splits.nelts; i++) {
        if (ms[i].rc != NGX_OK) {
            continue;
        }

        pool = splitp[i]->pools.elts;
        rec = splitp[i]->sh;

        for (j = 0; j < splitp[i]->pools.nelts; j++) {
            p = ngx_slprintf(p, last,
                             "traffic_shift_requests_total{upstream=\"%V\","
                             "pool=\"%V\"} %uA\n", &ms[i].name, &pool[j].name,
                             rec->pools[j].requests);
        }
    }

    p = ngx_http_traffic_shift_metrics_text(p,
                                            NGX_HTTP_TS_METRICS_RESPONSES);

    for (i = 0; i < mcf->splits.nelts; i++) {
        if (ms[i].rc != NGX_OK) {
            continue;
        }

        pool = splitp[i]->pools.elts;
        rec = splitp[i]->sh;

        for (j = 0; j < splitp[i]->pools.nelts; j++) {
            for (k = 0; k < NGX_HTTP_TS_CLASSES; k++) {
                p = ngx_slprintf(p, last,
                             "traffic_shift_responses_total{upstream=\"%V\","
                             "pool=\"%V\",code=\"%s\"} %uA\n", &ms[i].name,
                             &pool[j].name,
                             ngx_http_traffic_shift_metrics_classes[k],
                             rec->pools[j].responses[k]);
            }
        }
    }

    p = ngx_http_traffic_shift_metrics_text(p,
                                            NGX_HTTP_TS_METRICS_GENERATION);

    for (i = 0; i < mcf->splits.nelts; i++) {
        if (ms[i].rc != NGX_OK) {
            continue;
        }

        p = ngx_slprintf(p, last,
                         "traffic_shift_generation{upstream=\"%V\"} %ui\n",
                         &ms[i].name, ms[i].w.generation);
    }

    p = ngx_http_traffic_shift_metrics_text(p, NGX_HTTP_TS_METRICS_UP);

    n = 0;

    for (i = 0; i < mcf->upstreams.nelts; i++) {
        ups = upsp[i];

        if (ups_name[i].data == NULL) {
            continue;
        }

        for (j = 0; j < ups->nservers; j++) {
            server = &ups->servers[j];

            if (ngx_http_traffic_shift_metrics_escape(r->pool, &server->name,
                                                      &server_name[n])
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            p = ngx_slprintf(p, last,
                             "traffic_shift_server_up{upstream=\"%V\","
                             "server=\"%V\"} %d\n", &ups_name[i],
                             &server_name[n],
                             ngx_http_traffic_shift_zone_server_live(server)
                             ? 1 : 0);
            n++;
        }
    }

    p = ngx_http_traffic_shift_metrics_text(p, NGX_HTTP_TS_METRICS_PROBES);

    n = 0;

    for (i = 0; i < mcf->upstreams.nelts; i++) {
        ups = upsp[i];

        if (ups_name[i].data == NULL) {
            continue;
        }

        for (j = 0; j < ups->nservers; j++, n++) {

            if (ups->health == NULL) {
                continue;
            }

            for (k = 0; k < NGX_HTTP_TS_PROBE_RESULTS; k++) {
                p = ngx_slprintf(p, last,
                             "traffic_shift_probes_total{upstream=\"%V\","
                             "server=\"%V\",result=\"%s\"} %uA\n",
                             &ups_name[i], &server_name[n],
                             ngx_http_traffic_shift_metrics_results[k],
                             ups->servers[j].sh->probes[k]);
            }
        }
    }

    body->len = p - body->data;

    return NGX_OK;
}


/* label values: backslash, double quote and line feed are escaped */

static ngx_int_t
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
