
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#include "ngx_http_traffic_shift_metrics.h"
#include "ngx_http_traffic_shift_zone.h"
#include "ngx_http_traffic_shift_lib.h"


/*
 * GET /metrics: the Prometheus text exposition format 0.0.4.  Here the
 * families of the traffic_shift upstreams and their pools; those of the
 * upstream{} blocks and their servers are in
 * ngx_http_traffic_shift_metrics_servers.c.
 */


/*
 * A family: its HELP and TYPE lines, its name (the prefix of the names of
 * a histogram), and for a counter of the pools the offset of the counter
 * in ngx_http_traffic_shift_sh_pool_t.
 */

typedef struct {
    ngx_str_t                                 head;
    char                                     *name;
    size_t                                    offset;
} ngx_http_traffic_shift_metrics_family_t;


/*
 * The families of the traffic_shift upstreams written twice: under the
 * names of 0.1, label "upstream", and under those of 0.2, label
 * "traffic_shift".
 */

typedef struct {
    char                                     *label;
    ngx_http_traffic_shift_metrics_family_t   requests;
    ngx_http_traffic_shift_metrics_family_t   responses;
    ngx_http_traffic_shift_metrics_family_t   generation;
    ngx_http_traffic_shift_metrics_family_t   duration;
    ngx_http_traffic_shift_metrics_family_t   errors;
    ngx_http_traffic_shift_metrics_family_t   step;
    ngx_http_traffic_shift_metrics_family_t   state;
    ngx_http_traffic_shift_metrics_family_t   ended;
} ngx_http_traffic_shift_metrics_names_t;


static ngx_int_t ngx_http_traffic_shift_metrics_prepare(
    ngx_http_traffic_shift_metrics_ctx_t *ctx, size_t *size);
static void ngx_http_traffic_shift_metrics_weights(
    ngx_http_traffic_shift_metrics_ctx_t *ctx);
static void ngx_http_traffic_shift_metrics_ratios(
    ngx_http_traffic_shift_metrics_ctx_t *ctx);
static void ngx_http_traffic_shift_metrics_counter(
    ngx_http_traffic_shift_metrics_ctx_t *ctx,
    ngx_http_traffic_shift_metrics_family_t *family, char *label);
static void ngx_http_traffic_shift_metrics_responses(
    ngx_http_traffic_shift_metrics_ctx_t *ctx,
    ngx_http_traffic_shift_metrics_family_t *family, char *label);
static void ngx_http_traffic_shift_metrics_generation(
    ngx_http_traffic_shift_metrics_ctx_t *ctx,
    ngx_http_traffic_shift_metrics_family_t *family, char *label);
static void ngx_http_traffic_shift_metrics_changed(
    ngx_http_traffic_shift_metrics_ctx_t *ctx);
static void ngx_http_traffic_shift_metrics_histogram(
    ngx_http_traffic_shift_metrics_ctx_t *ctx,
    ngx_http_traffic_shift_metrics_family_t *family, char *label);
static void ngx_http_traffic_shift_metrics_step(
    ngx_http_traffic_shift_metrics_ctx_t *ctx,
    ngx_http_traffic_shift_metrics_family_t *family, char *label);
static void ngx_http_traffic_shift_metrics_states(
    ngx_http_traffic_shift_metrics_ctx_t *ctx,
    ngx_http_traffic_shift_metrics_family_t *family, char *label);
static void ngx_http_traffic_shift_metrics_results(
    ngx_http_traffic_shift_metrics_ctx_t *ctx,
    ngx_http_traffic_shift_metrics_family_t *family, char *label);
static void ngx_http_traffic_shift_metrics_unsaved(
    ngx_http_traffic_shift_metrics_ctx_t *ctx);


static const char  *ngx_http_traffic_shift_metrics_classes[] = {
    "1xx", "2xx", "3xx", "4xx", "5xx"
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

#define NGX_HTTP_TS_METRICS_N_UNSAVED                                         \
    "# HELP traffic_shift_state_unsaved_changes Changes not written to the " \
    "state file yet; stays above 0 when it cannot be written.\n"            \
    "# TYPE traffic_shift_state_unsaved_changes gauge\n"

/*
 * HELP and TYPE of the families above; those of the upstream{} blocks
 * and their servers are counted by
 * ngx_http_traffic_shift_metrics_servers_prepare()
 */

#define NGX_HTTP_TS_METRICS_HEAD                                              \
    NGX_HTTP_TS_METRICS_WEIGHT NGX_HTTP_TS_METRICS_REQUESTS                   \
    NGX_HTTP_TS_METRICS_RESPONSES NGX_HTTP_TS_METRICS_GENERATION              \
    NGX_HTTP_TS_METRICS_DURATION NGX_HTTP_TS_METRICS_ERRORS                   \
    NGX_HTTP_TS_METRICS_RO_STEP NGX_HTTP_TS_METRICS_RO_STATE                  \
    NGX_HTTP_TS_METRICS_ROLLOUTS                                              \
    NGX_HTTP_TS_METRICS_N_RATIO NGX_HTTP_TS_METRICS_N_INFO                    \
    NGX_HTTP_TS_METRICS_N_REQUESTS NGX_HTTP_TS_METRICS_N_RESPONSES            \
    NGX_HTTP_TS_METRICS_N_GENERATION NGX_HTTP_TS_METRICS_N_CHANGED            \
    NGX_HTTP_TS_METRICS_N_DURATION NGX_HTTP_TS_METRICS_N_ERRORS               \
    NGX_HTTP_TS_METRICS_N_RO_STEP NGX_HTTP_TS_METRICS_N_RO_STATE              \
    NGX_HTTP_TS_METRICS_N_ROLLOUTS NGX_HTTP_TS_METRICS_N_UNSAVED


static ngx_http_traffic_shift_metrics_names_t
    ngx_http_traffic_shift_metrics_names_0_1 =
{
    "upstream",
    { ngx_string(NGX_HTTP_TS_METRICS_REQUESTS),
      "traffic_shift_requests_total",
      offsetof(ngx_http_traffic_shift_sh_pool_t, requests) },
    { ngx_string(NGX_HTTP_TS_METRICS_RESPONSES),
      "traffic_shift_responses_total", 0 },
    { ngx_string(NGX_HTTP_TS_METRICS_GENERATION),
      "traffic_shift_generation", 0 },
    { ngx_string(NGX_HTTP_TS_METRICS_DURATION),
      "traffic_shift_upstream_response_duration_seconds", 0 },
    { ngx_string(NGX_HTTP_TS_METRICS_ERRORS),
      "traffic_shift_upstream_errors_total",
      offsetof(ngx_http_traffic_shift_sh_pool_t, errors) },
    { ngx_string(NGX_HTTP_TS_METRICS_RO_STEP),
      "traffic_shift_rollout_step", 0 },
    { ngx_string(NGX_HTTP_TS_METRICS_RO_STATE),
      "traffic_shift_rollout_state", 0 },
    { ngx_string(NGX_HTTP_TS_METRICS_ROLLOUTS),
      "traffic_shift_rollouts_total", 0 }
};


static ngx_http_traffic_shift_metrics_names_t
    ngx_http_traffic_shift_metrics_names_0_2 =
{
    "traffic_shift",
    { ngx_string(NGX_HTTP_TS_METRICS_N_REQUESTS),
      "traffic_shift_pool_requests_total",
      offsetof(ngx_http_traffic_shift_sh_pool_t, requests) },
    { ngx_string(NGX_HTTP_TS_METRICS_N_RESPONSES),
      "traffic_shift_pool_responses_total", 0 },
    { ngx_string(NGX_HTTP_TS_METRICS_N_GENERATION),
      "traffic_shift_weights_generation", 0 },
    { ngx_string(NGX_HTTP_TS_METRICS_N_DURATION),
      "traffic_shift_pool_upstream_response_duration_seconds", 0 },
    { ngx_string(NGX_HTTP_TS_METRICS_N_ERRORS),
      "traffic_shift_pool_upstream_errors_total",
      offsetof(ngx_http_traffic_shift_sh_pool_t, errors) },
    { ngx_string(NGX_HTTP_TS_METRICS_N_RO_STEP),
      "traffic_shift_rollout_current_step", 0 },
    { ngx_string(NGX_HTTP_TS_METRICS_N_RO_STATE),
      "traffic_shift_rollout_in_state", 0 },
    { ngx_string(NGX_HTTP_TS_METRICS_N_ROLLOUTS),
      "traffic_shift_rollouts_ended_total", 0 }
};


ngx_int_t
ngx_http_traffic_shift_metrics(ngx_http_request_t *r,
    ngx_http_traffic_shift_main_conf_t *mcf, ngx_str_t *body)
{
    size_t                                   size;
    ngx_str_t                                arg;
    ngx_http_traffic_shift_metrics_ctx_t     ctx;
    ngx_http_traffic_shift_metrics_names_t  *v1, *v2;

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

    v1 = &ngx_http_traffic_shift_metrics_names_0_1;
    v2 = &ngx_http_traffic_shift_metrics_names_0_2;

    /* the families of 0.1, until 0.3.0; then those of the servers */

    ngx_http_traffic_shift_metrics_weights(&ctx);
    ngx_http_traffic_shift_metrics_counter(&ctx, &v1->requests, v1->label);
    ngx_http_traffic_shift_metrics_responses(&ctx, &v1->responses, v1->label);
    ngx_http_traffic_shift_metrics_generation(&ctx, &v1->generation,
                                              v1->label);
    ngx_http_traffic_shift_metrics_histogram(&ctx, &v1->duration, v1->label);
    ngx_http_traffic_shift_metrics_counter(&ctx, &v1->errors, v1->label);
    ngx_http_traffic_shift_metrics_step(&ctx, &v1->step, v1->label);
    ngx_http_traffic_shift_metrics_states(&ctx, &v1->state, v1->label);
    ngx_http_traffic_shift_metrics_results(&ctx, &v1->ended, v1->label);

    if (ngx_http_traffic_shift_metrics_servers(&ctx) != NGX_OK) {
        return NGX_ERROR;
    }

    /* the families of 0.2 */

    ngx_http_traffic_shift_metrics_ratios(&ctx);
    ngx_http_traffic_shift_metrics_counter(&ctx, &v2->requests, v2->label);
    ngx_http_traffic_shift_metrics_responses(&ctx, &v2->responses, v2->label);
    ngx_http_traffic_shift_metrics_generation(&ctx, &v2->generation,
                                              v2->label);
    ngx_http_traffic_shift_metrics_changed(&ctx);
    ngx_http_traffic_shift_metrics_histogram(&ctx, &v2->duration, v2->label);
    ngx_http_traffic_shift_metrics_counter(&ctx, &v2->errors, v2->label);
    ngx_http_traffic_shift_metrics_step(&ctx, &v2->step, v2->label);
    ngx_http_traffic_shift_metrics_states(&ctx, &v2->state, v2->label);
    ngx_http_traffic_shift_metrics_results(&ctx, &v2->ended, v2->label);

    if (ngx_http_traffic_shift_metrics_reasons(&ctx) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_http_traffic_shift_metrics_unsaved(&ctx);

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
             * histogram: buckets, sum, count; twice (names of 0.1 and 0.2);
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

    if (ngx_http_traffic_shift_metrics_servers_prepare(ctx, size)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* the state file's unsaved changes */
    *size += NGX_HTTP_TS_METRICS_LINE;

    return NGX_OK;
}


/* the weights in percent, under the name of 0.1 */

static void
ngx_http_traffic_shift_metrics_weights(
    ngx_http_traffic_shift_metrics_ctx_t *ctx)
{
    u_char                                  *p, *last, weight[16];
    ngx_str_t                                name;
    ngx_uint_t                               i, j, n;
    ngx_http_traffic_shift_pool_t           *pool;
    ngx_http_traffic_shift_split_t         **splitp;
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

    ctx->p = p;
}


/* the weights as ratios and the pools' upstream{} blocks (0.2) */

static void
ngx_http_traffic_shift_metrics_ratios(
    ngx_http_traffic_shift_metrics_ctx_t *ctx)
{
    u_char                                  *p, *last;
    ngx_str_t                                ups;
    ngx_uint_t                               i, j, n, w;
    ngx_http_traffic_shift_pool_t           *pool;
    ngx_http_traffic_shift_split_t         **splitp;
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

    ctx->p = p;
}


/* a counter of each pool: requests, errors of the upstream attempts */

static void
ngx_http_traffic_shift_metrics_counter(
    ngx_http_traffic_shift_metrics_ctx_t *ctx,
    ngx_http_traffic_shift_metrics_family_t *family, char *label)
{
    u_char                                  *p, *last;
    ngx_uint_t                               i, j, n;
    ngx_atomic_t                            *counter;
    ngx_http_traffic_shift_pool_t           *pool;
    ngx_http_traffic_shift_split_t         **splitp;
    ngx_http_traffic_shift_metrics_split_t  *ms;

    last = ctx->last;
    splitp = ctx->mcf->splits.elts;
    n = ctx->mcf->splits.nelts;
    ms = ctx->splits;

    p = ngx_cpymem(ctx->p, family->head.data, family->head.len);

    for (i = 0; i < n; i++) {
        if (ms[i].rc != NGX_OK) {
            continue;
        }

        pool = splitp[i]->pools.elts;

        for (j = 0; j < splitp[i]->pools.nelts; j++) {
            counter = (ngx_atomic_t *) ((u_char *) &splitp[i]->sh->pools[j]
                                        + family->offset);

            p = ngx_slprintf(p, last, "%s{%s=\"%V\",pool=\"%V\"} %uA\n",
                             family->name, label, &ms[i].name,
                             &pool[j].name, *counter);
        }
    }

    ctx->p = p;
}


/* the responses of each pool, by status class */

static void
ngx_http_traffic_shift_metrics_responses(
    ngx_http_traffic_shift_metrics_ctx_t *ctx,
    ngx_http_traffic_shift_metrics_family_t *family, char *label)
{
    u_char                                  *p, *last;
    ngx_uint_t                               i, j, k, n;
    ngx_http_traffic_shift_pool_t           *pool;
    ngx_http_traffic_shift_split_t         **splitp;
    ngx_http_traffic_shift_sh_pool_t        *shp;
    ngx_http_traffic_shift_metrics_split_t  *ms;

    last = ctx->last;
    splitp = ctx->mcf->splits.elts;
    n = ctx->mcf->splits.nelts;
    ms = ctx->splits;

    p = ngx_cpymem(ctx->p, family->head.data, family->head.len);

    for (i = 0; i < n; i++) {
        if (ms[i].rc != NGX_OK) {
            continue;
        }

        pool = splitp[i]->pools.elts;

        for (j = 0; j < splitp[i]->pools.nelts; j++) {
            shp = &splitp[i]->sh->pools[j];

            for (k = 0; k < NGX_HTTP_TS_CLASSES; k++) {
                p = ngx_slprintf(p, last,
                                 "%s{%s=\"%V\",pool=\"%V\",code=\"%s\"} %uA\n",
                                 family->name, label, &ms[i].name,
                                 &pool[j].name,
                                 ngx_http_traffic_shift_metrics_classes[k],
                                 shp->responses[k]);
            }
        }
    }

    ctx->p = p;
}


/* the generation of the weights of each traffic_shift upstream */

static void
ngx_http_traffic_shift_metrics_generation(
    ngx_http_traffic_shift_metrics_ctx_t *ctx,
    ngx_http_traffic_shift_metrics_family_t *family, char *label)
{
    u_char                                  *p, *last;
    ngx_uint_t                               i, n;
    ngx_http_traffic_shift_metrics_split_t  *ms;

    last = ctx->last;
    n = ctx->mcf->splits.nelts;
    ms = ctx->splits;

    p = ngx_cpymem(ctx->p, family->head.data, family->head.len);

    for (i = 0; i < n; i++) {
        if (ms[i].rc == NGX_OK) {
            p = ngx_slprintf(p, last, "%s{%s=\"%V\"} %ui\n", family->name,
                             label, &ms[i].name, ms[i].w.generation);
        }
    }

    ctx->p = p;
}


/* the time of the last change of the weights (0.2) */

static void
ngx_http_traffic_shift_metrics_changed(
    ngx_http_traffic_shift_metrics_ctx_t *ctx)
{
    u_char                                  *p, *last;
    ngx_uint_t                               i, n;
    ngx_http_traffic_shift_metrics_split_t  *ms;

    last = ctx->last;
    n = ctx->mcf->splits.nelts;
    ms = ctx->splits;

    p = ngx_http_traffic_shift_metrics_text(ctx->p,
                                            NGX_HTTP_TS_METRICS_N_CHANGED);

    for (i = 0; i < n; i++) {
        if (ms[i].rc == NGX_OK) {
            p = ngx_slprintf(p, last, "traffic_shift_last_change_timestamp_"
                             "seconds{traffic_shift=\"%V\"} %T\n",
                             &ms[i].name, ms[i].w.updated);
        }
    }

    ctx->p = p;
}


/* the response times of the pools' upstream attempts: buckets, sum, count */

static void
ngx_http_traffic_shift_metrics_histogram(
    ngx_http_traffic_shift_metrics_ctx_t *ctx,
    ngx_http_traffic_shift_metrics_family_t *family, char *label)
{
    u_char                                  *p, *last;
    ngx_uint_t                               i, j, b, n;
    ngx_msec_t                               le;
    ngx_atomic_uint_t                        count, sum;
    ngx_http_traffic_shift_pool_t           *pool;
    ngx_http_traffic_shift_split_t         **splitp;
    ngx_http_traffic_shift_sh_pool_t        *shp;
    ngx_http_traffic_shift_metrics_split_t  *ms;

    last = ctx->last;
    splitp = ctx->mcf->splits.elts;
    n = ctx->mcf->splits.nelts;
    ms = ctx->splits;

    p = ngx_cpymem(ctx->p, family->head.data, family->head.len);

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
                    p = ngx_slprintf(p, last, "%s_bucket{%s=\"%V\","
                                     "pool=\"%V\",le=\"+Inf\"} %uA\n",
                                     family->name, label, &ms[i].name,
                                     &pool[j].name, count);
                    continue;
                }

                p = ngx_slprintf(p, last, "%s_bucket{%s=\"%V\",pool=\"%V\","
                                 "le=\"%M.%03M\"} %uA\n", family->name, label,
                                 &ms[i].name, &pool[j].name, le / 1000,
                                 le % 1000, count);
            }

            sum = shp->time_sum;

            p = ngx_slprintf(p, last, "%s_sum{%s=\"%V\",pool=\"%V\"} "
                             "%uA.%03uA\n"
                             "%s_count{%s=\"%V\",pool=\"%V\"} %uA\n",
                             family->name, label, &ms[i].name, &pool[j].name,
                             sum / 1000, sum % 1000,
                             family->name, label, &ms[i].name, &pool[j].name,
                             count);
        }
    }

    ctx->p = p;
}


/*
 * The rollouts: the step, the state, the results of the ended ones; words
 * written under the mutex, each read as it is.
 */

static void
ngx_http_traffic_shift_metrics_step(
    ngx_http_traffic_shift_metrics_ctx_t *ctx,
    ngx_http_traffic_shift_metrics_family_t *family, char *label)
{
    u_char                                  *p, *last;
    ngx_uint_t                               i, n, state;
    ngx_http_traffic_shift_split_t         **splitp;
    ngx_http_traffic_shift_sh_rollout_t     *ro;
    ngx_http_traffic_shift_metrics_split_t  *ms;

    last = ctx->last;
    splitp = ctx->mcf->splits.elts;
    n = ctx->mcf->splits.nelts;
    ms = ctx->splits;

    p = ngx_cpymem(ctx->p, family->head.data, family->head.len);

    for (i = 0; i < n; i++) {
        if (ms[i].rc != NGX_OK) {
            continue;
        }

        ro = &splitp[i]->sh->rollout;
        state = ro->state;

        p = ngx_slprintf(p, last, "%s{%s=\"%V\"} %ui\n", family->name, label,
                         &ms[i].name,
                         (state == NGX_HTTP_TS_RO_PROGRESSING
                          || state == NGX_HTTP_TS_RO_PAUSED)
                         ? ro->step + 1 : 0);
    }

    ctx->p = p;
}


static void
ngx_http_traffic_shift_metrics_states(
    ngx_http_traffic_shift_metrics_ctx_t *ctx,
    ngx_http_traffic_shift_metrics_family_t *family, char *label)
{
    u_char                                  *p, *last;
    ngx_uint_t                               i, k, n, state;
    ngx_http_traffic_shift_split_t         **splitp;
    ngx_http_traffic_shift_metrics_split_t  *ms;

    last = ctx->last;
    splitp = ctx->mcf->splits.elts;
    n = ctx->mcf->splits.nelts;
    ms = ctx->splits;

    p = ngx_cpymem(ctx->p, family->head.data, family->head.len);

    for (i = 0; i < n; i++) {
        if (ms[i].rc != NGX_OK) {
            continue;
        }

        state = splitp[i]->sh->rollout.state;

        for (k = 0; k < NGX_HTTP_TS_RO_STATES; k++) {
            p = ngx_slprintf(p, last, "%s{%s=\"%V\",state=\"%s\"} %d\n",
                             family->name, label, &ms[i].name,
                             ngx_http_traffic_shift_ro_states[k],
                             k == state ? 1 : 0);
        }
    }

    ctx->p = p;
}


static void
ngx_http_traffic_shift_metrics_results(
    ngx_http_traffic_shift_metrics_ctx_t *ctx,
    ngx_http_traffic_shift_metrics_family_t *family, char *label)
{
    u_char                                  *p, *last;
    ngx_uint_t                               i, k, n;
    ngx_http_traffic_shift_split_t         **splitp;
    ngx_http_traffic_shift_sh_rollout_t     *ro;
    ngx_http_traffic_shift_metrics_split_t  *ms;

    last = ctx->last;
    splitp = ctx->mcf->splits.elts;
    n = ctx->mcf->splits.nelts;
    ms = ctx->splits;

    p = ngx_cpymem(ctx->p, family->head.data, family->head.len);

    for (i = 0; i < n; i++) {
        if (ms[i].rc != NGX_OK) {
            continue;
        }

        ro = &splitp[i]->sh->rollout;

        for (k = NGX_HTTP_TS_RO_SUCCEEDED; k < NGX_HTTP_TS_RO_STATES; k++) {
            p = ngx_slprintf(p, last, "%s{%s=\"%V\",result=\"%s\"} %ui\n",
                             family->name, label, &ms[i].name,
                             ngx_http_traffic_shift_ro_states[k],
                             ro->results[k]);
        }
    }

    ctx->p = p;
}


/* the changes not written to the state file yet */

static void
ngx_http_traffic_shift_metrics_unsaved(
    ngx_http_traffic_shift_metrics_ctx_t *ctx)
{
    u_char                              *p;
    ngx_http_traffic_shift_main_conf_t  *mcf;

    mcf = ctx->mcf;

    p = ngx_http_traffic_shift_metrics_text(ctx->p,
                                            NGX_HTTP_TS_METRICS_N_UNSAVED);

    if (mcf->sh && mcf->state_file.len) {
        p = ngx_slprintf(p, ctx->last,
                         "traffic_shift_state_unsaved_changes %uA\n",
                         mcf->sh->version > mcf->sh->saved
                         ? mcf->sh->version - mcf->sh->saved : 0);
    }

    ctx->p = p;
}
