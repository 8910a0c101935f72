
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * The commands of one connection of the Redis client: the output buffer,
 * the ring of handlers waiting, the replies held behind a command that
 * was answered elsewhere (see ngx_http_canary_redis_queue.h).
 *
 * The ring holds npending entries from pending_head; the first nanswered
 * of them have had their answer from the socket: an "-ASK" (asked, the
 * reply to come through _answer()) or a reply held until the asked ones
 * before it are answered.  The next reply read from the socket answers
 * the entry after them.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>

#include "ngx_http_canary_redis.h"
#include "ngx_http_canary_redis_queue.h"


static ngx_int_t ngx_http_canary_redis_out(ngx_http_canary_redis_t *rc,
    u_char *cmd, size_t len);
static ngx_int_t ngx_http_canary_redis_ring(ngx_http_canary_redis_t *rc);
static ngx_http_canary_redis_cmd_t ngx_http_canary_redis_pop(
    ngx_http_canary_redis_t *rc);


ngx_int_t
ngx_http_canary_redis_queue(ngx_http_canary_redis_t *rc, u_char *cmd,
    size_t len, ngx_http_canary_redis_handler_pt handler, void *data)
{
    u_char                       *kept;
    ngx_http_canary_redis_cmd_t  *p;

    kept = NULL;

    if (rc->keep) {
        kept = ngx_alloc(len, &rc->log);
        if (kept == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(kept, cmd, len);
    }

    if (ngx_http_canary_redis_ring(rc) != NGX_OK
        || ngx_http_canary_redis_out(rc, cmd, len) != NGX_OK)
    {
        if (kept) {
            ngx_free(kept);
        }

        return NGX_ERROR;
    }

    p = &rc->pending[(rc->pending_head + rc->npending) % rc->pending_size];

    p->handler = handler;
    p->data = data;
    p->cmd = kept;
    p->len = len;
    p->reply = NULL;
    p->id = ++rc->ids;
    p->asked = 0;

    rc->npending++;

    return NGX_OK;
}


/* room for one more entry in the ring */

static ngx_int_t
ngx_http_canary_redis_ring(ngx_http_canary_redis_t *rc)
{
    ngx_uint_t                    i, size;
    ngx_http_canary_redis_cmd_t  *p;

    if (rc->npending < rc->pending_size) {
        return NGX_OK;
    }

    size = rc->pending_size ? rc->pending_size * 2 : 64;

    p = ngx_alloc(size * sizeof(ngx_http_canary_redis_cmd_t), &rc->log);
    if (p == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < rc->npending; i++) {
        p[i] = rc->pending[(rc->pending_head + i) % rc->pending_size];
    }

    if (rc->pending) {
        ngx_free(rc->pending);
    }

    rc->pending = p;
    rc->pending_head = 0;
    rc->pending_size = size;

    return NGX_OK;
}


/* the bytes behind those not yet written */

static ngx_int_t
ngx_http_canary_redis_out(ngx_http_canary_redis_t *rc, u_char *cmd,
    size_t len)
{
    size_t   size;
    u_char  *p;

    if (rc->out_pos && rc->out_pos == rc->out_len) {
        rc->out_pos = 0;
        rc->out_len = 0;
    }

    if (rc->out_len + len > rc->out_size) {
        size = ngx_max(rc->out_size * 2, 4096);

        while (size < rc->out_len + len) {
            size *= 2;
        }

        p = ngx_alloc(size, &rc->log);
        if (p == NULL) {
            return NGX_ERROR;
        }

        if (rc->out) {
            ngx_memcpy(p, rc->out, rc->out_len);
            ngx_free(rc->out);
        }

        rc->out = p;
        rc->out_size = size;
    }

    ngx_memcpy(rc->out + rc->out_len, cmd, len);
    rc->out_len += len;

    return NGX_OK;
}


ngx_http_canary_redis_cmd_t *
ngx_http_canary_redis_next(ngx_http_canary_redis_t *rc)
{
    if (rc->npending == rc->nanswered) {
        return NULL;
    }

    return &rc->pending[(rc->pending_head + rc->nanswered)
                        % rc->pending_size];
}


/* the first entry taken off the ring, its bytes freed */

static ngx_http_canary_redis_cmd_t
ngx_http_canary_redis_pop(ngx_http_canary_redis_t *rc)
{
    ngx_http_canary_redis_cmd_t  cmd;

    cmd = rc->pending[rc->pending_head];
    rc->pending_head = (rc->pending_head + 1) % rc->pending_size;
    rc->npending--;

    if (rc->nanswered) {
        rc->nanswered--;
    }

    if (cmd.cmd) {
        ngx_free(cmd.cmd);
        cmd.cmd = NULL;
    }

    return cmd;
}


ngx_int_t
ngx_http_canary_redis_deliver(ngx_http_canary_redis_t *rc,
    redisReply *reply)
{
    ngx_http_canary_redis_cmd_t   cmd, *p;

    p = ngx_http_canary_redis_next(rc);

    if (p == NULL) {
        return NGX_DECLINED;
    }

    if (rc->nanswered) {
        /* behind a command answered elsewhere: held until it is */
        p->reply = reply;
        rc->nanswered++;
        return NGX_DONE;
    }

    cmd = ngx_http_canary_redis_pop(rc);

    cmd.handler(rc, reply, cmd.data);

    return NGX_OK;
}


void
ngx_http_canary_redis_asked(ngx_http_canary_redis_t *rc)
{
    ngx_http_canary_redis_cmd_t  *p;

    p = ngx_http_canary_redis_next(rc);

    if (p) {
        p->asked = 1;
        rc->nanswered++;
    }
}


ngx_int_t
ngx_http_canary_redis_answer(ngx_http_canary_redis_t *rc, ngx_uint_t id,
    ngx_uint_t generation, redisReply *reply)
{
    ngx_connection_t             *c;
    ngx_http_canary_redis_cmd_t   cmd;

    if (rc->generation != generation) {
        /* dropped meanwhile: its handler had NULL */
        return NGX_OK;
    }

    if (rc->nanswered == 0 || !rc->pending[rc->pending_head].asked
        || rc->pending[rc->pending_head].id != id)
    {
        return NGX_DECLINED;
    }

    cmd = ngx_http_canary_redis_pop(rc);

    cmd.handler(rc, reply, cmd.data);

    /* then the replies held behind it, up to the next asked command */

    while (rc->generation == generation && rc->nanswered
           && !rc->pending[rc->pending_head].asked)
    {
        cmd = ngx_http_canary_redis_pop(rc);

        cmd.handler(rc, cmd.reply, cmd.data);

        freeReplyObject(cmd.reply);
    }

    c = rc->peer.connection;

    if (rc->generation == generation && rc->npending == 0 && c
        && c->read->timer_set)
    {
        ngx_del_timer(c->read);
    }

    return NGX_OK;
}


void
ngx_http_canary_redis_unqueue(ngx_http_canary_redis_t *rc)
{
    ngx_uint_t                    n, head, size;
    ngx_http_canary_redis_cmd_t  *pending, cmd;

    /* handlers may queue again (and be refused): detach the ring first */

    pending = rc->pending;
    head = rc->pending_head;
    n = rc->npending;
    size = rc->pending_size;

    rc->pending = NULL;
    rc->pending_head = 0;
    rc->npending = 0;
    rc->nanswered = 0;
    rc->pending_size = 0;

    while (n--) {
        cmd = pending[head];
        head = (head + 1) % size;

        if (cmd.cmd) {
            ngx_free(cmd.cmd);
        }

        if (cmd.reply) {
            freeReplyObject(cmd.reply);
        }

        cmd.handler(rc, NULL, cmd.data);
    }

    if (pending) {
        if (rc->pending == NULL) {
            rc->pending = pending;
            rc->pending_size = size;

        } else {
            ngx_free(pending);
        }
    }
}


void
ngx_http_canary_redis_queue_free(ngx_http_canary_redis_t *rc)
{
    if (rc->out) {
        ngx_free(rc->out);
        rc->out = NULL;
        rc->out_size = 0;
    }

    if (rc->pending) {
        ngx_free(rc->pending);
        rc->pending = NULL;
        rc->pending_size = 0;
    }
}
