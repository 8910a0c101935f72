
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * The state file: written by the sync worker after each published change
 * (a temporary file beside it, then rename(), so a reader sees the old
 * file or the new one), read by the master when it creates the zone.
 *
 *     canary_state 2
 *     redis <run_id>
 *     rollout <name> <percent> <start> <end> <state or ->
 *     segment <name> <percent> <escaped value>
 *     arm <name> <arm> <weight> on|off     (when not the config's)
 *     shadow <name> <percent>              (when not the config's)
 *     auto <name> <step> <failures> <since ms> <checked ms>
 *     end
 *
 * Version 2 adds "redis", the instance the state came from when known,
 * and "auto", an automatic rollout's step as its controller last read it
 * (both for writing the state back into a Redis that lost it); a version
 * 1 file is read too.  Only rollouts whose values
 * came from Redis (or from this file) are written.  User sets have files
 * of their own, see ngx_http_canary_users.c.
 *
 * Here too: the zone's init hook (the zone, then the state file into a
 * new zone) and the canary_state_file directive.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_canary_state.h"
#include "ngx_http_canary_values.h"
#include "ngx_http_canary_users.h"
#include "ngx_http_canary_file.h"


#define NGX_HTTP_CANARY_STATE_MAX      (64 * 1024 * 1024)


/* a state file being parsed */
typedef struct {
    ngx_http_canary_main_conf_t    *cmcf;
    ngx_http_canary_values_t       *vals;
    ngx_array_t                    *segs;       /* per rollout */
    ngx_pool_t                     *pool;
    ngx_log_t                      *log;
    ngx_uint_t                      line;
} ngx_http_canary_state_ctx_t;


static size_t ngx_http_canary_state_size(ngx_http_canary_main_conf_t *cmcf);
static u_char *ngx_http_canary_state_text(u_char *p,
    ngx_http_canary_rollout_t *ro, ngx_http_canary_snapshot_t *snap);
static void ngx_http_canary_state_load_values(
    ngx_http_canary_main_conf_t *cmcf, ngx_log_t *log);
static ngx_int_t ngx_http_canary_state_line(ngx_http_canary_state_ctx_t *ctx,
    ngx_http_canary_token_t *tok, int ntok, const char **why);
static ngx_int_t ngx_http_canary_state_rollout(
    ngx_http_canary_state_ctx_t *ctx, ngx_http_canary_token_t *tok,
    ngx_int_t idx, const char **why);
static ngx_int_t ngx_http_canary_state_step(ngx_http_canary_state_ctx_t *ctx,
    ngx_http_canary_token_t *tok, ngx_int_t idx, const char **why);
static ngx_int_t ngx_http_canary_state_arm(ngx_http_canary_state_ctx_t *ctx,
    ngx_http_canary_token_t *tok, ngx_int_t idx, const char **why);
static ngx_int_t ngx_http_canary_state_segment(
    ngx_http_canary_state_ctx_t *ctx, ngx_http_canary_token_t *tok,
    ngx_int_t idx, const char **why);
static ngx_int_t ngx_http_canary_state_shadow(
    ngx_http_canary_state_ctx_t *ctx, ngx_http_canary_token_t *tok,
    ngx_int_t idx, const char **why);


/*
 * The zone's init: its layout and rollouts (ngx_http_canary_shm.c), then,
 * when the zone is new, the last good state from before the restart
 */

ngx_int_t
ngx_http_canary_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_int_t                     rc;
    ngx_http_canary_main_conf_t  *cmcf;

    rc = ngx_http_canary_shm_init_zone(shm_zone, data);

    if (rc != NGX_OK) {
        return rc;
    }

    if (data == NULL && !shm_zone->shm.exists) {
        cmcf = shm_zone->data;
        ngx_http_canary_state_load(cmcf, shm_zone->shm.log);
    }

    return NGX_OK;
}


char *
ngx_http_canary_state_file(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_canary_main_conf_t *cmcf = conf;

    ngx_str_t        *value, dir;
    ngx_file_info_t   fi;

    if (cmcf->state_file.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 0) {
        return "takes a path";
    }

    cmcf->state_file = value[1];

    if (ngx_conf_full_name(cf->cycle, &cmcf->state_file, 0) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    /* the folder must exist (writable by the worker user: documented) */

    dir = cmcf->state_file;

    while (dir.len && dir.data[dir.len - 1] != '/') {
        dir.len--;
    }

    if (dir.len > 1) {
        dir.len--;
    }

    dir.data = ngx_pnalloc(cf->pool, dir.len + 1);
    if (dir.data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memcpy(dir.data, cmcf->state_file.data, dir.len);
    dir.data[dir.len] = '\0';

    if (ngx_file_info(dir.data, &fi) == NGX_FILE_ERROR
        || !ngx_is_dir(&fi))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "canary_state_file \"%V\": folder \"%s\" is "
                           "missing", &value[1], dir.data);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* the state file from the published snapshots */

void
ngx_http_canary_state_write(ngx_http_canary_main_conf_t *cmcf,
    ngx_log_t *log, ngx_err_t *state_err, uint64_t *autosum)
{
    u_char                      *buf, *p;
    ngx_fd_t                     fd;
    ngx_err_t                    err;
    ngx_str_t                    tmp, *path;
    ngx_uint_t                   i;
    ngx_http_canary_rollout_t   *ro;
    ngx_http_canary_snapshot_t  *snap;

    path = &cmcf->state_file;

    if (path->len == 0) {
        return;
    }

    ro = cmcf->rollouts.elts;

    buf = ngx_alloc(ngx_http_canary_state_size(cmcf), log);
    if (buf == NULL) {
        return;
    }

    p = ngx_cpymem(buf, "canary_state 2\n", sizeof("canary_state 2\n") - 1);

    if (cmcf->sh->run_id[0]) {
        p = ngx_sprintf(p, "redis %s\n", cmcf->sh->run_id);
    }

    for (i = 0; i < cmcf->rollouts.nelts; i++) {
        snap = ro[i].sh->snapshot;

        if (snap->source == NGX_HTTP_CANARY_SOURCE_CONFIG) {
            continue;
        }

        p = ngx_http_canary_state_text(p, &ro[i], snap);
    }

    p = ngx_cpymem(p, "end\n", sizeof("end\n") - 1);

    *autosum = ngx_http_canary_state_auto(cmcf);

    fd = ngx_http_canary_file_create(path, &tmp, log);

    if (tmp.data == NULL) {
        ngx_free(buf);
        return;
    }

    err = 0;

    if (fd == NGX_INVALID_FILE) {
        err = ngx_errno;
        goto failed;
    }

    if (ngx_write_fd(fd, buf, p - buf) != p - buf) {
        err = ngx_errno;
        (void) ngx_close_file(fd);
        (void) ngx_delete_file(tmp.data);
        goto failed;
    }

    if (ngx_http_canary_file_commit(fd, &tmp, path) != NGX_OK) {
        err = ngx_errno;
        goto failed;
    }

    if (*state_err) {
        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "canary sync: state file \"%V\" written again", path);
    }

    *state_err = 0;

    ngx_free(tmp.data);
    ngx_free(buf);

    return;

failed:

    if (err != *state_err) {
        ngx_log_error(NGX_LOG_ERR, log, err,
                      "canary sync: cannot write state file \"%V\", its "
                      "folder must be writable by the worker user", path);
    }

    *state_err = err ? err : NGX_ERROR;

    ngx_free(tmp.data);
    ngx_free(buf);
}


/* the bytes the state file may take at most */

static size_t
ngx_http_canary_state_size(ngx_http_canary_main_conf_t *cmcf)
{
    size_t                       size;
    ngx_uint_t                   i, j;
    ngx_http_canary_rollout_t   *ro;
    ngx_http_canary_snapshot_t  *snap;

    ro = cmcf->rollouts.elts;

    size = sizeof("canary_state 2\n") + sizeof("end\n")
           + sizeof("redis \n") + NGX_HTTP_CANARY_RUN_ID_LEN;

    for (i = 0; i < cmcf->rollouts.nelts; i++) {
        snap = ro[i].sh->snapshot;

        size += sizeof("rollout   100.00     rolled_back\n")
                + ro[i].name.len + 2 * NGX_TIME_T_LEN
                + sizeof("shadow   100.00\n") + ro[i].name.len;

        for (j = 0; j < snap->nsegments; j++) {
            size += sizeof("segment   100.00\n") + ro[i].name.len
                    + 3 * snap->segments[j].value.len;
        }

        for (j = 1; j <= ro[i].narms; j++) {
            size += sizeof("arm   10000 off\n") + ro[i].name.len
                    + ro[i].variants[j].name.len;
        }

        size += sizeof("auto     \n") + ro[i].name.len + 4 * NGX_INT64_LEN;
    }

    return size;
}


/* a rollout's lines, from its snapshot snap */

static u_char *
ngx_http_canary_state_text(u_char *p, ngx_http_canary_rollout_t *ro,
    ngx_http_canary_snapshot_t *snap)
{
    uint32_t                        arms;
    ngx_uint_t                      j;
    ngx_http_canary_auto_status_t  *st;

    p = ngx_sprintf(p, "rollout %V %ui.%02ui %T %T %s\n", &ro->name,
                    snap->percent / 100, snap->percent % 100,
                    snap->start, snap->end,
                    snap->state ? ngx_http_canary_state_names[snap->state]
                                  .data
                                : (u_char *) "-");

    for (j = 0; j < snap->nsegments; j++) {
        p = ngx_sprintf(p, "segment %V %ui.%02ui ", &ro->name,
                        snap->segments[j].percent / 100,
                        snap->segments[j].percent % 100);
        p += ngx_http_canary_escape(p, snap->segments[j].value.data,
                                    snap->segments[j].value.len);
        *p++ = '\n';
    }

    /* the arms whose allocation Redis changed */

    arms = ngx_http_canary_values_arms_changed(ro, snap);

    for (j = 1; j <= ro->narms; j++) {
        if (!(arms & (1 << (j - 1)))) {
            continue;
        }

        p = ngx_sprintf(p, "arm %V %V %uD %s\n", &ro->name,
                        &ro->variants[j].name, snap->weight[j - 1],
                        (snap->arms_off & (1 << (j - 1))) ? "off"
                                                          : "on");
    }

    /* the shadow share, as the arms, when not the configuration's */

    if (snap->shadow != ro->shadow) {
        p = ngx_sprintf(p, "shadow %V %ui.%02ui\n", &ro->name,
                        snap->shadow / 100, snap->shadow % 100);
    }

    st = ro->sh->autost;

    if (st && st->updated && st->step) {
        p = ngx_sprintf(p, "auto %V %ui %ui %uL %uL\n", &ro->name,
                        st->step, st->failures, st->since, st->checked);
    }

    return p;
}


/* a sum of what the state file's "auto" lines hold, to tell a change */

uint64_t
ngx_http_canary_state_auto(ngx_http_canary_main_conf_t *cmcf)
{
    uint64_t                        sum;
    ngx_uint_t                      i;
    ngx_http_canary_rollout_t      *ro;
    ngx_http_canary_auto_status_t  *st;

    sum = 0;
    ro = cmcf->rollouts.elts;

    for (i = 0; i < cmcf->rollouts.nelts; i++) {
        st = ro[i].sh->autost;

        if (st && st->updated && st->step) {
            sum = sum * 31 + st->step;
            sum = sum * 31 + st->failures;
            sum = sum * 31 + st->since;
            sum = sum * 31 + st->checked;
        }
    }

    return sum;
}


/*
 * At start, when the zone is new: the state file's values, published with
 * source "state_file", and the user sets of the users files beside it.  A
 * file that does not parse is ignored as a whole.
 */

void
ngx_http_canary_state_load(ngx_http_canary_main_conf_t *cmcf, ngx_log_t *log)
{
    ngx_uint_t                  i, n, which;
    ngx_http_canary_set_t      *set;
    ngx_http_canary_rollout_t  *ro;

    if (cmcf->state_file.len == 0) {
        return;
    }

    ngx_http_canary_state_load_values(cmcf, log);

    ro = cmcf->rollouts.elts;

    for (i = 0; i < cmcf->rollouts.nelts; i++) {
        n = (ro[i].narms > 1) ? 2 + ro[i].narms : 2;

        for (which = 0; which < n; which++) {
            set = ngx_http_canary_users_load(cmcf,
                                             which < 2
                                             ? &ro[i].name
                                             : &ro[i].variants[which - 1].users,
                                             ngx_min(which, 2), log);

            if (set) {
                (void) ngx_http_canary_snapshot_set_swap(cmcf, &ro[i], which,
                                                         set, log);
            }
        }
    }
}


static void
ngx_http_canary_state_load_values(ngx_http_canary_main_conf_t *cmcf,
    ngx_log_t *log)
{
    ngx_err_t                       err;
    ngx_str_t                       buf;
    ngx_uint_t                      i;
    ngx_pool_t                     *pool;
    ngx_http_canary_values_t       *vals;
    ngx_http_canary_rollout_t      *ro;
    ngx_http_canary_auto_status_t  *st;
    u_char                          run_id[NGX_HTTP_CANARY_RUN_ID_LEN + 1];

    if (cmcf->state_file.len == 0 || cmcf->rollouts.nelts == 0) {
        return;
    }

    switch (ngx_http_canary_file_read(&cmcf->state_file,
                                      NGX_HTTP_CANARY_STATE_MAX, &buf, &err,
                                      log))
    {
    case NGX_OK:
        break;

    case NGX_HTTP_CANARY_FILE_OPEN:
        ngx_log_error((err == NGX_ENOENT ? NGX_LOG_NOTICE : NGX_LOG_ERR),
                      log, err,
                      "canary: no state file \"%V\" to start from, using "
                      "the config", &cmcf->state_file);
        return;

    case NGX_HTTP_CANARY_FILE_SIZE:
        ngx_log_error(NGX_LOG_ERR, log, err,
                      "canary: state file \"%V\" cannot be read or is too "
                      "large, using the config", &cmcf->state_file);
        return;

    case NGX_HTTP_CANARY_FILE_SHORT:
        ngx_log_error(NGX_LOG_ERR, log, err,
                      "canary: state file \"%V\" read short, using the "
                      "config", &cmcf->state_file);
        return;

    default:
        return;
    }

    pool = ngx_create_pool(4096, log);
    if (pool == NULL) {
        goto done;
    }

    vals = ngx_pcalloc(pool, cmcf->rollouts.nelts
                             * sizeof(ngx_http_canary_values_t));
    if (vals == NULL) {
        goto done;
    }

    ro = cmcf->rollouts.elts;

    for (i = 0; i < cmcf->rollouts.nelts; i++) {
        ngx_http_canary_values_init(&vals[i], &ro[i]);
    }

    run_id[0] = '\0';

    if (ngx_http_canary_state_parse(cmcf, buf.data, buf.len, vals, run_id,
                                    pool, log)
        != NGX_OK)
    {
        goto done;
    }

    if (run_id[0]) {
        ngx_memcpy(cmcf->sh->run_id, run_id, NGX_HTTP_CANARY_RUN_ID_LEN + 1);
    }

    for (i = 0; i < cmcf->rollouts.nelts; i++) {
        if (vals[i].source != NGX_HTTP_CANARY_SOURCE_STATE_FILE) {
            continue;
        }

        if (ngx_http_canary_snapshot_apply(cmcf, &ro[i], &vals[i], log)
            == NGX_ERROR)
        {
            ngx_log_error(NGX_LOG_ERR, log, 0,
                          "canary: no room in canary_zone for rollout "
                          "\"%V\" with %ui segments, the last good state "
                          "stays in force", &ro[i].name, vals[i].nsegments);
        }

        st = ro[i].sh->autost;

        if (st && vals[i].step && ro[i].policy) {
            ngx_shmtx_lock(&cmcf->shpool->mutex);

            st->step = (ngx_uint_t) vals[i].step;
            st->nsteps = ro[i].policy->nsteps;
            st->failures = (ngx_uint_t) vals[i].failures;
            st->since = vals[i].since;
            st->checked = vals[i].checked;
            st->updated = ngx_time();

            ngx_shmtx_unlock(&cmcf->shpool->mutex);
        }
    }

done:

    ngx_free(buf.data);

    if (pool) {
        ngx_destroy_pool(pool);
    }
}


/*
 * The state file's lines into vals (one per rollout of the configuration,
 * as ngx_http_canary_values_init() made them) and run_id.  NGX_DECLINED:
 * a line does not parse, logged, and the file is ignored as a whole.
 */

ngx_int_t
ngx_http_canary_state_parse(ngx_http_canary_main_conf_t *cmcf, u_char *p,
    size_t len, ngx_http_canary_values_t *vals, u_char *run_id,
    ngx_pool_t *pool, ngx_log_t *log)
{
    int                           ntok;
    u_char                       *last, *eol;
    ngx_int_t                     rc;
    ngx_uint_t                    i, ended;
    const char                   *why;
    ngx_http_canary_token_t       tok[6];
    ngx_http_canary_state_ctx_t   ctx;

    ctx.cmcf = cmcf;
    ctx.vals = vals;
    ctx.pool = pool;
    ctx.log = log;
    ctx.line = 0;

    last = p + len;
    ended = 0;

    ctx.segs = ngx_pcalloc(pool, cmcf->rollouts.nelts * sizeof(ngx_array_t));
    if (ctx.segs == NULL) {
        return NGX_ERROR;
    }

    while (p < last) {
        ctx.line++;

        eol = ngx_strlchr(p, last, '\n');
        if (eol == NULL) {
            why = "no newline at the end";
            goto invalid;
        }

        if (ended) {
            why = "text after \"end\"";
            goto invalid;
        }

        ntok = ngx_http_canary_split(p, eol - p, tok, 6);
        p = eol + 1;

        if (ntok < 0) {
            why = "bad spacing or a control character";
            goto invalid;
        }

        if (ctx.line == 1) {
            if (ntok != 2 || tok[0].len != 12
                || ngx_strncmp(tok[0].data, "canary_state", 12) != 0
                || tok[1].len != 1
                || (tok[1].data[0] != '1' && tok[1].data[0] != '2'))
            {
                why = "not \"canary_state 1\" or \"canary_state 2\"";
                goto invalid;
            }

            continue;
        }

        if (ntok == 2 && tok[0].len == 5
            && ngx_strncmp(tok[0].data, "redis", 5) == 0)
        {
            for (i = 0; i < tok[1].len; i++) {
                if (!isxdigit(tok[1].data[i])) {
                    break;
                }
            }

            if (tok[1].len != NGX_HTTP_CANARY_RUN_ID_LEN
                || i != tok[1].len)
            {
                why = "bad run_id";
                goto invalid;
            }

            ngx_memcpy(run_id, tok[1].data, NGX_HTTP_CANARY_RUN_ID_LEN);
            run_id[NGX_HTTP_CANARY_RUN_ID_LEN] = '\0';

            continue;
        }

        if (ntok == 1 && tok[0].len == 3
            && ngx_strncmp(tok[0].data, "end", 3) == 0)
        {
            ended = 1;
            continue;
        }

        if (ntok < 2) {
            why = "unknown line";
            goto invalid;
        }

        why = NULL;
        rc = ngx_http_canary_state_line(&ctx, tok, ntok, &why);

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (rc == NGX_DECLINED) {
            goto invalid;
        }
    }

    if (!ended) {
        why = "no \"end\" line, the file is truncated";
        goto invalid;
    }

    for (i = 0; i < cmcf->rollouts.nelts; i++) {
        vals[i].segments = ctx.segs[i].elts;
        vals[i].nsegments = ctx.segs[i].nelts;
    }

    return NGX_OK;

invalid:

    ngx_log_error(NGX_LOG_ERR, log, 0,
                  "canary: state file \"%V\" line %ui: %s, the file is "
                  "ignored and the config is used", &cmcf->state_file,
                  ctx.line, why);

    return NGX_DECLINED;
}


/*
 * A line that names a rollout: "rollout", "auto", "arm", "segment",
 * "shadow".  A rollout not in this config is skipped, and so are the
 * other lines of a rollout whose "rollout" line was skipped.  NGX_OK;
 * NGX_DECLINED with *why; NGX_ERROR out of memory.
 */

static ngx_int_t
ngx_http_canary_state_line(ngx_http_canary_state_ctx_t *ctx,
    ngx_http_canary_token_t *tok, int ntok, const char **why)
{
    ngx_int_t                   idx;
    ngx_http_canary_rollout_t  *ro;

    ro = ctx->cmcf->rollouts.elts;

    for (idx = 0; idx < (ngx_int_t) ctx->cmcf->rollouts.nelts; idx++) {
        if (ro[idx].name.len == tok[1].len
            && ngx_strncmp(ro[idx].name.data, tok[1].data, tok[1].len)
               == 0)
        {
            break;
        }
    }

    if (idx == (ngx_int_t) ctx->cmcf->rollouts.nelts) {
        idx = -1;
    }

    if (ntok == 6 && tok[0].len == 7
        && ngx_strncmp(tok[0].data, "rollout", 7) == 0)
    {
        return ngx_http_canary_state_rollout(ctx, tok, idx, why);
    }

    if (ntok == 6 && tok[0].len == 4
        && ngx_strncmp(tok[0].data, "auto", 4) == 0)
    {
        return ngx_http_canary_state_step(ctx, tok, idx, why);
    }

    if (ntok == 5 && tok[0].len == 3
        && ngx_strncmp(tok[0].data, "arm", 3) == 0)
    {
        return ngx_http_canary_state_arm(ctx, tok, idx, why);
    }

    if (ntok == 4 && tok[0].len == 7
        && ngx_strncmp(tok[0].data, "segment", 7) == 0)
    {
        return ngx_http_canary_state_segment(ctx, tok, idx, why);
    }

    if (ntok == 3 && tok[0].len == 6
        && ngx_strncmp(tok[0].data, "shadow", 6) == 0)
    {
        return ngx_http_canary_state_shadow(ctx, tok, idx, why);
    }

    *why = "unknown line";
    return NGX_DECLINED;
}


/* rollout <name> <percent> <start> <end> <state or -> */

static ngx_int_t
ngx_http_canary_state_rollout(ngx_http_canary_state_ctx_t *ctx,
    ngx_http_canary_token_t *tok, ngx_int_t idx, const char **why)
{
    time_t                      start, end;
    uint32_t                    pct;
    unsigned                    state;
    ngx_http_canary_values_t   *v;
    ngx_http_canary_rollout_t  *ro;

    if (ngx_http_canary_parse_percent(tok[2].data, tok[2].len, &pct)
        || ngx_http_canary_parse_time(tok[3].data, tok[3].len, &start)
        || ngx_http_canary_parse_time(tok[4].data, tok[4].len, &end))
    {
        *why = "bad percent or time";
        return NGX_DECLINED;
    }

    if (tok[5].len == 1 && tok[5].data[0] == '-') {
        state = NGX_HTTP_CANARY_STATE_NONE;

    } else if (ngx_http_canary_parse_state(tok[5].data, tok[5].len, &state)) {
        *why = "bad state";
        return NGX_DECLINED;
    }

    if (idx < 0) {
        return NGX_OK;
    }

    ro = ctx->cmcf->rollouts.elts;
    v = &ctx->vals[idx];

    if (v->source == NGX_HTTP_CANARY_SOURCE_STATE_FILE) {
        *why = "rollout given twice";
        return NGX_DECLINED;
    }

    if (ro[idx].hash == NGX_HTTP_CANARY_HASH_UNLEASH && pct % 100) {
        ngx_log_error(NGX_LOG_WARN, ctx->log, 0,
                      "canary: state file \"%V\" line %ui: percent "
                      "of \"hash unleash\" rollout \"%V\" is not "
                      "whole, ignored", &ctx->cmcf->state_file, ctx->line,
                      &ro[idx].name);
        return NGX_OK;
    }

    v->percent = pct;
    v->start = start;
    v->end = end;
    v->state = state;
    v->source = NGX_HTTP_CANARY_SOURCE_STATE_FILE;

    return NGX_OK;
}


/* auto <name> <step> <failures> <since ms> <checked ms> */

static ngx_int_t
ngx_http_canary_state_step(ngx_http_canary_state_ctx_t *ctx,
    ngx_http_canary_token_t *tok, ngx_int_t idx, const char **why)
{
    off_t                      num[4];
    ngx_uint_t                 i;
    ngx_http_canary_values_t  *v;

    for (i = 0; i < 4; i++) {
        num[i] = ngx_atoof((u_char *) tok[2 + i].data, tok[2 + i].len);
        if (num[i] == NGX_ERROR) {
            *why = "bad auto step";
            return NGX_DECLINED;
        }
    }

    if (idx < 0
        || ctx->vals[idx].source != NGX_HTTP_CANARY_SOURCE_STATE_FILE)
    {
        return NGX_OK;
    }

    v = &ctx->vals[idx];

    v->step = num[0];
    v->failures = num[1];
    v->since = num[2];
    v->checked = num[3];

    return NGX_OK;
}


/* arm <name> <arm> <weight> on|off */

static ngx_int_t
ngx_http_canary_state_arm(ngx_http_canary_state_ctx_t *ctx,
    ngx_http_canary_token_t *tok, ngx_int_t idx, const char **why)
{
    uint32_t                    w;
    ngx_int_t                   arm;
    ngx_http_canary_rollout_t  *ro;

    if (ngx_http_canary_parse_weight(tok[3].data, tok[3].len, &w)
        || !((tok[4].len == 2 && ngx_strncmp(tok[4].data, "on", 2) == 0)
             || (tok[4].len == 3
                 && ngx_strncmp(tok[4].data, "off", 3) == 0)))
    {
        *why = "bad arm weight or state";
        return NGX_DECLINED;
    }

    if (idx < 0
        || ctx->vals[idx].source != NGX_HTTP_CANARY_SOURCE_STATE_FILE)
    {
        return NGX_OK;
    }

    ro = ctx->cmcf->rollouts.elts;

    /* an arm no longer in the configuration is skipped */

    arm = ngx_http_canary_find_arm(&ro[idx], (u_char *) tok[2].data,
                                   tok[2].len);
    if (arm == NGX_ERROR) {
        return NGX_OK;
    }

    ctx->vals[idx].weight[arm - 1] = w;

    if (tok[4].len == 3) {
        ctx->vals[idx].arms_off |= 1 << (arm - 1);
    }

    return NGX_OK;
}


/* segment <name> <percent> <escaped value> */

static ngx_int_t
ngx_http_canary_state_segment(ngx_http_canary_state_ctx_t *ctx,
    ngx_http_canary_token_t *tok, ngx_int_t idx, const char **why)
{
    u_char                     *s;
    size_t                      slen;
    uint32_t                    pct;
    ngx_array_t                *segs;
    ngx_http_canary_segment_t  *seg;

    if (ngx_http_canary_parse_percent(tok[2].data, tok[2].len, &pct)) {
        *why = "bad segment percent";
        return NGX_DECLINED;
    }

    s = ngx_pnalloc(ctx->pool, tok[3].len);
    if (s == NULL) {
        return NGX_ERROR;
    }

    if (ngx_http_canary_unescape(tok[3].data, tok[3].len, s, &slen)) {
        *why = "bad segment value";
        return NGX_DECLINED;
    }

    if (idx < 0) {
        return NGX_OK;
    }

    if (ctx->vals[idx].source != NGX_HTTP_CANARY_SOURCE_STATE_FILE) {
        /* its rollout line was skipped */
        return NGX_OK;
    }

    segs = &ctx->segs[idx];

    if (segs->elts == NULL
        && ngx_array_init(segs, ctx->pool, 4,
                          sizeof(ngx_http_canary_segment_t))
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    seg = ngx_array_push(segs);
    if (seg == NULL) {
        return NGX_ERROR;
    }

    seg->value.data = s;
    seg->value.len = slen;
    seg->percent = pct;

    return NGX_OK;
}


/* shadow <name> <percent> */

static ngx_int_t
ngx_http_canary_state_shadow(ngx_http_canary_state_ctx_t *ctx,
    ngx_http_canary_token_t *tok, ngx_int_t idx, const char **why)
{
    uint32_t  pct;

    if (ngx_http_canary_parse_percent(tok[2].data, tok[2].len, &pct)) {
        *why = "bad shadow percent";
        return NGX_DECLINED;
    }

    if (idx >= 0
        && ctx->vals[idx].source == NGX_HTTP_CANARY_SOURCE_STATE_FILE)
    {
        ctx->vals[idx].shadow = pct;
    }

    return NGX_OK;
}
