
/*
 * Copyright (C) ngx_http_canary_module authors
 */


#ifndef _NGX_HTTP_CANARY_RESTORE_H_INCLUDED_
#define _NGX_HTTP_CANARY_RESTORE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_canary_sync.h"


#if (__GNUC__ >= 4)
#pragma GCC visibility push(hidden)
#endif


void ngx_http_canary_restore_start(ngx_http_canary_sync_t *sync);
void ngx_http_canary_restore_end(ngx_http_canary_sync_t *sync,
    const char *why, redisReply *reply);


#if (__GNUC__ >= 4)
#pragma GCC visibility pop
#endif


#endif /* _NGX_HTTP_CANARY_RESTORE_H_INCLUDED_ */
