
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * Per-variant counters, recorded in the log phase.  Each worker adds to
 * its own slot of the rollout's counters in the zone; readers sum the
 * slots.  No lock: every field is an atomic add on a cache line that no
 * other worker writes, except briefly during a reload, when an old and a
 * new worker with the same number share a slot and the atomic add keeps
 * both counts.
 *
 * What is counted, once per main request (see the log handler in
 * ngx_http_canary_module.c for which rollout and variant):
 *
 *   requests         1
 *   responses[c]     the class of the final status, as $status logs it
 *                    (499 for a client that went away is a 4xx)
 *   upstream_errors  1 if the final status is 502, 503 or 504 (from nginx
 *                    or passed on from the upstream), or if any upstream
 *                    attempt of the request ended so: a connect failure
 *                    leaves 502, a timeout 504, with no response from the
 *                    peer; an attempt that failed and was retried on
 *                    another peer (proxy_next_upstream), or whose error
 *                    an error_page turned into another response, counts
 *   errors           1 if the final status is 5xx or the request had an
 *                    upstream error as above: what "auto" judges
 *   hist[b]          the request time ($request_time) in the first bucket
 *                    whose upper bound it does not exceed
 *   time_sum_ms      the request time in milliseconds
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_canary_module.h"


static ngx_uint_t ngx_http_canary_upstream_error(ngx_http_request_t *r,
    ngx_uint_t status);


/*
 * Upper bounds of the request time histogram, in milliseconds: fixed, so
 * that sums across workers and nodes are exact, and at most 1.5 to 2.5
 * apart, so that p50, p95 and p99 read from it are within one bucket.
 */

ngx_msec_t  ngx_http_canary_hist_bounds[NGX_HTTP_CANARY_HIST_BUCKETS - 1] = {
    1, 2, 5, 10, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 1500,
    2000, 3000, 5000, 10000, 20000, 30000, 60000
};


/*
 * This worker's counter slot, ngx_worker % nslots of the zone: set when
 * the worker starts, 0 in a single process.
 */

ngx_uint_t  ngx_http_canary_slot;


/*
 * One request into counters c with the given final status; the request
 * time is from r's start (a subrequest's own, for shadow traffic).
 */

void
ngx_http_canary_count_status(ngx_http_request_t *r,
    ngx_http_canary_counters_t *c, ngx_uint_t status)
{
    ngx_int_t    ms;
    ngx_uint_t   i;
    ngx_time_t  *tp;

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

    if (ms) {
        (void) ngx_atomic_fetch_add(&c->time_sum_ms, ms);
    }

    if (status >= 100 && status < 600) {
        (void) ngx_atomic_fetch_add(&c->responses[status / 100 - 1], 1);
    }

    if (ngx_http_canary_upstream_error(r, status)) {
        (void) ngx_atomic_fetch_add(&c->upstream_errors, 1);
        (void) ngx_atomic_fetch_add(&c->errors, 1);

    } else if (status >= 500 && status < 600) {
        (void) ngx_atomic_fetch_add(&c->errors, 1);
    }
}


static ngx_uint_t
ngx_http_canary_upstream_error(ngx_http_request_t *r, ngx_uint_t status)
{
    ngx_uint_t                  i;
    ngx_http_upstream_state_t  *state;

    if (status == NGX_HTTP_BAD_GATEWAY
        || status == NGX_HTTP_SERVICE_UNAVAILABLE
        || status == NGX_HTTP_GATEWAY_TIME_OUT)
    {
        return 1;
    }

    if (r->upstream_states == NULL) {
        return 0;
    }

    /*
     * One entry per attempt (entries without a peer separate the upstream
     * requests of successive internal redirects); the upstream module
     * leaves 502 after a connect error and 504 after a timeout, the
     * protocol modules the peer's own status otherwise.
     */

    state = r->upstream_states->elts;

    for (i = 0; i < r->upstream_states->nelts; i++) {
        if (state[i].status == NGX_HTTP_BAD_GATEWAY
            || state[i].status == NGX_HTTP_SERVICE_UNAVAILABLE
            || state[i].status == NGX_HTTP_GATEWAY_TIME_OUT)
        {
            return 1;
        }
    }

    return 0;
}
