
/*
 * Generated from src/ngx_http_canary_dashboard.html by
 * tools/dashboard2c.pl: edit the page, then run `make`.
 */


#ifndef _NGX_HTTP_CANARY_DASHBOARD_H_INCLUDED_
#define _NGX_HTTP_CANARY_DASHBOARD_H_INCLUDED_


static const char  ngx_http_canary_dashboard_head[] =
    "<!DOCTYPE html>\n"
    "<html><head><meta charset=\"utf-8\"><title>canary</title></head>\n"
    "<body><table id=\"rows\">\n";


static const char  ngx_http_canary_dashboard_tail[] =
    "</table></body></html>\n";


#endif /* _NGX_HTTP_CANARY_DASHBOARD_H_INCLUDED_ */
