/* SPDX-License-Identifier: MIT */
#include "store/store.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/alloc.h"
#include "core/log.h"

#define CACHE_SLOTS 64
#define EDGE_STORE_MMAP_BYTES (256 << 20)

struct cache_entry {
    char *sql;
    const char *src; /* the caller's text at its last hit (a static string, mostly): no hash needed */
    size_t len;
    size_t tail;
    uint64_t hash;
    sqlite3_stmt *stmt; /* NULL when the slot is free or the statement is in use */
    sqlite3_stmt *out;  /* the statement while it is checked out */
    uint64_t last_use;
    bool sandboxed; /* prepared under the sandbox: served only to sandboxed callers */
};

struct edge_store_conn {
    sqlite3 *db;
    enum edge_store_mode mode;
    struct cache_entry cache[CACHE_SLOTS];
    uint64_t tick;
    uint64_t deadline_ns; /* 0 = none */
    bool budget_hit;
    bool sandbox;           /* client SQL is being prepared or run (edge_store_sandbox) */
    const char *preparing;  /* the text being prepared, for CREATE TRIGGER bodies */
    size_t preparing_len;
    char refusal[160];      /* why the sandbox refused the last statement, "" if it did not */
    uint64_t id;            /* edge_store_conn_id */
    int busy_ms;            /* the busy timeout, for edge_store_step */
    edge_store_observer observer;
    void *observer_ud;
};

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int edge_store_global_init(char *errmsg, size_t errmsg_len)
{
    /* Debian's SQLite keeps allocation statistics behind one global mutex; turning
     * them off roughly doubles multi-threaded read throughput (PERF-NOTES.md). */
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    sqlite3_config(SQLITE_CONFIG_MULTITHREAD);
    /* SQLITE_CONFIG_STMTJRNL_SPILL stays at its default (64 KiB): with SQLite 3.40.1 a
     * statement journal that spills to its temp file past a larger threshold (256 KiB and
     * up, tried) fails the statement with SQLITE_FULL, which stopped replication of large
     * entries (bench/repl.sh, 100-row writes); -1 (never spill) would hold a huge
     * statement's original pages in memory. */
    if (sqlite3_initialize() != SQLITE_OK) {
        snprintf(errmsg, errmsg_len, "sqlite3_initialize failed");
        return EDGE_ESTORE;
    }
    if (!sqlite3_compileoption_used("ENABLE_SESSION") || !sqlite3_compileoption_used("ENABLE_PREUPDATE_HOOK")) {
        snprintf(errmsg, errmsg_len,
                 "SQLite %s lacks SQLITE_ENABLE_SESSION/SQLITE_ENABLE_PREUPDATE_HOOK, needed for change capture",
                 sqlite3_libversion());
        return EDGE_ESTORE;
    }
    return EDGE_OK;
}

static int progress_cb(void *arg)
{
    struct edge_store_conn *c = arg;
    if (c->deadline_ns != 0 && mono_ns() > c->deadline_ns) {
        c->budget_hit = true;
        return 1;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------- */
/* The sandbox for client SQL                                                         */
/* ---------------------------------------------------------------------------------- */

static bool is_edge_name(const char *name)
{
    return name != NULL && strncasecmp(name, "_edge_", 6) == 0;
}

static bool ident_char(unsigned char ch)
{
    return ch == '_' || ch == '$' || ch >= 0x80 || (ch >= '0' && ch <= '9') || ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'z');
}

/* Whether the text names an identifier starting with _edge_ (quoted or not): a name
 * cannot be computed in SQL, so it must appear literally. "is_edge_case" does not count. */
static bool text_mentions_edge(const char *s, size_t len)
{
    for (size_t i = 0; s != NULL && i + 6 <= len; i++) {
        if (strncasecmp(s + i, "_edge_", 6) == 0 && (i == 0 || !ident_char((unsigned char)s[i - 1]))) return true;
    }
    return false;
}

/* PRAGMAs a client may give an argument: they only report (table_info(t)), or last only
 * for the current transaction (defer_foreign_keys). Any other PRAGMA with a value would
 * change the database file or the shared connection for every later client. */
static bool pragma_arg_allowed(const char *name)
{
    static const char *const ok[] = {"table_info",   "table_xinfo",      "table_list",        "index_info",
                                     "index_xinfo",  "index_list",       "foreign_key_list",  "foreign_key_check",
                                     "integrity_check", "quick_check",   "defer_foreign_keys", NULL};
    for (int i = 0; name != NULL && ok[i] != NULL; i++) {
        if (strcasecmp(name, ok[i]) == 0) return true;
    }
    return false;
}

static int refuse(struct edge_store_conn *c, const char *fmt, const char *what)
{
    snprintf(c->refusal, sizeof(c->refusal), fmt, what ? what : "");
    return SQLITE_DENY;
}

static int sandbox_check(struct edge_store_conn *c, int action, const char *a, const char *b)
{
    switch (action) {
    case SQLITE_ATTACH:
    case SQLITE_DETACH:
        return refuse(c, "%sATTACH and DETACH are not allowed (and VACUUM, which attaches)", "");
    case SQLITE_FUNCTION:
        if (b != NULL && strcasecmp(b, "load_extension") == 0) {
            return refuse(c, "%sload_extension() is not allowed", "");
        }
        return SQLITE_OK;
    case SQLITE_PRAGMA:
        if (b != NULL && a != NULL && strcasecmp(a, "foreign_keys") == 0) {
            /* Client writes always run inside a transaction here (the writer's group, a
             * stream's BEGIN), where SQLite itself ignores this PRAGMA; ignoring it keeps
             * @libsql/client's migrate(), which sends foreign_keys=off/on, working. */
            return SQLITE_IGNORE;
        }
        if (b != NULL && !pragma_arg_allowed(a)) {
            return refuse(c, "PRAGMA %s with a value is not allowed: it would change the database or the "
                             "connection for every client", a);
        }
        return SQLITE_OK;
    case SQLITE_READ:
        return is_edge_name(a) ? refuse(c, "reading %s is not allowed: _edge_* tables are edgelite's own", a)
                               : SQLITE_OK;
    case SQLITE_CREATE_VIEW:
        /* Reading through a view is checked when it is used, but a view over edgelite's
         * tables would still land in the schema (and replicate): refused as triggers are. */
        if (is_edge_name(a) || text_mentions_edge(c->preparing, c->preparing_len)) {
            return refuse(c, "%sa view may not name an _edge_* table", "");
        }
        return SQLITE_OK;
    case SQLITE_INSERT:
    case SQLITE_UPDATE:
    case SQLITE_DELETE:
    case SQLITE_CREATE_TABLE:
    case SQLITE_DROP_TABLE:
    case SQLITE_DROP_VIEW:
        return is_edge_name(a) ? refuse(c, "writing %s is not allowed: _edge_* tables are edgelite's own", a)
                               : SQLITE_OK;
    case SQLITE_ALTER_TABLE:
        /* The new name of a RENAME is not an argument: look for it in the text. */
        if (!is_edge_name(b) && text_mentions_edge(c->preparing, c->preparing_len)) {
            return refuse(c, "%sa table may not be renamed into the _edge_* names", "");
        }
        /* fall through */
    case SQLITE_CREATE_INDEX:
    case SQLITE_DROP_INDEX:
    case SQLITE_DROP_TRIGGER:
        return is_edge_name(b) || is_edge_name(a)
                   ? refuse(c, "changing %s is not allowed: _edge_* tables are edgelite's own", is_edge_name(b) ? b : a)
                   : SQLITE_OK;
    case SQLITE_CREATE_TRIGGER:
        /* A trigger body is authorized only when it fires, perhaps inside edgelite's own
         * statements; so a trigger that names an _edge_* table is refused up front. */
        if (is_edge_name(b) || text_mentions_edge(c->preparing, c->preparing_len)) {
            return refuse(c, "%sa trigger may not name an _edge_* table", "");
        }
        return SQLITE_OK;
    case SQLITE_CREATE_TEMP_TABLE:
    case SQLITE_CREATE_TEMP_INDEX:
    case SQLITE_CREATE_TEMP_TRIGGER:
    case SQLITE_CREATE_TEMP_VIEW:
        /* Connections are shared between clients: a TEMP object would outlive the request
         * and shadow tables for the next client (or for edgelite itself). */
        return refuse(c, "%sTEMP tables, views, indexes and triggers are not allowed", "");
    default:
        return SQLITE_OK;
    }
}

static int store_authorizer(void *ud, int action, const char *a, const char *b, const char *dbname,
                            const char *trigger)
{
    struct edge_store_conn *c = ud;
    int rc = SQLITE_OK;
    if (c->sandbox) {
        rc = sandbox_check(c, action, a, b);
    } else if (trigger != NULL && is_edge_name(a) &&
               (action == SQLITE_INSERT || action == SQLITE_UPDATE || action == SQLITE_DELETE)) {
        /* edgelite's own statements never fire a trigger that writes its tables. */
        rc = refuse(c, "writing %s from a trigger is not allowed", a);
    }
    if (rc == SQLITE_OK && c->observer != NULL) {
        rc = c->observer(c->observer_ud, action, a, b, dbname, trigger);
    }
    return rc;
}

void edge_store_sandbox(struct edge_store_conn *c, bool on)
{
    c->sandbox = on;
    if (on) c->refusal[0] = '\0';
}

bool edge_store_sandboxed(const struct edge_store_conn *c) { return c->sandbox; }

const char *edge_store_refusal(const struct edge_store_conn *c) { return c->refusal; }

void edge_store_observe(struct edge_store_conn *c, edge_store_observer fn, void *ud)
{
    c->observer = fn;
    c->observer_ud = ud;
}

int edge_store_prepare_once(struct edge_store_conn *c, const char *sql, size_t len, sqlite3_stmt **out_stmt,
                            size_t *out_tail)
{
    const char *tail = NULL;
    if (len > 0x7fffffff) {
        *out_stmt = NULL;
        return SQLITE_TOOBIG;
    }
    c->preparing = sql;
    c->preparing_len = len;
    c->refusal[0] = '\0';
    int rc = sqlite3_prepare_v2(c->db, sql, (int)len, out_stmt, &tail);
    c->preparing = NULL;
    if (out_tail != NULL) *out_tail = tail ? (size_t)(tail - sql) : len;
    return rc;
}

int edge_store_open(const char *path, enum edge_store_mode mode, bool synchronous_full, int busy_ms,
                    struct edge_store_conn **out, char *errmsg, size_t errmsg_len)
{
    int rv = EDGE_ESTORE;
    struct edge_store_conn *c = edge_calloc(1, sizeof(*c));
    if (c == NULL) {
        return EDGE_ENOMEM;
    }
    c->mode = mode;
    static atomic_uint_fast64_t next_id = 1;
    c->id = atomic_fetch_add(&next_id, 1);
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    int rc = sqlite3_open_v2(path, &c->db, flags, NULL);
    if (rc != SQLITE_OK) {
        snprintf(errmsg, errmsg_len, "open %s: %s", path, c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
        goto out;
    }
    sqlite3_extended_result_codes(c->db, 0);
    sqlite3_busy_timeout(c->db, busy_ms);
    c->busy_ms = busy_ms;
    char sql[256];
    /* mmap_size: pages of the database file are read from the mapping rather than by a
     * pread per cache miss (the WAL is still read by pread). For writing connections:
     * cache_size keeps up to 16 MiB of pages (the writer thread's connection is the one
     * writer, so its pages stay valid across its transactions; the default 2 MiB is less
     * than the row, row-metadata and log pages a replicating node keeps rewriting), and
     * wal_autocheckpoint lets the WAL reach 8192 pages (32 MiB) before it is folded into
     * the database: with the default 1000, a random-key write load rewrote (and synced)
     * the same pages so often that checkpoints took about a fifth of a node's CPU; each
     * page written several times between two checkpoints is now written back once. */
    snprintf(sql, sizeof(sql),
             "PRAGMA journal_mode=WAL; PRAGMA synchronous=%s; PRAGMA foreign_keys=ON; PRAGMA mmap_size=%d;%s",
             synchronous_full ? "FULL" : "NORMAL", EDGE_STORE_MMAP_BYTES,
             mode == EDGE_STORE_READ ? " PRAGMA query_only=1;"
                                     : " PRAGMA cache_size=-16384; PRAGMA wal_autocheckpoint=8192;");
    char *err = NULL;
    /* journal_mode=WAL needs a moment without other writers; retry on BUSY. */
    for (int i = 0; i < 50; i++) {
        sqlite3_free(err);
        err = NULL;
        rc = sqlite3_exec(c->db, sql, NULL, NULL, &err);
        if (rc != SQLITE_BUSY && rc != SQLITE_LOCKED) {
            break;
        }
        sqlite3_sleep(20);
    }
    if (rc != SQLITE_OK) {
        snprintf(errmsg, errmsg_len, "configure %s: %s", path, err ? err : sqlite3_errstr(rc));
        sqlite3_free(err);
        goto out;
    }
    sqlite3_progress_handler(c->db, 1000, progress_cb, c);
    /* No connection ever attaches another file; clients are refused ATTACH by the
     * sandbox, and the limit holds even where the authorizer is not asked. */
    sqlite3_limit(c->db, SQLITE_LIMIT_ATTACHED, 0);
    sqlite3_set_authorizer(c->db, store_authorizer, c);
    *out = c;
    c = NULL;
    rv = EDGE_OK;
out:
    edge_store_close(c);
    return rv;
}

void edge_store_close(struct edge_store_conn *c)
{
    if (c == NULL) {
        return;
    }
    for (int i = 0; i < CACHE_SLOTS; i++) {
        sqlite3_finalize(c->cache[i].stmt);
        sqlite3_finalize(c->cache[i].out);
        edge_free(c->cache[i].sql);
    }
    if (c->db != NULL) {
        if (!sqlite3_get_autocommit(c->db)) {
            sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
        }
        /* Statements other layers keep prepared for the connection's lifetime (the
         * replication code's) end with it. */
        sqlite3_stmt *st;
        while ((st = sqlite3_next_stmt(c->db, NULL)) != NULL) {
            sqlite3_finalize(st);
        }
        sqlite3_close_v2(c->db);
    }
    edge_free(c);
}

sqlite3 *edge_store_db(struct edge_store_conn *c) { return c->db; }

/* SQLite calls the busy handler only for a transaction that is not open yet: a deferred
 * transaction that has read and now writes gets SQLITE_BUSY at once while another
 * connection holds the write lock (the writer thread's group, a housekeeping job), even
 * when that one commits nothing. In WAL mode waiting is sound: the read snapshot stays,
 * and if the holder commits changes the next try answers SQLITE_BUSY_SNAPSHOT, which no
 * wait cures and which goes back to the client. So the step is tried again within the
 * busy timeout (and the statement budget), with the back-off of SQLite's own handler. */
int edge_store_step(struct edge_store_conn *c, sqlite3_stmt *st)
{
    static const int delays_ms[] = {1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100};
    const size_t n_delays = sizeof(delays_ms) / sizeof(delays_ms[0]);
    /* The time counted is the time since the first try, not the sum of our sleeps: a
     * transaction that has not read yet holds no snapshot, so SQLite's own handler runs
     * inside each try and waits the busy timeout there too (a first try that waited 5 s
     * must not be followed by minutes of more tries). */
    uint64_t start = mono_ns();
    int rc = sqlite3_step(st);
    for (size_t i = 0; rc == SQLITE_BUSY && sqlite3_extended_errcode(c->db) == SQLITE_BUSY &&
                       !sqlite3_get_autocommit(c->db) && !sqlite3_stmt_readonly(st);
         i++) {
        uint64_t now = mono_ns();
        if (c->deadline_ns != 0 && now >= c->deadline_ns) break;
        uint64_t spent_ms = (now - start) / 1000000u;
        if (spent_ms >= (uint64_t)c->busy_ms) break;
        int d = delays_ms[i < n_delays ? i : n_delays - 1];
        if ((uint64_t)d > (uint64_t)c->busy_ms - spent_ms) d = (int)((uint64_t)c->busy_ms - spent_ms);
        sqlite3_sleep(d);
        sqlite3_reset(st);
        rc = sqlite3_step(st);
    }
    return rc;
}

uint64_t edge_store_conn_id(const struct edge_store_conn *c) { return c->id; }

static uint64_t fnv1a(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

int edge_store_prepare(struct edge_store_conn *c, const char *sql, size_t len, sqlite3_stmt **out_stmt,
                       size_t *out_tail)
{
    c->tick++;
    c->refusal[0] = '\0';
    /* The same text at the same address as at the entry's last hit: the caller's static
     * SQL. Its FNV-1a hash, byte by byte, was about 3,700 instructions of a session PUT's
     * UPDATE; the memcmp still decides (a buffer can be reused for another text). */
    for (int i = 0; i < CACHE_SLOTS; i++) {
        struct cache_entry *e = &c->cache[i];
        if (e->stmt != NULL && e->src == sql && e->len == len && e->sandboxed == c->sandbox &&
            memcmp(e->sql, sql, len) == 0) {
            *out_stmt = e->stmt;
            *out_tail = e->tail;
            e->out = e->stmt;
            e->stmt = NULL;
            e->last_use = c->tick;
            return SQLITE_OK;
        }
    }
    uint64_t h = fnv1a(sql, len);
    for (int i = 0; i < CACHE_SLOTS; i++) {
        struct cache_entry *e = &c->cache[i];
        if (e->stmt != NULL && e->hash == h && e->len == len && e->sandboxed == c->sandbox &&
            memcmp(e->sql, sql, len) == 0) {
            e->src = sql;
            *out_stmt = e->stmt;
            *out_tail = e->tail;
            e->out = e->stmt;
            e->stmt = NULL; /* in use; comes back through edge_store_release */
            e->last_use = c->tick;
            return SQLITE_OK;
        }
    }
    const char *tail = NULL;
    if (len > 0x7fffffff) {
        return SQLITE_TOOBIG;
    }
    c->preparing = sql;
    c->preparing_len = len;
    int rc = sqlite3_prepare_v3(c->db, sql, (int)len, SQLITE_PREPARE_PERSISTENT, out_stmt, &tail);
    c->preparing = NULL;
    *out_tail = tail ? (size_t)(tail - sql) : len;
    return rc;
}

void edge_store_release(struct edge_store_conn *c, sqlite3_stmt *stmt)
{
    if (stmt == NULL) {
        return;
    }
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
    /* Fast path: a statement checked out of the cache goes back to its slot. */
    for (int i = 0; i < CACHE_SLOTS; i++) {
        if (c->cache[i].out == stmt) {
            c->cache[i].stmt = stmt;
            c->cache[i].out = NULL;
            return;
        }
    }
    const char *sql = sqlite3_sql(stmt);
    size_t len = sql ? strlen(sql) : 0;
    /* Only statements that were a whole SQL text are cached (keyed by that text). */
    if (sql == NULL || len == 0 || len > 4096) {
        sqlite3_finalize(stmt);
        return;
    }
    uint64_t h = fnv1a(sql, len);
    int victim = -1;
    uint64_t oldest = UINT64_MAX;
    for (int i = 0; i < CACHE_SLOTS; i++) {
        struct cache_entry *e = &c->cache[i];
        if (e->sql != NULL && e->stmt == NULL && e->out == NULL && e->hash == h && e->len == len &&
            e->sandboxed == c->sandbox && memcmp(e->sql, sql, len) == 0) {
            e->stmt = stmt;
            return;
        }
        if (e->stmt == NULL && e->sql == NULL && e->out == NULL) {
            if (victim < 0 || oldest != 0) {
                victim = i;
                oldest = 0;
            }
        } else if (e->stmt != NULL && e->last_use < oldest) {
            victim = i;
            oldest = e->last_use;
        }
    }
    if (victim < 0) {
        sqlite3_finalize(stmt);
        return;
    }
    struct cache_entry *e = &c->cache[victim];
    char *copy = edge_strndup(sql, len);
    if (copy == NULL) {
        sqlite3_finalize(stmt);
        return;
    }
    sqlite3_finalize(e->stmt);
    edge_free(e->sql);
    e->sql = copy;
    e->src = NULL;
    e->len = len;
    e->tail = len;
    e->hash = h;
    e->stmt = stmt;
    e->last_use = c->tick;
    e->sandboxed = c->sandbox; /* callers release in the mode they prepared in */
}

void edge_store_set_budget(struct edge_store_conn *c, uint64_t budget_ms)
{
    c->budget_hit = false;
    c->deadline_ns = budget_ms ? mono_ns() + budget_ms * 1000000u : 0;
}

bool edge_store_budget_hit(struct edge_store_conn *c) { return c->budget_hit; }

const char *edge_store_code_name(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_OK: return "SQLITE_OK";
    case SQLITE_ERROR: return "SQLITE_ERROR";
    case SQLITE_INTERNAL: return "SQLITE_INTERNAL";
    case SQLITE_PERM: return "SQLITE_PERM";
    case SQLITE_ABORT: return "SQLITE_ABORT";
    case SQLITE_BUSY: return "SQLITE_BUSY";
    case SQLITE_LOCKED: return "SQLITE_LOCKED";
    case SQLITE_NOMEM: return "SQLITE_NOMEM";
    case SQLITE_READONLY: return "SQLITE_READONLY";
    case SQLITE_INTERRUPT: return "SQLITE_INTERRUPT";
    case SQLITE_IOERR: return "SQLITE_IOERR";
    case SQLITE_CORRUPT: return "SQLITE_CORRUPT";
    case SQLITE_NOTFOUND: return "SQLITE_NOTFOUND";
    case SQLITE_FULL: return "SQLITE_FULL";
    case SQLITE_CANTOPEN: return "SQLITE_CANTOPEN";
    case SQLITE_PROTOCOL: return "SQLITE_PROTOCOL";
    case SQLITE_SCHEMA: return "SQLITE_SCHEMA";
    case SQLITE_TOOBIG: return "SQLITE_TOOBIG";
    case SQLITE_CONSTRAINT: return "SQLITE_CONSTRAINT";
    case SQLITE_MISMATCH: return "SQLITE_MISMATCH";
    case SQLITE_MISUSE: return "SQLITE_MISUSE";
    case SQLITE_AUTH: return "SQLITE_AUTH";
    case SQLITE_RANGE: return "SQLITE_RANGE";
    case SQLITE_NOTADB: return "SQLITE_NOTADB";
    default: return "SQLITE_UNKNOWN";
    }
}

int edge__err_from_sqlite(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_ROW:
    case SQLITE_DONE: return EDGE_OK;
    case SQLITE_NOMEM: return EDGE_ENOMEM;
    case SQLITE_BUSY:
    case SQLITE_LOCKED: return EDGE_EBUSY;
    case SQLITE_CONSTRAINT: return EDGE_ECONFLICT;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB: return EDGE_ECORRUPT;
    case SQLITE_IOERR:
    case SQLITE_FULL: return EDGE_EIO;
    case SQLITE_TOOBIG: return EDGE_ETOOBIG;
    case SQLITE_INTERRUPT: return EDGE_ETIMEDOUT;
    default: return EDGE_ESTORE;
    }
}

/* Skip whitespace and SQL comments. */
static size_t skip_space(const char *s, size_t n, size_t i)
{
    while (i < n) {
        if (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r' || s[i] == '\f') {
            i++;
        } else if (s[i] == '-' && i + 1 < n && s[i + 1] == '-') {
            while (i < n && s[i] != '\n') i++;
        } else if (s[i] == '/' && i + 1 < n && s[i + 1] == '*') {
            i += 2;
            while (i + 1 < n && !(s[i] == '*' && s[i + 1] == '/')) i++;
            i += 2;
        } else {
            break;
        }
    }
    return i;
}

static size_t word(const char *s, size_t n, size_t i, char *out, size_t outsz)
{
    size_t k = 0;
    while (i < n && ((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || s[i] == '_')) {
        if (k + 1 < outsz) out[k++] = s[i];
        i++;
    }
    out[k] = '\0';
    return i;
}

enum edge_txctl edge_store_txctl(const char *sql, size_t len)
{
    char w[16];
    size_t i = skip_space(sql, len, 0);
    i = word(sql, len, i, w, sizeof(w));
    if (strcasecmp(w, "BEGIN") == 0) {
        /* BEGIN [DEFERRED|IMMEDIATE|EXCLUSIVE] [TRANSACTION] [READONLY] */
        for (int k = 0; k < 3; k++) {
            i = skip_space(sql, len, i);
            i = word(sql, len, i, w, sizeof(w));
            if (strcasecmp(w, "READONLY") == 0) {
                return EDGE_TXCTL_BEGIN_READONLY;
            }
            if (w[0] == '\0') break;
        }
        return EDGE_TXCTL_BEGIN;
    }
    if (strcasecmp(w, "COMMIT") == 0 || strcasecmp(w, "END") == 0) return EDGE_TXCTL_END;
    if (strcasecmp(w, "ROLLBACK") == 0) {
        for (int k = 0; k < 2; k++) {
            i = skip_space(sql, len, i);
            i = word(sql, len, i, w, sizeof(w));
            if (strcasecmp(w, "TO") == 0) return EDGE_TXCTL_ROLLBACK_TO;
            if (strcasecmp(w, "TRANSACTION") != 0) break;
        }
        return EDGE_TXCTL_ROLLBACK;
    }
    if (strcasecmp(w, "SAVEPOINT") == 0) return EDGE_TXCTL_SAVEPOINT;
    if (strcasecmp(w, "RELEASE") == 0) return EDGE_TXCTL_RELEASE;
    return EDGE_TXCTL_NONE;
}

void edge_store_savepoint_name(const char *sql, size_t len, char *out, size_t outlen)
{
    /* The name is the last token: SAVEPOINT n | RELEASE [SAVEPOINT] n |
     * ROLLBACK [TRANSACTION] TO [SAVEPOINT] n. */
    size_t end = len;
    while (end > 0 && (sql[end - 1] == ';' || sql[end - 1] == ' ' || sql[end - 1] == '\n' || sql[end - 1] == '\t' ||
                       sql[end - 1] == '\r')) {
        end--;
    }
    size_t start = end;
    char q = end > 0 ? sql[end - 1] : 0;
    if (q == '"' || q == '\'' || q == '`' || q == ']') {
        char open = q == ']' ? '[' : q;
        start = end - 1;
        while (start > 0 && sql[start - 1] != open) start--;
        end--; /* drop the closing quote */
    } else {
        while (start > 0 && sql[start - 1] != ' ' && sql[start - 1] != '\n' && sql[start - 1] != '\t' &&
               sql[start - 1] != '\r') {
            start--;
        }
    }
    size_t n = end > start ? end - start : 0;
    if (n >= outlen) n = outlen - 1;
    memcpy(out, sql + start, n);
    out[n] = '\0';
}
