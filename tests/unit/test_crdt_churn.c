/* SPDX-License-Identifier: MIT */
/* OR-Set without growth (issue 13, item 3): 1,000,000 add/remove operations in three
 * replicas that exchange deltas as replication does (each origin's deltas in its order,
 * here also shuffled within a window so dots arrive out of order), and the encoded state
 * of every replica stays proportional to its live elements. Removed elements leave no
 * tombstones: the causal context keeps one counter per region, plus the "cloud" of dots
 * seen out of order, which is collected as soon as the dots before them have been seen
 * (causal stability for this set); at the end every replica holds the same bytes and
 * an empty cloud. */
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

#define REPLICAS 3
#define KEYS 200         /* distinct elements: the live set stays around half of it */
#define WINDOW 8         /* deltas a link holds back and delivers in any order */
#define OPS 1000000
#define CHECK_EVERY 50000

static const char *const region[REPLICAS] = {"us-east-1", "eu-west-1", "ap-south-1"};

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* A delta on its way to the other replicas: shared, freed by the last delivery. */
struct held {
    struct edge_crdt *d;
    int refs;
};

/* One directed link: deltas in flight, oldest first. */
struct link {
    struct held *q[WINDOW];
    int n;
};

static struct edge_crdt *rep[REPLICAS];
static struct link links[REPLICAS][REPLICAS];

static void deliver(int from, int to, int i)
{
    struct link *l = &links[from][to];
    int conc = 0;
    assert_int_equal(edge_crdt_merge(rep[to], l->q[i]->d, &conc), EDGE_OK);
    if (--l->q[i]->refs == 0) {
        edge_crdt_destroy(l->q[i]->d);
        free(l->q[i]);
    }
    memmove(&l->q[i], &l->q[i + 1], (size_t)(l->n - i - 1) * sizeof(l->q[0]));
    l->n--;
}

static size_t encoded_size(const struct edge_crdt *c)
{
    uint8_t *b = NULL;
    size_t len = 0;
    assert_int_equal(edge_crdt_encode(c, &b, &len), EDGE_OK);
    edge_free(b);
    return len;
}

/* Header, vector clocks and the context: a few bytes per region; per live element its
 * text (at most 6 bytes, "k" + 3 digits in JSON quotes) plus a dot; per dot in flight a
 * cloud entry. Tombstones would add per removed element and break this after a few
 * thousand of the million operations. */
static size_t bound(const struct edge_crdt *c, int in_flight)
{
    return 64 + REPLICAS * 2 * 24 + edge_crdt_size(c) * (6 + 16) + (size_t)in_flight * 16;
}

static void test_churn_million(void **state)
{
    (void)state;
    char elem[16];
    int in_flight = 0;
    size_t max_seen = 0;
    for (int r = 0; r < REPLICAS; r++) assert_int_equal(edge_crdt_create(EDGE_CRDT_ORSET, &rep[r]), EDGE_OK);
    for (long op = 1; op <= OPS; op++) {
        int r = (int)(next_rand() % REPLICAS);
        int k = (int)(next_rand() % KEYS);
        int len = snprintf(elem, sizeof(elem), "\"k%d\"", k);
        struct edge_crdt *d = NULL;
        if (next_rand() % 2) {
            assert_int_equal(edge_crdt_add(rep[r], region[r], elem, (size_t)len, &d), EDGE_OK);
        } else {
            assert_int_equal(edge_crdt_remove(rep[r], region[r], elem, (size_t)len, &d), EDGE_OK);
        }
        struct held *h = malloc(sizeof(*h));
        assert_non_null(h);
        h->d = d;
        h->refs = REPLICAS - 1;
        for (int to = 0; to < REPLICAS; to++) {
            if (to == r) continue;
            struct link *l = &links[r][to];
            if (l->n == WINDOW) {
                deliver(r, to, (int)(next_rand() % WINDOW)); /* any of the held ones: out of order */
                in_flight--;
            }
            l->q[l->n++] = h;
            in_flight++;
        }
        if (op % CHECK_EVERY == 0) {
            for (int x = 0; x < REPLICAS; x++) {
                size_t sz = encoded_size(rep[x]);
                if (sz > max_seen) max_seen = sz;
                if (sz > bound(rep[x], in_flight)) {
                    fail_msg("after %ld ops replica %d encodes to %zu bytes for %zu live elements (bound %zu)", op, x,
                             sz, edge_crdt_size(rep[x]), bound(rep[x], in_flight));
                }
            }
        }
    }
    /* every region has seen every removal: deliver the rest */
    for (int from = 0; from < REPLICAS; from++) {
        for (int to = 0; to < REPLICAS; to++) {
            while (links[from][to].n > 0) deliver(from, to, links[from][to].n - 1); /* newest first */
        }
    }
    uint8_t *first = NULL;
    size_t first_len = 0;
    assert_int_equal(edge_crdt_encode(rep[0], &first, &first_len), EDGE_OK);
    for (int x = 0; x < REPLICAS; x++) {
        uint8_t *b = NULL;
        size_t len = 0;
        assert_int_equal(edge_crdt_encode(rep[x], &b, &len), EDGE_OK);
        assert_int_equal(len, first_len);
        assert_memory_equal(b, first, len);
        edge_free(b);
        assert_true(len <= bound(rep[x], 0));
    }
    /* the bound without anything in flight: the context is one counter per region, the
     * cloud is gone */
    size_t live = edge_crdt_size(rep[0]);
    assert_true(live > 0 && live < KEYS);
    print_message("churn: %d ops, %zu live elements, %zu bytes at the end, at most %zu on the way\n", OPS, live,
                  first_len, max_seen);
    edge_free(first);
    for (int r = 0; r < REPLICAS; r++) edge_crdt_destroy(rep[r]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_churn_million)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
