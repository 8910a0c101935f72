
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * What every format of the canary_status page writes with: the answer's
 * chain of buffers (chunks that each worker keeps between requests), its
 * sending, a 400 with a reason, the query's arguments, escaping for each
 * format, and numbers written without a format string.
 *
 * Every string that comes from the configuration, Redis or the request is
 * escaped for the format: JSON with ngx_escape_json (and U+FFFD for bytes
 * that are not UTF-8), HTML with ngx_escape_html, Prometheus label values
 * and quoted text with backslash, double quote and newline escaped.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_canary_module.h"
#include "ngx_http_canary_status.h"
#include "ngx_http_canary_status_out.h"


/* output chunks, and how many bytes of them a worker keeps at most */
#define NGX_HTTP_CANARY_CHUNK           65536
#define NGX_HTTP_CANARY_KEEP            (16 * 1024 * 1024)


static void ngx_http_canary_chunks_cleanup(void *data);


ngx_str_t  ngx_http_canary_shadow_name = ngx_string("shadow");

static ngx_str_t  ngx_http_canary_state_none = ngx_string("none");


/* the worker's free output chunks, and their bytes */
static u_char     *ngx_http_canary_free_chunks;
static size_t      ngx_http_canary_kept;


/*
 * Room for size more bytes at o->buf->last, in a new buffer if need be.
 *
 * The buffers are chunks that the worker keeps between status requests:
 * a request's chunks go back to the free list when its pool is destroyed,
 * that is once the answer has been sent.  Rendering into fresh memory each
 * time cost more than the rendering itself (a page fault per 4 KB: 5.8 MB
 * of Prometheus text for 1,000 rollouts), and glibc gives freed memory
 * back to the kernel as soon as the top of the heap is free.  At most
 * NGX_HTTP_CANARY_KEEP bytes are kept; a reservation larger than a chunk
 * takes a buffer from the request's pool.
 */

u_char *
ngx_http_canary_reserve(ngx_http_canary_out_t *o, size_t size)
{
    u_char              *chunk;
    ngx_buf_t           *b;
    ngx_chain_t         *cl;
    ngx_pool_cleanup_t  *cln;

    if (o->buf && (size_t) (o->buf->end - o->buf->last) >= size) {
        return o->buf->last;
    }

    if (size > NGX_HTTP_CANARY_CHUNK - sizeof(u_char *)) {
        b = ngx_create_temp_buf(o->request->pool, size);
        if (b == NULL) {
            return NULL;
        }

    } else {
        if (o->chunks == NULL) {
            cln = ngx_pool_cleanup_add(o->request->pool, sizeof(u_char *));
            if (cln == NULL) {
                return NULL;
            }

            cln->handler = ngx_http_canary_chunks_cleanup;
            o->chunks = cln->data;
            *o->chunks = NULL;
        }

        b = ngx_calloc_buf(o->request->pool);
        if (b == NULL) {
            return NULL;
        }

        chunk = ngx_http_canary_free_chunks;

        if (chunk) {
            ngx_http_canary_free_chunks = *(u_char **) chunk;
            ngx_http_canary_kept -= NGX_HTTP_CANARY_CHUNK;

        } else {
            chunk = ngx_alloc(NGX_HTTP_CANARY_CHUNK,
                              o->request->connection->log);
            if (chunk == NULL) {
                return NULL;
            }
        }

        /* the request's chunks are linked through their first word */

        *(u_char **) chunk = *o->chunks;
        *o->chunks = chunk;

        b->start = chunk + sizeof(u_char *);
        b->pos = b->start;
        b->last = b->start;
        b->end = chunk + NGX_HTTP_CANARY_CHUNK;
        b->temporary = 1;
    }

    cl = ngx_alloc_chain_link(o->request->pool);
    if (cl == NULL) {
        return NULL;
    }

    cl->buf = b;
    cl->next = NULL;

    *o->last = cl;
    o->last = &cl->next;
    o->buf = b;

    return b->last;
}


static void
ngx_http_canary_chunks_cleanup(void *data)
{
    u_char  *chunk, *next, **chunks;

    chunks = data;

    for (chunk = *chunks; chunk; chunk = next) {
        next = *(u_char **) chunk;

        if (ngx_http_canary_kept + NGX_HTTP_CANARY_CHUNK
            > NGX_HTTP_CANARY_KEEP)
        {
            ngx_free(chunk);
            continue;
        }

        *(u_char **) chunk = ngx_http_canary_free_chunks;
        ngx_http_canary_free_chunks = chunk;
        ngx_http_canary_kept += NGX_HTTP_CANARY_CHUNK;
    }
}


ngx_int_t
ngx_http_canary_send(ngx_http_request_t *r, ngx_http_canary_out_t *o,
    char *type)
{
    off_t         len;
    ngx_int_t     rc;
    ngx_chain_t  *cl;

    len = 0;

    for (cl = o->out; cl; cl = cl->next) {
        len += cl->buf->last - cl->buf->pos;
    }

    if (r->headers_out.status == 0) {
        r->headers_out.status = NGX_HTTP_OK;
    }

    /* every answer is what its type says: no sniffing into HTML */

    if (ngx_http_canary_header(r, "X-Content-Type-Options", "nosniff")
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    r->headers_out.content_length_n = len;
    r->headers_out.content_type.len = ngx_strlen(type);
    r->headers_out.content_type.data = (u_char *) type;
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    o->buf->last_buf = (r == r->main) ? 1 : 0;
    o->buf->last_in_chain = 1;

    return ngx_http_output_filter(r, o->out);
}


/* one more header of the answer */

ngx_int_t
ngx_http_canary_header(ngx_http_request_t *r, char *name, char *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) name;
    h->key.len = ngx_strlen(name);
    h->value.data = (u_char *) value;
    h->value.len = ngx_strlen(value);

    return NGX_OK;
}


/*
 * 400 with a one-line reason; the offending value is quoted with
 * anything outside printable ASCII shown as "?", and cut at 64 bytes.
 */

ngx_int_t
ngx_http_canary_bad_request(ngx_http_request_t *r, char *what,
    ngx_str_t *value)
{
    u_char                 *p;
    ngx_uint_t              i;
    ngx_http_canary_out_t   o;

    ngx_memzero(&o, sizeof(ngx_http_canary_out_t));
    o.request = r;
    o.last = &o.out;

    p = ngx_http_canary_reserve(&o, ngx_strlen(what) + 64 + 8);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_sprintf(p, "%s", what);

    if (value) {
        *p++ = ' ';
        *p++ = '"';

        for (i = 0; i < value->len && i < 64; i++) {
            *p++ = (value->data[i] >= 0x20 && value->data[i] < 0x7f
                    && value->data[i] != '"')
                   ? value->data[i] : '?';
        }

        *p++ = '"';
    }

    *p++ = '\n';

    o.buf->last = p;

    r->headers_out.status = NGX_HTTP_BAD_REQUEST;

    return ngx_http_canary_send(r, &o, "text/plain");
}


/*
 * A query argument, decoded as a form value: "%XX" and "+" for a space.
 * NGX_DECLINED when it is absent ("name" without "=" is absent).
 */

ngx_int_t
ngx_http_canary_arg(ngx_http_request_t *r, char *name, ngx_str_t *value)
{
    u_char     *src, *dst, *p;
    ngx_str_t   raw;

    if (ngx_http_arg(r, (u_char *) name, ngx_strlen(name), &raw) != NGX_OK) {
        return NGX_DECLINED;
    }

    dst = ngx_pnalloc(r->pool, raw.len + 1);
    if (dst == NULL) {
        return NGX_ERROR;
    }

    for (p = raw.data; p < raw.data + raw.len; p++) {
        if (*p == '+') {
            break;
        }
    }

    if (p < raw.data + raw.len) {
        /* a copy, so that the request line stays as it came */

        p = ngx_pnalloc(r->pool, raw.len);
        if (p == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(p, raw.data, raw.len);
        raw.data = p;

        for ( /* void */ ; p < raw.data + raw.len; p++) {
            if (*p == '+') {
                *p = ' ';
            }
        }
    }

    value->data = dst;
    src = raw.data;

    ngx_unescape_uri(&dst, &src, raw.len, 0);

    value->len = dst - value->data;

    return NGX_OK;
}


/* the length of s escaped for the format */

size_t
ngx_http_canary_esc_len(ngx_str_t *s, ngx_uint_t type)
{
    u_char  *p, *end, *q;
    size_t   len;

    if (type == NGX_HTTP_CANARY_ESC_HTML) {
        return s->len + ngx_escape_html(NULL, s->data, s->len);
    }

    len = 0;
    p = s->data;
    end = p + s->len;

    while (p < end) {

        if (*p < 0x80) {
            if (type == NGX_HTTP_CANARY_ESC_JSON) {
                len += 1 + ngx_escape_json(NULL, p, 1);

            } else {
                len += (*p == '\\' || *p == '"' || *p == '\n') ? 2 : 1;
            }

            p++;
            continue;
        }

        q = p;

        if (ngx_utf8_decode(&q, end - p) <= 0x10ffff) {
            len += q - p;
            p = q;
            continue;
        }

        /* not UTF-8: U+FFFD */

        len += (type == NGX_HTTP_CANARY_ESC_JSON) ? sizeof("\\ufffd") - 1
                                                  : 3;
        p++;
    }

    return len;
}


u_char *
ngx_http_canary_esc(u_char *dst, ngx_str_t *s, ngx_uint_t type)
{
    u_char  *p, *end, *q, *run;

    if (type == NGX_HTTP_CANARY_ESC_HTML) {
        return (u_char *) ngx_escape_html(dst, s->data, s->len);
    }

    p = s->data;
    end = p + s->len;
    run = p;

    while (p < end) {

        if (*p < 0x80) {
            if (type == NGX_HTTP_CANARY_ESC_LABEL
                && (*p == '\\' || *p == '"' || *p == '\n'))
            {
                dst = ngx_cpymem(dst, run, p - run);
                *dst++ = '\\';
                *dst++ = (*p == '\n') ? 'n' : *p;
                run = p + 1;
            }

            p++;
            continue;
        }

        q = p;

        if (ngx_utf8_decode(&q, end - p) <= 0x10ffff) {
            p = q;
            continue;
        }

        if (type == NGX_HTTP_CANARY_ESC_JSON) {
            dst = (u_char *) ngx_escape_json(dst, run, p - run);
            dst = ngx_cpymem(dst, "\\ufffd", sizeof("\\ufffd") - 1);

        } else {
            dst = ngx_cpymem(dst, run, p - run);
            dst = ngx_cpymem(dst, "\xef\xbf\xbd", 3);
        }

        p++;
        run = p;
    }

    if (type == NGX_HTTP_CANARY_ESC_JSON) {
        return (u_char *) ngx_escape_json(dst, run, p - run);
    }

    return ngx_cpymem(dst, run, p - run);
}


/* an unsigned number in decimal, as "%uA" prints it, without a format */

u_char *
ngx_http_canary_uint(u_char *p, ngx_atomic_uint_t n)
{
    u_char  *q, tmp[NGX_ATOMIC_T_LEN];

    q = tmp + NGX_ATOMIC_T_LEN;

    do {
        *--q = (u_char) (n % 10 + '0');
        n /= 10;
    } while (n);

    return ngx_cpymem(p, q, tmp + NGX_ATOMIC_T_LEN - q);
}


/* hundredths of a percent as a number: 12.5, 0.01, 100 */

u_char *
ngx_http_canary_percent(u_char *p, ngx_uint_t percent)
{
    if (percent % 100 == 0) {
        return ngx_sprintf(p, "%ui", percent / 100);
    }

    if (percent % 10 == 0) {
        return ngx_sprintf(p, "%ui.%ui", percent / 100, percent % 100 / 10);
    }

    return ngx_sprintf(p, "%ui.%02ui", percent / 100, percent % 100);
}


/* milliseconds as seconds: 0.001, 0.075, 1.5, 60 */

u_char *
ngx_http_canary_seconds(u_char *p, ngx_atomic_uint_t ms)
{
    ngx_atomic_uint_t  frac;

    p = ngx_sprintf(p, "%uA", ms / 1000);

    frac = ms % 1000;

    if (frac == 0) {
        return p;
    }

    if (frac % 100 == 0) {
        return ngx_sprintf(p, ".%uA", frac / 100);
    }

    if (frac % 10 == 0) {
        return ngx_sprintf(p, ".%02uA", frac / 10);
    }

    return ngx_sprintf(p, ".%03uA", frac);
}


/*
 * The upper bound in milliseconds of the bucket that holds the q-th
 * percentile, "inf" beyond the last bound, "-" without requests.
 */

u_char *
ngx_http_canary_quantile(u_char *p, ngx_http_canary_counters_t *c,
    ngx_atomic_uint_t count, ngx_uint_t q)
{
    ngx_uint_t         b;
    ngx_atomic_uint_t  rank, cum;

    if (count == 0) {
        *p++ = '-';
        return p;
    }

    rank = (count * q + 99) / 100;
    cum = 0;

    for (b = 0; b < NGX_HTTP_CANARY_HIST_BUCKETS - 1; b++) {
        cum += c->hist[b];

        if (cum >= rank) {
            return ngx_sprintf(p, "%M", ngx_http_canary_hist_bounds[b]);
        }
    }

    return ngx_cpymem(p, "inf", 3);
}


ngx_str_t *
ngx_http_canary_state(ngx_uint_t state)
{
    if (state == NGX_HTTP_CANARY_STATE_NONE) {
        return &ngx_http_canary_state_none;
    }

    return &ngx_http_canary_state_names[state];
}


/*
 * The arms of a rollout with more than one, or whose allocation Redis
 * changed: text lines " arm blue weight 1 on users 0", or a JSON
 * "arms":[{"name":..,"upstream":..,"weight":..,"on":..,"users":..}],
 * member (users: the members of its users:<arm> set).  A
 * two-sided rollout as configured shows none, as before arms existed.
 */

ngx_uint_t
ngx_http_canary_arms_shown(ngx_http_canary_view_t *vw)
{
    return vw->rollout->narms > 1 || vw->snap->arms_off
           || vw->snap->weight[0] != vw->rollout->variants[1].weight;
}


size_t
ngx_http_canary_arms_size(ngx_http_canary_view_t *vw)
{
    size_t                      size;
    ngx_uint_t                  v;
    ngx_http_canary_variant_t  *var;

    if (!ngx_http_canary_arms_shown(vw)) {
        return 0;
    }

    size = 16;

    for (v = 1; v <= vw->rollout->narms; v++) {
        var = &vw->rollout->variants[v];

        size += 80 + 2 * NGX_HTTP_CANARY_NUM
                + 3 * var->name.len + 6 * var->upstream.len;
    }

    return size;
}
