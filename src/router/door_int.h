/* SPDX-License-Identifier: MIT */
/* Internals of the front door shared by door.c (HTTP) and door_ws.c (WebSocket). */
#ifndef EDGE_ROUTER_DOOR_INT_H
#define EDGE_ROUTER_DOOR_INT_H

#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "core/vclock.h"
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

#define DOOR_MAX_REGIONS 32

/* What one client's writes got: per region (by index), the highest seq of that region's
 * bookmarks, a version vector (so writes answered by several regions all count). */
struct ryw {
    uint64_t hash;
    char key[64];
    uint64_t seq[DOOR_MAX_REGIONS];
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

/* door_body.c: a pipeline body {"baton","requests"} (or a cursor's {"baton","batch"})
 * only reads (every statement literal SQL starting with SELECT or VALUES, one each);
 * norm gets the first statement's normalized text (EDGE_ROUTER_NORM_MAX). */
bool edge__door_body_reads(json_t *body, bool cursor, char *norm, size_t normcap);
/* The answer with its baton prefixed "<region>." (a cursor: in its first line); NULL
 * when it has no baton (leave the body as it is). */
char *edge__door_rewrite_baton(const char *body, size_t len, int region, size_t *out_len, bool cursor);
/* The rows of a JSON pipeline answer (every "rows" array of its results and batch
 * steps) or of a cursor's JSON lines (its "row" entries). */
uint64_t edge__door_count_rows(const char *body, size_t len, bool cursor);
/* door_pb.c: the baton (field 1) of a top-level protobuf message: *baton NULL when it
 * has none; EDGE_EPROTO when the message is malformed. */
int edge__door_pb_baton(const uint8_t *p, size_t len, const uint8_t **baton, size_t *blen);
/* The message with its baton replaced by baton[0..blen) (NULL: removed), into out. */
int edge__door_pb_set_baton(const uint8_t *p, size_t len, const char *baton, size_t blen, struct edge_buf *out);
/* A protobuf answer (a PipelineResp, or a cursor's length-delimited CursorResp and
 * entries) with its baton prefixed "<region>.", into out; EDGE_ENOTFOUND when it has
 * no baton (leave it as it is). */
int edge__door_pb_answer(const uint8_t *p, size_t len, int region, bool cursor, struct edge_buf *out);
/* door_admin.c: the door's own endpoints. */
void edge__door_metrics(struct door *d, struct edge_http_conn *c);
void edge__door_stats(struct door *d, struct edge_http_conn *c, struct edge_http_req *req);
void edge__door_regions(struct door *d, struct edge_http_conn *c);

#endif
