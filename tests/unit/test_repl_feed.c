/* SPDX-License-Identifier: MIT */
/* The change feed (repl/feed.h), in process on real SQLite databases with the real
 * capture, log and apply path: what listeners receive for local commits and for peer
 * entries (kind, key, row, origin/seq/hlc, conflict), in order, once each; nothing while
 * nobody listens; a reset when entries left the log before the feed read them. */
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
#include "core/buf.h"
#include "core/clock.h"
#include "repl/feed.h"
#include "repl/proto.h"
#include "repl/repl.h"
#include "repl/state.h"

struct region {
    char id[16];
    sqlite3 *db;
    struct edge_capture *cap;
    struct edge_clock_manual clk;
    struct edge_hlc hlc;
    pthread_mutex_t mu;
    struct edge_repl_local local;
    struct edge_repl_state st; /* only its feed is used */
};

/* What a listener saw, as text lines: "origin:seq kind table pk row [conflict]". */
struct seen {
    char lines[64][512];
    int n;
    int resets;
    uint64_t last_hlc;
    bool hlc_order_ok;
};

static void exec_ok(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) fail_msg("%s: %s", sql, err ? err : "?");
}

static void region_init(struct region *r, const char *id, uint64_t clock0)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->id, sizeof(r->id), "%s", id);
    assert_int_equal(sqlite3_open(":memory:", &r->db), SQLITE_OK);
    char err[256];
    assert_int_equal(edge_repl_schema_init(r->db, err, sizeof(err)), EDGE_OK);
    exec_ok(r->db, "CREATE TABLE orders(id INTEGER PRIMARY KEY, status TEXT, n INTEGER);"
                   "CREATE TABLE pair(a TEXT, b INTEGER, v BLOB, PRIMARY KEY(a, b));");
    assert_int_equal(edge_capture_create(r->db, &r->cap), EDGE_OK);
    edge_clock_manual_init(&r->clk, clock0);
    edge_hlc_init(&r->hlc, &r->clk.clock);
    pthread_mutex_init(&r->mu, NULL);
    r->local = (struct edge_repl_local){r->id, &r->hlc, &r->mu, NULL};
    edge_repl_state_init(&r->st, r->id, ":memory:", NULL, NULL, 0);
    assert_int_equal(edge_feed_open(&r->st, r->db), EDGE_OK);
}

static void region_free(struct region *r)
{
    edge_capture_destroy(r->cap);
    sqlite3_stmt *st;
    while ((st = sqlite3_next_stmt(r->db, NULL)) != NULL) sqlite3_finalize(st);
    sqlite3_close(r->db);
    pthread_mutex_destroy(&r->mu);
    edge_repl_state_close(&r->st);
}

/* One local transaction, its log entry, then the feed as the writer runs it. */
static uint64_t write_sql(struct region *r, const char *sql)
{
    edge_clock_manual_advance(&r->clk, 2);
    exec_ok(r->db, "BEGIN IMMEDIATE");
    edge_capture_reset(r->cap);
    exec_ok(r->db, sql);
    uint64_t seq = 0;
    char err[256] = "";
    assert_int_equal(edge_repl_commit_entry(r->cap, &r->local, 0, &seq, err, sizeof(err)), EDGE_OK);
    exec_ok(r->db, "COMMIT");
    edge_feed_dispatch(&r->st, r->db);
    return seq;
}

static const char *kind_name(int k)
{
    return k == EDGE_FEED_INSERT ? "insert" : k == EDGE_FEED_UPDATE ? "update" : k == EDGE_FEED_DELETE ? "delete" : "ddl";
}

static void on_entry(void *ud, const struct edge_feed_entry *e)
{
    struct seen *s = ud;
    if (e->hlc < s->last_hlc) s->hlc_order_ok = false;
    s->last_hlc = e->hlc;
    for (size_t i = 0; i < e->n_ops && s->n < 64; i++) {
        const struct edge_feed_op *op = &e->ops[i];
        struct edge_buf b;
        edge_buf_init(&b, 1 << 16);
        edge_buf_printf(&b, "%s:%llu %s %.*s ", e->origin, (unsigned long long)e->seq, kind_name(op->kind),
                        (int)op->table_len, op->table);
        edge_feed_pk_json(op, &b);
        edge_buf_putc(&b, ' ');
        edge_feed_row_json(op, &b);
        if (op->conflict != NULL) {
            edge_buf_printf(&b, " conflict %s winner %s:%llu loser %s:%llu ", op->conflict->this_won ? "won" : "lost",
                            op->conflict->winner_origin, (unsigned long long)op->conflict->winner_seq,
                            op->conflict->loser_origin, (unsigned long long)op->conflict->loser_seq);
            edge_repl_image_json(op->conflict->loser_image, op->conflict->loser_image_len, &b);
        }
        edge_buf_putc(&b, '\0');
        snprintf(s->lines[s->n++], sizeof(s->lines[0]), "%s", b.data);
        edge_buf_free(&b);
    }
}

static void on_reset(void *ud)
{
    ((struct seen *)ud)->resets++;
}

static void seen_init(struct seen *s)
{
    memset(s, 0, sizeof(*s));
    s->hlc_order_ok = true;
}

/* Local commits: insert, update, delete, composite keys and value types. */
static void test_local_commits(void **state)
{
    (void)state;
    struct region a;
    region_init(&a, "ra", 1000000);
    struct seen s;
    seen_init(&s);
    /* nobody listens: nothing is read or delivered */
    write_sql(&a, "INSERT INTO orders VALUES (1, 'open', 5)");
    assert_int_equal(atomic_load(&a.st.feed.delivered), 0);
    struct edge_feed_listener l = {on_entry, on_reset, &s};
    assert_int_equal(edge_feed_listen(&a.st, &l), EDGE_OK);
    /* the first dispatch after registering places the cursor (entries before it are history) */
    edge_feed_dispatch(&a.st, a.db);
    assert_int_equal(s.n, 0);
    assert_int_equal(write_sql(&a, "INSERT INTO orders VALUES (2, 'open', 7)"), 2);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.lines[0], "ra:2 insert orders 2 {\"id\":2,\"status\":\"open\",\"n\":7}");
    write_sql(&a, "UPDATE orders SET status = 'shipped' WHERE id = 2");
    assert_string_equal(s.lines[1], "ra:3 update orders 2 {\"id\":2,\"status\":\"shipped\",\"n\":7}");
    write_sql(&a, "DELETE FROM orders WHERE id = 1");
    assert_string_equal(s.lines[2], "ra:4 delete orders 1 {\"id\":1}");
    write_sql(&a, "INSERT INTO pair VALUES ('k', 3, x'0102'), ('k', 4, 1.5)");
    assert_int_equal(s.n, 5);
    assert_string_equal(s.lines[3], "ra:5 insert pair [\"k\",3] {\"a\":\"k\",\"b\":3,\"v\":{\"base64\":\"AQI=\"}}");
    assert_string_equal(s.lines[4], "ra:5 insert pair [\"k\",4] {\"a\":\"k\",\"b\":4,\"v\":1.5}");
    /* a row deleted and written again is an insert */
    write_sql(&a, "INSERT INTO orders VALUES (1, 'again', NULL)");
    assert_string_equal(s.lines[5], "ra:6 insert orders 1 {\"id\":1,\"status\":\"again\",\"n\":null}");
    /* one transaction writing a row twice: the second write is an update (both carry the
     * entry's stamp), and a row deleted and written again inside it is an insert */
    write_sql(&a, "INSERT INTO orders VALUES (50, 'a', 1); UPDATE orders SET n = 2 WHERE id = 50;"
                  "DELETE FROM orders WHERE id = 50; INSERT INTO orders VALUES (50, 'b', 3)");
    assert_string_equal(s.lines[6], "ra:7 insert orders 50 {\"id\":50,\"status\":\"a\",\"n\":1}");
    assert_string_equal(s.lines[7], "ra:7 update orders 50 {\"id\":50,\"status\":\"a\",\"n\":2}");
    assert_string_equal(s.lines[8], "ra:7 delete orders 50 {\"id\":50}");
    assert_string_equal(s.lines[9], "ra:7 insert orders 50 {\"id\":50,\"status\":\"b\",\"n\":3}");
    s.n = 6;
    /* a dispatch with nothing new delivers nothing */
    edge_feed_dispatch(&a.st, a.db);
    assert_int_equal(s.n, 6);
    assert_int_equal(atomic_load(&a.st.feed.delivered), 6);
    /* unlistened: nothing more */
    edge_feed_unlisten(&a.st, &s);
    write_sql(&a, "UPDATE orders SET n = 1");
    assert_int_equal(s.n, 6);
    assert_int_equal(s.resets, 0);
    region_free(&a);
}

static void apply_from(struct region *dst, struct region *src, uint64_t seq)
{
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(src->db, "SELECT hlc, deps, payload FROM _edge_log WHERE origin=?1 AND seq=?2",
                                        -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(st, 1, src->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)seq);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    struct edge_repl_entry e;
    memset(&e, 0, sizeof(e));
    snprintf(e.origin, sizeof(e.origin), "%s", src->id);
    e.seq = seq;
    e.hlc = (uint64_t)sqlite3_column_int64(st, 0);
    edge_vclock_init(&e.deps);
    size_t used;
    assert_int_equal(edge_vclock_decode(&e.deps, sqlite3_column_blob(st, 1), (size_t)sqlite3_column_bytes(st, 1), &used),
                     EDGE_OK);
    e.payload = (uint8_t *)sqlite3_column_blob(st, 2);
    e.payload_len = (size_t)sqlite3_column_bytes(st, 2);
    struct edge_repl_apply_stats as = {0};
    char err[256] = "";
    edge_capture_suspend(dst->cap, true);
    assert_int_equal(edge_repl_apply_batch(dst->db, &dst->local, 0, &e, 1, &as, err, sizeof(err)), EDGE_OK);
    edge_capture_suspend(dst->cap, false);
    assert_int_equal(as.applied, 1);
    edge_vclock_close(&e.deps);
    sqlite3_finalize(st);
    edge_feed_dispatch(&dst->st, dst->db);
}

/* Entries applied from a peer, and a conflict this node resolved. */
static void test_peer_entries_and_conflict(void **state)
{
    (void)state;
    struct region a, b;
    region_init(&a, "ra", 1000000);
    region_init(&b, "rb", 1000000);
    struct seen s;
    seen_init(&s);
    struct edge_feed_listener l = {on_entry, on_reset, &s};
    assert_int_equal(edge_feed_listen(&a.st, &l), EDGE_OK);
    write_sql(&b, "INSERT INTO orders VALUES (10, 'open', 1)");
    apply_from(&a, &b, 1);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.lines[0], "rb:1 insert orders 10 {\"id\":10,\"status\":\"open\",\"n\":1}");
    /* concurrent updates of one column: a writes first, then b (later stamp) wins at a */
    write_sql(&a, "UPDATE orders SET status = 'a-side' WHERE id = 10");
    write_sql(&b, "UPDATE orders SET status = 'b-side' WHERE id = 10");
    apply_from(&a, &b, 2);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.lines[1], "ra:1 update orders 10 {\"id\":10,\"status\":\"a-side\",\"n\":1}");
    assert_non_null(strstr(s.lines[2], "rb:2 update orders 10 {\"id\":10,\"status\":\"b-side\",\"n\":1} conflict won"
                                       " winner rb:2 loser ra:1 "));
    assert_true(s.hlc_order_ok);
    region_free(&a);
    region_free(&b);
}

/* Entries compacted away before the feed read them: a reset, then the feed goes on. */
static void test_gap_resets(void **state)
{
    (void)state;
    struct region a;
    region_init(&a, "ra", 1000000);
    struct seen s;
    seen_init(&s);
    struct edge_feed_listener l = {on_entry, on_reset, &s};
    assert_int_equal(edge_feed_listen(&a.st, &l), EDGE_OK);
    /* commits the feed does not hear of (no dispatch), then compacted */
    for (int i = 0; i < 3; i++) {
        edge_clock_manual_advance(&a.clk, 2);
        exec_ok(a.db, "BEGIN IMMEDIATE");
        edge_capture_reset(a.cap);
        char sql[128];
        snprintf(sql, sizeof(sql), "INSERT INTO orders VALUES (%d, 'x', 0)", 100 + i);
        exec_ok(a.db, sql);
        uint64_t seq = 0;
        char err[256] = "";
        assert_int_equal(edge_repl_commit_entry(a.cap, &a.local, 0, &seq, err, sizeof(err)), EDGE_OK);
        exec_ok(a.db, "COMMIT");
    }
    exec_ok(a.db, "DELETE FROM _edge_log WHERE seq <= 2");
    write_sql(&a, "INSERT INTO orders VALUES (200, 'y', 0)");
    assert_int_equal(s.resets, 1);
    /* what is still in the log goes out, in order */
    assert_int_equal(s.n, 2);
    assert_non_null(strstr(s.lines[0], "ra:3 insert orders 102"));
    assert_non_null(strstr(s.lines[1], "ra:4 insert orders 200"));
    edge_feed_reset(&a.st);
    assert_int_equal(s.resets, 2);
    write_sql(&a, "INSERT INTO orders VALUES (201, 'z', 0)");
    /* after a reset the next dispatch only places the cursor */
    assert_int_equal(s.n, 2);
    write_sql(&a, "INSERT INTO orders VALUES (202, 'z', 0)");
    assert_int_equal(s.n, 3);
    region_free(&a);
}

static void test_listener_bound(void **state)
{
    (void)state;
    struct region a;
    region_init(&a, "ra", 1000000);
    struct seen s[EDGE_FEED_MAX_LISTENERS + 1];
    for (int i = 0; i <= EDGE_FEED_MAX_LISTENERS; i++) {
        seen_init(&s[i]);
        struct edge_feed_listener l = {on_entry, NULL, &s[i]};
        assert_int_equal(edge_feed_listen(&a.st, &l), i < EDGE_FEED_MAX_LISTENERS ? EDGE_OK : EDGE_EBUSY);
    }
    write_sql(&a, "INSERT INTO orders VALUES (1, 'x', 0)");
    for (int i = 0; i < EDGE_FEED_MAX_LISTENERS; i++) assert_int_equal(s[i].n, 1);
    assert_int_equal(s[EDGE_FEED_MAX_LISTENERS].n, 0);
    region_free(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_local_commits),
        cmocka_unit_test(test_peer_entries_and_conflict),
        cmocka_unit_test(test_gap_resets),
        cmocka_unit_test(test_listener_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
