/* SPDX-License-Identifier: MIT */
/* The route table: every endpoint with its method, path, auth policy and handler.
 * on_request is a lookup in it; the first matching entry wins. Token policies are
 * enforced here, before the handler runs; the others name who enforces them. */
#include "api/node_int.h"

#include <http_parser.h>
#include <stdio.h>
#include <string.h>

enum route_method {
    M_GET,     /* GET or HEAD */
    M_POST,
    M_ANY,     /* the handler checks the method */
    M_UPGRADE, /* a WebSocket upgrade request */
};

enum route_match { MATCH_EXACT, MATCH_SUFFIX, MATCH_PREFIX, MATCH_CONTAINS };

/* Who may call a route. With no key configured (no --auth-jwt-key) the token policies
 * let everyone in; the others are the same with or without keys. */
enum route_auth {
    AUTH_NONE,    /* public: only /health and /version */
    AUTH_READ,    /* a valid JWT, read-only or read-write; a pipeline refuses writes per statement */
    AUTH_WRITE,   /* a valid read-write JWT; a read-only one is 403 AUTH_READ_ONLY */
    AUTH_METRICS, /* as AUTH_READ, or public with auth.public_metrics: true */
    AUTH_STATUS,  /* as AUTH_READ, or another region: X-Edge-Cluster-Auth (a peer checks it is not behind,
                   * repl/behind.c) or X-Edge-Cluster-Sig (the router's read index) */
    AUTH_CLUSTER, /* another region, checked by the handler (X-Edge-Cluster-Auth for /v1/snapshot,
                   * X-Edge-Cluster-Sig for the rest); no JWT opens it */
    AUTH_PEER,    /* the cluster's HMAC handshake on the upgraded link (repl/session.c); no JWT opens it */
    AUTH_HELLO,   /* a valid JWT in the Hrana hello message (hrana/ws.c), with the same read-only rule */
};

/* What a handler gets besides the request. */
struct route_call {
    enum hrana_access access; /* for AUTH_READ and AUTH_WRITE routes */
    int arg;                  /* the route's argument (the Hrana version of a pipeline, or PIPE_V3_PROTOBUF) */
    const char *rest;         /* the path after a MATCH_PREFIX prefix, else "" */
};

typedef void (*route_fn)(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req,
                         const struct route_call *rc);

struct route {
    enum route_method method;
    enum route_match match;
    const char *path;
    enum route_auth auth;
    enum endpoint ep; /* where its metrics go */
    route_fn handler;
    int arg;
};

static void r_peer(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req, const struct route_call *rc)
{
    (void)rc;
    edge__api_peer_upgrade(l, c, req);
}

static void r_ws(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req, const struct route_call *rc)
{
    (void)rc;
    edge__api_ws_upgrade(l, c, req);
}

/* A read with X-Edge-Bookmark waits until this region has applied that write. */
static void r_realtime(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req,
                       const struct route_call *rc)
{
    (void)rc;
    edge__api_realtime_upgrade(l, c, req);
}

static void r_rt_sse(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req, const struct route_call *rc)
{
    (void)rc;
    edge__api_realtime_sse(l, c, req);
}

static void r_rt_status(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req,
                        const struct route_call *rc)
{
    (void)rc;
    edge__api_realtime_status(l, c, req);
}

static void r_events(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req, const struct route_call *rc)
{
    (void)rc;
    edge__api_events_handle(l, c, req);
}

static void r_broadcast(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req,
                        const struct route_call *rc)
{
    edge__api_broadcast_handle(l, c, req, rc->rest, rc->arg == 1);
}

static void r_pipeline(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req,
                       const struct route_call *rc)
{
    if (!edge__api_wait_bookmark(l, c, req, rc->arg, rc->access)) {
        edge__api_pipeline_handle(l, c, req, rc->arg, rc->access);
    }
}

static void r_cursor(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req, const struct route_call *rc)
{
    edge__api_cursor_handle(l, c, req, rc->access);
}

static void r_pb_cursor(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req,
                        const struct route_call *rc)
{
    edge__api_pb_cursor_handle(l, c, req, rc->access);
}

static void r_health(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req, const struct route_call *rc)
{
    (void)rc;
    edge__api_respond(l->node, c, req, EP_HEALTH, 200, "text/plain", NULL, "", 0);
}

static void r_version(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req, const struct route_call *rc)
{
    (void)rc;
    char v[64];
    int len = snprintf(v, sizeof(v), "edgelite %s\n", EDGE_VERSION);
    edge__api_respond(l->node, c, req, EP_HEALTH, 200, "text/plain", NULL, v, (size_t)len);
}

static void r_hello(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req, const struct route_call *rc)
{
    (void)rc;
    edge__api_respond(l->node, c, req, EP_HEALTH, 200, "text/plain", NULL, "Hello, this is edgelite\n", 24);
}

static void r_protobuf(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req,
                       const struct route_call *rc)
{
    (void)rc;
    edge__api_respond_error(l->node, c, req, EP_OTHER, 404, "NOT_FOUND",
                            "over protobuf this node serves GET /v3-protobuf, POST /v3-protobuf/pipeline and "
                            "POST /v3-protobuf/cursor");
}

static void r_metrics(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req, const struct route_call *rc)
{
    (void)rc;
    edge__api_metrics_handle(l, c, req);
}

static void r_status(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req, const struct route_call *rc)
{
    (void)rc;
    edge__api_status_handle(l, c, req);
}

static void r_replicate(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req,
                        const struct route_call *rc)
{
    edge__api_replicate_handle(l, c, req, rc->access);
}

static void r_challenge(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req,
                        const struct route_call *rc)
{
    (void)rc;
    edge__api_cluster_challenge(l, c, req);
}

static void r_snapshot(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req,
                       const struct route_call *rc)
{
    (void)rc;
    edge__api_snapshot_handle(l, c, req);
}

static void r_conflicts(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req,
                        const struct route_call *rc)
{
    (void)rc;
    edge__api_conflicts_handle(l, c, req);
}

static void r_apply_errors(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req,
                           const struct route_call *rc)
{
    (void)rc;
    edge__api_apply_errors_handle(l, c, req);
}

static void r_apply_retry(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req,
                          const struct route_call *rc)
{
    (void)rc;
    edge__api_apply_errors_retry(l, c, req);
}

static void r_crdt(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req, const struct route_call *rc)
{
    edge__api_crdt_handle(l, c, req, rc->rest);
}

static void r_sessions(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req,
                       const struct route_call *rc)
{
    edge__api_sessions_handle(l, c, req, rc->arg ? rc->rest : NULL);
}

static void r_sessions_stats(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req,
                             const struct route_call *rc)
{
    (void)rc;
    edge__api_sessions_stats_handle(l, c, req);
}

static void r_sessions_access(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req,
                              const struct route_call *rc)
{
    (void)rc;
    edge__api_sessions_access_handle(l, c, req);
}

static void r_route(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req, const struct route_call *rc)
{
    (void)rc;
    edge__api_route_explain(l, c, req);
}

static void r_point(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req, const struct route_call *rc)
{
    (void)rc;
    edge__api_point_handle(l, c, req);
}

static void r_stats(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req, const struct route_call *rc)
{
    (void)rc;
    edge__api_stats_handle(l, c, req);
}

static void r_stats_reset(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req,
                          const struct route_call *rc)
{
    (void)rc;
    edge__api_stats_reset(l, c, req);
}

static void r_root(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req, const struct route_call *rc)
{
    (void)rc;
    const char msg[] = "{\"service\":\"edgelite\",\"protocols\":[\"hrana2\",\"hrana3\"]}";
    edge__api_respond(l->node, c, req, EP_OTHER, 200, "application/json", NULL, msg, sizeof(msg) - 1);
}

/* tests/client/routes.json lists these rows too (unit/test_api_routes checks that the two
 * agree), so the client test that walks every route with no, a read-only and a read-write
 * token cannot miss one. */
/* The GET version probes (/v2, /v3, /v3-protobuf) are public like /version: they answer an
 * empty 200 and nothing else, and @libsql/hrana-client sends its /v3-protobuf probe without a
 * token (a 401 there would silently drop it back to JSON v2). */
static const struct route routes[] = {
    {M_UPGRADE, MATCH_EXACT, "/v1/peer", AUTH_PEER, EP_OTHER, r_peer, 0},
    /* The real-time feed: a token in the Authorization header or in the first message. */
    {M_UPGRADE, MATCH_EXACT, "/v1/realtime", AUTH_HELLO, EP_WS, r_realtime, 0},
    {M_UPGRADE, MATCH_PREFIX, "", AUTH_HELLO, EP_WS, r_ws, 0},
    {M_POST, MATCH_SUFFIX, "/v2/pipeline", AUTH_READ, EP_PIPELINE, r_pipeline, 2},
    {M_POST, MATCH_SUFFIX, "/v3/pipeline", AUTH_READ, EP_PIPELINE, r_pipeline, 3},
    {M_POST, MATCH_SUFFIX, "/v3/cursor", AUTH_READ, EP_PIPELINE, r_cursor, 3},
    {M_GET, MATCH_EXACT, "/health", AUTH_NONE, EP_HEALTH, r_health, 0},
    {M_GET, MATCH_EXACT, "/version", AUTH_NONE, EP_HEALTH, r_version, 0},
    {M_GET, MATCH_SUFFIX, "/v2", AUTH_NONE, EP_HEALTH, r_hello, 0},
    {M_GET, MATCH_SUFFIX, "/v3", AUTH_NONE, EP_HEALTH, r_hello, 0},
    {M_POST, MATCH_SUFFIX, "/v3-protobuf/pipeline", AUTH_READ, EP_PIPELINE, r_pipeline, PIPE_V3_PROTOBUF},
    {M_POST, MATCH_SUFFIX, "/v3-protobuf/cursor", AUTH_READ, EP_PIPELINE, r_pb_cursor, 3},
    {M_GET, MATCH_SUFFIX, "/v3-protobuf", AUTH_NONE, EP_HEALTH, r_hello, 0},
    {M_ANY, MATCH_CONTAINS, "/v3-protobuf", AUTH_READ, EP_OTHER, r_protobuf, 0},
    {M_GET, MATCH_EXACT, "/metrics", AUTH_METRICS, EP_METRICS, r_metrics, 0},
    {M_GET, MATCH_EXACT, "/v1/status", AUTH_STATUS, EP_STATUS, r_status, 0},
    {M_POST, MATCH_EXACT, "/v1/replicate", AUTH_WRITE, EP_REPLICATE, r_replicate, 0},
    /* Between regions: a nonce to answer (it opens nothing by itself), then the snapshot
     * with X-Edge-Cluster-Auth (api/cluster_auth.c); the secret never travels. */
    {M_GET, MATCH_EXACT, "/v1/cluster/challenge", AUTH_CLUSTER, EP_STATUS, r_challenge, 0},
    {M_GET, MATCH_EXACT, "/v1/snapshot", AUTH_CLUSTER, EP_STATUS, r_snapshot, 0},
    {M_GET, MATCH_EXACT, "/v1/conflicts", AUTH_READ, EP_STATUS, r_conflicts, 0},
    {M_GET, MATCH_EXACT, "/v1/apply-errors", AUTH_READ, EP_STATUS, r_apply_errors, 0},
    {M_POST, MATCH_EXACT, "/v1/apply-errors/retry", AUTH_WRITE, EP_STATUS, r_apply_retry, 0},
    /* CRDTs: reading (GET) needs any token, operations and merges (every other method) a
     * read-write one. */
    {M_GET, MATCH_EXACT, "/v1/crdt", AUTH_READ, EP_CRDT, r_crdt, 0},
    {M_ANY, MATCH_EXACT, "/v1/crdt", AUTH_WRITE, EP_CRDT, r_crdt, 0},
    {M_GET, MATCH_PREFIX, "/v1/crdt/", AUTH_READ, EP_CRDT, r_crdt, 0},
    {M_ANY, MATCH_PREFIX, "/v1/crdt/", AUTH_WRITE, EP_CRDT, r_crdt, 0},
    /* Sessions: reading one (GET) or the stats needs any token, everything else a
     * read-write one; the access reports between regions carry the cluster secret. */
    {M_GET, MATCH_EXACT, "/v1/sessions/stats", AUTH_READ, EP_SESSIONS, r_sessions_stats, 0},
    {M_GET, MATCH_EXACT, "/v1/sessions", AUTH_READ, EP_SESSIONS, r_sessions, 0},
    {M_ANY, MATCH_EXACT, "/v1/sessions", AUTH_WRITE, EP_SESSIONS, r_sessions, 0},
    {M_GET, MATCH_PREFIX, "/v1/sessions/", AUTH_READ, EP_SESSIONS, r_sessions, 1},
    {M_ANY, MATCH_PREFIX, "/v1/sessions/", AUTH_WRITE, EP_SESSIONS, r_sessions, 1},
    {M_POST, MATCH_EXACT, "/v1/_sessions/access", AUTH_CLUSTER, EP_SESSIONS, r_sessions_access, 0},
    /* The query router: explain a plan (nothing runs), statement statistics. */
    {M_POST, MATCH_EXACT, "/v1/route", AUTH_READ, EP_OTHER, r_route, 0},
    {M_GET, MATCH_EXACT, "/v1/router/point", AUTH_STATUS, EP_STATUS, r_point, 0},
    {M_GET, MATCH_EXACT, "/v1/stats/statements", AUTH_READ, EP_STATUS, r_stats, 0},
    {M_POST, MATCH_EXACT, "/v1/stats/reset", AUTH_WRITE, EP_STATUS, r_stats_reset, 0},
    {M_GET, MATCH_EXACT, "/v1/realtime/sse", AUTH_READ, EP_OTHER, r_rt_sse, 0},
    {M_GET, MATCH_EXACT, "/v1/realtime/status", AUTH_READ, EP_STATUS, r_rt_status, 0},
    {M_POST, MATCH_EXACT, "/v1/events", AUTH_WRITE, EP_OTHER, r_events, 0},
    {M_POST, MATCH_PREFIX, "/v1/broadcast/", AUTH_WRITE, EP_OTHER, r_broadcast, 0},
    /* another region relays a broadcast published there (at most once) */
    {M_POST, MATCH_PREFIX, "/v1/broadcast-relay/", AUTH_CLUSTER, EP_OTHER, r_broadcast, 1},
    {M_GET, MATCH_EXACT, "/", AUTH_READ, EP_OTHER, r_root, 0},
};

static const char *const method_names[] = {"GET", "POST", "ANY", "UPGRADE"};
static const char *const match_names[] = {"exact", "suffix", "prefix", "contains"};
static const char *const auth_names[] = {"none", "read", "write", "metrics", "status", "cluster", "peer", "hello"};

bool edge__api_route_describe(size_t i, struct edge__api_route_info *out)
{
    if (i >= sizeof(routes) / sizeof(routes[0])) return false;
    out->method = method_names[routes[i].method];
    out->match = match_names[routes[i].match];
    out->path = routes[i].path;
    out->auth = auth_names[routes[i].auth];
    return true;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static bool path_matches(const struct route *r, const char *p, const char **rest)
{
    *rest = "";
    switch (r->match) {
    case MATCH_EXACT: return strcmp(p, r->path) == 0;
    case MATCH_SUFFIX: return ends_with(p, r->path);
    case MATCH_CONTAINS: return strstr(p, r->path) != NULL;
    case MATCH_PREFIX:
        if (strncmp(p, r->path, strlen(r->path)) != 0) return false;
        *rest = p + strlen(r->path);
        return true;
    }
    return false;
}

static bool method_matches(const struct route *r, const struct edge_http_req *req)
{
    if (req->upgrade) return r->method == M_UPGRADE;
    switch (r->method) {
    case M_GET: return req->method == HTTP_GET || req->method == HTTP_HEAD;
    case M_POST: return req->method == HTTP_POST;
    case M_ANY: return true;
    case M_UPGRADE: return false;
    }
    return false;
}

/* The token policies: check the bearer token; false when answered. */
static bool authorize(struct edge_node *n, struct edge_http_conn *c, struct edge_http_req *req,
                      const struct route *r, enum hrana_access *access)
{
    *access = HRANA_ACCESS_RW;
    if (r->auth == AUTH_METRICS && n->cfg.conf != NULL && n->cfg.conf->public_metrics) return true;
    if ((r->auth == AUTH_STATUS || r->auth == AUTH_CLUSTER) && edge_http_header(req, "x-edge-cluster-secret") != NULL) {
        /* what older nodes sent: the secret itself, readable on the path; refused so that
         * such a peer says why in its log rather than being let in by a token policy */
        edge__api_respond_error(n, c, req, r->ep, 401, "AUTH_CLUSTER",
                                "X-Edge-Cluster-Secret is not accepted: the secret never travels (regions sign "
                                "their requests, X-Edge-Cluster-Sig or X-Edge-Cluster-Auth)");
        return false;
    }
    if (r->auth == AUTH_STATUS &&
        (edge_http_header(req, "x-edge-cluster-auth") != NULL || edge_http_header(req, "x-edge-cluster-sig") != NULL)) {
        const char *why = NULL;
        bool ok = edge_http_header(req, "x-edge-cluster-sig") != NULL ? edge__api_auth_cluster_signed(n, req, &why)
                                                                      : edge__api_auth_cluster_request(n, req, &why);
        if (ok) return true;
        edge__api_respond_error(n, c, req, r->ep, 401, "AUTH_CLUSTER", why);
        return false;
    }
    if (r->auth != AUTH_READ && r->auth != AUTH_WRITE && r->auth != AUTH_METRICS && r->auth != AUTH_STATUS) {
        return true;
    }
    const char *code = NULL;
    if (!edge__api_auth_http(n, req, access, &code)) {
        edge__api_respond_error(n, c, req, r->ep, 401, code, "Authentication failed");
        return false;
    }
    if (r->auth == AUTH_WRITE && *access == HRANA_ACCESS_RO) {
        edge__api_respond_error(n, c, req, r->ep, 403, "AUTH_READ_ONLY",
                                "writes are not allowed with a read-only token");
        return false;
    }
    return true;
}

void edge__api_on_request(void *ud, struct edge_http_conn *c, struct edge_http_req *req)
{
    struct loop *l = ud;
    struct edge_node *n = l->node;
    const char *p = req->path;
    uint64_t start_ns = req->start_ns; /* req is gone once answered */
    if (atomic_load(&n->seeding) && edge__api_seeding_answer(c, req)) {
        edge__api_observe(n, EP_OTHER, start_ns, true);
        return;
    }
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        const struct route *r = &routes[i];
        struct route_call rc = {HRANA_ACCESS_RW, r->arg, ""};
        if (!method_matches(r, req) || !path_matches(r, p, &rc.rest)) continue;
        if (r->ep != EP_SESSIONS) edge__api_sessions_flush(l);
        if (authorize(n, c, req, r, &rc.access)) r->handler(l, c, req, &rc);
        return;
    }
    bool known = ends_with(p, "/pipeline") || strcmp(p, "/health") == 0 || strcmp(p, "/metrics") == 0 ||
                 strcmp(p, "/v1/status") == 0;
    if (known) {
        edge__api_respond_error(n, c, req, EP_OTHER, 405, "METHOD_NOT_ALLOWED", "method not allowed for this path");
    } else {
        edge__api_respond_error(n, c, req, EP_OTHER, 404, "NOT_FOUND", "no such endpoint");
    }
}
