
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * The request path: the request's context, the routing decision (the
 * plain path and the evaluation), and the rewrite and log phase handlers
 * that note the rollout a request is routed by and count it.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_canary_module.h"
#include "ngx_http_canary_decide.h"


static ngx_inline ngx_int_t ngx_http_canary_value(ngx_http_request_t *r,
    ngx_http_canary_value_t *v, ngx_str_t *value);
static void ngx_http_canary_evaluate_rollout(ngx_http_request_t *r,
    ngx_uint_t index, ngx_http_canary_ctx_t *ctx,
    ngx_http_canary_input_t *in, ngx_uint_t depth,
    ngx_http_canary_decision_t *d);
static ngx_http_canary_noinline ngx_uint_t ngx_http_canary_plain_arm(
    ngx_http_canary_rollout_t *ro, ngx_http_canary_snapshot_t *snap,
    ngx_http_variable_value_t *key);
static ngx_uint_t ngx_http_canary_evaluate_override(ngx_http_request_t *r,
    ngx_http_canary_rollout_t *ro, ngx_http_canary_input_t *in,
    ngx_http_canary_decision_t *d);
static ngx_uint_t ngx_http_canary_evaluate_users(
    ngx_http_canary_rollout_t *ro, ngx_http_canary_snapshot_t *snap,
    ngx_str_t *key, ngx_http_canary_decision_t *d);
static ngx_uint_t ngx_http_canary_evaluate_match(ngx_http_request_t *r,
    ngx_http_canary_rollout_t *ro, ngx_http_canary_input_t *in,
    ngx_uint_t depth);
static void ngx_http_canary_evaluate_arm(ngx_http_canary_rollout_t *ro,
    ngx_http_canary_snapshot_t *snap, ngx_str_t *key,
    ngx_http_canary_decision_t *d);


/*
 * The request's context.  A main request's lives in r->variables, in the
 * two slots of variables of the module's own ("canary request context",
 * which configuration cannot name and the variables hash does not hold):
 * nginx allocates and zeroes that array with the request, and neither an
 * internal redirect nor a named location clears it, as they clear the
 * module contexts.  The context is the slots themselves, so the request
 * allocates nothing for it and no pool cleanup is needed.  A subrequest
 * shares r->variables with its main request but decides on its own
 * variables: its context is a module context, as before.
 */

ngx_http_canary_ctx_t *
ngx_http_canary_get_ctx(ngx_http_request_t *r, ngx_uint_t create)
{
    ngx_http_canary_ctx_t        *ctx;
    ngx_http_canary_main_conf_t  *cmcf;

    if (r == r->main) {
        cmcf = ngx_http_get_module_main_conf(r, ngx_http_canary_module);

        return (ngx_http_canary_ctx_t *) &r->variables[cmcf->ctx_index];
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_canary_module);

    if (ctx || !create) {
        return ctx;
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_canary_ctx_t));
    if (ctx == NULL) {
        return NULL;
    }

    ngx_http_set_ctx(r, ctx, ngx_http_canary_module);

    return ctx;
}


/*
 * The fourth rollout a request reads: one decision per rollout
 * configured, from the request pool, with the few kept so far; NULL
 * when there is no memory (the decision is then kept nowhere, and a
 * later read decides again)
 */

ngx_http_canary_decision_t *
ngx_http_canary_keep_all(ngx_http_request_t *r, ngx_http_canary_ctx_t *ctx,
    ngx_uint_t index, ngx_http_canary_decision_t d)
{
    ngx_uint_t                    i;
    ngx_http_canary_decision_t   *all;
    ngx_http_canary_main_conf_t  *cmcf;

    static ngx_http_canary_decision_t  lost;

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_canary_module);

    all = ngx_pcalloc(r->pool, cmcf->rollouts.nelts
                               * sizeof(ngx_http_canary_decision_t));
    if (all == NULL) {
        lost = d;
        return &lost;
    }

    for (i = 0; i < NGX_HTTP_CANARY_CTX_FEW; i++) {
        all[ctx->key[i] - 1] = ctx->few[i];
    }

    ctx->all = all;
    all[index] = d;

    return &all[index];
}


/*
 * The request path's decision when none is cached: for a "plain" rollout
 * (no override, segment, match or requires, keys that are all variables)
 * whose snapshot has no user sets, no time window and every arm on with
 * a weight (snap->plain), what the evaluation below would find, the
 * bucket against the percent and, for an exposed user of a rollout with
 * arms, the arm, in a small function without the evaluation's
 * locals (whose addresses are taken, so the stack protector guards its
 * frame); else the evaluation itself.  Kept in the request context,
 * returned by pointer.
 */

ngx_http_canary_decision_t *
ngx_http_canary_decide_plain(ngx_http_request_t *r,
    ngx_http_canary_main_conf_t *cmcf, ngx_uint_t index,
    ngx_http_canary_ctx_t *ctx)
{
    uint32_t                      hash;
    ngx_uint_t                    i, bucket, variant;
    ngx_http_canary_value_t      *kv;
    ngx_http_canary_rollout_t    *ro;
    ngx_http_canary_decision_t    d, *p;
    ngx_http_canary_snapshot_t   *snap;
    ngx_http_variable_value_t    *vv;

    static ngx_http_canary_decision_t  undecided, lost;

    ro = (ngx_http_canary_rollout_t *) cmcf->rollouts.elts + index;
    snap = ro->sh->snapshot;

    if (!ro->plain || !snap->plain) {
        d = ngx_http_canary_evaluate(r, index, ctx, NULL, 0);
        p = ngx_http_canary_cached(ctx, index);

        if (p == NULL) {
            lost = d;
            return &lost;
        }

        return p;
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

    return ngx_http_canary_keep(r, ctx, index, d);

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

    return ngx_http_canary_keep(r, ctx, index, d);
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
 * snapshot without a lock; the request context memoizes it and the
 * rollouts it requires.
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
    ngx_http_canary_ctx_t *ctx, ngx_http_canary_input_t *in,
    ngx_uint_t depth)
{
    ngx_http_canary_decision_t  *p, d;

    static ngx_http_canary_decision_t  undecided;

    p = ngx_http_canary_cached(ctx, index);

    if (p && p->decided) {
        return *p;
    }

    d = undecided;
    d.decided = 1;
    d.variant = NGX_HTTP_CANARY_STABLE;

    ngx_http_canary_evaluate_rollout(r, index, ctx, in, depth, &d);

    (void) ngx_http_canary_keep(r, ctx, index, d);

    return d;
}


/* the evaluation of one rollout, into d (decided, stable) */

static void
ngx_http_canary_evaluate_rollout(ngx_http_request_t *r, ngx_uint_t index,
    ngx_http_canary_ctx_t *ctx, ngx_http_canary_input_t *in,
    ngx_uint_t depth, ngx_http_canary_decision_t *d)
{
    uint32_t                      hash;
    ngx_str_t                     key, value;
    ngx_uint_t                    i, percent, found;
    ngx_http_canary_value_t      *kv;
    ngx_http_canary_rollout_t    *ro;
    ngx_http_canary_segment_t    *seg;
    ngx_http_canary_decision_t    req;
    ngx_http_canary_snapshot_t   *snap;
    ngx_http_canary_main_conf_t  *cmcf;

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_canary_module);

    ro = (ngx_http_canary_rollout_t *) cmcf->rollouts.elts + index;
    snap = ro->sh->snapshot;

    /* 1. override */

    if (ngx_http_canary_evaluate_override(r, ro, in, d)) {
        return;
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
        return;
    }

    hash = ngx_http_canary_murmur3_key(&ro->salted, key.data, key.len);

    d->bucket = ngx_http_canary_bucket(hash, ro->hash);
    d->has_bucket = 1;

    /* 2. user lists */

    if (ngx_http_canary_evaluate_users(ro, snap, &key, d)) {
        return;
    }

    /* 4. time window */

    if ((snap->start && ngx_time() < snap->start)
        || (snap->end && ngx_time() >= snap->end))
    {
        d->reason = NGX_HTTP_CANARY_REASON_WINDOW;
        return;
    }

    /* 5. eligibility */

    if (ro->match && !ngx_http_canary_evaluate_match(r, ro, in, depth)) {
        d->reason = NGX_HTTP_CANARY_REASON_MATCH;
        return;
    }

    /* 6. dependencies; cycles were refused at configuration time */

    for (i = 0; i < ro->nrequires; i++) {
        req = ngx_http_canary_evaluate(r, ro->requires_index[i], ctx, in,
                                       depth + 1);

        if (req.variant == NGX_HTTP_CANARY_STABLE) {
            d->reason = NGX_HTTP_CANARY_REASON_REQUIRES;
            return;
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
        seg = ngx_http_canary_find_segment(snap, &value);

        if (seg) {
            percent = seg->percent;
            d->reason = NGX_HTTP_CANARY_REASON_SEGMENT;
        }
    }

    if (in && depth == 0) {
        in->percent = percent;
    }

    if (d->bucket < percent) {
        ngx_http_canary_evaluate_arm(ro, snap, &key, d);
    }
}


/*
 * Exposed: the arm, by a second hash of the key with another seed
 * (Unleash's variant selection), so that the exposure and the
 * allocation are independent; one arm needs no hash
 */

static void
ngx_http_canary_evaluate_arm(ngx_http_canary_rollout_t *ro,
    ngx_http_canary_snapshot_t *snap, ngx_str_t *key,
    ngx_http_canary_decision_t *d)
{
    uint32_t    hash;
    ngx_uint_t  i;

    if (snap->arms_off == 0 && ro->narms == 1 && snap->total) {
        d->variant = NGX_HTTP_CANARY_CANARY;
        return;
    }

    if (snap->total == 0) {
        d->reason = NGX_HTTP_CANARY_REASON_ARM_OFF;
        return;
    }

    hash = ngx_http_canary_murmur3_key(&ro->arm_salted, key->data, key->len);

    i = ngx_http_canary_arm(hash, snap->weight, ro->narms, snap->total);

    if (snap->arms_off & (1 << i)) {
        d->reason = NGX_HTTP_CANARY_REASON_ARM_OFF;
        return;
    }

    d->variant = i + 1;
}


/* step 1, the override: 1 when it decided */

static ngx_uint_t
ngx_http_canary_evaluate_override(ngx_http_request_t *r,
    ngx_http_canary_rollout_t *ro, ngx_http_canary_input_t *in,
    ngx_http_canary_decision_t *d)
{
    ngx_int_t   rc;
    ngx_str_t   value;
    ngx_uint_t  found;

    if (in) {
        found = in->has_override;
        value = in->override;

    } else {
        found = ro->override.set
                && ngx_http_canary_value(r, &ro->override, &value) == NGX_OK;
    }

    if (!found || value.len == 0) {
        return 0;
    }

    /* an arm's name (exact), then always|canary, never|stable */

    rc = ngx_http_canary_find_arm(ro, value.data, value.len);

    if (rc != NGX_ERROR) {
        d->variant = rc;
        d->reason = NGX_HTTP_CANARY_REASON_OVERRIDE;
        return 1;
    }

    if ((value.len == 6 && ngx_strncasecmp(value.data,
                                           (u_char *) "always", 6) == 0)
        || (value.len == 6 && ngx_strncasecmp(value.data,
                                              (u_char *) "canary", 6)
                              == 0))
    {
        d->variant = NGX_HTTP_CANARY_CANARY;
        d->reason = NGX_HTTP_CANARY_REASON_OVERRIDE;
        return 1;
    }

    if ((value.len == 5 && ngx_strncasecmp(value.data,
                                           (u_char *) "never", 5) == 0)
        || (value.len == 6 && ngx_strncasecmp(value.data,
                                              (u_char *) "stable", 6)
                              == 0))
    {
        d->reason = NGX_HTTP_CANARY_REASON_OVERRIDE;
        return 1;
    }

    return 0;
}


/* step 2, the user lists: 1 when the key is in one */

static ngx_uint_t
ngx_http_canary_evaluate_users(ngx_http_canary_rollout_t *ro,
    ngx_http_canary_snapshot_t *snap, ngx_str_t *key,
    ngx_http_canary_decision_t *d)
{
    uint32_t    mask;
    ngx_uint_t  i;

    if (snap->canary_users
        && ngx_http_canary_set_contains(snap->canary_users, key))
    {
        if (snap->arms_off & 1) {
            d->reason = NGX_HTTP_CANARY_REASON_ARM_OFF;
            return 1;
        }

        d->variant = NGX_HTTP_CANARY_CANARY;
        d->reason = NGX_HTTP_CANARY_REASON_CANARY_USERS;
        return 1;
    }

    /* users:<arm> sets, the arms' own canary_users */

    if (snap->arm_users_mask) {
        for (i = 0, mask = snap->arm_users_mask; mask; i++, mask >>= 1) {
            if ((mask & 1)
                && i < ro->narms
                && ngx_http_canary_set_contains(snap->arm_users[i], key))
            {
                if (snap->arms_off & (1 << i)) {
                    d->reason = NGX_HTTP_CANARY_REASON_ARM_OFF;
                    return 1;
                }

                d->variant = i + 1;
                d->reason = NGX_HTTP_CANARY_REASON_CANARY_USERS;
                return 1;
            }
        }
    }

    if (snap->stable_users
        && ngx_http_canary_set_contains(snap->stable_users, key))
    {
        d->reason = NGX_HTTP_CANARY_REASON_STABLE_USERS;
        return 1;
    }

    return 0;
}


/* step 5, "match": 1 when the request is eligible */

static ngx_uint_t
ngx_http_canary_evaluate_match(ngx_http_request_t *r,
    ngx_http_canary_rollout_t *ro, ngx_http_canary_input_t *in,
    ngx_uint_t depth)
{
    ngx_int_t  rc;
    ngx_str_t  value;

    if (ngx_http_canary_value(r, &ro->match->value, &value) != NGX_OK) {
        return 0;
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

        return 0;
    }

    return 1;
}


/* a segment of the snapshot by its value (sorted), or NULL */

ngx_http_canary_segment_t *
ngx_http_canary_find_segment(ngx_http_canary_snapshot_t *snap,
    ngx_str_t *value)
{
    ngx_int_t                   lo, hi, mid, rc;
    ngx_http_canary_segment_t  *seg;

    seg = snap->segments;
    lo = 0;
    hi = (ngx_int_t) snap->nsegments - 1;

    while (lo <= hi) {
        mid = (lo + hi) / 2;
        rc = ngx_memn2cmp(value->data, seg[mid].value.data,
                          value->len, seg[mid].value.len);

        if (rc == 0) {
            return &seg[mid];
        }

        if (rc < 0) {
            hi = mid - 1;

        } else {
            lo = mid + 1;
        }
    }

    return NULL;
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

ngx_int_t
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


ngx_int_t
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

    d = ngx_http_canary_cached(ctx, index);

    if (d == NULL || !d->decided) {
        d = ngx_http_canary_decide_plain(r, cmcf, index, ctx);
    }

    ro = (ngx_http_canary_rollout_t *) cmcf->rollouts.elts + index;

    /* the status as the log module's $status sees it */

    status = r->err_status ? r->err_status : r->headers_out.status;

    ngx_http_canary_count_status(r, ngx_http_canary_counters(ro,
                                        ngx_http_canary_slot, d->variant),
                                 status);

    return NGX_OK;
}
