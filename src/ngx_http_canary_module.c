
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * The module: its directives, its context, the main and location
 * configurations made and merged, the phase handlers registered, and the
 * processes' start and exit.  Nothing here is called by another file.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_canary_module.h"
#include "ngx_http_canary_conf.h"
#include "ngx_http_canary_conf_check.h"
#include "ngx_http_canary_decide.h"
#include "ngx_http_canary_variables.h"
#include "ngx_http_canary_shadow.h"
#include "ngx_http_canary_redis_conf.h"
#include "ngx_http_canary_api.h"
#include "ngx_http_canary_webhook.h"


static void *ngx_http_canary_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_canary_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_canary_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_canary_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static ngx_int_t ngx_http_canary_init(ngx_conf_t *cf);
static ngx_int_t ngx_http_canary_init_module(ngx_cycle_t *cycle);
static ngx_int_t ngx_http_canary_init_process(ngx_cycle_t *cycle);
static void ngx_http_canary_exit_process(ngx_cycle_t *cycle);


static ngx_conf_post_handler_pt  ngx_http_canary_sync_interval_p =
    ngx_http_canary_sync_interval;

/* canary_zone's init of the zone */
static ngx_shm_zone_init_pt  ngx_http_canary_init_zone_p =
    ngx_http_canary_init_zone;

/* canary_rollout's handler of the rollout's $canary_variant_<name> */
static ngx_http_get_variable_pt  ngx_http_canary_variant_variable_p =
    ngx_http_canary_variant_variable;


static ngx_command_t  ngx_http_canary_commands[] = {

    { ngx_string("canary_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_canary_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      &ngx_http_canary_init_zone_p },

    { ngx_string("canary_redis"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_canary_redis_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_canary_main_conf_t, redis),
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

    { ngx_string("canary_webhook"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_canary_webhook_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_canary_main_conf_t, webhooks),
      NULL },

    { ngx_string("canary_rollout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_BLOCK|NGX_CONF_TAKE1,
      ngx_http_canary_rollout_block,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      &ngx_http_canary_variant_variable_p },

    { ngx_string("canary"),
      NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_canary_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("canary_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS|NGX_CONF_TAKE1,
      ngx_http_canary_status,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("canary_api"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS|NGX_CONF_TAKE1,
      ngx_http_canary_api_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("canary_api_actor"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_canary_loc_conf_t, api_actor),
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
    ngx_http_canary_init_module,           /* init module */
    ngx_http_canary_init_process,          /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_canary_exit_process,          /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


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
        != NGX_OK)
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
    clcf->api_timeout = NGX_CONF_UNSET_MSEC;
    clcf->api_actor = NGX_CONF_UNSET_PTR;

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
    ngx_conf_merge_ptr_value(conf->api_actor, prev->api_actor, NULL);

    if (ngx_http_canary_shadow_merge(cf, prev, conf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_canary_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt          *h;
    ngx_http_core_main_conf_t    *cmcf;
    ngx_http_canary_main_conf_t  *ccf;

    ccf = ngx_http_conf_get_module_main_conf(cf, ngx_http_canary_module);

    if (ngx_http_canary_conf_check(cf, ccf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_canary_auto_check_conf(cf, ccf) != NGX_OK) {
        return NGX_ERROR;
    }

    /* a main request's context, in r->variables */

    if (ngx_http_canary_variables_init(cf, ccf) != NGX_OK) {
        return NGX_ERROR;
    }

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
ngx_http_canary_init_module(ngx_cycle_t *cycle)
{
    ngx_http_canary_main_conf_t  *cmcf;

    /* the zone is there: whether it looks large enough */

    cmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_canary_module);

    if (cmcf) {
        ngx_http_canary_zone_check(cmcf, cycle->log);
    }

    return NGX_OK;
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

    if (ngx_http_canary_api_init_process(cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_canary_auto_init_process(cycle);
}


static void
ngx_http_canary_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_canary_api_exit_process(cycle);
    ngx_http_canary_auto_exit_process(cycle);
    ngx_http_canary_sync_exit_process(cycle);
    ngx_http_canary_webhook_stop();
    ngx_http_canary_shm_exit_process(cycle);
}
