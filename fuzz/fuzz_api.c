
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * libFuzzer target: ngx_http_canary_api_parse_patch(), a canary_api
 * PATCH's JSON body, on any bytes (the first byte chooses whether the
 * rollout takes whole percents only).  Checks, besides memory safety,
 * that a body accepted gives at least one field, each field one the sync
 * reads, with a value the same strict parser accepts (or removed, where
 * removing is allowed), and that a refusal says why.
 */


#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_http_canary_parse.h"
#include "ngx_http_canary_api_parse.h"


static ngx_http_canary_api_patch_t  patch;


static int
has_prefix(const ngx_http_canary_api_field_t *f, const char *s)
{
    size_t  n;

    n = strlen(s);

    return f->name_len > n && memcmp(f->name, s, n) == 0;
}


static int
is(const ngx_http_canary_api_field_t *f, const char *s)
{
    return f->name_len == strlen(s) && memcmp(f->name, s, f->name_len) == 0;
}


static void
check(const ngx_http_canary_api_field_t *f, int whole)
{
    time_t    t;
    uint32_t  v;

    if (is(f, "percent") || is(f, "shadow") || has_prefix(f, "percent:")) {
        if (f->value == NULL) {
            if (!has_prefix(f, "percent:")) {
                abort();
            }

            return;
        }

        if (ngx_http_canary_parse_percent(f->value, f->value_len, &v) != 0
            || (whole && !is(f, "shadow") && v % 100))
        {
            abort();
        }

        return;
    }

    if (is(f, "start") || is(f, "end")) {
        if (f->value
            && ngx_http_canary_parse_time(f->value, f->value_len, &t) != 0)
        {
            abort();
        }

        return;
    }

    if (has_prefix(f, "weight:")) {
        if (f->value == NULL
            || ngx_http_canary_parse_weight(f->value, f->value_len, &v) != 0)
        {
            abort();
        }

        return;
    }

    if (has_prefix(f, "arm:")) {
        if (f->value == NULL
            || !((f->value_len == 2 && memcmp(f->value, "on", 2) == 0)
                 || (f->value_len == 3 && memcmp(f->value, "off", 3) == 0)))
        {
            abort();
        }

        return;
    }

    abort();
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t                  i;
    static const unsigned char  *arms[] = {
        (const unsigned char *) "blue", (const unsigned char *) "green"
    };
    static const size_t     arm_len[] = { 4, 5 };

    if (size == 0) {
        return 0;
    }

    patch.arms = arms;
    patch.arm_len = arm_len;
    patch.narms = 2;
    patch.whole = data[0] & 1;

    if (ngx_http_canary_api_parse_patch(data + 1, size - 1, &patch) != 0) {
        if (patch.error[0] == '\0') {
            abort();
        }

        return 0;
    }

    if (patch.nfields == 0) {
        abort();
    }

    for (i = 0; i < patch.nfields; i++) {
        check(&patch.field[i], patch.whole);
    }

    return 0;
}
