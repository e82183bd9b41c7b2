/* SPDX-License-Identifier: MIT */
/* The routing rules of a node (docs/router.md), as one pure function of what the node
 * knows at the time of the request. */
#include <stdio.h>
#include <string.h>

#include "router/router.h"

const char *edge_router_action_name(enum edge_router_action a)
{
    switch (a) {
    case EDGE_ROUTE_WAIT: return "wait";
    case EDGE_ROUTE_FORWARD: return "forward";
    case EDGE_ROUTE_REFUSE: return "refuse";
    case EDGE_ROUTE_LOCAL: break;
    }
    return "local";
}

const char *edge_router_cons_name(int c)
{
    return c == EDGE_ROUTER_STRONG ? "strong" : c == EDGE_ROUTER_ASYNC ? "async" : "eventual";
}

static void set_target(struct edge_router_plan *p, const char *id)
{
    snprintf(p->target, sizeof(p->target), "%s", id ? id : "");
}

static void local(struct edge_router_plan *p, const struct edge_router_input *in, const char *reason)
{
    p->action = EDGE_ROUTE_LOCAL;
    set_target(p, in->self);
    p->reason = reason;
}

static void refuse(struct edge_router_plan *p, const struct edge_router_input *in, const char *code,
                   const char *reason)
{
    p->action = EDGE_ROUTE_REFUSE;
    set_target(p, in->self);
    p->code = code;
    p->reason = reason;
}

static bool peer_covers(const struct edge_router_peer *pr, const char *origin, uint64_t seq)
{
    /* By its VV as last reported, the origin's too: a bookmark may name an entry its
     * origin has not written yet (a client's guess), and the origin would only wait. */
    return pr->vv != NULL && edge_vclock_get(pr->vv, origin) >= seq;
}

static double rtt_of(const struct edge_router_peer *pr)
{
    return pr->rtt_ms > 0 ? pr->rtt_ms : 1e9; /* unmeasured: last */
}

/* The other candidates after target: router.fallback order first, then the rest of the
 * live peers by RTT; only those that pass `ok` (may be NULL). */
static void fill_fallbacks(struct edge_router_plan *p, const struct edge_router_input *in,
                           bool (*ok)(const struct edge_router_peer *, const struct edge_router_input *))
{
    bool used[EDGE_ROUTER_MAX_REGIONS] = {false};
    int n = in->n_peers < EDGE_ROUTER_MAX_REGIONS ? in->n_peers : EDGE_ROUTER_MAX_REGIONS;
    p->n_fallbacks = 0;
    for (size_t f = 0; f < in->n_fallback; f++) {
        for (int i = 0; i < n; i++) {
            const struct edge_router_peer *pr = &in->peers[i];
            if (used[i] || strcmp(pr->id, in->fallback[f]) != 0) continue;
            used[i] = true;
            if (!pr->up || strcmp(pr->id, p->target) == 0 || (ok && !ok(pr, in))) continue;
            snprintf(p->fallbacks[p->n_fallbacks++], sizeof(p->fallbacks[0]), "%s", pr->id);
        }
    }
    for (;;) {
        int best = -1;
        for (int i = 0; i < n; i++) {
            const struct edge_router_peer *pr = &in->peers[i];
            if (used[i] || !pr->up || strcmp(pr->id, p->target) == 0 || (ok && !ok(pr, in))) continue;
            if (best < 0 || rtt_of(pr) < rtt_of(&in->peers[best])) best = i;
        }
        if (best < 0) break;
        used[best] = true;
        snprintf(p->fallbacks[p->n_fallbacks++], sizeof(p->fallbacks[0]), "%s", in->peers[best].id);
    }
}

static bool covers_bookmark(const struct edge_router_peer *pr, const struct edge_router_input *in)
{
    return peer_covers(pr, in->bm_origin, in->bm_seq);
}

/* The live peer nearest by RTT that covers the bookmark, or -1. */
static int nearest_covering(const struct edge_router_input *in)
{
    int best = -1;
    for (int i = 0; i < in->n_peers; i++) {
        const struct edge_router_peer *pr = &in->peers[i];
        if (!pr->up || !covers_bookmark(pr, in)) continue;
        if (in->self != NULL && strcmp(pr->id, in->self) == 0) continue;
        if (best < 0 || rtt_of(pr) < rtt_of(&in->peers[best])) best = i;
    }
    return best;
}

static void plan_write(const struct edge_router_input *in, struct edge_router_plan *p)
{
    bool strong = in->consistency == EDGE_ROUTER_STRONG;
    bool is_primary = in->primary != NULL && in->self != NULL && strcmp(in->primary, in->self) == 0;
    if (!strong && !in->ddl) {
        local(p, in, in->kind == EDGE_ROUTER_TXN ? "transaction-local" : "write-local");
        return;
    }
    /* Schema changes go through the primary too: one order of schema changes everywhere. */
    if (is_primary) {
        local(p, in, in->ddl ? "ddl-primary-local" : "strong-write-local");
        return;
    }
    if (in->forwarded) {
        refuse(p, in, "PRIMARY_UNREACHABLE", "forwarded-to-non-primary");
    } else if (!in->can_forward) {
        refuse(p, in, "STRONG_NEEDS_PRIMARY", in->kind == EDGE_ROUTER_TXN ? "strong-in-stream" : "strong-in-stream");
    } else {
        p->action = EDGE_ROUTE_FORWARD;
        set_target(p, in->primary);
        p->reason = in->ddl ? "ddl-primary" : "strong-write-primary";
    }
}

static void plan_read(const struct edge_router_input *in, struct edge_router_plan *p)
{
    bool is_primary = in->primary != NULL && in->self != NULL && strcmp(in->primary, in->self) == 0;
    if (in->bm_origin != NULL) {
        if (in->local_vv != NULL && edge_vclock_get(in->local_vv, in->bm_origin) >= in->bm_seq) {
            local(p, in, "bookmark-covered");
            return;
        }
        if (strcmp(in->bm_origin, in->self ? in->self : "") == 0) {
            /* this region's own entry that it does not have: a bookmark from the future */
            refuse(p, in, "BOOKMARK_INVALID", "bookmark-ahead-of-origin");
            return;
        }
        if (!in->waited && in->bookmark_wait_ms > 0) {
            p->action = EDGE_ROUTE_WAIT;
            set_target(p, in->self);
            p->reason = "bookmark-wait";
            /* where it would go after the wait, as known now */
            int best = in->can_forward && !in->forwarded ? nearest_covering(in) : -1;
            if (best >= 0) snprintf(p->fallbacks[p->n_fallbacks++], sizeof(p->fallbacks[0]), "%s", in->peers[best].id);
            return;
        }
        int best = nearest_covering(in);
        if (!in->can_forward || in->forwarded || best < 0) {
            refuse(p, in, "BOOKMARK_TIMEOUT", best < 0 ? "bookmark-no-covering-region" : "bookmark-not-forwardable");
            return;
        }
        p->action = EDGE_ROUTE_FORWARD;
        set_target(p, in->peers[best].id);
        p->reason = "bookmark-forward";
        fill_fallbacks(p, in, covers_bookmark);
        return;
    }
    if (in->consistency == EDGE_ROUTER_STRONG) {
        if (is_primary) {
            local(p, in, "strong-read-primary-local");
        } else if (in->read_index && in->can_forward && !in->forwarded) {
            /* served here if this region covers the point the primary gives, else by the primary */
            local(p, in, "strong-read-index");
            snprintf(p->fallbacks[p->n_fallbacks++], sizeof(p->fallbacks[0]), "%s", in->primary);
        } else if (in->primary_known && in->local_vv != NULL &&
                   edge_vclock_get(in->local_vv, in->primary) >= in->primary_commit) {
            local(p, in, "strong-read-covered");
        } else if (in->forwarded) {
            local(p, in, "strong-read-forwarded");
        } else if (!in->can_forward) {
            refuse(p, in, "STRONG_NEEDS_PRIMARY", "strong-read-in-stream");
        } else {
            p->action = EDGE_ROUTE_FORWARD;
            set_target(p, in->primary);
            p->reason = "strong-read-primary";
        }
        return;
    }
    local(p, in, "read-local");
}

void edge_router_plan(const struct edge_router_input *in, struct edge_router_plan *out)
{
    memset(out, 0, sizeof(*out));
    out->cache_why = NULL;
    if (!in->cluster) {
        local(out, in, in->kind == EDGE_ROUTER_READ ? "read-local" : "single-node");
    } else if (in->kind == EDGE_ROUTER_READ && !in->in_txn) {
        plan_read(in, out);
    } else {
        plan_write(in, out);
    }
    if (in->kind != EDGE_ROUTER_READ) {
        out->cache_why = "write";
    } else if (in->in_txn) {
        out->cache_why = "transaction";
    } else if (in->nondeterministic) {
        out->cache_why = "nondeterministic";
    } else if (in->unknown_tables) {
        out->cache_why = "unclassified";
    } else if (out->action != EDGE_ROUTE_LOCAL) {
        out->cache_why = "not-local";
    } else if (in->consistency == EDGE_ROUTER_STRONG) {
        out->cache_why = "strong"; /* strong reads never come from the cache */
    }
    out->cacheable = out->cache_why == NULL;
}
