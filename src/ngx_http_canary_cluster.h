
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * Redis Cluster ("canary_redis cluster=host:port,..."), for the client of
 * ngx_http_canary_redis.c.  Every key and channel of the module carries
 * one hash tag (the prefix's "{...}"), so all of them live in one slot:
 * the client talks to one node, the master that owns that slot, found
 * from the seeds' slot map (CLUSTER SHARDS, or CLUSTER SLOTS before
 * Redis 7) and followed across MOVED, failovers and lost connections.
 * ASK (the slot being migrated) sends the command to the importing node
 * with ASKING, its reply in order with the others; TRYAGAIN and
 * CLUSTERDOWN (keys split between the two nodes, a cluster without a
 * quorum) are retried on the same master with the client's backoff, the
 * map asked for again meanwhile.
 *
 * ngx_http_canary_cluster_keyslot() is Redis' own key -> slot function:
 * CRC16-XMODEM (polynomial 0x1021, initial value 0, no reflection, the
 * CRC that Redis Cluster's specification names) of the key's hash tag
 * (the bytes between its first '{' and the first '}' after it, when not
 * empty; else the whole key), modulo 16384.  It returns -1 for a key
 * without a hash tag, so that the directive can refuse such a prefix.
 */


#ifndef _NGX_HTTP_CANARY_CLUSTER_H_INCLUDED_
#define _NGX_HTTP_CANARY_CLUSTER_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_canary_redis.h"


#if (__GNUC__ >= 4)
#pragma GCC visibility push(hidden)
#endif


#define NGX_HTTP_CANARY_CLUSTER_SLOTS  16384


/* a redirection or refusal in an error reply, see _cluster_error() */
#define NGX_HTTP_CANARY_CLUSTER_MOVED  1
#define NGX_HTTP_CANARY_CLUSTER_ASK    2
#define NGX_HTTP_CANARY_CLUSTER_RETRY  3   /* TRYAGAIN, CLUSTERDOWN */


typedef struct {
    ngx_uint_t                      kind;    /* 0 when none of them */
    ngx_uint_t                      slot;
    ngx_str_t                       ip;      /* MOVED and ASK */
    ngx_uint_t                      port;
} ngx_http_canary_cluster_error_t;


extern ngx_http_canary_redis_locator_t  ngx_http_canary_cluster_locator;

ngx_int_t ngx_http_canary_cluster_keyslot(u_char *key, size_t len);

/* the parsers of the cluster's replies, pure (fuzzed) */
void ngx_http_canary_cluster_error(u_char *p, size_t len,
    ngx_http_canary_cluster_error_t *e);
ngx_int_t ngx_http_canary_cluster_slots(redisReply *reply, ngx_uint_t slot,
    ngx_str_t *ip, ngx_uint_t *port);
ngx_int_t ngx_http_canary_cluster_shards(redisReply *reply, ngx_uint_t slot,
    ngx_uint_t tls, ngx_str_t *ip, ngx_uint_t *port);


#if (__GNUC__ >= 4)
#pragma GCC visibility pop
#endif


#endif /* _NGX_HTTP_CANARY_CLUSTER_H_INCLUDED_ */
