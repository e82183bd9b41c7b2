/* SPDX-License-Identifier: MIT */
/* The outbound replication link to one remote region: a dedicated thread with blocking
 * I/O that connects to the peer's /v1/peer WebSocket endpoint, authenticates with the
 * cluster secret (HMAC challenge, repl/proto.h), and pushes every local log entry
 * (_edge_log) the peer's version vector does not cover, in HLC order, as ENTRIES
 * batches, up to max_in_flight of them awaiting their ACK (the peer's new VV) at once.
 *
 * DESIGN: the log is the source of truth, so the link keeps no entry queue: it tracks a
 * "sent" VV (what is on the wire) next to the "acked" VV (what the peer confirmed) and
 * reads what is pending above "sent" from the log. When the ACKs show the peer did not
 * apply something that was sent (a gap), and on every reconnect, "sent" falls back to
 * "acked" and the link resends from there, which also covers entries the peer learnt
 * from a third region. Errors close the connection and reconnect with exponential
 * back-off (100 ms .. 5 s, full jitter); nothing is ever dropped. The thread only reads
 * the database, through its own read-only connection. See docs/internals/peer-protocol.md. */
#ifndef EDGE_REPL_PEER_H
#define EDGE_REPL_PEER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/vclock.h"

struct edge_peer;

struct edge_peer_config {
    const char *db_path;      /* the node's database, opened read-only by the link */
    const char *local_region; /* this node's region id */
    const char *cluster;      /* cluster name, sent in HELLO */
    const char *secret;       /* cluster secret (HMAC key material) */
    const char *peer_region;  /* expected region of the remote node (checked on HELLO_OK) */
    const char *peer_url;     /* "http://127.0.0.1:8082" (a path, if any, is ignored); https:// speaks TLS */
    struct edge_tls_ctx *tls_ctx; /* verifies an https:// peer's certificate (net/tls.h, borrowed) */
    int one_way_delay_ms;     /* WAN emulation: each message leaves this long after it is queued and each
                                 received message is handled this long after it arrived; both overlap */
    int sync_interval_ms;     /* async entries ship at least this often; <= 0: 1000 */
    int max_batch_entries;    /* <= 0: 1000 */
    size_t max_batch_bytes;   /* 0: 1 MiB */
    int max_in_flight;        /* ENTRIES messages awaiting their ACK at once; <= 0: 128, at most 240 */
    size_t max_in_flight_bytes; /* a batch beyond the first is built only while fewer bytes than this
                                   await their ACK (so at most this + max_batch_bytes); 0: 8 MiB */
    void (*on_ack)(void *ud, const char *peer_region); /* link thread, after each ACK; may be NULL */
    void *ud;
};

struct edge_peer_status {
    bool connected;             /* HELLO_OK received and the link is up */
    double rtt_ms;              /* EWMA (alpha 0.3) of PING/PONG round trips; 0 before the first */
    double clock_offset_ms;     /* the peer's wall clock minus ours, from the fastest PING/PONG */
    bool clock_offset_known;    /* a PONG carried the peer's clock */
    struct edge_vclock acked;   /* the peer's VV as last seen (HELLO_OK or ACK) */
    uint64_t entries_sent;      /* entries shipped, resends included */
    uint64_t bytes_sent;        /* ENTRIES message bytes */
    uint64_t batches_sent;      /* ENTRIES messages */
    uint64_t retries;           /* failed sessions (each followed by a back-off) */
    uint64_t needs_snapshot;    /* times the peer needed entries older than the log holds */
    uint64_t resends;           /* times the ACKs showed a gap and the link resent from the acked VV */
    int in_flight;              /* ENTRIES messages sent or queued and not yet acknowledged */
    size_t in_flight_bytes;     /* their bytes */
    uint64_t window_full;       /* times entries were pending and the window (count or bytes) was full */
    uint64_t auth_failures;     /* sessions ended because the peer did not prove the secret (AUTH) */
    uint64_t mac_errors;        /* sessions ended by a received frame whose seal did not verify */
    char last_error[128];       /* last failure reason, "" if none yet */
};

/* Copy the configuration (strings copied, not retained) and start the link thread.
 * The database is opened read-only here. EDGE_OK, EDGE_EINVAL (missing field, bad URL,
 * invalid region), EDGE_ESTORE (database cannot be opened), EDGE_ENOMEM, EDGE_EINTERNAL
 * (thread creation). *out is freed by edge_peer_stop. Any thread. */
int edge_peer_start(const struct edge_peer_config *cfg, struct edge_peer **out);
/* New local eventual/strong entries exist: push them now. Cheap, never blocks; any thread. */
void edge_peer_notify(struct edge_peer *p);
/* Stop the thread (returns within about a second even mid-connect), close the
 * connection and free p. NULL is fine. Not on the link thread (not from on_ack). */
void edge_peer_stop(struct edge_peer *p);
/* Snapshot of the link's state into *out (caller edge_vclock_close(&out->acked); on
 * allocation failure acked is empty). Any thread. */
void edge_peer_status(struct edge_peer *p, struct edge_peer_status *out);

#endif
