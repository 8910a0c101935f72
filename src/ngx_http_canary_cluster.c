
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * Redis Cluster for the client of ngx_http_canary_redis.c, through
 * conf->locator (see ngx_http_canary_cluster.h): the master of the one
 * slot of the module's keys, asked of the seeds (CLUSTER SHARDS, or
 * CLUSTER SLOTS once a seed refused SHARDS, as Redis 6 does) over a
 * connection of its own that tries them in turn and closes once
 * answered, and followed: MOVED names the new master (every client of
 * the process moves at once, the subscribed one with the others, so that
 * keyspace notifications keep coming from the node that owns the keys);
 * a lost connection has the map asked for again, and the map is asked
 * for every half second while a client is not connected (a master
 * killed: the replica promoted is found within that time of its
 * promotion, whatever the client's backoff).
 *
 * ASK: the slot is being migrated, the module's keys split between two
 * nodes, and the key of this command is on the importing one.  The
 * command (its bytes, which the client keeps in a cluster) is sent there
 * over a connection of the process's own to that node, ASKING pipelined
 * right before it; its reply goes to the command's handler, and the
 * replies of the commands sent after it on the master's connection are
 * held until then (ngx_http_canary_redis_queue.h), so every handler
 * still sees replies in the order the commands were sent.  One line per
 * migration.
 *
 * TRYAGAIN (a command of several keys split between the nodes: Redis
 * answers it so even with ASKING), CLUSTERDOWN (no quorum), and a
 * command sent after ASK that fails on the importing node: the client
 * drops its connection (the commands waiting are answered with NULL, as
 * after any loss, and the caller tries again in its next round),
 * reconnects to the same master after a growing delay, and asks for the
 * map meanwhile: SETSLOT NODE at the end of the migration shows in the
 * map (or as MOVED), and every client moves.  One line per episode, not
 * per try.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>

#include "ngx_http_canary_redis.h"
#include "ngx_http_canary_cluster.h"
#include "ngx_http_canary_redis_follow.h"
#include "ngx_http_canary_redis_queue.h"


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

    /* the node an "-ASK" names, and the connection to it */
    ngx_http_canary_redis_t          *redirect;
    ngx_http_canary_redis_conf_t      rdconf;
    ngx_addr_t                        rdaddr;
    ngx_str_t                         rdhost;
    ngx_sockaddr_t                    rdsockaddr;
    u_char                            rdname[NGX_SOCKADDR_STRLEN];
    u_char                            rdhostname[NGX_SOCKADDR_STRLEN];
    ngx_msec_t                        followed;  /* last ASK, or 0 */

    const char                       *mapcmd;    /* SHARDS, or SLOTS */

    unsigned                          known:1;
    unsigned                          asking:1;
    unsigned                          slots:1;   /* SHARDS refused */
} ngx_http_canary_cluster_t;


/* a command sent again to the node an "-ASK" named */
typedef struct {
    ngx_http_canary_redis_t          *rc;
    ngx_uint_t                        id;
    ngx_uint_t                        generation;
} ngx_http_canary_cluster_asked_t;


static ngx_int_t ngx_http_canary_cluster_locate(ngx_http_canary_redis_t *rc);
static void ngx_http_canary_cluster_lost(ngx_http_canary_redis_t *rc);
static void ngx_http_canary_cluster_leave(ngx_http_canary_redis_t *rc);
static ngx_int_t ngx_http_canary_cluster_refused(ngx_http_canary_redis_t *rc,
    redisReply *reply);
static ngx_int_t ngx_http_canary_cluster_node(redisReply *node,
    ngx_uint_t tls, ngx_str_t *ip, ngx_uint_t *port);
static redisReply *ngx_http_canary_cluster_field(redisReply *r,
    const char *name);
static ngx_http_canary_cluster_t *ngx_http_canary_cluster_get(
    ngx_http_canary_redis_t *rc);
static void ngx_http_canary_cluster_ask(ngx_http_canary_cluster_t *c);
static void ngx_http_canary_cluster_refresh(ngx_event_t *ev);
static void ngx_http_canary_cluster_ready(ngx_http_canary_redis_t *rc);
static void ngx_http_canary_cluster_map(ngx_http_canary_redis_t *rc,
    redisReply *reply, void *data);
static ngx_int_t ngx_http_canary_cluster_set(ngx_http_canary_cluster_t *c,
    ngx_log_t *log, ngx_str_t *ip, ngx_uint_t port, const char *why);
static ngx_int_t ngx_http_canary_cluster_addr(ngx_log_t *log, ngx_str_t *ip,
    ngx_uint_t port, ngx_sockaddr_t *sa, socklen_t *socklen, u_char *name,
    size_t *len);
static void ngx_http_canary_cluster_retry(ngx_http_canary_cluster_t *c,
    ngx_http_canary_redis_t *rc, u_char *why, size_t len);
static ngx_int_t ngx_http_canary_cluster_follow(ngx_http_canary_cluster_t *c,
    ngx_http_canary_redis_t *rc, ngx_http_canary_cluster_error_t *e);
static ngx_http_canary_redis_t *ngx_http_canary_cluster_redirect(
    ngx_http_canary_cluster_t *c, ngx_http_canary_redis_t *rc,
    ngx_http_canary_cluster_error_t *e);
static void ngx_http_canary_cluster_asked(ngx_http_canary_redis_t *rd,
    redisReply *reply, void *data);
static void ngx_http_canary_cluster_asking(ngx_http_canary_redis_t *rd,
    redisReply *reply, void *data);


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


/*
 * CLUSTER SHARDS (Redis 7): [shard, ...], each shard a map (RESP2: a flat
 * array of names and values) of "slots" [start, end, start, end, ...]
 * and "nodes" [node, ...], each node a map of "ip", "port", "tls-port",
 * "role", "health", ...  The master of the slot whose health is
 * "online"; its "tls-port" over TLS when it has one, else its "port".
 * NGX_OK, NGX_DECLINED when no shard holds the slot or its master is not
 * online, NGX_ERROR when the reply is not a map.
 */

ngx_int_t
ngx_http_canary_cluster_shards(redisReply *reply, ngx_uint_t slot,
    ngx_uint_t tls, ngx_str_t *ip, ngx_uint_t *port)
{
    size_t       i, j;
    ngx_int_t    rv;
    redisReply  *r, *slots, *nodes;

    if (reply->type != REDIS_REPLY_ARRAY) {
        return NGX_ERROR;
    }

    for (i = 0; i < reply->elements; i++) {
        r = reply->element[i];

        slots = ngx_http_canary_cluster_field(r, "slots");
        nodes = ngx_http_canary_cluster_field(r, "nodes");

        if (slots == NULL || nodes == NULL
            || slots->type != REDIS_REPLY_ARRAY || slots->elements % 2
            || nodes->type != REDIS_REPLY_ARRAY)
        {
            return NGX_ERROR;
        }

        for (j = 0; j < slots->elements; j += 2) {
            if (slots->element[j]->type != REDIS_REPLY_INTEGER
                || slots->element[j + 1]->type != REDIS_REPLY_INTEGER)
            {
                return NGX_ERROR;
            }

            if ((long long) slot >= slots->element[j]->integer
                && (long long) slot <= slots->element[j + 1]->integer)
            {
                break;
            }
        }

        if (j == slots->elements) {
            continue;
        }

        for (j = 0; j < nodes->elements; j++) {
            rv = ngx_http_canary_cluster_node(nodes->element[j], tls, ip,
                                              port);
            if (rv != NGX_DECLINED) {
                return rv;
            }
        }

        return NGX_DECLINED;
    }

    return NGX_DECLINED;
}


/* a node of CLUSTER SHARDS: NGX_OK for the master online */

static ngx_int_t
ngx_http_canary_cluster_node(redisReply *node, ngx_uint_t tls, ngx_str_t *ip,
    ngx_uint_t *port)
{
    redisReply  *role, *health, *addr, *p, *tp;

    role = ngx_http_canary_cluster_field(node, "role");
    health = ngx_http_canary_cluster_field(node, "health");
    addr = ngx_http_canary_cluster_field(node, "ip");
    p = ngx_http_canary_cluster_field(node, "port");
    tp = ngx_http_canary_cluster_field(node, "tls-port");

    if (role == NULL || role->type != REDIS_REPLY_STRING
        || role->len != 6 || ngx_strncmp(role->str, "master", 6) != 0)
    {
        return NGX_DECLINED;
    }

    if (health == NULL || health->type != REDIS_REPLY_STRING
        || health->len != 6 || ngx_strncmp(health->str, "online", 6) != 0)
    {
        return NGX_DECLINED;
    }

    if (tp && (tp->type != REDIS_REPLY_INTEGER || tp->integer == 0)) {
        tp = NULL;
    }

    if (p && (p->type != REDIS_REPLY_INTEGER || p->integer == 0)) {
        p = NULL;
    }

    p = (tls && tp) ? tp : (p ? p : tp);

    if (addr == NULL || addr->type != REDIS_REPLY_STRING || p == NULL
        || p->integer < 1 || p->integer > 65535)
    {
        return NGX_ERROR;
    }

    ip->data = (u_char *) addr->str;
    ip->len = addr->len;
    *port = (ngx_uint_t) p->integer;

    return NGX_OK;
}


/* the value of a name in a map, or in an array of names and values */

static redisReply *
ngx_http_canary_cluster_field(redisReply *r, const char *name)
{
    size_t       i, len;
    redisReply  *k;

    if ((r->type != REDIS_REPLY_ARRAY
#ifdef REDIS_REPLY_MAP
         && r->type != REDIS_REPLY_MAP
#endif
        ) || r->elements % 2)
    {
        return NULL;
    }

    len = ngx_strlen(name);

    for (i = 0; i < r->elements; i += 2) {
        k = r->element[i];

        if ((k->type == REDIS_REPLY_STRING || k->type == REDIS_REPLY_STATUS)
            && k->len == len && ngx_strncmp(k->str, name, len) == 0)
        {
            return r->element[i + 1];
        }
    }

    return NULL;
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
 * An error reply: MOVED for the slot moves every client; ASK for the slot
 * sends the command to the node it names, with ASKING (see the top);
 * TRYAGAIN, CLUSTERDOWN, and an ASK that cannot be followed drop the
 * connection, which comes back after a delay, the map asked for meanwhile
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

    if (c == NULL) {
        ngx_http_canary_redis_fail(rc, 0, "out of memory");
        return NGX_OK;
    }

    /*
     * moved: this client too was dropped and reconnects; its commands
     * waiting, refused by a node that does not own the slot, are answered
     * NULL with rc->moved counted first (a caller may send them again)
     */

    if (e.kind == NGX_HTTP_CANARY_CLUSTER_MOVED
        && e.slot == rc->conf->slot)
    {
        rc->moved++;

        if (ngx_http_canary_cluster_set(c, &rc->log, &e.ip, e.port, "MOVED")
            == NGX_OK
            && rc->generation != generation)
        {
            return NGX_OK;
        }
    }

    if (e.kind == NGX_HTTP_CANARY_CLUSTER_ASK
        && e.slot == rc->conf->slot
        && (ngx_http_canary_cluster_follow(c, rc, &e) == NGX_OK
            || rc->generation != generation))
    {
        return NGX_OK;
    }

    /* TRYAGAIN, CLUSTERDOWN, a MOVED for another slot: later */

    ngx_http_canary_cluster_retry(c, rc, (u_char *) reply->str, reply->len);

    return NGX_OK;
}


/* the connection dropped, and back on the same master after a delay */

static void
ngx_http_canary_cluster_retry(ngx_http_canary_cluster_t *c,
    ngx_http_canary_redis_t *rc, u_char *why, size_t len)
{
    if (c->retried == 0
        || ngx_current_msec - c->retried > NGX_HTTP_CANARY_CLUSTER_EPISODE)
    {
        ngx_log_error(NGX_LOG_NOTICE, &rc->log, 0,
                      "canary redis: %V answers \"%*s\" for slot %ui, "
                      "routing keeps the last good state; trying again",
                      &rc->addr.name, ngx_min(len, 128), why,
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
}


/*
 * "-ASK <slot> <ip:port>": the command again on that node, ASKING right
 * before it; its reply comes back to the command's handler in order, the
 * replies after it held meanwhile (ngx_http_canary_redis_queue.h).
 * NGX_DECLINED: not followed (no bytes kept, no connection).
 */

static ngx_int_t
ngx_http_canary_cluster_follow(ngx_http_canary_cluster_t *c,
    ngx_http_canary_redis_t *rc, ngx_http_canary_cluster_error_t *e)
{
    ngx_uint_t                        generation;
    ngx_http_canary_redis_t          *rd;
    ngx_http_canary_redis_cmd_t      *cmd;
    ngx_http_canary_cluster_asked_t  *a;

    static u_char  asking[] = "*1\r\n$6\r\nASKING\r\n";

    generation = rc->generation;

    rd = ngx_http_canary_cluster_redirect(c, rc, e);

    if (rc->generation != generation) {
        /* what it had sent to another node failed: dropped, retried */
        return NGX_OK;
    }

    cmd = ngx_http_canary_redis_next(rc);

    if (rd == NULL || cmd == NULL || cmd->cmd == NULL) {
        return NGX_DECLINED;
    }

    a = ngx_alloc(sizeof(ngx_http_canary_cluster_asked_t), &rc->log);
    if (a == NULL) {
        return NGX_DECLINED;
    }

    a->rc = rc;
    a->id = cmd->id;
    a->generation = rc->generation;

    if (ngx_http_canary_redis_send_bytes(rd, asking, sizeof(asking) - 1,
                                         ngx_http_canary_cluster_asking, NULL)
        != NGX_OK
        || ngx_http_canary_redis_send_bytes(rd, cmd->cmd, cmd->len,
                                            ngx_http_canary_cluster_asked, a)
           != NGX_OK)
    {
        ngx_free(a);
        return NGX_DECLINED;
    }

    ngx_http_canary_redis_asked(rc);

    if (c->followed == 0
        || ngx_current_msec - c->followed > NGX_HTTP_CANARY_CLUSTER_EPISODE)
    {
        ngx_log_error(NGX_LOG_NOTICE, &rc->log, 0,
                      "canary redis: slot %ui is being migrated from %V to "
                      "%V, ASK followed: the commands it names are sent "
                      "there with ASKING", rc->conf->slot, &rc->addr.name,
                      &c->rdaddr.name);
    }

    c->followed = ngx_current_msec ? ngx_current_msec : 1;

    return NGX_OK;
}


/* the connection to the node an ASK names, connecting; NULL: none */

static ngx_http_canary_redis_t *
ngx_http_canary_cluster_redirect(ngx_http_canary_cluster_t *c,
    ngx_http_canary_redis_t *rc, ngx_http_canary_cluster_error_t *e)
{
    size_t          n;
    socklen_t       socklen;
    ngx_sockaddr_t  sa;
    u_char          name[NGX_SOCKADDR_STRLEN];

    if (ngx_http_canary_cluster_addr(&rc->log, &e->ip, e->port, &sa,
                                     &socklen, name, &n)
        != NGX_OK)
    {
        return NULL;
    }

    if (c->redirect == NULL) {
        c->rdconf = *rc->conf;
        c->rdconf.locator = NULL;
        c->rdconf.addrs = &c->rdaddr;
        c->rdconf.hosts = &c->rdhost;
        c->rdconf.naddrs = 1;

        c->redirect = ngx_http_canary_redis_create((ngx_cycle_t *) ngx_cycle,
                                                   &c->rdconf, "cluster ASK");
        if (c->redirect == NULL) {
            return NULL;
        }
    }

    /* another node: the commands sent to the last one fail (retried) */

    if (c->rdaddr.name.len != n
        || ngx_strncmp(c->rdaddr.name.data, name, n) != 0)
    {
        ngx_http_canary_redis_drop(c->redirect);

        ngx_memcpy(&c->rdsockaddr, &sa, socklen);
        ngx_memcpy(c->rdname, name, n);
        (void) ngx_cpystrn(c->rdhostname, e->ip.data, e->ip.len + 1);

        c->rdaddr.sockaddr = &c->rdsockaddr.sockaddr;
        c->rdaddr.socklen = socklen;
        c->rdaddr.name.data = c->rdname;
        c->rdaddr.name.len = n;
        c->rdhost.data = c->rdhostname;
        c->rdhost.len = e->ip.len;
    }

    if (c->redirect->state == NGX_HTTP_CANARY_REDIS_CLOSED) {
        ngx_http_canary_redis_connect(c->redirect);

        if (c->redirect->state == NGX_HTTP_CANARY_REDIS_CLOSED) {
            return NULL;
        }
    }

    return c->redirect;
}


/* ASKING: its error, if any, shows in the command's reply after it */

static void
ngx_http_canary_cluster_asking(ngx_http_canary_redis_t *rd,
    redisReply *reply, void *data)
{
    /* void */
}


/* the reply of a command sent after ASK: to its handler, in order */

static void
ngx_http_canary_cluster_asked(ngx_http_canary_redis_t *rd, redisReply *reply,
    void *data)
{
    ngx_http_canary_cluster_asked_t  *a = data;

    ngx_http_canary_redis_t          *rc;
    ngx_http_canary_cluster_t        *c;
    ngx_http_canary_cluster_error_t   e;

    static u_char  noreply[] = "no reply from the node ASK named";

    rc = a->rc;
    c = ngx_http_canary_cluster;

    e.kind = 0;

    if (reply && reply->type == REDIS_REPLY_ERROR) {
        ngx_http_canary_cluster_error((u_char *) reply->str, reply->len, &e);
    }

    /* TRYAGAIN (keys split between the nodes), or no reply: retried */

    if (reply && e.kind == 0
        && ngx_http_canary_redis_answer(rc, a->id, a->generation, reply)
           == NGX_OK)
    {
        ngx_free(a);
        return;
    }

    if (c && rc->generation == a->generation) {
        if (reply) {
            ngx_http_canary_cluster_retry(c, rc, (u_char *) reply->str,
                                          reply->len);

        } else {
            ngx_http_canary_cluster_retry(c, rc, noreply,
                                          sizeof(noreply) - 1);
        }
    }

    ngx_free(a);
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

        if (c->redirect) {
            ngx_http_canary_redis_close(c->redirect);
        }
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

    /* CLUSTER SHARDS (Redis 7), or CLUSTER SLOTS once it was refused */

    argv[0] = "CLUSTER";
    argvlen[0] = sizeof("CLUSTER") - 1;
    argv[1] = c->slots ? "SLOTS" : "SHARDS";
    argvlen[1] = ngx_strlen(argv[1]);

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

    if (reply->type == REDIS_REPLY_ERROR && !c->slots) {
        ngx_log_error(NGX_LOG_INFO, &rc->log, 0,
                      "canary redis: cluster seed %V refused CLUSTER SHARDS "
                      "(%*s), using CLUSTER SLOTS", &rc->addr.name,
                      ngx_min(reply->len, 128), reply->str);

        c->slots = 1;
        ngx_http_canary_cluster_ready(rc);
        return;
    }

    if (c->slots) {
        n = ngx_http_canary_cluster_slots(reply, rc->conf->slot, &ip, &port);

    } else {
        n = ngx_http_canary_cluster_shards(reply, rc->conf->slot,
                                           rc->conf->tls, &ip, &port);
    }

    if (n != NGX_OK) {
        if (!rc->down) {
            if (reply->type == REDIS_REPLY_ERROR) {
                ngx_log_error(NGX_LOG_ERR, &rc->log, 0,
                              "canary redis: cluster seed %V refused "
                              "CLUSTER SLOTS: %*s", &rc->addr.name,
                              ngx_min(reply->len, 128), reply->str);

            } else {
                ngx_log_error(NGX_LOG_ERR, &rc->log, 0,
                              "canary redis: cluster seed %V %s slot %ui "
                              "(CLUSTER %s)", &rc->addr.name,
                              n == NGX_DECLINED ? "knows no master for"
                                                : "sent an invalid map for",
                              rc->conf->slot, c->slots ? "SLOTS" : "SHARDS");
            }
        }

        rc->down = 1;

        if (n == NGX_ERROR) {
            ngx_http_canary_redis_fail(rc, 0, "no master for the slot");
            return;
        }

        /*
         * no master online yet (failed, its replica not yet promoted):
         * asked again in half a second, not after a growing backoff
         */

        ngx_http_canary_redis_drop(rc);
        rc->backoff = NGX_HTTP_CANARY_REDIS_BACKOFF_MIN;

        if (!c->refresh.timer_set && !ngx_exiting && !ngx_terminate) {
            ngx_add_timer(&c->refresh, NGX_HTTP_CANARY_CLUSTER_REFRESH);
        }

        return;
    }

    /* "" is the address the seed was asked at */

    if (ip.len == 0) {
        ip = rc->host;
    }

    if (ngx_http_canary_cluster_set(c, &rc->log, &ip, port,
                                    c->slots ? "CLUSTER SLOTS"
                                             : "CLUSTER SHARDS")
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
    size_t      n;
    socklen_t   socklen;
    ngx_uint_t  moved;
    u_char      name[NGX_SOCKADDR_STRLEN];

    if (ngx_http_canary_cluster_addr(log, ip, port, &c->sockaddr, &socklen,
                                     name, &n)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

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
                          "canary redis: cluster slot %ui is on %*s (%s)",
                          c->ask->conf->slot, n, name, why);
        }

        ngx_memcpy(c->name, name, n);
        (void) ngx_cpystrn(c->host, ip->data, ip->len + 1);

        c->retried = 0;
        c->followed = 0;

        c->master.sockaddr = &c->sockaddr.sockaddr;
        c->master.socklen = socklen;
        c->master.name.data = c->name;
        c->master.name.len = n;
    }

    c->known = 1;

    ngx_http_canary_redis_follow_move(&c->follow, moved);

    /*
     * a migration over: no more ASK to the node it went to (the clients,
     * moved first, no longer wait for what was sent there)
     */

    if (moved && c->redirect) {
        ngx_http_canary_redis_drop(c->redirect);

        if (c->redirect->reconnect.timer_set) {
            ngx_del_timer(&c->redirect->reconnect);
        }
    }

    return NGX_OK;
}


/* ip and port to a socket address and its "ip:port" text; NGX_ERROR */

static ngx_int_t
ngx_http_canary_cluster_addr(ngx_log_t *log, ngx_str_t *ip, ngx_uint_t port,
    ngx_sockaddr_t *sa, socklen_t *socklen, u_char *name, size_t *len)
{
    ngx_int_t    rv;
    ngx_addr_t   addr;
    ngx_pool_t  *pool;

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
    ngx_memcpy(sa, addr.sockaddr, addr.socklen);
    *socklen = addr.socklen;

    ngx_destroy_pool(pool);

    *len = ngx_sock_ntop(&sa->sockaddr, *socklen, name, NGX_SOCKADDR_STRLEN,
                         1);

    return NGX_OK;
}
