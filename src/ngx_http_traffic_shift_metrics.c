
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


typedef struct {
    ngx_pool_t                              *pool;
    ngx_http_traffic_shift_main_conf_t      *mcf;
    ngx_http_traffic_shift_metrics_split_t  *splits;
    ngx_str_t                               *ups;
    u_char                                  *p;
    u_char                                  *last;
    /* GET /metrics?servers=off: no series per server */
    ngx_uint_t                               no_servers;
} ngx_http_traffic_shift_metrics_ctx_t;


static ngx_int_t ngx_http_traffic_shift_metrics_prepare(
    ngx_http_traffic_shift_metrics_ctx_t *ctx, size_t *size);
static void ngx_http_traffic_shift_metrics_pools(
    ngx_http_traffic_shift_metrics_ctx_t *ctx);
static void ngx_http_traffic_shift_metrics_times(
    ngx_http_traffic_shift_metrics_ctx_t *ctx);
static void ngx_http_traffic_shift_metrics_rollouts(
    ngx_http_traffic_shift_metrics_ctx_t *ctx);
static ngx_int_t ngx_http_traffic_shift_metrics_servers(
    ngx_http_traffic_shift_metrics_ctx_t *ctx);
static void ngx_http_traffic_shift_metrics_named(
    ngx_http_traffic_shift_metrics_ctx_t *ctx);
static void ngx_http_traffic_shift_metrics_named_times(
    ngx_http_traffic_shift_metrics_ctx_t *ctx);
static void ngx_http_traffic_shift_metrics_named_rollouts(
    ngx_http_traffic_shift_metrics_ctx_t *ctx);
static ngx_int_t ngx_http_traffic_shift_metrics_reasons(
    ngx_http_traffic_shift_metrics_ctx_t *ctx);
static ngx_int_t ngx_http_traffic_shift_metrics_escape(ngx_pool_t *pool,
    ngx_str_t *src, ngx_str_t *dst);


static const char  *ngx_http_traffic_shift_metrics_classes[] = {
    "1xx", "2xx", "3xx", "4xx", "5xx"
};

static const char  *ngx_http_traffic_shift_metrics_results[] = {
    "ok", "fail", "timeout"
};

static const char  *ngx_http_traffic_shift_metrics_ro_states[] = {
    "none", "progressing", "paused", "succeeded", "rolled_back", "aborted"
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

#define NGX_HTTP_TS_METRICS_EJECTIONS                                         \
    "# HELP traffic_shift_server_ejections_total Ejections of the server "   \
    "by outlier detection.\n"                                                \
    "# TYPE traffic_shift_server_ejections_total counter\n"

#define NGX_HTTP_TS_METRICS_DURATION                                          \
    "# HELP traffic_shift_upstream_response_duration_seconds Response "      \
    "times of the upstream attempts of the pool.\n"                          \
    "# TYPE traffic_shift_upstream_response_duration_seconds histogram\n"

#define NGX_HTTP_TS_METRICS_ERRORS                                            \
    "# HELP traffic_shift_upstream_errors_total Upstream attempts of the "   \
    "pool that failed: status 5xx, connect errors, timeouts, invalid "        \
    "headers.\n"                                                              \
    "# TYPE traffic_shift_upstream_errors_total counter\n"

#define NGX_HTTP_TS_METRICS_RO_STEP                                           \
    "# HELP traffic_shift_rollout_step Step of the upstream's rollout, "     \
    "from 1; 0 without one.\n"                                                \
    "# TYPE traffic_shift_rollout_step gauge\n"

#define NGX_HTTP_TS_METRICS_RO_STATE                                          \
    "# HELP traffic_shift_rollout_state 1 for the state of the upstream's "  \
    "last rollout.\n"                                                         \
    "# TYPE traffic_shift_rollout_state gauge\n"

#define NGX_HTTP_TS_METRICS_ROLLOUTS                                          \
    "# HELP traffic_shift_rollouts_total Rollouts ended, by result.\n"       \
    "# TYPE traffic_shift_rollouts_total counter\n"

/*
 * The families named by Prometheus' rules (0.2.0): the label
 * "traffic_shift" names a traffic_shift upstream, "upstream" an upstream{}
 * block only, ratios from 0 to 1, units in the names.  The families above
 * whose label "upstream" names a traffic_shift upstream are kept until
 * 0.3.0 (README.md, "Changes").
 */

#define NGX_HTTP_TS_METRICS_N_RATIO                                           \
    "# HELP traffic_shift_pool_weight_ratio Share of the requests sent to "  \
    "the pool, from 0 to 1.\n"                                                \
    "# TYPE traffic_shift_pool_weight_ratio gauge\n"

#define NGX_HTTP_TS_METRICS_N_INFO                                            \
    "# HELP traffic_shift_pool_info The upstream{} block of the pool.\n"     \
    "# TYPE traffic_shift_pool_info gauge\n"

#define NGX_HTTP_TS_METRICS_N_REQUESTS                                        \
    "# HELP traffic_shift_pool_requests_total Requests sent to the pool.\n"  \
    "# TYPE traffic_shift_pool_requests_total counter\n"

#define NGX_HTTP_TS_METRICS_N_RESPONSES                                       \
    "# HELP traffic_shift_pool_responses_total Responses of requests sent "  \
    "to the pool, by status class.\n"                                        \
    "# TYPE traffic_shift_pool_responses_total counter\n"

#define NGX_HTTP_TS_METRICS_N_GENERATION                                      \
    "# HELP traffic_shift_weights_generation Changes of the weights of the " \
    "traffic_shift upstream.\n"                                              \
    "# TYPE traffic_shift_weights_generation gauge\n"

#define NGX_HTTP_TS_METRICS_N_CHANGED                                         \
    "# HELP traffic_shift_last_change_timestamp_seconds When the weights "   \
    "last changed, in seconds since the epoch.\n"                            \
    "# TYPE traffic_shift_last_change_timestamp_seconds gauge\n"

#define NGX_HTTP_TS_METRICS_N_DURATION                                        \
    "# HELP traffic_shift_pool_upstream_response_duration_seconds Response " \
    "times of the upstream attempts of the pool.\n"                          \
    "# TYPE traffic_shift_pool_upstream_response_duration_seconds "          \
    "histogram\n"

#define NGX_HTTP_TS_METRICS_N_ERRORS                                          \
    "# HELP traffic_shift_pool_upstream_errors_total Upstream attempts of "  \
    "the pool that failed: status 5xx, connect errors, timeouts, invalid "   \
    "headers.\n"                                                             \
    "# TYPE traffic_shift_pool_upstream_errors_total counter\n"

#define NGX_HTTP_TS_METRICS_N_RO_STEP                                         \
    "# HELP traffic_shift_rollout_current_step Step of the rollout, from 1; " \
    "0 without one progressing or paused.\n"                                 \
    "# TYPE traffic_shift_rollout_current_step gauge\n"

#define NGX_HTTP_TS_METRICS_N_RO_STATE                                        \
    "# HELP traffic_shift_rollout_in_state 1 for the state of the last "     \
    "rollout.\n"                                                             \
    "# TYPE traffic_shift_rollout_in_state gauge\n"

#define NGX_HTTP_TS_METRICS_N_ROLLOUTS                                        \
    "# HELP traffic_shift_rollouts_ended_total Rollouts ended, by result.\n" \
    "# TYPE traffic_shift_rollouts_ended_total counter\n"

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

#define NGX_HTTP_TS_METRICS_N_UNSAVED                                         \
    "# HELP traffic_shift_state_unsaved_changes Changes not written to the " \
    "state file yet; stays above 0 when it cannot be written.\n"            \
    "# TYPE traffic_shift_state_unsaved_changes gauge\n"

#define NGX_HTTP_TS_METRICS_NAMED                                             \
    NGX_HTTP_TS_METRICS_N_RATIO NGX_HTTP_TS_METRICS_N_INFO                    \
    NGX_HTTP_TS_METRICS_N_REQUESTS NGX_HTTP_TS_METRICS_N_RESPONSES            \
    NGX_HTTP_TS_METRICS_N_GENERATION NGX_HTTP_TS_METRICS_N_CHANGED            \
    NGX_HTTP_TS_METRICS_N_DURATION NGX_HTTP_TS_METRICS_N_ERRORS               \
    NGX_HTTP_TS_METRICS_N_RO_STEP NGX_HTTP_TS_METRICS_N_RO_STATE              \
    NGX_HTTP_TS_METRICS_N_ROLLOUTS NGX_HTTP_TS_METRICS_N_SERVERS              \
    NGX_HTTP_TS_METRICS_N_LIVE NGX_HTTP_TS_METRICS_N_DOWN                     \
    NGX_HTTP_TS_METRICS_N_UNSAVED

#define NGX_HTTP_TS_METRICS_HEAD                                              \
    NGX_HTTP_TS_METRICS_WEIGHT NGX_HTTP_TS_METRICS_REQUESTS                   \
    NGX_HTTP_TS_METRICS_RESPONSES NGX_HTTP_TS_METRICS_GENERATION              \
    NGX_HTTP_TS_METRICS_UP NGX_HTTP_TS_METRICS_PROBES                         \
    NGX_HTTP_TS_METRICS_EJECTIONS                                             \
    NGX_HTTP_TS_METRICS_DURATION NGX_HTTP_TS_METRICS_ERRORS                   \
    NGX_HTTP_TS_METRICS_RO_STEP NGX_HTTP_TS_METRICS_RO_STATE                  \
    NGX_HTTP_TS_METRICS_ROLLOUTS NGX_HTTP_TS_METRICS_NAMED

#define ngx_http_traffic_shift_metrics_text(p, text)                          \
    ngx_cpymem(p, text, sizeof(text) - 1)


ngx_int_t
ngx_http_traffic_shift_metrics(ngx_http_request_t *r,
    ngx_http_traffic_shift_main_conf_t *mcf, ngx_str_t *body)
{
    size_t                                size;
    ngx_str_t                             arg;
    ngx_http_traffic_shift_metrics_ctx_t  ctx;

    ngx_memzero(&ctx, sizeof(ngx_http_traffic_shift_metrics_ctx_t));

    ctx.pool = r->pool;
    ctx.mcf = mcf;
    ctx.no_servers = ngx_http_arg(r, (u_char *) "servers", 7, &arg) == NGX_OK
                     && arg.len == 3 && ngx_strncmp(arg.data, "off", 3) == 0;

    ctx.splits = ngx_pcalloc(r->pool, (mcf->splits.nelts + 1)
                             * sizeof(ngx_http_traffic_shift_metrics_split_t));
    ctx.ups = ngx_pcalloc(r->pool, (mcf->upstreams.nelts + 1)
                                   * sizeof(ngx_str_t));

    if (ctx.splits == NULL || ctx.ups == NULL) {
        return NGX_ERROR;
    }

    size = sizeof(NGX_HTTP_TS_METRICS_HEAD) - 1;

    if (ngx_http_traffic_shift_metrics_prepare(&ctx, &size) != NGX_OK) {
        return NGX_ERROR;
    }

    ctx.p = ngx_pnalloc(r->pool, size);
    if (ctx.p == NULL) {
        return NGX_ERROR;
    }

    body->data = ctx.p;
    ctx.last = ctx.p + size;

    ngx_http_traffic_shift_metrics_pools(&ctx);
    ngx_http_traffic_shift_metrics_times(&ctx);
    ngx_http_traffic_shift_metrics_rollouts(&ctx);

    if (ngx_http_traffic_shift_metrics_servers(&ctx) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_http_traffic_shift_metrics_named(&ctx);
    ngx_http_traffic_shift_metrics_named_times(&ctx);
    ngx_http_traffic_shift_metrics_named_rollouts(&ctx);

    if (ngx_http_traffic_shift_metrics_reasons(&ctx) != NGX_OK) {
        return NGX_ERROR;
    }

    body->len = ctx.p - body->data;

    return NGX_OK;
}


/*
 * A consistent copy of each upstream's weights (the counters are read as
 * they go), the escaped names, and the size of the body.
 */

static ngx_int_t
ngx_http_traffic_shift_metrics_prepare(
    ngx_http_traffic_shift_metrics_ctx_t *ctx, size_t *size)
{
    ngx_uint_t                               i, j;
    ngx_http_traffic_shift_pool_t           *pool;
    ngx_http_traffic_shift_split_t         **splitp, *split;
    ngx_http_traffic_shift_upstream_t      **upsp, *ups;
    ngx_http_traffic_shift_main_conf_t      *mcf;
    ngx_http_traffic_shift_metrics_split_t  *ms;

    mcf = ctx->mcf;
    splitp = mcf->splits.elts;

    for (i = 0; i < mcf->splits.nelts; i++) {
        split = splitp[i];
        ms = &ctx->splits[i];

        ms->rc = (mcf->sh && split->sh)
                 ? ngx_http_traffic_shift_zone_read(split, &ms->w)
                 : NGX_DECLINED;

        if (ms->rc != NGX_OK) {
            /* a reload changed this upstream's pools: skipped */
            continue;
        }

        if (ngx_http_traffic_shift_metrics_escape(ctx->pool, &split->name,
                                                  &ms->name)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        pool = split->pools.elts;

        for (j = 0; j < split->pools.nelts; j++) {
            /*
             * weight, requests, responses by class, errors, and the
             * histogram: buckets, sum, count; twice (the named families);
             * and the pool's info, with its upstream{} block, escaped
             */
            *size += 2 * (2 + NGX_HTTP_TS_CLASSES + 1 + NGX_HTTP_TS_BUCKETS
                          + 2)
                     * (NGX_HTTP_TS_METRICS_LINE + ms->name.len
                        + pool[j].name.len)
                     + NGX_HTTP_TS_METRICS_LINE + ms->name.len
                     + pool[j].name.len + 2 * pool[j].upstream.len;
        }

        /*
         * generation; rollout step, states, results; twice; the time of
         * the last change
         */
        *size += (2 * (2 + NGX_HTTP_TS_RO_STATES + 3) + 1)
                 * (NGX_HTTP_TS_METRICS_LINE + ms->name.len);
    }

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

    /* the state file's unsaved changes */
    *size += NGX_HTTP_TS_METRICS_LINE;

    return NGX_OK;
}


/* the families of the traffic_shift upstreams, each with HELP and TYPE */

static void
ngx_http_traffic_shift_metrics_pools(ngx_http_traffic_shift_metrics_ctx_t *ctx)
{
    u_char                                  *p, *last, weight[16];
    ngx_str_t                                name;
    ngx_uint_t                               i, j, k, n;
    ngx_http_traffic_shift_pool_t           *pool;
    ngx_http_traffic_shift_split_t         **splitp;
    ngx_http_traffic_shift_sh_split_t       *rec;
    ngx_http_traffic_shift_metrics_split_t  *ms;

    p = ctx->p;
    last = ctx->last;
    splitp = ctx->mcf->splits.elts;
    n = ctx->mcf->splits.nelts;
    ms = ctx->splits;

    p = ngx_http_traffic_shift_metrics_text(p, NGX_HTTP_TS_METRICS_WEIGHT);

    for (i = 0; i < n; i++) {
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

    for (i = 0; i < n; i++) {
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

    for (i = 0; i < n; i++) {
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

    for (i = 0; i < n; i++) {
        if (ms[i].rc != NGX_OK) {
            continue;
        }

        p = ngx_slprintf(p, last,
                         "traffic_shift_generation{upstream=\"%V\"} %ui\n",
                         &ms[i].name, ms[i].w.generation);
    }

    ctx->p = p;
}


/* the response times and errors of the pools' upstream attempts */

static void
ngx_http_traffic_shift_metrics_times(ngx_http_traffic_shift_metrics_ctx_t *ctx)
{
    u_char                                  *p, *last;
    ngx_uint_t                               i, j, b, n;
    ngx_msec_t                               le;
    ngx_atomic_uint_t                        count, sum;
    ngx_http_traffic_shift_pool_t           *pool;
    ngx_http_traffic_shift_split_t         **splitp;
    ngx_http_traffic_shift_sh_pool_t        *shp;
    ngx_http_traffic_shift_metrics_split_t  *ms;

    p = ctx->p;
    last = ctx->last;
    splitp = ctx->mcf->splits.elts;
    n = ctx->mcf->splits.nelts;
    ms = ctx->splits;

    p = ngx_http_traffic_shift_metrics_text(p, NGX_HTTP_TS_METRICS_DURATION);

    for (i = 0; i < n; i++) {
        if (ms[i].rc != NGX_OK) {
            continue;
        }

        pool = splitp[i]->pools.elts;

        for (j = 0; j < splitp[i]->pools.nelts; j++) {
            shp = &splitp[i]->sh->pools[j];
            count = 0;

            for (b = 0; b < NGX_HTTP_TS_BUCKETS; b++) {
                count += shp->buckets[b];
                le = ngx_http_traffic_shift_buckets[b];

                if (b == NGX_HTTP_TS_BUCKETS - 1) {
                    p = ngx_slprintf(p, last,
                             "traffic_shift_upstream_response_duration_"
                             "seconds_bucket{upstream=\"%V\",pool=\"%V\","
                             "le=\"+Inf\"} %uA\n", &ms[i].name,
                             &pool[j].name, count);
                    continue;
                }

                p = ngx_slprintf(p, last,
                             "traffic_shift_upstream_response_duration_"
                             "seconds_bucket{upstream=\"%V\",pool=\"%V\","
                             "le=\"%M.%03M\"} %uA\n", &ms[i].name,
                             &pool[j].name, le / 1000, le % 1000, count);
            }

            sum = shp->time_sum;

            p = ngx_slprintf(p, last,
                             "traffic_shift_upstream_response_duration_"
                             "seconds_sum{upstream=\"%V\",pool=\"%V\"} "
                             "%uA.%03uA\n"
                             "traffic_shift_upstream_response_duration_"
                             "seconds_count{upstream=\"%V\",pool=\"%V\"} "
                             "%uA\n", &ms[i].name, &pool[j].name,
                             sum / 1000, sum % 1000, &ms[i].name,
                             &pool[j].name, count);
        }
    }

    p = ngx_http_traffic_shift_metrics_text(p, NGX_HTTP_TS_METRICS_ERRORS);

    for (i = 0; i < n; i++) {
        if (ms[i].rc != NGX_OK) {
            continue;
        }

        pool = splitp[i]->pools.elts;

        for (j = 0; j < splitp[i]->pools.nelts; j++) {
            p = ngx_slprintf(p, last,
                             "traffic_shift_upstream_errors_total{upstream="
                             "\"%V\",pool=\"%V\"} %uA\n", &ms[i].name,
                             &pool[j].name, splitp[i]->sh->pools[j].errors);
        }
    }

    ctx->p = p;
}


/* the rollouts: words written under the mutex, each read as it is */

static void
ngx_http_traffic_shift_metrics_rollouts(
    ngx_http_traffic_shift_metrics_ctx_t *ctx)
{
    u_char                                  *p, *last;
    ngx_uint_t                               i, k, n, state;
    ngx_http_traffic_shift_split_t         **splitp;
    ngx_http_traffic_shift_sh_rollout_t     *ro;
    ngx_http_traffic_shift_metrics_split_t  *ms;

    p = ctx->p;
    last = ctx->last;
    splitp = ctx->mcf->splits.elts;
    n = ctx->mcf->splits.nelts;
    ms = ctx->splits;

    p = ngx_http_traffic_shift_metrics_text(p, NGX_HTTP_TS_METRICS_RO_STEP);

    for (i = 0; i < n; i++) {
        if (ms[i].rc != NGX_OK) {
            continue;
        }

        ro = &splitp[i]->sh->rollout;
        state = ro->state;

        p = ngx_slprintf(p, last,
                         "traffic_shift_rollout_step{upstream=\"%V\"} %ui\n",
                         &ms[i].name,
                         (state == NGX_HTTP_TS_RO_PROGRESSING
                          || state == NGX_HTTP_TS_RO_PAUSED)
                         ? ro->step + 1 : 0);
    }

    p = ngx_http_traffic_shift_metrics_text(p, NGX_HTTP_TS_METRICS_RO_STATE);

    for (i = 0; i < n; i++) {
        if (ms[i].rc != NGX_OK) {
            continue;
        }

        state = splitp[i]->sh->rollout.state;

        for (k = 0; k < NGX_HTTP_TS_RO_STATES; k++) {
            p = ngx_slprintf(p, last,
                             "traffic_shift_rollout_state{upstream=\"%V\","
                             "state=\"%s\"} %d\n", &ms[i].name,
                             ngx_http_traffic_shift_metrics_ro_states[k],
                             k == state ? 1 : 0);
        }
    }

    p = ngx_http_traffic_shift_metrics_text(p, NGX_HTTP_TS_METRICS_ROLLOUTS);

    for (i = 0; i < n; i++) {
        if (ms[i].rc != NGX_OK) {
            continue;
        }

        ro = &splitp[i]->sh->rollout;

        for (k = NGX_HTTP_TS_RO_SUCCEEDED; k < NGX_HTTP_TS_RO_STATES; k++) {
            p = ngx_slprintf(p, last,
                             "traffic_shift_rollouts_total{upstream=\"%V\","
                             "result=\"%s\"} %ui\n", &ms[i].name,
                             ngx_http_traffic_shift_metrics_ro_states[k],
                             ro->results[k]);
        }
    }

    ctx->p = p;
}


/*
 * The families of the servers.  A server listed twice in an upstream{}
 * block is one server of the zone: it has one series.
 */

static ngx_int_t
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
                             ngx_http_traffic_shift_metrics_results[k],
                             server->sh->probes[k]);
                }
            }
        }

        ctx->p = p;
    }

    return NGX_OK;
}


/* the named families of the traffic_shift upstreams and their pools */

static void
ngx_http_traffic_shift_metrics_named(ngx_http_traffic_shift_metrics_ctx_t *ctx)
{
    u_char                                  *p, *last;
    ngx_str_t                                ups;
    ngx_uint_t                               i, j, k, n, w;
    ngx_http_traffic_shift_pool_t           *pool;
    ngx_http_traffic_shift_split_t         **splitp;
    ngx_http_traffic_shift_sh_split_t       *rec;
    ngx_http_traffic_shift_metrics_split_t  *ms;

    p = ctx->p;
    last = ctx->last;
    splitp = ctx->mcf->splits.elts;
    n = ctx->mcf->splits.nelts;
    ms = ctx->splits;

    p = ngx_http_traffic_shift_metrics_text(p, NGX_HTTP_TS_METRICS_N_RATIO);

    for (i = 0; i < n; i++) {
        pool = splitp[i]->pools.elts;

        for (j = 0; ms[i].rc == NGX_OK && j < splitp[i]->pools.nelts; j++) {
            w = ms[i].w.weights[j];
            p = ngx_slprintf(p, last, "traffic_shift_pool_weight_ratio{"
                             "traffic_shift=\"%V\",pool=\"%V\"} %ui.%04ui\n",
                             &ms[i].name, &pool[j].name,
                             w / NGX_HTTP_TS_TOTAL, w % NGX_HTTP_TS_TOTAL);
        }
    }

    p = ngx_http_traffic_shift_metrics_text(p, NGX_HTTP_TS_METRICS_N_INFO);

    for (i = 0; i < n; i++) {
        pool = splitp[i]->pools.elts;

        for (j = 0; ms[i].rc == NGX_OK && j < splitp[i]->pools.nelts; j++) {
            if (ngx_http_traffic_shift_metrics_escape(ctx->pool,
                                                      &pool[j].upstream, &ups)
                != NGX_OK)
            {
                ups.len = 0;
            }

            p = ngx_slprintf(p, last, "traffic_shift_pool_info{"
                             "traffic_shift=\"%V\",pool=\"%V\","
                             "upstream=\"%V\"} 1\n",
                             &ms[i].name, &pool[j].name, &ups);
        }
    }

    p = ngx_http_traffic_shift_metrics_text(p,
                                            NGX_HTTP_TS_METRICS_N_REQUESTS);

    for (i = 0; i < n; i++) {
        pool = splitp[i]->pools.elts;
        rec = splitp[i]->sh;

        for (j = 0; ms[i].rc == NGX_OK && j < splitp[i]->pools.nelts; j++) {
            p = ngx_slprintf(p, last, "traffic_shift_pool_requests_total{"
                             "traffic_shift=\"%V\",pool=\"%V\"} %uA\n",
                             &ms[i].name, &pool[j].name,
                             rec->pools[j].requests);
        }
    }

    p = ngx_http_traffic_shift_metrics_text(p,
                                            NGX_HTTP_TS_METRICS_N_RESPONSES);

    for (i = 0; i < n; i++) {
        pool = splitp[i]->pools.elts;
        rec = splitp[i]->sh;

        for (j = 0; ms[i].rc == NGX_OK && j < splitp[i]->pools.nelts; j++) {
            for (k = 0; k < NGX_HTTP_TS_CLASSES; k++) {
                p = ngx_slprintf(p, last, "traffic_shift_pool_responses_total{"
                             "traffic_shift=\"%V\",pool=\"%V\",code=\"%s\"} "
                             "%uA\n", &ms[i].name, &pool[j].name,
                             ngx_http_traffic_shift_metrics_classes[k],
                             rec->pools[j].responses[k]);
            }
        }
    }

    p = ngx_http_traffic_shift_metrics_text(p,
                                            NGX_HTTP_TS_METRICS_N_GENERATION);

    for (i = 0; i < n; i++) {
        if (ms[i].rc == NGX_OK) {
            p = ngx_slprintf(p, last, "traffic_shift_weights_generation{"
                             "traffic_shift=\"%V\"} %ui\n",
                             &ms[i].name, ms[i].w.generation);
        }
    }

    p = ngx_http_traffic_shift_metrics_text(p, NGX_HTTP_TS_METRICS_N_CHANGED);

    for (i = 0; i < n; i++) {
        if (ms[i].rc == NGX_OK) {
            p = ngx_slprintf(p, last, "traffic_shift_last_change_timestamp_"
                             "seconds{traffic_shift=\"%V\"} %T\n",
                             &ms[i].name, ms[i].w.updated);
        }
    }

    ctx->p = p;
}


static void
ngx_http_traffic_shift_metrics_named_times(
    ngx_http_traffic_shift_metrics_ctx_t *ctx)
{
    u_char                                  *p, *last;
    ngx_uint_t                               i, j, b, n;
    ngx_msec_t                               le;
    ngx_atomic_uint_t                        count, sum;
    ngx_http_traffic_shift_pool_t           *pool;
    ngx_http_traffic_shift_split_t         **splitp;
    ngx_http_traffic_shift_sh_pool_t        *shp;
    ngx_http_traffic_shift_metrics_split_t  *ms;

    p = ctx->p;
    last = ctx->last;
    splitp = ctx->mcf->splits.elts;
    n = ctx->mcf->splits.nelts;
    ms = ctx->splits;

    p = ngx_http_traffic_shift_metrics_text(p,
                                            NGX_HTTP_TS_METRICS_N_DURATION);

    for (i = 0; i < n; i++) {
        pool = splitp[i]->pools.elts;

        for (j = 0; ms[i].rc == NGX_OK && j < splitp[i]->pools.nelts; j++) {
            shp = &splitp[i]->sh->pools[j];
            count = 0;

            for (b = 0; b < NGX_HTTP_TS_BUCKETS; b++) {
                count += shp->buckets[b];
                le = ngx_http_traffic_shift_buckets[b];

                if (b == NGX_HTTP_TS_BUCKETS - 1) {
                    p = ngx_slprintf(p, last,
                             "traffic_shift_pool_upstream_response_duration_"
                             "seconds_bucket{traffic_shift=\"%V\",pool=\"%V\","
                             "le=\"+Inf\"} %uA\n", &ms[i].name,
                             &pool[j].name, count);
                    continue;
                }

                p = ngx_slprintf(p, last,
                             "traffic_shift_pool_upstream_response_duration_"
                             "seconds_bucket{traffic_shift=\"%V\",pool=\"%V\","
                             "le=\"%M.%03M\"} %uA\n", &ms[i].name,
                             &pool[j].name, le / 1000, le % 1000, count);
            }

            sum = shp->time_sum;

            p = ngx_slprintf(p, last,
                             "traffic_shift_pool_upstream_response_duration_"
                             "seconds_sum{traffic_shift=\"%V\",pool=\"%V\"} "
                             "%uA.%03uA\n"
                             "traffic_shift_pool_upstream_response_duration_"
                             "seconds_count{traffic_shift=\"%V\",pool=\"%V\"} "
                             "%uA\n", &ms[i].name, &pool[j].name,
                             sum / 1000, sum % 1000, &ms[i].name,
                             &pool[j].name, count);
        }
    }

    p = ngx_http_traffic_shift_metrics_text(p, NGX_HTTP_TS_METRICS_N_ERRORS);

    for (i = 0; i < n; i++) {
        pool = splitp[i]->pools.elts;

        for (j = 0; ms[i].rc == NGX_OK && j < splitp[i]->pools.nelts; j++) {
            p = ngx_slprintf(p, last, "traffic_shift_pool_upstream_errors_"
                             "total{traffic_shift=\"%V\",pool=\"%V\"} %uA\n",
                             &ms[i].name, &pool[j].name,
                             splitp[i]->sh->pools[j].errors);
        }
    }

    ctx->p = p;
}


static void
ngx_http_traffic_shift_metrics_named_rollouts(
    ngx_http_traffic_shift_metrics_ctx_t *ctx)
{
    u_char                                  *p, *last;
    ngx_uint_t                               i, k, n, state;
    ngx_http_traffic_shift_split_t         **splitp;
    ngx_http_traffic_shift_sh_rollout_t     *ro;
    ngx_http_traffic_shift_metrics_split_t  *ms;

    p = ctx->p;
    last = ctx->last;
    splitp = ctx->mcf->splits.elts;
    n = ctx->mcf->splits.nelts;
    ms = ctx->splits;

    p = ngx_http_traffic_shift_metrics_text(p, NGX_HTTP_TS_METRICS_N_RO_STEP);

    for (i = 0; i < n; i++) {
        if (ms[i].rc != NGX_OK) {
            continue;
        }

        ro = &splitp[i]->sh->rollout;
        state = ro->state;

        p = ngx_slprintf(p, last, "traffic_shift_rollout_current_step{"
                         "traffic_shift=\"%V\"} %ui\n", &ms[i].name,
                         (state == NGX_HTTP_TS_RO_PROGRESSING
                          || state == NGX_HTTP_TS_RO_PAUSED)
                         ? ro->step + 1 : 0);
    }

    p = ngx_http_traffic_shift_metrics_text(p,
                                            NGX_HTTP_TS_METRICS_N_RO_STATE);

    for (i = 0; i < n; i++) {
        state = (ms[i].rc == NGX_OK) ? splitp[i]->sh->rollout.state : 0;

        for (k = 0; ms[i].rc == NGX_OK && k < NGX_HTTP_TS_RO_STATES; k++) {
            p = ngx_slprintf(p, last, "traffic_shift_rollout_in_state{"
                             "traffic_shift=\"%V\",state=\"%s\"} %d\n",
                             &ms[i].name,
                             ngx_http_traffic_shift_metrics_ro_states[k],
                             k == state ? 1 : 0);
        }
    }

    p = ngx_http_traffic_shift_metrics_text(p,
                                            NGX_HTTP_TS_METRICS_N_ROLLOUTS);

    for (i = 0; i < n; i++) {
        if (ms[i].rc != NGX_OK) {
            continue;
        }

        ro = &splitp[i]->sh->rollout;

        for (k = NGX_HTTP_TS_RO_SUCCEEDED; k < NGX_HTTP_TS_RO_STATES; k++) {
            p = ngx_slprintf(p, last, "traffic_shift_rollouts_ended_total{"
                             "traffic_shift=\"%V\",result=\"%s\"} %ui\n",
                             &ms[i].name,
                             ngx_http_traffic_shift_metrics_ro_states[k],
                             ro->results[k]);
        }
    }

    ctx->p = p;
}


/*
 * Servers and live servers of each upstream{} block (always); each
 * server's reasons to be down (not with ?servers=off); the state file.
 */

static ngx_int_t
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

    p = ngx_http_traffic_shift_metrics_text(p, NGX_HTTP_TS_METRICS_N_UNSAVED);

    if (ctx->mcf->sh && ctx->mcf->state_file.len) {
        p = ngx_slprintf(p, last, "traffic_shift_state_unsaved_changes %uA\n",
                         ctx->mcf->sh->version > ctx->mcf->sh->saved
                         ? ctx->mcf->sh->version - ctx->mcf->sh->saved : 0);
    }

    ctx->p = p;

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
