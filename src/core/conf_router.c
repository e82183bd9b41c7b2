/* SPDX-License-Identifier: MIT */
/* The router: section of edge-config.yaml (docs/router.md): where each statement goes,
 * how long a bookmarked read waits, the front door's probing and fail-over, statement
 * statistics and the hot-read cache. Strict like the rest of the loader. */
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/conf.h"
#include "core/conf_int.h"

void edge__conf_router_defaults(struct edge_conf *c)
{
    struct edge_conf_router *r = &c->router;
    r->bookmark_wait_ms = 1000;
    r->slow_ms = 1000;
    r->rtt_slack_ms = 10;
    r->probe_interval_ms = 500;
    r->request_timeout_ms = 5000;
    r->connect_timeout_ms = 2000;
    r->first_probe_delay_ms = 0;
    r->fallback = NULL;
    r->n_fallback = 0;
    r->stats_max_statements = 1000;
    r->stats_metrics_top = 10;
    r->cache_enabled = 1;
    r->cache_admit_after = 2;
    r->cache_window_ms = 10000;
    r->cache_max_bytes = 16 * 1024 * 1024;
}

void edge__conf_router_free(struct edge_conf *c)
{
    for (size_t i = 0; i < c->router.n_fallback; i++) edge_free(c->router.fallback[i]);
    edge_free(c->router.fallback);
    c->router.fallback = NULL;
    c->router.n_fallback = 0;
}

int edge__conf_parse_router(struct edge__conf_ctx *x, yaml_node_t *m)
{
    static const char *const keys[] = {"bookmark_wait_ms",   "slow_ms",  "rtt_slack_ms", "probe_interval_ms",
                                       "request_timeout_ms", "fallback", "stats",        "cache",
                                       "connect_timeout_ms", "first_probe_delay_ms", NULL};
    static const char *const stats_keys[] = {"max_statements", "metrics_top", NULL};
    static const char *const cache_keys[] = {"enabled", "admit_after", "window_ms", "max_bytes", NULL};
    struct edge_conf_router *r = &edge__conf_target(x)->router;
    yaml_node_t *sec = NULL;
    int rv = edge__conf_check_keys(x, m, "router", keys);
    /* 0 is allowed: a bookmarked read that is not covered goes elsewhere at once. */
    if (rv == EDGE_OK) rv = edge__conf_get_int(x, m, "router", "bookmark_wait_ms", 0, &r->bookmark_wait_ms);
    if (rv == EDGE_OK) rv = edge__conf_get_int(x, m, "router", "slow_ms", 1, &r->slow_ms);
    if (rv == EDGE_OK) rv = edge__conf_get_int(x, m, "router", "rtt_slack_ms", 0, &r->rtt_slack_ms);
    /* below 50 ms the probes would be most of the traffic */
    if (rv == EDGE_OK) rv = edge__conf_get_int(x, m, "router", "probe_interval_ms", 50, &r->probe_interval_ms);
    if (rv == EDGE_OK) rv = edge__conf_get_int(x, m, "router", "request_timeout_ms", 10, &r->request_timeout_ms);
    /* per step (TCP, TLS, the 101) of the door's WebSocket to a region; below 10 ms a loopback
     * TLS handshake under load would already miss it */
    if (rv == EDGE_OK) rv = edge__conf_get_int(x, m, "router", "connect_timeout_ms", 10, &r->connect_timeout_ms);
    if (rv == EDGE_OK) {
        rv = edge__conf_get_int(x, m, "router", "first_probe_delay_ms", 0, &r->first_probe_delay_ms);
    }
    if (rv == EDGE_OK) rv = edge__conf_get_str_list(x, m, "router", "fallback", &r->fallback, &r->n_fallback);
    if (rv == EDGE_OK) rv = edge__conf_get_section(x, m, "router", "stats", &sec);
    if (rv == EDGE_OK && sec != NULL) {
        rv = edge__conf_check_keys(x, sec, "router.stats", stats_keys);
        if (rv == EDGE_OK) {
            rv = edge__conf_get_int(x, sec, "router.stats", "max_statements", 1, &r->stats_max_statements);
        }
        if (rv == EDGE_OK && r->stats_max_statements > 1000000) {
            rv = edge__conf_fail(x, edge__conf_lookup(x, sec, "max_statements"), "router.stats.max_statements",
                                 "must be at most 1000000, got %d", r->stats_max_statements);
        }
        if (rv == EDGE_OK) rv = edge__conf_get_int(x, sec, "router.stats", "metrics_top", 0, &r->stats_metrics_top);
    }
    if (rv == EDGE_OK) rv = edge__conf_get_section(x, m, "router", "cache", &sec);
    if (rv == EDGE_OK && sec != NULL) {
        rv = edge__conf_check_keys(x, sec, "router.cache", cache_keys);
        if (rv == EDGE_OK) rv = edge__conf_get_bool(x, sec, "router.cache", "enabled", &r->cache_enabled);
        if (rv == EDGE_OK) rv = edge__conf_get_int(x, sec, "router.cache", "admit_after", 1, &r->cache_admit_after);
        if (rv == EDGE_OK) rv = edge__conf_get_int(x, sec, "router.cache", "window_ms", 1, &r->cache_window_ms);
        /* 0 turns the cache off as enabled: false does */
        if (rv == EDGE_OK) rv = edge__conf_get_int(x, sec, "router.cache", "max_bytes", 0, &r->cache_max_bytes);
    }
    return rv;
}

/* router.fallback names regions of this configuration, each once. */
int edge__conf_router_check(struct edge__conf_ctx *x, yaml_node_t *root)
{
    struct edge_conf *c = edge__conf_target(x);
    yaml_node_t *sec = edge__conf_lookup(x, root, "router");
    yaml_node_t *fb = sec != NULL && sec->type == YAML_MAPPING_NODE ? edge__conf_lookup(x, sec, "fallback") : NULL;
    for (size_t i = 0; i < c->router.n_fallback; i++) {
        const char *id = c->router.fallback[i];
        char path[64];
        snprintf(path, sizeof(path), "router.fallback[%zu]", i);
        yaml_node_t *at = fb != NULL && fb->type == YAML_SEQUENCE_NODE
                              ? edge__conf_node(x, fb->data.sequence.items.start[i])
                              : fb;
        if (edge_conf_region_find(c, id) == NULL) {
            return edge__conf_fail(x, at, path, "'%.40s' is not a region of this configuration", id);
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(c->router.fallback[j], id) == 0) {
                return edge__conf_fail(x, at, path, "region '%.40s' is listed twice", id);
            }
        }
    }
    return EDGE_OK;
}
