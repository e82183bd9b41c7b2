/* SPDX-License-Identifier: MIT */
/* Unit tests of edge_store_step: a deferred transaction's write that finds the write
 * lock held waits for it within the busy timeout, and no longer than that. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include <sqlite3.h>

#include "store/store.h"

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

struct holder {
    sqlite3 *db;
    int hold_ms;
};

static void *release_later(void *ud)
{
    struct holder *h = ud;
    usleep((useconds_t)h->hold_ms * 1000u);
    sqlite3_exec(h->db, "ROLLBACK", NULL, NULL, NULL);
    return NULL;
}

/* Another connection holds the write lock for 2500 ms; the transaction (busy timeout
 * 300 ms, no statement budget) writes first or after a read. Either way its write fails
 * SQLITE_BUSY after about the busy timeout. Before, a transaction that had not read yet
 * waited in SQLite's handler inside every retry, which counted only its own sleeps: it
 * waited for the holder (2500 ms here; minutes with the 5 s timeout) and went through. */
static void run(bool read_first)
{
    char dir[] = "/tmp/edge_step_XXXXXX", path[256], err[256];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/db", dir);
    struct edge_store_conn *hc = NULL, *c = NULL;
    assert_int_equal(edge_store_open(path, EDGE_STORE_WRITE, false, 300, &hc, err, sizeof(err)), 0);
    assert_int_equal(edge_store_open(path, EDGE_STORE_WRITE, false, 300, &c, err, sizeof(err)), 0);
    sqlite3 *hdb = edge_store_db(hc), *db = edge_store_db(c);
    assert_int_equal(sqlite3_exec(hdb, "CREATE TABLE t (id INTEGER PRIMARY KEY)", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
    if (read_first) assert_int_equal(sqlite3_exec(db, "SELECT count(*) FROM t", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_exec(hdb, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    struct holder h = {hdb, 2500};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, release_later, &h), 0);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "INSERT INTO t VALUES (1)", -1, &st, NULL), SQLITE_OK);
    uint64_t t0 = now_ms();
    int rc = edge_store_step(c, st);
    uint64_t took = now_ms() - t0;
    sqlite3_finalize(st);
    pthread_join(th, NULL);
    printf("read_first %d: rc %d after %llu ms\n", read_first, rc, (unsigned long long)took);
    assert_int_equal(rc, SQLITE_BUSY);
    assert_true(took >= 250);
    assert_true(took < 2000); /* the holder lets go at 2500 ms */
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    edge_store_close(c);
    edge_store_close(hc);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_first_write_waits_the_busy_timeout_only(void **state)
{
    (void)state;
    run(false);
}

static void test_write_after_read_waits_the_busy_timeout_only(void **state)
{
    (void)state;
    run(true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_write_waits_the_busy_timeout_only),
        cmocka_unit_test(test_write_after_read_waits_the_busy_timeout_only),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
