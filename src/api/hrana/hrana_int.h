/* SPDX-License-Identifier: MIT */
/* Internals shared by the Hrana files (classify.c, exec.c, exec_repl.c, cursor.c, pb.c). */
#ifndef EDGE_API_HRANA_INT_H
#define EDGE_API_HRANA_INT_H

#include "api/hrana.h"

/* The SQL text of a statement object: its "sql", or the stored SQL of its "sql_id"
 * (NULL when neither). */
const char *hrana__stmt_sql(json_t *stmt, const struct hrana_sqlmap *sqls, size_t *len);
/* Does the statement text start with a schema-changing keyword (CREATE, ALTER, DROP)? */
bool hrana__starts_ddl(const char *sql, size_t len);

/* Parse a decimal int64 exactly (no junk, no overflow): Hrana sends integers as strings. */
bool hrana__parse_i64(const char *s, int64_t *out);

/* Why a statement failed, in Hrana form. */
struct stmt_error {
    char message[512];
    const char *code;
};

/* Where one statement's results go: the StmtResult JSON of execute and batch (exec.c),
 * or cursor entries (cursor.c). begin comes once the statement is bound and about to
 * step, row for each row when rows are wanted, end when it is done. A sink function
 * returns EDGE_OK or the error of its output (the statement then fails with
 * RESPONSE_TOO_LARGE). mark/rewind undo what a failing statement wrote. */
struct hrana__rows {
    int (*begin)(void *ud, sqlite3_stmt *st);
    int (*row)(void *ud, sqlite3_stmt *st);
    int (*end)(void *ud, int64_t affected, bool has_rowid, int64_t rowid, uint64_t rows_read);
    size_t (*mark)(void *ud);
    void (*rewind)(void *ud, size_t mark);
    void *ud;
};

/* Run one statement object (bind, replication hooks, budget) with its results going to
 * rows. Returns 0, or -1 with e set (what it wrote is rewound). */
int hrana__run_stmt(struct hrana_ctx *ctx, json_t *stmt, const struct hrana__rows *rows, struct stmt_error *e);
/* Evaluate a validated batch condition; state[i] is 1 (step i ok), -1 (failed), 0 (skipped). */
bool hrana__eval_cond(json_t *c, const signed char *state, struct hrana_ctx *ctx);
/* A value of column col of the current row, and a "cols" member, in Hrana JSON. */
int hrana__write_value(struct edge_buf *out, sqlite3_stmt *st, int col);
int hrana__write_cols(struct edge_buf *out, sqlite3_stmt *st);

#endif
