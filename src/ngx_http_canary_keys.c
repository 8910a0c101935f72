
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * The names of the module's keys and channels in Redis, and this node's
 * name in them:
 *
 *     <prefix>rollout:<name>                  a rollout's hash
 *     <prefix>rollout:<name>:canary_users     its user sets
 *     <prefix>rollout:<name>:stable_users
 *     <prefix>rollout:<name>:users:<arm>      (with arms, each)
 *     <prefix>restore, <prefix>restoring      a restore's lease, its mark
 *     <prefix>changed                         the channel of changes
 *     __keyspace@<db>__:<prefix>*             keyspace notifications
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_canary_keys.h"


/* <prefix>rollout:<name><suffix> */

ngx_int_t
ngx_http_canary_key(ngx_pool_t *pool, ngx_str_t *key, ngx_str_t *prefix,
    ngx_str_t *name, char *suffix)
{
    u_char  *p;
    size_t   len;

    len = ngx_strlen(suffix);

    key->len = prefix->len + sizeof("rollout:") - 1 + name->len + len;
    key->data = ngx_pnalloc(pool, key->len);
    if (key->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(key->data, prefix->data, prefix->len);
    p = ngx_cpymem(p, "rollout:", sizeof("rollout:") - 1);
    p = ngx_cpymem(p, name->data, name->len);
    ngx_memcpy(p, suffix, len);

    return NGX_OK;
}


/*
 * A rollout's user set "which" (see ngx_http_canary_snapshot_set()):
 * ...:canary_users, ...:stable_users, ...:users:<arm>
 */

ngx_int_t
ngx_http_canary_key_set(ngx_pool_t *pool, ngx_str_t *key, ngx_str_t *prefix,
    ngx_http_canary_rollout_t *ro, ngx_uint_t which)
{
    u_char                     *p;
    ngx_http_canary_variant_t  *var;

    if (which < 2) {
        return ngx_http_canary_key(pool, key, prefix, &ro->name,
                                   which ? ":stable_users" : ":canary_users");
    }

    /* <prefix>rollout:<name>:users:<arm> */

    var = &ro->variants[which - 1];

    p = ngx_pnalloc(pool, sizeof(":users:") + var->name.len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(p, ":users:%V%Z", &var->name);

    return ngx_http_canary_key(pool, key, prefix, &ro->name, (char *) p);
}


/* <prefix><name>: "restore", "restoring", "changed" */

ngx_int_t
ngx_http_canary_key_name(ngx_pool_t *pool, ngx_str_t *key, ngx_str_t *prefix,
    char *name)
{
    key->data = ngx_pnalloc(pool, prefix->len + ngx_strlen(name));
    if (key->data == NULL) {
        return NGX_ERROR;
    }

    key->len = ngx_sprintf(key->data, "%V%s", prefix, name) - key->data;

    return NGX_OK;
}


/*
 * __keyspace@<db>__:<prefix>*, the prefix inside the pattern with its
 * glob characters escaped; room for ngx_http_canary_key_pattern_len()
 */

u_char *
ngx_http_canary_key_pattern(u_char *p, ngx_str_t *prefix, ngx_uint_t db)
{
    ngx_uint_t  i;

    p = ngx_sprintf(p, "__keyspace@%ui__:", db);

    for (i = 0; i < prefix->len; i++) {
        if (ngx_strchr("*?[]\\", prefix->data[i])) {
            *p++ = '\\';
        }

        *p++ = prefix->data[i];
    }

    *p++ = '*';

    return p;
}


/* the node's name: canary_node_id, or the host and first listen */

ngx_int_t
ngx_http_canary_node_name(ngx_cycle_t *cycle,
    ngx_http_canary_main_conf_t *cmcf, ngx_str_t *out)
{
    u_char           *p;
    size_t            len;
    ngx_listening_t  *ls;

    if (cmcf->node_id.len) {
        *out = cmcf->node_id;
        return NGX_OK;
    }

    ls = cycle->listening.elts;

    len = cycle->hostname.len + 1
          + (cycle->listening.nelts ? ls[0].addr_text.len : 0);

    out->data = ngx_pnalloc(cycle->pool, len);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(out->data, cycle->hostname.data, cycle->hostname.len);
    *p++ = '/';

    if (cycle->listening.nelts) {
        p = ngx_cpymem(p, ls[0].addr_text.data, ls[0].addr_text.len);
    }

    out->len = p - out->data;

    return NGX_OK;
}
