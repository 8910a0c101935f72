
/*
 * Copyright (C) ngx_http_canary_module authors
 */


#ifndef _NGX_HTTP_CANARY_AUTO_H_INCLUDED_
#define _NGX_HTTP_CANARY_AUTO_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


#if (__GNUC__ >= 4)
#pragma GCC visibility push(hidden)
#endif


ngx_int_t ngx_http_canary_auto_init_process(ngx_cycle_t *cycle);
void ngx_http_canary_auto_exit_process(ngx_cycle_t *cycle);


#if (__GNUC__ >= 4)
#pragma GCC visibility pop
#endif


#endif /* _NGX_HTTP_CANARY_AUTO_H_INCLUDED_ */
