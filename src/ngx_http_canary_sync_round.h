
/*
 * Copyright (C) ngx_http_canary_module authors
 */


#ifndef _NGX_HTTP_CANARY_SYNC_ROUND_H_INCLUDED_
#define _NGX_HTTP_CANARY_SYNC_ROUND_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_canary_sync.h"


#if (__GNUC__ >= 4)
#pragma GCC visibility push(hidden)
#endif


void ngx_http_canary_sync_start(ngx_http_canary_sync_t *sync);
void ngx_http_canary_sync_soon(ngx_http_canary_sync_t *sync);
void ngx_http_canary_sync_soon_handler(ngx_event_t *ev);
void ngx_http_canary_sync_restored(ngx_http_canary_sync_t *sync);
void ngx_http_canary_sync_close(ngx_http_canary_sync_t *sync);
void ngx_http_canary_sync_apply(ngx_http_canary_sync_t *sync,
    ngx_http_canary_sync_rollout_t *sr, redisReply *reply);
void ngx_http_canary_sync_scard(ngx_http_canary_sync_t *sync,
    ngx_http_canary_sync_rollout_t *sr, ngx_uint_t which, redisReply *reply);


#if (__GNUC__ >= 4)
#pragma GCC visibility pop
#endif


#endif /* _NGX_HTTP_CANARY_SYNC_ROUND_H_INCLUDED_ */
