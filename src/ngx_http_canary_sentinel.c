
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * Redis behind Sentinel, for the client of ngx_http_canary_redis.c: where
 * the master is (SENTINEL get-master-addr-by-name), followed across
 * failovers (+switch-master), over connections of the same client to
 * the sentinels.  The client calls in through conf->locator only.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>

#include "ngx_http_canary_redis.h"
#include "ngx_http_canary_sentinel.h"
#include "ngx_http_canary_redis_follow.h"


/*
 * After a +switch-master, sentinels that have not heard of it yet still
 * name the old master (they learn from each other's hello messages, every
 * 2 s): for this long, such an answer is not believed.
 */
#define NGX_HTTP_CANARY_SENTINEL_SETTLE    10000


/*
 * Sentinel, one per process: a connection to every sentinel that asks
 * for the master, then SUBSCRIBEs to +switch-master and stays (the first
 * sentinel to switch tells at once); one more that asks again when a
 * client lost its master (a subscribed connection can ask nothing more),
 * closed once answered; the master named, and the one it replaced.
 */

typedef struct {
    ngx_http_canary_redis_t         **watch;
    ngx_uint_t                        nwatch;
    ngx_http_canary_redis_t          *ask;
    ngx_http_canary_redis_follow_t    follow;

    ngx_addr_t                        master;
    ngx_sockaddr_t                    sockaddr;
    u_char                            name[NGX_SOCKADDR_STRLEN];
    u_char                            host[NGX_SOCKADDR_STRLEN];

    u_char                            left[NGX_SOCKADDR_STRLEN];
    size_t                            left_len;
    ngx_msec_t                        switched;

    unsigned                          known:1;
    unsigned                          asking:1;
} ngx_http_canary_sentinel_t;


static ngx_int_t ngx_http_canary_sentinel_locate(ngx_http_canary_redis_t *rc);
static void ngx_http_canary_sentinel_lost(ngx_http_canary_redis_t *rc);
static ngx_http_canary_sentinel_t *ngx_http_canary_sentinel_get(
    ngx_http_canary_redis_t *rc);
static void ngx_http_canary_sentinel_ask(ngx_http_canary_sentinel_t *s);
static void ngx_http_canary_sentinel_ready(ngx_http_canary_redis_t *rc);
static void ngx_http_canary_sentinel_master(ngx_http_canary_redis_t *rc,
    redisReply *reply, void *data);
static void ngx_http_canary_sentinel_subscribed(ngx_http_canary_redis_t *rc,
    redisReply *reply, void *data);
static void ngx_http_canary_sentinel_push(ngx_http_canary_redis_t *rc,
    redisReply *reply);
static ngx_int_t ngx_http_canary_sentinel_set(ngx_http_canary_sentinel_t *s,
    u_char *ip, size_t iplen, u_char *port, size_t portlen,
    ngx_uint_t switched);
static void ngx_http_canary_sentinel_leave(ngx_http_canary_redis_t *rc);


ngx_http_canary_redis_locator_t  ngx_http_canary_sentinel_locator = {
    ngx_http_canary_sentinel_locate,
    ngx_http_canary_sentinel_lost,
    ngx_http_canary_sentinel_leave,
    NULL
};


static ngx_http_canary_sentinel_t  *ngx_http_canary_sentinel;


/* where to: the master the sentinels named, or wait for them */

static ngx_int_t
ngx_http_canary_sentinel_locate(ngx_http_canary_redis_t *rc)
{
    ngx_http_canary_sentinel_t  *s;

    s = ngx_http_canary_sentinel_get(rc);
    if (s == NULL) {
        ngx_http_canary_redis_fail(rc, 0, "out of memory");
        return NGX_ERROR;
    }

    if (!s->known) {
        rc->wait_master = 1;
        ngx_http_canary_sentinel_ask(s);
        return NGX_AGAIN;
    }

    rc->wait_master = 0;
    rc->addr = s->master;
    rc->host.data = s->host;
    rc->host.len = ngx_strlen(s->host);

    return NGX_OK;
}


/* behind Sentinel, any loss asks the sentinels again */

static void
ngx_http_canary_sentinel_lost(ngx_http_canary_redis_t *rc)
{
    if (ngx_http_canary_sentinel) {
        ngx_http_canary_sentinel->known = 0;
    }
}


/* the process's Sentinel state, made by the first client that needs it */

static ngx_http_canary_sentinel_t *
ngx_http_canary_sentinel_get(ngx_http_canary_redis_t *rc)
{
    ngx_uint_t                     i;
    ngx_cycle_t                   *cycle;
    ngx_http_canary_sentinel_t    *s;
    ngx_http_canary_redis_conf_t  *scf, *one;

    s = ngx_http_canary_sentinel;

    if (s == NULL) {
        cycle = (ngx_cycle_t *) ngx_cycle;
        scf = rc->conf->sentinel;

        s = ngx_pcalloc(cycle->pool, sizeof(ngx_http_canary_sentinel_t));
        if (s == NULL) {
            return NULL;
        }

        s->watch = ngx_pcalloc(cycle->pool,
                               scf->naddrs * sizeof(ngx_http_canary_redis_t *));
        one = ngx_pcalloc(cycle->pool,
                          scf->naddrs * sizeof(ngx_http_canary_redis_conf_t));
        if (s->watch == NULL || one == NULL) {
            return NULL;
        }

        /* one watching connection per sentinel, each to its own */

        for (i = 0; i < scf->naddrs; i++) {
            one[i] = *scf;
            one[i].addr = scf->addrs[i];
            one[i].host = scf->hosts[i];
            one[i].addrs = &one[i].addr;
            one[i].hosts = &one[i].host;
            one[i].naddrs = 1;

            s->watch[i] = ngx_http_canary_redis_create(cycle, &one[i],
                                                       "sentinel");
            if (s->watch[i] == NULL) {
                return NULL;
            }

            s->watch[i]->on_ready = ngx_http_canary_sentinel_ready;
            s->watch[i]->on_push = ngx_http_canary_sentinel_push;
            s->watch[i]->data = s;
        }

        s->nwatch = scf->naddrs;

        /* the asking one tries the sentinels in turn */

        s->ask = ngx_http_canary_redis_create(cycle, scf, "sentinel ask");
        if (s->ask == NULL) {
            return NULL;
        }

        s->ask->on_ready = ngx_http_canary_sentinel_ready;
        s->ask->data = s;
        s->ask->quiet = 1;

        ngx_http_canary_sentinel = s;
    }

    if (ngx_http_canary_redis_follow_join(&s->follow, rc) != NGX_OK) {
        return NULL;
    }

    return s;
}


/* a client closed for good; the last one closes the sentinel connection */

static void
ngx_http_canary_sentinel_leave(ngx_http_canary_redis_t *rc)
{
    ngx_uint_t                   i;
    ngx_http_canary_sentinel_t  *s;

    s = ngx_http_canary_sentinel;

    if (s == NULL) {
        return;
    }

    if (ngx_http_canary_redis_follow_leave(&s->follow, rc) == 0) {
        ngx_http_canary_sentinel = NULL;

        for (i = 0; i < s->nwatch; i++) {
            ngx_http_canary_redis_close(s->watch[i]);
        }

        ngx_http_canary_redis_close(s->ask);
    }
}


/*
 * Asks the sentinels where the master is.  The watching connections ask
 * whenever they connect; when one is up, the asking connection connects
 * to the next sentinel and asks.  A question already out, or a connection
 * waiting out its backoff, is left alone: it asks when it connects.
 */

static void
ngx_http_canary_sentinel_ask(ngx_http_canary_sentinel_t *s)
{
    ngx_uint_t                i, up;
    ngx_http_canary_redis_t  *rc;

    if (s->asking) {
        return;
    }

    up = 0;

    for (i = 0; i < s->nwatch; i++) {
        rc = s->watch[i];

        if (ngx_http_canary_redis_ready(rc)) {
            up = 1;

        } else if (!rc->reconnect.timer_set) {
            ngx_http_canary_redis_connect(rc);
        }
    }

    if (!up) {
        return;
    }

    if (s->ask->state == NGX_HTTP_CANARY_REDIS_CLOSED
        && !s->ask->reconnect.timer_set)
    {
        ngx_http_canary_redis_connect(s->ask);
    }
}


static void
ngx_http_canary_sentinel_ready(ngx_http_canary_redis_t *rc)
{
    ngx_http_canary_sentinel_t  *s = rc->data;

    size_t       argvlen[3];
    const char  *argv[3];

    if (ngx_exiting || ngx_terminate) {
        return;
    }

    s->asking = 1;

    argv[0] = "SENTINEL";
    argvlen[0] = sizeof("SENTINEL") - 1;
    argv[1] = "get-master-addr-by-name";
    argvlen[1] = sizeof("get-master-addr-by-name") - 1;
    argv[2] = (const char *) rc->conf->master.data;
    argvlen[2] = rc->conf->master.len;

    if (ngx_http_canary_redis_send(rc, 3, argv, argvlen,
                                   ngx_http_canary_sentinel_master, s)
        != NGX_OK)
    {
        return;
    }

    if (rc == s->ask) {
        return;
    }

    argv[0] = "SUBSCRIBE";
    argvlen[0] = sizeof("SUBSCRIBE") - 1;
    argv[1] = "+switch-master";
    argvlen[1] = sizeof("+switch-master") - 1;

    (void) ngx_http_canary_redis_send(rc, 2, argv, argvlen,
                                      ngx_http_canary_sentinel_subscribed, s);
}


static void
ngx_http_canary_sentinel_master(ngx_http_canary_redis_t *rc,
    redisReply *reply, void *data)
{
    ngx_http_canary_sentinel_t  *s = data;

    ngx_int_t    n;
    redisReply  *ip, *port;

    s->asking = 0;

    if (reply == NULL) {
        /* the connection failed: it tries the next sentinel by itself */
        return;
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2
        || reply->element[0]->type != REDIS_REPLY_STRING
        || reply->element[1]->type != REDIS_REPLY_STRING)
    {
        if (!rc->down) {
            if (reply->type == REDIS_REPLY_ERROR) {
                ngx_log_error(NGX_LOG_ERR, &rc->log, 0,
                              "canary redis: sentinel %V refused SENTINEL "
                              "get-master-addr-by-name: %*s",
                              &rc->addr.name, reply->len, reply->str);

            } else {
                ngx_log_error(NGX_LOG_ERR, &rc->log, 0,
                              "canary redis: sentinel %V knows no master "
                              "\"%V\"", &rc->addr.name, &rc->conf->master);
            }
        }

        rc->down = 1;
        ngx_http_canary_redis_fail(rc, 0, "no master named");
        return;
    }

    ip = reply->element[0];
    port = reply->element[1];

    /* the asking connection has done its job */

    if (rc == s->ask) {
        ngx_http_canary_redis_drop(rc);
    }

    n = ngx_http_canary_sentinel_set(s, (u_char *) ip->str, ip->len,
                                     (u_char *) port->str, port->len, 0);

    if (n == NGX_DECLINED) {
        /* a sentinel behind the others: ask again if someone waits */

        if (!s->known) {
            ngx_http_canary_redis_fail(s->ask, 0, "old master named");
        }

        return;
    }

    if (n != NGX_OK) {
        if (!rc->down) {
            ngx_log_error(NGX_LOG_ERR, &rc->log, 0,
                          "canary redis: sentinel %V names an invalid "
                          "address for master \"%V\"",
                          &rc->addr.name, &rc->conf->master);
        }

        rc->down = 1;
        ngx_http_canary_redis_fail(rc, 0, "invalid master address");
    }
}


static void
ngx_http_canary_sentinel_subscribed(ngx_http_canary_redis_t *rc,
    redisReply *reply, void *data)
{
    if (reply && reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, &rc->log, 0,
                      "canary redis: sentinel %V refused SUBSCRIBE "
                      "+switch-master: %*s; a failover is followed when "
                      "the master's connection breaks only",
                      &rc->addr.name, reply->len, reply->str);
    }
}


/* "+switch-master": "<name> <old ip> <old port> <new ip> <new port>" */

static void
ngx_http_canary_sentinel_push(ngx_http_canary_redis_t *rc, redisReply *reply)
{
    ngx_http_canary_sentinel_t  *s = rc->data;

    u_char      *p, *last, *f[5];
    size_t       l[5];
    ngx_uint_t   n;
    redisReply  *msg;

    msg = reply->element[reply->elements - 1];

    if (msg->type != REDIS_REPLY_STRING) {
        return;
    }

    p = (u_char *) msg->str;
    last = p + msg->len;

    for (n = 0; n < 5 && p < last; n++) {
        f[n] = p;

        while (p < last && *p != ' ') {
            p++;
        }

        l[n] = p - f[n];

        if (p < last) {
            p++;
        }
    }

    if (n != 5 || l[0] != rc->conf->master.len
        || ngx_strncmp(f[0], rc->conf->master.data, l[0]) != 0)
    {
        return;
    }

    ngx_log_error(NGX_LOG_NOTICE, &rc->log, 0,
                  "canary redis: sentinel %V: +switch-master %*s",
                  &rc->addr.name, msg->len, msg->str);

    if (ngx_http_canary_sentinel_set(s, f[3], l[3], f[4], l[4], 1)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ERR, &rc->log, 0,
                      "canary redis: sentinel %V names an invalid address "
                      "for master \"%V\"", &rc->addr.name,
                      &rc->conf->master);
    }
}


/*
 * The master is at ip:port: the clients waiting for it connect; when it
 * moved, every client reconnects at once, without backoff.  An answer
 * that names the master a +switch-master just replaced is declined.
 */

static ngx_int_t
ngx_http_canary_sentinel_set(ngx_http_canary_sentinel_t *s, u_char *ip,
    size_t iplen, u_char *port, size_t portlen, ngx_uint_t switched)
{
    size_t                    len;
    in_addr_t                 inaddr;
    ngx_int_t                 n;
    ngx_uint_t                moved;
    ngx_sockaddr_t            sa;
    struct sockaddr_in       *sin;
    u_char                    name[NGX_SOCKADDR_STRLEN];
#if (NGX_HAVE_INET6)
    struct sockaddr_in6      *sin6;
#endif

    n = ngx_atoi(port, portlen);
    if (n < 1 || n > 65535 || iplen == 0 || iplen >= NGX_SOCKADDR_STRLEN) {
        return NGX_ERROR;
    }

    ngx_memzero(&sa, sizeof(ngx_sockaddr_t));

    inaddr = ngx_inet_addr(ip, iplen);

    if (inaddr != INADDR_NONE) {
        sin = &sa.sockaddr_in;
        sin->sin_family = AF_INET;
        sin->sin_addr.s_addr = inaddr;
        sin->sin_port = htons((in_port_t) n);
        len = sizeof(struct sockaddr_in);

#if (NGX_HAVE_INET6)
    } else if (ngx_inet6_addr(ip, iplen, sa.sockaddr_in6.sin6_addr.s6_addr)
               == NGX_OK)
    {
        sin6 = &sa.sockaddr_in6;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((in_port_t) n);
        len = sizeof(struct sockaddr_in6);
#endif

    } else {
        return NGX_ERROR;
    }

    n = ngx_sock_ntop(&sa.sockaddr, len, name, NGX_SOCKADDR_STRLEN, 1);

    if (!switched && s->left_len == (size_t) n
        && ngx_strncmp(s->left, name, n) == 0
        && ngx_current_msec - s->switched < NGX_HTTP_CANARY_SENTINEL_SETTLE)
    {
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, &s->ask->log, 0,
                       "canary redis: a sentinel still names %*s", n, name);
        return NGX_DECLINED;
    }

    moved = !s->master.name.len || s->master.name.len != (size_t) n
            || ngx_strncmp(s->master.name.data, name, n) != 0;

    if (moved) {
        if (s->master.name.len) {
            ngx_log_error(NGX_LOG_NOTICE, &s->ask->log, 0,
                          "canary redis: master \"%V\" moved from %V to "
                          "%*s", &s->ask->conf->master, &s->master.name,
                          n, name);

            if (switched) {
                s->left_len = s->master.name.len;
                ngx_memcpy(s->left, s->master.name.data, s->left_len);
                s->switched = ngx_current_msec;
            }
        }

        s->sockaddr = sa;
        ngx_memcpy(s->name, name, n);
        (void) ngx_cpystrn(s->host, ip, iplen + 1);

        s->master.sockaddr = &s->sockaddr.sockaddr;
        s->master.socklen = len;
        s->master.name.data = s->name;
        s->master.name.len = n;
    }

    s->known = 1;

    ngx_http_canary_redis_follow_move(&s->follow, moved);

    return NGX_OK;
}
