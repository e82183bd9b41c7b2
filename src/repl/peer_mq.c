/* SPDX-License-Identifier: MIT */
/* The peer link's message queues (see peer_mq.h). */
#include "repl/peer_mq.h"

#include <string.h>

#include "core/alloc.h"
#include "edgelite/errors.h"
#include "repl/proto.h"

int edge__mq_init(struct mqueue *q, size_t cap)
{
    q->slots = edge_calloc(cap, sizeof(*q->slots));
    if (q->slots == NULL) {
        return EDGE_ENOMEM;
    }
    q->cap = cap;
    for (size_t i = 0; i < cap; i++) {
        edge_buf_init(&q->slots[i].b, EDGE_REPL_WIRE_MAX);
    }
    return EDGE_OK;
}

void edge__mq_free(struct mqueue *q)
{
    for (size_t i = 0; q->slots != NULL && i < q->cap; i++) {
        edge_buf_free(&q->slots[i].b);
    }
    edge_free(q->slots);
    memset(q, 0, sizeof(*q));
}

bool edge__mq_full(const struct mqueue *q)
{
    return q->len == q->cap;
}

struct qmsg *edge__mq_front(struct mqueue *q)
{
    return q->len > 0 ? &q->slots[q->head] : NULL;
}

/* Move *b to the tail by swapping buffers (no copy); *b comes back empty. The caller
 * checked that the queue is not full. Every buffer involved has the same max. */
void edge__mq_push(struct mqueue *q, struct edge_buf *b, uint64_t due_ms, size_t n_entries)
{
    struct qmsg *m = &q->slots[(q->head + q->len) % q->cap];
    struct edge_buf t = m->b;
    m->b = *b;
    *b = t;
    edge_buf_reset(b);
    m->due_ms = due_ms;
    m->n_entries = n_entries;
    m->trace_seq = 0;
    q->len++;
    q->bytes += m->b.len;
}

void edge__mq_pop(struct mqueue *q)
{
    struct qmsg *m = &q->slots[q->head];
    q->bytes -= m->b.len;
    /* A big batch would otherwise pin its memory in the slot for the link's lifetime. */
    if (m->b.cap > EDGE_MQ_SLOT_KEEP) {
        edge_buf_free(&m->b);
    } else {
        edge_buf_reset(&m->b);
    }
    q->head = (q->head + 1) % q->cap;
    q->len--;
}

void edge__mq_clear(struct mqueue *q)
{
    for (size_t i = 0; i < q->cap && q->len > 0; i++) {
        edge__mq_pop(q);
    }
    q->head = 0;
}
