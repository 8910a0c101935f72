
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * Gates of the automatic rollout ("auto ... approve=10,100"): a step that
 * needs an approval is not entered when the step before it passes; the
 * rollout waits instead (ngx_http_canary_auto_decide.c writes that: state
 * "waiting", field "gate" the percent awaited, a history entry and an
 * alert) and goes on being judged.  Here: what the leader does with an
 * approval, "HSET <prefix>rollout:<name> approve <percent>".  The percent
 * awaited enters that step (or promotes, at the last one); any other value
 * is refused, with a log line and a history entry "approve_refused", and
 * removed.  Both are written by the same script as every decision, which
 * checks that "approve" still holds the value read.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_http.h>

#include "ngx_http_canary_module.h"
#include "ngx_http_canary_auto_fields.h"
#include "ngx_http_canary_auto_decide.h"
#include "ngx_http_canary_auto_gate.h"


static void ngx_http_canary_auto_approve(ngx_http_canary_auto_rollout_t *ar,
    redisReply **f, ngx_http_canary_auto_outcome_t *o, uint32_t index);
static void ngx_http_canary_auto_refuse(ngx_http_canary_auto_rollout_t *ar,
    redisReply **f, ngx_http_canary_auto_outcome_t *o, uint32_t index,
    redisReply *r);


ngx_int_t
ngx_http_canary_auto_waiting(ngx_http_canary_auto_rollout_t *ar,
    redisReply **f, uint32_t percent, uint64_t now)
{
    uint32_t                        h;
    uint64_t                        step;
    redisReply                     *r;
    ngx_http_canary_auto_outcome_t  o;

    /* the step awaited is the one after the current: its index is "step" */

    if (ngx_http_canary_auto_uint(f[ngx_http_canary_f_step], &step) != NGX_OK
        || step >= ar->policy->nsteps)
    {
        step = 0;
    }

    r = f[ngx_http_canary_f_approve];

    if (r->type != REDIS_REPLY_STRING) {
        return step ? NGX_DECLINED : NGX_OK;
    }

    ngx_memzero(&o, sizeof(ngx_http_canary_auto_outcome_t));

    o.now = now;
    o.old_percent = percent;
    o.percent = percent;
    o.old_state = NGX_HTTP_CANARY_STATE_WAITING;
    o.state = NGX_HTTP_CANARY_STATE_WAITING;
    o.step = step;

    if (ngx_http_canary_parse_percent((u_char *) r->str, r->len, &h) == 0
        && h == ar->policy->steps[step])
    {
        ngx_http_canary_auto_approve(ar, f, &o, (uint32_t) step);

    } else {
        ngx_http_canary_auto_refuse(ar, f, &o, (uint32_t) step, r);
    }

    return NGX_OK;
}


/* the step awaited entered: progressing from its first whole interval */

static void
ngx_http_canary_auto_approve(ngx_http_canary_auto_rollout_t *ar,
    redisReply **f, ngx_http_canary_auto_outcome_t *o, uint32_t index)
{
    u_char  *p;
    u_char   reason[NGX_HTTP_CANARY_REASON_LEN];
    char     pct[16];

    o->event = "approved";
    o->approved = 1;
    o->percent = ar->policy->steps[index];
    o->step = index + 1;
    o->step_changed = 1;

    ngx_http_canary_format_percent(pct, sizeof(pct), o->percent);

    if (index + 1 == ar->policy->nsteps) {
        o->state = NGX_HTTP_CANARY_STATE_PROMOTED;
        p = ngx_snprintf(reason, sizeof(reason) - 1,
                         "approved: the last step (%s%%)", pct);

    } else {
        o->state = NGX_HTTP_CANARY_STATE_PROGRESSING;
        o->since = ngx_http_canary_policy_first(ar->policy, o->now);
        p = ngx_snprintf(reason, sizeof(reason) - 1,
                         "approved: step %uL of %uD (%s%%)", o->step,
                         ar->policy->nsteps, pct);
    }

    *p = '\0';
    o->reason = reason;

    ngx_http_canary_auto_apply(ar, f, o);
}


/* another value: removed, the rollout waits on */

static void
ngx_http_canary_auto_refuse(ngx_http_canary_auto_rollout_t *ar,
    redisReply **f, ngx_http_canary_auto_outcome_t *o, uint32_t index,
    redisReply *r)
{
    u_char   *p;
    u_char    value[NGX_HTTP_CANARY_AUTO_APPROVE_LEN];
    u_char    reason[NGX_HTTP_CANARY_REASON_LEN];
    char      pct[16];
    size_t    i, n;

    /* the value as written, its first bytes, printable */

    n = ngx_min((size_t) r->len, sizeof(value));

    for (i = 0; i < n; i++) {
        value[i] = (r->str[i] >= 0x20 && r->str[i] < 0x7f) ? r->str[i] : '?';
    }

    ngx_http_canary_format_percent(pct, sizeof(pct),
                                   ar->policy->steps[index]);

    o->event = "approve_refused";
    o->refused = 1;
    o->keep = 1;
    o->gate = ar->policy->steps[index];
    o->gate_step = index + 1;

    p = ngx_snprintf(reason, sizeof(reason) - 1,
                     "approve \"%*s%s\" refused: waiting for an approval of "
                     "step %uD of %uD (%s%%)", n, value,
                     (size_t) r->len > n ? "..." : "", index + 1,
                     ar->policy->nsteps, pct);
    *p = '\0';
    o->reason = reason;

    ngx_http_canary_auto_apply(ar, f, o);
}
