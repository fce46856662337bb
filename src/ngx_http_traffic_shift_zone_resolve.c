
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#include "ngx_http_traffic_shift_zone.h"


/*
 * Servers resolved at run time (nginx 1.27.3+, "server NAME resolve" in an
 * upstream with a zone).  nginx adds and removes their peers in the
 * upstream's zone, under the peers' write lock, and counts the changes in
 * *peers->config.  A worker reads the peers again, under their read lock,
 * when that count moved: the addresses found follow the configured servers
 * in its list, each with a record in the traffic_shift zone keyed
 * "upstream/address" like the others, created under the slab mutex.  No
 * peer pointer is kept: only copies of the addresses.
 *
 * Every worker confirms the records of the addresses in its list once a
 * second (ngx_http_traffic_shift_zone_resolved_keep()); a record no worker
 * confirmed for NGX_HTTP_TS_RESOLVED_KEEP seconds is freed.  An address
 * that comes back before finds its record: health, counters and the
 * admin-down mark.
 */


typedef struct {
    ngx_http_traffic_shift_addr_t        addr;
    size_t                               len;
    socklen_t                            socklen;
    ngx_uint_t                           down;
    ngx_uint_t                           backup;
} ngx_http_traffic_shift_found_t;


static ngx_uint_t ngx_http_traffic_shift_zone_read_peers(
    ngx_http_upstream_rr_peers_t *peers,
    ngx_http_traffic_shift_found_t *found, ngx_uint_t *full);
static ngx_http_traffic_shift_sh_server_t *
    ngx_http_traffic_shift_zone_resolved_get(
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_upstream_t *ups, u_char *name, size_t len,
    ngx_uint_t *shared, ngx_log_t *log);
static ngx_uint_t ngx_http_traffic_shift_zone_resolved_of(
    ngx_http_traffic_shift_sh_server_t *rec,
    ngx_http_traffic_shift_upstream_t *ups);
static ngx_uint_t ngx_http_traffic_shift_zone_is_addr(u_char *name,
    size_t len);


/*
 * Brings the worker's list of an upstream's resolved addresses up to its
 * peers: NGX_DONE when the list changed (the worker then syncs its peers
 * and pools again before its next request), NGX_OK when it did not.
 */

ngx_int_t
ngx_http_traffic_shift_zone_discover(ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_upstream_t *ups, ngx_log_t *log)
{
    ngx_uint_t                           i, j, n, config, full, shared, marked;
    ngx_http_upstream_rr_peers_t        *peers;
    ngx_http_traffic_shift_found_t      *f;
    ngx_http_traffic_shift_server_t     *server;
    ngx_http_traffic_shift_sh_server_t  *sh;
    ngx_http_traffic_shift_found_t       found[NGX_HTTP_TS_MAX_RESOLVED];

    if (!ups->resolve || mcf->sh == NULL) {
        return NGX_OK;
    }

    peers = ups->uscf->peer.data;

    if (peers == NULL || peers->shpool == NULL) {
        return NGX_OK;
    }

    config = ngx_http_traffic_shift_peers_config(peers);

    if (ups->resolved && config == ups->config) {
        return NGX_OK;
    }

    /* the count first: a change while the lists are read is seen later */

    ngx_memory_barrier();

    n = ngx_http_traffic_shift_zone_read_peers(peers, found, &full);

    /* the same addresses, in the same order: nothing to do */

    if (ups->resolved && n == ups->nservers - ups->nconf) {

        for (i = 0; i < n; i++) {
            server = &ups->servers[ups->nconf + i];

            if (server->name.len != found[i].len
                || ngx_memcmp(server->name.data, found[i].addr.name,
                              found[i].len)
                   != 0
                || server->conf_down != found[i].down
                || server->backup != found[i].backup)
            {
                break;
            }
        }

        if (i == n) {
            ups->config = config;
            return NGX_OK;
        }
    }

    if (full) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "traffic_shift: upstream \"%V\" resolves to more than "
                      "%d addresses, only the first are tracked",
                      &ups->uscf->host, NGX_HTTP_TS_MAX_RESOLVED);
    }

    ngx_shmtx_lock(&mcf->shpool->mutex);

    j = 0;
    marked = 0;

    for (i = 0; i < n; i++) {
        f = &found[i];

        sh = ngx_http_traffic_shift_zone_resolved_get(mcf, ups, f->addr.name,
                                                      f->len, &shared, log);
        if (sh == NULL) {
            continue;
        }

        ngx_memcpy(&ups->addrs[j], &f->addr,
                   sizeof(ngx_http_traffic_shift_addr_t));

        server = &ups->servers[ups->nconf + j];

        ngx_memzero(server, sizeof(ngx_http_traffic_shift_server_t));

        server->name.data = ups->addrs[j].name;
        server->name.len = f->len;
        server->sockaddr = &ups->addrs[j].sockaddr.sockaddr;
        server->socklen = f->socklen;
        server->conf_down = f->down;
        server->backup = f->backup;
        server->resolved = 1;
        server->duplicate = shared;
        server->sh = sh;

        marked |= (sh->admin_down || sh->state == NGX_HTTP_TS_DOWN);

        j++;
    }

    /*
     * nginx adds a peer that comes back as up: when its address is marked
     * down, every worker syncs the peers before its next request
     */

    if (marked) {
        ngx_http_traffic_shift_zone_changed(mcf);
    }

    ngx_shmtx_unlock(&mcf->shpool->mutex);

    ups->nservers = ups->nconf + j;
    ups->config = config;
    ups->resolved = 1;
    ups->changes++;

    /* this worker applies the new list before its next request */
    mcf->version = 0;

    ngx_log_error(NGX_LOG_INFO, log, 0,
                  "traffic_shift: upstream \"%V\" has %ui resolved "
                  "address%s", &ups->uscf->host, j, j == 1 ? "" : "es");

    return NGX_DONE;
}


/* the resolved peers of the primary and the backup list, each once */

static ngx_uint_t
ngx_http_traffic_shift_zone_read_peers(ngx_http_upstream_rr_peers_t *peers,
    ngx_http_traffic_shift_found_t *found, ngx_uint_t *full)
{
    ngx_uint_t                       i, n, down;
    ngx_http_upstream_rr_peer_t     *peer;
    ngx_http_upstream_rr_peers_t    *list;
    ngx_http_traffic_shift_found_t  *f;

    n = 0;
    *full = 0;

    for (list = peers; list; list = list->next) {

        ngx_http_upstream_rr_peers_rlock(list);

        for (peer = list->peer; peer; peer = peer->next) {

            if (ngx_http_traffic_shift_peer_resolved(list, peer, &down)
                != NGX_OK
                || peer->socklen > sizeof(ngx_sockaddr_t)
                || peer->name.len >= NGX_SOCKADDR_STRLEN)
            {
                continue;
            }

            for (i = 0; i < n; i++) {
                if (found[i].len == peer->name.len
                    && ngx_memcmp(found[i].addr.name, peer->name.data,
                                  peer->name.len)
                       == 0)
                {
                    break;
                }
            }

            if (i < n) {
                /* two names resolved to one address */
                continue;
            }

            if (n == NGX_HTTP_TS_MAX_RESOLVED) {
                *full = 1;
                break;
            }

            f = &found[n++];

            ngx_memcpy(&f->addr.sockaddr, peer->sockaddr, peer->socklen);
            ngx_memcpy(f->addr.name, peer->name.data, peer->name.len);
            f->len = peer->name.len;
            f->socklen = peer->socklen;
            f->down = down;
            f->backup = (list != peers);
        }

        ngx_http_upstream_rr_peers_unlock(list);
    }

    return n;
}


/*
 * Under the slab mutex: the record of "upstream/address", created when
 * missing.  "shared": the record is a configured server's.  NULL: the
 * address is not tracked (too many, or the zone is full), logged.
 */

static ngx_http_traffic_shift_sh_server_t *
ngx_http_traffic_shift_zone_resolved_get(
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_upstream_t *ups, u_char *name, size_t len,
    ngx_uint_t *shared, ngx_log_t *log)
{
    u_char                              *p;
    uint32_t                             hash;
    ngx_str_t                            key;
    ngx_uint_t                           n;
    ngx_queue_t                         *q;
    ngx_http_traffic_shift_sh_t         *sh;
    ngx_http_traffic_shift_sh_server_t  *rec;
    u_char                               buf[NGX_HTTP_TS_KEY_LEN];

    sh = mcf->sh;
    *shared = 0;

    if (ups->uscf->host.len + 1 + len > NGX_HTTP_TS_KEY_LEN) {
        return NULL;
    }

    p = ngx_cpymem(buf, ups->uscf->host.data, ups->uscf->host.len);
    *p++ = '/';
    p = ngx_cpymem(p, name, len);

    key.data = buf;
    key.len = p - buf;

    hash = ngx_crc32_short(key.data, key.len);

    rec = (ngx_http_traffic_shift_sh_server_t *)
              ngx_str_rbtree_lookup(&sh->servers, &key, hash);

    if (rec) {

        if (!ngx_http_traffic_shift_sh_resolved(rec)) {

            if (rec->seen == sh->epoch) {
                /* a configured server of the same address */
                *shared = 1;
                return rec;
            }

            /* the record of a server no longer configured: adopted */
            ngx_queue_insert_tail(&sh->resolved, &rec->queue);
        }

        rec->resolved = ngx_time();
        rec->seen = sh->epoch;

        return rec;
    }

    n = 0;

    for (q = ngx_queue_head(&sh->resolved);
         q != ngx_queue_sentinel(&sh->resolved);
         q = ngx_queue_next(q))
    {
        rec = ngx_queue_data(q, ngx_http_traffic_shift_sh_server_t, queue);
        n += ngx_http_traffic_shift_zone_resolved_of(rec, ups);
    }

    if (n >= NGX_HTTP_TS_MAX_RESOLVED) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "traffic_shift: upstream \"%V\" has %d resolved "
                      "addresses in the last %d seconds, %*s is not tracked",
                      &ups->uscf->host, NGX_HTTP_TS_MAX_RESOLVED,
                      NGX_HTTP_TS_RESOLVED_KEEP, len, name);
        return NULL;
    }

    rec = ngx_slab_alloc_locked(mcf->shpool,
                                sizeof(ngx_http_traffic_shift_sh_server_t));
    if (rec == NULL) {
        goto nomem;
    }

    ngx_memzero(rec, sizeof(ngx_http_traffic_shift_sh_server_t));

    rec->key.data = ngx_slab_alloc_locked(mcf->shpool, key.len);
    if (rec->key.data == NULL) {
        ngx_slab_free_locked(mcf->shpool, rec);
        goto nomem;
    }

    ngx_memcpy(rec->key.data, key.data, key.len);
    rec->key.len = key.len;

    /* servers start up, as nginx sends them requests at once */
    rec->state = NGX_HTTP_TS_UP;
    rec->resolved = ngx_time();
    rec->seen = sh->epoch;

    rec->node.key = hash;
    ngx_rbtree_insert(&sh->servers, &rec->node);
    ngx_queue_insert_tail(&sh->resolved, &rec->queue);

    return rec;

nomem:

    ngx_log_error(NGX_LOG_ERR, log, 0,
                  "traffic_shift_zone \"%V\" is full, address %*s of "
                  "upstream \"%V\" is not tracked",
                  &mcf->shm_zone->shm.name, len, name, &ups->uscf->host);

    return NULL;
}


static ngx_uint_t
ngx_http_traffic_shift_zone_resolved_of(ngx_http_traffic_shift_sh_server_t *rec,
    ngx_http_traffic_shift_upstream_t *ups)
{
    ngx_str_t  *host;

    host = &ups->uscf->host;

    return rec->key.len > host->len
           && rec->key.data[host->len] == '/'
           && ngx_strncmp(rec->key.data, host->data, host->len) == 0;
}


/*
 * Once a second in every worker: the records of the addresses it tracks
 * are confirmed, and those no worker confirmed for a while are freed.
 */

void
ngx_http_traffic_shift_zone_resolved_keep(
    ngx_http_traffic_shift_main_conf_t *mcf)
{
    time_t                               now;
    ngx_uint_t                           i, j;
    ngx_queue_t                         *q, *next;
    ngx_http_traffic_shift_sh_t         *sh;
    ngx_http_traffic_shift_server_t     *server;
    ngx_http_traffic_shift_upstream_t  **upsp;
    ngx_http_traffic_shift_sh_server_t  *rec;

    sh = mcf->sh;
    now = ngx_time();
    upsp = mcf->upstreams.elts;

    ngx_shmtx_lock(&mcf->shpool->mutex);

    for (i = 0; i < mcf->upstreams.nelts; i++) {
        for (j = upsp[i]->nconf; j < upsp[i]->nservers; j++) {
            server = &upsp[i]->servers[j];

            if (!server->duplicate
                && ngx_http_traffic_shift_sh_resolved(server->sh))
            {
                server->sh->resolved = now;
                server->sh->seen = sh->epoch;
            }
        }
    }

    for (q = ngx_queue_head(&sh->resolved);
         q != ngx_queue_sentinel(&sh->resolved);
         q = next)
    {
        next = ngx_queue_next(q);
        rec = ngx_queue_data(q, ngx_http_traffic_shift_sh_server_t, queue);

        if (now - rec->resolved <= NGX_HTTP_TS_RESOLVED_KEEP) {
            continue;
        }

        ngx_queue_remove(q);
        ngx_rbtree_delete(&sh->servers, &rec->node);
        ngx_slab_free_locked(mcf->shpool, rec->key.data);
        ngx_slab_free_locked(mcf->shpool, rec);
    }

    ngx_shmtx_unlock(&mcf->shpool->mutex);
}


/*
 * An admin-down mark of a resolved address, from the state file at start:
 * kept in a record of its own until the address is resolved (or for
 * NGX_HTTP_TS_RESOLVED_KEEP seconds).  NGX_DECLINED: not an address.
 */

ngx_int_t
ngx_http_traffic_shift_zone_resolved_mark(
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_upstream_t *ups, u_char *name, size_t len,
    ngx_log_t *log)
{
    ngx_uint_t                           shared;
    ngx_http_traffic_shift_sh_server_t  *rec;

    if (!ups->resolve || !ngx_http_traffic_shift_zone_is_addr(name, len)) {
        return NGX_DECLINED;
    }

    ngx_shmtx_lock(&mcf->shpool->mutex);

    rec = ngx_http_traffic_shift_zone_resolved_get(mcf, ups, name, len,
                                                   &shared, log);

    if (rec == NULL || shared) {
        ngx_shmtx_unlock(&mcf->shpool->mutex);
        return NGX_DECLINED;
    }

    rec->admin_down = 1;
    ngx_http_traffic_shift_zone_changed(mcf);

    ngx_shmtx_unlock(&mcf->shpool->mutex);

    return NGX_OK;
}


/* "ip:port" or "[ipv6]:port", as nginx names a resolved peer */

static ngx_uint_t
ngx_http_traffic_shift_zone_is_addr(u_char *name, size_t len)
{
    u_char  c;
    size_t  i;

    if (len == 0 || len >= NGX_SOCKADDR_STRLEN) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        c = name[i];

        if ((c < '0' || c > '9') && (c < 'a' || c > 'f')
            && (c < 'A' || c > 'F') && c != '.' && c != ':' && c != '['
            && c != ']')
        {
            return 0;
        }
    }

    return 1;
}
