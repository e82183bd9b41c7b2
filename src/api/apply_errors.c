/* SPDX-License-Identifier: MIT */
/* GET /v1/apply-errors: peer entries this region could not apply (kept aside in
 * _edge_apply_errors so they never block the entries behind them, see repl/apply.c);
 * POST /v1/apply-errors/retry: apply them again (after the cause was fixed), on the
 * writer thread. */
#include "api/node_int.h"

#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/log.h"

void edge__api_apply_errors_handle(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req)
{
    struct edge_node *n = l->node;
    if (!n->repl.cluster) {
        edge__api_respond_error(n, c, req, EP_STATUS, 404, "NOT_A_CLUSTER", "this node does not replicate");
        return;
    }
    struct edge_buf b;
    edge_buf_init(&b, 16u << 20);
    edge_buf_puts(&b, "{\"region\":");
    edge_buf_json_cstr(&b, n->region);
    edge_buf_puts(&b, ",\"apply_errors\":[");
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(edge_store_db(l->rconn),
                           "SELECT origin, seq, hlc, reason, first_ms, last_ms, attempts, length(payload)"
                           " FROM _edge_apply_errors ORDER BY hlc, origin, seq LIMIT 1000",
                           -1, &st, NULL) == SQLITE_OK) {
        int i = 0;
        while (sqlite3_step(st) == SQLITE_ROW) {
            if (i++ > 0) edge_buf_putc(&b, ',');
            edge_buf_puts(&b, "{\"origin\":");
            edge_buf_json_cstr(&b, (const char *)sqlite3_column_text(st, 0));
            /* hlc as a string: it exceeds 2^53 */
            edge_buf_printf(&b, ",\"seq\":%lld,\"hlc\":\"%lld\",\"reason\":", (long long)sqlite3_column_int64(st, 1),
                            (long long)sqlite3_column_int64(st, 2));
            edge_buf_json_cstr(&b, (const char *)sqlite3_column_text(st, 3));
            edge_buf_printf(&b, ",\"first_ms\":%lld,\"last_ms\":%lld,\"attempts\":%lld,\"payload_bytes\":%lld}",
                            (long long)sqlite3_column_int64(st, 4), (long long)sqlite3_column_int64(st, 5),
                            (long long)sqlite3_column_int64(st, 6), (long long)sqlite3_column_int64(st, 7));
        }
    }
    sqlite3_finalize(st);
    edge_buf_printf(&b, "],\"total\":%llu}",
                    (unsigned long long)edge_repl_apply_error_count(edge_store_db(l->rconn)));
    edge__api_respond(n, c, req, EP_STATUS, 200, "application/json", NULL, b.data, b.len);
    edge_buf_free(&b);
}

struct retry_job {
    struct edge_writer_job wjob;
    struct edge_task task;
    struct loop *l;
    struct edge_http_conn *conn;
    uint64_t start_ns;
    int rv;
    uint64_t applied, left;
    char err[256];
};

/* Writer thread, alone. */
static int retry_run(struct edge_writer_job *job, struct edge_store_conn *conn)
{
    struct retry_job *j = (struct retry_job *)job;
    struct edge_repl_state *st = &j->l->node->repl;
    struct edge_repl_apply_stats as;
    memset(&as, 0, sizeof(as));
    /* The entries were delivered by the feed when they were kept aside; what applying
     * them now changes is anyone's guess: the hot-read cache lets go of everything. */
    struct edge_feed_mark mark = {0};
    edge_feed_mark_all(st, &mark);
    edge_capture_suspend(st->wcap, true);
    j->rv = edge_repl_retry_apply_errors(edge_store_db(conn), &st->local, &as, &j->left, j->err, sizeof(j->err));
    edge_capture_suspend(st->wcap, false);
    edge_feed_unmark(st, &mark);
    j->applied = as.applied;
    atomic_fetch_add(&st->stats.rows, as.rows);
    atomic_fetch_add(&st->stats.conflicts, as.conflicts);
    atomic_fetch_add(&st->stats.session_merges, as.session_merges);
    atomic_fetch_add(&st->stats.hidden, as.hidden);
    atomic_fetch_add(&st->stats.restored, as.restored);
    return EDGE_OK;
}

static void retry_task(struct edge_task *t)
{
    struct retry_job *j = (struct retry_job *)(void *)((char *)t - offsetof(struct retry_job, task));
    struct edge_node *n = j->l->node;
    if (!edge_http_conn_is_closed(j->conn)) {
        edge__api_observe(n, EP_STATUS, j->start_ns, j->rv != EDGE_OK);
        if (j->rv == EDGE_OK) {
            char body[160];
            int len = snprintf(body, sizeof(body), "{\"applied\":%llu,\"left\":%llu}", (unsigned long long)j->applied,
                               (unsigned long long)j->left);
            edge_http_respond(j->conn, 200, "application/json", NULL, body, (size_t)len);
        } else {
            edge_http_respond_error(j->conn, 503, "RETRY_FAILED", j->err[0] ? j->err : edge_strerror(j->rv));
        }
    }
    if (j->applied > 0) edge_repl_state_wake(&n->repl);
    edge_http_conn_unref(j->conn);
    edge_free(j);
}

static void retry_complete(struct edge_writer_job *job, int status)
{
    struct retry_job *j = (struct retry_job *)job;
    if (status != EDGE_OK && j->rv == EDGE_OK) j->rv = status;
    atomic_fetch_add(&j->l->node->repl.data_version, 1);
    j->task.run = retry_task;
    edge__api_loop_post(j->l, &j->task);
}

void edge__api_apply_errors_retry(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req)
{
    struct edge_node *n = l->node;
    if (!n->repl.cluster) {
        edge__api_respond_error(n, c, req, EP_STATUS, 404, "NOT_A_CLUSTER", "this node does not replicate");
        return;
    }
    struct retry_job *j = edge_calloc(1, sizeof(*j));
    if (j == NULL) {
        edge__api_respond_error(n, c, req, EP_STATUS, 503, "INTERNAL", "out of memory");
        return;
    }
    j->l = l;
    j->conn = c;
    j->start_ns = req->start_ns;
    edge_http_conn_ref(c);
    j->wjob.exclusive = true; /* its own transaction, like a batch of peer entries */
    j->wjob.run = retry_run;
    j->wjob.complete = retry_complete;
    if (edge_writer_submit(n->writer, &j->wjob) != EDGE_OK) {
        edge_http_conn_unref(c);
        edge_free(j);
        edge__api_respond_error(n, c, req, EP_STATUS, 503, "CLOSED", "the node is stopping");
    }
}
