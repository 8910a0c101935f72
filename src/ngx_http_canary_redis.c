
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * A non-blocking Redis client on nginx's event loop; the API is described
 * in ngx_http_canary_redis.h.
 *
 * States: CLOSED (waiting for the reconnect timer, or closed for good),
 * CONNECTING (connect() in progress; commands already queue), HELLO
 * (connected, AUTH/SELECT replies outstanding), READY.  Any error goes
 * through ngx_http_canary_redis_fail(): close, answer the waiting
 * handlers with NULL, arm the reconnect timer.  A TLS connection runs
 * its handshake between CONNECTING and HELLO.  A client of a master
 * behind Sentinel stays CLOSED, wait_master set, until the sentinels
 * have named the master.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>
#include <ngx_http.h>

#include "ngx_http_canary_redis.h"


#define NGX_HTTP_CANARY_REDIS_CLOSED       0
#define NGX_HTTP_CANARY_REDIS_CONNECTING   1
#define NGX_HTTP_CANARY_REDIS_HELLO        2
#define NGX_HTTP_CANARY_REDIS_READY        3

#define NGX_HTTP_CANARY_REDIS_BACKOFF_MIN  100
#define NGX_HTTP_CANARY_REDIS_BACKOFF_MAX  5000

#define NGX_HTTP_CANARY_REDIS_RECV         16384

/* reads per event-loop turn; then the rest waits for the next turn */
#define NGX_HTTP_CANARY_REDIS_TURN         16

/* connections of one process that follow one master through Sentinel */
#define NGX_HTTP_CANARY_SENTINEL_CLIENTS   8

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
    ngx_http_canary_redis_t          *clients[NGX_HTTP_CANARY_SENTINEL_CLIENTS];
    ngx_uint_t                        nclients;

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


static void ngx_http_canary_redis_reconnect_handler(ngx_event_t *ev);
static void ngx_http_canary_redis_write_handler(ngx_event_t *wev);
static void ngx_http_canary_redis_read_handler(ngx_event_t *rev);
static ngx_int_t ngx_http_canary_redis_test_connect(ngx_connection_t *c);
static ngx_int_t ngx_http_canary_redis_flush(ngx_http_canary_redis_t *rc);
static ngx_int_t ngx_http_canary_redis_dispatch(ngx_http_canary_redis_t *rc,
    redisReply *reply);
static void ngx_http_canary_redis_hello_handler(ngx_http_canary_redis_t *rc,
    redisReply *reply, void *data);
static void ngx_http_canary_redis_fail(ngx_http_canary_redis_t *rc,
    ngx_err_t err, const char *why);
static void ngx_http_canary_redis_drop(ngx_http_canary_redis_t *rc);
static ngx_int_t ngx_http_canary_redis_queue(ngx_http_canary_redis_t *rc,
    ngx_http_canary_redis_handler_pt handler, void *data);
static ngx_int_t ngx_http_canary_redis_append(ngx_http_canary_redis_t *rc,
    int argc, const char **argv, const size_t *argvlen);
static ngx_int_t ngx_http_canary_redis_hello(ngx_http_canary_redis_t *rc,
    int argc, const char **argv, const size_t *argvlen, char *what);
static void ngx_http_canary_redis_connected(ngx_http_canary_redis_t *rc);
static void ngx_http_canary_redis_log_writer(ngx_log_t *log,
    ngx_uint_t level, u_char *buf, size_t len);
#if (NGX_SSL)
static void ngx_http_canary_redis_tls_start(ngx_http_canary_redis_t *rc);
static void ngx_http_canary_redis_tls_done(ngx_connection_t *c);
static ngx_int_t ngx_http_canary_redis_tls_conf(ngx_conf_t *cf,
    ngx_http_canary_redis_conf_t *rcf, ngx_str_t *ca, ngx_str_t *cert,
    ngx_str_t *key);
#endif
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
static char *ngx_http_canary_redis_addrs(ngx_conf_t *cf,
    ngx_http_canary_redis_conf_t *rcf, ngx_str_t *list, in_port_t port);


static ngx_http_canary_sentinel_t  *ngx_http_canary_sentinel;


ngx_http_canary_redis_t *
ngx_http_canary_redis_create(ngx_cycle_t *cycle,
    ngx_http_canary_redis_conf_t *conf, const char *label)
{
    ngx_http_canary_redis_t  *rc;

    rc = ngx_pcalloc(cycle->pool, sizeof(ngx_http_canary_redis_t));
    if (rc == NULL) {
        return NULL;
    }

    rc->conf = conf;
    rc->label = label;
    rc->log = *cycle->log;
    rc->conn_log = *cycle->log;

    /*
     * The socket and TLS layers log every failed connect(), recv() or
     * handshake; the outage is logged once by this client instead, with
     * the last of their lines as its reason.  So their lines go to the
     * writer below, which keeps the last one and passes on only "alert"
     * and worse, unless debugging.
     */

    if (rc->conn_log.log_level < NGX_LOG_DEBUG) {
        rc->conn_log.log_level = NGX_LOG_INFO;
        rc->conn_log.writer = ngx_http_canary_redis_log_writer;
        rc->conn_log.wdata = rc;
        rc->conn_log.next = NULL;
    }

    rc->reconnect.handler = ngx_http_canary_redis_reconnect_handler;
    rc->reconnect.data = rc;
    rc->reconnect.log = &rc->log;
    rc->reconnect.cancelable = 1;

    rc->backoff = NGX_HTTP_CANARY_REDIS_BACKOFF_MIN;

    return rc;
}


ngx_uint_t
ngx_http_canary_redis_ready(ngx_http_canary_redis_t *rc)
{
    return rc->state == NGX_HTTP_CANARY_REDIS_READY;
}


void
ngx_http_canary_redis_connect(ngx_http_canary_redis_t *rc)
{
    int                          argc;
    ngx_int_t                    rc2;
    ngx_uint_t                   i;
    const char                  *argv[3];
    size_t                       argvlen[3];
    u_char                       db[NGX_INT_T_LEN];
    ngx_connection_t            *c;
    ngx_http_canary_sentinel_t  *s;

    if (rc->closed || rc->state != NGX_HTTP_CANARY_REDIS_CLOSED) {
        return;
    }

    if (ngx_exiting || ngx_terminate) {
        ngx_http_canary_redis_close(rc);
        return;
    }

    if (rc->reconnect.timer_set) {
        ngx_del_timer(&rc->reconnect);
    }

    /* where to: the master the sentinels named, or the next address */

    if (rc->conf->sentinel) {
        s = ngx_http_canary_sentinel_get(rc);
        if (s == NULL) {
            ngx_http_canary_redis_fail(rc, 0, "out of memory");
            return;
        }

        if (!s->known) {
            rc->wait_master = 1;
            ngx_http_canary_sentinel_ask(s);
            return;
        }

        rc->wait_master = 0;
        rc->addr = s->master;
        rc->host.data = s->host;
        rc->host.len = ngx_strlen(s->host);

    } else {
        i = rc->next++ % rc->conf->naddrs;
        rc->addr = rc->conf->addrs[i];
        rc->host = rc->conf->hosts[i];
    }

    rc->reason_len = 0;
    rc->tls = 0;

    if (rc->reader) {
        redisReaderFree(rc->reader);
    }

    rc->reader = redisReaderCreate();
    if (rc->reader == NULL) {
        ngx_http_canary_redis_fail(rc, 0, "out of memory");
        return;
    }

    rc->out_pos = 0;
    rc->out_len = 0;
    rc->generation++;

    ngx_memzero(&rc->peer, sizeof(ngx_peer_connection_t));

    rc->peer.sockaddr = rc->addr.sockaddr;
    rc->peer.socklen = rc->addr.socklen;
    rc->peer.name = &rc->addr.name;
    rc->peer.get = ngx_event_get_peer;
    rc->peer.log = &rc->conn_log;
    rc->peer.log_error = NGX_ERROR_ERR;

    rc->state = NGX_HTTP_CANARY_REDIS_CONNECTING;

    /*
     * AUTH [user] password, SELECT, and ROLE behind Sentinel go first;
     * user commands may queue behind them
     */

    if (rc->conf->password.len) {
        argc = 0;
        argv[argc] = "AUTH";
        argvlen[argc++] = 4;

        if (rc->conf->user.len) {
            argv[argc] = (const char *) rc->conf->user.data;
            argvlen[argc++] = rc->conf->user.len;
        }

        argv[argc] = (const char *) rc->conf->password.data;
        argvlen[argc++] = rc->conf->password.len;

        if (ngx_http_canary_redis_hello(rc, argc, argv, argvlen, "AUTH")
            != NGX_OK)
        {
            return;
        }
    }

    if (rc->conf->db) {
        argv[0] = "SELECT";
        argvlen[0] = 6;
        argv[1] = (const char *) db;
        argvlen[1] = ngx_sprintf(db, "%ui", rc->conf->db) - db;

        if (ngx_http_canary_redis_hello(rc, 2, argv, argvlen, "SELECT")
            != NGX_OK)
        {
            return;
        }
    }

    if (rc->conf->sentinel) {
        argv[0] = "ROLE";
        argvlen[0] = 4;

        if (ngx_http_canary_redis_hello(rc, 1, argv, argvlen, "ROLE")
            != NGX_OK)
        {
            return;
        }
    }

#if (NGX_SSL)

    /* ngx_ssl_create_connection() allocates from the connection's pool */

    if (rc->conf->tls && rc->pool == NULL) {
        rc->pool = ngx_create_pool(1024, &rc->conn_log);
        if (rc->pool == NULL) {
            ngx_http_canary_redis_fail(rc, 0, "out of memory");
            return;
        }
    }

#endif

    rc2 = ngx_event_connect_peer(&rc->peer);

    if (rc2 == NGX_ERROR || rc2 == NGX_BUSY || rc2 == NGX_DECLINED) {
        ngx_http_canary_redis_fail(rc, ngx_socket_errno, "connect() failed");
        return;
    }

    c = rc->peer.connection;

    c->data = rc;
    c->read->handler = ngx_http_canary_redis_read_handler;
    c->write->handler = ngx_http_canary_redis_write_handler;

    /* closed by ngx_close_idle_connections() when the worker shuts down */
    c->idle = 1;

    c->pool = rc->pool;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, &rc->log, 0,
                   "canary redis %s: connecting to %V", rc->label,
                   &rc->addr.name);

    if (rc2 == NGX_AGAIN) {
        ngx_add_timer(c->write, rc->conf->timeout);
        return;
    }

    /* connected at once, as unix sockets are */

    ngx_http_canary_redis_write_handler(c->write);
}


ngx_int_t
ngx_http_canary_redis_send(ngx_http_canary_redis_t *rc, int argc,
    const char **argv, const size_t *argvlen,
    ngx_http_canary_redis_handler_pt handler, void *data)
{
    ngx_connection_t  *c;

    if (rc->closed || rc->state == NGX_HTTP_CANARY_REDIS_CLOSED) {
        return NGX_DECLINED;
    }

    if (ngx_http_canary_redis_append(rc, argc, argv, argvlen) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_canary_redis_queue(rc, handler, data) != NGX_OK) {
        return NGX_ERROR;
    }

    c = rc->peer.connection;

    if (rc->state != NGX_HTTP_CANARY_REDIS_CONNECTING) {
        /* one write for every command of this event-loop turn */
        ngx_post_event(c->write, &ngx_posted_events);
    }

    if (!c->read->timer_set) {
        ngx_add_timer(c->read, rc->conf->timeout);
    }

    return NGX_OK;
}


void
ngx_http_canary_redis_close(ngx_http_canary_redis_t *rc)
{
    if (rc->closed) {
        return;
    }

    rc->closed = 1;

    if (rc->reconnect.timer_set) {
        ngx_del_timer(&rc->reconnect);
    }

    ngx_http_canary_redis_drop(rc);

    if (rc->pool) {
        ngx_destroy_pool(rc->pool);
        rc->pool = NULL;
    }

    if (rc->conf->sentinel) {
        ngx_http_canary_sentinel_leave(rc);
    }

    if (rc->reader) {
        redisReaderFree(rc->reader);
        rc->reader = NULL;
    }

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


static void
ngx_http_canary_redis_reconnect_handler(ngx_event_t *ev)
{
    ngx_http_canary_redis_t  *rc = ev->data;

    if (ngx_exiting || ngx_terminate) {
        ngx_http_canary_redis_close(rc);
        return;
    }

    ngx_http_canary_redis_connect(rc);
}


static void
ngx_http_canary_redis_write_handler(ngx_event_t *wev)
{
    ngx_connection_t         *c;
    ngx_http_canary_redis_t  *rc;

    c = wev->data;
    rc = c->data;

    if (ngx_exiting || ngx_terminate) {
        ngx_http_canary_redis_close(rc);
        return;
    }

    if (wev->timedout) {
        ngx_http_canary_redis_fail(rc, NGX_ETIMEDOUT, "connect() timed out");
        return;
    }

    if (rc->state == NGX_HTTP_CANARY_REDIS_CONNECTING) {

        if (wev->timer_set) {
            ngx_del_timer(wev);
        }

        if (ngx_http_canary_redis_test_connect(c) != NGX_OK) {
            return;
        }

#if (NGX_SSL)
        if (rc->conf->tls) {
            ngx_http_canary_redis_tls_start(rc);
            return;
        }
#endif

        ngx_http_canary_redis_connected(rc);
        return;
    }

    (void) ngx_http_canary_redis_flush(rc);
}


/* connected (and past the TLS handshake): AUTH/SELECT/ROLE go out */

static void
ngx_http_canary_redis_connected(ngx_http_canary_redis_t *rc)
{
    ngx_connection_t  *c;

    c = rc->peer.connection;

    if (rc->npending) {
        rc->state = NGX_HTTP_CANARY_REDIS_HELLO;

        if (!c->read->timer_set) {
            ngx_add_timer(c->read, rc->conf->timeout);
        }

    } else {
        rc->state = NGX_HTTP_CANARY_REDIS_READY;
    }

    if (rc->tries || rc->down) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, &rc->log, 0,
                       "canary redis %s: connected", rc->label);
    }

    if (ngx_http_canary_redis_flush(rc) != NGX_OK) {
        return;
    }

    if (rc->state == NGX_HTTP_CANARY_REDIS_READY && rc->on_ready) {
        rc->on_ready(rc);
    }
}


#if (NGX_SSL)

static void
ngx_http_canary_redis_tls_start(ngx_http_canary_redis_t *rc)
{
    u_char            *p;
    ngx_int_t          rc2;
    ngx_str_t         *name;
    ngx_connection_t  *c;

    c = rc->peer.connection;

    if (ngx_ssl_create_connection(rc->conf->ssl, c, NGX_SSL_CLIENT)
        != NGX_OK)
    {
        ngx_http_canary_redis_fail(rc, 0, "TLS set-up failed");
        return;
    }

    rc->tls = 1;

    /* SNI: the name, unless it is an address */

    name = rc->conf->tls_name.len ? &rc->conf->tls_name : &rc->host;

    if (name->len && ngx_inet_addr(name->data, name->len) == INADDR_NONE
        && ngx_strlchr(name->data, name->data + name->len, ':') == NULL)
    {
        p = ngx_pnalloc(c->pool, name->len + 1);
        if (p == NULL) {
            ngx_http_canary_redis_fail(rc, 0, "out of memory");
            return;
        }

        (void) ngx_cpystrn(p, name->data, name->len + 1);

        if (SSL_set_tlsext_host_name(c->ssl->connection, (char *) p) == 0) {
            ngx_http_canary_redis_fail(rc, 0, "TLS set-up failed");
            return;
        }
    }

    rc2 = ngx_ssl_handshake(c);

    if (rc2 == NGX_AGAIN) {
        if (!c->write->timer_set) {
            ngx_add_timer(c->write, rc->conf->timeout);
        }

        c->ssl->handler = ngx_http_canary_redis_tls_done;
        return;
    }

    ngx_http_canary_redis_tls_done(c);
}


static void
ngx_http_canary_redis_tls_done(ngx_connection_t *c)
{
    long                      v;
    ngx_str_t                *name;
    ngx_http_canary_redis_t  *rc;

    rc = c->data;

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    if (ngx_exiting || ngx_terminate) {
        ngx_http_canary_redis_close(rc);
        return;
    }

    if (!c->ssl->handshaked) {
        ngx_http_canary_redis_fail(rc, c->write->timedout ? NGX_ETIMEDOUT : 0,
                                   c->write->timedout
                                   ? "TLS handshake timed out"
                                   : "TLS handshake failed");
        return;
    }

    if (rc->conf->tls_verify) {
        name = rc->conf->tls_name.len ? &rc->conf->tls_name : &rc->host;

        v = SSL_get_verify_result(c->ssl->connection);

        if (v != X509_V_OK) {
            rc->reason_len = ngx_snprintf(rc->reason, sizeof(rc->reason),
                                          "%l: %s", v,
                                          X509_verify_cert_error_string(v))
                             - rc->reason;
            ngx_http_canary_redis_fail(rc, 0,
                                       "TLS certificate verify error");
            return;
        }

        if (ngx_ssl_check_host(c, name) != NGX_OK) {
            rc->reason_len = ngx_snprintf(rc->reason, sizeof(rc->reason),
                                          "not \"%V\"", name)
                             - rc->reason;
            ngx_http_canary_redis_fail(rc, 0,
                                       "TLS certificate does not match");
            return;
        }
    }

    c->read->handler = ngx_http_canary_redis_read_handler;
    c->write->handler = ngx_http_canary_redis_write_handler;

    rc->reason_len = 0;

    ngx_http_canary_redis_connected(rc);
}

#endif


static ngx_int_t
ngx_http_canary_redis_test_connect(ngx_connection_t *c)
{
    int                       err;
    socklen_t                 len;
    ngx_http_canary_redis_t  *rc;

    rc = c->data;

#if (NGX_HAVE_KQUEUE)

    if (ngx_event_flags & NGX_USE_KQUEUE_EVENT)  {
        if (c->write->pending_eof || c->read->pending_eof) {
            err = c->write->pending_eof ? c->write->kq_errno
                                        : c->read->kq_errno;

            ngx_http_canary_redis_fail(rc, err, "connect() failed");
            return NGX_ERROR;
        }

        return NGX_OK;
    }

#endif

    err = 0;
    len = sizeof(int);

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, (void *) &err, &len) == -1) {
        err = ngx_socket_errno;
    }

    if (err) {
        ngx_http_canary_redis_fail(rc, err, "connect() failed");
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* writes what is queued; NGX_OK, or NGX_ERROR after a failure */

static ngx_int_t
ngx_http_canary_redis_flush(ngx_http_canary_redis_t *rc)
{
    ssize_t            n;
    ngx_connection_t  *c;

    c = rc->peer.connection;

    while (rc->out_pos < rc->out_len) {
        n = c->send(c, rc->out + rc->out_pos, rc->out_len - rc->out_pos);

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == NGX_ERROR || n == 0) {
            ngx_http_canary_redis_fail(rc, ngx_socket_errno,
                                       "send() failed");
            return NGX_ERROR;
        }

        rc->out_pos += n;
    }

    if (rc->out_pos == rc->out_len) {
        rc->out_pos = 0;
        rc->out_len = 0;
    }

    if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
        ngx_http_canary_redis_fail(rc, 0, "ngx_handle_write_event() failed");
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_http_canary_redis_read_handler(ngx_event_t *rev)
{
    void                     *reply;
    ssize_t                   n;
    ngx_uint_t                generation, reads;
    ngx_connection_t         *c;
    ngx_http_canary_redis_t  *rc;
    u_char                    buf[NGX_HTTP_CANARY_REDIS_RECV];

    c = rev->data;
    rc = c->data;

    if (c->close || ngx_exiting || ngx_terminate) {
        ngx_http_canary_redis_close(rc);
        return;
    }

    if (rev->timedout) {
        ngx_http_canary_redis_fail(rc, NGX_ETIMEDOUT, "no reply in time");
        return;
    }

    if (rc->state == NGX_HTTP_CANARY_REDIS_CONNECTING) {
        /* a connect() failure may be reported on the read side first */
        ngx_http_canary_redis_write_handler(c->write);
        return;
    }

    generation = rc->generation;

    for (reads = 0; /* void */ ; reads++) {

        if (reads == NGX_HTTP_CANARY_REDIS_TURN) {
            /*
             * A peer that writes as fast as the worker reads (a flood of
             * messages on the subscribed connection) must not keep the
             * worker from its requests: carry on in the next turn.
             */

            ngx_post_event(rev, &ngx_posted_events);
            break;
        }

        n = c->recv(c, buf, sizeof(buf));

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == 0) {
            ngx_http_canary_redis_fail(rc, 0, "connection closed by Redis");
            return;
        }

        if (n == NGX_ERROR) {
            ngx_http_canary_redis_fail(rc, ngx_socket_errno, "recv() failed");
            return;
        }

        if (redisReaderFeed(rc->reader, (const char *) buf, n) != REDIS_OK) {
            ngx_http_canary_redis_fail(rc, 0, "out of memory");
            return;
        }

        for ( ;; ) {
            reply = NULL;

            if (redisReaderGetReply(rc->reader, &reply) != REDIS_OK) {
                /* once per outage, beside the outage's own line */

                if (!rc->garbage && !rc->quiet) {
                    ngx_log_error(NGX_LOG_ERR, &rc->log, 0,
                                  "canary redis: %V answers garbage: %s",
                                  &rc->addr.name, rc->reader->errstr);
                }

                rc->garbage = 1;

                ngx_http_canary_redis_fail(rc, 0, "protocol error");
                return;
            }

            if (reply == NULL) {
                break;
            }

            if (ngx_http_canary_redis_dispatch(rc, reply) != NGX_OK) {
                freeReplyObject(reply);
                ngx_http_canary_redis_fail(rc, 0, "unexpected reply");
                return;
            }

            freeReplyObject(reply);

            if (rc->generation != generation
                || rc->state == NGX_HTTP_CANARY_REDIS_CLOSED)
            {
                /* a handler closed or restarted the connection */
                return;
            }
        }
    }

    if (rc->npending == 0) {
        if (rev->timer_set) {
            ngx_del_timer(rev);
        }

    } else {
        ngx_add_timer(rev, rc->conf->timeout);
    }

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_http_canary_redis_fail(rc, 0, "ngx_handle_read_event() failed");
    }
}


static ngx_int_t
ngx_http_canary_redis_dispatch(ngx_http_canary_redis_t *rc,
    redisReply *reply)
{
    ngx_uint_t                    generation;
    redisReply                   *kind;
    ngx_http_canary_redis_cmd_t   cmd;

    /* a message on a subscribed connection answers no command */

    if (rc->on_push && reply->type == REDIS_REPLY_ARRAY
        && reply->elements >= 3)
    {
        kind = reply->element[0];

        if (kind->type == REDIS_REPLY_STRING
            && ((kind->len == 7 && ngx_strncmp(kind->str, "message", 7) == 0)
                || (kind->len == 8
                    && ngx_strncmp(kind->str, "pmessage", 8) == 0)))
        {
            rc->on_push(rc, reply);
            return NGX_OK;
        }
    }

    if (rc->npending == 0) {
        if (!rc->down && !rc->quiet) {
            ngx_log_error(NGX_LOG_ERR, &rc->log, 0,
                          "canary redis: %V sent a reply to no command",
                          &rc->addr.name);
        }

        return NGX_ERROR;
    }

    cmd = rc->pending[rc->pending_head];
    rc->pending_head = (rc->pending_head + 1) % rc->pending_size;
    rc->npending--;

    generation = rc->generation;

    cmd.handler(rc, reply, cmd.data);

    /*
     * An outage ends with the first reply to a command, not with the
     * connect(): a stopped server still accepts connections.
     */

    if (rc->down && rc->generation == generation) {
        if (!rc->quiet) {
            ngx_log_error(NGX_LOG_NOTICE, &rc->log, 0,
                          "canary redis: %V answers again after %ui "
                          "failed tries", &rc->addr.name, rc->tries);
        }

        rc->down = 0;
        rc->garbage = 0;
        rc->refused = 0;
        rc->tries = 0;
        rc->backoff = NGX_HTTP_CANARY_REDIS_BACKOFF_MIN;
    }

    return NGX_OK;
}


static void
ngx_http_canary_redis_hello_handler(ngx_http_canary_redis_t *rc,
    redisReply *reply, void *data)
{
    char        *what = data;
    redisReply  *role;

    if (reply == NULL) {
        return;
    }

    /* a refusal is logged once per outage, even one already logged */

    if (reply->type == REDIS_REPLY_ERROR) {
        if (!rc->refused && !rc->quiet) {
            ngx_log_error(NGX_LOG_ERR, &rc->log, 0,
                          "canary redis: %s on %V refused: %*s", what,
                          &rc->addr.name, reply->len, reply->str);
        }

        rc->refused = 1;

        /* logged here, and as an outage: not again per try */
        rc->down = 1;
        ngx_http_canary_redis_fail(rc, 0, "AUTH, SELECT or ROLE refused");
        return;
    }

    if (what[0] == 'R') {
        /* ROLE: "master", or the sentinels named a replica */

        role = NULL;

        if (reply->type == REDIS_REPLY_ARRAY && reply->elements
            && reply->element[0]->type == REDIS_REPLY_STRING)
        {
            role = reply->element[0];
        }

        if (role == NULL
            || role->len != 6 || ngx_strncmp(role->str, "master", 6) != 0)
        {
            if (!rc->refused && !rc->quiet) {
                ngx_log_error(NGX_LOG_ERR, &rc->log, 0,
                              "canary redis: %V is not the master (role "
                              "\"%*s\"), asking the sentinels again",
                              &rc->addr.name, role ? role->len : 0,
                              role ? role->str : "");
            }

            rc->down = 1;
            rc->refused = 1;
            ngx_http_canary_redis_fail(rc, 0, "not the master");
            return;
        }
    }

    if (rc->state != NGX_HTTP_CANARY_REDIS_HELLO) {
        return;
    }

    /* READY once the last of AUTH/SELECT is answered */

    if (rc->npending && rc->pending[rc->pending_head].handler
                        == ngx_http_canary_redis_hello_handler)
    {
        return;
    }

    rc->state = NGX_HTTP_CANARY_REDIS_READY;

    if (rc->on_ready) {
        rc->on_ready(rc);
    }
}


static void
ngx_http_canary_redis_fail(ngx_http_canary_redis_t *rc, ngx_err_t err,
    const char *why)
{
    ngx_msec_t  delay;

    rc->tries++;

    /* TLS failures say why in the line of the TLS layer they left */

    if (!rc->down && !rc->quiet) {
        if (rc->tls && rc->reason_len) {
            ngx_log_error(NGX_LOG_ERR, &rc->log, err,
                          "canary redis: %V is unavailable (%s: %*s), "
                          "routing keeps the last good state; retrying in "
                          "the background", &rc->addr.name, why,
                          rc->reason_len, rc->reason);

        } else {
            ngx_log_error(NGX_LOG_ERR, &rc->log, err,
                          "canary redis: %V is unavailable (%s), routing "
                          "keeps the last good state; retrying in the "
                          "background", &rc->addr.name, why);
        }
    }

    /* behind Sentinel, any loss asks the sentinels again */

    if (rc->conf->sentinel && ngx_http_canary_sentinel) {
        ngx_http_canary_sentinel->known = 0;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, &rc->log, err,
                   "canary redis %s: %s, try %ui", rc->label, why,
                   rc->tries);

    rc->down = 1;

    ngx_http_canary_redis_drop(rc);

    if (rc->closed || ngx_exiting || ngx_terminate) {
        return;
    }

    delay = rc->backoff;
    rc->backoff = ngx_min(rc->backoff * 2, NGX_HTTP_CANARY_REDIS_BACKOFF_MAX);

    ngx_add_timer(&rc->reconnect, delay);
}


/* closes the connection and answers every waiting command with NULL */

static void
ngx_http_canary_redis_drop(ngx_http_canary_redis_t *rc)
{
    ngx_uint_t                    n, head, size;
    ngx_http_canary_redis_cmd_t  *pending, cmd;

    if (rc->peer.connection) {
#if (NGX_SSL)
        if (rc->peer.connection->ssl) {
            rc->peer.connection->ssl->no_wait_shutdown = 1;
            rc->peer.connection->ssl->no_send_shutdown = 1;
            (void) ngx_ssl_shutdown(rc->peer.connection);
        }
#endif

        ngx_close_connection(rc->peer.connection);
        rc->peer.connection = NULL;

        if (rc->pool) {
            ngx_reset_pool(rc->pool);
        }
    }

    rc->state = NGX_HTTP_CANARY_REDIS_CLOSED;
    rc->generation++;
    rc->out_pos = 0;
    rc->out_len = 0;

    /* handlers may queue again (and be refused): detach the ring first */

    pending = rc->pending;
    head = rc->pending_head;
    n = rc->npending;
    size = rc->pending_size;

    rc->pending = NULL;
    rc->pending_head = 0;
    rc->npending = 0;
    rc->pending_size = 0;

    while (n--) {
        cmd = pending[head];
        head = (head + 1) % size;
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


static ngx_int_t
ngx_http_canary_redis_queue(ngx_http_canary_redis_t *rc,
    ngx_http_canary_redis_handler_pt handler, void *data)
{
    ngx_uint_t                    i, size;
    ngx_http_canary_redis_cmd_t  *p;

    if (rc->npending == rc->pending_size) {
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
    }

    i = (rc->pending_head + rc->npending) % rc->pending_size;
    rc->pending[i].handler = handler;
    rc->pending[i].data = data;
    rc->npending++;

    return NGX_OK;
}


static ngx_int_t
ngx_http_canary_redis_append(ngx_http_canary_redis_t *rc, int argc,
    const char **argv, const size_t *argvlen)
{
    int      len;
    char    *cmd;
    size_t   size;
    u_char  *p;

    len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
    if (len < 0) {
        return NGX_ERROR;
    }

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
            redisFreeCommand(cmd);
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

    redisFreeCommand(cmd);

    return NGX_OK;
}


/* a command of the connection's start: AUTH, SELECT, ROLE */

static ngx_int_t
ngx_http_canary_redis_hello(ngx_http_canary_redis_t *rc, int argc,
    const char **argv, const size_t *argvlen, char *what)
{
    if (ngx_http_canary_redis_append(rc, argc, argv, argvlen) != NGX_OK
        || ngx_http_canary_redis_queue(rc, ngx_http_canary_redis_hello_handler,
                                       what)
           != NGX_OK)
    {
        ngx_http_canary_redis_fail(rc, 0, "out of memory");
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * The socket and TLS layers' lines: the last one is kept, without its
 * time, level and pid, as the reason of a failure; "alert" and worse go
 * on to the log.
 */

static void
ngx_http_canary_redis_log_writer(ngx_log_t *log, ngx_uint_t level,
    u_char *buf, size_t len)
{
    ngx_http_canary_redis_t  *rc = log->wdata;

    u_char  *p, *last;

    if (level <= NGX_LOG_ALERT) {
        if (rc->log.writer) {
            rc->log.writer(&rc->log, level, buf, len);

        } else if (rc->log.file) {
            (void) ngx_write_fd(rc->log.file->fd, buf, len);
        }
    }

    last = buf + len;

    while (last > buf && (last[-1] == LF || last[-1] == CR)) {
        last--;
    }

    p = ngx_strlchr(buf, last, ']');
    p = p ? ngx_strlchr(p, last, ':') : NULL;

    if (p == NULL || last - p < 2) {
        return;
    }

    p += 2;

    if (p < last && *p == '*') {
        p = ngx_strlchr(p, last, ' ');
        if (p == NULL) {
            return;
        }

        p++;
    }

    len = ngx_min((size_t) (last - p), sizeof(rc->reason));
    rc->reason_len = ngx_cpymem(rc->reason, p, len) - rc->reason;
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

    for (i = 0; i < s->nclients; i++) {
        if (s->clients[i] == rc) {
            return s;
        }
    }

    if (s->nclients == NGX_HTTP_CANARY_SENTINEL_CLIENTS) {
        return NULL;
    }

    s->clients[s->nclients++] = rc;

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

    for (i = 0; i < s->nclients; i++) {
        if (s->clients[i] == rc) {
            s->clients[i] = s->clients[--s->nclients];
            break;
        }
    }

    if (s->nclients == 0) {
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
    ngx_uint_t                i, moved;
    ngx_sockaddr_t            sa;
    struct sockaddr_in       *sin;
    ngx_http_canary_redis_t  *rc;
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

    for (i = 0; i < s->nclients; i++) {
        rc = s->clients[i];

        if (rc->closed) {
            continue;
        }

        if (moved) {
            if (rc->state != NGX_HTTP_CANARY_REDIS_CLOSED) {
                ngx_http_canary_redis_drop(rc);
            }

            rc->backoff = NGX_HTTP_CANARY_REDIS_BACKOFF_MIN;

        } else if (!rc->wait_master) {
            continue;
        }

        ngx_http_canary_redis_connect(rc);
    }

    return NGX_OK;
}


/*
 * canary_redis host:port | unix:/path [db=N] [user=U] [password=S]
 *              [prefix=P] [timeout=T] [tls [tls_verify=on|off]
 *              [tls_ca=F] [tls_name=N] [tls_cert=F tls_key=F]];
 * canary_redis sentinel=host:port[,host:port...] master=NAME
 *              [sentinel_password=S] [sentinel_tls[=on|off]] ...;
 */

char *
ngx_http_canary_redis_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_canary_main_conf_t *cmcf = conf;

    char                          *rv;
    ngx_int_t                      n, stls;
    ngx_str_t                     *value, s, ca, cert, key, sentinels;
    ngx_str_t                      spassword;
    ngx_url_t                      u;
    ngx_uint_t                     i, verify, tls_opts;
    ngx_http_canary_redis_conf_t  *rcf, *scf;

    if (cmcf->redis) {
        return "is duplicate";
    }

    value = cf->args->elts;

    rcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_canary_redis_conf_t));
    if (rcf == NULL) {
        return NGX_CONF_ERROR;
    }

    rcf->name = value[1];
    rcf->timeout = 1000;
    ngx_str_set(&rcf->prefix, "canary:");

    ngx_str_null(&ca);
    ngx_str_null(&cert);
    ngx_str_null(&key);
    ngx_str_null(&sentinels);
    ngx_str_null(&spassword);
    verify = NGX_CONF_UNSET_UINT;
    stls = NGX_CONF_UNSET;
    tls_opts = 0;

    if (ngx_strncmp(value[1].data, "sentinel=", 9) == 0) {
        sentinels.data = value[1].data + 9;
        sentinels.len = value[1].len - 9;

    } else {
        ngx_memzero(&u, sizeof(ngx_url_t));

        u.url = value[1];
        u.default_port = 6379;

        if (ngx_parse_url(cf->pool, &u) != NGX_OK) {
            if (u.err) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "%s in canary_redis \"%V\"", u.err,
                                   &u.url);
            }

            return NGX_CONF_ERROR;
        }

        if (u.naddrs == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "no address for canary_redis \"%V\"", &u.url);
            return NGX_CONF_ERROR;
        }

        rcf->addr = u.addrs[0];
        rcf->host = u.host;
        rcf->addrs = &rcf->addr;
        rcf->hosts = &rcf->host;
        rcf->naddrs = 1;
    }

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "db=", 3) == 0) {
            s.data = value[i].data + 3;
            s.len = value[i].len - 3;

            n = ngx_atoi(s.data, s.len);
            if (n == NGX_ERROR || n > 65535) {
                goto invalid;
            }

            rcf->db = n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "password=", 9) == 0) {
            rcf->password.data = value[i].data + 9;
            rcf->password.len = value[i].len - 9;

            if (rcf->password.len == 0) {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "user=", 5) == 0) {
            rcf->user.data = value[i].data + 5;
            rcf->user.len = value[i].len - 5;

            if (rcf->user.len == 0) {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "prefix=", 7) == 0) {
            rcf->prefix.data = value[i].data + 7;
            rcf->prefix.len = value[i].len - 7;
            continue;
        }

        if (ngx_strncmp(value[i].data, "timeout=", 8) == 0) {
            s.data = value[i].data + 8;
            s.len = value[i].len - 8;

            rcf->timeout = ngx_parse_time(&s, 0);
            if (rcf->timeout == (ngx_msec_t) NGX_ERROR || rcf->timeout == 0) {
                goto invalid;
            }

            continue;
        }

        if (value[i].len == 3 && ngx_strncmp(value[i].data, "tls", 3) == 0) {
            rcf->tls = 1;
            continue;
        }

        if (ngx_strncmp(value[i].data, "tls_verify=", 11) == 0) {
            if (ngx_strcmp(value[i].data + 11, "on") == 0) {
                verify = 1;

            } else if (ngx_strcmp(value[i].data + 11, "off") == 0) {
                verify = 0;

            } else {
                goto invalid;
            }

            tls_opts++;
            continue;
        }

        if (ngx_strncmp(value[i].data, "tls_ca=", 7) == 0) {
            ca.data = value[i].data + 7;
            ca.len = value[i].len - 7;

            if (ca.len == 0) {
                goto invalid;
            }

            tls_opts++;
            continue;
        }

        if (ngx_strncmp(value[i].data, "tls_name=", 9) == 0) {
            rcf->tls_name.data = value[i].data + 9;
            rcf->tls_name.len = value[i].len - 9;

            if (rcf->tls_name.len == 0) {
                goto invalid;
            }

            tls_opts++;
            continue;
        }

        if (ngx_strncmp(value[i].data, "tls_cert=", 9) == 0) {
            cert.data = value[i].data + 9;
            cert.len = value[i].len - 9;

            if (cert.len == 0) {
                goto invalid;
            }

            tls_opts++;
            continue;
        }

        if (ngx_strncmp(value[i].data, "tls_key=", 8) == 0) {
            key.data = value[i].data + 8;
            key.len = value[i].len - 8;

            if (key.len == 0) {
                goto invalid;
            }

            tls_opts++;
            continue;
        }

        if (ngx_strncmp(value[i].data, "master=", 7) == 0) {
            rcf->master.data = value[i].data + 7;
            rcf->master.len = value[i].len - 7;

            if (rcf->master.len == 0) {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "sentinel_password=", 18) == 0) {
            spassword.data = value[i].data + 18;
            spassword.len = value[i].len - 18;

            if (spassword.len == 0) {
                goto invalid;
            }

            continue;
        }

        if (ngx_strcmp(value[i].data, "sentinel_tls") == 0
            || ngx_strcmp(value[i].data, "sentinel_tls=on") == 0)
        {
            stls = 1;
            continue;
        }

        if (ngx_strcmp(value[i].data, "sentinel_tls=off") == 0) {
            stls = 0;
            continue;
        }

        goto invalid;
    }

    if (rcf->user.len && rcf->password.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "canary_redis \"user=\" needs \"password=\"");
        return NGX_CONF_ERROR;
    }

    if (cert.len != key.len && (cert.len == 0 || key.len == 0)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "canary_redis \"tls_cert=\" and \"tls_key=\" go "
                           "together");
        return NGX_CONF_ERROR;
    }

    if (sentinels.len == 0
        && (rcf->master.len || spassword.len || stls != NGX_CONF_UNSET))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "canary_redis \"master=\", \"sentinel_password=\" "
                           "and \"sentinel_tls\" need \"sentinel=\"");
        return NGX_CONF_ERROR;
    }

    if (sentinels.len && rcf->master.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "canary_redis \"sentinel=\" needs \"master=\"");
        return NGX_CONF_ERROR;
    }

    if (stls == NGX_CONF_UNSET) {
        stls = rcf->tls;
    }

    if (tls_opts && !rcf->tls && !stls) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "canary_redis \"tls_*\" parameters need \"tls\"");
        return NGX_CONF_ERROR;
    }

    /* verification is on when a CA is given, unless said otherwise */

    if (verify == NGX_CONF_UNSET_UINT) {
        verify = ca.len ? 1 : 0;
    }

    rcf->tls_verify = verify;

    if (rcf->tls || stls) {
#if (NGX_SSL)
        if (ngx_http_canary_redis_tls_conf(cf, rcf, &ca, &cert, &key)
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }
#else
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "canary_redis \"tls\" needs nginx built with "
                           "OpenSSL (--with-http_ssl_module)");
        return NGX_CONF_ERROR;
#endif
    }

    if (sentinels.len) {
        scf = ngx_pcalloc(cf->pool, sizeof(ngx_http_canary_redis_conf_t));
        if (scf == NULL) {
            return NGX_CONF_ERROR;
        }

        *scf = *rcf;

        ngx_str_null(&scf->user);
        scf->password = spassword;
        scf->db = 0;
        scf->sentinel = NULL;
        scf->tls = stls;

        rv = ngx_http_canary_redis_addrs(cf, scf, &sentinels, 26379);
        if (rv != NGX_CONF_OK) {
            return rv;
        }

        rcf->sentinel = scf;
        rcf->addr = scf->addr;
    }

    cmcf->redis = rcf;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\" in canary_redis", &value[i]);

    return NGX_CONF_ERROR;
}


/* "sentinel=host:port,host:port...": the addresses, tried in turn */

static char *
ngx_http_canary_redis_addrs(ngx_conf_t *cf, ngx_http_canary_redis_conf_t *rcf,
    ngx_str_t *list, in_port_t port)
{
    u_char      *p, *last, *comma;
    ngx_url_t    u;
    ngx_uint_t   n;

    n = 1;
    last = list->data + list->len;

    for (p = list->data; p < last; p++) {
        if (*p == ',') {
            n++;
        }
    }

    rcf->addrs = ngx_pcalloc(cf->pool, n * sizeof(ngx_addr_t));
    rcf->hosts = ngx_pcalloc(cf->pool, n * sizeof(ngx_str_t));
    if (rcf->addrs == NULL || rcf->hosts == NULL) {
        return NGX_CONF_ERROR;
    }

    rcf->naddrs = 0;

    for (p = list->data; p <= last; p = comma + 1) {
        comma = ngx_strlchr(p, last, ',');
        if (comma == NULL) {
            comma = last;
        }

        ngx_memzero(&u, sizeof(ngx_url_t));

        u.url.data = p;
        u.url.len = comma - p;
        u.default_port = port;
        u.no_resolve = 0;

        if (u.url.len == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "empty address in canary_redis \"sentinel=%V\"",
                               list);
            return NGX_CONF_ERROR;
        }

        if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.naddrs == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "%s in canary_redis \"sentinel=%V\"",
                               u.err ? u.err : "no address", list);
            return NGX_CONF_ERROR;
        }

        rcf->addrs[rcf->naddrs] = u.addrs[0];
        rcf->hosts[rcf->naddrs] = u.host;
        rcf->naddrs++;
    }

    rcf->addr = rcf->addrs[0];
    rcf->host = rcf->hosts[0];

    return NGX_CONF_OK;
}


#if (NGX_SSL)

/* the TLS context, as proxy_ssl_* builds one */

static ngx_int_t
ngx_http_canary_redis_tls_conf(ngx_conf_t *cf,
    ngx_http_canary_redis_conf_t *rcf, ngx_str_t *ca, ngx_str_t *cert,
    ngx_str_t *key)
{
    ngx_str_t            *f[3];
    ngx_uint_t            i;
    ngx_file_info_t       fi;
    ngx_pool_cleanup_t   *cln;

    /* a missing file is named with the directive's file and line */

    f[0] = ca;
    f[1] = cert;
    f[2] = key;

    for (i = 0; i < 3; i++) {
        if (f[i]->len == 0) {
            continue;
        }

        if (ngx_conf_full_name(cf->cycle, f[i], 1) != NGX_OK) {
            return NGX_ERROR;
        }

        if (ngx_file_info(f[i]->data, &fi) == NGX_FILE_ERROR) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                               ngx_file_info_n " \"%s\" failed",
                               f[i]->data);
            return NGX_ERROR;
        }
    }

    rcf->ssl = ngx_pcalloc(cf->pool, sizeof(ngx_ssl_t));
    if (rcf->ssl == NULL) {
        return NGX_ERROR;
    }

    rcf->ssl->log = cf->log;

    if (ngx_ssl_create(rcf->ssl, NGX_SSL_TLSv1_2|NGX_SSL_TLSv1_3, NULL)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        ngx_ssl_cleanup_ctx(rcf->ssl);
        return NGX_ERROR;
    }

    cln->handler = ngx_ssl_cleanup_ctx;
    cln->data = rcf->ssl;

    if (cert->len
        && ngx_ssl_certificate(cf, rcf->ssl, cert, key, NULL) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (rcf->tls_verify) {
        if (ngx_ssl_trusted_certificate(cf, rcf->ssl, ca, 9) != NGX_OK) {
            return NGX_ERROR;
        }

        /* no tls_ca=: the system's certificate authorities */

        if (ca->len == 0
            && SSL_CTX_set_default_verify_paths(rcf->ssl->ctx) != 1)
        {
            ngx_ssl_error(NGX_LOG_EMERG, cf->log, 0,
                          "SSL_CTX_set_default_verify_paths() failed");
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}

#endif
