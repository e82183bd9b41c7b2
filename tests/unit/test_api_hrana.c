/* SPDX-License-Identifier: MIT */
/* Hrana validation, classification and execution (src/api/hrana.c) against a real
 * SQLite database in a temporary file. Results are checked by parsing the JSON the
 * executor writes, so the tests see exactly what a client would. */
#include <jansson.h>
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

#include "api/hrana.h"
#include "core/buf.h"
#include "store/store.h"

struct fixture {
    char path[64];
    struct edge_store_conn *conn;  /* write connection: executes */
    struct edge_store_conn *rconn; /* read connection: classifies, as on a loop */
    struct hrana_sqlmap sqls;
    struct hrana_ctx ctx;
};

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    char err[256];
    assert_int_equal(edge_store_global_init(err, sizeof(err)), EDGE_OK);
    snprintf(fx->path, sizeof(fx->path), "/tmp/test_api_hrana_XXXXXX");
    int fd = mkstemp(fx->path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(edge_store_open(fx->path, EDGE_STORE_WRITE, false, 1000, &fx->conn, err, sizeof(err)), EDGE_OK);
    assert_int_equal(sqlite3_exec(edge_store_db(fx->conn),
                                  "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT NOT NULL, age INTEGER);"
                                  "INSERT INTO users(name, age) VALUES ('alice', 30), ('bob', 41);",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    assert_int_equal(edge_store_open(fx->path, EDGE_STORE_READ, false, 1000, &fx->rconn, err, sizeof(err)), EDGE_OK);
    hrana_sqlmap_init(&fx->sqls, 2);
    fx->ctx.conn = fx->conn;
    fx->ctx.sqls = &fx->sqls;
    fx->ctx.access = HRANA_ACCESS_RW;
    fx->ctx.version = 3;
    fx->ctx.budget_ms = 0;
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    hrana_sqlmap_free(&fx->sqls);
    edge_store_close(fx->rconn);
    edge_store_close(fx->conn);
    char side[96];
    unlink(fx->path);
    snprintf(side, sizeof(side), "%s-wal", fx->path);
    unlink(side);
    snprintf(side, sizeof(side), "%s-shm", fx->path);
    unlink(side);
    free(fx);
    return 0;
}

static json_t *parse(const char *text)
{
    json_error_t jerr;
    json_t *j = json_loads(text, 0, &jerr);
    if (j == NULL) {
        fail_msg("bad JSON in test (%s): %s", jerr.text, text);
    }
    return j;
}

/* Validate (must pass) and execute one request with the HTTP wrapping; returns the
 * parsed {"type":"ok"|"error",...} object (caller decrefs). */
static json_t *run(struct fixture *fx, const char *req_text)
{
    json_t *req = parse(req_text);
    char err[256] = "";
    if (hrana_validate_request(req, fx->ctx.version, false, err, sizeof(err)) != EDGE_OK) {
        fail_msg("validation rejected %s: %s", req_text, err);
    }
    struct edge_buf out;
    edge_buf_init(&out, 1 << 20);
    assert_int_equal(hrana_execute_request(&fx->ctx, req, HRANA_WRAP_HTTP, 0, &out), EDGE_OK);
    json_t *res = parse(out.data);
    edge_buf_free(&out);
    json_decref(req);
    return res;
}

static json_t *result_of(json_t *res)
{
    assert_string_equal(json_string_value(json_object_get(res, "type")), "ok");
    json_t *r = json_object_get(json_object_get(res, "response"), "result");
    assert_non_null(r);
    return r;
}

static const char *error_code(json_t *res)
{
    assert_string_equal(json_string_value(json_object_get(res, "type")), "error");
    return json_string_value(json_object_get(json_object_get(res, "error"), "code"));
}

/* rows[0] of an execute result equals the expected JSON array. */
static void assert_row(json_t *res, const char *expect_text)
{
    json_t *row = json_array_get(json_object_get(result_of(res), "rows"), 0);
    json_t *expect = parse(expect_text);
    if (!json_equal(row, expect)) {
        char *got = json_dumps(row, JSON_COMPACT);
        fail_msg("row mismatch: got %s, want %s", got ? got : "(none)", expect_text);
    }
    json_decref(expect);
}

static void assert_error(struct fixture *fx, const char *req, const char *code)
{
    json_t *res = run(fx, req);
    const char *got = error_code(res);
    if (got == NULL || strcmp(got, code) != 0) {
        fail_msg("%s: want %s, got %s", req, code, got ? got : "(none)");
    }
    json_decref(res);
}

static int64_t count_users(struct fixture *fx)
{
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(edge_store_db(fx->conn), "SELECT count(*) FROM users", -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

/* ---------------------------------------------------------------------------------- */
/* Validation                                                                         */
/* ---------------------------------------------------------------------------------- */

static void assert_pipeline(const char *body_text, int version, int expect)
{
    json_t *body = parse(body_text);
    char err[256] = "";
    int rv = hrana_validate_pipeline(body, version, err, sizeof(err));
    if (rv != expect) {
        fail_msg("v%d %s: want %d, got %d (%s)", version, body_text, expect, rv, err);
    }
    if (rv == EDGE_EPROTO) {
        assert_true(err[0] != '\0'); /* the client gets a reason */
    }
    json_decref(body);
}

static void test_validate_rejects_malformed(void **state)
{
    (void)state;
    static const char *bad[] = {
        "[]",
        "{}",
        "{\"requests\":{}}",
        "{\"baton\":5,\"requests\":[]}",
        "{\"requests\":[5]}",
        "{\"requests\":[{}]}",
        "{\"requests\":[{\"type\":\"nope\"}]}",
        "{\"requests\":[{\"type\":\"execute\"}]}",
        "{\"requests\":[{\"type\":\"execute\",\"stmt\":{}}]}",
        "{\"requests\":[{\"type\":\"execute\",\"stmt\":{\"sql\":\"SELECT 1\",\"sql_id\":1}}]}",
        "{\"requests\":[{\"type\":\"execute\",\"stmt\":{\"sql\":5}}]}",
        "{\"requests\":[{\"type\":\"execute\",\"stmt\":{\"sql_id\":4294967296}}]}",
        "{\"requests\":[{\"type\":\"execute\",\"stmt\":{\"sql\":\"SELECT ?\",\"args\":{}}}]}",
        "{\"requests\":[{\"type\":\"execute\",\"stmt\":{\"sql\":\"SELECT 1\",\"want_rows\":1}}]}",
        "{\"requests\":[{\"type\":\"execute\",\"stmt\":{\"sql\":\"SELECT ?\",\"args\":[5]}}]}",
        "{\"requests\":[{\"type\":\"execute\",\"stmt\":{\"sql\":\"SELECT ?\",\"args\":[{\"value\":1}]}}]}",
        "{\"requests\":[{\"type\":\"execute\",\"stmt\":{\"sql\":\"SELECT ?\",\"args\":[{\"type\":\"integer\",\"value\":1.5}]}}]}",
        "{\"requests\":[{\"type\":\"execute\",\"stmt\":{\"sql\":\"SELECT ?\",\"args\":[{\"type\":\"float\",\"value\":\"1\"}]}}]}",
        "{\"requests\":[{\"type\":\"execute\",\"stmt\":{\"sql\":\"SELECT ?\",\"args\":[{\"type\":\"text\",\"value\":5}]}}]}",
        "{\"requests\":[{\"type\":\"execute\",\"stmt\":{\"sql\":\"SELECT ?\",\"args\":[{\"type\":\"blob\",\"value\":\"AA==\"}]}}]}",
        "{\"requests\":[{\"type\":\"execute\",\"stmt\":{\"sql\":\"SELECT ?\",\"args\":[{\"type\":\"date\",\"value\":\"x\"}]}}]}",
        "{\"requests\":[{\"type\":\"execute\",\"stmt\":{\"sql\":\"SELECT :a\",\"named_args\":[{\"value\":{\"type\":\"null\"}}]}}]}",
        "{\"requests\":[{\"type\":\"execute\",\"stmt\":{\"sql\":\"SELECT :a\",\"named_args\":[{\"name\":\"a\"}]}}]}",
        "{\"requests\":[{\"type\":\"batch\",\"batch\":{}}]}",
        "{\"requests\":[{\"type\":\"batch\",\"batch\":{\"steps\":[5]}}]}",
        "{\"requests\":[{\"type\":\"batch\",\"batch\":{\"steps\":[{\"stmt\":{\"sql\":\"SELECT 1\"},"
        "\"condition\":{\"type\":\"ok\",\"step\":0}}]}}]}",
        "{\"requests\":[{\"type\":\"batch\",\"batch\":{\"steps\":[{\"stmt\":{\"sql\":\"SELECT 1\"}},"
        "{\"stmt\":{\"sql\":\"SELECT 1\"},\"condition\":{\"type\":\"error\",\"step\":-1}}]}}]}",
        "{\"requests\":[{\"type\":\"batch\",\"batch\":{\"steps\":[{\"stmt\":{\"sql\":\"SELECT 1\"}},"
        "{\"stmt\":{\"sql\":\"SELECT 1\"},\"condition\":{\"type\":\"maybe\"}}]}}]}",
        "{\"requests\":[{\"type\":\"batch\",\"batch\":{\"steps\":[{\"stmt\":{\"sql\":\"SELECT 1\"}},"
        "{\"stmt\":{\"sql\":\"SELECT 1\"},\"condition\":{\"type\":\"and\",\"conds\":{}}}]}}]}",
        "{\"requests\":[{\"type\":\"batch\",\"batch\":{\"steps\":[{\"stmt\":{\"sql\":\"SELECT 1\"}},"
        "{\"stmt\":{\"sql\":\"SELECT 1\"},\"condition\":{\"type\":\"not\",\"cond\":{\"type\":\"ok\",\"step\":1}}}]}}]}",
        "{\"requests\":[{\"type\":\"sequence\"}]}",
        "{\"requests\":[{\"type\":\"describe\",\"sql\":\"SELECT 1\",\"sql_id\":2}]}",
        "{\"requests\":[{\"type\":\"store_sql\",\"sql_id\":\"1\",\"sql\":\"SELECT 1\"}]}",
        "{\"requests\":[{\"type\":\"store_sql\",\"sql_id\":1}]}",
        "{\"requests\":[{\"type\":\"close_sql\"}]}",
        "{\"requests\":[{\"type\":\"open_stream\",\"stream_id\":1}]}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_pipeline(bad[i], 3, EDGE_EPROTO);
    }
    /* A fully featured pipeline passes, so the rejections above are about the shapes. */
    assert_pipeline("{\"baton\":null,\"requests\":[{\"type\":\"execute\",\"stmt\":{\"sql\":\"SELECT ?, :a\","
                    "\"args\":[{\"type\":\"integer\",\"value\":\"1\"}],\"named_args\":[{\"name\":\"a\","
                    "\"value\":{\"type\":\"blob\",\"base64\":\"AA==\"}}],\"want_rows\":true}},"
                    "{\"type\":\"batch\",\"batch\":{\"steps\":[{\"stmt\":{\"sql\":\"SELECT 1\"}},{\"stmt\":"
                    "{\"sql_id\":3},\"condition\":{\"type\":\"or\",\"conds\":[{\"type\":\"ok\",\"step\":0},"
                    "{\"type\":\"is_autocommit\"}]}}]}},{\"type\":\"store_sql\",\"sql_id\":3,\"sql\":\"SELECT 2\"},"
                    "{\"type\":\"get_autocommit\"},{\"type\":\"close\"}]}",
                    3, EDGE_OK);
}

static void test_validate_version_and_ws(void **state)
{
    (void)state;
    /* v3-only request types and conditions. */
    assert_pipeline("{\"requests\":[{\"type\":\"get_autocommit\"}]}", 3, EDGE_OK);
    assert_pipeline("{\"requests\":[{\"type\":\"get_autocommit\"}]}", 2, EDGE_EPROTO);
    const char *isac = "{\"requests\":[{\"type\":\"batch\",\"batch\":{\"steps\":[{\"stmt\":{\"sql\":\"SELECT 1\"},"
                       "\"condition\":{\"type\":\"is_autocommit\"}}]}}]}";
    assert_pipeline(isac, 3, EDGE_OK);
    assert_pipeline(isac, 2, EDGE_EPROTO);
    /* WebSocket requests carry a stream id, and "close" is HTTP-only. */
    char err[128];
    json_t *r = parse("{\"type\":\"execute\",\"stmt\":{\"sql\":\"SELECT 1\"}}");
    assert_int_equal(hrana_validate_request(r, 3, true, err, sizeof(err)), EDGE_EPROTO);
    assert_int_equal(hrana_validate_request(r, 3, false, err, sizeof(err)), EDGE_OK);
    json_object_set_new(r, "stream_id", json_integer(1));
    assert_int_equal(hrana_validate_request(r, 3, true, err, sizeof(err)), EDGE_OK);
    json_decref(r);
    r = parse("{\"type\":\"close\"}");
    assert_int_equal(hrana_validate_request(r, 3, true, err, sizeof(err)), EDGE_EPROTO);
    json_decref(r);
    r = parse("{\"type\":\"open_stream\",\"stream_id\":7}");
    assert_int_equal(hrana_validate_request(r, 3, true, err, sizeof(err)), EDGE_OK);
    json_decref(r);
}

/* ---------------------------------------------------------------------------------- */
/* Execution                                                                          */
/* ---------------------------------------------------------------------------------- */

static void test_value_types(void **state)
{
    struct fixture *fx = *state;
    json_t *res = run(fx, "{\"type\":\"execute\",\"stmt\":{\"sql\":\"SELECT 42 AS i, 1.5 AS f, 'h\\u00e9\\\"' AS t, "
                          "x'0102ff' AS b, NULL AS n, -9223372036854775808 AS big\"}}");
    assert_row(res, "[{\"type\":\"integer\",\"value\":\"42\"},{\"type\":\"float\",\"value\":1.5},"
                    "{\"type\":\"text\",\"value\":\"h\\u00e9\\\"\"},{\"type\":\"blob\",\"base64\":\"AQL/\"},"
                    "{\"type\":\"null\"},{\"type\":\"integer\",\"value\":\"-9223372036854775808\"}]");
    json_t *cols = json_object_get(result_of(res), "cols");
    assert_int_equal(json_array_size(cols), 6);
    assert_string_equal(json_string_value(json_object_get(json_array_get(cols, 3), "name")), "b");
    assert_int_equal(json_integer_value(json_object_get(result_of(res), "affected_row_count")), 0);
    assert_true(json_is_null(json_object_get(result_of(res), "last_insert_rowid")));
    json_decref(res);

    /* The same values round-trip through arguments. */
    res = run(fx, "{\"type\":\"execute\",\"stmt\":{\"sql\":\"SELECT ?, ?, ?, ?, ?, ?\",\"args\":["
                  "{\"type\":\"integer\",\"value\":\"9007199254740993\"},{\"type\":\"float\",\"value\":2.5},"
                  "{\"type\":\"text\",\"value\":\"x\"},{\"type\":\"blob\",\"base64\":\"AQL/\"},{\"type\":\"null\"},"
                  "{\"type\":\"integer\",\"value\":7}]}}");
    assert_row(res, "[{\"type\":\"integer\",\"value\":\"9007199254740993\"},{\"type\":\"float\",\"value\":2.5},"
                    "{\"type\":\"text\",\"value\":\"x\"},{\"type\":\"blob\",\"base64\":\"AQL/\"},{\"type\":\"null\"},"
                    "{\"type\":\"integer\",\"value\":\"7\"}]");
    json_decref(res);

    /* A write reports its effect, and want_rows=false drops the rows. */
    res = run(fx, "{\"type\":\"execute\",\"stmt\":{\"sql\":\"INSERT INTO users(name) VALUES ('carol')\"}}");
    assert_int_equal(json_integer_value(json_object_get(result_of(res), "affected_row_count")), 1);
    assert_string_equal(json_string_value(json_object_get(result_of(res), "last_insert_rowid")), "3");
    json_decref(res);
    res = run(fx, "{\"type\":\"execute\",\"stmt\":{\"sql\":\"SELECT * FROM users\",\"want_rows\":false}}");
    assert_int_equal(json_array_size(json_object_get(result_of(res), "rows")), 0);
    assert_int_equal(json_integer_value(json_object_get(result_of(res), "rows_read")), 3);
    json_decref(res);

    /* Bad argument contents fail the statement, not the request shape. */
    assert_error(fx, "{\"type\":\"execute\",\"stmt\":{\"sql\":\"SELECT ?\",\"args\":[{\"type\":\"integer\","
                     "\"value\":\"12abc\"}]}}", "ARGS_INVALID");
    assert_error(fx, "{\"type\":\"execute\",\"stmt\":{\"sql\":\"SELECT ?\",\"args\":[{\"type\":\"blob\","
                     "\"base64\":\"***\"}]}}", "ARGS_INVALID");
}

static void test_binding(void **state)
{
    struct fixture *fx = *state;
    json_t *res = run(fx, "{\"type\":\"execute\",\"stmt\":{\"sql\":\"SELECT ?, ?\",\"args\":["
                          "{\"type\":\"text\",\"value\":\"a\"},{\"type\":\"text\",\"value\":\"b\"}]}}");
    assert_row(res, "[{\"type\":\"text\",\"value\":\"a\"},{\"type\":\"text\",\"value\":\"b\"}]");
    json_decref(res);
    /* ?NNN picks the argument by number, any order, repeats allowed. */
    res = run(fx, "{\"type\":\"execute\",\"stmt\":{\"sql\":\"SELECT ?2, ?1, ?2\",\"args\":["
                  "{\"type\":\"text\",\"value\":\"a\"},{\"type\":\"text\",\"value\":\"b\"}]}}");
    assert_row(res, "[{\"type\":\"text\",\"value\":\"b\"},{\"type\":\"text\",\"value\":\"a\"},"
                    "{\"type\":\"text\",\"value\":\"b\"}]");
    json_decref(res);
    /* Named: exact name (with prefix) or the name without its prefix character. */
    res = run(fx, "{\"type\":\"execute\",\"stmt\":{\"sql\":\"SELECT :a, @b, $c\",\"named_args\":["
                  "{\"name\":\":a\",\"value\":{\"type\":\"integer\",\"value\":\"1\"}},"
                  "{\"name\":\"b\",\"value\":{\"type\":\"integer\",\"value\":\"2\"}},"
                  "{\"name\":\"$c\",\"value\":{\"type\":\"integer\",\"value\":\"3\"}}]}}");
    assert_row(res, "[{\"type\":\"integer\",\"value\":\"1\"},{\"type\":\"integer\",\"value\":\"2\"},"
                    "{\"type\":\"integer\",\"value\":\"3\"}]");
    json_decref(res);
    /* Missing parameters and too many arguments. */
    assert_error(fx, "{\"type\":\"execute\",\"stmt\":{\"sql\":\"SELECT ?, ?\",\"args\":["
                     "{\"type\":\"null\"}]}}", "ARGS_INVALID");
    assert_error(fx, "{\"type\":\"execute\",\"stmt\":{\"sql\":\"SELECT ?\",\"args\":["
                     "{\"type\":\"null\"},{\"type\":\"null\"}]}}", "ARGS_INVALID");
    assert_error(fx, "{\"type\":\"execute\",\"stmt\":{\"sql\":\"SELECT :missing\"}}", "ARGS_INVALID");
    assert_error(fx, "{\"type\":\"execute\",\"stmt\":{\"sql\":\"SELECT ?3\",\"args\":["
                     "{\"type\":\"null\"}]}}", "ARGS_INVALID");
}

static void test_sql_errors(void **state)
{
    struct fixture *fx = *state;
    assert_error(fx, "{\"type\":\"execute\",\"stmt\":{\"sql\":\"SELECT 1; SELECT 2\"}}", "SQL_MANY_STATEMENTS");
    assert_error(fx, "{\"type\":\"execute\",\"stmt\":{\"sql\":\"SELEC 1\"}}", "SQL_PARSE_ERROR");
    assert_error(fx, "{\"type\":\"execute\",\"stmt\":{\"sql\":\"SELECT 'open\"}}", "SQL_PARSE_ERROR");
    assert_error(fx, "{\"type\":\"execute\",\"stmt\":{\"sql\":\"  -- nothing\\n\"}}", "SQL_NO_STATEMENT");
    assert_error(fx, "{\"type\":\"execute\",\"stmt\":{\"sql\":\"SELECT * FROM nope\"}}", "SQLITE_ERROR");
    assert_error(fx, "{\"type\":\"execute\",\"stmt\":{\"sql\":\"INSERT INTO users(name) VALUES (NULL)\"}}",
                 "SQLITE_CONSTRAINT");
    /* Trailing separators and comments are not a second statement. */
    json_t *res = run(fx, "{\"type\":\"execute\",\"stmt\":{\"sql\":\"SELECT 1; ; -- done\\n\"}}");
    assert_row(res, "[{\"type\":\"integer\",\"value\":\"1\"}]");
    json_decref(res);
    /* A read-only token cannot write. */
    fx->ctx.access = HRANA_ACCESS_RO;
    assert_error(fx, "{\"type\":\"execute\",\"stmt\":{\"sql\":\"DELETE FROM users\"}}", "AUTH_READ_ONLY");
    fx->ctx.access = HRANA_ACCESS_RW;
    assert_int_equal(count_users(fx), 2);
}

static void test_batch_conditions(void **state)
{
    struct fixture *fx = *state;
    json_t *res = run(fx,
        "{\"type\":\"batch\",\"batch\":{\"steps\":["
        "{\"stmt\":{\"sql\":\"SELECT 1\"}},"                                                   /* 0 ok */
        "{\"stmt\":{\"sql\":\"SELECT x FROM nope\"}},"                                         /* 1 error */
        "{\"stmt\":{\"sql\":\"SELECT 2\"},\"condition\":{\"type\":\"error\",\"step\":1}},"     /* 2 runs */
        "{\"stmt\":{\"sql\":\"SELECT 3\"},\"condition\":{\"type\":\"or\",\"conds\":["
        "{\"type\":\"ok\",\"step\":1},{\"type\":\"ok\",\"step\":0}]}},"                         /* 3 runs */
        "{\"stmt\":{\"sql\":\"SELECT 4\"},\"condition\":{\"type\":\"and\",\"conds\":["
        "{\"type\":\"ok\",\"step\":0},{\"type\":\"ok\",\"step\":1}]}},"                         /* 4 skipped */
        "{\"stmt\":{\"sql\":\"SELECT 5\"},\"condition\":{\"type\":\"is_autocommit\"}},"         /* 5 runs */
        "{\"stmt\":{\"sql\":\"BEGIN\"}},"                                                      /* 6 ok */
        "{\"stmt\":{\"sql\":\"SELECT 7\"},\"condition\":{\"type\":\"is_autocommit\"}},"         /* 7 skipped */
        "{\"stmt\":{\"sql\":\"ROLLBACK\"},\"condition\":{\"type\":\"not\",\"cond\":"
        "{\"type\":\"is_autocommit\"}}},"                                                      /* 8 runs */
        "{\"stmt\":{\"sql\":\"SELECT 9\"},\"condition\":{\"type\":\"and\",\"conds\":[]}}"       /* 9 runs */
        "]}}");
    json_t *r = result_of(res);
    json_t *results = json_object_get(r, "step_results");
    json_t *errors = json_object_get(r, "step_errors");
    assert_int_equal(json_array_size(results), 10);
    assert_int_equal(json_array_size(errors), 10);
    static const bool ran_ok[10] = {true, false, true, true, false, true, true, false, true, true};
    for (size_t i = 0; i < 10; i++) {
        if (ran_ok[i] != json_is_object(json_array_get(results, i))) {
            fail_msg("step %zu: result %s", i, ran_ok[i] ? "missing" : "unexpected");
        }
    }
    assert_true(json_is_object(json_array_get(errors, 1)));
    for (size_t i = 0; i < 10; i++) {
        if (i != 1) {
            assert_true(json_is_null(json_array_get(errors, i)));
        }
    }
    assert_int_equal(sqlite3_get_autocommit(edge_store_db(fx->conn)), 1);
    json_decref(res);
}

static void test_batch_write_rolls_back(void **state)
{
    struct fixture *fx = *state;
    /* The shape @libsql/client sends for client.batch([...], "write"). */
    static const char *batch_fmt =
        "{\"type\":\"batch\",\"batch\":{\"steps\":["
        "{\"stmt\":{\"sql\":\"BEGIN IMMEDIATE\"}},"
        "{\"stmt\":{\"sql\":\"INSERT INTO users(name) VALUES ('dave')\"},\"condition\":{\"type\":\"ok\",\"step\":0}},"
        "{\"stmt\":{\"sql\":\"%s\"},\"condition\":{\"type\":\"ok\",\"step\":1}},"
        "{\"stmt\":{\"sql\":\"COMMIT\"},\"condition\":{\"type\":\"ok\",\"step\":2}},"
        "{\"stmt\":{\"sql\":\"ROLLBACK\"},\"condition\":{\"type\":\"not\",\"cond\":{\"type\":\"ok\",\"step\":3}}}"
        "]}}";
    char req[1024];
    snprintf(req, sizeof(req), batch_fmt, "INSERT INTO users(name) VALUES (NULL)");
    json_t *res = run(fx, req);
    json_t *r = result_of(res);
    json_t *results = json_object_get(r, "step_results");
    json_t *errors = json_object_get(r, "step_errors");
    assert_true(json_is_object(json_array_get(results, 1)));
    assert_true(json_is_null(json_array_get(results, 2)));
    assert_string_equal(json_string_value(json_object_get(json_array_get(errors, 2), "code")), "SQLITE_CONSTRAINT");
    assert_true(json_is_null(json_array_get(results, 3))); /* COMMIT skipped */
    assert_true(json_is_object(json_array_get(results, 4))); /* ROLLBACK ran */
    json_decref(res);
    assert_int_equal(count_users(fx), 2); /* dave was rolled back */
    assert_int_equal(sqlite3_get_autocommit(edge_store_db(fx->conn)), 1);

    /* The same batch without the failing step commits both rows. */
    snprintf(req, sizeof(req), batch_fmt, "INSERT INTO users(name) VALUES ('erin')");
    res = run(fx, req);
    results = json_object_get(result_of(res), "step_results");
    assert_true(json_is_object(json_array_get(results, 3)));
    assert_true(json_is_null(json_array_get(results, 4)));
    json_decref(res);
    assert_int_equal(count_users(fx), 4);
}

static void test_store_sql(void **state)
{
    struct fixture *fx = *state; /* the map holds at most 2 texts */
    json_t *res = run(fx, "{\"type\":\"store_sql\",\"sql_id\":1,\"sql\":\"SELECT name FROM users WHERE id = ?\"}");
    assert_string_equal(json_string_value(json_object_get(res, "type")), "ok");
    json_decref(res);
    res = run(fx, "{\"type\":\"store_sql\",\"sql_id\":2,\"sql\":\"SELECT 2\"}");
    json_decref(res);
    assert_error(fx, "{\"type\":\"store_sql\",\"sql_id\":3,\"sql\":\"SELECT 3\"}", "SQL_STORE_TOO_MANY");
    assert_int_equal(fx->sqls.n, 2);
    res = run(fx, "{\"type\":\"execute\",\"stmt\":{\"sql_id\":1,\"args\":[{\"type\":\"integer\",\"value\":\"2\"}]}}");
    assert_row(res, "[{\"type\":\"text\",\"value\":\"bob\"}]");
    json_decref(res);
    /* Replacing an id is allowed; closing frees a slot. */
    res = run(fx, "{\"type\":\"store_sql\",\"sql_id\":2,\"sql\":\"SELECT 22\"}");
    json_decref(res);
    res = run(fx, "{\"type\":\"execute\",\"stmt\":{\"sql_id\":2}}");
    assert_row(res, "[{\"type\":\"integer\",\"value\":\"22\"}]");
    json_decref(res);
    res = run(fx, "{\"type\":\"close_sql\",\"sql_id\":2}");
    json_decref(res);
    assert_error(fx, "{\"type\":\"execute\",\"stmt\":{\"sql_id\":2}}", "SQL_NOT_FOUND");
    res = run(fx, "{\"type\":\"store_sql\",\"sql_id\":3,\"sql\":\"SELECT 3\"}");
    assert_string_equal(json_string_value(json_object_get(res, "type")), "ok");
    json_decref(res);
}

static void test_sequence_describe_autocommit(void **state)
{
    struct fixture *fx = *state;
    json_t *res = run(fx, "{\"type\":\"sequence\",\"sql\":\"INSERT INTO users(name) VALUES ('x'); "
                          "INSERT INTO users(name) VALUES ('y');\"}");
    assert_string_equal(json_string_value(json_object_get(res, "type")), "ok");
    json_decref(res);
    assert_int_equal(count_users(fx), 4);
    res = run(fx, "{\"type\":\"describe\",\"sql\":\"SELECT name, ? FROM users WHERE id = :id\"}");
    json_t *r = result_of(res);
    assert_int_equal(json_array_size(json_object_get(r, "params")), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(r, "params"), 1), "name")),
                        ":id");
    assert_true(json_is_true(json_object_get(r, "is_readonly")));
    json_decref(res);
    res = run(fx, "{\"type\":\"get_autocommit\"}");
    assert_true(json_is_true(json_object_get(json_object_get(res, "response"), "is_autocommit")));
    json_decref(res);
    res = run(fx, "{\"type\":\"execute\",\"stmt\":{\"sql\":\"BEGIN\"}}");
    json_decref(res);
    res = run(fx, "{\"type\":\"get_autocommit\"}");
    assert_true(json_is_false(json_object_get(json_object_get(res, "response"), "is_autocommit")));
    json_decref(res);
    res = run(fx, "{\"type\":\"execute\",\"stmt\":{\"sql\":\"ROLLBACK\"}}");
    json_decref(res);
}

static void test_ws_wrap(void **state)
{
    struct fixture *fx = *state;
    json_t *req = parse("{\"type\":\"execute\",\"stream_id\":1,\"stmt\":{\"sql\":\"SELECT 1\"}}");
    struct edge_buf out;
    edge_buf_init(&out, 1 << 16);
    assert_int_equal(hrana_execute_request(&fx->ctx, req, HRANA_WRAP_WS, 42, &out), EDGE_OK);
    json_t *res = parse(out.data);
    assert_string_equal(json_string_value(json_object_get(res, "type")), "response_ok");
    assert_int_equal(json_integer_value(json_object_get(res, "request_id")), 42);
    json_decref(res);
    json_decref(req);
    edge_buf_reset(&out);
    req = parse("{\"type\":\"execute\",\"stream_id\":1,\"stmt\":{\"sql\":\"SELEC\"}}");
    assert_int_equal(hrana_execute_request(&fx->ctx, req, HRANA_WRAP_WS, 43, &out), EDGE_OK);
    res = parse(out.data);
    assert_string_equal(json_string_value(json_object_get(res, "type")), "response_error");
    assert_int_equal(json_integer_value(json_object_get(res, "request_id")), 43);
    assert_string_equal(json_string_value(json_object_get(json_object_get(res, "error"), "code")), "SQL_PARSE_ERROR");
    json_decref(res);
    json_decref(req);
    edge_buf_free(&out);
}

static void test_result_too_large(void **state)
{
    struct fixture *fx = *state;
    json_t *req = parse("{\"type\":\"execute\",\"stmt\":{\"sql\":\"SELECT * FROM users\"}}");
    struct edge_buf out;
    edge_buf_init(&out, 200); /* room for the error, not for the rows */
    assert_int_equal(hrana_execute_request(&fx->ctx, req, HRANA_WRAP_HTTP, 0, &out), EDGE_OK);
    json_t *res = parse(out.data);
    assert_string_equal(error_code(res), "RESPONSE_TOO_LARGE");
    json_decref(res);
    json_decref(req);
    edge_buf_free(&out);
}

/* ---------------------------------------------------------------------------------- */
/* Classification and budget                                                          */
/* ---------------------------------------------------------------------------------- */

static enum hrana_route classify(struct fixture *fx, const char *reqs_text, bool in_txn)
{
    json_t *reqs = parse(reqs_text);
    enum hrana_route r = hrana_classify(reqs, json_array_size(reqs), fx->rconn, &fx->sqls, in_txn, NULL);
    json_decref(reqs);
    return r;
}

static void test_classify(void **state)
{
    struct fixture *fx = *state;
    assert_int_equal(classify(fx, "[{\"type\":\"execute\",\"stmt\":{\"sql\":\"SELECT * FROM users\"}},"
                                  "{\"type\":\"close\"}]", false),
                     HRANA_ROUTE_READ);
    assert_int_equal(classify(fx, "[{\"type\":\"execute\",\"stmt\":{\"sql\":\"SELECT 1\"}}]", true),
                     HRANA_ROUTE_TXN);
    assert_int_equal(classify(fx, "[{\"type\":\"execute\",\"stmt\":{\"sql\":\"DELETE FROM users\"}}]", false),
                     HRANA_ROUTE_WRITE);
    assert_int_equal(classify(fx, "[{\"type\":\"execute\",\"stmt\":{\"sql\":\"  begin\"}}]", false),
                     HRANA_ROUTE_TXN);
    assert_int_equal(classify(fx, "[{\"type\":\"batch\",\"batch\":{\"steps\":[{\"stmt\":{\"sql\":\"SELECT 1\"}},"
                                  "{\"stmt\":{\"sql\":\"UPDATE users SET age = 1\"}}]}}]", false),
                     HRANA_ROUTE_WRITE);
    assert_int_equal(classify(fx, "[{\"type\":\"batch\",\"batch\":{\"steps\":[{\"stmt\":{\"sql\":\"BEGIN\"}},"
                                  "{\"stmt\":{\"sql\":\"COMMIT\"}}]}}]", false),
                     HRANA_ROUTE_TXN);
    assert_int_equal(classify(fx, "[{\"type\":\"sequence\",\"sql\":\"SELECT 1; DELETE FROM users\"}]", false),
                     HRANA_ROUTE_WRITE);
    assert_int_equal(classify(fx, "[{\"type\":\"sequence\",\"sql\":\"SELECT 1; SELECT 2\"}]", false),
                     HRANA_ROUTE_READ);
    /* Unpreparable SQL goes to the writer, which reports the error correctly. */
    assert_int_equal(classify(fx, "[{\"type\":\"execute\",\"stmt\":{\"sql\":\"SELECT * FROM nope\"}}]", false),
                     HRANA_ROUTE_WRITE);
    assert_int_equal(count_users(fx), 2); /* classification never executes */
    /* Asked for, the tables a write unit touches are collected (once each). */
    struct hrana_tables tables = {.n = 0};
    json_t *reqs = parse("[{\"type\":\"execute\",\"stmt\":{\"sql\":\"DELETE FROM users\"}},"
                         "{\"type\":\"execute\",\"stmt\":{\"sql\":\"UPDATE users SET age = 2\"}},"
                         "{\"type\":\"execute\",\"stmt\":{\"sql\":\"SELECT 1\"}}]");
    assert_int_equal(hrana_classify(reqs, 3, fx->rconn, &fx->sqls, false, &tables), HRANA_ROUTE_WRITE);
    json_decref(reqs);
    assert_int_equal(tables.n, 1);
    assert_string_equal(tables.names[0], "users");
    assert_false(tables.overflow);
}

/* A sequence is classified statement by statement past one that cannot be prepared yet
 * (it uses a table the sequence creates): transaction control after it still needs the
 * transaction route, and the statements are split as SQLite splits a script. */
static void test_classify_sequence_past_unpreparable(void **state)
{
    struct fixture *fx = *state;
    assert_int_equal(classify(fx, "[{\"type\":\"sequence\",\"sql\":\"CREATE TABLE n1(a); INSERT INTO n1 VALUES(1); "
                                  "BEGIN; COMMIT;\"}]", false),
                     HRANA_ROUTE_TXN);
    assert_int_equal(classify(fx, "[{\"type\":\"sequence\",\"sql\":\"CREATE TABLE n1(a); INSERT INTO n1 VALUES(1); "
                                  "INSERT INTO n1 VALUES(2)\"}]", false),
                     HRANA_ROUTE_WRITE);
    /* ';' and BEGIN inside strings, quoted names and comments do not end or start anything. */
    assert_int_equal(classify(fx, "[{\"type\":\"sequence\",\"sql\":\"CREATE TABLE n2(a); INSERT INTO n2 VALUES('x;BEGIN;y'); "
                                  "INSERT INTO [n2;begin] VALUES(1); -- ;BEGIN;\\n INSERT INTO n2 VALUES(\\\"a;COMMIT\\\"); "
                                  "/* ; ROLLBACK; */ SELECT 1\"}]", false),
                     HRANA_ROUTE_WRITE);
    /* The ';'s inside a trigger body do not end the CREATE TRIGGER (its END is no COMMIT). */
    assert_int_equal(classify(fx, "[{\"type\":\"sequence\",\"sql\":\"CREATE TABLE n3(a); CREATE TRIGGER n3t AFTER INSERT "
                                  "ON n3 BEGIN DELETE FROM users; INSERT INTO n3 SELECT 1 WHERE 0; END; SELECT 1\"}]", false),
                     HRANA_ROUTE_WRITE);
    assert_int_equal(classify(fx, "[{\"type\":\"sequence\",\"sql\":\"CREATE TABLE n3(a); CREATE TRIGGER n3t AFTER INSERT "
                                  "ON n3 BEGIN DELETE FROM users; END; END\"}]", false),
                     HRANA_ROUTE_TXN);
    /* With tables asked for: the schema change is seen, and so are the tables written after
     * the statement that could not be prepared. */
    struct hrana_tables tables = {.n = 0};
    json_t *reqs = parse("[{\"type\":\"sequence\",\"sql\":\"CREATE TABLE n4(id INTEGER PRIMARY KEY); "
                         "INSERT INTO n4 VALUES(1); UPDATE users SET age = 3\"}]");
    assert_int_equal(hrana_classify(reqs, 1, fx->rconn, &fx->sqls, false, &tables), HRANA_ROUTE_WRITE);
    json_decref(reqs);
    assert_true(tables.ddl);
    assert_int_equal(tables.n, 1);
    assert_string_equal(tables.names[0], "users");
    assert_int_equal(count_users(fx), 2); /* classification never executes */
}

static int classify_tables(struct fixture *fx, const char *sql, struct hrana_tables *t)
{
    char text[512];
    snprintf(text, sizeof(text), "[{\"type\":\"execute\",\"stmt\":{\"sql\":\"%s\"}}]", sql);
    json_t *reqs = parse(text);
    memset(t, 0, sizeof(*t));
    int r = (int)hrana_classify(reqs, 1, fx->rconn, &fx->sqls, false, t);
    json_decref(reqs);
    return r;
}

/* The tables of a write are kept per statement text (classify.c): answers from the
 * cache are those of a fresh prepare, across other texts sharing its slots, schema
 * changes and several statements of one unit (each table once). */
static void test_classify_tables_cached(void **state)
{
    struct fixture *fx = *state;
    static const char ins[] = "INSERT INTO users(name, age) VALUES ('carol', 7)";
    struct hrana_tables t;
    assert_int_equal(sqlite3_exec(edge_store_db(fx->conn), "CREATE TABLE audit(n INTEGER)", NULL, NULL, NULL),
                     SQLITE_OK);
    for (int round = 0; round < 3; round++) {
        assert_int_equal(classify_tables(fx, ins, &t), HRANA_ROUTE_WRITE);
        assert_int_equal(t.n, 1);
        assert_string_equal(t.names[0], "users");
        /* 40 other texts: more than the cache's slots */
        for (int k = 0; k < 40; k++) {
            char sql[96];
            snprintf(sql, sizeof(sql), "INSERT INTO audit VALUES (%d)", k);
            assert_int_equal(classify_tables(fx, sql, &t), HRANA_ROUTE_WRITE);
            assert_int_equal(t.n, 1);
            assert_string_equal(t.names[0], "audit");
        }
        if (round == 1) {
            assert_int_equal(sqlite3_exec(edge_store_db(fx->conn), "ALTER TABLE users ADD COLUMN note TEXT", NULL,
                                          NULL, NULL),
                             SQLITE_OK);
        }
    }
    json_t *reqs = parse("[{\"type\":\"execute\",\"stmt\":{\"sql\":\"INSERT INTO audit VALUES (1)\"}},"
                         "{\"type\":\"execute\",\"stmt\":{\"sql\":\"INSERT INTO users(name, age) VALUES ('carol', 7)\"}},"
                         "{\"type\":\"execute\",\"stmt\":{\"sql\":\"INSERT INTO audit VALUES (1)\"}}]");
    memset(&t, 0, sizeof(t));
    assert_int_equal(hrana_classify(reqs, 3, fx->rconn, &fx->sqls, false, &t), HRANA_ROUTE_WRITE);
    json_decref(reqs);
    assert_int_equal(t.n, 2);
    assert_string_equal(t.names[0], "audit");
    assert_string_equal(t.names[1], "users");
    assert_int_equal(count_users(fx), 2); /* classification never executes */
}

/* Cursor entries of a batch, JSON-encoded: one object per line, in the spec's order. */
static json_t *cursor_lines(struct fixture *fx, const char *batch_text, size_t max, struct hrana_cursor_json *j,
                            struct edge_buf *out)
{
    json_t *batch = parse(batch_text);
    edge_buf_init(out, max);
    hrana_cursor_json_init(j, out);
    struct hrana_cursor_enc enc = hrana_cursor_json_enc(j);
    assert_int_equal(hrana_cursor_run(&fx->ctx, batch, &enc), EDGE_OK);
    json_decref(batch);
    json_t *lines = json_array();
    for (size_t i = 0; i < j->n; i++) {
        size_t len = 0;
        const char *e = hrana_cursor_json_entry(j, i, &len);
        json_error_t jerr;
        json_t *x = json_loadb(e, len, 0, &jerr);
        if (x == NULL) fail_msg("entry %zu is not JSON: %.*s", i, (int)len, e);
        json_array_append_new(lines, x);
    }
    assert_int_equal(out->len, j->n ? j->ends[j->n - 1] : 0);
    return lines;
}

static void test_cursor_entries(void **state)
{
    struct fixture *fx = *state;
    struct hrana_cursor_json j;
    struct edge_buf out;
    json_t *lines = cursor_lines(fx,
                                 "{\"steps\":[{\"stmt\":{\"sql\":\"SELECT name FROM users ORDER BY id\"}},"
                                 "{\"stmt\":{\"sql\":\"INSERT INTO users(name) VALUES (NULL)\"}},"
                                 "{\"condition\":{\"type\":\"ok\",\"step\":1},\"stmt\":{\"sql\":\"SELECT 1\"}},"
                                 "{\"condition\":{\"type\":\"is_autocommit\"},"
                                 "\"stmt\":{\"sql\":\"INSERT INTO users(name) VALUES ('carol')\"}}]}",
                                 1 << 20, &j, &out);
    json_t *want = parse("[{\"type\":\"step_begin\",\"step\":0,\"cols\":[{\"name\":\"name\",\"decltype\":\"TEXT\"}]},"
                         "{\"type\":\"row\",\"row\":[{\"type\":\"text\",\"value\":\"alice\"}]},"
                         "{\"type\":\"row\",\"row\":[{\"type\":\"text\",\"value\":\"bob\"}]},"
                         "{\"type\":\"step_end\",\"affected_row_count\":0,\"last_insert_rowid\":null},"
                         "{\"type\":\"step_error\",\"step\":1,\"error\":{\"message\":"
                         "\"NOT NULL constraint failed: users.name\",\"code\":\"SQLITE_CONSTRAINT\"}},"
                         "{\"type\":\"step_begin\",\"step\":3,\"cols\":[]},"
                         "{\"type\":\"step_end\",\"affected_row_count\":1,\"last_insert_rowid\":\"3\"}]");
    if (!json_equal(lines, want)) {
        char *got = json_dumps(lines, JSON_COMPACT);
        fail_msg("entries: %s", got);
    }
    json_decref(want);
    json_decref(lines);
    hrana_cursor_json_free(&j);
    edge_buf_free(&out);
    assert_int_equal(count_users(fx), 3);
}

/* A full cursor: a step whose rows do not fit is taken back and reported as its error;
 * when not even that fits, the cursor ends with an error entry (past the cap). */
static void test_cursor_too_large(void **state)
{
    struct fixture *fx = *state;
    struct hrana_cursor_json j;
    struct edge_buf out;
    json_t *lines = cursor_lines(fx, "{\"steps\":[{\"stmt\":{\"sql\":\"SELECT * FROM users\"}}]}", 150, &j, &out);
    assert_int_equal(json_array_size(lines), 1);
    json_t *e = json_array_get(lines, 0);
    assert_string_equal(json_string_value(json_object_get(e, "type")), "step_error");
    assert_string_equal(json_string_value(json_object_get(json_object_get(e, "error"), "code")), "RESPONSE_TOO_LARGE");
    json_decref(lines);
    hrana_cursor_json_free(&j);
    edge_buf_free(&out);

    lines = cursor_lines(fx, "{\"steps\":[{\"stmt\":{\"sql\":\"SELECT * FROM users\"}},{\"stmt\":{\"sql\":\"SELECT 2\"}}]}", 40,
                         &j, &out);
    assert_int_equal(json_array_size(lines), 1);
    e = json_array_get(lines, 0);
    assert_string_equal(json_string_value(json_object_get(e, "type")), "error");
    assert_string_equal(json_string_value(json_object_get(json_object_get(e, "error"), "code")), "RESPONSE_TOO_LARGE");
    json_decref(lines);
    hrana_cursor_json_free(&j);
    edge_buf_free(&out);
}

/* Runs last: with an empty stored-SQL map this hits a memcpy from NULL in
 * hrana_classify (UBSan aborts under EDGE_SANITIZE; see the report). */
static void test_classify_store_sql_in_unit(void **state)
{
    struct fixture *fx = *state;
    /* A store_sql earlier in the same unit decides what a later sql_id means. */
    assert_int_equal(classify(fx, "[{\"type\":\"store_sql\",\"sql_id\":5,\"sql\":\"DELETE FROM users\"},"
                                  "{\"type\":\"execute\",\"stmt\":{\"sql_id\":5}}]", false),
                     HRANA_ROUTE_WRITE);
    json_t *res = run(fx, "{\"type\":\"store_sql\",\"sql_id\":6,\"sql\":\"DELETE FROM users\"}");
    json_decref(res);
    assert_int_equal(classify(fx, "[{\"type\":\"execute\",\"stmt\":{\"sql_id\":6}}]", false), HRANA_ROUTE_WRITE);
    assert_int_equal(classify(fx, "[{\"type\":\"store_sql\",\"sql_id\":6,\"sql\":\"SELECT 1\"},"
                                  "{\"type\":\"execute\",\"stmt\":{\"sql_id\":6}}]", false),
                     HRANA_ROUTE_READ);
    assert_int_equal(classify(fx, "[{\"type\":\"store_sql\",\"sql_id\":7,\"sql\":\"SELECT 1\"},"
                                  "{\"type\":\"execute\",\"stmt\":{\"sql_id\":6}}]", false),
                     HRANA_ROUTE_WRITE);
    assert_int_equal(count_users(fx), 2);
}

static void test_budget_stops_runaway_query(void **state)
{
    struct fixture *fx = *state;
    fx->ctx.budget_ms = 50;
    assert_error(fx, "{\"type\":\"execute\",\"stmt\":{\"sql\":\"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL "
                     "SELECT x + 1 FROM c) SELECT count(*) FROM c\"}}", "QUERY_TIMEOUT");
    /* The connection is usable afterwards and a short statement is not affected. */
    json_t *res = run(fx, "{\"type\":\"execute\",\"stmt\":{\"sql\":\"SELECT count(*) FROM users\"}}");
    assert_row(res, "[{\"type\":\"integer\",\"value\":\"2\"}]");
    json_decref(res);
    /* Same inside a batch step and a sequence. */
    res = run(fx, "{\"type\":\"batch\",\"batch\":{\"steps\":[{\"stmt\":{\"sql\":\"WITH RECURSIVE c(x) AS "
                  "(SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c\"}}]}}");
    json_t *err = json_array_get(json_object_get(result_of(res), "step_errors"), 0);
    assert_string_equal(json_string_value(json_object_get(err, "code")), "QUERY_TIMEOUT");
    json_decref(res);
    assert_error(fx, "{\"type\":\"sequence\",\"sql\":\"SELECT 1; WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL "
                     "SELECT x + 1 FROM c) SELECT count(*) FROM c\"}", "QUERY_TIMEOUT");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_validate_rejects_malformed),
        cmocka_unit_test(test_validate_version_and_ws),
        cmocka_unit_test_setup_teardown(test_value_types, setup, teardown),
        cmocka_unit_test_setup_teardown(test_binding, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sql_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_conditions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_write_rolls_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_sql, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sequence_describe_autocommit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ws_wrap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_result_too_large, setup, teardown),
        cmocka_unit_test_setup_teardown(test_classify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_classify_sequence_past_unpreparable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_classify_tables_cached, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cursor_entries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cursor_too_large, setup, teardown),
        cmocka_unit_test_setup_teardown(test_budget_stops_runaway_query, setup, teardown),
        cmocka_unit_test_setup_teardown(test_classify_store_sql_in_unit, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
