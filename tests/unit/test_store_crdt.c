/* SPDX-License-Identifier: MIT */
/* CRDT persistence: rows survive close/reopen byte for byte; saves follow
 * the caller's transaction (a rollback leaves nothing). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "store/crdt_store.h"

/* The store keeps prepared statements on the connection (store/sql.h): finalize them
 * so a close succeeds, as store.c does. */
static int close_db(sqlite3 *db)
{
    sqlite3_stmt *st;
    while ((st = sqlite3_next_stmt(db, NULL)) != NULL) {
        sqlite3_finalize(st);
    }
    return sqlite3_close(db);
}

struct fixture {
    char path[64];
    sqlite3 *db;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    snprintf(f->path, sizeof(f->path), "/tmp/edge_crdt_store_%d.db", (int)getpid());
    unlink(f->path);
    assert_int_equal(sqlite3_open(f->path, &f->db), SQLITE_OK);
    assert_int_equal(edge_crdt_store_init(f->db), EDGE_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    close_db(f->db);
    unlink(f->path);
    free(f);
    return 0;
}

static void reopen(struct fixture *f)
{
    assert_int_equal(close_db(f->db), SQLITE_OK);
    assert_int_equal(sqlite3_open(f->path, &f->db), SQLITE_OK);
    assert_int_equal(edge_crdt_store_init(f->db), EDGE_OK); /* idempotent */
}

static void save(sqlite3 *db, const char *name, const char *type, const char *state, uint64_t conflicts)
{
    struct edge_crdt_row row = {(char *)name, (char *)type, (uint8_t *)state, strlen(state), conflicts, 1234};
    assert_int_equal(edge_crdt_store_save(db, &row), EDGE_OK);
}

struct names {
    char buf[128];
};

static int list_cb(void *ud, const struct edge_crdt_row *row)
{
    struct names *n = ud;
    strcat(n->buf, row->name);
    strcat(n->buf, ":");
    strcat(n->buf, row->type);
    strcat(n->buf, ";");
    return 0;
}

static void test_roundtrip_restart(void **state)
{
    struct fixture *f = *state;
    struct edge_crdt_row row;
    assert_int_equal(sqlite3_exec(f->db, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
    save(f->db, "b", "or-set", "state-b", 0);
    save(f->db, "a", "g-counter", "state-a", 3);
    save(f->db, "a", "g-counter", "state-a2", 4); /* replace */
    assert_int_equal(sqlite3_exec(f->db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    reopen(f);
    assert_int_equal(edge_crdt_store_load(f->db, "a", &row), EDGE_OK);
    assert_string_equal(row.type, "g-counter");
    assert_int_equal(row.state_len, 8);
    assert_memory_equal(row.state, "state-a2", 8);
    assert_int_equal(row.conflicts, 4);
    assert_int_equal(row.updated_ms, 1234);
    edge_crdt_store_row_free(&row);
    assert_int_equal(edge_crdt_store_load(f->db, "zz", &row), EDGE_ENOTFOUND);
    struct names names = {{0}};
    assert_int_equal(edge_crdt_store_list(f->db, list_cb, &names), EDGE_OK);
    assert_string_equal(names.buf, "a:g-counter;b:or-set;");
}

static void test_rollback_leaves_nothing(void **state)
{
    struct fixture *f = *state;
    struct edge_crdt_row row;
    struct names names = {{0}};
    assert_int_equal(sqlite3_exec(f->db, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
    save(f->db, "x", "pn-counter", "s", 0);
    assert_int_equal(sqlite3_exec(f->db, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    reopen(f);
    assert_int_equal(edge_crdt_store_load(f->db, "x", &row), EDGE_ENOTFOUND);
    assert_int_equal(edge_crdt_store_list(f->db, list_cb, &names), EDGE_OK);
    assert_string_equal(names.buf, "");
}

static void test_store_errors(void **state)
{
    struct fixture *f = *state;
    struct edge_crdt_row row;
    assert_int_equal(sqlite3_exec(f->db, "DROP TABLE _edge_crdt", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(edge_crdt_store_load(f->db, "a", &row), EDGE_ESTORE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_roundtrip_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rollback_leaves_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
