
/*
 * Copyright (C) nginx-traffic-shift developers
 */


/*
 * The few nginx core functions and globals the fuzzed code calls, for a
 * build without nginx's objects (the Debian nginx-dev package ships only
 * its headers).  Each follows nginx's documented behaviour for the inputs
 * the module gives it; a format this formatter does not know aborts, so
 * that a fuzz run reports it instead of hiding a difference.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


ngx_module_t  ngx_http_core_module = { 0, 0 };
ngx_module_t  ngx_http_traffic_shift_module = { 1, 1 };

static ngx_time_t      ngx_fuzz_time = { 1700000000, 0, 0 };
volatile ngx_time_t   *ngx_cached_time = &ngx_fuzz_time;

static ngx_log_t       ngx_fuzz_log;
static ngx_cycle_t     ngx_fuzz_cycle = { .log = &ngx_fuzz_log };
volatile ngx_cycle_t  *ngx_cycle = &ngx_fuzz_cycle;


static u_char *ngx_fuzz_number(u_char *buf, u_char *last, uint64_t ui64,
    ngx_uint_t negative, u_char zero, ngx_uint_t width, ngx_uint_t hex);


u_char *
ngx_vslprintf(u_char *buf, u_char *last, const char *fmt, va_list args)
{
    u_char      *p, zero;
    size_t       slen;
    int64_t      i64;
    uint64_t     ui64;
    ngx_str_t   *v;
    ngx_uint_t   width, sign, hex, negative;

    while (*fmt && buf < last) {

        if (*fmt != '%') {
            *buf++ = *fmt++;
            continue;
        }

        fmt++;

        zero = (u_char) ((*fmt == '0') ? '0' : ' ');
        width = 0;
        sign = 1;
        hex = 0;
        slen = (size_t) -1;

        while (*fmt >= '0' && *fmt <= '9') {
            width = width * 10 + (*fmt++ - '0');
        }

        for ( ;; ) {
            switch (*fmt) {

            case 'u':
                sign = 0;
                fmt++;
                continue;

            case 'x':
                hex = 1;
                sign = 0;
                fmt++;
                continue;

            case '*':
                slen = va_arg(args, size_t);
                fmt++;
                continue;

            default:
                break;
            }

            break;
        }

        switch (*fmt) {

        case 'V':
            v = va_arg(args, ngx_str_t *);
            slen = ngx_min((size_t) (last - buf), v->len);
            buf = ngx_cpymem(buf, v->data, slen);
            fmt++;
            continue;

        case 's':
            p = va_arg(args, u_char *);

            if (slen == (size_t) -1) {
                while (*p && buf < last) {
                    *buf++ = *p++;
                }

            } else {
                slen = ngx_min((size_t) (last - buf), slen);
                buf = ngx_cpymem(buf, p, slen);
            }

            fmt++;
            continue;

        case 'c':
            *buf++ = (u_char) va_arg(args, int);
            fmt++;
            continue;

        case '%':
            *buf++ = '%';
            fmt++;
            continue;

        case 'd':
            if (sign) {
                i64 = (int64_t) va_arg(args, int);

            } else {
                i64 = (int64_t) va_arg(args, u_int);
            }

            break;

        case 'i':
            if (sign) {
                i64 = (int64_t) va_arg(args, ngx_int_t);

            } else {
                i64 = (int64_t) va_arg(args, ngx_uint_t);
            }

            break;

        case 'z':
            if (sign) {
                i64 = (int64_t) va_arg(args, ssize_t);

            } else {
                i64 = (int64_t) va_arg(args, size_t);
            }

            break;

        case 'l':
            if (sign) {
                i64 = (int64_t) va_arg(args, long);

            } else {
                i64 = (int64_t) va_arg(args, u_long);
            }

            break;

        case 'T':
            i64 = (int64_t) va_arg(args, time_t);
            break;

        default:
            /* a format this shim does not implement */
            abort();
        }

        fmt++;
        negative = 0;

        if (sign && i64 < 0) {
            negative = 1;
            ui64 = (uint64_t) -(i64 + 1) + 1;

        } else {
            ui64 = (uint64_t) i64;
        }

        buf = ngx_fuzz_number(buf, last, ui64, negative, zero, width, hex);
    }

    return buf;
}


static u_char *
ngx_fuzz_number(u_char *buf, u_char *last, uint64_t ui64,
    ngx_uint_t negative, u_char zero, ngx_uint_t width, ngx_uint_t hex)
{
    u_char      *p, temp[32];
    size_t       len;
    ngx_uint_t   base;

    if (negative && buf < last) {
        *buf++ = '-';
    }

    base = hex ? 16 : 10;
    p = temp + sizeof(temp);

    do {
        *--p = "0123456789abcdef"[ui64 % base];
        ui64 /= base;
    } while (ui64);

    len = (temp + sizeof(temp)) - p;

    while (len < width-- && buf < last) {
        *buf++ = zero;
    }

    len = ngx_min((size_t) (last - buf), len);

    return ngx_cpymem(buf, p, len);
}


u_char * ngx_cdecl
ngx_sprintf(u_char *buf, const char *fmt, ...)
{
    u_char   *p;
    va_list   args;

    va_start(args, fmt);
    p = ngx_vslprintf(buf, (void *) -1, fmt, args);
    va_end(args);

    return p;
}


u_char * ngx_cdecl
ngx_snprintf(u_char *buf, size_t max, const char *fmt, ...)
{
    u_char   *p;
    va_list   args;

    va_start(args, fmt);
    p = ngx_vslprintf(buf, buf + max, fmt, args);
    va_end(args);

    return p;
}


u_char * ngx_cdecl
ngx_slprintf(u_char *buf, u_char *last, const char *fmt, ...)
{
    u_char   *p;
    va_list   args;

    va_start(args, fmt);
    p = ngx_vslprintf(buf, last, fmt, args);
    va_end(args);

    return p;
}


ngx_int_t
ngx_atoi(u_char *line, size_t n)
{
    ngx_int_t  value, cutoff, cutlim;

    if (n == 0) {
        return NGX_ERROR;
    }

    cutoff = NGX_MAX_INT_T_VALUE / 10;
    cutlim = NGX_MAX_INT_T_VALUE % 10;

    for (value = 0; n--; line++) {
        if (*line < '0' || *line > '9') {
            return NGX_ERROR;
        }

        if (value >= cutoff && (value > cutoff || *line - '0' > cutlim)) {
            return NGX_ERROR;
        }

        value = value * 10 + (*line - '0');
    }

    return value;
}


ngx_int_t
ngx_hextoi(u_char *line, size_t n)
{
    u_char     c, ch;
    ngx_int_t  value, cutoff;

    if (n == 0) {
        return NGX_ERROR;
    }

    cutoff = NGX_MAX_INT_T_VALUE / 16;

    for (value = 0; n--; line++) {
        if (value > cutoff) {
            return NGX_ERROR;
        }

        ch = *line;

        if (ch >= '0' && ch <= '9') {
            value = value * 16 + (ch - '0');
            continue;
        }

        c = (u_char) (ch | 0x20);

        if (c >= 'a' && c <= 'f') {
            value = value * 16 + (c - 'a' + 10);
            continue;
        }

        return NGX_ERROR;
    }

    return value;
}


/* messages are formatted as nginx would, then dropped */

void ngx_cdecl
ngx_log_error_core(ngx_uint_t level, ngx_log_t *log, ngx_err_t err,
    const char *fmt, ...)
{
    u_char   errstr[NGX_MAX_ERROR_STR];
    va_list  args;

    va_start(args, fmt);
    (void) ngx_vslprintf(errstr, errstr + NGX_MAX_ERROR_STR, fmt, args);
    va_end(args);
}


void *
ngx_alloc(size_t size, ngx_log_t *log)
{
    return malloc(size);
}


/*
 * Fixed point: digits with at most one point, "point" decimals at most,
 * scaled to exactly "point" decimals; NGX_ERROR otherwise or on overflow.
 */

ngx_int_t
ngx_atofp(u_char *line, size_t n, size_t point)
{
    size_t      i, decimals;
    ngx_int_t   value;
    ngx_uint_t  seen_point;

    if (n == 0) {
        return NGX_ERROR;
    }

    value = 0;
    decimals = 0;
    seen_point = 0;

    for (i = 0; i < n; i++) {

        if (line[i] == '.') {
            if (seen_point) {
                return NGX_ERROR;
            }

            seen_point = 1;
            continue;
        }

        if (line[i] < '0' || line[i] > '9') {
            return NGX_ERROR;
        }

        if (seen_point && ++decimals > point) {
            return NGX_ERROR;
        }

        if (value > (NGX_MAX_INT_T_VALUE - 9) / 10) {
            return NGX_ERROR;
        }

        value = value * 10 + (line[i] - '0');
    }

    for ( /* void */ ; decimals < point; decimals++) {
        if (value > NGX_MAX_INT_T_VALUE / 10) {
            return NGX_ERROR;
        }

        value *= 10;
    }

    return value;
}


/* nginx's broken-down time: a full year and months from 1 */

void
ngx_gmtime(time_t t, ngx_tm_t *tp)
{
    struct tm  tm;

    (void) gmtime_r(&t, &tm);

    tp->ngx_tm_sec = tm.tm_sec;
    tp->ngx_tm_min = tm.tm_min;
    tp->ngx_tm_hour = tm.tm_hour;
    tp->ngx_tm_mday = tm.tm_mday;
    tp->ngx_tm_mon = tm.tm_mon + 1;
    tp->ngx_tm_year = tm.tm_year + 1900;
    tp->ngx_tm_wday = tm.tm_wday;
}


/*
 * nginx's documented time syntax: numbers with units in descending order,
 * optionally separated by spaces ("1h 30m", "500ms", "2s"); a number
 * without a unit is seconds.  "is_sec": the result in seconds, and no "ms";
 * otherwise in milliseconds, and no "y" or "M".  NGX_ERROR on anything
 * else or on overflow.
 */

ngx_int_t
ngx_parse_time(ngx_str_t *line, ngx_uint_t is_sec)
{
    u_char      *p, *last;
    size_t       len;
    int64_t      value, total, scale;
    ngx_uint_t   i, rank, digits;

    static const struct {
        const char  *name;
        int64_t      ms;
    } units[] = {
        { "y", 365LL * 86400000 },
        { "M", 30LL * 86400000 },
        { "w", 7LL * 86400000 },
        { "d", 86400000 },
        { "h", 3600000 },
        { "ms", 1 },
        { "m", 60000 },
        { "s", 1000 }
    };

    /* the order units must come in: "ms" is the smallest */
    static const ngx_uint_t  order[] = { 0, 1, 2, 3, 4, 7, 5, 6 };

    p = line->data;
    last = p + line->len;
    total = 0;
    rank = 0;
    digits = 0;
    value = 0;

    while (p < last) {

        if (*p == ' ') {
            if (digits) {
                return NGX_ERROR;
            }

            p++;
            continue;
        }

        if (*p >= '0' && *p <= '9') {
            if (value > (INT64_MAX / 1000 - 9) / 10) {
                return NGX_ERROR;
            }

            value = value * 10 + (*p++ - '0');
            digits++;
            continue;
        }

        if (digits == 0) {
            return NGX_ERROR;
        }

        for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
            len = ngx_strlen(units[i].name);

            if ((size_t) (last - p) >= len
                && ngx_strncmp(p, units[i].name, len) == 0
                && (len == 2 || i != 6 || last - p < 2 || p[1] != 's'))
            {
                break;
            }
        }

        if (i == sizeof(units) / sizeof(units[0])
            || order[i] < rank
            || (is_sec && i == 5)
            || (!is_sec && i <= 1))
        {
            return NGX_ERROR;
        }

        rank = order[i] + 1;
        p += ngx_strlen(units[i].name);

        scale = is_sec ? units[i].ms / 1000 : units[i].ms;

        if (value > (INT64_MAX - total) / (scale ? scale : 1)) {
            return NGX_ERROR;
        }

        total += value * scale;
        value = 0;
        digits = 0;
    }

    if (digits) {
        /* a number without a unit: seconds, after any other unit */

        if (rank > order[7]) {
            return NGX_ERROR;
        }

        scale = is_sec ? 1 : 1000;

        if (value > (INT64_MAX - total) / scale) {
            return NGX_ERROR;
        }

        total += value * scale;
    }

    if (total > NGX_MAX_INT_T_VALUE) {
        return NGX_ERROR;
    }

    return (ngx_int_t) total;
}
