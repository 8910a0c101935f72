
/*
 * Copyright (C) ngx_http_canary_module authors
 */


#ifndef _NGX_HTTP_CANARY_USERS_H_INCLUDED_
#define _NGX_HTTP_CANARY_USERS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_canary_module.h"


#if (__GNUC__ >= 4)
#pragma GCC visibility push(hidden)
#endif


void ngx_http_canary_users_open(ngx_http_canary_users_file_t *uf,
    ngx_str_t *state_file, ngx_str_t *name, ngx_uint_t which);
void ngx_http_canary_users_add(ngx_http_canary_users_file_t *uf,
    u_char *data, size_t len);
void ngx_http_canary_users_commit(ngx_http_canary_users_file_t *uf);
void ngx_http_canary_users_abort(ngx_http_canary_users_file_t *uf);
ngx_http_canary_set_t *ngx_http_canary_users_load(
    ngx_http_canary_main_conf_t *cmcf, ngx_str_t *name, ngx_uint_t which,
    ngx_log_t *log);
ngx_http_canary_set_t *ngx_http_canary_users_parse(
    ngx_http_canary_main_conf_t *cmcf, ngx_str_t *path, ngx_str_t *name,
    ngx_uint_t which, u_char *p, size_t len, ngx_log_t *log);


#if (__GNUC__ >= 4)
#pragma GCC visibility pop
#endif


#endif /* _NGX_HTTP_CANARY_USERS_H_INCLUDED_ */
