
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * User sets (canary_users, stable_users, an arm's users) in the shared
 * zone: an open-addressing table of {hash, length, key} entries, with the
 * keys' bytes in arena chunks.  Membership is exact: a hash match is
 * confirmed by comparing the key.
 *
 * A set is read by many workers without a lock while the sync process
 * changes it by its additions and removals:
 *
 *   - an entry goes from empty to a member to removed, never back: a new
 *     member takes an empty entry, its hash and length stored before its
 *     data pointer (after a barrier), so a reader that sees the pointer
 *     sees the rest; a removed member keeps its place with length 0, so
 *     the probes of the members after it still reach them;
 *   - the table is kept at most half taken (members and removed ones), so
 *     every probe ends at an empty entry; when it would not be, or when
 *     removed members' bytes outweigh the live ones, a new table (and
 *     arena) is built beside the old one and published with one pointer
 *     store, and the old ones are retired (ngx_http_canary_reclaim.c).
 *
 * A member present before and after a change is found by every lookup
 * during it; an added one is found once its pointer is stored, a removed
 * one is gone once its length is.
 *
 * Each entry notes the read of the set (a 16-bit generation) that last
 * saw the member, so that a read by SSCAN can drop, at its end, the
 * members it did not see: ngx_http_canary_set_sweep_locked().
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_canary_module.h"


#define NGX_HTTP_CANARY_SET_MIN      16
#define NGX_HTTP_CANARY_ARENA_SIZE   (64 * 1024)

/* the most of a table zeroed in one call of ngx_http_canary_set_clear() */
#define NGX_HTTP_CANARY_SET_CLEAR    (256 * 1024)

/* removed members' bytes that make a rebuild worth it, at the least */
#define NGX_HTTP_CANARY_SET_GARBAGE  (64 * 1024)


typedef struct {
    uint32_t                        hash;
    uint16_t                        len;        /* 0: removed */
    uint16_t                        gen;
    u_char                         *data;       /* NULL: empty */
} ngx_http_canary_set_entry_t;


typedef struct {
    ngx_uint_t                      mask;
    ngx_uint_t                      used;       /* members and removed */
    ngx_http_canary_set_entry_t     entries[1];
} ngx_http_canary_set_table_t;


/* the first word links the chunks: retired as one chain */
typedef struct ngx_http_canary_arena_s  ngx_http_canary_arena_t;

struct ngx_http_canary_arena_s {
    ngx_http_canary_arena_t        *next;
    size_t                          used;
    size_t                          size;
};


struct ngx_http_canary_set_s {
    ngx_http_canary_set_table_t    *volatile table;
    ngx_uint_t                      n;
    size_t                          bytes;      /* set, table and arenas */
    size_t                          keys;       /* bytes of the members */
    size_t                          garbage;    /* of removed members */
    size_t                          cleared;    /* of a new table */
    ngx_http_canary_arena_t        *arena;
    uint16_t                        gen;
};


#define ngx_http_canary_set_table_size(size)                                 \
    (offsetof(ngx_http_canary_set_table_t, entries)                          \
     + (size) * sizeof(ngx_http_canary_set_entry_t))


static ngx_uint_t ngx_http_canary_set_entries(ngx_uint_t members,
    ngx_uint_t factor);
static ngx_int_t ngx_http_canary_set_rebuild_locked(ngx_slab_pool_t *shpool,
    ngx_http_canary_reclaim_t *rc, ngx_http_canary_set_t *set,
    ngx_uint_t compact);
static u_char *ngx_http_canary_set_copy_locked(ngx_slab_pool_t *shpool,
    ngx_http_canary_set_t *set, ngx_http_canary_arena_t **arena,
    u_char *data, size_t len);


/*
 * A new set for about "expected" members, not published.  A large table
 * is not zeroed here: the first touch of a page of the zone costs a page
 * fault, and zeroing the 4 MiB table of 100,000 members at once kept the
 * sync worker from its other events for 20 ms of CPU, 50 to 500 ms of
 * wall time on a busy machine.  The builder zeroes it a slice per
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

    size = ngx_http_canary_set_entries(expected, 2);

    set = ngx_slab_calloc_locked(shpool, sizeof(ngx_http_canary_set_t));
    if (set == NULL) {
        return NULL;
    }

    len = ngx_http_canary_set_table_size(size);

    set->table = ngx_slab_alloc_locked(shpool, len);
    if (set->table == NULL) {
        ngx_slab_free_locked(shpool, set);
        return NULL;
    }

    set->table->mask = size - 1;
    set->table->used = 0;

    if (len <= NGX_HTTP_CANARY_SET_CLEAR) {
        ngx_memzero(set->table->entries,
                    size * sizeof(ngx_http_canary_set_entry_t));
        set->cleared = len;

    } else {
        set->cleared = offsetof(ngx_http_canary_set_table_t, entries);
    }

    set->bytes = sizeof(ngx_http_canary_set_t) + len;

    return set;
}


/* the table's entries for "members", at most 1 / factor of them taken */

static ngx_uint_t
ngx_http_canary_set_entries(ngx_uint_t members, ngx_uint_t factor)
{
    ngx_uint_t  size;

    size = NGX_HTTP_CANARY_SET_MIN;

    while (size < factor * members) {
        size *= 2;
    }

    return size;
}


/*
 * What a set of n members whose keys take "keys" bytes needs in the zone
 * when built anew: for the refusal's message.
 */

size_t
ngx_http_canary_set_need(ngx_uint_t n, size_t keys)
{
    size_t  arenas;

    /* a count from Redis that no zone could hold (SCARD is not checked) */

    if (n > NGX_MAX_SIZE_T_VALUE / 256 || keys > NGX_MAX_SIZE_T_VALUE / 4) {
        return NGX_MAX_SIZE_T_VALUE;
    }

    arenas = ngx_align(keys + keys / 8, NGX_HTTP_CANARY_ARENA_SIZE);

    return sizeof(ngx_http_canary_set_t)
           + ngx_http_canary_set_table_size(
                 ngx_http_canary_set_entries(n, 2))
           + arenas;
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

    len = ngx_http_canary_set_table_size(set->table->mask + 1);
    n = ngx_min(len - set->cleared, NGX_HTTP_CANARY_SET_CLEAR);

    ngx_memzero((u_char *) set->table + set->cleared, n);
    set->cleared += n;

    return (set->cleared < len) ? NGX_AGAIN : NGX_OK;
}


/* a new read of the set begins: the generation its members are seen in */

ngx_uint_t
ngx_http_canary_set_begin(ngx_http_canary_set_t *set)
{
    return ++set->gen;
}


ngx_uint_t
ngx_http_canary_set_gen(ngx_http_canary_set_t *set)
{
    return set->gen;
}


/*
 * Adds a member seen by the read "gen", or notes that it was seen.
 * NGX_OK: added; NGX_DECLINED: already there, or empty; NGX_ABORT: longer
 * than a member may be (NGX_HTTP_CANARY_SET_KEY_MAX); NGX_ERROR: no room
 * in the zone.  The slab mutex is held.
 */

ngx_int_t
ngx_http_canary_set_add_locked(ngx_slab_pool_t *shpool,
    ngx_http_canary_reclaim_t *rc, ngx_http_canary_set_t *set, u_char *data,
    size_t len, ngx_uint_t gen)
{
    u_char                       *p;
    uint32_t                      hash;
    ngx_uint_t                    i, mask;
    ngx_http_canary_set_entry_t  *e;
    ngx_http_canary_set_table_t  *t;

    if (len == 0) {
        return NGX_DECLINED;
    }

    if (len > NGX_HTTP_CANARY_SET_KEY_MAX) {
        return NGX_ABORT;
    }

    if (set->cleared < ngx_http_canary_set_table_size(set->table->mask + 1))
    {
        /* a builder that did not clear the table first: at once */
        while (ngx_http_canary_set_clear(set) == NGX_AGAIN) { /* void */ }
    }

    hash = ngx_murmur_hash2(data, len);

    t = set->table;
    mask = t->mask;

    for (i = hash & mask; /* void */ ; i = (i + 1) & mask) {
        e = &t->entries[i];

        if (e->data == NULL) {
            break;
        }

        if (e->hash == hash && e->len == len
            && ngx_memcmp(e->data, data, len) == 0)
        {
            e->gen = (uint16_t) gen;
            return NGX_DECLINED;
        }
    }

    /* a new member: room for it, with every probe still ending */

    if (2 * (t->used + 1) > mask + 1) {
        if (ngx_http_canary_set_rebuild_locked(shpool, rc, set, 0) != NGX_OK)
        {
            return NGX_ERROR;
        }

        t = set->table;
        mask = t->mask;

        for (i = hash & mask; t->entries[i].data; i = (i + 1) & mask) {
            /* void */
        }

        e = &t->entries[i];
    }

    p = ngx_http_canary_set_copy_locked(shpool, set, &set->arena, data, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    e->hash = hash;
    e->len = (uint16_t) len;
    e->gen = (uint16_t) gen;

    /* the entry's hash and length are seen before its data */

    ngx_memory_barrier();

    e->data = p;

    t->used++;
    set->n++;
    set->keys += len;

    return NGX_OK;
}


/*
 * Removes the members that the read "gen" did not see, up to "max"
 * entries from *pos on: NGX_AGAIN while some are left, NGX_OK at the end,
 * then the table and arena are built again if removed members' bytes
 * outweigh the live ones (NGX_ERROR: no room for that, the set stays as
 * it is, correct).  *removed counts the members removed.  The slab mutex
 * is held.
 */

ngx_int_t
ngx_http_canary_set_sweep_locked(ngx_slab_pool_t *shpool,
    ngx_http_canary_reclaim_t *rc, ngx_http_canary_set_t *set,
    ngx_uint_t gen, ngx_uint_t *pos, ngx_uint_t max, ngx_uint_t *removed)
{
    ngx_uint_t                    i, end;
    ngx_http_canary_set_entry_t  *e;
    ngx_http_canary_set_table_t  *t;

    t = set->table;
    end = ngx_min(*pos + max, t->mask + 1);

    for (i = *pos; i < end; i++) {
        e = &t->entries[i];

        if (e->data == NULL || e->len == 0 || e->gen == (uint16_t) gen) {
            continue;
        }

        set->garbage += e->len;
        set->keys -= e->len;
        set->n--;
        (*removed)++;

        /* gone for the lookups from here on; its place stays taken */

        e->len = 0;
    }

    *pos = end;

    if (end <= t->mask) {
        return NGX_AGAIN;
    }

    if (set->garbage > NGX_HTTP_CANARY_SET_GARBAGE
        && set->garbage > set->keys)
    {
        return ngx_http_canary_set_rebuild_locked(shpool, rc, set, 1);
    }

    return NGX_OK;
}


/*
 * A new table for the members, sized so that a third of it is taken, with
 * the members' bytes in a new arena when "compact" (removed members' bytes
 * left behind), published with one store; the old table (and arena) is
 * retired.  The slab mutex is held.
 */

static ngx_int_t
ngx_http_canary_set_rebuild_locked(ngx_slab_pool_t *shpool,
    ngx_http_canary_reclaim_t *rc, ngx_http_canary_set_t *set,
    ngx_uint_t compact)
{
    size_t                        bytes, old_bytes;
    ngx_uint_t                    i, j, size, mask;
    ngx_http_canary_arena_t      *arena, *a;
    ngx_http_canary_set_entry_t  *e, *ne;
    ngx_http_canary_set_table_t  *old, *t;

    old = set->table;
    size = ngx_http_canary_set_entries(set->n + 1, 3);
    mask = size - 1;

    t = ngx_slab_calloc_locked(shpool, ngx_http_canary_set_table_size(size));
    if (t == NULL) {
        return NGX_ERROR;
    }

    t->mask = mask;
    arena = NULL;
    bytes = 0;

    for (i = 0; i <= old->mask; i++) {
        e = &old->entries[i];

        if (e->data == NULL || e->len == 0) {
            continue;
        }

        for (j = e->hash & mask; t->entries[j].data; j = (j + 1) & mask) {
            /* void */
        }

        ne = &t->entries[j];
        *ne = *e;

        if (compact) {
            ne->data = ngx_http_canary_set_copy_locked(shpool, set, &arena,
                                                       e->data, e->len);
            if (ne->data == NULL) {
                goto failed;
            }
        }

        t->used++;
    }

    if (compact) {
        for (a = arena; a; a = a->next) {
            bytes += a->size;
        }
    }

    /* every entry is seen before the table */

    ngx_memory_barrier();

    set->table = t;

    old_bytes = ngx_http_canary_set_table_size(old->mask + 1);
    set->bytes += ngx_http_canary_set_table_size(size) - old_bytes;

    (void) ngx_http_canary_retire_locked(shpool, rc, old,
                                         NGX_HTTP_CANARY_RETIRED_BLOCK,
                                         old_bytes);

    if (compact) {
        for (a = set->arena; a; a = a->next) {
            set->bytes -= a->size;
        }

        (void) ngx_http_canary_retire_locked(shpool, rc, set->arena,
                                             NGX_HTTP_CANARY_RETIRED_CHAIN,
                                             0);
        set->arena = arena;
        set->bytes += bytes;
        set->garbage = 0;
    }

    set->cleared = ngx_http_canary_set_table_size(size);

    return NGX_OK;

failed:

    while (arena) {
        a = arena->next;
        ngx_slab_free_locked(shpool, arena);
        arena = a;
    }

    ngx_slab_free_locked(shpool, t);

    return NGX_ERROR;
}


/* a lookup: lock-free, while the sync process may be changing the set */

ngx_uint_t
ngx_http_canary_set_contains(ngx_http_canary_set_t *set, ngx_str_t *key)
{
    u_char                       *data;
    uint32_t                      hash;
    ngx_uint_t                    i, mask;
    ngx_http_canary_set_entry_t  *e;
    ngx_http_canary_set_table_t  *t;

    if (key->len == 0 || key->len > NGX_HTTP_CANARY_SET_KEY_MAX) {
        return 0;
    }

    hash = ngx_murmur_hash2(key->data, key->len);

    t = set->table;
    mask = t->mask;

    /* at most half of the table is taken: the probe ends at an empty one */

    for (i = hash & mask; /* void */ ; i = (i + 1) & mask) {
        e = &t->entries[i];
        data = *(u_char *volatile *) &e->data;

        if (data == NULL) {
            return 0;
        }

        /* its hash and length as they were when its data was stored */

        ngx_memory_barrier();

        if (e->hash == hash && e->len == key->len
            && ngx_memcmp(data, key->data, key->len) == 0)
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
 * The members one by one: pos starts at 0; NGX_DONE after the last one.
 * In the sync process, which alone changes sets, between its changes.
 */

ngx_int_t
ngx_http_canary_set_next(ngx_http_canary_set_t *set, ngx_uint_t *pos,
    ngx_str_t *key)
{
    ngx_http_canary_set_entry_t  *e;
    ngx_http_canary_set_table_t  *t;

    if (set == NULL || set->n == 0) {
        return NGX_DONE;
    }

    t = set->table;

    while (*pos <= t->mask) {
        e = &t->entries[(*pos)++];

        if (e->data && e->len) {
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


/* a set that was never published: freed at once */

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


/* a published set that no snapshot names any more: freed once unread */

ngx_int_t
ngx_http_canary_set_retire_locked(ngx_slab_pool_t *shpool,
    ngx_http_canary_reclaim_t *rc, ngx_http_canary_set_t *set)
{
    if (set->arena) {
        (void) ngx_http_canary_retire_locked(shpool, rc, set->arena,
                                             NGX_HTTP_CANARY_RETIRED_CHAIN,
                                             0);
    }

    (void) ngx_http_canary_retire_locked(shpool, rc, set->table,
                               NGX_HTTP_CANARY_RETIRED_BLOCK,
                               ngx_http_canary_set_table_size(
                                   set->table->mask + 1));

    return ngx_http_canary_retire_locked(shpool, rc, set,
                                         NGX_HTTP_CANARY_RETIRED_BLOCK,
                                         sizeof(ngx_http_canary_set_t));
}


static u_char *
ngx_http_canary_set_copy_locked(ngx_slab_pool_t *shpool,
    ngx_http_canary_set_t *set, ngx_http_canary_arena_t **arena,
    u_char *data, size_t len)
{
    u_char                   *p;
    size_t                    size;
    ngx_http_canary_arena_t  *a;

    a = *arena;

    if (a == NULL || a->size - a->used < len) {
        size = ngx_max(NGX_HTTP_CANARY_ARENA_SIZE,
                       len + sizeof(ngx_http_canary_arena_t));

        a = ngx_slab_alloc_locked(shpool, size);
        if (a == NULL) {
            return NULL;
        }

        a->used = sizeof(ngx_http_canary_arena_t);
        a->size = size;
        a->next = *arena;
        *arena = a;

        if (arena == &set->arena) {
            set->bytes += size;
        }
    }

    p = (u_char *) a + a->used;
    ngx_memcpy(p, data, len);
    a->used += len;

    return p;
}
