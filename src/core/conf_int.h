/* SPDX-License-Identifier: MIT */
/* Internals shared by the configuration loaders (conf.c, regions.c). */
#ifndef EDGE_CORE_CONF_INT_H
#define EDGE_CORE_CONF_INT_H

#include <stddef.h>

/* A region id: lower-case letters, digits and "-" (it ends up in URLs, file names and metric labels). */
int edge__conf_valid_region_id(const char *s);

/* The YAML loader's helpers, for the sections parsed in their own files (conf_router.c,
 * conf_sessions.c, ...). The context is conf.c's; a section parser gets it and the
 * section's mapping node, and reports errors as "FILE:LINE: KEY.PATH: what". Each getter
 * leaves *out unchanged when the key is absent or null (the default stays). */
#include <stdint.h>
#include <yaml.h>

#include "core/conf.h"
struct edge__conf_ctx;
struct edge_conf *edge__conf_target(struct edge__conf_ctx *x);
int edge__conf_fail(struct edge__conf_ctx *x, const yaml_node_t *n, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
int edge__conf_fail_type(struct edge__conf_ctx *x, const yaml_node_t *n, const char *path, const char *want);
/* A null scalar (empty, ~, null), or no node at all. */
int edge__conf_is_null(const yaml_node_t *n);
/* Key paths in messages: out (EDGE__CONF_PATH_LEN bytes) = parent.key, or key at the top. */
#define EDGE__CONF_PATH_LEN 160
void edge__conf_join(char *out, const char *parent, const char *key);
/* Every key of mapping m must be in allowed (NULL-terminated) and appear once. */
int edge__conf_check_keys(struct edge__conf_ctx *x, yaml_node_t *m, const char *path, const char *const *allowed);
yaml_node_t *edge__conf_lookup(struct edge__conf_ctx *x, yaml_node_t *m, const char *key);
yaml_node_t *edge__conf_node(struct edge__conf_ctx *x, int idx);
/* A mapping, or NULL when absent or null; anything else is an error. */
int edge__conf_get_section(struct edge__conf_ctx *x, yaml_node_t *m, const char *path, const char *key,
                           yaml_node_t **out);
int edge__conf_get_str(struct edge__conf_ctx *x, yaml_node_t *m, const char *parent, const char *key,
                       int allow_null, char **out, yaml_node_t **out_node);
int edge__conf_get_int(struct edge__conf_ctx *x, yaml_node_t *m, const char *parent, const char *key, long min,
                       int *out);
int edge__conf_get_bool(struct edge__conf_ctx *x, yaml_node_t *m, const char *parent, const char *key, int *out);
/* A finite number > min_exclusive. */
int edge__conf_get_number(struct edge__conf_ctx *x, yaml_node_t *m, const char *parent, const char *key,
                          double min_exclusive, double *out);
/* A byte count beyond int's range: a plain integer >= min. */
int edge__conf_get_bytes(struct edge__conf_ctx *x, yaml_node_t *m, const char *parent, const char *key, long long min,
                         int64_t *out);
/* A duration: a positive integer and a unit, s, m, h or d ("7d"), in milliseconds. */
int edge__conf_get_duration(struct edge__conf_ctx *x, yaml_node_t *m, const char *parent, const char *key,
                            int64_t *out_ms);
/* Node v (present) is one of strong, eventual, async; kp names it in the message. */
int edge__conf_get_consistency(struct edge__conf_ctx *x, yaml_node_t *v, const char *kp, enum edge_consistency *out);
/* A list of region ids (strings): *out and *n replaced by copies (edge_free each and the array). */
int edge__conf_get_str_list(struct edge__conf_ctx *x, yaml_node_t *m, const char *parent, const char *key,
                            char ***out, size_t *n);

/* Section parsers in their own files, called by conf.c's top level. */
int edge__conf_parse_realtime(struct edge__conf_ctx *x, yaml_node_t *m);
void edge__conf_realtime_defaults(struct edge_conf *c);
int edge__conf_parse_router(struct edge__conf_ctx *x, yaml_node_t *m);
void edge__conf_router_defaults(struct edge_conf *c);
void edge__conf_router_free(struct edge_conf *c);
/* After every section: cross-checks (router.fallback names configured regions). */
int edge__conf_router_check(struct edge__conf_ctx *x, yaml_node_t *root);

/* conf_repl.c: the replication section, its tables and crdt_columns. */
int edge__conf_parse_replication(struct edge__conf_ctx *x, yaml_node_t *m);

/* conf_sessions.c: the sessions section (docs/sessions.md). */
int edge__conf_parse_sessions(struct edge__conf_ctx *x, yaml_node_t *m);
/* replication.crdt_columns (conf_crdt.c). */
int edge__conf_parse_crdt_columns(struct edge__conf_ctx *x, yaml_node_t *m);
void edge__conf_crdt_free(struct edge_conf *c);

#endif
