
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


#define NGX_HTTP_CANARY_MAX_CHECKS  8


static ngx_int_t ngx_http_canary_auto_check_param(ngx_conf_t *cf,
    ngx_http_canary_rollout_t *ro, ngx_str_t *arg);


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
    ro->check_timeout = 5000;

    for (i = 1; i < cf->args->nelts; i++) {

        switch (ngx_http_canary_auto_check_param(cf, ro, &value[i])) {
        case NGX_OK:
            continue;
        case NGX_ERROR:
            return NGX_CONF_ERROR;
        default: /* NGX_DECLINED: the policy's */
            break;
        }

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


/*
 * "check=<http(s) URL>" (up to 8), "check_timeout=<time>" and
 * "check_ca=<file>"; NGX_DECLINED for the other parameters
 */

static ngx_int_t
ngx_http_canary_auto_check_param(ngx_conf_t *cf,
    ngx_http_canary_rollout_t *ro, ngx_str_t *arg)
{
    ngx_str_t   v, *url;
    ngx_msec_t  ms;

    if (arg->len > 6 && ngx_strncmp(arg->data, "check=", 6) == 0) {
        v.data = arg->data + 6;
        v.len = arg->len - 6;

        if (!(v.len > 7 && ngx_strncasecmp(v.data, (u_char *) "http://", 7)
                           == 0)
            && !(v.len > 8
                 && ngx_strncasecmp(v.data, (u_char *) "https://", 8) == 0))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid \"auto\" parameter \"check=...\" in "
                               "canary_rollout \"%V\": the URL must begin "
                               "with http:// or https://", &ro->name);
            return NGX_ERROR;
        }

        if (ro->checks == NULL) {
            ro->checks = ngx_array_create(cf->pool, 2, sizeof(ngx_str_t));
            if (ro->checks == NULL) {
                return NGX_ERROR;
            }
        }

        if (ro->checks->nelts == NGX_HTTP_CANARY_MAX_CHECKS) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "more than %d \"check=\" in canary_rollout "
                               "\"%V\"", NGX_HTTP_CANARY_MAX_CHECKS,
                               &ro->name);
            return NGX_ERROR;
        }

        url = ngx_array_push(ro->checks);
        if (url == NULL) {
            return NGX_ERROR;
        }

        /* NUL-terminated, for libcurl */

        url->data = ngx_pnalloc(cf->pool, v.len + 1);
        if (url->data == NULL) {
            return NGX_ERROR;
        }

        ngx_cpystrn(url->data, v.data, v.len + 1);
        url->len = v.len;
        return NGX_OK;
    }

    if (arg->len > 14 && ngx_strncmp(arg->data, "check_timeout=", 14) == 0) {
        v.data = arg->data + 14;
        v.len = arg->len - 14;
        ms = ngx_parse_time(&v, 0);

        if (ms == (ngx_msec_t) NGX_ERROR || ms == 0 || ms > 60000) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid \"auto\" parameter \"%V\" in "
                               "canary_rollout \"%V\": check_timeout must "
                               "be above 0 and at most 60s", arg, &ro->name);
            return NGX_ERROR;
        }

        ro->check_timeout = ms;
        return NGX_OK;
    }

    if (arg->len > 9 && ngx_strncmp(arg->data, "check_ca=", 9) == 0) {
        ro->check_ca.data = arg->data + 9;
        ro->check_ca.len = arg->len - 9;

        if (ngx_conf_full_name(cf->cycle, &ro->check_ca, 1) != NGX_OK) {
            return NGX_ERROR;
        }

        return NGX_OK;
    }

    return NGX_DECLINED;
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
