/* SPDX-License-Identifier: MIT */
/* Compaction of the replication log (see compact.h). */
#include "repl/compact.h"

#include <time.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/log.h"

/* Rows of _edge_conflicts looked at (and at most dropped) per compaction tick: the
 * writer thread is never held long, and a backlog goes away over a few ticks. */
#define CONFLICTS_TRIM_BATCH 5000

/* Writer thread, alone: keep _edge_conflicts within replication.conflicts_keep rows and
 * replication.conflicts_max_age, dropping the oldest (lowest id) first. Only a prefix
 * by id is dropped: a row younger than the age limit stops the walk even if an older
 * one (a skewed clock) follows it; the count limit still bounds the table. */
struct trim_job {
    struct edge_writer_job wjob;
    struct edge_repl_state *st;
    int64_t keep;
    int64_t age_cut_ms; /* rows with at_ms below this are too old */
};

static int64_t one_int(sqlite3 *db, const char *sql, int64_t arg, int64_t dflt)
{
    sqlite3_stmt *q = NULL;
    int64_t v = dflt;
    if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) != SQLITE_OK) return dflt;
    if (arg >= 0) sqlite3_bind_int64(q, 1, arg);
    if (sqlite3_step(q) == SQLITE_ROW && sqlite3_column_type(q, 0) != SQLITE_NULL) v = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    return v;
}

static int trim_run(struct edge_writer_job *job, struct edge_store_conn *conn)
{
    struct trim_job *tj = (struct trim_job *)job;
    sqlite3 *db = edge_store_db(conn);
    sqlite3_stmt *q = NULL;
    uint64_t dropped = 0;
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) return EDGE_OK;
    /* Rows with id <= count_cut are beyond the newest `keep`. Ids only grow and only a
     * prefix is ever removed, so max - min + 1 bounds the count cheaply; the OFFSET walk
     * runs only when the table may be over. */
    int64_t lo = one_int(db, "SELECT min(id) FROM _edge_conflicts", -1, 0);
    int64_t hi = one_int(db, "SELECT max(id) FROM _edge_conflicts", -1, 0);
    int64_t count_cut = 0;
    if (hi > 0 && hi - lo + 1 > tj->keep) {
        count_cut = one_int(db, "SELECT id FROM _edge_conflicts ORDER BY id DESC LIMIT 1 OFFSET ?1", tj->keep, 0);
    }
    int64_t last = 0;
    if (hi > 0 && sqlite3_prepare_v2(db, "SELECT id, at_ms FROM _edge_conflicts ORDER BY id LIMIT ?1", -1, &q,
                                     NULL) == SQLITE_OK) {
        sqlite3_bind_int(q, 1, CONFLICTS_TRIM_BATCH);
        while (sqlite3_step(q) == SQLITE_ROW) {
            int64_t id = sqlite3_column_int64(q, 0);
            if (id > count_cut && sqlite3_column_int64(q, 1) >= tj->age_cut_ms) break;
            last = id;
        }
        sqlite3_finalize(q);
        q = NULL;
    }
    if (last > 0 && sqlite3_prepare_v2(db, "DELETE FROM _edge_conflicts WHERE id <= ?1", -1, &q, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(q, 1, last);
        if (sqlite3_step(q) == SQLITE_DONE) dropped = (uint64_t)sqlite3_changes(db);
        sqlite3_finalize(q);
    }
    if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        dropped = 0;
    }
    if (dropped > 0) {
        struct edge_repl_state *st = tj->st;
        uint64_t total = atomic_fetch_add(&st->stats.conflicts_dropped, dropped) + dropped;
        /* One line per minute at most while retention is dropping rows. */
        static _Atomic int64_t logged_at;
        int64_t now = (int64_t)time(NULL);
        int64_t prev = atomic_load(&logged_at);
        if (now - prev >= 60 && atomic_compare_exchange_strong(&logged_at, &prev, now)) {
            EDGE_LOG(EDGE_LOG_INFO, EDGE_MOD_REPL,
                     "conflicts: retention dropped %llu old _edge_conflicts row(s) (%llu since start; keep %lld, "
                     "max age %lld s)",
                     (unsigned long long)dropped, (unsigned long long)total, (long long)tj->keep,
                     (long long)(tj->st->conf->conflicts_max_age_ms / 1000));
        }
    }
    return EDGE_OK;
}

static void trim_complete(struct edge_writer_job *job, int status)
{
    (void)status;
    edge_free(job);
}

static void conflicts_trim(struct edge_repl_state *st)
{
    if (st->conf == NULL) return;
    struct trim_job *tj = edge_calloc(1, sizeof(*tj));
    if (tj == NULL) return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t now_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    tj->st = st;
    tj->keep = st->conf->conflicts_keep;
    tj->age_cut_ms = now_ms - st->conf->conflicts_max_age_ms;
    tj->wjob.exclusive = true;
    tj->wjob.run = trim_run;
    tj->wjob.complete = trim_complete;
    if (edge_writer_submit(st->writer, &tj->wjob) != EDGE_OK) edge_free(tj);
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

void edge_repl_compact(struct edge_repl_state *st)
{
    if (!st->cluster) return;
    conflicts_trim(st);
    struct compact_job *cj = edge_calloc(1, sizeof(*cj));
    if (cj == NULL) return;
    edge_vclock_init(&cj->floor);
    edge_repl_state_vv(st, &cj->floor);
    /* floor = min over this node and every peer; a peer never heard from keeps all. */
    pthread_rwlock_rdlock(&st->peers_lock);
    if (st->n_peers == 0) {
        pthread_rwlock_unlock(&st->peers_lock);
        edge_vclock_close(&cj->floor);
        edge_free(cj);
        return;
    }
    for (int i = 0; i < st->n_peers; i++) {
        struct edge_peer_status ps;
        edge_peer_status(st->peers[i], &ps);
        for (size_t k = 0; k < cj->floor.n_entries; k++) {
            uint64_t theirs = edge_vclock_get(&ps.acked, cj->floor.entries[k].region);
            if (theirs < cj->floor.entries[k].n) cj->floor.entries[k].n = theirs;
        }
        edge_vclock_close(&ps.acked);
    }
    pthread_rwlock_unlock(&st->peers_lock);
    /* Keep a tail per origin so a briefly lagging link rarely needs more than the log. */
    for (size_t k = 0; k < cj->floor.n_entries; k++) {
        uint64_t v = cj->floor.entries[k].n;
        cj->floor.entries[k].n = v > st->log_keep ? v - st->log_keep : 0;
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
    if (edge_writer_submit(st->writer, &cj->wjob) != EDGE_OK) {
        edge_vclock_close(&cj->floor);
        edge_free(cj);
    }
}
