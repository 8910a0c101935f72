
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * The "explain" query of canary_status: the decision that a request with
 * given values would get now, and how it was reached, as JSON.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_canary_module.h"
#include "ngx_http_canary_status.h"
#include "ngx_http_canary_status_out.h"
#include "ngx_http_canary_explain.h"


static ngx_int_t ngx_http_canary_explain_json(ngx_http_request_t *r,
    ngx_str_t *name, ngx_http_canary_input_t *in, ngx_uint_t index,
    ngx_http_canary_decision_t *d, ngx_http_canary_decision_t *decisions);


/*
 * ?explain=ROLLOUT&key=K[&segment=S][&override=O]: the decision that a
 * request with these values would get now, as JSON.  The key, override
 * and segment are the given ones, for the rollout and for the rollouts it
 * requires; "match" is evaluated on this status request's own variable
 * (so its header can be set to the user's); see ngx_http_canary_evaluate().
 */

ngx_int_t
ngx_http_canary_explain(ngx_http_request_t *r, ngx_str_t *name)
{
    ngx_int_t                     index, rc;
    ngx_http_canary_input_t       in;
    ngx_http_canary_ctx_t         ctx;
    ngx_http_canary_decision_t    d;
    ngx_http_canary_main_conf_t  *cmcf;

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_canary_module);

    index = ngx_http_canary_find(cmcf, name);

    if (index == NGX_ERROR) {
        return ngx_http_canary_bad_request(r, "unknown rollout", name);
    }

    ngx_memzero(&in, sizeof(ngx_http_canary_input_t));

    rc = ngx_http_canary_arg(r, "key", &in.key);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return ngx_http_canary_bad_request(r, "explain needs a key", NULL);
    }

    rc = ngx_http_canary_arg(r, "override", &in.override);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    in.has_override = (rc == NGX_OK);

    rc = ngx_http_canary_arg(r, "segment", &in.segment);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    in.has_segment = (rc == NGX_OK);
    in.percent = -1;
    in.match = -1;

    /* every decision in "all", so that the JSON lists those it made */

    ngx_memzero(&ctx, sizeof(ngx_http_canary_ctx_t));

    ctx.all = ngx_pcalloc(r->pool, cmcf->rollouts.nelts
                                   * sizeof(ngx_http_canary_decision_t));
    if (ctx.all == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    d = ngx_http_canary_evaluate(r, index, &ctx, &in, 0);

    return ngx_http_canary_explain_json(r, name, &in, index, &d, ctx.all);
}


/* the decision and how it was reached, as JSON */

static ngx_int_t
ngx_http_canary_explain_json(ngx_http_request_t *r, ngx_str_t *name,
    ngx_http_canary_input_t *in, ngx_uint_t index,
    ngx_http_canary_decision_t *d, ngx_http_canary_decision_t *decisions)
{
    u_char                       *p;
    size_t                        size;
    ngx_uint_t                    i, j;
    ngx_http_canary_out_t         o;
    ngx_http_canary_rollout_t    *ro;
    ngx_http_canary_snapshot_t   *snap;
    ngx_http_canary_main_conf_t  *cmcf;

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_canary_module);

    ro = cmcf->rollouts.elts;

    size = 4 * NGX_HTTP_CANARY_LINE
           + ngx_http_canary_esc_len(name, NGX_HTTP_CANARY_ESC_JSON)
           + ngx_http_canary_esc_len(&in->key, NGX_HTTP_CANARY_ESC_JSON)
           + ngx_http_canary_esc_len(&in->override, NGX_HTTP_CANARY_ESC_JSON)
           + ngx_http_canary_esc_len(&in->segment, NGX_HTTP_CANARY_ESC_JSON)
           + ngx_http_canary_esc_len(&ro[index].variants[d->variant].name,
                                     NGX_HTTP_CANARY_ESC_JSON);

    for (i = 0; i < ro[index].nrequires; i++) {
        j = ro[index].requires_index[i];
        size += NGX_HTTP_CANARY_LINE
                + ngx_http_canary_esc_len(&ro[j].name,
                                          NGX_HTTP_CANARY_ESC_JSON)
                + ngx_http_canary_esc_len(
                      &ro[j].variants[decisions[j].variant].name,
                      NGX_HTTP_CANARY_ESC_JSON);
    }

    ngx_memzero(&o, sizeof(ngx_http_canary_out_t));
    o.request = r;
    o.last = &o.out;

    p = ngx_http_canary_reserve(&o, size);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(p, "{\"rollout\":\"", sizeof("{\"rollout\":\"") - 1);
    p = ngx_http_canary_esc(p, name, NGX_HTTP_CANARY_ESC_JSON);
    p = ngx_cpymem(p, "\",\"key\":\"", sizeof("\",\"key\":\"") - 1);
    p = ngx_http_canary_esc(p, &in->key, NGX_HTTP_CANARY_ESC_JSON);
    p = ngx_cpymem(p, "\",\"segment\":", sizeof("\",\"segment\":") - 1);

    if (in->has_segment) {
        *p++ = '"';
        p = ngx_http_canary_esc(p, &in->segment, NGX_HTTP_CANARY_ESC_JSON);
        *p++ = '"';

    } else {
        p = ngx_cpymem(p, "null", 4);
    }

    p = ngx_cpymem(p, ",\"override\":", sizeof(",\"override\":") - 1);

    if (in->has_override) {
        *p++ = '"';
        p = ngx_http_canary_esc(p, &in->override, NGX_HTTP_CANARY_ESC_JSON);
        *p++ = '"';

    } else {
        p = ngx_cpymem(p, "null", 4);
    }

    p = ngx_cpymem(p, ",\"bucket\":", sizeof(",\"bucket\":") - 1);

    if (d->has_bucket) {
        p = ngx_sprintf(p, "%ui", (ngx_uint_t) d->bucket);

    } else {
        p = ngx_cpymem(p, "null", 4);
    }

    p = ngx_cpymem(p, ",\"variant\":\"", sizeof(",\"variant\":\"") - 1);
    p = ngx_http_canary_esc(p, &ro[index].variants[d->variant].name,
                            NGX_HTTP_CANARY_ESC_JSON);
    p = ngx_sprintf(p, "\",\"reason\":\"%V\",\"percent\":",
                    &ngx_http_canary_reason_names[d->reason]);

    if (in->percent >= 0) {
        p = ngx_http_canary_percent(p, in->percent);

    } else {
        p = ngx_cpymem(p, "null", 4);
    }

    p = ngx_cpymem(p, ",\"match\":", sizeof(",\"match\":") - 1);

    if (in->match >= 0) {
        p = ngx_sprintf(p, "%s", in->match ? "true" : "false");

    } else {
        p = ngx_cpymem(p, "null", 4);
    }

    /* would a GET with this key be shadowed where the rollout is */

    snap = ro[index].sh->snapshot;

    p = ngx_sprintf(p, ",\"shadowed\":%s",
                    (ro[index].sh->shadow && snap->shadow
                     && d->variant == NGX_HTTP_CANARY_STABLE && d->has_bucket
                     && (d->reason == NGX_HTTP_CANARY_REASON_PERCENT
                         || d->reason == NGX_HTTP_CANARY_REASON_SEGMENT)
                     && in->percent >= 0
                     && d->bucket >= (ngx_uint_t) in->percent
                     && d->bucket < (ngx_uint_t) in->percent + snap->shadow)
                    ? "true" : "false");

    p = ngx_cpymem(p, ",\"requires\":[", sizeof(",\"requires\":[") - 1);

    for (i = 0; i < ro[index].nrequires; i++) {
        j = ro[index].requires_index[i];

        p = ngx_cpymem(p, i ? ",{\"rollout\":\"" : "{\"rollout\":\"",
                       i ? sizeof(",{\"rollout\":\"") - 1
                         : sizeof("{\"rollout\":\"") - 1);
        p = ngx_http_canary_esc(p, &ro[j].name, NGX_HTTP_CANARY_ESC_JSON);
        *p++ = '"';

        if (decisions[j].decided) {
            p = ngx_cpymem(p, ",\"variant\":\"",
                           sizeof(",\"variant\":\"") - 1);
            p = ngx_http_canary_esc(p,
                                 &ro[j].variants[decisions[j].variant].name,
                                 NGX_HTTP_CANARY_ESC_JSON);
            p = ngx_sprintf(p, "\",\"reason\":\"%V\"}",
                        &ngx_http_canary_reason_names[decisions[j].reason]);

        } else {
            /* not reached: an earlier requirement was already stable */
            p = ngx_cpymem(p, ",\"variant\":null,\"reason\":null}",
                           sizeof(",\"variant\":null,\"reason\":null}") - 1);
        }
    }

    p = ngx_cpymem(p, "]}\n", 3);

    o.buf->last = p;

    return ngx_http_canary_send(r, &o, "application/json");
}
