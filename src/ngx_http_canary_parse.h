
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


/* percent in hundredths: "12.5" -> 1250; 0..100 with at most 2 decimals */
int ngx_http_canary_parse_percent(const unsigned char *p, size_t len,
    uint32_t *hundredths);

/* unix seconds ("1796000000") or RFC 3339 UTC ("2026-11-28T10:00:00Z") */
int ngx_http_canary_parse_time(const unsigned char *p, size_t len,
    time_t *t);


#endif /* _NGX_HTTP_CANARY_PARSE_H_INCLUDED_ */
