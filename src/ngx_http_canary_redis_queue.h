
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * The commands of one connection of the Redis client
 * (ngx_http_canary_redis.c): their bytes in the output buffer, their
 * handlers in a ring in the order they were sent, and the replies handed
 * to those handlers in that same order.
 *
 * In a cluster, a command answered "-ASK" is sent again to the node the
 * error names (ngx_http_canary_cluster.c), and its reply comes back
 * through ngx_http_canary_redis_answer().  Meanwhile the replies of the
 * commands sent after it on this connection are held on their entries;
 * once the asked command is answered, its handler and then theirs are
 * called in the order the commands were sent.  So a handler never sees
 * the reply of a later command before the reply of an earlier one, even
 * when one went elsewhere.  For that the client keeps each command's
 * bytes until it is answered (rc->keep, set in a cluster).
 */


#ifndef _NGX_HTTP_CANARY_REDIS_QUEUE_H_INCLUDED_
#define _NGX_HTTP_CANARY_REDIS_QUEUE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_canary_redis.h"


#if (__GNUC__ >= 4)
#pragma GCC visibility push(hidden)
#endif


/* the bytes of a command queued, and its handler behind the others */
ngx_int_t ngx_http_canary_redis_queue(ngx_http_canary_redis_t *rc,
    u_char *cmd, size_t len, ngx_http_canary_redis_handler_pt handler,
    void *data);

/* the command that the next reply read from the socket answers, or NULL */
ngx_http_canary_redis_cmd_t *ngx_http_canary_redis_next(
    ngx_http_canary_redis_t *rc);

/*
 * a reply read from the socket: to its handler (NGX_OK, the caller frees
 * the reply), or held behind an asked command (NGX_DONE: the queue frees
 * it); NGX_DECLINED when it answers no command
 */
ngx_int_t ngx_http_canary_redis_deliver(ngx_http_canary_redis_t *rc,
    redisReply *reply);

/* the next command is answered elsewhere: its reply comes by _answer() */
void ngx_http_canary_redis_asked(ngx_http_canary_redis_t *rc);

/*
 * the reply of an asked command (id, while the connection is of that
 * generation); NGX_DECLINED when it was not the first one waiting (the
 * caller drops the connection)
 */
ngx_int_t ngx_http_canary_redis_answer(ngx_http_canary_redis_t *rc,
    ngx_uint_t id, ngx_uint_t generation, redisReply *reply);

/* every command waiting answered with NULL, held replies freed */
void ngx_http_canary_redis_unqueue(ngx_http_canary_redis_t *rc);

/* the buffers freed, at close */
void ngx_http_canary_redis_queue_free(ngx_http_canary_redis_t *rc);


#if (__GNUC__ >= 4)
#pragma GCC visibility pop
#endif


#endif /* _NGX_HTTP_CANARY_REDIS_QUEUE_H_INCLUDED_ */
