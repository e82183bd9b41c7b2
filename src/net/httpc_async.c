/* SPDX-License-Identifier: MIT */
/* Asynchronous HTTP/1.1 client on a libuv loop; see httpc_async.h for the contract.
 *
 * DESIGN: a request is a timer (its deadline) plus the bytes to send; a connection is a
 * TCP handle, an idle timer and an http-parser in response mode (the parser the server
 * uses, so framing, chunked bodies and keep-alive follow the same code). The pool hands
 * the oldest queued request to an idle connection, or opens a connection while fewer
 * than max_conns are open. The write buffer lives in the connection, not the request,
 * so a request that times out can go at once while its write is still being cancelled.
 * The pool is freed when its last handle (request timers, connection handles) is
 * closed. */
#include "net/httpc_async.h"

#include <ctype.h>
#include <http_parser.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/err.h"
#include "core/log.h"
#include "net/tls.h"

struct hconn;

struct hreq {
    struct edge_httpca *p;
    struct hconn *conn; /* while sent on a connection */
    struct hreq *next;  /* the queue */
    struct hreq *all_prev, *all_next; /* every request not yet finished */
    uv_timer_t timer;
    char *wire;
    size_t wire_len;
    size_t max_body;
    edge_httpca_cb cb;
    void *ud;
    struct edge_httpc_resp resp;
    int fail_rv; /* an error found before the callback may run: reported from the timer */
    bool done;
};

struct hconn {
    uv_tcp_t tcp;
    uv_timer_t idle;
    uv_connect_t connect_req;
    uv_write_t write_req;
    struct edge_buf wbuf;
    struct edge_httpca *p;
    struct hconn *prev, *next;
    http_parser parser;
    struct hreq *cur;
    struct edge_buf hname, hval;
    bool in_value;
    size_t head_bytes;
    int parse_rv;  /* why a parser callback stopped: EDGE_ETOOBIG, EDGE_EPROTO */
    bool complete; /* the response to cur has ended */
    bool connected, writing, closing;
    bool refused; /* the connect failed: nothing of the request was sent */
    int handles;
    struct edge_tls *tls; /* with a TLS pool; `connected` once its handshake is done */
    int tls_writes;       /* encrypted writes in flight (`writing` while a request's are) */
};

/* One write of a TLS session's records. */
struct tls_write {
    uv_write_t req;
    struct hconn *c;
    char data[];
};

struct edge_httpca {
    uv_loop_t *loop;
    struct sockaddr_storage addr;
    char hostport[300];
    int max_conns;
    uint64_t idle_ms;
    struct hconn *conns;
    int n_conns;
    struct hreq *q_head, *q_tail;
    struct hreq *all;
    int pending; /* queued or in flight */
    int handles; /* open handles of requests and connections */
    bool closing;
    struct edge_tls_ctx *tls; /* edge_httpca_set_tls, borrowed; NULL = plain */
    char tls_name[256];       /* the name the server's certificate must carry */
};

static void pump(struct edge_httpca *p);
static void conn_close(struct hconn *c);

static void pool_maybe_free(struct edge_httpca *p)
{
    if (p->closing && p->handles == 0) edge_free(p);
}

/* ---------------------------------------------------------------------------------- */
/* Requests                                                                           */
/* ---------------------------------------------------------------------------------- */

static void req_closed(uv_handle_t *h)
{
    struct hreq *r = h->data;
    struct edge_httpca *p = r->p;
    edge_httpc_resp_free(&r->resp);
    edge_free(r->wire);
    edge_free(r);
    p->handles--;
    pool_maybe_free(p);
}

static void queue_remove(struct edge_httpca *p, struct hreq *r)
{
    struct hreq **pp = &p->q_head, *prev = NULL;
    while (*pp != NULL && *pp != r) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (*pp == NULL) return;
    *pp = r->next;
    if (p->q_tail == r) p->q_tail = prev;
    r->next = NULL;
}

/* The one place a request ends: its callback runs, then its timer closes. */
static void finish(struct hreq *r, int rv)
{
    if (r->done) return;
    r->done = true;
    struct edge_httpca *p = r->p;
    if (r->conn != NULL) {
        if (r->conn->cur == r) r->conn->cur = NULL;
        r->conn = NULL;
    } else {
        queue_remove(p, r);
    }
    p->pending--;
    if (r->all_prev) r->all_prev->all_next = r->all_next; else p->all = r->all_next;
    if (r->all_next) r->all_next->all_prev = r->all_prev;
    uv_timer_stop(&r->timer);
    /* Callers treat the body as a C string even when it is empty. */
    if (rv == EDGE_OK) rv = edge_buf_append(&r->resp.body, "", 0);
    r->cb(r->ud, rv, &r->resp);
    uv_close((uv_handle_t *)&r->timer, req_closed);
}

static void on_req_timer(uv_timer_t *t)
{
    struct hreq *r = t->data;
    struct hconn *c = r->conn;
    finish(r, r->fail_rv != EDGE_OK ? r->fail_rv : EDGE_ETIMEDOUT);
    /* The answer may still come on that connection: it cannot carry another request. */
    if (c != NULL) conn_close(c);
    pump(r->p);
}

/* Fail r from a place that may be inside edge_httpca_request: report it from the loop. */
static void fail_later(struct hreq *r, int rv)
{
    r->fail_rv = rv;
    uv_timer_start(&r->timer, on_req_timer, 0, 0);
}

/* ---------------------------------------------------------------------------------- */
/* Response parsing (http-parser, response mode)                                      */
/* ---------------------------------------------------------------------------------- */

static int head_add(struct hconn *c, size_t n)
{
    c->head_bytes += n;
    if (c->head_bytes > EDGE_HTTPC_MAX_HEAD) {
        c->parse_rv = EDGE_ETOOBIG;
        return -1;
    }
    return 0;
}

static void copy_value(char *dst, size_t cap, const char *v, size_t n, bool media_type)
{
    while (n > 0 && (*v == ' ' || *v == '\t')) v++, n--;
    if (media_type) {
        size_t k = 0;
        while (k < n && v[k] != ';' && v[k] != ' ') k++;
        n = k;
    }
    if (n >= cap) n = cap - 1;
    for (size_t i = 0; i < n; i++) dst[i] = media_type ? (char)tolower((unsigned char)v[i]) : v[i];
    dst[n] = '\0';
}

static void flush_header(struct hconn *c)
{
    if (c->cur == NULL || c->hname.len == 0) goto out;
    edge_buf_append(&c->hname, "", 0);
    const char *name = c->hname.data;
    const char *v = c->hval.data ? c->hval.data : "";
    if (strcasecmp(name, "content-type") == 0) {
        copy_value(c->cur->resp.content_type, sizeof(c->cur->resp.content_type), v, c->hval.len, true);
    } else if (strcasecmp(name, "x-edge-bookmark") == 0) {
        copy_value(c->cur->resp.bookmark, sizeof(c->cur->resp.bookmark), v, c->hval.len, false);
    }
out:
    edge_buf_reset(&c->hname);
    edge_buf_reset(&c->hval);
    c->in_value = false;
}

static int on_header_field(http_parser *hp, const char *at, size_t n)
{
    struct hconn *c = hp->data;
    if (head_add(c, n) != 0) return -1;
    if (c->in_value) flush_header(c);
    return edge_buf_append(&c->hname, at, n) == EDGE_OK ? 0 : -1;
}

static int on_header_value(http_parser *hp, const char *at, size_t n)
{
    struct hconn *c = hp->data;
    if (head_add(c, n) != 0) return -1;
    c->in_value = true;
    return edge_buf_append(&c->hval, at, n) == EDGE_OK ? 0 : -1;
}

static int on_headers_complete(http_parser *hp)
{
    struct hconn *c = hp->data;
    if (c->in_value) flush_header(c);
    if (c->cur != NULL) c->cur->resp.status = (int)hp->status_code;
    return 0;
}

static int on_body(http_parser *hp, const char *at, size_t n)
{
    struct hconn *c = hp->data;
    if (c->cur == NULL) return 0;
    int rv = edge_buf_append(&c->cur->resp.body, at, n);
    if (rv != EDGE_OK) {
        c->parse_rv = rv;
        return -1;
    }
    return 0;
}

static int on_message_begin(http_parser *hp)
{
    struct hconn *c = hp->data;
    c->head_bytes = 0;
    return 0;
}

static int on_message_complete(http_parser *hp)
{
    struct hconn *c = hp->data;
    if (hp->status_code >= 100 && hp->status_code < 200) return 0; /* an interim answer */
    c->complete = true;
    http_parser_pause(hp, 1); /* one response per request: anything after it is an error */
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---------------------------------------------------------------------------------- */
/* Connections                                                                        */
/* ---------------------------------------------------------------------------------- */

static void conn_handle_closed(uv_handle_t *h)
{
    struct hconn *c = h->data;
    if (--c->handles > 0) return;
    struct edge_httpca *p = c->p;
    edge_tls_free(c->tls);
    edge_buf_free(&c->wbuf);
    edge_buf_free(&c->hname);
    edge_buf_free(&c->hval);
    edge_free(c);
    p->handles--;
    pool_maybe_free(p);
}

static void conn_close(struct hconn *c)
{
    if (c->closing) return;
    c->closing = true;
    struct edge_httpca *p = c->p;
    if (c->prev) c->prev->next = c->next; else p->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    p->n_conns--;
    if (c->cur != NULL) {
        /* Reported from the loop: this may run inside edge_httpca_request. */
        struct hreq *r = c->cur;
        c->cur = NULL;
        r->conn = NULL;
        fail_later(r, c->refused ? EDGE_ECONNREFUSED : EDGE_EIO);
    }
    uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
    uv_close((uv_handle_t *)&c->idle, conn_handle_closed);
}

static void on_idle(uv_timer_t *t)
{
    struct hconn *c = t->data;
    if (c->cur == NULL) conn_close(c);
}

static void on_write(uv_write_t *w, int status)
{
    struct hconn *c = w->data;
    c->writing = false;
    edge_buf_reset(&c->wbuf);
    if (c->closing) return;
    if (status < 0) {
        conn_close(c); /* fails cur with EDGE_EIO */
        pump(c->p);
    } else if (c->cur == NULL) {
        pump(c->p); /* answered before the request was all sent: free for the next */
    }
}

static void on_tls_write(uv_write_t *w, int status)
{
    struct tls_write *tw = (struct tls_write *)w;
    struct hconn *c = tw->c;
    edge_free(tw);
    c->tls_writes--;
    if (c->closing) return;
    if (status < 0) {
        conn_close(c); /* fails cur with EDGE_EIO */
        pump(c->p);
    } else if (c->tls_writes == 0 && c->writing) {
        c->writing = false;
        if (c->cur == NULL) pump(c->p);
    }
}

/* Send what the TLS session produced (handshake, records of a request). */
static int tls_send(struct hconn *c)
{
    size_t n = edge_tls_out_pending(c->tls);
    if (n == 0) return EDGE_OK;
    struct tls_write *tw = edge_malloc(sizeof(*tw) + n);
    if (tw == NULL) {
        conn_close(c);
        return EDGE_ENOMEM;
    }
    tw->c = c;
    uv_buf_t b = uv_buf_init(tw->data, (unsigned)edge_tls_out_take(c->tls, tw->data, n));
    if (uv_write(&tw->req, (uv_stream_t *)&c->tcp, &b, 1, on_tls_write) != 0) {
        edge_free(tw);
        conn_close(c);
        return EDGE_EIO;
    }
    c->tls_writes++;
    return EDGE_OK;
}

/* Ready the parser for the answer to the request about to be sent. */
static void response_reset(struct hconn *c)
{
    http_parser_init(&c->parser, HTTP_RESPONSE);
    c->parser.data = c;
    c->complete = false;
    c->parse_rv = EDGE_OK;
    c->in_value = false;
    edge_buf_reset(&c->hname);
    edge_buf_reset(&c->hval);
}

static void send_cur(struct hconn *c)
{
    struct hreq *r = c->cur;
    edge_buf_reset(&c->wbuf);
    if (c->tls != NULL) {
        response_reset(c);
        if (edge_tls_write(c->tls, r->wire, r->wire_len) != EDGE_OK) {
            conn_close(c);
            return;
        }
        c->writing = true;
        if (tls_send(c) == EDGE_OK && c->tls_writes == 0) c->writing = false;
        return;
    }
    if (edge_buf_append(&c->wbuf, r->wire, r->wire_len) != EDGE_OK) {
        fail_later(r, EDGE_ENOMEM); /* its timer also closes this connection */
        return;
    }
    response_reset(c);
    uv_buf_t b = uv_buf_init(c->wbuf.data, (unsigned)c->wbuf.len);
    c->write_req.data = c;
    c->writing = true;
    if (uv_write(&c->write_req, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
        c->writing = false;
        conn_close(c);
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    static __thread char slab[64 * 1024]; /* consumed synchronously in on_read */
    *buf = uv_buf_init(slab, sizeof(slab));
}

/* The server closed (eof: cleanly) or the connection failed. */
static void conn_end(struct hconn *c, bool eof)
{
    struct edge_httpca *p = c->p;
    if (c->cur == NULL || !c->connected) {
        c->refused = !c->connected; /* in its TLS handshake: nothing of the request was sent */
        conn_close(c);
        pump(p);
        return;
    }
    /* EOF ends a body that has no length; anything else is an early close. */
    if (eof) http_parser_execute(&c->parser, &parser_settings, NULL, 0);
    if (c->complete) {
        finish(c->cur, EDGE_OK);
    }
    conn_close(c);
    pump(p);
}

static void conn_input(struct hconn *c, const char *data, size_t nread);
static void after_connect(struct hconn *c);

/* Records from the server: the handshake first, then responses as plaintext. */
static void tls_input(struct hconn *c, const char *data, size_t len)
{
    static __thread char plain[64 * 1024]; /* consumed synchronously below */
    if (edge_tls_feed(c->tls, data, len) != EDGE_OK) {
        conn_end(c, false);
        return;
    }
    if (!c->connected) {
        int hs = edge_tls_handshake(c->tls);
        if (tls_send(c) != EDGE_OK) return;
        if (hs == EDGE_EPROTO) {
            EDGE_LOG(EDGE_LOG_WARN, EDGE_MOD_NET, "https %s: %s", c->p->hostport, edge_tls_error(c->tls));
            c->refused = true; /* nothing of the request was sent */
            conn_close(c);
            pump(c->p);
            return;
        }
        if (hs != EDGE_OK) return;
        c->connected = true;
        after_connect(c);
        if (c->closing) return;
    }
    /* Bounded by what was fed: each pass takes decrypted bytes or ends. */
    for (int pass = 0; pass < 1 << 16 && !c->closing; pass++) {
        size_t got = 0;
        int rv = edge_tls_read(c->tls, plain, sizeof(plain), &got);
        if (rv == EDGE_ECLOSED) {
            conn_end(c, true);
            return;
        }
        if (rv != EDGE_OK) {
            if (c->cur != NULL) finish(c->cur, EDGE_EPROTO);
            conn_close(c);
            pump(c->p);
            return;
        }
        if (got == 0) break;
        conn_input(c, plain, got);
    }
    if (!c->closing) (void)tls_send(c);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct hconn *c = s->data;
    if (c->closing) return;
    if (nread == 0) return;
    if (nread < 0) {
        conn_end(c, nread == UV_EOF);
        return;
    }
    if (c->tls != NULL) {
        tls_input(c, buf->base, (size_t)nread);
    } else {
        conn_input(c, buf->base, (size_t)nread);
    }
}

/* Response bytes (read, or decrypted). */
static void conn_input(struct hconn *c, const char *data, size_t nread)
{
    struct edge_httpca *p = c->p;
    if (c->cur == NULL) {
        /* Idle: the server sent something unasked. Done. */
        conn_close(c);
        pump(p);
        return;
    }
    size_t used = http_parser_execute(&c->parser, &parser_settings, data, nread);
    if (c->complete) {
        bool keep = http_should_keep_alive(&c->parser) && used == (size_t)nread;
        finish(c->cur, EDGE_OK);
        if (!keep) {
            conn_close(c);
        } else {
            uv_timer_start(&c->idle, on_idle, p->idle_ms, 0);
        }
        pump(p);
        return;
    }
    if (HTTP_PARSER_ERRNO(&c->parser) != HPE_OK || used != (size_t)nread) {
        finish(c->cur, c->parse_rv != EDGE_OK ? c->parse_rv : EDGE_EPROTO);
        conn_close(c);
        pump(p);
    }
}

static void on_connect(uv_connect_t *cr, int status)
{
    struct hconn *c = cr->data;
    if (c->closing) return;
    if (status < 0 || uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
        c->refused = status < 0;
        conn_close(c); /* fails cur with EDGE_ECONNREFUSED (or EDGE_EIO) */
        pump(c->p);
        return;
    }
    if (c->p->tls != NULL) {
        /* Usable once the handshake is done (tls_input). */
        if (edge_tls_new(c->p->tls, c->p->tls_name, &c->tls) != EDGE_OK) {
            c->refused = true;
            conn_close(c);
            pump(c->p);
            return;
        }
        (void)edge_tls_handshake(c->tls); /* the ClientHello */
        (void)tls_send(c);
        return;
    }
    c->connected = true;
    after_connect(c);
}

static void after_connect(struct hconn *c)
{
    if (c->cur != NULL) {
        send_cur(c);
    } else {
        uv_timer_start(&c->idle, on_idle, c->p->idle_ms, 0);
        pump(c->p);
    }
}

static struct hconn *conn_open(struct edge_httpca *p)
{
    struct hconn *c = edge_calloc(1, sizeof(*c));
    if (c == NULL) return NULL;
    c->p = p;
    edge_buf_init(&c->wbuf, (size_t)1 << 31);
    edge_buf_init(&c->hname, EDGE_HTTPC_MAX_HEAD);
    edge_buf_init(&c->hval, EDGE_HTTPC_MAX_HEAD);
    uv_tcp_init(p->loop, &c->tcp);
    uv_timer_init(p->loop, &c->idle);
    c->tcp.data = c;
    c->idle.data = c;
    c->handles = 2;
    p->handles++;
    c->next = p->conns;
    if (p->conns) p->conns->prev = c;
    p->conns = c;
    p->n_conns++;
    uv_tcp_nodelay(&c->tcp, 1);
    c->connect_req.data = c;
    if (uv_tcp_connect(&c->connect_req, &c->tcp, (const struct sockaddr *)&p->addr, on_connect) != 0) {
        conn_close(c);
        return NULL;
    }
    return c;
}

/* Hand queued requests to idle connections, opening new ones up to the bound. */
static void pump(struct edge_httpca *p)
{
    while (p->q_head != NULL && !p->closing) {
        struct hconn *idle = NULL;
        for (struct hconn *c = p->conns; c != NULL; c = c->next) {
            if (c->connected && c->cur == NULL && !c->closing && !c->writing) {
                idle = c;
                break;
            }
        }
        bool fresh = false;
        if (idle == NULL) {
            if (p->n_conns >= p->max_conns) return;
            /* A connection still connecting takes the next request when it is up. */
            idle = conn_open(p);
            if (idle == NULL) {
                struct hreq *r = p->q_head;
                queue_remove(p, r);
                fail_later(r, EDGE_ECONNREFUSED);
                continue;
            }
            fresh = true;
        }
        struct hreq *r = p->q_head;
        queue_remove(p, r);
        idle->cur = r;
        r->conn = idle;
        if (!fresh) {
            uv_timer_stop(&idle->idle);
            send_cur(idle);
        }
    }
}

/* ---------------------------------------------------------------------------------- */
/* The pool                                                                           */
/* ---------------------------------------------------------------------------------- */

int edge_httpca_new(uv_loop_t *loop, const char *host, const char *port, int max_conns, uint64_t idle_ms,
                    struct edge_httpca **out)
{
    char *end = NULL;
    long pn = strtol(port, &end, 10);
    if (end == NULL || *end != '\0' || pn <= 0 || pn > 65535 || max_conns < 1) return EDGE_EINVAL;
    struct edge_httpca *p = edge_calloc(1, sizeof(*p));
    if (p == NULL) return EDGE_ENOMEM;
    const char *h = strcmp(host, "localhost") == 0 ? "127.0.0.1" : host;
    if (uv_ip4_addr(h, (int)pn, (struct sockaddr_in *)&p->addr) != 0 &&
        uv_ip6_addr(h, (int)pn, (struct sockaddr_in6 *)&p->addr) != 0) {
        edge_free(p);
        return EDGE_EINVAL;
    }
    snprintf(p->hostport, sizeof(p->hostport), strchr(host, ':') ? "[%s]:%s" : "%s:%s", host, port);
    p->loop = loop;
    p->max_conns = max_conns;
    p->idle_ms = idle_ms ? idle_ms : 1;
    *out = p;
    return EDGE_OK;
}

int edge_httpca_set_tls(struct edge_httpca *p, struct edge_tls_ctx *ctx, const char *name)
{
    if (strlen(name) >= sizeof(p->tls_name)) return EDGE_EINVAL;
    snprintf(p->tls_name, sizeof(p->tls_name), "%s", name);
    p->tls = ctx;
    return EDGE_OK;
}

int edge_httpca_request(struct edge_httpca *p, const char *method, const char *path, const char *extra_headers,
                        const void *body, size_t body_len, uint64_t timeout_ms, size_t max_body, edge_httpca_cb cb,
                        void *ud)
{
    if (p->closing) return EDGE_ECLOSED;
    struct hreq *r = edge_calloc(1, sizeof(*r));
    if (r == NULL) return EDGE_ENOMEM;
    struct edge_buf w;
    edge_buf_init(&w, (size_t)1 << 31);
    /* JSON unless the extra headers name the type (the router forwards protobuf bodies) */
    bool own_type = extra_headers != NULL &&
                    (strncasecmp(extra_headers, "content-type:", 13) == 0 || strcasestr(extra_headers, "\ncontent-type:"));
    int rv = edge_buf_printf(&w,
                             "%s %s HTTP/1.1\r\nHost: %s\r\n%sContent-Length: %zu\r\n%s\r\n", method, path,
                             p->hostport, own_type ? "" : "Content-Type: application/json\r\n", body_len,
                             extra_headers ? extra_headers : "");
    if (rv == EDGE_OK && body_len > 0) rv = edge_buf_append(&w, body, body_len);
    if (rv != EDGE_OK) {
        edge_buf_free(&w);
        edge_free(r);
        return EDGE_ENOMEM;
    }
    r->wire = edge_buf_steal(&w, &r->wire_len);
    r->p = p;
    r->max_body = max_body;
    r->cb = cb;
    r->ud = ud;
    edge_buf_init(&r->resp.body, max_body);
    uv_timer_init(p->loop, &r->timer);
    r->timer.data = r;
    p->handles++;
    p->pending++;
    r->all_next = p->all;
    if (p->all) p->all->all_prev = r;
    p->all = r;
    uv_timer_start(&r->timer, on_req_timer, timeout_ms, 0);
    if (p->q_tail) p->q_tail->next = r; else p->q_head = r;
    p->q_tail = r;
    pump(p);
    return EDGE_OK;
}

void edge_httpca_close(struct edge_httpca *p)
{
    if (p == NULL || p->closing) return;
    p->closing = true;
    while (p->all != NULL) finish(p->all, EDGE_ECLOSED);
    while (p->conns != NULL) conn_close(p->conns);
    pool_maybe_free(p);
}

void edge_httpca_stats(const struct edge_httpca *p, int *conns, int *pending)
{
    if (conns) *conns = p->n_conns;
    if (pending) *pending = p->pending;
}
