/* SPDX-License-Identifier: MIT */
/* Compaction of the replication log (see compact.h). */
#include "repl/compact.h"

#include "core/alloc.h"
#include "core/err.h"

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
