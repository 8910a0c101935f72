
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * The restore of a Redis that lost its data (another instance than the
 * last good state came from, holding none of the configured rollouts'
 * keys, see ngx_http_canary_sync_judge()): the last good state, from the
 * zone or the state file, written back.
 *
 * The restore: take the lease <prefix>restore (its value is this node's
 * name; 30 s) and mark <prefix>restoring with the instance's run_id (a
 * restore begun); write each rollout hash with a script that writes it
 * only if it still does not exist, with a history entry "restored" (and
 * the event to this node's webhooks); fill each user set into a temporary
 * key in SADD batches (one per reply) and rename it onto the set only if
 * that still does not exist; then release the lease, delete the mark and
 * PUBLISH <prefix>changed.  Rounds wait meanwhile; the round after it
 * reads back what Redis holds.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_http.h>

#include "ngx_http_canary_redis_args.h"
#include "ngx_http_canary_restore.h"
#include "ngx_http_canary_keys.h"
#include "ngx_http_canary_webhook.h"


/* a restore: members per SADD, the lease's and the temporary sets' life */
#define NGX_HTTP_CANARY_RESTORE_BATCH  1000
#define NGX_HTTP_CANARY_RESTORE_LEASE  "30000"
#define NGX_HTTP_CANARY_RESTORE_TMP    "60000"
#define NGX_HTTP_CANARY_RESTORE_ARGS   64

/* room for one formatted value: a count, a percent, a time */
#define NGX_HTTP_CANARY_RESTORE_VALUE  NGX_INT64_LEN


struct ngx_http_canary_restore_s {
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
    ngx_http_canary_sync_rollout_t **sent;      /* the hashes, in order */
    ngx_uint_t                      answered;
    ngx_str_t                       tmp;
    ngx_http_canary_redis_args_t    args;     /* the command built */
    const char                    **argv;
    size_t                         *len;
    ngx_uint_t                      nalloc;
    u_char                         *buf;
    size_t                          size;
    unsigned                        failed:1;
};


static void ngx_http_canary_restore_lease(ngx_http_canary_redis_t *rc,
    redisReply *reply, void *data);
static ngx_int_t ngx_http_canary_restore_hash(ngx_http_canary_sync_t *sync,
    ngx_http_canary_sync_rollout_t *sr);
static void ngx_http_canary_restore_auto(ngx_http_canary_redis_args_t *a,
    ngx_http_canary_auto_status_t *st);
static void ngx_http_canary_restore_history(ngx_http_canary_sync_t *sync,
    ngx_http_canary_sync_rollout_t *sr, ngx_http_canary_redis_args_t *a);
static void ngx_http_canary_restore_event(ngx_http_canary_sync_t *sync,
    ngx_http_canary_sync_rollout_t *sr);
static char *ngx_http_canary_restore_from(ngx_http_canary_sync_t *sync);
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
static ngx_http_canary_redis_args_t *ngx_http_canary_restore_args(
    ngx_http_canary_restore_t *r, ngx_uint_t nargs, size_t size);


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
    "local n = tonumber(ARGV[1]) "
    "for i = 2, n, 2 do "
    "  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) "
    "end "
    "redis.call('XADD', KEYS[2], 'MAXLEN', '~', '1000', '*', "
    "           unpack(ARGV, n + 2, #ARGV)) "
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


void
ngx_http_canary_restore_start(ngx_http_canary_sync_t *sync)
{
    ngx_uint_t                     i;
    ngx_pool_t                    *pool;
    ngx_http_canary_restore_t     *r;
    ngx_http_canary_redis_args_t  *a;

    pool = ngx_create_pool(4096, sync->log);
    if (pool == NULL) {
        return;
    }

    r = ngx_pcalloc(pool, sizeof(ngx_http_canary_restore_t));
    if (r == NULL) {
        ngx_destroy_pool(pool);
        return;
    }

    r->pool = pool;

    a = ngx_http_canary_restore_args(r, NGX_HTTP_CANARY_RESTORE_BATCH
                                        + NGX_HTTP_CANARY_RESTORE_ARGS,
                                     NGX_HTTP_CANARY_RESTORE_ARGS
                                     * NGX_HTTP_CANARY_RESTORE_VALUE);
    if (a == NULL) {
        ngx_destroy_pool(pool);
        return;
    }

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

    r->sent = ngx_pcalloc(pool, sync->nrollouts
                                * sizeof(ngx_http_canary_sync_rollout_t *));
    if (r->sent == NULL) {
        ngx_destroy_pool(pool);
        return;
    }

    sync->restore = r;

    /* its sets are read across turns: nothing is freed until it ends */
    ngx_http_canary_held = 1;

    ngx_http_canary_redis_arg(a, "EVAL", 4);
    ngx_http_canary_redis_arg(a, ngx_http_canary_restore_lease_lua.data,
                              ngx_http_canary_restore_lease_lua.len);
    ngx_http_canary_redis_arg(a, "2", 1);
    ngx_http_canary_redis_arg(a, sync->lease.data, sync->lease.len);
    ngx_http_canary_redis_arg(a, sync->begun.data, sync->begun.len);
    ngx_http_canary_redis_arg(a, sync->node.data, sync->node.len);
    ngx_http_canary_redis_arg(a, NGX_HTTP_CANARY_RESTORE_LEASE,
                              sizeof(NGX_HTTP_CANARY_RESTORE_LEASE) - 1);
    ngx_http_canary_redis_arg(a, sync->run_id,
                              NGX_HTTP_CANARY_RUN_ID_LEN);

    if (ngx_http_canary_redis_send_args(sync->redis, a,
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
    size_t                          size;
    uint32_t                        arms;
    ngx_str_t                      *name, hist;
    ngx_uint_t                      i, n, count;
    ngx_http_canary_snapshot_t     *snap;
    ngx_http_canary_restore_t      *r;
    ngx_http_canary_redis_args_t   *a;
    ngx_http_canary_auto_status_t   st;

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

    /* each field and value; "percent:<segment>", "weight:<arm>", "arm:" */

    n = 2 * (snap->nsegments + 2 * NGX_HTTP_CANARY_MAX_ARMS + 32) + 4;

    /* the history entry's pairs, and the count of the hash's arguments */

    n += 24;
    size = n * NGX_HTTP_CANARY_RESTORE_VALUE;

    for (i = 0; i < snap->nsegments; i++) {
        size += snap->segments[i].value.len;
    }

    for (i = 1; i <= sr->ro->narms; i++) {
        size += 2 * sr->ro->variants[i].name.len;
    }

    a = ngx_http_canary_restore_args(r, n, size);
    if (a == NULL) {
        return NGX_ERROR;
    }

    if (ngx_http_canary_key(r->pool, &hist, &sync->cmcf->redis->prefix,
                            &sr->ro->name, ":history")
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_http_canary_redis_arg(a, "EVAL", 4);
    ngx_http_canary_redis_arg(a, ngx_http_canary_restore_hash_lua.data,
                              ngx_http_canary_restore_hash_lua.len);
    ngx_http_canary_redis_arg(a, "2", 1);
    ngx_http_canary_redis_arg(a, sr->key.data, sr->key.len);
    ngx_http_canary_redis_arg(a, hist.data, hist.len);

    /* the number of the hash's arguments, known once they are in */

    count = a->n;
    ngx_http_canary_redis_arg(a, "", 0);

    ngx_http_canary_redis_arg(a, "percent", 7);
    ngx_http_canary_redis_argf(a, "%ui.%02ui", snap->percent / 100,
                               snap->percent % 100);

    for (i = 0; i < snap->nsegments; i++) {
        ngx_http_canary_redis_argf(a, "percent:%V", &snap->segments[i].value);
        ngx_http_canary_redis_argf(a, "%ui.%02ui",
                                   snap->segments[i].percent / 100,
                                   snap->segments[i].percent % 100);
    }

    if (snap->start) {
        ngx_http_canary_redis_arg(a, "start", 5);
        ngx_http_canary_redis_argf(a, "%T", snap->start);
    }

    if (snap->end) {
        ngx_http_canary_redis_arg(a, "end", 3);
        ngx_http_canary_redis_argf(a, "%T", snap->end);
    }

    if (snap->state != NGX_HTTP_CANARY_STATE_NONE) {
        ngx_http_canary_redis_arg(a, "state", 5);
        ngx_http_canary_redis_argf(a, "%V",
                                   &ngx_http_canary_state_names[snap->state]);
    }

    /* the arms whose allocation Redis changed, as the state file keeps */

    arms = ngx_http_canary_values_arms_changed(sr->ro, snap);

    for (i = 1; i <= sr->ro->narms; i++) {
        if (!(arms & (1 << (i - 1)))) {
            continue;
        }

        name = &sr->ro->variants[i].name;

        ngx_http_canary_redis_argf(a, "weight:%V", name);
        ngx_http_canary_redis_argf(a, "%uD", snap->weight[i - 1]);

        if (snap->arms_off & (1 << (i - 1))) {
            ngx_http_canary_redis_argf(a, "arm:%V", name);
            ngx_http_canary_redis_arg(a, "off", 3);
        }
    }

    /* the shadow share, as the state file keeps it */

    if (snap->shadow != sr->ro->shadow) {
        ngx_http_canary_redis_arg(a, "shadow", 6);
        ngx_http_canary_redis_argf(a, "%ui.%02ui", snap->shadow / 100,
                                   snap->shadow % 100);
    }

    if (st.updated) {
        ngx_http_canary_restore_auto(a, &st);
    }

    if (!a->overflow) {
        n = a->n;
        ngx_http_canary_redis_argf(a, "%ui", n - count - 1);
        a->argv[count] = a->argv[n];
        a->len[count] = a->len[n];
        a->n = n;
    }

    ngx_http_canary_restore_history(sync, sr, a);

    if (ngx_http_canary_redis_send_args(sync->redis, a,
                                        ngx_http_canary_restore_hash_handler,
                                        sync)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    r->sent[r->waiting++] = sr;

    return NGX_OK;
}


/* the history entry "restored": when, by which node, from what */

static void
ngx_http_canary_restore_history(ngx_http_canary_sync_t *sync,
    ngx_http_canary_sync_rollout_t *sr, ngx_http_canary_redis_args_t *a)
{
    ngx_http_canary_snapshot_t  *snap;

    snap = sr->ro->sh->snapshot;

    ngx_http_canary_redis_arg(a, "time", 4);
    ngx_http_canary_redis_argf(a, "%uL", ngx_http_canary_now_ms());
    ngx_http_canary_redis_arg(a, "event", 5);
    ngx_http_canary_redis_arg(a, "restored", 8);
    ngx_http_canary_redis_arg(a, "source", 6);
    ngx_http_canary_redis_arg(a, "restore", 7);
    ngx_http_canary_redis_arg(a, "node", 4);
    ngx_http_canary_redis_arg(a, sync->node.data, sync->node.len);
    ngx_http_canary_redis_arg(a, "from", 4);
    ngx_http_canary_redis_argf(a, "%s", ngx_http_canary_restore_from(sync));
    ngx_http_canary_redis_arg(a, "run_id", 6);
    ngx_http_canary_redis_arg(a, sync->run_id, NGX_HTTP_CANARY_RUN_ID_LEN);
    ngx_http_canary_redis_arg(a, "percent", 7);
    ngx_http_canary_redis_argf(a, "%ui.%02ui", snap->percent / 100,
                               snap->percent % 100);
    ngx_http_canary_redis_arg(a, "state", 5);
    ngx_http_canary_redis_argf(a, "%V",
                               &ngx_http_canary_state_names[snap->state]);
}


/* a rollout hash written back, to this node's webhooks */

static void
ngx_http_canary_restore_event(ngx_http_canary_sync_t *sync,
    ngx_http_canary_sync_rollout_t *sr)
{
    u_char                      *p, *last;
    u_char                       json[1024], text[512];
    size_t                       json_len;
    ngx_str_t                   *state;
    ngx_http_canary_snapshot_t  *snap;

    snap = sr->ro->sh->snapshot;
    state = &ngx_http_canary_state_names[snap->state];

    p = json;
    last = json + sizeof(json);

    p = ngx_slprintf(p, last, "{\"rollout\":\"");
    p = ngx_http_canary_json_str(p, last, sr->ro->name.data,
                                 ngx_min(sr->ro->name.len, 256));
    p = ngx_slprintf(p, last, "\",\"event\":\"restored\","
                     "\"source\":\"restore\",\"time\":%uL,\"node\":\"",
                     ngx_http_canary_now_ms());
    p = ngx_http_canary_json_str(p, last, sync->node.data,
                                 ngx_min(sync->node.len, 256));
    p = ngx_slprintf(p, last, "\",\"from\":\"%s\",\"run_id\":\"%*s\","
                     "\"state\":\"%V\",\"percent\":%ui.%02ui}",
                     ngx_http_canary_restore_from(sync),
                     (size_t) NGX_HTTP_CANARY_RUN_ID_LEN, sync->run_id,
                     state, snap->percent / 100, snap->percent % 100);
    json_len = p - json;

    p = ngx_slprintf(text, text + sizeof(text),
                     "canary \"%V\" restored by %V: Redis came back empty "
                     "(run_id %*s), written back from the %s: %ui.%02ui%%, "
                     "%V", &sr->ro->name, &sync->node,
                     (size_t) NGX_HTTP_CANARY_RUN_ID_LEN, sync->run_id,
                     ngx_http_canary_restore_from(sync),
                     snap->percent / 100, snap->percent % 100, state);

    ngx_http_canary_webhook_send("restored", json, json_len, text, p - text);
}


static char *
ngx_http_canary_restore_from(ngx_http_canary_sync_t *sync)
{
    return (sync->restore->source == NGX_HTTP_CANARY_SOURCE_STATE_FILE)
           ? "state_file" : "zone";
}




/*
 * An automatic rollout's fields as its controller last read them: step,
 * failures, since, checked; the last decision; the last interval's
 * figures
 */

static void
ngx_http_canary_restore_auto(ngx_http_canary_redis_args_t *a,
    ngx_http_canary_auto_status_t *st)
{
    ngx_uint_t  v;

    static const char  *fig[2][4] = {
        { "s_requests", "s_errors", "s_error_rate", "s_p99" },
        { "c_requests", "c_errors", "c_error_rate", "c_p99" }
    };

    if (st->step) {
        ngx_http_canary_redis_arg(a, "step", 4);
        ngx_http_canary_redis_argf(a, "%ui", st->step);
        ngx_http_canary_redis_arg(a, "failures", 8);
        ngx_http_canary_redis_argf(a, "%ui", st->failures);
        ngx_http_canary_redis_arg(a, "since", 5);
        ngx_http_canary_redis_argf(a, "%uL", st->since);
        ngx_http_canary_redis_arg(a, "checked", 7);
        ngx_http_canary_redis_argf(a, "%uL", st->checked);
    }

    if (st->decided_at) {
        ngx_http_canary_redis_arg(a, "decided_at", 10);
        ngx_http_canary_redis_argf(a, "%uL", st->decided_at);
        ngx_http_canary_redis_arg(a, "decided_by", 10);
        ngx_http_canary_redis_arg(a, st->decided_by, st->decided_by_len);
        ngx_http_canary_redis_arg(a, "decision", 8);
        ngx_http_canary_redis_arg(a, st->decision, st->decision_len);
        ngx_http_canary_redis_arg(a, "reason", 6);
        ngx_http_canary_redis_arg(a, st->reason, st->reason_len);
    }

    if (st->interval) {
        ngx_http_canary_redis_arg(a, "interval", 8);
        ngx_http_canary_redis_argf(a, "%uL", st->interval);
        ngx_http_canary_redis_arg(a, "nodes", 5);
        ngx_http_canary_redis_argf(a, "%ui", st->nodes);

        for (v = 0; v < NGX_HTTP_CANARY_NVARIANTS; v++) {
            ngx_http_canary_redis_arg(a, fig[v][0],
                                      ngx_strlen(fig[v][0]));
            ngx_http_canary_redis_argf(a, "%uL", st->requests[v]);
            ngx_http_canary_redis_arg(a, fig[v][1],
                                      ngx_strlen(fig[v][1]));
            ngx_http_canary_redis_argf(a, "%uL", st->errors[v]);
            ngx_http_canary_redis_arg(a, fig[v][2],
                                      ngx_strlen(fig[v][2]));
            ngx_http_canary_redis_argf(a, "%uL", st->error_rate[v]);
            ngx_http_canary_redis_arg(a, fig[v][3],
                                      ngx_strlen(fig[v][3]));

            if (st->p99[v] == NGX_HTTP_CANARY_P99_INF) {
                ngx_http_canary_redis_arg(a, "inf", 3);

            } else {
                ngx_http_canary_redis_argf(a, "%uL", st->p99[v]);
            }
        }
    }
}


static void
ngx_http_canary_restore_hash_handler(ngx_http_canary_redis_t *rc,
    redisReply *reply, void *data)
{
    ngx_http_canary_sync_t  *sync = data;

    ngx_http_canary_restore_t       *r;
    ngx_http_canary_sync_rollout_t  *sr;

    r = sync->restore;

    if (r == NULL) {
        return;
    }

    sr = r->sent[r->answered++];

    if (reply && reply->type == REDIS_REPLY_INTEGER) {
        if (reply->integer == 1) {
            r->written++;
            ngx_http_canary_restore_event(sync, sr);

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
    ngx_http_canary_set_t           *set;
    ngx_http_canary_redis_args_t    *a;
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

        a = ngx_http_canary_restore_args(r, 0, 0);
        ngx_http_canary_redis_arg(a, "DEL", 3);
        ngx_http_canary_redis_arg(a, r->tmp.data, r->tmp.len);

        if (ngx_http_canary_redis_send_args(sync->redis, a,
                                            ngx_http_canary_restore_ignore,
                                            sync)
            != NGX_OK)
        {
            ngx_http_canary_restore_end(sync, "the connection failed", NULL);
            return;
        }

        ngx_http_canary_restore_sadd(sync);
        return;
    }

    /* all written: the lease released, every node told */

    a = ngx_http_canary_restore_args(r, 0, 0);
    ngx_http_canary_redis_arg(a, "EVAL", 4);
    ngx_http_canary_redis_arg(a, ngx_http_canary_restore_release_lua.data,
                              ngx_http_canary_restore_release_lua.len);
    ngx_http_canary_redis_arg(a, "2", 1);
    ngx_http_canary_redis_arg(a, sync->lease.data, sync->lease.len);
    ngx_http_canary_redis_arg(a, sync->begun.data, sync->begun.len);
    ngx_http_canary_redis_arg(a, sync->node.data, sync->node.len);
    ngx_http_canary_redis_arg(a, sync->changed_channel.data,
                              sync->changed_channel.len);

    if (ngx_http_canary_redis_send_args(sync->redis, a,
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
    ngx_http_canary_redis_args_t    *a;
    ngx_http_canary_sync_rollout_t  *sr;

    r = sync->restore;
    sr = &sync->rollouts[r->index];

    a = ngx_http_canary_restore_args(r, 0, 0);
    ngx_http_canary_redis_arg(a, "SADD", 4);
    ngx_http_canary_redis_arg(a, r->tmp.data, r->tmp.len);

    while (a->n < NGX_HTTP_CANARY_RESTORE_BATCH + 2
           && ngx_http_canary_set_next(r->set, &r->pos, &key) == NGX_OK)
    {
        ngx_http_canary_redis_arg(a, key.data, key.len);
    }

    n = a->n - 2;

    if (n) {
        if (ngx_http_canary_redis_send_args(sync->redis, a,
                                    ngx_http_canary_restore_sadd_handler, sync)
            != NGX_OK)
        {
            ngx_http_canary_restore_end(sync, "the connection failed", NULL);
            return;
        }

        r->n += n;

        if (r->n == n) {
            /* gone by itself if this node dies before the rename */
            a = ngx_http_canary_restore_args(r, 0, 0);
            ngx_http_canary_redis_arg(a, "PEXPIRE", 7);
            ngx_http_canary_redis_arg(a, r->tmp.data, r->tmp.len);
            ngx_http_canary_redis_arg(a, NGX_HTTP_CANARY_RESTORE_TMP,
                                      sizeof(NGX_HTTP_CANARY_RESTORE_TMP)
                                      - 1);

            (void) ngx_http_canary_redis_send_args(sync->redis, a,
                                          ngx_http_canary_restore_ignore, sync);
        }

        return;
    }

    a = ngx_http_canary_restore_args(r, 0, 0);
    ngx_http_canary_redis_arg(a, "EVAL", 4);
    ngx_http_canary_redis_arg(a, ngx_http_canary_restore_set_lua.data,
                              ngx_http_canary_restore_set_lua.len);
    ngx_http_canary_redis_arg(a, "2", 1);
    ngx_http_canary_redis_arg(a, r->tmp.data, r->tmp.len);
    ngx_http_canary_redis_arg(a, sr->set_key[r->which].data,
                              sr->set_key[r->which].len);

    if (ngx_http_canary_redis_send_args(sync->redis, a,
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

    sync->restored(sync);
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

void
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


/*
 * The builder of the next command; its storage grown, from the pool, to
 * nargs arguments and size bytes of formatted values when it holds less
 */

static ngx_http_canary_redis_args_t *
ngx_http_canary_restore_args(ngx_http_canary_restore_t *r, ngx_uint_t nargs,
    size_t size)
{
    if (nargs > r->nalloc) {
        r->argv = ngx_palloc(r->pool, nargs * sizeof(const char *));
        r->len = ngx_palloc(r->pool, nargs * sizeof(size_t));
        if (r->argv == NULL || r->len == NULL) {
            return NULL;
        }

        r->nalloc = nargs;
    }

    if (size > r->size) {
        r->buf = ngx_pnalloc(r->pool, size);
        if (r->buf == NULL) {
            return NULL;
        }

        r->size = size;
    }

    ngx_http_canary_redis_args_init(&r->args, r->argv, r->len, r->nalloc,
                                    r->buf, r->size);

    return &r->args;
}
