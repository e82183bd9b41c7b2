/* SPDX-License-Identifier: MIT */
/* Tombstone collection (see tomb.h for the design, docs/internals/replication.md for
 * why it cannot bring a deleted row back). */
#include "repl/tomb.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/err.h"
#include "core/log.h"
#include "repl/repl_int.h"
#include "repl/state.h"

struct edge_repl_tomb {
    pthread_mutex_t mu;
    bool busy;   /* a job is queued or running */
    bool active; /* an epoch is open */
    bool safe;   /* ... and every region let it through: collecting */
    struct edge_vclock v;
    bool known[EDGE_REPL_MAX_PEERS];   /* peer i acknowledged >= v ... */
    uint64_t need[EDGE_REPL_MAX_PEERS]; /* ... reporting this seq of its own */
    int64_t started_ms;
    char *after_tbl; /* the collection cursor of a safe epoch */
    uint8_t *after_pk;
    size_t after_pk_len;
    uint64_t epochs;
    char waiting_for[72];
    int64_t wait_logged_ms;
    int64_t collect_logged_ms;
    uint64_t collected_unlogged;
    _Atomic uint64_t tombstones, collected, horizon;
};

int edge_repl_tomb_new(struct edge_repl_tomb **out)
{
    struct edge_repl_tomb *t = edge_calloc(1, sizeof(*t));
    if (t == NULL) return EDGE_ENOMEM;
    pthread_mutex_init(&t->mu, NULL);
    edge_vclock_init(&t->v);
    *out = t;
    return EDGE_OK;
}

void edge_repl_tomb_free(struct edge_repl_tomb *t)
{
    if (t == NULL) return;
    edge_vclock_close(&t->v);
    edge_free(t->after_tbl);
    edge_free(t->after_pk);
    pthread_mutex_destroy(&t->mu);
    edge_free(t);
}

static bool stamp_covered(const struct edge_vclock *v, const char *origin, size_t olen, uint64_t seq)
{
    if (olen == 0) return true; /* no write set it */
    char o[EDGE_VCLOCK_REGION_MAX + 1];
    if (olen > EDGE_VCLOCK_REGION_MAX) return false;
    memcpy(o, origin, olen);
    o[olen] = '\0';
    return edge_vclock_get(v, o) >= seq;
}

bool edge_repl_tomb_covered(const struct edge_vclock *v, const char *origin, uint64_t seq, const void *cols,
                            size_t cols_len, uint64_t *out_max_hlc)
{
    if (!stamp_covered(v, origin, strlen(origin), seq)) return false;
    /* cols: 0xFE, varint n, n x (str column, str origin, varint seq, varint hlc), or
     * (older databases) varint n, n x (str origin, varint seq, varint hlc). */
    struct edge__rd r = {cols, cols_len, 0};
    if (cols_len == 0) return true;
    bool named = ((const uint8_t *)cols)[0] == 0xFE;
    if (named) r.off = 1;
    uint64_t n;
    if (edge__repl_get_varint(&r, &n) != EDGE_OK) return false;
    uint64_t best = *out_max_hlc;
    for (uint64_t k = 0; k < n; k++) {
        const char *s;
        size_t sl;
        uint64_t sseq, shlc;
        if (named && edge__repl_get_str(&r, &s, &sl) != EDGE_OK) return false;
        if (edge__repl_get_str(&r, &s, &sl) != EDGE_OK || edge__repl_get_varint(&r, &sseq) != EDGE_OK ||
            edge__repl_get_varint(&r, &shlc) != EDGE_OK) {
            return false;
        }
        if (!stamp_covered(v, s, sl, sseq)) return false;
        if (shlc > best) best = shlc;
    }
    *out_max_hlc = best;
    return true;
}

uint64_t edge_repl_tomb_horizon(sqlite3 *db)
{
    return (uint64_t)edge_store_query_int(db, "SELECT value FROM _edge_gc WHERE name = 'horizon_hlc'", 0);
}

uint64_t edge_repl_tomb_count(sqlite3 *db)
{
    int64_t n = edge_store_query_int(db, "SELECT value FROM _edge_gc WHERE name = 'tombstones'", 0);
    return n > 0 ? (uint64_t)n : 0;
}

void edge_repl_tomb_pass_free(struct edge_repl_tomb_pass *p)
{
    edge_free(p->after_tbl);
    edge_free(p->after_pk);
    p->after_tbl = NULL;
    p->after_pk = NULL;
    p->after_pk_len = 0;
}

static int set_cursor(struct edge_repl_tomb_pass *p, const char *tbl, const void *pk, size_t pklen)
{
    char *t = edge_malloc(strlen(tbl) + 1);
    uint8_t *k = edge_malloc(pklen ? pklen : 1);
    if (t == NULL || k == NULL) {
        edge_free(t);
        edge_free(k);
        return EDGE_ENOMEM;
    }
    memcpy(t, tbl, strlen(tbl) + 1);
    if (pklen) memcpy(k, pk, pklen);
    edge_repl_tomb_pass_free(p);
    p->after_tbl = t;
    p->after_pk = k;
    p->after_pk_len = pklen;
    return EDGE_OK;
}

/* Rows to drop, collected first: deleting while the SELECT walks the same index is
 * legal in SQLite but harder to reason about. */
struct victim {
    char *tbl;
    uint8_t *pk;
    size_t pklen;
};

static int collect_in_txn(sqlite3 *db, struct edge_repl_tomb_pass *p)
{
    static const char q_from[] = "SELECT tbl, pk, origin, seq, hlc, cols FROM _edge_rows WHERE deleted = 1"
                                 " AND (tbl, pk) > (?1, ?2) ORDER BY tbl, pk LIMIT ?3";
    static const char q_start[] =
        "SELECT tbl, pk, origin, seq, hlc, cols FROM _edge_rows WHERE deleted = 1 ORDER BY tbl, pk LIMIT ?3";
    struct victim *vs = edge_calloc(p->max ? p->max : 1, sizeof(*vs));
    if (vs == NULL) return EDGE_ENOMEM;
    size_t nv = 0;
    uint64_t gone = 0; /* by this call (p->collected adds up over calls) */
    int rv = EDGE_OK;
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(db, p->after_tbl ? q_from : q_start, -1, &q, NULL) != SQLITE_OK) rv = EDGE_ESTORE;
    if (rv == EDGE_OK) {
        if (p->after_tbl != NULL) {
            sqlite3_bind_text(q, 1, p->after_tbl, -1, SQLITE_STATIC);
            sqlite3_bind_blob64(q, 2, p->after_pk, p->after_pk_len, SQLITE_STATIC);
        }
        sqlite3_bind_int64(q, 3, (sqlite3_int64)p->max);
        uint64_t seen = 0;
        int rc;
        char last_tbl[256] = "";
        struct edge_buf last_pk;
        edge_buf_init(&last_pk, (size_t)1 << 30);
        while (rv == EDGE_OK && (rc = sqlite3_step(q)) == SQLITE_ROW) {
            const char *tbl = (const char *)sqlite3_column_text(q, 0);
            const void *pk = sqlite3_column_blob(q, 1);
            size_t pklen = (size_t)sqlite3_column_bytes(q, 1);
            const char *origin = (const char *)sqlite3_column_text(q, 2);
            uint64_t seq = (uint64_t)sqlite3_column_int64(q, 3);
            uint64_t hlc = (uint64_t)sqlite3_column_int64(q, 4);
            seen++;
            snprintf(last_tbl, sizeof(last_tbl), "%s", tbl ? tbl : "");
            last_pk.len = 0;
            if (pklen) rv = edge_buf_append(&last_pk, pk, pklen);
            uint64_t mx = hlc;
            if (rv == EDGE_OK && tbl != NULL && origin != NULL &&
                edge_repl_tomb_covered(p->upto, origin, seq, sqlite3_column_blob(q, 5),
                                       (size_t)sqlite3_column_bytes(q, 5), &mx)) {
                struct victim *v = &vs[nv];
                v->tbl = edge_malloc(strlen(tbl) + 1);
                v->pk = edge_malloc(pklen ? pklen : 1);
                if (v->tbl == NULL || v->pk == NULL) {
                    edge_free(v->tbl);
                    edge_free(v->pk);
                    rv = EDGE_ENOMEM;
                    break;
                }
                memcpy(v->tbl, tbl, strlen(tbl) + 1);
                if (pklen) memcpy(v->pk, pk, pklen);
                v->pklen = pklen;
                nv++;
                if (mx > p->max_hlc) p->max_hlc = mx;
            }
        }
        if (rv == EDGE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) rv = EDGE_ESTORE;
        p->examined += seen;
        p->done = seen < p->max;
        if (rv == EDGE_OK && seen > 0) rv = set_cursor(p, last_tbl, last_pk.data, last_pk.len);
        edge_buf_free(&last_pk);
    }
    sqlite3_finalize(q);
    q = NULL;
    if (rv == EDGE_OK && nv > 0 &&
        sqlite3_prepare_v2(db, "DELETE FROM _edge_rows WHERE tbl = ?1 AND pk = ?2 AND deleted = 1", -1, &q, NULL) !=
            SQLITE_OK) {
        rv = EDGE_ESTORE;
    }
    for (size_t i = 0; rv == EDGE_OK && i < nv; i++) {
        sqlite3_bind_text(q, 1, vs[i].tbl, -1, SQLITE_STATIC);
        sqlite3_bind_blob64(q, 2, vs[i].pk, vs[i].pklen, SQLITE_STATIC);
        if (sqlite3_step(q) != SQLITE_DONE) rv = EDGE_ESTORE;
        else gone += (uint64_t)sqlite3_changes(db);
        sqlite3_reset(q);
    }
    sqlite3_finalize(q);
    q = NULL;
    if (rv == EDGE_OK && gone > 0) {
        if (sqlite3_prepare_v2(db, "UPDATE _edge_gc SET value = value - ?1 WHERE name = 'tombstones'", -1, &q, NULL) !=
            SQLITE_OK) {
            rv = EDGE_ESTORE;
        }
        if (rv == EDGE_OK) {
            sqlite3_bind_int64(q, 1, (sqlite3_int64)gone);
            if (sqlite3_step(q) != SQLITE_DONE) rv = EDGE_ESTORE;
        }
        sqlite3_finalize(q);
        q = NULL;
    }
    if (rv == EDGE_OK) p->collected += gone;
    if (rv == EDGE_OK && gone > 0) {
        /* The horizon only grows: a write at or below it to a row with no metadata lost
         * against a tombstone that is gone (apply_merge.c). */
        static const char up[] = "INSERT INTO _edge_gc(name, value) VALUES ('horizon_hlc', ?1)"
                                 " ON CONFLICT(name) DO UPDATE SET value = max(value, excluded.value)";
        if (sqlite3_prepare_v2(db, up, -1, &q, NULL) != SQLITE_OK) rv = EDGE_ESTORE;
        if (rv == EDGE_OK) {
            sqlite3_bind_int64(q, 1, (sqlite3_int64)p->max_hlc);
            if (sqlite3_step(q) != SQLITE_DONE) rv = EDGE_ESTORE;
        }
        sqlite3_finalize(q);
        q = NULL;
    }
    for (size_t i = 0; i < nv; i++) {
        edge_free(vs[i].tbl);
        edge_free(vs[i].pk);
    }
    edge_free(vs);
    return rv;
}

int edge_repl_tomb_collect(sqlite3 *db, struct edge_repl_tomb_pass *p)
{
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) return EDGE_ESTORE;
    uint64_t before = p->collected;
    int rv = p->upto != NULL && p->max > 0 ? collect_in_txn(db, p) : EDGE_OK;
    if (rv == EDGE_OK) p->left = edge_repl_tomb_count(db);
    if (rv == EDGE_OK && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) rv = EDGE_ESTORE;
    if (rv != EDGE_OK) {
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        p->collected = before;
    }
    return rv;
}

/* ---- the node's side: epochs and writer jobs ---- */

struct tomb_job {
    struct edge_writer_job wjob;
    struct edge_repl_state *st;
    struct edge_repl_tomb_pass pass;
    struct edge_vclock v;
    uint64_t horizon;
    int rv;
};

static int job_run(struct edge_writer_job *job, struct edge_store_conn *conn)
{
    struct tomb_job *j = (struct tomb_job *)job;
    sqlite3 *db = edge_store_db(conn);
    j->rv = edge_repl_tomb_collect(db, &j->pass);
    j->horizon = edge_repl_tomb_horizon(db);
    return EDGE_OK;
}

static void job_free(struct tomb_job *j)
{
    edge_repl_tomb_pass_free(&j->pass);
    edge_vclock_close(&j->v);
    edge_free(j);
}

static int submit(struct edge_repl_state *st, struct edge_repl_tomb *t, bool collect);

static void job_complete(struct edge_writer_job *job, int status)
{
    (void)status;
    struct tomb_job *j = (struct tomb_job *)job;
    struct edge_repl_tomb *t = j->st->tomb;
    bool collecting = j->pass.upto != NULL;
    bool more = false;
    uint64_t epoch_done_left = 0;
    bool log_collect = false;
    uint64_t to_log = 0;
    pthread_mutex_lock(&t->mu);
    if (j->rv == EDGE_OK) {
        atomic_store(&t->tombstones, j->pass.left);
        atomic_fetch_add(&t->collected, j->pass.collected);
        if (j->horizon > atomic_load(&t->horizon)) atomic_store(&t->horizon, j->horizon);
        t->collected_unlogged += j->pass.collected;
    }
    if (collecting && j->rv == EDGE_OK) {
        /* the cursor moves to the epoch */
        edge_free(t->after_tbl);
        edge_free(t->after_pk);
        t->after_tbl = j->pass.after_tbl;
        t->after_pk = j->pass.after_pk;
        t->after_pk_len = j->pass.after_pk_len;
        j->pass.after_tbl = NULL;
        j->pass.after_pk = NULL;
        if (j->pass.done) {
            t->active = false;
            t->safe = false;
            t->epochs++;
            edge_free(t->after_tbl);
            edge_free(t->after_pk);
            t->after_tbl = NULL;
            t->after_pk = NULL;
            t->after_pk_len = 0;
            epoch_done_left = j->pass.left;
            int64_t now = (int64_t)edge_wall_ms();
            if (t->collected_unlogged > 0 && now - t->collect_logged_ms >= 60000) {
                log_collect = true;
                to_log = t->collected_unlogged;
                t->collected_unlogged = 0;
                t->collect_logged_ms = now;
            }
        } else {
            more = true; /* a full batch: the next one at once, behind the writes queued meanwhile */
        }
    }
    t->busy = false;
    if (more && submit(j->st, t, true) == EDGE_OK) t->busy = true;
    pthread_mutex_unlock(&t->mu);
    if (log_collect) {
        EDGE_LOG(EDGE_LOG_INFO, EDGE_MOD_REPL,
                 "tombstones: collected %llu (acknowledged by every region); %llu kept; horizon hlc %llu",
                 (unsigned long long)to_log, (unsigned long long)epoch_done_left,
                 (unsigned long long)atomic_load(&t->horizon));
    }
    job_free(j);
}

/* Under t->mu. */
static int submit(struct edge_repl_state *st, struct edge_repl_tomb *t, bool collect)
{
    struct tomb_job *j = edge_calloc(1, sizeof(*j));
    if (j == NULL) return EDGE_ENOMEM;
    j->st = st;
    edge_vclock_init(&j->v);
    if (collect) {
        if (edge_vclock_copy(&j->v, &t->v) != EDGE_OK) {
            job_free(j);
            return EDGE_ENOMEM;
        }
        j->pass.upto = &j->v;
        j->pass.max = EDGE_REPL_TOMB_BATCH;
        if (t->after_tbl != NULL &&
            set_cursor(&j->pass, t->after_tbl, t->after_pk, t->after_pk_len) != EDGE_OK) {
            job_free(j);
            return EDGE_ENOMEM;
        }
    }
    j->wjob.exclusive = true;
    j->wjob.run = job_run;
    j->wjob.complete = job_complete;
    if (edge_writer_submit(st->writer, &j->wjob) != EDGE_OK) {
        job_free(j);
        return EDGE_ECLOSED;
    }
    return EDGE_OK;
}

void edge_repl_tomb_tick(struct edge_repl_state *st)
{
    struct edge_repl_tomb *t = st->tomb;
    if (t == NULL || !st->cluster || st->writer == NULL) return;
    struct edge_vclock mine;
    edge_vclock_init(&mine);
    edge_repl_state_vv(st, &mine);
    int64_t now = (int64_t)edge_wall_ms();
    pthread_mutex_lock(&t->mu);
    if (t->busy) goto out;
    if (!t->active) {
        if (edge_vclock_copy(&t->v, &mine) != EDGE_OK) goto out;
        memset(t->known, 0, sizeof(t->known));
        memset(t->need, 0, sizeof(t->need));
        t->active = true;
        t->safe = false;
        t->started_ms = now;
        t->wait_logged_ms = now;
    }
    const char *why = NULL;
    t->waiting_for[0] = '\0';
    if (!t->safe) {
        bool safe = true;
        pthread_rwlock_rdlock(&st->peers_lock);
        /* Every other region of the configuration has a link, or nothing is safe (links
         * not started yet, more regions than links). */
        if (st->conf == NULL || (size_t)st->n_peers + 1 != st->conf->n_regions) {
            safe = false;
            snprintf(t->waiting_for, sizeof(t->waiting_for), "?");
            why = "not every region has a link";
        }
        for (int i = 0; i < st->n_peers; i++) {
            if (!t->known[i]) {
                struct edge_peer_status ps;
                edge_peer_status(st->peers[i], &ps);
                bool all = true;
                for (size_t k = 0; k < t->v.n_entries && all; k++) {
                    all = edge_vclock_get(&ps.acked, t->v.entries[k].region) >= t->v.entries[k].n;
                }
                if (all) {
                    /* (b): its own entries up to what it had when it held V. */
                    t->known[i] = true;
                    t->need[i] = edge_vclock_get(&ps.acked, st->peer_region[i]);
                }
                edge_vclock_close(&ps.acked);
            }
            bool ok = t->known[i] && edge_vclock_get(&mine, st->peer_region[i]) >= t->need[i];
            if (!ok && safe) {
                snprintf(t->waiting_for, sizeof(t->waiting_for), "%s", st->peer_region[i]);
                why = t->known[i] ? "its own entries have not all arrived here"
                                  : "it has not acknowledged this region's state";
            }
            safe = safe && ok;
        }
        pthread_rwlock_unlock(&st->peers_lock);
        t->safe = safe;
    }
    if (!t->safe && now - t->wait_logged_ms >= 60000) {
        t->wait_logged_ms = now;
        EDGE_LOG(EDGE_LOG_WARN, EDGE_MOD_REPL,
                 "tombstones: collection has waited %lld s for region %s (%s); %llu tombstones kept",
                 (long long)((now - t->started_ms) / 1000), t->waiting_for, why ? why : "?",
                 (unsigned long long)atomic_load(&t->tombstones));
    }
    if (submit(st, t, t->safe) == EDGE_OK) t->busy = true;
out:
    pthread_mutex_unlock(&t->mu);
    edge_vclock_close(&mine);
}

void edge_repl_tomb_info(struct edge_repl_state *st, struct edge_repl_tomb_info *out)
{
    memset(out, 0, sizeof(*out));
    struct edge_repl_tomb *t = st->tomb;
    if (t == NULL) return;
    pthread_mutex_lock(&t->mu);
    out->tombstones = atomic_load(&t->tombstones);
    out->collected = atomic_load(&t->collected);
    out->horizon_hlc = atomic_load(&t->horizon);
    out->epochs = t->epochs;
    if (t->active && !t->safe) out->waiting_ms = (int64_t)edge_wall_ms() - t->started_ms;
    snprintf(out->waiting_for, sizeof(out->waiting_for), "%s", t->waiting_for);
    pthread_mutex_unlock(&t->mu);
}
