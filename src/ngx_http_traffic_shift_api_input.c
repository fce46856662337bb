
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#include "ngx_http_traffic_shift_api.h"


/*
 * What clients send, parsed and checked without acting on it: the path of
 * a request, and the body of a change.  Every refusal fills the error
 * object.  The fuzz targets link this file as it is.
 */


#define NGX_HTTP_TS_API_SEGMENTS    4

/* a path segment is the word "lit" */
#define ngx_http_traffic_shift_api_is(s, lit)                                \
    ((s)->len == sizeof(lit) - 1                                             \
     && ngx_strncmp((s)->data, lit, sizeof(lit) - 1) == 0)


static ngx_int_t ngx_http_traffic_shift_api_segments(ngx_http_request_t *r,
    ngx_str_t *seg);
static ngx_int_t ngx_http_traffic_shift_api_raw_path(ngx_http_request_t *r);
static ngx_int_t ngx_http_traffic_shift_api_server(
    ngx_http_traffic_shift_upstream_t *ups, ngx_str_t *id, ngx_uint_t *index);
static ngx_str_t ngx_http_traffic_shift_api_quote(u_char *buf, u_char *p,
    size_t len);
static ngx_int_t ngx_http_traffic_shift_api_weights(
    ngx_http_traffic_shift_split_t *split, json_t *obj, ngx_uint_t *weights,
    ngx_http_traffic_shift_api_err_t *err);


/*
 * Paths are relative to the location: "", "upstreams", "upstreams/NAME",
 * "upstreams/NAME/rollout", "health", "health/UPSTREAM",
 * "health/UPSTREAM/servers/ID", "metrics", "fleet".
 */

ngx_int_t
ngx_http_traffic_shift_api_path(ngx_http_request_t *r,
    ngx_http_traffic_shift_api_path_t *path,
    ngx_http_traffic_shift_api_err_t *err)
{
    u_char                               buf[80];
    ngx_str_t                            seg[NGX_HTTP_TS_API_SEGMENTS], q;
    ngx_int_t                            n;
    ngx_http_traffic_shift_upstream_t   *ups;
    ngx_http_traffic_shift_main_conf_t  *mcf;

    ngx_memzero(path, sizeof(ngx_http_traffic_shift_api_path_t));

    if (ngx_http_traffic_shift_api_raw_path(r) != NGX_OK) {
        return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_BAD_REQUEST,
                                               "invalid_path",
                                               "the path has an encoded "
                                               "slash or a \".\" or \"..\" "
                                               "segment; names are matched "
                                               "as sent");
    }

    mcf = ngx_http_get_module_main_conf(r, ngx_http_traffic_shift_module);

    n = ngx_http_traffic_shift_api_segments(r, seg);

    if (n == NGX_ERROR) {
        goto not_found;
    }

    if (n == 0) {
        path->what = NGX_HTTP_TS_API_INDEX;
        return NGX_OK;
    }

    if (ngx_http_traffic_shift_api_is(&seg[0], "metrics")
        || ngx_http_traffic_shift_api_is(&seg[0], "fleet"))
    {
        if (n != 1) {
            goto not_found;
        }

        path->what = (seg[0].data[0] == 'm') ? NGX_HTTP_TS_API_METRICS
                                             : NGX_HTTP_TS_API_FLEET;
        return NGX_OK;
    }

    if (seg[0].len == sizeof("upstreams") - 1
        && ngx_strncmp(seg[0].data, "upstreams", seg[0].len) == 0)
    {
        if (n == 1) {
            path->what = NGX_HTTP_TS_API_UPSTREAMS;
            return NGX_OK;
        }

        if (n == 4
            || (n == 3
                && (seg[2].len != sizeof("rollout") - 1
                    || ngx_strncmp(seg[2].data, "rollout", seg[2].len) != 0)))
        {
            goto not_found;
        }

        path->split = ngx_http_traffic_shift_find_split(mcf, seg[1].data,
                                                        seg[1].len);

        if (path->split && path->split->sh) {
            path->what = (n == 3) ? NGX_HTTP_TS_API_ROLLOUT
                                  : NGX_HTTP_TS_API_UPSTREAM;
            return NGX_OK;
        }

        path->split = NULL;

        q = ngx_http_traffic_shift_api_quote(buf, seg[1].data, seg[1].len);

        return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_NOT_FOUND,
                                               "unknown_upstream",
                                               "no traffic_shift upstream "
                                               "\"%V\"", &q);
    }

    if (seg[0].len == sizeof("health") - 1
        && ngx_strncmp(seg[0].data, "health", seg[0].len) == 0)
    {
        if (n == 1) {
            path->what = NGX_HTTP_TS_API_HEALTH;
            return NGX_OK;
        }

        if (n == 3
            || (n == 4
                && (seg[2].len != sizeof("servers") - 1
                    || ngx_strncmp(seg[2].data, "servers", seg[2].len) != 0)))
        {
            goto not_found;
        }

        ups = ngx_http_traffic_shift_find_upstream(mcf, seg[1].data,
                                                   seg[1].len);

        if (ups == NULL || (ups->nservers && ups->servers[0].sh == NULL)) {
            q = ngx_http_traffic_shift_api_quote(buf, seg[1].data,
                                                 seg[1].len);

            return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_NOT_FOUND,
                                                   "unknown_upstream",
                                                   "no upstream \"%V\" with "
                                                   "tracked servers", &q);
        }

        path->ups = ups;

        if (n == 2) {
            path->what = NGX_HTTP_TS_API_HEALTH_UPS;
            return NGX_OK;
        }

        if (ngx_http_traffic_shift_api_server(ups, &seg[3], &path->id)
            != NGX_OK)
        {
            q = ngx_http_traffic_shift_api_quote(buf, seg[3].data,
                                                 seg[3].len);

            return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_NOT_FOUND,
                                                   "unknown_server",
                                                   "no server \"%V\" in "
                                                   "upstream \"%V\"", &q,
                                                   &ups->uscf->host);
        }

        path->what = NGX_HTTP_TS_API_SERVER;
        path->sh = ups->servers[path->id].sh;
        return NGX_OK;
    }

not_found:

    q = ngx_http_traffic_shift_api_quote(buf, r->uri.data, r->uri.len);

    return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_NOT_FOUND,
                                           "not_found",
                                           "no API resource \"%V\"", &q);
}

/* the segments of the path after the location: at most 4, none empty */

static ngx_int_t
ngx_http_traffic_shift_api_segments(ngx_http_request_t *r, ngx_str_t *seg)
{
    u_char                    *p, *last, *start;
    ngx_int_t                  n;
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    p = r->uri.data;
    last = p + r->uri.len;

    if (clcf->name.len <= r->uri.len
        && ngx_strncmp(p, clcf->name.data, clcf->name.len) == 0)
    {
        p += clcf->name.len;
    }

    if (p < last && *p == '/') {
        p++;
    }

    if (p < last && last[-1] == '/') {
        last--;
    }

    n = 0;

    while (p < last) {
        if (n == NGX_HTTP_TS_API_SEGMENTS) {
            return NGX_ERROR;
        }

        start = p;

        while (p < last && *p != '/') {
            p++;
        }

        seg[n].data = start;
        seg[n].len = p - start;

        if (seg[n].len == 0) {
            return NGX_ERROR;
        }

        n++;

        if (p < last) {
            p++;

            if (p == last) {
                return NGX_ERROR;
            }
        }
    }

    return n;
}

/*
 * nginx resolves "%2F", "." and ".." before the handler sees the URI: an
 * API path is taken as sent, so a path that has any of them is refused
 * rather than read as another resource.
 */

static ngx_int_t
ngx_http_traffic_shift_api_raw_path(ngx_http_request_t *r)
{
    u_char      *p, *last, c;
    ngx_int_t    hi, lo;
    ngx_uint_t   n, dots;

    p = r->unparsed_uri.data;
    last = p + r->unparsed_uri.len;

    n = 0;
    dots = 1;

    for ( ;; ) {

        if (p == last || *p == '?' || *p == '/') {

            if (n && n <= 2 && dots) {
                return NGX_DECLINED;
            }

            if (p == last || *p == '?') {
                return NGX_OK;
            }

            p++;
            n = 0;
            dots = 1;
            continue;
        }

        c = *p++;

        if (c == '%' && last - p >= 2) {
            hi = ngx_hextoi(p, 1);
            lo = ngx_hextoi(p + 1, 1);

            if (hi != NGX_ERROR && lo != NGX_ERROR) {
                c = (u_char) (hi * 16 + lo);
                p += 2;

                if (c == '/' || c == '\\' || c == '\0') {
                    return NGX_DECLINED;
                }
            }
        }

        n++;

        if (c != '.') {
            dots = 0;
        }
    }
}

/* a server by its index in the upstream, or by its address */

static ngx_int_t
ngx_http_traffic_shift_api_server(ngx_http_traffic_shift_upstream_t *ups,
    ngx_str_t *id, ngx_uint_t *index)
{
    ngx_int_t  n;

    if (id->len <= 5) {
        n = ngx_atoi(id->data, id->len);

        if (n != NGX_ERROR) {
            if ((ngx_uint_t) n >= ups->nservers) {
                return NGX_DECLINED;
            }

            *index = n;
            return NGX_OK;
        }
    }

    n = ngx_http_traffic_shift_find_server(ups, id->data, id->len);

    if (n == NGX_ERROR) {
        return NGX_DECLINED;
    }

    *index = n;

    return NGX_OK;
}


/*
 * The server a path named, found again after an event: the list of
 * resolved servers may have changed meanwhile.  NGX_DECLINED: its address
 * is no longer resolved.
 */

ngx_int_t
ngx_http_traffic_shift_api_server_again(ngx_http_traffic_shift_api_path_t *path)
{
    ngx_uint_t                          i;
    ngx_http_traffic_shift_upstream_t  *ups;

    ups = path->ups;

    if (path->id < ups->nservers && ups->servers[path->id].sh == path->sh) {
        return NGX_OK;
    }

    for (i = 0; i < ups->nservers; i++) {
        if (ups->servers[i].sh == path->sh) {
            path->id = i;
            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}

/* {"weights":{"blue":90,"green":10}} or {"active":"green"}, "force" */

ngx_int_t
ngx_http_traffic_shift_api_parse_weights(ngx_http_traffic_shift_split_t *split,
    json_t *root, ngx_uint_t *weights, ngx_uint_t *force,
    ngx_http_traffic_shift_api_err_t *err)
{
    u_char       buf[80];
    json_t      *value, *weights_obj, *active;
    ngx_int_t    w;
    ngx_str_t    q;
    ngx_uint_t   i, n;
    const char  *key;

    weights_obj = NULL;
    active = NULL;
    *force = 0;

    json_object_foreach(root, key, value) {

        if (ngx_strcmp(key, "weights") == 0) {
            if (!json_is_object(value)) {
                return ngx_http_traffic_shift_api_fail(err,
                                               NGX_HTTP_BAD_REQUEST,
                                               "invalid_type",
                                               "\"weights\" must be an object "
                                               "of pool names and "
                                               "percentages");
            }

            weights_obj = value;

        } else if (ngx_strcmp(key, "active") == 0) {
            if (!json_is_string(value)) {
                return ngx_http_traffic_shift_api_fail(err,
                                               NGX_HTTP_BAD_REQUEST,
                                               "invalid_type",
                                               "\"active\" must be a pool "
                                               "name");
            }

            active = value;

        } else if (ngx_strcmp(key, "force") == 0) {
            if (!json_is_boolean(value)) {
                return ngx_http_traffic_shift_api_fail(err,
                                               NGX_HTTP_BAD_REQUEST,
                                               "invalid_type",
                                               "\"force\" must be true or "
                                               "false");
            }

            *force = json_is_true(value);

        } else {
            q = ngx_http_traffic_shift_api_quote(buf, (u_char *) key,
                                                 ngx_strlen(key));

            return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_BAD_REQUEST,
                                               "unknown_field",
                                               "unknown field \"%V\", "
                                               "expected \"weights\" or "
                                               "\"active\", and \"force\"",
                                               &q);
        }
    }

    if (weights_obj && active) {
        return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_BAD_REQUEST,
                                               "conflicting_fields",
                                               "\"weights\" and \"active\" "
                                               "cannot be used together");
    }

    if (weights_obj == NULL && active == NULL) {
        return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_BAD_REQUEST,
                                               "missing_field",
                                               "the body must have "
                                               "\"weights\" or \"active\"");
    }

    n = split->pools.nelts;

    for (i = 0; i < n; i++) {
        weights[i] = 0;
    }

    if (active) {
        key = json_string_value(active);
        w = json_string_length(active);

        if (!ngx_http_traffic_shift_valid_name((u_char *) key, w)) {
            q = ngx_http_traffic_shift_api_quote(buf, (u_char *) key, w);

            return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_BAD_REQUEST,
                                               "invalid_name",
                                               "invalid pool name \"%V\", "
                                               "expected 1 to 32 of A-Z, "
                                               "a-z, 0-9, \"_\" and \"-\"",
                                               &q);
        }

        w = ngx_http_traffic_shift_find_pool(split, (u_char *) key, w);

        if (w != NGX_ERROR) {
            weights[w] = NGX_HTTP_TS_TOTAL;
            return NGX_OK;
        }

        return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_NOT_FOUND,
                                               "unknown_pool",
                                               "upstream \"%V\" has no pool "
                                               "\"%s\"", &split->name, key);
    }

    return ngx_http_traffic_shift_api_weights(split, weights_obj, weights,
                                              err);
}

/* {"blue":90,"green":10}: pools not named get 0, the total must be 100 */

static ngx_int_t
ngx_http_traffic_shift_api_weights(ngx_http_traffic_shift_split_t *split,
    json_t *obj, ngx_uint_t *weights, ngx_http_traffic_shift_api_err_t *err)
{
    u_char      *p, buf[80], total_text[16];
    json_t      *value;
    ngx_int_t    w;
    ngx_str_t    q;
    ngx_uint_t   i, total;
    const char  *key;

    total = 0;

    json_object_foreach(obj, key, value) {

        if (!ngx_http_traffic_shift_valid_name((u_char *) key,
                                               ngx_strlen(key)))
        {
            q = ngx_http_traffic_shift_api_quote(buf, (u_char *) key,
                                                 ngx_strlen(key));

            return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_BAD_REQUEST,
                                               "invalid_name",
                                               "invalid pool name \"%V\", "
                                               "expected 1 to 32 of A-Z, "
                                               "a-z, 0-9, \"_\" and \"-\"",
                                               &q);
        }

        i = ngx_http_traffic_shift_find_pool(split, (u_char *) key,
                                             ngx_strlen(key));

        if (i == (ngx_uint_t) NGX_ERROR) {
            return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_NOT_FOUND,
                                               "unknown_pool",
                                               "upstream \"%V\" has no pool "
                                               "\"%s\"", &split->name, key);
        }

        if (!json_is_number(value)) {
            return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_BAD_REQUEST,
                                               "invalid_type",
                                               "the weight of pool \"%s\" "
                                               "must be a number", key);
        }

        w = ngx_http_traffic_shift_json_to_weight(value);

        if (w == NGX_DECLINED) {
            return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_BAD_REQUEST,
                                               "invalid_weight",
                                               "the weight of pool \"%s\" has "
                                               "more than 2 decimals", key);
        }

        if (w < 0) {
            return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_BAD_REQUEST,
                                               "invalid_weight",
                                               "the weight of pool \"%s\" "
                                               "must be from 0 to 100", key);
        }

        weights[i] = w;
        total += w;
    }

    if (total != NGX_HTTP_TS_TOTAL) {
        p = ngx_http_traffic_shift_print_weight(total_text,
                                       ngx_min(total, 99999999));

        return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_BAD_REQUEST,
                                               "invalid_total",
                                               "the weights total %*s, they "
                                               "must total 100",
                                               p - total_text, total_text);
    }

    return NGX_OK;
}

ngx_int_t
ngx_http_traffic_shift_api_fail(ngx_http_traffic_shift_api_err_t *err,
    ngx_uint_t status, char *code, const char *fmt, ...)
{
    u_char   *p;
    va_list   args;

    err->status = status;
    err->code = code;

    va_start(args, fmt);
    p = ngx_vslprintf(err->text, err->text + NGX_HTTP_TS_API_TEXT_LEN, fmt,
                      args);
    va_end(args);

    err->len = p - err->text;

    return NGX_ERROR;
}

/* a name sent by the client, fit for a message: printable ASCII, short */

static ngx_str_t
ngx_http_traffic_shift_api_quote(u_char *buf, u_char *p, size_t len)
{
    size_t     i;
    ngx_str_t  s;

    s.data = buf;

    for (i = 0; i < len && i < NGX_HTTP_TS_API_QUOTE_LEN; i++) {
        buf[i] = (p[i] >= 0x20 && p[i] < 0x7f) ? p[i] : '?';
    }

    if (i < len) {
        buf[i++] = '.';
        buf[i++] = '.';
        buf[i++] = '.';
    }

    s.len = i;

    return s;
}


/* a change's body: a JSON object, or NULL with the error */

json_t *
ngx_http_traffic_shift_api_parse(ngx_str_t *body,
    ngx_http_traffic_shift_api_err_t *err)
{
    u_char        *p, buf[80];
    json_t        *root;
    ngx_str_t      q;
    json_error_t   error;

    root = json_loadb((char *) body->data, body->len, JSON_REJECT_DUPLICATES,
                      &error);

    if (root == NULL) {
        p = (u_char *) error.text;
        q = ngx_http_traffic_shift_api_quote(buf, p, ngx_strlen(p));

        switch (json_error_code(&error)) {

        case json_error_invalid_utf8:
            (void) ngx_http_traffic_shift_api_fail(err,
                                               NGX_HTTP_BAD_REQUEST,
                                               "invalid_utf8",
                                               "the body is not valid UTF-8 "
                                               "(line %d, column %d)",
                                               error.line, error.column);
            break;

        case json_error_duplicate_key:
            (void) ngx_http_traffic_shift_api_fail(err,
                                               NGX_HTTP_BAD_REQUEST,
                                               "duplicate_key",
                                               "the body repeats a key: %V "
                                               "(line %d, column %d)",
                                               &q, error.line, error.column);
            break;

        default:
            (void) ngx_http_traffic_shift_api_fail(err,
                                               NGX_HTTP_BAD_REQUEST,
                                               "invalid_json",
                                               "the body is not valid JSON: "
                                               "%V (line %d, column %d)",
                                               &q, error.line, error.column);
        }

        return NULL;
    }

    if (!json_is_object(root)) {
        json_decref(root);

        (void) ngx_http_traffic_shift_api_fail(err, NGX_HTTP_BAD_REQUEST,
                                               "invalid_type",
                                               "the body must be a JSON "
                                               "object");
        return NULL;
    }

    return root;
}


/* {"down":true} or {"down":false} */

ngx_int_t
ngx_http_traffic_shift_api_parse_down(json_t *root, ngx_uint_t *down,
    ngx_http_traffic_shift_api_err_t *err)
{
    u_char       buf[80];
    json_t      *value, *found;
    ngx_str_t    q;
    const char  *key;

    found = NULL;

    json_object_foreach(root, key, value) {

        if (ngx_strcmp(key, "down") != 0) {
            q = ngx_http_traffic_shift_api_quote(buf, (u_char *) key,
                                                 ngx_strlen(key));

            return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_BAD_REQUEST,
                                                   "unknown_field",
                                                   "unknown field \"%V\", "
                                                   "expected \"down\"", &q);
        }

        if (!json_is_boolean(value)) {
            return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_BAD_REQUEST,
                                                   "invalid_type",
                                                   "\"down\" must be true or "
                                                   "false");
        }

        found = value;
    }

    if (found == NULL) {
        return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_BAD_REQUEST,
                                               "missing_field",
                                               "the body must have \"down\": "
                                               "true or false");
    }

    *down = json_is_true(found);

    return NGX_OK;
}
