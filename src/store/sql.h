/* SPDX-License-Identifier: MIT */
/* Small SQL facts every layer above needs, kept in one place: identifier quoting, a
 * prepared-statement cache keyed by SQL text, and a table's columns. */
#ifndef EDGE_STORE_SQL_H
#define EDGE_STORE_SQL_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

/* Append s as a quoted SQL identifier ("name", with " doubled). EDGE_OK or EDGE_ENOMEM. */
int edge_store_quote_ident(struct edge_buf *b, const char *s);

/* A prepared statement for sql (len bytes, NUL-terminated) on db, reused across calls:
 * kept prepared for the life of the connection and found again with sqlite3_next_stmt,
 * so SQL run per row is parsed once, not per row. Leave it reset (edge_store_stmt_done).
 * NULL on error. */
sqlite3_stmt *edge_store_stmt_kept(sqlite3 *db, const char *sql, size_t len);
void edge_store_stmt_done(sqlite3_stmt *st);
/* Run one statement without results (a transaction or savepoint statement) through the
 * cache above: the writer runs several per job, and parsing them anew each time was a
 * visible part of a small write's cost. Returns the SQLite result code (SQLITE_OK). */
int edge_store_exec_kept(sqlite3 *db, const char *sql);

/* The first column of the first row of sql (no parameters, prepared afresh, not kept) as
 * an integer (NULL reads as 0), or dflt when it cannot be prepared or returns no row: the
 * one-number lookups (a count, a value of _edge_gc, a pragma) that several layers make. */
int64_t edge_store_query_int(sqlite3 *db, const char *sql, int64_t dflt);

/* The columns of table in order (pragma_table_info): cb(ud, cid, name, pk) for each,
 * pk the 1-based position in the primary key or 0. Returns the number of columns
 * (0: no such table), or -1 when the lookup itself failed. */
int edge_store_table_columns(sqlite3 *db, const char *table, void (*cb)(void *ud, int cid, const char *name, int pk),
                           void *ud);

#endif
