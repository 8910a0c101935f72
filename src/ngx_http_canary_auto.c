
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * Automatic progression and rollback: the "auto" directive of a
 * canary_rollout block, and the controller that runs in the sync worker
 * (worker 0, or the single process) of every node.  The policy itself
 * (parameters, judgement, the step that follows) is pure C in
 * ngx_http_canary_policy.c.
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
 * c_error_rate (ppm), c_p99 (ms), and s_* for stable.
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


#if (NGX_HTTP_CANARY_POLICY_HIST != NGX_HTTP_CANARY_HIST_BUCKETS)
#error "the policy's histogram differs from the counters' histogram"
#endif


#define NGX_HTTP_CANARY_AUTO_TICK       100
#define NGX_HTTP_CANARY_AUTO_POLL       1000
#define NGX_HTTP_CANARY_AUTO_MAX_ARGS   128
#define NGX_HTTP_CANARY_AUTO_ARGS_BUF   8192


/* the fields of the rollout hash read by every poll, in this order */
enum {
    ngx_http_canary_f_percent = 0,
    ngx_http_canary_f_state,
    ngx_http_canary_f_step,
    ngx_http_canary_f_since,
    ngx_http_canary_f_checked,
    ngx_http_canary_f_failures,
    ngx_http_canary_f_decided_at,
    ngx_http_canary_f_decided_by,
    ngx_http_canary_f_decision,
    ngx_http_canary_f_reason,
    ngx_http_canary_f_interval,
    ngx_http_canary_f_nodes,
    ngx_http_canary_f_c_requests,
    ngx_http_canary_f_c_errors,
    ngx_http_canary_f_c_error_rate,
    ngx_http_canary_f_c_p99,
    ngx_http_canary_f_s_requests,
    ngx_http_canary_f_s_errors,
    ngx_http_canary_f_s_error_rate,
    ngx_http_canary_f_s_p99,
    ngx_http_canary_f_phase,
    ngx_http_canary_f_dark_passed,
    ngx_http_canary_f_n
};


typedef struct {
    const char                     *argv[NGX_HTTP_CANARY_AUTO_MAX_ARGS];
    size_t                          len[NGX_HTTP_CANARY_AUTO_MAX_ARGS];
    int                             n;
    u_char                         *pos;
    u_char                          buf[NGX_HTTP_CANARY_AUTO_ARGS_BUF];
} ngx_http_canary_auto_args_t;


typedef struct ngx_http_canary_auto_s  ngx_http_canary_auto_t;


/* what a decision writes */
typedef struct {
    const char                     *event;
    uint64_t                        now;
    uint32_t                        old_percent;
    uint32_t                        percent;
    ngx_uint_t                      old_state;
    ngx_uint_t                      state;
    uint64_t                        step;       /* 1-based, 0: none */
    uint64_t                        since;      /* 0: unchanged */
    uint32_t                        failures;
    uint64_t                        interval;   /* judged */
    uint64_t                        nodes;
    ngx_http_canary_judgement_t    *j;          /* NULL: no figures */
    u_char                         *reason;
    uint32_t                        dark_passed;
    unsigned                        step_changed:1;
    unsigned                        alert:1;
    unsigned                        dark:1;     /* decided in the dark */
    unsigned                        dark_stay:1;    /* and stays there */
} ngx_http_canary_auto_outcome_t;


typedef struct {
    ngx_http_canary_auto_t         *ctl;
    ngx_http_canary_rollout_t      *ro;
    ngx_http_canary_policy_t       *policy;

    ngx_str_t                       key;        /* <prefix>rollout:<name> */
    ngx_str_t                       history;    /* ...:history */
    ngx_str_t                       fig;        /* ...:fig: */

    uint64_t                        flushed;    /* boundary last seen */
    uint64_t                        next_poll;
    uint64_t                        asked;      /* interval last judged */
    uint64_t                        judging;    /* in the poll in flight */

    /* the last percent and state the leader saw, to tell operators' */
    uint32_t                        seen_percent;
    ngx_uint_t                      seen_state;
    uint64_t                        seen_decided;

    /* the decision in flight, for the log once it is applied */
    ngx_http_canary_auto_outcome_t  out;
    u_char                          reason[NGX_HTTP_CANARY_REASON_LEN];

    unsigned                        busy:1;
    unsigned                        applying:1;
    unsigned                        seen:1;
} ngx_http_canary_auto_rollout_t;


struct ngx_http_canary_auto_s {
    ngx_http_canary_main_conf_t    *cmcf;
    ngx_http_canary_redis_t        *rc;
    ngx_log_t                      *log;
    ngx_event_t                     tick;

    ngx_str_t                       node;
    ngx_str_t                       leader_key;
    ngx_str_t                       changed;
    ngx_str_t                       alerts;

    ngx_msec_t                      ttl;        /* of the lease */
    uint64_t                        next_lease;
    ngx_uint_t                      leader;

    uint64_t                        bounds[NGX_HTTP_CANARY_HIST_BUCKETS - 1];

    ngx_uint_t                      nrollouts;
    ngx_http_canary_auto_rollout_t *rollouts;

    unsigned                        lease_busy:1;
};


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
static ngx_int_t ngx_http_canary_auto_show(
    ngx_http_canary_auto_rollout_t *ar, redisReply **f);
static void ngx_http_canary_auto_operator(ngx_http_canary_auto_rollout_t *ar,
    redisReply **f, uint32_t percent, ngx_uint_t state, uint64_t decided);
static void ngx_http_canary_auto_start(ngx_http_canary_auto_rollout_t *ar,
    redisReply **f, uint32_t percent, uint64_t now);
static void ngx_http_canary_auto_decide(ngx_http_canary_auto_rollout_t *ar,
    redisReply **f, redisReply *fig, uint32_t percent, uint64_t interval,
    uint64_t now);
static uint64_t ngx_http_canary_auto_figures(
    ngx_http_canary_auto_rollout_t *ar, redisReply *fig,
    ngx_http_canary_figures_t *figs);
static void ngx_http_canary_auto_decide_dark(
    ngx_http_canary_auto_rollout_t *ar, redisReply **f, redisReply *fig,
    uint32_t percent, uint64_t interval, uint64_t now);
static ngx_uint_t ngx_http_canary_auto_dark(redisReply **f);
static void ngx_http_canary_auto_apply(ngx_http_canary_auto_rollout_t *ar,
    redisReply **f, ngx_http_canary_auto_outcome_t *o);
static ngx_uint_t ngx_http_canary_auto_arms(
    ngx_http_canary_auto_rollout_t *ar, ngx_http_canary_figures_t *figs,
    ngx_http_canary_figures_t *canary, uint64_t interval, uint64_t nodes,
    uint64_t now, u_char *held);
static void ngx_http_canary_auto_arm_off(ngx_http_canary_auto_rollout_t *ar,
    ngx_uint_t arm, ngx_http_canary_judgement_t *j, uint64_t interval,
    uint64_t nodes, uint64_t now);
static void ngx_http_canary_auto_apply_handler(ngx_http_canary_redis_t *rc,
    redisReply *reply, void *data);
static void ngx_http_canary_auto_xadd_handler(ngx_http_canary_redis_t *rc,
    redisReply *reply, void *data);
static void ngx_http_canary_auto_ignore(ngx_http_canary_redis_t *rc,
    redisReply *reply, void *data);

static void ngx_http_canary_auto_args_init(ngx_http_canary_auto_args_t *a);
static void ngx_http_canary_auto_arg(ngx_http_canary_auto_args_t *a,
    const void *data, size_t len);
static void ngx_http_canary_auto_argf(ngx_http_canary_auto_args_t *a,
    const char *fmt, ...);
static void ngx_http_canary_auto_arg_reply(ngx_http_canary_auto_args_t *a,
    redisReply *r);
static void ngx_http_canary_auto_arg_percent(ngx_http_canary_auto_args_t *a,
    uint32_t hundredths);
static void ngx_http_canary_auto_arg_figures(ngx_http_canary_auto_args_t *a,
    ngx_http_canary_judgement_t *j, ngx_uint_t history);
static ngx_int_t ngx_http_canary_auto_send(ngx_http_canary_auto_t *ctl,
    ngx_http_canary_auto_args_t *a, ngx_http_canary_redis_handler_pt handler,
    void *data);

static ngx_int_t ngx_http_canary_auto_uint(redisReply *r, uint64_t *value);
static ngx_uint_t ngx_http_canary_auto_state(redisReply *r);
static uint32_t ngx_http_canary_auto_percent(redisReply *r);
static uint64_t ngx_http_canary_auto_now(void);
static ngx_msec_t ngx_http_canary_auto_grace(ngx_http_canary_policy_t *p);
static ngx_int_t ngx_http_canary_auto_key(ngx_pool_t *pool, ngx_str_t *key,
    ngx_str_t *prefix, ngx_str_t *name, char *suffix);


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


/*
 * KEYS[1] the lease, KEYS[2] the rollout hash, KEYS[3] its history.
 * ARGV: node, expected checked, state and step, the changed channel, the
 * rollout's name, the alerts channel, the alert ('' for none), the number
 * of HSET arguments, the number of HDEL fields, then those, then the XADD
 * field/value pairs.  1: applied, 0: not the leader, -1: the rollout
 * changed since it was read.
 */

static ngx_str_t  ngx_http_canary_auto_apply_lua = ngx_string(
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end "
    "local c = redis.call('HMGET', KEYS[2], 'checked', 'state', 'step') "
    "if (c[1] or '') ~= ARGV[2] or (c[2] or '') ~= ARGV[3] "
    "   or (c[3] or '') ~= ARGV[4] then return -1 end "
    "local ns, nd = tonumber(ARGV[9]), tonumber(ARGV[10]) "
    "local i = 11 "
    "if ns > 0 then "
    "  redis.call('HSET', KEYS[2], unpack(ARGV, i, i + ns - 1)) "
    "end "
    "i = i + ns "
    "if nd > 0 then "
    "  redis.call('HDEL', KEYS[2], unpack(ARGV, i, i + nd - 1)) "
    "end "
    "i = i + nd "
    "redis.call('XADD', KEYS[3], 'MAXLEN', '~', '1000', '*', "
    "           unpack(ARGV, i, #ARGV)) "
    "redis.call('PUBLISH', ARGV[5], ARGV[6]) "
    "if ARGV[8] ~= '' then redis.call('PUBLISH', ARGV[7], ARGV[8]) end "
    "return 1");


/*
 * KEYS[1] the lease, KEYS[2] the rollout hash, KEYS[3] its history; ARGV
 * node, the "arm:<name>" field, the changed channel, the rollout's name,
 * the alerts channel, the alert, then the XADD pairs.  1: switched off.
 */

static ngx_str_t  ngx_http_canary_auto_arm_off_lua = ngx_string(
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end "
    "redis.call('HSET', KEYS[2], ARGV[2], 'off') "
    "redis.call('XADD', KEYS[3], 'MAXLEN', '~', '1000', '*', "
    "           unpack(ARGV, 7, #ARGV)) "
    "redis.call('PUBLISH', ARGV[3], ARGV[4]) "
    "redis.call('PUBLISH', ARGV[5], ARGV[6]) "
    "return 1");


/* KEYS[1] the lease, KEYS[2] the history; ARGV node, then XADD pairs */

static ngx_str_t  ngx_http_canary_auto_xadd_lua = ngx_string(
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end "
    "redis.call('XADD', KEYS[2], 'MAXLEN', '~', '1000', '*', "
    "           unpack(ARGV, 2, #ARGV)) "
    "return 1");


static const char  *ngx_http_canary_auto_fields[] = {
    "percent", "state", "step", "since", "checked", "failures",
    "decided_at", "decided_by", "decision", "reason", "interval", "nodes",
    "c_requests", "c_errors", "c_error_rate", "c_p99",
    "s_requests", "s_errors", "s_error_rate", "s_p99",
    "phase", "dark_passed"
};


static ngx_http_canary_auto_t  *ngx_http_canary_auto;
static ngx_http_canary_auto_args_t  ngx_http_canary_auto_args;


char *
ngx_http_canary_auto_directive(ngx_conf_t *cf, ngx_http_canary_rollout_t *ro)
{
    char                       err[NGX_HTTP_CANARY_REASON_LEN];
    ngx_str_t                 *value;
    ngx_uint_t                 i;
    ngx_http_canary_policy_t  *p;

    if (ro->policy) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"auto\" is duplicate");
        return NGX_CONF_ERROR;
    }

    p = ngx_palloc(cf->pool, sizeof(ngx_http_canary_policy_t));
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_http_canary_policy_init(p);

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {
        if (ngx_http_canary_policy_parse(p, value[i].data, value[i].len,
                                         err, sizeof(err))
            != 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid \"auto\" parameter \"%V\" in "
                               "canary_rollout \"%V\": %s", &value[i],
                               &ro->name, err);
            return NGX_CONF_ERROR;
        }
    }

    if (ngx_http_canary_policy_finish(p, err, sizeof(err)) != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid \"auto\" in canary_rollout \"%V\": %s",
                           &ro->name, err);
        return NGX_CONF_ERROR;
    }

    ro->policy = p;

    return NGX_CONF_OK;
}


/* at the end of the http{} block: "auto" needs Redis */

ngx_int_t
ngx_http_canary_auto_check_conf(ngx_conf_t *cf,
    ngx_http_canary_main_conf_t *cmcf)
{
    ngx_uint_t                  i;
    ngx_http_canary_rollout_t  *ro;

    ro = cmcf->rollouts.elts;

    for (i = 0; i < cmcf->rollouts.nelts; i++) {
        if (ro[i].policy && cmcf->redis == NULL) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "\"auto\" in canary_rollout \"%V\" needs "
                          "\"canary_redis\" in %V:%ui", &ro[i].name,
                          &ro[i].file, ro[i].line);
            return NGX_ERROR;
        }

        if (ro[i].policy && ro[i].policy->shadow && !ro[i].shadowed) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "\"auto ... shadow=\" in canary_rollout \"%V\" "
                          "needs a location with \"canary %V\" and "
                          "\"canary_shadow\" in %V:%ui", &ro[i].name,
                          &ro[i].name, &ro[i].file, ro[i].line);
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_canary_auto_init_process(ngx_cycle_t *cycle)
{
    u_char                          *p;
    size_t                           len;
    ngx_uint_t                       i, n;
    ngx_msec_t                       shortest;
    ngx_listening_t                 *ls;
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

    ctl->ttl = ngx_max(ngx_min(3 * shortest, 30000), 3000);

    for (i = 0; i < NGX_HTTP_CANARY_HIST_BUCKETS - 1; i++) {
        ctl->bounds[i] = ngx_http_canary_hist_bounds[i];
    }

    /* the node's name: canary_node_id, or the host and first listen */

    if (cmcf->node_id.len) {
        ctl->node = cmcf->node_id;

    } else {
        ls = cycle->listening.elts;

        len = ngx_cycle->hostname.len + 1
              + (cycle->listening.nelts ? ls[0].addr_text.len : 0);

        ctl->node.data = ngx_pnalloc(cycle->pool, len);
        if (ctl->node.data == NULL) {
            return NGX_ERROR;
        }

        p = ngx_cpymem(ctl->node.data, ngx_cycle->hostname.data,
                       ngx_cycle->hostname.len);
        *p++ = '/';

        if (cycle->listening.nelts) {
            p = ngx_cpymem(p, ls[0].addr_text.data, ls[0].addr_text.len);
        }

        ctl->node.len = p - ctl->node.data;
    }

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

        if (ngx_http_canary_auto_key(cycle->pool, &ar->key,
                                     &cmcf->redis->prefix, &ro[i].name, "")
            != NGX_OK
            || ngx_http_canary_auto_key(cycle->pool, &ar->history,
                                        &cmcf->redis->prefix, &ro[i].name,
                                        ":history")
               != NGX_OK
            || ngx_http_canary_auto_key(cycle->pool, &ar->fig,
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

    ngx_http_canary_auto = NULL;
}


static void
ngx_http_canary_auto_tick(ngx_event_t *ev)
{
    ngx_http_canary_auto_t *ctl = ev->data;

    uint64_t                         now, start, interval, delay, next;
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
        interval = ar->policy->interval;
        start = now / interval * interval;

        if (ar->flushed < start) {
            ngx_http_canary_auto_flush(ctl, ar, start);
            ar->flushed = start;
        }

        /* the leader judges the last interval a grace period after it */

        if (ctl->leader && !ar->busy && start > interval
            && ar->asked < start - interval
            && now >= start + ngx_http_canary_auto_grace(ar->policy))
        {
            ar->asked = start - interval;
            ngx_http_canary_auto_poll(ctl, ar, start - interval);

        } else if (!ar->busy && now >= ar->next_poll) {
            ngx_http_canary_auto_poll(ctl, ar, 0);
        }

        /* wake up just after the next boundary */

        next = start + interval - now + 1;
        delay = ngx_min(delay, next);
    }

    ngx_add_timer(ev, (ngx_msec_t) delay);
}


static void
ngx_http_canary_auto_lease(ngx_http_canary_auto_t *ctl, uint64_t now)
{
    ngx_http_canary_auto_args_t  *a;

    a = &ngx_http_canary_auto_args;
    ngx_http_canary_auto_args_init(a);

    ngx_http_canary_auto_arg(a, "EVAL", 4);
    ngx_http_canary_auto_arg(a, ngx_http_canary_auto_lease_lua.data,
                             ngx_http_canary_auto_lease_lua.len);
    ngx_http_canary_auto_arg(a, "1", 1);
    ngx_http_canary_auto_arg(a, ctl->leader_key.data, ctl->leader_key.len);
    ngx_http_canary_auto_arg(a, ctl->node.data, ctl->node.len);
    ngx_http_canary_auto_argf(a, "%M", ctl->ttl);

    ctl->next_lease = now + ctl->ttl / 3;

    if (ngx_http_canary_auto_send(ctl, a, ngx_http_canary_auto_lease_handler,
                                  ctl)
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
    u_char                        key[NGX_MAX_ERROR_STR];
    size_t                        keylen;
    uint64_t                      cur[NGX_HTTP_CANARY_AUTO_ROWS + 1]
                                     [NGX_HTTP_CANARY_AUTO_NFIG];
    uint64_t                      base[NGX_HTTP_CANARY_AUTO_ROWS + 1]
                                      [NGX_HTTP_CANARY_AUTO_NFIG];
    uint64_t                      d, interval, last;
    ngx_uint_t                    i, v, k, rows;
    ngx_http_canary_auto_args_t  *a;
    ngx_http_canary_auto_base_t  *ab;

    static const char  *names[] = { "req", "err" };

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

    a = &ngx_http_canary_auto_args;

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

            ngx_http_canary_auto_args_init(a);
            ngx_http_canary_auto_arg(a, "HINCRBY", 7);
            ngx_http_canary_auto_arg(a, key, keylen);

            if (v == NGX_HTTP_CANARY_AUTO_SHADOW) {
                /* shadow traffic's: "d:req", "d:h3" */

                if (k < 2) {
                    ngx_http_canary_auto_argf(a, "d:%s", names[k]);

                } else {
                    ngx_http_canary_auto_argf(a, "d:h%ui", k - 2);
                }

            } else if (v >= 2) {
                /* an arm's own: "arm:<name>:req", "arm:<name>:h3" */

                if (k < 2) {
                    ngx_http_canary_auto_argf(a, "arm:%V:%s",
                                      &ar->ro->variants[v - 1].name,
                                      names[k]);

                } else {
                    ngx_http_canary_auto_argf(a, "arm:%V:h%ui",
                                      &ar->ro->variants[v - 1].name, k - 2);
                }

            } else if (k < 2) {
                ngx_http_canary_auto_argf(a, "%c:%s", v ? 'c' : 's',
                                          names[k]);

            } else {
                ngx_http_canary_auto_argf(a, "%c:h%ui", v ? 'c' : 's',
                                          k - 2);
            }

            ngx_http_canary_auto_argf(a, "%uL", d);

            (void) ngx_http_canary_auto_send(ctl, a,
                                             ngx_http_canary_auto_ignore,
                                             NULL);
        }
    }

    ngx_http_canary_auto_args_init(a);
    ngx_http_canary_auto_arg(a, "HINCRBY", 7);
    ngx_http_canary_auto_arg(a, key, keylen);
    ngx_http_canary_auto_arg(a, "nodes", 5);
    ngx_http_canary_auto_arg(a, "1", 1);
    (void) ngx_http_canary_auto_send(ctl, a, ngx_http_canary_auto_ignore,
                                     NULL);

    /* kept for ten intervals, and at least a minute */

    ngx_http_canary_auto_args_init(a);
    ngx_http_canary_auto_arg(a, "PEXPIRE", 7);
    ngx_http_canary_auto_arg(a, key, keylen);
    ngx_http_canary_auto_argf(a, "%uL",
                              ngx_max(10 * ar->policy->interval, 60000));
    (void) ngx_http_canary_auto_send(ctl, a, ngx_http_canary_auto_ignore,
                                     NULL);
}


/* reads the rollout hash, and the fleet's figures of "judge" if not 0 */

static void
ngx_http_canary_auto_poll(ngx_http_canary_auto_t *ctl,
    ngx_http_canary_auto_rollout_t *ar, uint64_t judge)
{
    ngx_uint_t                    i;
    ngx_http_canary_auto_args_t  *a;

    a = &ngx_http_canary_auto_args;
    ngx_http_canary_auto_args_init(a);

    ngx_http_canary_auto_arg(a, "EVAL", 4);
    ngx_http_canary_auto_arg(a, ngx_http_canary_auto_read_lua.data,
                             ngx_http_canary_auto_read_lua.len);
    ngx_http_canary_auto_arg(a, judge ? "2" : "1", 1);
    ngx_http_canary_auto_arg(a, ar->key.data, ar->key.len);

    if (judge) {
        ngx_http_canary_auto_argf(a, "%V%uL", &ar->fig, judge);
    }

    for (i = 0; i < ngx_http_canary_f_n; i++) {
        ngx_http_canary_auto_arg(a, ngx_http_canary_auto_fields[i],
                                 ngx_strlen(ngx_http_canary_auto_fields[i]));
    }

    ar->judging = judge;
    ar->next_poll = ngx_http_canary_auto_now()
                    + ngx_min(NGX_HTTP_CANARY_AUTO_POLL,
                              ar->policy->interval / 2);

    if (ngx_http_canary_auto_send(ctl, a, ngx_http_canary_auto_poll_handler,
                                  ar)
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

    if (state != NGX_HTTP_CANARY_STATE_PROGRESSING) {
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

    tmp.dark = ngx_http_canary_auto_dark(f);
    tmp.dark_passed = (ngx_uint_t) v[ngx_http_canary_f_dark_passed];
    tmp.updated = ngx_time();

    shpool = ar->ctl->cmcf->shpool;

    ngx_shmtx_lock(&shpool->mutex);
    *st = tmp;
    ngx_shmtx_unlock(&shpool->mutex);

    return NGX_OK;
}


static void
ngx_http_canary_auto_operator(ngx_http_canary_auto_rollout_t *ar,
    redisReply **f, uint32_t percent, ngx_uint_t state, uint64_t decided)
{
    ngx_http_canary_auto_t       *ctl;
    ngx_http_canary_auto_args_t  *a;

    ctl = ar->ctl;

    ngx_log_error(NGX_LOG_NOTICE, ctl->log, 0,
                  "canary auto: \"%V\" changed by an operator: state "
                  "\"%V\" -> \"%V\"", &ar->ro->name,
                  &ngx_http_canary_state_names[ar->seen_state],
                  &ngx_http_canary_state_names[state]);

    a = &ngx_http_canary_auto_args;
    ngx_http_canary_auto_args_init(a);

    ngx_http_canary_auto_arg(a, "EVAL", 4);
    ngx_http_canary_auto_arg(a, ngx_http_canary_auto_xadd_lua.data,
                             ngx_http_canary_auto_xadd_lua.len);
    ngx_http_canary_auto_arg(a, "2", 1);
    ngx_http_canary_auto_arg(a, ctl->leader_key.data, ctl->leader_key.len);
    ngx_http_canary_auto_arg(a, ar->history.data, ar->history.len);
    ngx_http_canary_auto_arg(a, ctl->node.data, ctl->node.len);

    ngx_http_canary_auto_arg(a, "time", 4);
    ngx_http_canary_auto_argf(a, "%uL", ngx_http_canary_auto_now());
    ngx_http_canary_auto_arg(a, "event", 5);
    ngx_http_canary_auto_arg(a, "operator", 8);
    ngx_http_canary_auto_arg(a, "node", 4);
    ngx_http_canary_auto_arg(a, ctl->node.data, ctl->node.len);
    ngx_http_canary_auto_arg(a, "old_percent", 11);
    ngx_http_canary_auto_arg_percent(a, ar->seen_percent);
    ngx_http_canary_auto_arg(a, "percent", 7);
    ngx_http_canary_auto_arg_percent(a, percent);
    ngx_http_canary_auto_arg(a, "old_state", 9);
    ngx_http_canary_auto_arg(a, ngx_http_canary_state_names[ar->seen_state]
                                .data,
                             ngx_http_canary_state_names[ar->seen_state].len);
    ngx_http_canary_auto_arg(a, "state", 5);
    ngx_http_canary_auto_arg(a, ngx_http_canary_state_names[state].data,
                             ngx_http_canary_state_names[state].len);
    ngx_http_canary_auto_arg(a, "step", 4);
    ngx_http_canary_auto_arg_reply(a, f[ngx_http_canary_f_step]);

    (void) ngx_http_canary_auto_send(ctl, a,
                                     ngx_http_canary_auto_xadd_handler, ar);
}


/*
 * Writes an outcome: the rollout hash's fields, a history entry and the
 * channels, in one script that first checks the lease and that the
 * fields the decision was made from are unchanged.
 */

static void
ngx_http_canary_auto_apply(ngx_http_canary_auto_rollout_t *ar,
    redisReply **f, ngx_http_canary_auto_outcome_t *o)
{
    u_char                        *p, *last;
    u_char                         alert[2048];
    ngx_str_t                      reason;
    ngx_uint_t                     i, changes;
    ngx_http_canary_auto_t        *ctl;
    ngx_http_canary_auto_args_t   *a, *set, *del, *x;

    static ngx_http_canary_auto_args_t  sets, dels, xadds;

    static const char  *figures[] = {
        "interval", "nodes", "c_requests", "c_errors", "c_error_rate",
        "c_p99", "s_requests", "s_errors", "s_error_rate", "s_p99"
    };

    ctl = ar->ctl;
    set = &sets;
    del = &dels;
    x = &xadds;

    ngx_http_canary_auto_args_init(set);
    ngx_http_canary_auto_args_init(del);
    ngx_http_canary_auto_args_init(x);

    reason.data = o->reason;
    reason.len = ngx_strlen(o->reason);

    changes = (o->percent != o->old_percent || o->state != o->old_state
               || o->step_changed);

    /* the rollout hash */

    if (changes) {
        ngx_http_canary_auto_arg(set, "percent", 7);
        ngx_http_canary_auto_arg_percent(set, o->percent);
        ngx_http_canary_auto_arg(set, "state", 5);
        ngx_http_canary_auto_arg(set, ngx_http_canary_state_names[o->state]
                                      .data,
                                 ngx_http_canary_state_names[o->state].len);
    }

    if (o->step) {
        ngx_http_canary_auto_arg(set, "step", 4);
        ngx_http_canary_auto_argf(set, "%uL", o->step);

    } else {
        ngx_http_canary_auto_arg(del, "step", 4);
    }

    if (o->since) {
        ngx_http_canary_auto_arg(set, "since", 5);
        ngx_http_canary_auto_argf(set, "%uL", o->since);
    }

    if (o->j) {
        ngx_http_canary_auto_arg(set, "checked", 7);
        ngx_http_canary_auto_argf(set, "%uL", o->interval);
        ngx_http_canary_auto_arg(set, "failures", 8);
        ngx_http_canary_auto_argf(set, "%uD", o->failures);
        ngx_http_canary_auto_arg(set, "interval", 8);
        ngx_http_canary_auto_argf(set, "%uL", o->interval);
        ngx_http_canary_auto_arg(set, "nodes", 5);
        ngx_http_canary_auto_argf(set, "%uL", o->nodes);
        ngx_http_canary_auto_arg_figures(set, o->j, 0);

    } else {
        ngx_http_canary_auto_arg(del, "checked", 7);
        ngx_http_canary_auto_arg(del, "failures", 8);

        for (i = 0; i < sizeof(figures) / sizeof(figures[0]); i++) {
            ngx_http_canary_auto_arg(del, figures[i],
                                     ngx_strlen(figures[i]));
        }
    }

    /* the dark phase's fields: kept up to date in it, removed after */

    if (o->dark_stay) {
        ngx_http_canary_auto_arg(set, "phase", 5);
        ngx_http_canary_auto_arg(set, "dark", 4);
        ngx_http_canary_auto_arg(set, "dark_passed", 11);
        ngx_http_canary_auto_argf(set, "%uD", o->dark_passed);
        ngx_http_canary_auto_arg(set, "shadow", 6);
        ngx_http_canary_auto_arg_percent(set, ar->policy->shadow);

    } else if (o->dark) {
        ngx_http_canary_auto_arg(del, "phase", 5);
        ngx_http_canary_auto_arg(del, "dark_passed", 11);
        ngx_http_canary_auto_arg(del, "shadow", 6);
    }

    ngx_http_canary_auto_arg(set, "decided_at", 10);
    ngx_http_canary_auto_argf(set, "%uL", o->now);
    ngx_http_canary_auto_arg(set, "decided_by", 10);
    ngx_http_canary_auto_arg(set, ctl->node.data, ctl->node.len);
    ngx_http_canary_auto_arg(set, "decision", 8);
    ngx_http_canary_auto_arg(set, o->event, ngx_strlen(o->event));
    ngx_http_canary_auto_arg(set, "reason", 6);
    ngx_http_canary_auto_arg(set, reason.data, reason.len);

    /* the history entry */

    ngx_http_canary_auto_arg(x, "time", 4);
    ngx_http_canary_auto_argf(x, "%uL", o->now);
    ngx_http_canary_auto_arg(x, "event", 5);
    ngx_http_canary_auto_arg(x, o->event, ngx_strlen(o->event));
    ngx_http_canary_auto_arg(x, "node", 4);
    ngx_http_canary_auto_arg(x, ctl->node.data, ctl->node.len);
    ngx_http_canary_auto_arg(x, "phase", 5);
    ngx_http_canary_auto_arg(x, o->dark ? "dark" : "live", 4);
    ngx_http_canary_auto_arg(x, "old_percent", 11);
    ngx_http_canary_auto_arg_percent(x, o->old_percent);
    ngx_http_canary_auto_arg(x, "percent", 7);
    ngx_http_canary_auto_arg_percent(x, o->percent);
    ngx_http_canary_auto_arg(x, "old_state", 9);
    ngx_http_canary_auto_arg(x, ngx_http_canary_state_names[o->old_state]
                                .data,
                             ngx_http_canary_state_names[o->old_state].len);
    ngx_http_canary_auto_arg(x, "state", 5);
    ngx_http_canary_auto_arg(x, ngx_http_canary_state_names[o->state].data,
                             ngx_http_canary_state_names[o->state].len);
    ngx_http_canary_auto_arg(x, "old_step", 8);
    ngx_http_canary_auto_arg_reply(x, f[ngx_http_canary_f_step]);
    ngx_http_canary_auto_arg(x, "step", 4);

    if (o->step) {
        ngx_http_canary_auto_argf(x, "%uL", o->step);

    } else {
        ngx_http_canary_auto_arg(x, "", 0);
    }

    if (o->j) {
        ngx_http_canary_auto_arg(x, "interval", 8);
        ngx_http_canary_auto_argf(x, "%uL", o->interval);
        ngx_http_canary_auto_arg(x, "nodes", 5);
        ngx_http_canary_auto_argf(x, "%uL", o->nodes);
        ngx_http_canary_auto_arg(x, "failures", 8);
        ngx_http_canary_auto_argf(x, "%uD", o->failures);
        ngx_http_canary_auto_arg_figures(x, o->j, 1);
    }

    ngx_http_canary_auto_arg(x, "reason", 6);
    ngx_http_canary_auto_arg(x, reason.data, reason.len);

    /* the alert: one JSON object */

    p = alert;
    last = alert + sizeof(alert);

    if (o->alert) {
        p = ngx_slprintf(p, last, "{\"rollout\":\"");
        p = (u_char *) ngx_escape_json(p, ar->ro->name.data,
                                       ngx_min(ar->ro->name.len, 256));
        p = ngx_slprintf(p, last, "\",\"event\":\"%s\",\"phase\":\"%s\","
                         "\"time\":%uL,\"node\":\"", o->event,
                         o->dark ? "dark" : "live", o->now);
        p = (u_char *) ngx_escape_json(p, ctl->node.data,
                                       ngx_min(ctl->node.len, 256));
        p = ngx_slprintf(p, last, "\",\"state\":\"%V\",\"step\":%uL,"
                         "\"percent\":", &ngx_http_canary_state_names[o->state],
                         o->step);
        p = ngx_slprintf(p, last, "%uD.%02uD,\"old_percent\":%uD.%02uD,"
                         "\"failures\":%uD,\"interval\":%uL,\"nodes\":%uL,",
                         o->percent / 100, o->percent % 100,
                         o->old_percent / 100, o->old_percent % 100,
                         o->failures, o->interval, o->nodes);

        for (i = 0; i < 2; i++) {
            p = ngx_slprintf(p, last, "\"%s\":{\"requests\":%uL,"
                             "\"errors\":%uL,\"error_rate_ppm\":%uL,"
                             "\"p99_ms\":",
                             i ? (o->dark ? "shadow" : "canary") : "stable",
                             o->j->requests[i], o->j->errors[i],
                             o->j->error_rate[i]);

            if (o->j->p99[i] == NGX_HTTP_CANARY_P99_INF) {
                p = ngx_slprintf(p, last, "null},");

            } else {
                p = ngx_slprintf(p, last, "%uL},", o->j->p99[i]);
            }
        }

        p = ngx_slprintf(p, last, "\"reason\":\"");
        p = (u_char *) ngx_escape_json(p, reason.data,
                                       ngx_min(reason.len, 512));
        p = ngx_slprintf(p, last, "\"}");
    }

    /* the script's arguments */

    a = &ngx_http_canary_auto_args;
    ngx_http_canary_auto_args_init(a);

    ngx_http_canary_auto_arg(a, "EVAL", 4);
    ngx_http_canary_auto_arg(a, ngx_http_canary_auto_apply_lua.data,
                             ngx_http_canary_auto_apply_lua.len);
    ngx_http_canary_auto_arg(a, "3", 1);
    ngx_http_canary_auto_arg(a, ctl->leader_key.data, ctl->leader_key.len);
    ngx_http_canary_auto_arg(a, ar->key.data, ar->key.len);
    ngx_http_canary_auto_arg(a, ar->history.data, ar->history.len);

    ngx_http_canary_auto_arg(a, ctl->node.data, ctl->node.len);
    ngx_http_canary_auto_arg_reply(a, f[ngx_http_canary_f_checked]);
    ngx_http_canary_auto_arg_reply(a, f[ngx_http_canary_f_state]);
    ngx_http_canary_auto_arg_reply(a, f[ngx_http_canary_f_step]);
    ngx_http_canary_auto_arg(a, ctl->changed.data, ctl->changed.len);
    ngx_http_canary_auto_arg(a, ar->ro->name.data, ar->ro->name.len);
    ngx_http_canary_auto_arg(a, ctl->alerts.data, ctl->alerts.len);
    ngx_http_canary_auto_arg(a, alert, p - alert);
    ngx_http_canary_auto_argf(a, "%d", set->n);
    ngx_http_canary_auto_argf(a, "%d", del->n);

    for (i = 0; i < (ngx_uint_t) set->n; i++) {
        ngx_http_canary_auto_arg(a, set->argv[i], set->len[i]);
    }

    for (i = 0; i < (ngx_uint_t) del->n; i++) {
        ngx_http_canary_auto_arg(a, del->argv[i], del->len[i]);
    }

    for (i = 0; i < (ngx_uint_t) x->n; i++) {
        ngx_http_canary_auto_arg(a, x->argv[i], x->len[i]);
    }

    if (a->n >= NGX_HTTP_CANARY_AUTO_MAX_ARGS) {
        ngx_log_error(NGX_LOG_ALERT, ctl->log, 0,
                      "canary auto: too many arguments for \"%V\"",
                      &ar->ro->name);
        return;
    }

    ar->out = *o;
    ar->out.j = NULL;
    ngx_cpystrn(ar->reason, reason.data,
                ngx_min(reason.len + 1, sizeof(ar->reason)));

    if (ngx_http_canary_auto_send(ctl, a, ngx_http_canary_auto_apply_handler,
                                  ar)
        == NGX_OK)
    {
        ar->applying = 1;
    }
}


static void
ngx_http_canary_auto_start(ngx_http_canary_auto_rollout_t *ar,
    redisReply **f, uint32_t percent, uint64_t now)
{
    u_char                          reason[NGX_HTTP_CANARY_REASON_LEN];
    uint64_t                        interval;
    ngx_http_canary_auto_outcome_t  o;

    interval = ar->policy->interval;

    ngx_memzero(&o, sizeof(ngx_http_canary_auto_outcome_t));

    o.event = "start";
    o.now = now;
    o.old_percent = percent;
    o.percent = ar->policy->steps[0];
    o.old_state = NGX_HTTP_CANARY_STATE_PROGRESSING;
    o.state = NGX_HTTP_CANARY_STATE_PROGRESSING;
    o.step = 1;
    o.step_changed = 1;

    /* the first interval judged is the first whole one at this step */

    o.since = (now / interval + 1) * interval;

    if (ar->policy->shadow) {

        /* the dark phase first: nobody exposed, the next in line shadowed */

        o.percent = 0;
        o.step = 0;
        o.dark = 1;
        o.dark_stay = 1;
        o.dark_passed = 0;

        ngx_snprintf(reason, sizeof(reason) - 1,
                     "state progressing without a step: dark phase, "
                     "shadow %uD.%02uD%% for %uD intervals, then step 1 of "
                     "%uD%Z", ar->policy->shadow / 100,
                     ar->policy->shadow % 100, ar->policy->shadow_intervals,
                     ar->policy->nsteps);
        reason[sizeof(reason) - 1] = '\0';
        o.reason = reason;

        ngx_http_canary_auto_apply(ar, f, &o);
        return;
    }

    ngx_snprintf(reason, sizeof(reason) - 1,
                 "state progressing without a step: step 1 of %uD%Z",
                 ar->policy->nsteps);
    reason[sizeof(reason) - 1] = '\0';
    o.reason = reason;

    ngx_http_canary_auto_apply(ar, f, &o);
}


static void
ngx_http_canary_auto_decide(ngx_http_canary_auto_rollout_t *ar,
    redisReply **f, redisReply *fig, uint32_t percent, uint64_t interval,
    uint64_t now)
{
    u_char                           reason[NGX_HTTP_CANARY_REASON_LEN];
    u_char                          *p;
    u_char                           held[NGX_HTTP_CANARY_REASON_LEN];
    uint64_t                         step, failures, nodes;
    ngx_http_canary_figures_t        figs[NGX_HTTP_CANARY_AUTO_ROWS + 1];
    ngx_http_canary_judgement_t      j;
    ngx_http_canary_auto_outcome_t   o;
    ngx_http_canary_decision_next_t  next;

    nodes = ngx_http_canary_auto_figures(ar, fig, figs);

    /* with arms: each is judged, a failing one switched off */

    held[0] = '\0';

    if (ar->ro->narms > 1) {
        (void) ngx_http_canary_auto_arms(ar, figs,
                                         &figs[NGX_HTTP_CANARY_CANARY],
                                         interval, nodes, now, held);
    }

    ngx_http_canary_judge(ar->policy, &figs[NGX_HTTP_CANARY_STABLE],
                          &figs[NGX_HTTP_CANARY_CANARY], ar->ctl->bounds,
                          NGX_HTTP_CANARY_HIST_BUCKETS - 1, &j);

    /*
     * an arm left on that cannot be judged yet (too few requests) holds
     * the step: its failure must not be blamed on the others
     */

    if (held[0] && j.verdict != NGX_HTTP_CANARY_VERDICT_PASS) {
        j.verdict = NGX_HTTP_CANARY_VERDICT_HOLD;
        ngx_cpystrn((u_char *) j.reason, held, sizeof(j.reason));
    }

    (void) ngx_http_canary_auto_uint(f[ngx_http_canary_f_step], &step);

    if (ngx_http_canary_auto_uint(f[ngx_http_canary_f_failures], &failures)
        != NGX_OK || failures > 1000)
    {
        failures = 0;
    }

    ngx_http_canary_policy_next(ar->policy, (uint32_t) step - 1,
                                (uint32_t) failures, j.verdict, &next);

    ngx_memzero(&o, sizeof(ngx_http_canary_auto_outcome_t));

    o.now = now;
    o.interval = interval;
    o.nodes = nodes;
    o.j = &j;
    o.failures = next.failures;
    o.old_percent = percent;
    o.percent = percent;
    o.old_state = NGX_HTTP_CANARY_STATE_PROGRESSING;
    o.state = NGX_HTTP_CANARY_STATE_PROGRESSING;
    o.step = step;

    p = ngx_snprintf(reason, sizeof(reason) - 1, "%s", j.reason);

    switch (next.action) {

    case NGX_HTTP_CANARY_ACTION_ADVANCE:
        o.event = "advance";
        o.percent = next.percent;
        o.step = next.step + 1;
        o.step_changed = 1;
        o.since = interval + ar->policy->interval;
        p = ngx_snprintf(reason, sizeof(reason) - 1,
                         "passed: %s; step %uL of %uD", j.reason, o.step,
                         ar->policy->nsteps);
        break;

    case NGX_HTTP_CANARY_ACTION_PROMOTE:
        o.event = "promote";
        o.percent = next.percent;
        o.state = NGX_HTTP_CANARY_STATE_PROMOTED;
        o.step = next.step + 1;
        o.step_changed = 1;
        p = ngx_snprintf(reason, sizeof(reason) - 1,
                         "passed: %s; the last step", j.reason);
        break;

    case NGX_HTTP_CANARY_ACTION_FAIL_HOLD:
        o.event = "failed_check";
        o.alert = 1;
        p = ngx_snprintf(reason, sizeof(reason) - 1,
                         "failed check %uD of %uD: %s", next.failures,
                         ar->policy->failures, j.reason);
        break;

    case NGX_HTTP_CANARY_ACTION_ROLLBACK:
        o.event = "rollback";
        o.percent = 0;
        o.state = NGX_HTTP_CANARY_STATE_ROLLED_BACK;
        o.step = 0;
        o.step_changed = 1;
        o.alert = 1;
        break;

    default:
        o.event = "hold";
        break;
    }

    *p = '\0';
    o.reason = reason;

    ngx_http_canary_auto_apply(ar, f, &o);
}


/*
 * Judges each arm that is on against stable.  "canary" becomes the sum of
 * the arms that are on (the traffic an arm had before it was switched off
 * is not the rollout's any more); when some but not all of them fail, the
 * failing ones are switched off and left out of it too; when all fail,
 * the rollout is judged (and fails) as a whole.  Returns the number of
 * arms switched off.  "held" gets the reason of the first arm left on
 * that cannot be judged yet, if any.
 */

static ngx_uint_t
ngx_http_canary_auto_arms(ngx_http_canary_auto_rollout_t *ar,
    ngx_http_canary_figures_t *figs, ngx_http_canary_figures_t *canary,
    uint64_t interval, uint64_t nodes, uint64_t now, u_char *held)
{
    u_char                       *p;
    uint32_t                      off, failing;
    ngx_uint_t                    a, k, narms, on, n;
    ngx_http_canary_judgement_t   j[NGX_HTTP_CANARY_MAX_ARMS];

    narms = ar->ro->narms;
    off = ar->ro->sh->snapshot->arms_off;
    failing = 0;
    on = 0;

    for (a = 0; a < narms; a++) {
        if (off & (1 << a)) {
            continue;
        }

        on++;

        ngx_http_canary_judge(ar->policy, &figs[NGX_HTTP_CANARY_STABLE],
                              &figs[2 + a], ar->ctl->bounds,
                              NGX_HTTP_CANARY_HIST_BUCKETS - 1, &j[a]);

        if (j[a].verdict == NGX_HTTP_CANARY_VERDICT_FAIL) {
            failing |= 1 << a;
        }
    }

    if (on == 0) {
        return 0;
    }

    n = 0;

    for (a = 0; a < narms; a++) {
        if (failing & (1 << a)) {
            n++;
        }
    }

    if (n == on) {
        /* none would be left: the rollout fails as a whole */
        n = 0;
        failing = 0;
    }

    ngx_memzero(canary, sizeof(ngx_http_canary_figures_t));

    for (a = 0; a < narms; a++) {
        if (failing & (1 << a)) {
            ngx_http_canary_auto_arm_off(ar, a + 1, &j[a], interval, nodes,
                                         now);
            continue;
        }

        if (off & (1 << a)) {
            continue;
        }

        if (held[0] == '\0'
            && j[a].verdict == NGX_HTTP_CANARY_VERDICT_HOLD)
        {
            p = ngx_snprintf(held, NGX_HTTP_CANARY_REASON_LEN - 1,
                             "arm \"%V\": %s", &ar->ro->variants[a + 1].name,
                             j[a].reason);
            *p = '\0';
        }

        canary->requests += figs[2 + a].requests;
        canary->errors += figs[2 + a].errors;

        for (k = 0; k < NGX_HTTP_CANARY_HIST_BUCKETS; k++) {
            canary->hist[k] += figs[2 + a].hist[k];
        }
    }

    return n;
}


/*
 * The fleet's figures of an interval: "s:", "c:", "arm:<name>:" and "d:"
 * (shadow) fields into figs[] (stable, canary, each arm's own row when
 * there are several, shadow's last row NGX_HTTP_CANARY_AUTO_SHADOW);
 * returns the number of nodes.
 */

static uint64_t
ngx_http_canary_auto_figures(ngx_http_canary_auto_rollout_t *ar,
    redisReply *fig, ngx_http_canary_figures_t *figs)
{
    u_char      *colon;
    uint64_t     v, nodes;
    ngx_str_t    name;
    ngx_int_t    arm;
    ngx_uint_t   i, k, var;
    redisReply  *fr, *vr;

    ngx_memzero(figs, (NGX_HTTP_CANARY_AUTO_ROWS + 1)
                      * sizeof(ngx_http_canary_figures_t));
    nodes = 0;

    for (i = 0; i + 1 < fig->elements; i += 2) {
        fr = fig->element[i];
        vr = fig->element[i + 1];

        if (fr->type != REDIS_REPLY_STRING
            || ngx_http_canary_auto_uint(vr, &v) != NGX_OK)
        {
            continue;
        }

        name.data = (u_char *) fr->str;
        name.len = fr->len;

        if (name.len == 5 && ngx_strncmp(name.data, "nodes", 5) == 0) {
            nodes = v;
            continue;
        }

        if (name.len > 4 && ngx_strncmp(name.data, "arm:", 4) == 0) {

            /* "arm:<name>:<figure>", the name may hold ':' */

            colon = name.data + name.len;

            while (colon > name.data + 4 && colon[-1] != ':') {
                colon--;
            }

            if (colon <= name.data + 5) {
                continue;
            }

            arm = ngx_http_canary_find_arm(ar->ro, name.data + 4,
                                           colon - 1 - (name.data + 4));
            if (arm == NGX_ERROR || ar->ro->narms == 1) {
                continue;
            }

            var = 1 + arm;
            name.len -= colon - name.data;
            name.data = colon;

        } else if (name.len < 3 || name.data[1] != ':') {
            continue;

        } else {
            switch (name.data[0]) {

            case 's':
                var = NGX_HTTP_CANARY_STABLE;
                break;

            case 'c':
                var = NGX_HTTP_CANARY_CANARY;
                break;

            case 'd':
                var = NGX_HTTP_CANARY_AUTO_SHADOW;
                break;

            default:
                continue;
            }

            name.data += 2;
            name.len -= 2;
        }

        if (name.len == 3 && ngx_strncmp(name.data, "req", 3) == 0) {
            figs[var].requests = v;

        } else if (name.len == 3 && ngx_strncmp(name.data, "err", 3) == 0) {
            figs[var].errors = v;

        } else if (name.len >= 2 && name.len <= 3 && name.data[0] == 'h') {
            k = ngx_atoi(name.data + 1, name.len - 1);

            if (k < NGX_HTTP_CANARY_HIST_BUCKETS) {
                figs[var].hist[k] = v;
            }
        }
    }

    return nodes;
}


/* the rollout hash says "phase dark" */

static ngx_uint_t
ngx_http_canary_auto_dark(redisReply **f)
{
    redisReply  *r;

    r = f[ngx_http_canary_f_phase];

    return r->type == REDIS_REPLY_STRING && r->len == 4
           && ngx_strncmp(r->str, "dark", 4) == 0;
}


/*
 * "arm:<name>" off in the rollout hash, if this node still holds the
 * lease, with a history entry "arm_off" and an alert naming the arm
 */

static void
ngx_http_canary_auto_arm_off(ngx_http_canary_auto_rollout_t *ar,
    ngx_uint_t arm, ngx_http_canary_judgement_t *j, uint64_t interval,
    uint64_t nodes, uint64_t now)
{
    u_char                       *p, *last;
    u_char                        alert[1024];
    u_char                        reason[NGX_HTTP_CANARY_REASON_LEN];
    ngx_str_t                    *name;
    ngx_uint_t                    i;
    ngx_http_canary_auto_t       *ctl;
    ngx_http_canary_auto_args_t  *a;

    ctl = ar->ctl;
    name = &ar->ro->variants[arm].name;

    p = ngx_snprintf(reason, sizeof(reason) - 1, "arm \"%V\" failed: %s",
                     name, j->reason);
    *p = '\0';

    p = alert;
    last = alert + sizeof(alert);

    p = ngx_slprintf(p, last, "{\"rollout\":\"");
    p = (u_char *) ngx_escape_json(p, ar->ro->name.data,
                                   ngx_min(ar->ro->name.len, 128));
    p = ngx_slprintf(p, last, "\",\"event\":\"arm_off\",\"arm\":\"");
    p = (u_char *) ngx_escape_json(p, name->data, ngx_min(name->len, 128));
    p = ngx_slprintf(p, last, "\",\"time\":%uL,\"node\":\"", now);
    p = (u_char *) ngx_escape_json(p, ctl->node.data,
                                   ngx_min(ctl->node.len, 128));
    p = ngx_slprintf(p, last, "\",\"interval\":%uL,\"nodes\":%uL,",
                     interval, nodes);

    for (i = 0; i < 2; i++) {
        p = ngx_slprintf(p, last, "\"%s\":{\"requests\":%uL,"
                         "\"errors\":%uL,\"error_rate_ppm\":%uL,"
                         "\"p99_ms\":", i ? "canary" : "stable",
                         j->requests[i], j->errors[i], j->error_rate[i]);

        p = (j->p99[i] == NGX_HTTP_CANARY_P99_INF)
            ? ngx_slprintf(p, last, "null},")
            : ngx_slprintf(p, last, "%uL},", j->p99[i]);
    }

    p = ngx_slprintf(p, last, "\"reason\":\"");
    p = (u_char *) ngx_escape_json(p, reason,
                                   ngx_min(ngx_strlen(reason), 300));
    p = ngx_slprintf(p, last, "\"}");

    a = &ngx_http_canary_auto_args;
    ngx_http_canary_auto_args_init(a);

    ngx_http_canary_auto_arg(a, "EVAL", 4);
    ngx_http_canary_auto_arg(a, ngx_http_canary_auto_arm_off_lua.data,
                             ngx_http_canary_auto_arm_off_lua.len);
    ngx_http_canary_auto_arg(a, "3", 1);
    ngx_http_canary_auto_arg(a, ctl->leader_key.data, ctl->leader_key.len);
    ngx_http_canary_auto_arg(a, ar->key.data, ar->key.len);
    ngx_http_canary_auto_arg(a, ar->history.data, ar->history.len);

    ngx_http_canary_auto_arg(a, ctl->node.data, ctl->node.len);
    ngx_http_canary_auto_argf(a, "arm:%V", name);
    ngx_http_canary_auto_arg(a, ctl->changed.data, ctl->changed.len);
    ngx_http_canary_auto_arg(a, ar->ro->name.data, ar->ro->name.len);
    ngx_http_canary_auto_arg(a, ctl->alerts.data, ctl->alerts.len);
    ngx_http_canary_auto_arg(a, alert, p - alert);

    ngx_http_canary_auto_arg(a, "time", 4);
    ngx_http_canary_auto_argf(a, "%uL", now);
    ngx_http_canary_auto_arg(a, "event", 5);
    ngx_http_canary_auto_arg(a, "arm_off", 7);
    ngx_http_canary_auto_arg(a, "node", 4);
    ngx_http_canary_auto_arg(a, ctl->node.data, ctl->node.len);
    ngx_http_canary_auto_arg(a, "arm", 3);
    ngx_http_canary_auto_arg(a, name->data, name->len);
    ngx_http_canary_auto_arg(a, "interval", 8);
    ngx_http_canary_auto_argf(a, "%uL", interval);
    ngx_http_canary_auto_arg(a, "nodes", 5);
    ngx_http_canary_auto_argf(a, "%uL", nodes);
    ngx_http_canary_auto_arg_figures(a, j, 1);
    ngx_http_canary_auto_arg(a, "reason", 6);
    ngx_http_canary_auto_arg(a, reason, ngx_strlen(reason));

    ngx_log_error(NGX_LOG_ERR, ctl->log, 0,
                  "canary auto: \"%V\" switching arm \"%V\" off: %s",
                  &ar->ro->name, name, reason);

    (void) ngx_http_canary_auto_send(ctl, a, ngx_http_canary_auto_ignore,
                                     NULL);
}


/*
 * An interval of the dark phase: the shadow's figures judged against
 * stable's, by the same thresholds.  Passed shadow_intervals times: step
 * 1.  Failed as many times as "failures" says: rolled_back, percent 0.
 */

static void
ngx_http_canary_auto_decide_dark(ngx_http_canary_auto_rollout_t *ar,
    redisReply **f, redisReply *fig, uint32_t percent, uint64_t interval,
    uint64_t now)
{
    u_char                          reason[NGX_HTTP_CANARY_REASON_LEN];
    u_char                         *p;
    uint64_t                        failures, passed, nodes;
    ngx_http_canary_policy_t       *pol;
    ngx_http_canary_figures_t       figs[NGX_HTTP_CANARY_AUTO_ROWS + 1];
    ngx_http_canary_judgement_t     j;
    ngx_http_canary_auto_outcome_t  o;

    pol = ar->policy;

    nodes = ngx_http_canary_auto_figures(ar, fig, figs);

    ngx_http_canary_judge(pol, &figs[NGX_HTTP_CANARY_STABLE],
                          &figs[NGX_HTTP_CANARY_AUTO_SHADOW], ar->ctl->bounds,
                          NGX_HTTP_CANARY_HIST_BUCKETS - 1, &j);

    if (ngx_http_canary_auto_uint(f[ngx_http_canary_f_failures], &failures)
        != NGX_OK || failures > 1000)
    {
        failures = 0;
    }

    if (ngx_http_canary_auto_uint(f[ngx_http_canary_f_dark_passed], &passed)
        != NGX_OK || passed > pol->shadow_intervals)
    {
        passed = 0;
    }

    ngx_memzero(&o, sizeof(ngx_http_canary_auto_outcome_t));

    o.now = now;
    o.interval = interval;
    o.nodes = nodes;
    o.j = &j;
    o.failures = (uint32_t) failures;
    o.old_percent = percent;
    o.percent = 0;
    o.old_state = NGX_HTTP_CANARY_STATE_PROGRESSING;
    o.state = NGX_HTTP_CANARY_STATE_PROGRESSING;
    o.dark = 1;
    o.dark_stay = 1;
    o.dark_passed = (uint32_t) passed;
    o.event = "hold";

    p = ngx_snprintf(reason, sizeof(reason) - 1, "dark phase, shadow: %s",
                     j.reason);

    switch (j.verdict) {

    case NGX_HTTP_CANARY_VERDICT_PASS:
        o.failures = 0;
        o.dark_passed = (uint32_t) passed + 1;

        if (o.dark_passed < pol->shadow_intervals) {
            o.event = "dark_passed";
            p = ngx_snprintf(reason, sizeof(reason) - 1,
                             "dark phase passed %uD of %uD: shadow %s",
                             o.dark_passed, pol->shadow_intervals, j.reason);
            break;
        }

        o.event = "advance";
        o.dark_stay = 0;
        o.percent = pol->steps[0];
        o.step = 1;
        o.step_changed = 1;
        o.since = interval + pol->interval;
        p = ngx_snprintf(reason, sizeof(reason) - 1,
                         "dark phase passed %uD of %uD: shadow %s; step 1 "
                         "of %uD", o.dark_passed, pol->shadow_intervals,
                         j.reason, pol->nsteps);
        break;

    case NGX_HTTP_CANARY_VERDICT_FAIL:
        o.failures = (uint32_t) failures + 1;
        o.alert = 1;

        if (o.failures < pol->failures) {
            o.event = "failed_check";
            p = ngx_snprintf(reason, sizeof(reason) - 1,
                             "dark phase, failed check %uD of %uD: shadow "
                             "%s", o.failures, pol->failures, j.reason);
            break;
        }

        o.event = "rollback";
        o.dark_stay = 0;
        o.state = NGX_HTTP_CANARY_STATE_ROLLED_BACK;
        o.step_changed = 1;
        p = ngx_snprintf(reason, sizeof(reason) - 1,
                         "dark phase failed, nobody was exposed: shadow %s",
                         j.reason);
        break;

    default:
        break;
    }

    *p = '\0';
    o.reason = reason;

    ngx_http_canary_auto_apply(ar, f, &o);
}


static void
ngx_http_canary_auto_apply_handler(ngx_http_canary_redis_t *rc,
    redisReply *reply, void *data)
{
    ngx_http_canary_auto_rollout_t *ar = data;

    ngx_uint_t                       level;
    ngx_http_canary_auto_t          *ctl;
    ngx_http_canary_auto_outcome_t  *o;

    ctl = ar->ctl;
    o = &ar->out;
    ar->applying = 0;

    if (reply == NULL) {
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, ctl->log, 0,
                      "canary auto: writing the decision on \"%V\": %*s",
                      &ar->key, (size_t) reply->len, reply->str);
        return;
    }

    if (reply->type != REDIS_REPLY_INTEGER || reply->integer != 1) {
        ngx_log_error(NGX_LOG_INFO, ctl->log, 0,
                      "canary auto: decision \"%s\" on \"%V\" not written: "
                      "%s", o->event, &ar->ro->name,
                      (reply->type == REDIS_REPLY_INTEGER
                       && reply->integer == 0)
                      ? "the lease is another node's"
                      : "the rollout changed meanwhile");
        return;
    }

    /* what this node wrote is not an operator's change */

    ar->seen = 1;
    ar->seen_percent = o->percent;
    ar->seen_state = o->state;
    ar->seen_decided = o->now;

    level = NGX_LOG_NOTICE;

    if (ngx_strcmp(o->event, "rollback") == 0) {
        level = NGX_LOG_ERR;

    } else if (ngx_strcmp(o->event, "failed_check") == 0) {
        level = NGX_LOG_WARN;

    } else if (ngx_strcmp(o->event, "hold") == 0) {
        level = NGX_LOG_INFO;
    }

    ngx_log_error(level, ctl->log, 0,
                  "canary auto: \"%V\" %s: percent %uD.%02uD -> %uD.%02uD, "
                  "state \"%V\", step %uL of %uD: %s", &ar->ro->name,
                  o->event, o->old_percent / 100, o->old_percent % 100,
                  o->percent / 100, o->percent % 100,
                  &ngx_http_canary_state_names[o->state], o->step,
                  ar->policy->nsteps, ar->reason);
}


static void
ngx_http_canary_auto_xadd_handler(ngx_http_canary_redis_t *rc,
    redisReply *reply, void *data)
{
    ngx_http_canary_auto_rollout_t *ar = data;

    if (reply && reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, ar->ctl->log, 0,
                      "canary auto: history of \"%V\": %*s", &ar->key,
                      (size_t) reply->len, reply->str);
    }
}


static void
ngx_http_canary_auto_ignore(ngx_http_canary_redis_t *rc, redisReply *reply,
    void *data)
{
    if (reply && reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "canary auto: %*s", (size_t) reply->len, reply->str);
    }
}


static void
ngx_http_canary_auto_args_init(ngx_http_canary_auto_args_t *a)
{
    a->n = 0;
    a->pos = a->buf;
}


static void
ngx_http_canary_auto_arg(ngx_http_canary_auto_args_t *a, const void *data,
    size_t len)
{
    if (a->n >= NGX_HTTP_CANARY_AUTO_MAX_ARGS) {
        a->n = NGX_HTTP_CANARY_AUTO_MAX_ARGS;
        return;
    }

    a->argv[a->n] = data;
    a->len[a->n] = len;
    a->n++;
}


static void
ngx_http_canary_auto_argf(ngx_http_canary_auto_args_t *a, const char *fmt,
    ...)
{
    u_char   *p;
    va_list   args;

    va_start(args, fmt);
    p = ngx_vslprintf(a->pos, a->buf + sizeof(a->buf), fmt, args);
    va_end(args);

    ngx_http_canary_auto_arg(a, a->pos, p - a->pos);
    a->pos = p;
}


/* a field's value as read, "" when missing */

static void
ngx_http_canary_auto_arg_reply(ngx_http_canary_auto_args_t *a, redisReply *r)
{
    if (r->type == REDIS_REPLY_STRING) {
        ngx_http_canary_auto_argf(a, "%*s", (size_t) r->len, r->str);

    } else {
        ngx_http_canary_auto_arg(a, "", 0);
    }
}


static void
ngx_http_canary_auto_arg_percent(ngx_http_canary_auto_args_t *a,
    uint32_t hundredths)
{
    char  buf[32];

    if (hundredths == NGX_MAX_UINT32_VALUE) {
        ngx_http_canary_auto_arg(a, "", 0);
        return;
    }

    ngx_http_canary_format_percent(buf, sizeof(buf), hundredths);
    ngx_http_canary_auto_argf(a, "%s", buf);
}


/* c_requests ... s_p99 in the hash; canary_requests ... in the history */

static void
ngx_http_canary_auto_arg_figures(ngx_http_canary_auto_args_t *a,
    ngx_http_canary_judgement_t *j, ngx_uint_t history)
{
    char         buf[32];
    ngx_uint_t   v;
    const char  *name;

    for (v = 2; v-- > 0; /* void */) {
        name = history ? (v ? "canary" : "stable") : (v ? "c" : "s");

        ngx_http_canary_auto_argf(a, "%s_requests", name);
        ngx_http_canary_auto_argf(a, "%uL", j->requests[v]);
        ngx_http_canary_auto_argf(a, "%s_errors", name);
        ngx_http_canary_auto_argf(a, "%uL", j->errors[v]);
        ngx_http_canary_auto_argf(a, "%s_error_rate", name);

        if (history) {
            ngx_http_canary_format_rate(buf, sizeof(buf), j->error_rate[v]);
            ngx_http_canary_auto_argf(a, "%s", buf);

        } else {
            ngx_http_canary_auto_argf(a, "%uL", j->error_rate[v]);
        }

        ngx_http_canary_auto_argf(a, history ? "%s_p99_ms" : "%s_p99",
                                  name);

        if (j->p99[v] == NGX_HTTP_CANARY_P99_INF) {
            ngx_http_canary_auto_arg(a, "inf", 3);

        } else {
            ngx_http_canary_auto_argf(a, "%uL", j->p99[v]);
        }
    }
}


static ngx_int_t
ngx_http_canary_auto_send(ngx_http_canary_auto_t *ctl,
    ngx_http_canary_auto_args_t *a, ngx_http_canary_redis_handler_pt handler,
    void *data)
{
    if (a->n >= NGX_HTTP_CANARY_AUTO_MAX_ARGS
        || a->pos >= a->buf + sizeof(a->buf))
    {
        ngx_log_error(NGX_LOG_ALERT, ctl->log, 0,
                      "canary auto: a command too large to send");
        return NGX_ERROR;
    }

    return ngx_http_canary_redis_send(ctl->rc, a->n, a->argv, a->len,
                                      handler, data);
}


/* a whole unsigned number, strictly; NGX_DECLINED when missing or bad */

static ngx_int_t
ngx_http_canary_auto_uint(redisReply *r, uint64_t *value)
{
    size_t    i;
    uint64_t  v;

    if (r == NULL) {
        return NGX_DECLINED;
    }

    if (r->type == REDIS_REPLY_INTEGER) {
        if (r->integer < 0) {
            return NGX_DECLINED;
        }

        *value = (uint64_t) r->integer;
        return NGX_OK;
    }

    if (r->type != REDIS_REPLY_STRING || r->len == 0 || r->len > 19) {
        return NGX_DECLINED;
    }

    v = 0;

    for (i = 0; i < r->len; i++) {
        if (r->str[i] < '0' || r->str[i] > '9') {
            return NGX_DECLINED;
        }

        v = v * 10 + (r->str[i] - '0');
    }

    *value = v;

    return NGX_OK;
}


static ngx_uint_t
ngx_http_canary_auto_state(redisReply *r)
{
    ngx_uint_t  i;

    if (r->type != REDIS_REPLY_STRING) {
        return NGX_HTTP_CANARY_STATE_NONE;
    }

    for (i = 1; i <= NGX_HTTP_CANARY_STATE_ROLLED_BACK; i++) {
        if (ngx_http_canary_state_names[i].len == r->len
            && ngx_strncmp(ngx_http_canary_state_names[i].data, r->str,
                           r->len) == 0)
        {
            return i;
        }
    }

    return NGX_HTTP_CANARY_STATE_NONE;
}


/* hundredths, or NGX_MAX_UINT32_VALUE when missing or bad */

static uint32_t
ngx_http_canary_auto_percent(redisReply *r)
{
    uint32_t  v;

    if (r->type != REDIS_REPLY_STRING
        || ngx_http_canary_parse_percent((u_char *) r->str, r->len, &v) != 0)
    {
        return NGX_MAX_UINT32_VALUE;
    }

    return v;
}


/* wall-clock milliseconds: the fleet's intervals are aligned on them */

static uint64_t
ngx_http_canary_auto_now(void)
{
    ngx_time_t  *tp;

    ngx_time_update();
    tp = ngx_timeofday();

    return (uint64_t) tp->sec * 1000 + tp->msec;
}


/* how long after an interval the leader waits for every node's figures */

static ngx_msec_t
ngx_http_canary_auto_grace(ngx_http_canary_policy_t *p)
{
    return (ngx_msec_t) ngx_max(ngx_min(p->interval / 5, 5000), 200);
}


static ngx_int_t
ngx_http_canary_auto_key(ngx_pool_t *pool, ngx_str_t *key, ngx_str_t *prefix,
    ngx_str_t *name, char *suffix)
{
    size_t  len;

    len = ngx_strlen(suffix);

    key->len = prefix->len + sizeof("rollout:") - 1 + name->len + len;
    key->data = ngx_pnalloc(pool, key->len);
    if (key->data == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(key->data, "%Vrollout:%V%s", prefix, name, suffix);

    return NGX_OK;
}


/*
 * For the status page: the automatic rollout's step, the time to the next
 * decision, the last decision and its figures, as a JSON member
 * ("auto":{...},) or as text lines.  NULL-safe: nothing for a rollout
 * without "auto".
 */

size_t
ngx_http_canary_auto_status_size(ngx_http_canary_rollout_t *ro)
{
    return ro->policy ? 2048 : 0;
}


static void
ngx_http_canary_auto_status_read(ngx_http_canary_main_conf_t *cmcf,
    ngx_http_canary_rollout_t *ro, ngx_http_canary_auto_status_t *st,
    int64_t *next)
{
    uint64_t  now, j, at;

    ngx_shmtx_lock(&cmcf->shpool->mutex);
    *st = *ro->sh->autost;
    ngx_shmtx_unlock(&cmcf->shpool->mutex);

    *next = -1;

    if (ro->sh->snapshot->state != NGX_HTTP_CANARY_STATE_PROGRESSING
        || (!st->dark
            && (st->step == 0 || st->step >= ro->policy->nsteps)))
    {
        return;
    }

    now = ngx_http_canary_auto_now();

    /* the next interval to judge, and when it will be */

    j = st->since;

    if (st->checked && st->checked + ro->policy->interval > j) {
        j = st->checked + ro->policy->interval;
    }

    at = j + ro->policy->interval + ngx_http_canary_auto_grace(ro->policy);

    *next = (at > now) ? (int64_t) (at - now) : 0;
}


u_char *
ngx_http_canary_auto_status_json(ngx_http_canary_main_conf_t *cmcf,
    ngx_http_canary_rollout_t *ro, u_char *p, u_char *last)
{
    int64_t                        next;
    ngx_uint_t                     v;
    ngx_http_canary_auto_status_t  st;

    if (ro->policy == NULL || ro->sh->autost == NULL) {
        return p;
    }

    ngx_http_canary_auto_status_read(cmcf, ro, &st, &next);

    p = ngx_slprintf(p, last, "\"auto\":{\"step\":%ui,\"steps\":%ui,"
                     "\"phase\":\"%s\",\"dark_passed\":%ui,"
                     "\"interval_ms\":%uL,\"next_decision_ms\":",
                     st.step, st.nsteps, st.dark ? "dark" : "live",
                     st.dark_passed, ro->policy->interval);

    p = (next < 0) ? ngx_slprintf(p, last, "null")
                   : ngx_slprintf(p, last, "%L", next);

    p = ngx_slprintf(p, last, ",\"failures\":%ui,\"leader\":%s,"
                     "\"last_decision\":", st.failures,
                     cmcf->sh->auto_leader ? "true" : "false");

    if (st.decision_len == 0) {
        return ngx_slprintf(p, last, "null},");
    }

    p = ngx_slprintf(p, last, "{\"decision\":\"");
    p = (u_char *) ngx_escape_json(p, st.decision, st.decision_len);
    p = ngx_slprintf(p, last, "\",\"at\":%uL,\"by\":\"", st.decided_at);
    p = (u_char *) ngx_escape_json(p, st.decided_by, st.decided_by_len);
    p = ngx_slprintf(p, last, "\",\"reason\":\"");
    p = (u_char *) ngx_escape_json(p, st.reason, st.reason_len);
    p = ngx_slprintf(p, last, "\",\"interval\":%uL,\"nodes\":%ui",
                     st.interval, st.nodes);

    if (st.interval) {
        for (v = 2; v-- > 0; /* void */) {
            p = ngx_slprintf(p, last, ",\"%s\":{\"requests\":%uL,"
                             "\"errors\":%uL,\"error_rate_ppm\":%uL,"
                             "\"p99_ms\":", v ? "canary" : "stable",
                             st.requests[v], st.errors[v],
                             st.error_rate[v]);

            p = (st.p99[v] == NGX_HTTP_CANARY_P99_INF)
                ? ngx_slprintf(p, last, "null}")
                : ngx_slprintf(p, last, "%uL}", st.p99[v]);
        }
    }

    return ngx_slprintf(p, last, "}},");
}


u_char *
ngx_http_canary_auto_status_text(ngx_http_canary_main_conf_t *cmcf,
    ngx_http_canary_rollout_t *ro, u_char *p, u_char *last)
{
    int64_t                        next;
    ngx_http_canary_auto_status_t  st;

    if (ro->policy == NULL || ro->sh->autost == NULL) {
        return p;
    }

    ngx_http_canary_auto_status_read(cmcf, ro, &st, &next);

    p = ngx_slprintf(p, last, " auto step %ui of %ui next_decision ",
                     st.step, st.nsteps);

    p = (next < 0) ? ngx_slprintf(p, last, "-")
                   : ngx_slprintf(p, last, "%Lms", next);

    p = ngx_slprintf(p, last, " failures %ui", st.failures);

    if (st.dark) {
        p = ngx_slprintf(p, last, " phase dark passed %ui of %uD",
                         st.dark_passed, ro->policy->shadow_intervals);
    }

    p = ngx_slprintf(p, last, "\n");

    if (st.decision_len) {
        p = ngx_slprintf(p, last, " auto last %*s by %*s: %*s\n",
                         st.decision_len, st.decision, st.decided_by_len,
                         st.decided_by, st.reason_len, st.reason);
    }

    return p;
}
