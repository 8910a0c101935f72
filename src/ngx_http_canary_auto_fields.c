
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * What the automatic rollout controller's files say to Redis and read
 * from it: the arguments of a command (built in one static buffer, sent
 * before the next is built), the fields of the rollout hash, the values
 * of replies (strict unsigned numbers, states, percents), and the figure
 * fields of an interval, written by every node and read by the leader.
 *
 * A figure field is "<row>:<figure>": the row "s" (stable), "c" (canary,
 * every arm), "d" (shadow traffic) or "arm:<name>" (an arm's own, with
 * several arms; the name may hold ':'), the figure "req" (requests),
 * "err" (errors) or "h<k>" (the k-th bucket of the request time
 * histogram).  Both ways are here, from one table.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_http.h>

#include "ngx_http_canary_module.h"
#include "ngx_http_canary_redis.h"
#include "ngx_http_canary_auto_fields.h"


#if (NGX_HTTP_CANARY_POLICY_HIST != NGX_HTTP_CANARY_HIST_BUCKETS)
#error "the policy's histogram differs from the counters' histogram"
#endif


static ngx_uint_t ngx_http_canary_auto_figure(ngx_str_t *name);


const char  *ngx_http_canary_auto_fields[] = {
    "percent", "state", "step", "since", "checked", "failures",
    "decided_at", "decided_by", "decision", "reason", "interval", "nodes",
    "c_requests", "c_errors", "c_error_rate", "c_p99",
    "s_requests", "s_errors", "s_error_rate", "s_p99",
    "phase", "dark_passed", "gate", "approve"
};


/* a row's figures: requests and errors, then the histogram's "h<k>" */
static const char  *ngx_http_canary_auto_figure_names[] = { "req", "err" };


ngx_http_canary_auto_args_t  ngx_http_canary_auto_args;


ngx_http_canary_redis_args_t *
ngx_http_canary_auto_args_init(ngx_http_canary_auto_args_t *s)
{
    ngx_http_canary_redis_args_init(&s->args, s->argv, s->len,
                                    NGX_HTTP_CANARY_AUTO_MAX_ARGS, s->buf,
                                    sizeof(s->buf));
    return &s->args;
}


/* a field's value as read, "" when missing */

void
ngx_http_canary_auto_arg_reply(ngx_http_canary_redis_args_t *a, redisReply *r)
{
    if (r->type == REDIS_REPLY_STRING) {
        ngx_http_canary_redis_argf(a, "%*s", (size_t) r->len, r->str);

    } else {
        ngx_http_canary_redis_arg(a, "", 0);
    }
}


/* an "approve" value as the apply script compares it: its first bytes */

void
ngx_http_canary_auto_arg_approve(ngx_http_canary_redis_args_t *a,
    redisReply *r)
{
    if (r->type == REDIS_REPLY_STRING) {
        ngx_http_canary_redis_arg(a, r->str,
                                  ngx_min((size_t) r->len,
                                          NGX_HTTP_CANARY_AUTO_APPROVE_LEN));

    } else {
        ngx_http_canary_redis_arg(a, "", 0);
    }
}


void
ngx_http_canary_auto_arg_percent(ngx_http_canary_redis_args_t *a,
    uint32_t hundredths)
{
    char  buf[32];

    if (hundredths == NGX_MAX_UINT32_VALUE) {
        ngx_http_canary_redis_arg(a, "", 0);
        return;
    }

    ngx_http_canary_format_percent(buf, sizeof(buf), hundredths);
    ngx_http_canary_redis_argf(a, "%s", buf);
}


/* c_requests ... s_p99 in the hash; canary_requests ... in the history */

void
ngx_http_canary_auto_arg_figures(ngx_http_canary_redis_args_t *a,
    ngx_http_canary_judgement_t *j, ngx_uint_t history)
{
    char         buf[32];
    ngx_uint_t   v;
    const char  *name;

    for (v = 2; v-- > 0; /* void */) {
        name = history ? (v ? "canary" : "stable") : (v ? "c" : "s");

        ngx_http_canary_redis_argf(a, "%s_requests", name);
        ngx_http_canary_redis_argf(a, "%uL", j->requests[v]);
        ngx_http_canary_redis_argf(a, "%s_errors", name);
        ngx_http_canary_redis_argf(a, "%uL", j->errors[v]);
        ngx_http_canary_redis_argf(a, "%s_error_rate", name);

        if (history) {
            ngx_http_canary_format_rate(buf, sizeof(buf), j->error_rate[v]);
            ngx_http_canary_redis_argf(a, "%s", buf);

        } else {
            ngx_http_canary_redis_argf(a, "%uL", j->error_rate[v]);
        }

        ngx_http_canary_redis_argf(a, history ? "%s_p99_ms" : "%s_p99",
                                   name);

        if (j->p99[v] == NGX_HTTP_CANARY_P99_INF) {
            ngx_http_canary_redis_arg(a, "inf", 3);

        } else {
            ngx_http_canary_redis_argf(a, "%uL", j->p99[v]);
        }
    }
}


/*
 * The name of figure k (ngx_http_canary_auto_figure_names, then "h<k>")
 * of a row: stable, canary, an arm's own (2 + arm index) or shadow's
 * (NGX_HTTP_CANARY_AUTO_SHADOW): "s:req", "c:h3", "arm:blue:err", "d:h0"
 */

void
ngx_http_canary_auto_arg_figure(ngx_http_canary_redis_args_t *a,
    ngx_http_canary_rollout_t *ro, ngx_uint_t row, ngx_uint_t k)
{
    char       *prefix;
    ngx_str_t   arm;

    ngx_str_null(&arm);

    if (row == NGX_HTTP_CANARY_AUTO_SHADOW) {
        prefix = "d:";

    } else if (row >= 2) {
        prefix = "arm:";
        arm = ro->variants[row - 1].name;

    } else {
        prefix = row ? "c:" : "s:";
    }

    if (k < 2) {
        ngx_http_canary_redis_argf(a, "%s%V%s%s", prefix, &arm,
                                   arm.len ? ":" : "",
                                   ngx_http_canary_auto_figure_names[k]);

    } else {
        ngx_http_canary_redis_argf(a, "%s%V%sh%ui", prefix, &arm,
                                   arm.len ? ":" : "", k - 2);
    }
}


void
ngx_http_canary_auto_ignore(ngx_http_canary_redis_t *rc, redisReply *reply,
    void *data)
{
    if (reply && reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "canary auto: %*s", (size_t) reply->len, reply->str);
    }
}


/*
 * The fleet's figures of an interval: "s:", "c:", "arm:<name>:" and "d:"
 * (shadow) fields into figs[] (stable, canary, each arm's own row when
 * there are several, shadow's last row NGX_HTTP_CANARY_AUTO_SHADOW);
 * returns the number of nodes.
 */

uint64_t
ngx_http_canary_auto_figures(ngx_http_canary_auto_rollout_t *ar,
    redisReply *fig, ngx_http_canary_figures_t *figs)
{
    u_char      *colon;
    uint64_t     v, nodes;
    ngx_str_t    name;
    ngx_int_t    arm;
    ngx_uint_t   i, k, var;
    redisReply  *fr, *vr;

    ngx_memzero(figs, (NGX_HTTP_CANARY_AUTO_ROWS + 1)
                      * sizeof(ngx_http_canary_figures_t));
    nodes = 0;

    for (i = 0; i + 1 < fig->elements; i += 2) {
        fr = fig->element[i];
        vr = fig->element[i + 1];

        if (fr->type != REDIS_REPLY_STRING
            || ngx_http_canary_auto_uint(vr, &v) != NGX_OK)
        {
            continue;
        }

        name.data = (u_char *) fr->str;
        name.len = fr->len;

        if (name.len == 5 && ngx_strncmp(name.data, "nodes", 5) == 0) {
            nodes = v;
            continue;
        }

        if (name.len > 4 && ngx_strncmp(name.data, "arm:", 4) == 0) {

            /* "arm:<name>:<figure>", the name may hold ':' */

            colon = name.data + name.len;

            while (colon > name.data + 4 && colon[-1] != ':') {
                colon--;
            }

            if (colon <= name.data + 5) {
                continue;
            }

            arm = ngx_http_canary_find_arm(ar->ro, name.data + 4,
                                           colon - 1 - (name.data + 4));
            if (arm == NGX_ERROR || ar->ro->narms == 1) {
                continue;
            }

            var = 1 + arm;
            name.len -= colon - name.data;
            name.data = colon;

        } else if (name.len < 3 || name.data[1] != ':') {
            continue;

        } else {
            switch (name.data[0]) {

            case 's':
                var = NGX_HTTP_CANARY_STABLE;
                break;

            case 'c':
                var = NGX_HTTP_CANARY_CANARY;
                break;

            case 'd':
                var = NGX_HTTP_CANARY_AUTO_SHADOW;
                break;

            default:
                continue;
            }

            name.data += 2;
            name.len -= 2;
        }

        k = ngx_http_canary_auto_figure(&name);

        if (k == 0) {
            figs[var].requests = v;

        } else if (k == 1) {
            figs[var].errors = v;

        } else if (k < NGX_HTTP_CANARY_AUTO_NFIG) {
            figs[var].hist[k - 2] = v;
        }
    }

    return nodes;
}


/* the index of a figure in its row, NGX_HTTP_CANARY_AUTO_NFIG: none */

static ngx_uint_t
ngx_http_canary_auto_figure(ngx_str_t *name)
{
    size_t      len;
    ngx_uint_t  k;

    for (k = 0; k < 2; k++) {
        len = ngx_strlen(ngx_http_canary_auto_figure_names[k]);

        if (name->len == len
            && ngx_strncmp(name->data, ngx_http_canary_auto_figure_names[k],
                           len) == 0)
        {
            return k;
        }
    }

    if (name->len >= 2 && name->len <= 3 && name->data[0] == 'h') {
        k = ngx_atoi(name->data + 1, name->len - 1);

        if (k < NGX_HTTP_CANARY_HIST_BUCKETS) {
            return 2 + k;
        }
    }

    return NGX_HTTP_CANARY_AUTO_NFIG;
}


/* a whole unsigned number, strictly; NGX_DECLINED when missing or bad */

ngx_int_t
ngx_http_canary_auto_uint(redisReply *r, uint64_t *value)
{
    size_t    i;
    uint64_t  v;

    if (r == NULL) {
        return NGX_DECLINED;
    }

    if (r->type == REDIS_REPLY_INTEGER) {
        if (r->integer < 0) {
            return NGX_DECLINED;
        }

        *value = (uint64_t) r->integer;
        return NGX_OK;
    }

    if (r->type != REDIS_REPLY_STRING || r->len == 0 || r->len > 19) {
        return NGX_DECLINED;
    }

    v = 0;

    for (i = 0; i < r->len; i++) {
        if (r->str[i] < '0' || r->str[i] > '9') {
            return NGX_DECLINED;
        }

        v = v * 10 + (r->str[i] - '0');
    }

    *value = v;

    return NGX_OK;
}


ngx_uint_t
ngx_http_canary_auto_state(redisReply *r)
{
    ngx_uint_t  i;

    if (r->type != REDIS_REPLY_STRING) {
        return NGX_HTTP_CANARY_STATE_NONE;
    }

    for (i = 1; i <= NGX_HTTP_CANARY_STATE_WAITING; i++) {
        if (ngx_http_canary_state_names[i].len == r->len
            && ngx_strncmp(ngx_http_canary_state_names[i].data, r->str,
                           r->len) == 0)
        {
            return i;
        }
    }

    return NGX_HTTP_CANARY_STATE_NONE;
}


/* hundredths, or NGX_MAX_UINT32_VALUE when missing or bad */

uint32_t
ngx_http_canary_auto_percent(redisReply *r)
{
    uint32_t  v;

    if (r->type != REDIS_REPLY_STRING
        || ngx_http_canary_parse_percent((u_char *) r->str, r->len, &v) != 0)
    {
        return NGX_MAX_UINT32_VALUE;
    }

    return v;
}


/* the rollout hash says "phase dark" */

ngx_uint_t
ngx_http_canary_auto_dark(redisReply **f)
{
    redisReply  *r;

    r = f[ngx_http_canary_f_phase];

    return r->type == REDIS_REPLY_STRING && r->len == 4
           && ngx_strncmp(r->str, "dark", 4) == 0;
}


/* wall-clock milliseconds: the fleet's intervals are aligned on them */

uint64_t
ngx_http_canary_auto_now(void)
{
    ngx_time_update();

    return ngx_http_canary_now_ms();
}
