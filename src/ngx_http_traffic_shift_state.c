
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#include "ngx_http_traffic_shift_state.h"
#include "ngx_http_traffic_shift_zone.h"
#include "ngx_http_traffic_shift_lib.h"


/*
 * The state file keeps every upstream's weights and generation, and the
 * admin-down marks:
 *
 *   {"format":"nginx-traffic-shift-state","version":1,"written":T,
 *    "floor":3,
 *    "upstreams":{"app":{"weights":{"blue":90,"green":10},
 *                        "source":"api","generation":7,"updated":T,
 *                        "rollout":{...}}},
 *    "admin_down":["app_blue/10.0.0.1:8080"]}
 *
 * It is read by the master at start (here) and written by workers
 * (ngx_http_traffic_shift_state_write.c).  Weights whose source is the
 * configuration follow the configuration; their generation is kept, and
 * moves on when the configured weights changed meanwhile.  "floor" is the
 * highest generation of an upstream that left the configuration.  An
 * upstream's "rollout" (ngx_http_traffic_shift_state_rollout()) comes back
 * with its weights: one that progressed resumes its current step.
 */


#define NGX_HTTP_TS_STATE_MAX      (64 * 1024 * 1024)


static ngx_int_t ngx_http_traffic_shift_state_valid(json_t *root);
static ngx_int_t ngx_http_traffic_shift_state_restore(
    ngx_http_traffic_shift_main_conf_t *mcf, json_t *root, ngx_log_t *log);
static ngx_int_t ngx_http_traffic_shift_state_restore_split(
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_split_t *split, json_t *saved, ngx_log_t *log);
static void ngx_http_traffic_shift_state_log_restored(
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_split_t *split, ngx_uint_t *value_of,
    ngx_log_t *log);


static void ngx_http_traffic_shift_state_restore_down(
    ngx_http_traffic_shift_main_conf_t *mcf, json_t *list, ngx_log_t *log);


/*
 * At start, in the master, with a fresh zone.  Nothing is written at start:
 * a file that cannot be used is kept as it is until a change is made.
 */

ngx_int_t
ngx_http_traffic_shift_state_load(ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_log_t *log)
{
    u_char           *file;
    json_t           *root;
    ngx_err_t         err;
    ngx_int_t         rc;
    json_error_t      error;
    ngx_file_info_t   fi;

    file = mcf->state_file.data;
    root = NULL;
    rc = NGX_DECLINED;

    if (ngx_file_info(file, &fi) == NGX_FILE_ERROR) {
        err = ngx_errno;

        if (err == NGX_ENOENT) {
            ngx_log_error(NGX_LOG_INFO, log, 0,
                          "traffic_shift_state \"%s\" does not exist yet, "
                          "the configured weights apply", file);

            ngx_http_traffic_shift_state_check_dir(mcf, log, 0);

            rc = NGX_OK;
            goto done;
        }

        ngx_log_error(NGX_LOG_WARN, log, err,
                      "traffic_shift_state \"%s\" cannot be read, ignored, "
                      "the configured weights apply", file);
        goto done;
    }

    if (ngx_file_size(&fi) > NGX_HTTP_TS_STATE_MAX) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "traffic_shift_state \"%s\" is too large (%O bytes), "
                      "ignored, the configured weights apply",
                      file, ngx_file_size(&fi));
        goto done;
    }

    root = json_load_file((char *) file, JSON_REJECT_DUPLICATES, &error);

    if (root == NULL) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "traffic_shift_state \"%s\" is corrupt (line %d: %s), "
                      "ignored, the configured weights apply",
                      file, error.line, error.text);
        goto done;
    }

    if (ngx_http_traffic_shift_state_valid(root) != NGX_OK) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "traffic_shift_state \"%s\" is not a state file of "
                      "format \"%s\" version %d, ignored, the configured "
                      "weights apply", file, NGX_HTTP_TS_STATE_FORMAT,
                      NGX_HTTP_TS_STATE_VERSION);
        goto done;
    }

    rc = ngx_http_traffic_shift_state_restore(mcf, root, log);

done:

    if (root) {
        json_decref(root);
    }

    /* a worker writes only after a change, or after a reload moved it */

    mcf->sh->saved = mcf->sh->version;
    mcf->sh->keep_file = (rc != NGX_OK);

    return rc;
}


static void
ngx_http_traffic_shift_state_log_restored(
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_split_t *split, ngx_uint_t *value_of,
    ngx_log_t *log)
{
    u_char                         *p, *last;
    u_char                          text[NGX_HTTP_TS_MAX_POOLS
                                         * (NGX_HTTP_TS_NAME_LEN + 9)];
    ngx_uint_t                      i, n;
    ngx_http_traffic_shift_pool_t  *pool;

    pool = split->pools.elts;
    n = split->pools.nelts;

    p = text;
    last = text + sizeof(text);

    for (i = 0; i < n; i++) {
        p = ngx_slprintf(p, last, "%s%V=", i ? " " : "", &pool[i].name);

        if (last - p > 8) {
            p = ngx_http_traffic_shift_print_weight(p, value_of[i]);
        }
    }

    ngx_log_error(NGX_LOG_NOTICE, log, 0,
                  "traffic_shift \"%V\": weights %*s restored from \"%V\", "
                  "generation %ui", &split->name, p - text, text,
                  &mcf->state_file, split->sh->generation);
}


static ngx_int_t
ngx_http_traffic_shift_state_valid(json_t *root)
{
    json_t      *value;
    ngx_uint_t   floor;

    if (!json_is_object(root)) {
        return NGX_ERROR;
    }

    value = json_object_get(root, "format");

    if (!json_is_string(value)
        || ngx_strcmp(json_string_value(value), NGX_HTTP_TS_STATE_FORMAT)
           != 0)
    {
        return NGX_ERROR;
    }

    value = json_object_get(root, "version");

    if (!json_is_integer(value)
        || json_integer_value(value) != NGX_HTTP_TS_STATE_VERSION)
    {
        return NGX_ERROR;
    }

    if (!json_is_object(json_object_get(root, "upstreams"))) {
        return NGX_ERROR;
    }

    value = json_object_get(root, "floor");

    if (value
        && ngx_http_traffic_shift_state_number(value, 0, &floor) != NGX_OK)
    {
        return NGX_ERROR;
    }

    value = json_object_get(root, "admin_down");

    if (value && !json_is_array(value)) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * A directory that does not exist, or (in a worker, "writable") that the
 * worker cannot write in, is worth a word before the first change.
 */

void
ngx_http_traffic_shift_state_check_dir(ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_log_t *log, ngx_uint_t writable)
{
    u_char           *dir;
    size_t            len;
    ngx_err_t         err;
    ngx_file_info_t   fi;

    for (len = mcf->state_file.len; len; len--) {
        if (mcf->state_file.data[len - 1] == '/') {
            break;
        }
    }

    dir = ngx_alloc(len + 2, log);
    if (dir == NULL) {
        return;
    }

    if (len == 0) {
        dir[0] = '.';
        len = 2;

    } else {
        /* the directory, "/" itself included when it is the root */
        ngx_memcpy(dir, mcf->state_file.data, len > 1 ? len - 1 : 1);
        len = len > 1 ? len : 2;
    }

    dir[len - 1] = '\0';

    err = 0;

    if (ngx_file_info(dir, &fi) == NGX_FILE_ERROR) {
        err = ngx_errno;

    } else if (!ngx_is_dir(&fi)) {
        err = NGX_ENOTDIR;
    }

    if (err) {
        ngx_log_error(NGX_LOG_WARN, log, err,
                      "the directory \"%s\" of traffic_shift_state is "
                      "missing, changes will not be saved", dir);

    } else if (writable && access((char *) dir, W_OK | X_OK) == -1) {
        ngx_log_error(NGX_LOG_ERR, log, ngx_errno,
                      "the directory \"%s\" of traffic_shift_state is not "
                      "writable by the worker processes, changes will not "
                      "be saved", dir);
    }

    ngx_free(dir);
}


/* NGX_DECLINED: a part was invalid, the file is kept until a change */

static ngx_int_t
ngx_http_traffic_shift_state_restore(ngx_http_traffic_shift_main_conf_t *mcf,
    json_t *root, ngx_log_t *log)
{
    json_t                           *upstreams, *list;
    ngx_int_t                         rc;
    ngx_uint_t                        i, floor;
    ngx_http_traffic_shift_split_t  **splitp;

    upstreams = json_object_get(root, "upstreams");

    if (ngx_http_traffic_shift_state_number(json_object_get(root, "floor"),
                                            0, &floor)
        == NGX_OK)
    {
        ngx_http_traffic_shift_zone_set_floor(mcf, floor);
    }

    rc = NGX_OK;
    splitp = mcf->splits.elts;

    for (i = 0; i < mcf->splits.nelts; i++) {
        if (ngx_http_traffic_shift_state_restore_split(mcf, splitp[i],
                  json_object_getn(upstreams, (char *) splitp[i]->name.data,
                                   splitp[i]->name.len),
                  log)
            == NGX_DECLINED)
        {
            rc = NGX_DECLINED;
        }
    }

    list = json_object_get(root, "admin_down");

    if (json_is_array(list)) {
        ngx_http_traffic_shift_state_restore_down(mcf, list, log);
    }

    return rc;
}


/*
 * The saved state of one upstream; an upstream the file does not name
 * starts above the floor.  Saved weights apply when their pools are those
 * configured now and the source was not the configuration; the generation
 * is kept, and moves on when weights from the configuration changed.
 */

static ngx_int_t
ngx_http_traffic_shift_state_restore_split(
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_split_t *split, json_t *saved, ngx_log_t *log)
{
    json_t                              *weights, *value;
    ngx_int_t                            rc;
    ngx_uint_t                           i, n, generation, updated, source;
    ngx_uint_t                           conf[NGX_HTTP_TS_MAX_POOLS];
    ngx_uint_t                           value_of[NGX_HTTP_TS_MAX_POOLS];
    ngx_http_traffic_shift_pool_t       *pool;
    ngx_http_traffic_shift_sh_rollout_t  ro;

    pool = split->pools.elts;
    n = split->pools.nelts;

    for (i = 0; i < n; i++) {
        conf[i] = pool[i].weight;
    }

    if (saved == NULL) {
        return ngx_http_traffic_shift_zone_restore(mcf, split, conf,
                                                   NGX_HTTP_TS_SRC_CONFIG,
                                                   0, 0);
    }

    weights = json_is_object(saved) ? json_object_get(saved, "weights")
                                    : NULL;

    if (!json_is_object(weights)
        || ngx_http_traffic_shift_state_number(
                     json_object_get(saved, "generation"), 1, &generation)
           != NGX_OK)
    {
        goto invalid;
    }

    value = json_object_get(saved, "updated");

    if (value == NULL) {
        updated = ngx_time();

    } else if (ngx_http_traffic_shift_state_number(value, 0, &updated)
               != NGX_OK)
    {
        goto invalid;
    }

    value = json_object_get(saved, "source");

    if (value == NULL) {
        source = NGX_HTTP_TS_SRC_STATE;

    } else if (json_is_string(value)
               && (ngx_strcmp(json_string_value(value), "config") == 0
                   || ngx_strcmp(json_string_value(value), "api") == 0))
    {
        source = (ngx_strcmp(json_string_value(value), "config") == 0)
                 ? NGX_HTTP_TS_SRC_CONFIG : NGX_HTTP_TS_SRC_STATE;

    } else {
        goto invalid;
    }

    rc = ngx_http_traffic_shift_state_weights(split, weights, value_of);

    if (rc == NGX_ERROR) {
        goto invalid;
    }

    if (rc == NGX_DECLINED) {
        /* other pools now: the configured weights, the generation on */

        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "traffic_shift_state \"%V\": the pools of upstream "
                      "\"%V\" changed, its saved weights are ignored",
                      &mcf->state_file, &split->name);

        return ngx_http_traffic_shift_zone_restore(mcf, split, conf,
                                                   NGX_HTTP_TS_SRC_CONFIG,
                                                   generation + 1, 0);
    }

    value = json_object_get(saved, "rollout");

    if (value
        && ngx_http_traffic_shift_state_rollout(split, value, &ro) != NGX_OK)
    {
        goto invalid;
    }

    if (source == NGX_HTTP_TS_SRC_CONFIG) {
        if (ngx_memcmp(value_of, conf, n * sizeof(ngx_uint_t)) != 0) {
            generation++;
            updated = 0;
        }

        rc = ngx_http_traffic_shift_zone_restore(mcf, split, conf,
                                                 NGX_HTTP_TS_SRC_CONFIG,
                                                 generation, updated);

    } else {
        rc = ngx_http_traffic_shift_zone_restore(mcf, split, value_of,
                                                 NGX_HTTP_TS_SRC_STATE,
                                                 generation, updated);
    }

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    if (value) {
        ngx_http_traffic_shift_zone_rollout_restore(mcf, split, &ro);

        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "traffic_shift \"%V\": rollout of pool \"%V\" "
                      "restored from \"%V\", %s, step %ui of %ui%s",
                      &split->name, &pool[ro.pool].name, &mcf->state_file,
                      ro.state == NGX_HTTP_TS_RO_PROGRESSING ? "progressing"
                      : ro.state == NGX_HTTP_TS_RO_PAUSED ? "paused"
                      : "ended", ro.step + 1, ro.nsteps,
                      ro.state == NGX_HTTP_TS_RO_PROGRESSING
                      ? ", the step starts again now" : "");
    }

    if (source == NGX_HTTP_TS_SRC_CONFIG) {
        return NGX_OK;
    }

    ngx_http_traffic_shift_state_log_restored(mcf, split, value_of, log);

    return NGX_OK;

invalid:

    ngx_log_error(NGX_LOG_WARN, log, 0,
                  "traffic_shift_state \"%V\": invalid state of upstream "
                  "\"%V\", ignored", &mcf->state_file, &split->name);

    (void) ngx_http_traffic_shift_zone_restore(mcf, split, conf,
                                               NGX_HTTP_TS_SRC_CONFIG, 0, 0);

    return NGX_DECLINED;
}


static void
ngx_http_traffic_shift_state_restore_down(
    ngx_http_traffic_shift_main_conf_t *mcf, json_t *list, ngx_log_t *log)
{
    u_char                             *slash;
    size_t                              len, alen;
    json_t                             *value;
    ngx_uint_t                          j, k, n;
    const char                         *key;
    ngx_http_traffic_shift_server_t    *server;
    ngx_http_traffic_shift_upstream_t  *ups;

    n = json_array_size(list);

    for (k = 0; k < n; k++) {
        value = json_array_get(list, k);

        if (!json_is_string(value)) {
            continue;
        }

        key = json_string_value(value);
        len = json_string_length(value);

        /* "upstream/address": an upstream's name has no "/" */

        slash = ngx_strlchr((u_char *) key, (u_char *) key + len, '/');

        if (slash == NULL) {
            continue;
        }

        ups = ngx_http_traffic_shift_find_upstream(mcf, (u_char *) key,
                                                   slash - (u_char *) key);
        if (ups == NULL) {
            continue;
        }

        slash++;
        alen = (u_char *) key + len - slash;

        j = ngx_http_traffic_shift_find_server(ups, slash, alen);

        if (j == (ngx_uint_t) NGX_ERROR) {

            /* an address a "server NAME resolve" may resolve to again */

            if (ngx_http_traffic_shift_zone_resolved_mark(mcf, ups, slash,
                                                          alen, log)
                == NGX_OK)
            {
                ngx_log_error(NGX_LOG_NOTICE, log, 0,
                              "traffic_shift: resolved address \"%*s\" of "
                              "upstream \"%V\" stays admin-down, restored "
                              "from \"%V\"", alen, slash, &ups->uscf->host,
                              &mcf->state_file);
            }

            continue;
        }

        server = &ups->servers[j];

        (void) ngx_http_traffic_shift_zone_admin_down(mcf, server, 1, 0,
                                                      NULL);

        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "traffic_shift: server \"%V\" of upstream \"%V\" "
                      "stays admin-down, restored from \"%V\"",
                      &server->name, &ups->uscf->host, &mcf->state_file);
    }
}


