
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * The "auto" policy: parsing its parameters, the p99 of a histogram, the
 * judgement of an interval and the step that follows.
 */


#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "ngx_http_canary_policy.h"


/* the bounds of ngx_http_canary_stats.c, in ms */
static const uint64_t  bounds[] = {
    1, 2, 5, 10, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 1500,
    2000, 3000, 5000, 10000, 20000, 30000, 60000
};

#define NBOUNDS  (sizeof(bounds) / sizeof(bounds[0]))


static char  err[256];


/* parses a space-separated argument list; 0 or -1 as the module sees it */

static int
policy(ngx_http_canary_policy_t *p, const char *args)
{
    char        buf[1024], *arg, *save;
    const char  *sep = " ";

    ngx_http_canary_policy_init(p);

    snprintf(buf, sizeof(buf), "%s", args);
    err[0] = '\0';

    for (arg = strtok_r(buf, sep, &save); arg;
         arg = strtok_r(NULL, sep, &save))
    {
        if (ngx_http_canary_policy_parse(p, (unsigned char *) arg,
                                         strlen(arg), err, sizeof(err))
            != 0)
        {
            return -1;
        }
    }

    return ngx_http_canary_policy_finish(p, err, sizeof(err));
}


static void
test_parse_steps(void **state)
{
    ngx_http_canary_policy_t  p;

    (void) state;

    assert_int_equal(policy(&p, "steps=1,5,10,25,50,100 interval=30m "
                                "max_error_rate=0.1% max_p99=2000ms "
                                "min_requests=100"), 0);
    assert_int_equal(p.nsteps, 6);
    assert_int_equal(p.steps[0], 100);
    assert_int_equal(p.steps[3], 2500);
    assert_int_equal(p.steps[5], 10000);
    assert_int_equal(p.interval, 30 * 60 * 1000);
    assert_int_equal(p.max_error_rate, 1000);
    assert_int_equal(p.max_p99, 2000);
    assert_int_equal(p.min_requests, 100);
    assert_int_equal(p.failures, 1);
    assert_int_equal(p.error_vs, NGX_HTTP_CANARY_VS_NONE);

    /* defaults */
    assert_int_equal(policy(&p, "steps=0.5,12.25,50 interval=5"), 0);
    assert_int_equal(p.nsteps, 3);
    assert_int_equal(p.steps[0], 50);
    assert_int_equal(p.steps[1], 1225);
    assert_int_equal(p.interval, 5000);
    assert_int_equal(p.max_error_rate, 10000);
    assert_int_equal(p.max_p99, 0);
    assert_int_equal(p.min_requests, 100);

    assert_int_equal(policy(&p, "interval=1h30m failures=3 min_requests=0 "
                                "steps=1,100"), 0);
    assert_int_equal(p.interval, 90 * 60 * 1000);
    assert_int_equal(p.failures, 3);
    assert_int_equal(p.min_requests, 0);
}


static void
test_parse_linear(void **state)
{
    ngx_http_canary_policy_t  p;

    (void) state;

    /* 1, 6, 11, ..., 96, then 100 */
    assert_int_equal(policy(&p, "start=1 step=5 interval=1m"), 0);
    assert_int_equal(p.nsteps, 21);
    assert_int_equal(p.steps[0], 100);
    assert_int_equal(p.steps[1], 600);
    assert_int_equal(p.steps[19], 9600);
    assert_int_equal(p.steps[20], 10000);

    /* start defaults to step, as Flagger's stepWeight */
    assert_int_equal(policy(&p, "step=10 max=50 interval=1m"), 0);
    assert_int_equal(p.nsteps, 5);
    assert_int_equal(p.steps[0], 1000);
    assert_int_equal(p.steps[4], 5000);

    assert_int_equal(policy(&p, "step=30 interval=1m"), 0);
    assert_int_equal(p.nsteps, 4);
    assert_int_equal(p.steps[2], 9000);
    assert_int_equal(p.steps[3], 10000);

    assert_int_equal(policy(&p, "step=1 interval=1m"), 0);
    assert_int_equal(p.nsteps, 100);

    assert_int_equal(policy(&p, "step=0.5 interval=1m"), -1);
    assert_non_null(strstr(err, "more than 100 steps"));
}


static void
test_parse_vs_stable(void **state)
{
    ngx_http_canary_policy_t  p;

    (void) state;

    assert_int_equal(policy(&p, "steps=1,100 interval=1s "
                                "max_error_rate_vs_stable=2x "
                                "max_p99_vs_stable=+200ms"), 0);
    assert_int_equal(p.error_vs, NGX_HTTP_CANARY_VS_RATIO);
    assert_int_equal(p.error_vs_value, 200);
    assert_int_equal(p.p99_vs, NGX_HTTP_CANARY_VS_ADD);
    assert_int_equal(p.p99_vs_value, 200);

    assert_int_equal(policy(&p, "steps=1,100 interval=1s "
                                "max_error_rate_vs_stable=+0.5% "
                                "max_p99_vs_stable=1.25x"), 0);
    assert_int_equal(p.error_vs, NGX_HTTP_CANARY_VS_ADD);
    assert_int_equal(p.error_vs_value, 5000);
    assert_int_equal(p.p99_vs, NGX_HTTP_CANARY_VS_RATIO);
    assert_int_equal(p.p99_vs_value, 125);
}


static void
test_parse_shadow(void **state)
{
    ngx_http_canary_policy_t  p;

    (void) state;

    assert_int_equal(policy(&p, "steps=1,100 interval=1s"), 0);
    assert_int_equal(p.shadow, 0);
    assert_int_equal(p.shadow_intervals, 0);

    assert_int_equal(policy(&p, "steps=1,100 interval=1s shadow=5 "
                                "shadow_intervals=3"), 0);
    assert_int_equal(p.shadow, 500);
    assert_int_equal(p.shadow_intervals, 3);

    assert_int_equal(policy(&p, "steps=1,100 interval=1s shadow=2.5"), 0);
    assert_int_equal(p.shadow, 250);
    assert_int_equal(p.shadow_intervals, 1);
}


static void
test_parse_approve(void **state)
{
    ngx_http_canary_policy_t  p;

    (void) state;

    assert_int_equal(policy(&p, "steps=1,10,50,100 interval=1s"), 0);
    assert_int_equal(ngx_http_canary_policy_gated(&p, 0), 0);
    assert_int_equal(ngx_http_canary_policy_gated(&p, 3), 0);

    assert_int_equal(policy(&p, "steps=1,10,50,100 interval=1s "
                                "approve=10,100"), 0);
    assert_int_equal(ngx_http_canary_policy_gated(&p, 0), 0);
    assert_int_equal(ngx_http_canary_policy_gated(&p, 1), 1);
    assert_int_equal(ngx_http_canary_policy_gated(&p, 2), 0);
    assert_int_equal(ngx_http_canary_policy_gated(&p, 3), 1);
    assert_int_equal(ngx_http_canary_policy_gated(&p, 4), 0);

    assert_int_equal(policy(&p, "step=25 interval=1s approve=all"), 0);
    assert_int_equal(p.nsteps, 4);
    assert_int_equal(ngx_http_canary_policy_gated(&p, 0), 1);
    assert_int_equal(ngx_http_canary_policy_gated(&p, 3), 1);

    assert_int_equal(policy(&p, "steps=1,10,100 interval=1s approve=20"),
                     -1);
    assert_string_equal(err, "approve \"20\" is not one of the steps");
    assert_int_equal(policy(&p, "steps=1,100 interval=1s approve=0"), -1);
    assert_int_equal(policy(&p, "steps=1,100 interval=1s approve=1,"), -1);
    assert_int_equal(policy(&p, "steps=1,100 interval=1s approve=al"), -1);
    assert_int_equal(policy(&p, "steps=1,100 interval=1s approve=1 "
                                "approve=100"), -1);
    assert_string_equal(err, "duplicate parameter \"approve\"");
}


static void
test_parse_bad(void **state)
{
    size_t                    i;
    ngx_http_canary_policy_t  p;

    static const struct {
        const char  *args;
        const char  *msg;
    } bad[] = {
        { "steps=1,5,5,100 interval=1m", "steps must increase" },
        { "steps=10,5,100 interval=1m", "steps must increase: \"5\"" },
        { "steps=1,5,150 interval=1m", "invalid step \"150\"" },
        { "steps=1,5,100.01 interval=1m", "invalid step \"100.01\"" },
        { "steps=0,5,100 interval=1m", "invalid step \"0\"" },
        { "steps=1,,100 interval=1m", "invalid step \"\"" },
        { "steps=1,100, interval=1m", "invalid step \"\"" },
        { "steps=1%,100 interval=1m", "invalid step \"1%\"" },
        { "steps=1.234,100 interval=1m", "invalid step \"1.234\"" },
        { "steps=100 interval=1m", "at least two steps" },
        { "steps=1,100 interval=0", "interval \"0\" is too short" },
        { "steps=1,100 interval=0s", "interval \"0s\" is too short" },
        { "steps=1,100 interval=500ms", "too short" },
        { "steps=1,100 interval=-1m", "invalid interval \"-1m\"" },
        { "steps=1,100 interval=30x", "invalid interval" },
        { "steps=1,100 interval=30m1h", "invalid interval" },
        { "steps=1,100 interval=1m1m", "invalid interval" },
        { "steps=1,100 interval=m", "invalid interval" },
        { "steps=1,100 interval=", "empty \"interval\"" },
        { "steps=1,100", "\"interval\" is required" },
        { "interval=1m", "\"steps\" or \"step\" is required" },
        { "steps=1,100 interval=1m foo=1", "unknown parameter \"foo\"" },
        { "steps=1,100 interval=1m maxp99=1s", "unknown parameter" },
        { "steps=1,100 interval=1m verbose", "name=value" },
        { "steps=1,100 steps=1,100 interval=1m", "duplicate parameter" },
        { "steps=1,100 interval=1m max_error_rate=0.1",
          "invalid max_error_rate \"0.1\"" },
        { "steps=1,100 interval=1m max_error_rate=101%",
          "invalid max_error_rate" },
        { "steps=1,100 interval=1m max_error_rate=0.00001%",
          "invalid max_error_rate" },
        { "steps=1,100 interval=1m max_p99=0ms", "invalid max_p99" },
        { "steps=1,100 interval=1m max_p99=61s", "invalid max_p99" },
        { "steps=1,100 interval=1m max_p99=fast", "invalid max_p99" },
        { "steps=1,100 interval=1m min_requests=-1", "invalid min_requests" },
        { "steps=1,100 interval=1m min_requests=1e3", "invalid min_requests" },
        { "steps=1,100 interval=1m failures=0", "invalid failures \"0\"" },
        { "steps=1,100 interval=1m failures=101", "invalid failures" },
        { "steps=1,100 interval=1m shadow=0", "invalid shadow \"0\"" },
        { "steps=1,100 interval=1m shadow=101", "invalid shadow" },
        { "steps=1,100 interval=1m shadow=5 shadow_intervals=0",
          "invalid shadow_intervals \"0\"" },
        { "steps=1,100 interval=1m shadow_intervals=2",
          "\"shadow_intervals\" needs \"shadow\"" },
        { "steps=1,100 interval=1m max_error_rate_vs_stable=2",
          "invalid max_error_rate_vs_stable \"2\"" },
        { "steps=1,100 interval=1m max_error_rate_vs_stable=0x",
          "invalid max_error_rate_vs_stable" },
        { "steps=1,100 interval=1m max_error_rate_vs_stable=+0.5",
          "invalid max_error_rate_vs_stable" },
        { "steps=1,100 interval=1m max_p99_vs_stable=+fast",
          "invalid max_p99_vs_stable" },
        { "steps=1,100 interval=1m max_p99_vs_stable=1.234x",
          "invalid max_p99_vs_stable" },
        { "steps=1,100 step=5 interval=1m", "excludes" },
        { "start=1 interval=1m", "need \"step\"" },
        { "start=50 step=5 max=10 interval=1m", "\"start\" is above" },
        { "start=100 step=5 interval=1m", "at least two steps" },
        { "step=0 interval=1m", "invalid step \"0\"" },
        { "step=5 max=101 interval=1m", "invalid max \"101\"" },
    };

    (void) state;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (policy(&p, bad[i].args) != -1
            || strstr(err, bad[i].msg) == NULL)
        {
            fail_msg("\"%s\": expected \"%s\", got \"%s\"", bad[i].args,
                     bad[i].msg, err);
        }
    }
}


static void
test_duration_and_rate(void **state)
{
    uint32_t  ppm;
    uint64_t  ms;

    (void) state;

#define dur(s)   ngx_http_canary_parse_duration((unsigned char *) s,         \
                                                strlen(s), &ms)
#define rate(s)  ngx_http_canary_parse_rate((unsigned char *) s, strlen(s),  \
                                            &ppm)

    assert_int_equal(dur("2000ms"), 0);
    assert_int_equal(ms, 2000);
    assert_int_equal(dur("2s"), 0);
    assert_int_equal(ms, 2000);
    assert_int_equal(dur("1d2h3m4s5ms"), 0);
    assert_int_equal(ms, 86400000 + 7200000 + 180000 + 4000 + 5);
    assert_int_equal(dur("1m30ms"), 0);
    assert_int_equal(ms, 60030);
    assert_int_equal(dur(""), -1);
    assert_int_equal(dur("1.5s"), -1);
    assert_int_equal(dur("1s "), -1);
    assert_int_equal(dur("s"), -1);
    assert_int_equal(dur("99999999999999d"), -1);

    assert_int_equal(rate("0.1%"), 0);
    assert_int_equal(ppm, 1000);
    assert_int_equal(rate("100%"), 0);
    assert_int_equal(ppm, 1000000);
    assert_int_equal(rate("0%"), 0);
    assert_int_equal(ppm, 0);
    assert_int_equal(rate("0.0001%"), 0);
    assert_int_equal(ppm, 1);
    assert_int_equal(rate("%"), -1);
    assert_int_equal(rate("1"), -1);
    assert_int_equal(rate(".5%"), -1);
    assert_int_equal(rate("5.%"), -1);
    assert_int_equal(rate("100.0001%"), -1);
    assert_int_equal(rate("1e2%"), -1);

#undef dur
#undef rate
}


static void
test_p99(void **state)
{
    uint64_t  h[NGX_HTTP_CANARY_POLICY_HIST];

    (void) state;

    memset(h, 0, sizeof(h));
    assert_int_equal(ngx_http_canary_p99(h, bounds, NBOUNDS), 0);

    /* all 100 in (1000, 1500]: the 99th is 99/100 of the way up */
    h[15] = 100;
    assert_int_equal(ngx_http_canary_p99(h, bounds, NBOUNDS), 1495);

    /* 99 fast, 1 slow: the 99th request is still a fast one */
    memset(h, 0, sizeof(h));
    h[2] = 99;
    h[12] = 1;
    assert_int_equal(ngx_http_canary_p99(h, bounds, NBOUNDS), 5);

    /* 98 fast, 2 slow: the 99th is a slow one, in (3000, 5000] */
    h[2] = 98;
    h[18] = 2;
    h[12] = 0;
    assert_int_equal(ngx_http_canary_p99(h, bounds, NBOUNDS), 4000);

    /* the unbounded bucket */
    memset(h, 0, sizeof(h));
    h[23] = 10;
    assert_true(ngx_http_canary_p99(h, bounds, NBOUNDS)
                == NGX_HTTP_CANARY_P99_INF);

    /* one request */
    memset(h, 0, sizeof(h));
    h[0] = 1;
    assert_int_equal(ngx_http_canary_p99(h, bounds, NBOUNDS), 1);
}


static void
figures(ngx_http_canary_figures_t *f, uint64_t requests, uint64_t errors,
    int bucket)
{
    memset(f, 0, sizeof(ngx_http_canary_figures_t));
    f->requests = requests;
    f->errors = errors;
    f->hist[bucket] = requests;
}


static void
test_judge(void **state)
{
    ngx_http_canary_policy_t      p;
    ngx_http_canary_figures_t     s, c;
    ngx_http_canary_judgement_t   j;

    (void) state;

    assert_int_equal(policy(&p, "steps=1,100 interval=1s "
                                "max_error_rate=0.1% max_p99=2000ms "
                                "min_requests=100"), 0);

    /* healthy: 0 errors, p99 within (2, 5] */
    figures(&s, 1000, 0, 2);
    figures(&c, 100, 0, 2);
    assert_int_equal(ngx_http_canary_judge(&p, &s, &c, bounds, NBOUNDS, &j),
                     NGX_HTTP_CANARY_VERDICT_PASS);
    assert_int_equal(j.requests[1], 100);
    assert_int_equal(j.error_rate[1], 0);
    assert_int_equal(j.p99[1], 4);

    /* exactly at the threshold passes: 1 error in 1000 is 0.1% */
    figures(&c, 1000, 1, 2);
    assert_int_equal(ngx_http_canary_judge(&p, &s, &c, bounds, NBOUNDS, &j),
                     NGX_HTTP_CANARY_VERDICT_PASS);

    /* 2 in 1000 fails */
    figures(&c, 1000, 2, 2);
    assert_int_equal(ngx_http_canary_judge(&p, &s, &c, bounds, NBOUNDS, &j),
                     NGX_HTTP_CANARY_VERDICT_FAIL);
    assert_int_equal(j.error_rate[1], 2000);
    assert_string_equal(j.reason, "error rate 0.2000% above 0.1000%");

    /* too few requests holds, even when failing */
    figures(&c, 99, 99, 2);
    assert_int_equal(ngx_http_canary_judge(&p, &s, &c, bounds, NBOUNDS, &j),
                     NGX_HTTP_CANARY_VERDICT_HOLD);
    assert_non_null(strstr(j.reason, "too few requests: canary had 99"));

    /* slow: p99 2990ms, in (2000, 3000] */
    figures(&c, 100, 0, 17);
    assert_int_equal(ngx_http_canary_judge(&p, &s, &c, bounds, NBOUNDS, &j),
                     NGX_HTTP_CANARY_VERDICT_FAIL);
    assert_string_equal(j.reason, "p99 2990ms above 2000ms");

    /* both */
    figures(&c, 100, 50, 23);
    assert_int_equal(ngx_http_canary_judge(&p, &s, &c, bounds, NBOUNDS, &j),
                     NGX_HTTP_CANARY_VERDICT_FAIL);
    assert_string_equal(j.reason, "error rate 50.0000% above 0.1000%; "
                                  "p99 inf above 2000ms");

    /* more errors than requests are capped */
    figures(&c, 100, 500, 2);
    ngx_http_canary_judge(&p, &s, &c, bounds, NBOUNDS, &j);
    assert_int_equal(j.error_rate[1], 1000000);

    /* min_requests=0: a ramp by time alone passes an empty interval */
    p.min_requests = 0;
    figures(&c, 0, 0, 2);
    assert_int_equal(ngx_http_canary_judge(&p, &s, &c, bounds, NBOUNDS, &j),
                     NGX_HTTP_CANARY_VERDICT_PASS);
}


static void
test_judge_vs_stable(void **state)
{
    ngx_http_canary_policy_t      p;
    ngx_http_canary_figures_t     s, c;
    ngx_http_canary_judgement_t   j;

    (void) state;

    assert_int_equal(policy(&p, "steps=1,100 interval=1s "
                                "max_error_rate=1% max_p99=100ms "
                                "max_error_rate_vs_stable=2x "
                                "max_p99_vs_stable=+50ms "
                                "min_requests=100"), 0);

    /* a global outage: stable 10%, canary 15%, within 2x: hold */
    figures(&s, 1000, 100, 2);
    figures(&c, 100, 15, 2);
    assert_int_equal(ngx_http_canary_judge(&p, &s, &c, bounds, NBOUNDS, &j),
                     NGX_HTTP_CANARY_VERDICT_HOLD);
    assert_string_equal(j.reason, "stable as bad: error rate 15.0000% "
                                  "above 1.0000%, stable 10.0000%");

    /* canary 25% is above 2x stable's 10%: fail */
    figures(&c, 100, 25, 2);
    assert_int_equal(ngx_http_canary_judge(&p, &s, &c, bounds, NBOUNDS, &j),
                     NGX_HTTP_CANARY_VERDICT_FAIL);
    assert_string_equal(j.reason, "error rate 25.0000% above 1.0000% and "
                                  "above 20.0000% allowed by stable's "
                                  "10.0000%");

    /* stable with too few requests excuses nothing */
    figures(&s, 99, 50, 2);
    figures(&c, 100, 15, 2);
    assert_int_equal(ngx_http_canary_judge(&p, &s, &c, bounds, NBOUNDS, &j),
                     NGX_HTTP_CANARY_VERDICT_FAIL);

    /* within the absolute threshold, stable does not matter */
    figures(&s, 1000, 0, 2);
    figures(&c, 100, 1, 2);
    assert_int_equal(ngx_http_canary_judge(&p, &s, &c, bounds, NBOUNDS, &j),
                     NGX_HTTP_CANARY_VERDICT_PASS);

    /* p99: stable in (300, 500] (p99 498), canary in (750, 1000]: 997 */
    figures(&s, 1000, 0, 12);
    figures(&c, 100, 0, 14);
    assert_int_equal(ngx_http_canary_judge(&p, &s, &c, bounds, NBOUNDS, &j),
                     NGX_HTTP_CANARY_VERDICT_FAIL);
    assert_string_equal(j.reason, "p99 997ms above 100ms and above 548ms "
                                  "allowed by stable's 498ms");

    /* both slow alike: hold */
    figures(&c, 100, 0, 12);
    assert_int_equal(ngx_http_canary_judge(&p, &s, &c, bounds, NBOUNDS, &j),
                     NGX_HTTP_CANARY_VERDICT_HOLD);

    /* added points for the error rate */
    assert_int_equal(policy(&p, "steps=1,100 interval=1s "
                                "max_error_rate=1% "
                                "max_error_rate_vs_stable=+0.5%"), 0);
    figures(&s, 1000, 100, 2);
    figures(&c, 1000, 105, 2);
    assert_int_equal(ngx_http_canary_judge(&p, &s, &c, bounds, NBOUNDS, &j),
                     NGX_HTTP_CANARY_VERDICT_HOLD);
    figures(&c, 1000, 106, 2);
    assert_int_equal(ngx_http_canary_judge(&p, &s, &c, bounds, NBOUNDS, &j),
                     NGX_HTTP_CANARY_VERDICT_FAIL);
}


static void
test_next(void **state)
{
    ngx_http_canary_policy_t         p;
    ngx_http_canary_decision_next_t  n;

    (void) state;

    assert_int_equal(policy(&p, "steps=1,5,100 interval=1s failures=2"), 0);

    ngx_http_canary_policy_next(&p, 0, 0, NGX_HTTP_CANARY_VERDICT_PASS, &n);
    assert_int_equal(n.action, NGX_HTTP_CANARY_ACTION_ADVANCE);
    assert_int_equal(n.step, 1);
    assert_int_equal(n.percent, 500);

    ngx_http_canary_policy_next(&p, 1, 1, NGX_HTTP_CANARY_VERDICT_PASS, &n);
    assert_int_equal(n.action, NGX_HTTP_CANARY_ACTION_PROMOTE);
    assert_int_equal(n.step, 2);
    assert_int_equal(n.percent, 10000);
    assert_int_equal(n.failures, 0);

    ngx_http_canary_policy_next(&p, 1, 0, NGX_HTTP_CANARY_VERDICT_HOLD, &n);
    assert_int_equal(n.action, NGX_HTTP_CANARY_ACTION_HOLD);
    assert_int_equal(n.step, 1);
    assert_int_equal(n.percent, 500);

    /* a hold neither resets nor adds to the failures */
    ngx_http_canary_policy_next(&p, 1, 1, NGX_HTTP_CANARY_VERDICT_HOLD, &n);
    assert_int_equal(n.failures, 1);

    ngx_http_canary_policy_next(&p, 1, 0, NGX_HTTP_CANARY_VERDICT_FAIL, &n);
    assert_int_equal(n.action, NGX_HTTP_CANARY_ACTION_FAIL_HOLD);
    assert_int_equal(n.failures, 1);
    assert_int_equal(n.percent, 500);

    ngx_http_canary_policy_next(&p, 1, 1, NGX_HTTP_CANARY_VERDICT_FAIL, &n);
    assert_int_equal(n.action, NGX_HTTP_CANARY_ACTION_ROLLBACK);
    assert_int_equal(n.failures, 2);
    assert_int_equal(n.percent, 0);

    /* a step index out of range is taken as the last */
    ngx_http_canary_policy_next(&p, 7, 0, NGX_HTTP_CANARY_VERDICT_PASS, &n);
    assert_int_equal(n.action, NGX_HTTP_CANARY_ACTION_PROMOTE);
    assert_int_equal(n.step, 2);
}


/* the controller's timing: boundaries, grace, when a judgement is due */

static void
test_timing(void **state)
{
    ngx_http_canary_policy_t  p;

    (void) state;

    assert_int_equal(policy(&p, "steps=1,5,100 interval=10s"), 0);

    /* intervals aligned on multiples of 10 s since the epoch */
    assert_int_equal(ngx_http_canary_policy_boundary(&p, 1796000004321ULL),
                     1796000000000ULL);
    assert_int_equal(ngx_http_canary_policy_boundary(&p, 1796000000000ULL),
                     1796000000000ULL);
    assert_int_equal(ngx_http_canary_policy_first(&p, 1796000004321ULL),
                     1796000010000ULL);
    assert_int_equal(ngx_http_canary_policy_first(&p, 1796000000000ULL),
                     1796000010000ULL);

    /* woken 1 ms after the next boundary */
    assert_int_equal(ngx_http_canary_policy_wake(&p, 1796000004321ULL),
                     5680);
    assert_int_equal(ngx_http_canary_policy_wake(&p, 1796000009999ULL), 2);
    assert_int_equal(ngx_http_canary_policy_wake(&p, 1796000000000ULL),
                     10001);

    /* grace: a fifth of the interval, 200 ms .. 5 s */
    assert_int_equal(ngx_http_canary_policy_grace(&p), 2000);

    /*
     * the interval that ended at 1796000010000 is due from 2 s after it,
     * once: not when it (or a later one) was asked already
     */
    assert_int_equal(ngx_http_canary_policy_due(&p, 1796000011999ULL, 0), 0);
    assert_int_equal(ngx_http_canary_policy_due(&p, 1796000012000ULL, 0),
                     1796000000000ULL);
    assert_int_equal(ngx_http_canary_policy_due(&p, 1796000019999ULL,
                                                1796000000000ULL - 10000),
                     1796000000000ULL);
    assert_int_equal(ngx_http_canary_policy_due(&p, 1796000012000ULL,
                                                1796000000000ULL), 0);
    /* nothing before the first interval since the epoch */
    assert_int_equal(ngx_http_canary_policy_due(&p, 19999, 0), 0);
    assert_int_equal(ngx_http_canary_policy_due(&p, 22000, 0), 10000);

    /* the next judgement: the first interval at the step, at its end */
    assert_int_equal(ngx_http_canary_policy_next_judgement(&p,
                         1796000010000ULL, 0), 1796000022000ULL);
    /* or the one after the last judged, if later */
    assert_int_equal(ngx_http_canary_policy_next_judgement(&p,
                         1796000010000ULL, 1796000030000ULL),
                     1796000052000ULL);
    assert_int_equal(ngx_http_canary_policy_next_judgement(&p,
                         1796000050000ULL, 1796000030000ULL),
                     1796000062000ULL);

    assert_int_equal(ngx_http_canary_policy_poll(&p), 1000);
    assert_int_equal(ngx_http_canary_policy_figures_ttl(&p), 100000);
    assert_int_equal(ngx_http_canary_policy_lease(10000), 30000);
    assert_int_equal(ngx_http_canary_policy_lease(5000), 15000);

    /* the bounds: a short interval, a long one */

    assert_int_equal(policy(&p, "steps=1,5,100 interval=1s"), 0);
    assert_int_equal(ngx_http_canary_policy_grace(&p), 200);
    assert_int_equal(ngx_http_canary_policy_poll(&p), 500);
    assert_int_equal(ngx_http_canary_policy_figures_ttl(&p), 60000);
    assert_int_equal(ngx_http_canary_policy_lease(1000), 3000);

    assert_int_equal(policy(&p, "steps=1,5,100 interval=3s"), 0);
    assert_int_equal(ngx_http_canary_policy_grace(&p), 600);
    assert_int_equal(ngx_http_canary_policy_poll(&p), 1000);

    assert_int_equal(policy(&p, "steps=1,5,100 interval=1h"), 0);
    assert_int_equal(ngx_http_canary_policy_grace(&p), 5000);
    assert_int_equal(ngx_http_canary_policy_poll(&p), 1000);
    assert_int_equal(ngx_http_canary_policy_figures_ttl(&p), 36000000);
    assert_int_equal(ngx_http_canary_policy_lease(3600000), 30000);
}


static void
test_format(void **state)
{
    char  buf[32];

    (void) state;

    ngx_http_canary_format_percent(buf, sizeof(buf), 1250);
    assert_string_equal(buf, "12.5");
    ngx_http_canary_format_percent(buf, sizeof(buf), 10000);
    assert_string_equal(buf, "100");
    ngx_http_canary_format_percent(buf, sizeof(buf), 1);
    assert_string_equal(buf, "0.01");
    ngx_http_canary_format_rate(buf, sizeof(buf), 1000);
    assert_string_equal(buf, "0.1000%");
    ngx_http_canary_format_ms(buf, sizeof(buf), 12);
    assert_string_equal(buf, "12ms");
    ngx_http_canary_format_ms(buf, sizeof(buf), NGX_HTTP_CANARY_P99_INF);
    assert_string_equal(buf, "inf");
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_parse_steps),
        cmocka_unit_test(test_parse_linear),
        cmocka_unit_test(test_parse_vs_stable),
        cmocka_unit_test(test_parse_shadow),
        cmocka_unit_test(test_parse_approve),
        cmocka_unit_test(test_parse_bad),
        cmocka_unit_test(test_duration_and_rate),
        cmocka_unit_test(test_p99),
        cmocka_unit_test(test_judge),
        cmocka_unit_test(test_judge_vs_stable),
        cmocka_unit_test(test_next),
        cmocka_unit_test(test_timing),
        cmocka_unit_test(test_format),
    };

    return cmocka_run_group_tests_name("policy", tests, NULL, NULL);
}
