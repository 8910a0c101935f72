
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * User sets kept beside the state file, so that after a restart with
 * Redis down the pinned users stay pinned.  One file per rollout and set,
 * "<state file>.<canary|stable>_users.<crc32 of the rollout name, hex>",
 * and for an arm's users:<arm> set "<state file>.arm_users.<crc32 of
 * "<rollout>:<arm>">" with "<rollout>:<arm>" as its name:
 *
 *     canary_users 1 <canary|stable|arm> <escaped name>
 *     <escaped member>
 *     ...
 *     end <number of member lines>
 *
 * The sync worker writes it while it reads the set with SSCAN: each
 * batch's new members are appended to "<file>.tmp" (one write per 64 KiB,
 * no pass over the set of its own), and the file is renamed over the old
 * one when the set is published, so it holds exactly the set in force.
 * A set that is refused or whose read breaks off leaves the old file.
 *
 * The master reads it when it creates the zone, after the state file.  A
 * file with a line that does not parse or is empty, another rollout's
 * name (the crc32 of two names may meet) or an "end" line whose count is
 * not the number of member lines (a truncated file) is ignored as a whole
 * with an error naming the line.  SSCAN may give a member twice, and so
 * may the file: the set takes it once.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_canary_module.h"
#include "ngx_http_canary_parse.h"
#include "ngx_http_canary_users.h"
#include "ngx_http_canary_file.h"


#define NGX_HTTP_CANARY_USERS_BUF  65536


static ngx_int_t ngx_http_canary_users_path(ngx_str_t *path,
    ngx_str_t *state_file, ngx_str_t *name, ngx_uint_t which,
    ngx_log_t *log);
static ngx_int_t ngx_http_canary_users_flush(
    ngx_http_canary_users_file_t *uf);
static void ngx_http_canary_users_failed(ngx_http_canary_users_file_t *uf,
    ngx_err_t err);


/* which: 0 canary_users, 1 stable_users, 2 an arm's users:<arm> */
static ngx_str_t  ngx_http_canary_users_which[] = {
    ngx_string("canary"),
    ngx_string("stable"),
    ngx_string("arm")
};


/* "<state file>.<which>_users.<crc32>", to be freed by the caller */

static ngx_int_t
ngx_http_canary_users_path(ngx_str_t *path, ngx_str_t *state_file,
    ngx_str_t *name, ngx_uint_t which, ngx_log_t *log)
{
    size_t  size;

    size = state_file->len + sizeof(".stable_users.01234567");

    path->data = ngx_alloc(size, log);
    if (path->data == NULL) {
        return NGX_ERROR;
    }

    path->len = ngx_sprintf(path->data, "%V.%V_users.%08xD", state_file,
                            &ngx_http_canary_users_which[which],
                            ngx_crc32_short(name->data, name->len))
                - path->data;

    path->data[path->len] = '\0';

    return NGX_OK;
}


/* the sync worker starts reading a set: a new temporary file */

void
ngx_http_canary_users_open(ngx_http_canary_users_file_t *uf,
    ngx_str_t *state_file, ngx_str_t *name, ngx_uint_t which)
{
    u_char  *p;

    ngx_http_canary_users_abort(uf);

    if (state_file->len == 0) {
        return;
    }

    if (uf->buf == NULL) {
        uf->buf = ngx_alloc(NGX_HTTP_CANARY_USERS_BUF, uf->log);
        if (uf->buf == NULL) {
            return;
        }
    }

    if (ngx_http_canary_users_path(&uf->path, state_file, name, which,
                                   uf->log)
        != NGX_OK)
    {
        return;
    }

    uf->fd = ngx_http_canary_file_create(&uf->path, &uf->tmp, uf->log);

    if (uf->tmp.data == NULL) {
        ngx_free(uf->path.data);
        uf->path.data = NULL;
        return;
    }

    if (uf->fd == NGX_INVALID_FILE) {
        ngx_http_canary_users_failed(uf, ngx_errno);
        return;
    }

    uf->n = 0;

    p = ngx_sprintf(uf->buf, "canary_users 1 %V ",
                    &ngx_http_canary_users_which[which]);

    /* a name is short: 3 bytes a byte fit in the buffer */
    p += ngx_http_canary_escape(p, name->data,
                                ngx_min(name->len,
                                        (NGX_HTTP_CANARY_USERS_BUF - 64)
                                        / 3));
    *p++ = '\n';

    uf->len = p - uf->buf;
}


/* a member the set took: escaped into the buffer, flushed when full */

void
ngx_http_canary_users_add(ngx_http_canary_users_file_t *uf, u_char *data,
    size_t len)
{
    size_t  n;

    if (uf->fd == NGX_INVALID_FILE) {
        return;
    }

    while (len) {
        /* as much of the member as surely fits, escaped */
        n = ngx_min(len, (NGX_HTTP_CANARY_USERS_BUF - uf->len) / 3);

        if (n == 0) {
            if (ngx_http_canary_users_flush(uf) != NGX_OK) {
                return;
            }

            continue;
        }

        uf->len += ngx_http_canary_escape(uf->buf + uf->len, data, n);
        data += n;
        len -= n;
    }

    if (uf->len == NGX_HTTP_CANARY_USERS_BUF
        && ngx_http_canary_users_flush(uf) != NGX_OK)
    {
        return;
    }

    uf->buf[uf->len++] = '\n';
    uf->n++;
}


static ngx_int_t
ngx_http_canary_users_flush(ngx_http_canary_users_file_t *uf)
{
    if (ngx_write_fd(uf->fd, uf->buf, uf->len) != (ssize_t) uf->len) {
        ngx_http_canary_users_failed(uf, ngx_errno);
        return NGX_ERROR;
    }

    uf->len = 0;

    return NGX_OK;
}


/* the set is published: the count, then the file replaces the old one */

void
ngx_http_canary_users_commit(ngx_http_canary_users_file_t *uf)
{
    ngx_fd_t  fd;

    if (uf->fd == NGX_INVALID_FILE) {
        ngx_http_canary_users_abort(uf);
        return;
    }

    if (NGX_HTTP_CANARY_USERS_BUF - uf->len < sizeof("end \n") + NGX_INT_T_LEN
        && ngx_http_canary_users_flush(uf) != NGX_OK)
    {
        return;
    }

    uf->len = ngx_sprintf(uf->buf + uf->len, "end %ui\n", uf->n) - uf->buf;

    if (ngx_http_canary_users_flush(uf) != NGX_OK) {
        return;
    }

    fd = uf->fd;
    uf->fd = NGX_INVALID_FILE;

    if (ngx_http_canary_file_commit(fd, &uf->tmp, &uf->path) != NGX_OK) {
        ngx_http_canary_users_failed(uf, ngx_errno);
        return;
    }

    if (uf->err) {
        ngx_log_error(NGX_LOG_NOTICE, uf->log, 0,
                      "canary sync: users file \"%V\" written again",
                      &uf->path);
        uf->err = 0;
    }

    ngx_http_canary_users_abort(uf);
}


/* the read broke off, or the set was refused: the old file stays */

void
ngx_http_canary_users_abort(ngx_http_canary_users_file_t *uf)
{
    if (uf->fd != NGX_INVALID_FILE) {
        (void) ngx_close_file(uf->fd);
        (void) ngx_delete_file(uf->tmp.data);
        uf->fd = NGX_INVALID_FILE;
    }

    if (uf->path.data) {
        ngx_free(uf->path.data);
        uf->path.data = NULL;
    }

    if (uf->tmp.data) {
        ngx_free(uf->tmp.data);
        uf->tmp.data = NULL;
    }

    uf->len = 0;
    uf->n = 0;
}


/* logged once per kind of error, like the state file's */

static void
ngx_http_canary_users_failed(ngx_http_canary_users_file_t *uf, ngx_err_t err)
{
    if (err != uf->err) {
        ngx_log_error(NGX_LOG_ERR, uf->log, err,
                      "canary sync: cannot write users file \"%V\", its "
                      "folder must be writable by the worker user",
                      &uf->tmp);
    }

    uf->err = err ? err : NGX_ERROR;

    if (uf->fd != NGX_INVALID_FILE) {
        (void) ngx_close_file(uf->fd);
        uf->fd = NGX_INVALID_FILE;
    }

    (void) ngx_delete_file(uf->tmp.data);
}


/*
 * The master, creating the zone: the rollout's set as the file holds it,
 * in the zone, or NULL (no file, or one that is ignored).
 */

ngx_http_canary_set_t *
ngx_http_canary_users_load(ngx_http_canary_main_conf_t *cmcf,
    ngx_str_t *name, ngx_uint_t which, ngx_log_t *log)
{
    ngx_err_t               err;
    ngx_str_t               path, buf;
    ngx_http_canary_set_t  *set;

    if (ngx_http_canary_users_path(&path, &cmcf->state_file, name, which,
                                   log)
        != NGX_OK)
    {
        return NULL;
    }

    set = NULL;

    /* escaped, a member takes at most three times its bytes */

    switch (ngx_http_canary_file_read(&path,
                                      (off_t) (3 * cmcf->shm_zone->shm.size),
                                      &buf, &err, log))
    {
    case NGX_OK:
        set = ngx_http_canary_users_parse(cmcf, &path, name, which, buf.data,
                                          buf.len, log);
        ngx_free(buf.data);
        break;

    case NGX_HTTP_CANARY_FILE_OPEN:
        if (err != NGX_ENOENT) {
            ngx_log_error(NGX_LOG_ERR, log, err,
                          "canary: users file \"%V\" cannot be read, "
                          "rollout \"%V\" starts without its %V users",
                          &path, name, &ngx_http_canary_users_which[which]);
        }

        break;

    case NGX_HTTP_CANARY_FILE_SIZE:
        ngx_log_error(NGX_LOG_ERR, log, err,
                      "canary: users file \"%V\" cannot be read or is larger "
                      "than canary_zone could hold, rollout \"%V\" starts "
                      "without its %V users", &path, name,
                      &ngx_http_canary_users_which[which]);
        break;

    case NGX_HTTP_CANARY_FILE_SHORT:
        ngx_log_error(NGX_LOG_ERR, log, err,
                      "canary: users file \"%V\" read short, rollout \"%V\" "
                      "starts without its %V users", &path, name,
                      &ngx_http_canary_users_which[which]);
        break;

    default:
        break;
    }

    ngx_free(path.data);

    return set;
}


/*
 * A users file's bytes into a new set in the zone, or NULL (logged, but
 * for a file of an empty set)
 */

ngx_http_canary_set_t *
ngx_http_canary_users_parse(ngx_http_canary_main_conf_t *cmcf,
    ngx_str_t *path, ngx_str_t *name, ngx_uint_t which, u_char *p,
    size_t len, ngx_log_t *log)
{
    int                       ntok;
    u_char                   *last, *eol, *s;
    size_t                    slen;
    ngx_int_t                 rc, count, lines;
    ngx_uint_t                line;
    const char               *why;
    ngx_http_canary_set_t    *set;
    ngx_http_canary_token_t   tok[4];

    last = p + len;
    line = 0;
    count = 0;

    /* the last line first: "end <count>", or the file is truncated */

    if (len == 0 || last[-1] != '\n') {
        why = "no \"end\" line, the file is truncated";
        goto invalid;
    }

    for (s = last - 1; s > p && s[-1] != '\n'; s--) { /* void */ }

    if (last - s < (ssize_t) sizeof("end 0\n") - 1
        || ngx_strncmp(s, "end ", 4) != 0
        || (count = ngx_atoi(s + 4, last - 1 - (s + 4))) == NGX_ERROR)
    {
        why = "no \"end\" line, the file is truncated";
        goto invalid;
    }

    last = s;
    line = 1;

    /* "canary_users 1 <which> <name>" */

    eol = ngx_strlchr(p, last, '\n');
    if (eol == NULL) {
        why = "no \"canary_users 1\" line";
        goto invalid;
    }

    ntok = ngx_http_canary_split(p, eol - p, tok, 4);

    if (ntok != 4 || tok[0].len != 12
        || ngx_strncmp(tok[0].data, "canary_users", 12) != 0
        || tok[1].len != 1 || tok[1].data[0] != '1')
    {
        why = "not \"canary_users 1\"";
        goto invalid;
    }

    s = (u_char *) tok[3].data;

    if (tok[2].len != ngx_http_canary_users_which[which].len
        || ngx_strncmp(tok[2].data, ngx_http_canary_users_which[which].data,
                       tok[2].len) != 0
        || ngx_http_canary_unescape(s, tok[3].len, s, &slen) != 0
        || slen != name->len || ngx_strncmp(s, name->data, slen) != 0)
    {
        why = "another rollout's or set's file";
        goto invalid;
    }

    p = eol + 1;

    /* the members, one a line, into a new set */

    ngx_shmtx_lock(&cmcf->shpool->mutex);

    set = ngx_http_canary_set_create_locked(cmcf->shpool, count);

    rc = set ? NGX_OK : NGX_ERROR;

    while (p < last && rc == NGX_OK) {
        line++;

        eol = ngx_strlchr(p, last, '\n');

        if (ngx_http_canary_unescape(p, eol - p, p, &slen) != 0
            || slen == 0)
        {
            rc = NGX_DECLINED;
            break;
        }

        /* SSCAN may give a member twice, and so may the file: once */

        rc = ngx_http_canary_set_add_locked(cmcf->shpool, &cmcf->sh->reclaim,
                                            set, p, slen, 0);

        if (rc == NGX_DECLINED || rc == NGX_ABORT) {
            /* twice, or longer than a member may be (not written so) */
            rc = NGX_OK;
        }

        p = eol + 1;
    }

    if (rc != NGX_OK) {
        if (set) {
            ngx_http_canary_set_free_locked(cmcf->shpool, set);
        }

        ngx_shmtx_unlock(&cmcf->shpool->mutex);

        if (rc == NGX_ERROR) {
            ngx_log_error(NGX_LOG_ERR, log, 0,
                          "canary: users file \"%V\": %i members do not "
                          "fit in canary_zone, rollout \"%V\" starts "
                          "without its %V users", path, count, name,
                          &ngx_http_canary_users_which[which]);
            return NULL;
        }

        why = "a bad or empty member";
        goto invalid;
    }

    ngx_shmtx_unlock(&cmcf->shpool->mutex);

    lines = line - 1;

    if (lines == 0 || lines != count) {
        ngx_shmtx_lock(&cmcf->shpool->mutex);
        ngx_http_canary_set_free_locked(cmcf->shpool, set);
        ngx_shmtx_unlock(&cmcf->shpool->mutex);

        if (lines == count) {
            /* Redis had no such set when it was written */
            return NULL;
        }

        line++;
        why = "the \"end\" line's count is not the number of members";
        goto invalid;
    }

    ngx_log_error(NGX_LOG_NOTICE, log, 0,
                  "canary: rollout \"%V\" starts with %ui %V users from "
                  "\"%V\"", name, ngx_http_canary_set_size(set),
                  &ngx_http_canary_users_which[which], path);

    return set;

invalid:

    if (line == 0) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "canary: users file \"%V\": %s, the file is ignored "
                      "and rollout \"%V\" starts without its %V users",
                      path, why, name, &ngx_http_canary_users_which[which]);
        return NULL;
    }

    ngx_log_error(NGX_LOG_ERR, log, 0,
                  "canary: users file \"%V\" line %ui: %s, the file is "
                  "ignored and rollout \"%V\" starts without its %V users",
                  path, line, why, name,
                  &ngx_http_canary_users_which[which]);

    return NULL;
}
