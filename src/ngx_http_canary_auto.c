
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * Automatic progression and rollback: the controller that runs in the
 * sync worker (worker 0, or the single process) of every node, for the
 * rollouts with "auto" (ngx_http_canary_auto_conf.c).  Here: its start,
 * the schedule, the leader's lease, the figures each node flushes at a
 * boundary, the reads of the rollout hash; the decisions and what they
 * write are in ngx_http_canary_auto_decide.c, the fields and commands in
 * ngx_http_canary_auto_fields.c.  The policy itself (parameters,
 * judgement, the step that follows, the timing of intervals) is pure C
 * in ngx_http_canary_policy.c.
 *
 * Every node, at each interval boundary of each automatic rollout, adds
 * the figures of the interval that just ended (the deltas of its own zone
 * counters: requests, errors, histogram, per variant) to the hash
 * <prefix>rollout:<name>:fig:<interval start, unix ms> with HINCRBY, in
 * one pipelined write, and gives the hash an expiry.
 *
 * One node at a time leads: it holds <prefix>leader (SET NX PX, renewed by
 * a compare-and-expire script every third of its life, taken over by
 * another node when it expires).  About once a second, and at each
 * boundary plus a grace period, every node reads the rollout hash (for its
 * status page); the leader also reads the fleet's figures of the interval
 * that ended and, when the rollout is progressing, judges them and writes
 * the decision with a script that checks, atomically, that it still holds
 * the lease and that the rollout's "checked", "state" and "step" fields
 * are those it judged from: so no interval is judged twice and a new
 * leader carries on from exactly the step the old one wrote.  The same
 * script appends the decision to <prefix>rollout:<name>:history, and
 * publishes <prefix>changed (every node resyncs at once) and, on a
 * rollback or a failed check, one JSON message on <prefix>alerts.
 *
 * With arms (more than one "variant"), each arm's figures are added as
 * well, as "arm:<name>:req" ..., and at each decision every arm that is
 * on is judged on its own against stable: one that fails, while another
 * does not, is switched off ("arm:<name>" off in the rollout hash, by a
 * script that checks the lease, with a history entry "arm_off" and an
 * alert); the step is then judged on the figures of the arms that are
 * left.  When every arm fails, the rollout fails as a whole, as a
 * two-sided one does.
 *
 * Fields of the rollout hash written by the controller: percent, state,
 * step (1-based), since (the start of the first interval judged at this
 * step), checked (the start of the last interval judged), failures
 * (consecutive failed checks), decided_at, decided_by, decision, reason,
 * and the figures that decided: interval, nodes, c_requests, c_errors,
 * c_error_rate (ppm), c_p99 (ms), and s_* for stable; at a gate, "gate"
 * (the percent awaited, see ngx_http_canary_auto_gate.c).
 *
 * The dark phase ("auto ... shadow=<percent> shadow_intervals=<n>"): a
 * rollout that starts progressing first stays at percent 0 with fields
 * phase "dark", dark_passed (intervals passed so far) and shadow (the
 * share that every node then shadows); each interval judges the shadow
 * figures (the fleet's "d:" fields) against stable's with the same
 * thresholds.  n passed intervals go on to step 1 (the three fields are
 * removed); a failure, as many times as "failures" says, ends in
 * rolled_back at percent 0, before any user was exposed.  History entries
 * and alerts carry "phase" (dark or live): which phase decided.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_http.h>

#include "ngx_http_canary_module.h"
#include "ngx_http_canary_redis.h"
#include "ngx_http_canary_auto_fields.h"
#include "ngx_http_canary_auto_decide.h"
#include "ngx_http_canary_auto_event.h"
#include "ngx_http_canary_auto_gate.h"
#include "ngx_http_canary_auto_check.h"
#include "ngx_http_canary_auto.h"
#include "ngx_http_canary_keys.h"


#define NGX_HTTP_CANARY_AUTO_TICK       100


static ngx_int_t ngx_http_canary_auto_channels(ngx_cycle_t *cycle,
    ngx_http_canary_auto_t *ctl);
static void ngx_http_canary_auto_tick(ngx_event_t *ev);
static void ngx_http_canary_auto_lease(ngx_http_canary_auto_t *ctl,
    uint64_t now);
static void ngx_http_canary_auto_lease_handler(ngx_http_canary_redis_t *rc,
    redisReply *reply, void *data);
static void ngx_http_canary_auto_counts(ngx_http_canary_auto_t *ctl,
    ngx_http_canary_auto_rollout_t *ar,
    uint64_t counts[][NGX_HTTP_CANARY_AUTO_NFIG]);
static void ngx_http_canary_auto_flush(ngx_http_canary_auto_t *ctl,
    ngx_http_canary_auto_rollout_t *ar, uint64_t interval);
static void ngx_http_canary_auto_poll(ngx_http_canary_auto_t *ctl,
    ngx_http_canary_auto_rollout_t *ar, uint64_t judge);
static void ngx_http_canary_auto_poll_handler(ngx_http_canary_redis_t *rc,
    redisReply *reply, void *data);
static ngx_uint_t ngx_http_canary_auto_live(
    ngx_http_canary_auto_rollout_t *ar);
static ngx_int_t ngx_http_canary_auto_show(
    ngx_http_canary_auto_rollout_t *ar, redisReply **f);


/*
 * KEYS[1] the rollout hash, KEYS[2] (optional) a figures hash;
 * ARGV the fields to read.  Returns { HMGET, HGETALL }.
 */

static ngx_str_t  ngx_http_canary_auto_read_lua = ngx_string(
    "local h = redis.call('HMGET', KEYS[1], unpack(ARGV)) "
    "if KEYS[2] then return { h, redis.call('HGETALL', KEYS[2]) } end "
    "return { h }");


/* KEYS[1] the lease; ARGV node, ttl ms.  1: held by this node */

static ngx_str_t  ngx_http_canary_auto_lease_lua = ngx_string(
    "local v = redis.call('GET', KEYS[1]) "
    "if v == ARGV[1] then "
    "  redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 "
    "end "
    "if not v then "
    "  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 "
    "end "
    "return 0");


static ngx_http_canary_auto_t  *ngx_http_canary_auto;


ngx_int_t
ngx_http_canary_auto_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                       i, n;
    ngx_msec_t                       shortest;
    ngx_http_canary_auto_t          *ctl;
    ngx_http_canary_rollout_t       *ro;
    ngx_http_canary_main_conf_t     *cmcf;
    ngx_http_canary_auto_rollout_t  *ar;

    if (!ngx_http_canary_sync_process()) {
        return NGX_OK;
    }

    cmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_canary_module);

    if (cmcf == NULL || cmcf->redis == NULL || cmcf->sh == NULL) {
        return NGX_OK;
    }

    ro = cmcf->rollouts.elts;
    n = 0;
    shortest = NGX_MAX_INT32_VALUE;

    for (i = 0; i < cmcf->rollouts.nelts; i++) {
        if (ro[i].policy) {
            n++;
            shortest = ngx_min(shortest, (ngx_msec_t) ro[i].policy->interval);
        }
    }

    if (n == 0) {
        return NGX_OK;
    }

    ctl = ngx_pcalloc(cycle->pool, sizeof(ngx_http_canary_auto_t));
    if (ctl == NULL) {
        return NGX_ERROR;
    }

    ctl->cmcf = cmcf;
    ctl->log = cycle->log;
    ctl->nrollouts = n;

    /* the lease: three of the shortest intervals, 3s..30s */

    ctl->ttl = (ngx_msec_t) ngx_http_canary_policy_lease(shortest);

    for (i = 0; i < NGX_HTTP_CANARY_HIST_BUCKETS - 1; i++) {
        ctl->bounds[i] = ngx_http_canary_hist_bounds[i];
    }

    if (ngx_http_canary_node_name(cycle, cmcf, &ctl->node) != NGX_OK
        || ngx_http_canary_auto_channels(cycle, ctl) != NGX_OK)
    {
        return NGX_ERROR;
    }

    ctl->rollouts = ngx_pcalloc(cycle->pool,
                                n * sizeof(ngx_http_canary_auto_rollout_t));
    if (ctl->rollouts == NULL) {
        return NGX_ERROR;
    }

    ar = ctl->rollouts;

    for (i = 0; i < cmcf->rollouts.nelts; i++) {
        if (ro[i].policy == NULL) {
            continue;
        }

        ar->ctl = ctl;
        ar->ro = &ro[i];
        ar->policy = ro[i].policy;

        if (ngx_http_canary_key(cycle->pool, &ar->key,
                                &cmcf->redis->prefix, &ro[i].name, "")
            != NGX_OK
            || ngx_http_canary_key(cycle->pool, &ar->history,
                                   &cmcf->redis->prefix, &ro[i].name,
                                   ":history")
               != NGX_OK
            || ngx_http_canary_key(cycle->pool, &ar->fig,
                                   &cmcf->redis->prefix, &ro[i].name,
                                   ":fig:")
               != NGX_OK)
        {
            return NGX_ERROR;
        }

        ar++;
    }

    ctl->rc = ngx_http_canary_redis_create(cycle, cmcf->redis, "auto");
    if (ctl->rc == NULL) {
        return NGX_ERROR;
    }

    ctl->rc->quiet = 1;

    ctl->tick.handler = ngx_http_canary_auto_tick;
    ctl->tick.data = ctl;
    ctl->tick.log = cycle->log;
    ctl->tick.cancelable = 1;

    ngx_http_canary_auto = ctl;

    ngx_http_canary_redis_connect(ctl->rc);

    ngx_add_timer(&ctl->tick, NGX_HTTP_CANARY_AUTO_TICK);

    ngx_log_error(NGX_LOG_INFO, cycle->log, 0,
                  "canary auto: node \"%V\", %ui automatic rollouts, "
                  "lease %Ms", &ctl->node, n, ctl->ttl);

    return NGX_OK;
}



/* the lease's key, and the channels: <prefix>leader, changed, alerts */

static ngx_int_t
ngx_http_canary_auto_channels(ngx_cycle_t *cycle, ngx_http_canary_auto_t *ctl)
{
    size_t                        len;
    ngx_http_canary_main_conf_t  *cmcf;

    cmcf = ctl->cmcf;

    len = cmcf->redis->prefix.len + sizeof("changed") - 1;

    ctl->leader_key.data = ngx_pnalloc(cycle->pool, 3 * len);
    if (ctl->leader_key.data == NULL) {
        return NGX_ERROR;
    }

    ctl->leader_key.len = ngx_sprintf(ctl->leader_key.data, "%Vleader",
                                      &cmcf->redis->prefix)
                          - ctl->leader_key.data;
    ctl->changed.data = ctl->leader_key.data + len;
    ctl->changed.len = ngx_sprintf(ctl->changed.data, "%Vchanged",
                                   &cmcf->redis->prefix)
                       - ctl->changed.data;
    ctl->alerts.data = ctl->changed.data + len;
    ctl->alerts.len = ngx_sprintf(ctl->alerts.data, "%Valerts",
                                  &cmcf->redis->prefix)
                      - ctl->alerts.data;

    return NGX_OK;
}


void
ngx_http_canary_auto_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_canary_auto_t  *ctl;

    ctl = ngx_http_canary_auto;

    if (ctl == NULL) {
        return;
    }

    if (ctl->tick.timer_set) {
        ngx_del_timer(&ctl->tick);
    }

    ngx_http_canary_redis_close(ctl->rc);
    ngx_http_canary_auto_checks_stop(ctl);

    ngx_http_canary_auto = NULL;
}


static void
ngx_http_canary_auto_tick(ngx_event_t *ev)
{
    ngx_http_canary_auto_t *ctl = ev->data;

    uint64_t                         now, start, judge, delay;
    ngx_uint_t                       i;
    ngx_http_canary_auto_rollout_t  *ar;

    if (ngx_exiting || ngx_terminate) {
        return;
    }

    now = ngx_http_canary_auto_now();
    delay = NGX_HTTP_CANARY_AUTO_TICK;

    if (now >= ctl->next_lease && !ctl->lease_busy) {
        ngx_http_canary_auto_lease(ctl, now);
    }

    for (i = 0; i < ctl->nrollouts; i++) {
        ar = &ctl->rollouts[i];
        start = ngx_http_canary_policy_boundary(ar->policy, now);

        if (ar->flushed < start) {
            ngx_http_canary_auto_flush(ctl, ar, start);
            ar->flushed = start;
        }

        /* the leader judges the last interval a grace period after it */

        judge = (ctl->leader && !ar->busy)
                ? ngx_http_canary_policy_due(ar->policy, now, ar->asked) : 0;

        /*
         * with checks, an interval of a live step (progressing, or
         * waiting at a gate) is judged once they have answered, and
         * never without them; the dark phase is judged without them
         */

        if (judge && ar->ro->checks && ar->check_for != judge
            && !(ar->ro->sh->autost && ar->ro->sh->autost->dark))
        {
            if (!ar->checking && ngx_http_canary_auto_live(ar)) {
                ngx_http_canary_auto_checks(ar, judge);
            }

            judge = (ar->check_for == judge) ? judge : 0;
        }

        if (judge) {
            ar->asked = judge;
            ngx_http_canary_auto_poll(ctl, ar, judge);

        } else if (!ar->busy && now >= ar->next_poll) {
            ngx_http_canary_auto_poll(ctl, ar, 0);
        }

        /* wake up just after the next boundary */

        delay = ngx_min(delay, ngx_http_canary_policy_wake(ar->policy, now));
    }

    ngx_add_timer(ev, (ngx_msec_t) delay);
}


static void
ngx_http_canary_auto_lease(ngx_http_canary_auto_t *ctl, uint64_t now)
{
    ngx_http_canary_redis_args_t  *a;

    a = ngx_http_canary_auto_args_init(&ngx_http_canary_auto_args);

    ngx_http_canary_redis_arg(a, "EVAL", 4);
    ngx_http_canary_redis_arg(a, ngx_http_canary_auto_lease_lua.data,
                              ngx_http_canary_auto_lease_lua.len);
    ngx_http_canary_redis_arg(a, "1", 1);
    ngx_http_canary_redis_arg(a, ctl->leader_key.data, ctl->leader_key.len);
    ngx_http_canary_redis_arg(a, ctl->node.data, ctl->node.len);
    ngx_http_canary_redis_argf(a, "%M", ctl->ttl);

    ctl->next_lease = now + ctl->ttl / 3;

    if (ngx_http_canary_redis_send_args(ctl->rc, a,
                                        ngx_http_canary_auto_lease_handler, ctl)
        == NGX_OK)
    {
        ctl->lease_busy = 1;

    } else {
        ctl->leader = 0;
    }
}


static void
ngx_http_canary_auto_lease_handler(ngx_http_canary_redis_t *rc,
    redisReply *reply, void *data)
{
    ngx_http_canary_auto_t *ctl = data;

    ngx_uint_t  leader;

    ctl->lease_busy = 0;

    leader = (reply && reply->type == REDIS_REPLY_INTEGER
              && reply->integer == 1);

    if (reply && reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, ctl->log, 0,
                      "canary auto: lease \"%V\": %*s", &ctl->leader_key,
                      (size_t) reply->len, reply->str);
    }

    if (leader != ctl->leader) {
        ngx_log_error(NGX_LOG_NOTICE, ctl->log, 0,
                      "canary auto: node \"%V\" %s the lease \"%V\"",
                      &ctl->node, leader ? "holds" : "does not hold",
                      &ctl->leader_key);
    }

    ctl->leader = leader;

    if (ctl->cmcf->sh) {
        ctl->cmcf->sh->auto_leader = leader;
    }
}


/*
 * this node's counters of the rollout, summed over the worker slots, on
 * two sides: stable, and canary (every arm)
 */

static void
ngx_http_canary_auto_counts(ngx_http_canary_auto_t *ctl,
    ngx_http_canary_auto_rollout_t *ar,
    uint64_t counts[][NGX_HTTP_CANARY_AUTO_NFIG])
{
    ngx_uint_t                   s, v, k, side;
    ngx_http_canary_counters_t  *c;

    ngx_memzero(counts, (NGX_HTTP_CANARY_AUTO_ROWS + 1)
                        * NGX_HTTP_CANARY_AUTO_NFIG * sizeof(uint64_t));

    /* shadow traffic's in the last row, NGX_HTTP_CANARY_AUTO_SHADOW */

    if (ar->ro->sh->shadow) {
        for (s = 0; s < ctl->cmcf->sh->nslots; s++) {
            c = &ar->ro->sh->shadow[s];
            side = NGX_HTTP_CANARY_AUTO_SHADOW;

            counts[side][0] += c->requests;
            counts[side][1] += c->errors;

            for (k = 0; k < NGX_HTTP_CANARY_HIST_BUCKETS; k++) {
                counts[side][2 + k] += c->hist[k];
            }
        }
    }

    for (s = 0; s < ctl->cmcf->sh->nslots; s++) {
        for (v = 0; v <= ar->ro->narms; v++) {
            c = ngx_http_canary_counters(ar->ro, s, v);
            side = v ? NGX_HTTP_CANARY_CANARY : NGX_HTTP_CANARY_STABLE;

            counts[side][0] += c->requests;
            counts[side][1] += c->errors;

            for (k = 0; k < NGX_HTTP_CANARY_HIST_BUCKETS; k++) {
                counts[side][2 + k] += c->hist[k];
            }

            if (v == 0 || ar->ro->narms == 1) {
                continue;
            }

            /* with arms: each arm's own row too */

            counts[1 + v][0] += c->requests;
            counts[1 + v][1] += c->errors;

            for (k = 0; k < NGX_HTTP_CANARY_HIST_BUCKETS; k++) {
                counts[1 + v][2 + k] += c->hist[k];
            }
        }
    }
}


/*
 * At an interval boundary (start): adds this node's figures of the
 * interval that just ended to the fleet's.  The counters at the last
 * boundary are in the zone; a boundary another worker 0 has flushed
 * already (the old one, in the moments of a reload) is not flushed again,
 * and after a gap (a new zone, worker 0 down for an interval or more) the
 * node counts from now.
 */

static void
ngx_http_canary_auto_flush(ngx_http_canary_auto_t *ctl,
    ngx_http_canary_auto_rollout_t *ar, uint64_t start)
{
    u_char                         key[NGX_MAX_ERROR_STR];
    size_t                         keylen;
    uint64_t                       cur[NGX_HTTP_CANARY_AUTO_ROWS + 1]
                                      [NGX_HTTP_CANARY_AUTO_NFIG];
    uint64_t                       base[NGX_HTTP_CANARY_AUTO_ROWS + 1]
                                       [NGX_HTTP_CANARY_AUTO_NFIG];
    uint64_t                       d, interval, last;
    ngx_uint_t                     i, v, k, rows;
    ngx_http_canary_redis_args_t  *a;
    ngx_http_canary_auto_base_t   *ab;

    ab = ar->ro->sh->autobase;
    interval = start - ar->policy->interval;

    ngx_http_canary_auto_counts(ctl, ar, cur);

    ngx_shmtx_lock(&ctl->cmcf->shpool->mutex);

    last = ab->flushed;

    if (last < start) {
        ngx_memcpy(base, ab->base, sizeof(base));
        ngx_memcpy(ab->base, cur, sizeof(cur));
        ab->flushed = start;
    }

    ngx_shmtx_unlock(&ctl->cmcf->shpool->mutex);

    if (last != interval) {
        /* flushed already, or a gap: nothing of the interval to add */
        return;
    }

    if (ar->fig.len + NGX_INT64_LEN > sizeof(key)) {
        return;
    }

    keylen = ngx_sprintf(key, "%V%uL", &ar->fig, interval) - key;

    a = ngx_http_canary_auto_args_init(&ngx_http_canary_auto_args);

    rows = (ar->ro->narms > 1) ? 2 + ar->ro->narms : 2;

    for (i = 0; i <= rows; i++) {

        /* the rows in use, then shadow's, the last one */

        v = (i < rows) ? i : NGX_HTTP_CANARY_AUTO_SHADOW;

        for (k = 0; k < NGX_HTTP_CANARY_AUTO_NFIG; k++) {

            d = cur[v][k] >= base[v][k] ? cur[v][k] - base[v][k]
                                        : cur[v][k];
            if (d == 0) {
                continue;
            }

            ngx_http_canary_redis_args_reset(a);
            ngx_http_canary_redis_arg(a, "HINCRBY", 7);
            ngx_http_canary_redis_arg(a, key, keylen);
            ngx_http_canary_auto_arg_figure(a, ar->ro, v, k);
            ngx_http_canary_redis_argf(a, "%uL", d);

            (void) ngx_http_canary_redis_send_args(ctl->rc, a,
                                                   ngx_http_canary_auto_ignore,
                                                   NULL);
        }
    }

    ngx_http_canary_redis_args_reset(a);
    ngx_http_canary_redis_arg(a, "HINCRBY", 7);
    ngx_http_canary_redis_arg(a, key, keylen);
    ngx_http_canary_redis_arg(a, "nodes", 5);
    ngx_http_canary_redis_arg(a, "1", 1);
    (void) ngx_http_canary_redis_send_args(ctl->rc, a,
                                           ngx_http_canary_auto_ignore, NULL);

    /* kept for ten intervals, and at least a minute */

    ngx_http_canary_redis_args_reset(a);
    ngx_http_canary_redis_arg(a, "PEXPIRE", 7);
    ngx_http_canary_redis_arg(a, key, keylen);
    ngx_http_canary_redis_argf(a, "%uL",
                               ngx_http_canary_policy_figures_ttl(ar->policy));
    (void) ngx_http_canary_redis_send_args(ctl->rc, a,
                                           ngx_http_canary_auto_ignore, NULL);
}


/* reads the rollout hash, and the fleet's figures of "judge" if not 0 */

static void
ngx_http_canary_auto_poll(ngx_http_canary_auto_t *ctl,
    ngx_http_canary_auto_rollout_t *ar, uint64_t judge)
{
    ngx_uint_t                     i;
    ngx_http_canary_redis_args_t  *a;

    a = ngx_http_canary_auto_args_init(&ngx_http_canary_auto_args);

    ngx_http_canary_redis_arg(a, "EVAL", 4);
    ngx_http_canary_redis_arg(a, ngx_http_canary_auto_read_lua.data,
                              ngx_http_canary_auto_read_lua.len);
    ngx_http_canary_redis_arg(a, judge ? "2" : "1", 1);
    ngx_http_canary_redis_arg(a, ar->key.data, ar->key.len);

    if (judge) {
        ngx_http_canary_redis_argf(a, "%V%uL", &ar->fig, judge);
    }

    for (i = 0; i < ngx_http_canary_f_n; i++) {
        ngx_http_canary_redis_arg(a, ngx_http_canary_auto_fields[i],
                                  ngx_strlen(ngx_http_canary_auto_fields[i]));
    }

    ar->judging = judge;
    ar->next_poll = ngx_http_canary_auto_now()
                    + ngx_http_canary_policy_poll(ar->policy);

    if (ngx_http_canary_redis_send_args(ctl->rc, a,
                                        ngx_http_canary_auto_poll_handler, ar)
        == NGX_OK)
    {
        ar->busy = 1;
    }
}


static void
ngx_http_canary_auto_poll_handler(ngx_http_canary_redis_t *rc,
    redisReply *reply, void *data)
{
    ngx_http_canary_auto_rollout_t *ar = data;

    uint32_t                 percent;
    uint64_t                 decided, now, step, since, checked;
    ngx_uint_t               state, dark;
    redisReply             **f, *fig;
    ngx_http_canary_auto_t  *ctl;

    ctl = ar->ctl;
    ar->busy = 0;

    if (reply == NULL) {
        return;
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 1
        || reply->element[0]->type != REDIS_REPLY_ARRAY
        || reply->element[0]->elements != ngx_http_canary_f_n)
    {
        if (reply->type == REDIS_REPLY_ERROR) {
            ngx_log_error(NGX_LOG_ERR, ctl->log, 0,
                          "canary auto: reading \"%V\": %*s", &ar->key,
                          (size_t) reply->len, reply->str);
        }

        return;
    }

    f = reply->element[0]->element;
    fig = (reply->elements > 1 && ar->judging) ? reply->element[1] : NULL;

    if (ngx_http_canary_auto_show(ar, f) == NGX_DECLINED) {
        /* a Redis that lost the hash, to be restored: no operator */
        ar->seen = 0;
        return;
    }

    if (!ctl->leader || ar->applying) {
        ar->seen = 0;
        return;
    }

    now = ngx_http_canary_auto_now();
    percent = ngx_http_canary_auto_percent(f[ngx_http_canary_f_percent]);
    state = ngx_http_canary_auto_state(f[ngx_http_canary_f_state]);

    if (ngx_http_canary_auto_uint(f[ngx_http_canary_f_decided_at], &decided)
        != NGX_OK)
    {
        decided = 0;
    }

    /* a change of percent or state that the controller did not write */

    if (ar->seen && decided == ar->seen_decided
        && (percent != ar->seen_percent || state != ar->seen_state))
    {
        ngx_http_canary_auto_operator(ar, f, percent, state, decided);
    }

    ar->seen = 1;
    ar->seen_percent = percent;
    ar->seen_state = state;
    ar->seen_decided = decided;

    if (state == NGX_HTTP_CANARY_STATE_WAITING) {

        /* an approval, or a step still judged while it waits */

        if (ngx_http_canary_auto_waiting(ar, f, percent, now) == NGX_OK) {
            return;
        }

    } else if (state != NGX_HTTP_CANARY_STATE_PROGRESSING) {
        return;
    }

    dark = ngx_http_canary_auto_dark(f);

    if (!dark
        && (ngx_http_canary_auto_uint(f[ngx_http_canary_f_step], &step)
            != NGX_OK
            || step == 0 || step >= ar->policy->nsteps))
    {
        ngx_http_canary_auto_start(ar, f, percent, now);
        return;
    }

    if (fig == NULL || fig->type != REDIS_REPLY_ARRAY) {
        return;
    }

    if (ngx_http_canary_auto_uint(f[ngx_http_canary_f_since], &since)
        != NGX_OK)
    {
        since = 0;
    }

    if (ngx_http_canary_auto_uint(f[ngx_http_canary_f_checked], &checked)
        != NGX_OK)
    {
        checked = 0;
    }

    if (ar->judging < since || ar->judging <= checked) {
        ngx_log_debug3(NGX_LOG_DEBUG_HTTP, ctl->log, 0,
                       "canary auto: \"%V\" interval %uL not judged "
                       "(since %uL)", &ar->ro->name, ar->judging, since);
        return;
    }

    if (dark) {
        ngx_http_canary_auto_decide_dark(ar, f, fig, percent, ar->judging,
                                         now);
        return;
    }

    ngx_http_canary_auto_decide(ar, f, fig, percent, ar->judging, now);
}


/*
 * progressing or waiting, as the leader last read the hash (or, before
 * that, as the sync published it)
 */

static ngx_uint_t
ngx_http_canary_auto_live(ngx_http_canary_auto_rollout_t *ar)
{
    ngx_uint_t  state;

    state = ar->seen ? ar->seen_state : ar->ro->sh->snapshot->state;

    return state == NGX_HTTP_CANARY_STATE_PROGRESSING
           || state == NGX_HTTP_CANARY_STATE_WAITING;
}


/*
 * The rollout's automatic state as Redis holds it, for the status page.
 * NGX_DECLINED: no hash, while the sync keeps values from Redis or the
 * state file (a Redis that lost its data and is being restored).
 */

static ngx_int_t
ngx_http_canary_auto_show(ngx_http_canary_auto_rollout_t *ar,
    redisReply **f)
{
    uint64_t                        v[ngx_http_canary_f_n];
    ngx_uint_t                      i;
    redisReply                     *r;
    ngx_slab_pool_t                *shpool;
    ngx_http_canary_auto_status_t  *st, tmp;

    /*
     * No hash while the sync still holds values from Redis or the state
     * file: a Redis that lost its data and is being restored from the
     * zone, these figures among the rest (the sync publishes the config's
     * values when the hash is gone for good)
     */

    for (i = 0; i < ngx_http_canary_f_n; i++) {
        if (f[i]->type != REDIS_REPLY_NIL) {
            break;
        }
    }

    if (i == ngx_http_canary_f_n
        && ar->ro->sh->snapshot->source != NGX_HTTP_CANARY_SOURCE_CONFIG)
    {
        return NGX_DECLINED;
    }

    st = ar->ro->sh->autost;

    if (st == NULL) {
        return NGX_OK;
    }

    for (i = 0; i < ngx_http_canary_f_n; i++) {
        if (ngx_http_canary_auto_uint(f[i], &v[i]) != NGX_OK) {
            v[i] = 0;
        }
    }

    ngx_memzero(&tmp, sizeof(ngx_http_canary_auto_status_t));

    tmp.step = (ngx_uint_t) v[ngx_http_canary_f_step];
    tmp.nsteps = ar->policy->nsteps;
    tmp.failures = (ngx_uint_t) v[ngx_http_canary_f_failures];
    tmp.since = v[ngx_http_canary_f_since];
    tmp.checked = v[ngx_http_canary_f_checked];
    tmp.decided_at = v[ngx_http_canary_f_decided_at];
    tmp.interval = v[ngx_http_canary_f_interval];
    tmp.nodes = (ngx_uint_t) v[ngx_http_canary_f_nodes];
    tmp.requests[1] = v[ngx_http_canary_f_c_requests];
    tmp.errors[1] = v[ngx_http_canary_f_c_errors];
    tmp.error_rate[1] = v[ngx_http_canary_f_c_error_rate];
    tmp.p99[1] = v[ngx_http_canary_f_c_p99];
    tmp.requests[0] = v[ngx_http_canary_f_s_requests];
    tmp.errors[0] = v[ngx_http_canary_f_s_errors];
    tmp.error_rate[0] = v[ngx_http_canary_f_s_error_rate];
    tmp.p99[0] = v[ngx_http_canary_f_s_p99];

    for (i = 0; i < 2; i++) {
        r = f[i ? ngx_http_canary_f_s_p99 : ngx_http_canary_f_c_p99];

        if (r->type == REDIS_REPLY_STRING && r->len == 3
            && ngx_strncmp(r->str, "inf", 3) == 0)
        {
            tmp.p99[i ? 0 : 1] = NGX_HTTP_CANARY_P99_INF;
        }
    }

    r = f[ngx_http_canary_f_decision];

    if (r->type == REDIS_REPLY_STRING) {
        tmp.decision_len = ngx_min(r->len, sizeof(tmp.decision));
        ngx_memcpy(tmp.decision, r->str, tmp.decision_len);
    }

    r = f[ngx_http_canary_f_reason];

    if (r->type == REDIS_REPLY_STRING) {
        tmp.reason_len = ngx_min(r->len, sizeof(tmp.reason));
        ngx_memcpy(tmp.reason, r->str, tmp.reason_len);
    }

    r = f[ngx_http_canary_f_decided_by];

    if (r->type == REDIS_REPLY_STRING) {
        tmp.decided_by_len = ngx_min(r->len, sizeof(tmp.decided_by));
        ngx_memcpy(tmp.decided_by, r->str, tmp.decided_by_len);
    }

    r = f[ngx_http_canary_f_gate];

    if (r->type != REDIS_REPLY_STRING
        || ngx_http_canary_parse_percent((u_char *) r->str, r->len,
                                         &tmp.gate)
           != 0)
    {
        tmp.gate = 0;
    }

    tmp.dark = ngx_http_canary_auto_dark(f);
    tmp.dark_passed = (ngx_uint_t) v[ngx_http_canary_f_dark_passed];
    tmp.updated = ngx_time();

    shpool = ar->ctl->cmcf->shpool;

    ngx_shmtx_lock(&shpool->mutex);
    *st = tmp;
    ngx_shmtx_unlock(&shpool->mutex);

    return NGX_OK;
}

