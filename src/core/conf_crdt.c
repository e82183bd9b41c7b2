/* SPDX-License-Identifier: MIT */
/* replication.crdt_columns of edge-config.yaml (docs/crdt.md): SQL columns that merge
 * as CRDTs instead of last-writer-wins.
 *
 *   replication:
 *     crdt_columns: { page_stats.views: pn-counter, carts.items: or-set }
 *
 * Each key is TABLE.COLUMN (split at the first dot), each value a column type. Whether
 * the column exists with the right declared type is checked against the schema by the
 * replication layer (repl/crdt_cols.c), at start and whenever the table appears. */
#include <string.h>
#include <strings.h>

#include "core/alloc.h"
#include "core/conf.h"
#include "core/conf_int.h"

void edge__conf_crdt_free(struct edge_conf *c)
{
    for (size_t i = 0; i < c->crdt.n_cols; i++) {
        edge_free(c->crdt.cols[i].table);
        edge_free(c->crdt.cols[i].column);
    }
    edge_free(c->crdt.cols);
    c->crdt.cols = NULL;
    c->crdt.n_cols = 0;
}

int edge__conf_parse_crdt_columns(struct edge__conf_ctx *x, yaml_node_t *m)
{
    struct edge_conf_crdt *cc = &edge__conf_target(x)->crdt;
    static const char path[] = "replication.crdt_columns";
    if (m->type != YAML_MAPPING_NODE) {
        return edge__conf_fail(x, m, path, "expected a mapping of TABLE.COLUMN: pn-counter|or-set");
    }
    int rv = edge__conf_check_keys(x, m, path, NULL);
    size_t n = (size_t)(m->data.mapping.pairs.top - m->data.mapping.pairs.start);
    if (rv != EDGE_OK || n == 0) {
        return rv;
    }
    cc->cols = edge_calloc(n, sizeof(*cc->cols));
    if (cc->cols == NULL) {
        return EDGE_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        yaml_node_pair_t *p = &m->data.mapping.pairs.start[i];
        yaml_node_t *k = edge__conf_node(x, p->key);
        yaml_node_t *v = edge__conf_node(x, p->value);
        const char *key = (const char *)k->data.scalar.value;
        const char *dot = strchr(key, '.');
        if (dot == NULL || dot == key || dot[1] == '\0') {
            return edge__conf_fail(x, k, path, "\"%s\" is not TABLE.COLUMN", key);
        }
        if (strncmp(key, "_edge_", 6) == 0 || strncmp(key, "sqlite_", 7) == 0) {
            return edge__conf_fail(x, k, path, "\"%s\": internal tables have no CRDT columns", key);
        }
        const char *val = v->type == YAML_SCALAR_NODE ? (const char *)v->data.scalar.value : "";
        int kind = strcmp(val, "pn-counter") == 0 ? EDGE_CONF_CRDT_COUNTER
                   : strcmp(val, "or-set") == 0   ? EDGE_CONF_CRDT_ORSET
                                                  : 0;
        if (kind == 0) {
            return edge__conf_fail(x, v, path, "%s: expected pn-counter or or-set", key);
        }
        struct edge_conf_crdt_column *col = &cc->cols[i];
        col->table = edge_strndup(key, (size_t)(dot - key));
        col->column = edge_strdup(dot + 1);
        col->kind = kind;
        cc->n_cols = i + 1;
        if (col->table == NULL || col->column == NULL) {
            return EDGE_ENOMEM;
        }
    }
    return EDGE_OK;
}

int edge_conf_crdt_kind(const struct edge_conf_crdt *cc, const char *table, const char *column)
{
    for (size_t i = 0; cc != NULL && i < cc->n_cols; i++) {
        /* SQLite names are case-insensitive (ASCII) */
        if (strcasecmp(cc->cols[i].table, table) == 0 && strcasecmp(cc->cols[i].column, column) == 0) {
            return cc->cols[i].kind;
        }
    }
    return 0;
}
