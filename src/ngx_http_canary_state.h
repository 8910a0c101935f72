
/*
 * Copyright (C) ngx_http_canary_module authors
 */


#ifndef _NGX_HTTP_CANARY_STATE_H_INCLUDED_
#define _NGX_HTTP_CANARY_STATE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_canary_module.h"
#include "ngx_http_canary_snapshot.h"


#if (__GNUC__ >= 4)
#pragma GCC visibility push(hidden)
#endif


/*
 * ngx_http_canary_init_zone() and ngx_http_canary_state_file(), which
 * module.c calls, are declared in ngx_http_canary_module.h
 */

void ngx_http_canary_state_load(ngx_http_canary_main_conf_t *cmcf,
    ngx_log_t *log);
ngx_int_t ngx_http_canary_state_parse(ngx_http_canary_main_conf_t *cmcf,
    u_char *p, size_t len, ngx_http_canary_values_t *vals, u_char *run_id,
    ngx_pool_t *pool, ngx_log_t *log);
void ngx_http_canary_state_write(ngx_http_canary_main_conf_t *cmcf,
    ngx_log_t *log, ngx_err_t *state_err, uint64_t *autosum);
uint64_t ngx_http_canary_state_auto(ngx_http_canary_main_conf_t *cmcf);


#if (__GNUC__ >= 4)
#pragma GCC visibility pop
#endif


#endif /* _NGX_HTTP_CANARY_STATE_H_INCLUDED_ */
