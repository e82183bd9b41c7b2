/* SPDX-License-Identifier: MIT */
/* libFuzzer driver for the Hrana decoder: arbitrary bytes are parsed as JSON and
 * pushed through validation (pipeline v2/v3, single WebSocket requests, cursor bodies), routing and,
 * when the validator accepts them, execution against a small SQLite database.
 *
 * DESIGN
 * The validator's promise is that whatever it accepts can be executed without
 * crashing, so execution runs only on accepted input, exactly as node.c does. Each
 * input gets a fresh in-memory database so that a crash reproduces from its input
 * alone (no state carried over from earlier inputs). Fuzzed SQL is fenced in: no
 * ATTACH (and so no VACUUM INTO, which attaches internally) to keep it off the file
 * system, a small value-length limit so zeroblob()/printf() cannot eat the RSS limit,
 * and a 50 ms budget per statement so recursive CTEs end. */
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/hrana.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "store/store.h"

#define OUT_MAX (256 * 1024)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct edge_store_conn *open_db(void)
{
    static bool inited;
    char err[256];
    if (!inited) {
        if (edge_store_global_init(err, sizeof(err)) != EDGE_OK) {
            abort();
        }
        inited = true;
    }
    struct edge_store_conn *c = NULL;
    if (edge_store_open(":memory:", EDGE_STORE_WRITE, false, 0, &c, err, sizeof(err)) != EDGE_OK) {
        abort();
    }
    sqlite3 *db = edge_store_db(c);
    sqlite3_limit(db, SQLITE_LIMIT_ATTACHED, 0);
    sqlite3_limit(db, SQLITE_LIMIT_LENGTH, 64 * 1024);
    sqlite3_limit(db, SQLITE_LIMIT_SQL_LENGTH, 64 * 1024);
    if (sqlite3_exec(db,
                     /* the schema of the captured client session (seed corpus) */
                     "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT NOT NULL, age INTEGER, score REAL,"
                     " avatar BLOB, note TEXT);"
                     "INSERT INTO users VALUES (1,'alice',30,9.5,x'010203ff',NULL),(2,'bob',NULL,1e300,NULL,'n');",
                     NULL, NULL, NULL) != SQLITE_OK) {
        abort();
    }
    return c;
}

/* Execute an accepted pipeline the way the HTTP path does, then check the output is
 * well-formed JSON (the writers are hand-rolled, so this is worth asserting). */
static void run_pipeline(json_t *reqs, int version)
{
    struct edge_store_conn *conn = open_db();
    struct hrana_sqlmap sqls;
    hrana_sqlmap_init(&sqls, HRANA_MAX_SQL_PER_STREAM);
    struct hrana_tables tables = {.n = 0};
    (void)hrana_classify(reqs, json_array_size(reqs), conn, &sqls, false, &tables);
    struct hrana_ctx ctx = {
        .conn = conn, .sqls = &sqls, .access = HRANA_ACCESS_RW, .version = version, .budget_ms = 50};
    struct edge_buf out;
    edge_buf_init(&out, OUT_MAX);
    int rv = edge_buf_putc(&out, '[');
    size_t i;
    json_t *r;
    json_array_foreach(reqs, i, r) {
        if (rv != EDGE_OK) {
            break;
        }
        if (i > 0) {
            rv = edge_buf_putc(&out, ',');
        }
        if (rv == EDGE_OK) {
            rv = hrana_execute_request(&ctx, r, HRANA_WRAP_HTTP, 0, &out);
        }
    }
    if (rv == EDGE_OK) {
        rv = edge_buf_putc(&out, ']');
    }
    if (rv == EDGE_OK) {
        json_error_t jerr;
        json_t *parsed = json_loadb(out.data, out.len, JSON_ALLOW_NUL, &jerr);
        if (parsed == NULL || json_array_size(parsed) != json_array_size(reqs)) {
            abort(); /* the result writer produced something that is not the expected JSON */
        }
        json_decref(parsed);
    }
    edge_buf_free(&out);
    hrana_sqlmap_free(&sqls);
    edge_store_close(conn);
}

/* A single WebSocket request, as the WS session would run it. */
static void run_ws_request(json_t *req)
{
    struct edge_store_conn *conn = open_db();
    struct hrana_sqlmap sqls;
    hrana_sqlmap_init(&sqls, HRANA_MAX_SQL_PER_WS);
    (void)hrana_classify(req, 1, conn, &sqls, false, NULL);
    struct hrana_ctx ctx = {.conn = conn, .sqls = &sqls, .access = HRANA_ACCESS_RO, .version = 3, .budget_ms = 50};
    struct edge_buf out;
    edge_buf_init(&out, OUT_MAX);
    (void)hrana_execute_request(&ctx, req, HRANA_WRAP_WS, 7, &out);
    edge_buf_free(&out);
    hrana_sqlmap_free(&sqls);
    edge_store_close(conn);
}

/* A POST /v3/cursor body, run as a cursor: every entry must be one JSON object. */
static void run_cursor(json_t *body)
{
    struct edge_store_conn *conn = open_db();
    struct hrana_sqlmap sqls;
    hrana_sqlmap_init(&sqls, HRANA_MAX_SQL_PER_STREAM);
    struct hrana_ctx ctx = {.conn = conn, .sqls = &sqls, .access = HRANA_ACCESS_RW, .version = 3, .budget_ms = 50};
    struct edge_buf out;
    edge_buf_init(&out, OUT_MAX);
    struct hrana_cursor_json j;
    hrana_cursor_json_init(&j, &out);
    struct hrana_cursor_enc enc = hrana_cursor_json_enc(&j);
    if (hrana_cursor_run(&ctx, json_object_get(body, "batch"), &enc) == EDGE_OK) {
        for (size_t i = 0; i < j.n; i++) {
            size_t len = 0;
            const char *e = hrana_cursor_json_entry(&j, i, &len);
            json_t *parsed = json_loadb(e, len, JSON_ALLOW_NUL, NULL);
            if (!json_is_object(parsed) || memchr(e, '\n', len) != NULL) {
                abort(); /* an entry that is not one line of JSON */
            }
            json_decref(parsed);
        }
    }
    hrana_cursor_json_free(&j);
    edge_buf_free(&out);
    hrana_sqlmap_free(&sqls);
    edge_store_close(conn);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 64 * 1024) {
        return 0;
    }
    json_error_t jerr;
    json_t *body = json_loadb((const char *)data, size, JSON_DECODE_ANY, &jerr);
    if (body == NULL) {
        return 0;
    }
    char err[256];
    bool ok2 = hrana_validate_pipeline(body, 2, err, sizeof(err)) == EDGE_OK;
    bool ok3 = hrana_validate_pipeline(body, 3, err, sizeof(err)) == EDGE_OK;
    if (ok2 && !ok3) {
        abort(); /* v3 is a superset of v2 */
    }
    if (ok3) {
        run_pipeline(json_object_get(body, "requests"), ok2 ? 2 : 3);
    }
    /* The same bytes as one WebSocket request, and each pipeline entry as one too. */
    if (hrana_validate_request(body, 3, true, err, sizeof(err)) == EDGE_OK) {
        run_ws_request(body);
    }
    if (hrana_validate_cursor(body, err, sizeof(err)) == EDGE_OK) {
        run_cursor(body);
    }
    json_t *reqs = json_object_get(body, "requests");
    size_t i;
    json_t *r;
    json_array_foreach(reqs, i, r) {
        if (i >= 4) {
            break;
        }
        (void)hrana_validate_request(r, 2, true, err, sizeof(err));
    }
    json_decref(body);
    return 0;
}
