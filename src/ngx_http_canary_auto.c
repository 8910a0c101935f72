
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * Automatic progression and rollback: the "auto" directive of a
 * canary_rollout block.  The policy itself (parameters, judgement, the
 * step that follows) is pure C in ngx_http_canary_policy.c.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_canary_module.h"


#if (NGX_HTTP_CANARY_POLICY_HIST != NGX_HTTP_CANARY_HIST_BUCKETS)
#error "the policy's histogram differs from the counters' histogram"
#endif


char *
ngx_http_canary_auto_directive(ngx_conf_t *cf, ngx_http_canary_rollout_t *ro)
{
    char                       err[NGX_HTTP_CANARY_REASON_LEN];
    ngx_str_t                 *value;
    ngx_uint_t                 i;
    ngx_http_canary_policy_t  *p;

    if (ro->policy) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"auto\" is duplicate");
        return NGX_CONF_ERROR;
    }

    p = ngx_palloc(cf->pool, sizeof(ngx_http_canary_policy_t));
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_http_canary_policy_init(p);

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {
        if (ngx_http_canary_policy_parse(p, value[i].data, value[i].len,
                                         err, sizeof(err))
            != 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid \"auto\" parameter \"%V\" in "
                               "canary_rollout \"%V\": %s", &value[i],
                               &ro->name, err);
            return NGX_CONF_ERROR;
        }
    }

    if (ngx_http_canary_policy_finish(p, err, sizeof(err)) != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid \"auto\" in canary_rollout \"%V\": %s",
                           &ro->name, err);
        return NGX_CONF_ERROR;
    }

    ro->policy = p;

    return NGX_CONF_OK;
}
