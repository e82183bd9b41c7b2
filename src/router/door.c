/* SPDX-License-Identifier: MIT */
/* The front door (door.h): one loop thread, an HTTP server for the clients and a pool of
 * keep-alive connections per region (net/httpc_async.h), plus a one-connection pool per
 * region for the probes so that a probe never queues behind client requests.
 *
 * DESIGN: the door keeps no data, only what it measured (health, RTT, in-flight
 * requests) and, for read-your-writes, the latest bookmark per client token; it can be
 * restarted or run several times over. It does not classify with SQLite (it has no
 * schema): a request counts as a read only when every statement it runs starts with
 * SELECT (by the tokenizer of normalize.c) and it holds no stream; anything else is
 * treated as a write, which is never sent twice unless the first connection was refused
 * (so nothing of it reached a region). */
#include "router/door.h"

#include <http_parser.h>
#include <sodium.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "core/alloc.h"
#include "core/log.h"
#include "net/http.h"
#include "net/httpc.h"
#include "net/httpc_async.h"
#include "net/tls.h"
#include "router/router.h"
#include "router/door_int.h"

struct preq {
    struct door *d;
    struct edge_http_conn *conn;
    struct edge_http_req *req;
    char *body;          /* what is sent on (the client's, or with the baton's prefix taken off) */
    size_t body_len;
    char headers[8192]; /* token (<= 3000), consistency, a vector bookmark (<= 2752), type */
    char norm[EDGE_ROUTER_NORM_MAX];
    char ryw_key[64];
    bool read, pinned, cursor, pb;
    int target;
    uint32_t tried;      /* bit per region index */
    int tries;
    uint64_t start_ns, deadline_ms, first_fail_ns;
};

static uint64_t now_ms(void)
{
    return uv_hrtime() / 1000000u;
}

/* ---------------------------------------------------------------------------------- */
/* Probes                                                                             */
/* ---------------------------------------------------------------------------------- */

static void probe_done(void *ud, int rv, struct edge_httpc_resp *resp)
{
    struct region *r = ud;
    r->probing = false;
    if (rv == EDGE_OK && resp->status == 200) {
        double ms = (double)(uv_hrtime() - r->probe_start_ns) / 1e6;
        r->rtt_ms = r->ever_probed && r->up ? 0.7 * r->rtt_ms + 0.3 * ms : ms;
        r->up = true;
        r->ever_probed = true;
    } else if (rv != EDGE_ECLOSED) {
        if (r->up) EDGE_LOG(EDGE_LOG_WARN, EDGE_MOD_API, "router: region %s is down (%s)", r->id,
                            rv == EDGE_OK ? "health check failed" : edge_strerror(rv));
        r->up = false;
        r->probes_failed++;
    }
}

static void probe_all(uv_timer_t *t)
{
    struct door *d = t->data;
    uint64_t timeout = (uint64_t)d->rc->probe_interval_ms * 2;
    edge__door_ws_tick(d);
    /* router.first_probe_delay_ms holds the probes only: the sessions' check above runs from
     * the start (a region a request found failing is down before any probe) */
    if (uv_now(&d->loop) < d->probes_from_ms) return;
    for (int i = 0; i < d->n; i++) {
        struct region *r = &d->regions[i];
        if (r->probing || r->probe_pool == NULL) continue;
        r->probing = true;
        r->probe_start_ns = uv_hrtime();
        if (edge_httpca_request(r->probe_pool, "GET", "/health", NULL, NULL, 0, timeout, 4096, probe_done, r) !=
            EDGE_OK) {
            r->probing = false;
        }
    }
}

/* ---------------------------------------------------------------------------------- */
/* Choosing a region                                                                  */
/* ---------------------------------------------------------------------------------- */

static double eff_rtt(const struct door *d, const struct region *r)
{
    const char *cr = d->cfg->client_region;
    if (cr != NULL && d->cfg->wan == NULL && strcmp(cr, r->id) == 0) return 0.0;
    return r->wan_ms + (r->ever_probed ? r->rtt_ms : 1000.0);
}

/* Among the regions not tried (up ones first): those within rtt_slack_ms of the nearest,
 * then power of two choices on in-flight requests per unit of weight. -1 if none. */
int edge__door_choose(struct door *d, uint32_t tried)
{
    int cand[64];
    for (int pass = 0; pass < 2; pass++) {
        double best = 1e18;
        for (int i = 0; i < d->n; i++) {
            struct region *r = &d->regions[i];
            if ((tried >> i) & 1u || (pass == 0 && !r->up)) continue;
            double e = eff_rtt(d, r);
            if (e < best) best = e;
        }
        int k = 0;
        for (int i = 0; i < d->n && k < 64; i++) {
            struct region *r = &d->regions[i];
            if ((tried >> i) & 1u || (pass == 0 && !r->up)) continue;
            if (eff_rtt(d, r) <= best + (double)d->rc->rtt_slack_ms) cand[k++] = i;
        }
        if (k == 0) continue;
        if (k == 1) return cand[0];
        int a = cand[rand() % k], b = cand[rand() % k];
        for (int guard = 0; b == a && guard < 8; guard++) b = cand[rand() % k];
        const struct region *ra = &d->regions[a], *rb = &d->regions[b];
        double la = (ra->in_flight + 1) / ra->weight, lb = (rb->in_flight + 1) / rb->weight;
        if (la != lb) return la < lb ? a : b;
        /* equal load: by weight, so that weights still count on an idle door */
        double pa = ra->weight / (ra->weight + rb->weight);
        return (double)rand() / RAND_MAX < pa ? a : b;
    }
    return -1;
}

/* After a failure: router.fallback order first, then as choose() does. */
int edge__door_next_region(struct door *d, uint32_t tried)
{
    for (size_t f = 0; f < d->rc->n_fallback; f++) {
        for (int i = 0; i < d->n; i++) {
            if (!((tried >> i) & 1u) && d->regions[i].up && strcmp(d->regions[i].id, d->rc->fallback[f]) == 0) {
                return i;
            }
        }
    }
    return edge__door_choose(d, tried);
}

/* ---------------------------------------------------------------------------------- */
/* Read-your-writes                                                                   */
/* ---------------------------------------------------------------------------------- */

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* The client's version vector as a bookmark ("a:5" or "a:5,c:9", as the node reads it)
 * into out; NULL when it has none. */
const char *edge__door_ryw_get(struct door *d, const char *key, char *out, size_t cap)
{
    uint64_t h = hash_str(key);
    struct ryw *e = &d->ryw[h % RYW_SLOTS];
    if (e->hash != h || strcmp(e->key, key) != 0) return NULL;
    size_t off = 0;
    out[0] = '\0';
    for (int i = 0; i < d->n && i < DOOR_MAX_REGIONS; i++) {
        if (e->seq[i] == 0) continue;
        int w = snprintf(out + off, cap - off, "%s%s:%llu", off ? "," : "", d->regions[i].id,
                         (unsigned long long)e->seq[i]);
        if (w < 0 || (size_t)w >= cap - off) return NULL; /* cannot happen with the caller's size */
        off += (size_t)w;
    }
    return off > 0 ? out : NULL;
}

/* The key of a token: shared by HTTP requests (the header) and WebSocket sessions (the
 * hello's jwt, as "Bearer <jwt>"), so a client's writes over one are read over the other. */
void edge__door_ryw_token_key(const char *authorization, char *out, size_t cap)
{
    snprintf(out, cap, "t:%016llx", (unsigned long long)hash_str(authorization));
}

/* Merge an answer's bookmark (REGION:SEQ, or a vector of them) into the client's vector;
 * a newer client taking the slot starts from nothing. Origins not in the config: ignored. */
void edge__door_ryw_put(struct door *d, const char *key, const char *bm)
{
    uint64_t h = hash_str(key);
    struct ryw *e = &d->ryw[h % RYW_SLOTS];
    if (e->hash != h || strcmp(e->key, key) != 0) {
        memset(e, 0, sizeof(*e));
        e->hash = h;
        snprintf(e->key, sizeof(e->key), "%s", key);
    }
    for (const char *p = bm; p != NULL && *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        const char *colon = memrchr(p, ':', len);
        if (colon != NULL) {
            char *end = NULL;
            unsigned long long seq = strtoull(colon + 1, &end, 10);
            size_t il = (size_t)(colon - p);
            for (int i = 0; i < d->n && i < DOOR_MAX_REGIONS && end == p + len; i++) {
                if (strlen(d->regions[i].id) == il && memcmp(d->regions[i].id, p, il) == 0 && seq > e->seq[i]) {
                    e->seq[i] = seq;
                }
            }
        }
        p = comma ? comma + 1 : NULL;
    }
}

/* ---------------------------------------------------------------------------------- */
/* Proxying                                                                           */
/* ---------------------------------------------------------------------------------- */

static void preq_free(struct preq *p)
{
    edge_http_conn_unref(p->conn);
    edge_free(p->body);
    edge_free(p);
}

static void send_to(struct preq *p);

static void answer_error(struct preq *p, int status, const char *code, const char *msg)
{
    if (!edge_http_conn_is_closed(p->conn)) edge_http_respond_error(p->conn, status, code, msg);
    if (p->norm[0]) {
        edge_router_stats_record_norm(p->d->stats, p->norm, p->target >= 0 ? p->d->regions[p->target].id : "-",
                                      uv_hrtime() - p->start_ns, 0, true, false);
    }
}

static void on_answer(void *ud, int rv, struct edge_httpc_resp *resp)
{
    struct preq *p = ud;
    struct door *d = p->d;
    struct region *r = &d->regions[p->target];
    r->in_flight--;
    if (rv != EDGE_OK) {
        r->errors++;
        if (rv == EDGE_EIO || rv == EDGE_ECONNREFUSED || rv == EDGE_ETIMEDOUT) {
            if (r->up) EDGE_LOG(EDGE_LOG_WARN, EDGE_MOD_API, "router: region %s failed a request: %s", r->id,
                                edge_strerror(rv));
            r->up = false; /* until its next probe answers */
        }
        bool time_left = now_ms() + 5 < p->deadline_ms;
        bool retry = !p->pinned && time_left && p->tries < MAX_TRIES && !d->stopping &&
                     (p->read || rv == EDGE_ECONNREFUSED);
        if (retry) {
            int next = edge__door_next_region(d, p->tried);
            if (next >= 0) {
                if (p->first_fail_ns == 0) p->first_fail_ns = uv_hrtime();
                r->failovers_from++;
                d->failovers++;
                p->target = next;
                send_to(p);
                return;
            }
        }
        char msg[300];
        if (p->pinned) {
            snprintf(msg, sizeof(msg), "the region %s holding this stream failed: %s", r->id, edge_strerror(rv));
            answer_error(p, 503, "REGION_UNREACHABLE", msg);
        } else if (!p->read && rv != EDGE_ECONNREFUSED) {
            d->write_not_retried++;
            snprintf(msg, sizeof(msg), "region %s failed while the request was in flight (%s); it may have been "
                     "applied, so it was not sent again", r->id, edge_strerror(rv));
            answer_error(p, 502, "WRITE_OUTCOME_UNKNOWN", msg);
        } else {
            snprintf(msg, sizeof(msg), "no region could answer (%d tried within router.request_timeout_ms %d; last: "
                     "%s, %s)", p->tries, d->rc->request_timeout_ms, r->id, edge_strerror(rv));
            answer_error(p, rv == EDGE_ETIMEDOUT ? 504 : 503, "NO_REGION", msg);
        }
        preq_free(p);
        return;
    }
    if (p->first_fail_ns != 0) d->failover_ms_last = (double)(uv_hrtime() - p->first_fail_ns) / 1e6;
    char extra[400];
    size_t off = (size_t)snprintf(extra, sizeof(extra), "X-Edge-Region: %s\r\n", r->id);
    size_t bml = strlen(resp->bookmark);
    if (bml > 0 && bml < sizeof(resp->bookmark) - 1) {
        snprintf(extra + off, sizeof(extra) - off, "X-Edge-Bookmark: %s\r\n", resp->bookmark);
        /* Only a write's bookmark is remembered for read-your-writes: a read's (the vector
         * of the snapshot it ran on, for subscribing from) would make later reads wait for
         * every region's entries. */
        if (!p->read) edge__door_ryw_put(d, p->ryw_key, resp->bookmark);
    }
    const char *body = resp->body.data ? resp->body.data : "";
    size_t len = resp->body.len;
    size_t nlen = 0;
    char *nb = NULL;
    struct edge_buf pbo;
    edge_buf_init(&pbo, (size_t)1 << 30);
    if (resp->status == 200 && p->pb && strstr(resp->content_type, "protobuf") != NULL) {
        /* a body the door cannot re-prefix is passed as it is: the client's next request
         * with its baton is then refused (STREAM_INVALID), never sent to a wrong region */
        if (edge__door_pb_answer((const uint8_t *)body, len, p->target, p->cursor, &pbo) == EDGE_OK) {
            nb = pbo.data;
            nlen = pbo.len;
            pbo.data = NULL;
        }
    } else if (resp->status == 200 && !p->pb) {
        nb = edge__door_rewrite_baton(body, len, p->target, &nlen, p->cursor);
    }
    if (!edge_http_conn_is_closed(p->conn)) {
        edge_http_respond(p->conn, resp->status, resp->content_type[0] ? resp->content_type : "application/json",
                          extra, nb ? nb : body, nb ? nlen : len);
    }
    edge_buf_free(&pbo);
    if (p->norm[0]) {
        uint64_t rows = resp->status != 200 ? 0
                        : p->pb ? edge__door_pb_count_rows((const uint8_t *)body, len, p->cursor)
                                : edge__door_count_rows(body, len, p->cursor);
        edge_router_stats_record_norm(d->stats, p->norm, r->id, uv_hrtime() - p->start_ns, rows, resp->status != 200,
                                      false);
    }
    edge_free(nb);
    preq_free(p);
}

static void send_to(struct preq *p)
{
    struct door *d = p->d;
    struct region *r = &d->regions[p->target];
    p->tried |= 1u << p->target;
    p->tries++;
    r->requests++;
    r->in_flight++;
    uint64_t now = now_ms();
    uint64_t left = p->deadline_ms > now ? p->deadline_ms - now : 1;
    int rv = r->pool == NULL ? EDGE_ECLOSED
                             : edge_httpca_request(r->pool, p->req->method == HTTP_GET ? "GET" : "POST", p->req->path,
                                                   p->headers, p->body, p->body_len, left, (size_t)1 << 30, on_answer,
                                                   p);
    if (rv != EDGE_OK) {
        r->in_flight--;
        answer_error(p, 503, "NO_REGION", "the router could not send the request");
        preq_free(p);
    }
}

static void proxy(struct door *d, struct edge_http_conn *c, struct edge_http_req *req, bool hrana, bool cursor,
                  bool pb)
{
    struct preq *p = edge_calloc(1, sizeof(*p));
    if (p == NULL) {
        edge_http_respond_error(c, 503, "INTERNAL", "out of memory");
        return;
    }
    p->d = d;
    p->conn = c;
    edge_http_conn_ref(c);
    p->req = req;
    p->cursor = cursor;
    p->pb = pb;
    p->target = -1;
    p->start_ns = uv_hrtime();
    p->deadline_ms = now_ms() + (uint64_t)d->rc->request_timeout_ms;
    d->requests++;
    const char *auth = edge_http_header(req, "authorization");
    if (auth != NULL) {
        edge__door_ryw_token_key(auth, p->ryw_key, sizeof(p->ryw_key));
    } else {
        snprintf(p->ryw_key, sizeof(p->ryw_key), "c:%p", (void *)c);
    }
    json_t *body = NULL;
    if (pb) {
        /* the SQL, for the classification; the bytes go on as they came */
        char err[256];
        const uint8_t *raw = (const uint8_t *)(req->body.data ? req->body.data : "");
        if ((cursor ? d->cfg->pb_decode_cursor : d->cfg->pb_decode_pipeline)(raw, req->body.len, &body, err,
                                                                              sizeof(err)) != EDGE_OK) {
            body = NULL; /* a write, then: the region answers the error */
        }
    } else if (hrana) {
        body = json_loadb(req->body.data ? req->body.data : "", req->body.len, 0, NULL);
    }
    json_t *baton = json_object_get(body, "baton");
    if (json_is_string(baton)) {
        /* "<region>.<the region's baton>": the stream lives there */
        const char *b = json_string_value(baton);
        char *dot = NULL;
        long idx = strtol(b, &dot, 10);
        if (dot == b || *dot != '.' || idx < 0 || idx >= d->n) {
            json_decref(body);
            answer_error(p, 400, "STREAM_INVALID", "this baton was not issued through this router");
            preq_free(p);
            return;
        }
        p->pinned = true;
        p->target = (int)idx;
        json_object_set_new(body, "baton", json_string(dot + 1));
    }
    if (body != NULL) {
        p->read = !p->pinned && edge__door_body_reads(body, cursor, p->norm, sizeof(p->norm));
        if (!p->read && p->norm[0] == '\0') {
            /* the first statement's text for the statistics, read or not */
            json_t *r0 = cursor ? NULL : json_array_get(json_object_get(body, "requests"), 0);
            json_t *stmt = json_object_get(r0, "stmt");
            if (stmt == NULL) {
                /* a batch (or a cursor's): its first step */
                json_t *b = json_object_get(cursor ? body : r0, "batch");
                stmt = json_object_get(json_array_get(json_object_get(b, "steps"), 0), "stmt");
            }
            json_t *sql = json_object_get(stmt, "sql");
            if (json_is_string(sql)) {
                edge_router_normalize(json_string_value(sql), json_string_length(sql), p->norm, sizeof(p->norm));
            }
        }
    }
    if (p->pinned && pb) {
        /* the region's own baton in place of the door's */
        const char *b = json_string_value(json_object_get(body, "baton"));
        struct edge_buf nb;
        edge_buf_init(&nb, (size_t)1 << 30);
        if (b != NULL && edge__door_pb_set_baton((const uint8_t *)req->body.data, req->body.len, b, strlen(b), &nb) ==
                             EDGE_OK) {
            p->body = edge_malloc(nb.len + 1);
            if (p->body != NULL) {
                memcpy(p->body, nb.data ? nb.data : "", nb.len);
                p->body[nb.len] = '\0';
                p->body_len = nb.len;
            }
        }
        edge_buf_free(&nb);
    } else if (p->pinned) {
        char *text = json_dumps(body, JSON_COMPACT);
        p->body = text ? edge_strdup(text) : NULL;
        free(text);
    } else {
        p->body = edge_malloc(req->body.len + 1);
        if (p->body != NULL) {
            memcpy(p->body, req->body.data ? req->body.data : "", req->body.len);
            p->body[req->body.len] = '\0';
        }
    }
    json_decref(body);
    if (p->body == NULL) {
        answer_error(p, 503, "INTERNAL", "out of memory");
        preq_free(p);
        return;
    }
    if (!(p->pinned && pb)) p->body_len = p->pinned ? strlen(p->body) : req->body.len;
    /* Headers the regions need: the token, the consistency asked for, the bookmark (the
     * client's, else for a read the latest this client's writes got). */
    const char *cons = edge_http_header(req, "x-edge-consistency");
    const char *bm = edge_http_header(req, "x-edge-bookmark");
    char vv[DOOR_MAX_REGIONS * (EDGE_VCLOCK_REGION_MAX + 22) + 1];
    if (bm == NULL && p->read) {
        bm = edge__door_ryw_get(d, p->ryw_key, vv, sizeof(vv));
        if (bm != NULL) d->ryw_attached++;
    }
    if (auth != NULL && strlen(auth) > 3000) auth = NULL;
    if (cons != NULL && strlen(cons) > 32) cons = NULL;
    if (bm != NULL && strlen(bm) > sizeof(vv) - 1) bm = NULL;
    /* a protobuf body keeps the client's Content-Type (the region checks it) */
    const char *ct = pb ? edge_http_header(req, "content-type") : NULL;
    if (ct != NULL && strlen(ct) > 64) ct = "application/x-protobuf";
    snprintf(p->headers, sizeof(p->headers), "%s%s%s%s%s%s%s%s%s%s%s%s", auth ? "Authorization: " : "",
             auth ? auth : "", auth ? "\r\n" : "", cons ? "X-Edge-Consistency: " : "", cons ? cons : "",
             cons ? "\r\n" : "", bm ? "X-Edge-Bookmark: " : "", bm ? bm : "", bm ? "\r\n" : "",
             ct ? "Content-Type: " : "", ct ? ct : "", ct ? "\r\n" : "");
    if (!p->pinned) p->target = edge__door_choose(d, 0);
    if (p->target < 0) {
        answer_error(p, 503, "NO_REGION", "no region is configured with a url");
        preq_free(p);
        return;
    }
    send_to(p);
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static void on_request(void *ud, struct edge_http_conn *c, struct edge_http_req *req)
{
    struct door *d = ud;
    const char *p = req->path;
    bool get = req->method == HTTP_GET || req->method == HTTP_HEAD;
    bool post = req->method == HTTP_POST;
    if (req->upgrade) {
        edge__door_ws_upgrade(d, c, req);
    } else if (strstr(p, "/v3-protobuf") != NULL && d->cfg->pb_decode_pipeline != NULL) {
        if (get && ends_with(p, "/v3-protobuf")) {
            edge_http_respond(c, 200, "text/plain", NULL, "", 0);
        } else if (post && ends_with(p, "/v3-protobuf/pipeline")) {
            proxy(d, c, req, true, false, true);
        } else if (post && ends_with(p, "/v3-protobuf/cursor")) {
            proxy(d, c, req, true, true, true);
        } else {
            edge_http_respond_error(c, 404, "NOT_FOUND",
                                    "over protobuf the router serves GET /v3-protobuf, POST /v3-protobuf/pipeline and "
                                    "POST /v3-protobuf/cursor");
        }
    } else if (strstr(p, "/v3-protobuf") != NULL) {
        /* no decoder given: clients fall back to JSON */
        edge_http_respond_error(c, 404, "NOT_FOUND", "the router speaks Hrana over HTTP in JSON (v2, v3)");
    } else if (get && strcmp(p, "/health") == 0) {
        edge_http_respond(c, 200, "text/plain", NULL, "", 0);
    } else if (get && (ends_with(p, "/v2") || ends_with(p, "/v3"))) {
        edge_http_respond(c, 200, "text/plain", NULL, "Hello, this is the edgelite router\n", 35);
    } else if (get && strcmp(p, "/metrics") == 0) {
        edge__door_metrics(d, c);
    } else if (get && strcmp(p, "/v1/router/regions") == 0) {
        edge__door_regions(d, c);
    } else if (get && strcmp(p, "/v1/router/stats/statements") == 0) {
        edge__door_stats(d, c, req);
    } else if (post && strcmp(p, "/v1/router/stats/reset") == 0) {
        edge_router_stats_reset(d->stats);
        edge_http_respond(c, 200, "application/json", NULL, "{\"reset\":true}", 14);
    } else if (post && (ends_with(p, "/v2/pipeline") || ends_with(p, "/v3/pipeline"))) {
        proxy(d, c, req, true, false, false);
    } else if (post && ends_with(p, "/v3/cursor")) {
        proxy(d, c, req, true, true, false);
    } else if (get || post) {
        proxy(d, c, req, false, false, false); /* the regions' other endpoints, as writes */
    } else {
        edge_http_respond_error(c, 405, "METHOD_NOT_ALLOWED", "the router forwards GET and POST");
    }
}

static void on_close(void *ud, struct edge_http_conn *c)
{
    (void)ud;
    (void)c;
}

static void on_ws_message(void *ud, struct edge_http_conn *c, int opcode, const uint8_t *data, size_t len)
{
    /* every upgraded connection has its own handler (door_ws.c); nothing arrives here */
    (void)ud;
    (void)opcode;
    (void)data;
    (void)len;
    edge_http_ws_close(c, 1011, "no session");
}

static void on_stop_check(uv_timer_t *t)
{
    struct door *d = t->data;
    if (*d->stop == 0) return;
    if (!d->stopping) {
        d->stopping = true;
        d->stop_ns = uv_hrtime();
        uv_timer_stop(&d->probe_timer);
        for (int i = 0; i < d->n; i++) {
            edge_httpca_close(d->regions[i].pool);
            edge_httpca_close(d->regions[i].probe_pool);
            d->regions[i].pool = d->regions[i].probe_pool = NULL;
        }
        /* a close frame (1001) to every WebSocket session, up or still connecting upstream:
         * closing their connections at once gave the clients 1006 and no reason */
        edge__door_ws_stop(d);
        /* no new connections during the grace: a client connecting is refused at once and
         * goes to another door, instead of a 503 for every request (and a 200 for /health, so
         * a balancer still sent it here); an answer from now on ends its connection */
        edge_http_server_drain(d->http);
        (void)edge_http_server_close_idle(d->http, NULL, NULL); /* first call: the listener only */
    }
    /* the clients get up to a second to answer their close (this timer ticks every 100 ms) */
    if (d->ws_head != NULL && uv_hrtime() - d->stop_ns < 1000000000u) return;
    uv_timer_stop(&d->stop_timer);
    uv_close((uv_handle_t *)&d->probe_timer, NULL);
    uv_close((uv_handle_t *)&d->stop_timer, NULL);
    edge_http_server_stop(d->http, NULL, NULL);
}

int edge_router_door_run(const struct edge_router_door_config *cfg, volatile sig_atomic_t *stop, char *errmsg,
                         size_t errmsg_len)
{
    struct door d;
    memset(&d, 0, sizeof(d));
    d.cfg = cfg;
    d.rc = &cfg->conf->router;
    d.stop = stop;
    int rv = EDGE_ENOMEM;
    int fd = -1, port = 0;
    struct edge_tls_ctx *tls = NULL; /* verifies https:// regions (cluster.ca_file) */
    d.regions = edge_calloc(cfg->conf->n_regions + 1, sizeof(*d.regions));
    d.ryw = edge_calloc(RYW_SLOTS, sizeof(*d.ryw));
    if (d.regions == NULL || d.ryw == NULL ||
        edge_router_stats_new(d.rc->stats_max_statements, (uint64_t)d.rc->slow_ms, &d.stats) != EDGE_OK) {
        snprintf(errmsg, errmsg_len, "out of memory");
        goto out;
    }
    uv_loop_init(&d.loop);
    srand((unsigned)uv_hrtime());
    if (sodium_init() < 0) {
        snprintf(errmsg, errmsg_len, "libsodium failed to initialise");
        rv = EDGE_EINTERNAL;
        goto out_loop;
    }
    if (cfg->conf->n_regions > DOOR_MAX_REGIONS) {
        snprintf(errmsg, errmsg_len, "the router handles at most 32 regions");
        rv = EDGE_ECONFIG;
        goto out_loop;
    }
    for (size_t i = 0; i < cfg->conf->n_regions; i++) {
        const struct edge_conf_region *cr = &cfg->conf->regions[i];
        struct region *r = &d.regions[d.n];
        struct edge_httpc_url u;
        if (cr->url == NULL || edge_httpc_url_parse(cr->url, &u) != EDGE_OK) {
            snprintf(errmsg, errmsg_len, "region %s has no usable url (http://HOST:PORT)", cr->id);
            rv = EDGE_ECONFIG;
            goto out_loop;
        }
        if (u.tls && tls == NULL) {
            rv = edge_tls_ctx_client_new(cfg->conf->ca_file, &tls, errmsg, errmsg_len);
            if (rv != EDGE_OK) goto out_loop;
        }
        r->idx = d.n;
        r->id = cr->id;
        snprintf(r->host, sizeof(r->host), "%s", u.host);
        snprintf(r->port, sizeof(r->port), "%s", u.port);
        if (u.tls) {
            r->tls = tls;
            snprintf(r->tls_name, sizeof(r->tls_name), "%s", u.host);
        }
        r->weight = cr->capacity.weight > 0 ? cr->capacity.weight : 1.0;
        r->up = true; /* until a probe or a request says otherwise */
        if (cfg->wan != NULL && cfg->client_region != NULL) {
            double w = edge_regions_rtt_ms(cfg->wan, cfg->client_region, cr->id);
            r->wan_ms = w > 0 ? w : 0;
        }
        if (edge_httpca_new(&d.loop, r->host, r->port, DOOR_CONNS, 30000, &r->pool) != EDGE_OK ||
            edge_httpca_new(&d.loop, r->host, r->port, 1, 30000, &r->probe_pool) != EDGE_OK ||
            (u.tls && (edge_httpca_set_tls(r->pool, tls, u.host) != EDGE_OK ||
                       edge_httpca_set_tls(r->probe_pool, tls, u.host) != EDGE_OK))) {
            snprintf(errmsg, errmsg_len, "region %s: url %s needs a numeric loopback address", cr->id, cr->url);
            rv = EDGE_ECONFIG;
            d.n++;
            goto out_loop;
        }
        d.n++;
    }
    rv = edge_http_listen_socket(cfg->host, cfg->port, &fd, &port);
    if (rv != EDGE_OK) {
        snprintf(errmsg, errmsg_len, "cannot listen on %s:%d: %s", cfg->host, cfg->port, edge_strerror(rv));
        goto out_loop;
    }
    struct edge_http_limits lim = {.max_body_bytes = 16u << 20,
                                   .max_header_bytes = 64u << 10,
                                   .max_queued = 64,
                                   .idle_timeout_ms = 60000,
                                   .request_timeout_ms = 30000,
                                   .max_ws_message = 1u << 20};
    struct edge_http_handler h = {.ud = &d, .on_request = on_request, .on_ws_message = on_ws_message, .on_close = on_close};
    rv = edge_http_server_start(&d.loop, fd, &lim, &h, &d.http);
    if (rv != EDGE_OK) {
        snprintf(errmsg, errmsg_len, "cannot serve: %s", edge_strerror(rv));
        goto out_loop;
    }
    uv_timer_init(&d.loop, &d.probe_timer);
    d.probe_timer.data = &d;
    /* until the first probes a region counts as up unless a request or a session to it failed;
     * the ticks start so that one falls on first_probe_delay_ms exactly */
    d.probes_from_ms = uv_now(&d.loop) + (uint64_t)d.rc->first_probe_delay_ms;
    uv_timer_start(&d.probe_timer, probe_all,
                   (uint64_t)d.rc->first_probe_delay_ms % (uint64_t)d.rc->probe_interval_ms,
                   (uint64_t)d.rc->probe_interval_ms);
    uv_timer_init(&d.loop, &d.stop_timer);
    d.stop_timer.data = &d;
    uv_timer_start(&d.stop_timer, on_stop_check, 100, 100);
    printf("edgelite router: listening on http://%s:%d\n", cfg->host, port);
    fflush(stdout);
    uv_run(&d.loop, UV_RUN_DEFAULT);
    rv = EDGE_OK;
out_loop:
    if (rv != EDGE_OK) {
        for (int i = 0; i < d.n; i++) {
            edge_httpca_close(d.regions[i].pool);
            edge_httpca_close(d.regions[i].probe_pool);
        }
        uv_run(&d.loop, UV_RUN_DEFAULT);
    }
    uv_loop_close(&d.loop);
    edge_tls_ctx_free(tls); /* after the pools that used it */
out:
    edge_router_stats_free(d.stats);
    edge_free(d.regions);
    edge_free(d.ryw);
    return rv;
}
