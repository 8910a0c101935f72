
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


/*
 * The arm choice.  An independent reference: MurmurHash3_x86_32 written
 * again from the algorithm's description (whole string, one pass), and
 * the variant selection as Unleash's SDKs write it (skip weight 0, add
 * the weight to a counter, the first arm whose counter reaches the
 * target).  Its hashes match a third implementation (Python) below.
 */

static uint32_t
ref_murmur3(const char *s, uint32_t seed)
{
    size_t          i, n, nblocks;
    uint32_t        h, k;
    const uint8_t  *d;

    d = (const uint8_t *) s;
    n = strlen(s);
    nblocks = n / 4;
    h = seed;

    for (i = 0; i < nblocks; i++) {
        memcpy(&k, d + 4 * i, 4);       /* x86: little-endian */
        k *= 0xcc9e2d51;
        k = (k << 15) | (k >> 17);
        k *= 0x1b873593;
        h ^= k;
        h = (h << 13) | (h >> 19);
        h = h * 5 + 0xe6546b64;
    }

    k = 0;

    switch (n & 3) {
    case 3:
        k ^= (uint32_t) d[4 * nblocks + 2] << 16;
        /* fall through */
    case 2:
        k ^= (uint32_t) d[4 * nblocks + 1] << 8;
        /* fall through */
    case 1:
        k ^= d[4 * nblocks];
        k *= 0xcc9e2d51;
        k = (k << 15) | (k >> 17);
        k *= 0x1b873593;
        h ^= k;
    }

    h ^= (uint32_t) n;
    h ^= h >> 16;
    h *= 0x85ebca6b;
    h ^= h >> 13;
    h *= 0xc2b2ae35;
    h ^= h >> 16;

    return h;
}


static int
ref_arm(const char *group_id, const char *user_id, const uint32_t *w,
    unsigned n)
{
    char      buf[256];
    unsigned  i;
    uint32_t  total, target, counter;

    total = 0;

    for (i = 0; i < n; i++) {
        total += w[i];
    }

    snprintf(buf, sizeof(buf), "%s:%s", group_id, user_id);
    target = ref_murmur3(buf, 86028157) % total + 1;
    counter = 0;

    for (i = 0; i < n; i++) {
        if (w[i] == 0) {
            continue;
        }

        counter += w[i];

        if (counter >= target) {
            return (int) i;
        }
    }

    return -1;
}


/* the module's arm: the salted, seeded state fed with the key */
static unsigned
mod_arm(const char *salt, const char *key, const uint32_t *w, unsigned n)
{
    unsigned                   i;
    uint32_t                   total;
    ngx_http_canary_murmur3_t  m;

    total = 0;

    for (i = 0; i < n; i++) {
        total += w[i];
    }

    ngx_http_canary_murmur3_seed(&m, NGX_HTTP_CANARY_ARM_SEED);
    ngx_http_canary_murmur3_update(&m, (const unsigned char *) salt,
                                   strlen(salt));
    ngx_http_canary_murmur3_update(&m, (const unsigned char *) ":", 1);
    ngx_http_canary_murmur3_update(&m, (const unsigned char *) key,
                                   strlen(key));

    return ngx_http_canary_arm(ngx_http_canary_murmur3_final(&m), w, n,
                               total);
}


/* seed 86028157, computed in Python from the algorithm's description */
static void
test_arm_hash_reference(void **state)
{
    ngx_http_canary_murmur3_t  m;

    (void) state;

    assert_int_equal(ref_murmur3("Feature.Variants.C:232", 86028157),
                     0x77dc5e61);
    assert_int_equal(ref_murmur3("checkout:u42", 86028157), 0x955b5aa1);
    assert_int_equal(ref_murmur3("", 86028157), 0xee93c64c);
    assert_int_equal(ref_murmur3("Hello, world!", 0), 0xc0363e43);

    ngx_http_canary_murmur3_seed(&m, NGX_HTTP_CANARY_ARM_SEED);
    ngx_http_canary_murmur3_update(&m, (const unsigned char *) "checkout:",
                                   9);
    ngx_http_canary_murmur3_update(&m, (const unsigned char *) "u42", 3);
    assert_int_equal(ngx_http_canary_murmur3_final(&m), 0x955b5aa1);
}


/* the vectors of Unleash's client specification (08/09 variants) */
static void
test_arm_unleash_vectors(void **state)
{
    static const uint32_t  c[] = { 33, 33, 33 };
    static const uint32_t  d[] = { 1, 49, 50 };

    (void) state;

    assert_int_equal(mod_arm("Feature.Variants.C", "232", c, 3), 0);
    assert_int_equal(mod_arm("Feature.Variants.C", "607", c, 3), 1);
    assert_int_equal(mod_arm("Feature.Variants.C", "656", c, 3), 2);
    assert_int_equal(mod_arm("Feature.Variants.D", "712", d, 3), 0);
    assert_int_equal(mod_arm("Feature.Variants.D", "525", d, 3), 1);
    assert_int_equal(mod_arm("Feature.Variants.D", "537", d, 3), 2);

    assert_int_equal(ref_arm("Feature.Variants.C", "232", c, 3), 0);
    assert_int_equal(ref_arm("Feature.Variants.C", "607", c, 3), 1);
    assert_int_equal(ref_arm("Feature.Variants.C", "656", c, 3), 2);
    assert_int_equal(ref_arm("Feature.Variants.D", "712", d, 3), 0);
    assert_int_equal(ref_arm("Feature.Variants.D", "525", d, 3), 1);
    assert_int_equal(ref_arm("Feature.Variants.D", "537", d, 3), 2);
}


/* 5,000 keys, several allocations (zero weights too): the same arms */
static void
test_arm_matches_reference(void **state)
{
    char      key[32];
    unsigned  i, k, n;

    static const uint32_t  w[][5] = {
        { 1, 1, 2, 0, 0 },
        { 1, 0, 1, 0, 0 },
        { 0, 0, 7, 0, 0 },
        { 33, 33, 33, 1, 0 },
        { 10000, 1, 0, 9999, 5 },
        { 0, 3, 0, 0, 2 },
    };

    (void) state;

    n = 0;

    for (k = 0; k < sizeof(w) / sizeof(w[0]); k++) {
        for (i = 0; i < 5000; i++) {
            snprintf(key, sizeof(key), "user-%u", i);

            assert_int_equal(mod_arm("homepage", key, w[k], 5),
                             ref_arm("homepage", key, w[k], 5));
            n++;
        }
    }

    assert_int_equal(n, 30000);
}


/* 1:1:2 gives 25/25/50 % of 100,000 keys, within 0.5 % */
static void
test_arm_share(void **state)
{
    char      key[32];
    unsigned  i, count[3];

    static const uint32_t  w[] = { 1, 1, 2 };

    (void) state;

    count[0] = count[1] = count[2] = 0;

    for (i = 0; i < 100000; i++) {
        snprintf(key, sizeof(key), "user%u", i);
        count[mod_arm("exp", key, w, 3)]++;
    }

    assert_in_range(count[0], 24500, 25500);
    assert_in_range(count[1], 24500, 25500);
    assert_in_range(count[2], 49500, 50500);
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
        cmocka_unit_test(test_arm_hash_reference),
        cmocka_unit_test(test_arm_unleash_vectors),
        cmocka_unit_test(test_arm_matches_reference),
        cmocka_unit_test(test_arm_share),
    };

    return cmocka_run_group_tests_name("bucket", tests, NULL, NULL);
}
