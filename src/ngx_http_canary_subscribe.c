
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * Push: a second connection of the sync worker SUBSCRIBEs to
 * <prefix>changed and PSUBSCRIBEs to __keyspace@<db>__:<prefix>*; any
 * message only starts a round (the one code path that applies state,
 * ngx_http_canary_sync_round.c) and marks the user sets it names for
 * reading.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_http.h>

#include "ngx_http_canary_subscribe.h"
#include "ngx_http_canary_sync_round.h"
#include "ngx_http_canary_keys.h"


static void ngx_http_canary_subscribe_ignore(ngx_http_canary_redis_t *rc,
    redisReply *reply, void *data);
static void ngx_http_canary_subscribe_touch(ngx_http_canary_sync_t *sync,
    ngx_http_canary_sync_rollout_t *sr, ngx_uint_t which, ngx_uint_t whole);
static ngx_uint_t ngx_http_canary_subscribe_sop(redisReply *event);


/*
 * The subscribed connection is up (again): SUBSCRIBE <prefix>changed,
 * PSUBSCRIBE __keyspace@<db>__:<prefix>*, and a round for what changed
 * while it was down
 */

void
ngx_http_canary_subscribe_ready(ngx_http_canary_redis_t *rc)
{
    ngx_http_canary_sync_t  *sync = rc->data;

    u_char      *p;
    size_t       argvlen[2];
    ngx_str_t   *prefix;
    const char  *argv[2];

    if (ngx_exiting || ngx_terminate) {
        ngx_http_canary_sync_close(sync);
        return;
    }

    sync->ping = 0;
    prefix = &sync->cmcf->redis->prefix;

    /* room for the pattern, allocated once for the worker's life */

    if (sync->channels == NULL) {
        sync->channels = ngx_pnalloc(ngx_cycle->pool,
                                     ngx_http_canary_key_pattern_len(prefix));
        if (sync->channels == NULL) {
            return;
        }
    }

    argv[0] = "SUBSCRIBE";
    argvlen[0] = sizeof("SUBSCRIBE") - 1;
    argv[1] = (const char *) sync->changed_channel.data;
    argvlen[1] = sync->changed_channel.len;

    if (ngx_http_canary_redis_send(rc, 2, argv, argvlen,
                                   ngx_http_canary_subscribe_ignore, sync)
        != NGX_OK)
    {
        return;
    }

    argv[0] = "PSUBSCRIBE";
    argvlen[0] = sizeof("PSUBSCRIBE") - 1;
    argv[1] = (const char *) sync->channels;
    p = ngx_http_canary_key_pattern(sync->channels, prefix,
                                    sync->cmcf->redis->db);
    argvlen[1] = p - sync->channels;

    (void) ngx_http_canary_redis_send(rc, 2, argv, argvlen,
                                      ngx_http_canary_subscribe_ignore, sync);

    /* what changed while the subscription was down */

    if (ngx_http_canary_redis_ready(sync->redis)) {
        ngx_http_canary_sync_soon(sync);
    }
}


static void
ngx_http_canary_subscribe_ignore(ngx_http_canary_redis_t *rc,
    redisReply *reply, void *data)
{
    if (reply && reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, &rc->log, 0,
                      "canary sync: subscribing failed: %*s; changes apply "
                      "at the next canary_sync_interval only",
                      reply->len, reply->str);
    }
}


/* the answer to the PING the sync's timer sends on this connection */

void
ngx_http_canary_subscribe_pong(ngx_http_canary_redis_t *rc,
    redisReply *reply, void *data)
{
    ngx_http_canary_sync_t  *sync = data;

    sync->ping = 0;
}


/*
 * A message on <prefix>changed (its payload may name a rollout) or a
 * keyspace notification (its channel names the key): mark the user sets
 * it names for reading, and start a round.
 */

void
ngx_http_canary_subscribe_push(ngx_http_canary_redis_t *rc, redisReply *reply)
{
    ngx_http_canary_sync_t  *sync = rc->data;

    u_char                          *p;
    size_t                           len;
    ngx_str_t                        s;
    ngx_uint_t                       i, j;
    redisReply                      *channel, *payload;
    ngx_http_canary_sync_rollout_t  *sr;

    if (ngx_exiting || ngx_terminate || sync->closed) {
        return;
    }

    if (reply->element[0]->len == 7) {
        channel = reply->element[1];
        payload = reply->element[2];

    } else {
        if (reply->elements < 4) {
            return;
        }

        channel = reply->element[2];
        payload = reply->element[3];
    }

    if (channel->type != REDIS_REPLY_STRING
        || payload->type != REDIS_REPLY_STRING)
    {
        return;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, sync->log, 0,
                   "canary sync: message on \"%*s\"",
                   channel->len, channel->str);

    if (reply->element[0]->len == 7) {
        /* PUBLISH <prefix>changed <rollout>: re-read its sets too */

        for (i = 0; i < sync->nrollouts; i++) {
            sr = &sync->rollouts[i];

            if (sr->ro->name.len == payload->len
                && ngx_strncmp(sr->ro->name.data, payload->str,
                               payload->len) == 0)
            {
                for (j = 0; j < sr->nsets; j++) {
                    ngx_http_canary_subscribe_touch(sync, sr, j, 1);
                }
            }
        }

    } else {
        /* __keyspace@N__:<prefix>rollout:<name>:canary_users */

        p = (u_char *) ngx_strlchr((u_char *) channel->str,
                                   (u_char *) channel->str + channel->len,
                                   ':');
        if (p) {
            p++;
            len = (u_char *) channel->str + channel->len - p;
            s.data = p;
            s.len = len;

            for (i = 0; i < sync->nrollouts; i++) {
                sr = &sync->rollouts[i];

                for (j = 0; j < sr->nsets; j++) {
                    if (sr->set_key[j].len == s.len
                        && ngx_strncmp(sr->set_key[j].data, s.data, s.len)
                           == 0)
                    {
                        ngx_http_canary_subscribe_touch(sync, sr, j,
                                !ngx_http_canary_subscribe_sop(payload));
                    }
                }
            }
        }
    }

    if (!ngx_http_canary_redis_ready(sync->redis)) {
        return;
    }

    ngx_http_canary_sync_soon(sync);
}


/*
 * A push names a set: read it again, unless its read has not sent its
 * first SSCAN yet (that SSCAN sees the change the message reports).
 */

static void
ngx_http_canary_subscribe_touch(ngx_http_canary_sync_t *sync,
    ngx_http_canary_sync_rollout_t *sr, ngx_uint_t which, ngx_uint_t whole)
{
    if (sync->set && sync->set_sr == sr && sync->set_which == which
        && !sync->set_scanning)
    {
        return;
    }

    sr->dirty |= 1 << which;

    if (whole) {
        sr->whole |= 1 << which;
    }
}


/*
 * Whether a keyspace notification's event adds or removes members one by
 * one (SADD, SREM, SPOP, SMOVE): a set changed so is changed in place.
 * Any other (RENAME onto it, DEL, SUNIONSTORE, RESTORE, ...) replaces it,
 * and the new set is built whole and published at once, as it was written.
 */

static ngx_uint_t
ngx_http_canary_subscribe_sop(redisReply *event)
{
    static const char  *ops[] = { "sadd", "srem", "spop", "smove" };

    ngx_uint_t  i;

    for (i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        if (event->len == ngx_strlen(ops[i])
            && ngx_strncmp(event->str, ops[i], event->len) == 0)
        {
            return 1;
        }
    }

    return 0;
}
