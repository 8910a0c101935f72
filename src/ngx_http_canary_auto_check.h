
/*
 * Copyright (C) ngx_http_canary_module authors
 */


#ifndef _NGX_HTTP_CANARY_AUTO_CHECK_H_INCLUDED_
#define _NGX_HTTP_CANARY_AUTO_CHECK_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_canary_auto_fields.h"


#if (__GNUC__ >= 4)
#pragma GCC visibility push(hidden)
#endif


/*
 * The leader's checks of interval "judge" ("auto ... check=<url>"): every
 * URL requested at once; when the last one has answered, ar->check_for is
 * "judge", and ar->check_failed and ar->check_reason say how they went.
 */
void ngx_http_canary_auto_checks(ngx_http_canary_auto_rollout_t *ar,
    uint64_t judge);

/* the checks' client, once the controller is gone */
void ngx_http_canary_auto_checks_stop(ngx_http_canary_auto_t *ctl);


#if (__GNUC__ >= 4)
#pragma GCC visibility pop
#endif


#endif /* _NGX_HTTP_CANARY_AUTO_CHECK_H_INCLUDED_ */
