/* SPDX-License-Identifier: MIT */
/* The real-time engine (see rt.h): subscriptions and their counts, life cycle, status. */
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

/* ---------------------------------------------------------------------------------- */
/* Table counts (status)                                                              */
/* ---------------------------------------------------------------------------------- */

void edge__rt_table_count(struct edge_rt *rt, const char *name, int d)
{
    pthread_mutex_lock(&rt->mu);
    size_t i = 0;
    for (; i < rt->n_tables; i++) {
        if (strcmp(rt->tables[i].name, name) == 0) break;
    }
    if (i == rt->n_tables && d > 0) {
        struct table_count *g = edge_realloc(rt->tables, (rt->n_tables + 1) * sizeof(*g));
        char *nm = edge_strdup(name);
        if (g != NULL) rt->tables = g;
        if (g != NULL && nm != NULL) {
            rt->tables[rt->n_tables++] = (struct table_count){nm, 0};
        } else {
            edge_free(nm);
            i = SIZE_MAX;
        }
    }
    if (i < rt->n_tables) rt->tables[i].n += d;
    pthread_mutex_unlock(&rt->mu);
}

int edge_rt_tables_json(struct edge_rt *rt, struct edge_buf *out)
{
    int rv = edge_buf_putc(out, '{');
    pthread_mutex_lock(&rt->mu);
    bool first = true;
    for (size_t i = 0; i < rt->n_tables && rv == EDGE_OK; i++) {
        if (rt->tables[i].n <= 0) continue;
        if (!first) rv = edge_buf_putc(out, ',');
        first = false;
        if (rv == EDGE_OK) rv = edge_buf_json_cstr(out, rt->tables[i].name);
        if (rv == EDGE_OK) rv = edge_buf_printf(out, ":%lld", (long long)rt->tables[i].n);
    }
    pthread_mutex_unlock(&rt->mu);
    if (rv == EDGE_OK) rv = edge_buf_putc(out, '}');
    return rv;
}

int edge_rt_position(struct edge_rt *rt, struct edge_buf *out)
{
    pthread_mutex_lock(&rt->mu);
    int rv = edge_rt_bookmark_format(&rt->pos, out);
    pthread_mutex_unlock(&rt->mu);
    return rv;
}

/* ---------------------------------------------------------------------------------- */
/* Subscriptions                                                                      */
/* ---------------------------------------------------------------------------------- */

void edge__rt_sub_free(struct rt_sub *sub)
{
    for (int i = 0; i < sub->n_tables; i++) edge_free(sub->tables[i]);
    edge_free(sub->tables);
    for (int i = 0; i < sub->n_where; i++) {
        edge_free(sub->where[i].col);
        edge_free(sub->where[i].val);
    }
    edge_free(sub->where);
    for (int i = 0; i < sub->n_keys; i++) edge_free(sub->keys[i]);
    edge_free(sub->keys);
    edge_vclock_close(&sub->pos);
    edge_free(sub);
}

void edge__rt_loop_activate(struct rt_loop *rl)
{
    struct edge_rt *rt = rl->rt;
    if (rl->n_change_subs++ > 0) return;
    pthread_mutex_lock(&rt->mu);
    if (!rl->active) {
        rl->active = true;
        rt->n_active++;
        /* From here on every entry after this position comes to this loop. */
        edge_vclock_merge(&rl->lvv, &rt->pos);
    }
    pthread_mutex_unlock(&rt->mu);
}

static void loop_deactivate(struct rt_loop *rl)
{
    struct edge_rt *rt = rl->rt;
    if (--rl->n_change_subs > 0) return;
    pthread_mutex_lock(&rt->mu);
    if (rl->active) {
        rl->active = false;
        rt->n_active--;
    }
    pthread_mutex_unlock(&rt->mu);
}

/* Remove sub from its session (and the counts). */
void edge__rt_sub_remove(struct rt_sub *sub)
{
    struct rt_session *s = sub->s;
    for (struct rt_sub **pp = &s->subs; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == sub) {
            *pp = sub->next;
            break;
        }
    }
    s->n_subs--;
    if (sub->state == SUB_CATCHUP) edge__rt_catchup_count(s->rl, -1);
    loop_deactivate(s->rl);
    for (int i = 0; i < sub->n_tables; i++) edge__rt_table_count(s->rt, sub->tables[i], -1);
    atomic_fetch_sub(&s->rt->m.subscriptions, 1);
    edge__rt_sub_free(sub);
}

/* ---------------------------------------------------------------------------------- */
/* Life cycle                                                                         */
/* ---------------------------------------------------------------------------------- */

int edge_rt_create(struct edge_repl_state *st, const char *db_path, const struct edge_rt_host *host,
                   const struct edge_rt_limits *lim, struct edge_rt **out)
{
    struct edge_rt *rt = edge_calloc(1, sizeof(*rt));
    if (rt == NULL) return EDGE_ENOMEM;
    rt->st = st;
    rt->db_path = edge_strdup(db_path);
    rt->host = *host;
    rt->lim = *lim;
    if (rt->lim.max_connections <= 0) rt->lim.max_connections = 10000;
    if (rt->lim.max_subscriptions <= 0) rt->lim.max_subscriptions = 64;
    if (rt->lim.queue_bytes == 0) rt->lim.queue_bytes = 1024 * 1024;
    if (rt->lim.backlog_batch <= 0) rt->lim.backlog_batch = 512;
    pthread_mutex_init(&rt->mu, NULL);
    edge_vclock_init(&rt->pos);
    rt->loops = edge_calloc((size_t)host->n_loops, sizeof(*rt->loops));
    if (rt->loops == NULL || rt->db_path == NULL) {
        edge_rt_destroy(rt);
        return EDGE_ENOMEM;
    }
    for (int i = 0; i < host->n_loops; i++) {
        rt->loops[i].rt = rt;
        rt->loops[i].idx = i;
        pthread_mutex_init(&rt->loops[i].mu, NULL);
        edge_vclock_init(&rt->loops[i].lvv);
    }
    if (st != NULL) {
        /* Entries before the listener are history: the position starts at the VV. */
        edge_repl_state_vv(st, &rt->pos);
        struct edge_feed_listener l = {edge__rt_on_feed_entry, edge__rt_on_feed_reset, rt};
        int rv = edge_feed_listen(st, &l);
        if (rv != EDGE_OK) {
            edge_rt_destroy(rt);
            return rv;
        }
    }
    *out = rt;
    return EDGE_OK;
}

int edge_rt_loop_init(struct edge_rt *rt, int loop, uv_loop_t *uvl)
{
    struct rt_loop *rl = &rt->loops[loop];
    rl->uvl = uvl;
    uv_idle_init(uvl, &rl->idle);
    rl->idle.data = rl;
    rl->inited = true;
    return EDGE_OK;
}

void edge_rt_loop_stop(struct edge_rt *rt, int loop)
{
    struct rt_loop *rl = &rt->loops[loop];
    if (!rl->inited) return;
    uv_close((uv_handle_t *)&rl->idle, NULL);
    edge_store_close(rl->rconn);
    rl->rconn = NULL;
}

void edge_rt_destroy(struct edge_rt *rt)
{
    if (rt == NULL) return;
    if (rt->st != NULL) edge_feed_unlisten(rt->st, rt);
    for (int i = 0; rt->loops != NULL && i < rt->host.n_loops; i++) {
        struct rt_loop *rl = &rt->loops[i];
        for (size_t k = 0; k < rl->n_pend; k++) edge__rt_entry_unref(rl->pend[k]);
        edge_free(rl->pend);
        edge_vclock_close(&rl->lvv);
        edge_store_close(rl->rconn);
        pthread_mutex_destroy(&rl->mu);
    }
    edge_free(rt->loops);
    for (size_t i = 0; i < rt->n_tables; i++) edge_free(rt->tables[i].name);
    edge_free(rt->tables);
    edge_vclock_close(&rt->pos);
    pthread_mutex_destroy(&rt->mu);
    edge_free(rt->db_path);
    edge_free(rt);
}

void edge_rt_stats(struct edge_rt *rt, struct edge_rt_stats *out)
{
    out->connections = (uint64_t)atomic_load(&rt->conns);
    out->subscriptions = atomic_load(&rt->m.subscriptions);
    out->entries_in = atomic_load(&rt->m.entries_in);
    out->deliveries = atomic_load(&rt->m.deliveries);
    out->frames = atomic_load(&rt->m.frames);
    out->bytes_out = atomic_load(&rt->m.bytes_out);
    out->closed_slow = atomic_load(&rt->m.closed_slow);
    out->closed_resync = atomic_load(&rt->m.closed_resync);
    out->refused_connections = atomic_load(&rt->m.refused_connections);
    out->refused_subscriptions = atomic_load(&rt->m.refused_subscriptions);
    out->bad_messages = atomic_load(&rt->m.bad_messages);
    out->auth_failed = atomic_load(&rt->m.auth_failed);
    out->broadcasts_in = atomic_load(&rt->m.broadcasts_in);
    out->broadcast_deliveries = atomic_load(&rt->m.broadcast_deliveries);
}
