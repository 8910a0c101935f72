
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * Directives, configuration, the routing decision and the variables.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_canary_module.h"


/* a rollout sub-directive: "key", "percent", ... inside canary_rollout {} */
typedef struct {
    ngx_str_t                       name;
    ngx_uint_t                      min_args;
    ngx_uint_t                      max_args;
    char                         *(*set)(ngx_conf_t *cf,
                                      ngx_http_canary_rollout_t *rc);
} ngx_http_canary_rollout_cmd_t;


typedef enum {
    ngx_http_canary_var_upstream = 0,
    ngx_http_canary_var_variant,
    ngx_http_canary_var_rollout,
    ngx_http_canary_var_bucket,
    ngx_http_canary_var_reason
} ngx_http_canary_var_e;


static ngx_inline ngx_int_t ngx_http_canary_value(ngx_http_request_t *r,
    ngx_http_canary_value_t *v, ngx_str_t *value);
static ngx_http_canary_ctx_t *ngx_http_canary_get_ctx(ngx_http_request_t *r,
    ngx_uint_t create);
static ngx_int_t ngx_http_canary_ctx_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_inline ngx_http_canary_ctx_t *ngx_http_canary_ctx(
    ngx_http_request_t *r, ngx_http_canary_main_conf_t *cmcf,
    ngx_uint_t create);
static ngx_inline ngx_http_canary_decision_t *ngx_http_canary_decision(
    ngx_http_request_t *r, ngx_uint_t index);
static ngx_http_canary_decision_t *ngx_http_canary_decide_plain(
    ngx_http_request_t *r, ngx_http_canary_main_conf_t *cmcf,
    ngx_uint_t index, ngx_http_canary_decision_t *decisions);
static ngx_http_canary_noinline ngx_uint_t ngx_http_canary_plain_arm(
    ngx_http_canary_rollout_t *ro, ngx_http_canary_snapshot_t *snap,
    ngx_http_variable_value_t *key);
static ngx_int_t ngx_http_canary_rewrite_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_canary_log_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_canary_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_canary_bucket_value(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, ngx_http_canary_decision_t *d);
static ngx_int_t ngx_http_canary_upstream_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_canary_add_variant_variables(ngx_conf_t *cf,
    ngx_http_canary_main_conf_t *cmcf, ngx_http_canary_rollout_t *ro);
static ngx_uint_t ngx_http_canary_variable_word(u_char *p, size_t len);
static u_char ngx_http_canary_word_char(u_char c);
static ngx_int_t ngx_http_canary_variant_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);

static char *ngx_http_canary_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_canary_rollout_block(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_canary_rollout(ngx_conf_t *cf, ngx_command_t *dummy,
    void *conf);
static char *ngx_http_canary_set_key(ngx_conf_t *cf,
    ngx_http_canary_rollout_t *rc);
static char *ngx_http_canary_set_stable(ngx_conf_t *cf,
    ngx_http_canary_rollout_t *rc);
static char *ngx_http_canary_set_canary(ngx_conf_t *cf,
    ngx_http_canary_rollout_t *rc);
static char *ngx_http_canary_set_variant(ngx_conf_t *cf,
    ngx_http_canary_rollout_t *rc);
static char *ngx_http_canary_add_arm(ngx_conf_t *cf,
    ngx_http_canary_rollout_t *ro, ngx_str_t *name, ngx_str_t *upstream,
    ngx_uint_t weight);
static ngx_int_t ngx_http_canary_check_name(ngx_str_t *name);
static char *ngx_http_canary_set_percent(ngx_conf_t *cf,
    ngx_http_canary_rollout_t *rc);
static char *ngx_http_canary_set_salt(ngx_conf_t *cf,
    ngx_http_canary_rollout_t *rc);
static char *ngx_http_canary_set_hash(ngx_conf_t *cf,
    ngx_http_canary_rollout_t *rc);
static char *ngx_http_canary_set_override(ngx_conf_t *cf,
    ngx_http_canary_rollout_t *rc);
static char *ngx_http_canary_set_segment(ngx_conf_t *cf,
    ngx_http_canary_rollout_t *rc);
static char *ngx_http_canary_set_match(ngx_conf_t *cf,
    ngx_http_canary_rollout_t *rc);
static char *ngx_http_canary_set_requires(ngx_conf_t *cf,
    ngx_http_canary_rollout_t *rc);
static char *ngx_http_canary_compile_value(ngx_conf_t *cf, ngx_str_t *src,
    ngx_http_canary_value_t *v);
static char *ngx_http_canary(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_canary_check_upstream(ngx_conf_t *cf,
    ngx_http_canary_rollout_t *ro, ngx_http_canary_variant_t *var);
static ngx_int_t ngx_http_canary_check_requires(ngx_conf_t *cf,
    ngx_http_canary_main_conf_t *cmcf, ngx_uint_t index, u_char *seen,
    ngx_uint_t *path, ngx_uint_t depth, ngx_http_canary_require_t *via);

static ngx_int_t ngx_http_canary_add_variables(ngx_conf_t *cf);
static void *ngx_http_canary_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_canary_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_canary_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_canary_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static ngx_int_t ngx_http_canary_init(ngx_conf_t *cf);
static ngx_int_t ngx_http_canary_init_process(ngx_cycle_t *cycle);
static void ngx_http_canary_exit_process(ngx_cycle_t *cycle);


static ngx_conf_post_handler_pt  ngx_http_canary_sync_interval_p =
    ngx_http_canary_sync_interval;


static ngx_command_t  ngx_http_canary_commands[] = {

    { ngx_string("canary_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_canary_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("canary_redis"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_canary_redis_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("canary_sync_interval"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_canary_main_conf_t, sync_interval),
      &ngx_http_canary_sync_interval_p },

    { ngx_string("canary_state_file"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_canary_state_file,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("canary_node_id"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_canary_main_conf_t, node_id),
      NULL },

    { ngx_string("canary_rollout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_BLOCK|NGX_CONF_TAKE1,
      ngx_http_canary_rollout_block,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("canary"),
      NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_canary,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("canary_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_canary_status,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("canary_shadow"),
      NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_canary_shadow_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("canary_shadow_methods"),
      NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_conf_set_bitmask_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_canary_loc_conf_t, shadow_methods),
      ngx_http_canary_shadow_methods },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_canary_module_ctx = {
    ngx_http_canary_add_variables,         /* preconfiguration */
    ngx_http_canary_init,                  /* postconfiguration */

    ngx_http_canary_create_main_conf,      /* create main configuration */
    ngx_http_canary_init_main_conf,        /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_canary_create_loc_conf,       /* create location configuration */
    ngx_http_canary_merge_loc_conf         /* merge location configuration */
};


ngx_module_t  ngx_http_canary_module = {
    NGX_MODULE_V1,
    &ngx_http_canary_module_ctx,           /* module context */
    ngx_http_canary_commands,              /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_canary_init_process,          /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_canary_exit_process,          /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_http_canary_rollout_cmd_t  ngx_http_canary_rollout_cmds[] = {
    { ngx_string("key"), 1, NGX_CONF_MAX_ARGS, ngx_http_canary_set_key },
    { ngx_string("stable"), 1, 1, ngx_http_canary_set_stable },
    { ngx_string("canary"), 1, 1, ngx_http_canary_set_canary },
    { ngx_string("variant"), 2, 3, ngx_http_canary_set_variant },
    { ngx_string("percent"), 1, 1, ngx_http_canary_set_percent },
    { ngx_string("salt"), 1, 1, ngx_http_canary_set_salt },
    { ngx_string("hash"), 1, 1, ngx_http_canary_set_hash },
    { ngx_string("override"), 1, 1, ngx_http_canary_set_override },
    { ngx_string("segment"), 1, 1, ngx_http_canary_set_segment },
    { ngx_string("match"), 2, 2, ngx_http_canary_set_match },
    { ngx_string("requires"), 1, NGX_CONF_MAX_ARGS,
      ngx_http_canary_set_requires },
    { ngx_string("auto"), 1, NGX_CONF_MAX_ARGS,
      ngx_http_canary_auto_directive },
    { ngx_string("shadow"), 1, 1, ngx_http_canary_shadow_set },
    { ngx_null_string, 0, 0, NULL }
};


static ngx_http_variable_t  ngx_http_canary_vars[] = {

    { ngx_string("canary_upstream"), NULL, ngx_http_canary_upstream_variable,
      ngx_http_canary_var_upstream, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("canary_variant"), NULL, ngx_http_canary_variable,
      ngx_http_canary_var_variant, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("canary_rollout"), NULL, ngx_http_canary_variable,
      ngx_http_canary_var_rollout, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("canary_bucket"), NULL, ngx_http_canary_variable,
      ngx_http_canary_var_bucket, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("canary_reason"), NULL, ngx_http_canary_variable,
      ngx_http_canary_var_reason, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("canary_shadow"), NULL, ngx_http_canary_shadow_variable,
      0, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    /* where a main request's context lives, see ngx_http_canary_get_ctx() */
    { ngx_string("canary request context"), NULL,
      ngx_http_canary_ctx_variable, 0,
      NGX_HTTP_VAR_NOHASH|NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


static ngx_str_t  ngx_http_canary_ctx_name =
    ngx_string("canary request context");


ngx_str_t  ngx_http_canary_reason_names[] = {
    ngx_string("override"),
    ngx_string("canary_users"),
    ngx_string("stable_users"),
    ngx_string("no_key"),
    ngx_string("window"),
    ngx_string("match"),
    ngx_string("requires"),
    ngx_string("segment"),
    ngx_string("percent"),
    ngx_string("arm_off")
};


ngx_str_t  ngx_http_canary_source_names[] = {
    ngx_string("config"),
    ngx_string("redis"),
    ngx_string("state_file")
};


ngx_str_t  ngx_http_canary_state_names[] = {
    ngx_string(""),
    ngx_string("progressing"),
    ngx_string("paused"),
    ngx_string("promoted"),
    ngx_string("rolled_back")
};


/*
 * The request's context.  A main request's lives in r->variables, in the
 * slot of a variable of the module's own ("canary request context",
 * which configuration cannot name and the variables hash does not hold):
 * nginx allocates and zeroes that array with the request, and neither an
 * internal redirect nor a named location clears it, as they clear the
 * module contexts.  When the context fits the slot's 16 bytes (up to
 * three rollouts) it is the slot itself, so the request allocates
 * nothing and no pool cleanup is needed; else the slot's data points to
 * one made on first need.  A subrequest shares r->variables with its
 * main request but decides on its own variables: its context is a module
 * context, as before.
 */

ngx_http_canary_ctx_t *
ngx_http_canary_get_ctx(ngx_http_request_t *r, ngx_uint_t create)
{
    size_t                        size;
    ngx_uint_t                    i, n;
    ngx_http_canary_ctx_t        *ctx;
    ngx_http_variable_value_t    *slot;
    ngx_http_canary_main_conf_t  *cmcf;

    static ngx_http_canary_decision_t  undecided;

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_canary_module);

    if (r == r->main) {
        slot = &r->variables[cmcf->ctx_index];

        if (cmcf->ctx_inline) {
            return (ngx_http_canary_ctx_t *) slot;
        }

        ctx = (ngx_http_canary_ctx_t *) slot->data;

    } else {
        slot = NULL;
        ctx = ngx_http_get_module_ctx(r, ngx_http_canary_module);
    }

    if (ctx || !create) {
        return ctx;
    }

    n = cmcf->rollouts.nelts;
    size = offsetof(ngx_http_canary_ctx_t, decisions)
           + n * sizeof(ngx_http_canary_decision_t);

    ctx = ngx_palloc(r->pool, size);
    if (ctx == NULL) {
        return NULL;
    }

    ctx->routed = 0;
    ctx->counted = 0;
    ctx->shadow = 0;

    for (i = 0; i < n; i++) {
        ctx->decisions[i] = undecided;
    }

    if (slot) {
        slot->data = (u_char *) ctx;

    } else {
        ngx_http_set_ctx(r, ctx, ngx_http_canary_module);
    }

    return ctx;
}


/* the usual case without a call */

static ngx_inline ngx_http_canary_ctx_t *
ngx_http_canary_ctx(ngx_http_request_t *r, ngx_http_canary_main_conf_t *cmcf,
    ngx_uint_t create)
{
    if (r == r->main && cmcf->ctx_inline) {
        return (ngx_http_canary_ctx_t *) &r->variables[cmcf->ctx_index];
    }

    return ngx_http_canary_get_ctx(r, create);
}


static ngx_int_t
ngx_http_canary_ctx_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    /* never asked for: the slot is the context, see above */

    v->not_found = 1;

    return NGX_OK;
}


/*
 * The routing decision of one rollout for one request, cached in the
 * request context, so every variable and the log phase see the same
 * answer whichever asks first.
 */

ngx_http_canary_decision_t
ngx_http_canary_decide(ngx_http_request_t *r, ngx_uint_t index)
{
    return *ngx_http_canary_decision(r, index);
}


/* the same, as a pointer: the caller reads only the fields it needs */

static ngx_inline ngx_http_canary_decision_t *
ngx_http_canary_decision(ngx_http_request_t *r, ngx_uint_t index)
{
    ngx_http_canary_ctx_t        *ctx;
    ngx_http_canary_main_conf_t  *cmcf;

    static ngx_http_canary_decision_t  none;

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_canary_module);

    ctx = ngx_http_canary_ctx(r, cmcf, 1);

    if (ctx == NULL) {
        return &none;
    }

    if (ctx->decisions[index].decided) {
        return &ctx->decisions[index];
    }

    return ngx_http_canary_decide_plain(r, cmcf, index, ctx->decisions);
}


/*
 * The request path's decision when none is cached: for a "plain" rollout
 * (no override, segment, match or requires, keys that are all variables)
 * whose snapshot has no user sets, no time window and every arm on with
 * a weight (snap->plain), what the evaluation below would find, the
 * bucket against the percent and, for an exposed user of a rollout with
 * arms, the arm, in a small function without the evaluation's
 * locals (whose addresses are taken, so the stack protector guards its
 * frame); else the evaluation itself.  Stored in decisions[index],
 * returned by pointer.
 */

static ngx_http_canary_decision_t *
ngx_http_canary_decide_plain(ngx_http_request_t *r,
    ngx_http_canary_main_conf_t *cmcf, ngx_uint_t index,
    ngx_http_canary_decision_t *decisions)
{
    uint32_t                      hash;
    ngx_uint_t                    i, bucket, variant;
    ngx_http_canary_value_t      *kv;
    ngx_http_canary_rollout_t    *ro;
    ngx_http_canary_decision_t    d;
    ngx_http_canary_snapshot_t   *snap;
    ngx_http_variable_value_t    *vv;

    static ngx_http_canary_decision_t  undecided;

    ro = (ngx_http_canary_rollout_t *) cmcf->rollouts.elts + index;
    snap = ro->sh->snapshot;

    if (!ro->plain || !snap->plain) {
        (void) ngx_http_canary_evaluate(r, index, decisions, NULL, 0);
        return &decisions[index];
    }

    /* the key: the first non-empty of the "key" variables */

    kv = ro->keys.elts;

    for (i = 0; i < ro->keys.nelts; i++) {
        vv = ngx_http_get_indexed_variable(r, kv[i].index);

        if (vv && !vv->not_found && vv->len) {
            goto found;
        }
    }

    d = undecided;
    d.decided = 1;
    d.variant = NGX_HTTP_CANARY_STABLE;
    d.reason = NGX_HTTP_CANARY_REASON_NO_KEY;

    decisions[index] = d;

    return &decisions[index];

found:

    hash = ngx_http_canary_murmur3_key(&ro->salted, vv->data, vv->len);

    bucket = ngx_http_canary_bucket(hash, ro->hash);
    variant = NGX_HTTP_CANARY_STABLE;

    if (bucket < snap->percent) {
        variant = (ro->narms == 1) ? NGX_HTTP_CANARY_CANARY
                                   : ngx_http_canary_plain_arm(ro, snap, vv);
    }

    /* put together here, stored once */

    d = undecided;
    d.decided = 1;
    d.has_bucket = 1;
    d.reason = NGX_HTTP_CANARY_REASON_PERCENT;
    d.variant = variant;
    d.bucket = bucket;

    decisions[index] = d;

    return &decisions[index];
}


/* an exposed user's arm, as the evaluation finds it; out of line */

static ngx_http_canary_noinline ngx_uint_t
ngx_http_canary_plain_arm(ngx_http_canary_rollout_t *ro,
    ngx_http_canary_snapshot_t *snap, ngx_http_variable_value_t *key)
{
    uint32_t  hash;

    hash = ngx_http_canary_murmur3_key(&ro->arm_salted, key->data, key->len);

    return 1 + ngx_http_canary_arm(hash, snap->weight, ro->narms,
                                   snap->total);
}


/*
 * The evaluation, in the order of the contract: override, user lists,
 * key, window, match, requires, segment or percent.  Reads the published
 * snapshot without a lock; decisions[] (one per rollout) memoizes it and
 * the rollouts it requires.
 *
 * With "in" NULL (the request path) the override, key and segment come
 * from the request's variables, read only when the evaluation gets to
 * them.  With "in" (canary_status ?explain=) they are the given values,
 * for this rollout and for the rollouts it requires; the "match" value is
 * still the variable of the request at hand, the status request itself,
 * so a support engineer can set the header it reads; and "in" returns the
 * percent compared and the match result for depth 0.
 */

ngx_http_canary_decision_t
ngx_http_canary_evaluate(ngx_http_request_t *r, ngx_uint_t index,
    ngx_http_canary_decision_t *decisions, ngx_http_canary_input_t *in,
    ngx_uint_t depth)
{
    uint32_t                      hash, mask;
    ngx_str_t                     key, value;
    ngx_int_t                     lo, hi, mid, rc;
    ngx_uint_t                    i, percent, found;
    ngx_http_canary_value_t      *kv;
    ngx_http_canary_rollout_t    *ro;
    ngx_http_canary_segment_t    *seg;
    ngx_http_canary_decision_t   *d, req;
    ngx_http_canary_snapshot_t   *snap;
    ngx_http_canary_main_conf_t  *cmcf;

    d = &decisions[index];

    if (d->decided) {
        return *d;
    }

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_canary_module);

    d->decided = 1;
    d->variant = NGX_HTTP_CANARY_STABLE;

    ro = (ngx_http_canary_rollout_t *) cmcf->rollouts.elts + index;
    snap = ro->sh->snapshot;

    /* 1. override */

    if (in) {
        found = in->has_override;
        value = in->override;

    } else {
        found = ro->override.set
                && ngx_http_canary_value(r, &ro->override, &value) == NGX_OK;
    }

    if (found && value.len) {

        /* an arm's name (exact), then always|canary, never|stable */

        rc = ngx_http_canary_find_arm(ro, value.data, value.len);

        if (rc != NGX_ERROR) {
            d->variant = rc;
            d->reason = NGX_HTTP_CANARY_REASON_OVERRIDE;
            return *d;
        }

        if ((value.len == 6 && ngx_strncasecmp(value.data,
                                               (u_char *) "always", 6) == 0)
            || (value.len == 6 && ngx_strncasecmp(value.data,
                                                  (u_char *) "canary", 6)
                                  == 0))
        {
            d->variant = NGX_HTTP_CANARY_CANARY;
            d->reason = NGX_HTTP_CANARY_REASON_OVERRIDE;
            return *d;
        }

        if ((value.len == 5 && ngx_strncasecmp(value.data,
                                               (u_char *) "never", 5) == 0)
            || (value.len == 6 && ngx_strncasecmp(value.data,
                                                  (u_char *) "stable", 6)
                                  == 0))
        {
            d->reason = NGX_HTTP_CANARY_REASON_OVERRIDE;
            return *d;
        }
    }

    /* the key: the first non-empty of the "key" values */

    if (in) {
        key = in->key;

    } else {
        key.len = 0;
        kv = ro->keys.elts;

        for (i = 0; i < ro->keys.nelts; i++) {
            if (ngx_http_canary_value(r, &kv[i], &key) == NGX_OK
                && key.len)
            {
                break;
            }
        }
    }

    if (key.len == 0) {
        d->reason = NGX_HTTP_CANARY_REASON_NO_KEY;
        return *d;
    }

    hash = ngx_http_canary_murmur3_key(&ro->salted, key.data, key.len);

    d->bucket = ngx_http_canary_bucket(hash, ro->hash);
    d->has_bucket = 1;

    /* 2. user lists */

    if (snap->canary_users
        && ngx_http_canary_set_contains(snap->canary_users, &key))
    {
        if (snap->arms_off & 1) {
            d->reason = NGX_HTTP_CANARY_REASON_ARM_OFF;
            return *d;
        }

        d->variant = NGX_HTTP_CANARY_CANARY;
        d->reason = NGX_HTTP_CANARY_REASON_CANARY_USERS;
        return *d;
    }

    /* users:<arm> sets, the arms' own canary_users */

    if (snap->arm_users_mask) {
        for (i = 0, mask = snap->arm_users_mask; mask; i++, mask >>= 1) {
            if ((mask & 1)
                && i < ro->narms
                && ngx_http_canary_set_contains(snap->arm_users[i], &key))
            {
                if (snap->arms_off & (1 << i)) {
                    d->reason = NGX_HTTP_CANARY_REASON_ARM_OFF;
                    return *d;
                }

                d->variant = i + 1;
                d->reason = NGX_HTTP_CANARY_REASON_CANARY_USERS;
                return *d;
            }
        }
    }

    if (snap->stable_users
        && ngx_http_canary_set_contains(snap->stable_users, &key))
    {
        d->reason = NGX_HTTP_CANARY_REASON_STABLE_USERS;
        return *d;
    }

    /* 4. time window */

    if ((snap->start && ngx_time() < snap->start)
        || (snap->end && ngx_time() >= snap->end))
    {
        d->reason = NGX_HTTP_CANARY_REASON_WINDOW;
        return *d;
    }

    /* 5. eligibility */

    if (ro->match) {
        if (ngx_http_canary_value(r, &ro->match->value, &value) != NGX_OK) {
            d->reason = NGX_HTTP_CANARY_REASON_MATCH;
            return *d;
        }

        /*
         * A match is rc >= 0: PCRE2 returns 1 (or 0 when the regex has
         * more groups than the ovector has room for), PCRE1 returns 0.
         */

        rc = ngx_regex_exec(ro->match->regex, &value, NULL, 0);

        if (in && depth == 0) {
            in->match = (rc >= 0);
        }

        if (rc < 0) {
            if (rc != NGX_REGEX_NO_MATCHED) {
                ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                              ngx_regex_exec_n " failed: %i on \"%V\" "
                              "in rollout \"%V\"", rc, &value, &ro->name);
            }

            d->reason = NGX_HTTP_CANARY_REASON_MATCH;
            return *d;
        }
    }

    /* 6. dependencies; cycles were refused at configuration time */

    for (i = 0; i < ro->nrequires; i++) {
        req = ngx_http_canary_evaluate(r, ro->requires_index[i], decisions,
                                       in, depth + 1);

        if (req.variant == NGX_HTTP_CANARY_STABLE) {
            d->reason = NGX_HTTP_CANARY_REASON_REQUIRES;
            return *d;
        }
    }

    /* 7. the segment's percent if it has one, else the rollout's */

    percent = snap->percent;
    d->reason = NGX_HTTP_CANARY_REASON_PERCENT;

    if (in) {
        found = in->has_segment;
        value = in->segment;

    } else {
        found = ro->segment.set
                && ngx_http_canary_value(r, &ro->segment, &value) == NGX_OK;
    }

    if (found && snap->nsegments) {
        seg = snap->segments;
        lo = 0;
        hi = (ngx_int_t) snap->nsegments - 1;

        while (lo <= hi) {
            mid = (lo + hi) / 2;
            rc = ngx_memn2cmp(value.data, seg[mid].value.data,
                              value.len, seg[mid].value.len);

            if (rc == 0) {
                percent = seg[mid].percent;
                d->reason = NGX_HTTP_CANARY_REASON_SEGMENT;
                break;
            }

            if (rc < 0) {
                hi = mid - 1;

            } else {
                lo = mid + 1;
            }
        }
    }

    if (in && depth == 0) {
        in->percent = percent;
    }

    if (d->bucket >= percent) {
        return *d;
    }

    /*
     * Exposed: the arm, by a second hash of the key with another seed
     * (Unleash's variant selection), so that the exposure and the
     * allocation are independent; one arm needs no hash
     */

    if (snap->arms_off == 0 && ro->narms == 1 && snap->total) {
        d->variant = NGX_HTTP_CANARY_CANARY;
        return *d;
    }

    if (snap->total == 0) {
        d->reason = NGX_HTTP_CANARY_REASON_ARM_OFF;
        return *d;
    }

    hash = ngx_http_canary_murmur3_key(&ro->arm_salted, key.data, key.len);

    i = ngx_http_canary_arm(hash, snap->weight, ro->narms, snap->total);

    if (snap->arms_off & (1 << i)) {
        d->reason = NGX_HTTP_CANARY_REASON_ARM_OFF;
        return *d;
    }

    d->variant = i + 1;

    return *d;
}


/* an arm's variant (1 ..) by its name, or NGX_ERROR */

ngx_int_t
ngx_http_canary_find_arm(ngx_http_canary_rollout_t *ro, u_char *name,
    size_t len)
{
    ngx_uint_t  v;

    for (v = 1; v <= ro->narms; v++) {
        if (ro->variants[v].name.len == len
            && ngx_strncmp(ro->variants[v].name.data, name, len) == 0)
        {
            return v;
        }
    }

    return NGX_ERROR;
}


static ngx_inline ngx_int_t
ngx_http_canary_value(ngx_http_request_t *r, ngx_http_canary_value_t *v,
    ngx_str_t *value)
{
    ngx_http_variable_value_t  *vv;

    if (v->cv == NULL) {
        vv = ngx_http_get_indexed_variable(r, v->index);

        if (vv == NULL || vv->not_found || vv->len == 0) {
            /* PCRE2 before 10.43 refuses a NULL subject even if empty */
            ngx_str_set(value, "");
            return NGX_OK;
        }

        value->len = vv->len;
        value->data = vv->data;

        return NGX_OK;
    }

    return ngx_http_complex_value(r, v->cv, value);
}


ngx_http_canary_ctx_t *
ngx_http_canary_request_ctx(ngx_http_request_t *r, ngx_uint_t create)
{
    return ngx_http_canary_get_ctx(r, create);
}


ngx_int_t
ngx_http_canary_read_value(ngx_http_request_t *r, ngx_http_canary_value_t *v,
    ngx_str_t *value)
{
    return ngx_http_canary_value(r, v, value);
}


/*
 * Notes the first "canary" location that a main request enters, before
 * anything (error_page, try_files) can send it elsewhere: the request is
 * counted under that rollout, with that rollout's decision, wherever it
 * ends.
 */

static ngx_int_t
ngx_http_canary_rewrite_handler(ngx_http_request_t *r)
{
    ngx_http_canary_ctx_t        *ctx;
    ngx_http_canary_loc_conf_t   *clcf;
    ngx_http_canary_main_conf_t  *cmcf;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_canary_module);

    if (clcf->rollout == NGX_CONF_UNSET || r != r->main) {
        return NGX_DECLINED;
    }

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_canary_module);

    ctx = ngx_http_canary_ctx(r, cmcf, 1);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ctx->routed == 0) {
        ctx->routed = clcf->rollout + 1;
    }

    return NGX_DECLINED;
}


static ngx_int_t
ngx_http_canary_log_handler(ngx_http_request_t *r)
{
    ngx_int_t                     index;
    ngx_uint_t                    status;
    ngx_http_canary_ctx_t        *ctx;
    ngx_http_canary_rollout_t    *ro;
    ngx_http_canary_decision_t   *d;
    ngx_http_canary_loc_conf_t   *clcf;
    ngx_http_canary_main_conf_t  *cmcf;

    if (r != r->main) {
        return NGX_OK;
    }

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_canary_module);

    ctx = ngx_http_canary_ctx(r, cmcf, 0);

    if (ctx && ctx->routed) {
        index = ctx->routed - 1;

    } else {
        /* finalized before the rewrite phase, e.g. by a server "return" */

        clcf = ngx_http_get_module_loc_conf(r, ngx_http_canary_module);
        index = clcf->rollout;

        if (index == NGX_CONF_UNSET) {
            return NGX_OK;
        }

        ctx = ngx_http_canary_ctx(r, cmcf, 1);
        if (ctx == NULL) {
            return NGX_OK;
        }
    }

    if (ctx->counted) {
        return NGX_OK;
    }

    ctx->counted = 1;

    d = &ctx->decisions[index];

    if (!d->decided) {
        d = ngx_http_canary_decide_plain(r, cmcf, index, ctx->decisions);
    }

    ro = (ngx_http_canary_rollout_t *) cmcf->rollouts.elts + index;

    /* the status as the log module's $status sees it */

    status = r->err_status ? r->err_status : r->headers_out.status;

    ngx_http_canary_count_status(r, ngx_http_canary_counters(ro,
                                        ngx_http_canary_slot, d->variant),
                                 status);

    return NGX_OK;
}


static ngx_int_t
ngx_http_canary_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_int_t                     index;
    ngx_str_t                    *s;
    ngx_http_canary_ctx_t        *ctx;
    ngx_http_canary_rollout_t    *ro;
    ngx_http_canary_decision_t   *d;
    ngx_http_canary_loc_conf_t   *clcf;
    ngx_http_canary_main_conf_t  *cmcf;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_canary_module);

    index = clcf->rollout;

    if (index == NGX_CONF_UNSET) {

        /*
         * a location without "canary" that an internal redirect led to:
         * the rollout that routed the request, the one it is counted by
         */

        ctx = ngx_http_canary_get_ctx(r, 0);

        if (ctx == NULL || ctx->routed == 0) {
            v->not_found = 1;
            return NGX_OK;
        }

        index = ctx->routed - 1;
    }

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_canary_module);
    ro = (ngx_http_canary_rollout_t *) cmcf->rollouts.elts + index;

    d = ngx_http_canary_decision(r, index);

    switch (data) {

    case ngx_http_canary_var_upstream:
        s = &ro->variants[d->variant].upstream;
        break;

    case ngx_http_canary_var_variant:
        s = &ro->variants[d->variant].name;
        break;

    case ngx_http_canary_var_rollout:
        s = &ro->name;
        break;

    case ngx_http_canary_var_reason:
        s = &ngx_http_canary_reason_names[d->reason];
        break;

    default: /* ngx_http_canary_var_bucket */
        return ngx_http_canary_bucket_value(r, v, d);
    }

    v->len = s->len;
    v->data = s->data;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;
}


/*
 * $canary_upstream in a "canary" location, what proxy_pass asks on every
 * routed request: the same as ngx_http_canary_variable() gives, without
 * its other cases
 */

static ngx_int_t
ngx_http_canary_upstream_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_int_t                     index;
    ngx_str_t                    *s;
    ngx_http_canary_rollout_t    *ro;
    ngx_http_canary_decision_t   *d;
    ngx_http_canary_loc_conf_t   *clcf;
    ngx_http_canary_main_conf_t  *cmcf;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_canary_module);

    index = clcf->rollout;

    if (index == NGX_CONF_UNSET) {
        return ngx_http_canary_variable(r, v, data);
    }

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_canary_module);
    ro = (ngx_http_canary_rollout_t *) cmcf->rollouts.elts + index;

    d = ngx_http_canary_decision(r, index);

    s = &ro->variants[d->variant].upstream;

    v->len = s->len;
    v->data = s->data;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;
}


/* out of ngx_http_canary_variable(), which then needs a smaller frame */

static ngx_int_t
ngx_http_canary_bucket_value(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, ngx_http_canary_decision_t *d)
{
    u_char  *p;

    if (!d->has_bucket) {
        v->not_found = 1;
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    v->len = ngx_sprintf(p, "%ui", (ngx_uint_t) d->bucket) - p;
    v->data = p;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_canary_variant_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t                    *s;
    ngx_http_canary_rollout_t    *ro;
    ngx_http_canary_decision_t   *d;
    ngx_http_canary_main_conf_t  *cmcf;

    d = ngx_http_canary_decision(r, data);

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_canary_module);
    ro = (ngx_http_canary_rollout_t *) cmcf->rollouts.elts + data;
    s = &ro->variants[d->variant].name;

    v->len = s->len;
    v->data = s->data;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;
}


static char *
ngx_http_canary_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_canary_main_conf_t *cmcf = conf;

    ssize_t     size;
    ngx_str_t  *value, name;

    if (cmcf->shm_zone) {
        return "is duplicate";
    }

    value = cf->args->elts;

    size = ngx_parse_size(&value[1]);

    if (size == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid canary_zone size \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (size < (ssize_t) (8 * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "canary_zone \"%V\" is too small", &value[1]);
        return NGX_CONF_ERROR;
    }

    ngx_str_set(&name, "canary");

    cmcf->shm_zone = ngx_shared_memory_add(cf, &name, size,
                                           &ngx_http_canary_module);
    if (cmcf->shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    cmcf->shm_zone->init = ngx_http_canary_init_zone;
    cmcf->shm_zone->data = cmcf;

    return NGX_CONF_OK;
}


static char *
ngx_http_canary_rollout_block(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_canary_main_conf_t *cmcf = conf;

    char                       *rv;
    ngx_str_t                  *value;
    ngx_uint_t                  i;
    ngx_conf_t                  save;
    ngx_http_canary_variant_t  *var;
    ngx_http_canary_rollout_t  *ro;

    value = cf->args->elts;
    ro = cmcf->rollouts.elts;

    for (i = 0; i < cmcf->rollouts.nelts; i++) {
        if (ro[i].name.len == value[1].len
            && ngx_strncmp(ro[i].name.data, value[1].data, value[1].len) == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate canary_rollout \"%V\"", &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    if (ngx_http_canary_check_name(&value[1]) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid canary_rollout name \"%V\"",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    /* a request's context notes a rollout in 16 bits, see ctx_t */

    if (cmcf->rollouts.nelts == NGX_HTTP_CANARY_MAX_ROLLOUTS) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "too many canary_rollout blocks, at most %d",
                           NGX_HTTP_CANARY_MAX_ROLLOUTS);
        return NGX_CONF_ERROR;
    }

    ro = ngx_array_push(&cmcf->rollouts);
    if (ro == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(ro, sizeof(ngx_http_canary_rollout_t));

    ro->name = value[1];
    ro->index = cmcf->rollouts.nelts - 1;
    ro->percent = NGX_CONF_UNSET_UINT;
    ro->shadow = NGX_CONF_UNSET_UINT;
    ro->hash = NGX_CONF_UNSET_UINT;
    ro->file = cf->conf_file->file.name;
    ro->line = cf->conf_file->line;
    ro->nvariants = 1;
    ngx_str_set(&ro->variants[NGX_HTTP_CANARY_STABLE].name, "stable");

    if (ngx_array_init(&ro->keys, cf->pool, 2,
                       sizeof(ngx_http_canary_value_t))
        != NGX_OK
        || ngx_array_init(&ro->requires, cf->pool, 1,
                          sizeof(ngx_http_canary_require_t))
           != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    save = *cf;
    cf->handler = ngx_http_canary_rollout;
    cf->handler_conf = (void *) ro;

    rv = ngx_conf_parse(cf, NULL);

    *cf = save;

    if (rv != NGX_CONF_OK) {
        return rv;
    }

    if (ro->keys.nelts == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "no \"key\" in canary_rollout \"%V\"", &ro->name);
        return NGX_CONF_ERROR;
    }

    if (ro->variants[NGX_HTTP_CANARY_STABLE].upstream.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "no \"stable\" in canary_rollout \"%V\"",
                           &ro->name);
        return NGX_CONF_ERROR;
    }

    if (ro->narms == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "no \"canary\" or \"variant\" in "
                           "canary_rollout \"%V\"", &ro->name);
        return NGX_CONF_ERROR;
    }

    ro->total = 0;

    for (i = 1; i <= ro->narms; i++) {
        ro->total += ro->variants[i].weight;

        /* the name of its users file, see ngx_http_canary_users.c */

        var = &ro->variants[i];
        var->users.len = ro->name.len + 1 + var->name.len;
        var->users.data = ngx_pnalloc(cf->pool, var->users.len);
        if (var->users.data == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_sprintf(var->users.data, "%V:%V", &ro->name, &var->name);
    }

    ngx_conf_init_uint_value(ro->percent, 0);
    ngx_conf_init_uint_value(ro->shadow, 0);
    ngx_conf_init_uint_value(ro->hash, NGX_HTTP_CANARY_HASH_MURMUR3);

    if (ro->hash == NGX_HTTP_CANARY_HASH_UNLEASH && ro->percent % 100) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"hash unleash\" takes a whole percent "
                           "in canary_rollout \"%V\"", &ro->name);
        return NGX_CONF_ERROR;
    }

    if (ro->salt.data == NULL) {
        ro->salt = ro->name;
    }

    ngx_http_canary_murmur3_init(&ro->salted);
    ngx_http_canary_murmur3_update(&ro->salted, ro->salt.data, ro->salt.len);
    ngx_http_canary_murmur3_update(&ro->salted, (u_char *) ":", 1);

    ngx_http_canary_murmur3_seed(&ro->arm_salted, NGX_HTTP_CANARY_ARM_SEED);
    ngx_http_canary_murmur3_update(&ro->arm_salted, ro->salt.data,
                                   ro->salt.len);
    ngx_http_canary_murmur3_update(&ro->arm_salted, (u_char *) ":", 1);

    /*
     * $canary_variant_<name>: this rollout's variant, on demand.  nginx
     * ends a variable's name in a string at any byte but a letter, a digit
     * or '_', so a name with others ("new-checkout") gets a second name
     * with '_' for each ("$canary_variant_new_checkout"); two rollouts
     * may not share one.
     */

    if (ngx_http_canary_add_variant_variables(cf, cmcf, ro) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_canary_add_variant_variables(ngx_conf_t *cf,
    ngx_http_canary_main_conf_t *cmcf, ngx_http_canary_rollout_t *ro)
{
    u_char                     *p;
    size_t                      k;
    ngx_str_t                   name, word, *other;
    ngx_uint_t                  i, changed;
    ngx_http_variable_t        *var;
    ngx_http_canary_rollout_t  *rollouts;

    name.len = sizeof("canary_variant_") - 1 + ro->name.len;
    name.data = ngx_pnalloc(cf->pool, 2 * name.len);
    if (name.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(name.data, "canary_variant_",
                   sizeof("canary_variant_") - 1);
    ngx_memcpy(p, ro->name.data, ro->name.len);

    word.len = name.len;
    word.data = name.data + name.len;
    ngx_memcpy(word.data, name.data, name.len);

    changed = ngx_http_canary_variable_word(
                  word.data + sizeof("canary_variant_") - 1, ro->name.len);

    /* no other rollout's name may give the same word */

    rollouts = cmcf->rollouts.elts;

    p = word.data + sizeof("canary_variant_") - 1;

    for (i = 0; i < ro->index; i++) {
        other = &rollouts[i].name;

        if (other->len != ro->name.len) {
            continue;
        }

        for (k = 0; k < other->len; k++) {
            if (ngx_http_canary_word_char(other->data[k]) != p[k]) {
                break;
            }
        }

        if (k == other->len) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "canary_rollout \"%V\" and \"%V\" would "
                               "both be \"$%V\", rename one",
                               other, &ro->name, &word);
            return NGX_ERROR;
        }
    }

    /* the name, and the word when it differs */

    for (i = 0; i < 1 + changed; i++) {
        var = ngx_http_add_variable(cf, i ? &word : &name, 0);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = ngx_http_canary_variant_variable;
        var->data = ro->index;
    }

    return NGX_OK;
}


/* '_' for every byte nginx would end a variable's name at; 1 if any */

static ngx_uint_t
ngx_http_canary_variable_word(u_char *p, size_t len)
{
    u_char      c;
    ngx_uint_t  changed;

    changed = 0;

    for ( /* void */ ; len; p++, len--) {
        c = ngx_http_canary_word_char(*p);

        if (c != *p) {
            *p = c;
            changed = 1;
        }
    }

    return changed;
}


static u_char
ngx_http_canary_word_char(u_char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
        || (c >= '0' && c <= '9') || c == '_')
    {
        return c;
    }

    return '_';
}


static char *
ngx_http_canary_rollout(ngx_conf_t *cf, ngx_command_t *dummy, void *conf)
{
    ngx_http_canary_rollout_t *ro = conf;

    ngx_str_t                      *value;
    ngx_http_canary_rollout_cmd_t  *cmd;

    value = cf->args->elts;

    for (cmd = ngx_http_canary_rollout_cmds; cmd->name.len; cmd++) {

        if (cmd->name.len != value[0].len
            || ngx_strncmp(cmd->name.data, value[0].data, value[0].len) != 0)
        {
            continue;
        }

        if (cf->args->nelts - 1 < cmd->min_args
            || cf->args->nelts - 1 > cmd->max_args)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid number of arguments in \"%V\" "
                               "of canary_rollout \"%V\"", &value[0],
                               &ro->name);
            return NGX_CONF_ERROR;
        }

        return cmd->set(cf, ro);
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "unknown directive \"%V\" in canary_rollout \"%V\"",
                       &value[0], &ro->name);

    return NGX_CONF_ERROR;
}


static char *
ngx_http_canary_set_key(ngx_conf_t *cf, ngx_http_canary_rollout_t *ro)
{
    ngx_str_t                *value;
    ngx_uint_t                i;
    ngx_http_canary_value_t  *kv;

    if (ro->keys.nelts) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"key\" is duplicate");
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {
        kv = ngx_array_push(&ro->keys);
        if (kv == NULL) {
            return NGX_CONF_ERROR;
        }

        if (ngx_http_canary_compile_value(cf, &value[i], kv)
            != NGX_CONF_OK)
        {
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_canary_set_stable(ngx_conf_t *cf, ngx_http_canary_rollout_t *ro)
{
    ngx_str_t  *value;

    value = cf->args->elts;

    if (ro->variants[NGX_HTTP_CANARY_STABLE].upstream.len) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"stable\" is duplicate");
        return NGX_CONF_ERROR;
    }

    if (value[1].len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "empty \"stable\" upstream");
        return NGX_CONF_ERROR;
    }

    ro->variants[NGX_HTTP_CANARY_STABLE].upstream = value[1];

    return NGX_CONF_OK;
}


/* "canary UPSTREAM" is "variant canary UPSTREAM weight=1" */

static char *
ngx_http_canary_set_canary(ngx_conf_t *cf, ngx_http_canary_rollout_t *ro)
{
    ngx_str_t  *value, name;

    value = cf->args->elts;

    if (ngx_http_canary_find_arm(ro, (u_char *) "canary", 6) != NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"canary\" is duplicate");
        return NGX_CONF_ERROR;
    }

    ngx_str_set(&name, "canary");

    return ngx_http_canary_add_arm(cf, ro, &name, &value[1], 1);
}


/* variant NAME UPSTREAM [weight=N] */

static char *
ngx_http_canary_set_variant(ngx_conf_t *cf, ngx_http_canary_rollout_t *ro)
{
    ngx_int_t   weight;
    ngx_str_t  *value;

    value = cf->args->elts;

    weight = 1;

    if (cf->args->nelts == 4) {
        if (value[3].len <= 7
            || ngx_strncmp(value[3].data, "weight=", 7) != 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\" of variant "
                               "\"%V\", it must be \"weight=<n>\"",
                               &value[3], &value[1]);
            return NGX_CONF_ERROR;
        }

        weight = ngx_atoi(value[3].data + 7, value[3].len - 7);

        if (weight == NGX_ERROR || weight > NGX_HTTP_CANARY_MAX_WEIGHT) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid weight \"%V\" of variant \"%V\", "
                               "it must be 0..%d", &value[3], &value[1],
                               NGX_HTTP_CANARY_MAX_WEIGHT);
            return NGX_CONF_ERROR;
        }
    }

    if (ngx_http_canary_check_name(&value[1]) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid variant name \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (value[1].len == 6 && ngx_strncmp(value[1].data, "stable", 6) == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "variant name \"stable\" is reserved for the "
                           "users outside the experiment");
        return NGX_CONF_ERROR;
    }

    if (ngx_http_canary_find_arm(ro, value[1].data, value[1].len)
        != NGX_ERROR)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "duplicate variant \"%V\" in canary_rollout "
                           "\"%V\"", &value[1], &ro->name);
        return NGX_CONF_ERROR;
    }

    if (ngx_http_canary_add_arm(cf, ro, &value[1], &value[2], weight)
        != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    /* its upstream is checked once every upstream{} is known */

    ro->variants[ro->nvariants - 1].file = cf->conf_file->file.name;
    ro->variants[ro->nvariants - 1].line = cf->conf_file->line;

    return NGX_CONF_OK;
}


static char *
ngx_http_canary_add_arm(ngx_conf_t *cf, ngx_http_canary_rollout_t *ro,
    ngx_str_t *name, ngx_str_t *upstream, ngx_uint_t weight)
{
    ngx_http_canary_variant_t  *var;

    if (ro->narms == NGX_HTTP_CANARY_MAX_ARMS) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "too many variants in canary_rollout \"%V\", "
                           "at most %d", &ro->name,
                           NGX_HTTP_CANARY_MAX_ARMS);
        return NGX_CONF_ERROR;
    }

    if (upstream->len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "empty upstream of variant \"%V\"", name);
        return NGX_CONF_ERROR;
    }

    var = &ro->variants[ro->nvariants++];
    ro->narms++;

    var->name = *name;
    var->upstream = *upstream;
    var->weight = weight;

    return NGX_CONF_OK;
}


/*
 * A rollout's or a variant's name: printable ASCII without a space, a
 * double quote or a backslash, as they appear in logs and labels.
 */

static ngx_int_t
ngx_http_canary_check_name(ngx_str_t *name)
{
    ngx_uint_t  i;

    for (i = 0; i < name->len; i++) {
        if (name->data[i] <= ' ' || name->data[i] == '"'
            || name->data[i] == '\\' || name->data[i] >= 0x7f)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static char *
ngx_http_canary_set_percent(ngx_conf_t *cf, ngx_http_canary_rollout_t *ro)
{
    uint32_t    percent;
    ngx_str_t  *value;

    value = cf->args->elts;

    if (ro->percent != NGX_CONF_UNSET_UINT) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"percent\" is duplicate");
        return NGX_CONF_ERROR;
    }

    if (ngx_http_canary_parse_percent(value[1].data, value[1].len, &percent)
        != 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid percent \"%V\" in canary_rollout \"%V\", "
                           "it must be 0..100 with at most two decimals",
                           &value[1], &ro->name);
        return NGX_CONF_ERROR;
    }

    ro->percent = percent;

    return NGX_CONF_OK;
}


static char *
ngx_http_canary_set_salt(ngx_conf_t *cf, ngx_http_canary_rollout_t *ro)
{
    ngx_str_t  *value;

    value = cf->args->elts;

    if (ro->salt.data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"salt\" is duplicate");
        return NGX_CONF_ERROR;
    }

    ro->salt = value[1];

    return NGX_CONF_OK;
}


static char *
ngx_http_canary_set_hash(ngx_conf_t *cf, ngx_http_canary_rollout_t *ro)
{
    ngx_str_t  *value;

    value = cf->args->elts;

    if (ro->hash != NGX_CONF_UNSET_UINT) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"hash\" is duplicate");
        return NGX_CONF_ERROR;
    }

    if (value[1].len == 7
        && ngx_strncmp(value[1].data, "murmur3", 7) == 0)
    {
        ro->hash = NGX_HTTP_CANARY_HASH_MURMUR3;

    } else if (value[1].len == 7
               && ngx_strncmp(value[1].data, "unleash", 7) == 0)
    {
        ro->hash = NGX_HTTP_CANARY_HASH_UNLEASH;

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid hash \"%V\", it must be "
                           "\"murmur3\" or \"unleash\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_canary_set_override(ngx_conf_t *cf, ngx_http_canary_rollout_t *ro)
{
    ngx_str_t  *value;

    value = cf->args->elts;

    if (ro->override.set) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"override\" is duplicate");
        return NGX_CONF_ERROR;
    }

    return ngx_http_canary_compile_value(cf, &value[1], &ro->override);
}


static char *
ngx_http_canary_set_segment(ngx_conf_t *cf, ngx_http_canary_rollout_t *ro)
{
    ngx_str_t  *value;

    value = cf->args->elts;

    if (ro->segment.set) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"segment\" is duplicate");
        return NGX_CONF_ERROR;
    }

    return ngx_http_canary_compile_value(cf, &value[1], &ro->segment);
}


static char *
ngx_http_canary_set_match(ngx_conf_t *cf, ngx_http_canary_rollout_t *ro)
{
    u_char                errstr[NGX_MAX_CONF_ERRSTR];
    ngx_str_t            *value;
    ngx_regex_compile_t   rc;

    value = cf->args->elts;

    if (ro->match) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"match\" is duplicate");
        return NGX_CONF_ERROR;
    }

    ro->match = ngx_pcalloc(cf->pool, sizeof(ngx_http_canary_match_t));
    if (ro->match == NULL) {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_canary_compile_value(cf, &value[1], &ro->match->value)
        != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&rc, sizeof(ngx_regex_compile_t));

    rc.pattern = value[2];
    rc.pool = cf->pool;
    rc.err.len = NGX_MAX_CONF_ERRSTR;
    rc.err.data = errstr;

    if (rc.pattern.len > 1 && rc.pattern.data[0] == '~'
        && rc.pattern.data[1] == '*')
    {
        rc.pattern.data += 2;
        rc.pattern.len -= 2;
        rc.options = NGX_REGEX_CASELESS;

    } else if (rc.pattern.len > 0 && rc.pattern.data[0] == '~') {
        rc.pattern.data++;
        rc.pattern.len--;

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid match \"%V\", it must begin "
                           "with \"~\" or \"~*\"", &value[2]);
        return NGX_CONF_ERROR;
    }

    if (rc.pattern.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "empty match regex");
        return NGX_CONF_ERROR;
    }

    if (ngx_regex_compile(&rc) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "%V", &rc.err);
        return NGX_CONF_ERROR;
    }

    ro->match->regex = rc.regex;

    return NGX_CONF_OK;
}


static char *
ngx_http_canary_set_requires(ngx_conf_t *cf, ngx_http_canary_rollout_t *ro)
{
    ngx_str_t                  *value;
    ngx_uint_t                  i;
    ngx_http_canary_require_t  *req;

    value = cf->args->elts;

    /* resolved in postconfiguration: the rollouts may come later */

    for (i = 1; i < cf->args->nelts; i++) {
        req = ngx_array_push(&ro->requires);
        if (req == NULL) {
            return NGX_CONF_ERROR;
        }

        req->name = value[i];
        req->file = cf->conf_file->file.name;
        req->line = cf->conf_file->line;
    }

    return NGX_CONF_OK;
}


/*
 * A value that is exactly one variable ("$cookie_uid") is read by index,
 * without the allocation of a complex value; anything else is compiled.
 */

static char *
ngx_http_canary_compile_value(ngx_conf_t *cf, ngx_str_t *src,
    ngx_http_canary_value_t *v)
{
    ngx_str_t                          name;
    ngx_uint_t                         i;
    ngx_http_compile_complex_value_t   ccv;

    /* the "key" values come from ngx_array_push(): not zeroed */

    v->index = NGX_ERROR;
    v->cv = NULL;
    v->set = 1;

    if (src->len > 1 && src->data[0] == '$') {
        name.data = src->data + 1;
        name.len = src->len - 1;

        for (i = 0; i < name.len; i++) {
            if (!((name.data[i] >= 'a' && name.data[i] <= 'z')
                  || (name.data[i] >= 'A' && name.data[i] <= 'Z')
                  || (name.data[i] >= '0' && name.data[i] <= '9')
                  || name.data[i] == '_'))
            {
                break;
            }
        }

        if (i == name.len) {
            v->index = ngx_http_get_variable_index(cf, &name);
            if (v->index == NGX_ERROR) {
                return NGX_CONF_ERROR;
            }

            return NGX_CONF_OK;
        }
    }

    v->cv = ngx_palloc(cf->pool, sizeof(ngx_http_complex_value_t));
    if (v->cv == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

    ccv.cf = cf;
    ccv.value = src;
    ccv.complex_value = v->cv;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_canary(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_canary_loc_conf_t *clcf = conf;

    ngx_str_t  *value;

    if (clcf->name.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    /* resolved when the location is merged: rollouts may come later */

    clcf->name = value[1];
    clcf->file = cf->conf_file->file.name;
    clcf->line = cf->conf_file->line;

    return NGX_CONF_OK;
}


ngx_int_t
ngx_http_canary_find(ngx_http_canary_main_conf_t *cmcf, ngx_str_t *name)
{
    ngx_uint_t                  i;
    ngx_http_canary_rollout_t  *ro;

    ro = cmcf->rollouts.elts;

    for (i = 0; i < cmcf->rollouts.nelts; i++) {
        if (ro[i].name.len == name->len
            && ngx_strncmp(ro[i].name.data, name->data, name->len) == 0)
        {
            return i;
        }
    }

    return NGX_ERROR;
}


/*
 * A "variant" arm's upstream: an upstream{} block, or an address with a
 * port ("10.0.0.5:8080"), as proxy_pass http://$canary_upstream takes it
 * without a resolver.
 */

static ngx_int_t
ngx_http_canary_check_upstream(ngx_conf_t *cf, ngx_http_canary_rollout_t *ro,
    ngx_http_canary_variant_t *var)
{
    ngx_uint_t                      i;
    ngx_url_t                       u;
    ngx_http_upstream_srv_conf_t  **uscfp;
    ngx_http_upstream_main_conf_t  *umcf;

    umcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_upstream_module);

    if (umcf) {
        uscfp = umcf->upstreams.elts;

        for (i = 0; i < umcf->upstreams.nelts; i++) {
            if (uscfp[i]->host.len == var->upstream.len
                && ngx_strncasecmp(uscfp[i]->host.data, var->upstream.data,
                                   var->upstream.len) == 0)
            {
                return NGX_OK;
            }
        }
    }

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.url = var->upstream;
    u.no_resolve = 1;

    if (ngx_parse_url(cf->pool, &u) == NGX_OK && !u.no_port
        && u.naddrs > 0)
    {
        return NGX_OK;
    }

    ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                  "unknown upstream \"%V\" of variant \"%V\" in "
                  "canary_rollout \"%V\" in %V:%ui, it must be an "
                  "upstream{} block or an address with a port",
                  &var->upstream, &var->name, &ro->name, &var->file,
                  var->line);

    return NGX_ERROR;
}


/*
 * Depth-first search of the "requires" graph: seen[] is 0 for a rollout not
 * visited yet, 1 while it is on the current path (path[0 .. depth - 1]),
 * 2 once everything it requires is known to end.  A rollout met again while
 * on the path closes a cycle, reported at the "requires" that closed it.
 */

static ngx_int_t
ngx_http_canary_check_requires(ngx_conf_t *cf,
    ngx_http_canary_main_conf_t *cmcf, ngx_uint_t index, u_char *seen,
    ngx_uint_t *path, ngx_uint_t depth, ngx_http_canary_require_t *via)
{
    u_char                     *p, *text;
    size_t                      len;
    ngx_uint_t                  i, k;
    ngx_http_canary_rollout_t  *ro, *all;
    ngx_http_canary_require_t  *req;

    all = cmcf->rollouts.elts;
    ro = &all[index];

    if (seen[index] == 2) {
        return NGX_OK;
    }

    if (seen[index] == 1) {
        for (k = 0; path[k] != index; k++) { /* void */ }

        len = ro->name.len;

        for (i = k; i < depth; i++) {
            len += all[path[i]].name.len + sizeof(" -> ") - 1;
        }

        text = ngx_pnalloc(cf->pool, len);
        if (text == NULL) {
            return NGX_ERROR;
        }

        p = text;

        for (i = k; i < depth; i++) {
            p = ngx_sprintf(p, "%V -> ", &all[path[i]].name);
        }

        p = ngx_cpymem(p, ro->name.data, ro->name.len);

        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "canary_rollout \"%V\" requires itself through "
                      "a cycle: %*s in %V:%ui", &ro->name, p - text, text,
                      &via->file, via->line);
        return NGX_ERROR;
    }

    seen[index] = 1;
    path[depth] = index;

    req = ro->requires.elts;

    for (i = 0; i < ro->nrequires; i++) {
        if (ngx_http_canary_check_requires(cf, cmcf, ro->requires_index[i],
                                           seen, path, depth + 1, &req[i])
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    seen[index] = 2;

    return NGX_OK;
}


static ngx_int_t
ngx_http_canary_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_canary_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


static void *
ngx_http_canary_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_canary_main_conf_t  *cmcf;

    cmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_canary_main_conf_t));
    if (cmcf == NULL) {
        return NULL;
    }

    cmcf->cycle = cf->cycle;
    cmcf->sync_interval = NGX_CONF_UNSET_MSEC;

    if (ngx_array_init(&cmcf->rollouts, cf->pool, 4,
                       sizeof(ngx_http_canary_rollout_t))
        != NGX_OK
)
    {
        return NULL;
    }

    return cmcf;
}


static char *
ngx_http_canary_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_canary_main_conf_t *cmcf = conf;

    ngx_http_canary_rollout_t  *ro;

    ngx_conf_init_msec_value(cmcf->sync_interval, 1000);

    if (cmcf->shm_zone == NULL && cmcf->rollouts.nelts) {
        ro = cmcf->rollouts.elts;

        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "canary_rollout \"%V\" needs a \"canary_zone\" "
                      "in %V:%ui", &ro[0].name, &ro[0].file, ro[0].line);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static void *
ngx_http_canary_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_canary_loc_conf_t  *clcf;

    clcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_canary_loc_conf_t));
    if (clcf == NULL) {
        return NULL;
    }

    clcf->rollout = NGX_CONF_UNSET;
    clcf->status = NGX_CONF_UNSET;

    /* set by ngx_pcalloc(): clcf->shadow = { 0, NULL } */

    return clcf;
}


static char *
ngx_http_canary_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_canary_loc_conf_t *prev = parent;
    ngx_http_canary_loc_conf_t *conf = child;

    ngx_http_canary_main_conf_t  *cmcf;

    /*
     * The whole http{} block has been read when locations are merged, so
     * "canary NAME" is resolved here, with the file and line it came from;
     * a parent is merged before its children.
     */

    if (conf->name.data) {
        cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_canary_module);

        if (cmcf->shm_zone == NULL) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "\"canary\" needs a \"canary_zone\" in %V:%ui",
                          &conf->file, conf->line);
            return NGX_CONF_ERROR;
        }

        conf->rollout = ngx_http_canary_find(cmcf, &conf->name);

        if (conf->rollout == NGX_ERROR) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "unknown canary_rollout \"%V\" in %V:%ui",
                          &conf->name, &conf->file, conf->line);
            return NGX_CONF_ERROR;
        }
    }

    ngx_conf_merge_value(conf->rollout, prev->rollout, NGX_CONF_UNSET);
    ngx_conf_merge_value(conf->status, prev->status, 0);

    if (ngx_http_canary_shadow_merge(cf, prev, conf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_canary_init(ngx_conf_t *cf)
{
    u_char                       *seen;
    ngx_int_t                     n;
    ngx_uint_t                    i, j, *path;
    ngx_http_handler_pt          *h;
    ngx_http_canary_value_t      *kv;
    ngx_http_canary_require_t    *req;
    ngx_http_canary_rollout_t    *ro;
    ngx_http_core_main_conf_t    *cmcf;
    ngx_http_canary_main_conf_t  *ccf;

    ccf = ngx_http_conf_get_module_main_conf(cf, ngx_http_canary_module);

    ro = ccf->rollouts.elts;

    for (i = 0; i < ccf->rollouts.nelts; i++) {

        for (j = 1; j <= ro[i].narms; j++) {
            if (ro[i].variants[j].line
                && ngx_http_canary_check_upstream(cf, &ro[i],
                                                  &ro[i].variants[j])
                   != NGX_OK)
            {
                return NGX_ERROR;
            }
        }

        ro[i].nrequires = ro[i].requires.nelts;

        ro[i].plain = !ro[i].override.set && !ro[i].segment.set
                      && ro[i].match == NULL && ro[i].nrequires == 0;

        kv = ro[i].keys.elts;

        for (j = 0; j < ro[i].keys.nelts; j++) {
            if (kv[j].cv) {
                ro[i].plain = 0;
            }
        }

        if (ro[i].nrequires == 0) {
            continue;
        }

        ro[i].requires_index = ngx_palloc(cf->pool,
                                          ro[i].nrequires
                                          * sizeof(ngx_uint_t));
        if (ro[i].requires_index == NULL) {
            return NGX_ERROR;
        }

        req = ro[i].requires.elts;

        for (j = 0; j < ro[i].nrequires; j++) {
            n = ngx_http_canary_find(ccf, &req[j].name);

            if (n == NGX_ERROR) {
                ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                              "canary_rollout \"%V\" requires unknown "
                              "rollout \"%V\" in %V:%ui", &ro[i].name,
                              &req[j].name, &req[j].file, req[j].line);
                return NGX_ERROR;
            }

            ro[i].requires_index[j] = n;
        }
    }

    seen = ngx_pcalloc(cf->pool, ccf->rollouts.nelts + 1);
    path = ngx_palloc(cf->pool, (ccf->rollouts.nelts + 1) * sizeof(ngx_uint_t));

    if (seen == NULL || path == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < ccf->rollouts.nelts; i++) {
        if (ngx_http_canary_check_requires(cf, ccf, i, seen, path, 0, NULL)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (ngx_http_canary_auto_check_conf(cf, ccf) != NGX_OK) {
        return NGX_ERROR;
    }

    /* a main request's context, in r->variables */

    ccf->ctx_index = ngx_http_get_variable_index(cf, &ngx_http_canary_ctx_name);
    if (ccf->ctx_index == NGX_ERROR) {
        return NGX_ERROR;
    }

    ccf->ctx_inline = (offsetof(ngx_http_canary_ctx_t, decisions)
                       + ccf->rollouts.nelts
                         * sizeof(ngx_http_canary_decision_t)
                       <= sizeof(ngx_http_variable_value_t));

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_canary_log_handler;

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_REWRITE_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_canary_rewrite_handler;

    return ngx_http_canary_shadow_init(cf, ccf);
}


static ngx_int_t
ngx_http_canary_init_process(ngx_cycle_t *cycle)
{
    ngx_http_canary_main_conf_t  *cmcf;

    /* the counter slot this worker writes */

    cmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_canary_module);

    if (cmcf && cmcf->sh) {
        ngx_http_canary_slot = ngx_worker % cmcf->sh->nslots;
    }

    /* a reader of the zone from here on */

    if (ngx_http_canary_shm_init_process(cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_canary_sync_init_process(cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_canary_auto_init_process(cycle);
}


static void
ngx_http_canary_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_canary_auto_exit_process(cycle);
    ngx_http_canary_sync_exit_process(cycle);
    ngx_http_canary_shm_exit_process(cycle);
}
