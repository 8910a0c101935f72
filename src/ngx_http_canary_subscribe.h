
/*
 * Copyright (C) ngx_http_canary_module authors
 */


#ifndef _NGX_HTTP_CANARY_SUBSCRIBE_H_INCLUDED_
#define _NGX_HTTP_CANARY_SUBSCRIBE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_canary_sync.h"


#if (__GNUC__ >= 4)
#pragma GCC visibility push(hidden)
#endif


void ngx_http_canary_subscribe_ready(ngx_http_canary_redis_t *rc);
void ngx_http_canary_subscribe_push(ngx_http_canary_redis_t *rc,
    redisReply *reply);
void ngx_http_canary_subscribe_pong(ngx_http_canary_redis_t *rc,
    redisReply *reply, void *data);


#if (__GNUC__ >= 4)
#pragma GCC visibility pop
#endif


#endif /* _NGX_HTTP_CANARY_SUBSCRIBE_H_INCLUDED_ */
