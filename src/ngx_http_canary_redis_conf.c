
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * The canary_redis directive: where Redis is (an address, or Sentinel),
 * how to talk to it (AUTH, SELECT, TLS), as the client of
 * ngx_http_canary_redis.c takes it.  It fills the conf pointed at by the
 * directive's offset, and knows nothing else of the module.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>

#include "ngx_http_canary_redis.h"
#include "ngx_http_canary_redis_conf.h"
#include "ngx_http_canary_sentinel.h"
#include "ngx_http_canary_cluster.h"


/* what the parameters say besides the client's conf */
typedef struct {
    ngx_str_t                       ca;
    ngx_str_t                       cert;
    ngx_str_t                       key;
    ngx_str_t                       sentinels;
    ngx_str_t                       seeds;      /* cluster= */
    ngx_str_t                       spassword;
    ngx_uint_t                      verify;
    ngx_int_t                       stls;
    ngx_uint_t                      tls_opts;
} ngx_http_canary_redis_params_t;


static char *ngx_http_canary_redis_address(ngx_conf_t *cf,
    ngx_http_canary_redis_conf_t *rcf, ngx_str_t *value,
    ngx_http_canary_redis_params_t *rp);
static ngx_int_t ngx_http_canary_redis_param(
    ngx_http_canary_redis_conf_t *rcf, ngx_str_t *value,
    ngx_http_canary_redis_params_t *rp);
static char *ngx_http_canary_redis_finish(ngx_conf_t *cf,
    ngx_http_canary_redis_conf_t *rcf, ngx_http_canary_redis_params_t *rp);
static char *ngx_http_canary_redis_addrs(ngx_conf_t *cf,
    ngx_http_canary_redis_conf_t *rcf, ngx_str_t *list, in_port_t port,
    const char *what);
static char *ngx_http_canary_redis_cluster(ngx_conf_t *cf,
    ngx_http_canary_redis_conf_t *rcf, ngx_http_canary_redis_params_t *rp);
#if (NGX_SSL)
static ngx_int_t ngx_http_canary_redis_tls_conf(ngx_conf_t *cf,
    ngx_http_canary_redis_conf_t *rcf, ngx_str_t *ca, ngx_str_t *cert,
    ngx_str_t *key);
#endif


/*
 * canary_redis host:port | unix:/path [db=N] [user=U] [password=S]
 *              [prefix=P] [timeout=T] [tls [tls_verify=on|off]
 *              [tls_ca=F] [tls_name=N] [tls_cert=F tls_key=F]];
 * canary_redis sentinel=host:port[,host:port...] master=NAME
 *              [sentinel_password=S] [sentinel_tls[=on|off]] ...;
 * canary_redis cluster=host:port[,host:port...] ...;
 */

char *
ngx_http_canary_redis_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    char  *p = conf;

    char                            *rv;
    ngx_str_t                       *value;
    ngx_uint_t                       i;
    ngx_http_canary_redis_conf_t    *rcf, **rcfp;
    ngx_http_canary_redis_params_t   rp;

    rcfp = (ngx_http_canary_redis_conf_t **) (p + cmd->offset);

    if (*rcfp) {
        return "is duplicate";
    }

    value = cf->args->elts;

    rcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_canary_redis_conf_t));
    if (rcf == NULL) {
        return NGX_CONF_ERROR;
    }

    rcf->name = value[1];
    rcf->timeout = 1000;

    ngx_memzero(&rp, sizeof(ngx_http_canary_redis_params_t));
    rp.verify = NGX_CONF_UNSET_UINT;
    rp.stls = NGX_CONF_UNSET;

    rv = ngx_http_canary_redis_address(cf, rcf, &value[1], &rp);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    for (i = 2; i < cf->args->nelts; i++) {
        if (ngx_http_canary_redis_param(rcf, &value[i], &rp) != NGX_OK) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\" in canary_redis",
                               &value[i]);
            return NGX_CONF_ERROR;
        }
    }

    rv = ngx_http_canary_redis_finish(cf, rcf, &rp);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    *rcfp = rcf;

    return NGX_CONF_OK;
}


/* the first parameter: "sentinel=...", or Redis' own address */

static char *
ngx_http_canary_redis_address(ngx_conf_t *cf,
    ngx_http_canary_redis_conf_t *rcf, ngx_str_t *value,
    ngx_http_canary_redis_params_t *rp)
{
    ngx_url_t  u;

    if (ngx_strncmp(value->data, "sentinel=", 9) == 0) {
        rp->sentinels.data = value->data + 9;
        rp->sentinels.len = value->len - 9;
        return NGX_CONF_OK;
    }

    if (ngx_strncmp(value->data, "cluster=", 8) == 0) {
        rp->seeds.data = value->data + 8;
        rp->seeds.len = value->len - 8;
        return NGX_CONF_OK;
    }

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.url = *value;
    u.default_port = 6379;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK) {
        if (u.err) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "%s in canary_redis \"%V\"", u.err, &u.url);
        }

        return NGX_CONF_ERROR;
    }

    if (u.naddrs == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "no address for canary_redis \"%V\"", &u.url);
        return NGX_CONF_ERROR;
    }

    rcf->addr = u.addrs[0];
    rcf->host = u.host;
    rcf->addrs = &rcf->addr;
    rcf->hosts = &rcf->host;
    rcf->naddrs = 1;

    return NGX_CONF_OK;
}


/* one of the other parameters: NGX_OK, or NGX_ERROR when invalid */

static ngx_int_t
ngx_http_canary_redis_param(ngx_http_canary_redis_conf_t *rcf,
    ngx_str_t *value, ngx_http_canary_redis_params_t *rp)
{
    ngx_int_t  n;
    ngx_str_t  s;

    if (ngx_strncmp(value->data, "db=", 3) == 0) {
        s.data = value->data + 3;
        s.len = value->len - 3;

        n = ngx_atoi(s.data, s.len);
        if (n == NGX_ERROR || n > 65535) {
            return NGX_ERROR;
        }

        rcf->db = n;
        return NGX_OK;
    }

    if (ngx_strncmp(value->data, "password=", 9) == 0) {
        rcf->password.data = value->data + 9;
        rcf->password.len = value->len - 9;

        return rcf->password.len ? NGX_OK : NGX_ERROR;
    }

    if (ngx_strncmp(value->data, "user=", 5) == 0) {
        rcf->user.data = value->data + 5;
        rcf->user.len = value->len - 5;

        return rcf->user.len ? NGX_OK : NGX_ERROR;
    }

    if (ngx_strncmp(value->data, "prefix=", 7) == 0) {
        rcf->prefix.data = value->data + 7;
        rcf->prefix.len = value->len - 7;
        return NGX_OK;
    }

    if (ngx_strncmp(value->data, "timeout=", 8) == 0) {
        s.data = value->data + 8;
        s.len = value->len - 8;

        rcf->timeout = ngx_parse_time(&s, 0);
        if (rcf->timeout == (ngx_msec_t) NGX_ERROR || rcf->timeout == 0) {
            return NGX_ERROR;
        }

        return NGX_OK;
    }

    if (value->len == 3 && ngx_strncmp(value->data, "tls", 3) == 0) {
        rcf->tls = 1;
        return NGX_OK;
    }

    if (ngx_strncmp(value->data, "tls_verify=", 11) == 0) {
        if (ngx_strcmp(value->data + 11, "on") == 0) {
            rp->verify = 1;

        } else if (ngx_strcmp(value->data + 11, "off") == 0) {
            rp->verify = 0;

        } else {
            return NGX_ERROR;
        }

        rp->tls_opts++;
        return NGX_OK;
    }

    if (ngx_strncmp(value->data, "tls_ca=", 7) == 0) {
        rp->ca.data = value->data + 7;
        rp->ca.len = value->len - 7;
        rp->tls_opts++;

        return rp->ca.len ? NGX_OK : NGX_ERROR;
    }

    if (ngx_strncmp(value->data, "tls_name=", 9) == 0) {
        rcf->tls_name.data = value->data + 9;
        rcf->tls_name.len = value->len - 9;
        rp->tls_opts++;

        return rcf->tls_name.len ? NGX_OK : NGX_ERROR;
    }

    if (ngx_strncmp(value->data, "tls_cert=", 9) == 0) {
        rp->cert.data = value->data + 9;
        rp->cert.len = value->len - 9;
        rp->tls_opts++;

        return rp->cert.len ? NGX_OK : NGX_ERROR;
    }

    if (ngx_strncmp(value->data, "tls_key=", 8) == 0) {
        rp->key.data = value->data + 8;
        rp->key.len = value->len - 8;
        rp->tls_opts++;

        return rp->key.len ? NGX_OK : NGX_ERROR;
    }

    if (ngx_strncmp(value->data, "master=", 7) == 0) {
        rcf->master.data = value->data + 7;
        rcf->master.len = value->len - 7;

        return rcf->master.len ? NGX_OK : NGX_ERROR;
    }

    if (ngx_strncmp(value->data, "sentinel_password=", 18) == 0) {
        rp->spassword.data = value->data + 18;
        rp->spassword.len = value->len - 18;

        return rp->spassword.len ? NGX_OK : NGX_ERROR;
    }

    if (ngx_strcmp(value->data, "sentinel_tls") == 0
        || ngx_strcmp(value->data, "sentinel_tls=on") == 0)
    {
        rp->stls = 1;
        return NGX_OK;
    }

    if (ngx_strcmp(value->data, "sentinel_tls=off") == 0) {
        rp->stls = 0;
        return NGX_OK;
    }

    return NGX_ERROR;
}


/* the parameters together: what goes with what, TLS, the sentinels */

static char *
ngx_http_canary_redis_finish(ngx_conf_t *cf,
    ngx_http_canary_redis_conf_t *rcf, ngx_http_canary_redis_params_t *rp)
{
    char                          *rv;
    ngx_http_canary_redis_conf_t  *scf;

    if (rcf->user.len && rcf->password.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "canary_redis \"user=\" needs \"password=\"");
        return NGX_CONF_ERROR;
    }

    if (rp->cert.len != rp->key.len
        && (rp->cert.len == 0 || rp->key.len == 0))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "canary_redis \"tls_cert=\" and \"tls_key=\" go "
                           "together");
        return NGX_CONF_ERROR;
    }

    if (rp->sentinels.len == 0
        && (rcf->master.len || rp->spassword.len
            || rp->stls != NGX_CONF_UNSET))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "canary_redis \"master=\", \"sentinel_password=\" "
                           "and \"sentinel_tls\" need \"sentinel=\"");
        return NGX_CONF_ERROR;
    }

    if (rp->sentinels.len && rcf->master.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "canary_redis \"sentinel=\" needs \"master=\"");
        return NGX_CONF_ERROR;
    }

    if (rp->stls == NGX_CONF_UNSET) {
        rp->stls = rcf->tls;
    }

    if (rp->tls_opts && !rcf->tls && !rp->stls) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "canary_redis \"tls_*\" parameters need \"tls\"");
        return NGX_CONF_ERROR;
    }

    /* verification is on when a CA is given, unless said otherwise */

    if (rp->verify == NGX_CONF_UNSET_UINT) {
        rp->verify = rp->ca.len ? 1 : 0;
    }

    rcf->tls_verify = rp->verify;

    if (rcf->tls || rp->stls) {
#if (NGX_SSL)
        if (ngx_http_canary_redis_tls_conf(cf, rcf, &rp->ca, &rp->cert,
                                           &rp->key)
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }
#else
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "canary_redis \"tls\" needs nginx built with "
                           "OpenSSL (--with-http_ssl_module)");
        return NGX_CONF_ERROR;
#endif
    }

    if (rp->seeds.len) {
        return ngx_http_canary_redis_cluster(cf, rcf, rp);
    }

    if (rcf->prefix.data == NULL) {
        ngx_str_set(&rcf->prefix, "canary:");
    }

    if (rp->sentinels.len == 0) {
        return NGX_CONF_OK;
    }

    scf = ngx_pcalloc(cf->pool, sizeof(ngx_http_canary_redis_conf_t));
    if (scf == NULL) {
        return NGX_CONF_ERROR;
    }

    *scf = *rcf;

    ngx_str_null(&scf->user);
    scf->password = rp->spassword;
    scf->db = 0;
    scf->sentinel = NULL;
    scf->tls = rp->stls;

    rv = ngx_http_canary_redis_addrs(cf, scf, &rp->sentinels, 26379,
                                     "sentinel");
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    rcf->sentinel = scf;
    rcf->addr = scf->addr;

    /* the client finds its master through the sentinels */

    rcf->locator = &ngx_http_canary_sentinel_locator;

    return NGX_CONF_OK;
}


/*
 * "cluster=": the seeds; one slot for every key, so the prefix must hold
 * a hash tag ("{canary}:" by default); no SELECT in a cluster
 */

static char *
ngx_http_canary_redis_cluster(ngx_conf_t *cf,
    ngx_http_canary_redis_conf_t *rcf, ngx_http_canary_redis_params_t *rp)
{
    ngx_int_t  slot;

    if (rp->sentinels.len || rcf->db) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "canary_redis \"cluster=\" goes with neither "
                           "\"sentinel=\" nor \"db=\" (a cluster has one "
                           "database)");
        return NGX_CONF_ERROR;
    }

    if (rcf->prefix.data == NULL) {
        ngx_str_set(&rcf->prefix, "{canary}:");
    }

    slot = ngx_http_canary_cluster_keyslot(rcf->prefix.data,
                                           rcf->prefix.len);
    if (slot < 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "canary_redis \"prefix=%V\" has no hash tag: in "
                           "a cluster every key must be in one slot, so "
                           "the prefix needs \"{...}\", as in \"{canary}:\"",
                           &rcf->prefix);
        return NGX_CONF_ERROR;
    }

    rcf->slot = slot;
    rcf->cluster = 1;
    rcf->locator = &ngx_http_canary_cluster_locator;

    return ngx_http_canary_redis_addrs(cf, rcf, &rp->seeds, 6379, "cluster");
}


/* "sentinel=" or "cluster=host:port,...": the addresses, tried in turn */

static char *
ngx_http_canary_redis_addrs(ngx_conf_t *cf, ngx_http_canary_redis_conf_t *rcf,
    ngx_str_t *list, in_port_t port, const char *what)
{
    u_char      *p, *last, *comma;
    ngx_url_t    u;
    ngx_uint_t   n;

    n = 1;
    last = list->data + list->len;

    for (p = list->data; p < last; p++) {
        if (*p == ',') {
            n++;
        }
    }

    rcf->addrs = ngx_pcalloc(cf->pool, n * sizeof(ngx_addr_t));
    rcf->hosts = ngx_pcalloc(cf->pool, n * sizeof(ngx_str_t));
    if (rcf->addrs == NULL || rcf->hosts == NULL) {
        return NGX_CONF_ERROR;
    }

    rcf->naddrs = 0;

    for (p = list->data; p <= last; p = comma + 1) {
        comma = ngx_strlchr(p, last, ',');
        if (comma == NULL) {
            comma = last;
        }

        ngx_memzero(&u, sizeof(ngx_url_t));

        u.url.data = p;
        u.url.len = comma - p;
        u.default_port = port;
        u.no_resolve = 0;

        if (u.url.len == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "empty address in canary_redis \"%s=%V\"",
                               what, list);
            return NGX_CONF_ERROR;
        }

        if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.naddrs == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "%s in canary_redis \"%s=%V\"",
                               u.err ? u.err : "no address", what, list);
            return NGX_CONF_ERROR;
        }

        rcf->addrs[rcf->naddrs] = u.addrs[0];
        rcf->hosts[rcf->naddrs] = u.host;
        rcf->naddrs++;
    }

    rcf->addr = rcf->addrs[0];
    rcf->host = rcf->hosts[0];

    return NGX_CONF_OK;
}


#if (NGX_SSL)

/* the TLS context, as proxy_ssl_* builds one */

static ngx_int_t
ngx_http_canary_redis_tls_conf(ngx_conf_t *cf,
    ngx_http_canary_redis_conf_t *rcf, ngx_str_t *ca, ngx_str_t *cert,
    ngx_str_t *key)
{
    ngx_str_t            *f[3];
    ngx_uint_t            i;
    ngx_file_info_t       fi;
    ngx_pool_cleanup_t   *cln;

    /* a missing file is named with the directive's file and line */

    f[0] = ca;
    f[1] = cert;
    f[2] = key;

    for (i = 0; i < 3; i++) {
        if (f[i]->len == 0) {
            continue;
        }

        if (ngx_conf_full_name(cf->cycle, f[i], 1) != NGX_OK) {
            return NGX_ERROR;
        }

        if (ngx_file_info(f[i]->data, &fi) == NGX_FILE_ERROR) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                               ngx_file_info_n " \"%s\" failed",
                               f[i]->data);
            return NGX_ERROR;
        }
    }

    rcf->ssl = ngx_pcalloc(cf->pool, sizeof(ngx_ssl_t));
    if (rcf->ssl == NULL) {
        return NGX_ERROR;
    }

    rcf->ssl->log = cf->log;

    if (ngx_ssl_create(rcf->ssl, NGX_SSL_TLSv1_2|NGX_SSL_TLSv1_3, NULL)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        ngx_ssl_cleanup_ctx(rcf->ssl);
        return NGX_ERROR;
    }

    cln->handler = ngx_ssl_cleanup_ctx;
    cln->data = rcf->ssl;

    if (cert->len
        && ngx_ssl_certificate(cf, rcf->ssl, cert, key, NULL) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (rcf->tls_verify) {
        if (ngx_ssl_trusted_certificate(cf, rcf->ssl, ca, 9) != NGX_OK) {
            return NGX_ERROR;
        }

        /* no tls_ca=: the system's certificate authorities */

        if (ca->len == 0
            && SSL_CTX_set_default_verify_paths(rcf->ssl->ctx) != 1)
        {
            ngx_ssl_error(NGX_LOG_EMERG, cf->log, 0,
                          "SSL_CTX_set_default_verify_paths() failed");
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}

#endif
