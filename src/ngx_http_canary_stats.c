
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * Per-variant counters, recorded in the log phase.  Each worker adds to
 * its own slot of the rollout's counters in the zone; readers sum the
 * slots.  No lock: every field is an atomic add on a cache line that no
 * other worker writes, except briefly during a reload, when an old and a
 * new worker with the same number share a slot and the atomic add keeps
 * both counts.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_canary_module.h"


/* upper bounds of the request time histogram, in milliseconds */

ngx_msec_t  ngx_http_canary_hist_bounds[NGX_HTTP_CANARY_HIST_BUCKETS - 1] = {
    1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000,
    60000
};


void
ngx_http_canary_count(ngx_http_request_t *r, ngx_http_canary_shrollout_t *shr,
    ngx_uint_t nslots, ngx_uint_t variant)
{
    ngx_int_t                    ms;
    ngx_uint_t                   i, status;
    ngx_time_t                  *tp;
    ngx_http_canary_counters_t  *c;

    c = &shr->slots[ngx_worker % nslots].v[variant];

    status = r->headers_out.status;

    tp = ngx_timeofday();

    ms = (ngx_int_t) ((tp->sec - r->start_sec) * 1000
                      + (tp->msec - r->start_msec));
    ms = ngx_max(ms, 0);

    for (i = 0; i < NGX_HTTP_CANARY_HIST_BUCKETS - 1; i++) {
        if ((ngx_msec_t) ms <= ngx_http_canary_hist_bounds[i]) {
            break;
        }
    }

    (void) ngx_atomic_fetch_add(&c->requests, 1);
    (void) ngx_atomic_fetch_add(&c->hist[i], 1);
    (void) ngx_atomic_fetch_add(&c->time_sum_ms, ms);

    if (status >= 100 && status < 600) {
        (void) ngx_atomic_fetch_add(&c->responses[status / 100 - 1], 1);
    }

    if (status == NGX_HTTP_BAD_GATEWAY
        || status == NGX_HTTP_SERVICE_UNAVAILABLE
        || status == NGX_HTTP_GATEWAY_TIME_OUT)
    {
        (void) ngx_atomic_fetch_add(&c->upstream_errors, 1);
    }
}
