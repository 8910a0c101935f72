
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * What every format of the canary_status page shows: the report that the
 * status handler reads from the zone once per request (ngx_http_canary_
 * status.c), one view per rollout.
 */


#ifndef _NGX_HTTP_CANARY_STATUS_H_INCLUDED_
#define _NGX_HTTP_CANARY_STATUS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_canary_module.h"


#if (__GNUC__ >= 4)
#pragma GCC visibility push(hidden)
#endif


/* one rollout as it is printed: its snapshot and summed counters */
typedef struct {
    ngx_http_canary_rollout_t      *rollout;
    ngx_http_canary_snapshot_t     *snap;
    time_t                          synced;     /* 0: never from Redis */
    /* the variants, then "shadow" if the rollout has its counters */
    ngx_uint_t                      nvariants;
    ngx_http_canary_counters_t     *sum;        /* [nvariants] */
    ngx_atomic_uint_t              *count;      /* [nvariants] */

    /* "auto": its state as Redis holds it (NULL: none), and the ms to
       the next decision (-1: none due) */
    ngx_http_canary_auto_status_t  *autost;
    int64_t                         next;
} ngx_http_canary_view_t;


/* a view's most variants: stable, the arms and shadow */
#define NGX_HTTP_CANARY_VIEW_MAX  (NGX_HTTP_CANARY_MAX_VARIANTS + 1)

/* a view's variant v by name: the rollout's, then "shadow" after them */
#define ngx_http_canary_variant_name(vw, v)                                  \
    ((v) < (vw)->rollout->nvariants ? &(vw)->rollout->variants[v].name      \
                                    : &ngx_http_canary_shadow_name)


/* what every format shows */
typedef struct {
    ngx_uint_t                      nviews;
    ngx_http_canary_view_t         *views;
    ngx_atomic_uint_t               redis_up;
    u_char                          redis_node[NGX_SOCKADDR_STRLEN + 1];
    ngx_atomic_uint_t               syncs;
    ngx_atomic_uint_t               sync_errors;
    ngx_atomic_uint_t               refused;
    ngx_atomic_uint_t               last_sync;
    ngx_atomic_uint_t               restores;
    ngx_atomic_uint_t               restored;
    ngx_atomic_uint_t               restored_rollouts;
    ngx_atomic_uint_t               auto_leader;
    ngx_atomic_uint_t               api_writes[8][4];
    size_t                          zone_size;
    size_t                          zone_free;

    /* replaced state not yet freed, what was, and whom it waits for */
    ngx_uint_t                      retired;
    size_t                          retired_bytes;
    ngx_atomic_uint_t               freed;
    ngx_pid_t                       holder;
    ngx_msec_t                      now_msec;
    time_t                          now;

    ngx_str_t                       api;        /* canary_status api= */
} ngx_http_canary_report_t;


extern ngx_str_t  ngx_http_canary_shadow_name;


/* the report of every rollout, read from the zone once (status, API) */
ngx_int_t ngx_http_canary_report(ngx_http_request_t *r,
    ngx_http_canary_report_t *rp);


#if (__GNUC__ >= 4)
#pragma GCC visibility pop
#endif


#endif /* _NGX_HTTP_CANARY_STATUS_H_INCLUDED_ */
