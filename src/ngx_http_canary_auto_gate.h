
/*
 * Copyright (C) ngx_http_canary_module authors
 */


#ifndef _NGX_HTTP_CANARY_AUTO_GATE_H_INCLUDED_
#define _NGX_HTTP_CANARY_AUTO_GATE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_canary_auto_fields.h"


#if (__GNUC__ >= 4)
#pragma GCC visibility push(hidden)
#endif


/*
 * A rollout in state "waiting", read by the leader: an "approve" field is
 * used (the step awaited is entered) or refused, and NGX_OK returned;
 * NGX_DECLINED when there is none and the rollout has a step whose
 * intervals are still to be judged.
 */
ngx_int_t ngx_http_canary_auto_waiting(ngx_http_canary_auto_rollout_t *ar,
    redisReply **f, uint32_t percent, uint64_t now);


#if (__GNUC__ >= 4)
#pragma GCC visibility pop
#endif


#endif /* _NGX_HTTP_CANARY_AUTO_GATE_H_INCLUDED_ */
