/* SPDX-License-Identifier: MIT */
/* Internals of the node shared by the files of src/api: the layout of the node, its
 * loops, its Hrana streams and sessions and its units of work, and the functions one
 * file offers the others. Not a public interface (node.h is).
 *
 * DESIGN
 * Threads. N loop threads accept on one listening socket (each its own dup). A unit of Hrana work (an
 * HTTP pipeline, or one WebSocket request) is classified with SQLite itself
 * (sqlite3_stmt_readonly on the loop's read connection) and then runs where it must:
 *  - only reads: inline on the loop that received it, on that loop's read connection;
 *  - autocommit writes: on the writer thread, grouped with other writes into one
 *    transaction (a SAVEPOINT each), answered only after the group commits;
 *  - transaction control (BEGIN...) or a stream inside a transaction: on a dedicated
 *    connection from a pool, run on libuv's thread pool so a busy write lock never
 *    blocks a loop. The stream keeps that connection until it is back in autocommit.
 * Results travel back to the loop that owns the client connection (its inbox plus
 * uv_async_send, or uv_queue_work's after-callback); the loops share no mutable state
 * except the stream table and the connection pool, each behind its own mutex, and the
 * replication state (repl/state.h).
 *
 * Streams (HTTP). A stream is its stored SQL plus, inside a transaction, its
 * connection. The baton is base64url(id, seq, HMAC-SHA256(key, id|seq)[0..16]) with a
 * key drawn at start, so batons cannot be forged; seq advances on every use, so an old
 * baton is refused (as sqld's BatonReused). Idle streams expire after
 * stream_timeout_ms, rolling back; their ids are remembered for 5 minutes to answer
 * STREAM_EXPIRED. A pipeline that opens a stream and closes it in the same request
 * (what @libsql/client's execute() sends) never touches the table. */
#ifndef EDGE_API_NODE_INT_H
#define EDGE_API_NODE_INT_H

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "api/hrana.h"
#include "api/node.h"
#include "core/clock.h"
#include "core/err.h"
#include "core/jwt.h"
#include "core/task.h"
#include "net/http.h"
#include "repl/state.h"
#include "router/router.h"
#include "store/store.h"
#include "store/ckpt.h"
#include "store/writer.h"

struct edge_peer_status;

#define MAX_TXN_CONNS 64
/* Keep-alive connections from one loop to the primary for forwarded strong writes;
 * more forwards queue on the loop (hrana/forward.c). */
#define EDGE_API_FORWARD_CONNS 32
/* Regions a loop may send requests on to (forwarded writes and routed reads). */
#define EDGE_API_MAX_REGIONS 33
/* A vector bookmark of every region: 33 x (64-byte name, ':', 20 digits, ','). */
#define EDGE_API_BOOKMARK_MAX 3072
#define EXPIRED_KEEP_MS (300u * 1000u)

/* How a pipeline unit is answered: Hrana JSON, /v1/replicate's form, the lines of
 * POST /v3/cursor, Hrana protobuf, or the length-delimited messages of
 * POST /v3-protobuf/cursor. */
/* PIPE_EVENTS: POST /v1/events (events.c): the body is the final answer, forwarded to the
 * primary and parked for a majority like a strong pipeline. */
enum pipe_mode { PIPE_HRANA = 0, PIPE_REPLICATE = 1, PIPE_CURSOR = 2, PIPE_PROTOBUF = 3, PIPE_PB_CURSOR = 4, PIPE_EVENTS = 5 };
/* The "version" of a /v3-protobuf/pipeline route: Hrana 3 with a protobuf body, so a
 * request parked for its bookmark is decoded as one (edge__api_pipeline_handle). */
#define PIPE_V3_PROTOBUF 0x103

enum endpoint { EP_PIPELINE, EP_WS, EP_HEALTH, EP_METRICS, EP_STATUS, EP_CRDT, EP_REPLICATE, EP_OTHER, EP_SESSIONS, EP__COUNT };

#define HIST_N 16

struct metrics {
    _Atomic uint64_t requests[EP__COUNT];
    _Atomic uint64_t errors[EP__COUNT];
    _Atomic uint64_t hist[EP__COUNT][HIST_N + 1];
    _Atomic uint64_t hist_sum_us[EP__COUNT];
    _Atomic uint64_t stmts, stmt_errors, rows;
    _Atomic int64_t ws_streams;
    _Atomic uint64_t routed[3];
    _Atomic uint64_t routed_away; /* reads the router sent to another region (bookmark, strong) */
    _Atomic uint64_t conns_handed_off; /* connections a loop accepted and gave to a less loaded one (node.c) */
    _Atomic uint64_t read_index;  /* strong reads that asked the primary for its commit point */
    _Atomic int64_t forwarding; /* strong writes sent on to the primary, not yet answered (hrana/forward.c) */
    _Atomic int64_t waiting[3]; /* parked requests: [0] bookmark reads, [1] strong writes, [2] CRDT syncs (hrana/wait.c) */
    _Atomic uint64_t writer_busy_logged_ms; /* last "writer queue full" log line (hrana/unit.c), 0 = never */
    _Atomic uint64_t writer_busy_unlogged;  /* refusals since that line */
};

/* A dedicated connection for an interactive transaction, with its change capture
 * when the node replicates. */
struct txconn {
    struct edge_store_conn *conn;
    struct edge_capture *cap;  /* NULL on a single node */
    struct edge_feed_mark mark; /* what its COMMIT in progress marked (repl/feed.h) */
    /* The version vector of the open transaction's snapshot, read once it has one: the
     * bookmark of reads inside it (hrana/unit.c). "" until then; bm_over: the transaction
     * ended, the next one reads its own. Only the thread running its unit touches it. */
    char bm[EDGE_API_BOOKMARK_MAX];
    bool bm_over;
};

struct stream {
    uint64_t id;
    uint64_t seq;
    struct hrana_sqlmap sqls;
    struct txconn *txn; /* while inside a transaction */
    bool readonly_txn;
    bool txn_strong;    /* the open transaction wrote a strong table: its COMMIT waits for a majority */
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
struct edge_httpca;
struct edge__sess;      /* sessions_http.c: the node's sessions state */
struct edge__sess_loop; /* sessions_http.c: a loop's touches, reports and links to homes */

/* The server nonces handed out by GET /v1/cluster/challenge (api/cluster_auth.c): each
 * opens one request, within CLUSTER_NONCE_TTL_MS; at most CLUSTER_NONCES_MAX wait at
 * once (a new one takes the place of the oldest). Guarded by mu (any loop). */
#define CLUSTER_NONCES_MAX 64
#define CLUSTER_NONCE_TTL_MS 10000
struct cluster_nonce {
    uint8_t nonce[32];
    uint64_t expires_ms; /* monotonic; 0: free slot */
};
struct cluster_nonces {
    pthread_mutex_t mu;
    struct cluster_nonce slot[CLUSTER_NONCES_MAX];
    uint64_t issued, accepted, refused, evicted; /* counters for /metrics */
};

/* The nonces of signed requests from other regions (api/cluster_sig.c, X-Edge-Cluster-Sig),
 * each kept for a while after it arrived (CLUSTER_SIG_KEEP_MS): at most max
 * (cluster.sig_replay_max, default and largest EDGE_CONF_SIG_REPLAY_MAX), the oldest dropped
 * first. Dropping one raises its region's floor to its ts, and a ts at or below the floor is
 * refused, so a dropped nonce can never be replayed. Allocated on the first signed request;
 * guarded by mu (any loop). */
struct cluster_sig_seen {
    uint8_t nonce[16]; /* the first half of the caller's 32 random bytes */
    int64_t ts_ms;     /* the caller's clock */
    uint64_t seen_ms;  /* ours (monotonic), when it arrived */
    int32_t next;      /* in its bucket's chain, -1 at the end */
    int32_t region;    /* index in the configuration */
};
struct cluster_sigs {
    pthread_mutex_t mu;
    struct cluster_sig_seen *ring; /* max entries, oldest at head */
    int32_t *bucket;               /* bucket_mask + 1 chain heads, -1 empty */
    uint32_t max;                  /* the bound, from the configuration at start */
    uint32_t bucket_mask;          /* the least power of two >= max, minus 1 */
    uint32_t head, count;
    int64_t floor_ms[EDGE_API_MAX_REGIONS];
    uint64_t accepted, refused, replayed, evicted; /* counters for /metrics */
};

struct edge_node {
    struct edge_node_config cfg;
    int lock_fd; /* data_dir/LOCK, flock'ed for the node's lifetime; -1 if none */
    int listen_keep; /* a duplicate of the listening socket, for edge_node_listener_dup; -1 if none */
    /* Behind the compacted logs while running (seeding.c): every route but /health and
     * /version answers 503 SEEDING; the embedder restarts the node with cfg.reseed. */
    _Atomic bool seeding;
    _Atomic bool behind_checking; /* a check of the peers' logs is on the pool (loop 0) */
    uint64_t behind_at_ms;        /* when the last one began (mono_ms, loop 0) */
    uv_work_t behind_work;
    char *data_dir;
    char *region;
    char *db_path;
    int port;
    struct edge_writer *writer;
    struct edge_ckpt *ckpt; /* the writer connection's WAL checkpoints (store/ckpt.h) */
    int writer_queue;    /* limits.writer_queue in force */
    int ws_output_bytes; /* limits.ws_output_bytes in force */
    struct edge_jwt_keys *keys;
    struct edge_tls_ctx *tls; /* --tls-cert/--tls-key: every loop serves TLS; NULL = plain */
    bool tls_peers_verified;  /* TLS and cluster.ca_file: inbound peer links need a client certificate of the CA */
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
    int n_pool; /* idle connections in pool[] */
    int n_txn;  /* connections open in total */

    struct edge_repl_state repl; /* VV, HLC, capture, peers (repl/state.h) */
    struct edge__sess *sess;     /* /v1/sessions (sessions_http.c) */
    struct edge_router_stats *stats; /* statement statistics (router/router.h); NULL if they could not be made */
    struct edge_router_cache *cache; /* the hot-read cache (router.cache); NULL when off */
    int64_t cache_w_changes, cache_w_schema; /* single node, writer thread: at the last group commit */
    int bookmark_wait_ms;            /* router.bookmark_wait_ms: then a covering region is looked for */
    struct edge_rt *rt;          /* the real-time engine (realtime/rt.h, api/realtime.c) */
    struct cluster_nonces cnonces; /* challenges of /v1/cluster/challenge awaiting their request */
    struct cluster_sigs csigs;     /* nonces of signed requests from other regions */
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
    uv_async_t drain_async;   /* edge_node_drain: stop accepting, let requests finish */
    uv_timer_t drain_timer;   /* while draining: close what has become idle */
    _Atomic bool draining;    /* read by the other loops' place_conn */
    _Atomic long busy_conns;  /* while draining: connections still busy; -1 until the first count */
    uv_timer_t sweep_timer;   /* loop 0 only */
    uv_timer_t compact_timer; /* loop 0 only */
    uv_timer_t tomb_timer;    /* loop 0 only: tombstone collection (repl/tomb.h) */
    struct edge__api_waits *waits; /* requests parked until an event (hrana/wait.c) */
    struct edge__sess_loop *sess;  /* sessions_http.c */
    struct edge_httpca *fwd[EDGE_API_MAX_REGIONS]; /* connections to each region by config index (hrana/forward.c),
                                                    * opened on first use */
    const struct edge_http_req *bm_expired; /* a request whose bookmark wait just ended (hrana/wait.c -> http.c) */
    const struct edge_http_req *ri_req;     /* a strong read whose read index just came back (router_http.c) */
    uint64_t ri_seq;                        /* the primary's commit point it got */
    bool ri_known;                          /* false: the primary did not answer */
    struct edge_httpca *bcast[EDGE_REPL_MAX_PEERS]; /* broadcast relay to each other region (events.c) */
    uv_check_t snap_check;    /* ends the shared read snapshot after each loop iteration */
    bool snap_open;
    uint64_t snap_version;
    /* The version vector of the shared read snapshot ("origin:seq,..."), read inside it:
     * a read's answer carries it as X-Edge-Bookmark (hrana/unit.c). "" when unknown. */
    char snap_bm[EDGE_API_BOOKMARK_MAX];
    struct edge_http_server *http;
    _Atomic long n_conns;  /* the connections its server holds (net/http keeps it) */
    _Atomic long n_coming; /* handed to it by another loop, not yet adopted */
    struct edge_store_conn *rconn;
    int listen_fd;
    pthread_mutex_t inbox_mu;
    struct edge_task *inbox; /* newest first */
    bool stopping;
    bool final; /* set by edge_node_stop once the writer has drained */
    int ready;  /* 1 ok, -1 failed */
    char errmsg[EDGE_ERRMSG_SIZE];
};

/* The Hrana session of one WebSocket connection. */
struct ws_stream {
    int32_t id;
    struct txconn *txn;
    bool readonly_txn;
    bool txn_strong; /* as struct stream */
};

struct ws_msg {
    json_t *msg;
    struct ws_msg *next;
};

/* A cursor of a WebSocket session (hrana/ws_cursor.c): its batch has run, its entries
 * wait to be fetched. A cursor whose open_cursor failed stays (with that error) until
 * close_cursor, as the spec asks. */
struct ws_cursor {
    int32_t id;
    int32_t stream_id;
    struct edge_buf buf;                 /* the entries, one per line */
    struct hrana_cursor_json entries;    /* where each entry ends in buf */
    size_t pos;                          /* the next entry to fetch */
    bool failed;
    char err_msg[256];
    const char *err_code;
};

struct ws_session {
    struct loop *loop;
    struct edge_http_conn *conn;
    int version;
    bool authed;
    enum hrana_access access;
    struct hrana_sqlmap sqls;
    struct ws_stream *streams;
    size_t n_streams;
    struct ws_cursor **cursors;
    size_t n_cursors;
    struct ws_msg *q_head, *q_tail;
    size_t q_len;
    bool busy;
    bool closed;
    int refs;
};

struct unit {
    struct edge_writer_job wjob;
    struct edge_task task; /* back to the loop after the writer */
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
    int mode; /* enum pipe_mode: how the answer is written */
    /* WS */
    struct ws_session *ws;
    struct ws_stream *wss;
    int64_t request_id;
    struct ws_cursor *wcursor; /* open_cursor: where its entries go */
    /* Cursors (HTTP or WS): the entries of the batch, kept in out or in wcursor->buf */
    struct hrana_cursor_json *cursor;
    struct hrana_cursor_json http_cursor;
    /* CRDT (writer job) */
    char *crdt_method, *crdt_path;
    int crdt_status;
    /* The hot-read cache: this read fills it (key, and the generations before its snapshot) */
    char *cache_key;
    size_t cache_klen;
    struct edge_router_cache_gens cache_gens;
};

/* The node's time comes from core/clock (one place to inject a clock). */
static inline uint64_t mono_ms(void)
{
    return edge_clock_mono_ms(edge_clock_system());
}

static inline uint64_t wall_ms(void)
{
    const struct edge_clock *c = edge_clock_system();
    return c->wall_ms(c->ud);
}

/* node.c: loops */
void edge__api_loop_post(struct loop *l, struct edge_task *t); /* any thread */
void edge__api_wake(void *node);                                /* any thread: re-check waiters */
/* A pool of this loop's connections to another region's URL (net/httpc_async.h), speaking
 * TLS to an https:// URL (verified against cluster.ca_file). EDGE_OK, or EDGE_EINVAL for
 * a URL the pool cannot reach (not numeric). Loop thread. */
int edge__api_peer_pool(struct loop *l, const char *url, int max_conns, uint64_t idle_ms, struct edge_httpca **out);

/* routes.c */
void edge__api_on_request(void *ud, struct edge_http_conn *c, struct edge_http_req *req);

/* metrics.c */
void edge__api_observe(struct edge_node *n, enum endpoint ep, uint64_t start_ns, bool error);
void edge__api_respond(struct edge_node *n, struct edge_http_conn *c, struct edge_http_req *req, enum endpoint ep,
                      int status, const char *ctype, const char *extra, const void *body, size_t len);
void edge__api_respond_error(struct edge_node *n, struct edge_http_conn *c, struct edge_http_req *req,
                            enum endpoint ep, int status, const char *code, const char *msg);
void edge__api_metrics_handle(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req);

/* status.c */
uint64_t edge__api_db_size(struct edge_node *n);
/* The status of the peer link to region into *out (region ids are unique), its acked VV
 * already closed (not for the caller to read). Takes peers_lock for reading. false, *out
 * zeroed, when no link goes to region. Any thread. */
bool edge__api_peer_link_status(struct edge_node *n, const char *region, struct edge_peer_status *out);
void edge__api_status_handle(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req);
void edge__api_conflicts_handle(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req);

/* apply_errors.c: GET /v1/apply-errors, POST /v1/apply-errors/retry */
void edge__api_apply_errors_handle(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req);
void edge__api_apply_errors_retry(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req);
void edge__api_snapshot_handle(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req);

/* seeding.c: answer a request of a region being seeded (503 SEEDING; false for /version,
 * which the caller answers); the server that answers so while the node has no database
 * yet, on fd (taken over; a duplicate of the node's socket). */
bool edge__api_seeding_answer(struct edge_http_conn *c, const struct edge_http_req *req);
struct edge__api_seeding;
int edge__api_seeding_start(int fd, uint64_t idle_ms, struct edge_tls_ctx *tls, struct edge__api_seeding **out);
void edge__api_seeding_stop(struct edge__api_seeding *s);
void edge__api_peer_upgrade(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req);

/* realtime.c: the real-time engine's glue */
struct edge_rt;
int edge__api_realtime_start(struct edge_node *n, int n_loops);
void edge__api_realtime_upgrade(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req);
void edge__api_realtime_sse(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req);
void edge__api_realtime_status(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req);
void edge__api_realtime_metrics(struct edge_node *n, struct edge_buf *b);
void edge__api_broadcast_publish(void *ud, int loop, const char *channel, const char *payload_json, size_t len);
/* events.c: POST /v1/events, POST /v1/broadcast/{channel}, the relay between regions */
void edge__api_events_handle(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req);
void edge__api_broadcast_handle(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req,
                               const char *channel, bool relayed);
void edge__api_broadcast_relay(struct edge_node *n, int loop, const char *channel, const char *payload_json,
                               size_t len);

/* auth.c: true with the access level, or false with an error code */
bool edge__api_auth_token(struct edge_node *n, const char *tok, size_t len, enum hrana_access *access,
                         const char **code);
bool edge__api_auth_http(struct edge_node *n, struct edge_http_req *req, enum hrana_access *access,
                        const char **code);
/* cluster_sig.c: true when the request carries a valid X-Edge-Cluster-Sig of another region
 * for its method, path, query and body, within the clock window and never seen before (its
 * nonce is then remembered). Else false with a reason for the 401 body. */
bool edge__api_auth_cluster_signed(struct edge_node *n, struct edge_http_req *req, const char **why);
void edge__api_cluster_sigs_init(struct edge_node *n);
void edge__api_cluster_sigs_close(struct edge_node *n);
void edge__api_cluster_sigs_metrics(struct edge_node *n, struct edge_buf *b);
/* GET /v1/cluster/challenge?cnonce=HEX: a single-use nonce and the node's proof
 * (repl/proto.h, "HTTP requests between regions"). */
void edge__api_cluster_challenge(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req);
/* true when the request carries a valid X-Edge-Cluster-Auth for its method and path; the
 * nonce it names is used up either way. Else false with a reason for the 401 body. */
bool edge__api_auth_cluster_request(struct edge_node *n, struct edge_http_req *req, const char **why);
void edge__api_cluster_nonces_init(struct edge_node *n);
void edge__api_cluster_nonces_close(struct edge_node *n);
/* The edgelite_cluster_auth_* metrics (challenges, accepted, refused, evicted) into b. */
void edge__api_cluster_nonces_metrics(struct edge_node *n, struct edge_buf *b);
/* The name of a request method as the MACs of X-Edge-Cluster-Auth and X-Edge-Cluster-Sig
 * cover it: "GET", "HEAD", "POST", else "OTHER". */
const char *edge__api_cluster_method(int m);

/* routes.c: row i of the route table, by name (for unit/test_api_routes); false past the end */
struct edge__api_route_info {
    const char *method, *match, *path, *auth;
};
bool edge__api_route_describe(size_t i, struct edge__api_route_info *out);

/* replicate.c, crdt_route.c: called by the route table once the token is checked */
void edge__api_replicate_handle(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req,
                               enum hrana_access access);
void edge__api_crdt_handle(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req, const char *sub);

/* sessions_http.c: /v1/sessions. open runs before the writer starts (it creates the
 * table on the writer's connection); loop_init/stop/free follow the loop's life. */
int edge__api_sessions_open(struct edge_node *n, sqlite3 *wdb, char *errmsg, size_t errmsg_len);
void edge__api_sessions_free(struct edge_node *n);
/* Before the writer stops (edge_node_stop): no sessions job is submitted after it returns. */
void edge__api_sessions_quiesce(struct edge_node *n);
int edge__api_sessions_loop_init(struct loop *l);
void edge__api_sessions_loop_stop(struct loop *l);
/* Queue the session writes the loop has gathered in this iteration (sessions_own.c): at
 * its end, and before work that may take a while (a Hrana request). At stop, or once the
 * writer is gone, they are answered 503. On l's thread. */
void edge__api_sessions_flush(struct loop *l);
void edge__api_sessions_loop_free(struct loop *l);
/* rest: the id after "/v1/sessions/", or NULL for "/v1/sessions" itself */
void edge__api_sessions_handle(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req, const char *rest);
void edge__api_sessions_stats_handle(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req);
void edge__api_sessions_access_handle(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req);
void edge__api_sessions_metrics(struct loop *l, struct edge_buf *b);

/* hrana/stream.c: the transaction pool, HTTP streams and batons */
void edge__api_txconn_close(struct txconn *t);
int edge__api_pool_acquire(struct edge_node *n, struct txconn **out);
void edge__api_pool_release(struct edge_node *n, struct txconn *t, bool readonly_txn);
void edge__api_stream_free(struct edge_node *n, struct stream *s);
struct stream *edge__api_stream_checkout(struct edge_node *n, const char *baton, size_t len, const char **code,
                                        const char **msg);
int edge__api_stream_checkin(struct edge_node *n, struct stream *s, struct edge_buf *out);
void edge__api_stream_discard(struct edge_node *n, struct stream *s);
void edge__api_stream_sweep(uv_timer_t *t);

/* hrana/unit.c: units of work */
struct unit *edge__api_unit_new(struct loop *l, struct edge_http_conn *c, json_t *body);
void edge__api_unit_free(struct unit *u);
void edge__api_unit_dispatch(struct unit *u);
void edge__api_unit_finish(struct unit *u);
/* A client write refused by limits.writer_queue: a rate-limited log line (hrana/unit.c). */
void edge__api_writer_busy_log(struct edge_node *n);
int edge__api_unit_writer_run(struct edge_writer_job *job, struct edge_store_conn *conn);
int edge__api_unit_crdt_run_batch(struct edge_writer_job *first, int n, struct edge_store_conn *conn);
void edge__api_unit_writer_complete(struct edge_writer_job *job, int status);
void edge__api_unit_repl_setup(struct unit *u, int consistency);
/* The level a unit writes at: the request header, else the strongest level of the
 * tables it writes, else the node's default. */
int edge__api_unit_consistency(struct edge_node *n, struct edge_http_req *req, const struct hrana_tables *t);
void edge__api_unit_count(struct edge_node *n, struct unit *u);
void edge__api_unit_settle(struct edge_node *n, struct txconn **slot, bool *readonly_txn, bool ro_now, bool closing);
/* The bookmark of a unit's answer (docs/realtime.md): a write's REGION:SEQ, else the
 * version vector of the snapshot its reads ran on (the loop's, or its transaction's,
 * copied into buf). NULL when there is none (a single node). Before the unit settles. */
const char *edge__api_unit_bookmark(struct unit *u, char *buf, size_t cap);
const char *edge__api_status_code(int st);
/* Loop thread: open (or renew) the loop's shared read snapshot on l->rconn, as reads do. */
void edge__api_read_snapshot(struct loop *l);
void edge__api_snap_end(uv_check_t *h);
/* Where a write classified as route/consistency/ddl goes in a cluster: here, forwarded
 * to the primary (only when can_forward), or refused with *code and *msg. */
enum strong_route { STRONG_LOCAL, STRONG_FORWARD, STRONG_REFUSE };
enum strong_route edge__api_strong_route(struct edge_node *n, enum hrana_route route, int consistency, bool ddl,
                                        bool can_forward, bool forwarded, bool ws, const char **code,
                                        const char **msg);

/* hrana/http.c: POST /v2/pipeline, /v3/pipeline */
void edge__api_pipeline_handle(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req, int version,
                              enum hrana_access access);
void edge__api_pipeline_run(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req, json_t *body,
                           int version, enum hrana_access access, int mode);
void edge__api_pipeline_finish(struct unit *u);
void edge__api_pipeline_answer(struct edge_node *n, struct edge_http_conn *c, int mode, const char *origin,
                              uint64_t seq, const char *body, size_t len, uint64_t start_ns);
/* The same with the bookmark as text: "REGION:SEQ" of a write, or a read's vector (NULL: none). */
void edge__api_pipeline_answer_bm(struct edge_node *n, struct edge_http_conn *c, int mode, const char *bookmark,
                                  const char *body, size_t len, uint64_t start_ns);

/* hrana/http.c: POST /v3/cursor */
void edge__api_cursor_handle(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req,
                            enum hrana_access access);

/* hrana/ws_cursor.c: cursors of a WebSocket session (Hrana 3). open registers the cursor
 * (or answers an error and returns NULL); fetch and close answer at once. */
struct ws_cursor *edge__api_ws_cursor_open(struct ws_session *s, json_t *req, int64_t request_id);
void edge__api_ws_cursor_fetch(struct ws_session *s, json_t *req, int64_t request_id);
void edge__api_ws_cursor_close(struct ws_session *s, int32_t cursor_id);
/* Closing a stream closes its cursors; closing the session closes them all. */
void edge__api_ws_cursors_of_stream(struct ws_session *s, int32_t stream_id);
void edge__api_ws_cursors_free(struct ws_session *s);
/* After an open_cursor unit: a failed one keeps its error for fetch_cursor. */
void edge__api_ws_cursor_failed(struct ws_cursor *c, const char *message, const char *code);

/* hrana/pb_http.c: POST /v3-protobuf/pipeline and /v3-protobuf/cursor, and their answers re-encoded */
void edge__api_pb_pipeline_handle(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req,
                                  enum hrana_access access);
void edge__api_pb_pipeline_answer(struct edge_node *n, struct edge_http_conn *c, const char *extra, const char *body,
                                  size_t len, uint64_t start_ns);
void edge__api_pb_cursor_handle(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req,
                                enum hrana_access access);
void edge__api_pb_cursor_answer(struct edge_node *n, struct edge_http_conn *c, const char *extra, const char *body,
                                size_t len, uint64_t start_ns);

/* hrana/forward.c: a strong write or schema change sent on to the primary */
void edge__api_forward(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req, json_t *body, int mode,
                      bool strong);
/* The same to any region of the configuration; read: a routed read (keeps its bookmark,
 * REGION_UNREACHABLE when the region cannot be reached). */
void edge__api_forward_to(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req, json_t *body,
                          int mode, bool strong, const char *region, bool read);

/* hrana/wait.c: bookmarks and majorities. A bookmark is "REGION:SEQ". Per loop: init
 * with the loop, wake when the replication state moved (on_wake), stop with the loop
 * (drops every waiter unanswered). */
struct edge__api_waits;
int edge__api_wait_init(struct loop *l);
void edge__api_wait_wake(struct loop *l);
void edge__api_wait_stop(struct loop *l);
bool edge__api_bookmark_parse(const char *bm, char origin[EDGE_VCLOCK_REGION_MAX + 1], uint64_t *seq);
bool edge__api_wait_bookmark(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req, int version,
                            enum hrana_access access);
void edge__api_wait_majority(struct loop *l, struct edge_http_conn *c, uint64_t seq, struct edge_buf *resp, int mode,
                            uint64_t start_ns);
bool edge__api_wait_majority_ws(struct unit *u, struct ws_session *s, uint64_t seq);
/* POST /v1/crdt/sync: answer once every peer whose link is up acknowledged this
 * region's entry seq (edge_repl_reachable_seq), or 504 after timeout_ms. */
void edge__api_wait_reachable(struct loop *l, struct edge_http_conn *c, uint64_t seq, uint64_t timeout_ms,
                              uint64_t start_ns);
/* The answer of a sync that is satisfied: {"bookmark","seq","acked":[..],"unreachable":[..]}. */
void edge__api_crdt_sync_answer(struct edge_node *n, struct edge_http_conn *c, uint64_t seq, uint64_t start_ns);
/* After router.bookmark_wait_ms found no region to send it to: wait on until the bookmark
 * timeout counted from the request's arrival (504 then). */
void edge__api_wait_bookmark_rest(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req, int version,
                                  enum hrana_access access);

/* router_http.c: the query router in the node (router/router.h) */
struct edge_router_input;
struct edge_router_peer;
/* The other regions as this node knows them (link state): up, RTT, acknowledged VV;
 * vvs[] holds the VVs (close each of the first *n). Also the primary's commit point. */
int edge__api_router_peers(struct edge_node *n, struct edge_router_peer *out, struct edge_vclock *vvs, int max,
                           uint64_t *primary_commit, bool *primary_known);
/* What the planner needs of a unit besides the node's state. */
struct edge__api_plan_req {
    enum edge_router_kind kind;
    bool ddl, in_txn, nondeterministic, unknown;
    int consistency;
    const char *bookmark; /* X-Edge-Bookmark or NULL */
    bool waited, can_forward, forwarded;
    /* a strong read's read index: the primary's commit point asked at the time of the request */
    bool ri_done, ri_known;
    uint64_t ri_seq;
    bool read_index; /* explain: say that a strong read asks the primary first */
};
void edge__api_plan(struct edge_node *n, const struct edge__api_plan_req *pr, struct edge_router_plan *out);
/* A strong read on a replica: ask the primary for its commit point now (GET /v1/router/point),
 * then handle the request again with it (l->ri_req). */
void edge__api_read_index(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req, int version,
                          enum hrana_access access);
void edge__api_point_handle(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req);
struct edge_httpca *edge__api_region_pool(struct loop *l, const char *region);
void edge__api_route_explain(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req);
void edge__api_stats_handle(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req);
void edge__api_stats_reset(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req);
void edge__api_stats_metrics(struct edge_node *n, struct edge_buf *b);
/* The hot-read cache: the key of a one-statement read (its version, SQL and arguments);
 * a pipeline answered from the cache (true), or marked to fill it; the fill kept. */
int edge__api_cache_key(json_t *stmt, int version, struct edge_buf *out);
bool edge__api_cache_try(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req, json_t *requests,
                         size_t nreq, int version, int mode, char **fill_key, size_t *fill_klen,
                         struct edge_router_cache_gens *fill_gens);
void edge__api_cache_fill(struct unit *u);
int edge__api_cache_open(struct edge_node *n);
/* A single node with a cache: the writer hooks of its commit guard (false: none needed). */
bool edge__api_cache_writer_hooks(struct edge_node *n, struct edge_writer_hooks *hooks);
void edge__api_cache_close(struct edge_node *n);
/* hrana_ctx.on_stmt for this node's statistics */
void edge__api_stats_stmt(void *ud, const char *sql, size_t len, uint64_t ns, uint64_t rows, bool error);

/* hrana/ws.c: WebSocket sessions */
void edge__api_ws_upgrade(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req);
void edge__api_ws_on_message(void *ud, struct edge_http_conn *c, int opcode, const uint8_t *data, size_t len);
void edge__api_ws_on_close(void *ud, struct edge_http_conn *c);
void edge__api_ws_process(struct ws_session *s);
/* Handle one message of the session; true if it went asynchronous (the session is busy). */
bool edge__api_ws_handle(struct ws_session *s, json_t *msg);
/* A WebSocket request carrying "bookmark" (docs/router.md): EDGE_OK when this region has
 * applied every origin of it (run it now); EDGE_EAGAIN when it is parked, the session busy
 * until the request runs again or is answered BOOKMARK_TIMEOUT (after the bookmark
 * timeout, per origin); EDGE_EINVAL for a text that is not a bookmark, EDGE_ENOMEM. */
int edge__api_wait_bookmark_ws(struct ws_session *s, json_t *msg, int64_t request_id, const char *bm);
void edge__api_ws_unref(struct ws_session *s);
void edge__api_ws_finish(struct unit *u);

#endif
