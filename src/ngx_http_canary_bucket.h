
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * Consistent bucketing: MurmurHash3_x86_32 (seed 0) of "<salt>:<key>".
 * No nginx headers here, so that the unit tests can build it alone.
 */


#ifndef _NGX_HTTP_CANARY_BUCKET_H_INCLUDED_
#define _NGX_HTTP_CANARY_BUCKET_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


/* not exported from the module, see ngx_http_canary_module.h */
#if (__GNUC__ >= 4)
#pragma GCC visibility push(hidden)
#endif

#define NGX_HTTP_CANARY_HASH_MURMUR3  0
#define NGX_HTTP_CANARY_HASH_UNLEASH  1

#define NGX_HTTP_CANARY_BUCKETS       10000

/* the seed of Unleash's variant selection, for the arm choice */
#define NGX_HTTP_CANARY_ARM_SEED      86028157


/*
 * A streaming MurmurHash3_x86_32 state: the salt prefix "<salt>:" is fed
 * once at configuration time, and each request copies the state and feeds
 * only its key.
 */
typedef struct {
    uint32_t  h1;
    uint32_t  len;
    uint32_t  tail;
    uint32_t  ntail;
} ngx_http_canary_murmur3_t;


void ngx_http_canary_murmur3_init(ngx_http_canary_murmur3_t *m);
void ngx_http_canary_murmur3_seed(ngx_http_canary_murmur3_t *m,
    uint32_t seed);
void ngx_http_canary_murmur3_update(ngx_http_canary_murmur3_t *m,
    const unsigned char *p, size_t n);
uint32_t ngx_http_canary_murmur3_final(const ngx_http_canary_murmur3_t *m);
uint32_t ngx_http_canary_murmur3_key(const ngx_http_canary_murmur3_t *salted,
    const unsigned char *p, size_t n);
uint32_t ngx_http_canary_murmur3(const unsigned char *p, size_t n);

/*
 * Maps a hash to a bucket 0..9999 such that the user is canary iff
 * bucket < percent * 100 (percent in hundredths, 0..10000); inline, as
 * it is on every routed request's path.
 *   murmur3: h mod 10000
 *   unleash: ((h mod 100) + 1 <= percent) <=> (h mod 100) * 100 < percent*100
 */
static inline uint32_t
ngx_http_canary_bucket(uint32_t hash, unsigned mode)
{
    if (mode == NGX_HTTP_CANARY_HASH_UNLEASH) {
        return (hash % 100) * 100;
    }

    return hash % NGX_HTTP_CANARY_BUCKETS;
}

/*
 * The arm of an exposed user, Unleash's variant selection: with
 * hash = MurmurHash3_x86_32(seed 86028157, "<salt>:<key>") and total the
 * sum of the n weights (> 0), t = hash mod total + 1, and the arm is the
 * first (0-based) whose running sum of weights reaches t; an arm of
 * weight 0 is never chosen.
 */
unsigned ngx_http_canary_arm(uint32_t hash, const uint32_t *weight,
    unsigned n, uint32_t total);


#if (__GNUC__ >= 4)
#pragma GCC visibility pop
#endif


#endif /* _NGX_HTTP_CANARY_BUCKET_H_INCLUDED_ */
