/* SPDX-License-Identifier: MIT */
/* Hrana's protobuf codec (src/api/hrana/pb.c). Requests are packed with the generated
 * code (as a client would send them) and the decoded tree is compared with the JSON a
 * JSON client would send; responses are encoded from the JSON execution writes and
 * unpacked again with the generated code. */
#include <jansson.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api/hrana.h"
#include "api/hrana/hrana.pb-c.h"
#include "api/hrana/pb.h"
#include "api/hrana/pb_int.h"
#include "core/buf.h"

#define BRACKETS "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
#define CLOSERS "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"

/* Pack a PipelineReq into a malloc'd buffer. */
static uint8_t *pack_req(const Hpb__PipelineReq *m, size_t *len)
{
    *len = hpb__pipeline_req__get_packed_size(m);
    uint8_t *p = malloc(*len + 1);
    assert_non_null(p);
    assert_int_equal(hpb__pipeline_req__pack(m, p), *len);
    return p;
}

static void assert_json_eq(json_t *got, const char *want_text)
{
    json_error_t jerr;
    json_t *want = json_loads(want_text, JSON_ALLOW_NUL, &jerr);
    assert_non_null(want);
    if (!json_equal(got, want)) {
        char *g = json_dumps(got, JSON_SORT_KEYS | JSON_COMPACT);
        char *w = json_dumps(want, JSON_SORT_KEYS | JSON_COMPACT);
        print_error("got  %s\nwant %s\n", g, w);
        free(g);
        free(w);
        fail();
    }
    json_decref(want);
}

static void test_decode_execute_values(void **state)
{
    (void)state;
    Hpb__Empty empty = HPB__EMPTY__INIT;
    Hpb__Value v[6];
    for (int i = 0; i < 6; i++) hpb__value__init(&v[i]);
    v[0].kind_case = HPB__VALUE__KIND_NULL;
    v[0].null = &empty;
    v[1].kind_case = HPB__VALUE__KIND_INTEGER;
    v[1].integer = INT64_MIN;
    v[2].kind_case = HPB__VALUE__KIND_REAL;
    v[2].real = 1.5;
    v[3].kind_case = HPB__VALUE__KIND_TEXT;
    v[3].text.data = (uint8_t *)"a\0\xc3\xbc";
    v[3].text.len = 4;
    v[4].kind_case = HPB__VALUE__KIND_BLOB;
    v[4].blob.data = (uint8_t *)"\x00\xff";
    v[4].blob.len = 2;
    v[5].kind_case = HPB__VALUE__KIND_INTEGER;
    v[5].integer = INT64_MAX;
    Hpb__Value *args[] = {&v[0], &v[1], &v[2], &v[3], &v[4]};
    Hpb__NamedArg na = HPB__NAMED_ARG__INIT;
    na.name = ":n";
    na.value = &v[5];
    Hpb__NamedArg *nas[] = {&na};
    Hpb__Stmt st = HPB__STMT__INIT;
    st.has_sql = 1;
    st.sql.data = (uint8_t *)"SELECT ?, ?, ?, ?, ?, :n";
    st.sql.len = strlen((char *)st.sql.data);
    st.n_args = 5;
    st.args = args;
    st.n_named_args = 1;
    st.named_args = nas;
    st.has_want_rows = 1;
    st.want_rows = 1;
    Hpb__ExecuteReq ex = HPB__EXECUTE_REQ__INIT;
    ex.stmt = &st;
    Hpb__Request r0 = HPB__REQUEST__INIT, r1 = HPB__REQUEST__INIT;
    r0.kind_case = HPB__REQUEST__KIND_EXECUTE;
    r0.execute = &ex;
    r1.kind_case = HPB__REQUEST__KIND_CLOSE;
    r1.close = &empty;
    Hpb__Request *reqs[] = {&r0, &r1};
    Hpb__PipelineReq body = HPB__PIPELINE_REQ__INIT;
    body.n_requests = 2;
    body.requests = reqs;
    size_t len = 0;
    uint8_t *wire = pack_req(&body, &len);

    json_t *got = NULL;
    char err[256] = "";
    assert_int_equal(hrana_pb_decode_pipeline(wire, len, &got, err, sizeof(err)), EDGE_OK);
    assert_json_eq(got, "{\"baton\":null,\"requests\":[{\"type\":\"execute\",\"stmt\":{"
                        "\"sql\":\"SELECT ?, ?, ?, ?, ?, :n\",\"want_rows\":true,"
                        "\"args\":[{\"type\":\"null\"},{\"type\":\"integer\",\"value\":-9223372036854775808},"
                        "{\"type\":\"float\",\"value\":1.5},{\"type\":\"text\",\"value\":\"a\\u0000\\u00fc\"},"
                        "{\"type\":\"blob\",\"base64\":\"AP8=\"}],"
                        "\"named_args\":[{\"name\":\":n\","
                        "\"value\":{\"type\":\"integer\",\"value\":9223372036854775807}}]}},"
                        "{\"type\":\"close\"}]}");
    assert_int_equal(hrana_validate_pipeline(got, 3, err, sizeof(err)), EDGE_OK);
    json_decref(got);

    /* Every strict prefix that cuts into the execute request is refused, with a reason
     * and nothing returned. */
    size_t close_len = 4; /* the close request is the last 4 bytes */
    for (size_t cut = 1; cut + close_len < len; cut++) {
        got = (json_t *)1;
        err[0] = '\0';
        int rv = hrana_pb_decode_pipeline(wire, len - close_len - cut, &got, err, sizeof(err));
        assert_int_equal(rv, EDGE_EPROTO);
        assert_null(got);
        assert_true(strlen(err) > 0);
    }
    free(wire);
}

static void test_decode_batch_conditions(void **state)
{
    (void)state;
    Hpb__Empty empty = HPB__EMPTY__INIT;
    Hpb__Cond ok0 = HPB__COND__INIT, err1 = HPB__COND__INIT, ac = HPB__COND__INIT, neg = HPB__COND__INIT;
    Hpb__Cond all = HPB__COND__INIT, any = HPB__COND__INIT;
    ok0.kind_case = HPB__COND__KIND_STEP_OK;
    ok0.step_ok = 0;
    err1.kind_case = HPB__COND__KIND_STEP_ERROR;
    err1.step_error = 1;
    ac.kind_case = HPB__COND__KIND_IS_AUTOCOMMIT;
    ac.is_autocommit = &empty;
    neg.kind_case = HPB__COND__KIND_NEGATE;
    neg.negate = &ac;
    Hpb__Cond *l1[] = {&ok0, &neg};
    Hpb__CondList cl1 = HPB__COND_LIST__INIT;
    cl1.n_conds = 2;
    cl1.conds = l1;
    all.kind_case = HPB__COND__KIND_ALL;
    all.all = &cl1;
    Hpb__Cond *l2[] = {&err1, &all};
    Hpb__CondList cl2 = HPB__COND_LIST__INIT;
    cl2.n_conds = 2;
    cl2.conds = l2;
    any.kind_case = HPB__COND__KIND_ANY;
    any.any = &cl2;
    Hpb__Stmt s[3];
    Hpb__BatchStep st[3];
    const char *sqls[] = {"BEGIN", "SELECT 1", "COMMIT"};
    Hpb__BatchStep *steps[3];
    for (int i = 0; i < 3; i++) {
        hpb__stmt__init(&s[i]);
        s[i].has_sql = 1;
        s[i].sql.data = (uint8_t *)sqls[i];
        s[i].sql.len = strlen(sqls[i]);
        hpb__batch_step__init(&st[i]);
        st[i].stmt = &s[i];
        steps[i] = &st[i];
    }
    st[1].condition = &ok0;
    st[2].condition = &any;
    Hpb__Batch b = HPB__BATCH__INIT;
    b.n_steps = 3;
    b.steps = steps;
    Hpb__BatchReq br = HPB__BATCH_REQ__INIT;
    br.batch = &b;
    /* store_sql without its (non-optional) fields: proto3 defaults, sql_id 0 and "". */
    Hpb__StoreSqlReq ss = HPB__STORE_SQL_REQ__INIT;
    Hpb__SqlReq seq = HPB__SQL_REQ__INIT;
    seq.has_sql_id = 1;
    seq.sql_id = 0;
    Hpb__Request r[4];
    for (int i = 0; i < 4; i++) hpb__request__init(&r[i]);
    r[0].kind_case = HPB__REQUEST__KIND_BATCH;
    r[0].batch = &br;
    r[1].kind_case = HPB__REQUEST__KIND_STORE_SQL;
    r[1].store_sql = &ss;
    r[2].kind_case = HPB__REQUEST__KIND_SEQUENCE;
    r[2].sequence = &seq;
    r[3].kind_case = HPB__REQUEST__KIND_GET_AUTOCOMMIT;
    r[3].get_autocommit = &empty;
    Hpb__Request *reqs[] = {&r[0], &r[1], &r[2], &r[3]};
    Hpb__PipelineReq body = HPB__PIPELINE_REQ__INIT;
    body.baton = "b1";
    body.n_requests = 4;
    body.requests = reqs;
    size_t len = 0;
    uint8_t *wire = pack_req(&body, &len);
    json_t *got = NULL;
    char err[256];
    assert_int_equal(hrana_pb_decode_pipeline(wire, len, &got, err, sizeof(err)), EDGE_OK);
    assert_json_eq(got, "{\"baton\":\"b1\",\"requests\":["
                        "{\"type\":\"batch\",\"batch\":{\"steps\":["
                        "{\"stmt\":{\"sql\":\"BEGIN\"}},"
                        "{\"condition\":{\"type\":\"ok\",\"step\":0},\"stmt\":{\"sql\":\"SELECT 1\"}},"
                        "{\"condition\":{\"type\":\"or\",\"conds\":[{\"type\":\"error\",\"step\":1},"
                        "{\"type\":\"and\",\"conds\":[{\"type\":\"ok\",\"step\":0},"
                        "{\"type\":\"not\",\"cond\":{\"type\":\"is_autocommit\"}}]}]},"
                        "\"stmt\":{\"sql\":\"COMMIT\"}}]}},"
                        "{\"type\":\"store_sql\",\"sql_id\":0,\"sql\":\"\"},"
                        "{\"type\":\"sequence\",\"sql_id\":0},"
                        "{\"type\":\"get_autocommit\"}]}");
    assert_int_equal(hrana_validate_pipeline(got, 3, err, sizeof(err)), EDGE_OK);
    json_decref(got);
    free(wire);
}

static void test_decode_refuses(void **state)
{
    (void)state;
    json_t *got = NULL;
    char err[256];
    /* Not protobuf at all. */
    const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    assert_int_equal(hrana_pb_decode_pipeline(junk, sizeof(junk), &got, err, sizeof(err)), EDGE_EPROTO);
    assert_null(got);
    /* A length running past the end. */
    const uint8_t past[] = {0x12, 0x7f, 0x0a};
    assert_int_equal(hrana_pb_decode_pipeline(past, sizeof(past), &got, err, sizeof(err)), EDGE_EPROTO);
    /* Nested conditions past the depth limit: refused before protobuf-c recurses. */
    uint8_t *deep = malloc(64 * 1024);
    size_t n = 0;
    deep[n++] = 0x32; /* is_autocommit = Empty (field 6) */
    deep[n++] = 0x00;
    for (int i = 0; i < 2 * HRANA_PB_MAX_DEPTH; i++) {
        /* wrap: field 3 (negate), length n */
        uint8_t hdr[6];
        size_t h = 0;
        hdr[h++] = 0x1a;
        size_t l = n;
        do {
            hdr[h++] = (uint8_t)((l & 0x7f) | (l > 0x7f ? 0x80 : 0));
            l >>= 7;
        } while (l > 0);
        memmove(deep + h, deep, n);
        memcpy(deep, hdr, h);
        n += h;
    }
    /* PipelineReq.requests(2) > Request.batch(3) > BatchReq.batch(1) > Batch.steps(1) > BatchStep.condition(1) */
    const uint8_t tags[] = {0x0a, 0x0a, 0x0a, 0x1a, 0x12};
    for (size_t t = 0; t < sizeof(tags); t++) {
        uint8_t hdr[6];
        size_t h = 0;
        hdr[h++] = tags[t];
        size_t l = n;
        do {
            hdr[h++] = (uint8_t)((l & 0x7f) | (l > 0x7f ? 0x80 : 0));
            l >>= 7;
        } while (l > 0);
        memmove(deep + h, deep, n);
        memcpy(deep, hdr, h);
        n += h;
    }
    assert_int_equal(hrana_pb_decode_pipeline(deep, n, &got, err, sizeof(err)), EDGE_EPROTO);
    assert_non_null(strstr(err, "nested"));
    assert_null(got);
    free(deep);

    /* SQL that is not UTF-8, a float that is not finite, a value with no kind. */
    Hpb__Stmt st = HPB__STMT__INIT;
    st.has_sql = 1;
    st.sql.data = (uint8_t *)"SELECT \xc3\x28";
    st.sql.len = 9;
    Hpb__ExecuteReq ex = HPB__EXECUTE_REQ__INIT;
    ex.stmt = &st;
    Hpb__Request r = HPB__REQUEST__INIT;
    r.kind_case = HPB__REQUEST__KIND_EXECUTE;
    r.execute = &ex;
    Hpb__Request *reqs[] = {&r};
    Hpb__PipelineReq body = HPB__PIPELINE_REQ__INIT;
    body.n_requests = 1;
    body.requests = reqs;
    size_t len = 0;
    uint8_t *wire = pack_req(&body, &len);
    assert_int_equal(hrana_pb_decode_pipeline(wire, len, &got, err, sizeof(err)), EDGE_EPROTO);
    assert_non_null(strstr(err, "UTF-8"));
    free(wire);

    st.sql.data = (uint8_t *)"SELECT ?";
    st.sql.len = 8;
    Hpb__Value v = HPB__VALUE__INIT;
    v.kind_case = HPB__VALUE__KIND_REAL;
    v.real = INFINITY;
    Hpb__Value *args[] = {&v};
    st.n_args = 1;
    st.args = args;
    wire = pack_req(&body, &len);
    assert_int_equal(hrana_pb_decode_pipeline(wire, len, &got, err, sizeof(err)), EDGE_EPROTO);
    assert_non_null(strstr(err, "finite"));
    free(wire);

    v.kind_case = HPB__VALUE__KIND__NOT_SET;
    wire = pack_req(&body, &len);
    assert_int_equal(hrana_pb_decode_pipeline(wire, len, &got, err, sizeof(err)), EDGE_EPROTO);
    free(wire);

    /* A request of a kind this server does not know (field 9 of StreamRequest). */
    const uint8_t unknown[] = {0x12, 0x02, 0x4a, 0x00};
    assert_int_equal(hrana_pb_decode_pipeline(unknown, sizeof(unknown), &got, err, sizeof(err)), EDGE_EPROTO);
    assert_non_null(strstr(err, "unknown request"));

    /* Unknown fields elsewhere are ignored (forward compatibility): field 15 varint at the top. */
    const uint8_t extra[] = {0x78, 0x01, 0x12, 0x02, 0x0a, 0x00};
    assert_int_equal(hrana_pb_decode_pipeline(extra, sizeof(extra), &got, err, sizeof(err)), EDGE_OK);
    assert_json_eq(got, "{\"baton\":null,\"requests\":[{\"type\":\"close\"}]}");
    json_decref(got);
}

static Hpb__PipelineResp *encode(const char *json)
{
    struct edge_buf out;
    edge_buf_init(&out, 1 << 20);
    assert_int_equal(hrana_pb_encode_pipeline(json, strlen(json), &out), EDGE_OK);
    Hpb__PipelineResp *m = hpb__pipeline_resp__unpack(NULL, out.len, (const uint8_t *)out.data);
    assert_non_null(m);
    edge_buf_free(&out);
    return m;
}

static void test_encode_results(void **state)
{
    (void)state;
    Hpb__PipelineResp *m = encode(
        "{\"baton\":\"tok\",\"base_url\":null,\"results\":["
        "{\"type\":\"ok\",\"response\":{\"type\":\"execute\",\"result\":{"
        "\"cols\":[{\"name\":\"a\",\"decltype\":\"INTEGER\"},{\"name\":\"b\",\"decltype\":null}],"
        "\"rows\":[[{\"type\":\"integer\",\"value\":\"-9223372036854775808\"},"
        "{\"type\":\"text\",\"value\":\"x\\u0000y\"}],"
        "[{\"type\":\"float\",\"value\":0.1},{\"type\":\"blob\",\"base64\":\"AP8=\"}],"
        "[{\"type\":\"null\"},{\"type\":\"float\",\"value\":null}]],"
        "\"affected_row_count\":3,\"last_insert_rowid\":\"9007199254740993\",\"rows_read\":3,\"rows_written\":0}}},"
        "{\"type\":\"error\",\"error\":{\"message\":\"no such table: x\",\"code\":\"SQLITE_ERROR\"}},"
        "{\"type\":\"ok\",\"response\":{\"type\":\"batch\",\"result\":{"
        "\"step_results\":[{\"cols\":[],\"rows\":[],\"affected_row_count\":0,\"last_insert_rowid\":null},null,null],"
        "\"step_errors\":[null,{\"message\":\"boom\",\"code\":\"SQLITE_CONSTRAINT\"},null]}}},"
        "{\"type\":\"ok\",\"response\":{\"type\":\"describe\",\"result\":{"
        "\"params\":[{\"name\":null},{\"name\":\":x\"}],"
        "\"cols\":[{\"name\":\"c\",\"decltype\":null}],\"is_explain\":false,\"is_readonly\":true}}},"
        "{\"type\":\"ok\",\"response\":{\"type\":\"get_autocommit\",\"is_autocommit\":false}},"
        "{\"type\":\"ok\",\"response\":{\"type\":\"close\"}}]}");
    assert_string_equal(m->baton, "tok");
    assert_null(m->base_url);
    assert_int_equal(m->n_results, 6);

    assert_int_equal(m->results[0]->kind_case, HPB__RESULT__KIND_OK);
    Hpb__StmtResult *r = m->results[0]->ok->execute->result;
    assert_int_equal(r->n_cols, 2);
    assert_string_equal(r->cols[0]->decltype, "INTEGER");
    assert_null(r->cols[1]->decltype);
    assert_int_equal(r->n_rows, 3);
    assert_int_equal(r->rows[0]->values[0]->kind_case, HPB__VALUE__KIND_INTEGER);
    assert_true(r->rows[0]->values[0]->integer == INT64_MIN);
    assert_int_equal(r->rows[0]->values[1]->text.len, 3);
    assert_memory_equal(r->rows[0]->values[1]->text.data, "x\0y", 3);
    assert_true(r->rows[1]->values[0]->real == 0.1);
    assert_int_equal(r->rows[1]->values[1]->blob.len, 2);
    assert_memory_equal(r->rows[1]->values[1]->blob.data, "\x00\xff", 2);
    assert_int_equal(r->rows[2]->values[0]->kind_case, HPB__VALUE__KIND_NULL);
    assert_int_equal(r->rows[2]->values[1]->kind_case, HPB__VALUE__KIND_NULL);
    assert_int_equal(r->affected_row_count, 3);
    assert_true(r->has_last_insert_rowid && r->last_insert_rowid == 9007199254740993LL);

    assert_int_equal(m->results[1]->kind_case, HPB__RESULT__KIND_ERROR);
    assert_string_equal(m->results[1]->error->message, "no such table: x");
    assert_string_equal(m->results[1]->error->code, "SQLITE_ERROR");

    Hpb__BatchResult *b = m->results[2]->ok->batch->result;
    assert_int_equal(b->n_step_results, 1);
    assert_int_equal(b->step_results[0]->key, 0);
    assert_false(b->step_results[0]->value->has_last_insert_rowid);
    assert_int_equal(b->n_step_errors, 1);
    assert_int_equal(b->step_errors[0]->key, 1);
    assert_string_equal(b->step_errors[0]->value->code, "SQLITE_CONSTRAINT");

    Hpb__DescribeResult *d = m->results[3]->ok->describe->result;
    assert_int_equal(d->n_params, 2);
    assert_null(d->params[0]->name);
    assert_string_equal(d->params[1]->name, ":x");
    assert_true(d->is_readonly);
    assert_false(d->is_explain);

    assert_int_equal(m->results[4]->ok->kind_case, HPB__RESPONSE__KIND_GET_AUTOCOMMIT);
    assert_false(m->results[4]->ok->get_autocommit->is_autocommit);
    assert_int_equal(m->results[5]->ok->kind_case, HPB__RESPONSE__KIND_CLOSE);
    hpb__pipeline_resp__free_unpacked(m, NULL);
}

/* The JSON reader: escapes, surrogate pairs, numbers at the edges of double. */
static void test_encode_reads_json_fully(void **state)
{
    (void)state;
    Hpb__PipelineResp *m = encode(
        " {\"results\" : [ {\"type\":\"ok\",\"response\":{\"type\":\"execute\",\"result\":{\"cols\":[],"
        "\"rows\":[[{\"type\":\"float\",\"value\":4.9406564584124654e-324},{\"type\":\"float\",\"value\":-1e+300},"
        "{\"type\":\"float\",\"value\":3},{\"type\":\"text\",\"value\":\"\\ud83d\\ude00\\u00e9\\/\\\"\\\\\\n\"}]],"
        "\"affected_row_count\":0,\"last_insert_rowid\":null}}} ] }\n");
    Hpb__Row *row = m->results[0]->ok->execute->result->rows[0];
    assert_true(row->values[0]->real == 5e-324);
    assert_true(row->values[1]->real == -1e300);
    assert_true(row->values[2]->real == 3.0);
    const char want[] = "\xf0\x9f\x98\x80\xc3\xa9/\"\\\n";
    assert_int_equal(row->values[3]->text.len, sizeof(want) - 1);
    assert_memory_equal(row->values[3]->text.data, want, sizeof(want) - 1);
    hpb__pipeline_resp__free_unpacked(m, NULL);
    /* A lone surrogate, a bad escape, trailing junk, nesting past the limit: not JSON. */
    char deep[2 * JV_MAX_DEPTH + 64], ok_deep[2 * JV_MAX_DEPTH + 64];
    int k = JV_MAX_DEPTH + 1, d = JV_MAX_DEPTH - 2; /* the members' depth counts the object */
    snprintf(deep, sizeof(deep), "{\"results\":[],\"x\":%.*s%.*s}", k, BRACKETS, k, CLOSERS);
    snprintf(ok_deep, sizeof(ok_deep), "{\"results\":[],\"x\":%.*s%.*s}", d, BRACKETS, d, CLOSERS);
    const char *bad[] = {"{\"results\":[],\"x\":\"\\udc00\"}", "{\"results\":[],\"x\":\"\\q\"}",
                         "{\"results\":[]} x", deep};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct edge_buf out;
        edge_buf_init(&out, 1 << 20);
        assert_int_equal(hrana_pb_encode_pipeline(bad[i], strlen(bad[i]), &out), EDGE_EPROTO);
        edge_buf_free(&out);
    }
    struct edge_buf out;
    edge_buf_init(&out, 1 << 20);
    assert_int_equal(hrana_pb_encode_pipeline(ok_deep, strlen(ok_deep), &out), EDGE_OK);
    edge_buf_free(&out);
}

static void test_encode_refuses_other_shapes(void **state)
{
    (void)state;
    const char *bad[] = {
        "",
        "not json",
        "[]",
        "{\"results\":{}}",
        "{\"results\":[{\"type\":\"maybe\"}]}",
        "{\"results\":[{\"type\":\"ok\",\"response\":{\"type\":\"execute\",\"result\":null}}]}",
        "{\"results\":[{\"type\":\"ok\",\"response\":{\"type\":\"execute\",\"result\":{\"rows\":[["
        "{\"type\":\"integer\",\"value\":\"12x\"}]]}}}]}",
        "{\"results\":[{\"type\":\"ok\",\"response\":{\"type\":\"execute\",\"result\":{\"rows\":[[{\"type\":\"blob\","
        "\"base64\":\"***\"}]]}}}]}",
        "{\"results\":[{\"type\":\"error\",\"error\":\"text\"}]}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct edge_buf out;
        edge_buf_init(&out, 1 << 20);
        edge_buf_puts(&out, "keep");
        assert_int_equal(hrana_pb_encode_pipeline(bad[i], strlen(bad[i]), &out), EDGE_EPROTO);
        assert_int_equal(out.len, 4); /* unchanged */
        edge_buf_free(&out);
    }
    /* Too large for the buffer's cap: ETOOBIG, unchanged. */
    struct edge_buf small;
    edge_buf_init(&small, 8);
    const char *ok = "{\"baton\":\"a-long-baton-string\",\"results\":[]}";
    assert_int_equal(hrana_pb_encode_pipeline(ok, strlen(ok), &small), EDGE_ETOOBIG);
    assert_int_equal(small.len, 0);
    edge_buf_free(&small);
}

static void test_cursor_codec(void **state)
{
    (void)state;
    /* CursorReqBody { baton, batch { steps: [ { stmt { sql } } ] } } */
    Hpb__Stmt st = HPB__STMT__INIT;
    st.has_sql = 1;
    st.sql.data = (uint8_t *)"SELECT 1";
    st.sql.len = 8;
    Hpb__BatchStep step = HPB__BATCH_STEP__INIT;
    step.stmt = &st;
    Hpb__BatchStep *steps[] = {&step};
    Hpb__Batch b = HPB__BATCH__INIT;
    b.n_steps = 1;
    b.steps = steps;
    Hpb__CursorReq req = HPB__CURSOR_REQ__INIT;
    req.baton = "bt";
    req.batch = &b;
    size_t len = hpb__cursor_req__get_packed_size(&req);
    uint8_t *wire = malloc(len);
    hpb__cursor_req__pack(&req, wire);
    json_t *got = NULL;
    char err[256];
    assert_int_equal(hrana_pb_decode_cursor(wire, len, &got, err, sizeof(err)), EDGE_OK);
    assert_json_eq(got, "{\"baton\":\"bt\",\"batch\":{\"steps\":[{\"stmt\":{\"sql\":\"SELECT 1\"}}]}}");
    json_decref(got);
    assert_int_equal(hrana_pb_decode_cursor(wire, len - 1, &got, err, sizeof(err)), EDGE_EPROTO);
    assert_null(got);
    free(wire);

    const char *lines = "{\"baton\":\"b2\",\"base_url\":null}\n"
                        "{\"type\":\"step_begin\",\"step\":0,\"cols\":[{\"name\":\"a\",\"decltype\":null}]}\n"
                        "{\"type\":\"row\",\"row\":[{\"type\":\"integer\",\"value\":\"-2\"}]}\n"
                        "{\"type\":\"step_end\",\"affected_row_count\":0,\"last_insert_rowid\":\"5\"}\n"
                        "{\"type\":\"step_error\",\"step\":1,\"error\":{\"message\":\"m\",\"code\":\"C\"}}\n"
                        "{\"type\":\"error\",\"error\":{\"message\":\"end\"}}\n";
    struct edge_buf out;
    edge_buf_init(&out, 1 << 20);
    assert_int_equal(hrana_pb_encode_cursor(lines, strlen(lines), &out), EDGE_OK);
    /* Read the length-delimited messages back. */
    const uint8_t *p = (const uint8_t *)out.data, *end = p + out.len;
    int kinds[6];
    int n = 0;
    while (p < end) {
        size_t l = 0;
        unsigned shift = 0;
        while (*p & 0x80) l |= (size_t)(*p++ & 0x7f) << shift, shift += 7;
        l |= (size_t)*p++ << shift;
        assert_true(l <= (size_t)(end - p));
        if (n == 0) {
            Hpb__CursorResp *r = hpb__cursor_resp__unpack(NULL, l, p);
            assert_non_null(r);
            assert_string_equal(r->baton, "b2");
            assert_null(r->base_url);
            hpb__cursor_resp__free_unpacked(r, NULL);
            kinds[n++] = 0;
        } else {
            Hpb__CursorEntry *en = hpb__cursor_entry__unpack(NULL, l, p);
            assert_non_null(en);
            kinds[n++] = (int)en->kind_case;
            if (en->kind_case == HPB__CURSOR_ENTRY__KIND_ROW) assert_true(en->row->values[0]->integer == -2);
            if (en->kind_case == HPB__CURSOR_ENTRY__KIND_STEP_END) assert_true(en->step_end->last_insert_rowid == 5);
            if (en->kind_case == HPB__CURSOR_ENTRY__KIND_STEP_ERROR) assert_int_equal(en->step_error->step, 1);
            hpb__cursor_entry__free_unpacked(en, NULL);
        }
        p += l;
        assert_true(n <= 6);
    }
    assert_int_equal(n, 6);
    assert_int_equal(kinds[1], HPB__CURSOR_ENTRY__KIND_STEP_BEGIN);
    assert_int_equal(kinds[2], HPB__CURSOR_ENTRY__KIND_ROW);
    assert_int_equal(kinds[3], HPB__CURSOR_ENTRY__KIND_STEP_END);
    assert_int_equal(kinds[4], HPB__CURSOR_ENTRY__KIND_STEP_ERROR);
    assert_int_equal(kinds[5], HPB__CURSOR_ENTRY__KIND_ERROR);
    /* A line that is not an entry: nothing appended. */
    size_t before = out.len;
    const char *bad = "{\"baton\":null}\n{\"type\":\"rows\"}\n";
    assert_int_equal(hrana_pb_encode_cursor(bad, strlen(bad), &out), EDGE_EPROTO);
    assert_int_equal(out.len, before);
    edge_buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_execute_values),
        cmocka_unit_test(test_decode_batch_conditions),
        cmocka_unit_test(test_decode_refuses),
        cmocka_unit_test(test_encode_results),
        cmocka_unit_test(test_encode_reads_json_fully),
        cmocka_unit_test(test_encode_refuses_other_shapes),
        cmocka_unit_test(test_cursor_codec),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
