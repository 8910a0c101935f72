
/*
 * Copyright (C) ngx_http_canary_module authors
 */


#ifndef _NGX_HTTP_CANARY_CONF_H_INCLUDED_
#define _NGX_HTTP_CANARY_CONF_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_canary_module.h"


#if (__GNUC__ >= 4)
#pragma GCC visibility push(hidden)
#endif


/*
 * The rollouts' configuration, see ngx_http_canary_conf.c.  The
 * canary_rollout directive's post is the handler of its
 * $canary_variant_<name> variables (ngx_http_get_variable_pt *).
 */

char *ngx_http_canary_rollout_block(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_canary_find(ngx_http_canary_main_conf_t *cmcf,
    ngx_str_t *name);
ngx_int_t ngx_http_canary_find_arm(ngx_http_canary_rollout_t *ro,
    u_char *name, size_t len);

extern ngx_str_t  ngx_http_canary_reason_names[];
extern ngx_str_t  ngx_http_canary_source_names[];
extern ngx_str_t  ngx_http_canary_state_names[];


#if (__GNUC__ >= 4)
#pragma GCC visibility pop
#endif


#endif /* _NGX_HTTP_CANARY_CONF_H_INCLUDED_ */
