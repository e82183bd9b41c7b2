/* SPDX-License-Identifier: MIT */
/* The real-time engine's internals, shared by its files: rt.c (subscriptions, life cycle,
 * status), rt_entry.c (bookmarks, entries rendered once), rt_deliver.c (live delivery,
 * filters, frames, flow control), rt_catchup.c (catch-up from the log), rt_broadcast.c
 * (channels) and rt_proto.c (the client protocol: subscribe, unsubscribe, join,
 * broadcast, the WebSocket and SSE sessions). */
#ifndef EDGE_REALTIME_RT_INT_H
#define EDGE_REALTIME_RT_INT_H

#include "realtime/rt.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "repl/feed.h"
#include "store/store.h"

enum { ENT_CHANGE = 0, ENT_RESET = 1, ENT_BROADCAST = 2 };
enum { SUB_CATCHUP = 0, SUB_LIVE = 1, SUB_AHEAD = 2 };

/* Strings of an entry live in its arena; ops and columns refer to them by offset. */
struct rt_col {
    uint32_t name_off, name_len, val_off, val_len;
    bool pk;
};

struct rt_op {
    uint32_t table_off, table_len;
    int kind;
    uint32_t frag_off, frag_len; /* the event's fields after "sub", without the bookmark */
    uint32_t pk_off, pk_len;
    uint32_t col0, ncols;
};

struct rt_entry {
    _Atomic int refs;
    int type;
    char origin[EDGE_VCLOCK_REGION_MAX + 1];
    uint64_t seq;
    char *arena;
    struct rt_op *ops;
    size_t n_ops;
    struct rt_col *cols;
    uint32_t bm_off, bm_len;       /* the node's position after the entry */
    uint32_t chan_off, chan_len;   /* broadcast */
    uint32_t pay_off, pay_len;
};

struct rt_where {
    char *col;
    char *val; /* canonical JSON text */
};

struct rt_session;

struct rt_sub {
    int64_t id;
    struct rt_session *s;
    char **tables;
    int n_tables;
    struct rt_where *where;
    int n_where;
    char **keys; /* canonical JSON text of each key */
    int n_keys;
    int state;
    struct edge_vclock pos; /* CATCHUP and AHEAD: what it has */
    struct rt_sub *next;
};

struct rt_loop;

struct rt_session {
    struct edge_rt *rt;
    struct rt_loop *rl;
    struct edge_http_conn *c;
    bool authed, read_only, closed, sse;
    struct rt_sub *subs;
    int n_subs;
    char **channels;
    int n_channels;
    struct edge_buf out; /* events of this turn, comma-separated */
    int out_n;
    struct rt_session *prev, *next;
};

struct rt_loop {
    struct edge_rt *rt;
    int idx;
    uv_loop_t *uvl;
    uv_idle_t idle; /* while subscriptions catch up */
    bool idle_on, inited;
    pthread_mutex_t mu;
    struct rt_entry **pend;
    size_t n_pend, cap_pend;
    bool posted;
    struct edge_task task;
    bool active;            /* receives change entries (rt->mu) */
    struct edge_vclock lvv; /* loop thread: entries processed here */
    struct rt_session *sessions;
    int n_catchup;
    int n_change_subs;
    struct edge_store_conn *rconn;
};

struct table_count {
    char *name;
    int64_t n;
};

struct edge_rt {
    struct edge_repl_state *st;
    char *db_path;
    struct edge_rt_host host;
    struct edge_rt_limits lim;
    struct rt_loop *loops;
    pthread_mutex_t mu;
    struct edge_vclock pos; /* the node's position: entries the feed delivered (mu) */
    int n_active;
    struct table_count *tables;
    size_t n_tables;
    _Atomic int64_t conns;
    struct {
        _Atomic uint64_t subscriptions, entries_in, deliveries, frames, bytes_out;
        _Atomic uint64_t closed_slow, closed_resync, refused_connections, refused_subscriptions, bad_messages,
            auth_failed, broadcasts_in, broadcast_deliveries;
    } m;
};

/* rt_entry.c: bookmarks and entries */
bool edge__rt_vv_le(const struct edge_vclock *a, const struct edge_vclock *b); /* every counter of a <= b's */
struct rt_entry *edge__rt_entry_build(const struct edge_feed_entry *fe, const struct edge_vclock *after);
void edge__rt_entry_unref(struct rt_entry *e);

/* rt_deliver.c: sending, filters, live entries from the feed */
void edge__rt_send_buf(struct rt_session *s, struct edge_buf *b);
void edge__rt_send_error(struct rt_session *s, const char *code, const char *msg, json_t *id);
void edge__rt_send_text(struct rt_session *s, const char *p, size_t n);
void edge__rt_sub_position(const struct rt_sub *sub, struct edge_buf *out);
void edge__rt_frame_next(struct rt_session *s);
void edge__rt_queue_event(struct rt_session *s, const struct rt_sub *sub, const struct rt_entry *e,
                          const struct rt_op *o, const char *bm, size_t bm_len);
void edge__rt_session_flush(struct rt_session *s);
size_t edge__rt_session_unsent(const struct rt_session *s);
bool edge__rt_sub_matches(const struct rt_sub *sub, const struct rt_entry *e, const struct rt_op *o);
void edge__rt_loop_push(struct edge_rt *rt, struct rt_loop *rl, struct rt_entry *e);
void edge__rt_on_feed_entry(void *ud, const struct edge_feed_entry *fe);
void edge__rt_on_feed_reset(void *ud);

/* rt_catchup.c: catching up from the log */
void edge__rt_catchup_count(struct rt_loop *rl, int d);
struct edge_store_conn *edge__rt_loop_rconn(struct rt_loop *rl);
void edge__rt_send_ready(struct rt_sub *sub);
void edge__rt_sub_catchup_step(struct rt_sub *sub);
void edge__rt_sub_resync(struct rt_sub *sub);

/* rt_broadcast.c */
void edge__rt_deliver_broadcast(struct rt_loop *rl, struct rt_entry *e);

/* rt.c: subscriptions and counts */
void edge__rt_loop_activate(struct rt_loop *rl);
void edge__rt_sub_free(struct rt_sub *sub);
void edge__rt_sub_remove(struct rt_sub *sub);
void edge__rt_table_count(struct edge_rt *rt, const char *name, int d);

/* rt_proto.c: the client protocol and sessions */
void edge__rt_session_close(struct rt_session *s, uint16_t code, const char *reason);

#endif
