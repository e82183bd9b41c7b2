/* SPDX-License-Identifier: MIT */
/* Replication core, in process: real SQLite databases with real change capture, the
 * log and the apply path, without the network. Seeded and reproducible (EDGE_SEED);
 * the seed is printed on failure.
 *
 * Properties:
 *  - convergence: random concurrent inserts, column updates and deletes in 3 regions,
 *    delivered to each other in random (causal) orders, end byte-identical;
 *  - per-column merge: concurrent updates of different columns both survive;
 *    of the same column, the later (hlc, region) wins;
 *  - tombstones: an older update never resurrects a deleted row;
 *  - sequential writes through different regions are not conflicts, concurrent ones are;
 *  - duplicates and out-of-order entries are refused without effect. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/vclock.h"
#include "core/conf.h"
#include "repl/proto.h"
#include "repl/repl.h"
#include "repl/state.h"
#include "repl/tomb.h"

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

static uint64_t rnd(struct world *w)
{
    w->rng ^= w->rng << 13;
    w->rng ^= w->rng >> 7;
    w->rng ^= w->rng << 17;
    return w->rng;
}

static void exec_ok(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
        fail_msg("%s: %s", sql, err ? err : "?");
    }
}

static void world_init(struct world *w, unsigned seed)
{
    memset(w, 0, sizeof(*w));
    w->seed = seed;
    w->rng = seed * 2654435761u + 1;
    for (int i = 0; i < NREG; i++) {
        struct region *r = &w->r[i];
        snprintf(r->id, sizeof(r->id), "r%d", i);
        assert_int_equal(sqlite3_open(":memory:", &r->db), SQLITE_OK);
        char err[256];
        assert_int_equal(edge_repl_schema_init(r->db, err, sizeof(err)), EDGE_OK);
        exec_ok(r->db, "PRAGMA foreign_keys = ON");
        exec_ok(r->db, SCHEMA);
        assert_int_equal(edge_capture_create(r->db, &r->cap), EDGE_OK);
        assert_int_equal(edge_capture_ids_enable(r->cap, i, EDGE_REPL_ID_STRIDE), EDGE_OK);
        /* Clocks that disagree a little, as real machines do. */
        edge_clock_manual_init(&r->clk, 1000000 + (uint64_t)i * 3);
        edge_hlc_init(&r->hlc, &r->clk.clock);
        pthread_mutex_init(&r->mu, NULL);
        r->local = (struct edge_repl_local){r->id, &r->hlc, &r->mu, NULL};
    }
}

static void world_free(struct world *w)
{
    for (int i = 0; i < NREG; i++) {
        edge_capture_destroy(w->r[i].cap);
        sqlite3_stmt *st;
        while ((st = sqlite3_next_stmt(w->r[i].db, NULL)) != NULL) sqlite3_finalize(st);
        sqlite3_close(w->r[i].db);
        pthread_mutex_destroy(&w->r[i].mu);
    }
    for (int i = 0; i < w->n_log; i++) {
        edge_vclock_close(&w->log[i].deps);
        free(w->log[i].payload);
    }
}

/* Run SQL as one local transaction in region i and keep its log entry. */
static bool trace;

static uint64_t local_write(struct world *w, int i, const char *sql)
{
    struct region *r = &w->r[i];
    if (trace) fprintf(stderr, "W r%d #%d: %s\n", i, w->n_log, sql);
    edge_clock_manual_advance(&r->clk, 1 + rnd(w) % 3);
    exec_ok(r->db, "BEGIN IMMEDIATE");
    edge_capture_reset(r->cap);
    /* as the Hrana executor does around every statement: ids left to SQLite are striped */
    assert_int_equal(edge_capture_ids_before(r->cap, sql, strlen(sql)), EDGE_OK);
    exec_ok(r->db, sql);
    struct edge_ids_result ir;
    edge_capture_ids_after(r->cap, &ir);
    free(ir.returning_sql);
    if (strncmp(sql, "ALTER", 5) == 0 || strncmp(sql, "CREATE", 6) == 0 || strncmp(sql, "DROP", 4) == 0) {
        /* as the Hrana executor does after a schema statement succeeded */
        assert_int_equal(edge_capture_ddl(r->cap, sql, strlen(sql)), EDGE_OK);
    }
    uint64_t seq = 0;
    char err[256] = "";
    int rv = edge_repl_commit_entry(r->cap, &r->local, 0, &seq, err, sizeof(err));
    if (rv != EDGE_OK) fail_msg("seed %u: commit_entry: %s", w->seed, err);
    exec_ok(r->db, "COMMIT");
    if (seq == 0) return 0; /* nothing changed */
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(r->db, "SELECT hlc, deps, payload FROM _edge_log WHERE origin=?1 AND seq=?2", -1,
                                        &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(st, 1, r->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)seq);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_true(w->n_log < MAXENT);
    struct entry *e = &w->log[w->n_log++];
    memcpy(e->origin, r->id, sizeof(e->origin));
    e->seq = seq;
    e->hlc = (uint64_t)sqlite3_column_int64(st, 0);
    edge_vclock_init(&e->deps);
    size_t used;
    assert_int_equal(edge_vclock_decode(&e->deps, sqlite3_column_blob(st, 1), (size_t)sqlite3_column_bytes(st, 1), &used),
                     EDGE_OK);
    e->len = (size_t)sqlite3_column_bytes(st, 2);
    if (trace) {
        fprintf(stderr, "  -> %s:%llu hlc %llu deps", e->origin, (unsigned long long)seq, (unsigned long long)e->hlc);
        for (size_t d = 0; d < e->deps.n_entries; d++)
            fprintf(stderr, " %s=%llu", e->deps.entries[d].region, (unsigned long long)e->deps.entries[d].n);
        fprintf(stderr, "\n");
    }
    e->payload = malloc(e->len ? e->len : 1);
    memcpy(e->payload, sqlite3_column_blob(st, 2), e->len);
    sqlite3_finalize(st);
    return seq;
}

/* Deliver entries ks[0..n) to region i in one batch, through the function the node's
 * writer uses; returns the batch result. */
static int deliver_batch(struct world *w, int i, const int *ks, int n)
{
    struct region *r = &w->r[i];
    struct edge_repl_entry es[16];
    assert_true(n <= 16);
    for (int j = 0; j < n; j++) {
        struct entry *e = &w->log[ks[j]];
        memset(&es[j], 0, sizeof(es[j]));
        snprintf(es[j].origin, sizeof(es[j].origin), "%s", e->origin);
        es[j].seq = e->seq;
        es[j].hlc = e->hlc;
        es[j].deps = e->deps; /* borrowed, not freed */
        es[j].payload = e->payload;
        es[j].payload_len = e->len;
    }
    char err[256] = "";
    if (trace) {
        fprintf(stderr, "D r%d:", i);
        for (int j = 0; j < n; j++) fprintf(stderr, " #%d(%s:%llu)", ks[j], es[j].origin, (unsigned long long)es[j].seq);
        fprintf(stderr, "\n");
    }
    edge_capture_suspend(r->cap, true);
    int rv = edge_repl_apply_batch(r->db, &r->local, 0, es, (size_t)n, &r->stats, err, sizeof(err));
    edge_capture_suspend(r->cap, false);
    if (rv != EDGE_OK) fail_msg("seed %u: apply batch in %s: %s", w->seed, r->id, err);
    return rv;
}

/* Deliver entry k to region i; EDGE_OK when it was applied (or was there already). */
static int deliver(struct world *w, int i, int k)
{
    uint64_t a = w->r[i].stats.applied, d = w->r[i].stats.deferred;
    deliver_batch(w, i, &k, 1);
    return w->r[i].stats.deferred != d && w->r[i].stats.applied == a ? EDGE_EAGAIN : EDGE_OK;
}

/* Deliver everything everywhere until nothing moves (random order within each pass). */
static void deliver_all(struct world *w)
{
    for (int pass = 0; pass < 100000; pass++) {
        int progress = 0;
        for (int i = 0; i < NREG; i++) {
            for (int t = 0; t < w->n_log; t++) {
                int k = (int)(rnd(w) % (uint64_t)w->n_log);
                if (strcmp(w->log[k].origin, w->r[i].id) == 0) continue;
                uint64_t before = w->r[i].stats.applied;
                deliver(w, i, k);
                progress += w->r[i].stats.applied != before;
            }
        }
        if (progress == 0) {
            /* one ordered sweep to be sure nothing is left */
            for (int i = 0; i < NREG; i++)
                for (int k = 0; k < w->n_log; k++)
                    if (strcmp(w->log[k].origin, w->r[i].id) != 0) {
                        uint64_t before = w->r[i].stats.applied;
                        deliver(w, i, k);
                        progress += w->r[i].stats.applied != before;
                    }
            if (progress == 0) return;
        }
    }
    fail_msg("seed %u: delivery did not finish", w->seed);
}

static char *dump(sqlite3 *db)
{
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT coalesce(group_concat(id || '|' || quote(a) || '|' || quote(b) || '|' || quote(c), ';'), '')"
                                        " FROM (SELECT * FROM t ORDER BY id)",
                                        -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    char *s = strdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return s;
}

/* Every user table (and the schema) of a region as text, in primary key order. */
static char *dump_all(sqlite3 *db)
{
    size_t cap = 1 << 16, len = 0;
    char *out = malloc(cap);
    out[0] = '\0';
    sqlite3_stmt *tl;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT name, sql FROM sqlite_schema WHERE name NOT LIKE '\\_edge\\_%' ESCAPE '\\'"
                                        " AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
                                        -1, &tl, NULL),
                     SQLITE_OK);
    while (sqlite3_step(tl) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(tl, 0);
        const char *sql = (const char *)sqlite3_column_text(tl, 1);
        char *q = sqlite3_mprintf("SELECT * FROM \"%w\" ORDER BY 1", name);
        sqlite3_stmt *st = NULL;
        bool is_table = sqlite3_prepare_v2(db, q, -1, &st, NULL) == SQLITE_OK;
        sqlite3_free(q);
        char *line = sqlite3_mprintf("%s: %s\n", name, sql ? sql : "");
        for (int guard = 0; is_table && sqlite3_step(st) == SQLITE_ROW && guard < 100000; guard++) {
            for (int c = 0; c < sqlite3_column_count(st); c++) {
                sqlite3_value *v = sqlite3_column_value(st, c);
                char *cell = sqlite3_mprintf("%s%s=%s", c ? "|" : " ", sqlite3_column_name(st, c),
                                             sqlite3_value_type(v) == SQLITE_NULL ? "NULL"
                                                                                  : (const char *)sqlite3_value_text(v));
                char *nl = sqlite3_mprintf("%s%s", line, cell);
                sqlite3_free(line);
                sqlite3_free(cell);
                line = nl;
            }
            char *nl = sqlite3_mprintf("%s;\n", line);
            sqlite3_free(line);
            line = nl;
        }
        sqlite3_finalize(st);
        size_t ll = strlen(line);
        while (len + ll + 1 > cap) {
            cap *= 2;
            out = realloc(out, cap);
        }
        memcpy(out + len, line, ll + 1);
        len += ll;
        sqlite3_free(line);
    }
    sqlite3_finalize(tl);
    return out;
}

static int64_t count_of(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

static void assert_converged(struct world *w)
{
    char *d0 = dump_all(w->r[0].db);
    for (int i = 1; i < NREG; i++) {
        char *di = dump_all(w->r[i].db);
        if (strcmp(d0, di) != 0) {
            if (trace) {
                for (int j = 0; j < NREG; j++) {
                    sqlite3_stmt *st;
                    sqlite3_prepare_v2(w->r[j].db, "SELECT tbl, hex(pk), origin, seq, hlc, deleted, hidden, hex(cols), hex(image) FROM _edge_rows ORDER BY 1, 2", -1, &st, NULL);
                    while (sqlite3_step(st) == SQLITE_ROW) {
                        fprintf(stderr, "M r%d %s %s %s:%lld@%lld del=%d hid=%d cols=%s img=%s\n", j, sqlite3_column_text(st, 0),
                                sqlite3_column_text(st, 1), sqlite3_column_text(st, 2), sqlite3_column_int64(st, 3),
                                sqlite3_column_int64(st, 4), sqlite3_column_int(st, 5), sqlite3_column_int(st, 6),
                                sqlite3_column_text(st, 7), sqlite3_column_text(st, 8));
                    }
                    sqlite3_finalize(st);
                    sqlite3_prepare_v2(w->r[j].db, "SELECT origin, seq, reason FROM _edge_apply_errors", -1, &st, NULL);
                    while (sqlite3_step(st) == SQLITE_ROW) {
                        fprintf(stderr, "E r%d %s:%lld %s\n", j, sqlite3_column_text(st, 0), sqlite3_column_int64(st, 1),
                                sqlite3_column_text(st, 2));
                    }
                    sqlite3_finalize(st);
                }
            }
            size_t k = 0;
            while (d0[k] && d0[k] == di[k]) k++;
            size_t from = k > 200 ? k - 200 : 0;
            fail_msg("seed %u: region r0 and r%d differ at byte %zu:\n r0: %.400s\n r%d: %.400s", w->seed, i, k,
                     d0 + from, i, di + from);
        }
        free(di);
    }
    free(d0);
    for (int i = 0; i < NREG; i++) {
        /* Items 1-7 exist so that no entry ever fails to apply. */
        assert_int_equal(count_of(w->r[i].db, "SELECT count(*) FROM _edge_apply_errors"), 0);
        /* Constraints hold in every region. */
        assert_int_equal(count_of(w->r[i].db, "SELECT count(*) FROM pragma_foreign_key_check"), 0);
    }
}

static void random_write(struct world *w, int i)
{
    char sql[512];
    long id = 1 + (long)(rnd(w) % 12);
    long p = 1 + (long)(rnd(w) % 4);
    switch (rnd(w) % 17) {
    case 0:
        snprintf(sql, sizeof(sql), "INSERT OR REPLACE INTO t(id, a, b, c) VALUES (%ld, 'ins%llu', %llu, %llu.5)", id,
                 (unsigned long long)(rnd(w) % 1000), (unsigned long long)(rnd(w) % 100),
                 (unsigned long long)(rnd(w) % 10));
        break;
    case 1:
        snprintf(sql, sizeof(sql), "UPDATE t SET a = 'a%llu' WHERE id = %ld", (unsigned long long)(rnd(w) % 1000), id);
        break;
    case 2:
        snprintf(sql, sizeof(sql), "UPDATE t SET b = %llu WHERE id = %ld", (unsigned long long)(rnd(w) % 1000), id);
        break;
    case 3:
        snprintf(sql, sizeof(sql), "UPDATE t SET b = b + 1, c = %llu WHERE id = %ld",
                 (unsigned long long)(rnd(w) % 1000), id);
        break;
    case 4:
        snprintf(sql, sizeof(sql), "DELETE FROM t WHERE id = %ld", id);
        break;
    case 5:
        snprintf(sql, sizeof(sql), "INSERT OR IGNORE INTO t(id, a, b, c) VALUES (%ld, 'new', 0, NULL)", id);
        break;
    case 6: /* parents: insert (the trigger writes an audit row), rename, delete (cascades) */
        snprintf(sql, sizeof(sql), "INSERT INTO parent(id, name) VALUES (%ld, 'p%llu') ON CONFLICT(id) DO UPDATE SET"
                 " name = excluded.name", p, (unsigned long long)(rnd(w) % 100));
        break;
    case 7:
        snprintf(sql, sizeof(sql), "UPDATE parent SET name = 'r%llu' WHERE id = %ld", (unsigned long long)(rnd(w) % 100),
                 p);
        break;
    case 8:
        snprintf(sql, sizeof(sql), "DELETE FROM parent WHERE id = %ld", p);
        break;
    case 9: /* children of a parent that exists here */
        snprintf(sql, sizeof(sql), "INSERT OR REPLACE INTO child(id, pid, v) SELECT %ld, %ld, 'c%llu'"
                 " WHERE EXISTS (SELECT 1 FROM parent WHERE id = %ld)", id, p, (unsigned long long)(rnd(w) % 100), p);
        break;
    case 10:
        snprintf(sql, sizeof(sql), "UPDATE child SET v = 'u%llu' WHERE id = %ld", (unsigned long long)(rnd(w) % 100), id);
        break;
    case 11: /* a secondary UNIQUE column: few values, so regions collide */
        snprintf(sql, sizeof(sql), "INSERT OR IGNORE INTO u(id, email, n) VALUES (%ld, 'e%llu', %llu)", id % 6 + 1,
                 (unsigned long long)(rnd(w) % 4), (unsigned long long)(rnd(w) % 100));
        break;
    case 12:
        snprintf(sql, sizeof(sql), "UPDATE OR IGNORE u SET email = 'e%llu' WHERE id = %ld", (unsigned long long)(rnd(w) % 4),
                 id % 6 + 1);
        break;
    case 13:
        snprintf(sql, sizeof(sql), "DELETE FROM u WHERE id = %ld", id % 6 + 1);
        break;
    case 14: /* one transaction writing the same row twice (as a writer group does) */
        snprintf(sql, sizeof(sql), "UPDATE t SET a = 'first%llu' WHERE id = %ld; UPDATE t SET a = 'second%llu', b = 3 WHERE id = %ld",
                 (unsigned long long)(rnd(w) % 1000), id, (unsigned long long)(rnd(w) % 1000), id);
        break;
    case 15:
        snprintf(sql, sizeof(sql), "INSERT OR REPLACE INTO t(id, a, b, c) VALUES (%ld, 'r1', 1, 1.5); "
                 "UPDATE t SET a = 'r2' WHERE id = %ld; DELETE FROM t WHERE id = %ld AND b = 7", id, id, id);
        break;
    default: /* the id left to SQLite: striped by region, never colliding */
        snprintf(sql, sizeof(sql), "INSERT INTO t(a, b, c) VALUES ('auto%llu', %d, NULL)", (unsigned long long)(rnd(w) % 1000),
                 i);
    }
    local_write(w, i, sql);
}

static unsigned base_seed(void)
{
    const char *s = getenv("EDGE_SEED");
    return s ? (unsigned)strtoul(s, NULL, 10) : 20261126u;
}

static void test_random_histories_converge(void **state)
{
    (void)state;
    unsigned base = base_seed();
    trace = getenv("EDGE_TRACE") != NULL;
    for (unsigned h = 0; h < (trace ? 1u : 200u); h++) {
        struct world *w = calloc(1, sizeof(*w));
        world_init(w, base + h);
        int steps = 20 + (int)(rnd(w) % 60);
        int alter_at = w->seed % 2 ? (int)(rnd(w) % (uint64_t)steps) : -1;
        for (int s = 0; s < steps; s++) {
            int i = (int)(rnd(w) % NREG);
            if (s == alter_at) {
                /* a schema change in one region while the others keep writing */
                local_write(w, i, "ALTER TABLE t ADD COLUMN d TEXT DEFAULT 'dflt'");
            } else if (rnd(w) % 3 == 0 && w->n_log > 0) {
                /* some gossip in random order: partial, causal, out of order, batched */
                int ks[5], n = 1 + (int)(rnd(w) % 5);
                for (int k = 0; k < n; k++) ks[k] = (int)(rnd(w) % (uint64_t)w->n_log);
                deliver_batch(w, i, ks, n);
            } else {
                random_write(w, i);
            }
        }
        deliver_all(w);
        assert_converged(w);
        world_free(w);
        free(w);
    }
}

static void test_concurrent_columns_merge(void **state)
{
    (void)state;
    struct world *w = calloc(1, sizeof(*w));
    world_init(w, 1);
    local_write(w, 0, "INSERT INTO t VALUES (1, 'x', 1, 1.0)");
    deliver_all(w);
    /* concurrently: r1 changes a, r2 changes b, r0 changes c twice */
    local_write(w, 1, "UPDATE t SET a = 'from-r1' WHERE id = 1");
    local_write(w, 2, "UPDATE t SET b = 22 WHERE id = 1");
    local_write(w, 0, "UPDATE t SET c = 3.5 WHERE id = 1");
    deliver_all(w);
    assert_converged(w);
    char *d = dump(w->r[0].db);
    assert_string_equal(d, "1|'from-r1'|22|3.5");
    free(d);
    /* every region saw the concurrent writes as conflicts; the first insert was not one */
    uint64_t total = 0;
    for (int i = 0; i < NREG; i++) total += w->r[i].stats.conflicts;
    assert_true(total >= 3);
    world_free(w);
    free(w);
}

static void test_same_column_later_wins(void **state)
{
    (void)state;
    struct world *w = calloc(1, sizeof(*w));
    world_init(w, 2);
    local_write(w, 0, "INSERT INTO t VALUES (1, 'x', 1, 1.0)");
    deliver_all(w);
    local_write(w, 1, "UPDATE t SET a = 'early' WHERE id = 1");
    edge_clock_manual_advance(&w->r[2].clk, 50); /* r2 writes later */
    local_write(w, 2, "UPDATE t SET a = 'late' WHERE id = 1");
    deliver_all(w);
    assert_converged(w);
    char *d = dump(w->r[1].db);
    assert_string_equal(d, "1|'late'|1|1.0");
    free(d);
    world_free(w);
    free(w);
}

static void test_sequential_not_conflict(void **state)
{
    (void)state;
    struct world *w = calloc(1, sizeof(*w));
    world_init(w, 3);
    local_write(w, 0, "INSERT INTO t VALUES (1, 'x', 1, 1.0)");
    deliver_all(w);
    local_write(w, 1, "UPDATE t SET a = 'r1' WHERE id = 1");
    deliver_all(w);
    local_write(w, 2, "UPDATE t SET a = 'r2' WHERE id = 1");
    deliver_all(w);
    for (int i = 0; i < NREG; i++) assert_int_equal(w->r[i].stats.conflicts, 0);
    assert_converged(w);
    char *d = dump(w->r[0].db);
    assert_string_equal(d, "1|'r2'|1|1.0");
    free(d);
    world_free(w);
    free(w);
}

static void test_delete_tombstone(void **state)
{
    (void)state;
    struct world *w = calloc(1, sizeof(*w));
    world_init(w, 4);
    local_write(w, 0, "INSERT INTO t VALUES (1, 'x', 1, 1.0)");
    deliver_all(w);
    /* r1 updates early; r2 deletes later without having seen it */
    local_write(w, 1, "UPDATE t SET a = 'old' WHERE id = 1");
    edge_clock_manual_advance(&w->r[2].clk, 100);
    local_write(w, 2, "DELETE FROM t WHERE id = 1");
    deliver_all(w);
    assert_converged(w);
    char *d = dump(w->r[0].db);
    assert_string_equal(d, ""); /* the older update did not bring the row back */
    free(d);
    world_free(w);
    free(w);
}

static void test_duplicates_and_gaps(void **state)
{
    (void)state;
    struct world *w = calloc(1, sizeof(*w));
    world_init(w, 5);
    local_write(w, 0, "INSERT INTO t VALUES (1, 'x', 1, 1.0)");
    local_write(w, 0, "INSERT INTO t VALUES (2, 'y', 2, 2.0)");
    assert_int_equal(deliver(w, 1, 1), EDGE_EAGAIN); /* seq 2 before seq 1 */
    assert_int_equal(deliver(w, 1, 0), EDGE_OK);
    assert_int_equal(deliver(w, 1, 0), EDGE_OK); /* duplicate: no effect */
    assert_int_equal(w->r[1].stats.duplicates, 1);
    assert_int_equal(deliver(w, 1, 1), EDGE_OK);
    assert_int_equal(w->r[1].stats.applied, 2);
    char *d = dump(w->r[1].db);
    assert_string_equal(d, "1|'x'|1|1.0;2|'y'|2|2.0");
    free(d);
    /* a corrupt payload is refused and changes nothing */
    struct entry bad = w->log[1];
    uint8_t junk[3] = {2, 5, 7};
    char err[128] = "";
    exec_ok(w->r[2].db, "BEGIN");
    int rv = edge_repl_apply_entry(w->r[2].db, "r9", 1, 5, 0, &bad.deps, junk, sizeof(junk), &w->r[2].stats, err,
                                   sizeof(err));
    exec_ok(w->r[2].db, "ROLLBACK");
    assert_int_not_equal(rv, EDGE_OK);
    world_free(w);
    free(w);
}

static int64_t count_in(struct world *w, int i, const char *sql) { return count_of(w->r[i].db, sql); }

/* Item 1: applying a parent's update never touches its ON DELETE CASCADE children;
 * the origin's cascade arrives once. */
static void test_parent_update_keeps_children(void **state)
{
    (void)state;
    struct world *w = calloc(1, sizeof(*w));
    world_init(w, 11);
    local_write(w, 0, "INSERT INTO parent VALUES (1, 'p')");
    local_write(w, 0, "INSERT INTO child VALUES (1, 1, 'a'), (2, 1, 'b')");
    deliver_all(w);
    local_write(w, 1, "UPDATE parent SET name = 'renamed' WHERE id = 1");
    deliver_all(w);
    for (int i = 0; i < NREG; i++) {
        assert_int_equal(count_in(w, i, "SELECT count(*) FROM child"), 2);
        assert_int_equal(count_in(w, i, "SELECT count(*) FROM parent WHERE name = 'renamed'"), 1);
    }
    local_write(w, 2, "DELETE FROM parent WHERE id = 1"); /* cascades at the origin */
    deliver_all(w);
    for (int i = 0; i < NREG; i++) assert_int_equal(count_in(w, i, "SELECT count(*) FROM child"), 0);
    assert_converged(w);
    world_free(w);
    free(w);
}

/* Item 2: a trigger fires at the origin only; its rows arrive with the entry; local
 * writes after an applied batch still fire it. */
static void test_triggers_fire_once(void **state)
{
    (void)state;
    struct world *w = calloc(1, sizeof(*w));
    world_init(w, 12);
    local_write(w, 0, "INSERT INTO parent VALUES (1, 'p')");
    assert_int_equal(count_in(w, 0, "SELECT count(*) FROM audit"), 1);
    deliver_all(w);
    for (int i = 0; i < NREG; i++) assert_int_equal(count_in(w, i, "SELECT count(*) FROM audit"), 1);
    local_write(w, 1, "INSERT INTO parent VALUES (2, 'q')");
    assert_int_equal(count_in(w, 1, "SELECT count(*) FROM audit WHERE what = 'parent 2'"), 1);
    deliver_all(w);
    for (int i = 0; i < NREG; i++) assert_int_equal(count_in(w, i, "SELECT count(*) FROM audit"), 2);
    assert_converged(w);
    world_free(w);
    free(w);
}

/* Item 3: a parent deleted in one region while a child of it is inserted in another:
 * the same end in every region in both delivery orders (delete wins, the child is
 * recorded as an fk conflict); the child comes back if the parent does. */
static void test_fk_delete_wins_both_orders(void **state)
{
    (void)state;
    for (int order = 0; order < 2; order++) {
        struct world *w = calloc(1, sizeof(*w));
        world_init(w, 13 + (unsigned)order);
        local_write(w, 0, "INSERT INTO parent VALUES (1, 'p')");
        deliver_all(w);
        int kdel = w->n_log;
        local_write(w, 0, "DELETE FROM parent WHERE id = 1");
        int kins = w->n_log;
        local_write(w, 1, "INSERT INTO child VALUES (7, 1, 'orphan')");
        /* r2 receives them in one order or the other, in one batch */
        int ks[2] = {order ? kins : kdel, order ? kdel : kins};
        deliver_batch(w, 2, ks, 2);
        deliver_all(w);
        assert_converged(w);
        for (int i = 0; i < NREG; i++) {
            assert_int_equal(count_in(w, i, "SELECT count(*) FROM child"), 0);
            assert_int_equal(count_in(w, i, "SELECT count(*) FROM parent"), 0);
        }
        assert_true(count_in(w, 0, "SELECT count(*) FROM _edge_conflicts WHERE kind = 'fk'") >= 1);
        /* a later update of the child from its origin changes nothing visible */
        local_write(w, 2, "INSERT INTO parent VALUES (2, 'other')");
        deliver_all(w);
        assert_converged(w);
        /* the parent comes back: so does the child, everywhere */
        local_write(w, 1, "INSERT INTO parent VALUES (1, 'back')");
        deliver_all(w);
        assert_converged(w);
        for (int i = 0; i < NREG; i++) {
            assert_int_equal(count_in(w, i, "SELECT count(*) FROM child WHERE id = 7 AND v = 'orphan'"), 1);
        }
        world_free(w);
        free(w);
    }
}

/* Item 4: two rows given the same UNIQUE value concurrently: the greater (hlc, origin)
 * keeps it in every region, in both delivery orders; the loser is recorded with its
 * values and comes back when the value is free. */
static void test_unique_winner_both_orders(void **state)
{
    (void)state;
    for (int order = 0; order < 2; order++) {
        struct world *w = calloc(1, sizeof(*w));
        world_init(w, 15 + (unsigned)order);
        int k0 = w->n_log;
        local_write(w, 0, "INSERT INTO u VALUES (1, 'same', 10)");
        edge_clock_manual_advance(&w->r[1].clk, 50); /* r1 writes later: r1 wins */
        int k1 = w->n_log;
        local_write(w, 1, "INSERT INTO u VALUES (2, 'same', 20)");
        int ks[2] = {order ? k1 : k0, order ? k0 : k1};
        deliver_batch(w, 2, ks, 2);
        deliver_all(w);
        assert_converged(w);
        for (int i = 0; i < NREG; i++) {
            assert_int_equal(count_in(w, i, "SELECT count(*) FROM u"), 1);
            assert_int_equal(count_in(w, i, "SELECT id FROM u WHERE email = 'same'"), 2);
        }
        assert_true(count_in(w, 0, "SELECT count(*) FROM _edge_conflicts WHERE kind = 'unique' AND loser_origin = 'r0'"
                                   " AND loser_image IS NOT NULL") >= 1);
        /* the winner lets the value go (a local write in r1): the loser is back everywhere */
        local_write(w, 1, "UPDATE u SET email = 'other' WHERE id = 2");
        deliver_all(w);
        assert_converged(w);
        for (int i = 0; i < NREG; i++) {
            assert_int_equal(count_in(w, i, "SELECT count(*) FROM u WHERE id = 1 AND email = 'same' AND n = 10"), 1);
        }
        world_free(w);
        free(w);
    }
}

/* Item 5: entries captured before an ADD COLUMN apply after it (the column takes its
 * default), entries after it apply where it has not arrived yet (the extra column
 * waits: causal delivery), and every region ends the same. */
static void test_alter_add_column_concurrent(void **state)
{
    (void)state;
    struct world *w = calloc(1, sizeof(*w));
    world_init(w, 17);
    local_write(w, 0, "INSERT INTO t(id, a, b, c) VALUES (1, 'x', 1, 1.0)");
    deliver_all(w);
    local_write(w, 0, "ALTER TABLE t ADD COLUMN d TEXT DEFAULT 'dflt'");
    local_write(w, 0, "UPDATE t SET d = 'set' WHERE id = 1");
    local_write(w, 1, "INSERT INTO t(id, a, b, c) VALUES (2, 'y', 2, 2.0)"); /* before the ALTER reached r1 */
    local_write(w, 1, "UPDATE t SET a = 'y2' WHERE id = 1");
    deliver_all(w);
    assert_converged(w);
    char *d = dump(w->r[1].db);
    assert_string_equal(d, "1|'y2'|1|1.0;2|'y'|2|2.0");
    free(d);
    assert_int_equal(count_in(w, 1, "SELECT count(*) FROM t WHERE id = 1 AND d = 'set'"), 1);
    assert_int_equal(count_in(w, 0, "SELECT count(*) FROM t WHERE id = 2 AND d = 'dflt'"), 1);
    world_free(w);
    free(w);
}

/* Item 5: RENAME COLUMN / RENAME TO / DROP COLUMN in one region while another writes
 * under the old names: every region ends the same, the values in the renamed column. */
static void test_rename_while_writing(void **state)
{
    (void)state;
    struct world *w = calloc(1, sizeof(*w));
    world_init(w, 22);
    local_write(w, 0, "INSERT INTO t(id, a, b, c) VALUES (1, 'x', 1, 1.0)");
    deliver_all(w);
    local_write(w, 0, "ALTER TABLE t RENAME COLUMN a TO title");
    local_write(w, 1, "UPDATE t SET a = 'written as a' WHERE id = 1"); /* r1 has not seen the rename */
    local_write(w, 1, "INSERT INTO t(id, a, b, c) VALUES (2, 'new as a', 2, 2.0)");
    deliver_all(w);
    assert_converged(w);
    for (int i = 0; i < NREG; i++) {
        assert_int_equal(count_in(w, i, "SELECT count(*) FROM t WHERE id = 1 AND title = 'written as a'"), 1);
        assert_int_equal(count_in(w, i, "SELECT count(*) FROM t WHERE id = 2 AND title = 'new as a'"), 1);
    }
    local_write(w, 2, "ALTER TABLE t RENAME TO t2");
    local_write(w, 0, "UPDATE t SET b = 99 WHERE id = 2"); /* r0 still calls it t */
    deliver_all(w);
    assert_converged(w);
    for (int i = 0; i < NREG; i++) assert_int_equal(count_in(w, i, "SELECT b FROM t2 WHERE id = 2"), 99);
    local_write(w, 1, "ALTER TABLE t2 DROP COLUMN c");
    local_write(w, 2, "UPDATE t2 SET c = 5.5, b = 7 WHERE id = 1"); /* c is gone in r1 */
    deliver_all(w);
    assert_converged(w);
    for (int i = 0; i < NREG; i++) assert_int_equal(count_in(w, i, "SELECT b FROM t2 WHERE id = 1"), 7);
    world_free(w);
    free(w);
}

/* Item 6: inserts that leave the id to SQLite in two regions at once never collide. */
static void test_ids_no_collision(void **state)
{
    (void)state;
    struct world *w = calloc(1, sizeof(*w));
    world_init(w, 21);
    for (int k = 0; k < 5; k++) {
        local_write(w, 0, "INSERT INTO t(a, b, c) VALUES ('from r0', 0, NULL)");
        local_write(w, 1, "INSERT INTO t(a, b, c) VALUES ('from r1', 1, NULL)");
    }
    assert_int_equal(count_in(w, 0, "SELECT count(*) FROM t WHERE id % 64 = 0"), 5);
    assert_int_equal(count_in(w, 1, "SELECT count(*) FROM t WHERE id % 64 = 1"), 5);
    deliver_all(w);
    assert_converged(w);
    for (int i = 0; i < NREG; i++) assert_int_equal(count_in(w, i, "SELECT count(*) FROM t"), 10);
    /* User triggers, BEFORE and AFTER, see the row once, with its final id: the TEMP
     * striping trigger fires first and the first attempt never happens. */
    exec_ok(w->r[0].db, "CREATE TRIGGER parent_before BEFORE INSERT ON parent BEGIN INSERT INTO audit(id, what)"
                        " VALUES (hex(randomblob(8)), 'before ' || coalesce(NEW.id, 'null')); END");
    local_write(w, 0, "INSERT INTO parent(name) VALUES ('auto')");
    assert_int_equal(count_in(w, 0, "SELECT count(*) FROM parent WHERE name = 'auto' AND id % 64 = 0"), 1);
    assert_int_equal(count_in(w, 0, "SELECT count(*) FROM audit"), 2);
    assert_int_equal(count_in(w, 0, "SELECT count(*) FROM audit WHERE what IN ("
                                    "(SELECT 'before ' || id FROM parent WHERE name = 'auto'),"
                                    "(SELECT 'parent ' || id FROM parent WHERE name = 'auto'))"), 2);
    world_free(w);
    free(w);
}

/* Item 7: an entry whose deps cover the row's version overwrites it even with a lower
 * stamp (its region's clock went back, and nothing recovered the HLC). */
static void test_causality_beats_clock(void **state)
{
    (void)state;
    struct world *w = calloc(1, sizeof(*w));
    world_init(w, 18);
    edge_clock_manual_advance(&w->r[0].clk, 3600000); /* r0 runs an hour ahead */
    local_write(w, 0, "INSERT INTO t(id, a, b, c) VALUES (1, 'ahead', 1, 1.0)");
    deliver_all(w);
    /* r0 "restarts" with a correct clock and no recovery: its HLC starts from the wall */
    w->r[0].clk.wall_ms -= 3600000;
    edge_hlc_init(&w->r[0].hlc, &w->r[0].clk.clock);
    local_write(w, 0, "UPDATE t SET a = 'later' WHERE id = 1");
    deliver_all(w);
    assert_converged(w);
    char *d = dump(w->r[2].db);
    assert_string_equal(d, "1|'later'|1|1.0");
    free(d);
    for (int i = 0; i < NREG; i++) assert_int_equal(w->r[i].stats.conflicts, 0);
    world_free(w);
    free(w);
}

/* Item 7: the clock restarts above the highest stamp stored. */
static void test_hlc_recover(void **state)
{
    (void)state;
    struct world *w = calloc(1, sizeof(*w));
    world_init(w, 19);
    edge_clock_manual_advance(&w->r[0].clk, 3600000);
    local_write(w, 0, "INSERT INTO t(id, a, b, c) VALUES (1, 'ahead', 1, 1.0)");
    uint64_t high = w->log[w->n_log - 1].hlc;
    deliver_all(w);
    for (int i = 0; i < NREG; i++) {
        struct edge_clock_manual m;
        edge_clock_manual_init(&m, 1000000);
        struct edge_hlc h;
        edge_hlc_init(&h, &m.clock);
        assert_int_equal(edge_repl_hlc_recover(w->r[i].db, &h), EDGE_OK);
        assert_true(edge_hlc_now(&h) > high);
    }
    world_free(w);
    free(w);
}

/* Item 8: an entry that cannot be applied is kept aside with its reason, the entries
 * behind it apply, and a retry after the cause is gone applies it. */
static void test_poison_entry_kept_aside(void **state)
{
    (void)state;
    struct world *w = calloc(1, sizeof(*w));
    world_init(w, 20);
    /* r1 has a table named like the index r0 creates: r0's DDL cannot run there */
    exec_ok(w->r[1].db, "CREATE TABLE t_a(x INTEGER PRIMARY KEY)");
    local_write(w, 0, "CREATE INDEX t_a ON t(a)");
    local_write(w, 0, "INSERT INTO t(id, a, b, c) VALUES (5, 'behind', 1, 1.0)");
    int ks[2] = {0, 1};
    deliver_batch(w, 1, ks, 2);
    assert_int_equal(w->r[1].stats.apply_errors, 1);
    assert_int_equal(count_in(w, 1, "SELECT count(*) FROM _edge_apply_errors WHERE origin = 'r0' AND seq = 1"
                                    " AND reason LIKE '%t_a%'"), 1);
    assert_int_equal(count_in(w, 1, "SELECT count(*) FROM t WHERE id = 5"), 1); /* not blocked */
    assert_int_equal(edge_repl_apply_error_count(w->r[1].db), 1);
    /* delivering again does not apply it twice nor count it again */
    deliver_batch(w, 1, ks, 2);
    assert_int_equal(w->r[1].stats.apply_errors, 1);
    /* still failing: stays, with one more attempt */
    struct edge_repl_apply_stats st;
    memset(&st, 0, sizeof(st));
    uint64_t left = 0;
    char err[256] = "";
    assert_int_equal(edge_repl_retry_apply_errors(w->r[1].db, &w->r[1].local, &st, &left, err, sizeof(err)), EDGE_OK);
    assert_int_equal(left, 1);
    exec_ok(w->r[1].db, "DROP TABLE t_a");
    assert_int_equal(edge_repl_retry_apply_errors(w->r[1].db, &w->r[1].local, &st, &left, err, sizeof(err)), EDGE_OK);
    assert_int_equal(left, 0);
    assert_int_equal(edge_repl_apply_error_count(w->r[1].db), 0);
    assert_int_equal(count_in(w, 1, "SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND name = 't_a'"), 1);
    world_free(w);
    free(w);
}

/* Group apply (session.c): several ENTRIES frames in one transaction answer the same VV
 * after each frame as applying them one by one does, with an entry kept aside for good
 * and a gap among them. */
struct frame_vvs {
    uint64_t seq[8];
};

static int record_frame_vv(void *ud, sqlite3 *db, size_t k)
{
    struct edge_vclock vv;
    edge_vclock_init(&vv);
    int rv = edge_repl_vv_load(db, &vv);
    ((struct frame_vvs *)ud)->seq[k] = edge_vclock_get(&vv, "r0");
    edge_vclock_close(&vv);
    return rv;
}

static void test_frames_answer_as_one_by_one(void **state)
{
    (void)state;
    struct world *w = calloc(1, sizeof(*w));
    world_init(w, 23);
    exec_ok(w->r[1].db, "CREATE TABLE t_a(x INTEGER PRIMARY KEY)"); /* r0's index cannot be made in r1 */
    exec_ok(w->r[2].db, "CREATE TABLE t_a(x INTEGER PRIMARY KEY)");
    local_write(w, 0, "CREATE INDEX t_a ON t(a)");
    local_write(w, 0, "INSERT INTO t(id, a, b, c) VALUES (5, 'p', 1, 1.0)");
    local_write(w, 0, "INSERT INTO t(id, a, b, c) VALUES (6, 'q', 2, 2.0)");
    local_write(w, 0, "UPDATE t SET a = 'r' WHERE id = 5");
    /* frames: {1,2} (1 kept aside), {4} (a gap: 3 is not there), {3}, {4} */
    const int ks[] = {0, 1, 3, 2, 3};
    const size_t ends[] = {2, 3, 4, 5};
    struct edge_repl_entry es[5];
    for (int j = 0; j < 5; j++) {
        struct entry *e = &w->log[ks[j]];
        memset(&es[j], 0, sizeof(es[j]));
        snprintf(es[j].origin, sizeof(es[j].origin), "%s", e->origin);
        es[j].seq = e->seq;
        es[j].hlc = e->hlc;
        es[j].deps = e->deps; /* borrowed */
        es[j].payload = e->payload;
        es[j].payload_len = e->len;
    }
    /* r1: one transaction; r2: one per frame, as before group apply */
    struct frame_vvs got = {{0}}, want = {{0}};
    struct edge_repl_frames fr = {ends, 4, record_frame_vv, &got};
    char err[256] = "";
    edge_capture_suspend(w->r[1].cap, true);
    assert_int_equal(edge_repl_apply_frames(w->r[1].db, &w->r[1].local, 0, es, 5, &fr, &w->r[1].stats, err,
                                            sizeof(err)),
                     EDGE_OK);
    edge_capture_suspend(w->r[1].cap, false);
    for (size_t k = 0, from = 0; k < 4; from = ends[k], k++) {
        edge_capture_suspend(w->r[2].cap, true);
        assert_int_equal(edge_repl_apply_batch(w->r[2].db, &w->r[2].local, 0, &es[from], ends[k] - from,
                                               &w->r[2].stats, err, sizeof(err)),
                         EDGE_OK);
        edge_capture_suspend(w->r[2].cap, false);
        struct edge_vclock vv;
        edge_vclock_init(&vv);
        assert_int_equal(edge_repl_vv_load(w->r[2].db, &vv), EDGE_OK);
        want.seq[k] = edge_vclock_get(&vv, "r0");
        edge_vclock_close(&vv);
    }
    const uint64_t expect[4] = {2, 2, 3, 4};
    for (int k = 0; k < 4; k++) {
        assert_int_equal(got.seq[k], expect[k]);
        assert_int_equal(want.seq[k], expect[k]);
    }
    assert_int_equal(w->r[1].stats.apply_errors, 1);
    assert_int_equal(w->r[2].stats.apply_errors, 1);
    assert_int_equal(w->r[1].stats.applied, w->r[2].stats.applied);
    char *d1 = dump(w->r[1].db), *d2 = dump(w->r[2].db);
    assert_string_equal(d1, d2);
    assert_string_equal(d1, "5|'r'|1|1.0;6|'q'|2|2.0");
    free(d1);
    free(d2);
    world_free(w);
    free(w);
}

/* Group apply's failure paths: a failing per-frame callback, a restart for a schema change,
 * and entries kept aside or waiting behind a gap in the middle of the group. */
#define FRAMES_MAX 8

struct frame_log {
    size_t calls[4 * FRAMES_MAX]; /* the frames the callback was called for, in order */
    size_t n_calls;
    char vv[FRAMES_MAX][128]; /* the VV each frame left, as origin=seq,... (the last call's) */
    size_t fail_at;           /* the callback fails for this frame (FRAMES_MAX: never) */
};

static void vv_text(sqlite3 *db, char *out, size_t len)
{
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT coalesce(group_concat(origin || '=' || seq, ','), '') FROM"
                                        " (SELECT origin, seq FROM _edge_vv ORDER BY origin)",
                                        -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    snprintf(out, len, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
}

static int log_frame(void *ud, sqlite3 *db, size_t k)
{
    struct frame_log *fl = ud;
    assert_true(fl->n_calls < 4 * FRAMES_MAX && k < FRAMES_MAX);
    fl->calls[fl->n_calls++] = k;
    if (k == fl->fail_at) return EDGE_ESTORE;
    vv_text(db, fl->vv[k], sizeof(fl->vv[k]));
    return EDGE_OK;
}

static void entries_of(struct world *w, const int *ks, size_t n, struct edge_repl_entry *es)
{
    for (size_t j = 0; j < n; j++) {
        struct entry *e = &w->log[ks[j]];
        memset(&es[j], 0, sizeof(es[j]));
        snprintf(es[j].origin, sizeof(es[j].origin), "%s", e->origin);
        es[j].seq = e->seq;
        es[j].hlc = e->hlc;
        es[j].deps = e->deps; /* borrowed */
        es[j].payload = e->payload;
        es[j].payload_len = e->len;
    }
}

/* The frames (entries ks, frame k ending before entry ends[k]) in one transaction in
 * region 1, logged in *got; returns its result. */
static int apply_group_in(struct world *w, int i, const int *ks, size_t n, const size_t *ends, size_t n_fr,
                          struct frame_log *got)
{
    struct edge_repl_entry es[16];
    assert_true(n <= 16 && n_fr <= FRAMES_MAX);
    entries_of(w, ks, n, es);
    struct edge_repl_frames fr = {ends, n_fr, log_frame, got};
    char err[256] = "";
    edge_capture_suspend(w->r[i].cap, true);
    int rv = edge_repl_apply_frames(w->r[i].db, &w->r[i].local, 0, es, n, &fr, &w->r[i].stats, err, sizeof(err));
    edge_capture_suspend(w->r[i].cap, false);
    return rv;
}

/* The same frames one transaction each in region i, as before group apply: want->vv[k] is
 * the VV after frame k. */
static void apply_each_in(struct world *w, int i, const int *ks, size_t n, const size_t *ends, size_t n_fr,
                          struct frame_log *want)
{
    struct edge_repl_entry es[16];
    assert_true(n <= 16 && n_fr <= FRAMES_MAX);
    entries_of(w, ks, n, es);
    char err[256] = "";
    for (size_t k = 0, from = 0; k < n_fr; from = ends[k], k++) {
        edge_capture_suspend(w->r[i].cap, true);
        assert_int_equal(edge_repl_apply_batch(w->r[i].db, &w->r[i].local, 0, &es[from], ends[k] - from,
                                               &w->r[i].stats, err, sizeof(err)),
                         EDGE_OK);
        edge_capture_suspend(w->r[i].cap, false);
        vv_text(w->r[i].db, want->vv[k], sizeof(want->vv[k]));
    }
}

static int64_t fk_setting(sqlite3 *db) { return count_of(db, "PRAGMA foreign_keys"); }

/* The callback fails after frame 1: the call fails, nothing of any frame is applied (no
 * row, _edge_vv as it was), and the connection is back in autocommit with foreign keys on. */
static void test_frames_callback_fails(void **state)
{
    (void)state;
    struct world *w = calloc(1, sizeof(*w));
    world_init(w, 24);
    local_write(w, 0, "INSERT INTO t(id, a, b, c) VALUES (1, 'x', 1, 1.0)");
    local_write(w, 0, "INSERT INTO t(id, a, b, c) VALUES (2, 'y', 2, 2.0)");
    local_write(w, 0, "INSERT INTO t(id, a, b, c) VALUES (3, 'z', 3, 3.0)");
    char before[128], after[128];
    vv_text(w->r[1].db, before, sizeof(before));
    const int ks[] = {0, 1, 2};
    const size_t ends[] = {1, 2, 3};
    struct frame_log got = {.fail_at = 1};
    assert_int_not_equal(apply_group_in(w, 1, ks, 3, ends, 3, &got), EDGE_OK);
    assert_int_equal(got.n_calls, 2); /* frame 0, then frame 1 fails: frame 2 is never reached */
    assert_int_equal(got.calls[0], 0);
    assert_int_equal(got.calls[1], 1);
    assert_int_equal(count_in(w, 1, "SELECT count(*) FROM t"), 0);
    assert_int_equal(count_in(w, 1, "SELECT count(*) FROM _edge_log"), 0);
    vv_text(w->r[1].db, after, sizeof(after));
    assert_string_equal(after, before);
    assert_int_equal(w->r[1].stats.applied, 0);
    assert_int_not_equal(sqlite3_get_autocommit(w->r[1].db), 0);
    assert_int_equal(fk_setting(w->r[1].db), 1);
    /* and the same frames apply afterwards */
    struct frame_log again = {.fail_at = FRAMES_MAX};
    assert_int_equal(apply_group_in(w, 1, ks, 3, ends, 3, &again), EDGE_OK);
    assert_string_equal(again.vv[0], "r0=1");
    assert_string_equal(again.vv[1], "r0=2");
    assert_int_equal(count_in(w, 1, "SELECT count(*) FROM t"), 3);
    world_free(w);
    free(w);
}

/* A schema change in frame 2 restarts the batch with triggers and foreign keys off: the
 * callback runs again from frame 0 (0, 1, then 0, 1, 2) and each frame's VV is the one
 * applying the frames one transaction each leaves. */
static void test_frames_restart_on_ddl(void **state)
{
    (void)state;
    struct world *w = calloc(1, sizeof(*w));
    world_init(w, 25);
    /* no trigger in the receivers: the batch starts with triggers on, so a DDL entry
     * makes it start again (apply.c batch_begin) */
    exec_ok(w->r[1].db, "DROP TRIGGER parent_audit");
    exec_ok(w->r[2].db, "DROP TRIGGER parent_audit");
    local_write(w, 0, "INSERT INTO t(id, a, b, c) VALUES (1, 'x', 1, 1.0)");
    local_write(w, 0, "INSERT INTO t(id, a, b, c) VALUES (2, 'y', 2, 2.0)");
    local_write(w, 0, "ALTER TABLE t ADD COLUMN d TEXT DEFAULT 'dflt'");
    local_write(w, 0, "UPDATE t SET d = 'set' WHERE id = 1");
    const int ks[] = {0, 1, 2, 3};
    const size_t ends[] = {1, 2, 4};
    struct frame_log got = {.fail_at = FRAMES_MAX}, want = {.fail_at = FRAMES_MAX};
    assert_int_equal(apply_group_in(w, 1, ks, 4, ends, 3, &got), EDGE_OK);
    apply_each_in(w, 2, ks, 4, ends, 3, &want);
    const size_t calls[] = {0, 1, 0, 1, 2};
    assert_int_equal(got.n_calls, 5);
    for (size_t c = 0; c < 5; c++) assert_int_equal(got.calls[c], calls[c]);
    const char *expect[] = {"r0=1", "r0=2", "r0=4"};
    for (int k = 0; k < 3; k++) {
        assert_string_equal(got.vv[k], expect[k]);
        assert_string_equal(want.vv[k], expect[k]);
    }
    assert_int_equal(count_in(w, 1, "SELECT count(*) FROM t WHERE id = 1 AND d = 'set'"), 1);
    assert_int_equal(count_in(w, 1, "SELECT count(*) FROM t WHERE id = 2 AND d = 'dflt'"), 1);
    char *d1 = dump(w->r[1].db), *d2 = dump(w->r[2].db);
    assert_string_equal(d1, d2);
    free(d1);
    free(d2);
    assert_int_equal(w->r[1].stats.applied, 4);
    assert_int_equal(w->r[1].stats.applied, w->r[2].stats.applied);
    assert_int_not_equal(sqlite3_get_autocommit(w->r[1].db), 0);
    assert_int_equal(fk_setting(w->r[1].db), 1);
    world_free(w);
    free(w);
}

/* An entry that fails for good and a gap, both in the middle of the group: frames {1},
 * {2 (cannot be applied here), 3}, {5 (waits: 4 is not there), 4}, {5}. Each frame is
 * answered the VV frame by frame leaves, with the same rows, kept-aside entries and counts. */
static void test_frames_middle_as_one_by_one(void **state)
{
    (void)state;
    struct world *w = calloc(1, sizeof(*w));
    world_init(w, 26);
    exec_ok(w->r[1].db, "CREATE TABLE t_a(x INTEGER PRIMARY KEY)"); /* r0's index cannot be made there */
    exec_ok(w->r[2].db, "CREATE TABLE t_a(x INTEGER PRIMARY KEY)");
    local_write(w, 0, "INSERT INTO t(id, a, b, c) VALUES (5, 'p', 1, 1.0)");
    local_write(w, 0, "CREATE INDEX t_a ON t(a)");
    local_write(w, 0, "INSERT INTO t(id, a, b, c) VALUES (6, 'q', 2, 2.0)");
    local_write(w, 0, "UPDATE t SET a = 'r' WHERE id = 5");
    local_write(w, 0, "UPDATE t SET b = 9 WHERE id = 6");
    const int ks[] = {0, 1, 2, 4, 3, 4};
    const size_t ends[] = {1, 3, 5, 6};
    struct frame_log got = {.fail_at = FRAMES_MAX}, want = {.fail_at = FRAMES_MAX};
    assert_int_equal(apply_group_in(w, 1, ks, 6, ends, 4, &got), EDGE_OK);
    apply_each_in(w, 2, ks, 6, ends, 4, &want);
    const char *expect[] = {"r0=1", "r0=3", "r0=4", "r0=5"};
    for (int k = 0; k < 4; k++) {
        assert_string_equal(got.vv[k], want.vv[k]);
        assert_string_equal(got.vv[k], expect[k]);
    }
    assert_int_equal(got.n_calls, 4);
    assert_int_equal(w->r[1].stats.apply_errors, 1);
    assert_int_equal(w->r[2].stats.apply_errors, 1);
    assert_int_equal(w->r[1].stats.applied, w->r[2].stats.applied);
    assert_int_equal(w->r[1].stats.deferred, w->r[2].stats.deferred);
    assert_int_equal(w->r[1].stats.duplicates, w->r[2].stats.duplicates);
    assert_int_equal(edge_repl_apply_error_count(w->r[1].db), 1);
    assert_int_equal(edge_repl_apply_error_count(w->r[2].db), 1);
    char *d1 = dump(w->r[1].db), *d2 = dump(w->r[2].db);
    assert_string_equal(d1, d2);
    assert_string_equal(d1, "5|'r'|1|1.0;6|'q'|9|2.0");
    free(d1);
    free(d2);
    world_free(w);
    free(w);
}

/* Item 9: X-Edge-Consistency raises a level, never lowers it; a write whose tables are
 * not known takes the strongest configured level. */
static void test_consistency_only_raised(void **state)
{
    (void)state;
    static const char yaml[] = "cluster: { name: t, secret: s }\n"
                               "regions:\n  - { id: a, url: \"http://127.0.0.1:1\" }\n"
                               "  - { id: b, url: \"http://127.0.0.1:2\" }\n"
                               "replication: { consistency_level: eventual, tables: { ledger: strong } }\n";
    struct edge_conf *conf = NULL;
    char err[256] = "";
    assert_int_equal(edge_conf_parse("t.yaml", yaml, sizeof(yaml) - 1, &conf, err, sizeof(err)), EDGE_OK);
    struct edge_repl_state st;
    edge_repl_state_init(&st, "b", ":memory:", conf, NULL, 1000);
    const char *ledger[] = {"ledger"}, *plain[] = {"plain"};
    assert_int_equal(edge_repl_consistency(&st, "eventual", ledger, 1), 1); /* not lowered */
    assert_int_equal(edge_repl_consistency(&st, "async", ledger, 1), 1);
    assert_int_equal(edge_repl_consistency(&st, "strong", plain, 1), 1);   /* raised */
    assert_int_equal(edge_repl_consistency(&st, NULL, plain, 1), 0);
    assert_int_equal(edge_repl_consistency(&st, "async", plain, 1), 0);    /* async is weaker */
    assert_int_equal(edge_repl_consistency(&st, NULL, NULL, -1), 1);       /* unknown tables */
    assert_int_equal(st.id_index, 1); /* b is second in the configuration: its id stripe */
    edge_repl_state_close(&st);
    edge_conf_free(conf);
}

/* ---- Tombstone collection (repl/tomb.h) ---- */

#define tombs(db) tombs_at((db), __LINE__)
static int64_t tombs_at(sqlite3 *db, int line)
{
    int64_t n = count_of(db, "SELECT count(*) FROM _edge_rows WHERE deleted = 1");
    /* the count kept in step with every change (savepoints rolled back included) */
    if ((int64_t)edge_repl_tomb_count(db) != n) {
        fail_msg("line %d: %lld tombstones, counted %lld", line, (long long)n, (long long)edge_repl_tomb_count(db));
    }
    return n;
}

/* One full collection pass of region i's tombstones covered by upto. */
static uint64_t collect_all(struct world *w, int i, const struct edge_vclock *upto)
{
    struct edge_repl_tomb_pass p;
    memset(&p, 0, sizeof(p));
    p.upto = upto;
    p.max = 3; /* small batches: the cursor is exercised */
    for (int guard = 0; guard < 100000 && !p.done; guard++) {
        assert_int_equal(edge_repl_tomb_collect(w->r[i].db, &p), EDGE_OK);
    }
    assert_true(p.done);
    edge_repl_tomb_pass_free(&p);
    return p.collected;
}

static void vv_of(struct world *w, int i, struct edge_vclock *out)
{
    edge_vclock_init(out);
    assert_int_equal(edge_repl_vv_load(w->r[i].db, out), EDGE_OK);
}

/* The horizon rule, directly: once a tombstone is collected, an old concurrent update of
 * its row that arrives later (possible here only because the test collects without the
 * node's epoch rule) loses, as it would have against the tombstone; a new write stamped
 * above the horizon applies; the tombstone of a delete not covered, or one whose column
 * registers hold a write not covered, is kept; the clock restarts above the horizon. */
static void test_tombstone_horizon_rule(void **state)
{
    (void)state;
    struct world *w = calloc(1, sizeof(*w));
    world_init(w, 31);
    local_write(w, 0, "INSERT INTO t(id, a, b, c) VALUES (1, 'x', 1, 1.0), (2, 'y', 2, 2.0), (3, 'z', 3, 3.0)");
    deliver_all(w);
    int upd = w->n_log;
    local_write(w, 1, "UPDATE t SET a = 'old' WHERE id = 1"); /* r1, not delivered yet */
    edge_clock_manual_advance(&w->r[2].clk, 100);
    int del = w->n_log;
    local_write(w, 2, "DELETE FROM t WHERE id IN (1, 2)");
    assert_int_equal(deliver(w, 0, del), EDGE_OK);
    assert_int_equal(tombs(w->r[0].db), 2);

    struct edge_vclock v;
    vv_of(w, 0, &v);
    edge_clock_manual_advance(&w->r[2].clk, 10);
    int del3 = w->n_log;
    local_write(w, 2, "DELETE FROM t WHERE id = 3"); /* after v: not covered */
    assert_int_equal(deliver(w, 0, del3), EDGE_OK);
    assert_int_equal(tombs(w->r[0].db), 3);
    assert_int_equal(edge_repl_tomb_horizon(w->r[0].db), 0);
    assert_int_equal(collect_all(w, 0, &v), 2);
    assert_int_equal(tombs(w->r[0].db), 1); /* id 3 kept */
    uint64_t h = edge_repl_tomb_horizon(w->r[0].db);
    assert_int_equal(h, w->log[del].hlc);

    /* the late, older update of row 1: no metadata, stamped below the horizon */
    assert_true(w->log[upd].hlc < h);
    uint64_t drops = w->r[0].stats.horizon_drops;
    assert_int_equal(deliver(w, 0, upd), EDGE_OK);
    assert_int_equal(w->r[0].stats.horizon_drops, drops + 1);
    char *d = dump(w->r[0].db);
    assert_string_equal(d, ""); /* not resurrected */
    free(d);

    /* r1 writes again once it holds the deletes: stamped above the horizon, applied */
    assert_int_equal(deliver(w, 1, del), EDGE_OK);
    assert_int_equal(deliver(w, 1, del3), EDGE_OK);
    local_write(w, 1, "INSERT INTO t(id, a, b, c) VALUES (1, 'again', 9, 9.0)");
    assert_true(w->log[w->n_log - 1].hlc > h);
    assert_int_equal(deliver(w, 0, w->n_log - 1), EDGE_OK);
    d = dump(w->r[0].db);
    assert_string_equal(d, "1|'again'|9|9.0");
    free(d);
    assert_int_equal(w->r[0].stats.horizon_drops, drops + 1);

    /* a tombstone whose column register holds a write v does not cover is kept */
    local_write(w, 0, "INSERT INTO t(id, a, b, c) VALUES (5, 'p', 5, 5.0)");
    deliver_all(w);
    int old5 = w->n_log;
    local_write(w, 1, "UPDATE t SET b = 55 WHERE id = 5"); /* older, concurrent */
    edge_clock_manual_advance(&w->r[2].clk, 100);
    int del5 = w->n_log;
    local_write(w, 2, "DELETE FROM t WHERE id = 5");
    assert_int_equal(deliver(w, 0, del5), EDGE_OK);
    struct edge_vclock v2;
    vv_of(w, 0, &v2);
    assert_int_equal(deliver(w, 0, old5), EDGE_OK); /* merges into the tombstone's registers */
    int64_t before = tombs(w->r[0].db);
    assert_int_equal(collect_all(w, 0, &v2), before - 1); /* id 3 goes, id 5 stays */
    assert_int_equal(count_of(w->r[0].db, "SELECT count(*) FROM _edge_rows WHERE deleted = 1"), 1);

    /* the clock of a restarted region never stamps at or below the horizon */
    struct edge_clock_manual m;
    edge_clock_manual_init(&m, 1000);
    struct edge_hlc hh;
    edge_hlc_init(&hh, &m.clock);
    exec_ok(w->r[0].db, "DELETE FROM _edge_log; DELETE FROM _edge_rows");
    assert_int_equal(edge_repl_hlc_recover(w->r[0].db, &hh), EDGE_OK);
    assert_true(edge_hlc_now(&hh) > edge_repl_tomb_horizon(w->r[0].db));
    edge_vclock_close(&v);
    edge_vclock_close(&v2);
    world_free(w);
    free(w);
}

/* The node's epoch rule (tomb.h) in a world of three regions: region i collects the
 * tombstones covered by V (its VV when the epoch began) once every other region j has
 * held V (vv_j >= V: an acknowledgement) and i has j's own entries up to what j had
 * then. Random histories are run twice from the same seed, with collection at every
 * step and without: every region ends byte-identical to the run without (so no row came
 * back and none was lost), the horizon rule never fired, and tombstones were collected. */
struct gc_epoch {
    bool active;
    struct edge_vclock v;
    bool known[NREG];
    uint64_t need[NREG];
};

static uint64_t gc_step(struct world *w, struct gc_epoch *e, int i)
{
    struct edge_vclock vi;
    vv_of(w, i, &vi);
    if (!e->active) {
        edge_vclock_close(&e->v);
        edge_vclock_init(&e->v);
        assert_int_equal(edge_vclock_copy(&e->v, &vi), EDGE_OK);
        memset(e->known, 0, sizeof(e->known));
        e->active = true;
    }
    bool safe = true;
    for (int j = 0; j < NREG; j++) {
        if (j == i) continue;
        struct edge_vclock vj;
        vv_of(w, j, &vj);
        if (!e->known[j]) {
            bool all = true;
            for (size_t k = 0; k < e->v.n_entries; k++) {
                all = all && edge_vclock_get(&vj, e->v.entries[k].region) >= e->v.entries[k].n;
            }
            if (all) {
                e->known[j] = true;
                e->need[j] = edge_vclock_get(&vj, w->r[j].id);
            }
        }
        safe = safe && e->known[j] && edge_vclock_get(&vi, w->r[j].id) >= e->need[j];
        edge_vclock_close(&vj);
    }
    uint64_t got = 0;
    if (safe) {
        got = collect_all(w, i, &e->v);
        e->active = false;
    }
    edge_vclock_close(&vi);
    return got;
}

static void run_history(struct world *w, unsigned seed, bool gc, uint64_t *mid, uint64_t *collected)
{
    world_init(w, seed);
    struct gc_epoch ep[NREG];
    memset(ep, 0, sizeof(ep));
    for (int i = 0; i < NREG; i++) edge_vclock_init(&ep[i].v);
    int steps = 40 + (int)(rnd(w) % 80);
    for (int s = 0; s < steps; s++) {
        int i = (int)(rnd(w) % NREG);
        uint64_t move = rnd(w) % 12;
        if (move == 0) {
            deliver_all(w); /* a quiet moment: every region catches up, epochs move on */
        } else if (move % 2 == 0 && w->n_log > 0) {
            int ks[5], n = 1 + (int)(rnd(w) % 5);
            for (int k = 0; k < n; k++) ks[k] = (int)(rnd(w) % (uint64_t)w->n_log);
            deliver_batch(w, i, ks, n);
        } else {
            random_write(w, i);
        }
        for (int g = 0; gc && g < NREG; g++) *mid += gc_step(w, &ep[g], g);
    }
    deliver_all(w);
    /* converged: the open epochs become safe, then a new one takes the rest */
    for (int round = 0; gc && round < 2; round++) {
        for (int g = 0; g < NREG; g++) *collected += gc_step(w, &ep[g], g);
    }
    for (int i = 0; i < NREG; i++) {
        int64_t n = tombs(w->r[i].db);
        if (gc) assert_int_equal(n, 0);
    }
    for (int i = 0; i < NREG; i++) edge_vclock_close(&ep[i].v);
}

/* The user tables whose content is deterministic (audit ids are random). */
static char *dump_det(sqlite3 *db)
{
    static const char *const q[] = {"SELECT * FROM t ORDER BY id", "SELECT * FROM parent ORDER BY id",
                                    "SELECT * FROM child ORDER BY id", "SELECT * FROM u ORDER BY id"};
    char *out = sqlite3_mprintf("%s", "");
    for (size_t k = 0; k < sizeof(q) / sizeof(q[0]); k++) {
        sqlite3_stmt *st;
        assert_int_equal(sqlite3_prepare_v2(db, q[k], -1, &st, NULL), SQLITE_OK);
        while (sqlite3_step(st) == SQLITE_ROW) {
            for (int c = 0; c < sqlite3_column_count(st); c++) {
                const unsigned char *v = sqlite3_column_text(st, c);
                char *nl = sqlite3_mprintf("%s%s%s", out, c ? "|" : "", v ? (const char *)v : "NULL");
                sqlite3_free(out);
                out = nl;
            }
            char *nl = sqlite3_mprintf("%s;", out);
            sqlite3_free(out);
            out = nl;
        }
        sqlite3_finalize(st);
        char *nl = sqlite3_mprintf("%s\n", out);
        sqlite3_free(out);
        out = nl;
    }
    char *r = strdup(out);
    sqlite3_free(out);
    return r;
}

static void test_tombstone_gc_random_histories(void **state)
{
    (void)state;
    unsigned base = base_seed() + 7000;
    uint64_t collected = 0, mid = 0;
    for (unsigned h = 0; h < 10; h++) {
        struct world *a = calloc(1, sizeof(*a));
        struct world *b = calloc(1, sizeof(*b));
        run_history(a, base + h, false, &mid, &collected);
        uint64_t before = collected + mid;
        run_history(b, base + h, true, &mid, &collected);
        assert_converged(b);
        for (int i = 0; i < NREG; i++) {
            char *da = dump_det(a->r[i].db), *db = dump_det(b->r[i].db);
            if (strcmp(da, db) != 0) {
                fail_msg("seed %u: region r%d differs with tombstone collection (%llu collected):\n without: %.600s\n "
                         "with:    %.600s", base + h, i, (unsigned long long)(collected + mid - before), da, db);
            }
            free(da);
            free(db);
            assert_int_equal(b->r[i].stats.horizon_drops, 0);
        }
        world_free(a);
        world_free(b);
        free(a);
        free(b);
    }
    fprintf(stdout, "tombstones collected: %llu while writing, %llu after convergence\n", (unsigned long long)mid,
            (unsigned long long)collected);
    assert_true(mid > 5);
}

/* Session records (apply_sess.c): writes on both sides of a partition, each changing other
 * columns, end as one writer's whole record with both version vectors joined, in every
 * region and delivery order; the per-column merge would mix r0's raw_len with r1's ttl_ms. */
static char *dump_sess(sqlite3 *db)
{
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT coalesce(group_concat(id || '|' || home || '|' || epoch || '|' || version"
                                        " || '|' || ttl_ms || '|' || raw_len || '|' || hex(blob) || '|' || vv, ';'), '')"
                                        " FROM (SELECT * FROM _edge_sessions ORDER BY id)",
                                        -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    char *out = strdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return out;
}

static void test_session_records_merge_whole(void **state)
{
    (void)state;
    uint64_t merges_total = 0;
    for (unsigned seed = 1; seed <= 12; seed++) {
        struct world *w = calloc(1, sizeof(*w));
        world_init(w, seed);
        for (int i = 0; i < NREG; i++) {
            exec_ok(w->r[i].db,
                    "CREATE TABLE _edge_sessions(id TEXT PRIMARY KEY, home TEXT NOT NULL, epoch INTEGER NOT NULL,"
                    " version INTEGER NOT NULL, ttl_ms INTEGER NOT NULL, created_at INTEGER NOT NULL,"
                    " expires_at INTEGER NOT NULL, max_expires_at INTEGER NOT NULL, key_id INTEGER NOT NULL,"
                    " raw_len INTEGER NOT NULL, blob BLOB NOT NULL, vv TEXT NOT NULL DEFAULT '{}')");
        }
        local_write(w, 0, "INSERT INTO _edge_sessions VALUES ('s', 'r0', 1, 1, 1000, 1, 9, 9, 1, 5, x'a0', '{\"r0\":1}')");
        deliver_all(w);
        /* the partition: r0 (the home) and r1 each write once, seeing only the create */
        local_write(w, 1, "UPDATE _edge_sessions SET version = 2, ttl_ms = 2000, blob = x'b1',"
                          " vv = '{\"r0\":1,\"r1\":1}' WHERE id = 's'");
        local_write(w, 0, "UPDATE _edge_sessions SET version = 2, raw_len = 7, blob = x'a1', vv = '{\"r0\":2}'"
                          " WHERE id = 's'");
        deliver_all(w);
        char *d0 = dump_sess(w->r[0].db);
        for (int i = 1; i < NREG; i++) {
            char *di = dump_sess(w->r[i].db);
            if (strcmp(d0, di) != 0) fail_msg("seed %u: r0 %s, r%d %s", seed, d0, i, di);
            free(di);
        }
        /* r1's write has the greater stamp (its clock runs 3 ahead, and it wrote first in a tie) or r0's: the
         * result is one of them whole, with both writes in its vv */
        if (strcmp(d0, "s|r0|1|2|2000|5|B1|{\"r0\":2,\"r1\":1}") != 0 &&
            strcmp(d0, "s|r0|1|2|1000|7|A1|{\"r0\":2,\"r1\":1}") != 0) {
            fail_msg("seed %u: a mixed or unmerged record: %s", seed, d0);
        }
        free(d0);
        /* every region merged once (r2 on the second write it heard) and kept the loser */
        for (int i = 0; i < NREG; i++) {
            assert_int_equal(w->r[i].stats.session_merges, 1);
            assert_int_equal(count_of(w->r[i].db, "SELECT count(*) FROM _edge_conflicts WHERE kind = 'session'"), 1);
            merges_total += w->r[i].stats.session_merges;
        }
        /* a later write at the home covers both: taken whole everywhere, no new merge */
        local_write(w, 0, "UPDATE _edge_sessions SET version = 3, blob = x'a3', vv = '{\"r0\":3,\"r1\":1}' WHERE id = 's'");
        deliver_all(w);
        for (int i = 0; i < NREG; i++) {
            char *di = dump_sess(w->r[i].db);
            assert_non_null(strstr(di, "|3|"));
            assert_non_null(strstr(di, "|A3|"));
            assert_int_equal(w->r[i].stats.session_merges, 1);
            free(di);
        }
        world_free(w);
        free(w);
    }
    assert_int_equal(merges_total, 12 * NREG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_concurrent_columns_merge), cmocka_unit_test(test_same_column_later_wins),
        cmocka_unit_test(test_sequential_not_conflict),  cmocka_unit_test(test_delete_tombstone),
        cmocka_unit_test(test_duplicates_and_gaps),      cmocka_unit_test(test_random_histories_converge),
        cmocka_unit_test(test_parent_update_keeps_children), cmocka_unit_test(test_triggers_fire_once),
        cmocka_unit_test(test_fk_delete_wins_both_orders), cmocka_unit_test(test_unique_winner_both_orders),
        cmocka_unit_test(test_alter_add_column_concurrent), cmocka_unit_test(test_causality_beats_clock),
        cmocka_unit_test(test_hlc_recover),              cmocka_unit_test(test_poison_entry_kept_aside),
        cmocka_unit_test(test_ids_no_collision),         cmocka_unit_test(test_rename_while_writing),
        cmocka_unit_test(test_consistency_only_raised), cmocka_unit_test(test_tombstone_horizon_rule),
        cmocka_unit_test(test_tombstone_gc_random_histories), cmocka_unit_test(test_session_records_merge_whole),
        cmocka_unit_test(test_frames_answer_as_one_by_one),
        cmocka_unit_test(test_frames_callback_fails), cmocka_unit_test(test_frames_restart_on_ddl),
        cmocka_unit_test(test_frames_middle_as_one_by_one),
    };
    fprintf(stdout, "test_repl_apply: seed %u (set EDGE_SEED to reproduce)\n", base_seed());
    return cmocka_run_group_tests_name("repl_apply", tests, NULL, NULL);
}
