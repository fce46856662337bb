
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#include "ngx_http_traffic_shift_rollout.h"
#include "ngx_http_traffic_shift_state.h"
#include "ngx_http_traffic_shift_zone.h"
#include "ngx_http_traffic_shift_lib.h"


/*
 * The rollout driver.  Every worker has a timer; the worker holding the
 * driver's lease in the zone (taken under the slab mutex when free,
 * expired or its own) evaluates the rollouts that progress: the end of a
 * step, its analysis, the next step or the rollback.  A driver that dies
 * loses the lease within NGX_HTTP_TS_RO_LEASE; the fast abort does not
 * wait for it: the log phase acts on a breach itself.  Every change of a
 * rollout sets a flag in the zone; the driver clears it and saves the
 * state file, so that what it and the fast abort change is saved too.
 */


#define NGX_HTTP_TS_RO_TICK       200
#define NGX_HTTP_TS_RO_LEASE      1000

/* latencies below this are compared as this, in microseconds */
#define NGX_HTTP_TS_RO_P99_FLOOR  10000


typedef struct {
    ngx_event_t                             timer;
    ngx_http_traffic_shift_main_conf_t     *mcf;
    ngx_http_traffic_shift_sh_rollout_t     ro;
    unsigned                                held:1;
} ngx_http_traffic_shift_rollout_driver_t;


static void ngx_http_traffic_shift_rollout_timer(ngx_event_t *ev);
static void ngx_http_traffic_shift_rollout_tick(
    ngx_http_traffic_shift_rollout_driver_t *d,
    ngx_http_traffic_shift_split_t *split);
static ngx_uint_t ngx_http_traffic_shift_rollout_analyse(
    ngx_http_traffic_shift_sh_rollout_t *ro,
    ngx_http_traffic_shift_ro_step_t *e, u_char *text, size_t size,
    size_t *len);
static void ngx_http_traffic_shift_rollout_end(
    ngx_http_traffic_shift_rollout_driver_t *d,
    ngx_http_traffic_shift_split_t *split, ngx_uint_t state,
    ngx_http_traffic_shift_ro_step_t *e, u_char *text, size_t len);


ngx_int_t
ngx_http_traffic_shift_rollout_init_process(ngx_cycle_t *cycle)
{
    ngx_http_traffic_shift_main_conf_t       *mcf;
    ngx_http_traffic_shift_rollout_driver_t  *d;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    mcf = ngx_http_cycle_get_module_main_conf(cycle,
                                              ngx_http_traffic_shift_module);

    if (mcf == NULL || mcf->sh == NULL || mcf->splits.nelts == 0) {
        return NGX_OK;
    }

    d = ngx_pcalloc(cycle->pool,
                    sizeof(ngx_http_traffic_shift_rollout_driver_t));
    if (d == NULL) {
        return NGX_ERROR;
    }

    d->mcf = mcf;
    d->timer.handler = ngx_http_traffic_shift_rollout_timer;
    d->timer.data = d;
    d->timer.log = cycle->log;
    d->timer.cancelable = 1;

    mcf->rollout = d;

    ngx_add_timer(&d->timer, 1 + ngx_random() % NGX_HTTP_TS_RO_TICK);

    return NGX_OK;
}


void
ngx_http_traffic_shift_rollout_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_traffic_shift_main_conf_t       *mcf;
    ngx_http_traffic_shift_rollout_driver_t  *d;

    mcf = ngx_http_cycle_get_module_main_conf(cycle,
                                              ngx_http_traffic_shift_module);

    if (mcf == NULL || mcf->rollout == NULL) {
        return;
    }

    d = mcf->rollout;

    if (d->timer.timer_set) {
        ngx_del_timer(&d->timer);
    }

    (void) ngx_http_traffic_shift_zone_lease(mcf, &mcf->sh->ro_lease, 0, 1);

    mcf->rollout = NULL;
}


static void
ngx_http_traffic_shift_rollout_timer(ngx_event_t *ev)
{
    ngx_uint_t                                i, busy;
    ngx_http_traffic_shift_split_t          **splitp;
    ngx_http_traffic_shift_main_conf_t       *mcf;
    ngx_http_traffic_shift_rollout_driver_t  *d;

    d = ev->data;
    mcf = d->mcf;

    if (ngx_exiting || ngx_terminate || ngx_quit
        || ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_traffic_shift_module)
           != mcf
        || mcf->sh->retired)
    {
        /* the workers of the new configuration take over */
        (void) ngx_http_traffic_shift_zone_lease(mcf, &mcf->sh->ro_lease, 0,
                                                 1);
        return;
    }

    ngx_add_timer(ev, NGX_HTTP_TS_RO_TICK);

    splitp = mcf->splits.elts;
    busy = 0;

    for (i = 0; i < mcf->splits.nelts; i++) {
        if (splitp[i]->sh
            && splitp[i]->sh->layout == splitp[i]->layout
            && splitp[i]->sh->rollout.state == NGX_HTTP_TS_RO_PROGRESSING)
        {
            busy = 1;
            break;
        }
    }

    if (!busy && !mcf->sh->ro_changed) {
        return;
    }

    if (ngx_http_traffic_shift_zone_lease(mcf, &mcf->sh->ro_lease,
                                          NGX_HTTP_TS_RO_LEASE, 0)
        != NGX_OK)
    {
        d->held = 0;
        return;
    }

    if (!d->held) {
        ngx_log_error(NGX_LOG_INFO, ev->log, 0,
                      "traffic_shift: this worker now drives the rollouts");
        d->held = 1;
    }

    for (i = 0; i < mcf->splits.nelts; i++) {
        if (splitp[i]->sh
            && splitp[i]->sh->layout == splitp[i]->layout
            && splitp[i]->sh->rollout.state == NGX_HTTP_TS_RO_PROGRESSING)
        {
            ngx_http_traffic_shift_rollout_tick(d, splitp[i]);
        }
    }

    if (mcf->sh->ro_changed
        && ngx_atomic_cmp_set(&mcf->sh->ro_changed, 1, 0))
    {
        ngx_http_traffic_shift_state_save_change(mcf, ev->log);
    }
}


/* one look at a progressing rollout */

static void
ngx_http_traffic_shift_rollout_tick(ngx_http_traffic_shift_rollout_driver_t *d,
    ngx_http_traffic_shift_split_t *split)
{
    u_char                               *p, text[NGX_HTTP_TS_RO_REASON_LEN];
    size_t                                len;
    ngx_uint_t                            verdict;
    ngx_msec_int_t                        elapsed;
    ngx_http_traffic_shift_pool_t        *pool;
    ngx_http_traffic_shift_change_t       change;
    ngx_http_traffic_shift_ro_step_t      e;
    ngx_http_traffic_shift_sh_rollout_t  *ro;

    ro = &d->ro;
    pool = split->pools.elts;

    if (ngx_http_traffic_shift_zone_rollout_copy(d->mcf, split, ro, NULL)
        != NGX_OK
        || ro->state != NGX_HTTP_TS_RO_PROGRESSING)
    {
        return;
    }

    if (ngx_http_traffic_shift_zone_live(pool[ro->pool].ups) == 0) {
        p = ngx_snprintf(text, sizeof(text), "pool \"%V\" has no live server",
                         &pool[ro->pool].name);

        ngx_http_traffic_shift_rollout_end(d, split,
                                           NGX_HTTP_TS_RO_ROLLED_BACK, NULL,
                                           text, p - text);
        return;
    }

    elapsed = (ngx_msec_int_t) (ngx_current_msec - ro->step_msec);

    if (elapsed < (ngx_msec_int_t) ro->interval) {
        return;
    }

    ngx_http_traffic_shift_zone_rollout_window(split->sh, ro, &e);

    e.step = ro->step + 1;
    e.weight = ro->steps[ro->step];
    e.time = ngx_time();

    if (e.responses[0] < ro->min_requests) {

        if (!ro->holding) {
            ngx_log_error(NGX_LOG_NOTICE, d->timer.log, 0,
                          "traffic_shift \"%V\": rollout step %ui holds, "
                          "%ui of %ui responses of pool \"%V\"",
                          &split->name, e.step, e.responses[0],
                          ro->min_requests, &pool[ro->pool].name);

            ngx_http_traffic_shift_zone_rollout_hold(d->mcf, split, ro->id,
                                                     ro->step);
        }

        if (ro->max_hold == NGX_CONF_UNSET_MSEC
            || elapsed - (ngx_msec_int_t) ro->interval
               < (ngx_msec_int_t) ro->max_hold)
        {
            return;
        }

        e.verdict = NGX_HTTP_TS_RO_INCONCLUSIVE;

        p = ngx_snprintf(text, sizeof(text),
                         "step %ui inconclusive: %ui of %ui responses of "
                         "pool \"%V\" after max_hold %Mms", e.step,
                         e.responses[0], ro->min_requests,
                         &pool[ro->pool].name, ro->max_hold);

        ngx_http_traffic_shift_rollout_end(d, split, NGX_HTTP_TS_RO_PAUSED,
                                           &e, text, p - text);
        return;
    }

    verdict = ngx_http_traffic_shift_rollout_analyse(ro, &e, text,
                                                     sizeof(text), &len);
    e.verdict = verdict;

    if (verdict == NGX_HTTP_TS_RO_FAIL) {
        ngx_http_traffic_shift_rollout_end(d, split,
                                           NGX_HTTP_TS_RO_ROLLED_BACK, &e,
                                           text, len);
        return;
    }

    switch (ngx_http_traffic_shift_zone_rollout_next(d->mcf, split, ro->id,
                                                     ro->step, &e, &change))
    {
    case NGX_OK:
        ngx_log_error(NGX_LOG_NOTICE, d->timer.log, 0,
                      "traffic_shift \"%V\": rollout step %ui passed "
                      "(pool \"%V\": %ui responses, %ui errors, p99 %uims; "
                      "baseline: %ui responses, %ui errors, p99 %uims), "
                      "step %ui, generation %ui", &split->name, e.step,
                      &pool[ro->pool].name, e.responses[0], e.errors[0],
                      e.p99[0] / 1000, e.responses[1], e.errors[1],
                      e.p99[1] / 1000, e.step + 1, change.new.generation);
        break;

    case NGX_DONE:
        ngx_log_error(NGX_LOG_NOTICE, d->timer.log, 0,
                      "traffic_shift \"%V\": rollout of pool \"%V\" "
                      "succeeded after step %ui (%ui responses, %ui errors, "
                      "p99 %uims)", &split->name, &pool[ro->pool].name,
                      e.step, e.responses[0], e.errors[0], e.p99[0] / 1000);
        break;

    default:
        /* the rollout changed meanwhile */
        break;
    }
}


/*
 * The verdict on a step's window with enough responses: fail if any limit
 * is passed.  Relative limits need responses of the baseline: an error
 * ratio over "k" times the baseline's, and over k errors; a p99 over k
 * times the baseline's, latencies under 10ms counted as 10ms.
 */

static ngx_uint_t
ngx_http_traffic_shift_rollout_analyse(ngx_http_traffic_shift_sh_rollout_t *ro,
    ngx_http_traffic_shift_ro_step_t *e, u_char *text, size_t size,
    size_t *len)
{
    u_char      *p, *last;
    uint64_t     cn, ce, bn, be, cp, bp;
    ngx_uint_t   fail;

    cn = e->responses[0];
    ce = e->errors[0];
    bn = e->responses[1];
    be = e->errors[1];
    cp = e->p99[0];
    bp = ngx_max(e->p99[1], NGX_HTTP_TS_RO_P99_FLOOR);

    p = ngx_snprintf(text, size, "step %ui failed:", e->step);
    last = text + size;
    fail = 0;

    if (ro->max_error_ratio != NGX_CONF_UNSET_UINT
        && ce * 10000 > ro->max_error_ratio * cn)
    {
        p = ngx_slprintf(p, last, " error ratio %uL/%uL over %ui.%04ui;",
                         ce, cn, ro->max_error_ratio / 10000,
                         ro->max_error_ratio % 10000);
        fail = 1;
    }

    if (ro->max_error_ratio_vs != NGX_CONF_UNSET_UINT && bn
        && ce * 100 * bn > ro->max_error_ratio_vs * ngx_max(be * cn, bn))
    {
        p = ngx_slprintf(p, last, " error ratio %uL/%uL over %ui.%02ui "
                         "times the baseline's %uL/%uL;", ce, cn,
                         ro->max_error_ratio_vs / 100,
                         ro->max_error_ratio_vs % 100, be, bn);
        fail = 1;
    }

    if (ro->max_p99 != NGX_CONF_UNSET_MSEC
        && cp > (uint64_t) ro->max_p99 * 1000)
    {
        p = ngx_slprintf(p, last, " p99 %uL.%03uLms over %Mms;",
                         cp / 1000, cp % 1000, ro->max_p99);
        fail = 1;
    }

    if (ro->max_p99_vs != NGX_CONF_UNSET_UINT && bn
        && cp * 100 > ro->max_p99_vs * bp)
    {
        p = ngx_slprintf(p, last, " p99 %uL.%03uLms over %ui.%02ui times "
                         "the baseline's %uL.%03uLms;", cp / 1000,
                         cp % 1000, ro->max_p99_vs / 100,
                         ro->max_p99_vs % 100, (uint64_t) e->p99[1] / 1000,
                         (uint64_t) e->p99[1] % 1000);
        fail = 1;
    }

    if (p > text && p[-1] == ';') {
        p--;
    }

    *len = p - text;

    return fail ? NGX_HTTP_TS_RO_FAIL : NGX_HTTP_TS_RO_PASS;
}


static void
ngx_http_traffic_shift_rollout_end(ngx_http_traffic_shift_rollout_driver_t *d,
    ngx_http_traffic_shift_split_t *split, ngx_uint_t state,
    ngx_http_traffic_shift_ro_step_t *e, u_char *text, size_t len)
{
    ngx_http_traffic_shift_change_t  change;

    if (ngx_http_traffic_shift_zone_rollout_end(d->mcf, split, d->ro.id,
                                                state, e, text, len, 0,
                                                &change)
        != NGX_OK)
    {
        return;
    }

    if (state == NGX_HTTP_TS_RO_PAUSED) {
        ngx_log_error(NGX_LOG_WARN, d->timer.log, 0,
                      "traffic_shift \"%V\": rollout paused, %*s",
                      &split->name, len, text);
        return;
    }

    ngx_log_error(NGX_LOG_WARN, d->timer.log, 0,
                  "traffic_shift \"%V\": rollout rolled back, %*s; weights "
                  "from before the rollout restored, generation %ui",
                  &split->name, len, text, change.new.generation);
}
