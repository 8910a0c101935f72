
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * A control API write as an event: the JSON object of the alert channel
 * (the alert that abort and promote publish, and the webhooks' JSON) and
 * one line of text (format=slack), built in the write's context before
 * it is sent, and sent to this node's webhooks from the worker that took
 * the write once Redis has applied it.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_canary_module.h"
#include "ngx_http_canary_api.h"
#include "ngx_http_canary_webhook.h"


static u_char *ngx_http_canary_api_event_fields(ngx_http_canary_api_t *ctx,
    u_char *p, u_char *last, ngx_uint_t json);
static ngx_uint_t ngx_http_canary_api_event_member(
    ngx_http_canary_api_field_t *f);


/* this node's name (canary_node_id), set by ngx_http_canary_api_write.c */
ngx_str_t  ngx_http_canary_api_node;


/*
 * The write as an event: {"rollout":...,"event":"<action>","source":"api",
 * "time":...,"node":...,"actor":..., then what it changed}, the alert of
 * abort and promote and the webhooks' JSON; and one line of text:
 * canary "<rollout>" <action> by <actor> (api, <node>): <what changed>
 */

void
ngx_http_canary_api_event(ngx_http_canary_api_t *ctx)
{
    u_char     *p, *last;
    ngx_str_t  *action;

    action = &ngx_http_canary_api_actions[ctx->action];

    p = ctx->event;
    last = ctx->event + sizeof(ctx->event) - 1;

    p = ngx_slprintf(p, last, "{\"rollout\":\"");
    p = ngx_http_canary_json_str(p, last, ctx->ro->name.data,
                                 ctx->ro->name.len);
    p = ngx_slprintf(p, last, "\",\"event\":\"%V\",\"source\":\"api\","
                     "\"time\":%uL,\"node\":\"", action,
                     ngx_http_canary_now_ms());
    p = ngx_http_canary_json_str(p, last, ngx_http_canary_api_node.data,
                                 ngx_http_canary_api_node.len);
    p = ngx_slprintf(p, last, "\",\"actor\":\"");
    p = ngx_http_canary_json_str(p, last, ctx->actor.data, ctx->actor.len);
    p = ngx_slprintf(p, last, "\"");
    p = ngx_http_canary_api_event_fields(ctx, p, last, 1);
    p = ngx_slprintf(p, last, "}");

    ctx->event_len = p - ctx->event;

    p = ctx->text;
    last = ctx->text + sizeof(ctx->text);

    p = ngx_slprintf(p, last, "canary \"%V\" %V by %V (api, %V)",
                     &ctx->ro->name, action, &ctx->actor,
                     &ngx_http_canary_api_node);
    p = ngx_http_canary_api_event_fields(ctx, p, last, 0);

    ctx->text_len = p - ctx->text;
}


/*
 * What a write changes: the hash's fields (abort: "state":"rolled_back",
 * "percent":0; a PATCH: "fields":{"percent":"25","start":null}), or the
 * set and its member; as JSON members or as ": a=b, c removed"
 */

static u_char *
ngx_http_canary_api_event_fields(ngx_http_canary_api_t *ctx, u_char *p,
    u_char *last, ngx_uint_t json)
{
    u_char                        set[NGX_HTTP_CANARY_API_TEXT_LEN], *e;
    ngx_uint_t                    i, first;
    ngx_http_canary_api_field_t  *f;

    if (ctx->action >= NGX_HTTP_CANARY_API_ADD_USER) {

        /* the set as the history names it: users:<arm> for an arm's */

        e = (ctx->which < 2)
            ? ngx_sprintf(set, "%s", ctx->which ? "stable_users"
                                                : "canary_users")
            : ngx_snprintf(set, sizeof(set), "users:%V",
                           &ctx->ro->variants[ctx->which - 1].name);

        if (!json) {
            return ngx_slprintf(p, last, ": %*s %s %V", e - set, set,
                                ctx->action == NGX_HTTP_CANARY_API_ADD_USER
                                ? "+" : "-", &ctx->member);
        }

        p = ngx_slprintf(p, last, ",\"set\":\"");
        p = ngx_http_canary_json_str(p, last, set, e - set);
        p = ngx_slprintf(p, last, "\",\"member\":\"");
        p = ngx_http_canary_json_str(p, last, ctx->member.data,
                                     ctx->member.len);
        return ngx_slprintf(p, last, "\"");
    }

    f = ctx->patch.field;
    first = 1;

    /* state, percent and step as members of their own too (numbers) */

    for (i = 0; json && i < ctx->patch.nfields; i++) {
        if (f[i].value && f[i].value_len < 32
            && ngx_http_canary_api_event_member(&f[i]))
        {
            p = ngx_slprintf(p, last, f[i].name_len == 5
                                      ? ",\"%*s\":\"%*s\""
                                      : ",\"%*s\":%*s",
                             f[i].name_len, f[i].name, f[i].value_len,
                             f[i].value);
        }
    }

    p = ngx_slprintf(p, last, json ? ",\"fields\":{" : ":");

    for (i = 0; i < ctx->patch.nfields; i++) {

        /* room for the closing braces: the fields past it are left out */

        if ((size_t) (last - p) < 64) {
            break;
        }

        if (json) {
            p = ngx_slprintf(p, last, "%s\"", first ? "" : ",");
            p = ngx_http_canary_json_str(p, last, (u_char *) f[i].name,
                                         f[i].name_len);
            p = ngx_slprintf(p, last, f[i].value ? "\":\"" : "\":null");

            if (f[i].value) {
                p = ngx_http_canary_json_str(p, last, (u_char *) f[i].value,
                                             f[i].value_len);
                p = ngx_slprintf(p, last, "\"");
            }

            first = 0;
            continue;
        }

        /* an action's line: what it sets (a PATCH's: its removals too) */

        if (f[i].value == NULL && ctx->action != NGX_HTTP_CANARY_API_PATCH) {
            continue;
        }

        p = ngx_slprintf(p, last, "%s %*s", first ? "" : ",", f[i].name_len,
                         f[i].name);
        p = f[i].value ? ngx_slprintf(p, last, "=%*s", f[i].value_len,
                                      f[i].value)
                       : ngx_slprintf(p, last, " removed");
        first = 0;
    }

    return json ? ngx_slprintf(p, last, "}") : p;
}


/* "state" (a name), "percent" and "step" (numbers, parsed strictly) */

static ngx_uint_t
ngx_http_canary_api_event_member(ngx_http_canary_api_field_t *f)
{
    return (f->name_len == 5 && ngx_strncmp(f->name, "state", 5) == 0)
           || (f->name_len == 7 && ngx_strncmp(f->name, "percent", 7) == 0)
           || (f->name_len == 4 && ngx_strncmp(f->name, "step", 4) == 0);
}


/* a write applied by Redis, to this node's webhooks */

void
ngx_http_canary_api_event_send(ngx_http_canary_api_t *ctx)
{
    ngx_http_canary_webhook_send(
        (const char *) ngx_http_canary_api_actions[ctx->action].data,
        ctx->event, ctx->event_len, ctx->text, ctx->text_len);
}
