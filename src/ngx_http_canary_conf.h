
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

/* canary_api's writes: their names in the history and the metrics */
#define NGX_HTTP_CANARY_API_PATCH       0
#define NGX_HTTP_CANARY_API_START       1
#define NGX_HTTP_CANARY_API_PAUSE       2
#define NGX_HTTP_CANARY_API_RESUME      3
#define NGX_HTTP_CANARY_API_PROMOTE     4
#define NGX_HTTP_CANARY_API_ABORT       5
#define NGX_HTTP_CANARY_API_APPROVE     6
#define NGX_HTTP_CANARY_API_ADD_USER    7
#define NGX_HTTP_CANARY_API_REMOVE_USER 8
#define NGX_HTTP_CANARY_API_NACTIONS    9

/* how a write ended, for the metrics */
#define NGX_HTTP_CANARY_API_OK          0
#define NGX_HTTP_CANARY_API_REFUSED     1   /* 4xx */
#define NGX_HTTP_CANARY_API_UNAVAILABLE 2   /* 503 */
#define NGX_HTTP_CANARY_API_TIMEOUT     3   /* 504 */
#define NGX_HTTP_CANARY_API_NRESULTS    4

extern ngx_str_t  ngx_http_canary_api_actions[];
extern ngx_str_t  ngx_http_canary_api_results[];


#if (__GNUC__ >= 4)
#pragma GCC visibility pop
#endif


#endif /* _NGX_HTTP_CANARY_CONF_H_INCLUDED_ */
