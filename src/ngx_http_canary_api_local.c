
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * A control API write without canary_redis: a PATCH applied to this
 * node's zone directly and written to the state file, in the worker that
 * took the request.  The new values are made from the published snapshot
 * with the sync's own field reader (ngx_http_canary_values_field()) and
 * published only if that snapshot is still the published one (else made
 * again: another worker came first); the state file is written under the
 * zone's mutex, so two workers never write it at once.  Their source is
 * then "state_file": a reload keeps them, as it keeps values from Redis.
 * The audit trail is a notice line in the error log (there is no stream
 * without Redis).  Actions and user sets need Redis (503).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_canary_module.h"
#include "ngx_http_canary_snapshot.h"
#include "ngx_http_canary_values.h"
#include "ngx_http_canary_state.h"
#include "ngx_http_canary_api.h"


#define NGX_HTTP_CANARY_API_TRIES  8


static ngx_int_t ngx_http_canary_api_local_values(ngx_http_canary_api_t *ctx,
    ngx_http_canary_snapshot_t *cur, ngx_http_canary_values_t *v,
    ngx_array_t *segments);
static ngx_uint_t ngx_http_canary_api_patched(ngx_http_canary_api_t *ctx,
    ngx_str_t *segment);


/* the state file's last error and "auto" sum, as the sync keeps them */
static ngx_err_t  ngx_http_canary_api_state_err;
static uint64_t   ngx_http_canary_api_state_auto;


/* the status of the answer, with *error when it is not 200 */

ngx_uint_t
ngx_http_canary_api_local(ngx_http_canary_api_t *ctx, char **error)
{
    ngx_int_t                     rc;
    ngx_uint_t                    i;
    ngx_array_t                   segments;
    ngx_http_canary_values_t      v;
    ngx_http_canary_snapshot_t   *cur;
    ngx_http_canary_main_conf_t  *cmcf;

    cmcf = ctx->cmcf;

    if (ctx->action != NGX_HTTP_CANARY_API_PATCH) {
        *error = "without canary_redis only PATCH applies (to this node)";
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    rc = NGX_AGAIN;

    for (i = 0; rc == NGX_AGAIN && i < NGX_HTTP_CANARY_API_TRIES; i++) {
        cur = ctx->ro->sh->snapshot;

        if (ngx_array_init(&segments, ctx->r->pool, 8,
                           sizeof(ngx_http_canary_segment_t))
            != NGX_OK
            || ngx_http_canary_api_local_values(ctx, cur, &v, &segments)
               != NGX_OK)
        {
            *error = "out of memory";
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        rc = ngx_http_canary_snapshot_apply_if(cmcf, ctx->ro, &v, cur,
                                               ctx->log);
    }

    if (rc == NGX_AGAIN || rc == NGX_ERROR) {
        *error = (rc == NGX_ERROR) ? "no room in canary_zone for the change"
                                   : "the rollout kept changing: try again";
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    ngx_shmtx_lock(&cmcf->shpool->mutex);
    ngx_http_canary_state_write(cmcf, ctx->log,
                                &ngx_http_canary_api_state_err,
                                &ngx_http_canary_api_state_auto);
    ngx_shmtx_unlock(&cmcf->shpool->mutex);

    ngx_log_error(NGX_LOG_NOTICE, ctx->log, 0,
                  "canary api: patch of \"%V\" by \"%V\" applied to this "
                  "node (no canary_redis): percent %ui.%02ui, shadow "
                  "%ui.%02ui, %ui segments, window %T..%T", &ctx->ro->name,
                  &ctx->actor, v.percent / 100, v.percent % 100,
                  v.shadow / 100, v.shadow % 100, v.nsegments, v.start,
                  v.end);

    return NGX_HTTP_OK;
}


/* the published values, then the PATCH's fields over them */

static ngx_int_t
ngx_http_canary_api_local_values(ngx_http_canary_api_t *ctx,
    ngx_http_canary_snapshot_t *cur, ngx_http_canary_values_t *v,
    ngx_array_t *segments)
{
    ngx_str_t                     field, value;
    ngx_uint_t                    i;
    ngx_http_canary_segment_t    *seg;
    ngx_http_canary_fields_t      f;
    ngx_http_canary_refusals_t    rf;
    ngx_http_canary_api_field_t  *pf;

    ngx_memzero(v, sizeof(ngx_http_canary_values_t));

    v->percent = cur->percent;
    v->start = cur->start;
    v->end = cur->end;
    v->state = cur->state;
    v->arms_off = cur->arms_off;
    v->shadow = cur->shadow;
    v->source = NGX_HTTP_CANARY_SOURCE_STATE_FILE;
    ngx_memcpy(v->weight, cur->weight, sizeof(v->weight));

    for (i = 0; i < cur->nsegments; i++) {
        if (ngx_http_canary_api_patched(ctx, &cur->segments[i].value)) {
            continue;
        }

        seg = ngx_array_push(segments);
        if (seg == NULL) {
            return NGX_ERROR;
        }

        *seg = cur->segments[i];
    }

    /* the values were checked by the same parsers: none is refused */

    ngx_memzero(&f, sizeof(ngx_http_canary_fields_t));
    ngx_memzero(&rf, sizeof(ngx_http_canary_refusals_t));

    f.ro = ctx->ro;
    f.key = &ctx->ro->name;
    f.rf = &rf;
    f.cur = cur;
    f.v = v;
    f.segments = segments;
    f.sh = ctx->cmcf->sh;
    f.log = ctx->log;

    for (i = 0; i < ctx->patch.nfields; i++) {
        pf = &ctx->patch.field[i];

        field.data = (u_char *) pf->name;
        field.len = pf->name_len;

        if (pf->value == NULL) {
            /* a removed bound; a removed segment was left out above */

            if (field.len == 5) {
                v->start = 0;

            } else if (field.len == 3) {
                v->end = 0;
            }

            continue;
        }

        value.data = (u_char *) pf->value;
        value.len = pf->value_len;

        if (ngx_http_canary_values_field(&f, &field, &value) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    ngx_free(rf.refused_new.data);

    v->segments = segments->elts;
    v->nsegments = segments->nelts;

    return NGX_OK;
}


/* whether the PATCH sets or removes this segment's percent */

static ngx_uint_t
ngx_http_canary_api_patched(ngx_http_canary_api_t *ctx, ngx_str_t *segment)
{
    ngx_uint_t                    i;
    ngx_http_canary_api_field_t  *pf;

    for (i = 0; i < ctx->patch.nfields; i++) {
        pf = &ctx->patch.field[i];

        if (pf->name_len == 8 + segment->len
            && ngx_strncmp(pf->name, "percent:", 8) == 0
            && ngx_memcmp(pf->name + 8, segment->data, segment->len) == 0)
        {
            return 1;
        }
    }

    return 0;
}
