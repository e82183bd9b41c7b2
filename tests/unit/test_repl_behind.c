/* SPDX-License-Identifier: MIT */
/* Unit tests of the rule that tells a running region it fell behind every peer's
 * compacted log (edge_repl_behind_decide): a peer can catch the region up only when its
 * log still holds, for every other origin, the next entry the region lacks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/vclock.h"
#include "repl/compact.h"

static const char *const IDS[] = {"a", "b"};

static void set2(struct edge_vclock *v, uint64_t a, uint64_t b)
{
    edge_vclock_init(v);
    if (a) assert_int_equal(edge_vclock_set(v, "a", a), 0);
    if (b) assert_int_equal(edge_vclock_set(v, "b", b), 0);
}

static bool decide(uint64_t have_a, uint64_t have_b, uint64_t a_fa, uint64_t a_fb, uint64_t b_fa, uint64_t b_fb,
                   int n, char *why, size_t why_len)
{
    struct edge_vclock local, floors[2];
    set2(&local, have_a, have_b);
    set2(&floors[0], a_fa, a_fb);
    set2(&floors[1], b_fa, b_fb);
    bool behind = edge_repl_behind_decide("c", &local, floors, NULL, IDS, n, why, why_len);
    edge_vclock_close(&local);
    edge_vclock_close(&floors[0]);
    edge_vclock_close(&floors[1]);
    return behind;
}

/* a compacted its own entries past the region, b its own: a's link cannot send origin a,
 * b's cannot send origin b, and a link sends all origins or none. Stuck: behind. The rule
 * before asked for one origin compacted at every peer and left such a region waiting. */
static void test_each_peer_short_of_another_origin(void **state)
{
    (void)state;
    char why[256];
    assert_true(decide(12, 10, 31, 10, 12, 30, 2, why, sizeof(why)));
    assert_non_null(strstr(why, "a: origin a, have 12, its log starts after 31"));
    assert_non_null(strstr(why, "b: origin b, have 10, its log starts after 30"));
}

static void test_both_short_of_the_same_origin(void **state)
{
    (void)state;
    char why[256];
    assert_true(decide(12, 10, 31, 5, 31, 10, 2, why, sizeof(why)));
}

/* b still starts at or below what the region holds for every origin: its link catches
 * the region up, whatever a lacks. */
static void test_one_peer_can_serve(void **state)
{
    (void)state;
    char why[256];
    assert_false(decide(12, 10, 31, 30, 12, 10, 2, why, sizeof(why)));
    assert_false(decide(12, 10, 31, 30, 0, 0, 2, why, sizeof(why)));
}

/* Only the peers that answered count; with none the region cannot tell, so it waits. */
static void test_only_answers_count(void **state)
{
    (void)state;
    char why[256];
    assert_true(decide(12, 10, 31, 30, 0, 0, 1, why, sizeof(why)));
    assert_false(decide(12, 10, 31, 30, 31, 30, 0, why, sizeof(why)));
}

/* The region's own origin is never a reason: it has all its own entries. */
static void test_own_origin_ignored(void **state)
{
    (void)state;
    struct edge_vclock local, floors[1];
    edge_vclock_init(&local);
    edge_vclock_init(&floors[0]);
    assert_int_equal(edge_vclock_set(&local, "c", 3), 0);
    assert_int_equal(edge_vclock_set(&floors[0], "c", 40), 0);
    char why[64];
    assert_false(edge_repl_behind_decide("c", &local, floors, NULL, IDS, 1, why, sizeof(why)));
    edge_vclock_close(&local);
    edge_vclock_close(&floors[0]);
}

/* Peer a compacted origin a past the region; peer b (cut off from a with the region) has
 * a log that lacks nothing but holds no more than the region: b's link has nothing to
 * send and a lacks origin a for b too, so only a snapshot helps. The rule before counted
 * b as able to serve and both regions waited for ever. A peer that holds more of any
 * other origin still counts (its link makes progress); with no peer short of anything
 * the region is simply up to date. */
static void test_peer_with_nothing_more_cannot_serve(void **state)
{
    (void)state;
    char why[256];
    struct edge_vclock local, floors[2], vvs[2];
    set2(&local, 12, 10);
    set2(&floors[0], 31, 5);
    set2(&floors[1], 3, 2);
    set2(&vvs[0], 40, 10);
    set2(&vvs[1], 12, 10);
    assert_true(edge_repl_behind_decide("c", &local, floors, vvs, IDS, 2, why, sizeof(why)));
    assert_non_null(strstr(why, "b: holds nothing this region lacks"));
    assert_int_equal(edge_vclock_set(&vvs[1], "c", 99), 0); /* own origin: no reason either way */
    assert_true(edge_repl_behind_decide("c", &local, floors, vvs, IDS, 2, why, sizeof(why)));
    assert_int_equal(edge_vclock_set(&vvs[1], "b", 11), 0);
    assert_false(edge_repl_behind_decide("c", &local, floors, vvs, IDS, 2, why, sizeof(why)));
    edge_vclock_close(&floors[0]);
    set2(&floors[0], 12, 5);
    edge_vclock_close(&vvs[1]);
    set2(&vvs[1], 12, 10);
    assert_false(edge_repl_behind_decide("c", &local, floors, vvs, IDS, 2, why, sizeof(why)));
    edge_vclock_close(&local);
    for (int i = 0; i < 2; i++) {
        edge_vclock_close(&floors[i]);
        edge_vclock_close(&vvs[i]);
    }
}

/* A short buffer cuts the reason, never overruns it. */
static void test_reason_cut(void **state)
{
    (void)state;
    char why[8];
    assert_true(decide(12, 10, 31, 10, 12, 30, 2, why, sizeof(why)));
    assert_true(strlen(why) < sizeof(why));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_peer_short_of_another_origin),
        cmocka_unit_test(test_both_short_of_the_same_origin),
        cmocka_unit_test(test_one_peer_can_serve),
        cmocka_unit_test(test_only_answers_count),
        cmocka_unit_test(test_own_origin_ignored),
        cmocka_unit_test(test_peer_with_nothing_more_cannot_serve),
        cmocka_unit_test(test_reason_cut),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
