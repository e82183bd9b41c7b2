/* SPDX-License-Identifier: MIT */
/* Replicated /v1/crdt updates on real SQLite databases with the real capture, log and
 * apply path (repl/crdt_apply.c): a delta recorded in one region's entry is joined into
 * another region's object; the same entry applied again is a duplicate and the same
 * delta merged again changes nothing (a join); statistics count merges per origin; two
 * types under one name resolve the same way everywhere (the lower type wins). */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "edgelite/crdt.h"
#include "repl/repl.h"
#include "repl/repl_int.h"
#include "store/crdt_store.h"

static sqlite3 *open_db(void)
{
    sqlite3 *db = NULL;
    char err[256];
    assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
    assert_int_equal(edge_repl_schema_init(db, err, sizeof(err)), EDGE_OK);
    assert_int_equal(edge_crdt_store_init(db), EDGE_OK);
    return db;
}

static void close_db(sqlite3 *db)
{
    sqlite3_stmt *st;
    while ((st = sqlite3_next_stmt(db, NULL)) != NULL) sqlite3_finalize(st);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

/* The encoded delta of one increment (or decrement) by region. */
static void delta_of(int type, const char *region, int dec, uint64_t amount, uint8_t **out, size_t *len)
{
    struct edge_crdt *c = NULL, *d = NULL;
    assert_int_equal(edge_crdt_create(type, &c), EDGE_OK);
    if (dec) {
        assert_int_equal(edge_crdt_decrement(c, region, amount, &d), EDGE_OK);
    } else {
        assert_int_equal(edge_crdt_increment(c, region, amount, &d), EDGE_OK);
    }
    assert_int_equal(edge_crdt_encode(d, out, len), EDGE_OK);
    edge_crdt_destroy(c);
    edge_crdt_destroy(d);
}

static int64_t value_of(sqlite3 *db, const char *name, const char *want_type)
{
    struct edge_crdt_row row;
    struct edge_crdt *c = NULL;
    assert_int_equal(edge_crdt_store_load(db, name, &row), EDGE_OK);
    assert_string_equal(row.type, want_type);
    assert_int_equal(edge_crdt_decode(row.state, row.state_len, &c), EDGE_OK);
    int64_t v = 0;
    assert_int_equal(edge_crdt_value_i64(c, &v), EDGE_OK);
    edge_crdt_destroy(c);
    edge_crdt_store_row_free(&row);
    return v;
}

struct stat_seen {
    char region[32];
    uint64_t merges, concurrent;
};

static int stat_cb(void *ud, const struct edge_crdt_merge_stat *s)
{
    struct stat_seen *w = ud;
    snprintf(w->region, sizeof(w->region), "%s", s->region);
    w->merges = s->merges;
    w->concurrent = s->concurrent;
    return 0;
}

static void test_entry_applies_once_and_joins(void **state)
{
    (void)state;
    sqlite3 *a = open_db(), *b = open_db();
    struct edge_capture *cap = NULL;
    struct edge_hlc hlc;
    pthread_mutex_t mu;
    pthread_mutex_init(&mu, NULL);
    edge_hlc_init(&hlc, edge_clock_system());
    struct edge_repl_local local = {"a", &hlc, &mu, NULL};
    assert_int_equal(edge_capture_create(a, &cap), EDGE_OK);

    /* region a: one update recorded as its delta, logged as entry a:1 */
    uint8_t *d = NULL;
    size_t dl = 0;
    delta_of(EDGE_CRDT_GCOUNTER, "a", 0, 5, &d, &dl);
    char err[256] = "";
    uint64_t seq = 0;
    assert_int_equal(sqlite3_exec(a, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(edge_capture_crdt(cap, "k", "g-counter", d, dl), EDGE_OK);
    assert_true(edge_capture_has_changes(cap));
    assert_int_equal(edge_repl_commit_entry(cap, &local, 0, &seq, err, sizeof(err)), EDGE_OK);
    assert_int_equal(sqlite3_exec(a, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    assert_true(seq == 1);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(a, "SELECT hlc, payload FROM _edge_log WHERE origin = 'a' AND seq = 1", -1,
                                        &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    uint64_t ehlc = (uint64_t)sqlite3_column_int64(st, 0);
    size_t plen = (size_t)sqlite3_column_bytes(st, 1);
    uint8_t *payload = malloc(plen);
    memcpy(payload, sqlite3_column_blob(st, 1), plen);
    sqlite3_finalize(st);

    /* region b applies it: the object appears with a's count */
    struct edge_vclock deps;
    edge_vclock_init(&deps);
    struct edge_repl_apply_stats stats = {0};
    for (int round = 0; round < 2; round++) {
        assert_int_equal(sqlite3_exec(b, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
        assert_int_equal(edge_repl_apply_entry(b, "a", 1, ehlc, 0, &deps, payload, plen, &stats, err, sizeof(err)),
                         EDGE_OK);
        assert_int_equal(sqlite3_exec(b, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
        assert_true(value_of(b, "k", "g-counter") == 5);
    }
    assert_true(stats.applied == 1 && stats.duplicates == 1); /* the resent entry is a duplicate */

    /* the same delta merged again (say it also came relayed inside a full state): a join */
    assert_int_equal(edge__repl_crdt_apply(b, "a", "k", 1, "g-counter", 9, d, dl, err, sizeof(err)), EDGE_OK);
    assert_true(value_of(b, "k", "g-counter") == 5);
    struct stat_seen seen = {0};
    assert_int_equal(edge_crdt_store_merges(b, "k", stat_cb, &seen), EDGE_OK);
    assert_string_equal(seen.region, "a");
    assert_true(seen.merges == 2 && seen.concurrent == 0);

    /* an update of b's that had not seen a's, then a second of a's made without seeing
     * b's: both merges combine concurrent updates */
    uint8_t *d2 = NULL;
    size_t d2l = 0;
    delta_of(EDGE_CRDT_GCOUNTER, "b", 0, 7, &d2, &d2l);
    assert_int_equal(edge__repl_crdt_apply(b, "b", "k", 1, "g-counter", 9, d2, d2l, err, sizeof(err)), EDGE_OK);
    struct edge_crdt *ca = NULL, *dd = NULL;
    assert_int_equal(edge_crdt_decode(d, dl, &ca), EDGE_OK);
    assert_int_equal(edge_crdt_increment(ca, "a", 1, &dd), EDGE_OK); /* a's second: a=6, clock {a:2} */
    uint8_t *d3 = NULL;
    size_t d3l = 0;
    assert_int_equal(edge_crdt_encode(dd, &d3, &d3l), EDGE_OK);
    assert_int_equal(edge__repl_crdt_apply(b, "a", "k", 1, "g-counter", 9, d3, d3l, err, sizeof(err)), EDGE_OK);
    assert_true(value_of(b, "k", "g-counter") == 13);
    assert_int_equal(edge_crdt_store_merges(b, "k", stat_cb, &seen), EDGE_OK); /* the last row: region b */
    assert_string_equal(seen.region, "b");
    assert_true(seen.merges == 1 && seen.concurrent == 1);
    struct edge_crdt_row row;
    assert_int_equal(edge_crdt_store_load(b, "k", &row), EDGE_OK);
    assert_true(row.conflicts == 2);
    edge_crdt_store_row_free(&row);

    /* a delta that does not decode is a corrupt entry */
    assert_int_equal(edge__repl_crdt_apply(b, "a", "k", 1, "g-counter", 9, (const uint8_t *)"xx", 2, err, sizeof(err)),
                     EDGE_ECORRUPT);

    edge_free(d);
    edge_free(d2);
    edge_free(d3);
    edge_crdt_destroy(ca);
    edge_crdt_destroy(dd);
    free(payload);
    edge_vclock_close(&deps);
    edge_capture_destroy(cap);
    pthread_mutex_destroy(&mu);
    close_db(a);
    close_db(b);
}

static void test_type_clash_lower_type_wins(void **state)
{
    (void)state;
    sqlite3 *x = open_db(), *y = open_db();
    char err[256] = "";
    uint8_t *g = NULL, *p = NULL;
    size_t gl = 0, pl = 0;
    delta_of(EDGE_CRDT_GCOUNTER, "a", 0, 3, &g, &gl);
    delta_of(EDGE_CRDT_PNCOUNTER, "b", 1, 4, &p, &pl);
    /* x gets the g-counter first, y the pn-counter first: both end with the g-counter */
    assert_int_equal(edge__repl_crdt_apply(x, "a", "n", 1, "g-counter", 9, g, gl, err, sizeof(err)), EDGE_OK);
    assert_int_equal(edge__repl_crdt_apply(x, "b", "n", 1, "pn-counter", 10, p, pl, err, sizeof(err)), EDGE_OK);
    assert_int_equal(edge__repl_crdt_apply(y, "b", "n", 1, "pn-counter", 10, p, pl, err, sizeof(err)), EDGE_OK);
    assert_int_equal(edge__repl_crdt_apply(y, "a", "n", 1, "g-counter", 9, g, gl, err, sizeof(err)), EDGE_OK);
    assert_true(value_of(x, "n", "g-counter") == 3);
    assert_true(value_of(y, "n", "g-counter") == 3);
    /* a delta naming another type than it holds is corrupt */
    assert_int_equal(edge__repl_crdt_apply(x, "a", "n", 1, "or-set", 6, g, gl, err, sizeof(err)), EDGE_ECORRUPT);
    edge_free(g);
    edge_free(p);
    close_db(x);
    close_db(y);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_entry_applies_once_and_joins),
        cmocka_unit_test(test_type_clash_lower_type_wins),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
