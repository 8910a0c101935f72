
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
 * have named the master (ngx_http_canary_sentinel.c, through
 * conf->locator).  The canary_redis directive is parsed in
 * ngx_http_canary_redis_conf.c.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>

#include "ngx_http_canary_redis.h"
#include "ngx_http_canary_redis_queue.h"


#define NGX_HTTP_CANARY_REDIS_RECV         16384

/* reads per event-loop turn; then the rest waits for the next turn */
#define NGX_HTTP_CANARY_REDIS_TURN         16


static void ngx_http_canary_redis_reconnect_handler(ngx_event_t *ev);
static void ngx_http_canary_redis_write_handler(ngx_event_t *wev);
static void ngx_http_canary_redis_read_handler(ngx_event_t *rev);
static ngx_int_t ngx_http_canary_redis_test_connect(ngx_connection_t *c);
static ngx_int_t ngx_http_canary_redis_flush(ngx_http_canary_redis_t *rc);
static ngx_int_t ngx_http_canary_redis_dispatch(ngx_http_canary_redis_t *rc,
    redisReply *reply);
static void ngx_http_canary_redis_hello_handler(ngx_http_canary_redis_t *rc,
    redisReply *reply, void *data);
static void ngx_http_canary_redis_post(ngx_http_canary_redis_t *rc);
static ngx_int_t ngx_http_canary_redis_format(ngx_http_canary_redis_t *rc,
    int argc, const char **argv, const size_t *argvlen,
    ngx_http_canary_redis_handler_pt handler, void *data);
static ngx_int_t ngx_http_canary_redis_hello(ngx_http_canary_redis_t *rc,
    int argc, const char **argv, const size_t *argvlen, char *what);
static ngx_int_t ngx_http_canary_redis_hellos(ngx_http_canary_redis_t *rc);
static void ngx_http_canary_redis_connected(ngx_http_canary_redis_t *rc);
static void ngx_http_canary_redis_log_writer(ngx_log_t *log,
    ngx_uint_t level, u_char *buf, size_t len);
#if (NGX_SSL)
static void ngx_http_canary_redis_tls_start(ngx_http_canary_redis_t *rc);
static void ngx_http_canary_redis_tls_done(ngx_connection_t *c);
#endif


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

    /* in a cluster a command may have to be sent again elsewhere */
    rc->keep = conf->locator && conf->locator->refused;

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
    ngx_int_t          rc2;
    ngx_uint_t         i;
    ngx_connection_t  *c;

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

    if (rc->conf->locator) {
        if (rc->conf->locator->locate(rc) != NGX_OK) {
            return;
        }

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

    if (ngx_http_canary_redis_hellos(rc) != NGX_OK) {
        return;
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


/* AUTH [user] password, SELECT, and ROLE behind Sentinel, queued first */

static ngx_int_t
ngx_http_canary_redis_hellos(ngx_http_canary_redis_t *rc)
{
    int           argc;
    size_t        argvlen[3];
    u_char        db[NGX_INT_T_LEN];
    const char   *argv[3];

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
            return NGX_ERROR;
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
            return NGX_ERROR;
        }
    }

    if (rc->conf->sentinel) {
        argv[0] = "ROLE";
        argvlen[0] = 4;

        if (ngx_http_canary_redis_hello(rc, 1, argv, argvlen, "ROLE")
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_canary_redis_send(ngx_http_canary_redis_t *rc, int argc,
    const char **argv, const size_t *argvlen,
    ngx_http_canary_redis_handler_pt handler, void *data)
{
    if (rc->closed || rc->state == NGX_HTTP_CANARY_REDIS_CLOSED) {
        return NGX_DECLINED;
    }

    if (ngx_http_canary_redis_format(rc, argc, argv, argvlen, handler, data)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_http_canary_redis_post(rc);

    return NGX_OK;
}


ngx_int_t
ngx_http_canary_redis_send_bytes(ngx_http_canary_redis_t *rc, u_char *cmd,
    size_t len, ngx_http_canary_redis_handler_pt handler, void *data)
{
    if (rc->closed || rc->state == NGX_HTTP_CANARY_REDIS_CLOSED) {
        return NGX_DECLINED;
    }

    if (ngx_http_canary_redis_queue(rc, cmd, len, handler, data) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_http_canary_redis_post(rc);

    return NGX_OK;
}


/* what was queued in this event-loop turn goes out in one write */

static void
ngx_http_canary_redis_post(ngx_http_canary_redis_t *rc)
{
    ngx_connection_t  *c;

    c = rc->peer.connection;

    if (rc->state != NGX_HTTP_CANARY_REDIS_CONNECTING) {
        ngx_post_event(c->write, &ngx_posted_events);
    }

    if (!c->read->timer_set) {
        ngx_add_timer(c->read, rc->conf->timeout);
    }
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

    if (rc->conf->locator) {
        rc->conf->locator->leave(rc);
    }

    if (rc->reader) {
        redisReaderFree(rc->reader);
        rc->reader = NULL;
    }

    ngx_http_canary_redis_queue_free(rc);
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

    /* HELLO only while AUTH/SELECT/ROLE (queued first) are unanswered:
       commands queued while connecting do not make a handshake */

    if (rc->npending && rc->pending[rc->pending_head].handler
                        == ngx_http_canary_redis_hello_handler)
    {
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
    ngx_int_t                 rv;
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

            rv = ngx_http_canary_redis_dispatch(rc, reply);

            if (rv == NGX_ERROR) {
                freeReplyObject(reply);
                ngx_http_canary_redis_fail(rc, 0, "unexpected reply");
                return;
            }

            if (rv != NGX_DONE) {
                /* NGX_DONE: held by the queue */
                freeReplyObject(reply);
            }

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
    ngx_int_t    rv;
    ngx_uint_t   generation;
    redisReply  *kind;

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

    /* in a cluster: MOVED, ASK (see _redis_queue.h), TRYAGAIN, ... */

    if (reply->type == REDIS_REPLY_ERROR && rc->conf->locator
        && rc->conf->locator->refused
        && rc->conf->locator->refused(rc, reply) == NGX_OK)
    {
        return NGX_OK;
    }

    generation = rc->generation;

    rv = ngx_http_canary_redis_deliver(rc, reply);

    if (rv == NGX_DECLINED) {
        if (!rc->down && !rc->quiet) {
            ngx_log_error(NGX_LOG_ERR, &rc->log, 0,
                          "canary redis: %V sent a reply to no command",
                          &rc->addr.name);
        }

        return NGX_ERROR;
    }

    if (rv == NGX_DONE) {
        return NGX_DONE;
    }

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


void
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

    if (rc->conf->locator) {
        rc->conf->locator->lost(rc);
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

void
ngx_http_canary_redis_drop(ngx_http_canary_redis_t *rc)
{
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

    ngx_http_canary_redis_unqueue(rc);
}


/* a command formatted by hiredis, queued */

static ngx_int_t
ngx_http_canary_redis_format(ngx_http_canary_redis_t *rc, int argc,
    const char **argv, const size_t *argvlen,
    ngx_http_canary_redis_handler_pt handler, void *data)
{
    int        len;
    char      *cmd;
    ngx_int_t  rv;

    len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
    if (len < 0) {
        return NGX_ERROR;
    }

    rv = ngx_http_canary_redis_queue(rc, (u_char *) cmd, len, handler, data);

    redisFreeCommand(cmd);

    return rv;
}


/* a command of the connection's start: AUTH, SELECT, ROLE */

static ngx_int_t
ngx_http_canary_redis_hello(ngx_http_canary_redis_t *rc, int argc,
    const char **argv, const size_t *argvlen, char *what)
{
    if (ngx_http_canary_redis_format(rc, argc, argv, argvlen,
                                     ngx_http_canary_redis_hello_handler,
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
