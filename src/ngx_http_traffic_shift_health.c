
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#include "ngx_http_traffic_shift_health_probe.h"


/*
 * Active health checks.  Every worker keeps a timer per checked server;
 * the worker holding the server's lease in the shared zone probes it, at
 * most once per interval across all workers: a probe starts only under the
 * zone's mutex, when the last one (by any worker) started an interval ago.
 * The lease expires one interval plus jitter plus timeout after the probe
 * started, so that another worker takes over when its owner dies.
 *
 * Servers resolved at run time get their probes from a timer that reads
 * the upstreams' peers again once a second: a probe for each address
 * resolved, dropped when it goes away.  Each such probe keeps a copy of
 * the server it checks.
 */


/* a probe of a resolved address, on the heap */

typedef struct {
    ngx_http_traffic_shift_probe_t         probe;
    ngx_http_traffic_shift_server_t        server;
    ngx_http_traffic_shift_addr_t          addr;

    /* the address with the port= of health_check */
    ngx_http_traffic_shift_addr_t          to;

    ngx_queue_t                            queue;
    ngx_uint_t                             mark;
} ngx_http_traffic_shift_resolved_probe_t;


/* a worker's health checker, in the cycle's pool */

typedef struct {
    ngx_uint_t                             nprobes;
    ngx_http_traffic_shift_probe_t        *probes;

    /* servers resolved at run time: the timer, their probes, and the
     * count of changes of each upstream's list the probes follow */
    ngx_http_traffic_shift_main_conf_t    *mcf;
    ngx_event_t                            resolve;
    ngx_queue_t                            resolved;
    ngx_uint_t                            *changes;
} ngx_http_traffic_shift_health_t;


static void ngx_http_traffic_shift_health_reset(
    ngx_http_traffic_shift_main_conf_t *mcf);
static ngx_int_t ngx_http_traffic_shift_health_probe_init(ngx_cycle_t *cycle,
    ngx_http_traffic_shift_probe_t *probe, ngx_http_traffic_shift_addr_t *to);
static void ngx_http_traffic_shift_health_resolve(ngx_event_t *ev);
static ngx_int_t ngx_http_traffic_shift_health_follow(
    ngx_http_traffic_shift_health_t *hs,
    ngx_http_traffic_shift_upstream_t *ups);
static void ngx_http_traffic_shift_health_drop(
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_resolved_probe_t *rp);
static void ngx_http_traffic_shift_health_start(
    ngx_http_traffic_shift_probe_t *probe);
static u_char *ngx_http_traffic_shift_health_log_error(ngx_log_t *log,
    u_char *buf, size_t len);

static void ngx_http_traffic_shift_health_timer(ngx_event_t *ev);
static ngx_int_t ngx_http_traffic_shift_health_lease(
    ngx_http_traffic_shift_probe_t *probe, ngx_msec_t *delay);


ngx_int_t
ngx_http_traffic_shift_health_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                            i, j, n, resolve;
    ngx_http_traffic_shift_probe_t       *probe;
    ngx_http_traffic_shift_health_t      *hs;
    ngx_http_traffic_shift_upstream_t   **upsp;
    ngx_http_traffic_shift_main_conf_t   *mcf;

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

    ngx_http_traffic_shift_health_reset(mcf);

    upsp = mcf->upstreams.elts;
    n = 0;
    resolve = 0;

    for (i = 0; i < mcf->upstreams.nelts; i++) {
        resolve |= upsp[i]->resolve;

        if (upsp[i]->health == NULL) {
            continue;
        }

        for (j = 0; j < upsp[i]->nconf; j++) {
            n += !ngx_http_traffic_shift_conf_failed(
                                           upsp[i]->servers[j].conf_down);
        }
    }

    if (n == 0 && !resolve) {
        return NGX_OK;
    }

    hs = ngx_pcalloc(cycle->pool, sizeof(ngx_http_traffic_shift_health_t));
    if (hs == NULL) {
        return NGX_ERROR;
    }

    hs->mcf = mcf;
    ngx_queue_init(&hs->resolved);

    if (n) {
        hs->probes = ngx_pcalloc(cycle->pool,
                                 n * sizeof(ngx_http_traffic_shift_probe_t));
        if (hs->probes == NULL) {
            return NGX_ERROR;
        }
    }

    probe = hs->probes;

    for (i = 0; i < mcf->upstreams.nelts; i++) {
        if (upsp[i]->health == NULL) {
            continue;
        }

        for (j = 0; j < upsp[i]->nconf; j++) {

            /*
             * a server down in the configuration stays down: not probed; a
             * draining one is, its bound clients still use it
             */

            if (ngx_http_traffic_shift_conf_failed(
                                           upsp[i]->servers[j].conf_down))
            {
                continue;
            }

            probe->mcf = mcf;
            probe->ups = upsp[i];
            probe->server = &upsp[i]->servers[j];
            probe->conf = upsp[i]->health;

            if (ngx_http_traffic_shift_health_probe_init(cycle, probe, NULL)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            probe++;
        }
    }

    hs->nprobes = n;
    mcf->health = hs;

    for (i = 0; i < hs->nprobes; i++) {
        ngx_http_traffic_shift_health_start(&hs->probes[i]);
    }

    if (resolve) {
        hs->changes = ngx_pcalloc(cycle->pool,
                                  mcf->upstreams.nelts * sizeof(ngx_uint_t));
        if (hs->changes == NULL) {
            return NGX_ERROR;
        }

        hs->resolve.handler = ngx_http_traffic_shift_health_resolve;
        hs->resolve.data = hs;
        hs->resolve.log = cycle->log;
        hs->resolve.cancelable = 1;

        ngx_add_timer(&hs->resolve, 1);
    }

    return NGX_OK;
}


/* the first probes are spread over an interval */

static void
ngx_http_traffic_shift_health_start(ngx_http_traffic_shift_probe_t *probe)
{
    ngx_msec_t  delay;

    delay = 1 + ngx_random() % probe->conf->interval;

    if (probe->conf->jitter) {
        delay += ngx_random() % (probe->conf->jitter + 1);
    }

    ngx_add_timer(&probe->timer, delay);
}


/*
 * Once a second: the servers resolved at run time, read again from the
 * peers when they changed; their probes follow; the zone keeps the
 * records of the addresses this worker tracks.
 */

static void
ngx_http_traffic_shift_health_resolve(ngx_event_t *ev)
{
    ngx_uint_t                            i;
    ngx_http_traffic_shift_health_t      *hs;
    ngx_http_traffic_shift_upstream_t   **upsp;
    ngx_http_traffic_shift_main_conf_t   *mcf;

    hs = ev->data;
    mcf = hs->mcf;

    if (ngx_exiting || ngx_terminate || ngx_quit
        || ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_traffic_shift_module)
           != mcf)
    {
        return;
    }

    upsp = mcf->upstreams.elts;

    for (i = 0; i < mcf->upstreams.nelts; i++) {
        if (!upsp[i]->resolve) {
            continue;
        }

        (void) ngx_http_traffic_shift_zone_discover(mcf, upsp[i], ev->log);

        if (upsp[i]->health && hs->changes[i] != upsp[i]->changes
            && ngx_http_traffic_shift_health_follow(hs, upsp[i]) == NGX_OK)
        {
            hs->changes[i] = upsp[i]->changes;
        }
    }

    ngx_http_traffic_shift_zone_resolved_keep(mcf);

    ngx_add_timer(ev, 1000);
}


/* the probes of an upstream's resolved servers follow its list */

static ngx_int_t
ngx_http_traffic_shift_health_follow(ngx_http_traffic_shift_health_t *hs,
    ngx_http_traffic_shift_upstream_t *ups)
{
    ngx_int_t                                 rc;
    ngx_uint_t                                j;
    ngx_queue_t                              *q, *next;
    ngx_http_traffic_shift_server_t          *server;
    ngx_http_traffic_shift_resolved_probe_t  *rp;

    for (q = ngx_queue_head(&hs->resolved);
         q != ngx_queue_sentinel(&hs->resolved);
         q = ngx_queue_next(q))
    {
        rp = ngx_queue_data(q, ngx_http_traffic_shift_resolved_probe_t,
                            queue);
        rp->mark = 0;
    }

    rc = NGX_OK;

    for (j = ups->nconf; j < ups->nservers; j++) {
        server = &ups->servers[j];

        /* an address also configured has its probe already */

        if (server->duplicate
            || ngx_http_traffic_shift_conf_failed(server->conf_down))
        {
            continue;
        }

        for (q = ngx_queue_head(&hs->resolved);
             q != ngx_queue_sentinel(&hs->resolved);
             q = ngx_queue_next(q))
        {
            rp = ngx_queue_data(q, ngx_http_traffic_shift_resolved_probe_t,
                                queue);

            if (rp->probe.ups == ups
                && rp->server.name.len == server->name.len
                && ngx_memcmp(rp->server.name.data, server->name.data,
                              server->name.len)
                   == 0)
            {
                rp->server.sh = server->sh;
                rp->mark = 1;
                break;
            }
        }

        if (q != ngx_queue_sentinel(&hs->resolved)) {
            continue;
        }

        rp = ngx_calloc(sizeof(ngx_http_traffic_shift_resolved_probe_t),
                        hs->resolve.log);
        if (rp == NULL) {
            rc = NGX_ERROR;
            continue;
        }

        rp->addr = ups->addrs[j - ups->nconf];
        rp->server = *server;
        rp->server.name.data = rp->addr.name;
        rp->server.sockaddr = &rp->addr.sockaddr.sockaddr;

        rp->probe.mcf = hs->mcf;
        rp->probe.ups = ups;
        rp->probe.server = &rp->server;
        rp->probe.conf = ups->health;

        if (ngx_http_traffic_shift_health_probe_init((ngx_cycle_t *) ngx_cycle,
                                                     &rp->probe, &rp->to)
            != NGX_OK)
        {
            ngx_free(rp);
            rc = NGX_ERROR;
            continue;
        }

        rp->mark = 1;
        ngx_queue_insert_tail(&hs->resolved, &rp->queue);

        ngx_http_traffic_shift_health_start(&rp->probe);
    }

    for (q = ngx_queue_head(&hs->resolved);
         q != ngx_queue_sentinel(&hs->resolved);
         q = next)
    {
        next = ngx_queue_next(q);
        rp = ngx_queue_data(q, ngx_http_traffic_shift_resolved_probe_t,
                            queue);

        if (rp->probe.ups == ups && !rp->mark) {
            ngx_http_traffic_shift_health_drop(hs->mcf, rp);
        }
    }

    return rc;
}


/* an address gone, or the worker exiting: no socket, no lease is left */

static void
ngx_http_traffic_shift_health_drop(ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_resolved_probe_t *rp)
{
    if (rp->probe.timer.timer_set) {
        ngx_del_timer(&rp->probe.timer);
    }

    if (rp->probe.busy || rp->probe.pc.connection) {
        ngx_http_traffic_shift_probe_close(&rp->probe);
    }

    ngx_http_traffic_shift_zone_release(mcf, rp->server.sh);

    ngx_queue_remove(&rp->queue);
    ngx_free(rp);
}


/*
 * Servers of upstreams without health_check are not probed: a mark left
 * by the checks of an earlier configuration is cleared.
 */

static void
ngx_http_traffic_shift_health_reset(ngx_http_traffic_shift_main_conf_t *mcf)
{
    ngx_uint_t                            i, j, changed;
    ngx_http_traffic_shift_sh_server_t   *sh;
    ngx_http_traffic_shift_upstream_t   **upsp;

    changed = 0;
    upsp = mcf->upstreams.elts;

    ngx_shmtx_lock(&mcf->shpool->mutex);

    for (i = 0; i < mcf->upstreams.nelts; i++) {
        if (upsp[i]->health) {
            continue;
        }

        for (j = 0; j < upsp[i]->nservers; j++) {
            sh = upsp[i]->servers[j].sh;

            if (sh == NULL || sh->state != NGX_HTTP_TS_DOWN) {
                continue;
            }

            sh->state = NGX_HTTP_TS_UP;
            sh->passes = 0;
            sh->fails = 0;
            changed = 1;
        }
    }

    if (changed) {
        ngx_http_traffic_shift_zone_changed(mcf);
    }

    ngx_shmtx_unlock(&mcf->shpool->mutex);
}


/* "to": where the port= address is kept, or NULL: in the cycle's pool */

static ngx_int_t
ngx_http_traffic_shift_health_probe_init(ngx_cycle_t *cycle,
    ngx_http_traffic_shift_probe_t *probe, ngx_http_traffic_shift_addr_t *to)
{
    u_char                           *p;
    ngx_http_traffic_shift_server_t  *server;

    server = probe->server;

    if (probe->conf->port == 0) {
        probe->sockaddr = server->sockaddr;
        probe->socklen = server->socklen;
        probe->name = server->name;

    } else {
        probe->sockaddr = to ? &to->sockaddr.sockaddr
                             : ngx_palloc(cycle->pool, server->socklen);
        if (probe->sockaddr == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(probe->sockaddr, server->sockaddr, server->socklen);
        probe->socklen = server->socklen;
        ngx_inet_set_port(probe->sockaddr, probe->conf->port);

        p = to ? to->name : ngx_pnalloc(cycle->pool, NGX_SOCKADDR_STRLEN);
        if (p == NULL) {
            return NGX_ERROR;
        }

        probe->name.data = p;
        probe->name.len = ngx_sock_ntop(probe->sockaddr, probe->socklen, p,
                                        NGX_SOCKADDR_STRLEN, 1);
    }

    probe->log = *cycle->log;
    probe->log.handler = ngx_http_traffic_shift_health_log_error;
    probe->log.data = probe;
    probe->log.action = NULL;
    probe->log_level = probe->log.log_level;

    probe->timer.handler = ngx_http_traffic_shift_health_timer;
    probe->timer.data = probe;
    probe->timer.log = cycle->log;
    probe->timer.cancelable = 1;

    return NGX_OK;
}


static u_char *
ngx_http_traffic_shift_health_log_error(ngx_log_t *log, u_char *buf,
    size_t len)
{
    u_char                          *p;
    ngx_http_traffic_shift_probe_t  *probe;

    probe = log->data;

    p = ngx_snprintf(buf, len, " while checking health of server %V",
                     &probe->server->name);

    if (probe->name.data != probe->server->name.data) {
        p = ngx_snprintf(p, buf + len - p, " on %V", &probe->name);
    }

    return ngx_snprintf(p, buf + len - p, " in upstream \"%V\"",
                        &probe->ups->uscf->host);
}


void
ngx_http_traffic_shift_health_exit_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                                i;
    ngx_queue_t                              *q;
    ngx_http_traffic_shift_probe_t           *probe;
    ngx_http_traffic_shift_health_t          *hs;
    ngx_http_traffic_shift_sh_server_t       *sh;
    ngx_http_traffic_shift_main_conf_t       *mcf;
    ngx_http_traffic_shift_resolved_probe_t  *rp;

    mcf = ngx_http_cycle_get_module_main_conf(cycle,
                                              ngx_http_traffic_shift_module);

    if (mcf == NULL || mcf->health == NULL) {
        return;
    }

    hs = mcf->health;

    if (hs->resolve.timer_set) {
        ngx_del_timer(&hs->resolve);
    }

    while (!ngx_queue_empty(&hs->resolved)) {
        q = ngx_queue_head(&hs->resolved);
        rp = ngx_queue_data(q, ngx_http_traffic_shift_resolved_probe_t,
                            queue);
        ngx_http_traffic_shift_health_drop(mcf, rp);
    }

    /*
     * no socket is left open, neither of a probe in flight nor a kept one,
     * and the leases go to the other workers
     */

    for (i = 0; i < hs->nprobes; i++) {
        probe = &hs->probes[i];

        if (probe->timer.timer_set) {
            ngx_del_timer(&probe->timer);
        }

        if (probe->busy || probe->pc.connection) {
            ngx_http_traffic_shift_probe_close(probe);
        }
    }

    ngx_shmtx_lock(&mcf->shpool->mutex);

    for (i = 0; i < hs->nprobes; i++) {
        sh = hs->probes[i].server->sh;

        if (sh->lease_pid == ngx_pid) {
            sh->lease_pid = 0;
            sh->lease_expire = 0;
        }
    }

    ngx_shmtx_unlock(&mcf->shpool->mutex);

    mcf->health = NULL;
}


static void
ngx_http_traffic_shift_health_timer(ngx_event_t *ev)
{
    ngx_int_t                        rc;
    ngx_msec_t                       delay;
    ngx_http_traffic_shift_probe_t  *probe;

    probe = ev->data;

    if (ngx_exiting || ngx_terminate || ngx_quit
        || ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_traffic_shift_module)
           != probe->mcf)
    {
        /* no probe is started by a worker that is exiting */

        if (!probe->busy && probe->pc.connection) {
            ngx_http_traffic_shift_probe_close(probe);
        }

        ngx_http_traffic_shift_zone_release(probe->mcf, probe->server->sh);
        return;
    }

    if (probe->busy) {
        /* a probe with a timeout longer than the interval */
        ngx_add_timer(ev, probe->conf->interval);
        return;
    }

    rc = ngx_http_traffic_shift_health_lease(probe, &delay);

    if (rc != NGX_OK) {

        /* another worker probes the server now: its connection is kept */

        if (rc == NGX_BUSY && probe->pc.connection) {
            ngx_http_traffic_shift_probe_close(probe);
        }

        ngx_add_timer(ev, delay);
        return;
    }

    delay = probe->conf->interval;

    if (probe->conf->jitter) {
        delay += ngx_random() % (probe->conf->jitter + 1);
    }

    ngx_add_timer(ev, delay);

    ngx_http_traffic_shift_probe_start(probe);
}


/*
 * NGX_OK: this worker holds the lease and a probe is due, it starts now;
 * otherwise "delay" says when to look again: NGX_BUSY, another worker
 * holds the lease; NGX_DECLINED, this one, and the probe is not due.
 */

static ngx_int_t
ngx_http_traffic_shift_health_lease(ngx_http_traffic_shift_probe_t *probe,
    ngx_msec_t *delay)
{
    ngx_int_t                             rc;
    ngx_pid_t                             owner;
    ngx_msec_t                            now, due, lease;
    ngx_msec_int_t                        left;
    ngx_http_traffic_shift_sh_server_t   *sh;
    ngx_http_traffic_shift_health_conf_t *conf;

    sh = probe->server->sh;
    conf = probe->conf;
    now = ngx_current_msec;
    lease = conf->interval + conf->jitter + conf->timeout;

    ngx_shmtx_lock(&probe->mcf->shpool->mutex);

    owner = sh->lease_pid;
    left = (ngx_msec_int_t) (sh->lease_expire - now);

    if (owner != ngx_pid && owner != 0 && left > 0) {

        /* another worker probes this server: look again when it expires */

        ngx_shmtx_unlock(&probe->mcf->shpool->mutex);

        *delay = left + 1 + ngx_random() % (conf->interval / 8 + 1);

        return NGX_BUSY;
    }

    due = sh->last_probe_msec + conf->interval;
    left = (ngx_msec_int_t) (due - now);

    sh->lease_pid = ngx_pid;

    if (sh->last_probe_msec && left > 0) {

        /*
         * probed less than an interval ago, by the worker that held the
         * lease before: keep its rhythm
         */

        sh->lease_expire = due + lease;
        *delay = left;
        rc = NGX_DECLINED;

    } else {
        sh->lease_expire = now + lease;
        sh->last_probe_msec = now;
        rc = NGX_OK;
    }

    ngx_shmtx_unlock(&probe->mcf->shpool->mutex);

    if (owner != ngx_pid) {
        ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                      "traffic_shift: this worker now checks the health of "
                      "server %V in upstream \"%V\"",
                      &probe->server->name, &probe->ups->uscf->host);
    }

    return rc;
}


