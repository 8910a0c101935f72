
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * The control API (canary_api): rollouts read and changed over HTTP with
 * JSON.  ngx_http_canary_api.c: the location's handler, the paths, the
 * checks of a request; _write.c: a write sent to Redis and waited for
 * until this node's zone shows it; _local.c: a write without Redis;
 * _out.c: the answers; _parse.c: a PATCH's body.
 */


#ifndef _NGX_HTTP_CANARY_API_H_INCLUDED_
#define _NGX_HTTP_CANARY_API_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_canary_module.h"
#include "ngx_http_canary_api_parse.h"
#include "ngx_http_canary_redis_args.h"
#include "ngx_http_canary_status_out.h"


#if (__GNUC__ >= 4)
#pragma GCC visibility push(hidden)
#endif


/* the largest request body, in bytes (413 past it) */
#define NGX_HTTP_CANARY_API_BODY_MAX    8192

/* the longest actor kept, in bytes */
#define NGX_HTTP_CANARY_API_ACTOR_MAX   128

/* a write's event: its JSON object and its line of text, at most */
#define NGX_HTTP_CANARY_API_EVENT_LEN   2048
#define NGX_HTTP_CANARY_API_TEXT_LEN    1024


typedef struct {
    ngx_http_request_t             *r;          /* NULL once answered */
    ngx_http_canary_main_conf_t    *cmcf;
    ngx_http_canary_rollout_t      *ro;
    ngx_log_t                      *log;
    ngx_uint_t                      action;
    ngx_uint_t                      which;      /* a user set */
    ngx_str_t                       member;
    ngx_str_t                       actor;
    ngx_msec_t                      deadline;
    ngx_event_t                     wait;

    /* the fields written, in the order of the script's arguments */
    ngx_http_canary_api_patch_t     patch;
    const char                     *allowed;    /* states, or "" */

    /* the command (in the request's pool), sent again after a MOVED */
    ngx_http_canary_redis_args_t    args;
    ngx_uint_t                      moved;      /* the client's, when sent */

    /* the write as an event: JSON (the alert, the webhooks'), one line */
    size_t                          event_len;
    size_t                          text_len;
    u_char                          event[NGX_HTTP_CANARY_API_EVENT_LEN];
    u_char                          text[NGX_HTTP_CANARY_API_TEXT_LEN];

    unsigned                        pending:1;  /* its handler to come */
    unsigned                        sent_ready:1;
    unsigned                        replied:1;
    unsigned                        resend:1;   /* at the next wait */
    unsigned                        resent:1;
} ngx_http_canary_api_t;


char *ngx_http_canary_api_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_canary_api_init_process(ngx_cycle_t *cycle);
void ngx_http_canary_api_exit_process(ngx_cycle_t *cycle);

/* ngx_http_canary_api_out.c: the answers */
ngx_int_t ngx_http_canary_api_get(ngx_http_request_t *r, ngx_int_t rollout,
    ngx_uint_t status);
void ngx_http_canary_api_answer(ngx_http_canary_api_t *ctx,
    ngx_uint_t status, char *error, ngx_str_t *detail);
ngx_int_t ngx_http_canary_api_error(ngx_http_request_t *r,
    ngx_uint_t status, char *error, ngx_str_t *field);
ngx_int_t ngx_http_canary_api_send(ngx_http_request_t *r,
    ngx_http_canary_out_t *o, ngx_uint_t status);

/* ngx_http_canary_api_local.c: without canary_redis */
ngx_uint_t ngx_http_canary_api_local(ngx_http_canary_api_t *ctx,
    char **error);

/* ngx_http_canary_api_write.c */
ngx_int_t ngx_http_canary_api_field(ngx_http_canary_api_patch_t *p,
    char *name, u_char *value, size_t len);
void ngx_http_canary_api_write(ngx_http_canary_api_t *ctx);
ngx_int_t ngx_http_canary_api_history_get(ngx_http_request_t *r,
    ngx_http_canary_rollout_t *ro);
ngx_int_t ngx_http_canary_api_write_init(ngx_cycle_t *cycle,
    ngx_http_canary_main_conf_t *cmcf);
void ngx_http_canary_api_write_exit(void);

/* ngx_http_canary_api_event.c: a write as an event (JSON, one line) */
extern ngx_str_t  ngx_http_canary_api_node;

void ngx_http_canary_api_event(ngx_http_canary_api_t *ctx);
void ngx_http_canary_api_event_send(ngx_http_canary_api_t *ctx);


#if (__GNUC__ >= 4)
#pragma GCC visibility pop
#endif


#endif /* _NGX_HTTP_CANARY_API_H_INCLUDED_ */
