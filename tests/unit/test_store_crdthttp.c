/* SPDX-License-Identifier: MIT */
/* The /v1/crdt handler, driven directly (no transport): every operation, GET, list and
 * merge between two nodes, restart, and every refused input (status, error code, and
 * proof that nothing changed). The CRDT library and the handler are compiled in here
 * because this binary links edge_store (SQLite) only. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../src/crdt/counter.c"
#include "../../src/crdt/lww.c"
#include "../../src/crdt/orset.c"
#include "../../src/crdt/orset_codec.c"
#include "../../src/crdt/crdt.c"
#include "../../src/api/crdt_http.c"
#include "../../src/api/crdt_read.c"

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
    char path[2][64];
    sqlite3 *db[2];
    struct edge_clock_manual clock;
};

static const char *const node_region[2] = {"us-west-2", "eu-west-1"};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    for (int i = 0; i < 2; i++) {
        snprintf(f->path[i], sizeof(f->path[i]), "/tmp/edge_crdthttp_%d_%d.db", (int)getpid(), i);
        unlink(f->path[i]);
        assert_int_equal(sqlite3_open(f->path[i], &f->db[i]), SQLITE_OK);
    }
    edge_clock_manual_init(&f->clock, 1700000000000u);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    for (int i = 0; i < 2; i++) {
        close_db(f->db[i]);
        unlink(f->path[i]);
    }
    free(f);
    return 0;
}

/* Run one request on node i; returns the parsed body (caller decrefs). */
static json_t *call(struct fixture *f, int i, const char *method, const char *path, const char *body, int *status)
{
    struct edge_buf out;
    json_error_t err;
    edge_buf_init(&out, 1 << 24);
    edge_clock_manual_advance(&f->clock, 1);
    assert_int_equal(edge_crdt_http_handle(f->db[i], NULL, node_region[i], &f->clock.clock, method, path, body,
                                           body ? strlen(body) : 0, status, &out),
                     EDGE_OK);
    /* counters above INT64_MAX are valid JSON that jansson reads only as reals */
    json_t *j = json_loads(out.data ? out.data : "", 0, &err);
    if (j == NULL) {
        j = json_loads(out.data ? out.data : "", JSON_DECODE_INT_AS_REAL, &err);
    }
    if (j == NULL) {
        fail_msg("response is not JSON: %s", out.data ? out.data : "(empty)");
    }
    edge_buf_free(&out);
    return j;
}

static json_t *ok(struct fixture *f, int i, const char *method, const char *path, const char *body)
{
    int status = 0;
    json_t *j = call(f, i, method, path, body, &status);
    if (status != 200) {
        char *s = json_dumps(j, 0);
        fail_msg("%s %s -> %d %s", method, path, status, s);
    }
    return j;
}

static char *dump(json_t *j, const char *key)
{
    return json_dumps(json_object_get(j, key), JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
}

static void check_value(json_t *j, const char *want)
{
    char *v = dump(j, "value");
    assert_string_equal(v, want);
    free(v);
}

/* Snapshot of a node's whole CRDT state: the list body and every stored row, byte for
 * byte (state, conflicts, time of the last change). */
static char *snapshot(struct fixture *f, int i)
{
    json_t *j = ok(f, i, "GET", "", NULL);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(f->db[i],
                                        "SELECT group_concat(name || ':' || type || ':' || hex(state) || ':' ||"
                                        " conflicts || ':' || updated_ms, ';') FROM"
                                        " (SELECT * FROM _edge_crdt ORDER BY name)",
                                        -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    const char *rows = (const char *)sqlite3_column_text(st, 0);
    json_object_set_new(j, "rows", json_string(rows ? rows : ""));
    sqlite3_finalize(st);
    char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(j);
    return s;
}

static void expect_error(struct fixture *f, const char *method, const char *path, const char *body, int want_status,
                         const char *want_code)
{
    char *before = snapshot(f, 0);
    int status = 0;
    json_t *j = call(f, 0, method, path, body, &status);
    const char *code = json_string_value(json_object_get(j, "code"));
    if (status != want_status || code == NULL || strcmp(code, want_code) != 0 ||
        !json_is_string(json_object_get(j, "error"))) {
        char *s = json_dumps(j, 0);
        fail_msg("%s %s %s -> %d %s (want %d %s)", method, path, body ? body : "", status, s, want_status, want_code);
    }
    json_decref(j);
    char *after = snapshot(f, 0);
    assert_string_equal(before, after);
    free(before);
    free(after);
}

static void test_ops(void **state)
{
    struct fixture *f = *state;
    json_t *j;
    j = ok(f, 0, "POST", "hits", "{\"type\":\"g-counter\",\"op\":\"increment\",\"amount\":1}");
    check_value(j, "1");
    assert_string_equal(json_string_value(json_object_get(j, "name")), "hits");
    assert_string_equal(json_string_value(json_object_get(j, "type")), "g-counter");
    json_decref(j);
    json_decref(ok(f, 0, "POST", "hits", "{\"type\":\"g-counter\",\"op\":\"increment\",\"amount\":41}"));
    j = ok(f, 0, "GET", "hits", NULL);
    check_value(j, "42");
    char *vc = dump(j, "vclock");
    assert_string_equal(vc, "{\"us-west-2\":2}");
    free(vc);
    assert_int_equal(json_integer_value(json_object_get(j, "conflicts")), 0);
    assert_true(json_is_string(json_object_get(j, "state")));
    json_decref(j);

    json_decref(ok(f, 0, "POST", "bal", "{\"type\":\"pn-counter\",\"op\":\"increment\",\"amount\":5}"));
    j = ok(f, 0, "POST", "bal", "{\"type\":\"pn-counter\",\"op\":\"decrement\",\"amount\":12}");
    check_value(j, "-7");
    json_decref(j);

    json_decref(ok(f, 0, "POST", "tags", "{\"type\":\"or-set\",\"op\":\"add\",\"element\":{\"b\":1,\"a\":[true,null]}}"));
    json_decref(ok(f, 0, "POST", "tags", "{\"type\":\"or-set\",\"op\":\"add\",\"element\":\"x\"}"));
    json_decref(ok(f, 0, "POST", "tags", "{\"type\":\"or-set\",\"op\":\"add\",\"element\":7}"));
    json_decref(ok(f, 0, "POST", "tags", "{\"type\":\"or-set\",\"op\":\"add\",\"element\":\"x\"}"));
    j = ok(f, 0, "POST", "tags", "{\"type\":\"or-set\",\"op\":\"remove\",\"element\":7}");
    check_value(j, "[\"x\",{\"a\":[true,null],\"b\":1}]");
    json_decref(j);
    /* the same JSON value written differently is the same element */
    j = ok(f, 0, "POST", "tags", "{\"type\":\"or-set\",\"op\":\"remove\",\"element\":{ \"a\" : [true, null], \"b\":1}}");
    check_value(j, "[\"x\"]");
    json_decref(j);
}

static void test_lww_and_list(void **state)
{
    struct fixture *f = *state;
    json_t *j;
    int status;
    j = call(f, 0, "GET", "reg", NULL, &status);
    assert_int_equal(status, 404);
    json_decref(j);
    json_decref(ok(f, 0, "POST", "reg", "{\"type\":\"lww-register\",\"op\":\"set\",\"value\":{\"v\":1}}"));
    j = ok(f, 0, "POST", "reg", "{\"type\":\"lww-register\",\"op\":\"set\",\"value\":null}");
    check_value(j, "null");
    json_decref(j);
    j = ok(f, 0, "POST", "reg", "{\"type\":\"lww-register\",\"op\":\"set\",\"value\":[1,\"two\"]}");
    check_value(j, "[1,\"two\"]");
    json_decref(j);
    json_decref(ok(f, 0, "POST", "a%3Ab", "{\"type\":\"g-counter\",\"op\":\"increment\",\"amount\":3}"));
    j = ok(f, 0, "GET", "", NULL);
    char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(s, "{\"objects\":[{\"name\":\"a:b\",\"type\":\"g-counter\",\"value\":3},"
                           "{\"name\":\"reg\",\"type\":\"lww-register\",\"value\":[1,\"two\"]}]}");
    free(s);
    json_decref(j);
}

static void test_bad_inputs(void **state)
{
    struct fixture *f = *state;
    json_decref(ok(f, 0, "POST", "c", "{\"type\":\"g-counter\",\"op\":\"increment\",\"amount\":1}"));
    json_decref(ok(f, 0, "POST", "p", "{\"type\":\"pn-counter\",\"op\":\"increment\",\"amount\":1}"));
    json_decref(ok(f, 0, "POST", "s", "{\"type\":\"or-set\",\"op\":\"add\",\"element\":1}"));
    expect_error(f, "POST", "c", "{\"type\":\"g-counter\",\"op\":\"add\",\"element\":1}", 400, "CRDT_WRONG_TYPE");
    expect_error(f, "POST", "c", "{\"type\":\"g-counter\",\"op\":\"decrement\",\"amount\":1}", 400, "CRDT_WRONG_TYPE");
    expect_error(f, "POST", "c", "{\"type\":\"or-set\",\"op\":\"add\",\"element\":1}", 409, "CRDT_TYPE_MISMATCH");
    expect_error(f, "POST", "s", "{\"type\":\"pn-counter\",\"op\":\"increment\",\"amount\":1}", 409, "CRDT_TYPE_MISMATCH");
    expect_error(f, "POST", "c", "{\"type\":\"counter\",\"op\":\"increment\",\"amount\":1}", 400, "CRDT_UNKNOWN_TYPE");
    expect_error(f, "POST", "c", "{\"type\":\"g-counter\",\"op\":\"increment\",\"amount\":-1}", 400, "CRDT_BAD_AMOUNT");
    expect_error(f, "POST", "c", "{\"type\":\"g-counter\",\"op\":\"increment\",\"amount\":0}", 400, "CRDT_BAD_AMOUNT");
    expect_error(f, "POST", "c", "{\"type\":\"g-counter\",\"op\":\"increment\",\"amount\":1.5}", 400, "CRDT_BAD_AMOUNT");
    expect_error(f, "POST", "c", "{\"type\":\"g-counter\",\"op\":\"increment\",\"amount\":\"1\"}", 400, "CRDT_BAD_AMOUNT");
    expect_error(f, "POST", "c", "{\"type\":\"g-counter\",\"op\":\"increment\",\"amount\":18446744073709551616}", 400,
                 "CRDT_BAD_JSON");
    expect_error(f, "POST", "c", "{\"type\":\"g-counter\",\"op\":\"increment\"}", 400, "CRDT_MISSING_FIELD");
    expect_error(f, "POST", "c", "{\"op\":\"increment\",\"amount\":1}", 400, "CRDT_MISSING_FIELD");
    expect_error(f, "POST", "c", "{\"type\":\"g-counter\",\"amount\":1}", 400, "CRDT_MISSING_FIELD");
    expect_error(f, "POST", "c", "{\"type\":\"g-counter\",\"op\":\"explode\",\"amount\":1}", 400, "CRDT_BAD_OP");
    expect_error(f, "POST", "s", "{\"type\":\"or-set\",\"op\":\"add\"}", 400, "CRDT_MISSING_FIELD");
    expect_error(f, "POST", "r", "{\"type\":\"lww-register\",\"op\":\"set\"}", 400, "CRDT_MISSING_FIELD");
    expect_error(f, "POST", "c", "{\"type\":\"g-counter\",", 400, "CRDT_BAD_JSON");
    expect_error(f, "POST", "c", "[1,2]", 400, "CRDT_BAD_JSON");
    expect_error(f, "POST", "c", NULL, 400, "CRDT_BAD_JSON");
    expect_error(f, "POST", "bad name", "{\"type\":\"g-counter\",\"op\":\"increment\",\"amount\":1}", 400, "CRDT_BAD_NAME");
    expect_error(f, "POST", "a%2Fb", "{\"type\":\"g-counter\",\"op\":\"increment\",\"amount\":1}", 400, "CRDT_BAD_NAME");
    expect_error(f, "POST", "a%4", "{\"type\":\"g-counter\",\"op\":\"increment\",\"amount\":1}", 400, "CRDT_BAD_NAME");
    char longname[140];
    memset(longname, 'n', 129);
    longname[129] = '\0';
    expect_error(f, "POST", longname, "{\"type\":\"g-counter\",\"op\":\"increment\",\"amount\":1}", 400, "CRDT_BAD_NAME");
    longname[128] = '\0';
    json_decref(ok(f, 0, "GET", "", NULL));
    expect_error(f, "GET", "nope", NULL, 404, "CRDT_NOT_FOUND");
    expect_error(f, "GET", "c/other", NULL, 404, "CRDT_NO_ROUTE");
    expect_error(f, "GET", "c/merge", NULL, 405, "CRDT_METHOD");
    expect_error(f, "DELETE", "c", NULL, 405, "CRDT_METHOD");
    expect_error(f, "POST", "", "{}", 405, "CRDT_METHOD");
    /* overflow: never a wrap, nothing changes */
    json_decref(ok(f, 0, "POST", "big", "{\"type\":\"g-counter\",\"op\":\"increment\",\"amount\":9223372036854775807}"));
    json_decref(ok(f, 0, "POST", "big", "{\"type\":\"g-counter\",\"op\":\"increment\",\"amount\":9223372036854775807}"));
    struct edge_buf raw;
    int st_big = 0;
    edge_buf_init(&raw, 1 << 16);
    assert_int_equal(edge_crdt_http_handle(f->db[0], NULL, "us-west-2", &f->clock.clock, "GET", "big", NULL, 0, &st_big, &raw),
                     EDGE_OK);
    assert_int_equal(st_big, 200);
    assert_non_null(strstr(raw.data, "\"value\":18446744073709551614,"));
    edge_buf_free(&raw);
    json_decref(ok(f, 0, "POST", "big", "{\"type\":\"g-counter\",\"op\":\"increment\",\"amount\":1}"));
    expect_error(f, "POST", "big", "{\"type\":\"g-counter\",\"op\":\"increment\",\"amount\":1}", 409, "CRDT_OVERFLOW");
    json_decref(ok(f, 0, "POST", "neg", "{\"type\":\"pn-counter\",\"op\":\"decrement\",\"amount\":9223372036854775807}"));
    json_decref(ok(f, 0, "POST", "neg", "{\"type\":\"pn-counter\",\"op\":\"decrement\",\"amount\":1}"));
    expect_error(f, "POST", "neg", "{\"type\":\"pn-counter\",\"op\":\"decrement\",\"amount\":1}", 409, "CRDT_OVERFLOW");
    /* malformed merges */
    expect_error(f, "POST", "c/merge", "{\"type\":\"g-counter\"}", 400, "CRDT_MISSING_FIELD");
    expect_error(f, "POST", "c/merge", "{\"type\":\"g-counter\",\"state\":\"!!!\"}", 400, "CRDT_BAD_STATE");
    expect_error(f, "POST", "c/merge", "{\"type\":\"g-counter\",\"state\":\"7AEBAAAA\"}", 400, "CRDT_BAD_STATE");
    json_t *g = ok(f, 0, "GET", "c", NULL);
    const char *st = json_string_value(json_object_get(g, "state"));
    char body[512];
    snprintf(body, sizeof(body), "{\"type\":\"pn-counter\",\"state\":\"%s\"}", st);
    expect_error(f, "POST", "p/merge", body, 400, "CRDT_BAD_STATE"); /* declared type != state */
    snprintf(body, sizeof(body), "{\"type\":\"g-counter\",\"state\":\"%s\"}", st);
    expect_error(f, "POST", "s/merge", body, 409, "CRDT_TYPE_MISMATCH");
    snprintf(body, sizeof(body), "{\"type\":\"g-counter\",\"state\":\"%.*s\"}", (int)strlen(st) - 4, st);
    expect_error(f, "POST", "c/merge", body, 400, "CRDT_BAD_STATE"); /* truncated */
    json_decref(g);
    /* a state whose element is not JSON text */
    struct edge_crdt *bad = NULL;
    uint8_t *enc;
    size_t enc_len;
    struct edge_buf b64;
    assert_int_equal(edge_crdt_create(EDGE_CRDT_ORSET, &bad), EDGE_OK);
    assert_int_equal(edge_crdt_add(bad, "x", "not json", 8, NULL), EDGE_OK);
    assert_int_equal(edge_crdt_encode(bad, &enc, &enc_len), EDGE_OK);
    edge_buf_init(&b64, 4096);
    assert_int_equal(edge_buf_base64(&b64, enc, enc_len), EDGE_OK);
    snprintf(body, sizeof(body), "{\"type\":\"or-set\",\"state\":\"%s\"}", b64.data);
    expect_error(f, "POST", "s/merge", body, 400, "CRDT_BAD_STATE");
    edge_buf_free(&b64);
    edge_free(enc);
    edge_crdt_destroy(bad);
}

static char *get_state_body(struct fixture *f, int i, const char *name, const char *type)
{
    json_t *j = ok(f, i, "GET", name, NULL);
    char *body = malloc(8192);
    snprintf(body, 8192, "{\"type\":\"%s\",\"state\":\"%s\"}", type, json_string_value(json_object_get(j, "state")));
    json_decref(j);
    return body;
}

static void test_merge_two_nodes_and_restart(void **state)
{
    struct fixture *f = *state;
    uint64_t ops0, merges0, conf0, ops1, merges1, conf1;
    edge_crdt_http_stats(&ops0, &merges0, &conf0);
    json_decref(ok(f, 0, "POST", "n", "{\"type\":\"pn-counter\",\"op\":\"increment\",\"amount\":10}"));
    json_decref(ok(f, 1, "POST", "n", "{\"type\":\"pn-counter\",\"op\":\"decrement\",\"amount\":3}"));
    json_decref(ok(f, 0, "POST", "s", "{\"type\":\"or-set\",\"op\":\"add\",\"element\":\"a\"}"));
    /* node 1 learns "a", removes it, while node 0 re-adds it concurrently: add wins */
    char *b = get_state_body(f, 0, "s", "or-set");
    json_t *j = ok(f, 1, "POST", "s/merge", b);
    check_value(j, "[\"a\"]");
    assert_int_equal(json_integer_value(json_object_get(j, "conflicts")), 0);
    json_decref(j);
    free(b);
    json_decref(ok(f, 1, "POST", "s", "{\"type\":\"or-set\",\"op\":\"remove\",\"element\":\"a\"}"));
    json_decref(ok(f, 1, "POST", "s", "{\"type\":\"or-set\",\"op\":\"add\",\"element\":\"b\"}"));
    json_decref(ok(f, 0, "POST", "s", "{\"type\":\"or-set\",\"op\":\"add\",\"element\":\"a\"}"));
    json_decref(ok(f, 0, "POST", "r", "{\"type\":\"lww-register\",\"op\":\"set\",\"value\":\"old\"}"));
    json_decref(ok(f, 1, "POST", "r", "{\"type\":\"lww-register\",\"op\":\"set\",\"value\":\"new\"}"));
    const char *names[] = {"n", "s", "r"}, *types[] = {"pn-counter", "or-set", "lww-register"};
    for (int k = 0; k < 3; k++) {
        char *b1 = get_state_body(f, 1, names[k], types[k]);
        char *b0 = get_state_body(f, 0, names[k], types[k]);
        char path[32];
        snprintf(path, sizeof(path), "%s/merge", names[k]);
        json_t *m0 = ok(f, 0, "POST", path, b1);
        json_t *m1 = ok(f, 1, "POST", path, b0);
        assert_int_equal(json_integer_value(json_object_get(m0, "conflicts")), 1);
        char *s0 = dump(m0, "state"), *s1 = dump(m1, "state");
        assert_string_equal(s0, s1); /* byte-identical states on both nodes */
        free(s0);
        free(s1);
        /* merging the same state again is a no-op and not a new conflict */
        json_t *again = ok(f, 0, "POST", path, b1);
        assert_int_equal(json_integer_value(json_object_get(again, "conflicts")), 1);
        json_decref(again);
        json_decref(m0);
        json_decref(m1);
        free(b0);
        free(b1);
    }
    j = ok(f, 0, "GET", "n", NULL);
    check_value(j, "7");
    json_decref(j);
    j = ok(f, 0, "GET", "s", NULL);
    check_value(j, "[\"a\",\"b\"]");
    char *vc = dump(j, "vclock");
    assert_string_equal(vc, "{\"eu-west-1\":2,\"us-west-2\":2}");
    free(vc);
    json_decref(j);
    j = ok(f, 0, "GET", "r", NULL);
    check_value(j, "\"new\""); /* written later by the clock */
    json_decref(j);
    edge_crdt_http_stats(&ops1, &merges1, &conf1);
    assert_true(ops1 - ops0 == 8);
    assert_true(merges1 - merges0 == 10);
    assert_true(conf1 - conf0 == 6);

    /* restart: every object has exactly the value (and state) it had */
    char *before = snapshot(f, 0);
    json_t *g_before = ok(f, 0, "GET", "s", NULL);
    assert_int_equal(close_db(f->db[0]), SQLITE_OK);
    assert_int_equal(sqlite3_open(f->path[0], &f->db[0]), SQLITE_OK);
    char *after = snapshot(f, 0);
    assert_string_equal(before, after);
    json_t *g_after = ok(f, 0, "GET", "s", NULL);
    assert_true(json_equal(g_before, g_after));
    json_decref(g_before);
    json_decref(g_after);
    free(before);
    free(after);
}

/* ---- batches ---- */

struct bcall {
    const char *method, *path, *body;
};

/* A batch answers each request exactly as the same requests one at a time would, and
 * leaves the same rows: updates of one object share its load and save, a type clash or an
 * overflow against the batch's copy changes nothing, and GET, list and merge in between
 * see every update before them. The clock stands still so that both runs stamp alike. */
static void test_batch_same_as_one_by_one(void **state)
{
    struct fixture *f = *state;
    static const char inc1[] = "{\"type\":\"g-counter\",\"op\":\"increment\",\"amount\":1}";
    static const char big[] = "{\"type\":\"g-counter\",\"op\":\"increment\",\"amount\":9223372036854775807}";
    static const char pn[] = "{\"type\":\"pn-counter\",\"op\":\"increment\",\"amount\":1}";
    /* a state of "hits" from eu-west-1, to merge in the middle of the batch */
    json_t *j = ok(f, 1, "POST", "hits", "{\"type\":\"g-counter\",\"op\":\"increment\",\"amount\":5}");
    json_decref(j);
    j = ok(f, 1, "GET", "hits", NULL);
    char merge[512];
    snprintf(merge, sizeof(merge), "{\"type\":\"g-counter\",\"state\":\"%s\"}",
             json_string_value(json_object_get(j, "state")));
    json_decref(j);
    assert_int_equal(sqlite3_exec(f->db[1], "DELETE FROM _edge_crdt; DELETE FROM _edge_crdt_merges", NULL, NULL, NULL),
                     SQLITE_OK);
    const struct bcall seq[] = {
        {"POST", "hits", inc1},
        {"POST", "hits", "{\"type\":\"g-counter\",\"op\":\"increment\",\"amount\":2}"},
        {"POST", "hits", pn}, /* 409 against the batch's copy */
        {"GET", "hits", NULL},
        {"POST", "hits", pn}, /* 409 against the row */
        {"POST", "s", "{\"type\":\"or-set\",\"op\":\"add\",\"element\":{\"b\":1,\"a\":[2]}}"},
        {"POST", "s", "{\"type\":\"or-set\",\"op\":\"add\",\"element\":\"y\"}"},
        {"POST", "s", "{\"type\":\"or-set\",\"op\":\"remove\",\"element\":\"y\"}"},
        {"POST", "top", big},
        {"POST", "top", big},
        {"POST", "top", big}, /* 409 CRDT_OVERFLOW: the copy keeps the two before */
        {"POST", "top", inc1},
        {"POST", "hits/merge", merge},
        {"POST", "hits", inc1},
        {"POST", "hits", "{not json"},
        {"POST", "never", pn}, /* created, then ... */
        {"POST", "never", "{\"type\":\"pn-counter\",\"op\":\"decrement\",\"amount\":0}"}, /* a refused op */
        {"POST", "r", "{\"type\":\"lww-register\",\"op\":\"set\",\"value\":[1,2]}"},
        {"GET", "", NULL},
        {"POST", "stats", inc1},
        {"POST", "hits", inc1},
        {"GET", "stats", NULL},
        {"POST", "hits", inc1},
    };
    enum { N = sizeof(seq) / sizeof(seq[0]) };
    struct edge_buf one[N], all[N];
    struct edge_crdt_http_call calls[N];
    int status[N];
    for (int i = 0; i < N; i++) {
        edge_buf_init(&one[i], 1 << 20);
        edge_buf_init(&all[i], 1 << 20);
        assert_int_equal(edge_crdt_http_handle(f->db[1], NULL, node_region[0], &f->clock.clock, seq[i].method,
                                               seq[i].path, seq[i].body, seq[i].body ? strlen(seq[i].body) : 0,
                                               &status[i], &one[i]),
                         EDGE_OK);
        calls[i] = (struct edge_crdt_http_call){seq[i].method, seq[i].path, seq[i].body,
                                                seq[i].body ? strlen(seq[i].body) : 0, 0, &all[i]};
    }
    uint64_t ops0, m0, c0, ops1, m1, c1;
    edge_crdt_http_stats(&ops0, &m0, &c0);
    assert_int_equal(edge_crdt_http_handle_batch(f->db[0], NULL, node_region[0], &f->clock.clock, calls, N), EDGE_OK);
    edge_crdt_http_stats(&ops1, &m1, &c1);
    for (int i = 0; i < N; i++) {
        if (calls[i].status != status[i] || one[i].len != all[i].len ||
            memcmp(one[i].data, all[i].data, one[i].len) != 0) {
            fail_msg("request %d (%s %s): alone %d %.*s, in the batch %d %.*s", i, seq[i].method, seq[i].path,
                     status[i], (int)one[i].len, one[i].data, calls[i].status, (int)all[i].len, all[i].data);
        }
        edge_buf_free(&one[i]);
        edge_buf_free(&all[i]);
    }
    assert_int_equal(status[2], 409);
    assert_int_equal(status[10], 409);
    assert_int_equal(ops1 - ops0, 13); /* the updates answered 200 */
    assert_int_equal(m1 - m0, 1);
    j = ok(f, 0, "GET", "hits", NULL);
    check_value(j, "11"); /* 1 + 2, 5 merged, 1 + 1 + 1 */
    json_decref(j);
    char *a = snapshot(f, 0), *b = snapshot(f, 1);
    assert_string_equal(a, b);
    free(a);
    free(b);
}

/* A store error while saving takes the whole batch back: every request answers 500
 * CRDT_STORE and nothing of it is kept, not even the updates of other objects. */
static void test_batch_store_error(void **state)
{
    struct fixture *f = *state;
    static const char inc1[] = "{\"type\":\"g-counter\",\"op\":\"increment\",\"amount\":1}";
    json_t *j = ok(f, 0, "POST", "hits", inc1);
    json_decref(j);
    assert_int_equal(sqlite3_exec(f->db[0],
                                  "CREATE TEMP TRIGGER boom BEFORE INSERT ON main._edge_crdt WHEN NEW.name = 'boom'"
                                  " BEGIN SELECT RAISE(ABORT, 'boom is refused'); END",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    char *before = snapshot(f, 0);
    const char *paths[] = {"hits", "boom", "hits"};
    struct edge_buf out[3];
    struct edge_crdt_http_call calls[3];
    for (int i = 0; i < 3; i++) {
        edge_buf_init(&out[i], 1 << 20);
        calls[i] = (struct edge_crdt_http_call){"POST", paths[i], inc1, strlen(inc1), 0, &out[i]};
    }
    uint64_t ops0, m0, c0, ops1, m1, c1;
    edge_crdt_http_stats(&ops0, &m0, &c0);
    assert_int_equal(edge_crdt_http_handle_batch(f->db[0], NULL, node_region[0], &f->clock.clock, calls, 3), EDGE_OK);
    edge_crdt_http_stats(&ops1, &m1, &c1);
    assert_int_equal(ops1, ops0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(calls[i].status, 500);
        json_error_t err;
        json_t *r = json_loadb(out[i].data, out[i].len, 0, &err);
        assert_non_null(r);
        assert_string_equal(json_string_value(json_object_get(r, "code")), "CRDT_STORE");
        json_decref(r);
        edge_buf_free(&out[i]);
    }
    assert_int_equal(sqlite3_get_autocommit(f->db[0]), 1);
    char *after = snapshot(f, 0);
    assert_string_equal(before, after);
    free(before);
    free(after);
    j = ok(f, 0, "POST", "hits", inc1); /* the connection is usable again */
    check_value(j, "2");
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ops, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lww_and_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_inputs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_merge_two_nodes_and_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_same_as_one_by_one, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_store_error, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
