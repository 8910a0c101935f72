
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


static inline void
ngx_http_canary_murmur3_feed(ngx_http_canary_murmur3_t *m,
    const unsigned char *p, size_t n)
{
    size_t                rem;
    uint32_t              w, h1, tail, ntail, shift;
    uint64_t              acc;
    const unsigned char  *end;

    /*
     * In locals: a store through m could alias p, locals cannot.  The
     * "ntail" bytes pending from before (the salt's, on the request path)
     * stay in front: each 4 bytes read complete the pending block and
     * leave as many bytes pending again, in the top of a 64-bit "acc".
     */

    h1 = m->h1;
    tail = m->tail;
    ntail = m->ntail;
    shift = 8 * ntail;
    end = p + n;

    while (end - p >= 4) {
        w = (uint32_t) p[0] | (uint32_t) p[1] << 8
            | (uint32_t) p[2] << 16 | (uint32_t) p[3] << 24;
        acc = tail | (uint64_t) w << shift;
        h1 = ngx_http_canary_mix_h1(h1, (uint32_t) acc);
        tail = (uint32_t) (acc >> 32);
        p += 4;
    }

    /* the last 0 to 3 bytes, which may complete one more block */

    rem = end - p;
    w = 0;

    switch (rem) {
    case 3:
        w = (uint32_t) p[2] << 16;
        /* fall through */
    case 2:
        w |= (uint32_t) p[1] << 8;
        /* fall through */
    case 1:
        w |= (uint32_t) p[0];
    }

    acc = tail | (uint64_t) w << shift;
    ntail += rem;

    if (ntail >= 4) {
        h1 = ngx_http_canary_mix_h1(h1, (uint32_t) acc);
        acc >>= 32;
        ntail -= 4;
    }

    m->h1 = h1;
    m->tail = (uint32_t) acc;
    m->ntail = ntail;
    m->len += (uint32_t) n;
}


static inline uint32_t
ngx_http_canary_murmur3_end(const ngx_http_canary_murmur3_t *m)
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


void
ngx_http_canary_murmur3_update(ngx_http_canary_murmur3_t *m,
    const unsigned char *p, size_t n)
{
    ngx_http_canary_murmur3_feed(m, p, n);
}


uint32_t
ngx_http_canary_murmur3_final(const ngx_http_canary_murmur3_t *m)
{
    return ngx_http_canary_murmur3_end(m);
}


/*
 * The request path's hash: a copy of the salted state, the key, the end,
 * in one call and in registers.
 */

uint32_t
ngx_http_canary_murmur3_key(const ngx_http_canary_murmur3_t *salted,
    const unsigned char *p, size_t n)
{
    ngx_http_canary_murmur3_t  m;

    m = *salted;
    ngx_http_canary_murmur3_feed(&m, p, n);

    return ngx_http_canary_murmur3_end(&m);
}


uint32_t
ngx_http_canary_murmur3(const unsigned char *p, size_t n)
{
    ngx_http_canary_murmur3_t  m;

    ngx_http_canary_murmur3_init(&m);
    ngx_http_canary_murmur3_update(&m, p, n);

    return ngx_http_canary_murmur3_final(&m);
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
