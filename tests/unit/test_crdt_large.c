/* SPDX-License-Identifier: MIT */
/* Large OR-Sets: the fast paths (decoded sets with an arena, dead entries and lazy
 * compaction, the sorted prefix plus unsorted tail, in-place merges) must give exactly
 * the bytes a set handled only in memory gives. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/alloc.h"
#include "crdt/crdt.h"
#include "edgelite/crdt.h"

static struct edge_crdt *mk_set(void)
{
    struct edge_crdt *c = NULL;
    assert_int_equal(edge_crdt_create(EDGE_CRDT_ORSET, &c), EDGE_OK);
    return c;
}

static void enc(const struct edge_crdt *c, uint8_t **out, size_t *out_len)
{
    assert_int_equal(edge_crdt_encode(c, out, out_len), EDGE_OK);
}

static void assert_same(const struct edge_crdt *a, const struct edge_crdt *b)
{
    uint8_t *x, *y;
    size_t xl, yl;
    enc(a, &x, &xl);
    enc(b, &y, &yl);
    assert_int_equal(xl, yl);
    assert_memory_equal(x, y, xl);
    assert_int_equal(edge_crdt_size(a), edge_crdt_size(b));
    edge_free(x);
    edge_free(y);
}

/* What the HTTP layer does per request: decode, one op, encode. */
static struct edge_crdt *roundtrip(struct edge_crdt *c)
{
    uint8_t *b;
    size_t l;
    struct edge_crdt *d = NULL;
    enc(c, &b, &l);
    assert_int_equal(edge_crdt_decode(b, l, &d), EDGE_OK);
    edge_free(b);
    edge_crdt_destroy(c);
    return d;
}

struct order {
    char prev[32];
    size_t prev_len;
    size_t n;
    int ok;
};

static int order_cb(void *ud, const uint8_t *elem, size_t len)
{
    struct order *o = ud;
    size_t m = len < o->prev_len ? len : o->prev_len;
    int c = memcmp(o->prev, elem, m);
    if (o->n > 0 && (c > 0 || (c == 0 && o->prev_len >= len))) {
        o->ok = 0;
    }
    memcpy(o->prev, elem, len < sizeof(o->prev) ? len : sizeof(o->prev));
    o->prev_len = len;
    o->n++;
    return 0;
}

static void assert_ordered(const struct edge_crdt *c)
{
    struct order o = {.ok = 1};
    assert_int_equal(edge_crdt_foreach(c, order_cb, &o), EDGE_OK);
    assert_true(o.ok);
    assert_int_equal(o.n, edge_crdt_size(c));
}

/* A set kept in memory and one decoded and re-encoded around every op stay identical,
 * through thousands of removes (compaction), re-adds and out-of-order adds. */
static void test_decode_apply_encode_matches_memory(void **state)
{
    (void)state;
    enum { N = 3000 };
    struct edge_crdt *mem = mk_set(), *disk;
    char e[32];
    for (int i = 0; i < N; i++) {
        snprintf(e, sizeof(e), "m%05d", i);
        assert_int_equal(edge_crdt_add(mem, i % 2 ? "us" : "eu", e, strlen(e), NULL), EDGE_OK);
    }
    assert_int_equal(edge_crdt_clone(mem, &disk), EDGE_OK);
    disk = roundtrip(disk);
    assert_same(mem, disk);
    for (int i = 0; i < 2 * N; i++) {
        int rv1, rv2;
        if (i < N * 3 / 4) { /* remove most: dead entries, then compaction */
            snprintf(e, sizeof(e), "m%05d", (i * 7) % N);
            rv1 = edge_crdt_remove(mem, "ap", e, strlen(e), NULL);
            rv2 = edge_crdt_remove(disk, "ap", e, strlen(e), NULL);
        } else if (i % 3 == 0) { /* re-add a removed one: sorts into the middle */
            snprintf(e, sizeof(e), "m%05d", (i * 13) % N);
            rv1 = edge_crdt_add(mem, "ap", e, strlen(e), NULL);
            rv2 = edge_crdt_add(disk, "ap", e, strlen(e), NULL);
        } else { /* new ones before and after everything */
            snprintf(e, sizeof(e), i % 2 ? "a%05d" : "z%05d", i);
            rv1 = edge_crdt_add(mem, "us", e, strlen(e), NULL);
            rv2 = edge_crdt_add(disk, "us", e, strlen(e), NULL);
        }
        assert_int_equal(rv1, EDGE_OK);
        assert_int_equal(rv2, EDGE_OK);
        assert_int_equal(edge_crdt_contains(mem, e, strlen(e)), edge_crdt_contains(disk, e, strlen(e)));
        if (i % 97 == 0 || i == 2 * N - 1) {
            assert_same(mem, disk);
            assert_ordered(mem);
            assert_ordered(disk);
        }
        if (i % 5 == 0) {
            disk = roundtrip(disk);
        }
    }
    assert_same(mem, disk);
    edge_crdt_destroy(mem);
    edge_crdt_destroy(disk);
}

/* Deltas merged in place into a large decoded replica give the origin's state. */
static void test_deltas_in_place(void **state)
{
    (void)state;
    enum { N = 5000 };
    struct edge_crdt *origin = mk_set(), *replica;
    char e[32];
    for (int i = 0; i < N; i++) {
        snprintf(e, sizeof(e), "\"u%05d\"", i);
        assert_int_equal(edge_crdt_add(origin, "eu", e, strlen(e), NULL), EDGE_OK);
    }
    assert_int_equal(edge_crdt_clone(origin, &replica), EDGE_OK);
    replica = roundtrip(replica);
    for (int i = 0; i < 400; i++) {
        struct edge_crdt *d = NULL;
        int conc = -1;
        snprintf(e, sizeof(e), "\"u%05d\"", (i * 37) % (N + 100));
        if (i % 3 == 0) {
            assert_int_equal(edge_crdt_remove(origin, "eu", e, strlen(e), &d), EDGE_OK);
        } else {
            assert_int_equal(edge_crdt_add(origin, i % 2 ? "eu" : "us", e, strlen(e), &d), EDGE_OK);
        }
        assert_int_equal(edge_crdt_merge(replica, d, &conc), EDGE_OK);
        assert_int_equal(conc, 0);
        edge_crdt_destroy(d);
        if (i % 50 == 0) {
            assert_same(origin, replica);
            replica = roundtrip(replica);
        }
    }
    assert_same(origin, replica);
    edge_crdt_destroy(origin);
    edge_crdt_destroy(replica);
}

/* Full merges of diverged large replicas: both directions converge byte for byte, the
 * result holds the add-wins outcome, and merging again changes nothing. */
static void test_full_merge_converges(void **state)
{
    (void)state;
    enum { N = 4000 };
    struct edge_crdt *a = mk_set(), *b;
    char e[32];
    for (int i = 0; i < N; i++) {
        snprintf(e, sizeof(e), "k%05d", i);
        assert_int_equal(edge_crdt_add(a, "eu", e, strlen(e), NULL), EDGE_OK);
    }
    assert_int_equal(edge_crdt_clone(a, &b), EDGE_OK);
    b = roundtrip(b);
    for (int i = 0; i < 600; i++) {
        snprintf(e, sizeof(e), "k%05d", i * 5);
        assert_int_equal(edge_crdt_remove(a, "eu", e, strlen(e), NULL), EDGE_OK);
        snprintf(e, sizeof(e), "k%05d", i * 5 + (i % 2 ? 0 : 1));
        assert_int_equal(edge_crdt_add(b, "us", e, strlen(e), NULL), EDGE_OK); /* concurrent re-add wins */
        snprintf(e, sizeof(e), "n%05d", i);
        assert_int_equal(edge_crdt_add(i % 2 ? a : b, i % 2 ? "eu" : "us", e, strlen(e), NULL), EDGE_OK);
    }
    struct edge_crdt *a2 = NULL, *b2 = NULL;
    assert_int_equal(edge_crdt_clone(a, &a2), EDGE_OK);
    assert_int_equal(edge_crdt_clone(b, &b2), EDGE_OK);
    int conc = 0;
    assert_int_equal(edge_crdt_merge(a, b2, &conc), EDGE_OK);
    assert_int_equal(conc, 1);
    assert_int_equal(edge_crdt_merge(b, a2, &conc), EDGE_OK);
    assert_same(a, b);
    assert_ordered(a);
    /* k00005 (odd i = 1): removed by a, re-added by b -> present; k00010 (even i = 2)
     * removed by a, b re-added k00011 instead -> k00010 gone. */
    assert_true(edge_crdt_contains(a, "k00005", 6));
    assert_false(edge_crdt_contains(a, "k00010", 6));
    assert_true(edge_crdt_contains(a, "k00011", 6));
    assert_int_equal(edge_crdt_size(a), N - 300 + 600);
    uint8_t *before;
    size_t bl;
    enc(a, &before, &bl);
    assert_int_equal(edge_crdt_merge(a, b, NULL), EDGE_OK);
    assert_int_equal(edge_crdt_merge(a, a, NULL), EDGE_OK);
    uint8_t *after;
    size_t al;
    enc(a, &after, &al);
    assert_int_equal(al, bl);
    assert_memory_equal(after, before, bl);
    edge_free(before);
    edge_free(after);
    edge_crdt_destroy(a);
    edge_crdt_destroy(b);
    edge_crdt_destroy(a2);
    edge_crdt_destroy(b2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_apply_encode_matches_memory),
        cmocka_unit_test(test_deltas_in_place),
        cmocka_unit_test(test_full_merge_converges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
