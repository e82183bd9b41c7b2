/* SPDX-License-Identifier: MIT */
/* The replication world of repl_world.h: helpers only, no tests. */
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
#include "repl/proto.h"
#include "repl_world.h"

uint64_t rnd(struct world *w)
{
    w->rng ^= w->rng << 13;
    w->rng ^= w->rng >> 7;
    w->rng ^= w->rng << 17;
    return w->rng;
}

void exec_ok(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
        fail_msg("%s: %s", sql, err ? err : "?");
    }
}

void world_init(struct world *w, unsigned seed)
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

void world_free(struct world *w)
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

bool world_trace;

/* Run SQL as one local transaction in region i and keep its log entry. */
uint64_t local_write(struct world *w, int i, const char *sql)
{
    struct region *r = &w->r[i];
    if (world_trace) fprintf(stderr, "W r%d #%d: %s\n", i, w->n_log, sql);
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
    if (world_trace) {
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

void world_entries(struct world *w, const int *ks, size_t n, struct edge_repl_entry *es)
{
    for (size_t j = 0; j < n; j++) {
        struct entry *e = &w->log[ks[j]];
        memset(&es[j], 0, sizeof(es[j]));
        snprintf(es[j].origin, sizeof(es[j].origin), "%s", e->origin);
        es[j].seq = e->seq;
        es[j].hlc = e->hlc;
        es[j].deps = e->deps; /* borrowed, not freed */
        es[j].payload = e->payload;
        es[j].payload_len = e->len;
    }
}

/* Deliver entries ks[0..n) to region i in one batch, through the function the node's
 * writer uses; returns the batch result. */
int deliver_batch(struct world *w, int i, const int *ks, int n)
{
    struct region *r = &w->r[i];
    struct edge_repl_entry es[16];
    assert_true(n <= 16);
    world_entries(w, ks, (size_t)n, es);
    char err[256] = "";
    if (world_trace) {
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
int deliver(struct world *w, int i, int k)
{
    uint64_t a = w->r[i].stats.applied, d = w->r[i].stats.deferred;
    deliver_batch(w, i, &k, 1);
    return w->r[i].stats.deferred != d && w->r[i].stats.applied == a ? EDGE_EAGAIN : EDGE_OK;
}

/* Deliver everything everywhere until nothing moves (random order within each pass). */
void deliver_all(struct world *w)
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

char *query_text(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    const unsigned char *v = sqlite3_column_text(st, 0);
    assert_non_null(v);
    char *s = strdup((const char *)v);
    sqlite3_finalize(st);
    return s;
}

char *dump(sqlite3 *db)
{
    return query_text(db, "SELECT coalesce(group_concat(id || '|' || quote(a) || '|' || quote(b) || '|' || quote(c), ';'), '')"
                          " FROM (SELECT * FROM t ORDER BY id)");
}

/* Every user table (and the schema) of a region as text, in primary key order. */
char *dump_all(sqlite3 *db)
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

int64_t count_of(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

void assert_converged(struct world *w)
{
    char *d0 = dump_all(w->r[0].db);
    for (int i = 1; i < NREG; i++) {
        char *di = dump_all(w->r[i].db);
        if (strcmp(d0, di) != 0) {
            if (world_trace) {
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

void random_write(struct world *w, int i)
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

unsigned base_seed(void)
{
    const char *s = getenv("EDGE_SEED");
    return s ? (unsigned)strtoul(s, NULL, 10) : 20261126u;
}

int64_t count_in(struct world *w, int i, const char *sql) { return count_of(w->r[i].db, sql); }
