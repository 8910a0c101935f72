
/*
 * Copyright (C) ngx_http_canary_module authors
 */


#ifndef _NGX_HTTP_CANARY_SHADOW_H_INCLUDED_
#define _NGX_HTTP_CANARY_SHADOW_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_canary_module.h"


#if (__GNUC__ >= 4)
#pragma GCC visibility push(hidden)
#endif


/* shadow traffic on the request path, see ngx_http_canary_shadow.c */

ngx_int_t ngx_http_canary_shadow_init(ngx_conf_t *cf,
    ngx_http_canary_main_conf_t *cmcf);
ngx_int_t ngx_http_canary_shadow_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


#if (__GNUC__ >= 4)
#pragma GCC visibility pop
#endif


#endif /* _NGX_HTTP_CANARY_SHADOW_H_INCLUDED_ */
