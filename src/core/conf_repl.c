/* SPDX-License-Identifier: MIT */
/* The replication section of edge-config.yaml (docs/config.md): consistency, conflict
 * resolution, sync timing, the bounds of the conflict table, tombstones and the log, and
 * per-table consistency levels. replication.crdt_columns is parsed by conf_crdt.c. */
#include <string.h>

#include "core/alloc.h"
#include "core/conf.h"
#include "core/conf_int.h"

static int parse_tables(struct edge__conf_ctx *x, yaml_node_t *m)
{
    struct edge_conf *c = edge__conf_target(x);
    int rv = edge__conf_check_keys(x, m, "replication.tables", NULL);
    size_t n = (size_t)(m->data.mapping.pairs.top - m->data.mapping.pairs.start);
    if (rv != EDGE_OK || n == 0) {
        return rv;
    }
    c->tables = edge_calloc(n, sizeof(*c->tables));
    if (c->tables == NULL) {
        return EDGE_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        yaml_node_pair_t *p = &m->data.mapping.pairs.start[i];
        yaml_node_t *k = edge__conf_node(x, p->key);
        char kp[EDGE__CONF_PATH_LEN];
        const char *name = (const char *)k->data.scalar.value;
        edge__conf_join(kp, "replication.tables", name);
        if (name[0] == '\0') {
            return edge__conf_fail(x, k, "replication.tables", "empty table name");
        }
        struct edge_conf_table *t = &c->tables[i];
        rv = edge__conf_get_consistency(x, edge__conf_node(x, p->value), kp, &t->level);
        if (rv != EDGE_OK) {
            return rv;
        }
        t->name = edge_strdup(name);
        if (t->name == NULL) {
            return EDGE_ENOMEM;
        }
        c->n_tables = i + 1;
    }
    return EDGE_OK;
}

int edge__conf_parse_replication(struct edge__conf_ctx *x, yaml_node_t *m)
{
    static const char *const keys[] = {"consistency_level", "conflict_resolution",
                                       "sync_interval_ms",  "max_retries",
                                       "max_clock_skew_ms", "tables",
                                       "conflicts_keep",    "conflicts_max_age",
                                       "crdt_columns",      "tombstone_gc_interval_ms",
                                       "max_log_bytes",
                                       NULL};
    struct edge_conf *c = edge__conf_target(x);
    int rv = edge__conf_check_keys(x, m, "replication", keys);
    if (rv != EDGE_OK) {
        return rv;
    }
    yaml_node_t *v = edge__conf_lookup(x, m, "consistency_level");
    if (v != NULL) {
        rv = edge__conf_get_consistency(x, v, "replication.consistency_level", &c->consistency);
        if (rv != EDGE_OK) {
            return rv;
        }
    }
    v = edge__conf_lookup(x, m, "conflict_resolution");
    if (v != NULL) {
        if (v->type != YAML_SCALAR_NODE || edge__conf_is_null(v) ||
            (strcmp((const char *)v->data.scalar.value, "version_vector") != 0 &&
             strcmp((const char *)v->data.scalar.value, "lww") != 0)) {
            return edge__conf_fail_type(x, v, "replication.conflict_resolution", "one of version_vector, lww");
        }
        rv = edge__conf_get_str(x, m, "replication", "conflict_resolution", 0, &c->conflict_resolution, NULL);
        if (rv != EDGE_OK) {
            return rv;
        }
    }
    rv = edge__conf_get_int(x, m, "replication", "sync_interval_ms", 1, &c->sync_interval_ms);
    if (rv == EDGE_OK) {
        rv = edge__conf_get_int(x, m, "replication", "max_retries", 0, &c->max_retries);
    }
    if (rv == EDGE_OK) {
        /* at least 1 ms: 0 would count every entry that is not from the past */
        rv = edge__conf_get_int(x, m, "replication", "max_clock_skew_ms", 1, &c->max_clock_skew_ms);
    }
    if (rv == EDGE_OK) {
        rv = edge__conf_get_int(x, m, "replication", "conflicts_keep", 1, &c->conflicts_keep);
    }
    if (rv == EDGE_OK) {
        rv = edge__conf_get_duration(x, m, "replication", "conflicts_max_age", &c->conflicts_max_age_ms);
    }
    if (rv == EDGE_OK) {
        /* at least 10 ms: each step is a writer job */
        rv = edge__conf_get_int(x, m, "replication", "tombstone_gc_interval_ms", 10, &c->tombstone_gc_interval_ms);
    }
    if (rv == EDGE_OK) {
        rv = edge__conf_get_bytes(x, m, "replication", "max_log_bytes", 0, &c->max_log_bytes);
    }
    if (rv != EDGE_OK) {
        return rv;
    }
    v = edge__conf_lookup(x, m, "crdt_columns");
    if (v != NULL && !edge__conf_is_null(v) && (rv = edge__conf_parse_crdt_columns(x, v)) != EDGE_OK) {
        return rv;
    }
    v = edge__conf_lookup(x, m, "tables");
    if (v == NULL || edge__conf_is_null(v)) {
        return EDGE_OK;
    }
    if (v->type != YAML_MAPPING_NODE) {
        return edge__conf_fail_type(x, v, "replication.tables", "a mapping of table: consistency");
    }
    return parse_tables(x, v);
}
