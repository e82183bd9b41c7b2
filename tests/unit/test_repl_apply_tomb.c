/* SPDX-License-Identifier: MIT */
/* Tombstone collection (repl/tomb.h, the world of repl_world.h): the horizon rule, and the
 * node's epoch rule over random histories run with and without collection. Seeded and
 * reproducible (EDGE_SEED); the seed is printed on failure. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "repl/repl.h"
#include "repl/tomb.h"
#include "repl_world.h"

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tombstone_horizon_rule),
        cmocka_unit_test(test_tombstone_gc_random_histories),
    };
    fprintf(stdout, "test_repl_apply_tomb: seed %u (set EDGE_SEED to reproduce)\n", base_seed());
    return cmocka_run_group_tests_name("repl_apply_tomb", tests, NULL, NULL);
}
