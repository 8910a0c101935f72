
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * Redis to the shared zone: the sync worker (worker 0, or the single
 * process) reads every declared rollout from Redis and publishes what
 * changed as new snapshots; and the state file, the last good state kept
 * across restarts.
 *
 * One round, every canary_sync_interval and at once after a push message:
 * for each rollout, pipelined in one write,
 *
 *     HGETALL <prefix>rollout:<name>
 *     SCARD   <prefix>rollout:<name>:canary_users
 *     SCARD   <prefix>rollout:<name>:stable_users
 *     SCARD   <prefix>rollout:<name>:users:<arm>    (with arms, each)
 *
 * Each field is parsed strictly; a bad value is refused (one error line,
 * counted in sh->refused, logged again only if the value changes) and the
 * field keeps its last good value.  A missing hash means the config's
 * values.  A snapshot is published only when something differs.
 *
 * A user set is read only when its SCARD differs from the published set's
 * size, or a push message named it: SSCAN 1000 members per reply, one
 * reply per event-loop turn (the slab mutex is held per batch only).  A
 * set that keeps most of its members is changed in place: each member
 * SSCAN gives is added, or noted as seen, at once, and at the end the
 * members it did not give are removed, a slice of the table per turn
 * (ngx_http_canary_set.c); a new set, or one whose size changed by more
 * than half, is built beside the published one and published in a new
 * snapshot, the old set retired.
 *
 * Push: a second connection SUBSCRIBEs to <prefix>changed and
 * PSUBSCRIBEs to __keyspace@<db>__:<prefix>*; any message only starts a
 * round (the one code path that applies state).  Rounds start at most
 * every NGX_HTTP_CANARY_SYNC_GAP ms: a burst of writes is applied as its
 * latest state, in a bounded number of rounds, the first one at once.
 *
 * Memory that a change replaces is freed once no worker reads it
 * (ngx_http_canary_reclaim.c).  A change the zone has no room for is
 * refused with what it needs and what is free, logged at most once a
 * second per rollout, and tried again at the next round that finds room.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_http.h>

#include "ngx_http_canary_module.h"
#include "ngx_http_canary_redis.h"


#define NGX_HTTP_CANARY_SSCAN_COUNT    "1000"

/* the least time between the starts of two rounds, in milliseconds */
#define NGX_HTTP_CANARY_SYNC_GAP       100

/* the table entries an in-place read's end looks at per event-loop turn */
#define NGX_HTTP_CANARY_SWEEP          65536

/* a refusal for lack of room is logged at most this often per rollout */
#define NGX_HTTP_CANARY_NOMEM_LOG      1000
#define NGX_HTTP_CANARY_LOG_VALUE_MAX  64
#define NGX_HTTP_CANARY_STATE_MAX      (64 * 1024 * 1024)

/* a restore: members per SADD, the lease's and the temporary sets' life */
#define NGX_HTTP_CANARY_RESTORE_BATCH  1000
#define NGX_HTTP_CANARY_RESTORE_LEASE  "30000"
#define NGX_HTTP_CANARY_RESTORE_TMP    "60000"
#define NGX_HTTP_CANARY_RESTORE_ARGS   64


typedef struct ngx_http_canary_sync_rollout_s
    ngx_http_canary_sync_rollout_t;


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

    /* what the last HGETALL refused, see ..._refuse(): logged once */
    ngx_str_t                       refused;
    ngx_str_t                       refused_new;
    ngx_str_t                       error;

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


/* the last good state being written back into an empty Redis */
typedef struct {
    ngx_pool_t                     *pool;
    ngx_uint_t                      source;     /* zone or state file */
    ngx_uint_t                      rollouts;   /* with something to write */
    ngx_uint_t                      written;    /* keys */
    ngx_uint_t                      kept;       /* keys already there */
    ngx_uint_t                      members;
    ngx_uint_t                      waiting;
    ngx_uint_t                      index;      /* the set being written */
    ngx_uint_t                      which;
    ngx_uint_t                      pos;
    ngx_uint_t                      n;          /* its members sent */
    ngx_http_canary_set_t          *set;
    ngx_str_t                       tmp;
    const char                    **argv;
    size_t                         *argvlen;
    unsigned                        failed:1;
    unsigned                        nomem:1;
} ngx_http_canary_restore_t;


typedef struct {
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

    unsigned                        suspect:1;
    unsigned                        present:1;  /* a key, while suspect */
    unsigned                        held:1;     /* the lease, by another */
    unsigned                        held_mine:1;
    unsigned                        unfinished:1;   /* a restore begun */
    unsigned                        from_file:1;    /* its source */
    unsigned                        info_err:1; /* logged */
    unsigned                        waited:1;   /* logged */
    unsigned                        restore_err:1;  /* logged */
} ngx_http_canary_sync_t;


/* a rollout's values as Redis or the state file give them */
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


static void ngx_http_canary_sync_timer_handler(ngx_event_t *ev);
static void ngx_http_canary_sync_ready(ngx_http_canary_redis_t *rc);
static void ngx_http_canary_sync_sub_ready(ngx_http_canary_redis_t *rc);
static void ngx_http_canary_sync_push(ngx_http_canary_redis_t *rc,
    redisReply *reply);
static void ngx_http_canary_sync_ignore(ngx_http_canary_redis_t *rc,
    redisReply *reply, void *data);
static void ngx_http_canary_sync_pong(ngx_http_canary_redis_t *rc,
    redisReply *reply, void *data);
static void ngx_http_canary_sync_touch(ngx_http_canary_sync_t *sync,
    ngx_http_canary_sync_rollout_t *sr, ngx_uint_t which, ngx_uint_t whole);
static ngx_uint_t ngx_http_canary_sync_sop(redisReply *event);
static void ngx_http_canary_sync_start(ngx_http_canary_sync_t *sync);
static void ngx_http_canary_sync_soon(ngx_http_canary_sync_t *sync);
static void ngx_http_canary_sync_soon_handler(ngx_event_t *ev);
static void ngx_http_canary_sync_nomem(ngx_http_canary_sync_t *sync,
    ngx_http_canary_rollout_t *ro, ngx_str_t *key, ngx_int_t members,
    size_t need);
static void ngx_http_canary_sync_hash(ngx_http_canary_redis_t *rc,
    redisReply *reply, void *data);
static void ngx_http_canary_sync_scard_reply(ngx_http_canary_redis_t *rc,
    redisReply *reply, void *data);
static void ngx_http_canary_sync_scard(ngx_http_canary_sync_rollout_t *sr,
    ngx_uint_t which, redisReply *reply);
static void ngx_http_canary_sync_reply_done(ngx_http_canary_sync_t *sync);
static void ngx_http_canary_sync_apply(ngx_http_canary_sync_t *sync,
    ngx_http_canary_sync_rollout_t *sr, redisReply *reply);
static ngx_int_t ngx_http_canary_sync_field(ngx_http_canary_sync_t *sync,
    ngx_http_canary_sync_rollout_t *sr, ngx_str_t *field, ngx_str_t *value,
    ngx_http_canary_snapshot_t *cur, ngx_http_canary_values_t *v,
    ngx_array_t *segments);
static void ngx_http_canary_values_init(ngx_http_canary_values_t *v,
    ngx_http_canary_rollout_t *ro);
static ngx_int_t ngx_http_canary_sync_arm_field(
    ngx_http_canary_sync_t *sync, ngx_http_canary_sync_rollout_t *sr,
    ngx_str_t *field, ngx_str_t *value, ngx_http_canary_snapshot_t *cur,
    ngx_http_canary_values_t *v);
static void ngx_http_canary_sync_refuse(ngx_http_canary_sync_t *sync,
    ngx_http_canary_sync_rollout_t *sr, ngx_str_t *field, ngx_str_t *value);
static void ngx_http_canary_sync_error(ngx_http_canary_sync_t *sync,
    ngx_http_canary_sync_rollout_t *sr, const char *cmd, ngx_str_t *key,
    redisReply *reply);
static ngx_int_t ngx_http_canary_sync_publish(
    ngx_http_canary_main_conf_t *cmcf, ngx_http_canary_rollout_t *ro,
    ngx_http_canary_values_t *v, ngx_log_t *log);
static size_t ngx_http_canary_sync_snapshot_need(
    ngx_http_canary_values_t *v);
static ngx_uint_t ngx_http_canary_sync_same(ngx_http_canary_snapshot_t *cur,
    ngx_http_canary_values_t *v);
static ngx_http_canary_snapshot_t *ngx_http_canary_sync_copy_locked(
    ngx_slab_pool_t *shpool, ngx_http_canary_snapshot_t *from,
    ngx_http_canary_values_t *v);
static int ngx_libc_cdecl ngx_http_canary_segment_cmp(const void *a,
    const void *b);
static void ngx_http_canary_sync_orphan_locked(ngx_http_canary_sync_t *sync);
static void ngx_http_canary_sync_next_set(ngx_http_canary_sync_t *sync);
static void ngx_http_canary_sync_sscan(ngx_http_canary_sync_t *sync,
    u_char *cursor, size_t len);
static void ngx_http_canary_sync_sscan_handler(ngx_http_canary_redis_t *rc,
    redisReply *reply, void *data);
static void ngx_http_canary_sync_too_big(ngx_http_canary_sync_t *sync,
    ngx_http_canary_sync_rollout_t *sr, ngx_uint_t which);
static void ngx_http_canary_sync_set_abort(ngx_http_canary_sync_t *sync);
static void ngx_http_canary_sync_set_clear(ngx_http_canary_sync_t *sync);
static void ngx_http_canary_sync_set_clear_handler(ngx_event_t *ev);
static void ngx_http_canary_sync_set_publish(ngx_http_canary_sync_t *sync);
static ngx_int_t ngx_http_canary_sync_set_current(
    ngx_http_canary_sync_t *sync);
static void ngx_http_canary_sync_set_sweep(ngx_http_canary_sync_t *sync);
static void ngx_http_canary_sync_set_done(ngx_http_canary_sync_t *sync);
static ngx_int_t ngx_http_canary_sync_set_swap(
    ngx_http_canary_main_conf_t *cmcf, ngx_http_canary_rollout_t *ro,
    ngx_uint_t which, ngx_http_canary_set_t *set, ngx_log_t *log);
static void ngx_http_canary_sync_close(ngx_http_canary_sync_t *sync);
static void ngx_http_canary_sync_info(ngx_http_canary_redis_t *rc,
    redisReply *reply, void *data);
static void ngx_http_canary_sync_lease(ngx_http_canary_redis_t *rc,
    redisReply *reply, void *data);
static ngx_int_t ngx_http_canary_sync_judge(ngx_http_canary_sync_t *sync);
static void ngx_http_canary_sync_config(ngx_http_canary_sync_t *sync,
    ngx_http_canary_sync_rollout_t *sr);
static void ngx_http_canary_sync_adopt(ngx_http_canary_sync_t *sync);
static void ngx_http_canary_restore_start(ngx_http_canary_sync_t *sync);
static void ngx_http_canary_restore_lease(ngx_http_canary_redis_t *rc,
    redisReply *reply, void *data);
static ngx_int_t ngx_http_canary_restore_hash(ngx_http_canary_sync_t *sync,
    ngx_http_canary_sync_rollout_t *sr);
static void ngx_http_canary_restore_hash_handler(ngx_http_canary_redis_t *rc,
    redisReply *reply, void *data);
static void ngx_http_canary_restore_next_set(ngx_http_canary_sync_t *sync);
static void ngx_http_canary_restore_sadd(ngx_http_canary_sync_t *sync);
static void ngx_http_canary_restore_sadd_handler(ngx_http_canary_redis_t *rc,
    redisReply *reply, void *data);
static void ngx_http_canary_restore_rename(ngx_http_canary_redis_t *rc,
    redisReply *reply, void *data);
static void ngx_http_canary_restore_release(ngx_http_canary_redis_t *rc,
    redisReply *reply, void *data);
static void ngx_http_canary_restore_ignore(ngx_http_canary_redis_t *rc,
    redisReply *reply, void *data);
static void ngx_http_canary_restore_end(ngx_http_canary_sync_t *sync,
    const char *why, redisReply *reply);
static void ngx_http_canary_restore_arg(ngx_http_canary_restore_t *r,
    ngx_uint_t *n, const void *data, size_t len);
static void ngx_http_canary_restore_argf(ngx_http_canary_restore_t *r,
    ngx_uint_t *n, const char *fmt, ...);
static void ngx_http_canary_state_write(ngx_http_canary_sync_t *sync);
static uint64_t ngx_http_canary_state_auto(ngx_http_canary_sync_t *sync);
static void ngx_http_canary_state_load_values(
    ngx_http_canary_main_conf_t *cmcf, ngx_log_t *log);
static ngx_int_t ngx_http_canary_state_parse(
    ngx_http_canary_main_conf_t *cmcf, u_char *p, size_t len,
    ngx_http_canary_values_t *vals, u_char *run_id, ngx_pool_t *pool,
    ngx_log_t *log);
static ngx_int_t ngx_http_canary_key(ngx_pool_t *pool, ngx_str_t *key,
    ngx_str_t *prefix, ngx_str_t *name, char *suffix);
static u_char *ngx_http_canary_log_value(u_char *buf, ngx_str_t *value);


static ngx_http_canary_sync_t  *ngx_http_canary_sync;

static ngx_str_t  ngx_http_canary_empty = ngx_string("");

/*
 * KEYS[1] the restore lease, KEYS[2] the mark of a restore begun; ARGV
 * node, life in ms, the instance's run_id.  1: this node's
 */

static ngx_str_t  ngx_http_canary_restore_lease_lua = ngx_string(
    "local v = redis.call('GET', KEYS[1]) "
    "if v and v ~= ARGV[1] then return 0 end "
    "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) "
    "redis.call('SET', KEYS[2], ARGV[3]) "
    "return 1");


/* KEYS[1] a rollout hash; ARGV its fields and values.  1: written */

static ngx_str_t  ngx_http_canary_restore_hash_lua = ngx_string(
    "if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end "
    "for i = 1, #ARGV, 2 do "
    "  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) "
    "end "
    "return 1");


/* KEYS[1] a filled temporary set, KEYS[2] the user set.  1: renamed */

static ngx_str_t  ngx_http_canary_restore_set_lua = ngx_string(
    "if redis.call('EXISTS', KEYS[2]) == 1 then "
    "  redis.call('DEL', KEYS[1]) return 0 "
    "end "
    "redis.call('RENAME', KEYS[1], KEYS[2]) "
    "redis.call('PERSIST', KEYS[2]) "
    "return 1");


/* KEYS[1] the restore lease, KEYS[2] the mark; ARGV node, the channel */

static ngx_str_t  ngx_http_canary_restore_release_lua = ngx_string(
    "if redis.call('GET', KEYS[1]) == ARGV[1] then "
    "  redis.call('DEL', KEYS[1]) "
    "end "
    "redis.call('DEL', KEYS[2]) "
    "redis.call('PUBLISH', ARGV[2], '') "
    "return 1");


ngx_int_t
ngx_http_canary_sync_init_process(ngx_cycle_t *cycle)
{
    u_char                          *p;
    size_t                           len;
    ngx_uint_t                       i, j;
    ngx_listening_t                 *ls;
    ngx_http_canary_sync_t          *sync;
    ngx_http_canary_variant_t       *var;
    ngx_http_canary_rollout_t       *ro;
    ngx_http_canary_sync_rollout_t  *sr;
    ngx_http_canary_main_conf_t     *cmcf;

    if (!ngx_http_canary_sync_process()) {
        return NGX_OK;
    }

    cmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_canary_module);

    if (cmcf == NULL || cmcf->redis == NULL || cmcf->shm_zone == NULL
        || cmcf->sh == NULL)
    {
        return NGX_OK;
    }

    sync = ngx_pcalloc(cycle->pool, sizeof(ngx_http_canary_sync_t));
    if (sync == NULL) {
        return NGX_ERROR;
    }

    sync->cmcf = cmcf;
    sync->log = cycle->log;
    sync->nrollouts = cmcf->rollouts.nelts;

    sync->rollouts = ngx_pcalloc(cycle->pool,
                                 (sync->nrollouts + 1)
                                 * sizeof(ngx_http_canary_sync_rollout_t));
    if (sync->rollouts == NULL) {
        return NGX_ERROR;
    }

    sync->users.fd = NGX_INVALID_FILE;
    sync->users.log = cycle->log;

    ro = cmcf->rollouts.elts;

    for (i = 0; i < sync->nrollouts; i++) {
        sr = &sync->rollouts[i];
        sr->ro = &ro[i];
        /* a two-sided rollout reads canary_users and stable_users only */
        sr->nsets = (ro[i].narms > 1) ? 2 + ro[i].narms : 2;

        /*
         * Sets from the users files, before any sync since the start: read
         * again, even if Redis has as many members now
         */

        if (cmcf->sh->syncs == 0) {
            for (j = 0; j < sr->nsets; j++) {
                if (ngx_http_canary_snapshot_set(ro[i].sh->snapshot, j)) {
                    sr->dirty |= 1 << j;
                }
            }
        }

        if (ngx_http_canary_key(cycle->pool, &sr->key, &cmcf->redis->prefix,
                                &ro[i].name, "")
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        for (j = 0; j < sr->nsets; j++) {
            sr->ref[j].sr = sr;
            sr->ref[j].which = j;
            sr->scard[j] = -1;
            sr->too_big[j] = -1;

            if (j < 2) {
                sr->set_name[j] = ro[i].name;

                if (ngx_http_canary_key(cycle->pool, &sr->set_key[j],
                                        &cmcf->redis->prefix, &ro[i].name,
                                        j ? ":stable_users" : ":canary_users")
                    != NGX_OK)
                {
                    return NGX_ERROR;
                }

                continue;
            }

            /* <prefix>rollout:<name>:users:<arm> */

            var = &ro[i].variants[j - 1];
            sr->set_name[j] = var->users;

            p = ngx_pnalloc(cycle->pool, sizeof(":users:") + var->name.len);
            if (p == NULL) {
                return NGX_ERROR;
            }

            ngx_sprintf(p, ":users:%V%Z", &var->name);

            if (ngx_http_canary_key(cycle->pool, &sr->set_key[j],
                                    &cmcf->redis->prefix, &ro[i].name,
                                    (char *) p)
                != NGX_OK)
            {
                return NGX_ERROR;
            }
        }
    }

    /* the restore lease, and this node's name in it (as "auto" names it) */

    len = cmcf->redis->prefix.len + sizeof("restoring") - 1;

    sync->lease.data = ngx_pnalloc(cycle->pool, 3 * len);
    if (sync->lease.data == NULL) {
        return NGX_ERROR;
    }

    sync->lease.len = ngx_sprintf(sync->lease.data, "%Vrestore",
                                  &cmcf->redis->prefix)
                      - sync->lease.data;
    sync->begun.data = sync->lease.data + len;
    sync->begun.len = ngx_sprintf(sync->begun.data, "%Vrestoring",
                                  &cmcf->redis->prefix)
                      - sync->begun.data;
    sync->changed_channel.data = sync->begun.data + len;
    sync->changed_channel.len = ngx_sprintf(sync->changed_channel.data,
                                            "%Vchanged", &cmcf->redis->prefix)
                                - sync->changed_channel.data;

    if (cmcf->node_id.len) {
        sync->node = cmcf->node_id;

    } else {
        ls = cycle->listening.elts;

        len = cycle->hostname.len + 1
              + (cycle->listening.nelts ? ls[0].addr_text.len : 0);

        sync->node.data = ngx_pnalloc(cycle->pool, len);
        if (sync->node.data == NULL) {
            return NGX_ERROR;
        }

        p = ngx_cpymem(sync->node.data, cycle->hostname.data,
                       cycle->hostname.len);
        *p++ = '/';

        if (cycle->listening.nelts) {
            p = ngx_cpymem(p, ls[0].addr_text.data, ls[0].addr_text.len);
        }

        sync->node.len = p - sync->node.data;
    }

    sync->redis = ngx_http_canary_redis_create(cycle, cmcf->redis, "sync");
    sync->sub = ngx_http_canary_redis_create(cycle, cmcf->redis,
                                             "subscribe");
    if (sync->redis == NULL || sync->sub == NULL) {
        return NGX_ERROR;
    }

    sync->redis->on_ready = ngx_http_canary_sync_ready;
    sync->redis->data = sync;

    sync->sub->on_ready = ngx_http_canary_sync_sub_ready;
    sync->sub->on_push = ngx_http_canary_sync_push;
    sync->sub->data = sync;
    sync->sub->quiet = 1;

    cmcf->redis_conn = sync->redis;

    sync->timer.handler = ngx_http_canary_sync_timer_handler;
    sync->timer.data = sync;
    sync->timer.log = cycle->log;
    sync->timer.cancelable = 1;

    sync->set_clear.handler = ngx_http_canary_sync_set_clear_handler;
    sync->set_clear.data = sync;
    sync->set_clear.log = cycle->log;
    sync->set_clear.cancelable = 1;

    sync->soon.handler = ngx_http_canary_sync_soon_handler;
    sync->soon.data = sync;
    sync->soon.log = cycle->log;
    sync->soon.cancelable = 1;

    /*
     * Made once, before the worker serves a request, and reset after
     * each reply rather than made and freed each round: the sync worker
     * also serves requests, whose pools are malloc()ed and freed around
     * the sync's allocations
     */

    sync->scratch = ngx_create_pool(4096, cycle->log);
    if (sync->scratch == NULL) {
        return NGX_ERROR;
    }

    ngx_http_canary_sync = sync;

    cmcf->sh->sync_pid = ngx_pid;

    ngx_shmtx_lock(&cmcf->shpool->mutex);
    ngx_http_canary_sync_orphan_locked(sync);
    ngx_shmtx_unlock(&cmcf->shpool->mutex);

    ngx_log_error(NGX_LOG_NOTICE, cycle->log, 0,
                  "canary sync: worker %P syncs with Redis at %V every %M ms",
                  ngx_pid, &cmcf->redis->name, cmcf->sync_interval);

    ngx_http_canary_redis_connect(sync->redis);
    ngx_http_canary_redis_connect(sync->sub);

    ngx_add_timer(&sync->timer, cmcf->sync_interval);

    return NGX_OK;
}


void
ngx_http_canary_sync_exit_process(ngx_cycle_t *cycle)
{
    if (ngx_http_canary_sync) {
        ngx_http_canary_sync_close(ngx_http_canary_sync);
        ngx_destroy_pool(ngx_http_canary_sync->scratch);
        ngx_http_canary_sync = NULL;
    }
}


static void
ngx_http_canary_sync_close(ngx_http_canary_sync_t *sync)
{
    if (sync->closed) {
        return;
    }

    sync->closed = 1;

    if (sync->timer.timer_set) {
        ngx_del_timer(&sync->timer);
    }

    if (sync->set_clear.timer_set) {
        ngx_del_timer(&sync->set_clear);
    }

    if (sync->soon.timer_set) {
        ngx_del_timer(&sync->soon);
    }

    ngx_http_canary_redis_close(sync->redis);
    ngx_http_canary_redis_close(sync->sub);

    if (sync->restore) {
        ngx_destroy_pool(sync->restore->pool);
        sync->restore = NULL;
        ngx_http_canary_held = 0;
    }

    ngx_http_canary_sync_set_abort(sync);

    if (sync->users.buf) {
        ngx_free(sync->users.buf);
        sync->users.buf = NULL;
    }

    sync->cmcf->redis_conn = NULL;
}


static void
ngx_http_canary_sync_timer_handler(ngx_event_t *ev)
{
    ngx_http_canary_sync_t  *sync = ev->data;

    const char  *argv[1];
    size_t       argvlen[1];

    if (ngx_exiting || ngx_terminate) {
        ngx_http_canary_sync_close(sync);
        return;
    }

    if (ngx_http_canary_redis_ready(sync->redis)) {
        ngx_http_canary_sync_start(sync);

    } else {
        sync->cmcf->sh->redis_up = 0;
        (void) ngx_atomic_fetch_add(&sync->cmcf->sh->sync_errors, 1);
    }

    /* a PING on the subscribed connection finds it dead when it is */

    if (ngx_http_canary_redis_ready(sync->sub) && !sync->ping) {
        argv[0] = "PING";
        argvlen[0] = 4;

        if (ngx_http_canary_redis_send(sync->sub, 1, argv, argvlen,
                                       ngx_http_canary_sync_pong, sync)
            == NGX_OK)
        {
            sync->ping = 1;
        }
    }

    ngx_add_timer(&sync->timer, sync->cmcf->sync_interval);
}


static void
ngx_http_canary_sync_ready(ngx_http_canary_redis_t *rc)
{
    ngx_http_canary_sync_t  *sync = rc->data;

    if (ngx_exiting || ngx_terminate) {
        ngx_http_canary_sync_close(sync);
        return;
    }

    ngx_http_canary_sync_start(sync);
}


static void
ngx_http_canary_sync_sub_ready(ngx_http_canary_redis_t *rc)
{
    ngx_http_canary_sync_t  *sync = rc->data;

    u_char      *p, *last;
    size_t       argvlen[2];
    ngx_str_t   *prefix;
    ngx_uint_t   i;
    const char  *argv[2];

    if (ngx_exiting || ngx_terminate) {
        ngx_http_canary_sync_close(sync);
        return;
    }

    sync->ping = 0;
    prefix = &sync->cmcf->redis->prefix;

    /* room for both names, allocated once for the worker's life */

    if (sync->channels == NULL) {
        sync->channels = ngx_pnalloc(ngx_cycle->pool,
                                     sizeof("__keyspace@65535__:*")
                                     + 2 * prefix->len + sizeof("changed")
                                     + prefix->len);
        if (sync->channels == NULL) {
            return;
        }
    }

    p = sync->channels;

    argv[0] = "SUBSCRIBE";
    argvlen[0] = sizeof("SUBSCRIBE") - 1;
    argv[1] = (const char *) p;
    p = ngx_cpymem(p, prefix->data, prefix->len);
    p = ngx_cpymem(p, "changed", sizeof("changed") - 1);
    argvlen[1] = p - (u_char *) argv[1];

    if (ngx_http_canary_redis_send(rc, 2, argv, argvlen,
                                   ngx_http_canary_sync_ignore, sync)
        != NGX_OK)
    {
        return;
    }

    /* the prefix inside the pattern, its glob characters escaped */

    argv[0] = "PSUBSCRIBE";
    argvlen[0] = sizeof("PSUBSCRIBE") - 1;
    argv[1] = (const char *) p;
    p = ngx_sprintf(p, "__keyspace@%ui__:", sync->cmcf->redis->db);

    for (i = 0; i < prefix->len; i++) {
        if (ngx_strchr("*?[]\\", prefix->data[i])) {
            *p++ = '\\';
        }

        *p++ = prefix->data[i];
    }

    *p++ = '*';
    last = p;
    argvlen[1] = last - (u_char *) argv[1];

    (void) ngx_http_canary_redis_send(rc, 2, argv, argvlen,
                                      ngx_http_canary_sync_ignore, sync);

    /* what changed while the subscription was down */

    if (ngx_http_canary_redis_ready(sync->redis)) {
        ngx_http_canary_sync_soon(sync);
    }
}


static void
ngx_http_canary_sync_ignore(ngx_http_canary_redis_t *rc, redisReply *reply,
    void *data)
{
    if (reply && reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, &rc->log, 0,
                      "canary sync: subscribing failed: %*s; changes apply "
                      "at the next canary_sync_interval only",
                      reply->len, reply->str);
    }
}


static void
ngx_http_canary_sync_pong(ngx_http_canary_redis_t *rc, redisReply *reply,
    void *data)
{
    ngx_http_canary_sync_t  *sync = data;

    sync->ping = 0;
}


/*
 * A message on <prefix>changed (its payload may name a rollout) or a
 * keyspace notification (its channel names the key): mark the user sets
 * it names for reading, and start a round.
 */

static void
ngx_http_canary_sync_push(ngx_http_canary_redis_t *rc, redisReply *reply)
{
    ngx_http_canary_sync_t  *sync = rc->data;

    u_char                          *p;
    size_t                           len;
    ngx_str_t                        s;
    ngx_uint_t                       i, j;
    redisReply                      *channel, *payload;
    ngx_http_canary_sync_rollout_t  *sr;

    if (ngx_exiting || ngx_terminate || sync->closed) {
        return;
    }

    if (reply->element[0]->len == 7) {
        channel = reply->element[1];
        payload = reply->element[2];

    } else {
        if (reply->elements < 4) {
            return;
        }

        channel = reply->element[2];
        payload = reply->element[3];
    }

    if (channel->type != REDIS_REPLY_STRING
        || payload->type != REDIS_REPLY_STRING)
    {
        return;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, sync->log, 0,
                   "canary sync: message on \"%*s\"",
                   channel->len, channel->str);

    if (reply->element[0]->len == 7) {
        /* PUBLISH <prefix>changed <rollout>: re-read its sets too */

        for (i = 0; i < sync->nrollouts; i++) {
            sr = &sync->rollouts[i];

            if (sr->ro->name.len == payload->len
                && ngx_strncmp(sr->ro->name.data, payload->str,
                               payload->len) == 0)
            {
                for (j = 0; j < sr->nsets; j++) {
                    ngx_http_canary_sync_touch(sync, sr, j, 1);
                }
            }
        }

    } else {
        /* __keyspace@N__:<prefix>rollout:<name>:canary_users */

        p = (u_char *) ngx_strlchr((u_char *) channel->str,
                                   (u_char *) channel->str + channel->len,
                                   ':');
        if (p) {
            p++;
            len = (u_char *) channel->str + channel->len - p;
            s.data = p;
            s.len = len;

            for (i = 0; i < sync->nrollouts; i++) {
                sr = &sync->rollouts[i];

                for (j = 0; j < sr->nsets; j++) {
                    if (sr->set_key[j].len == s.len
                        && ngx_strncmp(sr->set_key[j].data, s.data, s.len)
                           == 0)
                    {
                        ngx_http_canary_sync_touch(sync, sr, j,
                                !ngx_http_canary_sync_sop(payload));
                    }
                }
            }
        }
    }

    if (!ngx_http_canary_redis_ready(sync->redis)) {
        return;
    }

    ngx_http_canary_sync_soon(sync);
}


/*
 * A push names a set: read it again, unless its read has not sent its
 * first SSCAN yet (that SSCAN sees the change the message reports).
 */

static void
ngx_http_canary_sync_touch(ngx_http_canary_sync_t *sync,
    ngx_http_canary_sync_rollout_t *sr, ngx_uint_t which, ngx_uint_t whole)
{
    if (sync->set && sync->set_sr == sr && sync->set_which == which
        && !sync->set_scanning)
    {
        return;
    }

    sr->dirty |= 1 << which;

    if (whole) {
        sr->whole |= 1 << which;
    }
}


/*
 * Whether a keyspace notification's event adds or removes members one by
 * one (SADD, SREM, SPOP, SMOVE): a set changed so is changed in place.
 * Any other (RENAME onto it, DEL, SUNIONSTORE, RESTORE, ...) replaces it,
 * and the new set is built whole and published at once, as it was written.
 */

static ngx_uint_t
ngx_http_canary_sync_sop(redisReply *event)
{
    static const char  *ops[] = { "sadd", "srem", "spop", "smove" };

    ngx_uint_t  i;

    for (i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        if (event->len == ngx_strlen(ops[i])
            && ngx_strncmp(event->str, ops[i], event->len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


/*
 * A round for a push message, or for one that came during a round: at
 * once if the last one started NGX_HTTP_CANARY_SYNC_GAP ago, else when it
 * did.  A burst of messages so costs a few rounds, each applying the
 * latest state, and its last write is in force within the gap and one
 * round.
 */

static void
ngx_http_canary_sync_soon(ngx_http_canary_sync_t *sync)
{
    ngx_msec_t  elapsed;

    if (sync->busy || sync->restore) {
        sync->again = 1;
        return;
    }

    if (sync->soon.timer_set) {
        return;
    }

    elapsed = ngx_current_msec - sync->started;

    if (elapsed >= NGX_HTTP_CANARY_SYNC_GAP) {
        ngx_http_canary_sync_start(sync);
        return;
    }

    ngx_add_timer(&sync->soon, NGX_HTTP_CANARY_SYNC_GAP - elapsed);
}


static void
ngx_http_canary_sync_soon_handler(ngx_event_t *ev)
{
    ngx_http_canary_sync_t  *sync = ev->data;

    if (ngx_exiting || ngx_terminate) {
        ngx_http_canary_sync_close(sync);
        return;
    }

    if (ngx_http_canary_redis_ready(sync->redis)) {
        ngx_http_canary_sync_start(sync);
    }
}


static void
ngx_http_canary_sync_start(ngx_http_canary_sync_t *sync)
{
    size_t                           argvlen[3];
    ngx_uint_t                       i, j;
    const char                      *argv[3];
    ngx_http_canary_sync_rollout_t  *sr;

    if (sync->busy || sync->restore) {
        sync->again = 1;
        return;
    }

    if (sync->soon.timer_set) {
        ngx_del_timer(&sync->soon);
    }

    sync->busy = 1;
    sync->again = 0;
    sync->started = ngx_current_msec;
    sync->failed = 0;
    sync->present = 0;
    sync->waiting = 1;

    /*
     * A new connection: which instance is it (answered before the
     * HGETALLs), and is a restore of it under way?
     */

    if (sync->generation != sync->redis->generation + 1) {
        argv[0] = "INFO";
        argvlen[0] = sizeof("INFO") - 1;
        argv[1] = "server";
        argvlen[1] = sizeof("server") - 1;

        if (ngx_http_canary_redis_send(sync->redis, 2, argv, argvlen,
                                       ngx_http_canary_sync_info, sync)
            != NGX_OK)
        {
            sync->failed = 1;
            goto done;
        }

        sync->waiting++;
        sync->suspect = 0;
    }

    if (sync->generation != sync->redis->generation + 1 || sync->suspect) {
        argv[0] = "MGET";
        argvlen[0] = sizeof("MGET") - 1;
        argv[1] = (const char *) sync->lease.data;
        argvlen[1] = sync->lease.len;
        argv[2] = (const char *) sync->begun.data;
        argvlen[2] = sync->begun.len;

        if (ngx_http_canary_redis_send(sync->redis, 3, argv, argvlen,
                                       ngx_http_canary_sync_lease, sync)
            != NGX_OK)
        {
            sync->failed = 1;
            goto done;
        }

        sync->waiting++;
    }

    for (i = 0; i < sync->nrollouts; i++) {
        sr = &sync->rollouts[i];

        argv[0] = "HGETALL";
        argvlen[0] = sizeof("HGETALL") - 1;
        argv[1] = (const char *) sr->key.data;
        argvlen[1] = sr->key.len;

        if (ngx_http_canary_redis_send(sync->redis, 2, argv, argvlen,
                                       ngx_http_canary_sync_hash, sr)
            != NGX_OK)
        {
            sync->failed = 1;
            break;
        }

        sync->waiting++;

        argv[0] = "SCARD";
        argvlen[0] = sizeof("SCARD") - 1;

        for (j = 0; j < sr->nsets; j++) {
            argv[1] = (const char *) sr->set_key[j].data;
            argvlen[1] = sr->set_key[j].len;

            if (ngx_http_canary_redis_send(sync->redis, 2, argv, argvlen,
                                           ngx_http_canary_sync_scard_reply,
                                           &sr->ref[j])
                != NGX_OK)
            {
                sync->failed = 1;
                break;
            }

            sync->waiting++;
        }

        if (sync->failed) {
            break;
        }
    }

done:

    /* the first count stood for the commands above */

    ngx_http_canary_sync_reply_done(sync);
}


static void
ngx_http_canary_sync_hash(ngx_http_canary_redis_t *rc, redisReply *reply,
    void *data)
{
    ngx_http_canary_sync_rollout_t  *sr = data;

    ngx_http_canary_sync_t  *sync = rc->data;

    sr->missing = 0;

    if (reply == NULL) {
        sync->failed = 1;

    } else if (sync->closed || ngx_exiting || ngx_terminate) {
        /* void */

    } else if (sync->suspect && reply->type == REDIS_REPLY_ARRAY
               && reply->elements == 0)
    {
        /* lost, or cleared: the end of the round tells */
        sr->missing = 1;

    } else {
        if (sync->suspect && reply->type == REDIS_REPLY_ARRAY) {
            sync->present = 1;
        }

        ngx_http_canary_sync_apply(sync, sr, reply);
    }

    ngx_http_canary_sync_reply_done(sync);
}


static void
ngx_http_canary_sync_scard_reply(ngx_http_canary_redis_t *rc,
    redisReply *reply, void *data)
{
    ngx_http_canary_sync_setref_t  *ref = data;

    ngx_http_canary_sync_t  *sync = rc->data;

    if (reply == NULL) {
        sync->failed = 1;

    } else {
        ngx_http_canary_sync_scard(ref->sr, ref->which, reply);
    }

    ngx_http_canary_sync_reply_done(sync);
}


static void
ngx_http_canary_sync_scard(ngx_http_canary_sync_rollout_t *sr,
    ngx_uint_t which, redisReply *reply)
{
    ngx_int_t                    n;
    ngx_http_canary_set_t       *set;
    ngx_http_canary_sync_t      *sync;
    ngx_http_canary_snapshot_t  *snap;

    sync = ngx_http_canary_sync;

    if (reply->type != REDIS_REPLY_INTEGER || reply->integer < 0) {
        ngx_http_canary_sync_error(sync, sr, "SCARD", &sr->set_key[which],
                                   reply);
        return;
    }

    n = (ngx_int_t) reply->integer;
    sr->scard[which] = n;

    if (sync->suspect && n > 0) {
        sync->present = 1;
    }

    if (sync->set && sync->set_sr == sr && sync->set_which == which) {
        /* being read now; the next round compares with what it gives */
        return;
    }

    snap = sr->ro->sh->snapshot;
    set = ngx_http_canary_snapshot_set(snap, which);

    if ((ngx_uint_t) n == ngx_http_canary_set_size(set)) {
        return;
    }

    /* refused for lack of room: again once there may be room */

    if (n == sr->too_big[which]
        && sync->cmcf->shpool->pfree * ngx_pagesize < sr->need[which])
    {
        return;
    }

    sr->dirty |= 1 << which;
}


/* one reply of the round is in; the last one closes the round */

static void
ngx_http_canary_sync_reply_done(ngx_http_canary_sync_t *sync)
{
    ngx_uint_t                hold;
    ngx_http_canary_shctx_t  *sh;

    if (--sync->waiting) {
        return;
    }

    sync->busy = 0;

    if (sync->closed || ngx_exiting || ngx_terminate) {
        return;
    }

    sh = sync->cmcf->sh;

    if (sync->failed) {
        sh->redis_up = ngx_http_canary_redis_ready(sync->redis);
        (void) ngx_atomic_fetch_add(&sh->sync_errors, 1);

    } else {
        sh->redis_up = 1;
        sh->last_sync = ngx_time();
        (void) ngx_atomic_fetch_add(&sh->syncs, 1);

    }

    /* another instance: lost its data, or not? */

    hold = 0;

    if (!sync->failed) {
        if (sync->suspect && ngx_http_canary_sync_judge(sync) != NGX_OK) {
            hold = 1;

        } else {
            ngx_http_canary_sync_adopt(sync);
        }
    }

    /* an automatic rollout's step the controller read since: kept too */

    if (sync->changed
        || sync->state_auto != ngx_http_canary_state_auto(sync))
    {
        sync->changed = 0;
        ngx_http_canary_state_write(sync);
    }

    if (!sync->failed && !hold && sync->set == NULL) {
        ngx_http_canary_sync_next_set(sync);
    }

    if (sync->again && ngx_http_canary_redis_ready(sync->redis)) {
        sync->again = 0;
        ngx_http_canary_sync_soon(sync);
    }
}


/*
 * INFO server's run_id: which Redis instance this connection reached.
 * Another one than the last good state came from is "suspect" until the
 * end of the round (see ..._judge()).
 */

static void
ngx_http_canary_sync_info(ngx_http_canary_redis_t *rc, redisReply *reply,
    void *data)
{
    ngx_http_canary_sync_t  *sync = data;

    u_char                   *p, *last;
    ngx_uint_t                i;
    ngx_http_canary_shctx_t  *sh;

    if (reply == NULL) {
        sync->failed = 1;
        ngx_http_canary_sync_reply_done(sync);
        return;
    }

    sync->generation = rc->generation + 1;
    sync->run_id[0] = '\0';

    if (reply->type == REDIS_REPLY_STRING) {
        p = ngx_strnstr((u_char *) reply->str, "run_id:", reply->len);

        if (p) {
            p += sizeof("run_id:") - 1;
            last = (u_char *) reply->str + reply->len;

            for (i = 0; i < NGX_HTTP_CANARY_RUN_ID_LEN; i++) {
                if (p + i == last || !isxdigit(p[i])) {
                    break;
                }
            }

            if (i == NGX_HTTP_CANARY_RUN_ID_LEN) {
                ngx_memcpy(sync->run_id, p, NGX_HTTP_CANARY_RUN_ID_LEN);
                sync->run_id[NGX_HTTP_CANARY_RUN_ID_LEN] = '\0';
            }
        }
    }

    sh = sync->cmcf->sh;

    if (sync->run_id[0] == '\0') {
        if (!sync->info_err) {
            sync->info_err = 1;
            ngx_log_error(NGX_LOG_WARN, sync->log, 0,
                          "canary sync: \"INFO server\" of Redis at %V gave "
                          "no run_id: an instance that lost its data cannot "
                          "be told from one that was cleared, and is obeyed",
                          &sync->cmcf->redis->name);
        }

    } else if (sh->run_id[0]
               && ngx_strcmp(sh->run_id, sync->run_id) != 0)
    {
        sync->suspect = 1;

        ngx_log_error(NGX_LOG_INFO, sync->log, 0,
                      "canary sync: Redis at %V is instance %s, the last "
                      "good state came from %s",
                      &sync->cmcf->redis->name, sync->run_id, sh->run_id);
    }

    ngx_http_canary_sync_reply_done(sync);
}


/*
 * MGET <prefix>restore <prefix>restoring: is a node restoring this
 * instance, and has a restore of it begun and not finished (its node
 * died, its lease expired)?
 */

static void
ngx_http_canary_sync_lease(ngx_http_canary_redis_t *rc, redisReply *reply,
    void *data)
{
    ngx_http_canary_sync_t  *sync = data;

    redisReply  *v, *b;

    sync->held = 0;
    sync->held_mine = 0;
    sync->unfinished = 0;

    if (reply == NULL) {
        sync->failed = 1;

    } else if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 2) {
        v = reply->element[0];
        b = reply->element[1];

        sync->held = (v->type == REDIS_REPLY_STRING);
        sync->held_mine = sync->held
                          && (size_t) v->len == sync->node.len
                          && ngx_strncmp(v->str, sync->node.data,
                                         sync->node.len) == 0;
        sync->unfinished = sync->run_id[0]
                           && b->type == REDIS_REPLY_STRING
                           && b->len == NGX_HTTP_CANARY_RUN_ID_LEN
                           && ngx_strncmp(b->str, sync->run_id,
                                          NGX_HTTP_CANARY_RUN_ID_LEN) == 0;
    }

    ngx_http_canary_sync_reply_done(sync);
}


/*
 * The end of a round with another instance than the last good state came
 * from.  It holds one of the configured rollouts' keys: it is obeyed (a
 * failover, a restart with its data).  It holds none: it lost its data,
 * and the last good state is written back (NGX_AGAIN), unless another
 * node is at it already (NGX_AGAIN too: the last good state stays until
 * its restore is done and the keys are back).  A restore begun and not
 * finished (its node died) is finished: only the missing keys are
 * written.
 */

static ngx_int_t
ngx_http_canary_sync_judge(ngx_http_canary_sync_t *sync)
{
    ngx_uint_t                       i, j, lost;
    ngx_http_canary_snapshot_t      *snap;
    ngx_http_canary_sync_rollout_t  *sr;

    if (sync->held && !sync->held_mine) {
        if (!sync->waited) {
            sync->waited = 1;
            ngx_log_error(NGX_LOG_NOTICE, sync->log, 0,
                          "canary sync: another node is restoring Redis at "
                          "%V (\"%V\" is held), the last good state stays "
                          "in force meanwhile", &sync->cmcf->redis->name,
                          &sync->lease);
        }

        goto hold;
    }

    lost = 0;

    for (i = 0; i < sync->nrollouts; i++) {
        sr = &sync->rollouts[i];
        snap = sr->ro->sh->snapshot;

        if (snap->source != NGX_HTTP_CANARY_SOURCE_CONFIG) {
            lost = 1;
        }

        for (j = 0; j < sr->nsets; j++) {
            if (ngx_http_canary_snapshot_set(snap, j)) {
                lost = 1;
            }
        }
    }

    if ((sync->present || !lost) && !sync->held_mine && !sync->unfinished) {
        if (lost) {
            ngx_log_error(NGX_LOG_NOTICE, sync->log, 0,
                          "canary sync: Redis at %V is another instance "
                          "(run_id %s, was %s) that holds rollout keys: "
                          "its state is obeyed", &sync->cmcf->redis->name,
                          sync->run_id, sync->cmcf->sh->run_id);
        }

        for (i = 0; i < sync->nrollouts; i++) {
            if (sync->rollouts[i].missing) {
                sync->rollouts[i].missing = 0;
                ngx_http_canary_sync_config(sync, &sync->rollouts[i]);
            }
        }

        sync->suspect = 0;
        sync->waited = 0;
        sync->from_file = 0;

        return NGX_OK;
    }

    ngx_http_canary_restore_start(sync);

hold:

    /* a user set counted 0 now is not read: it is to be restored */

    for (i = 0; i < sync->nrollouts; i++) {
        sr = &sync->rollouts[i];

        for (j = 0; j < sr->nsets; j++) {
            if (sr->scard[j] == 0) {
                sr->dirty &= ~(1 << j);
            }
        }
    }

    return NGX_AGAIN;
}


/* the instance of a round that applied as usual is remembered */

static void
ngx_http_canary_sync_adopt(ngx_http_canary_sync_t *sync)
{
    ngx_http_canary_shctx_t  *sh;

    sh = sync->cmcf->sh;

    if (sync->suspect || sync->run_id[0] == '\0'
        || ngx_strcmp(sh->run_id, sync->run_id) == 0)
    {
        return;
    }

    ngx_memcpy(sh->run_id, sync->run_id, NGX_HTTP_CANARY_RUN_ID_LEN + 1);

    /* the state file remembers it too */
    sync->changed = 1;
}


/*
 * The restore: take the lease <prefix>restore (its value is this node's
 * name; 30 s) and mark <prefix>restoring with the instance's run_id (a
 * restore begun); write each rollout hash with a script that writes it
 * only if it still does not exist; fill each user set into a temporary
 * key in SADD batches (one per reply) and rename it onto the set only if
 * that still does not exist; then release the lease, delete the mark and
 * PUBLISH <prefix>changed.  Rounds wait meanwhile; the round after it
 * reads back what Redis holds.
 */

static void
ngx_http_canary_restore_start(ngx_http_canary_sync_t *sync)
{
    ngx_uint_t                  i, n;
    ngx_pool_t                 *pool;
    ngx_http_canary_restore_t  *r;

    pool = ngx_create_pool(4096, sync->log);
    if (pool == NULL) {
        return;
    }

    r = ngx_pcalloc(pool, sizeof(ngx_http_canary_restore_t));
    if (r == NULL) {
        ngx_destroy_pool(pool);
        return;
    }

    n = NGX_HTTP_CANARY_RESTORE_BATCH + NGX_HTTP_CANARY_RESTORE_ARGS;

    r->argv = ngx_palloc(pool, n * sizeof(const char *));
    r->argvlen = ngx_palloc(pool, n * sizeof(size_t));
    if (r->argv == NULL || r->argvlen == NULL) {
        ngx_destroy_pool(pool);
        return;
    }

    r->pool = pool;

    /* from the state file, also when resumed after the keys it wrote */

    for (i = 0; i < sync->nrollouts; i++) {
        if (sync->rollouts[i].ro->sh->snapshot->source
            == NGX_HTTP_CANARY_SOURCE_STATE_FILE)
        {
            sync->from_file = 1;
        }
    }

    r->source = sync->from_file ? NGX_HTTP_CANARY_SOURCE_STATE_FILE
                                : NGX_HTTP_CANARY_SOURCE_REDIS;

    sync->restore = r;

    /* its sets are read across turns: nothing is freed until it ends */
    ngx_http_canary_held = 1;

    n = 0;
    ngx_http_canary_restore_arg(r, &n, "EVAL", 4);
    ngx_http_canary_restore_arg(r, &n, ngx_http_canary_restore_lease_lua.data,
                                ngx_http_canary_restore_lease_lua.len);
    ngx_http_canary_restore_arg(r, &n, "2", 1);
    ngx_http_canary_restore_arg(r, &n, sync->lease.data, sync->lease.len);
    ngx_http_canary_restore_arg(r, &n, sync->begun.data, sync->begun.len);
    ngx_http_canary_restore_arg(r, &n, sync->node.data, sync->node.len);
    ngx_http_canary_restore_arg(r, &n, NGX_HTTP_CANARY_RESTORE_LEASE,
                                sizeof(NGX_HTTP_CANARY_RESTORE_LEASE) - 1);
    ngx_http_canary_restore_arg(r, &n, sync->run_id,
                                NGX_HTTP_CANARY_RUN_ID_LEN);

    if (ngx_http_canary_redis_send(sync->redis, n, r->argv, r->argvlen,
                                   ngx_http_canary_restore_lease, sync)
        != NGX_OK)
    {
        ngx_http_canary_restore_end(sync, "the connection failed", NULL);
    }
}


static void
ngx_http_canary_restore_lease(ngx_http_canary_redis_t *rc,
    redisReply *reply, void *data)
{
    ngx_http_canary_sync_t  *sync = data;

    ngx_int_t                        n;
    ngx_uint_t                       i, j;
    ngx_http_canary_restore_t       *r;
    ngx_http_canary_sync_rollout_t  *sr;

    r = sync->restore;

    if (reply == NULL || reply->type != REDIS_REPLY_INTEGER) {
        ngx_http_canary_restore_end(sync, "the lease was not taken", reply);
        return;
    }

    if (reply->integer != 1) {
        /* another node's: the next round waits for it */
        ngx_http_canary_restore_end(sync, NULL, NULL);
        return;
    }

    for (i = 0; i < sync->nrollouts; i++) {
        sr = &sync->rollouts[i];
        n = ngx_http_canary_restore_hash(sync, sr);

        if (n == NGX_ERROR) {
            ngx_http_canary_restore_end(sync, "the hash was not sent", NULL);
            return;
        }

        for (j = 0; j < sr->nsets; j++) {
            if (ngx_http_canary_set_size(
                    ngx_http_canary_snapshot_set(sr->ro->sh->snapshot, j)))
            {
                n = NGX_OK;
            }
        }

        if (n == NGX_OK) {
            r->rollouts++;
        }
    }

    if (r->waiting == 0) {
        ngx_http_canary_restore_next_set(sync);
    }
}


/*
 * The rollout hash as the zone holds it: the published values and, for
 * an automatic rollout, what its controller last read (step, since,
 * checked, failures, the last decision and its figures).  NGX_DECLINED:
 * none (the config's values).
 */

static ngx_int_t
ngx_http_canary_restore_hash(ngx_http_canary_sync_t *sync,
    ngx_http_canary_sync_rollout_t *sr)
{
    u_char                         *p;
    ngx_uint_t                      i, n, v;
    ngx_http_canary_snapshot_t     *snap;
    ngx_http_canary_restore_t      *r;
    ngx_http_canary_auto_status_t   st;

    static const char  *fig[2][4] = {
        { "s_requests", "s_errors", "s_error_rate", "s_p99" },
        { "c_requests", "c_errors", "c_error_rate", "c_p99" }
    };

    r = sync->restore;
    snap = sr->ro->sh->snapshot;

    if (snap->source == NGX_HTTP_CANARY_SOURCE_CONFIG) {
        return NGX_DECLINED;
    }

    ngx_memzero(&st, sizeof(ngx_http_canary_auto_status_t));

    if (sr->ro->sh->autost) {
        ngx_shmtx_lock(&sync->cmcf->shpool->mutex);
        st = *sr->ro->sh->autost;
        ngx_shmtx_unlock(&sync->cmcf->shpool->mutex);
    }

    n = 2 * (snap->nsegments + 2 * NGX_HTTP_CANARY_MAX_ARMS + 32) + 4;

    if (n > NGX_HTTP_CANARY_RESTORE_BATCH + NGX_HTTP_CANARY_RESTORE_ARGS) {
        r->argv = ngx_palloc(r->pool, n * sizeof(const char *));
        r->argvlen = ngx_palloc(r->pool, n * sizeof(size_t));
        if (r->argv == NULL || r->argvlen == NULL) {
            return NGX_ERROR;
        }
    }

    n = 0;
    ngx_http_canary_restore_arg(r, &n, "EVAL", 4);
    ngx_http_canary_restore_arg(r, &n, ngx_http_canary_restore_hash_lua.data,
                                ngx_http_canary_restore_hash_lua.len);
    ngx_http_canary_restore_arg(r, &n, "1", 1);
    ngx_http_canary_restore_arg(r, &n, sr->key.data, sr->key.len);

    ngx_http_canary_restore_arg(r, &n, "percent", 7);
    ngx_http_canary_restore_argf(r, &n, "%ui.%02ui", snap->percent / 100,
                                 snap->percent % 100);

    for (i = 0; i < snap->nsegments; i++) {
        p = ngx_pnalloc(r->pool, 8 + snap->segments[i].value.len);
        if (p == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(p, "percent:", 8);
        ngx_memcpy(p + 8, snap->segments[i].value.data,
                   snap->segments[i].value.len);

        ngx_http_canary_restore_arg(r, &n, p,
                                    8 + snap->segments[i].value.len);
        ngx_http_canary_restore_argf(r, &n, "%ui.%02ui",
                                     snap->segments[i].percent / 100,
                                     snap->segments[i].percent % 100);
    }

    if (snap->start) {
        ngx_http_canary_restore_arg(r, &n, "start", 5);
        ngx_http_canary_restore_argf(r, &n, "%T", snap->start);
    }

    if (snap->end) {
        ngx_http_canary_restore_arg(r, &n, "end", 3);
        ngx_http_canary_restore_argf(r, &n, "%T", snap->end);
    }

    if (snap->state != NGX_HTTP_CANARY_STATE_NONE) {
        ngx_http_canary_restore_arg(r, &n, "state", 5);
        ngx_http_canary_restore_arg(r, &n,
                                    ngx_http_canary_state_names[snap->state]
                                    .data,
                                    ngx_http_canary_state_names[snap->state]
                                    .len);
    }

    /* the arms whose allocation Redis changed, as the state file keeps */

    for (i = 1; i <= sr->ro->narms; i++) {
        if (snap->weight[i - 1] == sr->ro->variants[i].weight
            && !(snap->arms_off & (1 << (i - 1))))
        {
            continue;
        }

        p = ngx_pnalloc(r->pool, 7 + sr->ro->variants[i].name.len);
        if (p == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(p, "weight:", 7);
        ngx_memcpy(p + 7, sr->ro->variants[i].name.data,
                   sr->ro->variants[i].name.len);


        ngx_http_canary_restore_arg(r, &n, p,
                                    7 + sr->ro->variants[i].name.len);
        ngx_http_canary_restore_argf(r, &n, "%uD", snap->weight[i - 1]);

        if (snap->arms_off & (1 << (i - 1))) {
            p = ngx_pnalloc(r->pool, 4 + sr->ro->variants[i].name.len);
            if (p == NULL) {
                return NGX_ERROR;
            }

            ngx_memcpy(p, "arm:", 4);
            ngx_memcpy(p + 4, sr->ro->variants[i].name.data,
                       sr->ro->variants[i].name.len);

            ngx_http_canary_restore_arg(r, &n, p,
                                        4 + sr->ro->variants[i].name.len);
            ngx_http_canary_restore_arg(r, &n, "off", 3);
        }
    }

    /* the shadow share, as the state file keeps it */

    if (snap->shadow != sr->ro->shadow) {
        ngx_http_canary_restore_arg(r, &n, "shadow", 6);
        ngx_http_canary_restore_argf(r, &n, "%ui.%02ui", snap->shadow / 100,
                                     snap->shadow % 100);
    }

    if (st.updated && st.step) {
        ngx_http_canary_restore_arg(r, &n, "step", 4);
        ngx_http_canary_restore_argf(r, &n, "%ui", st.step);
        ngx_http_canary_restore_arg(r, &n, "failures", 8);
        ngx_http_canary_restore_argf(r, &n, "%ui", st.failures);
        ngx_http_canary_restore_arg(r, &n, "since", 5);
        ngx_http_canary_restore_argf(r, &n, "%uL", st.since);
        ngx_http_canary_restore_arg(r, &n, "checked", 7);
        ngx_http_canary_restore_argf(r, &n, "%uL", st.checked);
    }

    if (st.updated && st.decided_at) {
        ngx_http_canary_restore_arg(r, &n, "decided_at", 10);
        ngx_http_canary_restore_argf(r, &n, "%uL", st.decided_at);
        ngx_http_canary_restore_arg(r, &n, "decided_by", 10);
        ngx_http_canary_restore_arg(r, &n, st.decided_by, st.decided_by_len);
        ngx_http_canary_restore_arg(r, &n, "decision", 8);
        ngx_http_canary_restore_arg(r, &n, st.decision, st.decision_len);
        ngx_http_canary_restore_arg(r, &n, "reason", 6);
        ngx_http_canary_restore_arg(r, &n, st.reason, st.reason_len);
    }

    if (st.updated && st.interval) {
        ngx_http_canary_restore_arg(r, &n, "interval", 8);
        ngx_http_canary_restore_argf(r, &n, "%uL", st.interval);
        ngx_http_canary_restore_arg(r, &n, "nodes", 5);
        ngx_http_canary_restore_argf(r, &n, "%ui", st.nodes);

        for (v = 0; v < NGX_HTTP_CANARY_NVARIANTS; v++) {
            ngx_http_canary_restore_arg(r, &n, fig[v][0],
                                        ngx_strlen(fig[v][0]));
            ngx_http_canary_restore_argf(r, &n, "%uL", st.requests[v]);
            ngx_http_canary_restore_arg(r, &n, fig[v][1],
                                        ngx_strlen(fig[v][1]));
            ngx_http_canary_restore_argf(r, &n, "%uL", st.errors[v]);
            ngx_http_canary_restore_arg(r, &n, fig[v][2],
                                        ngx_strlen(fig[v][2]));
            ngx_http_canary_restore_argf(r, &n, "%uL", st.error_rate[v]);
            ngx_http_canary_restore_arg(r, &n, fig[v][3],
                                        ngx_strlen(fig[v][3]));

            if (st.p99[v] == NGX_HTTP_CANARY_P99_INF) {
                ngx_http_canary_restore_arg(r, &n, "inf", 3);

            } else {
                ngx_http_canary_restore_argf(r, &n, "%uL", st.p99[v]);
            }
        }
    }

    if (r->nomem) {
        return NGX_ERROR;
    }

    if (ngx_http_canary_redis_send(sync->redis, n, r->argv, r->argvlen,
                                   ngx_http_canary_restore_hash_handler, sync)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    r->waiting++;

    return NGX_OK;
}


static void
ngx_http_canary_restore_hash_handler(ngx_http_canary_redis_t *rc,
    redisReply *reply, void *data)
{
    ngx_http_canary_sync_t  *sync = data;

    ngx_http_canary_restore_t  *r;

    r = sync->restore;

    if (r == NULL) {
        return;
    }

    if (reply && reply->type == REDIS_REPLY_INTEGER) {
        if (reply->integer == 1) {
            r->written++;

        } else {
            r->kept++;
        }

    } else if (!r->failed) {
        /* the first failure ends the restore once all have answered */
        r->failed = 1;

        if (reply) {
            ngx_log_error(NGX_LOG_ERR, sync->log, 0,
                          "canary sync: restoring a rollout hash: %*s",
                          (size_t) reply->len, reply->str);
        }
    }

    if (--r->waiting) {
        return;
    }

    if (r->failed) {
        ngx_http_canary_restore_end(sync, "a rollout hash was not written",
                                    NULL);
        return;
    }

    ngx_http_canary_restore_next_set(sync);
}


/* the next user set to write back, or the end */

static void
ngx_http_canary_restore_next_set(ngx_http_canary_sync_t *sync)
{
    ngx_uint_t                       n;
    ngx_http_canary_set_t           *set;
    ngx_http_canary_restore_t       *r;
    ngx_http_canary_snapshot_t      *snap;
    ngx_http_canary_sync_rollout_t  *sr;

    r = sync->restore;

    while (r->index < sync->nrollouts) {
        sr = &sync->rollouts[r->index];
        snap = sr->ro->sh->snapshot;

        if (r->which == sr->nsets) {
            r->which = 0;
            r->index++;
            continue;
        }

        set = ngx_http_canary_snapshot_set(snap, r->which);

        if (ngx_http_canary_set_size(set) == 0) {
            r->which++;
            continue;
        }

        r->set = set;
        r->pos = 0;
        r->n = 0;

        r->tmp.len = sr->set_key[r->which].len + sizeof(":restore") - 1;
        r->tmp.data = ngx_pnalloc(r->pool, r->tmp.len);
        if (r->tmp.data == NULL) {
            ngx_http_canary_restore_end(sync, "out of memory", NULL);
            return;
        }

        ngx_sprintf(r->tmp.data, "%V:restore", &sr->set_key[r->which]);

        /* a temporary set left by a node that died is replaced */

        n = 0;
        ngx_http_canary_restore_arg(r, &n, "DEL", 3);
        ngx_http_canary_restore_arg(r, &n, r->tmp.data, r->tmp.len);

        if (ngx_http_canary_redis_send(sync->redis, n, r->argv, r->argvlen,
                                       ngx_http_canary_restore_ignore, sync)
            != NGX_OK)
        {
            ngx_http_canary_restore_end(sync, "the connection failed", NULL);
            return;
        }

        ngx_http_canary_restore_sadd(sync);
        return;
    }

    /* all written: the lease released, every node told */

    n = 0;
    ngx_http_canary_restore_arg(r, &n, "EVAL", 4);
    ngx_http_canary_restore_arg(r, &n,
                                ngx_http_canary_restore_release_lua.data,
                                ngx_http_canary_restore_release_lua.len);
    ngx_http_canary_restore_arg(r, &n, "2", 1);
    ngx_http_canary_restore_arg(r, &n, sync->lease.data, sync->lease.len);
    ngx_http_canary_restore_arg(r, &n, sync->begun.data, sync->begun.len);
    ngx_http_canary_restore_arg(r, &n, sync->node.data, sync->node.len);
    ngx_http_canary_restore_arg(r, &n, sync->changed_channel.data,
                                sync->changed_channel.len);

    if (ngx_http_canary_redis_send(sync->redis, n, r->argv, r->argvlen,
                                   ngx_http_canary_restore_release, sync)
        != NGX_OK)
    {
        /* written all the same; the lease expires by itself */
        ngx_http_canary_restore_release(sync->redis, NULL, sync);
    }
}


/* one SADD of the next batch of members, or the rename after the last */

static void
ngx_http_canary_restore_sadd(ngx_http_canary_sync_t *sync)
{
    ngx_str_t                        key;
    ngx_uint_t                       n;
    ngx_http_canary_restore_t       *r;
    ngx_http_canary_sync_rollout_t  *sr;

    r = sync->restore;
    sr = &sync->rollouts[r->index];

    n = 0;
    ngx_http_canary_restore_arg(r, &n, "SADD", 4);
    ngx_http_canary_restore_arg(r, &n, r->tmp.data, r->tmp.len);

    while (n < NGX_HTTP_CANARY_RESTORE_BATCH + 2
           && ngx_http_canary_set_next(r->set, &r->pos, &key) == NGX_OK)
    {
        ngx_http_canary_restore_arg(r, &n, key.data, key.len);
    }

    if (n > 2) {
        if (ngx_http_canary_redis_send(sync->redis, n, r->argv, r->argvlen,
                                       ngx_http_canary_restore_sadd_handler,
                                       sync)
            != NGX_OK)
        {
            ngx_http_canary_restore_end(sync, "the connection failed", NULL);
            return;
        }

        r->n += n - 2;

        if (r->n == n - 2) {
            /* gone by itself if this node dies before the rename */
            n = 0;
            ngx_http_canary_restore_arg(r, &n, "PEXPIRE", 7);
            ngx_http_canary_restore_arg(r, &n, r->tmp.data, r->tmp.len);
            ngx_http_canary_restore_arg(r, &n, NGX_HTTP_CANARY_RESTORE_TMP,
                                        sizeof(NGX_HTTP_CANARY_RESTORE_TMP)
                                        - 1);

            (void) ngx_http_canary_redis_send(sync->redis, n, r->argv,
                                              r->argvlen,
                                              ngx_http_canary_restore_ignore,
                                              sync);
        }

        return;
    }

    n = 0;
    ngx_http_canary_restore_arg(r, &n, "EVAL", 4);
    ngx_http_canary_restore_arg(r, &n, ngx_http_canary_restore_set_lua.data,
                                ngx_http_canary_restore_set_lua.len);
    ngx_http_canary_restore_arg(r, &n, "2", 1);
    ngx_http_canary_restore_arg(r, &n, r->tmp.data, r->tmp.len);
    ngx_http_canary_restore_arg(r, &n, sr->set_key[r->which].data,
                                sr->set_key[r->which].len);

    if (ngx_http_canary_redis_send(sync->redis, n, r->argv, r->argvlen,
                                   ngx_http_canary_restore_rename, sync)
        != NGX_OK)
    {
        ngx_http_canary_restore_end(sync, "the connection failed", NULL);
    }
}


static void
ngx_http_canary_restore_sadd_handler(ngx_http_canary_redis_t *rc,
    redisReply *reply, void *data)
{
    ngx_http_canary_sync_t  *sync = data;

    if (sync->restore == NULL) {
        return;
    }

    if (reply == NULL || reply->type != REDIS_REPLY_INTEGER) {
        ngx_http_canary_restore_end(sync, "a user set was not written",
                                    reply);
        return;
    }

    ngx_http_canary_restore_sadd(sync);
}


static void
ngx_http_canary_restore_rename(ngx_http_canary_redis_t *rc,
    redisReply *reply, void *data)
{
    ngx_http_canary_sync_t  *sync = data;

    ngx_http_canary_restore_t  *r;

    r = sync->restore;

    if (r == NULL) {
        return;
    }

    if (reply == NULL || reply->type != REDIS_REPLY_INTEGER) {
        ngx_http_canary_restore_end(sync, "a user set was not written",
                                    reply);
        return;
    }

    if (reply->integer == 1) {
        r->written++;
        r->members += r->n;

    } else {
        r->kept++;
    }

    r->which++;

    ngx_http_canary_restore_next_set(sync);
}


/* the end of a restore that wrote what it could */

static void
ngx_http_canary_restore_release(ngx_http_canary_redis_t *rc,
    redisReply *reply, void *data)
{
    ngx_http_canary_sync_t  *sync = data;

    ngx_http_canary_shctx_t    *sh;
    ngx_http_canary_restore_t  *r;

    r = sync->restore;

    if (r == NULL) {
        return;
    }

    sh = sync->cmcf->sh;

    ngx_log_error(NGX_LOG_NOTICE, sync->log, 0,
                  "canary sync: Redis at %V came back empty (run_id %s, "
                  "was %s): restored %ui rollouts from the %s, %ui keys "
                  "written (%ui user set members), %ui kept as another "
                  "writer left them", &sync->cmcf->redis->name,
                  sync->run_id, sh->run_id, r->rollouts,
                  r->source == NGX_HTTP_CANARY_SOURCE_STATE_FILE
                  ? "state file" : "zone",
                  r->written, r->members, r->kept);

    sh->restored = ngx_time();
    sh->restored_rollouts = r->rollouts;
    (void) ngx_atomic_fetch_add(&sh->restores, 1);

    sync->suspect = 0;
    sync->held = 0;
    sync->held_mine = 0;
    sync->unfinished = 0;
    sync->from_file = 0;
    sync->waited = 0;
    sync->restore_err = 0;

    ngx_destroy_pool(r->pool);
    sync->restore = NULL;
    ngx_http_canary_held = 0;

    ngx_http_canary_sync_adopt(sync);

    if (sync->changed) {
        sync->changed = 0;
        ngx_http_canary_state_write(sync);
    }

    /* what Redis holds now: the state written back, or an operator's */

    if (!sync->closed && ngx_http_canary_redis_ready(sync->redis)) {
        ngx_http_canary_sync_start(sync);
    }
}


static void
ngx_http_canary_restore_ignore(ngx_http_canary_redis_t *rc,
    redisReply *reply, void *data)
{
}


/*
 * A restore that stopped (why, and Redis' answer if any; NULL: the lease
 * is another node's): it starts again at the next round that finds the
 * keys still missing; this node's lease lets it carry on over the keys
 * it wrote already.
 */

static void
ngx_http_canary_restore_end(ngx_http_canary_sync_t *sync, const char *why,
    redisReply *reply)
{
    /* logged once until a restore succeeds: it is tried every round */

    if (why && !sync->restore_err) {
        sync->restore_err = 1;

        if (reply && reply->type == REDIS_REPLY_ERROR) {
            ngx_log_error(NGX_LOG_ERR, sync->log, 0,
                          "canary sync: restoring Redis at %V stopped, %s: "
                          "%*s; the last good state stays in force",
                          &sync->cmcf->redis->name, why,
                          (size_t) reply->len, reply->str);

        } else {
            ngx_log_error(NGX_LOG_ERR, sync->log, 0,
                          "canary sync: restoring Redis at %V stopped, %s; "
                          "the last good state stays in force",
                          &sync->cmcf->redis->name, why);
        }
    }

    if (sync->restore) {
        ngx_destroy_pool(sync->restore->pool);
        sync->restore = NULL;
        ngx_http_canary_held = 0;
    }
}


/* a restore command's argument; r->nomem when one was out of memory */

static void
ngx_http_canary_restore_arg(ngx_http_canary_restore_t *r, ngx_uint_t *n,
    const void *data, size_t len)
{
    if (r->nomem) {
        return;
    }

    r->argv[*n] = data;
    r->argvlen[*n] = len;
    (*n)++;
}


static void
ngx_http_canary_restore_argf(ngx_http_canary_restore_t *r, ngx_uint_t *n,
    const char *fmt, ...)
{
    u_char   *p, *last;
    va_list   args;

    p = ngx_pnalloc(r->pool, NGX_INT64_LEN * 2 + 2);
    if (p == NULL) {
        r->nomem = 1;
        return;
    }

    va_start(args, fmt);
    last = ngx_vslprintf(p, p + NGX_INT64_LEN * 2 + 2, fmt, args);
    va_end(args);

    ngx_http_canary_restore_arg(r, n, p, last - p);
}


/* HGETALL's answer to values, then to a snapshot if anything differs */

static void
ngx_http_canary_sync_apply(ngx_http_canary_sync_t *sync,
    ngx_http_canary_sync_rollout_t *sr, redisReply *reply)
{
    ngx_str_t                    field, value;
    ngx_uint_t                   i;
    ngx_pool_t                  *pool;
    ngx_array_t                  segments;
    ngx_http_canary_rollout_t   *ro;
    ngx_http_canary_values_t     v;
    ngx_http_canary_snapshot_t  *cur;

    ro = sr->ro;

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements % 2) {
        ngx_http_canary_sync_error(sync, sr, "HGETALL", &sr->key, reply);
        return;
    }

    for (i = 0; i < reply->elements; i++) {
        if (reply->element[i]->type != REDIS_REPLY_STRING) {
            ngx_http_canary_sync_error(sync, sr, "HGETALL", &sr->key, reply);
            return;
        }
    }

    if (sr->error.data) {
        ngx_free(sr->error.data);
        ngx_str_null(&sr->error);
    }

    ro->sh->synced = ngx_time();

    ngx_http_canary_values_init(&v, ro);

    if (reply->elements == 0) {
        ngx_http_canary_sync_config(sync, sr);
        return;
    }

    v.source = NGX_HTTP_CANARY_SOURCE_REDIS;

    pool = sync->scratch;

    if (ngx_array_init(&segments, pool, 8, sizeof(ngx_http_canary_segment_t))
        != NGX_OK)
    {
        ngx_reset_pool(pool);
        return;
    }

    cur = ro->sh->snapshot;

    if (sr->refused_new.data) {
        ngx_free(sr->refused_new.data);
        ngx_str_null(&sr->refused_new);
    }

    for (i = 0; i < reply->elements; i += 2) {
        field.data = (u_char *) reply->element[i]->str;
        field.len = reply->element[i]->len;
        value.data = (u_char *) reply->element[i + 1]->str;
        value.len = reply->element[i + 1]->len;

        if (ngx_http_canary_sync_field(sync, sr, &field, &value, cur, &v,
                                       &segments)
            != NGX_OK)
        {
            ngx_reset_pool(pool);
            return;
        }
    }

    v.segments = segments.elts;
    v.nsegments = segments.nelts;

    /* what was refused now is what is not logged again next time */

    if (sr->refused.data) {
        ngx_free(sr->refused.data);
    }

    sr->refused = sr->refused_new;
    ngx_str_null(&sr->refused_new);

    (void) ngx_http_canary_sync_publish(sync->cmcf, ro, &v, sync->log);

    ngx_reset_pool(pool);
}


/* no hash: the config's values */

static void
ngx_http_canary_sync_config(ngx_http_canary_sync_t *sync,
    ngx_http_canary_sync_rollout_t *sr)
{
    ngx_http_canary_values_t  v;

    sr->ro->sh->synced = ngx_time();

    if (sr->refused.data) {
        ngx_free(sr->refused.data);
        ngx_str_null(&sr->refused);
    }

    ngx_http_canary_values_init(&v, sr->ro);

    (void) ngx_http_canary_sync_publish(sync->cmcf, sr->ro, &v, sync->log);
}


static ngx_int_t
ngx_http_canary_sync_field(ngx_http_canary_sync_t *sync,
    ngx_http_canary_sync_rollout_t *sr, ngx_str_t *field, ngx_str_t *value,
    ngx_http_canary_snapshot_t *cur, ngx_http_canary_values_t *v,
    ngx_array_t *segments)
{
    time_t                      t;
    uint32_t                    pct;
    unsigned                    state;
    ngx_str_t                   name;
    ngx_uint_t                  i;
    ngx_http_canary_segment_t  *seg;

    if (field->len == 7 && ngx_strncmp(field->data, "percent", 7) == 0) {

        if (ngx_http_canary_parse_percent(value->data, value->len, &pct) != 0
            || (sr->ro->hash == NGX_HTTP_CANARY_HASH_UNLEASH && pct % 100))
        {
            ngx_http_canary_sync_refuse(sync, sr, field, value);
            v->percent = cur->percent;
            return NGX_OK;
        }

        v->percent = pct;
        return NGX_OK;
    }

    if (field->len == 6 && ngx_strncmp(field->data, "shadow", 6) == 0) {

        if (ngx_http_canary_parse_percent(value->data, value->len, &pct) != 0)
        {
            ngx_http_canary_sync_refuse(sync, sr, field, value);
            v->shadow = cur->shadow;
            return NGX_OK;
        }

        v->shadow = pct;
        return NGX_OK;
    }

    if (field->len > 8 && ngx_strncmp(field->data, "percent:", 8) == 0) {
        name.data = field->data + 8;
        name.len = field->len - 8;

        if (ngx_http_canary_parse_percent(value->data, value->len, &pct) != 0
            || (sr->ro->hash == NGX_HTTP_CANARY_HASH_UNLEASH && pct % 100))
        {
            ngx_http_canary_sync_refuse(sync, sr, field, value);

            /* the segment's last good value, if it had one */

            for (i = 0; i < cur->nsegments; i++) {
                if (cur->segments[i].value.len == name.len
                    && ngx_memcmp(cur->segments[i].value.data, name.data,
                                  name.len) == 0)
                {
                    break;
                }
            }

            if (i == cur->nsegments) {
                return NGX_OK;
            }

            pct = cur->segments[i].percent;
        }

        seg = ngx_array_push(segments);
        if (seg == NULL) {
            return NGX_ERROR;
        }

        seg->value = name;
        seg->percent = pct;

        return NGX_OK;
    }

    if ((field->len == 5 && ngx_strncmp(field->data, "start", 5) == 0)
        || (field->len == 3 && ngx_strncmp(field->data, "end", 3) == 0))
    {
        if (ngx_http_canary_parse_time(value->data, value->len, &t) != 0) {
            ngx_http_canary_sync_refuse(sync, sr, field, value);
            t = (field->len == 5) ? cur->start : cur->end;
        }

        if (field->len == 5) {
            v->start = t;

        } else {
            v->end = t;
        }

        return NGX_OK;
    }

    if ((field->len > 7 && ngx_strncmp(field->data, "weight:", 7) == 0)
        || (field->len > 4 && ngx_strncmp(field->data, "arm:", 4) == 0))
    {
        return ngx_http_canary_sync_arm_field(sync, sr, field, value, cur,
                                              v);
    }

    if (field->len == 5 && ngx_strncmp(field->data, "state", 5) == 0) {

        if (ngx_http_canary_parse_state(value->data, value->len, &state)
            != 0)
        {
            ngx_http_canary_sync_refuse(sync, sr, field, value);
            v->state = cur->state;
            return NGX_OK;
        }

        v->state = state;
        return NGX_OK;
    }

    /* other fields (the auto controller's "step", ...) are not ours */

    return NGX_OK;
}


/* the configuration's values: its percent, its arms' weights, all on */

static void
ngx_http_canary_values_init(ngx_http_canary_values_t *v,
    ngx_http_canary_rollout_t *ro)
{
    ngx_uint_t  a;

    ngx_memzero(v, sizeof(ngx_http_canary_values_t));

    v->percent = ro->percent;
    v->shadow = ro->shadow;
    v->source = NGX_HTTP_CANARY_SOURCE_CONFIG;

    for (a = 0; a < ro->narms; a++) {
        v->weight[a] = ro->variants[a + 1].weight;
    }
}


/*
 * "weight:<arm>" 0..10000 and "arm:<arm>" on|off.  A field naming no arm
 * of the rollout is refused like a bad value: it is most likely a typo
 * that would otherwise be silently ignored.
 */

static ngx_int_t
ngx_http_canary_sync_arm_field(ngx_http_canary_sync_t *sync,
    ngx_http_canary_sync_rollout_t *sr, ngx_str_t *field, ngx_str_t *value,
    ngx_http_canary_snapshot_t *cur, ngx_http_canary_values_t *v)
{
    size_t      skip;
    ngx_int_t   arm;
    ngx_uint_t  a;

    skip = (field->data[0] == 'w') ? 7 : 4;

    arm = ngx_http_canary_find_arm(sr->ro, field->data + skip,
                                   field->len - skip);

    if (arm == NGX_ERROR) {
        ngx_http_canary_sync_refuse(sync, sr, field, value);
        return NGX_OK;
    }

    a = arm - 1;

    if (skip == 7) {
        if (ngx_http_canary_parse_weight(value->data, value->len,
                                         &v->weight[a])
            != 0)
        {
            ngx_http_canary_sync_refuse(sync, sr, field, value);
            v->weight[a] = cur->weight[a];
        }

        return NGX_OK;
    }

    if (value->len == 2 && ngx_strncmp(value->data, "on", 2) == 0) {
        v->arms_off &= ~(1 << a);

    } else if (value->len == 3 && ngx_strncmp(value->data, "off", 3) == 0) {
        v->arms_off |= 1 << a;

    } else {
        ngx_http_canary_sync_refuse(sync, sr, field, value);
        v->arms_off |= cur->arms_off & (1 << a);
    }

    return NGX_OK;
}


/* one error line per refused value, not one per round */

static void
ngx_http_canary_sync_refuse(ngx_http_canary_sync_t *sync,
    ngx_http_canary_sync_rollout_t *sr, ngx_str_t *field, ngx_str_t *value)
{
    u_char     *p, *last, *n;
    size_t      len, flen, vlen;
    ngx_uint_t  seen;
    u_char      buf[NGX_HTTP_CANARY_LOG_VALUE_MAX * 4 + 4];

    /*
     * The list holds {field length, value length, field, value} entries
     * (values may hold any byte, a NUL too).
     */

    seen = 0;
    p = sr->refused.data;
    last = p ? p + sr->refused.len : NULL;    /* NULL + 0 is undefined */

    while (p && (size_t) (last - p) >= 2 * sizeof(size_t)) {
        ngx_memcpy(&flen, p, sizeof(size_t));
        ngx_memcpy(&vlen, p + sizeof(size_t), sizeof(size_t));
        p += 2 * sizeof(size_t);

        if ((size_t) (last - p) < flen + vlen) {
            break;
        }

        if (flen == field->len && vlen == value->len
            && ngx_memcmp(p, field->data, flen) == 0
            && ngx_memcmp(p + flen, value->data, vlen) == 0)
        {
            seen = 1;
            break;
        }

        p += flen + vlen;
    }

    /* remembered for the next round */

    len = sr->refused_new.len + 2 * sizeof(size_t) + field->len
          + value->len;
    n = ngx_alloc(len, sync->log);

    if (n) {
        p = n;

        if (sr->refused_new.data) {
            p = ngx_cpymem(p, sr->refused_new.data, sr->refused_new.len);
            ngx_free(sr->refused_new.data);
        }

        p = ngx_cpymem(p, &field->len, sizeof(size_t));
        p = ngx_cpymem(p, &value->len, sizeof(size_t));
        p = ngx_cpymem(p, field->data, field->len);
        p = ngx_cpymem(p, value->data, value->len);

        sr->refused_new.data = n;
        sr->refused_new.len = len;
    }

    if (seen) {
        return;
    }

    (void) ngx_atomic_fetch_add(&sync->cmcf->sh->refused, 1);

    last = ngx_http_canary_log_value(buf, value);

    ngx_log_error(NGX_LOG_ERR, sync->log, 0,
                  "canary sync: refused \"%*s\" for field \"%V\" of \"%V\", "
                  "the last good value stays in force",
                  last - buf, buf, field, &sr->key);
}


/* a reply of the wrong kind: logged when it differs from the last one */

static void
ngx_http_canary_sync_error(ngx_http_canary_sync_t *sync,
    ngx_http_canary_sync_rollout_t *sr, const char *cmd, ngx_str_t *key,
    redisReply *reply)
{
    u_char     *p;
    size_t      len;
    ngx_str_t   what;
    u_char      buf[128];

    if (reply->type == REDIS_REPLY_ERROR || reply->type == REDIS_REPLY_STATUS
        || reply->type == REDIS_REPLY_STRING)
    {
        what.len = ngx_min(reply->len, 100);
        what.data = (u_char *) reply->str;

    } else {
        what.len = ngx_sprintf(buf, "a reply of type %d", reply->type) - buf;
        what.data = buf;
    }

    len = ngx_strlen(cmd) + 1 + what.len;

    if (sr->error.len == len
        && ngx_strncmp(sr->error.data, cmd, ngx_strlen(cmd)) == 0
        && ngx_memcmp(sr->error.data + len - what.len, what.data, what.len)
           == 0)
    {
        return;
    }

    p = ngx_alloc(len, sync->log);
    if (p) {
        if (sr->error.data) {
            ngx_free(sr->error.data);
        }

        sr->error.data = p;
        sr->error.len = len;
        p = ngx_cpymem(p, cmd, ngx_strlen(cmd));
        *p++ = ' ';
        ngx_memcpy(p, what.data, what.len);
    }

    (void) ngx_atomic_fetch_add(&sync->cmcf->sh->refused, 1);

    ngx_log_error(NGX_LOG_ERR, sync->log, 0,
                  "canary sync: %s \"%V\" answered \"%V\", the last good "
                  "state stays in force", cmd, key, &what);
}


/* publishes v for the rollout unless the current snapshot says the same */

static ngx_int_t
ngx_http_canary_sync_publish(ngx_http_canary_main_conf_t *cmcf,
    ngx_http_canary_rollout_t *ro, ngx_http_canary_values_t *v,
    ngx_log_t *log)
{
    ngx_int_t                    rc;
    ngx_http_canary_snapshot_t  *cur, *snap;

    if (v->nsegments > 1) {
        ngx_qsort(v->segments, v->nsegments,
                  sizeof(ngx_http_canary_segment_t),
                  ngx_http_canary_segment_cmp);
    }

    ngx_shmtx_lock(&cmcf->shpool->mutex);

    cur = ro->sh->snapshot;

    if (ngx_http_canary_sync_same(cur, v)) {
        ngx_shmtx_unlock(&cmcf->shpool->mutex);
        return NGX_DECLINED;
    }

    snap = ngx_http_canary_sync_copy_locked(cmcf->shpool, cur, v);

    if (snap == NULL
        && ngx_http_canary_reclaim_now_locked(cmcf, log))
    {
        /* what no worker reads any more made room */
        snap = ngx_http_canary_sync_copy_locked(cmcf->shpool, cur, v);
    }

    if (snap == NULL) {
        ngx_shmtx_unlock(&cmcf->shpool->mutex);

        if (ngx_http_canary_sync) {
            ngx_http_canary_sync_nomem(ngx_http_canary_sync, ro,
                       &ngx_http_canary_sync->rollouts[ro->index].key, -1,
                       ngx_http_canary_sync_snapshot_need(v));

        } else {
            ngx_log_error(NGX_LOG_ERR, log, 0,
                          "canary: no room in canary_zone for rollout "
                          "\"%V\" with %ui segments, the last good state "
                          "stays in force", &ro->name, v->nsegments);
        }

        return NGX_ERROR;
    }

    rc = ngx_http_canary_publish(cmcf, ro->sh, snap);

    ngx_shmtx_unlock(&cmcf->shpool->mutex);

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_canary_sync) {
        ngx_http_canary_sync->changed = 1;
    }

    ngx_log_error(NGX_LOG_NOTICE, log, 0,
                  "canary sync: rollout \"%V\" percent %ui.%02ui "
                  "(was %ui.%02ui), %ui segments, state \"%V\", "
                  "window %T..%T, from %V", &ro->name,
                  v->percent / 100, v->percent % 100,
                  cur->percent / 100, cur->percent % 100, v->nsegments,
                  &ngx_http_canary_state_names[v->state], v->start, v->end,
                  &ngx_http_canary_source_names[v->source]);

    return NGX_OK;
}


static ngx_uint_t
ngx_http_canary_sync_same(ngx_http_canary_snapshot_t *cur,
    ngx_http_canary_values_t *v)
{
    ngx_uint_t  i;

    if (cur->percent != v->percent || cur->shadow != v->shadow
        || cur->start != v->start
        || cur->end != v->end || cur->state != v->state
        || cur->source != v->source || cur->nsegments != v->nsegments
        || cur->arms_off != v->arms_off
        || ngx_memcmp(cur->weight, v->weight, sizeof(v->weight)) != 0)
    {
        return 0;
    }

    for (i = 0; i < v->nsegments; i++) {
        if (cur->segments[i].percent != v->segments[i].percent
            || cur->segments[i].value.len != v->segments[i].value.len
            || ngx_memcmp(cur->segments[i].value.data,
                          v->segments[i].value.data,
                          v->segments[i].value.len) != 0)
        {
            return 0;
        }
    }

    return 1;
}


/*
 * A copy of "from" (its user sets included) with the values of v, or, when
 * v is NULL, with from's own values and segments.  The mutex is held.
 */

/* the bytes of a snapshot of v, for a refusal's message */

static size_t
ngx_http_canary_sync_snapshot_need(ngx_http_canary_values_t *v)
{
    size_t      size;
    ngx_uint_t  i;

    size = sizeof(ngx_http_canary_snapshot_t)
           + v->nsegments * sizeof(ngx_http_canary_segment_t);

    for (i = 0; i < v->nsegments; i++) {
        size += v->segments[i].value.len;
    }

    return size;
}


static ngx_http_canary_snapshot_t *
ngx_http_canary_sync_copy_locked(ngx_slab_pool_t *shpool,
    ngx_http_canary_snapshot_t *from, ngx_http_canary_values_t *v)
{
    u_char                      *p;
    size_t                       strings;
    ngx_uint_t                   i, n;
    ngx_http_canary_segment_t   *seg;
    ngx_http_canary_snapshot_t  *snap;

    n = v ? v->nsegments : from->nsegments;
    seg = v ? v->segments : from->segments;

    strings = 0;

    for (i = 0; i < n; i++) {
        strings += seg[i].value.len;
    }

    snap = ngx_http_canary_snapshot_alloc(shpool, from, n, strings);
    if (snap == NULL) {
        return NULL;
    }

    p = ngx_http_canary_snapshot_strings(snap, n);

    for (i = 0; i < n; i++) {
        snap->segments[i].percent = seg[i].percent;
        snap->segments[i].value.len = seg[i].value.len;
        snap->segments[i].value.data = p;
        p = ngx_cpymem(p, seg[i].value.data, seg[i].value.len);
    }

    snap->nsegments = n;

    if (v) {
        snap->percent = v->percent;
        snap->shadow = v->shadow;
        snap->start = v->start;
        snap->end = v->end;
        snap->state = v->state;
        snap->source = v->source;
        snap->arms_off = v->arms_off;
        snap->total = 0;

        for (i = 0; i < NGX_HTTP_CANARY_MAX_ARMS; i++) {
            snap->weight[i] = v->weight[i];
            snap->total += v->weight[i];
        }
    }

    return snap;
}


static int ngx_libc_cdecl
ngx_http_canary_segment_cmp(const void *a, const void *b)
{
    const ngx_http_canary_segment_t  *sa = a;
    const ngx_http_canary_segment_t  *sb = b;

    return ngx_memn2cmp(sa->value.data, sb->value.data, sa->value.len,
                        sb->value.len);
}


/*
 * A set a sync worker was building when it died (SIGKILL, a crash) is in
 * the zone and in no snapshot: freed here, by the next sync worker, once
 * its builder is gone (after a reload the old worker may still be at it,
 * and frees its own set when it exits).  The mutex is held.
 */

static void
ngx_http_canary_sync_orphan_locked(ngx_http_canary_sync_t *sync)
{
    ngx_pid_t                 pid;
    ngx_http_canary_shctx_t  *sh;

    sh = sync->cmcf->sh;
    pid = sh->building_pid;

    if (sh->building == NULL || pid == ngx_pid
        || kill(pid, 0) == 0 || ngx_errno != NGX_ESRCH)
    {
        return;
    }

    ngx_log_error(NGX_LOG_NOTICE, sync->log, 0,
                  "canary sync: freed the user set of %ui members that "
                  "worker %P left half-built",
                  ngx_http_canary_set_size(sh->building), pid);

    ngx_http_canary_set_free_locked(sync->cmcf->shpool, sh->building);
    sh->building = NULL;
}


/* user sets: the next one to read, if any */

static void
ngx_http_canary_sync_next_set(ngx_http_canary_sync_t *sync)
{
    ngx_uint_t                       i, which, n, whole;
    ngx_http_canary_set_t           *set, *cur;
    ngx_http_canary_sync_rollout_t  *sr;

    /*
     * Not while the instance behind the connection is not known to be the
     * one the state came from: an empty Redis' empty set is not read, it
     * is restored (see ..._judge())
     */

    if (sync->set || sync->closed || sync->suspect || sync->restore
        || sync->generation != sync->redis->generation + 1
        || !ngx_http_canary_redis_ready(sync->redis))
    {
        return;
    }

    for (i = 0; i < sync->nrollouts; i++) {
        sr = &sync->rollouts[i];

        if (sr->dirty == 0) {
            continue;
        }

        for (which = 0; !(sr->dirty & (1 << which)); which++) {
            /* void */
        }

        sr->dirty &= ~(1 << which);

        if (sr->scard[which] < 0) {
            /* not known yet: the next round tells */
            sr->dirty |= 1 << which;
            continue;
        }

        whole = sr->whole & (1 << which);
        sr->whole &= ~(1 << which);

        sync->set_sr = sr;
        sync->set_which = which;
        sync->set_batches = 0;
        sync->set_scanning = 0;
        sync->set_seen = 0;
        sync->set_added = 0;
        sync->set_removed = 0;
        sync->set_long = 0;
        sync->set_keys = 0;
        sync->set_sweeping = 0;

        ngx_shmtx_lock(&sync->cmcf->shpool->mutex);

        cur = ngx_http_canary_snapshot_set(sr->ro->sh->snapshot, which);
        n = ngx_http_canary_set_size(cur);

        /*
         * Members added or removed (not the set replaced) and most of them
         * stay (Redis has between half and twice as many): the published
         * set changes in place, by what changed
         */

        if (n && !whole && sr->scard[which] > 0
            && (ngx_uint_t) sr->scard[which] <= 2 * n
            && (ngx_uint_t) sr->scard[which] >= n / 2)
        {
            sync->set_gen = ngx_http_canary_set_begin(cur);
            ngx_shmtx_unlock(&sync->cmcf->shpool->mutex);

            sync->set = cur;
            sync->set_inplace = 1;
            sync->set_scanning = 1;

            ngx_http_canary_users_open(&sync->users,
                                       &sync->cmcf->state_file,
                                       &sr->set_name[which],
                                       ngx_min(which, 2));

            ngx_http_canary_sync_sscan(sync, (u_char *) "0", 1);
            return;
        }

        ngx_http_canary_sync_orphan_locked(sync);

        set = ngx_http_canary_set_create_locked(sync->cmcf->shpool,
                                                sr->scard[which]);
        if (set) {
            sync->cmcf->sh->building = set;
            sync->cmcf->sh->building_pid = ngx_pid;
            sync->set_gen = ngx_http_canary_set_begin(set);
        }

        ngx_shmtx_unlock(&sync->cmcf->shpool->mutex);

        if (set == NULL) {
            ngx_http_canary_sync_set_abort(sync);
            ngx_http_canary_sync_too_big(sync, sr, which);
            continue;
        }

        sync->set = set;
        sync->set_inplace = 0;

        ngx_http_canary_users_open(&sync->users, &sync->cmcf->state_file,
                                   &sr->set_name[which],
                                   ngx_min(which, 2));

        ngx_http_canary_sync_set_clear(sync);
        return;
    }
}


/*
 * A new set's table is zeroed a slice per event-loop turn (a 1 ms timer
 * between slices lets the worker serve), then read with SSCAN.
 */

static void
ngx_http_canary_sync_set_clear(ngx_http_canary_sync_t *sync)
{
    if (ngx_http_canary_set_clear(sync->set) == NGX_AGAIN) {
        ngx_add_timer(&sync->set_clear, 1);
        return;
    }

    sync->set_scanning = 1;
    ngx_http_canary_sync_sscan(sync, (u_char *) "0", 1);
}


/* the next slice of a new set's table, or of an in-place read's end */

static void
ngx_http_canary_sync_set_clear_handler(ngx_event_t *ev)
{
    ngx_http_canary_sync_t  *sync = ev->data;

    if (sync->set == NULL) {
        return;
    }

    if (sync->closed || ngx_exiting || ngx_terminate) {
        sync->set_sr->dirty |= 1 << sync->set_which;
        ngx_http_canary_sync_set_abort(sync);
        return;
    }

    if (sync->set_sweeping) {
        ngx_http_canary_sync_set_sweep(sync);
        return;
    }

    ngx_http_canary_sync_set_clear(sync);
}


static void
ngx_http_canary_sync_sscan(ngx_http_canary_sync_t *sync, u_char *cursor,
    size_t len)
{
    size_t                           argvlen[5];
    const char                      *argv[5];
    ngx_http_canary_sync_rollout_t  *sr;

    sr = sync->set_sr;

    argv[0] = "SSCAN";
    argvlen[0] = sizeof("SSCAN") - 1;
    argv[1] = (const char *) sr->set_key[sync->set_which].data;
    argvlen[1] = sr->set_key[sync->set_which].len;
    argv[2] = (const char *) cursor;
    argvlen[2] = len;
    argv[3] = "COUNT";
    argvlen[3] = sizeof("COUNT") - 1;
    argv[4] = NGX_HTTP_CANARY_SSCAN_COUNT;
    argvlen[4] = sizeof(NGX_HTTP_CANARY_SSCAN_COUNT) - 1;

    if (ngx_http_canary_redis_send(sync->redis, 5, argv, argvlen,
                                   ngx_http_canary_sync_sscan_handler, sync)
        != NGX_OK)
    {
        sr->dirty |= 1 << sync->set_which;
        ngx_http_canary_sync_set_abort(sync);
    }
}


/*
 * One batch of members per reply, so one per event-loop turn: the mutex
 * is held while this batch is added, and the worker serves requests
 * between batches.
 */

static void
ngx_http_canary_sync_sscan_handler(ngx_http_canary_redis_t *rc,
    redisReply *reply, void *data)
{
    ngx_http_canary_sync_t  *sync = data;

    ngx_int_t                        n;
    ngx_uint_t                       i, which;
    redisReply                      *cursor, *members, *m;
    ngx_http_canary_sync_rollout_t  *sr;

    sr = sync->set_sr;
    which = sync->set_which;

    if (sync->set == NULL) {
        return;
    }

    if (reply == NULL || sync->closed || ngx_exiting || ngx_terminate) {
        sr->dirty |= 1 << which;
        ngx_http_canary_sync_set_abort(sync);
        return;
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2
        || reply->element[0]->type != REDIS_REPLY_STRING
        || reply->element[0]->len == 0
        || reply->element[1]->type != REDIS_REPLY_ARRAY)
    {
        ngx_http_canary_sync_error(sync, sr, "SSCAN", &sr->set_key[which],
                                   reply);
        ngx_http_canary_sync_set_abort(sync);
        return;
    }

    cursor = reply->element[0];
    members = reply->element[1];

    ngx_shmtx_lock(&sync->cmcf->shpool->mutex);

    if (ngx_http_canary_sync_set_current(sync) != NGX_OK) {
        ngx_shmtx_unlock(&sync->cmcf->shpool->mutex);
        sr->dirty |= 1 << which;
        ngx_http_canary_sync_set_abort(sync);
        ngx_http_canary_sync_next_set(sync);
        return;
    }

    for (i = 0; i < members->elements; i++) {
        m = members->element[i];

        if (m->type != REDIS_REPLY_STRING) {
            continue;
        }

        sync->set_seen++;
        sync->set_keys += m->len;

        n = ngx_http_canary_set_add_locked(sync->cmcf->shpool,
                                           &sync->cmcf->sh->reclaim,
                                           sync->set, (u_char *) m->str,
                                           m->len, sync->set_gen);
        if (n == NGX_OK) {
            sync->set_added++;

        } else if (n == NGX_ABORT) {
            sync->set_long++;

        } else if (n == NGX_ERROR) {
            break;
        }
    }

    ngx_shmtx_unlock(&sync->cmcf->shpool->mutex);

    if (i < members->elements) {
        ngx_http_canary_sync_set_abort(sync);
        ngx_http_canary_sync_too_big(sync, sr, which);
        ngx_http_canary_sync_next_set(sync);
        return;
    }

    /* the batch to the users file too, out of the mutex */

    for (i = 0; i < members->elements; i++) {
        m = members->element[i];

        if (m->type == REDIS_REPLY_STRING && m->len
            && m->len <= NGX_HTTP_CANARY_SET_KEY_MAX)
        {
            ngx_http_canary_users_add(&sync->users, (u_char *) m->str,
                                      m->len);
        }
    }

    sync->set_batches++;

    if (cursor->len == 1 && cursor->str[0] == '0') {
        if (sync->set_long) {
            ngx_log_error(NGX_LOG_ERR, sync->log, 0,
                          "canary sync: %ui members of \"%V\" of rollout "
                          "\"%V\" are longer than %d bytes and were "
                          "ignored", sync->set_long, &sr->set_key[which],
                          &sr->ro->name, NGX_HTTP_CANARY_SET_KEY_MAX);
        }

        if (sync->set_inplace) {
            sync->set_sweeping = 1;
            sync->set_pos = 0;
            ngx_http_canary_sync_set_sweep(sync);
            return;
        }

        ngx_http_canary_sync_set_publish(sync);
        ngx_http_canary_sync_next_set(sync);
        return;
    }

    ngx_http_canary_sync_sscan(sync, (u_char *) cursor->str, cursor->len);
}


/*
 * Whether the set being changed in place is still the rollout's, and this
 * read the set's latest (after a reload, the old sync worker may still be
 * at one while the new one starts its own): NGX_OK to go on.  The mutex
 * is held.
 */

static ngx_int_t
ngx_http_canary_sync_set_current(ngx_http_canary_sync_t *sync)
{
    ngx_http_canary_set_t  *cur;

    if (!sync->set_inplace) {
        return NGX_OK;
    }

    cur = ngx_http_canary_snapshot_set(sync->set_sr->ro->sh->snapshot,
                                       sync->set_which);

    if (cur != sync->set || ngx_http_canary_set_gen(cur) != sync->set_gen) {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/*
 * The end of an in-place read: the members SSCAN did not give are
 * removed, NGX_HTTP_CANARY_SWEEP entries per event-loop turn.
 */

static void
ngx_http_canary_sync_set_sweep(ngx_http_canary_sync_t *sync)
{
    ngx_int_t                        rc;
    ngx_http_canary_sync_rollout_t  *sr;

    sr = sync->set_sr;

    ngx_shmtx_lock(&sync->cmcf->shpool->mutex);

    if (ngx_http_canary_sync_set_current(sync) != NGX_OK) {
        ngx_shmtx_unlock(&sync->cmcf->shpool->mutex);
        sr->dirty |= 1 << sync->set_which;
        ngx_http_canary_sync_set_abort(sync);
        ngx_http_canary_sync_next_set(sync);
        return;
    }

    rc = ngx_http_canary_set_sweep_locked(sync->cmcf->shpool,
                                          &sync->cmcf->sh->reclaim,
                                          sync->set, sync->set_gen,
                                          &sync->set_pos,
                                          NGX_HTTP_CANARY_SWEEP,
                                          &sync->set_removed);

    ngx_shmtx_unlock(&sync->cmcf->shpool->mutex);

    if (rc == NGX_AGAIN) {
        ngx_add_timer(&sync->set_clear, 1);
        return;
    }

    /* NGX_ERROR: no room to compact it; the set is right all the same */

    ngx_http_canary_sync_set_done(sync);
    ngx_http_canary_sync_next_set(sync);
}


/* an in-place read is over: the set is Redis' */

static void
ngx_http_canary_sync_set_done(ngx_http_canary_sync_t *sync)
{
    ngx_uint_t                       which, n;
    ngx_http_canary_set_t           *set;
    ngx_http_canary_sync_rollout_t  *sr;

    sr = sync->set_sr;
    which = sync->set_which;
    set = sync->set;

    sync->set = NULL;
    sync->set_sr = NULL;
    sync->set_inplace = 0;
    sync->set_sweeping = 0;

    sr->too_big[which] = -1;

    n = ngx_http_canary_set_size(set);

    if (n == 0) {
        /* emptied: no set, as when Redis has none */
        if (ngx_http_canary_sync_set_swap(sync->cmcf, sr->ro, which, NULL,
                                          sync->log)
            == NGX_ERROR)
        {
            ngx_http_canary_users_abort(&sync->users);
            return;
        }
    }

    ngx_http_canary_users_commit(&sync->users);

    ngx_log_error(NGX_LOG_INFO, sync->log, 0,
                  "canary sync: rollout \"%V\" %s%V now has %ui members "
                  "(%ui added, %ui removed) in %uz bytes of the zone",
                  &sr->ro->name,
                  which == 0 ? "canary_users" : which == 1 ? "stable_users"
                                                           : "users:",
                  which < 2 ? &ngx_http_canary_empty
                            : &sr->ro->variants[which - 1].name, n,
                  sync->set_added, sync->set_removed,
                  ngx_http_canary_set_bytes(n ? set : NULL));

    if (sync->set_added || sync->set_removed) {
        sync->changed = 1;
        ngx_http_canary_state_write(sync);
        sync->changed = 0;
    }
}


/*
 * A set that does not fit: logged (at most once a second per rollout)
 * and counted once per size, and read again when there may be room
 */

static void
ngx_http_canary_sync_too_big(ngx_http_canary_sync_t *sync,
    ngx_http_canary_sync_rollout_t *sr, ngx_uint_t which)
{
    size_t      keys;
    ngx_uint_t  n, seen;

    n = (sr->scard[which] > 0) ? (ngx_uint_t) sr->scard[which] : 0;

    /* the members' bytes: as those seen so far, 16 each if none was */

    seen = sync->set_seen;
    keys = seen ? ngx_max(sync->set_keys / seen, 1) : 16;
    keys = (n <= NGX_MAX_SIZE_T_VALUE / 8 / keys) ? keys * n
                                                   : NGX_MAX_SIZE_T_VALUE;

    sr->need[which] = ngx_http_canary_set_need(n, keys);
    sr->dirty &= ~(1 << which);

    if (sr->too_big[which] == sr->scard[which]) {
        return;
    }

    sr->too_big[which] = sr->scard[which];

    (void) ngx_atomic_fetch_add(&sync->cmcf->sh->refused, 1);

    ngx_http_canary_sync_nomem(sync, sr->ro, &sr->set_key[which],
                               sr->scard[which], sr->need[which]);
}


/*
 * A change refused for lack of room in the zone: what it needs and what
 * is free.  The same refusal (the same key, and for a set the same size)
 * is logged at most once every NGX_HTTP_CANARY_NOMEM_LOG ms per rollout,
 * with the count of those not logged in between.
 */

static void
ngx_http_canary_sync_nomem(ngx_http_canary_sync_t *sync,
    ngx_http_canary_rollout_t *ro, ngx_str_t *key, ngx_int_t members,
    size_t need)
{
    u_char                          *p;
    u_char                           room[NGX_HTTP_CANARY_ROOM_LEN];
    u_char                           count[NGX_INT_T_LEN + 16];
    ngx_str_t                        what;
    ngx_http_canary_sync_rollout_t  *sr;

    if (sync == NULL || ro->index >= sync->nrollouts) {
        return;
    }

    sr = &sync->rollouts[ro->index];

    what.data = count;
    what.len = (members >= 0)
               ? (size_t) (ngx_sprintf(count, " (%i members)", members)
                           - count)
               : 0;

    /* the same refusal again (a set of another size is another) */

    if (sr->nomem_key == key && sr->nomem_members == members
        && ngx_current_msec - sr->nomem_logged < NGX_HTTP_CANARY_NOMEM_LOG)
    {
        sr->nomem_suppressed++;
        return;
    }

    p = ngx_http_canary_zone_room(sync->cmcf, room, need);

    ngx_log_error(NGX_LOG_ERR, sync->log, 0,
                  "canary sync: no room in canary_zone for \"%V\"%V of "
                  "rollout \"%V\": %*s; the last good state stays in force "
                  "and the change is tried again when there is room (%ui "
                  "more refused since the last such line)", key, &what,
                  &ro->name, p - room, room, sr->nomem_suppressed);

    sr->nomem_key = key;
    sr->nomem_members = members;
    sr->nomem_logged = ngx_current_msec;
    sr->nomem_suppressed = 0;
}


static void
ngx_http_canary_sync_set_abort(ngx_http_canary_sync_t *sync)
{
    if (sync->set_clear.timer_set) {
        ngx_del_timer(&sync->set_clear);
    }

    ngx_http_canary_users_abort(&sync->users);

    /* a set changed in place stays as it is, right member by member */

    if (sync->set && !sync->set_inplace) {
        ngx_shmtx_lock(&sync->cmcf->shpool->mutex);

        if (sync->cmcf->sh->building == sync->set) {
            sync->cmcf->sh->building = NULL;
        }

        ngx_http_canary_set_free_locked(sync->cmcf->shpool, sync->set);
        ngx_shmtx_unlock(&sync->cmcf->shpool->mutex);
    }

    sync->set = NULL;
    sync->set_sr = NULL;
    sync->set_inplace = 0;
    sync->set_sweeping = 0;
}


static void
ngx_http_canary_sync_set_publish(ngx_http_canary_sync_t *sync)
{
    ngx_uint_t                       which, n;
    ngx_http_canary_set_t           *set;
    ngx_http_canary_sync_rollout_t  *sr;

    sr = sync->set_sr;
    which = sync->set_which;
    set = sync->set;

    sync->set = NULL;
    sync->set_sr = NULL;

    n = ngx_http_canary_set_size(set);

    switch (ngx_http_canary_sync_set_swap(sync->cmcf, sr->ro, which, set,
                                          sync->log))
    {
    case NGX_OK:
        break;

    case NGX_DECLINED:
        /* empty, as before; the file says so too */
        ngx_http_canary_users_commit(&sync->users);
        return;

    default:
        ngx_http_canary_users_abort(&sync->users);
        return;
    }

    ngx_http_canary_users_commit(&sync->users);

    sr->too_big[which] = -1;

    ngx_log_error(NGX_LOG_NOTICE, sync->log, 0,
                  "canary sync: rollout \"%V\" %s%V now has %ui members "
                  "in %uz bytes of the zone (%ui SSCAN batches)",
                  &sr->ro->name,
                  which == 0 ? "canary_users" : which == 1 ? "stable_users"
                                                           : "users:",
                  which < 2 ? &ngx_http_canary_empty
                            : &sr->ro->variants[which - 1].name, n,
                  ngx_http_canary_set_bytes(n ? set : NULL),
                  sync->set_batches);

    sync->changed = 1;
    ngx_http_canary_state_write(sync);
    sync->changed = 0;
}


/*
 * A new snapshot of the rollout with set (NULL when empty, which frees
 * it) as its canary or stable users; the old set is retired.  NGX_DECLINED:
 * no set before and none now, nothing published.
 */

static ngx_int_t
ngx_http_canary_sync_set_swap(ngx_http_canary_main_conf_t *cmcf,
    ngx_http_canary_rollout_t *ro, ngx_uint_t which,
    ngx_http_canary_set_t *set, ngx_log_t *log)
{
    ngx_http_canary_set_t       *old;
    ngx_http_canary_snapshot_t  *cur, *snap;

    ngx_shmtx_lock(&cmcf->shpool->mutex);

    if (set && cmcf->sh->building == set) {
        cmcf->sh->building = NULL;
    }

    if (ngx_http_canary_set_size(set) == 0) {
        if (set) {
            ngx_http_canary_set_free_locked(cmcf->shpool, set);
        }

        set = NULL;
    }

    cur = ro->sh->snapshot;
    old = ngx_http_canary_snapshot_set(cur, which);

    if (old == NULL && set == NULL) {
        ngx_shmtx_unlock(&cmcf->shpool->mutex);
        return NGX_DECLINED;
    }

    snap = ngx_http_canary_sync_copy_locked(cmcf->shpool, cur, NULL);

    if (snap == NULL && ngx_http_canary_reclaim_now_locked(cmcf, log)) {
        snap = ngx_http_canary_sync_copy_locked(cmcf->shpool, cur, NULL);
    }

    if (snap == NULL) {
        if (set) {
            ngx_http_canary_set_free_locked(cmcf->shpool, set);
        }

        ngx_shmtx_unlock(&cmcf->shpool->mutex);

        if (ngx_http_canary_sync) {
            ngx_http_canary_sync_nomem(ngx_http_canary_sync, ro,
                       &ngx_http_canary_sync->rollouts[ro->index].key, -1,
                       ngx_http_canary_snapshot_size(cur));
        }

        return NGX_ERROR;
    }

    ngx_http_canary_snapshot_set(snap, which) = set;

    if (which >= 2) {
        if (set) {
            snap->arm_users_mask |= 1 << (which - 2);

        } else {
            snap->arm_users_mask &= ~(1 << (which - 2));
        }
    }

    (void) ngx_http_canary_publish(cmcf, ro->sh, snap);

    if (old) {
        (void) ngx_http_canary_retire_set_locked(cmcf, old);
    }

    ngx_shmtx_unlock(&cmcf->shpool->mutex);

    return NGX_OK;
}


/*
 * The state file: written by the sync worker after each published change
 * (a temporary file beside it, then rename(), so a reader sees the old
 * file or the new one), read by the master when it creates the zone.
 *
 *     canary_state 2
 *     redis <run_id>
 *     rollout <name> <percent> <start> <end> <state or ->
 *     segment <name> <percent> <escaped value>
 *     arm <name> <arm> <weight> on|off     (when not the config's)
 *     shadow <name> <percent>              (when not the config's)
 *     auto <name> <step> <failures> <since ms> <checked ms>
 *     end
 *
 * Version 2 adds "redis", the instance the state came from when known,
 * and "auto", an automatic rollout's step as its controller last read it
 * (both for writing the state back into a Redis that lost it); a version
 * 1 file is read too.  Only rollouts whose values
 * came from Redis (or from this file) are written.  User sets have files
 * of their own, see ngx_http_canary_users.c.
 */

static void
ngx_http_canary_state_write(ngx_http_canary_sync_t *sync)
{
    u_char                         *buf, *p;
    size_t                          size;
    ngx_fd_t                        fd;
    ngx_err_t                       err;
    ngx_str_t                       tmp, *path;
    ngx_uint_t                      i, j;
    ngx_http_canary_rollout_t      *ro;
    ngx_http_canary_snapshot_t     *snap;
    ngx_http_canary_main_conf_t    *cmcf;
    ngx_http_canary_auto_status_t  *st;

    cmcf = sync->cmcf;
    path = &cmcf->state_file;

    if (path->len == 0) {
        return;
    }

    ro = cmcf->rollouts.elts;

    size = sizeof("canary_state 2\n") + sizeof("end\n")
           + sizeof("redis \n") + NGX_HTTP_CANARY_RUN_ID_LEN;

    for (i = 0; i < cmcf->rollouts.nelts; i++) {
        snap = ro[i].sh->snapshot;

        size += sizeof("rollout   100.00     rolled_back\n")
                + ro[i].name.len + 2 * NGX_TIME_T_LEN
                + sizeof("shadow   100.00\n") + ro[i].name.len;

        for (j = 0; j < snap->nsegments; j++) {
            size += sizeof("segment   100.00\n") + ro[i].name.len
                    + 3 * snap->segments[j].value.len;
        }

        for (j = 1; j <= ro[i].narms; j++) {
            size += sizeof("arm   10000 off\n") + ro[i].name.len
                    + ro[i].variants[j].name.len;
        }

        size += sizeof("auto     \n") + ro[i].name.len + 4 * NGX_INT64_LEN;
    }

    buf = ngx_alloc(size, sync->log);
    if (buf == NULL) {
        return;
    }

    p = ngx_cpymem(buf, "canary_state 2\n", sizeof("canary_state 2\n") - 1);

    if (cmcf->sh->run_id[0]) {
        p = ngx_sprintf(p, "redis %s\n", cmcf->sh->run_id);
    }

    for (i = 0; i < cmcf->rollouts.nelts; i++) {
        snap = ro[i].sh->snapshot;

        if (snap->source == NGX_HTTP_CANARY_SOURCE_CONFIG) {
            continue;
        }

        p = ngx_sprintf(p, "rollout %V %ui.%02ui %T %T %s\n", &ro[i].name,
                        snap->percent / 100, snap->percent % 100,
                        snap->start, snap->end,
                        snap->state ? ngx_http_canary_state_names[snap->state]
                                      .data
                                    : (u_char *) "-");

        for (j = 0; j < snap->nsegments; j++) {
            p = ngx_sprintf(p, "segment %V %ui.%02ui ", &ro[i].name,
                            snap->segments[j].percent / 100,
                            snap->segments[j].percent % 100);
            p += ngx_http_canary_escape(p, snap->segments[j].value.data,
                                        snap->segments[j].value.len);
            *p++ = '\n';
        }

        /* the arms whose allocation Redis changed */

        for (j = 1; j <= ro[i].narms; j++) {
            if (snap->weight[j - 1] == ro[i].variants[j].weight
                && !(snap->arms_off & (1 << (j - 1))))
            {
                continue;
            }

            p = ngx_sprintf(p, "arm %V %V %uD %s\n", &ro[i].name,
                            &ro[i].variants[j].name, snap->weight[j - 1],
                            (snap->arms_off & (1 << (j - 1))) ? "off"
                                                              : "on");
        }

        /* the shadow share, as the arms, when not the configuration's */

        if (snap->shadow != ro[i].shadow) {
            p = ngx_sprintf(p, "shadow %V %ui.%02ui\n", &ro[i].name,
                            snap->shadow / 100, snap->shadow % 100);
        }

        st = ro[i].sh->autost;

        if (st && st->updated && st->step) {
            p = ngx_sprintf(p, "auto %V %ui %ui %uL %uL\n", &ro[i].name,
                            st->step, st->failures, st->since, st->checked);
        }
    }

    p = ngx_cpymem(p, "end\n", sizeof("end\n") - 1);

    sync->state_auto = ngx_http_canary_state_auto(sync);

    tmp.len = path->len + sizeof(".tmp") - 1;
    tmp.data = ngx_alloc(tmp.len + 1, sync->log);
    if (tmp.data == NULL) {
        ngx_free(buf);
        return;
    }

    ngx_sprintf(tmp.data, "%V.tmp%Z", path);

    err = 0;

    fd = ngx_open_file(tmp.data, NGX_FILE_WRONLY, NGX_FILE_TRUNCATE,
                       NGX_FILE_DEFAULT_ACCESS);

    if (fd == NGX_INVALID_FILE) {
        err = ngx_errno;
        goto failed;
    }

    if (ngx_write_fd(fd, buf, p - buf) != p - buf) {
        err = ngx_errno;
        (void) ngx_close_file(fd);
        (void) ngx_delete_file(tmp.data);
        goto failed;
    }

    if (ngx_close_file(fd) == NGX_FILE_ERROR) {
        err = ngx_errno;
        goto failed;
    }

    if (ngx_rename_file(tmp.data, path->data) == NGX_FILE_ERROR) {
        err = ngx_errno;
        (void) ngx_delete_file(tmp.data);
        goto failed;
    }

    if (sync->state_err) {
        ngx_log_error(NGX_LOG_NOTICE, sync->log, 0,
                      "canary sync: state file \"%V\" written again", path);
    }

    sync->state_err = 0;

    ngx_free(tmp.data);
    ngx_free(buf);

    return;

failed:

    if (err != sync->state_err) {
        ngx_log_error(NGX_LOG_ERR, sync->log, err,
                      "canary sync: cannot write state file \"%V\", its "
                      "folder must be writable by the worker user", path);
    }

    sync->state_err = err ? err : NGX_ERROR;

    ngx_free(tmp.data);
    ngx_free(buf);
}


/* a sum of what the state file's "auto" lines hold, to tell a change */

static uint64_t
ngx_http_canary_state_auto(ngx_http_canary_sync_t *sync)
{
    uint64_t                        sum;
    ngx_uint_t                      i;
    ngx_http_canary_auto_status_t  *st;

    sum = 0;

    for (i = 0; i < sync->nrollouts; i++) {
        st = sync->rollouts[i].ro->sh->autost;

        if (st && st->updated && st->step) {
            sum = sum * 31 + st->step;
            sum = sum * 31 + st->failures;
            sum = sum * 31 + st->since;
            sum = sum * 31 + st->checked;
        }
    }

    return sum;
}


/*
 * At start, when the zone is new: the state file's values, published with
 * source "state_file", and the user sets of the users files beside it.  A
 * file that does not parse is ignored as a whole.
 */

void
ngx_http_canary_state_load(ngx_http_canary_main_conf_t *cmcf, ngx_log_t *log)
{
    ngx_uint_t                  i, n, which;
    ngx_http_canary_set_t      *set;
    ngx_http_canary_rollout_t  *ro;

    if (cmcf->state_file.len == 0) {
        return;
    }

    ngx_http_canary_state_load_values(cmcf, log);

    ro = cmcf->rollouts.elts;

    for (i = 0; i < cmcf->rollouts.nelts; i++) {
        n = (ro[i].narms > 1) ? 2 + ro[i].narms : 2;

        for (which = 0; which < n; which++) {
            set = ngx_http_canary_users_load(cmcf,
                                             which < 2
                                             ? &ro[i].name
                                             : &ro[i].variants[which - 1].users,
                                             ngx_min(which, 2), log);

            if (set) {
                (void) ngx_http_canary_sync_set_swap(cmcf, &ro[i], which, set,
                                                     log);
            }
        }
    }
}


static void
ngx_http_canary_state_load_values(ngx_http_canary_main_conf_t *cmcf,
    ngx_log_t *log)
{
    u_char                         *buf;
    ssize_t                         n;
    ngx_fd_t                        fd;
    ngx_err_t                       err;
    ngx_uint_t                      i;
    ngx_pool_t                     *pool;
    ngx_file_info_t                 fi;
    ngx_http_canary_values_t       *vals;
    ngx_http_canary_rollout_t      *ro;
    ngx_http_canary_auto_status_t  *st;
    u_char                          run_id[NGX_HTTP_CANARY_RUN_ID_LEN + 1];

    if (cmcf->state_file.len == 0 || cmcf->rollouts.nelts == 0) {
        return;
    }

    fd = ngx_open_file(cmcf->state_file.data, NGX_FILE_RDONLY,
                       NGX_FILE_OPEN, 0);

    if (fd == NGX_INVALID_FILE) {
        err = ngx_errno;
        ngx_log_error((err == NGX_ENOENT ? NGX_LOG_NOTICE : NGX_LOG_ERR),
                      log, err,
                      "canary: no state file \"%V\" to start from, using "
                      "the config", &cmcf->state_file);
        return;
    }

    pool = NULL;
    buf = NULL;

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR
        || ngx_file_size(&fi) > NGX_HTTP_CANARY_STATE_MAX)
    {
        ngx_log_error(NGX_LOG_ERR, log, ngx_errno,
                      "canary: state file \"%V\" cannot be read or is too "
                      "large, using the config", &cmcf->state_file);
        goto done;
    }

    pool = ngx_create_pool(4096, log);
    if (pool == NULL) {
        goto done;
    }

    buf = ngx_pnalloc(pool, ngx_file_size(&fi) + 1);
    if (buf == NULL) {
        goto done;
    }

    n = ngx_read_fd(fd, buf, ngx_file_size(&fi));

    if (n != ngx_file_size(&fi)) {
        ngx_log_error(NGX_LOG_ERR, log, ngx_errno,
                      "canary: state file \"%V\" read short, using the "
                      "config", &cmcf->state_file);
        goto done;
    }

    vals = ngx_pcalloc(pool, cmcf->rollouts.nelts
                             * sizeof(ngx_http_canary_values_t));
    if (vals == NULL) {
        goto done;
    }

    ro = cmcf->rollouts.elts;

    for (i = 0; i < cmcf->rollouts.nelts; i++) {
        ngx_http_canary_values_init(&vals[i], &ro[i]);
    }

    run_id[0] = '\0';

    if (ngx_http_canary_state_parse(cmcf, buf, n, vals, run_id, pool, log)
        != NGX_OK)
    {
        goto done;
    }

    if (run_id[0]) {
        ngx_memcpy(cmcf->sh->run_id, run_id, NGX_HTTP_CANARY_RUN_ID_LEN + 1);
    }

    for (i = 0; i < cmcf->rollouts.nelts; i++) {
        if (vals[i].source != NGX_HTTP_CANARY_SOURCE_STATE_FILE) {
            continue;
        }

        (void) ngx_http_canary_sync_publish(cmcf, &ro[i], &vals[i], log);

        st = ro[i].sh->autost;

        if (st && vals[i].step && ro[i].policy) {
            ngx_shmtx_lock(&cmcf->shpool->mutex);

            st->step = (ngx_uint_t) vals[i].step;
            st->nsteps = ro[i].policy->nsteps;
            st->failures = (ngx_uint_t) vals[i].failures;
            st->since = vals[i].since;
            st->checked = vals[i].checked;
            st->updated = ngx_time();

            ngx_shmtx_unlock(&cmcf->shpool->mutex);
        }
    }

done:

    (void) ngx_close_file(fd);

    if (pool) {
        ngx_destroy_pool(pool);
    }
}


static ngx_int_t
ngx_http_canary_state_parse(ngx_http_canary_main_conf_t *cmcf, u_char *p,
    size_t len, ngx_http_canary_values_t *vals, u_char *run_id,
    ngx_pool_t *pool, ngx_log_t *log)
{
    int                         ntok;
    u_char                     *last, *eol, *s;
    size_t                      slen;
    time_t                      start, end;
    uint32_t                    pct, w;
    unsigned                    state;
    ngx_int_t                   idx, arm;
    off_t                       num[4];
    ngx_uint_t                  line, i, ended;
    const char                 *why;
    ngx_array_t                *segs;
    ngx_http_canary_segment_t  *seg;
    ngx_http_canary_rollout_t  *ro;
    ngx_http_canary_token_t     tok[6];

    ro = cmcf->rollouts.elts;
    last = p + len;
    line = 0;
    ended = 0;

    segs = ngx_pcalloc(pool, cmcf->rollouts.nelts * sizeof(ngx_array_t));
    if (segs == NULL) {
        return NGX_ERROR;
    }

    while (p < last) {
        line++;

        eol = ngx_strlchr(p, last, '\n');
        if (eol == NULL) {
            why = "no newline at the end";
            goto invalid;
        }

        if (ended) {
            why = "text after \"end\"";
            goto invalid;
        }

        ntok = ngx_http_canary_split(p, eol - p, tok, 6);
        p = eol + 1;

        if (ntok < 0) {
            why = "bad spacing or a control character";
            goto invalid;
        }

        if (line == 1) {
            if (ntok != 2 || tok[0].len != 12
                || ngx_strncmp(tok[0].data, "canary_state", 12) != 0
                || tok[1].len != 1
                || (tok[1].data[0] != '1' && tok[1].data[0] != '2'))
            {
                why = "not \"canary_state 1\" or \"canary_state 2\"";
                goto invalid;
            }

            continue;
        }

        if (ntok == 2 && tok[0].len == 5
            && ngx_strncmp(tok[0].data, "redis", 5) == 0)
        {
            for (i = 0; i < tok[1].len; i++) {
                if (!isxdigit(tok[1].data[i])) {
                    break;
                }
            }

            if (tok[1].len != NGX_HTTP_CANARY_RUN_ID_LEN
                || i != tok[1].len)
            {
                why = "bad run_id";
                goto invalid;
            }

            ngx_memcpy(run_id, tok[1].data, NGX_HTTP_CANARY_RUN_ID_LEN);
            run_id[NGX_HTTP_CANARY_RUN_ID_LEN] = '\0';

            continue;
        }

        if (ntok == 1 && tok[0].len == 3
            && ngx_strncmp(tok[0].data, "end", 3) == 0)
        {
            ended = 1;
            continue;
        }

        if (ntok < 2) {
            why = "unknown line";
            goto invalid;
        }

        /* the rollout; one not in this config is skipped */

        for (idx = 0; idx < (ngx_int_t) cmcf->rollouts.nelts; idx++) {
            if (ro[idx].name.len == tok[1].len
                && ngx_strncmp(ro[idx].name.data, tok[1].data, tok[1].len)
                   == 0)
            {
                break;
            }
        }

        if (idx == (ngx_int_t) cmcf->rollouts.nelts) {
            idx = -1;
        }

        if (ntok == 6 && tok[0].len == 7
            && ngx_strncmp(tok[0].data, "rollout", 7) == 0)
        {
            if (ngx_http_canary_parse_percent(tok[2].data, tok[2].len, &pct)
                || ngx_http_canary_parse_time(tok[3].data, tok[3].len,
                                              &start)
                || ngx_http_canary_parse_time(tok[4].data, tok[4].len, &end))
            {
                why = "bad percent or time";
                goto invalid;
            }

            if (tok[5].len == 1 && tok[5].data[0] == '-') {
                state = NGX_HTTP_CANARY_STATE_NONE;

            } else if (ngx_http_canary_parse_state(tok[5].data, tok[5].len,
                                                   &state))
            {
                why = "bad state";
                goto invalid;
            }

            if (idx < 0) {
                continue;
            }

            if (vals[idx].source == NGX_HTTP_CANARY_SOURCE_STATE_FILE) {
                why = "rollout given twice";
                goto invalid;
            }

            if (ro[idx].hash == NGX_HTTP_CANARY_HASH_UNLEASH && pct % 100) {
                ngx_log_error(NGX_LOG_WARN, log, 0,
                              "canary: state file \"%V\" line %ui: percent "
                              "of \"hash unleash\" rollout \"%V\" is not "
                              "whole, ignored", &cmcf->state_file, line,
                              &ro[idx].name);
                continue;
            }

            vals[idx].percent = pct;
            vals[idx].start = start;
            vals[idx].end = end;
            vals[idx].state = state;
            vals[idx].source = NGX_HTTP_CANARY_SOURCE_STATE_FILE;

            continue;
        }

        if (ntok == 6 && tok[0].len == 4
            && ngx_strncmp(tok[0].data, "auto", 4) == 0)
        {
            for (i = 0; i < 4; i++) {
                num[i] = ngx_atoof((u_char *) tok[2 + i].data, tok[2 + i].len);
                if (num[i] == NGX_ERROR) {
                    why = "bad auto step";
                    goto invalid;
                }
            }

            if (idx < 0
                || vals[idx].source != NGX_HTTP_CANARY_SOURCE_STATE_FILE)
            {
                continue;
            }

            vals[idx].step = num[0];
            vals[idx].failures = num[1];
            vals[idx].since = num[2];
            vals[idx].checked = num[3];

            continue;
        }

        if (ntok == 5 && tok[0].len == 3
            && ngx_strncmp(tok[0].data, "arm", 3) == 0)
        {
            if (ngx_http_canary_parse_weight(tok[3].data, tok[3].len, &w)
                || !((tok[4].len == 2
                      && ngx_strncmp(tok[4].data, "on", 2) == 0)
                     || (tok[4].len == 3
                         && ngx_strncmp(tok[4].data, "off", 3) == 0)))
            {
                why = "bad arm weight or state";
                goto invalid;
            }

            if (idx < 0
                || vals[idx].source != NGX_HTTP_CANARY_SOURCE_STATE_FILE)
            {
                continue;
            }

            /* an arm no longer in the configuration is skipped */

            arm = ngx_http_canary_find_arm(&ro[idx],
                                           (u_char *) tok[2].data,
                                           tok[2].len);
            if (arm == NGX_ERROR) {
                continue;
            }

            vals[idx].weight[arm - 1] = w;

            if (tok[4].len == 3) {
                vals[idx].arms_off |= 1 << (arm - 1);
            }

            continue;
        }

        if (ntok == 4 && tok[0].len == 7
            && ngx_strncmp(tok[0].data, "segment", 7) == 0)
        {
            if (ngx_http_canary_parse_percent(tok[2].data, tok[2].len, &pct))
            {
                why = "bad segment percent";
                goto invalid;
            }

            s = ngx_pnalloc(pool, tok[3].len);
            if (s == NULL) {
                return NGX_ERROR;
            }

            if (ngx_http_canary_unescape(tok[3].data, tok[3].len, s, &slen))
            {
                why = "bad segment value";
                goto invalid;
            }

            if (idx < 0) {
                continue;
            }

            if (vals[idx].source != NGX_HTTP_CANARY_SOURCE_STATE_FILE) {
                /* its rollout line was skipped */
                continue;
            }

            if (segs[idx].elts == NULL
                && ngx_array_init(&segs[idx], pool, 4,
                                  sizeof(ngx_http_canary_segment_t))
                   != NGX_OK)
            {
                return NGX_ERROR;
            }

            seg = ngx_array_push(&segs[idx]);
            if (seg == NULL) {
                return NGX_ERROR;
            }

            seg->value.data = s;
            seg->value.len = slen;
            seg->percent = pct;

            continue;
        }

        if (ntok == 3 && tok[0].len == 6
            && ngx_strncmp(tok[0].data, "shadow", 6) == 0)
        {
            if (ngx_http_canary_parse_percent(tok[2].data, tok[2].len, &pct))
            {
                why = "bad shadow percent";
                goto invalid;
            }

            if (idx >= 0
                && vals[idx].source == NGX_HTTP_CANARY_SOURCE_STATE_FILE)
            {
                vals[idx].shadow = pct;
            }

            continue;
        }

        why = "unknown line";
        goto invalid;
    }

    if (!ended) {
        why = "no \"end\" line, the file is truncated";
        goto invalid;
    }

    for (i = 0; i < cmcf->rollouts.nelts; i++) {
        vals[i].segments = segs[i].elts;
        vals[i].nsegments = segs[i].nelts;
    }

    return NGX_OK;

invalid:

    ngx_log_error(NGX_LOG_ERR, log, 0,
                  "canary: state file \"%V\" line %ui: %s, the file is "
                  "ignored and the config is used", &cmcf->state_file,
                  line, why);

    return NGX_DECLINED;
}


char *
ngx_http_canary_state_file(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_canary_main_conf_t *cmcf = conf;

    ngx_str_t        *value, dir;
    ngx_file_info_t   fi;

    if (cmcf->state_file.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 0) {
        return "takes a path";
    }

    cmcf->state_file = value[1];

    if (ngx_conf_full_name(cf->cycle, &cmcf->state_file, 0) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    /* the folder must exist (writable by the worker user: documented) */

    dir = cmcf->state_file;

    while (dir.len && dir.data[dir.len - 1] != '/') {
        dir.len--;
    }

    if (dir.len > 1) {
        dir.len--;
    }

    dir.data = ngx_pnalloc(cf->pool, dir.len + 1);
    if (dir.data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memcpy(dir.data, cmcf->state_file.data, dir.len);
    dir.data[dir.len] = '\0';

    if (ngx_file_info(dir.data, &fi) == NGX_FILE_ERROR
        || !ngx_is_dir(&fi))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "canary_state_file \"%V\": folder \"%s\" is "
                           "missing", &value[1], dir.data);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


char *
ngx_http_canary_sync_interval(ngx_conf_t *cf, void *post, void *data)
{
    ngx_msec_t  *ms = data;

    if (*ms < 10) {
        return "must be at least 10ms";
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_canary_key(ngx_pool_t *pool, ngx_str_t *key, ngx_str_t *prefix,
    ngx_str_t *name, char *suffix)
{
    u_char  *p;
    size_t   len;

    len = ngx_strlen(suffix);

    key->len = prefix->len + sizeof("rollout:") - 1 + name->len + len;
    key->data = ngx_pnalloc(pool, key->len);
    if (key->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(key->data, prefix->data, prefix->len);
    p = ngx_cpymem(p, "rollout:", sizeof("rollout:") - 1);
    p = ngx_cpymem(p, name->data, name->len);
    ngx_memcpy(p, suffix, len);

    return NGX_OK;
}


/* a value for the log: bytes outside printable ASCII, '"' and '\\' as
 * \xHH, and cut after 64 bytes */

static u_char *
ngx_http_canary_log_value(u_char *buf, ngx_str_t *value)
{
    u_char      *p;
    size_t       len, i;
    static char  hex[] = "0123456789abcdef";

    len = ngx_min(value->len, NGX_HTTP_CANARY_LOG_VALUE_MAX);
    p = buf;

    for (i = 0; i < len; i++) {
        if (value->data[i] >= 0x20 && value->data[i] < 0x7f
            && value->data[i] != '"' && value->data[i] != '\\')
        {
            *p++ = value->data[i];
            continue;
        }

        *p++ = '\\';
        *p++ = 'x';
        *p++ = hex[value->data[i] >> 4];
        *p++ = hex[value->data[i] & 0xf];
    }

    if (len < value->len) {
        p = ngx_cpymem(p, "...", 3);
    }

    return p;
}
