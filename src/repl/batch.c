/* SPDX-License-Identifier: MIT */
/* Reading the local log for an outbound link (see batch.h). */
#include "repl/batch.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/err.h"
#include "repl/proto.h"
#include "store/sql.h"

int edge_repl_log_vv(sqlite3 *db, struct edge_vclock *vv, char *err, size_t errlen)
{
    static const char q[] = "SELECT origin, seq FROM _edge_vv";
    /* Kept prepared (sql.h): a link reads this for every batch it builds. */
    sqlite3_stmt *st = edge_store_stmt_kept(db, q, sizeof(q) - 1);
    int rv = EDGE_ESTORE;
    if (st == NULL) {
        snprintf(err, errlen, "log: %s", sqlite3_errmsg(db));
        goto out;
    }
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *o = (const char *)sqlite3_column_text(st, 0);
        sqlite3_int64 s = sqlite3_column_int64(st, 1);
        /* A row this link cannot name on the wire is skipped rather than fatal. */
        if (o != NULL && s > 0 && edge_vclock_region_valid(o)) {
            int r2 = edge_vclock_set(vv, o, (uint64_t)s);
            if (r2 != EDGE_OK) {
                rv = r2;
                goto out;
            }
        }
    }
    if (rc != SQLITE_DONE) {
        snprintf(err, errlen, "log: %s", sqlite3_errmsg(db));
        goto out;
    }
    rv = EDGE_OK;
out:
    edge_store_stmt_done(st);
    return rv;
}

struct head {
    const char *origin;   /* borrowed from the local VV */
    sqlite3_stmt *st;
    uint64_t next_seq;    /* seq the current row must have */
    bool live;            /* st is on a row */
};

static int head_step(sqlite3 *db, struct head *h, char *err, size_t errlen)
{
    int rc = sqlite3_step(h->st);
    if (rc == SQLITE_DONE) {
        h->live = false;
        return EDGE_OK;
    }
    if (rc != SQLITE_ROW) {
        snprintf(err, errlen, "log: %s", sqlite3_errmsg(db));
        return EDGE_ESTORE;
    }
    /* Contiguity within an origin: stop at a hole rather than ship past it. */
    h->live = (uint64_t)sqlite3_column_int64(h->st, 0) == h->next_seq;
    return EDGE_OK;
}

int edge_repl_batch_build(sqlite3 *db, struct edge_vclock *sent, int max_entries, size_t max_bytes,
                          struct edge_buf *out, size_t *out_n, char *err, size_t errlen)
{
    struct edge_vclock local;
    struct head *heads = NULL;
    size_t n_heads = 0, n = 0;
    struct edge_buf body;
    bool in_txn = false;
    int rv;
    edge_vclock_init(&local);
    edge_buf_init(&body, EDGE_REPL_FRAME_MAX - 16);
    *out_n = 0;
    /* One read transaction: the VV and the log rows come from the same snapshot. */
    if (edge_store_exec_kept(db, "BEGIN") != SQLITE_OK) {
        snprintf(err, errlen, "log: %s", sqlite3_errmsg(db));
        rv = EDGE_ESTORE;
        goto out;
    }
    in_txn = true;
    rv = edge_repl_log_vv(db, &local, err, errlen);
    if (rv != EDGE_OK) {
        goto out;
    }
    heads = edge_calloc(local.n_entries ? local.n_entries : 1, sizeof(*heads));
    if (heads == NULL) {
        rv = EDGE_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < local.n_entries; i++) {
        const char *o = local.entries[i].region;
        uint64_t have = edge_vclock_get(sent, o);
        if (local.entries[i].n <= have) {
            continue;
        }
        struct head *h = &heads[n_heads++];
        h->origin = o;
        h->next_seq = have + 1;
        /* Kept prepared too; one per origin read at once (a busy one is never handed out). */
        static const char q[] = "SELECT seq, hlc, consistency, deps, payload FROM _edge_log "
                                "WHERE origin = ?1 AND seq >= ?2 AND seq <= ?3 ORDER BY seq LIMIT ?4";
        h->st = edge_store_stmt_kept(db, q, sizeof(q) - 1);
        if (h->st == NULL) {
            snprintf(err, errlen, "log: %s", sqlite3_errmsg(db));
            rv = EDGE_ESTORE;
            goto out;
        }
        sqlite3_bind_text(h->st, 1, o, -1, SQLITE_STATIC);
        sqlite3_bind_int64(h->st, 2, (sqlite3_int64)h->next_seq);
        sqlite3_bind_int64(h->st, 3, (sqlite3_int64)local.entries[i].n);
        sqlite3_bind_int64(h->st, 4, max_entries);
        rv = head_step(db, h, err, errlen);
        if (rv != EDGE_OK) {
            goto out;
        }
        if (!h->live) {
            /* The entry the peer needs next was compacted away (or never logged). */
            snprintf(err, errlen, "needs snapshot: peer lacks %s seq %llu, no longer in the log", o,
                    (unsigned long long)h->next_seq);
            rv = EDGE_ENOTFOUND;
            goto out;
        }
    }
    while (n < (size_t)max_entries && body.len < max_bytes) {
        struct head *best = NULL;
        for (size_t i = 0; i < n_heads; i++) {
            struct head *h = &heads[i];
            if (!h->live) {
                continue;
            }
            uint64_t hlc = (uint64_t)sqlite3_column_int64(h->st, 1);
            uint64_t bh = best ? (uint64_t)sqlite3_column_int64(best->st, 1) : 0;
            if (best == NULL || hlc < bh || (hlc == bh && strcmp(h->origin, best->origin) < 0)) {
                best = h;
            }
        }
        if (best == NULL) {
            break;
        }
        struct edge_repl_entry e;
        memset(&e, 0, sizeof(e));
        snprintf(e.origin, sizeof(e.origin), "%s", best->origin);
        e.seq = best->next_seq;
        e.hlc = (uint64_t)sqlite3_column_int64(best->st, 1);
        sqlite3_int64 cons = sqlite3_column_int64(best->st, 2);
        const uint8_t *deps = sqlite3_column_blob(best->st, 3);
        size_t deps_len = (size_t)sqlite3_column_bytes(best->st, 3);
        e.payload = sqlite3_column_blob(best->st, 4);
        e.payload_len = (size_t)sqlite3_column_bytes(best->st, 4);
        edge_vclock_init(&e.deps);
        size_t used = 0;
        if (cons < 0 || cons > EDGE_REPL_ASYNC || deps == NULL ||
            edge_vclock_decode(&e.deps, deps, deps_len, &used) != EDGE_OK || used != deps_len) {
            edge_vclock_close(&e.deps);
            snprintf(err, errlen, "log: corrupt entry %s seq %llu", best->origin, (unsigned long long)e.seq);
            rv = EDGE_ECORRUPT;
            goto out;
        }
        e.consistency = (uint8_t)cons;
        size_t before = body.len;
        rv = edge_repl_encode_entry(&body, &e);
        edge_vclock_close(&e.deps);
        if (rv != EDGE_OK) {
            body.len = before;
            if (body.data != NULL) {
                body.data[before] = '\0';
            }
            if (rv == EDGE_ETOOBIG && n > 0) {
                rv = EDGE_OK; /* the frame is full: ship what fits */
                break;
            }
            snprintf(err, errlen, "encode entry %s seq %llu: %s", best->origin, (unsigned long long)e.seq,
                    edge_strerror(rv));
            goto out;
        }
        n++;
        best->next_seq++;
        rv = head_step(db, best, err, errlen);
        if (rv != EDGE_OK) {
            goto out;
        }
    }
    edge_buf_reset(out);
    rv = edge_repl_encode_entries_header(out, n);
    if (rv == EDGE_OK) {
        rv = edge_buf_append(out, body.data, body.len);
    }
    for (size_t i = 0; i < n_heads && rv == EDGE_OK; i++) {
        if (heads[i].next_seq - 1 > edge_vclock_get(sent, heads[i].origin)) {
            rv = edge_vclock_set(sent, heads[i].origin, heads[i].next_seq - 1);
        }
    }
    if (rv == EDGE_OK) {
        *out_n = n;
    }
out:
    for (size_t i = 0; i < n_heads; i++) {
        edge_store_stmt_done(heads[i].st);
    }
    edge_free(heads);
    if (in_txn) {
        edge_store_exec_kept(db, "COMMIT");
    }
    edge_vclock_close(&local);
    edge_buf_free(&body);
    return rv;
}

