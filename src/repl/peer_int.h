/* SPDX-License-Identifier: MIT */
/* The outbound peer link's state, shared by the push loop (peer.c) and the handshake
 * (peer_hello.c: CHALLENGE, HELLO with its nonce and MAC, HELLO_OK's proof and version,
 * the session key). Internal to the link: both run on its one thread. */
#ifndef EDGE_REPL_PEER_INT_H
#define EDGE_REPL_PEER_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <sqlite3.h>

#include "core/buf.h"
#include "net/wsc.h"
#include "repl/peer.h"
#include "repl/peer_mq.h"
#include "repl/proto.h"

enum link_state { ST_CHALLENGE, ST_HELLO, ST_READY };

/* One ENTRIES message awaiting its ACK. */
struct flight {
    struct edge_vclock sent; /* p->sent right after it was built: its ACK must cover this */
    size_t bytes;            /* the message's size, counted in fl_bytes */
    uint64_t deadline_ms;    /* the ACK is overdue after this */
};

struct edge_peer {
    /* immutable after start */
    char *db_path, *local_region, *cluster, *secret, *peer_region;
    char host[256], port[8];
    int one_way_delay_ms, sync_interval_ms, max_batch_entries, max_in_flight;
    size_t max_batch_bytes, max_in_flight_bytes;
    void (*on_ack)(void *ud, const char *peer_region);
    void *ud;
    pthread_t thread;
    int wake[2];            /* pipe: any byte interrupts the link thread's poll */
    atomic_bool stopping;   /* set once by edge_peer_stop */
    atomic_bool notified;   /* new entries since the last push */

    pthread_mutex_t mu;           /* guards st */
    struct edge_peer_status st;   /* published copy */

    /* link thread only */
    sqlite3 *db;
    struct edge_wsc ws;       /* the connection (net/wsc.h); ws.msg is the last message received */
    enum link_state state;
    struct edge_buf out;      /* protocol message being built */
    struct edge_repl_seal seal; /* this session's key and frame numbers, once HELLO_OK verified */
    bool sealed;              /* every frame is sealed and checked from here */
    struct edge_vclock peer_vv;  /* "acked": the peer's VV (HELLO_OK, then max of the ACKs) */
    struct edge_vclock sent;     /* "sent": peer_vv plus everything put on the wire since */
    struct edge_vclock progress; /* peer_vv at the last fallback (or session start) */
    struct mqueue outq, inq;
    struct flight *flights;      /* ring of max_in_flight */
    size_t fl_head, fl_len;
    size_t fl_bytes;             /* sum of the in-flight messages' bytes */
    bool window_full;            /* the last push stopped at the window with entries pending */
    bool want;                   /* a trigger asked for a push and the log may have more */
    bool draining;               /* a gap was seen: send nothing new until all ACKs are in */
    uint64_t ping_t_ms;       /* send time of the outstanding PING, 0 if none */
    uint64_t ping_us;         /* the same instant, finer, for the clock offset */
    uint64_t ping_wall_ms;    /* wall clock when the PING left */
    uint64_t offset_rtt_us;   /* round trip of the sample clock_offset_ms came from */
    bool have_offset;
    char err[128];
};

static inline uint64_t edge__peer_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static inline uint64_t edge__peer_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* peer.c */
void edge__peer_set_err(struct edge_peer *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Run fn on the published status under p->mu. */
void edge__peer_publish(struct edge_peer *p, void (*fn)(struct edge_peer_status *st, void *arg), void *arg);
void edge__peer_pub_acked(struct edge_peer_status *st, void *arg);    /* arg: the peer */
void edge__peer_pub_connected(struct edge_peer_status *st, void *arg); /* arg: a bool */

/* peer_hello.c */
/* The handshake on a connected WebSocket: on EDGE_OK the session is sealed, p->peer_vv and
 * p->sent hold the peer's VV and the state is ST_READY. Errors leave p->err set. */
int edge__peer_hello(struct edge_peer *p);
/* An ERROR message from the peer, at any time: p->err says what; EDGE_EAUTH for AUTH. */
int edge__peer_error(struct edge_peer *p, const uint8_t *m, size_t len);

#endif
