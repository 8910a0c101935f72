
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * Epoch-based reclamation of the zone's memory.
 *
 * A writer replaces a snapshot or a part of a user set by publishing the
 * new one with a pointer store; readers take no lock and may still hold
 * the old one.  The old one is "retired": it is tagged with the global
 * epoch, the epoch is advanced, and it is freed once every reader has
 * passed that epoch.
 *
 * The readers are the nginx processes (every worker, old or new, and the
 * single process).  Each has an entry in the zone with its pid and the
 * epoch it last saw at a quiescent point: a moment at which it holds no
 * pointer into the zone's snapshots or sets.  A worker holds such
 * pointers only for one routing decision, which runs to its end inside
 * one event handler, so any point between handlers is quiescent; a timer
 * of its own (NGX_HTTP_CANARY_QUIESCE) makes one every 100 ms, and costs
 * the request path nothing.
 *
 * Why a reader whose entry shows an epoch above a block's tag cannot
 * hold it: the writer stores the new pointer, then (after a barrier)
 * advances the epoch; a reader that loaded the advanced epoch at a
 * quiescent point loads the new pointer in every later decision, and its
 * decisions before that point are over.  A reader stopped anywhere
 * (SIGSTOP, a debugger, a long Lua handler) stops its entry too, and
 * nothing retired after its last quiescent point is freed until it goes
 * on.  A reader that exits frees its entry; one that died (SIGKILL, a
 * crash) is found by kill(pid, 0) when it is the one waited for.
 *
 * With more readers than entries (more than 256 nginx processes at once),
 * those without one are counted, and while any is alive memory is freed
 * only once it has also waited NGX_HTTP_CANARY_RECLAIM_GRACE, the fixed
 * grace of earlier versions.
 *
 * Writers hold the slab pool's mutex; only the sync process (worker 0)
 * frees.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_canary_reclaim.h"


#define NGX_HTTP_CANARY_RECLAIM_GRACE  30000

/* what a debug build fills a freed block with, so a stale read shows */
#define NGX_HTTP_CANARY_POISON         0xA5
#define NGX_HTTP_CANARY_POISON_MAX     65536


static void ngx_http_canary_reclaim_free(ngx_slab_pool_t *shpool,
    ngx_http_canary_retired_t *rt);


/*
 * This process's entry among the zone's readers, and whether the sync
 * holds pointers into the zone across event-loop turns (then its
 * quiescent timer waits, and nothing is freed)
 */
ngx_http_canary_reader_t  *ngx_http_canary_reader;
ngx_uint_t                 ngx_http_canary_held;


/* the process's entry; the slab mutex is taken here */

ngx_http_canary_reader_t *
ngx_http_canary_reader_register(ngx_slab_pool_t *shpool,
    ngx_http_canary_reclaim_t *rc, ngx_log_t *log)
{
    ngx_pid_t                  pid;
    ngx_uint_t                 i;
    ngx_http_canary_reader_t  *r, *free;

    free = NULL;

    ngx_shmtx_lock(&shpool->mutex);

    for (i = 0; i < NGX_HTTP_CANARY_MAX_READERS; i++) {
        r = &rc->readers[i];
        pid = (ngx_pid_t) r->pid;

        if (pid == 0 || pid == ngx_pid) {
            free = r;
            break;
        }

        if (free == NULL && kill(pid, 0) == -1 && ngx_errno == NGX_ESRCH) {
            free = r;
        }
    }

    if (free) {
        free->epoch = rc->epoch;
        free->pid = ngx_pid;

    } else {
        rc->unregistered++;
    }

    ngx_shmtx_unlock(&shpool->mutex);

    if (free == NULL) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "canary zone: more than %d nginx processes read the "
                      "zone, replaced state is freed after %d s while "
                      "this one lives", NGX_HTTP_CANARY_MAX_READERS,
                      NGX_HTTP_CANARY_RECLAIM_GRACE / 1000);
    }

    return free;
}


void
ngx_http_canary_reader_unregister(ngx_slab_pool_t *shpool,
    ngx_http_canary_reclaim_t *rc, ngx_http_canary_reader_t *reader)
{
    ngx_shmtx_lock(&shpool->mutex);

    if (reader == NULL) {
        if (rc->unregistered) {
            rc->unregistered--;
        }

    } else if ((ngx_pid_t) reader->pid == ngx_pid) {
        reader->pid = 0;
    }

    ngx_shmtx_unlock(&shpool->mutex);
}


/*
 * A quiescent point: the caller holds no pointer into a snapshot or a set
 * it read before.  Lock-free; one load and, when the epoch moved, a store.
 */

void
ngx_http_canary_quiesce(ngx_http_canary_reclaim_t *rc,
    ngx_http_canary_reader_t *reader)
{
    ngx_atomic_uint_t  epoch;

    if (reader == NULL) {
        return;
    }

    /* the reads of the decisions before are done before the store */

    ngx_memory_barrier();

    epoch = rc->epoch;

    if (reader->epoch != epoch) {
        reader->epoch = epoch;
    }

    /* and the decisions after read pointers at least as new as epoch */

    ngx_memory_barrier();
}


/*
 * Hands a block (or a chain of blocks) that a pointer store has just
 * replaced to the reclamation.  The slab mutex is held, the new pointer
 * stored.  Without memory for the list node the block is never freed:
 * leaking it is safe, freeing it now is not.
 */

ngx_int_t
ngx_http_canary_retire_locked(ngx_slab_pool_t *shpool,
    ngx_http_canary_reclaim_t *rc, void *data, ngx_uint_t type, size_t bytes)
{
    ngx_http_canary_retired_t  *rt;

    /* the pointer store that replaced it is seen before the new epoch */

    ngx_memory_barrier();

    rt = ngx_slab_alloc_locked(shpool, sizeof(ngx_http_canary_retired_t));
    if (rt == NULL) {
        rc->epoch++;
        return NGX_ERROR;
    }

    rt->data = data;
    rt->type = type;
    rt->bytes = bytes;
    rt->epoch = rc->epoch;
    rt->when = ngx_current_msec;

    rt->next = rc->retired;
    rc->retired = rt;
    rc->retired_bytes += bytes;
    rc->nretired++;

    rc->epoch++;

    ngx_memory_barrier();

    return NGX_OK;
}


/*
 * Frees what every reader has passed, unless this process holds pointers
 * into the zone across turns; the sync process only (worker 0, or the
 * single process).  The slab mutex is held.
 */

ngx_uint_t
ngx_http_canary_reclaim_now_locked(ngx_slab_pool_t *shpool,
    ngx_http_canary_reclaim_t *rc, ngx_log_t *log)
{
    if (ngx_http_canary_held
        || !(ngx_process == NGX_PROCESS_SINGLE
             || (ngx_process == NGX_PROCESS_WORKER && ngx_worker == 0)))
    {
        return 0;
    }

    return ngx_http_canary_reclaim_locked(shpool, rc, ngx_http_canary_reader,
                                          log);
}


/*
 * Frees what every reader has passed; the slab mutex is held.  "self",
 * the caller's entry, is at a quiescent point.  Returns the number of
 * blocks freed.
 */

ngx_uint_t
ngx_http_canary_reclaim_locked(ngx_slab_pool_t *shpool,
    ngx_http_canary_reclaim_t *rc, ngx_http_canary_reader_t *self,
    ngx_log_t *log)
{
    ngx_pid_t                   pid, holder;
    ngx_uint_t                  i, n, grace;
    ngx_atomic_uint_t           min, oldest;
    ngx_http_canary_reader_t   *r;
    ngx_http_canary_retired_t  *rt, **prev;

    ngx_http_canary_quiesce(rc, self);

    if (rc->retired == NULL) {
        rc->holder = 0;
        return 0;
    }

    oldest = rc->epoch;

    for (rt = rc->retired; rt; rt = rt->next) {
        if (rt->epoch < oldest) {
            oldest = rt->epoch;
        }
    }

    /* the oldest epoch a live reader may still be in */

    min = rc->epoch;
    holder = 0;

    for (i = 0; i < NGX_HTTP_CANARY_MAX_READERS; i++) {
        r = &rc->readers[i];
        pid = (ngx_pid_t) r->pid;

        if (pid == 0 || r->epoch >= min) {
            continue;
        }

        if (r->epoch <= oldest && pid != ngx_pid
            && kill(pid, 0) == -1 && ngx_errno == NGX_ESRCH)
        {
            ngx_log_error(NGX_LOG_NOTICE, log, 0,
                          "canary zone: process %P is gone, it holds "
                          "nothing", pid);
            r->pid = 0;
            continue;
        }

        min = r->epoch;
        holder = pid;
    }

    grace = (rc->unregistered != 0);

    n = 0;
    prev = &rc->retired;

    for (rt = *prev; rt; rt = *prev) {

        if (rt->epoch >= min
            || (grace && ngx_current_msec - rt->when
                         < NGX_HTTP_CANARY_RECLAIM_GRACE))
        {
            prev = &rt->next;
            continue;
        }

        *prev = rt->next;

        rc->retired_bytes -= rt->bytes;
        rc->nretired--;
        (void) ngx_atomic_fetch_add(&rc->freed, 1);
        (void) ngx_atomic_fetch_add(&rc->freed_bytes, rt->bytes);

        ngx_http_canary_reclaim_free(shpool, rt);
        ngx_slab_free_locked(shpool, rt);
        n++;
    }

    rc->holder = rc->retired ? holder : 0;

    return n;
}


static void
ngx_http_canary_reclaim_free(ngx_slab_pool_t *shpool,
    ngx_http_canary_retired_t *rt)
{
    void  *p, *next;

    if (rt->type == NGX_HTTP_CANARY_RETIRED_CHAIN) {
        for (p = rt->data; p; p = next) {
            next = *(void **) p;
            ngx_slab_free_locked(shpool, p);
        }

        return;
    }

#if (NGX_DEBUG)
    ngx_memset(rt->data, NGX_HTTP_CANARY_POISON,
               ngx_min(rt->bytes, NGX_HTTP_CANARY_POISON_MAX));
#endif

    ngx_slab_free_locked(shpool, rt->data);
}
