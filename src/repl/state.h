/* SPDX-License-Identifier: MIT */
/* The node's replication state: the version vector, the hybrid clock, the writer's
 * change capture and its commit hooks, the consistency policy, the outbound peer links
 * and the majority arithmetic of strong writes. One per node; the API layer embeds it
 * and reads it from every thread (each part behind its own lock).
 *
 * DESIGN: everything here is replication, nothing is HTTP. Where replication progress
 * must reach the API layer (a waiting strong write or bookmarked read may be served
 * now), it calls the wake callback, which the embedding layer sets. */
#ifndef EDGE_REPL_STATE_H
#define EDGE_REPL_STATE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/clock.h"
#include "core/conf.h"
#include "core/vclock.h"
#include "repl/feed.h"
#include "repl/peer.h"
#include "repl/repl.h"
#include "store/writer.h"

#define EDGE_REPL_MAX_PEERS 32

struct edge_repl_counters {
    _Atomic uint64_t applied, rows, conflicts, duplicates, deferred;
    _Atomic uint64_t hidden, restored, apply_errors, skewed, ddl_skipped;
    _Atomic uint64_t conflicts_dropped; /* _edge_conflicts rows removed by retention (compact.c) */
    _Atomic uint64_t horizon_drops;     /* writes below the tombstone horizon to rows with no metadata (tomb.h) */
    _Atomic uint64_t session_merges;    /* concurrent session records merged (apply_sess.c) */
    /* inbound peer links (session.c) refused for a bad HELLO MAC or cluster, and closed for
     * a frame whose seal did not verify */
    _Atomic uint64_t peer_auth_refused, peer_mac_errors;
    /* inbound ENTRIES: writer transactions that applied them, and the frames those held
     * (several queued frames go in one, session.c) */
    _Atomic uint64_t apply_txns, apply_frames;
};

struct edge_repl_tomb;

struct edge_repl_state {
    const char *region;              /* borrowed from the node */
    const char *db_path;             /* borrowed */
    const struct edge_conf *conf;    /* borrowed, NULL on a single node */
    const struct edge_regions *wan;  /* borrowed, optional WAN emulation */
    struct edge_tls_ctx *peer_tls;   /* verifies https:// peers (cluster.ca_file); owned by the node, NULL = none */
    bool cluster;                    /* replicating: capture changes into the log */
    int default_consistency;         /* 0 eventual, 1 strong, 2 async */
    const char *primary;             /* region with the lowest priority (borrowed from the config) */
    uint64_t log_keep;               /* acknowledged entries kept per origin by compaction */
    uint64_t max_skew_ms;            /* replication.max_clock_skew_ms */
    int id_index;                    /* this region's stripe of row ids: its position in the config */
    struct edge_writer *writer;      /* set by the node once the writer runs */
    struct edge_capture *wcap;       /* the writer connection's capture (writer thread) */
    pthread_mutex_t hlc_mu;
    struct edge_hlc hlc;
    struct edge_repl_local local;
    pthread_mutex_t vv_mu;
    struct edge_vclock vv;           /* this node's version vector (vv_mu) */
    _Atomic uint64_t data_version;   /* bumped after every commit, before its answer goes out */
    pthread_rwlock_t peers_lock;     /* readers: anyone using peers[]; writer: start/stop */
    struct edge_peer *peers[EDGE_REPL_MAX_PEERS];
    const char *peer_region[EDGE_REPL_MAX_PEERS];
    const char *peer_url[EDGE_REPL_MAX_PEERS];
    int n_peers;
    struct edge_repl_counters stats; /* remote entries applied here */
    sqlite3 *wdb;                    /* the writer's connection (writer thread only) */
    struct edge_repl_feed feed;      /* change feed listeners (repl/feed.h) */
    struct edge_feed_mark wmark;     /* what the writer's group marked before COMMIT (writer thread) */
    /* The log's size bound (compact.c). log_counted and log_bytes are the writer thread's
     * (log_bytes readable by any); needs_snapshot[i] (peer i was compacted past: it must
     * be re-seeded) is set and cleared by the compaction tick, read by anyone. */
    uint64_t max_log_bytes;          /* replication.max_log_bytes, 0 = no bound */
    struct edge_vclock log_counted;  /* per origin: log entries up to this seq are in log_bytes */
    _Atomic uint64_t log_bytes;      /* bytes of _edge_log's rows (payload + deps + 40 per row) */
    _Atomic uint64_t log_forced;     /* compactions that went past a region's acknowledgement */
    _Atomic bool needs_snapshot[EDGE_REPL_MAX_PEERS];
    struct edge_vclock snap_floor[EDGE_REPL_MAX_PEERS]; /* the floor that peer must reach (compaction tick) */
    void (*wake)(void *ud);          /* progress: re-check waiting requests; any thread */
    void *wake_ud;
    struct edge_repl_tomb *tomb;     /* tombstone collection (repl/tomb.h); NULL if it could not be set up */
};

/* Fill st for a node of `region` with its database at db_path (both borrowed). */
void edge_repl_state_init(struct edge_repl_state *st, const char *region, const char *db_path,
                          const struct edge_conf *conf, const struct edge_regions *wan, uint64_t log_keep);
void edge_repl_state_close(struct edge_repl_state *st);
/* On a cluster node: create the replication tables on the writer's connection, load
 * the version vector, attach the capture, and fill the writer hooks. */
int edge_repl_state_open(struct edge_repl_state *st, sqlite3 *wdb, struct edge_writer_hooks *hooks, char *errmsg,
                         size_t errmsg_len);

/* A local transaction committed entry `seq` of this region. Any thread. */
void edge_repl_state_committed(struct edge_repl_state *st, uint64_t seq, int consistency);
/* Remote entries were applied: merge what the database now holds (vv) into the VV. */
void edge_repl_state_merge(struct edge_repl_state *st, const struct edge_vclock *vv);
/* Writes made from now on stamp later than hlc (HLC receive rule). */
void edge_repl_state_observe_hlc(struct edge_repl_state *st, uint64_t hlc);
void edge_repl_state_wake(struct edge_repl_state *st);
/* Copy the version vector into out (initialised, empty or not). */
void edge_repl_state_vv(struct edge_repl_state *st, struct edge_vclock *out);
/* Has this node applied origin's entry seq? */
bool edge_repl_state_covers(struct edge_repl_state *st, const char *origin, uint64_t seq);
bool edge_repl_state_is_primary(const struct edge_repl_state *st);
const char *edge_repl_state_primary_url(const struct edge_repl_state *st);

/* The level a write runs at: the strongest of the node's default and the levels of the
 * tables it writes (n_tables < 0: not all known, so every configured level counts),
 * raised by the header value (X-Edge-Consistency) when valid and stronger. */
int edge_repl_consistency(const struct edge_repl_state *st, const char *header, const char *const *tables,
                          int n_tables);

/* Peers that acknowledged this region's entry seq; *out_connected (may be NULL): links up. */
int edge_repl_acks_for(struct edge_repl_state *st, uint64_t seq, int *out_connected);
/* The highest entry of this region that a majority holds: every seq up to it has
 * edge_repl_acks_for(seq) >= edge_repl_majority_needed (UINT64_MAX when no other
 * region is needed). One walk of the links, for all waiting strong writes at once. */
uint64_t edge_repl_majority_seq(struct edge_repl_state *st);
/* The highest entry of this region that every peer whose link is up acknowledged
 * (UINT64_MAX when no link is up): what POST /v1/crdt/sync waits for. One walk. */
uint64_t edge_repl_reachable_seq(struct edge_repl_state *st);
/* Other regions needed besides this one for a majority. */
int edge_repl_majority_needed(const struct edge_repl_state *st);
/* Can a strong write be accepted now (enough links up for a majority)? */
bool edge_repl_majority_reachable(struct edge_repl_state *st);

/* Start one outbound link per other region of the configuration; stop them all. */
int edge_repl_peers_start(struct edge_repl_state *st, char *errmsg, size_t errmsg_len);
void edge_repl_peers_stop(struct edge_repl_state *st);
/* New local entries (or relayed ones) exist: push them now. */
void edge_repl_peers_notify(struct edge_repl_state *st);

/* One walk of the peer links for status and metrics: for each link, its status and the
 * backlog of local log entries it has not acknowledged (pending, and the age in ms of
 * the oldest), read on db. cb runs under the peers lock. */
struct edge_repl_peer_view {
    const char *region;
    const char *url;
    const struct edge_peer_status *status;
    uint64_t pending;
    double lag_ms;
    bool needs_snapshot; /* compacted past what it acknowledged: it must be re-seeded */
};
void edge_repl_peers_walk(struct edge_repl_state *st, sqlite3 *db,
                          void (*cb)(void *ud, int i, const struct edge_repl_peer_view *v), void *ud);
/* Per origin, the highest seq no longer in the log (compacted), read on db. */
void edge_repl_log_floor(struct edge_repl_state *st, sqlite3 *db, struct edge_vclock *out);

#endif
