
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * The sync worker's user sets, read by SSCAN.  A set is read only when
 * its SCARD differs from the published set's size, or a push message
 * named it: SSCAN 1000 members per reply, one reply per event-loop turn
 * (the slab mutex is held per batch only).  A set that keeps most of its
 * members is changed in place: each member SSCAN gives is added, or noted
 * as seen, at once, and at the end the members it did not give are
 * removed, a slice of the table per turn (ngx_http_canary_set.c); a new
 * set, or one whose size changed by more than half, is built beside the
 * published one and published in a new snapshot, the old set retired.
 * Each set's members go to its users file as they come
 * (ngx_http_canary_users.c).
 *
 * A change the zone has no room for is refused with what it needs and
 * what is free, logged at most once a second per rollout, and tried again
 * at the next round that finds room.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_http.h>

#include "ngx_http_canary_sync_sets.h"
#include "ngx_http_canary_users.h"


#define NGX_HTTP_CANARY_SSCAN_COUNT    "1000"

/* the table entries an in-place read's end looks at per event-loop turn */
#define NGX_HTTP_CANARY_SWEEP          65536

/* a refusal for lack of room is logged at most this often per rollout */
#define NGX_HTTP_CANARY_NOMEM_LOG      1000


static void ngx_http_canary_sync_sscan(ngx_http_canary_sync_t *sync,
    u_char *cursor, size_t len);
static void ngx_http_canary_sync_too_big(ngx_http_canary_sync_t *sync,
    ngx_http_canary_sync_rollout_t *sr, ngx_uint_t which);
static void ngx_http_canary_sync_set_clear(ngx_http_canary_sync_t *sync);
static void ngx_http_canary_sync_set_publish(ngx_http_canary_sync_t *sync);
static ngx_int_t ngx_http_canary_sync_set_current(
    ngx_http_canary_sync_t *sync);
static void ngx_http_canary_sync_set_sweep(ngx_http_canary_sync_t *sync);
static const char *ngx_http_canary_sync_set_kind(ngx_uint_t which);
static ngx_str_t *ngx_http_canary_sync_set_arm(
    ngx_http_canary_sync_rollout_t *sr, ngx_uint_t which);
static void ngx_http_canary_sync_set_done(ngx_http_canary_sync_t *sync);
static ngx_int_t ngx_http_canary_sync_set_swap(ngx_http_canary_sync_t *sync,
    ngx_http_canary_sync_rollout_t *sr, ngx_uint_t which,
    ngx_http_canary_set_t *set);


static ngx_str_t  ngx_http_canary_empty = ngx_string("");


/*
 * A set a sync worker was building when it died (SIGKILL, a crash) is in
 * the zone and in no snapshot: freed here, by the next sync worker, once
 * its builder is gone (after a reload the old worker may still be at it,
 * and frees its own set when it exits).  The mutex is held.
 */

void
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

void
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

void
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

void
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
        ngx_http_canary_values_error(&sr->rf, sync->cmcf->sh, sync->log,
                                     "SSCAN", &sr->set_key[which], reply);
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


/* a set as the log names it: canary_users, stable_users, users:<arm> */

static const char *
ngx_http_canary_sync_set_kind(ngx_uint_t which)
{
    return which == 0 ? "canary_users" : which == 1 ? "stable_users"
                                                    : "users:";
}


static ngx_str_t *
ngx_http_canary_sync_set_arm(ngx_http_canary_sync_rollout_t *sr,
    ngx_uint_t which)
{
    return which < 2 ? &ngx_http_canary_empty
                     : &sr->ro->variants[which - 1].name;
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
        if (ngx_http_canary_sync_set_swap(sync, sr, which, NULL) == NGX_ERROR)
        {
            ngx_http_canary_users_abort(&sync->users);
            return;
        }
    }

    ngx_http_canary_users_commit(&sync->users);

    ngx_log_error(NGX_LOG_INFO, sync->log, 0,
                  "canary sync: rollout \"%V\" %s%V now has %ui members "
                  "(%ui added, %ui removed) in %uz bytes of the zone",
                  &sr->ro->name, ngx_http_canary_sync_set_kind(which),
                  ngx_http_canary_sync_set_arm(sr, which), n,
                  sync->set_added, sync->set_removed,
                  ngx_http_canary_set_bytes(n ? set : NULL));

    if (sync->set_added || sync->set_removed) {
        sync->changed = 1;
        ngx_http_canary_sync_save(sync);
        sync->changed = 0;
    }
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

    switch (ngx_http_canary_sync_set_swap(sync, sr, which, set))
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
                  &sr->ro->name, ngx_http_canary_sync_set_kind(which),
                  ngx_http_canary_sync_set_arm(sr, which), n,
                  ngx_http_canary_set_bytes(n ? set : NULL),
                  sync->set_batches);

    sync->changed = 1;
    ngx_http_canary_sync_save(sync);
    sync->changed = 0;
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

void
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


void
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


/*
 * The set (NULL: none) published as the rollout's set "which"; a refusal
 * for lack of room is logged
 */

static ngx_int_t
ngx_http_canary_sync_set_swap(ngx_http_canary_sync_t *sync,
    ngx_http_canary_sync_rollout_t *sr, ngx_uint_t which,
    ngx_http_canary_set_t *set)
{
    size_t     need;
    ngx_int_t  rc;

    rc = ngx_http_canary_snapshot_set_swap(sync->cmcf, sr->ro, which, set,
                                           sync->log);

    if (rc == NGX_ERROR) {
        /* nothing was published: the snapshot is the one it copied */
        need = ngx_http_canary_snapshot_size(sr->ro->sh->snapshot);
        ngx_http_canary_sync_nomem(sync, sr->ro, &sr->key, -1, need);
    }

    return rc;
}
