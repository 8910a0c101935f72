
/*
 * Copyright (C) ngx_http_canary_module authors
 */


#ifndef _NGX_HTTP_CANARY_WEBHOOK_H_INCLUDED_
#define _NGX_HTTP_CANARY_WEBHOOK_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


#if (__GNUC__ >= 4)
#pragma GCC visibility push(hidden)
#endif


/* events queued per webhook by default, at most; attempts per event */
#define NGX_HTTP_CANARY_WEBHOOK_QUEUE     64
#define NGX_HTTP_CANARY_WEBHOOK_QUEUE_MAX 10000
#define NGX_HTTP_CANARY_WEBHOOK_ATTEMPTS  5


/*
 * "canary_webhook <url> [format=json|slack] [timeout=] [events=] [ca=]
 * [queue=]"
 */
char *ngx_http_canary_webhook_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/* the senders of this process (made at its first event) stopped */
void ngx_http_canary_webhook_stop(void);

/*
 * One history event, made by this node (in any process): "json" is
 * POSTed to the json webhooks, {"text": "<text>"} to the slack ones
 */
void ngx_http_canary_webhook_send(const char *event, u_char *json,
    size_t json_len, u_char *text, size_t text_len);


#if (__GNUC__ >= 4)
#pragma GCC visibility pop
#endif


#endif /* _NGX_HTTP_CANARY_WEBHOOK_H_INCLUDED_ */
