
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * The automatic rollout's policy: the parameters of the "auto" directive,
 * parsed strictly, and the judgement of one interval's figures against
 * them.  No nginx headers here, so that unit tests build it alone.
 *
 * Units kept inside: percents of traffic in hundredths (12.5% -> 1250),
 * error rates in parts per million (0.1% -> 1000), times in milliseconds,
 * ratios in hundredths (1.5x -> 150).
 */


#ifndef _NGX_HTTP_CANARY_POLICY_H_INCLUDED_
#define _NGX_HTTP_CANARY_POLICY_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


/* not exported from the module, see ngx_http_canary_module.h */
#if (__GNUC__ >= 4)
#pragma GCC visibility push(hidden)
#endif

#define NGX_HTTP_CANARY_POLICY_MAX_STEPS   100

/* request time histogram buckets, as NGX_HTTP_CANARY_HIST_BUCKETS */
#define NGX_HTTP_CANARY_POLICY_HIST        24

/* the largest max_p99: the histogram's last finite bound */
#define NGX_HTTP_CANARY_POLICY_MAX_P99     60000

/* a p99 in the histogram's last, unbounded bucket */
#define NGX_HTTP_CANARY_P99_INF            UINT64_MAX

/* how a "_vs_stable" threshold compares with stable's figure */
#define NGX_HTTP_CANARY_VS_NONE            0
#define NGX_HTTP_CANARY_VS_RATIO           1    /* "2x"             */
#define NGX_HTTP_CANARY_VS_ADD             2    /* "+0.5%", "+200ms" */

#define NGX_HTTP_CANARY_VERDICT_PASS       0
#define NGX_HTTP_CANARY_VERDICT_HOLD       1
#define NGX_HTTP_CANARY_VERDICT_FAIL       2

/* what the controller does after a check */
#define NGX_HTTP_CANARY_ACTION_HOLD        0    /* same step */
#define NGX_HTTP_CANARY_ACTION_ADVANCE     1    /* next step */
#define NGX_HTTP_CANARY_ACTION_PROMOTE     2    /* the last step */
#define NGX_HTTP_CANARY_ACTION_FAIL_HOLD   3    /* failed, not yet enough */
#define NGX_HTTP_CANARY_ACTION_ROLLBACK    4

#define NGX_HTTP_CANARY_REASON_LEN         256


typedef struct {
    uint32_t    steps[NGX_HTTP_CANARY_POLICY_MAX_STEPS];
    uint32_t    nsteps;

    /* the linear form as written, 0: not given */
    uint32_t    start;
    uint32_t    step;
    uint32_t    max;

    uint64_t    interval;           /* ms */
    uint32_t    max_error_rate;     /* ppm */
    uint64_t    max_p99;            /* ms, 0: not checked */
    uint64_t    min_requests;
    uint32_t    failures;

    uint32_t    error_vs;           /* NGX_HTTP_CANARY_VS_* */
    uint64_t    error_vs_value;     /* ratio in hundredths, or ppm */
    uint32_t    p99_vs;
    uint64_t    p99_vs_value;       /* ratio in hundredths, or ms */

    /* the dark phase: shadow share (hundredths), intervals; 0: none */
    uint32_t    shadow;
    uint32_t    shadow_intervals;

    /* gates: the percents of the steps entered only once approved */
    uint32_t    approve[NGX_HTTP_CANARY_POLICY_MAX_STEPS];
    uint32_t    napprove;
    uint32_t    approve_all;
    uint8_t     gated[NGX_HTTP_CANARY_POLICY_MAX_STEPS];   /* by index */

    uint32_t    given;              /* a bit per parameter seen */
} ngx_http_canary_policy_t;


/* one variant's figures over one interval, summed over the fleet */
typedef struct {
    uint64_t    requests;
    uint64_t    errors;
    uint64_t    hist[NGX_HTTP_CANARY_POLICY_HIST];
} ngx_http_canary_figures_t;


typedef struct {
    int         verdict;            /* NGX_HTTP_CANARY_VERDICT_* */

    /* the figures that decided, per variant (0 stable, 1 canary) */
    uint64_t    requests[2];
    uint64_t    errors[2];
    uint64_t    error_rate[2];      /* ppm */
    uint64_t    p99[2];             /* ms, or NGX_HTTP_CANARY_P99_INF */

    char        reason[NGX_HTTP_CANARY_REASON_LEN];
} ngx_http_canary_judgement_t;


typedef struct {
    int         action;             /* NGX_HTTP_CANARY_ACTION_* */
    uint32_t    step;               /* index into steps */
    uint32_t    percent;            /* hundredths */
    uint32_t    failures;           /* consecutive failed checks */
} ngx_http_canary_decision_next_t;


void ngx_http_canary_policy_init(ngx_http_canary_policy_t *p);

/*
 * One "name=value" argument of "auto"; on error returns -1 with a message
 * in err (which never names the whole argument: the caller does).
 */
int ngx_http_canary_policy_parse(ngx_http_canary_policy_t *p,
    const unsigned char *arg, size_t len, char *err, size_t errlen);

/* after the last argument: checks the whole and builds the steps */
int ngx_http_canary_policy_finish(ngx_http_canary_policy_t *p, char *err,
    size_t errlen);

/* "30m", "1h30m", "2000ms", "5" (seconds): milliseconds, > 0 */
int ngx_http_canary_parse_duration(const unsigned char *p, size_t len,
    uint64_t *ms);

/* "0.1%": parts per million, 0..100% with at most 4 decimals */
int ngx_http_canary_parse_rate(const unsigned char *p, size_t len,
    uint32_t *ppm);

/*
 * The 99th percentile in ms of a histogram with the given upper bounds
 * (nbounds finite ones, then +Inf), interpolated linearly inside its
 * bucket as Prometheus' histogram_quantile() does; 0 when empty,
 * NGX_HTTP_CANARY_P99_INF when it lies in the unbounded bucket.
 */
uint64_t ngx_http_canary_p99(const uint64_t *hist, const uint64_t *bounds,
    size_t nbounds);

/* pass, hold (too few requests, or stable as bad) or fail, with a reason */
int ngx_http_canary_judge(const ngx_http_canary_policy_t *p,
    const ngx_http_canary_figures_t *stable,
    const ngx_http_canary_figures_t *canary, const uint64_t *bounds,
    size_t nbounds, ngx_http_canary_judgement_t *j);

/* whether the step of index "index" needs an approval to be entered */
int ngx_http_canary_policy_gated(const ngx_http_canary_policy_t *p,
    uint32_t index);

/* the step after a check at step "step" with "failures" failed before */
void ngx_http_canary_policy_next(const ngx_http_canary_policy_t *p,
    uint32_t step, uint32_t failures, int verdict,
    ngx_http_canary_decision_next_t *next);

/*
 * The controller's timing, in unix milliseconds: every node aligns the
 * intervals on multiples of "interval" since the epoch, so that the
 * fleet's figures of an interval add up.
 */

/* the start of the interval that holds "now" */
uint64_t ngx_http_canary_policy_boundary(const ngx_http_canary_policy_t *p,
    uint64_t now);

/* the first whole interval after "now" (the first judged at a new step) */
uint64_t ngx_http_canary_policy_first(const ngx_http_canary_policy_t *p,
    uint64_t now);

/* how long from "now" to just after the next boundary */
uint64_t ngx_http_canary_policy_wake(const ngx_http_canary_policy_t *p,
    uint64_t now);

/* how long after an interval the leader waits for every node's figures */
uint64_t ngx_http_canary_policy_grace(const ngx_http_canary_policy_t *p);

/*
 * The interval due for judgement at "now" (the last one, once its grace
 * period has passed) unless it is "asked" or earlier: its start, or 0
 */
uint64_t ngx_http_canary_policy_due(const ngx_http_canary_policy_t *p,
    uint64_t now, uint64_t asked);

/*
 * When the next interval will be judged: the first one at the step
 * ("since"), or the one after the last judged ("checked", 0: none), at
 * its end plus the grace period
 */
uint64_t ngx_http_canary_policy_next_judgement(
    const ngx_http_canary_policy_t *p, uint64_t since, uint64_t checked);

/* how often every node reads the rollout: every second, or more often */
uint64_t ngx_http_canary_policy_poll(const ngx_http_canary_policy_t *p);

/* how long the fleet's figures of an interval are kept */
uint64_t ngx_http_canary_policy_figures_ttl(
    const ngx_http_canary_policy_t *p);

/* the leader's lease: three of the shortest intervals, 3 s .. 30 s */
uint64_t ngx_http_canary_policy_lease(uint64_t shortest);

/* "0.1234%" from ppm; "1.5%" from hundredths; "2500ms" or "inf" */
int ngx_http_canary_format_rate(char *buf, size_t size, uint64_t ppm);
int ngx_http_canary_format_percent(char *buf, size_t size,
    uint32_t hundredths);
int ngx_http_canary_format_ms(char *buf, size_t size, uint64_t ms);


#if (__GNUC__ >= 4)
#pragma GCC visibility pop
#endif


#endif /* _NGX_HTTP_CANARY_POLICY_H_INCLUDED_ */
