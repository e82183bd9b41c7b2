/* SPDX-License-Identifier: MIT */
/* The front door's WebSocket proxy: the client's WebSocket is accepted here (the same
 * Hrana subprotocol it offered), and one WebSocket to the chosen region carries its
 * messages both ways, unchanged, for the connection's whole life. Every stream of the
 * session lives in that one region, so streams are pinned by construction. A region
 * whose connection is refused is replaced by the next (nothing was sent); once the
 * upstream is up, its loss closes the client with 1011 (the Hrana session was there).
 *
 * The upstream side is a small RFC 6455 client on the loop: the handshake, masked frames
 * out, unmasked frames in (fragments joined, pings answered). */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/log.h"
#include "router/door_int.h"

#define WS_MAX_MESSAGE (16u << 20)

struct wsp {
    struct door *d;
    struct edge_http_conn *client;
    int region;
    uint32_t tried;
    char proto[16];
    char path[512];
    uv_tcp_t tcp;
    uv_connect_t creq;
    bool tcp_open, upgraded, closing, client_gone;
    struct edge_buf rx;      /* bytes from the region not yet parsed */
    struct edge_buf pending; /* frames from the client before the upgrade answered */
    struct edge_buf msg;     /* a fragmented message being joined */
    int msg_opcode;
};

struct wreq {
    uv_write_t w;
    size_t len;
    char data[];
};

static void wsp_try_connect(struct wsp *s);

static void wsp_free(struct wsp *s)
{
    edge_buf_free(&s->rx);
    edge_buf_free(&s->pending);
    edge_buf_free(&s->msg);
    if (s->client != NULL) edge_http_conn_unref(s->client);
    edge_free(s);
}

static void on_tcp_closed(uv_handle_t *h)
{
    struct wsp *s = h->data;
    s->tcp_open = false;
    if (s->client_gone) {
        wsp_free(s);
    } else if (!s->upgraded && !s->closing) {
        wsp_try_connect(s); /* refused: the next region */
    }
}

static void close_upstream(struct wsp *s)
{
    if (s->tcp_open && !uv_is_closing((uv_handle_t *)&s->tcp)) {
        if (s->region >= 0 && s->upgraded) s->d->regions[s->region].ws_open--;
        uv_close((uv_handle_t *)&s->tcp, on_tcp_closed);
    }
}

/* The session ends: the client goes (or is closed) and the upstream with it. */
static void finish(struct wsp *s, uint16_t code, const char *reason)
{
    if (s->closing) return;
    s->closing = true;
    if (!s->client_gone && code != 0) edge_http_ws_close(s->client, code, reason);
    close_upstream(s);
}

static void on_written(uv_write_t *w, int status)
{
    (void)status;
    edge_free(w);
}

static int raw_write(struct wsp *s, const void *p, size_t n)
{
    struct wreq *w = edge_malloc(sizeof(*w) + n);
    if (w == NULL) return EDGE_ENOMEM;
    memcpy(w->data, p, n);
    w->len = n;
    uv_buf_t b = uv_buf_init(w->data, (unsigned)n);
    if (uv_write(&w->w, (uv_stream_t *)&s->tcp, &b, 1, on_written) != 0) {
        edge_free(w);
        return EDGE_EIO;
    }
    return EDGE_OK;
}

/* A masked client frame (RFC 6455 5.3) of one whole message into out. */
static int frame(struct edge_buf *out, int opcode, const uint8_t *data, size_t len)
{
    uint8_t h[14];
    size_t hl = 0;
    h[hl++] = (uint8_t)(0x80 | (opcode & 0x0f));
    if (len < 126) {
        h[hl++] = (uint8_t)(0x80 | len);
    } else if (len < 65536) {
        h[hl++] = 0x80 | 126;
        h[hl++] = (uint8_t)(len >> 8);
        h[hl++] = (uint8_t)len;
    } else {
        h[hl++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--) h[hl++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    uint8_t mask[4];
    randombytes_buf(mask, sizeof(mask));
    memcpy(h + hl, mask, 4);
    hl += 4;
    int rv = edge_buf_append(out, h, hl);
    if (rv != EDGE_OK) return rv;
    if (edge_buf_reserve(out, len) != EDGE_OK) return EDGE_ENOMEM;
    for (size_t i = 0; i < len; i++) out->data[out->len + i] = (char)(data[i] ^ mask[i & 3]);
    out->len += len;
    out->data[out->len] = '\0';
    return EDGE_OK;
}

static int send_frame(struct wsp *s, int opcode, const uint8_t *data, size_t len)
{
    struct edge_buf b;
    edge_buf_init(&b, (size_t)WS_MAX_MESSAGE + 64);
    int rv = frame(&b, opcode, data, len);
    if (rv == EDGE_OK) rv = raw_write(s, b.data, b.len);
    edge_buf_free(&b);
    return rv;
}

/* Parse what arrived from the region: the 101 first, then frames. */
static void parse(struct wsp *s)
{
    if (!s->upgraded) {
        const char *end = s->rx.data ? strstr(s->rx.data, "\r\n\r\n") : NULL;
        if (end == NULL) {
            if (s->rx.len > 16384) finish(s, 1011, "bad answer from the region");
            return;
        }
        if (strncmp(s->rx.data, "HTTP/1.1 101", 12) != 0) {
            finish(s, 1011, "the region refused the WebSocket");
            return;
        }
        s->upgraded = true;
        s->d->regions[s->region].ws_sessions++;
        s->d->regions[s->region].ws_open++;
        size_t used = (size_t)(end + 4 - s->rx.data);
        memmove(s->rx.data, s->rx.data + used, s->rx.len - used);
        s->rx.len -= used;
        if (s->pending.len > 0 && raw_write(s, s->pending.data, s->pending.len) != EDGE_OK) {
            finish(s, 1011, "cannot reach the region");
            return;
        }
        edge_buf_free(&s->pending);
    }
    const uint8_t *p = (const uint8_t *)s->rx.data;
    size_t off = 0;
    while (!s->closing) {
        size_t avail = s->rx.len - off;
        if (avail < 2) break;
        const uint8_t *f = p + off;
        bool fin = f[0] & 0x80;
        int op = f[0] & 0x0f;
        bool masked = f[1] & 0x80;
        uint64_t len = f[1] & 0x7f;
        size_t hl = 2;
        if (len == 126) {
            if (avail < 4) break;
            len = ((uint64_t)f[2] << 8) | f[3];
            hl = 4;
        } else if (len == 127) {
            if (avail < 10) break;
            len = 0;
            for (int i = 0; i < 8; i++) len = (len << 8) | f[2 + i];
            hl = 10;
        }
        if (masked) hl += 4;
        if (len > WS_MAX_MESSAGE) {
            finish(s, 1009, "message too large");
            return;
        }
        if (avail < hl + len) break;
        uint8_t *payload = (uint8_t *)f + hl;
        if (masked) {
            for (uint64_t i = 0; i < len; i++) payload[i] ^= f[hl - 4 + (i & 3)];
        }
        if (op == 8) {
            uint16_t code = len >= 2 ? (uint16_t)((payload[0] << 8) | payload[1]) : 1000;
            finish(s, code == 1005 || code == 1006 ? 1011 : code, "the region closed the session");
            return;
        } else if (op == 9) {
            send_frame(s, 10, payload, (size_t)len);
        } else if (op == 1 || op == 2 || op == 0) {
            if (op != 0) {
                edge_buf_reset(&s->msg);
                s->msg_opcode = op;
            }
            if (edge_buf_append(&s->msg, payload, (size_t)len) != EDGE_OK) {
                finish(s, 1009, "message too large");
                return;
            }
            if (fin && !s->client_gone) {
                edge_http_ws_send(s->client, s->msg_opcode, s->msg.data ? s->msg.data : "", s->msg.len);
                edge_buf_reset(&s->msg);
            }
        }
        off += hl + (size_t)len;
    }
    if (off > 0 && !s->closing) {
        memmove(s->rx.data, s->rx.data + off, s->rx.len - off);
        s->rx.len -= off;
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct wsp *s = h->data;
    if (edge_buf_reserve(&s->rx, 65536) != EDGE_OK) {
        buf->base = NULL;
        buf->len = 0;
        return;
    }
    buf->base = s->rx.data + s->rx.len;
    buf->len = s->rx.cap - s->rx.len - 1;
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    struct wsp *s = st->data;
    if (nread < 0) {
        finish(s, 1011, "the region's connection was lost");
        return;
    }
    s->rx.len += (size_t)nread;
    s->rx.data[s->rx.len] = '\0';
    parse(s);
}

static void on_connect(uv_connect_t *cr, int status)
{
    struct wsp *s = cr->data;
    struct region *r = &s->d->regions[s->region];
    if (s->client_gone || s->closing) {
        close_upstream(s);
        return;
    }
    if (status < 0) {
        /* nothing was sent: the next region (on_tcp_closed) */
        r->up = false;
        s->d->ws_refused_retries++;
        uv_close((uv_handle_t *)&s->tcp, on_tcp_closed);
        return;
    }
    uint8_t key[16];
    randombytes_buf(key, sizeof(key));
    struct edge_buf b;
    edge_buf_init(&b, 8192);
    edge_buf_printf(&b, "GET %s HTTP/1.1\r\nHost: %s:%s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ", s->path, r->host, r->port);
    edge_buf_base64(&b, key, sizeof(key));
    edge_buf_puts(&b, "\r\n");
    if (s->proto[0]) edge_buf_printf(&b, "Sec-WebSocket-Protocol: %s\r\n", s->proto);
    edge_buf_puts(&b, "\r\n");
    int rv = raw_write(s, b.data, b.len);
    edge_buf_free(&b);
    if (rv != EDGE_OK || uv_read_start((uv_stream_t *)&s->tcp, on_alloc, on_read) != 0) {
        finish(s, 1011, "cannot reach the region");
    }
}

static void wsp_try_connect(struct wsp *s)
{
    struct door *d = s->d;
    int next = edge__door_choose(d, s->tried);
    if (next < 0 || d->stopping) {
        finish(s, 1011, "no region could take the session");
        if (!s->tcp_open && s->client_gone) wsp_free(s);
        return;
    }
    s->region = next;
    s->tried |= 1u << next;
    struct region *r = &d->regions[next];
    struct sockaddr_storage addr;
    if (uv_ip4_addr(r->host, atoi(r->port), (struct sockaddr_in *)&addr) != 0 &&
        uv_ip6_addr(r->host, atoi(r->port), (struct sockaddr_in6 *)&addr) != 0) {
        finish(s, 1011, "a region's address is not numeric");
        return;
    }
    uv_tcp_init(&d->loop, &s->tcp);
    s->tcp.data = s;
    s->tcp_open = true;
    s->creq.data = s;
    if (uv_tcp_connect(&s->creq, &s->tcp, (const struct sockaddr *)&addr, on_connect) != 0) {
        uv_close((uv_handle_t *)&s->tcp, on_tcp_closed);
    }
}

static void on_client_msg(void *ud, struct edge_http_conn *c, int opcode, const uint8_t *data, size_t len)
{
    (void)c;
    struct wsp *s = ud;
    if (s->closing) return;
    if (!s->upgraded) {
        if (s->pending.len + len > WS_MAX_MESSAGE || frame(&s->pending, opcode, data, len) != EDGE_OK) {
            finish(s, 1009, "too much before the region answered");
        }
        return;
    }
    if (send_frame(s, opcode, data, len) != EDGE_OK) finish(s, 1011, "cannot reach the region");
}

static void on_client_close(void *ud, struct edge_http_conn *c)
{
    (void)c;
    struct wsp *s = ud;
    s->client_gone = true;
    s->closing = true;
    if (s->tcp_open) {
        close_upstream(s); /* frees in on_tcp_closed */
    } else {
        wsp_free(s);
    }
}

static bool offers(const char *list, const char *p)
{
    size_t n = strlen(p);
    for (const char *q = list; q != NULL && *q;) {
        while (*q == ' ' || *q == ',') q++;
        size_t l = strcspn(q, ", ");
        if (l == n && strncasecmp(q, p, n) == 0) return true;
        q += l;
    }
    return false;
}

void edge__door_ws_upgrade(struct door *d, struct edge_http_conn *c, struct edge_http_req *req)
{
    const char *protos = edge_http_header(req, "sec-websocket-protocol");
    const char *chosen = offers(protos, "hrana3")   ? "hrana3"
                         : offers(protos, "hrana2") ? "hrana2"
                         : offers(protos, "hrana1") ? "hrana1"
                                                    : NULL;
    if (protos != NULL && chosen == NULL) {
        edge_http_respond_error(c, 400, "WS_PROTOCOL_UNSUPPORTED", "no supported WebSocket subprotocol offered");
        return;
    }
    struct wsp *s = edge_calloc(1, sizeof(*s));
    if (s == NULL) {
        edge_http_respond_error(c, 503, "INTERNAL", "out of memory");
        return;
    }
    s->d = d;
    s->region = -1;
    snprintf(s->proto, sizeof(s->proto), "%s", chosen ? chosen : "");
    snprintf(s->path, sizeof(s->path), "%s", req->path[0] == '/' && strlen(req->path) < 500 ? req->path : "/");
    edge_buf_init(&s->rx, (size_t)WS_MAX_MESSAGE + 65536);
    edge_buf_init(&s->pending, (size_t)WS_MAX_MESSAGE + 64);
    edge_buf_init(&s->msg, WS_MAX_MESSAGE);
    if (edge_http_ws_accept(c, chosen) != EDGE_OK) {
        wsp_free(s);
        return;
    }
    s->client = c;
    edge_http_conn_ref(c);
    edge_http_conn_set_ws_handler(c, on_client_msg, on_client_close, s);
    wsp_try_connect(s);
}
