
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#include "ngx_http_traffic_shift_health_ssl.h"


/*
 * The health_check directive: a table of parameters, each with the
 * function that sets it, and the request probes send.  The ssl_*
 * parameters and the TLS context: ngx_http_traffic_shift_health_ssl.c.
 */


#define NGX_HTTP_TS_HC_USER_AGENT  "nginx-traffic-shift health check"


typedef char *(*ngx_http_traffic_shift_hc_set_pt)(ngx_conf_t *cf,
    ngx_http_traffic_shift_health_conf_t *hc, ngx_str_t *arg, ngx_str_t *v,
    ngx_uint_t k);


typedef struct {
    ngx_str_t                          name;
    ngx_http_traffic_shift_hc_set_pt   set;
    /* 1: http and https only; 2: https only */
    ngx_uint_t                         http_only;
} ngx_http_traffic_shift_hc_param_t;


static char *ngx_http_traffic_shift_health_type(ngx_conf_t *cf,
    ngx_http_traffic_shift_health_conf_t *hc, ngx_str_t *arg, ngx_str_t *v,
    ngx_uint_t k);
static char *ngx_http_traffic_shift_health_uri(ngx_conf_t *cf,
    ngx_http_traffic_shift_health_conf_t *hc, ngx_str_t *arg, ngx_str_t *v,
    ngx_uint_t k);
static char *ngx_http_traffic_shift_health_host(ngx_conf_t *cf,
    ngx_http_traffic_shift_health_conf_t *hc, ngx_str_t *arg, ngx_str_t *v,
    ngx_uint_t k);
static char *ngx_http_traffic_shift_health_port(ngx_conf_t *cf,
    ngx_http_traffic_shift_health_conf_t *hc, ngx_str_t *arg, ngx_str_t *v,
    ngx_uint_t k);
static char *ngx_http_traffic_shift_health_time(ngx_conf_t *cf,
    ngx_http_traffic_shift_health_conf_t *hc, ngx_str_t *arg, ngx_str_t *v,
    ngx_uint_t k);
static char *ngx_http_traffic_shift_health_count(ngx_conf_t *cf,
    ngx_http_traffic_shift_health_conf_t *hc, ngx_str_t *arg, ngx_str_t *v,
    ngx_uint_t k);
static char *ngx_http_traffic_shift_health_codes(ngx_conf_t *cf,
    ngx_http_traffic_shift_health_conf_t *hc, ngx_str_t *arg, ngx_str_t *v,
    ngx_uint_t k);
static char *ngx_http_traffic_shift_health_body(ngx_conf_t *cf,
    ngx_http_traffic_shift_health_conf_t *hc, ngx_str_t *arg, ngx_str_t *v,
    ngx_uint_t k);
static char *ngx_http_traffic_shift_health_method(ngx_conf_t *cf,
    ngx_http_traffic_shift_health_conf_t *hc, ngx_str_t *arg, ngx_str_t *v,
    ngx_uint_t k);
static char *ngx_http_traffic_shift_health_header(ngx_conf_t *cf,
    ngx_http_traffic_shift_health_conf_t *hc, ngx_str_t *arg, ngx_str_t *v,
    ngx_uint_t k);
static char *ngx_http_traffic_shift_health_keepalive(ngx_conf_t *cf,
    ngx_http_traffic_shift_health_conf_t *hc, ngx_str_t *arg, ngx_str_t *v,
    ngx_uint_t k);
static char *ngx_http_traffic_shift_health_status(ngx_conf_t *cf,
    ngx_http_traffic_shift_health_conf_t *hc, ngx_str_t *value);
static ngx_uint_t ngx_http_traffic_shift_health_valid(ngx_str_t *s);
static ngx_str_t *ngx_http_traffic_shift_health_quoted(ngx_conf_t *cf,
    ngx_uint_t *i, ngx_str_t *v);
static char *ngx_http_traffic_shift_health_finish(ngx_conf_t *cf,
    ngx_http_traffic_shift_health_conf_t *hc, ngx_uint_t seen);
static ngx_int_t ngx_http_traffic_shift_health_request(ngx_conf_t *cf,
    ngx_http_traffic_shift_health_conf_t *hc,
    ngx_http_upstream_srv_conf_t *uscf);


/* the order of the table: the setters tell some parameters by it */

#define NGX_HTTP_TS_HC_P_INTERVAL  4
#define NGX_HTTP_TS_HC_P_JITTER    5
#define NGX_HTTP_TS_HC_P_FAILS     7
#define NGX_HTTP_TS_HC_P_STATUS    9
#define NGX_HTTP_TS_HC_P_HEADER    12


static ngx_http_traffic_shift_hc_param_t  ngx_http_traffic_shift_hc_params[] =
{
    { ngx_string("type"), ngx_http_traffic_shift_health_type, 0 },
    { ngx_string("uri"), ngx_http_traffic_shift_health_uri, 1 },
    { ngx_string("host"), ngx_http_traffic_shift_health_host, 1 },
    { ngx_string("port"), ngx_http_traffic_shift_health_port, 0 },
    { ngx_string("interval"), ngx_http_traffic_shift_health_time, 0 },
    { ngx_string("jitter"), ngx_http_traffic_shift_health_time, 0 },
    { ngx_string("timeout"), ngx_http_traffic_shift_health_time, 0 },
    { ngx_string("fails"), ngx_http_traffic_shift_health_count, 0 },
    { ngx_string("passes"), ngx_http_traffic_shift_health_count, 0 },
    { ngx_string("status"), ngx_http_traffic_shift_health_codes, 1 },
    { ngx_string("body"), ngx_http_traffic_shift_health_body, 1 },
    { ngx_string("method"), ngx_http_traffic_shift_health_method, 1 },
    { ngx_string("header"), ngx_http_traffic_shift_health_header, 1 },
    { ngx_string("keepalive"), ngx_http_traffic_shift_health_keepalive, 1 },
    { ngx_string("ssl_verify"), ngx_http_traffic_shift_health_ssl_param, 2 },
    { ngx_string("ssl_trusted_certificate"),
      ngx_http_traffic_shift_health_ssl_param, 2 },
    { ngx_string("ssl_name"), ngx_http_traffic_shift_health_ssl_param, 2 },
    { ngx_string("ssl_server_name"),
      ngx_http_traffic_shift_health_ssl_param, 2 },
    { ngx_string("ssl_protocols"), ngx_http_traffic_shift_health_ssl_param,
      2 },
    { ngx_string("ssl_ciphers"), ngx_http_traffic_shift_health_ssl_param, 2 },
    { ngx_string("ssl_certificate"), ngx_http_traffic_shift_health_ssl_param,
      2 },
    { ngx_string("ssl_certificate_key"),
      ngx_http_traffic_shift_health_ssl_param, 2 },
    { ngx_null_string, NULL, 0 }
};


/* health_check [type=http|tcp|https] [uri=/] [host=] [port=] ... */

char *
ngx_http_traffic_shift_health_check(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_traffic_shift_srv_conf_t *scf = conf;

    u_char                                *p;
    ngx_str_t                             *value, *arg, name, v;
    ngx_uint_t                             i, k, seen, in_status;
    ngx_http_traffic_shift_hc_param_t     *param;
    ngx_http_traffic_shift_health_conf_t  *hc;

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
    hc->method = NGX_HTTP_TS_HC_GET;
    hc->keepalive = 1;
    hc->file_name = cf->conf_file->file.name.data;
    hc->line = cf->conf_file->line;

    ngx_http_traffic_shift_health_ssl_defaults(hc);

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

        if (p == NULL) {
            goto invalid;
        }

        name.data = value[i].data;
        name.len = p - value[i].data;
        v.data = p + 1;
        v.len = value[i].data + value[i].len - v.data;

        /* header="X-Token: abc": nginx cuts it at the space; joined */

        if (v.len && v.data[0] == '"') {
            arg = ngx_http_traffic_shift_health_quoted(cf, &i, &v);
            if (arg == NULL) {
                return NGX_CONF_ERROR;
            }

        } else {
            arg = &value[i];
        }

        for (k = 0; ngx_http_traffic_shift_hc_params[k].name.len; k++) {
            param = &ngx_http_traffic_shift_hc_params[k];

            if (param->name.len == name.len
                && ngx_strncmp(param->name.data, name.data, name.len) == 0)
            {
                break;
            }
        }

        param = &ngx_http_traffic_shift_hc_params[k];

        if (param->set == NULL) {
            goto invalid;
        }

        if ((seen & ((ngx_uint_t) 1 << k)) && k != NGX_HTTP_TS_HC_P_HEADER) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate parameter \"%V\" in health_check",
                               &value[i]);
            return NGX_CONF_ERROR;
        }

        seen |= (ngx_uint_t) 1 << k;

        if (param->set(cf, hc, arg, &v, k) != NGX_CONF_OK) {
            return NGX_CONF_ERROR;
        }

        in_status = (k == NGX_HTTP_TS_HC_P_STATUS);
    }

    if (ngx_http_traffic_shift_health_finish(cf, hc, seen) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    scf->health = hc;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid health_check parameter \"%V\"", &value[i]);

    return NGX_CONF_ERROR;
}


/* defaults and what the parameters allow only together */

static char *
ngx_http_traffic_shift_health_finish(ngx_conf_t *cf,
    ngx_http_traffic_shift_health_conf_t *hc, ngx_uint_t seen)
{
    ngx_uint_t                     i, k;
    ngx_http_upstream_srv_conf_t  *uscf;

    if (!(seen & (1 << NGX_HTTP_TS_HC_P_STATUS))) {
        /* 200-399 */
        for (i = 200; i < 400; i++) {
            hc->status[i / 32] |= (uint32_t) 1 << (i % 32);
        }
    }

    /* what only makes sense for http and https, or for https */

    for (k = 0; ngx_http_traffic_shift_hc_params[k].name.len; k++) {

        if (!(seen & ((ngx_uint_t) 1 << k))) {
            continue;
        }

        if (hc->type == NGX_HTTP_TS_HC_TCP
            && ngx_http_traffic_shift_hc_params[k].http_only)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "health_check parameter \"%V\" is not "
                               "allowed with type=tcp",
                               &ngx_http_traffic_shift_hc_params[k].name);
            return NGX_CONF_ERROR;
        }

        if (hc->type != NGX_HTTP_TS_HC_HTTPS
            && ngx_http_traffic_shift_hc_params[k].http_only == 2)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "health_check parameter \"%V\" "
                               "requires type=https",
                               &ngx_http_traffic_shift_hc_params[k].name);
            return NGX_CONF_ERROR;
        }
    }

    uscf = ngx_http_conf_get_module_srv_conf(cf, ngx_http_upstream_module);

    if (ngx_http_traffic_shift_health_ssl_finish(cf, hc, uscf)
        != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (hc->type != NGX_HTTP_TS_HC_TCP
        && ngx_http_traffic_shift_health_request(cf, hc, uscf) != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_traffic_shift_health_type(ngx_conf_t *cf,
    ngx_http_traffic_shift_health_conf_t *hc, ngx_str_t *arg, ngx_str_t *v,
    ngx_uint_t k)
{
    if (v->len == 4 && ngx_strncmp(v->data, "http", 4) == 0) {
        hc->type = NGX_HTTP_TS_HC_HTTP;
        return NGX_CONF_OK;
    }

    if (v->len == 3 && ngx_strncmp(v->data, "tcp", 3) == 0) {
        hc->type = NGX_HTTP_TS_HC_TCP;
        return NGX_CONF_OK;
    }

    if (v->len == 5 && ngx_strncmp(v->data, "https", 5) == 0) {
#if (NGX_HTTP_SSL)
        hc->type = NGX_HTTP_TS_HC_HTTPS;
        return NGX_CONF_OK;
#else
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" requires nginx built with "
                           "ngx_http_ssl_module", arg);
        return NGX_CONF_ERROR;
#endif
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid health_check type \"%V\", "
                       "expected http, tcp or https", arg);
    return NGX_CONF_ERROR;
}


static char *
ngx_http_traffic_shift_health_uri(ngx_conf_t *cf,
    ngx_http_traffic_shift_health_conf_t *hc, ngx_str_t *arg, ngx_str_t *v,
    ngx_uint_t k)
{
    if (v->len == 0 || v->data[0] != '/'
        || !ngx_http_traffic_shift_health_valid(v))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid health_check uri \"%V\", "
                           "expected a path starting with \"/\"", arg);
        return NGX_CONF_ERROR;
    }

    hc->uri = *v;

    return NGX_CONF_OK;
}


static char *
ngx_http_traffic_shift_health_host(ngx_conf_t *cf,
    ngx_http_traffic_shift_health_conf_t *hc, ngx_str_t *arg, ngx_str_t *v,
    ngx_uint_t k)
{
    if (v->len == 0 || !ngx_http_traffic_shift_health_valid(v)
        || ngx_strlchr(v->data, v->data + v->len, '/'))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid health_check host \"%V\"", arg);
        return NGX_CONF_ERROR;
    }

    hc->host = *v;

    return NGX_CONF_OK;
}


static char *
ngx_http_traffic_shift_health_port(ngx_conf_t *cf,
    ngx_http_traffic_shift_health_conf_t *hc, ngx_str_t *arg, ngx_str_t *v,
    ngx_uint_t k)
{
    ngx_int_t  n;

    n = ngx_atoi(v->data, v->len);

    if (n < 1 || n > 65535) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid health_check port \"%V\", "
                           "expected 1 to 65535", arg);
        return NGX_CONF_ERROR;
    }

    hc->port = (in_port_t) n;

    return NGX_CONF_OK;
}


/* interval=, jitter= (may be 0) and timeout= */

static char *
ngx_http_traffic_shift_health_time(ngx_conf_t *cf,
    ngx_http_traffic_shift_health_conf_t *hc, ngx_str_t *arg, ngx_str_t *v,
    ngx_uint_t k)
{
    ngx_int_t  n;

    n = ngx_parse_time(v, 0);

    if (n == NGX_ERROR || (n == 0 && k != NGX_HTTP_TS_HC_P_JITTER)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid health_check %V \"%V\", "
                           "expected a time%s",
                           &ngx_http_traffic_shift_hc_params[k].name, arg,
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

    return NGX_CONF_OK;
}


/* fails= and passes= */

static char *
ngx_http_traffic_shift_health_count(ngx_conf_t *cf,
    ngx_http_traffic_shift_health_conf_t *hc, ngx_str_t *arg, ngx_str_t *v,
    ngx_uint_t k)
{
    ngx_int_t  n;

    n = ngx_atoi(v->data, v->len);

    if (n < 1 || n > 1000) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid health_check %V \"%V\", "
                           "expected 1 to 1000",
                           &ngx_http_traffic_shift_hc_params[k].name, arg);
        return NGX_CONF_ERROR;
    }

    if (k == NGX_HTTP_TS_HC_P_FAILS) {
        hc->fails = n;

    } else {
        hc->passes = n;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_traffic_shift_health_codes(ngx_conf_t *cf,
    ngx_http_traffic_shift_health_conf_t *hc, ngx_str_t *arg, ngx_str_t *v,
    ngx_uint_t k)
{
    return ngx_http_traffic_shift_health_status(cf, hc, v);
}


static char *
ngx_http_traffic_shift_health_body(ngx_conf_t *cf,
    ngx_http_traffic_shift_health_conf_t *hc, ngx_str_t *arg, ngx_str_t *v,
    ngx_uint_t k)
{
#if (NGX_PCRE)
    ngx_regex_compile_t  rc;
    u_char               errstr[NGX_MAX_CONF_ERRSTR];
#endif

    if (v->len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "empty health_check body regex in \"%V\"", arg);
        return NGX_CONF_ERROR;
    }

#if (NGX_PCRE)
    ngx_memzero(&rc, sizeof(ngx_regex_compile_t));

    rc.pattern = *v;
    rc.pool = cf->pool;
    rc.err.len = NGX_MAX_CONF_ERRSTR;
    rc.err.data = errstr;

    if (ngx_regex_compile(&rc) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid health_check body regex: %V", &rc.err);
        return NGX_CONF_ERROR;
    }

    hc->body = rc.regex;
    hc->body_pattern = *v;

    return NGX_CONF_OK;
#else
    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"%V\" requires nginx built with PCRE", arg);
    return NGX_CONF_ERROR;
#endif
}


static char *
ngx_http_traffic_shift_health_method(ngx_conf_t *cf,
    ngx_http_traffic_shift_health_conf_t *hc, ngx_str_t *arg, ngx_str_t *v,
    ngx_uint_t k)
{
    if (v->len == 3 && ngx_strncmp(v->data, "GET", 3) == 0) {
        hc->method = NGX_HTTP_TS_HC_GET;
        return NGX_CONF_OK;
    }

    if (v->len == 4 && ngx_strncmp(v->data, "HEAD", 4) == 0) {
        hc->method = NGX_HTTP_TS_HC_HEAD;
        return NGX_CONF_OK;
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid health_check method \"%V\", "
                       "expected GET or HEAD", arg);
    return NGX_CONF_ERROR;
}


/*
 * header="Name: value", repeatable: a field name, a colon, a value of
 * visible characters, spaces and tabs.  Host and the framing of the
 * connection are the probe's: host= and keepalive= set them.
 */

static char *
ngx_http_traffic_shift_health_header(ngx_conf_t *cf,
    ngx_http_traffic_shift_health_conf_t *hc, ngx_str_t *arg, ngx_str_t *v,
    ngx_uint_t k)
{
    u_char            *p, *colon, ch;
    size_t             i, len;
    ngx_str_t          name;
    ngx_uint_t         n;
    static ngx_str_t   reserved[] = {
        ngx_string("Host"), ngx_string("Connection"),
        ngx_string("Content-Length"), ngx_string("Transfer-Encoding"),
        ngx_string("Keep-Alive"), ngx_string("Upgrade"), ngx_null_string
    };

    colon = ngx_strlchr(v->data, v->data + v->len, ':');

    if (colon == NULL || colon == v->data) {
        goto invalid;
    }

    name.data = v->data;
    name.len = colon - v->data;

    for (i = 0; i < name.len; i++) {
        ch = name.data[i];

        if (ch <= ' ' || ch >= 0x7f || ngx_strchr("()<>@,;:\\\"/[]?={}", ch))
        {
            goto invalid;
        }
    }

    for (p = colon + 1; p < v->data + v->len; p++) {
        if ((*p < ' ' && *p != '\t') || *p == 0x7f) {
            goto invalid;
        }
    }

    for (n = 0; reserved[n].len; n++) {
        if (reserved[n].len == name.len
            && ngx_strncasecmp(reserved[n].data, name.data, name.len) == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "health_check header \"%V\" is not allowed: "
                               "the probe sets it (host=, keepalive=)", arg);
            return NGX_CONF_ERROR;
        }
    }

    len = hc->headers.len + v->len + 1 + sizeof(CRLF) - 1;

    p = ngx_pnalloc(cf->pool, len);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    /* "Name: value", with one space after the colon */

    if (hc->headers.len) {
        ngx_memcpy(p, hc->headers.data, hc->headers.len);
    }

    hc->headers.data = p;
    p += hc->headers.len;

    p = ngx_cpymem(p, name.data, name.len);
    *p++ = ':';
    *p++ = ' ';

    for (colon++; colon < v->data + v->len && *colon == ' '; colon++) {
        /* void */
    }

    p = ngx_cpymem(p, colon, v->data + v->len - colon);
    *p++ = CR; *p++ = LF;

    hc->headers.len = p - hc->headers.data;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid health_check header \"%V\", "
                       "expected header=\"Name: value\"", arg);
    return NGX_CONF_ERROR;
}


static char *
ngx_http_traffic_shift_health_keepalive(ngx_conf_t *cf,
    ngx_http_traffic_shift_health_conf_t *hc, ngx_str_t *arg, ngx_str_t *v,
    ngx_uint_t k)
{
    if (v->len == 2 && ngx_strncmp(v->data, "on", 2) == 0) {
        hc->keepalive = 1;
        return NGX_CONF_OK;
    }

    if (v->len == 3 && ngx_strncmp(v->data, "off", 3) == 0) {
        hc->keepalive = 0;
        return NGX_CONF_OK;
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid health_check keepalive \"%V\", "
                       "expected on or off", arg);
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


/*
 * name="a b": the value from the token at *i to the one that ends with the
 * closing quote, joined with one space, without its quotes; "arg" (for
 * messages) is name=value; *i is the last token used.
 */

static ngx_str_t *
ngx_http_traffic_shift_health_quoted(ngx_conf_t *cf, ngx_uint_t *i,
    ngx_str_t *v)
{
    u_char      *p;
    size_t       len;
    ngx_str_t   *value, *arg;
    ngx_uint_t   j;

    value = cf->args->elts;
    len = 0;

    for (j = *i; j < cf->args->nelts; j++) {
        len += value[j].len + 1;

        if ((j > *i || v->len > 1)
            && value[j].data[value[j].len - 1] == '"')
        {
            break;
        }
    }

    if (j == cf->args->nelts) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "unterminated quote in health_check parameter "
                           "\"%V\"", &value[*i]);
        return NULL;
    }

    arg = ngx_palloc(cf->pool, sizeof(ngx_str_t));
    p = ngx_pnalloc(cf->pool, len);
    if (arg == NULL || p == NULL) {
        return NULL;
    }

    arg->data = p;

    for ( ; *i <= j; (*i)++) {
        if (p != arg->data) {
            *p++ = ' ';
        }

        p = ngx_cpymem(p, value[*i].data, value[*i].len);
    }

    (*i)--;
    arg->len = p - arg->data;

    /* name=" ... " -> name="...", the value without the quotes */

    p = ngx_strlchr(arg->data, arg->data + arg->len, '=');

    v->data = p + 2;
    v->len = arg->data + arg->len - 1 - v->data;

    return arg;
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


static ngx_int_t
ngx_http_traffic_shift_health_request(ngx_conf_t *cf,
    ngx_http_traffic_shift_health_conf_t *hc,
    ngx_http_upstream_srv_conf_t *uscf)
{
    char       *method;
    u_char     *p;
    size_t      len;
    ngx_str_t  *host;

    /* without host=, the upstream's name, as proxy_pass sends it */

    host = hc->host.len ? &hc->host : &uscf->host;
    method = (hc->method == NGX_HTTP_TS_HC_HEAD) ? "HEAD" : "GET";

    len = sizeof("HEAD  HTTP/1.1" CRLF) - 1 + hc->uri.len
          + sizeof("Host: " CRLF) - 1 + host->len
          + sizeof("User-Agent: " NGX_HTTP_TS_HC_USER_AGENT CRLF) - 1
          + hc->headers.len
          + sizeof("Connection: close" CRLF CRLF) - 1;

    p = ngx_pnalloc(cf->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    hc->request.data = p;

    /* HTTP/1.1 keeps the connection by default */

    p = ngx_sprintf(p, "%s %V HTTP/1.%c" CRLF "Host: %V" CRLF
                    "User-Agent: " NGX_HTTP_TS_HC_USER_AGENT CRLF "%V",
                    method, &hc->uri, hc->keepalive ? '1' : '0', host,
                    &hc->headers);

    if (!hc->keepalive) {
        p = ngx_cpymem(p, "Connection: close" CRLF,
                       sizeof("Connection: close" CRLF) - 1);
    }

    *p++ = CR; *p++ = LF;

    hc->request.len = p - hc->request.data;

    return NGX_OK;
}


/* the TLS contexts are made with their health_check: nothing left to do */

ngx_int_t
ngx_http_traffic_shift_health_init(ngx_conf_t *cf,
    ngx_http_traffic_shift_main_conf_t *mcf)
{
    return NGX_OK;
}
