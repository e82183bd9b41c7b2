/* SPDX-License-Identifier: MIT */
/* An edgelite node: N libuv loops sharing one listening socket (dup'd), each with its own
 * read connection; one writer thread; Hrana over HTTP and WebSocket; the /v1 JSON API
 * and /metrics. */
#ifndef EDGE_API_NODE_H
#define EDGE_API_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/conf.h"

struct edge_node_config {
    const char *host;            /* "127.0.0.1" */
    int port;                    /* 0 = ephemeral */
    const char *data_dir;        /* created if missing */
    const char *region;          /* "local" */
    const char *jwt_key_file;    /* NULL = no auth */
    const char *tls_cert_file;   /* PEM certificate chain: serve https/wss only; NULL = plain HTTP */
    const char *tls_key_file;    /* its PEM private key (with tls_cert_file) */
    int threads;                 /* loop threads; 0 = one per core */
    size_t max_body_bytes;       /* default 16 MiB */
    uint64_t stream_timeout_ms;  /* idle Hrana stream expiry, default 10 s */
    uint64_t query_budget_ms;    /* per-statement time budget, default 5 s; 0 = none */
    uint64_t idle_conn_timeout_ms; /* keep-alive idle close, default 60 s */
    bool synchronous_full;
    const struct edge_conf *conf; /* optional cluster config (borrowed) */
    const struct edge_regions *wan; /* optional: emulate the RTTs of this matrix on peer links (borrowed) */
    uint64_t bookmark_timeout_ms;   /* how long a read waits for its bookmark, default 5 s */
    uint64_t strong_timeout_ms;     /* how long a strong write waits for a majority, default 5 s */
    uint64_t log_keep;              /* acknowledged log entries kept per origin before compaction, default 1000 */
    uint64_t compact_interval_ms;   /* how often compaction runs, default 5 s */
    /* Set the database aside and seed it from a peer before serving (the node said
     * edge_node_reseed_wanted); the region's own entries only the old copy holds are
     * taken over. Until seeded, it answers 503 SEEDING (src/api/seeding.c). */
    bool reseed;
    /* An already listening socket to serve on instead of binding host:port (taken over;
     * from edge_node_listener_dup of the previous node): clients wait in its backlog
     * across a restart instead of being refused. */
    bool use_listen_fd;
    int listen_fd;
    /* Polled while a seed must wait for a peer: true gives up the start (EDGE_ECLOSED). */
    bool (*cancelled)(void *ud);
    void *cancelled_ud;
};

/* Fill a config with the embedded defaults. */
void edge_node_config_defaults(struct edge_node_config *cfg);

struct edge_node;

/* Open the database, start the writer and the loop threads and listen. On success
 * *out is running; stop it with edge_node_stop. Errors leave nothing running; errmsg
 * says why. */
int edge_node_start(const struct edge_node_config *cfg, struct edge_node **out, char *errmsg, size_t errmsg_len);
/* Whether the node serves TLS (https://, wss://). */
bool edge_node_tls(const struct edge_node *n);
/* The port actually bound. */
int edge_node_port(const struct edge_node *n);
/* Graceful stop, first step (any thread): stop accepting connections and let the open
 * ones finish what they have in flight; each is closed once idle (HTTP keep-alive: after
 * its last answer, with "Connection: close"; WebSocket: with a 1001 close once no
 * request is open). Then poll edge_node_drained and call edge_node_stop. */
void edge_node_drain(struct edge_node *n);
/* True once every loop has drained and no connection is busy any more. */
bool edge_node_drained(struct edge_node *n);
/* How many connections are still busy (for the log line of a stop that timed out); -1
 * while a loop has not counted yet (it may be running a long request). */
long edge_node_busy_connections(struct edge_node *n);
/* True once the running node found itself behind the compacted logs of every peer
 * that answers (they were past replication.max_log_bytes while it was unreachable): it
 * answers 503 SEEDING from then on, and the embedder should stop it and start it again
 * with cfg.reseed (and cfg.listen_fd from edge_node_listener_dup). Any thread. */
bool edge_node_reseed_wanted(struct edge_node *n);
/* A new descriptor of the node's listening socket (the caller's), or -1. Any thread. */
int edge_node_listener_dup(struct edge_node *n);
/* Stop accepting, close connections (rolling back open streams), finish queued
 * writes, close the database, free the node. Any thread but the node's own. */
void edge_node_stop(struct edge_node *n);

#endif
