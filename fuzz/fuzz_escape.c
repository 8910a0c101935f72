
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * libFuzzer target: the state file's pieces on any bytes.  escape() then
 * unescape() gives the bytes back; unescape() never writes more than its
 * input's length and refuses what escape() would never write; split()
 * gives non-empty tokens without spaces that lie inside the line; a state
 * name is accepted only as one of the four.
 */


#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_http_canary_parse.h"


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                       n, i;
    size_t                    len, back, k;
    unsigned                  state;
    unsigned char            *copy, *esc, *out;
    ngx_http_canary_token_t   tok[8];

    copy = malloc(size ? size : 1);
    esc = malloc(3 * size + 1);
    out = malloc(size ? size : 1);

    if (copy == NULL || esc == NULL || out == NULL) {
        goto done;
    }

    memcpy(copy, data, size);

    /* round trip */

    len = ngx_http_canary_escape(NULL, copy, size);
    if (len != ngx_http_canary_escape(esc, copy, size) || len > 3 * size) {
        abort();
    }

    for (k = 0; k < len; k++) {
        if (esc[k] <= 0x20 || esc[k] >= 0x7f) {
            abort();
        }
    }

    if (ngx_http_canary_unescape(esc, len, out, &back) != 0
        || back != size || memcmp(out, copy, size) != 0)
    {
        abort();
    }

    /* unescape of anything */

    if (ngx_http_canary_unescape(copy, size, out, &back) == 0) {
        if (back > size) {
            abort();
        }

        for (k = 0; k < size; k++) {
            if (copy[k] <= 0x20 || copy[k] >= 0x7f) {
                abort();
            }
        }
    }

    /* split */

    n = ngx_http_canary_split(copy, size, tok, 8);

    if (n > 8 || n == 0) {
        abort();
    }

    for (i = 0; i < n; i++) {
        if (tok[i].len == 0 || tok[i].data < copy
            || tok[i].data + tok[i].len > copy + size
            || memchr(tok[i].data, ' ', tok[i].len) != NULL)
        {
            abort();
        }
    }

    /* state names */

    if (ngx_http_canary_parse_state(copy, size, &state) == 0) {
        if (state < 1 || state > 4) {
            abort();
        }

        if (!((size == 11 && memcmp(copy, "progressing", 11) == 0)
              || (size == 6 && memcmp(copy, "paused", 6) == 0)
              || (size == 8 && memcmp(copy, "promoted", 8) == 0)
              || (size == 11 && memcmp(copy, "rolled_back", 11) == 0)))
        {
            abort();
        }
    }

done:

    free(copy);
    free(esc);
    free(out);

    return 0;
}
