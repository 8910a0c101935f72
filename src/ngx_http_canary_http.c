
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * The outgoing HTTP(S) client (see the header): libcurl's multi-socket
 * interface driven by nginx's event loop.  libcurl says, through
 * CURLMOPT_SOCKETFUNCTION, which socket it wants watched for what; each
 * socket gets an nginx connection (ngx_get_connection(), not a socket of
 * ours: libcurl opens and closes it) whose read and write events are
 * added level-triggered as asked, and removed before libcurl closes it.
 * CURLMOPT_TIMERFUNCTION sets one nginx timer (cancelable, so it never
 * holds a worker that is shutting down).  An event or the timer calls
 * curl_multi_socket_action() for that socket, then the finished
 * transfers are collected and their handlers called.  Nothing blocks:
 * connects, TLS and transfers are libcurl's non-blocking state machines,
 * and names are resolved by its threaded resolver.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include <curl/curl.h>

#include "ngx_http_canary_http.h"


typedef struct {
    ngx_queue_t                       queue;
    CURL                             *easy;
    struct curl_slist                *headers;
    ngx_http_canary_http_handler_pt   handler;
    void                             *data;
    size_t                            received;
    unsigned                          too_large:1;
    char                              error[CURL_ERROR_SIZE];
} ngx_http_canary_http_transfer_t;


struct ngx_http_canary_http_s {
    CURLM                            *multi;
    ngx_log_t                        *log;
    ngx_event_t                       timer;
    ngx_queue_t                       transfers;
    ngx_uint_t                        pending;
};


static int ngx_http_canary_http_socket(CURL *easy, curl_socket_t s,
    int what, void *userp, void *socketp);
static void ngx_http_canary_http_watch(ngx_event_t *ev, ngx_uint_t event,
    int on);
static int ngx_http_canary_http_timer(CURLM *multi, long ms, void *userp);
static void ngx_http_canary_http_read(ngx_event_t *ev);
static void ngx_http_canary_http_write(ngx_event_t *ev);
static void ngx_http_canary_http_timeout(ngx_event_t *ev);
static void ngx_http_canary_http_action(ngx_http_canary_http_t *h,
    curl_socket_t s, int mask);
static void ngx_http_canary_http_done(ngx_http_canary_http_t *h);
static void ngx_http_canary_http_free(ngx_http_canary_http_t *h,
    ngx_http_canary_http_transfer_t *t);
static size_t ngx_http_canary_http_body(char *ptr, size_t size,
    size_t nmemb, void *userdata);


static ngx_uint_t  ngx_http_canary_http_initialized;


/*
 * libcurl's OpenSSL is nginx's: what libcurl leaves in the thread's error
 * queue (a failed verification, a shutdown during a handshake) must not
 * be taken by nginx for an error of its own next SSL call
 */

#if (NGX_OPENSSL)
#define ngx_http_canary_http_clear_ssl_errors()  ERR_clear_error()
#else
#define ngx_http_canary_http_clear_ssl_errors()
#endif


ngx_http_canary_http_t *
ngx_http_canary_http_create(ngx_log_t *log)
{
    ngx_http_canary_http_t  *h;

    if (!ngx_http_canary_http_initialized) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
            ngx_log_error(NGX_LOG_ALERT, log, 0,
                          "canary http: curl_global_init() failed");
            return NULL;
        }

        ngx_http_canary_http_initialized = 1;
    }

    h = ngx_calloc(sizeof(ngx_http_canary_http_t), log);
    if (h == NULL) {
        return NULL;
    }

    h->multi = curl_multi_init();
    if (h->multi == NULL) {
        ngx_free(h);
        return NULL;
    }

    h->log = log;
    ngx_queue_init(&h->transfers);

    h->timer.handler = ngx_http_canary_http_timeout;
    h->timer.data = h;
    h->timer.log = log;
    h->timer.cancelable = 1;

    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION,
                      ngx_http_canary_http_socket);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION,
                      ngx_http_canary_http_timer);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);

    return h;
}


ngx_int_t
ngx_http_canary_http_request(ngx_http_canary_http_t *h,
    ngx_http_canary_http_request_t *rq)
{
    CURL                             *e;
    ngx_uint_t                        i;
    struct curl_slist                *l;
    ngx_http_canary_http_transfer_t  *t;

    t = ngx_calloc(sizeof(ngx_http_canary_http_transfer_t), h->log);
    if (t == NULL) {
        return NGX_ERROR;
    }

    e = curl_easy_init();
    if (e == NULL) {
        ngx_free(t);
        return NGX_ERROR;
    }

    t->easy = e;
    t->handler = rq->handler;
    t->data = rq->data;

    /* no "Expect: 100-continue" round trip before a body */

    t->headers = curl_slist_append(NULL, "Expect:");

    for (i = 0; t->headers && i < rq->nheaders; i++) {
        l = curl_slist_append(t->headers, rq->headers[i]);
        if (l == NULL) {
            break;
        }

        t->headers = l;
    }

    if (t->headers == NULL
        || i < rq->nheaders
        || curl_easy_setopt(e, CURLOPT_URL, rq->url) != CURLE_OK
        || curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https")
           != CURLE_OK)
    {
        ngx_http_canary_http_free(h, t);
        return NGX_ERROR;
    }

    curl_easy_setopt(e, CURLOPT_PRIVATE, t);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->error);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_PROXY, "");
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long) rq->timeout);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long) rq->timeout);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "ngx_http_canary_module");
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->headers);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, ngx_http_canary_http_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);

    if (rq->ca) {
        curl_easy_setopt(e, CURLOPT_CAINFO, rq->ca);
    }

    if (rq->body) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long) rq->body_len);
        curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, rq->body);
    }

    if (curl_multi_add_handle(h->multi, e) != CURLM_OK) {
        ngx_http_canary_http_free(h, t);
        return NGX_ERROR;
    }

    ngx_http_canary_http_clear_ssl_errors();

    ngx_queue_insert_tail(&h->transfers, &t->queue);
    h->pending++;

    return NGX_OK;
}


ngx_uint_t
ngx_http_canary_http_pending(ngx_http_canary_http_t *h)
{
    return h->pending;
}


void
ngx_http_canary_http_destroy(ngx_http_canary_http_t *h)
{
    ngx_queue_t                      *q;
    ngx_http_canary_http_transfer_t  *t;

    while (!ngx_queue_empty(&h->transfers)) {
        q = ngx_queue_head(&h->transfers);
        t = ngx_queue_data(q, ngx_http_canary_http_transfer_t, queue);

        ngx_queue_remove(q);
        curl_multi_remove_handle(h->multi, t->easy);
        ngx_http_canary_http_free(h, t);
    }

    curl_multi_cleanup(h->multi);
    ngx_http_canary_http_clear_ssl_errors();

    if (h->timer.timer_set) {
        ngx_del_timer(&h->timer);
    }

    ngx_free(h);
}


size_t
ngx_http_canary_http_shown(const char *url, u_char *buf, size_t size)
{
    u_char  *p;
    char    *scheme, *host, *port, *path;
    CURLU   *u;

    scheme = NULL;
    host = NULL;
    port = NULL;
    path = NULL;

    u = curl_url();

    if (u == NULL
        || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK
        || curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK
        || curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK
        || curl_url_get(u, CURLUPART_PATH, &path, 0) != CURLUE_OK)
    {
        p = ngx_snprintf(buf, size, "(an invalid URL)");
        goto done;
    }

    (void) curl_url_get(u, CURLUPART_PORT, &port, CURLU_NO_DEFAULT_PORT);

    p = ngx_snprintf(buf, size, "%s://%s%s%s%s", scheme, host,
                     port ? ":" : "", port ? port : "", path);

done:

    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_free(path);
    curl_url_cleanup(u);

    return p - buf;
}


/* libcurl's wishes for a socket: an nginx connection's events */

static int
ngx_http_canary_http_socket(CURL *easy, curl_socket_t s, int what,
    void *userp, void *socketp)
{
    ngx_http_canary_http_t *h = userp;

    ngx_connection_t  *c;

    c = socketp;

    if (what == CURL_POLL_REMOVE) {
        if (c) {
            ngx_http_canary_http_watch(c->read, NGX_READ_EVENT, 0);
            ngx_http_canary_http_watch(c->write, NGX_WRITE_EVENT, 0);

            if (c->read->posted) {
                ngx_delete_posted_event(c->read);
            }

            if (c->write->posted) {
                ngx_delete_posted_event(c->write);
            }

            /*
             * libcurl closes the socket: the connection only forgets it
             * (and an event of it still in this turn's batch is stale)
             */

            c->fd = (ngx_socket_t) -1;
            ngx_free_connection(c);
            curl_multi_assign(h->multi, s, NULL);
        }

        return 0;
    }

    if (c == NULL) {
        c = ngx_get_connection(s, h->log);
        if (c == NULL) {
            return -1;
        }

        c->data = h;
        c->log = h->log;
        c->read->log = h->log;
        c->write->log = h->log;
        c->read->handler = ngx_http_canary_http_read;
        c->write->handler = ngx_http_canary_http_write;

        curl_multi_assign(h->multi, s, c);
    }

    ngx_http_canary_http_watch(c->read, NGX_READ_EVENT,
                               what & CURL_POLL_IN);
    ngx_http_canary_http_watch(c->write, NGX_WRITE_EVENT,
                               what & CURL_POLL_OUT);

    return 0;
}


/* level-triggered, as libcurl expects: it may leave data to read */

static void
ngx_http_canary_http_watch(ngx_event_t *ev, ngx_uint_t event, int on)
{
    if (on && !ev->active) {
        (void) ngx_add_event(ev, event, NGX_LEVEL_EVENT);

    } else if (!on && ev->active) {
        (void) ngx_del_event(ev, event, 0);
    }
}


static int
ngx_http_canary_http_timer(CURLM *multi, long ms, void *userp)
{
    ngx_http_canary_http_t *h = userp;

    if (ms < 0) {
        if (h->timer.timer_set) {
            ngx_del_timer(&h->timer);
        }

        return 0;
    }

    ngx_add_timer(&h->timer, (ngx_msec_t) ms);

    return 0;
}


static void
ngx_http_canary_http_read(ngx_event_t *ev)
{
    ngx_connection_t *c = ev->data;

    ngx_http_canary_http_action(c->data, c->fd, CURL_CSELECT_IN);
}


static void
ngx_http_canary_http_write(ngx_event_t *ev)
{
    ngx_connection_t *c = ev->data;

    ngx_http_canary_http_action(c->data, c->fd, CURL_CSELECT_OUT);
}


static void
ngx_http_canary_http_timeout(ngx_event_t *ev)
{
    ngx_http_canary_http_action(ev->data, CURL_SOCKET_TIMEOUT, 0);
}


/* the connection may be gone after this: nothing of it is used after */

static void
ngx_http_canary_http_action(ngx_http_canary_http_t *h, curl_socket_t s,
    int mask)
{
    int  running;

    (void) curl_multi_socket_action(h->multi, s, mask, &running);

    ngx_http_canary_http_clear_ssl_errors();
    ngx_http_canary_http_done(h);
}


/* each transfer that ended: freed, then its handler called */

static void
ngx_http_canary_http_done(ngx_http_canary_http_t *h)
{
    int                               left;
    long                              code;
    char                              error[CURL_ERROR_SIZE];
    void                             *data;
    CURLcode                          res;
    CURLMsg                          *msg;
    ngx_uint_t                        status;
    ngx_http_canary_http_transfer_t  *t;
    ngx_http_canary_http_handler_pt   handler;

    while ((msg = curl_multi_info_read(h->multi, &left)) != NULL) {

        if (msg->msg != CURLMSG_DONE) {
            continue;
        }

        t = NULL;
        res = msg->data.result;
        (void) curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE,
                                 (char **) &t);
        if (t == NULL) {
            continue;
        }

        status = 0;
        error[0] = '\0';

        if (res == CURLE_OK) {
            code = 0;
            (void) curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &code);
            status = (ngx_uint_t) code;

        } else if (t->too_large) {
            ngx_sprintf((u_char *) error, "a response larger than %uz "
                        "bytes%Z", (size_t) NGX_HTTP_CANARY_HTTP_MAX_BODY);

        } else {
            ngx_cpystrn((u_char *) error,
                        (u_char *) (t->error[0] ? t->error
                                                : curl_easy_strerror(res)),
                        sizeof(error));
        }

        handler = t->handler;
        data = t->data;

        ngx_queue_remove(&t->queue);
        curl_multi_remove_handle(h->multi, t->easy);
        ngx_http_canary_http_free(h, t);
        h->pending--;

        ngx_http_canary_http_clear_ssl_errors();

        handler(data, status, status ? NULL : error);
    }
}


static void
ngx_http_canary_http_free(ngx_http_canary_http_t *h,
    ngx_http_canary_http_transfer_t *t)
{
    curl_easy_cleanup(t->easy);
    curl_slist_free_all(t->headers);
    ngx_free(t);
}


/* the body is not kept, only counted: too large ends the transfer */

static size_t
ngx_http_canary_http_body(char *ptr, size_t size, size_t nmemb,
    void *userdata)
{
    ngx_http_canary_http_transfer_t *t = userdata;

    t->received += size * nmemb;

    if (t->received > NGX_HTTP_CANARY_HTTP_MAX_BODY) {
        t->too_large = 1;
        return 0;
    }

    return size * nmemb;
}
