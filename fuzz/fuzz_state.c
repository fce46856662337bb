
/*
 * Copyright (C) nginx-traffic-shift developers
 */


/*
 * A state file as nginx reads it at start: written to a file, read by
 * ngx_http_traffic_shift_state_load() as it is, for a configuration with the
 * traffic_shift upstream "app" (pools blue, green, canary) and the
 * upstreams app_blue and app_canary.  Whatever the file holds, weights
 * are restored only if they total exactly 100% over the configured pools,
 * and only configured servers are set admin-down.  The zone functions are
 * stubs that check this; the log messages are formatted as nginx would.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_traffic_shift_state.h"
#include "ngx_http_traffic_shift_zone.h"
#include "ngx_http_traffic_shift_lib.h"


static ngx_http_traffic_shift_pool_t   ngx_fuzz_pools[] = {
    { ngx_string("blue"), ngx_string("app_blue"), 10000, NULL, NULL, 0 },
    { ngx_string("green"), ngx_string("app_green"), 0, NULL, NULL, 0 },
    { ngx_string("canary"), ngx_string("app_canary"), 0, NULL, NULL, 0 }
};

static ngx_http_traffic_shift_split_t      ngx_fuzz_split;
static ngx_http_traffic_shift_server_t     ngx_fuzz_servers[3];
static ngx_http_traffic_shift_upstream_t   ngx_fuzz_ups[2];


ngx_int_t
ngx_http_traffic_shift_zone_restore(ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_split_t *split, ngx_uint_t *weights,
    ngx_uint_t source, ngx_uint_t generation, time_t updated)
{
    ngx_uint_t  i, total;

    if (split != &ngx_fuzz_split) {
        abort();
    }

    total = 0;

    for (i = 0; i < split->pools.nelts; i++) {
        if (weights[i] > NGX_HTTP_TS_TOTAL) {
            abort();
        }

        total += weights[i];
    }

    if (total != NGX_HTTP_TS_TOTAL) {
        abort();
    }

    if (generation > 9007199254740991ULL
        || (source != NGX_HTTP_TS_SRC_CONFIG
            && source != NGX_HTTP_TS_SRC_STATE))
    {
        abort();
    }

    split->sh->generation = generation;

    return NGX_OK;
}


void
ngx_http_traffic_shift_zone_set_floor(ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_uint_t floor)
{
    if (floor > 9007199254740991ULL) {
        abort();
    }
}


ngx_int_t
ngx_http_traffic_shift_zone_admin_down(
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_server_t *server, ngx_uint_t down,
    ngx_uint_t if_match, ngx_uint_t *version)
{
    if (server < ngx_fuzz_servers || server >= ngx_fuzz_servers + 3
        || down != 1 || if_match != 0 || version != NULL)
    {
        abort();
    }

    return NGX_OK;
}


void
ngx_http_traffic_shift_zone_rollout_restore(
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_split_t *split,
    ngx_http_traffic_shift_sh_rollout_t *saved)
{
    ngx_uint_t  i;

    if (split != &ngx_fuzz_split
        || saved->state == NGX_HTTP_TS_RO_NONE
        || saved->state >= NGX_HTTP_TS_RO_STATES
        || saved->pool >= split->pools.nelts
        || saved->baseline == 0
        || (saved->baseline & ((ngx_uint_t) 1 << saved->pool))
        || saved->baseline >> split->pools.nelts
        || saved->nsteps == 0 || saved->nsteps > NGX_HTTP_TS_RO_MAX_STEPS
        || saved->step >= saved->nsteps
        || saved->nhistory > NGX_HTTP_TS_RO_MAX_STEPS
        || saved->fa_window > NGX_HTTP_TS_RO_MAX_WINDOW
        || saved->npools != split->pools.nelts
        || saved->reason[NGX_HTTP_TS_RO_REASON_LEN - 1] != '\0')
    {
        abort();
    }

    for (i = 0; i < saved->nsteps; i++) {
        if (saved->steps[i] > NGX_HTTP_TS_TOTAL
            || (i && saved->steps[i] <= saved->steps[i - 1]))
        {
            abort();
        }
    }
}


/* the configuration has no "server NAME resolve": no address is one */

ngx_int_t
ngx_http_traffic_shift_zone_resolved_mark(
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_upstream_t *ups, u_char *name, size_t len,
    ngx_log_t *log)
{
    if (ups != &ngx_fuzz_ups[0] && ups != &ngx_fuzz_ups[1]) {
        abort();
    }

    return NGX_DECLINED;
}


/* one file per process, written anew for each input */

static char  ngx_fuzz_file[64];


static ngx_int_t
ngx_fuzz_write(char *name, const uint8_t *data, size_t size)
{
    int     fd;
    size_t  n;

    if (name[0] == '\0') {
        (void) snprintf(name, sizeof(ngx_fuzz_file),
                        "/tmp/ngx-fuzz-state-%d.json", (int) getpid());
    }

    fd = open(name, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd == -1) {
        return NGX_ERROR;
    }

    n = (size_t) write(fd, data, size);

    (void) close(fd);

    return n == size ? NGX_OK : NGX_ERROR;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ngx_log_t                            log;
    ngx_http_traffic_shift_sh_t          sh;
    ngx_http_upstream_srv_conf_t         uscf[2];
    ngx_http_traffic_shift_split_t      *splitp;
    ngx_http_traffic_shift_sh_split_t    sh_split;
    ngx_http_traffic_shift_upstream_t   *upsp[2];
    ngx_http_traffic_shift_main_conf_t   mcf;

    ngx_memzero(&log, sizeof(ngx_log_t));
    log.log_level = NGX_LOG_DEBUG;

    ngx_memzero(&ngx_fuzz_split, sizeof(ngx_http_traffic_shift_split_t));
    ngx_memzero(&sh_split, sizeof(ngx_http_traffic_shift_sh_split_t));
    ngx_str_set(&ngx_fuzz_split.name, "app");
    ngx_fuzz_split.pools.elts = ngx_fuzz_pools;
    ngx_fuzz_split.pools.nelts = 3;
    ngx_fuzz_split.pools.size = sizeof(ngx_http_traffic_shift_pool_t);
    ngx_fuzz_split.sh = &sh_split;
    splitp = &ngx_fuzz_split;

    ngx_memzero(uscf, sizeof(uscf));
    ngx_memzero(ngx_fuzz_servers, sizeof(ngx_fuzz_servers));
    ngx_memzero(ngx_fuzz_ups, sizeof(ngx_fuzz_ups));
    ngx_str_set(&uscf[0].host, "app_blue");
    ngx_str_set(&uscf[1].host, "app_canary");
    ngx_str_set(&ngx_fuzz_servers[0].name, "10.0.0.1:8080");
    ngx_str_set(&ngx_fuzz_servers[1].name, "10.0.0.2:8080");
    ngx_str_set(&ngx_fuzz_servers[2].name, "10.0.2.1:8080");
    ngx_fuzz_ups[0].uscf = &uscf[0];
    ngx_fuzz_ups[0].servers = &ngx_fuzz_servers[0];
    ngx_fuzz_ups[0].nservers = 2;
    ngx_fuzz_ups[1].uscf = &uscf[1];
    ngx_fuzz_ups[1].servers = &ngx_fuzz_servers[2];
    ngx_fuzz_ups[1].nservers = 1;
    upsp[0] = &ngx_fuzz_ups[0];
    upsp[1] = &ngx_fuzz_ups[1];

    ngx_memzero(&mcf, sizeof(ngx_http_traffic_shift_main_conf_t));
    mcf.splits.elts = &splitp;
    mcf.splits.nelts = 1;
    mcf.splits.size = sizeof(ngx_http_traffic_shift_split_t *);
    mcf.upstreams.elts = upsp;
    mcf.upstreams.nelts = 2;
    mcf.upstreams.size = sizeof(ngx_http_traffic_shift_upstream_t *);

    /* the file as ngx_http_traffic_shift_state_load() reads it at start */

    if (ngx_fuzz_write(ngx_fuzz_file, data, size) != NGX_OK) {
        return 0;
    }

    ngx_memzero(&sh, sizeof(ngx_http_traffic_shift_sh_t));
    mcf.sh = &sh;
    mcf.state_file.data = (u_char *) ngx_fuzz_file;
    mcf.state_file.len = ngx_strlen(ngx_fuzz_file);

    (void) ngx_http_traffic_shift_state_load(&mcf, &log);

    return 0;
}
