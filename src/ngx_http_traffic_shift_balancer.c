
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#include "ngx_http_traffic_shift_balancer.h"
#include "ngx_http_traffic_shift_outlier.h"
#include "ngx_http_traffic_shift_zone.h"
#include "ngx_http_traffic_shift_lib.h"


/* the request path's cheap test before a call to refresh */
#define ngx_http_traffic_shift_stale(mcf)                                    \
    ((mcf)->sh && (mcf)->sh->version != (mcf)->version)


static ngx_int_t ngx_http_traffic_shift_init_peer(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us);
static void ngx_http_traffic_shift_refresh(
    ngx_http_traffic_shift_main_conf_t *mcf, ngx_log_t *log);
static ngx_int_t ngx_http_traffic_shift_upstream_init_peer(
    ngx_http_request_t *r, ngx_http_upstream_srv_conf_t *us);
static void ngx_http_traffic_shift_upstream_sync(
    ngx_http_traffic_shift_upstream_t *ups, ngx_log_t *log);
static void ngx_http_traffic_shift_ramp_until(
    ngx_http_traffic_shift_upstream_t *ups);
static void ngx_http_traffic_shift_peers_sync(
    ngx_http_traffic_shift_upstream_t *ups,
    ngx_http_upstream_rr_peers_t *peers, ngx_uint_t primary, ngx_uint_t *n,
    ngx_uint_t *fail_open);
static ngx_int_t ngx_http_traffic_shift_snapshot(
    ngx_http_traffic_shift_split_t *split, ngx_log_t *log);
static ngx_http_traffic_shift_ctx_t *ngx_http_traffic_shift_decide(
    ngx_http_request_t *r, ngx_http_traffic_shift_split_t *split);
static ngx_int_t ngx_http_traffic_shift_route(ngx_http_request_t *r,
    ngx_http_traffic_shift_split_t *split);
static ngx_int_t ngx_http_traffic_shift_sticky(ngx_http_request_t *r,
    ngx_http_traffic_shift_split_t *split);
static ngx_uint_t ngx_http_traffic_shift_swrr(
    ngx_http_traffic_shift_split_t *split);
static ngx_uint_t ngx_http_traffic_shift_gcd(ngx_uint_t a, ngx_uint_t b);
static void ngx_http_traffic_shift_count_attempts(void *data);


/* the composite upstream: pools are resolved once every upstream{} exists */

ngx_int_t
ngx_http_traffic_shift_init_upstream(ngx_conf_t *cf,
    ngx_http_upstream_srv_conf_t *us)
{
    ngx_uint_t                        i, j;
    ngx_http_upstream_srv_conf_t    **uscfp, *uscf;
    ngx_http_traffic_shift_pool_t    *pool;
    ngx_http_traffic_shift_split_t   *split;
    ngx_http_upstream_main_conf_t    *umcf;

    split = us->peer.data;
    umcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_upstream_module);
    uscfp = umcf->upstreams.elts;
    pool = split->pools.elts;

    for (i = 0; i < split->pools.nelts; i++) {

        uscf = NULL;

        for (j = 0; j < umcf->upstreams.nelts; j++) {
            if ((uscfp[j]->flags & NGX_HTTP_UPSTREAM_CREATE)
                && uscfp[j]->host.len == pool[i].upstream.len
                && ngx_strncmp(uscfp[j]->host.data, pool[i].upstream.data,
                               pool[i].upstream.len)
                   == 0)
            {
                uscf = uscfp[j];
                break;
            }
        }

        if (uscf == NULL) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "unknown upstream \"%V\" in pool \"%V\" in %s:%ui",
                          &pool[i].upstream, &pool[i].name,
                          pool[i].file_name, pool[i].line);
            return NGX_ERROR;
        }

        if (uscf->peer.init_upstream == ngx_http_traffic_shift_init_upstream
            || uscf->srv_conf == NULL)
        {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "pool \"%V\" must name an upstream{} block, "
                          "\"%V\" is a traffic_shift in %s:%ui",
                          &pool[i].name, &pool[i].upstream,
                          pool[i].file_name, pool[i].line);
            return NGX_ERROR;
        }

        pool[i].ups = ngx_http_traffic_shift_upstream_add(cf, uscf);
        if (pool[i].ups == NULL) {
            return NGX_ERROR;
        }
    }

    us->peer.init = ngx_http_traffic_shift_init_peer;

    return NGX_OK;
}


/* an upstream{} block whose servers the module tracks */

ngx_http_traffic_shift_upstream_t *
ngx_http_traffic_shift_upstream_add(ngx_conf_t *cf,
    ngx_http_upstream_srv_conf_t *uscf)
{
    ngx_uint_t                           i, j, n, r, backup;
    ngx_http_upstream_server_t          *server;
    ngx_http_traffic_shift_server_t     *ts;
    ngx_http_traffic_shift_upstream_t   *ups, **upsp;
    ngx_http_traffic_shift_srv_conf_t   *scf;
    ngx_http_traffic_shift_main_conf_t  *mcf;

    scf = ngx_http_conf_upstream_srv_conf(uscf, ngx_http_traffic_shift_module);

    if (scf->ups) {
        return scf->ups;
    }

    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_traffic_shift_module);

    ups = ngx_pcalloc(cf->pool, sizeof(ngx_http_traffic_shift_upstream_t));
    if (ups == NULL) {
        return NULL;
    }

    ups->uscf = uscf;
    ups->health = scf->health;
    ups->outlier = scf->outlier;
    ups->live = 1;

    server = uscf->servers->elts;
    n = 0;

    for (i = 0; i < uscf->servers->nelts; i++) {

        /*
         * "server NAME resolve": its address is a placeholder, never used;
         * the addresses come and go at run time, after the configured ones
         */

        if (ngx_http_traffic_shift_server_resolves(&server[i])) {
            ups->resolve = 1;
            continue;
        }

        n += server[i].naddrs;
    }

    r = ups->resolve ? NGX_HTTP_TS_MAX_RESOLVED : 0;

    ups->servers = ngx_pcalloc(cf->pool,
                            (n + r) * sizeof(ngx_http_traffic_shift_server_t));
    if (n + r && ups->servers == NULL) {
        return NULL;
    }

    if (r) {
        ups->addrs = ngx_pcalloc(cf->pool,
                                 r * sizeof(ngx_http_traffic_shift_addr_t));
        if (ups->addrs == NULL) {
            return NULL;
        }
    }

    /* in the order of round robin's peers: primary servers, then backup */

    ts = ups->servers;

    for (backup = 0; backup < 2; backup++) {
        for (i = 0; i < uscf->servers->nelts; i++) {

            if (server[i].backup != backup
                || ngx_http_traffic_shift_server_resolves(&server[i]))
            {
                continue;
            }

            for (j = 0; j < server[i].naddrs; j++) {
                ts->name = server[i].addrs[j].name;
                ts->sockaddr = server[i].addrs[j].sockaddr;
                ts->socklen = server[i].addrs[j].socklen;
                ts->conf_down = server[i].down;
                ts->backup = backup;
                ts++;
            }
        }
    }

    ups->nservers = n;
    ups->nconf = n;

    upsp = ngx_array_push(&mcf->upstreams);
    if (upsp == NULL) {
        return NULL;
    }

    *upsp = ups;
    scf->ups = ups;

    return ups;
}


/* run once every upstream's own init_upstream has set its peer.init */

ngx_int_t
ngx_http_traffic_shift_upstream_wrap(ngx_conf_t *cf,
    ngx_http_traffic_shift_upstream_t *ups)
{
    if (ups->original_init_peer) {
        return NGX_OK;
    }

    ups->original_init_peer = ups->uscf->peer.init;
    ups->uscf->peer.init = ngx_http_traffic_shift_upstream_init_peer;

    return NGX_OK;
}


static ngx_int_t
ngx_http_traffic_shift_upstream_init_peer(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us)
{
    ngx_http_traffic_shift_srv_conf_t   *scf;
    ngx_http_traffic_shift_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_traffic_shift_module);

    if (ngx_http_traffic_shift_stale(mcf)) {
        ngx_http_traffic_shift_refresh(mcf, r->connection->log);
    }

    scf = ngx_http_conf_upstream_srv_conf(us, ngx_http_traffic_shift_module);

    if (scf->ups->outlier) {
        return ngx_http_traffic_shift_outlier_init_peer(r, scf->ups);
    }

    return scf->ups->original_init_peer(r, us);
}


/*
 * Brings this worker's copy of the state up to the zone's version: the
 * peers' down flags of every tracked upstream, then the pool snapshots.
 */

static void
ngx_http_traffic_shift_refresh(ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_log_t *log)
{
    ngx_uint_t                           i, version, again;
    ngx_http_traffic_shift_split_t     **splitp;
    ngx_http_traffic_shift_upstream_t  **upsp;

    if (mcf->sh == NULL) {
        return;
    }

    version = mcf->sh->version;

    if (version == mcf->version) {
        return;
    }

    ngx_memory_barrier();

    upsp = mcf->upstreams.elts;

    for (i = 0; i < mcf->upstreams.nelts; i++) {
        (void) ngx_http_traffic_shift_zone_discover(mcf, upsp[i], log);
        ngx_http_traffic_shift_upstream_sync(upsp[i], log);
    }

    splitp = mcf->splits.elts;
    again = 0;

    for (i = 0; i < mcf->splits.nelts; i++) {
        if (ngx_http_traffic_shift_snapshot(splitp[i], log) == NGX_AGAIN) {
            again = 1;
        }
    }

    /* a writer was inside its section: look again on the next request */

    if (!again) {
        mcf->version = version;
    }
}


static void
ngx_http_traffic_shift_upstream_sync(ngx_http_traffic_shift_upstream_t *ups,
    ngx_log_t *log)
{
    ngx_uint_t                     i, n, live, fail_open;
    ngx_http_upstream_rr_peers_t  *peers, *list;

    live = ngx_http_traffic_shift_zone_live(ups);

    /*
     * every server down: fail open, let round robin use them all; an
     * upstream with no server (nothing resolved yet) has none to open
     */

    fail_open = (live == 0);

    if (fail_open && ups->live && ups->nservers) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "traffic_shift: no live server in upstream \"%V\", "
                      "failing open", &ups->uscf->host);
    }

    ups->live = (live != 0);

    peers = ups->uscf->peer.data;

    if (peers == NULL) {
        return;
    }

    n = 0;
    ups->primary_live = 0;

    for (i = 0; i < ups->nservers; i++) {
        ups->servers[i].peer_name = NULL;
        ups->servers[i].position = -1;
    }

    /* shared peers (zone): each list under its own write lock */

    for (list = peers; list; list = list->next) {
        ngx_http_upstream_rr_peers_wlock(list);
        ngx_http_traffic_shift_peers_sync(ups, list, list == peers, &n,
                                          &fail_open);
        ngx_http_upstream_rr_peers_unlock(list);
    }

    if (ups->outlier && ups->outlier->slow_start) {
        ngx_http_traffic_shift_ramp_until(ups);
    }
}


/* per worker: when the last slow start of the upstream's servers ends */

static void
ngx_http_traffic_shift_ramp_until(ngx_http_traffic_shift_upstream_t *ups)
{
    ngx_msec_t                           now, until;
    ngx_uint_t                           i;
    ngx_http_traffic_shift_sh_server_t  *sh;

    now = ngx_current_msec;
    ups->ramp_until = now;

    for (i = 0; i < ups->nservers; i++) {
        sh = ups->servers[i].sh;

        if (sh == NULL || !sh->ramp) {
            continue;
        }

        until = sh->up_msec + ups->outlier->slow_start;

        if ((ngx_msec_int_t) (until - ups->ramp_until) > 0) {
            ups->ramp_until = until;
        }
    }
}


static void
ngx_http_traffic_shift_peers_sync(ngx_http_traffic_shift_upstream_t *ups,
    ngx_http_upstream_rr_peers_t *peers, ngx_uint_t primary, ngx_uint_t *n,
    ngx_uint_t *fail_open)
{
    ngx_int_t                         position;
    ngx_uint_t                        i, down;
    ngx_http_upstream_rr_peer_t      *peer;
    ngx_http_traffic_shift_server_t  *server;

    position = -1;

    for (peer = peers->peer; peer; peer = peer->next) {

        position++;

        /* peers follow the servers' order; search only if they do not */

        server = NULL;

        if (*n < ups->nservers
            && ngx_cmp_sockaddr(peer->sockaddr, peer->socklen,
                                ups->servers[*n].sockaddr,
                                ups->servers[*n].socklen, 1)
               == NGX_OK)
        {
            server = &ups->servers[(*n)++];

        } else {
            for (i = 0; i < ups->nservers; i++) {
                if (ngx_cmp_sockaddr(peer->sockaddr, peer->socklen,
                                     ups->servers[i].sockaddr,
                                     ups->servers[i].socklen, 1)
                    == NGX_OK)
                {
                    server = &ups->servers[i];
                    break;
                }
            }
        }

        if (server == NULL) {
            continue;
        }

        /*
         * a draining server keeps its own flag, which lets bound clients
         * in; probes and admin marks add the failed one
         */

        down = !*fail_open
               && (server->sh->admin_down
                   || server->sh->ejected
                   || server->sh->state == NGX_HTTP_TS_DOWN);

        ngx_http_traffic_shift_peer_set_down(peer, server->conf_down, down);

        /* what outlier detection and slow start look up per request */

        if (server->peer_name == NULL) {
            server->peer_name = &peer->name;
        }

        if (primary) {
            server->position = position;
            ups->primary_live += (peer->down == 0);
        }
    }
}


static ngx_int_t
ngx_http_traffic_shift_snapshot(ngx_http_traffic_shift_split_t *split,
    ngx_log_t *log)
{
    ngx_int_t                           rc;
    ngx_uint_t                          i, n, g, sum, cum, last, changed;
    ngx_uint_t                          eligible[NGX_HTTP_TS_MAX_POOLS];
    ngx_http_traffic_shift_pool_t      *pool;
    ngx_http_traffic_shift_weights_t    w;
    ngx_http_traffic_shift_snapshot_t  *snap;

    snap = &split->snap;
    pool = split->pools.elts;
    n = split->pools.nelts;

    rc = ngx_http_traffic_shift_zone_read(split, &w);

    if (rc != NGX_OK) {
        if (snap->valid) {
            /* keep the last consistent weights */
            return rc;
        }

        w.generation = 0;

        for (i = 0; i < n; i++) {
            w.weights[i] = pool[i].weight;
        }
    }

    /* pools with weight and a live server; none: by weight alone */

    sum = 0;

    for (i = 0; i < n; i++) {
        eligible[i] = pool[i].ups->live ? w.weights[i] : 0;
        sum += eligible[i];
    }

    if (sum == 0) {
        for (i = 0; i < n; i++) {
            eligible[i] = w.weights[i];
            sum += eligible[i];
        }

        if (!snap->fail_open) {
            ngx_log_error(NGX_LOG_WARN, log, 0,
                          "traffic_shift \"%V\": no weighted pool has a live "
                          "server, choosing by weight alone", &split->name);
        }

        snap->fail_open = 1;

    } else {
        snap->fail_open = 0;
    }

    /* sticky ranges over 0..9999, in configuration order, last at the top */

    cum = 0;
    last = n;

    for (i = 0; i < n; i++) {
        cum += eligible[i];
        snap->bound[i] = cum * NGX_HTTP_TS_TOTAL / sum;

        if (eligible[i]) {
            last = i;
        }
    }

    if (last < n) {
        snap->bound[last] = NGX_HTTP_TS_TOTAL;
    }

    /* weighted round robin on the smallest integer ratios */

    g = 0;

    for (i = 0; i < n; i++) {
        if (eligible[i]) {
            g = ngx_http_traffic_shift_gcd(g, eligible[i]);
        }
    }

    changed = !snap->valid;

    for (i = 0; i < n; i++) {
        if (eligible[i]) {
            eligible[i] /= g;
        }

        if (eligible[i] != snap->eligible[i]) {
            changed = 1;
        }
    }

    if (changed) {
        snap->total = 0;

        for (i = 0; i < n; i++) {
            snap->eligible[i] = eligible[i];
            snap->current[i] = 0;
            snap->total += eligible[i];
        }
    }

    snap->valid = 1;

    return rc;
}


static ngx_uint_t
ngx_http_traffic_shift_gcd(ngx_uint_t a, ngx_uint_t b)
{
    ngx_uint_t  t;

    while (b) {
        t = a % b;
        a = b;
        b = t;
    }

    return a;
}


static ngx_int_t
ngx_http_traffic_shift_init_peer(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us)
{
    ngx_int_t                            rc;
    ngx_uint_t                           decided;
    ngx_http_upstream_t                 *u;
    ngx_http_upstream_srv_conf_t        *uscf;
    ngx_pool_cleanup_t                  *cln;
    ngx_http_traffic_shift_ctx_t        *ctx;
    ngx_http_traffic_shift_split_t      *split;
    ngx_http_traffic_shift_sh_split_t   *rec;

    split = us->peer.data;

    ctx = ngx_http_get_module_ctx(r, ngx_http_traffic_shift_module);

    decided = 0;

    if (ctx == NULL || ctx->split != split) {
        ctx = ngx_http_traffic_shift_decide(r, split);
        if (ctx == NULL) {
            return NGX_ERROR;
        }

        decided = 1;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "traffic_shift \"%V\": pool \"%V\"",
                   &split->name, &ctx->pool->name);

    /* the pool's balancer sees its own upstream, as with a direct proxy */

    u = r->upstream;
    uscf = ctx->pool->ups->uscf;

    u->upstream = uscf;
    u->peer.data = NULL;

    /*
     * the decision has just brought this worker up to date: skip our
     * wrapper of the pool's peer.init, which would check it again
     */

    if (decided
        && uscf->peer.init == ngx_http_traffic_shift_upstream_init_peer)
    {
        rc = ctx->pool->ups->outlier
             ? ngx_http_traffic_shift_outlier_init_peer(r, ctx->pool->ups)
             : ctx->pool->ups->original_init_peer(r, uscf);

    } else {
        rc = uscf->peer.init(r, uscf);
    }

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    if (!ctx->counted && !ngx_exiting) {
        rec = split->sh;

        if (rec && rec->layout == split->layout) {
            (void) ngx_atomic_fetch_add(&rec->pools[ctx->index].requests, 1);
            ctx->counted = 1;

            /*
             * the pool's attempts are the states from here on; they are
             * counted when the request's pool goes, after the log phase
             * and whatever internal redirect (which drops the ctx)
             */

            ctx->request = r;
            ctx->first_state = r->upstream_states
                               ? r->upstream_states->nelts : 0;

            cln = ngx_pool_cleanup_add(r->pool, 0);
            if (cln) {
                cln->handler = ngx_http_traffic_shift_count_attempts;
                cln->data = ctx;
            }
        }
    }

    return NGX_OK;
}


static ngx_http_traffic_shift_ctx_t *
ngx_http_traffic_shift_decide(ngx_http_request_t *r,
    ngx_http_traffic_shift_split_t *split)
{
    ngx_int_t                            i;
    ngx_http_traffic_shift_ctx_t        *ctx;
    ngx_http_traffic_shift_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_traffic_shift_module);

    if (ngx_http_traffic_shift_stale(mcf)) {
        ngx_http_traffic_shift_refresh(mcf, r->connection->log);
    }

    if (!split->snap.valid) {
        (void) ngx_http_traffic_shift_snapshot(split, r->connection->log);
    }

    i = NGX_DECLINED;

    if (split->route) {
        i = ngx_http_traffic_shift_route(r, split);
    }

    if (i == NGX_DECLINED && split->sticky) {
        i = ngx_http_traffic_shift_sticky(r, split);
    }

    if (i == NGX_ERROR) {
        return NULL;
    }

    if (i == NGX_DECLINED) {
        i = ngx_http_traffic_shift_swrr(split);
    }

    /* every field is set below: no need to zero it first */

    ctx = ngx_palloc(r->pool, sizeof(ngx_http_traffic_shift_ctx_t));
    if (ctx == NULL) {
        return NULL;
    }

    ctx->split = split;
    ctx->index = i;
    ctx->pool = (ngx_http_traffic_shift_pool_t *) split->pools.elts + i;
    ctx->counted = 0;
    ctx->first_state = 0;

    ngx_http_set_ctx(r, ctx, ngx_http_traffic_shift_module);

    return ctx;
}


static ngx_int_t
ngx_http_traffic_shift_route(ngx_http_request_t *r,
    ngx_http_traffic_shift_split_t *split)
{
    ngx_str_t                       value;
    ngx_uint_t                      i;
    ngx_http_traffic_shift_pool_t  *pool;

    if (ngx_http_complex_value(r, split->route, &value) != NGX_OK) {
        return NGX_ERROR;
    }

    if (value.len == 0) {
        return NGX_DECLINED;
    }

    pool = split->pools.elts;

    for (i = 0; i < split->pools.nelts; i++) {
        if (pool[i].name.len == value.len
            && ngx_strncmp(pool[i].name.data, value.data, value.len) == 0)
        {
            return pool[i].ups->live ? (ngx_int_t) i : NGX_DECLINED;
        }
    }

    return NGX_DECLINED;
}


static ngx_int_t
ngx_http_traffic_shift_sticky(ngx_http_request_t *r,
    ngx_http_traffic_shift_split_t *split)
{
    uint32_t                            hash;
    ngx_str_t                           value;
    ngx_uint_t                          i;
    ngx_http_traffic_shift_snapshot_t  *snap;

    if (ngx_http_complex_value(r, split->sticky, &value) != NGX_OK) {
        return NGX_ERROR;
    }

    if (value.len == 0) {
        return NGX_DECLINED;
    }

    hash = ngx_murmur_hash2(value.data, value.len)
           % NGX_HTTP_TS_TOTAL;

    snap = &split->snap;

    for (i = 0; i < split->pools.nelts; i++) {
        if (snap->eligible[i] && hash < snap->bound[i]) {
            return i;
        }
    }

    return NGX_DECLINED;
}


static ngx_uint_t
ngx_http_traffic_shift_swrr(ngx_http_traffic_shift_split_t *split)
{
    ngx_uint_t                          i, n, best;
    ngx_http_traffic_shift_snapshot_t  *snap;

    snap = &split->snap;
    n = split->pools.nelts;
    best = n;

    for (i = 0; i < n; i++) {

        if (snap->eligible[i] == 0) {
            continue;
        }

        snap->current[i] += snap->eligible[i];

        if (best == n || snap->current[i] > snap->current[best]) {
            best = i;
        }
    }

    if (best == n) {
        /* unreachable: the configured weights total 100 */
        return 0;
    }

    snap->current[best] -= snap->total;

    return best;
}


ngx_int_t
ngx_http_traffic_shift_pool_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_upstream_t           *u;
    ngx_http_traffic_shift_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_traffic_shift_module);

    if (ctx && ctx->split == NULL) {
        /* an admin API request */
        ctx = NULL;

    } else if (ctx == NULL) {

        /* evaluated before the upstream connects: decide now, once */

        u = r->upstream;

        if (u && u->conf && u->conf->upstream
            && u->conf->upstream->peer.init == ngx_http_traffic_shift_init_peer)
        {
            ctx = ngx_http_traffic_shift_decide(r,
                                                u->conf->upstream->peer.data);
            if (ctx == NULL) {
                return NGX_ERROR;
            }
        }
    }

    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    if (ctx == NULL) {
        v->len = 0;
        v->data = (u_char *) "";
        return NGX_OK;
    }

    v->len = ctx->pool->name.len;
    v->data = ctx->pool->name.data;

    return NGX_OK;
}


ngx_int_t
ngx_http_traffic_shift_log_handler(ngx_http_request_t *r)
{
    ngx_uint_t                          status;
    ngx_http_traffic_shift_ctx_t       *ctx;
    ngx_http_traffic_shift_sh_split_t  *rec;

    ctx = ngx_http_get_module_ctx(r, ngx_http_traffic_shift_module);

    if (ctx == NULL || !ctx->counted || ngx_exiting) {
        return NGX_OK;
    }

    status = r->headers_out.status;

    if (status < 100 || status > 599) {
        return NGX_OK;
    }

    rec = ctx->split->sh;

    if (rec->layout == ctx->split->layout) {
        (void) ngx_atomic_fetch_add(
                   &rec->pools[ctx->index].responses[status / 100 - 1], 1);
    }

    return NGX_OK;
}


/*
 * The upstream's own view of each attempt in the pool, whatever the
 * client got (error_page, proxy_intercept_errors): its response time, and
 * errors as $upstream_status shows them, 5xx including the 502 and 504 of
 * connect errors, timeouts and invalid headers.  Attempts end at the
 * first state of another upstream (after an internal redirect).  A pool
 * cleanup of the request: a few atomic adds, no lock.
 */

static void
ngx_http_traffic_shift_count_attempts(void *data)
{
    ngx_http_traffic_shift_ctx_t *ctx = data;

    ngx_uint_t                           i, n, errors;
    ngx_msec_t                           ms;
    ngx_http_request_t                  *r;
    ngx_http_upstream_state_t           *state;
    ngx_http_traffic_shift_sh_pool_t    *shp;
    ngx_http_traffic_shift_sh_split_t   *rec;
    ngx_http_traffic_shift_main_conf_t  *mcf;

    r = ctx->request;
    rec = ctx->split->sh;

    if (r->upstream_states == NULL || ngx_exiting
        || rec->layout != ctx->split->layout)
    {
        return;
    }

    shp = &rec->pools[ctx->index];
    state = r->upstream_states->elts;
    n = 0;
    errors = 0;

    for (i = ctx->first_state; i < r->upstream_states->nelts; i++) {

        if (state[i].status == 0) {
            if (state[i].peer == NULL) {
                break;
            }

            /* no answer: the client went away first */
            continue;
        }

        ms = state[i].response_time;

        if (ms == (ngx_msec_t) -1) {
            ms = 0;
        }

        (void) ngx_atomic_fetch_add(
                   &shp->buckets[ngx_http_traffic_shift_bucket(ms)], 1);
        (void) ngx_atomic_fetch_add(&shp->time_sum, ms);

        errors += (state[i].status >= NGX_HTTP_INTERNAL_SERVER_ERROR);
        n++;
    }

    if (errors) {
        (void) ngx_atomic_fetch_add(&shp->errors, errors);
    }

    /* the canary of a progressing rollout: the fast-abort window */

    if (n && rec->rollout.active == ctx->index + 1) {
        mcf = ngx_http_get_module_main_conf(r, ngx_http_traffic_shift_module);

        ngx_http_traffic_shift_zone_rollout_count(mcf, ctx->split, n, errors,
                                                  r->connection->log);
    }
}
