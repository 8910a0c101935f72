
/*
 * Copyright (C) ngx_http_canary_module authors
 */


#ifndef _NGX_HTTP_CANARY_SYNC_H_INCLUDED_
#define _NGX_HTTP_CANARY_SYNC_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_http.h>

#include "ngx_http_canary_redis.h"
#include "ngx_http_canary_snapshot.h"
#include "ngx_http_canary_values.h"
#include "ngx_http_canary_state.h"


#if (__GNUC__ >= 4)
#pragma GCC visibility push(hidden)
#endif


/*
 * The sync worker's own types, shared by its files (ngx_http_canary_sync.c
 * start and stop, _subscribe.c, _sync_round.c, _restore.c, _sync_sets.c)
 * and the fuzzer of its replies
 */

typedef struct ngx_http_canary_sync_rollout_s
    ngx_http_canary_sync_rollout_t;

/* the last good state being written back into an empty Redis */
typedef struct ngx_http_canary_restore_s  ngx_http_canary_restore_t;


/* a user set of a rollout, what its SCARD reply is handed */
typedef struct {
    ngx_http_canary_sync_rollout_t *sr;
    ngx_uint_t                      which;
} ngx_http_canary_sync_setref_t;


/*
 * A rollout as the sync worker reads it; its user sets ("which", see
 * ngx_http_canary_snapshot_set()) are canary_users, stable_users, and one
 * users:<arm> set for each arm.
 */
struct ngx_http_canary_sync_rollout_s {
    ngx_http_canary_rollout_t      *ro;
    ngx_str_t                       key;
    ngx_uint_t                      nsets;
    ngx_str_t                       set_key[NGX_HTTP_CANARY_NSETS];
    ngx_str_t                       set_name[NGX_HTTP_CANARY_NSETS];
    ngx_http_canary_sync_setref_t   ref[NGX_HTTP_CANARY_NSETS];

    /* what the last HGETALL refused, see ngx_http_canary_values.c */
    ngx_http_canary_refusals_t      rf;

    ngx_int_t                       scard[NGX_HTTP_CANARY_NSETS];
    ngx_int_t                       too_big[NGX_HTTP_CANARY_NSETS];
    size_t                          need[NGX_HTTP_CANARY_NSETS];

    /* refusals for lack of room: the last one logged, when, and how
       many of the same since */
    ngx_str_t                      *nomem_key;
    ngx_int_t                       nomem_members;
    ngx_msec_t                      nomem_logged;
    ngx_uint_t                      nomem_suppressed;
    uint32_t                        dirty;      /* bit "which" */
    uint32_t                        whole;      /* replaced, not changed */
    unsigned                        missing:1;  /* no hash, while suspect */
};


typedef struct ngx_http_canary_sync_s  ngx_http_canary_sync_t;

struct ngx_http_canary_sync_s {
    ngx_http_canary_main_conf_t    *cmcf;
    ngx_log_t                      *log;
    ngx_http_canary_redis_t        *redis;
    ngx_http_canary_redis_t        *sub;
    ngx_event_t                     timer;

    ngx_http_canary_sync_rollout_t *rollouts;
    ngx_uint_t                      nrollouts;

    /* a hash reply's scratch memory, reset after each (no cleanups:
       ngx_reset_pool() does not run them) */
    ngx_pool_t                     *scratch;

    ngx_uint_t                      waiting;
    unsigned                        busy:1;
    unsigned                        again:1;
    unsigned                        failed:1;
    unsigned                        changed:1;
    unsigned                        ping:1;
    unsigned                        closed:1;

    /* the set being read */
    ngx_http_canary_sync_rollout_t *set_sr;
    ngx_uint_t                      set_which;
    ngx_http_canary_set_t          *set;
    ngx_uint_t                      set_batches;
    ngx_uint_t                      set_scanning;
    ngx_event_t                     set_clear;

    /* changed in place: the read's generation, where its end is, counts */
    ngx_uint_t                      set_gen;
    ngx_uint_t                      set_pos;
    ngx_uint_t                      set_seen;
    ngx_uint_t                      set_added;
    ngx_uint_t                      set_removed;
    ngx_uint_t                      set_long;   /* members too long */
    size_t                          set_keys;   /* their bytes, seen */
    unsigned                        set_inplace:1;
    unsigned                        set_sweeping:1;

    /* a round asked for before NGX_HTTP_CANARY_SYNC_GAP was over */
    ngx_event_t                     soon;
    ngx_msec_t                      started;
    ngx_http_canary_users_file_t    users;      /* the set's file */

    ngx_err_t                       state_err;
    uint64_t                        state_auto; /* its "auto" lines' sum */
    u_char                         *channels;

    /*
     * The Redis instance behind sync->redis: its run_id, asked once per
     * connection (generation: the connection's, plus one).  "suspect":
     * another instance than the last good state came from, whose keys
     * decide at the end of the round whether it lost its data.
     */
    ngx_uint_t                      generation;
    u_char                          run_id[NGX_HTTP_CANARY_RUN_ID_LEN + 1];
    ngx_str_t                       lease;      /* <prefix>restore */
    ngx_str_t                       begun;      /* <prefix>restoring */
    ngx_str_t                       node;       /* its value, this node */
    ngx_str_t                       changed_channel;
    ngx_http_canary_restore_t      *restore;

    /* a restore is over: the rounds carry on (ngx_http_canary_restore.c
       is below the round, which sets this) */
    void                          (*restored)(ngx_http_canary_sync_t *sync);

    unsigned                        suspect:1;
    unsigned                        present:1;  /* a key, while suspect */
    unsigned                        held:1;     /* the lease, by another */
    unsigned                        held_mine:1;
    unsigned                        unfinished:1;   /* a restore begun */
    unsigned                        from_file:1;    /* its source */
    unsigned                        info_err:1; /* logged */
    unsigned                        waited:1;   /* logged */
    unsigned                        restore_err:1;  /* logged */
};


/* the state file written from the zone, its errors noted in sync */
#define ngx_http_canary_sync_save(sync)                                      \
    ngx_http_canary_state_write((sync)->cmcf, (sync)->log,                   \
                                &(sync)->state_err, &(sync)->state_auto)


/*
 * ngx_http_canary_sync.c's functions, called by module.c, are declared
 * in ngx_http_canary_module.h
 */


#if (__GNUC__ >= 4)
#pragma GCC visibility pop
#endif


#endif /* _NGX_HTTP_CANARY_SYNC_H_INCLUDED_ */
