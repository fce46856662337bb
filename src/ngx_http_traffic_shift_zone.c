
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#include "ngx_http_traffic_shift_zone.h"
#include "ngx_http_traffic_shift_lib.h"


static ngx_http_traffic_shift_sh_t *ngx_http_traffic_shift_zone_old(
    ngx_shm_zone_t *shm_zone, ngx_slab_pool_t **shpool);
static ngx_int_t ngx_http_traffic_shift_zone_reconcile(
    ngx_http_traffic_shift_main_conf_t *mcf, ngx_http_traffic_shift_sh_t *osh,
    ngx_log_t *log);
static ngx_int_t ngx_http_traffic_shift_zone_split(
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_split_t *split, ngx_http_traffic_shift_sh_t *osh,
    ngx_log_t *log);
static ngx_http_traffic_shift_sh_split_t *
    ngx_http_traffic_shift_zone_new_split(
    ngx_http_traffic_shift_main_conf_t *mcf, ngx_str_t *name);
static ngx_int_t ngx_http_traffic_shift_zone_server(
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_upstream_t *ups,
    ngx_http_traffic_shift_server_t *server, ngx_http_traffic_shift_sh_t *osh,
    ngx_log_t *log);
static void ngx_http_traffic_shift_zone_floor(
    ngx_http_traffic_shift_main_conf_t *mcf, ngx_http_traffic_shift_sh_t *osh);
static ngx_http_traffic_shift_sh_split_t *ngx_http_traffic_shift_zone_find(
    ngx_http_traffic_shift_sh_t *sh, ngx_str_t *name);
static ngx_int_t ngx_http_traffic_shift_zone_same_pools(
    ngx_http_traffic_shift_split_t *split,
    ngx_http_traffic_shift_sh_split_t *rec, ngx_uint_t *map);
static void ngx_http_traffic_shift_zone_rollout(
    ngx_http_traffic_shift_split_t *split,
    ngx_http_traffic_shift_sh_split_t *rec,
    ngx_http_traffic_shift_sh_split_t *src, ngx_uint_t kept,
    ngx_log_t *log);
static void *ngx_http_traffic_shift_zone_alloc(
    ngx_http_traffic_shift_main_conf_t *mcf, size_t size);
static void ngx_http_traffic_shift_zone_collect(
    ngx_http_traffic_shift_main_conf_t *mcf);
static size_t ngx_http_traffic_shift_zone_total(size_t size);
static size_t ngx_http_traffic_shift_zone_chunk(size_t size);


ngx_int_t
ngx_http_traffic_shift_zone_init(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_traffic_shift_main_conf_t  *omcf = data;

    size_t                               len;
    ngx_int_t                            rc;
    ngx_slab_pool_t                     *shpool, *oshpool;
    ngx_http_traffic_shift_sh_t         *sh, *osh;
    ngx_http_traffic_shift_main_conf_t  *mcf;

    mcf = shm_zone->data;
    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (omcf && omcf->sh && omcf->sh->magic == NGX_HTTP_TS_ZONE_MAGIC)
    {
        /* the zone is reused on reload: reconcile it in place */

        mcf->shpool = omcf->shpool;
        mcf->sh = omcf->sh;

        ngx_shmtx_lock(&shpool->mutex);
        rc = ngx_http_traffic_shift_zone_reconcile(mcf, NULL,
                                                   shm_zone->shm.log);
        ngx_shmtx_unlock(&shpool->mutex);

        return rc;
    }

    mcf->shpool = shpool;

    ngx_shmtx_lock(&shpool->mutex);

    sh = ngx_slab_calloc_locked(shpool, sizeof(ngx_http_traffic_shift_sh_t));
    if (sh == NULL) {
        ngx_shmtx_unlock(&shpool->mutex);
        goto too_small;
    }

    sh->magic = NGX_HTTP_TS_ZONE_MAGIC;
    sh->version = 1;
    ngx_queue_init(&sh->splits);
    ngx_queue_init(&sh->resolved);
    ngx_rbtree_init(&sh->servers, &sh->sentinel, ngx_str_rbtree_insert_value);

    shpool->data = sh;
    mcf->sh = sh;

    len = sizeof(" in traffic_shift zone \"\"") + shm_zone->shm.name.len;

    shpool->log_ctx = ngx_slab_alloc_locked(shpool, len);
    if (shpool->log_ctx == NULL) {
        ngx_shmtx_unlock(&shpool->mutex);
        goto too_small;
    }

    ngx_sprintf(shpool->log_ctx, " in traffic_shift zone \"%V\"%Z",
                &shm_zone->shm.name);

    shpool->log_nomem = 0;

    /*
     * a zone that changed its size or name is a new one: the state of the
     * running configuration is carried over from the old zone
     */

    osh = ngx_http_traffic_shift_zone_old(shm_zone, &oshpool);

    if (osh) {
        ngx_shmtx_lock(&oshpool->mutex);

        /* retired in init_module, once the new configuration is sure */
        mcf->old_sh = osh;
        mcf->old_shpool = oshpool;
        mcf->old_version = osh->version;

        sh->keep_file = osh->keep_file;
    }

    rc = ngx_http_traffic_shift_zone_reconcile(mcf, osh, shm_zone->shm.log);

    if (osh) {
        ngx_shmtx_unlock(&oshpool->mutex);
    }

    ngx_shmtx_unlock(&shpool->mutex);

    if (rc != NGX_OK) {
        return rc;
    }

    /* no older zone: a start, not a reload */

    return osh ? NGX_OK : NGX_DONE;

too_small:

    ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                  "traffic_shift_zone \"%V\" is too small, "
                  "at least %uz bytes needed",
                  &shm_zone->shm.name,
                  ngx_http_traffic_shift_zone_estimate(mcf));

    return NGX_ERROR;
}


static ngx_http_traffic_shift_sh_t *
ngx_http_traffic_shift_zone_old(ngx_shm_zone_t *shm_zone,
    ngx_slab_pool_t **shpool)
{
    ngx_uint_t                           i;
    ngx_list_part_t                     *part;
    ngx_shm_zone_t                      *zone;
    ngx_http_traffic_shift_main_conf_t  *omcf;

    /* while a new cycle is being initialised, ngx_cycle is the old one */

    if (ngx_cycle == NULL || ngx_cycle->shared_memory.part.elts == NULL) {
        return NULL;
    }

    part = (ngx_list_part_t *) &ngx_cycle->shared_memory.part;
    zone = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NULL;
            }

            part = part->next;
            zone = part->elts;
            i = 0;
        }

        if (zone[i].tag != &ngx_http_traffic_shift_module
            || &zone[i] == shm_zone
            || zone[i].shm.addr == shm_zone->shm.addr)
        {
            continue;
        }

        omcf = zone[i].data;

        if (omcf == NULL || omcf->sh == NULL
            || omcf->sh->magic != NGX_HTTP_TS_ZONE_MAGIC)
        {
            return NULL;
        }

        *shpool = omcf->shpool;

        return omcf->sh;
    }
}


static ngx_int_t
ngx_http_traffic_shift_zone_reconcile(ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_sh_t *osh, ngx_log_t *log)
{
    ngx_uint_t                          i, j;
    ngx_http_traffic_shift_split_t    **splitp;
    ngx_http_traffic_shift_upstream_t **upsp;

    mcf->sh->epoch++;

    ngx_http_traffic_shift_zone_floor(mcf, osh);

    splitp = mcf->splits.elts;

    for (i = 0; i < mcf->splits.nelts; i++) {
        if (ngx_http_traffic_shift_zone_split(mcf, splitp[i], osh, log)
            != NGX_OK)
        {
            goto too_small;
        }
    }

    upsp = mcf->upstreams.elts;

    for (i = 0; i < mcf->upstreams.nelts; i++) {
        for (j = 0; j < upsp[i]->nservers; j++) {
            if (ngx_http_traffic_shift_zone_server(mcf, upsp[i],
                                                   &upsp[i]->servers[j], osh,
                                                   log)
                != NGX_OK)
            {
                goto too_small;
            }
        }
    }

    ngx_http_traffic_shift_zone_changed(mcf);

    return NGX_OK;

too_small:

    ngx_log_error(NGX_LOG_EMERG, log, 0,
                  "traffic_shift_zone \"%V\" is too small, "
                  "at least %uz bytes needed",
                  &mcf->shm_zone->shm.name,
                  ngx_http_traffic_shift_zone_estimate(mcf));

    return NGX_ERROR;
}


static ngx_int_t
ngx_http_traffic_shift_zone_split(ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_split_t *split, ngx_http_traffic_shift_sh_t *osh,
    ngx_log_t *log)
{
    ngx_uint_t                          i, same, changed, layout;
    ngx_uint_t                          map[NGX_HTTP_TS_MAX_POOLS];
    ngx_uint_t                          conf[NGX_HTTP_TS_MAX_POOLS];
    ngx_http_traffic_shift_pool_t      *pool;
    ngx_http_traffic_shift_weights_t    w, old;
    ngx_http_traffic_shift_sh_pool_t   *shp;
    ngx_http_traffic_shift_sh_split_t  *rec, *src;
    ngx_http_traffic_shift_sh_pool_t    saved[NGX_HTTP_TS_MAX_POOLS];

    pool = split->pools.elts;

    for (i = 0; i < split->pools.nelts; i++) {
        conf[i] = pool[i].weight;
    }

    rec = ngx_http_traffic_shift_zone_find(mcf->sh, &split->name);
    src = osh ? ngx_http_traffic_shift_zone_find(osh, &split->name) : rec;

    if (src && src->seen != (osh ? osh->epoch : mcf->sh->epoch - 1)) {
        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "traffic_shift \"%V\" is back in the configuration: "
                      "its earlier state is forgotten, it starts from the "
                      "configured weights", &split->name);
        src = NULL;
    }

    if (rec == NULL) {
        rec = ngx_http_traffic_shift_zone_new_split(mcf, &split->name);
        if (rec == NULL) {
            return NGX_ERROR;
        }
    }

    same = src ? ngx_http_traffic_shift_zone_same_pools(split, src, map) : 0;

    /* the state to start from: the published copy of the old record */

    if (src) {
        if (src->seq & 1) {
            /* its writer died: what it published is whole either way */
            src->seq++;
        }

        old = src->copy[src->current & 1];
    }

    changed = 0;
    layout = rec->layout;

    w.npools = split->pools.nelts;
    w.generation = src ? old.generation : mcf->sh->floor;
    w.updated = src ? old.updated : 0;

    if (same) {
        w.source = old.source;

        for (i = 0; i < split->pools.nelts; i++) {
            w.weights[i] = (w.source == NGX_HTTP_TS_SRC_CONFIG)
                           ? conf[i] : old.weights[map[i]];

            if (w.weights[i] != old.weights[map[i]]) {
                changed = 1;
            }

            if (map[i] != i) {
                layout = 0;
            }
        }

        if (src != rec) {
            layout = 0;
        }

    } else {
        if (src) {
            ngx_log_error(NGX_LOG_NOTICE, log, 0,
                          "traffic_shift \"%V\": pools changed, "
                          "weights reset to the configuration",
                          &split->name);
        }

        w.source = NGX_HTTP_TS_SRC_CONFIG;
        ngx_memcpy(w.weights, conf, sizeof(conf));
        changed = 1;
        layout = 0;
    }

    if (changed || src == NULL) {
        w.generation++;
        w.updated = ngx_time();
    }

    if (layout == 0) {
        layout = ++mcf->sh->next_layout;
    }

    if (same) {
        /* the source may be this very record, reordered */
        ngx_memcpy(saved, src->pools, sizeof(saved));
    }

    ngx_http_traffic_shift_write_begin(&rec->seq);

    for (i = 0; i < split->pools.nelts; i++) {
        shp = &rec->pools[i];

        if (layout != rec->layout) {
            if (same) {
                *shp = saved[map[i]];

            } else {
                ngx_memzero(shp, sizeof(ngx_http_traffic_shift_sh_pool_t));
                ngx_memcpy(shp->name, pool[i].name.data, pool[i].name.len);
                shp->len = pool[i].name.len;
            }
        }

        shp->conf_weight = conf[i];
    }

    rec->npools = split->pools.nelts;
    rec->layout = layout;

    ngx_http_traffic_shift_zone_publish(rec, &w);

    ngx_http_traffic_shift_write_end(&rec->seq);

    for (i = 0; same && i < split->pools.nelts && map[i] == i; i++) {
        /* void */
    }

    ngx_http_traffic_shift_zone_rollout(split, rec, src,
                                        same && i == split->pools.nelts,
                                        log);

    rec->seen = mcf->sh->epoch;

    split->sh = rec;
    split->shpool = mcf->shpool;
    split->layout = layout;

    return NGX_OK;
}


/* a new record of a traffic_shift upstream, its name after it */

static ngx_http_traffic_shift_sh_split_t *
ngx_http_traffic_shift_zone_new_split(ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_str_t *name)
{
    ngx_http_traffic_shift_sh_split_t  *rec;

    rec = ngx_http_traffic_shift_zone_alloc(mcf,
                 sizeof(ngx_http_traffic_shift_sh_split_t) + name->len);
    if (rec == NULL) {
        return NULL;
    }

    ngx_memzero(rec, sizeof(ngx_http_traffic_shift_sh_split_t));

    rec->name.data = (u_char *) rec + sizeof(ngx_http_traffic_shift_sh_split_t);
    rec->name.len = name->len;
    ngx_memcpy(rec->name.data, name->data, name->len);

    ngx_queue_insert_tail(&mcf->sh->splits, &rec->queue);

    return rec;
}


static ngx_int_t
ngx_http_traffic_shift_zone_server(ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_upstream_t *ups,
    ngx_http_traffic_shift_server_t *server, ngx_http_traffic_shift_sh_t *osh,
    ngx_log_t *log)
{
    u_char                              *p;
    size_t                               len;
    uint32_t                             hash;
    ngx_str_t                            key;
    ngx_uint_t                           i;
    ngx_http_traffic_shift_sh_server_t  *rec, *src;

    len = ups->uscf->host.len + 1 + server->name.len;

    key.data = ngx_alloc(len, ngx_cycle->log);
    if (key.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(key.data, ups->uscf->host.data, ups->uscf->host.len);
    *p++ = '/';
    ngx_memcpy(p, server->name.data, server->name.len);
    key.len = len;

    hash = ngx_crc32_short(key.data, key.len);

    rec = (ngx_http_traffic_shift_sh_server_t *)
              ngx_str_rbtree_lookup(&mcf->sh->servers, &key, hash);

    if (rec && ngx_http_traffic_shift_sh_resolved(rec)) {
        /* an address resolved so far, configured now */
        ngx_queue_remove(&rec->queue);
        rec->queue.next = NULL;
        rec->resolved = 0;
    }

    if (rec && rec->seen == mcf->sh->epoch) {
        /* the same address listed again in the upstream{} block */
        ngx_free(key.data);
        server->sh = rec;
        server->duplicate = 1;
        return NGX_OK;
    }

    src = osh ? (ngx_http_traffic_shift_sh_server_t *)
                    ngx_str_rbtree_lookup(&osh->servers, &key, hash)
              : rec;

    if (src && src->seen != (osh ? osh->epoch : mcf->sh->epoch - 1)) {
        /* not in the previous configuration: forgotten */

        if (src->admin_down) {
            ngx_log_error(NGX_LOG_NOTICE, log, 0,
                          "traffic_shift: server \"%V\" of upstream \"%V\" "
                          "is back in the configuration: its earlier "
                          "admin-down mark is forgotten", &server->name,
                          &ups->uscf->host);
        }

        src = NULL;
    }

    if (rec == NULL) {
        rec = ngx_http_traffic_shift_zone_alloc(mcf,
                                   sizeof(ngx_http_traffic_shift_sh_server_t));
        if (rec == NULL) {
            ngx_free(key.data);
            return NGX_ERROR;
        }

        ngx_memzero(rec, sizeof(ngx_http_traffic_shift_sh_server_t));

        rec->key.data = ngx_http_traffic_shift_zone_alloc(mcf, len);
        if (rec->key.data == NULL) {
            ngx_slab_free_locked(mcf->shpool, rec);
            ngx_free(key.data);
            return NGX_ERROR;
        }

        ngx_memcpy(rec->key.data, key.data, len);
        rec->key.len = len;

        rec->node.key = hash;
        ngx_rbtree_insert(&mcf->sh->servers, &rec->node);
    }

    ngx_free(key.data);

    if (src == NULL) {
        /* servers start up, so that a start or reload causes no 502 */
        rec->state = NGX_HTTP_TS_UP;
        rec->admin_down = 0;
        rec->sync_revision = 0;
        rec->passes = 0;
        rec->fails = 0;
        rec->last_probe = 0;
        rec->last_probe_msec = 0;
        rec->lease_pid = 0;
        rec->lease_expire = 0;
        ngx_memzero(rec->last_error, sizeof(rec->last_error));

        for (i = 0; i < NGX_HTTP_TS_PROBE_RESULTS; i++) {
            rec->probes[i] = 0;
        }

        ngx_http_traffic_shift_zone_server_reset(rec);

        /* new in a reload: it ramps up (slow start); not at a start */

        if (osh || mcf->sh->epoch > 1) {
            ngx_http_traffic_shift_zone_server_up(rec);
        }

    } else if (src != rec) {
        rec->state = src->state;
        rec->admin_down = src->admin_down;
        rec->sync_revision = src->sync_revision;
        rec->passes = src->passes;
        rec->fails = src->fails;
        rec->last_probe = src->last_probe;
        rec->last_probe_msec = src->last_probe_msec;

        for (i = 0; i < NGX_HTTP_TS_PROBE_RESULTS; i++) {
            rec->probes[i] = src->probes[i];
        }

        ngx_memcpy(rec->last_error, src->last_error, sizeof(rec->last_error));

        ngx_http_traffic_shift_zone_server_copy(rec, src);

        if (rec->ejected) {
            /* the ejection ends by this zone's sweep */
            mcf->sh->outlier_next = 1;
        }
    }

    rec->seen = mcf->sh->epoch;
    server->sh = rec;

    return NGX_OK;
}


/*
 * The generations of upstreams that are not in the new configuration
 * raise the floor: whatever comes (back) under their names starts above.
 * Of an older zone, every record counts.
 */

static void
ngx_http_traffic_shift_zone_floor(ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_sh_t *osh)
{
    ngx_uint_t                          epoch;
    ngx_queue_t                        *q;
    ngx_http_traffic_shift_sh_t        *sh;
    ngx_http_traffic_shift_sh_split_t  *rec;

    sh = osh ? osh : mcf->sh;
    epoch = osh ? (ngx_uint_t) -1 : mcf->sh->epoch - 1;

    if (osh && osh->floor > mcf->sh->floor) {
        mcf->sh->floor = osh->floor;
    }

    for (q = ngx_queue_head(&sh->splits);
         q != ngx_queue_sentinel(&sh->splits);
         q = ngx_queue_next(q))
    {
        rec = ngx_queue_data(q, ngx_http_traffic_shift_sh_split_t, queue);

        if ((osh || rec->seen == epoch)
            && ngx_http_traffic_shift_find_split(mcf, rec->name.data,
                                                 rec->name.len)
               == NULL
            && rec->generation > mcf->sh->floor)
        {
            mcf->sh->floor = rec->generation;
        }
    }
}


/*
 * In the master, when the new configuration is sure to be used (the
 * module's init_module): the zone it replaced takes no more changes, and
 * what changed there since its state was carried over is carried again.
 */

ngx_int_t
ngx_http_traffic_shift_zone_retire(ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_log_t *log)
{
    ngx_int_t                     rc;
    ngx_http_traffic_shift_sh_t  *osh;

    osh = mcf->old_sh;

    if (osh == NULL) {
        return NGX_OK;
    }

    rc = NGX_OK;

    ngx_shmtx_lock(&mcf->shpool->mutex);
    ngx_shmtx_lock(&mcf->old_shpool->mutex);

    if (osh->version != mcf->old_version) {
        rc = ngx_http_traffic_shift_zone_reconcile(mcf, osh, log);
    }

    osh->retired = 1;
    (void) ngx_atomic_fetch_add(&osh->version, 1);

    ngx_shmtx_unlock(&mcf->old_shpool->mutex);
    ngx_shmtx_unlock(&mcf->shpool->mutex);

    mcf->old_sh = NULL;
    mcf->old_shpool = NULL;

    return rc;
}


static ngx_http_traffic_shift_sh_split_t *
ngx_http_traffic_shift_zone_find(ngx_http_traffic_shift_sh_t *sh,
    ngx_str_t *name)
{
    ngx_queue_t                        *q;
    ngx_http_traffic_shift_sh_split_t  *rec;

    for (q = ngx_queue_head(&sh->splits);
         q != ngx_queue_sentinel(&sh->splits);
         q = ngx_queue_next(q))
    {
        rec = ngx_queue_data(q, ngx_http_traffic_shift_sh_split_t, queue);

        if (rec->name.len == name->len
            && ngx_strncmp(rec->name.data, name->data, name->len) == 0)
        {
            return rec;
        }
    }

    return NULL;
}


/*
 * The same set of pool names: map[i] is the record's index of the
 * configuration's pool i.
 */

static ngx_int_t
ngx_http_traffic_shift_zone_same_pools(ngx_http_traffic_shift_split_t *split,
    ngx_http_traffic_shift_sh_split_t *rec, ngx_uint_t *map)
{
    ngx_uint_t                      i, j;
    ngx_http_traffic_shift_pool_t  *pool;

    if (rec->npools != split->pools.nelts) {
        return 0;
    }

    pool = split->pools.elts;

    for (i = 0; i < split->pools.nelts; i++) {

        for (j = 0; j < rec->npools; j++) {
            if (rec->pools[j].len == pool[i].name.len
                && ngx_strncmp(rec->pools[j].name, pool[i].name.data,
                               pool[i].name.len)
                   == 0)
            {
                break;
            }
        }

        if (j == rec->npools) {
            return 0;
        }

        map[i] = j;
    }

    return 1;
}


/*
 * A rollout goes on over a reload that keeps the upstream's pools, in
 * their order ("kept"), and comes along to a new zone; otherwise one that
 * runs is aborted.  An upstream back in the configuration has none.
 */

static void
ngx_http_traffic_shift_zone_rollout(ngx_http_traffic_shift_split_t *split,
    ngx_http_traffic_shift_sh_split_t *rec,
    ngx_http_traffic_shift_sh_split_t *src, ngx_uint_t kept, ngx_log_t *log)
{
    ngx_http_traffic_shift_sh_rollout_t  *ro;

    ro = &rec->rollout;

    if (src == NULL) {
        ngx_memzero(ro, sizeof(ngx_http_traffic_shift_sh_rollout_t));
        return;
    }

    if (src != rec) {
        ngx_memcpy(ro, &src->rollout,
                   sizeof(ngx_http_traffic_shift_sh_rollout_t));
    }

    if (kept
        || (ro->state != NGX_HTTP_TS_RO_PROGRESSING
            && ro->state != NGX_HTTP_TS_RO_PAUSED))
    {
        return;
    }

    ro->active = 0;
    ro->state = NGX_HTTP_TS_RO_ABORTED;
    ro->ended = ngx_time();
    ro->results[NGX_HTTP_TS_RO_ABORTED]++;

    ngx_cpystrn(ro->reason,
                (u_char *) "the pools of the upstream changed in a reload",
                NGX_HTTP_TS_RO_REASON_LEN);

    ngx_log_error(NGX_LOG_WARN, log, 0,
                  "traffic_shift \"%V\": rollout aborted, the pools of the "
                  "upstream changed in a reload", &split->name);
}


/*
 * Records of upstreams and servers that left the configuration are kept:
 * workers of an older cycle may still read them.  They are freed only when
 * memory runs short, and only those the last two configurations did not use.
 */

static void *
ngx_http_traffic_shift_zone_alloc(ngx_http_traffic_shift_main_conf_t *mcf,
    size_t size)
{
    void  *p;

    p = ngx_slab_alloc_locked(mcf->shpool, size);

    if (p == NULL) {
        ngx_http_traffic_shift_zone_collect(mcf);
        p = ngx_slab_alloc_locked(mcf->shpool, size);
    }

    return p;
}


static void
ngx_http_traffic_shift_zone_collect(ngx_http_traffic_shift_main_conf_t *mcf)
{
    ngx_uint_t                           epoch;
    ngx_queue_t                         *q, *next;
    ngx_rbtree_node_t                   *node, *next_node, *sentinel;
    ngx_http_traffic_shift_sh_t         *sh;
    ngx_http_traffic_shift_sh_split_t   *rec;
    ngx_http_traffic_shift_sh_server_t  *srv;

    sh = mcf->sh;

    if (sh->epoch < 3) {
        return;
    }

    epoch = sh->epoch - 1;

    for (q = ngx_queue_head(&sh->splits);
         q != ngx_queue_sentinel(&sh->splits);
         q = next)
    {
        next = ngx_queue_next(q);
        rec = ngx_queue_data(q, ngx_http_traffic_shift_sh_split_t, queue);

        if (rec->seen < epoch) {
            ngx_queue_remove(q);
            ngx_slab_free_locked(mcf->shpool, rec);
        }
    }

    sentinel = sh->servers.sentinel;

    if (sh->servers.root == sentinel) {
        return;
    }

    for (node = ngx_rbtree_min(sh->servers.root, sentinel);
         node;
         node = next_node)
    {
        next_node = ngx_rbtree_next(&sh->servers, node);
        srv = (ngx_http_traffic_shift_sh_server_t *) node;

        if (srv->seen < epoch) {
            if (ngx_http_traffic_shift_sh_resolved(srv)) {
                ngx_queue_remove(&srv->queue);
            }

            ngx_rbtree_delete(&sh->servers, node);
            ngx_slab_free_locked(mcf->shpool, srv->key.data);
            ngx_slab_free_locked(mcf->shpool, srv);
        }
    }
}


size_t
ngx_http_traffic_shift_zone_estimate(ngx_http_traffic_shift_main_conf_t *mcf)
{
    size_t                               size;
    ngx_uint_t                           i, j;
    ngx_http_traffic_shift_split_t     **splitp;
    ngx_http_traffic_shift_upstream_t  **upsp;

    size = ngx_http_traffic_shift_zone_chunk(
                                  sizeof(ngx_http_traffic_shift_sh_t))
           + ngx_http_traffic_shift_zone_chunk(64);

    splitp = mcf->splits.elts;

    for (i = 0; i < mcf->splits.nelts; i++) {
        size += ngx_http_traffic_shift_zone_chunk(
                                  sizeof(ngx_http_traffic_shift_sh_split_t)
                                  + splitp[i]->name.len);
    }

    upsp = mcf->upstreams.elts;

    for (i = 0; i < mcf->upstreams.nelts; i++) {
        for (j = 0; j < upsp[i]->nservers; j++) {
            size += ngx_http_traffic_shift_zone_chunk(
                                  sizeof(ngx_http_traffic_shift_sh_server_t))
                    + ngx_http_traffic_shift_zone_chunk(
                                  upsp[i]->uscf->host.len + 1
                                  + upsp[i]->servers[j].name.len);
        }

        if (upsp[i]->resolve) {
            size += NGX_HTTP_TS_MAX_RESOLVED
                    * (ngx_http_traffic_shift_zone_chunk(
                                  sizeof(ngx_http_traffic_shift_sh_server_t))
                       + ngx_http_traffic_shift_zone_chunk(
                                  upsp[i]->uscf->host.len + 1
                                  + NGX_SOCKADDR_STRLEN));
        }
    }

    return ngx_http_traffic_shift_zone_total(size);
}


/*
 * The smallest zone a configuration can use: one traffic_shift upstream
 * (or a checked upstream{} block) with one server, names of fair length.
 */

size_t
ngx_http_traffic_shift_zone_estimate_min(void)
{
    size_t  size;

    size = ngx_http_traffic_shift_zone_chunk(
                                  sizeof(ngx_http_traffic_shift_sh_t))
           + ngx_http_traffic_shift_zone_chunk(64)
           + ngx_http_traffic_shift_zone_chunk(
                                  sizeof(ngx_http_traffic_shift_sh_split_t)
                                  + NGX_HTTP_TS_NAME_LEN)
           + ngx_http_traffic_shift_zone_chunk(
                                  sizeof(ngx_http_traffic_shift_sh_server_t))
           + ngx_http_traffic_shift_zone_chunk(NGX_SOCKADDR_STRLEN + 64);

    return ngx_http_traffic_shift_zone_total(size);
}


/*
 * Records of "size" bytes, with the slab allocator's own header and page
 * descriptors, a partly used page per chunk size, and room for the
 * records of the configuration a reload replaces.
 */

static size_t
ngx_http_traffic_shift_zone_total(size_t size)
{
    size += size / ngx_pagesize * sizeof(ngx_slab_page_t);
    size += 16 * ngx_pagesize;

    return ngx_align(size * 2, ngx_pagesize);
}


static size_t
ngx_http_traffic_shift_zone_chunk(size_t size)
{
    size_t  chunk;

    if (size > ngx_pagesize / 2) {
        return ngx_align(size, ngx_pagesize);
    }

    for (chunk = 8; chunk < size; chunk <<= 1) { /* void */ }

    return chunk;
}
