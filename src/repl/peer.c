/* SPDX-License-Identifier: MIT */
/* The outbound peer link (repl/peer.h): TCP connect, the RFC 6455 client handshake and
 * framing, the HELLO exchange and the push loop, all on one thread with blocking
 * sockets driven by poll() so a wake pipe interrupts any wait (stop, notify).
 *
 * DESIGN: the client side of WebSocket is small (masked frames out, unmasked frames
 * in, RFC 6455 §5), so it is written here rather than pulling libwslay into
 * edge_repl. Every wait goes through poll() on {socket, wake pipe}, which is why stop
 * is noticed at once even mid-connect. A batch is built with one read transaction and
 * one statement per origin, merged by HLC (the receiver applies in order, and an
 * origin's entries stay in seq order because the merge only ever takes heads).
 *
 * Pipelining: up to max_in_flight ENTRIES messages await their ACK. Each one records
 * the "sent" VV after it; the peer answers one ACK per ENTRIES in order, so the oldest
 * record is the one an ACK answers, and an ACK below its record means the peer skipped
 * something (a gap): nothing new is sent until the in-flight messages are answered,
 * then "sent" falls back to "acked" and the link resends from there.
 *
 * WAN emulation without sleeping: outgoing messages wait in a queue until their due
 * time (queued + one_way_delay) and incoming ones in another until arrival +
 * one_way_delay, so many messages are "on the wire" at once, like on a real network.
 * Only the serial handshake still sleeps. */
#include "repl/peer.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>
#include <sqlite3.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/log.h"
#include "core/sha1.h"
#include "edgelite/errors.h"
#include "repl/proto.h"

#define CONNECT_TIMEOUT_MS 2000
#define HANDSHAKE_TIMEOUT_MS 5000
#define ACK_TIMEOUT_MS 10000
#define IO_TIMEOUT_MS 10000
#define PING_EVERY_MS 1000
#define PING_TIMEOUT_MS 10000
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define RECV_CHUNK 65536
#define IN_FLIGHT_DEFAULT 8
#define IN_FLIGHT_MAX 32        /* the node queues at most 64 messages per inbound link */
#define OUTQ_EXTRA 16           /* PING/PONG room next to the ENTRIES in the send queue */
#define INQ_MAX 64              /* received messages waiting for their emulated arrival */
#define INQ_BYTES_MAX (4u << 20) /* ... and their bytes; reading pauses beyond either */
#define HTTP_HEAD_MAX 8192
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

enum link_state { ST_CHALLENGE, ST_HELLO, ST_READY };

/* A protocol message waiting for its (emulated) time to leave or to be handled. */
struct qmsg {
    uint64_t due_ms;
    size_t n_entries; /* ENTRIES on the send queue: entries inside (statistics); else 0 */
    struct edge_buf b;
};

/* FIFO ring of messages; slots keep their buffers for reuse. */
struct mqueue {
    struct qmsg *slots;
    size_t cap, head, len, bytes;
};

/* One ENTRIES message awaiting its ACK. */
struct flight {
    struct edge_vclock sent; /* p->sent right after it was built: its ACK must cover this */
    uint64_t built_us;       /* when it was built (monotonic) */
    uint64_t deadline_ms;    /* the ACK is overdue after this */
};

struct edge_peer {
    /* immutable after start */
    char *db_path, *local_region, *cluster, *secret, *peer_region;
    char host[256], port[8];
    int one_way_delay_ms, sync_interval_ms, max_batch_entries, max_in_flight;
    size_t max_batch_bytes;
    void (*on_ack)(void *ud, const char *peer_region);
    void *ud;
    pthread_t thread;
    int wake[2];            /* pipe: any byte interrupts the link thread's poll */
    atomic_bool stopping;   /* set once by edge_peer_stop */
    atomic_bool notified;   /* new entries since the last push */

    pthread_mutex_t mu;           /* guards st */
    struct edge_peer_status st;   /* published copy */

    /* link thread only */
    sqlite3 *db;
    int fd;
    enum link_state state;
    struct edge_buf rx;       /* bytes received, parsed from rx_off */
    size_t rx_off;
    struct edge_buf msg;      /* message being reassembled from fragments */
    bool in_frag;
    struct edge_buf out;      /* protocol message being built */
    struct edge_buf tx;       /* masked frame being sent */
    struct edge_vclock peer_vv;  /* "acked": the peer's VV (HELLO_OK, then max of the ACKs) */
    struct edge_vclock sent;     /* "sent": peer_vv plus everything put on the wire since */
    struct edge_vclock progress; /* peer_vv at the last fallback (or session start) */
    struct mqueue outq, inq;
    struct flight *flights;      /* ring of max_in_flight */
    size_t fl_head, fl_len;
    bool want;                   /* a trigger asked for a push and the log may have more */
    bool draining;               /* a gap was seen: send nothing new until all ACKs are in */
    uint64_t ping_t_ms;       /* send time of the outstanding PING, 0 if none */
    uint64_t ping_us;         /* the same instant, finer, for wire_rtt_us */
    uint64_t wire_rtt_us;     /* smallest PING round trip this session (2 delays before the first) */
    bool have_rtt;            /* wire_rtt_us comes from a PONG */
    char err[128];
};

/* ---------------------------------------------------------------------------------- */
/* helpers                                                                            */
/* ---------------------------------------------------------------------------------- */

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void set_err(struct edge_peer *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_err(struct edge_peer *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err, sizeof(p->err), fmt, ap);
    va_end(ap);
}

static bool stopping(struct edge_peer *p)
{
    return atomic_load(&p->stopping);
}

static void drain_wake(struct edge_peer *p)
{
    char junk[64];
    for (int i = 0; i < 16 && read(p->wake[0], junk, sizeof(junk)) > 0; i++) {
    }
}

/* Wait up to timeout_ms for events on the socket (if events != 0) or a wake-up.
 * *out_ready gets the socket's revents (0 on timeout or wake). EDGE_ECLOSED once
 * stopping. */
static int wait_io(struct edge_peer *p, short events, int timeout_ms, short *out_ready)
{
    struct pollfd pf[2] = {{.fd = p->wake[0], .events = POLLIN}, {.fd = p->fd, .events = events}};
    *out_ready = 0;
    if (stopping(p)) {
        return EDGE_ECLOSED;
    }
    int n = poll(pf, events ? 2 : 1, timeout_ms < 0 ? 0 : timeout_ms);
    if (n < 0 && errno != EINTR) {
        set_err(p, "poll: %s", strerror(errno));
        return EDGE_EIO;
    }
    if (n > 0 && (pf[0].revents & POLLIN)) {
        drain_wake(p);
    }
    if (stopping(p)) {
        return EDGE_ECLOSED;
    }
    if (n > 0 && events) {
        *out_ready = pf[1].revents;
    }
    return EDGE_OK;
}

/* Interruptible sleep: only stop cuts it short (a notify is remembered in the flag). */
static int sleep_ms(struct edge_peer *p, int ms)
{
    uint64_t deadline = now_ms() + (uint64_t)(ms > 0 ? ms : 0);
    for (int i = 0; i < 100000; i++) {
        uint64_t now = now_ms();
        short r;
        if (now >= deadline) {
            return stopping(p) ? EDGE_ECLOSED : EDGE_OK;
        }
        int rv = wait_io(p, 0, (int)(deadline - now), &r);
        if (rv != EDGE_OK) {
            return rv;
        }
    }
    return EDGE_OK;
}

static void publish(struct edge_peer *p, void (*fn)(struct edge_peer_status *st, void *arg), void *arg)
{
    pthread_mutex_lock(&p->mu);
    fn(&p->st, arg);
    pthread_mutex_unlock(&p->mu);
}

static void pub_acked(struct edge_peer_status *st, void *arg)
{
    struct edge_peer *p = arg;
    (void)edge_vclock_copy(&st->acked, &p->peer_vv);
}

static void pub_connected(struct edge_peer_status *st, void *arg)
{
    st->connected = *(bool *)arg;
}

static void pub_in_flight(struct edge_peer_status *st, void *arg)
{
    struct edge_peer *p = arg;
    st->in_flight = (int)p->fl_len;
}

/* ---- message queues (emulated wire) ---- */

static int mq_init(struct mqueue *q, size_t cap)
{
    q->slots = edge_calloc(cap, sizeof(*q->slots));
    if (q->slots == NULL) {
        return EDGE_ENOMEM;
    }
    q->cap = cap;
    for (size_t i = 0; i < cap; i++) {
        edge_buf_init(&q->slots[i].b, EDGE_REPL_FRAME_MAX);
    }
    return EDGE_OK;
}

static void mq_free(struct mqueue *q)
{
    for (size_t i = 0; q->slots != NULL && i < q->cap; i++) {
        edge_buf_free(&q->slots[i].b);
    }
    edge_free(q->slots);
    memset(q, 0, sizeof(*q));
}

static bool mq_full(const struct mqueue *q)
{
    return q->len == q->cap;
}

static struct qmsg *mq_front(struct mqueue *q)
{
    return q->len > 0 ? &q->slots[q->head] : NULL;
}

/* Move *b to the tail by swapping buffers (no copy); *b comes back empty. The caller
 * checked that the queue is not full. Every buffer involved has the same max. */
static void mq_push(struct mqueue *q, struct edge_buf *b, uint64_t due_ms, size_t n_entries)
{
    struct qmsg *m = &q->slots[(q->head + q->len) % q->cap];
    struct edge_buf t = m->b;
    m->b = *b;
    *b = t;
    edge_buf_reset(b);
    m->due_ms = due_ms;
    m->n_entries = n_entries;
    q->len++;
    q->bytes += m->b.len;
}

static void mq_pop(struct mqueue *q)
{
    struct qmsg *m = &q->slots[q->head];
    q->bytes -= m->b.len;
    /* A big batch would otherwise pin its memory in the slot for the link's lifetime. */
    if (m->b.cap > 4 * RECV_CHUNK) {
        edge_buf_free(&m->b);
    } else {
        edge_buf_reset(&m->b);
    }
    q->head = (q->head + 1) % q->cap;
    q->len--;
}

static void mq_clear(struct mqueue *q)
{
    for (size_t i = 0; i < q->cap && q->len > 0; i++) {
        mq_pop(q);
    }
    q->head = 0;
}

/* Forget everything in flight: the next session starts from the peer's HELLO_OK VV. */
static void pipeline_reset(struct edge_peer *p)
{
    for (size_t i = 0; p->flights != NULL && i < p->fl_len; i++) {
        edge_vclock_close(&p->flights[(p->fl_head + i) % (size_t)p->max_in_flight].sent);
    }
    p->fl_head = 0;
    p->fl_len = 0;
    mq_clear(&p->outq);
    mq_clear(&p->inq);
    p->want = false;
    p->draining = false;
}

/* ---------------------------------------------------------------------------------- */
/* socket                                                                             */
/* ---------------------------------------------------------------------------------- */

static void close_conn(struct edge_peer *p)
{
    if (p->fd >= 0) {
        close(p->fd);
        p->fd = -1;
    }
    edge_buf_reset(&p->rx);
    p->rx_off = 0;
    edge_buf_reset(&p->msg);
    p->in_frag = false;
    p->ping_t_ms = 0;
    pipeline_reset(p);
    bool f = false;
    publish(p, pub_connected, &f);
    publish(p, pub_in_flight, p);
}

static int tcp_connect(struct edge_peer *p)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int g = getaddrinfo(p->host, p->port, &hints, &res);
    if (g != 0 || res == NULL) {
        set_err(p, "resolve %s: %s", p->host, gai_strerror(g));
        return EDGE_EIO;
    }
    int rv = EDGE_EIO;
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        set_err(p, "socket: %s", strerror(errno));
        goto out;
    }
    p->fd = fd;
    if (connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
        if (errno != EINPROGRESS) {
            set_err(p, "connect %s:%s: %s", p->host, p->port, strerror(errno));
            goto out;
        }
        uint64_t deadline = now_ms() + CONNECT_TIMEOUT_MS;
        short r = 0;
        for (int i = 0; i < 10000 && r == 0; i++) {
            uint64_t now = now_ms();
            if (now >= deadline) {
                set_err(p, "connect %s:%s: timed out", p->host, p->port);
                rv = EDGE_ETIMEDOUT;
                goto out;
            }
            rv = wait_io(p, POLLOUT, (int)(deadline - now), &r);
            if (rv != EDGE_OK) {
                goto out;
            }
            rv = EDGE_EIO;
        }
        int soerr = 0;
        socklen_t sl = sizeof(soerr);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr != 0) {
            set_err(p, "connect %s:%s: %s", p->host, p->port, strerror(soerr ? soerr : errno));
            goto out;
        }
    }
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    rv = EDGE_OK;
out:
    freeaddrinfo(res);
    return rv;
}

static int send_all(struct edge_peer *p, const void *data, size_t len)
{
    const char *d = data;
    size_t off = 0;
    uint64_t deadline = now_ms() + IO_TIMEOUT_MS;
    /* Each pass sends something or waits; the deadline bounds the passes. */
    while (off < len) {
        ssize_t n = send(p->fd, d + off, len - off, MSG_NOSIGNAL);
        if (n > 0) {
            off += (size_t)n;
            continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            set_err(p, "send: %s", strerror(errno));
            return EDGE_EIO;
        }
        uint64_t now = now_ms();
        if (now >= deadline) {
            set_err(p, "send: timed out");
            return EDGE_ETIMEDOUT;
        }
        short r;
        int rv = wait_io(p, POLLOUT, (int)(deadline - now), &r);
        if (rv != EDGE_OK) {
            return rv;
        }
    }
    return EDGE_OK;
}

/* Read what is available after waiting up to timeout_ms. EDGE_OK also on timeout or
 * wake (nothing read); EDGE_ECLOSED on EOF or stop. */
static int recv_some(struct edge_peer *p, int timeout_ms)
{
    short r;
    int rv = wait_io(p, POLLIN, timeout_ms, &r);
    if (rv != EDGE_OK || r == 0) {
        return rv;
    }
    if (p->rx_off > 0) {
        memmove(p->rx.data, p->rx.data + p->rx_off, p->rx.len - p->rx_off);
        p->rx.len -= p->rx_off;
        p->rx_off = 0;
    }
    rv = edge_buf_reserve(&p->rx, RECV_CHUNK);
    if (rv != EDGE_OK) {
        set_err(p, "recv: buffer: %s", edge_strerror(rv));
        return rv;
    }
    ssize_t n = recv(p->fd, p->rx.data + p->rx.len, RECV_CHUNK, 0);
    if (n == 0) {
        set_err(p, "connection closed by peer");
        return EDGE_ECLOSED;
    }
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
            return EDGE_OK;
        }
        set_err(p, "recv: %s", strerror(errno));
        return EDGE_EIO;
    }
    p->rx.len += (size_t)n;
    p->rx.data[p->rx.len] = '\0';
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

static int ws_handshake(struct edge_peer *p)
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
                      "GET /v1/peer HTTP/1.1\r\nHost: %s:%s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: %s\r\n"
                      "X-Edge-Region: %s\r\n\r\n",
                      p->host, p->port, key, EDGE_REPL_WS_PROTOCOL, p->local_region);
    if (rn < 0 || (size_t)rn >= sizeof(req)) {
        rv = EDGE_EINVAL;
        set_err(p, "handshake: request too long");
        goto out;
    }
    rv = send_all(p, req, (size_t)rn);
    if (rv != EDGE_OK) {
        goto out;
    }
    uint64_t deadline = now_ms() + HANDSHAKE_TIMEOUT_MS;
    char *end = NULL;
    for (int i = 0; i < 100000; i++) {
        end = p->rx.len ? strstr(p->rx.data, "\r\n\r\n") : NULL;
        if (end != NULL) {
            break;
        }
        if (p->rx.len > HTTP_HEAD_MAX) {
            set_err(p, "handshake: response head too large");
            rv = EDGE_EPROTO;
            goto out;
        }
        uint64_t now = now_ms();
        if (now >= deadline) {
            set_err(p, "handshake: timed out");
            rv = EDGE_ETIMEDOUT;
            goto out;
        }
        rv = recv_some(p, (int)(deadline - now));
        if (rv != EDGE_OK) {
            goto out;
        }
    }
    rv = EDGE_EPROTO;
    if (end == NULL) {
        set_err(p, "handshake: timed out");
        goto out;
    }
    size_t head_len = (size_t)(end - p->rx.data) + 4;
    const char *line = p->rx.data;
    const char *eol = strstr(line, "\r\n");
    if (strncmp(line, "HTTP/1.1 101", 12) != 0) {
        int sl = (int)(eol - line);
        set_err(p, "handshake: %.*s", sl > 80 ? 80 : sl, line);
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
            proto_ok = vl == strlen(EDGE_REPL_WS_PROTOCOL) && memcmp(v, EDGE_REPL_WS_PROTOCOL, vl) == 0;
        }
    }
    if (!upgrade || !accept_ok || !proto_ok) {
        set_err(p, "handshake: %s", !upgrade ? "no Upgrade: websocket" : !accept_ok ? "bad Sec-WebSocket-Accept"
                                                                                   : "wrong subprotocol");
        goto out;
    }
    /* Bytes after the head already belong to the WebSocket stream. */
    p->rx_off = head_len;
    rv = EDGE_OK;
out:
    edge_buf_free(&acc);
    return rv;
}

/* One masked frame (RFC 6455 §5.2, §5.3: every client frame is masked). */
static int ws_send_frame(struct edge_peer *p, uint8_t opcode, const uint8_t *data, size_t len)
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
    edge_buf_reset(&p->tx);
    int rv = edge_buf_reserve(&p->tx, h + len);
    if (rv != EDGE_OK) {
        set_err(p, "send: %s", edge_strerror(rv));
        return rv;
    }
    memcpy(p->tx.data, hdr, h);
    uint8_t *dst = (uint8_t *)p->tx.data + h;
    for (size_t i = 0; i < len; i++) {
        dst[i] = data[i] ^ mask[i & 3];
    }
    p->tx.len = h + len;
    return send_all(p, p->tx.data, p->tx.len);
}

/* Send the protocol message in p->out as one binary frame after sleeping the emulated
 * delay: only for the serial handshake, where nothing could overlap anyway. */
static int send_now(struct edge_peer *p)
{
    int rv = sleep_ms(p, p->one_way_delay_ms);
    if (rv == EDGE_OK) {
        rv = ws_send_frame(p, 0x2, (const uint8_t *)p->out.data, p->out.len);
    }
    return rv;
}

/* Queue the protocol message in p->out to leave one emulated delay from now; p->out
 * comes back empty. n_entries: ENTRIES count for the statistics, else 0. */
static int queue_msg(struct edge_peer *p, size_t n_entries)
{
    if (mq_full(&p->outq)) {
        /* Only a peer flooding PINGs can get here: ENTRIES are bounded by the window. */
        set_err(p, "protocol: send queue full");
        return EDGE_EPROTO;
    }
    mq_push(&p->outq, &p->out, now_ms() + (uint64_t)p->one_way_delay_ms, n_entries);
    return EDGE_OK;
}

static void pub_sent(struct edge_peer_status *st, void *arg)
{
    const struct qmsg *m = arg;
    st->entries_sent += m->n_entries;
    st->bytes_sent += m->b.len;
    st->batches_sent++;
}

/* Send, oldest first, every queued message whose time has come. */
static int flush_out(struct edge_peer *p, uint64_t now)
{
    for (size_t i = 0; i < p->outq.cap; i++) {
        struct qmsg *m = mq_front(&p->outq);
        if (m == NULL || m->due_ms > now) {
            break;
        }
        int rv = ws_send_frame(p, 0x2, (const uint8_t *)m->b.data, m->b.len);
        if (rv != EDGE_OK) {
            return rv;
        }
        if (m->n_entries > 0) {
            publish(p, pub_sent, m);
        }
        mq_pop(&p->outq);
    }
    return EDGE_OK;
}

/* Parse frames from rx until a whole data message is in p->msg (*out_have = true) or
 * the buffer holds no complete frame. Control frames are answered here. */
static int ws_parse(struct edge_peer *p, bool *out_have)
{
    *out_have = false;
    for (int guard = 0; guard < 100000; guard++) {
        const uint8_t *b = (const uint8_t *)p->rx.data + p->rx_off;
        size_t avail = p->rx.len - p->rx_off;
        if (avail < 2) {
            return EDGE_OK;
        }
        uint8_t op = b[0] & 0x0f;
        bool fin = (b[0] & 0x80) != 0;
        size_t hdr = 2;
        uint64_t len = b[1] & 0x7f;
        if (b[0] & 0x70) {
            set_err(p, "protocol: reserved bits set");
            return EDGE_EPROTO;
        }
        if (b[1] & 0x80) {
            set_err(p, "protocol: masked frame from server");
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
        if (len > EDGE_REPL_FRAME_MAX) {
            set_err(p, "protocol: frame of %llu bytes", (unsigned long long)len);
            return EDGE_EPROTO;
        }
        if (avail - hdr < len) {
            return EDGE_OK;
        }
        const uint8_t *pay = b + hdr;
        p->rx_off += hdr + (size_t)len;
        if (op >= 0x8) {
            if (!fin || len > 125) {
                set_err(p, "protocol: bad control frame");
                return EDGE_EPROTO;
            }
            if (op == 0x8) {
                set_err(p, "connection closed by peer (WebSocket close)");
                return EDGE_ECLOSED;
            }
            if (op == 0x9) {
                int rv = ws_send_frame(p, 0xA, pay, (size_t)len);
                if (rv != EDGE_OK) {
                    return rv;
                }
            } else if (op != 0xA) {
                set_err(p, "protocol: unknown control opcode %u", op);
                return EDGE_EPROTO;
            }
            continue;
        }
        if (op == 0x0) {
            if (!p->in_frag) {
                set_err(p, "protocol: unexpected continuation frame");
                return EDGE_EPROTO;
            }
        } else if (op == 0x2) {
            if (p->in_frag) {
                set_err(p, "protocol: new message inside a fragmented one");
                return EDGE_EPROTO;
            }
            edge_buf_reset(&p->msg);
        } else {
            set_err(p, "protocol: unexpected opcode %u", op);
            return EDGE_EPROTO;
        }
        int rv = edge_buf_append(&p->msg, pay, (size_t)len);
        if (rv != EDGE_OK) {
            set_err(p, "protocol: message too large");
            return rv == EDGE_ETOOBIG ? EDGE_EPROTO : rv;
        }
        p->in_frag = !fin;
        if (fin) {
            *out_have = true;
            return EDGE_OK;
        }
    }
    return EDGE_OK;
}

/* Handshake only: next whole message into p->msg, waiting until deadline (*out_have
 * false on timeout), then sleeping the emulated receive delay. */
static int next_msg(struct edge_peer *p, uint64_t deadline, bool *out_have)
{
    *out_have = false;
    for (int i = 0; i < 1000000; i++) {
        int rv = ws_parse(p, out_have);
        if (rv != EDGE_OK) {
            return rv;
        }
        if (*out_have) {
            return sleep_ms(p, p->one_way_delay_ms);
        }
        uint64_t now = now_ms();
        if (now >= deadline) {
            return EDGE_OK;
        }
        rv = recv_some(p, (int)(deadline - now));
        if (rv != EDGE_OK) {
            return rv;
        }
    }
    return EDGE_OK;
}

static bool inq_has_room(const struct edge_peer *p)
{
    return !mq_full(&p->inq) && p->inq.bytes < INQ_BYTES_MAX;
}

/* Move every whole message already received to the receive queue, stamped with its
 * emulated arrival (now + one_way_delay), while the queue has room. */
static int take_rx(struct edge_peer *p)
{
    for (size_t i = 0; i < INQ_MAX && inq_has_room(p); i++) {
        bool have = false;
        int rv = ws_parse(p, &have);
        if (rv != EDGE_OK || !have) {
            return rv;
        }
        mq_push(&p->inq, &p->msg, now_ms() + (uint64_t)p->one_way_delay_ms, 0);
    }
    return EDGE_OK;
}

/* ---------------------------------------------------------------------------------- */
/* protocol                                                                           */
/* ---------------------------------------------------------------------------------- */

static int peer_error(struct edge_peer *p, const uint8_t *m, size_t len)
{
    struct edge_repl_error er;
    if (edge_repl_decode_error(m, len, &er) != EDGE_OK) {
        set_err(p, "protocol: malformed ERROR");
        return EDGE_EPROTO;
    }
    set_err(p, "peer error %s: %s", er.code, er.message);
    return strcmp(er.code, "AUTH") == 0 ? EDGE_EAUTH : EDGE_EPROTO;
}

static int read_local_vv(struct edge_peer *p, struct edge_vclock *vv)
{
    sqlite3_stmt *st = NULL;
    int rv = EDGE_ESTORE;
    if (sqlite3_prepare_v2(p->db, "SELECT origin, seq FROM _edge_vv", -1, &st, NULL) != SQLITE_OK) {
        set_err(p, "log: %s", sqlite3_errmsg(p->db));
        goto out;
    }
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *o = (const char *)sqlite3_column_text(st, 0);
        sqlite3_int64 s = sqlite3_column_int64(st, 1);
        /* A row this link cannot name on the wire is skipped rather than fatal. */
        if (o != NULL && s > 0 && edge_vclock_region_valid(o)) {
            int r2 = edge_vclock_set(vv, o, (uint64_t)s);
            if (r2 != EDGE_OK) {
                rv = r2;
                goto out;
            }
        }
    }
    if (rc != SQLITE_DONE) {
        set_err(p, "log: %s", sqlite3_errmsg(p->db));
        goto out;
    }
    rv = EDGE_OK;
out:
    sqlite3_finalize(st);
    return rv;
}

/* An ACK answers the oldest ENTRIES in flight (the peer answers each in order). */
static int got_ack(struct edge_peer *p, const struct edge_vclock *vv)
{
    /* Monotonic max: the peer's VV only grows, and it may include entries it learnt
     * from a third region, which then need not be sent from here either. */
    int rv = edge_vclock_merge(&p->peer_vv, vv);
    if (rv == EDGE_OK) {
        rv = edge_vclock_merge(&p->sent, vv);
    }
    if (rv != EDGE_OK) {
        set_err(p, "ACK: %s", edge_strerror(rv));
        return rv;
    }
    if (p->fl_len > 0) {
        struct flight *f = &p->flights[p->fl_head];
        enum edge_vclock_order o = edge_vclock_compare(&f->sent, &p->peer_vv);
        if (o != EDGE_VCLOCK_EQUAL && o != EDGE_VCLOCK_BEFORE) {
            /* Something in this batch was not applied (e.g. a gap the peer could not
             * bridge yet); later batches in flight will not be either. */
            p->draining = true;
        }
        edge_vclock_close(&f->sent);
        p->fl_head = (p->fl_head + 1) % (size_t)p->max_in_flight;
        p->fl_len--;
    }
    if (p->draining && p->fl_len == 0) {
        /* Everything sent is answered: resend from what the peer really has. Without
         * progress since the last fallback, wait for the next trigger rather than
         * hammer a peer that cannot apply. */
        bool progress = edge_vclock_compare(&p->progress, &p->peer_vv) == EDGE_VCLOCK_BEFORE;
        rv = edge_vclock_copy(&p->sent, &p->peer_vv);
        if (rv == EDGE_OK) {
            rv = edge_vclock_copy(&p->progress, &p->peer_vv);
        }
        if (rv != EDGE_OK) {
            set_err(p, "ACK: %s", edge_strerror(rv));
            return rv;
        }
        p->draining = false;
        p->want = progress;
        pthread_mutex_lock(&p->mu);
        p->st.resends++;
        pthread_mutex_unlock(&p->mu);
    }
    publish(p, pub_acked, p);
    publish(p, pub_in_flight, p);
    if (p->on_ack != NULL) {
        p->on_ack(p->ud, p->peer_region);
    }
    return EDGE_OK;
}

/* Handle a message that may arrive at any time once ready. */
static int handle_msg(struct edge_peer *p, const uint8_t *m, size_t len)
{
    int type = 0;
    uint64_t t = 0;
    if (edge_repl_msg_type(m, len, &type) != EDGE_OK) {
        set_err(p, "protocol: bad message type");
        return EDGE_EPROTO;
    }
    switch (type) {
    case EDGE_REPL_MSG_PING:
        if (edge_repl_decode_ping(m, len, &t) != EDGE_OK) {
            break;
        }
        edge_buf_reset(&p->out);
        return edge_repl_encode_pong(&p->out, t) == EDGE_OK ? queue_msg(p, 0) : EDGE_ENOMEM;
    case EDGE_REPL_MSG_PONG:
        if (edge_repl_decode_pong(m, len, &t) != EDGE_OK) {
            break;
        }
        if (p->ping_t_ms != 0 && t == p->ping_t_ms) {
            double sample = (double)(now_ms() - p->ping_t_ms);
            uint64_t us = now_us() - p->ping_us;
            /* The smallest sample is the one that queued least behind batches at the peer. */
            if (!p->have_rtt || us < p->wire_rtt_us) {
                p->wire_rtt_us = us;
                p->have_rtt = true;
            }
            p->ping_t_ms = 0;
            pthread_mutex_lock(&p->mu);
            p->st.rtt_ms = p->st.rtt_ms == 0 ? sample : 0.7 * p->st.rtt_ms + 0.3 * sample;
            pthread_mutex_unlock(&p->mu);
        }
        return EDGE_OK;
    case EDGE_REPL_MSG_ACK: {
        struct edge_vclock vv;
        edge_vclock_init(&vv);
        if (edge_repl_decode_ack(m, len, &vv) != EDGE_OK) {
            break;
        }
        int rv = got_ack(p, &vv);
        edge_vclock_close(&vv);
        return rv;
    }
    case EDGE_REPL_MSG_ERROR:
        return peer_error(p, m, len);
    default:
        set_err(p, "protocol: unexpected message type %d", type);
        return EDGE_EPROTO;
    }
    set_err(p, "protocol: malformed message type %d", type);
    return EDGE_EPROTO;
}

static int expect(struct edge_peer *p, int want, const char *what)
{
    bool have = false;
    int type = 0;
    int rv = next_msg(p, now_ms() + IO_TIMEOUT_MS, &have);
    if (rv != EDGE_OK) {
        return rv;
    }
    if (!have) {
        set_err(p, "timed out waiting for %s", what);
        return EDGE_ETIMEDOUT;
    }
    if (edge_repl_msg_type((const uint8_t *)p->msg.data, p->msg.len, &type) != EDGE_OK) {
        set_err(p, "protocol: bad message type while waiting for %s", what);
        return EDGE_EPROTO;
    }
    if (type == EDGE_REPL_MSG_ERROR) {
        return peer_error(p, (const uint8_t *)p->msg.data, p->msg.len);
    }
    if (type != want) {
        set_err(p, "protocol: got type %d while waiting for %s", type, what);
        return EDGE_EPROTO;
    }
    return EDGE_OK;
}

static int hello(struct edge_peer *p)
{
    uint8_t nonce[EDGE_REPL_NONCE_LEN];
    struct edge_repl_hello h;
    struct edge_repl_hello_ok ok;
    memset(&h, 0, sizeof(h));
    edge_vclock_init(&h.vv);
    p->state = ST_CHALLENGE;
    int rv = expect(p, EDGE_REPL_MSG_CHALLENGE, "CHALLENGE");
    if (rv != EDGE_OK) {
        goto out;
    }
    if (edge_repl_decode_challenge((const uint8_t *)p->msg.data, p->msg.len, nonce) != EDGE_OK) {
        set_err(p, "protocol: malformed CHALLENGE");
        rv = EDGE_EPROTO;
        goto out;
    }
    h.version = EDGE_REPL_PROTO_VERSION;
    snprintf(h.cluster, sizeof(h.cluster), "%s", p->cluster);
    snprintf(h.region, sizeof(h.region), "%s", p->local_region);
    rv = edge_repl_hello_mac(p->secret, nonce, h.cluster, h.region, h.mac);
    if (rv == EDGE_OK) {
        rv = read_local_vv(p, &h.vv);
    }
    if (rv == EDGE_OK) {
        edge_buf_reset(&p->out);
        rv = edge_repl_encode_hello(&p->out, &h);
    }
    if (rv == EDGE_OK) {
        p->state = ST_HELLO;
        rv = send_now(p);
    }
    if (rv == EDGE_OK) {
        rv = expect(p, EDGE_REPL_MSG_HELLO_OK, "HELLO_OK");
    }
    if (rv != EDGE_OK) {
        goto out;
    }
    if (edge_repl_decode_hello_ok((const uint8_t *)p->msg.data, p->msg.len, &ok) != EDGE_OK) {
        set_err(p, "protocol: malformed HELLO_OK");
        rv = EDGE_EPROTO;
        goto out;
    }
    if (strcmp(ok.region, p->peer_region) != 0) {
        set_err(p, "peer is region %s, expected %s", ok.region, p->peer_region);
        edge_vclock_close(&ok.vv);
        rv = EDGE_ECONFIG;
        goto out;
    }
    edge_vclock_close(&p->peer_vv);
    p->peer_vv = ok.vv;
    /* Whatever was on the wire before is lost or answered: start from the peer's word. */
    rv = edge_vclock_copy(&p->sent, &p->peer_vv);
    if (rv == EDGE_OK) {
        rv = edge_vclock_copy(&p->progress, &p->peer_vv);
    }
    if (rv != EDGE_OK) {
        set_err(p, "HELLO_OK: %s", edge_strerror(rv));
        goto out;
    }
    p->state = ST_READY;
    bool t = true;
    publish(p, pub_acked, p);
    publish(p, pub_connected, &t);
out:
    sodium_memzero(nonce, sizeof(nonce));
    edge_repl_hello_close(&h);
    return rv;
}

/* ---- batch building ---- */

struct head {
    const char *origin;   /* borrowed from the local VV */
    sqlite3_stmt *st;
    uint64_t next_seq;    /* seq the current row must have */
    bool live;            /* st is on a row */
};

static int head_step(struct edge_peer *p, struct head *h)
{
    int rc = sqlite3_step(h->st);
    if (rc == SQLITE_DONE) {
        h->live = false;
        return EDGE_OK;
    }
    if (rc != SQLITE_ROW) {
        set_err(p, "log: %s", sqlite3_errmsg(p->db));
        return EDGE_ESTORE;
    }
    /* Contiguity within an origin: stop at a hole rather than ship past it. */
    h->live = (uint64_t)sqlite3_column_int64(h->st, 0) == h->next_seq;
    return EDGE_OK;
}

/* Build the next ENTRIES message in p->out from what p->sent lacks and advance p->sent
 * past it; *out_n = 0 when nothing is pending. */
static int build_batch(struct edge_peer *p, size_t *out_n)
{
    struct edge_vclock local;
    struct head *heads = NULL;
    size_t n_heads = 0, n = 0;
    struct edge_buf body;
    bool in_txn = false;
    int rv;
    edge_vclock_init(&local);
    edge_buf_init(&body, EDGE_REPL_FRAME_MAX - 16);
    *out_n = 0;
    /* One read transaction: the VV and the log rows come from the same snapshot. */
    if (sqlite3_exec(p->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
        set_err(p, "log: %s", sqlite3_errmsg(p->db));
        rv = EDGE_ESTORE;
        goto out;
    }
    in_txn = true;
    rv = read_local_vv(p, &local);
    if (rv != EDGE_OK) {
        goto out;
    }
    heads = edge_calloc(local.n_entries ? local.n_entries : 1, sizeof(*heads));
    if (heads == NULL) {
        rv = EDGE_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < local.n_entries; i++) {
        const char *o = local.entries[i].region;
        uint64_t have = edge_vclock_get(&p->sent, o);
        if (local.entries[i].n <= have) {
            continue;
        }
        struct head *h = &heads[n_heads++];
        h->origin = o;
        h->next_seq = have + 1;
        if (sqlite3_prepare_v2(p->db,
                               "SELECT seq, hlc, consistency, deps, payload FROM _edge_log "
                               "WHERE origin = ?1 AND seq >= ?2 AND seq <= ?3 ORDER BY seq LIMIT ?4",
                               -1, &h->st, NULL) != SQLITE_OK) {
            set_err(p, "log: %s", sqlite3_errmsg(p->db));
            rv = EDGE_ESTORE;
            goto out;
        }
        sqlite3_bind_text(h->st, 1, o, -1, SQLITE_STATIC);
        sqlite3_bind_int64(h->st, 2, (sqlite3_int64)h->next_seq);
        sqlite3_bind_int64(h->st, 3, (sqlite3_int64)local.entries[i].n);
        sqlite3_bind_int64(h->st, 4, p->max_batch_entries);
        rv = head_step(p, h);
        if (rv != EDGE_OK) {
            goto out;
        }
        if (!h->live) {
            /* The entry the peer needs next was compacted away (or never logged). */
            pthread_mutex_lock(&p->mu);
            p->st.needs_snapshot++;
            pthread_mutex_unlock(&p->mu);
            set_err(p, "needs snapshot: peer lacks %s seq %llu, no longer in the log", o,
                    (unsigned long long)h->next_seq);
            rv = EDGE_ENOTFOUND;
            goto out;
        }
    }
    while (n < (size_t)p->max_batch_entries && body.len < p->max_batch_bytes) {
        struct head *best = NULL;
        for (size_t i = 0; i < n_heads; i++) {
            struct head *h = &heads[i];
            if (!h->live) {
                continue;
            }
            uint64_t hlc = (uint64_t)sqlite3_column_int64(h->st, 1);
            uint64_t bh = best ? (uint64_t)sqlite3_column_int64(best->st, 1) : 0;
            if (best == NULL || hlc < bh || (hlc == bh && strcmp(h->origin, best->origin) < 0)) {
                best = h;
            }
        }
        if (best == NULL) {
            break;
        }
        struct edge_repl_entry e;
        memset(&e, 0, sizeof(e));
        snprintf(e.origin, sizeof(e.origin), "%s", best->origin);
        e.seq = best->next_seq;
        e.hlc = (uint64_t)sqlite3_column_int64(best->st, 1);
        sqlite3_int64 cons = sqlite3_column_int64(best->st, 2);
        const uint8_t *deps = sqlite3_column_blob(best->st, 3);
        size_t deps_len = (size_t)sqlite3_column_bytes(best->st, 3);
        e.payload = sqlite3_column_blob(best->st, 4);
        e.payload_len = (size_t)sqlite3_column_bytes(best->st, 4);
        edge_vclock_init(&e.deps);
        size_t used = 0;
        if (cons < 0 || cons > EDGE_REPL_ASYNC || deps == NULL ||
            edge_vclock_decode(&e.deps, deps, deps_len, &used) != EDGE_OK || used != deps_len) {
            edge_vclock_close(&e.deps);
            set_err(p, "log: corrupt entry %s seq %llu", best->origin, (unsigned long long)e.seq);
            rv = EDGE_ECORRUPT;
            goto out;
        }
        e.consistency = (uint8_t)cons;
        size_t before = body.len;
        rv = edge_repl_encode_entry(&body, &e);
        edge_vclock_close(&e.deps);
        if (rv != EDGE_OK) {
            body.len = before;
            if (body.data != NULL) {
                body.data[before] = '\0';
            }
            if (rv == EDGE_ETOOBIG && n > 0) {
                rv = EDGE_OK; /* the frame is full: ship what fits */
                break;
            }
            set_err(p, "encode entry %s seq %llu: %s", best->origin, (unsigned long long)e.seq,
                    edge_strerror(rv));
            goto out;
        }
        n++;
        best->next_seq++;
        rv = head_step(p, best);
        if (rv != EDGE_OK) {
            goto out;
        }
    }
    edge_buf_reset(&p->out);
    rv = edge_repl_encode_entries_header(&p->out, n);
    if (rv == EDGE_OK) {
        rv = edge_buf_append(&p->out, body.data, body.len);
    }
    for (size_t i = 0; i < n_heads && rv == EDGE_OK; i++) {
        if (heads[i].next_seq - 1 > edge_vclock_get(&p->sent, heads[i].origin)) {
            rv = edge_vclock_set(&p->sent, heads[i].origin, heads[i].next_seq - 1);
        }
    }
    if (rv == EDGE_OK) {
        *out_n = n;
    }
out:
    for (size_t i = 0; i < n_heads; i++) {
        sqlite3_finalize(heads[i].st);
    }
    edge_free(heads);
    if (in_txn) {
        sqlite3_exec(p->db, "COMMIT", NULL, NULL, NULL);
    }
    edge_vclock_close(&local);
    edge_buf_free(&body);
    return rv;
}

/* May another batch go out now? Only while its predecessors can still be on the wire:
 * once the oldest one has been out longer than a round trip (plus a quarter), it waits
 * in the peer's queue, and so would a new batch; holding back then lets the pending
 * entries coalesce into one batch when the ACK comes, instead of many tiny ones that
 * the peer applies one transaction each (on a LAN, where the wire is ~0 and the peer's
 * apply is the bottleneck, this keeps the old one-batch-per-ACK behaviour). */
static bool can_push(const struct edge_peer *p, uint64_t now)
{
    if (!p->want || p->draining || p->fl_len >= (size_t)p->max_in_flight) {
        return false;
    }
    if (p->fl_len == 0) {
        return true;
    }
    uint64_t age = now - p->flights[p->fl_head].built_us;
    return age < p->wire_rtt_us + p->wire_rtt_us / 4 + 1000;
}

/* Fill the window: build and queue ENTRIES while can_push says so. */
static int push_some(struct edge_peer *p)
{
    for (int i = 0; i < p->max_in_flight; i++) {
        if (!can_push(p, now_us())) {
            break;
        }
        size_t n = 0;
        int rv = build_batch(p, &n);
        if (rv != EDGE_OK) {
            return rv;
        }
        if (n == 0) {
            p->want = false;
            break;
        }
        struct flight *f = &p->flights[(p->fl_head + p->fl_len) % (size_t)p->max_in_flight];
        edge_vclock_init(&f->sent);
        rv = edge_vclock_copy(&f->sent, &p->sent);
        if (rv != EDGE_OK) {
            set_err(p, "push: %s", edge_strerror(rv));
            return rv;
        }
        f->built_us = now_us();
        f->deadline_ms = now_ms() + (uint64_t)p->one_way_delay_ms + ACK_TIMEOUT_MS;
        p->fl_len++;
        rv = queue_msg(p, n);
        if (rv != EDGE_OK) {
            return rv;
        }
        publish(p, pub_in_flight, p);
    }
    return EDGE_OK;
}

/* Handle, in order, every received message whose emulated arrival has come. */
static int run_in(struct edge_peer *p, uint64_t now)
{
    for (size_t i = 0; i < p->inq.cap; i++) {
        struct qmsg *m = mq_front(&p->inq);
        if (m == NULL || m->due_ms > now) {
            break;
        }
        int rv = handle_msg(p, (const uint8_t *)m->b.data, m->b.len);
        mq_pop(&p->inq);
        if (rv != EDGE_OK) {
            return rv;
        }
    }
    return EDGE_OK;
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

/* Wait until deadline for bytes (while the receive queue has room) or a wake-up, and
 * read what came. */
static int pump(struct edge_peer *p, uint64_t deadline)
{
    uint64_t now = now_ms();
    int timeout = deadline > now ? (int)min_u64(deadline - now, 60000) : 0;
    if (!inq_has_room(p)) {
        short r;
        return wait_io(p, 0, timeout, &r);
    }
    int rv = recv_some(p, timeout);
    if (rv == EDGE_ECLOSED && !stopping(p)) {
        /* On a real network what was sent before the close arrives first: an ERROR
         * explains the close better than the close itself. */
        char why[sizeof(p->err)];
        memcpy(why, p->err, sizeof(why));
        int r2 = take_rx(p);
        if (r2 == EDGE_OK) {
            r2 = run_in(p, UINT64_MAX);
        }
        if (r2 != EDGE_OK) {
            return r2;
        }
        memcpy(p->err, why, sizeof(why));
    }
    return rv;
}

static int session(struct edge_peer *p, bool *out_handshaked)
{
    *out_handshaked = false;
    int rv = tcp_connect(p);
    if (rv == EDGE_OK) {
        rv = ws_handshake(p);
    }
    if (rv == EDGE_OK) {
        rv = hello(p);
    }
    if (rv != EDGE_OK) {
        return rv;
    }
    *out_handshaked = true;
    EDGE_LOG(EDGE_LOG_INFO, EDGE_MOD_REPL, "peer=%s connected", p->peer_region);
    p->want = true; /* a fresh session always catches up, async entries included */
    p->draining = false;
    p->wire_rtt_us = 2 * (uint64_t)p->one_way_delay_ms * 1000u;
    p->have_rtt = false;
    uint64_t next_sync = now_ms() + (uint64_t)p->sync_interval_ms;
    uint64_t next_ping = now_ms();
    for (uint64_t iter = 0; iter < UINT64_MAX; iter++) {
        if (stopping(p)) {
            return EDGE_ECLOSED;
        }
        rv = take_rx(p);
        if (rv == EDGE_OK) {
            rv = run_in(p, now_ms());
        }
        if (rv != EDGE_OK) {
            return rv;
        }
        uint64_t now = now_ms();
        if (atomic_exchange(&p->notified, false)) {
            p->want = true;
        }
        if (now >= next_sync) {
            p->want = true;
            next_sync = now + (uint64_t)p->sync_interval_ms;
        }
        rv = push_some(p);
        if (rv != EDGE_OK) {
            return rv;
        }
        if (now >= next_ping) {
            if (p->ping_t_ms != 0 && now - p->ping_t_ms > PING_TIMEOUT_MS) {
                set_err(p, "no PONG for %d ms", PING_TIMEOUT_MS);
                return EDGE_ETIMEDOUT;
            }
            if (p->ping_t_ms == 0) {
                /* t is this side's monotonic ms, never 0 on Linux after boot. It is taken
                 * when the PING is queued, so the emulated delays count in the RTT. */
                p->ping_t_ms = now ? now : 1;
                p->ping_us = now_us();
                edge_buf_reset(&p->out);
                rv = edge_repl_encode_ping(&p->out, p->ping_t_ms);
                if (rv == EDGE_OK) {
                    rv = queue_msg(p, 0);
                }
                if (rv != EDGE_OK) {
                    return rv;
                }
            }
            next_ping = now + PING_EVERY_MS;
        }
        rv = flush_out(p, now_ms());
        if (rv != EDGE_OK) {
            return rv;
        }
        now = now_ms();
        uint64_t deadline = min_u64(next_sync, next_ping);
        if (p->fl_len > 0) {
            uint64_t ack_by = p->flights[p->fl_head].deadline_ms;
            if (now >= ack_by) {
                set_err(p, "timed out waiting for ACK");
                return EDGE_ETIMEDOUT;
            }
            deadline = min_u64(deadline, ack_by);
        }
        if (p->outq.len > 0) {
            deadline = min_u64(deadline, mq_front(&p->outq)->due_ms);
        }
        if (p->inq.len > 0) {
            deadline = min_u64(deadline, mq_front(&p->inq)->due_ms);
        }
        if (can_push(p, now_us())) {
            deadline = now; /* more to build right away */
        }
        rv = pump(p, deadline);
        if (rv != EDGE_OK) {
            return rv;
        }
    }
    return EDGE_OK;
}

static void pub_failure(struct edge_peer_status *st, void *arg)
{
    struct edge_peer *p = arg;
    st->retries++;
    snprintf(st->last_error, sizeof(st->last_error), "%s", p->err);
}

static void *link_main(void *arg)
{
    struct edge_peer *p = arg;
    uint32_t backoff = BACKOFF_MIN_MS;
    for (uint64_t attempt = 0; attempt < UINT64_MAX && !stopping(p); attempt++) {
        bool handshaked = false;
        p->err[0] = '\0';
        int rv = session(p, &handshaked);
        close_conn(p);
        if (stopping(p)) {
            break;
        }
        if (p->err[0] == '\0') {
            set_err(p, "%s", edge_strerror(rv));
        }
        publish(p, pub_failure, p);
        EDGE_LOG(EDGE_LOG_WARN, EDGE_MOD_REPL, "peer=%s link down: %s", p->peer_region, p->err);
        if (handshaked) {
            backoff = BACKOFF_MIN_MS;
        }
        /* Full jitter (uniform in [0, backoff]) keeps reconnecting peers from syncing up. */
        uint32_t wait = randombytes_uniform(backoff + 1);
        if (sleep_ms(p, (int)wait) != EDGE_OK) {
            break;
        }
        backoff = backoff >= BACKOFF_MAX_MS / 2 ? BACKOFF_MAX_MS : backoff * 2;
    }
    return NULL;
}

/* ---------------------------------------------------------------------------------- */
/* public                                                                             */
/* ---------------------------------------------------------------------------------- */

/* "http://host:port[/...]" or "http://[v6]:port"; the port defaults to 80. */
static int parse_url(struct edge_peer *p, const char *url)
{
    const char *s = url;
    if (strncmp(s, "http://", 7) == 0) {
        s += 7;
    } else if (strncmp(s, "ws://", 5) == 0) {
        s += 5;
    } else {
        return EDGE_EINVAL;
    }
    const char *host = s, *host_end, *port = NULL;
    if (*s == '[') {
        host = s + 1;
        host_end = strchr(host, ']');
        if (host_end == NULL) {
            return EDGE_EINVAL;
        }
        s = host_end + 1;
    } else {
        host_end = s + strcspn(s, ":/");
        s = host_end;
    }
    if (*s == ':') {
        port = s + 1;
    }
    size_t hl = (size_t)(host_end - host);
    if (hl == 0 || hl >= sizeof(p->host)) {
        return EDGE_EINVAL;
    }
    memcpy(p->host, host, hl);
    p->host[hl] = '\0';
    size_t pl = port ? strcspn(port, "/") : 0;
    if (port == NULL) {
        snprintf(p->port, sizeof(p->port), "80");
    } else {
        if (pl == 0 || pl > 5 || strspn(port, "0123456789") < pl) {
            return EDGE_EINVAL;
        }
        memcpy(p->port, port, pl);
        p->port[pl] = '\0';
    }
    return EDGE_OK;
}

static void peer_free(struct edge_peer *p)
{
    if (p->db != NULL) {
        sqlite3_close(p->db);
    }
    if (p->wake[0] >= 0) {
        close(p->wake[0]);
    }
    if (p->wake[1] >= 0) {
        close(p->wake[1]);
    }
    if (p->fd >= 0) {
        close(p->fd);
    }
    edge_free(p->db_path);
    edge_free(p->local_region);
    edge_free(p->cluster);
    edge_free(p->secret);
    edge_free(p->peer_region);
    edge_buf_free(&p->rx);
    edge_buf_free(&p->msg);
    edge_buf_free(&p->out);
    edge_buf_free(&p->tx);
    pipeline_reset(p);
    mq_free(&p->outq);
    mq_free(&p->inq);
    edge_free(p->flights);
    edge_vclock_close(&p->peer_vv);
    edge_vclock_close(&p->sent);
    edge_vclock_close(&p->progress);
    edge_vclock_close(&p->st.acked);
    pthread_mutex_destroy(&p->mu);
    edge_free(p);
}

int edge_peer_start(const struct edge_peer_config *cfg, struct edge_peer **out)
{
    struct edge_peer *p = NULL;
    int rv = EDGE_EINVAL;
    if (cfg == NULL || out == NULL || cfg->db_path == NULL || cfg->local_region == NULL || cfg->cluster == NULL ||
        cfg->secret == NULL || cfg->peer_region == NULL || cfg->peer_url == NULL ||
        !edge_vclock_region_valid(cfg->local_region) || !edge_vclock_region_valid(cfg->peer_region) ||
        strlen(cfg->cluster) > EDGE_REPL_STR_MAX || cfg->one_way_delay_ms < 0) {
        return EDGE_EINVAL;
    }
    if (sodium_init() < 0) {
        return EDGE_EINTERNAL;
    }
    p = edge_calloc(1, sizeof(*p));
    if (p == NULL) {
        return EDGE_ENOMEM;
    }
    p->fd = -1;
    p->wake[0] = p->wake[1] = -1;
    pthread_mutex_init(&p->mu, NULL);
    edge_buf_init(&p->rx, EDGE_REPL_FRAME_MAX + 2 * RECV_CHUNK);
    edge_buf_init(&p->msg, EDGE_REPL_FRAME_MAX);
    edge_buf_init(&p->out, EDGE_REPL_FRAME_MAX);
    edge_buf_init(&p->tx, EDGE_REPL_FRAME_MAX + 16);
    edge_vclock_init(&p->peer_vv);
    edge_vclock_init(&p->sent);
    edge_vclock_init(&p->progress);
    edge_vclock_init(&p->st.acked);
    atomic_init(&p->stopping, false);
    atomic_init(&p->notified, false);
    if (parse_url(p, cfg->peer_url) != EDGE_OK) {
        goto out;
    }
    p->one_way_delay_ms = cfg->one_way_delay_ms;
    p->sync_interval_ms = cfg->sync_interval_ms > 0 ? cfg->sync_interval_ms : 1000;
    p->max_batch_entries = cfg->max_batch_entries > 0 ? cfg->max_batch_entries : 1000;
    if (p->max_batch_entries > EDGE_REPL_ENTRIES_MAX) {
        p->max_batch_entries = EDGE_REPL_ENTRIES_MAX;
    }
    p->max_batch_bytes = cfg->max_batch_bytes > 0 ? cfg->max_batch_bytes : ((size_t)1 << 20);
    p->max_in_flight = cfg->max_in_flight > 0 ? cfg->max_in_flight : IN_FLIGHT_DEFAULT;
    if (p->max_in_flight > IN_FLIGHT_MAX) {
        p->max_in_flight = IN_FLIGHT_MAX;
    }
    p->on_ack = cfg->on_ack;
    p->ud = cfg->ud;
    rv = EDGE_ENOMEM;
    p->db_path = edge_strdup(cfg->db_path);
    p->local_region = edge_strdup(cfg->local_region);
    p->cluster = edge_strdup(cfg->cluster);
    p->secret = edge_strdup(cfg->secret);
    p->peer_region = edge_strdup(cfg->peer_region);
    if (!p->db_path || !p->local_region || !p->cluster || !p->secret || !p->peer_region) {
        goto out;
    }
    p->flights = edge_calloc((size_t)p->max_in_flight, sizeof(*p->flights));
    if (p->flights == NULL || mq_init(&p->outq, (size_t)p->max_in_flight + OUTQ_EXTRA) != EDGE_OK ||
        mq_init(&p->inq, INQ_MAX) != EDGE_OK) {
        goto out;
    }
    rv = EDGE_EINTERNAL;
    if (pipe2(p->wake, O_NONBLOCK | O_CLOEXEC) != 0) {
        p->wake[0] = p->wake[1] = -1;
        goto out;
    }
    rv = EDGE_ESTORE;
    if (sqlite3_open_v2(p->db_path, &p->db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        goto out;
    }
    sqlite3_busy_timeout(p->db, 2000);
    rv = EDGE_EINTERNAL;
    if (pthread_create(&p->thread, NULL, link_main, p) != 0) {
        goto out;
    }
    *out = p;
    return EDGE_OK;
out:
    peer_free(p);
    return rv;
}

void edge_peer_notify(struct edge_peer *p)
{
    if (p == NULL) {
        return;
    }
    atomic_store(&p->notified, true);
    char c = 1;
    /* A full pipe already guarantees a wake-up. */
    ssize_t n = write(p->wake[1], &c, 1);
    (void)n;
}

void edge_peer_stop(struct edge_peer *p)
{
    if (p == NULL) {
        return;
    }
    atomic_store(&p->stopping, true);
    char c = 1;
    ssize_t n = write(p->wake[1], &c, 1);
    (void)n;
    pthread_join(p->thread, NULL);
    peer_free(p);
}

void edge_peer_status(struct edge_peer *p, struct edge_peer_status *out)
{
    pthread_mutex_lock(&p->mu);
    *out = p->st;
    edge_vclock_init(&out->acked);
    (void)edge_vclock_copy(&out->acked, &p->st.acked);
    pthread_mutex_unlock(&p->mu);
}
