
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * The canary_status endpoint: the rollouts' state and per-variant
 * counters as text, JSON, Prometheus text exposition 0.0.4 or a live HTML
 * dashboard, and "?explain=" to evaluate one key.
 *
 * Here: the handler, which chooses the format, and the report that every
 * format prints, read from the zone once per request.  Each format is a
 * file of its own (ngx_http_canary_status_text.c, _json.c, _prometheus.c,
 * _html.c), "explain" too (ngx_http_canary_explain.c).
 *
 * The answer is built in a chain of buffers (ngx_http_canary_status_out.c):
 * each piece is sized first (from the snapshot it will print, loaded
 * once), then written with ngx_sprintf into a buffer with room for it, so
 * that any number of rollouts renders whole.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_canary_module.h"
#include "ngx_http_canary_auto_fields.h"
#include "ngx_http_canary_status.h"
#include "ngx_http_canary_status_out.h"
#include "ngx_http_canary_status_text.h"
#include "ngx_http_canary_status_json.h"
#include "ngx_http_canary_status_prometheus.h"
#include "ngx_http_canary_status_html.h"
#include "ngx_http_canary_explain.h"


#define NGX_HTTP_CANARY_FORMAT_TEXT     0
#define NGX_HTTP_CANARY_FORMAT_JSON     1
#define NGX_HTTP_CANARY_FORMAT_PROM     2
#define NGX_HTTP_CANARY_FORMAT_HTML     3


static ngx_int_t ngx_http_canary_status_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_canary_status_format(ngx_http_request_t *r,
    ngx_uint_t *format, ngx_str_t *value);
static ngx_table_elt_t *ngx_http_canary_status_accept(ngx_http_request_t *r);
static void ngx_http_canary_sum(ngx_http_canary_main_conf_t *cmcf,
    ngx_http_canary_rollout_t *ro, ngx_uint_t variant,
    ngx_http_canary_counters_t *sum);
static ngx_int_t ngx_http_canary_report_auto(ngx_http_request_t *r,
    ngx_http_canary_main_conf_t *cmcf, ngx_http_canary_view_t *vw);


char *
ngx_http_canary_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_canary_loc_conf_t *lcf = conf;

    ngx_str_t                 *value;
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_canary_status_handler;

    if (cf->args->nelts == 1) {
        return NGX_CONF_OK;
    }

    /* api=URI: the canary_api location the dashboard acts through */

    value = cf->args->elts;

    if (value[1].len <= 5 || ngx_strncmp(value[1].data, "api=/", 5) != 0
        || value[1].data[value[1].len - 1] != '/')
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "invalid parameter \"%V\" "
                           "(expected api=/path/to/api/)", &value[1]);
        return NGX_CONF_ERROR;
    }

    lcf->status_api.data = value[1].data + 4;
    lcf->status_api.len = value[1].len - 4;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_canary_status_handler(ngx_http_request_t *r)
{
    char                      *type;
    ngx_int_t                  rc;
    ngx_str_t                  name;
    ngx_uint_t                 format;
    ngx_table_elt_t           *h;
    ngx_http_canary_out_t        o;
    ngx_http_canary_report_t     rp;
    ngx_http_canary_loc_conf_t  *lcf;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);

    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_http_canary_arg(r, "explain", &name);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_OK) {
        return ngx_http_canary_explain(r, &name);
    }

    rc = ngx_http_canary_status_format(r, &format, &name);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return ngx_http_canary_bad_request(r, "unknown format", &name);
    }

    if (ngx_http_canary_report(r, &rp) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_canary_module);
    rp.api = lcf->status_api;

    ngx_memzero(&o, sizeof(ngx_http_canary_out_t));
    o.request = r;
    o.last = &o.out;

    switch (format) {

    case NGX_HTTP_CANARY_FORMAT_JSON:
        rc = ngx_http_canary_json(&o, &rp);
        type = "application/json";
        break;

    case NGX_HTTP_CANARY_FORMAT_PROM:
        rc = ngx_http_canary_prom(&o, &rp);
        type = "text/plain; version=0.0.4; charset=utf-8";
        break;

    case NGX_HTTP_CANARY_FORMAT_HTML:
        rc = ngx_http_canary_html(&o, &rp);
        type = "text/html; charset=utf-8";
        break;

    default: /* NGX_HTTP_CANARY_FORMAT_TEXT */
        rc = ngx_http_canary_text(&o, &rp);
        type = "text/plain";
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the answer depends on Accept when no format was asked for */

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Vary");
    ngx_str_set(&h->value, "Accept");

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Cache-Control");
    ngx_str_set(&h->value, "no-store");

    return ngx_http_canary_send(r, &o, type);
}


/*
 * ?format= if given, else the Accept header as a convenience: Prometheus
 * (it asks for text/plain;version=0.0.4 or openmetrics), then JSON, then
 * HTML (browsers), else text.  NGX_DECLINED for an unknown format, which
 * is left in "value".
 */

static ngx_int_t
ngx_http_canary_status_format(ngx_http_request_t *r, ngx_uint_t *format,
    ngx_str_t *v)
{
    u_char           *s, *end;
    ngx_int_t         rc;
    ngx_str_t         value;
    ngx_table_elt_t  *accept;

    *format = NGX_HTTP_CANARY_FORMAT_TEXT;

    rc = ngx_http_canary_arg(r, "format", &value);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_OK) {
        if (value.len == 4 && ngx_strncmp(value.data, "text", 4) == 0) {
            return NGX_OK;
        }

        if (value.len == 4 && ngx_strncmp(value.data, "json", 4) == 0) {
            *format = NGX_HTTP_CANARY_FORMAT_JSON;
            return NGX_OK;
        }

        if (value.len == 10
            && ngx_strncmp(value.data, "prometheus", 10) == 0)
        {
            *format = NGX_HTTP_CANARY_FORMAT_PROM;
            return NGX_OK;
        }

        if (value.len == 4 && ngx_strncmp(value.data, "html", 4) == 0) {
            *format = NGX_HTTP_CANARY_FORMAT_HTML;
            return NGX_OK;
        }

        *v = value;

        return NGX_DECLINED;
    }

    accept = ngx_http_canary_status_accept(r);

    if (accept == NULL) {
        return NGX_OK;
    }

    s = accept->value.data;
    end = s + accept->value.len;

    if (ngx_strlcasestrn(s, end, (u_char *) "version=0.0.4", 13 - 1)
        || ngx_strlcasestrn(s, end, (u_char *) "openmetrics", 11 - 1))
    {
        *format = NGX_HTTP_CANARY_FORMAT_PROM;

    } else if (ngx_strlcasestrn(s, end, (u_char *) "application/json",
                                16 - 1))
    {
        *format = NGX_HTTP_CANARY_FORMAT_JSON;

    } else if (ngx_strlcasestrn(s, end, (u_char *) "text/html", 9 - 1)) {
        *format = NGX_HTTP_CANARY_FORMAT_HTML;
    }

    return NGX_OK;
}


/*
 * The Accept header: r->headers_in.accept exists only when nginx is built
 * with NGX_HTTP_HEADERS (gzip, realip, dav...); otherwise it is looked up.
 */

static ngx_table_elt_t *
ngx_http_canary_status_accept(ngx_http_request_t *r)
{
#if (NGX_HTTP_HEADERS)

    return r->headers_in.accept;

#else

    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NULL;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == 6
            && ngx_strncasecmp(h[i].key.data, (u_char *) "accept", 6) == 0)
        {
            return &h[i];
        }
    }

#endif
}


/* reads everything once: each snapshot pointer, each rollout's sums */

ngx_int_t
ngx_http_canary_report(ngx_http_request_t *r, ngx_http_canary_report_t *rp)
{
    ngx_uint_t                    i, v, b;
    ngx_time_t                   *tp;
    ngx_slab_pool_t              *shpool;
    ngx_http_canary_view_t       *vw;
    ngx_http_canary_shctx_t      *sh;
    ngx_http_canary_rollout_t    *ro;
    ngx_http_canary_main_conf_t  *cmcf;

    ngx_memzero(rp, sizeof(ngx_http_canary_report_t));

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_canary_module);

    tp = ngx_timeofday();
    rp->now = tp->sec;
    rp->now_msec = (ngx_msec_t) tp->sec * 1000 + tp->msec;

    sh = cmcf->sh;

    if (sh == NULL) {
        /* canary_status without a canary_zone: nothing to show */
        return NGX_OK;
    }

    rp->redis_up = sh->redis_up;
    ngx_memcpy(rp->redis_node, sh->redis_node, sizeof(rp->redis_node));
    rp->redis_node[sizeof(rp->redis_node) - 1] = '\0';
    rp->syncs = sh->syncs;
    rp->sync_errors = sh->sync_errors;
    rp->refused = sh->refused;
    rp->last_sync = sh->last_sync;
    rp->restores = sh->restores;
    rp->restored = sh->restored;
    rp->restored_rollouts = sh->restored_rollouts;
    rp->auto_leader = sh->auto_leader;

    ngx_memcpy(rp->api_writes, (void *) sh->api_writes,
               sizeof(rp->api_writes));

    /* a racy read of the free page count is fine for a figure */

    shpool = cmcf->shpool;
    rp->zone_size = cmcf->shm_zone->shm.size;
    rp->zone_free = shpool->pfree * ngx_pagesize;

    rp->retired = sh->reclaim.nretired;
    rp->retired_bytes = sh->reclaim.retired_bytes;
    rp->freed = sh->reclaim.freed;
    rp->holder = sh->reclaim.holder;

    rp->nviews = cmcf->rollouts.nelts;

    if (rp->nviews == 0) {
        return NGX_OK;
    }

    rp->views = ngx_palloc(r->pool,
                           rp->nviews * sizeof(ngx_http_canary_view_t));
    if (rp->views == NULL) {
        return NGX_ERROR;
    }

    ro = cmcf->rollouts.elts;

    for (i = 0; i < rp->nviews; i++) {
        vw = &rp->views[i];

        vw->rollout = &ro[i];
        vw->snap = ro[i].sh->snapshot;
        vw->synced = (time_t) ro[i].sh->synced;
        vw->nvariants = ro[i].nvariants + (ro[i].sh->shadow != NULL);

        vw->sum = ngx_palloc(r->pool, vw->nvariants
                                      * (sizeof(ngx_http_canary_counters_t)
                                         + sizeof(ngx_atomic_uint_t)));
        if (vw->sum == NULL) {
            return NGX_ERROR;
        }

        vw->count = (ngx_atomic_uint_t *) &vw->sum[vw->nvariants];

        for (v = 0; v < vw->nvariants; v++) {
            ngx_http_canary_sum(cmcf, &ro[i], v, &vw->sum[v]);

            /*
             * the histogram's own total, so that its +Inf bucket and its
             * count agree even while requests are being counted
             */

            vw->count[v] = 0;

            for (b = 0; b < NGX_HTTP_CANARY_HIST_BUCKETS; b++) {
                vw->count[v] += vw->sum[v].hist[b];
            }
        }

        if (ngx_http_canary_report_auto(r, cmcf, vw) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static void
ngx_http_canary_sum(ngx_http_canary_main_conf_t *cmcf,
    ngx_http_canary_rollout_t *ro, ngx_uint_t variant,
    ngx_http_canary_counters_t *sum)
{
    ngx_uint_t                   s, k;
    ngx_atomic_t                *dst, *src;
    ngx_http_canary_counters_t  *c;

    ngx_memzero(sum, sizeof(ngx_http_canary_counters_t));

    dst = (ngx_atomic_t *) sum;

    for (s = 0; s < cmcf->sh->nslots; s++) {
        c = (variant < ro->nvariants)
            ? ngx_http_canary_counters(ro, s, variant) : &ro->sh->shadow[s];
        src = (ngx_atomic_t *) c;

        for (k = 0; k < sizeof(ngx_http_canary_counters_t)
                        / sizeof(ngx_atomic_t); k++)
        {
            dst[k] += src[k];
        }
    }
}


/*
 * An automatic rollout's state as the controller (ngx_http_canary_auto.c)
 * read it from Redis, and the time to the next decision
 */

static ngx_int_t
ngx_http_canary_report_auto(ngx_http_request_t *r,
    ngx_http_canary_main_conf_t *cmcf, ngx_http_canary_view_t *vw)
{
    uint64_t                        now, at;
    ngx_http_canary_rollout_t      *ro;
    ngx_http_canary_auto_status_t  *st;

    ro = vw->rollout;

    vw->autost = NULL;
    vw->next = -1;

    if (ro->policy == NULL || ro->sh->autost == NULL) {
        return NGX_OK;
    }

    st = ngx_palloc(r->pool, sizeof(ngx_http_canary_auto_status_t));
    if (st == NULL) {
        return NGX_ERROR;
    }

    ngx_shmtx_lock(&cmcf->shpool->mutex);
    *st = *ro->sh->autost;
    ngx_shmtx_unlock(&cmcf->shpool->mutex);

    vw->autost = st;

    if ((vw->snap->state != NGX_HTTP_CANARY_STATE_PROGRESSING
         && vw->snap->state != NGX_HTTP_CANARY_STATE_WAITING)
        || (!st->dark
            && (st->step == 0 || st->step >= ro->policy->nsteps)))
    {
        return NGX_OK;
    }

    now = ngx_http_canary_auto_now();
    at = ngx_http_canary_policy_next_judgement(ro->policy, st->since,
                                               st->checked);

    vw->next = (at > now) ? (int64_t) (at - now) : 0;

    return NGX_OK;
}
