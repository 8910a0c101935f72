
/*
 * Copyright (C) ngx_http_canary_module authors
 */


#ifndef _NGX_HTTP_CANARY_MODULE_H_INCLUDED_
#define _NGX_HTTP_CANARY_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_canary_bucket.h"
#include "ngx_http_canary_parse.h"
#include "ngx_http_canary_policy.h"
#include "ngx_http_canary_reclaim.h"

/*
 * canary_redis's conf and a connection to Redis (outside the hidden
 * block below: hiredis' own functions keep their default visibility)
 */
#include "ngx_http_canary_redis.h"


/*
 * The module's own functions and data are hidden: nginx finds a dynamic
 * module by the names in its generated ngx_http_canary_module_modules.c
 * only, and a hidden symbol is called and read directly instead of
 * through the PLT and the GOT, which the request path feels.
 */
#if (__GNUC__ >= 4)
#pragma GCC visibility push(hidden)
/* a rare branch of a request path function, kept out of its frame */
#define ngx_http_canary_noinline  __attribute__((noinline))
#else
#define ngx_http_canary_noinline
#endif

/*
 * Variants of a rollout: 0 is stable (the users outside the experiment),
 * 1 .. narms the arms in their declared order; a two-sided rollout has
 * one arm, "canary".  The auto controller's figures keep two sides,
 * stable and canary (every arm).
 */
#define NGX_HTTP_CANARY_STABLE         0
#define NGX_HTTP_CANARY_CANARY         1
#define NGX_HTTP_CANARY_NVARIANTS      2
#define NGX_HTTP_CANARY_MAX_ARMS       16
#define NGX_HTTP_CANARY_MAX_ROLLOUTS   65535
/* the decisions a request context holds before it needs "all" */
#define NGX_HTTP_CANARY_CTX_FEW        3
/* stable and the arms; a pseudo-variant after the arms needs one more */
#define NGX_HTTP_CANARY_MAX_VARIANTS   (1 + NGX_HTTP_CANARY_MAX_ARMS)
#define NGX_HTTP_CANARY_MAX_WEIGHT     10000

/*
 * Shadow traffic is counted as a variant of its own, "shadow", after the
 * last arm (index nvariants in the status page's loops), in a block of
 * its own (ngx_http_canary_shrollout_t.shadow, one per slot); the auto
 * controller keeps its figures in the row after the arms' rows.
 */
#define NGX_HTTP_CANARY_AUTO_SHADOW    NGX_HTTP_CANARY_AUTO_ROWS

/* the step of the evaluation order that decided, see $canary_reason */
#define NGX_HTTP_CANARY_REASON_OVERRIDE      0
#define NGX_HTTP_CANARY_REASON_CANARY_USERS  1
#define NGX_HTTP_CANARY_REASON_STABLE_USERS  2
#define NGX_HTTP_CANARY_REASON_NO_KEY        3
#define NGX_HTTP_CANARY_REASON_WINDOW        4
#define NGX_HTTP_CANARY_REASON_MATCH         5
#define NGX_HTTP_CANARY_REASON_REQUIRES      6
#define NGX_HTTP_CANARY_REASON_SEGMENT       7
#define NGX_HTTP_CANARY_REASON_PERCENT       8
#define NGX_HTTP_CANARY_REASON_ARM_OFF       9

/* where a rollout's published values came from */
#define NGX_HTTP_CANARY_SOURCE_CONFIG        0
#define NGX_HTTP_CANARY_SOURCE_REDIS         1
#define NGX_HTTP_CANARY_SOURCE_STATE_FILE    2

/* the automatic progression's state, the "state" field in Redis */
#define NGX_HTTP_CANARY_STATE_NONE           0
#define NGX_HTTP_CANARY_STATE_PROGRESSING    1
#define NGX_HTTP_CANARY_STATE_PAUSED         2
#define NGX_HTTP_CANARY_STATE_PROMOTED       3
#define NGX_HTTP_CANARY_STATE_ROLLED_BACK    4
#define NGX_HTTP_CANARY_STATE_WAITING        5    /* at a gate */

/*
 * request time histogram: 23 upper bounds in milliseconds (see
 * ngx_http_canary_stats.c), then +Inf; with the 8 other counters a
 * variant's counters fill exactly four 64-byte cache lines
 */
#define NGX_HTTP_CANARY_HIST_BUCKETS   24

#define NGX_HTTP_CANARY_MAX_SLOTS      64

/* a Redis instance's run_id (INFO server): 40 hex digits, then a NUL */
#define NGX_HTTP_CANARY_RUN_ID_LEN     40


/* the counters below but the padding, and the padding's atomics */
#define NGX_HTTP_CANARY_NCOUNTERS  (9 + NGX_HTTP_CANARY_HIST_BUCKETS)
#define NGX_HTTP_CANARY_COUNTERS_PAD                                         \
    ((ngx_align(NGX_HTTP_CANARY_NCOUNTERS * sizeof(ngx_atomic_t),            \
                NGX_CPU_CACHE_LINE)                                          \
      - NGX_HTTP_CANARY_NCOUNTERS * sizeof(ngx_atomic_t))                    \
     / sizeof(ngx_atomic_t))

/*
 * Counters of one variant as written by one worker slot.  Every field is
 * added to with an atomic add: a slot normally has one writer, but during
 * a reload an old and a new worker with the same number may share it.
 * Padded to a multiple of the cache line so that slots never share one.
 */
typedef struct {
    ngx_atomic_t                    requests;
    ngx_atomic_t                    responses[5];      /* 1xx .. 5xx */
    ngx_atomic_t                    upstream_errors;
    ngx_atomic_t                    errors;     /* 5xx or upstream error */
    ngx_atomic_t                    time_sum_ms;
    ngx_atomic_t                    hist[NGX_HTTP_CANARY_HIST_BUCKETS];

    /* to the next multiple of the cache line (on x86_64 5 lines, 320) */
    ngx_atomic_t                    pad[NGX_HTTP_CANARY_COUNTERS_PAD];
} ngx_http_canary_counters_t;


/* a segment value and its percent, sorted by value in the snapshot */
typedef struct {
    ngx_str_t                       value;
    ngx_uint_t                      percent;
} ngx_http_canary_segment_t;


/*
 * A set of user keys: an open-addressing table of hashes with the keys
 * kept beside them, so membership is exact.  Changed in place by the sync
 * process, read without a lock; see ngx_http_canary_set.c.
 */
typedef struct ngx_http_canary_set_s  ngx_http_canary_set_t;


/*
 * The published state of a rollout.  Immutable once published: the sync
 * worker builds a new snapshot beside the old one, publishes it with one
 * pointer store, and frees the old one once no worker can read it (see
 * ngx_http_canary_reclaim.c).  Readers take no lock.  The user sets it
 * names change in place (ngx_http_canary_set.c).
 */
typedef struct {
    ngx_uint_t                      percent;        /* hundredths 0..10000 */

    /*
     * No user sets (nor an arm's), no time window, no arm off, a weight:
     * set when it is published, for ngx_http_canary_decide_plain(), which
     * then reads this cache line only
     */
    ngx_uint_t                      plain;

    time_t                          start;          /* 0: no bound */
    time_t                          end;            /* 0: no bound */
    ngx_uint_t                      state;
    ngx_uint_t                      source;
    time_t                          updated;        /* when published */
    ngx_msec_t                      updated_ms;     /* the same, in ms */
    ngx_uint_t                      nsegments;
    ngx_http_canary_segment_t      *segments;
    ngx_http_canary_set_t          *canary_users;
    ngx_http_canary_set_t          *stable_users;

    /* users:<arm> sets, bit a of the mask for arm a + 1 */
    uint32_t                        arm_users_mask;
    ngx_http_canary_set_t          *arm_users[NGX_HTTP_CANARY_MAX_ARMS];

    /* the allocation: each arm's weight, their sum, the arms off */
    uint32_t                        total;
    uint32_t                        arms_off;   /* bit a: arm a + 1 */
    uint32_t                        weight[NGX_HTTP_CANARY_MAX_ARMS];

    ngx_uint_t                      shadow;         /* hundredths 0..10000 */
} ngx_http_canary_snapshot_t;


/*
 * A rollout's user sets, "which": 0 canary_users (the first arm),
 * 1 stable_users, 2 + a users:<arm a + 1>
 */
#define NGX_HTTP_CANARY_NSETS          (2 + NGX_HTTP_CANARY_MAX_ARMS)

#define ngx_http_canary_snapshot_set(snap, which)                            \
    (*((which) == 0 ? &(snap)->canary_users                                  \
       : (which) == 1 ? &(snap)->stable_users                                \
       : &(snap)->arm_users[(which) - 2]))


/*
 * An automatic rollout's state as Redis holds it, for the status page:
 * written by the sync worker's auto controller, read by the status
 * handler, both under the zone's mutex.
 */
typedef struct {
    ngx_uint_t                      step;       /* 1-based, 0: none */
    ngx_uint_t                      nsteps;
    ngx_uint_t                      failures;
    uint64_t                        since;      /* unix ms */
    uint64_t                        checked;    /* unix ms */
    uint64_t                        decided_at; /* unix ms */
    uint64_t                        interval;   /* unix ms, judged */
    ngx_uint_t                      nodes;
    uint64_t                        requests[NGX_HTTP_CANARY_NVARIANTS];
    uint64_t                        errors[NGX_HTTP_CANARY_NVARIANTS];
    uint64_t                        error_rate[NGX_HTTP_CANARY_NVARIANTS];
    uint64_t                        p99[NGX_HTTP_CANARY_NVARIANTS];
    time_t                          updated;
    size_t                          decision_len;
    size_t                          reason_len;
    size_t                          decided_by_len;
    ngx_uint_t                      dark;       /* in the dark phase */
    ngx_uint_t                      dark_passed;
    uint32_t                        gate;       /* percent awaited, or 0 */
    u_char                          decision[16];
    u_char                          reason[NGX_HTTP_CANARY_REASON_LEN];
    u_char                          decided_by[64];
} ngx_http_canary_auto_status_t;


/* the figures of an interval: requests, errors, then the histogram */
#define NGX_HTTP_CANARY_AUTO_NFIG  (2 + NGX_HTTP_CANARY_HIST_BUCKETS)

/*
 * What this node has added to the fleet's figures of an automatic
 * rollout: its counters at the last interval boundary it flushed, and
 * that boundary.  In the zone, under its mutex: the worker 0 that follows
 * a reload or a crash carries on from there, so the requests of the
 * interval it starts in are not lost, and each boundary is flushed once
 * whichever worker 0 sees it first.
 */
/* the rows of figures: stable, canary (every arm), then each arm's own */
#define NGX_HTTP_CANARY_AUTO_ROWS  (2 + NGX_HTTP_CANARY_MAX_ARMS)

typedef struct {
    uint64_t                        flushed;    /* unix ms, 0: never */
    uint64_t                        base[NGX_HTTP_CANARY_AUTO_ROWS + 1]
                                        [NGX_HTTP_CANARY_AUTO_NFIG];
                                        /* the rows, then shadow */
} ngx_http_canary_auto_base_t;


/*
 * A user set's file beside the state file, being written by the sync
 * worker; see ngx_http_canary_users.c.
 */
typedef struct {
    ngx_fd_t                        fd;         /* NGX_INVALID_FILE: none */
    ngx_str_t                       path;
    ngx_str_t                       tmp;
    u_char                         *buf;
    size_t                          len;
    ngx_uint_t                      n;          /* members written */
    ngx_err_t                       err;        /* the last one logged */
    ngx_log_t                      *log;
} ngx_http_canary_users_file_t;


/* a rollout as kept in the shared zone; found again by name on reload */
typedef struct ngx_http_canary_shrollout_s  ngx_http_canary_shrollout_t;

/*
 * The counters are nslots x nvariants ngx_http_canary_counters_t, slot
 * major: worker slot s writes counters[s * nvariants + variant] only.
 * "variants" names them ("stable,blue,green"): a reload that changes the
 * variants gets new counters, see ngx_http_canary_shm_rollout().
 */
struct ngx_http_canary_shrollout_s {
    ngx_http_canary_snapshot_t     *volatile snapshot;
    ngx_http_canary_counters_t     *counters;
    ngx_uint_t                      nvariants;
    ngx_str_t                       variants;
    ngx_http_canary_shrollout_t    *next;
    ngx_uint_t                      config_percent;
    ngx_str_t                       name;
    ngx_atomic_t                    synced;     /* when Redis last gave its
                                                   values, unix seconds */
    ngx_http_canary_auto_status_t  *autost;     /* "auto" only */
    ngx_http_canary_auto_base_t    *autobase;   /* "auto" only */

    /* shadow traffic's counters, one per slot; NULL: never shadowed */
    ngx_http_canary_counters_t     *shadow;
    ngx_uint_t                      config_shadow;
};


typedef struct {
    ngx_http_canary_shrollout_t    *rollouts;
    ngx_uint_t                      nslots;

    /* replaced snapshots and sets, freed when no worker can read them */
    ngx_http_canary_reclaim_t       reclaim;

    /* module-wide figures, written by the sync worker */
    ngx_atomic_t                    redis_up;
    ngx_atomic_t                    syncs;
    ngx_atomic_t                    sync_errors;
    ngx_atomic_t                    refused;
    ngx_atomic_t                    last_sync;      /* unix seconds */
    ngx_atomic_t                    sync_pid;       /* the writer */
    ngx_atomic_t                    auto_leader;    /* holds the lease */

    /* canary_api's writes by action and result (ngx_http_canary_conf.h) */
    ngx_atomic_t                    api_writes[8][4];

    /* the user set being read, and by whom: freed by the next sync
       worker if its builder died before publishing it */
    ngx_http_canary_set_t          *building;
    ngx_pid_t                       building_pid;

    /* the Redis instance the last good state came from ("" unknown),
       and the restores of that state into an instance that lost it */
    u_char                          run_id[NGX_HTTP_CANARY_RUN_ID_LEN + 1];
    ngx_atomic_t                    restored;       /* unix seconds */
    ngx_atomic_t                    restores;
    ngx_atomic_t                    restored_rollouts;

    /* the Redis node the sync worker last synced with (the master that
       Sentinel names, the slot's master in a cluster); text, NUL-ended */
    u_char                          redis_node[NGX_SOCKADDR_STRLEN + 1];
} ngx_http_canary_shctx_t;


/* a value from the request: one variable by index, or a complex value */
typedef struct {
    ngx_int_t                       index;
    ngx_http_complex_value_t       *cv;
    unsigned                        set:1;
} ngx_http_canary_value_t;


/* a "match $var ~regex" eligibility rule */
typedef struct {
    ngx_http_canary_value_t         value;
    ngx_regex_t                    *regex;
} ngx_http_canary_match_t;


/* a rollout named by "requires", and where it was named */
typedef struct {
    ngx_str_t                       name;
    ngx_str_t                       file;
    ngx_uint_t                      line;
} ngx_http_canary_require_t;


/* a variant: stable (0) or an arm, with its upstream and weight */
typedef struct {
    ngx_str_t                       name;
    ngx_str_t                       upstream;
    ngx_uint_t                      weight;     /* 0 for stable */
    ngx_str_t                       users;      /* "<rollout>:<arm>" */
    ngx_str_t                       file;       /* "variant" arms only */
    ngx_uint_t                      line;
} ngx_http_canary_variant_t;


typedef struct {
    ngx_str_t                       name;
    ngx_str_t                       word;   /* the name in the variable's */
    ngx_uint_t                      index;
    ngx_array_t                     keys;       /* ngx_http_canary_value_t */
    ngx_uint_t                      nvariants;  /* 1 + arms (+ others) */
    ngx_uint_t                      narms;      /* variants 1 .. narms */
    ngx_http_canary_variant_t       variants[NGX_HTTP_CANARY_MAX_VARIANTS];
    ngx_uint_t                      total;      /* the arms' weights */
    ngx_uint_t                      percent;
    ngx_uint_t                      hash;
    ngx_str_t                       salt;
    ngx_http_canary_murmur3_t       salted;     /* state after "<salt>:" */
    ngx_http_canary_murmur3_t       arm_salted; /* the same, arm's seed */
    ngx_http_canary_value_t         override;
    ngx_http_canary_value_t         segment;
    ngx_http_canary_match_t        *match;
    ngx_array_t                     requires;   /* ngx_http_canary_require_t */
    ngx_uint_t                     *requires_index;
    ngx_uint_t                      nrequires;
    ngx_http_canary_policy_t       *policy;     /* "auto", or NULL */
    ngx_array_t                    *checks;     /* "check=": ngx_str_t,
                                                   NUL-terminated; or NULL */
    ngx_msec_t                      check_timeout;
    ngx_str_t                       check_ca;   /* "check_ca=", or empty */
    ngx_uint_t                      shadow;     /* hundredths, "shadow" */
    unsigned                        shadowed:1; /* in a canary_shadow
                                                   location's rollout */

    /* no override, segment, match or requires, keys all variables: the
       request path decides it without ngx_http_canary_evaluate() */
    unsigned                        plain:1;

    ngx_str_t                       file;
    ngx_uint_t                      line;

    ngx_http_canary_shrollout_t    *sh;

    /*
     * sh->counters when this configuration was loaded: the workers of an
     * older configuration keep writing the counters of its variants
     */
    ngx_http_canary_counters_t     *counters;
} ngx_http_canary_rollout_t;


/*
 * Rollouts by name (or by the name in their variable's, "word"): an
 * open-addressing table of index + 1 (0: empty), at most half full, so
 * that a configuration of N rollouts is read in time linear in N
 */
typedef struct {
    uint32_t                       *slots;
    ngx_uint_t                      size;       /* a power of two, or 0 */
} ngx_http_canary_names_t;


typedef struct {
    ngx_array_t                     rollouts;   /* ngx_http_canary_rollout_t */
    ngx_http_canary_names_t         names;
    ngx_http_canary_names_t         words;
    ngx_cycle_t                    *cycle;
    ngx_shm_zone_t                 *shm_zone;
    ngx_http_canary_shctx_t        *sh;
    ngx_slab_pool_t                *shpool;

    ngx_http_canary_redis_conf_t   *redis;      /* canary_redis, or NULL */
    ngx_msec_t                      sync_interval;
    ngx_str_t                       state_file;
    ngx_str_t                       node_id;    /* canary_node_id */
    ngx_array_t                    *webhooks;   /* canary_webhook, or NULL */
    ngx_uint_t                      shadow;     /* a canary_shadow seen */
    ngx_uint_t                      api;        /* a canary_api seen */

    /* the first of the two slots of r->variables that hold a main
       request's context, see ngx_http_canary_get_ctx() */
    ngx_int_t                       ctx_index;
} ngx_http_canary_main_conf_t;


typedef struct {
    ngx_int_t                       rollout;    /* index or NGX_CONF_UNSET */
    ngx_flag_t                      status;

    /* canary_shadow URI (an empty one: "off"), canary_shadow_methods */
    ngx_str_t                       shadow;
    ngx_uint_t                      shadow_methods;
    ngx_str_t                       shadow_file;
    ngx_uint_t                      shadow_line;

    /* canary_api: its answers' timeout (NGX_CONF_UNSET_MSEC: no API
       here), canary_api_actor; canary_status api=: the API's URI */
    ngx_msec_t                      api_timeout;
    ngx_http_complex_value_t       *api_actor;
    ngx_str_t                       status_api;

    /* "canary NAME" as written, resolved when the location is merged */
    ngx_str_t                       name;
    ngx_str_t                       file;
    ngx_uint_t                      line;
} ngx_http_canary_loc_conf_t;


/* the decision for one rollout, packed; cached per request */
typedef struct {
    unsigned                        decided:1;
    unsigned                        has_bucket:1;
    unsigned                        variant:5;
    unsigned                        reason:4;
    unsigned                        bucket:16;
} ngx_http_canary_decision_t;


/*
 * The request's context.  A main request's survives the reset of the
 * module contexts by an internal redirect (error_page, try_files,
 * X-Accel-Redirect): the decisions stay the same for the whole request,
 * and the request is counted once, under the rollout of the first
 * "canary" location it entered ("routed", index + 1; 0 when none yet;
 * 16 bits, hence NGX_HTTP_CANARY_MAX_ROLLOUTS).  Whole bytes rather than
 * bit fields: the rewrite and log handlers read and write them on every
 * request.
 *
 * The decisions of the first three rollouts the request reads are kept
 * beside their indexes ("key", index + 1; 0 when free); the fourth makes
 * "all", one decision per rollout configured, from the request pool.  So
 * a request pays for the rollouts it reads, not for those configured.
 * 32 bytes: the two slots of r->variables where nginx has already
 * allocated and zeroed it (see ngx_http_canary_get_ctx()).
 */
typedef struct {
    uint16_t                        routed;
    u_char                          counted;
    u_char                          shadow;     /* NGX_HTTP_CANARY_SHADOW_* */
    uint16_t                        key[NGX_HTTP_CANARY_CTX_FEW];
    ngx_http_canary_decision_t      few[NGX_HTTP_CANARY_CTX_FEW];
    ngx_http_canary_decision_t     *all;        /* one per rollout, or NULL */
} ngx_http_canary_ctx_t;


/* where a request is with its shadow (ngx_http_canary_shadow.c) */
#define NGX_HTTP_CANARY_SHADOW_NONE     0
#define NGX_HTTP_CANARY_SHADOW_BODY     1
#define NGX_HTTP_CANARY_SHADOW_CHECKED  2
#define NGX_HTTP_CANARY_SHADOW_SENT     3


/*
 * Explicit inputs of an evaluation (the "explain" query of canary_status)
 * instead of the request's variables, and what it found out besides the
 * decision.
 */
typedef struct {
    ngx_str_t                       key;
    ngx_str_t                       override;
    ngx_str_t                       segment;
    unsigned                        has_override:1;
    unsigned                        has_segment:1;

    /* out: the percent compared with the bucket (hundredths), or -1 */
    ngx_int_t                       percent;
    /* out: -1 no "match" or not reached, 0 did not match, 1 matched */
    ngx_int_t                       match;
} ngx_http_canary_input_t;


/*
 * The one process that talks to Redis and writes the zone after start:
 * worker 0, or the single process.  The sync and the auto controller both
 * run there.
 */
#define ngx_http_canary_sync_process()                                       \
    (ngx_process == NGX_PROCESS_SINGLE                                       \
     || (ngx_process == NGX_PROCESS_WORKER && ngx_worker == 0))


extern ngx_module_t  ngx_http_canary_module;


/* ngx_http_canary_conf.c, ngx_http_canary_decide.c */
#include "ngx_http_canary_conf.h"
#include "ngx_http_canary_decide.h"

/* ngx_http_canary_shm.c */
ngx_int_t ngx_http_canary_shm_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
u_char *ngx_http_canary_zone_room(ngx_http_canary_main_conf_t *cmcf,
    u_char *buf, size_t need);
u_char *ngx_http_canary_size_text(u_char *buf, size_t bytes);
ngx_int_t ngx_http_canary_shm_init_process(ngx_cycle_t *cycle);
void ngx_http_canary_shm_exit_process(ngx_cycle_t *cycle);

/* "needs 1023.9 MB, 1023.9 MB free of 1023.9 MB" and a little more */
#define NGX_HTTP_CANARY_ROOM_LEN       128

/* ngx_http_canary_set.c */
ngx_http_canary_set_t *ngx_http_canary_set_create_locked(
    ngx_slab_pool_t *shpool, ngx_uint_t expected);
size_t ngx_http_canary_set_need(ngx_uint_t n, size_t keys);
ngx_int_t ngx_http_canary_set_clear(ngx_http_canary_set_t *set);
ngx_uint_t ngx_http_canary_set_begin(ngx_http_canary_set_t *set);
ngx_uint_t ngx_http_canary_set_gen(ngx_http_canary_set_t *set);
ngx_int_t ngx_http_canary_set_add_locked(ngx_slab_pool_t *shpool,
    ngx_http_canary_reclaim_t *rc, ngx_http_canary_set_t *set, u_char *data,
    size_t len, ngx_uint_t gen);
ngx_int_t ngx_http_canary_set_sweep_locked(ngx_slab_pool_t *shpool,
    ngx_http_canary_reclaim_t *rc, ngx_http_canary_set_t *set,
    ngx_uint_t gen, ngx_uint_t *pos, ngx_uint_t max, ngx_uint_t *removed);
ngx_uint_t ngx_http_canary_set_contains(ngx_http_canary_set_t *set,
    ngx_str_t *key);
ngx_uint_t ngx_http_canary_set_size(ngx_http_canary_set_t *set);
ngx_int_t ngx_http_canary_set_next(ngx_http_canary_set_t *set,
    ngx_uint_t *pos, ngx_str_t *key);
size_t ngx_http_canary_set_bytes(ngx_http_canary_set_t *set);
void ngx_http_canary_set_free_locked(ngx_slab_pool_t *shpool,
    ngx_http_canary_set_t *set);
ngx_int_t ngx_http_canary_set_retire_locked(ngx_slab_pool_t *shpool,
    ngx_http_canary_reclaim_t *rc, ngx_http_canary_set_t *set);

/* the longest member of a user set, in bytes */
#define NGX_HTTP_CANARY_SET_KEY_MAX    65535

/* ngx_http_canary_state.c: the zone's init hook, canary_state_file */
ngx_int_t ngx_http_canary_init_zone(ngx_shm_zone_t *shm_zone, void *data);
char *ngx_http_canary_state_file(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/* ngx_http_canary_sync.c */
ngx_int_t ngx_http_canary_sync_init_process(ngx_cycle_t *cycle);
void ngx_http_canary_sync_exit_process(ngx_cycle_t *cycle);
char *ngx_http_canary_sync_interval(ngx_conf_t *cf, void *post,
    void *data);

/* ngx_http_canary_stats.c */
extern ngx_msec_t  ngx_http_canary_hist_bounds[];

extern ngx_uint_t  ngx_http_canary_slot;

void ngx_http_canary_count_status(ngx_http_request_t *r,
    ngx_http_canary_counters_t *c, ngx_uint_t status);

/* a rollout's (or a zone rollout's) counters of a slot and variant */
#define ngx_http_canary_counters(ro, slot, variant)                           \
    (&(ro)->counters[(slot) * (ro)->nvariants + (variant)])

/* ngx_http_canary_auto_conf.c, ngx_http_canary_auto.c */
#include "ngx_http_canary_auto_conf.h"
#include "ngx_http_canary_auto.h"

/* ngx_http_canary_status.c */
char *ngx_http_canary_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);


/*
 * A JSON string's bytes escaped into an event's fixed buffer, as many as
 * fit before last (6 a byte at worst), 16 bytes left for what closes the
 * object: the object stays well-formed, its strings cut short
 */

static ngx_inline u_char *
ngx_http_canary_json_str(u_char *p, u_char *last, u_char *s, size_t len)
{
    size_t  room;

    room = (size_t) (last - p);

    if (room < 16) {
        return p;
    }

    room -= 16;

    if (len + ngx_escape_json(NULL, s, len) > room) {
        len = room / 6;
    }

    return (u_char *) ngx_escape_json(p, s, len);
}


/* the cached time in milliseconds since the epoch (history, events) */

static ngx_inline uint64_t
ngx_http_canary_now_ms(void)
{
    ngx_time_t  *tp;

    tp = ngx_timeofday();

    return (uint64_t) tp->sec * 1000 + tp->msec;
}


#if (__GNUC__ >= 4)
#pragma GCC visibility pop
#endif


#endif /* _NGX_HTTP_CANARY_MODULE_H_INCLUDED_ */
