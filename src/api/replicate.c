/* SPDX-License-Identifier: MIT */
/* POST /v1/replicate: one row write in JSON form, run as a Hrana pipeline. */
#include "api/node_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "store/sql.h"
#include "store/store.h"

/* A JSON value as a Hrana argument value. Objects and arrays are stored as JSON text. */
static json_t *hrana_arg(json_t *v)
{
    char num[32];
    switch (json_typeof(v)) {
    case JSON_NULL: return json_pack("{s:s}", "type", "null");
    case JSON_TRUE: return json_pack("{s:s,s:s}", "type", "integer", "value", "1");
    case JSON_FALSE: return json_pack("{s:s,s:s}", "type", "integer", "value", "0");
    case JSON_INTEGER:
        snprintf(num, sizeof(num), "%lld", (long long)json_integer_value(v));
        return json_pack("{s:s,s:s}", "type", "integer", "value", num);
    case JSON_REAL: return json_pack("{s:s,s:f}", "type", "float", "value", json_real_value(v));
    case JSON_STRING: return json_pack("{s:s,s:s%}", "type", "text", "value", json_string_value(v), json_string_length(v));
    default: {
        char *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        json_t *r = t ? json_pack("{s:s,s:s}", "type", "text", "value", t) : NULL;
        free(t);
        return r;
    }
    }
}

/* The table's columns (the first 64) and its primary key column (the last, if several). */
struct table_cols {
    char cols[64][128];
    int ncols;
    char pk[128];
    int npk;
};

static void collect_col(void *ud, int cid, const char *name, int pk)
{
    (void)cid;
    struct table_cols *t = ud;
    if (t->ncols < 64) snprintf(t->cols[t->ncols++], sizeof(t->cols[0]), "%s", name);
    if (pk > 0) {
        t->npk++;
        snprintf(t->pk, sizeof(t->pk), "%s", name);
    }
}

/* Validate the request against the schema (read connection) and build the SQL. */
static int replicate_sql(struct loop *l, json_t *body, struct edge_buf *sql, json_t *args, const char **code,
                         char *msg, size_t msglen)
{
    sqlite3 *db = edge_store_db(l->rconn);
    const char *op = json_string_value(json_object_get(body, "op"));
    const char *table = json_string_value(json_object_get(body, "table"));
    json_t *id = json_object_get(body, "id");
    json_t *data = json_object_get(body, "data");
    *code = "REPLICATE_BAD_REQUEST";
    if (op == NULL || table == NULL) {
        snprintf(msg, msglen, "'op' and 'table' are required strings");
        return 400;
    }
    bool is_delete = strcmp(op, "delete") == 0;
    if (strcmp(op, "insert") != 0 && strcmp(op, "update") != 0 && strcmp(op, "upsert") != 0 && !is_delete) {
        snprintf(msg, msglen, "unknown op '%s' (insert, update, upsert, delete)", op);
        return 400;
    }
    if (!is_delete && !json_is_object(data)) {
        snprintf(msg, msglen, "'data' must be an object of column values");
        return 400;
    }
    if (strncmp(table, "_edge_", 6) == 0 || strncmp(table, "sqlite_", 7) == 0) {
        *code = "UNKNOWN_TABLE";
        snprintf(msg, msglen, "table '%s' is internal", table);
        return 400;
    }
    /* The table's columns and its single-column primary key. */
    struct table_cols t = {.npk = 0};
    edge_store_table_columns(db, table, collect_col, &t);
    const char *pk = t.pk;
    int npk = t.npk, ncols = t.ncols;
    if (ncols == 0) {
        *code = "UNKNOWN_TABLE";
        snprintf(msg, msglen, "no such table: %s", table);
        return 404;
    }
    if (npk != 1) {
        *code = "REPLICATION_NO_PRIMARY_KEY";
        snprintf(msg, msglen, "table %s needs a single-column PRIMARY KEY for /v1/replicate", table);
        return 400;
    }
    /* The key may be in 'id', in 'data' (as an ORM sends the row), or both when they agree. */
    json_t *dpk = json_is_object(data) ? json_object_get(data, pk) : NULL;
    if (id == NULL && dpk != NULL) id = dpk;
    if (id == NULL || json_is_object(id) || json_is_array(id) || json_is_null(id)) {
        snprintf(msg, msglen, "'id' (the primary key value) is required and must be a scalar");
        return 400;
    }
    if (dpk != NULL && !json_equal(dpk, id)) {
        *code = "REPLICATE_ID_MISMATCH";
        snprintf(msg, msglen, "'data.%s' contradicts 'id'", pk);
        return 400;
    }
    const char *key;
    json_t *val;
    size_t nvals = 0;
    json_object_foreach(data, key, val) {
        bool known = false;
        for (int i = 0; i < ncols; i++) known = known || strcmp(t.cols[i], key) == 0;
        if (!known) {
            *code = "UNKNOWN_COLUMN";
            snprintf(msg, msglen, "table %s has no column '%s'", table, key);
            return 400;
        }
        if (strcmp(key, pk) != 0) nvals++;
    }
    if (!is_delete && nvals == 0 && strcmp(op, "update") == 0) {
        snprintf(msg, msglen, "'data' is empty");
        return 400;
    }
    if (is_delete) {
        edge_buf_puts(sql, "DELETE FROM ");
        edge_store_quote_ident(sql, table);
        edge_buf_puts(sql, " WHERE ");
        edge_store_quote_ident(sql, pk);
        edge_buf_puts(sql, " = ?");
        json_array_append_new(args, hrana_arg(id));
    } else if (strcmp(op, "update") == 0) {
        edge_buf_puts(sql, "UPDATE ");
        edge_store_quote_ident(sql, table);
        edge_buf_puts(sql, " SET ");
        int i = 0;
        json_object_foreach(data, key, val) {
            if (strcmp(key, pk) == 0) continue;
            if (i++ > 0) edge_buf_puts(sql, ", ");
            edge_store_quote_ident(sql, key);
            edge_buf_puts(sql, " = ?");
            json_array_append_new(args, hrana_arg(val));
        }
        edge_buf_puts(sql, " WHERE ");
        edge_store_quote_ident(sql, pk);
        edge_buf_puts(sql, " = ?");
        json_array_append_new(args, hrana_arg(id));
    } else {
        edge_buf_puts(sql, "INSERT INTO ");
        edge_store_quote_ident(sql, table);
        edge_buf_puts(sql, " (");
        edge_store_quote_ident(sql, pk);
        json_array_append_new(args, hrana_arg(id));
        json_object_foreach(data, key, val) {
            if (strcmp(key, pk) == 0) continue;
            edge_buf_puts(sql, ", ");
            edge_store_quote_ident(sql, key);
            json_array_append_new(args, hrana_arg(val));
        }
        edge_buf_puts(sql, ") VALUES (?");
        for (size_t k = 0; k < nvals; k++) edge_buf_puts(sql, ", ?");
        edge_buf_putc(sql, ')');
        if (strcmp(op, "upsert") == 0) {
            edge_buf_puts(sql, " ON CONFLICT(");
            edge_store_quote_ident(sql, pk);
            edge_buf_puts(sql, ") DO ");
            if (nvals == 0) {
                edge_buf_puts(sql, "NOTHING");
            } else {
                edge_buf_puts(sql, "UPDATE SET ");
                int i = 0;
                json_object_foreach(data, key, val) {
                    if (strcmp(key, pk) == 0) continue;
                    if (i++ > 0) edge_buf_puts(sql, ", ");
                    edge_store_quote_ident(sql, key);
                    edge_buf_puts(sql, " = excluded.");
                    edge_store_quote_ident(sql, key);
                }
            }
        }
    }
    return 200;
}

void edge__api_replicate_handle(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req,
                               enum hrana_access access)
{
    struct edge_node *n = l->node;
    const char *code = NULL;
    json_error_t jerr;
    json_t *body = json_loadb(req->body.data ? req->body.data : "", req->body.len, JSON_ALLOW_NUL, &jerr);
    if (body == NULL || !json_is_object(body)) {
        char msg[256];
        snprintf(msg, sizeof(msg), "invalid JSON body: %s", body ? "expected an object" : jerr.text);
        json_decref(body);
        edge__api_respond_error(n, c, req, EP_REPLICATE, 400, "REPLICATE_BAD_REQUEST", msg);
        return;
    }
    json_t *cons = json_object_get(body, "consistency");
    enum edge_consistency level;
    if (cons != NULL && (!json_is_string(cons) || edge_consistency_parse(json_string_value(cons), &level) != EDGE_OK)) {
        json_decref(body);
        edge__api_respond_error(n, c, req, EP_REPLICATE, 400, "REPLICATE_BAD_REQUEST",
                      "'consistency' must be \"strong\", \"eventual\" or \"async\"");
        return;
    }
    struct edge_buf sql;
    edge_buf_init(&sql, 1 << 20);
    json_t *args = json_array();
    char msg[256] = "";
    int status = replicate_sql(l, body, &sql, args, &code, msg, sizeof(msg));
    if (status != 200) {
        edge_buf_free(&sql);
        json_decref(args);
        json_decref(body);
        edge__api_respond_error(n, c, req, EP_REPLICATE, status, code, msg);
        return;
    }
    json_t *pipe = json_pack("{s:[{s:s,s:{s:s%,s:o,s:b}},{s:s}]}", "requests", "type", "execute", "stmt", "sql",
                             sql.data, sql.len, "args", args, "want_rows", 0, "type", "close");
    edge_buf_free(&sql);
    json_decref(body);
    if (pipe == NULL) {
        edge__api_respond_error(n, c, req, EP_REPLICATE, 503, "INTERNAL", "out of memory");
        return;
    }
    if (cons != NULL) {
        /* The body's level acts like the X-Edge-Consistency header. */
        static const char *const names[] = {"eventual", "strong", "async"};
        struct edge_http_header *h = edge_realloc(req->headers, (req->n_headers + 1) * sizeof(*h));
        if (h != NULL) {
            req->headers = h;
            h[req->n_headers].name = edge_strdup("x-edge-consistency");
            h[req->n_headers].value = edge_strdup(names[level]);
            if (h[req->n_headers].name && h[req->n_headers].value) req->n_headers++;
        }
    }
    edge__api_pipeline_run(l, c, req, pipe, 2, access, PIPE_REPLICATE);
}
