
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * A small outgoing HTTP(S) client on nginx's event loop, knowing nothing
 * of rollouts: libcurl's multi-socket interface, its sockets watched by
 * nginx connections' events and its timeouts by one nginx timer.  One
 * client per process that needs it (the controller's); requests run
 * concurrently; each ends in its handler with the HTTP status, or 0 and
 * a reason (connection refused, timeout, TLS, a response too large).
 * Redirects are not followed (a 3xx is an answer like another), only
 * http and https are allowed, certificates and names are verified.
 */


#ifndef _NGX_HTTP_CANARY_HTTP_H_INCLUDED_
#define _NGX_HTTP_CANARY_HTTP_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>


#if (__GNUC__ >= 4)
#pragma GCC visibility push(hidden)
#endif


/* the most of a response body read (the rest fails the request) */
#define NGX_HTTP_CANARY_HTTP_MAX_BODY     (64 * 1024)

#define NGX_HTTP_CANARY_HTTP_MAX_HEADERS  8

/* a URL as logs and status show it: no userinfo, no query, at most */
#define NGX_HTTP_CANARY_HTTP_SHOWN_LEN    256


typedef struct ngx_http_canary_http_s  ngx_http_canary_http_t;

/* status: the HTTP status, or 0 with "error" saying why */
typedef void (*ngx_http_canary_http_handler_pt)(void *data,
    ngx_uint_t status, const char *error);


typedef struct {
    const char                       *url;      /* NUL-terminated */
    const u_char                     *body;     /* POST it; NULL: GET */
    size_t                            body_len;
    const char                       *headers[NGX_HTTP_CANARY_HTTP_MAX_HEADERS];
    ngx_uint_t                        nheaders; /* "Name: value" each */
    ngx_msec_t                        timeout;  /* the whole request */
    const char                       *ca;       /* CA file, NULL: system */
    ngx_http_canary_http_handler_pt   handler;
    void                             *data;
} ngx_http_canary_http_request_t;


ngx_http_canary_http_t *ngx_http_canary_http_create(ngx_log_t *log);

/*
 * Starts a request (its strings are copied); NGX_ERROR if it cannot
 * start, and then the handler is not called
 */
ngx_int_t ngx_http_canary_http_request(ngx_http_canary_http_t *h,
    ngx_http_canary_http_request_t *rq);

/* requests in flight */
ngx_uint_t ngx_http_canary_http_pending(ngx_http_canary_http_t *h);

/* ends every request without calling its handler, frees the client */
void ngx_http_canary_http_destroy(ngx_http_canary_http_t *h);

/* "scheme://host[:port]/path" of a URL, into buf; its length */
size_t ngx_http_canary_http_shown(const char *url, u_char *buf,
    size_t size);


#if (__GNUC__ >= 4)
#pragma GCC visibility pop
#endif


#endif /* _NGX_HTTP_CANARY_HTTP_H_INCLUDED_ */
