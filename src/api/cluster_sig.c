/* SPDX-License-Identifier: MIT */
/* The callee's side of signed requests between regions (X-Edge-Cluster-Sig, repl/proto.h):
 * session access reports, broadcast relays and the router's read index. The caller signs
 * method, path, query and body with its wall clock and a fresh nonce; the secret never
 * travels and there is no round trip.
 *
 * DESIGN: a signature is accepted once. The caller's ts must be within
 * EDGE_REPL_HTTP_SIG_WINDOW_MS of our estimate of its clock (ours plus the offset its peer
 * link measured, so a region whose clock is off still gets through), which bounds how
 * long a request held back on the path stays usable. Each accepted nonce is remembered
 * for CLUSTER_SIG_KEEP_MS after it arrived, in a ring of cluster.sig_replay_max entries in
 * arrival order with a chained hash index. Dropping an entry (aged, or the ring full)
 * raises its region's floor to the entry's ts, and any ts of that region at or below its
 * floor is refused: so every nonce accepted above the floor is still in the ring, and a
 * dropped one can never come back, whatever the clocks do. The bound costs a caller whose
 * request waited longer than the ring covers a refusal, never a replay. Floors are per
 * region because their clocks differ. Only requests whose MAC checked out are
 * remembered, so nobody without the secret can fill the ring. */
#include "api/node_int.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "repl/peer.h"
#include "repl/proto.h"

/* How long an accepted nonce is remembered after it arrived: past the window its
 * region has signed newer requests, and the floor its drop leaves refuses only older ones. */
#define CLUSTER_SIG_KEEP_MS (2 * EDGE_REPL_HTTP_SIG_WINDOW_MS)

void edge__api_cluster_sigs_init(struct edge_node *n)
{
    memset(&n->csigs, 0, sizeof(n->csigs));
    pthread_mutex_init(&n->csigs.mu, NULL);
    const struct edge_conf *conf = n->cfg.conf;
    /* edge_conf_load validated it; a configuration built otherwise gets the default */
    bool set = conf != NULL && conf->cluster_sig_replay_max >= 1 &&
               conf->cluster_sig_replay_max <= EDGE_CONF_SIG_REPLAY_MAX;
    n->csigs.max = set ? (uint32_t)conf->cluster_sig_replay_max : EDGE_CONF_SIG_REPLAY_MAX;
    uint32_t nb = 1;
    while (nb < n->csigs.max) nb <<= 1;
    n->csigs.bucket_mask = nb - 1;
}

void edge__api_cluster_sigs_close(struct edge_node *n)
{
    edge_free(n->csigs.ring);
    edge_free(n->csigs.bucket);
    n->csigs.ring = NULL;
    n->csigs.bucket = NULL;
    pthread_mutex_destroy(&n->csigs.mu);
}

static uint32_t bucket_of(const struct cluster_sigs *cs, const uint8_t nonce[16])
{
    uint32_t h;
    memcpy(&h, nonce, sizeof(h)); /* random bytes of a caller that knows the secret */
    return h & cs->bucket_mask;
}

/* Drop the oldest entry; its region's floor covers it from now on. cs->mu held, count > 0. */
static void drop_oldest(struct cluster_sigs *cs)
{
    int32_t i = (int32_t)cs->head;
    struct cluster_sig_seen *e = &cs->ring[i];
    int32_t *link = &cs->bucket[bucket_of(cs, e->nonce)];
    while (*link != -1 && *link != i) link = &cs->ring[*link].next;
    if (*link == i) *link = e->next;
    if (e->ts_ms > cs->floor_ms[e->region]) cs->floor_ms[e->region] = e->ts_ms;
    cs->head = (cs->head + 1) % cs->max;
    cs->count--;
}

/* Remember the nonce unless it is known or at or below its region's floor: NULL then,
 * else why not. cs->mu held. */
static const char *remember(struct cluster_sigs *cs, const struct edge_repl_http_sig *s, int region, uint64_t now)
{
    if (cs->ring == NULL) {
        cs->ring = edge_calloc(cs->max, sizeof(*cs->ring));
        cs->bucket = edge_malloc(((size_t)cs->bucket_mask + 1) * sizeof(*cs->bucket));
        if (cs->ring == NULL || cs->bucket == NULL) {
            edge_free(cs->ring);
            edge_free(cs->bucket);
            cs->ring = NULL;
            cs->bucket = NULL;
            return "out of memory";
        }
        memset(cs->bucket, 0xff, ((size_t)cs->bucket_mask + 1) * sizeof(*cs->bucket));
    }
    /* aged entries go first: their region has signed newer requests long since */
    while (cs->count > 0 && cs->ring[cs->head].seen_ms + CLUSTER_SIG_KEEP_MS < now) drop_oldest(cs);
    uint32_t b = bucket_of(cs, s->nonce);
    for (int32_t i = cs->bucket[b]; i != -1; i = cs->ring[i].next) {
        if (memcmp(cs->ring[i].nonce, s->nonce, 16) == 0) {
            cs->replayed++;
            return "replayed (this signature was used already)";
        }
    }
    if (s->ts_ms <= cs->floor_ms[region]) {
        /* used already, or so old that the replay cache no longer knows */
        cs->replayed++;
        return "replayed, or signed before the oldest signature the replay cache still knows (sign again)";
    }
    /* Room is made only for a signature that is let in: a refused one (a replay of a
     * captured request, say) must not push a live nonce out and raise its region's floor.
     * The drop may raise the floor above s's ts; s is in the ring then, so its nonce is
     * still caught, and its own drop later leaves the floor where it is. */
    if (cs->count == cs->max) {
        drop_oldest(cs);
        cs->evicted++;
    }
    int32_t i = (int32_t)((cs->head + cs->count) % cs->max);
    memcpy(cs->ring[i].nonce, s->nonce, 16);
    cs->ring[i].ts_ms = s->ts_ms;
    cs->ring[i].seen_ms = now;
    cs->ring[i].region = region;
    cs->ring[i].next = cs->bucket[b];
    cs->bucket[b] = i;
    cs->count++;
    return NULL;
}

/* The region's wall clock minus ours as its peer link measured it, 0 if unknown. */
static int64_t peer_offset_ms(struct edge_node *n, const char *region)
{
    struct edge_peer_status ps;
    if (!edge__api_peer_link_status(n, region, &ps) || !ps.clock_offset_known) return 0;
    return (int64_t)(ps.clock_offset_ms + (ps.clock_offset_ms < 0 ? -0.5 : 0.5));
}

static int region_index(const struct edge_conf *conf, const char *id)
{
    for (size_t i = 0; i < conf->n_regions && i < EDGE_API_MAX_REGIONS; i++) {
        if (strcmp(conf->regions[i].id, id) == 0) return (int)i;
    }
    return -1;
}

bool edge__api_auth_cluster_signed(struct edge_node *n, struct edge_http_req *req, const char **why)
{
    const struct edge_conf *conf = n->cfg.conf;
    const char *h = edge_http_header(req, "x-edge-cluster-sig");
    struct edge_repl_http_sig s;
    const char *bad = "no X-Edge-Cluster-Sig header (a request of another region of this cluster)";
    int region = -1;
    if (n->repl.cluster && conf != NULL && conf->cluster_secret != NULL && h != NULL) {
        if (edge_repl_http_sig_parse(h, &s) != EDGE_OK) {
            bad = "malformed X-Edge-Cluster-Sig header";
        } else if (strcmp(s.region, n->region) == 0 || (region = region_index(conf, s.region)) < 0) {
            bad = "the region is not another region of this cluster";
        } else {
            /* our estimate of the caller's clock now */
            int64_t expect = (int64_t)edge_wall_ms() + peer_offset_ms(n, s.region);
            if (s.ts_ms < expect - EDGE_REPL_HTTP_SIG_WINDOW_MS || s.ts_ms > expect + EDGE_REPL_HTTP_SIG_WINDOW_MS) {
                bad = "signed outside the clock window (30 s either way of the caller's clock as its peer link "
                      "measured it)";
            } else if (edge_repl_http_sig_verify(conf->cluster_secret, conf->cluster_name, &s, n->region,
                                                 edge__api_cluster_method(req->method), req->path, req->query, req->body.data,
                                                 req->body.len) != EDGE_OK) {
                bad = "wrong MAC (another secret, or the method, path, query or body was altered)";
            } else {
                bad = NULL;
            }
        }
    }
    pthread_mutex_lock(&n->csigs.mu);
    if (bad == NULL) bad = remember(&n->csigs, &s, region, edge_clock_mono_ms(edge_clock_system()));
    if (bad == NULL) n->csigs.accepted++; else n->csigs.refused++;
    pthread_mutex_unlock(&n->csigs.mu);
    sodium_memzero(&s, sizeof(s));
    *why = bad;
    return bad == NULL;
}

void edge__api_cluster_sigs_metrics(struct edge_node *n, struct edge_buf *b)
{
    uint64_t v[5];
    int max = (int)n->csigs.max; /* set at start, never changed */
    pthread_mutex_lock(&n->csigs.mu);
    v[0] = n->csigs.accepted;
    v[1] = n->csigs.refused;
    v[2] = n->csigs.replayed;
    v[3] = n->csigs.evicted;
    v[4] = n->csigs.count;
    pthread_mutex_unlock(&n->csigs.mu);
    edge_buf_printf(b,
                    "# HELP edgelite_cluster_sig_accepted_total Signed requests of other regions accepted "
                    "(X-Edge-Cluster-Sig).\n"
                    "# TYPE edgelite_cluster_sig_accepted_total counter\nedgelite_cluster_sig_accepted_total %llu\n"
                    "# HELP edgelite_cluster_sig_refused_total Requests to a route of other regions refused for "
                    "their signature (missing, malformed, outside the window, wrong MAC, replayed).\n"
                    "# TYPE edgelite_cluster_sig_refused_total counter\nedgelite_cluster_sig_refused_total %llu\n"
                    "# HELP edgelite_cluster_sig_replayed_total Signatures refused because they were used already.\n"
                    "# TYPE edgelite_cluster_sig_replayed_total counter\nedgelite_cluster_sig_replayed_total %llu\n"
                    "# HELP edgelite_cluster_sig_cache_evicted_total Nonces dropped from a full replay cache while "
                    "still inside the window (each raises the floor below which signatures are refused).\n"
                    "# TYPE edgelite_cluster_sig_cache_evicted_total counter\n"
                    "edgelite_cluster_sig_cache_evicted_total %llu\n"
                    "# HELP edgelite_cluster_sig_cache_entries Nonces remembered by the replay cache (at most %d).\n"
                    "# TYPE edgelite_cluster_sig_cache_entries gauge\nedgelite_cluster_sig_cache_entries %llu\n",
                    (unsigned long long)v[0], (unsigned long long)v[1], (unsigned long long)v[2],
                    (unsigned long long)v[3], max, (unsigned long long)v[4]);
}
