
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * A control API write: sent to Redis, the source of truth, through this
 * worker's own connection (the module's non-blocking client, made at the
 * first write), as one script that checks the rollout's state when the
 * action needs one, sets and removes the hash's fields (or adds or
 * removes one member of a user set), appends the history entry with the
 * old and new values, and publishes <prefix>changed (and, for abort and
 * promote, an alert).  Once Redis has applied it, the write is an event
 * sent to this node's webhooks (ngx_http_canary_api_event.c).  Once Redis
 * has answered, the answer waits until
 * this node's zone shows the change (the sync worker applies it on the
 * message), checked every 10 ms, so that a request sent after the answer
 * is routed by the new value on any worker.  No step blocks: the request
 * waits on the event loop, up to canary_api's timeout (504 after it, with
 * the outcome logged when Redis answers later).
 *
 * The context is allocated apart from the request (ngx_alloc): the Redis
 * handler is called exactly once, possibly after the request was answered
 * 504, and frees it then.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_http.h>

#include "ngx_http_canary_module.h"
#include "ngx_http_canary_redis.h"
#include "ngx_http_canary_redis_args.h"
#include "ngx_http_canary_keys.h"
#include "ngx_http_canary_status_out.h"
#include "ngx_http_canary_api.h"


#define NGX_HTTP_CANARY_API_POLL  10

/* a write's arguments: the fields' pairs, the history's, the script's */
#define NGX_HTTP_CANARY_API_ARGS      (4 * NGX_HTTP_CANARY_API_MAX_FIELDS + 64)
#define NGX_HTTP_CANARY_API_ARGS_BUF  512



static ngx_int_t ngx_http_canary_api_hash_args(ngx_http_canary_api_t *ctx,
    ngx_http_canary_redis_args_t *a);
static ngx_int_t ngx_http_canary_api_decision(ngx_http_canary_api_t *ctx,
    u_char *p, u_char *e, u_char *r);
static ngx_int_t ngx_http_canary_api_set_args(ngx_http_canary_api_t *ctx,
    ngx_http_canary_redis_args_t *a);
static void ngx_http_canary_api_history(ngx_http_canary_api_t *ctx,
    ngx_http_canary_redis_args_t *a);
static void ngx_http_canary_api_command(ngx_http_canary_api_t *ctx);
static void ngx_http_canary_api_replied(ngx_http_canary_redis_t *rc,
    redisReply *reply, void *data);
static void ngx_http_canary_api_wait(ngx_event_t *ev);
static ngx_uint_t ngx_http_canary_api_in_force(ngx_http_canary_api_t *ctx);
static ngx_uint_t ngx_http_canary_api_field_in_force(
    ngx_http_canary_rollout_t *ro, ngx_http_canary_snapshot_t *snap,
    ngx_http_canary_api_field_t *f);
static void ngx_http_canary_api_done(ngx_http_canary_api_t *ctx,
    ngx_uint_t status, char *error, ngx_str_t *detail);
static void ngx_http_canary_api_history_reply(ngx_http_canary_redis_t *rc,
    redisReply *reply, void *data);
static ngx_int_t ngx_http_canary_api_history_entry(ngx_http_canary_out_t *o,
    redisReply *e, ngx_uint_t n);


/* this worker's connection, made at its first write */
static ngx_http_canary_redis_t  *ngx_http_canary_api_redis;


/*
 * KEYS[1] the rollout hash, KEYS[2] its history.  ARGV: the states the
 * write applies to (" paused progressing ", "" any; "none" when the hash
 * has no state), the changed channel, the rollout's name, the alerts
 * channel, the alert ('' none), the number of fields set (pairs), of
 * those recorded in the history (the first ones), of fields removed, then
 * the pairs, the fields removed, and the history entry's own pairs.
 * {1, old state} written, {0, state} refused.
 */

static ngx_str_t  ngx_http_canary_api_hash_lua = ngx_string(
    "local s = redis.call('HGET', KEYS[1], 'state') or 'none' "
    "if s == '' then s = 'none' end "
    "if ARGV[1] ~= '' and not string.find(ARGV[1], ' ' .. s .. ' ', 1, "
    "                                     true) then return {0, s} end "
    "local ns, nr, nd = tonumber(ARGV[6]), tonumber(ARGV[7]), "
    "                   tonumber(ARGV[8]) "
    "local f, d = 9, 9 + 2 * ns "
    "local x = {unpack(ARGV, d + nd, #ARGV)} "
    "for i = f, f + 2 * nr - 1, 2 do "
    "  x[#x + 1] = 'old_' .. ARGV[i] "
    "  x[#x + 1] = redis.call('HGET', KEYS[1], ARGV[i]) or '' "
    "  x[#x + 1] = ARGV[i] "
    "  x[#x + 1] = ARGV[i + 1] "
    "end "
    "for i = d, d + nd - 1 do "
    "  local o = redis.call('HGET', KEYS[1], ARGV[i]) "
    "  if o then "
    "    x[#x + 1] = 'old_' .. ARGV[i] x[#x + 1] = o "
    "    x[#x + 1] = ARGV[i] x[#x + 1] = '' "
    "  end "
    "end "
    "if ns > 0 then redis.call('HSET', KEYS[1], unpack(ARGV, f, d - 1)) end "
    "if nd > 0 then redis.call('HDEL', KEYS[1], unpack(ARGV, d, d + nd - 1)) "
    "end "
    "redis.call('XADD', KEYS[2], 'MAXLEN', '~', '1000', '*', unpack(x)) "
    "redis.call('PUBLISH', ARGV[2], ARGV[3]) "
    "if ARGV[5] ~= '' then redis.call('PUBLISH', ARGV[4], ARGV[5]) end "
    "return {1, s}");


/*
 * KEYS[1] the user set, KEYS[2] the history; ARGV SADD or SREM, the
 * member, the changed channel, then the history entry's pairs.  The
 * message names no rollout: the round sees the set's new size and reads
 * it, changed in place.  {1, added or removed (1) or not (0)}.
 */

static ngx_str_t  ngx_http_canary_api_set_lua = ngx_string(
    "local n = redis.call(ARGV[1], KEYS[1], ARGV[2]) "
    "local x = {unpack(ARGV, 4, #ARGV)} "
    "x[#x + 1] = 'changed' x[#x + 1] = tostring(n) "
    "redis.call('XADD', KEYS[2], 'MAXLEN', '~', '1000', '*', unpack(x)) "
    "redis.call('PUBLISH', ARGV[3], '') "
    "return {1, n}");


/* one field set (value) or removed (NULL) in p, copied into p->buf */

ngx_int_t
ngx_http_canary_api_field(ngx_http_canary_api_patch_t *p, char *name,
    u_char *value, size_t len)
{
    size_t                        nlen;
    u_char                       *s;
    ngx_http_canary_api_field_t  *f;

    nlen = ngx_strlen(name);

    if (p->nfields == NGX_HTTP_CANARY_API_MAX_FIELDS
        || sizeof(p->buf) - p->used < nlen + len)
    {
        return NGX_ERROR;
    }

    f = &p->field[p->nfields++];
    s = p->buf + p->used;

    f->name = s;
    f->name_len = nlen;
    f->value = value ? ngx_cpymem(s, name, nlen) : NULL;
    f->value_len = len;

    if (value) {
        ngx_memcpy(s + nlen, value, len);

    } else {
        ngx_memcpy(s, name, nlen);
    }

    p->used += nlen + len;

    return NGX_OK;
}


void
ngx_http_canary_api_write(ngx_http_canary_api_t *ctx)
{
    char                          *error;
    u_char                        *buf;
    size_t                        *len;
    ngx_int_t                      rc;
    ngx_uint_t                     status;
    const char                   **argv;
    ngx_http_request_t            *r;
    ngx_http_canary_redis_args_t  *a;

    r = ctx->r;
    a = &ctx->args;

    if (ctx->cmcf->redis == NULL) {
        error = NULL;
        status = ngx_http_canary_api_local(ctx, &error);
        ngx_http_canary_api_done(ctx, status, error, NULL);
        return;
    }

    ctx->wait.handler = ngx_http_canary_api_wait;
    ctx->wait.data = ctx;
    ctx->wait.log = r->connection->log;

    if (ngx_http_canary_api_redis == NULL) {
        ngx_http_canary_api_done(ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                                 "no connection to Redis in this process",
                                 NULL);
        return;
    }

    argv = ngx_palloc(r->pool, NGX_HTTP_CANARY_API_ARGS
                               * (sizeof(char *) + sizeof(size_t))
                               + NGX_HTTP_CANARY_API_ARGS_BUF);
    if (argv == NULL) {
        ngx_http_canary_api_done(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "out of memory", NULL);
        return;
    }

    len = (size_t *) &argv[NGX_HTTP_CANARY_API_ARGS];
    buf = (u_char *) &len[NGX_HTTP_CANARY_API_ARGS];

    ngx_http_canary_redis_args_init(a, argv, len, NGX_HTTP_CANARY_API_ARGS,
                                    buf, NGX_HTTP_CANARY_API_ARGS_BUF);

    /* the event, from the fields the caller asked for */

    ngx_http_canary_api_event(ctx);

    rc = (ctx->action >= NGX_HTTP_CANARY_API_ADD_USER)
         ? ngx_http_canary_api_set_args(ctx, a)
         : ngx_http_canary_api_hash_args(ctx, a);

    if (rc != NGX_OK) {
        ngx_http_canary_api_done(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "out of memory", NULL);
        return;
    }

    if (a->overflow) {
        ngx_http_canary_api_done(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 "the command is too large", NULL);
        return;
    }

    ngx_http_canary_api_command(ctx);
}


/*
 * The command sent (again, after a MOVED that refused it: a cluster's
 * failover), and the deadline set
 */

static void
ngx_http_canary_api_command(ngx_http_canary_api_t *ctx)
{
    ngx_int_t  rc;

    ngx_http_canary_redis_connect(ngx_http_canary_api_redis);

    /* established: what is sent from now on may reach Redis */

    ctx->sent_ready = (ngx_http_canary_api_redis->state
                           == NGX_HTTP_CANARY_REDIS_HELLO
                       || ngx_http_canary_api_redis->state
                           == NGX_HTTP_CANARY_REDIS_READY);
    ctx->moved = ngx_http_canary_api_redis->moved;

    rc = ngx_http_canary_redis_send_args(ngx_http_canary_api_redis,
                                         &ctx->args,
                                         ngx_http_canary_api_replied, ctx);

    if (rc != NGX_OK) {
        ngx_http_canary_api_done(ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                                 "Redis is unavailable: nothing was "
                                 "changed", NULL);
        return;
    }

    ctx->pending = 1;

    if (ctx->wait.timer_set) {
        ngx_del_timer(&ctx->wait);
    }

    ngx_add_timer(&ctx->wait, ctx->deadline - ngx_current_msec);
}


ngx_int_t
ngx_http_canary_api_write_init(ngx_cycle_t *cycle,
    ngx_http_canary_main_conf_t *cmcf)
{
    ngx_http_canary_api_redis = ngx_http_canary_redis_create(cycle,
                                                             cmcf->redis,
                                                             "api");
    if (ngx_http_canary_api_redis == NULL
        || ngx_http_canary_node_name(cycle, cmcf, &ngx_http_canary_api_node)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* the sync worker's connection logs the outages */

    ngx_http_canary_api_redis->quiet = 1;

    ngx_http_canary_redis_connect(ngx_http_canary_api_redis);

    return NGX_OK;
}


void
ngx_http_canary_api_write_exit(void)
{
    if (ngx_http_canary_api_redis) {
        ngx_http_canary_redis_close(ngx_http_canary_api_redis);
        ngx_http_canary_api_redis = NULL;
    }
}


/* EVAL of the hash's script */

static ngx_int_t
ngx_http_canary_api_hash_args(ngx_http_canary_api_t *ctx,
    ngx_http_canary_redis_args_t *a)
{
    u_char                       *p, *e, *r;
    size_t                        alert;
    ngx_str_t                     key, hist, changed, alerts, *prefix;
    ngx_uint_t                    i, n, nset, nrec;
    ngx_pool_t                   *pool;
    ngx_http_canary_api_field_t  *f;

    pool = ctx->r->pool;
    prefix = &ctx->cmcf->redis->prefix;
    f = ctx->patch.field;
    n = ctx->patch.nfields;

    nset = 0;

    for (i = 0; i < n; i++) {
        nset += (f[i].value != NULL);
    }

    /* recorded in the history with their old values: the caller's */

    nrec = nset;

    p = ngx_pnalloc(pool, NGX_INT64_LEN + 64 + NGX_HTTP_CANARY_API_ACTOR_MAX);
    if (p == NULL) {
        return NGX_ERROR;
    }

    e = ngx_sprintf(p, "%uL", ngx_http_canary_now_ms());
    r = (ctx->action == NGX_HTTP_CANARY_API_ABORT)
        ? ngx_sprintf(e, "aborted by %V", &ctx->actor)
        : ngx_sprintf(e, "%V by %V",
                      &ngx_http_canary_api_actions[ctx->action],
                      &ctx->actor);

    /* an automatic rollout's decision fields: not an operator's change */

    if (ctx->ro->policy) {
        if (ngx_http_canary_api_decision(ctx, p, e, r) != NGX_OK) {
            return NGX_ERROR;
        }

        nset += 4;
        n = ctx->patch.nfields;
    }

    /* abort and promote: an alert, the event's JSON */

    alert = (ctx->action == NGX_HTTP_CANARY_API_ABORT
             || ctx->action == NGX_HTTP_CANARY_API_PROMOTE)
            ? ctx->event_len : 0;

    if (ngx_http_canary_key(pool, &key, prefix, &ctx->ro->name, "")
        != NGX_OK
        || ngx_http_canary_key(pool, &hist, prefix, &ctx->ro->name,
                               ":history")
           != NGX_OK
        || ngx_http_canary_key_name(pool, &changed, prefix, "changed")
           != NGX_OK
        || ngx_http_canary_key_name(pool, &alerts, prefix, "alerts")
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_http_canary_redis_arg(a, "EVAL", 4);
    ngx_http_canary_redis_arg(a, ngx_http_canary_api_hash_lua.data,
                              ngx_http_canary_api_hash_lua.len);
    ngx_http_canary_redis_arg(a, "2", 1);
    ngx_http_canary_redis_arg(a, key.data, key.len);
    ngx_http_canary_redis_arg(a, hist.data, hist.len);
    ngx_http_canary_redis_arg(a, ctx->allowed, ngx_strlen(ctx->allowed));
    ngx_http_canary_redis_arg(a, changed.data, changed.len);
    ngx_http_canary_redis_arg(a, ctx->ro->name.data, ctx->ro->name.len);
    ngx_http_canary_redis_arg(a, alerts.data, alerts.len);
    ngx_http_canary_redis_arg(a, ctx->event, alert);
    ngx_http_canary_redis_argf(a, "%ui", nset);
    ngx_http_canary_redis_argf(a, "%ui", nrec);
    ngx_http_canary_redis_argf(a, "%ui", n - nset);

    /* the pairs (recorded first: they come first), then the removals */

    for (i = 0; i < n; i++) {
        if (f[i].value) {
            ngx_http_canary_redis_arg(a, f[i].name, f[i].name_len);
            ngx_http_canary_redis_arg(a, f[i].value, f[i].value_len);
        }
    }

    for (i = 0; i < n; i++) {
        if (f[i].value == NULL) {
            ngx_http_canary_redis_arg(a, f[i].name, f[i].name_len);
        }
    }

    ngx_http_canary_api_history(ctx, a);

    /* an automatic rollout's reason, in the entry too */

    if (ctx->ro->policy) {
        ngx_http_canary_redis_arg(a, "reason", 6);
        ngx_http_canary_redis_arg(a, e, r - e);
    }

    return NGX_OK;
}


/* decided_at (p .. e), decided_by, decision, reason (e .. r) */

static ngx_int_t
ngx_http_canary_api_decision(ngx_http_canary_api_t *ctx, u_char *p,
    u_char *e, u_char *r)
{
    ngx_str_t                     *action;
    ngx_http_canary_api_patch_t   *pt;

    pt = &ctx->patch;
    action = &ngx_http_canary_api_actions[ctx->action];

    if (ngx_http_canary_api_field(pt, "decided_at", p, e - p) != NGX_OK
        || ngx_http_canary_api_field(pt, "decided_by",
                                     ngx_http_canary_api_node.data,
                                     ngx_http_canary_api_node.len)
           != NGX_OK
        || ngx_http_canary_api_field(pt, "decision", action->data,
                                     action->len)
           != NGX_OK
        || ngx_http_canary_api_field(pt, "reason", e, r - e) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* EVAL of the set's script */

static ngx_int_t
ngx_http_canary_api_set_args(ngx_http_canary_api_t *ctx,
    ngx_http_canary_redis_args_t *a)
{
    ngx_str_t   key, hist, changed, *prefix;
    ngx_pool_t  *pool;

    pool = ctx->r->pool;
    prefix = &ctx->cmcf->redis->prefix;

    if (ngx_http_canary_key_set(pool, &key, prefix, ctx->ro, ctx->which)
        != NGX_OK
        || ngx_http_canary_key(pool, &hist, prefix, &ctx->ro->name,
                               ":history")
           != NGX_OK
        || ngx_http_canary_key_name(pool, &changed, prefix, "changed")
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_http_canary_redis_arg(a, "EVAL", 4);
    ngx_http_canary_redis_arg(a, ngx_http_canary_api_set_lua.data,
                              ngx_http_canary_api_set_lua.len);
    ngx_http_canary_redis_arg(a, "2", 1);
    ngx_http_canary_redis_arg(a, key.data, key.len);
    ngx_http_canary_redis_arg(a, hist.data, hist.len);
    ngx_http_canary_redis_arg(a, (ctx->action
                                  == NGX_HTTP_CANARY_API_ADD_USER)
                                 ? "SADD" : "SREM", 4);
    ngx_http_canary_redis_arg(a, ctx->member.data, ctx->member.len);
    ngx_http_canary_redis_arg(a, changed.data, changed.len);

    ngx_http_canary_api_history(ctx, a);

    /* the set's name: canary_users, stable_users, users:<arm> */

    ngx_http_canary_redis_arg(a, "set", 3);

    if (ctx->which < 2) {
        ngx_http_canary_redis_arg(a, ctx->which ? "stable_users"
                                                : "canary_users", 12);

    } else {
        ngx_http_canary_redis_argf(a, "users:%V",
                                   &ctx->ro->variants[ctx->which - 1].name);
    }

    ngx_http_canary_redis_arg(a, "member", 6);
    ngx_http_canary_redis_arg(a, ctx->member.data, ctx->member.len);

    return NGX_OK;
}


/* the history entry's own pairs: when, who, what */

static void
ngx_http_canary_api_history(ngx_http_canary_api_t *ctx,
    ngx_http_canary_redis_args_t *a)
{
    ngx_http_canary_redis_arg(a, "time", 4);
    ngx_http_canary_redis_argf(a, "%uL", ngx_http_canary_now_ms());
    ngx_http_canary_redis_arg(a, "event", 5);
    ngx_http_canary_redis_arg(a,
                              ngx_http_canary_api_actions[ctx->action].data,
                              ngx_http_canary_api_actions[ctx->action].len);
    ngx_http_canary_redis_arg(a, "source", 6);
    ngx_http_canary_redis_arg(a, "api", 3);
    ngx_http_canary_redis_arg(a, "actor", 5);
    ngx_http_canary_redis_arg(a, ctx->actor.data, ctx->actor.len);
    ngx_http_canary_redis_arg(a, "node", 4);
    ngx_http_canary_redis_arg(a, ngx_http_canary_api_node.data,
                              ngx_http_canary_api_node.len);
}


/* Redis answered (reply), or the connection failed first (NULL) */

static void
ngx_http_canary_api_replied(ngx_http_canary_redis_t *rc, redisReply *reply,
    void *data)
{
    ngx_http_canary_api_t *ctx = data;

    ngx_str_t    detail;
    redisReply  *e;

    ctx->replied = 1;

    if (ctx->r == NULL) {
        /* answered 504 already: the outcome, for the log */

        ngx_log_error(NGX_LOG_WARN, ctx->log, 0,
                      "canary api: %V of \"%V\" by \"%V\" answered 504, "
                      "then Redis %s", &ngx_http_canary_api_actions
                                        [ctx->action],
                      &ctx->ro->name, &ctx->actor,
                      reply == NULL ? "was lost before it answered"
                      : (reply->type == REDIS_REPLY_ARRAY
                         && reply->elements == 2
                         && reply->element[0]->type == REDIS_REPLY_INTEGER
                         && reply->element[0]->integer == 1)
                        ? "applied it" : "refused it");

        if (reply && reply->type == REDIS_REPLY_ARRAY
            && reply->elements == 2
            && reply->element[0]->type == REDIS_REPLY_INTEGER
            && reply->element[0]->integer == 1)
        {
            ngx_http_canary_api_event_send(ctx);
        }

        ngx_free(ctx);
        return;
    }

    if (reply == NULL) {

        /*
         * refused by a node that no longer owns the slot (a cluster's
         * failover): sent again, once, to the new master
         */

        if (ngx_http_canary_api_redis->moved != ctx->moved && !ctx->resent
            && (ngx_msec_int_t) (ctx->deadline - ngx_current_msec) > 0)
        {
            ngx_log_error(NGX_LOG_NOTICE, ctx->log, 0,
                          "canary api: %V of \"%V\" refused by a node that "
                          "no longer owns the slot (MOVED), sent again to "
                          "the new master", &ngx_http_canary_api_actions
                                            [ctx->action], &ctx->ro->name);

            ctx->replied = 0;
            ctx->resend = 1;
            ctx->resent = 1;

            if (ctx->wait.timer_set) {
                ngx_del_timer(&ctx->wait);
            }

            ngx_add_timer(&ctx->wait, 1);
            return;
        }

        if (ctx->sent_ready) {

            ngx_http_canary_api_done(ctx, NGX_HTTP_GATEWAY_TIME_OUT,
                                     "the connection to Redis was lost "
                                     "before it answered: the change may "
                                     "or may not be in force", NULL);
            return;
        }

        ngx_http_canary_api_done(ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                                 "Redis is unavailable: nothing was "
                                 "changed", NULL);
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        detail.data = (u_char *) reply->str;
        detail.len = ngx_min(reply->len, 256);

        ngx_log_error(NGX_LOG_ERR, ctx->log, 0,
                      "canary api: %V of \"%V\": Redis: %V",
                      &ngx_http_canary_api_actions[ctx->action],
                      &ctx->ro->name, &detail);

        ngx_http_canary_api_done(ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                                 "Redis refused the write: nothing was "
                                 "changed", &detail);
        return;
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2
        || reply->element[0]->type != REDIS_REPLY_INTEGER)
    {
        ngx_http_canary_api_done(ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                                 "an unexpected reply from Redis", NULL);
        return;
    }

    e = reply->element[1];

    if (reply->element[0]->integer == 0) {
        detail.data = (u_char *) (e->type == REDIS_REPLY_STRING ? e->str
                                                                : "");
        detail.len = (e->type == REDIS_REPLY_STRING) ? e->len : 0;

        ngx_http_canary_api_done(ctx, NGX_HTTP_CONFLICT,
                                 "the action does not apply to the "
                                 "rollout's state", &detail);
        return;
    }

    ngx_log_error(NGX_LOG_NOTICE, ctx->log, 0,
                  "canary api: %V of \"%V\" by \"%V\" written to Redis",
                  &ngx_http_canary_api_actions[ctx->action], &ctx->ro->name,
                  &ctx->actor);

    ngx_http_canary_api_event_send(ctx);

    ngx_http_canary_api_wait(&ctx->wait);
}


/*
 * Every 10 ms until the deadline: is the change in force on this node?
 * Also the deadline of Redis' answer.
 */

static void
ngx_http_canary_api_wait(ngx_event_t *ev)
{
    ngx_http_canary_api_t *ctx = ev->data;

    if (ctx->resend) {
        ctx->resend = 0;
        ngx_http_canary_api_command(ctx);
        return;
    }

    if (!ctx->replied) {
        ngx_http_canary_api_done(ctx, NGX_HTTP_GATEWAY_TIME_OUT,
                                 "Redis did not answer in time: the change "
                                 "may or may not be in force", NULL);
        return;
    }

    if (ngx_http_canary_api_in_force(ctx)) {
        ngx_http_canary_api_done(ctx, NGX_HTTP_OK, NULL, NULL);
        return;
    }

    if ((ngx_msec_int_t) (ctx->deadline - ngx_current_msec) <= 0) {
        ngx_http_canary_api_done(ctx, NGX_HTTP_GATEWAY_TIME_OUT,
                                 "written to Redis, not yet in force on "
                                 "this node", NULL);
        return;
    }

    if (ctx->wait.timer_set) {
        ngx_del_timer(&ctx->wait);
    }

    ngx_add_timer(&ctx->wait, ngx_min(NGX_HTTP_CANARY_API_POLL,
                                      ctx->deadline - ngx_current_msec));
}


/* the zone's snapshot shows every field written (or the member) */

static ngx_uint_t
ngx_http_canary_api_in_force(ngx_http_canary_api_t *ctx)
{
    ngx_uint_t                   i, in;
    ngx_http_canary_set_t       *set;
    ngx_http_canary_snapshot_t  *snap;

    snap = ctx->ro->sh->snapshot;

    if (ctx->action >= NGX_HTTP_CANARY_API_ADD_USER) {
        set = ngx_http_canary_snapshot_set(snap, ctx->which);
        in = set && ngx_http_canary_set_contains(set, &ctx->member);

        return in == (ctx->action == NGX_HTTP_CANARY_API_ADD_USER);
    }

    for (i = 0; i < ctx->patch.nfields; i++) {
        if (!ngx_http_canary_api_field_in_force(ctx->ro, snap,
                                                &ctx->patch.field[i]))
        {
            return 0;
        }
    }

    return 1;
}


static ngx_uint_t
ngx_http_canary_api_field_in_force(ngx_http_canary_rollout_t *ro,
    ngx_http_canary_snapshot_t *snap, ngx_http_canary_api_field_t *f)
{
    time_t       t;
    u_char      *name;
    size_t       len;
    uint32_t     v;
    unsigned     state;
    ngx_int_t    arm;
    ngx_uint_t   i;

    name = (u_char *) f->name;
    len = f->name_len;
    v = 0;
    t = 0;

    if (len == 7 && ngx_strncmp(name, "percent", 7) == 0) {
        (void) ngx_http_canary_parse_percent(f->value, f->value_len, &v);
        return snap->percent == v;
    }

    if (len == 6 && ngx_strncmp(name, "shadow", 6) == 0) {
        (void) ngx_http_canary_parse_percent(f->value, f->value_len, &v);
        return snap->shadow == v;
    }

    if (len == 5 && ngx_strncmp(name, "state", 5) == 0) {
        (void) ngx_http_canary_parse_state(f->value, f->value_len, &state);
        return snap->state == state;
    }

    if ((len == 5 && ngx_strncmp(name, "start", 5) == 0)
        || (len == 3 && ngx_strncmp(name, "end", 3) == 0))
    {
        if (f->value) {
            (void) ngx_http_canary_parse_time(f->value, f->value_len, &t);
        }

        return (len == 5 ? snap->start : snap->end) == t;
    }

    if (len > 7 && ngx_strncmp(name, "weight:", 7) == 0) {
        arm = ngx_http_canary_find_arm(ro, name + 7, len - 7);
        (void) ngx_http_canary_parse_weight(f->value, f->value_len, &v);
        return arm != NGX_ERROR && snap->weight[arm - 1] == v;
    }

    if (len > 4 && ngx_strncmp(name, "arm:", 4) == 0) {
        arm = ngx_http_canary_find_arm(ro, name + 4, len - 4);
        return arm != NGX_ERROR
               && !!(snap->arms_off & (1 << (arm - 1)))
                  == (f->value_len == 3);
    }

    if (len > 8 && ngx_strncmp(name, "percent:", 8) == 0) {
        if (f->value) {
            (void) ngx_http_canary_parse_percent(f->value, f->value_len, &v);
        }

        for (i = 0; i < snap->nsegments; i++) {
            if (snap->segments[i].value.len == len - 8
                && ngx_memcmp(snap->segments[i].value.data, name + 8,
                              len - 8) == 0)
            {
                return f->value && snap->segments[i].percent == v;
            }
        }

        return f->value == NULL;
    }

    /* step, decided_at, ...: not in the zone */

    return 1;
}


static void
ngx_http_canary_api_done(ngx_http_canary_api_t *ctx, ngx_uint_t status,
    char *error, ngx_str_t *detail)
{
    ngx_uint_t                result;
    ngx_http_canary_shctx_t  *sh;

    result = (status == NGX_HTTP_OK) ? NGX_HTTP_CANARY_API_OK
             : (status == NGX_HTTP_SERVICE_UNAVAILABLE
                || status == NGX_HTTP_INTERNAL_SERVER_ERROR)
               ? NGX_HTTP_CANARY_API_UNAVAILABLE
             : (status == NGX_HTTP_GATEWAY_TIME_OUT)
               ? NGX_HTTP_CANARY_API_TIMEOUT
             : NGX_HTTP_CANARY_API_REFUSED;

    sh = ctx->cmcf->sh;
    (void) ngx_atomic_fetch_add(&sh->api_writes[ctx->action][result], 1);

    if (status == NGX_HTTP_GATEWAY_TIME_OUT) {
        ngx_log_error(NGX_LOG_WARN, ctx->log, 0,
                      "canary api: %V of \"%V\" by \"%V\" answered 504: %s",
                      &ngx_http_canary_api_actions[ctx->action],
                      &ctx->ro->name, &ctx->actor, error);
    }

    ngx_http_canary_api_answer(ctx, status, error, detail);

    /* the Redis handler, when it is still to come, frees it */

    if (!ctx->pending || ctx->replied) {
        ngx_free(ctx);
    }
}


/*
 * GET rollouts/<name>/history: the last 20 entries of the rollout's
 * history, newest first, each {"id": ..., field: value, ...} with every
 * value a string.  The request waits for Redis' answer on the event loop
 * (bounded by canary_redis' timeout: the connection fails after it).
 */

ngx_int_t
ngx_http_canary_api_history_get(ngx_http_request_t *r,
    ngx_http_canary_rollout_t *ro)
{
    u_char                         buf[8];
    size_t                         len[6];
    ngx_str_t                      key;
    const char                    *argv[6];
    ngx_http_canary_redis_args_t   a;
    ngx_http_canary_main_conf_t   *cmcf;

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_canary_module);

    if (ngx_http_canary_api_redis == NULL
        || !ngx_http_canary_redis_ready(ngx_http_canary_api_redis))
    {
        return ngx_http_canary_api_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                         "Redis is unavailable", NULL);
    }

    if (ngx_http_canary_key(r->pool, &key, &cmcf->redis->prefix, &ro->name,
                            ":history")
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_canary_redis_args_init(&a, argv, len, 6, buf, sizeof(buf));
    ngx_http_canary_redis_arg(&a, "XREVRANGE", 9);
    ngx_http_canary_redis_arg(&a, key.data, key.len);
    ngx_http_canary_redis_arg(&a, "+", 1);
    ngx_http_canary_redis_arg(&a, "-", 1);
    ngx_http_canary_redis_arg(&a, "COUNT", 5);
    ngx_http_canary_redis_arg(&a, "20", 2);

    if (ngx_http_canary_redis_send_args(ngx_http_canary_api_redis, &a,
                                        ngx_http_canary_api_history_reply, r)
        != NGX_OK)
    {
        return ngx_http_canary_api_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                         "Redis is unavailable", NULL);
    }

    /* the request lives until the handler, called once, finalizes it */

    r->main->count++;

    return NGX_DONE;
}


static void
ngx_http_canary_api_history_reply(ngx_http_canary_redis_t *rc,
    redisReply *reply, void *data)
{
    ngx_http_request_t *r = data;

    u_char                 *p;
    ngx_uint_t              i, n;
    ngx_http_canary_out_t   o;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        ngx_http_finalize_request(r,
            ngx_http_canary_api_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                      "no history from Redis", NULL));
        return;
    }

    ngx_memzero(&o, sizeof(ngx_http_canary_out_t));
    o.request = r;
    o.last = &o.out;

    p = ngx_http_canary_reserve(&o, sizeof("{\"history\":["));
    if (p == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    o.buf->last = ngx_http_canary_cpy(p, "{\"history\":[");

    for (i = 0, n = 0; i < reply->elements; i++) {
        switch (ngx_http_canary_api_history_entry(&o, reply->element[i], n)) {

        case NGX_ERROR:
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;

        case NGX_OK:
            n++;
            break;

        default: /* NGX_DECLINED: not an entry */
            break;
        }
    }

    p = ngx_http_canary_reserve(&o, 8);
    if (p == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    o.buf->last = ngx_http_canary_cpy(p, "\n]}\n");

    ngx_http_finalize_request(r, ngx_http_canary_api_send(r, &o,
                                                          NGX_HTTP_OK));
}


/* one entry of XREVRANGE's reply, the n-th shown: {"id":..., ...} */

static ngx_int_t
ngx_http_canary_api_history_entry(ngx_http_canary_out_t *o, redisReply *e,
    ngx_uint_t n)
{
    u_char      *p;
    size_t       size;
    ngx_str_t    s;
    ngx_uint_t   k;
    redisReply  *f;

    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2
        || e->element[0]->type != REDIS_REPLY_STRING
        || e->element[1]->type != REDIS_REPLY_ARRAY)
    {
        return NGX_DECLINED;
    }

    f = e->element[1];

    if (f->elements % 2) {
        return NGX_DECLINED;
    }

    size = 16 + 6 * e->element[0]->len;

    for (k = 0; k < f->elements; k++) {
        if (f->element[k]->type != REDIS_REPLY_STRING) {
            return NGX_DECLINED;
        }

        size += 4 + 6 * f->element[k]->len;
    }

    p = ngx_http_canary_reserve(o, size);
    if (p == NULL) {
        return NGX_ERROR;
    }

    p = n ? ngx_http_canary_cpy(p, ",\n{\"id\":\"")
          : ngx_http_canary_cpy(p, "\n{\"id\":\"");

    for (k = 0; k <= f->elements; k++) {

        /* the id, then each field and value */

        e = k ? f->element[k - 1] : e->element[0];
        s.data = (u_char *) e->str;
        s.len = e->len;
        p = ngx_http_canary_esc(p, &s, NGX_HTTP_CANARY_ESC_JSON);

        if (k == f->elements) {
            break;
        }

        p = (k % 2) ? ngx_http_canary_cpy(p, "\":\"")
                    : ngx_http_canary_cpy(p, "\",\"");
    }

    p = ngx_http_canary_cpy(p, "\"}");
    o->buf->last = p;

    return NGX_OK;
}
