
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * Snapshots, and the only code that writes them.  A rollout's state is
 * an immutable snapshot in the zone; a writer (the master while it reads
 * a configuration or the state file, the sync worker afterwards, each
 * holding the slab pool's mutex) builds a new one beside the old one,
 * from values (ngx_http_canary_values_t) or with another user set, and
 * publishes it with one pointer store after a memory barrier.  The one it
 * replaces is retired, and freed once no worker can read it
 * (ngx_http_canary_reclaim.c).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_canary_snapshot.h"


static ngx_uint_t ngx_http_canary_snapshot_same(
    ngx_http_canary_snapshot_t *cur, ngx_http_canary_values_t *v);
static size_t ngx_http_canary_snapshot_bytes(ngx_http_canary_segment_t *seg,
    ngx_uint_t n);
static int ngx_libc_cdecl ngx_http_canary_segment_cmp(const void *a,
    const void *b);


/*
 * A new snapshot, a copy of "from" (or zeroes) but for its segments: room
 * for nsegments segments follows it, then "strings" bytes for their values
 * (see ngx_http_canary_snapshot_strings()), all in one block that is freed
 * as one.  The caller fills the segments and sets nsegments.  The slab
 * mutex must be held.
 */

ngx_http_canary_snapshot_t *
ngx_http_canary_snapshot_alloc(ngx_slab_pool_t *shpool,
    ngx_http_canary_snapshot_t *from, ngx_uint_t nsegments, size_t strings)
{
    ngx_http_canary_snapshot_t  *snap;

    snap = ngx_slab_alloc_locked(shpool,
                                 sizeof(ngx_http_canary_snapshot_t)
                                 + nsegments
                                   * sizeof(ngx_http_canary_segment_t)
                                 + strings);
    if (snap == NULL) {
        return NULL;
    }

    if (from) {
        *snap = *from;

    } else {
        ngx_memzero(snap, sizeof(ngx_http_canary_snapshot_t));
    }

    snap->nsegments = 0;
    snap->segments = nsegments ? (ngx_http_canary_segment_t *) &snap[1]
                               : NULL;

    return snap;
}


/*
 * A copy of "from" (its user sets included) with the values of v, or, when
 * v is NULL, with from's own values and segments.  The mutex is held.
 */

ngx_http_canary_snapshot_t *
ngx_http_canary_snapshot_copy_locked(ngx_slab_pool_t *shpool,
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


/*
 * Makes snap the rollout's state for every worker.  The slab mutex must be
 * held.  The snapshot it replaces is retired, not freed.
 */

ngx_int_t
ngx_http_canary_publish(ngx_http_canary_main_conf_t *cmcf,
    ngx_http_canary_shrollout_t *shr, ngx_http_canary_snapshot_t *snap)
{
    ngx_time_t                  *tp;
    ngx_http_canary_snapshot_t  *old;

    old = shr->snapshot;
    tp = ngx_timeofday();
    snap->updated = tp->sec;
    snap->updated_ms = (ngx_msec_t) tp->sec * 1000 + tp->msec;

    snap->plain = (snap->canary_users == NULL && snap->stable_users == NULL
                   && snap->arm_users_mask == 0
                   && snap->start == 0 && snap->end == 0
                   && snap->arms_off == 0 && snap->total != 0);

    /* every store that built the snapshot is seen before the pointer */

    ngx_memory_barrier();

    shr->snapshot = snap;

    ngx_memory_barrier();

    if (old) {
        /* without room to track it, it is never freed: safe */
        (void) ngx_http_canary_retire_locked(cmcf->shpool,
                                    &cmcf->sh->reclaim, old,
                                    NGX_HTTP_CANARY_RETIRED_BLOCK,
                                    ngx_http_canary_snapshot_size(old));
    }

    return NGX_OK;
}


/*
 * Publishes v for the rollout unless the current snapshot says the same:
 * NGX_OK, NGX_DECLINED (the same), or NGX_ERROR (no room in the zone, for
 * the caller to report; it needed ngx_http_canary_snapshot_need() bytes)
 */

ngx_int_t
ngx_http_canary_snapshot_apply(ngx_http_canary_main_conf_t *cmcf,
    ngx_http_canary_rollout_t *ro, ngx_http_canary_values_t *v,
    ngx_log_t *log)
{
    return ngx_http_canary_snapshot_apply_if(cmcf, ro, v, NULL, log);
}


/*
 * The same, unless the published snapshot is no longer "expected" (when
 * not NULL): NGX_AGAIN, nothing published (v was made from "expected"
 * and another writer came first: make it again)
 */

ngx_int_t
ngx_http_canary_snapshot_apply_if(ngx_http_canary_main_conf_t *cmcf,
    ngx_http_canary_rollout_t *ro, ngx_http_canary_values_t *v,
    ngx_http_canary_snapshot_t *expected, ngx_log_t *log)
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

    if (expected && cur != expected) {
        ngx_shmtx_unlock(&cmcf->shpool->mutex);
        return NGX_AGAIN;
    }

    if (ngx_http_canary_snapshot_same(cur, v)) {
        ngx_shmtx_unlock(&cmcf->shpool->mutex);
        return NGX_DECLINED;
    }

    snap = ngx_http_canary_snapshot_copy_locked(cmcf->shpool, cur, v);

    if (snap == NULL
        && ngx_http_canary_reclaim_now_locked(cmcf->shpool,
                                              &cmcf->sh->reclaim, log))
    {
        /* what no worker reads any more made room */
        snap = ngx_http_canary_snapshot_copy_locked(cmcf->shpool, cur, v);
    }

    if (snap == NULL) {
        ngx_shmtx_unlock(&cmcf->shpool->mutex);
        return NGX_ERROR;
    }

    rc = ngx_http_canary_publish(cmcf, ro->sh, snap);

    ngx_shmtx_unlock(&cmcf->shpool->mutex);

    if (rc != NGX_OK) {
        return NGX_ERROR;
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


/*
 * A new snapshot of the rollout with set (NULL when empty, which frees
 * it) as its user set "which"; the old set is retired.  NGX_DECLINED: no
 * set before and none now, nothing published.  NGX_ERROR: no room for
 * the snapshot (the set is freed), for the caller to report.
 */

ngx_int_t
ngx_http_canary_snapshot_set_swap(ngx_http_canary_main_conf_t *cmcf,
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

    snap = ngx_http_canary_snapshot_copy_locked(cmcf->shpool, cur, NULL);

    if (snap == NULL
        && ngx_http_canary_reclaim_now_locked(cmcf->shpool,
                                              &cmcf->sh->reclaim, log))
    {
        snap = ngx_http_canary_snapshot_copy_locked(cmcf->shpool, cur, NULL);
    }

    if (snap == NULL) {
        if (set) {
            ngx_http_canary_set_free_locked(cmcf->shpool, set);
        }

        ngx_shmtx_unlock(&cmcf->shpool->mutex);

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
        (void) ngx_http_canary_set_retire_locked(cmcf->shpool,
                                                 &cmcf->sh->reclaim, old);
    }

    ngx_shmtx_unlock(&cmcf->shpool->mutex);

    return NGX_OK;
}


static ngx_uint_t
ngx_http_canary_snapshot_same(ngx_http_canary_snapshot_t *cur,
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


/* the bytes of a snapshot's block: itself, its segments and their values */

size_t
ngx_http_canary_snapshot_size(ngx_http_canary_snapshot_t *snap)
{
    return ngx_http_canary_snapshot_bytes(snap->segments, snap->nsegments);
}


/* the bytes of a snapshot of v, for a refusal's message */

size_t
ngx_http_canary_snapshot_need(ngx_http_canary_values_t *v)
{
    return ngx_http_canary_snapshot_bytes(v->segments, v->nsegments);
}


static size_t
ngx_http_canary_snapshot_bytes(ngx_http_canary_segment_t *seg, ngx_uint_t n)
{
    size_t      size;
    ngx_uint_t  i;

    size = sizeof(ngx_http_canary_snapshot_t)
           + n * sizeof(ngx_http_canary_segment_t);

    for (i = 0; i < n; i++) {
        size += seg[i].value.len;
    }

    return size;
}


static int ngx_libc_cdecl
ngx_http_canary_segment_cmp(const void *a, const void *b)
{
    const ngx_http_canary_segment_t  *sa = a;
    const ngx_http_canary_segment_t  *sb = b;

    return ngx_memn2cmp(sa->value.data, sb->value.data, sa->value.len,
                        sb->value.len);
}
