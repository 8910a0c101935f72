
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * User sets (canary_users, stable_users) in the shared zone: an
 * open-addressing table of {hash, length, key} entries, kept at most half
 * full, with the keys' bytes in arena chunks.  Membership is exact: a hash
 * match is confirmed by comparing the key.  A set is built unpublished,
 * possibly across many event-loop turns, then published whole inside a
 * snapshot and never changed again; see ngx_http_canary_shm.c for how it
 * is retired.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_canary_module.h"


#define NGX_HTTP_CANARY_SET_MIN      16
#define NGX_HTTP_CANARY_ARENA_SIZE   (64 * 1024)

/* the most of a table zeroed in one call of ngx_http_canary_set_clear() */
#define NGX_HTTP_CANARY_SET_CLEAR    (256 * 1024)


typedef struct {
    uint32_t                        hash;
    uint32_t                        len;
    u_char                         *data;
} ngx_http_canary_set_entry_t;


typedef struct ngx_http_canary_arena_s  ngx_http_canary_arena_t;

struct ngx_http_canary_arena_s {
    ngx_http_canary_arena_t        *next;
    size_t                          used;
    size_t                          size;
};


struct ngx_http_canary_set_s {
    ngx_uint_t                      n;
    ngx_uint_t                      mask;
    size_t                          bytes;
    size_t                          cleared;    /* of the table, in bytes */
    ngx_http_canary_set_entry_t    *table;
    ngx_http_canary_arena_t        *arena;
};


static ngx_int_t ngx_http_canary_set_grow_locked(ngx_slab_pool_t *shpool,
    ngx_http_canary_set_t *set);
static u_char *ngx_http_canary_set_copy_locked(ngx_slab_pool_t *shpool,
    ngx_http_canary_set_t *set, u_char *data, size_t len);


/*
 * A large table is not zeroed here: the first touch of a page of the zone
 * costs a page fault, and zeroing the 4 MiB table of 100,000 members at
 * once kept the sync worker from its other events for 20 ms of CPU, 50 to
 * 500 ms of wall time on a busy machine.  The builder zeroes it a slice per
 * event-loop turn with ngx_http_canary_set_clear() before adding members.
 */

ngx_http_canary_set_t *
ngx_http_canary_set_create_locked(ngx_slab_pool_t *shpool,
    ngx_uint_t expected)
{
    size_t                  len;
    ngx_uint_t              size;
    ngx_http_canary_set_t  *set;

    /*
     * "expected" comes from Redis (SCARD): a count that could not fit in
     * the zone is refused before it can overflow the table's size, or
     * loop forever doubling it
     */

    if (expected > (ngx_uint_t) (shpool->end - shpool->start)
                   / (2 * sizeof(ngx_http_canary_set_entry_t)))
    {
        return NULL;
    }

    size = NGX_HTTP_CANARY_SET_MIN;

    while (size < 2 * expected) {
        size *= 2;
    }

    set = ngx_slab_calloc_locked(shpool, sizeof(ngx_http_canary_set_t));
    if (set == NULL) {
        return NULL;
    }

    len = size * sizeof(ngx_http_canary_set_entry_t);

    set->table = ngx_slab_alloc_locked(shpool, len);
    if (set->table == NULL) {
        ngx_slab_free_locked(shpool, set);
        return NULL;
    }

    if (len <= NGX_HTTP_CANARY_SET_CLEAR) {
        ngx_memzero(set->table, len);
        set->cleared = len;
    }

    set->mask = size - 1;
    set->bytes = sizeof(ngx_http_canary_set_t)
                 + size * sizeof(ngx_http_canary_set_entry_t);

    return set;
}


/*
 * Zeroes the next slice of a new set's table: NGX_AGAIN while some is
 * left, NGX_OK once members can be added.  No lock is needed: the set is
 * not published, and only its builder knows it.
 */

ngx_int_t
ngx_http_canary_set_clear(ngx_http_canary_set_t *set)
{
    size_t  len, n;

    len = (set->mask + 1) * sizeof(ngx_http_canary_set_entry_t);
    n = ngx_min(len - set->cleared, NGX_HTTP_CANARY_SET_CLEAR);

    ngx_memzero((u_char *) set->table + set->cleared, n);
    set->cleared += n;

    return (set->cleared < len) ? NGX_AGAIN : NGX_OK;
}


/* NGX_OK: added; NGX_DECLINED: already there; NGX_ERROR: out of memory */

ngx_int_t
ngx_http_canary_set_add_locked(ngx_slab_pool_t *shpool,
    ngx_http_canary_set_t *set, u_char *data, size_t len)
{
    uint32_t                      hash;
    ngx_uint_t                    i;
    ngx_http_canary_set_entry_t  *e;

    if (len == 0 || len > NGX_MAX_UINT32_VALUE) {
        return NGX_DECLINED;
    }

    if (set->cleared < (set->mask + 1) * sizeof(ngx_http_canary_set_entry_t))
    {
        /* a builder that did not clear the table first: at once */
        while (ngx_http_canary_set_clear(set) == NGX_AGAIN) { /* void */ }
    }

    if (2 * (set->n + 1) > set->mask + 1) {
        if (ngx_http_canary_set_grow_locked(shpool, set) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    hash = ngx_murmur_hash2(data, len);

    for (i = hash & set->mask; /* void */ ; i = (i + 1) & set->mask) {
        e = &set->table[i];

        if (e->data == NULL) {
            break;
        }

        if (e->hash == hash && e->len == len
            && ngx_memcmp(e->data, data, len) == 0)
        {
            return NGX_DECLINED;
        }
    }

    e->data = ngx_http_canary_set_copy_locked(shpool, set, data, len);
    if (e->data == NULL) {
        return NGX_ERROR;
    }

    e->hash = hash;
    e->len = (uint32_t) len;
    set->n++;

    return NGX_OK;
}


ngx_uint_t
ngx_http_canary_set_contains(ngx_http_canary_set_t *set, ngx_str_t *key)
{
    uint32_t                      hash;
    ngx_uint_t                    i;
    ngx_http_canary_set_entry_t  *e;

    if (set->n == 0) {
        return 0;
    }

    hash = ngx_murmur_hash2(key->data, key->len);

    /* the table is at most half full: the probe ends at an empty entry */

    for (i = hash & set->mask; /* void */ ; i = (i + 1) & set->mask) {
        e = &set->table[i];

        if (e->data == NULL) {
            return 0;
        }

        if (e->hash == hash && e->len == key->len
            && ngx_memcmp(e->data, key->data, key->len) == 0)
        {
            return 1;
        }
    }
}


ngx_uint_t
ngx_http_canary_set_size(ngx_http_canary_set_t *set)
{
    return set ? set->n : 0;
}


/*
 * The members one by one, for a published set (which never changes): pos
 * starts at 0; NGX_DONE after the last one.
 */

ngx_int_t
ngx_http_canary_set_next(ngx_http_canary_set_t *set, ngx_uint_t *pos,
    ngx_str_t *key)
{
    ngx_http_canary_set_entry_t  *e;

    if (set == NULL || set->n == 0) {
        return NGX_DONE;
    }

    while (*pos <= set->mask) {
        e = &set->table[(*pos)++];

        if (e->data) {
            key->data = e->data;
            key->len = e->len;
            return NGX_OK;
        }
    }

    return NGX_DONE;
}


size_t
ngx_http_canary_set_bytes(ngx_http_canary_set_t *set)
{
    return set ? set->bytes : 0;
}


void
ngx_http_canary_set_free_locked(ngx_slab_pool_t *shpool,
    ngx_http_canary_set_t *set)
{
    ngx_http_canary_arena_t  *a, *next;

    for (a = set->arena; a; a = next) {
        next = a->next;
        ngx_slab_free_locked(shpool, a);
    }

    ngx_slab_free_locked(shpool, set->table);
    ngx_slab_free_locked(shpool, set);
}


static ngx_int_t
ngx_http_canary_set_grow_locked(ngx_slab_pool_t *shpool,
    ngx_http_canary_set_t *set)
{
    ngx_uint_t                    i, j, size, mask;
    ngx_http_canary_set_entry_t  *table, *e;

    size = 2 * (set->mask + 1);
    mask = size - 1;

    table = ngx_slab_calloc_locked(shpool,
                                   size * sizeof(ngx_http_canary_set_entry_t));
    if (table == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i <= set->mask; i++) {
        e = &set->table[i];

        if (e->data == NULL) {
            continue;
        }

        for (j = e->hash & mask; table[j].data; j = (j + 1) & mask) {
            /* void */
        }

        table[j] = *e;
    }

    ngx_slab_free_locked(shpool, set->table);

    set->bytes += (size - (set->mask + 1))
                  * sizeof(ngx_http_canary_set_entry_t);
    set->cleared = size * sizeof(ngx_http_canary_set_entry_t);
    set->table = table;
    set->mask = mask;

    return NGX_OK;
}


static u_char *
ngx_http_canary_set_copy_locked(ngx_slab_pool_t *shpool,
    ngx_http_canary_set_t *set, u_char *data, size_t len)
{
    u_char                   *p;
    size_t                    size;
    ngx_http_canary_arena_t  *a;

    a = set->arena;

    if (a == NULL || a->size - a->used < len) {
        size = ngx_max(NGX_HTTP_CANARY_ARENA_SIZE,
                       len + sizeof(ngx_http_canary_arena_t));

        a = ngx_slab_alloc_locked(shpool, size);
        if (a == NULL) {
            return NULL;
        }

        a->used = sizeof(ngx_http_canary_arena_t);
        a->size = size;
        a->next = set->arena;
        set->arena = a;

        set->bytes += size;
    }

    p = (u_char *) a + a->used;
    ngx_memcpy(p, data, len);
    a->used += len;

    return p;
}
