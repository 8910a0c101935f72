
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * An event of the automatic rollout controller told: its JSON object (the
 * alert channel's, the webhooks'), its line of text (format=slack), sent
 * to this node's webhooks; and an operator's change (percent or state
 * written by someone else than a controller or the control API), which
 * the leader notes in the history and sends to its webhooks as the event
 * "operator".
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_http.h>

#include "ngx_http_canary_module.h"
#include "ngx_http_canary_redis.h"
#include "ngx_http_canary_auto_fields.h"
#include "ngx_http_canary_auto_event.h"
#include "ngx_http_canary_webhook.h"


static void ngx_http_canary_auto_event_operator(
    ngx_http_canary_auto_rollout_t *ar, redisReply **f, uint32_t percent,
    ngx_uint_t state);
static void ngx_http_canary_auto_xadd_handler(ngx_http_canary_redis_t *rc,
    redisReply *reply, void *data);


/* KEYS[1] the lease, KEYS[2] the history; ARGV node, then XADD pairs */

static ngx_str_t  ngx_http_canary_auto_xadd_lua = ngx_string(
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end "
    "redis.call('XADD', KEYS[2], 'MAXLEN', '~', '1000', '*', "
    "           unpack(ARGV, 2, #ARGV)) "
    "return 1");


void
ngx_http_canary_auto_operator(ngx_http_canary_auto_rollout_t *ar,
    redisReply **f, uint32_t percent, ngx_uint_t state, uint64_t decided)
{
    ngx_http_canary_auto_t        *ctl;
    ngx_http_canary_redis_args_t  *a;

    ctl = ar->ctl;

    ngx_log_error(NGX_LOG_NOTICE, ctl->log, 0,
                  "canary auto: \"%V\" changed by an operator: state "
                  "\"%V\" -> \"%V\"", &ar->ro->name,
                  &ngx_http_canary_state_names[ar->seen_state],
                  &ngx_http_canary_state_names[state]);

    a = ngx_http_canary_auto_args_init(&ngx_http_canary_auto_args);

    ngx_http_canary_redis_arg(a, "EVAL", 4);
    ngx_http_canary_redis_arg(a, ngx_http_canary_auto_xadd_lua.data,
                              ngx_http_canary_auto_xadd_lua.len);
    ngx_http_canary_redis_arg(a, "2", 1);
    ngx_http_canary_redis_arg(a, ctl->leader_key.data, ctl->leader_key.len);
    ngx_http_canary_redis_arg(a, ar->history.data, ar->history.len);
    ngx_http_canary_redis_arg(a, ctl->node.data, ctl->node.len);

    ngx_http_canary_redis_arg(a, "time", 4);
    ngx_http_canary_redis_argf(a, "%uL", ngx_http_canary_auto_now());
    ngx_http_canary_redis_arg(a, "event", 5);
    ngx_http_canary_redis_arg(a, "operator", 8);
    ngx_http_canary_redis_arg(a, "node", 4);
    ngx_http_canary_redis_arg(a, ctl->node.data, ctl->node.len);
    ngx_http_canary_redis_arg(a, "old_percent", 11);
    ngx_http_canary_auto_arg_percent(a, ar->seen_percent);
    ngx_http_canary_redis_arg(a, "percent", 7);
    ngx_http_canary_auto_arg_percent(a, percent);
    ngx_http_canary_redis_arg(a, "old_state", 9);
    ngx_http_canary_redis_arg(a, ngx_http_canary_state_names[ar->seen_state]
                              .data,
                              ngx_http_canary_state_names[ar->seen_state].len);
    ngx_http_canary_redis_arg(a, "state", 5);
    ngx_http_canary_redis_arg(a, ngx_http_canary_state_names[state].data,
                              ngx_http_canary_state_names[state].len);
    ngx_http_canary_redis_arg(a, "step", 4);
    ngx_http_canary_auto_arg_reply(a, f[ngx_http_canary_f_step]);

    (void) ngx_http_canary_redis_send_args(ctl->rc, a,
                                           ngx_http_canary_auto_xadd_handler,
                                           ar);

    ngx_http_canary_auto_event_operator(ar, f, percent, state);
}




/*
 * The operator's change, from the leader that noted it, to the webhooks:
 * the percent and the state before and after
 */

static void
ngx_http_canary_auto_event_operator(ngx_http_canary_auto_rollout_t *ar,
    redisReply **f, uint32_t percent, ngx_uint_t state)
{
    u_char                          *p;
    ngx_str_t                        reason;
    ngx_http_canary_auto_outcome_t   o;

    ngx_memzero(&o, sizeof(ngx_http_canary_auto_outcome_t));

    o.event = "operator";
    o.now = ngx_http_canary_auto_now();
    o.old_percent = ar->seen_percent;
    o.percent = (percent == NGX_MAX_UINT32_VALUE) ? 0 : percent;
    o.old_state = ar->seen_state;
    o.state = state;

    if (ngx_http_canary_auto_uint(f[ngx_http_canary_f_step], &o.step)
        != NGX_OK)
    {
        o.step = 0;
    }

    p = ngx_snprintf(ar->reason, sizeof(ar->reason) - 1,
                     "changed by an operator: state %V -> %V",
                     &ngx_http_canary_state_names[ar->seen_state],
                     &ngx_http_canary_state_names[state]);
    *p = '\0';

    reason.data = ar->reason;
    reason.len = p - ar->reason;

    ar->json_len = ngx_http_canary_auto_event_json(ar, &o, &reason, ar->json,
                                                   ar->json
                                                   + sizeof(ar->json))
                   - ar->json;

    ngx_http_canary_auto_event_send(ar, &o);
}


u_char *
ngx_http_canary_auto_event_json(ngx_http_canary_auto_rollout_t *ar,
    ngx_http_canary_auto_outcome_t *o, ngx_str_t *reason, u_char *p,
    u_char *last)
{
    ngx_http_canary_auto_t  *ctl;

    ctl = ar->ctl;

    p = ngx_slprintf(p, last, "{\"rollout\":\"");
    p = ngx_http_canary_json_str(p, last, ar->ro->name.data,
                                 ngx_min(ar->ro->name.len, 256));
    p = ngx_slprintf(p, last, "\",\"event\":\"%s\",\"phase\":\"%s\","
                     "\"time\":%uL,\"node\":\"", o->event,
                     o->dark ? "dark" : "live", o->now);
    p = ngx_http_canary_json_str(p, last, ctl->node.data,
                                 ngx_min(ctl->node.len, 256));
    p = ngx_slprintf(p, last, "\",\"state\":\"%V\",\"step\":%uL,"
                     "\"percent\":", &ngx_http_canary_state_names[o->state],
                     o->step);
    p = ngx_slprintf(p, last, "%uD.%02uD,\"old_percent\":", o->percent / 100,
                     o->percent % 100);

    /* no percent before the start */

    p = (o->old_percent == NGX_MAX_UINT32_VALUE)
        ? ngx_slprintf(p, last, "null")
        : ngx_slprintf(p, last, "%uD.%02uD", o->old_percent / 100,
                       o->old_percent % 100);

    p = ngx_slprintf(p, last, ",\"failures\":%uD,\"interval\":%uL,"
                     "\"nodes\":%uL,", o->failures, o->interval, o->nodes);

    if (o->gate) {
        p = ngx_slprintf(p, last, "\"gate\":%uD.%02uD,\"gate_step\":%uL,",
                         o->gate / 100, o->gate % 100, o->gate_step);
    }

    if (o->j) {
        p = ngx_http_canary_auto_event_figures(p, last, o->j,
                                               o->dark ? "shadow" : "canary");
    }

    p = ngx_slprintf(p, last, "\"reason\":\"");
    p = ngx_http_canary_json_str(p, last, reason->data,
                                 ngx_min(reason->len, 512));

    return ngx_slprintf(p, last, "\"}");
}


/* an alert's "stable":{...},"canary":{...}, members */

u_char *
ngx_http_canary_auto_event_figures(u_char *p, u_char *last,
    ngx_http_canary_judgement_t *j, char *canary)
{
    ngx_uint_t  i;

    for (i = 0; i < 2; i++) {
        p = ngx_slprintf(p, last, "\"%s\":{\"requests\":%uL,"
                         "\"errors\":%uL,\"error_rate_ppm\":%uL,"
                         "\"p99_ms\":", i ? canary : "stable",
                         j->requests[i], j->errors[i], j->error_rate[i]);

        p = (j->p99[i] == NGX_HTTP_CANARY_P99_INF)
            ? ngx_slprintf(p, last, "null},")
            : ngx_slprintf(p, last, "%uL},", j->p99[i]);
    }

    return p;
}


/* what this node decided and wrote, to the webhooks: JSON and one line */

void
ngx_http_canary_auto_event_send(ngx_http_canary_auto_rollout_t *ar,
    ngx_http_canary_auto_outcome_t *o)
{
    int      n;
    u_char  *p;
    u_char   text[NGX_HTTP_CANARY_AUTO_JSON_LEN];
    char     from[16], to[16];

    /* "10%", or "-" when there was no percent */

    n = 0;

    if (o->old_percent != NGX_MAX_UINT32_VALUE) {
        n = ngx_http_canary_format_percent(from, sizeof(from) - 1,
                                           o->old_percent);
    }

    from[n] = n ? '%' : '-';
    from[n + 1] = '\0';

    n = ngx_http_canary_format_percent(to, sizeof(to) - 1, o->percent);
    to[n] = '%';
    to[n + 1] = '\0';

    p = ngx_snprintf(text, sizeof(text), "canary \"%V\" %s: %s -> %s, "
                     "%V, step %uL of %uD, by %V: %s", &ar->ro->name,
                     o->event, from, to,
                     &ngx_http_canary_state_names[o->state], o->step,
                     ar->policy->nsteps, &ar->ctl->node, ar->reason);

    ngx_http_canary_webhook_send(o->event, ar->json, ar->json_len, text,
                                 p - text);
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
