
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * The control API's answers: a rollout (or all) as the status page's JSON
 * shows them, an error as {"error": ..., "field": ...}, and the end of a
 * write's request (ngx_http_canary_api.c, _write.c and _local.c use them).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_canary_module.h"
#include "ngx_http_canary_status.h"
#include "ngx_http_canary_status_out.h"
#include "ngx_http_canary_status_json.h"
#include "ngx_http_canary_api.h"


/* GET: every rollout, or one, as the status page's JSON shows them */

ngx_int_t
ngx_http_canary_api_get(ngx_http_request_t *r, ngx_int_t rollout,
    ngx_uint_t status)
{
    u_char                    *p;
    ngx_uint_t                 i;
    ngx_http_canary_out_t      o;
    ngx_http_canary_report_t   rp, one;

    if (ngx_http_canary_report(r, &rp) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memzero(&o, sizeof(ngx_http_canary_out_t));
    o.request = r;
    o.last = &o.out;

    p = ngx_http_canary_reserve(&o, sizeof("{\"rollouts\":["));
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rollout >= 0) {
        one = rp;
        one.views = &rp.views[rollout];
        one.nviews = 1;

        if (ngx_http_canary_json_rollout(&o, &one, 0) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        /* the object alone: without the newline that leads it in a list */

        if (*o.out->buf->pos == '\n') {
            o.out->buf->pos++;
        }

    } else {
        o.buf->last = ngx_http_canary_cpy(p, "{\"rollouts\":[");

        for (i = 0; i < rp.nviews; i++) {
            if (ngx_http_canary_json_rollout(&o, &rp, i) != NGX_OK) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }
        }
    }

    p = ngx_http_canary_reserve(&o, 8);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    o.buf->last = (rollout >= 0) ? ngx_http_canary_cpy(p, "\n")
                                 : ngx_http_canary_cpy(p, "\n]}\n");

    return ngx_http_canary_api_send(r, &o, status);
}


/* the answer of a write: the rollout's new object, or an error */

void
ngx_http_canary_api_answer(ngx_http_canary_api_t *ctx, ngx_uint_t status,
    char *error, ngx_str_t *detail)
{
    ngx_int_t            rc;
    ngx_http_request_t  *r;

    r = ctx->r;
    ctx->r = NULL;

    if (ctx->wait.timer_set) {
        ngx_del_timer(&ctx->wait);
    }

    if (status == NGX_HTTP_OK) {
        rc = ngx_http_canary_api_get(r, ctx->ro->index, NGX_HTTP_OK);

    } else {
        rc = ngx_http_canary_api_error(r, status, error, detail);
    }

    ngx_http_finalize_request(r, rc);
}


/* {"error":"...","field":"..."} */

ngx_int_t
ngx_http_canary_api_error(ngx_http_request_t *r, ngx_uint_t status,
    char *error, ngx_str_t *field)
{
    size_t                  size;
    u_char                 *p;
    ngx_str_t               e;
    ngx_http_canary_out_t   o;

    ngx_memzero(&o, sizeof(ngx_http_canary_out_t));
    o.request = r;
    o.last = &o.out;

    e.data = (u_char *) error;
    e.len = ngx_strlen(error);

    size = 64 + ngx_http_canary_esc_len(&e, NGX_HTTP_CANARY_ESC_JSON);

    if (field) {
        size += ngx_http_canary_esc_len(field, NGX_HTTP_CANARY_ESC_JSON);
    }

    p = ngx_http_canary_reserve(&o, size);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_http_canary_cpy(p, "{\"error\":\"");
    p = ngx_http_canary_esc(p, &e, NGX_HTTP_CANARY_ESC_JSON);

    if (field && field->len) {
        p = ngx_http_canary_cpy(p, "\",\"field\":\"");
        p = ngx_http_canary_esc(p, field, NGX_HTTP_CANARY_ESC_JSON);
    }

    p = ngx_http_canary_cpy(p, "\"}\n");

    o.buf->last = p;

    return ngx_http_canary_api_send(r, &o, status);
}


ngx_int_t
ngx_http_canary_api_send(ngx_http_request_t *r, ngx_http_canary_out_t *o,
    ngx_uint_t status)
{
    r->headers_out.status = status;

    if (ngx_http_canary_header(r, "Cache-Control", "no-store")
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_canary_send(r, o, "application/json");
}
