/* SPDX-License-Identifier: MIT */
/* /v1/sessions: distributed sessions over HTTP (docs/sessions.md, sessions/sessions.h).
 *
 * DESIGN
 * Reads (GET) run inline on the loop that received them, on its read connection and its
 * shared read snapshot: a point read, an XChaCha20-Poly1305 open and a zstd frame, no
 * writer, no lock but the HLC's. A read slides the TTL without a synchronous write:
 *  - at the home, the loop queues the id when the new expiry would move the stored one
 *    by at least max(1 s, ttl/10), and every sessions.touch_interval_ms one writer job
 *    applies the loop's queue (one UPDATE per id, deduplicated);
 *  - elsewhere, the loop queues the id for an access report to the home, sent on the
 *    same tick (POST /v1/_sessions/access with the cluster secret); the home slides the
 *    TTL by its own clock and counts the access toward migration.
 * So after a read the stored expiry is at most max(1 s, ttl/10) + one tick (+ one WAN
 * hop for a remote read) behind the ideal now + ttl; a GET answers the slid value.
 *
 * Writes run at the home: a write at another region is forwarded there on the loop
 * (net/httpc_async.h), and answered once this region has applied the home's entry (its
 * bookmark), so a read here after the write sees it. The home's writer job checks home,
 * epoch and version in its transaction (the fence, sessions/table.c). A write that
 * finds the row moved answers 421 to a forwarder, which retries at the new home; at
 * the new home itself it waits until the handover entry is applied there.
 *
 * Migration: the home counts, per session, the consecutive accesses reported by one
 * other region (any access at the home, or from a third region, restarts the count).
 * At sessions.migrate_after the home writes home = that region, epoch + 1 through the
 * log, unless the target is at regions[].capacity.max_sessions (counted by reason).
 *
 * GC: loop 0 submits one bounded step (sessions.gc_batch rows) every
 * sessions.gc_interval_ms, one at a time; each step's run time feeds a max gauge. Only
 * the home deletes, and the deletes replicate; expired rows are invisible everywhere
 * before that because every read compares expires_at with the node's clock. */
#include "api/sessions_int.h"

#include <http_parser.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/log.h"
#include "net/httpc.h"
#include "net/httpc_async.h"
#include "sessions/sessions.h"

/* ------------------------------------------------------------------------------------
 * Small helpers
 * ---------------------------------------------------------------------------------- */

int edge__sess_idlist_add(struct idlist *l, const char *id)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        if (cap > 1000000) return EDGE_ETOOBIG;
        char **p = edge_realloc(l->ids, cap * sizeof(*p));
        if (p == NULL) return EDGE_ENOMEM;
        l->ids = p;
        l->cap = cap;
    }
    l->ids[l->n] = edge_strdup(id);
    if (l->ids[l->n] == NULL) return EDGE_ENOMEM;
    l->n++;
    return EDGE_OK;
}

void edge__sess_idlist_free(struct idlist *l)
{
    for (size_t i = 0; i < l->n; i++) edge_free(l->ids[i]);
    edge_free(l->ids);
    memset(l, 0, sizeof(*l));
}

int edge__sess_region_index(struct edge_node *n, const char *id)
{
    const struct edge_conf *c = n->cfg.conf;
    for (size_t i = 0; c != NULL && i < c->n_regions; i++) {
        if (strcmp(c->regions[i].id, id) == 0) return (int)i;
    }
    return -1;
}

void edge__sess_respond(struct edge_node *n, struct edge_http_conn *c, uint64_t start_ns, int status,
                         const char *extra, const char *body, size_t len)
{
    edge__api_observe(n, EP_SESSIONS, start_ns, status >= 400);
    if (!edge_http_conn_is_closed(c)) edge_http_respond(c, status, "application/json", extra, body, len);
}

void edge__sess_error(struct edge_node *n, struct edge_http_conn *c, uint64_t start_ns, int status,
                        const char *code, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
void edge__sess_error(struct edge_node *n, struct edge_http_conn *c, uint64_t start_ns, int status,
                        const char *code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    edge__api_observe(n, EP_SESSIONS, start_ns, true);
    if (!edge_http_conn_is_closed(c)) edge_http_respond_error(c, status, code, msg);
}

/* ------------------------------------------------------------------------------------
 * GET
 * ---------------------------------------------------------------------------------- */

/* Is the link to region up, and how far is its clock from ours? Asked of the peer link at
 * most every 250 ms per loop. */
static struct sess_peer *peer_info(struct loop *l, const char *region)
{
    struct edge__sess_loop *sl = l->sess;
    struct edge_node *n = l->node;
    int idx = edge__sess_region_index(n, region);
    if (idx < 0) return false;
    struct sess_peer *p = &sl->peers[idx];
    uint64_t now = mono_ms();
    if (p->up_checked_ms != 0 && now - p->up_checked_ms < 250) return p;
    struct edge_peer_status ps;
    bool up = false;
    if (edge__api_peer_link_status(n, region, &ps)) {
        up = ps.connected;
        p->offset_known = ps.clock_offset_known;
        p->offset_ms = ps.clock_offset_ms;
    }
    p->up = up;
    p->up_checked_ms = now;
    return p;
}

bool edge__sess_peer_up(struct loop *l, const char *region)
{
    struct sess_peer *p = peer_info(l, region);
    return p != NULL && p->up;
}

/* Expiry follows the home's clock: a session homed elsewhere is judged by this node's
 * estimate of the home's wall clock (ours plus the measured offset), so a region whose
 * clock runs ahead or behind neither kills it early nor keeps it alive late. */
int64_t edge__sess_home_now(struct loop *l, const char *home)
{
    struct edge_node *n = l->node;
    int64_t now = edge__sess_now(n);
    if (strcmp(home, n->region) == 0) return now;
    struct sess_peer *p = peer_info(l, home);
    if (p != NULL && p->offset_known) now += (int64_t)(p->offset_ms + (p->offset_ms < 0 ? -0.5 : 0.5));
    return now;
}

static void sess_get(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req, const char *id)
{
    struct edge_node *n = l->node;
    struct edge__sess *s = n->sess;
    atomic_fetch_add(&s->reads, 1);
    struct edge_sess_row row;
    edge_buf_init(&row.blob, (size_t)1 << 26);
    edge__api_read_snapshot(l);
    int rv = edge_sess_get(l->rconn, id, &row);
    int64_t now = rv == EDGE_OK ? edge__sess_home_now(l, row.home) : 0;
    if (rv == EDGE_ENOTFOUND || (rv == EDGE_OK && row.expires_at <= now)) {
        edge_buf_free(&row.blob);
        atomic_fetch_add(&s->misses, 1);
        edge__sess_error(n, c, req->start_ns, 404, "SESSION_NOT_FOUND", "no such session (or it expired)");
        return;
    }
    if (rv != EDGE_OK) {
        edge_buf_free(&row.blob);
        edge__sess_error(n, c, req->start_ns, 503, "SESSION_READ_FAILED", "cannot read the session");
        return;
    }
    struct edge_buf plain;
    edge_buf_init(&plain, (size_t)1 << 26);
    rv = edge__sess_cache_open(l, id, row.key_id, row.blob.data, row.blob.len, &plain);
    edge_buf_free(&row.blob);
    if (rv != EDGE_OK) {
        edge_buf_free(&plain);
        atomic_fetch_add(&s->decrypt_errors, 1);
        edge__sess_error(n, c, req->start_ns, 500, "SESSION_UNREADABLE",
                    "the stored session cannot be opened with the configured keys (%s)",
                    rv == EDGE_ENOTFOUND ? "its key id is not in sessions.key_file" : "authentication failed");
        return;
    }
    atomic_fetch_add(&s->hits, 1);
    int64_t exp = row.expires_at;
    bool home = strcmp(row.home, n->region) == 0;
    bool stale = false;
    int64_t slid = now + row.ttl_ms < row.max_expires_at ? now + row.ttl_ms : row.max_expires_at;
    int64_t step = row.ttl_ms / 10 > SESS_TOUCH_MIN_STEP_MS ? row.ttl_ms / 10 : SESS_TOUCH_MIN_STEP_MS;
    if (home) {
        edge__sess_track_home(s, id);
        if (slid >= row.expires_at + step && edge__sess_idlist_add(&l->sess->touch, id) == EDGE_OK) {
            exp = slid;
            edge__sess_tick_arm(l);
        }
    } else {
        int idx = edge__sess_region_index(n, row.home);
        if (idx >= 0 && edge__sess_idlist_add(&l->sess->peers[idx].report, id) == EDGE_OK) edge__sess_tick_arm(l);
        stale = !edge__sess_peer_up(l, row.home);
        if (stale) atomic_fetch_add(&s->stale_reads, 1);
    }
    struct edge_buf b;
    edge_buf_init(&b, (size_t)1 << 27);
    edge_buf_puts(&b, "{\"id\":");
    edge_buf_json_cstr(&b, id);
    edge_buf_puts(&b, ",\"data\":");
    edge_buf_append(&b, plain.data, plain.len);
    edge_buf_puts(&b, ",\"home\":");
    edge_buf_json_cstr(&b, row.home);
    edge_buf_puts(&b, ",\"version\":");
    edge_buf_i64(&b, row.version);
    edge_buf_puts(&b, ",\"epoch\":");
    edge_buf_i64(&b, row.epoch);
    edge_buf_puts(&b, ",\"expires_at\":");
    edge_buf_i64(&b, exp);
    edge_buf_puts(&b, stale ? ",\"stale\":true}" : ",\"stale\":false}");
    sodium_memzero(plain.data, plain.len);
    edge_buf_free(&plain);
    edge__sess_respond(n, c, req->start_ns, 200, stale ? "X-Edge-Stale: 1\r\n" : NULL, b.data, b.len);
    sodium_memzero(b.data, b.len);
    edge_buf_free(&b);
}

/* ------------------------------------------------------------------------------------
 * Entry points
 * ---------------------------------------------------------------------------------- */

static void list_cb(void *ud, const char *id)
{
    struct edge_buf *b = ud;
    if (b->data[b->len - 1] != '[') edge_buf_putc(b, ',');
    edge_buf_json_cstr(b, id);
}

/* A query parameter's value (decoded %XX is not needed: ids are plain ASCII). */
static bool query_param(const char *q, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    for (const char *p = q; p != NULL && *p; p = strchr(p, '&') ? strchr(p, '&') + 1 : NULL) {
        if (strncmp(p, name, nl) == 0 && p[nl] == '=') {
            const char *v = p + nl + 1;
            size_t len = strcspn(v, "&");
            if (len >= cap) return false;
            memcpy(out, v, len);
            out[len] = '\0';
            return true;
        }
    }
    return false;
}

/* GET /v1/sessions?prefix=P&after=ID&limit=N: live ids in id order (for stores that
 * count or clear their own sessions), next_after for the next page. */
static void sess_list(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req)
{
    struct edge_node *n = l->node;
    char prefix[EDGE_SESS_ID_MAX + 1] = "", after[EDGE_SESS_ID_MAX + 1] = "", lim[16] = "100";
    const char *q = req->query ? req->query : "";
    bool ok = true;
    if (strstr(q, "prefix=") != NULL) ok = query_param(q, "prefix", prefix, sizeof(prefix));
    if (ok && strstr(q, "after=") != NULL) ok = query_param(q, "after", after, sizeof(after));
    if (ok && strstr(q, "limit=") != NULL) ok = query_param(q, "limit", lim, sizeof(lim));
    char *end = NULL;
    long limit = strtol(lim, &end, 10);
    for (const char *p = prefix; ok && *p; p++) ok = (*p >= 0x21 && *p < 0x7f);
    if (!ok || end == lim || *end != '\0' || limit < 1 || limit > 1000) {
        edge__sess_error(n, c, req->start_ns, 400, "SESSION_BAD_REQUEST",
                    "expected ?prefix=P&after=ID&limit=1..1000 (ids are printable ASCII)");
        return;
    }
    struct edge_buf b;
    edge_buf_init(&b, 1 << 22);
    edge_buf_puts(&b, "{\"ids\":[");
    edge__api_read_snapshot(l);
    int rv = edge_sess_list(l->rconn, prefix, after, edge__sess_now(n), (int)limit, list_cb, &b);
    if (rv != EDGE_OK) {
        edge_buf_free(&b);
        edge__sess_error(n, c, req->start_ns, 503, "SESSION_READ_FAILED", "cannot list the sessions");
        return;
    }
    edge_buf_puts(&b, "]}");
    edge__sess_respond(n, c, req->start_ns, 200, NULL, b.data, b.len);
    edge_buf_free(&b);
}

static bool parse_if_match(const char *h, int64_t *out)
{
    *out = -1;
    if (h == NULL) return true;
    const char *p = h;
    if (strncmp(p, "W/", 2) == 0) p += 2;
    bool q = *p == '"';
    if (q) p++;
    char *end = NULL;
    if (*p < '0' || *p > '9') return false;
    long long v = strtoll(p, &end, 10);
    if (q) {
        if (*end != '"') return false;
        end++;
    }
    if (*end != '\0' || v < 0) return false;
    *out = v;
    return true;
}

bool edge__sess_ready(struct edge_node *n, struct edge_http_conn *c, struct edge_http_req *req)
{
    if (n->sess != NULL && n->sess->enabled) return true;
    edge__sess_error(n, c, req->start_ns, 503, "SESSIONS_DISABLED", "%s",
                n->sess ? n->sess->why_disabled : "sessions are not available");
    return false;
}

void edge__api_sessions_handle(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req, const char *rest)
{
    struct edge_node *n = l->node;
    if (!edge__sess_ready(n, c, req)) return;
    bool collection = rest == NULL;
    size_t idlen = collection ? 0 : strlen(rest);
    if (!collection && !edge_sess_id_valid(rest, idlen)) {
        edge__sess_error(n, c, req->start_ns, 400, "SESSION_BAD_ID",
                    "a session id is 1 to %d characters of [A-Za-z0-9_.-], not starting with '_' or '.'",
                    EDGE_SESS_ID_MAX);
        return;
    }
    int m = req->method;
    if (collection && (m == HTTP_GET || m == HTTP_HEAD)) {
        sess_list(l, c, req);
        return;
    }
    if (collection && m != HTTP_POST) {
        edge__sess_error(n, c, req->start_ns, 405, "METHOD_NOT_ALLOWED", "POST /v1/sessions creates a session");
        return;
    }
    if (!collection && (m == HTTP_GET || m == HTTP_HEAD)) {
        sess_get(l, c, req, rest);
        return;
    }
    if (!collection && m != HTTP_PUT && m != HTTP_PATCH && m != HTTP_DELETE) {
        edge__sess_error(n, c, req->start_ns, 405, "METHOD_NOT_ALLOWED",
                    "a session answers GET, PUT, PATCH and DELETE");
        return;
    }
    int64_t if_match;
    const char *imh = edge_http_header(req, "if-match");
    if (!parse_if_match(imh, &if_match) || (imh != NULL && strlen(imh) >= 32)) {
        edge__sess_error(n, c, req->start_ns, 400, "SESSION_BAD_REQUEST", "If-Match must be a session version (an integer)");
        return;
    }
    edge__sess_write_start(l, c, req, rest, if_match, imh);
}

static void totals(struct loop *l, int64_t *live, int64_t *sealed, int64_t *raw, int64_t *rows)
{
    struct edge__sess *s = l->node->sess;
    uint64_t now = mono_ms();
    pthread_mutex_lock(&s->totals_mu);
    bool fresh = s->totals_at_ms != 0 && now - s->totals_at_ms < 1000;
    *live = s->live;
    *sealed = s->sealed;
    *raw = s->raw;
    *rows = s->rows;
    pthread_mutex_unlock(&s->totals_mu);
    if (fresh) return;
    edge__api_read_snapshot(l);
    if (edge_sess_totals(l->rconn, edge__sess_now(l->node), live, sealed, raw, rows) != EDGE_OK) return;
    pthread_mutex_lock(&s->totals_mu);
    s->totals_at_ms = now;
    s->live = *live;
    s->sealed = *sealed;
    s->raw = *raw;
    s->rows = *rows;
    pthread_mutex_unlock(&s->totals_mu);
}

void edge__api_sessions_stats_handle(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req)
{
    struct edge_node *n = l->node;
    if (!edge__sess_ready(n, c, req)) return;
    struct edge__sess *s = n->sess;
    int64_t live, sealed, raw, rows;
    totals(l, &live, &sealed, &raw, &rows);
    uint64_t reads = atomic_load(&s->reads), hits = atomic_load(&s->hits);
    uint64_t rw = atomic_load(&s->raw_bytes_written), sw = atomic_load(&s->sealed_bytes_written);
    struct edge_buf b;
    edge_buf_init(&b, 1 << 16);
    edge_buf_puts(&b, "{\"region\":");
    edge_buf_json_cstr(&b, n->region);
    edge_buf_printf(&b,
                    ",\"live\":%" PRId64 ",\"rows\":%" PRId64 ",\"bytes_stored\":%" PRId64
                    ",\"bytes_raw\":%" PRId64 ",\"compression_ratio\":",
                    live, rows, sealed, raw);
    edge_buf_json_double(&b, sealed > 0 ? (double)raw / (double)sealed : 0);
    edge_buf_printf(&b, ",\"reads\":%" PRIu64 ",\"hits\":%" PRIu64 ",\"misses\":%" PRIu64 ",\"hit_rate\":", reads, hits,
                    atomic_load(&s->misses));
    edge_buf_json_double(&b, reads > 0 ? (double)hits / (double)reads : 0);
    edge_buf_printf(&b,
                    ",\"stale_reads\":%" PRIu64 ",\"creates\":%" PRIu64 ",\"writes\":%" PRIu64 ",\"deletes\":%" PRIu64
                    ",\"forwards\":%" PRIu64 ",\"forward_errors\":%" PRIu64 ",\"write_compression_ratio\":",
                    atomic_load(&s->stale_reads), atomic_load(&s->creates), atomic_load(&s->writes),
                    atomic_load(&s->deletes), atomic_load(&s->forwards), atomic_load(&s->forward_errors));
    edge_buf_json_double(&b, sw > 0 ? (double)rw / (double)sw : 0);
    edge_buf_printf(&b, ",\"migrations\":{\"in\":%" PRIu64 ",\"out\":%" PRIu64 ",\"refused\":{",
                    atomic_load(&s->migrations_in), atomic_load(&s->migrations_out));
    for (int i = 0; i < SESS_REFUSE_REASONS; i++) {
        edge_buf_printf(&b, "%s\"%s\":%" PRIu64, i ? "," : "", edge__sess_refuse_names[i], atomic_load(&s->refused[i]));
    }
    edge_buf_printf(&b,
                    "}},\"expirations\":%" PRIu64 ",\"touches\":%" PRIu64 ",\"gc\":{\"steps\":%" PRIu64
                    ",\"max_step_ms\":",
                    atomic_load(&s->expirations), atomic_load(&s->touches), atomic_load(&s->gc_steps));
    edge_buf_json_double(&b, (double)atomic_load(&s->gc_max_us) / 1000.0);
    edge_buf_puts(&b, ",\"last_step_ms\":");
    edge_buf_json_double(&b, (double)atomic_load(&s->gc_last_us) / 1000.0);
    edge_buf_puts(&b, ",\"max_step_wall_ms\":");
    edge_buf_json_double(&b, (double)atomic_load(&s->gc_max_wall_us) / 1000.0);
    edge_buf_printf(&b, "},\"read_cache\":{\"hits\":%" PRIu64 ",\"misses\":%" PRIu64 ",\"evictions\":%" PRIu64
                    ",\"entries\":%" PRId64 ",\"bytes\":%" PRId64,
                    atomic_load(&s->cache_hits), atomic_load(&s->cache_misses), atomic_load(&s->cache_evictions),
                    atomic_load(&s->cache_entries), atomic_load(&s->cache_bytes));
    edge_buf_printf(&b, "},\"decrypt_errors\":%" PRIu64 ",\"reports\":{\"sent\":%" PRIu64 ",\"errors\":%" PRIu64
                    ",\"answered\":%" PRIu64 ",\"received\":%" PRIu64 "}"
                    ",\"partition\":{\"mode\":\"%s\",\"writes\":%" PRIu64 ",\"merges\":%" PRIu64 "}}",
                    atomic_load(&s->decrypt_errors), atomic_load(&s->reports_sent), atomic_load(&s->report_errors),
                    atomic_load(&s->reports_answered), atomic_load(&s->reports_received),
                    edge__sess_available(n) ? "available" : "unavailable", atomic_load(&s->partition_writes),
                    atomic_load(&n->repl.stats.session_merges));
    edge__sess_respond(n, c, req->start_ns, 200, NULL, b.data, b.len);
    edge_buf_free(&b);
}

void edge__api_sessions_metrics(struct loop *l, struct edge_buf *b)
{
    struct edge_node *n = l->node;
    struct edge__sess *s = n->sess;
    if (s == NULL || !s->enabled) return;
    int64_t live, sealed, raw, rows;
    totals(l, &live, &sealed, &raw, &rows);
    edge_buf_printf(b,
                    "edgelite_sessions_live %" PRId64 "\nedgelite_sessions_rows %" PRId64
                    "\nedgelite_sessions_bytes_stored %" PRId64 "\nedgelite_sessions_bytes_raw %" PRId64 "\n",
                    live, rows, sealed, raw);
    edge_buf_printf(b,
                    "edgelite_sessions_reads_total %" PRIu64 "\nedgelite_sessions_hits_total %" PRIu64
                    "\nedgelite_sessions_misses_total %" PRIu64 "\nedgelite_sessions_stale_reads_total %" PRIu64
                    "\nedgelite_sessions_forwards_total %" PRIu64 "\nedgelite_sessions_forward_errors_total %" PRIu64
                    "\nedgelite_sessions_migrations_in_total %" PRIu64 "\nedgelite_sessions_migrations_out_total %" PRIu64
                    "\n",
                    atomic_load(&s->reads), atomic_load(&s->hits), atomic_load(&s->misses),
                    atomic_load(&s->stale_reads), atomic_load(&s->forwards), atomic_load(&s->forward_errors),
                    atomic_load(&s->migrations_in), atomic_load(&s->migrations_out));
    for (int i = 0; i < SESS_REFUSE_REASONS; i++) {
        edge_buf_printf(b, "edgelite_sessions_migrations_refused_total{reason=\"%s\"} %" PRIu64 "\n", edge__sess_refuse_names[i],
                        atomic_load(&s->refused[i]));
    }
    edge_buf_printf(b,
                    "edgelite_sessions_expirations_total %" PRIu64 "\nedgelite_sessions_touches_total %" PRIu64
                    "\nedgelite_sessions_gc_steps_total %" PRIu64 "\nedgelite_sessions_gc_step_max_seconds %.6f\n"
                    "edgelite_sessions_gc_step_max_wall_seconds %.6f\n"
                    "edgelite_sessions_decrypt_errors_total %" PRIu64 "\nedgelite_sessions_compression_ratio %.4f\n"
                    "edgelite_sessions_access_reports_received_total %" PRIu64 "\n"
                    "edgelite_sessions_partition_writes_total %" PRIu64 "\n"
                    "edgelite_sessions_partition_merges_total %" PRIu64 "\n"
                    "edgelite_sessions_read_cache_hits_total %" PRIu64 "\n"
                    "edgelite_sessions_read_cache_misses_total %" PRIu64 "\n"
                    "edgelite_sessions_read_cache_evictions_total %" PRIu64 "\n"
                    "edgelite_sessions_read_cache_entries %" PRId64 "\n"
                    "edgelite_sessions_read_cache_bytes %" PRId64 "\n",
                    atomic_load(&s->expirations), atomic_load(&s->touches), atomic_load(&s->gc_steps),
                    (double)atomic_load(&s->gc_max_us) / 1e6, (double)atomic_load(&s->gc_max_wall_us) / 1e6,
                    atomic_load(&s->decrypt_errors),
                    sealed > 0 ? (double)raw / (double)sealed : 0.0, atomic_load(&s->reports_received),
                    atomic_load(&s->partition_writes), atomic_load(&n->repl.stats.session_merges),
                    atomic_load(&s->cache_hits), atomic_load(&s->cache_misses), atomic_load(&s->cache_evictions),
                    atomic_load(&s->cache_entries), atomic_load(&s->cache_bytes));
}

/* ------------------------------------------------------------------------------------
 * Life cycle
 * ---------------------------------------------------------------------------------- */

int edge__api_sessions_open(struct edge_node *n, sqlite3 *wdb, char *errmsg, size_t errmsg_len)
{
    struct edge__sess *s = edge_calloc(1, sizeof(*s));
    if (s == NULL) return EDGE_ENOMEM;
    pthread_mutex_init(&s->track_mu, NULL);
    pthread_mutex_init(&s->totals_mu, NULL);
    pthread_rwlock_init(&s->submit_lock, NULL);
    n->sess = s;
    const struct edge_conf *c = n->cfg.conf;
    s->conf = c != NULL ? c->sessions : (struct edge_conf_sessions)EDGE_CONF_SESSIONS_DEFAULTS;
    s->conf.key_file = NULL; /* borrowed fields are not kept */
    s->self_code = edge__sess_track_code(edge__sess_region_index(n, n->region));
    if (edge_sess_schema(wdb) != EDGE_OK) {
        snprintf(errmsg, errmsg_len, "cannot create the sessions table: %s", sqlite3_errmsg(wdb));
        return EDGE_ESTORE;
    }
    int rv;
    if (c != NULL && c->sessions.key_file != NULL) {
        rv = edge_sess_keys_load(c->sessions.key_file, &s->keys, errmsg, errmsg_len);
        if (rv != EDGE_OK) return rv; /* a configured key file must be right: stop start-up */
    } else if (n->repl.cluster) {
        snprintf(s->why_disabled, sizeof(s->why_disabled),
                 "sessions need sessions.key_file in a cluster: every region must hold the same keys");
        return EDGE_OK;
    } else {
        char path[4200];
        snprintf(path, sizeof(path), "%s/sessions.key", n->data_dir);
        rv = edge_sess_keys_ensure(path, &s->keys, errmsg, errmsg_len);
        if (rv != EDGE_OK) return rv;
    }
    s->enabled = true;
    return EDGE_OK;
}

void edge__api_sessions_quiesce(struct edge_node *n)
{
    struct edge__sess *s = n->sess;
    if (s == NULL) return;
    pthread_rwlock_wrlock(&s->submit_lock);
    s->closed = true;
    pthread_rwlock_unlock(&s->submit_lock);
}

void edge__api_sessions_free(struct edge_node *n)
{
    struct edge__sess *s = n->sess;
    if (s == NULL) return;
    edge__sess_track_clear(s);
    edge_sess_keys_wipe(&s->keys);
    pthread_mutex_destroy(&s->track_mu);
    pthread_mutex_destroy(&s->totals_mu);
    pthread_rwlock_destroy(&s->submit_lock);
    edge_free(s);
    n->sess = NULL;
}

/* The end of a loop iteration's I/O, and the moment before the loop blocks: the client
 * writes gathered since go to the writer (edge__sess_job_submit). */
static void on_plug_check(uv_check_t *h) { edge__api_sessions_flush(h->data); }
static void on_plug_prep(uv_prepare_t *h) { edge__api_sessions_flush(h->data); }

int edge__api_sessions_loop_init(struct loop *l)
{
    struct edge_node *n = l->node;
    struct edge__sess_loop *sl = edge_calloc(1, sizeof(*sl));
    if (sl == NULL) return EDGE_ENOMEM;
    l->sess = sl;
    sl->l = l;
    /* the timers first: loop_stop closes them whatever fails after */
    uv_timer_init(&l->loop, &sl->tick);
    sl->tick.data = l;
    uv_timer_init(&l->loop, &sl->gc_timer);
    sl->gc_timer.data = l;
    uv_check_init(&l->loop, &sl->plug_check);
    sl->plug_check.data = l;
    uv_check_start(&sl->plug_check, on_plug_check);
    uv_unref((uv_handle_t *)&sl->plug_check);
    uv_prepare_init(&l->loop, &sl->plug_prep);
    sl->plug_prep.data = l;
    uv_prepare_start(&sl->plug_prep, on_plug_prep);
    uv_unref((uv_handle_t *)&sl->plug_prep);
    size_t np = n->cfg.conf != NULL ? n->cfg.conf->n_regions : 0;
    if (np > 0) {
        sl->peers = edge_calloc(np, sizeof(*sl->peers));
        if (sl->peers == NULL) return EDGE_ENOMEM;
        sl->n_peers = np;
    }
    if (l->idx == 0 && n->sess != NULL && n->sess->enabled) {
        uint64_t every = (uint64_t)n->sess->conf.gc_interval_ms;
        uv_timer_start(&sl->gc_timer, edge__sess_on_gc, every, every);
    }
    return EDGE_OK;
}

void edge__api_sessions_loop_stop(struct loop *l)
{
    struct edge__sess_loop *sl = l->sess;
    if (sl == NULL) return;
    uv_close((uv_handle_t *)&sl->tick, NULL);
    uv_close((uv_handle_t *)&sl->gc_timer, NULL);
    edge__api_sessions_flush(l);
    uv_close((uv_handle_t *)&sl->plug_check, NULL);
    uv_close((uv_handle_t *)&sl->plug_prep, NULL);
    for (size_t i = 0; i < sl->n_peers; i++) {
        edge_httpca_close(sl->peers[i].pool);
        sl->peers[i].pool = NULL;
    }
}

void edge__api_sessions_loop_free(struct loop *l)
{
    struct edge__sess_loop *sl = l->sess;
    if (sl == NULL) return;
    edge__sess_idlist_free(&sl->touch);
    edge__sess_cache_free(l);
    for (size_t i = 0; i < sl->n_peers; i++) edge__sess_idlist_free(&sl->peers[i].report);
    edge_free(sl->peers);
    edge_free(sl);
    l->sess = NULL;
}
