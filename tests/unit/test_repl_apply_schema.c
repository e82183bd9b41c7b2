/* SPDX-License-Identifier: MIT */
/* Replication apply with the schemas users write (the world of repl_world.h): ON DELETE
 * CASCADE children, triggers, foreign keys and UNIQUE columns across regions, ALTER TABLE
 * while other regions write, ids left to SQLite, and an entry that cannot apply kept aside. */
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
#include "repl_world.h"

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parent_update_keeps_children),
        cmocka_unit_test(test_triggers_fire_once),
        cmocka_unit_test(test_fk_delete_wins_both_orders),
        cmocka_unit_test(test_unique_winner_both_orders),
        cmocka_unit_test(test_alter_add_column_concurrent),
        cmocka_unit_test(test_poison_entry_kept_aside),
        cmocka_unit_test(test_ids_no_collision),
        cmocka_unit_test(test_rename_while_writing),
    };
    return cmocka_run_group_tests_name("repl_apply_schema", tests, NULL, NULL);
}
