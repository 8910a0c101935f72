
/*
 * Copyright (C) ngx_http_canary_module authors
 */


#ifndef _NGX_HTTP_CANARY_AUTO_DECIDE_H_INCLUDED_
#define _NGX_HTTP_CANARY_AUTO_DECIDE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_canary_auto_fields.h"


#if (__GNUC__ >= 4)
#pragma GCC visibility push(hidden)
#endif


void ngx_http_canary_auto_start(ngx_http_canary_auto_rollout_t *ar,
    redisReply **f, uint32_t percent, uint64_t now);
void ngx_http_canary_auto_decide(ngx_http_canary_auto_rollout_t *ar,
    redisReply **f, redisReply *fig, uint32_t percent, uint64_t interval,
    uint64_t now);
void ngx_http_canary_auto_apply(ngx_http_canary_auto_rollout_t *ar,
    redisReply **f, ngx_http_canary_auto_outcome_t *o);
void ngx_http_canary_auto_decide_dark(ngx_http_canary_auto_rollout_t *ar,
    redisReply **f, redisReply *fig, uint32_t percent, uint64_t interval,
    uint64_t now);


#if (__GNUC__ >= 4)
#pragma GCC visibility pop
#endif


#endif /* _NGX_HTTP_CANARY_AUTO_DECIDE_H_INCLUDED_ */
