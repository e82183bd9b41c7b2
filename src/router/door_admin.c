/* SPDX-License-Identifier: MIT */
/* The front door's own endpoints (door_int.h): /metrics, /v1/router/regions and
 * /v1/router/stats/statements. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "router/door_int.h"

void edge__door_metrics(struct door *d, struct edge_http_conn *c)
{
    struct edge_buf b;
    edge_buf_init(&b, 16u << 20);
    edge_buf_puts(&b, "# TYPE edgelite_router_region_up gauge\n");
    for (int i = 0; i < d->n; i++) {
        edge_buf_printf(&b, "edgelite_router_region_up{region=\"%s\"} %d\n", d->regions[i].id, d->regions[i].up);
    }
    edge_buf_puts(&b, "# TYPE edgelite_router_region_rtt_ms gauge\n");
    for (int i = 0; i < d->n; i++) {
        edge_buf_printf(&b, "edgelite_router_region_rtt_ms{region=\"%s\"} %.3f\n", d->regions[i].id,
                        d->regions[i].rtt_ms);
    }
    edge_buf_puts(&b, "# TYPE edgelite_router_region_in_flight gauge\n");
    for (int i = 0; i < d->n; i++) {
        edge_buf_printf(&b, "edgelite_router_region_in_flight{region=\"%s\"} %d\n", d->regions[i].id,
                        d->regions[i].in_flight);
    }
    edge_buf_puts(&b, "# TYPE edgelite_router_region_requests_total counter\n");
    for (int i = 0; i < d->n; i++) {
        edge_buf_printf(&b, "edgelite_router_region_requests_total{region=\"%s\"} %llu\n", d->regions[i].id,
                        (unsigned long long)d->regions[i].requests);
    }
    edge_buf_puts(&b, "# TYPE edgelite_router_region_errors_total counter\n");
    for (int i = 0; i < d->n; i++) {
        edge_buf_printf(&b, "edgelite_router_region_errors_total{region=\"%s\"} %llu\n", d->regions[i].id,
                        (unsigned long long)d->regions[i].errors);
    }
    edge_buf_puts(&b, "# TYPE edgelite_router_region_ws_sessions_total counter\n");
    for (int i = 0; i < d->n; i++) {
        edge_buf_printf(&b, "edgelite_router_region_ws_sessions_total{region=\"%s\"} %llu\n", d->regions[i].id,
                        (unsigned long long)d->regions[i].ws_sessions);
    }
    edge_buf_puts(&b, "# TYPE edgelite_router_region_ws_backoff_ms gauge\n");
    for (int i = 0; i < d->n; i++) {
        edge_buf_printf(&b, "edgelite_router_region_ws_backoff_ms{region=\"%s\"} %u\n", d->regions[i].id,
                        d->regions[i].ws_backoff_ms);
    }
    edge_buf_puts(&b, "# TYPE edgelite_router_region_ws_backoff_skipped_total counter\n");
    for (int i = 0; i < d->n; i++) {
        edge_buf_printf(&b, "edgelite_router_region_ws_backoff_skipped_total{region=\"%s\"} %llu\n",
                        d->regions[i].id, (unsigned long long)d->regions[i].ws_backoff_skipped);
    }
    edge_buf_printf(&b,
                    "# TYPE edgelite_router_requests_total counter\nedgelite_router_requests_total %llu\n"
                    "# TYPE edgelite_router_failovers_total counter\nedgelite_router_failovers_total %llu\n"
                    "# TYPE edgelite_router_writes_not_retried_total counter\n"
                    "edgelite_router_writes_not_retried_total %llu\n"
                    "# TYPE edgelite_router_ryw_bookmarks_total counter\nedgelite_router_ryw_bookmarks_total %llu\n"
                    "# TYPE edgelite_router_last_failover_ms gauge\nedgelite_router_last_failover_ms %.3f\n"
                    "# TYPE edgelite_router_ws_failovers_total counter\nedgelite_router_ws_failovers_total %llu\n"
                    "# TYPE edgelite_router_ws_lost_pinned_total counter\nedgelite_router_ws_lost_pinned_total %llu\n"
                    "# TYPE edgelite_router_ws_limited_total counter\nedgelite_router_ws_limited_total %llu\n"
                    "# TYPE edgelite_router_ws_ryw_bookmarks_total counter\n"
                    "edgelite_router_ws_ryw_bookmarks_total %llu\n"
                    "# TYPE edgelite_router_ws_reads_retried_total counter\n"
                    "edgelite_router_ws_reads_retried_total %llu\n"
                    "# TYPE edgelite_router_ws_last_failover_ms gauge\nedgelite_router_ws_last_failover_ms %.3f\n"
                    "# TYPE edgelite_router_ws_upstream_full_total counter\n"
                    "edgelite_router_ws_upstream_full_total %llu\n"
                    "# TYPE edgelite_router_ws_refused_retries_total counter\n"
                    "edgelite_router_ws_refused_retries_total %llu\n"
                    "# TYPE edgelite_router_ws_connect_timeouts_total counter\n"
                    "edgelite_router_ws_connect_timeouts_total %llu\n",
                    (unsigned long long)d->requests, (unsigned long long)d->failovers,
                    (unsigned long long)d->write_not_retried, (unsigned long long)d->ryw_attached,
                    d->failover_ms_last, (unsigned long long)d->ws_failovers, (unsigned long long)d->ws_lost_pinned,
                    (unsigned long long)d->ws_limited, (unsigned long long)d->ws_ryw_attached,
                    (unsigned long long)d->ws_reads_retried, d->ws_failover_ms_last,
                    (unsigned long long)d->ws_upstream_full, (unsigned long long)d->ws_refused_retries,
                    (unsigned long long)d->ws_connect_timeouts);
    size_t ws_streams, ws_cursors;
    edge__door_ws_counts(d, &ws_streams, &ws_cursors);
    edge_buf_printf(&b, "# TYPE edgelite_router_ws_streams gauge\nedgelite_router_ws_streams %zu\n"
                        "# TYPE edgelite_router_ws_cursors gauge\nedgelite_router_ws_cursors %zu\n",
                    ws_streams, ws_cursors);
    edge_router_stats_prometheus(d->stats, "edgelite_router", d->rc->stats_metrics_top, &b);
    edge_http_respond(c, 200, "text/plain; version=0.0.4", NULL, b.data, b.len);
    edge_buf_free(&b);
}

void edge__door_stats(struct door *d, struct edge_http_conn *c, struct edge_http_req *req)
{
    char sort[32] = "total_time";
    long limit = 20;
    for (const char *q = req->query; q != NULL && *q; q = strchr(q, '&') ? strchr(q, '&') + 1 : NULL) {
        if (strncmp(q, "sort=", 5) == 0) snprintf(sort, sizeof(sort), "%.*s", (int)strcspn(q + 5, "&"), q + 5);
        if (strncmp(q, "limit=", 6) == 0) limit = strtol(q + 6, NULL, 10);
    }
    if (limit < 1 || limit > 100000) {
        edge_http_respond_error(c, 400, "BAD_QUERY", "limit must be 1..100000");
        return;
    }
    struct edge_buf b;
    edge_buf_init(&b, 64u << 20);
    if (edge_router_stats_json(d->stats, sort, (int)limit, &b) != EDGE_OK) {
        edge_http_respond_error(c, 400, "BAD_QUERY",
                                "sort must be one of total_time, calls, errors, rows, mean_time, p99, cache_hits");
    } else {
        edge_http_respond(c, 200, "application/json", NULL, b.data, b.len);
    }
    edge_buf_free(&b);
}

void edge__door_regions(struct door *d, struct edge_http_conn *c)
{
    struct edge_buf b;
    edge_buf_init(&b, 1 << 20);
    edge_buf_puts(&b, "{\"regions\":[");
    for (int i = 0; i < d->n; i++) {
        const struct region *r = &d->regions[i];
        edge_buf_printf(&b, "%s{\"id\":", i ? "," : "");
        edge_buf_json_cstr(&b, r->id);
        edge_buf_printf(&b, ",\"up\":%s,\"rtt_ms\":%.3f,\"in_flight\":%d,\"weight\":%g,\"requests\":%llu,"
                        "\"errors\":%llu}", r->up ? "true" : "false", r->rtt_ms, r->in_flight, r->weight,
                        (unsigned long long)r->requests, (unsigned long long)r->errors);
    }
    edge_buf_printf(&b, "],\"failovers\":%llu,\"last_failover_ms\":%.3f}", (unsigned long long)d->failovers,
                    d->failover_ms_last);
    edge_http_respond(c, 200, "application/json", NULL, b.data, b.len);
    edge_buf_free(&b);
}

