/* SPDX-License-Identifier: MIT */
/* Hrana over protobuf: the codec between hrana.proto's generated C and the JSON model
 * (see pb.h).
 *
 * DESIGN
 * Execution has one input and one output form, the JSON model: a request is a jansson
 * tree that hrana_validate_pipeline checks and exec.c runs, a result is the JSON text
 * exec.c writes. Protobuf is a second spelling of both, so this file only translates;
 * every rule about what a request may say (and every error message about it) stays in
 * validate.c, and a protobuf client sees the same answers as a JSON one.
 *  - Decoding: protobuf-c unpacks the body (the library, not a hand decoder, reads the
 *    wire format), then the message is rewritten as the JSON tree. Before unpacking, the
 *    body's nesting is measured on the wire (depth_ok): protobuf-c recurses into nested
 *    messages without a bound of its own, and a few megabytes of nested conditions
 *    would otherwise exhaust a loop thread's stack. Its memory comes from an arena with
 *    a cap, released in one go. Fields the specification leaves non-optional take their
 *    proto3 default when absent; `optional` ones stay absent.
 *  - Encoding: the JSON response is read once into an arena (pb_json.c: a jansson tree
 *    of it cost more than the rest of a point read) and the protobuf message is built
 *    over that tree in the same arena, pointing at its strings rather than copying them.
 *  - Values JSON cannot carry are refused at decoding with a clear error (text or SQL
 *    that is not UTF-8, a float that is not finite): the JSON path could not have
 *    received them either, and a forwarded request travels as JSON. */
#include "api/hrana/pb.h"

#include <errno.h>
#include <math.h>
#include <stdalign.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/hrana/hrana.pb-c.h"
#include "api/hrana/hrana_int.h"
#include "api/hrana/pb_int.h"
#include "core/alloc.h"
#include "core/err.h"

static void arena_nofree(void *ud, void *p)
{
    (void)ud;
    (void)p; /* released with the arena */
}

/* ---------------------------------------------------------------------------------- */
/* Decoding: PipelineReqBody -> the JSON pipeline body                                */
/* ---------------------------------------------------------------------------------- */

static bool read_varint(const uint8_t **p, const uint8_t *end, uint64_t *out)
{
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        if (*p >= end) return false;
        uint8_t b = *(*p)++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if ((b & 0x80) == 0) {
            *out = v;
            return true;
        }
    }
    return false;
}

/* Is the wire form of a message of type d well framed and nested at most
 * HRANA_PB_MAX_DEPTH deep? Each byte is looked at by one level only (a level skips the
 * payload of the messages inside it), so this is linear in len. */
static bool depth_ok(const ProtobufCMessageDescriptor *d, const uint8_t *p, const uint8_t *end, int depth)
{
    if (depth > HRANA_PB_MAX_DEPTH) return false;
    while (p < end) {
        uint64_t key = 0, n = 0;
        if (!read_varint(&p, end, &key)) return false;
        switch (key & 7) {
        case 0:
            if (!read_varint(&p, end, &n)) return false;
            break;
        case 1:
            if (end - p < 8) return false;
            p += 8;
            break;
        case 5:
            if (end - p < 4) return false;
            p += 4;
            break;
        case 2: {
            if (!read_varint(&p, end, &n) || n > (uint64_t)(end - p)) return false;
            const ProtobufCFieldDescriptor *f =
                (key >> 3) <= UINT32_MAX ? protobuf_c_message_descriptor_get_field(d, (unsigned)(key >> 3)) : NULL;
            if (f != NULL && f->type == PROTOBUF_C_TYPE_MESSAGE &&
                !depth_ok(f->descriptor, p, p + n, depth + 1)) {
                return false;
            }
            p += n;
            break;
        }
        default:
            return false; /* groups (3, 4) are not part of Hrana; 6 and 7 do not exist */
        }
    }
    return true;
}

struct conv {
    size_t nodes;
    int rv;
    char *err;
    size_t errlen;
};

static void conv_fail(struct conv *cv, int rv, const char *msg)
{
    if (cv->rv != EDGE_OK) return; /* keep the first reason */
    cv->rv = rv;
    snprintf(cv->err, cv->errlen, "%s", msg);
}

/* Count a new JSON node against the budget; NULL (and the reason) when it is not had. */
static json_t *node(struct conv *cv, json_t *j)
{
    if (j == NULL) {
        conv_fail(cv, EDGE_ENOMEM, "out of memory");
        return NULL;
    }
    if (++cv->nodes > HRANA_PB_MAX_NODES) {
        json_decref(j);
        conv_fail(cv, EDGE_ETOOBIG, "the protobuf request unfolds into too many values");
        return NULL;
    }
    return j;
}

/* obj[key] = v (taking v); a NULL v or obj has already recorded why. */
static void put(struct conv *cv, json_t *obj, const char *key, json_t *v)
{
    if (obj == NULL || v == NULL) {
        json_decref(v);
        return;
    }
    if (json_object_set_new_nocheck(obj, key, v) != 0) conv_fail(cv, EDGE_ENOMEM, "out of memory");
}

static void push(struct conv *cv, json_t *arr, json_t *v)
{
    if (arr == NULL || v == NULL) {
        json_decref(v);
        return;
    }
    if (json_array_append_new(arr, v) != 0) conv_fail(cv, EDGE_ENOMEM, "out of memory");
}

static json_t *obj_typed(struct conv *cv, const char *type)
{
    json_t *o = node(cv, json_object());
    put(cv, o, "type", node(cv, json_string_nocheck(type)));
    return o;
}

/* A text field as a JSON string: it must be UTF-8, as it would have to be in JSON. */
static json_t *text(struct conv *cv, const uint8_t *p, size_t n, const char *what)
{
    json_t *s = json_stringn(p != NULL ? (const char *)p : "", n);
    if (s == NULL) {
        char msg[128];
        snprintf(msg, sizeof(msg), "%s is not valid UTF-8", what);
        conv_fail(cv, EDGE_EPROTO, msg);
        return NULL;
    }
    return node(cv, s);
}

static json_t *value_json(struct conv *cv, const Hpb__Value *v)
{
    json_t *o = NULL;
    if (v == NULL) {
        conv_fail(cv, EDGE_EPROTO, "a value is missing");
        return NULL;
    }
    switch (v->kind_case) {
    case HPB__VALUE__KIND_NULL:
        o = obj_typed(cv, "null");
        break;
    case HPB__VALUE__KIND_INTEGER:
        o = obj_typed(cv, "integer");
        put(cv, o, "value", node(cv, json_integer((json_int_t)v->integer)));
        break;
    case HPB__VALUE__KIND_REAL:
        if (!isfinite(v->real)) {
            conv_fail(cv, EDGE_EPROTO, "a float value must be finite (JSON cannot carry NaN or infinity)");
            return NULL;
        }
        o = obj_typed(cv, "float");
        put(cv, o, "value", node(cv, json_real(v->real)));
        break;
    case HPB__VALUE__KIND_TEXT:
        o = obj_typed(cv, "text");
        put(cv, o, "value", text(cv, v->text.data, v->text.len, "a text value"));
        break;
    case HPB__VALUE__KIND_BLOB: {
        struct edge_buf b;
        edge_buf_init(&b, (size_t)1 << 31);
        if (edge_buf_base64(&b, v->blob.data, v->blob.len) != EDGE_OK) {
            conv_fail(cv, EDGE_ENOMEM, "out of memory");
        } else {
            o = obj_typed(cv, "blob");
            put(cv, o, "base64", node(cv, json_stringn_nocheck(b.data ? b.data : "", b.len)));
        }
        edge_buf_free(&b);
        break;
    }
    default:
        conv_fail(cv, EDGE_EPROTO, "a value needs one of null, integer, float, text and blob");
        return NULL;
    }
    return o;
}

static json_t *stmt_json(struct conv *cv, const Hpb__Stmt *s)
{
    json_t *o = node(cv, json_object());
    if (s == NULL) return o; /* an absent Stmt is an empty one; validation says what it lacks */
    if (s->has_sql) put(cv, o, "sql", text(cv, s->sql.data, s->sql.len, "the SQL text"));
    if (s->has_sql_id) put(cv, o, "sql_id", node(cv, json_integer(s->sql_id)));
    if (s->n_args > 0) {
        json_t *a = node(cv, json_array());
        for (size_t i = 0; i < s->n_args && cv->rv == EDGE_OK; i++) push(cv, a, value_json(cv, s->args[i]));
        put(cv, o, "args", a);
    }
    if (s->n_named_args > 0) {
        json_t *a = node(cv, json_array());
        for (size_t i = 0; i < s->n_named_args && cv->rv == EDGE_OK; i++) {
            const Hpb__NamedArg *na = s->named_args[i];
            json_t *e = node(cv, json_object());
            const char *name = na->name != NULL ? na->name : "";
            put(cv, e, "name", text(cv, (const uint8_t *)name, strlen(name), "an argument name"));
            if (na->value != NULL) put(cv, e, "value", value_json(cv, na->value));
            push(cv, a, e);
        }
        put(cv, o, "named_args", a);
    }
    if (s->has_want_rows) put(cv, o, "want_rows", node(cv, json_boolean(s->want_rows)));
    return o;
}

/* Nesting is bounded by depth_ok, so this recursion is too. */
static json_t *cond_json(struct conv *cv, const Hpb__Cond *c)
{
    json_t *o = NULL;
    if (c == NULL) {
        conv_fail(cv, EDGE_EPROTO, "a batch condition is missing");
        return NULL;
    }
    switch (c->kind_case) {
    case HPB__COND__KIND_STEP_OK:
    case HPB__COND__KIND_STEP_ERROR:
        o = obj_typed(cv, c->kind_case == HPB__COND__KIND_STEP_OK ? "ok" : "error");
        uint32_t step = c->kind_case == HPB__COND__KIND_STEP_OK ? c->step_ok : c->step_error;
        put(cv, o, "step", node(cv, json_integer(step)));
        break;
    case HPB__COND__KIND_NEGATE:
        o = obj_typed(cv, "not");
        put(cv, o, "cond", cond_json(cv, c->negate));
        break;
    case HPB__COND__KIND_ALL:
    case HPB__COND__KIND_ANY: {
        const Hpb__CondList *l = c->kind_case == HPB__COND__KIND_ALL ? c->all : c->any;
        o = obj_typed(cv, c->kind_case == HPB__COND__KIND_ALL ? "and" : "or");
        json_t *a = node(cv, json_array());
        for (size_t i = 0; l != NULL && i < l->n_conds && cv->rv == EDGE_OK; i++) {
            push(cv, a, cond_json(cv, l->conds[i]));
        }
        put(cv, o, "conds", a);
        break;
    }
    case HPB__COND__KIND_IS_AUTOCOMMIT:
        o = obj_typed(cv, "is_autocommit");
        break;
    default:
        conv_fail(cv, EDGE_EPROTO, "a batch condition needs one of step_ok, step_error, not, and, or, is_autocommit");
    }
    return o;
}

static json_t *batch_json(struct conv *cv, const Hpb__Batch *b)
{
    json_t *o = node(cv, json_object());
    json_t *steps = node(cv, json_array());
    for (size_t i = 0; b != NULL && i < b->n_steps && cv->rv == EDGE_OK; i++) {
        const Hpb__BatchStep *st = b->steps[i];
        json_t *s = node(cv, json_object());
        if (st->condition != NULL) put(cv, s, "condition", cond_json(cv, st->condition));
        put(cv, s, "stmt", stmt_json(cv, st->stmt));
        push(cv, steps, s);
    }
    put(cv, o, "steps", steps);
    return o;
}

static json_t *sql_req_json(struct conv *cv, const char *type, const Hpb__SqlReq *r)
{
    json_t *o = obj_typed(cv, type);
    if (r == NULL) return o;
    if (r->has_sql) put(cv, o, "sql", text(cv, r->sql.data, r->sql.len, "the SQL text"));
    if (r->has_sql_id) put(cv, o, "sql_id", node(cv, json_integer(r->sql_id)));
    return o;
}

static json_t *request_json(struct conv *cv, const Hpb__Request *r)
{
    json_t *o = NULL;
    switch (r->kind_case) {
    case HPB__REQUEST__KIND_CLOSE: return obj_typed(cv, "close");
    case HPB__REQUEST__KIND_GET_AUTOCOMMIT: return obj_typed(cv, "get_autocommit");
    case HPB__REQUEST__KIND_EXECUTE:
        o = obj_typed(cv, "execute");
        put(cv, o, "stmt", stmt_json(cv, r->execute != NULL ? r->execute->stmt : NULL));
        return o;
    case HPB__REQUEST__KIND_BATCH:
        o = obj_typed(cv, "batch");
        put(cv, o, "batch", batch_json(cv, r->batch != NULL ? r->batch->batch : NULL));
        return o;
    case HPB__REQUEST__KIND_SEQUENCE: return sql_req_json(cv, "sequence", r->sequence);
    case HPB__REQUEST__KIND_DESCRIBE: return sql_req_json(cv, "describe", r->describe);
    case HPB__REQUEST__KIND_STORE_SQL: {
        const Hpb__StoreSqlReq *s = r->store_sql;
        bool has_sql = s != NULL && s->has_sql;
        o = obj_typed(cv, "store_sql");
        put(cv, o, "sql_id", node(cv, json_integer(s != NULL && s->has_sql_id ? s->sql_id : 0)));
        put(cv, o, "sql", text(cv, has_sql ? s->sql.data : NULL, has_sql ? s->sql.len : 0, "the SQL text"));
        return o;
    }
    case HPB__REQUEST__KIND_CLOSE_SQL:
        o = obj_typed(cv, "close_sql");
        put(cv, o, "sql_id",
            node(cv, json_integer(r->close_sql != NULL && r->close_sql->has_sql_id ? r->close_sql->sql_id : 0)));
        return o;
    default:
        conv_fail(cv, EDGE_EPROTO, "unknown request type (a StreamRequest with no known field set)");
        return NULL;
    }
}

/* Unpack a message of type d into the arena, after measuring its nesting; NULL with
 * *rv and err set when it cannot be had. */
static ProtobufCMessage *unpack(const ProtobufCMessageDescriptor *d, struct pb_arena *a, const uint8_t *data,
                                size_t len, int *rv, char *err, size_t errlen)
{
    ProtobufCAllocator alloc = {pb_arena_alloc, arena_nofree, a};
    if (data == NULL) data = (const uint8_t *)"";
    if (!depth_ok(d, data, data + len, 0)) {
        snprintf(err, errlen, "invalid protobuf body: truncated, malformed, or nested more than %d messages deep",
                 HRANA_PB_MAX_DEPTH);
        *rv = EDGE_EPROTO;
        return NULL;
    }
    ProtobufCMessage *m = protobuf_c_message_unpack(d, &alloc, len, data);
    if (m == NULL && a->over) {
        snprintf(err, errlen, "the protobuf body unfolds into more than %zu MiB", HRANA_PB_MAX_ARENA >> 20);
        *rv = EDGE_ETOOBIG;
    } else if (m == NULL) {
        snprintf(err, errlen, "invalid protobuf body: not a Hrana %s", d->short_name);
        *rv = EDGE_EPROTO;
    }
    return m;
}

static void put_baton(struct conv *cv, json_t *body, const char *baton)
{
    if (baton != NULL) {
        put(cv, body, "baton", text(cv, (const uint8_t *)baton, strlen(baton), "the baton"));
    } else {
        put(cv, body, "baton", node(cv, json_null()));
    }
}

int hrana_pb_decode_pipeline(const uint8_t *data, size_t len, json_t **out_body, char *err, size_t errlen)
{
    struct conv cv = {0, EDGE_OK, err, errlen};
    struct pb_arena a;
    pb_arena_init(&a, HRANA_PB_MAX_ARENA);
    json_t *body = NULL;
    int rv = EDGE_OK;
    *out_body = NULL;
    Hpb__PipelineReq *req = (Hpb__PipelineReq *)unpack(&hpb__pipeline_req__descriptor, &a, data, len, &rv, err, errlen);
    if (req == NULL) goto out;
    body = node(&cv, json_object());
    put_baton(&cv, body, req->baton);
    json_t *reqs = node(&cv, json_array());
    for (size_t i = 0; i < req->n_requests && cv.rv == EDGE_OK; i++) {
        push(&cv, reqs, request_json(&cv, req->requests[i]));
    }
    put(&cv, body, "requests", reqs);
    rv = cv.rv;
out:
    pb_arena_free_all(&a);
    if (rv != EDGE_OK) {
        json_decref(body);
        return rv;
    }
    *out_body = body;
    return EDGE_OK;
}

int hrana_pb_decode_cursor(const uint8_t *data, size_t len, json_t **out_body, char *err, size_t errlen)
{
    struct conv cv = {0, EDGE_OK, err, errlen};
    struct pb_arena a;
    pb_arena_init(&a, HRANA_PB_MAX_ARENA);
    json_t *body = NULL;
    int rv = EDGE_OK;
    *out_body = NULL;
    Hpb__CursorReq *req = (Hpb__CursorReq *)unpack(&hpb__cursor_req__descriptor, &a, data, len, &rv, err, errlen);
    if (req == NULL) goto out;
    body = node(&cv, json_object());
    put_baton(&cv, body, req->baton);
    put(&cv, body, "batch", batch_json(&cv, req->batch)); /* absent: an empty batch, as proto3 reads it */
    rv = cv.rv;
out:
    pb_arena_free_all(&a);
    if (rv != EDGE_OK) {
        json_decref(body);
        return rv;
    }
    *out_body = body;
    return EDGE_OK;
}

/* ---------------------------------------------------------------------------------- */
/* Encoding: the JSON pipeline response -> PipelineRespBody                           */
/* ---------------------------------------------------------------------------------- */

struct enc {
    struct pb_arena a;
    int rv;
};

static Hpb__Empty empty_msg = HPB__EMPTY__INIT; /* read only: shared by every empty field */

static void *enc_alloc(struct enc *e, size_t n)
{
    void *p = pb_arena_alloc(&e->a, n);
    if (p == NULL && e->rv == EDGE_OK) e->rv = e->a.over ? EDGE_ETOOBIG : EDGE_ENOMEM;
    return p;
}

static void *enc_bad(struct enc *e)
{
    if (e->rv == EDGE_OK) e->rv = EDGE_EPROTO;
    return NULL;
}

/* An array of n message pointers (NULL for n == 0, as protobuf-c expects). */
static void **enc_ptrs(struct enc *e, size_t n)
{
    return n == 0 ? NULL : enc_alloc(e, n * sizeof(void *));
}

static Hpb__Error *enc_error(struct enc *e, struct jv *j)
{
    Hpb__Error *m = enc_alloc(e, sizeof(*m));
    if (m == NULL) return NULL;
    hpb__error__init(m);
    const char *msg = jv_str(jv_get(j, "message"));
    m->message = (char *)(msg != NULL ? msg : "");
    m->code = (char *)jv_str(jv_get(j, "code"));
    return m;
}

static Hpb__Value *enc_value(struct enc *e, struct jv *j)
{
    const char *t = jv_str(jv_get(j, "type"));
    if (t == NULL) return enc_bad(e);
    Hpb__Value *v = enc_alloc(e, sizeof(*v));
    if (v == NULL) return NULL;
    hpb__value__init(v);
    struct jv *val = jv_get(j, "value");
    if (strcmp(t, "integer") == 0) {
        int64_t i = 0;
        if (jv_is_int(val)) {
            i = (int64_t)jv_int(val);
        } else if (!hrana__parse_i64(jv_str(val), &i)) {
            return enc_bad(e);
        }
        v->kind_case = HPB__VALUE__KIND_INTEGER;
        v->integer = i;
    } else if (strcmp(t, "float") == 0) {
        if (jv_is_num(val)) {
            v->kind_case = HPB__VALUE__KIND_REAL;
            v->real = jv_num(val);
        } else {
            /* exec.c writes a non-finite float as null; so does this encoding. */
            v->kind_case = HPB__VALUE__KIND_NULL;
            v->null = &empty_msg;
        }
    } else if (strcmp(t, "text") == 0) {
        if (!jv_is_str(val)) return enc_bad(e);
        v->kind_case = HPB__VALUE__KIND_TEXT;
        v->text.data = (uint8_t *)jv_str(val);
        v->text.len = jv_len(val);
    } else if (strcmp(t, "blob") == 0) {
        struct jv *b64 = jv_get(j, "base64");
        uint8_t *bytes = NULL;
        size_t n = 0;
        if (!jv_is_str(b64) ||
            edge_base64_decode(jv_str(b64), jv_len(b64), &bytes, &n) != EDGE_OK) {
            return enc_bad(e);
        }
        uint8_t *copy = n > 0 ? enc_alloc(e, n) : NULL;
        if (copy != NULL) memcpy(copy, bytes, n);
        edge_free(bytes);
        if (n > 0 && copy == NULL) return NULL;
        v->kind_case = HPB__VALUE__KIND_BLOB;
        v->blob.data = copy;
        v->blob.len = n;
    } else if (strcmp(t, "null") == 0) {
        v->kind_case = HPB__VALUE__KIND_NULL;
        v->null = &empty_msg;
    } else {
        return enc_bad(e);
    }
    return v;
}

static bool enc_cols(struct enc *e, struct jv *cols, size_t *n_out, Hpb__Col ***out)
{
    size_t n = jv_size(cols);
    Hpb__Col **cs = (Hpb__Col **)enc_ptrs(e, n);
    if (n > 0 && cs == NULL) return false;
    for (size_t i = 0; i < n; i++) {
        struct jv *c = jv_at(cols, i);
        Hpb__Col *m = enc_alloc(e, sizeof(*m));
        if (m == NULL) return false;
        hpb__col__init(m);
        m->name = (char *)jv_str(jv_get(c, "name"));
        m->decltype = (char *)jv_str(jv_get(c, "decltype"));
        cs[i] = m;
    }
    *n_out = n;
    *out = cs;
    return true;
}

static Hpb__StmtResult *enc_stmt_result(struct enc *e, struct jv *j)
{
    if (!jv_is_obj(j)) return enc_bad(e);
    Hpb__StmtResult *m = enc_alloc(e, sizeof(*m));
    if (m == NULL) return NULL;
    hpb__stmt_result__init(m);
    if (!enc_cols(e, jv_get(j, "cols"), &m->n_cols, &m->cols)) return NULL;
    struct jv *rows = jv_get(j, "rows");
    size_t nr = jv_size(rows);
    m->rows = (Hpb__Row **)enc_ptrs(e, nr);
    if (nr > 0 && m->rows == NULL) return NULL;
    for (size_t r = 0; r < nr; r++) {
        struct jv *row = jv_at(rows, r);
        if (!jv_is_arr(row)) return enc_bad(e);
        Hpb__Row *pr = enc_alloc(e, sizeof(*pr));
        if (pr == NULL) return NULL;
        hpb__row__init(pr);
        size_t nv = jv_size(row);
        pr->values = (Hpb__Value **)enc_ptrs(e, nv);
        if (nv > 0 && pr->values == NULL) return NULL;
        for (size_t c = 0; c < nv; c++) {
            pr->values[c] = enc_value(e, jv_at(row, c));
            if (pr->values[c] == NULL) return NULL;
        }
        pr->n_values = nv;
        m->rows[r] = pr;
    }
    m->n_rows = nr;
    struct jv *arc = jv_get(j, "affected_row_count");
    m->has_affected_row_count = 1;
    m->affected_row_count = jv_is_int(arc) && jv_int(arc) > 0 ? (uint64_t)jv_int(arc) : 0;
    int64_t rowid = 0;
    if (hrana__parse_i64(jv_str(jv_get(j, "last_insert_rowid")), &rowid)) {
        m->has_last_insert_rowid = 1;
        m->last_insert_rowid = rowid;
    }
    return m;
}

static Hpb__BatchResult *enc_batch_result(struct enc *e, struct jv *j)
{
    struct jv *res = jv_get(j, "step_results");
    struct jv *errs = jv_get(j, "step_errors");
    if (!jv_is_arr(res) || !jv_is_arr(errs)) return enc_bad(e);
    Hpb__BatchResult *m = enc_alloc(e, sizeof(*m));
    if (m == NULL) return NULL;
    hpb__batch_result__init(m);
    size_t nres = 0, nerr = 0;
    for (size_t i = 0; i < jv_size(res); i++) nres += jv_is_obj(jv_at(res, i));
    for (size_t i = 0; i < jv_size(errs); i++) nerr += jv_is_obj(jv_at(errs, i));
    m->step_results = (Hpb__BatchResult__StepResultsEntry **)enc_ptrs(e, nres);
    m->step_errors = (Hpb__BatchResult__StepErrorsEntry **)enc_ptrs(e, nerr);
    if ((nres > 0 && m->step_results == NULL) || (nerr > 0 && m->step_errors == NULL)) return NULL;
    for (size_t i = 0; i < jv_size(res); i++) {
        struct jv *r = jv_at(res, i);
        if (!jv_is_obj(r)) continue;
        Hpb__BatchResult__StepResultsEntry *en = enc_alloc(e, sizeof(*en));
        if (en == NULL) return NULL;
        hpb__batch_result__step_results_entry__init(en);
        en->has_key = 1;
        en->key = (uint32_t)i;
        en->value = enc_stmt_result(e, r);
        if (en->value == NULL) return NULL;
        m->step_results[m->n_step_results++] = en;
    }
    for (size_t i = 0; i < jv_size(errs); i++) {
        struct jv *r = jv_at(errs, i);
        if (!jv_is_obj(r)) continue;
        Hpb__BatchResult__StepErrorsEntry *en = enc_alloc(e, sizeof(*en));
        if (en == NULL) return NULL;
        hpb__batch_result__step_errors_entry__init(en);
        en->has_key = 1;
        en->key = (uint32_t)i;
        en->value = enc_error(e, r);
        if (en->value == NULL) return NULL;
        m->step_errors[m->n_step_errors++] = en;
    }
    return m;
}

static Hpb__DescribeResult *enc_describe(struct enc *e, struct jv *j)
{
    if (!jv_is_obj(j)) return enc_bad(e);
    Hpb__DescribeResult *m = enc_alloc(e, sizeof(*m));
    if (m == NULL) return NULL;
    hpb__describe_result__init(m);
    struct jv *params = jv_get(j, "params");
    size_t np = jv_size(params);
    m->params = (Hpb__DescribeParam **)enc_ptrs(e, np);
    if (np > 0 && m->params == NULL) return NULL;
    for (size_t i = 0; i < np; i++) {
        Hpb__DescribeParam *p = enc_alloc(e, sizeof(*p));
        if (p == NULL) return NULL;
        hpb__describe_param__init(p);
        p->name = (char *)jv_str(jv_get(jv_at(params, i), "name"));
        m->params[i] = p;
    }
    m->n_params = np;
    if (!enc_cols(e, jv_get(j, "cols"), &m->n_cols, &m->cols)) return NULL;
    m->has_is_explain = 1;
    m->is_explain = jv_is_true(jv_get(j, "is_explain"));
    m->has_is_readonly = 1;
    m->is_readonly = jv_is_true(jv_get(j, "is_readonly"));
    return m;
}

static Hpb__Response *enc_response(struct enc *e, struct jv *j)
{
    const char *t = jv_str(jv_get(j, "type"));
    if (t == NULL) return enc_bad(e);
    Hpb__Response *m = enc_alloc(e, sizeof(*m));
    if (m == NULL) return NULL;
    hpb__response__init(m);
    struct jv *result = jv_get(j, "result");
    if (strcmp(t, "execute") == 0) {
        Hpb__ExecuteResp *x = enc_alloc(e, sizeof(*x));
        if (x == NULL) return NULL;
        hpb__execute_resp__init(x);
        if ((x->result = enc_stmt_result(e, result)) == NULL) return NULL;
        m->kind_case = HPB__RESPONSE__KIND_EXECUTE;
        m->execute = x;
    } else if (strcmp(t, "batch") == 0) {
        Hpb__BatchResp *x = enc_alloc(e, sizeof(*x));
        if (x == NULL) return NULL;
        hpb__batch_resp__init(x);
        if ((x->result = enc_batch_result(e, result)) == NULL) return NULL;
        m->kind_case = HPB__RESPONSE__KIND_BATCH;
        m->batch = x;
    } else if (strcmp(t, "describe") == 0) {
        Hpb__DescribeResp *x = enc_alloc(e, sizeof(*x));
        if (x == NULL) return NULL;
        hpb__describe_resp__init(x);
        if ((x->result = enc_describe(e, result)) == NULL) return NULL;
        m->kind_case = HPB__RESPONSE__KIND_DESCRIBE;
        m->describe = x;
    } else if (strcmp(t, "get_autocommit") == 0) {
        Hpb__AutocommitResp *x = enc_alloc(e, sizeof(*x));
        if (x == NULL) return NULL;
        hpb__autocommit_resp__init(x);
        x->has_is_autocommit = 1;
        x->is_autocommit = jv_is_true(jv_get(j, "is_autocommit"));
        m->kind_case = HPB__RESPONSE__KIND_GET_AUTOCOMMIT;
        m->get_autocommit = x;
    } else if (strcmp(t, "close") == 0) {
        m->kind_case = HPB__RESPONSE__KIND_CLOSE;
        m->close = &empty_msg;
    } else if (strcmp(t, "sequence") == 0) {
        m->kind_case = HPB__RESPONSE__KIND_SEQUENCE;
        m->sequence = &empty_msg;
    } else if (strcmp(t, "store_sql") == 0) {
        m->kind_case = HPB__RESPONSE__KIND_STORE_SQL;
        m->store_sql = &empty_msg;
    } else if (strcmp(t, "close_sql") == 0) {
        m->kind_case = HPB__RESPONSE__KIND_CLOSE_SQL;
        m->close_sql = &empty_msg;
    } else {
        return enc_bad(e);
    }
    return m;
}

static Hpb__Result *enc_result(struct enc *e, struct jv *j)
{
    const char *t = jv_str(jv_get(j, "type"));
    if (t == NULL) return enc_bad(e);
    Hpb__Result *m = enc_alloc(e, sizeof(*m));
    if (m == NULL) return NULL;
    hpb__result__init(m);
    if (strcmp(t, "ok") == 0) {
        m->kind_case = HPB__RESULT__KIND_OK;
        if ((m->ok = enc_response(e, jv_get(j, "response"))) == NULL) return NULL;
    } else if (strcmp(t, "error") == 0) {
        struct jv *err = jv_get(j, "error");
        if (!jv_is_obj(err)) return enc_bad(e);
        m->kind_case = HPB__RESULT__KIND_ERROR;
        if ((m->error = enc_error(e, err)) == NULL) return NULL;
    } else {
        return enc_bad(e);
    }
    return m;
}

int hrana_pb_encode_pipeline(const char *json, size_t len, struct edge_buf *out)
{
    struct enc e;
    e.rv = EDGE_OK;
    /* Our own answer: the arena may hold a tree some times its size. */
    pb_arena_init(&e.a, HRANA_PB_MAX_ARENA + 16 * len);
    struct jv *doc = jv_parse(&e.a, json, len);
    struct jv *results = jv_get(doc, "results");
    int rv = EDGE_OK;
    if (!jv_is_arr(results)) {
        rv = doc == NULL && e.a.over ? EDGE_ETOOBIG : EDGE_EPROTO;
        goto out;
    }
    Hpb__PipelineResp resp = HPB__PIPELINE_RESP__INIT;
    resp.baton = (char *)jv_str(jv_get(doc, "baton"));
    resp.base_url = (char *)jv_str(jv_get(doc, "base_url"));
    size_t n = jv_size(results);
    resp.results = (Hpb__Result **)enc_ptrs(&e, n);
    for (size_t i = 0; i < n && e.rv == EDGE_OK; i++) {
        resp.results[i] = enc_result(&e, jv_at(results, i));
    }
    if (e.rv != EDGE_OK) {
        rv = e.rv;
        goto out;
    }
    resp.n_results = n;
    size_t size = protobuf_c_message_get_packed_size(&resp.base);
    rv = edge_buf_reserve(out, size);
    if (rv != EDGE_OK) goto out;
    size_t wrote = protobuf_c_message_pack(&resp.base, (uint8_t *)out->data + out->len);
    if (EDGE_NEVER(wrote != size)) {
        rv = EDGE_EPROTO;
        goto out;
    }
    out->len += size;
    out->data[out->len] = '\0';
out:
    pb_arena_free_all(&e.a);
    return rv;
}

/* ---------------------------------------------------------------------------------- */
/* Encoding: a cursor's JSON lines -> length-delimited CursorRespBody, CursorEntry... */
/* ---------------------------------------------------------------------------------- */

static Hpb__CursorEntry *enc_entry(struct enc *e, struct jv *j)
{
    const char *t = jv_str(jv_get(j, "type"));
    if (t == NULL) return enc_bad(e);
    Hpb__CursorEntry *m = enc_alloc(e, sizeof(*m));
    if (m == NULL) return NULL;
    hpb__cursor_entry__init(m);
    struct jv *step = jv_get(j, "step");
    if (strcmp(t, "step_begin") == 0) {
        Hpb__StepBegin *x = enc_alloc(e, sizeof(*x));
        if (x == NULL) return NULL;
        hpb__step_begin__init(x);
        if (!jv_is_int(step)) return enc_bad(e);
        x->has_step = 1;
        x->step = (uint32_t)jv_int(step);
        if (!enc_cols(e, jv_get(j, "cols"), &x->n_cols, &x->cols)) return NULL;
        m->kind_case = HPB__CURSOR_ENTRY__KIND_STEP_BEGIN;
        m->step_begin = x;
    } else if (strcmp(t, "step_end") == 0) {
        Hpb__StepEnd *x = enc_alloc(e, sizeof(*x));
        if (x == NULL) return NULL;
        hpb__step_end__init(x);
        struct jv *arc = jv_get(j, "affected_row_count");
        x->has_affected_row_count = 1;
        x->affected_row_count = jv_is_int(arc) && jv_int(arc) > 0 ? (uint64_t)jv_int(arc) : 0;
        int64_t rowid = 0;
        if (hrana__parse_i64(jv_str(jv_get(j, "last_insert_rowid")), &rowid)) {
            x->has_last_insert_rowid = 1;
            x->last_insert_rowid = rowid;
        }
        m->kind_case = HPB__CURSOR_ENTRY__KIND_STEP_END;
        m->step_end = x;
    } else if (strcmp(t, "step_error") == 0) {
        Hpb__StepError *x = enc_alloc(e, sizeof(*x));
        if (x == NULL) return NULL;
        hpb__step_error__init(x);
        struct jv *err = jv_get(j, "error");
        if (!jv_is_int(step) || !jv_is_obj(err)) return enc_bad(e);
        x->has_step = 1;
        x->step = (uint32_t)jv_int(step);
        if ((x->error = enc_error(e, err)) == NULL) return NULL;
        m->kind_case = HPB__CURSOR_ENTRY__KIND_STEP_ERROR;
        m->step_error = x;
    } else if (strcmp(t, "row") == 0) {
        struct jv *row = jv_get(j, "row");
        if (!jv_is_arr(row)) return enc_bad(e);
        Hpb__Row *x = enc_alloc(e, sizeof(*x));
        if (x == NULL) return NULL;
        hpb__row__init(x);
        size_t nv = jv_size(row);
        x->values = (Hpb__Value **)enc_ptrs(e, nv);
        if (nv > 0 && x->values == NULL) return NULL;
        for (size_t c = 0; c < nv; c++) {
            if ((x->values[c] = enc_value(e, jv_at(row, c))) == NULL) return NULL;
        }
        x->n_values = nv;
        m->kind_case = HPB__CURSOR_ENTRY__KIND_ROW;
        m->row = x;
    } else if (strcmp(t, "error") == 0) {
        struct jv *err = jv_get(j, "error");
        if (!jv_is_obj(err)) return enc_bad(e);
        m->kind_case = HPB__CURSOR_ENTRY__KIND_ERROR;
        if ((m->error = enc_error(e, err)) == NULL) return NULL;
    } else {
        return enc_bad(e);
    }
    return m;
}

/* Append msg to out with its length as a varint in front. */
static int put_delimited(struct edge_buf *out, const ProtobufCMessage *msg)
{
    size_t size = protobuf_c_message_get_packed_size(msg);
    uint8_t pre[10];
    size_t n = 0;
    size_t v = size;
    do {
        pre[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v > 0);
    int rv = edge_buf_reserve(out, n + size);
    if (rv != EDGE_OK) return rv;
    memcpy(out->data + out->len, pre, n);
    size_t wrote = protobuf_c_message_pack(msg, (uint8_t *)out->data + out->len + n);
    if (EDGE_NEVER(wrote != size)) return EDGE_EPROTO;
    out->len += n + size;
    out->data[out->len] = '\0';
    return EDGE_OK;
}

int hrana_pb_encode_cursor(const char *lines, size_t len, struct edge_buf *out)
{
    size_t mark = out->len;
    int rv = EDGE_OK;
    size_t off = 0;
    bool first = true;
    if (lines == NULL) lines = "";
    while (off < len && rv == EDGE_OK) {
        const char *nl = memchr(lines + off, '\n', len - off);
        size_t end = nl != NULL ? (size_t)(nl - lines) : len;
        if (end > off) {
            struct enc e;
            e.rv = EDGE_OK;
            pb_arena_init(&e.a, HRANA_PB_MAX_ARENA + 16 * (end - off));
            struct jv *doc = jv_parse(&e.a, lines + off, end - off);
            if (!jv_is_obj(doc)) {
                rv = EDGE_EPROTO;
            } else if (first) {
                Hpb__CursorResp resp = HPB__CURSOR_RESP__INIT;
                resp.baton = (char *)jv_str(jv_get(doc, "baton"));
                resp.base_url = (char *)jv_str(jv_get(doc, "base_url"));
                rv = put_delimited(out, &resp.base);
                first = false;
            } else {
                Hpb__CursorEntry *m = enc_entry(&e, doc);
                rv = m != NULL ? put_delimited(out, &m->base) : e.rv;
            }
            pb_arena_free_all(&e.a);
        }
        off = end + 1;
    }
    if (rv == EDGE_OK && first) rv = EDGE_EPROTO; /* not even the CursorRespBody line */
    if (rv != EDGE_OK) {
        out->len = mark;
        if (out->data) out->data[mark] = '\0';
    }
    return rv;
}
