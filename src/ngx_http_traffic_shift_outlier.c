
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#include "ngx_http_traffic_shift_outlier.h"
#include "ngx_http_traffic_shift_zone.h"


/*
 * Passive outlier detection and slow start, per server of an upstream{}
 * block.  Every request to the upstream (through a traffic_shift pool or
 * not) has its attempts counted when it ends, per server, in the zone:
 * consecutive 5xx, consecutive gateway failures, a failure ratio over a
 * window.  A server past a limit is ejected (the zone, under its mutex);
 * a timer in every worker ends ejections whose time is over.  A server
 * that became up ramps from 10% to all of the requests it would get over
 * "slow_start": each request leaves it out with the probability that keeps
 * it there, and round robin (or least_conn) chooses among the others as it
 * always does.
 */


#define NGX_HTTP_TS_OUTLIER_TICK   250

/* a ramping server starts at this share of its due, in 1/10000 */
#define NGX_HTTP_TS_RAMP_FIRST     1000

#define NGX_HTTP_TS_RAMP_MAX_SKIP  64


typedef struct {
    ngx_http_request_t                     *request;
    ngx_http_traffic_shift_upstream_t      *ups;
    ngx_uint_t                              first;
} ngx_http_traffic_shift_watch_t;


typedef struct {
    ngx_event_t                             timer;
    ngx_http_traffic_shift_main_conf_t     *mcf;
} ngx_http_traffic_shift_outlier_timer_t;


static void ngx_http_traffic_shift_outlier_ramp(
    ngx_http_traffic_shift_upstream_t *ups,
    ngx_http_upstream_rr_peer_data_t *rrp);
static ngx_uint_t ngx_http_traffic_shift_outlier_other(
    ngx_http_upstream_rr_peers_t *peers, ngx_int_t *skip, ngx_uint_t nskip);
static void ngx_http_traffic_shift_outlier_count(void *data);
static ngx_http_traffic_shift_server_t *ngx_http_traffic_shift_outlier_server(
    ngx_http_traffic_shift_upstream_t *ups, ngx_str_t *name);
static ngx_uint_t ngx_http_traffic_shift_outlier_result(
    ngx_http_traffic_shift_outlier_conf_t *oc,
    ngx_http_traffic_shift_sh_server_t *sh, ngx_uint_t status,
    ngx_http_traffic_shift_eject_t *e);
static void ngx_http_traffic_shift_outlier_eject(
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_upstream_t *ups,
    ngx_http_traffic_shift_server_t *server,
    ngx_http_traffic_shift_eject_t *e, ngx_log_t *log);
static void ngx_http_traffic_shift_outlier_rollback(
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_upstream_t *ups,
    ngx_http_traffic_shift_server_t *server, ngx_log_t *log);
static void ngx_http_traffic_shift_outlier_timer(ngx_event_t *ev);


static const char  *ngx_http_traffic_shift_outlier_why[] = {
    "",
    "consecutive 5xx responses",
    "consecutive gateway failures",
    "failures"
};


/*
 * A request to the upstream.  While a server ramps up, round robin is
 * given its own per-request data (which it takes as its own when not
 * NULL), so that the skipped servers can be marked tried whatever wraps
 * the balancer (keepalive).  With ejection on, the attempts are counted
 * when the request ends.
 */

ngx_int_t
ngx_http_traffic_shift_outlier_init_peer(ngx_http_request_t *r,
    ngx_http_traffic_shift_upstream_t *ups)
{
    ngx_pool_cleanup_t                     *cln;
    ngx_http_traffic_shift_watch_t         *w;
    ngx_http_upstream_rr_peer_data_t       *rrp;
    ngx_http_traffic_shift_outlier_conf_t  *oc;

    oc = ups->outlier;
    rrp = NULL;

    if (oc->slow_start
        && (ngx_msec_int_t) (ngx_current_msec - ups->ramp_until) < 0
        && r->upstream->peer.data == NULL)
    {
        rrp = ngx_pcalloc(r->pool, sizeof(ngx_http_upstream_rr_peer_data_t));
        if (rrp == NULL) {
            return NGX_ERROR;
        }

        r->upstream->peer.data = rrp;
    }

    if (ups->original_init_peer(r, ups->uscf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (rrp && rrp->peers && rrp->tried) {
        ngx_http_traffic_shift_outlier_ramp(ups, rrp);
    }

    if (!oc->eject) {
        return NGX_OK;
    }

    cln = ngx_pool_cleanup_add(r->pool,
                               sizeof(ngx_http_traffic_shift_watch_t));
    if (cln == NULL) {
        return NGX_ERROR;
    }

    w = cln->data;
    w->request = r;
    w->ups = ups;
    w->first = r->upstream_states ? r->upstream_states->nelts : 0;

    cln->handler = ngx_http_traffic_shift_outlier_count;

    return NGX_OK;
}


/*
 * Each ramping server is left out of this request unless a draw below its
 * share says otherwise: it then gets that share of the requests it would
 * get at full weight, linear in time.  Never when no other primary peer
 * could take the request: round robin would go to the backup servers, or
 * answer 502.
 */

static void
ngx_http_traffic_shift_outlier_ramp(ngx_http_traffic_shift_upstream_t *ups,
    ngx_http_upstream_rr_peer_data_t *rrp)
{
    ngx_int_t                            skip[NGX_HTTP_TS_RAMP_MAX_SKIP];
    ngx_msec_t                           now, window, elapsed;
    ngx_uint_t                           i, nskip, share, pos;
    ngx_http_traffic_shift_server_t     *server;
    ngx_http_traffic_shift_sh_server_t  *sh;

    now = ngx_current_msec;
    window = ups->outlier->slow_start;
    nskip = 0;

    for (i = 0; i < ups->nservers && nskip < NGX_HTTP_TS_RAMP_MAX_SKIP; i++) {
        server = &ups->servers[i];
        sh = server->sh;

        if (server->position < 0 || sh == NULL || !sh->ramp
            || (ngx_uint_t) server->position >= rrp->peers->number)
        {
            continue;
        }

        elapsed = now - sh->up_msec;

        if ((ngx_msec_int_t) elapsed < 0 || elapsed >= window) {
            continue;
        }

        share = NGX_HTTP_TS_RAMP_FIRST
                + (NGX_HTTP_TS_TOTAL - NGX_HTTP_TS_RAMP_FIRST) * elapsed
                  / window;

        if ((ngx_uint_t) ngx_random() % NGX_HTTP_TS_TOTAL < share) {
            continue;
        }

        skip[nskip++] = server->position;
    }

    if (nskip == 0
        || !ngx_http_traffic_shift_outlier_other(rrp->peers, skip, nskip))
    {
        return;
    }

    for (i = 0; i < nskip; i++) {
        pos = skip[i];
        rrp->tried[pos / (8 * sizeof(uintptr_t))]
            |= (uintptr_t) 1 << pos % (8 * sizeof(uintptr_t));
    }
}


/* a primary peer not skipped that round robin may choose now */

static ngx_uint_t
ngx_http_traffic_shift_outlier_other(ngx_http_upstream_rr_peers_t *peers,
    ngx_int_t *skip, ngx_uint_t nskip)
{
    time_t                        now;
    ngx_int_t                     i;
    ngx_uint_t                    k, found;
    ngx_http_upstream_rr_peer_t  *peer;

    now = ngx_time();
    found = 0;

    ngx_http_upstream_rr_peers_rlock(peers);

    for (peer = peers->peer, i = 0; peer && !found; peer = peer->next, i++) {

        for (k = 0; k < nskip; k++) {
            if (skip[k] == i) {
                break;
            }
        }

        if (k < nskip || peer->down) {
            continue;
        }

        if (peer->max_fails && peer->fails >= peer->max_fails
            && now - peer->checked <= peer->fail_timeout)
        {
            continue;
        }

        if (peer->max_conns && peer->conns >= peer->max_conns) {
            continue;
        }

        found = 1;
    }

    ngx_http_upstream_rr_peers_unlock(peers);

    return found;
}


/*
 * The request ends: each attempt in the upstream, as $upstream_status
 * shows it, is a response of its server.  Attempts end at the first state
 * of another upstream.
 */

static void
ngx_http_traffic_shift_outlier_count(void *data)
{
    ngx_http_traffic_shift_watch_t *w = data;

    ngx_uint_t                           i;
    ngx_http_request_t                  *r;
    ngx_http_upstream_state_t           *state;
    ngx_http_traffic_shift_eject_t       e;
    ngx_http_traffic_shift_server_t     *server;
    ngx_http_traffic_shift_main_conf_t  *mcf;

    r = w->request;

    if (r->upstream_states == NULL || ngx_exiting) {
        return;
    }

    mcf = ngx_http_get_module_main_conf(r, ngx_http_traffic_shift_module);

    if (mcf->sh == NULL) {
        return;
    }

    state = r->upstream_states->elts;

    for (i = w->first; i < r->upstream_states->nelts; i++) {

        if (state[i].peer == NULL) {
            if (state[i].status == 0) {
                break;
            }

            continue;
        }

        /* no answer: the client went away first */

        if (state[i].status == 0) {
            continue;
        }

        server = ngx_http_traffic_shift_outlier_server(w->ups, state[i].peer);

        if (server == NULL || server->sh == NULL) {
            continue;
        }

        if (ngx_http_traffic_shift_outlier_result(w->ups->outlier, server->sh,
                                                  state[i].status, &e))
        {
            ngx_http_traffic_shift_outlier_eject(mcf, w->ups, server, &e,
                                                 r->connection->log);
        }
    }
}


/* the server of a peer's name: the same name as at the last sync, or equal */

static ngx_http_traffic_shift_server_t *
ngx_http_traffic_shift_outlier_server(ngx_http_traffic_shift_upstream_t *ups,
    ngx_str_t *name)
{
    ngx_uint_t                        i;
    ngx_http_traffic_shift_server_t  *server;

    server = ups->servers;

    for (i = 0; i < ups->nservers; i++) {
        if (server[i].peer_name == name) {
            return &server[i];
        }
    }

    for (i = 0; i < ups->nservers; i++) {
        if (server[i].name.len == name->len
            && ngx_strncmp(server[i].name.data, name->data, name->len) == 0)
        {
            return &server[i];
        }
    }

    return NULL;
}


/*
 * One response of a server, counted without a lock.  Returns the limit it
 * crossed (NGX_HTTP_TS_EJECT_*), with the numbers in "e", or 0.
 */

static ngx_uint_t
ngx_http_traffic_shift_outlier_result(
    ngx_http_traffic_shift_outlier_conf_t *oc,
    ngx_http_traffic_shift_sh_server_t *sh, ngx_uint_t status,
    ngx_http_traffic_shift_eject_t *e)
{
    ngx_msec_t         now;
    ngx_uint_t         failed, gateway, n, total;
    ngx_atomic_uint_t  start;

    failed = (status >= NGX_HTTP_INTERNAL_SERVER_ERROR);
    gateway = (status == NGX_HTTP_BAD_GATEWAY
               || status == NGX_HTTP_SERVICE_UNAVAILABLE
               || status == NGX_HTTP_GATEWAY_TIME_OUT);

    e->why = 0;

    if (!failed) {
        if (sh->c5xx) {
            sh->c5xx = 0;
        }

        if (sh->cgateway) {
            sh->cgateway = 0;
        }

    } else {
        n = ngx_atomic_fetch_add(&sh->c5xx, 1) + 1;

        if (oc->consecutive_5xx && n >= oc->consecutive_5xx) {
            e->why = NGX_HTTP_TS_EJECT_5XX;
            e->count = n;
        }

        if (gateway) {
            n = ngx_atomic_fetch_add(&sh->cgateway, 1) + 1;

            if (oc->consecutive_gateway && n >= oc->consecutive_gateway) {
                e->why = NGX_HTTP_TS_EJECT_GATEWAY;
                e->count = n;
            }

        } else if (sh->cgateway) {
            sh->cgateway = 0;
        }
    }

    if (oc->failure_ratio == 0) {
        return e->why;
    }

    /* a window of "window" ms; whoever sees it over starts the next one */

    now = ngx_current_msec;
    start = sh->win_start;

    if (now - start >= oc->window
        && ngx_atomic_cmp_set(&sh->win_start, start, now))
    {
        sh->win_total = 0;
        sh->win_fail = 0;
    }

    total = ngx_atomic_fetch_add(&sh->win_total, 1) + 1;

    if (!failed) {
        return e->why;
    }

    n = ngx_atomic_fetch_add(&sh->win_fail, 1) + 1;

    if (e->why == 0 && total >= oc->min_requests
        && n * NGX_HTTP_TS_TOTAL > oc->failure_ratio * total)
    {
        e->why = NGX_HTTP_TS_EJECT_RATIO;
        e->count = n;
        e->total = total;
    }

    return e->why;
}


static void
ngx_http_traffic_shift_outlier_eject(ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_upstream_t *ups,
    ngx_http_traffic_shift_server_t *server,
    ngx_http_traffic_shift_eject_t *e, ngx_log_t *log)
{
    u_char     text[64];
    u_char    *p;
    ngx_int_t  rc;

    if (e->why == NGX_HTTP_TS_EJECT_RATIO) {
        p = ngx_snprintf(text, sizeof(text), "%ui %s in %ui responses",
                         e->count, ngx_http_traffic_shift_outlier_why[e->why],
                         e->total);

    } else {
        p = ngx_snprintf(text, sizeof(text), "%ui %s",
                         e->count, ngx_http_traffic_shift_outlier_why[e->why]);
    }

    rc = ngx_http_traffic_shift_zone_outlier_eject(mcf, ups, server, e);

    if (rc == NGX_ABORT) {
        return;
    }

    if (rc == NGX_DECLINED) {
        if (e->why == 0) {
            return;
        }

        ngx_log_error(NGX_LOG_INFO, log, 0,
                      "traffic_shift: server %V in upstream \"%V\" not "
                      "ejected after %*s: %ui of at most %ui servers "
                      "ejected, %ui live", &server->name, &ups->uscf->host,
                      p - text, text, e->ejected, e->allowed, e->live);
        return;
    }

    ngx_log_error(NGX_LOG_WARN, log, 0,
                  "traffic_shift: server %V in upstream \"%V\" ejected for "
                  "%Mms after %*s (ejection %ui in a row; %ui of at most "
                  "%ui servers ejected, %ui live)",
                  &server->name, &ups->uscf->host, e->duration,
                  p - text, text, e->level, e->ejected, e->allowed, e->live);

    ngx_http_traffic_shift_outlier_rollback(mcf, ups, server, log);
}


/* an ejection in the canary pool of a progressing rollout rolls it back */

static void
ngx_http_traffic_shift_outlier_rollback(
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_upstream_t *ups,
    ngx_http_traffic_shift_server_t *server, ngx_log_t *log)
{
    u_char                            text[NGX_HTTP_TS_RO_REASON_LEN];
    u_char                           *p;
    ngx_uint_t                        i, active;
    ngx_http_traffic_shift_pool_t    *pool;
    ngx_http_traffic_shift_change_t   change;
    ngx_http_traffic_shift_split_t  **splitp;

    splitp = mcf->splits.elts;

    for (i = 0; i < mcf->splits.nelts; i++) {
        active = splitp[i]->sh ? splitp[i]->sh->rollout.active : 0;

        if (active == 0 || active > splitp[i]->pools.nelts
            || splitp[i]->sh->layout != splitp[i]->layout)
        {
            continue;
        }

        pool = (ngx_http_traffic_shift_pool_t *) splitp[i]->pools.elts
               + active - 1;

        if (pool->ups != ups) {
            continue;
        }

        p = ngx_snprintf(text, sizeof(text),
                         "outlier ejection: server %V of pool \"%V\" "
                         "ejected", &server->name, &pool->name);

        if (ngx_http_traffic_shift_zone_rollout_end(mcf, splitp[i], 0,
                                                    NGX_HTTP_TS_RO_ROLLED_BACK,
                                                    NULL, text, p - text, 0,
                                                    &change)
            != NGX_OK)
        {
            continue;
        }

        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "traffic_shift \"%V\": rollout rolled back, %*s; "
                      "weights from before the rollout restored, "
                      "generation %ui", &splitp[i]->name, p - text, text,
                      change.new.generation);
    }
}


ngx_int_t
ngx_http_traffic_shift_outlier_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                               i, eject;
    ngx_http_traffic_shift_upstream_t      **upsp;
    ngx_http_traffic_shift_main_conf_t      *mcf;
    ngx_http_traffic_shift_outlier_timer_t  *t;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    mcf = ngx_http_cycle_get_module_main_conf(cycle,
                                              ngx_http_traffic_shift_module);

    if (mcf == NULL || mcf->sh == NULL) {
        return NGX_OK;
    }

    eject = 0;
    upsp = mcf->upstreams.elts;

    for (i = 0; i < mcf->upstreams.nelts; i++) {
        if (upsp[i]->outlier && upsp[i]->outlier->eject) {
            eject = 1;
        }
    }

    if (!eject) {
        return NGX_OK;
    }

    t = ngx_pcalloc(cycle->pool,
                    sizeof(ngx_http_traffic_shift_outlier_timer_t));
    if (t == NULL) {
        return NGX_ERROR;
    }

    t->mcf = mcf;
    t->timer.handler = ngx_http_traffic_shift_outlier_timer;
    t->timer.data = t;
    t->timer.log = cycle->log;
    t->timer.cancelable = 1;

    mcf->outlier = t;

    ngx_add_timer(&t->timer, 1 + ngx_random() % NGX_HTTP_TS_OUTLIER_TICK);

    return NGX_OK;
}


void
ngx_http_traffic_shift_outlier_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_traffic_shift_main_conf_t      *mcf;
    ngx_http_traffic_shift_outlier_timer_t  *t;

    mcf = ngx_http_cycle_get_module_main_conf(cycle,
                                              ngx_http_traffic_shift_module);

    if (mcf == NULL || mcf->outlier == NULL) {
        return;
    }

    t = mcf->outlier;

    if (t->timer.timer_set) {
        ngx_del_timer(&t->timer);
    }

    mcf->outlier = NULL;
}


static void
ngx_http_traffic_shift_outlier_timer(ngx_event_t *ev)
{
    ngx_http_traffic_shift_outlier_timer_t *t = ev->data;

    if (ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    ngx_http_traffic_shift_zone_outlier_sweep(t->mcf, ev->log);

    ngx_add_timer(ev, NGX_HTTP_TS_OUTLIER_TICK);
}
