
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * libFuzzer target: ngx_http_canary_parse_percent() on any bytes.  Checks,
 * besides memory safety, that an accepted value is what an independent
 * reading of the contract's grammar gives ("0".."100", at most three
 * integer digits, at most two decimals) and that it lies in 0..10000.
 */


#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_http_canary_parse.h"


static int
reference(const unsigned char *p, size_t n, uint32_t *v)
{
    size_t    i, ni, nf;
    uint32_t  ip, fp;

    ip = 0;
    fp = 0;
    ni = 0;
    nf = 0;

    for (i = 0; i < n && p[i] >= '0' && p[i] <= '9'; i++) {
        ip = ip * 10 + (p[i] - '0');
        ni++;
    }

    if (ni == 0 || ni > 3) {
        return -1;
    }

    if (i < n) {
        if (p[i++] != '.') {
            return -1;
        }

        for ( /* void */ ; i < n && p[i] >= '0' && p[i] <= '9'; i++) {
            fp = fp * 10 + (p[i] - '0');
            nf++;
        }

        if (i != n || nf == 0 || nf > 2) {
            return -1;
        }

        if (nf == 1) {
            fp *= 10;
        }
    }

    if (ip * 100 + fp > 10000) {
        return -1;
    }

    *v = ip * 100 + fp;

    return 0;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int            rc, ref;
    uint32_t       v, rv;
    unsigned char *copy;

    /* an exact-size heap copy, so that ASan sees any read past the end */

    copy = malloc(size ? size : 1);
    if (copy == NULL) {
        return 0;
    }

    memcpy(copy, data, size);

    v = 0xdeadbeef;
    rv = 0;

    rc = ngx_http_canary_parse_percent(copy, size, &v);
    ref = reference(copy, size, &rv);

    if (rc != ref) {
        abort();
    }

    if (rc == 0 && (v != rv || v > 10000)) {
        abort();
    }

    if (rc != 0 && v != 0xdeadbeef) {
        /* a refused value must not touch the output */
        abort();
    }

    free(copy);

    return 0;
}
