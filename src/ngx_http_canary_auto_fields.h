
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * The automatic rollout controller's shared types (the controller, its
 * rollouts, a decision's outcome, a command's arguments) and what its
 * files use to talk to Redis: the fields of the rollout hash, the names
 * of the figure fields, the values of replies, the arguments of a
 * command.  See ngx_http_canary_auto.c.
 */


#ifndef _NGX_HTTP_CANARY_AUTO_FIELDS_H_INCLUDED_
#define _NGX_HTTP_CANARY_AUTO_FIELDS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_http.h>

#include "ngx_http_canary_module.h"
#include "ngx_http_canary_redis.h"
#include "ngx_http_canary_redis_args.h"


#if (__GNUC__ >= 4)
#pragma GCC visibility push(hidden)
#endif


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
    ngx_http_canary_f_gate,
    ngx_http_canary_f_approve,
    ngx_http_canary_f_n
};


/* the bytes of an "approve" value compared and shown, at most */
#define NGX_HTTP_CANARY_AUTO_APPROVE_LEN  64


/* an event as JSON (the alert channel's, the webhooks'), at most */
#define NGX_HTTP_CANARY_AUTO_JSON_LEN     2048


/* storage for one command's arguments */
typedef struct {
    ngx_http_canary_redis_args_t    args;
    const char                     *argv[NGX_HTTP_CANARY_AUTO_MAX_ARGS];
    size_t                          len[NGX_HTTP_CANARY_AUTO_MAX_ARGS];
    u_char                          buf[NGX_HTTP_CANARY_AUTO_ARGS_BUF];
} ngx_http_canary_auto_args_t;


typedef struct ngx_http_canary_auto_s  ngx_http_canary_auto_t;
typedef struct ngx_http_canary_auto_check_s  ngx_http_canary_auto_check_t;


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
    uint32_t                        gate;       /* percent awaited, 0: none */
    uint64_t                        gate_step;  /* 1-based */
    unsigned                        step_changed:1;
    unsigned                        approved:1; /* enters a gated step */
    unsigned                        refused:1;  /* an approval removed */
    unsigned                        keep:1;     /* the figures unchanged */
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

    /* external checks: the interval checked last, the one in flight */
    ngx_http_canary_auto_check_t   *checks;
    uint64_t                        check_for;
    uint64_t                        checking;
    ngx_uint_t                      check_pending;
    u_char                          check_reason[NGX_HTTP_CANARY_REASON_LEN];

    /* the decision in flight, for the log once it is applied */
    ngx_http_canary_auto_outcome_t  out;
    u_char                          reason[NGX_HTTP_CANARY_REASON_LEN];
    u_char                          json[NGX_HTTP_CANARY_AUTO_JSON_LEN];
    size_t                          json_len;   /* its event as JSON */

    unsigned                        busy:1;
    unsigned                        applying:1;
    unsigned                        check_failed:1;
    unsigned                        seen:1;
} ngx_http_canary_auto_rollout_t;


struct ngx_http_canary_auto_s {
    ngx_http_canary_main_conf_t    *cmcf;
    ngx_http_canary_redis_t        *rc;
    struct ngx_http_canary_http_s  *http;       /* checks' client, or NULL */
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


/* the arguments of one command at a time, sent before the next is built */
extern ngx_http_canary_auto_args_t  ngx_http_canary_auto_args;

/* the names of the rollout hash's fields, ngx_http_canary_f_* */
extern const char  *ngx_http_canary_auto_fields[];


ngx_http_canary_redis_args_t *ngx_http_canary_auto_args_init(
    ngx_http_canary_auto_args_t *s);
void ngx_http_canary_redis_arg(ngx_http_canary_redis_args_t *a,
    const void *data, size_t len);
void ngx_http_canary_redis_argf(ngx_http_canary_redis_args_t *a,
    const char *fmt, ...);
void ngx_http_canary_auto_arg_reply(ngx_http_canary_redis_args_t *a,
    redisReply *r);
void ngx_http_canary_auto_arg_approve(ngx_http_canary_redis_args_t *a,
    redisReply *r);
void ngx_http_canary_auto_arg_percent(ngx_http_canary_redis_args_t *a,
    uint32_t hundredths);
void ngx_http_canary_auto_arg_figures(ngx_http_canary_redis_args_t *a,
    ngx_http_canary_judgement_t *j, ngx_uint_t history);
void ngx_http_canary_auto_arg_figure(ngx_http_canary_redis_args_t *a,
    ngx_http_canary_rollout_t *ro, ngx_uint_t row, ngx_uint_t k);
void ngx_http_canary_auto_ignore(ngx_http_canary_redis_t *rc,
    redisReply *reply, void *data);

uint64_t ngx_http_canary_auto_figures(ngx_http_canary_auto_rollout_t *ar,
    redisReply *fig, ngx_http_canary_figures_t *figs);

ngx_int_t ngx_http_canary_auto_uint(redisReply *r, uint64_t *value);
ngx_uint_t ngx_http_canary_auto_state(redisReply *r);
uint32_t ngx_http_canary_auto_percent(redisReply *r);
ngx_uint_t ngx_http_canary_auto_dark(redisReply **f);
uint64_t ngx_http_canary_auto_now(void);


#if (__GNUC__ >= 4)
#pragma GCC visibility pop
#endif


#endif /* _NGX_HTTP_CANARY_AUTO_FIELDS_H_INCLUDED_ */
