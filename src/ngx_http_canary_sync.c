
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * Redis to the shared zone: the sync worker (worker 0, or the single
 * process) reads every declared rollout from Redis and publishes what
 * changed as new snapshots.  Here its start and stop, and its timer; its
 * parts, each using only those after it:
 *
 *     ngx_http_canary_subscribe.c    push messages start a round
 *     ngx_http_canary_sync_round.c   the round, run_id judgement
 *     ngx_http_canary_restore.c      the restore of an empty Redis
 *     ngx_http_canary_sync_sets.c    user sets read by SSCAN
 *
 * and below them the state file, the users files, Redis values, key
 * names, snapshots (ngx_http_canary_state.c, _users.c, _values.c,
 * _keys.c, _snapshot.c).
 *
 * Memory that a change replaces is freed once no worker reads it
 * (ngx_http_canary_reclaim.c).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_http.h>

#include "ngx_http_canary_sync.h"
#include "ngx_http_canary_subscribe.h"
#include "ngx_http_canary_sync_round.h"
#include "ngx_http_canary_sync_sets.h"
#include "ngx_http_canary_keys.h"


static ngx_int_t ngx_http_canary_sync_rollouts(ngx_cycle_t *cycle,
    ngx_http_canary_sync_t *sync);
static void ngx_http_canary_sync_event(ngx_event_t *ev,
    ngx_event_handler_pt handler, ngx_http_canary_sync_t *sync,
    ngx_log_t *log);
static void ngx_http_canary_sync_timer_handler(ngx_event_t *ev);
static void ngx_http_canary_sync_ready(ngx_http_canary_redis_t *rc);


static ngx_http_canary_sync_t  *ngx_http_canary_sync;


ngx_int_t
ngx_http_canary_sync_init_process(ngx_cycle_t *cycle)
{
    ngx_http_canary_sync_t       *sync;
    ngx_http_canary_main_conf_t  *cmcf;

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

    sync->users.fd = NGX_INVALID_FILE;
    sync->users.log = cycle->log;

    if (ngx_http_canary_sync_rollouts(cycle, sync) != NGX_OK) {
        return NGX_ERROR;
    }

    /* the restore lease, and this node's name in it (as "auto" names it) */

    if (ngx_http_canary_key_name(cycle->pool, &sync->lease,
                                 &cmcf->redis->prefix, "restore")
        != NGX_OK
        || ngx_http_canary_key_name(cycle->pool, &sync->begun,
                                    &cmcf->redis->prefix, "restoring")
           != NGX_OK
        || ngx_http_canary_key_name(cycle->pool, &sync->changed_channel,
                                    &cmcf->redis->prefix, "changed")
           != NGX_OK
        || ngx_http_canary_node_name(cycle, cmcf, &sync->node) != NGX_OK)
    {
        return NGX_ERROR;
    }

    sync->redis = ngx_http_canary_redis_create(cycle, cmcf->redis, "sync");
    sync->sub = ngx_http_canary_redis_create(cycle, cmcf->redis,
                                             "subscribe");
    if (sync->redis == NULL || sync->sub == NULL) {
        return NGX_ERROR;
    }

    sync->redis->on_ready = ngx_http_canary_sync_ready;
    sync->redis->data = sync;

    sync->sub->on_ready = ngx_http_canary_subscribe_ready;
    sync->sub->on_push = ngx_http_canary_subscribe_push;
    sync->sub->data = sync;
    sync->sub->quiet = 1;

    sync->restored = ngx_http_canary_sync_restored;

    ngx_http_canary_sync_event(&sync->timer,
                               ngx_http_canary_sync_timer_handler, sync,
                               cycle->log);
    ngx_http_canary_sync_event(&sync->set_clear,
                               ngx_http_canary_sync_set_clear_handler, sync,
                               cycle->log);
    ngx_http_canary_sync_event(&sync->soon,
                               ngx_http_canary_sync_soon_handler, sync,
                               cycle->log);

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


/* the rollouts as the sync reads them: their keys, their user sets */

static ngx_int_t
ngx_http_canary_sync_rollouts(ngx_cycle_t *cycle,
    ngx_http_canary_sync_t *sync)
{
    ngx_uint_t                       i, j;
    ngx_http_canary_rollout_t       *ro;
    ngx_http_canary_sync_rollout_t  *sr;
    ngx_http_canary_main_conf_t     *cmcf;

    cmcf = sync->cmcf;
    sync->nrollouts = cmcf->rollouts.nelts;

    sync->rollouts = ngx_pcalloc(cycle->pool,
                                 (sync->nrollouts + 1)
                                 * sizeof(ngx_http_canary_sync_rollout_t));
    if (sync->rollouts == NULL) {
        return NGX_ERROR;
    }

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

            sr->set_name[j] = (j < 2) ? ro[i].name
                                      : ro[i].variants[j - 1].users;

            if (ngx_http_canary_key_set(cycle->pool, &sr->set_key[j],
                                        &cmcf->redis->prefix, &ro[i], j)
                != NGX_OK)
            {
                return NGX_ERROR;
            }
        }
    }

    return NGX_OK;
}


static void
ngx_http_canary_sync_event(ngx_event_t *ev, ngx_event_handler_pt handler,
    ngx_http_canary_sync_t *sync, ngx_log_t *log)
{
    ev->handler = handler;
    ev->data = sync;
    ev->log = log;
    ev->cancelable = 1;
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
                                       ngx_http_canary_subscribe_pong,
                                       sync)
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


char *
ngx_http_canary_sync_interval(ngx_conf_t *cf, void *post, void *data)
{
    ngx_msec_t  *ms = data;

    if (*ms < 10) {
        return "must be at least 10ms";
    }

    return NGX_CONF_OK;
}
