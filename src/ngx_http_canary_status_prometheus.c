
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * The canary_status page in the Prometheus text exposition format 0.0.4:
 * per variant, the counters and the request time histogram; per rollout,
 * gauges; then the module's own figures.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_canary_module.h"
#include "ngx_http_canary_status.h"
#include "ngx_http_canary_status_out.h"
#include "ngx_http_canary_status_prometheus.h"


static ngx_int_t ngx_http_canary_prom_labels(ngx_http_canary_out_t *o,
    ngx_http_canary_report_t *rp, ngx_str_t *lab);
static ngx_int_t ngx_http_canary_prom_variants(ngx_http_canary_out_t *o,
    ngx_http_canary_report_t *rp, ngx_str_t *lab, ngx_str_t *le);
static u_char *ngx_http_canary_prom_responses(u_char *p, ngx_str_t *rl,
    ngx_http_canary_counters_t *c);
static u_char *ngx_http_canary_prom_histogram(u_char *p, ngx_str_t *rl,
    ngx_http_canary_counters_t *c, ngx_atomic_uint_t count, ngx_str_t *le);
static ngx_int_t ngx_http_canary_prom_rollouts(ngx_http_canary_out_t *o,
    ngx_http_canary_report_t *rp, ngx_str_t *lab);
static ngx_int_t ngx_http_canary_prom_module(ngx_http_canary_out_t *o,
    ngx_http_canary_report_t *rp);
static ngx_int_t ngx_http_canary_prom_api(ngx_http_canary_out_t *o,
    ngx_http_canary_report_t *rp);
static ngx_int_t ngx_http_canary_prom_head(ngx_http_canary_out_t *o,
    char *name, char *type, char *help);
static size_t ngx_http_canary_rollout_label(ngx_str_t *labels);


static ngx_str_t  ngx_http_canary_class_names[] = {
    ngx_string("1xx"),
    ngx_string("2xx"),
    ngx_string("3xx"),
    ngx_string("4xx"),
    ngx_string("5xx")
};


/*
 * Prometheus text exposition format 0.0.4: every family's samples
 * together after its HELP and TYPE lines.
 */

ngx_int_t
ngx_http_canary_prom(ngx_http_canary_out_t *o, ngx_http_canary_report_t *rp)
{
    u_char      *q;
    ngx_str_t   *lab;
    ngx_str_t    le[NGX_HTTP_CANARY_HIST_BUCKETS];
    ngx_uint_t   b;
    u_char       lebuf[NGX_HTTP_CANARY_HIST_BUCKETS * NGX_HTTP_CANARY_NUM];

    /*
     * Everything that repeats is made once: the "le" values, and for each
     * rollout and variant the label set rollout="<escaped name>",
     * variant="<variant>", whose rollout="<escaped name>" prefix serves the
     * per-rollout series.  A line is then copies and one number.
     */

    q = lebuf;

    for (b = 0; b < NGX_HTTP_CANARY_HIST_BUCKETS - 1; b++) {
        le[b].data = q;
        q = ngx_http_canary_seconds(q, ngx_http_canary_hist_bounds[b]);
        le[b].len = q - le[b].data;
    }

    ngx_str_set(&le[NGX_HTTP_CANARY_HIST_BUCKETS - 1], "+Inf");

    lab = NULL;

    if (rp->nviews) {
        lab = ngx_palloc(o->request->pool, rp->nviews
                                    * NGX_HTTP_CANARY_VIEW_MAX
                                    * sizeof(ngx_str_t));
        if (lab == NULL) {
            return NGX_ERROR;
        }
    }

    if (ngx_http_canary_prom_labels(o, rp, lab) != NGX_OK
        || ngx_http_canary_prom_variants(o, rp, lab, le) != NGX_OK
        || ngx_http_canary_prom_rollouts(o, rp, lab) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_canary_prom_module(o, rp);
}


/* each rollout's and variant's label set, into lab[] */

static ngx_int_t
ngx_http_canary_prom_labels(ngx_http_canary_out_t *o,
    ngx_http_canary_report_t *rp, ngx_str_t *lab)
{
    u_char                  *p;
    size_t                   len;
    ngx_str_t               *rl, *vn;
    ngx_uint_t               i, v;
    ngx_http_canary_view_t  *vw;

    for (i = 0; i < rp->nviews; i++) {
        vw = &rp->views[i];

        len = ngx_http_canary_esc_len(&vw->rollout->name,
                                      NGX_HTTP_CANARY_ESC_LABEL);

        for (v = 0; v < vw->nvariants; v++) {
            vn = ngx_http_canary_variant_name(vw, v);

            p = ngx_pnalloc(o->request->pool,
                            sizeof("rollout=\"\",variant=\"\"") - 1
                            + len + ngx_http_canary_esc_len(vn,
                                                NGX_HTTP_CANARY_ESC_LABEL));
            if (p == NULL) {
                return NGX_ERROR;
            }

            rl = &lab[i * NGX_HTTP_CANARY_VIEW_MAX + v];
            rl->data = p;

            p = ngx_cpymem(p, "rollout=\"", sizeof("rollout=\"") - 1);
            p = ngx_http_canary_esc(p, &vw->rollout->name,
                                    NGX_HTTP_CANARY_ESC_LABEL);
            p = ngx_cpymem(p, "\",variant=\"", sizeof("\",variant=\"") - 1);
            p = ngx_http_canary_esc(p, vn, NGX_HTTP_CANARY_ESC_LABEL);
            *p++ = '"';

            rl->len = p - rl->data;
        }
    }

    return NGX_OK;
}


/* the families of per-variant series: counters and the histogram */

static ngx_int_t
ngx_http_canary_prom_variants(ngx_http_canary_out_t *o,
    ngx_http_canary_report_t *rp, ngx_str_t *lab, ngx_str_t *le)
{
    u_char                      *p;
    size_t                       line;
    ngx_str_t                   *rl;
    ngx_uint_t                   i, v, k;
    ngx_http_canary_view_t      *vw;
    ngx_http_canary_counters_t  *c;

    /*
     * The families of rollout and variant series, each with its lines per
     * rollout and variant; a one-line counter names its field
     */

    static struct {
        ngx_str_t    name;
        char        *type;
        char        *help;
        ngx_uint_t   lines;
        size_t       field;
    } families[] = {
        { ngx_string("requests_total"), "counter",
          "Requests routed in a canary location, by rollout and variant.",
          1, offsetof(ngx_http_canary_counters_t, requests) },
        { ngx_string("responses_total"), "counter",
          "Responses by class of the final status.", 5, 0 },
        { ngx_string("upstream_errors_total"), "counter",
          "Requests with a connect error, timeout or 502/503/504.",
          1, offsetof(ngx_http_canary_counters_t, upstream_errors) },
        { ngx_string("errors_total"), "counter",
          "Requests answered 5xx or with an upstream error, as auto "
          "judges.",
          1, offsetof(ngx_http_canary_counters_t, errors) },
        { ngx_string("request_duration_seconds"), "histogram",
          "Request time, as $request_time.",
          NGX_HTTP_CANARY_HIST_BUCKETS + 2, 0 }
    };

    for (k = 0; k < sizeof(families) / sizeof(families[0]); k++) {

        if (ngx_http_canary_prom_head(o, (char *) families[k].name.data,
                                      families[k].type, families[k].help)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        for (i = 0; i < rp->nviews; i++) {
            vw = &rp->views[i];

            for (v = 0; v < vw->nvariants; v++) {
                c = &vw->sum[v];
                rl = &lab[i * NGX_HTTP_CANARY_VIEW_MAX + v];

                /* the longest name, the labels, "le" and two numbers */

                line = sizeof("nginx_canary_request_duration_seconds_bucket"
                              "{,le=\"\"} \n") - 1
                       + rl->len + 2 * NGX_HTTP_CANARY_NUM;

                p = ngx_http_canary_reserve(o, families[k].lines * line);
                if (p == NULL) {
                    return NGX_ERROR;
                }

                if (families[k].lines == 1) {
                    p = ngx_http_canary_cpy(p, "nginx_canary_");
                    p = ngx_cpymem(p, families[k].name.data,
                                   families[k].name.len);
                    *p++ = '{';
                    p = ngx_cpymem(p, rl->data, rl->len);
                    p = ngx_http_canary_cpy(p, "} ");
                    p = ngx_http_canary_uint(p,
                            *(ngx_atomic_t *) ((u_char *) c
                                               + families[k].field));
                    *p++ = '\n';

                    o->buf->last = p;
                    continue;
                }

                switch (k) {

                case 1:
                    p = ngx_http_canary_prom_responses(p, rl, c);
                    break;

                default: /* the histogram */
                    p = ngx_http_canary_prom_histogram(p, rl, c, vw->count[v],
                                                       le);
                }

                o->buf->last = p;
            }
        }
    }

    return NGX_OK;
}


/* responses_total: a line per class of status */

static u_char *
ngx_http_canary_prom_responses(u_char *p, ngx_str_t *rl,
    ngx_http_canary_counters_t *c)
{
    ngx_uint_t  s;

    for (s = 0; s < 5; s++) {
        p = ngx_http_canary_cpy(p, "nginx_canary_responses_total{");
        p = ngx_cpymem(p, rl->data, rl->len);
        p = ngx_http_canary_cpy(p, ",code=\"");
        p = ngx_cpymem(p, ngx_http_canary_class_names[s].data,
                       ngx_http_canary_class_names[s].len);
        p = ngx_http_canary_cpy(p, "\"} ");
        p = ngx_http_canary_uint(p, c->responses[s]);
        *p++ = '\n';
    }

    return p;
}


/* request_duration_seconds: the buckets, the sum and the count */

static u_char *
ngx_http_canary_prom_histogram(u_char *p, ngx_str_t *rl,
    ngx_http_canary_counters_t *c, ngx_atomic_uint_t count, ngx_str_t *le)
{
    ngx_uint_t         b;
    ngx_atomic_uint_t  cum;

    cum = 0;

    for (b = 0; b < NGX_HTTP_CANARY_HIST_BUCKETS; b++) {
        cum += c->hist[b];

        p = ngx_http_canary_cpy(p, "nginx_canary_request_duration_"
                                   "seconds_bucket{");
        p = ngx_cpymem(p, rl->data, rl->len);
        p = ngx_http_canary_cpy(p, ",le=\"");
        p = ngx_cpymem(p, le[b].data, le[b].len);
        p = ngx_http_canary_cpy(p, "\"} ");
        p = ngx_http_canary_uint(p, cum);
        *p++ = '\n';
    }

    p = ngx_http_canary_cpy(p, "nginx_canary_request_duration_"
                               "seconds_sum{");
    p = ngx_cpymem(p, rl->data, rl->len);
    p = ngx_http_canary_cpy(p, "} ");
    p = ngx_http_canary_seconds(p, c->time_sum_ms);

    p = ngx_http_canary_cpy(p, "\nnginx_canary_request_duration_"
                               "seconds_count{");
    p = ngx_cpymem(p, rl->data, rl->len);
    p = ngx_http_canary_cpy(p, "} ");
    p = ngx_http_canary_uint(p, count);
    *p++ = '\n';

    return p;
}


/* the per-rollout gauges */

static ngx_int_t
ngx_http_canary_prom_rollouts(ngx_http_canary_out_t *o,
    ngx_http_canary_report_t *rp, ngx_str_t *lab)
{
    u_char                      *p;
    size_t                       len, line;
    ngx_str_t                   *rl;
    ngx_uint_t                   i, k, s, n;
    ngx_http_canary_view_t      *vw;
    ngx_http_canary_snapshot_t  *snap;

    /* the per-rollout gauges, in this order (see the switch below) */

    static struct {
        ngx_str_t    name;
        char        *help;
    } gauges[] = {
        { ngx_string("percent"),
          "Share of keys routed to the canary, percent." },
        { ngx_string("segment_percent"),
          "Percent of a segment value, from Redis." },
        { ngx_string("rollout_info"),
          "Always 1: the rollout's state and the source of its values." },
        { ngx_string("rollout_updated_timestamp_seconds"),
          "When the values in force were published." },
        { ngx_string("rollout_last_sync_timestamp_seconds"),
          "When Redis last gave the rollout's values, 0 if never." },
        { ngx_string("shadow_percent"),
          "Share of keys next in line whose requests are shadowed, "
          "percent." },
        { ngx_string("auto_gate_percent"),
          "The step an automatic rollout waits to have approved, percent; "
          "0 when it does not wait." }
    };

    /*
     * Per rollout, gauges: the rollout="<escaped name>" prefix of the
     * labels, and one line per rollout (per segment for segment_percent)
     */

    for (k = 0; k < sizeof(gauges) / sizeof(gauges[0]); k++) {

        if (ngx_http_canary_prom_head(o, (char *) gauges[k].name.data,
                                      "gauge", gauges[k].help)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        for (i = 0; i < rp->nviews; i++) {
            vw = &rp->views[i];
            snap = vw->snap;
            rl = &lab[i * NGX_HTTP_CANARY_VIEW_MAX];
            len = ngx_http_canary_rollout_label(rl);

            n = (k == 1) ? snap->nsegments : 1;

            for (s = 0; s < n; s++) {
                line = NGX_HTTP_CANARY_LINE + len;

                if (k == 1) {
                    line += ngx_http_canary_esc_len(&snap->segments[s].value,
                                                    NGX_HTTP_CANARY_ESC_LABEL);
                }

                p = ngx_http_canary_reserve(o, line);
                if (p == NULL) {
                    return NGX_ERROR;
                }

                p = ngx_http_canary_cpy(p, "nginx_canary_");
                p = ngx_cpymem(p, gauges[k].name.data, gauges[k].name.len);
                *p++ = '{';
                p = ngx_cpymem(p, rl->data, len);

                switch (k) {

                case 0:
                    p = ngx_http_canary_cpy(p, "} ");
                    p = ngx_http_canary_percent(p, snap->percent);
                    *p++ = '\n';
                    break;

                case 1:
                    p = ngx_http_canary_cpy(p, ",segment=\"");
                    p = ngx_http_canary_esc(p, &snap->segments[s].value,
                                            NGX_HTTP_CANARY_ESC_LABEL);
                    p = ngx_http_canary_cpy(p, "\"} ");
                    p = ngx_http_canary_percent(p,
                                                snap->segments[s].percent);
                    *p++ = '\n';
                    break;

                case 2:
                    p = ngx_sprintf(p, ",state=\"%V\",source=\"%V\"} 1\n",
                                    ngx_http_canary_state(snap->state),
                                    &ngx_http_canary_source_names
                                        [snap->source]);
                    break;

                case 3:
                    p = ngx_sprintf(p, "} %T\n", snap->updated);
                    break;

                case 4:
                    p = ngx_sprintf(p, "} %T\n", vw->synced);
                    break;

                case 5:
                    p = ngx_http_canary_cpy(p, "} ");
                    p = ngx_http_canary_percent(p, snap->shadow);
                    *p++ = '\n';
                    break;

                default: /* 6 */
                    p = ngx_http_canary_cpy(p, "} ");
                    p = ngx_http_canary_percent(p,
                            (vw->autost
                             && snap->state == NGX_HTTP_CANARY_STATE_WAITING)
                            ? vw->autost->gate : 0);
                    *p++ = '\n';
                }

                o->buf->last = p;
            }
        }
    }

    return NGX_OK;
}


/* the module-wide series */

static ngx_int_t
ngx_http_canary_prom_module(ngx_http_canary_out_t *o,
    ngx_http_canary_report_t *rp)
{
    u_char  *p;

    p = ngx_http_canary_reserve(o, 20 * NGX_HTTP_CANARY_LINE);
    if (p == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(p,
        "# HELP nginx_canary_redis_up 1 if the Redis connection is up.\n"
        "# TYPE nginx_canary_redis_up gauge\n"
        "nginx_canary_redis_up %uA\n"
        "# HELP nginx_canary_syncs_total Full syncs from Redis.\n"
        "# TYPE nginx_canary_syncs_total counter\n"
        "nginx_canary_syncs_total %uA\n"
        "# HELP nginx_canary_sync_errors_total Syncs that failed.\n"
        "# TYPE nginx_canary_sync_errors_total counter\n"
        "nginx_canary_sync_errors_total %uA\n"
        "# HELP nginx_canary_refused_values_total Values from Redis "
        "refused as invalid.\n"
        "# TYPE nginx_canary_refused_values_total counter\n"
        "nginx_canary_refused_values_total %uA\n"
        "# HELP nginx_canary_last_sync_timestamp_seconds When the last "
        "sync ended, 0 if never.\n"
        "# TYPE nginx_canary_last_sync_timestamp_seconds gauge\n"
        "nginx_canary_last_sync_timestamp_seconds %uA\n"
        "# HELP nginx_canary_restores_total Times Redis came back empty "
        "and the last good state was written back.\n"
        "# TYPE nginx_canary_restores_total counter\n"
        "nginx_canary_restores_total %uA\n"
        "# HELP nginx_canary_restored_timestamp_seconds When the last "
        "restore ended, 0 if never.\n"
        "# TYPE nginx_canary_restored_timestamp_seconds gauge\n"
        "nginx_canary_restored_timestamp_seconds %uA\n"
        "# HELP nginx_canary_zone_size_bytes Size of the canary_zone.\n"
        "# TYPE nginx_canary_zone_size_bytes gauge\n"
        "nginx_canary_zone_size_bytes %uz\n"
        "# HELP nginx_canary_zone_used_bytes Bytes of the zone in use.\n"
        "# TYPE nginx_canary_zone_used_bytes gauge\n"
        "nginx_canary_zone_used_bytes %uz\n"
        "# HELP nginx_canary_zone_free_bytes Free pages of the zone, "
        "in bytes.\n"
        "# TYPE nginx_canary_zone_free_bytes gauge\n"
        "nginx_canary_zone_free_bytes %uz\n"
        "# HELP nginx_canary_zone_retired_bytes Bytes of replaced "
        "snapshots and sets that a worker may still read.\n"
        "# TYPE nginx_canary_zone_retired_bytes gauge\n"
        "nginx_canary_zone_retired_bytes %uz\n"
        "# HELP nginx_canary_zone_freed_total Replaced snapshots and "
        "set blocks freed once no worker read them.\n"
        "# TYPE nginx_canary_zone_freed_total counter\n"
        "nginx_canary_zone_freed_total %uA\n",
        rp->redis_up, rp->syncs, rp->sync_errors, rp->refused,
        rp->last_sync, rp->restores, rp->restored, rp->zone_size,
        rp->zone_size - rp->zone_free, rp->zone_free, rp->retired_bytes,
        rp->freed);

    o->buf->last = p;

    return ngx_http_canary_prom_api(o, rp);
}


/* canary_api's writes by action and result, those that happened */

static ngx_int_t
ngx_http_canary_prom_api(ngx_http_canary_out_t *o,
    ngx_http_canary_report_t *rp)
{
    u_char      *p;
    ngx_uint_t   a, k;

    if (ngx_http_canary_prom_head(o, "api_writes_total", "counter",
                                  "Writes through canary_api, by action "
                                  "and result.")
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    p = ngx_http_canary_reserve(o, NGX_HTTP_CANARY_API_NACTIONS
                                   * NGX_HTTP_CANARY_API_NRESULTS
                                   * NGX_HTTP_CANARY_LINE);
    if (p == NULL) {
        return NGX_ERROR;
    }

    for (a = 0; a < NGX_HTTP_CANARY_API_NACTIONS; a++) {
        for (k = 0; k < NGX_HTTP_CANARY_API_NRESULTS; k++) {
            if (rp->api_writes[a][k] == 0) {
                continue;
            }

            p = ngx_sprintf(p, "nginx_canary_api_writes_total{action=\"%V\","
                            "result=\"%V\"} %uA\n",
                            &ngx_http_canary_api_actions[a],
                            &ngx_http_canary_api_results[k],
                            rp->api_writes[a][k]);
        }
    }

    o->buf->last = p;

    return NGX_OK;
}


static ngx_int_t
ngx_http_canary_prom_head(ngx_http_canary_out_t *o, char *name, char *type,
    char *help)
{
    u_char  *p;
    size_t   len;

    len = ngx_strlen(name);

    p = ngx_http_canary_reserve(o, 2 * len + ngx_strlen(type)
                                   + ngx_strlen(help) + 64);
    if (p == NULL) {
        return NGX_ERROR;
    }

    o->buf->last = ngx_sprintf(p, "# HELP nginx_canary_%s %s\n"
                               "# TYPE nginx_canary_%s %s\n",
                               name, help, name, type);

    return NGX_OK;
}


/*
 * The length of the rollout="<escaped name>" prefix of the labels of a
 * rollout's first variant.
 */

static size_t
ngx_http_canary_rollout_label(ngx_str_t *labels)
{
    return labels->len - (sizeof("stable") - 1)
           - (sizeof(",variant=\"\"") - 1);
}
