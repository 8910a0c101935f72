
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * A PATCH's JSON body into the rollout hash's fields, see
 * ngx_http_canary_api_parse.h.  Why jansson: Debian's libjansson is kept
 * up to date, validates UTF-8, refuses NUL bytes in strings by default,
 * reads a buffer of a given length (no terminating NUL needed), and
 * refuses duplicate keys on request (JSON_REJECT_DUPLICATES): a body
 * naming "percent" twice is ambiguous, so it is refused rather than read
 * as its last value.
 */


#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ngx_http_canary_parse.h"
#include "ngx_http_canary_api_parse.h"


typedef int (*ngx_http_canary_api_check_pt)(ngx_http_canary_api_patch_t *p,
    const char *value, size_t len);


static int ngx_http_canary_api_top(ngx_http_canary_api_patch_t *p,
    const char *key, json_t *value);
static int ngx_http_canary_api_map(ngx_http_canary_api_patch_t *p,
    const char *key, const char *prefix, json_t *obj,
    ngx_http_canary_api_check_pt check, int may_remove, int arm);
static int ngx_http_canary_api_one(ngx_http_canary_api_patch_t *p,
    const char *where, const char *name, size_t name_len, json_t *value,
    ngx_http_canary_api_check_pt check, int may_remove);
static int ngx_http_canary_api_text(json_t *value, char *buf, size_t size);
static int ngx_http_canary_api_check_percent(ngx_http_canary_api_patch_t *p,
    const char *value, size_t len);
static int ngx_http_canary_api_check_weight(ngx_http_canary_api_patch_t *p,
    const char *value, size_t len);
static int ngx_http_canary_api_check_onoff(ngx_http_canary_api_patch_t *p,
    const char *value, size_t len);
static int ngx_http_canary_api_check_time(ngx_http_canary_api_patch_t *p,
    const char *value, size_t len);
static int ngx_http_canary_api_is_arm(ngx_http_canary_api_patch_t *p,
    const char *name, size_t len);
static unsigned char *ngx_http_canary_api_copy(ngx_http_canary_api_patch_t *p,
    const void *a, size_t alen, const void *b, size_t blen);
static int ngx_http_canary_api_refuse(ngx_http_canary_api_patch_t *p,
    const char *error, const char *where);


int
ngx_http_canary_api_parse_patch(const unsigned char *body, size_t len,
    ngx_http_canary_api_patch_t *p)
{
    int            rc;
    json_t        *root, *value;
    const char    *key;
    json_error_t   err;

    p->nfields = 0;
    p->used = 0;
    p->error[0] = '\0';
    p->where[0] = '\0';

    root = json_loadb((const char *) body, len, JSON_REJECT_DUPLICATES,
                      &err);

    if (root == NULL) {
        snprintf(p->error, sizeof(p->error),
                 "malformed JSON at line %d, column %d: %.80s", err.line,
                 err.column, err.text);
        return -1;
    }

    if (!json_is_object(root)) {
        json_decref(root);
        return ngx_http_canary_api_refuse(p, "the body is not an object", "");
    }

    rc = 0;

    json_object_foreach(root, key, value) {
        rc = ngx_http_canary_api_top(p, key, value);

        if (rc != 0) {
            break;
        }
    }

    json_decref(root);

    if (rc == 0 && p->nfields == 0) {
        return ngx_http_canary_api_refuse(p, "nothing to change", "");
    }

    return rc;
}


static int
ngx_http_canary_api_top(ngx_http_canary_api_patch_t *p, const char *key,
    json_t *value)
{
    size_t  len;

    len = strlen(key);

    if (strcmp(key, "percent") == 0 || strcmp(key, "shadow") == 0) {
        return ngx_http_canary_api_one(p, key, key, len, value,
                                       ngx_http_canary_api_check_percent, 0);
    }

    if (strcmp(key, "start") == 0 || strcmp(key, "end") == 0) {
        return ngx_http_canary_api_one(p, key, key, len, value,
                                       ngx_http_canary_api_check_time, 1);
    }

    if (strcmp(key, "weights") == 0) {
        return ngx_http_canary_api_map(p, key, "weight:", value,
                                       ngx_http_canary_api_check_weight, 0,
                                       1);
    }

    if (strcmp(key, "arms") == 0) {
        return ngx_http_canary_api_map(p, key, "arm:", value,
                                       ngx_http_canary_api_check_onoff, 0,
                                       1);
    }

    if (strcmp(key, "segments") == 0) {
        return ngx_http_canary_api_map(p, key, "percent:", value,
                                       ngx_http_canary_api_check_percent, 1,
                                       0);
    }

    return ngx_http_canary_api_refuse(p, "unknown field", key);
}


/* "weights", "arms", "segments": an object, each member one field */

static int
ngx_http_canary_api_map(ngx_http_canary_api_patch_t *p, const char *key,
    const char *prefix, json_t *obj, ngx_http_canary_api_check_pt check,
    int may_remove, int arm)
{
    char           name[NGX_HTTP_CANARY_API_SEGMENT_MAX + 16];
    char           where[sizeof(p->where)];
    size_t         plen, klen;
    json_t        *value;
    const char    *k;

    if (!json_is_object(obj)) {
        return ngx_http_canary_api_refuse(p, "must be an object", key);
    }

    plen = strlen(prefix);

    json_object_foreach(obj, k, value) {
        klen = strlen(k);
        snprintf(where, sizeof(where), "%s.%s", key, k);

        if (klen == 0 || klen > NGX_HTTP_CANARY_API_SEGMENT_MAX) {
            return ngx_http_canary_api_refuse(p, "empty or too long a name",
                                              where);
        }

        if (arm && !ngx_http_canary_api_is_arm(p, k, klen)) {
            return ngx_http_canary_api_refuse(p, "no such arm", where);
        }

        memcpy(name, prefix, plen);
        memcpy(name + plen, k, klen);

        if (ngx_http_canary_api_one(p, where, name, plen + klen, value,
                                    check, may_remove)
            != 0)
        {
            return -1;
        }
    }

    return 0;
}


/* one field: its value as text, checked, then kept */

static int
ngx_http_canary_api_one(ngx_http_canary_api_patch_t *p, const char *where,
    const char *name, size_t name_len, json_t *value,
    ngx_http_canary_api_check_pt check, int may_remove)
{
    int                           n;
    unsigned char                *s;
    char                          text[64];
    ngx_http_canary_api_field_t  *f;

    if (p->nfields == NGX_HTTP_CANARY_API_MAX_FIELDS) {
        return ngx_http_canary_api_refuse(p, "too many fields", where);
    }

    f = &p->field[p->nfields];

    if (json_is_null(value)) {
        if (!may_remove) {
            return ngx_http_canary_api_refuse(p, "cannot be null", where);
        }

        f->name = ngx_http_canary_api_copy(p, name, name_len, NULL, 0);
        if (f->name == NULL) {
            return ngx_http_canary_api_refuse(p, "too large", where);
        }

        f->name_len = name_len;
        f->value = NULL;
        f->value_len = 0;
        p->nfields++;

        return 0;
    }

    n = ngx_http_canary_api_text(value, text, sizeof(text));

    if (n < 0) {
        return ngx_http_canary_api_refuse(p, "must be a number or a string",
                                          where);
    }

    if (check(p, text, n) != 0) {
        snprintf(p->error, sizeof(p->error), "refused \"%s\"", text);
        snprintf(p->where, sizeof(p->where), "%s", where);
        return -1;
    }

    s = ngx_http_canary_api_copy(p, name, name_len, text, n);
    if (s == NULL) {
        return ngx_http_canary_api_refuse(p, "too large", where);
    }

    f->name = s;
    f->name_len = name_len;
    f->value = s + name_len;
    f->value_len = n;
    p->nfields++;

    return 0;
}


/*
 * A value as the text Redis would hold: a string as it is (up to 63
 * bytes, more is no value of ours), an integer in decimal, a real in the
 * fewest digits that read back as the same double (12.5 as "12.5", 0.1 as
 * "0.1"), which the strict parsers then take or refuse (1e-05, 12.345).
 */

static int
ngx_http_canary_api_text(json_t *value, char *buf, size_t size)
{
    int      n, prec;
    size_t   len;
    double   d;

    if (json_is_string(value)) {
        len = json_string_length(value);

        if (len >= size || memchr(json_string_value(value), '\0', len)) {
            return -1;
        }

        memcpy(buf, json_string_value(value), len);
        buf[len] = '\0';

        return (int) len;
    }

    if (json_is_integer(value)) {
        return snprintf(buf, size, "%" JSON_INTEGER_FORMAT,
                        json_integer_value(value));
    }

    if (!json_is_real(value)) {
        return -1;
    }

    d = json_real_value(value);

    for (prec = 1; prec <= 17; prec++) {
        n = snprintf(buf, size, "%.*g", prec, d);

        if (n > 0 && (size_t) n < size && strtod(buf, NULL) == d) {
            return n;
        }
    }

    return -1;
}


static int
ngx_http_canary_api_check_percent(ngx_http_canary_api_patch_t *p,
    const char *value, size_t len)
{
    uint32_t  pct;

    if (ngx_http_canary_parse_percent((const unsigned char *) value, len,
                                      &pct)
        != 0)
    {
        return -1;
    }

    /* hash unleash: whole percents, as the sync wants them */

    return (p->whole && pct % 100) ? -1 : 0;
}


static int
ngx_http_canary_api_check_weight(ngx_http_canary_api_patch_t *p,
    const char *value, size_t len)
{
    uint32_t  w;

    (void) p;

    return ngx_http_canary_parse_weight((const unsigned char *) value, len,
                                        &w);
}


static int
ngx_http_canary_api_check_onoff(ngx_http_canary_api_patch_t *p,
    const char *value, size_t len)
{
    (void) p;

    if ((len == 2 && memcmp(value, "on", 2) == 0)
        || (len == 3 && memcmp(value, "off", 3) == 0))
    {
        return 0;
    }

    return -1;
}


static int
ngx_http_canary_api_check_time(ngx_http_canary_api_patch_t *p,
    const char *value, size_t len)
{
    time_t  t;

    (void) p;

    return ngx_http_canary_parse_time((const unsigned char *) value, len,
                                      &t);
}


static int
ngx_http_canary_api_is_arm(ngx_http_canary_api_patch_t *p, const char *name,
    size_t len)
{
    size_t  i;

    for (i = 0; i < p->narms; i++) {
        if (p->arm_len[i] == len && memcmp(p->arms[i], name, len) == 0) {
            return 1;
        }
    }

    return 0;
}


/* a and b one after the other in p->buf; NULL when it is full */

static unsigned char *
ngx_http_canary_api_copy(ngx_http_canary_api_patch_t *p, const void *a,
    size_t alen, const void *b, size_t blen)
{
    unsigned char  *s;

    if (sizeof(p->buf) - p->used < alen + blen) {
        return NULL;
    }

    s = p->buf + p->used;
    memcpy(s, a, alen);

    if (blen) {
        memcpy(s + alen, b, blen);
    }

    p->used += alen + blen;

    return s;
}


static int
ngx_http_canary_api_refuse(ngx_http_canary_api_patch_t *p,
    const char *error, const char *where)
{
    snprintf(p->error, sizeof(p->error), "%s", error);
    snprintf(p->where, sizeof(p->where), "%s", where);

    return -1;
}
