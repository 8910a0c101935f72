
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * The canary_status page as text, in the spirit of stub_status.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_canary_module.h"
#include "ngx_http_canary_status.h"
#include "ngx_http_canary_status_out.h"
#include "ngx_http_canary_status_text.h"


static u_char *ngx_http_canary_text_arms(u_char *p,
    ngx_http_canary_view_t *vw);
static u_char *ngx_http_canary_text_auto(ngx_http_canary_view_t *vw,
    u_char *p, u_char *last);


/*
 * Text, in the spirit of stub_status:
 *
 *   Rollouts: 1
 *   Redis: up 1 syncs 12 errors 0 refused 0 last_sync 1796000000
 *   Restored: 1 rollouts 2 at 1796000000     (once Redis was restored)
 *   Zone: size 1048576 used 40960 free 1007616 retired 2 retired_bytes 624
 *         freed 5718 waiting_for 0         (one line)
 *   Rollout checkout percent 12.5 state none source config updated 17..
 *    segment "US" 50
 *    stable requests 9 1xx 0 2xx 5 3xx 0 4xx 2 5xx 2 upstream_errors 2 errors 2
 *    stable time_ms 1234 p50_ms 2 p95_ms 750 p99_ms 750
 *    stable le_ms 1:3 2:2 5:0 ... 60000:0 inf:0
 */

ngx_int_t
ngx_http_canary_text(ngx_http_canary_out_t *o, ngx_http_canary_report_t *rp)
{
    u_char                      *p;
    size_t                       size;
    ngx_uint_t                   i, v, s, b;
    ngx_str_t                   *name;
    ngx_http_canary_view_t      *vw;
    ngx_http_canary_counters_t  *c;
    ngx_http_canary_snapshot_t  *snap;

    p = ngx_http_canary_reserve(o, 5 * NGX_HTTP_CANARY_LINE
                                   + 16 * NGX_HTTP_CANARY_NUM);
    if (p == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(p, "Rollouts: %ui\n"
                    "Redis: up %uA syncs %uA errors %uA refused %uA "
                    "last_sync %uA\n",
                    rp->nviews, rp->redis_up, rp->syncs, rp->sync_errors,
                    rp->refused, rp->last_sync);

    if (rp->redis_node[0]) {
        p = ngx_sprintf(p, "Redis node: %s\n", rp->redis_node);
    }

    if (rp->restores) {
        p = ngx_sprintf(p, "Restored: %uA rollouts %uA at %uA\n",
                        rp->restores, rp->restored_rollouts, rp->restored);
    }

    p = ngx_sprintf(p, "Zone: size %uz used %uz free %uz retired %ui "
                    "retired_bytes %uz freed %uA waiting_for %P\n",
                    rp->zone_size, rp->zone_size - rp->zone_free,
                    rp->zone_free, rp->retired, rp->retired_bytes,
                    rp->freed, rp->holder);

    o->buf->last = p;

    for (i = 0; i < rp->nviews; i++) {
        vw = &rp->views[i];
        snap = vw->snap;
        name = &vw->rollout->name;

        size = NGX_HTTP_CANARY_LINE + name->len + 2 * NGX_HTTP_CANARY_NUM
               + vw->nvariants
                 * (3 * NGX_HTTP_CANARY_LINE
                    + (NGX_HTTP_CANARY_HIST_BUCKETS + 16)
                      * NGX_HTTP_CANARY_NUM)
               + ngx_http_canary_arms_size(vw);

        for (v = 0; v < vw->nvariants; v++) {
            size += 3 * ngx_http_canary_variant_name(vw, v)->len;
        }

        for (s = 0; s < snap->nsegments; s++) {
            size += NGX_HTTP_CANARY_LINE
                    + ngx_http_canary_esc_len(&snap->segments[s].value,
                                              NGX_HTTP_CANARY_ESC_LABEL);
        }

        p = ngx_http_canary_reserve(o, size);
        if (p == NULL) {
            return NGX_ERROR;
        }

        p = ngx_sprintf(p, "Rollout %V percent ", name);
        p = ngx_http_canary_percent(p, snap->percent);
        p = ngx_sprintf(p, " state %V source %V updated %T last_sync %T\n",
                        ngx_http_canary_state(snap->state),
                        &ngx_http_canary_source_names[snap->source],
                        snap->updated, vw->synced);

        for (s = 0; s < snap->nsegments; s++) {
            p = ngx_cpymem(p, " segment \"", sizeof(" segment \"") - 1);
            p = ngx_http_canary_esc(p, &snap->segments[s].value,
                                    NGX_HTTP_CANARY_ESC_LABEL);
            *p++ = '"';
            *p++ = ' ';
            p = ngx_http_canary_percent(p, snap->segments[s].percent);
            *p++ = '\n';
        }

        p = ngx_http_canary_text_arms(p, vw);

        if (snap->shadow || vw->nvariants > vw->rollout->nvariants) {
            p = ngx_cpymem(p, " shadow_percent ",
                           sizeof(" shadow_percent ") - 1);
            p = ngx_http_canary_percent(p, snap->shadow);
            *p++ = '\n';
        }

        for (v = 0; v < vw->nvariants; v++) {
            c = &vw->sum[v];
            name = ngx_http_canary_variant_name(vw, v);

            p = ngx_sprintf(p, " %V requests %uA 1xx %uA 2xx %uA 3xx %uA"
                            " 4xx %uA 5xx %uA upstream_errors %uA"
                            " errors %uA\n",
                            name, c->requests, c->responses[0],
                            c->responses[1], c->responses[2],
                            c->responses[3], c->responses[4],
                            c->upstream_errors, c->errors);

            p = ngx_sprintf(p, " %V time_ms %uA p50_ms ", name,
                            c->time_sum_ms);
            p = ngx_http_canary_quantile(p, c, vw->count[v], 50);
            p = ngx_cpymem(p, " p95_ms ", sizeof(" p95_ms ") - 1);
            p = ngx_http_canary_quantile(p, c, vw->count[v], 95);
            p = ngx_cpymem(p, " p99_ms ", sizeof(" p99_ms ") - 1);
            p = ngx_http_canary_quantile(p, c, vw->count[v], 99);

            p = ngx_sprintf(p, "\n %V le_ms", name);

            for (b = 0; b < NGX_HTTP_CANARY_HIST_BUCKETS - 1; b++) {
                p = ngx_sprintf(p, " %M:%uA", ngx_http_canary_hist_bounds[b],
                                c->hist[b]);
            }

            p = ngx_sprintf(p, " inf:%uA\n", c->hist[b]);
        }

        o->buf->last = p;

        if (vw->autost) {
            p = ngx_http_canary_reserve(o, NGX_HTTP_CANARY_AUTO_STATUS_LEN);
            if (p == NULL) {
                return NGX_ERROR;
            }

            o->buf->last = ngx_http_canary_text_auto(vw, p, p
                                           + NGX_HTTP_CANARY_AUTO_STATUS_LEN);
        }
    }

    return NGX_OK;
}


/* the arms' lines, see ngx_http_canary_arms_shown() */

static u_char *
ngx_http_canary_text_arms(u_char *p, ngx_http_canary_view_t *vw)
{
    ngx_uint_t                  v, on, users;
    ngx_http_canary_variant_t  *var;

    if (!ngx_http_canary_arms_shown(vw)) {
        return p;
    }

    for (v = 1; v <= vw->rollout->narms; v++) {
        var = &vw->rollout->variants[v];
        on = !(vw->snap->arms_off & (1 << (v - 1)));

        users = ngx_http_canary_set_size(vw->snap->arm_users[v - 1]);

        p = ngx_sprintf(p, " arm %V weight %uD %s users %ui\n",
                        &var->name, vw->snap->weight[v - 1],
                        on ? "on" : "off", users);
    }

    return p;
}


/*
 * An automatic rollout's step, time to the next decision and last
 * decision, as the controller (ngx_http_canary_auto.c) read them from
 * Redis:
 *
 *    auto step 2 of 5 next_decision 1234ms failures 0 [gate 10]
 *    auto last advance by host/127.0.0.1:80: passed: ...; step 2 of 5
 */

static u_char *
ngx_http_canary_text_auto(ngx_http_canary_view_t *vw, u_char *p,
    u_char *last)
{
    ngx_http_canary_rollout_t      *ro;
    ngx_http_canary_auto_status_t  *st;

    ro = vw->rollout;
    st = vw->autost;

    p = ngx_slprintf(p, last, " auto step %ui of %ui next_decision ",
                     st->step, st->nsteps);

    p = (vw->next < 0) ? ngx_slprintf(p, last, "-")
                       : ngx_slprintf(p, last, "%Lms", vw->next);

    p = ngx_slprintf(p, last, " failures %ui", st->failures);

    if (st->gate) {
        p = ngx_slprintf(p, last, " gate ");
        p = ngx_http_canary_percent(p, st->gate);
    }

    if (st->dark) {
        p = ngx_slprintf(p, last, " phase dark passed %ui of %uD",
                         st->dark_passed, ro->policy->shadow_intervals);
    }

    p = ngx_slprintf(p, last, "\n");

    if (st->decision_len) {
        p = ngx_slprintf(p, last, " auto last %*s by %*s: %*s\n",
                         st->decision_len, st->decision, st->decided_by_len,
                         st->decided_by, st->reason_len, st->reason);
    }

    return p;
}
