/* SPDX-License-Identifier: MIT */
/* The session table: its schema, point reads, and the writes of the home (sessions.h),
 * or of a region cut off from the home with sessions.partition_mode: available.
 * Every write runs on the writer connection inside the group transaction, so its checks
 * (is this still the home, at this epoch, at this version?) and its change are one
 * atomic step in the order the writer commits. */
#include "sessions/sessions.h"

#include <stdio.h>
#include <string.h>

#include "core/alloc.h"

int edge_sess_schema(sqlite3 *db)
{
    static const char sql[] =
        "CREATE TABLE IF NOT EXISTS _edge_sessions(id TEXT PRIMARY KEY, home TEXT NOT NULL,"
        " epoch INTEGER NOT NULL, version INTEGER NOT NULL, ttl_ms INTEGER NOT NULL, created_at INTEGER NOT NULL,"
        " expires_at INTEGER NOT NULL, max_expires_at INTEGER NOT NULL, key_id INTEGER NOT NULL,"
        " raw_len INTEGER NOT NULL, blob BLOB NOT NULL, vv TEXT NOT NULL DEFAULT '{}');"
        "CREATE INDEX IF NOT EXISTS _edge_sessions_home_exp ON _edge_sessions(home, expires_at);";
    if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK) return EDGE_ESTORE;
    /* A table made by an older build has no vv column: add it (every record starts at {}). */
    sqlite3_stmt *st = NULL;
    bool has_vv = false;
    if (sqlite3_prepare_v2(db, "SELECT 1 FROM pragma_table_info('_edge_sessions') WHERE name = 'vv'", -1, &st, NULL) !=
        SQLITE_OK) {
        return EDGE_ESTORE;
    }
    has_vv = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
    if (has_vv) return EDGE_OK;
    return sqlite3_exec(db, "ALTER TABLE _edge_sessions ADD COLUMN vv TEXT NOT NULL DEFAULT '{}'", NULL, NULL, NULL) ==
                   SQLITE_OK
               ? EDGE_OK
               : EDGE_ESTORE;
}

/* The session's version vector after a write by region r (NULL: unchanged): one more
 * write counted for r. Only sessions.partition_mode: available keeps it (docs/sessions.md). */
#define VV_BUMP(r) \
    "CASE WHEN " r " IS NULL THEN vv ELSE json_set(vv, '$.\"' || " r " || '\"', coalesce(json_extract(vv, '$.\"' || " r \
    " || '\"'), 0) + 1) END"

static int prep(struct edge_store_conn *conn, const char *sql, sqlite3_stmt **st)
{
    size_t tail;
    *st = NULL;
    if (edge_store_prepare(conn, sql, strlen(sql), st, &tail) != SQLITE_OK || *st == NULL) return EDGE_ESTORE;
    return EDGE_OK;
}

/* snprintf(dst, cap, "%s", src) without printf's machinery (about 570 instructions a
 * call; a GET and a PUT make several). */
static void copy_str(char *dst, size_t cap, const char *src)
{
    size_t n = strnlen(src, cap - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static void copy_text(char *dst, size_t cap, sqlite3_stmt *st, int col)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    copy_str(dst, cap, t ? (const char *)t : "");
}

int edge_sess_get(struct edge_store_conn *conn, const char *id, struct edge_sess_row *row)
{
    sqlite3_stmt *st;
    int rv = prep(conn,
                  "SELECT home, epoch, version, ttl_ms, created_at, expires_at, max_expires_at, key_id, raw_len, blob"
                  " FROM _edge_sessions WHERE id = ?1",
                  &st);
    if (rv != EDGE_OK) return rv;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int s = sqlite3_step(st);
    if (s == SQLITE_ROW) {
        copy_str(row->id, sizeof(row->id), id);
        copy_text(row->home, sizeof(row->home), st, 0);
        row->epoch = sqlite3_column_int64(st, 1);
        row->version = sqlite3_column_int64(st, 2);
        row->ttl_ms = sqlite3_column_int64(st, 3);
        row->created_at = sqlite3_column_int64(st, 4);
        row->expires_at = sqlite3_column_int64(st, 5);
        row->max_expires_at = sqlite3_column_int64(st, 6);
        row->key_id = (uint32_t)sqlite3_column_int64(st, 7);
        row->raw_len = sqlite3_column_int64(st, 8);
        edge_buf_reset(&row->blob);
        const void *b = sqlite3_column_blob(st, 9);
        rv = edge_buf_append(&row->blob, b ? b : "", (size_t)sqlite3_column_bytes(st, 9));
    } else {
        rv = s == SQLITE_DONE ? EDGE_ENOTFOUND : EDGE_ESTORE;
    }
    edge_store_release(conn, st);
    return rv;
}

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* The row as the writer sees it: absent, or its home, epoch, version and expiry. */
struct cur {
    bool exists, live;
    char home[EDGE_SESS_REGION_MAX + 1];
    int64_t epoch, version, ttl_ms, expires_at, max_expires_at;
};

static int read_cur(struct edge_store_conn *conn, const char *id, int64_t now, struct cur *c)
{
    sqlite3_stmt *st;
    memset(c, 0, sizeof(*c));
    int rv = prep(conn, "SELECT home, epoch, version, ttl_ms, expires_at, max_expires_at FROM _edge_sessions WHERE id = ?1",
                  &st);
    if (rv != EDGE_OK) return rv;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int s = sqlite3_step(st);
    if (s == SQLITE_ROW) {
        c->exists = true;
        copy_text(c->home, sizeof(c->home), st, 0);
        c->epoch = sqlite3_column_int64(st, 1);
        c->version = sqlite3_column_int64(st, 2);
        c->ttl_ms = sqlite3_column_int64(st, 3);
        c->expires_at = sqlite3_column_int64(st, 4);
        c->max_expires_at = sqlite3_column_int64(st, 5);
        c->live = c->expires_at > now;
    } else if (s != SQLITE_DONE) {
        rv = EDGE_ESTORE;
    }
    edge_store_release(conn, st);
    return rv;
}

static int step_done(struct edge_store_conn *conn, sqlite3_stmt *st)
{
    int s = sqlite3_step(st);
    edge_store_release(conn, st);
    return s == SQLITE_DONE ? EDGE_OK : EDGE_ESTORE;
}

static int do_create(struct edge_store_conn *conn, struct edge_sess_write *w, const struct cur *c)
{
    sqlite3_stmt *st;
    if (c->exists && c->live) {
        w->result = EDGE_SESS_EXISTS;
        return EDGE_OK;
    }
    int64_t max_exp = w->now_ms + w->lifetime_ms;
    int64_t exp = min64(w->now_ms + w->ttl_ms, max_exp);
    /* An expired row not yet collected is replaced; its epoch goes on growing, so a
     * replica can never take the old row's writes for the new one's. */
    int64_t epoch = c->exists ? c->epoch + 1 : 1;
    int rv = prep(conn,
                  "INSERT OR REPLACE INTO _edge_sessions(id, home, epoch, version, ttl_ms, created_at, expires_at,"
                  " max_expires_at, key_id, raw_len, blob, vv) VALUES (?1, ?2, ?3, 1, ?4, ?5, ?6, ?7, ?8, ?9, ?10,"
                  " CASE WHEN ?11 IS NULL THEN '{}' ELSE json_object(?11, 1) END)",
                  &st);
    if (rv != EDGE_OK) return rv;
    sqlite3_bind_text(st, 1, w->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, w->region, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, epoch);
    sqlite3_bind_int64(st, 4, w->ttl_ms);
    sqlite3_bind_int64(st, 5, w->now_ms);
    sqlite3_bind_int64(st, 6, exp);
    sqlite3_bind_int64(st, 7, max_exp);
    sqlite3_bind_int64(st, 8, (sqlite3_int64)w->key_id);
    sqlite3_bind_int64(st, 9, w->raw_len);
    sqlite3_bind_blob(st, 10, w->blob, (int)w->blob_len, SQLITE_STATIC);
    if (w->vv_region != NULL) sqlite3_bind_text(st, 11, w->vv_region, -1, SQLITE_STATIC);
    rv = step_done(conn, st);
    if (rv == EDGE_OK) {
        w->result = EDGE_SESS_OK;
        w->out_version = 1;
        w->out_epoch = epoch;
        w->out_expires_at = exp;
        copy_str(w->out_home, sizeof(w->out_home), w->region);
    }
    return rv;
}

static int do_replace(struct edge_store_conn *conn, struct edge_sess_write *w, const struct cur *c)
{
    sqlite3_stmt *st;
    if (w->base_version >= 0 && c->version != w->base_version) {
        w->result = EDGE_SESS_RETRY;
        return EDGE_OK;
    }
    /* A write is an access: it slides the TTL like a read. */
    int64_t ttl = w->ttl_ms > 0 ? w->ttl_ms : c->ttl_ms;
    int64_t exp = min64(w->now_ms + ttl, c->max_expires_at);
    if (exp < c->expires_at) exp = c->expires_at;
    int rv = prep(conn,
                  "UPDATE _edge_sessions SET version = ?2, ttl_ms = ?3, expires_at = ?4, key_id = ?5, raw_len = ?6,"
                  " blob = ?7, vv = " VV_BUMP("?8") " WHERE id = ?1",
                  &st);
    if (rv != EDGE_OK) return rv;
    sqlite3_bind_text(st, 1, w->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, c->version + 1);
    sqlite3_bind_int64(st, 3, ttl);
    sqlite3_bind_int64(st, 4, exp);
    sqlite3_bind_int64(st, 5, (sqlite3_int64)w->key_id);
    sqlite3_bind_int64(st, 6, w->raw_len);
    sqlite3_bind_blob(st, 7, w->blob, (int)w->blob_len, SQLITE_STATIC);
    if (w->vv_region != NULL) sqlite3_bind_text(st, 8, w->vv_region, -1, SQLITE_STATIC);
    rv = step_done(conn, st);
    if (rv == EDGE_OK) {
        w->result = EDGE_SESS_OK;
        w->out_version = c->version + 1;
        w->out_epoch = c->epoch;
        w->out_expires_at = exp;
        copy_str(w->out_home, sizeof(w->out_home), c->home);
    }
    return rv;
}

static int do_delete(struct edge_store_conn *conn, struct edge_sess_write *w)
{
    sqlite3_stmt *st;
    int rv = prep(conn, "DELETE FROM _edge_sessions WHERE id = ?1", &st);
    if (rv != EDGE_OK) return rv;
    sqlite3_bind_text(st, 1, w->id, -1, SQLITE_STATIC);
    rv = step_done(conn, st);
    if (rv == EDGE_OK) w->result = EDGE_SESS_OK;
    return rv;
}

static int do_migrate(struct edge_store_conn *conn, struct edge_sess_write *w, const struct cur *c)
{
    sqlite3_stmt *st;
    if (c->epoch != w->base_epoch) {
        w->result = EDGE_SESS_RETRY;
        return EDGE_OK;
    }
    int rv = prep(conn, "UPDATE _edge_sessions SET home = ?2, epoch = ?3, vv = " VV_BUMP("?4") " WHERE id = ?1", &st);
    if (rv != EDGE_OK) return rv;
    sqlite3_bind_text(st, 1, w->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, w->target, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, c->epoch + 1);
    if (w->vv_region != NULL) sqlite3_bind_text(st, 4, w->vv_region, -1, SQLITE_STATIC);
    rv = step_done(conn, st);
    if (rv == EDGE_OK) {
        w->result = EDGE_SESS_OK;
        w->out_epoch = c->epoch + 1;
        w->out_version = c->version;
        w->out_expires_at = c->expires_at;
        copy_str(w->out_home, sizeof(w->out_home), w->target);
    }
    return rv;
}

/* A replace that passes every check, as one statement: the row is found once instead of
 * being read and then found again to update it (the lookups of the writer's pages were
 * most of its time per PUT). *done is false when no row matched the checks: the caller
 * reads the row to say which one failed (nothing was written). The SET expressions see
 * the old row, as do_replace computes from it. */
static int fast_replace(struct edge_store_conn *conn, struct edge_sess_write *w, bool *done)
{
    sqlite3_stmt *st;
    *done = false;
    int rv = prep(conn,
                  "UPDATE _edge_sessions SET version = version + 1,"
                  " ttl_ms = CASE WHEN ?3 > 0 THEN ?3 ELSE ttl_ms END,"
                  " expires_at = max(expires_at, min(?4 + CASE WHEN ?3 > 0 THEN ?3 ELSE ttl_ms END, max_expires_at)),"
                  " key_id = ?5, raw_len = ?6, blob = ?7, vv = " VV_BUMP("?10")
                  " WHERE id = ?1 AND home = ?2 AND expires_at > ?4 AND (?8 < 0 OR version = ?8)"
                  " AND (?9 < 0 OR version = ?9)"
                  " RETURNING version, epoch, expires_at",
                  &st);
    if (rv != EDGE_OK) return rv;
    sqlite3_bind_text(st, 1, w->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, w->region, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, w->ttl_ms);
    sqlite3_bind_int64(st, 4, w->now_ms);
    sqlite3_bind_int64(st, 5, (sqlite3_int64)w->key_id);
    sqlite3_bind_int64(st, 6, w->raw_len);
    sqlite3_bind_blob(st, 7, w->blob, (int)w->blob_len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 8, w->if_match);
    sqlite3_bind_int64(st, 9, w->base_version);
    if (w->vv_region != NULL) sqlite3_bind_text(st, 10, w->vv_region, -1, SQLITE_STATIC);
    int s = sqlite3_step(st);
    if (s == SQLITE_ROW) {
        w->out_version = sqlite3_column_int64(st, 0);
        w->out_epoch = sqlite3_column_int64(st, 1);
        w->out_expires_at = sqlite3_column_int64(st, 2);
        s = sqlite3_step(st); /* the statement is complete only at SQLITE_DONE */
        if (s == SQLITE_DONE) {
            *done = true;
            w->result = EDGE_SESS_OK;
            copy_str(w->out_home, sizeof(w->out_home), w->region);
        }
    }
    edge_store_release(conn, st);
    return s == SQLITE_DONE ? EDGE_OK : EDGE_ESTORE;
}

int edge_sess_write(struct edge_store_conn *conn, struct edge_sess_write *w)
{
    struct cur c;
    w->result = EDGE_SESS_NOT_FOUND;
    w->out_home[0] = '\0';
    if (w->kind == EDGE_SESS_REPLACE && !w->partitioned) {
        bool done;
        int frv = fast_replace(conn, w, &done);
        if (frv != EDGE_OK || done) return frv;
    }
    int rv = read_cur(conn, w->id, w->now_ms, &c);
    if (rv != EDGE_OK) return rv;
    if (w->kind == EDGE_SESS_CREATE) return do_create(conn, w, &c);
    if (!c.exists) return EDGE_OK;
    /* The fence: only the home writes, at the epoch it holds now. Checked before expiry:
     * whether a session homed elsewhere has expired is for its home's clock to say. */
    if (strcmp(c.home, w->region) != 0 && !(w->partitioned && w->kind == EDGE_SESS_REPLACE)) {
        w->result = EDGE_SESS_MOVED;
        w->out_epoch = c.epoch;
        copy_str(w->out_home, sizeof(w->out_home), c.home);
        return EDGE_OK;
    }
    if (!c.live) return EDGE_OK;
    if (w->if_match >= 0 && c.version != w->if_match) {
        w->result = EDGE_SESS_VERSION;
        w->out_version = c.version;
        return EDGE_OK;
    }
    copy_str(w->out_home, sizeof(w->out_home), c.home);
    switch (w->kind) {
    case EDGE_SESS_REPLACE: return do_replace(conn, w, &c);
    case EDGE_SESS_DELETE: return do_delete(conn, w);
    case EDGE_SESS_MIGRATE: return do_migrate(conn, w, &c);
    case EDGE_SESS_CREATE: break;
    }
    return EDGE_EINVAL;
}

int edge_sess_touch(struct edge_store_conn *conn, const char *region, int64_t now_ms, int64_t min_step_ms,
                    char *const *ids, size_t n, size_t *out_touched)
{
    sqlite3_stmt *st;
    *out_touched = 0;
    int rv = prep(conn,
                  "UPDATE _edge_sessions SET expires_at = min(?3 + ttl_ms, max_expires_at)"
                  " WHERE id = ?1 AND home = ?2 AND expires_at > ?3"
                  " AND min(?3 + ttl_ms, max_expires_at) >= expires_at + max(?4, ttl_ms / 10)",
                  &st);
    if (rv != EDGE_OK) return rv;
    sqlite3 *db = edge_store_db(conn);
    for (size_t i = 0; i < n && rv == EDGE_OK; i++) {
        sqlite3_bind_text(st, 1, ids[i], -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, region, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, now_ms);
        sqlite3_bind_int64(st, 4, min_step_ms);
        if (sqlite3_step(st) != SQLITE_DONE) rv = EDGE_ESTORE;
        *out_touched += (size_t)sqlite3_changes(db);
        sqlite3_reset(st);
    }
    edge_store_release(conn, st);
    return rv;
}

int edge_sess_gc(struct edge_store_conn *conn, const char *region, int64_t now_ms, int limit, uint64_t budget_ns,
                 uint64_t (*clock_ns)(void), int *out_deleted)
{
    sqlite3_stmt *st;
    *out_deleted = 0;
    int rv = prep(conn,
                  "DELETE FROM _edge_sessions WHERE rowid IN (SELECT rowid FROM _edge_sessions"
                  " WHERE home = ?1 AND expires_at <= ?2 ORDER BY expires_at LIMIT ?3)",
                  &st);
    if (rv != EDGE_OK) return rv;
    /* Small chunks until the limit or the time budget: a step's length stays bounded
     * however costly each delete turns out (cold pages, large records). */
    uint64_t t0 = clock_ns();
    while (rv == EDGE_OK && *out_deleted < limit) {
        int chunk = limit - *out_deleted < 32 ? limit - *out_deleted : 32;
        sqlite3_bind_text(st, 1, region, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, now_ms);
        sqlite3_bind_int(st, 3, chunk);
        int s = sqlite3_step(st);
        sqlite3_reset(st);
        if (s != SQLITE_DONE) {
            rv = EDGE_ESTORE;
            break;
        }
        int got = sqlite3_changes(edge_store_db(conn));
        *out_deleted += got;
        if (got < chunk || clock_ns() - t0 >= budget_ns) break;
    }
    edge_store_release(conn, st);
    return rv;
}

int edge_sess_count_home(struct edge_store_conn *conn, const char *region, int64_t now_ms, int64_t *out)
{
    sqlite3_stmt *st;
    *out = 0;
    int rv = prep(conn, "SELECT count(*) FROM _edge_sessions WHERE home = ?1 AND expires_at > ?2", &st);
    if (rv != EDGE_OK) return rv;
    sqlite3_bind_text(st, 1, region, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, now_ms);
    if (sqlite3_step(st) == SQLITE_ROW) {
        *out = sqlite3_column_int64(st, 0);
    } else {
        rv = EDGE_ESTORE;
    }
    edge_store_release(conn, st);
    return rv;
}

int edge_sess_totals(struct edge_store_conn *conn, int64_t now_ms, int64_t *live, int64_t *sealed, int64_t *raw,
                     int64_t *rows)
{
    sqlite3_stmt *st;
    *live = *sealed = *raw = *rows = 0;
    int rv = prep(conn,
                  "SELECT total(expires_at > ?1), total(CASE WHEN expires_at > ?1 THEN length(blob) END),"
                  " total(CASE WHEN expires_at > ?1 THEN raw_len END), count(*) FROM _edge_sessions",
                  &st);
    if (rv != EDGE_OK) return rv;
    sqlite3_bind_int64(st, 1, now_ms);
    if (sqlite3_step(st) == SQLITE_ROW) {
        *live = (int64_t)sqlite3_column_double(st, 0);
        *sealed = (int64_t)sqlite3_column_double(st, 1);
        *raw = (int64_t)sqlite3_column_double(st, 2);
        *rows = sqlite3_column_int64(st, 3);
    } else {
        rv = EDGE_ESTORE;
    }
    edge_store_release(conn, st);
    return rv;
}

int edge_sess_list(struct edge_store_conn *conn, const char *prefix, const char *after, int64_t now_ms, int limit,
                   void (*cb)(void *ud, const char *id), void *ud)
{
    sqlite3_stmt *st;
    /* ids are printable ASCII below 0x7f: prefix || 0x7f bounds the range of the prefix */
    char upper[EDGE_SESS_ID_MAX + 2];
    snprintf(upper, sizeof(upper), "%s\x7f", prefix);
    int rv = prep(conn,
                  "SELECT id FROM _edge_sessions WHERE id > ?1 AND id >= ?2 AND id < ?3 AND expires_at > ?4"
                  " ORDER BY id LIMIT ?5",
                  &st);
    if (rv != EDGE_OK) return rv;
    sqlite3_bind_text(st, 1, after, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, prefix, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, upper, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, now_ms);
    sqlite3_bind_int(st, 5, limit);
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) cb(ud, (const char *)sqlite3_column_text(st, 0));
    if (s != SQLITE_DONE) rv = EDGE_ESTORE;
    edge_store_release(conn, st);
    return rv;
}
