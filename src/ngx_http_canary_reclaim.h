
/*
 * Copyright (C) ngx_http_canary_module authors
 */


#ifndef _NGX_HTTP_CANARY_RECLAIM_H_INCLUDED_
#define _NGX_HTTP_CANARY_RECLAIM_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


#if (__GNUC__ >= 4)
#pragma GCC visibility push(hidden)
#endif


/*
 * Epoch-based reclamation of the zone's memory; see
 * ngx_http_canary_reclaim.c.
 */

/* the processes that may read the zone at once, old and new workers */
#define NGX_HTTP_CANARY_MAX_READERS    256

/* how often each worker says it holds nothing, in milliseconds */
#define NGX_HTTP_CANARY_QUIESCE        100

/* what a retired block is, and so how it is freed */
#define NGX_HTTP_CANARY_RETIRED_BLOCK  0    /* one slab block */
#define NGX_HTTP_CANARY_RETIRED_CHAIN  1    /* blocks linked by their first
                                               word (a set's arenas) */


typedef struct {
    ngx_atomic_t                    pid;        /* 0: a free entry */
    ngx_atomic_t                    epoch;      /* seen at a quiescent
                                                   point */
} ngx_http_canary_reader_t;


typedef struct ngx_http_canary_retired_s  ngx_http_canary_retired_t;

struct ngx_http_canary_retired_s {
    ngx_http_canary_retired_t      *next;
    void                           *data;
    size_t                          bytes;
    ngx_atomic_uint_t               epoch;      /* the epoch it left in */
    ngx_msec_t                      when;       /* for the figures */
    ngx_uint_t                      type;
};


/* in the zone's context: the epoch, the readers, what waits for them */
typedef struct {
    ngx_atomic_t                    epoch;
    ngx_http_canary_retired_t      *retired;    /* newest first */
    size_t                          retired_bytes;
    ngx_uint_t                      nretired;
    ngx_pid_t                       holder;     /* the reader last waited
                                                   for, 0: none */
    ngx_atomic_t                    freed;      /* blocks, ever */
    ngx_atomic_t                    freed_bytes;
    ngx_atomic_t                    unregistered;   /* readers without an
                                                       entry */
    ngx_http_canary_reader_t        readers[NGX_HTTP_CANARY_MAX_READERS];
} ngx_http_canary_reclaim_t;


ngx_http_canary_reader_t *ngx_http_canary_reader_register(
    ngx_slab_pool_t *shpool, ngx_http_canary_reclaim_t *rc, ngx_log_t *log);
void ngx_http_canary_reader_unregister(ngx_slab_pool_t *shpool,
    ngx_http_canary_reclaim_t *rc, ngx_http_canary_reader_t *reader);
void ngx_http_canary_quiesce(ngx_http_canary_reclaim_t *rc,
    ngx_http_canary_reader_t *reader);
ngx_int_t ngx_http_canary_retire_locked(ngx_slab_pool_t *shpool,
    ngx_http_canary_reclaim_t *rc, void *data, ngx_uint_t type,
    size_t bytes);
ngx_uint_t ngx_http_canary_reclaim_locked(ngx_slab_pool_t *shpool,
    ngx_http_canary_reclaim_t *rc, ngx_http_canary_reader_t *self,
    ngx_log_t *log);
ngx_uint_t ngx_http_canary_reclaim_now_locked(ngx_slab_pool_t *shpool,
    ngx_http_canary_reclaim_t *rc, ngx_log_t *log);


/* this process's entry; the sync holds pointers into the zone */
extern ngx_http_canary_reader_t  *ngx_http_canary_reader;
extern ngx_uint_t                 ngx_http_canary_held;


#if (__GNUC__ >= 4)
#pragma GCC visibility pop
#endif


#endif /* _NGX_HTTP_CANARY_RECLAIM_H_INCLUDED_ */
