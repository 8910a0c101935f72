
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * External checks of the automatic rollout ("auto ... check=<url>
 * [check_timeout=5s] [check_ca=<file>]"): before the leader judges an
 * interval, it requests every URL (GET, with X-Canary-Rollout,
 * X-Canary-Step and X-Canary-Percent) through the non-blocking client of
 * ngx_http_canary_http.c, and judges once all have answered.  An answer
 * other than 2xx, a timeout or a connection failure fails the check; the
 * judgement (ngx_http_canary_auto_decide.c) then fails with the reason
 * "check <url> answered 500", counted towards "failures" like a breached
 * threshold.  URLs are shown without their userinfo and query.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_http.h>

#include "ngx_http_canary_module.h"
#include "ngx_http_canary_http.h"
#include "ngx_http_canary_auto_fields.h"
#include "ngx_http_canary_auto_check.h"


struct ngx_http_canary_auto_check_s {
    ngx_http_canary_auto_rollout_t  *ar;
    ngx_str_t                       *url;
    size_t                           shown_len;
    u_char                           shown[NGX_HTTP_CANARY_HTTP_SHOWN_LEN];
};


static ngx_int_t ngx_http_canary_auto_checks_init(
    ngx_http_canary_auto_rollout_t *ar);
static void ngx_http_canary_auto_check_handler(void *data,
    ngx_uint_t status, const char *error);
static void ngx_http_canary_auto_check_fail(
    ngx_http_canary_auto_rollout_t *ar, const char *fmt, ...);


void
ngx_http_canary_auto_checks(ngx_http_canary_auto_rollout_t *ar,
    uint64_t judge)
{
    u_char                          *p;
    u_char                           hdr[3][NGX_HTTP_CANARY_HTTP_SHOWN_LEN];
    ngx_uint_t                       i, pct;
    ngx_http_canary_auto_check_t    *ck;
    ngx_http_canary_http_request_t   rq;

    ar->checking = judge;
    ar->check_failed = 0;
    ar->check_reason[0] = '\0';
    ar->check_pending = 0;

    if (ngx_http_canary_auto_checks_init(ar) != NGX_OK) {
        ngx_http_canary_auto_check_fail(ar, "the checks could not start");
        ar->check_for = judge;
        ar->checking = 0;
        return;
    }

    ngx_memzero(&rq, sizeof(ngx_http_canary_http_request_t));

    pct = ar->ro->sh->snapshot->percent;

    p = ngx_snprintf(hdr[0], sizeof(hdr[0]) - 1, "X-Canary-Rollout: %V",
                     &ar->ro->name);
    *p = '\0';
    p = ngx_snprintf(hdr[1], sizeof(hdr[1]) - 1, "X-Canary-Step: %ui",
                     ar->ro->sh->autost ? ar->ro->sh->autost->step : 0);
    *p = '\0';
    p = ngx_snprintf(hdr[2], sizeof(hdr[2]) - 1,
                     "X-Canary-Percent: %ui.%02ui", pct / 100, pct % 100);
    *p = '\0';

    rq.headers[0] = (char *) hdr[0];
    rq.headers[1] = (char *) hdr[1];
    rq.headers[2] = (char *) hdr[2];
    rq.nheaders = 3;
    rq.timeout = ar->ro->check_timeout;
    rq.ca = ar->ro->check_ca.len ? (char *) ar->ro->check_ca.data : NULL;
    rq.handler = ngx_http_canary_auto_check_handler;

    ck = ar->checks;

    for (i = 0; i < ar->ro->checks->nelts; i++) {
        rq.url = (char *) ck[i].url->data;
        rq.data = &ck[i];

        if (ngx_http_canary_http_request(ar->ctl->http, &rq) != NGX_OK) {
            ngx_http_canary_auto_check_fail(ar, "check %*s could not start",
                                            ck[i].shown_len, ck[i].shown);
            continue;
        }

        ar->check_pending++;
    }

    if (ar->check_pending == 0) {
        ar->check_for = judge;
        ar->checking = 0;
    }
}


void
ngx_http_canary_auto_checks_stop(ngx_http_canary_auto_t *ctl)
{
    if (ctl->http) {
        ngx_http_canary_http_destroy(ctl->http);
        ctl->http = NULL;
    }
}


/* the client, and each URL as shown, on first use */

static ngx_int_t
ngx_http_canary_auto_checks_init(ngx_http_canary_auto_rollout_t *ar)
{
    ngx_str_t                     *url;
    ngx_uint_t                     i;
    ngx_http_canary_auto_t        *ctl;
    ngx_http_canary_auto_check_t  *ck;

    ctl = ar->ctl;

    if (ctl->http == NULL) {
        ctl->http = ngx_http_canary_http_create(ctl->log);
        if (ctl->http == NULL) {
            return NGX_ERROR;
        }
    }

    if (ar->checks) {
        return NGX_OK;
    }

    ck = ngx_pcalloc(ngx_cycle->pool,
                     ar->ro->checks->nelts
                     * sizeof(ngx_http_canary_auto_check_t));
    if (ck == NULL) {
        return NGX_ERROR;
    }

    url = ar->ro->checks->elts;

    for (i = 0; i < ar->ro->checks->nelts; i++) {
        ck[i].ar = ar;
        ck[i].url = &url[i];
        ck[i].shown_len = ngx_http_canary_http_shown((char *) url[i].data,
                                                     ck[i].shown,
                                                     sizeof(ck[i].shown));
    }

    ar->checks = ck;

    return NGX_OK;
}


static void
ngx_http_canary_auto_check_handler(void *data, ngx_uint_t status,
    const char *error)
{
    ngx_http_canary_auto_check_t *ck = data;

    ngx_http_canary_auto_rollout_t  *ar;

    ar = ck->ar;

    if (status == 0) {
        ngx_http_canary_auto_check_fail(ar, "check %*s failed: %s",
                                        ck->shown_len, ck->shown, error);

    } else if (status < 200 || status > 299) {
        ngx_http_canary_auto_check_fail(ar, "check %*s answered %ui",
                                        ck->shown_len, ck->shown, status);

    } else {
        ngx_log_debug3(NGX_LOG_DEBUG_HTTP, ar->ctl->log, 0,
                       "canary auto: \"%V\" check %*s passed",
                       &ar->ro->name, ck->shown_len, ck->shown);
    }

    if (--ar->check_pending == 0) {
        ar->check_for = ar->checking;
        ar->checking = 0;
    }
}


/* the first failure is the reason; each is logged */

static void
ngx_http_canary_auto_check_fail(ngx_http_canary_auto_rollout_t *ar,
    const char *fmt, ...)
{
    u_char   *p;
    u_char    buf[NGX_HTTP_CANARY_REASON_LEN];
    va_list   args;

    va_start(args, fmt);
    p = ngx_vslprintf(buf, buf + sizeof(buf) - 1, fmt, args);
    va_end(args);

    *p = '\0';

    ngx_log_error(NGX_LOG_WARN, ar->ctl->log, 0, "canary auto: \"%V\" %s",
                  &ar->ro->name, buf);

    if (!ar->check_failed) {
        ar->check_failed = 1;
        ngx_cpystrn(ar->check_reason, buf, sizeof(ar->check_reason));
    }
}
