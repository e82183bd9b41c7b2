/* SPDX-License-Identifier: MIT */
/* HTTP/1.1 connections on a libuv loop.
 *
 * DESIGN
 * Bytes from the socket go through http-parser; each complete request is queued on
 * its connection and handed to the embedding layer one at a time, so pipelined
 * requests are answered in order without the handler knowing about pipelining. A
 * handler may answer at once or later (after a job on another thread); while a
 * request is in flight, further complete requests wait in the queue, and reading stops
 * when the queue is full (backpressure instead of unbounded buffering).
 *
 * Bad input never reaches the handler: a parse error, an oversized header block or
 * body, or a stalled half-sent request is answered with 400/413/431 (or the
 * connection is just closed) and the connection goes away after the answer is written.
 *
 * After a WebSocket upgrade the same connection feeds wslay instead of http-parser;
 * wslay does the RFC 6455 framing, masking checks, control frames and the close
 * handshake. Request framing is in http_parse.c, WebSocket framing in ws.c, the
 * listening socket and accepting (and adopting) connections in http_accept.c. */
#include "net/http_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/log.h"

/* ---------------------------------------------------------------------------------- */
/* Connection lifecycle                                                               */
/* ---------------------------------------------------------------------------------- */

static void conn_free(struct edge_http_conn *c)
{
    while (c->q_head != NULL) {
        struct edge_http_req *r = c->q_head;
        c->q_head = r->next;
        edge__http_req_free(r);
    }
    edge__http_req_free(c->cur);
    edge_buf_free(&c->url);
    edge_buf_free(&c->hname);
    edge_buf_free(&c->hval);
    edge_buf_free(&c->ws_pending);
    edge_buf_free(&c->ws_out);
    if (c->ws != NULL) {
        wslay_event_context_free(c->ws);
    }
    edge_tls_free(c->tls);
    edge_free(c);
}

static void server_maybe_done(struct edge_http_server *s);

static void on_handle_closed(uv_handle_t *h)
{
    struct edge_http_conn *c = h->data;
    if (--c->handles_open > 0) {
        return;
    }
    struct edge_http_server *s = c->s;
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        s->conns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    s->connections_open--;
    if (s->h.n_conns != NULL && !c->handed_off) atomic_fetch_sub(s->h.n_conns, 1);
    if (c->handed_off) {
        /* never started here: another loop's server serves it */
    } else if (c->ws_on_close != NULL) {
        c->ws_on_close(c->ws_ud, c);
    } else if (s->h.on_close != NULL) {
        s->h.on_close(s->h.ud, c);
    }
    if (c->close_watch != NULL) {
        void (*cb)(void *, struct edge_http_conn *) = c->close_watch;
        c->close_watch = NULL;
        cb(c->close_watch_ud, c);
    }
    if (--c->refs == 0) {
        conn_free(c);
    } else {
        c->s = NULL; /* the server may go away before the last unref */
    }
    if (s->stopping) {
        s->pending_closes--;
        server_maybe_done(s);
    }
}

void edge__http_conn_close(struct edge_http_conn *c)
{
    if (c->closing) {
        return;
    }
    /* Frames sent just before the close still get their try, as a write queued at once
     * did before frames were gathered per iteration (a close frame, a last error). */
    if (c->ws_out.len > 0) {
        edge__http_ws_out_flush(c);
        if (c->closing) return;
    }
    c->closing = true;
    c->dead = true;
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    if (c->ws_out_on) uv_close((uv_handle_t *)&c->ws_out_prep, on_handle_closed);
}

static void conn_close_timer(uv_timer_t *t)
{
    edge__http_conn_close(t->data);
}

void edge__http_conn_close_in(struct edge_http_conn *c, uint64_t ms)
{
    if (c->closing) return;
    uv_timer_start(&c->timer, conn_close_timer, ms, 0);
}

void edge_http_conn_ref(struct edge_http_conn *c) { c->refs++; }

void edge_http_conn_unref(struct edge_http_conn *c)
{
    if (--c->refs == 0) {
        conn_free(c);
    }
}

bool edge_http_conn_is_closed(const struct edge_http_conn *c) { return c->closing; }
bool edge_http_conn_peer_names(const struct edge_http_conn *c, const char *name, bool dns_only)
{
    return c->tls != NULL && edge_tls_peer_names(c->tls, name, dns_only);
}

bool edge_http_conn_peer_verified(const struct edge_http_conn *c)
{
    return c->tls != NULL && edge_tls_peer_verified(c->tls);
}
size_t edge_http_conn_unsent(const struct edge_http_conn *c) { return c->out_bytes + c->ws_out.len; }
void edge_http_conn_set_ud(struct edge_http_conn *c, void *ud) { c->ud = ud; }
void *edge_http_conn_ud(struct edge_http_conn *c) { return c->ud; }

void edge_http_conn_watch_close(struct edge_http_conn *c, void (*cb)(void *ud, struct edge_http_conn *c), void *ud)
{
    c->close_watch = cb;
    c->close_watch_ud = ud;
}

void edge_http_conn_set_ws_handler(struct edge_http_conn *c,
                                   void (*on_ws_message)(void *ud, struct edge_http_conn *c, int opcode,
                                                         const uint8_t *data, size_t len),
                                   void (*on_close)(void *ud, struct edge_http_conn *c), void *ud)
{
    c->ws_on_message = on_ws_message;
    c->ws_on_close = on_close;
    c->ws_ud = ud;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

static int tls_flush(struct edge_http_conn *c);

static void on_shutdown(uv_shutdown_t *req, int status)
{
    struct edge_http_conn *c = req->data;
    if (status != 0) {
        edge__http_conn_close(c);
    }
    edge_http_conn_unref(c);
}

/* Done with this connection after the last answer: closing at once while the peer is
 * still sending would reset the connection and could destroy the answer before the
 * client reads it (e.g. a 413 for a large upload). So shut the write side down and
 * discard input until the peer closes, bounded by a short timer (a "lingering close"). */
static void conn_finish(struct edge_http_conn *c)
{
    if (c->closing || c->lingering) {
        return;
    }
    if (c->ws != NULL) {
        edge__http_conn_close(c);
        return;
    }
    c->lingering = true;
    c->dead = true;
    if (c->tls != NULL) {
        /* close_notify before the FIN: the client can tell the end from a truncation. */
        edge_tls_shutdown(c->tls);
        if (tls_flush(c) != EDGE_OK) return;
    }
    c->shutdown_req.data = c;
    c->refs++;
    if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
        c->refs--;
        edge__http_conn_close(c);
        return;
    }
    if (!c->reading && uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0) {
        c->reading = true;
    }
    uv_timer_start(&c->timer, (uv_timer_cb)conn_close_timer, 2000, 0);
}

static void dispatch(struct edge_http_conn *c);

static void on_write(uv_write_t *req, int status)
{
    struct write_req *w = (struct write_req *)req;
    struct edge_http_conn *c = w->c;
    size_t before = c->out_bytes;
    c->out_bytes -= w->len;
    edge_free(w);
    if (status != 0) {
        edge__http_conn_close(c);
    } else if (c->close_after_write && c->out_bytes == 0) {
        conn_finish(c);
    } else if (before > HTTP_MAX_OUT_BYTES && c->out_bytes <= HTTP_MAX_OUT_BYTES && c->ws == NULL && c->s != NULL) {
        dispatch(c); /* the client is reading again */
    }
    edge_http_conn_unref(c);
}

/* Hand w (its data and len set) to libuv; on failure the connection closes. */
static int write_start(struct edge_http_conn *c, struct write_req *w)
{
    w->c = c;
    uv_buf_t buf = uv_buf_init(w->data, (unsigned)w->len);
    c->refs++;
    c->out_bytes += w->len;
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &buf, 1, on_write) != 0) {
        c->out_bytes -= w->len;
        c->refs--;
        edge_free(w);
        edge__http_conn_close(c);
        return EDGE_EIO;
    }
    return EDGE_OK;
}

/* Queue bytes as they are for the socket (plaintext, or a TLS session's records). */
static int raw_write(struct edge_http_conn *c, const void *a, size_t alen, const void *b, size_t blen)
{
    struct write_req *w = edge_malloc(sizeof(*w) + alen + blen);
    if (w == NULL) {
        edge__http_conn_close(c);
        return EDGE_ENOMEM;
    }
    memcpy(w->data, a, alen);
    if (blen > 0) {
        memcpy(w->data + alen, b, blen);
    }
    w->len = alen + blen;
    return write_start(c, w);
}

/* Send what the TLS session has produced (records, handshake messages, alerts) in one
 * write. */
static int tls_flush(struct edge_http_conn *c)
{
    size_t n = edge_tls_out_pending(c->tls);
    if (n == 0 || c->closing) return c->closing ? EDGE_ECLOSED : EDGE_OK;
    struct write_req *w = edge_malloc(sizeof(*w) + n);
    if (w == NULL) {
        edge__http_conn_close(c);
        return EDGE_ENOMEM;
    }
    w->len = edge_tls_out_take(c->tls, w->data, n);
    return write_start(c, w);
}

/* An answer's head and body (or a WebSocket connection's frames of one loop iteration),
 * written at once when the socket takes them: one writev from the caller's buffers,
 * with no copy, no write request and no write callback. A
 * uv_write that completes at once still costs the copy and a callback in the next loop
 * iteration, and libuv 1.44 re-arms the socket's epoll registration (an epoll_ctl
 * system call) for each one, about one system call in four of a session PUT. What the
 * socket does not take is queued as before. Only for plaintext keep-alive answers
 * (close_after_write unset): whoever sets that flag finishes the connection once
 * out_bytes is 0, and out_bytes never rises here. */
int edge__http_conn_write_now(struct edge_http_conn *c, const char *a, size_t alen, const char *b, size_t blen)
{
    if (c->closing || c->tls != NULL || c->close_after_write) return edge__http_conn_write(c, a, alen, b, blen);
    uv_buf_t bufs[2] = {uv_buf_init((char *)a, (unsigned)alen), uv_buf_init((char *)b, (unsigned)blen)};
    int n = uv_try_write((uv_stream_t *)&c->tcp, bufs, blen > 0 ? 2 : 1);
    if (n == UV_EAGAIN || n == UV_ENOSYS) n = 0;
    if (n < 0) {
        edge__http_conn_close(c);
        return EDGE_EIO;
    }
    size_t done = (size_t)n;
    if (done >= alen + blen) return EDGE_OK;
    if (done >= alen) return raw_write(c, b + (done - alen), blen - (done - alen), NULL, 0);
    return raw_write(c, a + done, alen - done, b, blen);
}

int edge__http_conn_write(struct edge_http_conn *c, const void *a, size_t alen, const void *b, size_t blen)
{
    if (c->closing) {
        return EDGE_ECLOSED;
    }
    if (c->tls == NULL) {
        return raw_write(c, a, alen, b, blen);
    }
    if (edge_tls_write(c->tls, a, alen) != EDGE_OK || (blen > 0 && edge_tls_write(c->tls, b, blen) != EDGE_OK)) {
        edge__http_conn_close(c);
        return EDGE_EIO;
    }
    return tls_flush(c);
}

static const char *status_text(int status)
{
    switch (status) {
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
    }
}

/* Send a response that is not tied to a queued request (protocol errors), then close. */
static void send_fatal(struct edge_http_conn *c, int status, const char *code, const char *msg)
{
    char body[512];
    int blen = snprintf(body, sizeof(body), "{\"error\":\"%s\",\"message\":\"%s\",\"code\":\"%s\"}", msg, msg, code);
    char head[256];
    int hlen = snprintf(head, sizeof(head),
                        "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                        "Connection: close\r\n\r\n",
                        status, status_text(status), blen);
    c->dead = true;
    c->close_after_write = true;
    if (c->s != NULL) {
        c->s->bad_requests++;
    }
    if (edge__http_conn_write(c, head, (size_t)hlen, body, (size_t)blen) != EDGE_OK) {
        edge__http_conn_close(c);
    }
}


static char *head_put(char *p, const char *end, const char *str)
{
    size_t n = strlen(str);
    if (p == NULL || (size_t)(end - p) < n) return NULL;
    memcpy(p, str, n);
    return p + n;
}

/* An answer's head: "HTTP/1.1 <status> <text>\r\nContent-Type: ..\r\nContent-Length:
 * ..\r\n<conn><extra>\r\n", its length, or -1 when it does not fit cap. Built by hand:
 * snprintf of it was about 2,300 instructions of every answer. */
static int answer_head(char *head, size_t cap, int status, const char *type, size_t len, const char *conn,
                       const char *extra)
{
    char num[EDGE_DEC_MAX];
    const char *q = edge_dec_u64(num, len);
    char code[4] = {(char)('0' + status / 100 % 10), (char)('0' + status / 10 % 10), (char)('0' + status % 10), 0};
    if (status < 100 || status > 999) return -1;
    const char *end = head + cap - 1; /* room for the NUL, as snprintf left */
    char *p = head_put(head, end, "HTTP/1.1 ");
    p = head_put(p, end, code);
    p = head_put(p, end, " ");
    p = head_put(p, end, status_text(status));
    p = head_put(p, end, "\r\nContent-Type: ");
    p = head_put(p, end, type);
    p = head_put(p, end, "\r\nContent-Length: ");
    p = head_put(p, end, q);
    p = head_put(p, end, "\r\n");
    p = head_put(p, end, conn);
    p = head_put(p, end, extra);
    p = head_put(p, end, "\r\n");
    if (p == NULL) return -1;
    *p = '\0';
    return (int)(p - head);
}

void edge_http_respond(struct edge_http_conn *c, int status, const char *content_type,
                       const char *extra_headers, const void *body, size_t len)
{
    struct edge_http_req *r = c->q_head;
    if (EDGE_NEVER(r == NULL || !c->in_flight)) {
        return;
    }
    /* A draining server closes the connection after the last queued answer. */
    bool keep = r->keep_alive && !c->dead && !(c->s != NULL && c->s->draining && r->next == NULL);
    if (!c->closing) {
        char head[1024];
        int hlen = answer_head(head, sizeof(head), status, content_type ? content_type : "application/json", len,
                               keep ? "" : "Connection: close\r\n", extra_headers ? extra_headers : "");
        if (hlen < 0) {
            hlen = snprintf(head, sizeof(head), "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n");
            len = 0;
        }
        if (!keep) {
            c->close_after_write = true;
            c->dead = true;
        }
        edge__http_conn_write_now(c, head, (size_t)hlen, body, len);
    }
    if (!keep) {
        /* Nothing after a "Connection: close" exchange is executed (RFC 9112 9.6):
         * drop what was pipelined behind it. */
        struct edge_http_req *rest = r->next;
        r->next = NULL;
        c->q_tail = r;
        while (rest != NULL) {
            struct edge_http_req *nx = rest->next;
            edge__http_req_free(rest);
            c->q_len--;
            rest = nx;
        }
    }
    edge__http_req_done(c);
    if (!c->closing) {
        c->last_activity_ms = uv_now(c->tcp.loop);
        edge__http_arm_timer(c);
    }
    dispatch(c);
}

int edge_http_stream_begin(struct edge_http_conn *c, const char *content_type, const char *extra_headers)
{
    if (EDGE_NEVER(c->q_head == NULL || !c->in_flight) || c->closing) return EDGE_ECLOSED;
    char head[1024];
    int hlen = snprintf(head, sizeof(head),
                        "HTTP/1.1 200 OK\r\nContent-Type: %s\r\nCache-Control: no-cache\r\nConnection: close\r\n%s\r\n",
                        content_type, extra_headers ? extra_headers : "");
    if (hlen < 0 || (size_t)hlen >= sizeof(head)) return EDGE_EINVAL;
    /* The request stays in flight for as long as the stream lasts: no idle timeout, and
     * nothing pipelined behind it runs (the connection closes at the end). */
    c->dead = true;
    return edge__http_conn_write(c, head, (size_t)hlen, NULL, 0);
}

int edge_http_stream_write(struct edge_http_conn *c, const void *data, size_t len)
{
    return edge__http_conn_write(c, data, len, NULL, 0);
}

void edge_http_stream_end(struct edge_http_conn *c)
{
    if (c->closing) return;
    c->close_after_write = true;
    if (c->out_bytes == 0) edge__http_conn_close(c);
}

void edge_http_respond_error(struct edge_http_conn *c, int status, const char *code, const char *msg)
{
    struct edge_buf b;
    edge_buf_init(&b, 4096);
    edge_buf_puts(&b, "{\"error\":");
    edge_buf_json_cstr(&b, msg);
    edge_buf_puts(&b, ",\"message\":");
    edge_buf_json_cstr(&b, msg);
    edge_buf_puts(&b, ",\"code\":");
    edge_buf_json_cstr(&b, code);
    edge_buf_putc(&b, '}');
    edge_http_respond(c, status, "application/json", NULL, b.data, b.len);
    edge_buf_free(&b);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void tls_input(struct edge_http_conn *c, const char *data, size_t len);
static void conn_input(struct edge_http_conn *c, const char *data, size_t nread);

void edge__http_req_done(struct edge_http_conn *c)
{
    struct edge_http_req *r = c->q_head;
    c->q_head = r->next;
    if (c->q_head == NULL) {
        c->q_tail = NULL;
    }
    c->q_len--;
    c->in_flight = false;
    edge__http_req_free(r);
}

void edge__http_resume_reading(struct edge_http_conn *c)
{
    if (!c->reading && !c->closing && (c->ws != NULL || !c->dead)) {
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0) {
            c->reading = true;
        }
    }
}

static void dispatch(struct edge_http_conn *c)
{
    if (c->dispatching || c->closing) {
        return;
    }
    c->dispatching = true;
    while (!c->closing && !c->in_flight && c->q_head != NULL && c->ws == NULL &&
           !(c->dead && c->close_after_write) && c->out_bytes <= HTTP_MAX_OUT_BYTES) {
        c->in_flight = true;
        c->s->h.on_request(c->s->h.ud, c, c->q_head);
    }
    c->dispatching = false;
    if (!c->in_flight && c->q_len < c->s->limits.max_queued && c->out_bytes <= HTTP_MAX_OUT_BYTES) {
        edge__http_resume_reading(c);
    }
}

/* ---------------------------------------------------------------------------------- */
/* Reading                                                                            */
/* ---------------------------------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct edge_http_conn *c = h->data;
    struct edge_http_server *s = c->s;
    if (s->read_buf_busy) {
        buf->base = NULL;
        buf->len = 0;
        return;
    }
    s->read_buf_busy = true;
    buf->base = s->read_buf;
    buf->len = sizeof(s->read_buf);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct edge_http_conn *c = stream->data;
    struct edge_http_server *s = c->s;
    if (buf->base == s->read_buf) {
        s->read_buf_busy = false;
    }
    if (nread == 0) {
        return;
    }
    if (nread < 0) {
        /* EOF or error; a half-sent request is simply dropped. */
        edge__http_conn_close(c);
        return;
    }
    if (c->lingering) {
        return;
    }
    c->last_activity_ms = uv_now(stream->loop);
    if (c->tls != NULL) {
        tls_input(c, buf->base, (size_t)nread);
    } else {
        conn_input(c, buf->base, (size_t)nread);
    }
}

/* A connection closed for bad TLS input (not TLS, a failed or stalled handshake, a
 * broken record): counted, and logged at most once a second with the count since. */
static void tls_fail(struct edge_http_conn *c, const char *why)
{
    struct edge_http_server *s = c->s;
    s->tls_failures++;
    s->tls_unlogged++;
    uint64_t now = uv_now(s->loop);
    if (s->tls_logged_ms == 0 || now - s->tls_logged_ms >= 1000) {
        EDGE_LOG(EDGE_LOG_WARN, EDGE_MOD_HTTP, "tls: connection closed: %s (%llu such closes since the last line)",
                 why, (unsigned long long)s->tls_unlogged);
        s->tls_logged_ms = now;
        s->tls_unlogged = 0;
    }
    (void)tls_flush(c); /* the alert, if the session made one */
    edge__http_conn_close(c);
}

/* Records read from the socket: decrypt everything they complete and hand it to the
 * plain path, as if it had been read from the socket in one go. */
static void tls_input(struct edge_http_conn *c, const char *data, size_t len)
{
    struct edge_http_server *s = c->s;
    if (edge_tls_feed(c->tls, data, len) != EDGE_OK) {
        edge__http_conn_close(c);
        return;
    }
    while (!c->closing && !c->lingering) {
        size_t got = 0;
        int rv = edge_tls_read(c->tls, s->tls_buf, READ_BUF_SIZE, &got);
        if (rv == EDGE_ECLOSED) {
            edge__http_conn_close(c); /* close_notify: the client is done */
            return;
        }
        if (rv != EDGE_OK) {
            tls_fail(c, edge_tls_error(c->tls));
            return;
        }
        if (tls_flush(c) != EDGE_OK) return; /* handshake answers */
        if (got == 0) break;
        conn_input(c, s->tls_buf, got);
    }
    if (!c->closing) edge__http_arm_timer(c);
}

/* Plaintext bytes of the connection (read from the socket, or decrypted). */
static void conn_input(struct edge_http_conn *c, const char *data, size_t nread)
{
    struct edge_http_server *s = c->s;
    uv_stream_t *stream = (uv_stream_t *)&c->tcp;
    if (c->ws != NULL) {
        EDGE_LOG(EDGE_LOG_DEBUG, EDGE_MOD_NET, "ws: %zu bytes in", nread);
        edge__http_ws_feed(c, (const uint8_t *)data, nread);
        return;
    }
    if (c->upgrade_held) {
        /* More of a TLS read after an upgrade request: the WebSocket layer's. */
        if (edge_buf_append(&c->ws_pending, data, nread) != EDGE_OK) edge__http_conn_close(c);
        return;
    }
    if (c->dead) {
        return;
    }
    size_t parsed = http_parser_execute(&c->parser, &edge__http_parser_settings, data, nread);
    enum http_errno err = HTTP_PARSER_ERRNO(&c->parser);
    while (c->reparse && err == HPE_OK && !c->dead) {
        /* http-parser stops after any Upgrade request; continue as plain HTTP. */
        size_t done = parsed;
        c->reparse = false;
        http_parser_init(&c->parser, HTTP_REQUEST);
        c->parser.data = c;
        parsed = done + http_parser_execute(&c->parser, &edge__http_parser_settings, data + done, nread - done);
        err = HTTP_PARSER_ERRNO(&c->parser);
    }
    if (err == HPE_PAUSED) {
        /* An upgrade request: keep what follows for the WebSocket layer. */
        if (edge_buf_append(&c->ws_pending, data + parsed, nread - parsed) != EDGE_OK) {
            edge__http_conn_close(c);
            return;
        }
        uv_read_stop(stream);
        c->reading = false;
        c->dead = true;
        c->upgrade_held = true;
    } else if (err != HPE_OK) {
        int status = 400;
        const char *code = "HTTP_BAD_REQUEST";
        const char *msg = "malformed HTTP request";
        if (c->fail_status == 413) {
            status = 413;
            code = "BODY_TOO_LARGE";
            msg = "request body exceeds the limit";
        } else if (c->fail_status == 431) {
            status = 431;
            code = "HEADERS_TOO_LARGE";
            msg = "request headers exceed the limit";
        }
        EDGE_LOG(EDGE_LOG_DEBUG, EDGE_MOD_HTTP, "conn: parse error %s -> %d", http_errno_name(err), status);
        if (c->q_head == NULL) {
            send_fatal(c, status, code, msg);
        } else {
            /* Answer what was complete, then close: the stream is out of sync. */
            c->dead = true;
        }
        uv_read_stop(stream);
        c->reading = false;
    }
    if (c->q_len >= s->limits.max_queued && c->reading) {
        uv_read_stop(stream);
        c->reading = false;
    }
    edge__http_arm_timer(c);
    dispatch(c);
    if (c->dead && c->q_head == NULL && !c->closing && c->ws == NULL && !c->close_after_write) {
        c->close_after_write = true;
        if (c->out_bytes == 0) {
            conn_finish(c);
        }
    }
}

/* A TLS handshake is a few round trips: one not done in 10 s (or the request timeout,
 * when shorter) is stalled, not slow. */
static uint64_t tls_handshake_ms(const struct edge_http_server *s)
{
    return s->limits.request_timeout_ms < TLS_HANDSHAKE_MS ? s->limits.request_timeout_ms : TLS_HANDSHAKE_MS;
}

static void on_timer(uv_timer_t *t)
{
    struct edge_http_conn *c = t->data;
    if (c->closing || c->lingering) {
        return;
    }
    uint64_t now = uv_now(t->loop);
    bool handshake = c->tls != NULL && !edge_tls_established(c->tls);
    bool partial = c->cur != NULL || handshake;
    if (c->in_flight || c->ws != NULL) {
        edge__http_arm_timer(c);
        return;
    }
    uint64_t limit = handshake ? tls_handshake_ms(c->s)
                     : partial ? c->s->limits.request_timeout_ms : c->s->limits.idle_timeout_ms;
    /* A half-sent request gets request_timeout_ms in total, however slowly it trickles
     * in (slowloris), and so does a TLS handshake from the accept; an idle connection
     * gets idle_timeout_ms since its last byte. */
    uint64_t since = handshake ? c->accepted_ms : partial ? c->cur_start_ms : c->last_activity_ms;
    if (now - since >= limit) {
        if (handshake) {
            tls_fail(c, "TLS handshake not finished in time");
            return;
        }
        EDGE_LOG(EDGE_LOG_DEBUG, EDGE_MOD_HTTP, "conn: %s timeout, closing", partial ? "request" : "idle");
        edge__http_conn_close(c);
        return;
    }
    edge__http_arm_timer(c);
}

void edge__http_arm_timer(struct edge_http_conn *c)
{
    if (c->closing || c->ws != NULL || c->lingering) {
        return;
    }
    bool handshake = c->tls != NULL && !edge_tls_established(c->tls);
    bool partial = c->cur != NULL || handshake;
    uint64_t limit = handshake ? tls_handshake_ms(c->s)
                     : partial ? c->s->limits.request_timeout_ms : c->s->limits.idle_timeout_ms;
    uint64_t since = handshake ? c->accepted_ms : partial ? c->cur_start_ms : c->last_activity_ms;
    uint64_t now = uv_now(c->tcp.loop);
    uint64_t left = now - since >= limit ? 1 : limit - (now - since);
    uv_timer_start(&c->timer, on_timer, left, 0);
}

/* ---------------------------------------------------------------------------------- */
/* Server (accepting connections and starting: http_accept.c)                         */
/* ---------------------------------------------------------------------------------- */

int edge_http_server_set_tls(struct edge_http_server *s, struct edge_tls_ctx *ctx)
{
    if (s->tls_buf == NULL) {
        s->tls_buf = edge_malloc(READ_BUF_SIZE);
        if (s->tls_buf == NULL) return EDGE_ENOMEM;
    }
    s->tls = ctx;
    return EDGE_OK;
}

void edge_http_server_stats(struct edge_http_server *s, struct edge_http_stats *out)
{
    out->tls_failures = s->tls_failures;
    out->connections_open = s->connections_open;
    out->connections_total = s->connections_total;
    out->bad_requests = s->bad_requests;
    out->ws_output_closed = s->ws_output_closed;
}

static void server_maybe_done(struct edge_http_server *s)
{
    if (s->pending_closes > 0) {
        return;
    }
    void (*cb)(void *) = s->stop_cb;
    void *arg = s->stop_arg;
    edge_free(s->tls_buf);
    edge_free(s);
    if (cb != NULL) {
        cb(arg);
    }
}

static void on_listener_closed(uv_handle_t *h)
{
    struct edge_http_server *s = h->data;
    s->listener_closed = true;
    if (s->stopping) {
        s->pending_closes--;
        server_maybe_done(s);
    }
}

void edge_http_server_drain(struct edge_http_server *s)
{
    if (s->draining || s->stopping) return;
    s->draining = true;
}

static void close_listener(struct edge_http_server *s)
{
    if (!s->listener_closing) {
        s->listener_closing = true;
        uv_close((uv_handle_t *)&s->listener, on_listener_closed);
    }
}

size_t edge_http_server_close_idle(struct edge_http_server *s, bool (*ws_busy)(void *ud, struct edge_http_conn *c),
                                   void *ud)
{
    size_t busy = 0;
    struct edge_http_conn *next = NULL;
    close_listener(s);
    for (struct edge_http_conn *c = s->conns; c != NULL; c = next) {
        next = c->next;
        if (c->closing || c->lingering || c->drain_closed) continue;
        bool idle;
        if (c->ws == NULL) {
            idle = c->q_head == NULL && !c->in_flight && c->out_bytes == 0;
        } else {
            bool own = c->ws_on_message == NULL;
            idle = edge_http_conn_unsent(c) == 0 && !(own && ws_busy != NULL && ws_busy(ud, c));
        }
        /* Idle at two calls in a row: the loop has polled in between, so bytes that had
         * already arrived (a request sent before the stop) were read. */
        c->drain_idle = idle ? c->drain_idle + 1 : 0;
        if (c->drain_idle < 2) {
            busy++;
        } else if (c->ws == NULL) {
            c->close_after_write = true;
            conn_finish(c);
        } else {
            c->drain_closed = true;
            edge_http_ws_close(c, 1001, "the server is shutting down");
        }
    }
    return busy;
}

void edge_http_server_stop(struct edge_http_server *s, void (*cb)(void *arg), void *arg)
{
    s->stopping = true;
    s->stop_cb = cb;
    s->stop_arg = arg;
    s->pending_closes = 0;
    if (!s->listener_closing) {
        s->listener_closing = true;
        s->pending_closes++;
        uv_close((uv_handle_t *)&s->listener, on_listener_closed);
    } else if (!s->listener_closed) {
        s->pending_closes++; /* closed by drain; its callback is still to come */
    }
    for (struct edge_http_conn *c = s->conns; c != NULL; c = c->next) {
        if (!c->closing) {
            s->pending_closes++;
            edge__http_conn_close(c);
        } else {
            s->pending_closes++; /* its close callback is still to come */
        }
    }
    server_maybe_done(s); /* nothing left to close: done now */
}
