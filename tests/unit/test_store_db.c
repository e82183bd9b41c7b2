/* SPDX-License-Identifier: MIT */
/* The in-process C API (edgelite/db.h): values of every type round trip, errors carry
 * the right code and a message, argument counts are checked, a callback can stop a
 * query, read-only handles refuse writes, the hot statement set survives eviction and
 * schema changes, and allocation failures in open are clean. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/alloc.h"
#include "edgelite/db.h"

/* A literal SQL text and its length. */
#define Q(s) (s), strlen(s)

struct fixture {
    char dir[64];
    char path[96];
    struct edge_db *db;
};

static void remove_db_files(const char *path)
{
    char p[128];
    unlink(path);
    snprintf(p, sizeof(p), "%s-wal", path);
    unlink(p);
    snprintf(p, sizeof(p), "%s-shm", path);
    unlink(p);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    char err[EDGE_ERRMSG_SIZE];
    snprintf(f->dir, sizeof(f->dir), "/tmp/edge_db_test.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/t.db", f->dir);
    assert_int_equal(edge_db_open(f->path, 0, &f->db, err, sizeof(err)), EDGE_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    edge_db_close(f->db);
    remove_db_files(f->path);
    rmdir(f->dir);
    free(f);
    return 0;
}

static void exec_ok(struct edge_db *db, const char *sql)
{
    int rv = edge_db_exec(db, sql);
    if (rv != EDGE_OK) {
        fail_msg("exec %s: %s (%s)", sql, edge_err_name(rv), edge_db_errmsg(db));
    }
}

static int query(struct edge_db *db, const char *sql, const struct edge_value *args, size_t nargs, edge_db_row_cb cb,
                 void *ud)
{
    return edge_db_query(db, sql, strlen(sql), args, nargs, cb, ud, NULL);
}

/* Copies the first row it sees, deeply enough to compare after the call. */
struct row_copy {
    int nrows;
    int ncols;
    struct edge_value v[8];
    char bytes[8][64];
};

static int copy_cb(void *ud, int ncols, const struct edge_value *vals)
{
    struct row_copy *rc = ud;
    if (rc->nrows++ > 0) {
        return EDGE_OK;
    }
    rc->ncols = ncols;
    for (int i = 0; i < ncols && i < 8; i++) {
        rc->v[i] = vals[i];
        if (vals[i].type == EDGE_DB_TEXT || vals[i].type == EDGE_DB_BLOB) {
            assert_non_null(vals[i].p);
            assert_true(vals[i].len < sizeof(rc->bytes[i]));
            memcpy(rc->bytes[i], vals[i].p, vals[i].len);
            if (vals[i].type == EDGE_DB_TEXT) {
                assert_int_equal(((const char *)vals[i].p)[vals[i].len], '\0');
            }
            rc->v[i].p = rc->bytes[i];
        }
    }
    return EDGE_OK;
}

static void assert_same_value(const struct edge_value *want, const struct edge_value *got)
{
    assert_int_equal(got->type, want->type);
    switch (want->type) {
    case EDGE_DB_INTEGER: assert_true(got->i == want->i); break;
    case EDGE_DB_FLOAT: assert_true(got->f == want->f); break;
    case EDGE_DB_TEXT:
    case EDGE_DB_BLOB:
        assert_int_equal(got->len, want->len);
        if (want->len > 0) {
            assert_memory_equal(got->p, want->p, want->len);
        }
        break;
    default: break;
    }
}

static const unsigned char blob_bytes[] = {0x00, 0xff, 0x10, 0x00, 0x7f};
static const char text_nul[] = "a\0b";

static void test_values_round_trip(void **state)
{
    struct fixture *f = *state;
    const struct edge_value vals[] = {
        EDGE_DB_NULLV(),
        EDGE_DB_I64(INT64_MIN),
        EDGE_DB_I64(INT64_MAX),
        EDGE_DB_F64(-1.5e300),
        EDGE_DB_STR("h\xc3\xa9llo"),
        EDGE_DB_TEXTN(text_nul, 3),
        EDGE_DB_TEXTN(NULL, 0),
        EDGE_DB_BLOBN(blob_bytes, sizeof(blob_bytes)),
        EDGE_DB_BLOBN(NULL, 0),
    };
    exec_ok(f->db, "CREATE TABLE t(id INTEGER PRIMARY KEY, x)");
    for (size_t k = 0; k < sizeof(vals) / sizeof(vals[0]); k++) {
        /* Through a table (stored form) and straight through a parameter. */
        struct edge_value args[2] = {EDGE_DB_I64((int64_t)k), vals[k]};
        int64_t changes = -1;
        assert_int_equal(edge_db_query(f->db, Q("INSERT INTO t(id, x) VALUES (?, ?)"), args, 2, NULL, NULL, &changes),
                         EDGE_OK);
        assert_true(changes == 1);
        assert_true(edge_db_last_rowid(f->db) == (int64_t)k);

        struct row_copy rc = {0};
        assert_int_equal(query(f->db, "SELECT x, typeof(x) FROM t WHERE id = ?", args, 1, copy_cb, &rc), EDGE_OK);
        assert_int_equal(rc.nrows, 1);
        assert_int_equal(rc.ncols, 2);
        assert_same_value(&vals[k], &rc.v[0]);

        struct row_copy direct = {0};
        assert_int_equal(query(f->db, "SELECT ?", &vals[k], 1, copy_cb, &direct), EDGE_OK);
        assert_int_equal(direct.nrows, 1);
        assert_same_value(&vals[k], &direct.v[0]);
    }
    /* Empty text and blob stay empty values, not NULL. */
    struct row_copy rc = {0};
    assert_int_equal(query(f->db, "SELECT typeof(x) FROM t WHERE id = 6", NULL, 0, copy_cb, &rc), EDGE_OK);
    assert_int_equal(rc.v[0].len, 4);
    assert_memory_equal(rc.v[0].p, "text", 4);
    memset(&rc, 0, sizeof(rc));
    assert_int_equal(query(f->db, "SELECT typeof(x) FROM t WHERE id = 8", NULL, 0, copy_cb, &rc), EDGE_OK);
    assert_memory_equal(rc.v[0].p, "blob", 4);
}

static void test_errors_have_codes_and_messages(void **state)
{
    struct fixture *f = *state;
    exec_ok(f->db, "CREATE TABLE u(id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL)");

    assert_int_equal(query(f->db, "SELEC 1", NULL, 0, NULL, NULL), EDGE_ESTORE);
    assert_non_null(strstr(edge_db_errmsg(f->db), "syntax error"));

    assert_int_equal(query(f->db, "SELECT * FROM missing", NULL, 0, NULL, NULL), EDGE_ESTORE);
    assert_non_null(strstr(edge_db_errmsg(f->db), "no such table: missing"));

    struct edge_value a[] = {EDGE_DB_I64(1), EDGE_DB_STR("ann")};
    assert_int_equal(query(f->db, "INSERT INTO u VALUES (?, ?)", a, 2, NULL, NULL), EDGE_OK);
    assert_string_equal(edge_db_errmsg(f->db), "");
    a[0] = EDGE_DB_I64(2);
    assert_int_equal(query(f->db, "INSERT INTO u VALUES (?, ?)", a, 2, NULL, NULL), EDGE_ECONFLICT);
    assert_non_null(strstr(edge_db_errmsg(f->db), "UNIQUE constraint failed"));
    a[1] = EDGE_DB_NULLV();
    assert_int_equal(query(f->db, "INSERT INTO u VALUES (?, ?)", a, 2, NULL, NULL), EDGE_ECONFLICT);
    assert_non_null(strstr(edge_db_errmsg(f->db), "NOT NULL"));

    /* The failed statements left no transaction or lock behind. */
    a[1] = EDGE_DB_STR("bob");
    assert_int_equal(query(f->db, "INSERT INTO u VALUES (?, ?)", a, 2, NULL, NULL), EDGE_OK);
    exec_ok(f->db, "BEGIN IMMEDIATE; COMMIT");

    assert_int_equal(edge_db_exec(f->db, "CREATE TABLE u(x); SELECT 1"), EDGE_ESTORE);
    assert_non_null(strstr(edge_db_errmsg(f->db), "already exists"));
}

static void test_arg_count_and_sql_shape(void **state)
{
    struct fixture *f = *state;
    struct edge_value a[3] = {EDGE_DB_I64(1), EDGE_DB_I64(2), EDGE_DB_I64(3)};
    assert_int_equal(query(f->db, "SELECT ?, ?", a, 1, NULL, NULL), EDGE_EINVAL);
    assert_non_null(strstr(edge_db_errmsg(f->db), "2 parameters, 1 arguments"));
    assert_int_equal(query(f->db, "SELECT ?, ?", a, 3, NULL, NULL), EDGE_EINVAL);
    assert_int_equal(query(f->db, "SELECT 1", a, 1, NULL, NULL), EDGE_EINVAL);
    assert_int_equal(query(f->db, "SELECT ?, ?", a, 2, NULL, NULL), EDGE_OK);
    /* Named parameters count by index. */
    struct row_copy rc = {0};
    assert_int_equal(query(f->db, "SELECT :b - :a", a, 2, copy_cb, &rc), EDGE_OK);
    assert_true(rc.v[0].i == -1); /* :b is parameter 1 */

    struct edge_value bad = {.type = 99};
    assert_int_equal(query(f->db, "SELECT ?", &bad, 1, NULL, NULL), EDGE_EINVAL);
    assert_non_null(strstr(edge_db_errmsg(f->db), "unknown type"));
    struct edge_value nullp = EDGE_DB_TEXTN(NULL, 3);
    assert_int_equal(query(f->db, "SELECT ?", &nullp, 1, NULL, NULL), EDGE_EINVAL);

    assert_int_equal(query(f->db, "", NULL, 0, NULL, NULL), EDGE_EINVAL);
    assert_int_equal(query(f->db, "  -- nothing\n", NULL, 0, NULL, NULL), EDGE_EINVAL);
    assert_int_equal(query(f->db, "SELECT 1; SELECT 2", NULL, 0, NULL, NULL), EDGE_EINVAL);
    assert_non_null(strstr(edge_db_errmsg(f->db), "more than one statement"));
    memset(&rc, 0, sizeof(rc));
    assert_int_equal(query(f->db, "SELECT 5; -- trailing\n /* c */ ;\n", NULL, 0, copy_cb, &rc), EDGE_OK);
    assert_int_equal(rc.nrows, 1);
    assert_true(rc.v[0].i == 5);

    /* sql is read by length, not to a terminator. */
    memset(&rc, 0, sizeof(rc));
    assert_int_equal(edge_db_query(f->db, "SELECT 7 garbage", 8, NULL, 0, copy_cb, &rc, NULL), EDGE_OK);
    assert_true(rc.v[0].i == 7);
}

struct stopper {
    int seen;
    int stop_at;
    int stop_rv; /* returned at stop_at; 0 means 42 */
};

static int stop_cb(void *ud, int ncols, const struct edge_value *vals)
{
    struct stopper *s = ud;
    assert_int_equal(ncols, 1);
    assert_true(vals[0].i == s->seen + 1);
    s->seen++;
    return s->seen == s->stop_at ? (s->stop_rv ? s->stop_rv : 42) : EDGE_OK;
}

static void test_callback_abort_stops_query(void **state)
{
    struct fixture *f = *state;
    const char *sql = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10) SELECT i FROM n";
    struct stopper s = {.stop_at = 3};
    assert_int_equal(query(f->db, sql, NULL, 0, stop_cb, &s), 42);
    assert_int_equal(s.seen, 3);
    assert_non_null(strstr(edge_db_errmsg(f->db), "row callback"));
    /* The cut-short statement was reset: it runs again from the first row. */
    s = (struct stopper){.stop_at = 100};
    assert_int_equal(query(f->db, sql, NULL, 0, stop_cb, &s), EDGE_OK);
    assert_int_equal(s.seen, 10);
    /* And the abort left no read transaction open: an exclusive lock is available. */
    s = (struct stopper){.stop_at = 1};
    assert_int_equal(query(f->db, sql, NULL, 0, stop_cb, &s), 42);
    exec_ok(f->db, "BEGIN EXCLUSIVE; COMMIT");

    /* EDGE_DB_STOP ends early with success. */
    s = (struct stopper){.stop_at = 2, .stop_rv = EDGE_DB_STOP};
    assert_int_equal(query(f->db, sql, NULL, 0, stop_cb, &s), EDGE_OK);
    assert_int_equal(s.seen, 2);
    assert_string_equal(edge_db_errmsg(f->db), "");
    exec_ok(f->db, "BEGIN EXCLUSIVE; COMMIT");
}

static void test_readonly_refuses_writes(void **state)
{
    struct fixture *f = *state;
    struct edge_db *ro = NULL;
    char err[EDGE_ERRMSG_SIZE] = "";
    exec_ok(f->db, "CREATE TABLE kv(k INTEGER PRIMARY KEY, v TEXT); INSERT INTO kv VALUES (1, 'one')");

    assert_int_equal(edge_db_open(f->path, EDGE_DB_READONLY, &ro, err, sizeof(err)), EDGE_OK);
    struct row_copy rc = {0};
    struct edge_value k = EDGE_DB_I64(1);
    assert_int_equal(query(ro, "SELECT v FROM kv WHERE k = ?", &k, 1, copy_cb, &rc), EDGE_OK);
    assert_int_equal(rc.nrows, 1);
    assert_memory_equal(rc.v[0].p, "one", 3);

    struct edge_value a[] = {EDGE_DB_I64(2), EDGE_DB_STR("two")};
    assert_int_equal(query(ro, "INSERT INTO kv VALUES (?, ?)", a, 2, NULL, NULL), EDGE_EPERM);
    assert_non_null(strstr(edge_db_errmsg(ro), "readonly"));
    assert_int_equal(query(ro, "DELETE FROM kv", NULL, 0, NULL, NULL), EDGE_EPERM);
    assert_int_equal(edge_db_exec(ro, "CREATE TABLE x(y)"), EDGE_EPERM);
    /* Read transactions are still allowed. */
    assert_int_equal(query(ro, "BEGIN", NULL, 0, NULL, NULL), EDGE_OK);
    assert_int_equal(query(ro, "COMMIT", NULL, 0, NULL, NULL), EDGE_OK);
    edge_db_close(ro);

    memset(&rc, 0, sizeof(rc));
    assert_int_equal(query(f->db, "SELECT count(*) FROM kv", NULL, 0, copy_cb, &rc), EDGE_OK);
    assert_true(rc.v[0].i == 1);

    /* A read-only open never creates the file. */
    char missing[128];
    snprintf(missing, sizeof(missing), "%s/missing.db", f->dir);
    ro = NULL;
    assert_int_equal(edge_db_open(missing, EDGE_DB_READONLY, &ro, err, sizeof(err)), EDGE_ENOTFOUND);
    assert_null(ro);
    assert_non_null(strstr(err, "no such file"));
    assert_int_equal(access(missing, F_OK), -1);

    assert_int_equal(edge_db_open(f->path, 0x80, &ro, err, sizeof(err)), EDGE_EINVAL);
    assert_int_equal(edge_db_open(NULL, 0, &ro, NULL, 0), EDGE_EINVAL);
}

static void test_changes_count(void **state)
{
    struct fixture *f = *state;
    int64_t changes = -1;
    exec_ok(f->db, "CREATE TABLE c(x INTEGER); INSERT INTO c VALUES (1), (2), (3), (4)");
    assert_int_equal(edge_db_query(f->db, Q("UPDATE c SET x = x + 10 WHERE x > 1"), NULL, 0, NULL, NULL, &changes),
                     EDGE_OK);
    assert_true(changes == 3);
    assert_int_equal(edge_db_query(f->db, Q("SELECT * FROM c"), NULL, 0, NULL, NULL, &changes), EDGE_OK);
    assert_true(changes == 0);
    assert_int_equal(edge_db_query(f->db, Q("CREATE TABLE d(y)"), NULL, 0, NULL, NULL, &changes), EDGE_OK);
    assert_true(changes == 0);
    assert_int_equal(edge_db_query(f->db, Q("DELETE FROM c"), NULL, 0, NULL, NULL, &changes), EDGE_OK);
    assert_true(changes == 4);
}

/* More distinct statements than hot slots, interleaved, all stay correct. */
static void test_statement_cache_rotation(void **state)
{
    struct fixture *f = *state;
    char sql[16][48];
    for (int k = 0; k < 16; k++) {
        snprintf(sql[k], sizeof(sql[k]), "SELECT ? + %d", k * 100);
    }
    for (int round = 0; round < 5; round++) {
        for (int k = 0; k < 16; k++) {
            int idx = (k * 7 + round) % 16; /* a different order each round */
            struct edge_value a = EDGE_DB_I64(round);
            struct row_copy rc = {0};
            assert_int_equal(query(f->db, sql[idx], &a, 1, copy_cb, &rc), EDGE_OK);
            assert_true(rc.v[0].i == idx * 100 + round);
        }
    }
    /* Trailing whitespace is the same statement. */
    struct edge_value a = EDGE_DB_I64(1);
    struct row_copy rc = {0};
    assert_int_equal(query(f->db, "SELECT ? + 0 \n\t", &a, 1, copy_cb, &rc), EDGE_OK);
    assert_true(rc.v[0].i == 1);
}

struct names_seen {
    struct edge_db *db;
    int ncols;
    char names[4][16];
    int reentry_rv;
};

static int names_cb(void *ud, int ncols, const struct edge_value *vals)
{
    struct names_seen *n = ud;
    (void)vals;
    n->ncols = ncols;
    for (int i = 0; i < ncols && i < 4; i++) {
        snprintf(n->names[i], sizeof(n->names[i]), "%s", edge_db_column_name(n->db, i));
    }
    assert_null(edge_db_column_name(n->db, ncols));
    assert_null(edge_db_column_name(n->db, -1));
    n->reentry_rv = edge_db_query(n->db, Q("SELECT 1"), NULL, 0, NULL, NULL, NULL);
    return EDGE_OK;
}

/* A hot statement sees schema changes; columns are named; re-entry is refused. */
static void test_schema_change_names_reentry(void **state)
{
    struct fixture *f = *state;
    struct names_seen n = {.db = f->db};
    exec_ok(f->db, "CREATE TABLE s(a); INSERT INTO s VALUES (1)");
    assert_int_equal(query(f->db, "SELECT * FROM s", NULL, 0, names_cb, &n), EDGE_OK);
    assert_int_equal(n.ncols, 1);
    assert_string_equal(n.names[0], "a");
    assert_int_equal(n.reentry_rv, EDGE_EBUSY);

    exec_ok(f->db, "ALTER TABLE s ADD COLUMN b DEFAULT 'x'");
    memset(&n, 0, sizeof(n));
    n.db = f->db;
    assert_int_equal(query(f->db, "SELECT * FROM s", NULL, 0, names_cb, &n), EDGE_OK);
    assert_int_equal(n.ncols, 2);
    assert_string_equal(n.names[1], "b");
    assert_null(edge_db_column_name(f->db, 0)); /* outside a callback */

    /* Rows wider than the initial value buffer. */
    struct row_copy rc = {0};
    assert_int_equal(query(f->db,
                           "SELECT 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30",
                           NULL, 0, copy_cb, &rc),
                     EDGE_OK);
    assert_int_equal(rc.ncols, 30);
    assert_true(rc.v[7].i == 8);
}

static void test_budget_times_out(void **state)
{
    struct fixture *f = *state;
    /* Far more work than 1 ms allows; bounded even if the budget were ignored. */
    const char *sql = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50000000) "
                      "SELECT count(*) FROM n";
    edge_db_set_budget(f->db, 1);
    assert_int_equal(query(f->db, sql, NULL, 0, NULL, NULL), EDGE_ETIMEDOUT);
    assert_non_null(strstr(edge_db_errmsg(f->db), "SQLITE_INTERRUPT"));
    edge_db_set_budget(f->db, 0);
    struct row_copy rc = {0};
    assert_int_equal(query(f->db, "SELECT 3", NULL, 0, copy_cb, &rc), EDGE_OK);
    assert_true(rc.v[0].i == 3);
}

/* A statement inside a savepoint that modifies megabytes of existing pages: its
 * statement journal passes the point where SQLite moves it from memory to a temp file,
 * and it must still run (a larger spill threshold made such statements fail with
 * SQLITE_FULL on SQLite 3.40.1, which stopped replication of large entries). */
static void test_big_statement_journal(void **state)
{
    struct fixture *f = *state;
    exec_ok(f->db, "CREATE TABLE kv(id INTEGER PRIMARY KEY, v TEXT)");
    exec_ok(f->db, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 200000) "
                   "INSERT INTO kv SELECT x, hex(randomblob(40)) FROM c");
    exec_ok(f->db, "BEGIN IMMEDIATE");
    exec_ok(f->db, "SAVEPOINT big");
    exec_ok(f->db, "UPDATE kv SET v = hex(randomblob(40)) WHERE id IN (SELECT abs(random()) % 200000 FROM kv LIMIT 3200)");
    exec_ok(f->db, "RELEASE big");
    exec_ok(f->db, "COMMIT");
}

static void test_open_oom_is_clean(void **state)
{
    struct fixture *f = *state;
    int saw_enomem = 0;
    int rv = EDGE_ENOMEM;
    for (int n = 0; n < 50 && rv != EDGE_OK; n++) {
        struct edge_db *db = NULL;
        edge__alloc_fault_config(n, 1);
        rv = edge_db_open(f->path, 0, &db, NULL, 0);
        edge__alloc_fault_config(-1, 0);
        if (rv == EDGE_ENOMEM) {
            saw_enomem = 1;
            assert_null(db);
        } else {
            assert_int_equal(rv, EDGE_OK);
            struct row_copy rc = {0};
            assert_int_equal(query(db, "SELECT 1", NULL, 0, copy_cb, &rc), EDGE_OK);
            edge_db_close(db);
        }
    }
    assert_int_equal(rv, EDGE_OK);
    assert_true(saw_enomem);
}

int main(void)
{
    assert_int_equal(edge_db_global_init(), EDGE_OK);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_values_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors_have_codes_and_messages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_arg_count_and_sql_shape, setup, teardown),
        cmocka_unit_test_setup_teardown(test_callback_abort_stops_query, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readonly_refuses_writes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_changes_count, setup, teardown),
        cmocka_unit_test_setup_teardown(test_statement_cache_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_schema_change_names_reentry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_budget_times_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_big_statement_journal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_oom_is_clean, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
