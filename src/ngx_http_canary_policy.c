
/*
 * Copyright (C) ngx_http_canary_module authors
 */


#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "ngx_http_canary_parse.h"
#include "ngx_http_canary_policy.h"


#define ngx_http_canary_isdigit(c)  ((c) >= '0' && (c) <= '9')
#define ngx_http_canary_min(a, b)   ((a) < (b) ? (a) : (b))
#define ngx_http_canary_max(a, b)   ((a) > (b) ? (a) : (b))

/* how often every node reads a rollout's hash at most, ms */
#define NGX_HTTP_CANARY_POLICY_POLL  1000

/* a bound that no parameter may pass: keeps every product in 64 bits */
#define NGX_HTTP_CANARY_POLICY_BIG  1000000000000ULL


typedef int (*ngx_http_canary_policy_set_pt)(ngx_http_canary_policy_t *p,
    const unsigned char *v, size_t len, char *err, size_t errlen);


typedef struct {
    const char                     *name;
    ngx_http_canary_policy_set_pt   set;
} ngx_http_canary_policy_param_t;


static int ngx_http_canary_policy_steps(ngx_http_canary_policy_t *p,
    const unsigned char *v, size_t len, char *err, size_t errlen);
static int ngx_http_canary_policy_start(ngx_http_canary_policy_t *p,
    const unsigned char *v, size_t len, char *err, size_t errlen);
static int ngx_http_canary_policy_step(ngx_http_canary_policy_t *p,
    const unsigned char *v, size_t len, char *err, size_t errlen);
static int ngx_http_canary_policy_max(ngx_http_canary_policy_t *p,
    const unsigned char *v, size_t len, char *err, size_t errlen);
static int ngx_http_canary_policy_interval(ngx_http_canary_policy_t *p,
    const unsigned char *v, size_t len, char *err, size_t errlen);
static int ngx_http_canary_policy_error_rate(ngx_http_canary_policy_t *p,
    const unsigned char *v, size_t len, char *err, size_t errlen);
static int ngx_http_canary_policy_p99(ngx_http_canary_policy_t *p,
    const unsigned char *v, size_t len, char *err, size_t errlen);
static int ngx_http_canary_policy_min_requests(ngx_http_canary_policy_t *p,
    const unsigned char *v, size_t len, char *err, size_t errlen);
static int ngx_http_canary_policy_failures(ngx_http_canary_policy_t *p,
    const unsigned char *v, size_t len, char *err, size_t errlen);
static int ngx_http_canary_policy_error_vs(ngx_http_canary_policy_t *p,
    const unsigned char *v, size_t len, char *err, size_t errlen);
static int ngx_http_canary_policy_p99_vs(ngx_http_canary_policy_t *p,
    const unsigned char *v, size_t len, char *err, size_t errlen);
static int ngx_http_canary_policy_shadow(ngx_http_canary_policy_t *p,
    const unsigned char *v, size_t len, char *err, size_t errlen);
static int ngx_http_canary_policy_shadow_intervals(
    ngx_http_canary_policy_t *p, const unsigned char *v, size_t len,
    char *err, size_t errlen);
static int ngx_http_canary_policy_approve(ngx_http_canary_policy_t *p,
    const unsigned char *v, size_t len, char *err, size_t errlen);
static int ngx_http_canary_policy_gates(ngx_http_canary_policy_t *p,
    char *err, size_t errlen);

static int ngx_http_canary_policy_percents(const unsigned char *v,
    size_t len, const char *what, int increasing, uint32_t *list,
    uint32_t *n, char *err, size_t errlen);
static int ngx_http_canary_policy_step_percent(const unsigned char *v,
    size_t len, const char *what, uint32_t *hundredths, char *err,
    size_t errlen);
static int ngx_http_canary_parse_uint(const unsigned char *p, size_t len,
    uint64_t max, uint64_t *value);
static int ngx_http_canary_parse_ratio(const unsigned char *p, size_t len,
    uint64_t *hundredths);
static void ngx_http_canary_judge_check(const char *what, uint64_t canary,
    uint64_t stable, uint64_t max, uint32_t vs, uint64_t vs_value,
    int stable_known, int is_rate, int *fail, int *excused, char *fails,
    char *holds);
static void ngx_http_canary_append(char *buf, const char *fmt, ...);


static const ngx_http_canary_policy_param_t  ngx_http_canary_policy_params[] =
{
    { "steps", ngx_http_canary_policy_steps },
    { "start", ngx_http_canary_policy_start },
    { "step", ngx_http_canary_policy_step },
    { "max", ngx_http_canary_policy_max },
    { "interval", ngx_http_canary_policy_interval },
    { "max_error_rate", ngx_http_canary_policy_error_rate },
    { "max_p99", ngx_http_canary_policy_p99 },
    { "min_requests", ngx_http_canary_policy_min_requests },
    { "failures", ngx_http_canary_policy_failures },
    { "max_error_rate_vs_stable", ngx_http_canary_policy_error_vs },
    { "max_p99_vs_stable", ngx_http_canary_policy_p99_vs },
    { "shadow", ngx_http_canary_policy_shadow },
    { "shadow_intervals", ngx_http_canary_policy_shadow_intervals },
    { "approve", ngx_http_canary_policy_approve },
    { NULL, NULL }
};


#define NGX_HTTP_CANARY_GIVEN_STEPS         (1u << 0)
#define NGX_HTTP_CANARY_GIVEN_START         (1u << 1)
#define NGX_HTTP_CANARY_GIVEN_STEP          (1u << 2)
#define NGX_HTTP_CANARY_GIVEN_MAX           (1u << 3)
#define NGX_HTTP_CANARY_GIVEN_INTERVAL      (1u << 4)
#define NGX_HTTP_CANARY_GIVEN_LINEAR        (NGX_HTTP_CANARY_GIVEN_START    \
                                             |NGX_HTTP_CANARY_GIVEN_STEP    \
                                             |NGX_HTTP_CANARY_GIVEN_MAX)


void
ngx_http_canary_policy_init(ngx_http_canary_policy_t *p)
{
    memset(p, 0, sizeof(ngx_http_canary_policy_t));

    p->max_error_rate = 10000;          /* 1% */
    p->min_requests = 100;
    p->failures = 1;
}


int
ngx_http_canary_policy_parse(ngx_http_canary_policy_t *p,
    const unsigned char *arg, size_t len, char *err, size_t errlen)
{
    size_t                                 i, n;
    uint32_t                               bit;
    const ngx_http_canary_policy_param_t  *pp;

    for (n = 0; n < len && arg[n] != '='; n++) { /* void */ }

    if (n == len) {
        snprintf(err, errlen, "parameters are written name=value");
        return -1;
    }

    for (i = 0; ngx_http_canary_policy_params[i].name; i++) {
        pp = &ngx_http_canary_policy_params[i];

        if (strlen(pp->name) != n || memcmp(pp->name, arg, n) != 0) {
            continue;
        }

        bit = 1u << i;

        if (p->given & bit) {
            snprintf(err, errlen, "duplicate parameter \"%s\"", pp->name);
            return -1;
        }

        p->given |= bit;

        if (n + 1 == len) {
            snprintf(err, errlen, "empty \"%s\"", pp->name);
            return -1;
        }

        return pp->set(p, arg + n + 1, len - n - 1, err, errlen);
    }

    snprintf(err, errlen, "unknown parameter \"%.*s\"", (int) n, arg);

    return -1;
}


int
ngx_http_canary_policy_finish(ngx_http_canary_policy_t *p, char *err,
    size_t errlen)
{
    uint32_t  v;

    if ((p->given & NGX_HTTP_CANARY_GIVEN_STEPS)
        && (p->given & NGX_HTTP_CANARY_GIVEN_LINEAR))
    {
        snprintf(err, errlen, "\"steps\" excludes \"start\", \"step\" "
                 "and \"max\"");
        return -1;
    }

    if (p->given & NGX_HTTP_CANARY_GIVEN_LINEAR) {

        if (!(p->given & NGX_HTTP_CANARY_GIVEN_STEP)) {
            snprintf(err, errlen, "\"start\" and \"max\" need \"step\"");
            return -1;
        }

        if (p->start == 0) {
            p->start = p->step;
        }

        if (p->max == 0) {
            p->max = 10000;
        }

        if (p->start > p->max) {
            snprintf(err, errlen, "\"start\" is above \"max\"");
            return -1;
        }

        p->nsteps = 0;

        for (v = p->start; v < p->max; v += p->step) {
            if (p->nsteps == NGX_HTTP_CANARY_POLICY_MAX_STEPS - 1) {
                snprintf(err, errlen, "more than %d steps",
                         NGX_HTTP_CANARY_POLICY_MAX_STEPS);
                return -1;
            }

            p->steps[p->nsteps++] = v;
        }

        p->steps[p->nsteps++] = p->max;

    } else if (!(p->given & NGX_HTTP_CANARY_GIVEN_STEPS)) {
        snprintf(err, errlen, "\"steps\" or \"step\" is required");
        return -1;
    }

    if (p->nsteps < 2) {
        snprintf(err, errlen, "at least two steps are needed: the last one "
                 "is the promotion");
        return -1;
    }

    if (!(p->given & NGX_HTTP_CANARY_GIVEN_INTERVAL)) {
        snprintf(err, errlen, "\"interval\" is required");
        return -1;
    }

    if (p->shadow_intervals && p->shadow == 0) {
        snprintf(err, errlen, "\"shadow_intervals\" needs \"shadow\"");
        return -1;
    }

    if (p->shadow && p->shadow_intervals == 0) {
        p->shadow_intervals = 1;
    }

    return ngx_http_canary_policy_gates(p, err, errlen);
}


/* "approve=10,100" (percents of steps) or "approve=all" */

static int
ngx_http_canary_policy_approve(ngx_http_canary_policy_t *p,
    const unsigned char *v, size_t len, char *err, size_t errlen)
{
    if (len == 3 && memcmp(v, "all", 3) == 0) {
        p->approve_all = 1;
        return 0;
    }

    return ngx_http_canary_policy_percents(v, len, "approve", 0,
                                           p->approve, &p->napprove, err,
                                           errlen);
}


/* each approval names a step: marks it gated */

static int
ngx_http_canary_policy_gates(ngx_http_canary_policy_t *p, char *err,
    size_t errlen)
{
    char      buf[16];
    uint32_t  i, k;

    memset(p->gated, 0, sizeof(p->gated));

    for (k = 0; k < p->nsteps; k++) {
        p->gated[k] = (uint8_t) (p->approve_all != 0);
    }

    for (i = 0; i < p->napprove; i++) {

        for (k = 0; k < p->nsteps; k++) {
            if (p->steps[k] == p->approve[i]) {
                break;
            }
        }

        if (k == p->nsteps) {
            ngx_http_canary_format_percent(buf, sizeof(buf), p->approve[i]);
            snprintf(err, errlen, "approve \"%s\" is not one of the steps",
                     buf);
            return -1;
        }

        p->gated[k] = 1;
    }

    return 0;
}


int
ngx_http_canary_policy_gated(const ngx_http_canary_policy_t *p,
    uint32_t index)
{
    return index < p->nsteps && p->gated[index];
}


static int
ngx_http_canary_policy_steps(ngx_http_canary_policy_t *p,
    const unsigned char *v, size_t len, char *err, size_t errlen)
{
    return ngx_http_canary_policy_percents(v, len, "step", 1, p->steps,
                                           &p->nsteps, err, errlen);
}


/*
 * A comma-separated list of percents, each as a step: "what" names them
 * in errors; "increasing": each above the one before
 */

static int
ngx_http_canary_policy_percents(const unsigned char *v, size_t len,
    const char *what, int increasing, uint32_t *list, uint32_t *n,
    char *err, size_t errlen)
{
    char      prev[16];
    size_t    i, s;
    uint32_t  h;

    *n = 0;
    s = 0;

    for (i = 0; i <= len; i++) {

        if (i < len && v[i] != ',') {
            continue;
        }

        if (ngx_http_canary_policy_step_percent(v + s, i - s, what, &h,
                                                err, errlen)
            != 0)
        {
            return -1;
        }

        if (increasing && *n && h <= list[*n - 1]) {
            ngx_http_canary_format_percent(prev, sizeof(prev),
                                           list[*n - 1]);
            snprintf(err, errlen, "%ss must increase: \"%.*s\" after "
                     "\"%s\"", what, (int) (i - s), v + s, prev);
            return -1;
        }

        if (*n == NGX_HTTP_CANARY_POLICY_MAX_STEPS) {
            snprintf(err, errlen, "more than %d %ss",
                     NGX_HTTP_CANARY_POLICY_MAX_STEPS, what);
            return -1;
        }

        list[(*n)++] = h;
        s = i + 1;
    }

    return 0;
}


static int
ngx_http_canary_policy_start(ngx_http_canary_policy_t *p,
    const unsigned char *v, size_t len, char *err, size_t errlen)
{
    return ngx_http_canary_policy_step_percent(v, len, "start", &p->start,
                                               err, errlen);
}


static int
ngx_http_canary_policy_step(ngx_http_canary_policy_t *p,
    const unsigned char *v, size_t len, char *err, size_t errlen)
{
    return ngx_http_canary_policy_step_percent(v, len, "step", &p->step,
                                               err, errlen);
}


static int
ngx_http_canary_policy_max(ngx_http_canary_policy_t *p,
    const unsigned char *v, size_t len, char *err, size_t errlen)
{
    return ngx_http_canary_policy_step_percent(v, len, "max", &p->max,
                                               err, errlen);
}


static int
ngx_http_canary_policy_interval(ngx_http_canary_policy_t *p,
    const unsigned char *v, size_t len, char *err, size_t errlen)
{
    if (ngx_http_canary_parse_duration(v, len, &p->interval) != 0) {
        snprintf(err, errlen, "invalid interval \"%.*s\", it must be a time "
                 "such as 30s, 5m or 1h30m", (int) len, v);
        return -1;
    }

    if (p->interval < 1000) {
        snprintf(err, errlen, "interval \"%.*s\" is too short, the least "
                 "is 1s", (int) len, v);
        return -1;
    }

    return 0;
}


static int
ngx_http_canary_policy_error_rate(ngx_http_canary_policy_t *p,
    const unsigned char *v, size_t len, char *err, size_t errlen)
{
    if (ngx_http_canary_parse_rate(v, len, &p->max_error_rate) != 0) {
        snprintf(err, errlen, "invalid max_error_rate \"%.*s\", it must be "
                 "a percentage such as 0.1%%", (int) len, v);
        return -1;
    }

    return 0;
}


static int
ngx_http_canary_policy_p99(ngx_http_canary_policy_t *p,
    const unsigned char *v, size_t len, char *err, size_t errlen)
{
    if (ngx_http_canary_parse_duration(v, len, &p->max_p99) != 0
        || p->max_p99 == 0 || p->max_p99 > NGX_HTTP_CANARY_POLICY_MAX_P99)
    {
        snprintf(err, errlen, "invalid max_p99 \"%.*s\", it must be a time "
                 "from 1ms to 60s such as 500ms", (int) len, v);
        return -1;
    }

    return 0;
}


static int
ngx_http_canary_policy_min_requests(ngx_http_canary_policy_t *p,
    const unsigned char *v, size_t len, char *err, size_t errlen)
{
    if (ngx_http_canary_parse_uint(v, len, NGX_HTTP_CANARY_POLICY_BIG,
                                   &p->min_requests)
        != 0)
    {
        snprintf(err, errlen, "invalid min_requests \"%.*s\", it must be "
                 "a number of requests", (int) len, v);
        return -1;
    }

    return 0;
}


/* the dark phase: "shadow=5" (percent, above 0), "shadow_intervals=2" */

static int
ngx_http_canary_policy_shadow(ngx_http_canary_policy_t *p,
    const unsigned char *v, size_t len, char *err, size_t errlen)
{
    return ngx_http_canary_policy_step_percent(v, len, "shadow", &p->shadow,
                                               err, errlen);
}


static int
ngx_http_canary_policy_shadow_intervals(ngx_http_canary_policy_t *p,
    const unsigned char *v, size_t len, char *err, size_t errlen)
{
    uint64_t  n;

    if (ngx_http_canary_parse_uint(v, len, 1000, &n) != 0 || n == 0) {
        snprintf(err, errlen, "invalid shadow_intervals \"%.*s\", it must "
                 "be 1..1000", (int) len, v);
        return -1;
    }

    p->shadow_intervals = (uint32_t) n;

    return 0;
}


static int
ngx_http_canary_policy_failures(ngx_http_canary_policy_t *p,
    const unsigned char *v, size_t len, char *err, size_t errlen)
{
    uint64_t  n;

    if (ngx_http_canary_parse_uint(v, len, 100, &n) != 0 || n == 0) {
        snprintf(err, errlen, "invalid failures \"%.*s\", it must be "
                 "1..100", (int) len, v);
        return -1;
    }

    p->failures = (uint32_t) n;

    return 0;
}


static int
ngx_http_canary_policy_error_vs(ngx_http_canary_policy_t *p,
    const unsigned char *v, size_t len, char *err, size_t errlen)
{
    uint32_t  ppm;

    if (len > 1 && v[0] == '+'
        && ngx_http_canary_parse_rate(v + 1, len - 1, &ppm) == 0)
    {
        p->error_vs = NGX_HTTP_CANARY_VS_ADD;
        p->error_vs_value = ppm;
        return 0;
    }

    if (ngx_http_canary_parse_ratio(v, len, &p->error_vs_value) == 0) {
        p->error_vs = NGX_HTTP_CANARY_VS_RATIO;
        return 0;
    }

    snprintf(err, errlen, "invalid max_error_rate_vs_stable \"%.*s\", it "
             "must be a ratio such as 2x or added points such as +0.5%%",
             (int) len, v);

    return -1;
}


static int
ngx_http_canary_policy_p99_vs(ngx_http_canary_policy_t *p,
    const unsigned char *v, size_t len, char *err, size_t errlen)
{
    if (len > 1 && v[0] == '+'
        && ngx_http_canary_parse_duration(v + 1, len - 1, &p->p99_vs_value)
           == 0
        && p->p99_vs_value <= NGX_HTTP_CANARY_POLICY_MAX_P99)
    {
        p->p99_vs = NGX_HTTP_CANARY_VS_ADD;
        return 0;
    }

    if (ngx_http_canary_parse_ratio(v, len, &p->p99_vs_value) == 0) {
        p->p99_vs = NGX_HTTP_CANARY_VS_RATIO;
        return 0;
    }

    snprintf(err, errlen, "invalid max_p99_vs_stable \"%.*s\", it must be "
             "a ratio such as 1.5x or an added time such as +200ms",
             (int) len, v);

    return -1;
}


static int
ngx_http_canary_policy_step_percent(const unsigned char *v, size_t len,
    const char *what, uint32_t *hundredths, char *err, size_t errlen)
{
    if (ngx_http_canary_parse_percent(v, len, hundredths) != 0
        || *hundredths == 0)
    {
        snprintf(err, errlen, "invalid %s \"%.*s\", it must be above 0 and "
                 "at most 100, with at most two decimals", what, (int) len, v);
        return -1;
    }

    return 0;
}


int
ngx_http_canary_parse_duration(const unsigned char *p, size_t len,
    uint64_t *ms)
{
    size_t    i, s;
    uint64_t  n, total, scale, last;

    if (len == 0) {
        return -1;
    }

    /* a bare number is seconds, as in nginx */

    if (ngx_http_canary_parse_uint(p, len, NGX_HTTP_CANARY_POLICY_BIG, &n)
        == 0)
    {
        *ms = n * 1000;
        return 0;
    }

    total = 0;
    last = UINT64_MAX;
    i = 0;

    while (i < len) {
        s = i;

        while (i < len && ngx_http_canary_isdigit(p[i])) {
            i++;
        }

        if (ngx_http_canary_parse_uint(p + s, i - s,
                                       NGX_HTTP_CANARY_POLICY_BIG, &n)
            != 0 || i == len)
        {
            return -1;
        }

        if (len - i >= 2 && p[i] == 'm' && p[i + 1] == 's') {
            scale = 1;
            i += 2;

        } else {
            switch (p[i]) {
            case 's': scale = 1000; break;
            case 'm': scale = 60 * 1000; break;
            case 'h': scale = 3600 * 1000; break;
            case 'd': scale = 86400 * 1000; break;
            default: return -1;
            }

            i++;
        }

        /* each unit once, largest first: "1h30m", not "30m1h" */

        if (scale >= last) {
            return -1;
        }

        last = scale;
        total += n * scale;

        if (total > NGX_HTTP_CANARY_POLICY_BIG) {
            return -1;
        }
    }

    *ms = total;

    return 0;
}


int
ngx_http_canary_parse_rate(const unsigned char *p, size_t len, uint32_t *ppm)
{
    uint64_t  v;

    if (len < 2 || p[len - 1] != '%') {
        return -1;
    }

    if (ngx_http_canary_parse_decimal(p, len - 1, 3, 4, &v) != 0
        || v > 1000000)
    {
        return -1;
    }

    *ppm = (uint32_t) v;

    return 0;
}


/* "1.5x": hundredths, above 0 and at most 1000x */

static int
ngx_http_canary_parse_ratio(const unsigned char *p, size_t len,
    uint64_t *hundredths)
{
    uint64_t  v;

    if (len < 2 || p[len - 1] != 'x' || len > 8) {
        return -1;
    }

    if (ngx_http_canary_parse_decimal(p, len - 1, 7, 2, &v) != 0
        || v == 0 || v > 100000)
    {
        return -1;
    }

    *hundredths = v;

    return 0;
}


static int
ngx_http_canary_parse_uint(const unsigned char *p, size_t len, uint64_t max,
    uint64_t *value)
{
    size_t    i;
    uint64_t  v;

    if (len == 0 || len > 13) {
        return -1;
    }

    v = 0;

    for (i = 0; i < len; i++) {
        if (!ngx_http_canary_isdigit(p[i])) {
            return -1;
        }

        v = v * 10 + (p[i] - '0');
    }

    if (v > max) {
        return -1;
    }

    *value = v;

    return 0;
}


uint64_t
ngx_http_canary_p99(const uint64_t *hist, const uint64_t *bounds,
    size_t nbounds)
{
    size_t    i;
    uint64_t  n, rank, cum, lower;

    n = 0;

    for (i = 0; i <= nbounds; i++) {
        n += hist[i];
    }

    if (n == 0) {
        return 0;
    }

    /* the rank of the 99th percentile, 1-based: ceil(0.99 n) */

    rank = n - n / 100;
    cum = 0;

    for (i = 0; i <= nbounds; i++) {

        if (cum + hist[i] >= rank) {
            if (i == nbounds) {
                return NGX_HTTP_CANARY_P99_INF;
            }

            lower = i ? bounds[i - 1] : 0;

            return lower + (bounds[i] - lower) * (rank - cum) / hist[i];
        }

        cum += hist[i];
    }

    return NGX_HTTP_CANARY_P99_INF;
}


int
ngx_http_canary_judge(const ngx_http_canary_policy_t *p,
    const ngx_http_canary_figures_t *stable,
    const ngx_http_canary_figures_t *canary, const uint64_t *bounds,
    size_t nbounds, ngx_http_canary_judgement_t *j)
{
    int                               v, fail, excused, stable_known;
    size_t                            len, n;
    char                              fails[NGX_HTTP_CANARY_REASON_LEN];
    char                              holds[NGX_HTTP_CANARY_REASON_LEN];
    const ngx_http_canary_figures_t  *f;

    memset(j, 0, sizeof(ngx_http_canary_judgement_t));

    for (v = 0; v < 2; v++) {
        f = v ? canary : stable;

        j->requests[v] = f->requests;
        j->errors[v] = f->errors < f->requests ? f->errors : f->requests;
        j->error_rate[v] = f->requests
                           ? j->errors[v] * 1000000 / f->requests : 0;
        j->p99[v] = ngx_http_canary_p99(f->hist, bounds, nbounds);
    }

    if (canary->requests < p->min_requests) {
        j->verdict = NGX_HTTP_CANARY_VERDICT_HOLD;
        snprintf(j->reason, sizeof(j->reason),
                 "too few requests: canary had %llu, min_requests is %llu",
                 (unsigned long long) canary->requests,
                 (unsigned long long) p->min_requests);
        return j->verdict;
    }

    /* stable's figures may excuse a breach only when there are enough */

    stable_known = stable->requests >= p->min_requests
                   && stable->requests > 0;

    fail = 0;
    excused = 0;
    fails[0] = '\0';
    holds[0] = '\0';

    ngx_http_canary_judge_check("error rate", j->error_rate[1],
                                j->error_rate[0], p->max_error_rate,
                                p->error_vs, p->error_vs_value,
                                stable_known, 1, &fail, &excused,
                                fails, holds);

    if (p->max_p99) {
        ngx_http_canary_judge_check("p99", j->p99[1], j->p99[0], p->max_p99,
                                    p->p99_vs, p->p99_vs_value,
                                    stable_known, 0, &fail, &excused,
                                    fails, holds);
    }

    if (fail) {
        j->verdict = NGX_HTTP_CANARY_VERDICT_FAIL;
        snprintf(j->reason, sizeof(j->reason), "%s", fails);

    } else if (excused) {
        j->verdict = NGX_HTTP_CANARY_VERDICT_HOLD;
        /* "stable as bad: " and as much of holds as fits */
        len = sizeof("stable as bad: ") - 1;
        memcpy(j->reason, "stable as bad: ", len);
        n = strlen(holds);

        if (n > sizeof(j->reason) - 1 - len) {
            n = sizeof(j->reason) - 1 - len;
        }

        memcpy(j->reason + len, holds, n);
        j->reason[len + n] = '\0';

    } else {
        j->verdict = NGX_HTTP_CANARY_VERDICT_PASS;
        snprintf(j->reason, sizeof(j->reason), "within thresholds");
    }

    return j->verdict;
}


static void
ngx_http_canary_judge_check(const char *what, uint64_t canary,
    uint64_t stable, uint64_t max, uint32_t vs, uint64_t vs_value,
    int stable_known, int is_rate, int *fail, int *excused, char *fails,
    char *holds)
{
    char      c[32], s[32], m[32], a[32];
    uint64_t  allowed;

    if (canary <= max) {
        return;
    }

    if (is_rate) {
        ngx_http_canary_format_rate(c, sizeof(c), canary);
        ngx_http_canary_format_rate(s, sizeof(s), stable);
        ngx_http_canary_format_rate(m, sizeof(m), max);

    } else {
        ngx_http_canary_format_ms(c, sizeof(c), canary);
        ngx_http_canary_format_ms(s, sizeof(s), stable);
        ngx_http_canary_format_ms(m, sizeof(m), max);
    }

    if (vs == NGX_HTTP_CANARY_VS_NONE || !stable_known) {
        *fail = 1;
        ngx_http_canary_append(fails, "%s %s above %s", what, c, m);
        return;
    }

    if (stable == NGX_HTTP_CANARY_P99_INF) {
        allowed = NGX_HTTP_CANARY_P99_INF;

    } else if (vs == NGX_HTTP_CANARY_VS_RATIO) {
        allowed = stable * vs_value / 100;

    } else {
        allowed = stable + vs_value;
    }

    if (canary <= allowed) {
        *excused = 1;
        ngx_http_canary_append(holds, "%s %s above %s, stable %s", what, c,
                               m, s);
        return;
    }

    if (is_rate) {
        ngx_http_canary_format_rate(a, sizeof(a), allowed);

    } else {
        ngx_http_canary_format_ms(a, sizeof(a), allowed);
    }

    *fail = 1;
    ngx_http_canary_append(fails, "%s %s above %s and above %s allowed by "
                           "stable's %s", what, c, m, a, s);
}


static void
ngx_http_canary_append(char *buf, const char *fmt, ...)
{
    size_t   n;
    va_list  args;

    n = strlen(buf);

    if (n && n + 2 < NGX_HTTP_CANARY_REASON_LEN) {
        buf[n++] = ';';
        buf[n++] = ' ';
        buf[n] = '\0';
    }

    va_start(args, fmt);
    vsnprintf(buf + n, NGX_HTTP_CANARY_REASON_LEN - n, fmt, args);
    va_end(args);
}


void
ngx_http_canary_policy_next(const ngx_http_canary_policy_t *p,
    uint32_t step, uint32_t failures, int verdict,
    ngx_http_canary_decision_next_t *next)
{
    uint32_t  last;

    last = p->nsteps - 1;

    if (step > last) {
        step = last;
    }

    next->step = step;
    next->percent = p->steps[step];
    next->failures = failures;

    switch (verdict) {

    case NGX_HTTP_CANARY_VERDICT_PASS:
        next->failures = 0;

        if (step + 1 >= last) {
            next->action = NGX_HTTP_CANARY_ACTION_PROMOTE;
            next->step = last;

        } else {
            next->action = NGX_HTTP_CANARY_ACTION_ADVANCE;
            next->step = step + 1;
        }

        next->percent = p->steps[next->step];
        return;

    case NGX_HTTP_CANARY_VERDICT_FAIL:
        next->failures = failures + 1;

        if (next->failures >= p->failures) {
            next->action = NGX_HTTP_CANARY_ACTION_ROLLBACK;
            next->percent = 0;

        } else {
            next->action = NGX_HTTP_CANARY_ACTION_FAIL_HOLD;
        }

        return;

    default:
        next->action = NGX_HTTP_CANARY_ACTION_HOLD;
        return;
    }
}


uint64_t
ngx_http_canary_policy_boundary(const ngx_http_canary_policy_t *p,
    uint64_t now)
{
    return now / p->interval * p->interval;
}


uint64_t
ngx_http_canary_policy_first(const ngx_http_canary_policy_t *p,
    uint64_t now)
{
    return (now / p->interval + 1) * p->interval;
}


/* wakes up just after the next boundary */

uint64_t
ngx_http_canary_policy_wake(const ngx_http_canary_policy_t *p, uint64_t now)
{
    return ngx_http_canary_policy_boundary(p, now) + p->interval - now + 1;
}


uint64_t
ngx_http_canary_policy_grace(const ngx_http_canary_policy_t *p)
{
    return ngx_http_canary_max(ngx_http_canary_min(p->interval / 5, 5000),
                               200);
}


/* the leader judges the last interval a grace period after it */

uint64_t
ngx_http_canary_policy_due(const ngx_http_canary_policy_t *p, uint64_t now,
    uint64_t asked)
{
    uint64_t  start;

    start = ngx_http_canary_policy_boundary(p, now);

    if (start > p->interval && asked < start - p->interval
        && now >= start + ngx_http_canary_policy_grace(p))
    {
        return start - p->interval;
    }

    return 0;
}


uint64_t
ngx_http_canary_policy_next_judgement(const ngx_http_canary_policy_t *p,
    uint64_t since, uint64_t checked)
{
    uint64_t  j;

    /* the next interval to judge, and when it will be */

    j = since;

    if (checked && checked + p->interval > j) {
        j = checked + p->interval;
    }

    return j + p->interval + ngx_http_canary_policy_grace(p);
}


uint64_t
ngx_http_canary_policy_poll(const ngx_http_canary_policy_t *p)
{
    return ngx_http_canary_min(NGX_HTTP_CANARY_POLICY_POLL, p->interval / 2);
}


/* kept for ten intervals, and at least a minute */

uint64_t
ngx_http_canary_policy_figures_ttl(const ngx_http_canary_policy_t *p)
{
    return ngx_http_canary_max(10 * p->interval, 60000);
}


uint64_t
ngx_http_canary_policy_lease(uint64_t shortest)
{
    return ngx_http_canary_max(ngx_http_canary_min(3 * shortest, 30000),
                               3000);
}


int
ngx_http_canary_format_rate(char *buf, size_t size, uint64_t ppm)
{
    return snprintf(buf, size, "%llu.%04llu%%",
                    (unsigned long long) (ppm / 10000),
                    (unsigned long long) (ppm % 10000));
}


int
ngx_http_canary_format_percent(char *buf, size_t size, uint32_t hundredths)
{
    if (hundredths % 100 == 0) {
        return snprintf(buf, size, "%u", hundredths / 100);
    }

    if (hundredths % 10 == 0) {
        return snprintf(buf, size, "%u.%u", hundredths / 100,
                        hundredths % 100 / 10);
    }

    return snprintf(buf, size, "%u.%02u", hundredths / 100, hundredths % 100);
}


int
ngx_http_canary_format_ms(char *buf, size_t size, uint64_t ms)
{
    if (ms == NGX_HTTP_CANARY_P99_INF) {
        return snprintf(buf, size, "inf");
    }

    return snprintf(buf, size, "%llums", (unsigned long long) ms);
}
