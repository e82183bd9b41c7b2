/* SPDX-License-Identifier: MIT */
/* Unit tests of src/core: errors, allocator fault injection, buffers, JSON escaping,
 * base64, hybrid logical clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/err.h"

static void test_err_names(void **state)
{
    (void)state;
    assert_string_equal(edge_err_name(EDGE_ENOMEM), "EDGE_ENOMEM");
    assert_string_equal(edge_strerror(EDGE_OK), "success");
    assert_string_equal(edge_err_name(9999), "EDGE_EUNKNOWN");
}

static void test_buf_cap(void **state)
{
    (void)state;
    struct edge_buf b;
    edge_buf_init(&b, 8);
    assert_int_equal(edge_buf_puts(&b, "12345678"), EDGE_OK);
    assert_int_equal(edge_buf_putc(&b, 'x'), EDGE_ETOOBIG);
    assert_int_equal(b.len, 8);
    assert_string_equal(b.data, "12345678");
    edge_buf_free(&b);
}

static void test_buf_oom(void **state)
{
    (void)state;
    struct edge_buf b;
    edge_buf_init(&b, 1 << 20);
    edge__alloc_fault_config(0, 1);
    assert_int_equal(edge_buf_puts(&b, "abc"), EDGE_ENOMEM);
    assert_int_equal(b.len, 0);
    assert_int_equal(edge_buf_puts(&b, "abc"), EDGE_OK);
    assert_string_equal(b.data, "abc");
    edge_buf_free(&b);
}

static void test_json_escape(void **state)
{
    (void)state;
    struct edge_buf b;
    edge_buf_init(&b, 1 << 20);
    const char in[] = "a\"b\\c\n\x01\xc3\xa9\xff\xf0\x9f\x98\x80";
    assert_int_equal(edge_buf_json_str(&b, in, sizeof(in) - 1), EDGE_OK);
    assert_string_equal(b.data, "\"a\\\"b\\\\c\\n\\u0001\xc3\xa9\xef\xbf\xbd\xf0\x9f\x98\x80\"");
    edge_buf_reset(&b);
    assert_int_equal(edge_buf_json_double(&b, 1.5), EDGE_OK);
    assert_string_equal(b.data, "1.5");
    edge_buf_reset(&b);
    assert_int_equal(edge_buf_json_double(&b, 0.1), EDGE_OK);
    assert_string_equal(b.data, "0.1");
    edge_buf_free(&b);
}

static void test_base64(void **state)
{
    (void)state;
    struct edge_buf b;
    edge_buf_init(&b, 1 << 20);
    const uint8_t in[] = {1, 2, 3, 0xff};
    assert_int_equal(edge_buf_base64(&b, in, 4), EDGE_OK);
    assert_string_equal(b.data, "AQID/w==");
    uint8_t *out;
    size_t n;
    assert_int_equal(edge_base64_decode(b.data, b.len, &out, &n), EDGE_OK);
    assert_int_equal(n, 4);
    assert_memory_equal(out, in, 4);
    edge_free(out);
    assert_int_equal(edge_base64_decode("A", 1, &out, &n), EDGE_EINVAL);
    assert_int_equal(edge_base64_decode("AQ!D", 4, &out, &n), EDGE_EINVAL);
    edge_buf_reset(&b);
    assert_int_equal(edge_buf_base64url(&b, in, 4), EDGE_OK);
    assert_string_equal(b.data, "AQID_w");
    edge_buf_free(&b);
}

static void test_hlc(void **state)
{
    (void)state;
    struct edge_clock_manual m;
    edge_clock_manual_init(&m, 1000);
    struct edge_hlc h;
    edge_hlc_init(&h, &m.clock);
    edge_hlc_t a = edge_hlc_now(&h);
    edge_hlc_t b = edge_hlc_now(&h);
    assert_true(b > a);
    assert_int_equal(EDGE_HLC_MS(a), 1000);
    /* A remote clock ahead of ours pulls us forward. */
    edge_hlc_t r = EDGE_HLC_MAKE(5000, 7);
    edge_hlc_t c = edge_hlc_update(&h, r);
    assert_true(c > r);
    edge_clock_manual_advance(&m, 10000);
    edge_hlc_t d = edge_hlc_now(&h);
    assert_int_equal(EDGE_HLC_MS(d), 11000);
    assert_int_equal(EDGE_HLC_CTR(d), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_err_names), cmocka_unit_test(test_buf_cap),
        cmocka_unit_test(test_buf_oom),   cmocka_unit_test(test_json_escape),
        cmocka_unit_test(test_base64),    cmocka_unit_test(test_hlc),
    };
    return cmocka_run_group_tests_name("core", tests, NULL, NULL);
}
