/* SPDX-License-Identifier: MIT */
/* The real-time engine: subscribers on WebSocket (and SSE) connections receive every
 * change committed in any region, in order, once each, resumable from a bookmark at any
 * region (docs/realtime.md has the protocol).
 *
 * DESIGN
 * Source. One listener on the change feed (repl/feed.h) sees every durable log entry of
 * this node, in causal order, on the committing thread. It renders each op once into a
 * JSON fragment (shared, refcounted), stamps the entry with the node's position after it
 * (a version vector: the bookmark) and hands it to the loops that have subscribers: a
 * per-loop queue plus one task per wake-up (the node's inbox and uv_async), so every
 * entry that arrived during one loop turn goes out in one pass and each connection gets
 * one frame per turn ({"type":"batch"} when it holds more than one event).
 *
 * Positions. A bookmark is the set of entries delivered so far, as a version vector
 * "origin:seq,origin:seq": every region delivers the entries of each origin in seq
 * order and never an entry before one it depends on, so "everything up to seq n of
 * origin o, for each o" is the whole of what a subscriber has seen, wherever it was
 * connected. Resuming elsewhere delivers exactly the entries outside that set.
 *
 * Catching up. A subscription from a bookmark reads the log (_edge_log) on the loop's own
 * read connection, a bounded batch per loop turn, up to what the loop has processed
 * live; then it says ready and follows the live entries. Entries the log no longer holds
 * (compacted) end the subscription with resync_required, never a silent gap. A
 * subscription whose bookmark is ahead of this region (it came from a region that had
 * applied more) skips the live entries it already has.
 *
 * Bounds. Connections per node, subscriptions per connection, and per connection the
 * unsent output: past realtime.queue_bytes a live subscriber is closed with
 * SLOW_CONSUMER and the bookmark to resume from; a subscriber catching up simply waits
 * for its reader (the log is its queue). */
#ifndef EDGE_REALTIME_RT_H
#define EDGE_REALTIME_RT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/buf.h"
#include "core/task.h"
#include "net/http.h"
#include "repl/state.h"

#define EDGE_RT_PROTOCOL "edgelite-realtime1"

/* What the embedding node provides. */
struct edge_rt_host {
    void *ud;
    int n_loops;
    /* Run t on loop i soon (any thread). */
    void (*post)(void *ud, int loop, struct edge_task *t);
    /* Check a token: true with its access (read_only), or false with an error code. */
    bool (*auth)(void *ud, const char *tok, size_t len, bool *read_only, const char **code);
    /* A token is required (the node checks JWTs). */
    bool auth_required;
    /* Publishing a broadcast from a subscriber (NULL: refused). Loop thread. */
    void (*broadcast)(void *ud, int loop, const char *channel, const char *payload_json, size_t len);
};

struct edge_rt_limits {
    int max_connections;
    int max_subscriptions;
    size_t queue_bytes;
    int backlog_batch;
};

struct edge_rt_stats {
    uint64_t connections, subscriptions;
    uint64_t entries_in, deliveries, frames, bytes_out;
    uint64_t closed_slow, closed_resync, refused_connections, refused_subscriptions, bad_messages, auth_failed;
    uint64_t broadcasts_in, broadcast_deliveries;
};

struct edge_rt;

/* Create the engine for st (a cluster node's replication state, or NULL: no changes
 * flow, broadcast only) and register its feed listener. Before the loops run. */
int edge_rt_create(struct edge_repl_state *st, const char *db_path, const struct edge_rt_host *host,
                   const struct edge_rt_limits *lim, struct edge_rt **out);
/* After the loops and the writer stopped. */
void edge_rt_destroy(struct edge_rt *rt);
/* Per loop, before it runs (uv_loop) and when it stops (loop thread). */
int edge_rt_loop_init(struct edge_rt *rt, int loop, uv_loop_t *uvl);
void edge_rt_loop_stop(struct edge_rt *rt, int loop);

/* A connection count slot for a new subscriber connection: false when the node is full.
 * Every true needs the connection accepted (edge_rt_accept) or the slot given back. */
bool edge_rt_reserve(struct edge_rt *rt);
void edge_rt_release(struct edge_rt *rt);
/* Take over an upgraded WebSocket connection on loop `loop` (its messages and close
 * come here from now on). authed: the upgrade carried a valid token (read_only its
 * access); otherwise the first message must carry "jwt" when auth is required. */
int edge_rt_accept(struct edge_rt *rt, int loop, struct edge_http_conn *c, bool authed, bool read_only);

/* An SSE stream: subscribe the connection (already answered with the stream's headers)
 * to tables with filters as in a subscribe message (a JSON object), from `from`. Events
 * are written as SSE with the bookmark as id. */
int edge_rt_sse_open(struct edge_rt *rt, int loop, struct edge_http_conn *c, const char *subscribe_json,
                     char *err, size_t errlen);

/* A broadcast channel name: 1..128 bytes, printable, no space and no '/' (it is a path
 * segment of POST /v1/broadcast/{channel}). */
bool edge_rt_channel_ok(const char *channel);
/* Deliver a broadcast to this loop's subscribers of channel (loop thread). */
void edge_rt_broadcast_local(struct edge_rt *rt, int loop, const char *channel, const char *payload_json, size_t len);
/* Post a broadcast to every loop of this node (any thread). */
void edge_rt_broadcast(struct edge_rt *rt, const char *channel, const char *payload_json, size_t len);

void edge_rt_stats(struct edge_rt *rt, struct edge_rt_stats *out);
/* Subscriptions per table as a JSON object {"orders": 3}. */
int edge_rt_tables_json(struct edge_rt *rt, struct edge_buf *out);
/* This node's position (what a subscriber that is live here has), as a bookmark. */
int edge_rt_position(struct edge_rt *rt, struct edge_buf *out);

/* ---- bookmarks: "origin:seq,origin:seq" (one pair is an X-Edge-Bookmark too) ---- */
int edge_rt_bookmark_format(const struct edge_vclock *vv, struct edge_buf *out);
/* EDGE_EINVAL for anything but a list of REGION:SEQ pairs (empty string: empty). */
int edge_rt_bookmark_parse(const char *s, size_t len, struct edge_vclock *out);

#endif
