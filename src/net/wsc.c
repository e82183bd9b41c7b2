/* SPDX-License-Identifier: MIT */
/* The blocking WebSocket client (see wsc.h). */
#include "net/wsc.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sodium.h>

#include "core/clock.h"
#include "core/err.h"
#include "core/sha1.h"
#include "net/tls.h"

#define RECV_CHUNK 65536
#define IO_TIMEOUT_MS 10000
#define HTTP_HEAD_MAX 8192
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

static uint64_t now_ms(void)
{
    return edge_clock_mono_ms(edge_clock_system());
}

static void set_err(struct edge_wsc *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_err(struct edge_wsc *w, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->err, w->err_len, fmt, ap);
    va_end(ap);
}

void edge_wsc_init(struct edge_wsc *w, int wake_fd, const atomic_bool *stop, size_t max_frame, char *err,
                   size_t err_len)
{
    memset(w, 0, sizeof(*w));
    w->fd = -1;
    w->wake_fd = wake_fd;
    w->stop = stop;
    w->max_frame = max_frame;
    w->err = err;
    w->err_len = err_len;
    edge_buf_init(&w->rx, max_frame + 2 * RECV_CHUNK);
    edge_buf_init(&w->msg, max_frame);
    edge_buf_init(&w->tx, max_frame + 16);
}

void edge_wsc_set_tls(struct edge_wsc *w, struct edge_tls_ctx *ctx) { w->tls_ctx = ctx; }

void edge_wsc_close(struct edge_wsc *w)
{
    edge_tls_free(w->tls);
    w->tls = NULL;
    if (w->fd >= 0) {
        close(w->fd);
        w->fd = -1;
    }
    edge_buf_reset(&w->rx);
    w->rx_off = 0;
    edge_buf_reset(&w->msg);
    w->in_frag = false;
}

void edge_wsc_free(struct edge_wsc *w)
{
    edge_wsc_close(w);
    edge_buf_free(&w->rx);
    edge_buf_free(&w->msg);
    edge_buf_free(&w->tx);
}

static bool stopping(struct edge_wsc *w)
{
    return w->stop != NULL && atomic_load(w->stop);
}

static void drain_wake(struct edge_wsc *w)
{
    char junk[64];
    for (int i = 0; i < 16 && read(w->wake_fd, junk, sizeof(junk)) > 0; i++) {
    }
}

/* Wait up to timeout_ms for events on the socket (if events != 0) or a wake-up.
 * *out_ready gets the socket's revents (0 on timeout or wake). EDGE_ECLOSED once
 * stopping. */
int edge_wsc_wait(struct edge_wsc *w, short events, int timeout_ms, short *out_ready)
{
    struct pollfd pf[2] = {{.fd = w->wake_fd, .events = POLLIN}, {.fd = w->fd, .events = events}};
    *out_ready = 0;
    if (stopping(w)) {
        return EDGE_ECLOSED;
    }
    int n = poll(pf, events ? 2 : 1, timeout_ms < 0 ? 0 : timeout_ms);
    if (n < 0 && errno != EINTR) {
        set_err(w, "poll: %s", strerror(errno));
        return EDGE_EIO;
    }
    if (n > 0 && (pf[0].revents & POLLIN)) {
        drain_wake(w);
    }
    if (stopping(w)) {
        return EDGE_ECLOSED;
    }
    if (n > 0 && events) {
        *out_ready = pf[1].revents;
    }
    return EDGE_OK;
}

/* Interruptible sleep: only stop cuts it short (a notify is remembered in the flag). */
int edge_wsc_sleep(struct edge_wsc *w, int ms)
{
    uint64_t deadline = now_ms() + (uint64_t)(ms > 0 ? ms : 0);
    for (int i = 0; i < 100000; i++) {
        uint64_t now = now_ms();
        short r;
        if (now >= deadline) {
            return stopping(w) ? EDGE_ECLOSED : EDGE_OK;
        }
        int rv = edge_wsc_wait(w, 0, (int)(deadline - now), &r);
        if (rv != EDGE_OK) {
            return rv;
        }
    }
    return EDGE_OK;
}

/* edge_tls_wait_fn over edge_wsc_wait: the stop flag and the wake pipe still work. */
static int tls_wait(void *ud, int fd, short events, int64_t deadline)
{
    (void)fd;
    struct edge_wsc *w = ud;
    uint64_t now = now_ms();
    if ((int64_t)now >= deadline) return EDGE_ETIMEDOUT;
    short r;
    return edge_wsc_wait(w, events, (int)(deadline - (int64_t)now), &r);
}

static int tls_start(struct edge_wsc *w, const char *host, const char *port, uint64_t deadline)
{
    int rv = edge_tls_new(w->tls_ctx, host, &w->tls);
    if (rv != EDGE_OK) {
        set_err(w, "TLS to %s:%s: %s", host, port, edge_strerror(rv));
        return rv;
    }
    rv = edge_tls_fd_handshake(w->tls, w->fd, tls_wait, w, (int64_t)deadline);
    if (rv == EDGE_EPROTO) {
        set_err(w, "TLS to %s:%s: %s", host, port, edge_tls_error(w->tls));
    } else if (rv == EDGE_ETIMEDOUT) {
        set_err(w, "TLS to %s:%s: handshake timed out", host, port);
    } else if (rv != EDGE_OK && rv != EDGE_ECLOSED) {
        set_err(w, "TLS to %s:%s: %s", host, port, edge_strerror(rv));
    } else if (rv == EDGE_ECLOSED && !stopping(w)) {
        set_err(w, "TLS to %s:%s: connection closed during the handshake", host, port);
        rv = EDGE_EIO;
    }
    return rv;
}

int edge_wsc_connect(struct edge_wsc *w, const char *host, const char *port, int timeout_ms)
{
    uint64_t start = now_ms();
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int g = getaddrinfo(host, port, &hints, &res);
    if (g != 0 || res == NULL) {
        set_err(w, "resolve %s: %s", host, gai_strerror(g));
        return EDGE_EIO;
    }
    int rv = EDGE_EIO;
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        set_err(w, "socket: %s", strerror(errno));
        goto out;
    }
    w->fd = fd;
    if (connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
        if (errno != EINPROGRESS) {
            set_err(w, "connect %s:%s: %s", host, port, strerror(errno));
            goto out;
        }
        uint64_t deadline = now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
        short r = 0;
        for (int i = 0; i < 10000 && r == 0; i++) {
            uint64_t now = now_ms();
            if (now >= deadline) {
                set_err(w, "connect %s:%s: timed out", host, port);
                rv = EDGE_ETIMEDOUT;
                goto out;
            }
            rv = edge_wsc_wait(w, POLLOUT, (int)(deadline - now), &r);
            if (rv != EDGE_OK) {
                goto out;
            }
            rv = EDGE_EIO;
        }
        int soerr = 0;
        socklen_t sl = sizeof(soerr);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr != 0) {
            set_err(w, "connect %s:%s: %s", host, port, strerror(soerr ? soerr : errno));
            goto out;
        }
    }
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    rv = EDGE_OK;
    if (w->tls_ctx != NULL) rv = tls_start(w, host, port, start + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0));
out:
    freeaddrinfo(res);
    return rv;
}

static int send_all(struct edge_wsc *w, const void *data, size_t len)
{
    const char *d = data;
    size_t off = 0;
    uint64_t deadline = now_ms() + IO_TIMEOUT_MS;
    if (w->tls != NULL) {
        int rv = edge_tls_write(w->tls, data, len);
        if (rv == EDGE_OK) rv = edge_tls_fd_flush(w->tls, w->fd, tls_wait, w, (int64_t)deadline);
        if (rv == EDGE_EPROTO) set_err(w, "send: %s", edge_tls_error(w->tls));
        else if (rv == EDGE_ETIMEDOUT) set_err(w, "send: timed out");
        else if (rv != EDGE_OK && rv != EDGE_ECLOSED) set_err(w, "send: %s", edge_strerror(rv));
        return rv;
    }
    /* Each pass sends something or waits; the deadline bounds the passes. */
    while (off < len) {
        ssize_t n = send(w->fd, d + off, len - off, MSG_NOSIGNAL);
        if (n > 0) {
            off += (size_t)n;
            continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            set_err(w, "send: %s", strerror(errno));
            return EDGE_EIO;
        }
        uint64_t now = now_ms();
        if (now >= deadline) {
            set_err(w, "send: timed out");
            return EDGE_ETIMEDOUT;
        }
        short r;
        int rv = edge_wsc_wait(w, POLLOUT, (int)(deadline - now), &r);
        if (rv != EDGE_OK) {
            return rv;
        }
    }
    return EDGE_OK;
}

/* The socket is readable: decrypt all it completes into rx. */
static int tls_recv(struct edge_wsc *w)
{
    int rv = edge_tls_fd_pull(w->tls, w->fd);
    if (rv == EDGE_EAGAIN) return EDGE_OK;
    if (rv == EDGE_ECLOSED) {
        set_err(w, "connection closed by peer");
        return EDGE_ECLOSED;
    }
    if (rv != EDGE_OK) {
        set_err(w, "recv: %s", edge_strerror(rv));
        return rv;
    }
    /* Bounded by what was fed (at most a read's worth of records). */
    for (int pass = 0; pass < 1 << 16; pass++) {
        rv = edge_buf_reserve(&w->rx, RECV_CHUNK);
        if (rv != EDGE_OK) {
            set_err(w, "recv: buffer: %s", edge_strerror(rv));
            return rv;
        }
        size_t got = 0;
        rv = edge_tls_read(w->tls, w->rx.data + w->rx.len, RECV_CHUNK, &got);
        if (rv == EDGE_ECLOSED) {
            set_err(w, "connection closed by peer (TLS close)");
            return EDGE_ECLOSED;
        }
        if (rv != EDGE_OK) {
            set_err(w, "recv: %s", edge_tls_error(w->tls));
            return EDGE_EPROTO;
        }
        if (got == 0) break;
        w->rx.len += got;
        w->rx.data[w->rx.len] = '\0';
    }
    return EDGE_OK;
}

/* Read what is available after waiting up to timeout_ms. EDGE_OK also on timeout or
 * wake (nothing read); EDGE_ECLOSED on EOF or stop. */
int edge_wsc_recv(struct edge_wsc *w, int timeout_ms)
{
    short r;
    int rv = edge_wsc_wait(w, POLLIN, timeout_ms, &r);
    if (rv != EDGE_OK || r == 0) {
        return rv;
    }
    if (w->rx_off > 0) {
        memmove(w->rx.data, w->rx.data + w->rx_off, w->rx.len - w->rx_off);
        w->rx.len -= w->rx_off;
        w->rx_off = 0;
    }
    if (w->tls != NULL) return tls_recv(w);
    rv = edge_buf_reserve(&w->rx, RECV_CHUNK);
    if (rv != EDGE_OK) {
        set_err(w, "recv: buffer: %s", edge_strerror(rv));
        return rv;
    }
    ssize_t n = recv(w->fd, w->rx.data + w->rx.len, RECV_CHUNK, 0);
    if (n == 0) {
        set_err(w, "connection closed by peer");
        return EDGE_ECLOSED;
    }
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
            return EDGE_OK;
        }
        set_err(w, "recv: %s", strerror(errno));
        return EDGE_EIO;
    }
    w->rx.len += (size_t)n;
    w->rx.data[w->rx.len] = '\0';
    return EDGE_OK;
}

/* ---------------------------------------------------------------------------------- */
/* WebSocket client (RFC 6455)                                                        */
/* ---------------------------------------------------------------------------------- */

static bool header_is(const char *line, size_t n, const char *name, const char **out_val, size_t *out_vlen)
{
    size_t nl = strlen(name);
    if (n <= nl || line[nl] != ':' || strncasecmp(line, name, nl) != 0) {
        return false;
    }
    const char *v = line + nl + 1, *e = line + n;
    while (v < e && (*v == ' ' || *v == '\t')) {
        v++;
    }
    while (e > v && (e[-1] == ' ' || e[-1] == '\t')) {
        e--;
    }
    *out_val = v;
    *out_vlen = (size_t)(e - v);
    return true;
}

int edge_wsc_handshake(struct edge_wsc *w, const char *host, const char *port, const char *path,
                       const char *protocol, const char *extra_headers, int timeout_ms)
{
    uint8_t nonce[16], digest[20];
    char key[32], cat[96], req[768];
    struct edge_buf acc;
    int rv;
    randombytes_buf(nonce, sizeof(nonce));
    edge_buf_init(&acc, 64);
    rv = edge_buf_base64(&acc, nonce, sizeof(nonce));
    if (rv != EDGE_OK) {
        goto out;
    }
    snprintf(key, sizeof(key), "%s", acc.data);
    edge_buf_reset(&acc);
    int cn = snprintf(cat, sizeof(cat), "%s%s", key, WS_GUID);
    edge__sha1((const uint8_t *)cat, (size_t)cn, digest);
    rv = edge_buf_base64(&acc, digest, sizeof(digest));
    if (rv != EDGE_OK) {
        goto out;
    }
    int rn = snprintf(req, sizeof(req),
                      "GET %s HTTP/1.1\r\nHost: %s:%s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: %s\r\n"
                      "%s\r\n",
                      path, host, port, key, protocol, extra_headers ? extra_headers : "");
    if (rn < 0 || (size_t)rn >= sizeof(req)) {
        rv = EDGE_EINVAL;
        set_err(w, "handshake: request too long");
        goto out;
    }
    rv = send_all(w, req, (size_t)rn);
    if (rv != EDGE_OK) {
        goto out;
    }
    uint64_t deadline = now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
    char *end = NULL;
    for (int i = 0; i < 100000; i++) {
        end = w->rx.len ? strstr(w->rx.data, "\r\n\r\n") : NULL;
        if (end != NULL) {
            break;
        }
        if (w->rx.len > HTTP_HEAD_MAX) {
            set_err(w, "handshake: response head too large");
            rv = EDGE_EPROTO;
            goto out;
        }
        uint64_t now = now_ms();
        if (now >= deadline) {
            set_err(w, "handshake: timed out");
            rv = EDGE_ETIMEDOUT;
            goto out;
        }
        rv = edge_wsc_recv(w, (int)(deadline - now));
        if (rv != EDGE_OK) {
            goto out;
        }
    }
    rv = EDGE_EPROTO;
    if (end == NULL) {
        set_err(w, "handshake: timed out");
        goto out;
    }
    size_t head_len = (size_t)(end - w->rx.data) + 4;
    const char *line = w->rx.data;
    const char *eol = strstr(line, "\r\n");
    if (strncmp(line, "HTTP/1.1 101", 12) != 0) {
        int sl = (int)(eol - line);
        set_err(w, "handshake: %.*s", sl > 80 ? 80 : sl, line);
        goto out;
    }
    bool upgrade = false, accept_ok = false, proto_ok = true;
    for (int i = 0; i < 200 && eol != NULL && eol < end; i++) {
        line = eol + 2;
        eol = strstr(line, "\r\n");
        if (eol == NULL) {
            break;
        }
        size_t n = (size_t)(eol - line);
        const char *v;
        size_t vl;
        if (header_is(line, n, "Upgrade", &v, &vl)) {
            upgrade = vl == 9 && strncasecmp(v, "websocket", 9) == 0;
        } else if (header_is(line, n, "Sec-WebSocket-Accept", &v, &vl)) {
            accept_ok = vl == acc.len && memcmp(v, acc.data, vl) == 0;
        } else if (header_is(line, n, "Sec-WebSocket-Protocol", &v, &vl)) {
            proto_ok = vl == strlen(protocol) && memcmp(v, protocol, vl) == 0;
        }
    }
    if (!upgrade || !accept_ok || !proto_ok) {
        set_err(w, "handshake: %s", !upgrade ? "no Upgrade: websocket" : !accept_ok ? "bad Sec-WebSocket-Accept"
                                                                                   : "wrong subprotocol");
        goto out;
    }
    /* Bytes after the head already belong to the WebSocket stream. */
    w->rx_off = head_len;
    rv = EDGE_OK;
out:
    edge_buf_free(&acc);
    return rv;
}

/* One masked frame (RFC 6455 §5.2, §5.3: every client frame is masked). */
int edge_wsc_send(struct edge_wsc *w, uint8_t opcode, const uint8_t *data, size_t len)
{
    uint8_t hdr[14], mask[4];
    size_t h = 0;
    hdr[h++] = (uint8_t)(0x80 | opcode);
    if (len < 126) {
        hdr[h++] = (uint8_t)(0x80 | len);
    } else if (len <= 0xffff) {
        hdr[h++] = 0x80 | 126;
        hdr[h++] = (uint8_t)(len >> 8);
        hdr[h++] = (uint8_t)len;
    } else {
        hdr[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--) {
            hdr[h++] = (uint8_t)((uint64_t)len >> (8 * i));
        }
    }
    randombytes_buf(mask, sizeof(mask));
    memcpy(hdr + h, mask, 4);
    h += 4;
    edge_buf_reset(&w->tx);
    int rv = edge_buf_reserve(&w->tx, h + len);
    if (rv != EDGE_OK) {
        set_err(w, "send: %s", edge_strerror(rv));
        return rv;
    }
    memcpy(w->tx.data, hdr, h);
    uint8_t *dst = (uint8_t *)w->tx.data + h;
    for (size_t i = 0; i < len; i++) {
        dst[i] = data[i] ^ mask[i & 3];
    }
    w->tx.len = h + len;
    return send_all(w, w->tx.data, w->tx.len);
}


/* Parse frames from rx until a whole data message is in w->msg (*out_have = true) or
 * the buffer holds no complete frame. Control frames are answered here. */
int edge_wsc_parse(struct edge_wsc *w, bool *out_have)
{
    *out_have = false;
    for (int guard = 0; guard < 100000; guard++) {
        const uint8_t *b = (const uint8_t *)w->rx.data + w->rx_off;
        size_t avail = w->rx.len - w->rx_off;
        if (avail < 2) {
            return EDGE_OK;
        }
        uint8_t op = b[0] & 0x0f;
        bool fin = (b[0] & 0x80) != 0;
        size_t hdr = 2;
        uint64_t len = b[1] & 0x7f;
        if (b[0] & 0x70) {
            set_err(w, "protocol: reserved bits set");
            return EDGE_EPROTO;
        }
        if (b[1] & 0x80) {
            set_err(w, "protocol: masked frame from server");
            return EDGE_EPROTO;
        }
        if (len == 126) {
            if (avail < 4) {
                return EDGE_OK;
            }
            len = ((uint64_t)b[2] << 8) | b[3];
            hdr = 4;
        } else if (len == 127) {
            if (avail < 10) {
                return EDGE_OK;
            }
            len = 0;
            for (int i = 0; i < 8; i++) {
                len = (len << 8) | b[2 + i];
            }
            hdr = 10;
        }
        if (len > w->max_frame) {
            set_err(w, "protocol: frame of %llu bytes", (unsigned long long)len);
            return EDGE_EPROTO;
        }
        if (avail - hdr < len) {
            return EDGE_OK;
        }
        const uint8_t *pay = b + hdr;
        w->rx_off += hdr + (size_t)len;
        if (op >= 0x8) {
            if (!fin || len > 125) {
                set_err(w, "protocol: bad control frame");
                return EDGE_EPROTO;
            }
            if (op == 0x8) {
                set_err(w, "connection closed by peer (WebSocket close)");
                return EDGE_ECLOSED;
            }
            if (op == 0x9) {
                int rv = edge_wsc_send(w, 0xA, pay, (size_t)len);
                if (rv != EDGE_OK) {
                    return rv;
                }
            } else if (op != 0xA) {
                set_err(w, "protocol: unknown control opcode %u", op);
                return EDGE_EPROTO;
            }
            continue;
        }
        if (op == 0x0) {
            if (!w->in_frag) {
                set_err(w, "protocol: unexpected continuation frame");
                return EDGE_EPROTO;
            }
        } else if (op == 0x2) {
            if (w->in_frag) {
                set_err(w, "protocol: new message inside a fragmented one");
                return EDGE_EPROTO;
            }
            edge_buf_reset(&w->msg);
        } else {
            set_err(w, "protocol: unexpected opcode %u", op);
            return EDGE_EPROTO;
        }
        int rv = edge_buf_append(&w->msg, pay, (size_t)len);
        if (rv != EDGE_OK) {
            set_err(w, "protocol: message too large");
            return rv == EDGE_ETOOBIG ? EDGE_EPROTO : rv;
        }
        w->in_frag = !fin;
        if (fin) {
            *out_have = true;
            return EDGE_OK;
        }
    }
    return EDGE_OK;
}
