
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * The canary_status dashboard, ?format=html.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_canary_module.h"
#include "ngx_http_canary_status.h"
#include "ngx_http_canary_status_out.h"
#include "ngx_http_canary_status_html.h"
#include "ngx_http_canary_dashboard.h"


/*
 * The dashboard: the page of ngx_http_canary_dashboard.html, with the
 * state at the time of the request rendered into it (so that it shows
 * something without JavaScript too); its script then polls ?format=json.
 */

ngx_int_t
ngx_http_canary_html(ngx_http_canary_out_t *o, ngx_http_canary_report_t *rp)
{
    u_char                      *p;
    size_t                       size;
    ngx_str_t                   *name;
    ngx_uint_t                   i, v, s;
    ngx_atomic_uint_t            requests, errors5xx, upstream;
    ngx_http_canary_view_t      *vw;
    ngx_http_canary_counters_t  *c;
    ngx_http_canary_snapshot_t  *snap;

    /* its own style and script only, never in another site's frame */

    if (ngx_http_canary_header(o->request, "Content-Security-Policy",
                               (char *) ngx_http_canary_dashboard_csp)
        != NGX_OK
        || ngx_http_canary_header(o->request, "X-Frame-Options", "DENY")
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    p = ngx_http_canary_reserve(o, sizeof(ngx_http_canary_dashboard_head));
    if (p == NULL) {
        return NGX_ERROR;
    }

    o->buf->last = ngx_cpymem(p, ngx_http_canary_dashboard_head,
                              sizeof(ngx_http_canary_dashboard_head) - 1);

    for (i = 0; i < rp->nviews; i++) {
        vw = &rp->views[i];
        snap = vw->snap;
        name = &vw->rollout->name;

        size = 4 * NGX_HTTP_CANARY_LINE
               + 2 * ngx_http_canary_esc_len(name, NGX_HTTP_CANARY_ESC_HTML)
               + vw->nvariants
                 * (NGX_HTTP_CANARY_LINE + 8 * NGX_HTTP_CANARY_NUM);

        for (s = 0; s < snap->nsegments; s++) {
            size += 64 + NGX_HTTP_CANARY_NUM
                    + ngx_http_canary_esc_len(&snap->segments[s].value,
                                              NGX_HTTP_CANARY_ESC_HTML);
        }

        p = ngx_http_canary_reserve(o, size);
        if (p == NULL) {
            return NGX_ERROR;
        }

        p = ngx_cpymem(p, "<tr><td class=\"name\">",
                       sizeof("<tr><td class=\"name\">") - 1);
        p = ngx_http_canary_esc(p, name, NGX_HTTP_CANARY_ESC_HTML);
        p = ngx_cpymem(p, "</td><td>", sizeof("</td><td>") - 1);
        p = ngx_http_canary_percent(p, snap->percent);
        p = ngx_sprintf(p, "%%</td><td>%V</td><td>%V</td><td>",
                        ngx_http_canary_state(snap->state),
                        &ngx_http_canary_source_names[snap->source]);

        for (s = 0; s < snap->nsegments; s++) {
            p = ngx_http_canary_esc(p, &snap->segments[s].value,
                                    NGX_HTTP_CANARY_ESC_HTML);
            *p++ = ' ';
            p = ngx_http_canary_percent(p, snap->segments[s].percent);
            p = ngx_cpymem(p, "% ", 2);
        }

        p = ngx_cpymem(p, "</td>", sizeof("</td>") - 1);

        /* the table's columns: stable, then canary (every arm) */

        c = &vw->sum[NGX_HTTP_CANARY_STABLE];

        p = ngx_sprintf(p, "<td>%uA</td><td>%uA</td><td>%uA</td>",
                        c->requests, c->responses[4], c->upstream_errors);

        requests = 0;
        errors5xx = 0;
        upstream = 0;

        for (v = 1; v <= vw->rollout->narms; v++) {
            requests += vw->sum[v].requests;
            errors5xx += vw->sum[v].responses[4];
            upstream += vw->sum[v].upstream_errors;
        }

        p = ngx_sprintf(p, "<td>%uA</td><td>%uA</td><td>%uA</td>",
                        requests, errors5xx, upstream);

        p = ngx_cpymem(p, "</tr>\n", sizeof("</tr>\n") - 1);

        o->buf->last = p;
    }

    p = ngx_http_canary_reserve(o, sizeof(ngx_http_canary_dashboard_tail));
    if (p == NULL) {
        return NGX_ERROR;
    }

    o->buf->last = ngx_cpymem(p, ngx_http_canary_dashboard_tail,
                              sizeof(ngx_http_canary_dashboard_tail) - 1);

    return NGX_OK;
}

