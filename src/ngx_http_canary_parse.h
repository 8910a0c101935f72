
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * Strict parsers for values that come from outside: the configuration and
 * Redis.  No nginx headers here, so that unit tests and fuzzers build them
 * alone.  Every parser returns 0 on success and -1 on any malformed input,
 * and never reads past p + len.
 */


#ifndef _NGX_HTTP_CANARY_PARSE_H_INCLUDED_
#define _NGX_HTTP_CANARY_PARSE_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>
#include <time.h>


/* not exported from the module, see ngx_http_canary_module.h */
#if (__GNUC__ >= 4)
#pragma GCC visibility push(hidden)
#endif

/*
 * A non-negative decimal "12.5" as a whole number of 10^-frac units
 * (frac 2: 1250): at most int_digits digits before the dot, at most frac
 * after it, no sign, no empty side of the dot.
 */
int ngx_http_canary_parse_decimal(const unsigned char *p, size_t len,
    size_t int_digits, size_t frac, uint64_t *value);

/* percent in hundredths: "12.5" -> 1250; 0..100 with at most 2 decimals */
int ngx_http_canary_parse_percent(const unsigned char *p, size_t len,
    uint32_t *hundredths);

/* an arm's weight: a whole number 0..10000, digits only */
int ngx_http_canary_parse_weight(const unsigned char *p, size_t len,
    uint32_t *weight);

/* unix seconds ("1796000000") or RFC 3339 UTC ("2026-11-28T10:00:00Z") */
int ngx_http_canary_parse_time(const unsigned char *p, size_t len,
    time_t *t);

/*
 * the "state" field: progressing 1, paused 2, promoted 3, rolled_back 4,
 * waiting 5
 * (the values of NGX_HTTP_CANARY_STATE_*)
 */
int ngx_http_canary_parse_state(const unsigned char *p, size_t len,
    unsigned *state);

/*
 * Values in the state file: bytes 0x21..0x7e but '%' as they are, any
 * other byte as %XX.  escape() writes to dst (unless dst is NULL) and
 * returns the length; unescape() is strict (two hex digits after every
 * '%', no byte that should have been escaped) and writes at most len
 * bytes.
 */
size_t ngx_http_canary_escape(unsigned char *dst, const unsigned char *src,
    size_t len);
int ngx_http_canary_unescape(const unsigned char *src, size_t len,
    unsigned char *dst, size_t *n);

/*
 * Splits a line of the state file into at most max tokens separated by
 * single spaces; returns their number, or -1 for an empty token (a
 * leading, trailing or double space), a control byte, or more than max.
 */
typedef struct {
    const unsigned char  *data;
    size_t                len;
} ngx_http_canary_token_t;

int ngx_http_canary_split(const unsigned char *p, size_t len,
    ngx_http_canary_token_t *tok, int max);


#if (__GNUC__ >= 4)
#pragma GCC visibility pop
#endif


#endif /* _NGX_HTTP_CANARY_PARSE_H_INCLUDED_ */
