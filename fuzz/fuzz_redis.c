
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * libFuzzer target: what Redis answers, through hiredis' redisReader, to
 * the state in the shared zone -- the sync worker's own code, linked from
 * the module's objects (ngx_http_canary_sync_round.c, _sync_sets.c,
 * _subscribe.c, _state.c, _users.c, ...), on a real slab pool, built
 * against a whole nginx tree compiled with the same sanitizers (make fuzz
 * builds it in build/nginx-fuzz).
 *
 * The input is a list of records: one byte naming what the bytes answer,
 * two bytes of length, then raw RESP bytes fed to one redisReader; every
 * reply it yields goes to the handler of that command:
 *
 *     0  HGETALL <prefix>rollout:checkout      ngx_http_canary_sync_apply()
 *     1  SCARD ...:canary_users                ngx_http_canary_sync_scard()
 *     2  SCARD ...:stable_users
 *     3  SSCAN ... (a set being built)         ..._sync_sscan_handler()
 *     4  a push message (message, pmessage)    ..._subscribe_push()
 *     5  the state file's bytes, not RESP      ngx_http_canary_state_parse()
 *     6  a users file's bytes, not RESP        ngx_http_canary_users_parse()
 *     7  a cluster's reply: an error (MOVED, ASK, TRYAGAIN, CLUSTERDOWN)
 *        ngx_http_canary_cluster_error(), else a map, as CLUSTER SLOTS
 *        ngx_http_canary_cluster_slots() and as CLUSTER SHARDS
 *        ngx_http_canary_cluster_shards() (plain and TLS ports) for the
 *        slot the first byte gives, and a string's bytes as a key for
 *        _cluster_keyslot()
 *
 * The first input byte sets the rollout's config percent and hash.  After
 * every reply the published snapshot must hold: percent 0..100% (whole
 * percents for the unleash hash), segments sorted (a hostile reply may repeat a field), each 0..100%,
 * weights 0..10000 for the rollout's two arms only (canary, blue) and
 * their sum, and the last good values when a value was refused.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_http.h>

#include "ngx_http_canary_sync.h"
#include "ngx_http_canary_sync_round.h"
#include "ngx_http_canary_sync_sets.h"
#include "ngx_http_canary_subscribe.h"
#include "ngx_http_canary_state.h"
#include "ngx_http_canary_users.h"
#include "ngx_http_canary_cluster.h"


#define FZ_ZONE  (256 * 1024)


static ngx_cycle_t                     fz_cycle;
static ngx_log_t                       fz_log;
static ngx_open_file_t                 fz_file;
static u_char                         *fz_zone;
static ngx_http_canary_main_conf_t     fz_cmcf;
static ngx_http_canary_rollout_t       fz_ro;
static ngx_http_canary_sync_t          fz_sync;
static ngx_http_canary_sync_rollout_t  fz_sr[2];
static ngx_http_canary_redis_t         fz_redis;
static ngx_http_canary_redis_t         fz_sub;
static ngx_uint_t                      fz_slot;


int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    ngx_uint_t  n;

    ngx_pagesize = getpagesize();
    for (n = ngx_pagesize; n >>= 1; ngx_pagesize_shift++) { /* void */ }
    ngx_cacheline_size = 64;
    ngx_pid = getpid();

    ngx_time_init();
    ngx_slab_sizes_init();

    fz_file.fd = open("/dev/null", O_WRONLY);
    fz_log.file = &fz_file;
    fz_log.log_level = NGX_LOG_NOTICE;
    fz_cycle.log = &fz_log;
    ngx_cycle = &fz_cycle;

    if (posix_memalign((void **) &fz_zone, ngx_pagesize, FZ_ZONE) != 0) {
        abort();
    }

    /* a closed connection: every command sent is declined */

    fz_redis.state = 0;                 /* NGX_HTTP_CANARY_REDIS_CLOSED */
    fz_redis.closed = 1;
    fz_redis.data = &fz_sync;
    fz_sub = fz_redis;

    return 0;
}


static void
fz_setup(const uint8_t flags)
{
    ngx_slab_pool_t              *shpool;
    ngx_http_canary_shctx_t      *sh;
    ngx_http_canary_snapshot_t   *snap;
    ngx_http_canary_shrollout_t  *shr;

    shpool = (ngx_slab_pool_t *) fz_zone;
    ngx_memzero(shpool, sizeof(ngx_slab_pool_t));
    shpool->end = fz_zone + FZ_ZONE;
    shpool->min_shift = 3;
    shpool->addr = fz_zone;

    if (ngx_shmtx_create(&shpool->mutex, &shpool->lock, NULL) != NGX_OK) {
        abort();
    }

    ngx_slab_init(shpool);

    sh = ngx_slab_calloc(shpool, sizeof(ngx_http_canary_shctx_t));
    sh->nslots = 1;
    shpool->data = sh;

    fz_slot = (ngx_uint_t) flags * 129;

    ngx_memzero(&fz_cmcf, sizeof(fz_cmcf));
    fz_cmcf.sh = sh;
    fz_cmcf.shpool = shpool;
    fz_cmcf.rollouts.elts = &fz_ro;
    fz_cmcf.rollouts.nelts = 1;
    fz_cmcf.rollouts.size = sizeof(ngx_http_canary_rollout_t);
    ngx_str_set(&fz_cmcf.state_file, "/nonexistent/fuzz.state");

    ngx_memzero(&fz_ro, sizeof(fz_ro));
    ngx_str_set(&fz_ro.name, "checkout");
    fz_ro.hash = (flags & 0x80) ? NGX_HTTP_CANARY_HASH_UNLEASH
                                : NGX_HTTP_CANARY_HASH_MURMUR3;
    fz_ro.percent = (flags & 0x7f) * 100 % 10100;

    /* two arms, so that weight:<arm> and arm:<arm> fields are parsed */

    fz_ro.nvariants = 3;
    fz_ro.narms = 2;
    ngx_str_set(&fz_ro.variants[0].name, "stable");
    ngx_str_set(&fz_ro.variants[1].name, "canary");
    ngx_str_set(&fz_ro.variants[2].name, "blue");
    ngx_str_set(&fz_ro.variants[1].users, "checkout:canary");
    ngx_str_set(&fz_ro.variants[2].users, "checkout:blue");
    fz_ro.variants[1].weight = 1;
    fz_ro.variants[2].weight = 2;
    fz_ro.total = 3;

    shr = ngx_slab_calloc(shpool, sizeof(ngx_http_canary_shrollout_t));
    shr->nvariants = fz_ro.nvariants;
    shr->counters = ngx_slab_calloc(shpool, fz_ro.nvariants
                                      * sizeof(ngx_http_canary_counters_t));
    shr->name = fz_ro.name;
    fz_ro.counters = shr->counters;

    snap = ngx_http_canary_snapshot_alloc(shpool, NULL, 0, 0);
    snap->weight[0] = 1;
    snap->weight[1] = 2;
    snap->total = 3;
    snap->percent = fz_ro.percent;
    snap->source = NGX_HTTP_CANARY_SOURCE_CONFIG;
    shr->snapshot = snap;
    shr->config_percent = fz_ro.percent;
    sh->rollouts = shr;
    fz_ro.sh = shr;

    ngx_memzero(fz_sr, sizeof(fz_sr));
    fz_sr[0].ro = &fz_ro;
    ngx_str_set(&fz_sr[0].key, "canary:rollout:checkout");
    ngx_str_set(&fz_sr[0].set_key[0], "canary:rollout:checkout:canary_users");
    ngx_str_set(&fz_sr[0].set_key[1], "canary:rollout:checkout:stable_users");
    fz_sr[0].scard[0] = fz_sr[0].scard[1] = -1;
    fz_sr[0].too_big[0] = fz_sr[0].too_big[1] = -1;
    fz_sr[0].nsets = 2;
    fz_sr[0].set_name[0] = fz_ro.name;
    fz_sr[0].set_name[1] = fz_ro.name;

    ngx_memzero(&fz_sync, sizeof(fz_sync));
    fz_sync.cmcf = &fz_cmcf;
    fz_sync.log = &fz_log;
    fz_sync.redis = &fz_redis;
    fz_sync.sub = &fz_sub;
    fz_sync.rollouts = fz_sr;
    fz_sync.nrollouts = 1;
    fz_sync.users.fd = NGX_INVALID_FILE;
    fz_sync.users.log = &fz_log;
    fz_sync.scratch = ngx_create_pool(4096, &fz_log);
    if (fz_sync.scratch == NULL) {
        abort();
    }
}


static void
fz_check(void)
{
    uint32_t                     total;
    ngx_uint_t                   i;
    ngx_http_canary_snapshot_t  *snap;

    snap = fz_ro.sh->snapshot;

    if (snap == NULL || snap->percent > 10000
        || (fz_ro.hash == NGX_HTTP_CANARY_HASH_UNLEASH && snap->percent % 100)
        || snap->state > NGX_HTTP_CANARY_STATE_ROLLED_BACK
        || snap->source > NGX_HTTP_CANARY_SOURCE_STATE_FILE
        || (snap->nsegments && snap->segments == NULL))
    {
        abort();
    }

    /* the allocation: weights 0..10000 of known arms, their sum */

    total = 0;

    for (i = 0; i < NGX_HTTP_CANARY_MAX_ARMS; i++) {
        if (snap->weight[i] > NGX_HTTP_CANARY_MAX_WEIGHT
            || (i >= fz_ro.narms
                && (snap->weight[i] || (snap->arms_off & (1 << i))
                    || snap->arm_users[i])))
        {
            abort();
        }

        total += snap->weight[i];
    }

    if (total != snap->total) {
        abort();
    }

    for (i = 0; i < snap->nsegments; i++) {
        if (snap->segments[i].percent > 10000) {
            abort();
        }

        if (i && ngx_memn2cmp(snap->segments[i - 1].value.data,
                              snap->segments[i].value.data,
                              snap->segments[i - 1].value.len,
                              snap->segments[i].value.len) > 0)
        {
            abort();
        }
    }
}


/* what the cluster's parsers make of a reply stays inside it and in range */

static void
fz_cluster(redisReply *reply)
{
    u_char                           *str;
    ngx_int_t                         rc, slot;
    ngx_str_t                         ip;
    ngx_uint_t                        port, tls;
    ngx_http_canary_cluster_error_t   e;

    str = (u_char *) reply->str;

    if (reply->type == REDIS_REPLY_ERROR) {
        ngx_http_canary_cluster_error(str, reply->len, &e);

        if (e.kind > NGX_HTTP_CANARY_CLUSTER_RETRY
            || e.slot >= NGX_HTTP_CANARY_CLUSTER_SLOTS
            || ((e.kind == NGX_HTTP_CANARY_CLUSTER_MOVED
                 || e.kind == NGX_HTTP_CANARY_CLUSTER_ASK)
                && (e.port < 1 || e.port > 65535
                    || e.ip.data < str
                    || e.ip.data + e.ip.len > str + reply->len)))
        {
            abort();
        }

        return;
    }

    if (reply->type == REDIS_REPLY_STRING) {
        slot = ngx_http_canary_cluster_keyslot(str, reply->len);

        if (slot < -1 || slot >= NGX_HTTP_CANARY_CLUSTER_SLOTS) {
            abort();
        }

        return;
    }

    rc = ngx_http_canary_cluster_slots(reply, fz_slot, &ip, &port);

    if (rc == NGX_OK && (port < 1 || port > 65535 || ip.data == NULL)) {
        abort();
    }

    for (tls = 0; tls < 2; tls++) {
        rc = ngx_http_canary_cluster_shards(reply, fz_slot, tls, &ip, &port);

        if (rc == NGX_OK && (port < 1 || port > 65535 || ip.data == NULL)) {
            abort();
        }
    }
}


static void
fz_reply(unsigned op, redisReply *reply)
{
    ngx_uint_t              which;
    ngx_http_canary_set_t  *set;

    switch (op) {

    case 0:
        ngx_http_canary_sync_apply(&fz_sync, &fz_sr[0], reply);
        break;

    case 1:
    case 2:
        ngx_http_canary_sync_scard(&fz_sync, &fz_sr[0], op - 1, reply);
        break;

    case 3:
        if (fz_sync.set == NULL) {
            /* as ngx_http_canary_sync_next_set() starts one */
            which = fz_sr[0].scard[1] >= 0 && fz_sr[0].scard[0] < 0;

            ngx_shmtx_lock(&fz_cmcf.shpool->mutex);
            set = ngx_http_canary_set_create_locked(fz_cmcf.shpool,
                      fz_sr[0].scard[which] > 0 ? fz_sr[0].scard[which] : 0);
            ngx_shmtx_unlock(&fz_cmcf.shpool->mutex);

            if (set == NULL) {
                break;
            }

            fz_sync.set = set;
            fz_sync.set_gen = ngx_http_canary_set_begin(set);
            fz_sync.set_inplace = 0;
            fz_sync.set_sr = &fz_sr[0];
            fz_sync.set_which = which;
            fz_sync.set_batches = 0;
        }

        ngx_http_canary_sync_sscan_handler(&fz_redis, reply, &fz_sync);
        break;

    case 7:
        fz_cluster(reply);
        break;

    default:
        /* what ngx_http_canary_redis_dispatch() lets through */

        if (reply->type == REDIS_REPLY_ARRAY && reply->elements >= 3
            && reply->element[0]->type == REDIS_REPLY_STRING
            && ((reply->element[0]->len == 7
                 && ngx_strncmp(reply->element[0]->str, "message", 7) == 0)
                || (reply->element[0]->len == 8
                    && ngx_strncmp(reply->element[0]->str, "pmessage", 8)
                       == 0)))
        {
            ngx_http_canary_subscribe_push(&fz_sub, reply);
        }

        break;
    }
}


/*
 * hiredis 0.14 allocates a multi-bulk reply's element array as soon as it
 * reads its header ("*100000000" costs 800 MB at once, whatever follows):
 * a known limit of the library, not of this module (see the README), left
 * out here so that the fuzzer looks for the module's bugs.
 */

static int
fz_huge_count(const uint8_t *p, size_t n)
{
    size_t    i;
    uint64_t  v;

    for (i = 0; i < n; i++) {
        if (p[i] != '*') {
            continue;
        }

        for (v = 0, i++; i < n && p[i] >= '0' && p[i] <= '9'; i++) {
            v = v * 10 + (p[i] - '0');

            if (v > 1024 * 1024) {
                return 1;
            }
        }
    }

    return 0;
}


static void
fz_state_file(const uint8_t *p, size_t n)
{
    u_char                    *copy;
    ngx_pool_t                *pool;
    ngx_http_canary_values_t   vals;
    u_char                     run_id[NGX_HTTP_CANARY_RUN_ID_LEN + 1];

    pool = ngx_create_pool(4096, &fz_log);
    if (pool == NULL) {
        return;
    }

    /* an exact-size heap copy: ASan sees a read past the end */

    copy = malloc(n ? n : 1);
    if (copy == NULL) {
        ngx_destroy_pool(pool);
        return;
    }

    ngx_memcpy(copy, p, n);
    ngx_http_canary_values_init(&vals, &fz_ro);
    run_id[0] = '\0';

    if (ngx_http_canary_state_parse(&fz_cmcf, copy, n, &vals, run_id, pool,
                                    &fz_log)
        == NGX_OK
        && vals.source == NGX_HTTP_CANARY_SOURCE_STATE_FILE)
    {
        (void) ngx_http_canary_snapshot_apply(&fz_cmcf, &fz_ro, &vals,
                                              &fz_log);
    }

    free(copy);
    ngx_destroy_pool(pool);
}


/* a users file: its set, if it parses, published as the rollout's */

static void
fz_users_file(const uint8_t *p, size_t n)
{
    u_char                 *copy;
    ngx_uint_t              which;
    ngx_http_canary_set_t  *set;

    if (n < 1) {
        return;
    }

    which = p[0] & 1;
    p++;
    n--;

    copy = malloc(n ? n : 1);
    if (copy == NULL) {
        return;
    }

    ngx_memcpy(copy, p, n);

    set = ngx_http_canary_users_parse(&fz_cmcf, &fz_cmcf.state_file,
                                      &fz_ro.name, which, copy, n, &fz_log);
    if (set) {
        if (ngx_http_canary_set_size(set) == 0) {
            abort();
        }

        (void) ngx_http_canary_snapshot_set_swap(&fz_cmcf, &fz_ro, which,
                                                 set, &fz_log);
    }

    free(copy);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    void         *r;
    size_t        n;
    unsigned      op;
    redisReader  *reader;

    if (size < 1) {
        return 0;
    }

    fz_setup(data[0]);
    data++;
    size--;

    reader = redisReaderCreate();
    if (reader == NULL) {
        abort();
    }

    while (size >= 3) {
        op = data[0] % 8;
        n = (size_t) data[1] << 8 | data[2];
        data += 3;
        size -= 3;

        if (n > size) {
            n = size;
        }

        if (op == 5) {
            fz_state_file(data, n);
            fz_check();

        } else if (op == 6) {
            fz_users_file(data, n);
            fz_check();

        } else if (!fz_huge_count(data, n)
                   && redisReaderFeed(reader, (const char *) data, n)
                      == REDIS_OK)
        {
            for ( ;; ) {
                r = NULL;

                if (redisReaderGetReply(reader, &r) != REDIS_OK) {
                    /* the connection would be dropped: a fresh reader */
                    redisReaderFree(reader);
                    reader = redisReaderCreate();
                    break;
                }

                if (r == NULL) {
                    break;
                }

                fz_reply(op, r);
                freeReplyObject(r);
                fz_check();
            }
        }

        data += n;
        size -= n;
    }

    if (reader) {
        redisReaderFree(reader);
    }

    ngx_http_canary_sync_set_abort(&fz_sync);

    if (fz_sync.scratch) {
        ngx_destroy_pool(fz_sync.scratch);
    }

    if (fz_sr[0].rf.refused.data) {
        ngx_free(fz_sr[0].rf.refused.data);
    }

    if (fz_sr[0].rf.refused_new.data) {
        ngx_free(fz_sr[0].rf.refused_new.data);
    }

    if (fz_sr[0].rf.error.data) {
        ngx_free(fz_sr[0].rf.error.data);
    }

    return 0;
}
