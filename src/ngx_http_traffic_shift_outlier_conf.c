
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#include "ngx_http_traffic_shift_outlier.h"


/*
 * The outlier_detection directive: its parameters, their defaults and the
 * checks between them, and the check of the upstream's balancer once it
 * is known.
 */


static char *ngx_http_traffic_shift_outlier_param(ngx_conf_t *cf,
    ngx_http_traffic_shift_outlier_conf_t *oc, ngx_str_t *name,
    ngx_str_t *v);
static char *ngx_http_traffic_shift_outlier_finish(ngx_conf_t *cf,
    ngx_http_traffic_shift_outlier_conf_t *oc, ngx_uint_t ejection_params);


/*
 * outlier_detection [consecutive_5xx=N] [consecutive_gateway=N]
 *     [failure_ratio=R] [min_requests=N] [window=T] [ejection=T]
 *     [max_ejection=T] [max_ejected=P%] [slow_start=T]
 */

char *
ngx_http_traffic_shift_outlier_detection(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_traffic_shift_srv_conf_t *scf = conf;

    u_char                                 *p;
    ngx_str_t                              *value, name, v;
    ngx_uint_t                              i, ejection_params;
    ngx_http_traffic_shift_outlier_conf_t  *oc;

    if (scf->outlier) {
        return "is duplicate";
    }

    oc = ngx_pcalloc(cf->pool, sizeof(ngx_http_traffic_shift_outlier_conf_t));
    if (oc == NULL) {
        return NGX_CONF_ERROR;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     oc->failure_ratio = 0;
     *     oc->slow_start = 0;
     */

    oc->consecutive_5xx = NGX_CONF_UNSET_UINT;
    oc->consecutive_gateway = NGX_CONF_UNSET_UINT;
    oc->min_requests = NGX_CONF_UNSET_UINT;
    oc->window = NGX_CONF_UNSET_MSEC;
    oc->ejection = NGX_CONF_UNSET_MSEC;
    oc->max_ejection = NGX_CONF_UNSET_MSEC;
    oc->max_ejected = NGX_CONF_UNSET_UINT;
    oc->slow_start = NGX_CONF_UNSET_MSEC;
    oc->file_name = cf->conf_file->file.name.data;
    oc->line = cf->conf_file->line;

    value = cf->args->elts;
    ejection_params = 0;

    for (i = 1; i < cf->args->nelts; i++) {

        p = ngx_strlchr(value[i].data, value[i].data + value[i].len, '=');

        if (p == NULL) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\" in "
                               "outlier_detection", &value[i]);
            return NGX_CONF_ERROR;
        }

        name.data = value[i].data;
        name.len = p - value[i].data;
        v.data = p + 1;
        v.len = value[i].data + value[i].len - v.data;

        if (ngx_http_traffic_shift_outlier_param(cf, oc, &name, &v)
            != NGX_CONF_OK)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\" in "
                               "outlier_detection", &value[i]);
            return NGX_CONF_ERROR;
        }

        if (name.len != sizeof("slow_start") - 1
            || ngx_strncmp(name.data, "slow_start", name.len) != 0)
        {
            ejection_params++;
        }
    }

    if (ngx_http_traffic_shift_outlier_finish(cf, oc, ejection_params)
        != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    scf->outlier = oc;

    return NGX_CONF_OK;
}


/* one "name=value"; a name given twice, or a bad value, is invalid */

static char *
ngx_http_traffic_shift_outlier_param(ngx_conf_t *cf,
    ngx_http_traffic_shift_outlier_conf_t *oc, ngx_str_t *name,
    ngx_str_t *v)
{
    ngx_int_t    n;
    ngx_msec_t  *msec;
    ngx_uint_t  *count;

    msec = NULL;
    count = NULL;

#define ngx_http_ts_is(s)                                                    \
    (name->len == sizeof(s) - 1 && ngx_strncmp(name->data, s, name->len) == 0)

    if (ngx_http_ts_is("consecutive_5xx")) {
        count = &oc->consecutive_5xx;

    } else if (ngx_http_ts_is("consecutive_gateway")) {
        count = &oc->consecutive_gateway;

    } else if (ngx_http_ts_is("min_requests")) {
        count = &oc->min_requests;

    } else if (ngx_http_ts_is("window")) {
        msec = &oc->window;

    } else if (ngx_http_ts_is("ejection")) {
        msec = &oc->ejection;

    } else if (ngx_http_ts_is("max_ejection")) {
        msec = &oc->max_ejection;

    } else if (ngx_http_ts_is("slow_start")) {
        msec = &oc->slow_start;

    } else if (ngx_http_ts_is("failure_ratio")) {

        /* a ratio: 0.5, with up to 4 decimals; 0 is off */

        if (oc->failure_ratio) {
            return NGX_CONF_ERROR;
        }

        n = ngx_atofp(v->data, v->len, 4);

        if (n == NGX_ERROR || n > 10000) {
            return NGX_CONF_ERROR;
        }

        oc->failure_ratio = n ? (ngx_uint_t) n : NGX_CONF_UNSET_UINT;

        return NGX_CONF_OK;

    } else if (ngx_http_ts_is("max_ejected")) {

        /* a percentage: 50% (the sign may be left out) */

        if (oc->max_ejected != NGX_CONF_UNSET_UINT) {
            return NGX_CONF_ERROR;
        }

        if (v->len && v->data[v->len - 1] == '%') {
            v->len--;
        }

        n = ngx_atoi(v->data, v->len);

        if (n == NGX_ERROR || n > 100) {
            return NGX_CONF_ERROR;
        }

        oc->max_ejected = n;

        return NGX_CONF_OK;

    } else {
        return NGX_CONF_ERROR;
    }

#undef ngx_http_ts_is

    if (count) {
        if (*count != NGX_CONF_UNSET_UINT) {
            return NGX_CONF_ERROR;
        }

        n = ngx_atoi(v->data, v->len);

        if (n == NGX_ERROR || n > 1000000) {
            return NGX_CONF_ERROR;
        }

        *count = n;

        return NGX_CONF_OK;
    }

    if (*msec != NGX_CONF_UNSET_MSEC) {
        return NGX_CONF_ERROR;
    }

    *msec = ngx_parse_time(v, 0);

    /* a day at most: timers and doubling stay far from overflows */

    if (*msec == (ngx_msec_t) NGX_ERROR || *msec > 86400000) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * The defaults, and the checks between parameters.  "slow_start" alone
 * ramps servers without ejecting any; any other parameter, or none,
 * enables ejection.
 */

static char *
ngx_http_traffic_shift_outlier_finish(ngx_conf_t *cf,
    ngx_http_traffic_shift_outlier_conf_t *oc, ngx_uint_t ejection_params)
{
    ngx_uint_t  ratio;

    /* "failure_ratio=0" was kept as unset, to see it given twice */

    if (oc->failure_ratio == NGX_CONF_UNSET_UINT) {
        oc->failure_ratio = 0;
    }

    ratio = (oc->failure_ratio != 0);

    if (!ratio && (oc->min_requests != NGX_CONF_UNSET_UINT
                   || oc->window != NGX_CONF_UNSET_MSEC))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "outlier_detection: \"min_requests\" and "
                           "\"window\" need \"failure_ratio\"");
        return NGX_CONF_ERROR;
    }

    ngx_conf_init_uint_value(oc->consecutive_5xx, 5);
    ngx_conf_init_uint_value(oc->consecutive_gateway, 5);
    ngx_conf_init_uint_value(oc->min_requests, 20);
    ngx_conf_init_msec_value(oc->window, 10000);
    ngx_conf_init_uint_value(oc->max_ejected, 50);
    ngx_conf_init_msec_value(oc->slow_start, 0);

    if (oc->min_requests == 0 || oc->window == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "outlier_detection: \"min_requests\" and "
                           "\"window\" must not be 0");
        return NGX_CONF_ERROR;
    }

    if (oc->ejection == 0 || oc->max_ejection == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "outlier_detection: \"ejection\" and "
                           "\"max_ejection\" must not be 0");
        return NGX_CONF_ERROR;
    }

    ngx_conf_init_msec_value(oc->ejection, 30000);

    if (oc->max_ejection == NGX_CONF_UNSET_MSEC) {
        oc->max_ejection = ngx_max(300000, oc->ejection);
    }

    if (oc->max_ejection < oc->ejection) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "outlier_detection: \"max_ejection\" (%Mms) is "
                           "shorter than \"ejection\" (%Mms)",
                           oc->max_ejection, oc->ejection);
        return NGX_CONF_ERROR;
    }

    oc->eject = (ejection_params || oc->slow_start == 0)
                && (oc->consecutive_5xx || oc->consecutive_gateway || ratio);

    if (!oc->eject && oc->slow_start == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "outlier_detection: every limit is 0 and there "
                           "is no \"slow_start\": nothing to do");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * At configuration load, once the upstream's balancer is known: slow start
 * needs weights that round robin or least_conn read at each choice.
 */

ngx_int_t
ngx_http_traffic_shift_outlier_check(ngx_conf_t *cf,
    ngx_http_traffic_shift_upstream_t *ups)
{
    ngx_http_traffic_shift_outlier_conf_t  *oc;

    oc = ups->outlier;

    if (oc == NULL || oc->slow_start == 0) {
        return NGX_OK;
    }

    /* hash, ip_hash and random take the "backup" flag away */

    if (!(ups->uscf->flags & NGX_HTTP_UPSTREAM_BACKUP)) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "outlier_detection: \"slow_start\" cannot be used "
                      "in upstream \"%V\": its balancer (hash, ip_hash or "
                      "random) keeps clients on their servers, in %s:%ui",
                      &ups->uscf->host, oc->file_name, oc->line);
        return NGX_ERROR;
    }

    if (ups->resolve) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "outlier_detection: \"slow_start\" cannot be used "
                      "in upstream \"%V\": it has servers resolved at run "
                      "time, in %s:%ui",
                      &ups->uscf->host, oc->file_name, oc->line);
        return NGX_ERROR;
    }

    return NGX_OK;
}
