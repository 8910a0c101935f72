
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * The canary_status endpoint: the rollouts' state and per-variant
 * counters as text, JSON, Prometheus text exposition 0.0.4 or a live HTML
 * dashboard, and "?explain=" to evaluate one key.
 *
 * The answer is built in a chain of buffers: each piece is sized first
 * (from the snapshot it will print, loaded once), then written with
 * ngx_sprintf into a buffer with room for it, so that any number of
 * rollouts renders whole.  Every string that comes from the
 * configuration, Redis or the request is escaped for the format: JSON
 * with ngx_escape_json (and U+FFFD for bytes that are not UTF-8), HTML
 * with ngx_escape_html, Prometheus label values and quoted text with
 * backslash, double quote and newline escaped.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_canary_module.h"
#include "ngx_http_canary_dashboard.h"
#include "ngx_http_canary_auto_fields.h"


#define NGX_HTTP_CANARY_FORMAT_TEXT     0
#define NGX_HTTP_CANARY_FORMAT_JSON     1
#define NGX_HTTP_CANARY_FORMAT_PROM     2
#define NGX_HTTP_CANARY_FORMAT_HTML     3

#define NGX_HTTP_CANARY_ESC_JSON        0
#define NGX_HTTP_CANARY_ESC_HTML        1
#define NGX_HTTP_CANARY_ESC_LABEL       2

/* output chunks, and how many bytes of them a worker keeps at most */
#define NGX_HTTP_CANARY_CHUNK           65536
#define NGX_HTTP_CANARY_KEEP            (16 * 1024 * 1024)

/* room for one line of any format, strings and numbers aside */
#define NGX_HTTP_CANARY_LINE            192

#define NGX_HTTP_CANARY_NUM             (NGX_ATOMIC_T_LEN + 8)

#define ngx_http_canary_cpy(p, s)       ngx_cpymem(p, s, sizeof(s) - 1)


/* the answer as it is built: a chain of buffers */
typedef struct {
    ngx_http_request_t             *request;
    ngx_chain_t                    *out;
    ngx_chain_t                   **last;
    ngx_buf_t                      *buf;
    u_char                        **chunks;
} ngx_http_canary_out_t;


/* one rollout as it is printed: its snapshot and summed counters */
typedef struct {
    ngx_http_canary_rollout_t      *rollout;
    ngx_http_canary_snapshot_t     *snap;
    time_t                          synced;     /* 0: never from Redis */
    /* the variants, then "shadow" if the rollout has its counters */
    ngx_uint_t                      nvariants;
    ngx_http_canary_counters_t     *sum;        /* [nvariants] */
    ngx_atomic_uint_t              *count;      /* [nvariants] */
} ngx_http_canary_view_t;


/* a view's most variants: stable, the arms and shadow */
#define NGX_HTTP_CANARY_VIEW_MAX  (NGX_HTTP_CANARY_MAX_VARIANTS + 1)

static ngx_str_t  ngx_http_canary_shadow_name = ngx_string("shadow");

/* a view's variant v by name: the rollout's, then "shadow" after them */
#define ngx_http_canary_variant_name(vw, v)                                  \
    ((v) < (vw)->rollout->nvariants ? &(vw)->rollout->variants[v].name      \
                                    : &ngx_http_canary_shadow_name)


/* what every format shows */
typedef struct {
    ngx_uint_t                      nviews;
    ngx_http_canary_view_t         *views;
    ngx_atomic_uint_t               redis_up;
    ngx_atomic_uint_t               syncs;
    ngx_atomic_uint_t               sync_errors;
    ngx_atomic_uint_t               refused;
    ngx_atomic_uint_t               last_sync;
    ngx_atomic_uint_t               restores;
    ngx_atomic_uint_t               restored;
    ngx_atomic_uint_t               restored_rollouts;
    size_t                          zone_size;
    size_t                          zone_free;

    /* replaced state not yet freed, what was, and whom it waits for */
    ngx_uint_t                      retired;
    size_t                          retired_bytes;
    ngx_atomic_uint_t               freed;
    ngx_pid_t                       holder;
    ngx_msec_t                      now_msec;
    time_t                          now;
} ngx_http_canary_report_t;


static ngx_int_t ngx_http_canary_status_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_canary_status_format(ngx_http_request_t *r,
    ngx_uint_t *format, ngx_str_t *value);
static ngx_table_elt_t *ngx_http_canary_status_accept(ngx_http_request_t *r);
static ngx_int_t ngx_http_canary_report(ngx_http_request_t *r,
    ngx_http_canary_report_t *rp);
static void ngx_http_canary_sum(ngx_http_canary_main_conf_t *cmcf,
    ngx_http_canary_rollout_t *ro, ngx_uint_t variant,
    ngx_http_canary_counters_t *sum);
static size_t ngx_http_canary_arms_size(ngx_http_canary_view_t *vw);
static u_char *ngx_http_canary_arms(u_char *p, ngx_http_canary_view_t *vw,
    ngx_uint_t json);
static ngx_int_t ngx_http_canary_text(ngx_http_canary_out_t *o,
    ngx_http_canary_report_t *rp);
static ngx_int_t ngx_http_canary_json(ngx_http_canary_out_t *o,
    ngx_http_canary_report_t *rp);
static ngx_int_t ngx_http_canary_json_variant(ngx_http_canary_out_t *o,
    ngx_http_canary_view_t *vw, ngx_uint_t v);
static ngx_int_t ngx_http_canary_prom(ngx_http_canary_out_t *o,
    ngx_http_canary_report_t *rp);
static ngx_int_t ngx_http_canary_prom_head(ngx_http_canary_out_t *o,
    char *name, char *type, char *help);
static ngx_int_t ngx_http_canary_html(ngx_http_canary_out_t *o,
    ngx_http_canary_report_t *rp);
static ngx_int_t ngx_http_canary_explain(ngx_http_request_t *r,
    ngx_str_t *name);
static ngx_int_t ngx_http_canary_arg(ngx_http_request_t *r, char *name,
    ngx_str_t *value);
static ngx_int_t ngx_http_canary_bad_request(ngx_http_request_t *r,
    char *what, ngx_str_t *value);
static ngx_int_t ngx_http_canary_send(ngx_http_request_t *r,
    ngx_http_canary_out_t *o, char *type);
static ngx_int_t ngx_http_canary_auto_block(ngx_http_canary_out_t *o,
    ngx_http_canary_view_t *vw, ngx_uint_t json);
static u_char *ngx_http_canary_reserve(ngx_http_canary_out_t *o,
    size_t size);
static void ngx_http_canary_chunks_cleanup(void *data);
static size_t ngx_http_canary_esc_len(ngx_str_t *s, ngx_uint_t type);
static u_char *ngx_http_canary_esc(u_char *p, ngx_str_t *s, ngx_uint_t type);
static size_t ngx_http_canary_rollout_label(ngx_str_t *labels);
static u_char *ngx_http_canary_uint(u_char *p, ngx_atomic_uint_t n);
static u_char *ngx_http_canary_percent(u_char *p, ngx_uint_t percent);
static u_char *ngx_http_canary_seconds(u_char *p, ngx_atomic_uint_t ms);
static u_char *ngx_http_canary_quantile(u_char *p,
    ngx_http_canary_counters_t *c, ngx_atomic_uint_t count, ngx_uint_t q);
static ngx_str_t *ngx_http_canary_state(ngx_uint_t state);
static size_t ngx_http_canary_auto_status_size(ngx_http_canary_rollout_t *ro);
static void ngx_http_canary_auto_status_read(
    ngx_http_canary_main_conf_t *cmcf, ngx_http_canary_rollout_t *ro,
    ngx_http_canary_auto_status_t *st, int64_t *next);
static u_char *ngx_http_canary_auto_status_json(
    ngx_http_canary_main_conf_t *cmcf, ngx_http_canary_rollout_t *ro,
    u_char *p, u_char *last);
static u_char *ngx_http_canary_auto_status_text(
    ngx_http_canary_main_conf_t *cmcf, ngx_http_canary_rollout_t *ro,
    u_char *p, u_char *last);


static ngx_str_t  ngx_http_canary_class_names[] = {
    ngx_string("1xx"),
    ngx_string("2xx"),
    ngx_string("3xx"),
    ngx_string("4xx"),
    ngx_string("5xx")
};


static ngx_str_t  ngx_http_canary_state_none = ngx_string("none");


/* the worker's free output chunks, and their bytes */
static u_char     *ngx_http_canary_free_chunks;
static size_t      ngx_http_canary_kept;


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
    char                      *type;
    ngx_int_t                  rc;
    ngx_str_t                  name;
    ngx_uint_t                 format;
    ngx_table_elt_t           *h;
    ngx_http_canary_out_t      o;
    ngx_http_canary_report_t   rp;

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

static ngx_int_t
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
    rp->syncs = sh->syncs;
    rp->sync_errors = sh->sync_errors;
    rp->refused = sh->refused;
    rp->last_sync = sh->last_sync;
    rp->restores = sh->restores;
    rp->restored = sh->restored;
    rp->restored_rollouts = sh->restored_rollouts;

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

static ngx_int_t
ngx_http_canary_text(ngx_http_canary_out_t *o, ngx_http_canary_report_t *rp)
{
    u_char                      *p;
    size_t                       size;
    ngx_uint_t                   i, v, s, b;
    ngx_str_t                   *name;
    ngx_http_canary_view_t      *vw;
    ngx_http_canary_counters_t  *c;
    ngx_http_canary_snapshot_t  *snap;

    p = ngx_http_canary_reserve(o, 4 * NGX_HTTP_CANARY_LINE
                                   + 16 * NGX_HTTP_CANARY_NUM);
    if (p == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(p, "Rollouts: %ui\n"
                    "Redis: up %uA syncs %uA errors %uA refused %uA "
                    "last_sync %uA\n",
                    rp->nviews, rp->redis_up, rp->syncs, rp->sync_errors,
                    rp->refused, rp->last_sync);

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

        p = ngx_http_canary_arms(p, vw, 0);

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

        if (ngx_http_canary_auto_block(o, vw, 0) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * The arms of a rollout with more than one, or whose allocation Redis
 * changed: text lines " arm blue weight 1 on users 0", or a JSON
 * "arms":[{"name":..,"upstream":..,"weight":..,"on":..,"users":..}],
 * member (users: the members of its users:<arm> set).  A
 * two-sided rollout as configured shows none, as before arms existed.
 */

static ngx_uint_t
ngx_http_canary_arms_shown(ngx_http_canary_view_t *vw)
{
    return vw->rollout->narms > 1 || vw->snap->arms_off
           || vw->snap->weight[0] != vw->rollout->variants[1].weight;
}


static size_t
ngx_http_canary_arms_size(ngx_http_canary_view_t *vw)
{
    size_t                      size;
    ngx_uint_t                  v;
    ngx_http_canary_variant_t  *var;

    if (!ngx_http_canary_arms_shown(vw)) {
        return 0;
    }

    size = 16;

    for (v = 1; v <= vw->rollout->narms; v++) {
        var = &vw->rollout->variants[v];

        size += 80 + 2 * NGX_HTTP_CANARY_NUM
                + 3 * var->name.len + 6 * var->upstream.len;
    }

    return size;
}


static u_char *
ngx_http_canary_arms(u_char *p, ngx_http_canary_view_t *vw, ngx_uint_t json)
{
    ngx_uint_t                  v, on, users;
    ngx_http_canary_variant_t  *var;

    if (!ngx_http_canary_arms_shown(vw)) {
        return p;
    }

    if (json) {
        p = ngx_http_canary_cpy(p, "\"arms\":[");
    }

    for (v = 1; v <= vw->rollout->narms; v++) {
        var = &vw->rollout->variants[v];
        on = !(vw->snap->arms_off & (1 << (v - 1)));

        users = ngx_http_canary_set_size(vw->snap->arm_users[v - 1]);

        if (!json) {
            p = ngx_sprintf(p, " arm %V weight %uD %s users %ui\n",
                            &var->name, vw->snap->weight[v - 1],
                            on ? "on" : "off", users);
            continue;
        }

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

    if (json) {
        p = ngx_http_canary_cpy(p, "],");
    }

    return p;
}


/*
 * JSON:
 *
 *   {"time_ms":..,"histogram_bounds_ms":[1,2,..,60000],
 *    "zone":{"size":..,"used":..,"free":..,"retired":..,
 *            "retired_bytes":..,"freed":..,"waiting_for":pid|null},
 *    "redis":{"connected":..,"syncs":..,"sync_errors":..,
 *             "refused_values":..,"last_sync":..|null,
 *             "restored":{"count":..,"rollouts":..,"at":..}|null},
 *    "rollouts":[{"name":..,"percent":..,"state":..,"source":..,
 *                 "updated":..,"segments":[{"value":..,"percent":..}],
 *                 "canary_users":..,"stable_users":..,
 *                 "variants":{"stable":{..},"canary":{..}}}]}
 */

static ngx_int_t
ngx_http_canary_json(ngx_http_canary_out_t *o, ngx_http_canary_report_t *rp)
{
    u_char                      *p;
    size_t                       size;
    ngx_uint_t                   i, v, s, b;
    ngx_http_canary_view_t      *vw;
    ngx_http_canary_snapshot_t  *snap;

    p = ngx_http_canary_reserve(o, 6 * NGX_HTTP_CANARY_LINE
                                   + (NGX_HTTP_CANARY_HIST_BUCKETS + 17)
                                     * NGX_HTTP_CANARY_NUM);
    if (p == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(p, "{\"version\":1,\"time_ms\":%M,"
                    "\"histogram_bounds_ms\":[", rp->now_msec);

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
        p = ngx_sprintf(p, "{\"count\":%uA,\"rollouts\":%uA,\"at\":%uA}"
                        "},\n\"rollouts\":[", rp->restores,
                        rp->restored_rollouts, rp->restored);

    } else {
        p = ngx_sprintf(p, "null},\n\"rollouts\":[");
    }

    o->buf->last = p;

    for (i = 0; i < rp->nviews; i++) {
        vw = &rp->views[i];
        snap = vw->snap;

        size = 2 * NGX_HTTP_CANARY_LINE + 8 * NGX_HTTP_CANARY_NUM
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
                        "\"updated\":%T,\"last_sync\":%T,"
                        "\"canary_users\":%ui,"
                        "\"stable_users\":%ui,\"segments\":[",
                        ngx_http_canary_state(snap->state),
                        &ngx_http_canary_source_names[snap->source],
                        snap->updated, vw->synced,
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

        p = ngx_http_canary_arms(p, vw, 1);

        o->buf->last = p;

        if (ngx_http_canary_auto_block(o, vw, 1) != NGX_OK) {
            return NGX_ERROR;
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
    }

    p = ngx_http_canary_reserve(o, 8);
    if (p == NULL) {
        return NGX_ERROR;
    }

    o->buf->last = ngx_cpymem(p, "\n]}\n", 4);

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


/*
 * Prometheus text exposition format 0.0.4: every family's samples
 * together after its HELP and TYPE lines.
 */

static ngx_int_t
ngx_http_canary_prom(ngx_http_canary_out_t *o, ngx_http_canary_report_t *rp)
{
    u_char                      *p, *q;
    size_t                       len, line;
    ngx_str_t                   *lab, *rl, *vn;
    ngx_str_t                    le[NGX_HTTP_CANARY_HIST_BUCKETS];
    ngx_uint_t                   i, v, k, s, b, n;
    ngx_atomic_uint_t            cum;
    ngx_http_canary_view_t      *vw;
    ngx_http_canary_counters_t  *c;
    ngx_http_canary_snapshot_t  *snap;
    u_char                       lebuf[NGX_HTTP_CANARY_HIST_BUCKETS
                                       * NGX_HTTP_CANARY_NUM];

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
          "percent." }
    };

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
                    for (s = 0; s < 5; s++) {
                        p = ngx_http_canary_cpy(p,
                                             "nginx_canary_responses_total{");
                        p = ngx_cpymem(p, rl->data, rl->len);
                        p = ngx_http_canary_cpy(p, ",code=\"");
                        p = ngx_cpymem(p, ngx_http_canary_class_names[s].data,
                                       ngx_http_canary_class_names[s].len);
                        p = ngx_http_canary_cpy(p, "\"} ");
                        p = ngx_http_canary_uint(p, c->responses[s]);
                        *p++ = '\n';
                    }
                    break;

                default: /* the histogram */
                    cum = 0;

                    for (b = 0; b < NGX_HTTP_CANARY_HIST_BUCKETS; b++) {
                        cum += c->hist[b];

                        p = ngx_http_canary_cpy(p,
                                "nginx_canary_request_duration_"
                                "seconds_bucket{");
                        p = ngx_cpymem(p, rl->data, rl->len);
                        p = ngx_http_canary_cpy(p, ",le=\"");
                        p = ngx_cpymem(p, le[b].data, le[b].len);
                        p = ngx_http_canary_cpy(p, "\"} ");
                        p = ngx_http_canary_uint(p, cum);
                        *p++ = '\n';
                    }

                    p = ngx_http_canary_cpy(p,
                                   "nginx_canary_request_duration_"
                                   "seconds_sum{");
                    p = ngx_cpymem(p, rl->data, rl->len);
                    p = ngx_http_canary_cpy(p, "} ");
                    p = ngx_http_canary_seconds(p, c->time_sum_ms);

                    p = ngx_http_canary_cpy(p,
                                   "\nnginx_canary_request_duration_"
                                   "seconds_count{");
                    p = ngx_cpymem(p, rl->data, rl->len);
                    p = ngx_http_canary_cpy(p, "} ");
                    p = ngx_http_canary_uint(p, vw->count[v]);
                    *p++ = '\n';
                }

                o->buf->last = p;
            }
        }
    }

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

                default: /* 5 */
                    p = ngx_http_canary_cpy(p, "} ");
                    p = ngx_http_canary_percent(p, snap->shadow);
                    *p++ = '\n';
                }

                o->buf->last = p;
            }
        }
    }

    /* module-wide */

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
 * The dashboard: the page of ngx_http_canary_dashboard.html, with the
 * state at the time of the request rendered into it (so that it shows
 * something without JavaScript too); its script then polls ?format=json.
 */

static ngx_int_t
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


/*
 * ?explain=ROLLOUT&key=K[&segment=S][&override=O]: the decision that a
 * request with these values would get now, as JSON.  The key, override
 * and segment are the given ones, for the rollout and for the rollouts it
 * requires; "match" is evaluated on this status request's own variable
 * (so its header can be set to the user's); see ngx_http_canary_evaluate().
 */

static ngx_int_t
ngx_http_canary_explain(ngx_http_request_t *r, ngx_str_t *name)
{
    u_char                       *p;
    size_t                        size;
    ngx_int_t                     index, rc;
    ngx_uint_t                    i, j;
    ngx_http_canary_out_t         o;
    ngx_http_canary_input_t       in;
    ngx_http_canary_rollout_t    *ro;
    ngx_http_canary_decision_t    d, *decisions;
    ngx_http_canary_snapshot_t   *snap;
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

    decisions = ngx_pcalloc(r->pool, cmcf->rollouts.nelts
                                     * sizeof(ngx_http_canary_decision_t));
    if (decisions == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    d = ngx_http_canary_evaluate(r, index, decisions, &in, 0);

    ro = cmcf->rollouts.elts;

    size = 4 * NGX_HTTP_CANARY_LINE
           + ngx_http_canary_esc_len(name, NGX_HTTP_CANARY_ESC_JSON)
           + ngx_http_canary_esc_len(&in.key, NGX_HTTP_CANARY_ESC_JSON)
           + ngx_http_canary_esc_len(&in.override, NGX_HTTP_CANARY_ESC_JSON)
           + ngx_http_canary_esc_len(&in.segment, NGX_HTTP_CANARY_ESC_JSON)
           + ngx_http_canary_esc_len(&ro[index].variants[d.variant].name,
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
    p = ngx_http_canary_esc(p, &in.key, NGX_HTTP_CANARY_ESC_JSON);
    p = ngx_cpymem(p, "\",\"segment\":", sizeof("\",\"segment\":") - 1);

    if (in.has_segment) {
        *p++ = '"';
        p = ngx_http_canary_esc(p, &in.segment, NGX_HTTP_CANARY_ESC_JSON);
        *p++ = '"';

    } else {
        p = ngx_cpymem(p, "null", 4);
    }

    p = ngx_cpymem(p, ",\"override\":", sizeof(",\"override\":") - 1);

    if (in.has_override) {
        *p++ = '"';
        p = ngx_http_canary_esc(p, &in.override, NGX_HTTP_CANARY_ESC_JSON);
        *p++ = '"';

    } else {
        p = ngx_cpymem(p, "null", 4);
    }

    p = ngx_cpymem(p, ",\"bucket\":", sizeof(",\"bucket\":") - 1);

    if (d.has_bucket) {
        p = ngx_sprintf(p, "%ui", (ngx_uint_t) d.bucket);

    } else {
        p = ngx_cpymem(p, "null", 4);
    }

    p = ngx_cpymem(p, ",\"variant\":\"", sizeof(",\"variant\":\"") - 1);
    p = ngx_http_canary_esc(p, &ro[index].variants[d.variant].name,
                            NGX_HTTP_CANARY_ESC_JSON);
    p = ngx_sprintf(p, "\",\"reason\":\"%V\",\"percent\":",
                    &ngx_http_canary_reason_names[d.reason]);

    if (in.percent >= 0) {
        p = ngx_http_canary_percent(p, in.percent);

    } else {
        p = ngx_cpymem(p, "null", 4);
    }

    p = ngx_cpymem(p, ",\"match\":", sizeof(",\"match\":") - 1);

    if (in.match >= 0) {
        p = ngx_sprintf(p, "%s", in.match ? "true" : "false");

    } else {
        p = ngx_cpymem(p, "null", 4);
    }

    /* would a GET with this key be shadowed where the rollout is */

    snap = ro[index].sh->snapshot;

    p = ngx_sprintf(p, ",\"shadowed\":%s",
                    (ro[index].sh->shadow && snap->shadow
                     && d.variant == NGX_HTTP_CANARY_STABLE && d.has_bucket
                     && (d.reason == NGX_HTTP_CANARY_REASON_PERCENT
                         || d.reason == NGX_HTTP_CANARY_REASON_SEGMENT)
                     && in.percent >= 0
                     && d.bucket >= (ngx_uint_t) in.percent
                     && d.bucket < (ngx_uint_t) in.percent + snap->shadow)
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


/*
 * A query argument, decoded as a form value: "%XX" and "+" for a space.
 * NGX_DECLINED when it is absent ("name" without "=" is absent).
 */

static ngx_int_t
ngx_http_canary_arg(ngx_http_request_t *r, char *name, ngx_str_t *value)
{
    u_char     *src, *dst, *p;
    ngx_str_t   raw;

    if (ngx_http_arg(r, (u_char *) name, ngx_strlen(name), &raw) != NGX_OK) {
        return NGX_DECLINED;
    }

    dst = ngx_pnalloc(r->pool, raw.len + 1);
    if (dst == NULL) {
        return NGX_ERROR;
    }

    for (p = raw.data; p < raw.data + raw.len; p++) {
        if (*p == '+') {
            break;
        }
    }

    if (p < raw.data + raw.len) {
        /* a copy, so that the request line stays as it came */

        p = ngx_pnalloc(r->pool, raw.len);
        if (p == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(p, raw.data, raw.len);
        raw.data = p;

        for ( /* void */ ; p < raw.data + raw.len; p++) {
            if (*p == '+') {
                *p = ' ';
            }
        }
    }

    value->data = dst;
    src = raw.data;

    ngx_unescape_uri(&dst, &src, raw.len, 0);

    value->len = dst - value->data;

    return NGX_OK;
}


/*
 * 400 with a one-line reason; the offending value is quoted with
 * anything outside printable ASCII shown as "?", and cut at 64 bytes.
 */

static ngx_int_t
ngx_http_canary_bad_request(ngx_http_request_t *r, char *what,
    ngx_str_t *value)
{
    u_char                 *p;
    ngx_uint_t              i;
    ngx_http_canary_out_t   o;

    ngx_memzero(&o, sizeof(ngx_http_canary_out_t));
    o.request = r;
    o.last = &o.out;

    p = ngx_http_canary_reserve(&o, ngx_strlen(what) + 64 + 8);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_sprintf(p, "%s", what);

    if (value) {
        *p++ = ' ';
        *p++ = '"';

        for (i = 0; i < value->len && i < 64; i++) {
            *p++ = (value->data[i] >= 0x20 && value->data[i] < 0x7f
                    && value->data[i] != '"')
                   ? value->data[i] : '?';
        }

        *p++ = '"';
    }

    *p++ = '\n';

    o.buf->last = p;

    r->headers_out.status = NGX_HTTP_BAD_REQUEST;

    return ngx_http_canary_send(r, &o, "text/plain");
}


static ngx_int_t
ngx_http_canary_send(ngx_http_request_t *r, ngx_http_canary_out_t *o,
    char *type)
{
    off_t         len;
    ngx_int_t     rc;
    ngx_chain_t  *cl;

    len = 0;

    for (cl = o->out; cl; cl = cl->next) {
        len += cl->buf->last - cl->buf->pos;
    }

    if (r->headers_out.status == 0) {
        r->headers_out.status = NGX_HTTP_OK;
    }

    r->headers_out.content_length_n = len;
    r->headers_out.content_type.len = ngx_strlen(type);
    r->headers_out.content_type.data = (u_char *) type;
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    o->buf->last_buf = (r == r->main) ? 1 : 0;
    o->buf->last_in_chain = 1;

    return ngx_http_output_filter(r, o->out);
}


/*
 * An automatic rollout's step, time to the next decision and last
 * decision with its figures (ngx_http_canary_auto.c): text lines, or the
 * JSON member "auto":{...}, followed by a comma.
 */

static ngx_int_t
ngx_http_canary_auto_block(ngx_http_canary_out_t *o,
    ngx_http_canary_view_t *vw, ngx_uint_t json)
{
    u_char                       *p;
    size_t                        size;
    ngx_http_canary_main_conf_t  *cmcf;

    size = ngx_http_canary_auto_status_size(vw->rollout);

    if (size == 0) {
        return NGX_OK;
    }

    p = ngx_http_canary_reserve(o, size);
    if (p == NULL) {
        return NGX_ERROR;
    }

    cmcf = ngx_http_get_module_main_conf(o->request, ngx_http_canary_module);

    o->buf->last = json
                   ? ngx_http_canary_auto_status_json(cmcf, vw->rollout, p,
                                                      p + size)
                   : ngx_http_canary_auto_status_text(cmcf, vw->rollout, p,
                                                      p + size);

    return NGX_OK;
}


/*
 * Room for size more bytes at o->buf->last, in a new buffer if need be.
 *
 * The buffers are chunks that the worker keeps between status requests:
 * a request's chunks go back to the free list when its pool is destroyed,
 * that is once the answer has been sent.  Rendering into fresh memory each
 * time cost more than the rendering itself (a page fault per 4 KB: 5.8 MB
 * of Prometheus text for 1,000 rollouts), and glibc gives freed memory
 * back to the kernel as soon as the top of the heap is free.  At most
 * NGX_HTTP_CANARY_KEEP bytes are kept; a reservation larger than a chunk
 * takes a buffer from the request's pool.
 */

static u_char *
ngx_http_canary_reserve(ngx_http_canary_out_t *o, size_t size)
{
    u_char              *chunk;
    ngx_buf_t           *b;
    ngx_chain_t         *cl;
    ngx_pool_cleanup_t  *cln;

    if (o->buf && (size_t) (o->buf->end - o->buf->last) >= size) {
        return o->buf->last;
    }

    if (size > NGX_HTTP_CANARY_CHUNK - sizeof(u_char *)) {
        b = ngx_create_temp_buf(o->request->pool, size);
        if (b == NULL) {
            return NULL;
        }

    } else {
        if (o->chunks == NULL) {
            cln = ngx_pool_cleanup_add(o->request->pool, sizeof(u_char *));
            if (cln == NULL) {
                return NULL;
            }

            cln->handler = ngx_http_canary_chunks_cleanup;
            o->chunks = cln->data;
            *o->chunks = NULL;
        }

        b = ngx_calloc_buf(o->request->pool);
        if (b == NULL) {
            return NULL;
        }

        chunk = ngx_http_canary_free_chunks;

        if (chunk) {
            ngx_http_canary_free_chunks = *(u_char **) chunk;
            ngx_http_canary_kept -= NGX_HTTP_CANARY_CHUNK;

        } else {
            chunk = ngx_alloc(NGX_HTTP_CANARY_CHUNK,
                              o->request->connection->log);
            if (chunk == NULL) {
                return NULL;
            }
        }

        /* the request's chunks are linked through their first word */

        *(u_char **) chunk = *o->chunks;
        *o->chunks = chunk;

        b->start = chunk + sizeof(u_char *);
        b->pos = b->start;
        b->last = b->start;
        b->end = chunk + NGX_HTTP_CANARY_CHUNK;
        b->temporary = 1;
    }

    cl = ngx_alloc_chain_link(o->request->pool);
    if (cl == NULL) {
        return NULL;
    }

    cl->buf = b;
    cl->next = NULL;

    *o->last = cl;
    o->last = &cl->next;
    o->buf = b;

    return b->last;
}


static void
ngx_http_canary_chunks_cleanup(void *data)
{
    u_char  *chunk, *next, **chunks;

    chunks = data;

    for (chunk = *chunks; chunk; chunk = next) {
        next = *(u_char **) chunk;

        if (ngx_http_canary_kept + NGX_HTTP_CANARY_CHUNK
            > NGX_HTTP_CANARY_KEEP)
        {
            ngx_free(chunk);
            continue;
        }

        *(u_char **) chunk = ngx_http_canary_free_chunks;
        ngx_http_canary_free_chunks = chunk;
        ngx_http_canary_kept += NGX_HTTP_CANARY_CHUNK;
    }
}


/* the length of s escaped for the format */

static size_t
ngx_http_canary_esc_len(ngx_str_t *s, ngx_uint_t type)
{
    u_char  *p, *end, *q;
    size_t   len;

    if (type == NGX_HTTP_CANARY_ESC_HTML) {
        return s->len + ngx_escape_html(NULL, s->data, s->len);
    }

    len = 0;
    p = s->data;
    end = p + s->len;

    while (p < end) {

        if (*p < 0x80) {
            if (type == NGX_HTTP_CANARY_ESC_JSON) {
                len += 1 + ngx_escape_json(NULL, p, 1);

            } else {
                len += (*p == '\\' || *p == '"' || *p == '\n') ? 2 : 1;
            }

            p++;
            continue;
        }

        q = p;

        if (ngx_utf8_decode(&q, end - p) <= 0x10ffff) {
            len += q - p;
            p = q;
            continue;
        }

        /* not UTF-8: U+FFFD */

        len += (type == NGX_HTTP_CANARY_ESC_JSON) ? sizeof("\\ufffd") - 1
                                                  : 3;
        p++;
    }

    return len;
}


static u_char *
ngx_http_canary_esc(u_char *dst, ngx_str_t *s, ngx_uint_t type)
{
    u_char  *p, *end, *q, *run;

    if (type == NGX_HTTP_CANARY_ESC_HTML) {
        return (u_char *) ngx_escape_html(dst, s->data, s->len);
    }

    p = s->data;
    end = p + s->len;
    run = p;

    while (p < end) {

        if (*p < 0x80) {
            if (type == NGX_HTTP_CANARY_ESC_LABEL
                && (*p == '\\' || *p == '"' || *p == '\n'))
            {
                dst = ngx_cpymem(dst, run, p - run);
                *dst++ = '\\';
                *dst++ = (*p == '\n') ? 'n' : *p;
                run = p + 1;
            }

            p++;
            continue;
        }

        q = p;

        if (ngx_utf8_decode(&q, end - p) <= 0x10ffff) {
            p = q;
            continue;
        }

        if (type == NGX_HTTP_CANARY_ESC_JSON) {
            dst = (u_char *) ngx_escape_json(dst, run, p - run);
            dst = ngx_cpymem(dst, "\\ufffd", sizeof("\\ufffd") - 1);

        } else {
            dst = ngx_cpymem(dst, run, p - run);
            dst = ngx_cpymem(dst, "\xef\xbf\xbd", 3);
        }

        p++;
        run = p;
    }

    if (type == NGX_HTTP_CANARY_ESC_JSON) {
        return (u_char *) ngx_escape_json(dst, run, p - run);
    }

    return ngx_cpymem(dst, run, p - run);
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


/* an unsigned number in decimal, as "%uA" prints it, without a format */

static u_char *
ngx_http_canary_uint(u_char *p, ngx_atomic_uint_t n)
{
    u_char  *q, tmp[NGX_ATOMIC_T_LEN];

    q = tmp + NGX_ATOMIC_T_LEN;

    do {
        *--q = (u_char) (n % 10 + '0');
        n /= 10;
    } while (n);

    return ngx_cpymem(p, q, tmp + NGX_ATOMIC_T_LEN - q);
}


/* hundredths of a percent as a number: 12.5, 0.01, 100 */

static u_char *
ngx_http_canary_percent(u_char *p, ngx_uint_t percent)
{
    if (percent % 100 == 0) {
        return ngx_sprintf(p, "%ui", percent / 100);
    }

    if (percent % 10 == 0) {
        return ngx_sprintf(p, "%ui.%ui", percent / 100, percent % 100 / 10);
    }

    return ngx_sprintf(p, "%ui.%02ui", percent / 100, percent % 100);
}


/* milliseconds as seconds: 0.001, 0.075, 1.5, 60 */

static u_char *
ngx_http_canary_seconds(u_char *p, ngx_atomic_uint_t ms)
{
    ngx_atomic_uint_t  frac;

    p = ngx_sprintf(p, "%uA", ms / 1000);

    frac = ms % 1000;

    if (frac == 0) {
        return p;
    }

    if (frac % 100 == 0) {
        return ngx_sprintf(p, ".%uA", frac / 100);
    }

    if (frac % 10 == 0) {
        return ngx_sprintf(p, ".%02uA", frac / 10);
    }

    return ngx_sprintf(p, ".%03uA", frac);
}


/*
 * The upper bound in milliseconds of the bucket that holds the q-th
 * percentile, "inf" beyond the last bound, "-" without requests.
 */

static u_char *
ngx_http_canary_quantile(u_char *p, ngx_http_canary_counters_t *c,
    ngx_atomic_uint_t count, ngx_uint_t q)
{
    ngx_uint_t         b;
    ngx_atomic_uint_t  rank, cum;

    if (count == 0) {
        *p++ = '-';
        return p;
    }

    rank = (count * q + 99) / 100;
    cum = 0;

    for (b = 0; b < NGX_HTTP_CANARY_HIST_BUCKETS - 1; b++) {
        cum += c->hist[b];

        if (cum >= rank) {
            return ngx_sprintf(p, "%M", ngx_http_canary_hist_bounds[b]);
        }
    }

    return ngx_cpymem(p, "inf", 3);
}


static ngx_str_t *
ngx_http_canary_state(ngx_uint_t state)
{
    if (state == NGX_HTTP_CANARY_STATE_NONE) {
        return &ngx_http_canary_state_none;
    }

    return &ngx_http_canary_state_names[state];
}


/*
 * For the status page: the automatic rollout's step, the time to the next
 * decision, the last decision and its figures, as a JSON member
 * ("auto":{...},) or as text lines.  NULL-safe: nothing for a rollout
 * without "auto".
 */

static size_t
ngx_http_canary_auto_status_size(ngx_http_canary_rollout_t *ro)
{
    return ro->policy ? 2048 : 0;
}


static void
ngx_http_canary_auto_status_read(ngx_http_canary_main_conf_t *cmcf,
    ngx_http_canary_rollout_t *ro, ngx_http_canary_auto_status_t *st,
    int64_t *next)
{
    uint64_t  now, at;

    ngx_shmtx_lock(&cmcf->shpool->mutex);
    *st = *ro->sh->autost;
    ngx_shmtx_unlock(&cmcf->shpool->mutex);

    *next = -1;

    if (ro->sh->snapshot->state != NGX_HTTP_CANARY_STATE_PROGRESSING
        || (!st->dark
            && (st->step == 0 || st->step >= ro->policy->nsteps)))
    {
        return;
    }

    now = ngx_http_canary_auto_now();
    at = ngx_http_canary_policy_next_judgement(ro->policy, st->since,
                                               st->checked);

    *next = (at > now) ? (int64_t) (at - now) : 0;
}


static u_char *
ngx_http_canary_auto_status_json(ngx_http_canary_main_conf_t *cmcf,
    ngx_http_canary_rollout_t *ro, u_char *p, u_char *last)
{
    int64_t                        next;
    ngx_uint_t                     v;
    ngx_http_canary_auto_status_t  st;

    if (ro->policy == NULL || ro->sh->autost == NULL) {
        return p;
    }

    ngx_http_canary_auto_status_read(cmcf, ro, &st, &next);

    p = ngx_slprintf(p, last, "\"auto\":{\"step\":%ui,\"steps\":%ui,"
                     "\"phase\":\"%s\",\"dark_passed\":%ui,"
                     "\"interval_ms\":%uL,\"next_decision_ms\":",
                     st.step, st.nsteps, st.dark ? "dark" : "live",
                     st.dark_passed, ro->policy->interval);

    p = (next < 0) ? ngx_slprintf(p, last, "null")
                   : ngx_slprintf(p, last, "%L", next);

    p = ngx_slprintf(p, last, ",\"failures\":%ui,\"leader\":%s,"
                     "\"last_decision\":", st.failures,
                     cmcf->sh->auto_leader ? "true" : "false");

    if (st.decision_len == 0) {
        return ngx_slprintf(p, last, "null},");
    }

    p = ngx_slprintf(p, last, "{\"decision\":\"");
    p = (u_char *) ngx_escape_json(p, st.decision, st.decision_len);
    p = ngx_slprintf(p, last, "\",\"at\":%uL,\"by\":\"", st.decided_at);
    p = (u_char *) ngx_escape_json(p, st.decided_by, st.decided_by_len);
    p = ngx_slprintf(p, last, "\",\"reason\":\"");
    p = (u_char *) ngx_escape_json(p, st.reason, st.reason_len);
    p = ngx_slprintf(p, last, "\",\"interval\":%uL,\"nodes\":%ui",
                     st.interval, st.nodes);

    if (st.interval) {
        for (v = 2; v-- > 0; /* void */) {
            p = ngx_slprintf(p, last, ",\"%s\":{\"requests\":%uL,"
                             "\"errors\":%uL,\"error_rate_ppm\":%uL,"
                             "\"p99_ms\":", v ? "canary" : "stable",
                             st.requests[v], st.errors[v],
                             st.error_rate[v]);

            p = (st.p99[v] == NGX_HTTP_CANARY_P99_INF)
                ? ngx_slprintf(p, last, "null}")
                : ngx_slprintf(p, last, "%uL}", st.p99[v]);
        }
    }

    return ngx_slprintf(p, last, "}},");
}


static u_char *
ngx_http_canary_auto_status_text(ngx_http_canary_main_conf_t *cmcf,
    ngx_http_canary_rollout_t *ro, u_char *p, u_char *last)
{
    int64_t                        next;
    ngx_http_canary_auto_status_t  st;

    if (ro->policy == NULL || ro->sh->autost == NULL) {
        return p;
    }

    ngx_http_canary_auto_status_read(cmcf, ro, &st, &next);

    p = ngx_slprintf(p, last, " auto step %ui of %ui next_decision ",
                     st.step, st.nsteps);

    p = (next < 0) ? ngx_slprintf(p, last, "-")
                   : ngx_slprintf(p, last, "%Lms", next);

    p = ngx_slprintf(p, last, " failures %ui", st.failures);

    if (st.dark) {
        p = ngx_slprintf(p, last, " phase dark passed %ui of %uD",
                         st.dark_passed, ro->policy->shadow_intervals);
    }

    p = ngx_slprintf(p, last, "\n");

    if (st.decision_len) {
        p = ngx_slprintf(p, last, " auto last %*s by %*s: %*s\n",
                         st.decision_len, st.decision, st.decided_by_len,
                         st.decided_by, st.reason_len, st.reason);
    }

    return p;
}
