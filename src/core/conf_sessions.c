/* SPDX-License-Identifier: MIT */
/* The sessions: section of edge-config.yaml (docs/sessions.md). Strict like the rest of
 * the loader: unknown keys, wrong types and values out of range are errors naming the
 * file, the line and the key. regions[].capacity (max_sessions) is parsed by conf.c. */
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/conf.h"
#include "core/conf_int.h"

/* An integer in [min, max] (absent or null keeps the default). */
static int int_in(struct edge__conf_ctx *x, yaml_node_t *m, const char *key, long min, long max, int *out)
{
    int v = *out;
    int rv = edge__conf_get_int(x, m, "sessions", key, min, &v);
    if (rv != EDGE_OK) return rv;
    if (v > max) {
        char kp[64];
        snprintf(kp, sizeof(kp), "sessions.%s", key);
        return edge__conf_fail(x, edge__conf_lookup(x, m, key), kp, "must be between %ld and %ld, got %d", min, max,
                               v);
    }
    *out = v;
    return EDGE_OK;
}

int edge__conf_parse_sessions(struct edge__conf_ctx *x, yaml_node_t *m)
{
    static const char *const keys[] = {"key_file",       "ttl_s",          "max_lifetime_s",    "max_bytes",
                                       "migrate_after",  "partition_mode", "gc_batch",          "gc_interval_ms",
                                       "touch_interval_ms", "compression_level", "migrate_share",
                                       "migrate_window",    "migrate_min_accesses", NULL};
    struct edge_conf_sessions *s = &edge__conf_target(x)->sessions;
    int rv = edge__conf_check_keys(x, m, "sessions", keys);
    yaml_node_t *kf = NULL;
    if (rv == EDGE_OK) rv = edge__conf_get_str(x, m, "sessions", "key_file", 1, &s->key_file, &kf);
    if (rv == EDGE_OK && s->key_file != NULL && s->key_file[0] == '\0') {
        rv = edge__conf_fail(x, kf, "sessions.key_file", "must not be empty");
    }
    if (rv == EDGE_OK) rv = int_in(x, m, "ttl_s", 1, 365L * 86400, &s->ttl_s);
    if (rv == EDGE_OK) rv = int_in(x, m, "max_lifetime_s", 1, 10L * 365 * 86400, &s->max_lifetime_s);
    /* a session travels in one replication entry: keep it well below the log's limits */
    if (rv == EDGE_OK) rv = int_in(x, m, "max_bytes", 16, 16L << 20, &s->max_bytes);
    if (rv == EDGE_OK) rv = int_in(x, m, "migrate_after", 0, 1000000, &s->migrate_after);
    if (rv == EDGE_OK) rv = int_in(x, m, "migrate_window", 1, 1000, &s->migrate_window);
    if (rv == EDGE_OK) rv = int_in(x, m, "migrate_min_accesses", 1, 1000, &s->migrate_min_accesses);
    if (rv == EDGE_OK && s->migrate_min_accesses > s->migrate_window) {
        rv = edge__conf_fail(x, edge__conf_lookup(x, m, "migrate_min_accesses"), "sessions.migrate_min_accesses",
                             "must not exceed sessions.migrate_window (%d), got %d", s->migrate_window,
                             s->migrate_min_accesses);
    }
    if (rv == EDGE_OK) {
        double share = s->migrate_share;
        rv = edge__conf_get_number(x, m, "sessions", "migrate_share", -1.0, &share);
        if (rv == EDGE_OK && (share < 0 || share > 1)) {
            rv = edge__conf_fail(x, edge__conf_lookup(x, m, "migrate_share"), "sessions.migrate_share",
                                 "must be between 0 and 1, got %g", share);
        }
        if (rv == EDGE_OK) s->migrate_share = share;
    }
    if (rv == EDGE_OK) rv = int_in(x, m, "gc_batch", 1, 100000, &s->gc_batch);
    if (rv == EDGE_OK) rv = int_in(x, m, "gc_interval_ms", 1, 3600000, &s->gc_interval_ms);
    if (rv == EDGE_OK) rv = int_in(x, m, "touch_interval_ms", 1, 60000, &s->touch_interval_ms);
    if (rv == EDGE_OK) rv = int_in(x, m, "compression_level", -7, 19, &s->compression_level);
    if (rv != EDGE_OK) return rv;
    char *mode = NULL;
    yaml_node_t *pm = NULL;
    rv = edge__conf_get_str(x, m, "sessions", "partition_mode", 1, &mode, &pm);
    if (rv == EDGE_OK && mode != NULL) {
        if (strcmp(mode, "unavailable") == 0) {
            s->partition_mode = EDGE_SESSIONS_PARTITION_UNAVAILABLE;
        } else if (strcmp(mode, "available") == 0) {
            s->partition_mode = EDGE_SESSIONS_PARTITION_AVAILABLE; /* docs/sessions.md, "Partitions" */
        } else {
            rv = edge__conf_fail(x, pm, "sessions.partition_mode", "expected unavailable or available, got '%.40s'",
                                 mode);
        }
    }
    edge_free(mode);
    return rv;
}
