
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * The sync worker's round: every declared rollout read from Redis, and
 * what changed published as new snapshots.
 *
 * One round, every canary_sync_interval and at once after a push message:
 * for each rollout, pipelined in one write,
 *
 *     HGETALL <prefix>rollout:<name>
 *     SCARD   <prefix>rollout:<name>:canary_users
 *     SCARD   <prefix>rollout:<name>:stable_users
 *     SCARD   <prefix>rollout:<name>:users:<arm>    (with arms, each)
 *
 * Each field is parsed strictly (ngx_http_canary_values.c); a bad value
 * is refused and the field keeps its last good value.  A missing hash
 * means the config's values.  A snapshot is published only when
 * something differs.  At the end of a round, the user sets to read
 * (ngx_http_canary_sync_sets.c).
 *
 * Rounds start at most every NGX_HTTP_CANARY_SYNC_GAP ms: a burst of
 * writes is applied as its latest state, in a bounded number of rounds,
 * the first one at once.
 *
 * A new connection is asked which instance it reached (INFO's run_id):
 * another one than the last good state came from is obeyed if it holds
 * any of the rollouts' keys, and is restored if it holds none
 * (ngx_http_canary_restore.c).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_http.h>

#include "ngx_http_canary_sync_round.h"
#include "ngx_http_canary_sync_sets.h"
#include "ngx_http_canary_restore.h"


/* the least time between the starts of two rounds, in milliseconds */
#define NGX_HTTP_CANARY_SYNC_GAP       100


static void ngx_http_canary_sync_node(ngx_http_canary_shctx_t *sh,
    ngx_str_t *name);
static void ngx_http_canary_sync_hash(ngx_http_canary_redis_t *rc,
    redisReply *reply, void *data);
static void ngx_http_canary_sync_scard_reply(ngx_http_canary_redis_t *rc,
    redisReply *reply, void *data);
static void ngx_http_canary_sync_reply_done(ngx_http_canary_sync_t *sync);
static void ngx_http_canary_sync_info(ngx_http_canary_redis_t *rc,
    redisReply *reply, void *data);
static void ngx_http_canary_sync_lease(ngx_http_canary_redis_t *rc,
    redisReply *reply, void *data);
static ngx_int_t ngx_http_canary_sync_judge(ngx_http_canary_sync_t *sync);
static void ngx_http_canary_sync_adopt(ngx_http_canary_sync_t *sync);
static void ngx_http_canary_sync_config(ngx_http_canary_sync_t *sync,
    ngx_http_canary_sync_rollout_t *sr);
static void ngx_http_canary_sync_publish(ngx_http_canary_sync_t *sync,
    ngx_http_canary_sync_rollout_t *sr, ngx_http_canary_values_t *v);


void
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

    ngx_http_canary_restore_end(sync, NULL, NULL);

    ngx_http_canary_sync_set_abort(sync);

    if (sync->users.buf) {
        ngx_free(sync->users.buf);
        sync->users.buf = NULL;
    }
}


/*
 * A round for a push message, or for one that came during a round: at
 * once if the last one started NGX_HTTP_CANARY_SYNC_GAP ago, else when it
 * did.  A burst of messages so costs a few rounds, each applying the
 * latest state, and its last write is in force within the gap and one
 * round.
 */

void
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


void
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


void
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
        ngx_http_canary_sync_scard(sync, ref->sr, ref->which, reply);
    }

    ngx_http_canary_sync_reply_done(sync);
}


void
ngx_http_canary_sync_scard(ngx_http_canary_sync_t *sync,
    ngx_http_canary_sync_rollout_t *sr, ngx_uint_t which, redisReply *reply)
{
    ngx_int_t                    n;
    ngx_http_canary_set_t       *set;
    ngx_http_canary_snapshot_t  *snap;

    if (reply->type != REDIS_REPLY_INTEGER || reply->integer < 0) {
        ngx_http_canary_values_error(&sr->rf, sync->cmcf->sh, sync->log,
                                     "SCARD", &sr->set_key[which], reply);
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
        ngx_http_canary_sync_node(sh, &sync->redis->addr.name);
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
        || sync->state_auto != ngx_http_canary_state_auto(sync->cmcf))
    {
        sync->changed = 0;
        ngx_http_canary_sync_save(sync);
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
 * The node synced with, for the status page; only the sync worker writes
 * it, and only when it changed (a reader may see a line half written at
 * that moment, never past its end)
 */

static void
ngx_http_canary_sync_node(ngx_http_canary_shctx_t *sh, ngx_str_t *name)
{
    size_t  len;

    len = ngx_min(name->len, sizeof(sh->redis_node) - 1);

    if (ngx_strlen(sh->redis_node) == len
        && ngx_strncmp(sh->redis_node, name->data, len) == 0)
    {
        return;
    }

    sh->redis_node[len] = '\0';
    ngx_memcpy(sh->redis_node, name->data, len);
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
 * A restore wrote what it could: the instance is adopted, and a round
 * reads back what Redis holds now, the state written back or an
 * operator's (sync->restored)
 */

void
ngx_http_canary_sync_restored(ngx_http_canary_sync_t *sync)
{
    ngx_http_canary_sync_adopt(sync);

    if (sync->changed) {
        sync->changed = 0;
        ngx_http_canary_sync_save(sync);
    }

    /* what Redis holds now: the state written back, or an operator's */

    if (!sync->closed && ngx_http_canary_redis_ready(sync->redis)) {
        ngx_http_canary_sync_start(sync);
    }
}


/* HGETALL's answer to values, then to a snapshot if anything differs */

void
ngx_http_canary_sync_apply(ngx_http_canary_sync_t *sync,
    ngx_http_canary_sync_rollout_t *sr, redisReply *reply)
{
    ngx_str_t                    field, value;
    ngx_uint_t                   i;
    ngx_pool_t                  *pool;
    ngx_array_t                  segments;
    ngx_http_canary_rollout_t   *ro;
    ngx_http_canary_fields_t     f;
    ngx_http_canary_values_t     v;

    ro = sr->ro;

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements % 2) {
        ngx_http_canary_values_error(&sr->rf, sync->cmcf->sh, sync->log,
                                     "HGETALL", &sr->key, reply);
        return;
    }

    for (i = 0; i < reply->elements; i++) {
        if (reply->element[i]->type != REDIS_REPLY_STRING) {
            ngx_http_canary_values_error(&sr->rf, sync->cmcf->sh, sync->log,
                                     "HGETALL", &sr->key, reply);
            return;
        }
    }

    if (sr->rf.error.data) {
        ngx_free(sr->rf.error.data);
        ngx_str_null(&sr->rf.error);
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

    f.ro = ro;
    f.key = &sr->key;
    f.rf = &sr->rf;
    f.cur = ro->sh->snapshot;
    f.v = &v;
    f.segments = &segments;
    f.sh = sync->cmcf->sh;
    f.log = sync->log;

    if (sr->rf.refused_new.data) {
        ngx_free(sr->rf.refused_new.data);
        ngx_str_null(&sr->rf.refused_new);
    }

    for (i = 0; i < reply->elements; i += 2) {
        field.data = (u_char *) reply->element[i]->str;
        field.len = reply->element[i]->len;
        value.data = (u_char *) reply->element[i + 1]->str;
        value.len = reply->element[i + 1]->len;

        if (ngx_http_canary_values_field(&f, &field, &value) != NGX_OK)
        {
            ngx_reset_pool(pool);
            return;
        }
    }

    v.segments = segments.elts;
    v.nsegments = segments.nelts;

    /* what was refused now is what is not logged again next time */

    if (sr->rf.refused.data) {
        ngx_free(sr->rf.refused.data);
    }

    sr->rf.refused = sr->rf.refused_new;
    ngx_str_null(&sr->rf.refused_new);

    ngx_http_canary_sync_publish(sync, sr, &v);

    ngx_reset_pool(pool);
}


/* no hash: the config's values */

static void
ngx_http_canary_sync_config(ngx_http_canary_sync_t *sync,
    ngx_http_canary_sync_rollout_t *sr)
{
    ngx_http_canary_values_t  v;

    sr->ro->sh->synced = ngx_time();

    if (sr->rf.refused.data) {
        ngx_free(sr->rf.refused.data);
        ngx_str_null(&sr->rf.refused);
    }

    ngx_http_canary_values_init(&v, sr->ro);

    ngx_http_canary_sync_publish(sync, sr, &v);
}


/* publishes v unless the zone holds the same; no room is logged */

static void
ngx_http_canary_sync_publish(ngx_http_canary_sync_t *sync,
    ngx_http_canary_sync_rollout_t *sr, ngx_http_canary_values_t *v)
{
    switch (ngx_http_canary_snapshot_apply(sync->cmcf, sr->ro, v, sync->log))
    {
    case NGX_OK:
        sync->changed = 1;
        break;

    case NGX_ERROR:
        ngx_http_canary_sync_nomem(sync, sr->ro, &sr->key, -1,
                                   ngx_http_canary_snapshot_need(v));
        break;

    default:
        break;
    }
}
