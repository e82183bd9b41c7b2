/* SPDX-License-Identifier: MIT */
/* The front door's WebSocket sessions (docs/router.md, "WebSocket"): the client's WebSocket
 * is accepted here with the Hrana subprotocol it offered (JSON: hrana3, hrana2, hrana1) and
 * one WebSocket to a region (door_wsup.c) carries the session. The door reads every message
 * both ways:
 *
 * - read-your-writes: the bookmarks of writes answered on the session are merged into the
 *   client's vector (the same one the HTTP path keeps per token: the hello's jwt is the
 *   token), and an execute, batch, sequence or open_cursor that carries no "bookmark" gets
 *   that vector, so the region runs it once it has every write the client saw answered;
 * - fail-over: the session's state (hello, streams, stored SQL) and its requests in flight
 *   are tracked (door_ws_state.c); when the region is lost and no stream may be inside a
 *   transaction, the session moves to the next region: hello again,
 *   the streams and texts recreated with the client's ids, the reads and state requests in
 *   flight sent again, each write in flight answered WRITE_OUTCOME_UNKNOWN (it may have run)
 *   and never sent twice, each cursor request in flight CURSOR_LOST. Otherwise (a transaction)
 *   the client is closed with 1011, as a lost session.
 *
 * A region refusing the connection (nothing was sent) is replaced by the next one, and new
 * sessions pass it over for a while (its back-off: pick()). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/log.h"
#include "router/door_int.h"

struct edge_door_wss {
    struct door *d;
    struct edge_door_wss *prev, *next; /* d->ws_head */
    struct edge_http_conn *client;
    struct edge_door_wsup *up;
    bool open;      /* up answered 101 */
    int region;     /* of up */
    uint32_t tried; /* regions tried since the last loss */
    char proto[16];
    char path[512];
    bool closing, client_gone;
    bool accepting; /* inside edge_http_ws_accept: the client's close does not free it yet */
    char *hello; /* the client's latest hello, sent again to a new region */
    size_t hello_len;
    int hellos_unanswered; /* the client's hellos waiting for their answer */
    bool replay_hello;     /* the first answer on this region is to the hello the door sent */
    uint64_t lost_ns;      /* when the region was lost (0: not moving) */
    char ryw_key[64];
    struct edge_door_wst *st;
};

static void connect_next(struct edge_door_wss *s);
static void on_up_lost(void *ud, int kind, uint16_t code, const char *why);

/* The end of a move (router.request_timeout_ms from the loss, uv_hrtime); 0: not moving. */
static uint64_t move_deadline_ns(const struct edge_door_wss *s)
{
    return s->lost_ns != 0 ? s->lost_ns + (uint64_t)s->d->rc->request_timeout_ms * 1000000u : 0;
}

static bool move_expired(const struct edge_door_wss *s)
{
    return s->lost_ns != 0 && uv_hrtime() >= move_deadline_ns(s);
}

/* A send to the region failed: what was being sent may be partly on its way (TLS buffered
 * it) and what follows cannot go, so the link counts as lost at once (a write in flight is
 * WRITE_OUTCOME_UNKNOWN, never sent again; reads go to the next region), instead of
 * leaving requests unanswered until the socket reports something. */
static void up_failed(struct edge_door_wss *s, int rv)
{
    if (s->up == NULL) return;
    EDGE_LOG(EDGE_LOG_WARN, EDGE_MOD_API, "router: WebSocket to region %s: cannot send: %s",
             s->d->regions[s->region].id, edge_strerror(rv));
    edge__door_wsup_close(s->up);
    on_up_lost(s, EDGE_DOOR_WSUP_LOST, 0, "cannot send to the region");
}

static void finish(struct edge_door_wss *s, uint16_t code, const char *reason)
{
    if (s->closing) return;
    s->closing = true;
    if (!s->client_gone) edge_http_ws_close(s->client, code, reason);
    edge__door_wsup_close(s->up);
    s->up = NULL;
    s->open = false;
}

static void wss_free(struct edge_door_wss *s)
{
    if (s->prev) s->prev->next = s->next;
    else s->d->ws_head = s->next;
    if (s->next) s->next->prev = s->prev;
    edge__door_wsup_close(s->up);
    edge__door_wst_free(s->st);
    edge_free(s->hello);
    if (s->client != NULL) edge_http_conn_unref(s->client);
    edge_free(s);
}

/* opcode: the region's frame type (1 text, 2 binary), passed on as it came */
static void to_client(struct edge_door_wss *s, int opcode, const char *text, size_t len)
{
    if (!s->client_gone && !s->closing) edge_http_ws_send(s->client, opcode, text, len);
}

/* A close code the door may send on (RFC 6455 7.4: 1004-1006 and 1015 are never sent, the
 * rest below 3000 unassigned); any other from a region becomes 1011. */
static uint16_t close_code(uint16_t code)
{
    bool ok = (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
    return ok ? code : 1011;
}

static void client_error(struct edge_door_wss *s, int64_t request_id, const char *code, const char *msg)
{
    struct edge_buf b;
    edge_buf_init(&b, 4096);
    edge_buf_printf(&b, "{\"type\":\"response_error\",\"request_id\":%lld,\"error\":{\"message\":", (long long)request_id);
    edge_buf_json_cstr(&b, msg);
    edge_buf_puts(&b, ",\"code\":");
    edge_buf_json_cstr(&b, code);
    edge_buf_puts(&b, "}}");
    to_client(s, 1, b.data, b.len);
    edge_buf_free(&b);
}

static int emit(void *ud, const char *text, size_t len)
{
    struct edge_door_wss *s = ud;
    return edge__door_wsup_send(s->up, 1, text, len);
}

/* A WebSocket to r failed before its 101. Its next probe may well mark it up again (a region
 * whose /health answers and whose upgrade hangs), so new sessions pass it over for an interval
 * of its own, doubled at each failure up to DOOR_WS_BACKOFF_MAX_MS; a failure while the interval
 * runs (a session that tried the region at the same time) does not double it. A region tried
 * without a failure for DOOR_WS_BACKOFF_MAX_MS after its interval ended starts from the minimum
 * again: one failure hours after the last is not the next step of an old series. */
static void backoff(struct door *d, struct region *r)
{
    uint64_t now = uv_hrtime();
    if (now < r->ws_backoff_until_ns) return;
    if (r->ws_backoff_ms != 0 && now - r->ws_backoff_until_ns >= (uint64_t)DOOR_WS_BACKOFF_MAX_MS * 1000000u) {
        r->ws_backoff_ms = 0;
    }
    r->ws_backoff_ms = r->ws_backoff_ms == 0 ? DOOR_WS_BACKOFF_MIN_MS
                       : r->ws_backoff_ms >= DOOR_WS_BACKOFF_MAX_MS / 2 ? DOOR_WS_BACKOFF_MAX_MS
                                                                      : r->ws_backoff_ms * 2;
    r->ws_backoff_until_ns = now + (uint64_t)r->ws_backoff_ms * 1000000u;
    EDGE_LOG(EDGE_LOG_INFO, EDGE_MOD_API, "router: region %s: new WebSocket sessions pass it over for %u ms",
             r->id, r->ws_backoff_ms);
}

/* The region for the session's next connect among those not tried: a region in its back-off
 * is taken only when no other one is left (never none at all). */
static int pick(struct edge_door_wss *s)
{
    struct door *d = s->d;
    int best = s->lost_ns != 0 ? edge__door_next_region(d, s->tried) : edge__door_choose(d, s->tried);
    if (best < 0 || uv_hrtime() >= d->regions[best].ws_backoff_until_ns) return best;
    uint32_t off = s->tried;
    uint64_t now = uv_hrtime();
    for (int i = 0; i < d->n; i++) {
        if (now < d->regions[i].ws_backoff_until_ns) off |= 1u << i;
    }
    int other = s->lost_ns != 0 ? edge__door_next_region(d, off) : edge__door_choose(d, off);
    if (other < 0) return best;
    d->regions[best].ws_backoff_skipped++;
    return other;
}

/* ---------------------------------------------------------------------------------- */
/* The region's side                                                                  */
/* ---------------------------------------------------------------------------------- */

static void on_up_open(void *ud)
{
    struct edge_door_wss *s = ud;
    struct door *d = s->d;
    s->open = true;
    s->tried = 0;
    d->regions[s->region].ws_backoff_ms = 0; /* its upgrades work again */
    d->regions[s->region].ws_backoff_until_ns = 0;
    if (s->lost_ns != 0) {
        d->ws_failovers++;
        d->ws_failover_ms_last = (double)(uv_hrtime() - s->lost_ns) / 1e6;
        EDGE_LOG(EDGE_LOG_INFO, EDGE_MOD_API, "router: WebSocket session moved to region %s in %.1f ms",
                 d->regions[s->region].id, d->ws_failover_ms_last);
        s->lost_ns = 0;
    }
    int rv = EDGE_OK;
    if (s->hello != NULL) {
        s->replay_hello = true;
        rv = emit(s, s->hello, s->hello_len);
    }
    if (rv == EDGE_OK) rv = edge__door_wst_replay(s->st, emit, s);
    if (rv != EDGE_OK) up_failed(s, rv);
}

/* The answer to a hello: the client sees one per hello it sent, never the door's own. */
static void hello_answer(struct edge_door_wss *s, const uint8_t *data, size_t len)
{
    if (s->replay_hello) {
        s->replay_hello = false;
        if (s->hellos_unanswered == 0) return;
    }
    if (s->hellos_unanswered > 0) s->hellos_unanswered--;
    to_client(s, 1, (const char *)data, len);
}

/* Did a step of a batch answer fail ("step_errors" holds an error object)? Then a COMMIT
 * among its steps may have failed and its transaction may still be open. The member is
 * found by its text: inside a JSON string its quotes would be escaped. */
static bool step_failed(const char *p, size_t len)
{
    static const char key[] = "\"step_errors\":[";
    const char *q = memmem(p, len, key, sizeof(key) - 1);
    if (q == NULL) return false;
    for (q += sizeof(key) - 1; q < p + len; q++) {
        if (*q == '{') return true;
        if (*q == ']') return false;
    }
    return false;
}

static void on_up_msg(void *ud, int opcode, const uint8_t *data, size_t len)
{
    struct edge_door_wss *s = ud;
    struct door *d = s->d;
    if (s->closing) return;
    const char *p = (const char *)data;
    size_t vs, vl;
    if (opcode != 1 || edge__door_json_member(p, len, "type", &vs, &vl) != EDGE_OK) {
        to_client(s, opcode, p, len); /* not one the door reads: the client judges it */
        return;
    }
    if ((vl == 8 && memcmp(p + vs, "hello_ok", 8) == 0) || (vl == 11 && memcmp(p + vs, "hello_error", 11) == 0)) {
        hello_answer(s, data, len);
        return;
    }
    bool ok = vl == 11 && memcmp(p + vs, "response_ok", 11) == 0;
    bool err = vl == 14 && memcmp(p + vs, "response_error", 14) == 0;
    if ((ok || err) && edge__door_json_member(p, len, "request_id", &vs, &vl) == EDGE_OK && vl < 24) {
        char num[24];
        memcpy(num, p + vs, vl);
        num[vl] = '\0';
        long long id = strtoll(num, NULL, 10);
        int kind = edge__door_wst_answer(s->st, id, ok && !step_failed(p, len));
        if (kind < 0 && id <= WST_SYNTHETIC_BASE) return; /* the door's own request */
        if (ok && kind == WST_WRITE && edge__door_json_member(p, len, "bookmark", &vs, &vl) == EDGE_OK &&
            vl > 0 && vl < 4096 && p[vs - 1] == '"') {
            /* only a write's bookmark counts (a read's is its snapshot's vector: door.c) */
            char bm[4096];
            memcpy(bm, p + vs, vl);
            bm[vl] = '\0';
            edge__door_ryw_put(d, s->ryw_key, bm);
        }
    }
    to_client(s, 1, p, len);
}

static void write_unknown(void *ud, int64_t request_id, int kind)
{
    struct edge_door_wss *s = ud;
    char msg[300];
    if (kind == WST_CURSOR) {
        snprintf(msg, sizeof(msg), "region %s was lost with this cursor (its batch may have run there)",
                 s->d->regions[s->region].id);
        client_error(s, request_id, "CURSOR_LOST", msg);
        return;
    }
    s->d->write_not_retried++;
    snprintf(msg, sizeof(msg), "region %s was lost while the request was in flight; it may have been applied, so "
             "it was not sent again", s->d->regions[s->region].id);
    client_error(s, request_id, "WRITE_OUTCOME_UNKNOWN", msg);
}

static void on_up_lost(void *ud, int kind, uint16_t code, const char *why)
{
    struct edge_door_wss *s = ud;
    struct door *d = s->d;
    struct region *r = &d->regions[s->region];
    bool was_open = s->open;
    s->up = NULL;
    s->open = false;
    s->replay_hello = false;
    if (s->closing) return;
    if (kind == EDGE_DOOR_WSUP_CLOSED) {
        finish(s, close_code(code), why); /* the region's verdict on the session */
        return;
    }
    if (kind == EDGE_DOOR_WSUP_REFUSED) {
        r->up = false; /* nothing was sent: the next region */
        d->ws_refused_retries++;
        backoff(d, r);
        connect_next(s);
        return;
    }
    if (kind == EDGE_DOOR_WSUP_EXPIRED) {
        /* the move's deadline came first: the region did not fail its own (it may have had a
         * few ms), so it is not down for it */
        finish(s, 1011, "no region took the session within router.request_timeout_ms");
        return;
    }
    if (r->up) EDGE_LOG(EDGE_LOG_WARN, EDGE_MOD_API, "router: region %s lost a WebSocket session: %s", r->id, why);
    r->up = false;
    if (!was_open || d->stopping) {
        finish(s, 1011, "the region's connection was lost");
        return;
    }
    if (edge__door_wst_pinned(s->st)) {
        d->ws_lost_pinned++;
        finish(s, 1011, "the region holding this session's transaction was lost");
        return;
    }
    s->lost_ns = uv_hrtime();
    s->tried = 1u << s->region;
    d->ws_reads_retried += edge__door_wst_lost(s->st, write_unknown, s);
    connect_next(s);
}

static void connect_next(struct edge_door_wss *s)
{
    struct door *d = s->d;
    static const struct edge_door_wsup_cb cb0 = {NULL, on_up_open, on_up_msg, on_up_lost};
    struct edge_door_wsup_cb cb = cb0;
    cb.ud = s;
    while (!s->closing) {
        if (d->stopping) {
            finish(s, 1001, "the router is stopping");
            return;
        }
        if (move_expired(s)) {
            finish(s, 1011, "no region took the session within router.request_timeout_ms");
            return;
        }
        int next = pick(s);
        if (next < 0) {
            finish(s, 1011, "no region could take the session");
            return;
        }
        s->tried |= 1u << next;
        s->region = next;
        /* a move's link ends with the move (each step's connect_timeout_ms may reach past it) */
        if (edge__door_wsup_open(d, next, s->path, s->proto, move_deadline_ns(s), &cb, &s->up) == EDGE_OK) return;
        s->up = NULL;
    }
}

void edge__door_ws_counts(struct door *d, size_t *streams, size_t *cursors)
{
    *streams = *cursors = 0;
    for (const struct edge_door_wss *s = d->ws_head; s != NULL; s = s->next) {
        edge__door_wst_counts(s->st, streams, cursors);
    }
}

void edge__door_ws_tick(struct door *d)
{
    uint64_t now = uv_hrtime(), limit = (uint64_t)d->rc->request_timeout_ms * 1000000u;
    for (struct edge_door_wss *s = d->ws_head, *next; s != NULL; s = next) {
        next = s->next; /* on_up_lost may not free s, but keep the walk simple */
        if (!s->open || s->closing || d->regions[s->region].up) continue;
        uint64_t oldest = edge__door_wst_oldest_ns(s->st);
        if (oldest == 0 || now - oldest < limit) continue;
        /* a region that stopped answering (its probes fail) with the session's requests
         * waiting past the deadline: as lost, so that reads go on elsewhere */
        EDGE_LOG(EDGE_LOG_WARN, EDGE_MOD_API, "router: region %s is down and a WebSocket session's request has "
                 "waited %.0f ms: moving the session", d->regions[s->region].id, (double)(now - oldest) / 1e6);
        edge__door_wsup_close(s->up);
        on_up_lost(s, EDGE_DOOR_WSUP_LOST, 0, "no answer within router.request_timeout_ms");
    }
}

void edge__door_ws_stop(struct door *d)
{
    for (struct edge_door_wss *s = d->ws_head; s != NULL; s = s->next) finish(s, 1001, "the router is stopping");
}

/* ---------------------------------------------------------------------------------- */
/* The client's side                                                                  */
/* ---------------------------------------------------------------------------------- */

/* Hellos the region has not answered yet, per session: a client sending more is not
 * waiting for their answers (the counter only, but bounded as everything else). */
#define WSS_MAX_HELLOS 64

/* The members of a client's message the door reads (one pass over it: on_client_msg). */
enum { M_TYPE, M_JWT, M_REQUEST_ID, M_REQUEST, M_BOOKMARK, M_N };

static void client_hello(struct edge_door_wss *s, const struct edge_jv *m, const uint8_t *data, size_t len)
{
    if (s->hellos_unanswered >= WSS_MAX_HELLOS) {
        finish(s, 1008, "too many hellos waiting for their answer");
        return;
    }
    char *copy = edge_malloc(len + 1);
    if (copy == NULL) {
        finish(s, 1011, "out of memory");
        return;
    }
    memcpy(copy, data, len);
    copy[len] = '\0';
    edge_free(s->hello);
    s->hello = copy;
    s->hello_len = len;
    s->hellos_unanswered++;
    struct edge_jv jwt = m[M_JWT];
    size_t jl = edge__door_jv_str(jwt, NULL);
    if (edge__door_jv_is_string(jwt) && jl < 8192) {
        /* the same key as HTTP requests with this token (Authorization: Bearer <jwt>) */
        char auth[8200];
        memcpy(auth, "Bearer ", 7);
        edge__door_jv_str(jwt, auth + 7); /* decoded: at most jwt.len bytes */
        auth[7 + jl] = '\0';
        edge__door_ryw_token_key(auth, s->ryw_key, sizeof(s->ryw_key));
    }
    int rv = s->open ? emit(s, copy, len) : EDGE_OK;
    if (rv != EDGE_OK) up_failed(s, rv);
}

static void client_request(struct edge_door_wss *s, const struct edge_jv *m, const uint8_t *data, size_t len)
{
    struct door *d = s->d;
    struct edge_jv rid = m[M_REQUEST_ID];
    if (!edge__door_jv_is_integer(rid)) {
        finish(s, 1002, "request without an integer request_id");
        return;
    }
    int64_t id = edge__door_jv_int(rid);
    if (id <= WST_SYNTHETIC_BASE) {
        /* the door's own ids (its replayed open_stream / store_sql): an answer to one of
         * those would settle the client's request */
        client_error(s, id, "REQUEST_ID_RESERVED", "request ids at or below -2^40 are the router's own");
        return;
    }
    struct edge_jv req = m[M_REQUEST];
    struct edge_jv type = edge__door_jv_get(req, "type");
    char *text = NULL;
    size_t tlen = len;
    struct edge_jv bm = m[M_BOOKMARK];
    if ((bm.p == NULL || edge__door_jv_is_null(bm)) &&
        (edge__door_jv_str_eq(type, "execute") || edge__door_jv_str_eq(type, "batch") ||
         edge__door_jv_str_eq(type, "sequence") || edge__door_jv_str_eq(type, "open_cursor"))) {
        char vv[DOOR_MAX_REGIONS * (EDGE_VCLOCK_REGION_MAX + 22) + 1];
        const char *mine = edge__door_ryw_get(d, s->ryw_key, vv, sizeof(vv));
        /* the message is rewritten with it by jansson, as it always was: the only case that
         * pays for a parse */
        json_t *jmsg = mine != NULL ? json_loadb((const char *)data, len, 0, NULL) : NULL;
        if (jmsg != NULL) {
            json_object_set_new(jmsg, "bookmark", json_string(mine));
            char *dumped = json_dumps(jmsg, JSON_COMPACT);
            json_decref(jmsg);
            if (dumped != NULL) {
                text = edge_strdup(dumped);
                tlen = strlen(dumped);
                free(dumped);
                if (text != NULL) d->ws_ryw_attached++; /* else sent as it came, without one */
            }
        }
    }
    if (text == NULL) {
        text = edge_malloc(len + 1);
        if (text == NULL) {
            client_error(s, id, "INTERNAL", "out of memory");
            return;
        }
        memcpy(text, data, len);
        text[len] = '\0';
        tlen = len;
    }
    if (s->open && edge__door_wsup_queued(s->up) >= DOOR_WSUP_MAX_QUEUED) {
        /* the region does not take what it was sent: refuse rather than buffer without bound */
        edge_free(text);
        d->ws_upstream_full++;
        client_error(s, id, "WS_ROUTER_LIMIT", "the region is not reading this WebSocket's requests (8 MiB "
                     "waiting to be sent); try again later");
        return;
    }
    struct edge_door_wst_req *r = NULL;
    const char *code = NULL, *why = NULL;
    if (edge__door_wst_request(s->st, req, id, text, tlen, false, &r, &code, &why) != EDGE_OK) {
        edge_free(text);
        d->ws_limited++;
        client_error(s, id, code, why);
        return;
    }
    if (!s->open) return; /* sent once a region answered (edge__door_wst_replay) */
    int rv = emit(s, r->text, r->len);
    edge__door_wst_sent(s->st, r); /* even if it failed: it may be partly on its way */
    if (rv != EDGE_OK) up_failed(s, rv);
}

static void on_client_msg(void *ud, struct edge_http_conn *c, int opcode, const uint8_t *data, size_t len)
{
    (void)c;
    struct edge_door_wss *s = ud;
    if (s->closing) return;
    if (opcode != 1) {
        finish(s, 1003, "the router speaks Hrana over WebSocket in JSON text messages");
        return;
    }
    /* read in place (door_jv.c); whether it is JSON at all is jansson's verdict, unless it is
     * plain JSON for sure */
    const char *p = (const char *)data;
    if (!edge__door_jv_plain(p, len)) {
        json_t *j = json_loadb(p, len, 0, NULL);
        bool is_json = j != NULL;
        json_decref(j);
        if (!is_json) {
            finish(s, 1007, "a Hrana message is JSON"); /* as the regions answer it */
            return;
        }
    }
    /* json_loadb takes no scalar at the top: the message starts with '{' or '[' */
    size_t i = 0;
    while (i < len && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r')) i++;
    size_t e = len;
    while (e > i && (p[e - 1] == ' ' || p[e - 1] == '\t' || p[e - 1] == '\n' || p[e - 1] == '\r')) e--;
    struct edge_jv msg = {p + i, e - i};
    static const char *const keys[M_N] = {"type", "jwt", "request_id", "request", "bookmark"};
    struct edge_jv m[M_N];
    edge__door_jv_members(msg, keys, M_N, m);
    if (!edge__door_jv_is_object(msg) || !edge__door_jv_is_string(m[M_TYPE])) {
        finish(s, 1002, "a Hrana message is a JSON object with a type");
    } else if (edge__door_jv_str_eq(m[M_TYPE], "hello")) {
        client_hello(s, m, data, len);
    } else if (edge__door_jv_str_eq(m[M_TYPE], "request")) {
        client_request(s, m, data, len);
    } else {
        finish(s, 1002, "unknown message type");
    }
}

static void on_client_close(void *ud, struct edge_http_conn *c)
{
    (void)c;
    struct edge_door_wss *s = ud;
    s->client_gone = true;
    s->closing = true;
    if (!s->accepting) wss_free(s); /* else edge__door_ws_upgrade frees it */
}

static bool offers(const char *list, const char *p)
{
    size_t n = strlen(p);
    for (const char *q = list; q != NULL && *q;) {
        while (*q == ' ' || *q == ',') q++;
        size_t l = strcspn(q, ", ");
        if (l == n && strncasecmp(q, p, n) == 0) return true;
        q += l;
    }
    return false;
}

void edge__door_ws_upgrade(struct door *d, struct edge_http_conn *c, struct edge_http_req *req)
{
    if (strncmp(req->path, "/v1/", 4) == 0 || strcmp(req->path, "/v1") == 0) {
        /* the regions' own upgrades (/v1/peer: replication between regions, /v1/realtime)
         * are not Hrana and are never relayed */
        edge_http_respond_error(c, 404, "NOT_FOUND", "the router relays Hrana WebSocket sessions only");
        return;
    }
    const char *protos = edge_http_header(req, "sec-websocket-protocol");
    /* JSON only: the door reads the messages (hrana3-protobuf is not offered back, and
     * @libsql/client then speaks hrana3 in JSON) */
    const char *chosen = offers(protos, "hrana3")   ? "hrana3"
                         : offers(protos, "hrana2") ? "hrana2"
                         : offers(protos, "hrana1") ? "hrana1"
                                                    : NULL;
    if (protos != NULL && chosen == NULL) {
        edge_http_respond_error(c, 400, "WS_PROTOCOL_UNSUPPORTED", "no supported WebSocket subprotocol offered");
        return;
    }
    struct edge_door_wss *s = edge_calloc(1, sizeof(*s));
    if (s == NULL || edge__door_wst_new(&s->st) != EDGE_OK) {
        edge_free(s);
        edge_http_respond_error(c, 503, "INTERNAL", "out of memory");
        return;
    }
    s->d = d;
    s->region = -1;
    s->next = d->ws_head;
    if (d->ws_head) d->ws_head->prev = s;
    d->ws_head = s;
    snprintf(s->proto, sizeof(s->proto), "%s", chosen ? chosen : "");
    snprintf(s->path, sizeof(s->path), "%s", req->path[0] == '/' && strlen(req->path) < 500 ? req->path : "/");
    snprintf(s->ryw_key, sizeof(s->ryw_key), "w:%p", (void *)s);
    s->client = c;
    edge_http_conn_ref(c);
    /* the handler first: the accept delivers at once the client's messages that came right
     * behind the upgrade request (they are queued until the region is up) */
    edge_http_conn_set_ws_handler(c, on_client_msg, on_client_close, s);
    s->accepting = true;
    int rv = edge_http_ws_accept(c, chosen);
    s->accepting = false;
    if (rv != EDGE_OK || s->client_gone) {
        if (rv != EDGE_OK) edge_http_conn_set_ws_handler(c, NULL, NULL, NULL);
        wss_free(s);
        return;
    }
    connect_next(s);
}
