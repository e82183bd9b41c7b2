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

/* Writer thread, alone: count the log rows added since the last tick into log_bytes,
 * then drop the entries at or below the floor (per origin) and take their bytes off.
 *
 * DESIGN: the size of _edge_log is kept incrementally, not scanned: an origin's entries
 * are only ever added in seq order (own commits, and peers' entries applied in order),
 * so per origin the rows above log_counted[origin] are the new ones: one range read of
 * the primary key per origin and tick. length() of a blob reads no overflow page. The
 * first tick after start counts the whole log once. Counted bytes are what the rows
 * hold (payload + deps) plus 40 per row (in the SQL below) for the key and the record: what the bound is
 * about is the order of magnitude, not SQLite's page layout. */
struct compact_job {
    struct edge_writer_job wjob;
    struct edge_repl_state *st;
    struct edge_vclock floor; /* per origin (every origin the node knows): drop seq <= this */
    uint64_t removed;
};

static int compact_run(struct edge_writer_job *job, struct edge_store_conn *conn)
{
    struct compact_job *cj = (struct compact_job *)job;
    struct edge_repl_state *rs = cj->st;
    sqlite3 *db = edge_store_db(conn);
    sqlite3_stmt *st = NULL, *cnt = NULL, *del_bytes = NULL;
    struct edge_vclock counted;
    edge_vclock_init(&counted);
    (void)edge_vclock_copy(&counted, &rs->log_counted);
    uint64_t added = 0, dropped = 0;
    bool ok = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK;
    ok = ok && sqlite3_prepare_v2(db, "SELECT coalesce(sum(length(payload) + length(deps) + 40), 0), max(seq) "
                                      "FROM _edge_log WHERE origin = ?1 AND seq > ?2", -1, &cnt, NULL) == SQLITE_OK;
    for (size_t i = 0; ok && i < cj->floor.n_entries; i++) {
        const char *o = cj->floor.entries[i].region;
        sqlite3_bind_text(cnt, 1, o, -1, SQLITE_STATIC);
        sqlite3_bind_int64(cnt, 2, (sqlite3_int64)edge_vclock_get(&counted, o));
        if (sqlite3_step(cnt) == SQLITE_ROW && sqlite3_column_type(cnt, 1) != SQLITE_NULL) {
            added += (uint64_t)sqlite3_column_int64(cnt, 0);
            ok = edge_vclock_set(&counted, o, (uint64_t)sqlite3_column_int64(cnt, 1)) == EDGE_OK;
        }
        sqlite3_reset(cnt);
    }
    ok = ok && sqlite3_prepare_v2(db, "SELECT coalesce(sum(length(payload) + length(deps) + 40), 0) "
                                      "FROM _edge_log WHERE origin = ?1 AND seq <= ?2", -1, &del_bytes,
                                  NULL) == SQLITE_OK;
    ok = ok && sqlite3_prepare_v2(db, "DELETE FROM _edge_log WHERE origin = ?1 AND seq <= ?2", -1, &st, NULL) ==
                   SQLITE_OK;
    for (size_t i = 0; ok && i < cj->floor.n_entries; i++) {
        if (cj->floor.entries[i].n == 0) continue;
        sqlite3_bind_text(del_bytes, 1, cj->floor.entries[i].region, -1, SQLITE_STATIC);
        sqlite3_bind_int64(del_bytes, 2, (sqlite3_int64)cj->floor.entries[i].n);
        if (sqlite3_step(del_bytes) == SQLITE_ROW) dropped += (uint64_t)sqlite3_column_int64(del_bytes, 0);
        sqlite3_reset(del_bytes);
        sqlite3_bind_text(st, 1, cj->floor.entries[i].region, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)cj->floor.entries[i].n);
        if (sqlite3_step(st) == SQLITE_DONE) cj->removed += (uint64_t)sqlite3_changes(db);
        sqlite3_reset(st);
    }
    sqlite3_finalize(cnt);
    sqlite3_finalize(del_bytes);
    sqlite3_finalize(st);
    if (!ok || sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        cj->removed = 0;
    } else {
        /* Only what committed moves the count (the writer thread alone writes both). */
        (void)edge_vclock_copy(&rs->log_counted, &counted);
        uint64_t now = atomic_load(&rs->log_bytes) + added;
        atomic_store(&rs->log_bytes, now > dropped ? now - dropped : 0);
    }
    edge_vclock_close(&counted);
    return EDGE_OK;
}

static void compact_complete(struct edge_writer_job *job, int status)
{
    (void)status;
    struct compact_job *cj = (struct compact_job *)job;
    edge_vclock_close(&cj->floor);
    edge_free(cj);
}

static bool covers(const struct edge_vclock *have, const struct edge_vclock *want)
{
    for (size_t k = 0; k < want->n_entries; k++) {
        if (edge_vclock_get(have, want->entries[k].region) < want->entries[k].n) return false;
    }
    return true;
}

/* Loop thread (the compaction tick). The floor is the minimum over this node and every
 * peer not marked needs_snapshot (a peer never heard from keeps all), less the log_keep
 * tail. Past max_log_bytes it is raised to the minimum over the peers whose links are up
 * (never above what some peer acknowledged: an entry no other region holds is never
 * dropped, whatever the bound), and every peer left below it is marked needs_snapshot:
 * its link can no longer catch it up from the log, it must be re-seeded. The mark goes
 * once that peer's acknowledgements reach the floor it was marked at. */
void edge_repl_compact(struct edge_repl_state *st)
{
    if (!st->cluster) return;
    conflicts_trim(st);
    struct compact_job *cj = edge_calloc(1, sizeof(*cj));
    if (cj == NULL) return;
    cj->st = st;
    struct edge_vclock reach, top;
    edge_vclock_init(&cj->floor);
    edge_vclock_init(&reach);
    edge_vclock_init(&top);
    edge_repl_state_vv(st, &cj->floor);
    (void)edge_vclock_copy(&reach, &cj->floor);
    (void)edge_vclock_copy(&top, &cj->floor);
    for (size_t k = 0; k < top.n_entries; k++) top.entries[k].n = 0;
    uint64_t log_bytes = atomic_load(&st->log_bytes);
    bool over = st->max_log_bytes > 0 && log_bytes > st->max_log_bytes;
    bool forced = false;
    pthread_rwlock_rdlock(&st->peers_lock);
    if (st->n_peers == 0) {
        pthread_rwlock_unlock(&st->peers_lock);
        goto drop;
    }
    struct edge_peer_status ps[EDGE_REPL_MAX_PEERS];
    for (int i = 0; i < st->n_peers; i++) {
        edge_peer_status(st->peers[i], &ps[i]);
        if (atomic_load(&st->needs_snapshot[i]) && ps[i].connected && covers(&ps[i].acked, &st->snap_floor[i])) {
            atomic_store(&st->needs_snapshot[i], false);
            EDGE_LOG(EDGE_LOG_INFO, EDGE_MOD_REPL, "peer=%s caught up with the log again (re-seeded)",
                     st->peer_region[i]);
        }
        if (atomic_load(&st->needs_snapshot[i])) continue;
        for (size_t k = 0; k < cj->floor.n_entries; k++) {
            uint64_t theirs = edge_vclock_get(&ps[i].acked, cj->floor.entries[k].region);
            if (theirs < cj->floor.entries[k].n) cj->floor.entries[k].n = theirs;
            if (ps[i].connected && theirs < reach.entries[k].n) reach.entries[k].n = theirs;
            if (theirs > top.entries[k].n) top.entries[k].n = theirs;
        }
    }
    /* Keep a tail per origin so a briefly lagging link rarely needs more than the log. */
    for (size_t k = 0; k < cj->floor.n_entries; k++) {
        uint64_t v = cj->floor.entries[k].n;
        cj->floor.entries[k].n = v > st->log_keep ? v - st->log_keep : 0;
        uint64_t target = reach.entries[k].n < top.entries[k].n ? reach.entries[k].n : top.entries[k].n;
        if (over && target > cj->floor.entries[k].n) {
            cj->floor.entries[k].n = target;
            forced = true;
        }
    }
    for (int i = 0; forced && i < st->n_peers; i++) {
        if (atomic_load(&st->needs_snapshot[i]) || covers(&ps[i].acked, &cj->floor)) continue;
        (void)edge_vclock_copy(&st->snap_floor[i], &cj->floor);
        atomic_store(&st->needs_snapshot[i], true);
        EDGE_LOG(EDGE_LOG_WARN, EDGE_MOD_REPL,
                 "peer=%s needs a snapshot: the log (%llu bytes) passed replication.max_log_bytes (%llu) and is "
                 "compacted past what it acknowledged (link %s); it is re-seeded when it returns",
                 st->peer_region[i], (unsigned long long)log_bytes, (unsigned long long)st->max_log_bytes,
                 ps[i].connected ? "up" : "down");
    }
    for (int i = 0; i < st->n_peers; i++) edge_vclock_close(&ps[i].acked);
    pthread_rwlock_unlock(&st->peers_lock);
    if (forced) atomic_fetch_add(&st->log_forced, 1);
    /* Submitted even with nothing to drop: the job also counts the new rows. */
    cj->wjob.exclusive = true;
    cj->wjob.run = compact_run;
    cj->wjob.complete = compact_complete;
    if (edge_writer_submit(st->writer, &cj->wjob) == EDGE_OK) cj = NULL;
drop:
    edge_vclock_close(&reach);
    edge_vclock_close(&top);
    if (cj != NULL) {
        edge_vclock_close(&cj->floor);
        edge_free(cj);
    }
}
