/* SPDX-License-Identifier: MIT */
/* Internals shared by capture.c and the apply files (apply.c, apply_merge.c,
 * apply_repair.c; their own internals are in apply_int.h). */
#ifndef EDGE_REPL_INT_H
#define EDGE_REPL_INT_H

#include "repl/repl.h"
#include "store/sql.h"

/* 3: row and delete operations name their columns (matched by name on apply, so a
 * schema that differs by an ADD/DROP COLUMN still applies); 2 was positional. */
#define EDGE_REPL_PAYLOAD_VERSION 3
#define EDGE_REPL_OP_ROW 1    /* full row image + a stamp per column */
#define EDGE_REPL_OP_UPSERT EDGE_REPL_OP_ROW
#define EDGE_REPL_OP_DELETE 2
#define EDGE_REPL_OP_DDL 3
/* A /v1/crdt update: str name (in the table slot), str type name, str delta (an encoded
 * CRDT state holding just the change, with the object's clock after it at the origin).
 * Applied by joining the delta into the object (crdt_apply.c). */
#define EDGE_REPL_OP_CRDT 4
/* A row like EDGE_REPL_OP_ROW followed by varint n, then n times: varint column (index
 * in the op's column list), then u8 1 (pn-counter) + zigzag varint difference, or u8 2
 * (or-set) + str delta (an encoded OR-Set state) (crdt_cols.c). */
#define EDGE_REPL_OP_ROWX 5
/* The row as it was before the op that follows (an update's or a delete's), at the
 * origin: varint n, n column names, n values (a delete's layout). Only the change feed
 * reads it (feed.c: an event's "old"); apply skips it. Not written for edgelite's own
 * tables, nor when its values exceed EDGE_REPL_OLD_MAX bytes (docs/realtime.md). */
#define EDGE_REPL_OP_OLD 6
#define EDGE_REPL_OLD_MAX 16384
#define EDGE__OP_DDL_RAW 100 /* raw capture record kind for DDL text */
#define EDGE__OP_CRDT_RAW 101 /* raw capture record kind for a CRDT delta */
#define EDGE_REPL_MAX_PK 32

/* A value the preupdate hook reported for a column the stored record does not have
 * (raw capture records only, capture.c); edge__repl_raw_skip skips one raw value. */
#define EDGE__RAW_UNKNOWN 5
int edge__repl_raw_skip(struct edge__rd *r);

/* struct edge__rd, the bounds-checked reader over p[0..len), is core/vclock.h's. */

struct edge__pkinfo {
    int ncols;
    int npk;
    int pk[EDGE_REPL_MAX_PK]; /* column index of the i-th primary key column */
};

/* A table's columns as they are here (pragma_table_info), by position. */
struct edge__tinfo {
    char name[256];
    struct edge__pkinfo pk;
    char **cols;    /* pk.ncols names, owned */
};
int edge__tinfo_load(sqlite3 *db, const char *table, struct edge__tinfo *out);
void edge__tinfo_free(struct edge__tinfo *t);
/* Index of column name[0..len) (case-insensitive, as SQLite), or -1. */
int edge__tinfo_col(const struct edge__tinfo *t, const char *name, size_t len);
/* The same, following renames recorded in _edge_renames (renames.c). */
int edge__tinfo_col_db(sqlite3 *db, const struct edge__tinfo *t, const char *name, size_t len);
/* After a schema statement succeeded: record it if it renames a table or a column. */
int edge__renames_note(sqlite3 *db, const char *sql, size_t len);
/* What a table (table NULL) or a column of table is called now: EDGE_ENOTFOUND if it
 * was never renamed. */
int edge__renames_resolve(sqlite3 *db, const char *table, const char *name, size_t len, char *out, size_t outlen);
/* capture_old.c: skip the body of an EDGE_REPL_OP_OLD (after its kind byte); append one
 * for the raw old values at oldset (ncols, in ti's order) to body, counting it in n_ops. */
int edge__repl_skip_old(struct edge__rd *r);
int edge__repl_put_old(struct edge_buf *body, const struct edge__tinfo *ti, const char *table, size_t tl,
                       struct edge__rd oldset, uint64_t ncols, uint64_t *n_ops);

/* The per-connection statement cache of store/sql.h, under the names capture and apply
 * use: the per-row SQL of capture and apply is parsed once, not per row. */
static inline sqlite3_stmt *edge__repl_stmt(sqlite3 *db, const char *sql, size_t len)
{
    return edge_store_stmt_kept(db, sql, len);
}

static inline void edge__repl_done(sqlite3_stmt *st)
{
    edge_store_stmt_done(st);
}

int edge__repl_put_str(struct edge_buf *b, const char *s, size_t n);
int edge__repl_put_value(struct edge_buf *b, sqlite3_value *v);
int edge__repl_get_str(struct edge__rd *r, const char **s, size_t *n);
static inline int edge__repl_get_varint(struct edge__rd *r, uint64_t *v)
{
    return edge__uvarint_read(r, v);
}
int edge__repl_get_u8(struct edge__rd *r, uint8_t *v);
int edge__repl_bind_value(sqlite3_stmt *st, int idx, struct edge__rd *r);
int edge__repl_skip_value(struct edge__rd *r);
int edge__repl_pk_info(sqlite3 *db, const char *table, struct edge__pkinfo *out);
int edge__repl_pk_bytes(struct edge__rd set, const struct edge__pkinfo *pk, struct edge_buf *out);
/* The stamp of a write: greater hlc wins, then origin, then seq. origin "" = none. */
struct edge__stamp {
    char origin[EDGE_VCLOCK_REGION_MAX + 1];
    uint64_t seq;
    uint64_t hlc;
};
int edge__stamp_cmp(const struct edge__stamp *a, const struct edge__stamp *b);
int edge__stamps_encode(struct edge_buf *b, const struct edge__stamp *s, int n);
int edge__stamps_decode(struct edge__rd *r, struct edge__stamp *s, int n);

/* Why a row that exists by its registers is not in its table (see apply.c and
 * apply_repair.c). */
#define EDGE__HIDDEN_NO 0
#define EDGE__HIDDEN_FK 1     /* a parent it references does not exist */
#define EDGE__HIDDEN_UNIQUE 2 /* a row with a greater stamp holds its UNIQUE value */

/* _edge_rows for one row (see rowmeta.c), aligned to the table's columns here. */
struct edge__rowmeta {
    bool found;
    bool deleted;
    bool stored_tomb;         /* what _edge_rows holds now is a tombstone (for the count in _edge_gc) */
    int hidden;               /* EDGE__HIDDEN_*, only while !deleted */
    struct edge__stamp exist; /* the write that last decided existence */
    int ncols;
    struct edge__stamp *cols; /* ncols stamps, owned (origin "" = never written) */
    /* The values of a row that is not in its table (deleted or hidden): per column the
     * encoded value (a span of `image`), or NULL when unknown (the column's default). */
    const uint8_t **iv;
    size_t *ivl;
    uint8_t *image;           /* owned storage of iv */
    size_t image_len;
};
int edge__meta_get(sqlite3 *db, const struct edge__tinfo *t, const void *pk, size_t pklen, struct edge__rowmeta *m);
/* Store m (and keep the tombstone count of _edge_gc in step, in the same transaction:
 * m->stored_tomb, set by edge__meta_get, says what was there). */
int edge__meta_put(sqlite3 *db, const struct edge__tinfo *t, const void *pk, size_t pklen, struct edge__rowmeta *m);
/* Replace the kept values by vals (ncols spans, NULL = unknown); copies them. */
int edge__meta_set_image(struct edge__rowmeta *m, const uint8_t *const *vals, const size_t *lens);
void edge__meta_drop_image(struct edge__rowmeta *m);
void edge__meta_free(struct edge__rowmeta *m);
/* Append " WHERE pk1 IS ?1 AND ..." to sql (a statement's head) and prepare it with the
 * primary key bound to ?1..?npk; sql is freed either way. */
int edge__repl_where_pk(sqlite3 *db, const struct edge__tinfo *t, struct edge_buf *sql, const void *pk,
                        size_t pklen, sqlite3_stmt **out);
/* Prepare "<verb> "table" WHERE pk1 IS ?1 AND ..." (cached statement) with the encoded
 * primary key bound; the caller releases it with edge__repl_done. */
int edge__repl_by_pk(sqlite3 *db, const char *verb, const struct edge__tinfo *t, const void *pk, size_t pklen,
                     sqlite3_stmt **out);
/* Read the row with primary key pk (encoded pk values) from its table into m's image.
 * EDGE_ENOTFOUND when it is not in the table. */
int edge__row_read(sqlite3 *db, const struct edge__tinfo *t, const void *pk, size_t pklen, struct edge__rowmeta *m);
/* Inside a local write transaction (after its entry was built): put back the hidden
 * rows whose conflict the transaction removed, where nothing else has to move. A row
 * written here always stamps later than any hidden row this region knows, so a hidden
 * row never wins against it: this gives the same result as the end of an applied batch. */
int edge__repl_restore_local(sqlite3 *db);

/* ids.c, behind edge_capture_ids_* */
struct edge__ids;
int edge__ids_attach(sqlite3 *db, int index, int stride, struct edge__ids **out);
void edge__ids_detach(struct edge__ids *s);
int edge__ids_before(struct edge__ids *s, const char *sql, size_t len);
/* Drop this connection's id triggers (before a schema change runs on it). */
int edge__ids_drop_all(sqlite3 *db);
void edge__ids_after(struct edge__ids *s, struct edge_ids_result *out);
/* crdt_apply.c: join a replicated delta of object name[0..name_len) from origin into the
 * local object, counting the merge (and whether it was concurrent) in the object's
 * statistics. EDGE_ECORRUPT for a delta that does not decode or names another type. */
int edge__repl_crdt_apply(sqlite3 *db, const char *origin, const char *name, size_t name_len, const char *type,
                          size_t type_len, const uint8_t *delta, size_t delta_len, char *errmsg, size_t errmsg_len);
/* crdt_cols.c: replication.crdt_columns against the schema (EDGE_ECONFIG with the
 * reason in errmsg); a counter column's value by primary key (found false: no row),
 * and its new value; an encoded value as an integer (NULL 0; EDGE_EINVAL not one). */
int edge__crdt_cols_check(sqlite3 *db, const struct edge_conf_crdt *cc, char *errmsg, size_t errmsg_len);
int edge__crdt_counter_read(sqlite3 *db, const struct edge__tinfo *t, int col, const void *pk, size_t pklen,
                            bool *out_found, int64_t *out_value);
int edge__crdt_counter_write(sqlite3 *db, const struct edge__tinfo *t, int col, const void *pk, size_t pklen,
                             int64_t value);
int edge__crdt_value_int(const uint8_t *v, size_t len, int64_t *out);
/* or-set columns: EDGE_OK if the encoded value is a JSON array in text (or NULL); the
 * write of a cell at its origin (oldv NULL for a new row): updates _edge_crdt_cells,
 * rewrites the column canonically and appends the delta (str) to delta_out; the merge
 * of such a delta elsewhere. */
int edge__crdt_set_check(const uint8_t *val, size_t len);
int edge__crdt_set_write(sqlite3 *db, const char *region, const struct edge__tinfo *t, int col, const void *pk,
                         size_t pklen, const uint8_t *oldv, size_t oldl, const uint8_t *newv, size_t newl,
                         struct edge_buf *delta_out);
int edge__crdt_set_merge(sqlite3 *db, const struct edge__tinfo *t, int col, const void *pk, size_t pklen,
                         const uint8_t *delta, size_t len);
int edge__repl_log_put(sqlite3 *db, const char *origin, uint64_t seq, uint64_t hlc, int consistency,
                       const struct edge_vclock *deps, const void *payload, size_t len);

#endif
