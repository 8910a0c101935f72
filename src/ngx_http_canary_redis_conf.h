
/*
 * Copyright (C) ngx_http_canary_module authors
 */


#ifndef _NGX_HTTP_CANARY_REDIS_CONF_H_INCLUDED_
#define _NGX_HTTP_CANARY_REDIS_CONF_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_canary_redis.h"


#if (__GNUC__ >= 4)
#pragma GCC visibility push(hidden)
#endif


/*
 * canary_redis, see ngx_http_canary_redis_conf.c: the directive's offset
 * is that of an ngx_http_canary_redis_conf_t pointer in its conf
 */
char *ngx_http_canary_redis_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


#if (__GNUC__ >= 4)
#pragma GCC visibility pop
#endif


#endif /* _NGX_HTTP_CANARY_REDIS_CONF_H_INCLUDED_ */
