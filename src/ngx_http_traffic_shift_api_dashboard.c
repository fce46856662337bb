
/*
 * Copyright (C) nginx-traffic-shift developers
 */


#include "ngx_http_traffic_shift_api_dashboard.h"

/* generated into nginx's objs/ by src/dashboard/embed */
#include "ngx_http_traffic_shift_dashboard.h"


#define NGX_HTTP_TS_DASHBOARD_CSP                                             \
    "default-src 'none'; script-src 'self'; style-src 'self'; "               \
    "connect-src 'self'; img-src data:; frame-ancestors 'none'; "             \
    "base-uri 'none'; form-action 'none'"


typedef struct {
    ngx_str_t     name;
    ngx_str_t     type;
    u_char       *data;
    size_t        len;
} ngx_http_traffic_shift_dashboard_file_t;


static ngx_http_traffic_shift_dashboard_file_t
    ngx_http_traffic_shift_dashboard_files[] = {

    { ngx_string("dashboard"), ngx_string("text/html; charset=utf-8"),
      ngx_http_traffic_shift_dashboard_html,
      sizeof(ngx_http_traffic_shift_dashboard_html) },

    { ngx_string("dashboard.css"), ngx_string("text/css; charset=utf-8"),
      ngx_http_traffic_shift_dashboard_css,
      sizeof(ngx_http_traffic_shift_dashboard_css) },

    { ngx_string("dashboard.js"),
      ngx_string("application/javascript; charset=utf-8"),
      ngx_http_traffic_shift_dashboard_js,
      sizeof(ngx_http_traffic_shift_dashboard_js) },

    { ngx_null_string, ngx_null_string, NULL, 0 }
};


static ngx_int_t ngx_http_traffic_shift_dashboard_send(ngx_http_request_t *r,
    ngx_http_traffic_shift_dashboard_file_t *file);
static ngx_int_t ngx_http_traffic_shift_dashboard_header(
    ngx_http_request_t *r, char *key, char *value);
static ngx_table_elt_t *ngx_http_traffic_shift_dashboard_find(
    ngx_http_request_t *r, char *name, size_t len);


/*
 * GET LOCATION/dashboard, LOCATION/dashboard.css, LOCATION/dashboard.js,
 * and LOCATION/ asked for by a browser (Accept with "text/html"); any
 * other request: NGX_DECLINED, for the API.  The index answer varies by
 * Accept, the JSON one too.
 */

ngx_int_t
ngx_http_traffic_shift_api_dashboard(ngx_http_request_t *r)
{
    u_char                                   *p, *last;
    ngx_table_elt_t                          *accept;
    ngx_http_core_loc_conf_t                 *clcf;
    ngx_http_traffic_shift_dashboard_file_t  *file;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_DECLINED;
    }

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

    if (p == last) {

        /* the index: the page for a browser, JSON for everyone else */

        if (ngx_http_traffic_shift_dashboard_header(r, "Vary", "Accept")
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        accept = ngx_http_traffic_shift_dashboard_find(r, "Accept",
                                                       sizeof("Accept") - 1);

        if (accept == NULL
            || ngx_strlcasestrn(accept->value.data,
                                accept->value.data + accept->value.len,
                                (u_char *) "text/html",
                                sizeof("text/html") - 2)
               == NULL)
        {
            return NGX_DECLINED;
        }

        return ngx_http_traffic_shift_dashboard_send(r,
                                  &ngx_http_traffic_shift_dashboard_files[0]);
    }

    for (file = ngx_http_traffic_shift_dashboard_files; file->len; file++) {
        if ((size_t) (last - p) == file->name.len
            && ngx_strncmp(p, file->name.data, file->name.len) == 0)
        {
            return ngx_http_traffic_shift_dashboard_send(r, file);
        }
    }

    return NGX_DECLINED;
}


static ngx_int_t
ngx_http_traffic_shift_dashboard_send(ngx_http_request_t *r,
    ngx_http_traffic_shift_dashboard_file_t *file)
{
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    rc = ngx_http_discard_request_body(r);

    if (rc != NGX_OK) {
        return rc;
    }

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_type = file->type;
    r->headers_out.content_type_len = file->type.len;
    r->headers_out.content_type_lowcase = NULL;
    r->headers_out.content_length_n = file->len;

    /* the page is small, and must follow an upgrade of the module */

    if (ngx_http_traffic_shift_dashboard_header(r, "Cache-Control",
                                                "no-store")
           != NGX_OK
        || ngx_http_traffic_shift_dashboard_header(r,
                                                "Content-Security-Policy",
                                                NGX_HTTP_TS_DASHBOARD_CSP)
           != NGX_OK
        || ngx_http_traffic_shift_dashboard_header(r,
                                                "X-Content-Type-Options",
                                                "nosniff")
           != NGX_OK
        || ngx_http_traffic_shift_dashboard_header(r, "X-Frame-Options",
                                                "DENY")
           != NGX_OK
        || ngx_http_traffic_shift_dashboard_header(r, "Referrer-Policy",
                                                "no-referrer")
           != NGX_OK
        || ngx_http_traffic_shift_dashboard_header(r,
                                                "Cross-Origin-Resource-Policy",
                                                "same-origin")
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->pos = file->data;
    b->last = file->data + file->len;
    b->memory = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/*
 * A change sent by a browser must say so with "X-Traffic-Shift": a page of
 * another site cannot add that header without a CORS preflight, which the
 * API never approves.  A browser says it is one with "Origin" or
 * "Sec-Fetch-Site"; the latter, when present, must also be "same-origin"
 * (or "none", typed by the user).  Scripts (curl, the CLI) send neither,
 * and need nothing.
 */

ngx_int_t
ngx_http_traffic_shift_api_cross_site(ngx_http_request_t *r,
    ngx_http_traffic_shift_api_err_t *err)
{
    ngx_table_elt_t  *site, *origin, *mark;

    site = ngx_http_traffic_shift_dashboard_find(r, "Sec-Fetch-Site",
                                         sizeof("Sec-Fetch-Site") - 1);

    if (site
        && !(site->value.len == sizeof("same-origin") - 1
             && ngx_strncasecmp(site->value.data, (u_char *) "same-origin",
                                site->value.len)
                == 0)
        && !(site->value.len == sizeof("none") - 1
             && ngx_strncasecmp(site->value.data, (u_char *) "none",
                                site->value.len)
                == 0))
    {
        return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_FORBIDDEN,
                                               "cross_site",
                                               "a change sent from another "
                                               "site is refused "
                                               "(Sec-Fetch-Site: %V)",
                                               &site->value);
    }

    origin = ngx_http_traffic_shift_dashboard_find(r, "Origin",
                                                   sizeof("Origin") - 1);

    if (site == NULL && origin == NULL) {
        return NGX_OK;
    }

    mark = ngx_http_traffic_shift_dashboard_find(r, "X-Traffic-Shift",
                                         sizeof("X-Traffic-Shift") - 1);

    if (mark == NULL || mark->value.len == 0) {
        return ngx_http_traffic_shift_api_fail(err, NGX_HTTP_FORBIDDEN,
                                               "cross_site",
                                               "a change sent by a browser "
                                               "must carry the header "
                                               "\"X-Traffic-Shift: 1\"");
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_traffic_shift_dashboard_header(ngx_http_request_t *r, char *key,
    char *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) key;
    h->key.len = ngx_strlen(key);
    h->value.data = (u_char *) value;
    h->value.len = ngx_strlen(value);
    ngx_http_traffic_shift_header_init(h);

    return NGX_OK;
}


/* a request header by name; the first one if sent twice */

static ngx_table_elt_t *
ngx_http_traffic_shift_dashboard_find(ngx_http_request_t *r, char *name,
    size_t len)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NULL;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == len
            && ngx_strncasecmp(h[i].key.data, (u_char *) name, len) == 0)
        {
            return &h[i];
        }
    }
}
