/* SPDX-License-Identifier: MIT */
/* The outbound peer link (repl/peer.h): the push loop on one thread (the HELLO
 * exchange before it is peer_hello.c), over the blocking WebSocket client of
 * net/wsc.h, whose waits a wake pipe interrupts (stop, notify).
 *
 * DESIGN: a batch is built with one read transaction and one statement per origin,
 * merged by HLC (the receiver applies in order, and an origin's entries stay in seq
 * order because the merge only ever takes heads).
 *
 * Pipelining: up to max_in_flight ENTRIES messages (and, beyond the first, fewer than
 * max_in_flight_bytes of them) await their ACK, so on a WAN an entry committed while
 * batches are on the wire leaves at once instead of a round trip later. Each one records
 * the "sent" VV after it; the peer answers one ACK per ENTRIES in order, so the oldest
 * record is the one an ACK answers, and an ACK below its record means the peer skipped
 * something (a gap): nothing new is sent until the in-flight messages are answered,
 * then "sent" falls back to "acked" and the link resends from there.
 *
 * WAN emulation without sleeping: outgoing messages wait in a queue until their due
 * time (queued + one_way_delay) and incoming ones in another until arrival +
 * one_way_delay, so many messages are "on the wire" at once, like on a real network.
 * Only the serial handshake still sleeps. */
#include "repl/peer_int.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>
#include <sqlite3.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/log.h"
#include "edgelite/errors.h"
#include "net/httpc.h"
#include "net/wsc.h"
#include "repl/batch.h"
#include "repl/proto.h"
#include "repl/trace.h"

#define CONNECT_TIMEOUT_MS 2000
#define HANDSHAKE_TIMEOUT_MS 5000
#define ACK_TIMEOUT_MS 10000
#define PING_EVERY_MS 1000
#define PING_TIMEOUT_MS 10000
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
/* 128 batches cover a 140 ms round trip at one commit per ms, each sent on its own
 * (measured with 48: at a commit every 3 ms, entries waited for the window). */
#define IN_FLIGHT_DEFAULT 128
/* The node queues at most 256 messages per inbound link (PINGs too), besides the ENTRIES in
 * its apply job for the link (group apply: up to 64 frames / 4 MiB, repl/session.c). */
#define IN_FLIGHT_MAX 240
#define IN_FLIGHT_BYTES_DEFAULT ((size_t)8 << 20)
#define OUTQ_EXTRA 16           /* PING/PONG room next to the ENTRIES in the send queue */
#define INQ_MAX 64              /* received messages waiting for their emulated arrival */
#define INQ_BYTES_MAX (4u << 20) /* ... and their bytes; reading pauses beyond either */

/* ---------------------------------------------------------------------------------- */
/* helpers                                                                            */
/* ---------------------------------------------------------------------------------- */

static uint64_t wall_ms(void) { return edge_wall_ms(); }

void edge__peer_set_err(struct edge_peer *p, const char *fmt, ...)
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

void edge__peer_publish(struct edge_peer *p, void (*fn)(struct edge_peer_status *st, void *arg), void *arg)
{
    pthread_mutex_lock(&p->mu);
    fn(&p->st, arg);
    pthread_mutex_unlock(&p->mu);
}

void edge__peer_pub_acked(struct edge_peer_status *st, void *arg)
{
    struct edge_peer *p = arg;
    (void)edge_vclock_copy(&st->acked, &p->peer_vv);
}

void edge__peer_pub_connected(struct edge_peer_status *st, void *arg)
{
    st->connected = *(bool *)arg;
}

static void pub_in_flight(struct edge_peer_status *st, void *arg)
{
    struct edge_peer *p = arg;
    st->in_flight = (int)p->fl_len;
    st->in_flight_bytes = p->fl_bytes;
}

/* Forget everything in flight: the next session starts from the peer's HELLO_OK VV. */
static void pipeline_reset(struct edge_peer *p)
{
    for (size_t i = 0; p->flights != NULL && i < p->fl_len; i++) {
        edge_vclock_close(&p->flights[(p->fl_head + i) % (size_t)p->max_in_flight].sent);
    }
    p->fl_head = 0;
    p->fl_len = 0;
    p->fl_bytes = 0;
    p->window_full = false;
    edge__mq_clear(&p->outq);
    edge__mq_clear(&p->inq);
    p->want = false;
    p->draining = false;
}

/* ---------------------------------------------------------------------------------- */
/* socket                                                                             */
/* ---------------------------------------------------------------------------------- */

static void close_conn(struct edge_peer *p)
{
    edge_wsc_close(&p->ws);
    edge_repl_seal_wipe(&p->seal);
    p->sealed = false;
    p->ping_t_ms = 0;
    pipeline_reset(p);
    bool f = false;
    edge__peer_publish(p, edge__peer_pub_connected, &f);
    edge__peer_publish(p, pub_in_flight, p);
}

/* Queue the protocol message in p->out to leave one emulated delay from now; p->out
 * comes back empty. n_entries: ENTRIES count for the statistics, else 0. */
static int queue_msg(struct edge_peer *p, size_t n_entries)
{
    if (edge__mq_full(&p->outq)) {
        /* Only a peer flooding PINGs can get here: ENTRIES are bounded by the window. */
        edge__peer_set_err(p, "protocol: send queue full");
        return EDGE_EPROTO;
    }
    /* Sealed in queue order, which is the order they leave in: the frame numbers match. */
    if (p->sealed && edge_repl_seal_frame(&p->seal, &p->out) != EDGE_OK) {
        edge__peer_set_err(p, "protocol: cannot seal a frame");
        return EDGE_ENOMEM;
    }
    edge__mq_push(&p->outq, &p->out, edge__peer_now_ms() + (uint64_t)p->one_way_delay_ms, n_entries);
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
        struct qmsg *m = edge__mq_front(&p->outq);
        if (m == NULL || m->due_ms > now) {
            break;
        }
        int rv = edge_wsc_send(&p->ws, 0x2, (const uint8_t *)m->b.data, m->b.len);
        if (rv != EDGE_OK) {
            return rv;
        }
        if (m->n_entries > 0) {
            edge__peer_publish(p, pub_sent, m);
            if (m->trace_seq != 0) edge_repl_trace_at("peer_sent", p->local_region, m->trace_seq, 0);
        }
        edge__mq_pop(&p->outq);
    }
    return EDGE_OK;
}

static bool inq_has_room(const struct edge_peer *p)
{
    return !edge__mq_full(&p->inq) && p->inq.bytes < INQ_BYTES_MAX;
}

/* Move every whole message already received to the receive queue, stamped with its
 * emulated arrival (now + one_way_delay), while the queue has room. */
static int take_rx(struct edge_peer *p)
{
    for (size_t i = 0; i < INQ_MAX && inq_has_room(p); i++) {
        bool have = false;
        int rv = edge_wsc_parse(&p->ws, &have);
        if (rv != EDGE_OK || !have) {
            return rv;
        }
        edge__mq_push(&p->inq, &p->ws.msg, edge__peer_now_ms() + (uint64_t)p->one_way_delay_ms, 0);
    }
    return EDGE_OK;
}

/* ---------------------------------------------------------------------------------- */
/* protocol                                                                           */
/* ---------------------------------------------------------------------------------- */

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
        edge__peer_set_err(p, "ACK: %s", edge_strerror(rv));
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
        p->fl_bytes -= f->bytes;
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
            edge__peer_set_err(p, "ACK: %s", edge_strerror(rv));
            return rv;
        }
        p->draining = false;
        p->want = progress;
        pthread_mutex_lock(&p->mu);
        p->st.resends++;
        pthread_mutex_unlock(&p->mu);
    }
    edge__peer_publish(p, edge__peer_pub_acked, p);
    edge__peer_publish(p, pub_in_flight, p);
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
        edge__peer_set_err(p, "protocol: bad message type");
        return EDGE_EPROTO;
    }
    switch (type) {
    case EDGE_REPL_MSG_PING:
        if (edge_repl_decode_ping(m, len, &t) != EDGE_OK) {
            break;
        }
        edge_buf_reset(&p->out);
        return edge_repl_encode_pong_clock(&p->out, t, wall_ms()) == EDGE_OK ? queue_msg(p, 0) : EDGE_ENOMEM;
    case EDGE_REPL_MSG_PONG: {
        uint64_t peer_wall = 0;
        if (edge_repl_decode_pong_clock(m, len, &t, &peer_wall) != EDGE_OK) {
            break;
        }
        if (p->ping_t_ms != 0 && t == p->ping_t_ms) {
            double sample = (double)(edge__peer_now_ms() - p->ping_t_ms);
            uint64_t us = edge__peer_now_us() - p->ping_us;
            if (peer_wall != 0) {
                /* NTP-style: the peer read its clock about half a round trip after we
                 * sent. Kept from the fastest round trip, the one least delayed. */
                double off = (double)peer_wall - ((double)p->ping_wall_ms + (double)us / 2000.0);
                if (!p->have_offset || us <= p->offset_rtt_us) {
                    p->offset_rtt_us = us;
                    p->have_offset = true;
                    pthread_mutex_lock(&p->mu);
                    p->st.clock_offset_ms = off;
                    p->st.clock_offset_known = true;
                    pthread_mutex_unlock(&p->mu);
                }
            }
            p->ping_t_ms = 0;
            pthread_mutex_lock(&p->mu);
            p->st.rtt_ms = p->st.rtt_ms == 0 ? sample : 0.7 * p->st.rtt_ms + 0.3 * sample;
            pthread_mutex_unlock(&p->mu);
        }
        return EDGE_OK;
    }
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
        return edge__peer_error(p, m, len);
    default:
        edge__peer_set_err(p, "protocol: unexpected message type %d", type);
        return EDGE_EPROTO;
    }
    edge__peer_set_err(p, "protocol: malformed message type %d", type);
    return EDGE_EPROTO;
}

/* The bound on what awaits an ACK: max_in_flight messages, and a second one only while
 * fewer than max_in_flight_bytes are out (so at most that plus one max_batch_bytes). */
static bool window_open(const struct edge_peer *p)
{
    return p->fl_len == 0 || (p->fl_len < (size_t)p->max_in_flight && p->fl_bytes < p->max_in_flight_bytes);
}

/* May another batch go out now? Whenever the window has room: an entry leaves as soon as
 * it is committed. (Before, a batch waited once the oldest in flight was older than a
 * round trip and a quarter, so that pending entries coalesced for a receiver that applied
 * each ENTRIES in its own transaction; a late ACK then cost every new write a further
 * round trip, the tail of cross-region write-to-event latency. The receiver now applies
 * the frames queued for a link in one transaction, session.c, which keeps bulk loads
 * converging as fast.) */
static bool can_push(const struct edge_peer *p)
{
    return p->want && !p->draining && window_open(p);
}

/* Fill the window: build and queue ENTRIES while can_push says so. */
static int push_some(struct edge_peer *p)
{
    for (int i = 0; i < p->max_in_flight; i++) {
        if (!can_push(p)) {
            /* Counted once per wait (status.window_full): entries wait for an ACK
             * because of the window's bounds, not because the peer wants nothing or
             * the link is draining. */
            bool full = p->want && !p->draining && !window_open(p);
            if (full && !p->window_full) {
                pthread_mutex_lock(&p->mu);
                p->st.window_full++;
                pthread_mutex_unlock(&p->mu);
            }
            p->window_full = full;
            break;
        }
        size_t n = 0;
        int rv = edge_repl_batch_build(p->db, &p->sent, p->max_batch_entries, p->max_batch_bytes, &p->out, &n,
                                       p->err, sizeof(p->err));
        if (rv == EDGE_ENOTFOUND) {
            pthread_mutex_lock(&p->mu);
            p->st.needs_snapshot++;
            pthread_mutex_unlock(&p->mu);
        }
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
            edge__peer_set_err(p, "push: %s", edge_strerror(rv));
            return rv;
        }
        f->deadline_ms = edge__peer_now_ms() + (uint64_t)p->one_way_delay_ms + ACK_TIMEOUT_MS;
        f->bytes = p->out.len;
        p->fl_bytes += f->bytes;
        p->fl_len++;
        p->window_full = false;
        rv = queue_msg(p, n);
        if (rv != EDGE_OK) {
            return rv;
        }
        if (edge_repl_trace_on()) {
            struct qmsg *m = &p->outq.slots[(p->outq.head + p->outq.len - 1) % p->outq.cap];
            m->trace_seq = edge_vclock_get(&p->sent, p->local_region);
            edge_repl_trace_at("peer_queued", p->local_region, m->trace_seq, 0);
        }
        edge__peer_publish(p, pub_in_flight, p);
    }
    return EDGE_OK;
}

/* Handle, in order, every received message whose emulated arrival has come. */
static int run_in(struct edge_peer *p, uint64_t now)
{
    for (size_t i = 0; i < p->inq.cap; i++) {
        struct qmsg *m = edge__mq_front(&p->inq);
        if (m == NULL || m->due_ms > now) {
            break;
        }
        size_t len = m->b.len;
        int rv = EDGE_OK;
        /* Checked in arrival order, which is the order the frame numbers count. */
        if (p->sealed && edge_repl_open_frame(&p->seal, (const uint8_t *)m->b.data, m->b.len, &len) != EDGE_OK) {
            edge__peer_set_err(p, "protocol: MAC: frame %llu from the peer failed its integrity check",
                    (unsigned long long)p->seal.rx_seq);
            pthread_mutex_lock(&p->mu);
            p->st.mac_errors++;
            pthread_mutex_unlock(&p->mu);
            rv = EDGE_EPROTO;
        }
        if (rv == EDGE_OK) {
            rv = handle_msg(p, (const uint8_t *)m->b.data, len);
        }
        edge__mq_pop(&p->inq);
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
    uint64_t now = edge__peer_now_ms();
    int timeout = deadline > now ? (int)min_u64(deadline - now, 60000) : 0;
    if (!inq_has_room(p)) {
        short r;
        return edge_wsc_wait(&p->ws, 0, timeout, &r);
    }
    int rv = edge_wsc_recv(&p->ws, timeout);
    if (rv == EDGE_ECLOSED && !stopping(p)) {
        /* On a real network what was sent before the close arrives first: an ERROR
         * explains the close better than the close itself. */
        char why[sizeof(p->err)];
        memcpy(why, p->err, sizeof(why));
        int r2 = take_rx(p);
        if (r2 == EDGE_OK || r2 == EDGE_ECLOSED) {
            /* a WebSocket close parsed after them: they still come first */
            int r3 = run_in(p, UINT64_MAX);
            if (r3 != EDGE_OK) {
                return r3;
            }
        }
        if (r2 != EDGE_OK && r2 != EDGE_ECLOSED) {
            return r2;
        }
        memcpy(p->err, why, sizeof(why));
    }
    return rv;
}

static int session(struct edge_peer *p, bool *out_handshaked)
{
    *out_handshaked = false;
    int rv = edge_wsc_connect(&p->ws, p->host, p->port, CONNECT_TIMEOUT_MS);
    if (rv == EDGE_OK) {
        char extra[64 + EDGE_VCLOCK_REGION_MAX];
        snprintf(extra, sizeof(extra), "X-Edge-Region: %s\r\n", p->local_region);
        rv = edge_wsc_handshake(&p->ws, p->host, p->port, "/v1/peer", EDGE_REPL_WS_PROTOCOL, extra,
                                HANDSHAKE_TIMEOUT_MS);
    }
    if (rv == EDGE_OK) {
        rv = edge__peer_hello(p);
    }
    if (rv != EDGE_OK) {
        return rv;
    }
    *out_handshaked = true;
    EDGE_LOG(EDGE_LOG_INFO, EDGE_MOD_REPL, "peer=%s connected", p->peer_region);
    p->want = true; /* a fresh session always catches up, async entries included */
    p->draining = false;
    p->have_offset = false;
    uint64_t next_sync = edge__peer_now_ms() + (uint64_t)p->sync_interval_ms;
    uint64_t next_ping = edge__peer_now_ms();
    for (uint64_t iter = 0; iter < UINT64_MAX; iter++) {
        if (stopping(p)) {
            return EDGE_ECLOSED;
        }
        rv = take_rx(p);
        if (rv == EDGE_ECLOSED) {
            /* The close came after messages already parsed: an ERROR before it says why
             * (e.g. MAC), so it is handled first, as on a real network. */
            int r2 = run_in(p, UINT64_MAX);
            return r2 != EDGE_OK ? r2 : rv;
        }
        if (rv == EDGE_OK) {
            rv = run_in(p, edge__peer_now_ms());
        }
        if (rv != EDGE_OK) {
            return rv;
        }
        uint64_t now = edge__peer_now_ms();
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
                edge__peer_set_err(p, "no PONG for %d ms", PING_TIMEOUT_MS);
                return EDGE_ETIMEDOUT;
            }
            if (p->ping_t_ms == 0) {
                /* t is this side's monotonic ms, never 0 on Linux after boot. It is taken
                 * when the PING is queued, so the emulated delays count in the RTT. */
                p->ping_t_ms = now ? now : 1;
                p->ping_us = edge__peer_now_us();
                p->ping_wall_ms = wall_ms();
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
        rv = flush_out(p, edge__peer_now_ms());
        if (rv != EDGE_OK) {
            return rv;
        }
        now = edge__peer_now_ms();
        uint64_t deadline = min_u64(next_sync, next_ping);
        if (p->fl_len > 0) {
            uint64_t ack_by = p->flights[p->fl_head].deadline_ms;
            if (now >= ack_by) {
                edge__peer_set_err(p, "timed out waiting for ACK");
                return EDGE_ETIMEDOUT;
            }
            deadline = min_u64(deadline, ack_by);
        }
        if (p->outq.len > 0) {
            deadline = min_u64(deadline, edge__mq_front(&p->outq)->due_ms);
        }
        if (p->inq.len > 0) {
            deadline = min_u64(deadline, edge__mq_front(&p->inq)->due_ms);
        }
        if (can_push(p)) {
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
    char name[16]; /* cut to the 15 bytes a thread name holds */
    snprintf(name, sizeof(name), "edge-peer-%s", p->peer_region);
    pthread_setname_np(pthread_self(), name);
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
            edge__peer_set_err(p, "%s", edge_strerror(rv));
        }
        edge__peer_publish(p, pub_failure, p);
        EDGE_LOG(EDGE_LOG_WARN, EDGE_MOD_REPL, "peer=%s link down: %s", p->peer_region, p->err);
        if (handshaked) {
            backoff = BACKOFF_MIN_MS;
        }
        /* Full jitter (uniform in [0, backoff]) keeps reconnecting peers from syncing up. */
        uint32_t wait = randombytes_uniform(backoff + 1);
        if (edge_wsc_sleep(&p->ws, (int)wait) != EDGE_OK) {
            break;
        }
        backoff = backoff >= BACKOFF_MAX_MS / 2 ? BACKOFF_MAX_MS : backoff * 2;
    }
    return NULL;
}

/* ---------------------------------------------------------------------------------- */
/* public                                                                             */
/* ---------------------------------------------------------------------------------- */

static void peer_free(struct edge_peer *p)
{
    if (p->db != NULL) {
        /* batch.c keeps its statements prepared for the connection's lifetime */
        sqlite3_stmt *st;
        while ((st = sqlite3_next_stmt(p->db, NULL)) != NULL) sqlite3_finalize(st);
        sqlite3_close(p->db);
    }
    if (p->wake[0] >= 0) {
        close(p->wake[0]);
    }
    if (p->wake[1] >= 0) {
        close(p->wake[1]);
    }
    edge_wsc_free(&p->ws);
    edge_free(p->db_path);
    edge_free(p->local_region);
    edge_free(p->cluster);
    edge_free(p->secret);
    edge_free(p->peer_region);
    edge_buf_free(&p->out);
    pipeline_reset(p);
    edge__mq_free(&p->outq);
    edge__mq_free(&p->inq);
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
    p->wake[0] = p->wake[1] = -1;
    pthread_mutex_init(&p->mu, NULL);
    edge_wsc_init(&p->ws, -1, &p->stopping, EDGE_REPL_WIRE_MAX, p->err, sizeof(p->err));
    edge_buf_init(&p->out, EDGE_REPL_WIRE_MAX);
    edge_vclock_init(&p->peer_vv);
    edge_vclock_init(&p->sent);
    edge_vclock_init(&p->progress);
    edge_vclock_init(&p->st.acked);
    atomic_init(&p->stopping, false);
    atomic_init(&p->notified, false);
    /* The one URL parser of the code base (net/httpc.c); the link needs host and port. */
    struct edge_httpc_url u;
    if (edge_httpc_url_parse(cfg->peer_url, &u) != EDGE_OK) {
        goto out;
    }
    snprintf(p->host, sizeof(p->host), "%s", u.host);
    snprintf(p->port, sizeof(p->port), "%s", u.port);
    if (u.tls) {
        if (cfg->tls_ctx == NULL) goto out;
        edge_wsc_set_tls(&p->ws, cfg->tls_ctx);
    }
    p->one_way_delay_ms = cfg->one_way_delay_ms;
    p->sync_interval_ms = cfg->sync_interval_ms > 0 ? cfg->sync_interval_ms : 1000;
    p->max_batch_entries = cfg->max_batch_entries > 0 ? cfg->max_batch_entries : 1000;
    if (p->max_batch_entries > EDGE_REPL_ENTRIES_MAX) {
        p->max_batch_entries = EDGE_REPL_ENTRIES_MAX;
    }
    p->max_batch_bytes = cfg->max_batch_bytes > 0 ? cfg->max_batch_bytes : ((size_t)1 << 20);
    p->max_in_flight = cfg->max_in_flight > 0 ? cfg->max_in_flight : IN_FLIGHT_DEFAULT;
    p->max_in_flight_bytes = cfg->max_in_flight_bytes > 0 ? cfg->max_in_flight_bytes : IN_FLIGHT_BYTES_DEFAULT;
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
    if (p->flights == NULL || edge__mq_init(&p->outq, (size_t)p->max_in_flight + OUTQ_EXTRA) != EDGE_OK ||
        edge__mq_init(&p->inq, INQ_MAX) != EDGE_OK) {
        goto out;
    }
    rv = EDGE_EINTERNAL;
    if (pipe2(p->wake, O_NONBLOCK | O_CLOEXEC) != 0) {
        p->wake[0] = p->wake[1] = -1;
        goto out;
    }
    p->ws.wake_fd = p->wake[0];
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
