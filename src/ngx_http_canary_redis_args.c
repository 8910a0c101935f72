
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * The arguments of one Redis command (see ngx_http_canary_redis_args.h).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include "ngx_http_canary_redis_args.h"


void
ngx_http_canary_redis_args_init(ngx_http_canary_redis_args_t *a,
    const char **argv, size_t *len, ngx_uint_t nalloc, u_char *buf,
    size_t size)
{
    a->argv = argv;
    a->len = len;
    a->nalloc = nalloc;
    a->start = buf;
    a->last = buf + size;

    ngx_http_canary_redis_args_reset(a);
}


void
ngx_http_canary_redis_args_reset(ngx_http_canary_redis_args_t *a)
{
    a->n = 0;
    a->pos = a->start;
    a->overflow = 0;
}


void
ngx_http_canary_redis_arg(ngx_http_canary_redis_args_t *a, const void *data,
    size_t len)
{
    if (a->overflow || a->n == a->nalloc) {
        a->overflow = 1;
        return;
    }

    a->argv[a->n] = data;
    a->len[a->n] = len;
    a->n++;
}


/* ngx_sprintf()'s formats; a value that fills the buffer is an overflow */

void
ngx_http_canary_redis_argf(ngx_http_canary_redis_args_t *a,
    const char *fmt, ...)
{
    u_char   *p;
    va_list   args;

    va_start(args, fmt);
    p = ngx_vslprintf(a->pos, a->last, fmt, args);
    va_end(args);

    if (p == a->last) {
        a->overflow = 1;
        return;
    }

    ngx_http_canary_redis_arg(a, a->pos, p - a->pos);
    a->pos = p;
}


/* every argument of another command, appended */

void
ngx_http_canary_redis_argv(ngx_http_canary_redis_args_t *a,
    ngx_http_canary_redis_args_t *from)
{
    ngx_uint_t  i;

    if (from->overflow) {
        a->overflow = 1;
        return;
    }

    for (i = 0; i < from->n; i++) {
        ngx_http_canary_redis_arg(a, from->argv[i], from->len[i]);
    }
}


/* the command, unless it did not fit (said at "alert": the module's fault) */

ngx_int_t
ngx_http_canary_redis_send_args(ngx_http_canary_redis_t *rc,
    ngx_http_canary_redis_args_t *a, ngx_http_canary_redis_handler_pt handler,
    void *data)
{
    if (a->overflow || a->n == 0) {
        ngx_log_error(NGX_LOG_ALERT, &rc->log, 0,
                      "canary: a Redis command too large to build, "
                      "not sent: \"%*s\"",
                      a->n ? a->len[0] : 0, a->n ? a->argv[0] : "");
        return NGX_ERROR;
    }

    return ngx_http_canary_redis_send(rc, (int) a->n, a->argv, a->len,
                                      handler, data);
}
