
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * libFuzzer target: the "auto" parameters (ngx_http_canary_policy_*), then
 * the judgement of an interval and the step that follows.  The input is
 * the directive's arguments separated by spaces, a newline, then binary
 * figures (requests, errors and histograms of both variants, the current
 * step and failures).  Checks, besides memory safety, that an accepted
 * policy has 2..100 increasing steps within 0..100%, that errors always
 * carry a terminated message, and that the judgement and the next step
 * stay inside the policy.
 */


#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_http_canary_policy.h"


static const uint64_t  bounds[NGX_HTTP_CANARY_POLICY_HIST - 1] = {
    5, 10, 25, 50, 100, 250, 500, 1000, 2000, 2500, 5000, 10000, 20000,
    30000, 60000
};


static uint64_t
take(const uint8_t **p, const uint8_t *end, size_t n)
{
    uint64_t  v;

    v = 0;

    while (n-- && *p < end) {
        v = v << 8 | *(*p)++;
    }

    return v;
}


static void
terminated(const char *s, size_t size)
{
    if (memchr(s, '\0', size) == NULL) {
        abort();
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                              rc;
    char                             err[256], buf[64];
    size_t                           i, n, argn;
    uint32_t                         k;
    const uint8_t                   *nl, *p, *end, *arg;
    unsigned char                   *copy;
    ngx_http_canary_policy_t         pol;
    ngx_http_canary_figures_t        fig[2];
    ngx_http_canary_judgement_t      j;
    ngx_http_canary_decision_next_t  next;

    nl = memchr(data, '\n', size);
    argn = nl ? (size_t) (nl - data) : size;

    ngx_http_canary_policy_init(&pol);

    rc = 0;
    i = 0;

    while (i < argn && rc == 0) {
        while (i < argn && data[i] == ' ') {
            i++;
        }

        arg = data + i;

        while (i < argn && data[i] != ' ') {
            i++;
        }

        n = data + i - arg;

        if (n == 0) {
            break;
        }

        /* an exact-size heap copy: ASan sees a read past the argument */

        copy = malloc(n);
        if (copy == NULL) {
            return 0;
        }

        memcpy(copy, arg, n);
        memset(err, 0x7f, sizeof(err));

        rc = ngx_http_canary_policy_parse(&pol, copy, n, err, sizeof(err));

        if (rc != 0) {
            terminated(err, sizeof(err));
        }

        free(copy);
    }

    if (rc != 0) {
        return 0;
    }

    memset(err, 0x7f, sizeof(err));

    if (ngx_http_canary_policy_finish(&pol, err, sizeof(err)) != 0) {
        terminated(err, sizeof(err));
        return 0;
    }

    if (pol.nsteps < 2 || pol.nsteps > NGX_HTTP_CANARY_POLICY_MAX_STEPS
        || pol.interval == 0 || pol.failures == 0)
    {
        abort();
    }

    for (k = 0; k < pol.nsteps; k++) {
        if (pol.steps[k] > 10000 || (k && pol.steps[k] <= pol.steps[k - 1]))
        {
            abort();
        }
    }

    /* the figures of one interval from the rest of the input */

    p = nl ? nl + 1 : data + size;
    end = data + size;

    memset(fig, 0, sizeof(fig));

    for (k = 0; k < 2; k++) {
        fig[k].requests = take(&p, end, 3);
        fig[k].errors = take(&p, end, 3);

        for (i = 0; i < NGX_HTTP_CANARY_POLICY_HIST; i++) {
            fig[k].hist[i] = take(&p, end, 2);
        }
    }

    memset(&j, 0, sizeof(j));
    memset(j.reason, 0x7f, sizeof(j.reason));

    rc = ngx_http_canary_judge(&pol, &fig[0], &fig[1], bounds,
                               NGX_HTTP_CANARY_POLICY_HIST - 1, &j);

    if (rc != j.verdict
        || (rc != NGX_HTTP_CANARY_VERDICT_PASS
            && rc != NGX_HTTP_CANARY_VERDICT_HOLD
            && rc != NGX_HTTP_CANARY_VERDICT_FAIL))
    {
        abort();
    }

    terminated(j.reason, sizeof(j.reason));

    ngx_http_canary_policy_next(&pol, (uint32_t) take(&p, end, 1),
                                (uint32_t) take(&p, end, 1), rc, &next);

    if (next.step >= pol.nsteps) {
        abort();
    }

    if (next.action == NGX_HTTP_CANARY_ACTION_ROLLBACK) {
        if (next.percent != 0 || next.failures < pol.failures) {
            abort();
        }

    } else if (next.percent != pol.steps[next.step]) {
        abort();
    }

    if (next.action == NGX_HTTP_CANARY_ACTION_PROMOTE
        && next.step != pol.nsteps - 1)
    {
        abort();
    }

    /* the formatters never overrun, whatever the value */

    ngx_http_canary_format_rate(buf, sizeof(buf), j.error_rate[1]);
    ngx_http_canary_format_ms(buf, sizeof(buf), j.p99[1]);
    ngx_http_canary_format_percent(buf, sizeof(buf), next.percent);
    ngx_http_canary_format_rate(buf, 4, UINT64_MAX);
    terminated(buf, 4);

    return 0;
}
