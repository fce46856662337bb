
/*
 * Copyright (C) nginx-traffic-shift developers
 */


/*
 * The body of a PATCH as the admin API reads it: JSON parsed by
 * ngx_http_traffic_shift_api_parse(), read as a server's change, then by
 * ngx_http_traffic_shift_api_parse_weights() for
 * an upstream with the pools blue, green and canary.  Either the weights
 * total exactly 100% (each at most 100%) or the answer is a 400 or 404
 * with an error code and a text that fits.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_traffic_shift_api.h"


static ngx_http_traffic_shift_pool_t   ngx_fuzz_pools[] = {
    { ngx_string("blue"), ngx_string("u_blue"), 10000, NULL, NULL, 0 },
    { ngx_string("green"), ngx_string("u_green"), 0, NULL, NULL, 0 },
    { ngx_string("canary"), ngx_string("u_canary"), 0, NULL, NULL, 0 }
};


static void
ngx_fuzz_check_error(ngx_http_traffic_shift_api_err_t *err)
{
    if ((err->status != NGX_HTTP_BAD_REQUEST
         && err->status != NGX_HTTP_NOT_FOUND)
        || err->code == NULL
        || err->len == 0
        || err->len > NGX_HTTP_TS_API_TEXT_LEN)
    {
        abort();
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t                            *root;
    ngx_str_t                          body;
    ngx_int_t                          rc;
    ngx_uint_t                         i, total, force, down;
    ngx_uint_t                         weights[NGX_HTTP_TS_MAX_POOLS];
    ngx_http_traffic_shift_split_t     split;
    ngx_http_traffic_shift_api_err_t   err;

    ngx_memzero(&split, sizeof(ngx_http_traffic_shift_split_t));
    ngx_str_set(&split.name, "app");
    split.pools.elts = ngx_fuzz_pools;
    split.pools.nelts = 3;
    split.pools.size = sizeof(ngx_http_traffic_shift_pool_t);
    split.pools.nalloc = 3;

    ngx_memzero(&err, sizeof(ngx_http_traffic_shift_api_err_t));

    body.data = (u_char *) data;
    body.len = size;

    root = ngx_http_traffic_shift_api_parse(&body, &err);

    if (root == NULL) {
        ngx_fuzz_check_error(&err);
        return 0;
    }

    /* the same body as a server's change */

    ngx_memzero(&err, sizeof(ngx_http_traffic_shift_api_err_t));

    rc = ngx_http_traffic_shift_api_parse_down(root, &down, &err);

    if (rc == NGX_OK ? down > 1 : (rc != NGX_ERROR)) {
        abort();
    }

    if (rc == NGX_ERROR) {
        ngx_fuzz_check_error(&err);
    }

    ngx_memzero(&err, sizeof(ngx_http_traffic_shift_api_err_t));

    rc = ngx_http_traffic_shift_api_parse_weights(&split, root, weights,
                                                  &force, &err);

    if (rc == NGX_OK) {
        total = 0;

        for (i = 0; i < 3; i++) {
            if (weights[i] > NGX_HTTP_TS_TOTAL) {
                abort();
            }

            total += weights[i];
        }

        if (total != NGX_HTTP_TS_TOTAL || force > 1) {
            abort();
        }

    } else if (rc == NGX_ERROR) {
        ngx_fuzz_check_error(&err);

    } else {
        abort();
    }

    json_decref(root);

    return 0;
}
