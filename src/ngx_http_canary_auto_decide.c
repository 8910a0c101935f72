
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * The automatic rollout controller's decisions and what it writes to
 * Redis (see ngx_http_canary_auto.c for the whole): the first step of a
 * rollout set progressing, the judgement of an interval (live, arm by
 * arm, or in the dark phase) and the step that follows, each written with
 * a script that checks the lease and the fields it was decided from, with
 * an entry in the rollout's history and, on a rollback or a failed
 * check, an alert; an arm switched off.
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
#include "ngx_http_canary_webhook.h"


static void ngx_http_canary_auto_gate(ngx_http_canary_auto_rollout_t *ar,
    redisReply **f, ngx_http_canary_auto_outcome_t *o, u_char *reason);
static void ngx_http_canary_auto_apply_fields(
    ngx_http_canary_auto_rollout_t *ar, ngx_http_canary_auto_outcome_t *o,
    ngx_str_t *reason, ngx_http_canary_redis_args_t *set,
    ngx_http_canary_redis_args_t *del);
static void ngx_http_canary_auto_gate_fields(
    ngx_http_canary_auto_outcome_t *o, ngx_http_canary_redis_args_t *set,
    ngx_http_canary_redis_args_t *del);
static void ngx_http_canary_auto_apply_history(
    ngx_http_canary_auto_rollout_t *ar, redisReply **f,
    ngx_http_canary_auto_outcome_t *o, ngx_str_t *reason,
    ngx_http_canary_redis_args_t *x);
static ngx_uint_t ngx_http_canary_auto_arms(
    ngx_http_canary_auto_rollout_t *ar, ngx_http_canary_figures_t *figs,
    ngx_http_canary_figures_t *canary, uint64_t interval, uint64_t nodes,
    uint64_t now, u_char *held);
static void ngx_http_canary_auto_arm_off(ngx_http_canary_auto_rollout_t *ar,
    ngx_uint_t arm, ngx_http_canary_judgement_t *j, uint64_t interval,
    uint64_t nodes, uint64_t now);
static void ngx_http_canary_auto_apply_handler(ngx_http_canary_redis_t *rc,
    redisReply *reply, void *data);


/*
 * KEYS[1] the lease, KEYS[2] the rollout hash, KEYS[3] its history.
 * ARGV: node, expected checked, state, step and approve (its first
 * NGX_HTTP_CANARY_AUTO_APPROVE_LEN bytes), the changed channel, the
 * rollout's name, the alerts channel, the alert ('' for none), the number
 * of HSET arguments, the number of HDEL fields, then those, then the XADD
 * field/value pairs.  1: applied, 0: not the leader, -1: the rollout
 * changed since it was read.
 */

static ngx_str_t  ngx_http_canary_auto_apply_lua = ngx_string(
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end "
    "local c = redis.call('HMGET', KEYS[2], 'checked', 'state', 'step', "
    "                     'approve') "
    "if (c[1] or '') ~= ARGV[2] or (c[2] or '') ~= ARGV[3] "
    "   or (c[3] or '') ~= ARGV[4] "
    "   or string.sub(c[4] or '', 1, 64) ~= ARGV[5] then return -1 end "
    "local ns, nd = tonumber(ARGV[10]), tonumber(ARGV[11]) "
    "local i = 12 "
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
    "redis.call('PUBLISH', ARGV[6], ARGV[7]) "
    "if ARGV[9] ~= '' then redis.call('PUBLISH', ARGV[8], ARGV[9]) end "
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


void
ngx_http_canary_auto_start(ngx_http_canary_auto_rollout_t *ar,
    redisReply **f, uint32_t percent, uint64_t now)
{
    u_char                          reason[NGX_HTTP_CANARY_REASON_LEN];
    ngx_http_canary_auto_outcome_t  o;

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

    o.since = ngx_http_canary_policy_first(ar->policy, now);

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


void
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

    /* a failed external check fails the interval, as a breach does */

    if (ar->ro->checks && ar->check_failed && ar->check_for == interval) {
        p = (j.verdict == NGX_HTTP_CANARY_VERDICT_FAIL)
            ? ngx_snprintf(held, sizeof(held) - 1, "%s; %s",
                           ar->check_reason, j.reason)
            : ngx_snprintf(held, sizeof(held) - 1, "%s", ar->check_reason);
        *p = '\0';

        j.verdict = NGX_HTTP_CANARY_VERDICT_FAIL;
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

    /* progressing, or waiting at a gate (and judged all the same) */

    o.old_state = ngx_http_canary_auto_state(f[ngx_http_canary_f_state]);
    o.state = o.old_state;
    o.step = step;

    p = ngx_snprintf(reason, sizeof(reason) - 1, "%s", j.reason);

    switch (next.action) {

    case NGX_HTTP_CANARY_ACTION_ADVANCE:
        o.event = "advance";
        o.percent = next.percent;
        o.state = NGX_HTTP_CANARY_STATE_PROGRESSING;
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
 * "arm:<name>" off in the rollout hash, if this node still holds the
 * lease, with a history entry "arm_off" and an alert naming the arm
 */

static void
ngx_http_canary_auto_arm_off(ngx_http_canary_auto_rollout_t *ar,
    ngx_uint_t arm, ngx_http_canary_judgement_t *j, uint64_t interval,
    uint64_t nodes, uint64_t now)
{
    u_char                        *p, *last;
    u_char                         alert[1024];
    u_char                         reason[NGX_HTTP_CANARY_REASON_LEN];
    u_char                         text[NGX_HTTP_CANARY_REASON_LEN + 512];
    ngx_str_t                     *name;
    ngx_http_canary_auto_t        *ctl;
    ngx_http_canary_redis_args_t  *a;

    ctl = ar->ctl;
    name = &ar->ro->variants[arm].name;

    p = ngx_snprintf(reason, sizeof(reason) - 1, "arm \"%V\" failed: %s",
                     name, j->reason);
    *p = '\0';

    p = alert;
    last = alert + sizeof(alert);

    p = ngx_slprintf(p, last, "{\"rollout\":\"");
    p = ngx_http_canary_json_str(p, last, ar->ro->name.data,
                                 ngx_min(ar->ro->name.len, 128));
    p = ngx_slprintf(p, last, "\",\"event\":\"arm_off\",\"arm\":\"");
    p = ngx_http_canary_json_str(p, last, name->data, ngx_min(name->len, 128));
    p = ngx_slprintf(p, last, "\",\"time\":%uL,\"node\":\"", now);
    p = ngx_http_canary_json_str(p, last, ctl->node.data,
                                 ngx_min(ctl->node.len, 128));
    p = ngx_slprintf(p, last, "\",\"interval\":%uL,\"nodes\":%uL,",
                     interval, nodes);

    p = ngx_http_canary_auto_event_figures(p, last, j, "canary");
    p = ngx_slprintf(p, last, "\"reason\":\"");
    p = ngx_http_canary_json_str(p, last, reason,
                                 ngx_min(ngx_strlen(reason), 300));
    p = ngx_slprintf(p, last, "\"}");

    a = ngx_http_canary_auto_args_init(&ngx_http_canary_auto_args);

    ngx_http_canary_redis_arg(a, "EVAL", 4);
    ngx_http_canary_redis_arg(a, ngx_http_canary_auto_arm_off_lua.data,
                              ngx_http_canary_auto_arm_off_lua.len);
    ngx_http_canary_redis_arg(a, "3", 1);
    ngx_http_canary_redis_arg(a, ctl->leader_key.data, ctl->leader_key.len);
    ngx_http_canary_redis_arg(a, ar->key.data, ar->key.len);
    ngx_http_canary_redis_arg(a, ar->history.data, ar->history.len);

    ngx_http_canary_redis_arg(a, ctl->node.data, ctl->node.len);
    ngx_http_canary_redis_argf(a, "arm:%V", name);
    ngx_http_canary_redis_arg(a, ctl->changed.data, ctl->changed.len);
    ngx_http_canary_redis_arg(a, ar->ro->name.data, ar->ro->name.len);
    ngx_http_canary_redis_arg(a, ctl->alerts.data, ctl->alerts.len);
    ngx_http_canary_redis_arg(a, alert, p - alert);

    ngx_http_canary_redis_arg(a, "time", 4);
    ngx_http_canary_redis_argf(a, "%uL", now);
    ngx_http_canary_redis_arg(a, "event", 5);
    ngx_http_canary_redis_arg(a, "arm_off", 7);
    ngx_http_canary_redis_arg(a, "node", 4);
    ngx_http_canary_redis_arg(a, ctl->node.data, ctl->node.len);
    ngx_http_canary_redis_arg(a, "arm", 3);
    ngx_http_canary_redis_arg(a, name->data, name->len);
    ngx_http_canary_redis_arg(a, "interval", 8);
    ngx_http_canary_redis_argf(a, "%uL", interval);
    ngx_http_canary_redis_arg(a, "nodes", 5);
    ngx_http_canary_redis_argf(a, "%uL", nodes);
    ngx_http_canary_auto_arg_figures(a, j, 1);
    ngx_http_canary_redis_arg(a, "reason", 6);
    ngx_http_canary_redis_arg(a, reason, ngx_strlen(reason));

    ngx_log_error(NGX_LOG_ERR, ctl->log, 0,
                  "canary auto: \"%V\" switching arm \"%V\" off: %s",
                  &ar->ro->name, name, reason);

    last = ngx_snprintf(text, sizeof(text),
                        "canary \"%V\" arm_off: arm \"%V\" switched off, by "
                        "%V: %s", &ar->ro->name, name, &ctl->node, reason);
    ngx_http_canary_webhook_send("arm_off", alert, p - alert, text,
                                 last - text);

    (void) ngx_http_canary_redis_send_args(ctl->rc, a,
                                           ngx_http_canary_auto_ignore, NULL);
}


/*
 * An interval of the dark phase: the shadow's figures judged against
 * stable's, by the same thresholds.  Passed shadow_intervals times: step
 * 1.  Failed as many times as "failures" says: rolled_back, percent 0.
 */

void
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


/*
 * Writes an outcome: the rollout hash's fields, a history entry and the
 * channels, in one script that first checks the lease and that the
 * fields the decision was made from are unchanged.
 */

void
ngx_http_canary_auto_apply(ngx_http_canary_auto_rollout_t *ar,
    redisReply **f, ngx_http_canary_auto_outcome_t *o)
{
    u_char                         gated[NGX_HTTP_CANARY_REASON_LEN];
    ngx_str_t                      reason;
    ngx_http_canary_auto_t        *ctl;
    ngx_http_canary_redis_args_t  *a, *set, *del, *x;

    static ngx_http_canary_auto_args_t  sets, dels, xadds;

    ctl = ar->ctl;

    ngx_http_canary_auto_gate(ar, f, o, gated);
    set = ngx_http_canary_auto_args_init(&sets);
    del = ngx_http_canary_auto_args_init(&dels);
    x = ngx_http_canary_auto_args_init(&xadds);

    reason.data = o->reason;
    reason.len = ngx_strlen(o->reason);

    ngx_http_canary_auto_apply_fields(ar, o, &reason, set, del);
    ngx_http_canary_auto_apply_history(ar, f, o, &reason, x);

    /* the event as JSON: the alert, if one, and the webhooks' */

    ar->json_len = ngx_http_canary_auto_event_json(ar, o, &reason, ar->json,
                                              ar->json + sizeof(ar->json))
                   - ar->json;

    /* the script's arguments */

    a = ngx_http_canary_auto_args_init(&ngx_http_canary_auto_args);

    ngx_http_canary_redis_arg(a, "EVAL", 4);
    ngx_http_canary_redis_arg(a, ngx_http_canary_auto_apply_lua.data,
                              ngx_http_canary_auto_apply_lua.len);
    ngx_http_canary_redis_arg(a, "3", 1);
    ngx_http_canary_redis_arg(a, ctl->leader_key.data, ctl->leader_key.len);
    ngx_http_canary_redis_arg(a, ar->key.data, ar->key.len);
    ngx_http_canary_redis_arg(a, ar->history.data, ar->history.len);

    ngx_http_canary_redis_arg(a, ctl->node.data, ctl->node.len);
    ngx_http_canary_auto_arg_reply(a, f[ngx_http_canary_f_checked]);
    ngx_http_canary_auto_arg_reply(a, f[ngx_http_canary_f_state]);
    ngx_http_canary_auto_arg_reply(a, f[ngx_http_canary_f_step]);
    ngx_http_canary_auto_arg_approve(a, f[ngx_http_canary_f_approve]);
    ngx_http_canary_redis_arg(a, ctl->changed.data, ctl->changed.len);
    ngx_http_canary_redis_arg(a, ar->ro->name.data, ar->ro->name.len);
    ngx_http_canary_redis_arg(a, ctl->alerts.data, ctl->alerts.len);
    ngx_http_canary_redis_arg(a, ar->json, o->alert ? ar->json_len : 0);
    ngx_http_canary_redis_argf(a, "%ui", set->n);
    ngx_http_canary_redis_argf(a, "%ui", del->n);
    ngx_http_canary_redis_argv(a, set);
    ngx_http_canary_redis_argv(a, del);
    ngx_http_canary_redis_argv(a, x);

    if (a->overflow) {
        ngx_log_error(NGX_LOG_ALERT, ctl->log, 0,
                      "canary auto: too many arguments for \"%V\"",
                      &ar->ro->name);
        return;
    }

    ar->out = *o;
    ar->out.j = NULL;
    ngx_cpystrn(ar->reason, reason.data,
                ngx_min(reason.len + 1, sizeof(ar->reason)));

    if (ngx_http_canary_redis_send_args(ctl->rc, a,
                                        ngx_http_canary_auto_apply_handler, ar)
        == NGX_OK)
    {
        ar->applying = 1;
    }
}


/*
 * A step that needs an approval ("approve=") is not entered unless the
 * outcome is that approval: the rollout waits where it is, state
 * "waiting", field "gate" the percent awaited, and is judged all the
 * same (a failure still rolls it back); a pass while it waits only holds.
 */

static void
ngx_http_canary_auto_gate(ngx_http_canary_auto_rollout_t *ar,
    redisReply **f, ngx_http_canary_auto_outcome_t *o, u_char *reason)
{
    u_char    *p;
    char       pct[16];
    uint64_t   step;

    if (o->approved || !o->step_changed || o->step == 0
        || (o->state != NGX_HTTP_CANARY_STATE_PROGRESSING
            && o->state != NGX_HTTP_CANARY_STATE_PROMOTED)
        || !ngx_http_canary_policy_gated(ar->policy, (uint32_t) o->step - 1))
    {
        return;
    }

    if (o->dark
        || ngx_http_canary_auto_uint(f[ngx_http_canary_f_step], &step)
           != NGX_OK
        || step >= ar->policy->nsteps)
    {
        step = 0;
    }

    o->gate = o->percent;
    o->gate_step = o->step;
    o->percent = (o->old_percent == NGX_MAX_UINT32_VALUE)
                 ? 0 : o->old_percent;
    o->step = step;
    o->since = 0;
    o->step_changed = 0;
    o->state = NGX_HTTP_CANARY_STATE_WAITING;

    if (o->old_state == NGX_HTTP_CANARY_STATE_WAITING) {
        o->event = "hold";
        o->alert = 0;

    } else {
        o->event = "waiting";
        o->alert = 1;
    }

    ngx_http_canary_format_percent(pct, sizeof(pct), o->gate);

    /* a live pass says what passed; the others keep their reason */

    p = (o->j && !o->dark)
        ? ngx_snprintf(reason, NGX_HTTP_CANARY_REASON_LEN - 1,
                       "passed: %s; ", o->j->reason)
        : ngx_snprintf(reason, NGX_HTTP_CANARY_REASON_LEN - 1, "%s; ",
                       o->reason);

    p = ngx_slprintf(p, reason + NGX_HTTP_CANARY_REASON_LEN - 1,
                     "waiting for an approval of step %uL of %uD (%s%%)",
                     o->gate_step, ar->policy->nsteps, pct);
    *p = '\0';

    o->reason = reason;
}


/*
 * "gate" set while waiting (and a stale "approve" removed on the way in);
 * both removed once the rollout leaves the state, and "approve" once
 * used or refused
 */

static void
ngx_http_canary_auto_gate_fields(ngx_http_canary_auto_outcome_t *o,
    ngx_http_canary_redis_args_t *set, ngx_http_canary_redis_args_t *del)
{
    if (o->gate) {
        ngx_http_canary_redis_arg(set, "gate", 4);
        ngx_http_canary_auto_arg_percent(set, o->gate);
    }

    if (o->state != NGX_HTTP_CANARY_STATE_WAITING) {
        ngx_http_canary_redis_arg(del, "gate", 4);
    }

    if (o->state != NGX_HTTP_CANARY_STATE_WAITING
        || o->old_state != NGX_HTTP_CANARY_STATE_WAITING || o->refused)
    {
        ngx_http_canary_redis_arg(del, "approve", 7);
    }
}


/* the rollout hash's fields that an outcome sets, and those it removes */

static void
ngx_http_canary_auto_apply_fields(ngx_http_canary_auto_rollout_t *ar,
    ngx_http_canary_auto_outcome_t *o, ngx_str_t *reason,
    ngx_http_canary_redis_args_t *set, ngx_http_canary_redis_args_t *del)
{
    ngx_uint_t               i, changes;
    const char              *name;
    ngx_http_canary_auto_t  *ctl;

    ctl = ar->ctl;

    changes = (o->percent != o->old_percent || o->state != o->old_state
               || o->step_changed);

    if (changes) {
        ngx_http_canary_redis_arg(set, "percent", 7);
        ngx_http_canary_auto_arg_percent(set, o->percent);
        ngx_http_canary_redis_arg(set, "state", 5);
        ngx_http_canary_redis_arg(set, ngx_http_canary_state_names[o->state]
                                  .data,
                                  ngx_http_canary_state_names[o->state].len);
    }

    if (o->step) {
        ngx_http_canary_redis_arg(set, "step", 4);
        ngx_http_canary_redis_argf(set, "%uL", o->step);

    } else {
        ngx_http_canary_redis_arg(del, "step", 4);
    }

    if (o->since) {
        ngx_http_canary_redis_arg(set, "since", 5);
        ngx_http_canary_redis_argf(set, "%uL", o->since);
    }

    ngx_http_canary_auto_gate_fields(o, set, del);

    if (o->keep) {
        /* the last judgement's fields stay */

    } else if (o->j) {
        ngx_http_canary_redis_arg(set, "checked", 7);
        ngx_http_canary_redis_argf(set, "%uL", o->interval);
        ngx_http_canary_redis_arg(set, "failures", 8);
        ngx_http_canary_redis_argf(set, "%uD", o->failures);
        ngx_http_canary_redis_arg(set, "interval", 8);
        ngx_http_canary_redis_argf(set, "%uL", o->interval);
        ngx_http_canary_redis_arg(set, "nodes", 5);
        ngx_http_canary_redis_argf(set, "%uL", o->nodes);
        ngx_http_canary_auto_arg_figures(set, o->j, 0);

    } else {
        ngx_http_canary_redis_arg(del, "checked", 7);
        ngx_http_canary_redis_arg(del, "failures", 8);

        /* the figures that decided: "interval" ... "s_p99" */

        for (i = ngx_http_canary_f_interval; i <= ngx_http_canary_f_s_p99; i++)
        {
            name = ngx_http_canary_auto_fields[i];
            ngx_http_canary_redis_arg(del, name, ngx_strlen(name));
        }
    }

    /* the dark phase's fields: kept up to date in it, removed after */

    if (o->dark_stay) {
        ngx_http_canary_redis_arg(set, "phase", 5);
        ngx_http_canary_redis_arg(set, "dark", 4);
        ngx_http_canary_redis_arg(set, "dark_passed", 11);
        ngx_http_canary_redis_argf(set, "%uD", o->dark_passed);
        ngx_http_canary_redis_arg(set, "shadow", 6);
        ngx_http_canary_auto_arg_percent(set, ar->policy->shadow);

    } else if (o->dark) {
        ngx_http_canary_redis_arg(del, "phase", 5);
        ngx_http_canary_redis_arg(del, "dark_passed", 11);
        ngx_http_canary_redis_arg(del, "shadow", 6);
    }

    ngx_http_canary_redis_arg(set, "decided_at", 10);
    ngx_http_canary_redis_argf(set, "%uL", o->now);
    ngx_http_canary_redis_arg(set, "decided_by", 10);
    ngx_http_canary_redis_arg(set, ctl->node.data, ctl->node.len);
    ngx_http_canary_redis_arg(set, "decision", 8);
    ngx_http_canary_redis_arg(set, o->event, ngx_strlen(o->event));
    ngx_http_canary_redis_arg(set, "reason", 6);
    ngx_http_canary_redis_arg(set, reason->data, reason->len);
}


/* an outcome's history entry: the XADD field/value pairs */

static void
ngx_http_canary_auto_apply_history(ngx_http_canary_auto_rollout_t *ar,
    redisReply **f, ngx_http_canary_auto_outcome_t *o, ngx_str_t *reason,
    ngx_http_canary_redis_args_t *x)
{
    ngx_http_canary_auto_t  *ctl;

    ctl = ar->ctl;

    ngx_http_canary_redis_arg(x, "time", 4);
    ngx_http_canary_redis_argf(x, "%uL", o->now);
    ngx_http_canary_redis_arg(x, "event", 5);
    ngx_http_canary_redis_arg(x, o->event, ngx_strlen(o->event));
    ngx_http_canary_redis_arg(x, "node", 4);
    ngx_http_canary_redis_arg(x, ctl->node.data, ctl->node.len);
    ngx_http_canary_redis_arg(x, "phase", 5);
    ngx_http_canary_redis_arg(x, o->dark ? "dark" : "live", 4);
    ngx_http_canary_redis_arg(x, "old_percent", 11);
    ngx_http_canary_auto_arg_percent(x, o->old_percent);
    ngx_http_canary_redis_arg(x, "percent", 7);
    ngx_http_canary_auto_arg_percent(x, o->percent);
    ngx_http_canary_redis_arg(x, "old_state", 9);
    ngx_http_canary_redis_arg(x, ngx_http_canary_state_names[o->old_state]
                              .data,
                              ngx_http_canary_state_names[o->old_state].len);
    ngx_http_canary_redis_arg(x, "state", 5);
    ngx_http_canary_redis_arg(x, ngx_http_canary_state_names[o->state].data,
                              ngx_http_canary_state_names[o->state].len);
    ngx_http_canary_redis_arg(x, "old_step", 8);
    ngx_http_canary_auto_arg_reply(x, f[ngx_http_canary_f_step]);
    ngx_http_canary_redis_arg(x, "step", 4);

    if (o->step) {
        ngx_http_canary_redis_argf(x, "%uL", o->step);

    } else {
        ngx_http_canary_redis_arg(x, "", 0);
    }

    if (o->j) {
        ngx_http_canary_redis_arg(x, "interval", 8);
        ngx_http_canary_redis_argf(x, "%uL", o->interval);
        ngx_http_canary_redis_arg(x, "nodes", 5);
        ngx_http_canary_redis_argf(x, "%uL", o->nodes);
        ngx_http_canary_redis_arg(x, "failures", 8);
        ngx_http_canary_redis_argf(x, "%uD", o->failures);
        ngx_http_canary_auto_arg_figures(x, o->j, 1);
    }

    if (o->gate) {
        ngx_http_canary_redis_arg(x, "gate", 4);
        ngx_http_canary_auto_arg_percent(x, o->gate);
    }

    ngx_http_canary_redis_arg(x, "reason", 6);
    ngx_http_canary_redis_arg(x, reason->data, reason->len);
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

    } else if (ngx_strcmp(o->event, "failed_check") == 0
               || ngx_strcmp(o->event, "approve_refused") == 0)
    {
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

    ngx_http_canary_auto_event_send(ar, o);
}

