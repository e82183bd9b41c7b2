/* SPDX-License-Identifier: MIT */
/* Unit tests of the hot-read cache's invalidation rules (src/router/cache.c): a commit
 * site enters the tables it writes before its COMMIT and leaves them after; an entry
 * filled before is not served from the enter on, a fill that overlaps the commit in any
 * way is refused, a fill that starts after the leave is kept, other tables are not
 * touched, and EDGE_ROUTER_CACHE_ALL covers every table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "core/buf.h"
#include "router/router.h"

static char tables[2][EDGE_ROUTER_NAME_MAX] = {"t", "u"};

static void gens_of(struct edge_router_cache *c, int which, struct edge_router_cache_gens *g)
{
    edge_router_cache_gens(c, &tables[which], 1, g);
}

static bool put(struct edge_router_cache *c, const char *key, const struct edge_router_cache_gens *g)
{
    return edge_router_cache_put(c, key, strlen(key), g, "v", 1);
}

static bool has(struct edge_router_cache *c, const char *key)
{
    return edge_router_cache_has(c, key, strlen(key));
}

static void test_enter_leave(void **state)
{
    (void)state;
    struct edge_router_cache *c = NULL;
    assert_int_equal(edge_router_cache_new(1 << 20, 1, 10000, &c), 0);
    uint32_t st = edge_router_cache_slot("T", 1); /* names are case-insensitive */
    assert_int_equal(st, edge_router_cache_slot("t", 1));
    struct edge_router_cache_gens g, g2;

    /* filled before the commit: served until the enter, not after */
    gens_of(c, 0, &g);
    assert_true(put(c, "k1", &g));
    assert_true(has(c, "k1"));
    edge_router_cache_enter(c, st);
    assert_false(has(c, "k1"));

    /* a fill that starts while the commit is in flight: refused while it is... */
    gens_of(c, 0, &g);
    assert_true(edge_router_cache_busy(c, &g));
    assert_false(put(c, "k2", &g));
    /* ...and after it left (its read may have missed the commit) */
    gens_of(c, 0, &g2);
    edge_router_cache_leave(c, st);
    assert_false(edge_router_cache_busy(c, &g2));
    assert_false(put(c, "k2", &g2));

    /* a fill that started before the enter and ends after the leave: refused */
    gens_of(c, 0, &g);
    edge_router_cache_enter(c, st);
    edge_router_cache_leave(c, st);
    assert_false(put(c, "k3", &g));

    /* a fill that starts after the leave: kept */
    gens_of(c, 0, &g);
    assert_true(put(c, "k3", &g));
    assert_true(has(c, "k3"));

    /* another table's commit touches nothing of t */
    uint32_t su = edge_router_cache_slot("u", 1);
    assert_int_not_equal(su, st);
    edge_router_cache_enter(c, su);
    assert_true(has(c, "k3"));
    gens_of(c, 0, &g);
    assert_false(edge_router_cache_busy(c, &g));
    assert_true(put(c, "k4", &g));
    gens_of(c, 1, &g2);
    assert_true(edge_router_cache_busy(c, &g2));
    assert_false(put(c, "k5", &g2));
    edge_router_cache_leave(c, su);

    /* two commits in flight on t: busy until both left */
    edge_router_cache_enter(c, st);
    edge_router_cache_enter(c, st);
    edge_router_cache_leave(c, st);
    gens_of(c, 0, &g);
    assert_true(edge_router_cache_busy(c, &g));
    edge_router_cache_leave(c, st);
    gens_of(c, 0, &g);
    assert_false(edge_router_cache_busy(c, &g));
    assert_true(put(c, "k6", &g));

    /* everything: every table in flight, every entry gone */
    edge_router_cache_enter(c, EDGE_ROUTER_CACHE_ALL);
    assert_false(has(c, "k6"));
    gens_of(c, 1, &g2);
    assert_true(edge_router_cache_busy(c, &g2));
    assert_false(put(c, "k7", &g2));
    edge_router_cache_leave(c, EDGE_ROUTER_CACHE_ALL);
    gens_of(c, 1, &g2);
    assert_false(edge_router_cache_busy(c, &g2));
    assert_true(put(c, "k7", &g2));

    struct edge_router_cache_stats s;
    edge_router_cache_stats(c, &s);
    assert_int_equal(s.dropped_fills, 5);
    edge_router_cache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_enter_leave),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
