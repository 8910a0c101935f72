
/*
 * Copyright (C) ngx_http_canary_module authors
 */


#ifndef _NGX_HTTP_CANARY_FILE_H_INCLUDED_
#define _NGX_HTTP_CANARY_FILE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


#if (__GNUC__ >= 4)
#pragma GCC visibility push(hidden)
#endif


/* why ngx_http_canary_file_read() gave no file */
#define NGX_HTTP_CANARY_FILE_OPEN      1    /* cannot be opened */
#define NGX_HTTP_CANARY_FILE_SIZE      2    /* cannot be sized, too large */
#define NGX_HTTP_CANARY_FILE_SHORT     3    /* read short */


ngx_int_t ngx_http_canary_file_read(ngx_str_t *path, off_t max,
    ngx_str_t *buf, ngx_err_t *err, ngx_log_t *log);
ngx_fd_t ngx_http_canary_file_create(ngx_str_t *path, ngx_str_t *tmp,
    ngx_log_t *log);
ngx_int_t ngx_http_canary_file_commit(ngx_fd_t fd, ngx_str_t *tmp,
    ngx_str_t *path);


#if (__GNUC__ >= 4)
#pragma GCC visibility pop
#endif


#endif /* _NGX_HTTP_CANARY_FILE_H_INCLUDED_ */
