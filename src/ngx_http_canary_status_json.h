
/*
 * Copyright (C) ngx_http_canary_module authors
 */


#ifndef _NGX_HTTP_CANARY_STATUS_JSON_H_INCLUDED_
#define _NGX_HTTP_CANARY_STATUS_JSON_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_canary_module.h"
#include "ngx_http_canary_status.h"
#include "ngx_http_canary_status_out.h"


#if (__GNUC__ >= 4)
#pragma GCC visibility push(hidden)
#endif


ngx_int_t ngx_http_canary_json(ngx_http_canary_out_t *o,
    ngx_http_canary_report_t *rp);
ngx_int_t ngx_http_canary_json_rollout(ngx_http_canary_out_t *o,
    ngx_http_canary_report_t *rp, ngx_uint_t i);


#if (__GNUC__ >= 4)
#pragma GCC visibility pop
#endif


#endif /* _NGX_HTTP_CANARY_STATUS_JSON_H_INCLUDED_ */
