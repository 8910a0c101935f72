
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * The control API's location (canary_api): the paths under its prefix,
 *
 *     GET    rollouts                                  every rollout
 *     GET    rollouts/<name>                           one
 *     PATCH  rollouts/<name>                           its values
 *     POST   rollouts/<name>/start|pause|resume|promote|abort
 *     PUT    rollouts/<name>/canary_users/<key>        a member added
 *     DELETE rollouts/<name>/stable_users/<key>        or removed
 *            rollouts/<name>/arms/<arm>/users/<key>
 *
 * the checks of a write before anything is done (Origin, Content-Type,
 * the body's size, the rollout, the transition), and the answers: the
 * rollout's object as the status page's JSON shows it, or
 * {"error": ..., "field": ...}.  The write itself, to Redis, is in
 * ngx_http_canary_api_write.c.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_canary_module.h"
#include "ngx_http_canary_status_out.h"
#include "ngx_http_canary_api.h"


typedef struct {
    ngx_str_t                       name;       /* the rollout, or empty */
    ngx_str_t                       verb;       /* start ... abort */
    ngx_str_t                       member;     /* a user's key */
    ngx_int_t                       which;      /* its set, -1 none */
    ngx_int_t                       rollout;    /* index, -1 none */

    /* a refusal: its status, reason, the field or name it is about */
    ngx_uint_t                      status;
    char                           *error;
    ngx_str_t                       field;
    char                           *allow;      /* with 405 */
} ngx_http_canary_api_path_t;


static ngx_int_t ngx_http_canary_api_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_canary_api_path(ngx_http_request_t *r,
    ngx_http_canary_api_path_t *path);
static ngx_int_t ngx_http_canary_api_users_path(ngx_http_canary_rollout_t *ro,
    ngx_str_t *rest, ngx_http_canary_api_path_t *path);
static ngx_int_t ngx_http_canary_api_write_checks(ngx_http_request_t *r,
    ngx_http_canary_api_path_t *path);
static ngx_int_t ngx_http_canary_api_refuse(ngx_http_canary_api_path_t *path,
    ngx_uint_t status, char *error, ngx_str_t *field);
static ngx_int_t ngx_http_canary_api_refusal(ngx_http_request_t *r,
    ngx_http_canary_api_path_t *path);
static ngx_int_t ngx_http_canary_api_same_origin(ngx_http_request_t *r,
    ngx_str_t *origin);
static void ngx_http_canary_api_body(ngx_http_request_t *r);
static ngx_int_t ngx_http_canary_api_read_body(ngx_http_request_t *r,
    ngx_str_t *body);
static ngx_int_t ngx_http_canary_api_start(ngx_http_request_t *r,
    ngx_http_canary_api_path_t *path, ngx_str_t *body);
static ngx_int_t ngx_http_canary_api_action(ngx_http_canary_api_t *ctx,
    ngx_http_canary_api_path_t *path);
static ngx_int_t ngx_http_canary_api_approve(ngx_http_canary_api_t *ctx,
    ngx_http_canary_api_path_t *path);
static void ngx_http_canary_api_refused(ngx_http_canary_api_t *ctx);
static ngx_int_t ngx_http_canary_api_actor(ngx_http_request_t *r,
    ngx_str_t *actor);


/*
 * The actions' transitions, by NGX_HTTP_CANARY_API_*: the states each
 * applies to (checked in Redis by the write's script; "none": no state
 * yet) and the state it writes
 */
static struct {
    char                           *from;
    ngx_uint_t                      to;
} ngx_http_canary_api_transitions[] = {
    { "", 0 },                                                  /* patch */
    { " none promoted rolled_back ", NGX_HTTP_CANARY_STATE_PROGRESSING },
    { " progressing ", NGX_HTTP_CANARY_STATE_PAUSED },
    { " paused ", NGX_HTTP_CANARY_STATE_PROGRESSING },
    { " progressing paused waiting ", NGX_HTTP_CANARY_STATE_PROMOTED },
    { " none progressing paused promoted waiting ",
      NGX_HTTP_CANARY_STATE_ROLLED_BACK },
    { " waiting ", NGX_HTTP_CANARY_STATE_WAITING }              /* approve */
};


/* the fields a start removes: the controller then begins again */
static char  *ngx_http_canary_api_restart[] = {
    "step", "since", "checked", "failures", "phase", "dark_passed", NULL
};


/* canary_api [timeout=5s]; */

char *
ngx_http_canary_api_directive(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_canary_loc_conf_t *lcf = conf;

    ngx_str_t                    *value, s;
    ngx_http_core_loc_conf_t     *clcf;
    ngx_http_canary_main_conf_t  *cmcf;

    if (lcf->api_timeout != NGX_CONF_UNSET_MSEC) {
        return "is duplicate";
    }

    lcf->api_timeout = 5000;

    value = cf->args->elts;

    if (cf->args->nelts == 2) {
        if (value[1].len <= 8
            || ngx_strncmp(value[1].data, "timeout=", 8) != 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\"", &value[1]);
            return NGX_CONF_ERROR;
        }

        s.data = value[1].data + 8;
        s.len = value[1].len - 8;

        lcf->api_timeout = ngx_parse_time(&s, 0);

        if (lcf->api_timeout == (ngx_msec_t) NGX_ERROR
            || lcf->api_timeout == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid timeout \"%V\"", &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_canary_module);
    cmcf->api = 1;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_canary_api_handler;

    return NGX_CONF_OK;
}


/*
 * Every worker of a configuration with canary_api and canary_redis
 * connects to Redis at its start, so that a write finds the connection
 * up: a command sent on it may have reached Redis even when the
 * connection fails before the reply (504), one sent before it was up has
 * not (503).
 */

ngx_int_t
ngx_http_canary_api_init_process(ngx_cycle_t *cycle)
{
    ngx_http_canary_main_conf_t  *cmcf;

    cmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_canary_module);

    if (cmcf == NULL || !cmcf->api || cmcf->redis == NULL
        || (ngx_process != NGX_PROCESS_WORKER
            && ngx_process != NGX_PROCESS_SINGLE))
    {
        return NGX_OK;
    }

    return ngx_http_canary_api_write_init(cycle, cmcf);
}


void
ngx_http_canary_api_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_canary_api_write_exit();
}


static ngx_int_t
ngx_http_canary_api_handler(ngx_http_request_t *r)
{
    ngx_int_t                     rc;
    ngx_http_canary_api_path_t    path;
    ngx_http_canary_rollout_t    *ro;
    ngx_http_canary_main_conf_t  *cmcf;

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_canary_module);

    if (cmcf->sh == NULL) {
        (void) ngx_http_discard_request_body(r);
        return ngx_http_canary_api_error(r, NGX_HTTP_NOT_FOUND,
                                         "no canary_zone", NULL);
    }

    rc = ngx_http_canary_api_path(r, &path);

    if (rc == NGX_OK && !(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        rc = ngx_http_canary_api_write_checks(r, &path);
    }

    if (rc != NGX_OK || r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)) {
        if (ngx_http_discard_request_body(r) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (rc != NGX_OK) {
        return ngx_http_canary_api_refusal(r, &path);
    }

    if (r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)) {
        if (path.verb.len == 0) {
            return ngx_http_canary_api_get(r, path.rollout, NGX_HTTP_OK);
        }

        ro = cmcf->rollouts.elts;

        return ngx_http_canary_api_history_get(r, &ro[path.rollout]);
    }

    /* the path is checked again once the body is read: cheap */

    r->request_body_in_single_buf = 1;

    rc = ngx_http_read_client_request_body(r, ngx_http_canary_api_body);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


/*
 * The path under the location's prefix, and whether the method applies:
 * NGX_OK, or NGX_DECLINED with the refusal in path
 */

static ngx_int_t
ngx_http_canary_api_path(ngx_http_request_t *r,
    ngx_http_canary_api_path_t *path)
{
    u_char                       *p, *last;
    ngx_str_t                     rest;
    ngx_uint_t                    allowed;
    ngx_http_core_loc_conf_t     *clcf;
    ngx_http_canary_rollout_t    *ro;
    ngx_http_canary_main_conf_t  *cmcf;

    ngx_memzero(path, sizeof(ngx_http_canary_api_path_t));
    path->which = -1;
    path->rollout = -1;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);
    cmcf = ngx_http_get_module_main_conf(r, ngx_http_canary_module);

    if (r->uri.len < clcf->name.len
        || ngx_strncmp(r->uri.data, clcf->name.data, clcf->name.len) != 0)
    {
        return ngx_http_canary_api_refuse(path, NGX_HTTP_NOT_FOUND,
                                          "no such path", NULL);
    }

    p = r->uri.data + clcf->name.len;
    last = r->uri.data + r->uri.len;

    if (last - p < 8 || ngx_strncmp(p, "rollouts", 8) != 0
        || (last - p > 8 && p[8] != '/'))
    {
        return ngx_http_canary_api_refuse(path, NGX_HTTP_NOT_FOUND,
                                          "no such path", NULL);
    }

    p += 8;
    allowed = NGX_HTTP_GET|NGX_HTTP_HEAD;

    if (p < last) {
        p++;                                    /* the slash */
        path->name.data = p;

        while (p < last && *p != '/') {
            p++;
        }

        path->name.len = p - path->name.data;
        path->rollout = ngx_http_canary_find(cmcf, &path->name);

        if (path->rollout == NGX_ERROR) {
            return ngx_http_canary_api_refuse(path, NGX_HTTP_NOT_FOUND,
                                              "no such rollout",
                                              &path->name);
        }

        ro = cmcf->rollouts.elts;
        ro = &ro[path->rollout];
        allowed |= NGX_HTTP_PATCH;

        if (p < last) {
            rest.data = p + 1;
            rest.len = last - p - 1;

            if (ngx_http_canary_api_users_path(ro, &rest, path) == NGX_OK) {
                allowed = NGX_HTTP_PUT|NGX_HTTP_DELETE;

            } else if (ngx_strlchr(rest.data, rest.data + rest.len, '/')
                       == NULL && rest.len)
            {
                path->verb = rest;
                allowed = (rest.len == 7
                           && ngx_strncmp(rest.data, "history", 7) == 0)
                          ? NGX_HTTP_GET|NGX_HTTP_HEAD : NGX_HTTP_POST;

            } else {
                return ngx_http_canary_api_refuse(path, NGX_HTTP_NOT_FOUND,
                                                  "no such path", NULL);
            }
        }
    }

    if (r->method & allowed) {
        return NGX_OK;
    }

    path->allow = (allowed == (NGX_HTTP_GET|NGX_HTTP_HEAD) && path->verb.len)
                  ? "GET, HEAD"
                  : (allowed & NGX_HTTP_POST) ? "POST"
                  : (allowed & NGX_HTTP_PUT) ? "PUT, DELETE"
                  : (allowed & NGX_HTTP_PATCH) ? "GET, HEAD, PATCH"
                  : "GET, HEAD";

    return ngx_http_canary_api_refuse(path, NGX_HTTP_NOT_ALLOWED,
                                      "method not allowed here", NULL);
}


static ngx_int_t
ngx_http_canary_api_refuse(ngx_http_canary_api_path_t *path,
    ngx_uint_t status, char *error, ngx_str_t *field)
{
    path->status = status;
    path->error = error;

    if (field) {
        path->field = *field;
    }

    return NGX_DECLINED;
}


static ngx_int_t
ngx_http_canary_api_refusal(ngx_http_request_t *r,
    ngx_http_canary_api_path_t *path)
{
    if (path->allow
        && ngx_http_canary_header(r, "Allow", path->allow) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_canary_api_error(r, path->status, path->error,
                                     &path->field);
}


/* canary_users/<key>, stable_users/<key>, arms/<arm>/users/<key> */

static ngx_int_t
ngx_http_canary_api_users_path(ngx_http_canary_rollout_t *ro,
    ngx_str_t *rest, ngx_http_canary_api_path_t *path)
{
    u_char     *p, *last;
    ngx_int_t   arm;

    p = rest->data;
    last = p + rest->len;

    if (rest->len > 13 && ngx_strncmp(p, "canary_users/", 13) == 0) {
        path->which = 0;
        p += 13;

    } else if (rest->len > 13 && ngx_strncmp(p, "stable_users/", 13) == 0) {
        path->which = 1;
        p += 13;

    } else if (ro->narms > 1 && rest->len > 5
               && ngx_strncmp(p, "arms/", 5) == 0)
    {
        p += 5;
        rest->data = p;

        while (p < last && *p != '/') {
            p++;
        }

        arm = ngx_http_canary_find_arm(ro, rest->data, p - rest->data);

        if (arm == NGX_ERROR || last - p <= 7
            || ngx_strncmp(p, "/users/", 7) != 0)
        {
            return NGX_DECLINED;
        }

        path->which = 2 + arm - 1;
        p += 7;

    } else {
        return NGX_DECLINED;
    }

    /* the key is the rest, slashes and all */

    path->member.data = p;
    path->member.len = last - p;

    return NGX_OK;
}


/*
 * A write: from no other site (Origin, when a browser sends one, is the
 * request's own), JSON only (a cross-site form cannot send it without a
 * preflight), a small body
 */

static ngx_int_t
ngx_http_canary_api_write_checks(ngx_http_request_t *r,
    ngx_http_canary_api_path_t *path)
{
    size_t            len;
    ngx_str_t        *ct;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == 6
            && ngx_strncasecmp(h[i].key.data, (u_char *) "Origin", 6) == 0
            && !ngx_http_canary_api_same_origin(r, &h[i].value))
        {
            return ngx_http_canary_api_refuse(path, NGX_HTTP_FORBIDDEN,
                                   "a write from another origin", NULL);
        }
    }

    ct = r->headers_in.content_type ? &r->headers_in.content_type->value
                                    : NULL;
    len = sizeof("application/json") - 1;

    if (ct == NULL || ct->len < len
        || ngx_strncasecmp(ct->data, (u_char *) "application/json", len)
           != 0
        || (ct->len > len && ct->data[len] != ';' && ct->data[len] != ' '))
    {
        return ngx_http_canary_api_refuse(path,
                              NGX_HTTP_UNSUPPORTED_MEDIA_TYPE,
                              "a write needs Content-Type: application/json",
                              NULL);
    }

    if (r->headers_in.content_length_n > NGX_HTTP_CANARY_API_BODY_MAX) {
        return ngx_http_canary_api_refuse(path,
                                          NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                          "the body is over 8192 bytes",
                                          NULL);
    }

    return NGX_OK;
}


/* "http://host[:port]" or "https://..." against the request's own */

static ngx_int_t
ngx_http_canary_api_same_origin(ngx_http_request_t *r, ngx_str_t *origin)
{
    size_t      skip;
    ngx_str_t  *host;

    skip = 7;

#if (NGX_HTTP_SSL)
    if (r->connection->ssl) {
        skip = 8;
    }
#endif

    if (r->headers_in.host == NULL) {
        return 0;
    }

    host = &r->headers_in.host->value;

    return origin->len == skip + host->len
           && ngx_strncasecmp(origin->data,
                              (u_char *) (skip == 8 ? "https://" : "http://"),
                              skip) == 0
           && ngx_strncasecmp(origin->data + skip, host->data, host->len)
              == 0;
}


static void
ngx_http_canary_api_body(ngx_http_request_t *r)
{
    ngx_int_t                   rc;
    ngx_str_t                   body;
    ngx_http_canary_api_path_t  path;

    rc = ngx_http_canary_api_read_body(r, &body);

    if (rc == NGX_DECLINED) {
        rc = ngx_http_canary_api_error(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                       "the body is over 8192 bytes", NULL);

    } else if (rc == NGX_OK) {
        if (ngx_http_canary_api_path(r, &path) == NGX_OK) {
            rc = ngx_http_canary_api_start(r, &path, &body);

        } else {
            rc = ngx_http_canary_api_refusal(r, &path);
        }
    }

    if (rc == NGX_DONE) {
        /* answered once Redis and the zone have */
        return;
    }

    ngx_http_finalize_request(r, rc);
}


/*
 * The body in one piece (from memory, or the temporary file); NGX_DECLINED
 * when it is too large (a chunked one: no Content-Length told before)
 */

static ngx_int_t
ngx_http_canary_api_read_body(ngx_http_request_t *r, ngx_str_t *body)
{
    u_char       *p;
    size_t        len, n;
    ssize_t       got;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    ngx_str_null(body);

    if (r->request_body == NULL) {
        return NGX_OK;
    }

    len = 0;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        len += ngx_buf_size(cl->buf);
    }

    if (len > NGX_HTTP_CANARY_API_BODY_MAX) {
        return NGX_DECLINED;
    }

    p = ngx_pnalloc(r->pool, len + 1);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    body->data = p;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (!b->in_file) {
            p = ngx_cpymem(p, b->pos, b->last - b->pos);
            continue;
        }

        /* a small file nginx has just written: read at once */

        n = b->file_last - b->file_pos;
        got = ngx_read_file(b->file, p, n, b->file_pos);

        if (got != (ssize_t) n) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        p += n;
    }

    body->len = p - body->data;

    return NGX_OK;
}


/* a write's context, its checks, then the write (NGX_DONE) */

static ngx_int_t
ngx_http_canary_api_start(ngx_http_request_t *r,
    ngx_http_canary_api_path_t *path, ngx_str_t *body)
{
    ngx_int_t                     rc;
    ngx_str_t                     actor, field;
    ngx_uint_t                    a;
    ngx_http_canary_api_t        *ctx;
    ngx_http_canary_rollout_t    *ro;
    ngx_http_canary_loc_conf_t   *lcf;
    ngx_http_canary_main_conf_t  *cmcf;
    const u_char                 *arms[NGX_HTTP_CANARY_MAX_ARMS];
    size_t                        arm_len[NGX_HTTP_CANARY_MAX_ARMS];

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_canary_module);
    lcf = ngx_http_get_module_loc_conf(r, ngx_http_canary_module);

    if (ngx_http_canary_api_actor(r, &actor) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx = ngx_calloc(sizeof(ngx_http_canary_api_t) + actor.len
                     + path->member.len, r->connection->log);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ro = cmcf->rollouts.elts;
    ro = &ro[path->rollout];

    ctx->r = r;
    ctx->cmcf = cmcf;
    ctx->ro = ro;
    ctx->log = ngx_cycle->log;
    ctx->deadline = ngx_current_msec + lcf->api_timeout;
    ctx->allowed = "";
    ctx->actor.data = (u_char *) &ctx[1];
    ctx->actor.len = ngx_cpymem(ctx->actor.data, actor.data, actor.len)
                     - ctx->actor.data;
    ctx->member.data = ctx->actor.data + actor.len;
    ctx->member.len = path->member.len;
    ngx_memcpy(ctx->member.data, path->member.data, path->member.len);

    if (path->which >= 0) {
        ctx->which = path->which;
        ctx->action = (r->method == NGX_HTTP_PUT)
                      ? NGX_HTTP_CANARY_API_ADD_USER
                      : NGX_HTTP_CANARY_API_REMOVE_USER;

        if (path->member.len == 0
            || path->member.len > NGX_HTTP_CANARY_SET_KEY_MAX)
        {
            ngx_http_canary_api_refused(ctx);
            return ngx_http_canary_api_error(r, NGX_HTTP_BAD_REQUEST,
                                             "empty or too long a key", NULL);
        }

    } else if (path->verb.len) {
        rc = ngx_http_canary_api_action(ctx, path);

        if (rc != NGX_OK) {
            ngx_http_canary_api_refused(ctx);
            return (rc == NGX_ERROR) ? NGX_HTTP_INTERNAL_SERVER_ERROR
                                     : ngx_http_canary_api_refusal(r, path);
        }

    } else {
        ctx->action = NGX_HTTP_CANARY_API_PATCH;

        for (a = 0; a < ro->narms; a++) {
            arms[a] = ro->variants[a + 1].name.data;
            arm_len[a] = ro->variants[a + 1].name.len;
        }

        ctx->patch.arms = arms;
        ctx->patch.arm_len = arm_len;
        ctx->patch.narms = ro->narms;
        ctx->patch.whole = (ro->hash == NGX_HTTP_CANARY_HASH_UNLEASH);

        if (ngx_http_canary_api_parse_patch(body->data, body->len,
                                            &ctx->patch)
            != 0)
        {
            field.data = (u_char *) ctx->patch.where;
            field.len = ngx_strlen(ctx->patch.where);

            rc = ngx_http_canary_api_error(r, NGX_HTTP_BAD_REQUEST,
                                           ctx->patch.error, &field);
            ngx_http_canary_api_refused(ctx);
            return rc;
        }

        ctx->patch.arms = NULL;
        ctx->patch.arm_len = NULL;
    }

    ngx_http_canary_api_write(ctx);

    return NGX_DONE;
}


/*
 * start, pause, resume, promote, abort: the states each applies to (the
 * script checks them again in Redis, atomically) and the fields it sets
 */

static ngx_int_t
ngx_http_canary_api_action(ngx_http_canary_api_t *ctx,
    ngx_http_canary_api_path_t *path)
{
    char                      **f;
    u_char                     *p, buf[NGX_HTTP_CANARY_NUM];
    ngx_str_t                  *verb;
    ngx_uint_t                  i, state;
    ngx_http_canary_policy_t   *policy;
    ngx_http_canary_api_patch_t *pt;

    pt = &ctx->patch;
    verb = &path->verb;

    for (i = NGX_HTTP_CANARY_API_START; i <= NGX_HTTP_CANARY_API_APPROVE; i++) {
        if (verb->len == ngx_http_canary_api_actions[i].len
            && ngx_strncmp(verb->data, ngx_http_canary_api_actions[i].data,
                           verb->len) == 0)
        {
            break;
        }
    }

    if (i > NGX_HTTP_CANARY_API_APPROVE) {
        return ngx_http_canary_api_refuse(path, NGX_HTTP_NOT_FOUND,
                                          "no such action", verb);
    }

    ctx->action = i;
    policy = ctx->ro->policy;

    if (policy == NULL) {
        return ngx_http_canary_api_refuse(path, NGX_HTTP_CONFLICT,
                                          "the rollout has no auto: "
                                          "PATCH its percent instead",
                                          verb);
    }

    ctx->allowed = ngx_http_canary_api_transitions[i].from;
    state = ngx_http_canary_api_transitions[i].to;

    if (ngx_http_canary_api_field(pt, "state",
                                  ngx_http_canary_state_names[state].data,
                                  ngx_http_canary_state_names[state].len)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (i == NGX_HTTP_CANARY_API_APPROVE) {
        return ngx_http_canary_api_approve(ctx, path);
    }

    if (i == NGX_HTTP_CANARY_API_PROMOTE || i == NGX_HTTP_CANARY_API_ABORT) {

        /* out of a wait at a gate too */

        if (ngx_http_canary_api_field(pt, "gate", NULL, 0) != NGX_OK
            || ngx_http_canary_api_field(pt, "approve", NULL, 0) != NGX_OK)
        {
            return NGX_ERROR;
        }

        p = (i == NGX_HTTP_CANARY_API_ABORT)
            ? ngx_http_canary_percent(buf, 0)
            : ngx_http_canary_percent(buf, policy->steps[policy->nsteps - 1]);

        if (ngx_http_canary_api_field(pt, "percent", buf, p - buf) != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (i == NGX_HTTP_CANARY_API_PROMOTE) {
        p = ngx_sprintf(buf, "%ui", policy->nsteps);

        if (ngx_http_canary_api_field(pt, "step", buf, p - buf) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (i == NGX_HTTP_CANARY_API_START) {

        /* the controller starts from step 1 (or the dark phase) */

        for (f = ngx_http_canary_api_restart; *f; f++) {
            if (ngx_http_canary_api_field(pt, *f, NULL, 0) != NGX_OK) {
                return NGX_ERROR;
            }
        }
    }

    return NGX_OK;
}


/*
 * approve: the step the rollout waits for at its gate (the first gated
 * step above the percent in force, as the zone shows them), written into
 * "approve" for the controller to enter; the script checks in Redis that
 * the rollout still waits
 */

static ngx_int_t
ngx_http_canary_api_approve(ngx_http_canary_api_t *ctx,
    ngx_http_canary_api_path_t *path)
{
    u_char                      *p, buf[NGX_HTTP_CANARY_NUM];
    uint32_t                     gate, k;
    ngx_http_canary_policy_t    *policy;
    ngx_http_canary_snapshot_t  *snap;

    snap = ctx->ro->sh->snapshot;
    policy = ctx->ro->policy;
    gate = 0;

    for (k = 0; snap->state == NGX_HTTP_CANARY_STATE_WAITING
                && k < policy->nsteps; k++)
    {
        if (policy->steps[k] > snap->percent) {
            if (ngx_http_canary_policy_gated(policy, k)) {
                gate = policy->steps[k];
            }

            break;
        }
    }

    if (gate == 0) {
        return ngx_http_canary_api_refuse(path, NGX_HTTP_CONFLICT,
                                          "the rollout waits at no gate",
                                          &path->verb);
    }

    p = ngx_http_canary_percent(buf, gate);

    return ngx_http_canary_api_field(&ctx->patch, "approve", buf, p - buf);
}


/* a write refused before it was sent: counted, and its context freed */

static void
ngx_http_canary_api_refused(ngx_http_canary_api_t *ctx)
{
    (void) ngx_atomic_fetch_add(&ctx->cmcf->sh->api_writes[ctx->action]
                                               [NGX_HTTP_CANARY_API_REFUSED],
                                1);
    ngx_free(ctx);
}


/* canary_api_actor, else $remote_user, else the client's address */

static ngx_int_t
ngx_http_canary_api_actor(ngx_http_request_t *r, ngx_str_t *actor)
{
    ngx_http_canary_loc_conf_t  *lcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_canary_module);

    ngx_str_null(actor);

    if (lcf->api_actor) {
        if (ngx_http_complex_value(r, lcf->api_actor, actor) != NGX_OK) {
            return NGX_ERROR;
        }

    } else if (ngx_http_auth_basic_user(r) == NGX_OK) {
        *actor = r->headers_in.user;
    }

    if (actor->len == 0) {
        *actor = r->connection->addr_text;
    }

    actor->len = ngx_min(actor->len, NGX_HTTP_CANARY_API_ACTOR_MAX);

    return NGX_OK;
}


