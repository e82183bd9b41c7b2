/* SPDX-License-Identifier: MIT */
/* Peer links, server side (see session.h). */
#include "repl/session.h"

#include <sodium.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "net/httpc.h"
#include "repl/proto.h"
#include "repl/trace.h"

static uint64_t wall_now_ms(void) { return edge_wall_ms(); }

/* Messages a link may have waiting here: a sender keeps up to 240 ENTRIES in flight
 * (repl/peer.c IN_FLIGHT_MAX) plus its PING; their bytes are bounded by its window. The
 * frames of the link's apply job have left the queue: a link holds at most this many
 * queued messages plus one job of GROUP_FRAMES_MAX frames / GROUP_BYTES_MAX bytes (the
 * first frame whatever its size), i.e. 256 + 64 frames (256 + 1 before group apply). A
 * sender within its window never gets there: job and queue together are its in-flight
 * ENTRIES and PINGs. */
#define PEER_QUEUE_MAX 256

struct peer_frame {
    uint8_t *data;
    size_t len;
    uint64_t rx_ns; /* repl/trace.h: when it arrived, when tracing */
    struct peer_frame *next;
};

struct edge_peer_session {
    struct edge_repl_state *st;
    struct edge_peer_session_host host;
    struct edge_http_conn *conn;
    uint8_t nonce[EDGE_REPL_NONCE_LEN];
    bool authed;                /* HELLO verified and HELLO_OK sent: every frame is sealed from here */
    struct edge_repl_seal seal; /* the session key and both sequence numbers */
    char region[EDGE_VCLOCK_REGION_MAX + 1];
    struct peer_frame *q_head, *q_tail;
    size_t q_len;
    bool busy; /* an apply job is on the writer */
    bool closed;
    int refs;
};

/* ENTRIES frames queued for a link while its apply job ran are applied together, in one
 * writer transaction (group apply): on a WAN link a sender keeps many small batches in
 * flight, and one transaction each made the receiver the bottleneck after a stall or a
 * bulk load. Bounded per job by count and bytes (the first frame always goes, whatever
 * its size); metrics edgelite_repl_apply_transactions_total / _frames_total. */
#define GROUP_FRAMES_MAX 64
#define GROUP_BYTES_MAX ((size_t)4 << 20)

/* One ENTRIES frame of an apply job, and what it is answered. */
struct apply_frame {
    uint8_t *data;
    size_t len;
    struct edge_vclock ack_vv; /* the VV after this frame; empty: the region's VV when answered */
    int rv;
    char err[256];
};

/* One or more ENTRIES frames on their way through the writer and back. */
struct apply_job {
    struct edge_writer_job wjob;
    struct edge_task task;
    struct edge_peer_session *ps;
    struct apply_frame *frames;
    size_t n_frames;
    size_t n_run;     /* frames the job answers (from the first); the rest go back to the queue */
    uint64_t applied; /* entries the job applied (or kept aside as failed) */
    uint64_t rx_ns, run_ns; /* repl/trace.h: its first frame's arrival, the writer's start */
};

static void peer_process(struct edge_peer_session *ps);

static void peer_session_unref(struct edge_peer_session *ps)
{
    if (--ps->refs > 0) return;
    while (ps->q_head != NULL) {
        struct peer_frame *f = ps->q_head;
        ps->q_head = f->next;
        edge_free(f->data);
        edge_free(f);
    }
    edge_http_conn_unref(ps->conn);
    edge_repl_seal_wipe(&ps->seal);
    edge_free(ps);
}

/* b gets the frame's tag appended once the link is authenticated. */
static void peer_send(struct edge_peer_session *ps, struct edge_buf *b)
{
    if (ps->closed || b->len == 0) return;
    if (ps->authed && edge_repl_seal_frame(&ps->seal, b) != EDGE_OK) {
        /* never sent unsealed: the peer would refuse it anyway */
        edge_http_ws_close(ps->conn, 1011, "INTERNAL");
        ps->closed = true;
        return;
    }
    edge_http_ws_send(ps->conn, 2, b->data, b->len);
    /* an acknowledgement waits for nothing else of this iteration (the sender's window) */
    edge_http_ws_flush(ps->conn);
}

/* Refuse the link: an ERROR message with the reason, then close. Logged once. */
static void peer_refuse(struct edge_peer_session *ps, const char *code, const char *msg)
{
    EDGE_LOG(EDGE_LOG_WARN, EDGE_MOD_REPL, "peer link from %s refused: %s: %s", ps->region[0] ? ps->region : "?",
             code, msg);
    struct edge_buf b;
    edge_buf_init(&b, 4096);
    if (edge_repl_encode_error(&b, code, msg) == EDGE_OK) peer_send(ps, &b);
    edge_buf_free(&b);
    edge_http_ws_close(ps->conn, 1008, code);
    ps->closed = true;
}

static void add_stats(struct edge_repl_state *st, const struct edge_repl_apply_stats *as)
{
    atomic_fetch_add(&st->stats.applied, as->applied);
    atomic_fetch_add(&st->stats.rows, as->rows);
    atomic_fetch_add(&st->stats.conflicts, as->conflicts);
    atomic_fetch_add(&st->stats.session_merges, as->session_merges);
    atomic_fetch_add(&st->stats.duplicates, as->duplicates);
    atomic_fetch_add(&st->stats.deferred, as->deferred);
    atomic_fetch_add(&st->stats.hidden, as->hidden);
    atomic_fetch_add(&st->stats.restored, as->restored);
    atomic_fetch_add(&st->stats.apply_errors, as->apply_errors);
    atomic_fetch_add(&st->stats.skewed, as->skewed);
    atomic_fetch_add(&st->stats.ddl_skipped, as->ddl_skipped);
    atomic_fetch_add(&st->stats.horizon_drops, as->horizon_drops);
}

/* After the transaction, whatever happened: what we hold now (the sender resends the rest). */
static void load_ack_vv(struct edge_repl_state *st, sqlite3 *db, struct edge_vclock *out)
{
    struct edge_vclock vv;
    edge_vclock_init(&vv);
    if (edge_repl_vv_load(db, &vv) == EDGE_OK) {
        edge_repl_state_merge(st, &vv);
        edge_vclock_copy(out, &vv);
    }
    edge_vclock_close(&vv);
}

/* Apply entries (from frames whose ends fr gives, or one frame) in order inside one
 * transaction, a savepoint per entry; a failing entry is kept aside, never blocks the rest
 * (apply.c). The clock moves past what was applied before COMMIT. After it, what we hold
 * now goes to *ack_vv (whatever happened: the sender resends the rest) and to the
 * region's VV, then the feed hears of what was applied. */
static int apply_entries(struct apply_job *j, sqlite3 *db, const struct edge_repl_entry *entries, size_t count,
                         const struct edge_repl_frames *fr, struct edge_vclock *ack_vv, char *err, size_t err_len)
{
    struct edge_repl_state *st = j->ps->st;
    struct edge_repl_apply_stats as = {0};
    /* Before the batch's COMMIT: the hot-read cache refuses what it may change. */
    struct edge_feed_mark mark = {0};
    edge_feed_mark_entries(st, db, entries, count, &mark);
    edge_capture_suspend(st->wcap, true);
    int rv = edge_repl_apply_frames(db, &st->local, st->max_skew_ms, entries, count, fr, &as, err, err_len);
    edge_capture_suspend(st->wcap, false);
    if (edge_repl_trace_on()) {
        uint64_t now = edge_repl_trace_now_ns();
        for (size_t i = 0; i < count; i++) {
            edge_repl_trace_at("rx", entries[i].origin, entries[i].seq, j->rx_ns);
            edge_repl_trace_at("apply", entries[i].origin, entries[i].seq, j->run_ns);
            edge_repl_trace_at("applied", entries[i].origin, entries[i].seq, now);
        }
    }
    if (rv == EDGE_OK || rv == EDGE_ECORRUPT || rv == EDGE_ESTORE) load_ack_vv(st, db, ack_vv);
    if (as.applied + as.apply_errors > 0) edge_feed_dispatch(st, db);
    edge_feed_unmark(st, &mark);
    if (rv == EDGE_OK || fr == NULL) {
        /* a group that failed is applied again frame by frame: counted there */
        add_stats(st, &as);
        j->applied += as.applied + as.apply_errors;
    }
    return rv;
}

/* Its answer is BAD_ENTRIES and the close (apply_finish), not an ACK. */
static bool frame_closes_link(const struct apply_frame *f)
{
    return f->rv == EDGE_ECORRUPT && f->ack_vv.n_entries == 0;
}

/* Writer thread: one frame, on its own (as every frame was before group apply). */
static void apply_one(struct apply_job *j, sqlite3 *db, struct apply_frame *f)
{
    struct edge_repl_entry *entries = NULL;
    size_t count = 0;
    f->rv = edge_repl_decode_entries(f->data, f->len, &entries, &count);
    if (f->rv != EDGE_OK) {
        snprintf(f->err, sizeof(f->err), "malformed ENTRIES message");
        return;
    }
    f->rv = apply_entries(j, db, entries, count, NULL, &f->ack_vv, f->err, sizeof(f->err));
    edge_repl_entries_free(entries, count);
    if (f->rv == EDGE_OK) {
        atomic_fetch_add(&j->ps->st->stats.apply_txns, 1);
        atomic_fetch_add(&j->ps->st->stats.apply_frames, 1);
    }
}

/* Inside the group's transaction, frame k applied: the VV it leaves is its ACK. */
static int group_on_frame(void *ud, sqlite3 *db, size_t k)
{
    struct apply_job *j = ud;
    struct apply_frame *f = &j->frames[k];
    edge_vclock_close(&f->ack_vv);
    edge_vclock_init(&f->ack_vv);
    return edge_repl_vv_load(db, &f->ack_vv);
}

/* Writer thread: frames 0..n-1 (all decoded) in one transaction. EDGE_OK: applied and
 * each has its ACK's VV; else nothing was applied. */
static int apply_group(struct apply_job *j, sqlite3 *db, struct edge_repl_entry *const *per, const size_t *cnt,
                       size_t n)
{
    size_t total = 0;
    for (size_t k = 0; k < n; k++) total += cnt[k];
    size_t *ends = edge_calloc(n, sizeof(*ends));
    struct edge_repl_entry *all = edge_calloc(total ? total : 1, sizeof(*all));
    int rv = EDGE_ENOMEM;
    if (ends == NULL || all == NULL) goto out;
    /* The entries side by side, borrowed: each frame's array keeps owning its VVs. */
    size_t at = 0;
    for (size_t k = 0; k < n; k++) {
        if (cnt[k] > 0) memcpy(&all[at], per[k], cnt[k] * sizeof(*all));
        at += cnt[k];
        ends[k] = at;
    }
    struct edge_repl_frames fr = {ends, n, group_on_frame, j};
    char err[256] = "";
    /* the last frame's ACK is read after COMMIT, as a frame alone is */
    struct edge_vclock last;
    edge_vclock_init(&last);
    rv = apply_entries(j, db, all, total, &fr, &last, err, sizeof(err));
    if (rv == EDGE_OK) {
        edge_vclock_close(&j->frames[n - 1].ack_vv);
        j->frames[n - 1].ack_vv = last;
        edge_vclock_init(&last);
        atomic_fetch_add(&j->ps->st->stats.apply_txns, 1);
        atomic_fetch_add(&j->ps->st->stats.apply_frames, n);
    }
    edge_vclock_close(&last);
out:
    edge_free(all);
    edge_free(ends);
    return rv;
}

/* Writer thread, alone. Several frames: the ones before the first that does not decode
 * go in one transaction; if that fails, each of them is applied alone instead, so a
 * failure is answered exactly as it was frame by frame. The frame that does not decode
 * is answered as before, and the frames after it go back to the link's queue: it may
 * close the link, and then they must not be applied. */
static int apply_run(struct edge_writer_job *job, struct edge_store_conn *conn)
{
    struct apply_job *j = (struct apply_job *)job;
    sqlite3 *db = edge_store_db(conn);
    if (edge_repl_trace_on()) j->run_ns = edge_repl_trace_now_ns();
    j->n_run = j->n_frames;
    if (j->n_frames == 1) {
        apply_one(j, db, &j->frames[0]);
        return EDGE_OK;
    }
    struct edge_repl_entry **per = edge_calloc(j->n_frames, sizeof(*per));
    size_t *cnt = edge_calloc(j->n_frames, sizeof(*cnt));
    size_t ok = 0;
    if (per != NULL && cnt != NULL) {
        while (ok < j->n_frames && edge_repl_decode_entries(j->frames[ok].data, j->frames[ok].len, &per[ok],
                                                            &cnt[ok]) == EDGE_OK) {
            ok++;
        }
    }
    int grv = ok >= 2 ? apply_group(j, db, per, cnt, ok) : EDGE_EINVAL;
    for (size_t k = 0; k < ok; k++) edge_repl_entries_free(per[k], cnt[k]);
    edge_free(per);
    edge_free(cnt);
    size_t alone = grv == EDGE_OK ? ok : 0;
    if (grv == EDGE_OK) {
        for (size_t k = 0; k < ok; k++) j->frames[k].rv = EDGE_OK;
    }
    /* frame by frame from the first not applied by the group, up to the one that does not
     * decode (included), or to the first whose answer closes the link (included): the
     * frames after it go back to the queue and leave with the link, never applied, as
     * the frames after a malformed one always did */
    size_t upto = ok < j->n_frames ? ok + 1 : ok;
    for (size_t k = alone; k < upto; k++) {
        edge_vclock_close(&j->frames[k].ack_vv);
        edge_vclock_init(&j->frames[k].ack_vv);
        apply_one(j, db, &j->frames[k]);
        if (frame_closes_link(&j->frames[k])) upto = k + 1;
    }
    j->n_run = upto;
    return EDGE_OK;
}

static void apply_job_free(struct apply_job *j)
{
    for (size_t k = 0; k < j->n_frames; k++) {
        edge_vclock_close(&j->frames[k].ack_vv);
        edge_free(j->frames[k].data);
    }
    edge_free(j->frames);
    edge_free(j);
}

/* Loop thread: answer each frame with its ACK, in order, and take the next message. */
static void apply_finish(struct apply_job *j)
{
    struct edge_peer_session *ps = j->ps;
    struct edge_repl_state *st = ps->st;
    for (size_t k = 0; k < j->n_run && !ps->closed; k++) {
        struct apply_frame *f = &j->frames[k];
        if (f->rv != EDGE_OK && f->rv != EDGE_EBUSY) {
            EDGE_LOG(EDGE_LOG_WARN, EDGE_MOD_REPL, "peer %s: apply failed: %s", ps->region,
                     f->err[0] ? f->err : edge_strerror(f->rv));
        }
        struct edge_buf b;
        edge_buf_init(&b, 1 << 20);
        if (frame_closes_link(f)) {
            peer_refuse(ps, "BAD_ENTRIES", f->err[0] ? f->err : "malformed entries");
        } else {
            if (f->ack_vv.n_entries == 0) edge_repl_state_vv(st, &f->ack_vv);
            if (edge_repl_encode_ack(&b, &f->ack_vv) == EDGE_OK) peer_send(ps, &b);
        }
        edge_buf_free(&b);
    }
    /* Frames after one that did not decode: back to the head of the queue, in order
     * (gone with the link if that frame closed it). */
    for (size_t k = j->n_frames; k > j->n_run && !ps->closed; k--) {
        struct peer_frame *f = edge_calloc(1, sizeof(*f));
        if (f == NULL) {
            peer_refuse(ps, "INTERNAL", "out of memory");
            break;
        }
        f->data = j->frames[k - 1].data;
        f->len = j->frames[k - 1].len;
        j->frames[k - 1].data = NULL;
        f->next = ps->q_head;
        ps->q_head = f;
        if (ps->q_tail == NULL) ps->q_tail = f;
        ps->q_len++;
    }
    /* New entries (possibly from a third region) may need relaying to other peers, and
     * reads waiting for a bookmark may now be served. A batch that applied nothing
     * (duplicates, or entries waiting for a dependency) changes nothing to relay: waking
     * the links then would have them resend to peers that cannot apply either, and
     * round it goes. */
    if (j->applied > 0) {
        edge_repl_peers_notify(st);
        edge_repl_state_wake(st);
    }
    ps->busy = false;
    apply_job_free(j);
    peer_process(ps);
    peer_session_unref(ps);
}

static void apply_task(struct edge_task *t)
{
    apply_finish((struct apply_job *)(void *)((char *)t - offsetof(struct apply_job, task)));
}

/* Writer thread: hand the finished batch to the session's loop. */
static void apply_complete(struct edge_writer_job *job, int status)
{
    (void)status;
    struct apply_job *j = (struct apply_job *)job;
    atomic_fetch_add(&j->ps->st->data_version, 1);
    j->task.run = apply_task;
    j->ps->host.post(j->ps->host.ud, &j->task);
}

/* With mutual TLS, the client certificate must belong to the region the HELLO claims: a
 * certificate that names region ids (DNS SANs equal to configured ids) is bound to those,
 * any other to the host of the claimed region's configured URL (IP or DNS SAN). Without a
 * verified certificate (plain link, no cluster.ca_file) there is nothing to bind. */
static bool cert_is_region(const struct edge_peer_session *ps, const char *region)
{
    const struct edge_conf *conf = ps->st->conf;
    if (!edge_http_conn_peer_verified(ps->conn)) return true;
    bool names_regions = false;
    for (size_t i = 0; i < conf->n_regions; i++) {
        if (edge_http_conn_peer_names(ps->conn, conf->regions[i].id, true)) {
            if (strcmp(conf->regions[i].id, region) == 0) return true;
            names_regions = true;
        }
    }
    if (names_regions) return false;
    const struct edge_conf_region *r = edge_conf_region_find(conf, region);
    struct edge_httpc_url u;
    return r != NULL && r->url != NULL && edge_httpc_url_parse(r->url, &u) == EDGE_OK &&
           edge_http_conn_peer_names(ps->conn, u.host, false);
}

static bool is_entries(const struct peer_frame *f)
{
    int type = 0;
    return edge_repl_msg_type(f->data, f->len, &type) == EDGE_OK && type == EDGE_REPL_MSG_ENTRIES;
}

/* f, and the ENTRIES frames queued right behind it (bounded), in one apply job. */
static void peer_entries(struct edge_peer_session *ps, struct peer_frame *f)
{
    struct apply_job *j = edge_calloc(1, sizeof(*j));
    size_t n = 1, bytes = f->len;
    for (struct peer_frame *q = ps->q_head; q != NULL && n < GROUP_FRAMES_MAX && bytes + q->len <= GROUP_BYTES_MAX &&
                                            is_entries(q);
         q = q->next) {
        n++;
        bytes += q->len;
    }
    if (j != NULL) j->frames = edge_calloc(n, sizeof(*j->frames));
    if (j == NULL || j->frames == NULL) {
        edge_free(j);
        peer_refuse(ps, "INTERNAL", "out of memory");
        return;
    }
    j->ps = ps;
    j->n_frames = n;
    j->rx_ns = f->rx_ns;
    for (size_t k = 0; k < n; k++) {
        struct peer_frame *g = f;
        if (k > 0) {
            g = ps->q_head;
            ps->q_head = g->next;
            if (ps->q_head == NULL) ps->q_tail = NULL;
            ps->q_len--;
        }
        edge_vclock_init(&j->frames[k].ack_vv);
        j->frames[k].data = g->data; /* the job owns the bytes now */
        j->frames[k].len = g->len;
        g->data = NULL;
        if (k > 0) edge_free(g);
    }
    /* Alone, never inside a group: local writes get their row stamps only when the
     * group's log entry is built at commit, so an entry applied between a local write
     * and that point would merge against stale stamps and the regions would diverge
     * (seen under load by bench/repl.sh). */
    j->wjob.exclusive = true;
    j->wjob.run = apply_run;
    j->wjob.complete = apply_complete;
    ps->busy = true;
    ps->refs++;
    if (edge_writer_submit(ps->st->writer, &j->wjob) != EDGE_OK) {
        j->n_run = j->n_frames;
        for (size_t k = 0; k < n; k++) j->frames[k].rv = EDGE_ECLOSED;
        apply_finish(j);
    }
}

static void peer_hello(struct edge_peer_session *ps, struct peer_frame *f, struct edge_buf *b)
{
    struct edge_repl_state *st = ps->st;
    struct edge_repl_hello h;
    memset(&h, 0, sizeof(h));
    edge_vclock_init(&h.vv);
    int drv = ps->authed ? EDGE_OK : edge_repl_decode_hello(f->data, f->len, &h);
    if (ps->authed) {
        peer_refuse(ps, "HELLO_REPLAYED", "a second HELLO on an established link");
    } else if (drv == EDGE_EPROTO) {
        char msg[160];
        snprintf(msg, sizeof(msg), "peer protocol version %llu is not supported; this node speaks %d",
                 (unsigned long long)h.version, EDGE_REPL_PROTO_VERSION);
        peer_refuse(ps, "VERSION", msg);
    } else if (drv != EDGE_OK) {
        peer_refuse(ps, "PROTOCOL", "malformed HELLO");
    } else {
        snprintf(ps->region, sizeof(ps->region), "%s", h.region);
        const char *secret = st->conf ? st->conf->cluster_secret : NULL;
        const char *cluster = st->conf ? st->conf->cluster_name : "";
        int vrv = secret ? edge_repl_hello_verify(&h, cluster, secret, ps->nonce) : EDGE_EAUTH;
        struct edge_vclock vv;
        uint8_t mac[EDGE_REPL_MAC_LEN];
        edge_vclock_init(&vv);
        if (vrv == EDGE_EPROTO) {
            peer_refuse(ps, "VERSION", "unsupported peer protocol version");
        } else if (vrv != EDGE_OK) {
            atomic_fetch_add(&st->stats.peer_auth_refused, 1);
            peer_refuse(ps, "AUTH", "cluster name or secret does not match");
        } else if (strcmp(h.to_region, st->region) != 0) {
            /* the MAC covers to_region: this is what the client asked for, not a forgery */
            peer_refuse(ps, "WRONG_REGION", "this node is another region than the one the link was configured for");
        } else if (strcmp(h.region, st->region) == 0 || edge_conf_region_find(st->conf, h.region) == NULL) {
            peer_refuse(ps, "UNKNOWN_REGION", "region is not part of this cluster");
        } else if (!cert_is_region(ps, h.region)) {
            atomic_fetch_add(&st->stats.peer_auth_refused, 1);
            EDGE_LOG(EDGE_LOG_WARN, EDGE_MOD_REPL, "peer link claiming region %s refused: its certificate is not %s's",
                     h.region, h.region);
            peer_refuse(ps, "CERT_REGION",
                        "the client certificate does not belong to that region (its SANs name other regions, or not "
                        "the host of its configured URL)");
        } else {
            edge_repl_state_vv(st, &vv);
            if (edge_repl_hello_ok_mac(secret, ps->nonce, &h, st->region, &vv, mac) != EDGE_OK ||
                edge_repl_seal_init(&ps->seal, secret, ps->nonce, &h, st->region, false) != EDGE_OK) {
                peer_refuse(ps, "INTERNAL", "cannot derive the session key");
            } else {
                /* HELLO_OK leaves unsealed (it proves the secret itself); every frame after it is sealed */
                if (edge_repl_encode_hello_ok(b, st->region, &vv, mac) == EDGE_OK) peer_send(ps, b);
                ps->authed = true;
                EDGE_LOG(EDGE_LOG_INFO, EDGE_MOD_REPL, "peer link from %s established", ps->region);
            }
        }
        edge_vclock_close(&vv);
        sodium_memzero(mac, sizeof(mac));
    }
    edge_repl_hello_close(&h);
}

static void peer_handle(struct edge_peer_session *ps, struct peer_frame *f)
{
    int type = 0;
    if (edge_repl_msg_type(f->data, f->len, &type) != EDGE_OK) {
        peer_refuse(ps, "PROTOCOL", "empty or unknown message");
        return;
    }
    struct edge_buf b;
    edge_buf_init(&b, 1 << 20);
    if (type == EDGE_REPL_MSG_HELLO) {
        peer_hello(ps, f, &b);
    } else if (!ps->authed) {
        peer_refuse(ps, "NO_HELLO", "the first message must be HELLO");
    } else if (type == EDGE_REPL_MSG_PING) {
        uint64_t t;
        if (edge_repl_decode_ping(f->data, f->len, &t) != EDGE_OK) {
            peer_refuse(ps, "PROTOCOL", "malformed PING");
        } else if (edge_repl_encode_pong_clock(&b, t, wall_now_ms()) == EDGE_OK) {
            peer_send(ps, &b);
        }
    } else if (type == EDGE_REPL_MSG_ENTRIES) {
        peer_entries(ps, f);
    } else if (type == EDGE_REPL_MSG_PONG) {
        /* ignore */
    } else {
        peer_refuse(ps, "PROTOCOL", "unexpected message type");
    }
    edge_buf_free(&b);
}

static void peer_process(struct edge_peer_session *ps)
{
    while (!ps->busy && !ps->closed && ps->q_head != NULL) {
        struct peer_frame *f = ps->q_head;
        ps->q_head = f->next;
        if (ps->q_head == NULL) ps->q_tail = NULL;
        ps->q_len--;
        peer_handle(ps, f);
        edge_free(f->data);
        edge_free(f);
    }
}

static void peer_on_message(void *ud, struct edge_http_conn *c, int opcode, const uint8_t *data, size_t len)
{
    (void)c;
    struct edge_peer_session *ps = ud;
    if (ps->closed) return;
    if (opcode != 2) {
        peer_refuse(ps, "PROTOCOL", "peer messages are binary frames");
        return;
    }
    if (ps->q_len >= PEER_QUEUE_MAX) {
        peer_refuse(ps, "OVERLOAD", "too many messages in flight");
        return;
    }
    /* Checked on arrival, in arrival order: the sequence numbers are the arrival order.
     * A frame that fails is never queued, so nothing of it is applied or answered. */
    if (ps->authed) {
        size_t n = 0;
        if (edge_repl_open_frame(&ps->seal, data, len, &n) != EDGE_OK) {
            atomic_fetch_add(&ps->st->stats.peer_mac_errors, 1);
            peer_refuse(ps, "MAC", "a frame failed its integrity check (altered, injected, replayed or reordered)");
            return;
        }
        len = n;
    }
    struct peer_frame *f = edge_calloc(1, sizeof(*f));
    uint8_t *copy = edge_malloc(len ? len : 1);
    if (f == NULL || copy == NULL) {
        edge_free(f);
        edge_free(copy);
        peer_refuse(ps, "INTERNAL", "out of memory");
        return;
    }
    memcpy(copy, data, len);
    f->data = copy;
    f->len = len;
    if (edge_repl_trace_on()) f->rx_ns = edge_repl_trace_now_ns();
    if (ps->q_tail) ps->q_tail->next = f; else ps->q_head = f;
    ps->q_tail = f;
    ps->q_len++;
    peer_process(ps);
}

static void peer_on_close(void *ud, struct edge_http_conn *c)
{
    struct edge_peer_session *ps = ud;
    edge_http_conn_set_ws_handler(c, NULL, NULL, NULL);
    ps->closed = true;
    peer_session_unref(ps);
}

int edge_peer_session_accept(struct edge_repl_state *st, struct edge_http_conn *c,
                             const struct edge_peer_session_host *host)
{
    struct edge_peer_session *ps = edge_calloc(1, sizeof(*ps));
    if (ps == NULL) return EDGE_ENOMEM;
    if (edge_http_ws_accept(c, EDGE_REPL_WS_PROTOCOL) != EDGE_OK) {
        edge_free(ps);
        return EDGE_EPROTO;
    }
    ps->st = st;
    ps->host = *host;
    ps->conn = c;
    edge_http_conn_ref(c);
    ps->refs = 1;
    randombytes_buf(ps->nonce, sizeof(ps->nonce));
    edge_http_conn_set_ws_handler(c, peer_on_message, peer_on_close, ps);
    struct edge_buf b;
    edge_buf_init(&b, 256);
    if (edge_repl_encode_challenge(&b, ps->nonce) == EDGE_OK) peer_send(ps, &b);
    edge_buf_free(&b);
    return EDGE_OK;
}
