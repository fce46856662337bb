
/*
 * Copyright (C) nginx-traffic-shift developers
 */


/*
 * Request paths as the admin API routes them: the request target (as sent
 * and as nginx's URI) through ngx_http_traffic_shift_api_path() in a
 * location "/traffic/" with one traffic_shift upstream "app" and one
 * tracked upstream "app_blue" of two servers.  Either a resource is named
 * (and whatever it points to exists) or the answer is a 400 or 404 with an
 * error code and a text that fits.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_traffic_shift_api.h"


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t                               i;
    ngx_int_t                            rc;
    void                                *main_conf[2], *loc_conf[2];
    ngx_http_request_t                   r;
    ngx_http_core_loc_conf_t             clcf;
    ngx_http_upstream_srv_conf_t         uscf;
    ngx_http_traffic_shift_split_t       split, *splitp;
    ngx_http_traffic_shift_server_t      servers[2];
    ngx_http_traffic_shift_upstream_t    ups, *upsp;
    ngx_http_traffic_shift_api_err_t     err;
    ngx_http_traffic_shift_api_path_t    path;
    ngx_http_traffic_shift_sh_split_t    sh_split;
    ngx_http_traffic_shift_sh_server_t   sh_server;
    ngx_http_traffic_shift_main_conf_t   mcf;

    ngx_memzero(&r, sizeof(ngx_http_request_t));
    ngx_memzero(&clcf, sizeof(ngx_http_core_loc_conf_t));
    ngx_memzero(&uscf, sizeof(ngx_http_upstream_srv_conf_t));
    ngx_memzero(&split, sizeof(ngx_http_traffic_shift_split_t));
    ngx_memzero(servers, sizeof(servers));
    ngx_memzero(&ups, sizeof(ngx_http_traffic_shift_upstream_t));
    ngx_memzero(&err, sizeof(ngx_http_traffic_shift_api_err_t));
    ngx_memzero(&sh_split, sizeof(ngx_http_traffic_shift_sh_split_t));
    ngx_memzero(&sh_server, sizeof(ngx_http_traffic_shift_sh_server_t));
    ngx_memzero(&mcf, sizeof(ngx_http_traffic_shift_main_conf_t));

    ngx_str_set(&split.name, "app");
    split.sh = &sh_split;
    splitp = &split;

    ngx_str_set(&uscf.host, "app_blue");
    ngx_str_set(&servers[0].name, "127.0.0.1:8080");
    ngx_str_set(&servers[1].name, "127.0.0.1:8081");
    servers[0].sh = &sh_server;
    servers[1].sh = &sh_server;
    ups.uscf = &uscf;
    ups.servers = servers;
    ups.nservers = 2;
    upsp = &ups;

    mcf.splits.elts = &splitp;
    mcf.splits.nelts = 1;
    mcf.splits.size = sizeof(ngx_http_traffic_shift_split_t *);
    mcf.upstreams.elts = &upsp;
    mcf.upstreams.nelts = 1;
    mcf.upstreams.size = sizeof(ngx_http_traffic_shift_upstream_t *);

    ngx_str_set(&clcf.name, "/traffic/");

    main_conf[ngx_http_core_module.ctx_index] = NULL;
    main_conf[ngx_http_traffic_shift_module.ctx_index] = &mcf;
    loc_conf[ngx_http_core_module.ctx_index] = &clcf;
    loc_conf[ngx_http_traffic_shift_module.ctx_index] = NULL;

    r.main_conf = main_conf;
    r.loc_conf = loc_conf;

    /* the request target as sent; the URI without the arguments */

    r.unparsed_uri.data = (u_char *) data;
    r.unparsed_uri.len = size;

    for (i = 0; i < size && data[i] != '?'; i++) { /* void */ }

    r.uri.data = (u_char *) data;
    r.uri.len = i;

    rc = ngx_http_traffic_shift_api_path(&r, &path, &err);

    if (rc == NGX_OK) {
        switch (path.what) {

        case NGX_HTTP_TS_API_INDEX:
        case NGX_HTTP_TS_API_UPSTREAMS:
        case NGX_HTTP_TS_API_HEALTH:
        case NGX_HTTP_TS_API_METRICS:
            break;

        case NGX_HTTP_TS_API_UPSTREAM:
            if (path.split != &split) {
                abort();
            }

            break;

        case NGX_HTTP_TS_API_HEALTH_UPS:
            if (path.ups != &ups) {
                abort();
            }

            break;

        case NGX_HTTP_TS_API_SERVER:
            if (path.ups != &ups || path.id >= ups.nservers) {
                abort();
            }

            break;

        default:
            abort();
        }

        return 0;
    }

    if (rc != NGX_ERROR
        || (err.status != NGX_HTTP_BAD_REQUEST
            && err.status != NGX_HTTP_NOT_FOUND)
        || err.code == NULL
        || err.len == 0
        || err.len > NGX_HTTP_TS_API_TEXT_LEN)
    {
        abort();
    }

    return 0;
}
