
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * The clients of one process that follow one master found for them
 * (behind Sentinel, or the master of a cluster's slot): joined when they
 * first ask where to connect, left when closed for good, and moved
 * together when the master moves.
 */


#ifndef _NGX_HTTP_CANARY_REDIS_FOLLOW_H_INCLUDED_
#define _NGX_HTTP_CANARY_REDIS_FOLLOW_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_canary_redis.h"


#if (__GNUC__ >= 4)
#pragma GCC visibility push(hidden)
#endif


/* connections of one process that follow one master */
#define NGX_HTTP_CANARY_REDIS_FOLLOWERS   8


typedef struct {
    ngx_http_canary_redis_t        *clients[NGX_HTTP_CANARY_REDIS_FOLLOWERS];
    ngx_uint_t                      nclients;
} ngx_http_canary_redis_follow_t;


ngx_int_t ngx_http_canary_redis_follow_join(ngx_http_canary_redis_follow_t *f,
    ngx_http_canary_redis_t *rc);
ngx_uint_t ngx_http_canary_redis_follow_leave(
    ngx_http_canary_redis_follow_t *f, ngx_http_canary_redis_t *rc);
void ngx_http_canary_redis_follow_move(ngx_http_canary_redis_follow_t *f,
    ngx_uint_t moved);


#if (__GNUC__ >= 4)
#pragma GCC visibility pop
#endif


#endif /* _NGX_HTTP_CANARY_REDIS_FOLLOW_H_INCLUDED_ */
