
/*
 * Copyright (C) ngx_http_canary_module authors
 */


#ifndef _NGX_HTTP_CANARY_STATUS_OUT_H_INCLUDED_
#define _NGX_HTTP_CANARY_STATUS_OUT_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_canary_module.h"
#include "ngx_http_canary_status.h"


#if (__GNUC__ >= 4)
#pragma GCC visibility push(hidden)
#endif


#define NGX_HTTP_CANARY_ESC_JSON        0
#define NGX_HTTP_CANARY_ESC_HTML        1
#define NGX_HTTP_CANARY_ESC_LABEL       2

/* room for one line of any format, strings and numbers aside */
#define NGX_HTTP_CANARY_LINE            192

#define NGX_HTTP_CANARY_NUM             (NGX_ATOMIC_T_LEN + 8)

/* room for an automatic rollout's lines or JSON member */
#define NGX_HTTP_CANARY_AUTO_STATUS_LEN 3072

#define ngx_http_canary_cpy(p, s)       ngx_cpymem(p, s, sizeof(s) - 1)


/* the answer as it is built: a chain of buffers */
typedef struct {
    ngx_http_request_t             *request;
    ngx_chain_t                    *out;
    ngx_chain_t                   **last;
    ngx_buf_t                      *buf;
    u_char                        **chunks;
} ngx_http_canary_out_t;


u_char *ngx_http_canary_reserve(ngx_http_canary_out_t *o, size_t size);
ngx_int_t ngx_http_canary_send(ngx_http_request_t *r,
    ngx_http_canary_out_t *o, char *type);
ngx_int_t ngx_http_canary_header(ngx_http_request_t *r, char *name,
    char *value);
ngx_int_t ngx_http_canary_bad_request(ngx_http_request_t *r, char *what,
    ngx_str_t *value);
ngx_int_t ngx_http_canary_arg(ngx_http_request_t *r, char *name,
    ngx_str_t *value);

size_t ngx_http_canary_esc_len(ngx_str_t *s, ngx_uint_t type);
u_char *ngx_http_canary_esc(u_char *p, ngx_str_t *s, ngx_uint_t type);
u_char *ngx_http_canary_uint(u_char *p, ngx_atomic_uint_t n);
u_char *ngx_http_canary_percent(u_char *p, ngx_uint_t percent);
u_char *ngx_http_canary_seconds(u_char *p, ngx_atomic_uint_t ms);
u_char *ngx_http_canary_quantile(u_char *p, ngx_http_canary_counters_t *c,
    ngx_atomic_uint_t count, ngx_uint_t q);
ngx_str_t *ngx_http_canary_state(ngx_uint_t state);

ngx_uint_t ngx_http_canary_arms_shown(ngx_http_canary_view_t *vw);
size_t ngx_http_canary_arms_size(ngx_http_canary_view_t *vw);


#if (__GNUC__ >= 4)
#pragma GCC visibility pop
#endif


#endif /* _NGX_HTTP_CANARY_STATUS_OUT_H_INCLUDED_ */
