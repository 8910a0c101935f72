
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * The rollouts' configuration: the canary_rollout block and its inner
 * directives, a rollout and an arm found by name, and the names of the
 * reasons, sources and states.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_canary_module.h"
#include "ngx_http_canary_conf.h"


/* a rollout sub-directive: "key", "percent", ... inside canary_rollout {} */
typedef struct {
    ngx_str_t                       name;
    ngx_uint_t                      min_args;
    ngx_uint_t                      max_args;
    char                         *(*set)(ngx_conf_t *cf,
                                      ngx_http_canary_rollout_t *rc);
} ngx_http_canary_rollout_cmd_t;


static char *ngx_http_canary_rollout_done(ngx_conf_t *cf,
    ngx_http_canary_main_conf_t *cmcf, ngx_http_canary_rollout_t *ro,
    ngx_http_get_variable_pt get);
static char *ngx_http_canary_rollout(ngx_conf_t *cf, ngx_command_t *dummy,
    void *conf);
static ngx_int_t ngx_http_canary_add_variant_variables(ngx_conf_t *cf,
    ngx_http_canary_main_conf_t *cmcf, ngx_http_canary_rollout_t *ro,
    ngx_http_get_variable_pt get);
static ngx_http_variable_t *ngx_http_canary_add_variable(ngx_conf_t *cf,
    ngx_str_t *name);
static ngx_int_t ngx_http_canary_names_find(ngx_http_canary_names_t *t,
    ngx_http_canary_rollout_t *ro, ngx_uint_t word, ngx_str_t *name);
static ngx_int_t ngx_http_canary_names_add(ngx_conf_t *cf,
    ngx_http_canary_names_t *t, ngx_http_canary_rollout_t *ro, ngx_uint_t n,
    ngx_uint_t word);
static void ngx_http_canary_names_put(ngx_http_canary_names_t *t,
    ngx_uint_t n, ngx_str_t *key);
static ngx_uint_t ngx_http_canary_variable_word(u_char *p, size_t len);
static u_char ngx_http_canary_word_char(u_char c);
static char *ngx_http_canary_set_key(ngx_conf_t *cf,
    ngx_http_canary_rollout_t *rc);
static char *ngx_http_canary_set_stable(ngx_conf_t *cf,
    ngx_http_canary_rollout_t *rc);
static char *ngx_http_canary_set_canary(ngx_conf_t *cf,
    ngx_http_canary_rollout_t *rc);
static char *ngx_http_canary_set_variant(ngx_conf_t *cf,
    ngx_http_canary_rollout_t *rc);
static char *ngx_http_canary_add_arm(ngx_conf_t *cf,
    ngx_http_canary_rollout_t *ro, ngx_str_t *name, ngx_str_t *upstream,
    ngx_uint_t weight);
static ngx_int_t ngx_http_canary_check_name(ngx_str_t *name);
static char *ngx_http_canary_set_percent(ngx_conf_t *cf,
    ngx_http_canary_rollout_t *rc);
static char *ngx_http_canary_set_shadow(ngx_conf_t *cf,
    ngx_http_canary_rollout_t *rc);
static char *ngx_http_canary_set_share(ngx_conf_t *cf,
    ngx_http_canary_rollout_t *rc, ngx_uint_t *share);
static char *ngx_http_canary_set_salt(ngx_conf_t *cf,
    ngx_http_canary_rollout_t *rc);
static char *ngx_http_canary_set_hash(ngx_conf_t *cf,
    ngx_http_canary_rollout_t *rc);
static char *ngx_http_canary_set_override(ngx_conf_t *cf,
    ngx_http_canary_rollout_t *rc);
static char *ngx_http_canary_set_segment(ngx_conf_t *cf,
    ngx_http_canary_rollout_t *rc);
static char *ngx_http_canary_set_match(ngx_conf_t *cf,
    ngx_http_canary_rollout_t *rc);
static char *ngx_http_canary_set_requires(ngx_conf_t *cf,
    ngx_http_canary_rollout_t *rc);
static char *ngx_http_canary_compile_value(ngx_conf_t *cf, ngx_str_t *src,
    ngx_http_canary_value_t *v);


static ngx_http_canary_rollout_cmd_t  ngx_http_canary_rollout_cmds[] = {
    { ngx_string("key"), 1, NGX_CONF_MAX_ARGS, ngx_http_canary_set_key },
    { ngx_string("stable"), 1, 1, ngx_http_canary_set_stable },
    { ngx_string("canary"), 1, 1, ngx_http_canary_set_canary },
    { ngx_string("variant"), 2, 3, ngx_http_canary_set_variant },
    { ngx_string("percent"), 1, 1, ngx_http_canary_set_percent },
    { ngx_string("salt"), 1, 1, ngx_http_canary_set_salt },
    { ngx_string("hash"), 1, 1, ngx_http_canary_set_hash },
    { ngx_string("override"), 1, 1, ngx_http_canary_set_override },
    { ngx_string("segment"), 1, 1, ngx_http_canary_set_segment },
    { ngx_string("match"), 2, 2, ngx_http_canary_set_match },
    { ngx_string("requires"), 1, NGX_CONF_MAX_ARGS,
      ngx_http_canary_set_requires },
    /* at most 64 parameters: the policy's, and up to 8 "check=" */
    { ngx_string("auto"), 1, 64, ngx_http_canary_auto_directive },
    { ngx_string("shadow"), 1, 1, ngx_http_canary_set_shadow },
    { ngx_null_string, 0, 0, NULL }
};


ngx_str_t  ngx_http_canary_reason_names[] = {
    ngx_string("override"),
    ngx_string("canary_users"),
    ngx_string("stable_users"),
    ngx_string("no_key"),
    ngx_string("window"),
    ngx_string("match"),
    ngx_string("requires"),
    ngx_string("segment"),
    ngx_string("percent"),
    ngx_string("arm_off")
};


ngx_str_t  ngx_http_canary_source_names[] = {
    ngx_string("config"),
    ngx_string("redis"),
    ngx_string("state_file")
};


ngx_str_t  ngx_http_canary_state_names[] = {
    ngx_string(""),
    ngx_string("progressing"),
    ngx_string("paused"),
    ngx_string("promoted"),
    ngx_string("rolled_back"),
    ngx_string("waiting")
};


/* canary_api's writes, NGX_HTTP_CANARY_API_*: the history's "event" */
ngx_str_t  ngx_http_canary_api_actions[] = {
    ngx_string("patch"),
    ngx_string("start"),
    ngx_string("pause"),
    ngx_string("resume"),
    ngx_string("promote"),
    ngx_string("abort"),
    ngx_string("approve"),
    ngx_string("add_user"),
    ngx_string("remove_user")
};


ngx_str_t  ngx_http_canary_api_results[] = {
    ngx_string("ok"),
    ngx_string("refused"),
    ngx_string("unavailable"),
    ngx_string("timeout")
};


char *
ngx_http_canary_rollout_block(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_canary_main_conf_t *cmcf = conf;

    char                       *rv;
    ngx_str_t                  *value;
    ngx_conf_t                  save;
    ngx_http_get_variable_pt   *get;
    ngx_http_canary_rollout_t  *ro;

    value = cf->args->elts;

    if (ngx_http_canary_find(cmcf, &value[1]) != NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "duplicate canary_rollout \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (ngx_http_canary_check_name(&value[1]) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid canary_rollout name \"%V\"",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    /* a request's context notes a rollout in 16 bits, see ctx_t */

    if (cmcf->rollouts.nelts == NGX_HTTP_CANARY_MAX_ROLLOUTS) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "too many canary_rollout blocks, at most %d",
                           NGX_HTTP_CANARY_MAX_ROLLOUTS);
        return NGX_CONF_ERROR;
    }

    ro = ngx_array_push(&cmcf->rollouts);
    if (ro == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(ro, sizeof(ngx_http_canary_rollout_t));

    ro->name = value[1];
    ro->index = cmcf->rollouts.nelts - 1;
    ro->percent = NGX_CONF_UNSET_UINT;
    ro->shadow = NGX_CONF_UNSET_UINT;
    ro->hash = NGX_CONF_UNSET_UINT;
    ro->file = cf->conf_file->file.name;
    ro->line = cf->conf_file->line;
    ro->nvariants = 1;
    ngx_str_set(&ro->variants[NGX_HTTP_CANARY_STABLE].name, "stable");

    if (ngx_http_canary_names_add(cf, &cmcf->names, cmcf->rollouts.elts,
                                  ro->index, 0)
        != NGX_OK
        || ngx_array_init(&ro->keys, cf->pool, 2,
                          sizeof(ngx_http_canary_value_t))
           != NGX_OK
        || ngx_array_init(&ro->requires, cf->pool, 1,
                          sizeof(ngx_http_canary_require_t))
           != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    save = *cf;
    cf->handler = ngx_http_canary_rollout;
    cf->handler_conf = (void *) ro;

    rv = ngx_conf_parse(cf, NULL);

    *cf = save;

    if (rv != NGX_CONF_OK) {
        return rv;
    }

    /* the variant variables' handler is the request path's (cmd->post) */

    get = cmd->post;

    return ngx_http_canary_rollout_done(cf, cmcf, ro, *get);
}


/*
 * The rollout once its block is read: what it must have, its arms'
 * weights and users files, its defaults, its hash seeds, its variables.
 */

static char *
ngx_http_canary_rollout_done(ngx_conf_t *cf,
    ngx_http_canary_main_conf_t *cmcf, ngx_http_canary_rollout_t *ro,
    ngx_http_get_variable_pt get)
{
    ngx_uint_t                  i;
    ngx_http_canary_variant_t  *var;

    if (ro->keys.nelts == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "no \"key\" in canary_rollout \"%V\"", &ro->name);
        return NGX_CONF_ERROR;
    }

    if (ro->variants[NGX_HTTP_CANARY_STABLE].upstream.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "no \"stable\" in canary_rollout \"%V\"",
                           &ro->name);
        return NGX_CONF_ERROR;
    }

    if (ro->narms == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "no \"canary\" or \"variant\" in "
                           "canary_rollout \"%V\"", &ro->name);
        return NGX_CONF_ERROR;
    }

    ro->total = 0;

    for (i = 1; i <= ro->narms; i++) {
        ro->total += ro->variants[i].weight;

        /* the name of its users file, see ngx_http_canary_users.c */

        var = &ro->variants[i];
        var->users.len = ro->name.len + 1 + var->name.len;
        var->users.data = ngx_pnalloc(cf->pool, var->users.len);
        if (var->users.data == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_sprintf(var->users.data, "%V:%V", &ro->name, &var->name);
    }

    ngx_conf_init_uint_value(ro->percent, 0);
    ngx_conf_init_uint_value(ro->shadow, 0);
    ngx_conf_init_uint_value(ro->hash, NGX_HTTP_CANARY_HASH_MURMUR3);

    if (ro->hash == NGX_HTTP_CANARY_HASH_UNLEASH && ro->percent % 100) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"hash unleash\" takes a whole percent "
                           "in canary_rollout \"%V\"", &ro->name);
        return NGX_CONF_ERROR;
    }

    if (ro->salt.data == NULL) {
        ro->salt = ro->name;
    }

    ngx_http_canary_murmur3_init(&ro->salted);
    ngx_http_canary_murmur3_update(&ro->salted, ro->salt.data, ro->salt.len);
    ngx_http_canary_murmur3_update(&ro->salted, (u_char *) ":", 1);

    ngx_http_canary_murmur3_seed(&ro->arm_salted, NGX_HTTP_CANARY_ARM_SEED);
    ngx_http_canary_murmur3_update(&ro->arm_salted, ro->salt.data,
                                   ro->salt.len);
    ngx_http_canary_murmur3_update(&ro->arm_salted, (u_char *) ":", 1);

    /*
     * $canary_variant_<name>: this rollout's variant, on demand.  nginx
     * ends a variable's name in a string at any byte but a letter, a digit
     * or '_', so a name with others ("new-checkout") gets a second name
     * with '_' for each ("$canary_variant_new_checkout"); two rollouts
     * may not share one.
     */

    if (ngx_http_canary_add_variant_variables(cf, cmcf, ro, get) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_canary_add_variant_variables(ngx_conf_t *cf,
    ngx_http_canary_main_conf_t *cmcf, ngx_http_canary_rollout_t *ro,
    ngx_http_get_variable_pt get)
{
    u_char                     *p;
    ngx_int_t                   other;
    ngx_str_t                   name, word;
    ngx_uint_t                  i, changed;
    ngx_http_variable_t        *var;
    ngx_http_canary_rollout_t  *rollouts;

    name.len = sizeof("canary_variant_") - 1 + ro->name.len;
    name.data = ngx_pnalloc(cf->pool, 2 * name.len);
    if (name.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(name.data, "canary_variant_",
                   sizeof("canary_variant_") - 1);
    ngx_memcpy(p, ro->name.data, ro->name.len);

    word.len = name.len;
    word.data = name.data + name.len;
    ngx_memcpy(word.data, name.data, name.len);

    changed = ngx_http_canary_variable_word(
                  word.data + sizeof("canary_variant_") - 1, ro->name.len);

    /* no other rollout's name may give the same word */

    rollouts = cmcf->rollouts.elts;

    p = word.data + sizeof("canary_variant_") - 1;

    ro->word.len = ro->name.len;
    ro->word.data = p;

    other = ngx_http_canary_names_find(&cmcf->words, rollouts, 1, &ro->word);

    if (other != NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "canary_rollout \"%V\" and \"%V\" would "
                           "both be \"$%V\", rename one",
                           &rollouts[other].name, &ro->name, &word);
        return NGX_ERROR;
    }

    if (ngx_http_canary_names_add(cf, &cmcf->words, rollouts, ro->index, 1)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* the name, and the word when it differs */

    for (i = 0; i < 1 + changed; i++) {
        var = ngx_http_canary_add_variable(cf, i ? &word : &name);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = get;
        var->data = ro->index;
    }

    return NGX_OK;
}


/*
 * ngx_http_add_variable() without its comparison with every variable
 * added before (quadratic in the number of rollouts): the variables'
 * keys hash finds a name taken
 */

static ngx_http_variable_t *
ngx_http_canary_add_variable(ngx_conf_t *cf, ngx_str_t *name)
{
    ngx_int_t                   rc;
    ngx_http_variable_t        *v;
    ngx_http_core_main_conf_t  *hmcf;

    hmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    v = ngx_pcalloc(cf->pool, sizeof(ngx_http_variable_t));
    if (v == NULL) {
        return NULL;
    }

    v->name.len = name->len;
    v->name.data = ngx_pnalloc(cf->pool, name->len);
    if (v->name.data == NULL) {
        return NULL;
    }

    ngx_strlow(v->name.data, name->data, name->len);

    rc = ngx_hash_add_key(hmcf->variables_keys, &v->name, v, 0);

    if (rc == NGX_ERROR) {
        return NULL;
    }

    if (rc == NGX_BUSY) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "the duplicate \"%V\" variable", name);
        return NULL;
    }

    return v;
}


/* a rollout's index by its name or its word, or NGX_ERROR */

static ngx_int_t
ngx_http_canary_names_find(ngx_http_canary_names_t *t,
    ngx_http_canary_rollout_t *ro, ngx_uint_t word, ngx_str_t *name)
{
    ngx_str_t   *key;
    ngx_uint_t   i, mask;

    if (t->size == 0) {
        return NGX_ERROR;
    }

    mask = t->size - 1;

    for (i = ngx_hash_key(name->data, name->len) & mask;
         t->slots[i];
         i = (i + 1) & mask)
    {
        key = word ? &ro[t->slots[i] - 1].word : &ro[t->slots[i] - 1].name;

        if (key->len == name->len
            && ngx_memcmp(key->data, name->data, name->len) == 0)
        {
            return t->slots[i] - 1;
        }
    }

    return NGX_ERROR;
}


/*
 * Rollout n into the table that holds 0 .. n - 1; a table twice as large
 * when it would be more than half full (the old one stays in the pool)
 */

static ngx_int_t
ngx_http_canary_names_add(ngx_conf_t *cf, ngx_http_canary_names_t *t,
    ngx_http_canary_rollout_t *ro, ngx_uint_t n, ngx_uint_t word)
{
    ngx_uint_t  i, from;

    from = n;

    if (2 * (n + 1) > t->size) {
        t->size = t->size ? 2 * t->size : 64;
        t->slots = ngx_pcalloc(cf->pool, t->size * sizeof(uint32_t));
        if (t->slots == NULL) {
            return NGX_ERROR;
        }

        from = 0;
    }

    for (i = from; i <= n; i++) {
        ngx_http_canary_names_put(t, i, word ? &ro[i].word : &ro[i].name);
    }

    return NGX_OK;
}


static void
ngx_http_canary_names_put(ngx_http_canary_names_t *t, ngx_uint_t n,
    ngx_str_t *key)
{
    ngx_uint_t  i, mask;

    mask = t->size - 1;

    for (i = ngx_hash_key(key->data, key->len) & mask;
         t->slots[i];
         i = (i + 1) & mask)
    {
        /* void */
    }

    t->slots[i] = n + 1;
}


/* '_' for every byte nginx would end a variable's name at; 1 if any */

static ngx_uint_t
ngx_http_canary_variable_word(u_char *p, size_t len)
{
    u_char      c;
    ngx_uint_t  changed;

    changed = 0;

    for ( /* void */ ; len; p++, len--) {
        c = ngx_http_canary_word_char(*p);

        if (c != *p) {
            *p = c;
            changed = 1;
        }
    }

    return changed;
}


static u_char
ngx_http_canary_word_char(u_char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
        || (c >= '0' && c <= '9') || c == '_')
    {
        return c;
    }

    return '_';
}


static char *
ngx_http_canary_rollout(ngx_conf_t *cf, ngx_command_t *dummy, void *conf)
{
    ngx_http_canary_rollout_t *ro = conf;

    ngx_str_t                      *value;
    ngx_http_canary_rollout_cmd_t  *cmd;

    value = cf->args->elts;

    for (cmd = ngx_http_canary_rollout_cmds; cmd->name.len; cmd++) {

        if (cmd->name.len != value[0].len
            || ngx_strncmp(cmd->name.data, value[0].data, value[0].len) != 0)
        {
            continue;
        }

        if (cf->args->nelts - 1 < cmd->min_args
            || cf->args->nelts - 1 > cmd->max_args)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid number of arguments in \"%V\" "
                               "of canary_rollout \"%V\"", &value[0],
                               &ro->name);
            return NGX_CONF_ERROR;
        }

        return cmd->set(cf, ro);
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "unknown directive \"%V\" in canary_rollout \"%V\"",
                       &value[0], &ro->name);

    return NGX_CONF_ERROR;
}


static char *
ngx_http_canary_set_key(ngx_conf_t *cf, ngx_http_canary_rollout_t *ro)
{
    ngx_str_t                *value;
    ngx_uint_t                i;
    ngx_http_canary_value_t  *kv;

    if (ro->keys.nelts) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"key\" is duplicate");
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {
        kv = ngx_array_push(&ro->keys);
        if (kv == NULL) {
            return NGX_CONF_ERROR;
        }

        if (ngx_http_canary_compile_value(cf, &value[i], kv)
            != NGX_CONF_OK)
        {
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_canary_set_stable(ngx_conf_t *cf, ngx_http_canary_rollout_t *ro)
{
    ngx_str_t  *value;

    value = cf->args->elts;

    if (ro->variants[NGX_HTTP_CANARY_STABLE].upstream.len) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"stable\" is duplicate");
        return NGX_CONF_ERROR;
    }

    if (value[1].len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "empty \"stable\" upstream");
        return NGX_CONF_ERROR;
    }

    ro->variants[NGX_HTTP_CANARY_STABLE].upstream = value[1];

    return NGX_CONF_OK;
}


/* "canary UPSTREAM" is "variant canary UPSTREAM weight=1" */

static char *
ngx_http_canary_set_canary(ngx_conf_t *cf, ngx_http_canary_rollout_t *ro)
{
    ngx_str_t  *value, name;

    value = cf->args->elts;

    if (ngx_http_canary_find_arm(ro, (u_char *) "canary", 6) != NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"canary\" is duplicate");
        return NGX_CONF_ERROR;
    }

    ngx_str_set(&name, "canary");

    return ngx_http_canary_add_arm(cf, ro, &name, &value[1], 1);
}


/* variant NAME UPSTREAM [weight=N] */

static char *
ngx_http_canary_set_variant(ngx_conf_t *cf, ngx_http_canary_rollout_t *ro)
{
    ngx_int_t   weight;
    ngx_str_t  *value;

    value = cf->args->elts;

    weight = 1;

    if (cf->args->nelts == 4) {
        if (value[3].len <= 7
            || ngx_strncmp(value[3].data, "weight=", 7) != 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\" of variant "
                               "\"%V\", it must be \"weight=<n>\"",
                               &value[3], &value[1]);
            return NGX_CONF_ERROR;
        }

        weight = ngx_atoi(value[3].data + 7, value[3].len - 7);

        if (weight == NGX_ERROR || weight > NGX_HTTP_CANARY_MAX_WEIGHT) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid weight \"%V\" of variant \"%V\", "
                               "it must be 0..%d", &value[3], &value[1],
                               NGX_HTTP_CANARY_MAX_WEIGHT);
            return NGX_CONF_ERROR;
        }
    }

    if (ngx_http_canary_check_name(&value[1]) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid variant name \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (value[1].len == 6 && ngx_strncmp(value[1].data, "stable", 6) == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "variant name \"stable\" is reserved for the "
                           "users outside the experiment");
        return NGX_CONF_ERROR;
    }

    if (ngx_http_canary_find_arm(ro, value[1].data, value[1].len)
        != NGX_ERROR)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "duplicate variant \"%V\" in canary_rollout "
                           "\"%V\"", &value[1], &ro->name);
        return NGX_CONF_ERROR;
    }

    if (ngx_http_canary_add_arm(cf, ro, &value[1], &value[2], weight)
        != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    /* its upstream is checked once every upstream{} is known */

    ro->variants[ro->nvariants - 1].file = cf->conf_file->file.name;
    ro->variants[ro->nvariants - 1].line = cf->conf_file->line;

    return NGX_CONF_OK;
}


static char *
ngx_http_canary_add_arm(ngx_conf_t *cf, ngx_http_canary_rollout_t *ro,
    ngx_str_t *name, ngx_str_t *upstream, ngx_uint_t weight)
{
    ngx_http_canary_variant_t  *var;

    if (ro->narms == NGX_HTTP_CANARY_MAX_ARMS) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "too many variants in canary_rollout \"%V\", "
                           "at most %d", &ro->name,
                           NGX_HTTP_CANARY_MAX_ARMS);
        return NGX_CONF_ERROR;
    }

    if (upstream->len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "empty upstream of variant \"%V\"", name);
        return NGX_CONF_ERROR;
    }

    var = &ro->variants[ro->nvariants++];
    ro->narms++;

    var->name = *name;
    var->upstream = *upstream;
    var->weight = weight;

    return NGX_CONF_OK;
}


/*
 * A rollout's or a variant's name: printable ASCII without a space, a
 * double quote or a backslash, as they appear in logs and labels.
 */

static ngx_int_t
ngx_http_canary_check_name(ngx_str_t *name)
{
    ngx_uint_t  i;

    for (i = 0; i < name->len; i++) {
        if (name->data[i] <= ' ' || name->data[i] == '"'
            || name->data[i] == '\\' || name->data[i] >= 0x7f)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static char *
ngx_http_canary_set_percent(ngx_conf_t *cf, ngx_http_canary_rollout_t *ro)
{
    return ngx_http_canary_set_share(cf, ro, &ro->percent);
}


/* "shadow <percent>": the default share of shadow traffic */

static char *
ngx_http_canary_set_shadow(ngx_conf_t *cf, ngx_http_canary_rollout_t *ro)
{
    return ngx_http_canary_set_share(cf, ro, &ro->shadow);
}


/* "percent" and "shadow": a share in hundredths of a percent */

static char *
ngx_http_canary_set_share(ngx_conf_t *cf, ngx_http_canary_rollout_t *ro,
    ngx_uint_t *share)
{
    uint32_t    n;
    ngx_str_t  *value;

    value = cf->args->elts;

    if (*share != NGX_CONF_UNSET_UINT) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"%V\" is duplicate",
                           &value[0]);
        return NGX_CONF_ERROR;
    }

    if (ngx_http_canary_parse_percent(value[1].data, value[1].len, &n) != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid %V \"%V\" in canary_rollout \"%V\", "
                           "it must be 0..100 with at most two decimals",
                           &value[0], &value[1], &ro->name);
        return NGX_CONF_ERROR;
    }

    *share = n;

    return NGX_CONF_OK;
}


static char *
ngx_http_canary_set_salt(ngx_conf_t *cf, ngx_http_canary_rollout_t *ro)
{
    ngx_str_t  *value;

    value = cf->args->elts;

    if (ro->salt.data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"salt\" is duplicate");
        return NGX_CONF_ERROR;
    }

    ro->salt = value[1];

    return NGX_CONF_OK;
}


static char *
ngx_http_canary_set_hash(ngx_conf_t *cf, ngx_http_canary_rollout_t *ro)
{
    ngx_str_t  *value;

    value = cf->args->elts;

    if (ro->hash != NGX_CONF_UNSET_UINT) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"hash\" is duplicate");
        return NGX_CONF_ERROR;
    }

    if (value[1].len == 7
        && ngx_strncmp(value[1].data, "murmur3", 7) == 0)
    {
        ro->hash = NGX_HTTP_CANARY_HASH_MURMUR3;

    } else if (value[1].len == 7
               && ngx_strncmp(value[1].data, "unleash", 7) == 0)
    {
        ro->hash = NGX_HTTP_CANARY_HASH_UNLEASH;

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid hash \"%V\", it must be "
                           "\"murmur3\" or \"unleash\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_canary_set_override(ngx_conf_t *cf, ngx_http_canary_rollout_t *ro)
{
    ngx_str_t  *value;

    value = cf->args->elts;

    if (ro->override.set) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"override\" is duplicate");
        return NGX_CONF_ERROR;
    }

    return ngx_http_canary_compile_value(cf, &value[1], &ro->override);
}


static char *
ngx_http_canary_set_segment(ngx_conf_t *cf, ngx_http_canary_rollout_t *ro)
{
    ngx_str_t  *value;

    value = cf->args->elts;

    if (ro->segment.set) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"segment\" is duplicate");
        return NGX_CONF_ERROR;
    }

    return ngx_http_canary_compile_value(cf, &value[1], &ro->segment);
}


static char *
ngx_http_canary_set_match(ngx_conf_t *cf, ngx_http_canary_rollout_t *ro)
{
    u_char                errstr[NGX_MAX_CONF_ERRSTR];
    ngx_str_t            *value;
    ngx_regex_compile_t   rc;

    value = cf->args->elts;

    if (ro->match) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"match\" is duplicate");
        return NGX_CONF_ERROR;
    }

    ro->match = ngx_pcalloc(cf->pool, sizeof(ngx_http_canary_match_t));
    if (ro->match == NULL) {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_canary_compile_value(cf, &value[1], &ro->match->value)
        != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&rc, sizeof(ngx_regex_compile_t));

    rc.pattern = value[2];
    rc.pool = cf->pool;
    rc.err.len = NGX_MAX_CONF_ERRSTR;
    rc.err.data = errstr;

    if (rc.pattern.len > 1 && rc.pattern.data[0] == '~'
        && rc.pattern.data[1] == '*')
    {
        rc.pattern.data += 2;
        rc.pattern.len -= 2;
        rc.options = NGX_REGEX_CASELESS;

    } else if (rc.pattern.len > 0 && rc.pattern.data[0] == '~') {
        rc.pattern.data++;
        rc.pattern.len--;

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid match \"%V\", it must begin "
                           "with \"~\" or \"~*\"", &value[2]);
        return NGX_CONF_ERROR;
    }

    if (rc.pattern.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "empty match regex");
        return NGX_CONF_ERROR;
    }

    if (ngx_regex_compile(&rc) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "%V", &rc.err);
        return NGX_CONF_ERROR;
    }

    ro->match->regex = rc.regex;

    return NGX_CONF_OK;
}


static char *
ngx_http_canary_set_requires(ngx_conf_t *cf, ngx_http_canary_rollout_t *ro)
{
    ngx_str_t                  *value;
    ngx_uint_t                  i;
    ngx_http_canary_require_t  *req;

    value = cf->args->elts;

    /* resolved in postconfiguration: the rollouts may come later */

    for (i = 1; i < cf->args->nelts; i++) {
        req = ngx_array_push(&ro->requires);
        if (req == NULL) {
            return NGX_CONF_ERROR;
        }

        req->name = value[i];
        req->file = cf->conf_file->file.name;
        req->line = cf->conf_file->line;
    }

    return NGX_CONF_OK;
}


/*
 * A value that is exactly one variable ("$cookie_uid") is read by index,
 * without the allocation of a complex value; anything else is compiled.
 */

static char *
ngx_http_canary_compile_value(ngx_conf_t *cf, ngx_str_t *src,
    ngx_http_canary_value_t *v)
{
    ngx_str_t                          name;
    ngx_uint_t                         i;
    ngx_http_compile_complex_value_t   ccv;

    /* the "key" values come from ngx_array_push(): not zeroed */

    v->index = NGX_ERROR;
    v->cv = NULL;
    v->set = 1;

    if (src->len > 1 && src->data[0] == '$') {
        name.data = src->data + 1;
        name.len = src->len - 1;

        for (i = 0; i < name.len; i++) {
            if (!((name.data[i] >= 'a' && name.data[i] <= 'z')
                  || (name.data[i] >= 'A' && name.data[i] <= 'Z')
                  || (name.data[i] >= '0' && name.data[i] <= '9')
                  || name.data[i] == '_'))
            {
                break;
            }
        }

        if (i == name.len) {
            v->index = ngx_http_get_variable_index(cf, &name);
            if (v->index == NGX_ERROR) {
                return NGX_CONF_ERROR;
            }

            return NGX_CONF_OK;
        }
    }

    v->cv = ngx_palloc(cf->pool, sizeof(ngx_http_complex_value_t));
    if (v->cv == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

    ccv.cf = cf;
    ccv.value = src;
    ccv.complex_value = v->cv;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


ngx_int_t
ngx_http_canary_find(ngx_http_canary_main_conf_t *cmcf, ngx_str_t *name)
{
    return ngx_http_canary_names_find(&cmcf->names, cmcf->rollouts.elts, 0,
                                      name);
}


/* an arm's variant (1 ..) by its name, or NGX_ERROR */

ngx_int_t
ngx_http_canary_find_arm(ngx_http_canary_rollout_t *ro, u_char *name,
    size_t len)
{
    ngx_uint_t  v;

    for (v = 1; v <= ro->narms; v++) {
        if (ro->variants[v].name.len == len
            && ngx_strncmp(ro->variants[v].name.data, name, len) == 0)
        {
            return v;
        }
    }

    return NGX_ERROR;
}
