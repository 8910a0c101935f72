
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * libFuzzer target: ngx_http_canary_parse_time() on any bytes.  Checks,
 * besides memory safety, that an accepted RFC 3339 time is what the C
 * library's timegm() gives for the same fields, that the calendar date
 * really exists, and that unix seconds read back as themselves.
 */


#define _DEFAULT_SOURCE

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ngx_http_canary_parse.h"


static int
num(const unsigned char *p, size_t n)
{
    int     v;
    size_t  i;

    v = 0;

    for (i = 0; i < n; i++) {
        v = v * 10 + (p[i] - '0');
    }

    return v;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int             rc, digits;
    size_t          i;
    time_t          t, expect;
    struct tm       tm;
    unsigned char  *copy;

    copy = malloc(size ? size : 1);
    if (copy == NULL) {
        return 0;
    }

    memcpy(copy, data, size);

    t = (time_t) 0x5a5a5a5a;

    rc = ngx_http_canary_parse_time(copy, size, &t);

    digits = (size > 0);

    for (i = 0; i < size; i++) {
        if (copy[i] < '0' || copy[i] > '9') {
            digits = 0;
        }
    }

    if (rc != 0) {
        if (t != (time_t) 0x5a5a5a5a) {
            abort();
        }

        /* up to 12 digits of unix seconds are always accepted */
        if (digits && size <= 12) {
            abort();
        }

        goto done;
    }

    if (digits) {
        expect = 0;

        for (i = 0; i < size; i++) {
            expect = expect * 10 + (copy[i] - '0');
        }

        if (size > 12 || t != expect) {
            abort();
        }

        goto done;
    }

    if (size != 20 && size != 25) {
        abort();
    }

    memset(&tm, 0, sizeof(tm));
    tm.tm_year = num(copy, 4) - 1900;
    tm.tm_mon = num(copy + 5, 2) - 1;
    tm.tm_mday = num(copy + 8, 2);
    tm.tm_hour = num(copy + 11, 2);
    tm.tm_min = num(copy + 14, 2);
    tm.tm_sec = num(copy + 17, 2);

    expect = timegm(&tm);

    if (expect != t) {
        abort();
    }

    /* timegm() normalises 31 April into 1 May: the date must be real */

    if (tm.tm_mday != num(copy + 8, 2) || tm.tm_mon != num(copy + 5, 2) - 1) {
        abort();
    }

done:

    free(copy);

    return 0;
}
