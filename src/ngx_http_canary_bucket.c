
/*
 * Copyright (C) ngx_http_canary_module authors
 */


#include "ngx_http_canary_bucket.h"


#define NGX_HTTP_CANARY_C1  0xcc9e2d51
#define NGX_HTTP_CANARY_C2  0x1b873593


static inline uint32_t
ngx_http_canary_rotl32(uint32_t x, int r)
{
    return (x << r) | (x >> (32 - r));
}


static inline uint32_t
ngx_http_canary_mix_k1(uint32_t k1)
{
    k1 *= NGX_HTTP_CANARY_C1;
    k1 = ngx_http_canary_rotl32(k1, 15);
    k1 *= NGX_HTTP_CANARY_C2;

    return k1;
}


static inline uint32_t
ngx_http_canary_mix_h1(uint32_t h1, uint32_t k1)
{
    h1 ^= ngx_http_canary_mix_k1(k1);
    h1 = ngx_http_canary_rotl32(h1, 13);

    return h1 * 5 + 0xe6546b64;
}


void
ngx_http_canary_murmur3_init(ngx_http_canary_murmur3_t *m)
{
    m->h1 = 0;
    m->len = 0;
    m->tail = 0;
    m->ntail = 0;
}


void
ngx_http_canary_murmur3_seed(ngx_http_canary_murmur3_t *m, uint32_t seed)
{
    m->h1 = seed;
    m->len = 0;
    m->tail = 0;
    m->ntail = 0;
}


void
ngx_http_canary_murmur3_update(ngx_http_canary_murmur3_t *m,
    const unsigned char *p, size_t n)
{
    uint32_t              k1, h1;
    const unsigned char  *end;

    m->len += (uint32_t) n;
    h1 = m->h1;
    end = p + n;

    /* complete a block left over from the previous call */

    while (m->ntail && p < end) {
        m->tail |= (uint32_t) *p++ << (8 * m->ntail);

        if (++m->ntail == 4) {
            h1 = ngx_http_canary_mix_h1(h1, m->tail);
            m->tail = 0;
            m->ntail = 0;
        }
    }

    while (end - p >= 4) {
        k1 = (uint32_t) p[0] | (uint32_t) p[1] << 8
             | (uint32_t) p[2] << 16 | (uint32_t) p[3] << 24;
        h1 = ngx_http_canary_mix_h1(h1, k1);
        p += 4;
    }

    while (p < end) {
        m->tail |= (uint32_t) *p++ << (8 * m->ntail++);
    }

    m->h1 = h1;
}


uint32_t
ngx_http_canary_murmur3_final(const ngx_http_canary_murmur3_t *m)
{
    uint32_t  h1;

    h1 = m->h1;

    if (m->ntail) {
        h1 ^= ngx_http_canary_mix_k1(m->tail);
    }

    h1 ^= m->len;

    h1 ^= h1 >> 16;
    h1 *= 0x85ebca6b;
    h1 ^= h1 >> 13;
    h1 *= 0xc2b2ae35;
    h1 ^= h1 >> 16;

    return h1;
}


uint32_t
ngx_http_canary_murmur3(const unsigned char *p, size_t n)
{
    ngx_http_canary_murmur3_t  m;

    ngx_http_canary_murmur3_init(&m);
    ngx_http_canary_murmur3_update(&m, p, n);

    return ngx_http_canary_murmur3_final(&m);
}


uint32_t
ngx_http_canary_bucket(uint32_t hash, unsigned mode)
{
    if (mode == NGX_HTTP_CANARY_HASH_UNLEASH) {
        return (hash % 100) * 100;
    }

    return hash % NGX_HTTP_CANARY_BUCKETS;
}


unsigned
ngx_http_canary_arm(uint32_t hash, const uint32_t *weight, unsigned n,
    uint32_t total)
{
    unsigned  a;
    uint32_t  t, sum;

    t = hash % total + 1;
    sum = 0;

    /*
     * t >= 1, so the running sum first reaches t at an arm of weight > 0;
     * the last arm needs no test: the sum of all is total >= t
     */

    for (a = 0; a + 1 < n; a++) {
        sum += weight[a];

        if (sum >= t) {
            break;
        }
    }

    return a;
}
