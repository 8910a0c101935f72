
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * The canary_status endpoint.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_canary_module.h"


static ngx_int_t ngx_http_canary_status_handler(ngx_http_request_t *r);
static void ngx_http_canary_sum(ngx_http_canary_main_conf_t *cmcf,
    ngx_http_canary_shrollout_t *shr, ngx_uint_t variant,
    ngx_http_canary_counters_t *sum);


char *
ngx_http_canary_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_canary_status_handler;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_canary_status_handler(ngx_http_request_t *r)
{
    size_t                        size;
    ngx_int_t                     rc;
    ngx_buf_t                    *b;
    ngx_uint_t                    i, v;
    ngx_chain_t                   out;
    ngx_http_canary_rollout_t    *ro;
    ngx_http_canary_snapshot_t   *snap;
    ngx_http_canary_counters_t    sum;
    ngx_http_canary_main_conf_t  *cmcf;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);

    if (rc != NGX_OK) {
        return rc;
    }

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_canary_module);
    ro = cmcf->rollouts.elts;

    size = sizeof("Rollouts: \n") + NGX_INT_T_LEN;

    for (i = 0; i < cmcf->rollouts.nelts; i++) {
        size += ro[i].name.len + 128
                + NGX_HTTP_CANARY_NVARIANTS * (64 + 8 * NGX_ATOMIC_T_LEN);
    }

    b = ngx_create_temp_buf(r->pool, size);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = ngx_sprintf(b->last, "Rollouts: %ui\n", cmcf->rollouts.nelts);

    for (i = 0; i < cmcf->rollouts.nelts; i++) {
        snap = ro[i].sh->snapshot;

        b->last = ngx_sprintf(b->last, "%V percent %ui.%02ui source %V\n",
                              &ro[i].name, snap->percent / 100,
                              snap->percent % 100,
                              &ngx_http_canary_source_names[snap->source]);

        for (v = 0; v < NGX_HTTP_CANARY_NVARIANTS; v++) {
            ngx_http_canary_sum(cmcf, ro[i].sh, v, &sum);

            b->last = ngx_sprintf(b->last,
                                  " %V requests %uA 1xx %uA 2xx %uA 3xx %uA"
                                  " 4xx %uA 5xx %uA upstream_errors %uA\n",
                                  &ngx_http_canary_variant_names[v],
                                  sum.requests, sum.responses[0],
                                  sum.responses[1], sum.responses[2],
                                  sum.responses[3], sum.responses[4],
                                  sum.upstream_errors);
        }
    }

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = b->last - b->pos;
    ngx_str_set(&r->headers_out.content_type, "text/plain");

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


static void
ngx_http_canary_sum(ngx_http_canary_main_conf_t *cmcf,
    ngx_http_canary_shrollout_t *shr, ngx_uint_t variant,
    ngx_http_canary_counters_t *sum)
{
    ngx_uint_t                   s, k;
    ngx_atomic_t                *dst, *src;
    ngx_http_canary_counters_t  *c;

    ngx_memzero(sum, sizeof(ngx_http_canary_counters_t));

    dst = (ngx_atomic_t *) sum;

    for (s = 0; s < cmcf->sh->nslots; s++) {
        c = &shr->slots[s].v[variant];
        src = (ngx_atomic_t *) c;

        for (k = 0; k < sizeof(ngx_http_canary_counters_t)
                        / sizeof(ngx_atomic_t); k++)
        {
            dst[k] += src[k];
        }
    }
}
