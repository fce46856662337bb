
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#include "ngx_http_traffic_shift_zone.h"


/*
 * Outlier ejection in the zone, under the slab pool's mutex: a server
 * whose real responses crossed a limit is taken out of rotation for a
 * while, within the upstream's limits; the sweep brings back those whose
 * time is over.  Every change moves the zone's version, so each worker
 * applies it to its peers before its next request to the upstream.
 */


#define NGX_HTTP_TS_EJECT_MAX_LEVEL  16


static ngx_uint_t ngx_http_traffic_shift_zone_outlier_count(
    ngx_http_traffic_shift_upstream_t *ups, ngx_uint_t *live,
    ngx_uint_t *total);
static void ngx_http_traffic_shift_zone_outlier_next(
    ngx_http_traffic_shift_main_conf_t *mcf, ngx_msec_t until);


/*
 * NGX_OK: ejected, "e" says for how long and why; NGX_DECLINED: not now
 * (ejected already, the upstream's limit, or the last live server), with
 * the numbers in "e"; NGX_ABORT: the zone was replaced by a reload.
 */

ngx_int_t
ngx_http_traffic_shift_zone_outlier_eject(
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_upstream_t *ups,
    ngx_http_traffic_shift_server_t *server,
    ngx_http_traffic_shift_eject_t *e)
{
    ngx_msec_t                              now, t;
    ngx_uint_t                              level, total;
    ngx_http_traffic_shift_sh_server_t     *sh;
    ngx_http_traffic_shift_outlier_conf_t  *oc;

    sh = server->sh;
    oc = ups->outlier;
    now = ngx_current_msec;

    ngx_shmtx_lock(&mcf->shpool->mutex);

    if (mcf->sh->retired) {
        ngx_shmtx_unlock(&mcf->shpool->mutex);
        return NGX_ABORT;
    }

    if (sh->ejected || !ngx_http_traffic_shift_zone_server_live(server)) {
        ngx_shmtx_unlock(&mcf->shpool->mutex);
        return NGX_DECLINED;
    }

    e->ejected = ngx_http_traffic_shift_zone_outlier_count(ups, &e->live,
                                                           &total);
    e->allowed = total * oc->max_ejected / 100;

    /* fail-open stays the rule: never the last live server */

    if (e->ejected + 1 > e->allowed || e->live < 2) {
        sh->c5xx = 0;
        sh->cgateway = 0;
        ngx_shmtx_unlock(&mcf->shpool->mutex);
        return NGX_DECLINED;
    }

    /* back for longer than the longest ejection: from the start again */

    level = sh->eject_level;

    if (level && now - sh->back_msec > oc->max_ejection) {
        level = 0;
    }

    t = oc->ejection << ngx_min(level, NGX_HTTP_TS_EJECT_MAX_LEVEL);

    if (t > oc->max_ejection || (t >> level) != oc->ejection) {
        t = oc->max_ejection;
    }

    /* jitter: up to a tenth more */

    t += ngx_random() % (t / 10 + 1);

    sh->ejected = 1;
    sh->ejections++;
    sh->eject_until = now + t;
    sh->eject_for = t;
    sh->eject_time = ngx_time();
    sh->eject_level = ngx_min(level + 1, NGX_HTTP_TS_EJECT_MAX_LEVEL);
    sh->eject_why = e->why;
    sh->c5xx = 0;
    sh->cgateway = 0;
    sh->win_total = 0;
    sh->win_fail = 0;

    ngx_http_traffic_shift_zone_outlier_next(mcf, sh->eject_until);
    ngx_http_traffic_shift_zone_changed(mcf);

    ngx_shmtx_unlock(&mcf->shpool->mutex);

    e->duration = t;
    e->level = level + 1;
    e->ejected++;
    e->live--;

    return NGX_OK;
}


/*
 * servers of the upstream ejected now, live ones, and all (each address
 * once)
 */

static ngx_uint_t
ngx_http_traffic_shift_zone_outlier_count(
    ngx_http_traffic_shift_upstream_t *ups, ngx_uint_t *live,
    ngx_uint_t *total)
{
    ngx_uint_t                        i, n;
    ngx_http_traffic_shift_server_t  *server;

    n = 0;
    *live = 0;
    *total = 0;

    for (i = 0; i < ups->nservers; i++) {
        server = &ups->servers[i];

        if (server->duplicate || server->sh == NULL) {
            continue;
        }

        n += (server->sh->ejected != 0);
        (*total)++;
        *live += ngx_http_traffic_shift_zone_server_live(server);
    }

    return n;
}


static void
ngx_http_traffic_shift_zone_outlier_next(
    ngx_http_traffic_shift_main_conf_t *mcf, ngx_msec_t until)
{
    ngx_msec_t  next;

    next = mcf->sh->outlier_next;

    if (next == 0 || (ngx_msec_int_t) (until - next) < 0) {
        mcf->sh->outlier_next = until ? until : 1;
    }
}


/*
 * Any worker, from its timer: ejections whose time is over end.  A look
 * at one word unless one is due.
 */

void
ngx_http_traffic_shift_zone_outlier_sweep(
    ngx_http_traffic_shift_main_conf_t *mcf, ngx_log_t *log)
{
    ngx_msec_t                           now, next;
    ngx_uint_t                           i, j;
    ngx_http_traffic_shift_server_t     *server;
    ngx_http_traffic_shift_upstream_t  **upsp;
    ngx_http_traffic_shift_sh_server_t  *sh;

    if (mcf->sh == NULL) {
        return;
    }

    now = ngx_current_msec;
    next = mcf->sh->outlier_next;

    if (next == 0 || (ngx_msec_int_t) (now - next) < 0) {
        return;
    }

    ngx_shmtx_lock(&mcf->shpool->mutex);

    if (mcf->sh->retired) {
        ngx_shmtx_unlock(&mcf->shpool->mutex);
        return;
    }

    mcf->sh->outlier_next = 0;
    upsp = mcf->upstreams.elts;

    for (i = 0; i < mcf->upstreams.nelts; i++) {
        for (j = 0; j < upsp[i]->nservers; j++) {
            server = &upsp[i]->servers[j];
            sh = server->sh;

            if (sh == NULL || !sh->ejected || server->duplicate) {
                continue;
            }

            if ((ngx_msec_int_t) (now - sh->eject_until) < 0) {
                ngx_http_traffic_shift_zone_outlier_next(mcf,
                                                         sh->eject_until);
                continue;
            }

            sh->ejected = 0;
            sh->back_msec = now;
            ngx_http_traffic_shift_zone_server_up(sh);
            ngx_http_traffic_shift_zone_changed(mcf);

            ngx_log_error(NGX_LOG_NOTICE, log, 0,
                          "traffic_shift: server %V in upstream \"%V\" is "
                          "back after its ejection of %Mms",
                          &server->name, &upsp[i]->uscf->host,
                          sh->eject_for);
        }
    }

    ngx_shmtx_unlock(&mcf->shpool->mutex);
}
