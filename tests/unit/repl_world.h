/* SPDX-License-Identifier: MIT */
/* The in-process replication world the test_repl_apply*.c tests share: three regions,
 * each a real SQLite database with real change capture, a manual clock and its HLC; the
 * log of every local entry; delivery through the functions the node's writer uses.
 * Seeded and reproducible (EDGE_SEED); failures name the seed. */
#ifndef EDGE_TEST_REPL_WORLD_H
#define EDGE_TEST_REPL_WORLD_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/clock.h"
#include "core/vclock.h"
#include "repl/repl.h"

struct edge_repl_entry;

#define NREG 3
#define MAXENT 4096

/* The schema every region starts with: a plain table, a parent with cascading
 * children, a secondary UNIQUE column, and an audit trigger. */
#define SCHEMA                                                                                          \
    "CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT, b INTEGER, c REAL);"                                 \
    "CREATE TABLE parent(id INTEGER PRIMARY KEY, name TEXT);"                                            \
    "CREATE TABLE child(id INTEGER PRIMARY KEY, pid INTEGER NOT NULL REFERENCES parent(id)"              \
    " ON DELETE CASCADE, v TEXT);"                                                                       \
    "CREATE TABLE u(id INTEGER PRIMARY KEY, email TEXT UNIQUE, n INTEGER);"                             \
    "CREATE TABLE audit(id TEXT PRIMARY KEY, what TEXT);"                                                \
    "CREATE TRIGGER parent_audit AFTER INSERT ON parent BEGIN"                                           \
    " INSERT INTO audit(id, what) VALUES (hex(randomblob(8)), 'parent ' || NEW.id); END;"

struct entry {
    char origin[16];
    uint64_t seq, hlc;
    struct edge_vclock deps;
    uint8_t *payload;
    size_t len;
};

struct region {
    char id[16];
    sqlite3 *db;
    struct edge_capture *cap;
    struct edge_clock_manual clk;
    struct edge_hlc hlc;
    pthread_mutex_t mu;
    struct edge_repl_local local;
    struct edge_repl_apply_stats stats;
};

struct world {
    struct region r[NREG];
    struct entry log[MAXENT];
    int n_log;
    uint64_t rng;
    unsigned seed;
};

/* Set from EDGE_TRACE by the tests that trace: every write and delivery to stderr. */
extern bool world_trace;

uint64_t rnd(struct world *w);
void exec_ok(sqlite3 *db, const char *sql);
void world_init(struct world *w, unsigned seed);
void world_free(struct world *w);
/* Run SQL as one local transaction in region i and keep its log entry. */
uint64_t local_write(struct world *w, int i, const char *sql);
/* Log entries ks[0..n) as the apply functions take them, into es[0..n) (deps and payload
 * borrowed from the log: valid until world_free). */
void world_entries(struct world *w, const int *ks, size_t n, struct edge_repl_entry *es);
/* Deliver entries ks[0..n) to region i in one batch, through the function the node's
 * writer uses; returns the batch result. */
int deliver_batch(struct world *w, int i, const int *ks, int n);
/* Deliver entry k to region i; EDGE_OK when it was applied (or was there already). */
int deliver(struct world *w, int i, int k);
/* Deliver everything everywhere until nothing moves (random order within each pass). */
void deliver_all(struct world *w);
/* The one text value of a query's one row (strdup'ed, the caller frees); fails the test otherwise. */
char *query_text(sqlite3 *db, const char *sql);
/* Table t as text, in id order (caller frees). */
char *dump(sqlite3 *db);
/* Every user table (and the schema) of a region as text, in primary key order (caller frees). */
char *dump_all(sqlite3 *db);
int64_t count_of(sqlite3 *db, const char *sql);
int64_t count_in(struct world *w, int i, const char *sql);
void assert_converged(struct world *w);
/* One random local write (of 17 kinds) in region i. */
void random_write(struct world *w, int i);
/* EDGE_SEED, or the default seed. */
unsigned base_seed(void);

#endif
