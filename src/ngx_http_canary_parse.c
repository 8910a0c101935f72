
/*
 * Copyright (C) ngx_http_canary_module authors
 */


#include <string.h>

#include "ngx_http_canary_parse.h"


#define ngx_http_canary_isdigit(c)  ((c) >= '0' && (c) <= '9')


static int ngx_http_canary_parse_digits(const unsigned char *p, size_t n,
    int64_t *value);
static int64_t ngx_http_canary_days_from_civil(int64_t y, unsigned m,
    unsigned d);
static int ngx_http_canary_hex(unsigned char c);


int
ngx_http_canary_parse_decimal(const unsigned char *p, size_t len,
    size_t int_digits, size_t frac, uint64_t *value)
{
    size_t    i, dot, n;
    uint64_t  v;

    if (len == 0) {
        return -1;
    }

    v = 0;
    dot = len;

    for (i = 0; i < len; i++) {

        if (p[i] == '.') {
            if (dot != len || i == 0 || i == len - 1) {
                return -1;
            }

            dot = i;
            continue;
        }

        if (!ngx_http_canary_isdigit(p[i])) {
            return -1;
        }

        if (i >= int_digits + frac + 1) {
            /* more digits than any accepted value has */
            return -1;
        }

        v = v * 10 + (p[i] - '0');
    }

    n = (dot == len) ? 0 : len - dot - 1;

    if (dot > int_digits || n > frac) {
        return -1;
    }

    while (n++ < frac) {
        v *= 10;
    }

    *value = v;

    return 0;
}


int
ngx_http_canary_parse_percent(const unsigned char *p, size_t len,
    uint32_t *hundredths)
{
    uint64_t  v;

    if (ngx_http_canary_parse_decimal(p, len, 3, 2, &v) != 0 || v > 10000) {
        return -1;
    }

    *hundredths = (uint32_t) v;

    return 0;
}


int
ngx_http_canary_parse_weight(const unsigned char *p, size_t len,
    uint32_t *weight)
{
    uint64_t  v;

    if (ngx_http_canary_parse_decimal(p, len, 5, 0, &v) != 0 || v > 10000) {
        return -1;
    }

    *weight = (uint32_t) v;

    return 0;
}


int
ngx_http_canary_parse_time(const unsigned char *p, size_t len, time_t *t)
{
    int64_t  v, year, mon, day, hour, min, sec;

    if (len == 0) {
        return -1;
    }

    if (len <= 12 && ngx_http_canary_parse_digits(p, len, &v) == 0) {
        *t = (time_t) v;
        return 0;
    }

    /* YYYY-MM-DDTHH:MM:SSZ, "T" or "t", "Z" or "z" or "+00:00" */

    if (len != 20 && len != 25) {
        return -1;
    }

    if (p[4] != '-' || p[7] != '-' || (p[10] != 'T' && p[10] != 't')
        || p[13] != ':' || p[16] != ':')
    {
        return -1;
    }

    if (len == 20) {
        if (p[19] != 'Z' && p[19] != 'z') {
            return -1;
        }

    } else if (p[19] != '+' || p[20] != '0' || p[21] != '0' || p[22] != ':'
               || p[23] != '0' || p[24] != '0')
    {
        return -1;
    }

    if (ngx_http_canary_parse_digits(p, 4, &year) != 0
        || ngx_http_canary_parse_digits(p + 5, 2, &mon) != 0
        || ngx_http_canary_parse_digits(p + 8, 2, &day) != 0
        || ngx_http_canary_parse_digits(p + 11, 2, &hour) != 0
        || ngx_http_canary_parse_digits(p + 14, 2, &min) != 0
        || ngx_http_canary_parse_digits(p + 17, 2, &sec) != 0)
    {
        return -1;
    }

    if (year < 1970 || mon < 1 || mon > 12 || day < 1 || hour > 23
        || min > 59 || sec > 59)
    {
        return -1;
    }

    if (day > 28) {
        /* the last day of the month: the day before the 1st of the next */

        v = ngx_http_canary_days_from_civil(mon == 12 ? year + 1 : year,
                                            mon == 12 ? 1 : mon + 1, 1)
            - ngx_http_canary_days_from_civil(year, mon, 1);

        if (day > v) {
            return -1;
        }
    }

    v = ngx_http_canary_days_from_civil(year, mon, day);

    *t = (time_t) (v * 86400 + hour * 3600 + min * 60 + sec);

    return 0;
}


int
ngx_http_canary_parse_state(const unsigned char *p, size_t len,
    unsigned *state)
{
    size_t       n;
    unsigned     i;
    const char  *names[] = {
        "progressing", "paused", "promoted", "rolled_back", "waiting"
    };

    for (i = 0; i < 5; i++) {
        n = strlen(names[i]);

        if (len == n && memcmp(p, names[i], n) == 0) {
            *state = i + 1;
            return 0;
        }
    }

    return -1;
}


size_t
ngx_http_canary_escape(unsigned char *dst, const unsigned char *src,
    size_t len)
{
    size_t                n, i;
    static const char     hex[] = "0123456789ABCDEF";

    n = 0;

    for (i = 0; i < len; i++) {
        if (src[i] > 0x20 && src[i] < 0x7f && src[i] != '%') {
            if (dst) {
                dst[n] = src[i];
            }

            n++;
            continue;
        }

        if (dst) {
            dst[n] = '%';
            dst[n + 1] = hex[src[i] >> 4];
            dst[n + 2] = hex[src[i] & 0xf];
        }

        n += 3;
    }

    return n;
}


static int
ngx_http_canary_hex(unsigned char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }

    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }

    return -1;
}


int
ngx_http_canary_unescape(const unsigned char *src, size_t len,
    unsigned char *dst, size_t *n)
{
    int     hi, lo;
    size_t  i, k;

    k = 0;

    for (i = 0; i < len; i++) {

        if (src[i] == '%') {
            if (len - i < 3) {
                return -1;
            }

            hi = ngx_http_canary_hex(src[i + 1]);
            lo = ngx_http_canary_hex(src[i + 2]);

            if (hi < 0 || lo < 0) {
                return -1;
            }

            dst[k++] = (unsigned char) (hi * 16 + lo);
            i += 2;
            continue;
        }

        if (src[i] <= 0x20 || src[i] >= 0x7f) {
            return -1;
        }

        dst[k++] = src[i];
    }

    *n = k;

    return 0;
}


int
ngx_http_canary_split(const unsigned char *p, size_t len,
    ngx_http_canary_token_t *tok, int max)
{
    int     n;
    size_t  i, start;

    n = 0;
    start = 0;

    for (i = 0; i <= len; i++) {

        if (i < len && p[i] != ' ') {
            if (p[i] < 0x20 || p[i] == 0x7f) {
                return -1;
            }

            continue;
        }

        if (i == start || n == max) {
            return -1;
        }

        tok[n].data = p + start;
        tok[n].len = i - start;
        n++;
        start = i + 1;
    }

    return n;
}


static int
ngx_http_canary_parse_digits(const unsigned char *p, size_t n, int64_t *value)
{
    size_t   i;
    int64_t  v;

    if (n == 0 || n > 12) {
        return -1;
    }

    v = 0;

    for (i = 0; i < n; i++) {
        if (!ngx_http_canary_isdigit(p[i])) {
            return -1;
        }

        v = v * 10 + (p[i] - '0');
    }

    *value = v;

    return 0;
}


/* days since 1970-01-01 of a proleptic Gregorian date */

static int64_t
ngx_http_canary_days_from_civil(int64_t y, unsigned m, unsigned d)
{
    int64_t   era;
    unsigned  yoe, doy, doe;

    y -= (m <= 2);
    era = y / 400;
    yoe = (unsigned) (y - era * 400);
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

    return era * 146097 + (int64_t) doe - 719468;
}
