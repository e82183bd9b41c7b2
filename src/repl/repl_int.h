/* SPDX-License-Identifier: MIT */
/* Internals shared by capture.c and apply.c. */
#ifndef EDGE_REPL_INT_H
#define EDGE_REPL_INT_H

#include "repl/repl.h"

#define EDGE_REPL_PAYLOAD_VERSION 1
#define EDGE_REPL_OP_UPSERT 1
#define EDGE_REPL_OP_DELETE 2
#define EDGE_REPL_OP_DDL 3
#define EDGE__OP_DDL_RAW 100 /* raw capture record kind for DDL text */
#define EDGE_REPL_MAX_PK 32

/* A bounds-checked reader over p[0..len). */
struct edge__rd {
    const uint8_t *p;
    size_t len;
    size_t off;
};

struct edge__pkinfo {
    int ncols;
    int npk;
    int pk[EDGE_REPL_MAX_PK]; /* column index of the i-th primary key column */
};

int edge__repl_put_str(struct edge_buf *b, const char *s, size_t n);
int edge__repl_put_value(struct edge_buf *b, sqlite3_value *v);
int edge__repl_get_str(struct edge__rd *r, const char **s, size_t *n);
int edge__repl_get_varint(struct edge__rd *r, uint64_t *v);
int edge__repl_get_u8(struct edge__rd *r, uint8_t *v);
int edge__repl_bind_value(sqlite3_stmt *st, int idx, struct edge__rd *r);
int edge__repl_skip_value(struct edge__rd *r);
int edge__repl_pk_info(sqlite3 *db, const char *table, struct edge__pkinfo *out);
int edge__repl_pk_bytes(struct edge__rd set, const struct edge__pkinfo *pk, struct edge_buf *out);
int edge__repl_rows_put(sqlite3 *db, const char *table, const void *pk, size_t pklen, const char *origin,
                        uint64_t seq, uint64_t hlc, bool deleted);
int edge__repl_log_put(sqlite3 *db, const char *origin, uint64_t seq, uint64_t hlc, int consistency,
                       const struct edge_vclock *deps, const void *payload, size_t len);

#endif
