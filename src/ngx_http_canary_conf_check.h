
/*
 * Copyright (C) ngx_http_canary_module authors
 */


#ifndef _NGX_HTTP_CANARY_CONF_CHECK_H_INCLUDED_
#define _NGX_HTTP_CANARY_CONF_CHECK_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_canary_module.h"


#if (__GNUC__ >= 4)
#pragma GCC visibility push(hidden)
#endif


/*
 * The directives outside canary_rollout {} and the checks once the
 * http{} block is read, see ngx_http_canary_conf_check.c.
 */

char *ngx_http_canary_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_http_canary_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_canary_shadow_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_canary_shadow_merge(ngx_conf_t *cf,
    ngx_http_canary_loc_conf_t *prev, ngx_http_canary_loc_conf_t *conf);
ngx_int_t ngx_http_canary_conf_check(ngx_conf_t *cf,
    ngx_http_canary_main_conf_t *cmcf);
void ngx_http_canary_zone_check(ngx_http_canary_main_conf_t *cmcf,
    ngx_log_t *log);

extern ngx_conf_bitmask_t  ngx_http_canary_shadow_methods[];


#if (__GNUC__ >= 4)
#pragma GCC visibility pop
#endif


#endif /* _NGX_HTTP_CANARY_CONF_CHECK_H_INCLUDED_ */
