
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * The directives outside canary_rollout {} (canary_zone, canary,
 * canary_shadow) and the checks made once the whole http{} block is read:
 * a location's rollout and shadow, the arms' upstreams, the "requires"
 * graph, and the zone's size against its rollouts.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_canary_module.h"
#include "ngx_http_canary_conf.h"
#include "ngx_http_canary_conf_check.h"


/* the zone's own records, and the partly filled page of each block size */
#define NGX_HTTP_CANARY_ZONE_PAGES     4


static ngx_int_t ngx_http_canary_check_upstream(ngx_conf_t *cf,
    ngx_http_canary_rollout_t *ro, ngx_http_canary_variant_t *var);
static ngx_int_t ngx_http_canary_check_requires(ngx_conf_t *cf,
    ngx_http_canary_main_conf_t *cmcf, ngx_uint_t index, u_char *seen,
    ngx_uint_t *path, ngx_uint_t depth, ngx_http_canary_require_t *via);
static size_t ngx_http_canary_slab_round(size_t size);


ngx_conf_bitmask_t  ngx_http_canary_shadow_methods[] = {
    { ngx_string("GET"), NGX_HTTP_GET },
    { ngx_string("HEAD"), NGX_HTTP_HEAD },
    { ngx_string("POST"), NGX_HTTP_POST },
    { ngx_string("PUT"), NGX_HTTP_PUT },
    { ngx_string("PATCH"), NGX_HTTP_PATCH },
    { ngx_string("DELETE"), NGX_HTTP_DELETE },
    { ngx_string("OPTIONS"), NGX_HTTP_OPTIONS },
    { ngx_null_string, 0 }
};


char *
ngx_http_canary_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_canary_main_conf_t *cmcf = conf;

    ssize_t                size;
    ngx_str_t             *value, name;
    ngx_shm_zone_init_pt  *init;

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

    /* the zone's init, given by the directive's table (cmd->post) */

    init = cmd->post;

    cmcf->shm_zone->init = *init;
    cmcf->shm_zone->data = cmcf;

    return NGX_CONF_OK;
}


char *
ngx_http_canary_directive(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
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


/* canary_shadow <uri> | off */

char *
ngx_http_canary_shadow_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_canary_loc_conf_t *clcf = conf;

    ngx_str_t                    *value;
    ngx_http_canary_main_conf_t  *cmcf;

    if (clcf->shadow.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 3 && ngx_strncmp(value[1].data, "off", 3) == 0) {
        clcf->shadow.len = 0;
        clcf->shadow.data = (u_char *) "";
        return NGX_CONF_OK;
    }

    if (value[1].len == 0 || value[1].data[0] != '/') {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid canary_shadow \"%V\", it must be a URI "
                           "beginning with \"/\" or \"off\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    clcf->shadow = value[1];
    clcf->shadow_file = cf->conf_file->file.name;
    clcf->shadow_line = cf->conf_file->line;

    /* the handler and the counters are there only when needed */

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_canary_module);
    cmcf->shadow = 1;

    return NGX_CONF_OK;
}


char *
ngx_http_canary_shadow_merge(ngx_conf_t *cf, ngx_http_canary_loc_conf_t *prev,
    ngx_http_canary_loc_conf_t *conf)
{
    ngx_http_canary_rollout_t    *ro;
    ngx_http_canary_main_conf_t  *cmcf;

    ngx_conf_merge_bitmask_value(conf->shadow_methods, prev->shadow_methods,
                                 (NGX_CONF_BITMASK_SET
                                  |NGX_HTTP_GET|NGX_HTTP_HEAD));

    if (conf->shadow.data == NULL) {
        conf->shadow = prev->shadow;

    } else if (conf->shadow.len && conf->rollout == NGX_CONF_UNSET) {

        /* set at this level: the rollout must be known here */

        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"canary_shadow %V\" needs \"canary\" in the same "
                      "block or above in %V:%ui", &conf->shadow,
                      &conf->shadow_file, conf->shadow_line);
        return NGX_CONF_ERROR;
    }

    /* the rollout in force here gets shadow counters */

    if (conf->shadow.len == 0 || conf->rollout == NGX_CONF_UNSET) {
        return NGX_CONF_OK;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_canary_module);
    ro = (ngx_http_canary_rollout_t *) cmcf->rollouts.elts + conf->rollout;

    /* the status page names the shadow's counters "shadow", after the arms */

    if (ngx_http_canary_find_arm(ro, (u_char *) "shadow", 6) != NGX_ERROR) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "rollout \"%V\" in %V:%ui has an arm named "
                      "\"shadow\", the name of its shadow counters, and "
                      "a canary_shadow location routes it",
                      &ro->name, &ro->file, ro->line);
        return NGX_CONF_ERROR;
    }

    ro->shadowed = 1;

    return NGX_CONF_OK;
}


/*
 * Once the whole http{} block is read: the arms' upstreams, whether each
 * rollout is "plain", the rollouts that "requires" names, and no cycle
 * among them.
 */

ngx_int_t
ngx_http_canary_conf_check(ngx_conf_t *cf, ngx_http_canary_main_conf_t *cmcf)
{
    u_char                     *seen;
    ngx_int_t                   n;
    ngx_uint_t                  i, j, *path;
    ngx_http_canary_value_t    *kv;
    ngx_http_canary_require_t  *req;
    ngx_http_canary_rollout_t  *ro;

    ro = cmcf->rollouts.elts;

    for (i = 0; i < cmcf->rollouts.nelts; i++) {

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
            n = ngx_http_canary_find(cmcf, &req[j].name);

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

    seen = ngx_pcalloc(cf->pool, cmcf->rollouts.nelts + 1);
    path = ngx_palloc(cf->pool,
                      (cmcf->rollouts.nelts + 1) * sizeof(ngx_uint_t));

    if (seen == NULL || path == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < cmcf->rollouts.nelts; i++) {
        if (ngx_http_canary_check_requires(cf, cmcf, i, seen, path, 0, NULL)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
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


/*
 * The zone's size against what its rollouts take, as docs/operations.md
 * ("Zone sizing") counts it: per rollout its counters, W x V blocks of
 * 320 bytes (W the zone's counter slots, V the rollout's variants), its
 * record, published values and variants' names; the shadow's counters,
 * W blocks, when a canary_shadow location routes it; the status and
 * figures of "auto".  The slab rounds each block up, and each page has a
 * descriptor; a few pages more for the zone's own records and the last,
 * partly filled page of each block size.  User sets come on top, unknown
 * here: hence a warning, with the estimate, and not a refusal.  At
 * start, reload and "nginx -t", once the zone is there.
 */

void
ngx_http_canary_zone_check(ngx_http_canary_main_conf_t *cmcf, ngx_log_t *log)
{
    size_t                      size, need, names;
    ngx_uint_t                  i, v, w;
    ngx_http_canary_rollout_t  *ro;

    if (cmcf->shm_zone == NULL || cmcf->sh == NULL) {
        return;
    }

    w = cmcf->sh->nslots;

    need = ngx_http_canary_slab_round(sizeof(ngx_http_canary_shctx_t))
           + NGX_HTTP_CANARY_ZONE_PAGES * ngx_pagesize;

    ro = cmcf->rollouts.elts;

    for (i = 0; i < cmcf->rollouts.nelts; i++) {

        /* "stable,canary" */

        names = 0;

        for (v = 0; v < ro[i].nvariants; v++) {
            names += ro[i].variants[v].name.len + 1;
        }

        need += ngx_http_canary_slab_round(w * ro[i].nvariants
                                           * sizeof(ngx_http_canary_counters_t))
                + ngx_http_canary_slab_round(
                      sizeof(ngx_http_canary_shrollout_t) + ro[i].name.len)
                + ngx_http_canary_slab_round(
                      sizeof(ngx_http_canary_snapshot_t))
                + ngx_http_canary_slab_round(names - 1);

        if (ro[i].shadowed) {
            need += ngx_http_canary_slab_round(
                        w * sizeof(ngx_http_canary_counters_t));
        }

        if (ro[i].policy) {
            need += ngx_http_canary_slab_round(
                        sizeof(ngx_http_canary_auto_status_t))
                    + ngx_http_canary_slab_round(
                          sizeof(ngx_http_canary_auto_base_t));
        }
    }

    /*
     * whole pages, each with its descriptor, after the pool's header and
     * its slots; the first page aligned
     */

    need = sizeof(ngx_slab_pool_t)
           + (ngx_pagesize_shift - 3)
             * (sizeof(ngx_slab_page_t) + sizeof(ngx_slab_stat_t))
           + (need + ngx_pagesize - 1) / ngx_pagesize
             * (ngx_pagesize + sizeof(ngx_slab_page_t))
           + ngx_pagesize;

    size = cmcf->shm_zone->shm.size;

    if (size >= need) {
        return;
    }

    ngx_log_error(NGX_LOG_WARN, log, 0,
                  "canary_zone \"%V\" of %uz bytes may be too small for %ui "
                  "rollouts with %ui workers: about %uz bytes are needed",
                  &cmcf->shm_zone->shm.name, size, cmcf->rollouts.nelts, w,
                  need);
}


/* a block as the slab allocates it: a power of two, or whole pages */

static size_t
ngx_http_canary_slab_round(size_t size)
{
    size_t  n;

    if (size > ngx_pagesize / 2) {
        return ngx_align(size, ngx_pagesize);
    }

    for (n = 8; n < size; n <<= 1) { /* void */ }

    return n;
}
