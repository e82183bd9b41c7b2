/* SPDX-License-Identifier: MIT */
/* Unit tests of edge_sess_body_scan, the one-pass reader of a session PUT/POST body: it
 * must accept exactly what jansson's json_loadb (flags 0) accepts, and the data text it
 * copies out must be the same JSON value as jansson's tree of the body's "data". Checked
 * on hand-picked cases and on bounded random mutations of valid bodies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "sessions/sessions.h"

/* Scan body and compare with jansson: same acceptance; for an accepted object the same
 * data value and the same ttl_s kind. Returns whether it was accepted. */
static bool check_against_jansson(const char *body, size_t len)
{
    struct edge_buf data;
    edge_buf_init(&data, (size_t)1 << 24);
    struct edge_sess_body sb;
    char err[160];
    int rv = edge_sess_body_scan(body, len, &data, &sb, err, sizeof(err));
    json_error_t jerr;
    json_t *doc = json_loadb(body, len, 0, &jerr);
    if ((doc != NULL) != (rv == EDGE_OK)) {
        fprintf(stderr, "disagree (scan %d: %s; jansson %s) on:", rv, err, doc ? "ok" : jerr.text);
        for (size_t i = 0; i < len && i < 300; i++) fprintf(stderr, " %02x", (unsigned char)body[i]);
        fprintf(stderr, "\n");
    }
    assert_int_equal(doc != NULL, rv == EDGE_OK);
    if (doc != NULL) {
        assert_int_equal(sb.is_object, json_is_object(doc));
        json_t *d = json_object_get(doc, "data");
        assert_int_equal(sb.has_data, d != NULL);
        if (d != NULL) {
            assert_int_equal(sb.data_is_object, json_is_object(d));
            json_t *again = json_loadb(data.data, data.len, JSON_DECODE_ANY, &jerr);
            assert_non_null(again);
            assert_true(json_equal(again, d));
            /* no whitespace between tokens: as long as jansson's compact text, give or
             * take escapes and number spellings, never with a newline */
            assert_null(memchr(data.data, '\n', data.len));
            json_decref(again);
        }
        json_t *t = json_object_get(doc, "ttl_s");
        int want = t == NULL ? EDGE_SESS_TTL_ABSENT
                   : json_is_null(t) ? EDGE_SESS_TTL_NULL
                   : json_is_integer(t) ? EDGE_SESS_TTL_INT
                                        : EDGE_SESS_TTL_OTHER;
        assert_int_equal(sb.ttl, want);
        if (want == EDGE_SESS_TTL_INT) assert_true(sb.ttl_s == json_integer_value(t));
        json_decref(doc);
    } else {
        assert_true(err[0] != '\0');
    }
    edge_buf_free(&data);
    return rv == EDGE_OK;
}

static bool chk(const char *body) { return check_against_jansson(body, strlen(body)); }

static void test_accepts(void **state)
{
    (void)state;
    assert_true(chk("{\"data\":{}}"));
    assert_true(chk(" \r\n\t{ \"data\" : { \"a\" : [ 1 , -2.5e3 , true , false , null , \"x\" ] } , \"ttl_s\" : 60 } \n"));
    assert_true(chk("{\"ttl_s\":null,\"data\":{\"k\":\"caf\\u00e9 \\ud83d\\ude00 \\\" \\\\ \\/ \\b\\f\\n\\r\\t\"}}"));
    assert_true(chk("{\"data\":{\"u\":\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"}}"));
    assert_true(chk("{\"data\":{\"a\":1},\"data\":{\"b\":2}}")); /* the last one wins */
    assert_true(chk("{\"data\":[1,2]}"));
    assert_true(chk("{\"data\":{},\"ttl_s\":1.5}"));
    assert_true(chk("{\"data\":{},\"ttl_s\":\"60\"}"));
    assert_true(chk("{\"data\":{},\"ttl_s\":-9223372036854775808}"));
    assert_true(chk("{\"data\":{\"tiny\":1e-400,\"z\":-0,\"e\":0E+0}}"));
    assert_true(chk("[1,{\"data\":{}}]"));
    assert_true(chk("{}"));
    assert_true(chk("{\"other\":{\"data\":5}}"));
    /* deep but within jansson's limit */
    char deep[2 * 300 + 32];
    size_t o = (size_t)snprintf(deep, sizeof(deep), "{\"data\":");
    for (int i = 0; i < 300; i++) deep[o++] = '[';
    for (int i = 0; i < 300; i++) deep[o++] = ']';
    deep[o++] = '}';
    deep[o] = '\0';
    assert_true(chk(deep));

    /* the data text is compact and round-trips */
    struct edge_buf data;
    edge_buf_init(&data, 1 << 20);
    struct edge_sess_body sb;
    char err[160];
    const char *b = "{ \"data\" : { \"a\" : [ 1 , \"b c\" ] , \"d\" : { } } }";
    assert_int_equal(edge_sess_body_scan(b, strlen(b), &data, &sb, err, sizeof(err)), EDGE_OK);
    assert_string_equal(data.data, "{\"a\":[1,\"b c\"],\"d\":{}}");
    edge_buf_free(&data);
}

static void test_refuses(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "", " ", "{", "}", "{\"data\": {", "{nope", "[1", "{\"data\":{}} x", "{\"data\":{}}}", "{\"data\" {}}",
        "{\"data\":{},}", "{,\"data\":{}}", "{\"data\":{\"a\":01}}", "{\"data\":{\"a\":1.}}", "{\"data\":{\"a\":.5}}",
        "{\"data\":{\"a\":1e}}", "{\"data\":{\"a\":-}}", "{\"data\":{\"a\":+1}}", "{\"data\":{\"a\":tru}}",
        "{\"data\":{\"a\":nul}}", "{\"data\":{\"a\":\"\\x\"}}", "{\"data\":{\"a\":\"\\u12\"}}",
        "{\"data\":{\"a\":\"\\u0000\"}}", "{\"data\":{\"a\":\"\\ud800\"}}", "{\"data\":{\"a\":\"\\udc00\"}}",
        "{\"data\":{\"a\":\"\\ud800\\u0041\"}}", "{\"data\":{\"a\":\"\t\"}}", "{\"data\":{\"a\":\"\xc3\"}}",
        "{\"data\":{\"a\":\"\xc0\xaf\"}}", "{\"data\":{\"a\":\"\xed\xa0\x80\"}}", "{\"data\":{\"a\":\"\xf4\x90\x80\x80\"}}",
        "{\"data\":{\"a\":\"\xff\"}}", "{\"data\":{\"a\":9223372036854775808}}", "{\"data\":{\"a\":1e400}}",
        "{\"data\":{\"a\":-1e400}}", "{\"data\":{\"a\":'x'}}", "{data:{}}", "\"data\"", "42", "null",
        "{\"data\":{\"a\":\"unterminated}}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) assert_false(chk(bad[i]));
    assert_false(check_against_jansson("{\"data\":{\"a\":\"\0\"}}", sizeof("{\"data\":{\"a\":\"\0\"}}") - 1));
    assert_false(check_against_jansson("{\"data\":{}}\0", 12));
    /* jansson would skip this NUL (see test_mutations_agree); the scan refuses it */
    struct edge_buf data;
    edge_buf_init(&data, 1 << 20);
    struct edge_sess_body sb;
    char err[160];
    assert_int_equal(edge_sess_body_scan("{\"data\":{\"a\":2\0}}", sizeof("{\"data\":{\"a\":2\0}}") - 1, &data, &sb, err, sizeof(err)), EDGE_EINVAL);
    edge_buf_free(&data);
    /* deeper than jansson's limit */
    size_t n = 5000;
    char *deep = malloc(2 * n + 16);
    assert_non_null(deep);
    size_t o = (size_t)snprintf(deep, 16, "{\"data\":");
    for (size_t i = 0; i < n; i++) deep[o++] = '[';
    for (size_t i = 0; i < n; i++) deep[o++] = ']';
    deep[o++] = '}';
    assert_false(check_against_jansson(deep, o));
    free(deep);
}

/* Random single- and multi-byte mutations of valid bodies: scan and jansson agree on
 * every one (bounded: a fixed seed and count). */
static void test_mutations_agree(void **state)
{
    (void)state;
    static const char *const seeds[] = {
        "{\"data\":{\"user\":{\"id\":4711,\"name\":\"Ann \\u00e9\"},\"roles\":[\"a\",\"b\"],\"n\":-1.25e-3,"
        "\"f\":true,\"g\":false,\"h\":null},\"ttl_s\":3600}",
        "{ \"ttl_s\" : null , \"data\" : { \"cart\" : [ { \"sku\" : \"S-1\" , \"qty\" : 2 } ] , \"\xc3\xa9\" : \"\xf0\x9f\x98\x80\" } }",
    };
    static const char alphabet[] = "{}[]:,\"\\ 0123456789.eE+-tfnulrsa\x00\x01\x7f\xc3\xa9\xed\xf0\x80\xff";
    uint32_t x = 12345;
    int accepted = 0, refused = 0;
    for (int iter = 0; iter < 40000; iter++) {
        const char *seed = seeds[iter % 2];
        size_t len = strlen(seed);
        char buf[512];
        memcpy(buf, seed, len);
        x = x * 1103515245u + 12345u;
        int edits = 1 + (int)((x >> 16) % 3);
        for (int e = 0; e < edits; e++) {
            x = x * 1103515245u + 12345u;
            size_t pos = (x >> 8) % len;
            x = x * 1103515245u + 12345u;
            int op = (int)((x >> 16) % 3);
            char c = alphabet[(x >> 4) % (sizeof(alphabet) - 1)];
            if (op == 0) {
                buf[pos] = c;
            } else if (op == 1 && len > 1) {
                memmove(buf + pos, buf + pos + 1, len - pos - 1);
                len--;
            } else if (len + 1 < sizeof(buf)) {
                memmove(buf + pos + 1, buf + pos, len - pos);
                buf[pos] = c;
                len++;
            }
        }
        if (memchr(buf, '\0', len) != NULL) {
            /* Never JSON. jansson drops a NUL byte right after a number or a literal (its
             * read buffer takes the byte it pushed back for its own end), so it is no
             * reference here: the scan refuses every such body. */
            struct edge_buf data;
            edge_buf_init(&data, 1 << 20);
            struct edge_sess_body sb;
            char err[160];
            assert_int_equal(edge_sess_body_scan(buf, len, &data, &sb, err, sizeof(err)), EDGE_EINVAL);
            edge_buf_free(&data);
            refused++;
        } else if (check_against_jansson(buf, len)) {
            accepted++;
        } else {
            refused++;
        }
    }
    /* both outcomes were exercised */
    assert_true(accepted > 100);
    assert_true(refused > 100);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepts),
        cmocka_unit_test(test_refuses),
        cmocka_unit_test(test_mutations_agree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
