
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * The canary_status page as JSON (the dashboard's script polls it).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_canary_module.h"
#include "ngx_http_canary_status.h"
#include "ngx_http_canary_status_out.h"
#include "ngx_http_canary_status_json.h"


static ngx_int_t ngx_http_canary_json_variant(ngx_http_canary_out_t *o,
    ngx_http_canary_view_t *vw, ngx_uint_t v);
static u_char *ngx_http_canary_json_arms(u_char *p,
    ngx_http_canary_view_t *vw);
static u_char *ngx_http_canary_json_auto(ngx_http_canary_report_t *rp,
    ngx_http_canary_view_t *vw, u_char *p, u_char *last);


/*
 * JSON:
 *
 *   {"time_ms":..,"histogram_bounds_ms":[1,2,..,60000],
 *    "zone":{"size":..,"used":..,"free":..,"retired":..,
 *            "retired_bytes":..,"freed":..,"waiting_for":pid|null},
 *    "redis":{"connected":..,"syncs":..,"sync_errors":..,
 *             "refused_values":..,"last_sync":..|null,
 *             "restored":{"count":..,"rollouts":..,"at":..}|null
 *             [,"node":"ip:port"]},
 *    "rollouts":[{"name":..,"percent":..,"state":..,"source":..,
 *                 "updated":..,"updated_ms":..,
 *                 "segments":[{"value":..,"percent":..}],
 *                 "canary_users":..,"stable_users":..,
 *                 "variants":{"stable":{..},"canary":{..}}}]}
 */

ngx_int_t
ngx_http_canary_json(ngx_http_canary_out_t *o, ngx_http_canary_report_t *rp)
{
    u_char      *p;
    ngx_uint_t   i, b;

    p = ngx_http_canary_reserve(o, 7 * NGX_HTTP_CANARY_LINE
                                   + (NGX_HTTP_CANARY_HIST_BUCKETS + 17)
                                     * NGX_HTTP_CANARY_NUM
                                   + ngx_http_canary_esc_len(&rp->api,
                                                  NGX_HTTP_CANARY_ESC_JSON));
    if (p == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(p, "{\"version\":1,\"time_ms\":%M,", rp->now_msec);

    if (rp->api.len) {
        /* canary_status api=: the dashboard acts through it */
        p = ngx_http_canary_cpy(p, "\"api\":\"");
        p = ngx_http_canary_esc(p, &rp->api, NGX_HTTP_CANARY_ESC_JSON);
        p = ngx_http_canary_cpy(p, "\",");
    }

    p = ngx_http_canary_cpy(p, "\"histogram_bounds_ms\":[");

    for (b = 0; b < NGX_HTTP_CANARY_HIST_BUCKETS - 1; b++) {
        p = ngx_sprintf(p, "%s%M", b ? "," : "",
                        ngx_http_canary_hist_bounds[b]);
    }

    p = ngx_sprintf(p, "],\n\"zone\":{\"size\":%uz,\"used\":%uz,"
                    "\"free\":%uz,\"retired\":%ui,\"retired_bytes\":%uz,"
                    "\"freed\":%uA,\"waiting_for\":",
                    rp->zone_size, rp->zone_size - rp->zone_free,
                    rp->zone_free, rp->retired, rp->retired_bytes,
                    rp->freed);

    if (rp->holder) {
        p = ngx_sprintf(p, "%P},\n", rp->holder);

    } else {
        p = ngx_sprintf(p, "null},\n");
    }

    p = ngx_sprintf(p, "\"redis\":{\"connected\":%s,\"syncs\":%uA,"
                    "\"sync_errors\":%uA,\"refused_values\":%uA,"
                    "\"last_sync\":",
                    rp->redis_up ? "true" : "false",
                    rp->syncs, rp->sync_errors, rp->refused);

    if (rp->last_sync) {
        p = ngx_sprintf(p, "%uA,\"restored\":", rp->last_sync);

    } else {
        p = ngx_sprintf(p, "null,\"restored\":");
    }

    if (rp->restores) {
        p = ngx_sprintf(p, "{\"count\":%uA,\"rollouts\":%uA,\"at\":%uA}",
                        rp->restores, rp->restored_rollouts, rp->restored);

    } else {
        p = ngx_sprintf(p, "null");
    }

    /* an address: digits, dots, colons, brackets, nothing to escape */

    if (rp->redis_node[0]) {
        p = ngx_sprintf(p, ",\"node\":\"%s\"", rp->redis_node);
    }

    p = ngx_sprintf(p, "},\n\"rollouts\":[");

    o->buf->last = p;

    for (i = 0; i < rp->nviews; i++) {
        if (ngx_http_canary_json_rollout(o, rp, i) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    p = ngx_http_canary_reserve(o, 8);
    if (p == NULL) {
        return NGX_ERROR;
    }

    o->buf->last = ngx_cpymem(p, "\n]}\n", 4);

    return NGX_OK;
}


/* the i-th rollout's object in "rollouts", after a comma but the first */

ngx_int_t
ngx_http_canary_json_rollout(ngx_http_canary_out_t *o,
    ngx_http_canary_report_t *rp, ngx_uint_t i)
{
    u_char                      *p;
    size_t                       size;
    ngx_uint_t                   v, s;
    ngx_http_canary_view_t      *vw;
    ngx_http_canary_snapshot_t  *snap;

    vw = &rp->views[i];
    snap = vw->snap;

    size = 2 * NGX_HTTP_CANARY_LINE + 16 + 9 * NGX_HTTP_CANARY_NUM
           + ngx_http_canary_esc_len(&vw->rollout->name,
                                     NGX_HTTP_CANARY_ESC_JSON)
           + ngx_http_canary_arms_size(vw);

    for (s = 0; s < snap->nsegments; s++) {
        size += 32 + NGX_HTTP_CANARY_NUM
                + ngx_http_canary_esc_len(&snap->segments[s].value,
                                          NGX_HTTP_CANARY_ESC_JSON);
    }

    p = ngx_http_canary_reserve(o, size);
    if (p == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(p, i ? ",\n{\"name\":\"" : "\n{\"name\":\"",
                   i ? sizeof(",\n{\"name\":\"") - 1
                     : sizeof("\n{\"name\":\"") - 1);
    p = ngx_http_canary_esc(p, &vw->rollout->name,
                            NGX_HTTP_CANARY_ESC_JSON);
    p = ngx_cpymem(p, "\",\"percent\":", sizeof("\",\"percent\":") - 1);
    p = ngx_http_canary_percent(p, snap->percent);
    p = ngx_cpymem(p, ",\"shadow\":", sizeof(",\"shadow\":") - 1);
    p = ngx_http_canary_percent(p, snap->shadow);
    p = ngx_sprintf(p, ",\"state\":\"%V\",\"source\":\"%V\","
                    "\"updated\":%T,\"updated_ms\":%M,\"last_sync\":%T,"
                    "\"canary_users\":%ui,"
                    "\"stable_users\":%ui,\"segments\":[",
                    ngx_http_canary_state(snap->state),
                    &ngx_http_canary_source_names[snap->source],
                    snap->updated, snap->updated_ms, vw->synced,
                    ngx_http_canary_set_size(snap->canary_users),
                    ngx_http_canary_set_size(snap->stable_users));

    for (s = 0; s < snap->nsegments; s++) {
        p = ngx_cpymem(p, s ? ",{\"value\":\"" : "{\"value\":\"",
                       s ? sizeof(",{\"value\":\"") - 1
                         : sizeof("{\"value\":\"") - 1);
        p = ngx_http_canary_esc(p, &snap->segments[s].value,
                                NGX_HTTP_CANARY_ESC_JSON);
        p = ngx_cpymem(p, "\",\"percent\":",
                       sizeof("\",\"percent\":") - 1);
        p = ngx_http_canary_percent(p, snap->segments[s].percent);
        *p++ = '}';
    }

    *p++ = ']';
    *p++ = ',';

    p = ngx_http_canary_json_arms(p, vw);

    o->buf->last = p;

    if (vw->autost) {
        p = ngx_http_canary_reserve(o, NGX_HTTP_CANARY_AUTO_STATUS_LEN);
        if (p == NULL) {
            return NGX_ERROR;
        }

        o->buf->last = ngx_http_canary_json_auto(rp, vw, p, p
                                       + NGX_HTTP_CANARY_AUTO_STATUS_LEN);
    }

    p = ngx_http_canary_reserve(o, sizeof("\"variants\":{"));
    if (p == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(p, "\"variants\":{", sizeof("\"variants\":{") - 1);

    o->buf->last = p;

    for (v = 0; v < vw->nvariants; v++) {
        if (ngx_http_canary_json_variant(o, vw, v) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    p = ngx_http_canary_reserve(o, 2);
    if (p == NULL) {
        return NGX_ERROR;
    }

    *p++ = '}';
    *p++ = '}';

    o->buf->last = p;

    return NGX_OK;
}


static ngx_int_t
ngx_http_canary_json_variant(ngx_http_canary_out_t *o,
    ngx_http_canary_view_t *vw, ngx_uint_t v)
{
    u_char                      *p;
    ngx_str_t                   *name;
    ngx_uint_t                   b;
    ngx_http_canary_counters_t  *c;

    name = ngx_http_canary_variant_name(vw, v);

    p = ngx_http_canary_reserve(o, NGX_HTTP_CANARY_LINE * 2
                                   + (NGX_HTTP_CANARY_HIST_BUCKETS + 11)
                                     * NGX_HTTP_CANARY_NUM
                                   + ngx_http_canary_esc_len(name,
                                                 NGX_HTTP_CANARY_ESC_JSON));
    if (p == NULL) {
        return NGX_ERROR;
    }

    c = &vw->sum[v];

    if (v) {
        *p++ = ',';
    }

    *p++ = '"';
    p = ngx_http_canary_esc(p, name, NGX_HTTP_CANARY_ESC_JSON);

    p = ngx_sprintf(p, "\":{\"requests\":%uA,"
                    "\"responses\":{\"1xx\":%uA,\"2xx\":%uA,\"3xx\":%uA,"
                    "\"4xx\":%uA,\"5xx\":%uA},\"upstream_errors\":%uA,"
                    "\"errors\":%uA,\"request_time_sum_ms\":%uA,"
                    "\"request_time_count\":%uA,"
                    "\"request_time_histogram\":[",
                    c->requests, c->responses[0], c->responses[1],
                    c->responses[2], c->responses[3], c->responses[4],
                    c->upstream_errors, c->errors, c->time_sum_ms,
                    vw->count[v]);

    for (b = 0; b < NGX_HTTP_CANARY_HIST_BUCKETS; b++) {
        p = ngx_sprintf(p, "%s%uA", b ? "," : "", c->hist[b]);
    }

    *p++ = ']';
    *p++ = '}';

    o->buf->last = p;

    return NGX_OK;
}


/* the arms' "arms":[...], member, see ngx_http_canary_arms_shown() */

static u_char *
ngx_http_canary_json_arms(u_char *p, ngx_http_canary_view_t *vw)
{
    ngx_uint_t                  v, on, users;
    ngx_http_canary_variant_t  *var;

    if (!ngx_http_canary_arms_shown(vw)) {
        return p;
    }

    p = ngx_http_canary_cpy(p, "\"arms\":[");

    for (v = 1; v <= vw->rollout->narms; v++) {
        var = &vw->rollout->variants[v];
        on = !(vw->snap->arms_off & (1 << (v - 1)));

        users = ngx_http_canary_set_size(vw->snap->arm_users[v - 1]);

        p = ngx_cpymem(p, v > 1 ? ",{\"name\":\"" : "{\"name\":\"",
                       v > 1 ? sizeof(",{\"name\":\"") - 1
                             : sizeof("{\"name\":\"") - 1);
        p = ngx_http_canary_esc(p, &var->name, NGX_HTTP_CANARY_ESC_JSON);
        p = ngx_http_canary_cpy(p, "\",\"upstream\":\"");
        p = ngx_http_canary_esc(p, &var->upstream, NGX_HTTP_CANARY_ESC_JSON);
        p = ngx_sprintf(p, "\",\"weight\":%uD,\"on\":%s,\"users\":%ui}",
                        vw->snap->weight[v - 1], on ? "true" : "false",
                        users);
    }

    p = ngx_http_canary_cpy(p, "],");

    return p;
}


/*
 * An automatic rollout's step, time to the next decision and last
 * decision with its figures, as the controller (ngx_http_canary_auto.c)
 * read them from Redis: the member "auto":{...}, followed by a comma
 */

static u_char *
ngx_http_canary_json_auto(ngx_http_canary_report_t *rp,
    ngx_http_canary_view_t *vw, u_char *p, u_char *last)
{
    ngx_uint_t                      v;
    ngx_http_canary_rollout_t      *ro;
    ngx_http_canary_auto_status_t  *st;

    ro = vw->rollout;
    st = vw->autost;

    p = ngx_slprintf(p, last, "\"auto\":{\"step\":%ui,\"steps\":%ui,"
                     "\"ladder\":[", st->step, st->nsteps);

    for (v = 0; v < ro->policy->nsteps; v++) {
        p = ngx_slprintf(p, last, v ? ",%uD.%02uD" : "%uD.%02uD",
                         ro->policy->steps[v] / 100,
                         ro->policy->steps[v] % 100);
    }

    p = ngx_slprintf(p, last, "],\"phase\":\"%s\",\"dark_passed\":%ui,"
                     "\"interval_ms\":%uL,\"next_decision_ms\":",
                     st->dark ? "dark" : "live", st->dark_passed,
                     ro->policy->interval);

    p = (vw->next < 0) ? ngx_slprintf(p, last, "null")
                       : ngx_slprintf(p, last, "%L", vw->next);

    p = ngx_slprintf(p, last, ",\"failures\":%ui,\"gate\":",
                     st->failures);

    if (st->gate) {
        p = ngx_http_canary_percent(p, st->gate);

    } else {
        p = ngx_slprintf(p, last, "null");
    }

    p = ngx_slprintf(p, last, ",\"leader\":%s,\"last_decision\":",
                     rp->auto_leader ? "true" : "false");

    if (st->decision_len == 0) {
        return ngx_slprintf(p, last, "null},");
    }

    p = ngx_slprintf(p, last, "{\"decision\":\"");
    p = (u_char *) ngx_escape_json(p, st->decision, st->decision_len);
    p = ngx_slprintf(p, last, "\",\"at\":%uL,\"by\":\"", st->decided_at);
    p = (u_char *) ngx_escape_json(p, st->decided_by, st->decided_by_len);
    p = ngx_slprintf(p, last, "\",\"reason\":\"");
    p = (u_char *) ngx_escape_json(p, st->reason, st->reason_len);
    p = ngx_slprintf(p, last, "\",\"interval\":%uL,\"nodes\":%ui",
                     st->interval, st->nodes);

    if (st->interval) {
        for (v = 2; v-- > 0; /* void */) {
            p = ngx_slprintf(p, last, ",\"%s\":{\"requests\":%uL,"
                             "\"errors\":%uL,\"error_rate_ppm\":%uL,"
                             "\"p99_ms\":", v ? "canary" : "stable",
                             st->requests[v], st->errors[v],
                             st->error_rate[v]);

            p = (st->p99[v] == NGX_HTTP_CANARY_P99_INF)
                ? ngx_slprintf(p, last, "null}")
                : ngx_slprintf(p, last, "%uL}", st->p99[v]);
        }
    }

    return ngx_slprintf(p, last, "}},");
}
