
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * Shadow traffic.  A stable request whose bucket lies in
 * [percent, percent + shadow) (the users who would be exposed next as the
 * rollout grows) is copied to the canary_shadow URI as a background
 * subrequest, as the mirror module does: in the precontent phase, with
 * the main request's method, headers, arguments and (read first) body,
 * answer discarded.  The user's answer does not wait for the shadow; the
 * connection does: nginx finalizes a main request only once its
 * subrequests are done, so the next request on the same keep-alive
 * connection is read when the shadow has ended.
 *
 * The shadow's status, upstream errors and duration are counted in the
 * rollout's shadow counters (ngx_http_canary_shrollout_t.shadow, one per
 * worker slot), shown as the variant "shadow".
 *
 * The precontent handler is installed only when some location has
 * canary_shadow, so the request path of the others does not change.  The
 * directives (canary_shadow, canary_shadow_methods, "shadow" in
 * canary_rollout) are parsed and checked in ngx_http_canary_conf_check.c
 * and ngx_http_canary_conf.c.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_canary_module.h"
#include "ngx_http_canary_decide.h"
#include "ngx_http_canary_shadow.h"


/* a shadow subrequest's counting state */
typedef struct {
    ngx_http_canary_shrollout_t    *shr;
    unsigned                        counted:1;
} ngx_http_canary_shadow_t;


static ngx_int_t ngx_http_canary_shadow_handler(ngx_http_request_t *r);
static ngx_uint_t ngx_http_canary_shadow_chosen(ngx_http_request_t *r,
    ngx_http_canary_rollout_t *ro, ngx_http_canary_decision_t d);
static void ngx_http_canary_shadow_body_handler(ngx_http_request_t *r);
static void ngx_http_canary_shadow_send(ngx_http_request_t *r,
    ngx_http_canary_ctx_t *ctx);
static ngx_int_t ngx_http_canary_shadow_done(ngx_http_request_t *r,
    void *data, ngx_int_t rc);


static ngx_str_t  ngx_http_canary_shadow_values[] = {
    ngx_string("0"),
    ngx_string("1")
};


ngx_int_t
ngx_http_canary_shadow_init(ngx_conf_t *cf,
    ngx_http_canary_main_conf_t *cmcf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf_core;

    if (!cmcf->shadow) {
        return NGX_OK;
    }

    cmcf_core = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf_core->phases[NGX_HTTP_PRECONTENT_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_canary_shadow_handler;

    return NGX_OK;
}


/*
 * Once per main request, in the first location with canary_shadow that it
 * reaches.  Whatever happens to the shadow, the user's request goes on.
 */

static ngx_int_t
ngx_http_canary_shadow_handler(ngx_http_request_t *r)
{
    ngx_int_t                     rc;
    ngx_http_canary_ctx_t        *ctx;
    ngx_http_canary_rollout_t    *ro;
    ngx_http_canary_decision_t    d;
    ngx_http_canary_loc_conf_t   *clcf;
    ngx_http_canary_main_conf_t  *cmcf;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_canary_module);

    if (clcf->shadow.len == 0 || r != r->main) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_canary_get_ctx(r, 1);

    if (ctx == NULL || ctx->shadow != NGX_HTTP_CANARY_SHADOW_NONE) {
        return NGX_DECLINED;
    }

    ctx->shadow = NGX_HTTP_CANARY_SHADOW_CHECKED;

    if (!(r->method & clcf->shadow_methods)) {
        return NGX_DECLINED;
    }

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_canary_module);
    ro = (ngx_http_canary_rollout_t *) cmcf->rollouts.elts + clcf->rollout;

    d = ngx_http_canary_evaluate(r, clcf->rollout, ctx, NULL, 0);

    if (!ngx_http_canary_shadow_chosen(r, ro, d)) {
        return NGX_DECLINED;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "canary shadow: rollout \"%V\" bucket %ui",
                   &ro->name, (ngx_uint_t) d.bucket);

    if (r->headers_in.content_length_n <= 0 && !r->headers_in.chunked) {
        ngx_http_canary_shadow_send(r, ctx);
        return NGX_DECLINED;
    }

    /*
     * A request body: read whole before the shadow is sent, as with
     * mirror_request_body on; the phases go on once it is in.
     */

    ctx->shadow = NGX_HTTP_CANARY_SHADOW_BODY;

    rc = ngx_http_read_client_request_body(r,
                                       ngx_http_canary_shadow_body_handler);
    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    ngx_http_finalize_request(r, NGX_DONE);

    return NGX_DONE;
}


static void
ngx_http_canary_shadow_body_handler(ngx_http_request_t *r)
{
    ngx_http_canary_ctx_t  *ctx;

    ctx = ngx_http_canary_get_ctx(r, 0);

    if (ctx) {
        ngx_http_canary_shadow_send(r, ctx);
    }

    r->preserve_body = 1;

    r->write_event_handler = ngx_http_core_run_phases;
    ngx_http_core_run_phases(r);
}


/*
 * A stable request is shadowed when its bucket is next in line: reasons
 * "percent" and "segment" only, against the percent it was compared with.
 */

static ngx_uint_t
ngx_http_canary_shadow_chosen(ngx_http_request_t *r,
    ngx_http_canary_rollout_t *ro, ngx_http_canary_decision_t d)
{
    ngx_str_t                    value;
    ngx_uint_t                   percent;
    ngx_http_canary_segment_t   *seg;
    ngx_http_canary_snapshot_t  *snap;

    if (d.variant != NGX_HTTP_CANARY_STABLE || !d.has_bucket
        || ro->sh->shadow == NULL)
    {
        return 0;
    }

    snap = ro->sh->snapshot;

    if (snap->shadow == 0) {
        return 0;
    }

    if (d.reason == NGX_HTTP_CANARY_REASON_PERCENT) {
        percent = snap->percent;

    } else if (d.reason == NGX_HTTP_CANARY_REASON_SEGMENT) {

        if (ngx_http_canary_read_value(r, &ro->segment, &value) != NGX_OK) {
            return 0;
        }

        seg = ngx_http_canary_find_segment(snap, &value);

        if (seg == NULL) {
            /* a newer snapshot than the decision's */
            return 0;
        }

        percent = seg->percent;

    } else {
        return 0;
    }

    return d.bucket >= percent && d.bucket < percent + snap->shadow;
}


static void
ngx_http_canary_shadow_send(ngx_http_request_t *r, ngx_http_canary_ctx_t *ctx)
{
    ngx_http_request_t           *sr;
    ngx_http_canary_shadow_t     *sh;
    ngx_http_canary_rollout_t    *ro;
    ngx_http_canary_loc_conf_t   *clcf;
    ngx_http_post_subrequest_t   *ps;
    ngx_http_canary_main_conf_t  *cmcf;

    ctx->shadow = NGX_HTTP_CANARY_SHADOW_CHECKED;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_canary_module);
    cmcf = ngx_http_get_module_main_conf(r, ngx_http_canary_module);
    ro = (ngx_http_canary_rollout_t *) cmcf->rollouts.elts + clcf->rollout;

    ps = ngx_palloc(r->pool, sizeof(ngx_http_post_subrequest_t)
                             + sizeof(ngx_http_canary_shadow_t));
    if (ps == NULL) {
        return;
    }

    sh = (ngx_http_canary_shadow_t *) &ps[1];
    sh->shr = ro->sh;
    sh->counted = 0;

    ps->handler = ngx_http_canary_shadow_done;
    ps->data = sh;

    if (ngx_http_subrequest(r, &clcf->shadow, &r->args, &sr, ps,
                            NGX_HTTP_SUBREQUEST_BACKGROUND)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "canary shadow: no subrequest to \"%V\" for rollout "
                      "\"%V\", the request goes on unshadowed",
                      &clcf->shadow, &ro->name);
        return;
    }

    sr->header_only = 1;
    sr->method = r->method;
    sr->method_name = r->method_name;

    ctx->shadow = NGX_HTTP_CANARY_SHADOW_SENT;
}


/*
 * The shadow is over: counted once (a subrequest may be finalized more
 * than once, e.g. with its error page), with the status it ended with.
 */

static ngx_int_t
ngx_http_canary_shadow_done(ngx_http_request_t *r, void *data, ngx_int_t rc)
{
    ngx_http_canary_shadow_t *sh = data;

    ngx_uint_t  status;

    if (sh->counted) {
        return rc;
    }

    sh->counted = 1;

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        status = rc;

    } else if (r->headers_out.status) {
        status = r->headers_out.status;

    } else if (r->connection->error) {
        /* the client went away and took the shadow with it */
        status = NGX_HTTP_CLIENT_CLOSED_REQUEST;

    } else {
        status = NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "canary shadow: \"%V\" done, status %ui",
                   &sh->shr->name, status);

    ngx_http_canary_count_status(r, &sh->shr->shadow[ngx_http_canary_slot],
                                 status);

    return rc;
}


/* $canary_shadow: "1" when the (main) request was shadowed, else "0" */

ngx_int_t
ngx_http_canary_shadow_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_uint_t              sent;
    ngx_http_canary_ctx_t  *ctx;

    ctx = ngx_http_canary_get_ctx(r->main, 0);

    sent = (ctx && ctx->shadow == NGX_HTTP_CANARY_SHADOW_SENT);

    v->len = ngx_http_canary_shadow_values[sent].len;
    v->data = ngx_http_canary_shadow_values[sent].data;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;
}
