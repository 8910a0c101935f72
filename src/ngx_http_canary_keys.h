
/*
 * Copyright (C) ngx_http_canary_module authors
 */


#ifndef _NGX_HTTP_CANARY_KEYS_H_INCLUDED_
#define _NGX_HTTP_CANARY_KEYS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_canary_module.h"


#if (__GNUC__ >= 4)
#pragma GCC visibility push(hidden)
#endif


/* the room ngx_http_canary_key_pattern() needs for a prefix */
#define ngx_http_canary_key_pattern_len(prefix)                              \
    (sizeof("__keyspace@65535__:*") + 2 * (prefix)->len)


ngx_int_t ngx_http_canary_key(ngx_pool_t *pool, ngx_str_t *key,
    ngx_str_t *prefix, ngx_str_t *name, char *suffix);
ngx_int_t ngx_http_canary_key_set(ngx_pool_t *pool, ngx_str_t *key,
    ngx_str_t *prefix, ngx_http_canary_rollout_t *ro, ngx_uint_t which);
ngx_int_t ngx_http_canary_key_name(ngx_pool_t *pool, ngx_str_t *key,
    ngx_str_t *prefix, char *name);
u_char *ngx_http_canary_key_pattern(u_char *p, ngx_str_t *prefix,
    ngx_uint_t db);
ngx_int_t ngx_http_canary_node_name(ngx_cycle_t *cycle,
    ngx_http_canary_main_conf_t *cmcf, ngx_str_t *out);


#if (__GNUC__ >= 4)
#pragma GCC visibility pop
#endif


#endif /* _NGX_HTTP_CANARY_KEYS_H_INCLUDED_ */
