/* SPDX-License-Identifier: MIT */
/* The node's replication state (see state.h). */
#include "repl/state.h"
#include "repl/repl_int.h"

#include <stdio.h>
#include <string.h>

#include "core/err.h"
#include "core/log.h"
#include "repl/tomb.h"
#include "repl/trace.h"

void edge_repl_state_init(struct edge_repl_state *st, const char *region, const char *db_path,
                          const struct edge_conf *conf, const struct edge_regions *wan, uint64_t log_keep)
{
    memset(st, 0, sizeof(*st));
    st->region = region;
    st->db_path = db_path;
    st->conf = conf;
    st->wan = wan;
    st->log_keep = log_keep;
    st->max_skew_ms = conf != NULL && conf->max_clock_skew_ms > 0 ? (uint64_t)conf->max_clock_skew_ms : 500;
    pthread_mutex_init(&st->hlc_mu, NULL);
    pthread_rwlock_init(&st->peers_lock, NULL);
    pthread_mutex_init(&st->vv_mu, NULL);
    edge_vclock_init(&st->vv);
    edge_vclock_init(&st->log_counted);
    for (int i = 0; i < EDGE_REPL_MAX_PEERS; i++) edge_vclock_init(&st->snap_floor[i]);
    st->max_log_bytes = conf != NULL && conf->max_log_bytes > 0 ? (uint64_t)conf->max_log_bytes : 0;
    edge_feed_init(&st->feed);
    if (edge_repl_tomb_new(&st->tomb) != EDGE_OK) st->tomb = NULL;
    edge_hlc_init(&st->hlc, edge_clock_system());
    st->cluster = conf != NULL && conf->n_regions >= 2;
    st->default_consistency = conf != NULL ? (int)conf->consistency : 0;
    st->primary = region;
    if (conf != NULL && conf->n_regions > 0) {
        const struct edge_conf_region *best = &conf->regions[0];
        for (size_t i = 1; i < conf->n_regions; i++) {
            if (conf->regions[i].priority < best->priority) best = &conf->regions[i];
        }
        st->primary = best->id;
    }
    st->local = (struct edge_repl_local){region, &st->hlc, &st->hlc_mu, conf != NULL ? &conf->crdt : NULL};
    /* Row ids left to SQLite are striped by region (repl/ids.c): the stripe is the
     * region's position in the configuration, so regions are only ever appended. */
    for (size_t i = 0; conf != NULL && i < conf->n_regions; i++) {
        if (strcmp(conf->regions[i].id, region) == 0) st->id_index = (int)i % EDGE_REPL_ID_STRIDE;
    }
}

void edge_repl_state_close(struct edge_repl_state *st)
{
    edge_vclock_close(&st->vv);
    edge_vclock_close(&st->log_counted);
    for (int i = 0; i < EDGE_REPL_MAX_PEERS; i++) edge_vclock_close(&st->snap_floor[i]);
    edge_feed_close(&st->feed);
    edge_repl_tomb_free(st->tomb);
    st->tomb = NULL;
    pthread_mutex_destroy(&st->hlc_mu);
    pthread_rwlock_destroy(&st->peers_lock);
    pthread_mutex_destroy(&st->vv_mu);
}

void edge_repl_state_wake(struct edge_repl_state *st)
{
    if (st->wake != NULL) st->wake(st->wake_ud);
}

void edge_repl_state_committed(struct edge_repl_state *st, uint64_t seq, int consistency)
{
    if (seq == 0) return;
    /* Before the version vector says the write is here, make every loop's read
     * snapshot stale, so a bookmarked read admitted by the new VV sees the write. */
    atomic_fetch_add(&st->data_version, 1);
    pthread_mutex_lock(&st->vv_mu);
    if (edge_vclock_get(&st->vv, st->region) < seq) {
        edge_vclock_set(&st->vv, st->region, seq);
    }
    pthread_mutex_unlock(&st->vv_mu);
    if (consistency != 2) {
        edge_repl_peers_notify(st); /* eventual and strong entries are pushed at once; async waits for the tick */
    }
    edge_repl_state_wake(st);
}

void edge_repl_state_merge(struct edge_repl_state *st, const struct edge_vclock *vv)
{
    atomic_fetch_add(&st->data_version, 1); /* see edge_repl_state_committed */
    pthread_mutex_lock(&st->vv_mu);
    edge_vclock_merge(&st->vv, vv);
    pthread_mutex_unlock(&st->vv_mu);
}

void edge_repl_state_observe_hlc(struct edge_repl_state *st, uint64_t hlc)
{
    pthread_mutex_lock(&st->hlc_mu);
    edge_hlc_update(&st->hlc, hlc);
    pthread_mutex_unlock(&st->hlc_mu);
}

void edge_repl_state_vv(struct edge_repl_state *st, struct edge_vclock *out)
{
    pthread_mutex_lock(&st->vv_mu);
    edge_vclock_copy(out, &st->vv);
    pthread_mutex_unlock(&st->vv_mu);
}

bool edge_repl_state_covers(struct edge_repl_state *st, const char *origin, uint64_t seq)
{
    pthread_mutex_lock(&st->vv_mu);
    bool ok = edge_vclock_get(&st->vv, origin) >= seq;
    pthread_mutex_unlock(&st->vv_mu);
    return ok;
}

bool edge_repl_state_is_primary(const struct edge_repl_state *st)
{
    return strcmp(st->primary, st->region) == 0;
}

const char *edge_repl_state_primary_url(const struct edge_repl_state *st)
{
    const struct edge_conf_region *r = edge_conf_region_find(st->conf, st->primary);
    return r ? r->url : NULL;
}

/* ---------------------------------------------------------------------------------- */
/* Writer hooks: one log entry per group commit                                       */
/* ---------------------------------------------------------------------------------- */

static size_t wh_mark(void *ud)
{
    struct edge_repl_state *st = ud;
    return edge_capture_mark(st->wcap);
}

static void wh_rewind(void *ud, size_t mark)
{
    struct edge_repl_state *st = ud;
    edge_capture_rewind(st->wcap, mark);
}

static int wh_before_commit(void *ud, struct edge_store_conn *conn, int consistency, uint64_t *out_seq)
{
    (void)conn;
    struct edge_repl_state *st = ud;
    char err[256] = "";
    /* Before COMMIT: from here on the hot-read cache refuses what the group wrote. */
    edge_feed_mark_capture(st, st->wcap, &st->wmark);
    int rv = edge_repl_commit_entry(st->wcap, &st->local, consistency, out_seq, err, sizeof(err));
    if (rv != EDGE_OK) {
        EDGE_LOG(EDGE_LOG_ERROR, EDGE_MOD_REPL, "writer: cannot log the group: %s", err);
    }
    return rv;
}

static void wh_after_commit(void *ud, uint64_t seq, int consistency)
{
    struct edge_repl_state *st = ud;
    if (seq != 0 && edge_repl_trace_on()) edge_repl_trace_at("commit", st->region, seq, 0);
    edge_repl_state_committed(st, seq, consistency);
    if (seq != 0) edge_feed_dispatch(st, st->wdb);
    edge_feed_unmark(st, &st->wmark);
}

static void wh_after_rollback(void *ud)
{
    struct edge_repl_state *st = ud;
    edge_capture_reset(st->wcap);
    edge_feed_unmark(st, &st->wmark);
}

static void wh_before_close(void *ud, struct edge_store_conn *conn)
{
    (void)conn;
    struct edge_repl_state *st = ud;
    edge_capture_destroy(st->wcap);
    st->wcap = NULL;
    st->wdb = NULL;
}

int edge_repl_state_open(struct edge_repl_state *st, sqlite3 *wdb, struct edge_writer_hooks *hooks, char *errmsg,
                         size_t errmsg_len)
{
    int rv = edge_repl_schema_init(wdb, errmsg, errmsg_len);
    if (rv == EDGE_OK) rv = edge_repl_vv_load(wdb, &st->vv);
    if (rv == EDGE_OK) {
        /* Never stamp below what this region already wrote or saw, even when the wall
         * clock is now behind (it ran ahead before a restart). */
        pthread_mutex_lock(&st->hlc_mu);
        rv = edge_repl_hlc_recover(wdb, &st->hlc);
        pthread_mutex_unlock(&st->hlc_mu);
        if (rv != EDGE_OK) snprintf(errmsg, errmsg_len, "cannot read the highest stored stamp");
    }
    if (rv == EDGE_OK) rv = edge_feed_open(st, wdb);
    if (rv == EDGE_OK) {
        /* CRDT columns of the tables there now; a table created later is checked by the
         * transaction that creates it (capture.c). */
        rv = edge__crdt_cols_check(wdb, st->local.crdt, errmsg, errmsg_len);
    }
    if (rv == EDGE_OK) rv = edge_capture_create(wdb, &st->wcap);
    if (rv == EDGE_OK) rv = edge_capture_ids_enable(st->wcap, st->id_index, EDGE_REPL_ID_STRIDE);
    if (rv == EDGE_OK) edge_capture_set_crdt(st->wcap, st->local.crdt);
    if (rv != EDGE_OK) return rv;
    st->wdb = wdb;
    *hooks = (struct edge_writer_hooks){st, wh_mark, wh_rewind, wh_before_commit, wh_after_commit, wh_after_rollback,
                                        wh_before_close};
    return EDGE_OK;
}

/* ---------------------------------------------------------------------------------- */
/* Consistency policy and majorities                                                  */
/* ---------------------------------------------------------------------------------- */

static int consistency_rank(int c)
{
    return c == 1 ? 2 : c == 0 ? 1 : 0;
}

int edge_repl_consistency(const struct edge_repl_state *st, const char *header, const char *const *tables,
                          int n_tables)
{
    int best = st->default_consistency;
    if (st->conf != NULL) {
        for (int i = 0; i < n_tables; i++) {
            int lc = (int)edge_conf_table_consistency(st->conf, tables[i]);
            if (consistency_rank(lc) > consistency_rank(best)) best = lc;
        }
        if (n_tables < 0) {
            /* Tables not all known: the strongest level any table has is the safe one. */
            for (size_t i = 0; i < st->conf->n_tables; i++) {
                int lc = (int)st->conf->tables[i].level;
                if (consistency_rank(lc) > consistency_rank(best)) best = lc;
            }
        }
    }
    /* X-Edge-Consistency may raise the level a write runs at, never lower it. */
    enum edge_consistency c;
    if (header != NULL && edge_consistency_parse(header, &c) == EDGE_OK &&
        consistency_rank((int)c) > consistency_rank(best)) {
        best = (int)c;
    }
    return best;
}

int edge_repl_acks_for(struct edge_repl_state *st, uint64_t seq, int *out_connected)
{
    int acks = 0, connected = 0;
    pthread_rwlock_rdlock(&st->peers_lock);
    for (int i = 0; i < st->n_peers; i++) {
        struct edge_peer_status ps;
        edge_peer_status(st->peers[i], &ps);
        if (ps.connected) connected++;
        if (edge_vclock_get(&ps.acked, st->region) >= seq) acks++;
        edge_vclock_close(&ps.acked);
    }
    pthread_rwlock_unlock(&st->peers_lock);
    if (out_connected) *out_connected = connected;
    return acks;
}

uint64_t edge_repl_majority_seq(struct edge_repl_state *st)
{
    int need = edge_repl_majority_needed(st);
    if (need <= 0) return UINT64_MAX;
    uint64_t acked[EDGE_REPL_MAX_PEERS];
    int n = 0;
    pthread_rwlock_rdlock(&st->peers_lock);
    for (int i = 0; i < st->n_peers && n < EDGE_REPL_MAX_PEERS; i++) {
        struct edge_peer_status ps;
        edge_peer_status(st->peers[i], &ps);
        acked[n++] = edge_vclock_get(&ps.acked, st->region);
        edge_vclock_close(&ps.acked);
    }
    pthread_rwlock_unlock(&st->peers_lock);
    if (n < need) return 0;
    /* The need-th highest acknowledgement: that many peers hold every seq up to it. */
    for (int i = 0; i < need; i++) {
        int best = i;
        for (int j = i + 1; j < n; j++) {
            if (acked[j] > acked[best]) best = j;
        }
        uint64_t t = acked[i];
        acked[i] = acked[best];
        acked[best] = t;
    }
    return acked[need - 1];
}

uint64_t edge_repl_reachable_seq(struct edge_repl_state *st)
{
    uint64_t low = UINT64_MAX;
    pthread_rwlock_rdlock(&st->peers_lock);
    for (int i = 0; i < st->n_peers; i++) {
        struct edge_peer_status ps;
        edge_peer_status(st->peers[i], &ps);
        uint64_t a = edge_vclock_get(&ps.acked, st->region);
        if (ps.connected && a < low) low = a;
        edge_vclock_close(&ps.acked);
    }
    pthread_rwlock_unlock(&st->peers_lock);
    return low;
}

int edge_repl_majority_needed(const struct edge_repl_state *st)
{
    return (int)(st->conf->n_regions / 2); /* other regions needed besides this one */
}

bool edge_repl_majority_reachable(struct edge_repl_state *st)
{
    int connected = 0;
    edge_repl_acks_for(st, 0, &connected);
    return connected >= edge_repl_majority_needed(st);
}

/* ---------------------------------------------------------------------------------- */
/* Outbound peer links                                                                */
/* ---------------------------------------------------------------------------------- */

void edge_repl_peers_notify(struct edge_repl_state *st)
{
    pthread_rwlock_rdlock(&st->peers_lock);
    for (int i = 0; i < st->n_peers; i++) {
        if (st->peers[i] != NULL) edge_peer_notify(st->peers[i]);
    }
    pthread_rwlock_unlock(&st->peers_lock);
}

/* Link thread: a peer acknowledged entries; strong writes may be confirmed now. */
static void peer_on_ack(void *ud, const char *peer_region)
{
    (void)peer_region;
    edge_repl_state_wake(ud);
}

int edge_repl_peers_start(struct edge_repl_state *st, char *errmsg, size_t errmsg_len)
{
    const struct edge_conf *conf = st->conf;
    for (size_t i = 0; i < conf->n_regions && st->n_peers < EDGE_REPL_MAX_PEERS; i++) {
        const struct edge_conf_region *r = &conf->regions[i];
        if (strcmp(r->id, st->region) == 0) continue;
        if (r->url == NULL) {
            snprintf(errmsg, errmsg_len, "region %s has no url in the configuration", r->id);
            return EDGE_ECONFIG;
        }
        double rtt = st->wan ? edge_regions_rtt_ms(st->wan, st->region, r->id) : 0;
        struct edge_peer_config pc = {
            .db_path = st->db_path,
            .local_region = st->region,
            .cluster = conf->cluster_name,
            .secret = conf->cluster_secret,
            .peer_region = r->id,
            .peer_url = r->url,
            .tls_ctx = st->peer_tls,
            .one_way_delay_ms = rtt > 0 ? (int)(rtt / 2) : 0,
            .sync_interval_ms = conf->sync_interval_ms,
            .on_ack = peer_on_ack,
            .ud = st,
        };
        struct edge_peer *peer = NULL;
        int rv = edge_peer_start(&pc, &peer);
        if (rv != EDGE_OK) {
            snprintf(errmsg, errmsg_len, "cannot start the link to %s: %s", r->id, edge_strerror(rv));
            return rv;
        }
        pthread_rwlock_wrlock(&st->peers_lock);
        st->peers[st->n_peers] = peer;
        st->peer_region[st->n_peers] = r->id;
        st->peer_url[st->n_peers] = r->url;
        st->n_peers++;
        pthread_rwlock_unlock(&st->peers_lock);
    }
    return EDGE_OK;
}

void edge_repl_peers_stop(struct edge_repl_state *st)
{
    struct edge_peer *gone[EDGE_REPL_MAX_PEERS];
    pthread_rwlock_wrlock(&st->peers_lock);
    int count = st->n_peers;
    for (int i = 0; i < count; i++) {
        gone[i] = st->peers[i];
        st->peers[i] = NULL;
    }
    st->n_peers = 0;
    pthread_rwlock_unlock(&st->peers_lock);
    for (int i = 0; i < count; i++) edge_peer_stop(gone[i]);
}

/* Entries of the local log the peer has not acknowledged, and the age of the oldest of
 * them (from its hybrid timestamp). */
static void peer_backlog(struct edge_repl_state *st, sqlite3 *db, const struct edge_vclock *acked,
                         uint64_t *out_pending, double *out_lag_ms)
{
    *out_pending = 0;
    *out_lag_ms = 0;
    uint64_t oldest = UINT64_MAX;
    struct edge_vclock vv;
    edge_vclock_init(&vv);
    edge_repl_state_vv(st, &vv);
    sqlite3_stmt *s = NULL;
    sqlite3_prepare_v2(db, "SELECT hlc FROM _edge_log WHERE origin = ?1 AND seq = ?2", -1, &s, NULL);
    for (size_t i = 0; i < vv.n_entries; i++) {
        uint64_t have = vv.entries[i].n, theirs = edge_vclock_get(acked, vv.entries[i].region);
        if (have <= theirs) continue;
        *out_pending += have - theirs;
        if (s != NULL) {
            sqlite3_bind_text(s, 1, vv.entries[i].region, -1, SQLITE_STATIC);
            sqlite3_bind_int64(s, 2, (sqlite3_int64)(theirs + 1));
            if (sqlite3_step(s) == SQLITE_ROW) {
                uint64_t h = (uint64_t)sqlite3_column_int64(s, 0);
                if (h < oldest) oldest = h;
            }
            sqlite3_reset(s);
        }
    }
    sqlite3_finalize(s);
    edge_vclock_close(&vv);
    if (oldest != UINT64_MAX) {
        const struct edge_clock *c = edge_clock_system();
        uint64_t now = c->wall_ms(c->ud);
        *out_lag_ms = now > EDGE_HLC_MS(oldest) ? (double)(now - EDGE_HLC_MS(oldest)) : 0;
    }
}

void edge_repl_peers_walk(struct edge_repl_state *st, sqlite3 *db,
                          void (*cb)(void *ud, int i, const struct edge_repl_peer_view *v), void *ud)
{
    pthread_rwlock_rdlock(&st->peers_lock);
    for (int i = 0; i < st->n_peers; i++) {
        struct edge_peer_status ps;
        edge_peer_status(st->peers[i], &ps);
        struct edge_repl_peer_view v = {st->peer_region[i], st->peer_url[i], &ps, 0, 0,
                                        atomic_load(&st->needs_snapshot[i])};
        peer_backlog(st, db, &ps.acked, &v.pending, &v.lag_ms);
        cb(ud, i, &v);
        edge_vclock_close(&ps.acked);
    }
    pthread_rwlock_unlock(&st->peers_lock);
}

void edge_repl_log_floor(struct edge_repl_state *st, sqlite3 *db, struct edge_vclock *out)
{
    edge_repl_state_vv(st, out);
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(db, "SELECT min(seq) FROM _edge_log WHERE origin = ?1", -1, &s, NULL) != SQLITE_OK) {
        edge_vclock_close(out); /* cannot tell: say nothing */
        edge_vclock_init(out);
    }
    for (size_t i = 0; i < out->n_entries && s != NULL; i++) {
        sqlite3_bind_text(s, 1, out->entries[i].region, -1, SQLITE_STATIC);
        /* nothing left: everything compacted */
        if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_type(s, 0) != SQLITE_NULL) {
            out->entries[i].n = (uint64_t)sqlite3_column_int64(s, 0) - 1;
        }
        sqlite3_reset(s);
    }
    sqlite3_finalize(s);
}
