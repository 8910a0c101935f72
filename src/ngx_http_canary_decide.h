
/*
 * Copyright (C) ngx_http_canary_module authors
 */


#ifndef _NGX_HTTP_CANARY_DECIDE_H_INCLUDED_
#define _NGX_HTTP_CANARY_DECIDE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_canary_module.h"


#if (__GNUC__ >= 4)
#pragma GCC visibility push(hidden)
#endif


/*
 * The request path's decision, see ngx_http_canary_decide.c.  The two
 * functions below are inline here so that the variable handlers
 * (ngx_http_canary_variables.c) read a cached decision without a call,
 * as they did when they shared a file with it.
 */

ngx_http_canary_ctx_t *ngx_http_canary_get_ctx(ngx_http_request_t *r,
    ngx_uint_t create);
ngx_http_canary_decision_t *ngx_http_canary_decide_plain(
    ngx_http_request_t *r, ngx_http_canary_main_conf_t *cmcf,
    ngx_uint_t index, ngx_http_canary_ctx_t *ctx);
ngx_http_canary_decision_t ngx_http_canary_evaluate(ngx_http_request_t *r,
    ngx_uint_t index, ngx_http_canary_ctx_t *ctx,
    ngx_http_canary_input_t *in, ngx_uint_t depth);
ngx_http_canary_decision_t *ngx_http_canary_keep_all(ngx_http_request_t *r,
    ngx_http_canary_ctx_t *ctx, ngx_uint_t index,
    ngx_http_canary_decision_t d);
ngx_http_canary_segment_t *ngx_http_canary_find_segment(
    ngx_http_canary_snapshot_t *snap, ngx_str_t *value);
/* a value of the request (not inlined) */
ngx_int_t ngx_http_canary_read_value(ngx_http_request_t *r,
    ngx_http_canary_value_t *v, ngx_str_t *value);
ngx_int_t ngx_http_canary_rewrite_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_canary_log_handler(ngx_http_request_t *r);


/* the request's context, the usual case without a call */

static ngx_inline ngx_http_canary_ctx_t *
ngx_http_canary_ctx(ngx_http_request_t *r, ngx_http_canary_main_conf_t *cmcf,
    ngx_uint_t create)
{
    if (r == r->main) {
        return (ngx_http_canary_ctx_t *) &r->variables[cmcf->ctx_index];
    }

    return ngx_http_canary_get_ctx(r, create);
}


/*
 * The place of a rollout's decision in the request context, decided or
 * not; NULL when the context has none for it yet (see
 * ngx_http_canary_keep())
 */

static ngx_inline ngx_http_canary_decision_t *
ngx_http_canary_cached(ngx_http_canary_ctx_t *ctx, ngx_uint_t index)
{
    ngx_uint_t  i;

    if (ctx->all) {
        return &ctx->all[index];
    }

    for (i = 0; i < NGX_HTTP_CANARY_CTX_FEW; i++) {
        if (ctx->key[i] == index + 1) {
            return &ctx->few[i];
        }
    }

    return NULL;
}


/*
 * A decision kept in the request context: in its place, else in the
 * first free one of the few, else in "all", made now
 */

static ngx_inline ngx_http_canary_decision_t *
ngx_http_canary_keep(ngx_http_request_t *r, ngx_http_canary_ctx_t *ctx,
    ngx_uint_t index, ngx_http_canary_decision_t d)
{
    ngx_uint_t  i;

    if (ctx->all) {
        ctx->all[index] = d;
        return &ctx->all[index];
    }

    for (i = 0; i < NGX_HTTP_CANARY_CTX_FEW; i++) {
        if (ctx->key[i] == 0 || ctx->key[i] == index + 1) {
            ctx->key[i] = index + 1;
            ctx->few[i] = d;
            return &ctx->few[i];
        }
    }

    return ngx_http_canary_keep_all(r, ctx, index, d);
}


/*
 * The routing decision of one rollout for one request, cached in the
 * request context, so every variable and the log phase see the same
 * answer whichever asks first; as a pointer: the caller reads only the
 * fields it needs.
 */

static ngx_inline ngx_http_canary_decision_t *
ngx_http_canary_decision(ngx_http_request_t *r, ngx_uint_t index)
{
    ngx_http_canary_ctx_t        *ctx;
    ngx_http_canary_decision_t   *d;
    ngx_http_canary_main_conf_t  *cmcf;

    static ngx_http_canary_decision_t  none;

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_canary_module);

    ctx = ngx_http_canary_ctx(r, cmcf, 1);

    if (ctx == NULL) {
        return &none;
    }

    d = ngx_http_canary_cached(ctx, index);

    if (d && d->decided) {
        return d;
    }

    return ngx_http_canary_decide_plain(r, cmcf, index, ctx);
}


#if (__GNUC__ >= 4)
#pragma GCC visibility pop
#endif


#endif /* _NGX_HTTP_CANARY_DECIDE_H_INCLUDED_ */
