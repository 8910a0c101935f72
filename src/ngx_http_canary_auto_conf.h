
/*
 * Copyright (C) ngx_http_canary_module authors
 */


#ifndef _NGX_HTTP_CANARY_AUTO_CONF_H_INCLUDED_
#define _NGX_HTTP_CANARY_AUTO_CONF_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_canary_module.h"


#if (__GNUC__ >= 4)
#pragma GCC visibility push(hidden)
#endif


char *ngx_http_canary_auto_directive(ngx_conf_t *cf,
    ngx_http_canary_rollout_t *ro);
ngx_int_t ngx_http_canary_auto_check_conf(ngx_conf_t *cf,
    ngx_http_canary_main_conf_t *cmcf);


#if (__GNUC__ >= 4)
#pragma GCC visibility pop
#endif


#endif /* _NGX_HTTP_CANARY_AUTO_CONF_H_INCLUDED_ */
