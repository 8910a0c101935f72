
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * The shared zone: its layout, the rollouts found again by name across
 * reloads, their counters, each worker's reader entry and quiescent
 * timer; snapshots are written by ngx_http_canary_snapshot.c.
 *
 * One writer at a time changes the zone, holding the slab pool's mutex:
 * the master while it reads a configuration, the sync worker afterwards.
 * Readers on the request path take no lock.  A writer builds a new
 * snapshot beside the old one and publishes it with one pointer store
 * after a memory barrier; a reader loads the pointer once per decision
 * and so sees either the old snapshot or the new one, whole.  The old one
 * is not freed at once: it is retired, and freed once every worker has
 * passed a quiescent point (see ngx_http_canary_reclaim.c); each worker
 * makes one every NGX_HTTP_CANARY_QUIESCE ms with a tick set here (a
 * timerfd on Linux), and the sync process frees.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_canary_module.h"
#include "ngx_http_canary_conf.h"
#include "ngx_http_canary_snapshot.h"

#if (NGX_LINUX)
#include <sys/timerfd.h>
#endif


static ngx_http_canary_shrollout_t *ngx_http_canary_shm_rollout(
    ngx_http_canary_main_conf_t *cmcf, ngx_http_canary_rollout_t *ro,
    ngx_http_canary_shrollout_t *shr);
static ngx_int_t ngx_http_canary_shm_counters(
    ngx_http_canary_main_conf_t *cmcf, ngx_http_canary_shrollout_t *shr,
    ngx_http_canary_rollout_t *ro, ngx_int_t *map);
static ngx_uint_t ngx_http_canary_shm_config_same(
    ngx_http_canary_snapshot_t *snap, ngx_http_canary_rollout_t *ro);
static void ngx_http_canary_shm_arms(ngx_http_canary_main_conf_t *cmcf,
    ngx_http_canary_snapshot_t *snap, ngx_http_canary_rollout_t *ro,
    ngx_int_t *map);
static void ngx_http_canary_quiesce_handler(ngx_event_t *ev);
static void ngx_http_canary_quiesce_tick(ngx_http_canary_main_conf_t *cmcf,
    ngx_log_t *log);
#if (NGX_LINUX)
static ngx_int_t ngx_http_canary_quiesce_fd(ngx_cycle_t *cycle);
static void ngx_http_canary_quiesce_read(ngx_event_t *rev);
#endif


/* this process's quiescent tick: a timerfd's connection, or a timer */
static ngx_http_canary_main_conf_t  *ngx_http_canary_quiesce_cmcf;
static ngx_event_t                   ngx_http_canary_quiesce_ev;
#if (NGX_LINUX)
static ngx_connection_t             *ngx_http_canary_quiesce_conn;
#endif


/*
 * The zone's layout and the rollouts in it; the state file is loaded
 * into a new zone after this, see ngx_http_canary_init_zone()
 */

ngx_int_t
ngx_http_canary_shm_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_canary_main_conf_t  *ocmcf = data;

    size_t                        len;
    ngx_int_t                     rc, k;
    ngx_uint_t                    i;
    ngx_core_conf_t              *ccf;
    ngx_slab_pool_t              *shpool;
    ngx_http_canary_shctx_t      *sh;
    ngx_http_canary_rollout_t    *ro;
    ngx_http_canary_shrollout_t  *shr, **found;
    ngx_http_canary_main_conf_t  *cmcf;

    cmcf = shm_zone->data;
    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    cmcf->shpool = shpool;

    if (ocmcf) {
        /* a reload: the zone and everything in it carries on */
        cmcf->sh = ocmcf->sh;
        goto rollouts;
    }

    if (shm_zone->shm.exists) {
        cmcf->sh = shpool->data;
        goto rollouts;
    }

    sh = ngx_slab_alloc(shpool, sizeof(ngx_http_canary_shctx_t));
    if (sh == NULL) {
        goto nomem;
    }

    ngx_memzero(sh, sizeof(ngx_http_canary_shctx_t));

    ccf = (ngx_core_conf_t *) ngx_get_conf(cmcf->cycle->conf_ctx,
                                           ngx_core_module);

    /*
     * One counter slot for each worker; the number is fixed for the life
     * of the zone, and a worker writes slot (ngx_worker % nslots).
     */

    sh->nslots = (ccf && ccf->worker_processes > 0)
                 ? (ngx_uint_t) ccf->worker_processes : 1;

    if (sh->nslots > NGX_HTTP_CANARY_MAX_SLOTS) {
        sh->nslots = NGX_HTTP_CANARY_MAX_SLOTS;
    }

    shpool->data = sh;
    cmcf->sh = sh;

    len = sizeof(" in canary zone \"\"") + shm_zone->shm.name.len;

    shpool->log_ctx = ngx_slab_alloc(shpool, len);
    if (shpool->log_ctx == NULL) {
        goto nomem;
    }

    ngx_sprintf(shpool->log_ctx, " in canary zone \"%V\"%Z",
                &shm_zone->shm.name);

    shpool->log_nomem = 0;

rollouts:

    rc = NGX_OK;
    ro = cmcf->rollouts.elts;

    /* the zone's rollouts by the configuration's index, in one pass */

    found = ngx_alloc((cmcf->rollouts.nelts + 1)
                      * sizeof(ngx_http_canary_shrollout_t *),
                      shm_zone->shm.log);
    if (found == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(found, cmcf->rollouts.nelts
                       * sizeof(ngx_http_canary_shrollout_t *));

    ngx_shmtx_lock(&shpool->mutex);

    for (shr = cmcf->sh->rollouts; shr; shr = shr->next) {
        k = ngx_http_canary_find(cmcf, &shr->name);

        if (k != NGX_ERROR) {
            found[k] = shr;
        }
    }

    for (i = 0; i < cmcf->rollouts.nelts; i++) {
        ro[i].sh = ngx_http_canary_shm_rollout(cmcf, &ro[i], found[i]);
        if (ro[i].sh == NULL) {
            rc = NGX_ERROR;
            break;
        }
    }

    ngx_shmtx_unlock(&shpool->mutex);

    ngx_free(found);

    if (rc != NGX_OK) {
        goto nomem;
    }

    return NGX_OK;

nomem:

    ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                  "canary_zone \"%V\" of %uz bytes is too small for %ui "
                  "rollouts, make it larger", &shm_zone->shm.name,
                  shm_zone->shm.size, cmcf->rollouts.nelts);

    return NGX_ERROR;
}


/*
 * The rollout's place in the zone (shr, the one of its name in the zone,
 * or NULL), made on first sight.  Its counters carry on across reloads;
 * its published state too, unless it still comes from the configuration,
 * whose percent may have changed.
 */

static ngx_http_canary_shrollout_t *
ngx_http_canary_shm_rollout(ngx_http_canary_main_conf_t *cmcf,
    ngx_http_canary_rollout_t *ro, ngx_http_canary_shrollout_t *shr)
{
    ngx_int_t                     map[NGX_HTTP_CANARY_MAX_VARIANTS];
    ngx_uint_t                    v, moved;
    ngx_slab_pool_t              *shpool;
    ngx_http_canary_shctx_t      *sh;
    ngx_http_canary_snapshot_t   *snap;

    sh = cmcf->sh;
    shpool = cmcf->shpool;

    if (shr == NULL) {
        shr = ngx_slab_calloc_locked(shpool,
                                     sizeof(ngx_http_canary_shrollout_t)
                                     + ro->name.len);
        if (shr == NULL) {
            return NULL;
        }

        shr->name.len = ro->name.len;
        shr->name.data = (u_char *) &shr[1];
        ngx_memcpy(shr->name.data, ro->name.data, ro->name.len);

        shr->next = sh->rollouts;
        sh->rollouts = shr;
    }

    /* shadow traffic's counters, once a location shadows the rollout */

    if (ro->shadowed && shr->shadow == NULL) {
        shr->shadow = ngx_slab_calloc_locked(shpool,
                                       sh->nslots
                                       * sizeof(ngx_http_canary_counters_t));
        if (shr->shadow == NULL) {
            return NULL;
        }
    }

    if (ngx_http_canary_shm_counters(cmcf, shr, ro, map) != NGX_OK) {
        return NULL;
    }

    /* an arm now elsewhere than in the zone's layout */

    moved = 0;

    for (v = 1; v < ro->nvariants; v++) {
        if (map[v] != (ngx_int_t) v) {
            moved = 1;
        }
    }

    /* what the status page shows of an automatic rollout */

    if (ro->policy && shr->autost == NULL) {
        shr->autost = ngx_slab_calloc_locked(shpool,
                                       sizeof(ngx_http_canary_auto_status_t));
        if (shr->autost == NULL) {
            return NULL;
        }
    }

    if (ro->policy && shr->autobase == NULL) {
        shr->autobase = ngx_slab_calloc_locked(shpool,
                                         sizeof(ngx_http_canary_auto_base_t));
        if (shr->autobase == NULL) {
            return NULL;
        }
    }

    snap = shr->snapshot;

    if (snap && !moved
        && (snap->source != NGX_HTTP_CANARY_SOURCE_CONFIG
            || (shr->config_percent == ro->percent
                && shr->config_shadow == ro->shadow))
        && ngx_http_canary_shm_config_same(snap, ro))
    {
        return shr;
    }

    if (snap) {
        snap = ngx_http_canary_snapshot_copy_locked(shpool, snap, NULL);

    } else {
        snap = ngx_http_canary_snapshot_alloc(shpool, NULL, 0, 0);
    }

    if (snap == NULL) {
        return NULL;
    }

    if (snap->source == NGX_HTTP_CANARY_SOURCE_CONFIG) {
        snap->percent = ro->percent;
        snap->shadow = ro->shadow;
        shr->config_percent = ro->percent;
        shr->config_shadow = ro->shadow;
    }

    ngx_http_canary_shm_arms(cmcf, snap, ro, map);

    if (ngx_http_canary_publish(cmcf, shr, snap) != NGX_OK) {
        return NULL;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "canary zone: rollout \"%V\" percent %ui from config",
                   &shr->name, ro->percent);

    return shr;
}


/*
 * The allocation of a configuration's arms in a snapshot (a copy of the
 * one in force): an arm found by name in the old layout (map[v], the old
 * variant, or -1) keeps its weight and on/off from Redis or the state
 * file, and its users:<arm> set; a new arm, or any arm of a rollout whose
 * values come from the configuration, takes the configured weight.  The
 * sets of arms that are gone are retired.
 */

static void
ngx_http_canary_shm_arms(ngx_http_canary_main_conf_t *cmcf,
    ngx_http_canary_snapshot_t *snap, ngx_http_canary_rollout_t *ro,
    ngx_int_t *map)
{
    uint32_t                 off, weight[NGX_HTTP_CANARY_MAX_ARMS];
    ngx_int_t                o;
    ngx_uint_t               a, config;
    ngx_http_canary_set_t   *users[NGX_HTTP_CANARY_MAX_ARMS];

    config = (snap->source == NGX_HTTP_CANARY_SOURCE_CONFIG);

    off = snap->arms_off;
    ngx_memcpy(weight, snap->weight, sizeof(weight));
    ngx_memcpy(users, snap->arm_users, sizeof(users));

    snap->total = 0;
    snap->arms_off = 0;
    snap->arm_users_mask = 0;
    ngx_memzero(snap->weight, sizeof(snap->weight));
    ngx_memzero(snap->arm_users, sizeof(snap->arm_users));

    for (a = 0; a < ro->narms; a++) {
        o = map[a + 1];

        if (o > 0 && !config) {
            snap->weight[a] = weight[o - 1];
            snap->arms_off |= ((off >> (o - 1)) & 1) << a;

        } else {
            snap->weight[a] = ro->variants[a + 1].weight;
        }

        if (o > 0 && users[o - 1]) {
            snap->arm_users[a] = users[o - 1];
            snap->arm_users_mask |= 1 << a;
            users[o - 1] = NULL;
        }

        snap->total += snap->weight[a];
    }

    for (a = 0; a < NGX_HTTP_CANARY_MAX_ARMS; a++) {
        if (users[a]) {
            (void) ngx_http_canary_set_retire_locked(cmcf->shpool,
                                                     &cmcf->sh->reclaim,
                                                     users[a]);
        }
    }
}


/*
 * Whether the snapshot's allocation can stay: the same arms with the
 * configuration's weights, or, from Redis or the state file, as many arms.
 */

static ngx_uint_t
ngx_http_canary_shm_config_same(ngx_http_canary_snapshot_t *snap,
    ngx_http_canary_rollout_t *ro)
{
    ngx_uint_t  a, total;

    total = 0;

    for (a = 0; a < ro->narms; a++) {
        if (snap->source == NGX_HTTP_CANARY_SOURCE_CONFIG
            && snap->weight[a] != ro->variants[a + 1].weight)
        {
            return 0;
        }

        total += snap->weight[a];
    }

    for ( /* void */ ; a < NGX_HTTP_CANARY_MAX_ARMS; a++) {
        if (snap->weight[a] || (snap->arms_off & (1 << a))) {
            return 0;
        }
    }

    return snap->total == total;
}


/*
 * The rollout's counters, nslots x nvariants, for its variants now.  A
 * reload that keeps the variants (names, in order) keeps the counters; one
 * that changes them gets new counters, with the figures of every variant
 * whose name stays (stable always does).  The old ones are never freed:
 * old workers finishing their requests still write to them, through
 * their configuration's ro->counters.
 */

static ngx_int_t
ngx_http_canary_shm_counters(ngx_http_canary_main_conf_t *cmcf,
    ngx_http_canary_shrollout_t *shr, ngx_http_canary_rollout_t *ro,
    ngx_int_t *map)
{
    u_char                      *p, *q, *end;
    size_t                       len;
    ngx_str_t                    name;
    ngx_uint_t                   v, o, s, nslots;
    ngx_http_canary_counters_t  *counters;

    len = 0;

    for (v = 0; v < ro->nvariants; v++) {
        len += ro->variants[v].name.len + 1;
        map[v] = shr->counters ? -1 : (ngx_int_t) v;
    }

    if (shr->counters && shr->nvariants == ro->nvariants
        && shr->variants.len == len)
    {
        p = shr->variants.data;

        for (v = 0; v < ro->nvariants; v++) {
            name = ro->variants[v].name;

            if (ngx_strncmp(p, name.data, name.len) != 0
                || p[name.len] != ',')
            {
                break;
            }

            p += name.len + 1;
        }

        if (v == ro->nvariants) {
            for (v = 0; v < ro->nvariants; v++) {
                map[v] = v;
            }

            ro->counters = shr->counters;
            return NGX_OK;
        }
    }

    nslots = cmcf->sh->nslots;

    counters = ngx_slab_calloc_locked(cmcf->shpool,
                                      nslots * ro->nvariants
                                      * sizeof(ngx_http_canary_counters_t));
    if (counters == NULL) {
        return NGX_ERROR;
    }

    p = ngx_slab_alloc_locked(cmcf->shpool, len);
    if (p == NULL) {
        ngx_slab_free_locked(cmcf->shpool, counters);
        return NGX_ERROR;
    }

    /* the figures of the variants that stay, found by name */

    if (shr->counters) {
        q = shr->variants.data;
        end = q + shr->variants.len;

        for (o = 0; o < shr->nvariants && q < end; o++) {
            name.data = q;

            while (q < end && *q != ',') {
                q++;
            }

            name.len = q++ - name.data;

            for (v = 0; v < ro->nvariants; v++) {
                if (ro->variants[v].name.len == name.len
                    && ngx_strncmp(ro->variants[v].name.data, name.data,
                                   name.len) == 0)
                {
                    for (s = 0; s < nslots; s++) {
                        counters[s * ro->nvariants + v]
                            = shr->counters[s * shr->nvariants + o];
                    }

                    map[v] = o;
                    break;
                }
            }
        }
    }

    shr->variants.data = p;
    shr->variants.len = len;

    for (v = 0; v < ro->nvariants; v++) {
        p = ngx_cpymem(p, ro->variants[v].name.data,
                       ro->variants[v].name.len);
        *p++ = ',';
    }

    shr->nvariants = ro->nvariants;
    shr->counters = counters;
    ro->counters = counters;

    return NGX_OK;
}


/*
 * Every worker is a reader of the zone: its entry, and a tick that makes
 * a quiescent point every NGX_HTTP_CANARY_QUIESCE ms (the sync process
 * frees there too).
 *
 * On Linux the tick is a timerfd in the event loop, not a timer: one more
 * node in nginx's timer tree changes the cost of every request's own
 * timers (callgrind: up to 45 instructions a request on the bench's
 * shapes), a file descriptor costs the request path nothing.  It takes
 * one of worker_connections.  Elsewhere, or if the timerfd cannot be
 * had, a cancelable timer: an exiting worker does not wait for it.
 */

ngx_int_t
ngx_http_canary_shm_init_process(ngx_cycle_t *cycle)
{
    ngx_http_canary_main_conf_t  *cmcf;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    cmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_canary_module);

    if (cmcf == NULL || cmcf->sh == NULL) {
        return NGX_OK;
    }

    ngx_http_canary_reader = ngx_http_canary_reader_register(cmcf->shpool,
                                                      &cmcf->sh->reclaim,
                                                      cycle->log);
    ngx_http_canary_quiesce_cmcf = cmcf;

#if (NGX_LINUX)
    if (ngx_http_canary_quiesce_fd(cycle) == NGX_OK) {
        return NGX_OK;
    }
#endif

    ngx_http_canary_quiesce_ev.handler = ngx_http_canary_quiesce_handler;
    ngx_http_canary_quiesce_ev.data = cmcf;
    ngx_http_canary_quiesce_ev.log = cycle->log;
    ngx_http_canary_quiesce_ev.cancelable = 1;

    ngx_add_timer(&ngx_http_canary_quiesce_ev, NGX_HTTP_CANARY_QUIESCE);

    return NGX_OK;
}


#if (NGX_LINUX)

static ngx_int_t
ngx_http_canary_quiesce_fd(ngx_cycle_t *cycle)
{
    int                 fd;
    ngx_connection_t   *c;
    struct itimerspec   its;

    fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK|TFD_CLOEXEC);
    if (fd == -1) {
        ngx_log_error(NGX_LOG_WARN, cycle->log, ngx_errno,
                      "canary zone: timerfd_create() failed, a timer "
                      "ticks instead");
        return NGX_ERROR;
    }

    its.it_interval.tv_sec = 0;
    its.it_interval.tv_nsec = NGX_HTTP_CANARY_QUIESCE * 1000000;
    its.it_value = its.it_interval;

    if (timerfd_settime(fd, 0, &its, NULL) == -1) {
        ngx_log_error(NGX_LOG_WARN, cycle->log, ngx_errno,
                      "canary zone: timerfd_settime() failed, a timer "
                      "ticks instead");
        (void) close(fd);
        return NGX_ERROR;
    }

    c = ngx_get_connection(fd, cycle->log);
    if (c == NULL) {
        (void) close(fd);
        return NGX_ERROR;
    }

    c->data = ngx_http_canary_quiesce_cmcf;
    c->read->handler = ngx_http_canary_quiesce_read;
    c->read->log = cycle->log;

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_close_connection(c);
        return NGX_ERROR;
    }

    ngx_http_canary_quiesce_conn = c;

    return NGX_OK;
}


static void
ngx_http_canary_quiesce_read(ngx_event_t *rev)
{
    ngx_connection_t  *c = rev->data;

    ssize_t   n;
    uint64_t  expirations;

    /* non-blocking: the count of ticks, or EAGAIN (then a tick all the
       same: a quiescent point is never wrong) */

    n = read(c->fd, &expirations, sizeof(uint64_t));

    if (n == -1 && ngx_errno != NGX_EAGAIN) {
        ngx_log_error(NGX_LOG_ALERT, rev->log, ngx_errno,
                      "canary zone: read() of the timerfd failed");
    }

    ngx_http_canary_quiesce_tick(c->data, rev->log);
}

#endif


void
ngx_http_canary_shm_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_canary_main_conf_t  *cmcf;

    cmcf = ngx_http_canary_quiesce_cmcf;

    if (cmcf == NULL) {
        return;
    }

#if (NGX_LINUX)
    if (ngx_http_canary_quiesce_conn) {
        ngx_close_connection(ngx_http_canary_quiesce_conn);
        ngx_http_canary_quiesce_conn = NULL;
    }
#endif

    if (ngx_http_canary_quiesce_ev.timer_set) {
        ngx_del_timer(&ngx_http_canary_quiesce_ev);
    }

    ngx_http_canary_reader_unregister(cmcf->shpool, &cmcf->sh->reclaim,
                                      ngx_http_canary_reader);
    ngx_http_canary_reader = NULL;
    ngx_http_canary_quiesce_cmcf = NULL;
}


static void
ngx_http_canary_quiesce_handler(ngx_event_t *ev)
{
    ngx_http_canary_quiesce_tick(ev->data, ev->log);

    ngx_add_timer(ev, NGX_HTTP_CANARY_QUIESCE);
}


/* between event handlers: this worker holds nothing it read before */

static void
ngx_http_canary_quiesce_tick(ngx_http_canary_main_conf_t *cmcf,
    ngx_log_t *log)
{
    ngx_http_canary_reclaim_t  *rc;

    if (ngx_http_canary_held) {
        return;
    }

    rc = &cmcf->sh->reclaim;

    ngx_http_canary_quiesce(rc, ngx_http_canary_reader);

    if (rc->retired && ngx_http_canary_sync_process()) {
        ngx_shmtx_lock(&cmcf->shpool->mutex);
        (void) ngx_http_canary_reclaim_now_locked(cmcf->shpool, rc, log);
        ngx_shmtx_unlock(&cmcf->shpool->mutex);
    }
}


/*
 * "needs 6.1 MB, 2.3 MB free of 64.0 MB": what a refusal for lack of room
 * says.  Free is the zone's free pages (a racy read, fine for a message);
 * room for NGX_HTTP_CANARY_ROOM_LEN bytes.
 */

u_char *
ngx_http_canary_zone_room(ngx_http_canary_main_conf_t *cmcf, u_char *buf,
    size_t need)
{
    size_t  free, size;

    free = cmcf->shpool->pfree * ngx_pagesize;
    size = cmcf->shm_zone->shm.size;

    if (need == NGX_MAX_SIZE_T_VALUE) {
        buf = ngx_sprintf(buf, "needs more than any zone holds");

    } else {
        buf = ngx_sprintf(buf, "needs ");
        buf = ngx_http_canary_size_text(buf, need);
    }

    buf = ngx_sprintf(buf, ", ");
    buf = ngx_http_canary_size_text(buf, free);
    buf = ngx_sprintf(buf, " free of ");

    return ngx_http_canary_size_text(buf, size);
}


/* bytes as "512 B", "12.5 KB", "6.1 MB" */

u_char *
ngx_http_canary_size_text(u_char *buf, size_t bytes)
{
    if (bytes < 1024) {
        return ngx_sprintf(buf, "%uz B", bytes);
    }

    if (bytes < 1024 * 1024) {
        return ngx_sprintf(buf, "%uz.%uz KB", bytes / 1024,
                           bytes % 1024 * 10 / 1024);
    }

    return ngx_sprintf(buf, "%uz.%uz MB", bytes / (1024 * 1024),
                       bytes % (1024 * 1024) * 10 / (1024 * 1024));
}
