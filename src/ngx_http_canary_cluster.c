
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * Redis Cluster for the client of ngx_http_canary_redis.c, through
 * conf->locator (see ngx_http_canary_cluster.h): the master of the one
 * slot of the module's keys, asked of the seeds (CLUSTER SLOTS) over a
 * connection of its own that tries them in turn and closes once
 * answered, and followed: MOVED names the new master (every client of
 * the process moves at once, the subscribed one with the others, so that
 * keyspace notifications keep coming from the node that owns the keys);
 * a lost connection has the map asked for again, and the map is asked
 * for every half second while a client is not connected (a master
 * killed: the replica promoted is found within that time of its
 * promotion, whatever the client's backoff).
 *
 * ASK, TRYAGAIN and CLUSTERDOWN: the slot is being migrated (the
 * module's keys are split between two nodes) or the cluster has lost
 * its quorum.  ASK is not followed: it names the node of one key, and
 * the next command may need the other (a read sent there with ASKING
 * would find no key).  The client drops its connection (the commands
 * waiting are answered with NULL, as after any loss, and the caller
 * tries again in its next round), reconnects to the same master after a
 * growing delay, and asks for the map meanwhile: SETSLOT NODE at the end
 * of the migration shows in the map (or as MOVED), and every client
 * moves.  One line per episode, not per try.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>

#include "ngx_http_canary_redis.h"
#include "ngx_http_canary_cluster.h"
#include "ngx_http_canary_redis_follow.h"


/* the map asked for again while a client is down */
#define NGX_HTTP_CANARY_CLUSTER_REFRESH    500

/*
 * a command refused (ASK, TRYAGAIN, CLUSTERDOWN) is sent again after
 * 100 ms, doubling up to 1.6 s; refusals this long apart are two episodes
 * (each logged once)
 */
#define NGX_HTTP_CANARY_CLUSTER_RETRY_MIN  100
#define NGX_HTTP_CANARY_CLUSTER_RETRY_MAX  1600
#define NGX_HTTP_CANARY_CLUSTER_EPISODE    5000


typedef struct {
    ngx_http_canary_redis_t          *ask;
    ngx_http_canary_redis_conf_t      askconf;
    ngx_http_canary_redis_follow_t    follow;
    ngx_event_t                       refresh;
    ngx_msec_t                        retried;   /* last refusal, or 0 */
    ngx_msec_t                        delay;

    ngx_addr_t                        master;
    ngx_sockaddr_t                    sockaddr;
    u_char                            name[NGX_SOCKADDR_STRLEN];
    u_char                            host[NGX_SOCKADDR_STRLEN];

    unsigned                          known:1;
    unsigned                          asking:1;
} ngx_http_canary_cluster_t;


static ngx_int_t ngx_http_canary_cluster_locate(ngx_http_canary_redis_t *rc);
static void ngx_http_canary_cluster_lost(ngx_http_canary_redis_t *rc);
static void ngx_http_canary_cluster_leave(ngx_http_canary_redis_t *rc);
static ngx_int_t ngx_http_canary_cluster_refused(ngx_http_canary_redis_t *rc,
    redisReply *reply);
static ngx_http_canary_cluster_t *ngx_http_canary_cluster_get(
    ngx_http_canary_redis_t *rc);
static void ngx_http_canary_cluster_ask(ngx_http_canary_cluster_t *c);
static void ngx_http_canary_cluster_refresh(ngx_event_t *ev);
static void ngx_http_canary_cluster_ready(ngx_http_canary_redis_t *rc);
static void ngx_http_canary_cluster_map(ngx_http_canary_redis_t *rc,
    redisReply *reply, void *data);
static ngx_int_t ngx_http_canary_cluster_set(ngx_http_canary_cluster_t *c,
    ngx_log_t *log, ngx_str_t *ip, ngx_uint_t port, const char *why);


ngx_http_canary_redis_locator_t  ngx_http_canary_cluster_locator = {
    ngx_http_canary_cluster_locate,
    ngx_http_canary_cluster_lost,
    ngx_http_canary_cluster_leave,
    ngx_http_canary_cluster_refused
};


static ngx_http_canary_cluster_t  *ngx_http_canary_cluster;


/*
 * CRC16-XMODEM bit by bit: polynomial 0x1021, initial value 0, MSB first;
 * crc16("123456789") is 0x31C3, as the cluster specification says
 */

static uint16_t
ngx_http_canary_cluster_crc16(u_char *p, size_t len)
{
    uint16_t    crc;
    ngx_uint_t  i;

    crc = 0;

    while (len--) {
        crc ^= (uint16_t) (*p++ << 8);

        for (i = 0; i < 8; i++) {
            crc = (crc & 0x8000) ? (uint16_t) ((crc << 1) ^ 0x1021)
                                 : (uint16_t) (crc << 1);
        }
    }

    return crc;
}


/* the slot of a key with a hash tag, or -1 when it has none */

ngx_int_t
ngx_http_canary_cluster_keyslot(u_char *key, size_t len)
{
    u_char  *open, *close, *last;

    last = key + len;

    open = ngx_strlchr(key, last, '{');
    if (open == NULL) {
        return -1;
    }

    close = ngx_strlchr(open + 1, last, '}');
    if (close == NULL || close == open + 1) {
        return -1;
    }

    return ngx_http_canary_cluster_crc16(open + 1, close - open - 1)
           & (NGX_HTTP_CANARY_CLUSTER_SLOTS - 1);
}


/*
 * "MOVED <slot> <ip>:<port>", "ASK <slot> <ip>:<port>", "TRYAGAIN ...",
 * "CLUSTERDOWN ...": e->kind, or 0 when the error is none of them (or a
 * MOVED or ASK that does not parse)
 */

void
ngx_http_canary_cluster_error(u_char *p, size_t len,
    ngx_http_canary_cluster_error_t *e)
{
    u_char     *last, *sp, *colon;
    ngx_int_t   n;

    ngx_memzero(e, sizeof(ngx_http_canary_cluster_error_t));

    last = p + len;

    if ((len >= 8 && ngx_strncmp(p, "TRYAGAIN", 8) == 0)
        || (len >= 11 && ngx_strncmp(p, "CLUSTERDOWN", 11) == 0))
    {
        e->kind = NGX_HTTP_CANARY_CLUSTER_RETRY;
        return;
    }

    if (len > 6 && ngx_strncmp(p, "MOVED ", 6) == 0) {
        p += 6;
        e->kind = NGX_HTTP_CANARY_CLUSTER_MOVED;

    } else if (len > 4 && ngx_strncmp(p, "ASK ", 4) == 0) {
        p += 4;
        e->kind = NGX_HTTP_CANARY_CLUSTER_ASK;

    } else {
        return;
    }

    sp = ngx_strlchr(p, last, ' ');
    n = sp ? ngx_atoi(p, sp - p) : NGX_ERROR;

    if (n == NGX_ERROR || n >= NGX_HTTP_CANARY_CLUSTER_SLOTS) {
        e->kind = 0;
        return;
    }

    e->slot = n;

    /* the port after the last ':' (an IPv6 address has colons too) */

    p = sp + 1;

    for (colon = last - 1; colon > p && *colon != ':'; colon--) {
        /* void */
    }

    n = (colon > p) ? ngx_atoi(colon + 1, last - colon - 1) : NGX_ERROR;

    if (n < 1 || n > 65535) {
        e->kind = 0;
        return;
    }

    e->ip.data = p;
    e->ip.len = colon - p;
    e->port = n;
}


/*
 * CLUSTER SLOTS: [[start, end, [ip, port, id, ...], replicas...], ...];
 * the master of the slot: NGX_OK, NGX_DECLINED when no range holds it,
 * NGX_ERROR when the reply is not a map
 */

ngx_int_t
ngx_http_canary_cluster_slots(redisReply *reply, ngx_uint_t slot,
    ngx_str_t *ip, ngx_uint_t *port)
{
    size_t       i;
    redisReply  *r, *m;

    if (reply->type != REDIS_REPLY_ARRAY) {
        return NGX_ERROR;
    }

    for (i = 0; i < reply->elements; i++) {
        r = reply->element[i];

        if (r->type != REDIS_REPLY_ARRAY || r->elements < 3
            || r->element[0]->type != REDIS_REPLY_INTEGER
            || r->element[1]->type != REDIS_REPLY_INTEGER)
        {
            return NGX_ERROR;
        }

        if ((long long) slot < r->element[0]->integer
            || (long long) slot > r->element[1]->integer)
        {
            continue;
        }

        m = r->element[2];

        if (m->type != REDIS_REPLY_ARRAY || m->elements < 2
            || m->element[0]->type != REDIS_REPLY_STRING
            || m->element[1]->type != REDIS_REPLY_INTEGER
            || m->element[1]->integer < 1 || m->element[1]->integer > 65535)
        {
            return NGX_ERROR;
        }

        ip->data = (u_char *) m->element[0]->str;
        ip->len = m->element[0]->len;
        *port = (ngx_uint_t) m->element[1]->integer;

        return NGX_OK;
    }

    return NGX_DECLINED;
}


/* where to: the slot's master, or wait for the map */

static ngx_int_t
ngx_http_canary_cluster_locate(ngx_http_canary_redis_t *rc)
{
    ngx_http_canary_cluster_t  *c;

    c = ngx_http_canary_cluster_get(rc);
    if (c == NULL) {
        ngx_http_canary_redis_fail(rc, 0, "out of memory");
        return NGX_ERROR;
    }

    if (!c->known) {
        rc->wait_master = 1;
        ngx_http_canary_cluster_ask(c);
        return NGX_AGAIN;
    }

    rc->wait_master = 0;
    rc->addr = c->master;
    rc->host.data = c->host;
    rc->host.len = ngx_strlen(c->host);

    return NGX_OK;
}


/* any loss: the map again, now and every half second until all are up */

static void
ngx_http_canary_cluster_lost(ngx_http_canary_redis_t *rc)
{
    ngx_http_canary_cluster_t  *c;

    c = ngx_http_canary_cluster;

    if (c == NULL) {
        return;
    }

    c->known = 0;

    if (!c->refresh.timer_set && !ngx_exiting && !ngx_terminate) {
        ngx_add_timer(&c->refresh, NGX_HTTP_CANARY_CLUSTER_REFRESH);
    }
}


static void
ngx_http_canary_cluster_refresh(ngx_event_t *ev)
{
    ngx_http_canary_cluster_t  *c = ev->data;

    ngx_uint_t  i, down;

    if (ngx_exiting || ngx_terminate) {
        return;
    }

    down = 0;

    for (i = 0; i < c->follow.nclients; i++) {
        if (!c->follow.clients[i]->closed
            && !ngx_http_canary_redis_ready(c->follow.clients[i]))
        {
            down = 1;
        }
    }

    if (!down) {
        return;
    }

    ngx_http_canary_cluster_ask(c);

    ngx_add_timer(&c->refresh, NGX_HTTP_CANARY_CLUSTER_REFRESH);
}


/*
 * An error reply: MOVED for the slot moves every client; ASK (the slot
 * being migrated), TRYAGAIN and CLUSTERDOWN drop the connection, which
 * comes back after a delay, the map asked for meanwhile (see the top)
 */

static ngx_int_t
ngx_http_canary_cluster_refused(ngx_http_canary_redis_t *rc,
    redisReply *reply)
{
    ngx_uint_t                        generation;
    ngx_http_canary_cluster_t        *c;
    ngx_http_canary_cluster_error_t   e;

    ngx_http_canary_cluster_error((u_char *) reply->str, reply->len, &e);

    if (e.kind == 0) {
        return NGX_DECLINED;
    }

    c = ngx_http_canary_cluster_get(rc);
    generation = rc->generation;

    /* moved: this client too was dropped and reconnects */

    if (c && e.kind == NGX_HTTP_CANARY_CLUSTER_MOVED
        && e.slot == rc->conf->slot
        && ngx_http_canary_cluster_set(c, &rc->log, &e.ip, e.port, "MOVED")
           == NGX_OK
        && rc->generation != generation)
    {
        return NGX_OK;
    }

    if (c == NULL) {
        ngx_http_canary_redis_fail(rc, 0, "out of memory");
        return NGX_OK;
    }

    /* ASK, TRYAGAIN, CLUSTERDOWN, a MOVED for another slot: later */

    if (c->retried == 0
        || ngx_current_msec - c->retried > NGX_HTTP_CANARY_CLUSTER_EPISODE)
    {
        ngx_log_error(NGX_LOG_NOTICE, &rc->log, 0,
                      "canary redis: %V answers \"%*s\" for slot %ui, "
                      "routing keeps the last good state; trying again",
                      &rc->addr.name, ngx_min(reply->len, 128), reply->str,
                      rc->conf->slot);

        c->delay = NGX_HTTP_CANARY_CLUSTER_RETRY_MIN;
    }

    c->retried = ngx_current_msec ? ngx_current_msec : 1;

    ngx_http_canary_redis_drop(rc);

    if (!rc->closed && !ngx_exiting && !ngx_terminate) {
        ngx_add_timer(&rc->reconnect, c->delay);
        c->delay = ngx_min(c->delay * 2, NGX_HTTP_CANARY_CLUSTER_RETRY_MAX);
    }

    ngx_http_canary_cluster_ask(c);

    return NGX_OK;
}


/* the process's cluster state, made by the first client that needs it */

static ngx_http_canary_cluster_t *
ngx_http_canary_cluster_get(ngx_http_canary_redis_t *rc)
{
    ngx_cycle_t                *cycle;
    ngx_http_canary_cluster_t  *c;

    c = ngx_http_canary_cluster;

    if (c == NULL) {
        cycle = (ngx_cycle_t *) ngx_cycle;

        c = ngx_pcalloc(cycle->pool, sizeof(ngx_http_canary_cluster_t));
        if (c == NULL) {
            return NULL;
        }

        /* the seeds, in turn, with the same TLS and credentials */

        c->askconf = *rc->conf;
        c->askconf.locator = NULL;

        c->ask = ngx_http_canary_redis_create(cycle, &c->askconf,
                                              "cluster map");
        if (c->ask == NULL) {
            return NULL;
        }

        /* not quiet: a seed that does not answer is logged, once a try */

        c->ask->on_ready = ngx_http_canary_cluster_ready;
        c->ask->data = c;

        c->refresh.handler = ngx_http_canary_cluster_refresh;
        c->refresh.data = c;
        c->refresh.log = &c->ask->log;
        c->refresh.cancelable = 1;

        ngx_http_canary_cluster = c;
    }

    if (ngx_http_canary_redis_follow_join(&c->follow, rc) != NGX_OK) {
        return NULL;
    }

    return c;
}


/* a client closed for good; the last one closes the seeds' connection */

static void
ngx_http_canary_cluster_leave(ngx_http_canary_redis_t *rc)
{
    ngx_http_canary_cluster_t  *c;

    c = ngx_http_canary_cluster;

    if (c == NULL) {
        return;
    }

    if (ngx_http_canary_redis_follow_leave(&c->follow, rc) == 0) {
        ngx_http_canary_cluster = NULL;

        if (c->refresh.timer_set) {
            ngx_del_timer(&c->refresh);
        }

        ngx_http_canary_redis_close(c->ask);
    }
}


/* asks a seed for the map, unless a question is out or on its way */

static void
ngx_http_canary_cluster_ask(ngx_http_canary_cluster_t *c)
{
    if (c->asking) {
        return;
    }

    if (c->ask->state == NGX_HTTP_CANARY_REDIS_CLOSED
        && !c->ask->reconnect.timer_set)
    {
        ngx_http_canary_redis_connect(c->ask);
    }
}


static void
ngx_http_canary_cluster_ready(ngx_http_canary_redis_t *rc)
{
    ngx_http_canary_cluster_t  *c = rc->data;

    size_t       argvlen[2];
    const char  *argv[2];

    if (ngx_exiting || ngx_terminate) {
        return;
    }

    argv[0] = "CLUSTER";
    argvlen[0] = sizeof("CLUSTER") - 1;
    argv[1] = "SLOTS";
    argvlen[1] = sizeof("SLOTS") - 1;

    if (ngx_http_canary_redis_send(rc, 2, argv, argvlen,
                                   ngx_http_canary_cluster_map, c)
        == NGX_OK)
    {
        c->asking = 1;
    }
}


static void
ngx_http_canary_cluster_map(ngx_http_canary_redis_t *rc, redisReply *reply,
    void *data)
{
    ngx_http_canary_cluster_t  *c = data;

    ngx_int_t   n;
    ngx_str_t   ip;
    ngx_uint_t  port;

    c->asking = 0;

    if (reply == NULL) {
        /* the connection failed: it tries the next seed by itself */
        return;
    }

    n = ngx_http_canary_cluster_slots(reply, rc->conf->slot, &ip, &port);

    if (n != NGX_OK) {
        if (!rc->down) {
            if (reply->type == REDIS_REPLY_ERROR) {
                ngx_log_error(NGX_LOG_ERR, &rc->log, 0,
                              "canary redis: cluster seed %V refused "
                              "CLUSTER SLOTS: %*s", &rc->addr.name,
                              reply->len, reply->str);

            } else {
                ngx_log_error(NGX_LOG_ERR, &rc->log, 0,
                              "canary redis: cluster seed %V %s slot %ui",
                              &rc->addr.name,
                              n == NGX_DECLINED ? "knows no master for"
                                                : "sent an invalid map for",
                              rc->conf->slot);
            }
        }

        rc->down = 1;
        ngx_http_canary_redis_fail(rc, 0, "no master for the slot");
        return;
    }

    /* "" is the address the seed was asked at */

    if (ip.len == 0) {
        ip = rc->host;
    }

    if (ngx_http_canary_cluster_set(c, &rc->log, &ip, port, "CLUSTER SLOTS")
        == NGX_ERROR)
    {
        if (!rc->down) {
            ngx_log_error(NGX_LOG_ERR, &rc->log, 0,
                          "canary redis: cluster seed %V names an invalid "
                          "address \"%V\" for slot %ui", &rc->addr.name,
                          &ip, rc->conf->slot);
        }

        rc->down = 1;
        ngx_http_canary_redis_fail(rc, 0, "invalid master address");
        return;
    }

    /* answered: closed until the map is needed again */

    ngx_http_canary_redis_drop(rc);

    rc->down = 0;
    rc->tries = 0;
    rc->backoff = NGX_HTTP_CANARY_REDIS_BACKOFF_MIN;
}


/*
 * The slot's master is at ip:port: the clients waiting for it connect;
 * when it moved, every client reconnects at once, without backoff.
 * NGX_ERROR: not an address.
 */

static ngx_int_t
ngx_http_canary_cluster_set(ngx_http_canary_cluster_t *c, ngx_log_t *log,
    ngx_str_t *ip, ngx_uint_t port, const char *why)
{
    size_t                    n;
    ngx_int_t                 rv;
    ngx_uint_t                moved;
    ngx_addr_t                addr;
    ngx_pool_t               *pool;
    u_char                    name[NGX_SOCKADDR_STRLEN];

    if (ip->len == 0 || ip->len >= NGX_SOCKADDR_STRLEN) {
        return NGX_ERROR;
    }

    pool = ngx_create_pool(NGX_MIN_POOL_SIZE, log);
    if (pool == NULL) {
        return NGX_ERROR;
    }

    rv = ngx_parse_addr(pool, &addr, ip->data, ip->len);

    if (rv != NGX_OK || addr.socklen > sizeof(ngx_sockaddr_t)) {
        ngx_destroy_pool(pool);
        return NGX_ERROR;
    }

    ngx_inet_set_port(addr.sockaddr, (in_port_t) port);
    ngx_memcpy(&c->sockaddr, addr.sockaddr, addr.socklen);

    ngx_destroy_pool(pool);

    n = ngx_sock_ntop(&c->sockaddr.sockaddr, addr.socklen, name,
                      NGX_SOCKADDR_STRLEN, 1);

    moved = c->master.name.len != n
            || ngx_strncmp(c->master.name.data, name, n) != 0;

    if (moved) {
        if (c->master.name.len) {
            ngx_log_error(NGX_LOG_NOTICE, log, 0,
                          "canary redis: cluster slot %ui moved from %V to "
                          "%*s (%s)", c->ask->conf->slot, &c->master.name,
                          n, name, why);

        } else {
            ngx_log_error(NGX_LOG_NOTICE, log, 0,
                          "canary redis: cluster slot %ui is on %*s",
                          c->ask->conf->slot, n, name);
        }

        ngx_memcpy(c->name, name, n);
        (void) ngx_cpystrn(c->host, ip->data, ip->len + 1);

        c->retried = 0;

        c->master.sockaddr = &c->sockaddr.sockaddr;
        c->master.socklen = addr.socklen;
        c->master.name.data = c->name;
        c->master.name.len = n;
    }

    c->known = 1;

    ngx_http_canary_redis_follow_move(&c->follow, moved);

    return NGX_OK;
}
