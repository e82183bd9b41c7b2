/* SPDX-License-Identifier: MIT */
/* The peer link's message queues: the send queue and the queue of received messages, each
 * a FIFO ring whose slots keep their buffers for reuse, with each message's (emulated)
 * time to leave or to be handled. Used by one link thread (peer.c). */
#ifndef EDGE_REPL_PEER_MQ_H
#define EDGE_REPL_PEER_MQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

/* A popped slot whose buffer grew beyond this frees it: a big batch would otherwise pin
 * its memory in the slot for the link's lifetime. */
#define EDGE_MQ_SLOT_KEEP (4u * 65536u)

/* A protocol message waiting for its (emulated) time to leave or to be handled. */
struct qmsg {
    uint64_t due_ms;
    size_t n_entries; /* ENTRIES on the send queue: entries inside (statistics); else 0 */
    uint64_t trace_seq; /* repl/trace.h: the last local seq inside, when tracing */
    struct edge_buf b;
};

struct mqueue {
    struct qmsg *slots;
    size_t cap, head, len, bytes;
};

int edge__mq_init(struct mqueue *q, size_t cap);
void edge__mq_free(struct mqueue *q);
bool edge__mq_full(const struct mqueue *q);
struct qmsg *edge__mq_front(struct mqueue *q);
/* Move *b to the tail by swapping buffers (no copy); *b comes back empty. The caller
 * checked that the queue is not full. Every buffer involved has the same max. */
void edge__mq_push(struct mqueue *q, struct edge_buf *b, uint64_t due_ms, size_t n_entries);
void edge__mq_pop(struct mqueue *q);
void edge__mq_clear(struct mqueue *q);

#endif
