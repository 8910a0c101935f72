
/*
 * Copyright (C) ngx_http_canary_module authors
 */


#ifndef _NGX_HTTP_CANARY_VALUES_H_INCLUDED_
#define _NGX_HTTP_CANARY_VALUES_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include <hiredis/hiredis.h>

#include "ngx_http_canary_module.h"
#include "ngx_http_canary_snapshot.h"


#if (__GNUC__ >= 4)
#pragma GCC visibility push(hidden)
#endif


/*
 * What the reads of a rollout hash refused, so that each refusal is
 * logged once: the last read's and this read's {field length, value
 * length, field, value} entries (values may hold any byte, a NUL too),
 * and the last reply of the wrong kind, "<command> <answer>"
 */
typedef struct {
    ngx_str_t                       refused;
    ngx_str_t                       refused_new;
    ngx_str_t                       error;
} ngx_http_canary_refusals_t;


/* a rollout hash's fields being read into values */
typedef struct {
    ngx_http_canary_rollout_t      *ro;
    ngx_str_t                      *key;        /* the hash's, for the log */
    ngx_http_canary_refusals_t     *rf;
    ngx_http_canary_snapshot_t     *cur;        /* the last good values */
    ngx_http_canary_values_t       *v;
    ngx_array_t                    *segments;
    ngx_http_canary_shctx_t        *sh;         /* sh->refused counts */
    ngx_log_t                      *log;
} ngx_http_canary_fields_t;


void ngx_http_canary_values_init(ngx_http_canary_values_t *v,
    ngx_http_canary_rollout_t *ro);
ngx_int_t ngx_http_canary_values_field(ngx_http_canary_fields_t *f,
    ngx_str_t *field, ngx_str_t *value);
void ngx_http_canary_values_error(ngx_http_canary_refusals_t *rf,
    ngx_http_canary_shctx_t *sh, ngx_log_t *log, const char *cmd,
    ngx_str_t *key, redisReply *reply);
uint32_t ngx_http_canary_values_arms_changed(ngx_http_canary_rollout_t *ro,
    ngx_http_canary_snapshot_t *snap);


#if (__GNUC__ >= 4)
#pragma GCC visibility pop
#endif


#endif /* _NGX_HTTP_CANARY_VALUES_H_INCLUDED_ */
