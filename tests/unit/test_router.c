/* SPDX-License-Identifier: MIT */
/* Unit tests of src/router: the normalizer tokenizes like SQLite (literals inside quoted
 * identifiers and comments are not literals); the statistics count exactly, evict the
 * least-called entries and report; the classification comes from SQLite (tables read and
 * written through views and triggers, non-deterministic functions); every planning rule. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <jansson.h>

#include "core/buf.h"
#include "router/router.h"
#include "store/store.h"

static void norm_is(const char *sql, const char *want)
{
    char out[EDGE_ROUTER_NORM_MAX];
    edge_router_normalize(sql, strlen(sql), out, sizeof(out));
    if (strcmp(out, want) != 0) fail_msg("normalize(%s) = '%s', wanted '%s'", sql, out, want);
}

static void test_normalize(void **state)
{
    (void)state;
    norm_is("SELECT * FROM t WHERE id = 1", "select * from t where id = ?");
    norm_is("select *\n  from T where ID=42;", "select * from t where id = ?");
    norm_is("SELECT 'it''s', -3.5e+2, 0x1F, X'00ff', 1_000", "select ?, - ?, ?, ?, ?");
    norm_is("SELECT ?, ?7, :name, @a, $b", "select ?, ?, ?, ?, ?");
    /* a quoted identifier is not a literal; a literal's text is not a comment */
    norm_is("SELECT \"Col 1\", `x`, [y z] FROM \"T\"", "select \"Col 1\", `x`, [y z] from \"T\"");
    norm_is("SELECT '--not a comment' -- but this is 5\n, 2", "select ?, ?");
    norm_is("SELECT /* 7 */ a.b FROM a WHERE c IN (1, 2,3)", "select a.b from a where c in(?, ?, ?)");
    norm_is("SELECT count(*) FROM t", "select count(*) from t");
    norm_is("SELECT .5 + a1 FROM t", "select ? + a1 from t");
    norm_is("SELECT j ->> '$.a' FROM t WHERE a<>1 AND b<=2 OR c||d", "select j ->> ? from t where a <> ? and b <= ? or c || d");
    norm_is("  ", "");
    norm_is("SELECT 1; SELECT 2;;", "select ?; select ?");
    /* an unterminated string or comment ends the text, as it does for SQLite */
    norm_is("SELECT 'abc", "select ?");
    norm_is("SELECT 1 /* open", "select ?");
    /* long statements are cut and marked */
    char big[5000];
    strcpy(big, "SELECT ");
    for (int i = 0; i < 700; i++) strcat(big, "a,");
    strcat(big, "b");
    char out[EDGE_ROUTER_NORM_MAX];
    size_t n = edge_router_normalize(big, strlen(big), out, sizeof(out));
    assert_true(n < EDGE_ROUTER_NORM_MAX);
    assert_int_equal(strlen(out), n);
    assert_string_equal(out + n - 3, "...");
}

static void test_hist(void **state)
{
    (void)state;
    struct edge_router_hist h = {0};
    assert_true(edge_router_hist_quantile(&h, 0.5) == 0.0);
    for (int i = 0; i < 90; i++) edge_router_hist_add(&h, 1000000);     /* 1 ms */
    for (int i = 0; i < 10; i++) edge_router_hist_add(&h, 100000000);   /* 100 ms */
    assert_int_equal(h.n, 100);
    double p50 = edge_router_hist_quantile(&h, 0.5), p99 = edge_router_hist_quantile(&h, 0.99);
    /* the bucket bound at or above the value, within one bucket (x1.25) */
    assert_true(p50 >= 1.0 && p50 < 1.25);
    assert_true(p99 >= 100.0 && p99 < 125.0);
    assert_true(edge_router_hist_quantile(&h, 0.90) < 1.25);
    edge_router_hist_add(&h, 0);
    edge_router_hist_add(&h, UINT64_MAX / 2); /* the last bucket takes anything larger */
    assert_int_equal(h.n, 102);
}

static void test_stats(void **state)
{
    (void)state;
    struct edge_router_stats *s = NULL;
    assert_int_equal(edge_router_stats_new(3, 0, &s), 0);
    for (int i = 0; i < 5; i++) {
        char sql[64];
        snprintf(sql, sizeof(sql), "SELECT v FROM t WHERE id = %d", i);
        edge_router_stats_record(s, sql, strlen(sql), "r1", 2000000, 1, false, i == 4);
    }
    edge_router_stats_record(s, "SELECT v FROM t WHERE id = 'x'", 30, "r1", 1000000, 0, true, false);
    edge_router_stats_record(s, "select v from t where id=?", 26, "r2", 1000000, 3, false, false);
    edge_router_stats_record(s, "INSERT INTO t VALUES (1)", 24, "r1", 5000000, 0, false, false);
    struct edge_buf b;
    edge_buf_init(&b, 1 << 20);
    assert_int_equal(edge_router_stats_json(s, "calls", 10, &b), 0);
    json_t *doc = json_loads(b.data, 0, NULL);
    assert_non_null(doc);
    json_t *st = json_object_get(doc, "statements");
    assert_int_equal(json_array_size(st), 3);
    json_t *e0 = json_array_get(st, 0);
    assert_string_equal(json_string_value(json_object_get(e0, "query")), "select v from t where id = ?");
    assert_string_equal(json_string_value(json_object_get(e0, "region")), "r1");
    assert_int_equal(json_integer_value(json_object_get(e0, "calls")), 6);
    assert_int_equal(json_integer_value(json_object_get(e0, "errors")), 1);
    assert_int_equal(json_integer_value(json_object_get(e0, "rows")), 5);
    assert_int_equal(json_integer_value(json_object_get(e0, "cache_hits")), 1);
    assert_true(json_real_value(json_object_get(e0, "total_time_ms")) == 11.0);
    /* the same statement in another region is its own entry */
    json_t *e1 = json_array_get(st, 1);
    assert_int_equal(json_integer_value(json_object_get(e1, "calls")), 1);
    json_decref(doc);

    /* sort by total time: the insert (5 ms) after the 11 ms select */
    edge_buf_reset(&b);
    assert_int_equal(edge_router_stats_json(s, "total_time", 2, &b), 0);
    doc = json_loads(b.data, 0, NULL);
    st = json_object_get(doc, "statements");
    assert_int_equal(json_array_size(st), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(st, 1), "query")), "insert into t values(?)");
    json_decref(doc);
    edge_buf_reset(&b);
    assert_int_equal(edge_router_stats_json(s, "colour", 2, &b), EDGE_EINVAL);

    /* full (3): a new statement evicts the least called (r2's, then the insert by last use) */
    edge_router_stats_record(s, "DELETE FROM t", 13, "r1", 1000, 0, false, false);
    edge_buf_reset(&b);
    assert_int_equal(edge_router_stats_json(s, "calls", 10, &b), 0);
    doc = json_loads(b.data, 0, NULL);
    assert_int_equal(json_array_size(json_object_get(doc, "statements")), 3);
    assert_int_equal(json_integer_value(json_object_get(doc, "evicted")), 1);
    const char *txt = b.data;
    assert_null(strstr(txt, "\"r2\""));
    assert_non_null(strstr(txt, "delete from t"));
    json_decref(doc);

    /* Prometheus: top 1 by total time, labels escaped */
    edge_router_stats_record(s, "SELECT \"a\\b\" FROM t", 19, "r1", 900000000, 0, false, false);
    edge_buf_reset(&b);
    assert_int_equal(edge_router_stats_prometheus(s, "edgelite", 1, &b), 0);
    assert_non_null(strstr(b.data, "edgelite_statement_calls_total{query=\"select \\\"a\\\\b\\\" from t\",region=\"r1\"} 1\n"));
    assert_null(strstr(b.data, "where id"));

    edge_router_stats_reset(s);
    edge_buf_reset(&b);
    assert_int_equal(edge_router_stats_json(s, NULL, 10, &b), 0);
    assert_non_null(strstr(b.data, "\"statements\":[]"));
    edge_buf_free(&b);
    edge_router_stats_free(s);
}

/* A table of 100 entries evicts 5 at once when a 101st arrives. */
static void test_stats_evict_batch(void **state)
{
    (void)state;
    struct edge_router_stats *s = NULL;
    assert_int_equal(edge_router_stats_new(100, 0, &s), 0);
    for (int i = 0; i < 100; i++) {
        char sql[64];
        int len = snprintf(sql, sizeof(sql), "SELECT c%d FROM t", i);
        for (int k = 0; k <= i; k++) edge_router_stats_record(s, sql, (size_t)len, "r", 1000, 0, false, false);
    }
    edge_router_stats_record(s, "SELECT new FROM t", 17, "r", 1000, 0, false, false);
    struct edge_buf b;
    edge_buf_init(&b, 1 << 22);
    assert_int_equal(edge_router_stats_json(s, "calls", 1000, &b), 0);
    json_t *doc = json_loads(b.data, 0, NULL);
    assert_int_equal(json_integer_value(json_object_get(doc, "count")), 96);
    assert_int_equal(json_integer_value(json_object_get(doc, "evicted")), 5);
    /* c0..c4 (1..5 calls) went, c5 stayed */
    assert_null(strstr(b.data, "\"select c4 from t\""));
    assert_non_null(strstr(b.data, "\"select c5 from t\""));
    json_decref(doc);
    edge_buf_free(&b);
    edge_router_stats_free(s);
}

/* ---------------------------------------------------------------------------------- */

struct fx {
    char dir[64];
    char path[96];
    struct edge_store_conn *c;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/edge-router-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/db", f->dir);
    char err[256];
    assert_int_equal(edge_store_global_init(err, sizeof(err)), 0);
    assert_int_equal(edge_store_open(f->path, EDGE_STORE_WRITE, false, 1000, &f->c, err, sizeof(err)), 0);
    assert_int_equal(sqlite3_exec(edge_store_db(f->c),
                                  "CREATE TABLE a(id INTEGER PRIMARY KEY, v); CREATE TABLE b(id INTEGER PRIMARY KEY, "
                                  "w); CREATE TABLE audit(x); CREATE VIEW ab AS SELECT a.v, b.w FROM a JOIN b USING "
                                  "(id); CREATE TRIGGER tb AFTER INSERT ON b BEGIN INSERT INTO audit VALUES (new.w); "
                                  "END;",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    edge_store_close(f->c);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static bool has(char (*list)[EDGE_ROUTER_NAME_MAX], int n, const char *name)
{
    for (int i = 0; i < n; i++) {
        if (strcmp(list[i], name) == 0) return true;
    }
    return false;
}

static struct edge_router_class cls_of(struct fx *f, const char *sql)
{
    struct edge_router_class c;
    memset(&c, 0, sizeof(c));
    assert_int_equal(edge_router_classify(f->c, sql, strlen(sql), &c), 0);
    return c;
}

static void test_classify(void **state)
{
    struct fx *f = *state;
    struct edge_router_class c = cls_of(f, "SELECT v FROM a WHERE id = ?");
    assert_false(c.writes);
    assert_false(c.unknown);
    assert_int_equal(c.n_read, 1);
    assert_string_equal(c.read[0], "a");
    assert_int_equal(c.n_write, 0);
    assert_false(c.nondeterministic);

    /* count(*) reads no column but still the table */
    c = cls_of(f, "SELECT count(*) FROM b");
    assert_true(has(c.read, c.n_read, "b"));

    /* through a view: the tables under it */
    c = cls_of(f, "SELECT * FROM ab");
    assert_true(has(c.read, c.n_read, "a"));
    assert_true(has(c.read, c.n_read, "b"));

    /* a write with its trigger's table */
    c = cls_of(f, "INSERT INTO b(w) VALUES (1)");
    assert_true(c.writes);
    assert_true(has(c.write, c.n_write, "b"));
    assert_true(has(c.write, c.n_write, "audit"));

    c = cls_of(f, "SELECT random(), v FROM a");
    assert_true(c.nondeterministic);
    assert_string_equal(c.first_nondet, "random");
    c = cls_of(f, "SELECT v FROM a WHERE v > datetime('now')");
    assert_true(c.nondeterministic);
    c = cls_of(f, "SELECT CURRENT_TIMESTAMP");
    assert_true(c.nondeterministic);
    c = cls_of(f, "SELECT upper(v), count(*) FROM a GROUP BY 1");
    assert_false(c.nondeterministic);

    c = cls_of(f, "SELECT * FROM nosuch");
    assert_true(c.unknown);
    c = cls_of(f, "BEGIN");
    assert_true(c.txctl);
    c = cls_of(f, "CREATE TABLE c(x)");
    assert_true(c.ddl);
    assert_true(c.writes);
    c = cls_of(f, "CREATE INDEX ia ON a(v)");
    assert_true(c.ddl);
    assert_true(has(c.write, c.n_write, "a"));
    /* the sandbox still refuses what it refuses: not classified */
    c = cls_of(f, "SELECT * FROM _edge_log");
    assert_true(c.unknown);
    assert_int_equal(c.n_stmts, 1);
}

/* ---------------------------------------------------------------------------------- */

struct world {
    struct edge_vclock local, vb, vc;
    struct edge_router_peer peers[2];
    struct edge_router_input in;
};

/* Region a (the primary), b and c; this node is `self`; b is 10 ms away, c 50 ms. */
static void world_init(struct world *w, const char *self)
{
    memset(w, 0, sizeof(*w));
    edge_vclock_init(&w->local);
    edge_vclock_init(&w->vb);
    edge_vclock_init(&w->vc);
    const char *others[3][2] = {{"b", "c"}, {"a", "c"}, {"a", "b"}};
    int idx = self[0] - 'a';
    w->peers[0] = (struct edge_router_peer){others[idx][0], true, 10, &w->vb};
    w->peers[1] = (struct edge_router_peer){others[idx][1], true, 50, &w->vc};
    w->in.self = self;
    w->in.cluster = true;
    w->in.primary = "a";
    w->in.kind = EDGE_ROUTER_READ;
    w->in.local_vv = &w->local;
    w->in.peers = w->peers;
    w->in.n_peers = 2;
    w->in.can_forward = true;
    w->in.bookmark_wait_ms = 1000;
}

static void world_close(struct world *w)
{
    edge_vclock_close(&w->local);
    edge_vclock_close(&w->vb);
    edge_vclock_close(&w->vc);
}

static void plan_is(const struct edge_router_input *in, enum edge_router_action a, const char *target,
                    const char *reason)
{
    struct edge_router_plan p;
    edge_router_plan(in, &p);
    if (p.action != a || strcmp(p.target, target) != 0 || strcmp(p.reason, reason) != 0) {
        fail_msg("plan = %s %s %s, wanted %s %s %s", edge_router_action_name(p.action), p.target, p.reason,
                 edge_router_action_name(a), target, reason);
    }
}

static void test_plan_reads(void **state)
{
    (void)state;
    struct world w;
    world_init(&w, "c");
    /* peers of c: a (10 ms), b (50 ms) */
    plan_is(&w.in, EDGE_ROUTE_LOCAL, "c", "read-local");
    struct edge_router_plan p;
    edge_router_plan(&w.in, &p);
    assert_true(p.cacheable);
    w.in.nondeterministic = true;
    edge_router_plan(&w.in, &p);
    assert_false(p.cacheable);
    assert_string_equal(p.cache_why, "nondeterministic");
    w.in.nondeterministic = false;
    w.in.in_txn = true;
    edge_router_plan(&w.in, &p);
    assert_false(p.cacheable);
    assert_string_equal(p.cache_why, "transaction");
    w.in.in_txn = false;

    /* bookmark b:5: covered locally, else wait, else the nearest region known to have it */
    w.in.bm_origin = "b";
    w.in.bm_seq = 5;
    edge_vclock_set(&w.local, "b", 5);
    plan_is(&w.in, EDGE_ROUTE_LOCAL, "c", "bookmark-covered");
    edge_vclock_set(&w.local, "b", 4);
    plan_is(&w.in, EDGE_ROUTE_WAIT, "c", "bookmark-wait");
    w.in.waited = true;
    /* a (nearer) does not have it, b (the origin, farther) does by its VV (peers[1].vv = vc) */
    edge_vclock_set(&w.vc, "b", 5);
    plan_is(&w.in, EDGE_ROUTE_FORWARD, "b", "bookmark-forward");
    edge_vclock_set(&w.vb, "b", 9);
    plan_is(&w.in, EDGE_ROUTE_FORWARD, "a", "bookmark-forward");
    edge_router_plan(&w.in, &p);
    assert_int_equal(p.n_fallbacks, 1);
    assert_string_equal(p.fallbacks[0], "b");
    assert_false(p.cacheable);
    /* a down: b */
    w.peers[0].up = false;
    plan_is(&w.in, EDGE_ROUTE_FORWARD, "b", "bookmark-forward");
    /* nobody known to have it: refused (the node waits on until the bookmark timeout) */
    edge_vclock_set(&w.vc, "b", 4);
    plan_is(&w.in, EDGE_ROUTE_REFUSE, "c", "bookmark-no-covering-region");
    w.peers[0].up = true;
    /* already forwarded once, or inside a stream: never sent on */
    w.in.forwarded = true;
    plan_is(&w.in, EDGE_ROUTE_REFUSE, "c", "bookmark-not-forwardable");
    w.in.forwarded = false;
    w.in.can_forward = false;
    plan_is(&w.in, EDGE_ROUTE_REFUSE, "c", "bookmark-not-forwardable");
    w.in.can_forward = true;
    /* router.bookmark_wait_ms: 0 skips the wait */
    w.in.waited = false;
    w.in.bookmark_wait_ms = 0;
    plan_is(&w.in, EDGE_ROUTE_FORWARD, "a", "bookmark-forward");
    w.in.bm_origin = NULL;

    /* strong reads: local only when the local VV covers the primary's commit point */
    w.in.consistency = EDGE_ROUTER_STRONG;
    w.in.primary_known = true;
    w.in.primary_commit = 7;
    edge_vclock_set(&w.local, "a", 7);
    plan_is(&w.in, EDGE_ROUTE_LOCAL, "c", "strong-read-covered");
    w.in.primary_commit = 8;
    plan_is(&w.in, EDGE_ROUTE_FORWARD, "a", "strong-read-primary");
    w.in.primary_known = false;
    plan_is(&w.in, EDGE_ROUTE_FORWARD, "a", "strong-read-primary");
    /* explain: the node will ask the primary (read index) */
    w.in.read_index = true;
    plan_is(&w.in, EDGE_ROUTE_LOCAL, "c", "strong-read-index");
    edge_router_plan(&w.in, &p);
    assert_int_equal(p.n_fallbacks, 1);
    assert_string_equal(p.fallbacks[0], "a");
    assert_false(p.cacheable);
    w.in.read_index = false;
    w.in.can_forward = false;
    plan_is(&w.in, EDGE_ROUTE_REFUSE, "c", "strong-read-in-stream");
    world_close(&w);

    world_init(&w, "a");
    w.in.consistency = EDGE_ROUTER_STRONG;
    plan_is(&w.in, EDGE_ROUTE_LOCAL, "a", "strong-read-primary-local");
    world_close(&w);
}

static void test_plan_writes(void **state)
{
    (void)state;
    struct world w;
    world_init(&w, "b");
    w.in.kind = EDGE_ROUTER_WRITE;
    plan_is(&w.in, EDGE_ROUTE_LOCAL, "b", "write-local");
    struct edge_router_plan p;
    edge_router_plan(&w.in, &p);
    assert_false(p.cacheable);
    w.in.consistency = EDGE_ROUTER_STRONG;
    plan_is(&w.in, EDGE_ROUTE_FORWARD, "a", "strong-write-primary");
    w.in.consistency = EDGE_ROUTER_EVENTUAL;
    w.in.ddl = true;
    plan_is(&w.in, EDGE_ROUTE_FORWARD, "a", "ddl-primary");
    w.in.forwarded = true;
    plan_is(&w.in, EDGE_ROUTE_REFUSE, "b", "forwarded-to-non-primary");
    w.in.forwarded = false;
    w.in.can_forward = false;
    plan_is(&w.in, EDGE_ROUTE_REFUSE, "b", "strong-in-stream");
    w.in.ddl = false;
    w.in.kind = EDGE_ROUTER_TXN;
    plan_is(&w.in, EDGE_ROUTE_LOCAL, "b", "transaction-local");
    world_close(&w);

    world_init(&w, "a");
    w.in.kind = EDGE_ROUTER_WRITE;
    w.in.consistency = EDGE_ROUTER_STRONG;
    plan_is(&w.in, EDGE_ROUTE_LOCAL, "a", "strong-write-local");
    w.in.cluster = false;
    plan_is(&w.in, EDGE_ROUTE_LOCAL, "a", "single-node");
    world_close(&w);
}

/* router.fallback comes first, then the rest by RTT. */
static void test_plan_fallbacks(void **state)
{
    (void)state;
    struct world w;
    world_init(&w, "c");
    w.in.bm_origin = "b";
    w.in.bm_seq = 1;
    w.in.waited = true;
    edge_vclock_set(&w.vb, "b", 1);
    edge_vclock_set(&w.vc, "b", 1);
    const char *order[] = {"b", "a"};
    w.in.fallback = order;
    w.in.n_fallback = 2;
    struct edge_router_plan p;
    edge_router_plan(&w.in, &p);
    /* both cover: a is nearer, b follows */
    assert_string_equal(p.target, "a");
    assert_int_equal(p.n_fallbacks, 1);
    assert_string_equal(p.fallbacks[0], "b");
    world_close(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_normalize),
        cmocka_unit_test(test_hist),
        cmocka_unit_test(test_stats),
        cmocka_unit_test(test_stats_evict_batch),
        cmocka_unit_test_setup_teardown(test_classify, setup, teardown),
        cmocka_unit_test(test_plan_reads),
        cmocka_unit_test(test_plan_writes),
        cmocka_unit_test(test_plan_fallbacks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
