/* SPDX-License-Identifier: MIT */
/* libFuzzer driver for Hrana's protobuf codec (src/api/hrana/pb.c), both ways.
 *
 * DESIGN
 * An input that starts with '{' is a JSON pipeline response (what the encoder is fed:
 * our own results, or a primary's answer to a forwarded write): encoding must not crash,
 * and what it writes must unpack as a PipelineRespBody with as many results. Any other
 * input is a protobuf pipeline request: decoding must not crash; a decoded body that
 * validates is executed against a fresh in-memory database the way the HTTP path runs it
 * (the same fences as fuzz_api_hrana.c: no ATTACH, small values, 50 ms per statement),
 * and its JSON results are encoded back, which must succeed and unpack. The same bytes
 * also go through the cursor codec: as a CursorReqBody that, when valid, runs as a cursor
 * whose JSON entries must re-encode; as JSON cursor lines. The seed corpus
 * is what @libsql/hrana-client sent over protocol 3, plus two responses and cursor lines. */
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/hrana.h"
#include "api/hrana/hrana.pb-c.h"
#include "api/hrana/pb.h"
#include "core/buf.h"
#include "store/store.h"

#define OUT_MAX (256 * 1024)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct edge_store_conn *open_db(void)
{
    static bool inited;
    char err[256];
    if (!inited) {
        if (edge_store_global_init(err, sizeof(err)) != EDGE_OK) abort();
        inited = true;
    }
    struct edge_store_conn *c = NULL;
    if (edge_store_open(":memory:", EDGE_STORE_WRITE, false, 0, &c, err, sizeof(err)) != EDGE_OK) abort();
    sqlite3 *db = edge_store_db(c);
    sqlite3_limit(db, SQLITE_LIMIT_ATTACHED, 0);
    sqlite3_limit(db, SQLITE_LIMIT_LENGTH, 64 * 1024);
    sqlite3_limit(db, SQLITE_LIMIT_SQL_LENGTH, 64 * 1024);
    if (sqlite3_exec(db, "CREATE TABLE t(id INTEGER PRIMARY KEY, v);INSERT INTO t VALUES (1,'x'),(2,x'00ff');", NULL,
                     NULL, NULL) != SQLITE_OK) {
        abort();
    }
    return c;
}

/* Encode a JSON response; when the encoder accepts it, its output must read back. */
static void encode_check(const char *json, size_t len, bool must_succeed)
{
    struct edge_buf out;
    edge_buf_init(&out, OUT_MAX * 4);
    int rv = hrana_pb_encode_pipeline(json, len, &out);
    if (rv == EDGE_OK) {
        Hpb__PipelineResp *m = hpb__pipeline_resp__unpack(NULL, out.len, (const uint8_t *)out.data);
        json_t *doc = json_loadb(json, len, JSON_ALLOW_NUL, NULL);
        /* The reader may take a little more than strict JSON (a leading '+'); where jansson
         * reads it too, both must see the same results. */
        if (m == NULL || (doc != NULL && m->n_results != json_array_size(json_object_get(doc, "results")))) abort();
        json_decref(doc);
        hpb__pipeline_resp__free_unpacked(m, NULL);
    } else if (must_succeed && rv != EDGE_ETOOBIG) {
        abort(); /* our own results must always be encodable */
    }
    edge_buf_free(&out);
}

static void run_pipeline(json_t *body)
{
    json_t *reqs = json_object_get(body, "requests");
    struct edge_store_conn *conn = open_db();
    struct hrana_sqlmap sqls;
    hrana_sqlmap_init(&sqls, HRANA_MAX_SQL_PER_STREAM);
    struct hrana_tables tables = {.n = 0};
    (void)hrana_classify(reqs, json_array_size(reqs), conn, &sqls, false, &tables);
    struct hrana_ctx ctx = {.conn = conn, .sqls = &sqls, .access = HRANA_ACCESS_RW, .version = 3, .budget_ms = 50};
    struct edge_buf out;
    edge_buf_init(&out, OUT_MAX);
    int rv = edge_buf_puts(&out, "{\"baton\":null,\"base_url\":null,\"results\":[");
    size_t i;
    json_t *r;
    json_array_foreach(reqs, i, r) {
        if (rv != EDGE_OK) break;
        if (i > 0) rv = edge_buf_putc(&out, ',');
        if (rv == EDGE_OK) rv = hrana_execute_request(&ctx, r, HRANA_WRAP_HTTP, 0, &out);
    }
    if (rv == EDGE_OK) rv = edge_buf_puts(&out, "]}");
    if (rv == EDGE_OK) encode_check(out.data, out.len, true);
    edge_buf_free(&out);
    hrana_sqlmap_free(&sqls);
    edge_store_close(conn);
}

/* A decoded, valid CursorReqBody runs as a cursor (JSON entries, as POST /v3/cursor
 * writes them after its first line); the lines re-encode as protobuf. */
static void run_cursor(json_t *body)
{
    struct edge_store_conn *conn = open_db();
    struct hrana_sqlmap sqls;
    hrana_sqlmap_init(&sqls, HRANA_MAX_SQL_PER_STREAM);
    struct hrana_ctx ctx = {.conn = conn, .sqls = &sqls, .access = HRANA_ACCESS_RW, .version = 3, .budget_ms = 50};
    struct edge_buf out;
    edge_buf_init(&out, OUT_MAX);
    if (edge_buf_puts(&out, "{\"baton\":null,\"base_url\":null}\n") == EDGE_OK) {
        struct hrana_cursor_json j;
        hrana_cursor_json_init(&j, &out);
        struct hrana_cursor_enc enc = hrana_cursor_json_enc(&j);
        if (hrana_cursor_run(&ctx, json_object_get(body, "batch"), &enc) == EDGE_OK) {
            struct edge_buf pb;
            edge_buf_init(&pb, OUT_MAX * 4);
            int rv = hrana_pb_encode_cursor(out.data, out.len, &pb);
            if (rv != EDGE_OK && rv != EDGE_ETOOBIG) abort(); /* our own entries must encode */
            edge_buf_free(&pb);
        }
        hrana_cursor_json_free(&j);
    }
    edge_buf_free(&out);
    hrana_sqlmap_free(&sqls);
    edge_store_close(conn);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 64 * 1024) return 0;
    if (size > 0 && data[0] == '{') {
        encode_check((const char *)data, size, false);
        /* The same bytes as a cursor's JSON lines. */
        struct edge_buf out;
        edge_buf_init(&out, OUT_MAX * 4);
        if (hrana_pb_encode_cursor((const char *)data, size, &out) != EDGE_OK && out.len != 0) abort();
        edge_buf_free(&out);
        return 0;
    }
    json_t *body = NULL;
    char err[256];
    /* The same bytes as a CursorReqBody. */
    if (hrana_pb_decode_cursor(data, size, &body, err, sizeof(err)) == EDGE_OK) {
        if (!json_is_object(json_object_get(body, "batch"))) abort();
        if (hrana_validate_cursor(body, err, sizeof(err)) == EDGE_OK) run_cursor(body);
        json_decref(body);
        body = NULL;
    }
    if (hrana_pb_decode_pipeline(data, size, &body, err, sizeof(err)) != EDGE_OK) {
        if (body != NULL || err[0] == '\0') abort(); /* a failure says why and leaves nothing */
        return 0;
    }
    if (hrana_validate_pipeline(body, 3, err, sizeof(err)) == EDGE_OK) run_pipeline(body);
    json_decref(body);
    return 0;
}
