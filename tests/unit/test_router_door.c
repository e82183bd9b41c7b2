/* SPDX-License-Identifier: MIT */
/* Unit tests of what the front door reads in the messages it relays (src/router/door_*.c):
 * a top-level JSON member found without parsing the rest (strings and nesting stepped over),
 * rows of protobuf answers by the wire format (exact counts; truncated or garbage input
 * counts what it can and never reads past its end), and a WebSocket session's state: which
 * requests are reads, when a stream is inside a transaction, what a lost region leaves to
 * send again, and the order of the replay to the next region. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/alloc.h"
#include "router/door_int.h"

static const char *member(const char *doc, const char *key, char *out, size_t cap)
{
    size_t vs, vl;
    if (edge__door_json_member(doc, strlen(doc), key, &vs, &vl) != EDGE_OK) return NULL;
    if (vl >= cap) return NULL;
    memcpy(out, doc + vs, vl);
    out[vl] = '\0';
    return out;
}

static void test_json_member(void **state)
{
    (void)state;
    char v[256];
    const char *doc = "{\"type\":\"response_ok\",\"request_id\":17,\"response\":{\"type\":\"execute\",\"result\":"
                      "{\"rows\":[[{\"type\":\"text\",\"value\":\"\\\"bookmark\\\":\\\"x\\\"}\"}]]}},"
                      "\"bookmark\":\"a:5,b:9\"}";
    assert_string_equal(member(doc, "type", v, sizeof(v)), "response_ok");
    assert_string_equal(member(doc, "request_id", v, sizeof(v)), "17");
    /* the one at the top, not the text inside a value */
    assert_string_equal(member(doc, "bookmark", v, sizeof(v)), "a:5,b:9");
    assert_null(member(doc, "result", v, sizeof(v))); /* nested only */
    assert_null(member(" {\"a\": 1 } ", "b", v, sizeof(v)));
    assert_string_equal(member(" { \"a\" : [1, {\"b\":2}] , \"b\" : true } ", "b", v, sizeof(v)), "true ");
    static const char *bad[] = {"", "[1]", "{", "{\"a\"", "{\"a\":", "{\"a\":\"unterminated", "{a:1}", "{\"a\" 1}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size_t vs, vl;
        assert_int_not_equal(edge__door_json_member(bad[i], strlen(bad[i]), "a", &vs, &vl), EDGE_OK);
    }
}

/* protobuf building blocks */
static size_t put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    do {
        p[n] = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v) p[n] |= 0x80;
        n++;
    } while (v);
    return n;
}

static size_t put_msg(uint8_t *p, int field, const uint8_t *body, size_t len)
{
    size_t n = put_varint(p, ((uint64_t)field << 3) | 2);
    n += put_varint(p + n, len);
    memcpy(p + n, body, len);
    return n + len;
}

/* A StmtResult with `rows` rows of one integer value each. */
static size_t stmt_result(uint8_t *p, int rows)
{
    size_t n = 0;
    uint8_t val[] = {0x10, 0x02}; /* Value.integer = 1 (sint64) */
    uint8_t row[8];
    size_t rl = put_msg(row, 1, val, sizeof(val));
    for (int i = 0; i < rows; i++) n += put_msg(p + n, 2, row, rl);
    p[n++] = 0x18; /* affected_row_count = 0 */
    p[n++] = 0x00;
    return n;
}

static void test_pb_rows(void **state)
{
    (void)state;
    uint8_t sr[512], a[1024], b[1024], resp[2048], pipe[4096];
    /* result 1: execute with 3 rows */
    size_t srl = stmt_result(sr, 3);
    size_t al = put_msg(a, 1, sr, srl);      /* ExecuteResp.result */
    size_t bl = put_msg(b, 2, a, al);        /* Response.execute */
    size_t rl = put_msg(resp, 1, b, bl);     /* Result.ok */
    size_t pl = put_msg(pipe, 1, (const uint8_t *)"bt", 2); /* baton */
    pl += put_msg(pipe + pl, 3, resp, rl);   /* PipelineResp.results */
    /* result 2: batch with steps of 2 and 4 rows */
    uint8_t entry[512], br[2048], bresp[2048];
    size_t brl = 0;
    for (int k = 0; k < 2; k++) {
        size_t el = 0;
        entry[el++] = 0x08; /* key */
        entry[el++] = (uint8_t)k;
        srl = stmt_result(sr, k == 0 ? 2 : 4);
        el += put_msg(entry + el, 2, sr, srl);
        brl += put_msg(br + brl, 1, entry, el); /* BatchResult.step_results */
    }
    al = put_msg(a, 1, br, brl);            /* BatchResp.result */
    bl = put_msg(bresp, 3, a, al);          /* Response.batch */
    rl = put_msg(resp, 1, bresp, bl);
    pl += put_msg(pipe + pl, 3, resp, rl);
    assert_int_equal(edge__door_pb_count_rows(pipe, pl, false), 9);
    /* every truncation: no crash, never more than the whole */
    for (size_t cut = 0; cut < pl; cut++) {
        uint8_t *copy = malloc(cut + 1); /* exactly cut bytes are readable: ASan checks */
        memcpy(copy, pipe, cut);
        assert_true(edge__door_pb_count_rows(copy, cut, false) <= 9);
        assert_true(edge__door_pb_count_rows(copy, cut, true) <= 9);
        free(copy);
    }
    /* a cursor: CursorResp, then step_begin, 5 rows, step_end */
    uint8_t cur[1024];
    size_t cl = 0;
    uint8_t cr[8];
    size_t crl = put_msg(cr, 1, (const uint8_t *)"bt", 2);
    cl += put_varint(cur + cl, crl);
    memcpy(cur + cl, cr, crl);
    cl += crl;
    uint8_t e[64];
    uint8_t empty[1] = {0};
    size_t el = put_msg(e, 1, empty, 0);
    cl += put_varint(cur + cl, el);
    memcpy(cur + cl, e, el);
    cl += el;
    for (int i = 0; i < 5; i++) {
        uint8_t val[] = {0x0a, 0x02, 0x10, 0x02}; /* Row.values = {integer 1} */
        el = put_msg(e, 4, val, sizeof(val));
        cl += put_varint(cur + cl, el);
        memcpy(cur + cl, e, el);
        cl += el;
    }
    assert_int_equal(edge__door_pb_count_rows(cur, cl, true), 5);
    uint8_t junk[64];
    for (size_t i = 0; i < sizeof(junk); i++) junk[i] = (uint8_t)(i * 37 + 11);
    (void)edge__door_pb_count_rows(junk, sizeof(junk), false);
    (void)edge__door_pb_count_rows(junk, sizeof(junk), true);
}

/* one request into the state, as door_ws.c gives it */
static struct edge_door_wst_req *req(struct edge_door_wst *t, int64_t id, const char *json, bool sent)
{
    json_t *j = json_loads(json, 0, NULL);
    assert_non_null(j); /* JSON, as door_ws.c checks before */
    json_decref(j);
    struct edge_jv r = {json, strlen(json)};
    struct edge_door_wst_req *out = NULL;
    const char *code, *why;
    char *text = edge_strdup(json);
    assert_int_equal(edge__door_wst_request(t, r, id, text, strlen(text), sent, &out, &code, &why), EDGE_OK);
    return out;
}

static int64_t unknown_ids[16];
static int n_unknown;
static void on_unknown(void *ud, int64_t id, int kind)
{
    (void)ud;
    (void)kind;
    unknown_ids[n_unknown++] = id;
}

static char replayed[16][256];
static int n_replayed;
static int on_emit(void *ud, const char *text, size_t len)
{
    (void)ud;
    snprintf(replayed[n_replayed++], sizeof(replayed[0]), "%.*s", (int)len, text);
    return EDGE_OK;
}

static void test_ws_state(void **state)
{
    (void)state;
    struct edge_door_wst *t = NULL;
    assert_int_equal(edge__door_wst_new(&t), EDGE_OK);
    /* an answered stream and text, then an execute() of @libsql/client in flight */
    req(t, 0, "{\"type\":\"open_stream\",\"stream_id\":1}", true);
    req(t, 1, "{\"type\":\"store_sql\",\"sql_id\":4,\"sql\":\"SELECT 4\"}", true);
    assert_int_equal(edge__door_wst_answer(t, 0, true), WST_SAFE);
    assert_int_equal(edge__door_wst_answer(t, 1, true), WST_SAFE);
    assert_int_equal(edge__door_wst_answer(t, 1, true), -1); /* answered once */
    assert_int_equal(req(t, 2, "{\"type\":\"open_stream\",\"stream_id\":2}", true)->kind, WST_SAFE);
    assert_int_equal(req(t, 3, "{\"type\":\"execute\",\"stream_id\":2,\"stmt\":{\"sql_id\":4}}", true)->kind,
                     WST_READ);
    assert_int_equal(req(t, 4, "{\"type\":\"close_stream\",\"stream_id\":2}", true)->kind, WST_SAFE);
    assert_int_equal(req(t, 5, "{\"type\":\"execute\",\"stream_id\":1,\"stmt\":{\"sql\":\"INSERT INTO t VALUES (1)\"}}",
                         true)->kind, WST_WRITE);
    assert_int_equal(req(t, 6, "{\"type\":\"execute\",\"stream_id\":1,\"stmt\":{\"sql\":\"select 1; delete from t\"}}",
                         true)->kind, WST_WRITE);
    assert_false(edge__door_wst_pinned(t));
    /* one not sent yet (arrived while moving) */
    req(t, 7, "{\"type\":\"execute\",\"stream_id\":1,\"stmt\":{\"sql\":\"VALUES (1)\"}}", false);
    n_unknown = 0;
    assert_int_equal(edge__door_wst_lost(t, on_unknown, NULL), 1); /* the read 3 runs again */
    assert_int_equal(n_unknown, 2);
    assert_int_equal(unknown_ids[0], 5);
    assert_int_equal(unknown_ids[1], 6);
    n_replayed = 0;
    assert_int_equal(edge__door_wst_replay(t, on_emit, NULL), EDGE_OK);
    /* stream 1 and text 4 recreated (door's own ids), then 2, 3, 4 and 7 in order */
    assert_int_equal(n_replayed, 6);
    assert_non_null(strstr(replayed[0], "\"open_stream\",\"stream_id\":1}"));
    assert_non_null(strstr(replayed[1], "\"store_sql\",\"sql_id\":4,\"sql\":\"SELECT 4\""));
    assert_non_null(strstr(replayed[2], "\"stream_id\":2}") && strstr(replayed[2], "open_stream"));
    assert_non_null(strstr(replayed[3], "\"sql_id\":4"));
    assert_non_null(strstr(replayed[4], "close_stream"));
    assert_non_null(strstr(replayed[5], "VALUES (1)"));
    /* the streams settle; a transaction pins the session until it ends */
    assert_int_equal(edge__door_wst_answer(t, 2, true), WST_SAFE);
    assert_int_equal(edge__door_wst_answer(t, 3, true), WST_READ);
    assert_int_equal(edge__door_wst_answer(t, 4, true), WST_SAFE);
    req(t, 8, "{\"type\":\"execute\",\"stream_id\":1,\"stmt\":{\"sql\":\"BEGIN IMMEDIATE\"}}", true);
    assert_true(edge__door_wst_pinned(t));
    assert_int_equal(req(t, 9, "{\"type\":\"execute\",\"stream_id\":1,\"stmt\":{\"sql\":\"SELECT 1\"}}", true)->kind,
                     WST_WRITE); /* a read inside a transaction is not run elsewhere */
    req(t, 10, "{\"type\":\"execute\",\"stream_id\":1,\"stmt\":{\"sql\":\"ROLLBACK TO sp\"}}", true);
    assert_true(edge__door_wst_pinned(t));
    req(t, 11, "{\"type\":\"execute\",\"stream_id\":1,\"stmt\":{\"sql\":\"COMMIT\"}}", true);
    /* a COMMIT ends the transaction only once it succeeded: a failed one (a deferred foreign
     * key, SQLITE_BUSY) leaves it open, and a read sent behind it may run inside it */
    assert_true(edge__door_wst_pinned(t));
    assert_int_equal(req(t, 21, "{\"type\":\"execute\",\"stream_id\":1,\"stmt\":{\"sql\":\"SELECT 2\"}}", true)->kind,
                     WST_WRITE);
    edge__door_wst_answer(t, 8, true);
    edge__door_wst_answer(t, 9, true);
    edge__door_wst_answer(t, 10, true);
    assert_int_equal(edge__door_wst_answer(t, 11, false), WST_WRITE);
    assert_true(edge__door_wst_pinned(t));
    edge__door_wst_answer(t, 21, true);
    assert_true(edge__door_wst_pinned(t));
    assert_int_equal(req(t, 22, "{\"type\":\"execute\",\"stream_id\":1,\"stmt\":{\"sql\":\"SELECT 3\"}}", true)->kind,
                     WST_WRITE); /* still inside it */
    req(t, 23, "{\"type\":\"execute\",\"stream_id\":1,\"stmt\":{\"sql\":\"COMMIT\"}}", true);
    /* an answer to a COMMIT overtaken by a new BEGIN does not end the new transaction */
    req(t, 24, "{\"type\":\"execute\",\"stream_id\":1,\"stmt\":{\"sql\":\"BEGIN\"}}", true);
    edge__door_wst_answer(t, 22, true);
    edge__door_wst_answer(t, 23, true);
    assert_true(edge__door_wst_pinned(t));
    req(t, 25, "{\"type\":\"execute\",\"stream_id\":1,\"stmt\":{\"sql\":\"ROLLBACK\"}}", true);
    edge__door_wst_answer(t, 24, true);
    assert_true(edge__door_wst_pinned(t));
    edge__door_wst_answer(t, 25, true);
    assert_false(edge__door_wst_pinned(t));
    assert_int_equal(req(t, 26, "{\"type\":\"execute\",\"stream_id\":1,\"stmt\":{\"sql\":\"SELECT 4\"}}", true)->kind,
                     WST_READ);
    edge__door_wst_answer(t, 26, true);
    /* a whole-transaction batch ends where it began, once answered ok */
    req(t, 12, "{\"type\":\"batch\",\"stream_id\":1,\"batch\":{\"steps\":[{\"stmt\":{\"sql\":\"BEGIN\"}},"
               "{\"stmt\":{\"sql\":\"SELECT 1\"}},{\"stmt\":{\"sql\":\"COMMIT\"}},{\"stmt\":{\"sql\":\"ROLLBACK\"}}]}}",
        true);
    assert_false(edge__door_wst_pinned(t)); /* lost in flight: a write, nothing left open */
    assert_int_equal(req(t, 27, "{\"type\":\"execute\",\"stream_id\":1,\"stmt\":{\"sql\":\"SELECT 5\"}}", true)->kind,
                     WST_WRITE); /* may run inside it if its COMMIT fails */
    edge__door_wst_answer(t, 12, true);
    edge__door_wst_answer(t, 27, true);
    assert_false(edge__door_wst_pinned(t));
    /* answered with a failed step (door_ws.c: "step_errors"): its COMMIT may have failed */
    req(t, 28, "{\"type\":\"batch\",\"stream_id\":1,\"batch\":{\"steps\":[{\"stmt\":{\"sql\":\"BEGIN\"}},"
               "{\"stmt\":{\"sql\":\"COMMIT\"}}]}}", true);
    edge__door_wst_answer(t, 28, false);
    assert_true(edge__door_wst_pinned(t));
    req(t, 29, "{\"type\":\"execute\",\"stream_id\":1,\"stmt\":{\"sql\":\"ROLLBACK\"}}", true);
    edge__door_wst_answer(t, 29, true);
    assert_false(edge__door_wst_pinned(t));
    req(t, 13, "{\"type\":\"sequence\",\"stream_id\":1,\"sql\":\"BEGIN; SELECT 1\"}", true);
    assert_true(edge__door_wst_pinned(t));
    req(t, 14, "{\"type\":\"close_stream\",\"stream_id\":1}", true);
    assert_int_equal(edge__door_wst_answer(t, 14, true), WST_SAFE);
    assert_false(edge__door_wst_pinned(t));
    /* a cursor does not pin: lost with its region, its requests in flight answered, a close sent again */
    edge__door_wst_free(t);
    assert_int_equal(edge__door_wst_new(&t), EDGE_OK);
    req(t, 14, "{\"type\":\"open_stream\",\"stream_id\":2}", true);
    assert_int_equal(edge__door_wst_answer(t, 14, true), WST_SAFE);
    req(t, 15, "{\"type\":\"open_cursor\",\"stream_id\":2,\"cursor_id\":1,\"batch\":{\"steps\":[]}}", true);
    req(t, 16, "{\"type\":\"fetch_cursor\",\"cursor_id\":1,\"max_count\":10}", true);
    req(t, 20, "{\"type\":\"close_cursor\",\"cursor_id\":1}", true);
    assert_false(edge__door_wst_pinned(t));
    n_unknown = 0;
    assert_int_equal(edge__door_wst_lost(t, on_unknown, NULL), 0);
    assert_int_equal(n_unknown, 2);
    assert_int_equal(unknown_ids[0], 15);
    assert_int_equal(unknown_ids[1], 16);
    n_replayed = 0;
    assert_int_equal(edge__door_wst_replay(t, on_emit, NULL), EDGE_OK);
    assert_non_null(strstr(replayed[n_replayed - 1], "close_cursor"));
    assert_int_equal(edge__door_wst_answer(t, 20, true), WST_SAFE);
    /* malformed requests: classified as writes, nothing else */
    assert_int_equal(req(t, 17, "{}", true)->kind, WST_WRITE);
    assert_int_equal(req(t, 18, "{\"type\":\"execute\",\"stmt\":7}", true)->kind, WST_WRITE);
    assert_int_equal(req(t, 19, "{\"type\":\"store_sql\",\"sql_id\":\"x\",\"sql\":null}", true)->kind, WST_SAFE);
    edge__door_wst_free(t);
}

static int fail_after; /* emits before one fails */
static int on_emit_fail(void *ud, const char *text, size_t len)
{
    (void)ud;
    (void)text;
    (void)len;
    return fail_after-- > 0 ? EDGE_OK : EDGE_EIO;
}

/* A send that fails in the replay: the request may be partly on its way (TLS buffered its
 * record), so it counts as sent: a write is answered unknown at the loss, never sent twice. */
static void test_ws_send_failed(void **state)
{
    (void)state;
    struct edge_door_wst *t = NULL;
    assert_int_equal(edge__door_wst_new(&t), EDGE_OK);
    req(t, 1, "{\"type\":\"open_stream\",\"stream_id\":1}", true);
    assert_int_equal(edge__door_wst_answer(t, 1, true), WST_SAFE);
    /* arrived while the session was moving: not sent */
    req(t, 2, "{\"type\":\"execute\",\"stream_id\":1,\"stmt\":{\"sql\":\"SELECT 1\"}}", false);
    req(t, 3, "{\"type\":\"execute\",\"stream_id\":1,\"stmt\":{\"sql\":\"INSERT INTO t VALUES (1)\"}}", false);
    req(t, 4, "{\"type\":\"execute\",\"stream_id\":1,\"stmt\":{\"sql\":\"INSERT INTO t VALUES (2)\"}}", false);
    fail_after = 2; /* the open_stream and the read go, the first write fails */
    assert_int_not_equal(edge__door_wst_replay(t, on_emit_fail, NULL), EDGE_OK);
    n_unknown = 0;
    assert_int_equal(edge__door_wst_lost(t, on_unknown, NULL), 1); /* the read goes again */
    assert_int_equal(n_unknown, 1);
    assert_int_equal(unknown_ids[0], 3); /* the write whose send failed: unknown, not re-sent */
    n_replayed = 0;
    assert_int_equal(edge__door_wst_replay(t, on_emit, NULL), EDGE_OK);
    assert_int_equal(n_replayed, 3); /* open_stream, the read, the write never sent */
    assert_non_null(strstr(replayed[1], "SELECT 1"));
    assert_non_null(strstr(replayed[2], "VALUES (2)"));
    edge__door_wst_free(t);
}

static void test_ws_bounds(void **state)
{
    (void)state;
    struct edge_door_wst *t = NULL;
    assert_int_equal(edge__door_wst_new(&t), EDGE_OK);
    char buf[128];
    for (int i = 0; i < WST_MAX_SQLS; i++) {
        snprintf(buf, sizeof(buf), "{\"type\":\"store_sql\",\"sql_id\":%d,\"sql\":\"SELECT %d\"}", i, i);
        req(t, i, buf, true);
    }
    /* storing an id again replaces it, within the bound */
    req(t, 9999, "{\"type\":\"store_sql\",\"sql_id\":3,\"sql\":\"SELECT 33\"}", true);
    static const char s5000[] = "{\"type\":\"store_sql\",\"sql_id\":5000,\"sql\":\"SELECT 1\"}";
    struct edge_jv r = {s5000, sizeof(s5000) - 1};
    struct edge_door_wst_req *out = NULL;
    const char *code = NULL, *why = NULL;
    char text[] = "x";
    assert_int_equal(edge__door_wst_request(t, r, 10000, text, 1, true, &out, &code, &why), EDGE_ETOOBIG);
    assert_string_equal(code, "WS_ROUTER_LIMIT");
    /* replacements count against the 4 MiB of texts: 200 texts of 60 KiB do not fit */
    char *big = malloc(70 * 1024);
    int refused = 0;
    for (int i = 0; i < WST_MAX_SQLS; i++) {
        int n = snprintf(big, 70 * 1024, "{\"type\":\"store_sql\",\"sql_id\":%d,\"sql\":\"SELECT '", i);
        memset(big + n, 'x', 60 * 1024);
        snprintf(big + n + 60 * 1024, 64, "'\"}");
        r = (struct edge_jv){big, strlen(big)};
        char *copy = edge_strdup(big);
        int rv = edge__door_wst_request(t, r, 20000 + i, copy, strlen(copy), true, &out, &code, &why);
        if (rv == EDGE_OK) {
            assert_int_equal(edge__door_wst_answer(t, 20000 + i, true), WST_SAFE);
        } else {
            assert_int_equal(rv, EDGE_ETOOBIG);
            edge_free(copy);
            refused++;
        }
    }
    free(big);
    assert_true(refused > 100); /* 4 MiB hold 68 of them */
    edge__door_wst_free(t);
}

/* A stream's cursors leave with it (the region closes them with the stream): streams opened
 * and closed, each with a cursor never closed, never reach the cursors' bound; a stream id
 * reused while the close of its previous stream is in flight keeps its new cursor. */
static void test_ws_cursors_with_stream(void **state)
{
    (void)state;
    struct edge_door_wst *t = NULL;
    assert_int_equal(edge__door_wst_new(&t), EDGE_OK);
    char buf[160];
    int64_t id = 0;
    for (int i = 0; i < 3 * WST_MAX_STREAMS; i++) {
        snprintf(buf, sizeof(buf), "{\"type\":\"open_stream\",\"stream_id\":%d}", i % 7);
        req(t, ++id, buf, true);
        assert_int_equal(edge__door_wst_answer(t, id, true), WST_SAFE);
        snprintf(buf, sizeof(buf), "{\"type\":\"open_cursor\",\"stream_id\":%d,\"cursor_id\":%d,"
                 "\"batch\":{\"steps\":[]}}", i % 7, i);
        req(t, ++id, buf, true);
        assert_int_equal(edge__door_wst_answer(t, id, true), WST_CURSOR);
        snprintf(buf, sizeof(buf), "{\"type\":\"close_stream\",\"stream_id\":%d}", i % 7);
        req(t, ++id, buf, true);
        assert_int_equal(edge__door_wst_answer(t, id, true), WST_SAFE);
    }
    size_t ns = 0, nc = 0;
    edge__door_wst_counts(t, &ns, &nc);
    assert_int_equal(ns, 0);
    assert_int_equal(nc, 0);
    /* stream 1 closed (close in flight) and opened again with a cursor: the close's answer
     * takes the old stream's cursor only */
    req(t, ++id, "{\"type\":\"open_stream\",\"stream_id\":1}", true);
    assert_int_equal(edge__door_wst_answer(t, id, true), WST_SAFE);
    req(t, ++id, "{\"type\":\"open_cursor\",\"stream_id\":1,\"cursor_id\":1,\"batch\":{\"steps\":[]}}", true);
    assert_int_equal(edge__door_wst_answer(t, id, true), WST_CURSOR);
    int64_t close_id = ++id;
    req(t, close_id, "{\"type\":\"close_stream\",\"stream_id\":1}", true);
    req(t, ++id, "{\"type\":\"open_stream\",\"stream_id\":1}", true);
    req(t, ++id, "{\"type\":\"open_cursor\",\"stream_id\":1,\"cursor_id\":2,\"batch\":{\"steps\":[]}}", true);
    ns = nc = 0;
    edge__door_wst_counts(t, &ns, &nc);
    assert_int_equal(nc, 2);
    assert_int_equal(edge__door_wst_answer(t, close_id, true), WST_SAFE);
    ns = nc = 0;
    edge__door_wst_counts(t, &ns, &nc);
    assert_int_equal(ns, 1);
    assert_int_equal(nc, 1);
    edge__door_wst_free(t);
}

/* A replacement of a stored text: the previous text stays until the region answers ok; a
 * refused one leaves it (as the region does); a session moved meanwhile stores it again
 * before the replacement, which follows in order. */
static void test_ws_sql_replace(void **state)
{
    (void)state;
    struct edge_door_wst *t = NULL;
    assert_int_equal(edge__door_wst_new(&t), EDGE_OK);
    req(t, 1, "{\"type\":\"store_sql\",\"sql_id\":4,\"sql\":\"SELECT 4\"}", true);
    assert_int_equal(edge__door_wst_answer(t, 1, true), WST_SAFE);
    req(t, 2, "{\"type\":\"store_sql\",\"sql_id\":4,\"sql\":\"SELECT 44\"}", true);
    assert_int_equal(edge__door_wst_answer(t, 2, false), WST_SAFE); /* refused */
    n_replayed = 0;
    assert_int_equal(edge__door_wst_replay(t, on_emit, NULL), EDGE_OK);
    assert_int_equal(n_replayed, 1);
    assert_non_null(strstr(replayed[0], "\"sql\":\"SELECT 4\""));
    /* pending at a loss: the old text first, then the replacement and the read after it */
    req(t, 3, "{\"type\":\"store_sql\",\"sql_id\":4,\"sql\":\"SELECT 444\"}", true);
    req(t, 4, "{\"type\":\"open_stream\",\"stream_id\":1}", true);
    req(t, 5, "{\"type\":\"execute\",\"stream_id\":1,\"stmt\":{\"sql_id\":4}}", true);
    n_unknown = 0;
    assert_int_equal(edge__door_wst_lost(t, on_unknown, NULL), 1); /* the read runs again */
    n_replayed = 0;
    assert_int_equal(edge__door_wst_replay(t, on_emit, NULL), EDGE_OK);
    assert_int_equal(n_replayed, 4);
    assert_non_null(strstr(replayed[0], "\"sql\":\"SELECT 4\""));
    assert_non_null(strstr(replayed[1], "SELECT 444"));
    assert_int_equal(edge__door_wst_answer(t, 3, true), WST_SAFE);
    n_replayed = 0;
    assert_int_equal(edge__door_wst_replay(t, on_emit, NULL), EDGE_OK);
    assert_non_null(strstr(replayed[1], "\"sql\":\"SELECT 444\""));
    for (int i = 0; i < n_replayed; i++) assert_null(strstr(replayed[i], "\"SELECT 4\""));
    /* a close takes every text of the id */
    req(t, 6, "{\"type\":\"store_sql\",\"sql_id\":4,\"sql\":\"SELECT 5\"}", true);
    req(t, 7, "{\"type\":\"close_sql\",\"sql_id\":4}", true);
    assert_int_equal(edge__door_wst_answer(t, 6, true), WST_SAFE);
    assert_int_equal(edge__door_wst_answer(t, 7, true), WST_SAFE);
    n_replayed = 0;
    assert_int_equal(edge__door_wst_answer(t, 4, true), WST_SAFE);
    assert_int_equal(edge__door_wst_answer(t, 5, true), WST_READ);
    assert_int_equal(edge__door_wst_replay(t, on_emit, NULL), EDGE_OK);
    for (int i = 0; i < n_replayed; i++) assert_null(strstr(replayed[i], "store_sql"));
    edge__door_wst_free(t);
}

/* A savepoint opened outside a transaction is one, until its RELEASE; per-connection state
 * (PRAGMA, ATTACH, CREATE TEMP) pins the session until the stream is closed. */
static void test_ws_pin_state(void **state)
{
    (void)state;
    struct edge_door_wst *t = NULL;
    assert_int_equal(edge__door_wst_new(&t), EDGE_OK);
    req(t, 1, "{\"type\":\"open_stream\",\"stream_id\":1}", true);
    edge__door_wst_answer(t, 1, true);
    req(t, 2, "{\"type\":\"execute\",\"stream_id\":1,\"stmt\":{\"sql\":\"SAVEPOINT outer_sp\"}}", true);
    req(t, 3, "{\"type\":\"execute\",\"stream_id\":1,\"stmt\":{\"sql\":\"SAVEPOINT inner_sp\"}}", true);
    req(t, 4, "{\"type\":\"execute\",\"stream_id\":1,\"stmt\":{\"sql\":\"RELEASE inner_sp\"}}", true);
    for (int i = 2; i <= 4; i++) edge__door_wst_answer(t, i, true);
    assert_true(edge__door_wst_pinned(t));
    req(t, 5, "{\"type\":\"execute\",\"stream_id\":1,\"stmt\":{\"sql\":\"release savepoint OUTER_SP\"}}", true);
    edge__door_wst_answer(t, 5, true);
    assert_false(edge__door_wst_pinned(t));
    /* inside BEGIN a RELEASE ends nothing */
    req(t, 6, "{\"type\":\"execute\",\"stream_id\":1,\"stmt\":{\"sql\":\"BEGIN\"}}", true);
    req(t, 7, "{\"type\":\"execute\",\"stream_id\":1,\"stmt\":{\"sql\":\"SAVEPOINT a\"}}", true);
    req(t, 8, "{\"type\":\"execute\",\"stream_id\":1,\"stmt\":{\"sql\":\"RELEASE a\"}}", true);
    for (int i = 6; i <= 8; i++) edge__door_wst_answer(t, i, true);
    assert_true(edge__door_wst_pinned(t));
    req(t, 9, "{\"type\":\"execute\",\"stream_id\":1,\"stmt\":{\"sql\":\"COMMIT\"}}", true);
    edge__door_wst_answer(t, 9, true);
    assert_false(edge__door_wst_pinned(t));
    static const char *sticky[] = {"PRAGMA foreign_keys = ON", "ATTACH 'x.db' AS x", "CREATE TEMP TABLE tt (a)",
                                   "create temporary view v as select 1"};
    for (int k = 0; k < 4; k++) {
        char buf[256];
        snprintf(buf, sizeof(buf), "{\"type\":\"open_stream\",\"stream_id\":%d}", 10 + k);
        req(t, 100 + 4 * k, buf, true);
        edge__door_wst_answer(t, 100 + 4 * k, true);
        snprintf(buf, sizeof(buf), "{\"type\":\"execute\",\"stream_id\":%d,\"stmt\":{\"sql\":\"%s\"}}", 10 + k,
                 sticky[k]);
        req(t, 101 + 4 * k, buf, true);
        edge__door_wst_answer(t, 101 + 4 * k, true);
        assert_true(edge__door_wst_pinned(t));
        snprintf(buf, sizeof(buf), "{\"type\":\"close_stream\",\"stream_id\":%d}", 10 + k);
        req(t, 102 + 4 * k, buf, true);
        assert_true(edge__door_wst_pinned(t));
        edge__door_wst_answer(t, 102 + 4 * k, true);
        assert_false(edge__door_wst_pinned(t));
    }
    edge__door_wst_free(t);
}

/* A second open_stream for a stream id already open (the region answers STREAM_EXISTS): the live
 * stream stays as it was, counted once, and what is sent on the id while the duplicate is in flight
 * counts for it (a BEGIN pins the session). */
static void test_ws_duplicate_open(void **state)
{
    (void)state;
    struct edge_door_wst *t = NULL;
    assert_int_equal(edge__door_wst_new(&t), EDGE_OK);
    req(t, 0, "{\"type\":\"open_stream\",\"stream_id\":1}", true);
    assert_int_equal(edge__door_wst_answer(t, 0, true), WST_SAFE);
    req(t, 1, "{\"type\":\"open_stream\",\"stream_id\":1}", true);
    req(t, 2, "{\"type\":\"execute\",\"stream_id\":1,\"stmt\":{\"sql\":\"BEGIN\"}}", true);
    size_t streams = 0, cursors = 0;
    edge__door_wst_counts(t, &streams, &cursors);
    assert_int_equal(streams, 1);
    assert_true(edge__door_wst_pinned(t));
    assert_int_equal(edge__door_wst_answer(t, 1, false), WST_SAFE); /* STREAM_EXISTS */
    assert_int_equal(edge__door_wst_answer(t, 2, true), WST_WRITE);
    streams = 0;
    edge__door_wst_counts(t, &streams, &cursors);
    assert_int_equal(streams, 1);
    assert_true(edge__door_wst_pinned(t)); /* the BEGIN ran on the live stream */
    /* its COMMIT ends it; a move recreates the one stream */
    req(t, 3, "{\"type\":\"execute\",\"stream_id\":1,\"stmt\":{\"sql\":\"COMMIT\"}}", true);
    edge__door_wst_answer(t, 3, true);
    assert_false(edge__door_wst_pinned(t));
    n_unknown = 0;
    edge__door_wst_lost(t, on_unknown, NULL);
    n_replayed = 0;
    assert_int_equal(edge__door_wst_replay(t, on_emit, NULL), EDGE_OK);
    assert_int_equal(n_replayed, 1);
    assert_non_null(strstr(replayed[0], "\"open_stream\",\"stream_id\":1}"));
    /* closed: gone */
    req(t, 4, "{\"type\":\"close_stream\",\"stream_id\":1}", true);
    edge__door_wst_answer(t, 4, true);
    streams = 0;
    edge__door_wst_counts(t, &streams, &cursors);
    assert_int_equal(streams, 0);
    edge__door_wst_free(t);
}

/* The same while the first open is still in flight: the BEGIN sent on the id belongs to the
 * first stream, and the duplicate's refusal takes nothing with it. */
static void test_ws_duplicate_open_in_flight(void **state)
{
    (void)state;
    struct edge_door_wst *t = NULL;
    assert_int_equal(edge__door_wst_new(&t), EDGE_OK);
    req(t, 0, "{\"type\":\"open_stream\",\"stream_id\":1}", true);
    req(t, 1, "{\"type\":\"open_stream\",\"stream_id\":1}", true);
    req(t, 2, "{\"type\":\"execute\",\"stream_id\":1,\"stmt\":{\"sql\":\"BEGIN\"}}", true);
    size_t streams = 0, cursors = 0;
    edge__door_wst_counts(t, &streams, &cursors);
    assert_int_equal(streams, 1);
    edge__door_wst_answer(t, 0, true);
    assert_int_equal(edge__door_wst_answer(t, 1, false), WST_SAFE); /* STREAM_EXISTS */
    assert_int_equal(edge__door_wst_answer(t, 2, true), WST_WRITE);
    streams = 0;
    edge__door_wst_counts(t, &streams, &cursors);
    assert_int_equal(streams, 1);
    assert_true(edge__door_wst_pinned(t)); /* the region holds the transaction: no move */
    edge__door_wst_free(t);
}

/* A second open_cursor for a cursor id that is open, or whose open is in flight, leaves the
 * state as it was: the node answers it CURSOR_EXISTS at once (before an open in flight is
 * answered) and runs nothing of its batch. */
static void test_ws_duplicate_open_cursor(void **state)
{
    (void)state;
    struct edge_door_wst *t = NULL;
    assert_int_equal(edge__door_wst_new(&t), EDGE_OK);
    req(t, 0, "{\"type\":\"open_stream\",\"stream_id\":1}", true);
    req(t, 1, "{\"type\":\"open_stream\",\"stream_id\":2}", true);
    edge__door_wst_answer(t, 0, true);
    edge__door_wst_answer(t, 1, true);
    req(t, 2, "{\"type\":\"open_cursor\",\"stream_id\":1,\"cursor_id\":5,\"batch\":{\"steps\":"
              "[{\"stmt\":{\"sql\":\"SELECT 1\"}}]}}", true);
    edge__door_wst_answer(t, 2, true);
    /* cursor 5 open: a duplicate on stream 2 whose batch begins a transaction */
    req(t, 3, "{\"type\":\"open_cursor\",\"stream_id\":2,\"cursor_id\":5,\"batch\":{\"steps\":"
              "[{\"stmt\":{\"sql\":\"BEGIN\"}}]}}", true);
    size_t streams = 0, cursors = 0;
    edge__door_wst_counts(t, &streams, &cursors);
    assert_int_equal(cursors, 1);
    assert_int_equal(edge__door_wst_answer(t, 3, false), WST_CURSOR); /* CURSOR_EXISTS */
    assert_false(edge__door_wst_pinned(t)); /* its BEGIN never ran */
    /* cursor 6 opening on stream 1, its duplicate on stream 2 refused before the open's answer */
    req(t, 4, "{\"type\":\"open_cursor\",\"stream_id\":1,\"cursor_id\":6,\"batch\":{\"steps\":"
              "[{\"stmt\":{\"sql\":\"SELECT 1\"}}]}}", true);
    req(t, 5, "{\"type\":\"open_cursor\",\"stream_id\":2,\"cursor_id\":6,\"batch\":{\"steps\":"
              "[{\"stmt\":{\"sql\":\"SELECT 1\"}}]}}", true);
    streams = cursors = 0;
    edge__door_wst_counts(t, &streams, &cursors);
    assert_int_equal(cursors, 2);
    assert_int_equal(edge__door_wst_answer(t, 5, false), WST_CURSOR);
    assert_int_equal(edge__door_wst_answer(t, 4, true), WST_CURSOR);
    /* closing stream 2 closes none of them: both are stream 1's */
    req(t, 6, "{\"type\":\"close_stream\",\"stream_id\":2}", true);
    edge__door_wst_answer(t, 6, true);
    streams = cursors = 0;
    edge__door_wst_counts(t, &streams, &cursors);
    assert_int_equal(cursors, 2);
    /* a duplicate of 5 with 5's close behind it: the close takes the open cursor */
    req(t, 7, "{\"type\":\"open_cursor\",\"stream_id\":1,\"cursor_id\":5,\"batch\":{\"steps\":"
              "[{\"stmt\":{\"sql\":\"SELECT 1\"}}]}}", true);
    req(t, 8, "{\"type\":\"close_cursor\",\"cursor_id\":5}", true);
    edge__door_wst_answer(t, 7, false);
    edge__door_wst_answer(t, 8, true);
    streams = cursors = 0;
    edge__door_wst_counts(t, &streams, &cursors);
    assert_int_equal(cursors, 1);
    req(t, 9, "{\"type\":\"close_stream\",\"stream_id\":1}", true);
    edge__door_wst_answer(t, 9, true);
    streams = cursors = 0;
    edge__door_wst_counts(t, &streams, &cursors);
    assert_int_equal(streams, 0);
    assert_int_equal(cursors, 0);
    edge__door_wst_free(t);
}

/* ---- the in-place reading of the client's WebSocket messages (door_jv.c) against jansson ---- */

/* jansson's string member of o as bytes ("" and false when it is none) */
static bool jstr(json_t *o, const char *key, const char **v, size_t *n)
{
    json_t *x = json_object_get(o, key);
    *v = json_is_string(x) ? json_string_value(x) : NULL;
    *n = json_is_string(x) ? json_string_length(x) : 0;
    return *v != NULL;
}

static void same_string(json_t *o, struct edge_jv v, const char *key)
{
    const char *js;
    size_t jn;
    struct edge_jv m = edge__door_jv_get(v, key);
    bool is = jstr(o, key, &js, &jn);
    assert_int_equal(edge__door_jv_is_string(m), is);
    if (!is) return;
    char *dec = malloc(m.len + 1);
    assert_int_equal(edge__door_jv_str(m, NULL), jn);
    assert_int_equal(edge__door_jv_str(m, dec), jn);
    assert_memory_equal(dec, js, jn);
    size_t tl;
    char *owned;
    const char *t = edge__door_jv_text(m, &tl, &owned);
    assert_int_equal(tl, jn);
    assert_memory_equal(t, js, jn);
    edge_free(owned);
    free(dec);
    if (jn < 64 && memchr(js, '\0', jn) == NULL) assert_true(edge__door_jv_str_eq(m, js));
}

static void same_int(json_t *o, struct edge_jv v, const char *key)
{
    json_t *x = json_object_get(o, key);
    struct edge_jv m = edge__door_jv_get(v, key);
    assert_int_equal(edge__door_jv_is_integer(m), json_is_integer(x));
    assert_true(edge__door_jv_int(m) == json_integer_value(x));
    assert_int_equal(m.p == NULL, x == NULL);
    assert_int_equal(edge__door_jv_is_null(m), json_is_null(x));
    assert_int_equal(edge__door_jv_is_object(m), json_is_object(x));
}

/* Every member the door reads, read both ways (a stmt at any depth: the batch's steps). */
static void same_stmt(json_t *o, struct edge_jv v)
{
    same_string(o, v, "sql");
    same_int(o, v, "sql_id");
}

static int same_reading(const char *p, size_t len)
{
    json_t *j = json_loadb(p, len, 0, NULL);
    bool plain = edge__door_jv_plain(p, len);
    if (plain) assert_non_null(j); /* the plain subset is JSON for jansson */
    if (j == NULL) return 0;
    size_t i = 0, e = len;
    while (i < len && strchr(" \t\n\r", p[i]) && p[i]) i++;
    while (e > i && strchr(" \t\n\r", p[e - 1]) && p[e - 1]) e--;
    struct edge_jv msg = {p + i, e - i};
    assert_int_equal(edge__door_jv_is_object(msg), json_is_object(j));
    if (!json_is_object(j)) {
        json_decref(j);
        return 1;
    }
    const char *keys[] = {"type", "jwt", "bookmark", "request_id"};
    struct edge_jv all[4];
    edge__door_jv_members(msg, keys, 4, all); /* one pass finds what each lookup finds */
    for (size_t k = 0; k < 4; k++) {
        same_string(j, msg, keys[k]);
        same_int(j, msg, keys[k]);
        struct edge_jv one = edge__door_jv_get(msg, keys[k]);
        assert_true(all[k].p == one.p && all[k].len == one.len);
    }
    json_t *req = json_object_get(j, "request");
    struct edge_jv r = edge__door_jv_get(msg, "request");
    same_int(j, msg, "request");
    const char *rkeys[] = {"type", "sql", "stream_id", "sql_id", "cursor_id"};
    for (size_t k = 0; k < 5; k++) {
        same_string(req, r, rkeys[k]);
        same_int(req, r, rkeys[k]);
    }
    same_stmt(json_object_get(req, "stmt"), edge__door_jv_get(r, "stmt"));
    json_t *steps = json_object_get(json_object_get(req, "batch"), "steps");
    struct edge_jv vsteps = edge__door_jv_get(edge__door_jv_get(r, "batch"), "steps");
    size_t n = 0;
    for (struct edge_jv st = edge__door_jv_next(vsteps, (struct edge_jv){NULL, 0}); st.p != NULL;
         st = edge__door_jv_next(vsteps, st), n++) {
        json_t *jst = json_array_get(steps, n);
        assert_non_null(jst);
        assert_int_equal(edge__door_jv_is_object(st), json_is_object(jst));
        same_stmt(json_object_get(jst, "stmt"), edge__door_jv_get(st, "stmt"));
    }
    assert_int_equal(n, json_array_size(steps));
    json_decref(j);
    return 1;
}

static void test_ws_message_reading(void **state)
{
    (void)state;
    static const char *corpus[] = {
        "{\"type\":\"hello\",\"jwt\":\"eyJ.abc.def\"}",
        "{\"type\":\"hello\",\"jwt\":null}",
        "{\"type\":\"request\",\"request_id\":7,\"request\":{\"type\":\"open_stream\",\"stream_id\":3}}",
        "{\"type\":\"request\",\"request_id\":8,\"request\":{\"type\":\"execute\",\"stream_id\":3,\"stmt\":"
        "{\"sql_id\":12,\"args\":[],\"named_args\":[],\"want_rows\":true}}}",
        "{\"type\":\"request\",\"request_id\":9,\"request\":{\"type\":\"store_sql\",\"sql_id\":12,\"sql\":"
        "\"SELECT v FROM kv WHERE id = 5 /* 4 */\"}}",
        "{\"type\":\"request\",\"request_id\":10,\"request\":{\"type\":\"batch\",\"stream_id\":1,\"batch\":{\"steps\":"
        "[{\"stmt\":{\"sql\":\"BEGIN\"}},{\"condition\":{\"type\":\"ok\",\"step\":0},\"stmt\":{\"sql\":\"INSERT "
        "INTO t VALUES (1.5, -0, 0.25, true, false, null)\"}},{\"stmt\":{\"sql\":\"COMMIT\"}}]}},\"bookmark\":null}",
        /* escaped strings */
        "{\"type\":\"request\",\"request_id\":11,\"request\":{\"type\":\"execute\",\"stream_id\":1,\"stmt\":"
        "{\"sql\":\"SELECT '\\\"\\\\\\/\\b\\f\\n\\r\\t', 'caf\\u00e9 \\ud83d\\ude00 \\u20ac'\"}}}",
        "{\"t\\u0079pe\":\"re\\u0071uest\",\"request_id\":12,\"request\":{\"type\":\"exec\\u0075te\",\"stmt\":"
        "{\"s\\u0071l\":\"SELECT 1\"}}}",
        "{\"type\":\"request\",\"request_id\":13,\"request\":{\"type\":\"execute\",\"stmt\":{\"sql\":\"SELECT 'é€😀'\"}}}",
        /* duplicate keys: the last wins */
        "{\"type\":\"hello\",\"type\":\"request\",\"request_id\":1,\"request_id\":2,\"request\":{\"type\":\"close_stream\","
        "\"stream_id\":1,\"stream_id\":9}}",
        /* nested objects and arrays that hold the names the door looks for */
        "{\"x\":{\"type\":\"hello\",\"request_id\":5},\"y\":[\"type\",{\"sql\":\"x\"}],\"type\":\"request\","
        "\"request_id\":14,\"request\":{\"stmt\":{\"stmt\":{\"sql\":\"DELETE\"}},\"type\":\"execute\",\"z\":[[{}],[]]}}",
        /* numbers: huge, real, exponents, negative */
        "{\"type\":\"request\",\"request_id\":99999999999999999999,\"request\":{}}",
        "{\"type\":\"request\",\"request_id\":9223372036854775807,\"request\":{\"type\":\"open_stream\",\"stream_id\":-9223372036854775808}}",
        "{\"type\":\"request\",\"request_id\":123456789012345678,\"request\":{\"stream_id\":1e400}}",
        "{\"type\":\"request\",\"request_id\":1e3,\"request\":{\"stream_id\":1E-400}}",
        "{\"type\":\"request\",\"request_id\":1.0,\"request\":{\"stream_id\":-0.0}}",
        "{\"type\":\"request\",\"request_id\":-5,\"request\":{\"stream_id\":012}}",
        /* malformed */
        "{\"type\":\"request\",\"request_id\":1,\"request\":{\"type\":\"execute\"}",
        "{\"type\":\"request\",\"request_id\":1} x",
        "{\"type\":\"req\x01uest\"}",
        "{\"type\":\"\xff\xfe\"}",
        "{\"type\":\"\xc3\xa9\xe2\x82\"}",
        "{\"type\":\"\\ud800\"}",
        "{\"type\":\"\\udc00\\ud800\"}",
        "{\"type\":\"a\\u0000b\"}",
        "{\"type\":\"\\x\"}",
        "{\"type\":tru}",
        "{\"type\" \"hello\"}",
        "{\"type\":\"hello\",}",
        "{,}",
        "[{\"type\":\"hello\"}]",
        "\"hello\"",
        "17",
        "",
        "  {\"type\" : \"hello\" ,\n\t\"jwt\" : \"x\"\r\n}  ",
        "{}",
    };
    int valid = 0;
    for (size_t c = 0; c < sizeof(corpus) / sizeof(corpus[0]); c++) valid += same_reading(corpus[c], strlen(corpus[c]));
    assert_true(valid >= 15);
    /* deep nesting: jansson stops at 2048 levels */
    size_t dn = 2 * 3000 + 64;
    char *deep = malloc(dn);
    for (int depth = 30; depth <= 3000; depth += 990) {
        size_t n = (size_t)snprintf(deep, dn, "{\"type\":\"hello\",\"x\":");
        for (int k = 0; k < depth; k++) deep[n++] = '[';
        for (int k = 0; k < depth; k++) deep[n++] = ']';
        deep[n++] = '}';
        same_reading(deep, n);
    }
    free(deep);
    /* every corpus message mutated at each byte: replaced, dropped, cut */
    static const char repl[] = "\"\\{}[]:,0-.eu\x01\x80 9x";
    char *m = malloc(1024);
    uint32_t seed = 12345;
    size_t tried = 0;
    for (size_t c = 0; c < sizeof(corpus) / sizeof(corpus[0]); c++) {
        size_t n = strlen(corpus[c]);
        for (size_t at = 0; at < n && n < 1000; at++) {
            for (size_t k = 0; k < sizeof(repl) - 1; k++) {
                memcpy(m, corpus[c], n);
                m[at] = repl[k];
                same_reading(m, n);
                tried++;
            }
            memcpy(m, corpus[c], at);
            memcpy(m + at, corpus[c] + at + 1, n - at - 1);
            same_reading(m, n - 1);
            same_reading(corpus[c], at);
            seed = seed * 1103515245u + 12345u;
            memcpy(m, corpus[c], n);
            m[(seed >> 8) % n] = (char)(seed >> 16);
            same_reading(m, n);
            tried += 3;
        }
    }
    free(m);
    assert_true(tried > 10000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_member),
        cmocka_unit_test(test_ws_message_reading),
        cmocka_unit_test(test_pb_rows),
        cmocka_unit_test(test_ws_state),
        cmocka_unit_test(test_ws_send_failed),
        cmocka_unit_test(test_ws_bounds),
        cmocka_unit_test(test_ws_cursors_with_stream),
        cmocka_unit_test(test_ws_sql_replace),
        cmocka_unit_test(test_ws_pin_state),
        cmocka_unit_test(test_ws_duplicate_open),
        cmocka_unit_test(test_ws_duplicate_open_in_flight),
        cmocka_unit_test(test_ws_duplicate_open_cursor),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
