/* SPDX-License-Identifier: MIT */
/* GET /metrics, and the request counters and latency histograms every endpoint feeds. */
#include "api/node_int.h"

#include <stdio.h>
#include <string.h>

#include "api/crdt_http.h"
#include "repl/tomb.h"
#include "store/crdt_store.h"

#define CRDT_SERIES_MAX 1000 /* object x region pairs listed on /metrics */

static const char *const endpoint_names[] = {"pipeline", "websocket", "health", "metrics", "status",
                                             "crdt",     "replicate", "other",  "sessions"};

static const double hist_bounds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                     0.025,  0.05,    0.1,    0.25,  0.5,    1,     2.5, 5, 10};
_Static_assert(sizeof(hist_bounds) / sizeof(hist_bounds[0]) == HIST_N, "HIST_N is the number of bounds");

void edge__api_observe(struct edge_node *n, enum endpoint ep, uint64_t start_ns, bool error)
{
    double secs = (double)(uv_hrtime() - start_ns) / 1e9;
    size_t b = 0;
    while (b < HIST_N && secs > hist_bounds[b]) b++;
    atomic_fetch_add(&n->m.requests[ep], 1);
    if (error) atomic_fetch_add(&n->m.errors[ep], 1);
    atomic_fetch_add(&n->m.hist[ep][b], 1);
    atomic_fetch_add(&n->m.hist_sum_us[ep], (uint64_t)(secs * 1e6));
}

void edge__api_respond(struct edge_node *n, struct edge_http_conn *c, struct edge_http_req *req, enum endpoint ep,
                    int status, const char *ctype, const char *extra, const void *body, size_t len)
{
    edge__api_observe(n, ep, req->start_ns, status >= 400);
    edge_http_respond(c, status, ctype, extra, body, len);
}

void edge__api_respond_error(struct edge_node *n, struct edge_http_conn *c, struct edge_http_req *req,
                          enum endpoint ep, int status, const char *code, const char *msg)
{
    edge__api_observe(n, ep, req->start_ns, true);
    edge_http_respond_error(c, status, code, msg);
}

static void metrics_peer(void *ud, int i, const struct edge_repl_peer_view *v)
{
    (void)i;
    struct edge_buf *b = ud;
    const struct edge_peer_status *ps = v->status;
    const char *r = v->region;
    edge_buf_printf(b,
                    "edgelite_repl_peer_connected{peer=\"%s\"} %d\nedgelite_repl_peer_lag_ms{peer=\"%s\"} %.0f\n"
                    "edgelite_repl_peer_pending_entries{peer=\"%s\"} %llu\nedgelite_repl_peer_rtt_ms{peer=\"%s\"} %.3f\n"
                    "edgelite_repl_peer_entries_sent_total{peer=\"%s\"} %llu\n"
                    "edgelite_repl_peer_bytes_sent_total{peer=\"%s\"} %llu\n"
                    "edgelite_repl_peer_retries_total{peer=\"%s\"} %llu\n"
                    "edgelite_repl_peer_in_flight{peer=\"%s\"} %d\n"
                    "edgelite_repl_peer_in_flight_bytes{peer=\"%s\"} %zu\n"
                    "edgelite_repl_peer_window_full_total{peer=\"%s\"} %llu\n"
                    "edgelite_repl_peer_auth_failures_total{peer=\"%s\"} %llu\n"
                    "edgelite_repl_peer_mac_errors_total{peer=\"%s\"} %llu\n"
                    "edgelite_repl_peer_needs_snapshot{peer=\"%s\"} %d\n"
                    "edgelite_repl_peer_log_missing_total{peer=\"%s\"} %llu\n",
                    r, ps->connected ? 1 : 0, r, v->lag_ms, r, (unsigned long long)v->pending, r, ps->rtt_ms, r,
                    (unsigned long long)ps->entries_sent, r, (unsigned long long)ps->bytes_sent, r,
                    (unsigned long long)ps->retries, r, ps->in_flight, r, ps->in_flight_bytes, r,
                    (unsigned long long)ps->window_full, r, (unsigned long long)ps->auth_failures, r,
                    (unsigned long long)ps->mac_errors, r, v->needs_snapshot ? 1 : 0, r,
                    (unsigned long long)ps->needs_snapshot);
    /* the link fell back to the peer's ACKed VV and sent again (an ACK below what it covered: a gap) */
    edge_buf_printf(b, "edgelite_repl_peer_resends_total{peer=\"%s\"} %llu\n", r, (unsigned long long)ps->resends);
    if (ps->clock_offset_known) {
        /* the peer's wall clock minus ours, from PING/PONG */
        edge_buf_printf(b, "edgelite_repl_peer_clock_offset_ms{peer=\"%s\"} %.1f\n", r, ps->clock_offset_ms);
    }
}

struct crdt_series {
    struct edge_buf *b;
    int n;
};

static int metrics_crdt_cb(void *ud, const struct edge_crdt_merge_stat *s)
{
    struct crdt_series *w = ud;
    if (w->n++ >= CRDT_SERIES_MAX) return 1;
    /* names are [A-Za-z0-9._:-] and region ids printable without quotes: no escaping */
    edge_buf_printf(w->b,
                    "edgelite_crdt_object_merges_total{object=\"%s\",region=\"%s\"} %llu\n"
                    "edgelite_crdt_object_conflicts_total{object=\"%s\",region=\"%s\"} %llu\n",
                    s->name, s->region, (unsigned long long)s->merges, s->name, s->region,
                    (unsigned long long)s->concurrent);
    return 0;
}

/* Per CRDT object and origin region: replicated updates merged here, and how many of
 * them combined concurrent updates (the first CRDT_SERIES_MAX pairs). */
static void metrics_crdt(struct edge_store_conn *rconn, struct edge_buf *b)
{
    struct crdt_series w = {b, 0};
    edge_buf_puts(b, "# HELP edgelite_crdt_object_merges_total Updates of other regions merged into a CRDT object.\n"
                     "# TYPE edgelite_crdt_object_merges_total counter\n"
                     "# HELP edgelite_crdt_object_conflicts_total Merges that combined concurrent updates.\n"
                     "# TYPE edgelite_crdt_object_conflicts_total counter\n");
    (void)edge_crdt_store_merges(edge_store_db(rconn), NULL, metrics_crdt_cb, &w); /* no table yet: none */
}

static void metrics_peers(struct edge_node *n, struct edge_store_conn *rconn, struct edge_buf *b)
{
    edge_buf_printf(b,
                    "# TYPE edgelite_repl_entries_applied_total counter\nedgelite_repl_entries_applied_total %llu\n"
                    "# TYPE edgelite_repl_rows_applied_total counter\nedgelite_repl_rows_applied_total %llu\n"
                    "# TYPE edgelite_repl_conflicts_total counter\nedgelite_repl_conflicts_total %llu\n"
                    "# TYPE edgelite_repl_duplicates_total counter\nedgelite_repl_duplicates_total %llu\n"
                    "# TYPE edgelite_repl_deferred_total counter\nedgelite_repl_deferred_total %llu\n"
                    "# TYPE edgelite_repl_apply_failures_total counter\nedgelite_repl_apply_failures_total %llu\n"
                    "# TYPE edgelite_repl_apply_errors gauge\nedgelite_repl_apply_errors %llu\n"
                    "# TYPE edgelite_repl_hidden_rows_total counter\nedgelite_repl_hidden_rows_total %llu\n"
                    "# TYPE edgelite_repl_restored_rows_total counter\nedgelite_repl_restored_rows_total %llu\n"
                    "# TYPE edgelite_repl_skewed_entries_total counter\nedgelite_repl_skewed_entries_total %llu\n"
                    "# TYPE edgelite_repl_ddl_already_applied_total counter\n"
                    "edgelite_repl_ddl_already_applied_total %llu\n"
                    "# HELP edgelite_repl_conflicts_dropped_total _edge_conflicts rows removed by retention "
                    "(replication.conflicts_keep, conflicts_max_age).\n"
                    "# TYPE edgelite_repl_conflicts_dropped_total counter\n"
                    "edgelite_repl_conflicts_dropped_total %llu\n"
                    "# HELP edgelite_repl_inbound_auth_refused_total Inbound peer links refused: bad HELLO MAC or cluster.\n"
                    "# TYPE edgelite_repl_inbound_auth_refused_total counter\n"
                    "edgelite_repl_inbound_auth_refused_total %llu\n"
                    "# HELP edgelite_repl_inbound_mac_errors_total Inbound peer links closed for a frame that failed its "
                    "integrity check.\n"
                    "# TYPE edgelite_repl_inbound_mac_errors_total counter\n"
                    "edgelite_repl_inbound_mac_errors_total %llu\n",
                    (unsigned long long)atomic_load(&n->repl.stats.applied),
                    (unsigned long long)atomic_load(&n->repl.stats.rows),
                    (unsigned long long)atomic_load(&n->repl.stats.conflicts),
                    (unsigned long long)atomic_load(&n->repl.stats.duplicates),
                    (unsigned long long)atomic_load(&n->repl.stats.deferred),
                    (unsigned long long)atomic_load(&n->repl.stats.apply_errors),
                    (unsigned long long)edge_repl_apply_error_count(edge_store_db(rconn)),
                    (unsigned long long)atomic_load(&n->repl.stats.hidden),
                    (unsigned long long)atomic_load(&n->repl.stats.restored),
                    (unsigned long long)atomic_load(&n->repl.stats.skewed),
                    (unsigned long long)atomic_load(&n->repl.stats.ddl_skipped),
                    (unsigned long long)atomic_load(&n->repl.stats.conflicts_dropped),
                    (unsigned long long)atomic_load(&n->repl.stats.peer_auth_refused),
                    (unsigned long long)atomic_load(&n->repl.stats.peer_mac_errors));
    edge__api_cluster_nonces_metrics(n, b);
    struct edge_repl_tomb_info ti;
    edge_repl_tomb_info(&n->repl, &ti);
    edge_buf_printf(b,
                    "# HELP edgelite_repl_tombstones Deleted rows whose metadata is kept (_edge_rows, deleted = 1).\n"
                    "# TYPE edgelite_repl_tombstones gauge\nedgelite_repl_tombstones %llu\n"
                    "# HELP edgelite_repl_tombstones_collected_total Tombstones dropped once every region held them.\n"
                    "# TYPE edgelite_repl_tombstones_collected_total counter\n"
                    "edgelite_repl_tombstones_collected_total %llu\n"
                    "# HELP edgelite_repl_tombstone_gc_waiting_ms How long tombstone collection has waited for a "
                    "region.\n"
                    "# TYPE edgelite_repl_tombstone_gc_waiting_ms gauge\nedgelite_repl_tombstone_gc_waiting_ms %lld\n"
                    "# HELP edgelite_repl_tombstone_horizon_drops_total Writes at or below the tombstone horizon to "
                    "rows with no metadata, lost against a collected delete.\n"
                    "# TYPE edgelite_repl_tombstone_horizon_drops_total counter\n"
                    "edgelite_repl_tombstone_horizon_drops_total %llu\n",
                    (unsigned long long)edge_repl_tomb_count(edge_store_db(rconn)), (unsigned long long)ti.collected,
                    (long long)ti.waiting_ms,
                    (unsigned long long)atomic_load(&n->repl.stats.horizon_drops));
    edge_buf_printf(b,
                    "# HELP edgelite_repl_apply_transactions_total Writer transactions that applied ENTRIES frames "
                    "from peers (the frames queued for a link go in one, up to 64 frames or 4 MiB).\n"
                    "# TYPE edgelite_repl_apply_transactions_total counter\nedgelite_repl_apply_transactions_total %llu\n"
                    "# HELP edgelite_repl_apply_frames_total ENTRIES frames those transactions applied.\n"
                    "# TYPE edgelite_repl_apply_frames_total counter\nedgelite_repl_apply_frames_total %llu\n",
                    (unsigned long long)atomic_load(&n->repl.stats.apply_txns),
                    (unsigned long long)atomic_load(&n->repl.stats.apply_frames));
    edge_buf_puts(b, "# TYPE edgelite_repl_peer_clock_offset_ms gauge\n");
    struct edge_vclock vv;
    edge_vclock_init(&vv);
    edge_repl_state_vv(&n->repl, &vv);
    edge_buf_puts(b, "# TYPE edgelite_repl_version_vector gauge\n");
    for (size_t i = 0; i < vv.n_entries; i++) {
        edge_buf_printf(b, "edgelite_repl_version_vector{origin=\"%s\"} %llu\n", vv.entries[i].region,
                        (unsigned long long)vv.entries[i].n);
    }
    edge_vclock_close(&vv);
    edge_buf_puts(b, "# TYPE edgelite_repl_peer_connected gauge\n# TYPE edgelite_repl_peer_lag_ms gauge\n"
                     "# TYPE edgelite_repl_peer_pending_entries gauge\n# TYPE edgelite_repl_peer_rtt_ms gauge\n"
                     "# TYPE edgelite_repl_peer_entries_sent_total counter\n"
                     "# TYPE edgelite_repl_peer_bytes_sent_total counter\n"
                     "# TYPE edgelite_repl_peer_retries_total counter\n"
                     "# TYPE edgelite_repl_peer_in_flight gauge\n# TYPE edgelite_repl_peer_in_flight_bytes gauge\n"
                     "# TYPE edgelite_repl_peer_window_full_total counter\n"
                     "# TYPE edgelite_repl_peer_resends_total counter\n"
                     "# TYPE edgelite_repl_peer_auth_failures_total counter\n"
                     "# TYPE edgelite_repl_peer_mac_errors_total counter\n"
                     "# HELP edgelite_repl_peer_needs_snapshot 1 while the log is compacted past what the peer "
                     "acknowledged (replication.max_log_bytes): it must be re-seeded.\n"
                     "# TYPE edgelite_repl_peer_needs_snapshot gauge\n"
                     "# TYPE edgelite_repl_peer_log_missing_total counter\n");
    edge_buf_printf(b,
                    "# HELP edgelite_repl_log_bytes Bytes of the replication log (payload, deps, 40 per row).\n"
                    "# TYPE edgelite_repl_log_bytes gauge\nedgelite_repl_log_bytes %llu\n"
                    "# TYPE edgelite_repl_log_max_bytes gauge\nedgelite_repl_log_max_bytes %llu\n"
                    "# HELP edgelite_repl_log_forced_compactions_total Compactions past a region's "
                    "acknowledgement because the log passed replication.max_log_bytes.\n"
                    "# TYPE edgelite_repl_log_forced_compactions_total counter\n"
                    "edgelite_repl_log_forced_compactions_total %llu\n",
                    (unsigned long long)atomic_load(&n->repl.log_bytes), (unsigned long long)n->repl.max_log_bytes,
                    (unsigned long long)atomic_load(&n->repl.log_forced));
    edge_repl_peers_walk(&n->repl, edge_store_db(rconn), metrics_peer, b);
}

void edge__api_metrics_handle(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req)
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
    uint64_t conns = 0, conns_total = 0, bad = 0, ws_out_closed = 0, tls_failures = 0;
    for (int i = 0; i < n->n_loops; i++) {
        struct edge_http_stats st;
        if (n->loops[i].http != NULL) {
            edge_http_server_stats(n->loops[i].http, &st);
            conns += st.connections_open;
            conns_total += st.connections_total;
            bad += st.bad_requests;
            ws_out_closed += st.ws_output_closed;
            tls_failures += st.tls_failures;
        }
    }
    edge_buf_puts(&b, "# HELP edgelite_loop_connections Client connections each event loop serves.\n"
                      "# TYPE edgelite_loop_connections gauge\n");
    for (int i = 0; i < n->n_loops; i++) {
        edge_buf_printf(&b, "edgelite_loop_connections{loop=\"%d\"} %ld\n", i, atomic_load(&n->loops[i].n_conns));
    }
    edge_buf_printf(&b,
                    "# HELP edgelite_connections_handed_off_total Connections a loop accepted and handed to a less "
                    "loaded loop.\n# TYPE edgelite_connections_handed_off_total counter\n"
                    "edgelite_connections_handed_off_total %llu\n",
                    (unsigned long long)atomic_load(&n->m.conns_handed_off));
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
                    "# HELP edgelite_forwards_in_flight Writes sent on to the primary and not yet answered.\n"
                    "# TYPE edgelite_forwards_in_flight gauge\nedgelite_forwards_in_flight %lld\n"
                    "# HELP edgelite_waiting_requests Requests parked until replication satisfies them.\n"
                    "# TYPE edgelite_waiting_requests gauge\n"
                    "edgelite_waiting_requests{kind=\"bookmark\"} %lld\nedgelite_waiting_requests{kind=\"majority\"} %lld\n"
                    "edgelite_waiting_requests{kind=\"crdt_sync\"} %lld\n"
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
                    (long long)atomic_load(&n->m.forwarding), (long long)atomic_load(&n->m.waiting[0]), (long long)atomic_load(&n->m.waiting[1]),
                    (long long)atomic_load(&n->m.waiting[2]),
                    (unsigned long long)atomic_load(&n->m.stmts), (unsigned long long)atomic_load(&n->m.stmt_errors),
                    (unsigned long long)atomic_load(&n->m.rows), (unsigned long long)atomic_load(&n->m.routed[0]),
                    (unsigned long long)atomic_load(&n->m.routed[1]), (unsigned long long)atomic_load(&n->m.routed[2]),
                    (unsigned long long)ws.jobs, (unsigned long long)ws.groups,
                    (unsigned long long)ws.commit_failures, (unsigned long long)edge__api_db_size(n),
                    (unsigned long long)crdt_ops, (unsigned long long)crdt_merges, (unsigned long long)crdt_conflicts,
                    (double)(mono_ms() - n->start_mono_ms) / 1000.0);
    edge_buf_printf(&b,
                    "# HELP edgelite_writer_queue Write jobs waiting for the writer thread.\n"
                    "# TYPE edgelite_writer_queue gauge\nedgelite_writer_queue %llu\n"
                    "# HELP edgelite_writer_queue_limit limits.writer_queue: client writes queued before 503 "
                    "WRITER_BUSY.\n"
                    "# TYPE edgelite_writer_queue_limit gauge\nedgelite_writer_queue_limit %d\n"
                    "# HELP edgelite_writer_refused_total Client writes refused with 503 WRITER_BUSY (queue full).\n"
                    "# TYPE edgelite_writer_refused_total counter\nedgelite_writer_refused_total %llu\n"
                    "# HELP edgelite_ws_output_closed_total WebSocket connections closed with 1009: unsent output over "
                    "limits.ws_output_bytes.\n"
                    "# TYPE edgelite_ws_output_closed_total counter\nedgelite_ws_output_closed_total %llu\n",
                    (unsigned long long)ws.queued, n->writer_queue, (unsigned long long)ws.refused,
                    (unsigned long long)ws_out_closed);
    struct edge_ckpt_stats cks;
    edge_ckpt_stats(n->ckpt, &cks);
    edge_buf_printf(&b,
                    "# HELP edgelite_wal_checkpoints_total WAL checkpoints of the writer's connection: by the "
                    "checkpoint thread, or inline on the writer thread once the WAL passed %llu pages; result ok "
                    "copied pages back, busy copied none (SQLITE_BUSY, or a reader's snapshot), error failed.\n"
                    "# TYPE edgelite_wal_checkpoints_total counter\n"
                    "edgelite_wal_checkpoints_total{by=\"thread\",result=\"ok\"} %llu\n"
                    "edgelite_wal_checkpoints_total{by=\"thread\",result=\"busy\"} %llu\n"
                    "edgelite_wal_checkpoints_total{by=\"thread\",result=\"error\"} %llu\n"
                    "edgelite_wal_checkpoints_total{by=\"writer\",result=\"ok\"} %llu\n"
                    "edgelite_wal_checkpoints_total{by=\"writer\",result=\"busy\"} %llu\n"
                    "edgelite_wal_checkpoints_total{by=\"writer\",result=\"error\"} %llu\n"
                    "# HELP edgelite_wal_hard_limit_total Commits that took the WAL past the hard bound, where the "
                    "writer checkpoints inline.\n"
                    "# TYPE edgelite_wal_hard_limit_total counter\nedgelite_wal_hard_limit_total %llu\n"
                    "# HELP edgelite_wal_checkpoint_seconds_total Time the checkpoint thread spent checkpointing.\n"
                    "# TYPE edgelite_wal_checkpoint_seconds_total counter\nedgelite_wal_checkpoint_seconds_total %.6f\n"
                    "# HELP edgelite_wal_pages WAL size in pages after the writer's last commit.\n"
                    "# TYPE edgelite_wal_pages gauge\nedgelite_wal_pages %llu\n"
                    "# HELP edgelite_wal_pages_left WAL pages the last checkpoint could not copy back (a reader "
                    "holds an older snapshot); the WAL cannot restart while it is above 0.\n"
                    "# TYPE edgelite_wal_pages_left gauge\nedgelite_wal_pages_left %llu\n",
                    (unsigned long long)cks.hard_pages, (unsigned long long)cks.bg_ok,
                    (unsigned long long)cks.bg_busy, (unsigned long long)cks.bg_err, (unsigned long long)cks.wr_ok,
                    (unsigned long long)cks.wr_busy, (unsigned long long)cks.wr_err,
                    (unsigned long long)cks.hard_hits, (double)cks.background_us / 1e6,
                    (unsigned long long)cks.last_wal_pages, (unsigned long long)cks.last_left);
    edge_buf_printf(&b,
                    "# HELP edgelite_tls_failures_total Client connections closed for bad TLS input (not TLS, a "
                    "failed handshake, a broken record) or a handshake not finished in time.\n"
                    "# TYPE edgelite_tls_failures_total counter\nedgelite_tls_failures_total %llu\n",
                    (unsigned long long)tls_failures);
    edge_buf_printf(&b,
                    "# HELP edgelite_router_routed_away_total Reads the router sent to another region (bookmark not "
                    "applied here, strong read not covered).\n"
                    "# TYPE edgelite_router_routed_away_total counter\nedgelite_router_routed_away_total %llu\n"
                    "# HELP edgelite_router_read_index_total Strong reads that asked the primary for its commit "
                    "point.\n"
                    "# TYPE edgelite_router_read_index_total counter\nedgelite_router_read_index_total %llu\n",
                    (unsigned long long)atomic_load(&n->m.routed_away),
                    (unsigned long long)atomic_load(&n->m.read_index));
    edge__api_stats_metrics(n, &b);
    if (n->repl.cluster) metrics_peers(n, l->rconn, &b);
    if (n->repl.cluster) edge__api_cluster_sigs_metrics(n, &b);
    metrics_crdt(l->rconn, &b);
    edge__api_sessions_metrics(l, &b);
    edge__api_realtime_metrics(n, &b);
    edge__api_respond(n, c, req, EP_METRICS, 200, "text/plain; version=0.0.4", NULL, b.data, b.len);
    edge_buf_free(&b);
}
