/*
 * Copyright (C) nginx-traffic-shift developers
 */


#include "ngx_http_traffic_shift_health_ssl.h"


/*
 * health_check's ssl_* parameters, and the client TLS context of an https
 * check, made when the directive is read so that a bad file is reported
 * with its line:
 *
 *   ssl_verify=on|off              default: on with ssl_trusted_certificate=
 *   ssl_trusted_certificate=FILE   PEM CA certificates (without it, a
 *                                  verification uses the system's CAs)
 *   ssl_name=NAME                  the name the certificate must match
 *                                  (default: host= without its port, or
 *                                  the upstream's name), sent in SNI
 *   ssl_server_name=on|off         SNI (default on)
 *   ssl_protocols=TLSv1.2,TLSv1.3  one token: names separated by commas
 *   ssl_ciphers=LIST               OpenSSL's syntax (default DEFAULT)
 *   ssl_certificate=FILE ssl_certificate_key=FILE   the client certificate
 */


#if (NGX_HTTP_SSL)

static char *ngx_http_traffic_shift_health_ssl_flag(ngx_conf_t *cf,
    ngx_str_t *arg, ngx_str_t *v, ngx_flag_t *flag);
static char *ngx_http_traffic_shift_health_ssl_protocols(ngx_conf_t *cf,
    ngx_http_traffic_shift_health_conf_t *hc, ngx_str_t *arg, ngx_str_t *v);
static char *ngx_http_traffic_shift_health_ssl_file(ngx_conf_t *cf,
    ngx_str_t *arg, ngx_str_t *v, ngx_str_t *file);
static ngx_int_t ngx_http_traffic_shift_health_ssl_names(ngx_conf_t *cf,
    ngx_http_traffic_shift_health_conf_t *hc,
    ngx_http_upstream_srv_conf_t *uscf);
static ngx_int_t ngx_http_traffic_shift_health_ssl_context(ngx_conf_t *cf,
    ngx_http_traffic_shift_health_conf_t *hc);
static ngx_int_t ngx_http_traffic_shift_health_ssl_exists(ngx_conf_t *cf,
    char *param, ngx_str_t *file);


typedef struct {
    ngx_str_t   name;
    ngx_uint_t  mask;
} ngx_http_traffic_shift_hc_protocol_t;


static ngx_http_traffic_shift_hc_protocol_t
    ngx_http_traffic_shift_hc_protocols[] =
{
    { ngx_string("TLSv1"), NGX_SSL_TLSv1 },
    { ngx_string("TLSv1.1"), NGX_SSL_TLSv1_1 },
    { ngx_string("TLSv1.2"), NGX_SSL_TLSv1_2 },
    { ngx_string("TLSv1.3"), NGX_SSL_TLSv1_3 },
    { ngx_null_string, 0 }
};

#endif


void
ngx_http_traffic_shift_health_ssl_defaults(
    ngx_http_traffic_shift_health_conf_t *hc)
{
#if (NGX_HTTP_SSL)
    hc->ssl_verify = NGX_CONF_UNSET;
    hc->ssl_server_name = 1;
    hc->ssl_protocols = NGX_SSL_TLSv1_2|NGX_SSL_TLSv1_3;
    ngx_str_set(&hc->ssl_ciphers, "DEFAULT");
#endif
}


/* one ssl_* parameter: "arg" is name=value, "v" the value */

char *
ngx_http_traffic_shift_health_ssl_param(ngx_conf_t *cf,
    ngx_http_traffic_shift_health_conf_t *hc, ngx_str_t *arg, ngx_str_t *v,
    ngx_uint_t k)
{
#if (NGX_HTTP_SSL)
    ngx_str_t  name;

    name.data = arg->data;
    name.len = ngx_strlchr(arg->data, arg->data + arg->len, '=') - arg->data;

#define ngx_http_ts_hc_is(s)                                                 \
    (name.len == sizeof(s) - 1 && ngx_strncmp(name.data, s, name.len) == 0)

    if (ngx_http_ts_hc_is("ssl_verify")) {
        return ngx_http_traffic_shift_health_ssl_flag(cf, arg, v,
                                                      &hc->ssl_verify);
    }

    if (ngx_http_ts_hc_is("ssl_server_name")) {
        return ngx_http_traffic_shift_health_ssl_flag(cf, arg, v,
                                                      &hc->ssl_server_name);
    }

    if (ngx_http_ts_hc_is("ssl_protocols")) {
        return ngx_http_traffic_shift_health_ssl_protocols(cf, hc, arg, v);
    }

    if (ngx_http_ts_hc_is("ssl_trusted_certificate")) {
        return ngx_http_traffic_shift_health_ssl_file(cf, arg, v,
                                               &hc->ssl_trusted_certificate);
    }

    if (ngx_http_ts_hc_is("ssl_certificate")) {
        return ngx_http_traffic_shift_health_ssl_file(cf, arg, v,
                                                      &hc->ssl_certificate);
    }

    if (ngx_http_ts_hc_is("ssl_certificate_key")) {
        return ngx_http_traffic_shift_health_ssl_file(cf, arg, v,
                                                   &hc->ssl_certificate_key);
    }

    if (ngx_http_ts_hc_is("ssl_ciphers")) {
        if (v->len == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid health_check ssl_ciphers \"%V\"", arg);
            return NGX_CONF_ERROR;
        }

        hc->ssl_ciphers = *v;
        return NGX_CONF_OK;
    }

    /* ssl_name= */

#undef ngx_http_ts_hc_is

    if (v->len == 0 || v->len > 253
        || ngx_strlchr(v->data, v->data + v->len, '/')
        || ngx_strlchr(v->data, v->data + v->len, ':'))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid health_check ssl_name \"%V\", "
                           "expected a host name or an address", arg);
        return NGX_CONF_ERROR;
    }

    hc->ssl_name_param = *v;

    return NGX_CONF_OK;

#else

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"%V\" requires nginx built with "
                       "ngx_http_ssl_module", arg);
    return NGX_CONF_ERROR;

#endif
}


/* names, defaults, and the context of a type=https check */

char *
ngx_http_traffic_shift_health_ssl_finish(ngx_conf_t *cf,
    ngx_http_traffic_shift_health_conf_t *hc,
    ngx_http_upstream_srv_conf_t *uscf)
{
#if (NGX_HTTP_SSL)

    if (hc->type != NGX_HTTP_TS_HC_HTTPS) {
        return NGX_CONF_OK;
    }

    if (hc->ssl_certificate.len && hc->ssl_certificate_key.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "health_check ssl_certificate=\"%V\" needs "
                           "ssl_certificate_key=", &hc->ssl_certificate);
        return NGX_CONF_ERROR;
    }

    if (hc->ssl_certificate_key.len && hc->ssl_certificate.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "health_check ssl_certificate_key=\"%V\" needs "
                           "ssl_certificate=", &hc->ssl_certificate_key);
        return NGX_CONF_ERROR;
    }

    if (hc->ssl_verify == NGX_CONF_UNSET) {
        hc->ssl_verify = hc->ssl_trusted_certificate.len ? 1 : 0;
    }

    if (ngx_http_traffic_shift_health_ssl_names(cf, hc, uscf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_traffic_shift_health_ssl_context(cf, hc) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

#endif

    return NGX_CONF_OK;
}


#if (NGX_HTTP_SSL)

static char *
ngx_http_traffic_shift_health_ssl_flag(ngx_conf_t *cf, ngx_str_t *arg,
    ngx_str_t *v, ngx_flag_t *flag)
{
    if (v->len == 2 && ngx_strncmp(v->data, "on", 2) == 0) {
        *flag = 1;
        return NGX_CONF_OK;
    }

    if (v->len == 3 && ngx_strncmp(v->data, "off", 3) == 0) {
        *flag = 0;
        return NGX_CONF_OK;
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid health_check parameter \"%V\", "
                       "expected on or off", arg);
    return NGX_CONF_ERROR;
}


/* "TLSv1.2,TLSv1.3" */

static char *
ngx_http_traffic_shift_health_ssl_protocols(ngx_conf_t *cf,
    ngx_http_traffic_shift_health_conf_t *hc, ngx_str_t *arg, ngx_str_t *v)
{
    u_char                                *p, *last, *comma;
    size_t                                 len;
    ngx_uint_t                             i, mask;
    ngx_http_traffic_shift_hc_protocol_t  *proto;

    mask = 0;
    p = v->data;
    last = v->data + v->len;

    while (p <= last) {
        comma = ngx_strlchr(p, last, ',');
        if (comma == NULL) {
            comma = last;
        }

        len = comma - p;
        proto = ngx_http_traffic_shift_hc_protocols;

        for (i = 0; proto[i].name.len; i++) {
            if (proto[i].name.len == len
                && ngx_strncmp(proto[i].name.data, p, len) == 0)
            {
                break;
            }
        }

        if (proto[i].name.len == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid health_check ssl_protocols \"%V\", "
                               "expected TLSv1, TLSv1.1, TLSv1.2 or TLSv1.3 "
                               "separated by commas", arg);
            return NGX_CONF_ERROR;
        }

        mask |= proto[i].mask;
        p = comma + 1;
    }

    hc->ssl_protocols = mask;

    return NGX_CONF_OK;
}


static char *
ngx_http_traffic_shift_health_ssl_file(ngx_conf_t *cf, ngx_str_t *arg,
    ngx_str_t *v, ngx_str_t *file)
{
    if (v->len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid health_check parameter \"%V\", "
                           "expected a file name", arg);
        return NGX_CONF_ERROR;
    }

    *file = *v;

    return NGX_CONF_OK;
}


/*
 * The name checked: ssl_name=, or host= without its port, or the
 * upstream's name, as proxy_ssl_name.  SNI (with ssl_server_name on): the
 * name of ssl_name= or host=, never an address; without either, none.
 */

static ngx_int_t
ngx_http_traffic_shift_health_ssl_names(ngx_conf_t *cf,
    ngx_http_traffic_shift_health_conf_t *hc,
    ngx_http_upstream_srv_conf_t *uscf)
{
    u_char     *p;
    size_t      len;
    ngx_str_t   name;

    if (hc->ssl_name_param.len) {
        name = hc->ssl_name_param;

    } else if (hc->host.len && hc->host.data[0] == '[') {
        p = ngx_strlchr(hc->host.data, hc->host.data + hc->host.len, ']');
        name.data = hc->host.data + 1;
        name.len = p ? (size_t) (p - name.data) : 0;

    } else if (hc->host.len) {
        p = ngx_strlchr(hc->host.data, hc->host.data + hc->host.len, ':');
        name.data = hc->host.data;
        name.len = p ? (size_t) (p - hc->host.data) : hc->host.len;

    } else {
        name = uscf->host;
    }

    hc->ssl_name = name;

    if (!hc->ssl_server_name
        || (hc->ssl_name_param.len == 0 && hc->host.len == 0)
        || name.len == 0
        || ngx_inet_addr(name.data, name.len) != INADDR_NONE
        || ngx_strlchr(name.data, name.data + name.len, ':'))
    {
        return NGX_OK;
    }

    len = name.len;

    hc->sni.data = ngx_pnalloc(cf->pool, len + 1);
    if (hc->sni.data == NULL) {
        return NGX_ERROR;
    }

    ngx_cpystrn(hc->sni.data, name.data, len + 1);
    hc->sni.len = len;

    return NGX_OK;
}


static ngx_int_t
ngx_http_traffic_shift_health_ssl_context(ngx_conf_t *cf,
    ngx_http_traffic_shift_health_conf_t *hc)
{
    ngx_ssl_t           *ssl;
    ngx_pool_cleanup_t  *cln;

    if (ngx_http_traffic_shift_health_ssl_exists(cf, "ssl_certificate",
                                                 &hc->ssl_certificate)
        != NGX_OK
        || ngx_http_traffic_shift_health_ssl_exists(cf, "ssl_certificate_key",
                                                    &hc->ssl_certificate_key)
           != NGX_OK
        || ngx_http_traffic_shift_health_ssl_exists(cf,
                                                "ssl_trusted_certificate",
                                                &hc->ssl_trusted_certificate)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    ssl = ngx_pcalloc(cf->pool, sizeof(ngx_ssl_t));
    if (ssl == NULL) {
        return NGX_ERROR;
    }

    ssl->log = cf->log;

    if (ngx_ssl_create(ssl, hc->ssl_protocols, NULL) != NGX_OK) {
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        ngx_ssl_cleanup_ctx(ssl);
        return NGX_ERROR;
    }

    cln->handler = ngx_ssl_cleanup_ctx;
    cln->data = ssl;

    if (ngx_ssl_ciphers(cf, ssl, &hc->ssl_ciphers, 0) != NGX_OK) {
        return NGX_ERROR;
    }

    if (hc->ssl_certificate.len
        && ngx_ssl_certificate(cf, ssl, &hc->ssl_certificate,
                               &hc->ssl_certificate_key, NULL)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (hc->ssl_verify) {

        if (hc->ssl_trusted_certificate.len) {
            if (ngx_ssl_trusted_certificate(cf, ssl,
                                            &hc->ssl_trusted_certificate, 4)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

        } else if (SSL_CTX_set_default_verify_paths(ssl->ctx) != 1) {
            ngx_ssl_error(NGX_LOG_EMERG, cf->log, 0,
                          "SSL_CTX_set_default_verify_paths() failed");
            return NGX_ERROR;
        }
    }

    hc->ssl = ssl;

    return NGX_OK;
}


/* a file that cannot be read is reported with the directive's line */

static ngx_int_t
ngx_http_traffic_shift_health_ssl_exists(ngx_conf_t *cf, char *param,
    ngx_str_t *file)
{
    ngx_str_t        name;
    ngx_file_info_t  fi;

    if (file->len == 0) {
        return NGX_OK;
    }

    name = *file;

    if (ngx_conf_full_name(cf->cycle, &name, 1) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_file_info(name.data, &fi) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "health_check %s=\"%V\": "
                           ngx_file_info_n " \"%V\" failed",
                           param, file, &name);
        return NGX_ERROR;
    }

    return NGX_OK;
}

#endif
