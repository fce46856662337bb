
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#include "ngx_http_traffic_shift_sync.h"


/*
 * The traffic_shift_sync directive: etcd's endpoints, the prefix, this
 * node's name, the timeout, TLS and etcd's user; checked at configuration
 * load, every invalid value an emerg with the file and the line.  The
 * watch that uses them is ngx_http_traffic_shift_sync.c.
 */


/*
 * a kept connection to etcd, idle: closed after this long.  etcd's own
 * HTTP server sets no idle timeout; a proxy or a load balancer in front
 * of it often has one of 60s or more: closing first avoids most of the
 * requests that would meet a connection closed under them.
 */
#define NGX_HTTP_TS_SYNC_KEEPALIVE  30000


static char *ngx_http_traffic_shift_sync_option(ngx_conf_t *cf,
    ngx_http_traffic_shift_sync_conf_t *scf, ngx_str_t *value);
static char *ngx_http_traffic_shift_sync_endpoint(ngx_conf_t *cf,
    ngx_http_traffic_shift_sync_conf_t *scf, ngx_str_t *value);
static char *ngx_http_traffic_shift_sync_auth(ngx_conf_t *cf,
    ngx_http_traffic_shift_sync_conf_t *scf);
static char *ngx_http_traffic_shift_sync_tls(ngx_conf_t *cf,
    ngx_http_traffic_shift_sync_conf_t *scf);

/*
 * traffic_shift_sync http[s]://HOST:PORT ... [prefix=P] [node=N]
 *                    [timeout=T] [keepalive=T] [ssl_ca=F]
 *                    [ssl_cert=F ssl_key=F] [user=NAME password_file=F]
 */

char *
ngx_http_traffic_shift_sync(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_traffic_shift_main_conf_t *mcf = conf;

    char                                    *rv;
    ngx_str_t                               *value;
    ngx_uint_t                               i;
    ngx_http_traffic_shift_sync_conf_t      *scf;
    ngx_http_traffic_shift_etcd_endpoint_t  *ep;

    if (mcf->sync) {
        return "is duplicate";
    }

    scf = ngx_pcalloc(cf->pool, sizeof(ngx_http_traffic_shift_sync_conf_t));
    if (scf == NULL) {
        return NGX_CONF_ERROR;
    }

    if (ngx_array_init(&scf->endpoints, cf->pool, 2,
                       sizeof(ngx_http_traffic_shift_etcd_endpoint_t))
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    ngx_str_set(&scf->prefix, "/traffic-shift/");
    scf->node = cf->cycle->hostname;
    scf->timeout = 3000;
    scf->keepalive = NGX_HTTP_TS_SYNC_KEEPALIVE;

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {
        rv = ngx_http_traffic_shift_sync_option(cf, scf, &value[i]);

        if (rv == NGX_CONF_OK) {
            continue;
        }

        if (rv != NGX_CONF_UNSET_PTR) {
            return rv;
        }

        if (ngx_http_traffic_shift_sync_endpoint(cf, scf, &value[i])
            != NGX_CONF_OK)
        {
            return NGX_CONF_ERROR;
        }
    }

    if (scf->endpoints.nelts == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "traffic_shift_sync needs at least one etcd "
                           "endpoint, \"http://HOST:PORT\"");
        return NGX_CONF_ERROR;
    }

    ep = scf->endpoints.elts;

    for (i = 0; i < scf->endpoints.nelts; i++) {
        ep[i].keepalive = scf->keepalive;
    }

    if (ngx_http_traffic_shift_sync_tls(cf, scf) != NGX_CONF_OK
        || ngx_http_traffic_shift_sync_auth(cf, scf) != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    mcf->sync = scf;

    return NGX_CONF_OK;
}


/* NGX_CONF_UNSET_PTR: not an option, an endpoint maybe */

static char *
ngx_http_traffic_shift_sync_option(ngx_conf_t *cf,
    ngx_http_traffic_shift_sync_conf_t *scf, ngx_str_t *value)
{
    u_char     *p;
    ngx_int_t   t;
    ngx_str_t   s, *file;

    if (ngx_strncmp(value->data, "prefix=", 7) == 0) {
        s.data = value->data + 7;
        s.len = value->len - 7;

        if (s.len < 2 || s.len > 128 || s.data[0] != '/'
            || s.data[s.len - 1] != '/'
            || ngx_strlchr(s.data, s.data + s.len, ' '))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid prefix \"%V\" in "
                               "traffic_shift_sync, expected a key "
                               "prefix that starts and ends with \"/\"",
                               &s);
            return NGX_CONF_ERROR;
        }

        scf->prefix = s;
        return NGX_CONF_OK;
    }

    if (ngx_strncmp(value->data, "node=", 5) == 0) {
        s.data = value->data + 5;
        s.len = value->len - 5;

        for (p = s.data; p < s.data + s.len; p++) {
            if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
                  || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'
                  || *p == '.'))
            {
                break;
            }
        }

        if (s.len == 0 || s.len > 64 || p != s.data + s.len) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid node \"%V\" in "
                               "traffic_shift_sync, expected 1 to 64 "
                               "of A-Z, a-z, 0-9, \".\", \"_\" and "
                               "\"-\"", &s);
            return NGX_CONF_ERROR;
        }

        scf->node = s;
        return NGX_CONF_OK;
    }

    if (ngx_strncmp(value->data, "timeout=", 8) == 0) {
        s.data = value->data + 8;
        s.len = value->len - 8;

        t = ngx_parse_time(&s, 0);

        if (t == NGX_ERROR || t == 0 || t > 60000) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid timeout \"%V\" in "
                               "traffic_shift_sync, expected 1ms to "
                               "60s", &s);
            return NGX_CONF_ERROR;
        }

        scf->timeout = t;
        return NGX_CONF_OK;
    }

    if (ngx_strncmp(value->data, "keepalive=", 10) == 0) {
        s.data = value->data + 10;
        s.len = value->len - 10;

        t = ngx_parse_time(&s, 0);

        if (t == NGX_ERROR || t > 300000) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid keepalive \"%V\" in "
                               "traffic_shift_sync, expected 0 (off) to "
                               "300s", &s);
            return NGX_CONF_ERROR;
        }

        scf->keepalive = t;
        return NGX_CONF_OK;
    }

    if (ngx_strncmp(value->data, "user=", 5) == 0) {
        s.data = value->data + 5;
        s.len = value->len - 5;

        if (s.len == 0 || s.len > 256) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid user \"%V\" in traffic_shift_sync, "
                               "expected 1 to 256 characters", &s);
            return NGX_CONF_ERROR;
        }

        scf->user = s;
        return NGX_CONF_OK;
    }

    if (ngx_strncmp(value->data, "ssl_ca=", 7) == 0) {
        file = &scf->ssl_ca;
        s.data = value->data + 7;

    } else if (ngx_strncmp(value->data, "ssl_cert=", 9) == 0) {
        file = &scf->ssl_cert;
        s.data = value->data + 9;

    } else if (ngx_strncmp(value->data, "ssl_key=", 8) == 0) {
        file = &scf->ssl_key;
        s.data = value->data + 8;

    } else if (ngx_strncmp(value->data, "password_file=", 14) == 0) {
        file = &scf->password_file;
        s.data = value->data + 14;

    } else {
        return NGX_CONF_UNSET_PTR;
    }

    s.len = value->data + value->len - s.data;

    if (s.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "empty file in \"%V\" of traffic_shift_sync",
                           value);
        return NGX_CONF_ERROR;
    }

    *file = s;

    return NGX_CONF_OK;
}


/* user= and password_file=: every endpoint authenticates, with a token each */

static char *
ngx_http_traffic_shift_sync_auth(ngx_conf_t *cf,
    ngx_http_traffic_shift_sync_conf_t *scf)
{
    ngx_str_t                                password;
    ngx_uint_t                               i;
    ngx_http_traffic_shift_etcd_endpoint_t  *ep;

    if (ngx_http_traffic_shift_etcd_auth_conf(cf, &scf->user,
                                              &scf->password_file, &password)
        != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    ep = scf->endpoints.elts;

    for (i = 0; password.len && i < scf->endpoints.nelts; i++) {
        ep[i].auth = ngx_http_traffic_shift_etcd_auth_create(cf->pool,
                                                             &scf->user,
                                                             &password);
        if (ep[i].auth == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


/* https:// endpoints: one TLS context, the CA required */

static char *
ngx_http_traffic_shift_sync_tls(ngx_conf_t *cf,
    ngx_http_traffic_shift_sync_conf_t *scf)
{
    ngx_uint_t                               i, https;
    ngx_http_traffic_shift_etcd_endpoint_t  *ep;
#if (NGX_HTTP_SSL)
    ngx_pool_cleanup_t                      *cln;
#endif

    ep = scf->endpoints.elts;
    https = 0;

    for (i = 0; i < scf->endpoints.nelts; i++) {
        https |= ep[i].https;
    }

    if (!https) {
        if (scf->ssl_ca.len || scf->ssl_cert.len || scf->ssl_key.len) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "ssl_ca=, ssl_cert= and ssl_key= of "
                               "traffic_shift_sync need an \"https://\" "
                               "endpoint");
            return NGX_CONF_ERROR;
        }

        return NGX_CONF_OK;
    }

#if (NGX_HTTP_SSL)

    if (scf->ssl_ca.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"https://\" endpoints of traffic_shift_sync "
                           "need ssl_ca=FILE, the CA of etcd's "
                           "certificates");
        return NGX_CONF_ERROR;
    }

    if ((scf->ssl_cert.len == 0) != (scf->ssl_key.len == 0)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "ssl_cert= and ssl_key= of traffic_shift_sync "
                           "go together");
        return NGX_CONF_ERROR;
    }

    scf->ssl = ngx_pcalloc(cf->pool, sizeof(ngx_ssl_t));
    if (scf->ssl == NULL) {
        return NGX_CONF_ERROR;
    }

    scf->ssl->log = cf->log;

    if (ngx_ssl_create(scf->ssl, NGX_SSL_TLSv1_2|NGX_SSL_TLSv1_3, NULL)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        ngx_ssl_cleanup_ctx(scf->ssl);
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_ssl_cleanup_ctx;
    cln->data = scf->ssl;

    if (ngx_ssl_trusted_certificate(cf, scf->ssl, &scf->ssl_ca, 4)
        != NGX_OK)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "cannot load ssl_ca=\"%V\" of "
                           "traffic_shift_sync", &scf->ssl_ca);
        return NGX_CONF_ERROR;
    }

    if (scf->ssl_cert.len
        && ngx_ssl_certificate(cf, scf->ssl, &scf->ssl_cert, &scf->ssl_key,
                               NULL)
           != NGX_OK)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "cannot load ssl_cert=\"%V\" and ssl_key=\"%V\" "
                           "of traffic_shift_sync", &scf->ssl_cert,
                           &scf->ssl_key);
        return NGX_CONF_ERROR;
    }

    for (i = 0; i < scf->endpoints.nelts; i++) {
        if (ep[i].https) {
            ep[i].ssl = scf->ssl;
        }
    }

    return NGX_CONF_OK;

#else

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"https://\" endpoints of traffic_shift_sync need "
                       "nginx built with ngx_http_ssl_module");
    return NGX_CONF_ERROR;

#endif
}


static char *
ngx_http_traffic_shift_sync_endpoint(ngx_conf_t *cf,
    ngx_http_traffic_shift_sync_conf_t *scf, ngx_str_t *value)
{
    size_t                                   skip;
    ngx_url_t                                u;
    ngx_uint_t                               https;
    ngx_http_traffic_shift_etcd_endpoint_t  *ep;

    https = (value->len > 8
             && ngx_strncasecmp(value->data, (u_char *) "https://", 8) == 0);

    skip = https ? 8 : 7;

    if (!https
        && (value->len <= 7
            || ngx_strncasecmp(value->data, (u_char *) "http://", 7) != 0))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\" in traffic_shift_sync, "
                           "expected \"http[s]://HOST:PORT\", \"prefix=\", "
                           "\"node=\", \"timeout=\", \"keepalive=\", "
                           "\"ssl_...=\", "
                           "\"user=\" or \"password_file=\"", value);
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.url.data = value->data + skip;
    u.url.len = value->len - skip;

    if (u.url.len && u.url.data[u.url.len - 1] == '/') {
        u.url.len--;
    }

    u.default_port = 2379;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.naddrs == 0
        || u.uri.len)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid etcd endpoint \"%V\" in "
                           "traffic_shift_sync%s%s", value,
                           u.err ? ": " : "", u.err ? u.err : "");
        return NGX_CONF_ERROR;
    }

    ep = ngx_array_push(&scf->endpoints);
    if (ep == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(ep, sizeof(ngx_http_traffic_shift_etcd_endpoint_t));

    ep->name = u.url;
    ep->addr = u.addrs[0];
    ep->https = https;

    /* for SNI and the certificate's check: a C string */

    ep->host.len = u.host.len;
    ep->host.data = ngx_pnalloc(cf->pool, u.host.len + 1);
    if (ep->host.data == NULL) {
        return NGX_CONF_ERROR;
    }

    (void) ngx_cpystrn(ep->host.data, u.host.data, u.host.len + 1);

    return NGX_CONF_OK;
}
