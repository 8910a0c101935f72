
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * libFuzzer target: the streaming MurmurHash3_x86_32 of the request path.
 * The first two input bytes choose how the rest is cut into pieces (as
 * the salt prefix and the key are fed at different times); the streamed
 * hash must equal the one-shot hash and the canonical SMHasher code's,
 * and the buckets must lie in range, whatever the bytes and the cuts.
 */


#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_http_canary_bucket.h"


/* MurmurHash3_x86_32 as in SMHasher (public domain), seed 0 */

static uint32_t
rotl(uint32_t x, int r)
{
    return (x << r) | (x >> (32 - r));
}


static uint32_t
canonical(const uint8_t *data, size_t len)
{
    size_t    i, nblocks;
    uint32_t  h1, k1;
    const uint8_t *tail;

    h1 = 0;
    nblocks = len / 4;

    for (i = 0; i < nblocks; i++) {
        memcpy(&k1, data + i * 4, 4);          /* little-endian hosts */
        k1 *= 0xcc9e2d51;
        k1 = rotl(k1, 15);
        k1 *= 0x1b873593;
        h1 ^= k1;
        h1 = rotl(h1, 13);
        h1 = h1 * 5 + 0xe6546b64;
    }

    tail = data + nblocks * 4;
    k1 = 0;

    switch (len & 3) {
    case 3:
        k1 ^= (uint32_t) tail[2] << 16;
        /* fall through */
    case 2:
        k1 ^= (uint32_t) tail[1] << 8;
        /* fall through */
    case 1:
        k1 ^= tail[0];
        k1 *= 0xcc9e2d51;
        k1 = rotl(k1, 15);
        k1 *= 0x1b873593;
        h1 ^= k1;
    }

    h1 ^= (uint32_t) len;
    h1 ^= h1 >> 16;
    h1 *= 0x85ebca6b;
    h1 ^= h1 >> 13;
    h1 *= 0xc2b2ae35;
    h1 ^= h1 >> 16;

    return h1;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t                     off, n;
    uint32_t                   whole, streamed, seed;
    uint8_t                   *copy;
    ngx_http_canary_murmur3_t  m, salted;

    if (size < 2) {
        return 0;
    }

    seed = (uint32_t) data[0] << 8 | data[1];
    data += 2;
    size -= 2;

    copy = malloc(size ? size : 1);
    if (copy == NULL) {
        return 0;
    }

    memcpy(copy, data, size);

    whole = ngx_http_canary_murmur3(copy, size);

    if (whole != canonical(copy, size)) {
        abort();
    }

    /* pieces of 0..16 bytes, the cuts drawn from the seed */

    ngx_http_canary_murmur3_init(&m);
    off = 0;

    while (off < size) {
        seed = seed * 1103515245 + 12345;
        n = (seed >> 16) % 17;

        if (n > size - off) {
            n = size - off;
        }

        ngx_http_canary_murmur3_update(&m, copy + off, n);

        /* a state copied mid-stream (the salted prefix) carries on alike */

        if ((seed & 0x100) && off + n < size) {
            salted = m;
            ngx_http_canary_murmur3_update(&salted, copy + off + n,
                                           size - off - n);
            if (ngx_http_canary_murmur3_final(&salted) != whole) {
                abort();
            }
        }

        off += n;
    }

    streamed = ngx_http_canary_murmur3_final(&m);

    if (streamed != whole) {
        abort();
    }

    if (ngx_http_canary_bucket(whole, NGX_HTTP_CANARY_HASH_MURMUR3) >= 10000
        || ngx_http_canary_bucket(whole, NGX_HTTP_CANARY_HASH_UNLEASH)
           >= 10000
        || ngx_http_canary_bucket(whole, NGX_HTTP_CANARY_HASH_UNLEASH) % 100)
    {
        abort();
    }

    free(copy);

    return 0;
}
