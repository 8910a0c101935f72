
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * The variables: $canary_upstream, $canary_variant, $canary_rollout,
 * $canary_bucket, $canary_reason, $canary_variant_<rollout>, and the
 * variable whose slot of r->variables holds a main request's context.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_canary_module.h"
#include "ngx_http_canary_decide.h"
#include "ngx_http_canary_shadow.h"
#include "ngx_http_canary_variables.h"


typedef enum {
    ngx_http_canary_var_upstream = 0,
    ngx_http_canary_var_variant,
    ngx_http_canary_var_rollout,
    ngx_http_canary_var_bucket,
    ngx_http_canary_var_reason
} ngx_http_canary_var_e;


static ngx_int_t ngx_http_canary_ctx_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_canary_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_canary_bucket_value(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, ngx_http_canary_decision_t *d);
static ngx_int_t ngx_http_canary_upstream_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


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

    { ngx_string("canary request context 2"), NULL,
      ngx_http_canary_ctx_variable, 0,
      NGX_HTTP_VAR_NOHASH|NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


static ngx_str_t  ngx_http_canary_ctx_names[] = {
    ngx_string("canary request context"),
    ngx_string("canary request context 2")
};


ngx_int_t
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


/*
 * postconfiguration: the two slots of r->variables of a main request's
 * context, indexed one after the other, so they are adjacent
 */

ngx_int_t
ngx_http_canary_variables_init(ngx_conf_t *cf,
    ngx_http_canary_main_conf_t *cmcf)
{
    ngx_int_t  second;

    cmcf->ctx_index = ngx_http_get_variable_index(
                          cf, &ngx_http_canary_ctx_names[0]);
    if (cmcf->ctx_index == NGX_ERROR) {
        return NGX_ERROR;
    }

    second = ngx_http_get_variable_index(cf, &ngx_http_canary_ctx_names[1]);
    if (second == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (second != cmcf->ctx_index + 1
        || sizeof(ngx_http_canary_ctx_t)
           > 2 * sizeof(ngx_http_variable_value_t))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "canary: the request context's slots are not "
                           "adjacent (%i, %i)", cmcf->ctx_index, second);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_canary_ctx_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    /* never asked for: the slot is the context, see get_ctx() */

    v->not_found = 1;

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


ngx_int_t
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
