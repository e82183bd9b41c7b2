/* SPDX-License-Identifier: MIT */
/* The change feed: every log entry that becomes durable on this node, local or applied
 * from a peer, handed to in-process listeners (the real-time engine, the router's cache
 * invalidation) in the order the node holds them.
 *
 * DESIGN. The feed reads the change log (_edge_log) itself instead of trusting each
 * commit site to pass what it wrote: local writes commit on the writer thread (groups)
 * and on pool threads (interactive transactions), peer entries on the writer alone, and
 * those calls can race each other out of seq order. After any of them commits, it calls
 * edge_feed_dispatch with its own connection; under the feed lock the dispatcher reads
 * every entry past its cursor (one version vector) in one snapshot, merges the origins
 * by hybrid timestamp (an entry's dependencies always stamp lower, so that order is
 * causal, and it is per-origin seq order), and calls every listener once per entry.
 * SQLite serialises writers and seqs are taken inside the write transaction, so any
 * snapshot that holds seq n of an origin holds every seq below it: nothing is skipped,
 * nothing delivered twice. Conflicts this node resolved are read from _edge_conflicts by
 * the entries read (either version) and attached to the op of the version of the pair
 * that comes second in this reader's order (feed_conflicts.c): the same rule for the
 * live dispatch and for a catch-up from the log, so each reader gets each conflict once.
 *
 * Cost: with no listener, dispatch is one atomic load. With listeners: a read of
 * _edge_vv, one range read of _edge_log per origin that moved, and per origin two index
 * range reads of _edge_conflicts.
 *
 * Listeners run on the committing thread (writer or pool), one at a time, with the feed
 * lock held: they must be quick (copy what they need and hand it to their own threads)
 * and must not call back into the feed. Pointers in an entry are valid during the call.
 *
 * Insert or update: the payload keeps full row images (repl.h), so the kind is read from
 * the row's column stamps: a write that stamped every column of the row (a new row, a
 * row over a tombstone or one replication had never seen) is an insert, else an update; a
 * later write of a key the same entry already wrote (and did not delete) is an update.
 * Every region decodes the same payload the same way, so an event is identical wherever
 * it is read, live or from the log (what resuming at another region needs). */
#ifndef EDGE_REPL_FEED_H
#define EDGE_REPL_FEED_H

#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/vclock.h"

#define EDGE_FEED_INSERT 1
#define EDGE_FEED_UPDATE 2
#define EDGE_FEED_DELETE 3
#define EDGE_FEED_DDL 4
#define EDGE_FEED_CRDT 5 /* a /v1/crdt update: table = object name, sql = its type name, no columns */
#define EDGE_FEED_MAX_LISTENERS 8

/* One column of an op: its name and its value in the payload's encoding (capture.c);
 * edge_feed_value_json writes it as JSON. */
struct edge_feed_col {
    const char *name;
    size_t name_len;
    const uint8_t *val;
    size_t val_len;
};

/* A conflict this node resolved on the op's row: the winning and the losing version.
 * this_won says which one the op is (the one of the pair the reader gets second). loser_image is _edge_conflicts.loser_image
 * (edge_repl_image_json renders it). */
struct edge_feed_conflict {
    bool this_won;
    const char *winner_origin;
    uint64_t winner_seq, winner_hlc;
    const char *loser_origin;
    uint64_t loser_seq, loser_hlc;
    bool loser_deleted;
    const uint8_t *loser_image;
    size_t loser_image_len;
    const char *kind; /* "row", or another kind _edge_conflicts records */
};

struct edge_feed_op {
    const char *table; /* not NUL-terminated: table_len */
    size_t table_len;
    int kind;          /* EDGE_FEED_INSERT, _UPDATE, _DELETE, _DDL, _CRDT */
    const char *sql;   /* DDL text (not NUL-terminated) */
    size_t sql_len;
    int ncols;         /* insert/update: every column of the row; delete: the key columns */
    const struct edge_feed_col *cols;
    int npk;           /* key columns: cols[pk[i]] (npk 0 when the table is unknown here) */
    const int *pk;
    const struct edge_feed_conflict *conflict; /* NULL unless this node resolved one */
    /* update/delete: the row before the change at the origin, every column its record had
     * (capture_old.c); NULL (nold 0) when the entry carries none (an insert, a row over
     * EDGE_REPL_OLD_MAX bytes, edgelite's own tables, an entry of an older node). */
    int nold;
    const struct edge_feed_col *old;
};

struct edge_feed_entry {
    const char *origin;
    uint64_t seq, hlc;
    int consistency; /* 0 eventual, 1 strong, 2 async */
    const uint8_t *payload;
    size_t payload_len;
    const struct edge_feed_op *ops;
    size_t n_ops;
};

struct edge_feed_listener {
    void (*entry)(void *ud, const struct edge_feed_entry *e);
    /* The database changed in a way the entries do not describe (a snapshot was
     * installed, or entries were compacted before the feed read them): anything derived
     * from earlier entries must be dropped. May be NULL. */
    void (*reset)(void *ud);
    void *ud;
};

/* ---- the commit guard: what a commit is about to make visible ----
 *
 * Listeners hear of an entry after its COMMIT; a reader that must never be older than the
 * database (the router's hot-read cache) needs to know before. Every commit site marks
 * the tables it writes BEFORE its COMMIT (edge_feed_mark_*) and unmarks them once the
 * commit is visible (or rolled back) and dispatched (edge_feed_unmark); the guard is told
 * of both. A mark is the commit site's own (zero-initialised, any thread that owns it);
 * marking the same mark again only adds tables. One guard per node, set before the node
 * serves and cleared after every committing thread stopped (so it needs no lock). */
#define EDGE_FEED_MARK_MAX 32
struct edge_feed_mark {
    bool all;                          /* anything may change (DDL, unknown tables, too many) */
    int n;
    uint32_t key[EDGE_FEED_MARK_MAX];  /* the guard's keys of the marked tables */
};
struct edge_feed_guard {
    /* Mark table[0..len) in m (table NULL: everything); the guard dedups in m. */
    void (*mark)(void *ud, const char *table, size_t len, struct edge_feed_mark *m);
    /* Undo everything m holds, and empty it. */
    void (*unmark)(void *ud, struct edge_feed_mark *m);
    void *ud;
};

/* Embedded in struct edge_repl_state (repl/state.h). */
struct edge_repl_feed {
    pthread_mutex_t mu;
    _Atomic int n;                    /* listeners: dispatch is free while 0 */
    struct edge_feed_listener l[EDGE_FEED_MAX_LISTENERS];
    struct edge_vclock cursor;        /* last entry delivered per origin */
    bool cursor_set;                  /* false: start from what the database holds at the next dispatch */
    _Atomic uint64_t delivered;       /* entries handed to listeners */
    _Atomic bool skipped;             /* a dispatch found no listener: the cursor fell behind */
    struct edge_feed_guard guard;     /* mark NULL: none */
    int test_delay_ms;                /* EDGE_TEST_FEED_DELAY_MS: tests only (docs/testing.md) */
};

struct edge_repl_state;

void edge_feed_init(struct edge_repl_feed *f);
void edge_feed_close(struct edge_repl_feed *f);

/* Register a listener (copied). It receives the entries committed after the first
 * dispatch that follows; register before the node serves to miss nothing. EDGE_EBUSY
 * when EDGE_FEED_MAX_LISTENERS are registered. Any thread. */
int edge_feed_listen(struct edge_repl_state *st, const struct edge_feed_listener *l);
/* Remove the listener(s) with this ud. Any thread; once it returns, none is running. */
void edge_feed_unlisten(struct edge_repl_state *st, void *ud);

/* At open, on the writer's connection: entries already in the log are history; the
 * feed starts after them. */
int edge_feed_open(struct edge_repl_state *st, sqlite3 *db);
/* A transaction committed on db (the committing thread's connection, not inside a
 * transaction): deliver every entry past the cursor. Any thread. */
void edge_feed_dispatch(struct edge_repl_state *st, sqlite3 *db);
/* Set (g) or clear (NULL) the commit guard; see above for when. */
void edge_feed_guard_set(struct edge_repl_state *st, const struct edge_feed_guard *g);
struct edge_capture;
struct edge_repl_entry;
/* Before COMMIT: mark what the capture holds (its tables; a schema change: everything). */
void edge_feed_mark_capture(struct edge_repl_state *st, const struct edge_capture *cap, struct edge_feed_mark *m);
/* Before applying peer entries on db: mark the tables of their payloads, or everything
 * when the schema has foreign keys (the apply's repairs hide rows of other tables). */
void edge_feed_mark_entries(struct edge_repl_state *st, sqlite3 *db, const struct edge_repl_entry *entries,
                            size_t count, struct edge_feed_mark *m);
void edge_feed_mark_all(struct edge_repl_state *st, struct edge_feed_mark *m);
/* After the commit is visible (and dispatched) or rolled back. An empty mark is a no-op. */
void edge_feed_unmark(struct edge_repl_state *st, struct edge_feed_mark *m);

/* After a snapshot install: tell the listeners, and restart from what db holds. */
void edge_feed_reset(struct edge_repl_state *st);

/* Read the log entries in (*pos, to] on db, in the order dispatch delivers them (causal,
 * per-origin seq order), at most max of them, calling cb for each (ops decoded,
 * conflicts attached as in a dispatch, with *pos as the reader's position); *pos advances to the position reached. *out_gap: an origin's next entry
 * was no longer in the log (compacted); nothing of that origin was delivered then.
 * *out_more: entries remain. For readers that catch up from a bookmark. */
int edge_feed_read(sqlite3 *db, struct edge_vclock *pos, const struct edge_vclock *to, size_t max,
                   void (*cb)(void *ud, const struct edge_feed_entry *e), void *ud, bool *out_gap, bool *out_more);

/* ---- decoding, for listeners and for readers of _edge_log (the same shape) ---- */

/* Decode a log entry's payload into ops (for key columns the table's schema is read on
 * db; db may be NULL, then npk is 0 for row ops). *out_ops and what they point to (but
 * the payload) are one allocation: edge_free(*out_ops). */
int edge_feed_decode(sqlite3 *db, const char *origin, uint64_t seq, const uint8_t *payload, size_t len,
                     struct edge_feed_op **out_ops, size_t *out_n);

/* One encoded value as JSON: integers as numbers, floats (non-finite: null), text as
 * strings, blobs as {"base64": "..."}, null. */
int edge_feed_value_json(const uint8_t *p, size_t len, struct edge_buf *out);
/* The op's columns as a JSON object {"col": value, ...}. */
int edge_feed_row_json(const struct edge_feed_op *op, struct edge_buf *out);
/* The op's key: the value of a one-column key, else an array in key order; null when
 * the key columns are unknown. */
int edge_feed_pk_json(const struct edge_feed_op *op, struct edge_buf *out);
/* The value of column name in op (NULL if absent); for filters. */
const struct edge_feed_col *edge_feed_col_find(const struct edge_feed_op *op, const char *name);

#endif
