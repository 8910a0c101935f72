
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * The clients that follow one master (ngx_http_canary_sentinel.c,
 * ngx_http_canary_cluster.c), see ngx_http_canary_redis_follow.h.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>

#include "ngx_http_canary_redis.h"
#include "ngx_http_canary_redis_follow.h"


/* NGX_OK when rc follows (already, or from now), NGX_ERROR when full */

ngx_int_t
ngx_http_canary_redis_follow_join(ngx_http_canary_redis_follow_t *f,
    ngx_http_canary_redis_t *rc)
{
    ngx_uint_t  i;

    for (i = 0; i < f->nclients; i++) {
        if (f->clients[i] == rc) {
            return NGX_OK;
        }
    }

    if (f->nclients == NGX_HTTP_CANARY_REDIS_FOLLOWERS) {
        return NGX_ERROR;
    }

    f->clients[f->nclients++] = rc;

    return NGX_OK;
}


/* rc follows no more; how many still do */

ngx_uint_t
ngx_http_canary_redis_follow_leave(ngx_http_canary_redis_follow_t *f,
    ngx_http_canary_redis_t *rc)
{
    ngx_uint_t  i;

    for (i = 0; i < f->nclients; i++) {
        if (f->clients[i] == rc) {
            f->clients[i] = f->clients[--f->nclients];
            break;
        }
    }

    return f->nclients;
}


/*
 * The master is known: the clients waiting for it connect; when it
 * moved, every client reconnects at once, without backoff
 */

void
ngx_http_canary_redis_follow_move(ngx_http_canary_redis_follow_t *f,
    ngx_uint_t moved)
{
    ngx_uint_t                i;
    ngx_http_canary_redis_t  *rc;

    for (i = 0; i < f->nclients; i++) {
        rc = f->clients[i];

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
}
