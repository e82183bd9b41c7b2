/* SPDX-License-Identifier: MIT */
/* /v1/crdt handlers: routing, updates, merges, and batches (crdt_read.c has the answers
 * that only read). Requests come in batches (edge_crdt_http_handle_batch: the CRDT
 * requests the writer took together) run in one savepoint: an update loads and decodes
 * its object on first use in the batch, applies the operation to that in-memory copy,
 * records its delta and answers the value after it; the copies are encoded and saved
 * once, at the end or before anything that reads the rows (GET, list, merge). A refused
 * operation leaves the copy as it was (operations are atomic in memory), so it changes
 * nothing; a store error takes back the whole batch.
 *
 * OR-Set elements and LWW values are stored as canonical JSON text (compact, sorted
 * keys), so equal JSON values are equal elements and responses can embed them as is.
 * States arriving through /merge are checked to hold JSON text for the same reason. */
#include "api/crdt_http_int.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/vclock.h"
#include "crdt/crdt.h"
#include "edgelite/crdt.h"
#include "repl/repl.h"
#include "store/crdt_store.h"
#include "store/sql.h"

static atomic_uint_least64_t stat_ops, stat_merges, stat_conflicts;

void edge_crdt_http_stats(uint64_t *out_ops, uint64_t *out_merges, uint64_t *out_conflicts)
{
    *out_ops = atomic_load(&stat_ops);
    *out_merges = atomic_load(&stat_merges);
    *out_conflicts = atomic_load(&stat_conflicts);
}

/* ---- request parsing ---- */

static int http_hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* URL-decode s[0..n) into out; 1..128 bytes of [A-Za-z0-9._:-]. 0 on success. */
static int http_decode_name(const char *s, size_t n, char out[NAME_MAX_LEN + 1])
{
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%') {
            if (i + 2 >= n || http_hexval(s[i + 1]) < 0 || http_hexval(s[i + 2]) < 0) {
                return -1;
            }
            c = (char)(http_hexval(s[i + 1]) * 16 + http_hexval(s[i + 2]));
            i += 2;
        }
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
                 c == '_' || c == ':' || c == '-';
        if (!ok || w == NAME_MAX_LEN) {
            return -1;
        }
        out[w++] = c;
    }
    out[w] = '\0';
    return w == 0 ? -1 : 0;
}

static int http_is_json(const uint8_t *p, size_t len)
{
    json_error_t err;
    json_t *v = json_loadb((const char *)p, len, JSON_DECODE_ANY, &err);
    json_decref(v);
    return v != NULL;
}

static int http_elem_check_cb(void *ud, const uint8_t *elem, size_t len)
{
    (void)ud;
    return http_is_json(elem, len) ? 0 : -1;
}

/* A merged-in state must carry JSON text wherever values are embedded in responses. */
static int http_state_is_json(const struct edge_crdt *c)
{
    if (edge_crdt_type_of(c) == EDGE_CRDT_ORSET) {
        return edge_crdt_foreach(c, http_elem_check_cb, NULL) == EDGE_OK;
    }
    if (edge_crdt_type_of(c) == EDGE_CRDT_LWW) {
        const uint8_t *v;
        size_t len;
        return edge_crdt_get(c, &v, &len, NULL, NULL) != EDGE_OK || http_is_json(v, len);
    }
    return 1;
}

/* ---- storage glue ---- */

/* Load name inside the open transaction. *out is NULL (and *out_row empty) when the
 * object does not exist yet. Sets an error response for a type clash or bad row. */
static int http_load(struct hreq *r, const char *name, enum edge_crdt_type type, struct edge_crdt_row *out_row,
                     struct edge_crdt **out)
{
    memset(out_row, 0, sizeof(*out_row));
    *out = NULL;
    int rv = edge_crdt_store_load(r->db, name, out_row);
    if (rv == EDGE_ENOTFOUND) {
        return edge_crdt_create(type, out);
    }
    if (rv != EDGE_OK) {
        return rv;
    }
    enum edge_crdt_type have;
    if (edge_crdt_type_parse(out_row->type, &have) != EDGE_OK || have != type) {
        char msg[160];
        snprintf(msg, sizeof(msg), "object exists with type %.40s", out_row->type);
        return edge__crdt_fail(r, 409, "CRDT_TYPE_MISMATCH", msg);
    }
    rv = edge_crdt_decode(out_row->state, out_row->state_len, out);
    if (rv == EDGE_ECORRUPT) {
        return edge__crdt_fail(r, 500, "CRDT_CORRUPT", "stored state is corrupt");
    }
    return rv;
}

static int http_save(sqlite3 *db, const struct edge_clock *clock, const char *name, const struct edge_crdt *c,
                     uint64_t conflicts)
{
    struct edge_crdt_row row = {0};
    uint8_t *state = NULL;
    size_t len = 0;
    int rv = edge_crdt_encode(c, &state, &len);
    if (rv == EDGE_OK) {
        row.name = (char *)name;
        row.type = (char *)edge_crdt_type_name(edge_crdt_type_of(c));
        row.state = state;
        row.state_len = len;
        row.conflicts = conflicts;
        row.updated_ms = (int64_t)clock->wall_ms(clock->ud);
        rv = edge_crdt_store_save(db, &row);
    }
    edge_free(state);
    return rv;
}

/* The batch's copy of name, loaded on first use. Sets an error response (and *out stays
 * NULL) for a type clash or a corrupt row. */
static int batch_get(struct hreq *r, const char *name, enum edge_crdt_type type, struct bobj **out)
{
    struct batch *bt = r->bt;
    struct edge_crdt_row row;
    struct edge_crdt *c = NULL;
    *out = NULL;
    for (size_t i = 0; i < bt->n; i++) {
        if (strcmp(bt->objs[i].name, name) == 0) {
            if (edge_crdt_type_of(bt->objs[i].c) != type) {
                char msg[160];
                snprintf(msg, sizeof(msg), "object exists with type %s",
                         edge_crdt_type_name(edge_crdt_type_of(bt->objs[i].c)));
                return edge__crdt_fail(r, 409, "CRDT_TYPE_MISMATCH", msg);
            }
            *out = &bt->objs[i];
            return EDGE_OK;
        }
    }
    if (bt->n == bt->cap) {
        size_t cap = bt->cap ? bt->cap * 2 : 4;
        struct bobj *o = edge_realloc(bt->objs, cap * sizeof(*o));
        if (o == NULL) {
            return EDGE_ENOMEM;
        }
        bt->objs = o;
        bt->cap = cap;
    }
    int rv = http_load(r, name, type, &row, &c);
    if (rv == EDGE_OK && r->err_code == NULL) {
        struct bobj *o = &bt->objs[bt->n++];
        snprintf(o->name, sizeof(o->name), "%s", name);
        o->c = c;
        o->conflicts = row.conflicts;
        o->dirty = 0;
        *out = o;
        c = NULL;
    }
    edge_crdt_destroy(c);
    edge_crdt_store_row_free(&row);
    return rv;
}

static void batch_drop(struct batch *bt)
{
    for (size_t i = 0; i < bt->n; i++) {
        edge_crdt_destroy(bt->objs[i].c);
    }
    bt->n = 0;
}

/* Save the changed objects and forget them all, before anything that reads or writes
 * the rows directly (GET, list, merge) and at the end of the batch. A failure fails the
 * batch. */
static int batch_flush(struct batch *bt)
{
    int rv = EDGE_OK;
    for (size_t i = 0; i < bt->n && rv == EDGE_OK; i++) {
        if (bt->objs[i].dirty) {
            rv = http_save(bt->db, bt->clock, bt->objs[i].name, bt->objs[i].c, bt->objs[i].conflicts);
        }
    }
    batch_drop(bt);
    if (rv != EDGE_OK && bt->failed == EDGE_OK) {
        bt->failed = rv;
    }
    return rv;
}

static int http_exec(sqlite3 *db, const char *sql)
{
    /* An operation is a savepoint: inside the writer's group transaction it commits
     * together with other writes (group commit); alone, SAVEPOINT/RELEASE act as
     * BEGIN/COMMIT. Either way a refused operation is rolled back and changes nothing. */
    if (strcmp(sql, "BEGIN IMMEDIATE") == 0) {
        sql = "SAVEPOINT edge_crdt_op";
    } else if (strcmp(sql, "COMMIT") == 0) {
        sql = "RELEASE edge_crdt_op";
    } else if (strcmp(sql, "ROLLBACK") == 0) {
        if (edge_store_exec_kept(db, "ROLLBACK TO edge_crdt_op") != SQLITE_OK) {
            return EDGE_ESTORE;
        }
        sql = "RELEASE edge_crdt_op";
    }
    /* cached statements: no parsing per request */
    return edge_store_exec_kept(db, sql) == SQLITE_OK ? EDGE_OK : EDGE_ESTORE;
}

/* The update goes into the replication log with the transaction that saved it: its
 * delta (only the change, so a region that merges it twice counts it once). */
static int http_capture(struct hreq *r, const char *name, const struct edge_crdt *delta)
{
    uint8_t *enc = NULL;
    size_t len = 0;
    if (r->cap == NULL || delta == NULL) {
        return EDGE_OK;
    }
    int rv = edge_crdt_encode(delta, &enc, &len);
    if (rv == EDGE_OK) {
        rv = edge_capture_crdt(r->cap, name, edge_crdt_type_name(edge_crdt_type_of(delta)), enc, len);
    }
    edge_free(enc);
    return rv;
}

/* Type from the request body: sets an error response and returns 0 when absent/unknown. */
static int http_req_type(struct hreq *r, json_t *req, enum edge_crdt_type *out)
{
    const char *t = json_string_value(json_object_get(req, "type"));
    if (t == NULL) {
        edge__crdt_fail(r, 400, "CRDT_MISSING_FIELD", "\"type\" is required");
        return 0;
    }
    if (edge_crdt_type_parse(t, out) != EDGE_OK) {
        edge__crdt_fail(r, 400, "CRDT_UNKNOWN_TYPE", "unknown CRDT type");
        return 0;
    }
    return 1;
}

/* An update works on the batch's copy of the object (batch_get), which is saved once for
 * every update of the batch (batch_flush). Each operation is atomic in memory: a refused
 * one leaves the copy as it was, so it changes nothing. */
static int http_op(struct hreq *r, const char *name, json_t *req)
{
    enum edge_crdt_type type;
    struct bobj *o = NULL;
    struct edge_crdt *c = NULL, *delta = NULL;
    struct edge_crdt **dp = r->cap ? &delta : NULL;
    char *arg = NULL;
    uint64_t amount = 0;
    int rv = EDGE_OK;

    if (!http_req_type(r, req, &type)) {
        goto out;
    }
    const char *op = json_string_value(json_object_get(req, "op"));
    if (op == NULL) {
        rv = edge__crdt_fail(r, 400, "CRDT_MISSING_FIELD", "\"op\" is required");
        goto out;
    }
    static const char *const ops[] = {"increment", "decrement", "add", "remove", "set"};
    int kind = -1;
    for (int i = 0; i < 5; i++) {
        if (strcmp(op, ops[i]) == 0) {
            kind = i;
        }
    }
    int allowed = (type == EDGE_CRDT_GCOUNTER && kind == 0) || (type == EDGE_CRDT_PNCOUNTER && (kind == 0 || kind == 1)) ||
                  (type == EDGE_CRDT_ORSET && (kind == 2 || kind == 3)) || (type == EDGE_CRDT_LWW && kind == 4);
    if (kind < 0) {
        rv = edge__crdt_fail(r, 400, "CRDT_BAD_OP", "unknown operation");
        goto out;
    }
    if (!allowed) {
        rv = edge__crdt_fail(r, 400, "CRDT_WRONG_TYPE", "operation not valid for this type");
        goto out;
    }
    /* The seed's applyOperation(name, op, {nodeId, amount}) names the writing node: an
     * update is always made by this node, so any other node_id is a caller mistake to
     * report, never an update to record under someone else's region. */
    json_t *nid = json_object_get(req, "node_id");
    if (nid != NULL && !json_is_null(nid)) {
        if (!json_is_string(nid)) {
            rv = edge__crdt_fail(r, 400, "CRDT_BAD_NODE_ID", "\"node_id\" must be a string");
            goto out;
        }
        if (strcmp(json_string_value(nid), r->region) != 0) {
            char msg[EDGE_VCLOCK_REGION_MAX + 96];
            snprintf(msg, sizeof(msg),
                     "\"node_id\" must be this node's region \"%s\" (updates apply where they are sent)", r->region);
            rv = edge__crdt_fail(r, 400, "CRDT_BAD_NODE_ID", msg);
            goto out;
        }
    }
    if (kind <= 1) {
        json_t *a = json_object_get(req, "amount");
        if (a == NULL) {
            rv = edge__crdt_fail(r, 400, "CRDT_MISSING_FIELD", "\"amount\" is required");
            goto out;
        }
        if (!json_is_integer(a) || json_integer_value(a) <= 0) {
            rv = edge__crdt_fail(r, 400, "CRDT_BAD_AMOUNT", "\"amount\" must be a positive 64-bit integer");
            goto out;
        }
        amount = (uint64_t)json_integer_value(a);
    } else if (kind >= 2) {
        const char *field = kind == 4 ? "value" : "element";
        json_t *v = json_object_get(req, field);
        if (v == NULL) {
            char msg[64];
            snprintf(msg, sizeof(msg), "\"%s\" is required", field);
            rv = edge__crdt_fail(r, 400, "CRDT_MISSING_FIELD", msg);
            goto out;
        }
        arg = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
        if (arg == NULL) {
            rv = EDGE_ENOMEM;
            goto out;
        }
    }
    uint64_t hlc = EDGE_HLC_MAKE(r->clock->wall_ms(r->clock->ud) & 0xffffffffffffu, 0);
    if ((rv = batch_get(r, name, type, &o)) != EDGE_OK || r->err_code != NULL) {
        goto out;
    }
    c = o->c;
    switch (kind) {
    case 0:
        rv = edge_crdt_increment(c, r->region, amount, dp);
        break;
    case 1:
        rv = edge_crdt_decrement(c, r->region, amount, dp);
        break;
    case 2:
        rv = edge_crdt_add(c, r->region, arg, strlen(arg), dp);
        break;
    case 3:
        rv = edge_crdt_remove(c, r->region, arg, strlen(arg), dp);
        break;
    default:
        rv = edge_crdt_set(c, r->region, hlc, arg, strlen(arg), dp);
        break;
    }
    if (rv == EDGE_EOVERFLOW) {
        rv = edge__crdt_fail(r, 409, "CRDT_OVERFLOW", "the counter would leave its 64-bit range");
        goto out;
    }
    if (rv == EDGE_EINVAL) {
        rv = edge__crdt_fail(r, 400, "CRDT_BAD_OP", "invalid operation arguments");
        goto out;
    }
    if (rv != EDGE_OK) {
        goto out;
    }
    o->dirty = 1;
    if ((rv = http_capture(r, name, delta)) != EDGE_OK) {
        r->bt->failed = rv; /* the copy holds an update the log does not: drop the batch */
        goto out;
    }
    r->bt->ops++;
    r->status = 200;
    rv = edge__crdt_put_object(r->b, name, c, 0, 0);
out:
    free(arg); /* jansson's allocator */
    edge_crdt_destroy(delta);
    return rv;
}

static int http_merge(struct hreq *r, const char *name, json_t *req)
{
    enum edge_crdt_type type;
    struct edge_crdt_row row = {0};
    struct edge_crdt *c = NULL, *in = NULL;
    uint8_t *raw = NULL;
    size_t raw_len = 0;
    size_t mark = r->cap ? edge_capture_mark(r->cap) : 0;
    int in_tx = 0, rv = EDGE_OK, concurrent = 0;

    if (!http_req_type(r, req, &type)) {
        goto out;
    }
    const char *b64 = json_string_value(json_object_get(req, "state"));
    if (b64 == NULL) {
        rv = edge__crdt_fail(r, 400, "CRDT_MISSING_FIELD", "\"state\" is required");
        goto out;
    }
    rv = edge_base64_decode(b64, strlen(b64), &raw, &raw_len);
    if (rv == EDGE_OK) {
        rv = edge_crdt_decode(raw, raw_len, &in);
    }
    if (rv == EDGE_EINVAL || rv == EDGE_ECORRUPT) {
        rv = edge__crdt_fail(r, 400, "CRDT_BAD_STATE", "\"state\" is not a valid encoded CRDT state");
        goto out;
    }
    if (rv != EDGE_OK) {
        goto out;
    }
    if (edge_crdt_type_of(in) != type) {
        rv = edge__crdt_fail(r, 400, "CRDT_BAD_STATE", "\"state\" does not hold the declared type");
        goto out;
    }
    if (!http_state_is_json(in)) {
        rv = edge__crdt_fail(r, 400, "CRDT_BAD_STATE", "\"state\" holds values that are not JSON");
        goto out;
    }
    if ((rv = http_exec(r->db, "BEGIN IMMEDIATE")) != EDGE_OK) {
        goto out;
    }
    in_tx = 1;
    if ((rv = http_load(r, name, type, &row, &c)) != EDGE_OK || r->err_code != NULL) {
        goto out;
    }
    rv = edge_crdt_merge(c, in, &concurrent);
    if (rv == EDGE_EOVERFLOW) {
        rv = edge__crdt_fail(r, 409, "CRDT_OVERFLOW", "the merged counter would leave its 64-bit range");
        goto out;
    }
    if (rv != EDGE_OK || (rv = http_save(r->db, r->clock, name, c, row.conflicts + (uint64_t)concurrent)) != EDGE_OK ||
        (rv = http_capture(r, name, in)) != EDGE_OK || (rv = http_exec(r->db, "COMMIT")) != EDGE_OK) {
        goto out;
    }
    in_tx = 0;
    r->bt->merges++;
    r->bt->conflicts += (uint64_t)concurrent;
    r->status = 200;
    rv = edge__crdt_put_full(r, name, c, row.conflicts + (uint64_t)concurrent);
out:
    if (in_tx) {
        (void)http_exec(r->db, "ROLLBACK");
        if (r->cap != NULL) {
            edge_capture_rewind(r->cap, mark);
        }
    }
    edge_free(raw);
    edge_crdt_destroy(in);
    edge_crdt_destroy(c);
    edge_crdt_store_row_free(&row);
    return rv;
}

static int http_route(struct hreq *r, const char *method, const char *subpath, const char *body, size_t body_len)
{
    char name[NAME_MAX_LEN + 1];
    const char *slash = strchr(subpath, '/');
    size_t nlen = slash ? (size_t)(slash - subpath) : strlen(subpath);
    int is_get = strcmp(method, "GET") == 0, is_post = strcmp(method, "POST") == 0;

    /* Everything but an update reads or writes the rows themselves. */
    if (!(is_post && slash == NULL && subpath[0] != '\0') && batch_flush(r->bt) != EDGE_OK) {
        return EDGE_ESTORE;
    }

    if (subpath[0] == '\0') {
        return is_get ? edge__crdt_list(r) : edge__crdt_fail(r, 405, "CRDT_METHOD", "method not allowed");
    }
    if (slash != NULL && strcmp(slash + 1, "merge") != 0) {
        return edge__crdt_fail(r, 404, "CRDT_NO_ROUTE", "no such route");
    }
    if (http_decode_name(subpath, nlen, name) != 0) {
        return edge__crdt_fail(r, 400, "CRDT_BAD_NAME", "names are 1-128 bytes of [A-Za-z0-9._:-]");
    }
    if (strcmp(name, "stats") == 0 && slash == NULL) {
        return is_get ? edge__crdt_stats(r) : edge__crdt_fail(r, 405, "CRDT_METHOD", "method not allowed");
    }
    if (strcmp(name, "stats") == 0 || strcmp(name, "sync") == 0) {
        return edge__crdt_fail(r, 400, "CRDT_RESERVED_NAME", "\"stats\" and \"sync\" name endpoints, not objects");
    }
    if (slash == NULL && is_get) {
        return edge__crdt_get(r, name);
    }
    if (!is_post) {
        return edge__crdt_fail(r, 405, "CRDT_METHOD", "method not allowed");
    }
    json_error_t jerr;
    json_t *req = json_loadb(body ? body : "", body ? body_len : 0, 0, &jerr);
    if (req == NULL || !json_is_object(req)) {
        json_decref(req);
        return edge__crdt_fail(r, 400, "CRDT_BAD_JSON", "the body must be a JSON object");
    }
    int rv = slash ? http_merge(r, name, req) : http_op(r, name, req);
    json_decref(req);
    return rv;
}

/* One request of a batch: its answer, error responses included, goes to call->out. */
static int http_call(struct batch *bt, struct edge_capture *cap, const char *region, const struct edge_clock *clock,
                     struct edge_crdt_http_call *call)
{
    struct edge_buf b;
    struct hreq r = {.bt = bt, .db = bt->db, .cap = cap, .region = region, .clock = clock, .status = 500, .b = &b};
    int rv;

    edge_buf_init(&b, call->out->max);
    if (call->method == NULL || call->subpath == NULL) {
        rv = edge__crdt_fail(&r, 400, "CRDT_BAD_REQUEST", "missing method or path");
    } else {
        rv = http_route(&r, call->method, call->subpath, call->body, call->body_len);
    }
    if (rv == EDGE_ESTORE) {
        rv = edge__crdt_fail(&r, 500, "CRDT_STORE", sqlite3_errmsg(bt->db));
    }
    if (rv == EDGE_OK && r.err_code != NULL) {
        edge_buf_reset(&b);
        rv = edge_buf_puts(&b, "{\"error\":");
        if (rv == EDGE_OK) {
            rv = edge_buf_json_cstr(&b, r.err_msg);
        }
        if (rv == EDGE_OK) {
            rv = edge_buf_printf(&b, ",\"code\":\"%s\"}", r.err_code);
        }
    }
    if (rv == EDGE_OK) {
        rv = edge_buf_append(call->out, b.data ? b.data : "", b.len);
        call->status = r.status;
    }
    edge_buf_free(&b);
    return rv;
}

/* Every call of a failed batch answers the store error; nothing of the batch is kept. */
static int http_fail_all(sqlite3 *db, struct edge_crdt_http_call *calls, size_t n, const size_t *lens)
{
    char msg[200];
    snprintf(msg, sizeof(msg), "%s", sqlite3_errmsg(db));
    int rv = EDGE_OK;
    for (size_t i = 0; i < n && rv == EDGE_OK; i++) {
        calls[i].out->len = lens ? lens[i] : calls[i].out->len;
        calls[i].status = 500;
        rv = edge_buf_puts(calls[i].out, "{\"error\":");
        if (rv == EDGE_OK) {
            rv = edge_buf_json_cstr(calls[i].out, msg);
        }
        if (rv == EDGE_OK) {
            rv = edge_buf_puts(calls[i].out, ",\"code\":\"CRDT_STORE\"}");
        }
    }
    return rv;
}

int edge_crdt_http_handle_batch(sqlite3 *db, struct edge_capture *cap, const char *region,
                                const struct edge_clock *clock, struct edge_crdt_http_call *calls, size_t n)
{
    struct batch bt = {.db = db, .clock = clock, .failed = EDGE_OK};
    size_t mark = cap ? edge_capture_mark(cap) : 0;
    size_t *lens = edge_calloc(n ? n : 1, sizeof(*lens));
    int rv = lens == NULL ? EDGE_ENOMEM : EDGE_OK;

    for (size_t i = 0; i < n && lens != NULL; i++) {
        lens[i] = calls[i].out->len;
    }
    if (rv == EDGE_OK && ((rv = edge_crdt_store_ensure(db)) != EDGE_OK ||
                          edge_store_exec_kept(db, "SAVEPOINT edge_crdt_batch") != SQLITE_OK)) {
        rv = http_fail_all(db, calls, n, lens);
        goto out;
    }
    for (size_t i = 0; i < n && rv == EDGE_OK && bt.failed == EDGE_OK; i++) {
        if (http_call(&bt, cap, region, clock, &calls[i]) != EDGE_OK) {
            /* no room for the answer (out of memory, or beyond out's cap): this call
             * alone fails, as its answer could not be written */
            calls[i].out->len = lens[i];
            calls[i].status = 500;
            rv = edge_buf_puts(calls[i].out, "{\"error\":\"the answer could not be built\",\"code\":\"CRDT_INTERNAL\"}");
        }
    }
    if (rv == EDGE_OK) {
        (void)batch_flush(&bt);
    }
    if (rv != EDGE_OK || bt.failed != EDGE_OK ||
        edge_store_exec_kept(db, "RELEASE edge_crdt_batch") != SQLITE_OK) {
        (void)edge_store_exec_kept(db, "ROLLBACK TO edge_crdt_batch");
        (void)edge_store_exec_kept(db, "RELEASE edge_crdt_batch");
        if (cap != NULL) {
            edge_capture_rewind(cap, mark);
        }
        if (rv == EDGE_OK) {
            rv = http_fail_all(db, calls, n, lens);
        }
        goto out;
    }
    atomic_fetch_add(&stat_ops, bt.ops);
    atomic_fetch_add(&stat_merges, bt.merges);
    atomic_fetch_add(&stat_conflicts, bt.conflicts);
out:
    batch_drop(&bt);
    edge_free(bt.objs);
    edge_free(lens);
    return rv;
}

int edge_crdt_http_handle(sqlite3 *db, struct edge_capture *cap, const char *region, const struct edge_clock *clock,
                          const char *method, const char *subpath, const char *body, size_t body_len, int *out_status,
                          struct edge_buf *out_json)
{
    struct edge_crdt_http_call call = {method, subpath, body, body_len, 500, out_json};
    int rv = edge_crdt_http_handle_batch(db, cap, region, clock, &call, 1);
    *out_status = call.status;
    return rv;
}
