/* SPDX-License-Identifier: MIT */
/* Group apply (edge_repl_apply_frames, the world of repl_world.h): several ENTRIES frames
 * in one transaction answer after each frame the VV applying them one by one leaves, and its
 * failure paths (a failing callback, a restart for a schema change, entries kept aside or
 * waiting behind a gap in the middle of the group) leave the same state. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "repl/proto.h"
#include "repl/repl.h"
#include "repl_world.h"

/* Group apply (session.c): several ENTRIES frames in one transaction answer the same VV
 * after each frame as applying them one by one does, with an entry kept aside for good
 * and a gap among them. */
struct frame_vvs {
    uint64_t seq[8];
};

static int record_frame_vv(void *ud, sqlite3 *db, size_t k)
{
    struct edge_vclock vv;
    edge_vclock_init(&vv);
    int rv = edge_repl_vv_load(db, &vv);
    ((struct frame_vvs *)ud)->seq[k] = edge_vclock_get(&vv, "r0");
    edge_vclock_close(&vv);
    return rv;
}

static void test_frames_answer_as_one_by_one(void **state)
{
    (void)state;
    struct world *w = calloc(1, sizeof(*w));
    world_init(w, 23);
    exec_ok(w->r[1].db, "CREATE TABLE t_a(x INTEGER PRIMARY KEY)"); /* r0's index cannot be made in r1 */
    exec_ok(w->r[2].db, "CREATE TABLE t_a(x INTEGER PRIMARY KEY)");
    local_write(w, 0, "CREATE INDEX t_a ON t(a)");
    local_write(w, 0, "INSERT INTO t(id, a, b, c) VALUES (5, 'p', 1, 1.0)");
    local_write(w, 0, "INSERT INTO t(id, a, b, c) VALUES (6, 'q', 2, 2.0)");
    local_write(w, 0, "UPDATE t SET a = 'r' WHERE id = 5");
    /* frames: {1,2} (1 kept aside), {4} (a gap: 3 is not there), {3}, {4} */
    const int ks[] = {0, 1, 3, 2, 3};
    const size_t ends[] = {2, 3, 4, 5};
    struct edge_repl_entry es[5];
    world_entries(w, ks, 5, es);
    /* r1: one transaction; r2: one per frame, as before group apply */
    struct frame_vvs got = {{0}}, want = {{0}};
    struct edge_repl_frames fr = {ends, 4, record_frame_vv, &got};
    char err[256] = "";
    edge_capture_suspend(w->r[1].cap, true);
    assert_int_equal(edge_repl_apply_frames(w->r[1].db, &w->r[1].local, 0, es, 5, &fr, &w->r[1].stats, err,
                                            sizeof(err)),
                     EDGE_OK);
    edge_capture_suspend(w->r[1].cap, false);
    for (size_t k = 0, from = 0; k < 4; from = ends[k], k++) {
        edge_capture_suspend(w->r[2].cap, true);
        assert_int_equal(edge_repl_apply_batch(w->r[2].db, &w->r[2].local, 0, &es[from], ends[k] - from,
                                               &w->r[2].stats, err, sizeof(err)),
                         EDGE_OK);
        edge_capture_suspend(w->r[2].cap, false);
        struct edge_vclock vv;
        edge_vclock_init(&vv);
        assert_int_equal(edge_repl_vv_load(w->r[2].db, &vv), EDGE_OK);
        want.seq[k] = edge_vclock_get(&vv, "r0");
        edge_vclock_close(&vv);
    }
    const uint64_t expect[4] = {2, 2, 3, 4};
    for (int k = 0; k < 4; k++) {
        assert_int_equal(got.seq[k], expect[k]);
        assert_int_equal(want.seq[k], expect[k]);
    }
    assert_int_equal(w->r[1].stats.apply_errors, 1);
    assert_int_equal(w->r[2].stats.apply_errors, 1);
    assert_int_equal(w->r[1].stats.applied, w->r[2].stats.applied);
    char *d1 = dump(w->r[1].db), *d2 = dump(w->r[2].db);
    assert_string_equal(d1, d2);
    assert_string_equal(d1, "5|'r'|1|1.0;6|'q'|2|2.0");
    free(d1);
    free(d2);
    world_free(w);
    free(w);
}

/* Group apply's failure paths: a failing per-frame callback, a restart for a schema change,
 * and entries kept aside or waiting behind a gap in the middle of the group. */
#define FRAMES_MAX 8

struct frame_log {
    size_t calls[4 * FRAMES_MAX]; /* the frames the callback was called for, in order */
    size_t n_calls;
    char vv[FRAMES_MAX][128]; /* the VV each frame left, as origin=seq,... (the last call's) */
    size_t fail_at;           /* the callback fails for this frame (FRAMES_MAX: never) */
};

static void vv_text(sqlite3 *db, char *out, size_t len)
{
    char *s = query_text(db, "SELECT coalesce(group_concat(origin || '=' || seq, ','), '') FROM"
                             " (SELECT origin, seq FROM _edge_vv ORDER BY origin)");
    snprintf(out, len, "%s", s);
    free(s);
}

static int log_frame(void *ud, sqlite3 *db, size_t k)
{
    struct frame_log *fl = ud;
    assert_true(fl->n_calls < 4 * FRAMES_MAX && k < FRAMES_MAX);
    fl->calls[fl->n_calls++] = k;
    if (k == fl->fail_at) return EDGE_ESTORE;
    vv_text(db, fl->vv[k], sizeof(fl->vv[k]));
    return EDGE_OK;
}

/* The frames (entries ks, frame k ending before entry ends[k]) in one transaction in
 * region 1, logged in *got; returns its result. */
static int apply_group_in(struct world *w, int i, const int *ks, size_t n, const size_t *ends, size_t n_fr,
                          struct frame_log *got)
{
    struct edge_repl_entry es[16];
    assert_true(n <= 16 && n_fr <= FRAMES_MAX);
    world_entries(w, ks, n, es);
    struct edge_repl_frames fr = {ends, n_fr, log_frame, got};
    char err[256] = "";
    edge_capture_suspend(w->r[i].cap, true);
    int rv = edge_repl_apply_frames(w->r[i].db, &w->r[i].local, 0, es, n, &fr, &w->r[i].stats, err, sizeof(err));
    edge_capture_suspend(w->r[i].cap, false);
    return rv;
}

/* The same frames one transaction each in region i, as before group apply: want->vv[k] is
 * the VV after frame k. */
static void apply_each_in(struct world *w, int i, const int *ks, size_t n, const size_t *ends, size_t n_fr,
                          struct frame_log *want)
{
    struct edge_repl_entry es[16];
    assert_true(n <= 16 && n_fr <= FRAMES_MAX);
    world_entries(w, ks, n, es);
    char err[256] = "";
    for (size_t k = 0, from = 0; k < n_fr; from = ends[k], k++) {
        edge_capture_suspend(w->r[i].cap, true);
        assert_int_equal(edge_repl_apply_batch(w->r[i].db, &w->r[i].local, 0, &es[from], ends[k] - from,
                                               &w->r[i].stats, err, sizeof(err)),
                         EDGE_OK);
        edge_capture_suspend(w->r[i].cap, false);
        vv_text(w->r[i].db, want->vv[k], sizeof(want->vv[k]));
    }
}

static int64_t fk_setting(sqlite3 *db) { return count_of(db, "PRAGMA foreign_keys"); }

/* The callback fails after frame 1: the call fails, nothing of any frame is applied (no
 * row, _edge_vv as it was), and the connection is back in autocommit with foreign keys on. */
static void test_frames_callback_fails(void **state)
{
    (void)state;
    struct world *w = calloc(1, sizeof(*w));
    world_init(w, 24);
    local_write(w, 0, "INSERT INTO t(id, a, b, c) VALUES (1, 'x', 1, 1.0)");
    local_write(w, 0, "INSERT INTO t(id, a, b, c) VALUES (2, 'y', 2, 2.0)");
    local_write(w, 0, "INSERT INTO t(id, a, b, c) VALUES (3, 'z', 3, 3.0)");
    char before[128], after[128];
    vv_text(w->r[1].db, before, sizeof(before));
    const int ks[] = {0, 1, 2};
    const size_t ends[] = {1, 2, 3};
    struct frame_log got = {.fail_at = 1};
    assert_int_not_equal(apply_group_in(w, 1, ks, 3, ends, 3, &got), EDGE_OK);
    assert_int_equal(got.n_calls, 2); /* frame 0, then frame 1 fails: frame 2 is never reached */
    assert_int_equal(got.calls[0], 0);
    assert_int_equal(got.calls[1], 1);
    assert_int_equal(count_in(w, 1, "SELECT count(*) FROM t"), 0);
    assert_int_equal(count_in(w, 1, "SELECT count(*) FROM _edge_log"), 0);
    vv_text(w->r[1].db, after, sizeof(after));
    assert_string_equal(after, before);
    assert_int_equal(w->r[1].stats.applied, 0);
    assert_int_not_equal(sqlite3_get_autocommit(w->r[1].db), 0);
    assert_int_equal(fk_setting(w->r[1].db), 1);
    /* and the same frames apply afterwards */
    struct frame_log again = {.fail_at = FRAMES_MAX};
    assert_int_equal(apply_group_in(w, 1, ks, 3, ends, 3, &again), EDGE_OK);
    assert_string_equal(again.vv[0], "r0=1");
    assert_string_equal(again.vv[1], "r0=2");
    assert_int_equal(count_in(w, 1, "SELECT count(*) FROM t"), 3);
    world_free(w);
    free(w);
}

/* A schema change in frame 2 restarts the batch with triggers and foreign keys off: the
 * callback runs again from frame 0 (0, 1, then 0, 1, 2) and each frame's VV is the one
 * applying the frames one transaction each leaves. */
static void test_frames_restart_on_ddl(void **state)
{
    (void)state;
    struct world *w = calloc(1, sizeof(*w));
    world_init(w, 25);
    /* no trigger in the receivers: the batch starts with triggers on, so a DDL entry
     * makes it start again (apply.c batch_begin) */
    exec_ok(w->r[1].db, "DROP TRIGGER parent_audit");
    exec_ok(w->r[2].db, "DROP TRIGGER parent_audit");
    local_write(w, 0, "INSERT INTO t(id, a, b, c) VALUES (1, 'x', 1, 1.0)");
    local_write(w, 0, "INSERT INTO t(id, a, b, c) VALUES (2, 'y', 2, 2.0)");
    local_write(w, 0, "ALTER TABLE t ADD COLUMN d TEXT DEFAULT 'dflt'");
    local_write(w, 0, "UPDATE t SET d = 'set' WHERE id = 1");
    const int ks[] = {0, 1, 2, 3};
    const size_t ends[] = {1, 2, 4};
    struct frame_log got = {.fail_at = FRAMES_MAX}, want = {.fail_at = FRAMES_MAX};
    assert_int_equal(apply_group_in(w, 1, ks, 4, ends, 3, &got), EDGE_OK);
    apply_each_in(w, 2, ks, 4, ends, 3, &want);
    const size_t calls[] = {0, 1, 0, 1, 2};
    assert_int_equal(got.n_calls, 5);
    for (size_t c = 0; c < 5; c++) assert_int_equal(got.calls[c], calls[c]);
    const char *expect[] = {"r0=1", "r0=2", "r0=4"};
    for (int k = 0; k < 3; k++) {
        assert_string_equal(got.vv[k], expect[k]);
        assert_string_equal(want.vv[k], expect[k]);
    }
    assert_int_equal(count_in(w, 1, "SELECT count(*) FROM t WHERE id = 1 AND d = 'set'"), 1);
    assert_int_equal(count_in(w, 1, "SELECT count(*) FROM t WHERE id = 2 AND d = 'dflt'"), 1);
    char *d1 = dump(w->r[1].db), *d2 = dump(w->r[2].db);
    assert_string_equal(d1, d2);
    free(d1);
    free(d2);
    assert_int_equal(w->r[1].stats.applied, 4);
    assert_int_equal(w->r[1].stats.applied, w->r[2].stats.applied);
    assert_int_not_equal(sqlite3_get_autocommit(w->r[1].db), 0);
    assert_int_equal(fk_setting(w->r[1].db), 1);
    world_free(w);
    free(w);
}

/* An entry that fails for good and a gap, both in the middle of the group: frames {1},
 * {2 (cannot be applied here), 3}, {5 (waits: 4 is not there), 4}, {5}. Each frame is
 * answered the VV frame by frame leaves, with the same rows, kept-aside entries and counts. */
static void test_frames_middle_as_one_by_one(void **state)
{
    (void)state;
    struct world *w = calloc(1, sizeof(*w));
    world_init(w, 26);
    exec_ok(w->r[1].db, "CREATE TABLE t_a(x INTEGER PRIMARY KEY)"); /* r0's index cannot be made there */
    exec_ok(w->r[2].db, "CREATE TABLE t_a(x INTEGER PRIMARY KEY)");
    local_write(w, 0, "INSERT INTO t(id, a, b, c) VALUES (5, 'p', 1, 1.0)");
    local_write(w, 0, "CREATE INDEX t_a ON t(a)");
    local_write(w, 0, "INSERT INTO t(id, a, b, c) VALUES (6, 'q', 2, 2.0)");
    local_write(w, 0, "UPDATE t SET a = 'r' WHERE id = 5");
    local_write(w, 0, "UPDATE t SET b = 9 WHERE id = 6");
    const int ks[] = {0, 1, 2, 4, 3, 4};
    const size_t ends[] = {1, 3, 5, 6};
    struct frame_log got = {.fail_at = FRAMES_MAX}, want = {.fail_at = FRAMES_MAX};
    assert_int_equal(apply_group_in(w, 1, ks, 6, ends, 4, &got), EDGE_OK);
    apply_each_in(w, 2, ks, 6, ends, 4, &want);
    const char *expect[] = {"r0=1", "r0=3", "r0=4", "r0=5"};
    for (int k = 0; k < 4; k++) {
        assert_string_equal(got.vv[k], want.vv[k]);
        assert_string_equal(got.vv[k], expect[k]);
    }
    assert_int_equal(got.n_calls, 4);
    assert_int_equal(w->r[1].stats.apply_errors, 1);
    assert_int_equal(w->r[2].stats.apply_errors, 1);
    assert_int_equal(w->r[1].stats.applied, w->r[2].stats.applied);
    assert_int_equal(w->r[1].stats.deferred, w->r[2].stats.deferred);
    assert_int_equal(w->r[1].stats.duplicates, w->r[2].stats.duplicates);
    assert_int_equal(edge_repl_apply_error_count(w->r[1].db), 1);
    assert_int_equal(edge_repl_apply_error_count(w->r[2].db), 1);
    char *d1 = dump(w->r[1].db), *d2 = dump(w->r[2].db);
    assert_string_equal(d1, d2);
    assert_string_equal(d1, "5|'r'|1|1.0;6|'q'|9|2.0");
    free(d1);
    free(d2);
    world_free(w);
    free(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frames_answer_as_one_by_one),
        cmocka_unit_test(test_frames_callback_fails),
        cmocka_unit_test(test_frames_restart_on_ddl),
        cmocka_unit_test(test_frames_middle_as_one_by_one),
    };
    return cmocka_run_group_tests_name("repl_apply_frames", tests, NULL, NULL);
}
