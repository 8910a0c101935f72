
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * The control API's request bodies: a PATCH of a rollout, as JSON, into
 * the fields of the rollout's Redis hash it sets or removes, each value
 * checked by the parsers of ngx_http_canary_parse.c (the ones the sync
 * applies to the same fields).  The JSON is read by jansson.  No nginx
 * headers here, so that the fuzzer builds it alone.
 */


#ifndef _NGX_HTTP_CANARY_API_PARSE_H_INCLUDED_
#define _NGX_HTTP_CANARY_API_PARSE_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


/* not exported from the module, see ngx_http_canary_module.h */
#if (__GNUC__ >= 4)
#pragma GCC visibility push(hidden)
#endif


/* the fields one PATCH may name, and their names' and values' room */
#define NGX_HTTP_CANARY_API_MAX_FIELDS   64
#define NGX_HTTP_CANARY_API_BUF          16384

/* the longest segment value a PATCH may name, in bytes */
#define NGX_HTTP_CANARY_API_SEGMENT_MAX  1024


/* one field of the rollout hash: set to value, or removed (value NULL) */
typedef struct {
    const unsigned char            *name;
    size_t                          name_len;
    const unsigned char            *value;
    size_t                          value_len;
} ngx_http_canary_api_field_t;


typedef struct {
    /* in: the rollout's arms, and whether percents must be whole */
    const unsigned char           **arms;
    const size_t                   *arm_len;
    size_t                          narms;
    int                             whole;

    /* out: the fields, or the error and the JSON field it is about */
    ngx_http_canary_api_field_t     field[NGX_HTTP_CANARY_API_MAX_FIELDS];
    size_t                          nfields;
    char                            error[256];
    char                            where[160];

    size_t                          used;
    unsigned char                   buf[NGX_HTTP_CANARY_API_BUF];
} ngx_http_canary_api_patch_t;


/*
 * The body of a PATCH: {"percent": 12.5, "shadow": 2, "weights":
 * {"blue": 1}, "arms": {"green": "off"}, "segments": {"DE": 10, "FR":
 * null}, "start": 1796000000, "end": "2026-12-01T00:00:00Z"}, any of them;
 * a number or a string for each value, null removes a segment or a bound
 * of the window.  0: every field is good (p->field[]), -1: refused, with
 * p->error and p->where (the whole body is refused: nothing is to be
 * written).
 */
int ngx_http_canary_api_parse_patch(const unsigned char *body, size_t len,
    ngx_http_canary_api_patch_t *p);


#if (__GNUC__ >= 4)
#pragma GCC visibility pop
#endif


#endif /* _NGX_HTTP_CANARY_API_PARSE_H_INCLUDED_ */
