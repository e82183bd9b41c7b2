/* SPDX-License-Identifier: MIT */
/* The real-time engine (see rt.h): broadcast channels, delivered to every loop's joined
 * subscribers, never stored. */
#include "realtime/rt_int.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/log.h"
#include "repl/feed.h"
#include "store/store.h"

void edge__rt_deliver_broadcast(struct rt_loop *rl, struct rt_entry *e)
{
    const char *ch = e->arena + e->chan_off;
    for (struct rt_session *s = rl->sessions; s != NULL; s = s->next) {
        if (s->closed) continue;
        for (int i = 0; i < s->n_channels; i++) {
            if (strlen(s->channels[i]) != e->chan_len || memcmp(s->channels[i], ch, e->chan_len) != 0) continue;
            struct edge_buf *b = &s->out;
            if (s->sse) edge_buf_puts(b, "event: broadcast\ndata: ");
            edge__rt_frame_next(s);
            edge_buf_puts(b, "{\"type\":\"broadcast\",\"channel\":");
            edge_buf_json_str(b, ch, e->chan_len);
            edge_buf_puts(b, ",\"payload\":");
            edge_buf_append(b, e->arena + e->pay_off, e->pay_len);
            edge_buf_putc(b, '}');
            if (s->sse) edge_buf_puts(b, "\n\n");
            s->out_n++;
            atomic_fetch_add(&rl->rt->m.broadcast_deliveries, 1);
            break;
        }
    }
}

void edge_rt_broadcast(struct edge_rt *rt, const char *channel, const char *payload_json, size_t len)
{
    atomic_fetch_add(&rt->m.broadcasts_in, 1);
    struct rt_entry *e = edge_calloc(1, sizeof(*e));
    if (e == NULL) return;
    atomic_store(&e->refs, 1);
    e->type = ENT_BROADCAST;
    size_t cl = strlen(channel);
    e->arena = edge_malloc(cl + len + 1);
    if (e->arena == NULL) {
        edge_free(e);
        return;
    }
    memcpy(e->arena, channel, cl);
    memcpy(e->arena + cl, payload_json, len);
    e->arena[cl + len] = '\0';
    e->chan_off = 0;
    e->chan_len = (uint32_t)cl;
    e->pay_off = (uint32_t)cl;
    e->pay_len = (uint32_t)len;
    for (int i = 0; i < rt->host.n_loops; i++) {
        if (rt->loops[i].inited) edge__rt_loop_push(rt, &rt->loops[i], e);
    }
    edge__rt_entry_unref(e);
}

void edge_rt_broadcast_local(struct edge_rt *rt, int loop, const char *channel, const char *payload_json, size_t len)
{
    (void)loop;
    edge_rt_broadcast(rt, channel, payload_json, len);
}
