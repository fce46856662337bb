
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#include "ngx_http_traffic_shift_state.h"
#include "ngx_http_traffic_shift_zone.h"
#include "ngx_http_traffic_shift_api.h"

#include <jansson.h>
#include <sys/file.h>


/*
 * The state file keeps the weights set at runtime and the admin-down marks:
 *
 *   {"format":"nginx-traffic-shift-state","version":1,"written":T,
 *    "upstreams":{"app":{"weights":{"blue":90,"green":10},
 *                        "generation":7,"updated":T}},
 *    "admin_down":["app_blue/10.0.0.1:8080"]}
 *
 * It is read by the master at start, and written by workers after every
 * change: to a temporary file in the same directory, synced, renamed over
 * the old one, and the directory synced.  Writers of all workers take an
 * exclusive lock on a side file and write the zone as it is then, unless
 * a newer zone version was written already.  Workers do not block on the
 * disk: the write runs in a thread pool of one thread when nginx has
 * threads, synchronously otherwise.
 */


#define NGX_HTTP_TS_STATE_FORMAT   "nginx-traffic-shift-state"
#define NGX_HTTP_TS_STATE_VERSION  1
#define NGX_HTTP_TS_STATE_MAX      (64 * 1024 * 1024)


static void ngx_http_traffic_shift_state_check_dir(
    ngx_http_traffic_shift_main_conf_t *mcf, ngx_log_t *log);
static void ngx_http_traffic_shift_state_restore(
    ngx_http_traffic_shift_main_conf_t *mcf, json_t *root, ngx_log_t *log);
static void ngx_http_traffic_shift_state_restore_split(
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_split_t *split, json_t *saved, ngx_log_t *log);
static void ngx_http_traffic_shift_state_restore_down(
    ngx_http_traffic_shift_main_conf_t *mcf, json_t *list, ngx_log_t *log);
static void ngx_http_traffic_shift_state_write(
    ngx_http_traffic_shift_state_save_t *save);
static ngx_int_t ngx_http_traffic_shift_state_write_file(
    ngx_http_traffic_shift_state_save_t *save, u_char *data, size_t len);
static json_t *ngx_http_traffic_shift_state_json(
    ngx_http_traffic_shift_state_save_t *save);
static void ngx_http_traffic_shift_state_error(
    ngx_http_traffic_shift_state_save_t *save, ngx_err_t err,
    const char *fmt, ...);
static void ngx_http_traffic_shift_state_finish(
    ngx_http_traffic_shift_state_save_t *save);

#if (NGX_THREADS)
static void ngx_http_traffic_shift_state_thread(void *data, ngx_log_t *log);
static void ngx_http_traffic_shift_state_event(ngx_event_t *ev);
static void ngx_http_traffic_shift_state_wait(ngx_http_request_t *r);


extern ngx_module_t  ngx_thread_pool_module;

static ngx_str_t  ngx_http_traffic_shift_state_pool =
    ngx_string("traffic_shift");
#endif


/*
 * A thread pool of one thread for the writes, as if "thread_pool
 * traffic_shift threads=1;" were configured, unless it is.
 */

char *
ngx_http_traffic_shift_state_conf(ngx_conf_t *cf,
    ngx_http_traffic_shift_main_conf_t *mcf)
{
#if (NGX_THREADS)
    char           *rv;
    void           *tcf;
    ngx_str_t      *value;
    ngx_array_t    *args, *saved;
    ngx_command_t  *cmd;

    if (ngx_thread_pool_get(cf->cycle, &ngx_http_traffic_shift_state_pool)) {
        return NGX_CONF_OK;
    }

    for (cmd = ngx_thread_pool_module.commands; cmd->name.len; cmd++) {
        if (ngx_strcmp(cmd->name.data, "thread_pool") == 0) {
            break;
        }
    }

    if (cmd->name.len == 0) {
        /* not expected: write synchronously */
        return NGX_CONF_OK;
    }

    args = ngx_array_create(cf->temp_pool, 3, sizeof(ngx_str_t));
    if (args == NULL) {
        return NGX_CONF_ERROR;
    }

    value = ngx_array_push_n(args, 3);
    if (value == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_str_set(&value[0], "thread_pool");
    value[1] = ngx_http_traffic_shift_state_pool;
    ngx_str_set(&value[2], "threads=1");

    tcf = ngx_get_conf(cf->cycle->conf_ctx, ngx_thread_pool_module);

    saved = cf->args;
    cf->args = args;

    rv = cmd->set(cf, cmd, tcf);

    cf->args = saved;

    return rv;
#else
    return NGX_CONF_OK;
#endif
}


/* at start, in the master, with a fresh zone */

ngx_int_t
ngx_http_traffic_shift_state_load(ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_log_t *log)
{
    u_char           *file;
    json_t           *root;
    ngx_err_t         err;
    json_error_t      error;
    ngx_file_info_t   fi;

    file = mcf->state_file.data;

    if (ngx_file_info(file, &fi) == NGX_FILE_ERROR) {
        err = ngx_errno;

        if (err == NGX_ENOENT) {
            ngx_log_error(NGX_LOG_INFO, log, 0,
                          "traffic_shift_state \"%s\" does not exist yet, "
                          "the configured weights apply", file);

            ngx_http_traffic_shift_state_check_dir(mcf, log);

            return NGX_OK;
        }

        ngx_log_error(NGX_LOG_WARN, log, err,
                      "traffic_shift_state \"%s\" cannot be read, ignored, "
                      "the configured weights apply", file);
        return NGX_DECLINED;
    }

    if (ngx_file_size(&fi) > NGX_HTTP_TS_STATE_MAX) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "traffic_shift_state \"%s\" is too large (%O bytes), "
                      "ignored, the configured weights apply",
                      file, ngx_file_size(&fi));
        return NGX_DECLINED;
    }

    root = json_load_file((char *) file, JSON_REJECT_DUPLICATES, &error);

    if (root == NULL) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "traffic_shift_state \"%s\" is corrupt (line %d: %s), "
                      "ignored, the configured weights apply",
                      file, error.line, error.text);
        return NGX_DECLINED;
    }

    if (!json_is_object(root)
        || !json_is_integer(json_object_get(root, "version"))
        || !json_is_object(json_object_get(root, "upstreams")))
    {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "traffic_shift_state \"%s\" is not a state file, "
                      "ignored, the configured weights apply", file);
        json_decref(root);
        return NGX_DECLINED;
    }

    if (json_integer_value(json_object_get(root, "version"))
        != NGX_HTTP_TS_STATE_VERSION)
    {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "traffic_shift_state \"%s\" has an unknown version, "
                      "ignored, the configured weights apply", file);
        json_decref(root);
        return NGX_DECLINED;
    }

    ngx_http_traffic_shift_state_restore(mcf, root, log);

    json_decref(root);

    return NGX_OK;
}


/* a directory that does not exist now is worth a word before a change */

static void
ngx_http_traffic_shift_state_check_dir(ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_log_t *log)
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

    if (len <= 1) {
        return;
    }

    dir = ngx_alloc(len, log);
    if (dir == NULL) {
        return;
    }

    ngx_memcpy(dir, mcf->state_file.data, len - 1);
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
    }

    ngx_free(dir);
}


static void
ngx_http_traffic_shift_state_restore(ngx_http_traffic_shift_main_conf_t *mcf,
    json_t *root, ngx_log_t *log)
{
    void                             *it;
    json_t                           *upstreams, *list;
    ngx_uint_t                        i;
    const char                       *name;
    ngx_http_traffic_shift_split_t  **splitp;

    upstreams = json_object_get(root, "upstreams");
    splitp = mcf->splits.elts;

    for (it = json_object_iter(upstreams);
         it;
         it = json_object_iter_next(upstreams, it))
    {
        name = json_object_iter_key(it);

        for (i = 0; i < mcf->splits.nelts; i++) {
            if (splitp[i]->name.len == ngx_strlen(name)
                && ngx_strncmp(splitp[i]->name.data, name,
                               splitp[i]->name.len)
                   == 0)
            {
                break;
            }
        }

        if (i == mcf->splits.nelts) {
            ngx_log_error(NGX_LOG_NOTICE, log, 0,
                          "traffic_shift_state \"%V\": upstream \"%s\" is not "
                          "configured, its saved weights are ignored",
                          &mcf->state_file, name);
            continue;
        }

        ngx_http_traffic_shift_state_restore_split(mcf, splitp[i],
                                                   json_object_iter_value(it),
                                                   log);
    }

    list = json_object_get(root, "admin_down");

    if (json_is_array(list)) {
        ngx_http_traffic_shift_state_restore_down(mcf, list, log);
    }
}


static void
ngx_http_traffic_shift_state_restore_split(
    ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_http_traffic_shift_split_t *split, json_t *saved, ngx_log_t *log)
{
    void                           *it;
    u_char                         *p, *last;
    u_char                          text[NGX_HTTP_TS_MAX_POOLS
                                         * (NGX_HTTP_TS_NAME_LEN + 9)];
    json_t                         *weights, *value;
    time_t                          updated;
    ngx_int_t                       w;
    ngx_uint_t                      i, n, total, generation;
    ngx_uint_t                      set[NGX_HTTP_TS_MAX_POOLS];
    ngx_uint_t                      value_of[NGX_HTTP_TS_MAX_POOLS];
    const char                     *key;
    ngx_http_traffic_shift_pool_t  *pool;

    weights = json_is_object(saved) ? json_object_get(saved, "weights")
                                    : NULL;

    if (!json_is_object(weights)) {
        goto invalid;
    }

    pool = split->pools.elts;
    n = split->pools.nelts;

    ngx_memzero(set, sizeof(set));
    total = 0;

    for (it = json_object_iter(weights);
         it;
         it = json_object_iter_next(weights, it))
    {
        key = json_object_iter_key(it);
        value = json_object_iter_value(it);

        for (i = 0; i < n; i++) {
            if (pool[i].name.len == ngx_strlen(key)
                && ngx_strncmp(pool[i].name.data, key, pool[i].name.len) == 0)
            {
                break;
            }
        }

        if (i == n) {
            goto pools;
        }

        if (!json_is_number(value)) {
            goto invalid;
        }

        w = ngx_http_traffic_shift_api_json_to_weight(value);

        if (w < 0) {
            goto invalid;
        }

        set[i] = 1;
        value_of[i] = w;
        total += w;
    }

    for (i = 0; i < n; i++) {
        if (!set[i]) {
            goto pools;
        }
    }

    if (total != NGX_HTTP_TS_TOTAL) {
        goto invalid;
    }

    value = json_object_get(saved, "generation");
    generation = json_is_integer(value) && json_integer_value(value) > 0
                 ? (ngx_uint_t) json_integer_value(value) : 0;

    value = json_object_get(saved, "updated");
    updated = json_is_integer(value) && json_integer_value(value) > 0
              ? (time_t) json_integer_value(value) : ngx_time();

    if (ngx_http_traffic_shift_zone_restore(mcf, split, value_of, generation,
                                            updated)
        != NGX_OK)
    {
        return;
    }

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

    return;

pools:

    ngx_log_error(NGX_LOG_NOTICE, log, 0,
                  "traffic_shift_state \"%V\": the pools of upstream \"%V\" "
                  "changed, its saved weights are ignored",
                  &mcf->state_file, &split->name);
    return;

invalid:

    ngx_log_error(NGX_LOG_WARN, log, 0,
                  "traffic_shift_state \"%V\": invalid weights of upstream "
                  "\"%V\", ignored", &mcf->state_file, &split->name);
}


static void
ngx_http_traffic_shift_state_restore_down(
    ngx_http_traffic_shift_main_conf_t *mcf, json_t *list, ngx_log_t *log)
{
    size_t                               len;
    json_t                              *value;
    ngx_str_t                           *host;
    ngx_uint_t                           i, j, k, n;
    const char                          *key;
    ngx_http_traffic_shift_server_t     *server;
    ngx_http_traffic_shift_upstream_t  **upsp;

    upsp = mcf->upstreams.elts;
    n = json_array_size(list);

    for (k = 0; k < n; k++) {
        value = json_array_get(list, k);

        if (!json_is_string(value)) {
            continue;
        }

        key = json_string_value(value);
        len = json_string_length(value);

        for (i = 0; i < mcf->upstreams.nelts; i++) {
            host = &upsp[i]->uscf->host;

            if (len <= host->len || key[host->len] != '/'
                || ngx_strncmp(key, host->data, host->len) != 0)
            {
                continue;
            }

            for (j = 0; j < upsp[i]->nservers; j++) {
                server = &upsp[i]->servers[j];

                if (server->name.len == len - host->len - 1
                    && ngx_strncmp(key + host->len + 1, server->name.data,
                                   server->name.len)
                       == 0)
                {
                    (void) ngx_http_traffic_shift_zone_admin_down(mcf,
                                                         server, 1, 0, NULL);

                    ngx_log_error(NGX_LOG_NOTICE, log, 0,
                                  "traffic_shift: server \"%V\" of upstream "
                                  "\"%V\" stays admin-down, restored from "
                                  "\"%V\"", &server->name, host,
                                  &mcf->state_file);
                }
            }
        }
    }
}


/*
 * Writes the state file after a change made by request "r", then calls
 * done(r, save): at once if the write is synchronous (NGX_OK), or later
 * from the event loop (NGX_AGAIN).  NGX_ERROR: done() is not called.
 */

ngx_int_t
ngx_http_traffic_shift_state_save(ngx_http_request_t *r,
    ngx_http_traffic_shift_state_done_pt done, void *data)
{
    u_char                               *p;
    size_t                                len;
    ngx_http_traffic_shift_main_conf_t   *mcf;
    ngx_http_traffic_shift_state_save_t  *save;
#if (NGX_THREADS)
    ngx_thread_task_t                    *task;
    ngx_thread_pool_t                    *tp;
#endif

    mcf = ngx_http_get_module_main_conf(r, ngx_http_traffic_shift_module);

#if (NGX_THREADS)
    tp = ngx_thread_pool_get((ngx_cycle_t *) ngx_cycle,
                             &ngx_http_traffic_shift_state_pool);

    task = ngx_thread_task_alloc(r->pool,
                                 sizeof(ngx_http_traffic_shift_state_save_t));
    if (task == NULL) {
        return NGX_ERROR;
    }

    save = task->ctx;
#else
    save = ngx_pcalloc(r->pool, sizeof(ngx_http_traffic_shift_state_save_t));
    if (save == NULL) {
        return NGX_ERROR;
    }
#endif

    save->mcf = mcf;
    save->r = r;
    save->done = done;
    save->data = data;
    save->file = mcf->state_file.data;

    len = mcf->state_file.len;

    save->temp = ngx_pnalloc(r->pool, 2 * (len + sizeof(".lock")) + len + 2);
    if (save->temp == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(save->temp, "%V.tmp%Z", &mcf->state_file);

    save->lock = p;
    p = ngx_sprintf(p, "%V.lock%Z", &mcf->state_file);

    save->dir = p;

    for (len = mcf->state_file.len; len; len--) {
        if (mcf->state_file.data[len - 1] == '/') {
            break;
        }
    }

    if (len == 0) {
        *p++ = '.';

    } else {
        /* the directory, "/" itself included when it is the root */
        p = ngx_cpymem(p, mcf->state_file.data, len > 1 ? len - 1 : 1);
    }

    *p = '\0';

#if (NGX_THREADS)
    if (tp) {
        task->handler = ngx_http_traffic_shift_state_thread;
        task->event.data = save;
        task->event.handler = ngx_http_traffic_shift_state_event;

        if (ngx_thread_task_post(tp, task) == NGX_OK) {
            r->main->blocked++;
            r->aio = 1;
            r->write_event_handler = ngx_http_traffic_shift_state_wait;

            return NGX_AGAIN;
        }
    }
#endif

    ngx_http_traffic_shift_state_write(save);
    ngx_http_traffic_shift_state_finish(save);

    return NGX_OK;
}


#if (NGX_THREADS)

static void
ngx_http_traffic_shift_state_thread(void *data, ngx_log_t *log)
{
    ngx_http_traffic_shift_state_save_t  *save = data;

    ngx_http_traffic_shift_state_write(save);
}


static void
ngx_http_traffic_shift_state_event(ngx_event_t *ev)
{
    ngx_connection_t                     *c;
    ngx_http_request_t                   *r;
    ngx_http_traffic_shift_state_save_t  *save;

    save = ev->data;
    r = save->r;
    c = r->connection;

    ngx_http_set_log_request(c->log, r);

    r->main->blocked--;
    r->aio = 0;

    if (r->write_event_handler != ngx_http_traffic_shift_state_wait) {
        /* the request was terminated meanwhile */
        if (save->rc != NGX_OK) {
            ngx_log_error(NGX_LOG_ERR, c->log, 0,
                          "traffic_shift_state: %*s",
                          save->error_len, save->error);
        }

        r->write_event_handler(r);

    } else {
        r->write_event_handler = ngx_http_request_empty_handler;
        ngx_http_traffic_shift_state_finish(save);
    }

    ngx_http_run_posted_requests(c);
}


static void
ngx_http_traffic_shift_state_wait(ngx_http_request_t *r)
{
    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "traffic_shift_state: waiting for the write");
}

#endif


static void
ngx_http_traffic_shift_state_finish(ngx_http_traffic_shift_state_save_t *save)
{
    if (save->rc != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, save->r->connection->log, 0,
                      "traffic_shift_state: %*s, the change is live but "
                      "not saved", save->error_len, save->error);
    }

    save->done(save->r, save);
}


/* in the thread: nothing here may use the request or its pool */

static void
ngx_http_traffic_shift_state_write(ngx_http_traffic_shift_state_save_t *save)
{
    char                         *data;
    json_t                       *root;
    ngx_fd_t                      fd;
    ngx_atomic_uint_t             version;
    ngx_http_traffic_shift_sh_t  *sh;

    save->rc = NGX_ERROR;
    sh = save->mcf->sh;

    fd = open((char *) save->lock, O_RDWR | O_CREAT, 0644);

    if (fd == -1) {
        ngx_http_traffic_shift_state_error(save, ngx_errno,
                                           "open() \"%s\" failed", save->lock);
        return;
    }

    while (flock(fd, LOCK_EX) == -1) {
        if (ngx_errno != NGX_EINTR) {
            ngx_http_traffic_shift_state_error(save, ngx_errno,
                                               "flock() \"%s\" failed",
                                               save->lock);
            (void) close(fd);
            return;
        }
    }

    version = sh->version;
    ngx_memory_barrier();

    if (sh->saved >= version) {
        /* a writer in another worker saved this change or a newer one */
        save->rc = NGX_OK;
        goto unlock;
    }

    root = ngx_http_traffic_shift_state_json(save);
    if (root == NULL) {
        goto unlock;
    }

    data = json_dumps(root, JSON_INDENT(1) | JSON_REAL_PRECISION(10));

    json_decref(root);

    if (data == NULL) {
        ngx_http_traffic_shift_state_error(save, 0, "out of memory");
        goto unlock;
    }

    if (ngx_http_traffic_shift_state_write_file(save, (u_char *) data,
                                                ngx_strlen(data))
        == NGX_OK)
    {
        sh->saved = version;
        save->rc = NGX_OK;
    }

    free(data);

unlock:

    (void) flock(fd, LOCK_UN);
    (void) close(fd);
}


static ngx_int_t
ngx_http_traffic_shift_state_write_file(
    ngx_http_traffic_shift_state_save_t *save, u_char *data, size_t len)
{
    ssize_t   n;
    ngx_fd_t  fd;

    fd = open((char *) save->temp, O_WRONLY | O_CREAT | O_TRUNC, 0644);

    if (fd == -1) {
        ngx_http_traffic_shift_state_error(save, ngx_errno,
                                           "open() \"%s\" failed", save->temp);
        return NGX_ERROR;
    }

    while (len) {
        n = write(fd, data, len);

        if (n == -1) {
            if (ngx_errno == NGX_EINTR) {
                continue;
            }

            ngx_http_traffic_shift_state_error(save, ngx_errno,
                                               "write() \"%s\" failed",
                                               save->temp);
            goto failed;
        }

        data += n;
        len -= n;
    }

    if (fsync(fd) == -1) {
        ngx_http_traffic_shift_state_error(save, ngx_errno,
                                           "fsync() \"%s\" failed",
                                           save->temp);
        goto failed;
    }

    if (close(fd) == -1) {
        fd = -1;
        ngx_http_traffic_shift_state_error(save, ngx_errno,
                                           "close() \"%s\" failed",
                                           save->temp);
        goto failed;
    }

    if (rename((char *) save->temp, (char *) save->file) == -1) {
        ngx_http_traffic_shift_state_error(save, ngx_errno,
                                           "rename() \"%s\" to \"%s\" failed",
                                           save->temp, save->file);
        (void) unlink((char *) save->temp);
        return NGX_ERROR;
    }

    /* the rename itself must reach the disk */

    fd = open((char *) save->dir, O_RDONLY | O_DIRECTORY);

    if (fd == -1 || fsync(fd) == -1) {
        ngx_http_traffic_shift_state_error(save, ngx_errno,
                                           "fsync() of directory \"%s\" "
                                           "failed", save->dir);
        if (fd != -1) {
            (void) close(fd);
        }

        return NGX_ERROR;
    }

    (void) close(fd);

    return NGX_OK;

failed:

    if (fd != -1) {
        (void) close(fd);
    }

    (void) unlink((char *) save->temp);

    return NGX_ERROR;
}


/* the zone as it is now: weights set at runtime, and admin-down marks */

static json_t *
ngx_http_traffic_shift_state_json(ngx_http_traffic_shift_state_save_t *save)
{
    u_char                               *p, key[NGX_SOCKADDR_STRLEN + 256];
    json_t                               *root, *upstreams, *down, *obj;
    json_t                               *weights;
    ngx_int_t                             rc;
    ngx_uint_t                            i, j, n;
    ngx_http_traffic_shift_pool_t        *pool;
    ngx_http_traffic_shift_split_t      **splitp;
    ngx_http_traffic_shift_server_t      *server;
    ngx_http_traffic_shift_weights_t      w;
    ngx_http_traffic_shift_upstream_t   **upsp;
    ngx_http_traffic_shift_main_conf_t   *mcf;

    mcf = save->mcf;

    root = json_object();
    upstreams = json_object();
    down = json_array();

    if (root == NULL || upstreams == NULL || down == NULL) {
        goto nomem;
    }

    if (json_object_set_new(root, "format",
                            json_string(NGX_HTTP_TS_STATE_FORMAT))
        || json_object_set_new(root, "version",
                               json_integer(NGX_HTTP_TS_STATE_VERSION))
        || json_object_set_new(root, "written", json_integer(time(NULL))))
    {
        goto nomem;
    }

    splitp = mcf->splits.elts;

    for (i = 0; i < mcf->splits.nelts; i++) {

        for (n = 0; n < 1000; n++) {
            rc = ngx_http_traffic_shift_zone_read(splitp[i], &w);

            if (rc != NGX_AGAIN) {
                break;
            }

            ngx_sched_yield();
        }

        if (rc == NGX_DECLINED) {
            ngx_http_traffic_shift_state_error(save, 0,
                           "the configuration was reloaded, the new one "
                           "saves the state");
            goto failed;
        }

        if (rc != NGX_OK) {
            ngx_http_traffic_shift_state_error(save, 0,
                           "weights of upstream \"%V\" kept changing",
                           &splitp[i]->name);
            goto failed;
        }

        if (w.source == NGX_HTTP_TS_SRC_CONFIG) {
            /* weights from the configuration follow the configuration */
            continue;
        }

        obj = json_object();
        weights = json_object();

        if (obj == NULL || weights == NULL
            || json_object_set_new(obj, "weights", weights)
            || json_object_setn_new_nocheck(upstreams,
                                        (char *) splitp[i]->name.data,
                                        splitp[i]->name.len, obj))
        {
            json_decref(obj);
            goto nomem;
        }

        pool = splitp[i]->pools.elts;

        for (j = 0; j < splitp[i]->pools.nelts; j++) {
            if (json_object_setn_new_nocheck(weights,
                        (char *) pool[j].name.data, pool[j].name.len,
                        ngx_http_traffic_shift_api_json_weight(w.weights[j])))
            {
                goto nomem;
            }
        }

        if (json_object_set_new(obj, "generation",
                                json_integer(w.generation))
            || json_object_set_new(obj, "updated", json_integer(w.updated)))
        {
            goto nomem;
        }
    }

    upsp = mcf->upstreams.elts;

    for (i = 0; i < mcf->upstreams.nelts; i++) {
        for (j = 0; j < upsp[i]->nservers; j++) {
            server = &upsp[i]->servers[j];

            if (!server->sh->admin_down) {
                continue;
            }

            p = ngx_snprintf(key, sizeof(key), "%V/%V",
                             &upsp[i]->uscf->host, &server->name);

            if (json_array_append_new(down,
                                      json_stringn_nocheck((char *) key,
                                                           p - key)))
            {
                goto nomem;
            }
        }
    }

    if (json_object_set_new(root, "upstreams", upstreams)) {
        upstreams = NULL;
        goto nomem;
    }

    upstreams = NULL;

    if (json_object_set_new(root, "admin_down", down)) {
        down = NULL;
        goto nomem;
    }

    return root;

nomem:

    ngx_http_traffic_shift_state_error(save, 0, "out of memory");

failed:

    json_decref(root);
    json_decref(upstreams);
    json_decref(down);

    return NULL;
}


static void
ngx_http_traffic_shift_state_error(ngx_http_traffic_shift_state_save_t *save,
    ngx_err_t err, const char *fmt, ...)
{
    u_char   *p, *last;
    va_list   args;

    p = save->error;
    last = save->error + NGX_HTTP_TS_STATE_ERR_LEN;

    va_start(args, fmt);
    p = ngx_vslprintf(p, last, fmt, args);
    va_end(args);

    if (err) {
        p = ngx_slprintf(p, last, " (%d: ", err);
        p = ngx_strerror(err, p, last - p);
        p = ngx_slprintf(p, last, ")");
    }

    save->error_len = p - save->error;
}
