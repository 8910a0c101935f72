
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * The files beside canary_state_file (the state file, the users files):
 * a whole file read at once, and a file written as "<file>.tmp" and
 * renamed over the old one, so that a reader sees the old file or the
 * new one, whole.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_canary_file.h"


/*
 * The whole file (path NUL-terminated), of at most max bytes, into
 * buf->data (ngx_alloc()ed with a byte to spare, the caller frees it):
 * NGX_OK; NGX_ERROR out of memory; or NGX_HTTP_CANARY_FILE_OPEN, _SIZE,
 * _SHORT, with the error in *err, for the caller to log.
 */

ngx_int_t
ngx_http_canary_file_read(ngx_str_t *path, off_t max, ngx_str_t *buf,
    ngx_err_t *err, ngx_log_t *log)
{
    ssize_t          n;
    ngx_fd_t         fd;
    ngx_int_t        rc;
    ngx_file_info_t  fi;

    buf->data = NULL;
    buf->len = 0;

    fd = ngx_open_file(path->data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (fd == NGX_INVALID_FILE) {
        *err = ngx_errno;
        return NGX_HTTP_CANARY_FILE_OPEN;
    }

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR || ngx_file_size(&fi) > max) {
        *err = ngx_errno;
        rc = NGX_HTTP_CANARY_FILE_SIZE;
        goto done;
    }

    buf->data = ngx_alloc(ngx_file_size(&fi) + 1, log);
    if (buf->data == NULL) {
        rc = NGX_ERROR;
        goto done;
    }

    n = ngx_read_fd(fd, buf->data, ngx_file_size(&fi));

    if (n != ngx_file_size(&fi)) {
        *err = ngx_errno;
        ngx_free(buf->data);
        buf->data = NULL;
        rc = NGX_HTTP_CANARY_FILE_SHORT;
        goto done;
    }

    buf->len = n;
    rc = NGX_OK;

done:

    (void) ngx_close_file(fd);

    return rc;
}


/*
 * "<path>.tmp" (tmp->data ngx_alloc()ed, NULL when out of memory; the
 * caller frees it), created or emptied, opened for writing
 */

ngx_fd_t
ngx_http_canary_file_create(ngx_str_t *path, ngx_str_t *tmp, ngx_log_t *log)
{
    tmp->len = path->len + sizeof(".tmp") - 1;
    tmp->data = ngx_alloc(tmp->len + 1, log);
    if (tmp->data == NULL) {
        return NGX_INVALID_FILE;
    }

    ngx_sprintf(tmp->data, "%V.tmp%Z", path);

    return ngx_open_file(tmp->data, NGX_FILE_WRONLY, NGX_FILE_TRUNCATE,
                         NGX_FILE_DEFAULT_ACCESS);
}


/*
 * The temporary file written: closed, and renamed over the file.
 * NGX_ERROR with ngx_errno set; a temporary file that could not be
 * renamed is deleted.
 */

ngx_int_t
ngx_http_canary_file_commit(ngx_fd_t fd, ngx_str_t *tmp, ngx_str_t *path)
{
    ngx_err_t  err;

    if (ngx_close_file(fd) == NGX_FILE_ERROR) {
        return NGX_ERROR;
    }

    if (ngx_rename_file(tmp->data, path->data) == NGX_FILE_ERROR) {
        err = ngx_errno;
        (void) ngx_delete_file(tmp->data);
        ngx_set_errno(err);
        return NGX_ERROR;
    }

    return NGX_OK;
}
