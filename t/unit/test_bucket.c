
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * Hashing and bucketing, with no nginx headers.
 */


#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "ngx_http_canary_bucket.h"


static uint32_t
hash_str(const char *s)
{
    return ngx_http_canary_murmur3((const unsigned char *) s, strlen(s));
}


/*
 * Reference values of MurmurHash3_x86_32 with seed 0, computed by an
 * independent implementation (a few lines of Python written from the
 * algorithm's description) and matching the vectors published for it.
 */
static void
test_murmur3_reference(void **state)
{
    (void) state;

    assert_int_equal(hash_str(""), 0);
    assert_int_equal(hash_str("a"), 0x3c2569b2);
    assert_int_equal(hash_str("abc"), 0xb3dd93fa);
    assert_int_equal(hash_str("abcd"), 0x43ed676a);
    assert_int_equal(hash_str("Hello, world!"), 0xc0363e43);
    assert_int_equal(hash_str("The quick brown fox jumps over the lazy dog"),
                     0x2e4ff723);
}


/* feeding the bytes in pieces gives the same hash as feeding them whole */
static void
test_murmur3_streaming(void **state)
{
    size_t                      i, j, n;
    uint32_t                    whole;
    const char                 *s;
    ngx_http_canary_murmur3_t   m;

    (void) state;

    s = "checkout:user-4242-with-a-longer-key";
    n = strlen(s);
    whole = hash_str(s);

    for (i = 0; i <= n; i++) {
        for (j = i; j <= n; j++) {
            ngx_http_canary_murmur3_init(&m);
            ngx_http_canary_murmur3_update(&m, (const unsigned char *) s, i);
            ngx_http_canary_murmur3_update(&m,
                                           (const unsigned char *) s + i,
                                           j - i);
            ngx_http_canary_murmur3_update(&m,
                                           (const unsigned char *) s + j,
                                           n - j);
            assert_int_equal(ngx_http_canary_murmur3_final(&m), whole);
        }
    }
}


/*
 * the request path's one-call hash of a key after a salted state gives
 * the hash of "<salt>:<key>", for salts leaving 0 to 3 bytes pending
 */
static void
test_murmur3_key(void **state)
{
    size_t                      i, k, n;
    uint32_t                    whole;
    const char                 *s;
    ngx_http_canary_murmur3_t   m;

    (void) state;

    s = "checkout:user-4242-with-a-longer-key";
    n = strlen(s);

    for (i = 0; i <= 12; i++) {
        for (k = i; k <= n; k++) {
            whole = ngx_http_canary_murmur3((const unsigned char *) s, k);

            ngx_http_canary_murmur3_init(&m);
            ngx_http_canary_murmur3_update(&m, (const unsigned char *) s, i);

            assert_int_equal(ngx_http_canary_murmur3_key(&m,
                                 (const unsigned char *) s + i, k - i),
                             whole);
        }
    }
}


/* Unleash SDKs' normalizedHash: (murmur3("<group>:<id>") % 100) + 1 */
static void
test_unleash_vectors(void **state)
{
    uint32_t  b;

    (void) state;

    assert_int_equal(hash_str("gr1:123") % 100 + 1, 73);
    assert_int_equal(hash_str("groupX:999") % 100 + 1, 25);

    /* canary iff bucket < percent * 100, i.e. normalized <= percent */
    b = ngx_http_canary_bucket(hash_str("gr1:123"), NGX_HTTP_CANARY_HASH_UNLEASH);
    assert_true(b < 73 * 100);
    assert_false(b < 72 * 100);

    b = ngx_http_canary_bucket(hash_str("groupX:999"),
                               NGX_HTTP_CANARY_HASH_UNLEASH);
    assert_true(b < 25 * 100);
    assert_false(b < 24 * 100);
}


static void
test_bucket_murmur3(void **state)
{
    uint32_t  h;

    (void) state;

    h = hash_str("checkout:u42");
    assert_int_equal(ngx_http_canary_bucket(h, NGX_HTTP_CANARY_HASH_MURMUR3),
                     h % 10000);
    assert_int_equal(ngx_http_canary_bucket(0xffffffff,
                                            NGX_HTTP_CANARY_HASH_MURMUR3),
                     0xffffffffu % 10000);
}


/* buckets are uniform enough: 10% of 100,000 keys within 0.4% */
static void
test_bucket_share(void **state)
{
    char      key[32];
    unsigned  i, canary;

    (void) state;

    canary = 0;

    for (i = 0; i < 100000; i++) {
        snprintf(key, sizeof(key), "salt:user%u", i);

        if (ngx_http_canary_bucket(hash_str(key),
                                   NGX_HTTP_CANARY_HASH_MURMUR3) < 1000)
        {
            canary++;
        }
    }

    assert_in_range(canary, 9600, 10400);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_murmur3_reference),
        cmocka_unit_test(test_murmur3_streaming),
        cmocka_unit_test(test_murmur3_key),
        cmocka_unit_test(test_unleash_vectors),
        cmocka_unit_test(test_bucket_murmur3),
        cmocka_unit_test(test_bucket_share),
    };

    return cmocka_run_group_tests_name("bucket", tests, NULL, NULL);
}
