
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * The "auto" directive of a canary_rollout block: its parameters, parsed
 * and checked by the policy (ngx_http_canary_policy.c), and the checks at
 * the end of the http{} block.  The controller that runs the rollout is
 * ngx_http_canary_auto.c.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_canary_module.h"
#include "ngx_http_canary_auto_conf.h"


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


/* at the end of the http{} block: "auto" needs Redis */

ngx_int_t
ngx_http_canary_auto_check_conf(ngx_conf_t *cf,
    ngx_http_canary_main_conf_t *cmcf)
{
    ngx_uint_t                  i;
    ngx_http_canary_rollout_t  *ro;

    ro = cmcf->rollouts.elts;

    for (i = 0; i < cmcf->rollouts.nelts; i++) {
        if (ro[i].policy && cmcf->redis == NULL) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "\"auto\" in canary_rollout \"%V\" needs "
                          "\"canary_redis\" in %V:%ui", &ro[i].name,
                          &ro[i].file, ro[i].line);
            return NGX_ERROR;
        }

        if (ro[i].policy && ro[i].policy->shadow && !ro[i].shadowed) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "\"auto ... shadow=\" in canary_rollout \"%V\" "
                          "needs a location with \"canary %V\" and "
                          "\"canary_shadow\" in %V:%ui", &ro[i].name,
                          &ro[i].name, &ro[i].file, ro[i].line);
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}
