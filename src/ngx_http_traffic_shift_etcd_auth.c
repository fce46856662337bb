
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#include "ngx_http_traffic_shift_etcd_auth.h"


/*
 * etcd's user and password authentication (see the header): the password
 * read from its file when the configuration is loaded, the authenticate
 * request's body, its answer, and what etcd says of a token.  The HTTP is
 * the etcd client's (ngx_http_traffic_shift_etcd.c), which calls these.
 */


#define NGX_HTTP_TS_ETCD_PASSWORD_MAX  4096


static ngx_int_t ngx_http_traffic_shift_etcd_auth_read(ngx_conf_t *cf,
    ngx_str_t *file, ngx_str_t *password);
static ngx_uint_t ngx_http_traffic_shift_etcd_auth_says(json_t *json,
    const char *key, const char *what);


/*
 * user=NAME and password_file=FILE of traffic_shift_sync: both or
 * neither; "password" is the file's content without its trailing newline,
 * empty without authentication
 */

char *
ngx_http_traffic_shift_etcd_auth_conf(ngx_conf_t *cf, ngx_str_t *user,
    ngx_str_t *password_file, ngx_str_t *password)
{
    u_char  *p;

    ngx_str_null(password);

    if (user->len == 0 && password_file->len == 0) {
        return NGX_CONF_OK;
    }

    if (password_file->len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "user= of traffic_shift_sync needs "
                           "password_file=FILE, the file with the user's "
                           "password");
        return NGX_CONF_ERROR;
    }

    if (user->len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "password_file= of traffic_shift_sync needs "
                           "user=NAME");
        return NGX_CONF_ERROR;
    }

    for (p = user->data; p < user->data + user->len; p++) {
        if (*p < 0x21 || *p == 0x7f) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid user \"%V\" in traffic_shift_sync",
                               user);
            return NGX_CONF_ERROR;
        }
    }

    if (ngx_http_traffic_shift_etcd_auth_read(cf, password_file, password)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_traffic_shift_etcd_auth_read(ngx_conf_t *cf, ngx_str_t *file,
    ngx_str_t *password)
{
    off_t            size;
    ssize_t          n;
    ngx_err_t        err;
    ngx_int_t        rc;
    ngx_file_t       f;
    ngx_file_info_t  fi;

    if (ngx_conf_full_name(cf->cycle, file, 1) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_memzero(&f, sizeof(ngx_file_t));

    f.name = *file;
    f.log = cf->log;

    f.fd = ngx_open_file(file->data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (f.fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "cannot open password_file \"%V\" of "
                           "traffic_shift_sync", file);
        return NGX_ERROR;
    }

    rc = NGX_ERROR;

    if (ngx_fd_info(f.fd, &fi) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "cannot read password_file \"%V\" of "
                           "traffic_shift_sync", file);
        goto done;
    }

    size = ngx_file_size(&fi);

    if (size > NGX_HTTP_TS_ETCD_PASSWORD_MAX) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "password_file \"%V\" of traffic_shift_sync is "
                           "larger than %d bytes", file,
                           NGX_HTTP_TS_ETCD_PASSWORD_MAX);
        goto done;
    }

    password->data = ngx_pnalloc(cf->pool, (size_t) size + 1);
    if (password->data == NULL) {
        goto done;
    }

    n = ngx_read_file(&f, password->data, (size_t) size, 0);

    if (n == NGX_ERROR || n != size) {
        err = (n == NGX_ERROR) ? ngx_errno : 0;
        ngx_conf_log_error(NGX_LOG_EMERG, cf, err,
                           "cannot read password_file \"%V\" of "
                           "traffic_shift_sync", file);
        goto done;
    }

    /* the trailing newline of an editor or of echo is not the password's */

    while (n > 0
           && (password->data[n - 1] == LF || password->data[n - 1] == CR))
    {
        n--;
    }

    password->len = n;

    if (n == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "empty password_file \"%V\" of "
                           "traffic_shift_sync", file);
        goto done;
    }

    rc = NGX_OK;

done:

    if (ngx_close_file(f.fd) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_ALERT, cf->log, ngx_errno,
                      ngx_close_file_n " \"%V\" failed", file);
    }

    return rc;
}


/* one per endpoint: the user and the password shared, the token its own */

ngx_http_traffic_shift_etcd_auth_t *
ngx_http_traffic_shift_etcd_auth_create(ngx_pool_t *pool, ngx_str_t *user,
    ngx_str_t *password)
{
    ngx_http_traffic_shift_etcd_auth_t  *auth;

    auth = ngx_pcalloc(pool, sizeof(ngx_http_traffic_shift_etcd_auth_t));
    if (auth == NULL) {
        return NULL;
    }

    auth->token = ngx_pnalloc(pool, NGX_HTTP_TS_ETCD_TOKEN_MAX);
    if (auth->token == NULL) {
        return NULL;
    }

    auth->user = *user;
    auth->password = *password;

    return auth;
}


/* {"name": USER, "password": PASSWORD}, in the pool */

ngx_int_t
ngx_http_traffic_shift_etcd_auth_body(ngx_pool_t *pool,
    ngx_http_traffic_shift_etcd_auth_t *auth, ngx_str_t *body)
{
    char    *s;
    json_t  *json;

    json = json_pack("{s:s%,s:s%}",
                     "name", (char *) auth->user.data, auth->user.len,
                     "password", (char *) auth->password.data,
                     auth->password.len);
    if (json == NULL) {
        return NGX_ERROR;
    }

    s = json_dumps(json, JSON_COMPACT);
    json_decref(json);

    if (s == NULL) {
        return NGX_ERROR;
    }

    body->len = ngx_strlen(s);
    body->data = ngx_pnalloc(pool, body->len);

    if (body->data) {
        ngx_memcpy(body->data, s, body->len);
    }

    ngx_explicit_memzero(s, body->len);
    free(s);

    return body->data ? NGX_OK : NGX_ERROR;
}


/*
 * the answer to the authenticate request: NULL with the token kept, or
 * what went wrong; a refused user is logged once until it is taken again
 */

const char *
ngx_http_traffic_shift_etcd_auth_token(
    ngx_http_traffic_shift_etcd_auth_t *auth, ngx_uint_t status, json_t *json,
    ngx_log_t *log, ngx_str_t *name)
{
    u_char      *p;
    size_t       len;
    json_t      *token;
    const char  *error, *s;

    auth->token_len = 0;

    token = json_object_get(json, "token");

    if (status == NGX_HTTP_OK && json_is_string(token)) {
        s = json_string_value(token);
        len = json_string_length(token);

        for (p = (u_char *) s; p < (u_char *) s + len; p++) {
            if (*p < 0x21 || *p == 0x7f) {
                break;
            }
        }

        if (len == 0 || len > NGX_HTTP_TS_ETCD_TOKEN_MAX
            || p != (u_char *) s + len)
        {
            /* not to be sent in a header, and not logged */
            return "invalid token";
        }

        ngx_memcpy(auth->token, s, len);
        auth->token_len = len;

        if (auth->refused) {
            ngx_log_error(NGX_LOG_NOTICE, log, 0,
                          "traffic_shift_sync: etcd \"%V\" accepts user "
                          "\"%V\" again", name, &auth->user);
            auth->refused = 0;
        }

        return NULL;
    }

    /* etcd's own words, unless they are "authentication failed" */
    s = json_string_value(json_object_get(json, "error"));

    if (ngx_http_traffic_shift_etcd_auth_says(json, "error",
                                              "authentication failed"))
    {
        error = "authentication failed";
        s = NULL;

    } else if (status == NGX_HTTP_OK) {
        error = "invalid response";

    } else {
        error = "authentication refused";
    }

    if (!auth->refused) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "traffic_shift_sync: etcd \"%V\" refused user \"%V\": "
                      "%s%s%s%s", name, &auth->user, error,
                      s ? " (" : "", s ? s : "", s ? ")" : "");
        auth->refused = 1;
    }

    return error;
}


/*
 * what etcd says of a request that carried a token: 401 (or, for a watch,
 * its cancel) for an invalid or expired token, 403 for a permission
 */

ngx_uint_t
ngx_http_traffic_shift_etcd_auth_check(ngx_uint_t status, json_t *json)
{
    json_t  *result;

    if (status == NGX_HTTP_UNAUTHORIZED) {
        return NGX_HTTP_TS_ETCD_AUTH_EXPIRED;
    }

    if (status == NGX_HTTP_FORBIDDEN) {
        return NGX_HTTP_TS_ETCD_AUTH_DENIED;
    }

    result = json_object_get(json, "result");

    if (result == NULL || !json_is_true(json_object_get(result, "canceled"))) {
        return NGX_HTTP_TS_ETCD_AUTH_OK;
    }

    if (ngx_http_traffic_shift_etcd_auth_says(result, "cancel_reason",
                                              "invalid auth token"))
    {
        return NGX_HTTP_TS_ETCD_AUTH_EXPIRED;
    }

    if (ngx_http_traffic_shift_etcd_auth_says(result, "cancel_reason",
                                              "permission denied"))
    {
        return NGX_HTTP_TS_ETCD_AUTH_DENIED;
    }

    return NGX_HTTP_TS_ETCD_AUTH_OK;
}


/* the string "key" of the object contains "what" */

static ngx_uint_t
ngx_http_traffic_shift_etcd_auth_says(json_t *json, const char *key,
    const char *what)
{
    json_t  *v;

    v = json_object_get(json, key);

    if (!json_is_string(v)) {
        return 0;
    }

    return ngx_strlcasestrn((u_char *) json_string_value(v),
                            (u_char *) json_string_value(v)
                            + json_string_length(v),
                            (u_char *) what, ngx_strlen(what) - 1)
           != NULL;
}
