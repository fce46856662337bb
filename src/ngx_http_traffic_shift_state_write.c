
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#include "ngx_http_traffic_shift_state.h"
#include "ngx_http_traffic_shift_zone.h"
#include "ngx_http_traffic_shift_lib.h"

#include <sys/file.h>


/*
 * Writes of the state file (its format: ngx_http_traffic_shift_state.c).
 * Workers write after every change made through the API; the worker that
 * drives the rollouts writes after the changes they make themselves (a
 * step, a rollback, a pause, the end; ngx_http_traffic_shift_rollout.c);
 * and one worker writes at its start when the zone moved since the last
 * write (a reload changed it).  Writers of all workers take an exclusive
 * lock on a side file and write the zone as it is then, unless a newer
 * zone version was written already: to a temporary file in the same
 * directory, synced, renamed over the old one, and the directory synced.
 * Workers do not block on the disk: the write runs in a thread pool of
 * one thread when nginx has threads, synchronously otherwise.  While a
 * write is under way a timer that is not cancelable keeps an exiting
 * worker alive, so that the change it saves is answered.
 */


static ngx_http_traffic_shift_state_save_t *
    ngx_http_traffic_shift_state_create(ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_pool_t *pool);
static void ngx_http_traffic_shift_state_background(
    ngx_http_traffic_shift_main_conf_t *mcf, ngx_log_t *log,
    ngx_uint_t changed);
static ngx_int_t ngx_http_traffic_shift_state_post(
    ngx_http_traffic_shift_state_save_t *save);
static void ngx_http_traffic_shift_state_finish(
    ngx_http_traffic_shift_state_save_t *save);
static void ngx_http_traffic_shift_state_synced(ngx_http_request_t *r,
    ngx_http_traffic_shift_state_save_t *save);
static void ngx_http_traffic_shift_state_write(
    ngx_http_traffic_shift_state_save_t *save);
static ngx_int_t ngx_http_traffic_shift_state_write_file(
    ngx_http_traffic_shift_state_save_t *save, u_char *data, size_t len);

#if (NGX_THREADS)

extern ngx_module_t  ngx_thread_pool_module;

static ngx_str_t  ngx_http_traffic_shift_state_pool =
    ngx_string("traffic_shift");

static void ngx_http_traffic_shift_state_thread(void *data, ngx_log_t *log);
static void ngx_http_traffic_shift_state_event(ngx_event_t *ev);
static void ngx_http_traffic_shift_state_wait(ngx_http_request_t *r);
static void ngx_http_traffic_shift_state_guard(ngx_event_t *ev);
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


/*
 * Writes the state file after a change made by request "r", then calls
 * done(r, save): at once if the write is synchronous (NGX_OK), or later
 * from the event loop (NGX_AGAIN).  NGX_ERROR: done() is not called.
 */

ngx_int_t
ngx_http_traffic_shift_state_save(ngx_http_request_t *r,
    ngx_http_traffic_shift_state_done_pt done, void *data)
{
    ngx_int_t                             rc;
    ngx_http_traffic_shift_main_conf_t   *mcf;
    ngx_http_traffic_shift_state_save_t  *save;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_traffic_shift_module);

    save = ngx_http_traffic_shift_state_create(mcf, r->pool);
    if (save == NULL) {
        return NGX_ERROR;
    }

    save->r = r;
    save->log = r->connection->log;
    save->done = done;
    save->data = data;

    rc = ngx_http_traffic_shift_state_post(save);

#if (NGX_THREADS)
    if (rc == NGX_AGAIN) {
        r->main->blocked++;
        r->aio = 1;
        r->write_event_handler = ngx_http_traffic_shift_state_wait;
    }
#endif

    return rc;
}


/*
 * At a worker's start: the first worker checks that the state file can be
 * written and writes it if a reload changed the zone since the last write.
 */

void
ngx_http_traffic_shift_state_init_process(ngx_cycle_t *cycle)
{
    ngx_http_traffic_shift_main_conf_t  *mcf;

    if (ngx_worker != 0
        || (ngx_process != NGX_PROCESS_WORKER
            && ngx_process != NGX_PROCESS_SINGLE))
    {
        return;
    }

    if (ngx_http_cycle_get_module_main_conf(cycle, ngx_http_module) == NULL) {
        return;
    }

    mcf = ngx_http_cycle_get_module_main_conf(cycle,
                                              ngx_http_traffic_shift_module);

    if (mcf == NULL || mcf->sh == NULL || mcf->state_file.len == 0) {
        return;
    }

    ngx_http_traffic_shift_state_check_dir(mcf, cycle->log, 1);

    if (mcf->sh->saved >= mcf->sh->version || mcf->sh->keep_file) {
        return;
    }

    ngx_http_traffic_shift_state_background(mcf, cycle->log, 0);
}


/*
 * A change made without a request (the rollout driver, the fast abort):
 * written like one made through the API, the outcome only logged.
 */

void
ngx_http_traffic_shift_state_save_change(
    ngx_http_traffic_shift_main_conf_t *mcf, ngx_log_t *log)
{
    if (mcf->sh == NULL || mcf->state_file.len == 0) {
        return;
    }

    ngx_http_traffic_shift_state_background(mcf, log, 1);
}


static void
ngx_http_traffic_shift_state_background(
    ngx_http_traffic_shift_main_conf_t *mcf, ngx_log_t *log,
    ngx_uint_t changed)
{
    ngx_pool_t                           *pool;
    ngx_http_traffic_shift_state_save_t  *save;

    pool = ngx_create_pool(1024, log);
    if (pool == NULL) {
        return;
    }

    save = ngx_http_traffic_shift_state_create(mcf, pool);
    if (save == NULL) {
        ngx_destroy_pool(pool);
        return;
    }

    save->pool = pool;
    save->log = log;
    save->changed = changed;
    save->done = ngx_http_traffic_shift_state_synced;

    (void) ngx_http_traffic_shift_state_post(save);
}


static ngx_http_traffic_shift_state_save_t *
ngx_http_traffic_shift_state_create(ngx_http_traffic_shift_main_conf_t *mcf,
    ngx_pool_t *pool)
{
    u_char                               *p;
    size_t                                len;
    ngx_http_traffic_shift_state_save_t  *save;
#if (NGX_THREADS)
    ngx_thread_task_t                    *task;

    task = ngx_thread_task_alloc(pool,
                                 sizeof(ngx_http_traffic_shift_state_save_t));
    if (task == NULL) {
        return NULL;
    }

    save = task->ctx;
    save->task = task;
#else
    save = ngx_pcalloc(pool, sizeof(ngx_http_traffic_shift_state_save_t));
    if (save == NULL) {
        return NULL;
    }
#endif

    save->mcf = mcf;
    save->file = mcf->state_file.data;

    len = mcf->state_file.len;

    save->temp = ngx_pnalloc(pool, 2 * (len + sizeof(".lock")) + len + 2);
    if (save->temp == NULL) {
        return NULL;
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

    return save;
}


/* NGX_AGAIN: done() is called from the event loop once written */

static ngx_int_t
ngx_http_traffic_shift_state_post(ngx_http_traffic_shift_state_save_t *save)
{
#if (NGX_THREADS)
    ngx_thread_pool_t  *tp;

    tp = ngx_thread_pool_get((ngx_cycle_t *) ngx_cycle,
                             &ngx_http_traffic_shift_state_pool);

    if (tp) {
        save->task->handler = ngx_http_traffic_shift_state_thread;
        save->task->event.data = save;
        save->task->event.handler = ngx_http_traffic_shift_state_event;

        if (ngx_thread_task_post(tp, save->task) == NGX_OK) {
            save->guard.handler = ngx_http_traffic_shift_state_guard;
            save->guard.data = save;
            save->guard.log = save->log;
            save->guard.cancelable = 0;

            ngx_add_timer(&save->guard, 1000);

            return NGX_AGAIN;
        }
    }
#endif

    ngx_http_traffic_shift_state_write(save);
    ngx_http_traffic_shift_state_finish(save);

    return NGX_OK;
}


static void
ngx_http_traffic_shift_state_finish(ngx_http_traffic_shift_state_save_t *save)
{
    if (save->rc != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, save->log, 0,
                      "traffic_shift_state: %*s%s", save->error_len,
                      save->error,
                      (save->r || save->changed)
                      ? ", the change is live but not saved" : "");
    }

    save->done(save->r, save);
}


/* a write made without a request is over */

static void
ngx_http_traffic_shift_state_synced(ngx_http_request_t *r,
    ngx_http_traffic_shift_state_save_t *save)
{
    ngx_destroy_pool(save->pool);
}


#if (NGX_THREADS)

/* the write is under way: the worker waits for it, even when exiting */

static void
ngx_http_traffic_shift_state_guard(ngx_event_t *ev)
{
    ngx_add_timer(ev, 1000);
}


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

    if (save->guard.timer_set) {
        ngx_del_timer(&save->guard);
    }

    if (r == NULL) {
        ngx_http_traffic_shift_state_finish(save);
        return;
    }

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


/* in the thread: nothing here may use the request or a pool */

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

    if (sh->retired
        || sh->saved >= version
        || (save->r == NULL && !save->changed && sh->keep_file))
    {
        /*
         * the workers of a newer zone write its state; a writer in another
         * worker saved this change or a newer one; a file that was invalid
         * at start is kept until a change is made
         */
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
        sh->keep_file = 0;
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


