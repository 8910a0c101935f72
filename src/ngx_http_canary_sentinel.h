
/*
 * Copyright (C) ngx_http_canary_module authors
 */


#ifndef _NGX_HTTP_CANARY_SENTINEL_H_INCLUDED_
#define _NGX_HTTP_CANARY_SENTINEL_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_canary_redis.h"


#if (__GNUC__ >= 4)
#pragma GCC visibility push(hidden)
#endif


/* a client's master through Sentinel, see ngx_http_canary_sentinel.c */
extern ngx_http_canary_redis_locator_t  ngx_http_canary_sentinel_locator;


#if (__GNUC__ >= 4)
#pragma GCC visibility pop
#endif


#endif /* _NGX_HTTP_CANARY_SENTINEL_H_INCLUDED_ */
