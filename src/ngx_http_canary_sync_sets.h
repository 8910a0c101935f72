
/*
 * Copyright (C) ngx_http_canary_module authors
 */


#ifndef _NGX_HTTP_CANARY_SYNC_SETS_H_INCLUDED_
#define _NGX_HTTP_CANARY_SYNC_SETS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_canary_sync.h"


#if (__GNUC__ >= 4)
#pragma GCC visibility push(hidden)
#endif


void ngx_http_canary_sync_next_set(ngx_http_canary_sync_t *sync);
void ngx_http_canary_sync_set_clear_handler(ngx_event_t *ev);
void ngx_http_canary_sync_sscan_handler(ngx_http_canary_redis_t *rc,
    redisReply *reply, void *data);
void ngx_http_canary_sync_set_abort(ngx_http_canary_sync_t *sync);
void ngx_http_canary_sync_orphan_locked(ngx_http_canary_sync_t *sync);
void ngx_http_canary_sync_nomem(ngx_http_canary_sync_t *sync,
    ngx_http_canary_rollout_t *ro, ngx_str_t *key, ngx_int_t members,
    size_t need);


#if (__GNUC__ >= 4)
#pragma GCC visibility pop
#endif


#endif /* _NGX_HTTP_CANARY_SYNC_SETS_H_INCLUDED_ */
