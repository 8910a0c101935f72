
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * Strict parsing of percents and times, with no nginx headers.
 */


#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "ngx_http_canary_parse.h"


static int
percent(const char *s, uint32_t *v)
{
    return ngx_http_canary_parse_percent((const unsigned char *) s,
                                         strlen(s), v);
}


static int
timev(const char *s, time_t *t)
{
    return ngx_http_canary_parse_time((const unsigned char *) s, strlen(s),
                                      t);
}


static void
test_percent_good(void **state)
{
    uint32_t  v;

    (void) state;

    assert_int_equal(percent("0", &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(percent("12.5", &v), 0);
    assert_int_equal(v, 1250);
    assert_int_equal(percent("99.99", &v), 0);
    assert_int_equal(v, 9999);
    assert_int_equal(percent("100", &v), 0);
    assert_int_equal(v, 10000);
    assert_int_equal(percent("100.00", &v), 0);
    assert_int_equal(v, 10000);
    assert_int_equal(percent("0.01", &v), 0);
    assert_int_equal(v, 1);
    assert_int_equal(percent("007", &v), 0);
    assert_int_equal(v, 700);
}


/* an arm's weight: whole 0..10000, nothing else */
static void
test_weight(void **state)
{
    size_t       i;
    uint32_t     v;
    const char  *bad[] = { "", "-1", "+1", "1.0", "1.", "10001", "99999",
                           "100000", " 1", "1 ", "0x10", "1e3", "one" };

    (void) state;

    v = 7;
    assert_int_equal(ngx_http_canary_parse_weight((const unsigned char *) "0",
                                                  1, &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(ngx_http_canary_parse_weight(
                         (const unsigned char *) "10000", 5, &v), 0);
    assert_int_equal(v, 10000);
    assert_int_equal(ngx_http_canary_parse_weight(
                         (const unsigned char *) "33", 2, &v), 0);
    assert_int_equal(v, 33);

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        v = 7;
        assert_int_equal(ngx_http_canary_parse_weight(
                             (const unsigned char *) bad[i], strlen(bad[i]),
                             &v), -1);
        assert_int_equal(v, 7);
    }
}


static void
test_percent_bad(void **state)
{
    size_t       i;
    uint32_t     v;
    const char  *bad[] = {
        "-1", "100.01", "1.234", "abc", "", "50%", "101", "1000", "+5",
        " 5", "5 ", "1.", ".5", "1..2", "1.2.3", "0x10", "1e2", "nan",
        "12,5", "100.1"
    };

    (void) state;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        v = 4242;
        assert_int_equal(percent(bad[i], &v), -1);
        assert_int_equal(v, 4242);
    }

    /* a length that stops short of the string is honoured */
    assert_int_equal(ngx_http_canary_parse_percent(
                         (const unsigned char *) "10x", 2, &v), 0);
    assert_int_equal(v, 1000);
}


static int
decimal(const char *s, size_t int_digits, size_t frac, uint64_t *v)
{
    return ngx_http_canary_parse_decimal((const unsigned char *) s,
                                         strlen(s), int_digits, frac, v);
}


/* the fixed-point reader behind percent, error rates and ratios */
static void
test_decimal(void **state)
{
    uint64_t  v;

    (void) state;

    assert_int_equal(decimal("0.1", 3, 4, &v), 0);
    assert_int_equal(v, 1000);
    assert_int_equal(decimal("100.0000", 3, 4, &v), 0);
    assert_int_equal(v, 1000000);
    assert_int_equal(decimal("1234567", 7, 2, &v), 0);
    assert_int_equal(v, 123456700);

    assert_int_equal(decimal("1000", 3, 4, &v), -1);
    assert_int_equal(decimal("0.00001", 3, 4, &v), -1);
    assert_int_equal(decimal("99999999999999999999999", 3, 4, &v), -1);
    assert_int_equal(decimal(".5", 3, 2, &v), -1);
    assert_int_equal(decimal("5.", 3, 2, &v), -1);
    assert_int_equal(decimal("", 3, 2, &v), -1);
    assert_int_equal(decimal("1.2.3", 3, 2, &v), -1);
    assert_int_equal(decimal("-1", 3, 2, &v), -1);
}


static void
test_time(void **state)
{
    size_t       i;
    time_t       t;
    const char  *bad[] = {
        "", "abc", "-5", "2026-11-28", "2026-11-28T10:00:00",
        "2026-13-01T00:00:00Z", "2026-02-29T00:00:00Z",
        "2026-11-28T24:00:00Z", "2026-11-28T10:00:00+01:00",
        "2026-11-28 10:00:00Z", "1969-12-31T23:59:59Z", "1e9"
    };

    (void) state;

    assert_int_equal(timev("1796000000", &t), 0);
    assert_int_equal(t, 1796000000);
    assert_int_equal(timev("0", &t), 0);
    assert_int_equal(t, 0);
    assert_int_equal(timev("1970-01-01T00:00:00Z", &t), 0);
    assert_int_equal(t, 0);
    assert_int_equal(timev("2026-11-28T10:00:00Z", &t), 0);
    assert_int_equal(t, 1795860000);
    assert_int_equal(timev("2024-02-29T12:30:45z", &t), 0);
    assert_int_equal(t, 1709209845);
    assert_int_equal(timev("2000-01-01T00:00:00+00:00", &t), 0);
    assert_int_equal(t, 946684800);

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(timev(bad[i], &t), -1);
    }
}


static void
test_state(void **state)
{
    size_t       i;
    unsigned     st;
    const char  *good[] = { "progressing", "paused", "promoted",
                            "rolled_back", "waiting" };
    const char  *bad[] = { "", "Paused", "paused ", "rolledback", "x",
                           "progressing1", "wait" };

    (void) state;

    for (i = 0; i < 5; i++) {
        st = 0;
        assert_int_equal(ngx_http_canary_parse_state(
                             (const unsigned char *) good[i],
                             strlen(good[i]), &st), 0);
        assert_int_equal(st, i + 1);
    }

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(ngx_http_canary_parse_state(
                             (const unsigned char *) bad[i],
                             strlen(bad[i]), &st), -1);
    }
}


static void
test_escape(void **state)
{
    size_t          n, m, i;
    unsigned char   out[64], back[64];
    const char     *bad[] = { "%", "%4", "%4g", "%zz", "a b", "a\tb",
                              "%4a", "\x80" };
    unsigned char   raw[] = { 'u', ' ', '%', 0, 0xff, '~', '!' };

    (void) state;

    n = ngx_http_canary_escape(NULL, raw, sizeof(raw));
    assert_int_equal(n, 1 + 4 * 3 + 2);
    assert_int_equal(ngx_http_canary_escape(out, raw, sizeof(raw)), n);
    assert_memory_equal(out, "u%20%25%00%FF~!", n);

    assert_int_equal(ngx_http_canary_unescape(out, n, back, &m), 0);
    assert_int_equal(m, sizeof(raw));
    assert_memory_equal(back, raw, m);

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(ngx_http_canary_unescape(
                             (const unsigned char *) bad[i], strlen(bad[i]),
                             back, &m), -1);
    }
}


static int
split(const char *s, ngx_http_canary_token_t *tok, int max)
{
    return ngx_http_canary_split((const unsigned char *) s, strlen(s), tok,
                                 max);
}


static void
test_split(void **state)
{
    ngx_http_canary_token_t  tok[4];

    (void) state;

    assert_int_equal(split("rollout a 12.50 0 0 -", tok, 4), -1);
    assert_int_equal(split("segment a 1.00 US", tok, 4), 4);
    assert_int_equal(tok[3].len, 2);
    assert_memory_equal(tok[3].data, "US", 2);
    assert_int_equal(tok[0].len, 7);
    assert_int_equal(split("end", tok, 4), 1);
    assert_int_equal(split("", tok, 4), -1);
    assert_int_equal(split(" a", tok, 4), -1);
    assert_int_equal(split("a ", tok, 4), -1);
    assert_int_equal(split("a  b", tok, 4), -1);
    assert_int_equal(split("a\tb", tok, 4), -1);
    assert_int_equal(split("a\rb", tok, 4), -1);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_percent_good),
        cmocka_unit_test(test_percent_bad),
        cmocka_unit_test(test_weight),
        cmocka_unit_test(test_decimal),
        cmocka_unit_test(test_time),
        cmocka_unit_test(test_state),
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_split),
    };

    return cmocka_run_group_tests_name("parse", tests, NULL, NULL);
}
