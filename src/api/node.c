/* SPDX-License-Identifier: MIT */
/* The node: threads, streams, routing of Hrana work, the HTTP endpoints.
 *
 * DESIGN
 * Threads. N loop threads accept on one port (SO_REUSEPORT). A unit of Hrana work (an
 * HTTP pipeline, or one WebSocket request) is classified with SQLite itself
 * (sqlite3_stmt_readonly on the loop's read connection) and then runs where it must:
 *  - only reads: inline on the loop that received it, on that loop's read connection;
 *  - autocommit writes: on the writer thread, grouped with other writes into one
 *    transaction (a SAVEPOINT each), answered only after the group commits;
 *  - transaction control (BEGIN...) or a stream inside a transaction: on a dedicated
 *    connection from a pool, run on libuv's thread pool so a busy write lock never
 *    blocks a loop. The stream keeps that connection until it is back in autocommit.
 * Results travel back to the loop that owns the client connection (uv_async_send or
 * uv_queue_work's after-callback); the loops share no mutable state except the stream
 * table and the connection pool, each behind its own mutex.
 *
 * Streams (HTTP). A stream is its stored SQL plus, inside a transaction, its
 * connection. The baton is base64url(id, seq, HMAC-SHA256(key, id|seq)[0..16]) with a
 * key drawn at start, so batons cannot be forged; seq advances on every use, so an old
 * baton is refused (as sqld's BatonReused). Idle streams expire after
 * stream_timeout_ms, rolling back; their ids are remembered for 5 minutes to answer
 * STREAM_EXPIRED. A pipeline that opens a stream and closes it in the same request
 * (what @libsql/client's execute() sends) never touches the table. */
#include "api/node.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include <http_parser.h>

#include "api/crdt_http.h"
#include "api/hrana.h"
#include "core/alloc.h"
#include "core/jwt.h"
#include "core/log.h"
#include "net/http.h"
#include "net/httpc.h"
#include "repl/peer.h"
#include "repl/proto.h"
#include "repl/repl.h"
#include "store/store.h"
#include "store/writer.h"

#define MAX_TXN_CONNS 64
#define EXPIRED_KEEP_MS (300u * 1000u)

enum pipe_mode { PIPE_HRANA = 0, PIPE_REPLICATE = 1 };

enum endpoint { EP_PIPELINE, EP_WS, EP_HEALTH, EP_METRICS, EP_STATUS, EP_CRDT, EP_REPLICATE, EP_OTHER, EP__COUNT };
static const char *const endpoint_names[] = {"pipeline", "websocket", "health", "metrics", "status",
                                             "crdt",     "replicate", "other"};

static const double hist_bounds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                     0.025,  0.05,    0.1,    0.25,  0.5,    1,     2.5, 5, 10};
#define HIST_N (sizeof(hist_bounds) / sizeof(hist_bounds[0]))

struct metrics {
    _Atomic uint64_t requests[EP__COUNT];
    _Atomic uint64_t errors[EP__COUNT];
    _Atomic uint64_t hist[EP__COUNT][HIST_N + 1];
    _Atomic uint64_t hist_sum_us[EP__COUNT];
    _Atomic uint64_t stmts, stmt_errors, rows;
    _Atomic int64_t ws_streams;
    _Atomic uint64_t routed[3];
    _Atomic uint64_t repl_applied, repl_rows, repl_conflicts, repl_duplicates, repl_deferred;
};

/* A dedicated connection for an interactive transaction, with its change capture
 * when the node replicates. */
struct txconn {
    struct edge_store_conn *conn;
    struct edge_capture *cap; /* NULL on a single node */
};

struct stream {
    uint64_t id;
    uint64_t seq;
    struct hrana_sqlmap sqls;
    struct txconn *txn; /* while inside a transaction */
    bool readonly_txn;
    bool busy;
    bool registered;
    bool closed;
    uint64_t last_used_ms;
};

struct expired {
    uint64_t id;
    uint64_t at_ms;
};

struct loop;
struct unit;

struct edge_node {
    struct edge_node_config cfg;
    char *data_dir;
    char *region;
    char *db_path;
    int port;
    struct edge_writer *writer;
    struct edge_jwt_keys *keys;
    struct loop *loops;
    int n_loops;
    uint64_t start_wall_ms;
    uint64_t start_mono_ms;
    uint8_t baton_key[32];
    struct metrics m;

    pthread_mutex_t streams_mu;
    struct stream **streams;
    size_t n_streams, cap_streams;
    uint64_t next_stream_id;
    struct expired *expired;
    size_t n_expired, cap_expired;

    pthread_mutex_t pool_mu;
    struct txconn *pool[MAX_TXN_CONNS];
    int n_pool;   /* idle connections in pool[] */
    bool cluster; /* replicating: capture changes into the log */
    /* Replication state */
    struct edge_capture *wcap; /* the writer connection's capture (writer thread) */
    pthread_mutex_t hlc_mu;
    struct edge_hlc hlc;
    struct edge_repl_local local;
    pthread_mutex_t vv_mu;
    struct edge_vclock vv;     /* this node's version vector (vv_mu) */
    int default_consistency;   /* 0 eventual, 1 strong, 2 async */
    _Atomic uint64_t data_version; /* bumped after every commit, before its answer goes out */
    const char *primary;       /* region with the lowest priority (borrowed from the config) */
    pthread_rwlock_t peers_lock; /* readers: anyone using peers[]; writer: start/stop */
    struct edge_peer *peers[32];
    const char *peer_region[32];
    const char *peer_url[32];
    int n_peers;
    int n_txn;    /* connections open in total */
};

struct loop {
    struct edge_node *node;
    int idx;
    uv_loop_t loop;
    uv_thread_t thread;
    uv_async_t inbox_async;
    uv_async_t stop_async;
    uv_async_t wake_async; /* replication progress: re-check waiting requests */
    _Atomic bool wake_ready;
    uv_timer_t sweep_timer; /* loop 0 only */
    uv_timer_t compact_timer; /* loop 0 only */
    uv_check_t snap_check;    /* ends the shared read snapshot after each loop iteration */
    bool snap_open;
    uint64_t snap_version;
    struct edge_http_server *http;
    struct edge_store_conn *rconn;
    int listen_fd;
    pthread_mutex_t inbox_mu;
    struct unit *inbox;
    bool stopping;
    bool final; /* set by edge_node_stop once the writer has drained */
    int ready; /* 1 ok, -1 failed */
    char errmsg[EDGE_ERRMSG_SIZE];
};

/* The Hrana session of one WebSocket connection. */
struct ws_stream {
    int32_t id;
    struct txconn *txn;
    bool readonly_txn;
};

struct ws_msg {
    json_t *msg;
    struct ws_msg *next;
};

enum session_kind { SESSION_HRANA = 1, SESSION_PEER = 2 };

struct ws_session {
    int kind; /* SESSION_HRANA */
    struct loop *loop;
    struct edge_http_conn *conn;
    int version;
    bool authed;
    enum hrana_access access;
    struct hrana_sqlmap sqls;
    struct ws_stream *streams;
    size_t n_streams;
    struct ws_msg *q_head, *q_tail;
    size_t q_len;
    bool busy;
    bool closed;
    int refs;
};

struct unit {
    struct edge_writer_job wjob;
    uv_work_t work;
    struct loop *loop;
    struct edge_http_conn *conn;
    json_t *body;
    json_t *requests; /* HTTP: the array; WS: the single request */
    size_t n;
    enum hrana_route route;
    struct hrana_ctx ctx;
    struct edge_buf out;
    int commit_status;
    uint64_t start_ns;
    /* HTTP */
    struct stream *stream;
    bool close_stream;
    int mode; /* PIPE_HRANA or PIPE_REPLICATE (answer in /v1/replicate form) */
    /* WS */
    struct ws_session *ws;
    struct ws_stream *wss;
    int64_t request_id;
    struct unit *next;
    /* Peer ENTRIES (writer job) */
    struct peer_session *peer;
    uint8_t *frame;
    size_t frame_len;
    struct edge_vclock ack_vv;
    int apply_rv;
    char apply_err[256];
    /* CRDT (writer job) */
    char *crdt_method, *crdt_path;
    int crdt_status;
};

static void unit_finish(struct unit *u);
static void ws_process(struct ws_session *s);

/* The node's time comes from core/clock (one place to inject a clock). */
static uint64_t mono_ms(void)
{
    return edge_clock_mono_ms(edge_clock_system());
}

static uint64_t wall_ms(void)
{
    const struct edge_clock *c = edge_clock_system();
    return c->wall_ms(c->ud);
}

void edge_node_config_defaults(struct edge_node_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->host = "127.0.0.1";
    cfg->port = 8080;
    cfg->data_dir = "./edgelite-data";
    cfg->region = "local";
    cfg->max_body_bytes = 16u << 20;
    cfg->stream_timeout_ms = 10000;
    cfg->query_budget_ms = 5000;
    cfg->idle_conn_timeout_ms = 60000;
    cfg->bookmark_timeout_ms = 5000;
    cfg->strong_timeout_ms = 5000;
    cfg->log_keep = 1000;
    cfg->compact_interval_ms = 5000;
}

int edge_node_port(const struct edge_node *n) { return n->port; }

/* ---------------------------------------------------------------------------------- */
/* Metrics                                                                            */
/* ---------------------------------------------------------------------------------- */

static void observe(struct edge_node *n, enum endpoint ep, uint64_t start_ns, bool error)
{
    double secs = (double)(uv_hrtime() - start_ns) / 1e9;
    size_t b = 0;
    while (b < HIST_N && secs > hist_bounds[b]) b++;
    atomic_fetch_add(&n->m.requests[ep], 1);
    if (error) atomic_fetch_add(&n->m.errors[ep], 1);
    atomic_fetch_add(&n->m.hist[ep][b], 1);
    atomic_fetch_add(&n->m.hist_sum_us[ep], (uint64_t)(secs * 1e6));
}

static void respond(struct edge_node *n, struct edge_http_conn *c, struct edge_http_req *req, enum endpoint ep,
                    int status, const char *ctype, const char *extra, const void *body, size_t len)
{
    observe(n, ep, req->start_ns, status >= 400);
    edge_http_respond(c, status, ctype, extra, body, len);
}

static void respond_error(struct edge_node *n, struct edge_http_conn *c, struct edge_http_req *req,
                          enum endpoint ep, int status, const char *code, const char *msg)
{
    observe(n, ep, req->start_ns, true);
    edge_http_respond_error(c, status, code, msg);
}

/* ---------------------------------------------------------------------------------- */
/* Transaction connection pool                                                        */
/* ---------------------------------------------------------------------------------- */

static void txconn_close(struct txconn *t)
{
    if (t == NULL) return;
    edge_capture_destroy(t->cap);
    edge_store_close(t->conn);
    edge_free(t);
}

static int pool_acquire(struct edge_node *n, struct txconn **out)
{
    pthread_mutex_lock(&n->pool_mu);
    if (n->n_pool > 0) {
        *out = n->pool[--n->n_pool];
        pthread_mutex_unlock(&n->pool_mu);
        return EDGE_OK;
    }
    if (n->n_txn >= MAX_TXN_CONNS) {
        pthread_mutex_unlock(&n->pool_mu);
        return EDGE_EBUSY;
    }
    n->n_txn++;
    pthread_mutex_unlock(&n->pool_mu);
    char err[EDGE_ERRMSG_SIZE];
    struct txconn *t = edge_calloc(1, sizeof(*t));
    int rv = t ? edge_store_open(n->db_path, EDGE_STORE_WRITE, n->cfg.synchronous_full, 5000, &t->conn, err, sizeof(err))
               : EDGE_ENOMEM;
    if (rv == EDGE_OK && n->cluster) {
        rv = edge_capture_create(edge_store_db(t->conn), &t->cap);
    }
    if (rv != EDGE_OK) {
        EDGE_LOG(EDGE_LOG_ERROR, EDGE_MOD_API, "pool: %s", rv == EDGE_ENOMEM ? "out of memory" : err);
        txconn_close(t);
        pthread_mutex_lock(&n->pool_mu);
        n->n_txn--;
        pthread_mutex_unlock(&n->pool_mu);
        return rv;
    }
    *out = t;
    return EDGE_OK;
}

/* Give a connection back; an open transaction is rolled back first. Any thread that
 * currently owns the connection. */
static void pool_release(struct edge_node *n, struct txconn *t, bool readonly_txn)
{
    if (t == NULL) {
        return;
    }
    sqlite3 *db = edge_store_db(t->conn);
    if (!sqlite3_get_autocommit(db)) {
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    }
    if (readonly_txn) {
        sqlite3_exec(db, "PRAGMA query_only=0", NULL, NULL, NULL);
    }
    if (t->cap != NULL) {
        edge_capture_reset(t->cap);
    }
    pthread_mutex_lock(&n->pool_mu);
    if (n->n_pool < MAX_TXN_CONNS) {
        n->pool[n->n_pool++] = t;
        t = NULL;
    } else {
        n->n_txn--;
    }
    pthread_mutex_unlock(&n->pool_mu);
    txconn_close(t);
}

/* ---------------------------------------------------------------------------------- */
/* HTTP streams and batons                                                            */
/* ---------------------------------------------------------------------------------- */

static void stream_free(struct edge_node *n, struct stream *s)
{
    if (s == NULL) return;
    pool_release(n, s->txn, s->readonly_txn);
    hrana_sqlmap_free(&s->sqls);
    edge_free(s);
}

static int baton_encode(struct edge_node *n, const struct stream *s, struct edge_buf *out)
{
    uint8_t raw[32];
    for (int i = 0; i < 8; i++) {
        raw[i] = (uint8_t)(s->id >> (8 * i));
        raw[8 + i] = (uint8_t)(s->seq >> (8 * i));
    }
    uint8_t mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256(mac, raw, 16, n->baton_key);
    memcpy(raw + 16, mac, 16);
    return edge_buf_base64url(out, raw, sizeof(raw));
}

static bool baton_decode(struct edge_node *n, const char *b, size_t len, uint64_t *id, uint64_t *seq)
{
    uint8_t *raw = NULL;
    size_t rlen = 0;
    if (len > 64 || edge_base64_decode(b, len, &raw, &rlen) != EDGE_OK) return false;
    bool ok = false;
    if (rlen == 32) {
        uint8_t mac[crypto_auth_hmacsha256_BYTES];
        crypto_auth_hmacsha256(mac, raw, 16, n->baton_key);
        if (sodium_memcmp(mac, raw + 16, 16) == 0) {
            *id = 0;
            *seq = 0;
            for (int i = 0; i < 8; i++) {
                *id |= (uint64_t)raw[i] << (8 * i);
                *seq |= (uint64_t)raw[8 + i] << (8 * i);
            }
            ok = true;
        }
    }
    edge_free(raw);
    return ok;
}

/* Find the stream for a baton and mark it busy. Returns NULL with an error code. */
static struct stream *stream_checkout(struct edge_node *n, const char *baton, size_t len, const char **code,
                                      const char **msg)
{
    uint64_t id, seq;
    if (!baton_decode(n, baton, len, &id, &seq)) {
        *code = "BATON_INVALID";
        *msg = "the baton is invalid";
        return NULL;
    }
    struct stream *found = NULL;
    pthread_mutex_lock(&n->streams_mu);
    for (size_t i = 0; i < n->n_streams; i++) {
        if (n->streams[i]->id == id) {
            found = n->streams[i];
            break;
        }
    }
    if (found == NULL) {
        *code = "BATON_INVALID";
        *msg = "the baton does not refer to a stream";
        for (size_t i = 0; i < n->n_expired; i++) {
            if (n->expired[i].id == id) {
                *code = "STREAM_EXPIRED";
                *msg = "The stream has expired due to inactivity";
            }
        }
    } else if (found->busy) {
        *code = "STREAM_BUSY";
        *msg = "the stream is already handling a request";
        found = NULL;
    } else if (found->seq != seq) {
        *code = "BATON_REUSED";
        *msg = "the baton has already been used";
        found = NULL;
    } else {
        found->busy = true;
    }
    pthread_mutex_unlock(&n->streams_mu);
    return found;
}

/* Return a stream after a request: register it (first use), bump its sequence, or
 * remove it when closed. Writes the next baton (or null) into out. */
static int stream_checkin(struct edge_node *n, struct stream *s, struct edge_buf *out)
{
    int rv = EDGE_OK;
    if (s->closed) {
        pthread_mutex_lock(&n->streams_mu);
        if (s->registered) {
            for (size_t i = 0; i < n->n_streams; i++) {
                if (n->streams[i] == s) {
                    n->streams[i] = n->streams[--n->n_streams];
                    break;
                }
            }
        }
        pthread_mutex_unlock(&n->streams_mu);
        stream_free(n, s);
        return edge_buf_puts(out, "null");
    }
    pthread_mutex_lock(&n->streams_mu);
    if (!s->registered) {
        if (n->n_streams == n->cap_streams) {
            size_t cap = n->cap_streams ? n->cap_streams * 2 : 64;
            struct stream **p = edge_realloc(n->streams, cap * sizeof(*p));
            if (p == NULL) {
                pthread_mutex_unlock(&n->streams_mu);
                s->closed = true;
                stream_free(n, s);
                return edge_buf_puts(out, "null");
            }
            n->streams = p;
            n->cap_streams = cap;
        }
        s->id = ++n->next_stream_id;
        n->streams[n->n_streams++] = s;
        s->registered = true;
    }
    s->seq++;
    s->busy = false;
    s->last_used_ms = mono_ms();
    pthread_mutex_unlock(&n->streams_mu);
    rv = edge_buf_putc(out, '"');
    if (rv == EDGE_OK) rv = baton_encode(n, s, out);
    if (rv == EDGE_OK) rv = edge_buf_putc(out, '"');
    return rv;
}

/* Give up a stream checked out for a request that will not run (closing it). */
static void stream_discard(struct edge_node *n, struct stream *s)
{
    struct edge_buf tmp;
    s->closed = true;
    edge_buf_init(&tmp, 256);
    stream_checkin(n, s, &tmp);
    edge_buf_free(&tmp);
}

/* Loop 0, periodically: expire idle streams (rolling back) and forget old expiries. */
static void sweep(uv_timer_t *t)
{
    struct loop *l = t->data;
    struct edge_node *n = l->node;
    uint64_t now = mono_ms();
    struct stream *victims[64];
    size_t nv = 0;
    pthread_mutex_lock(&n->streams_mu);
    for (size_t i = 0; i < n->n_streams && nv < 64;) {
        struct stream *s = n->streams[i];
        if (!s->busy && now - s->last_used_ms >= n->cfg.stream_timeout_ms) {
            n->streams[i] = n->streams[--n->n_streams];
            if (n->n_expired == n->cap_expired) {
                size_t cap = n->cap_expired ? n->cap_expired * 2 : 64;
                struct expired *p = edge_realloc(n->expired, cap * sizeof(*p));
                if (p != NULL) {
                    n->expired = p;
                    n->cap_expired = cap;
                }
            }
            if (n->n_expired < n->cap_expired) {
                n->expired[n->n_expired++] = (struct expired){s->id, now};
            }
            victims[nv++] = s;
        } else {
            i++;
        }
    }
    for (size_t i = 0; i < n->n_expired;) {
        if (now - n->expired[i].at_ms > EXPIRED_KEEP_MS) {
            n->expired[i] = n->expired[--n->n_expired];
        } else {
            i++;
        }
    }
    pthread_mutex_unlock(&n->streams_mu);
    for (size_t i = 0; i < nv; i++) {
        EDGE_LOG(EDGE_LOG_DEBUG, EDGE_MOD_API, "stream %llu expired%s", (unsigned long long)victims[i]->id,
                 victims[i]->txn ? ", rolling back" : "");
        stream_free(n, victims[i]);
    }
}

/* ---------------------------------------------------------------------------------- */
/* Units of work                                                                      */
/* ---------------------------------------------------------------------------------- */

static void unit_free(struct unit *u)
{
    if (u->conn != NULL) edge_http_conn_unref(u->conn);
    json_decref(u->body);
    edge_buf_free(&u->out);
    edge_free(u->crdt_method);
    edge_free(u->crdt_path);
    edge_free(u);
}

/* Run every request of the unit on ctx.conn, writing the wrapped results. */
static void unit_run(struct unit *u)
{
    int rv = EDGE_OK;
    if (u->ws == NULL) {
        for (size_t i = 0; i < u->n && rv == EDGE_OK; i++) {
            json_t *r = json_array_get(u->requests, i);
            if (i > 0) rv = edge_buf_putc(&u->out, ',');
            if (rv != EDGE_OK) break;
            if (strcmp(json_string_value(json_object_get(r, "type")), "close") == 0) {
                u->close_stream = true;
            }
            rv = hrana_execute_request(&u->ctx, r, HRANA_WRAP_HTTP, 0, &u->out);
        }
    } else {
        rv = hrana_execute_request(&u->ctx, u->requests, HRANA_WRAP_WS, u->request_id, &u->out);
    }
    if (rv != EDGE_OK) {
        u->commit_status = rv;
    }
}

static int writer_run(struct edge_writer_job *job, struct edge_store_conn *conn)
{
    struct unit *u = (struct unit *)job;
    if (u->crdt_method != NULL) {
        edge_buf_reset(&u->out);
        edge_crdt_http_handle(edge_store_db(conn), u->loop->node->region, edge_clock_system(), u->crdt_method,
                              u->crdt_path, u->body ? json_string_value(u->body) : "",
                              u->body ? json_string_length(u->body) : 0, &u->crdt_status, &u->out);
        return EDGE_OK;
    }
    /* A job may run again after its group was rolled back: start its output afresh. */
    edge_buf_reset(&u->out);
    u->ctx.stmts = u->ctx.errors = u->ctx.rows = 0;
    u->close_stream = false;
    u->commit_status = EDGE_OK;
    u->ctx.conn = conn;
    unit_run(u);
    return EDGE_OK;
}

/* Writer thread: hand the finished unit to its loop. */
static void writer_complete(struct edge_writer_job *job, int status)
{
    struct unit *u = (struct unit *)job;
    atomic_fetch_add(&u->loop->node->data_version, 1);
    if (status != EDGE_OK) {
        u->commit_status = status;
    }
    struct loop *l = u->loop;
    pthread_mutex_lock(&l->inbox_mu);
    u->next = l->inbox;
    l->inbox = u;
    pthread_mutex_unlock(&l->inbox_mu);
    uv_async_send(&l->inbox_async);
}

static void on_inbox(uv_async_t *a)
{
    struct loop *l = a->data;
    pthread_mutex_lock(&l->inbox_mu);
    struct unit *list = l->inbox;
    l->inbox = NULL;
    bool final = l->final;
    pthread_mutex_unlock(&l->inbox_mu);
    if (final && !uv_is_closing((uv_handle_t *)&l->inbox_async)) {
        /* The writer and the peer links have stopped: nothing can arrive any more. */
        uv_close((uv_handle_t *)&l->inbox_async, NULL);
        l->wake_ready = false;
        uv_close((uv_handle_t *)&l->wake_async, NULL);
    }
    /* The list is newest first; answer in arrival order. */
    struct unit *rev = NULL;
    while (list != NULL) {
        struct unit *next = list->next;
        list->next = rev;
        rev = list;
        list = next;
    }
    while (rev != NULL) {
        struct unit *next = rev->next;
        unit_finish(rev);
        rev = next;
    }
}

static void txn_work(uv_work_t *w)
{
    struct unit *u = w->data;
    unit_run(u);
}

static void txn_after(uv_work_t *w, int status)
{
    (void)status;
    struct unit *u = w->data;
    atomic_fetch_add(&u->loop->node->data_version, 1);
    unit_finish(u);
}

/* Reads share one read transaction per loop iteration: the file-lock and fstat system
 * calls of starting a SQLite read transaction are paid once for all the requests an
 * iteration serves, not per statement (PERF-NOTES: ~5x for grouped point reads). The
 * snapshot is renewed whenever anything committed since it began (data_version is
 * bumped before a write is answered), so a read never misses an acknowledged write,
 * and it ends after the iteration so checkpoints are not held back. Loop thread. */
static void snap_end(uv_check_t *h)
{
    struct loop *l = h->data;
    if (l->snap_open) {
        sqlite3 *db = edge_store_db(l->rconn);
        if (!sqlite3_get_autocommit(db)) sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
        l->snap_open = false;
    }
    uv_check_stop(h);
}

static void read_snapshot(struct loop *l)
{
    uint64_t v = atomic_load(&l->node->data_version);
    sqlite3 *db = edge_store_db(l->rconn);
    if (l->snap_open && l->snap_version == v && !sqlite3_get_autocommit(db)) return;
    if (!sqlite3_get_autocommit(db)) sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    l->snap_version = v;
    sqlite3_stmt *st = NULL;
    size_t tail;
    /* BEGIN is deferred: the snapshot starts at the first read. */
    if (edge_store_prepare(l->rconn, "BEGIN", 5, &st, &tail) == SQLITE_OK && st != NULL) {
        l->snap_open = sqlite3_step(st) == SQLITE_DONE;
        edge_store_release(l->rconn, st);
    }
    if (l->snap_open && !uv_is_active((uv_handle_t *)&l->snap_check)) {
        uv_check_start(&l->snap_check, snap_end);
    }
}

/* Send the unit off to where it must run (loop thread). */
static void unit_dispatch(struct unit *u)
{
    struct edge_node *n = u->loop->node;
    atomic_fetch_add(&n->m.routed[u->route], 1);
    if (u->route == HRANA_ROUTE_READ) {
        u->ctx.conn = u->loop->rconn;
        u->ctx.shared_snapshot = true;
        read_snapshot(u->loop);
        unit_run(u);
        unit_finish(u);
        return;
    }
    if (u->route == HRANA_ROUTE_WRITE) {
        u->ctx.capture = n->cluster ? n->wcap : NULL;
        u->wjob.run = writer_run;
        u->wjob.complete = writer_complete;
        if (edge_writer_submit(n->writer, &u->wjob) != EDGE_OK) {
            u->commit_status = EDGE_ECLOSED;
            unit_finish(u);
        }
        return;
    }
    /* Transaction route: the stream's own connection, or a new one from the pool. */
    struct txconn **slot = u->ws ? &u->wss->txn : &u->stream->txn;
    if (*slot == NULL) {
        int rv = pool_acquire(n, slot);
        if (rv != EDGE_OK) {
            u->commit_status = rv == EDGE_EBUSY ? EDGE_EBUSY : EDGE_ESTORE;
            unit_finish(u);
            return;
        }
    }
    u->ctx.conn = (*slot)->conn;
    u->ctx.capture = (*slot)->cap;
    u->ctx.own_txn = true;
    u->ctx.readonly_txn = u->ws ? u->wss->readonly_txn : u->stream->readonly_txn;
    u->work.data = u;
    if (uv_queue_work(&u->loop->loop, &u->work, txn_work, txn_after) != 0) {
        u->commit_status = EDGE_EIO;
        unit_finish(u);
    }
}

static void count_stmts(struct edge_node *n, struct unit *u)
{
    atomic_fetch_add(&n->m.stmts, u->ctx.stmts);
    atomic_fetch_add(&n->m.stmt_errors, u->ctx.errors);
    atomic_fetch_add(&n->m.rows, u->ctx.rows);
}

/* After a transaction-route unit: keep the connection while a transaction is open. */
static void txn_settle(struct edge_node *n, struct txconn **slot, bool *readonly_txn, bool ro_now, bool closing)
{
    *readonly_txn = ro_now;
    if (*slot != NULL && (closing || sqlite3_get_autocommit(edge_store_db((*slot)->conn)))) {
        pool_release(n, *slot, *readonly_txn);
        *slot = NULL;
        *readonly_txn = false;
    }
}

static const char *status_error_code(int st)
{
    switch (st) {
    case EDGE_EBUSY: return "TRANSACTION_BUSY";
    case EDGE_ECONFLICT: return "TRANSACTION_ROLLED_BACK";
    case EDGE_ETOOBIG: return "RESPONSE_TOO_LARGE";
    case EDGE_ECLOSED: return "SHUTTING_DOWN";
    default: return "SQLITE_IOERR";
    }
}

static void answer_pipeline(struct edge_node *n, struct edge_http_conn *c, int mode, const char *origin,
                            uint64_t seq, const char *body, size_t len, uint64_t start_ns);
static void majority_wait(struct loop *l, struct edge_http_conn *c, uint64_t seq, struct edge_buf *resp, int mode,
                          uint64_t start_ns);

static void unit_finish_http(struct unit *u)
{
    struct edge_node *n = u->loop->node;
    struct stream *s = u->stream;
    if (u->route == HRANA_ROUTE_TXN) {
        txn_settle(n, &s->txn, &s->readonly_txn, u->ctx.readonly_txn, u->close_stream);
    }
    if (u->close_stream) {
        s->closed = true;
    }
    struct edge_buf resp;
    edge_buf_init(&resp, (size_t)1 << 31);
    int rv = EDGE_OK;
    if (u->commit_status != EDGE_OK) {
        /* Nothing of this unit was kept (failed group commit) or it could not run. */
        s->closed = s->closed || u->route != HRANA_ROUTE_TXN;
        stream_checkin(n, s, &resp);
        edge_buf_reset(&resp);
        char msg[128];
        if (u->commit_status == EDGE_ECONFLICT) {
            snprintf(msg, sizeof(msg), "a statement rolled back the whole transaction (OR ROLLBACK or "
                                       "RAISE(ROLLBACK)); nothing of this request was applied");
        } else {
            snprintf(msg, sizeof(msg), "the request could not be completed: %s", edge_strerror(u->commit_status));
        }
        if (!edge_http_conn_is_closed(u->conn)) {
            struct edge_http_req *req = NULL;
            (void)req;
            observe(n, EP_PIPELINE, u->start_ns, true);
            edge_http_respond_error(u->conn,
                                    u->commit_status == EDGE_EBUSY       ? 503
                                    : u->commit_status == EDGE_ECONFLICT ? 409
                                                                         : 500,
                                    status_error_code(u->commit_status), msg);
        }
        edge_buf_free(&resp);
        unit_free(u);
        return;
    }
    rv = edge_buf_puts(&resp, "{\"baton\":");
    if (rv == EDGE_OK) rv = stream_checkin(n, s, &resp);
    if (rv == EDGE_OK) rv = edge_buf_puts(&resp, ",\"base_url\":null,\"results\":[");
    if (rv == EDGE_OK) rv = edge_buf_append(&resp, u->out.data ? u->out.data : "", u->out.len);
    if (rv == EDGE_OK) rv = edge_buf_puts(&resp, "]}");
    count_stmts(n, u);
    if (!edge_http_conn_is_closed(u->conn)) {
        uint64_t seq = u->route == HRANA_ROUTE_WRITE ? u->wjob.seq : u->ctx.seq;
        if (rv != EDGE_OK) {
            observe(n, EP_PIPELINE, u->start_ns, true);
            edge_http_respond_error(u->conn, 500, "RESPONSE_TOO_LARGE", "the response is too large");
        } else if (n->cluster && seq != 0 && u->ctx.consistency == 1) {
            /* Strong: answer once a majority of regions holds the entry. */
            majority_wait(u->loop, u->conn, seq, &resp, u->mode, u->start_ns);
        } else {
            answer_pipeline(n, u->conn, u->mode, seq ? n->region : NULL, seq, resp.data, resp.len, u->start_ns);
        }
    }
    edge_buf_free(&resp);
    unit_free(u);
}

static void ws_session_unref(struct ws_session *s);

static bool ws_majority_wait(struct unit *u, struct ws_session *s, uint64_t seq);

static void unit_finish_ws(struct unit *u)
{
    struct ws_session *s = u->ws;
    struct edge_node *n = u->loop->node;
    if (u->route == HRANA_ROUTE_TXN && u->wss != NULL) {
        txn_settle(n, &u->wss->txn, &u->wss->readonly_txn, u->ctx.readonly_txn, s->closed);
    }
    count_stmts(n, u);
    if (!s->closed) {
        if (u->commit_status != EDGE_OK) {
            edge_buf_reset(&u->out);
            char msg[128];
            snprintf(msg, sizeof(msg), "the request could not be completed: %s", edge_strerror(u->commit_status));
            edge_buf_printf(&u->out, "{\"type\":\"response_error\",\"request_id\":%lld,\"error\":",
                            (long long)u->request_id);
            hrana_write_error(&u->out, msg, status_error_code(u->commit_status));
            edge_buf_putc(&u->out, '}');
        }
        uint64_t seq = u->route == HRANA_ROUTE_WRITE ? u->wjob.seq : u->ctx.seq;
        if (n->cluster && u->commit_status == EDGE_OK && u->ctx.consistency == 1 && seq != 0) {
            /* Strong on the primary: answer once a majority holds the entry. The waiter
             * keeps the session busy (answers stay in order) and its reference. */
            if (ws_majority_wait(u, s, seq)) {
                unit_free(u);
                return;
            }
        }
        edge_http_ws_send(s->conn, 1, u->out.data, u->out.len);
    }
    observe(n, EP_WS, u->start_ns, u->commit_status != EDGE_OK);
    s->busy = false;
    unit_free(u);
    ws_process(s);
    ws_session_unref(s);
}

static void peer_apply_finish(struct unit *u);

static void unit_finish(struct unit *u)
{
    if (u->peer != NULL) {
        peer_apply_finish(u);
        return;
    }
    if (u->crdt_method != NULL) {
        struct edge_node *n = u->loop->node;
        if (!edge_http_conn_is_closed(u->conn)) {
            observe(n, EP_CRDT, u->start_ns, u->crdt_status >= 400 || u->commit_status != EDGE_OK);
            if (u->commit_status != EDGE_OK) {
                edge_http_respond_error(u->conn, 500, "INTERNAL", edge_strerror(u->commit_status));
            } else {
                edge_http_respond(u->conn, u->crdt_status, "application/json", NULL, u->out.data, u->out.len);
            }
        }
        unit_free(u);
        return;
    }
    if (u->ws != NULL) {
        unit_finish_ws(u);
    } else {
        unit_finish_http(u);
    }
}

static struct unit *unit_new(struct loop *l, struct edge_http_conn *c, json_t *body)
{
    struct unit *u = edge_calloc(1, sizeof(*u));
    if (u == NULL) return NULL;
    u->loop = l;
    u->conn = c;
    edge_http_conn_ref(c);
    u->body = body;
    u->start_ns = uv_hrtime();
    edge_buf_init(&u->out, (size_t)1 << 30);
    u->ctx.budget_ms = l->node->cfg.query_budget_ms;
    return u;
}

/* ---------------------------------------------------------------------------------- */
/* Replication: capture hooks and the version vector                                  */
/* ---------------------------------------------------------------------------------- */

static void wake_loops(struct edge_node *n);

/* A local transaction committed entry `seq` of this region. Any thread. */
static void peers_notify(struct edge_node *n);

static void local_committed(struct edge_node *n, uint64_t seq, int consistency)
{
    if (seq == 0) return;
    /* Before the version vector says the write is here, make every loop's read
     * snapshot stale, so a bookmarked read admitted by the new VV sees the write. */
    atomic_fetch_add(&n->data_version, 1);
    pthread_mutex_lock(&n->vv_mu);
    if (edge_vclock_get(&n->vv, n->region) < seq) {
        edge_vclock_set(&n->vv, n->region, seq);
    }
    pthread_mutex_unlock(&n->vv_mu);
    if (consistency != 2) {
        peers_notify(n); /* eventual and strong entries are pushed at once; async waits for the tick */
    }
    wake_loops(n);
}

static size_t wh_mark(void *ud)
{
    struct edge_node *n = ud;
    return edge_capture_mark(n->wcap);
}

static void wh_rewind(void *ud, size_t mark)
{
    struct edge_node *n = ud;
    edge_capture_rewind(n->wcap, mark);
}

static int wh_before_commit(void *ud, struct edge_store_conn *conn, int consistency, uint64_t *out_seq)
{
    (void)conn;
    struct edge_node *n = ud;
    char err[256] = "";
    int rv = edge_repl_commit_entry(n->wcap, &n->local, consistency, out_seq, err, sizeof(err));
    if (rv != EDGE_OK) {
        EDGE_LOG(EDGE_LOG_ERROR, EDGE_MOD_REPL, "writer: cannot log the group: %s", err);
    }
    return rv;
}

static void wh_after_commit(void *ud, uint64_t seq, int consistency)
{
    local_committed(ud, seq, consistency);
}

static void wh_after_rollback(void *ud)
{
    struct edge_node *n = ud;
    edge_capture_reset(n->wcap);
}

static void wh_before_close(void *ud, struct edge_store_conn *conn)
{
    (void)conn;
    struct edge_node *n = ud;
    edge_capture_destroy(n->wcap);
    n->wcap = NULL;
}

static struct txconn *unit_txconn(struct unit *u)
{
    return u->ws ? u->wss->txn : u->stream->txn;
}

/* Pool thread: the unit's interactive transaction is about to COMMIT. */
static int tx_commit_entry(void *ud, struct hrana_ctx *ctx, char *err, size_t errlen)
{
    struct unit *u = ud;
    struct edge_node *n = u->loop->node;
    return edge_repl_commit_entry(unit_txconn(u)->cap, &n->local, ctx->consistency, &ctx->seq, err, errlen);
}

static void tx_committed(void *ud, struct hrana_ctx *ctx)
{
    struct unit *u = ud;
    local_committed(u->loop->node, ctx->seq, ctx->consistency);
}

static int consistency_rank(int c)
{
    return c == 1 ? 2 : c == 0 ? 1 : 0;
}

/* The level a unit writes at: the request header, else the strongest level of the
 * tables it writes, else the node's default. */
static int unit_consistency(struct edge_node *n, struct edge_http_req *req, const struct hrana_tables *t)
{
    const char *h = req ? edge_http_header(req, "x-edge-consistency") : NULL;
    enum edge_consistency c;
    if (h != NULL && edge_consistency_parse(h, &c) == EDGE_OK) {
        return (int)c;
    }
    int best = n->default_consistency;
    if (n->cfg.conf != NULL && t != NULL) {
        for (int i = 0; i < t->n; i++) {
            int lc = (int)edge_conf_table_consistency(n->cfg.conf, t->names[i]);
            if (consistency_rank(lc) > consistency_rank(best)) best = lc;
        }
    }
    return best;
}

/* Hook a unit up to replication before it is dispatched. */
static void unit_repl_setup(struct unit *u, int consistency)
{
    struct edge_node *n = u->loop->node;
    if (!n->cluster) return;
    u->ctx.consistency = consistency;
    u->wjob.consistency = consistency;
    u->ctx.hook_ud = u;
    u->ctx.commit_entry = tx_commit_entry;
    u->ctx.committed = tx_committed;
}

static void on_wake(uv_async_t *a)
{
    (void)a;
}

static void wake_loops(struct edge_node *n)
{
    for (int i = 0; i < n->n_loops; i++) {
        if (n->loops[i].wake_ready) uv_async_send(&n->loops[i].wake_async);
    }
}

/* ---------------------------------------------------------------------------------- */
/* Peer links, server side: /v1/peer                                                  */
/* ---------------------------------------------------------------------------------- */

struct peer_frame {
    uint8_t *data;
    size_t len;
    struct peer_frame *next;
};

/* One inbound link from another region (its outbound peer thread). Loop thread. */
struct peer_session {
    int kind; /* SESSION_PEER */
    struct loop *loop;
    struct edge_http_conn *conn;
    uint8_t nonce[EDGE_REPL_NONCE_LEN];
    bool authed;
    char region[EDGE_VCLOCK_REGION_MAX + 1];
    struct peer_frame *q_head, *q_tail;
    size_t q_len;
    bool busy;   /* an apply job is on the writer */
    bool closed;
    int refs;
};

static void peer_process(struct peer_session *ps);

static void peer_session_unref(struct peer_session *ps)
{
    if (--ps->refs > 0) return;
    while (ps->q_head != NULL) {
        struct peer_frame *f = ps->q_head;
        ps->q_head = f->next;
        edge_free(f->data);
        edge_free(f);
    }
    edge_http_conn_unref(ps->conn);
    edge_free(ps);
}

static void peer_send(struct peer_session *ps, struct edge_buf *b)
{
    if (!ps->closed && b->len > 0) {
        edge_http_ws_send(ps->conn, 2, b->data, b->len);
    }
}

/* Refuse the link: an ERROR message with the reason, then close. Logged once. */
static void peer_refuse(struct peer_session *ps, const char *code, const char *msg)
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

static void vv_snapshot(struct edge_node *n, struct edge_vclock *out)
{
    pthread_mutex_lock(&n->vv_mu);
    edge_vclock_copy(out, &n->vv);
    pthread_mutex_unlock(&n->vv_mu);
}

/* Writer thread, alone: apply a batch of entries in order inside one transaction. */
static int peer_apply_run(struct edge_writer_job *job, struct edge_store_conn *conn)
{
    struct unit *u = (struct unit *)job;
    struct edge_node *n = u->loop->node;
    sqlite3 *db = edge_store_db(conn);
    struct edge_repl_entry *entries = NULL;
    size_t count = 0;
    u->apply_rv = edge_repl_decode_entries(u->frame, u->frame_len, &entries, &count);
    if (u->apply_rv != EDGE_OK) {
        snprintf(u->apply_err, sizeof(u->apply_err), "malformed ENTRIES message");
        return EDGE_OK;
    }
    struct edge_repl_apply_stats st = {0};
    edge_capture_suspend(n->wcap, true);
    int rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    int rv = rc == SQLITE_OK ? EDGE_OK : EDGE_EBUSY;
    for (size_t i = 0; i < count && rv == EDGE_OK; i++) {
        struct edge_repl_entry *e = &entries[i];
        sqlite3_exec(db, "SAVEPOINT edge_apply", NULL, NULL, NULL);
        int arv = edge_repl_apply_entry(db, e->origin, e->seq, e->hlc, e->consistency, &e->deps, e->payload,
                                        e->payload_len, &st, u->apply_err, sizeof(u->apply_err));
        if (arv == EDGE_OK) {
            sqlite3_exec(db, "RELEASE edge_apply", NULL, NULL, NULL);
            continue;
        }
        sqlite3_exec(db, "ROLLBACK TO edge_apply", NULL, NULL, NULL);
        sqlite3_exec(db, "RELEASE edge_apply", NULL, NULL, NULL);
        if (arv == EDGE_EAGAIN) {
            continue; /* not applicable yet; the sender resends from our ACK */
        }
        rv = arv;
    }
    if (rc == SQLITE_OK) {
        if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            rv = rv == EDGE_OK ? EDGE_ESTORE : rv;
        }
    }
    edge_capture_suspend(n->wcap, false);
    edge_repl_entries_free(entries, count);
    if (st.max_hlc != 0) {
        /* Writes made here from now on follow what was applied (HLC receive rule), so a
         * write that saw a remote version always stamps later than it. */
        pthread_mutex_lock(&n->hlc_mu);
        edge_hlc_update(&n->hlc, st.max_hlc);
        pthread_mutex_unlock(&n->hlc_mu);
    }
    if (rv == EDGE_OK || rv == EDGE_ECORRUPT || rv == EDGE_ESTORE) {
        /* What we hold now, whatever happened: the sender resends the rest. */
        struct edge_vclock vv;
        edge_vclock_init(&vv);
        if (edge_repl_vv_load(db, &vv) == EDGE_OK) {
            atomic_fetch_add(&n->data_version, 1); /* see local_committed */
            pthread_mutex_lock(&n->vv_mu);
            edge_vclock_merge(&n->vv, &vv);
            pthread_mutex_unlock(&n->vv_mu);
            edge_vclock_copy(&u->ack_vv, &vv);
        }
        edge_vclock_close(&vv);
    }
    atomic_fetch_add(&n->m.repl_applied, st.applied);
    atomic_fetch_add(&n->m.repl_rows, st.rows);
    atomic_fetch_add(&n->m.repl_conflicts, st.conflicts);
    atomic_fetch_add(&n->m.repl_duplicates, st.duplicates);
    atomic_fetch_add(&n->m.repl_deferred, st.deferred);
    u->apply_rv = rv;
    return EDGE_OK;
}

static void peers_notify(struct edge_node *n)
{
    pthread_rwlock_rdlock(&n->peers_lock);
    for (int i = 0; i < n->n_peers; i++) {
        if (n->peers[i] != NULL) edge_peer_notify(n->peers[i]);
    }
    pthread_rwlock_unlock(&n->peers_lock);
}

/* Link thread: a peer acknowledged entries; strong writes may be confirmed now. */
static void peer_on_ack(void *ud, const char *peer_region)
{
    (void)peer_region;
    wake_loops(ud);
}

static int peers_start(struct edge_node *n, char *errmsg, size_t errmsg_len)
{
    const struct edge_conf *conf = n->cfg.conf;
    for (size_t i = 0; i < conf->n_regions && n->n_peers < 32; i++) {
        const struct edge_conf_region *r = &conf->regions[i];
        if (strcmp(r->id, n->region) == 0) continue;
        if (r->url == NULL) {
            snprintf(errmsg, errmsg_len, "region %s has no url in the configuration", r->id);
            return EDGE_ECONFIG;
        }
        double rtt = n->cfg.wan ? edge_regions_rtt_ms(n->cfg.wan, n->region, r->id) : 0;
        struct edge_peer_config pc = {
            .db_path = n->db_path,
            .local_region = n->region,
            .cluster = conf->cluster_name,
            .secret = conf->cluster_secret,
            .peer_region = r->id,
            .peer_url = r->url,
            .one_way_delay_ms = rtt > 0 ? (int)(rtt / 2) : 0,
            .sync_interval_ms = conf->sync_interval_ms,
            .on_ack = peer_on_ack,
            .ud = n,
        };
        struct edge_peer *peer = NULL;
        int rv = edge_peer_start(&pc, &peer);
        if (rv != EDGE_OK) {
            snprintf(errmsg, errmsg_len, "cannot start the link to %s: %s", r->id, edge_strerror(rv));
            return rv;
        }
        pthread_rwlock_wrlock(&n->peers_lock);
        n->peers[n->n_peers] = peer;
        n->peer_region[n->n_peers] = r->id;
        n->peer_url[n->n_peers] = r->url;
        n->n_peers++;
        pthread_rwlock_unlock(&n->peers_lock);
    }
    return EDGE_OK;
}

static void peers_stop(struct edge_node *n)
{
    struct edge_peer *gone[32];
    pthread_rwlock_wrlock(&n->peers_lock);
    int count = n->n_peers;
    for (int i = 0; i < count; i++) {
        gone[i] = n->peers[i];
        n->peers[i] = NULL;
    }
    n->n_peers = 0;
    pthread_rwlock_unlock(&n->peers_lock);
    for (int i = 0; i < count; i++) edge_peer_stop(gone[i]);
}

static void peer_apply_finish(struct unit *u)
{
    struct peer_session *ps = u->peer;
    struct edge_node *n = u->loop->node;
    if (u->apply_rv != EDGE_OK && u->apply_rv != EDGE_EBUSY) {
        EDGE_LOG(EDGE_LOG_WARN, EDGE_MOD_REPL, "peer %s: apply failed: %s", ps->region,
                 u->apply_err[0] ? u->apply_err : edge_strerror(u->apply_rv));
    }
    if (!ps->closed) {
        struct edge_buf b;
        edge_buf_init(&b, 1 << 20);
        if (u->apply_rv == EDGE_ECORRUPT && u->ack_vv.n_entries == 0) {
            peer_refuse(ps, "BAD_ENTRIES", u->apply_err[0] ? u->apply_err : "malformed entries");
        } else {
            if (u->ack_vv.n_entries == 0) vv_snapshot(n, &u->ack_vv);
            if (edge_repl_encode_ack(&b, &u->ack_vv) == EDGE_OK) peer_send(ps, &b);
        }
        edge_buf_free(&b);
    }
    /* New entries (possibly from a third region) may need relaying to other peers, and
     * reads waiting for a bookmark may now be served. */
    peers_notify(n);
    wake_loops(n);
    ps->busy = false;
    edge_vclock_close(&u->ack_vv);
    edge_free(u->frame);
    u->frame = NULL;
    unit_free(u);
    peer_process(ps);
    peer_session_unref(ps);
}

static void peer_handle(struct peer_session *ps, struct peer_frame *f)
{
    struct loop *l = ps->loop;
    struct edge_node *n = l->node;
    int type = 0;
    if (edge_repl_msg_type(f->data, f->len, &type) != EDGE_OK) {
        peer_refuse(ps, "PROTOCOL", "empty or unknown message");
        return;
    }
    struct edge_buf b;
    edge_buf_init(&b, 1 << 20);
    if (type == EDGE_REPL_MSG_HELLO) {
        struct edge_repl_hello h;
        memset(&h, 0, sizeof(h));
        edge_vclock_init(&h.vv);
        if (ps->authed) {
            peer_refuse(ps, "HELLO_REPLAYED", "a second HELLO on an established link");
        } else if (edge_repl_decode_hello(f->data, f->len, &h) != EDGE_OK) {
            peer_refuse(ps, "PROTOCOL", "malformed HELLO");
        } else {
            snprintf(ps->region, sizeof(ps->region), "%s", h.region);
            const char *secret = n->cfg.conf ? n->cfg.conf->cluster_secret : NULL;
            const char *cluster = n->cfg.conf ? n->cfg.conf->cluster_name : "";
            int vrv = secret ? edge_repl_hello_verify(&h, cluster, secret, ps->nonce) : EDGE_EAUTH;
            if (vrv == EDGE_EPROTO) {
                peer_refuse(ps, "VERSION", "unsupported peer protocol version");
            } else if (vrv != EDGE_OK) {
                peer_refuse(ps, "AUTH", "cluster name or secret does not match");
            } else if (strcmp(h.region, n->region) == 0 || edge_conf_region_find(n->cfg.conf, h.region) == NULL) {
                peer_refuse(ps, "UNKNOWN_REGION", "region is not part of this cluster");
            } else {
                ps->authed = true;
                struct edge_vclock vv;
                edge_vclock_init(&vv);
                vv_snapshot(n, &vv);
                if (edge_repl_encode_hello_ok(&b, n->region, &vv) == EDGE_OK) peer_send(ps, &b);
                edge_vclock_close(&vv);
                EDGE_LOG(EDGE_LOG_INFO, EDGE_MOD_REPL, "peer link from %s established", ps->region);
            }
        }
        edge_repl_hello_close(&h);
    } else if (!ps->authed) {
        peer_refuse(ps, "NO_HELLO", "the first message must be HELLO");
    } else if (type == EDGE_REPL_MSG_PING) {
        uint64_t t;
        if (edge_repl_decode_ping(f->data, f->len, &t) != EDGE_OK) {
            peer_refuse(ps, "PROTOCOL", "malformed PING");
        } else if (edge_repl_encode_pong(&b, t) == EDGE_OK) {
            peer_send(ps, &b);
        }
    } else if (type == EDGE_REPL_MSG_ENTRIES) {
        struct unit *u = edge_calloc(1, sizeof(*u));
        if (u == NULL) {
            peer_refuse(ps, "INTERNAL", "out of memory");
        } else {
            u->loop = l;
            u->start_ns = uv_hrtime();
            edge_buf_init(&u->out, 16);
            edge_vclock_init(&u->ack_vv);
            u->peer = ps;
            u->frame = f->data; /* the job owns the bytes now */
            u->frame_len = f->len;
            f->data = NULL;
            /* Alone, never inside a group: local writes get their row stamps only when
             * the group's log entry is built at commit, so an entry applied between a local
             * write and that point would merge against stale stamps and the regions would
             * diverge (seen under load by bench/repl.sh). */
            u->wjob.exclusive = true;
            u->wjob.run = peer_apply_run;
            u->wjob.complete = writer_complete;
            ps->busy = true;
            ps->refs++;
            if (edge_writer_submit(n->writer, &u->wjob) != EDGE_OK) {
                u->apply_rv = EDGE_ECLOSED;
                peer_apply_finish(u);
            }
        }
    } else if (type == EDGE_REPL_MSG_PONG) {
        /* ignore */
    } else {
        peer_refuse(ps, "PROTOCOL", "unexpected message type");
    }
    edge_buf_free(&b);
}

static void peer_process(struct peer_session *ps)
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

static void peer_on_message(struct peer_session *ps, int opcode, const uint8_t *data, size_t len)
{
    if (ps->closed) return;
    if (opcode != 2) {
        peer_refuse(ps, "PROTOCOL", "peer messages are binary frames");
        return;
    }
    if (ps->q_len >= 64) {
        peer_refuse(ps, "OVERLOAD", "too many messages in flight");
        return;
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
    if (ps->q_tail) ps->q_tail->next = f; else ps->q_head = f;
    ps->q_tail = f;
    ps->q_len++;
    peer_process(ps);
}

static void handle_peer_upgrade(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req)
{
    struct edge_node *n = l->node;
    if (!n->cluster) {
        respond_error(n, c, req, EP_OTHER, 404, "NOT_A_CLUSTER", "this node does not replicate");
        return;
    }
    struct peer_session *ps = edge_calloc(1, sizeof(*ps));
    if (ps == NULL) {
        respond_error(n, c, req, EP_OTHER, 503, "INTERNAL", "out of memory");
        return;
    }
    if (edge_http_ws_accept(c, EDGE_REPL_WS_PROTOCOL) != EDGE_OK) {
        edge_free(ps);
        return;
    }
    ps->kind = SESSION_PEER;
    ps->loop = l;
    ps->conn = c;
    edge_http_conn_ref(c);
    ps->refs = 1;
    randombytes_buf(ps->nonce, sizeof(ps->nonce));
    edge_http_conn_set_ud(c, ps);
    struct edge_buf b;
    edge_buf_init(&b, 256);
    if (edge_repl_encode_challenge(&b, ps->nonce) == EDGE_OK) peer_send(ps, &b);
    edge_buf_free(&b);
}

/* ---------------------------------------------------------------------------------- */
/* Snapshots and compaction                                                           */
/* ---------------------------------------------------------------------------------- */

/* GET /v1/snapshot: a consistent copy of the database (SQLite backup API) for seeding a
 * new region. Needs the cluster secret (X-Edge-Cluster-Secret), since it holds all data. */
struct snapshot_job {
    uv_work_t work;
    struct loop *l;
    struct edge_http_conn *conn;
    uint64_t start_ns;
    int rv;
    char err[256];
    uint8_t *data;
    size_t len;
};

static void snapshot_work(uv_work_t *w)
{
    struct snapshot_job *j = w->data;
    struct edge_node *n = j->l->node;
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s.snapshot-%p", n->db_path, (void *)j);
    sqlite3 *src = NULL, *dst = NULL;
    j->rv = EDGE_ESTORE;
    if (sqlite3_open_v2(n->db_path, &src, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_open_v2(tmp, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) == SQLITE_OK) {
        sqlite3_busy_timeout(src, 5000);
        sqlite3_backup *b = sqlite3_backup_init(dst, "main", src, "main");
        if (b != NULL) {
            int rc;
            /* One step (-1) copies everything under one read lock: a multi-step copy would
             * restart on every commit of the writer and might never finish. */
            while ((rc = sqlite3_backup_step(b, -1)) == SQLITE_OK || rc == SQLITE_BUSY || rc == SQLITE_LOCKED) {
                if (rc != SQLITE_OK) sqlite3_sleep(5);
            }
            sqlite3_backup_finish(b);
            if (rc == SQLITE_DONE) j->rv = EDGE_OK;
        }
        if (j->rv != EDGE_OK) snprintf(j->err, sizeof(j->err), "backup failed: %s", sqlite3_errmsg(dst));
    } else {
        snprintf(j->err, sizeof(j->err), "cannot open the database for a snapshot");
    }
    sqlite3_close_v2(src);
    if (dst != NULL) {
        /* A self-contained file: no WAL next to it. */
        sqlite3_exec(dst, "PRAGMA journal_mode=DELETE", NULL, NULL, NULL);
        sqlite3_close_v2(dst);
    }
    if (j->rv == EDGE_OK) {
        FILE *f = fopen(tmp, "rb");
        j->rv = EDGE_EIO;
        if (f != NULL && fseek(f, 0, SEEK_END) == 0) {
            long sz = ftell(f);
            if (sz > 0 && sz < (1L << 30) && fseek(f, 0, SEEK_SET) == 0) {
                j->data = edge_malloc((size_t)sz);
                if (j->data != NULL && fread(j->data, 1, (size_t)sz, f) == (size_t)sz) {
                    j->len = (size_t)sz;
                    j->rv = EDGE_OK;
                }
            }
        }
        if (f != NULL) fclose(f);
        if (j->rv != EDGE_OK) snprintf(j->err, sizeof(j->err), "cannot read the snapshot file");
    }
    unlink(tmp);
}

static void snapshot_after(uv_work_t *w, int status)
{
    (void)status;
    struct snapshot_job *j = w->data;
    struct edge_node *n = j->l->node;
    if (!edge_http_conn_is_closed(j->conn)) {
        observe(n, EP_STATUS, j->start_ns, j->rv != EDGE_OK);
        if (j->rv == EDGE_OK) {
            char extra[128];
            snprintf(extra, sizeof(extra), "X-Edge-Region: %s\r\n", n->region);
            edge_http_respond(j->conn, 200, "application/vnd.sqlite3", extra, j->data, j->len);
        } else {
            edge_http_respond_error(j->conn, 500, "SNAPSHOT_FAILED", j->err);
        }
    }
    edge_http_conn_unref(j->conn);
    edge_free(j->data);
    edge_free(j);
}

static void handle_snapshot(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req)
{
    struct edge_node *n = l->node;
    const char *given = edge_http_header(req, "x-edge-cluster-secret");
    const char *secret = n->cfg.conf ? n->cfg.conf->cluster_secret : NULL;
    if (!n->cluster || secret == NULL) {
        respond_error(n, c, req, EP_STATUS, 404, "NOT_A_CLUSTER", "this node does not replicate");
        return;
    }
    if (given == NULL || strlen(given) != strlen(secret) || sodium_memcmp(given, secret, strlen(secret)) != 0) {
        respond_error(n, c, req, EP_STATUS, 401, "AUTH_CLUSTER", "a snapshot needs the cluster secret");
        return;
    }
    struct snapshot_job *j = edge_calloc(1, sizeof(*j));
    if (j == NULL) {
        respond_error(n, c, req, EP_STATUS, 503, "INTERNAL", "out of memory");
        return;
    }
    j->l = l;
    j->conn = c;
    edge_http_conn_ref(c);
    j->start_ns = req->start_ns;
    j->work.data = j;
    if (uv_queue_work(&l->loop, &j->work, snapshot_work, snapshot_after) != 0) {
        edge_http_conn_unref(c);
        edge_free(j);
        respond_error(n, c, req, EP_STATUS, 503, "INTERNAL", "cannot queue the snapshot");
    }
}

/* Before the first start of a region with an empty data directory: copy a peer's
 * database, so the region starts with everything (and that peer's version vector)
 * instead of replaying the whole history, which compaction may have removed. */
/* Is the existing database behind what the other regions can still send? That is the
 * case when a peer's log no longer holds entries this database lacks (compacted), or
 * when a peer has more of this region's own entries than the database (it was restored
 * from an old copy: writing on would reuse sequence numbers). Then the database is set
 * aside and the region is seeded from a snapshot like a new one. */
static bool behind_the_logs(struct edge_node *n)
{
    struct stat stt;
    if (!n->cluster || stat(n->db_path, &stt) != 0) return false;
    struct edge_vclock local;
    edge_vclock_init(&local);
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(n->db_path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK) {
        edge_repl_vv_load(db, &local); /* no table yet: an empty vector */
    }
    sqlite3_stmt *leftover;
    while (db != NULL && (leftover = sqlite3_next_stmt(db, NULL)) != NULL) sqlite3_finalize(leftover);
    sqlite3_close_v2(db);
    bool behind = false;
    const struct edge_conf *conf = n->cfg.conf;
    for (size_t i = 0; i < conf->n_regions && !behind; i++) {
        const struct edge_conf_region *r = &conf->regions[i];
        struct edge_httpc_url u;
        if (strcmp(r->id, n->region) == 0 || r->url == NULL || edge_httpc_url_parse(r->url, &u) != EDGE_OK) continue;
        struct edge_httpc_resp resp;
        if (edge_httpc_request(&u, "GET", "/v1/status", NULL, NULL, 0, 2000, 1 << 20, &resp) == EDGE_OK &&
            resp.status == 200) {
            json_t *doc = json_loadb(resp.body.data ? resp.body.data : "", resp.body.len, 0, NULL);
            const char *origin;
            json_t *v;
            json_object_foreach(json_object_get(doc, "log_floor"), origin, v) {
                if (strcmp(origin, n->region) != 0 && (uint64_t)json_integer_value(v) > edge_vclock_get(&local, origin)) {
                    EDGE_LOG(EDGE_LOG_WARN, EDGE_MOD_REPL,
                             "this database is behind the compacted log of %s (origin %s: have %llu, log starts after %llu)",
                             r->id, origin, (unsigned long long)edge_vclock_get(&local, origin),
                             (unsigned long long)json_integer_value(v));
                    behind = true;
                }
            }
            json_t *mine = json_object_get(json_object_get(doc, "version_vector"), n->region);
            if (!behind && (uint64_t)json_integer_value(mine) > edge_vclock_get(&local, n->region)) {
                EDGE_LOG(EDGE_LOG_WARN, EDGE_MOD_REPL,
                         "%s holds %llu entries of this region but this database only %llu: it was restored from "
                         "an old copy", r->id, (unsigned long long)json_integer_value(mine),
                         (unsigned long long)edge_vclock_get(&local, n->region));
                behind = true;
            }
            json_decref(doc);
        }
        edge_httpc_resp_free(&resp);
    }
    edge_vclock_close(&local);
    if (behind) {
        char aside[4300], from[4300];
        uint64_t now = wall_ms();
        const char *suffix[] = {"", "-wal", "-shm"};
        for (int k = 0; k < 3; k++) {
            snprintf(from, sizeof(from), "%s%s", n->db_path, suffix[k]);
            snprintf(aside, sizeof(aside), "%s.behind-%llu%s", n->db_path, (unsigned long long)now, suffix[k]);
            rename(from, aside);
        }
        EDGE_LOG(EDGE_LOG_WARN, EDGE_MOD_REPL, "set the old database aside as %s.behind-%llu; seeding from a peer",
                 n->db_path, (unsigned long long)now);
    }
    return behind;
}

static void seed_from_snapshot(struct edge_node *n)
{
    struct stat st;
    if (!n->cluster || n->cfg.conf->cluster_secret == NULL || stat(n->db_path, &st) == 0) return;
    const struct edge_conf *conf = n->cfg.conf;
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < conf->n_regions; i++) {
            const struct edge_conf_region *r = &conf->regions[i];
            if (strcmp(r->id, n->region) == 0 || r->url == NULL) continue;
            struct edge_httpc_url u;
            if (edge_httpc_url_parse(r->url, &u) != EDGE_OK) continue;
            char headers[512];
            snprintf(headers, sizeof(headers), "X-Edge-Cluster-Secret: %s\r\n", conf->cluster_secret);
            struct edge_httpc_resp resp;
            int rv = edge_httpc_request_ex(&u, "GET", "/v1/snapshot", NULL, headers, NULL, 0, 30000, (size_t)1 << 30,
                                           &resp);
            if (rv == EDGE_OK && resp.status == 200 && resp.body.len >= 100 &&
                memcmp(resp.body.data, "SQLite format 3", 15) == 0) {
                char tmp[4200];
                snprintf(tmp, sizeof(tmp), "%s.seed", n->db_path);
                FILE *f = fopen(tmp, "wb");
                bool ok = f != NULL && fwrite(resp.body.data, 1, resp.body.len, f) == resp.body.len;
                if (f != NULL) ok = (fflush(f) == 0 && fsync(fileno(f)) == 0 && fclose(f) == 0) && ok;
                if (ok && rename(tmp, n->db_path) == 0) {
                    EDGE_LOG(EDGE_LOG_INFO, EDGE_MOD_REPL, "seeded from a snapshot of %s (%zu bytes)", r->id,
                             resp.body.len);
                    edge_httpc_resp_free(&resp);
                    return;
                }
                unlink(tmp);
            }
            edge_httpc_resp_free(&resp);
        }
        if (pass == 0) sqlite3_sleep(500); /* peers may be starting too */
    }
    EDGE_LOG(EDGE_LOG_INFO, EDGE_MOD_REPL, "no peer snapshot available; starting empty and replaying the logs");
}

/* Writer thread, alone: drop log entries that every region has acknowledged. */
struct compact_job {
    struct edge_writer_job wjob;
    struct edge_vclock floor; /* per origin: the lowest seq acknowledged by every peer */
    uint64_t removed;
};

static int compact_run(struct edge_writer_job *job, struct edge_store_conn *conn)
{
    struct compact_job *cj = (struct compact_job *)job;
    sqlite3 *db = edge_store_db(conn);
    sqlite3_stmt *st = NULL;
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) return EDGE_OK;
    if (sqlite3_prepare_v2(db, "DELETE FROM _edge_log WHERE origin = ?1 AND seq <= ?2", -1, &st, NULL) == SQLITE_OK) {
        for (size_t i = 0; i < cj->floor.n_entries; i++) {
            sqlite3_bind_text(st, 1, cj->floor.entries[i].region, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 2, (sqlite3_int64)cj->floor.entries[i].n);
            if (sqlite3_step(st) == SQLITE_DONE) cj->removed += (uint64_t)sqlite3_changes(db);
            sqlite3_reset(st);
        }
    }
    sqlite3_finalize(st);
    if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        cj->removed = 0;
    }
    return EDGE_OK;
}

static void compact_complete(struct edge_writer_job *job, int status)
{
    (void)status;
    struct compact_job *cj = (struct compact_job *)job;
    edge_vclock_close(&cj->floor);
    edge_free(cj);
}

static void compact_tick(uv_timer_t *t)
{
    struct loop *l = t->data;
    struct edge_node *n = l->node;
    if (!n->cluster || l->stopping) return;
    struct compact_job *cj = edge_calloc(1, sizeof(*cj));
    if (cj == NULL) return;
    edge_vclock_init(&cj->floor);
    vv_snapshot(n, &cj->floor);
    /* floor = min over this node and every peer; a peer never heard from keeps all. */
    pthread_rwlock_rdlock(&n->peers_lock);
    if (n->n_peers == 0) {
        pthread_rwlock_unlock(&n->peers_lock);
        edge_vclock_close(&cj->floor);
        edge_free(cj);
        return;
    }
    for (int i = 0; i < n->n_peers; i++) {
        struct edge_peer_status ps;
        edge_peer_status(n->peers[i], &ps);
        for (size_t k = 0; k < cj->floor.n_entries; k++) {
            uint64_t theirs = edge_vclock_get(&ps.acked, cj->floor.entries[k].region);
            if (theirs < cj->floor.entries[k].n) cj->floor.entries[k].n = theirs;
        }
        edge_vclock_close(&ps.acked);
    }
    pthread_rwlock_unlock(&n->peers_lock);
    /* Keep a tail per origin so a briefly lagging link rarely needs more than the log. */
    for (size_t k = 0; k < cj->floor.n_entries; k++) {
        uint64_t v = cj->floor.entries[k].n;
        cj->floor.entries[k].n = v > n->cfg.log_keep ? v - n->cfg.log_keep : 0;
    }
    bool any = false;
    for (size_t k = 0; k < cj->floor.n_entries; k++) any = any || cj->floor.entries[k].n > 0;
    if (!any) {
        edge_vclock_close(&cj->floor);
        edge_free(cj);
        return;
    }
    cj->wjob.exclusive = true;
    cj->wjob.run = compact_run;
    cj->wjob.complete = compact_complete;
    if (edge_writer_submit(n->writer, &cj->wjob) != EDGE_OK) {
        edge_vclock_close(&cj->floor);
        edge_free(cj);
    }
}

/* ---------------------------------------------------------------------------------- */
/* Auth                                                                               */
/* ---------------------------------------------------------------------------------- */

/* Check a token; returns true with the access level, or false with an error code. */
static bool check_token(struct edge_node *n, const char *tok, size_t len, enum hrana_access *access,
                        const char **code)
{
    if (n->keys == NULL) {
        *access = HRANA_ACCESS_RW;
        return true;
    }
    enum edge_jwt_access a = EDGE_JWT_NONE;
    if (edge_jwt_verify(n->keys, tok, len, (uint64_t)time(NULL), &a, code) != EDGE_OK || a == EDGE_JWT_NONE) {
        if (*code == NULL) *code = "AUTH_JWT_INVALID";
        return false;
    }
    *access = a == EDGE_JWT_RO ? HRANA_ACCESS_RO : HRANA_ACCESS_RW;
    return true;
}

static bool check_http_auth(struct edge_node *n, struct edge_http_req *req, enum hrana_access *access,
                            const char **code)
{
    if (n->keys == NULL) {
        *access = HRANA_ACCESS_RW;
        return true;
    }
    const char *h = edge_http_header(req, "authorization");
    const char *tok = NULL;
    size_t len = 0;
    if (edge_jwt_bearer(h, h ? strlen(h) : 0, &tok, &len, code) != EDGE_OK) {
        return false;
    }
    return check_token(n, tok, len, access, code);
}

/* ---------------------------------------------------------------------------------- */
/* Answers, bookmarks, majorities, forwarding                                         */
/* ---------------------------------------------------------------------------------- */

/* Answer a pipeline (Hrana form), or its /v1/replicate form. Loop thread. */
static void answer_pipeline(struct edge_node *n, struct edge_http_conn *c, int mode, const char *origin,
                            uint64_t seq, const char *body, size_t len, uint64_t start_ns)
{
    char extra[200] = "";
    if (origin != NULL && seq != 0) {
        snprintf(extra, sizeof(extra), "X-Edge-Bookmark: %s:%llu\r\n", origin, (unsigned long long)seq);
    }
    if (mode == PIPE_HRANA) {
        observe(n, EP_PIPELINE, start_ns, false);
        edge_http_respond(c, 200, "application/json", extra[0] ? extra : NULL, body, len);
        return;
    }
    /* /v1/replicate: the first result says whether the write happened. */
    json_t *doc = json_loadb(body, len, JSON_ALLOW_NUL, NULL);
    json_t *first = json_array_get(json_object_get(doc, "results"), 0);
    const char *type = json_string_value(json_object_get(first, "type"));
    struct edge_buf b;
    edge_buf_init(&b, 1 << 16);
    int status = 200;
    if (type != NULL && strcmp(type, "ok") == 0) {
        json_t *res = json_object_get(json_object_get(json_object_get(first, "response"), "result"), "affected_row_count");
        edge_buf_puts(&b, "{\"region\":");
        edge_buf_json_cstr(&b, n->region);
        edge_buf_puts(&b, ",\"bookmark\":");
        if (origin != NULL && seq != 0) {
            edge_buf_printf(&b, "\"%s:%llu\"", origin, (unsigned long long)seq);
        } else {
            edge_buf_puts(&b, "null");
        }
        edge_buf_printf(&b, ",\"affected_row_count\":%lld}", (long long)json_integer_value(res));
    } else {
        json_t *err = json_object_get(first, "error");
        const char *code = json_string_value(json_object_get(err, "code"));
        const char *msg = json_string_value(json_object_get(err, "message"));
        status = code != NULL && strcmp(code, "SQLITE_CONSTRAINT") == 0 ? 409 : 400;
        edge_buf_puts(&b, "{\"error\":");
        edge_buf_json_cstr(&b, msg ? msg : "the write failed");
        edge_buf_puts(&b, ",\"code\":");
        edge_buf_json_cstr(&b, code ? code : "WRITE_FAILED");
        edge_buf_putc(&b, '}');
    }
    json_decref(doc);
    observe(n, EP_REPLICATE, start_ns, status >= 400);
    edge_http_respond(c, status, "application/json", extra[0] ? extra : NULL, b.data, b.len);
    edge_buf_free(&b);
}

/* Peers that acknowledged this region's entry seq. */
static int acks_for(struct edge_node *n, uint64_t seq, int *out_connected)
{
    int acks = 0, connected = 0;
    pthread_rwlock_rdlock(&n->peers_lock);
    for (int i = 0; i < n->n_peers; i++) {
        struct edge_peer_status ps;
        edge_peer_status(n->peers[i], &ps);
        if (ps.connected) connected++;
        if (edge_vclock_get(&ps.acked, n->region) >= seq) acks++;
        edge_vclock_close(&ps.acked);
    }
    pthread_rwlock_unlock(&n->peers_lock);
    if (out_connected) *out_connected = connected;
    return acks;
}

static int majority_needed(struct edge_node *n)
{
    return (int)(n->cfg.conf->n_regions / 2); /* other regions needed besides this one */
}

enum wait_kind { WAIT_BOOKMARK, WAIT_MAJORITY };

struct waiter {
    uv_timer_t timer;
    struct loop *l;
    struct edge_http_conn *conn;
    enum wait_kind kind;
    uint64_t deadline_ms;
    uint64_t start_ns;
    /* bookmark */
    char origin[EDGE_VCLOCK_REGION_MAX + 1];
    uint64_t seq;
    struct edge_http_req *req;
    int version;
    int mode;
    /* majority */
    struct edge_buf resp;
    struct ws_session *ws; /* a WebSocket answer: the session stays busy until it is sent */
    int64_t request_id;
};

static void handle_pipeline(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req, int version);

static void ws_process(struct ws_session *s);
static void ws_session_unref(struct ws_session *s);

static void waiter_closed(uv_handle_t *h)
{
    struct waiter *w = h->data;
    if (w->ws != NULL) {
        w->ws->busy = false;
        ws_process(w->ws);
        ws_session_unref(w->ws);
    }
    edge_http_conn_unref(w->conn);
    edge_buf_free(&w->resp);
    edge_free(w);
}

static bool vv_covers(struct edge_node *n, const char *origin, uint64_t seq)
{
    pthread_mutex_lock(&n->vv_mu);
    bool ok = edge_vclock_get(&n->vv, origin) >= seq;
    pthread_mutex_unlock(&n->vv_mu);
    return ok;
}

static void waiter_tick(uv_timer_t *t)
{
    struct waiter *w = t->data;
    struct edge_node *n = w->l->node;
    bool done = true;
    if (edge_http_conn_is_closed(w->conn) || w->l->stopping) {
        /* nobody to answer */
    } else if (w->kind == WAIT_BOOKMARK) {
        if (vv_covers(n, w->origin, w->seq)) {
            handle_pipeline(w->l, w->conn, w->req, w->version);
        } else if (mono_ms() >= w->deadline_ms) {
            char msg[256];
            snprintf(msg, sizeof(msg), "this region has not yet applied %s:%llu (waited %llu ms)", w->origin,
                     (unsigned long long)w->seq, (unsigned long long)n->cfg.bookmark_timeout_ms);
            observe(n, EP_PIPELINE, w->start_ns, true);
            edge_http_respond_error(w->conn, 504, "BOOKMARK_TIMEOUT", msg);
        } else {
            done = false;
        }
    } else {
        if (acks_for(n, w->seq, NULL) >= majority_needed(n)) {
            if (w->ws != NULL) {
                if (!w->ws->closed) edge_http_ws_send(w->conn, 1, w->resp.data, w->resp.len);
                observe(n, EP_WS, w->start_ns, false);
            } else {
                answer_pipeline(n, w->conn, w->mode, n->region, w->seq, w->resp.data, w->resp.len, w->start_ns);
            }
        } else if (mono_ms() >= w->deadline_ms && w->ws != NULL) {
            char msg[256];
            snprintf(msg, sizeof(msg), "committed on the primary as %s:%llu but a majority did not confirm it in time",
                     n->region, (unsigned long long)w->seq);
            struct edge_buf b;
            edge_buf_init(&b, 4096);
            edge_buf_printf(&b, "{\"type\":\"response_error\",\"request_id\":%lld,\"error\":",
                            (long long)w->request_id);
            hrana_write_error(&b, msg, "STRONG_TIMEOUT");
            edge_buf_putc(&b, '}');
            if (!w->ws->closed) edge_http_ws_send(w->conn, 1, b.data, b.len);
            edge_buf_free(&b);
            observe(n, EP_WS, w->start_ns, true);
        } else if (mono_ms() >= w->deadline_ms) {
            char msg[256];
            snprintf(msg, sizeof(msg),
                     "the write committed on the primary as %s:%llu but a majority of regions did not confirm it "
                     "within %llu ms",
                     n->region, (unsigned long long)w->seq, (unsigned long long)n->cfg.strong_timeout_ms);
            observe(n, EP_PIPELINE, w->start_ns, true);
            edge_http_respond_error(w->conn, 504, "STRONG_TIMEOUT", msg);
        } else {
            done = false;
        }
    }
    if (done) {
        uv_close((uv_handle_t *)&w->timer, waiter_closed);
    } else {
        uv_timer_start(&w->timer, waiter_tick, 2, 0);
    }
}

static struct waiter *waiter_new(struct loop *l, struct edge_http_conn *c, enum wait_kind kind, uint64_t timeout_ms)
{
    struct waiter *w = edge_calloc(1, sizeof(*w));
    if (w == NULL) return NULL;
    w->l = l;
    w->conn = c;
    edge_http_conn_ref(c);
    w->kind = kind;
    w->deadline_ms = mono_ms() + timeout_ms;
    edge_buf_init(&w->resp, (size_t)1 << 31);
    uv_timer_init(&l->loop, &w->timer);
    w->timer.data = w;
    return w;
}

static void majority_wait(struct loop *l, struct edge_http_conn *c, uint64_t seq, struct edge_buf *resp, int mode,
                          uint64_t start_ns)
{
    struct edge_node *n = l->node;
    struct waiter *w = waiter_new(l, c, WAIT_MAJORITY, n->cfg.strong_timeout_ms);
    if (w == NULL) {
        edge_http_respond_error(c, 503, "INTERNAL", "out of memory");
        return;
    }
    w->seq = seq;
    w->mode = mode;
    w->start_ns = start_ns;
    edge_buf_append(&w->resp, resp->data ? resp->data : "", resp->len);
    waiter_tick(&w->timer);
}

/* Park a WebSocket answer of a strong write until a majority holds its entry; the
 * waiter takes over the unit's session reference and busy flag. */
static bool ws_majority_wait(struct unit *u, struct ws_session *s, uint64_t seq)
{
    struct edge_node *n = u->loop->node;
    struct waiter *w = waiter_new(u->loop, s->conn, WAIT_MAJORITY, n->cfg.strong_timeout_ms);
    if (w == NULL) return false;
    w->seq = seq;
    w->ws = s;
    w->request_id = u->request_id;
    w->start_ns = u->start_ns;
    edge_buf_append(&w->resp, u->out.data ? u->out.data : "", u->out.len);
    waiter_tick(&w->timer);
    return true;
}

/* A read with X-Edge-Bookmark: serve it once this region has applied the write.
 * Returns true if the request was parked (or answered). */
static bool bookmark_gate(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req, int version)
{
    struct edge_node *n = l->node;
    const char *bm = edge_http_header(req, "x-edge-bookmark");
    if (bm == NULL || !n->cluster) return false;
    const char *colon = strrchr(bm, ':');
    char origin[EDGE_VCLOCK_REGION_MAX + 1];
    char *end = NULL;
    unsigned long long seq = colon ? strtoull(colon + 1, &end, 10) : 0;
    if (colon == NULL || colon == bm || (size_t)(colon - bm) > EDGE_VCLOCK_REGION_MAX || end == NULL || *end != '\0' ||
        seq == 0) {
        respond_error(n, c, req, EP_PIPELINE, 400, "BOOKMARK_INVALID", "X-Edge-Bookmark must be REGION:SEQ");
        return true;
    }
    memcpy(origin, bm, (size_t)(colon - bm));
    origin[colon - bm] = '\0';
    if (vv_covers(n, origin, seq)) return false;
    struct waiter *w = waiter_new(l, c, WAIT_BOOKMARK, n->cfg.bookmark_timeout_ms);
    if (w == NULL) {
        respond_error(n, c, req, EP_PIPELINE, 503, "INTERNAL", "out of memory");
        return true;
    }
    snprintf(w->origin, sizeof(w->origin), "%s", origin);
    w->seq = seq;
    w->req = req;
    w->version = version;
    w->start_ns = req->start_ns;
    uv_timer_start(&w->timer, waiter_tick, 2, 0);
    return true;
}

/* Forwarding a strong write to the primary (on the thread pool: blocking HTTP). */
struct forward {
    uv_work_t work;
    struct loop *l;
    struct edge_http_conn *conn;
    char *body;
    size_t body_len;
    char headers[1024];
    int mode;
    uint64_t start_ns;
    struct edge_httpc_resp resp;
    int rv;
};

static const char *primary_url(struct edge_node *n)
{
    const struct edge_conf_region *r = edge_conf_region_find(n->cfg.conf, n->primary);
    return r ? r->url : NULL;
}

static void forward_work(uv_work_t *w)
{
    struct forward *f = w->data;
    struct edge_node *n = f->l->node;
    /* Under WAN emulation the hop to the primary crosses the emulated WAN too: half the
     * round trip each way, as the peer links do. */
    double rtt = n->cfg.wan ? edge_regions_rtt_ms(n->cfg.wan, n->region, n->primary) : 0;
    if (rtt > 0) usleep((useconds_t)(rtt * 500.0));
    struct edge_httpc_url u;
    f->rv = edge_httpc_url_parse(primary_url(n), &u);
    if (f->rv == EDGE_OK) {
        f->rv = edge_httpc_request_ex(&u, "POST", "/v2/pipeline", NULL, f->headers, f->body, f->body_len,
                                      (int)n->cfg.strong_timeout_ms + 2000, (size_t)1 << 30, &f->resp);
    }
    if (rtt > 0) usleep((useconds_t)(rtt * 500.0));
}

static void forward_after(uv_work_t *w, int status)
{
    (void)status;
    struct forward *f = w->data;
    struct edge_node *n = f->l->node;
    if (!edge_http_conn_is_closed(f->conn)) {
        if (f->rv != EDGE_OK) {
            char msg[256];
            snprintf(msg, sizeof(msg), "the primary region %s could not be reached: %s", n->primary,
                     edge_strerror(f->rv));
            observe(n, EP_PIPELINE, f->start_ns, true);
            edge_http_respond_error(f->conn, 503, "PRIMARY_UNREACHABLE", msg);
        } else if (f->resp.status == 200) {
            /* The primary's bookmark orders reads everywhere. */
            const char *bm = f->resp.bookmark;
            const char *colon = strrchr(bm, ':');
            char origin[EDGE_VCLOCK_REGION_MAX + 1] = "";
            uint64_t seq = 0;
            if (colon != NULL && (size_t)(colon - bm) <= EDGE_VCLOCK_REGION_MAX) {
                memcpy(origin, bm, (size_t)(colon - bm));
                origin[colon - bm] = '\0';
                seq = strtoull(colon + 1, NULL, 10);
            }
            answer_pipeline(n, f->conn, f->mode, seq ? origin : NULL, seq, f->resp.body.data ? f->resp.body.data : "",
                            f->resp.body.len, f->start_ns);
        } else {
            observe(n, f->mode == PIPE_HRANA ? EP_PIPELINE : EP_REPLICATE, f->start_ns, true);
            edge_http_respond(f->conn, f->resp.status, "application/json", NULL, f->resp.body.data ? f->resp.body.data : "",
                              f->resp.body.len);
        }
    }
    edge_httpc_resp_free(&f->resp);
    edge_http_conn_unref(f->conn);
    edge_free(f->body);
    edge_free(f);
}

static void forward_strong(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req, json_t *body,
                           int mode, bool strong)
{
    struct edge_node *n = l->node;
    struct forward *f = edge_calloc(1, sizeof(*f));
    char *text = json_dumps(body, JSON_COMPACT);
    if (f == NULL || text == NULL || primary_url(n) == NULL) {
        edge_free(f);
        free(text);
        respond_error(n, c, req, EP_PIPELINE, 503, "PRIMARY_UNREACHABLE", "cannot forward to the primary region");
        return;
    }
    f->body = edge_strdup(text);
    free(text);
    f->body_len = f->body ? strlen(f->body) : 0;
    f->l = l;
    f->conn = c;
    edge_http_conn_ref(c);
    f->mode = mode;
    f->start_ns = req->start_ns;
    const char *auth = edge_http_header(req, "authorization");
    snprintf(f->headers, sizeof(f->headers), "%sX-Edge-Forwarded: %s\r\n%s%s%s",
             strong ? "X-Edge-Consistency: strong\r\n" : "", n->region, auth ? "Authorization: " : "", auth ? auth : "",
             auth ? "\r\n" : "");
    f->work.data = f;
    if (f->body == NULL || uv_queue_work(&l->loop, &f->work, forward_work, forward_after) != 0) {
        edge_http_conn_unref(c);
        edge_free(f->body);
        edge_free(f);
        respond_error(n, c, req, EP_PIPELINE, 503, "PRIMARY_UNREACHABLE", "cannot forward to the primary region");
    }
}

/* ---------------------------------------------------------------------------------- */
/* HTTP pipeline                                                                      */
/* ---------------------------------------------------------------------------------- */

/* Run a validated pipeline body (takes ownership of body). */
static void pipeline_run(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req, json_t *body,
                         int version, enum hrana_access access, int mode)
{
    struct edge_node *n = l->node;
    enum endpoint ep = mode == PIPE_HRANA ? EP_PIPELINE : EP_REPLICATE;
    const char *code = NULL;
    struct stream *s = NULL;
    json_t *baton = json_object_get(body, "baton");
    if (json_is_string(baton)) {
        const char *msg = NULL;
        s = stream_checkout(n, json_string_value(baton), json_string_length(baton), &code, &msg);
        if (s == NULL) {
            json_decref(body);
            respond_error(n, c, req, ep, 400, code, msg);
            return;
        }
    } else {
        s = edge_calloc(1, sizeof(*s));
        if (s == NULL) {
            json_decref(body);
            respond_error(n, c, req, ep, 503, "INTERNAL", "out of memory");
            return;
        }
        hrana_sqlmap_init(&s->sqls, HRANA_MAX_SQL_PER_STREAM);
        s->busy = true;
    }
    json_t *requests = json_object_get(body, "requests");
    size_t nreq = json_array_size(requests);
    struct hrana_tables tables = {.n = 0};
    enum hrana_route route =
        hrana_classify(requests, nreq, l->rconn, &s->sqls, s->txn != NULL, n->cluster ? &tables : NULL);
    if (route == HRANA_ROUTE_WRITE && access == HRANA_ACCESS_RO) {
        route = HRANA_ROUTE_READ; /* every write will be refused statement by statement */
    }
    int consistency = unit_consistency(n, req, &tables);
    /* Schema changes go through the primary, so every region sees one order of schema
     * changes (row images are positional); they do not wait for a majority. */
    bool via_primary = n->cluster && route != HRANA_ROUTE_READ && (consistency == 1 || tables.ddl);
    if (via_primary) {
        const char *why = NULL;
        const char *why_code = NULL;
        bool stateless = !json_is_string(baton) && nreq > 0 &&
                         strcmp(json_string_value(json_object_get(json_array_get(requests, nreq - 1), "type")),
                                "close") == 0;
        int connected = 0;
        if (strcmp(n->primary, n->region) != 0) {
            if (!stateless) {
                why_code = "STRONG_NEEDS_PRIMARY";
                why = "strong writes and schema changes inside a stream must be sent to the primary region directly";
            } else if (edge_http_header(req, "x-edge-forwarded") != NULL) {
                why_code = "PRIMARY_UNREACHABLE";
                why = "a forwarded strong write reached a region that is not the primary";
            } else {
                stream_discard(n, s);
                forward_strong(l, c, req, body, mode, consistency == 1);
                json_decref(body);
                return;
            }
        } else if (consistency == 1 && (acks_for(n, 0, &connected), connected) < majority_needed(n)) {
            why_code = "NO_MAJORITY";
            why = "the primary cannot reach a majority of regions; the write was not applied";
        }
        if (why != NULL) {
            stream_discard(n, s);
            json_decref(body);
            respond_error(n, c, req, ep, 503, why_code, why);
            return;
        }
    }
    struct unit *u = unit_new(l, c, body);
    if (u == NULL) {
        json_decref(body);
        stream_discard(n, s);
        respond_error(n, c, req, ep, 503, "INTERNAL", "out of memory");
        return;
    }
    u->start_ns = req->start_ns;
    u->requests = requests;
    u->n = nreq;
    u->stream = s;
    u->mode = mode;
    u->ctx.sqls = &s->sqls;
    u->ctx.access = access;
    u->ctx.version = version;
    u->route = route;
    unit_repl_setup(u, consistency);
    unit_dispatch(u);
}

static void handle_pipeline(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req, int version)
{
    struct edge_node *n = l->node;
    enum hrana_access access;
    const char *code = NULL;
    if (!check_http_auth(n, req, &access, &code)) {
        respond_error(n, c, req, EP_PIPELINE, 401, code, "Authentication failed");
        return;
    }
    json_error_t jerr;
    json_t *body = json_loadb(req->body.data ? req->body.data : "", req->body.len, JSON_ALLOW_NUL, &jerr);
    if (body == NULL) {
        char msg[256];
        snprintf(msg, sizeof(msg), "invalid JSON body: %s (line %d, column %d)", jerr.text, jerr.line, jerr.column);
        respond_error(n, c, req, EP_PIPELINE, 400, "HRANA_PROTO_ERROR", msg);
        return;
    }
    char err[256];
    if (hrana_validate_pipeline(body, version, err, sizeof(err)) != EDGE_OK) {
        json_decref(body);
        respond_error(n, c, req, EP_PIPELINE, 400, "HRANA_PROTO_ERROR", err);
        return;
    }
    pipeline_run(l, c, req, body, version, access, PIPE_HRANA);
}

/* ---------------------------------------------------------------------------------- */
/* POST /v1/replicate                                                                  */
/* ---------------------------------------------------------------------------------- */

/* Quote an identifier for SQL ("name" with "" escaping). */
static void sql_ident(struct edge_buf *b, const char *s)
{
    edge_buf_putc(b, '"');
    for (; *s; s++) {
        if (*s == '"') edge_buf_putc(b, '"');
        edge_buf_putc(b, *s);
    }
    edge_buf_putc(b, '"');
}

/* A JSON value as a Hrana argument value. Objects and arrays are stored as JSON text. */
static json_t *hrana_arg(json_t *v)
{
    char num[32];
    switch (json_typeof(v)) {
    case JSON_NULL: return json_pack("{s:s}", "type", "null");
    case JSON_TRUE: return json_pack("{s:s,s:s}", "type", "integer", "value", "1");
    case JSON_FALSE: return json_pack("{s:s,s:s}", "type", "integer", "value", "0");
    case JSON_INTEGER:
        snprintf(num, sizeof(num), "%lld", (long long)json_integer_value(v));
        return json_pack("{s:s,s:s}", "type", "integer", "value", num);
    case JSON_REAL: return json_pack("{s:s,s:f}", "type", "float", "value", json_real_value(v));
    case JSON_STRING: return json_pack("{s:s,s:s%}", "type", "text", "value", json_string_value(v), json_string_length(v));
    default: {
        char *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        json_t *r = t ? json_pack("{s:s,s:s}", "type", "text", "value", t) : NULL;
        free(t);
        return r;
    }
    }
}

/* Validate the request against the schema (read connection) and build the SQL. */
static int replicate_sql(struct loop *l, json_t *body, struct edge_buf *sql, json_t *args, const char **code,
                         char *msg, size_t msglen)
{
    sqlite3 *db = edge_store_db(l->rconn);
    const char *op = json_string_value(json_object_get(body, "op"));
    const char *table = json_string_value(json_object_get(body, "table"));
    json_t *id = json_object_get(body, "id");
    json_t *data = json_object_get(body, "data");
    *code = "REPLICATE_BAD_REQUEST";
    if (op == NULL || table == NULL) {
        snprintf(msg, msglen, "'op' and 'table' are required strings");
        return 400;
    }
    bool is_delete = strcmp(op, "delete") == 0;
    if (strcmp(op, "insert") != 0 && strcmp(op, "update") != 0 && strcmp(op, "upsert") != 0 && !is_delete) {
        snprintf(msg, msglen, "unknown op '%s' (insert, update, upsert, delete)", op);
        return 400;
    }
    if (id == NULL || json_is_object(id) || json_is_array(id) || json_is_null(id)) {
        snprintf(msg, msglen, "'id' (the primary key value) is required and must be a scalar");
        return 400;
    }
    if (!is_delete && !json_is_object(data)) {
        snprintf(msg, msglen, "'data' must be an object of column values");
        return 400;
    }
    if (strncmp(table, "_edge_", 6) == 0 || strncmp(table, "sqlite_", 7) == 0) {
        *code = "UNKNOWN_TABLE";
        snprintf(msg, msglen, "table '%s' is internal", table);
        return 400;
    }
    /* The table's columns and its single-column primary key. */
    sqlite3_stmt *st = NULL;
    char pk[128] = "";
    int npk = 0, ncols = 0;
    char cols[64][128];
    if (sqlite3_prepare_v2(db, "SELECT name, pk FROM pragma_table_info(?1)", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
        while (sqlite3_step(st) == SQLITE_ROW) {
            const char *name = (const char *)sqlite3_column_text(st, 0);
            if (ncols < 64) snprintf(cols[ncols++], sizeof(cols[0]), "%s", name);
            if (sqlite3_column_int(st, 1) > 0) {
                npk++;
                snprintf(pk, sizeof(pk), "%s", name);
            }
        }
    }
    sqlite3_finalize(st);
    if (ncols == 0) {
        *code = "UNKNOWN_TABLE";
        snprintf(msg, msglen, "no such table: %s", table);
        return 404;
    }
    if (npk != 1) {
        *code = "REPLICATION_NO_PRIMARY_KEY";
        snprintf(msg, msglen, "table %s needs a single-column PRIMARY KEY for /v1/replicate", table);
        return 400;
    }
    const char *key;
    json_t *val;
    json_object_foreach(data, key, val) {
        bool known = false;
        for (int i = 0; i < ncols; i++) known = known || strcmp(cols[i], key) == 0;
        if (!known) {
            *code = "UNKNOWN_COLUMN";
            snprintf(msg, msglen, "table %s has no column '%s'", table, key);
            return 400;
        }
        if (strcmp(key, pk) == 0) {
            snprintf(msg, msglen, "the primary key goes in 'id', not in 'data'");
            return 400;
        }
    }
    if (!is_delete && json_object_size(data) == 0 && strcmp(op, "update") == 0) {
        snprintf(msg, msglen, "'data' is empty");
        return 400;
    }
    if (is_delete) {
        edge_buf_puts(sql, "DELETE FROM ");
        sql_ident(sql, table);
        edge_buf_puts(sql, " WHERE ");
        sql_ident(sql, pk);
        edge_buf_puts(sql, " = ?");
        json_array_append_new(args, hrana_arg(id));
    } else if (strcmp(op, "update") == 0) {
        edge_buf_puts(sql, "UPDATE ");
        sql_ident(sql, table);
        edge_buf_puts(sql, " SET ");
        int i = 0;
        json_object_foreach(data, key, val) {
            if (i++ > 0) edge_buf_puts(sql, ", ");
            sql_ident(sql, key);
            edge_buf_puts(sql, " = ?");
            json_array_append_new(args, hrana_arg(val));
        }
        edge_buf_puts(sql, " WHERE ");
        sql_ident(sql, pk);
        edge_buf_puts(sql, " = ?");
        json_array_append_new(args, hrana_arg(id));
    } else {
        edge_buf_puts(sql, "INSERT INTO ");
        sql_ident(sql, table);
        edge_buf_puts(sql, " (");
        sql_ident(sql, pk);
        json_array_append_new(args, hrana_arg(id));
        json_object_foreach(data, key, val) {
            edge_buf_puts(sql, ", ");
            sql_ident(sql, key);
            json_array_append_new(args, hrana_arg(val));
        }
        edge_buf_puts(sql, ") VALUES (?");
        for (size_t k = 0; k < json_object_size(data); k++) edge_buf_puts(sql, ", ?");
        edge_buf_putc(sql, ')');
        if (strcmp(op, "upsert") == 0) {
            edge_buf_puts(sql, " ON CONFLICT(");
            sql_ident(sql, pk);
            edge_buf_puts(sql, ") DO ");
            if (json_object_size(data) == 0) {
                edge_buf_puts(sql, "NOTHING");
            } else {
                edge_buf_puts(sql, "UPDATE SET ");
                int i = 0;
                json_object_foreach(data, key, val) {
                    if (i++ > 0) edge_buf_puts(sql, ", ");
                    sql_ident(sql, key);
                    edge_buf_puts(sql, " = excluded.");
                    sql_ident(sql, key);
                }
            }
        }
    }
    return 200;
}

static void handle_replicate(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req)
{
    struct edge_node *n = l->node;
    enum hrana_access access;
    const char *code = NULL;
    if (!check_http_auth(n, req, &access, &code)) {
        respond_error(n, c, req, EP_REPLICATE, 401, code, "Authentication failed");
        return;
    }
    if (access == HRANA_ACCESS_RO) {
        respond_error(n, c, req, EP_REPLICATE, 403, "AUTH_READ_ONLY", "writes are not allowed with a read-only token");
        return;
    }
    json_error_t jerr;
    json_t *body = json_loadb(req->body.data ? req->body.data : "", req->body.len, JSON_ALLOW_NUL, &jerr);
    if (body == NULL || !json_is_object(body)) {
        char msg[256];
        snprintf(msg, sizeof(msg), "invalid JSON body: %s", body ? "expected an object" : jerr.text);
        json_decref(body);
        respond_error(n, c, req, EP_REPLICATE, 400, "REPLICATE_BAD_REQUEST", msg);
        return;
    }
    json_t *cons = json_object_get(body, "consistency");
    enum edge_consistency level;
    if (cons != NULL && (!json_is_string(cons) || edge_consistency_parse(json_string_value(cons), &level) != EDGE_OK)) {
        json_decref(body);
        respond_error(n, c, req, EP_REPLICATE, 400, "REPLICATE_BAD_REQUEST",
                      "'consistency' must be \"strong\", \"eventual\" or \"async\"");
        return;
    }
    struct edge_buf sql;
    edge_buf_init(&sql, 1 << 20);
    json_t *args = json_array();
    char msg[256] = "";
    int status = replicate_sql(l, body, &sql, args, &code, msg, sizeof(msg));
    if (status != 200) {
        edge_buf_free(&sql);
        json_decref(args);
        json_decref(body);
        respond_error(n, c, req, EP_REPLICATE, status, code, msg);
        return;
    }
    json_t *pipe = json_pack("{s:[{s:s,s:{s:s%,s:o,s:b}},{s:s}]}", "requests", "type", "execute", "stmt", "sql",
                             sql.data, sql.len, "args", args, "want_rows", 0, "type", "close");
    edge_buf_free(&sql);
    json_decref(body);
    if (pipe == NULL) {
        respond_error(n, c, req, EP_REPLICATE, 503, "INTERNAL", "out of memory");
        return;
    }
    if (cons != NULL) {
        /* The body's level acts like the X-Edge-Consistency header. */
        static const char *const names[] = {"eventual", "strong", "async"};
        struct edge_http_header *h = edge_realloc(req->headers, (req->n_headers + 1) * sizeof(*h));
        if (h != NULL) {
            req->headers = h;
            h[req->n_headers].name = edge_strdup("x-edge-consistency");
            h[req->n_headers].value = edge_strdup(names[level]);
            if (h[req->n_headers].name && h[req->n_headers].value) req->n_headers++;
        }
    }
    pipeline_run(l, c, req, pipe, 2, access, PIPE_REPLICATE);
}

/* ---------------------------------------------------------------------------------- */
/* WebSocket Hrana                                                                    */
/* ---------------------------------------------------------------------------------- */

static void ws_session_unref(struct ws_session *s)
{
    if (--s->refs > 0) return;
    struct edge_node *n = s->loop->node;
    while (s->q_head != NULL) {
        struct ws_msg *m = s->q_head;
        s->q_head = m->next;
        json_decref(m->msg);
        edge_free(m);
    }
    for (size_t i = 0; i < s->n_streams; i++) {
        pool_release(n, s->streams[i].txn, s->streams[i].readonly_txn);
    }
    atomic_fetch_sub(&n->m.ws_streams, (int64_t)s->n_streams);
    edge_free(s->streams);
    hrana_sqlmap_free(&s->sqls);
    edge_http_conn_unref(s->conn);
    edge_free(s);
}

static void ws_fatal(struct ws_session *s, uint16_t code, const char *reason)
{
    EDGE_LOG(EDGE_LOG_DEBUG, EDGE_MOD_API, "ws: closing: %s", reason);
    edge_http_ws_close(s->conn, code, reason);
    s->closed = true;
}

static void ws_send_error(struct ws_session *s, int64_t request_id, const char *msg, const char *code)
{
    struct edge_buf b;
    edge_buf_init(&b, 1 << 16);
    edge_buf_printf(&b, "{\"type\":\"response_error\",\"request_id\":%lld,\"error\":", (long long)request_id);
    hrana_write_error(&b, msg, code);
    edge_buf_putc(&b, '}');
    edge_http_ws_send(s->conn, 1, b.data, b.len);
    edge_buf_free(&b);
}

static void ws_send_ok(struct ws_session *s, int64_t request_id, const char *type)
{
    char b[256];
    int len = snprintf(b, sizeof(b), "{\"type\":\"response_ok\",\"request_id\":%lld,\"response\":{\"type\":\"%s\"}}",
                       (long long)request_id, type);
    edge_http_ws_send(s->conn, 1, b, (size_t)len);
}

static struct ws_stream *ws_find(struct ws_session *s, int32_t id)
{
    for (size_t i = 0; i < s->n_streams; i++) {
        if (s->streams[i].id == id) return &s->streams[i];
    }
    return NULL;
}

/* Handle one message; returns true if it went asynchronous (the session is busy). */
static bool ws_handle(struct ws_session *s, json_t *msg)
{
    struct edge_node *n = s->loop->node;
    const char *type = json_string_value(json_object_get(msg, "type"));
    if (type == NULL) {
        ws_fatal(s, 1002, "message without a type");
        return false;
    }
    if (strcmp(type, "hello") == 0) {
        json_t *jwt = json_object_get(msg, "jwt");
        const char *code = NULL;
        enum hrana_access access;
        if (jwt != NULL && !json_is_null(jwt) && !json_is_string(jwt)) {
            ws_fatal(s, 1002, "hello: jwt must be a string or null");
            return false;
        }
        const char *tok = json_is_string(jwt) ? json_string_value(jwt) : "";
        if (n->keys != NULL && !json_is_string(jwt)) {
            code = "AUTH_JWT_INVALID";
        }
        if (code == NULL && check_token(n, tok, strlen(tok), &access, &code)) {
            s->authed = true;
            s->access = access;
            const char ok[] = "{\"type\":\"hello_ok\"}";
            edge_http_ws_send(s->conn, 1, ok, sizeof(ok) - 1);
        } else {
            struct edge_buf b;
            edge_buf_init(&b, 1024);
            edge_buf_puts(&b, "{\"type\":\"hello_error\",\"error\":");
            hrana_write_error(&b, strcmp(code, "AUTH_JWT_EXPIRED") == 0 ? "The JWT has expired" : "The JWT is invalid",
                              code);
            edge_buf_putc(&b, '}');
            edge_http_ws_send(s->conn, 1, b.data, b.len);
            edge_buf_free(&b);
            ws_fatal(s, 3000, "authentication failed");
        }
        return false;
    }
    if (strcmp(type, "request") != 0) {
        ws_fatal(s, 1002, "unknown message type");
        return false;
    }
    json_t *rid = json_object_get(msg, "request_id");
    if (!json_is_integer(rid)) {
        ws_fatal(s, 1002, "request without an integer request_id");
        return false;
    }
    int64_t request_id = json_integer_value(rid);
    if (!s->authed) {
        ws_fatal(s, 1002, "request before hello");
        return false;
    }
    json_t *req = json_object_get(msg, "request");
    char err[256];
    if (hrana_validate_request(req, s->version >= 3 ? 3 : 2, true, err, sizeof(err)) != EDGE_OK) {
        ws_send_error(s, request_id, err, "HRANA_PROTO_ERROR");
        return false;
    }
    const char *t = json_string_value(json_object_get(req, "type"));
    int32_t sid = (int32_t)json_integer_value(json_object_get(req, "stream_id"));
    if (strcmp(t, "open_stream") == 0) {
        if (ws_find(s, sid) != NULL) {
            ws_send_error(s, request_id, "a stream with this id is already open", "STREAM_EXISTS");
            return false;
        }
        if (s->n_streams >= 1024) {
            ws_send_error(s, request_id, "too many open streams", "STREAM_TOO_MANY");
            return false;
        }
        struct ws_stream *p = edge_realloc(s->streams, (s->n_streams + 1) * sizeof(*p));
        if (p == NULL) {
            ws_send_error(s, request_id, "out of memory", "INTERNAL");
            return false;
        }
        s->streams = p;
        s->streams[s->n_streams++] = (struct ws_stream){sid, NULL, false};
        atomic_fetch_add(&n->m.ws_streams, 1);
        ws_send_ok(s, request_id, "open_stream");
        return false;
    }
    if (strcmp(t, "close_stream") == 0) {
        struct ws_stream *st = ws_find(s, sid);
        if (st != NULL) {
            pool_release(n, st->txn, st->readonly_txn);
            *st = s->streams[--s->n_streams];
            atomic_fetch_sub(&n->m.ws_streams, 1);
        }
        ws_send_ok(s, request_id, "close_stream");
        return false;
    }
    struct unit *u = unit_new(s->loop, s->conn, json_incref(msg));
    if (u == NULL) {
        ws_send_error(s, request_id, "out of memory", "INTERNAL");
        return false;
    }
    u->ws = s;
    u->requests = req;
    u->n = 1;
    u->request_id = request_id;
    u->ctx.sqls = &s->sqls;
    u->ctx.access = s->access;
    u->ctx.version = s->version >= 3 ? 3 : 2;
    if (strcmp(t, "store_sql") == 0 || strcmp(t, "close_sql") == 0) {
        u->route = HRANA_ROUTE_READ; /* touches only the session's map */
    } else {
        u->wss = ws_find(s, sid);
        if (u->wss == NULL) {
            unit_free(u);
            ws_send_error(s, request_id, "no stream with this id is open", "STREAM_NOT_FOUND");
            return false;
        }
        struct hrana_tables tables = {.n = 0};
        u->route = hrana_classify(req, 1, s->loop->rconn, &s->sqls, u->wss->txn != NULL, n->cluster ? &tables : NULL);
        if (u->route == HRANA_ROUTE_WRITE && s->access == HRANA_ACCESS_RO) {
            u->route = HRANA_ROUTE_READ;
        }
        int consistency = unit_consistency(n, NULL, &tables);
        if (n->cluster && u->route != HRANA_ROUTE_READ && (consistency == 1 || tables.ddl) &&
            strcmp(n->primary, n->region) != 0) {
            /* A WebSocket stream lives on this connection: it cannot be forwarded. */
            unit_free(u);
            ws_send_error(s, request_id,
                          "strong writes and schema changes must be sent to the primary region (use HTTP here, which "
                          "forwards them, or connect to the primary)",
                          "STRONG_NEEDS_PRIMARY");
            return false;
        }
        int connected = 0;
        if (n->cluster && u->route != HRANA_ROUTE_READ && consistency == 1 &&
            (acks_for(n, 0, &connected), connected) < majority_needed(n)) {
            unit_free(u);
            ws_send_error(s, request_id, "the primary cannot reach a majority of regions; the write was not applied",
                          "NO_MAJORITY");
            return false;
        }
        unit_repl_setup(u, consistency);
    }
    s->busy = true;
    s->refs++;
    unit_dispatch(u);
    return true;
}

/* Process queued messages in order, one unit of work at a time. */
static void ws_process(struct ws_session *s)
{
    while (!s->busy && !s->closed && s->q_head != NULL) {
        struct ws_msg *m = s->q_head;
        s->q_head = m->next;
        if (s->q_head == NULL) s->q_tail = NULL;
        s->q_len--;
        ws_handle(s, m->msg);
        json_decref(m->msg);
        edge_free(m);
    }
}

static void on_ws_message(void *ud, struct edge_http_conn *c, int opcode, const uint8_t *data, size_t len)
{
    (void)ud;
    struct ws_session *s = edge_http_conn_ud(c);
    if (s != NULL && s->kind == SESSION_PEER) {
        peer_on_message((struct peer_session *)(void *)s, opcode, data, len);
        return;
    }
    if (s == NULL || s->closed) return;
    if (opcode != 1) {
        ws_fatal(s, 1003, "only text frames are supported");
        return;
    }
    json_error_t jerr;
    json_t *msg = json_loadb((const char *)data, len, JSON_ALLOW_NUL, &jerr);
    if (msg == NULL || !json_is_object(msg)) {
        json_decref(msg);
        ws_fatal(s, 1007, "malformed JSON message");
        return;
    }
    if (s->q_len >= 1024) {
        json_decref(msg);
        ws_fatal(s, 1008, "too many requests in flight");
        return;
    }
    struct ws_msg *m = edge_calloc(1, sizeof(*m));
    if (m == NULL) {
        json_decref(msg);
        ws_fatal(s, 1011, "out of memory");
        return;
    }
    m->msg = msg;
    if (s->q_tail) s->q_tail->next = m; else s->q_head = m;
    s->q_tail = m;
    s->q_len++;
    ws_process(s);
}

static void on_conn_close(void *ud, struct edge_http_conn *c)
{
    (void)ud;
    struct ws_session *s = edge_http_conn_ud(c);
    if (s != NULL && s->kind == SESSION_PEER) {
        struct peer_session *ps = (struct peer_session *)(void *)s;
        edge_http_conn_set_ud(c, NULL);
        ps->closed = true;
        peer_session_unref(ps);
    } else if (s != NULL) {
        edge_http_conn_set_ud(c, NULL);
        s->closed = true;
        ws_session_unref(s);
    }
}

static bool offers(const char *list, const char *proto)
{
    if (list == NULL) return false;
    size_t pl = strlen(proto);
    const char *p = list;
    while (*p) {
        while (*p == ' ' || *p == ',') p++;
        const char *e = p;
        while (*e && *e != ',' && *e != ' ') e++;
        if ((size_t)(e - p) == pl && strncmp(p, proto, pl) == 0) return true;
        p = e;
    }
    return false;
}

static void handle_ws_upgrade(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req)
{
    struct edge_node *n = l->node;
    const char *protos = edge_http_header(req, "sec-websocket-protocol");
    const char *chosen = NULL;
    int version = 1;
    if (offers(protos, "hrana3")) {
        chosen = "hrana3";
        version = 3;
    } else if (offers(protos, "hrana2")) {
        chosen = "hrana2";
        version = 2;
    } else if (offers(protos, "hrana1")) {
        chosen = "hrana1";
    } else if (protos != NULL) {
        respond_error(n, c, req, EP_WS, 400, "WS_PROTOCOL_UNSUPPORTED", "no supported WebSocket subprotocol offered");
        return;
    }
    struct ws_session *s = edge_calloc(1, sizeof(*s));
    if (s == NULL) {
        respond_error(n, c, req, EP_WS, 503, "INTERNAL", "out of memory");
        return;
    }
    uint64_t start = req->start_ns;
    if (edge_http_ws_accept(c, chosen) != EDGE_OK) {
        edge_free(s);
        observe(n, EP_WS, start, true);
        return;
    }
    observe(n, EP_WS, start, false);
    s->loop = l;
    s->conn = c;
    edge_http_conn_ref(c);
    s->kind = SESSION_HRANA;
    s->version = version;
    s->refs = 1;
    hrana_sqlmap_init(&s->sqls, HRANA_MAX_SQL_PER_WS);
    edge_http_conn_set_ud(c, s);
}

/* ---------------------------------------------------------------------------------- */
/* Other endpoints                                                                    */
/* ---------------------------------------------------------------------------------- */

static uint64_t db_size(struct edge_node *n)
{
    struct stat st;
    uint64_t total = 0;
    if (stat(n->db_path, &st) == 0) total += (uint64_t)st.st_size;
    char wal[4200];
    snprintf(wal, sizeof(wal), "%s-wal", n->db_path);
    if (stat(wal, &st) == 0) total += (uint64_t)st.st_size;
    return total;
}

/* Entries of the local log the peer has not acknowledged, and the age of the oldest of
 * them (from its hybrid timestamp). Loop thread, on that loop's read connection. */
static void peer_backlog(struct edge_node *n, struct edge_store_conn *rconn, const struct edge_vclock *acked,
                         uint64_t *out_pending, double *out_lag_ms)
{
    *out_pending = 0;
    *out_lag_ms = 0;
    uint64_t oldest = UINT64_MAX;
    struct edge_vclock vv;
    edge_vclock_init(&vv);
    vv_snapshot(n, &vv);
    sqlite3_stmt *st = NULL;
    sqlite3_prepare_v2(edge_store_db(rconn), "SELECT hlc FROM _edge_log WHERE origin = ?1 AND seq = ?2", -1, &st, NULL);
    for (size_t i = 0; i < vv.n_entries; i++) {
        uint64_t have = vv.entries[i].n, theirs = edge_vclock_get(acked, vv.entries[i].region);
        if (have <= theirs) continue;
        *out_pending += have - theirs;
        if (st != NULL) {
            sqlite3_bind_text(st, 1, vv.entries[i].region, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 2, (sqlite3_int64)(theirs + 1));
            if (sqlite3_step(st) == SQLITE_ROW) {
                uint64_t h = (uint64_t)sqlite3_column_int64(st, 0);
                if (h < oldest) oldest = h;
            }
            sqlite3_reset(st);
        }
    }
    sqlite3_finalize(st);
    edge_vclock_close(&vv);
    if (oldest != UINT64_MAX) {
        uint64_t now = wall_ms();
        *out_lag_ms = now > EDGE_HLC_MS(oldest) ? (double)(now - EDGE_HLC_MS(oldest)) : 0;
    }
}

static void status_peers(struct edge_node *n, struct edge_store_conn *rconn, struct edge_buf *b)
{
    pthread_rwlock_rdlock(&n->peers_lock);
    for (int i = 0; i < n->n_peers; i++) {
        struct edge_peer_status ps;
        edge_peer_status(n->peers[i], &ps);
        uint64_t pending;
        double lag;
        peer_backlog(n, rconn, &ps.acked, &pending, &lag);
        if (i > 0) edge_buf_putc(b, ',');
        edge_buf_puts(b, "{\"region\":");
        edge_buf_json_cstr(b, n->peer_region[i]);
        edge_buf_puts(b, ",\"url\":");
        edge_buf_json_cstr(b, n->peer_url[i]);
        edge_buf_printf(b, ",\"connected\":%s,\"rtt_ms\":%.3f,\"lag_ms\":%.0f,\"pending\":%llu,\"acked\":{",
                        ps.connected ? "true" : "false", ps.rtt_ms, lag, (unsigned long long)pending);
        for (size_t k = 0; k < ps.acked.n_entries; k++) {
            if (k > 0) edge_buf_putc(b, ',');
            edge_buf_json_cstr(b, ps.acked.entries[k].region);
            edge_buf_printf(b, ":%llu", (unsigned long long)ps.acked.entries[k].n);
        }
        edge_buf_printf(b, "},\"entries_sent\":%llu,\"bytes_sent\":%llu,\"retries\":%llu,\"last_error\":",
                        (unsigned long long)ps.entries_sent, (unsigned long long)ps.bytes_sent,
                        (unsigned long long)ps.retries);
        edge_buf_json_cstr(b, ps.last_error);
        edge_buf_putc(b, '}');
        edge_vclock_close(&ps.acked);
    }
    pthread_rwlock_unlock(&n->peers_lock);
}

static void metrics_peers(struct edge_node *n, struct edge_store_conn *rconn, struct edge_buf *b)
{
    edge_buf_printf(b,
                    "# TYPE edgelite_repl_entries_applied_total counter\nedgelite_repl_entries_applied_total %llu\n"
                    "# TYPE edgelite_repl_rows_applied_total counter\nedgelite_repl_rows_applied_total %llu\n"
                    "# TYPE edgelite_repl_conflicts_total counter\nedgelite_repl_conflicts_total %llu\n"
                    "# TYPE edgelite_repl_duplicates_total counter\nedgelite_repl_duplicates_total %llu\n"
                    "# TYPE edgelite_repl_deferred_total counter\nedgelite_repl_deferred_total %llu\n",
                    (unsigned long long)atomic_load(&n->m.repl_applied), (unsigned long long)atomic_load(&n->m.repl_rows),
                    (unsigned long long)atomic_load(&n->m.repl_conflicts),
                    (unsigned long long)atomic_load(&n->m.repl_duplicates),
                    (unsigned long long)atomic_load(&n->m.repl_deferred));
    pthread_mutex_lock(&n->vv_mu);
    edge_buf_puts(b, "# TYPE edgelite_repl_version_vector gauge\n");
    for (size_t i = 0; i < n->vv.n_entries; i++) {
        edge_buf_printf(b, "edgelite_repl_version_vector{origin=\"%s\"} %llu\n", n->vv.entries[i].region,
                        (unsigned long long)n->vv.entries[i].n);
    }
    pthread_mutex_unlock(&n->vv_mu);
    edge_buf_puts(b, "# TYPE edgelite_repl_peer_connected gauge\n# TYPE edgelite_repl_peer_lag_ms gauge\n"
                     "# TYPE edgelite_repl_peer_pending_entries gauge\n# TYPE edgelite_repl_peer_rtt_ms gauge\n"
                     "# TYPE edgelite_repl_peer_entries_sent_total counter\n"
                     "# TYPE edgelite_repl_peer_bytes_sent_total counter\n"
                     "# TYPE edgelite_repl_peer_retries_total counter\n");
    pthread_rwlock_rdlock(&n->peers_lock);
    for (int i = 0; i < n->n_peers; i++) {
        struct edge_peer_status ps;
        edge_peer_status(n->peers[i], &ps);
        uint64_t pending;
        double lag;
        peer_backlog(n, rconn, &ps.acked, &pending, &lag);
        const char *r = n->peer_region[i];
        edge_buf_printf(b,
                        "edgelite_repl_peer_connected{peer=\"%s\"} %d\nedgelite_repl_peer_lag_ms{peer=\"%s\"} %.0f\n"
                        "edgelite_repl_peer_pending_entries{peer=\"%s\"} %llu\nedgelite_repl_peer_rtt_ms{peer=\"%s\"} %.3f\n"
                        "edgelite_repl_peer_entries_sent_total{peer=\"%s\"} %llu\n"
                        "edgelite_repl_peer_bytes_sent_total{peer=\"%s\"} %llu\n"
                        "edgelite_repl_peer_retries_total{peer=\"%s\"} %llu\n",
                        r, ps.connected ? 1 : 0, r, lag, r, (unsigned long long)pending, r, ps.rtt_ms, r,
                        (unsigned long long)ps.entries_sent, r, (unsigned long long)ps.bytes_sent, r,
                        (unsigned long long)ps.retries);
        edge_vclock_close(&ps.acked);
    }
    pthread_rwlock_unlock(&n->peers_lock);
}

/* GET /v1/conflicts: the most recent resolved conflicts, newest first. */
static void handle_conflicts(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req)
{
    struct edge_node *n = l->node;
    struct edge_buf b;
    edge_buf_init(&b, 16u << 20);
    edge_buf_puts(&b, "{\"region\":");
    edge_buf_json_cstr(&b, n->region);
    edge_buf_puts(&b, ",\"conflicts\":[");
    sqlite3_stmt *st = NULL;
    uint64_t total = 0;
    if (n->cluster &&
        sqlite3_prepare_v2(edge_store_db(l->rconn),
                           "SELECT id, tbl, hex(pk), winner_origin, winner_seq, winner_hlc, loser_origin, loser_seq,"
                           " loser_hlc, loser_deleted, at_ms, (SELECT count(*) FROM _edge_conflicts)"
                           " FROM _edge_conflicts ORDER BY id DESC LIMIT 1000",
                           -1, &st, NULL) == SQLITE_OK) {
        int i = 0;
        while (sqlite3_step(st) == SQLITE_ROW) {
            if (i++ > 0) edge_buf_putc(&b, ',');
            total = (uint64_t)sqlite3_column_int64(st, 11);
            edge_buf_printf(&b, "{\"id\":%lld,\"table\":", (long long)sqlite3_column_int64(st, 0));
            edge_buf_json_cstr(&b, (const char *)sqlite3_column_text(st, 1));
            edge_buf_puts(&b, ",\"pk_hex\":");
            edge_buf_json_cstr(&b, (const char *)sqlite3_column_text(st, 2));
            edge_buf_puts(&b, ",\"winner\":{\"origin\":");
            edge_buf_json_cstr(&b, (const char *)sqlite3_column_text(st, 3));
            edge_buf_printf(&b, ",\"seq\":%lld,\"hlc\":%lld},\"loser\":{\"origin\":",
                            (long long)sqlite3_column_int64(st, 4), (long long)sqlite3_column_int64(st, 5));
            edge_buf_json_cstr(&b, (const char *)sqlite3_column_text(st, 6));
            edge_buf_printf(&b, ",\"seq\":%lld,\"hlc\":%lld,\"deleted\":%s},\"at_ms\":%lld}",
                            (long long)sqlite3_column_int64(st, 7), (long long)sqlite3_column_int64(st, 8),
                            sqlite3_column_int(st, 9) ? "true" : "false", (long long)sqlite3_column_int64(st, 10));
        }
    }
    sqlite3_finalize(st);
    edge_buf_printf(&b, "],\"total\":%llu}", (unsigned long long)total);
    respond(n, c, req, EP_STATUS, 200, "application/json", NULL, b.data, b.len);
    edge_buf_free(&b);
}

/* Per origin, the highest seq no longer in the log (compacted): a region that has not
 * applied up to it cannot catch up from this node's log. */
static void log_floor_json(struct edge_node *n, struct edge_store_conn *rconn, struct edge_buf *b)
{
    if (!n->cluster) return;
    struct edge_vclock vv;
    edge_vclock_init(&vv);
    vv_snapshot(n, &vv);
    sqlite3_stmt *st = NULL;
    sqlite3_prepare_v2(edge_store_db(rconn), "SELECT min(seq) FROM _edge_log WHERE origin = ?1", -1, &st, NULL);
    for (size_t i = 0; i < vv.n_entries && st != NULL; i++) {
        sqlite3_bind_text(st, 1, vv.entries[i].region, -1, SQLITE_STATIC);
        uint64_t floor = vv.entries[i].n; /* nothing left: everything compacted */
        if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL) {
            floor = (uint64_t)sqlite3_column_int64(st, 0) - 1;
        }
        sqlite3_reset(st);
        if (i > 0) edge_buf_putc(b, ',');
        edge_buf_json_cstr(b, vv.entries[i].region);
        edge_buf_printf(b, ":%llu", (unsigned long long)floor);
    }
    sqlite3_finalize(st);
    edge_vclock_close(&vv);
}

static void handle_status(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req)
{
    struct edge_node *n = l->node;
    struct edge_buf b;
    edge_buf_init(&b, 1 << 20);
    edge_buf_puts(&b, "{\"region\":");
    edge_buf_json_cstr(&b, n->region);
    bool is_primary = strcmp(n->primary, n->region) == 0;
    edge_buf_printf(&b, ",\"version\":\"%s\",\"uptime_s\":%.3f,\"started_at_ms\":%llu,\"role\":\"%s\",\"primary\":",
                    EDGE_VERSION, (double)(mono_ms() - n->start_mono_ms) / 1000.0,
                    (unsigned long long)n->start_wall_ms, is_primary ? "primary" : "replica");
    edge_buf_json_cstr(&b, n->primary);
    edge_buf_printf(&b, ",\"db_path\":");
    edge_buf_json_cstr(&b, n->db_path);
    edge_buf_printf(&b, ",\"db_size_bytes\":%llu,\"threads\":%d,\"auth\":%s,\"replicating\":%s,\"version_vector\":{",
                    (unsigned long long)db_size(n), n->n_loops, n->keys ? "true" : "false",
                    n->cluster ? "true" : "false");
    pthread_mutex_lock(&n->vv_mu);
    for (size_t i = 0; i < n->vv.n_entries; i++) {
        if (i > 0) edge_buf_putc(&b, ',');
        edge_buf_json_cstr(&b, n->vv.entries[i].region);
        edge_buf_printf(&b, ":%llu", (unsigned long long)n->vv.entries[i].n);
    }
    pthread_mutex_unlock(&n->vv_mu);
    edge_buf_puts(&b, "},\"log_floor\":{");
    log_floor_json(n, l->rconn, &b);
    edge_buf_puts(&b, "},\"peers\":[");
    status_peers(n, l->rconn, &b);
    edge_buf_puts(&b, "]}");
    respond(n, c, req, EP_STATUS, 200, "application/json", NULL, b.data, b.len);
    edge_buf_free(&b);
}

static void handle_metrics(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req)
{
    struct edge_node *n = l->node;
    struct edge_buf b;
    edge_buf_init(&b, 1 << 22);
    edge_buf_puts(&b, "# HELP edgelite_http_requests_total HTTP requests by endpoint.\n"
                      "# TYPE edgelite_http_requests_total counter\n");
    for (int e = 0; e < EP__COUNT; e++) {
        edge_buf_printf(&b, "edgelite_http_requests_total{endpoint=\"%s\"} %llu\n", endpoint_names[e],
                        (unsigned long long)atomic_load(&n->m.requests[e]));
    }
    edge_buf_puts(&b, "# HELP edgelite_http_errors_total HTTP requests answered with an error status.\n"
                      "# TYPE edgelite_http_errors_total counter\n");
    for (int e = 0; e < EP__COUNT; e++) {
        edge_buf_printf(&b, "edgelite_http_errors_total{endpoint=\"%s\"} %llu\n", endpoint_names[e],
                        (unsigned long long)atomic_load(&n->m.errors[e]));
    }
    edge_buf_puts(&b, "# HELP edgelite_http_request_duration_seconds Request latency.\n"
                      "# TYPE edgelite_http_request_duration_seconds histogram\n");
    for (int e = 0; e < EP__COUNT; e++) {
        uint64_t cum = 0;
        for (size_t i = 0; i <= HIST_N; i++) {
            cum += atomic_load(&n->m.hist[e][i]);
            if (i < HIST_N) {
                edge_buf_printf(&b, "edgelite_http_request_duration_seconds_bucket{endpoint=\"%s\",le=\"%g\"} %llu\n",
                                endpoint_names[e], hist_bounds[i], (unsigned long long)cum);
            } else {
                edge_buf_printf(&b, "edgelite_http_request_duration_seconds_bucket{endpoint=\"%s\",le=\"+Inf\"} %llu\n",
                                endpoint_names[e], (unsigned long long)cum);
            }
        }
        edge_buf_printf(&b, "edgelite_http_request_duration_seconds_sum{endpoint=\"%s\"} %.6f\n", endpoint_names[e],
                        (double)atomic_load(&n->m.hist_sum_us[e]) / 1e6);
        edge_buf_printf(&b, "edgelite_http_request_duration_seconds_count{endpoint=\"%s\"} %llu\n",
                        endpoint_names[e], (unsigned long long)cum);
    }
    pthread_mutex_lock(&n->streams_mu);
    size_t http_streams = n->n_streams;
    pthread_mutex_unlock(&n->streams_mu);
    uint64_t conns = 0, conns_total = 0, bad = 0;
    for (int i = 0; i < n->n_loops; i++) {
        struct edge_http_stats st;
        if (n->loops[i].http != NULL) {
            edge_http_server_stats(n->loops[i].http, &st);
            conns += st.connections_open;
            conns_total += st.connections_total;
            bad += st.bad_requests;
        }
    }
    struct edge_writer_stats ws;
    edge_writer_stats(n->writer, &ws);
    pthread_mutex_lock(&n->pool_mu);
    int txn_conns = n->n_txn - n->n_pool;
    pthread_mutex_unlock(&n->pool_mu);
    uint64_t crdt_ops = 0, crdt_merges = 0, crdt_conflicts = 0;
    edge_crdt_http_stats(&crdt_ops, &crdt_merges, &crdt_conflicts);
    edge_buf_printf(&b,
                    "# HELP edgelite_open_streams Hrana streams open (HTTP batons and WebSocket streams).\n"
                    "# TYPE edgelite_open_streams gauge\nedgelite_open_streams %lld\n"
                    "# HELP edgelite_connections Client connections open.\n"
                    "# TYPE edgelite_connections gauge\nedgelite_connections %llu\n"
                    "# TYPE edgelite_connections_total counter\nedgelite_connections_total %llu\n"
                    "# TYPE edgelite_http_bad_requests_total counter\nedgelite_http_bad_requests_total %llu\n"
                    "# TYPE edgelite_open_transactions gauge\nedgelite_open_transactions %d\n"
                    "# TYPE edgelite_statements_total counter\nedgelite_statements_total %llu\n"
                    "# TYPE edgelite_statement_errors_total counter\nedgelite_statement_errors_total %llu\n"
                    "# TYPE edgelite_rows_returned_total counter\nedgelite_rows_returned_total %llu\n"
                    "# TYPE edgelite_units_total counter\n"
                    "edgelite_units_total{route=\"read\"} %llu\nedgelite_units_total{route=\"write\"} %llu\n"
                    "edgelite_units_total{route=\"txn\"} %llu\n"
                    "# TYPE edgelite_writer_jobs_total counter\nedgelite_writer_jobs_total %llu\n"
                    "# TYPE edgelite_writer_groups_total counter\nedgelite_writer_groups_total %llu\n"
                    "# TYPE edgelite_writer_commit_failures_total counter\nedgelite_writer_commit_failures_total %llu\n"
                    "# TYPE edgelite_db_size_bytes gauge\nedgelite_db_size_bytes %llu\n"
                    "# TYPE edgelite_crdt_ops_total counter\nedgelite_crdt_ops_total %llu\n"
                    "# TYPE edgelite_crdt_merges_total counter\nedgelite_crdt_merges_total %llu\n"
                    "# TYPE edgelite_crdt_conflicts_total counter\nedgelite_crdt_conflicts_total %llu\n"
                    "# TYPE edgelite_uptime_seconds gauge\nedgelite_uptime_seconds %.3f\n",
                    (long long)http_streams + (long long)atomic_load(&n->m.ws_streams), (unsigned long long)conns,
                    (unsigned long long)conns_total, (unsigned long long)bad, txn_conns,
                    (unsigned long long)atomic_load(&n->m.stmts), (unsigned long long)atomic_load(&n->m.stmt_errors),
                    (unsigned long long)atomic_load(&n->m.rows), (unsigned long long)atomic_load(&n->m.routed[0]),
                    (unsigned long long)atomic_load(&n->m.routed[1]), (unsigned long long)atomic_load(&n->m.routed[2]),
                    (unsigned long long)ws.jobs, (unsigned long long)ws.groups,
                    (unsigned long long)ws.commit_failures, (unsigned long long)db_size(n),
                    (unsigned long long)crdt_ops, (unsigned long long)crdt_merges, (unsigned long long)crdt_conflicts,
                    (double)(mono_ms() - n->start_mono_ms) / 1000.0);
    if (n->cluster) metrics_peers(n, l->rconn, &b);
    respond(n, c, req, EP_METRICS, 200, "text/plain; version=0.0.4", NULL, b.data, b.len);
    edge_buf_free(&b);
}

static void handle_crdt(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req, const char *sub)
{
    struct edge_node *n = l->node;
    enum hrana_access access;
    const char *code = NULL;
    if (!check_http_auth(n, req, &access, &code)) {
        respond_error(n, c, req, EP_CRDT, 401, code, "Authentication failed");
        return;
    }
    if (access == HRANA_ACCESS_RO && req->method != HTTP_GET) {
        respond_error(n, c, req, EP_CRDT, 403, "AUTH_READ_ONLY", "writes are not allowed with a read-only token");
        return;
    }
    json_t *body = json_stringn(req->body.data ? req->body.data : "", req->body.len);
    if (body == NULL && req->body.len > 0) {
        respond_error(n, c, req, EP_CRDT, 400, "CRDT_BAD_REQUEST", "the body is not valid UTF-8");
        return;
    }
    struct unit *u = unit_new(l, c, body);
    if (u == NULL) {
        json_decref(body);
        respond_error(n, c, req, EP_CRDT, 503, "INTERNAL", "out of memory");
        return;
    }
    u->start_ns = req->start_ns;
    u->crdt_method = edge_strdup(http_method_str((enum http_method)req->method));
    u->crdt_path = edge_strdup(sub);
    if (u->crdt_method == NULL || u->crdt_path == NULL) {
        unit_free(u);
        respond_error(n, c, req, EP_CRDT, 503, "INTERNAL", "out of memory");
        return;
    }
    /* The handler works in a savepoint, so CRDT operations join the group commit. */
    u->wjob.run = writer_run;
    u->wjob.complete = writer_complete;
    if (edge_writer_submit(n->writer, &u->wjob) != EDGE_OK) {
        u->commit_status = EDGE_ECLOSED;
        unit_finish(u);
    }
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static void on_request(void *ud, struct edge_http_conn *c, struct edge_http_req *req)
{
    struct loop *l = ud;
    struct edge_node *n = l->node;
    const char *p = req->path;
    bool get = req->method == HTTP_GET || req->method == HTTP_HEAD;
    bool post = req->method == HTTP_POST;
    if (req->upgrade) {
        if (strcmp(p, "/v1/peer") == 0) {
            handle_peer_upgrade(l, c, req);
        } else {
            handle_ws_upgrade(l, c, req);
        }
        return;
    }
    if (post && (ends_with(p, "/v2/pipeline") || ends_with(p, "/v3/pipeline"))) {
        int version = ends_with(p, "/v3/pipeline") ? 3 : 2;
        if (!bookmark_gate(l, c, req, version)) {
            handle_pipeline(l, c, req, version);
        }
    } else if (get && strcmp(p, "/health") == 0) {
        respond(n, c, req, EP_HEALTH, 200, "text/plain", NULL, "", 0);
    } else if (get && strcmp(p, "/version") == 0) {
        char v[64];
        int len = snprintf(v, sizeof(v), "edgelite %s\n", EDGE_VERSION);
        respond(n, c, req, EP_HEALTH, 200, "text/plain", NULL, v, (size_t)len);
    } else if (get && (ends_with(p, "/v2") || ends_with(p, "/v3"))) {
        respond(n, c, req, EP_HEALTH, 200, "text/plain", NULL, "Hello, this is edgelite\n", 24);
    } else if (strstr(p, "/v3-protobuf") != NULL) {
        respond_error(n, c, req, EP_OTHER, 404, "NOT_FOUND", "protobuf encoding is not supported");
    } else if (get && strcmp(p, "/metrics") == 0) {
        handle_metrics(l, c, req);
    } else if (get && strcmp(p, "/v1/status") == 0) {
        handle_status(l, c, req);
    } else if (post && strcmp(p, "/v1/replicate") == 0) {
        handle_replicate(l, c, req);
    } else if (get && strcmp(p, "/v1/snapshot") == 0) {
        handle_snapshot(l, c, req);
    } else if (get && strcmp(p, "/v1/conflicts") == 0) {
        handle_conflicts(l, c, req);
    } else if (strcmp(p, "/v1/crdt") == 0 || strncmp(p, "/v1/crdt/", 9) == 0) {
        handle_crdt(l, c, req, p[8] == '/' ? p + 9 : "");
    } else if (get && strcmp(p, "/") == 0) {
        const char msg[] = "{\"service\":\"edgelite\",\"protocols\":[\"hrana2\",\"hrana3\"]}";
        respond(n, c, req, EP_OTHER, 200, "application/json", NULL, msg, sizeof(msg) - 1);
    } else {
        bool known = ends_with(p, "/pipeline") || strcmp(p, "/health") == 0 || strcmp(p, "/metrics") == 0 ||
                     strcmp(p, "/v1/status") == 0;
        if (known) {
            respond_error(n, c, req, EP_OTHER, 405, "METHOD_NOT_ALLOWED", "method not allowed for this path");
        } else {
            respond_error(n, c, req, EP_OTHER, 404, "NOT_FOUND", "no such endpoint");
        }
    }
}

/* ---------------------------------------------------------------------------------- */
/* Loops and lifecycle                                                                */
/* ---------------------------------------------------------------------------------- */

static void on_server_stopped(void *arg)
{
    struct loop *l = arg;
    l->http = NULL;
}

/* Stop accepting and close every connection. The inbox stays open until the writer
 * has drained (edge_node_stop), so late completions still find a live handle. */
static void on_stop(uv_async_t *a)
{
    struct loop *l = a->data;
    if (l->stopping) return;
    l->stopping = true;
    uv_close((uv_handle_t *)&l->stop_async, NULL);
    snap_end(&l->snap_check);
    uv_close((uv_handle_t *)&l->snap_check, NULL);
    if (l->idx == 0) {
        uv_close((uv_handle_t *)&l->sweep_timer, NULL);
        uv_close((uv_handle_t *)&l->compact_timer, NULL);
    }
    if (l->http != NULL) {
        edge_http_server_stop(l->http, on_server_stopped, l);
    }
}

static void loop_main(void *arg)
{
    struct loop *l = arg;
    uv_run(&l->loop, UV_RUN_DEFAULT);
}

static int loop_init(struct edge_node *n, struct loop *l, int idx)
{
    l->node = n;
    l->idx = idx;
    pthread_mutex_init(&l->inbox_mu, NULL);
    if (uv_loop_init(&l->loop) != 0) return EDGE_EIO;
    uv_async_init(&l->loop, &l->inbox_async, on_inbox);
    l->inbox_async.data = l;
    uv_async_init(&l->loop, &l->stop_async, on_stop);
    l->stop_async.data = l;
    uv_async_init(&l->loop, &l->wake_async, on_wake);
    l->wake_async.data = l;
    l->wake_ready = true;
    uv_check_init(&l->loop, &l->snap_check);
    l->snap_check.data = l;
    int rv = edge_store_open(n->db_path, EDGE_STORE_READ, n->cfg.synchronous_full, 5000, &l->rconn, l->errmsg,
                             sizeof(l->errmsg));
    if (rv != EDGE_OK) return rv;
    struct edge_http_limits lim = {
        .max_body_bytes = n->cfg.max_body_bytes,
        .max_header_bytes = 64 * 1024,
        .max_queued = 64,
        .idle_timeout_ms = n->cfg.idle_conn_timeout_ms,
        .request_timeout_ms = 30000,
        .max_ws_message = n->cfg.max_body_bytes,
    };
    struct edge_http_handler h = {l, on_request, on_ws_message, on_conn_close};
    int fd = -1;
    if (idx == 0) {
        fd = l->listen_fd;
    } else {
        rv = edge_http_listen_socket(n->cfg.host, n->port, &fd, NULL);
        if (rv != EDGE_OK) {
            snprintf(l->errmsg, sizeof(l->errmsg), "listen %s:%d: %s", n->cfg.host, n->port, edge_strerror(rv));
            return rv;
        }
    }
    rv = edge_http_server_start(&l->loop, fd, &lim, &h, &l->http);
    if (rv != EDGE_OK) {
        snprintf(l->errmsg, sizeof(l->errmsg), "cannot serve on %s:%d", n->cfg.host, n->port);
        return rv;
    }
    if (idx == 0) {
        uv_timer_init(&l->loop, &l->sweep_timer);
        l->sweep_timer.data = l;
        uint64_t every = n->cfg.stream_timeout_ms / 4;
        every = every < 50 ? 50 : every > 1000 ? 1000 : every;
        uv_timer_start(&l->sweep_timer, sweep, every, every);
        uv_timer_init(&l->loop, &l->compact_timer);
        l->compact_timer.data = l;
        uv_timer_start(&l->compact_timer, compact_tick, n->cfg.compact_interval_ms, n->cfg.compact_interval_ms);
    }
    return EDGE_OK;
}

static int mkdir_p(const char *dir)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s", dir);
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0755) != 0 && errno != EEXIST) return -1;
            *p = '/';
        }
    }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST) return -1;
    return 0;
}

static void node_free(struct edge_node *n)
{
    if (n == NULL) return;
    for (int i = 0; i < n->n_loops; i++) {
        struct loop *l = &n->loops[i];
        edge_store_close(l->rconn);
        uv_loop_close(&l->loop);
        pthread_mutex_destroy(&l->inbox_mu);
    }
    edge_free(n->loops);
    for (size_t i = 0; i < n->n_streams; i++) stream_free(n, n->streams[i]);
    edge_free(n->streams);
    edge_free(n->expired);
    for (int i = 0; i < n->n_pool; i++) txconn_close(n->pool[i]);
    edge_jwt_keys_free(n->keys);
    edge_vclock_close(&n->vv);
    pthread_mutex_destroy(&n->hlc_mu);
    pthread_rwlock_destroy(&n->peers_lock);
    pthread_mutex_destroy(&n->vv_mu);
    pthread_mutex_destroy(&n->streams_mu);
    pthread_mutex_destroy(&n->pool_mu);
    edge_free(n->data_dir);
    edge_free(n->region);
    edge_free(n->db_path);
    edge_free(n);
}

int edge_node_start(const struct edge_node_config *cfg, struct edge_node **out, char *errmsg, size_t errmsg_len)
{
    int rv = EDGE_ENOMEM;
    struct edge_node *n = edge_calloc(1, sizeof(*n));
    struct edge_store_conn *wconn = NULL;
    int listen_fd = -1;
    if (n == NULL) return EDGE_ENOMEM;
    n->cfg = *cfg;
    pthread_mutex_init(&n->streams_mu, NULL);
    pthread_mutex_init(&n->pool_mu, NULL);
    pthread_mutex_init(&n->hlc_mu, NULL);
    pthread_rwlock_init(&n->peers_lock, NULL);
    pthread_mutex_init(&n->vv_mu, NULL);
    edge_vclock_init(&n->vv);
    edge_hlc_init(&n->hlc, edge_clock_system());
    n->cluster = cfg->conf != NULL && cfg->conf->n_regions >= 2;
    n->default_consistency = cfg->conf != NULL ? (int)cfg->conf->consistency : 0;
    n->primary = cfg->region;
    if (cfg->conf != NULL && cfg->conf->n_regions > 0) {
        const struct edge_conf_region *best = &cfg->conf->regions[0];
        for (size_t i = 1; i < cfg->conf->n_regions; i++) {
            if (cfg->conf->regions[i].priority < best->priority) best = &cfg->conf->regions[i];
        }
        n->primary = best->id;
    }
    n->data_dir = edge_strdup(cfg->data_dir);
    n->region = edge_strdup(cfg->region);
    size_t plen = strlen(cfg->data_dir) + 32;
    n->db_path = edge_malloc(plen);
    if (n->data_dir == NULL || n->region == NULL || n->db_path == NULL) goto out;
    snprintf(n->db_path, plen, "%s/edgelite.db", cfg->data_dir);
    n->local = (struct edge_repl_local){n->region, &n->hlc, &n->hlc_mu};
    n->start_wall_ms = wall_ms();
    n->start_mono_ms = mono_ms();
    if (sodium_init() < 0) {
        snprintf(errmsg, errmsg_len, "libsodium failed to initialise");
        rv = EDGE_EINTERNAL;
        goto out;
    }
    randombytes_buf(n->baton_key, sizeof(n->baton_key));
    /* Transactions run on libuv's pool and may wait for SQLite's write lock there; with
     * fewer pool threads than transaction connections, the holder of the lock could
     * find no thread to COMMIT on. Must be set before the pool's first use. */
    char pool_size[16];
    snprintf(pool_size, sizeof(pool_size), "%d", MAX_TXN_CONNS + 16);
    setenv("UV_THREADPOOL_SIZE", pool_size, 0);
    if (cfg->jwt_key_file != NULL) {
        rv = edge_jwt_keys_load(cfg->jwt_key_file, &n->keys, errmsg, errmsg_len);
        if (rv != EDGE_OK) goto out;
    }
    if (mkdir_p(cfg->data_dir) != 0) {
        snprintf(errmsg, errmsg_len, "cannot create data directory %s: %s", cfg->data_dir, strerror(errno));
        rv = EDGE_EIO;
        goto out;
    }
    rv = edge_store_global_init(errmsg, errmsg_len);
    if (rv != EDGE_OK) goto out;
    behind_the_logs(n);
    seed_from_snapshot(n);
    rv = edge_store_open(n->db_path, EDGE_STORE_WRITE, cfg->synchronous_full, 5000, &wconn, errmsg, errmsg_len);
    if (rv != EDGE_OK) goto out;
    struct edge_writer_hooks hooks = {0};
    if (n->cluster) {
        rv = edge_repl_schema_init(edge_store_db(wconn), errmsg, errmsg_len);
        if (rv == EDGE_OK) rv = edge_repl_vv_load(edge_store_db(wconn), &n->vv);
        if (rv == EDGE_OK) rv = edge_capture_create(edge_store_db(wconn), &n->wcap);
        if (rv != EDGE_OK) goto out;
        hooks = (struct edge_writer_hooks){n, wh_mark, wh_rewind, wh_before_commit, wh_after_commit, wh_after_rollback,
                                           wh_before_close};
    }
    rv = edge_writer_start(wconn, 256, n->cluster ? &hooks : NULL, &n->writer);
    wconn = NULL;
    if (rv != EDGE_OK) {
        snprintf(errmsg, errmsg_len, "cannot start the writer thread");
        goto out;
    }
    rv = edge_http_listen_socket(cfg->host, cfg->port, &listen_fd, &n->port);
    if (rv != EDGE_OK) {
        snprintf(errmsg, errmsg_len, "cannot listen on %s:%d: %s", cfg->host, cfg->port,
                 rv == EDGE_EBUSY ? "address already in use" : edge_strerror(rv));
        goto out;
    }
    int threads = cfg->threads > 0 ? cfg->threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (threads < 1) threads = 1;
    if (threads > 64) threads = 64;
    n->loops = edge_calloc((size_t)threads, sizeof(*n->loops));
    if (n->loops == NULL) {
        rv = EDGE_ENOMEM;
        goto out;
    }
    for (int i = 0; i < threads; i++) {
        n->n_loops = i + 1;
        if (i == 0) {
            n->loops[0].listen_fd = listen_fd;
            listen_fd = -1; /* owned by loop 0's server now */
        }
        rv = loop_init(n, &n->loops[i], i);
        if (rv != EDGE_OK) {
            snprintf(errmsg, errmsg_len, "%s", n->loops[i].errmsg);
            /* Close what was started so far without running threads. */
            for (int j = 0; j <= i; j++) {
                struct loop *l = &n->loops[j];
                if (l->http) edge_http_server_stop(l->http, on_server_stopped, l);
                if (j == 0 && l->sweep_timer.data != NULL) uv_close((uv_handle_t *)&l->sweep_timer, NULL);
                if (j == 0 && l->compact_timer.data != NULL) uv_close((uv_handle_t *)&l->compact_timer, NULL);
                uv_close((uv_handle_t *)&l->inbox_async, NULL);
                uv_close((uv_handle_t *)&l->stop_async, NULL);
                if (l->snap_check.data != NULL) uv_close((uv_handle_t *)&l->snap_check, NULL);
                if (l->wake_ready) uv_close((uv_handle_t *)&l->wake_async, NULL);
                l->wake_ready = false;
                uv_run(&l->loop, UV_RUN_DEFAULT);
            }
            goto out;
        }
    }
    for (int i = 0; i < threads; i++) {
        uv_thread_create(&n->loops[i].thread, loop_main, &n->loops[i]);
    }
    if (n->cluster) {
        rv = peers_start(n, errmsg, errmsg_len);
        if (rv != EDGE_OK) {
            struct edge_node *tmp = n;
            n = NULL;
            edge_node_stop(tmp);
            goto out;
        }
    }
    EDGE_LOG(EDGE_LOG_INFO, EDGE_MOD_API, "node: region=%s listening on %s:%d, %d loop threads, data %s",
             n->region, cfg->host, n->port, threads, n->db_path);
    *out = n;
    n = NULL;
    rv = EDGE_OK;
out:
    if (listen_fd >= 0) close(listen_fd);
    if (wconn != NULL && n != NULL) {
        edge_capture_destroy(n->wcap);
        n->wcap = NULL;
    }
    edge_store_close(wconn);
    if (n != NULL) {
        edge_writer_stop(n->writer);
        node_free(n);
    }
    return rv;
}

void edge_node_stop(struct edge_node *n)
{
    for (int i = 0; i < n->n_loops; i++) {
        uv_async_send(&n->loops[i].stop_async);
    }
    peers_stop(n);
    /* Queued writes finish and are delivered to the (still running) loops, whose
     * connections are gone by now; then the loops may end. */
    edge_writer_stop(n->writer);
    n->writer = NULL;
    for (int i = 0; i < n->n_loops; i++) {
        struct loop *l = &n->loops[i];
        pthread_mutex_lock(&l->inbox_mu);
        l->final = true;
        pthread_mutex_unlock(&l->inbox_mu);
        uv_async_send(&l->inbox_async);
    }
    for (int i = 0; i < n->n_loops; i++) {
        uv_thread_join(&n->loops[i].thread);
    }
    node_free(n);
}
