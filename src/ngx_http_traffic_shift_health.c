
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
 */


/* a worker's health checker, in the cycle's pool */

typedef struct {
    ngx_uint_t                             nprobes;
    ngx_http_traffic_shift_probe_t        *probes;
} ngx_http_traffic_shift_health_t;


static void ngx_http_traffic_shift_health_reset(
    ngx_http_traffic_shift_main_conf_t *mcf);
static ngx_int_t ngx_http_traffic_shift_health_probe_init(ngx_cycle_t *cycle,
    ngx_http_traffic_shift_probe_t *probe);
static u_char *ngx_http_traffic_shift_health_log_error(ngx_log_t *log,
    u_char *buf, size_t len);

static void ngx_http_traffic_shift_health_timer(ngx_event_t *ev);
static ngx_int_t ngx_http_traffic_shift_health_lease(
    ngx_http_traffic_shift_probe_t *probe, ngx_msec_t *delay);


ngx_int_t
ngx_http_traffic_shift_health_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                            i, j, n;
    ngx_msec_t                            delay;
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

    for (i = 0; i < mcf->upstreams.nelts; i++) {
        if (upsp[i]->health == NULL) {
            continue;
        }

        for (j = 0; j < upsp[i]->nservers; j++) {
            n += !ngx_http_traffic_shift_conf_failed(
                                           upsp[i]->servers[j].conf_down);
        }
    }

    if (n == 0) {
        return NGX_OK;
    }

    hs = ngx_pcalloc(cycle->pool, sizeof(ngx_http_traffic_shift_health_t));
    if (hs == NULL) {
        return NGX_ERROR;
    }

    hs->probes = ngx_pcalloc(cycle->pool,
                             n * sizeof(ngx_http_traffic_shift_probe_t));
    if (hs->probes == NULL) {
        return NGX_ERROR;
    }

    probe = hs->probes;

    for (i = 0; i < mcf->upstreams.nelts; i++) {
        if (upsp[i]->health == NULL) {
            continue;
        }

        for (j = 0; j < upsp[i]->nservers; j++) {

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

            if (ngx_http_traffic_shift_health_probe_init(cycle, probe)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            probe++;
        }
    }

    hs->nprobes = n;
    mcf->health = hs;

    /* the first probes are spread over an interval */

    for (i = 0; i < hs->nprobes; i++) {
        probe = &hs->probes[i];

        delay = 1 + ngx_random() % probe->conf->interval;

        if (probe->conf->jitter) {
            delay += ngx_random() % (probe->conf->jitter + 1);
        }

        ngx_add_timer(&probe->timer, delay);
    }

    return NGX_OK;
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


static ngx_int_t
ngx_http_traffic_shift_health_probe_init(ngx_cycle_t *cycle,
    ngx_http_traffic_shift_probe_t *probe)
{
    u_char                           *p;
    ngx_http_traffic_shift_server_t  *server;

    server = probe->server;

    if (probe->conf->port == 0) {
        probe->sockaddr = server->sockaddr;
        probe->socklen = server->socklen;
        probe->name = server->name;

    } else {
        probe->sockaddr = ngx_palloc(cycle->pool, server->socklen);
        if (probe->sockaddr == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(probe->sockaddr, server->sockaddr, server->socklen);
        probe->socklen = server->socklen;
        ngx_inet_set_port(probe->sockaddr, probe->conf->port);

        p = ngx_pnalloc(cycle->pool, NGX_SOCKADDR_STRLEN);
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
    ngx_uint_t                           i;
    ngx_http_traffic_shift_probe_t      *probe;
    ngx_http_traffic_shift_health_t     *hs;
    ngx_http_traffic_shift_sh_server_t  *sh;
    ngx_http_traffic_shift_main_conf_t  *mcf;

    mcf = ngx_http_cycle_get_module_main_conf(cycle,
                                              ngx_http_traffic_shift_module);

    if (mcf == NULL || mcf->health == NULL) {
        return;
    }

    hs = mcf->health;

    /* no socket is left open, and the leases go to the other workers */

    for (i = 0; i < hs->nprobes; i++) {
        probe = &hs->probes[i];

        if (probe->timer.timer_set) {
            ngx_del_timer(&probe->timer);
        }

        if (probe->busy) {
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
    ngx_msec_t                       delay;
    ngx_http_traffic_shift_probe_t  *probe;

    probe = ev->data;

    if (ngx_exiting || ngx_terminate || ngx_quit
        || ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_traffic_shift_module)
           != probe->mcf)
    {
        /* no probe is started by a worker that is exiting */
        ngx_http_traffic_shift_zone_release(probe->mcf, probe->server->sh);
        return;
    }

    if (probe->busy) {
        /* a probe with a timeout longer than the interval */
        ngx_add_timer(ev, probe->conf->interval);
        return;
    }

    if (ngx_http_traffic_shift_health_lease(probe, &delay) != NGX_OK) {
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
 * otherwise "delay" says when to look again.
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

        return NGX_DECLINED;
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


