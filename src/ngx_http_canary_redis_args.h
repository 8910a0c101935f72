
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * The arguments of one Redis command, built in the caller's storage: the
 * pointers and lengths go into its arrays, formatted values are printed
 * into its buffer.  When either is full the builder says so ("overflow")
 * and takes no more: such a command must not be sent, and
 * ngx_http_canary_redis_send_args() refuses it.
 *
 *   const char  *argv[8];  size_t len[8];  u_char buf[64];
 *   ngx_http_canary_redis_args_t  a;
 *
 *   ngx_http_canary_redis_args_init(&a, argv, len, 8, buf, sizeof(buf));
 *   ngx_http_canary_redis_arg(&a, "HSET", 4);
 *   ngx_http_canary_redis_argf(&a, "%V", &key);
 *   ...
 *   ngx_http_canary_redis_send_args(rc, &a, handler, data);
 *
 * Arguments given by pointer must live until the command is sent (the
 * client copies them then).
 */


#ifndef _NGX_HTTP_CANARY_REDIS_ARGS_H_INCLUDED_
#define _NGX_HTTP_CANARY_REDIS_ARGS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include "ngx_http_canary_redis.h"


typedef struct {
    const char                    **argv;
    size_t                         *len;
    ngx_uint_t                      n;
    ngx_uint_t                      nalloc;
    u_char                         *start;
    u_char                         *pos;
    u_char                         *last;
    unsigned                        overflow:1;
} ngx_http_canary_redis_args_t;


void ngx_http_canary_redis_args_init(ngx_http_canary_redis_args_t *a,
    const char **argv, size_t *len, ngx_uint_t nalloc, u_char *buf,
    size_t size);
void ngx_http_canary_redis_args_reset(ngx_http_canary_redis_args_t *a);
void ngx_http_canary_redis_arg(ngx_http_canary_redis_args_t *a,
    const void *data, size_t len);
void ngx_http_canary_redis_argf(ngx_http_canary_redis_args_t *a,
    const char *fmt, ...);
void ngx_http_canary_redis_argv(ngx_http_canary_redis_args_t *a,
    ngx_http_canary_redis_args_t *from);
ngx_int_t ngx_http_canary_redis_send_args(ngx_http_canary_redis_t *rc,
    ngx_http_canary_redis_args_t *a, ngx_http_canary_redis_handler_pt handler,
    void *data);


#endif /* _NGX_HTTP_CANARY_REDIS_ARGS_H_INCLUDED_ */
