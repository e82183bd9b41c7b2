/* SPDX-License-Identifier: MIT */
/* Internals of the front door shared by door.c (HTTP) and door_ws.c (WebSocket). */
#ifndef EDGE_ROUTER_DOOR_INT_H
#define EDGE_ROUTER_DOOR_INT_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "net/http.h"
#include "net/httpc_async.h"
#include "router/door.h"
#include "router/router.h"

#define DOOR_CONNS 64
#define RYW_SLOTS 4096
#define MAX_TRIES 8

struct region {
    int idx;
    const char *id;
    char host[256], port[8];
    double weight;
    struct edge_httpca *pool, *probe_pool;
    bool up, probing, ever_probed;
    double rtt_ms;   /* EWMA of probe round trips */
    double wan_ms;   /* from the client region by the matrix; 0 without one */
    int in_flight;
    uint64_t probe_start_ns;
    uint64_t requests, errors, failovers_from, probes_failed;
    uint64_t ws_sessions; /* WebSocket sessions proxied to it (door_ws.c) */
    int ws_open;
};

struct ryw {
    uint64_t hash;
    char key[64];
    char bookmark[96];
};

struct door {
    const struct edge_router_door_config *cfg;
    const struct edge_conf_router *rc;
    uv_loop_t loop;
    uv_timer_t probe_timer, stop_timer;
    volatile sig_atomic_t *stop;
    struct edge_http_server *http;
    struct region *regions;
    int n;
    struct ryw *ryw; /* RYW_SLOTS, direct-mapped by the key's hash (a newer key takes the slot) */
    struct edge_router_stats *stats;
    uint64_t failovers, write_not_retried, ryw_attached, requests, ws_refused_retries;
    double failover_ms_last; /* time from the first failure to the answer, last fail-over */
    bool stopping;
};

/* The region for a new request or session among those not in tried (a bit per index), -1 if none. */
int edge__door_choose(struct door *d, uint32_t tried);
/* An upgrade request: the WebSocket is proxied, frame by frame, to one region for its whole life. */
void edge__door_ws_upgrade(struct door *d, struct edge_http_conn *c, struct edge_http_req *req);

#endif
