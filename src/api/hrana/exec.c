/* SPDX-License-Identifier: MIT */
/* Hrana requests: execution (see hrana.h); the replication hooks around each statement
 * are in exec_repl.c. */
#include "api/hrana/hrana_int.h"
#include "api/hrana/exec_repl.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/alloc.h"
#include "store/sql.h"

/* ---------------------------------------------------------------------------------- */
/* Execution                                                                          */
/* ---------------------------------------------------------------------------------- */

void hrana__set_err(struct stmt_error *e, const char *code, const char *fmt, const char *a)
{
    e->code = code;
    snprintf(e->message, sizeof(e->message), fmt, a);
}

void hrana__set_sqlite_err(struct stmt_error *e, struct hrana_ctx *ctx, int rc)
{
    sqlite3 *db = edge_store_db(ctx->conn);
    if ((rc & 0xff) == SQLITE_INTERRUPT && edge_store_budget_hit(ctx->conn)) {
        e->code = "QUERY_TIMEOUT";
        snprintf(e->message, sizeof(e->message), "statement exceeded the time budget of %" PRIu64 " ms",
                 ctx->budget_ms);
        return;
    }
    const char *msg = sqlite3_errmsg(db);
    e->code = edge_store_code_name(rc);
    if (edge_store_sandboxed(ctx->conn) && edge_store_refusal(ctx->conn)[0] != '\0') {
        msg = edge_store_refusal(ctx->conn);
        e->code = "SQLITE_AUTH";
    }
    snprintf(e->message, sizeof(e->message), "%s", msg);
}

static bool is_parse_error(const char *msg)
{
    return strstr(msg, "syntax error") != NULL || strstr(msg, "unrecognized token") != NULL ||
           strstr(msg, "incomplete input") != NULL;
}

/* Parse a decimal int64 exactly (no junk, no overflow). */
bool hrana__parse_i64(const char *s, int64_t *out)
{
    if (s == NULL || *s == '\0') return false;
    errno = 0;
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0') return false;
    *out = v;
    return true;
}

static int bind_value(sqlite3_stmt *st, int idx, json_t *v, struct stmt_error *e)
{
    const char *t = json_string_value(json_object_get(v, "type"));
    json_t *val = json_object_get(v, "value");
    int rc;
    if (strcmp(t, "null") == 0) {
        rc = sqlite3_bind_null(st, idx);
    } else if (strcmp(t, "integer") == 0) {
        int64_t i;
        if (json_is_integer(val)) {
            i = json_integer_value(val);
        } else if (!hrana__parse_i64(json_string_value(val), &i)) {
            hrana__set_err(e, "ARGS_INVALID", "invalid integer value '%s'", json_string_value(val));
            return -1;
        }
        rc = sqlite3_bind_int64(st, idx, i);
    } else if (strcmp(t, "float") == 0) {
        rc = sqlite3_bind_double(st, idx, json_number_value(val));
    } else if (strcmp(t, "text") == 0) {
        rc = sqlite3_bind_text64(st, idx, json_string_value(val), json_string_length(val), SQLITE_TRANSIENT,
                                 SQLITE_UTF8);
    } else {
        json_t *b64 = json_object_get(v, "base64");
        uint8_t *bytes = NULL;
        size_t n = 0;
        if (edge_base64_decode(json_string_value(b64), json_string_length(b64), &bytes, &n) != EDGE_OK) {
            hrana__set_err(e, "ARGS_INVALID", "%sinvalid base64 in blob value", "");
            return -1;
        }
        rc = sqlite3_bind_blob64(st, idx, bytes, n, edge_free);
    }
    if (rc != SQLITE_OK) {
        hrana__set_err(e, edge_store_code_name(rc), "cannot bind argument: %s", sqlite3_errstr(rc));
        return -1;
    }
    return 0;
}

static int bind_args(sqlite3_stmt *st, json_t *stmt, struct stmt_error *e)
{
    json_t *args = json_object_get(stmt, "args");
    json_t *named = json_object_get(stmt, "named_args");
    size_t n_args = json_array_size(args);
    int count = sqlite3_bind_parameter_count(st);
    if (n_args > (size_t)count) {
        char m[64];
        snprintf(m, sizeof(m), "%zu", n_args);
        hrana__set_err(e, "ARGS_INVALID", "%s arguments given but the statement has fewer parameters", m);
        return -1;
    }
    for (int i = 1; i <= count; i++) {
        const char *nm = sqlite3_bind_parameter_name(st, i);
        json_t *v = NULL;
        if (nm == NULL) {
            v = json_array_get(args, (size_t)i - 1);
        } else if (nm[0] == '?') {
            long k = strtol(nm + 1, NULL, 10);
            v = k >= 1 ? json_array_get(args, (size_t)k - 1) : NULL;
        } else {
            size_t j;
            json_t *na;
            json_array_foreach(named, j, na) {
                if (strcmp(json_string_value(json_object_get(na, "name")), nm) == 0) {
                    v = json_object_get(na, "value");
                    break;
                }
            }
            if (v == NULL) {
                json_array_foreach(named, j, na) {
                    if (strcmp(json_string_value(json_object_get(na, "name")), nm + 1) == 0) {
                        v = json_object_get(na, "value");
                        break;
                    }
                }
            }
        }
        if (v == NULL) {
            char idx[32];
            snprintf(idx, sizeof(idx), "%d", i);
            hrana__set_err(e, "ARGS_INVALID", nm ? "no value for parameter %s" : "no value for parameter #%s",
                    nm ? nm : idx);
            return -1;
        }
        if (bind_value(st, i, v, e) != 0) {
            return -1;
        }
    }
    return 0;
}

int hrana__write_value(struct edge_buf *out, sqlite3_stmt *st, int col)
{
    int rv = EDGE_OK;
    switch (sqlite3_column_type(st, col)) {
    case SQLITE_INTEGER: {
        char num[64];
        int n = snprintf(num, sizeof(num), "{\"type\":\"integer\",\"value\":\"%lld\"}",
                         (long long)sqlite3_column_int64(st, col));
        rv = edge_buf_append(out, num, (size_t)n);
        break;
    }
    case SQLITE_FLOAT:
        rv = edge_buf_puts(out, "{\"type\":\"float\",\"value\":");
        if (rv == EDGE_OK) rv = edge_buf_json_double(out, sqlite3_column_double(st, col));
        if (rv == EDGE_OK) rv = edge_buf_putc(out, '}');
        break;
    case SQLITE_TEXT: {
        const char *s = (const char *)sqlite3_column_text(st, col);
        int n = sqlite3_column_bytes(st, col);
        rv = edge_buf_puts(out, "{\"type\":\"text\",\"value\":");
        if (rv == EDGE_OK) rv = edge_buf_json_str(out, s ? s : "", (size_t)n);
        if (rv == EDGE_OK) rv = edge_buf_putc(out, '}');
        break;
    }
    case SQLITE_BLOB: {
        const void *p = sqlite3_column_blob(st, col);
        int n = sqlite3_column_bytes(st, col);
        rv = edge_buf_puts(out, "{\"type\":\"blob\",\"base64\":\"");
        if (rv == EDGE_OK) rv = edge_buf_base64(out, p, (size_t)n);
        if (rv == EDGE_OK) rv = edge_buf_puts(out, "\"}");
        break;
    }
    default:
        rv = edge_buf_puts(out, "{\"type\":\"null\"}");
    }
    return rv;
}

int hrana__write_cols(struct edge_buf *out, sqlite3_stmt *st)
{
    int rv = edge_buf_puts(out, "\"cols\":[");
    int n = sqlite3_column_count(st);
    for (int i = 0; i < n && rv == EDGE_OK; i++) {
        if (i > 0) rv = edge_buf_putc(out, ',');
        if (rv == EDGE_OK) rv = edge_buf_puts(out, "{\"name\":");
        if (rv == EDGE_OK) rv = edge_buf_json_cstr(out, sqlite3_column_name(st, i));
        if (rv == EDGE_OK) rv = edge_buf_puts(out, ",\"decltype\":");
        if (rv == EDGE_OK) rv = edge_buf_json_cstr(out, sqlite3_column_decltype(st, i));
        if (rv == EDGE_OK) rv = edge_buf_putc(out, '}');
    }
    if (rv == EDGE_OK) rv = edge_buf_putc(out, ']');
    return rv;
}

static bool stmt_is_insert(sqlite3_stmt *st)
{
    const char *s = sqlite3_sql(st);
    while (s != NULL && (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r' || *s == '(')) s++;
    return s != NULL && (strncasecmp(s, "INSERT", 6) == 0 || strncasecmp(s, "REPLACE", 7) == 0 ||
                         strncasecmp(s, "WITH", 4) == 0);
}


/* After a statement on a transaction connection: keep PRAGMA query_only in step with a
 * BEGIN ... READONLY transaction (stock SQLite reads READONLY as a transaction name). */
static void sync_readonly(struct hrana_ctx *ctx)
{
    sqlite3 *db = edge_store_db(ctx->conn);
    if (ctx->readonly_txn && sqlite3_get_autocommit(db)) {
        bool was = hrana__own_begin(ctx);
        sqlite3_exec(db, "PRAGMA query_only=0", NULL, NULL, NULL);
        hrana__own_end(ctx, was);
        ctx->readonly_txn = false;
    }
}


/* The StmtResult JSON of execute and batch, as a result sink. */
struct stmt_json {
    struct edge_buf *out;
    uint64_t n;
};

static int sj_begin(void *ud, sqlite3_stmt *st)
{
    struct stmt_json *j = ud;
    int rv = edge_buf_putc(j->out, '{');
    if (rv == EDGE_OK) rv = hrana__write_cols(j->out, st);
    if (rv == EDGE_OK) rv = edge_buf_puts(j->out, ",\"rows\":[");
    return rv;
}

static int sj_row(void *ud, sqlite3_stmt *st)
{
    struct stmt_json *j = ud;
    int rv = j->n++ > 0 ? edge_buf_putc(j->out, ',') : EDGE_OK;
    if (rv == EDGE_OK) rv = edge_buf_putc(j->out, '[');
    int ncol = sqlite3_column_count(st);
    for (int c = 0; c < ncol && rv == EDGE_OK; c++) {
        if (c > 0) rv = edge_buf_putc(j->out, ',');
        if (rv == EDGE_OK) rv = hrana__write_value(j->out, st, c);
    }
    if (rv == EDGE_OK) rv = edge_buf_putc(j->out, ']');
    return rv;
}

static int sj_end(void *ud, int64_t affected, bool has_rowid, int64_t rowid, uint64_t rows_read)
{
    struct stmt_json *j = ud;
    char rid[32] = "null";
    if (has_rowid) snprintf(rid, sizeof(rid), "\"%lld\"", (long long)rowid);
    return edge_buf_printf(j->out,
                           "],\"affected_row_count\":%lld,\"last_insert_rowid\":%s,\"rows_read\":%llu,"
                           "\"rows_written\":%lld}",
                           (long long)affected, rid, (unsigned long long)rows_read, (long long)affected);
}

static size_t sj_mark(void *ud)
{
    return ((struct stmt_json *)ud)->out->len;
}

static void sj_rewind(void *ud, size_t mark)
{
    struct edge_buf *out = ((struct stmt_json *)ud)->out;
    out->len = mark;
    if (out->data) out->data[mark] = '\0';
}

static int run_stmt(struct hrana_ctx *ctx, json_t *stmt, struct edge_buf *out, struct stmt_error *e)
{
    struct stmt_json j = {out, 0};
    const struct hrana__rows rows = {sj_begin, sj_row, sj_end, sj_mark, sj_rewind, &j};
    return hrana__run_stmt(ctx, stmt, &rows, e);
}

static uint64_t stmt_clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int hrana__run_stmt(struct hrana_ctx *ctx, json_t *stmt, const struct hrana__rows *rs, struct stmt_error *e)
{
    size_t len = 0;
    const char *sql = hrana__stmt_sql(stmt, ctx->sqls, &len);
    size_t mark = rs->mark(rs->ud);
    sqlite3_stmt *st = NULL;
    int ret = -1;
    enum edge_txctl tx = EDGE_TXCTL_NONE;
    struct edge_ids_result ids = {0};
    bool ids_on = false;
    uint64_t nrows = 0;
    uint64_t t0 = ctx->on_stmt != NULL ? stmt_clock_ns() : 0;
    ctx->stmts++;
    if (sql == NULL) {
        char id[32];
        snprintf(id, sizeof(id), "%lld", (long long)json_integer_value(json_object_get(stmt, "sql_id")));
        hrana__set_err(e, "SQL_NOT_FOUND", "no stored SQL with id %s", id);
        goto out;
    }
    tx = edge_store_txctl(sql, len);
    sqlite3 *db = edge_store_db(ctx->conn);
    if (tx == EDGE_TXCTL_BEGIN_READONLY && sqlite3_get_autocommit(db)) {
        bool was = hrana__own_begin(ctx);
        sqlite3_exec(db, "PRAGMA query_only=1", NULL, NULL, NULL);
        hrana__own_end(ctx, was);
        ctx->readonly_txn = true;
    }
    size_t tail = 0;
    /* Not inside BEGIN ... READONLY: no statement there can insert, and query_only would
     * refuse the TEMP triggers that syncing them may create. */
    if (ctx->capture != NULL && tx == EDGE_TXCTL_NONE && ctx->access != HRANA_ACCESS_RO && !ctx->readonly_txn) {
        /* Before prepare: an INSERT compiles the id-striping triggers in (repl/ids.c).
         * They are edgelite's own TEMP objects: made outside the sandbox. */
        bool was = hrana__own_begin(ctx);
        int irv = edge_capture_ids_before(ctx->capture, sql, len);
        hrana__own_end(ctx, was);
        if (irv != EDGE_OK) {
            if (sqlite3_errcode(db) != SQLITE_OK) {
                hrana__set_sqlite_err(e, ctx, sqlite3_errcode(db));
            } else { /* never "SQLITE_OK: not an error" */
                hrana__set_err(e, "INTERNAL_ERROR", "cannot prepare the id-striping triggers: %s", edge_strerror(irv));
            }
            goto out;
        }
        ids_on = true;
    }
    edge_store_set_budget(ctx->conn, ctx->budget_ms);
    int rc = edge_store_prepare(ctx->conn, sql, len, &st, &tail);
    if (rc != SQLITE_OK) {
        hrana__set_sqlite_err(e, ctx, rc);
        if (is_parse_error(e->message)) e->code = "SQL_PARSE_ERROR";
        goto out;
    }
    if (st == NULL) {
        hrana__set_err(e, "SQL_NO_STATEMENT", "%sno SQL statement given", "");
        goto out;
    }
    /* Anything after the statement other than whitespace, comments and ';' is a second one. */
    for (size_t i = tail; i < len; i++) {
        char c = sql[i];
        if (c == ';' || c == ' ' || c == '\n' || c == '\t' || c == '\r') continue;
        sqlite3_stmt *next = NULL;
        size_t t2 = 0;
        int rc2 = edge_store_prepare_once(ctx->conn, sql + i, len - i, &next, NULL);
        (void)t2;
        bool more = rc2 != SQLITE_OK || next != NULL;
        sqlite3_finalize(next);
        if (more) {
            hrana__set_err(e, "SQL_MANY_STATEMENTS", "%sonly one SQL statement is allowed here", "");
            goto out;
        }
        break;
    }
    if (ctx->access == HRANA_ACCESS_RO && !sqlite3_stmt_readonly(st)) {
        hrana__set_err(e, "AUTH_READ_ONLY", "%swrites are not allowed with a read-only token", "");
        goto out;
    }
    if (bind_args(st, stmt, e) != 0) {
        goto out;
    }
    struct hrana__rx x;
    if (hrana__repl_pre(ctx, st, tx, &x, e) != 0) {
        goto out;
    }
    json_t *wr = json_object_get(stmt, "want_rows");
    bool want_rows = !json_is_false(wr);
    sqlite3_int64 changes_before = sqlite3_total_changes64(db);
    int wrv = rs->begin(rs->ud, st);
    if (wrv == EDGE_OK) rc = edge_store_step(ctx->conn, st);
    while (wrv == EDGE_OK && rc == SQLITE_ROW) {
        nrows++;
        if (want_rows) wrv = rs->row(rs->ud, st);
        if (wrv == EDGE_OK) rc = sqlite3_step(st);
    }
    if (wrv != EDGE_OK) {
        rs->rewind(rs->ud, mark);
        hrana__set_err(e, "RESPONSE_TOO_LARGE", "%sthe result is too large", "");
        sqlite3_reset(st);
        hrana__repl_post(ctx, st, tx, false, &x, e);
        ret = -1;
        goto out;
    }
    if (rc != SQLITE_DONE) {
        hrana__set_sqlite_err(e, ctx, rc);
        sqlite3_reset(st);
        hrana__repl_post(ctx, st, tx, false, &x, e);
        goto out;
    }
    sqlite3_int64 changes_now = sqlite3_changes64(db);
    if (ids_on) {
        /* Rows the striping triggers inserted in place of the statement's own: count
         * them, and give RETURNING its rows for them. */
        bool was_sb = hrana__own_begin(ctx);
        edge_capture_ids_after(ctx->capture, &ids);
        hrana__own_end(ctx, was_sb);
        ids_on = false;
        changes_now += (sqlite3_int64)ids.assigned;
        if (ids.returning_sql != NULL) {
            sqlite3_stmt *sel = NULL;
            if (sqlite3_prepare_v2(db, ids.returning_sql, -1, &sel, NULL) == SQLITE_OK &&
                sqlite3_column_count(sel) == sqlite3_column_count(st)) {
                for (uint64_t k = 0; k < ids.assigned && wrv == EDGE_OK; k++) {
                    sqlite3_bind_int64(sel, 1, ids.ids[k]);
                    while (wrv == EDGE_OK && sqlite3_step(sel) == SQLITE_ROW) {
                        nrows++;
                        if (want_rows) wrv = rs->row(rs->ud, sel);
                    }
                    sqlite3_reset(sel);
                }
            }
            sqlite3_finalize(sel);
            edge_free(ids.returning_sql);
            ids.returning_sql = NULL;
            if (wrv != EDGE_OK) {
                rs->rewind(rs->ud, mark);
                hrana__set_err(e, "RESPONSE_TOO_LARGE", "%sthe result is too large", "");
                hrana__repl_post(ctx, st, tx, false, &x, e);
                goto out;
            }
        }
    }
    bool changed_now = sqlite3_total_changes64(db) != changes_before;
    if (hrana__repl_post(ctx, st, tx, true, &x, e) != 0) {
        goto out;
    }
    bool changed = changed_now;
    bool ro = sqlite3_stmt_readonly(st) != 0;
    bool has_rowid = !ro && stmt_is_insert(st);
    if (rs->end(rs->ud, changed ? (int64_t)changes_now : 0, has_rowid, has_rowid ? sqlite3_last_insert_rowid(db) : 0,
                ro ? nrows : 0) != EDGE_OK) {
        hrana__set_err(e, "RESPONSE_TOO_LARGE", "%sthe result is too large", "");
        goto out;
    }
    ctx->rows += nrows;
    ret = 0;
out:
    if (ids_on) {
        bool was_sb = hrana__own_begin(ctx);
        edge_capture_ids_after(ctx->capture, &ids); /* the statement failed: forget its ids */
        hrana__own_end(ctx, was_sb);
        edge_free(ids.returning_sql);
    }
    if (ret != 0) {
        ctx->errors++;
        rs->rewind(rs->ud, mark);
    }
    if (ctx->on_stmt != NULL && sql != NULL) {
        ctx->on_stmt(ctx->stmt_ud, sql, len, stmt_clock_ns() - t0, ret == 0 ? nrows : 0, ret != 0);
    }
    edge_store_release(ctx->conn, st);
    /* The budget is for this statement only: work that follows on the connection (the
     * writer's commit, replication) must not inherit its deadline. */
    edge_store_set_budget(ctx->conn, 0);
    if (tx != EDGE_TXCTL_NONE || ctx->readonly_txn) {
        sync_readonly(ctx);
    }
    return ret;
}

int hrana_write_error(struct edge_buf *out, const char *message, const char *code)
{
    int rv = edge_buf_puts(out, "{\"message\":");
    if (rv == EDGE_OK) rv = edge_buf_json_cstr(out, message);
    if (rv == EDGE_OK && code != NULL) {
        rv = edge_buf_puts(out, ",\"code\":");
        if (rv == EDGE_OK) rv = edge_buf_json_cstr(out, code);
    }
    if (rv == EDGE_OK) rv = edge_buf_putc(out, '}');
    return rv;
}

int hrana_write_response_error(struct edge_buf *out, int64_t request_id, const char *message, const char *code)
{
    int rv = edge_buf_printf(out, "{\"type\":\"response_error\",\"request_id\":%lld,\"error\":",
                             (long long)request_id);
    if (rv == EDGE_OK) rv = hrana_write_error(out, message, code);
    if (rv == EDGE_OK) rv = edge_buf_putc(out, '}');
    return rv;
}

bool hrana__eval_cond(json_t *c, const signed char *state, struct hrana_ctx *ctx)
{
    const char *t = json_string_value(json_object_get(c, "type"));
    if (strcmp(t, "ok") == 0) return state[json_integer_value(json_object_get(c, "step"))] == 1;
    if (strcmp(t, "error") == 0) return state[json_integer_value(json_object_get(c, "step"))] == -1;
    if (strcmp(t, "not") == 0) return !hrana__eval_cond(json_object_get(c, "cond"), state, ctx);
    if (strcmp(t, "and") == 0 || strcmp(t, "or") == 0) {
        bool is_and = t[0] == 'a';
        size_t i;
        json_t *x;
        json_array_foreach(json_object_get(c, "conds"), i, x) {
            bool v = hrana__eval_cond(x, state, ctx);
            if (is_and && !v) return false;
            if (!is_and && v) return true;
        }
        return is_and;
    }
    return ctx->shared_snapshot || sqlite3_get_autocommit(edge_store_db(ctx->conn)) != 0; /* is_autocommit */
}

static int run_batch(struct hrana_ctx *ctx, json_t *batch, struct edge_buf *out)
{
    json_t *steps = json_object_get(batch, "steps");
    size_t n = json_array_size(steps);
    signed char *state = edge_calloc(n + 1, 1); /* 0 skipped, 1 ok, -1 error */
    struct edge_buf errs;
    edge_buf_init(&errs, out->max);
    int rv = state ? EDGE_OK : EDGE_ENOMEM;
    if (rv == EDGE_OK) rv = edge_buf_puts(out, "{\"step_results\":[");
    if (rv == EDGE_OK) rv = edge_buf_putc(&errs, '[');
    for (size_t i = 0; i < n && rv == EDGE_OK; i++) {
        json_t *step = json_array_get(steps, i);
        json_t *cond = json_object_get(step, "condition");
        if (i > 0) {
            rv = edge_buf_putc(out, ',');
            if (rv == EDGE_OK) rv = edge_buf_putc(&errs, ',');
            if (rv != EDGE_OK) break;
        }
        if (cond != NULL && !json_is_null(cond) && !hrana__eval_cond(cond, state, ctx)) {
            rv = edge_buf_puts(out, "null");
            if (rv == EDGE_OK) rv = edge_buf_puts(&errs, "null");
            continue;
        }
        struct stmt_error e;
        if (run_stmt(ctx, json_object_get(step, "stmt"), out, &e) == 0) {
            state[i] = 1;
            rv = edge_buf_puts(&errs, "null");
        } else {
            state[i] = -1;
            rv = edge_buf_puts(out, "null");
            if (rv == EDGE_OK) rv = hrana_write_error(&errs, e.message, e.code);
        }
    }
    if (rv == EDGE_OK) rv = edge_buf_puts(out, "],\"step_errors\":");
    if (rv == EDGE_OK) rv = edge_buf_putc(&errs, ']');
    if (rv == EDGE_OK) rv = edge_buf_append(out, errs.data, errs.len);
    if (rv == EDGE_OK) rv = edge_buf_putc(out, '}');
    edge_buf_free(&errs);
    edge_free(state);
    return rv;
}

static int run_sequence_inner(struct hrana_ctx *ctx, json_t *req, struct stmt_error *e);

static int run_sequence(struct hrana_ctx *ctx, json_t *req, struct stmt_error *e)
{
    int r = run_sequence_inner(ctx, req, e);
    edge_store_set_budget(ctx->conn, 0); /* see run_stmt */
    return r;
}

static int run_sequence_inner(struct hrana_ctx *ctx, json_t *req, struct stmt_error *e)
{
    size_t len = 0;
    const char *sql = hrana__stmt_sql(req, ctx->sqls, &len);
    if (sql == NULL) {
        hrana__set_err(e, "SQL_NOT_FOUND", "%sno stored SQL with that id", "");
        return -1;
    }
    sqlite3 *db = edge_store_db(ctx->conn);
    size_t off = 0;
    edge_store_set_budget(ctx->conn, ctx->budget_ms);
    while (off < len) {
        const char *tail = NULL;
        sqlite3_stmt *st = NULL;
        enum edge_txctl tx = edge_store_txctl(sql + off, len - off);
        if (tx == EDGE_TXCTL_BEGIN_READONLY && sqlite3_get_autocommit(db)) {
            bool was = hrana__own_begin(ctx);
            sqlite3_exec(db, "PRAGMA query_only=1", NULL, NULL, NULL);
            hrana__own_end(ctx, was);
            ctx->readonly_txn = true;
        }
        size_t toff = 0;
        int rc = edge_store_prepare_once(ctx->conn, sql + off, len - off, &st, &toff);
        tail = sql + off + toff;
        if (rc != SQLITE_OK) {
            hrana__set_sqlite_err(e, ctx, rc);
            if (is_parse_error(e->message)) e->code = "SQL_PARSE_ERROR";
            return -1;
        }
        size_t next = tail ? (size_t)(tail - sql) : len;
        if (st == NULL && next == off) {
            /* SQLite stops at a NUL byte and reports no progress: what follows would
             * never run, and this loop would never end. */
            hrana__set_err(e, "SQL_PARSE_ERROR", "%sthe SQL text contains a NUL character", "");
            return -1;
        }
        off = next;
        if (st == NULL) {
            continue;
        }
        ctx->stmts++;
        if (ctx->access == HRANA_ACCESS_RO && !sqlite3_stmt_readonly(st)) {
            sqlite3_finalize(st);
            hrana__set_err(e, "AUTH_READ_ONLY", "%swrites are not allowed with a read-only token", "");
            return -1;
        }
        struct hrana__rx x;
        if (hrana__repl_pre(ctx, st, tx, &x, e) != 0) {
            sqlite3_finalize(st);
            return -1;
        }
        for (rc = edge_store_step(ctx->conn, st); rc == SQLITE_ROW; rc = sqlite3_step(st)) {
        }
        if (rc != SQLITE_DONE) {
            hrana__set_sqlite_err(e, ctx, rc);
            sqlite3_reset(st);
            hrana__repl_post(ctx, st, tx, false, &x, e);
            sqlite3_finalize(st);
            sync_readonly(ctx);
            edge_store_set_budget(ctx->conn, 0);
            return -1;
        }
        int prv = hrana__repl_post(ctx, st, tx, true, &x, e);
        sqlite3_finalize(st);
        sync_readonly(ctx);
        if (prv != 0) {
            edge_store_set_budget(ctx->conn, 0);
            return -1;
        }
    }
    return 0;
}

static int run_describe(struct hrana_ctx *ctx, json_t *req, struct edge_buf *out, struct stmt_error *e)
{
    size_t len = 0;
    const char *sql = hrana__stmt_sql(req, ctx->sqls, &len);
    if (sql == NULL) {
        hrana__set_err(e, "SQL_NOT_FOUND", "%sno stored SQL with that id", "");
        return -1;
    }
    sqlite3_stmt *st = NULL;
    int rc = edge_store_prepare_once(ctx->conn, sql, len, &st, NULL);
    if (rc != SQLITE_OK || st == NULL) {
        if (rc == SQLITE_OK) {
            hrana__set_err(e, "SQL_NO_STATEMENT", "%sno SQL statement given", "");
        } else {
            hrana__set_sqlite_err(e, ctx, rc);
            if (is_parse_error(e->message)) e->code = "SQL_PARSE_ERROR";
        }
        sqlite3_finalize(st);
        return -1;
    }
    int rv = edge_buf_puts(out, "{\"params\":[");
    int np = sqlite3_bind_parameter_count(st);
    for (int i = 1; i <= np && rv == EDGE_OK; i++) {
        if (i > 1) rv = edge_buf_putc(out, ',');
        if (rv == EDGE_OK) rv = edge_buf_puts(out, "{\"name\":");
        if (rv == EDGE_OK) rv = edge_buf_json_cstr(out, sqlite3_bind_parameter_name(st, i));
        if (rv == EDGE_OK) rv = edge_buf_putc(out, '}');
    }
    if (rv == EDGE_OK) rv = edge_buf_puts(out, "],");
    if (rv == EDGE_OK) rv = hrana__write_cols(out, st);
    if (rv == EDGE_OK) {
        rv = edge_buf_printf(out, ",\"is_explain\":%s,\"is_readonly\":%s}",
                             sqlite3_stmt_isexplain(st) ? "true" : "false",
                             sqlite3_stmt_readonly(st) ? "true" : "false");
    }
    sqlite3_finalize(st);
    return rv == EDGE_OK ? 0 : -2;
}

static int store_sql(struct hrana_sqlmap *m, json_t *req, struct stmt_error *e)
{
    int32_t id = (int32_t)json_integer_value(json_object_get(req, "sql_id"));
    json_t *sql = json_object_get(req, "sql");
    if (json_string_length(sql) > HRANA_MAX_SQL_BYTES) {
        hrana__set_err(e, "SQL_STORE_TOO_LARGE", "%sthe SQL text is too large to store", "");
        return -1;
    }
    for (size_t i = 0; i < m->n; i++) {
        if (m->items[i].id == id) {
            /* Over HTTP a client may re-store an id after an expired stream; replace. */
            char *copy = edge_strndup(json_string_value(sql), json_string_length(sql));
            if (copy == NULL) {
                hrana__set_err(e, "INTERNAL", "%sout of memory", "");
                return -1;
            }
            edge_free(m->items[i].sql);
            m->items[i].sql = copy;
            return 0;
        }
    }
    if (m->n >= m->max) {
        char lim[32];
        snprintf(lim, sizeof(lim), "%zu", m->max);
        hrana__set_err(e, "SQL_STORE_TOO_MANY", "too many stored SQL texts (the limit is %s)", lim);
        return -1;
    }
    struct hrana_sql *items = edge_realloc(m->items, (m->n + 1) * sizeof(*items));
    if (items == NULL) {
        hrana__set_err(e, "INTERNAL", "%sout of memory", "");
        return -1;
    }
    m->items = items;
    char *copy = edge_strndup(json_string_value(sql), json_string_length(sql));
    if (copy == NULL) {
        hrana__set_err(e, "INTERNAL", "%sout of memory", "");
        return -1;
    }
    m->items[m->n].id = id;
    m->items[m->n].sql = copy;
    m->n++;
    return 0;
}

static void close_sql(struct hrana_sqlmap *m, json_t *req)
{
    int32_t id = (int32_t)json_integer_value(json_object_get(req, "sql_id"));
    for (size_t i = 0; i < m->n; i++) {
        if (m->items[i].id == id) {
            edge_free(m->items[i].sql);
            m->items[i] = m->items[m->n - 1];
            m->n--;
            return;
        }
    }
}

int hrana_execute_request(struct hrana_ctx *ctx, json_t *req, enum hrana_wrap wrap, int64_t request_id,
                          struct edge_buf *out)
{
    const char *t = json_string_value(json_object_get(req, "type"));
    size_t mark = out->len;
    int rv;
    if (wrap == HRANA_WRAP_HTTP) {
        rv = edge_buf_puts(out, "{\"type\":\"ok\",\"response\":{\"type\":");
    } else {
        rv = edge_buf_printf(out, "{\"type\":\"response_ok\",\"request_id\":%lld,\"response\":{\"type\":",
                             (long long)request_id);
    }
    if (rv == EDGE_OK) rv = edge_buf_json_cstr(out, t);
    if (rv != EDGE_OK) return rv;

    struct stmt_error e = {{0}, NULL};
    int r = 0;
    /* Everything the client's request prepares or runs is sandboxed (store.h). */
    bool sandboxed = ctx->conn != NULL && edge_store_sandboxed(ctx->conn);
    if (ctx->conn != NULL) edge_store_sandbox(ctx->conn, true);
    if (strcmp(t, "execute") == 0) {
        rv = edge_buf_puts(out, ",\"result\":");
        if (rv == EDGE_OK) r = run_stmt(ctx, json_object_get(req, "stmt"), out, &e);
    } else if (strcmp(t, "batch") == 0) {
        rv = edge_buf_puts(out, ",\"result\":");
        if (rv == EDGE_OK) rv = run_batch(ctx, json_object_get(req, "batch"), out);
    } else if (strcmp(t, "sequence") == 0) {
        r = run_sequence(ctx, req, &e);
    } else if (strcmp(t, "describe") == 0) {
        rv = edge_buf_puts(out, ",\"result\":");
        if (rv == EDGE_OK) r = run_describe(ctx, req, out, &e);
    } else if (strcmp(t, "store_sql") == 0) {
        r = store_sql(ctx->sqls, req, &e);
    } else if (strcmp(t, "close_sql") == 0) {
        close_sql(ctx->sqls, req);
    } else if (strcmp(t, "get_autocommit") == 0) {
        bool ac = ctx->conn == NULL || ctx->shared_snapshot || sqlite3_get_autocommit(edge_store_db(ctx->conn));
        rv = edge_buf_printf(out, ",\"is_autocommit\":%s", ac ? "true" : "false");
    } else if (strstr(t, "_cursor") != NULL) {
        /* open_cursor, fetch_cursor, close_cursor belong to the WebSocket session (ws_cursor.c) */
        hrana__set_err(&e, "HRANA_PROTO_ERROR", "%s is not executed here", t);
        r = -1;
    }
    /* close, open_stream, close_stream: nothing more to say */
    if (ctx->conn != NULL) edge_store_sandbox(ctx->conn, sandboxed);
    if (r == -2) {
        rv = EDGE_ETOOBIG;
    }
    if (rv == EDGE_OK && r == 0) {
        return edge_buf_puts(out, "}}");
    }
    if (rv != EDGE_OK && e.code == NULL) {
        hrana__set_err(&e, "RESPONSE_TOO_LARGE", "%sthe response is too large", "");
    }
    out->len = mark;
    if (out->data) out->data[mark] = '\0';
    if (wrap == HRANA_WRAP_WS) return hrana_write_response_error(out, request_id, e.message, e.code);
    rv = edge_buf_puts(out, "{\"type\":\"error\",\"error\":");
    if (rv == EDGE_OK) rv = hrana_write_error(out, e.message, e.code);
    if (rv == EDGE_OK) rv = edge_buf_putc(out, '}');
    return rv;
}
