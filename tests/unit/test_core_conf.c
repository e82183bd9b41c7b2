/* SPDX-License-Identifier: MIT */
/* Unit tests of src/core/conf: the shipped deployment files parse with the expected
 * values; every validation rule produces a "FILE:LINE: key: problem" message; null
 * handling, secret_env resolution, defaults; regions.json symmetric RTT lookup and its
 * error cases; allocation failures. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/alloc.h"
#include "core/conf.h"

/* The repository root, derived from this file's path (CMake passes it absolute). */
static void repo_path(char *out, size_t n, const char *rel)
{
    const char *me = __FILE__;
    const char *tail = strstr(me, "tests/unit/test_core_conf.c");
    size_t root_len = tail != NULL ? (size_t)(tail - me) : 0;
    snprintf(out, n, "%.*s%s", (int)root_len, me, rel);
}

static struct edge_conf *parse_ok(const char *yaml)
{
    struct edge_conf *c = NULL;
    char msg[EDGE_ERRMSG_SIZE] = "";
    int rv = edge_conf_parse("t.yaml", yaml, strlen(yaml), &c, msg, sizeof(msg));
    if (rv != EDGE_OK) {
        fail_msg("unexpected error %d: %s", rv, msg);
    }
    assert_non_null(c);
    return c;
}

/* Parse must fail with EDGE_ECONFIG and a message containing `want`. */
static void expect_err(const char *yaml, const char *want)
{
    struct edge_conf *c = NULL;
    char msg[EDGE_ERRMSG_SIZE] = "";
    int rv = edge_conf_parse("t.yaml", yaml, strlen(yaml), &c, msg, sizeof(msg));
    if (rv != EDGE_ECONFIG || strstr(msg, want) == NULL) {
        fail_msg("rv=%d msg='%s', wanted ECONFIG with '%s'\n--- yaml:\n%s", rv, msg, want,
                 yaml);
    }
    assert_null(c);
}

#define REGION1 "regions:\n  - { id: r1, listen: \"127.0.0.1:8081\" }\n"

static void test_deployment_example(void **state)
{
    (void)state;
    char path[512];
    char msg[EDGE_ERRMSG_SIZE] = "";
    struct edge_conf *c = NULL;
    repo_path(path, sizeof(path), "deployment/edge-config.yaml");
    int rv = edge_conf_load(path, &c, msg, sizeof(msg));
    if (rv != EDGE_OK) {
        fail_msg("%s", msg);
    }
    assert_string_equal(c->cluster_name, "demo");
    assert_string_equal(c->cluster_secret, "change-me");
    assert_int_equal(c->n_regions, 3);
    static const char *ids[] = {"us-west-2", "eu-central-1", "ap-southeast-1"};
    for (size_t i = 0; i < 3; i++) {
        char buf[64];
        assert_string_equal(c->regions[i].id, ids[i]);
        snprintf(buf, sizeof(buf), "127.0.0.1:%zu", 8081 + i);
        assert_string_equal(c->regions[i].listen, buf);
        snprintf(buf, sizeof(buf), "http://127.0.0.1:%zu", 8081 + i);
        assert_string_equal(c->regions[i].url, buf);
        snprintf(buf, sizeof(buf), "./edgelite-data/%s", ids[i]);
        assert_string_equal(c->regions[i].data_dir, buf); /* relative, kept as written */
        assert_int_equal(c->regions[i].priority, (int)i + 1);
    }
    assert_int_equal(c->consistency, EDGE_CONS_EVENTUAL);
    assert_string_equal(c->conflict_resolution, "version_vector");
    assert_int_equal(c->sync_interval_ms, 1000);
    assert_int_equal(c->max_retries, 3);
    assert_int_equal(c->n_tables, 2);
    assert_int_equal(edge_conf_table_consistency(c, "accounts"), EDGE_CONS_STRONG);
    assert_int_equal(edge_conf_table_consistency(c, "audit_log"), EDGE_CONS_ASYNC);
    assert_int_equal(edge_conf_table_consistency(c, "other"), EDGE_CONS_EVENTUAL);
    assert_null(c->jwt_public_key_file);
    assert_ptr_equal(edge_conf_region_find(c, "eu-central-1"), &c->regions[1]);
    assert_null(edge_conf_region_find(c, "us-east-1"));
    edge_conf_free(c);
}

static void test_defaults_and_nulls(void **state)
{
    (void)state;
    struct edge_conf *c = parse_ok("# minimal\n" REGION1 "cluster: ~\nreplication:\n"
                                   "auth: { jwt_public_key_file: keys/jwt.pub }\n"
                                   "router: {}\nsessions: {}\nrealtime: null\n");
    assert_string_equal(c->cluster_name, "edgelite");
    assert_null(c->cluster_secret);
    assert_int_equal(c->cluster_sig_replay_max, EDGE_CONF_SIG_REPLAY_MAX);
    assert_int_equal(c->regions[0].priority, 100);
    assert_null(c->regions[0].url);
    assert_null(c->regions[0].data_dir);
    assert_int_equal(c->consistency, EDGE_CONS_EVENTUAL);
    assert_string_equal(c->conflict_resolution, "version_vector");
    assert_int_equal(c->sync_interval_ms, 1000);
    assert_int_equal(c->max_retries, 3);
    assert_int_equal(c->max_clock_skew_ms, 500);
    assert_int_equal(c->n_tables, 0);
    assert_string_equal(c->jwt_public_key_file, "keys/jwt.pub");
    assert_int_equal(c->public_metrics, 0);
    edge_conf_free(c);

    c = parse_ok(REGION1 "auth: { public_metrics: true }\n");
    assert_int_equal(c->public_metrics, 1);
    edge_conf_free(c);
    c = parse_ok(REGION1 "auth: { public_metrics: false }\n");
    assert_int_equal(c->public_metrics, 0);
    assert_int_equal(c->conflicts_keep, EDGE_CONF_CONFLICTS_KEEP);
    assert_true(c->conflicts_max_age_ms == EDGE_CONF_CONFLICTS_MAX_AGE_MS);
    assert_int_equal(c->writer_queue, EDGE_CONF_WRITER_QUEUE);
    assert_int_equal(c->ws_output_bytes, EDGE_CONF_WS_OUTPUT_BYTES);
    assert_true(c->max_log_bytes == EDGE_CONF_MAX_LOG_BYTES);
    edge_conf_free(c);
    /* replication.max_log_bytes: beyond int's range, 0 = no bound */
    c = parse_ok(REGION1 "replication: { max_log_bytes: 8589934592 }\n");
    assert_true(c->max_log_bytes == 8589934592LL);
    edge_conf_free(c);
    c = parse_ok(REGION1 "replication: { max_log_bytes: 0 }\n");
    assert_true(c->max_log_bytes == 0);
    edge_conf_free(c);

    /* cluster.sig_replay_max: 1 up to its default */
    c = parse_ok("cluster: { sig_replay_max: 8 }\n" REGION1);
    assert_int_equal(c->cluster_sig_replay_max, 8);
    edge_conf_free(c);
    c = parse_ok("cluster: { sig_replay_max: 65536 }\n" REGION1);
    assert_int_equal(c->cluster_sig_replay_max, 65536);
    edge_conf_free(c);

    /* The bounds of issue 9: limits.* and conflict retention. */
    c = parse_ok(REGION1 "limits: { writer_queue: 2, ws_output_bytes: 65536 }\n"
                         "replication: { conflicts_keep: 3, conflicts_max_age: 36h }\n");
    assert_int_equal(c->writer_queue, 2);
    assert_int_equal(c->ws_output_bytes, 65536);
    assert_int_equal(c->conflicts_keep, 3);
    assert_true(c->conflicts_max_age_ms == 36LL * 3600 * 1000);
    edge_conf_free(c);
    /* replication.crdt_columns (conf_crdt.c) */
    c = parse_ok(REGION1 "replication: { crdt_columns: { page_stats.views: pn-counter, carts.items: or-set } }\n");
    assert_int_equal(c->crdt.n_cols, 2);
    assert_string_equal(c->crdt.cols[0].table, "page_stats");
    assert_string_equal(c->crdt.cols[0].column, "views");
    assert_int_equal(edge_conf_crdt_kind(&c->crdt, "PAGE_STATS", "Views"), EDGE_CONF_CRDT_COUNTER);
    assert_int_equal(edge_conf_crdt_kind(&c->crdt, "carts", "items"), EDGE_CONF_CRDT_ORSET);
    assert_int_equal(edge_conf_crdt_kind(&c->crdt, "carts", "views"), 0);
    edge_conf_free(c);
    c = parse_ok(REGION1 "limits: ~\nreplication: { conflicts_max_age: 90s }\n");
    assert_true(c->conflicts_max_age_ms == 90000);
    assert_int_equal(c->writer_queue, EDGE_CONF_WRITER_QUEUE);
    edge_conf_free(c);

    c = parse_ok(REGION1 "  - id: r2\n    url: null\n    listen: \"[::1]:9000\"\n"
                         "    priority: -5\n"
                         "replication: { consistency_level: strong, conflict_resolution: lww,\n"
                         "  sync_interval_ms: 250, max_retries: 0, max_clock_skew_ms: 2000, tables: ~ }\n"
                         "auth: { jwt_public_key_file: ~ }\n");
    assert_int_equal(c->n_regions, 2);
    assert_string_equal(c->regions[1].listen, "[::1]:9000");
    assert_null(c->regions[1].url);
    assert_int_equal(c->regions[1].priority, -5);
    assert_int_equal(c->consistency, EDGE_CONS_STRONG);
    assert_int_equal(edge_conf_table_consistency(c, "t"), EDGE_CONS_STRONG);
    assert_string_equal(c->conflict_resolution, "lww");
    assert_int_equal(c->sync_interval_ms, 250);
    assert_int_equal(c->max_retries, 0);
    assert_int_equal(c->max_clock_skew_ms, 2000);
    assert_null(c->jwt_public_key_file);
    edge_conf_free(c);
}

/* router: (conf_router.c) and regions[].capacity: defaults, values, and each refusal. */
static void test_router_section(void **state)
{
    (void)state;
    struct edge_conf *c = parse_ok(REGION1);
    assert_int_equal(c->router.bookmark_wait_ms, 1000);
    assert_int_equal(c->router.slow_ms, 1000);
    assert_int_equal(c->router.rtt_slack_ms, 10);
    assert_int_equal(c->router.n_fallback, 0);
    assert_int_equal(c->router.stats_max_statements, 1000);
    assert_int_equal(c->router.cache_enabled, 1);
    assert_int_equal(c->router.cache_admit_after, 2);
    assert_int_equal(c->router.cache_max_bytes, 16 * 1024 * 1024);
    assert_int_equal(c->router.connect_timeout_ms, 2000);
    assert_int_equal(c->router.first_probe_delay_ms, 0);
    assert_int_equal(c->regions[0].capacity.max_sessions, 0);
    assert_true(c->regions[0].capacity.weight == 1.0);
    edge_conf_free(c);

    c = parse_ok("regions:\n  - { id: a, capacity: { max_sessions: 5, weight: 2.5 } }\n  - { id: b }\n"
                 "router: { bookmark_wait_ms: 0, slow_ms: 5, rtt_slack_ms: 0, probe_interval_ms: 100,\n"
                 "  request_timeout_ms: 800, connect_timeout_ms: 300, first_probe_delay_ms: 250, fallback: [b, a],\n"
                 "  stats: { max_statements: 3, metrics_top: 0 },\n"
                 "  cache: { enabled: false, admit_after: 1, window_ms: 50, max_bytes: 0 } }\n");
    assert_int_equal(c->regions[0].capacity.max_sessions, 5);
    assert_true(c->regions[0].capacity.weight == 2.5);
    assert_true(c->regions[1].capacity.weight == 1.0);
    assert_int_equal(c->router.bookmark_wait_ms, 0);
    assert_int_equal(c->router.slow_ms, 5);
    assert_int_equal(c->router.probe_interval_ms, 100);
    assert_int_equal(c->router.request_timeout_ms, 800);
    assert_int_equal(c->router.connect_timeout_ms, 300);
    assert_int_equal(c->router.first_probe_delay_ms, 250);
    assert_int_equal(c->router.n_fallback, 2);
    assert_string_equal(c->router.fallback[0], "b");
    assert_string_equal(c->router.fallback[1], "a");
    assert_int_equal(c->router.stats_max_statements, 3);
    assert_int_equal(c->router.stats_metrics_top, 0);
    assert_int_equal(c->router.cache_enabled, 0);
    assert_int_equal(c->router.cache_window_ms, 50);
    assert_int_equal(c->router.cache_max_bytes, 0);
    edge_conf_free(c);

    expect_err(REGION1 "router: { colour: red }\n", "t.yaml:3: router.colour: unknown key");
    expect_err(REGION1 "router: { slow_ms: fast }\n", "router.slow_ms: expected an integer");
    expect_err(REGION1 "router: { slow_ms: 0 }\n", "router.slow_ms: must be between 1");
    expect_err(REGION1 "router: { probe_interval_ms: 10 }\n", "router.probe_interval_ms: must be between 50");
    expect_err(REGION1 "router: { connect_timeout_ms: 5 }\n", "router.connect_timeout_ms: must be between 10");
    expect_err(REGION1 "router: { first_probe_delay_ms: -1 }\n", "router.first_probe_delay_ms: must be between 0");
    expect_err(REGION1 "router: { fallback: r1 }\n", "router.fallback: expected a list of strings");
    expect_err(REGION1 "router: { fallback: [r9] }\n", "router.fallback[0]: 'r9' is not a region");
    expect_err(REGION1 "router: { fallback: [r1, r1] }\n", "router.fallback[1]: region 'r1' is listed twice");
    expect_err(REGION1 "router: { stats: { size: 1 } }\n", "router.stats.size: unknown key");
    expect_err(REGION1 "router: { stats: { max_statements: 2000000 } }\n", "must be at most 1000000");
    expect_err(REGION1 "router: { cache: { admit_after: 0 } }\n", "router.cache.admit_after: must be between 1");
    expect_err(REGION1 "router: { cache: { enabled: yes } }\n", "router.cache.enabled: expected true or false");
    expect_err(REGION1 "router: { cache: 5 }\n", "router.cache: expected a mapping");
    expect_err(REGION1 "router: [1]\n", "router: expected a mapping");
    expect_err("regions:\n  - { id: a, capacity: { weight: 0 } }\n", "regions[0].capacity.weight: must be greater than 0");
    expect_err("regions:\n  - { id: a, capacity: { weight: heavy } }\n", "regions[0].capacity.weight: expected a number");
    expect_err("regions:\n  - { id: a, capacity: { max_sessions: -1 } }\n", "regions[0].capacity.max_sessions: must be between 0");
    expect_err("regions:\n  - { id: a, capacity: { cpus: 2 } }\n", "regions[0].capacity.cpus: unknown key");
}

/* realtime: (conf_realtime.c): defaults, values, and each refusal. */
static void test_realtime_section(void **state)
{
    (void)state;
    struct edge_conf *c = parse_ok(REGION1);
    assert_int_equal(c->realtime.max_connections, 10000);
    assert_int_equal(c->realtime.max_subscriptions, 64);
    assert_int_equal(c->realtime.queue_bytes, 1024 * 1024);
    assert_int_equal(c->realtime.backlog_batch, 512);
    edge_conf_free(c);
    c = parse_ok(REGION1 "realtime: { max_connections: 3, max_subscriptions: 1, queue_bytes: 4096, backlog_batch: 7 }\n");
    assert_int_equal(c->realtime.max_connections, 3);
    assert_int_equal(c->realtime.max_subscriptions, 1);
    assert_int_equal(c->realtime.queue_bytes, 4096);
    assert_int_equal(c->realtime.backlog_batch, 7);
    edge_conf_free(c);
    expect_err(REGION1 "realtime: { colour: red }\n", "t.yaml:3: realtime.colour: unknown key");
    expect_err(REGION1 "realtime: { queue_bytes: 100 }\n", "realtime.queue_bytes: must be between 4096");
    expect_err(REGION1 "realtime: { max_connections: 0 }\n", "realtime.max_connections: must be between 1");
    expect_err(REGION1 "realtime: { backlog_batch: many }\n", "realtime.backlog_batch: expected an integer");
    expect_err(REGION1 "realtime: [1]\n", "realtime: expected a mapping");
}

/* sessions: (conf_sessions.c): defaults, values, and each refusal. */
static void test_sessions_section(void **state)
{
    (void)state;
    struct edge_conf *c = parse_ok(REGION1);
    assert_null(c->sessions.key_file);
    assert_int_equal(c->sessions.ttl_s, 1800);
    assert_int_equal(c->sessions.max_lifetime_s, 86400);
    assert_int_equal(c->sessions.max_bytes, 65536);
    assert_int_equal(c->sessions.migrate_after, 3);
    assert_int_equal(c->sessions.gc_batch, 256);
    assert_int_equal(c->sessions.partition_mode, EDGE_SESSIONS_PARTITION_UNAVAILABLE);
    assert_true(c->sessions.migrate_share == 0);
    assert_int_equal(c->sessions.migrate_window, 20);
    assert_int_equal(c->sessions.migrate_min_accesses, 5);
    edge_conf_free(c);
    c = parse_ok(REGION1 "sessions: { migrate_share: 0.6, migrate_window: 10, migrate_min_accesses: 4 }\n");
    assert_true(c->sessions.migrate_share > 0.59 && c->sessions.migrate_share < 0.61);
    assert_int_equal(c->sessions.migrate_window, 10);
    assert_int_equal(c->sessions.migrate_min_accesses, 4);
    edge_conf_free(c);
    c = parse_ok(REGION1 "sessions: { key_file: /k, ttl_s: 60, max_lifetime_s: 120, max_bytes: 1024,\n"
                         "  migrate_after: 0, gc_batch: 10, gc_interval_ms: 5, touch_interval_ms: 20,\n"
                         "  compression_level: 9, partition_mode: unavailable }\n");
    assert_string_equal(c->sessions.key_file, "/k");
    assert_int_equal(c->sessions.ttl_s, 60);
    assert_int_equal(c->sessions.max_lifetime_s, 120);
    assert_int_equal(c->sessions.max_bytes, 1024);
    assert_int_equal(c->sessions.migrate_after, 0);
    assert_int_equal(c->sessions.gc_batch, 10);
    assert_int_equal(c->sessions.gc_interval_ms, 5);
    assert_int_equal(c->sessions.touch_interval_ms, 20);
    assert_int_equal(c->sessions.compression_level, 9);
    edge_conf_free(c);
    expect_err(REGION1 "sessions: { ttl: 5 }\n", "t.yaml:3: sessions.ttl: unknown key");
    expect_err(REGION1 "sessions: { ttl_s: 0 }\n", "sessions.ttl_s: must be between 1");
    expect_err(REGION1 "sessions: { ttl_s: soon }\n", "sessions.ttl_s: expected an integer");
    expect_err(REGION1 "sessions: { compression_level: 22 }\n", "sessions.compression_level: must be between -7 and 19");
    expect_err(REGION1 "sessions: { compression_level: -8 }\n", "sessions.compression_level: must be between -7");
    c = parse_ok(REGION1 "sessions: { compression_level: -3 }\n");
    assert_int_equal(c->sessions.compression_level, -3);
    edge_conf_free(c);
    c = parse_ok(REGION1 "sessions: { key_file: /k }\n");
    assert_int_equal(c->sessions.compression_level, -1);
    edge_conf_free(c);
    expect_err(REGION1 "sessions: { key_file: '' }\n", "sessions.key_file: must not be empty");
    c = parse_ok(REGION1 "sessions: { partition_mode: available }\n");
    assert_int_equal(c->sessions.partition_mode, EDGE_SESSIONS_PARTITION_AVAILABLE);
    edge_conf_free(c);
    expect_err(REGION1 "sessions: { partition_mode: maybe }\n", "expected unavailable or available");
    expect_err(REGION1 "sessions: { migrate_share: 1.5 }\n", "sessions.migrate_share: must be between 0 and 1");
    expect_err(REGION1 "sessions: { migrate_window: 0 }\n", "sessions.migrate_window: must be between 1");
    expect_err(REGION1 "sessions: { migrate_window: 4, migrate_min_accesses: 5 }\n",
               "sessions.migrate_min_accesses: must not exceed sessions.migrate_window");
    expect_err(REGION1 "sessions: [1]\n", "sessions: expected a mapping");
}

static void test_secret_env(void **state)
{
    (void)state;
    assert_int_equal(setenv("EDGE_TEST_CLUSTER_SECRET", "s3cr3t", 1), 0);
    struct edge_conf *c =
        parse_ok("cluster: { name: x, secret_env: EDGE_TEST_CLUSTER_SECRET }\n" REGION1);
    assert_string_equal(c->cluster_secret, "s3cr3t");
    edge_conf_free(c);
    assert_int_equal(unsetenv("EDGE_TEST_CLUSTER_SECRET"), 0);
    expect_err("cluster: { name: x, secret_env: EDGE_TEST_CLUSTER_SECRET }\n" REGION1,
               "t.yaml:1: cluster.secret_env: environment variable 'EDGE_TEST_CLUSTER_SECRET' "
               "is not set");
    assert_int_equal(setenv("EDGE_TEST_CLUSTER_SECRET", "", 1), 0);
    expect_err("cluster:\n  secret_env: EDGE_TEST_CLUSTER_SECRET\n" REGION1,
               "t.yaml:2: cluster.secret_env: environment variable");
    assert_int_equal(unsetenv("EDGE_TEST_CLUSTER_SECRET"), 0);
    expect_err("cluster: { secret: a, secret_env: HOME }\n" REGION1, "not both");
    /* Null secret_env means "none". */
    c = parse_ok("cluster: { secret_env: ~ }\n" REGION1);
    assert_null(c->cluster_secret);
    edge_conf_free(c);
}

static void test_errors(void **state)
{
    (void)state;
    static const struct {
        const char *yaml;
        const char *want;
    } cases[] = {
        /* The example. */
        {"cluster: { name: demo }\nregions:\n  - { id: a }\n  - id: b\n    priority: high\n",
         "t.yaml:5: regions[1].priority: expected an integer, got 'high'"},
        {REGION1 "  - { id: b, priority: \"3\" }\n", "regions[1].priority: expected an integer"},
        {REGION1 "  - { id: b, priority: 1.5 }\n", "regions[1].priority: expected an integer"},
        {REGION1 "  - { id: b, priority: 99999999999 }\n", "regions[1].priority"},
        /* Unknown keys, with their names. */
        {REGION1 "foo: 1\n", "t.yaml:3: foo: unknown key"},
        {REGION1 "replication: { sync_interval: 5 }\n",
         "t.yaml:3: replication.sync_interval: unknown key"},
        {"regions:\n  - { id: a, prio: 1 }\n", "t.yaml:2: regions[0].prio: unknown key"},
        {"cluster: { name: a, secrets: b }\n" REGION1, "cluster.secrets: unknown key"},
        {REGION1 "auth: { jwt_key: x }\n", "auth.jwt_key: unknown key"},
        {REGION1 "auth: { public_metrics: yes }\n", "t.yaml:3: auth.public_metrics: expected true or false"},
        {REGION1 "auth: { public_metrics: \"true\" }\n", "auth.public_metrics: expected true or false"},
        {REGION1 "auth: { public_metrics: 1 }\n", "auth.public_metrics: expected true or false"},
        {"cluster: { sig_replay_max: 0 }\n" REGION1, "t.yaml:1: cluster.sig_replay_max: must be between 1 and 65536, got 0"},
        {"cluster: { sig_replay_max: -3 }\n" REGION1, "cluster.sig_replay_max: must be between 1 and 65536, got -3"},
        {"cluster: { sig_replay_max: 65537 }\n" REGION1, "cluster.sig_replay_max: must be between 1 and 65536"},
        {"cluster: { sig_replay_max: lots }\n" REGION1, "cluster.sig_replay_max: expected an integer"},
        {REGION1 "limits: { writer_queue: 0 }\n", "t.yaml:3: limits.writer_queue: must be between 1"},
        {REGION1 "limits: { writer_queue: many }\n", "limits.writer_queue: expected an integer"},
        {REGION1 "limits: { ws_output_bytes: 100 }\n", "limits.ws_output_bytes: must be between 4096"},
        {REGION1 "limits: { writer_q: 5 }\n", "limits.writer_q: unknown key"},
        {REGION1 "limits: [1]\n", "limits"},
        {REGION1 "replication: { conflicts_keep: 0 }\n", "replication.conflicts_keep: must be between 1"},
        {REGION1 "replication: { max_log_bytes: -1 }\n", "replication.max_log_bytes: expected a number of bytes"},
        {REGION1 "replication: { max_log_bytes: 1GB }\n", "replication.max_log_bytes: expected a number of bytes"},
        {REGION1 "replication: { max_log_bytes: \"100\" }\n", "replication.max_log_bytes: expected a number of bytes"},
        {REGION1 "replication: { max_log_bytes: [1] }\n", "replication.max_log_bytes: expected a number of bytes"},
        {REGION1 "replication: { conflicts_max_age: 7 }\n", "replication.conflicts_max_age: expected a duration"},
        {REGION1 "replication: { conflicts_max_age: 7w }\n", "replication.conflicts_max_age: expected a duration"},
        {REGION1 "replication: { conflicts_max_age: 0d }\n", "replication.conflicts_max_age: expected a duration"},
        {REGION1 "replication: { conflicts_max_age: -1d }\n", "replication.conflicts_max_age: expected a duration"},
        {REGION1 "replication: { conflicts_max_age: [1] }\n", "replication.conflicts_max_age: expected a duration"},
        {REGION1 "replication: { crdt_columns: { views: pn-counter } }\n",
         "t.yaml:3: replication.crdt_columns: \"views\" is not TABLE.COLUMN"},
        {REGION1 "replication: { crdt_columns: { t.v: g-counter } }\n",
         "replication.crdt_columns: t.v: expected pn-counter or or-set"},
        {REGION1 "replication: { crdt_columns: [t.v] }\n", "replication.crdt_columns: expected a mapping"},
        {REGION1 "replication: { crdt_columns: { _edge_crdt.state: or-set } }\n", "internal tables"},
        {REGION1 "replication: { crdt_columns: { t.v: or-set, t.v: or-set } }\n",
         "replication.crdt_columns.t.v: duplicate key"},
        /* Duplicate keys. */
        {"cluster:\n  name: a\n  name: b\n" REGION1,
         "t.yaml:3: cluster.name: duplicate key (first at line 2)"},
        {REGION1 "regions: []\n", "t.yaml:3: regions: duplicate key"},
        {REGION1 "replication: { tables: { t: strong, t: async } }\n",
         "replication.tables.t: duplicate key"},
        /* Region ids. */
        {REGION1 "  - { id: r1 }\n", "t.yaml:3: regions[1].id: duplicate region id 'r1'"},
        {"regions:\n  - { id: US_West }\n", "t.yaml:2: regions[0].id: expected a region id"},
        {"regions:\n  - { id: \"\" }\n", "regions[0].id: expected a region id"},
        {"regions:\n  - { id: ~ }\n", "regions[0].id: expected a string, got null"},
        {"regions:\n  - { listen: \"1.2.3.4:5\" }\n", "t.yaml:2: regions[0].id: missing"},
        {"regions:\n  - { id: [a] }\n", "regions[0].id: expected a string, got a list"},
        /* listen. */
        {"regions:\n  - { id: a, listen: \"127.0.0.1\" }\n", "regions[0].listen: expected HOST:PORT"},
        {"regions:\n  - { id: a, listen: \"127.0.0.1:0\" }\n", "regions[0].listen"},
        {"regions:\n  - { id: a, listen: \"127.0.0.1:65536\" }\n", "regions[0].listen"},
        {"regions:\n  - { id: a, listen: \"127.0.0.1:http\" }\n", "regions[0].listen"},
        {"regions:\n  - { id: a, listen: \":8080\" }\n", "regions[0].listen"},
        {"regions:\n  - { id: a, listen: \"::1:8080\" }\n", "regions[0].listen"},
        /* Consistency and replication values. */
        {REGION1 "replication: { consistency_level: eventually }\n",
         "t.yaml:3: replication.consistency_level: expected one of strong, eventual, async, got "
         "'eventually'"},
        {REGION1 "replication:\n  tables:\n    accounts: linearizable\n",
         "t.yaml:5: replication.tables.accounts: expected one of strong, eventual, async"},
        {REGION1 "replication: { conflict_resolution: crdt }\n",
         "replication.conflict_resolution: expected one of version_vector, lww, got 'crdt'"},
        {REGION1 "replication: { sync_interval_ms: 0 }\n",
         "replication.sync_interval_ms: must be between 1 and"},
        {REGION1 "replication: { sync_interval_ms: -10 }\n", "replication.sync_interval_ms"},
        {REGION1 "replication: { max_retries: -1 }\n", "replication.max_retries"},
        {REGION1 "replication: { max_clock_skew_ms: 0 }\n", "replication.max_clock_skew_ms: must be between 1 and"},
        {REGION1 "replication: { max_clock_skew_ms: soon }\n", "replication.max_clock_skew_ms: expected an integer"},
        {REGION1 "replication: { tables: [a, b] }\n", "replication.tables: expected a mapping"},
        /* Shapes. */
        {"regions: { id: a }\n", "t.yaml:1: regions: expected a list of regions, got a mapping"},
        {"regions: []\n", "regions: at least one region is required"},
        {"cluster: { name: a }\n", "regions: missing"},
        {"cluster: demo\n" REGION1, "t.yaml:1: cluster: expected a mapping, got 'demo'"},
        {"cluster: { name: ~ }\n" REGION1, "cluster.name: expected a string, got null"},
        {"cluster: { name: \"\" }\n" REGION1, "cluster.name: must not be empty"},
        {REGION1 "router: 5\n", "router: expected a mapping"},
        {REGION1 "sessions: [1]\n", "sessions: expected a mapping"},
        {"- a\n- b\n", "expected a mapping at the top level"},
        {"", "t.yaml:1: empty configuration"},
        {"# only a comment\n", "empty configuration"},
        {REGION1 "---\ncluster: { name: b }\n", "t.yaml:3: only one YAML document"},
        /* Syntax errors name the line. */
        {REGION1 "cluster: { name: a\n", "t.yaml:4: YAML syntax error"},
        {"regions:\n  - id: a\n   listen: b\n", "t.yaml:3: YAML syntax error"},
        {"a: *nope\n", "YAML syntax error"},
        {"cluster:\n\tname: a\n", "t.yaml:2: YAML syntax error"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        expect_err(cases[i].yaml, cases[i].want);
    }
}

static void test_load_file_errors(void **state)
{
    (void)state;
    struct edge_conf *c = NULL;
    char msg[EDGE_ERRMSG_SIZE];
    char path[] = "/tmp/edge_conf_XXXXXX";
    assert_int_equal(edge_conf_load("/nonexistent/edge.yaml", &c, msg, sizeof(msg)), EDGE_EIO);
    assert_non_null(strstr(msg, "/nonexistent/edge.yaml"));
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char bad[] = "regions:\n  - { id: a, priority: high }\n";
    assert_int_equal(write(fd, bad, sizeof(bad) - 1), (ssize_t)(sizeof(bad) - 1));
    close(fd);
    assert_int_equal(edge_conf_load(path, &c, msg, sizeof(msg)), EDGE_ECONFIG);
    char want[128];
    snprintf(want, sizeof(want), "%s:2: regions[0].priority: expected an integer", path);
    assert_non_null(strstr(msg, want));
    unlink(path);
}

static void test_conf_oom(void **state)
{
    (void)state;
    char path[512];
    char *text = NULL;
    struct edge_conf *c = NULL;
    char msg[EDGE_ERRMSG_SIZE];
    repo_path(path, sizeof(path), "deployment/edge-config.yaml");
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    text = calloc(1, 65536);
    assert_non_null(text);
    size_t len = fread(text, 1, 65535, f);
    fclose(f);
    int ok = 0;
    for (int i = 0; i < 200 && !ok; i++) {
        edge__alloc_fault_config(i, 1);
        int rv = edge_conf_parse("x.yaml", text, len, &c, msg, sizeof(msg));
        edge__alloc_fault_config(-1, 0);
        assert_true(rv == EDGE_OK || rv == EDGE_ENOMEM);
        if (rv == EDGE_OK) {
            assert_int_equal(c->n_regions, 3);
            edge_conf_free(c);
            ok = 1;
        } else {
            assert_null(c);
        }
    }
    assert_true(ok);
    free(text);
}

static void test_consistency_names(void **state)
{
    (void)state;
    enum edge_consistency e;
    static const enum edge_consistency all[] = {EDGE_CONS_EVENTUAL, EDGE_CONS_STRONG,
                                                EDGE_CONS_ASYNC};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(edge_consistency_parse(edge_consistency_name(all[i]), &e), EDGE_OK);
        assert_int_equal(e, all[i]);
    }
    assert_int_equal(edge_consistency_parse("Strong", &e), EDGE_EINVAL);
    assert_int_equal(edge_consistency_parse(NULL, &e), EDGE_EINVAL);
}

/* ---- regions.json ---- */

static void test_regions_deployment(void **state)
{
    (void)state;
    char path[512];
    char msg[EDGE_ERRMSG_SIZE] = "";
    struct edge_regions *r = NULL;
    repo_path(path, sizeof(path), "deployment/regions.json");
    if (edge_regions_load(path, &r, msg, sizeof(msg)) != EDGE_OK) {
        fail_msg("%s", msg);
    }
    assert_int_equal(r->n_regions, 4);
    assert_string_equal(r->regions[0].id, "us-west-2");
    assert_true(r->regions[0].lat > 45.5 && r->regions[0].lat < 45.6);
    assert_true(r->regions[0].lon < -122.6 && r->regions[0].lon > -122.7);
    assert_true(r->regions[2].cost_per_gb > 0.019 && r->regions[2].cost_per_gb < 0.021);
    static const struct {
        const char *a, *b;
        double ms;
    } rtt[] = {
        {"us-west-2", "eu-central-1", 140},      {"eu-central-1", "us-west-2", 140},
        {"us-west-2", "ap-southeast-1", 165},    {"ap-southeast-1", "us-west-2", 165},
        {"eu-central-1", "ap-southeast-1", 160}, {"ap-southeast-1", "eu-central-1", 160},
        {"us-east-1", "us-west-2", 65},          {"us-west-2", "us-east-1", 65},
        {"eu-central-1", "us-east-1", 90},       {"ap-southeast-1", "us-east-1", 215},
        {"us-east-1", "us-east-1", 0},           {"us-west-2", "nowhere", -1},
    };
    for (size_t i = 0; i < sizeof(rtt) / sizeof(rtt[0]); i++) {
        double got = edge_regions_rtt_ms(r, rtt[i].a, rtt[i].b);
        if (got != rtt[i].ms) {
            fail_msg("%s<->%s: got %g, want %g", rtt[i].a, rtt[i].b, got, rtt[i].ms);
        }
    }
    /* The full matrix is known and symmetric. */
    for (size_t i = 0; i < r->n_regions; i++) {
        for (size_t j = 0; j < r->n_regions; j++) {
            assert_true(r->rtt_ms[i * r->n_regions + j] >= 0);
            assert_true(r->rtt_ms[i * r->n_regions + j] == r->rtt_ms[j * r->n_regions + i]);
        }
    }
    edge_regions_free(r);
}

static int regions_from(const char *json, struct edge_regions **r, char *msg, size_t n)
{
    char path[] = "/tmp/edge_regions_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, json, strlen(json)), (ssize_t)strlen(json));
    close(fd);
    int rv = edge_regions_load(path, r, msg, n);
    unlink(path);
    return rv;
}

#define TWO_REGIONS                                                                           \
    "{\"regions\": [\n"                                                                       \
    "  {\"id\":\"a\",\"name\":\"A\",\"lat\":1,\"lon\":2,\"cost_per_gb\":0.02},\n"           \
    "  {\"id\":\"b\",\"name\":\"B\",\"lat\":-1,\"lon\":-2,\"cost_per_gb\":0}],\n"

static void test_regions_rules(void **state)
{
    (void)state;
    struct edge_regions *r = NULL;
    char msg[EDGE_ERRMSG_SIZE];

    /* Either order, and the same pair twice with the same value, are fine. */
    assert_int_equal(regions_from(TWO_REGIONS "\"latency_ms\": {\"b\": {\"a\": 12.5}}}", &r, msg,
                                  sizeof(msg)),
                     EDGE_OK);
    assert_true(edge_regions_rtt_ms(r, "a", "b") == 12.5);
    assert_true(edge_regions_rtt_ms(r, "b", "a") == 12.5);
    edge_regions_free(r);
    assert_int_equal(regions_from(TWO_REGIONS "\"latency_ms\": {\"a\": {\"b\": 7, \"a\": 0},"
                                              " \"b\": {\"a\": 7}}}",
                                  &r, msg, sizeof(msg)),
                     EDGE_OK);
    assert_true(edge_regions_rtt_ms(r, "b", "a") == 7);
    edge_regions_free(r);
    /* No matrix: unknown (-1) off the diagonal. */
    assert_int_equal(regions_from(TWO_REGIONS "\"description\": \"x\"}", &r, msg, sizeof(msg)),
                     EDGE_OK);
    assert_true(edge_regions_rtt_ms(r, "a", "b") == -1);
    assert_true(edge_regions_rtt_ms(r, "a", "a") == 0);
    edge_regions_free(r);

    static const struct {
        const char *json;
        const char *want;
    } bad[] = {
        {TWO_REGIONS "\"latency_ms\": {\"a\": {\"b\": 7}, \"b\": {\"a\": 8}}}",
         "latency_ms.b.a: 8 contradicts 7"},
        {TWO_REGIONS "\"latency_ms\": {\"a\": {\"c\": 7}}}", "latency_ms.a.c: unknown region id"},
        {TWO_REGIONS "\"latency_ms\": {\"z\": {\"a\": 7}}}", "latency_ms.z: unknown region id"},
        {TWO_REGIONS "\"latency_ms\": {\"a\": {\"b\": \"fast\"}}}", "latency_ms.a.b: expected"},
        {TWO_REGIONS "\"latency_ms\": {\"a\": {\"b\": -3}}}", "latency_ms.a.b: expected"},
        {TWO_REGIONS "\"latency_ms\": {\"a\": {\"a\": 3}}}", "latency_ms.a.a: must be 0"},
        {TWO_REGIONS "\"latency_ms\": {\"a\": {\"b\": 1, \"b\": 1}}}", "duplicate"},
        {TWO_REGIONS "\"extra\": 1}", ": extra: unknown key"},
        {"{\"regions\": [{\"id\":\"a\",\"name\":\"A\",\"lon\":2,\"cost_per_gb\":1}]}",
         "regions[0].lat: expected a number"},
        {"{\"regions\": [{\"id\":\"a\",\"name\":\"A\",\"lat\":91,\"lon\":2,\"cost_per_gb\":1}]}",
         "regions[0].lat"},
        {"{\"regions\": [{\"id\":\"a\",\"name\":\"A\",\"lat\":1,\"lon\":2}]}",
         "regions[0].cost_per_gb"},
        {"{\"regions\": [{\"id\":\"a\",\"lat\":1,\"lon\":2,\"cost_per_gb\":1}]}",
         "regions[0].name"},
        {"{\"regions\": [{\"id\":\"A b\",\"name\":\"A\",\"lat\":1,\"lon\":2,\"cost_per_gb\":1}]}",
         "regions[0].id"},
        {"{\"regions\": [{\"id\":\"a\",\"name\":\"A\",\"lat\":1,\"lon\":2,\"cost_per_gb\":1},"
         "{\"id\":\"a\",\"name\":\"A2\",\"lat\":1,\"lon\":2,\"cost_per_gb\":1}]}",
         "regions[1].id: duplicate region id 'a'"},
        {"{\"regions\": [{\"id\":\"a\",\"name\":\"A\",\"lat\":1,\"lon\":2,\"cost_per_gb\":1,"
         "\"zone\":1}]}",
         "regions[0].zone: unknown key"},
        {"{\"regions\": []}", "regions: expected a non-empty array"},
        {"[1]", "expected a JSON object"},
        {"{\n\"regions\": [\n  {\"id\": \"a\",}\n]}", ":3: "}, /* syntax error names line 3 */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        msg[0] = '\0';
        int rv = regions_from(bad[i].json, &r, msg, sizeof(msg));
        if (rv != EDGE_ECONFIG || strstr(msg, bad[i].want) == NULL) {
            fail_msg("case %zu: rv=%d msg='%s', wanted '%s'", i, rv, msg, bad[i].want);
        }
        assert_null(r);
    }
    assert_int_equal(edge_regions_load("/nonexistent/regions.json", &r, msg, sizeof(msg)),
                     EDGE_EIO);
    assert_non_null(strstr(msg, "/nonexistent/regions.json"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deployment_example), cmocka_unit_test(test_defaults_and_nulls),
        cmocka_unit_test(test_secret_env),         cmocka_unit_test(test_errors),
        cmocka_unit_test(test_load_file_errors),   cmocka_unit_test(test_conf_oom),
        cmocka_unit_test(test_consistency_names),  cmocka_unit_test(test_regions_deployment),
        cmocka_unit_test(test_regions_rules),      cmocka_unit_test(test_router_section), cmocka_unit_test(test_realtime_section),
        cmocka_unit_test(test_sessions_section),
    };
    return cmocka_run_group_tests_name("core_conf", tests, NULL, NULL);
}
