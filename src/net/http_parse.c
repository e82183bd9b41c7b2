/* SPDX-License-Identifier: MIT */
/* HTTP/1.1 request framing: http-parser callbacks build each request (path decoded,
 * headers lower-cased, limits on header and body bytes) and queue it on its
 * connection. */
#include "net/http_int.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"
#include "core/err.h"

void edge__http_req_free(struct edge_http_req *r)
{
    if (r == NULL) {
        return;
    }
    for (size_t i = 0; i < r->n_headers; i++) {
        edge_free(r->headers[i].name);
        edge_free(r->headers[i].value);
    }
    edge_free(r->headers);
    edge_free(r->path);
    edge_free(r->query);
    edge_buf_free(&r->body);
    edge_free(r);
}

const char *edge_http_header(const struct edge_http_req *req, const char *name)
{
    for (size_t i = 0; i < req->n_headers; i++) {
        if (strcmp(req->headers[i].name, name) == 0) {
            return req->headers[i].value;
        }
    }
    return NULL;
}

bool edge_http_list_has(const char *list, const char *token)
{
    size_t tl = strlen(token);
    for (const char *p = list; p != NULL && *p;) {
        while (*p == ' ' || *p == ',') p++;
        const char *e = p;
        while (*e && *e != ',' && *e != ' ') e++;
        if ((size_t)(e - p) == tl && strncmp(p, token, tl) == 0) return true;
        p = e;
    }
    return false;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Percent-decode a path; rejects encoded NUL and bad escapes. */
static char *decode_path(const char *p, size_t n)
{
    char *d = edge_malloc(n + 1);
    if (d == NULL) {
        return NULL;
    }
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '%') {
            int hi = i + 1 < n ? hexval((unsigned char)p[i + 1]) : -1;
            int lo = i + 2 < n ? hexval((unsigned char)p[i + 2]) : -1;
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                edge_free(d);
                return NULL;
            }
            d[o++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            d[o++] = p[i];
        }
    }
    d[o] = '\0';
    return d;
}

/* ---------------------------------------------------------------------------------- */
/* http-parser callbacks                                                              */
/* ---------------------------------------------------------------------------------- */

static int flush_header(struct edge_http_conn *c)
{
    struct edge_http_req *r = c->cur;
    if (c->hname.len == 0) {
        return 0;
    }
    if (r->n_headers >= 100) {
        c->fail_status = 431;
        return -1;
    }
    struct edge_http_header *hs = edge_realloc(r->headers, (r->n_headers + 1) * sizeof(*hs));
    if (hs == NULL) {
        return -1;
    }
    r->headers = hs;
    for (size_t i = 0; i < c->hname.len; i++) {
        c->hname.data[i] = (char)((c->hname.data[i] >= 'A' && c->hname.data[i] <= 'Z')
                                      ? c->hname.data[i] + 32
                                      : c->hname.data[i]);
    }
    char *name = edge_strndup(c->hname.data, c->hname.len);
    char *val = edge_strndup(c->hval.data ? c->hval.data : "", c->hval.len);
    if (name == NULL || val == NULL) {
        edge_free(name);
        edge_free(val);
        return -1;
    }
    hs[r->n_headers].name = name;
    hs[r->n_headers].value = val;
    r->n_headers++;
    edge_buf_reset(&c->hname);
    edge_buf_reset(&c->hval);
    return 0;
}

static int on_message_begin(http_parser *p)
{
    struct edge_http_conn *c = p->data;
    edge__http_req_free(c->cur);
    c->cur = edge_calloc(1, sizeof(*c->cur));
    if (c->cur == NULL) {
        return -1;
    }
    c->cur->start_ns = uv_hrtime();
    c->cur_start_ms = uv_now(c->tcp.loop);
    edge_buf_init(&c->cur->body, c->s->limits.max_body_bytes);
    edge_buf_reset(&c->url);
    edge_buf_reset(&c->hname);
    edge_buf_reset(&c->hval);
    c->header_bytes = 0;
    c->in_value = false;
    return 0;
}

static int count_header_bytes(struct edge_http_conn *c, size_t n)
{
    c->header_bytes += n;
    if (c->header_bytes > c->s->limits.max_header_bytes) {
        c->fail_status = 431;
        return -1;
    }
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t n)
{
    struct edge_http_conn *c = p->data;
    if (count_header_bytes(c, n) != 0 || edge_buf_append(&c->url, at, n) != EDGE_OK) {
        c->parser.data = c;
        return -1;
    }
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t n)
{
    struct edge_http_conn *c = p->data;
    if (count_header_bytes(c, n) != 0) {
        return -1;
    }
    if (c->in_value) {
        if (flush_header(c) != 0) {
            return -1;
        }
        c->in_value = false;
    }
    return edge_buf_append(&c->hname, at, n) == EDGE_OK ? 0 : -1;
}

static int on_header_value(http_parser *p, const char *at, size_t n)
{
    struct edge_http_conn *c = p->data;
    if (count_header_bytes(c, n) != 0) {
        return -1;
    }
    c->in_value = true;
    return edge_buf_append(&c->hval, at, n) == EDGE_OK ? 0 : -1;
}

static int on_headers_complete(http_parser *p)
{
    struct edge_http_conn *c = p->data;
    if (c->in_value && flush_header(c) != 0) {
        return -1;
    }
    c->in_value = false;
    /* Refuse a declared oversized body before reading any of it. */
    if ((p->flags & F_CONTENTLENGTH) && p->content_length != ULLONG_MAX &&
        p->content_length > c->s->limits.max_body_bytes) {
        c->fail_status = 413;
        return -1;
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t n)
{
    struct edge_http_conn *c = p->data;
    if (edge_buf_append(&c->cur->body, at, n) != EDGE_OK) {
        c->fail_status = 413;
        return -1;
    }
    return 0;
}

static int on_message_complete(http_parser *p)
{
    struct edge_http_conn *c = p->data;
    struct edge_http_req *r = c->cur;
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (http_parser_parse_url(c->url.data ? c->url.data : "", c->url.len, p->method == HTTP_CONNECT, &u) != 0 ||
        !(u.field_set & (1 << UF_PATH))) {
        return -1;
    }
    r->path = decode_path(c->url.data + u.field_data[UF_PATH].off, u.field_data[UF_PATH].len);
    if (r->path == NULL) {
        return -1;
    }
    if (u.field_set & (1 << UF_QUERY)) {
        r->query = edge_strndup(c->url.data + u.field_data[UF_QUERY].off, u.field_data[UF_QUERY].len);
        if (r->query == NULL) {
            return -1;
        }
    }
    r->method = p->method;
    r->keep_alive = http_should_keep_alive(p) != 0;
    /* Only a WebSocket upgrade is taken; any other (h2c...) is ignored, as RFC 9110
     * 7.8 allows, and parsing goes on with the next request. */
    const char *up = edge_http_header(r, "upgrade");
    r->upgrade = p->upgrade != 0 && up != NULL && strcasecmp(up, "websocket") == 0;
    if (p->upgrade && !r->upgrade) {
        c->reparse = true;
    }
    c->cur = NULL;
    if (c->q_tail != NULL) {
        c->q_tail->next = r;
    } else {
        c->q_head = r;
    }
    c->q_tail = r;
    c->q_len++;
    /* Stop after an upgrade request: what follows is WebSocket data, not HTTP. */
    if (r->upgrade) {
        http_parser_pause(p, 1);
    }
    return 0;
}

const http_parser_settings edge__http_parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};
