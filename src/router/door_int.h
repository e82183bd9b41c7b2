/* SPDX-License-Identifier: MIT */
/* Internals of the front door shared by door.c (HTTP) and door_ws.c (WebSocket). */
#ifndef EDGE_ROUTER_DOOR_INT_H
#define EDGE_ROUTER_DOOR_INT_H

#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "core/buf.h"
#include "core/vclock.h"
#include "net/http.h"
#include "net/httpc_async.h"
#include "router/door.h"
#include "router/router.h"

struct edge_tls_ctx;
struct edge_door_wss;

#define DOOR_CONNS 64
#define RYW_SLOTS 4096
#define MAX_TRIES 8

struct region {
    int idx;
    const char *id;
    char host[256], port[8];
    double weight;
    struct edge_httpca *pool, *probe_pool;
    bool up, probing, ever_probed;
    double rtt_ms;   /* EWMA of probe round trips */
    double wan_ms;   /* from the client region by the matrix; 0 without one */
    int in_flight;
    uint64_t probe_start_ns;
    uint64_t requests, errors, failovers_from, probes_failed;
    uint64_t ws_sessions; /* WebSocket sessions proxied to it (door_ws.c) */
    int ws_open;
    /* WebSocket connects' own back-off (door_ws.c): a region whose upgrade failed or timed
     * out is passed over by new sessions until ws_backoff_until_ns (uv_hrtime); the interval
     * (0: none) doubles from DOOR_WS_BACKOFF_MIN_MS to _MAX_MS; a 101 clears it, and so does
     * _MAX_MS past its end without a failure. Its HTTP probes may well answer: they say
     * nothing of the upgrade. */
    uint32_t ws_backoff_ms;
    uint64_t ws_backoff_until_ns;
    uint64_t ws_backoff_skipped; /* picks that went elsewhere because of it */
    struct edge_tls_ctx *tls; /* an https:// region: verified against cluster.ca_file (borrowed) */
    char tls_name[256];       /* the host its certificate must name */
};

#define DOOR_MAX_REGIONS 32
#define DOOR_WS_BACKOFF_MIN_MS 1000u
#define DOOR_WS_BACKOFF_MAX_MS 30000u

/* What one client's writes got: per region (by index), the highest seq of that region's
 * bookmarks, a version vector (so writes answered by several regions all count). */
struct ryw {
    uint64_t hash;
    char key[64];
    uint64_t seq[DOOR_MAX_REGIONS];
};

struct door {
    const struct edge_router_door_config *cfg;
    const struct edge_conf_router *rc;
    uv_loop_t loop;
    uv_timer_t probe_timer, stop_timer;
    volatile sig_atomic_t *stop;
    struct edge_http_server *http;
    struct region *regions;
    int n;
    struct ryw *ryw; /* RYW_SLOTS, direct-mapped by the key's hash (a newer key takes the slot) */
    struct edge_router_stats *stats;
    uint64_t failovers, write_not_retried, ryw_attached, requests, ws_refused_retries;
    double failover_ms_last; /* time from the first failure to the answer, last fail-over */
    /* WebSocket sessions (door_ws.c): moved to another region, closed 1011 because a
     * transaction was in the lost region, requests refused by a WST_MAX_* bound,
     * bookmarks attached, reads sent again after a move */
    uint64_t ws_failovers, ws_lost_pinned, ws_limited, ws_ryw_attached, ws_reads_retried;
    uint64_t ws_upstream_full; /* requests refused: DOOR_WSUP_MAX_QUEUED waiting for the region */
    uint64_t ws_connect_timeouts; /* WebSockets to a region past router.connect_timeout_ms (or a move's deadline) before the 101 */
    double ws_failover_ms_last; /* from the loss to the next region's 101 */
    struct edge_door_wss *ws_head;   /* every WebSocket session (door_ws.c) */
    uint64_t probes_from_ms; /* loop time of the first probes (router.first_probe_delay_ms) */
    uint64_t stop_ns;        /* when the stop began (uv_hrtime) */
    bool stopping;
};

/* The region for a new request or session among those not in tried (a bit per index), -1 if none. */
int edge__door_choose(struct door *d, uint32_t tried);
/* An upgrade request: a Hrana WebSocket session through the door (door_ws.c). */
void edge__door_ws_upgrade(struct door *d, struct edge_http_conn *c, struct edge_http_req *req);
/* Every probe interval: a session whose region is down and whose oldest request has waited
 * longer than router.request_timeout_ms counts its region as lost (door_ws.c). */
void edge__door_ws_tick(struct door *d);
/* The door is stopping: every WebSocket session, up or still connecting to its region, is
 * closed 1001 (door_ws.c); a session leaves d->ws_head once its client is gone. */
void edge__door_ws_stop(struct door *d);

/* door.c: read-your-writes, per client key ("t:<hash of Authorization>", or per connection):
 * the client's vector as a bookmark into out (NULL: none); merge an answer's bookmark in. */
const char *edge__door_ryw_get(struct door *d, const char *key, char *out, size_t cap);
void edge__door_ryw_put(struct door *d, const char *key, const char *bm);
/* The key of a client token (the Authorization header's value) into out[64]. */
void edge__door_ryw_token_key(const char *authorization, char *out, size_t cap);
/* After a failure: router.fallback order first, then as edge__door_choose. */
int edge__door_next_region(struct door *d, uint32_t tried);

/* door_wsup.c: a WebSocket to one region (TLS for an https:// region). Nothing is sent
 * before on_open; on_lost comes once (REFUSED: before on_open, nothing was sent; EXPIRED:
 * before on_open the deadline given to edge__door_wsup_open passed, nothing was sent, and the
 * region did not fail its own; LOST: the connection went or the region went away; CLOSED: the
 * region closed it with code), and the link is gone after it. */
enum { EDGE_DOOR_WSUP_REFUSED = 1, EDGE_DOOR_WSUP_LOST, EDGE_DOOR_WSUP_CLOSED, EDGE_DOOR_WSUP_EXPIRED };
struct edge_door_wsup;
struct edge_door_wsup_cb {
    void *ud;
    void (*on_open)(void *ud);
    void (*on_msg)(void *ud, int opcode, const uint8_t *data, size_t len);
    void (*on_lost)(void *ud, int kind, uint16_t code, const char *why);
};
/* deadline_ns (uv_hrtime; 0: none): past it before the 101 the link ends (EXPIRED), even when
 * router.connect_timeout_ms of the step under way would reach further. */
int edge__door_wsup_open(struct door *d, int region, const char *path, const char *proto, uint64_t deadline_ns,
                         const struct edge_door_wsup_cb *cb, struct edge_door_wsup **out);
int edge__door_wsup_send(struct edge_door_wsup *u, int opcode, const void *data, size_t len);
/* Bytes written to the link that the region has not taken yet (the socket's write queue and
 * TLS records not handed to it): past DOOR_WSUP_MAX_QUEUED the owner refuses new requests. */
#define DOOR_WSUP_MAX_QUEUED (8u << 20)
size_t edge__door_wsup_queued(const struct edge_door_wsup *u);
/* No callback after this; NULL is ignored. */
void edge__door_wsup_close(struct edge_door_wsup *u);

/* door_ws_state.c: a session's streams, stored SQL, cursors and requests in flight. */
#define WST_MAX_STREAMS 1024             /* streams (and, apart, cursors) per session, as the node */
#define WST_MAX_SQLS 200                 /* stored SQL texts per session (the node's bound) */
#define WST_MAX_SQL_BYTES (4u << 20)     /* bytes of them */
#define WST_MAX_IN_FLIGHT 4096           /* requests not answered yet */
#define WST_MAX_IN_FLIGHT_BYTES (16u << 20) /* bytes of those kept to send again */
#define WST_SYNTHETIC_BASE (-((int64_t)1 << 40)) /* the door's own request ids count down from here */
enum { WST_SAFE, WST_READ, WST_WRITE, WST_CURSOR };
enum { WST_OTHER, WST_OPEN_STREAM, WST_CLOSE_STREAM, WST_STORE_SQL, WST_CLOSE_SQL, WST_EXECUTE, WST_BATCH,
       WST_SEQUENCE, WST_OPEN_CURSOR, WST_CLOSE_CURSOR };
struct edge_door_wst_req {
    int64_t id;
    int kind, rtype;
    int64_t target; /* the stream, text or cursor id it names */
    bool sent;      /* to the current region */
    uint64_t sent_ns; /* when (uv_hrtime) */
    char *text;     /* the message as sent (kept while it may be sent again) */
    size_t len;
    bool ends_tx;   /* it ends its stream's transaction once answered ok (COMMIT, ROLLBACK...) */
    bool self_tx;   /* a batch holding a whole transaction: open after it only if a step failed */
    int64_t tx_stream; /* that stream */
    uint64_t tx_gen; /* the stream's transaction generation it ends */
    struct edge_door_wst_req *next;
};
/* One JSON value inside a client's WebSocket message, read in place (door_jv.c): p at its
 * first byte, len its bytes (a string's with its quotes); p NULL: absent. Only on a message
 * known to be JSON (edge__door_jv_plain, else json_loadb said so). */
struct edge_jv {
    const char *p;
    size_t len;
};
/* Is the text JSON for sure (an object in the plain subset jansson always accepts)? false:
 * jansson decides. */
bool edge__door_jv_plain(const char *p, size_t len);
/* The member key of obj (the last of duplicates, as jansson), absent if obj is no object. */
struct edge_jv edge__door_jv_get(struct edge_jv obj, const char *key);
/* The members keys[0..n) of obj (n <= 8) in one pass over it, as edge__door_jv_get each. */
void edge__door_jv_members(struct edge_jv obj, const char *const *keys, size_t n, struct edge_jv *out);
/* The element of array arr after prev ({NULL}: the first); absent at the end. */
struct edge_jv edge__door_jv_next(struct edge_jv arr, struct edge_jv prev);
bool edge__door_jv_is_object(struct edge_jv v);
bool edge__door_jv_is_string(struct edge_jv v);
bool edge__door_jv_is_integer(struct edge_jv v);
bool edge__door_jv_is_null(struct edge_jv v);
int64_t edge__door_jv_int(struct edge_jv v); /* 0 if not an integer (json_integer_value) */
/* A string's decoded bytes into out (room for v.len) or only counted (out NULL); 0 if none. */
size_t edge__door_jv_str(struct edge_jv v, char *out);
bool edge__door_jv_str_eq(struct edge_jv v, const char *s);
/* A string's decoded text: in place when it has no escape, else in *owned (edge_free it);
 * NULL if v is no string (or out of memory). */
const char *edge__door_jv_text(struct edge_jv v, size_t *len, char **owned);
struct edge_door_wst;
int edge__door_wst_new(struct edge_door_wst **out);
void edge__door_wst_free(struct edge_door_wst *t);
/* A client request (its "request" object req): classified, its effect on the state noted,
 * queued with its text (owned from here on EDGE_OK; on an error the caller keeps it).
 * EDGE_ETOOBIG / EDGE_ENOMEM with a Hrana error code and message: refused, nothing changed. */
int edge__door_wst_request(struct edge_door_wst *t, struct edge_jv req, int64_t request_id, char *text, size_t len,
                           bool sent, struct edge_door_wst_req **out, const char **code, const char **why);
/* The request was sent to the current region. */
void edge__door_wst_sent(struct edge_door_wst *t, struct edge_door_wst_req *r);
/* The region answered request_id: its kind (WST_*), or -1 when it is not one in flight.
 * ok: response_ok (for a batch: and no step failed); a transaction ends only on ok. */
int edge__door_wst_answer(struct edge_door_wst *t, int64_t request_id, bool ok);
/* When the oldest request sent to the current region and not answered was sent; 0: none. */
uint64_t edge__door_wst_oldest_ns(const struct edge_door_wst *t);
/* Adds the session's streams and cursors (those a region holds or is opening) to the counts. */
void edge__door_wst_counts(const struct edge_door_wst *t, size_t *streams, size_t *cursors);
/* The streams and cursors of every WebSocket session of the door (door_ws.c), for /metrics. */
void edge__door_ws_counts(struct door *d, size_t *streams, size_t *cursors);
/* A stream may be inside a transaction, or holds per-connection state (PRAGMA, ATTACH,
 * CREATE TEMP): the session cannot move. */
bool edge__door_wst_pinned(const struct edge_door_wst *t);
/* The region is lost: every write, open_cursor or fetch_cursor sent to it is dropped
 * (unknown() for each, to answer the client), every other one is to be sent again (the
 * number of reads among those), and the cursors are forgotten. */
size_t edge__door_wst_lost(struct edge_door_wst *t, void (*unknown)(void *ud, int64_t request_id, int kind),
                         void *ud);
/* To a new region: the streams and texts (by the client's ids, negative request ids),
 * then every request not sent, in order. A request whose emit fails counts as sent (it may
 * be partly on its way): the caller then treats the link as lost. */
int edge__door_wst_replay(struct edge_door_wst *t, int (*emit)(void *ud, const char *text, size_t len), void *ud);

/* door_body.c: does this SQL only read (first word SELECT or VALUES, one statement); norm
 * gets its normalized text. */
bool edge__door_sql_reads(const char *sql, size_t len, char *norm, size_t normcap);
/* The value of a top-level member of a JSON object text: [*vs, *vs + *vl) (a string
 * without its quotes). EDGE_ENOTFOUND, or EDGE_EPROTO when it is not an object. */
int edge__door_json_member(const char *p, size_t len, const char *key, size_t *vs, size_t *vl);

/* door_body.c: a pipeline body {"baton","requests"} (or a cursor's {"baton","batch"})
 * only reads (every statement literal SQL starting with SELECT or VALUES, one each);
 * norm gets the first statement's normalized text (EDGE_ROUTER_NORM_MAX). */
bool edge__door_body_reads(json_t *body, bool cursor, char *norm, size_t normcap);
/* The answer with its baton prefixed "<region>." (a cursor: in its first line); NULL
 * when it has no baton (leave the body as it is). */
char *edge__door_rewrite_baton(const char *body, size_t len, int region, size_t *out_len, bool cursor);
/* The rows of a JSON pipeline answer (every "rows" array of its results and batch
 * steps) or of a cursor's JSON lines (its "row" entries). */
uint64_t edge__door_count_rows(const char *body, size_t len, bool cursor);
/* door_pb.c: the baton (field 1) of a top-level protobuf message: *baton NULL when it
 * has none; EDGE_EPROTO when the message is malformed. */
int edge__door_pb_baton(const uint8_t *p, size_t len, const uint8_t **baton, size_t *blen);
/* The message with its baton replaced by baton[0..blen) (NULL: removed), into out. */
int edge__door_pb_set_baton(const uint8_t *p, size_t len, const char *baton, size_t blen, struct edge_buf *out);
/* A protobuf answer (a PipelineResp, or a cursor's length-delimited CursorResp and
 * entries) with its baton prefixed "<region>.", into out; EDGE_ENOTFOUND when it has
 * no baton (leave it as it is). */
int edge__door_pb_answer(const uint8_t *p, size_t len, int region, bool cursor, struct edge_buf *out);
/* The rows of a protobuf answer (a PipelineResp's statement and batch results, or a
 * cursor's row entries), walking the wire format; a malformed tail counts nothing more. */
uint64_t edge__door_pb_count_rows(const uint8_t *p, size_t len, bool cursor);
/* door_admin.c: the door's own endpoints. */
void edge__door_metrics(struct door *d, struct edge_http_conn *c);
void edge__door_stats(struct door *d, struct edge_http_conn *c, struct edge_http_req *req);
void edge__door_regions(struct door *d, struct edge_http_conn *c);

#endif
