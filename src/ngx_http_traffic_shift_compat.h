
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#ifndef _NGX_HTTP_TRAFFIC_SHIFT_COMPAT_H_INCLUDED_
#define _NGX_HTTP_TRAFFIC_SHIFT_COMPAT_H_INCLUDED_


/*
 * Where nginx's API differs between the versions the module builds
 * against (1.22 and later), and only here: nginx_version is tested in no
 * other file.  Included by ngx_http_traffic_shift.h, after nginx's headers.
 */


/* 1.23.0: a response header is a list item, linked by "next" */

#if (nginx_version >= 1023000)
#define ngx_http_traffic_shift_header_init(h)  (h)->next = NULL
#else
#define ngx_http_traffic_shift_header_init(h)
#endif


/*
 * A peer's "down" and a server's configured "down": a boolean before
 * 1.29.6, a mask since: NGX_HTTP_UPSTREAM_FAILED ("down", and the marks the
 * module sets) and, with the sticky module, NGX_HTTP_UPSTREAM_DRAINING
 * ("drain": only clients bound to the server use it).
 */

#if (nginx_version >= 1029006)

#define NGX_HTTP_TS_PEER_FAILED    NGX_HTTP_UPSTREAM_FAILED

#if defined(NGX_HTTP_UPSTREAM_DRAINING)
#define NGX_HTTP_TS_PEER_DRAINING  NGX_HTTP_UPSTREAM_DRAINING
#else
#define NGX_HTTP_TS_PEER_DRAINING  0
#endif

#else

#define NGX_HTTP_TS_PEER_FAILED    1
#define NGX_HTTP_TS_PEER_DRAINING  0

#endif


/* down in the configuration: neither probed nor used */
#define ngx_http_traffic_shift_conf_failed(down)                              \
    (((down) & NGX_HTTP_TS_PEER_FAILED) != 0)

/* "drain" in the configuration: probed, used by bound clients only */
#define ngx_http_traffic_shift_conf_draining(down)                            \
    (NGX_HTTP_TS_PEER_DRAINING != 0                                           \
     && ((down) & NGX_HTTP_TS_PEER_DRAINING) != 0)


/*
 * The "down" of a peer: its configured flags, kept whole, and the failed
 * flag when the module takes the server out of rotation.
 */

static ngx_inline void
ngx_http_traffic_shift_peer_set_down(ngx_http_upstream_rr_peer_t *peer,
    ngx_uint_t conf, ngx_uint_t down)
{
    peer->down = down ? (conf | NGX_HTTP_TS_PEER_FAILED) : conf;
}


/*
 * 1.27.3: "server NAME resolve" in an upstream with a zone.  The server
 * keeps the name in "host" and a placeholder address; its peer on
 * peers->resolve is a template, never used; the peers resolved from it are
 * added to and removed from peers->peer (and the backup list) at run time,
 * under the peers' write lock, each with "host" set, and every change
 * increments *peers->config.
 */

#if (nginx_version >= 1027003 && NGX_HTTP_UPSTREAM_ZONE)

#define NGX_HTTP_TS_RESOLVE  1

#define ngx_http_traffic_shift_server_resolves(us)  ((us)->host.len != 0)


static ngx_inline ngx_uint_t
ngx_http_traffic_shift_peers_config(ngx_http_upstream_rr_peers_t *peers)
{
    return (peers->shpool && peers->config) ? *peers->config : 0;
}


/* the configured down flags of the server a resolved peer comes from */

static ngx_inline ngx_int_t
ngx_http_traffic_shift_peer_resolved(ngx_http_upstream_rr_peers_t *peers,
    ngx_http_upstream_rr_peer_t *peer, ngx_uint_t *down)
{
    ngx_http_upstream_rr_peer_t  *template;

    if (peer->host == NULL) {
        return NGX_DECLINED;
    }

    *down = 0;

    for (template = peers->resolve; template; template = template->next) {
        if (template->host == peer->host) {
            *down = template->down;
            break;
        }
    }

    return NGX_OK;
}

#else

#define NGX_HTTP_TS_RESOLVE  0

#define ngx_http_traffic_shift_server_resolves(us)  0
#define ngx_http_traffic_shift_peers_config(peers)  0
#define ngx_http_traffic_shift_peer_resolved(peers, peer, down)  NGX_DECLINED

#endif


#endif /* _NGX_HTTP_TRAFFIC_SHIFT_COMPAT_H_INCLUDED_ */
