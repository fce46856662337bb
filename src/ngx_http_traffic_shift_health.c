
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#include "ngx_http_traffic_shift_health.h"
#include "ngx_http_traffic_shift_zone.h"


/*
 * Active health checks.  Every worker keeps a timer per checked server;
 * the worker holding the server's lease in the shared zone probes it, at
 * most once per interval across all workers: a probe starts only under the
 * zone's mutex, when the last one (by any worker) started an interval ago.
 * The lease expires one interval plus jitter plus timeout after the probe
 * started, so that another worker takes over when its owner dies.
 */


#define NGX_HTTP_TS_HC_CONNECT     0
#define NGX_HTTP_TS_HC_HANDSHAKE   1
#define NGX_HTTP_TS_HC_SEND        2
#define NGX_HTTP_TS_HC_RECV        3

/* the response is read to the end; a body to match is kept up to this */
#define NGX_HTTP_TS_HC_BODY_MAX    16384
#define NGX_HTTP_TS_HC_BUF_SIZE    1024

#define NGX_HTTP_TS_HC_USER_AGENT  "nginx-traffic-shift health check"

/* health_check parameters, in the order of the table below */
#define NGX_HTTP_TS_HC_P_TYPE      0
#define NGX_HTTP_TS_HC_P_URI       1
#define NGX_HTTP_TS_HC_P_HOST      2
#define NGX_HTTP_TS_HC_P_PORT      3
#define NGX_HTTP_TS_HC_P_INTERVAL  4
#define NGX_HTTP_TS_HC_P_JITTER    5
#define NGX_HTTP_TS_HC_P_TIMEOUT   6
#define NGX_HTTP_TS_HC_P_FAILS     7
#define NGX_HTTP_TS_HC_P_PASSES    8
#define NGX_HTTP_TS_HC_P_STATUS    9
#define NGX_HTTP_TS_HC_P_BODY      10

#define NGX_HTTP_TS_HC_P_HTTP_ONLY                                            \
    (1 << NGX_HTTP_TS_HC_P_URI | 1 << NGX_HTTP_TS_HC_P_HOST                   \
     | 1 << NGX_HTTP_TS_HC_P_STATUS | 1 << NGX_HTTP_TS_HC_P_BODY)


typedef struct {
    ngx_http_traffic_shift_main_conf_t    *mcf;
    ngx_http_traffic_shift_upstream_t     *ups;
    ngx_http_traffic_shift_server_t       *server;
    ngx_http_traffic_shift_health_conf_t  *conf;

    /* where probes go: the server's address, or its port= override */
    struct sockaddr                       *sockaddr;
    socklen_t                              socklen;
    ngx_str_t                              name;

    ngx_event_t                            timer;
    ngx_log_t                              log;
    ngx_uint_t                             log_level;

    /* the probe in flight */
    ngx_peer_connection_t                  pc;
    ngx_pool_t                            *pool;
    ngx_buf_t                             *buf;
    ngx_http_request_t                    *request;
    ngx_http_status_t                      status;
    u_char                                *sent;
    /* where the body starts, once the headers are read */
    u_char                                *body_start;
    ngx_uint_t                             phase;

    unsigned                               busy:1;
    unsigned                               status_parsed:1;
    unsigned                               headers_done:1;
} ngx_http_traffic_shift_probe_t;


/* a worker's health checker, in the cycle's pool */

typedef struct {
    ngx_uint_t                             nprobes;
    ngx_http_traffic_shift_probe_t        *probes;
} ngx_http_traffic_shift_health_t;


static char *ngx_http_traffic_shift_health_status(ngx_conf_t *cf,
    ngx_http_traffic_shift_health_conf_t *hc, ngx_str_t *value);
static ngx_int_t ngx_http_traffic_shift_health_request(ngx_conf_t *cf,
    ngx_http_traffic_shift_health_conf_t *hc,
    ngx_http_upstream_srv_conf_t *uscf);
static ngx_uint_t ngx_http_traffic_shift_health_valid(ngx_str_t *s);
#if (NGX_HTTP_SSL)
static ngx_int_t ngx_http_traffic_shift_health_sni(ngx_conf_t *cf,
    ngx_http_traffic_shift_health_conf_t *hc);
#endif
static void ngx_http_traffic_shift_health_reset(
    ngx_http_traffic_shift_main_conf_t *mcf);
static ngx_int_t ngx_http_traffic_shift_health_probe_init(ngx_cycle_t *cycle,
    ngx_http_traffic_shift_probe_t *probe);
static u_char *ngx_http_traffic_shift_health_log_error(ngx_log_t *log,
    u_char *buf, size_t len);

static void ngx_http_traffic_shift_health_timer(ngx_event_t *ev);
static ngx_int_t ngx_http_traffic_shift_health_lease(
    ngx_http_traffic_shift_probe_t *probe, ngx_msec_t *delay);
static void ngx_http_traffic_shift_health_release(
    ngx_http_traffic_shift_probe_t *probe);
static void ngx_http_traffic_shift_health_start(
    ngx_http_traffic_shift_probe_t *probe);
static void ngx_http_traffic_shift_health_handler(ngx_event_t *ev);
static ngx_int_t ngx_http_traffic_shift_health_test_connect(
    ngx_http_traffic_shift_probe_t *probe);
static char *ngx_http_traffic_shift_health_connect_error(ngx_err_t err);
static void ngx_http_traffic_shift_health_connected(
    ngx_http_traffic_shift_probe_t *probe);
#if (NGX_HTTP_SSL)
static void ngx_http_traffic_shift_health_ssl(
    ngx_http_traffic_shift_probe_t *probe);
static void ngx_http_traffic_shift_health_ssl_handshake(ngx_connection_t *c);
#endif
static void ngx_http_traffic_shift_health_send(
    ngx_http_traffic_shift_probe_t *probe);
static void ngx_http_traffic_shift_health_recv(
    ngx_http_traffic_shift_probe_t *probe);
static ngx_int_t ngx_http_traffic_shift_health_headers(
    ngx_http_traffic_shift_probe_t *probe);
static void ngx_http_traffic_shift_health_response(
    ngx_http_traffic_shift_probe_t *probe);
#if (NGX_PCRE)
static char *ngx_http_traffic_shift_health_match(
    ngx_http_traffic_shift_probe_t *probe);
#endif
static ngx_uint_t ngx_http_traffic_shift_health_status_ok(
    ngx_http_traffic_shift_health_conf_t *conf, ngx_uint_t code);
static void ngx_http_traffic_shift_health_done(
    ngx_http_traffic_shift_probe_t *probe, ngx_uint_t result, char *reason);
static void ngx_http_traffic_shift_health_record(
    ngx_http_traffic_shift_probe_t *probe, ngx_uint_t result, char *reason);
static void ngx_http_traffic_shift_health_close(
    ngx_http_traffic_shift_probe_t *probe);


static ngx_str_t  ngx_http_traffic_shift_health_params[] = {
    ngx_string("type"),
    ngx_string("uri"),
    ngx_string("host"),
    ngx_string("port"),
    ngx_string("interval"),
    ngx_string("jitter"),
    ngx_string("timeout"),
    ngx_string("fails"),
    ngx_string("passes"),
    ngx_string("status"),
    ngx_string("body"),
    ngx_null_string
};


/* health_check [type=http|tcp|https] [uri=/] [host=] [port=] ... */

char *
ngx_http_traffic_shift_health_check(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_traffic_shift_srv_conf_t *scf = conf;

    u_char                                *p;
    ngx_int_t                              n;
    ngx_str_t                             *value, name, v;
    ngx_uint_t                             i, k, seen, in_status;
    ngx_http_upstream_srv_conf_t          *uscf;
    ngx_http_traffic_shift_health_conf_t  *hc;
#if (NGX_PCRE)
    ngx_regex_compile_t                    rc;
    u_char                                 errstr[NGX_MAX_CONF_ERRSTR];
#endif

    if (scf->health) {
        return "is duplicate";
    }

    hc = ngx_pcalloc(cf->pool, sizeof(ngx_http_traffic_shift_health_conf_t));
    if (hc == NULL) {
        return NGX_CONF_ERROR;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     hc->host = { 0, NULL };
     *     hc->port = 0;
     *     hc->jitter = 0;
     *     hc->body = NULL;
     *     hc->ssl = NULL;
     */

    hc->type = NGX_HTTP_TS_HC_HTTP;
    ngx_str_set(&hc->uri, "/");
    hc->interval = 5000;
    hc->timeout = 2000;
    hc->fails = 1;
    hc->passes = 1;
    hc->file_name = cf->conf_file->file.name.data;
    hc->line = cf->conf_file->line;

    value = cf->args->elts;
    seen = 0;
    in_status = 0;

    for (i = 1; i < cf->args->nelts; i++) {

        p = ngx_strlchr(value[i].data, value[i].data + value[i].len, '=');

        /* "status=200 204 300-399": codes after status= continue it */

        if (in_status && p == NULL) {
            if (ngx_http_traffic_shift_health_status(cf, hc, &value[i])
                != NGX_CONF_OK)
            {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        in_status = 0;

        if (p == NULL) {
            goto invalid;
        }

        name.data = value[i].data;
        name.len = p - value[i].data;
        v.data = p + 1;
        v.len = value[i].data + value[i].len - v.data;

        for (k = 0; ngx_http_traffic_shift_health_params[k].len; k++) {
            if (ngx_http_traffic_shift_health_params[k].len == name.len
                && ngx_strncmp(ngx_http_traffic_shift_health_params[k].data,
                               name.data, name.len)
                   == 0)
            {
                break;
            }
        }

        if (ngx_http_traffic_shift_health_params[k].len == 0) {
            goto invalid;
        }

        if (seen & (1 << k)) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate parameter \"%V\" in health_check",
                               &value[i]);
            return NGX_CONF_ERROR;
        }

        seen |= 1 << k;

        switch (k) {

        case NGX_HTTP_TS_HC_P_TYPE:

            if (v.len == 4 && ngx_strncmp(v.data, "http", 4) == 0) {
                hc->type = NGX_HTTP_TS_HC_HTTP;

            } else if (v.len == 3 && ngx_strncmp(v.data, "tcp", 3) == 0) {
                hc->type = NGX_HTTP_TS_HC_TCP;

            } else if (v.len == 5 && ngx_strncmp(v.data, "https", 5) == 0) {
#if (NGX_HTTP_SSL)
                hc->type = NGX_HTTP_TS_HC_HTTPS;
#else
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "\"%V\" requires nginx built with "
                                   "ngx_http_ssl_module", &value[i]);
                return NGX_CONF_ERROR;
#endif

            } else {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid health_check type \"%V\", "
                                   "expected http, tcp or https", &value[i]);
                return NGX_CONF_ERROR;
            }

            break;

        case NGX_HTTP_TS_HC_P_URI:

            if (v.len == 0 || v.data[0] != '/'
                || !ngx_http_traffic_shift_health_valid(&v))
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid health_check uri \"%V\", "
                                   "expected a path starting with \"/\"",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            hc->uri = v;
            break;

        case NGX_HTTP_TS_HC_P_HOST:

            if (v.len == 0 || !ngx_http_traffic_shift_health_valid(&v)
                || ngx_strlchr(v.data, v.data + v.len, '/'))
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid health_check host \"%V\"",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            hc->host = v;
            break;

        case NGX_HTTP_TS_HC_P_PORT:

            n = ngx_atoi(v.data, v.len);

            if (n < 1 || n > 65535) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid health_check port \"%V\", "
                                   "expected 1 to 65535", &value[i]);
                return NGX_CONF_ERROR;
            }

            hc->port = (in_port_t) n;
            break;

        case NGX_HTTP_TS_HC_P_INTERVAL:
        case NGX_HTTP_TS_HC_P_JITTER:
        case NGX_HTTP_TS_HC_P_TIMEOUT:

            n = ngx_parse_time(&v, 0);

            if (n == NGX_ERROR
                || (n == 0 && k != NGX_HTTP_TS_HC_P_JITTER))
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid health_check %V \"%V\", "
                                   "expected a time%s", &name, &value[i],
                                   k == NGX_HTTP_TS_HC_P_JITTER
                                   ? "" : " greater than 0");
                return NGX_CONF_ERROR;
            }

            if (k == NGX_HTTP_TS_HC_P_INTERVAL) {
                hc->interval = (ngx_msec_t) n;

            } else if (k == NGX_HTTP_TS_HC_P_JITTER) {
                hc->jitter = (ngx_msec_t) n;

            } else {
                hc->timeout = (ngx_msec_t) n;
            }

            break;

        case NGX_HTTP_TS_HC_P_FAILS:
        case NGX_HTTP_TS_HC_P_PASSES:

            n = ngx_atoi(v.data, v.len);

            if (n < 1 || n > 1000) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid health_check %V \"%V\", "
                                   "expected 1 to 1000", &name, &value[i]);
                return NGX_CONF_ERROR;
            }

            if (k == NGX_HTTP_TS_HC_P_FAILS) {
                hc->fails = n;

            } else {
                hc->passes = n;
            }

            break;

        case NGX_HTTP_TS_HC_P_STATUS:

            if (ngx_http_traffic_shift_health_status(cf, hc, &v)
                != NGX_CONF_OK)
            {
                return NGX_CONF_ERROR;
            }

            in_status = 1;
            break;

        default: /* NGX_HTTP_TS_HC_P_BODY */

            if (v.len == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "empty health_check body regex in \"%V\"",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

#if (NGX_PCRE)
            ngx_memzero(&rc, sizeof(ngx_regex_compile_t));

            rc.pattern = v;
            rc.pool = cf->pool;
            rc.err.len = NGX_MAX_CONF_ERRSTR;
            rc.err.data = errstr;

            if (ngx_regex_compile(&rc) != NGX_OK) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid health_check body regex: %V",
                                   &rc.err);
                return NGX_CONF_ERROR;
            }

            hc->body = rc.regex;
            hc->body_pattern = v;
#else
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"%V\" requires nginx built with PCRE",
                               &value[i]);
            return NGX_CONF_ERROR;
#endif

            break;
        }
    }

    if (!(seen & (1 << NGX_HTTP_TS_HC_P_STATUS))) {
        /* 200-399 */
        for (i = 200; i < 400; i++) {
            hc->status[i / 32] |= (uint32_t) 1 << (i % 32);
        }
    }

    /* what only makes sense for http and https */

    if (hc->type == NGX_HTTP_TS_HC_TCP) {

        for (k = 0; ngx_http_traffic_shift_health_params[k].len; k++) {

            if (!(seen & NGX_HTTP_TS_HC_P_HTTP_ONLY & (1 << k))) {
                continue;
            }

            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "health_check parameter \"%V\" is not "
                               "allowed with type=tcp",
                               &ngx_http_traffic_shift_health_params[k]);
            return NGX_CONF_ERROR;
        }
    }

#if (NGX_HTTP_SSL)
    if (hc->type == NGX_HTTP_TS_HC_HTTPS && hc->host.len
        && ngx_http_traffic_shift_health_sni(cf, hc) != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }
#endif

    uscf = ngx_http_conf_get_module_srv_conf(cf, ngx_http_upstream_module);

    if (hc->type != NGX_HTTP_TS_HC_TCP
        && ngx_http_traffic_shift_health_request(cf, hc, uscf) != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    scf->health = hc;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid health_check parameter \"%V\"", &value[i]);

    return NGX_CONF_ERROR;
}


/* "200", "300-399", "200,204,300-399" */

static char *
ngx_http_traffic_shift_health_status(ngx_conf_t *cf,
    ngx_http_traffic_shift_health_conf_t *hc, ngx_str_t *value)
{
    u_char     *p, *last, *comma, *dash;
    ngx_int_t   lo, hi, i;
    ngx_str_t   item;

    p = value->data;
    last = value->data + value->len;

    if (p == last) {
        goto invalid;
    }

    while (p < last) {

        comma = ngx_strlchr(p, last, ',');
        if (comma == NULL) {
            comma = last;
        }

        item.data = p;
        item.len = comma - p;

        dash = ngx_strlchr(p, comma, '-');

        if (dash) {
            lo = ngx_atoi(p, dash - p);
            hi = ngx_atoi(dash + 1, comma - dash - 1);

        } else {
            lo = ngx_atoi(p, comma - p);
            hi = lo;
        }

        if (lo < 100 || hi > 599 || lo > hi) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid health_check status \"%V\", "
                               "expected codes from 100 to 599 or ranges "
                               "LOW-HIGH", &item);
            return NGX_CONF_ERROR;
        }

        for (i = lo; i <= hi; i++) {
            hc->status[i / 32] |= (uint32_t) 1 << (i % 32);
        }

        p = comma + 1;

        if (comma + 1 == last) {
            goto invalid;
        }
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid health_check status \"%V\"", value);

    return NGX_CONF_ERROR;
}


/* visible ASCII only: the value goes into the request as it is */

static ngx_uint_t
ngx_http_traffic_shift_health_valid(ngx_str_t *s)
{
    size_t  i;

    for (i = 0; i < s->len; i++) {
        if (s->data[i] <= ' ' || s->data[i] >= 0x7f) {
            return 0;
        }
    }

    return 1;
}


#if (NGX_HTTP_SSL)

/* SNI: the host= name without a port; none for an address */

static ngx_int_t
ngx_http_traffic_shift_health_sni(ngx_conf_t *cf,
    ngx_http_traffic_shift_health_conf_t *hc)
{
    u_char  *p;
    size_t   len;

    if (hc->host.data[0] == '[') {
        return NGX_OK;
    }

    p = ngx_strlchr(hc->host.data, hc->host.data + hc->host.len, ':');
    len = p ? (size_t) (p - hc->host.data) : hc->host.len;

    if (len == 0 || ngx_inet_addr(hc->host.data, len) != INADDR_NONE) {
        return NGX_OK;
    }

    hc->sni.data = ngx_pnalloc(cf->pool, len + 1);
    if (hc->sni.data == NULL) {
        return NGX_ERROR;
    }

    ngx_cpystrn(hc->sni.data, hc->host.data, len + 1);
    hc->sni.len = len;

    return NGX_OK;
}

#endif


static ngx_int_t
ngx_http_traffic_shift_health_request(ngx_conf_t *cf,
    ngx_http_traffic_shift_health_conf_t *hc,
    ngx_http_upstream_srv_conf_t *uscf)
{
    u_char     *p;
    size_t      len;
    ngx_str_t  *host;

    /* without host=, the upstream's name, as proxy_pass sends it */

    host = hc->host.len ? &hc->host : &uscf->host;

    len = sizeof("GET  HTTP/1.0" CRLF) - 1 + hc->uri.len
          + sizeof("Host: " CRLF) - 1 + host->len
          + sizeof("User-Agent: " NGX_HTTP_TS_HC_USER_AGENT CRLF) - 1
          + sizeof("Connection: close" CRLF CRLF) - 1;

    p = ngx_pnalloc(cf->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    hc->request.data = p;

    p = ngx_sprintf(p, "GET %V HTTP/1.0" CRLF "Host: %V" CRLF
                    "User-Agent: " NGX_HTTP_TS_HC_USER_AGENT CRLF
                    "Connection: close" CRLF CRLF, &hc->uri, host);

    hc->request.len = p - hc->request.data;

    return NGX_OK;
}


ngx_int_t
ngx_http_traffic_shift_health_init(ngx_conf_t *cf,
    ngx_http_traffic_shift_main_conf_t *mcf)
{
#if (NGX_HTTP_SSL)
    ngx_str_t                             ciphers;
    ngx_uint_t                            i;
    ngx_ssl_t                            *ssl;
    ngx_pool_cleanup_t                   *cln;
    ngx_http_traffic_shift_upstream_t   **upsp;

    /* one client TLS context for every https check of this cycle */

    ssl = NULL;
    upsp = mcf->upstreams.elts;

    for (i = 0; i < mcf->upstreams.nelts; i++) {

        if (upsp[i]->health == NULL
            || upsp[i]->health->type != NGX_HTTP_TS_HC_HTTPS)
        {
            continue;
        }

        if (ssl == NULL) {
            ssl = ngx_pcalloc(cf->pool, sizeof(ngx_ssl_t));
            if (ssl == NULL) {
                return NGX_ERROR;
            }

            ssl->log = cf->log;

            if (ngx_ssl_create(ssl, NGX_SSL_TLSv1_2|NGX_SSL_TLSv1_3, NULL)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            cln = ngx_pool_cleanup_add(cf->pool, 0);
            if (cln == NULL) {
                ngx_ssl_cleanup_ctx(ssl);
                return NGX_ERROR;
            }

            cln->handler = ngx_ssl_cleanup_ctx;
            cln->data = ssl;

            ngx_str_set(&ciphers, "DEFAULT");

            if (ngx_ssl_ciphers(cf, ssl, &ciphers, 0) != NGX_OK) {
                return NGX_ERROR;
            }
        }

        upsp[i]->health->ssl = ssl;
    }
#endif

    return NGX_OK;
}


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
            n += !upsp[i]->servers[j].conf_down;
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

            /* a server down in the configuration stays down: not probed */

            if (upsp[i]->servers[j].conf_down) {
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
            ngx_http_traffic_shift_health_close(probe);
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
        ngx_http_traffic_shift_health_release(probe);
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

    ngx_http_traffic_shift_health_start(probe);
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


static void
ngx_http_traffic_shift_health_release(ngx_http_traffic_shift_probe_t *probe)
{
    ngx_http_traffic_shift_sh_server_t  *sh;

    sh = probe->server->sh;

    ngx_shmtx_lock(&probe->mcf->shpool->mutex);

    if (sh->lease_pid == ngx_pid) {
        sh->lease_pid = 0;
        sh->lease_expire = 0;
    }

    ngx_shmtx_unlock(&probe->mcf->shpool->mutex);
}


static void
ngx_http_traffic_shift_health_start(ngx_http_traffic_shift_probe_t *probe)
{
    char              *reason;
    ngx_int_t          rc;
    ngx_err_t          err;
    ngx_connection_t  *c;

    probe->pool = ngx_create_pool(2048, &probe->log);
    if (probe->pool == NULL) {
        return;
    }

    probe->busy = 1;
    probe->phase = NGX_HTTP_TS_HC_CONNECT;
    probe->status_parsed = 0;
    probe->headers_done = 0;
    probe->buf = NULL;
    probe->request = NULL;
    probe->body_start = NULL;
    probe->sent = probe->conf->request.data;

    ngx_memzero(&probe->status, sizeof(ngx_http_status_t));
    ngx_memzero(&probe->pc, sizeof(ngx_peer_connection_t));

    probe->pc.sockaddr = probe->sockaddr;
    probe->pc.socklen = probe->socklen;
    probe->pc.name = &probe->name;
    probe->pc.get = ngx_event_get_peer;
    probe->pc.log = &probe->log;
    probe->pc.log_error = NGX_ERROR_INFO;
    probe->pc.tries = 1;

    /*
     * a refused connection is the probe's result, recorded with its
     * reason: it is not logged at "error" on every probe
     */

    if (probe->log.log_level > NGX_LOG_CRIT
        && probe->log.log_level < NGX_LOG_DEBUG)
    {
        probe->log.log_level = NGX_LOG_CRIT;
    }

    rc = ngx_event_connect_peer(&probe->pc);
    err = ngx_socket_errno;

    probe->log.log_level = probe->log_level;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, &probe->log, 0,
                   "traffic_shift health check of %V in \"%V\": connect %i",
                   &probe->name, &probe->ups->uscf->host, rc);

    if (rc == NGX_DECLINED) {
        probe->pc.connection = NULL;
        reason = ngx_http_traffic_shift_health_connect_error(err);
        ngx_http_traffic_shift_health_done(probe, NGX_HTTP_TS_PROBE_FAIL,
                                           reason);
        return;
    }

    if (rc == NGX_ERROR || rc == NGX_BUSY) {

        /*
         * no socket or connection here, already logged: the probe was not
         * sent, which says nothing of the server
         */

        probe->pc.connection = NULL;
        ngx_http_traffic_shift_health_close(probe);
        return;
    }

    c = probe->pc.connection;

    c->data = probe;
    c->pool = probe->pool;

    /* closed at once when the worker shuts down */
    c->idle = 1;

    c->read->handler = ngx_http_traffic_shift_health_handler;
    c->write->handler = ngx_http_traffic_shift_health_handler;

    /* the timeout counts from the probe's start, whatever the phase */

    c->read->cancelable = 1;
    c->write->cancelable = 1;
    ngx_add_timer(c->read, probe->conf->timeout);

    if (rc == NGX_AGAIN) {
        return;
    }

    ngx_http_traffic_shift_health_connected(probe);
}


static void
ngx_http_traffic_shift_health_handler(ngx_event_t *ev)
{
    char                            *reason;
    ngx_connection_t                *c;
    ngx_http_traffic_shift_probe_t  *probe;

    c = ev->data;
    probe = c->data;

    if (c->close || ngx_exiting || ngx_terminate) {
        ngx_http_traffic_shift_health_close(probe);
        ngx_http_traffic_shift_health_release(probe);
        return;
    }

    if (ev->timedout) {
        c->timedout = 1;

        switch (probe->phase) {

        case NGX_HTTP_TS_HC_CONNECT:
            reason = "timeout while connecting";
            break;

        case NGX_HTTP_TS_HC_SEND:
            reason = "timeout while sending request";
            break;

        default:
            reason = "timeout while reading response";
        }

        ngx_http_traffic_shift_health_done(probe, NGX_HTTP_TS_PROBE_TIMEOUT,
                                           reason);
        return;
    }

    switch (probe->phase) {

    case NGX_HTTP_TS_HC_CONNECT:

        if (ngx_http_traffic_shift_health_test_connect(probe) == NGX_OK) {
            ngx_http_traffic_shift_health_connected(probe);
        }

        return;

    case NGX_HTTP_TS_HC_SEND:

        if (ev->write) {
            ngx_http_traffic_shift_health_send(probe);
        }

        return;

    case NGX_HTTP_TS_HC_RECV:

        if (!ev->write) {
            ngx_http_traffic_shift_health_recv(probe);
        }

        return;

    default:
        return;
    }
}


static ngx_int_t
ngx_http_traffic_shift_health_test_connect(
    ngx_http_traffic_shift_probe_t *probe)
{
    int                err;
    char              *reason;
    socklen_t          len;
    ngx_connection_t  *c;

    c = probe->pc.connection;

#if (NGX_HAVE_KQUEUE)

    if (ngx_event_flags & NGX_USE_KQUEUE_EVENT) {
        err = 0;

        if (c->write->pending_eof || c->read->pending_eof) {
            err = c->write->pending_eof ? c->write->kq_errno
                                        : c->read->kq_errno;
            if (err == 0) {
                err = NGX_ECONNREFUSED;
            }
        }

    } else
#endif
    {
        err = 0;
        len = sizeof(int);

        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, (void *) &err, &len)
            == -1)
        {
            err = ngx_socket_errno;
        }
    }

    if (err == 0) {
        return NGX_OK;
    }

    c->error = 1;

    reason = ngx_http_traffic_shift_health_connect_error(err);
    ngx_http_traffic_shift_health_done(probe, NGX_HTTP_TS_PROBE_FAIL, reason);

    return NGX_ERROR;
}


static char *
ngx_http_traffic_shift_health_connect_error(ngx_err_t err)
{
    switch (err) {

    case NGX_ECONNREFUSED:
        return "connect refused";

    case NGX_ETIMEDOUT:
        return "connect timed out";

    case NGX_EHOSTUNREACH:
    case NGX_ENETUNREACH:
        return "host unreachable";

    default:
        return "connect failed";
    }
}


static void
ngx_http_traffic_shift_health_connected(ngx_http_traffic_shift_probe_t *probe)
{
    switch (probe->conf->type) {

    case NGX_HTTP_TS_HC_TCP:
        ngx_http_traffic_shift_health_done(probe, NGX_HTTP_TS_PROBE_OK, NULL);
        return;

#if (NGX_HTTP_SSL)
    case NGX_HTTP_TS_HC_HTTPS:
        ngx_http_traffic_shift_health_ssl(probe);
        return;
#endif

    default:
        probe->phase = NGX_HTTP_TS_HC_SEND;
        ngx_http_traffic_shift_health_send(probe);
        return;
    }
}


#if (NGX_HTTP_SSL)

static void
ngx_http_traffic_shift_health_ssl(ngx_http_traffic_shift_probe_t *probe)
{
    ngx_int_t                              rc;
    ngx_connection_t                      *c;
    ngx_http_traffic_shift_health_conf_t  *conf;

    c = probe->pc.connection;
    conf = probe->conf;

    if (ngx_ssl_create_connection(conf->ssl, c,
                                  NGX_SSL_BUFFER|NGX_SSL_CLIENT)
        != NGX_OK)
    {
        ngx_http_traffic_shift_health_done(probe, NGX_HTTP_TS_PROBE_FAIL,
                                           "tls setup failed");
        return;
    }

#ifdef SSL_CTRL_SET_TLSEXT_HOSTNAME

    if (conf->sni.len
        && SSL_set_tlsext_host_name(c->ssl->connection,
                                    (char *) conf->sni.data)
           == 0)
    {
        ngx_ssl_error(NGX_LOG_ERR, &probe->log, 0,
                      "SSL_set_tlsext_host_name(\"%s\") failed",
                      conf->sni.data);
        ngx_http_traffic_shift_health_done(probe, NGX_HTTP_TS_PROBE_FAIL,
                                           "tls setup failed");
        return;
    }

#endif

    probe->phase = NGX_HTTP_TS_HC_HANDSHAKE;

    rc = ngx_ssl_handshake(c);

    if (rc == NGX_AGAIN) {
        c->ssl->handler = ngx_http_traffic_shift_health_ssl_handshake;
        return;
    }

    ngx_http_traffic_shift_health_ssl_handshake(c);
}


static void
ngx_http_traffic_shift_health_ssl_handshake(ngx_connection_t *c)
{
    ngx_http_traffic_shift_probe_t  *probe;

    probe = c->data;

    if (c->close || ngx_exiting || ngx_terminate) {
        ngx_http_traffic_shift_health_close(probe);
        ngx_http_traffic_shift_health_release(probe);
        return;
    }

    if (c->read->timedout) {
        c->timedout = 1;
        ngx_http_traffic_shift_health_done(probe, NGX_HTTP_TS_PROBE_TIMEOUT,
                                           "timeout during tls handshake");
        return;
    }

    if (!c->ssl->handshaked) {
        c->error = 1;
        ngx_http_traffic_shift_health_done(probe, NGX_HTTP_TS_PROBE_FAIL,
                                           "tls handshake failed");
        return;
    }

    c->read->handler = ngx_http_traffic_shift_health_handler;
    c->write->handler = ngx_http_traffic_shift_health_handler;

    probe->phase = NGX_HTTP_TS_HC_SEND;

    ngx_http_traffic_shift_health_send(probe);
}

#endif


static void
ngx_http_traffic_shift_health_send(ngx_http_traffic_shift_probe_t *probe)
{
    u_char            *last;
    size_t             size;
    ssize_t            n;
    ngx_connection_t  *c;

    c = probe->pc.connection;
    last = probe->conf->request.data + probe->conf->request.len;

    while (probe->sent < last) {

        n = c->send(c, probe->sent, last - probe->sent);

        if (n == NGX_AGAIN) {
            if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
                c->error = 1;
                ngx_http_traffic_shift_health_done(probe,
                                                   NGX_HTTP_TS_PROBE_FAIL,
                                                   "send failed");
            }

            return;
        }

        if (n == NGX_ERROR || n <= 0) {
            c->error = 1;
            ngx_http_traffic_shift_health_done(probe, NGX_HTTP_TS_PROBE_FAIL,
                                               "send failed");
            return;
        }

        probe->sent += n;
    }

    probe->phase = NGX_HTTP_TS_HC_RECV;

#if (NGX_PCRE)
    size = probe->conf->body ? NGX_HTTP_TS_HC_BODY_MAX
                             : NGX_HTTP_TS_HC_BUF_SIZE;
#else
    size = NGX_HTTP_TS_HC_BUF_SIZE;
#endif

    probe->buf = ngx_create_temp_buf(probe->pool, size);
    probe->request = ngx_pcalloc(probe->pool, sizeof(ngx_http_request_t));

    if (probe->buf == NULL || probe->request == NULL) {
        /* not the server's failure */
        ngx_http_traffic_shift_health_close(probe);
        return;
    }

    ngx_http_traffic_shift_health_recv(probe);
}


static void
ngx_http_traffic_shift_health_recv(ngx_http_traffic_shift_probe_t *probe)
{
    ssize_t            n;
    ngx_int_t          rc;
    ngx_buf_t         *b;
    ngx_connection_t  *c;

    c = probe->pc.connection;
    b = probe->buf;

    for ( ;; ) {

        if (b->last == b->end) {

            if (!probe->status_parsed) {
                ngx_http_traffic_shift_health_done(probe,
                                                   NGX_HTTP_TS_PROBE_FAIL,
                                                   "bad status line");
                return;
            }

#if (NGX_PCRE)
            if (probe->conf->body && probe->headers_done) {
                /* as much of the body as is matched */
                ngx_http_traffic_shift_health_response(probe);
                return;
            }
#endif

            /*
             * parsed headers or a body that is not matched are not needed
             * any more: read on to the end, and discard
             */

            b->pos = b->start;
            b->last = b->start;
            probe->body_start = b->start;
        }

        n = c->recv(c, b->last, b->end - b->last);

        if (n == NGX_AGAIN) {
            if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
                c->error = 1;
                ngx_http_traffic_shift_health_done(probe,
                                                   NGX_HTTP_TS_PROBE_FAIL,
                                                   "read failed");
            }

            return;
        }

        if (n == NGX_ERROR) {
            c->error = 1;
            ngx_http_traffic_shift_health_done(probe, NGX_HTTP_TS_PROBE_FAIL,
                                               probe->status_parsed
                                               ? "read failed"
                                               : "connection reset");
            return;
        }

        if (n == 0) {
            ngx_http_traffic_shift_health_response(probe);
            return;
        }

        b->last += n;

        if (probe->headers_done) {
            continue;
        }

        if (!probe->status_parsed) {
            rc = ngx_http_parse_status_line(probe->request, b,
                                            &probe->status);

            if (rc == NGX_AGAIN) {
                continue;
            }

            if (rc != NGX_OK) {
                ngx_http_traffic_shift_health_done(probe,
                                                   NGX_HTTP_TS_PROBE_FAIL,
                                                   "bad status line");
                return;
            }

            probe->status_parsed = 1;

            if (!ngx_http_traffic_shift_health_status_ok(probe->conf,
                                                         probe->status.code))
            {
                /* no need to read further */
                ngx_http_traffic_shift_health_response(probe);
                return;
            }
        }

        if (ngx_http_traffic_shift_health_headers(probe) != NGX_OK) {
            return;
        }
    }
}


/*
 * The headers are read to their end, as nginx's proxy does: a response
 * cut off inside them is a failure.  NGX_ERROR: the probe is over.
 */

static ngx_int_t
ngx_http_traffic_shift_health_headers(ngx_http_traffic_shift_probe_t *probe)
{
    ngx_int_t  rc;

    for ( ;; ) {
        rc = ngx_http_parse_header_line(probe->request, probe->buf, 1);

        if (rc == NGX_OK) {
            continue;
        }

        if (rc == NGX_AGAIN) {
            return NGX_OK;
        }

        if (rc == NGX_HTTP_PARSE_HEADER_DONE) {
            probe->headers_done = 1;
            probe->body_start = probe->buf->pos;
            return NGX_OK;
        }

        ngx_http_traffic_shift_health_done(probe, NGX_HTTP_TS_PROBE_FAIL,
                                           "bad header");
        return NGX_ERROR;
    }
}


/* the response as received: status, then the body's match */

static void
ngx_http_traffic_shift_health_response(ngx_http_traffic_shift_probe_t *probe)
{
    char        *reason;
    ngx_uint_t   code;
    u_char       status[NGX_HTTP_TS_ERR_LEN];

    if (!probe->status_parsed) {
        reason = (probe->buf->last == probe->buf->start) ? "empty response"
                                                         : "bad status line";
        ngx_http_traffic_shift_health_done(probe, NGX_HTTP_TS_PROBE_FAIL,
                                           reason);
        return;
    }

    code = probe->status.code;

    if (!ngx_http_traffic_shift_health_status_ok(probe->conf, code)) {
        ngx_snprintf(status, sizeof(status), "status %ui%Z", code);
        ngx_http_traffic_shift_health_done(probe, NGX_HTTP_TS_PROBE_FAIL,
                                           (char *) status);
        return;
    }

    if (!probe->headers_done) {
        ngx_http_traffic_shift_health_done(probe, NGX_HTTP_TS_PROBE_FAIL,
                                           "incomplete response");
        return;
    }

#if (NGX_PCRE)

    if (probe->conf->body) {
        reason = ngx_http_traffic_shift_health_match(probe);

        if (reason) {
            ngx_http_traffic_shift_health_done(probe, NGX_HTTP_TS_PROBE_FAIL,
                                               reason);
            return;
        }
    }

#endif

    ngx_http_traffic_shift_health_done(probe, NGX_HTTP_TS_PROBE_OK, NULL);
}


#if (NGX_PCRE)

/* the body as read: NULL if it matches */

static char *
ngx_http_traffic_shift_health_match(ngx_http_traffic_shift_probe_t *probe)
{
    ngx_int_t  rc;
    ngx_str_t  body;

    body.data = probe->body_start;
    body.len = probe->buf->last - probe->body_start;

    rc = ngx_regex_exec(probe->conf->body, &body, NULL, 0);

    if (rc >= 0) {
        return NULL;
    }

    if (rc == NGX_REGEX_NO_MATCHED) {
        return "body mismatch";
    }

    ngx_log_error(NGX_LOG_ALERT, &probe->log, 0,
                  ngx_regex_exec_n " failed: %i on \"%V\"",
                  rc, &probe->conf->body_pattern);

    return "body match failed";
}

#endif


static ngx_uint_t
ngx_http_traffic_shift_health_status_ok(
    ngx_http_traffic_shift_health_conf_t *conf, ngx_uint_t code)
{
    if (code >= NGX_HTTP_TS_HC_STATUS_MAX) {
        return 0;
    }

    return (conf->status[code / 32] & ((uint32_t) 1 << (code % 32))) != 0;
}


static void
ngx_http_traffic_shift_health_done(ngx_http_traffic_shift_probe_t *probe,
    ngx_uint_t result, char *reason)
{
    if (!ngx_exiting && !ngx_terminate) {
        ngx_http_traffic_shift_health_record(probe, result, reason);
    }

    ngx_http_traffic_shift_health_close(probe);
}


/*
 * Under the zone's mutex: "fails" consecutive failures mark the server
 * down, "passes" consecutive successes bring it back.  Only a change of
 * state is published to the workers.
 */

static void
ngx_http_traffic_shift_health_record(ngx_http_traffic_shift_probe_t *probe,
    ngx_uint_t result, char *reason)
{
    ngx_uint_t                             flip, n;
    ngx_http_traffic_shift_sh_server_t    *sh;
    ngx_http_traffic_shift_health_conf_t  *conf;

    sh = probe->server->sh;
    conf = probe->conf;
    flip = 0;

    ngx_shmtx_lock(&probe->mcf->shpool->mutex);

    sh->last_probe = ngx_time();
    sh->probes[result]++;

    if (result == NGX_HTTP_TS_PROBE_OK) {
        sh->fails = 0;
        sh->passes++;
        n = sh->passes;

        if (sh->state == NGX_HTTP_TS_DOWN && sh->passes >= conf->passes) {
            sh->state = NGX_HTTP_TS_UP;
            flip = 1;
        }

    } else {
        sh->passes = 0;
        sh->fails++;
        n = sh->fails;

        ngx_cpystrn(sh->last_error, (u_char *) reason, NGX_HTTP_TS_ERR_LEN);

        if (sh->state != NGX_HTTP_TS_DOWN && sh->fails >= conf->fails) {
            sh->state = NGX_HTTP_TS_DOWN;
            flip = 1;
        }
    }

    if (flip) {
        ngx_http_traffic_shift_zone_changed(probe->mcf);
    }

    ngx_shmtx_unlock(&probe->mcf->shpool->mutex);

    if (result != NGX_HTTP_TS_PROBE_OK) {
        ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                      "traffic_shift: health check of server %V "
                      "in upstream \"%V\" failed: %s",
                      &probe->server->name, &probe->ups->uscf->host, reason);
    }

    if (!flip) {
        return;
    }

    if (result == NGX_HTTP_TS_PROBE_OK) {
        ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                      "traffic_shift: server %V in upstream \"%V\" is up "
                      "after %ui passed health check(s)",
                      &probe->server->name, &probe->ups->uscf->host, n);

    } else {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "traffic_shift: server %V in upstream \"%V\" is down "
                      "after %ui failed health check(s), last: %s",
                      &probe->server->name, &probe->ups->uscf->host, n,
                      reason);
    }
}


static void
ngx_http_traffic_shift_health_close(ngx_http_traffic_shift_probe_t *probe)
{
    ngx_connection_t  *c;

    c = probe->pc.connection;

    if (c) {

#if (NGX_HTTP_SSL)
        if (c->ssl) {
            c->ssl->no_wait_shutdown = 1;

            if (ngx_ssl_shutdown(c) == NGX_AGAIN) {
                /* nothing is waited for: drop the TLS state at once */
                c->error = 1;
                (void) ngx_ssl_shutdown(c);
            }
        }
#endif

        ngx_close_connection(c);
        probe->pc.connection = NULL;
    }

    if (probe->pool) {
        ngx_destroy_pool(probe->pool);
        probe->pool = NULL;
    }

    probe->buf = NULL;
    probe->request = NULL;
    probe->busy = 0;
}

