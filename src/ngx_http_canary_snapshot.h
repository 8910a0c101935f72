
/*
 * Copyright (C) ngx_http_canary_module authors
 */


#ifndef _NGX_HTTP_CANARY_SNAPSHOT_H_INCLUDED_
#define _NGX_HTTP_CANARY_SNAPSHOT_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_canary_module.h"


#if (__GNUC__ >= 4)
#pragma GCC visibility push(hidden)
#endif


/*
 * A rollout's values as Redis or the state file give them, what a
 * snapshot is made of (see ngx_http_canary_values.c, _state.c)
 */
typedef struct {
    ngx_uint_t                      percent;
    time_t                          start;
    time_t                          end;
    ngx_uint_t                      state;
    ngx_uint_t                      source;
    ngx_uint_t                      nsegments;
    ngx_http_canary_segment_t      *segments;
    uint32_t                        arms_off;
    uint32_t                        weight[NGX_HTTP_CANARY_MAX_ARMS];
    ngx_uint_t                      shadow;

    /* an automatic rollout's step, from the state file only */
    uint64_t                        step;
    uint64_t                        failures;
    uint64_t                        since;
    uint64_t                        checked;
} ngx_http_canary_values_t;


#define ngx_http_canary_snapshot_strings(snap, nsegments)                    \
    ((u_char *) &(snap)[1] + (nsegments) * sizeof(ngx_http_canary_segment_t))


ngx_http_canary_snapshot_t *ngx_http_canary_snapshot_alloc(
    ngx_slab_pool_t *shpool, ngx_http_canary_snapshot_t *from,
    ngx_uint_t nsegments, size_t strings);
ngx_http_canary_snapshot_t *ngx_http_canary_snapshot_copy_locked(
    ngx_slab_pool_t *shpool, ngx_http_canary_snapshot_t *from,
    ngx_http_canary_values_t *v);
ngx_int_t ngx_http_canary_publish(ngx_http_canary_main_conf_t *cmcf,
    ngx_http_canary_shrollout_t *shr, ngx_http_canary_snapshot_t *snap);
ngx_int_t ngx_http_canary_snapshot_apply(ngx_http_canary_main_conf_t *cmcf,
    ngx_http_canary_rollout_t *ro, ngx_http_canary_values_t *v,
    ngx_log_t *log);
ngx_int_t ngx_http_canary_snapshot_apply_if(
    ngx_http_canary_main_conf_t *cmcf, ngx_http_canary_rollout_t *ro,
    ngx_http_canary_values_t *v, ngx_http_canary_snapshot_t *expected,
    ngx_log_t *log);
ngx_int_t ngx_http_canary_snapshot_set_swap(
    ngx_http_canary_main_conf_t *cmcf, ngx_http_canary_rollout_t *ro,
    ngx_uint_t which, ngx_http_canary_set_t *set, ngx_log_t *log);
size_t ngx_http_canary_snapshot_size(ngx_http_canary_snapshot_t *snap);
size_t ngx_http_canary_snapshot_need(ngx_http_canary_values_t *v);


#if (__GNUC__ >= 4)
#pragma GCC visibility pop
#endif


#endif /* _NGX_HTTP_CANARY_SNAPSHOT_H_INCLUDED_ */
