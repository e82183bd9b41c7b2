/* SPDX-License-Identifier: MIT */
/* The query router inside the node (docs/router.md): the inputs of the planner from this
 * node's state, POST /v1/route (explain), the statement statistics endpoints and their
 * lines on /metrics. The rules themselves are router/plan.c. */
#include "api/node_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "net/httpc_async.h"
#include "realtime/rt.h"
#include "repl/http_auth.h"
#include "repl/peer.h"

int edge__api_router_peers(struct edge_node *n, struct edge_router_peer *out, struct edge_vclock *vvs, int max,
                           uint64_t *primary_commit, bool *primary_known)
{
    struct edge_repl_state *st = &n->repl;
    int k = 0;
    *primary_commit = 0;
    *primary_known = false;
    pthread_rwlock_rdlock(&st->peers_lock);
    for (int i = 0; i < st->n_peers && k < max; i++) {
        struct edge_peer_status ps;
        edge_peer_status(st->peers[i], &ps);
        out[k].id = st->peer_region[i];
        out[k].up = ps.connected;
        out[k].rtt_ms = ps.rtt_ms;
        vvs[k] = ps.acked; /* taken over: the caller closes it */
        out[k].vv = &vvs[k];
        if (st->primary != NULL && strcmp(st->peer_region[i], st->primary) == 0 && ps.connected) {
            /* The primary's own entries as its link last reported them (HELLO_OK, every ACK). */
            *primary_commit = edge_vclock_get(&ps.acked, st->primary);
            *primary_known = true;
        }
        k++;
    }
    pthread_rwlock_unlock(&st->peers_lock);
    return k;
}

/* ---------------------------------------------------------------------------------- */
/* Planning a pipeline                                                                */
/* ---------------------------------------------------------------------------------- */

void edge__api_plan(struct edge_node *n, const struct edge__api_plan_req *pr, struct edge_router_plan *out)
{
    struct edge_router_peer peers[EDGE_ROUTER_MAX_REGIONS];
    struct edge_vclock vvs[EDGE_ROUTER_MAX_REGIONS];
    struct edge_vclock local;
    edge_vclock_init(&local);
    int np = 0;
    struct edge_router_input in = {0};
    in.self = n->region;
    in.cluster = n->repl.cluster;
    in.primary = n->repl.primary;
    in.kind = pr->kind;
    in.ddl = pr->ddl;
    in.in_txn = pr->in_txn;
    in.nondeterministic = pr->nondeterministic;
    in.unknown_tables = pr->unknown;
    in.consistency = pr->consistency;
    in.waited = pr->waited;
    in.bookmark_wait_ms = n->bookmark_wait_ms;
    in.can_forward = pr->can_forward;
    in.forwarded = pr->forwarded;
    char origin[EDGE_VCLOCK_REGION_MAX + 1];
    uint64_t seq = 0;
    if (pr->bookmark != NULL && strchr(pr->bookmark, ',') != NULL) {
        /* A vector bookmark (REGION:SEQ,...; the front door's read-your-writes sends one):
         * planned by its first origin this region lacks, as hrana/wait.c waits for them one
         * after the other; a region the read goes to keeps the whole bookmark. */
        struct edge_vclock bv;
        edge_vclock_init(&bv);
        if (edge_rt_bookmark_parse(pr->bookmark, strlen(pr->bookmark), &bv) == EDGE_OK && bv.n_entries > 0) {
            size_t k = 0;
            while (k + 1 < bv.n_entries && edge_repl_state_covers(&n->repl, bv.entries[k].region, bv.entries[k].n)) k++;
            snprintf(origin, sizeof(origin), "%s", bv.entries[k].region);
            in.bm_origin = origin;
            in.bm_seq = bv.entries[k].n;
        }
        edge_vclock_close(&bv);
    } else if (pr->bookmark != NULL && edge__api_bookmark_parse(pr->bookmark, origin, &seq)) {
        in.bm_origin = origin;
        in.bm_seq = seq;
    }
    if (n->repl.cluster) {
        edge_repl_state_vv(&n->repl, &local);
        in.local_vv = &local;
        np = edge__api_router_peers(n, peers, vvs, EDGE_ROUTER_MAX_REGIONS, &in.primary_commit, &in.primary_known);
        in.peers = peers;
        in.n_peers = np;
    }
    in.read_index = pr->read_index;
    if (pr->ri_done) {
        /* the read index replaces what the link last heard */
        in.primary_known = pr->ri_known;
        in.primary_commit = pr->ri_seq;
    }
    if (n->cfg.conf != NULL) {
        in.fallback = (const char *const *)n->cfg.conf->router.fallback;
        in.n_fallback = n->cfg.conf->router.n_fallback;
    }
    edge_router_plan(&in, out);
    for (int i = 0; i < np; i++) edge_vclock_close(&vvs[i]);
    edge_vclock_close(&local);
}

/* ---------------------------------------------------------------------------------- */
/* Read index: the primary's commit point at the time of a strong read                */
/* ---------------------------------------------------------------------------------- */

/* GET /v1/router/point: this region's own last entry, {"region","seq"}. */
void edge__api_point_handle(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req)
{
    struct edge_node *n = l->node;
    struct edge_vclock vv;
    edge_vclock_init(&vv);
    edge_repl_state_vv(&n->repl, &vv);
    uint64_t seq = edge_vclock_get(&vv, n->region);
    edge_vclock_close(&vv);
    struct edge_buf b;
    edge_buf_init(&b, 4096);
    edge_buf_puts(&b, "{\"region\":");
    edge_buf_json_cstr(&b, n->region);
    edge_buf_printf(&b, ",\"seq\":%llu}", (unsigned long long)seq);
    edge__api_respond(n, c, req, EP_STATUS, 200, "application/json", NULL, b.data, b.len);
    edge_buf_free(&b);
}

struct read_index {
    struct loop *l;
    struct edge_http_conn *conn;
    struct edge_http_req *req;
    int version;
    enum hrana_access access;
};

static void read_index_done(void *ud, int rv, struct edge_httpc_resp *resp)
{
    struct read_index *ri = ud;
    struct loop *l = ri->l;
    if (!edge_http_conn_is_closed(ri->conn) && !l->stopping) {
        uint64_t seq = 0;
        bool known = false;
        if (rv == EDGE_OK && resp->status == 200) {
            json_t *doc = json_loadb(resp->body.data ? resp->body.data : "", resp->body.len, 0, NULL);
            json_t *v = json_object_get(doc, "seq");
            if (json_is_integer(v) && json_integer_value(v) >= 0) {
                seq = (uint64_t)json_integer_value(v);
                known = true;
            }
            json_decref(doc);
        }
        atomic_fetch_add(&l->node->m.read_index, 1);
        l->ri_req = ri->req;
        l->ri_seq = seq;
        l->ri_known = known;
        edge__api_pipeline_handle(l, ri->conn, ri->req, ri->version, ri->access);
        l->ri_req = NULL;
    }
    edge_http_conn_unref(ri->conn);
    edge_free(ri);
}

void edge__api_read_index(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req, int version,
                          enum hrana_access access)
{
    struct edge_node *n = l->node;
    struct edge_httpca *p = edge__api_region_pool(l, n->repl.primary);
    struct read_index *ri = p != NULL ? edge_calloc(1, sizeof(*ri)) : NULL;
    /* signed, no round trip: the answer decides where this read goes (repl/proto.h) */
    char hdr[600] = "";
    if (n->cfg.conf != NULL && n->cfg.conf->cluster_secret != NULL && n->repl.primary != NULL) {
        (void)edge_repl_http_sig_header(n->cfg.conf, n->region, n->repl.primary, "GET", "/v1/router/point", NULL, 0,
                                        hdr, sizeof(hdr));
    }
    if (ri != NULL) {
        ri->l = l;
        ri->conn = c;
        ri->req = req;
        ri->version = version;
        ri->access = access;
        edge_http_conn_ref(c);
        if (edge_httpca_request(p, "GET", "/v1/router/point", hdr, NULL, 0, n->cfg.strong_timeout_ms, 4096,
                                read_index_done, ri) == EDGE_OK) {
            return;
        }
        edge_http_conn_unref(c);
        edge_free(ri);
    }
    /* cannot ask: handled as if the primary's point were unknown (sent to the primary) */
    l->ri_req = req;
    l->ri_known = false;
    l->ri_seq = 0;
    edge__api_pipeline_handle(l, c, req, version, access);
    l->ri_req = NULL;
}

/* ---------------------------------------------------------------------------------- */
/* POST /v1/route                                                                     */
/* ---------------------------------------------------------------------------------- */

static void put_names(struct edge_buf *b, char (*names)[EDGE_ROUTER_NAME_MAX], int n)
{
    edge_buf_putc(b, '[');
    for (int i = 0; i < n; i++) {
        if (i > 0) edge_buf_putc(b, ',');
        edge_buf_json_cstr(b, names[i]);
    }
    edge_buf_putc(b, ']');
}

/* {"sql","args"?,"consistency"?,"bookmark"?,"client_region"?}: the plan of that statement sent
 * here as a one-statement pipeline that closes its stream, without executing it. */
void edge__api_route_explain(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req)
{
    struct edge_node *n = l->node;
    json_error_t jerr;
    json_t *body = json_loadb(req->body.data ? req->body.data : "", req->body.len, JSON_ALLOW_NUL, &jerr);
    const char *err = NULL;
    json_t *sql = json_object_get(body, "sql");
    json_t *cons = json_object_get(body, "consistency");
    json_t *bm = json_object_get(body, "bookmark");
    json_t *cr = json_object_get(body, "client_region");
    enum edge_consistency level = EDGE_CONS_EVENTUAL;
    char origin[EDGE_VCLOCK_REGION_MAX + 1];
    uint64_t seq = 0;
    if (!json_is_object(body)) {
        err = "the body must be a JSON object {\"sql\", \"args\"?, \"consistency\"?, \"bookmark\"?, \"client_region\"?}";
    } else if (!json_is_string(sql)) {
        err = "\"sql\" must be a string";
    } else if (cons != NULL && !json_is_null(cons) &&
               (!json_is_string(cons) || edge_consistency_parse(json_string_value(cons), &level) != EDGE_OK)) {
        err = "\"consistency\" must be one of strong, eventual, async";
    } else if (bm != NULL && !json_is_null(bm) &&
               (!json_is_string(bm) || !edge__api_bookmark_parse(json_string_value(bm), origin, &seq))) {
        err = "\"bookmark\" must be REGION:SEQ";
    } else if (cr != NULL && !json_is_null(cr) && !json_is_string(cr)) {
        err = "\"client_region\" must be a string";
    } else {
        static const char *const keys[] = {"sql", "args", "named_args", "consistency", "bookmark", "client_region"};
        const char *k;
        json_t *v;
        json_object_foreach(body, k, v) {
            bool ok = false;
            for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) ok |= strcmp(k, keys[i]) == 0;
            if (!ok) {
                err = "unknown key (allowed: sql, args, named_args, consistency, bookmark, client_region)";
                break;
            }
        }
    }
    if (err != NULL) {
        json_decref(body);
        edge__api_respond_error(n, c, req, EP_OTHER, 400, "BAD_REQUEST", err);
        return;
    }
    struct edge_router_class cls;
    memset(&cls, 0, sizeof(cls));
    edge_router_classify(l->rconn, json_string_value(sql), json_string_length(sql), &cls);
    struct edge__api_plan_req pr = {0};
    pr.kind = cls.txctl ? EDGE_ROUTER_TXN : (cls.writes || cls.unknown || cls.ddl) ? EDGE_ROUTER_WRITE : EDGE_ROUTER_READ;
    pr.ddl = cls.ddl;
    pr.nondeterministic = cls.nondeterministic;
    pr.unknown = cls.unknown || cls.overflow;
    const char *hdr = cons != NULL && json_is_string(cons) ? json_string_value(cons) : NULL;
    if (pr.kind == EDGE_ROUTER_READ) {
        /* a read is strong only when asked to be (X-Edge-Consistency: strong) */
        pr.consistency = hdr != NULL && strcmp(hdr, "strong") == 0 ? EDGE_ROUTER_STRONG : EDGE_ROUTER_EVENTUAL;
    } else {
        const char *names[EDGE_ROUTER_MAX_TABLES];
        for (int i = 0; i < cls.n_write; i++) names[i] = cls.write[i];
        pr.consistency = edge_repl_consistency(&n->repl, hdr, names, pr.unknown ? -1 : cls.n_write);
    }
    pr.bookmark = bm != NULL && json_is_string(bm) ? json_string_value(bm) : NULL;
    pr.waited = false;
    pr.can_forward = true;
    pr.forwarded = false;
    pr.read_index = true;
    struct edge_router_plan plan;
    edge__api_plan(n, &pr, &plan);
    struct edge_buf b;
    edge_buf_init(&b, 1 << 20);
    edge_buf_puts(&b, "{\"target\":");
    edge_buf_json_cstr(&b, plan.target);
    edge_buf_puts(&b, ",\"action\":");
    edge_buf_json_cstr(&b, edge_router_action_name(plan.action));
    edge_buf_puts(&b, ",\"reason\":");
    edge_buf_json_cstr(&b, plan.reason);
    if (plan.code != NULL) {
        edge_buf_puts(&b, ",\"code\":");
        edge_buf_json_cstr(&b, plan.code);
    }
    edge_buf_puts(&b, ",\"fallbacks\":[");
    for (int i = 0; i < plan.n_fallbacks; i++) {
        if (i > 0) edge_buf_putc(&b, ',');
        edge_buf_json_cstr(&b, plan.fallbacks[i]);
    }
    /* What execute would do now: answered from the cache, filled (or counted), or not cached. */
    const char *cache = "bypass";
    if (plan.cacheable && n->cache == NULL) {
        plan.cacheable = false;
        plan.cache_why = "cache-off";
    } else if (plan.cacheable) {
        json_t *stmt = json_pack("{s:O}", "sql", sql);
        if (json_object_get(body, "args") != NULL) json_object_set(stmt, "args", json_object_get(body, "args"));
        if (json_object_get(body, "named_args") != NULL) {
            json_object_set(stmt, "named_args", json_object_get(body, "named_args"));
        }
        cache = "miss";
        for (int v = 2; v <= 3; v++) {
            struct edge_buf key;
            edge_buf_init(&key, 1u << 20);
            if (stmt != NULL && edge__api_cache_key(stmt, v, &key) == EDGE_OK &&
                edge_router_cache_has(n->cache, key.data, key.len)) {
                cache = "hit";
            }
            edge_buf_free(&key);
        }
        json_decref(stmt);
    }
    edge_buf_printf(&b, "],\"cache\":\"%s\"", cache);
    if (!plan.cacheable && plan.cache_why != NULL) {
        edge_buf_puts(&b, ",\"cache_reason\":");
        edge_buf_json_cstr(&b, plan.cache_why);
    }
    edge_buf_puts(&b, ",\"tables\":{\"read\":");
    put_names(&b, cls.read, cls.n_read);
    edge_buf_puts(&b, ",\"write\":");
    put_names(&b, cls.write, cls.n_write);
    edge_buf_printf(&b, "},\"kind\":\"%s\",\"consistency\":\"%s\"",
                    pr.kind == EDGE_ROUTER_READ ? "read" : pr.kind == EDGE_ROUTER_WRITE ? "write" : "transaction",
                    edge_router_cons_name(pr.consistency));
    if (cls.nondeterministic) {
        edge_buf_puts(&b, ",\"nondeterministic\":");
        edge_buf_json_cstr(&b, cls.first_nondet);
    }
    edge_buf_puts(&b, ",\"region\":");
    edge_buf_json_cstr(&b, n->region);
    edge_buf_puts(&b, ",\"client_region\":");
    if (cr != NULL && json_is_string(cr)) {
        edge_buf_json_cstr(&b, json_string_value(cr));
    } else {
        edge_buf_puts(&b, "null");
    }
    edge_buf_putc(&b, '}');
    json_decref(body);
    edge__api_respond(n, c, req, EP_OTHER, 200, "application/json", NULL, b.data, b.len);
    edge_buf_free(&b);
}

/* ---------------------------------------------------------------------------------- */
/* Statement statistics                                                               */
/* ---------------------------------------------------------------------------------- */

void edge__api_stats_stmt(void *ud, const char *sql, size_t len, uint64_t ns, uint64_t rows, bool error)
{
    struct edge_node *n = ud;
    edge_router_stats_record(n->stats, sql, len, n->region, ns, rows, error, false);
}

/* The value of key in a raw query string into out (bounded); false when absent. */
static bool query_str(const char *q, const char *key, char *out, size_t outlen)
{
    size_t klen = strlen(key);
    for (const char *p = q; p != NULL && *p != '\0'; p = strchr(p, '&') ? strchr(p, '&') + 1 : NULL) {
        if (strncmp(p, key, klen) != 0 || p[klen] != '=') continue;
        const char *v = p + klen + 1;
        size_t vl = strcspn(v, "&");
        if (vl >= outlen) vl = outlen - 1;
        memcpy(out, v, vl);
        out[vl] = '\0';
        return true;
    }
    return false;
}

/* GET /v1/stats/statements[?sort=total_time|calls|errors|rows|mean_time|p99|cache_hits&limit=N] */
void edge__api_stats_handle(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req)
{
    struct edge_node *n = l->node;
    char sort[32] = "total_time", lim[16] = "20";
    query_str(req->query, "sort", sort, sizeof(sort));
    query_str(req->query, "limit", lim, sizeof(lim));
    char *end = NULL;
    long limit = strtol(lim, &end, 10);
    if (end == lim || *end != '\0' || limit < 1 || limit > 100000) {
        edge__api_respond_error(n, c, req, EP_STATUS, 400, "BAD_QUERY", "limit must be 1..100000");
        return;
    }
    if (n->stats == NULL) {
        edge__api_respond_error(n, c, req, EP_STATUS, 503, "INTERNAL", "statement statistics are off (out of memory)");
        return;
    }
    struct edge_buf b;
    edge_buf_init(&b, 64u << 20);
    int rv = edge_router_stats_json(n->stats, sort, (int)limit, &b);
    if (rv == EDGE_EINVAL) {
        edge__api_respond_error(n, c, req, EP_STATUS, 400, "BAD_QUERY",
                                "sort must be one of total_time, calls, errors, rows, mean_time, p99, cache_hits");
    } else if (rv != EDGE_OK) {
        edge__api_respond_error(n, c, req, EP_STATUS, 500, "INTERNAL", edge_strerror(rv));
    } else {
        edge__api_respond(n, c, req, EP_STATUS, 200, "application/json", NULL, b.data, b.len);
    }
    edge_buf_free(&b);
}

void edge__api_stats_reset(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req)
{
    struct edge_node *n = l->node;
    if (n->stats != NULL) edge_router_stats_reset(n->stats);
    static const char ok[] = "{\"reset\":true}";
    edge__api_respond(n, c, req, EP_STATUS, 200, "application/json", NULL, ok, sizeof(ok) - 1);
}

void edge__api_stats_metrics(struct edge_node *n, struct edge_buf *b)
{
    if (n->cache != NULL) {
        struct edge_router_cache_stats cs;
        edge_router_cache_stats(n->cache, &cs);
        double lookups = (double)(cs.hits + cs.misses);
        edge_buf_printf(b,
                        "# HELP edgelite_router_cache_hits_total Reads answered by the hot-read cache.\n"
                        "# TYPE edgelite_router_cache_hits_total counter\nedgelite_router_cache_hits_total %llu\n"
                        "# TYPE edgelite_router_cache_misses_total counter\nedgelite_router_cache_misses_total %llu\n"
                        "# HELP edgelite_router_cache_hit_ratio Hits over lookups since start.\n"
                        "# TYPE edgelite_router_cache_hit_ratio gauge\nedgelite_router_cache_hit_ratio %.6f\n"
                        "# TYPE edgelite_router_cache_fills_total counter\nedgelite_router_cache_fills_total %llu\n"
                        "# HELP edgelite_router_cache_dropped_fills_total Fills dropped: a table they read changed "
                        "while they ran, or too large.\n"
                        "# TYPE edgelite_router_cache_dropped_fills_total counter\n"
                        "edgelite_router_cache_dropped_fills_total %llu\n"
                        "# TYPE edgelite_router_cache_evictions_total counter\n"
                        "edgelite_router_cache_evictions_total %llu\n"
                        "# HELP edgelite_router_cache_invalidated_total Entries dropped because a table they read "
                        "changed.\n"
                        "# TYPE edgelite_router_cache_invalidated_total counter\n"
                        "edgelite_router_cache_invalidated_total %llu\n"
                        "# TYPE edgelite_router_cache_entries gauge\nedgelite_router_cache_entries %llu\n"
                        "# TYPE edgelite_router_cache_bytes gauge\nedgelite_router_cache_bytes %llu\n",
                        (unsigned long long)cs.hits, (unsigned long long)cs.misses,
                        lookups > 0 ? (double)cs.hits / lookups : 0.0, (unsigned long long)cs.fills,
                        (unsigned long long)cs.dropped_fills, (unsigned long long)cs.evictions,
                        (unsigned long long)cs.stale, (unsigned long long)cs.entries, (unsigned long long)cs.bytes);
    }
    if (n->stats == NULL) return;
    int top = n->cfg.conf != NULL ? n->cfg.conf->router.stats_metrics_top : 10;
    edge_router_stats_prometheus(n->stats, "edgelite", top, b);
}
