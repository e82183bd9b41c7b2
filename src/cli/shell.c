/* SPDX-License-Identifier: MIT */
/* `edgelite shell [URL]`: an interactive SQL prompt for a node, speaking Hrana over
 * HTTP (POST <base>/v2/pipeline, see /work/shared/protocols/hrana.md section 1).
 *
 * DESIGN: the whole session is one Hrana stream. Each statement goes out as its own
 * pipeline carrying the baton of the previous response, so BEGIN ... COMMIT typed on
 * separate lines runs on one server connection. Whether a transaction is open is
 * tracked from the statements' leading keywords (Hrana v2 has no get_autocommit); that
 * only decides whether a lost stream may be replaced silently or the user must be
 * told. Statements are split at a ';' outside quotes and comments; sqlite3_complete()
 * then confirms the candidate, which keeps CREATE TRIGGER ... BEGIN ...; END; whole. */
#include <errno.h>
#include <jansson.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <editline/readline.h>

#include "cli/cli.h"
#include "net/httpc.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "edgelite/errors.h"

#define SHELL_TIMEOUT_MS 30000
#define SHELL_MAX_RESPONSE (64u * 1024 * 1024)
#define SHELL_MAX_STMT (16u * 1024 * 1024)
#define SHELL_HISTORY_MAX 1000
#define SHELL_BLOB_SHOW 32

enum out_mode { MODE_TABLE, MODE_CSV, MODE_JSON, MODE_LINE };

static const char *const mode_names[] = {"table", "csv", "json", "line"};

struct shell {
    struct edge_httpc_url url;
    char pipeline_path[600];
    const char *url_text; /* borrowed */
    const char *token;    /* borrowed; NULL for none */
    char *baton;          /* current stream's baton; NULL before the first request */
    int in_tx;            /* a transaction is open on the stream (best guess) */
    int timing;           /* print "Run Time" after each statement */
    enum out_mode mode;
    int interactive;      /* stdin is a terminal */
    int n_failed;         /* statements or commands that failed */
    int quit;
};

/* ---- scanning SQL text ---- */

enum scan_state { SC_NORMAL, SC_SQUOTE, SC_DQUOTE, SC_BACKTICK, SC_BRACKET, SC_LINE, SC_BLOCK };

/* Skip whitespace and comments; returns a pointer to the first significant byte. */
static const char *skip_space(const char *p)
{
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\f') p++;
        if (p[0] == '-' && p[1] == '-') {
            p += strcspn(p, "\n");
        } else if (p[0] == '/' && p[1] == '*') {
            const char *e = strstr(p + 2, "*/");
            p = e != NULL ? e + 2 : p + strlen(p);
        } else {
            return p;
        }
    }
}

/* Does sql start with keyword kw (case-insensitive, whole word)? On success *out_next
 * points past it. */
static int starts_with_kw(const char *sql, const char *kw, const char **out_next)
{
    const char *p = skip_space(sql);
    size_t n = strlen(kw);
    char c;

    if (strncasecmp(p, kw, n) != 0) return 0;
    c = p[n];
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_') {
        return 0;
    }
    if (out_next != NULL) *out_next = p + n;
    return 1;
}

/* Track the transaction state from a statement that succeeded. */
static void note_tx(struct shell *sh, const char *sql)
{
    const char *next = NULL;

    if (starts_with_kw(sql, "BEGIN", NULL) || starts_with_kw(sql, "SAVEPOINT", NULL)) {
        sh->in_tx = 1;
    } else if (starts_with_kw(sql, "COMMIT", NULL) || starts_with_kw(sql, "END", NULL)) {
        sh->in_tx = 0;
    } else if (starts_with_kw(sql, "ROLLBACK", &next)) {
        (void)starts_with_kw(next, "TRANSACTION", &next);
        if (!starts_with_kw(next, "TO", NULL)) sh->in_tx = 0;
    }
}

/* ---- Hrana over HTTP ---- */

static double elapsed_ms(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) * 1e3 + (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

static void set_baton(struct shell *sh, json_t *b)
{
    edge_free(sh->baton);
    sh->baton = json_is_string(b) ? edge_strdup(json_string_value(b)) : NULL;
}

/* The message of an HTTP error body: JSON {"message"} / {"error"}, or the text. */
static void print_http_error(const struct edge_httpc_resp *r)
{
    json_t *j = json_loadb(r->body.data, r->body.len, 0, NULL);
    const char *code = NULL;
    const char *msg = NULL;

    if (j != NULL) {
        code = json_string_value(json_object_get(j, "code"));
        msg = json_string_value(json_object_get(j, "message"));
        if (msg == NULL) msg = json_string_value(json_object_get(j, "error"));
    }
    if (msg == NULL && r->body.len > 0 && r->body.len < 500) msg = r->body.data;
    fprintf(stderr, "Error: HTTP %d%s%s%s%s\n", r->status, code != NULL ? ": " : "",
            code != NULL ? code : "", msg != NULL ? ": " : "", msg != NULL ? msg : "");
    json_decref(j);
}

static int is_stream_lost(const struct edge_httpc_resp *r)
{
    json_t *j;
    const char *code;
    int lost;

    if (r->status != 400) return 0;
    j = json_loadb(r->body.data, r->body.len, 0, NULL);
    code = json_string_value(json_object_get(j, "code"));
    /* sqld answers a stale or unknown baton with 400 text/plain, an expired one with
     * 400 JSON STREAM_EXPIRED; anything else at 400 is a real protocol error. */
    lost = (code != NULL && strcmp(code, "STREAM_EXPIRED") == 0) ||
           (j == NULL && strcasestr(r->body.data, "baton") != NULL) ||
           (j == NULL && strcasestr(r->body.data, "stream") != NULL);
    json_decref(j);
    return lost;
}

/* Send one pipeline on the session's stream: an execute of sql (args: a JSON array
 * text or NULL), or a close when sql is NULL. On success *out_result is the execute's
 * StmtResult (new reference) or NULL for close. Errors are printed here; returns
 * EDGE_OK, EDGE_ESTORE for an SQL error, or the transport's code. */
static int pipeline(struct shell *sh, const char *sql, const char *args, json_t **out_result)
{
    struct edge_buf body;
    struct edge_httpc_resp resp;
    json_t *j = NULL;
    int rv;
    int attempt;

    *out_result = NULL;
    memset(&resp, 0, sizeof(resp));
    edge_buf_init(&body, SHELL_MAX_STMT + 4096);
    for (attempt = 0; attempt < 2; attempt++) {
        edge_buf_reset(&body);
        rv = edge_buf_puts(&body, "{\"baton\":");
        if (rv == EDGE_OK) {
            rv = sh->baton != NULL ? edge_buf_json_cstr(&body, sh->baton)
                                   : edge_buf_puts(&body, "null");
        }
        if (rv == EDGE_OK && sql != NULL) {
            rv = edge_buf_puts(&body, ",\"requests\":[{\"type\":\"execute\",\"stmt\":{\"sql\":");
            if (rv == EDGE_OK) rv = edge_buf_json_cstr(&body, sql);
            if (rv == EDGE_OK && args != NULL) rv = edge_buf_printf(&body, ",\"args\":%s", args);
            if (rv == EDGE_OK) rv = edge_buf_puts(&body, ",\"want_rows\":true}}]}");
        } else if (rv == EDGE_OK) {
            rv = edge_buf_puts(&body, ",\"requests\":[{\"type\":\"close\"}]}");
        }
        if (rv != EDGE_OK) {
            fprintf(stderr, "Error: statement too large (%s)\n", edge_strerror(rv));
            goto out;
        }
        edge_httpc_resp_free(&resp);
        rv = edge_httpc_request(&sh->url, "POST", sh->pipeline_path, sh->token, body.data,
                                body.len, SHELL_TIMEOUT_MS, SHELL_MAX_RESPONSE, &resp);
        if (rv != EDGE_OK) {
            fprintf(stderr, "Error: cannot reach %s: %s\n", sh->url_text, edge_strerror(rv));
            goto out;
        }
        if (resp.status == 200) break;
        if (sh->baton != NULL && is_stream_lost(&resp)) {
            set_baton(sh, NULL);
            if (sql == NULL) { /* closing an expired stream: nothing left to do */
                rv = EDGE_OK;
                goto out;
            }
            if (sh->in_tx) {
                sh->in_tx = 0;
                fprintf(stderr, "Error: the session expired and its open transaction was "
                                "rolled back; the statement was not run\n");
                rv = EDGE_ECLOSED;
                goto out;
            }
            continue; /* a fresh stream, transparently */
        }
        print_http_error(&resp);
        rv = resp.status == 401 || resp.status == 403 ? EDGE_EAUTH : EDGE_EPROTO;
        goto out;
    }
    if (attempt == 2) {
        print_http_error(&resp);
        rv = EDGE_EPROTO;
        goto out;
    }

    j = json_loadb(resp.body.data, resp.body.len, 0, NULL);
    json_t *results = json_object_get(j, "results");
    json_t *first = json_array_get(results, 0);
    const char *type = json_string_value(json_object_get(first, "type"));
    if (j == NULL || type == NULL) {
        fprintf(stderr, "Error: malformed response from server\n");
        rv = EDGE_EPROTO;
        goto out;
    }
    set_baton(sh, json_object_get(j, "baton"));
    if (sh->baton == NULL && sh->in_tx && sql != NULL) {
        fprintf(stderr, "Warning: the server closed the session; the transaction ended\n");
        sh->in_tx = 0;
    }
    if (strcmp(type, "error") == 0) {
        json_t *e = json_object_get(first, "error");
        const char *code = json_string_value(json_object_get(e, "code"));
        const char *msg = json_string_value(json_object_get(e, "message"));
        fprintf(stderr, "Error: %s%s%s\n", code != NULL ? code : "", code != NULL ? ": " : "",
                msg != NULL ? msg : "unknown error");
        rv = EDGE_ESTORE;
        goto out;
    }
    if (strcmp(type, "ok") != 0) {
        fprintf(stderr, "Error: malformed response from server\n");
        rv = EDGE_EPROTO;
        goto out;
    }
    if (sql != NULL) {
        json_t *res = json_object_get(json_object_get(first, "response"), "result");
        if (!json_is_object(res)) {
            fprintf(stderr, "Error: malformed response from server\n");
            rv = EDGE_EPROTO;
            goto out;
        }
        *out_result = json_incref(res);
    }
    rv = EDGE_OK;
out:
    json_decref(j);
    edge_httpc_resp_free(&resp);
    edge_buf_free(&body);
    return rv;
}

/* ---- rendering values ---- */

/* Append the display form of a Hrana Value. csv/json callers adjust NULL themselves. */
static int value_text(struct edge_buf *b, json_t *v)
{
    const char *type = json_string_value(json_object_get(v, "type"));
    json_t *val = json_object_get(v, "value");

    if (type == NULL || strcmp(type, "null") == 0) return edge_buf_puts(b, "NULL");
    if (strcmp(type, "integer") == 0 || strcmp(type, "text") == 0) {
        if (json_is_string(val)) {
            return edge_buf_append(b, json_string_value(val), json_string_length(val));
        }
        if (json_is_integer(val)) return edge_buf_printf(b, "%lld", (long long)json_integer_value(val));
        return edge_buf_puts(b, "?");
    }
    if (strcmp(type, "float") == 0) {
        char tmp[64];
        if (json_is_integer(val)) {
            return edge_buf_printf(b, "%lld.0", (long long)json_integer_value(val));
        }
        if (!json_is_real(val)) return edge_buf_puts(b, "NULL");
        snprintf(tmp, sizeof(tmp), "%.15g", json_real_value(val));
        if (strpbrk(tmp, ".eEni") == NULL) return edge_buf_printf(b, "%s.0", tmp);
        return edge_buf_puts(b, tmp);
    }
    if (strcmp(type, "blob") == 0) {
        const char *b64 = json_string_value(json_object_get(v, "base64"));
        uint8_t *bytes = NULL;
        size_t n = 0;
        int rv;

        if (b64 == NULL || edge_base64_decode(b64, strlen(b64), &bytes, &n) != EDGE_OK) {
            return edge_buf_puts(b, "x'?'");
        }
        rv = edge_buf_puts(b, "x'");
        for (size_t i = 0; rv == EDGE_OK && i < n && i < SHELL_BLOB_SHOW; i++) {
            rv = edge_buf_printf(b, "%02x", bytes[i]);
        }
        if (rv == EDGE_OK) rv = edge_buf_puts(b, n > SHELL_BLOB_SHOW ? "'..." : "'");
        edge_free(bytes);
        return rv;
    }
    return edge_buf_puts(b, "?");
}

static int is_type(json_t *v, const char *t)
{
    const char *type = json_string_value(json_object_get(v, "type"));
    return type != NULL && strcmp(type, t) == 0;
}

/* Display width: UTF-8 code points (good enough for a terminal table). */
static size_t text_width(const char *s)
{
    size_t w = 0;
    for (; *s != '\0'; s++) {
        if (((unsigned char)*s & 0xC0) != 0x80) w++;
    }
    return w;
}

static void put_padded(const char *s, size_t width, int right)
{
    size_t w = text_width(s);
    size_t pad = width > w ? width - w : 0;

    if (right) printf("%*s", (int)pad, "");
    fputs(s, stdout);
    if (!right) printf("%*s", (int)pad, "");
}

static void put_rule(const size_t *widths, size_t ncol)
{
    putchar('+');
    for (size_t c = 0; c < ncol; c++) {
        for (size_t i = 0; i < widths[c] + 2; i++) putchar('-');
        putchar('+');
    }
    putchar('\n');
}

/* Make a cell printable on one table line: control characters become escapes. */
static char *one_line(const char *s)
{
    struct edge_buf b;
    edge_buf_init(&b, SIZE_MAX / 2);
    for (; *s != '\0'; s++) {
        int rv;
        if (*s == '\n') {
            rv = edge_buf_puts(&b, "\\n");
        } else if (*s == '\t') {
            rv = edge_buf_puts(&b, "\\t");
        } else if ((unsigned char)*s < 0x20) {
            rv = edge_buf_putc(&b, '?');
        } else {
            rv = edge_buf_putc(&b, *s);
        }
        if (rv != EDGE_OK) {
            edge_buf_free(&b);
            return NULL;
        }
    }
    if (b.data == NULL) return edge_strdup("");
    return edge_buf_steal(&b, NULL);
}

static int print_table(json_t *cols, json_t *rows)
{
    size_t ncol = json_array_size(cols);
    size_t nrow = json_array_size(rows);
    size_t *widths = edge_calloc(ncol, sizeof(*widths));
    char **cells = edge_calloc(ncol * (nrow + 1) + 1, sizeof(*cells));
    int rv = EDGE_ENOMEM;

    if (widths == NULL || cells == NULL) goto out;
    for (size_t c = 0; c < ncol; c++) {
        const char *name = json_string_value(json_object_get(json_array_get(cols, c), "name"));
        cells[c] = one_line(name != NULL ? name : "");
        if (cells[c] == NULL) goto out;
        widths[c] = text_width(cells[c]);
    }
    for (size_t r = 0; r < nrow; r++) {
        json_t *row = json_array_get(rows, r);
        for (size_t c = 0; c < ncol; c++) {
            struct edge_buf t;
            edge_buf_init(&t, SHELL_MAX_RESPONSE);
            rv = value_text(&t, json_array_get(row, c));
            if (rv == EDGE_OK) cells[(r + 1) * ncol + c] = one_line(t.data != NULL ? t.data : "");
            edge_buf_free(&t);
            if (rv != EDGE_OK) goto out;
            rv = EDGE_ENOMEM;
            if (cells[(r + 1) * ncol + c] == NULL) goto out;
            size_t w = text_width(cells[(r + 1) * ncol + c]);
            if (w > widths[c]) widths[c] = w;
        }
    }
    put_rule(widths, ncol);
    for (size_t r = 0; r <= nrow; r++) {
        json_t *row = r > 0 ? json_array_get(rows, r - 1) : NULL;
        putchar('|');
        for (size_t c = 0; c < ncol; c++) {
            json_t *v = row != NULL ? json_array_get(row, c) : NULL;
            int right = v != NULL && (is_type(v, "integer") || is_type(v, "float"));
            putchar(' ');
            put_padded(cells[r * ncol + c], widths[c], right);
            fputs(" |", stdout);
        }
        putchar('\n');
        if (r == 0) put_rule(widths, ncol);
    }
    if (nrow > 0) put_rule(widths, ncol);
    printf("(%zu row%s)\n", nrow, nrow == 1 ? "" : "s");
    rv = EDGE_OK;
out:
    if (cells != NULL) {
        for (size_t i = 0; i < ncol * (nrow + 1); i++) edge_free(cells[i]);
    }
    edge_free(cells);
    edge_free(widths);
    return rv;
}

static void csv_field(const char *s)
{
    if (strpbrk(s, ",\"\r\n") == NULL) {
        fputs(s, stdout);
        return;
    }
    putchar('"');
    for (; *s != '\0'; s++) {
        if (*s == '"') putchar('"');
        putchar(*s);
    }
    putchar('"');
}

static int print_other(enum out_mode mode, json_t *cols, json_t *rows)
{
    size_t ncol = json_array_size(cols);
    size_t nrow = json_array_size(rows);
    size_t name_w = 0;
    struct edge_buf t;
    int rv = EDGE_OK;

    edge_buf_init(&t, SHELL_MAX_RESPONSE);
    if (mode == MODE_CSV) {
        for (size_t c = 0; c < ncol; c++) {
            const char *name = json_string_value(json_object_get(json_array_get(cols, c), "name"));
            if (c > 0) putchar(',');
            csv_field(name != NULL ? name : "");
        }
        putchar('\n');
    } else if (mode == MODE_JSON) {
        putchar('[');
    } else {
        for (size_t c = 0; c < ncol; c++) {
            const char *name = json_string_value(json_object_get(json_array_get(cols, c), "name"));
            size_t w = text_width(name != NULL ? name : "");
            if (w > name_w) name_w = w;
        }
    }
    for (size_t r = 0; r < nrow && rv == EDGE_OK; r++) {
        json_t *row = json_array_get(rows, r);
        if (mode == MODE_JSON) fputs(r > 0 ? ",\n{" : "{", stdout);
        if (mode == MODE_LINE && r > 0) putchar('\n');
        for (size_t c = 0; c < ncol && rv == EDGE_OK; c++) {
            json_t *v = json_array_get(row, c);
            const char *name = json_string_value(json_object_get(json_array_get(cols, c), "name"));
            if (name == NULL) name = "";
            edge_buf_reset(&t);
            if (mode == MODE_JSON) {
                rv = edge_buf_json_cstr(&t, name);
                if (rv == EDGE_OK) rv = edge_buf_putc(&t, ':');
                if (rv == EDGE_OK) {
                    if (is_type(v, "null") || v == NULL) {
                        rv = edge_buf_puts(&t, "null");
                    } else if (is_type(v, "integer") || is_type(v, "float")) {
                        rv = value_text(&t, v);
                    } else {
                        struct edge_buf s;
                        edge_buf_init(&s, SHELL_MAX_RESPONSE);
                        rv = value_text(&s, v);
                        if (rv == EDGE_OK) rv = edge_buf_json_str(&t, s.data, s.len);
                        edge_buf_free(&s);
                    }
                }
                if (rv == EDGE_OK) {
                    if (c > 0) putchar(',');
                    fputs(t.data, stdout);
                }
            } else if (mode == MODE_CSV) {
                if (!is_type(v, "null")) rv = value_text(&t, v);
                if (c > 0) putchar(',');
                csv_field(t.data != NULL ? t.data : "");
            } else {
                rv = value_text(&t, v);
                if (rv == EDGE_OK) printf("%*s = %s\n", (int)name_w, name, t.data);
            }
        }
        if (mode == MODE_JSON) putchar('}');
        if (mode == MODE_CSV) putchar('\n');
    }
    if (mode == MODE_JSON) fputs("]\n", stdout);
    edge_buf_free(&t);
    return rv;
}

static void print_result(struct shell *sh, json_t *res)
{
    json_t *cols = json_object_get(res, "cols");
    json_t *rows = json_object_get(res, "rows");
    int rv;

    if (json_array_size(cols) == 0) return; /* not a query: sqlite3 prints nothing too */
    rv = sh->mode == MODE_TABLE ? print_table(cols, rows) : print_other(sh->mode, cols, rows);
    if (rv != EDGE_OK) {
        fprintf(stderr, "Error: cannot print the result: %s\n", edge_strerror(rv));
        sh->n_failed++;
    }
}

/* ---- statements and dot commands ---- */

static void run_sql(struct shell *sh, const char *sql)
{
    struct timespec t0;
    json_t *res = NULL;
    int rv;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    rv = pipeline(sh, sql, NULL, &res);
    if (rv == EDGE_OK) {
        note_tx(sh, sql);
        print_result(sh, res);
    } else {
        sh->n_failed++;
    }
    if (sh->timing) printf("Run Time: %.3f ms\n", elapsed_ms(&t0));
    fflush(stdout);
    json_decref(res);
}

/* Run a query for a dot command and call fn(text of column 0) for each row. */
static int query_col0(struct shell *sh, const char *sql, void (*fn)(const char *))
{
    json_t *res = NULL;
    int rv = pipeline(sh, sql, NULL, &res);
    json_t *rows = json_object_get(res, "rows");

    for (size_t r = 0; rv == EDGE_OK && r < json_array_size(rows); r++) {
        json_t *v = json_object_get(json_array_get(json_array_get(rows, r), 0), "value");
        if (json_is_string(v)) fn(json_string_value(v));
    }
    json_decref(res);
    return rv;
}

static void print_line(const char *s)
{
    puts(s);
}

static void print_stmt(const char *s)
{
    printf("%s;\n", s);
}

static int dot_schema(struct shell *sh, const char *table)
{
    struct edge_buf q;
    int rv;

    edge_buf_init(&q, 8192);
    rv = edge_buf_puts(&q, "SELECT sql FROM sqlite_schema WHERE sql IS NOT NULL"
                           " AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
                           " AND name NOT LIKE '\\_edge\\_%' ESCAPE '\\'");
    if (rv == EDGE_OK && table != NULL) {
        /* A literal rather than a bound argument keeps this independent of how the
         * server binds parameters; doubling quotes makes any name safe. */
        rv = edge_buf_puts(&q, " AND (name = '");
        for (const char *p = table; rv == EDGE_OK && *p != '\0'; p++) {
            rv = *p == '\'' ? edge_buf_puts(&q, "''") : edge_buf_putc(&q, *p);
        }
        if (rv == EDGE_OK) rv = edge_buf_puts(&q, "' COLLATE NOCASE OR tbl_name = '");
        for (const char *p = table; rv == EDGE_OK && *p != '\0'; p++) {
            rv = *p == '\'' ? edge_buf_puts(&q, "''") : edge_buf_putc(&q, *p);
        }
        if (rv == EDGE_OK) rv = edge_buf_puts(&q, "' COLLATE NOCASE)");
    }
    if (rv == EDGE_OK) {
        rv = edge_buf_puts(&q, " ORDER BY tbl_name, CASE type WHEN 'table' THEN 0 WHEN 'view'"
                               " THEN 0 ELSE 1 END, name");
    }
    if (rv != EDGE_OK) {
        fprintf(stderr, "Error: table name too long\n");
    } else {
        rv = query_col0(sh, q.data, print_stmt);
    }
    edge_buf_free(&q);
    return rv;
}

static int dot_status(struct shell *sh)
{
    struct edge_httpc_resp r;
    json_t *j;
    int rv = edge_httpc_request(&sh->url, "GET", "/v1/status", sh->token, NULL, 0,
                                SHELL_TIMEOUT_MS, 1024 * 1024, &r);

    if (rv != EDGE_OK) {
        fprintf(stderr, "Error: cannot reach %s: %s\n", sh->url_text, edge_strerror(rv));
        return rv;
    }
    if (r.status != 200) {
        print_http_error(&r);
        edge_httpc_resp_free(&r);
        return EDGE_EPROTO;
    }
    j = json_loadb(r.body.data, r.body.len, 0, NULL);
    if (j == NULL) {
        fputs(r.body.data, stdout);
        putchar('\n');
    } else {
        json_dumpf(j, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        putchar('\n');
    }
    json_decref(j);
    edge_httpc_resp_free(&r);
    return EDGE_OK;
}

static void dot_help(void)
{
    puts(".help                 show this message\n"
         ".tables               list the tables\n"
         ".schema [TABLE]       show CREATE statements (of TABLE and its indexes)\n"
         ".mode MODE            output mode: table, csv, json or line\n"
         ".timing on|off        print the run time of each statement\n"
         ".status               the node's /v1/status\n"
         ".quit, .exit          leave the shell\n"
         "SQL statements end with ';' and may span several lines.");
}

/* Split a dot-command line into at most 3 whitespace-separated words (in place). */
static size_t split_words(char *line, char **words, size_t max)
{
    size_t n = 0;
    char *save = NULL;

    for (char *w = strtok_r(line, " \t\r\n", &save); w != NULL && n < max;
         w = strtok_r(NULL, " \t\r\n", &save)) {
        words[n++] = w;
    }
    return n;
}

static void run_dot(struct shell *sh, char *line)
{
    char *w[3] = {NULL, NULL, NULL};
    size_t n = split_words(line, w, 3);
    int rv = EDGE_OK;

    if (n == 0) return;
    if (strcmp(w[0], ".quit") == 0 || strcmp(w[0], ".exit") == 0) {
        sh->quit = 1;
    } else if (strcmp(w[0], ".help") == 0) {
        dot_help();
    } else if (strcmp(w[0], ".tables") == 0) {
        rv = query_col0(sh,
                        "SELECT name FROM sqlite_schema WHERE type='table' AND name NOT LIKE "
                        "'sqlite_%' AND name NOT LIKE '\\_edge\\_%' ESCAPE '\\' ORDER BY name",
                        print_line);
    } else if (strcmp(w[0], ".schema") == 0) {
        rv = dot_schema(sh, w[1]);
    } else if (strcmp(w[0], ".timing") == 0) {
        if (n == 2 && (strcmp(w[1], "on") == 0 || strcmp(w[1], "off") == 0)) {
            sh->timing = strcmp(w[1], "on") == 0;
        } else {
            fprintf(stderr, "Usage: .timing on|off\n");
            rv = EDGE_EINVAL;
        }
    } else if (strcmp(w[0], ".mode") == 0) {
        size_t m;
        for (m = 0; n == 2 && m < sizeof(mode_names) / sizeof(mode_names[0]); m++) {
            if (strcmp(w[1], mode_names[m]) == 0) break;
        }
        if (n == 1) {
            printf("current output mode: %s\n", mode_names[sh->mode]);
        } else if (n == 2 && m < sizeof(mode_names) / sizeof(mode_names[0])) {
            sh->mode = (enum out_mode)m;
        } else {
            fprintf(stderr, "Usage: .mode table|csv|json|line\n");
            rv = EDGE_EINVAL;
        }
    } else if (strcmp(w[0], ".status") == 0) {
        rv = dot_status(sh);
    } else {
        fprintf(stderr, "Error: unknown command: %s (try .help)\n", w[0]);
        rv = EDGE_EINVAL;
    }
    if (rv != EDGE_OK) sh->n_failed++;
    fflush(stdout);
}

/* ---- input ---- */

struct input {
    struct edge_buf pending; /* text of the statement being collected */
    size_t scanned;          /* bytes of pending already scanned */
    size_t stmt_start;       /* where the current statement began in pending */
    enum scan_state st;
};

/* Feed one input line (without its newline). Runs every statement it completes. */
static int feed_line(struct shell *sh, struct input *in, const char *line)
{
    int rv = edge_buf_puts(&in->pending, line);
    if (rv == EDGE_OK) rv = edge_buf_putc(&in->pending, '\n');
    if (rv != EDGE_OK) {
        fprintf(stderr, "Error: statement too long\n");
        sh->n_failed++;
        edge_buf_reset(&in->pending);
        in->scanned = in->stmt_start = 0;
        in->st = SC_NORMAL;
        return rv;
    }
    char *s = in->pending.data;
    for (size_t i = in->scanned; i < in->pending.len && !sh->quit; i++) {
        char c = s[i];
        char next = s[i + 1]; /* NUL-terminated, so always readable */
        switch (in->st) {
        case SC_NORMAL:
            if (c == '\'') in->st = SC_SQUOTE;
            else if (c == '"') in->st = SC_DQUOTE;
            else if (c == '`') in->st = SC_BACKTICK;
            else if (c == '[') in->st = SC_BRACKET;
            else if (c == '-' && next == '-') { in->st = SC_LINE; i++; }
            else if (c == '/' && next == '*') { in->st = SC_BLOCK; i++; }
            else if (c == ';') {
                char saved = s[i + 1];
                s[i + 1] = '\0';
                const char *stmt = s + in->stmt_start;
                if (sqlite3_complete(stmt)) {
                    if (*skip_space(stmt) != ';') run_sql(sh, stmt);
                    in->stmt_start = i + 1;
                }
                s[i + 1] = saved;
            }
            break;
        case SC_SQUOTE:
            if (c == '\'') in->st = SC_NORMAL; /* '' re-enters at once: same effect */
            break;
        case SC_DQUOTE:
            if (c == '"') in->st = SC_NORMAL;
            break;
        case SC_BACKTICK:
            if (c == '`') in->st = SC_NORMAL;
            break;
        case SC_BRACKET:
            if (c == ']') in->st = SC_NORMAL;
            break;
        case SC_LINE:
            if (c == '\n') in->st = SC_NORMAL;
            break;
        case SC_BLOCK:
            if (c == '*' && next == '/') { in->st = SC_NORMAL; i++; }
            break;
        }
    }
    /* Drop what has been run; keep the unfinished tail. */
    size_t keep = in->pending.len - in->stmt_start;
    memmove(s, s + in->stmt_start, keep + 1);
    in->pending.len = keep;
    in->stmt_start = 0;
    in->scanned = keep;
    if (in->st == SC_NORMAL && *skip_space(s) == '\0') {
        /* Only blanks or finished comments left: the next line starts afresh. */
        edge_buf_reset(&in->pending);
        in->scanned = 0;
    }
    return EDGE_OK;
}

static int pending_is_empty(const struct input *in)
{
    return in->pending.len == 0;
}

/* Read one line from a non-terminal stdin into line (reset first). 0 at EOF. */
static int read_plain_line(struct edge_buf *line)
{
    char chunk[4096];

    edge_buf_reset(line);
    for (;;) {
        if (fgets(chunk, sizeof(chunk), stdin) == NULL) return line->len > 0;
        size_t n = strlen(chunk);
        int nl = n > 0 && chunk[n - 1] == '\n';
        if (nl) n--;
        if (edge_buf_append(line, chunk, n) != EDGE_OK) return -1;
        if (nl) {
            if (line->len > 0 && line->data[line->len - 1] == '\r') line->data[--line->len] = '\0';
            return 1;
        }
    }
}

static void history_path(char *out, size_t size)
{
    const char *home = getenv("HOME");
    out[0] = '\0';
    if (home != NULL && home[0] != '\0') {
        snprintf(out, size, "%s/.edgelite_history", home);
    }
}

/* One line of input dispatched: dot command when no statement is pending, else SQL. */
static void handle_line(struct shell *sh, struct input *in, char *line)
{
    const char *p = line;
    while (*p == ' ' || *p == '\t') p++;
    if (pending_is_empty(in) && *p == '.') {
        run_dot(sh, line);
        return;
    }
    (void)feed_line(sh, in, line);
}

static void usage(void)
{
    fprintf(stderr, "usage: edgelite shell [URL] [--auth-token TOKEN]\n"
                    "  URL defaults to $EDGE_URL, $TURSO_URL, then http://127.0.0.1:8080;\n"
                    "  the token to $EDGE_AUTH_TOKEN, then $TURSO_AUTH_TOKEN.\n");
}

int edge_cli_shell(int argc, char **argv)
{
    struct shell sh;
    struct input in;
    struct edge_buf line;
    const char *url_arg = NULL;
    const char *token_arg = NULL;
    char hist[1024];
    int rv = 1;

    memset(&sh, 0, sizeof(sh));
    memset(&in, 0, sizeof(in));
    edge_buf_init(&in.pending, SHELL_MAX_STMT);
    edge_buf_init(&line, SHELL_MAX_STMT);
    int args_rv = edge_cli_client_args(argc, argv, NULL, NULL, &url_arg, &token_arg);
    if (args_rv >= 0) {
        usage();
        return args_rv;
    }
    sh.url_text = edge_httpc_default_url(url_arg);
    sh.token = edge_httpc_default_token(token_arg);
    if (edge_httpc_url_parse(sh.url_text, &sh.url) != EDGE_OK ||
        edge_httpc_url_resolve(&sh.url, "v2/pipeline", sh.pipeline_path,
                               sizeof(sh.pipeline_path)) != EDGE_OK) {
        fprintf(stderr, "edgelite shell: invalid URL '%s' (expected http://HOST:PORT or "
                        "libsql://HOST:PORT)\n", sh.url_text);
        return 2;
    }
    sh.interactive = isatty(STDIN_FILENO);

    if (sh.interactive) {
        history_path(hist, sizeof(hist));
        stifle_history(SHELL_HISTORY_MAX);
        if (hist[0] != '\0') read_history(hist);
        printf("edgelite shell %s connected to %s\nEnter \".help\" for usage hints.\n",
               EDGE_VERSION, sh.url_text);
        while (!sh.quit) {
            char *l = readline(pending_is_empty(&in) ? "edgelite> " : "   ...> ");
            if (l == NULL) break;
            if (l[0] != '\0') add_history(l);
            handle_line(&sh, &in, l);
            free(l); /* allocated by libedit with malloc, not by us */
        }
        if (hist[0] != '\0') {
            write_history(hist);
            history_truncate_file(hist, SHELL_HISTORY_MAX);
        }
        if (!sh.quit) putchar('\n');
    } else {
        while (!sh.quit) {
            int got = read_plain_line(&line);
            if (got < 0) {
                fprintf(stderr, "Error: input line too long\n");
                sh.n_failed++;
                break;
            }
            if (got == 0) break;
            handle_line(&sh, &in, line.data);
        }
    }
    /* A final statement without ';' still runs, as in sqlite3. */
    if (!sh.quit && !pending_is_empty(&in) && *skip_space(in.pending.data) != '\0') {
        run_sql(&sh, in.pending.data);
    }
    if (sh.baton != NULL) {
        json_t *none = NULL;
        (void)pipeline(&sh, NULL, NULL, &none);
    }
    rv = sh.interactive ? 0 : (sh.n_failed > 0 ? 1 : 0);
    edge_free(sh.baton);
    edge_buf_free(&in.pending);
    edge_buf_free(&line);
    return rv;
}
