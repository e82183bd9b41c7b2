/* SPDX-License-Identifier: MIT */
/* Internals shared by the files that apply remote entries: apply.c (entries, payloads
 * and batches), apply_merge.c (merging an operation into a row and the statements that
 * write it) and apply_repair.c (hidden rows: UNIQUE and FOREIGN KEY repair). The design
 * is in apply.c's file comment. Everything here runs on the writer thread, inside the
 * transaction of the batch (or of the local write) being applied. */
#ifndef EDGE_REPL_APPLY_INT_H
#define EDGE_REPL_APPLY_INT_H

#include "repl/repl_int.h"

/* A table's shape, loaded once per batch (dropped at any schema change). */
struct edge__repl_tnode {
    struct edge__tinfo t;
    struct edge__repl_tnode *next;
};

/* One application: a batch, a single entry, a retry of kept entries, or the restore
 * of hidden rows after a local transaction. */
struct edge__repl_actx {
    sqlite3 *db;
    struct edge_repl_apply_stats *stats;
    struct edge__repl_tnode *tables;
    char touched[8][256]; /* tables written (first few), for the foreign-key pass */
    int ntouched;
    bool touched_many;
    bool any_write;
    bool restoring; /* trying hidden rows again: a row that stays hidden is not news */
    bool no_displace; /* in a local transaction: put rows back only where nothing else moves */
    bool guarded;     /* triggers and foreign-key actions are off (or absent) for the batch */
    bool restart;     /* a schema change met an unguarded batch: run it again guarded */
    bool retrying;    /* entries kept in _edge_apply_errors applied again: no horizon rule */
    bool horizon_loaded;
    uint64_t horizon; /* the tombstone horizon (_edge_gc), read once per application */
};

/* Does the schema have any object of these kinds? (see edge__repl_schema_has) */
#define EDGE__Q_HAS_TRIGGERS "SELECT 1 FROM main.sqlite_schema WHERE type = 'trigger' LIMIT 1"
#define EDGE__Q_HAS_FKS \
    "SELECT 1 FROM main.sqlite_schema WHERE type = 'table' AND sql LIKE '%REFERENCES%' LIMIT 1"

/* ---- apply.c ---- */
/* Drop the table shapes cached in x (after a schema change, a rolled-back entry, and
 * before x goes away). */
void edge__repl_tcache_clear(struct edge__repl_actx *x);
/* The shape of table `table`, loaded once per x; the pointer stays valid until
 * edge__repl_tcache_clear. NULL: no such table (or out of memory). */
const struct edge__tinfo *edge__repl_tinfo(struct edge__repl_actx *x, const char *table);
/* Note that the batch wrote table `table` (for the foreign-key pass of edge__repl_fixup). */
void edge__repl_touch(struct edge__repl_actx *x, const char *table);
/* sqlite3_exec of sql without callback or message; returns the SQLite result code. */
int edge__repl_exec(sqlite3 *db, const char *sql);
/* Does query q (EDGE__Q_HAS_*) find a row? true also when it cannot be asked. */
bool edge__repl_schema_has(sqlite3 *db, const char *q);

/* ---- apply_merge.c ---- */
/* Record a conflict in _edge_conflicts: winner w, loser l (l_deleted: the loser was a
 * delete), and when t and limg are given the loser's values (limg->iv/ivl aligned to t).
 * Best effort: a failure to record changes nothing else. */
void edge__repl_record_conflict(sqlite3 *db, const char *kind, const char *table, const void *pk, size_t pklen,
                                const struct edge__stamp *w, const struct edge__stamp *l, bool l_deleted,
                                const struct edge__tinfo *t, const struct edge__rowmeta *limg);
/* DELETE the row with primary key pk (encoded pk values) from t. EDGE_OK also when it
 * was not there; EDGE_ESTORE. */
int edge__repl_delete_row(sqlite3 *db, const struct edge__tinfo *t, const void *pk, size_t pklen);
/* Write a row that exists by its registers into its table: vals/lens aligned to t (NULL =
 * leave, or the default in a new row), present = the row is in its table, m its merged
 * metadata. A row that loses a UNIQUE value is hidden instead (m updated, *out_hidden
 * true; the caller stores m). EDGE_ESTORE, EDGE_ECONFLICT (a UNIQUE failure that cannot
 * be resolved), EDGE_ENOMEM. */
int edge__repl_materialize(struct edge__repl_actx *x, const struct edge__tinfo *t, const void *pk, size_t pklen,
                           const uint8_t *const *vals, const size_t *lens, bool present, struct edge__rowmeta *m,
                           bool *out_hidden);
/* Merge one row operation of an entry stamped op (from op->origin, with dependencies
 * deps) into the row pkb of t: in_v/in_l values and in_s stamps aligned to t (NULL for a
 * column the entry does not carry). *out_applied: the table changed. */
int edge__repl_merge_row(struct edge__repl_actx *x, const struct edge__tinfo *t, const void *pkb, size_t pklen,
                         const uint8_t *const *in_v, const size_t *in_l, const struct edge__stamp *in_s,
                         const struct edge__stamp *op, const struct edge_vclock *deps, bool *out_applied);
/* ---- apply_sess.c: _edge_sessions rows merge as whole records by their version vector ---- */
enum edge__sess_kind {
    EDGE__SESS_SAME,           /* not a session record, or the same vv: the per-column merge */
    EDGE__SESS_IN_NEWER,       /* the incoming record covers the row's: taken whole */
    EDGE__SESS_CUR_NEWER,      /* the row covers the incoming record: ignored */
    EDGE__SESS_CONCURRENT_IN,  /* neither covers the other; the incoming one wins whole */
    EDGE__SESS_CONCURRENT_CUR, /* neither covers the other; the row stays */
};
struct edge__sess_order {
    enum edge__sess_kind kind;
    int vv_col;               /* the vv column, -1 when none */
    struct edge_buf merged;   /* CONCURRENT_*: the merged vv as an encoded value */
};
/* How the incoming row op (in_v, in_s) of t orders against the row pk in its table
 * (which must be live there, its registers m). out->merged: free with ..._free. */
int edge__repl_sess_order(struct edge__repl_actx *x, const struct edge__tinfo *t, const void *pk, size_t pklen,
                          const uint8_t *const *in_v, const size_t *in_l, const struct edge__stamp *in_s,
                          const struct edge__rowmeta *m, struct edge__sess_order *out);
void edge__repl_sess_order_free(struct edge__sess_order *o);
/* The same for a delete of row pkb. */
int edge__repl_merge_delete(struct edge__repl_actx *x, const struct edge__tinfo *t, const void *pkb, size_t pklen,
                            const struct edge__stamp *op, const struct edge_vclock *deps, bool *out_applied);

/* ---- apply_repair.c ---- */
/* Row pk (values vals/lens aligned to t, stamps in m) could not be written because of a
 * secondary UNIQUE index: decide against each row holding the value and hide the loser.
 * *out_lost: the incoming row lost (the caller hides it). EDGE_ECONFLICT when no holder
 * was found (not a conflict this can resolve), EDGE_ESTORE. */
int edge__repl_resolve_unique(struct edge__repl_actx *x, const struct edge__tinfo *t, const void *pk, size_t pklen,
                              const uint8_t *const *vals, const size_t *lens, const struct edge__rowmeta *m,
                              bool *out_lost);
/* End of a batch: put hidden rows back where their conflict is gone and hide the
 * children whose parent is missing, until nothing changes (bounded). EDGE_OK when the
 * batch wrote nothing. */
int edge__repl_fixup(struct edge__repl_actx *x);

#endif
