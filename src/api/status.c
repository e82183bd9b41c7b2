/* SPDX-License-Identifier: MIT */
/* GET /v1/status and GET /v1/conflicts: what this region holds and how its links are. */
#include "api/node_int.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "repl/peer.h"
#include "repl/tomb.h"

uint64_t edge__api_db_size(struct edge_node *n)
{
    struct stat st;
    uint64_t total = 0;
    if (stat(n->db_path, &st) == 0) total += (uint64_t)st.st_size;
    char wal[4200];
    snprintf(wal, sizeof(wal), "%s-wal", n->db_path);
    if (stat(wal, &st) == 0) total += (uint64_t)st.st_size;
    return total;
}

bool edge__api_peer_link_status(struct edge_node *n, const char *region, struct edge_peer_status *out)
{
    bool found = false;
    memset(out, 0, sizeof(*out));
    pthread_rwlock_rdlock(&n->repl.peers_lock);
    for (int i = 0; i < n->repl.n_peers && !found; i++) {
        if (n->repl.peers[i] != NULL && strcmp(n->repl.peer_region[i], region) == 0) {
            edge_peer_status(n->repl.peers[i], out);
            edge_vclock_close(&out->acked);
            found = true;
        }
    }
    pthread_rwlock_unlock(&n->repl.peers_lock);
    return found;
}

static void status_peer(void *ud, int i, const struct edge_repl_peer_view *v)
{
    struct edge_buf *b = ud;
    const struct edge_peer_status *ps = v->status;
    if (i > 0) edge_buf_putc(b, ',');
    edge_buf_puts(b, "{\"region\":");
    edge_buf_json_cstr(b, v->region);
    edge_buf_puts(b, ",\"url\":");
    edge_buf_json_cstr(b, v->url);
    edge_buf_printf(b, ",\"connected\":%s,\"rtt_ms\":%.3f,\"lag_ms\":%.0f,\"pending\":%llu,\"clock_offset_ms\":",
                    ps->connected ? "true" : "false", ps->rtt_ms, v->lag_ms, (unsigned long long)v->pending);
    if (ps->clock_offset_known) {
        edge_buf_printf(b, "%.1f", ps->clock_offset_ms);
    } else {
        edge_buf_puts(b, "null");
    }
    edge_buf_puts(b, ",\"acked\":{");
    for (size_t k = 0; k < ps->acked.n_entries; k++) {
        if (k > 0) edge_buf_putc(b, ',');
        edge_buf_json_cstr(b, ps->acked.entries[k].region);
        edge_buf_printf(b, ":%llu", (unsigned long long)ps->acked.entries[k].n);
    }
    edge_buf_printf(b,
                    "},\"entries_sent\":%llu,\"bytes_sent\":%llu,\"retries\":%llu,\"in_flight\":%d,"
                    "\"in_flight_bytes\":%zu,\"window_full\":%llu,\"auth_failures\":%llu,\"mac_errors\":%llu,"
                    "\"needs_snapshot\":%s,\"log_missing\":%llu,\"last_error\":",
                    (unsigned long long)ps->entries_sent, (unsigned long long)ps->bytes_sent,
                    (unsigned long long)ps->retries, ps->in_flight, ps->in_flight_bytes,
                    (unsigned long long)ps->window_full, (unsigned long long)ps->auth_failures,
                    (unsigned long long)ps->mac_errors, v->needs_snapshot ? "true" : "false",
                    (unsigned long long)ps->needs_snapshot);
    edge_buf_json_cstr(b, ps->last_error);
    edge_buf_putc(b, '}');
}

/* "origin":n,... of a version vector. */
static void vv_json(struct edge_buf *b, const struct edge_vclock *vv)
{
    for (size_t i = 0; i < vv->n_entries; i++) {
        if (i > 0) edge_buf_putc(b, ',');
        edge_buf_json_cstr(b, vv->entries[i].region);
        edge_buf_printf(b, ":%llu", (unsigned long long)vv->entries[i].n);
    }
}

/* The unsigned decimal value of `key` in a raw query string ("a=1&b=2"). false when absent;
 * *out_bad is set when present but not a number in [0, max]. */
static bool query_u64(const char *q, const char *key, uint64_t max, uint64_t *out, bool *out_bad)
{
    size_t klen = strlen(key);
    for (const char *p = q; p != NULL && *p != '\0'; p = strchr(p, '&') ? strchr(p, '&') + 1 : NULL) {
        if (strncmp(p, key, klen) != 0 || p[klen] != '=') continue;
        const char *v = p + klen + 1;
        uint64_t x = 0;
        size_t i = 0;
        for (; v[i] >= '0' && v[i] <= '9' && i < 20; i++) x = x * 10 + (uint64_t)(v[i] - '0');
        if (i == 0 || (v[i] != '\0' && v[i] != '&') || x > max) {
            *out_bad = true;
            return false;
        }
        *out = x;
        return true;
    }
    return false;
}

/* GET /v1/conflicts[?limit=N&before=ID]: resolved conflicts, newest first, a page of at most
 * `limit` (default 1000, at most 10000) with ids below `before`; "next_before" continues. */
void edge__api_conflicts_handle(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req)
{
    struct edge_node *n = l->node;
    uint64_t limit = 1000, before = (uint64_t)INT64_MAX;
    bool bad = false;
    query_u64(req->query, "limit", 10000, &limit, &bad);
    query_u64(req->query, "before", (uint64_t)INT64_MAX, &before, &bad);
    if (bad || limit == 0) {
        edge__api_respond_error(n, c, req, EP_STATUS, 400, "BAD_QUERY", "limit must be 1..10000 and before a conflict id");
        return;
    }
    int64_t last_id = -1;
    struct edge_buf b;
    edge_buf_init(&b, 16u << 20);
    edge_buf_puts(&b, "{\"region\":");
    edge_buf_json_cstr(&b, n->region);
    edge_buf_puts(&b, ",\"conflicts\":[");
    sqlite3_stmt *st = NULL;
    uint64_t total = 0;
    if (n->repl.cluster &&
        sqlite3_prepare_v2(edge_store_db(l->rconn),
                           "SELECT id, tbl, hex(pk), winner_origin, winner_seq, winner_hlc, loser_origin, loser_seq,"
                           " loser_hlc, loser_deleted, at_ms, (SELECT count(*) FROM _edge_conflicts), kind, loser_image"
                           " FROM _edge_conflicts WHERE id < ?1 ORDER BY id DESC LIMIT ?2",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, (sqlite3_int64)before);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)limit);
        int i = 0;
        while (sqlite3_step(st) == SQLITE_ROW) {
            if (i++ > 0) edge_buf_putc(&b, ',');
            total = (uint64_t)sqlite3_column_int64(st, 11);
            last_id = sqlite3_column_int64(st, 0);
            edge_buf_printf(&b, "{\"id\":%lld,\"table\":", (long long)sqlite3_column_int64(st, 0));
            edge_buf_json_cstr(&b, (const char *)sqlite3_column_text(st, 1));
            edge_buf_puts(&b, ",\"pk_hex\":");
            edge_buf_json_cstr(&b, (const char *)sqlite3_column_text(st, 2));
            edge_buf_puts(&b, ",\"winner\":{\"origin\":");
            edge_buf_json_cstr(&b, (const char *)sqlite3_column_text(st, 3));
            edge_buf_printf(&b, ",\"seq\":%lld,\"hlc\":%lld},\"loser\":{\"origin\":",
                            (long long)sqlite3_column_int64(st, 4), (long long)sqlite3_column_int64(st, 5));
            edge_buf_json_cstr(&b, (const char *)sqlite3_column_text(st, 6));
            edge_buf_printf(&b, ",\"seq\":%lld,\"hlc\":%lld,\"deleted\":%s,\"values\":",
                            (long long)sqlite3_column_int64(st, 7), (long long)sqlite3_column_int64(st, 8),
                            sqlite3_column_int(st, 9) ? "true" : "false");
            /* kind: row (concurrent writes of one row), unique (a UNIQUE value went to the
             * greater stamp; values are the loser's row, taken out of its table), fk (a
             * child whose parent is gone, taken out of its table) */
            struct edge_buf vals;
            edge_buf_init(&vals, 8u << 20);
            if (edge_repl_image_json(sqlite3_column_blob(st, 13), (size_t)sqlite3_column_bytes(st, 13), &vals) !=
                EDGE_OK) {
                edge_buf_reset(&vals);
                edge_buf_puts(&vals, "null");
            }
            edge_buf_append(&b, vals.data, vals.len);
            edge_buf_free(&vals);
            edge_buf_printf(&b, "},\"kind\":");
            edge_buf_json_cstr(&b, sqlite3_column_text(st, 12) ? (const char *)sqlite3_column_text(st, 12) : "row");
            edge_buf_printf(&b, ",\"at_ms\":%lld}", (long long)sqlite3_column_int64(st, 10));
        }
    }
    sqlite3_finalize(st);
    st = NULL;
    if (last_id < 0 && n->repl.cluster &&
        sqlite3_prepare_v2(edge_store_db(l->rconn), "SELECT count(*) FROM _edge_conflicts", -1, &st, NULL) ==
            SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        total = (uint64_t)sqlite3_column_int64(st, 0); /* an empty page still says how many there are */
    }
    sqlite3_finalize(st);
    edge_buf_printf(&b, "],\"total\":%llu", (unsigned long long)total);
    if (last_id >= 0 && (uint64_t)last_id <= before) {
        edge_buf_printf(&b, ",\"next_before\":%lld", (long long)last_id);
    }
    edge_buf_putc(&b, '}');
    edge__api_respond(n, c, req, EP_STATUS, 200, "application/json", NULL, b.data, b.len);
    edge_buf_free(&b);
}

void edge__api_status_handle(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req)
{
    struct edge_node *n = l->node;
    struct edge_buf b;
    edge_buf_init(&b, 1 << 20);
    edge_buf_puts(&b, "{\"region\":");
    edge_buf_json_cstr(&b, n->region);
    bool is_primary = strcmp(n->repl.primary, n->region) == 0;
    edge_buf_printf(&b, ",\"version\":\"%s\",\"uptime_s\":%.3f,\"started_at_ms\":%llu,\"role\":\"%s\",\"primary\":",
                    EDGE_VERSION, (double)(mono_ms() - n->start_mono_ms) / 1000.0,
                    (unsigned long long)n->start_wall_ms, is_primary ? "primary" : "replica");
    edge_buf_json_cstr(&b, n->repl.primary);
    edge_buf_printf(&b, ",\"db_path\":");
    edge_buf_json_cstr(&b, n->db_path);
    edge_buf_printf(&b, ",\"db_size_bytes\":%llu,\"threads\":%d,\"auth\":%s,\"replicating\":%s,\"version_vector\":{",
                    (unsigned long long)edge__api_db_size(n), n->n_loops, n->keys ? "true" : "false",
                    n->repl.cluster ? "true" : "false");
    struct edge_vclock vv;
    edge_vclock_init(&vv);
    edge_repl_state_vv(&n->repl, &vv);
    vv_json(&b, &vv);
    edge_vclock_close(&vv);
    edge_buf_puts(&b, "},\"log_floor\":{");
    if (n->repl.cluster) {
        /* Per origin, the highest seq no longer in the log (compacted): a region that has
         * not applied up to it cannot catch up from this node's log. */
        struct edge_vclock floor;
        edge_vclock_init(&floor);
        edge_repl_log_floor(&n->repl, edge_store_db(l->rconn), &floor);
        vv_json(&b, &floor);
        edge_vclock_close(&floor);
    }
    edge_buf_puts(&b, "}");
    if (n->repl.cluster) {
        edge_buf_printf(&b,
                        ",\"apply_errors\":%llu,\"apply_failures_total\":%llu,\"hidden_rows_total\":%llu,"
                        "\"restored_rows_total\":%llu,\"skewed_entries_total\":%llu,\"max_clock_skew_ms\":%llu,"
                        "\"peer_auth_refused_total\":%llu,\"peer_mac_errors_total\":%llu",
                        (unsigned long long)edge_repl_apply_error_count(edge_store_db(l->rconn)),
                        (unsigned long long)atomic_load(&n->repl.stats.apply_errors),
                        (unsigned long long)atomic_load(&n->repl.stats.hidden),
                        (unsigned long long)atomic_load(&n->repl.stats.restored),
                        (unsigned long long)atomic_load(&n->repl.stats.skewed),
                        (unsigned long long)n->repl.max_skew_ms,
                        (unsigned long long)atomic_load(&n->repl.stats.peer_auth_refused),
                        (unsigned long long)atomic_load(&n->repl.stats.peer_mac_errors));
        struct edge_repl_tomb_info ti;
        edge_repl_tomb_info(&n->repl, &ti);
        edge_buf_printf(&b,
                        ",\"tombstones\":%llu,\"tombstones_collected_total\":%llu,\"tombstone_horizon_hlc\":%llu,"
                        "\"tombstone_gc_waiting_ms\":%lld,\"tombstone_gc_waiting_for\":",
                        (unsigned long long)edge_repl_tomb_count(edge_store_db(l->rconn)),
                        (unsigned long long)ti.collected,
                        (unsigned long long)ti.horizon_hlc, (long long)ti.waiting_ms);
        if (ti.waiting_for[0] != '\0') edge_buf_json_str(&b, ti.waiting_for, strlen(ti.waiting_for));
        else edge_buf_puts(&b, "null");
        edge_buf_printf(&b, ",\"log_bytes\":%llu,\"max_log_bytes\":%llu,\"log_forced_compactions\":%llu",
                        (unsigned long long)atomic_load(&n->repl.log_bytes),
                        (unsigned long long)n->repl.max_log_bytes,
                        (unsigned long long)atomic_load(&n->repl.log_forced));
    }
    edge_buf_puts(&b, ",\"peers\":[");
    edge_repl_peers_walk(&n->repl, edge_store_db(l->rconn), status_peer, &b);
    edge_buf_puts(&b, "]}");
    edge__api_respond(n, c, req, EP_STATUS, 200, "application/json", NULL, b.data, b.len);
    edge_buf_free(&b);
}
