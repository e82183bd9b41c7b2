/* SPDX-License-Identifier: MIT */
/* Replication core, in process: real SQLite databases with real change capture, the
 * log and the apply path, without the network (the world of repl_world.h). Seeded and
 * reproducible (EDGE_SEED); the seed is printed on failure.
 *
 * Properties:
 *  - convergence: random concurrent inserts, column updates and deletes in 3 regions,
 *    delivered to each other in random (causal) orders, end byte-identical;
 *  - per-column merge: concurrent updates of different columns both survive;
 *    of the same column, the later (hlc, region) wins; session records merge whole;
 *  - tombstones: an older update never resurrects a deleted row;
 *  - sequential writes through different regions are not conflicts, concurrent ones are;
 *  - duplicates and out-of-order entries are refused without effect;
 *  - causality beats the clock, and the clock restarts above the highest stamp.
 * The user schemas (constraints, triggers, DDL) are in test_repl_apply_schema.c, group
 * apply in test_repl_apply_frames.c, tombstone collection in test_repl_apply_tomb.c. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/conf.h"
#include "repl/repl.h"
#include "repl/state.h"
#include "repl_world.h"

static void test_random_histories_converge(void **state)
{
    (void)state;
    unsigned base = base_seed();
    world_trace = getenv("EDGE_TRACE") != NULL;
    for (unsigned h = 0; h < (world_trace ? 1u : 200u); h++) {
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

/* Session records (apply_sess.c): writes on both sides of a partition, each changing other
 * columns, end as one writer's whole record with both version vectors joined, in every
 * region and delivery order; the per-column merge would mix r0's raw_len with r1's ttl_ms. */
static char *dump_sess(sqlite3 *db)
{
    return query_text(db, "SELECT coalesce(group_concat(id || '|' || home || '|' || epoch || '|' || version"
                          " || '|' || ttl_ms || '|' || raw_len || '|' || hex(blob) || '|' || vv, ';'), '')"
                          " FROM (SELECT * FROM _edge_sessions ORDER BY id)");
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
        cmocka_unit_test(test_concurrent_columns_merge),
        cmocka_unit_test(test_same_column_later_wins),
        cmocka_unit_test(test_sequential_not_conflict),
        cmocka_unit_test(test_delete_tombstone),
        cmocka_unit_test(test_duplicates_and_gaps),
        cmocka_unit_test(test_random_histories_converge),
        cmocka_unit_test(test_causality_beats_clock),
        cmocka_unit_test(test_hlc_recover),
        cmocka_unit_test(test_consistency_only_raised),
        cmocka_unit_test(test_session_records_merge_whole),
    };
    fprintf(stdout, "test_repl_apply: seed %u (set EDGE_SEED to reproduce)\n", base_seed());
    return cmocka_run_group_tests_name("repl_apply", tests, NULL, NULL);
}
