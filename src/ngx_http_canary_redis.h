
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * A non-blocking Redis client driven by nginx's event loop.
 *
 * One ngx_http_canary_redis_t is one connection to the server named by
 * "canary_redis": connected with ngx_event_connect_peer(), AUTH and SELECT
 * sent first when configured, commands formatted with hiredis'
 * redisFormatCommandArgv() and pipelined, replies parsed with hiredis'
 * redisReader (which resumes across partial reads).  No call blocks.
 *
 * When the connection fails (refused, reset, a timeout, a protocol error,
 * AUTH refused) every command still waiting for its reply is answered
 * with reply == NULL, and the client reconnects by itself after a capped
 * exponential backoff (100 ms doubling up to 5 s).  An outage is logged
 * once at "error" level when it starts and once at "notice" level when it
 * ends, not at every try.
 *
 * The API, for every part of the module that talks to Redis:
 *
 *   rc = ngx_http_canary_redis_create(cycle, conf, "sync");
 *   rc->on_ready = ...; rc->data = ...;     (optional callbacks)
 *   ngx_http_canary_redis_connect(rc);
 *
 *   ngx_http_canary_redis_send(rc, argc, argv, argvlen, handler, data);
 *       Queues one command; commands sent in the same event-loop turn go
 *       out in one write (a pipeline).  Returns NGX_OK when queued (the
 *       handler will be called exactly once), NGX_DECLINED when the
 *       client is not connected or connecting (the handler is not
 *       called), NGX_ERROR when out of memory.  The argv strings are
 *       copied before it returns.
 *
 *   handler(rc, reply, data)
 *       reply is hiredis' redisReply (type REDIS_REPLY_STRING, ARRAY,
 *       INTEGER, NIL, STATUS or ERROR: an error reply is a reply, not a
 *       failure), or NULL when the connection failed before the reply
 *       came.  The reply is freed when the handler returns: copy what you
 *       keep.  The handler may send more commands or close the client.
 *
 *   ngx_http_canary_redis_send_bytes(rc, cmd, len, handler, data)
 *       The same with a command already formatted (in a cluster, one
 *       sent again elsewhere after "-ASK").
 *
 *   ngx_http_canary_redis_ready(rc)
 *       True once connected and past AUTH/SELECT.
 *
 *   ngx_http_canary_redis_close(rc)
 *       Closes for good (at worker exit): no more reconnecting; waiting
 *       handlers are called with NULL.
 *
 * Callbacks on the object: on_ready(rc) when a connection becomes ready;
 * on_push(rc, reply) for "message"/"pmessage" replies of a connection that
 * has SUBSCRIBEd (each SUBSCRIBE/PSUBSCRIBE of one channel is answered once
 * through its handler, like any command).  Set "quiet" on a secondary
 * connection so that only the main one logs outages.
 *
 * TLS ("canary_redis ... tls"): after connect() the client runs nginx's
 * own TLS handshake (ngx_ssl_handshake(), non-blocking), then checks the
 * certificate (SSL_get_verify_result(), ngx_ssl_check_host()) when
 * verification is on; a failure is one line naming the peer and the
 * reason, then the usual backoff.  ACL users: "user=" makes AUTH send the
 * user and the password.
 *
 * Cluster ("canary_redis cluster=host:port,..."): the client connects
 * to the master of the one slot of the module's keys and follows MOVED
 * and ASK (replies still in the order sent), see
 * ngx_http_canary_cluster.h and ngx_http_canary_redis_queue.h.
 *
 * Sentinel ("canary_redis sentinel=... master=NAME"): the clients of the
 * process share one connection to each sentinel, which asks where the
 * master is (SENTINEL get-master-addr-by-name) and then SUBSCRIBEs to
 * "+switch-master"; each client checks ROLE after AUTH/SELECT (a replica
 * is refused and the sentinels are asked again) and moves at once on a
 * "+switch-master".  Any lost connection asks the sentinels again.
 *
 * The client knows nothing of rollouts: it depends on nginx and hiredis
 * only.  Sentinel (ngx_http_canary_sentinel.c) is plugged in through
 * conf->locator by the canary_redis directive
 * (ngx_http_canary_redis_conf.c).
 */


#ifndef _NGX_HTTP_CANARY_REDIS_H_INCLUDED_
#define _NGX_HTTP_CANARY_REDIS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>

#include <hiredis/hiredis.h>


/* not exported from the module, see ngx_http_canary_module.h */
#if (__GNUC__ >= 4)
#pragma GCC visibility push(hidden)
#endif


/* a client's states, see ngx_http_canary_redis.c */
#define NGX_HTTP_CANARY_REDIS_CLOSED       0
#define NGX_HTTP_CANARY_REDIS_CONNECTING   1
#define NGX_HTTP_CANARY_REDIS_HELLO        2
#define NGX_HTTP_CANARY_REDIS_READY        3

#define NGX_HTTP_CANARY_REDIS_BACKOFF_MIN  100
#define NGX_HTTP_CANARY_REDIS_BACKOFF_MAX  5000


typedef struct ngx_http_canary_redis_s  ngx_http_canary_redis_t;
typedef struct ngx_http_canary_redis_conf_s  ngx_http_canary_redis_conf_t;


/*
 * Where a client behind Sentinel or in a cluster connects, and what the
 * locator hears of it (ngx_http_canary_sentinel.c, _cluster.c): locate()
 * gives rc->addr and rc->host (NGX_OK), or has the client wait for the
 * master (NGX_AGAIN), or has failed it (NGX_ERROR); lost() when its
 * connection failed; leave() when it is closed for good; refused(), when
 * set, sees every error reply first: NGX_DECLINED passes it on to the
 * command's handler, NGX_OK means the locator dealt with it (MOVED: the
 * client moved; its waiting commands were answered with NULL).
 */
typedef struct {
    ngx_int_t                       (*locate)(ngx_http_canary_redis_t *rc);
    void                            (*lost)(ngx_http_canary_redis_t *rc);
    void                            (*leave)(ngx_http_canary_redis_t *rc);
    ngx_int_t                       (*refused)(ngx_http_canary_redis_t *rc,
                                        redisReply *reply);
} ngx_http_canary_redis_locator_t;


/* canary_redis: where Redis is and how to talk to it */
struct ngx_http_canary_redis_conf_s {
    ngx_str_t                       name;       /* as written */
    ngx_addr_t                      addr;
    ngx_str_t                       host;       /* TLS name by default */
    ngx_str_t                       user;       /* ACL user, or empty */
    ngx_str_t                       password;
    ngx_uint_t                      db;
    ngx_str_t                       prefix;     /* default "canary:" */
    ngx_msec_t                      timeout;

    /* more addresses tried in turn (the sentinels), addr is the first */
    ngx_addr_t                     *addrs;
    ngx_str_t                      *hosts;
    ngx_uint_t                      naddrs;

    /* "sentinel=": the master's name and how to reach the sentinels */
    ngx_str_t                       master;
    ngx_http_canary_redis_conf_t   *sentinel;
    ngx_http_canary_redis_locator_t  *locator;  /* with "sentinel=" */

    /* "cluster=": the seeds in addrs, the slot of the prefix's hash tag */
    ngx_uint_t                      slot;

    ngx_str_t                       tls_name;   /* tls_name=, or empty */
#if (NGX_SSL)
    ngx_ssl_t                      *ssl;        /* "tls", or NULL */
#endif
    unsigned                        tls:1;
    unsigned                        tls_verify:1;
    unsigned                        cluster:1;
};


typedef void (*ngx_http_canary_redis_handler_pt)(ngx_http_canary_redis_t *rc,
    redisReply *reply, void *data);


/* a command waiting for its reply, see ngx_http_canary_redis_queue.h */
typedef struct {
    ngx_http_canary_redis_handler_pt  handler;
    void                             *data;
    u_char                           *cmd;      /* its bytes, if kept */
    size_t                            len;
    redisReply                       *reply;    /* held, see there */
    ngx_uint_t                        id;
    unsigned                          asked:1;  /* answered elsewhere */
} ngx_http_canary_redis_cmd_t;


struct ngx_http_canary_redis_s {
    ngx_http_canary_redis_conf_t     *conf;
    const char                       *label;
    ngx_log_t                         log;       /* for our own lines */
    ngx_log_t                         conn_log;  /* for the socket layer */
    ngx_peer_connection_t             peer;
    ngx_addr_t                        addr;      /* the peer, this try */
    ngx_str_t                         host;      /* its name, for TLS */
    ngx_uint_t                        next;      /* of conf->addrs */
    ngx_pool_t                       *pool;      /* a TLS connection's */
    redisReader                      *reader;
    ngx_event_t                       reconnect;

    u_char                           *out;
    size_t                            out_pos;
    size_t                            out_len;
    size_t                            out_size;

    ngx_http_canary_redis_cmd_t      *pending;   /* a ring */
    ngx_uint_t                        pending_head;
    ngx_uint_t                        npending;
    ngx_uint_t                        pending_size;
    ngx_uint_t                        nanswered; /* asked or held, first */
    ngx_uint_t                        ids;

    ngx_uint_t                        state;
    ngx_uint_t                        generation;
    ngx_uint_t                        moved;     /* by a MOVED, times */
    ngx_msec_t                        backoff;
    ngx_uint_t                        tries;     /* failed, this outage */

    void                            (*on_ready)(ngx_http_canary_redis_t *rc);
    void                            (*on_push)(ngx_http_canary_redis_t *rc,
                                          redisReply *reply);
    void                             *data;

    /* the last line of the socket or TLS layer: the reason of a failure */
    u_char                            reason[256];
    size_t                            reason_len;

    unsigned                          quiet:1;
    unsigned                          tls:1;     /* this connection */
    unsigned                          wait_master:1; /* for the sentinels */
    unsigned                          down:1;    /* an outage was logged */
    unsigned                          garbage:1; /* and garbage, once */
    unsigned                          refused:1; /* AUTH/ROLE, once */
    unsigned                          closed:1;  /* for good */
    unsigned                          keep:1;    /* commands' bytes */
};


ngx_http_canary_redis_t *ngx_http_canary_redis_create(ngx_cycle_t *cycle,
    ngx_http_canary_redis_conf_t *conf, const char *label);
void ngx_http_canary_redis_connect(ngx_http_canary_redis_t *rc);
ngx_int_t ngx_http_canary_redis_send(ngx_http_canary_redis_t *rc, int argc,
    const char **argv, const size_t *argvlen,
    ngx_http_canary_redis_handler_pt handler, void *data);
ngx_int_t ngx_http_canary_redis_send_bytes(ngx_http_canary_redis_t *rc,
    u_char *cmd, size_t len, ngx_http_canary_redis_handler_pt handler,
    void *data);
ngx_uint_t ngx_http_canary_redis_ready(ngx_http_canary_redis_t *rc);
void ngx_http_canary_redis_close(ngx_http_canary_redis_t *rc);

/* the client's own, for Sentinel's connections */
void ngx_http_canary_redis_fail(ngx_http_canary_redis_t *rc, ngx_err_t err,
    const char *why);
void ngx_http_canary_redis_drop(ngx_http_canary_redis_t *rc);


#if (__GNUC__ >= 4)
#pragma GCC visibility pop
#endif


#endif /* _NGX_HTTP_CANARY_REDIS_H_INCLUDED_ */
