/* SPDX-License-Identifier: MIT */
/* Units of Hrana work: where each runs (read loop, writer, transaction pool), its
 * replication hooks, and the way back to its loop. */
#include "api/node_int.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "api/crdt_http.h"
#include "core/alloc.h"
#include "core/log.h"

void edge__api_unit_free(struct unit *u)
{
    if (u->conn != NULL) edge_http_conn_unref(u->conn);
    json_decref(u->body);
    edge_buf_free(&u->out);
    hrana_cursor_json_free(&u->http_cursor);
    edge_free(u->crdt_method);
    edge_free(u->crdt_path);
    edge_free(u->cache_key);
    edge_free(u);
}

/* A cursor's batch (open_cursor, POST /v3/cursor): its entries go to u->cursor; over
 * WebSocket the answer to open_cursor itself goes to out. */
static int cursor_run(struct unit *u)
{
    json_t *r = u->ws ? u->requests : json_array_get(u->requests, 0);
    if (u->wcursor != NULL) edge_buf_reset(&u->wcursor->buf);
    hrana_cursor_json_reset(u->cursor);
    struct hrana_cursor_enc enc = hrana_cursor_json_enc(u->cursor);
    int rv = hrana_cursor_run(&u->ctx, json_object_get(r, "batch"), &enc);
    if (rv == EDGE_OK && u->ws != NULL) {
        rv = edge_buf_printf(&u->out,
                             "{\"type\":\"response_ok\",\"request_id\":%lld,\"response\":{\"type\":\"open_cursor\"}}",
                             (long long)u->request_id);
    }
    return rv;
}

/* Run every request of the unit on ctx.conn, writing the wrapped results. */
static void unit_run(struct unit *u)
{
    int rv = EDGE_OK;
    if (u->cursor != NULL) {
        rv = cursor_run(u);
    } else if (u->ws == NULL) {
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

/* CRDT requests queued together run as one batch (api/crdt_http.h): an object they all
 * update is loaded and saved once. Writer thread; the group may run it again after a
 * rollback, so each answer starts afresh. */
int edge__api_unit_crdt_run_batch(struct edge_writer_job *first, int n, struct edge_store_conn *conn)
{
    struct edge_crdt_http_call one, *calls = n == 1 ? &one : edge_calloc((size_t)n, sizeof(*calls));
    struct edge_writer_job *j = first;
    struct edge_node *node = ((struct unit *)first)->loop->node;
    int rv = calls == NULL ? EDGE_ENOMEM : EDGE_OK;
    for (int i = 0; i < n && rv == EDGE_OK; i++, j = j->next) {
        struct unit *u = (struct unit *)j;
        edge_buf_reset(&u->out);
        u->commit_status = EDGE_OK;
        calls[i] = (struct edge_crdt_http_call){u->crdt_method, u->crdt_path, u->body ? json_string_value(u->body) : "",
                                                u->body ? json_string_length(u->body) : 0, 500, &u->out};
    }
    if (rv == EDGE_OK) {
        rv = edge_crdt_http_handle_batch(edge_store_db(conn), node->repl.cluster ? node->repl.wcap : NULL,
                                         node->region, edge_clock_system(), calls, (size_t)n);
    }
    j = first;
    for (int i = 0; i < n; i++, j = j->next) {
        struct unit *u = (struct unit *)j;
        u->crdt_status = calls != NULL ? calls[i].status : 500;
        if (rv != EDGE_OK) u->commit_status = rv; /* answered 500 INTERNAL */
    }
    if (calls != &one) edge_free(calls);
    /* The batch took back its own changes when it failed: nothing more to roll back. */
    return EDGE_OK;
}

int edge__api_unit_writer_run(struct edge_writer_job *job, struct edge_store_conn *conn)
{
    struct unit *u = (struct unit *)job;
    if (u->crdt_method != NULL) {
        return edge__api_unit_crdt_run_batch(job, 1, conn);
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

static void unit_task(struct edge_task *t)
{
    edge__api_unit_finish((struct unit *)(void *)((char *)t - offsetof(struct unit, task)));
}

/* Writer thread: hand the finished unit to its loop. */
void edge__api_unit_writer_complete(struct edge_writer_job *job, int status)
{
    struct unit *u = (struct unit *)job;
    atomic_fetch_add(&u->loop->node->repl.data_version, 1);
    if (status != EDGE_OK) {
        u->commit_status = status;
    }
    u->task.run = unit_task;
    edge__api_loop_post(u->loop, &u->task);
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
    atomic_fetch_add(&u->loop->node->repl.data_version, 1);
    edge__api_unit_finish(u);
}

/* Reads share one read transaction per loop iteration: the file-lock and fstat system
 * calls of starting a SQLite read transaction are paid once for all the requests an
 * iteration serves, not per statement (PERF-NOTES: ~5x for grouped point reads). The
 * snapshot is renewed whenever anything committed since it began (data_version is
 * bumped before a write is answered), so a read never misses an acknowledged write,
 * and it ends after the iteration so checkpoints are not held back. Loop thread. */
void edge__api_snap_end(uv_check_t *h)
{
    struct loop *l = h->data;
    if (l->snap_open) {
        sqlite3 *db = edge_store_db(l->rconn);
        if (!sqlite3_get_autocommit(db)) sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
        l->snap_open = false;
    }
    uv_check_stop(h);
}

/* The version vector of the snapshot c reads on, as a bookmark ("REGION:SEQ,..."), into
 * out (left as it was when it cannot be read). Read inside the snapshot, so it names
 * exactly the log entries the reads on it see. */
static void vv_bookmark(struct edge_node *n, struct edge_store_conn *c, char *out, size_t cap)
{
    bool was = edge_store_sandboxed(c);
    edge_store_sandbox(c, false);
    struct edge_vclock vv;
    edge_vclock_init(&vv);
    struct edge_buf b;
    edge_buf_init(&b, cap - 1);
    int rv = edge_repl_vv_load(edge_store_db(c), &vv);
    for (size_t i = 0; i < vv.n_entries && rv == EDGE_OK; i++) {
        rv = edge_buf_printf(&b, "%s%s:%llu", i ? "," : "", vv.entries[i].region, (unsigned long long)vv.entries[i].n);
    }
    /* nothing written anywhere yet: still a bookmark ("before everything") */
    if (rv == EDGE_OK && vv.n_entries == 0) rv = edge_buf_printf(&b, "%s:0", n->region);
    if (rv == EDGE_OK && b.len < cap) {
        memcpy(out, b.data, b.len);
        out[b.len] = '\0';
    }
    edge_buf_free(&b);
    edge_vclock_close(&vv);
    edge_store_sandbox(c, was);
}

/* The loop's snapshot: read first inside it (the deferred BEGIN starts the snapshot at
 * this read). */
static void snap_bookmark(struct loop *l)
{
    vv_bookmark(l->node, l->rconn, l->snap_bm, sizeof(l->snap_bm));
}

void edge__api_read_snapshot(struct loop *l)
{
    uint64_t v = atomic_load(&l->node->repl.data_version);
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
    l->snap_bm[0] = '\0';
    if (l->snap_open && l->node->repl.cluster) snap_bookmark(l);
    if (l->snap_open && !uv_is_active((uv_handle_t *)&l->snap_check)) {
        uv_check_start(&l->snap_check, edge__api_snap_end);
    }
}

/* Send the unit off to where it must run (loop thread). */
/* The writer queue is full (limits.writer_queue): one line per 10 s at most, with how
 * many writes were refused since the last one, so an overload does not flood the log. */
void edge__api_writer_busy_log(struct edge_node *n)
{
    uint64_t now = mono_ms();
    uint64_t last = atomic_load(&n->m.writer_busy_logged_ms);
    uint64_t missed = atomic_fetch_add(&n->m.writer_busy_unlogged, 1) + 1;
    if (last != 0 && now - last < 10000) return;
    if (!atomic_compare_exchange_strong(&n->m.writer_busy_logged_ms, &last, now)) return;
    missed = atomic_exchange(&n->m.writer_busy_unlogged, 0);
    EDGE_LOG(EDGE_LOG_WARN, EDGE_MOD_API,
             "writer queue full (limits.writer_queue %d): %llu write(s) refused with 503 WRITER_BUSY since the last "
             "report", n->writer_queue, (unsigned long long)missed);
}

void edge__api_unit_dispatch(struct unit *u)
{
    struct edge_node *n = u->loop->node;
    atomic_fetch_add(&n->m.routed[u->route], 1);
    if (u->route == HRANA_ROUTE_READ) {
        u->ctx.conn = u->loop->rconn;
        u->ctx.shared_snapshot = true;
        if (u->cache_key != NULL && u->loop->snap_open) {
            /* A cache fill reads on a snapshot that starts after it recorded the tables'
             * generations (router/router.h): never on one begun earlier. */
            sqlite3 *db = edge_store_db(u->loop->rconn);
            if (!sqlite3_get_autocommit(db)) sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
            u->loop->snap_open = false;
        }
        edge__api_read_snapshot(u->loop);
        unit_run(u);
        edge__api_unit_finish(u);
        return;
    }
    if (u->route == HRANA_ROUTE_WRITE) {
        /* The writer's group transaction is not the stream's: it is in autocommit. */
        u->ctx.shared_snapshot = true;
        u->ctx.capture = n->repl.cluster ? n->repl.wcap : NULL;
        u->wjob.run = edge__api_unit_writer_run;
        u->wjob.complete = edge__api_unit_writer_complete;
        int srv = edge_writer_try_submit(n->writer, &u->wjob);
        if (srv != EDGE_OK) {
            if (srv == EDGE_EAGAIN) edge__api_writer_busy_log(n);
            u->commit_status = srv == EDGE_EAGAIN ? EDGE_EAGAIN : EDGE_ECLOSED;
            edge__api_unit_finish(u);
        }
        return;
    }
    /* Transaction route: the stream's own connection, or a new one from the pool. */
    struct txconn **slot = u->ws ? &u->wss->txn : &u->stream->txn;
    if (*slot == NULL) {
        int rv = edge__api_pool_acquire(n, slot);
        if (rv != EDGE_OK) {
            u->commit_status = rv == EDGE_EBUSY ? EDGE_EBUSY : EDGE_ESTORE;
            edge__api_unit_finish(u);
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
        edge__api_unit_finish(u);
    }
}

void edge__api_unit_count(struct edge_node *n, struct unit *u)
{
    atomic_fetch_add(&n->m.stmts, u->ctx.stmts);
    atomic_fetch_add(&n->m.stmt_errors, u->ctx.errors);
    atomic_fetch_add(&n->m.rows, u->ctx.rows);
}

/* After a transaction-route unit: keep the connection while a transaction is open. */
void edge__api_unit_settle(struct edge_node *n, struct txconn **slot, bool *readonly_txn, bool ro_now, bool closing)
{
    *readonly_txn = ro_now;
    if (*slot != NULL && (closing || sqlite3_get_autocommit(edge_store_db((*slot)->conn)))) {
        edge__api_pool_release(n, *slot, *readonly_txn);
        *slot = NULL;
        *readonly_txn = false;
    }
}

const char *edge__api_status_code(int st)
{
    switch (st) {
    case EDGE_EBUSY: return "TRANSACTION_BUSY";
    case EDGE_EAGAIN: return "WRITER_BUSY";
    case EDGE_ECONFLICT: return "TRANSACTION_ROLLED_BACK";
    case EDGE_ETOOBIG: return "RESPONSE_TOO_LARGE";
    case EDGE_ECLOSED: return "SHUTTING_DOWN";
    default: return "SQLITE_IOERR";
    }
}

void edge__api_unit_finish(struct unit *u)
{
    if (u->crdt_method != NULL) {
        struct edge_node *n = u->loop->node;
        if (!edge_http_conn_is_closed(u->conn)) {
            edge__api_observe(n, EP_CRDT, u->start_ns, u->crdt_status >= 400 || u->commit_status != EDGE_OK);
            if (u->commit_status == EDGE_EAGAIN) {
                static const char busy[] = "{\"error\":\"the writer queue is full\",\"code\":\"WRITER_BUSY\"}";
                edge_http_respond(u->conn, 503, "application/json", "Retry-After: 1\r\n", busy, sizeof(busy) - 1);
            } else if (u->commit_status != EDGE_OK) {
                edge_http_respond_error(u->conn, 500, "INTERNAL", edge_strerror(u->commit_status));
            } else {
                edge_http_respond(u->conn, u->crdt_status, "application/json", NULL, u->out.data, u->out.len);
            }
        }
        edge__api_unit_free(u);
        return;
    }
    if (u->ws != NULL) {
        edge__api_ws_finish(u);
    } else {
        edge__api_pipeline_finish(u);
    }
}

struct unit *edge__api_unit_new(struct loop *l, struct edge_http_conn *c, json_t *body)
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
    if (l->node->stats != NULL) {
        u->ctx.on_stmt = edge__api_stats_stmt;
        u->ctx.stmt_ud = l->node;
    }
    return u;
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
    struct txconn *t = unit_txconn(u);
    /* Before COMMIT: the hot-read cache refuses what the commit may change from now on. */
    edge_feed_mark_capture(&n->repl, t->cap, &t->mark);
    return edge_repl_commit_entry(t->cap, &n->repl.local, ctx->consistency, &ctx->seq, err, errlen);
}

static void tx_committed(void *ud, struct hrana_ctx *ctx)
{
    struct unit *u = ud;
    edge_repl_state_committed(&u->loop->node->repl, ctx->seq, ctx->consistency);
    /* This pool thread's connection, just committed: the feed reads the entry there. */
    if (ctx->seq != 0) edge_feed_dispatch(&u->loop->node->repl, edge_store_db(ctx->conn));
}

/* After the COMMIT (and its dispatch), or its failure: the marked tables are let go. */
static void tx_settled(void *ud, struct hrana_ctx *ctx)
{
    (void)ctx;
    struct unit *u = ud;
    struct txconn *t = unit_txconn(u);
    if (t != NULL) edge_feed_unmark(&u->loop->node->repl, &t->mark);
}

int edge__api_unit_consistency(struct edge_node *n, struct edge_http_req *req, const struct hrana_tables *t)
{
    const char *names[HRANA_MAX_TABLES];
    int k = 0;
    for (; t != NULL && k < t->n && k < HRANA_MAX_TABLES; k++) names[k] = t->names[k];
    /* A write whose tables could not all be classified counts as strong where any table is. */
    if (t != NULL && (t->unknown || t->overflow)) k = -1;
    return edge_repl_consistency(&n->repl, req ? edge_http_header(req, "x-edge-consistency") : NULL, names, k);
}

/* A single node: every statement that may commit on a transaction connection lets go of
 * the whole hot-read cache while it runs (there is no capture to tell its tables). */
static void tx_guard_begin(void *ud, struct hrana_ctx *ctx)
{
    (void)ctx;
    struct unit *u = ud;
    struct txconn *t = unit_txconn(u);
    if (t != NULL) edge_feed_mark_all(&u->loop->node->repl, &t->mark);
}

static void tx_guard_end(void *ud, struct hrana_ctx *ctx)
{
    tx_settled(ud, ctx);
}

/* Pool thread, after each statement of an interactive transaction: the first time the
 * transaction holds a snapshot (SQLite starts it at the first read or write, not at a
 * deferred BEGIN), read its version vector: the bookmark of every read inside it. Not
 * after a COMMIT that failed and left the transaction open: its log entry is in there. */
static void tx_txn_stmt(void *ud, struct hrana_ctx *ctx, bool commits)
{
    struct unit *u = ud;
    struct txconn *t = unit_txconn(u);
    if (t == NULL) return;
    sqlite3 *db = edge_store_db(ctx->conn);
    if (sqlite3_get_autocommit(db)) {
        t->bm_over = true; /* kept for this unit's answer; the next transaction reads anew */
        return;
    }
    if (t->bm_over) {
        t->bm[0] = '\0';
        t->bm_over = false;
    }
    if (t->bm[0] == '\0' && !commits && sqlite3_txn_state(db, "main") != SQLITE_TXN_NONE) {
        vv_bookmark(u->loop->node, ctx->conn, t->bm, sizeof(t->bm));
    }
}

const char *edge__api_unit_bookmark(struct unit *u, char *buf, size_t cap)
{
    struct edge_node *n = u->loop->node;
    if (!n->repl.cluster || cap == 0) return NULL;
    uint64_t seq = u->route == HRANA_ROUTE_WRITE ? u->wjob.seq : u->ctx.seq;
    if (seq != 0) {
        snprintf(buf, cap, "%s:%llu", n->region, (unsigned long long)seq);
        return buf;
    }
    if (u->route == HRANA_ROUTE_READ) return u->loop->snap_open && u->loop->snap_bm[0] ? u->loop->snap_bm : NULL;
    struct txconn *t = u->route == HRANA_ROUTE_TXN ? unit_txconn(u) : NULL;
    if (t == NULL || t->bm[0] == '\0') return NULL;
    snprintf(buf, cap, "%s", t->bm);
    return buf;
}

/* Hook a unit up to replication before it is dispatched. */
void edge__api_unit_repl_setup(struct unit *u, int consistency)
{
    struct edge_node *n = u->loop->node;
    if (!n->repl.cluster) {
        if (n->cache != NULL) {
            u->ctx.hook_ud = u;
            u->ctx.guard_begin = tx_guard_begin;
            u->ctx.guard_end = tx_guard_end;
        }
        return;
    }
    u->ctx.consistency = consistency;
    u->wjob.consistency = consistency;
    u->ctx.hook_ud = u;
    u->ctx.commit_entry = tx_commit_entry;
    u->ctx.committed = tx_committed;
    u->ctx.settled = tx_settled;
    u->ctx.txn_stmt = tx_txn_stmt;
}

enum strong_route edge__api_strong_route(struct edge_node *n, enum hrana_route route, int consistency, bool ddl,
                                        bool can_forward, bool forwarded, bool ws, const char **code,
                                        const char **msg)
{
    /* Schema changes go through the primary, so every region sees one order of schema
     * changes (row images are positional); they do not wait for a majority. */
    if (!n->repl.cluster || route == HRANA_ROUTE_READ || (consistency != 1 && !ddl)) return STRONG_LOCAL;
    if (!edge_repl_state_is_primary(&n->repl)) {
        if (ws) {
            /* A WebSocket stream lives on this connection: it cannot be forwarded. */
            *code = "STRONG_NEEDS_PRIMARY";
            *msg = "strong writes and schema changes must be sent to the primary region (use HTTP here, which "
                   "forwards them, or connect to the primary)";
        } else if (!can_forward) {
            *code = "STRONG_NEEDS_PRIMARY";
            *msg = "strong writes and schema changes inside a stream must be sent to the primary region directly";
        } else if (forwarded) {
            *code = "PRIMARY_UNREACHABLE";
            *msg = "a forwarded strong write reached a region that is not the primary";
        } else {
            return STRONG_FORWARD;
        }
        return STRONG_REFUSE;
    }
    if (consistency == 1 && !edge_repl_majority_reachable(&n->repl)) {
        *code = "NO_MAJORITY";
        *msg = "the primary cannot reach a majority of regions; the write was not applied";
        return STRONG_REFUSE;
    }
    return STRONG_LOCAL;
}
