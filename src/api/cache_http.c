/* SPDX-License-Identifier: MIT */
/* The hot-read cache in the node (router/router.h, docs/router.md): which pipelines it
 * answers, how a miss becomes a fill, the commit guard that puts a table's commit in
 * flight before its COMMIT and out after it (repl/feed.h), and the change-feed listener
 * that bumps a table's generation after every commit that wrote it, local or applied
 * from a peer.
 *
 * Only the shape @libsql/client's execute() sends is cached: a pipeline of one execute
 * with its SQL text and a close, no baton, not inside a transaction, not strong, with no
 * bookmark left to wait for; the cached value is the results of that pipeline (the
 * baton is null and the stream closed, so the answer is the same for everyone). */
#include "api/node_int.h"

#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "repl/feed.h"
#include "store/sql.h"

int edge__api_cache_key(json_t *stmt, int version, struct edge_buf *out)
{
    json_t *sql = json_object_get(stmt, "sql");
    if (!json_is_string(sql)) return EDGE_EINVAL;
    json_t *wr = json_object_get(stmt, "want_rows");
    int rv = edge_buf_printf(out, "v%d%c%c", version, json_is_false(wr) ? '0' : '1', 0);
    if (rv == EDGE_OK) rv = edge_buf_append(out, json_string_value(sql), json_string_length(sql));
    const char *parts[] = {"args", "named_args"};
    for (int i = 0; i < 2 && rv == EDGE_OK; i++) {
        json_t *a = json_object_get(stmt, parts[i]);
        char *t = a != NULL && !(json_is_array(a) && json_array_size(a) == 0) ? json_dumps(a, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY) : NULL;
        rv = edge_buf_putc(out, 0);
        if (rv == EDGE_OK && t != NULL) rv = edge_buf_puts(out, t);
        free(t);
    }
    return rv;
}

/* {"type":"execute","stmt":{...}} then {"type":"close"}: the statement, else NULL. */
static json_t *single_execute(json_t *requests, size_t nreq)
{
    if (nreq != 2) return NULL;
    json_t *r0 = json_array_get(requests, 0), *r1 = json_array_get(requests, 1);
    const char *t0 = json_string_value(json_object_get(r0, "type"));
    const char *t1 = json_string_value(json_object_get(r1, "type"));
    if (t0 == NULL || t1 == NULL || strcmp(t0, "execute") != 0 || strcmp(t1, "close") != 0) return NULL;
    return json_object_get(r0, "stmt");
}

bool edge__api_cache_try(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req, json_t *requests,
                         size_t nreq, int version, int mode, char **fill_key, size_t *fill_klen,
                         struct edge_router_cache_gens *fill_gens)
{
    struct edge_node *n = l->node;
    json_t *stmt = single_execute(requests, nreq);
    if (stmt == NULL) return false;
    struct edge_buf key;
    edge_buf_init(&key, 1u << 20);
    if (edge__api_cache_key(stmt, version, &key) != EDGE_OK) {
        edge_buf_free(&key);
        return false;
    }
    struct edge_buf val;
    edge_buf_init(&val, (size_t)1 << 30);
    bool hit = edge_router_cache_get(n->cache, key.data, key.len, &val);
    uint16_t bml = 0;
    if (hit && val.len >= sizeof(uint64_t) + sizeof(bml)) memcpy(&bml, val.data + sizeof(uint64_t), sizeof(bml));
    if (hit && val.len >= sizeof(uint64_t) + sizeof(bml) + bml) {
        uint64_t rows;
        memcpy(&rows, val.data, sizeof(rows));
        /* The fill's snapshot vector: the answer is what a read on that snapshot saw. */
        char bm[EDGE_API_BOOKMARK_MAX];
        size_t head = sizeof(rows) + sizeof(bml) + bml;
        bm[0] = '\0';
        if (bml < sizeof(bm)) {
            memcpy(bm, val.data + sizeof(rows) + sizeof(bml), bml);
            bm[bml] = '\0';
        }
        struct edge_buf resp;
        edge_buf_init(&resp, (size_t)1 << 31);
        int rv = edge_buf_puts(&resp, "{\"baton\":null,\"base_url\":null,\"results\":[");
        if (rv == EDGE_OK) rv = edge_buf_append(&resp, val.data + head, val.len - head);
        if (rv == EDGE_OK) rv = edge_buf_puts(&resp, ",{\"type\":\"ok\",\"response\":{\"type\":\"close\"}}]}");
        if (rv == EDGE_OK) {
            json_t *sql = json_object_get(stmt, "sql");
            edge_router_stats_record(n->stats, json_string_value(sql), json_string_length(sql), n->region,
                                     uv_hrtime() - req->start_ns, rows, false, true);
            atomic_fetch_add(&n->m.stmts, 1);
            atomic_fetch_add(&n->m.rows, rows);
            edge__api_pipeline_answer_bm(n, c, mode, bm[0] ? bm : NULL, resp.data, resp.len, req->start_ns);
        } else {
            edge__api_respond_error(n, c, req, EP_PIPELINE, 500, "RESPONSE_TOO_LARGE", "the response is too large");
        }
        edge_buf_free(&resp);
        edge_buf_free(&val);
        edge_buf_free(&key);
        return true;
    }
    edge_buf_free(&val);
    bool admitted = edge_router_cache_admit(n->cache, key.data, key.len, mono_ms());
    if (admitted) {
        /* What SQLite says it reads: only deterministic reads of known tables are kept. */
        struct edge_router_class cls;
        memset(&cls, 0, sizeof(cls));
        json_t *sql = json_object_get(stmt, "sql");
        edge_router_classify(l->rconn, json_string_value(sql), json_string_length(sql), &cls);
        if (!cls.writes && !cls.unknown && !cls.txctl && !cls.ddl && !cls.nondeterministic && !cls.overflow &&
            cls.n_stmts == 1) {
            edge_router_cache_gens(n->cache, cls.read, cls.n_read, fill_gens);
            /* a commit to one of its tables in flight: the put would refuse it anyway */
            if (!edge_router_cache_busy(n->cache, fill_gens)) {
                *fill_klen = key.len;
                *fill_key = key.data; /* taken over */
                key.data = NULL;
            }
        }
    }
    edge_buf_free(&key);
    return false;
}

/* The unit's answer is its out: the results of the execute (then the close). Kept with
 * the rows it returned and the bookmark of the snapshot it read (u16 length, text) in
 * front. */
void edge__api_cache_fill(struct unit *u)
{
    struct edge_node *n = u->loop->node;
    const char *out = u->out.data ? u->out.data : "";
    /* out is "<execute result>,<close result>": keep the first, the close is the same always */
    size_t cut = u->out.len;
    const char *tail = ",{\"type\":\"ok\",\"response\":{\"type\":\"close\"}}";
    size_t tl = strlen(tail);
    if (cut < tl || memcmp(out + cut - tl, tail, tl) != 0) return; /* not the expected shape: not cached */
    cut -= tl;
    struct edge_buf v;
    edge_buf_init(&v, (size_t)1 << 30);
    uint64_t rows = u->ctx.rows;
    const char *bm = u->loop->snap_open ? u->loop->snap_bm : "";
    uint16_t bml = (uint16_t)strlen(bm);
    if (edge_buf_append(&v, &rows, sizeof(rows)) == EDGE_OK && edge_buf_append(&v, &bml, sizeof(bml)) == EDGE_OK &&
        edge_buf_append(&v, bm, bml) == EDGE_OK && edge_buf_append(&v, out, cut) == EDGE_OK) {
        edge_router_cache_put(n->cache, u->cache_key, u->cache_klen, &u->cache_gens, v.data, v.len);
    }
    edge_buf_free(&v);
}

/* The change feed: after every durable entry, each table it wrote moves on. */
static void on_entry(void *ud, const struct edge_feed_entry *e)
{
    struct edge_node *n = ud;
    for (size_t i = 0; i < e->n_ops; i++) {
        const struct edge_feed_op *op = &e->ops[i];
        if (op->kind == EDGE_FEED_DDL) {
            edge_router_cache_bump_all(n->cache);
        } else if (op->table != NULL) {
            edge_router_cache_bump(n->cache, op->table, op->table_len);
        }
    }
}

static void on_reset(void *ud)
{
    struct edge_node *n = ud;
    edge_router_cache_bump_all(n->cache);
}

/* The commit guard (repl/feed.h): a commit site is about to COMMIT a write to table. Each
 * slot is entered once per mark; past EDGE_FEED_MARK_MAX slots, everything. */
static void guard_mark(void *ud, const char *table, size_t len, struct edge_feed_mark *m)
{
    struct edge_node *n = ud;
    if (m->all) return;
    if (table == NULL || m->n == EDGE_FEED_MARK_MAX) {
        m->all = true;
        edge_router_cache_enter(n->cache, EDGE_ROUTER_CACHE_ALL);
        return;
    }
    uint32_t slot = edge_router_cache_slot(table, len);
    for (int i = 0; i < m->n; i++) {
        if (m->key[i] == slot) {
            /* marked already (a COMMIT tried again): only move the generation */
            edge_router_cache_bump(n->cache, table, len);
            return;
        }
    }
    m->key[m->n++] = slot;
    edge_router_cache_enter(n->cache, slot);
}

static void guard_unmark(void *ud, struct edge_feed_mark *m)
{
    struct edge_node *n = ud;
    for (int i = 0; i < m->n; i++) edge_router_cache_leave(n->cache, m->key[i]);
    if (m->all) edge_router_cache_leave(n->cache, EDGE_ROUTER_CACHE_ALL);
    m->n = 0;
    m->all = false;
}

static int64_t schema_version(sqlite3 *db)
{
    return edge_store_query_int(db, "PRAGMA schema_version", -1);
}

/* A single node's writer (no change capture, so no tables): a group that changed rows or
 * the schema puts everything in flight before its COMMIT and takes it out after. Groups
 * that changed nothing (the writer also runs housekeeping) leave the cache alone: the
 * connection's total of changed rows and the schema cookie tell. */
static int single_before_commit(void *ud, struct edge_store_conn *conn, int consistency, uint64_t *out_seq)
{
    (void)consistency;
    struct edge_node *n = ud;
    sqlite3 *db = edge_store_db(conn);
    *out_seq = 0;
    int64_t ch = sqlite3_total_changes64(db), sv = schema_version(db);
    if (ch != n->cache_w_changes || sv != n->cache_w_schema || sv < 0) edge_feed_mark_all(&n->repl, &n->repl.wmark);
    n->cache_w_changes = ch;
    n->cache_w_schema = sv;
    return EDGE_OK;
}

static void single_after_commit(void *ud, uint64_t seq, int consistency)
{
    (void)seq;
    (void)consistency;
    struct edge_node *n = ud;
    edge_feed_unmark(&n->repl, &n->repl.wmark);
}

static void single_after_rollback(void *ud)
{
    struct edge_node *n = ud;
    edge_feed_unmark(&n->repl, &n->repl.wmark);
}

bool edge__api_cache_writer_hooks(struct edge_node *n, struct edge_writer_hooks *hooks)
{
    if (n->repl.cluster || n->cache == NULL) return false;
    memset(hooks, 0, sizeof(*hooks));
    hooks->ud = n;
    hooks->before_commit = single_before_commit;
    hooks->after_commit = single_after_commit;
    hooks->after_rollback = single_after_rollback;
    return true;
}

int edge__api_cache_open(struct edge_node *n)
{
    const struct edge_conf *conf = n->cfg.conf;
    /* Without a configuration: router.cache's defaults (conf_router.c). */
    bool enabled = conf == NULL || conf->router.cache_enabled;
    int max_bytes = conf != NULL ? conf->router.cache_max_bytes : 16 * 1024 * 1024;
    int admit_after = conf != NULL ? conf->router.cache_admit_after : 2;
    int window_ms = conf != NULL ? conf->router.cache_window_ms : 10000;
    if (!enabled || max_bytes <= 0) return EDGE_OK;
    int rv = edge_router_cache_new((size_t)max_bytes, admit_after, (uint64_t)window_ms, &n->cache);
    if (rv != EDGE_OK) return rv;
    struct edge_feed_listener fl = {on_entry, on_reset, n};
    rv = edge_feed_listen(&n->repl, &fl);
    if (rv != EDGE_OK) {
        edge_router_cache_free(n->cache);
        n->cache = NULL;
        return rv;
    }
    struct edge_feed_guard g = {guard_mark, guard_unmark, n};
    edge_feed_guard_set(&n->repl, &g);
    return rv;
}

void edge__api_cache_close(struct edge_node *n)
{
    if (n->cache == NULL) return;
    edge_feed_guard_set(&n->repl, NULL); /* every committing thread has stopped */
    edge_feed_unlisten(&n->repl, n);
    edge_router_cache_free(n->cache);
    n->cache = NULL;
}
