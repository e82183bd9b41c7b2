/* SPDX-License-Identifier: MIT */
/* The router's front door (`edgelite router`, docs/router.md): a stateless HTTP proxy on
 * one libuv loop in front of every region of a configuration. It probes each region's
 * health and RTT, sends each Hrana request to the nearest healthy region (power of two
 * choices on in-flight requests, weighted by regions[].capacity.weight, among regions
 * within router.rtt_slack_ms of the nearest), fails reads over to the next region
 * (router.fallback, then RTT) within router.request_timeout_ms, retries a write only when
 * its connection was refused, pins a stream to the region that holds it (the baton is
 * prefixed with the region), and gives read-your-writes by attaching the latest bookmark
 * it saw per client token (or connection) to later reads. */
#ifndef EDGE_ROUTER_DOOR_H
#define EDGE_ROUTER_DOOR_H

#include <jansson.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "core/conf.h"

struct edge_router_door_config {
    const struct edge_conf *conf;   /* regions and router: (borrowed) */
    const struct edge_regions *wan; /* optional RTT matrix: nearest to client_region by it (borrowed) */
    const char *host;               /* listen address (loopback) */
    int port;                       /* 0: any free port */
    const char *client_region;      /* the region the clients are in, or NULL */
    /* Hrana 3 protobuf bodies (PipelineReq, CursorReq) into their JSON form, to classify
     * them (the node's decoders, src/api/hrana/pb.h; the router module does not link the
     * API). NULL: /v3-protobuf answers 404 and clients fall back to JSON. */
    int (*pb_decode_pipeline)(const uint8_t *data, size_t len, json_t **out_body, char *err, size_t errlen);
    int (*pb_decode_cursor)(const uint8_t *data, size_t len, json_t **out_body, char *err, size_t errlen);
};

/* Serve until *stop becomes non-zero (checked every 100 ms; set it from a signal
 * handler). Prints "edgelite router: listening on http://HOST:PORT" once listening.
 * EDGE_OK, or an error with errmsg. */
int edge_router_door_run(const struct edge_router_door_config *cfg, volatile sig_atomic_t *stop, char *errmsg,
                         size_t errmsg_len);

#endif
