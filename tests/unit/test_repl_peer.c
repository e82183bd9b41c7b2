/* SPDX-License-Identifier: MIT */
/* Tests of the outbound peer link against a small in-test server that speaks the server
 * side of the protocol over loopback: its own RFC 6455 server framing (unmasked out,
 * masked in), CHALLENGE, HELLO verification, HELLO_OK, one ACK per batch with the VV of
 * contiguous entries received, PONG. Scenarios: ordered delivery with a preset peer
 * VV, wrong secret, server killing the connection mid-stream (resend from the last
 * ACK), notify, async entries on the sync tick, a malformed server frame, a compacted
 * log (needs_snapshot), a prompt stop mid-handshake, and the pipeline: several batches
 * in flight before the first ACK, a gap that forces a resend from the ACKed VV, and the
 * emulated one-way delay overlapping across messages.
 * Waits are bounded polls of observable state. No test asserts speed: the WAN test checks
 * lower bounds of time (nothing arrives before its due time) and the overlap of frames as
 * a state of the link's queues, and the stop test separates "interrupted" from "waited
 * out its 5 s timeout". */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/sha1.h"
#include "core/vclock.h"
#include "repl/peer.h"
#include "repl/proto.h"

#define MAX_RECS 4096

struct rec {
    char origin[EDGE_VCLOCK_REGION_MAX + 1];
    uint64_t seq, hlc;
    uint8_t consistency;
    int conn;      /* 1-based index of the authenticated connection it came on */
    uint64_t t_us; /* when the server read it (monotonic) */
};

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

struct srv {
    int lfd, port;
    pthread_t th;
    atomic_bool stop;
    const char *secret, *cluster, *region;
    pthread_mutex_t mu;
    struct edge_vclock vv; /* contiguous entries received */
    struct rec recs[MAX_RECS];
    size_t n_recs;
    int conns;          /* authenticated connections */
    int hello_rejected; /* HELLOs answered with ERROR */
    int batches;        /* ENTRIES messages received, all connections */
    int kill_at_batch;  /* close without ACK when this batch arrives (0: never) */
    bool garbage_once;  /* send one malformed message after HELLO_OK */
    bool impostor;      /* accept any HELLO and answer HELLO_OK without knowing the secret */
    int mac_refused;    /* frames from the client whose seal did not verify */
    int pings;
    int hold_acks;      /* answer nothing until this many ENTRIES came on the connection (0: off) */
    int first_ack_after; /* ENTRIES received on the connection when its first ACK went out */
    uint64_t skip_seq;  /* drop origin "us" entry with this seq once, as if it could not apply */
    bool skip_always;   /* ... every time it comes */
};

/* ---- server-side socket helpers ---- */

static int read_n(struct srv *s, int fd, uint8_t *p, size_t n)
{
    size_t off = 0;
    for (int i = 0; i < 100000 && off < n; i++) {
        if (atomic_load(&s->stop)) {
            return -1;
        }
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        if (poll(&pf, 1, 20) <= 0) {
            continue;
        }
        ssize_t r = recv(fd, p + off, n - off, 0);
        if (r <= 0) {
            return -1;
        }
        off += (size_t)r;
    }
    return off == n ? 0 : -1;
}

static int write_all(int fd, const void *p, size_t n)
{
    const uint8_t *d = p;
    size_t off = 0;
    for (int i = 0; i < 100000 && off < n; i++) {
        ssize_t w = send(fd, d + off, n - off, MSG_NOSIGNAL);
        if (w <= 0) {
            return -1;
        }
        off += (size_t)w;
    }
    return off == n ? 0 : -1;
}

static int srv_send(int fd, const struct edge_buf *m)
{
    uint8_t hdr[10];
    size_t h = 0;
    hdr[h++] = 0x82;
    if (m->len < 126) {
        hdr[h++] = (uint8_t)m->len;
    } else if (m->len <= 0xffff) {
        hdr[h++] = 126;
        hdr[h++] = (uint8_t)(m->len >> 8);
        hdr[h++] = (uint8_t)m->len;
    } else {
        hdr[h++] = 127;
        for (int i = 7; i >= 0; i--) {
            hdr[h++] = (uint8_t)((uint64_t)m->len >> (8 * i));
        }
    }
    if (write_all(fd, hdr, h) != 0) {
        return -1;
    }
    return write_all(fd, m->data, m->len);
}

/* Send m, sealed with the session's next tag once the handshake is done (m unchanged). */
static int srv_xmit(int fd, struct edge_repl_seal *seal, const struct edge_buf *m)
{
    if (seal == NULL) {
        return srv_send(fd, m);
    }
    struct edge_buf t;
    edge_buf_init(&t, m->len + EDGE_REPL_MAC_LEN);
    assert_int_equal(edge_buf_append(&t, m->data, m->len), EDGE_OK);
    assert_int_equal(edge_repl_seal_frame(seal, &t), EDGE_OK);
    int rv = srv_send(fd, &t);
    edge_buf_free(&t);
    return rv;
}

/* One whole client message (masked frames, possibly fragmented) into out. */
static int srv_recv(struct srv *s, int fd, struct edge_buf *out)
{
    edge_buf_reset(out);
    for (int f = 0; f < 1000; f++) {
        uint8_t h[2], ext[8], mask[4];
        if (read_n(s, fd, h, 2) != 0 || (h[1] & 0x80) == 0) {
            return -1; /* closed, or an unmasked client frame (RFC 6455 5.1) */
        }
        uint64_t len = h[1] & 0x7f;
        if (len == 126) {
            if (read_n(s, fd, ext, 2) != 0) {
                return -1;
            }
            len = ((uint64_t)ext[0] << 8) | ext[1];
        } else if (len == 127) {
            if (read_n(s, fd, ext, 8) != 0) {
                return -1;
            }
            len = 0;
            for (int i = 0; i < 8; i++) {
                len = (len << 8) | ext[i];
            }
        }
        if (len > ((uint64_t)16 << 20) || read_n(s, fd, mask, 4) != 0) {
            return -1;
        }
        size_t at = out->len;
        if (edge_buf_reserve(out, (size_t)len) != EDGE_OK) {
            return -1;
        }
        if (len > 0 && read_n(s, fd, (uint8_t *)out->data + at, (size_t)len) != 0) {
            return -1;
        }
        for (size_t i = 0; i < len; i++) {
            out->data[at + i] ^= (char)mask[i & 3];
        }
        uint8_t op = h[0] & 0x0f;
        if (op >= 8) {
            out->len = at;
            if (op == 8) {
                return -1;
            }
            continue;
        }
        out->len = at + (size_t)len;
        if (h[0] & 0x80) {
            return 0;
        }
    }
    return -1;
}

static int srv_handshake(struct srv *s, int fd)
{
    char head[4096];
    size_t n = 0;
    for (int i = 0; i < 4000 && n < sizeof(head) - 1; i++) {
        if (read_n(s, fd, (uint8_t *)head + n, 1) != 0) {
            return -1;
        }
        n++;
        head[n] = '\0';
        if (n >= 4 && strcmp(head + n - 4, "\r\n\r\n") == 0) {
            break;
        }
    }
    if (strncmp(head, "GET /v1/peer HTTP/1.1\r\n", 23) != 0 || strcasestr(head, "Upgrade: websocket") == NULL ||
        strstr(head, "Sec-WebSocket-Protocol: edgelite-peer1") == NULL) {
        return -1;
    }
    const char *k = strcasestr(head, "Sec-WebSocket-Key: ");
    if (k == NULL) {
        return -1;
    }
    k += strlen("Sec-WebSocket-Key: ");
    char cat[128];
    int kl = (int)strcspn(k, "\r");
    int cl = snprintf(cat, sizeof(cat), "%.*s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", kl, k);
    uint8_t dig[20];
    edge__sha1((const uint8_t *)cat, (size_t)cl, dig);
    struct edge_buf acc;
    edge_buf_init(&acc, 64);
    assert_int_equal(edge_buf_base64(&acc, dig, 20), EDGE_OK);
    char resp[512];
    int rl = snprintf(resp, sizeof(resp),
                      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Accept: %s\r\nSec-WebSocket-Protocol: edgelite-peer1\r\n\r\n",
                      acc.data);
    edge_buf_free(&acc);
    return write_all(fd, resp, (size_t)rl);
}

static void srv_conn(struct srv *s, int fd)
{
    struct edge_buf m, o;
    uint8_t nonce[EDGE_REPL_NONCE_LEN];
    struct edge_repl_hello h;
    struct edge_repl_seal seal;
    int conn = 0;
    memset(&seal, 0, sizeof(seal));
    edge_buf_init(&m, (size_t)32 << 20);
    edge_buf_init(&o, (size_t)32 << 20);
    if (srv_handshake(s, fd) != 0) {
        goto out;
    }
    randombytes_buf(nonce, sizeof(nonce));
    assert_int_equal(edge_repl_encode_challenge(&o, nonce), EDGE_OK);
    if (srv_send(fd, &o) != 0 || srv_recv(s, fd, &m) != 0) {
        goto out;
    }
    assert_int_equal(edge_repl_decode_hello((const uint8_t *)m.data, m.len, &h), EDGE_OK);
    int vr = edge_repl_hello_verify(&h, s->cluster, s->secret, nonce);
    edge_buf_reset(&o);
    if (vr != EDGE_OK && !s->impostor) {
        edge_repl_hello_close(&h);
        assert_int_equal(edge_repl_encode_error(&o, "AUTH", "bad mac"), EDGE_OK);
        (void)srv_send(fd, &o);
        pthread_mutex_lock(&s->mu);
        s->hello_rejected++;
        pthread_mutex_unlock(&s->mu);
        goto out;
    }
    assert_string_equal(h.to_region, s->region);
    pthread_mutex_lock(&s->mu);
    conn = ++s->conns;
    /* an impostor knows no secret: its MAC is made with another one */
    const char *key = s->impostor ? "not-the-secret" : s->secret;
    uint8_t okmac[EDGE_REPL_MAC_LEN];
    assert_int_equal(edge_repl_hello_ok_mac(key, nonce, &h, s->region, &s->vv, okmac), EDGE_OK);
    assert_int_equal(edge_repl_encode_hello_ok(&o, s->region, &s->vv, okmac), EDGE_OK);
    assert_int_equal(edge_repl_seal_init(&seal, key, nonce, &h, s->region, false), EDGE_OK);
    edge_repl_hello_close(&h);
    bool garbage = s->garbage_once;
    s->garbage_once = false;
    pthread_mutex_unlock(&s->mu);
    if (srv_send(fd, &o) != 0) {
        goto out;
    }
    if (garbage) {
        const uint8_t bad[] = {EDGE_REPL_MSG_ACK, 0xff, 0xff};
        edge_buf_reset(&o);
        assert_int_equal(edge_buf_append(&o, bad, sizeof(bad)), EDGE_OK);
        (void)srv_xmit(fd, &seal, &o);
    }
    int conn_batches = 0, held = 0;
    for (int i = 0; i < 100000 && srv_recv(s, fd, &m) == 0; i++) {
        int type = 0;
        size_t plain = 0;
        if (edge_repl_open_frame(&seal, (const uint8_t *)m.data, m.len, &plain) != EDGE_OK) {
            pthread_mutex_lock(&s->mu);
            s->mac_refused++;
            pthread_mutex_unlock(&s->mu);
            break;
        }
        m.len = plain;
        assert_int_equal(edge_repl_msg_type((const uint8_t *)m.data, m.len, &type), EDGE_OK);
        edge_buf_reset(&o);
        if (type == EDGE_REPL_MSG_PING) {
            uint64_t t = 0;
            assert_int_equal(edge_repl_decode_ping((const uint8_t *)m.data, m.len, &t), EDGE_OK);
            assert_int_equal(edge_repl_encode_pong(&o, t), EDGE_OK);
            pthread_mutex_lock(&s->mu);
            s->pings++;
            pthread_mutex_unlock(&s->mu);
        } else {
            assert_int_equal(type, EDGE_REPL_MSG_ENTRIES);
            struct edge_repl_entry *e = NULL;
            size_t n = 0;
            assert_int_equal(edge_repl_decode_entries((const uint8_t *)m.data, m.len, &e, &n), EDGE_OK);
            uint64_t t_us = mono_us();
            pthread_mutex_lock(&s->mu);
            bool kill = ++s->batches == s->kill_at_batch;
            conn_batches++;
            for (size_t j = 0; !kill && j < n; j++) {
                if (s->n_recs < MAX_RECS) {
                    struct rec *r = &s->recs[s->n_recs++];
                    snprintf(r->origin, sizeof(r->origin), "%s", e[j].origin);
                    r->seq = e[j].seq;
                    r->hlc = e[j].hlc;
                    r->consistency = e[j].consistency;
                    r->conn = conn;
                    r->t_us = t_us;
                }
                if (s->skip_seq != 0 && e[j].seq == s->skip_seq && strcmp(e[j].origin, "us") == 0) {
                    if (!s->skip_always) {
                        s->skip_seq = 0; /* not applied: every later "us" entry is a gap now */
                    }
                    continue;
                }
                if (e[j].seq == edge_vclock_get(&s->vv, e[j].origin) + 1) {
                    assert_int_equal(edge_vclock_set(&s->vv, e[j].origin, e[j].seq), EDGE_OK);
                }
            }
            int ar = edge_repl_encode_ack(&o, &s->vv);
            bool hold = conn_batches < s->hold_acks;
            if (!hold && s->first_ack_after == 0) {
                s->first_ack_after = conn_batches;
            }
            pthread_mutex_unlock(&s->mu);
            edge_repl_entries_free(e, n);
            assert_int_equal(ar, EDGE_OK);
            if (kill) {
                goto out; /* a crash before applying: no ACK */
            }
            if (hold) {
                held++; /* answered later, in order, with the VV of that moment */
                continue;
            }
            for (; held > 0; held--) {
                if (srv_xmit(fd, &seal, &o) != 0) {
                    goto out;
                }
            }
        }
        if (srv_xmit(fd, &seal, &o) != 0) {
            break;
        }
    }
out:
    close(fd);
    edge_buf_free(&m);
    edge_buf_free(&o);
}

static void *srv_main(void *arg)
{
    struct srv *s = arg;
    for (int i = 0; i < 1000000 && !atomic_load(&s->stop); i++) {
        struct pollfd pf = {.fd = s->lfd, .events = POLLIN};
        if (poll(&pf, 1, 20) <= 0) {
            continue;
        }
        int fd = accept(s->lfd, NULL, NULL);
        if (fd >= 0) {
            srv_conn(s, fd);
        }
    }
    return NULL;
}

static int listen_any(int *out_port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 16), 0);
    socklen_t al = sizeof(a);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
    *out_port = ntohs(a.sin_port);
    return fd;
}

static void srv_start(struct srv *s, const char *secret)
{
    memset(s, 0, sizeof(*s));
    s->secret = secret;
    s->cluster = "test-cluster";
    s->region = "eu";
    pthread_mutex_init(&s->mu, NULL);
    edge_vclock_init(&s->vv);
    s->lfd = listen_any(&s->port);
}

static void srv_run(struct srv *s)
{
    atomic_store(&s->stop, false);
    assert_int_equal(pthread_create(&s->th, NULL, srv_main, s), 0);
}

static void srv_stop(struct srv *s)
{
    atomic_store(&s->stop, true);
    pthread_join(s->th, NULL);
    close(s->lfd);
    edge_vclock_close(&s->vv);
    pthread_mutex_destroy(&s->mu);
}

static uint64_t srv_vv(struct srv *s, const char *origin)
{
    pthread_mutex_lock(&s->mu);
    uint64_t v = edge_vclock_get(&s->vv, origin);
    pthread_mutex_unlock(&s->mu);
    return v;
}

/* ---- database ---- */

struct fixture {
    char dir[64], path[96];
    sqlite3 *db;
    struct srv srv;
    struct edge_peer *peer;
    atomic_int acks;
    char url[64];
};

static void add_entry(struct fixture *f, const char *origin, uint64_t seq, uint64_t hlc, int cons)
{
    struct edge_vclock deps;
    struct edge_buf b;
    edge_vclock_init(&deps);
    edge_buf_init(&b, 4096);
    if (seq > 1) {
        assert_int_equal(edge_vclock_set(&deps, origin, seq - 1), EDGE_OK);
    }
    assert_int_equal(edge_vclock_encode(&deps, &b), EDGE_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(f->db,
                                        "INSERT INTO _edge_log(origin, seq, hlc, consistency, deps, payload) "
                                        "VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
                                        -1, &st, NULL),
                     SQLITE_OK);
    char payload[64];
    int pl = snprintf(payload, sizeof(payload), "changeset %s/%llu", origin, (unsigned long long)seq);
    sqlite3_bind_text(st, 1, origin, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)seq);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)hlc);
    sqlite3_bind_int(st, 4, cons);
    sqlite3_bind_blob(st, 5, b.data, (int)b.len, SQLITE_TRANSIENT);
    sqlite3_bind_blob(st, 6, payload, pl, SQLITE_TRANSIENT);
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    assert_int_equal(sqlite3_prepare_v2(f->db,
                                        "INSERT INTO _edge_vv(origin, seq) VALUES(?1, ?2) "
                                        "ON CONFLICT(origin) DO UPDATE SET seq = excluded.seq",
                                        -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(st, 1, origin, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)seq);
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    edge_vclock_close(&deps);
    edge_buf_free(&b);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/edge_peer_XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/db", f->dir);
    assert_int_equal(sqlite3_open(f->path, &f->db), SQLITE_OK);
    sqlite3_busy_timeout(f->db, 5000);
    assert_int_equal(sqlite3_exec(f->db,
                                  "PRAGMA journal_mode=WAL;"
                                  "CREATE TABLE _edge_log(origin TEXT NOT NULL, seq INTEGER NOT NULL, hlc INTEGER "
                                  "NOT NULL, consistency INTEGER NOT NULL, deps BLOB NOT NULL, payload BLOB NOT "
                                  "NULL, PRIMARY KEY(origin, seq)) WITHOUT ROWID;"
                                  "CREATE TABLE _edge_vv(origin TEXT PRIMARY KEY, seq INTEGER NOT NULL);",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char p[128];
    sqlite3_close(f->db);
    snprintf(p, sizeof(p), "%s/db", f->dir);
    unlink(p);
    snprintf(p, sizeof(p), "%s/db-wal", f->dir);
    unlink(p);
    snprintf(p, sizeof(p), "%s/db-shm", f->dir);
    unlink(p);
    rmdir(f->dir);
    free(f);
    return 0;
}

static void on_ack(void *ud, const char *peer_region)
{
    struct fixture *f = ud;
    assert_string_equal(peer_region, "eu");
    atomic_fetch_add(&f->acks, 1);
}

static void start_peer_window(struct fixture *f, const char *secret, int batch, int sync_ms, int delay_ms,
                              int max_in_flight, size_t max_in_flight_bytes)
{
    snprintf(f->url, sizeof(f->url), "http://127.0.0.1:%d", f->srv.port);
    struct edge_peer_config c = {
        .db_path = f->path,
        .local_region = "us",
        .cluster = "test-cluster",
        .secret = secret,
        .peer_region = "eu",
        .peer_url = f->url,
        .sync_interval_ms = sync_ms,
        .max_batch_entries = batch,
        .one_way_delay_ms = delay_ms,
        .max_in_flight = max_in_flight,
        .max_in_flight_bytes = max_in_flight_bytes,
        .on_ack = on_ack,
        .ud = f,
    };
    assert_int_equal(edge_peer_start(&c, &f->peer), EDGE_OK);
}

static void start_peer_wan(struct fixture *f, const char *secret, int batch, int sync_ms, int delay_ms)
{
    snprintf(f->url, sizeof(f->url), "http://127.0.0.1:%d", f->srv.port);
    struct edge_peer_config c = {
        .db_path = f->path,
        .local_region = "us",
        .cluster = "test-cluster",
        .secret = secret,
        .peer_region = "eu",
        .peer_url = f->url,
        .sync_interval_ms = sync_ms,
        .max_batch_entries = batch,
        .one_way_delay_ms = delay_ms,
        .on_ack = on_ack,
        .ud = f,
    };
    assert_int_equal(edge_peer_start(&c, &f->peer), EDGE_OK);
}

static void start_peer(struct fixture *f, const char *secret, int batch, int sync_ms)
{
    start_peer_wan(f, secret, batch, sync_ms, 0);
}

static struct edge_peer_status status(struct fixture *f)
{
    struct edge_peer_status st;
    edge_peer_status(f->peer, &st);
    return st;
}

/* Poll until srv's VV for origin reaches want (at most ~10 s). */
static bool wait_vv(struct fixture *f, const char *origin, uint64_t want)
{
    for (int i = 0; i < 1000; i++) {
        if (srv_vv(&f->srv, origin) >= want) {
            return true;
        }
        usleep(10000);
    }
    return false;
}

/* ---- tests ---- */

static void test_push_in_hlc_order(void **state)
{
    struct fixture *f = *state;
    /* Two origins with interleaved HLCs; the peer already has ap 1..10. */
    for (uint64_t i = 1; i <= 50; i++) {
        add_entry(f, "us", i, 1000 + 2 * i, 0);
    }
    for (uint64_t i = 1; i <= 30; i++) {
        add_entry(f, "ap", i, 1001 + 3 * i, 0);
    }
    srv_start(&f->srv, "s3cret");
    assert_int_equal(edge_vclock_set(&f->srv.vv, "ap", 10), EDGE_OK);
    srv_run(&f->srv);
    start_peer(f, "s3cret", 16, 60000);
    assert_true(wait_vv(f, "us", 50));
    assert_true(wait_vv(f, "ap", 30));
    /* Wait for the ACK to land in the status too. */
    struct edge_peer_status st;
    for (int i = 0; i < 1000; i++) {
        st = status(f);
        /* on_ack runs after the status is published: wait for both. */
        bool done = edge_vclock_get(&st.acked, "us") == 50 && edge_vclock_get(&st.acked, "ap") == 30 &&
                    st.rtt_ms > 0 && atomic_load(&f->acks) >= 5;
        edge_vclock_close(&st.acked);
        if (done) {
            break;
        }
        usleep(10000);
    }
    st = status(f);
    assert_true(st.connected);
    assert_int_equal(edge_vclock_get(&st.acked, "us"), 50);
    assert_int_equal(edge_vclock_get(&st.acked, "ap"), 30);
    assert_int_equal(st.entries_sent, 70);
    assert_true(st.batches_sent >= 5);
    assert_true(st.bytes_sent > 70 * 10);
    assert_int_equal(st.retries, 0);
    assert_true(st.rtt_ms > 0);
    assert_true(atomic_load(&f->acks) >= 5);
    edge_vclock_close(&st.acked);

    pthread_mutex_lock(&f->srv.mu);
    assert_int_equal(f->srv.n_recs, 70);
    for (size_t i = 0; i < f->srv.n_recs; i++) {
        if (i > 0) {
            assert_true(f->srv.recs[i].hlc >= f->srv.recs[i - 1].hlc);
        }
        if (strcmp(f->srv.recs[i].origin, "ap") == 0) {
            assert_true(f->srv.recs[i].seq > 10);
        }
    }
    pthread_mutex_unlock(&f->srv.mu);
    edge_peer_stop(f->peer);
    srv_stop(&f->srv);
}

static void test_wrong_secret(void **state)
{
    struct fixture *f = *state;
    add_entry(f, "us", 1, 5, 0);
    srv_start(&f->srv, "right");
    srv_run(&f->srv);
    start_peer(f, "wrong", 0, 0);
    struct edge_peer_status st;
    bool seen = false;
    for (int i = 0; i < 1000 && !seen; i++) {
        st = status(f);
        seen = st.retries >= 1 && strstr(st.last_error, "AUTH") != NULL;
        edge_vclock_close(&st.acked);
        usleep(10000);
    }
    assert_true(seen);
    st = status(f);
    assert_false(st.connected);
    assert_int_equal(st.entries_sent, 0);
    edge_vclock_close(&st.acked);
    edge_peer_stop(f->peer);
    pthread_mutex_lock(&f->srv.mu);
    assert_true(f->srv.hello_rejected >= 1);
    assert_int_equal(f->srv.conns, 0);
    assert_int_equal(f->srv.n_recs, 0);
    pthread_mutex_unlock(&f->srv.mu);
    srv_stop(&f->srv);
}

/* A server that does not know the secret (it accepts any HELLO) cannot make the HELLO_OK
 * MAC over the link's fresh nonce: the link refuses it with AUTH and pushes nothing. */
static void test_impostor_server(void **state)
{
    struct fixture *f = *state;
    add_entry(f, "us", 1, 5, 0);
    srv_start(&f->srv, "right");
    f->srv.impostor = true;
    srv_run(&f->srv);
    start_peer(f, "right", 0, 0);
    struct edge_peer_status st;
    bool seen = false;
    for (int i = 0; i < 1000 && !seen; i++) {
        st = status(f);
        seen = st.retries >= 2 && strstr(st.last_error, "AUTH") != NULL;
        edge_vclock_close(&st.acked);
        usleep(10000);
    }
    assert_true(seen);
    st = status(f);
    assert_false(st.connected);
    assert_true(st.auth_failures >= 2);
    assert_int_equal(st.entries_sent, 0);
    edge_vclock_close(&st.acked);
    edge_peer_stop(f->peer);
    pthread_mutex_lock(&f->srv.mu);
    assert_true(f->srv.conns >= 2);
    assert_int_equal(f->srv.batches, 0);
    assert_int_equal(f->srv.n_recs, 0);
    pthread_mutex_unlock(&f->srv.mu);
    srv_stop(&f->srv);
}

static void test_reconnect_resends_from_ack(void **state)
{
    struct fixture *f = *state;
    for (uint64_t i = 1; i <= 50; i++) {
        add_entry(f, "us", i, 100 + i, 0);
    }
    srv_start(&f->srv, "k");
    f->srv.kill_at_batch = 2;
    srv_run(&f->srv);
    start_peer(f, "k", 10, 60000);
    assert_true(wait_vv(f, "us", 50));
    struct edge_peer_status st = status(f);
    assert_true(st.retries >= 1);
    assert_true(st.last_error[0] != '\0');
    assert_true(st.entries_sent >= 60); /* the killed batch was sent twice */
    edge_vclock_close(&st.acked);
    edge_peer_stop(f->peer);
    pthread_mutex_lock(&f->srv.mu);
    assert_true(f->srv.conns >= 2);
    /* First connection: batch 1 (1..10) applied; batch 2 lost. The second connection
     * starts again right after the last ACK. */
    bool found = false;
    for (size_t i = 0; i < f->srv.n_recs && !found; i++) {
        if (f->srv.recs[i].conn == 2) {
            assert_int_equal(f->srv.recs[i].seq, 11);
            found = true;
        }
    }
    assert_true(found);
    pthread_mutex_unlock(&f->srv.mu);
    srv_stop(&f->srv);
}

static void test_notify_and_async(void **state)
{
    struct fixture *f = *state;
    for (uint64_t i = 1; i <= 5; i++) {
        add_entry(f, "us", i, i, 0);
    }
    srv_start(&f->srv, "k");
    srv_run(&f->srv);
    start_peer(f, "k", 0, 600000); /* the sync tick never fires during the test */
    assert_true(wait_vv(f, "us", 5));
    /* An async entry followed by an eventual one: the notify pushes both. */
    add_entry(f, "us", 6, 6, 2);
    add_entry(f, "us", 7, 7, 0);
    edge_peer_notify(f->peer);
    assert_true(wait_vv(f, "us", 7));
    pthread_mutex_lock(&f->srv.mu);
    assert_int_equal(f->srv.recs[5].consistency, 2);
    assert_int_equal(f->srv.recs[6].consistency, 0);
    pthread_mutex_unlock(&f->srv.mu);
    edge_peer_stop(f->peer);
    srv_stop(&f->srv);
}

static void test_async_on_sync_tick(void **state)
{
    struct fixture *f = *state;
    add_entry(f, "us", 1, 1, 2);
    srv_start(&f->srv, "k");
    srv_run(&f->srv);
    start_peer(f, "k", 0, 100);
    assert_true(wait_vv(f, "us", 1));
    add_entry(f, "us", 2, 2, 2); /* no notify: only the tick ships it */
    assert_true(wait_vv(f, "us", 2));
    edge_peer_stop(f->peer);
    srv_stop(&f->srv);
}

static void test_malformed_server_frame(void **state)
{
    struct fixture *f = *state;
    for (uint64_t i = 1; i <= 3; i++) {
        add_entry(f, "us", i, i, 0);
    }
    srv_start(&f->srv, "k");
    f->srv.garbage_once = true;
    srv_run(&f->srv);
    start_peer(f, "k", 0, 60000);
    assert_true(wait_vv(f, "us", 3));
    struct edge_peer_status st = status(f);
    assert_true(st.retries >= 1);
    assert_true(strncmp(st.last_error, "protocol:", 9) == 0);
    edge_vclock_close(&st.acked);
    edge_peer_stop(f->peer);
    srv_stop(&f->srv);
}

static void test_needs_snapshot(void **state)
{
    struct fixture *f = *state;
    for (uint64_t i = 1; i <= 10; i++) {
        add_entry(f, "us", i, i, 0);
    }
    /* Compaction removed 1..4; the peer has nothing. */
    assert_int_equal(sqlite3_exec(f->db, "DELETE FROM _edge_log WHERE seq < 5", NULL, NULL, NULL), SQLITE_OK);
    srv_start(&f->srv, "k");
    srv_run(&f->srv);
    start_peer(f, "k", 0, 60000);
    struct edge_peer_status st;
    bool seen = false;
    for (int i = 0; i < 1000 && !seen; i++) {
        st = status(f);
        seen = st.needs_snapshot >= 1 && strstr(st.last_error, "snapshot") != NULL;
        edge_vclock_close(&st.acked);
        usleep(10000);
    }
    assert_true(seen);
    edge_peer_stop(f->peer);
    pthread_mutex_lock(&f->srv.mu);
    assert_int_equal(f->srv.n_recs, 0);
    pthread_mutex_unlock(&f->srv.mu);
    srv_stop(&f->srv);
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#define HANDSHAKE_TIMEOUT_S 5.0 /* repl/peer.c HANDSHAKE_TIMEOUT_MS */

static void test_stop_is_prompt(void **state)
{
    struct fixture *f = *state;
    /* A listener that never accepts: the TCP connect succeeds (backlog) and the link
     * then waits for the HTTP 101 that never comes, up to its 5 s handshake timeout.
     * Stop must cut that wait short: the bound is not a speed target but the line
     * between "interrupted" and "waited out its own timeout", counted from before the
     * link started (so it only gets looser with load before the stop call). */
    srv_start(&f->srv, "k");
    double t_start = mono_s();
    start_peer(f, "k", 0, 0);
    usleep(300000);
    edge_peer_stop(f->peer);
    assert_true(mono_s() - t_start < HANDSHAKE_TIMEOUT_S);
    close(f->srv.lfd);
    edge_vclock_close(&f->srv.vv);
    pthread_mutex_destroy(&f->srv.mu);

    /* Nobody listening: refused connects and back-off; stop is still prompt. */
    snprintf(f->url, sizeof(f->url), "http://127.0.0.1:1");
    struct edge_peer_config c = {.db_path = f->path, .local_region = "us", .cluster = "c", .secret = "s",
                                 .peer_region = "eu", .peer_url = f->url};
    assert_int_equal(edge_peer_start(&c, &f->peer), EDGE_OK);
    struct edge_peer_status st;
    bool refused = false;
    for (int i = 0; i < 1000 && !refused; i++) {
        st = status(f);
        refused = st.retries >= 1;
        edge_vclock_close(&st.acked);
        usleep(10000);
    }
    assert_true(refused);
    st = status(f);
    assert_false(st.connected);
    edge_vclock_close(&st.acked);
    /* The back-off sleep is interruptible too; this half only shows stop never hangs in
     * it (the jittered back-off this early is below the bound anyway). */
    double t0 = mono_s();
    edge_peer_stop(f->peer);
    assert_true(mono_s() - t0 < HANDSHAKE_TIMEOUT_S);
}

static void test_pipelined_before_first_ack(void **state)
{
    struct fixture *f = *state;
    for (uint64_t i = 1; i <= 40; i++) {
        add_entry(f, "us", i, 100 + i, 0);
    }
    srv_start(&f->srv, "k");
    /* A link with one batch in flight would wait for an ACK that never comes. */
    f->srv.hold_acks = 5;
    srv_run(&f->srv);
    start_peer(f, "k", 4, 60000);
    assert_true(wait_vv(f, "us", 40));
    struct edge_peer_status st;
    for (int i = 0; i < 1000; i++) {
        st = status(f);
        bool done = edge_vclock_get(&st.acked, "us") == 40 && st.in_flight == 0;
        edge_vclock_close(&st.acked);
        if (done) {
            break;
        }
        usleep(10000);
    }
    st = status(f);
    assert_int_equal(st.retries, 0);
    assert_int_equal(st.resends, 0);
    assert_int_equal(st.in_flight, 0);
    assert_int_equal(st.entries_sent, 40); /* nothing sent twice */
    assert_int_equal(st.batches_sent, 10);
    assert_int_equal(edge_vclock_get(&st.acked, "us"), 40);
    edge_vclock_close(&st.acked);
    edge_peer_stop(f->peer);
    pthread_mutex_lock(&f->srv.mu);
    assert_true(f->srv.first_ack_after >= 5);
    assert_int_equal(f->srv.conns, 1);
    assert_int_equal(f->srv.n_recs, 40);
    for (size_t i = 0; i < f->srv.n_recs; i++) {
        assert_int_equal(f->srv.recs[i].seq, i + 1);
    }
    pthread_mutex_unlock(&f->srv.mu);
    srv_stop(&f->srv);
}

static void test_gap_resends_from_acked(void **state)
{
    struct fixture *f = *state;
    for (uint64_t i = 1; i <= 20; i++) {
        add_entry(f, "us", i, 100 + i, 0);
    }
    srv_start(&f->srv, "k");
    f->srv.skip_seq = 3; /* the peer ACKs us=2 until 3 comes again */
    srv_run(&f->srv);
    start_peer(f, "k", 2, 60000);
    assert_true(wait_vv(f, "us", 20));
    struct edge_peer_status st = status(f);
    assert_int_equal(st.retries, 0); /* same connection: no reconnect needed */
    assert_true(st.resends >= 1);
    assert_true(st.entries_sent > 20);
    edge_vclock_close(&st.acked);
    edge_peer_stop(f->peer);
    pthread_mutex_lock(&f->srv.mu);
    assert_int_equal(f->srv.conns, 1);
    int seen_3 = 0;
    for (size_t i = 0; i < f->srv.n_recs; i++) {
        const struct rec *r = &f->srv.recs[i];
        if (r->seq <= 2) {
            assert_int_equal(r->seq, i + 1); /* acknowledged entries are never resent */
        }
        if (r->seq == 3 && ++seen_3 == 2) {
            /* Batches after the gap were on the wire before the fallback; the resend
             * starts right after what the peer acknowledged and runs on in order. */
            assert_true(i > 0 && f->srv.recs[i - 1].seq > 3);
            for (size_t j = i; j < f->srv.n_recs; j++) {
                assert_int_equal(f->srv.recs[j].seq, 3 + (j - i));
            }
        }
    }
    assert_int_equal(seen_3, 2);
    pthread_mutex_unlock(&f->srv.mu);
    srv_stop(&f->srv);
}

static void test_gap_without_progress_waits(void **state)
{
    struct fixture *f = *state;
    for (uint64_t i = 1; i <= 10; i++) {
        add_entry(f, "us", i, 100 + i, 0);
    }
    srv_start(&f->srv, "k");
    f->srv.skip_seq = 3;
    f->srv.skip_always = true; /* e.g. a dependency the peer never gets */
    srv_run(&f->srv);
    start_peer(f, "k", 2, 600000);
    assert_true(wait_vv(f, "us", 2));
    struct edge_peer_status st;
    bool resent = false;
    for (int i = 0; i < 1000 && !resent; i++) {
        st = status(f);
        resent = st.resends >= 1;
        edge_vclock_close(&st.acked);
        usleep(10000);
    }
    assert_true(resent);
    /* One resend may still find progress (the first round acknowledged 1..2); after
     * that the link must wait for a trigger instead of resending in a loop. The pause
     * gives a busy loop time to show itself; load can only make it resend less. */
    usleep(500000);
    st = status(f);
    uint64_t resends = st.resends;
    edge_vclock_close(&st.acked);
    assert_true(resends >= 1 && resends <= 2);
    pthread_mutex_lock(&f->srv.mu);
    int batches = f->srv.batches;
    pthread_mutex_unlock(&f->srv.mu);
    assert_true(batches <= 10);
    edge_peer_notify(f->peer); /* a trigger: one more round */
    bool again = false;
    for (int i = 0; i < 1000 && !again; i++) {
        st = status(f);
        again = st.resends == resends + 1;
        edge_vclock_close(&st.acked);
        usleep(10000);
    }
    assert_true(again);
    st = status(f);
    assert_int_equal(st.retries, 0);
    assert_int_equal(edge_vclock_get(&st.acked, "us"), 2);
    edge_vclock_close(&st.acked);
    edge_peer_stop(f->peer);
    srv_stop(&f->srv);
}

/* Entries committed at ms 0 through a link with a 200 ms one-way delay. What must hold,
 * whatever the machine's load (only lower bounds of time are asserted: a loaded machine
 * can make things late, never early):
 *  - no entry reaches the peer before its due time (commit + one delay), by the server's
 *    own monotonic clock, and the PING round trip goes through both delays;
 *  - the frames overlap on the emulated wire: several ENTRIES messages are queued for
 *    their due time at once (in_flight counts queued + sent, batches_sent only sent, so
 *    in_flight - sent-this-round >= 2 before any ACK can only mean two frames waiting
 *    together; a link that sleeps the delay per frame never shows more than one);
 *  - order: the peer receives every entry exactly once, in seq order, one per batch.
 * A round in which the test thread itself was too late to look (it sampled only after the
 * frames had left) proves nothing either way and is repeated, a bounded number of times. */
static void test_wan_delay_overlaps(void **state)
{
    struct fixture *f = *state;
    enum { PER_ROUND = 5, ROUNDS = 8, N = PER_ROUND * ROUNDS, DELAY_MS = 200 };
    uint64_t before_commit_us[N + 1];
    srv_start(&f->srv, "k");
    srv_run(&f->srv);
    start_peer_wan(f, "k", 1, 600000, DELAY_MS); /* one entry per batch: a batch per commit */
    bool up = false;
    struct edge_peer_status st;
    for (int i = 0; i < 3000 && !up; i++) {
        st = status(f);
        up = st.connected && st.rtt_ms > 0;
        edge_vclock_close(&st.acked);
        usleep(10000);
    }
    assert_true(up);
    st = status(f);
    /* The RTT goes through both emulated delays (ms truncation: 1 ms each way). */
    assert_true(st.rtt_ms >= 2 * DELAY_MS - 2);
    edge_vclock_close(&st.acked);

    uint64_t seq = 0;
    int max_waiting = 0, rounds = 0;
    for (; rounds < ROUNDS && max_waiting < 2; rounds++) {
        /* Start from an idle link: everything earlier is acknowledged. */
        bool idle = false;
        uint64_t base = 0;
        for (int i = 0; i < 3000 && !idle; i++) {
            st = status(f);
            idle = st.in_flight == 0 && edge_vclock_get(&st.acked, "us") == seq;
            base = st.batches_sent;
            edge_vclock_close(&st.acked);
            if (!idle) {
                usleep(5000);
            }
        }
        assert_true(idle);
        /* PER_ROUND entries in one transaction, then one notify. */
        assert_int_equal(sqlite3_exec(f->db, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
        uint64_t t0 = mono_us();
        for (int k = 0; k < PER_ROUND; k++) {
            seq++;
            before_commit_us[seq] = t0;
            add_entry(f, "us", seq, seq, 0);
        }
        assert_int_equal(sqlite3_exec(f->db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
        edge_peer_notify(f->peer);
        /* Sample until every frame of the round has left the emulated wire. */
        for (int i = 0; i < 20000; i++) {
            st = status(f);
            int sent = (int)(st.batches_sent - base);
            int waiting = st.in_flight - sent; /* queued, not yet due (an ACK only lowers it) */
            edge_vclock_close(&st.acked);
            max_waiting = waiting > max_waiting ? waiting : max_waiting;
            if (sent >= PER_ROUND) {
                break;
            }
            usleep(500);
        }
    }
    print_message("frames waiting on the emulated wire at once: %d (after %d round(s))\n", max_waiting, rounds);
    assert_true(max_waiting >= 2);
    assert_true(wait_vv(f, "us", seq));
    st = status(f);
    assert_int_equal(st.retries, 0);
    assert_int_equal(st.resends, 0);
    assert_int_equal(st.entries_sent, seq);
    assert_int_equal(st.batches_sent, seq);
    edge_vclock_close(&st.acked);
    edge_peer_stop(f->peer);
    pthread_mutex_lock(&f->srv.mu);
    assert_int_equal(f->srv.n_recs, seq);
    for (size_t i = 0; i < f->srv.n_recs; i++) {
        const struct rec *r = &f->srv.recs[i];
        assert_int_equal(r->seq, i + 1);
        /* Not before its due time: the link's clock is in whole ms, hence the 1 ms. */
        assert_true(r->t_us + 1000 >= before_commit_us[r->seq] + (uint64_t)DELAY_MS * 1000);
    }
    pthread_mutex_unlock(&f->srv.mu);
    srv_stop(&f->srv);
}

/* The window bounds what awaits an ACK, by count and by bytes. Every entry is in the log
 * before the link connects and batches hold one entry, so at HELLO_OK the link has more
 * to send than the window allows and must stop at it (window_full counts that); frames
 * stay 100 ms on the emulated wire each way, so the window is really occupied while the
 * test samples it. Only upper bounds on what is in flight are asserted (load can only
 * make the sampler see less). Then every entry arrives exactly once, in order. */
static void window_round(struct fixture *f, int max_in_flight, size_t max_bytes, int n, int want_max)
{
    for (int i = 1; i <= n; i++) {
        add_entry(f, "us", (uint64_t)i, 100 + (uint64_t)i, 0);
    }
    srv_start(&f->srv, "k");
    srv_run(&f->srv);
    start_peer_window(f, "k", 1, 600000, 100, max_in_flight, max_bytes);
    int seen_max = 0;
    bool done = false;
    struct edge_peer_status st;
    for (int i = 0; i < 30000 && !done; i++) {
        st = status(f);
        assert_true(st.in_flight <= want_max);
        if (max_bytes > 0 && st.in_flight > 1) {
            assert_true(st.in_flight_bytes < 2 * max_bytes); /* under max_bytes before the last one */
        }
        seen_max = st.in_flight > seen_max ? st.in_flight : seen_max;
        done = edge_vclock_get(&st.acked, "us") == (uint64_t)n && st.in_flight == 0;
        edge_vclock_close(&st.acked);
        usleep(1000);
    }
    assert_true(done);
    print_message("window %d/%zu: at most %d in flight seen\n", max_in_flight, max_bytes, seen_max);
    st = status(f);
    assert_true(st.window_full >= 1);
    assert_int_equal(st.in_flight_bytes, 0);
    assert_int_equal(st.retries, 0);
    assert_int_equal(st.resends, 0);
    assert_int_equal(st.entries_sent, (uint64_t)n);
    assert_int_equal(st.batches_sent, (uint64_t)n);
    edge_vclock_close(&st.acked);
    edge_peer_stop(f->peer);
    pthread_mutex_lock(&f->srv.mu);
    assert_int_equal(f->srv.n_recs, (size_t)n);
    for (size_t i = 0; i < f->srv.n_recs; i++) {
        assert_int_equal(f->srv.recs[i].seq, i + 1);
    }
    pthread_mutex_unlock(&f->srv.mu);
    srv_stop(&f->srv);
}

static void test_window_bounds_count(void **state)
{
    window_round(*state, 3, 0, 9, 3);
}

static void test_window_bounds_bytes(void **state)
{
    /* One byte: a second batch never goes out while one is unanswered. */
    window_round(*state, 32, 1, 4, 1);
}

static void test_start_validates(void **state)
{
    struct fixture *f = *state;
    struct edge_peer *p = NULL;
    struct edge_peer_config c = {.db_path = f->path, .local_region = "us", .cluster = "c", .secret = "s",
                                 .peer_region = "eu", .peer_url = "ftp://x"};
    assert_int_equal(edge_peer_start(&c, &p), EDGE_EINVAL);
    c.peer_url = "http://127.0.0.1:notaport";
    assert_int_equal(edge_peer_start(&c, &p), EDGE_EINVAL);
    c.peer_url = "http://127.0.0.1:9";
    c.peer_region = "bad region";
    assert_int_equal(edge_peer_start(&c, &p), EDGE_EINVAL);
    c.peer_region = "eu";
    c.db_path = "/nonexistent/dir/db";
    assert_int_equal(edge_peer_start(&c, &p), EDGE_ESTORE);
    assert_null(p);
    edge_peer_stop(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_push_in_hlc_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_secret, setup, teardown),
        cmocka_unit_test_setup_teardown(test_impostor_server, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reconnect_resends_from_ack, setup, teardown),
        cmocka_unit_test_setup_teardown(test_notify_and_async, setup, teardown),
        cmocka_unit_test_setup_teardown(test_async_on_sync_tick, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_server_frame, setup, teardown),
        cmocka_unit_test_setup_teardown(test_needs_snapshot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_is_prompt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipelined_before_first_ack, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gap_resends_from_acked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gap_without_progress_waits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wan_delay_overlaps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_window_bounds_count, setup, teardown),
        cmocka_unit_test_setup_teardown(test_window_bounds_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_start_validates, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
