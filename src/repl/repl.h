/* SPDX-License-Identifier: MIT */
/* Replication core: change capture on write connections, the change log and version
 * vector, and the deterministic application of remote entries.
 *
 * DESIGN (DESIGN.md section 3, with one deliberate difference)
 * Capture uses SQLite's preupdate hook rather than the session extension: the hook
 * sees the complete new row of every INSERT and UPDATE (sessions keep only the changed
 * columns of an UPDATE), so every logged operation is a full after-image ("upsert") or
 * a delete by primary key. That makes application order-independent under
 * last-writer-wins: whatever order entries arrive in, each row ends as the image of its
 * greatest (hlc, origin) writer, and a delete leaves a tombstone in _edge_rows so an
 * older upsert never resurrects the row. It is also cheaper (PERF-NOTES: hook ~5%,
 * session 50-60%).
 *
 * One log entry per committed write transaction: the writer's group commit makes one
 * entry per group; an interactive transaction makes one at its COMMIT. The entry, the
 * row metadata and the version vector are written in the same SQLite transaction as the
 * data, so an acknowledged write and its log entry are durable together.
 *
 * Conflicts. Applying entry E (origin o_E) to a row last written by (o, s, hlc): if
 * E.deps[o] >= s, E's writer had seen that version: E simply replaces it. Otherwise the
 * two writes were concurrent: the greater (hlc, origin) wins, the loser's image goes to
 * _edge_conflicts, and the conflict counters move. */
#ifndef EDGE_REPL_H
#define EDGE_REPL_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/clock.h"
#include "core/conf.h"
#include "core/vclock.h"

/* Create the _edge_* replication tables if missing. Any write connection. */
int edge_repl_schema_init(sqlite3 *db, char *errmsg, size_t errmsg_len);

/* ---- capture (one per write connection; used only by the thread owning it) ---- */
struct edge_capture;

int edge_capture_create(sqlite3 *db, struct edge_capture **out);
void edge_capture_destroy(struct edge_capture *c);
/* Forget everything captured (a transaction starts or rolled back). */
void edge_capture_reset(struct edge_capture *c);
/* Position to rewind to when a statement or a savepoint is undone. */
size_t edge_capture_mark(const struct edge_capture *c);
void edge_capture_rewind(struct edge_capture *c, size_t mark);
/* While suspended (remote entries being applied) nothing is recorded. */
void edge_capture_suspend(struct edge_capture *c, bool suspended);
/* Anything captured since the last reset? */
bool edge_capture_has_changes(const struct edge_capture *c);
/* User savepoints inside a transaction, so that ROLLBACK TO drops what it undid:
 * SAVEPOINT name (opened_txn: it began the transaction), ROLLBACK TO name, RELEASE name.
 * release_ends_txn: RELEASE of the savepoint that began the transaction commits it. */
void edge_capture_savepoint(struct edge_capture *c, const char *name, bool opened_txn);
void edge_capture_rollback_to(struct edge_capture *c, const char *name);
void edge_capture_release(struct edge_capture *c, const char *name);
bool edge_capture_release_ends_txn(const struct edge_capture *c, const char *name);
/* Record a DDL statement's text (expanded SQL), kept in order with the row changes:
 * replicas run it before the rows that follow it. */
int edge_capture_ddl(struct edge_capture *c, const char *sql, size_t len);
/* Record a /v1/crdt update of object name (type name, e.g. "g-counter") as its delta
 * (an encoded CRDT state, copied), in order with the row changes: it travels in the
 * same log entry as the transaction that saved the object. Nothing while suspended. */
int edge_capture_crdt(struct edge_capture *c, const char *name, const char *type, const void *delta, size_t len);
/* replication.crdt_columns for the checks below (borrowed, NULL: none). */
void edge_capture_set_crdt(struct edge_capture *c, const struct edge_conf_crdt *cc);
/* After a statement that succeeded (captured from mark on; ddl: it changed the schema):
 * the schema still fits replication.crdt_columns and every pn-counter column it wrote
 * holds an integer. EDGE_OK, or an error with the reason in errmsg: the caller undoes
 * the statement (so a bad one fails alone, not the group it would commit with). */
int edge_capture_check(struct edge_capture *c, size_t mark, bool ddl, char *errmsg, size_t errmsg_len);
/* Tables written since the last reset without a PRIMARY KEY: their name, else NULL. */
const char *edge_capture_table_without_pk(struct edge_capture *c);
/* Call cb for every table the captured ops write, in order, repeats included (a schema
 * change: table NULL; undecodable: NULL too, so a caller assumes the worst). */
void edge_capture_tables(const struct edge_capture *c, void (*cb)(void *ud, const char *table, size_t len),
                         void *ud);

/* ---- ids without collisions (ids.c): INTEGER PRIMARY KEY values left to SQLite are
 * striped by region (id % stride == region index) ---- */
#define EDGE_REPL_ID_STRIDE 64 /* more than the regions a cluster may have */
struct edge_ids_result {
    uint64_t assigned;   /* rows the striping triggers inserted for the statement */
    int64_t last;        /* the last of their ids (now last_insert_rowid), 0 if none */
    const char *table;   /* their table (valid until the next statement) */
    const int64_t *ids;  /* their ids, in order (valid until the next statement) */
    char *returning_sql; /* the statement's RETURNING list as "SELECT .. WHERE id = ?1" over
                          * one of those rows, or NULL; caller edge_free()s it */
};
/* Stripe ids on this capture's connection: this region is number index (0-based, its
 * position in the configuration's region list) of at most stride. */
int edge_capture_ids_enable(struct edge_capture *c, int index, int stride);
/* Before preparing a statement (sql, len) on the connection: the triggers follow the
 * schema and know how the statement resolves conflicts. No-op unless enabled. */
int edge_capture_ids_before(struct edge_capture *c, const char *sql, size_t len);
/* After the statement ran (or failed): what the triggers did. */
void edge_capture_ids_after(struct edge_capture *c, struct edge_ids_result *out);

/* Shared by every write connection of a node: the local region and its hybrid clock. */
struct edge_repl_local {
    const char *region;      /* borrowed */
    struct edge_hlc *hlc;    /* guarded by mu */
    void *mu;                /* pthread_mutex_t *, guards hlc */
    const struct edge_conf_crdt *crdt; /* replication.crdt_columns (borrowed), NULL: none */
};

/* Inside the caller's open write transaction: turn what was captured into one log
 * entry of this region (next seq), update _edge_rows and _edge_vv, reset the capture.
 * No-op (out_seq 0) when nothing was captured. On error the caller must roll back.
 * consistency: 0 eventual, 1 strong, 2 async. */
int edge_repl_commit_entry(struct edge_capture *c, const struct edge_repl_local *local, int consistency,
                           uint64_t *out_seq, char *errmsg, size_t errmsg_len);

/* Read the version vector (_edge_vv) into vv (which must be empty). */
int edge_repl_vv_load(sqlite3 *db, struct edge_vclock *vv);

/* ---- applying remote entries ---- */
struct edge_repl_apply_stats {
    uint64_t applied;     /* entries applied */
    uint64_t duplicates;  /* already present, skipped */
    uint64_t deferred;    /* not yet applicable (gap or missing dependency) */
    uint64_t rows;        /* row operations applied */
    uint64_t conflicts;   /* concurrent writes resolved */
    uint64_t max_hlc;     /* greatest timestamp applied: the local clock must move past it */
    uint64_t hidden;      /* rows taken out of their table (UNIQUE loser, orphaned child) */
    uint64_t restored;    /* hidden rows put back (their conflict went away) */
    uint64_t apply_errors; /* entries that failed for good: kept in _edge_apply_errors, skipped */
    uint64_t skewed;      /* entries stamped more than max_skew_ms ahead of the local clock */
    uint64_t ddl_skipped; /* schema changes already in effect here (concurrent identical DDL) */
    uint64_t horizon_drops; /* writes at or below the tombstone horizon to rows with no metadata: lost (tomb.h) */
    uint64_t session_merges; /* concurrent session records merged, one lost (apply_sess.c) */
};

/* Apply one entry inside the caller's open transaction (capture suspended by the
 * caller). Returns EDGE_OK (applied, or a duplicate: *out_status 1 applied, 0 dup),
 * EDGE_EAGAIN when it cannot be applied yet (gap in the origin's sequence or a
 * dependency not yet present), EDGE_ECORRUPT for a malformed payload. */
int edge_repl_apply_entry(sqlite3 *db, const char *origin, uint64_t seq, uint64_t hlc, int consistency,
                          const struct edge_vclock *deps, const uint8_t *payload, size_t payload_len,
                          struct edge_repl_apply_stats *stats, char *errmsg, size_t errmsg_len);

struct edge_repl_entry;

/* Apply a batch of peer entries, in order, in one transaction of the write connection
 * db (which must not be in a transaction; capture suspended by the caller). Each entry
 * runs in its own savepoint: one that cannot be applied yet is skipped (the sender
 * resends it), one that fails for good is kept in _edge_apply_errors with the reason,
 * relayed, and counted as applied so it never blocks the entries behind it. User
 * triggers and foreign-key actions do not run (what they did at the origin is part of
 * the entry); at the end foreign keys and UNIQUE constraints are made to hold by the
 * deterministic rules of apply.c. The local clock (local->hlc) moves past every applied
 * stamp before COMMIT; an entry stamped more than max_skew_ms (0: 500) ahead of the
 * local wall clock is counted (stats->skewed) and logged. Returns EDGE_OK (see stats),
 * or an error for a transient failure (busy, I/O, memory): then nothing was applied. */
int edge_repl_apply_batch(sqlite3 *db, const struct edge_repl_local *local, uint64_t max_skew_ms,
                          const struct edge_repl_entry *entries, size_t count, struct edge_repl_apply_stats *stats,
                          char *errmsg, size_t errmsg_len);

/* The batch as the consecutive frames it came in (session.c applies several queued ENTRIES
 * frames in one transaction): frame k ends before entry ends[k] (ascending, the last one
 * count), and on_frame(ud, db, k) runs inside the transaction once frame k's entries are
 * applied, before any of the next frame's (to read the version vector it leaves). A
 * restarted batch (schema changes) calls it again from frame 0. An error from it fails
 * the batch like a transient one. */
struct edge_repl_frames {
    const size_t *ends;
    size_t n;
    int (*on_frame)(void *ud, sqlite3 *db, size_t k);
    void *ud;
};
int edge_repl_apply_frames(sqlite3 *db, const struct edge_repl_local *local, uint64_t max_skew_ms,
                           const struct edge_repl_entry *entries, size_t count, const struct edge_repl_frames *fr,
                           struct edge_repl_apply_stats *stats, char *errmsg, size_t errmsg_len);

/* Apply again the entries kept in _edge_apply_errors (in their origin's order); the
 * ones that succeed leave the table. Same transaction rules as the batch. *out_left:
 * entries still failing. */
int edge_repl_retry_apply_errors(sqlite3 *db, const struct edge_repl_local *local,
                                 struct edge_repl_apply_stats *stats, uint64_t *out_left, char *errmsg,
                                 size_t errmsg_len);

/* Rows in _edge_apply_errors (0 when the table is missing). */
uint64_t edge_repl_apply_error_count(sqlite3 *db);

/* Move the clock past the greatest stamp stored (log and row metadata), so a region
 * restarted with a clock that is behind its own earlier writes never stamps a new write
 * lower than one it has already made or seen. */
int edge_repl_hlc_recover(sqlite3 *db, struct edge_hlc *hlc);

/* The kept values of a row (_edge_rows.image, _edge_conflicts.loser_image) as a JSON
 * object {column: value} appended to out; "null" for an empty or older image. */
int edge_repl_image_json(const void *p, size_t len, struct edge_buf *out);

/* The version of a row (the log entry that last wrote it) in table, whose primary key
 * columns pkcols[0..npk) (in key order) have the values keys[]: EDGE_OK with origin and
 * seq, EDGE_ENOTFOUND when the row is not in the table (or was written before
 * replication kept its metadata). */
int edge_repl_row_version(sqlite3 *db, const char *table, const char *const *pkcols, int npk,
                          sqlite3_value *const *keys, char *origin, size_t origin_len, uint64_t *seq);

/* Decode a payload for display/tests: calls cb for each op. */
typedef void (*edge_repl_op_cb)(void *ud, const char *table, int op /* 1 upsert, 2 delete */, int ncols);
int edge_repl_payload_walk(const uint8_t *p, size_t len, edge_repl_op_cb cb, void *ud);

#endif
