/* SPDX-License-Identifier: MIT */
/* Challenge-response for HTTP requests between regions (GET /v1/snapshot, a peer's
 * /v1/status): GET /v1/cluster/challenge hands out a single-use nonce with this node's
 * proof of the secret, and X-Edge-Cluster-Auth then carries the caller's MAC over it, the
 * method and the path (formats in repl/proto.h). The secret never travels.
 *
 * DESIGN: the nonces live in one small table for the whole node (a challenge may come on
 * one loop and its request on another), bounded in number (CLUSTER_NONCES_MAX; a new one
 * replaces the oldest, so a flood of challenges costs a caller a retry, never memory) and
 * in time (CLUSTER_NONCE_TTL_MS). A nonce is removed when a request names it, whether its
 * MAC is right or not: nothing can be tried twice against one nonce, and a recorded header
 * replayed later finds no nonce. */
#include "api/node_int.h"

#include <http_parser.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "repl/proto.h"

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void edge__api_cluster_nonces_init(struct edge_node *n)
{
    memset(&n->cnonces, 0, sizeof(n->cnonces));
    pthread_mutex_init(&n->cnonces.mu, NULL);
}

void edge__api_cluster_nonces_close(struct edge_node *n)
{
    sodium_memzero(n->cnonces.slot, sizeof(n->cnonces.slot));
    pthread_mutex_destroy(&n->cnonces.mu);
}

/* A fresh nonce in a free or expired slot, else in the oldest one's. */
static void nonce_issue(struct cluster_nonces *cn, uint8_t out[32])
{
    uint64_t now = now_ms();
    randombytes_buf(out, 32);
    pthread_mutex_lock(&cn->mu);
    size_t pick = 0;
    for (size_t i = 0; i < CLUSTER_NONCES_MAX; i++) {
        if (cn->slot[i].expires_ms <= now) {
            pick = i;
            break;
        }
        if (cn->slot[i].expires_ms < cn->slot[pick].expires_ms) pick = i;
    }
    if (cn->slot[pick].expires_ms > now) cn->evicted++;
    memcpy(cn->slot[pick].nonce, out, 32);
    cn->slot[pick].expires_ms = now + CLUSTER_NONCE_TTL_MS;
    cn->issued++;
    pthread_mutex_unlock(&cn->mu);
}

/* Remove the nonce if it is waiting and not expired: true then. */
static bool nonce_take(struct cluster_nonces *cn, const uint8_t nonce[32])
{
    uint64_t now = now_ms();
    bool found = false;
    pthread_mutex_lock(&cn->mu);
    for (size_t i = 0; i < CLUSTER_NONCES_MAX; i++) {
        if (cn->slot[i].expires_ms != 0 && sodium_memcmp(cn->slot[i].nonce, nonce, 32) == 0) {
            found = cn->slot[i].expires_ms > now;
            cn->slot[i].expires_ms = 0;
            sodium_memzero(cn->slot[i].nonce, 32);
            break;
        }
    }
    pthread_mutex_unlock(&cn->mu);
    return found;
}

void edge__api_cluster_challenge(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req)
{
    struct edge_node *n = l->node;
    const struct edge_conf *conf = n->cfg.conf;
    if (!n->repl.cluster || conf == NULL || conf->cluster_secret == NULL) {
        edge__api_respond_error(n, c, req, EP_STATUS, 404, "NOT_A_CLUSTER", "this node does not replicate");
        return;
    }
    uint8_t cnonce[32], nonce[32], proof[32];
    const char *q = req->query;
    if (q == NULL || strncmp(q, "cnonce=", 7) != 0 || edge_repl_unhex32(q + 7, strlen(q + 7), cnonce) != EDGE_OK) {
        edge__api_respond_error(n, c, req, EP_STATUS, 400, "BAD_REQUEST",
                                "expected ?cnonce= and 64 hex digits (the caller's fresh nonce)");
        return;
    }
    nonce_issue(&n->cnonces, nonce);
    if (edge_repl_http_proof(conf->cluster_secret, cnonce, nonce, conf->cluster_name, n->region, proof) != EDGE_OK) {
        edge__api_respond_error(n, c, req, EP_STATUS, 500, "INTERNAL", "cannot compute the proof");
        return;
    }
    char ns[65], pr[65], body[512];
    edge_repl_hex32(nonce, ns);
    edge_repl_hex32(proof, pr);
    int len = snprintf(body, sizeof(body), "{\"region\":\"%s\",\"nonce\":\"%s\",\"proof\":\"%s\",\"ttl_ms\":%d}",
                       n->region, ns, pr, CLUSTER_NONCE_TTL_MS);
    edge__api_respond(n, c, req, EP_STATUS, 200, "application/json", "Cache-Control: no-store\r\n", body,
                      (size_t)len);
}

const char *edge__api_cluster_method(int m)
{
    switch (m) {
    case HTTP_GET: return "GET";
    case HTTP_HEAD: return "HEAD";
    case HTTP_POST: return "POST";
    default: return "OTHER";
    }
}

bool edge__api_auth_cluster_request(struct edge_node *n, struct edge_http_req *req, const char **why)
{
    const struct edge_conf *conf = n->cfg.conf;
    const char *h = edge_http_header(req, "x-edge-cluster-auth");
    struct edge_repl_http_auth a;
    *why = "no X-Edge-Cluster-Auth header (GET /v1/cluster/challenge first)";
    if (!n->repl.cluster || conf == NULL || conf->cluster_secret == NULL || h == NULL) return false;
    bool ok = false;
    if (edge_repl_http_auth_parse(h, &a) != EDGE_OK) {
        *why = "malformed X-Edge-Cluster-Auth header";
    } else if (!nonce_take(&n->cnonces, a.nonce)) {
        *why = "unknown, used or expired nonce";
    } else if (strcmp(a.region, n->region) == 0 || edge_conf_region_find(conf, a.region) == NULL) {
        *why = "the region is not another region of this cluster";
    } else if (edge_repl_http_verify(conf->cluster_secret, &a, conf->cluster_name, edge__api_cluster_method(req->method),
                                     req->path) != EDGE_OK) {
        *why = "wrong MAC (another secret, or another method or path)";
    } else {
        ok = true;
    }
    pthread_mutex_lock(&n->cnonces.mu);
    if (ok) n->cnonces.accepted++; else n->cnonces.refused++;
    pthread_mutex_unlock(&n->cnonces.mu);
    sodium_memzero(&a, sizeof(a));
    return ok;
}

void edge__api_cluster_nonces_metrics(struct edge_node *n, struct edge_buf *b)
{
    uint64_t cn[4];
    pthread_mutex_lock(&n->cnonces.mu);
    cn[0] = n->cnonces.issued;
    cn[1] = n->cnonces.accepted;
    cn[2] = n->cnonces.refused;
    cn[3] = n->cnonces.evicted;
    pthread_mutex_unlock(&n->cnonces.mu);
    edge_buf_printf(b,
                    "# HELP edgelite_cluster_auth_challenges_total Nonces handed out by /v1/cluster/challenge.\n"
                    "# TYPE edgelite_cluster_auth_challenges_total counter\nedgelite_cluster_auth_challenges_total %llu\n"
                    "# TYPE edgelite_cluster_auth_accepted_total counter\nedgelite_cluster_auth_accepted_total %llu\n"
                    "# HELP edgelite_cluster_auth_refused_total X-Edge-Cluster-Auth headers refused (bad, replayed, "
                    "expired, wrong MAC).\n"
                    "# TYPE edgelite_cluster_auth_refused_total counter\nedgelite_cluster_auth_refused_total %llu\n"
                    "# HELP edgelite_cluster_auth_evicted_total Unused nonces replaced by newer ones (table full).\n"
                    "# TYPE edgelite_cluster_auth_evicted_total counter\nedgelite_cluster_auth_evicted_total %llu\n",
                    (unsigned long long)cn[0], (unsigned long long)cn[1], (unsigned long long)cn[2],
                    (unsigned long long)cn[3]);
}
