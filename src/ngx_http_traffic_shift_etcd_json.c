
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#include "ngx_http_traffic_shift_etcd.h"


/*
 * etcd's JSON as its v3 gateway wants it: byte strings in base64, 64-bit
 * numbers as strings, keys under the fleet's prefix and their ranges.
 * For the callers of the etcd client; the client itself does not use them.
 */


/* a byte string as etcd's JSON wants it: base64 */

json_t *
ngx_http_traffic_shift_etcd_b64(ngx_pool_t *pool, u_char *data, size_t len)
{
    ngx_str_t  src, dst;

    src.data = data;
    src.len = len;

    dst.data = ngx_pnalloc(pool, ngx_base64_encoded_length(len));
    if (dst.data == NULL) {
        return NULL;
    }

    ngx_encode_base64(&dst, &src);

    return json_stringn((char *) dst.data, dst.len);
}


ngx_int_t
ngx_http_traffic_shift_etcd_unb64(ngx_pool_t *pool, json_t *json,
    ngx_str_t *out)
{
    ngx_str_t  src;

    if (json == NULL) {
        out->len = 0;
        out->data = (u_char *) "";
        return NGX_OK;
    }

    if (!json_is_string(json)) {
        return NGX_ERROR;
    }

    src.data = (u_char *) json_string_value(json);
    src.len = json_string_length(json);

    out->data = ngx_pnalloc(pool, ngx_base64_decoded_length(src.len) + 1);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    return ngx_decode_base64(out, &src);
}


/* etcd's 64-bit numbers are JSON strings; absent is 0 */

ngx_int_t
ngx_http_traffic_shift_etcd_int(json_t *json, const char *key,
    uint64_t *value)
{
    off_t        n;
    json_t      *v;
    const char  *s;

    *value = 0;

    v = json ? json_object_get(json, key) : NULL;

    if (v == NULL) {
        return NGX_OK;
    }

    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        *value = json_integer_value(v);
        return NGX_OK;
    }

    if (!json_is_string(v)) {
        return NGX_ERROR;
    }

    s = json_string_value(v);

    n = ngx_atoof((u_char *) s, ngx_strlen(s));
    if (n < 0) {
        return NGX_ERROR;
    }

    *value = n;

    return NGX_OK;
}


/* a JSON document, compact, in the pool; the document is released */

ngx_int_t
ngx_http_traffic_shift_etcd_json(ngx_pool_t *pool, json_t *json,
    ngx_str_t *body)
{
    char  *s;

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

    free(s);

    return body->data ? NGX_OK : NGX_ERROR;
}


/* PREFIX + what + name */

ngx_int_t
ngx_http_traffic_shift_etcd_key(ngx_pool_t *pool, ngx_str_t *prefix,
    const char *what, ngx_str_t *name, ngx_str_t *key)
{
    u_char  *p;
    size_t   len;

    len = ngx_strlen(what);

    p = ngx_pnalloc(pool, prefix->len + len + name->len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    key->data = p;
    key->len = prefix->len + len + name->len;

    p = ngx_cpymem(p, prefix->data, prefix->len);
    p = ngx_cpymem(p, what, len);

    if (name->len) {
        ngx_memcpy(p, name->data, name->len);
    }

    return NGX_OK;
}


/*
 * {"key": PREFIX FROM, "range_end": PREFIX TO with its last byte + 1}:
 * every key from PREFIX FROM to the last under PREFIX TO (TO NULL: FROM),
 * for a range or a watch; NULL on failure
 */

json_t *
ngx_http_traffic_shift_etcd_range(ngx_pool_t *pool, ngx_str_t *prefix,
    const char *from, const char *to)
{
    ngx_str_t  key, end, none;

    ngx_str_null(&none);

    if (to == NULL) {
        to = from;
    }

    if (ngx_http_traffic_shift_etcd_key(pool, prefix, from, &none, &key)
        != NGX_OK
        || ngx_http_traffic_shift_etcd_key(pool, prefix, to, &none, &end)
           != NGX_OK
        || key.len == 0
        || end.len == 0)
    {
        return NULL;
    }

    end.data[end.len - 1]++;

    return json_pack("{s:o,s:o}",
                     "key", ngx_http_traffic_shift_etcd_b64(pool, key.data,
                                                            key.len),
                     "range_end", ngx_http_traffic_shift_etcd_b64(pool,
                                                                  end.data,
                                                                  end.len));
}
