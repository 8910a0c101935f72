
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * A rollout's values (ngx_http_canary_values_t) from the fields of its
 * Redis hash, each parsed strictly:
 *
 *     percent, percent:<segment>    0..100, up to two decimals
 *     start, end                    unix seconds or RFC 3339 UTC
 *     state                         progressing, paused, promoted, ...
 *     weight:<arm>, arm:<arm>       0..10000, on|off
 *     shadow                        0..100
 *
 * A bad value is refused (one error line, counted in sh->refused, logged
 * again only if the value changes) and the field keeps its last good
 * value; other fields (the auto controller's) are not ours.  No Redis
 * connection here: the sync worker hands the fields over.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_canary_values.h"


#define NGX_HTTP_CANARY_LOG_VALUE_MAX  64


static ngx_int_t ngx_http_canary_values_arm(ngx_http_canary_fields_t *f,
    ngx_str_t *field, ngx_str_t *value);
static void ngx_http_canary_values_refuse(ngx_http_canary_fields_t *f,
    ngx_str_t *field, ngx_str_t *value);
static u_char *ngx_http_canary_log_value(u_char *buf, ngx_str_t *value);


/* the configuration's values: its percent, its arms' weights, all on */

void
ngx_http_canary_values_init(ngx_http_canary_values_t *v,
    ngx_http_canary_rollout_t *ro)
{
    ngx_uint_t  a;

    ngx_memzero(v, sizeof(ngx_http_canary_values_t));

    v->percent = ro->percent;
    v->shadow = ro->shadow;
    v->source = NGX_HTTP_CANARY_SOURCE_CONFIG;

    for (a = 0; a < ro->narms; a++) {
        v->weight[a] = ro->variants[a + 1].weight;
    }
}


/*
 * One field of a rollout hash into f->v; a bad value is refused and the
 * field keeps its last good value (f->cur's).  NGX_ERROR: out of memory.
 */

ngx_int_t
ngx_http_canary_values_field(ngx_http_canary_fields_t *f, ngx_str_t *field,
    ngx_str_t *value)
{
    time_t                       t;
    uint32_t                     pct;
    unsigned                     state;
    ngx_str_t                    name;
    ngx_uint_t                   i;
    ngx_http_canary_values_t    *v;
    ngx_http_canary_segment_t   *seg;
    ngx_http_canary_snapshot_t  *cur;

    v = f->v;
    cur = f->cur;

    if (field->len == 7 && ngx_strncmp(field->data, "percent", 7) == 0) {

        if (ngx_http_canary_parse_percent(value->data, value->len, &pct) != 0
            || (f->ro->hash == NGX_HTTP_CANARY_HASH_UNLEASH && pct % 100))
        {
            ngx_http_canary_values_refuse(f, field, value);
            v->percent = cur->percent;
            return NGX_OK;
        }

        v->percent = pct;
        return NGX_OK;
    }

    if (field->len == 6 && ngx_strncmp(field->data, "shadow", 6) == 0) {

        if (ngx_http_canary_parse_percent(value->data, value->len, &pct) != 0)
        {
            ngx_http_canary_values_refuse(f, field, value);
            v->shadow = cur->shadow;
            return NGX_OK;
        }

        v->shadow = pct;
        return NGX_OK;
    }

    if (field->len > 8 && ngx_strncmp(field->data, "percent:", 8) == 0) {
        name.data = field->data + 8;
        name.len = field->len - 8;

        if (ngx_http_canary_parse_percent(value->data, value->len, &pct) != 0
            || (f->ro->hash == NGX_HTTP_CANARY_HASH_UNLEASH && pct % 100))
        {
            ngx_http_canary_values_refuse(f, field, value);

            /* the segment's last good value, if it had one */

            for (i = 0; i < cur->nsegments; i++) {
                if (cur->segments[i].value.len == name.len
                    && ngx_memcmp(cur->segments[i].value.data, name.data,
                                  name.len) == 0)
                {
                    break;
                }
            }

            if (i == cur->nsegments) {
                return NGX_OK;
            }

            pct = cur->segments[i].percent;
        }

        seg = ngx_array_push(f->segments);
        if (seg == NULL) {
            return NGX_ERROR;
        }

        seg->value = name;
        seg->percent = pct;

        return NGX_OK;
    }

    if ((field->len == 5 && ngx_strncmp(field->data, "start", 5) == 0)
        || (field->len == 3 && ngx_strncmp(field->data, "end", 3) == 0))
    {
        if (ngx_http_canary_parse_time(value->data, value->len, &t) != 0) {
            ngx_http_canary_values_refuse(f, field, value);
            t = (field->len == 5) ? cur->start : cur->end;
        }

        if (field->len == 5) {
            v->start = t;

        } else {
            v->end = t;
        }

        return NGX_OK;
    }

    if ((field->len > 7 && ngx_strncmp(field->data, "weight:", 7) == 0)
        || (field->len > 4 && ngx_strncmp(field->data, "arm:", 4) == 0))
    {
        return ngx_http_canary_values_arm(f, field, value);
    }

    if (field->len == 5 && ngx_strncmp(field->data, "state", 5) == 0) {

        if (ngx_http_canary_parse_state(value->data, value->len, &state)
            != 0)
        {
            ngx_http_canary_values_refuse(f, field, value);
            v->state = cur->state;
            return NGX_OK;
        }

        v->state = state;
        return NGX_OK;
    }

    /* other fields (the auto controller's "step", ...) are not ours */

    return NGX_OK;
}


/*
 * "weight:<arm>" 0..10000 and "arm:<arm>" on|off.  A field naming no arm
 * of the rollout is refused like a bad value: it is most likely a typo
 * that would otherwise be silently ignored.
 */

static ngx_int_t
ngx_http_canary_values_arm(ngx_http_canary_fields_t *f, ngx_str_t *field,
    ngx_str_t *value)
{
    size_t                       skip;
    ngx_int_t                    arm;
    ngx_uint_t                   a;
    ngx_http_canary_values_t    *v;
    ngx_http_canary_snapshot_t  *cur;

    v = f->v;
    cur = f->cur;

    skip = (field->data[0] == 'w') ? 7 : 4;

    arm = ngx_http_canary_find_arm(f->ro, field->data + skip,
                                   field->len - skip);

    if (arm == NGX_ERROR) {
        ngx_http_canary_values_refuse(f, field, value);
        return NGX_OK;
    }

    a = arm - 1;

    if (skip == 7) {
        if (ngx_http_canary_parse_weight(value->data, value->len,
                                         &v->weight[a])
            != 0)
        {
            ngx_http_canary_values_refuse(f, field, value);
            v->weight[a] = cur->weight[a];
        }

        return NGX_OK;
    }

    if (value->len == 2 && ngx_strncmp(value->data, "on", 2) == 0) {
        v->arms_off &= ~(1 << a);

    } else if (value->len == 3 && ngx_strncmp(value->data, "off", 3) == 0) {
        v->arms_off |= 1 << a;

    } else {
        ngx_http_canary_values_refuse(f, field, value);
        v->arms_off |= cur->arms_off & (1 << a);
    }

    return NGX_OK;
}


/* one error line per refused value, not one per round */

static void
ngx_http_canary_values_refuse(ngx_http_canary_fields_t *f, ngx_str_t *field,
    ngx_str_t *value)
{
    u_char                      *p, *last, *n;
    size_t                       len, flen, vlen;
    ngx_uint_t                   seen;
    ngx_http_canary_refusals_t  *rf;
    u_char                       buf[NGX_HTTP_CANARY_LOG_VALUE_MAX * 4 + 4];

    rf = f->rf;

    /*
     * The list holds {field length, value length, field, value} entries
     * (values may hold any byte, a NUL too).
     */

    seen = 0;
    p = rf->refused.data;
    last = p ? p + rf->refused.len : NULL;    /* NULL + 0 is undefined */

    while (p && (size_t) (last - p) >= 2 * sizeof(size_t)) {
        ngx_memcpy(&flen, p, sizeof(size_t));
        ngx_memcpy(&vlen, p + sizeof(size_t), sizeof(size_t));
        p += 2 * sizeof(size_t);

        if ((size_t) (last - p) < flen + vlen) {
            break;
        }

        if (flen == field->len && vlen == value->len
            && ngx_memcmp(p, field->data, flen) == 0
            && ngx_memcmp(p + flen, value->data, vlen) == 0)
        {
            seen = 1;
            break;
        }

        p += flen + vlen;
    }

    /* remembered for the next round */

    len = rf->refused_new.len + 2 * sizeof(size_t) + field->len
          + value->len;
    n = ngx_alloc(len, f->log);

    if (n) {
        p = n;

        if (rf->refused_new.data) {
            p = ngx_cpymem(p, rf->refused_new.data, rf->refused_new.len);
            ngx_free(rf->refused_new.data);
        }

        p = ngx_cpymem(p, &field->len, sizeof(size_t));
        p = ngx_cpymem(p, &value->len, sizeof(size_t));
        p = ngx_cpymem(p, field->data, field->len);
        p = ngx_cpymem(p, value->data, value->len);

        rf->refused_new.data = n;
        rf->refused_new.len = len;
    }

    if (seen) {
        return;
    }

    (void) ngx_atomic_fetch_add(&f->sh->refused, 1);

    last = ngx_http_canary_log_value(buf, value);

    ngx_log_error(NGX_LOG_ERR, f->log, 0,
                  "canary sync: refused \"%*s\" for field \"%V\" of \"%V\", "
                  "the last good value stays in force",
                  last - buf, buf, field, f->key);
}


/* a reply of the wrong kind: logged when it differs from the last one */

void
ngx_http_canary_values_error(ngx_http_canary_refusals_t *rf,
    ngx_http_canary_shctx_t *sh, ngx_log_t *log, const char *cmd,
    ngx_str_t *key, redisReply *reply)
{
    u_char     *p;
    size_t      len;
    ngx_str_t   what;
    u_char      buf[128];

    if (reply->type == REDIS_REPLY_ERROR || reply->type == REDIS_REPLY_STATUS
        || reply->type == REDIS_REPLY_STRING)
    {
        what.len = ngx_min(reply->len, 100);
        what.data = (u_char *) reply->str;

    } else {
        what.len = ngx_sprintf(buf, "a reply of type %d", reply->type) - buf;
        what.data = buf;
    }

    len = ngx_strlen(cmd) + 1 + what.len;

    if (rf->error.len == len
        && ngx_strncmp(rf->error.data, cmd, ngx_strlen(cmd)) == 0
        && ngx_memcmp(rf->error.data + len - what.len, what.data, what.len)
           == 0)
    {
        return;
    }

    p = ngx_alloc(len, log);
    if (p) {
        if (rf->error.data) {
            ngx_free(rf->error.data);
        }

        rf->error.data = p;
        rf->error.len = len;
        p = ngx_cpymem(p, cmd, ngx_strlen(cmd));
        *p++ = ' ';
        ngx_memcpy(p, what.data, what.len);
    }

    (void) ngx_atomic_fetch_add(&sh->refused, 1);

    ngx_log_error(NGX_LOG_ERR, log, 0,
                  "canary sync: %s \"%V\" answered \"%V\", the last good "
                  "state stays in force", cmd, key, &what);
}


/*
 * The arms whose allocation differs from the configuration's, bit a for
 * arm a + 1: a weight Redis changed, or the arm switched off.  What the
 * state file keeps and a restore writes back, as the shadow share when
 * it is not the configuration's.
 */

uint32_t
ngx_http_canary_values_arms_changed(ngx_http_canary_rollout_t *ro,
    ngx_http_canary_snapshot_t *snap)
{
    uint32_t    changed;
    ngx_uint_t  a;

    changed = 0;

    for (a = 1; a <= ro->narms; a++) {
        if (snap->weight[a - 1] != ro->variants[a].weight
            || (snap->arms_off & (1 << (a - 1))))
        {
            changed |= 1 << (a - 1);
        }
    }

    return changed;
}


/*
 * A value for the log: bytes outside printable ASCII, '"' and '\\' as
 * \xHH, and cut after 64 bytes
 */

static u_char *
ngx_http_canary_log_value(u_char *buf, ngx_str_t *value)
{
    u_char      *p;
    size_t       len, i;
    static char  hex[] = "0123456789abcdef";

    len = ngx_min(value->len, NGX_HTTP_CANARY_LOG_VALUE_MAX);
    p = buf;

    for (i = 0; i < len; i++) {
        if (value->data[i] >= 0x20 && value->data[i] < 0x7f
            && value->data[i] != '"' && value->data[i] != '\\')
        {
            *p++ = value->data[i];
            continue;
        }

        *p++ = '\\';
        *p++ = 'x';
        *p++ = hex[value->data[i] >> 4];
        *p++ = hex[value->data[i] & 0xf];
    }

    if (len < value->len) {
        p = ngx_cpymem(p, "...", 3);
    }

    return p;
}
