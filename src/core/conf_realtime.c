/* SPDX-License-Identifier: MIT */
/* The realtime: section of edge-config.yaml (docs/realtime.md): the bounds of the
 * real-time feed. Strict like the rest of the loader. */
#include <stdio.h>
#include <string.h>

#include "core/conf.h"
#include "core/conf_int.h"

void edge__conf_realtime_defaults(struct edge_conf *c)
{
    struct edge_conf_realtime *r = &c->realtime;
    r->max_connections = 10000;
    r->max_subscriptions = 64;
    r->queue_bytes = 1024 * 1024;
    r->backlog_batch = 512;
}

int edge__conf_parse_realtime(struct edge__conf_ctx *x, yaml_node_t *m)
{
    static const char *const keys[] = {"max_connections", "max_subscriptions", "queue_bytes", "backlog_batch", NULL};
    struct edge_conf_realtime *r = &edge__conf_target(x)->realtime;
    int rv = edge__conf_check_keys(x, m, "realtime", keys);
    if (rv == EDGE_OK) rv = edge__conf_get_int(x, m, "realtime", "max_connections", 1, &r->max_connections);
    if (rv == EDGE_OK) rv = edge__conf_get_int(x, m, "realtime", "max_subscriptions", 1, &r->max_subscriptions);
    /* below a few KiB one ordinary batch would close the subscriber */
    if (rv == EDGE_OK) rv = edge__conf_get_int(x, m, "realtime", "queue_bytes", 4096, &r->queue_bytes);
    if (rv == EDGE_OK) rv = edge__conf_get_int(x, m, "realtime", "backlog_batch", 1, &r->backlog_batch);
    return rv;
}
