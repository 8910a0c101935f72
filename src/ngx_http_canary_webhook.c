
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * Webhooks: "canary_webhook <url> [format=json|slack] [timeout=5s]
 * [events=a,b,...] [ca=<file>]" (http level, several allowed).  Every
 * history event that this node makes (its controller's decisions, the
 * operators' changes its controller notes as leader, its control API's
 * writes, its restores) is POSTed to each webhook whose "events" take
 * it: the JSON object of the alert channel (format=json), or
 * {"text": "<one line>"} that a Slack incoming webhook accepts
 * (format=slack).
 *
 * The senders are made in a process at its first event (the sync
 * worker, a worker that served an API write), and each webhook has a
 * queue of its own there ("queue=", 64 events by default: more are
 * dropped, with a log line),
 * sent in order, one request at a time, through the
 * non-blocking client of ngx_http_canary_http.c.  A 2xx takes the event
 * off; a 4xx drops it (logged); a 5xx, a timeout or a connection failure
 * is logged and tried again 1, 2, 4 and 8 s later, then dropped: a
 * receiver down for up to 15 s gets every event, in order.  Nothing here
 * ever waits: routing and the controller go on whatever the receivers do.
 * URLs are logged without their userinfo and query.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_http.h>

#include "ngx_http_canary_module.h"
#include "ngx_http_canary_http.h"
#include "ngx_http_canary_webhook.h"


typedef struct {
    ngx_str_t                         url;      /* NUL-terminated */
    ngx_uint_t                        slack;
    ngx_msec_t                        timeout;
    ngx_array_t                      *events;   /* ngx_str_t, NULL: all */
    ngx_str_t                         ca;
    ngx_uint_t                        queue;    /* events queued, at most */
} ngx_http_canary_webhook_conf_t;


typedef struct {
    u_char                           *body;
    size_t                            len;
    char                              event[16];
} ngx_http_canary_webhook_event_t;


typedef struct {
    ngx_http_canary_webhook_conf_t   *conf;
    ngx_http_canary_webhook_event_t  *queue;    /* conf->queue of them */
    ngx_uint_t                        head;
    ngx_uint_t                        n;
    ngx_uint_t                        attempts;
    ngx_msec_t                        next;     /* ngx_current_msec */
    size_t                            shown_len;
    u_char                            shown[NGX_HTTP_CANARY_HTTP_SHOWN_LEN];
    unsigned                          busy:1;
} ngx_http_canary_webhook_t;


static ngx_int_t ngx_http_canary_webhook_init(ngx_cycle_t *cycle,
    ngx_array_t *webhooks);
static ngx_int_t ngx_http_canary_webhook_param(ngx_conf_t *cf,
    ngx_http_canary_webhook_conf_t *wh, ngx_str_t *v);
static ngx_int_t ngx_http_canary_webhook_events(ngx_conf_t *cf,
    ngx_http_canary_webhook_conf_t *wh, ngx_str_t *v);
static ngx_uint_t ngx_http_canary_webhook_wants(
    ngx_http_canary_webhook_conf_t *wh, const char *event);
static void ngx_http_canary_webhook_push(ngx_http_canary_webhook_t *w,
    const char *event, u_char *body, size_t len, ngx_uint_t escape);
static void ngx_http_canary_webhook_kick(ngx_http_canary_webhook_t *w);
static void ngx_http_canary_webhook_done(void *data, ngx_uint_t status,
    const char *error);
static void ngx_http_canary_webhook_pop(ngx_http_canary_webhook_t *w);
static void ngx_http_canary_webhook_timer(ngx_event_t *ev);


/*
 * the events a history entry may be, as "events=" names them: the
 * controller's, an operator's change, a restore, the control API's writes
 */
static const char  *ngx_http_canary_webhook_names[] = {
    "start", "advance", "promote", "hold", "failed_check", "rollback",
    "waiting", "approved", "approve_refused", "dark_passed", "arm_off",
    "operator", "restored", "patch", "pause", "resume", "abort", "approve",
    "add_user", "remove_user", NULL
};


static ngx_http_canary_http_t     *ngx_http_canary_webhook_http;
static ngx_http_canary_webhook_t  *ngx_http_canary_webhooks;
static ngx_uint_t                  ngx_http_canary_webhooks_n;
static ngx_event_t                 ngx_http_canary_webhook_ev;
static ngx_uint_t                  ngx_http_canary_webhook_made;


char *
ngx_http_canary_webhook_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_array_t  **webhooks = (ngx_array_t **)
                              ((char *) conf + cmd->offset);

    ngx_str_t                       *value;
    ngx_uint_t                       i;
    ngx_http_canary_webhook_conf_t  *wh;

    value = cf->args->elts;

    if (ngx_strncasecmp(value[1].data, (u_char *) "http://", 7) != 0
        && ngx_strncasecmp(value[1].data, (u_char *) "https://", 8) != 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid canary_webhook URL: it must begin with "
                           "http:// or https://");
        return NGX_CONF_ERROR;
    }

    if (*webhooks == NULL) {
        *webhooks = ngx_array_create(cf->pool, 2,
                                     sizeof(ngx_http_canary_webhook_conf_t));
        if (*webhooks == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    wh = ngx_array_push(*webhooks);
    if (wh == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(wh, sizeof(ngx_http_canary_webhook_conf_t));

    /* the configuration's words are NUL-terminated, as libcurl wants */

    wh->url = value[1];
    wh->timeout = 5000;
    wh->queue = NGX_HTTP_CANARY_WEBHOOK_QUEUE;

    for (i = 2; i < cf->args->nelts; i++) {
        if (ngx_http_canary_webhook_param(cf, wh, &value[i]) != NGX_OK) {
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_canary_webhook_param(ngx_conf_t *cf,
    ngx_http_canary_webhook_conf_t *wh, ngx_str_t *v)
{
    ngx_str_t  s;

    if (v->len == 11 && ngx_strncmp(v->data, "format=json", 11) == 0) {
        wh->slack = 0;
        return NGX_OK;
    }

    if (v->len == 12 && ngx_strncmp(v->data, "format=slack", 12) == 0) {
        wh->slack = 1;
        return NGX_OK;
    }

    if (v->len > 8 && ngx_strncmp(v->data, "timeout=", 8) == 0) {
        s.data = v->data + 8;
        s.len = v->len - 8;
        wh->timeout = ngx_parse_time(&s, 0);

        if (wh->timeout == (ngx_msec_t) NGX_ERROR || wh->timeout == 0
            || wh->timeout > 60000)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid canary_webhook \"%V\": the timeout "
                               "must be above 0 and at most 60s", v);
            return NGX_ERROR;
        }

        return NGX_OK;
    }

    if (v->len > 6 && ngx_strncmp(v->data, "queue=", 6) == 0) {
        wh->queue = ngx_atoi(v->data + 6, v->len - 6);

        if (wh->queue == (ngx_uint_t) NGX_ERROR || wh->queue == 0
            || wh->queue > NGX_HTTP_CANARY_WEBHOOK_QUEUE_MAX)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid canary_webhook \"%V\": the queue "
                               "must be 1..%d events", v,
                               NGX_HTTP_CANARY_WEBHOOK_QUEUE_MAX);
            return NGX_ERROR;
        }

        return NGX_OK;
    }

    if (v->len > 7 && ngx_strncmp(v->data, "events=", 7) == 0) {
        return ngx_http_canary_webhook_events(cf, wh, v);
    }

    if (v->len > 3 && ngx_strncmp(v->data, "ca=", 3) == 0) {
        wh->ca.data = v->data + 3;
        wh->ca.len = v->len - 3;
        return ngx_conf_full_name(cf->cycle, &wh->ca, 1);
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid canary_webhook parameter \"%V\"", v);

    return NGX_ERROR;
}


/* "events=rollback,waiting": each one of the history's events */

static ngx_int_t
ngx_http_canary_webhook_events(ngx_conf_t *cf,
    ngx_http_canary_webhook_conf_t *wh, ngx_str_t *v)
{
    u_char     *p, *last, *comma;
    ngx_str_t  *e;
    ngx_uint_t  k;

    wh->events = ngx_array_create(cf->pool, 4, sizeof(ngx_str_t));
    if (wh->events == NULL) {
        return NGX_ERROR;
    }

    p = v->data + 7;
    last = v->data + v->len;

    while (p <= last) {
        comma = ngx_strlchr(p, last, ',');
        if (comma == NULL) {
            comma = last;
        }

        for (k = 0; ngx_http_canary_webhook_names[k]; k++) {
            if ((size_t) (comma - p)
                    == ngx_strlen(ngx_http_canary_webhook_names[k])
                && ngx_strncmp(p, ngx_http_canary_webhook_names[k],
                               comma - p) == 0)
            {
                break;
            }
        }

        if (ngx_http_canary_webhook_names[k] == NULL) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid canary_webhook \"%V\": unknown "
                               "event \"%*s\"", v, comma - p, p);
            return NGX_ERROR;
        }

        e = ngx_array_push(wh->events);
        if (e == NULL) {
            return NGX_ERROR;
        }

        e->data = p;
        e->len = comma - p;
        p = comma + 1;
    }

    return NGX_OK;
}


/* the senders of this process, made at its first event */

static ngx_int_t
ngx_http_canary_webhook_init(ngx_cycle_t *cycle, ngx_array_t *webhooks)
{
    ngx_uint_t                       i;
    ngx_http_canary_webhook_t       *w;
    ngx_http_canary_webhook_conf_t  *wh;

    ngx_http_canary_webhook_http = ngx_http_canary_http_create(cycle->log);
    if (ngx_http_canary_webhook_http == NULL) {
        return NGX_ERROR;
    }

    w = ngx_pcalloc(cycle->pool,
                    webhooks->nelts * sizeof(ngx_http_canary_webhook_t));
    if (w == NULL) {
        return NGX_ERROR;
    }

    wh = webhooks->elts;

    for (i = 0; i < webhooks->nelts; i++) {
        w[i].conf = &wh[i];
        w[i].queue = ngx_pcalloc(cycle->pool, wh[i].queue
                                 * sizeof(ngx_http_canary_webhook_event_t));
        if (w[i].queue == NULL) {
            return NGX_ERROR;
        }

        w[i].shown_len = ngx_http_canary_http_shown((char *) wh[i].url.data,
                                                    w[i].shown,
                                                    sizeof(w[i].shown));
    }

    ngx_http_canary_webhooks = w;
    ngx_http_canary_webhooks_n = webhooks->nelts;

    ngx_http_canary_webhook_ev.handler = ngx_http_canary_webhook_timer;
    ngx_http_canary_webhook_ev.log = cycle->log;
    ngx_http_canary_webhook_ev.cancelable = 1;

    return NGX_OK;
}


void
ngx_http_canary_webhook_stop(void)
{
    ngx_uint_t  i;

    ngx_http_canary_webhook_made = 1;

    if (ngx_http_canary_webhook_http == NULL) {
        return;
    }

    ngx_http_canary_http_destroy(ngx_http_canary_webhook_http);
    ngx_http_canary_webhook_http = NULL;

    if (ngx_http_canary_webhook_ev.timer_set) {
        ngx_del_timer(&ngx_http_canary_webhook_ev);
    }

    for (i = 0; i < ngx_http_canary_webhooks_n; i++) {
        while (ngx_http_canary_webhooks[i].n) {
            ngx_http_canary_webhook_pop(&ngx_http_canary_webhooks[i]);
        }
    }

    ngx_http_canary_webhooks_n = 0;
}


void
ngx_http_canary_webhook_send(const char *event, u_char *json,
    size_t json_len, u_char *text, size_t text_len)
{
    ngx_uint_t                    i;
    ngx_http_canary_webhook_t    *w;
    ngx_http_canary_main_conf_t  *cmcf;

    if (!ngx_http_canary_webhook_made) {
        ngx_http_canary_webhook_made = 1;

        cmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                                   ngx_http_canary_module);

        if (cmcf->webhooks && cmcf->webhooks->nelts && !ngx_exiting
            && ngx_http_canary_webhook_init((ngx_cycle_t *) ngx_cycle,
                                            cmcf->webhooks)
               != NGX_OK)
        {
            ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                          "canary webhook: the senders could not be made, "
                          "no event is sent from this process");
            ngx_http_canary_webhooks_n = 0;
        }
    }

    for (i = 0; i < ngx_http_canary_webhooks_n; i++) {
        w = &ngx_http_canary_webhooks[i];

        if (!ngx_http_canary_webhook_wants(w->conf, event)) {
            continue;
        }

        if (w->conf->slack) {
            ngx_http_canary_webhook_push(w, event, text, text_len, 1);

        } else {
            ngx_http_canary_webhook_push(w, event, json, json_len, 0);
        }

        ngx_http_canary_webhook_kick(w);
    }
}


static ngx_uint_t
ngx_http_canary_webhook_wants(ngx_http_canary_webhook_conf_t *wh,
    const char *event)
{
    size_t      len;
    ngx_str_t  *e;
    ngx_uint_t  i;

    if (wh->events == NULL) {
        return 1;
    }

    len = ngx_strlen(event);
    e = wh->events->elts;

    for (i = 0; i < wh->events->nelts; i++) {
        if (e[i].len == len && ngx_strncmp(e[i].data, event, len) == 0) {
            return 1;
        }
    }

    return 0;
}


/* the body queued: as given, or {"text":"<escaped>"} */

static void
ngx_http_canary_webhook_push(ngx_http_canary_webhook_t *w,
    const char *event, u_char *body, size_t len, ngx_uint_t escape)
{
    u_char                           *p;
    size_t                            size;
    ngx_http_canary_webhook_event_t  *e;

    if (w->n == w->conf->queue) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "canary webhook: %*s has %ui events queued, the "
                      "\"%s\" event is dropped", w->shown_len, w->shown,
                      w->n, event);
        return;
    }

    size = escape ? sizeof("{\"text\":\"\"}") - 1
                    + len + ngx_escape_json(NULL, body, len)
                  : len;

    p = ngx_alloc(size, ngx_cycle->log);
    if (p == NULL) {
        return;
    }

    e = &w->queue[(w->head + w->n) % w->conf->queue];
    e->body = p;
    ngx_cpystrn((u_char *) e->event, (u_char *) event, sizeof(e->event));

    if (escape) {
        p = ngx_cpymem(p, "{\"text\":\"", sizeof("{\"text\":\"") - 1);
        p = (u_char *) ngx_escape_json(p, body, len);
        p = ngx_cpymem(p, "\"}", 2);

    } else {
        p = ngx_cpymem(p, body, len);
    }

    e->len = p - e->body;
    w->n++;
}


/* the head of the queue sent, unless one is in flight or it must wait */

static void
ngx_http_canary_webhook_kick(ngx_http_canary_webhook_t *w)
{
    ngx_msec_int_t                    wait;
    ngx_http_canary_webhook_event_t  *e;
    ngx_http_canary_http_request_t    rq;

    if (w->busy || w->n == 0 || ngx_http_canary_webhook_http == NULL) {
        return;
    }

    wait = (ngx_msec_int_t) (w->next - ngx_current_msec);

    if (w->attempts && wait > 0) {
        if (!ngx_http_canary_webhook_ev.timer_set
            || ngx_http_canary_webhook_ev.timer.key
               > ngx_current_msec + wait)
        {
            ngx_add_timer(&ngx_http_canary_webhook_ev, (ngx_msec_t) wait);
        }

        return;
    }

    e = &w->queue[w->head];

    ngx_memzero(&rq, sizeof(ngx_http_canary_http_request_t));

    rq.url = (char *) w->conf->url.data;
    rq.body = e->body;
    rq.body_len = e->len;
    rq.headers[0] = "Content-Type: application/json";
    rq.nheaders = 1;
    rq.timeout = w->conf->timeout;
    rq.ca = w->conf->ca.len ? (char *) w->conf->ca.data : NULL;
    rq.handler = ngx_http_canary_webhook_done;
    rq.data = w;

    w->busy = 1;

    if (ngx_http_canary_http_request(ngx_http_canary_webhook_http, &rq)
        != NGX_OK)
    {
        w->busy = 0;
        ngx_http_canary_webhook_done(w, 0, "the request could not start");
    }
}


static void
ngx_http_canary_webhook_done(void *data, ngx_uint_t status,
    const char *error)
{
    ngx_http_canary_webhook_t *w = data;

    u_char                           *p;
    u_char                            why[NGX_HTTP_CANARY_HTTP_SHOWN_LEN];
    ngx_msec_t                        delay;
    ngx_http_canary_webhook_event_t  *e;

    w->busy = 0;
    e = &w->queue[w->head];

    if (status >= 200 && status < 300) {
        w->attempts = 0;
        ngx_http_canary_webhook_pop(w);
        ngx_http_canary_webhook_kick(w);
        return;
    }

    if (status >= 400 && status < 500) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "canary webhook: %*s answered %ui, the \"%s\" event "
                      "is dropped", w->shown_len, w->shown, status,
                      e->event);
        w->attempts = 0;
        ngx_http_canary_webhook_pop(w);
        ngx_http_canary_webhook_kick(w);
        return;
    }

    p = status ? ngx_snprintf(why, sizeof(why) - 1, "answered %ui", status)
               : ngx_snprintf(why, sizeof(why) - 1, "failed: %s", error);
    *p = '\0';

    w->attempts++;

    if (w->attempts >= NGX_HTTP_CANARY_WEBHOOK_ATTEMPTS) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "canary webhook: %*s %s, the \"%s\" event is dropped "
                      "after %d attempts", w->shown_len, w->shown, why,
                      e->event, NGX_HTTP_CANARY_WEBHOOK_ATTEMPTS);
        w->attempts = 0;
        ngx_http_canary_webhook_pop(w);
        ngx_http_canary_webhook_kick(w);
        return;
    }

    /* 1, 2, 4, 8 s */

    delay = (ngx_msec_t) 1000 << (w->attempts - 1);
    w->next = ngx_current_msec + delay;

    ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                  "canary webhook: %*s %s on the \"%s\" event (attempt %ui "
                  "of %d), again in %Mms", w->shown_len, w->shown, why,
                  e->event, w->attempts, NGX_HTTP_CANARY_WEBHOOK_ATTEMPTS,
                  delay);

    ngx_http_canary_webhook_kick(w);
}


static void
ngx_http_canary_webhook_pop(ngx_http_canary_webhook_t *w)
{
    ngx_free(w->queue[w->head].body);
    w->queue[w->head].body = NULL;
    w->head = (w->head + 1) % w->conf->queue;
    w->n--;
}


static void
ngx_http_canary_webhook_timer(ngx_event_t *ev)
{
    ngx_uint_t  i;

    for (i = 0; i < ngx_http_canary_webhooks_n; i++) {
        ngx_http_canary_webhook_kick(&ngx_http_canary_webhooks[i]);
    }
}
