
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#include "ngx_http_traffic_shift_lib.h"
#include "ngx_http_traffic_shift_zone.h"
#include "ngx_http_traffic_shift_balancer.h"
#include "ngx_http_traffic_shift_health.h"
#include "ngx_http_traffic_shift_outlier.h"
#include "ngx_http_traffic_shift_api.h"
#include "ngx_http_traffic_shift_state.h"
#include "ngx_http_traffic_shift_rollout.h"
#include "ngx_http_traffic_shift_sync.h"


static ngx_int_t ngx_http_traffic_shift_preconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_http_traffic_shift_postconfiguration(ngx_conf_t *cf);
static void *ngx_http_traffic_shift_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_traffic_shift_create_srv_conf(ngx_conf_t *cf);
static void *ngx_http_traffic_shift_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_traffic_shift_merge_loc_conf(ngx_conf_t *cf,
    void *parent, void *child);
static ngx_int_t ngx_http_traffic_shift_init_module(ngx_cycle_t *cycle);
static ngx_int_t ngx_http_traffic_shift_init_process(ngx_cycle_t *cycle);
static void ngx_http_traffic_shift_exit_process(ngx_cycle_t *cycle);

static char *ngx_http_traffic_shift_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_traffic_shift_state(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_traffic_shift_block(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_traffic_shift_block_line(ngx_conf_t *cf,
    ngx_command_t *dummy, void *conf);
static char *ngx_http_traffic_shift_pool(ngx_conf_t *cf,
    ngx_http_traffic_shift_split_t *split);
static char *ngx_http_traffic_shift_value(ngx_conf_t *cf,
    ngx_http_complex_value_t **cvp);
static ngx_int_t ngx_http_traffic_shift_add_zone(ngx_conf_t *cf,
    ngx_http_traffic_shift_main_conf_t *mcf);
static ngx_int_t ngx_http_traffic_shift_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);


static ngx_command_t  ngx_http_traffic_shift_commands[] = {

    { ngx_string("traffic_shift_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE2,
      ngx_http_traffic_shift_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("traffic_shift_state"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_traffic_shift_state,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("traffic_shift_sync"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_traffic_shift_sync,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("traffic_shift"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_BLOCK|NGX_CONF_TAKE1,
      ngx_http_traffic_shift_block,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("health_check"),
      NGX_HTTP_UPS_CONF|NGX_CONF_ANY,
      ngx_http_traffic_shift_health_check,
      NGX_HTTP_SRV_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("outlier_detection"),
      NGX_HTTP_UPS_CONF|NGX_CONF_ANY,
      ngx_http_traffic_shift_outlier_detection,
      NGX_HTTP_SRV_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("traffic_shift_api"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS|NGX_CONF_TAKE1,
      ngx_http_traffic_shift_api,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_traffic_shift_module_ctx = {
    ngx_http_traffic_shift_preconfiguration,  /* preconfiguration */
    ngx_http_traffic_shift_postconfiguration, /* postconfiguration */

    ngx_http_traffic_shift_create_main_conf,  /* create main conf */
    NULL,                                     /* init main conf */

    ngx_http_traffic_shift_create_srv_conf,   /* create server conf */
    NULL,                                     /* merge server conf */

    ngx_http_traffic_shift_create_loc_conf,   /* create location conf */
    ngx_http_traffic_shift_merge_loc_conf     /* merge location conf */
};


ngx_module_t  ngx_http_traffic_shift_module = {
    NGX_MODULE_V1,
    &ngx_http_traffic_shift_module_ctx,    /* module context */
    ngx_http_traffic_shift_commands,       /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    ngx_http_traffic_shift_init_module,    /* init module */
    ngx_http_traffic_shift_init_process,   /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_traffic_shift_exit_process,   /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_str_t  ngx_http_traffic_shift_pool_name =
    ngx_string("traffic_shift_pool");


static ngx_int_t
ngx_http_traffic_shift_preconfiguration(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var;

    var = ngx_http_add_variable(cf, &ngx_http_traffic_shift_pool_name,
                                NGX_HTTP_VAR_NOCACHEABLE);
    if (var == NULL) {
        return NGX_ERROR;
    }

    var->get_handler = ngx_http_traffic_shift_pool_variable;

    return NGX_OK;
}


static ngx_int_t
ngx_http_traffic_shift_postconfiguration(ngx_conf_t *cf)
{
    ngx_uint_t                           i;
    ngx_http_handler_pt                 *h;
    ngx_http_core_main_conf_t           *cmcf;
    ngx_http_upstream_srv_conf_t       **uscfp;
    ngx_http_traffic_shift_srv_conf_t   *scf;
    ngx_http_upstream_main_conf_t       *umcf;
    ngx_http_traffic_shift_upstream_t  **upsp;
    ngx_http_traffic_shift_main_conf_t  *mcf;

    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_traffic_shift_module);
    umcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_upstream_module);

    if (ngx_http_traffic_shift_api_init(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    /* upstream{} blocks with health checks are tracked too */

    uscfp = umcf->upstreams.elts;

    for (i = 0; i < umcf->upstreams.nelts; i++) {

        if (uscfp[i]->srv_conf == NULL
            || uscfp[i]->peer.init_upstream
               == ngx_http_traffic_shift_init_upstream)
        {
            continue;
        }

        scf = ngx_http_conf_upstream_srv_conf(uscfp[i],
                                              ngx_http_traffic_shift_module);

        if ((scf->health || scf->outlier)
            && ngx_http_traffic_shift_upstream_add(cf, uscfp[i]) == NULL)
        {
            return NGX_ERROR;
        }
    }

    upsp = mcf->upstreams.elts;

    for (i = 0; i < mcf->upstreams.nelts; i++) {
        if (ngx_http_traffic_shift_upstream_wrap(cf, upsp[i]) != NGX_OK) {
            return NGX_ERROR;
        }

        if (ngx_http_traffic_shift_outlier_check(cf, upsp[i]) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (mcf->splits.nelts == 0 && mcf->upstreams.nelts == 0
        && mcf->shm_zone == NULL)
    {
        return NGX_OK;
    }

    if (ngx_http_traffic_shift_add_zone(cf, mcf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_traffic_shift_health_init(cf, mcf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (mcf->splits.nelts) {
        cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

        h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
        if (h == NULL) {
            return NGX_ERROR;
        }

        *h = ngx_http_traffic_shift_log_handler;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_traffic_shift_add_zone(ngx_conf_t *cf,
    ngx_http_traffic_shift_main_conf_t *mcf)
{
    size_t           size, need;
    ngx_str_t        name;
    ngx_shm_zone_t  *shm_zone;

    need = ngx_http_traffic_shift_zone_estimate(mcf);

    if (mcf->shm_zone) {

        if (mcf->shm_zone->shm.size < need) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "traffic_shift_zone \"%V\" is too small for this "
                          "configuration, at least %uzk needed in %s:%ui",
                          &mcf->shm_zone->shm.name, (need + 1023) / 1024,
                          mcf->zone_file, mcf->zone_line);
            return NGX_ERROR;
        }

        return NGX_OK;
    }

    /* the default zone: a stable size, so that reloads reuse it */

    for (size = 1024 * 1024; size < need; size <<= 1) { /* void */ }

    ngx_str_set(&name, NGX_HTTP_TS_DEFAULT_ZONE);

    shm_zone = ngx_shared_memory_add(cf, &name, size,
                                     &ngx_http_traffic_shift_module);
    if (shm_zone == NULL) {
        return NGX_ERROR;
    }

    shm_zone->init = ngx_http_traffic_shift_init_zone;
    shm_zone->data = mcf;

    mcf->shm_zone = shm_zone;

    return NGX_OK;
}


/* the zone's records, then, at a start, what the state file saved */

static ngx_int_t
ngx_http_traffic_shift_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_int_t                            rc;
    ngx_http_traffic_shift_main_conf_t  *mcf;

    mcf = shm_zone->data;

    rc = ngx_http_traffic_shift_zone_init(shm_zone, data);

    if (rc != NGX_DONE) {
        return rc;
    }

    if (mcf->state_file.len) {
        (void) ngx_http_traffic_shift_state_load(mcf, shm_zone->shm.log);
    }

    return NGX_OK;
}


static void *
ngx_http_traffic_shift_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_traffic_shift_main_conf_t  *mcf;

    mcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_traffic_shift_main_conf_t));
    if (mcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     mcf->shm_zone = NULL;
     *     mcf->state_file = { 0, NULL };
     *     mcf->version = 0;
     */

    if (ngx_array_init(&mcf->splits, cf->pool, 4,
                       sizeof(ngx_http_traffic_shift_split_t *))
        != NGX_OK)
    {
        return NULL;
    }

    if (ngx_array_init(&mcf->upstreams, cf->pool, 4,
                       sizeof(ngx_http_traffic_shift_upstream_t *))
        != NGX_OK)
    {
        return NULL;
    }

    return mcf;
}


static void *
ngx_http_traffic_shift_create_srv_conf(ngx_conf_t *cf)
{
    return ngx_pcalloc(cf->pool, sizeof(ngx_http_traffic_shift_srv_conf_t));
}


static void *
ngx_http_traffic_shift_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_traffic_shift_loc_conf_t  *lcf;

    lcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_traffic_shift_loc_conf_t));
    if (lcf == NULL) {
        return NULL;
    }

    lcf->api = NGX_CONF_UNSET;
    lcf->write = NGX_CONF_UNSET;

    return lcf;
}


static char *
ngx_http_traffic_shift_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child)
{
    ngx_http_traffic_shift_loc_conf_t  *prev = parent;
    ngx_http_traffic_shift_loc_conf_t  *conf = child;

    ngx_conf_merge_value(conf->api, prev->api, 0);
    ngx_conf_merge_value(conf->write, prev->write, 0);

    return NGX_CONF_OK;
}


/* in the master, when the configuration is sure to be used */

static ngx_int_t
ngx_http_traffic_shift_init_module(ngx_cycle_t *cycle)
{
    ngx_http_traffic_shift_main_conf_t  *mcf;

    if (ngx_http_cycle_get_module_main_conf(cycle, ngx_http_module) == NULL) {
        return NGX_OK;
    }

    mcf = ngx_http_cycle_get_module_main_conf(cycle,
                                              ngx_http_traffic_shift_module);

    if (mcf == NULL || mcf->sh == NULL) {
        return NGX_OK;
    }

    ngx_log_error(NGX_LOG_NOTICE, cycle->log, 0,
                  "traffic_shift module " NGX_HTTP_TS_VERSION);

    return ngx_http_traffic_shift_zone_retire(mcf, cycle->log);
}


static ngx_int_t
ngx_http_traffic_shift_init_process(ngx_cycle_t *cycle)
{
    ngx_http_traffic_shift_state_init_process(cycle);

    if (ngx_http_traffic_shift_outlier_init_process(cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_traffic_shift_rollout_init_process(cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_traffic_shift_sync_init_process(cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_traffic_shift_health_init_process(cycle);
}


static void
ngx_http_traffic_shift_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_traffic_shift_health_exit_process(cycle);
    ngx_http_traffic_shift_rollout_exit_process(cycle);
    ngx_http_traffic_shift_sync_exit_process(cycle);
    ngx_http_traffic_shift_outlier_exit_process(cycle);
}


static char *
ngx_http_traffic_shift_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_traffic_shift_main_conf_t *mcf = conf;

    size_t           need;
    ssize_t          size;
    ngx_str_t       *value, name, s;
    ngx_shm_zone_t  *shm_zone;

    if (mcf->shm_zone) {
        return "is duplicate";
    }

    value = cf->args->elts;
    name = value[1];

    if (name.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone name \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    s = value[2];
    size = ngx_parse_size(&s);

    if (size == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone size \"%V\"", &value[2]);
        return NGX_CONF_ERROR;
    }

    /* what the smallest configuration needs; postconfiguration checks
     * what this one needs */

    need = ngx_http_traffic_shift_zone_estimate_min();

    if (size < (ssize_t) need) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone \"%V\" is too small, at least %uzk needed",
                           &value[1], (need + 1023) / 1024);
        return NGX_CONF_ERROR;
    }

    shm_zone = ngx_shared_memory_add(cf, &name, size,
                                     &ngx_http_traffic_shift_module);
    if (shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "duplicate zone \"%V\"", &name);
        return NGX_CONF_ERROR;
    }

    shm_zone->init = ngx_http_traffic_shift_init_zone;
    shm_zone->data = mcf;

    mcf->shm_zone = shm_zone;
    mcf->zone_file = cf->conf_file->file.name.data;
    mcf->zone_line = cf->conf_file->line;

    return NGX_CONF_OK;
}


static char *
ngx_http_traffic_shift_state(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_traffic_shift_main_conf_t *mcf = conf;

    ngx_str_t        *value;
    ngx_file_info_t   fi;

    if (mcf->state_file.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        ngx_str_set(&mcf->state_file, "");
        return NGX_CONF_OK;
    }

    if (value[1].len == 0 || value[1].data[value[1].len - 1] == '/') {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid state file \"%V\", a file name is "
                           "needed", &value[1]);
        return NGX_CONF_ERROR;
    }

    mcf->state_file = value[1];

    if (ngx_conf_full_name(cf->cycle, &mcf->state_file, 0) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (ngx_file_info(mcf->state_file.data, &fi) != NGX_FILE_ERROR
        && ngx_is_dir(&fi))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid state file \"%V\", it is a directory",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    return ngx_http_traffic_shift_state_conf(cf, mcf);
}


static char *
ngx_http_traffic_shift_block(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_traffic_shift_main_conf_t *mcf = conf;

    char                             *rv;
    ngx_url_t                         u;
    ngx_str_t                        *value;
    ngx_uint_t                        i, total;
    ngx_conf_t                        save;
    ngx_http_upstream_srv_conf_t     *uscf;
    ngx_http_traffic_shift_pool_t    *pool;
    ngx_http_traffic_shift_split_t   *split, **splitp;

    value = cf->args->elts;

    if (value[1].len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid traffic_shift name \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    splitp = mcf->splits.elts;

    for (i = 0; i < mcf->splits.nelts; i++) {
        if (splitp[i]->name.len == value[1].len
            && ngx_strncasecmp(splitp[i]->name.data, value[1].data,
                               value[1].len)
               == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate traffic_shift \"%V\"", &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    split = ngx_pcalloc(cf->pool, sizeof(ngx_http_traffic_shift_split_t));
    if (split == NULL) {
        return NGX_CONF_ERROR;
    }

    if (ngx_array_init(&split->pools, cf->pool, 4,
                       sizeof(ngx_http_traffic_shift_pool_t))
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.host = value[1];
    u.no_resolve = 1;
    u.no_port = 1;

    uscf = ngx_http_upstream_add(cf, &u, NGX_HTTP_UPSTREAM_CREATE);
    if (uscf == NULL) {
        return NGX_CONF_ERROR;
    }

    uscf->peer.init_upstream = ngx_http_traffic_shift_init_upstream;
    uscf->peer.data = split;

    split->name = value[1];
    split->uscf = uscf;
    split->file_name = cf->conf_file->file.name.data;
    split->line = cf->conf_file->line;

    splitp = ngx_array_push(&mcf->splits);
    if (splitp == NULL) {
        return NGX_CONF_ERROR;
    }

    *splitp = split;

    save = *cf;
    cf->handler = ngx_http_traffic_shift_block_line;
    cf->handler_conf = (char *) split;

    rv = ngx_conf_parse(cf, NULL);

    *cf = save;

    if (rv != NGX_CONF_OK) {
        return rv;
    }

    if (split->pools.nelts == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "no pools in traffic_shift \"%V\"", &split->name);
        return NGX_CONF_ERROR;
    }

    pool = split->pools.elts;
    total = 0;

    for (i = 0; i < split->pools.nelts; i++) {
        total += pool[i].weight;
    }

    if (total != NGX_HTTP_TS_TOTAL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "pool weights of traffic_shift \"%V\" total "
                           "%ui.%02ui, must total 100",
                           &split->name, total / 100, total % 100);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_traffic_shift_block_line(ngx_conf_t *cf, ngx_command_t *dummy,
    void *conf)
{
    ngx_http_traffic_shift_split_t *split = (void *) conf;

    ngx_str_t  *value;

    value = cf->args->elts;

    if (ngx_strcmp(value[0].data, "pool") == 0) {
        return ngx_http_traffic_shift_pool(cf, split);
    }

    if (ngx_strcmp(value[0].data, "sticky") == 0) {
        return ngx_http_traffic_shift_value(cf, &split->sticky);
    }

    if (ngx_strcmp(value[0].data, "route") == 0) {
        return ngx_http_traffic_shift_value(cf, &split->route);
    }

    if (ngx_strcmp(value[0].data, "traffic_shift") == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"traffic_shift\" cannot be nested");
        return NGX_CONF_ERROR;
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "unknown directive \"%V\" in traffic_shift \"%V\"",
                       &value[0], &split->name);

    return NGX_CONF_ERROR;
}


static char *
ngx_http_traffic_shift_pool(ngx_conf_t *cf,
    ngx_http_traffic_shift_split_t *split)
{
    ngx_int_t                       weight;
    ngx_str_t                      *value;
    ngx_uint_t                      i;
    ngx_http_traffic_shift_pool_t  *pool;

    value = cf->args->elts;

    if (cf->args->nelts != 3 && cf->args->nelts != 4) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid number of arguments in \"pool\"");
        return NGX_CONF_ERROR;
    }

    if (!ngx_http_traffic_shift_valid_name(value[1].data, value[1].len)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid pool name \"%V\", expected 1 to 32 of "
                           "A-Z, a-z, 0-9, \"_\" and \"-\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    pool = split->pools.elts;

    for (i = 0; i < split->pools.nelts; i++) {
        if (pool[i].name.len == value[1].len
            && ngx_strncmp(pool[i].name.data, value[1].data, value[1].len)
               == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate pool \"%V\"", &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    if (split->pools.nelts == NGX_HTTP_TS_MAX_POOLS) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "too many pools in traffic_shift \"%V\", "
                           "at most %d", &split->name,
                           NGX_HTTP_TS_MAX_POOLS);
        return NGX_CONF_ERROR;
    }

    if (value[2].len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid upstream \"%V\" in pool \"%V\"",
                           &value[2], &value[1]);
        return NGX_CONF_ERROR;
    }

    if (value[2].len == split->name.len
        && ngx_strncasecmp(value[2].data, split->name.data, split->name.len)
           == 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "pool \"%V\" cannot use its own traffic_shift "
                           "\"%V\"", &value[1], &value[2]);
        return NGX_CONF_ERROR;
    }

    weight = 0;

    if (cf->args->nelts == 4) {

        if (ngx_strncmp(value[3].data, "weight=", 7) != 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\"", &value[3]);
            return NGX_CONF_ERROR;
        }

        weight = ngx_http_traffic_shift_parse_weight(value[3].data + 7,
                                                     value[3].len - 7);
        if (weight == NGX_ERROR) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid weight \"%V\", expected a percentage "
                               "from 0 to 100 with at most 2 decimals",
                               &value[3]);
            return NGX_CONF_ERROR;
        }
    }

    pool = ngx_array_push(&split->pools);
    if (pool == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(pool, sizeof(ngx_http_traffic_shift_pool_t));

    pool->name = value[1];
    pool->upstream = value[2];
    pool->weight = weight;
    pool->file_name = cf->conf_file->file.name.data;
    pool->line = cf->conf_file->line;

    return NGX_CONF_OK;
}


static char *
ngx_http_traffic_shift_value(ngx_conf_t *cf, ngx_http_complex_value_t **cvp)
{
    ngx_str_t                         *value;
    ngx_http_complex_value_t          *cv;
    ngx_http_compile_complex_value_t   ccv;

    value = cf->args->elts;

    if (cf->args->nelts != 2) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid number of arguments in \"%V\"",
                           &value[0]);
        return NGX_CONF_ERROR;
    }

    if (*cvp) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" is duplicate", &value[0]);
        return NGX_CONF_ERROR;
    }

    cv = ngx_palloc(cf->pool, sizeof(ngx_http_complex_value_t));
    if (cv == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

    ccv.cf = cf;
    ccv.value = &value[1];
    ccv.complex_value = cv;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    *cvp = cv;

    return NGX_CONF_OK;
}
