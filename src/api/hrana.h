/* SPDX-License-Identifier: MIT */
/* Hrana (the libSQL remote protocol, v2/v3 JSON) independent of its transport:
 * validating requests, classifying them (read, write, transaction), executing them on
 * a SQLite connection and writing the JSON results. The HTTP pipeline and the
 * WebSocket session (src/api/node.c) decide where a unit runs and wrap the results. */
#ifndef EDGE_API_HRANA_H
#define EDGE_API_HRANA_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/buf.h"
#include "repl/repl.h"
#include "store/store.h"

#define HRANA_MAX_SQL_PER_STREAM 50
#define HRANA_MAX_SQL_PER_WS 200
#define HRANA_MAX_SQL_BYTES (64 * 1024)

/* Stored SQL texts (store_sql / close_sql): per HTTP stream, or per WebSocket. */
struct hrana_sqlmap {
    struct hrana_sql {
        int32_t id;
        char *sql;
    } *items;
    size_t n;
    size_t max;
};
void hrana_sqlmap_init(struct hrana_sqlmap *m, size_t max);
void hrana_sqlmap_free(struct hrana_sqlmap *m);
const char *hrana_sqlmap_get(const struct hrana_sqlmap *m, int32_t id);

enum hrana_access { HRANA_ACCESS_RW = 0, HRANA_ACCESS_RO = 1 };

/* Where a unit of requests must run. */
enum hrana_route {
    HRANA_ROUTE_READ,  /* only reads: inline on the loop's read connection */
    HRANA_ROUTE_WRITE, /* autocommit writes: the writer thread's group commit */
    HRANA_ROUTE_TXN,   /* transaction control or an open transaction: a dedicated connection */
};

/* How results are wrapped: the HTTP pipeline's results array or WebSocket messages. */
enum hrana_wrap { HRANA_WRAP_HTTP, HRANA_WRAP_WS };

struct hrana_ctx {
    struct edge_store_conn *conn; /* borrowed; where statements run */
    struct hrana_sqlmap *sqls;    /* borrowed; stored SQL visible to this unit */
    enum hrana_access access;
    int version;                  /* 2 or 3 */
    uint64_t budget_ms;           /* per-statement time budget, 0 = none */
    bool readonly_txn;            /* in: a BEGIN ... READONLY is active on conn; out: updated */
    bool shared_snapshot;         /* conn is inside a transaction shared with other units (a
                                   * loop's read snapshot, the writer's group commit): the
                                   * stream itself is in autocommit */
    uint64_t stmts;               /* out: statements executed */
    uint64_t errors;              /* out: statements that failed */
    uint64_t rows;                /* out: rows returned */
    /* Replication (all NULL/0 on a node that does not replicate). */
    struct edge_capture *capture; /* the connection's change capture */
    bool own_txn;                 /* a transaction connection: logs at COMMIT, wraps autocommit writes */
    int consistency;              /* level of entries this unit writes */
    uint64_t seq;                 /* out: the last log entry this unit committed */
    void *hook_ud;
    /* Write this transaction's log entry (inside it, before COMMIT). */
    int (*commit_entry)(void *ud, struct hrana_ctx *ctx, char *err, size_t errlen);
    /* The transaction committed (peers may be told). */
    void (*committed)(void *ud, struct hrana_ctx *ctx);
    /* A statement left the transaction connection in autocommit (a COMMIT that worked or
     * not, a ROLLBACK): what was marked before COMMIT can be let go (may be NULL). */
    void (*settled)(void *ud, struct hrana_ctx *ctx);
    /* Without change capture (a single node): a statement that may make writes visible (a
     * write, COMMIT/END/RELEASE) is about to run on a transaction connection, and it ran
     * (the hot-read cache's commit guard, repl/feed.h). Both NULL or both set. */
    void (*guard_begin)(void *ud, struct hrana_ctx *ctx);
    void (*guard_end)(void *ud, struct hrana_ctx *ctx);
    /* A statement ran (or failed) on a transaction connection (own_txn); commits says it
     * was a COMMIT/END/RELEASE. The node reads the version vector of the transaction's
     * snapshot here, once the transaction has one, for the bookmark of its reads (may be
     * NULL). Called outside the sandbox. */
    void (*txn_stmt)(void *ud, struct hrana_ctx *ctx, bool commits);
    /* Statement statistics (may be NULL): each statement run, with its time and rows. */
    void (*on_stmt)(void *ud, const char *sql, size_t len, uint64_t ns, uint64_t rows, bool error);
    void *stmt_ud;
};

/* Check the shape of an HTTP pipeline body {"baton","requests":[...]} (or a single
 * WebSocket request object when ws is true) without executing anything. On failure
 * writes a message into err and returns EDGE_EPROTO. */
int hrana_validate_pipeline(json_t *body, int version, char *err, size_t errlen);
int hrana_validate_request(json_t *req, int version, bool ws, char *err, size_t errlen);
/* The body of POST /v3/cursor: {"baton": string|null, "batch": Batch}. */
int hrana_validate_cursor(json_t *body, char *err, size_t errlen);

/* Tables a unit writes (collected by hrana_classify when asked). */
#define HRANA_MAX_TABLES 16
struct hrana_tables {
    char names[HRANA_MAX_TABLES][64];
    int n;
    bool overflow; /* more tables than fit, or a name too long */
    bool ddl;      /* the unit changes the schema (CREATE, ALTER, DROP) */
    bool unknown;  /* a write could not be prepared here: its tables are not known */
};

/* Decide where requests[] must run. rconn is a connection used only to prepare
 * statements for classification (the loop's read connection). in_txn says whether the
 * stream already holds an open transaction. */
enum hrana_route hrana_classify(json_t *requests, size_t n, struct edge_store_conn *rconn,
                                const struct hrana_sqlmap *sqls, bool in_txn, struct hrana_tables *tables);

/* Execute one validated request and append its wrapped result to out (for HTTP:
 * {"type":"ok","response":...} or {"type":"error","error":...}; for WS the
 * response_ok/response_error message with request_id). Requests that manage streams
 * or stored SQL (store_sql, close_sql, close, open_stream, close_stream) are handled
 * by the caller, except store_sql/close_sql which act on ctx->sqls. Returns EDGE_OK, or
 * EDGE_ENOMEM/EDGE_ETOOBIG when the output could not be written. */
int hrana_execute_request(struct hrana_ctx *ctx, json_t *req, enum hrana_wrap wrap, int64_t request_id,
                          struct edge_buf *out);

/* Append an error in Hrana form {"message":..,"code":..}. */
int hrana_write_error(struct edge_buf *out, const char *message, const char *code);
/* A whole WebSocket response_error message for request_id. */
int hrana_write_response_error(struct edge_buf *out, int64_t request_id, const char *message, const char *code);

/* Hrana 3 cursors: a batch's results as a sequence of entries (step_begin, row, step_end,
 * step_error, error), the same information as a BatchResult. hrana_cursor_run produces
 * them and an encoder writes them: the JSON encoder below, or another encoding's own.
 * Each function returns EDGE_OK or the error of its output. mark/rewind take back the
 * entries of a step that failed (it is then reported by step_error alone). */
struct hrana_cursor_enc {
    int (*step_begin)(void *ud, uint32_t step, sqlite3_stmt *st); /* cols from st */
    int (*row)(void *ud, sqlite3_stmt *st);                       /* the current row of st */
    int (*step_end)(void *ud, int64_t affected, bool has_rowid, int64_t rowid);
    int (*step_error)(void *ud, uint32_t step, const char *message, const char *code);
    int (*error)(void *ud, const char *message, const char *code); /* fatal: the last entry */
    size_t (*mark)(void *ud);
    void (*rewind)(void *ud, size_t mark);
    void *ud;
};

/* Run a validated batch on ctx->conn like a batch request, its results going to enc as
 * entries. When the output fills up, the cursor ends with an error entry. Returns EDGE_OK,
 * or the encoder's error when not even that entry could be written. */
int hrana_cursor_run(struct hrana_ctx *ctx, json_t *batch, const struct hrana_cursor_enc *enc);

/* The JSON encoding of entries: each entry is one JSON object followed by a newline in
 * out (the body of POST /v3/cursor after its first line); ends[i] is the offset just
 * past entry i's newline, so WebSocket fetch_cursor can hand them out in slices. */
struct hrana_cursor_json {
    struct edge_buf *out; /* borrowed */
    size_t base;          /* out->len when the first entry began */
    size_t *ends;
    size_t n, cap;
};
void hrana_cursor_json_init(struct hrana_cursor_json *j, struct edge_buf *out);
/* Forget the entries (a unit that runs again starts afresh). */
void hrana_cursor_json_reset(struct hrana_cursor_json *j);
void hrana_cursor_json_free(struct hrana_cursor_json *j);
struct hrana_cursor_enc hrana_cursor_json_enc(struct hrana_cursor_json *j);
/* Entry i without its newline. */
const char *hrana_cursor_json_entry(const struct hrana_cursor_json *j, size_t i, size_t *len);

#endif
