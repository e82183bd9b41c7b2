/* SPDX-License-Identifier: MIT */
/* The store's sandbox: refusals only while it is on, edgelite's own statements on the
 * same connection unaffected, and the statement cache never serving a statement
 * prepared outside the sandbox to a sandboxed caller. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "store/store.h"

struct fx {
    char dir[64];
    char path[96];
    struct edge_store_conn *c;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/edge-sbx-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/db", f->dir);
    char err[256];
    assert_int_equal(edge_store_global_init(err, sizeof(err)), 0);
    assert_int_equal(edge_store_open(f->path, EDGE_STORE_WRITE, false, 1000, &f->c, err, sizeof(err)), 0);
    sqlite3 *db = edge_store_db(f->c);
    assert_int_equal(sqlite3_exec(db, "CREATE TABLE _edge_log(x); CREATE TABLE t(x)", NULL, NULL, NULL), SQLITE_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    edge_store_close(f->c);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static int run(struct edge_store_conn *c, const char *sql)
{
    sqlite3_stmt *st = NULL;
    size_t tail = 0;
    int rc = edge_store_prepare(c, sql, strlen(sql), &st, &tail);
    if (rc != SQLITE_OK) return rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    }
    edge_store_release(c, st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static void test_own_statements_pass_client_ones_do_not(void **state)
{
    struct fx *f = *state;
    const char *w = "INSERT INTO _edge_log VALUES (1)";
    assert_int_equal(run(f->c, w), SQLITE_OK); /* edgelite's own, cached now */
    edge_store_sandbox(f->c, true);
    assert_int_equal(run(f->c, w), SQLITE_AUTH); /* same text: not served from the cache */
    assert_non_null(strstr(edge_store_refusal(f->c), "_edge_log"));
    assert_int_equal(run(f->c, "SELECT x FROM _edge_log"), SQLITE_AUTH);
    assert_int_equal(run(f->c, "INSERT INTO t VALUES (1)"), SQLITE_OK);
    assert_string_equal(edge_store_refusal(f->c), "");
    assert_int_equal(run(f->c, "PRAGMA synchronous = OFF"), SQLITE_AUTH);
    assert_int_equal(run(f->c, "PRAGMA synchronous"), SQLITE_OK);
    assert_int_equal(run(f->c, "PRAGMA table_info(t)"), SQLITE_OK);
    char att[160];
    snprintf(att, sizeof(att), "ATTACH '%s/other.db' AS o", f->dir);
    assert_int_equal(run(f->c, att), SQLITE_AUTH);
    edge_store_sandbox(f->c, false);
    /* Outside the sandbox edgelite's own statement still runs, from the cache. */
    assert_int_equal(run(f->c, w), SQLITE_OK);
    /* No connection attaches, sandbox or not. */
    assert_int_not_equal(run(f->c, att), SQLITE_OK);
    char other[128];
    snprintf(other, sizeof(other), "%s/other.db", f->dir);
    assert_int_not_equal(access(other, F_OK), 0);
    sqlite3_stmt *st = NULL;
    sqlite3_prepare_v2(edge_store_db(f->c), "SELECT count(*) FROM _edge_log", -1, &st, NULL);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(st, 0), 2);
    sqlite3_finalize(st);
}

static void test_trigger_writing_edge_tables_never_fires(void **state)
{
    struct fx *f = *state;
    edge_store_sandbox(f->c, true);
    assert_int_equal(run(f->c, "CREATE TRIGGER tr AFTER INSERT ON t BEGIN INSERT INTO \"_EDGE_LOG\" VALUES (9); END"),
                     SQLITE_AUTH);
    edge_store_sandbox(f->c, false);
    /* Made behind the sandbox's back (an old database): it still cannot write _edge_* when
     * edgelite's own statements fire it. */
    assert_int_equal(sqlite3_exec(edge_store_db(f->c),
                                  "CREATE TRIGGER tr AFTER INSERT ON t BEGIN INSERT INTO _edge_log VALUES (9); END",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    assert_int_equal(run(f->c, "INSERT INTO t VALUES (2)"), SQLITE_AUTH);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_own_statements_pass_client_ones_do_not, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trigger_writing_edge_tables_never_fires, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
