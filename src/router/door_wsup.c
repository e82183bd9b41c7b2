/* SPDX-License-Identifier: MIT */
/* The front door's WebSocket to one region (door_int.h): a small RFC 6455 client on the
 * loop: TCP, TLS when the region's URL is https:// (net/tls.h over memory buffers, verified
 * like the door's HTTP pools: cluster.ca_file and the URL's host), the client handshake,
 * masked frames out, unmasked frames in (fragments joined, pings answered).
 *
 * DESIGN: nothing of the session is sent before the region answered 101 (the owner sends
 * only after on_open), so a failure before that is always "nothing was sent" and the owner
 * may go to the next region; after it, a lost connection may have lost requests in flight,
 * which the owner sorts out (door_ws.c). After on_lost, or once the owner called close, no
 * callback comes; the link frees itself when its handles are closed.
 *
 * Each step before the 101 (the TCP connect, the TLS handshake, the answer to the upgrade
 * request) has router.connect_timeout_ms: a region that accepts TCP and never answers is a
 * refusal once it passes (nothing was sent), not a session held until the client gives up.
 * A link opened to move a session also ends at the move's deadline (router.request_timeout_ms
 * from the loss) when that comes first: a step's own deadline may reach past it. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/log.h"
#include "net/tls.h"
#include "router/door_int.h"

#define WS_MAX_MESSAGE (16u << 20)

struct edge_door_wsup {
    struct door *d;
    int region;
    struct edge_door_wsup_cb cb;
    char proto[16];
    char path[512];
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_timer_t timer;  /* the deadline of the step before the 101 */
    const char *step;  /* which step it is, for the log */
    uint64_t deadline_ns; /* the owner's (uv_hrtime; 0: none): no step runs past it */
    bool cut;          /* the timer is the owner's deadline, not the step's own */
    int handles;       /* tcp, timer and prep not closed yet */
    struct edge_tls *tls;
    bool upgraded, done; /* done: on_lost called or closed by the owner: no more callbacks */
    struct edge_buf rx;  /* bytes (plaintext) from the region not yet parsed */
    struct edge_buf msg; /* a fragmented message being joined */
    int msg_opcode;
    /* Frames of this loop iteration, written by prep just before the loop blocks: one
     * write per iteration instead of one per message (net/ws.c does the same for the
     * client's side). */
    struct edge_buf out;
    uv_prepare_t prep;
    /* Masking keys (RFC 6455 5.3) drawn 64 at a time: one getrandom per frame was a
     * system call per relayed message. */
    uint8_t masks[256];
    size_t masks_left;
    bool flush_failed; /* a flush's write failed: the loss is on its way, nothing more is sent */
};

struct wreq {
    uv_write_t w;
    char data[];
};

static void on_closed(uv_handle_t *h)
{
    struct edge_door_wsup *u = h->data;
    if (--u->handles > 0) return;
    edge_tls_free(u->tls);
    edge_buf_free(&u->rx);
    edge_buf_free(&u->msg);
    edge_buf_free(&u->out);
    sodium_memzero(u->masks, sizeof(u->masks));
    edge_free(u);
}

static void shut(struct edge_door_wsup *u)
{
    if (!uv_is_closing((uv_handle_t *)&u->tcp)) {
        if (u->upgraded) u->d->regions[u->region].ws_open--;
        uv_close((uv_handle_t *)&u->timer, on_closed);
        uv_close((uv_handle_t *)&u->prep, on_closed);
        uv_close((uv_handle_t *)&u->tcp, on_closed);
    }
}

/* The link failed: tell the owner once, then close. */
static void lost(struct edge_door_wsup *u, int kind, uint16_t code, const char *why)
{
    if (!u->done) {
        u->done = true;
        if (!u->upgraded && kind != EDGE_DOOR_WSUP_EXPIRED) kind = EDGE_DOOR_WSUP_REFUSED;
        u->cb.on_lost(u->cb.ud, kind, code, why);
    }
    shut(u);
}

static void on_deadline(uv_timer_t *t)
{
    struct edge_door_wsup *u = t->data;
    if (u->done || u->upgraded) return;
    if (u->cut) {
        EDGE_LOG(EDGE_LOG_WARN, EDGE_MOD_API, "router: WebSocket to region %s: no %s before the move's "
                 "router.request_timeout_ms (%d ms) ran out", u->d->regions[u->region].id, u->step,
                 u->d->rc->request_timeout_ms);
    } else {
        EDGE_LOG(EDGE_LOG_WARN, EDGE_MOD_API, "router: WebSocket to region %s: no %s within "
                 "router.connect_timeout_ms (%d ms)", u->d->regions[u->region].id, u->step,
                 u->d->rc->connect_timeout_ms);
    }
    u->d->ws_connect_timeouts++;
    if (u->cut) lost(u, EDGE_DOOR_WSUP_EXPIRED, 0, "the owner's deadline passed before the region's 101");
    else lost(u, EDGE_DOOR_WSUP_REFUSED, 0, "the region did not answer within router.connect_timeout_ms");
}

/* The next step before the 101 gets a deadline of its own, cut to the owner's. */
static void step(struct edge_door_wsup *u, const char *what)
{
    uint64_t ms = (uint64_t)u->d->rc->connect_timeout_ms;
    u->step = what;
    u->cut = false;
    if (u->deadline_ns != 0) {
        uint64_t now = uv_hrtime();
        /* rounded up: the timer never fires before the deadline */
        uint64_t left = u->deadline_ns > now ? (u->deadline_ns - now + 999999u) / 1000000u : 0;
        if (left < ms) {
            ms = left;
            u->cut = true;
        }
    }
    uv_timer_start(&u->timer, on_deadline, ms, 0);
}

static void on_prep(uv_prepare_t *h);

void edge__door_wsup_close(struct edge_door_wsup *u)
{
    if (u == NULL) return;
    /* what was sent before the close still gets its try, as when each frame was written
     * at once */
    if (!u->done && u->out.len > 0) on_prep(&u->prep);
    u->done = true;
    shut(u);
}

static void on_written(uv_write_t *w, int status)
{
    (void)status;
    edge_free(w);
}

static int tcp_write(struct edge_door_wsup *u, const void *p, size_t n)
{
    struct wreq *w = edge_malloc(sizeof(*w) + n);
    if (w == NULL) return EDGE_ENOMEM;
    memcpy(w->data, p, n);
    uv_buf_t b = uv_buf_init(w->data, (unsigned)n);
    if (uv_write(&w->w, (uv_stream_t *)&u->tcp, &b, 1, on_written) != 0) {
        edge_free(w);
        return EDGE_EIO;
    }
    return EDGE_OK;
}

/* Whatever TLS has to send (handshake records, encrypted data, alerts). */
static int tls_flush(struct edge_door_wsup *u)
{
    size_t n = edge_tls_out_pending(u->tls);
    if (n == 0) return EDGE_OK;
    struct wreq *w = edge_malloc(sizeof(*w) + n);
    if (w == NULL) return EDGE_ENOMEM;
    uv_buf_t b = uv_buf_init(w->data, (unsigned)edge_tls_out_take(u->tls, w->data, n));
    if (uv_write(&w->w, (uv_stream_t *)&u->tcp, &b, 1, on_written) != 0) {
        edge_free(w);
        return EDGE_EIO;
    }
    return EDGE_OK;
}

static int raw_write(struct edge_door_wsup *u, const void *p, size_t n)
{
    if (u->tls == NULL) return tcp_write(u, p, n);
    if (edge_tls_write(u->tls, p, n) != EDGE_OK) return EDGE_EIO;
    return tls_flush(u);
}

/* A masked client frame (RFC 6455 5.3) of one whole message onto u->out. */
static int frame(struct edge_door_wsup *u, int opcode, const uint8_t *data, size_t len)
{
    struct edge_buf *out = &u->out;
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
    if (u->masks_left < 4) {
        randombytes_buf(u->masks, sizeof(u->masks));
        u->masks_left = sizeof(u->masks);
    }
    uint8_t mask[4];
    memcpy(mask, u->masks + sizeof(u->masks) - u->masks_left, 4);
    u->masks_left -= 4;
    memcpy(h + hl, mask, 4);
    hl += 4;
    int rv = edge_buf_append(out, h, hl);
    if (rv != EDGE_OK) return rv;
    if (edge_buf_reserve(out, len) != EDGE_OK) return EDGE_ENOMEM;
    /* 8 bytes at a time (the mask twice: byte k of a word meets mask[k & 3] whatever the
     * byte order), through a local pointer: a byte store through out->data may alias out */
    uint8_t *dst = (uint8_t *)out->data + out->len, m8[8];
    memcpy(m8, mask, 4);
    memcpy(m8 + 4, mask, 4);
    uint64_t m64, w;
    memcpy(&m64, m8, 8);
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        memcpy(&w, data + i, 8);
        w ^= m64;
        memcpy(dst + i, &w, 8);
    }
    for (; i < len; i++) dst[i] = (uint8_t)(data[i] ^ mask[i & 3]);
    out->len += len;
    out->data[out->len] = '\0';
    return EDGE_OK;
}

/* A write that failed at the flush is a loss, told from the next timer phase: the
 * owner's answers to its client (errors, a move) are then made where the client's
 * connection still flushes them before the loop blocks, which a prepare callback's are
 * not (a prepare handle started during the prepare phase waits for the next iteration). */
static void on_flush_failed(uv_timer_t *t)
{
    lost(t->data, EDGE_DOOR_WSUP_LOST, 0, "cannot send to the region");
}

static void on_prep(uv_prepare_t *h)
{
    struct edge_door_wsup *u = h->data;
    uv_prepare_stop(h);
    if (u->done || u->out.len == 0) return;
    int rv = EDGE_OK;
    size_t done = 0;
    if (u->tls == NULL) {
        uv_buf_t b = uv_buf_init(u->out.data, (unsigned)u->out.len);
        int n = uv_try_write((uv_stream_t *)&u->tcp, &b, 1);
        if (n == UV_EAGAIN || n == UV_ENOSYS) n = 0;
        if (n < 0) rv = EDGE_EIO;
        else done = (size_t)n;
    }
    if (rv == EDGE_OK && done < u->out.len) rv = raw_write(u, u->out.data + done, u->out.len - done);
    edge_buf_free(&u->out); /* each time: an idle link keeps no output memory */
    if (rv != EDGE_OK) {
        u->flush_failed = true;
        uv_timer_start(&u->timer, on_flush_failed, 0, 0);
    }
}

int edge__door_wsup_send(struct edge_door_wsup *u, int opcode, const void *data, size_t len)
{
    if (u == NULL || u->done || !u->upgraded) return EDGE_ECLOSED;
    if (u->flush_failed) return EDGE_EIO; /* a request now would be taken as sent */
    if (len > WS_MAX_MESSAGE) return EDGE_ETOOBIG;
    size_t before = u->out.len;
    int rv = frame(u, opcode, data, len);
    if (rv != EDGE_OK) {
        u->out.len = before; /* no part of a frame is left behind */
        return rv;
    }
    if (!uv_is_active((uv_handle_t *)&u->prep)) uv_prepare_start(&u->prep, on_prep);
    return EDGE_OK;
}

size_t edge__door_wsup_queued(const struct edge_door_wsup *u)
{
    if (u == NULL) return 0;
    size_t n = u->out.len + uv_stream_get_write_queue_size((const uv_stream_t *)&u->tcp);
    if (u->tls != NULL) n += edge_tls_out_pending(u->tls);
    return n;
}

/* Parse what arrived from the region: the 101 first, then frames. */
static void parse(struct edge_door_wsup *u)
{
    if (!u->upgraded) {
        const char *end = u->rx.data ? strstr(u->rx.data, "\r\n\r\n") : NULL;
        if (end == NULL) {
            if (u->rx.len > 16384) lost(u, EDGE_DOOR_WSUP_REFUSED, 0, "bad answer from the region");
            return;
        }
        if (strncmp(u->rx.data, "HTTP/1.1 101", 12) != 0) {
            lost(u, EDGE_DOOR_WSUP_REFUSED, 0, "the region refused the WebSocket");
            return;
        }
        u->upgraded = true;
        uv_timer_stop(&u->timer);
        u->d->regions[u->region].ws_sessions++;
        u->d->regions[u->region].ws_open++;
        size_t used = (size_t)(end + 4 - u->rx.data);
        memmove(u->rx.data, u->rx.data + used, u->rx.len - used);
        u->rx.len -= used;
        u->cb.on_open(u->cb.ud);
    }
    const uint8_t *p = (const uint8_t *)u->rx.data;
    size_t off = 0;
    while (!u->done) {
        size_t avail = u->rx.len - off;
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
            lost(u, EDGE_DOOR_WSUP_CLOSED, 1009, "message too large");
            return;
        }
        if (avail < hl + len) break;
        uint8_t *payload = (uint8_t *)f + hl;
        if (masked) {
            for (uint64_t i = 0; i < len; i++) payload[i] ^= f[hl - 4 + (i & 3)];
        }
        if (op == 8) {
            uint16_t code = len >= 2 ? (uint16_t)((payload[0] << 8) | payload[1]) : 1005;
            /* a region going away (1001) or closing without a code is a loss; any other code is
             * the region's verdict on the session (a protocol error, a failed hello) */
            bool loss = code == 1001 || code == 1005 || code == 1006;
            lost(u, loss ? EDGE_DOOR_WSUP_LOST : EDGE_DOOR_WSUP_CLOSED, code, "the region closed the session");
            return;
        } else if (op == 9) {
            (void)edge__door_wsup_send(u, 10, payload, (size_t)len);
        } else if (op == 1 || op == 2 || op == 0) {
            if (op != 0) {
                edge_buf_reset(&u->msg);
                u->msg_opcode = op;
            }
            if (edge_buf_append(&u->msg, payload, (size_t)len) != EDGE_OK) {
                lost(u, EDGE_DOOR_WSUP_CLOSED, 1009, "message too large");
                return;
            }
            if (fin) {
                u->cb.on_msg(u->cb.ud, u->msg_opcode, (const uint8_t *)(u->msg.data ? u->msg.data : ""), u->msg.len);
                edge_buf_reset(&u->msg);
            }
        }
        off += hl + (size_t)len;
    }
    if (off > 0 && !u->done) {
        memmove(u->rx.data, u->rx.data + off, u->rx.len - off);
        u->rx.len -= off;
    }
}

static int rx_append(struct edge_door_wsup *u, const char *p, size_t n)
{
    if (edge_buf_append(&u->rx, p, n) != EDGE_OK) return EDGE_ENOMEM;
    return EDGE_OK;
}

static void send_upgrade(struct edge_door_wsup *u)
{
    struct region *r = &u->d->regions[u->region];
    uint8_t key[16];
    randombytes_buf(key, sizeof(key));
    struct edge_buf b;
    edge_buf_init(&b, 8192);
    edge_buf_printf(&b, "GET %s HTTP/1.1\r\nHost: %s:%s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ", u->path, r->host, r->port);
    edge_buf_base64(&b, key, sizeof(key));
    edge_buf_puts(&b, "\r\n");
    if (u->proto[0]) edge_buf_printf(&b, "Sec-WebSocket-Protocol: %s\r\n", u->proto);
    edge_buf_puts(&b, "\r\n");
    int rv = raw_write(u, b.data, b.len);
    edge_buf_free(&b);
    if (rv != EDGE_OK) lost(u, EDGE_DOOR_WSUP_REFUSED, 0, "cannot reach the region");
}

/* Records from the region: the handshake first (then the upgrade request goes out), then
 * plaintext for parse(). */
static void tls_input(struct edge_door_wsup *u, const char *data, size_t len)
{
    static __thread char plain[64 * 1024]; /* consumed synchronously below */
    if (edge_tls_feed(u->tls, data, len) != EDGE_OK) {
        lost(u, EDGE_DOOR_WSUP_LOST, 0, "out of memory");
        return;
    }
    if (!edge_tls_established(u->tls)) {
        int hs = edge_tls_handshake(u->tls);
        if (tls_flush(u) != EDGE_OK) {
            lost(u, EDGE_DOOR_WSUP_REFUSED, 0, "cannot reach the region");
            return;
        }
        if (hs == EDGE_EPROTO) {
            EDGE_LOG(EDGE_LOG_WARN, EDGE_MOD_API, "router: WebSocket to region %s: TLS: %s",
                     u->d->regions[u->region].id, edge_tls_error(u->tls));
            lost(u, EDGE_DOOR_WSUP_REFUSED, 0, "TLS to the region failed");
            return;
        }
        if (hs != EDGE_OK) return;
        step(u, "answer to the WebSocket upgrade");
        send_upgrade(u);
        if (u->done) return;
    }
    /* Bounded by what was fed: each pass takes decrypted bytes or ends. */
    for (int pass = 0; pass < 1 << 16 && !u->done; pass++) {
        size_t got = 0;
        int rv = edge_tls_read(u->tls, plain, sizeof(plain), &got);
        if (rv == EDGE_ECLOSED) {
            lost(u, EDGE_DOOR_WSUP_LOST, 0, "the region's connection was lost");
            return;
        }
        if (rv != EDGE_OK) {
            lost(u, EDGE_DOOR_WSUP_LOST, 0, "TLS to the region failed");
            return;
        }
        if (got == 0) break;
        if (rx_append(u, plain, got) != EDGE_OK) {
            lost(u, EDGE_DOOR_WSUP_CLOSED, 1009, "message too large");
            return;
        }
    }
    if (!u->done) (void)tls_flush(u);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    (void)h;
    static __thread char in[64 * 1024]; /* consumed synchronously in on_read */
    buf->base = in;
    buf->len = sizeof(in);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    struct edge_door_wsup *u = st->data;
    if (u->done) return;
    if (nread < 0) {
        lost(u, EDGE_DOOR_WSUP_LOST, 0, "the region's connection was lost");
        return;
    }
    if (nread == 0) return;
    if (u->tls != NULL) {
        tls_input(u, buf->base, (size_t)nread);
    } else if (rx_append(u, buf->base, (size_t)nread) != EDGE_OK) {
        lost(u, EDGE_DOOR_WSUP_CLOSED, 1009, "message too large");
        return;
    }
    if (!u->done) parse(u);
}

static void on_connect(uv_connect_t *cr, int status)
{
    struct edge_door_wsup *u = cr->data;
    if (u->done) return;
    if (status < 0) {
        lost(u, EDGE_DOOR_WSUP_REFUSED, 0, "the region refused the connection");
        return;
    }
    if (uv_read_start((uv_stream_t *)&u->tcp, on_alloc, on_read) != 0) {
        lost(u, EDGE_DOOR_WSUP_REFUSED, 0, "cannot reach the region");
        return;
    }
    struct region *r = &u->d->regions[u->region];
    step(u, r->tls != NULL ? "TLS handshake" : "answer to the WebSocket upgrade");
    if (r->tls != NULL) {
        if (edge_tls_new(r->tls, r->tls_name, &u->tls) != EDGE_OK) {
            lost(u, EDGE_DOOR_WSUP_REFUSED, 0, "TLS to the region failed");
            return;
        }
        (void)edge_tls_handshake(u->tls); /* the ClientHello */
        if (tls_flush(u) != EDGE_OK) lost(u, EDGE_DOOR_WSUP_REFUSED, 0, "cannot reach the region");
        return;
    }
    send_upgrade(u);
}

int edge__door_wsup_open(struct door *d, int region, const char *path, const char *proto, uint64_t deadline_ns,
                         const struct edge_door_wsup_cb *cb, struct edge_door_wsup **out)
{
    struct region *r = &d->regions[region];
    struct sockaddr_storage addr;
    if (uv_ip4_addr(r->host, atoi(r->port), (struct sockaddr_in *)&addr) != 0 &&
        uv_ip6_addr(r->host, atoi(r->port), (struct sockaddr_in6 *)&addr) != 0) {
        return EDGE_EINVAL;
    }
    struct edge_door_wsup *u = edge_calloc(1, sizeof(*u));
    if (u == NULL) return EDGE_ENOMEM;
    u->d = d;
    u->region = region;
    u->cb = *cb;
    u->deadline_ns = deadline_ns;
    snprintf(u->proto, sizeof(u->proto), "%s", proto ? proto : "");
    snprintf(u->path, sizeof(u->path), "%s", path);
    edge_buf_init(&u->rx, (size_t)WS_MAX_MESSAGE + 65536);
    edge_buf_init(&u->msg, WS_MAX_MESSAGE);
    edge_buf_init(&u->out, SIZE_MAX);
    uv_tcp_init(&d->loop, &u->tcp);
    uv_tcp_nodelay(&u->tcp, 1);
    uv_timer_init(&d->loop, &u->timer);
    uv_prepare_init(&d->loop, &u->prep);
    u->handles = 3;
    u->tcp.data = u;
    u->timer.data = u;
    u->prep.data = u;
    u->creq.data = u;
    step(u, "TCP connection");
    if (uv_tcp_connect(&u->creq, &u->tcp, (const struct sockaddr *)&addr, on_connect) != 0) {
        u->done = true;
        shut(u);
        return EDGE_ECONNREFUSED;
    }
    *out = u;
    return EDGE_OK;
}
