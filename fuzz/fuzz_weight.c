
/*
 * Copyright (C) nginx-traffic-shift developers
 */


/*
 * Weights and names as the configuration and the API read them:
 * ngx_http_traffic_shift_parse_weight() against an independent reading of
 * the grammar (1 to 3 digits, optionally "." and 1 or 2 digits, at most
 * 100), print_weight() reading back to the same value, valid_name()
 * against [A-Za-z0-9_-]{1,32}.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_traffic_shift_lib.h"


static ngx_int_t
ngx_fuzz_weight(const u_char *p, size_t len)
{
    size_t      i, dot;
    ngx_uint_t  whole, frac, d;

    dot = len;

    for (i = 0; i < len; i++) {
        if (p[i] == '.') {
            dot = i;
            break;
        }
    }

    if (dot == 0 || dot > 3) {
        return NGX_ERROR;
    }

    whole = 0;

    for (i = 0; i < dot; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return NGX_ERROR;
        }

        whole = whole * 10 + (p[i] - '0');
    }

    frac = 0;

    if (dot < len) {
        d = len - dot - 1;

        if (d == 0 || d > 2) {
            return NGX_ERROR;
        }

        for (i = dot + 1; i < len; i++) {
            if (p[i] < '0' || p[i] > '9') {
                return NGX_ERROR;
            }

            frac = frac * 10 + (p[i] - '0');
        }

        if (d == 1) {
            frac *= 10;
        }
    }

    whole = whole * 100 + frac;

    return whole > NGX_HTTP_TS_TOTAL ? NGX_ERROR : (ngx_int_t) whole;
}


static ngx_int_t
ngx_fuzz_name(const u_char *p, size_t len)
{
    size_t  i;

    if (len < 1 || len > 32) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (!(isalnum(p[i]) || p[i] == '_' || p[i] == '-')) {
            return 0;
        }
    }

    return 1;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char     *p, buf[16];
    uint32_t    n;
    ngx_int_t   w;

    w = ngx_http_traffic_shift_parse_weight((u_char *) data, size);

    if (w != ngx_fuzz_weight(data, size)) {
        abort();
    }

    if (w != NGX_ERROR) {
        p = ngx_http_traffic_shift_print_weight(buf, w);

        if (p - buf > 6
            || ngx_http_traffic_shift_parse_weight(buf, p - buf) != w)
        {
            abort();
        }
    }

    if (ngx_http_traffic_shift_valid_name((u_char *) data, size)
        != ngx_fuzz_name(data, size))
    {
        abort();
    }

    /* the API prints totals up to 999999.99 into 16 bytes */

    if (size >= sizeof(uint32_t)) {
        ngx_memcpy(&n, data, sizeof(uint32_t));
        n %= 100000000;

        p = ngx_http_traffic_shift_print_weight(buf, n);

        if (p - buf > 9) {
            abort();
        }
    }

    return 0;
}
