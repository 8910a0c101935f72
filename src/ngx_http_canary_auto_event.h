
/*
 * Copyright (C) ngx_http_canary_module authors
 */


#ifndef _NGX_HTTP_CANARY_AUTO_EVENT_H_INCLUDED_
#define _NGX_HTTP_CANARY_AUTO_EVENT_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_canary_auto_fields.h"


#if (__GNUC__ >= 4)
#pragma GCC visibility push(hidden)
#endif


/* an outcome as the JSON object of the alert channel and the webhooks */
u_char *ngx_http_canary_auto_event_json(ngx_http_canary_auto_rollout_t *ar,
    ngx_http_canary_auto_outcome_t *o, ngx_str_t *reason, u_char *p,
    u_char *last);

/* a judgement's "stable":{...},"canary":{...}, members */
u_char *ngx_http_canary_auto_event_figures(u_char *p, u_char *last,
    ngx_http_canary_judgement_t *j, char *canary);

/* an outcome written by this node, to its webhooks (ar->json, ar->reason) */
void ngx_http_canary_auto_event_send(ngx_http_canary_auto_rollout_t *ar,
    ngx_http_canary_auto_outcome_t *o);

/* a change of percent or state that no controller wrote, seen by the leader */
void ngx_http_canary_auto_operator(ngx_http_canary_auto_rollout_t *ar,
    redisReply **f, uint32_t percent, ngx_uint_t state, uint64_t decided);


#if (__GNUC__ >= 4)
#pragma GCC visibility pop
#endif


#endif /* _NGX_HTTP_CANARY_AUTO_EVENT_H_INCLUDED_ */
