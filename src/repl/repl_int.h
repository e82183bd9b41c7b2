/* SPDX-License-Identifier: MIT */
/* Internals shared by capture.c and apply.c. */
#ifndef EDGE_REPL_INT_H
#define EDGE_REPL_INT_H

#include "repl/repl.h"
#include "store/sql.h"

#define EDGE_REPL_PAYLOAD_VERSION 2
#define EDGE_REPL_OP_ROW 1    /* full row image + a stamp per column */
#define EDGE_REPL_OP_UPSERT EDGE_REPL_OP_ROW
#define EDGE_REPL_OP_DELETE 2
#define EDGE_REPL_OP_DDL 3
#define EDGE__OP_DDL_RAW 100 /* raw capture record kind for DDL text */
#define EDGE_REPL_MAX_PK 32

/* struct edge__rd, the bounds-checked reader over p[0..len), is core/vclock.h's. */

struct edge__pkinfo {
    int ncols;
    int npk;
    int pk[EDGE_REPL_MAX_PK]; /* column index of the i-th primary key column */
};

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

/* _edge_rows for one row (see rowmeta.c). */
struct edge__rowmeta {
    bool found;
    bool deleted;
    struct edge__stamp exist; /* the write that last decided existence */
    int ncols;
    struct edge__stamp *cols; /* ncols stamps, owned */
    uint8_t *image;           /* a deleted row's values (ncols encoded values), owned, or NULL */
    size_t image_len;
};
int edge__meta_get(sqlite3 *db, const char *table, const void *pk, size_t pklen, int ncols, struct edge__rowmeta *m);
int edge__meta_put(sqlite3 *db, const char *table, const void *pk, size_t pklen, const struct edge__rowmeta *m);
void edge__meta_free(struct edge__rowmeta *m);
int edge__repl_log_put(sqlite3 *db, const char *origin, uint64_t seq, uint64_t hlc, int consistency,
                       const struct edge_vclock *deps, const void *payload, size_t len);

#endif
