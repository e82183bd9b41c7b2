/* SPDX-License-Identifier: MIT */
/* A database behind what the other regions can still send (see compact.h): found at
 * start or while running, set aside, and this region's own entries that only it held
 * taken over from the set-aside copy after the re-seed. */
#include "repl/compact.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/log.h"
#include "net/httpc.h"
#include "repl/batch.h"
#include "repl/http_auth.h"
#include "repl/proto.h"
#include "repl/repl_int.h"

/* GET /v1/status of region r: the parsed document, or NULL when it cannot be had. */
static json_t *peer_status(const struct edge_repl_state *n, const struct edge_conf_region *r)
{
    const struct edge_conf *conf = n->conf;
    struct edge_httpc_url u;
    if (strcmp(r->id, n->region) == 0 || r->url == NULL || edge_httpc_url_parse(r->url, &u) != EDGE_OK) return NULL;
    u.tls_ctx = n->peer_tls; /* https:// peers are verified against cluster.ca_file */
    /* /v1/status needs a token when the peer has JWT keys; another region's challenge-response
     * opens it too (repl/http_auth.h): the secret itself never travels. */
    char headers[512] = "", why[160];
    if (conf->cluster_secret != NULL &&
        edge_repl_http_auth_header(conf, n->region, r->id, &u, "GET", "/v1/status", 2000, headers, sizeof(headers),
                                   why, sizeof(why)) != EDGE_OK) {
        EDGE_LOG(EDGE_LOG_DEBUG, EDGE_MOD_REPL, "not asking %s for its status: %s", r->id, why);
        return NULL;
    }
    struct edge_httpc_resp resp;
    json_t *doc = NULL;
    if (edge_httpc_request_ex(&u, "GET", "/v1/status", NULL, headers, NULL, 0, 2000, 1 << 20, &resp) == EDGE_OK &&
        resp.status == 200) {
        doc = json_loadb(resp.body.data ? resp.body.data : "", resp.body.len, 0, NULL);
    }
    edge_httpc_resp_free(&resp);
    return doc;
}

size_t edge__repl_seed_order(const struct edge_repl_state *n, struct edge__seed_peer *out)
{
    const struct edge_conf *conf = n->conf;
    size_t count = 0;
    for (size_t i = 0; i < conf->n_regions; i++) {
        const struct edge_conf_region *r = &conf->regions[i];
        if (strcmp(r->id, n->region) == 0 || r->url == NULL) continue;
        json_t *doc = peer_status(n, r);
        struct edge__seed_peer p = {.region = i, .known = doc != NULL};
        const char *origin;
        json_t *v;
        json_object_foreach(json_object_get(doc, "version_vector"), origin, v) {
            (void)origin;
            p.entries += (uint64_t)json_integer_value(v);
        }
        json_decref(doc);
        /* insertion, stable: equal peers keep the configuration's order */
        size_t at = count++;
        while (at > 0 && p.known && (!out[at - 1].known || out[at - 1].entries < p.entries)) {
            out[at] = out[at - 1];
            at--;
        }
        out[at] = p;
    }
    return count;
}

int edge_repl_set_aside(struct edge_repl_state *n, char *aside, size_t aside_len)
{
    char to[4300], from[4300];
    const struct edge_clock *clk = edge_clock_system();
    uint64_t now = clk->wall_ms(clk->ud);
    const char *suffix[] = {"", "-wal", "-shm"};
    int rv = EDGE_OK;
    for (int k = 0; k < 3; k++) {
        snprintf(from, sizeof(from), "%s%s", n->db_path, suffix[k]);
        snprintf(to, sizeof(to), "%s.behind-%llu%s", n->db_path, (unsigned long long)now, suffix[k]);
        if (rename(from, to) != 0 && k == 0) rv = EDGE_EIO;
    }
    snprintf(aside, aside_len, "%s.behind-%llu", n->db_path, (unsigned long long)now);
    if (rv == EDGE_OK) {
        EDGE_LOG(EDGE_LOG_WARN, EDGE_MOD_REPL, "set the old database aside as %s; seeding from a peer", aside);
    }
    return rv;
}

/* Is the existing database behind what the other regions can still send? That is the
 * case when a peer's log no longer holds entries this database lacks (compacted), or
 * when a peer has more of this region's own entries than the database (it was restored
 * from an old copy: writing on would reuse sequence numbers). Then the database is set
 * aside (its path in aside) and the region is seeded from a snapshot like a new one. */
bool edge_repl_behind_the_logs(struct edge_repl_state *n, char *aside, size_t aside_len)
{
    struct stat stt;
    aside[0] = '\0';
    if (!n->cluster || stat(n->db_path, &stt) != 0) return false;
    struct edge_vclock local;
    edge_vclock_init(&local);
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(n->db_path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK) {
        edge_repl_vv_load(db, &local); /* no table yet: an empty vector */
    }
    sqlite3_stmt *leftover;
    while (db != NULL && (leftover = sqlite3_next_stmt(db, NULL)) != NULL) sqlite3_finalize(leftover);
    sqlite3_close_v2(db);
    bool behind = false;
    const struct edge_conf *conf = n->conf;
    for (size_t i = 0; i < conf->n_regions && !behind; i++) {
        const struct edge_conf_region *r = &conf->regions[i];
        json_t *doc = peer_status(n, r);
        if (doc == NULL) continue;
        const char *origin;
        json_t *v;
        json_object_foreach(json_object_get(doc, "log_floor"), origin, v) {
            if (strcmp(origin, n->region) != 0 && (uint64_t)json_integer_value(v) > edge_vclock_get(&local, origin)) {
                EDGE_LOG(EDGE_LOG_WARN, EDGE_MOD_REPL,
                         "this database is behind the compacted log of %s (origin %s: have %llu, log starts after %llu)",
                         r->id, origin, (unsigned long long)edge_vclock_get(&local, origin),
                         (unsigned long long)json_integer_value(v));
                behind = true;
            }
        }
        json_t *mine = json_object_get(json_object_get(doc, "version_vector"), n->region);
        if (!behind && (uint64_t)json_integer_value(mine) > edge_vclock_get(&local, n->region)) {
            EDGE_LOG(EDGE_LOG_WARN, EDGE_MOD_REPL,
                     "%s holds %llu entries of this region but this database only %llu: it was restored from "
                     "an old copy", r->id, (unsigned long long)json_integer_value(mine),
                     (unsigned long long)edge_vclock_get(&local, n->region));
            behind = true;
        }
        json_decref(doc);
    }
    edge_vclock_close(&local);
    return behind && edge_repl_set_aside(n, aside, aside_len) == EDGE_OK;
}

bool edge_repl_behind_decide(const char *self, const struct edge_vclock *local, const struct edge_vclock *floors,
                             const struct edge_vclock *vvs, const char *const *ids, int n, char *why, size_t why_len)
{
    size_t w = 0;
    bool any_lacks = false;
    if (why_len > 0) why[0] = '\0';
    for (int d = 0; d < n; d++) {
        bool lacks = false;
        for (size_t k = 0; k < floors[d].n_entries && !lacks; k++) {
            const char *origin = floors[d].entries[k].region;
            uint64_t have = edge_vclock_get(local, origin);
            if (strcmp(origin, self) == 0 || floors[d].entries[k].n <= have) continue;
            lacks = true;
            if (w < why_len) {
                int m = snprintf(why + w, why_len - w, "%s%s: origin %s, have %llu, its log starts after %llu",
                                 w ? "; " : "", ids[d], origin, (unsigned long long)have,
                                 (unsigned long long)floors[d].entries[k].n);
                w += m > 0 ? (size_t)m : 0;
            }
        }
        any_lacks = any_lacks || lacks;
        if (lacks) continue;
        /* A peer whose log lacks nothing but which holds nothing this node lacks (other
         * origins) cannot catch it up either: it is as far as this node, so a peer that
         * lacks an origin for this node lacks it for that one too, and it stays there
         * until it is re-seeded itself. Without this, two regions cut off together while
         * a third compacted past both each counted the other as able to serve, and
         * neither ever re-seeded. */
        bool holds_more = vvs == NULL;
        for (size_t k = 0; vvs != NULL && k < vvs[d].n_entries && !holds_more; k++) {
            const char *origin = vvs[d].entries[k].region;
            holds_more = strcmp(origin, self) != 0 && vvs[d].entries[k].n > edge_vclock_get(local, origin);
        }
        if (holds_more) return false;
        if (w < why_len) {
            int m = snprintf(why + w, why_len - w, "%s%s: holds nothing this region lacks", w ? "; " : "", ids[d]);
            w += m > 0 ? (size_t)m : 0;
        }
    }
    return n > 0 && any_lacks;
}

/* While running (blocking, off the loops): see compact.h. The local VV is read after the
 * answers, so an entry applied meanwhile never makes it look behind. */
bool edge_repl_behind_now(struct edge_repl_state *n)
{
    if (!n->cluster) return false;
    const struct edge_conf *conf = n->conf;
    struct edge_vclock floors[EDGE_REPL_MAX_PEERS], vvs[EDGE_REPL_MAX_PEERS];
    const char *ids[EDGE_REPL_MAX_PEERS] = {NULL};
    int nd = 0;
    for (size_t i = 0; i < conf->n_regions && nd < EDGE_REPL_MAX_PEERS; i++) {
        json_t *doc = peer_status(n, &conf->regions[i]);
        if (doc == NULL) continue;
        ids[nd] = conf->regions[i].id;
        edge_vclock_init(&floors[nd]);
        edge_vclock_init(&vvs[nd]);
        const char *origin;
        json_t *v;
        int rv = EDGE_OK;
        json_object_foreach(json_object_get(doc, "log_floor"), origin, v) {
            if (rv == EDGE_OK && json_integer_value(v) > 0) {
                rv = edge_vclock_set(&floors[nd], origin, (uint64_t)json_integer_value(v));
            }
        }
        json_object_foreach(json_object_get(doc, "version_vector"), origin, v) {
            if (rv == EDGE_OK && json_integer_value(v) > 0) {
                rv = edge_vclock_set(&vvs[nd], origin, (uint64_t)json_integer_value(v));
            }
        }
        json_decref(doc);
        if (rv != EDGE_OK) {
            edge_vclock_close(&floors[nd]); /* cannot tell what this peer holds: as if it had not answered */
            edge_vclock_close(&vvs[nd]);
            continue;
        }
        nd++;
    }
    struct edge_vclock local;
    edge_vclock_init(&local);
    edge_repl_state_vv(n, &local);
    char why[512];
    bool behind = edge_repl_behind_decide(n->region, &local, floors, vvs, ids, nd, why, sizeof(why));
    if (behind) {
        EDGE_LOG(EDGE_LOG_WARN, EDGE_MOD_REPL,
                 "this region is behind the compacted logs of every peer that answers (%s): it must be re-seeded "
                 "from a snapshot",
                 why);
    }
    edge_vclock_close(&local);
    for (int d = 0; d < nd; d++) {
        edge_vclock_close(&floors[d]);
        edge_vclock_close(&vvs[d]);
    }
    return behind;
}

/* Does the old copy's log hold entry origin:seq? */
static bool old_log_has(sqlite3 *old, const char *origin, uint64_t seq)
{
    sqlite3_stmt *q = NULL;
    bool has = false;
    if (sqlite3_prepare_v2(old, "SELECT 1 FROM _edge_log WHERE origin = ?1 AND seq = ?2", -1, &q, NULL) == SQLITE_OK) {
        sqlite3_bind_text(q, 1, origin, -1, SQLITE_STATIC);
        sqlite3_bind_int64(q, 2, (sqlite3_int64)seq);
        has = sqlite3_step(q) == SQLITE_ROW;
    }
    sqlite3_finalize(q);
    return has;
}

/* sent: where the next batch from the old copy starts. Per origin, what the new database
 * has; an other origin whose next entry the old copy no longer holds (compacted there) is
 * skipped whole (set to the old copy's count): the links bring it. skip marks those. */
static int reapply_from(sqlite3 *old, const struct edge_vclock *oldvv, const struct edge_vclock *now,
                        const char *self, struct edge_vclock *skip, struct edge_vclock *sent)
{
    int rv = EDGE_OK;
    for (size_t i = 0; i < oldvv->n_entries && rv == EDGE_OK; i++) {
        const char *o = oldvv->entries[i].region;
        uint64_t have = edge_vclock_get(now, o);
        if (edge_vclock_get(skip, o) == 0 && strcmp(o, self) != 0 && oldvv->entries[i].n > have &&
            !old_log_has(old, o, have + 1)) {
            rv = edge_vclock_set(skip, o, 1);
        }
        if (rv == EDGE_OK) rv = edge_vclock_set(sent, o, edge_vclock_get(skip, o) ? oldvv->entries[i].n : have);
    }
    return rv;
}

/* Own entries stuck on dependencies that neither copy holds (an entry of another region
 * this one had applied, which the snapshot's region never received and the old log no
 * longer has): their deps are narrowed to what the new database holds, so they apply
 * now. The merge stays the same: this region had applied what it depended on, so its
 * HLC stamps every own entry above those, and the concurrent rule (greater stamp wins)
 * gives what the causal rule would have. Returns how many entries were narrowed. */
static size_t narrow_own_deps(struct edge_repl_entry *entries, size_t count, const char *self,
                              const struct edge_vclock *now)
{
    size_t narrowed = 0;
    for (size_t i = 0; i < count; i++) {
        struct edge_repl_entry *e = &entries[i];
        if (strcmp(e->origin, self) != 0) continue;
        bool any = false;
        for (size_t k = 0; k < e->deps.n_entries;) {
            char r[EDGE_VCLOCK_REGION_MAX + 1];
            snprintf(r, sizeof(r), "%s", e->deps.entries[k].region);
            uint64_t have = edge_vclock_get(now, r);
            if (strcmp(r, self) == 0 || e->deps.entries[k].n <= have) {
                k++;
                continue;
            }
            /* Lowering never allocates; at 0 the entry goes and the next one moves to k. */
            (void)edge_vclock_set(&e->deps, r, have);
            if (have > 0) k++;
            any = true;
        }
        narrowed += any;
    }
    return narrowed;
}

/* After a re-seed, on the writer's connection before the writer runs: this region's own
 * entries that the set-aside database holds beyond what the snapshot has of them (writes
 * acknowledged here that no peer had received) are applied to the new database like
 * entries from a peer, in HLC order, so they are neither lost nor renumbered; the links
 * then send them on. What they depend on comes first: entries of other regions that the
 * old copy holds and the snapshot lacks are applied with them (they are the same entries
 * everywhere), and an own entry whose dependency neither copy holds has its deps
 * narrowed (narrow_own_deps). Every round re-reads the new VV, so an entry deferred in
 * one batch is sent again in the next; each round applies at least one entry. */
int edge_repl_reapply_own(struct edge_repl_state *st, sqlite3 *wdb, const char *aside)
{
    sqlite3 *old = NULL;
    struct edge_vclock oldvv, sent, now, skip;
    struct edge_buf msg;
    edge_vclock_init(&oldvv);
    edge_vclock_init(&sent);
    edge_vclock_init(&now);
    edge_vclock_init(&skip);
    edge_buf_init(&msg, EDGE_REPL_FRAME_MAX);
    uint64_t first = 0, total = 0;
    size_t narrowed = 0;
    char err[256] = "";
    int rv = EDGE_ESTORE;
    if (sqlite3_open_v2(aside, &old, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) goto out;
    rv = edge_repl_log_vv(old, &oldvv, err, sizeof(err));
    if (rv == EDGE_OK) rv = edge_repl_vv_load(wdb, &now);
    if (rv != EDGE_OK) goto out;
    first = edge_vclock_get(&now, st->region);
    uint64_t want = edge_vclock_get(&oldvv, st->region);
    for (int guard = 0; rv == EDGE_OK && edge_vclock_get(&now, st->region) < want && guard < 1000000; guard++) {
        size_t n = 0;
        edge_buf_reset(&msg);
        rv = reapply_from(old, &oldvv, &now, st->region, &skip, &sent);
        if (rv == EDGE_OK) rv = edge_repl_batch_build(old, &sent, 1000, (size_t)1 << 20, &msg, &n, err, sizeof(err));
        if (rv != EDGE_OK || n == 0) break;
        struct edge_repl_entry *entries = NULL;
        size_t count = 0;
        rv = edge_repl_decode_entries((const uint8_t *)msg.data, msg.len, &entries, &count);
        if (rv != EDGE_OK) break;
        struct edge_repl_apply_stats as = {0};
        edge_capture_suspend(st->wcap, true);
        rv = edge_repl_apply_batch(wdb, &st->local, st->max_skew_ms, entries, count, &as, err, sizeof(err));
        if (rv == EDGE_OK && as.applied == 0) {
            /* Stuck on what neither copy holds: narrowed, tried once more. */
            size_t k = narrow_own_deps(entries, count, st->region, &now);
            narrowed += k;
            if (k > 0) rv = edge_repl_apply_batch(wdb, &st->local, st->max_skew_ms, entries, count, &as, err,
                                                  sizeof(err));
        }
        edge_capture_suspend(st->wcap, false);
        edge_repl_entries_free(entries, count);
        total += as.applied;
        if (rv == EDGE_OK && as.applied == 0) {
            snprintf(err, sizeof(err), "entry %s:%llu cannot be applied", st->region,
                     (unsigned long long)edge_vclock_get(&now, st->region) + 1);
            rv = EDGE_EAGAIN;
        }
        if (rv == EDGE_OK) {
            edge_vclock_close(&now);
            edge_vclock_init(&now);
            rv = edge_repl_vv_load(wdb, &now);
        }
    }
    if (rv == EDGE_OK && edge_vclock_get(&now, st->region) < want) {
        snprintf(err, sizeof(err), "entry %s:%llu is not in it", st->region,
                 (unsigned long long)edge_vclock_get(&now, st->region) + 1);
        rv = EDGE_ENOTFOUND;
    }
    if (total > 0) {
        edge_vclock_close(&now);
        edge_vclock_init(&now);
        if (edge_repl_vv_load(wdb, &now) == EDGE_OK) edge_repl_state_merge(st, &now);
    }
out:;
    uint64_t own = edge_vclock_get(&now, st->region) > first ? edge_vclock_get(&now, st->region) - first : 0;
    if (rv == EDGE_ENOTFOUND || rv == EDGE_EAGAIN) {
        /* A gap in this region's own entries: the old copy no longer holds the next one
         * (compacted once a peer had it) and the snapshot's region lacks it too. */
        EDGE_LOG(EDGE_LOG_ERROR, EDGE_MOD_REPL, "re-seed: own entries of %s left in it after %llu applied: %s", aside,
                 (unsigned long long)own, err);
    } else if (rv != EDGE_OK) {
        EDGE_LOG(EDGE_LOG_ERROR, EDGE_MOD_REPL, "re-seed: cannot take this region's own entries from %s: %s (%s)",
                 aside, edge_strerror(rv), err);
    } else if (total > 0) {
        EDGE_LOG(EDGE_LOG_INFO, EDGE_MOD_REPL,
                 "re-seed: %llu entries of this region that no peer had yet were taken over from %s, with %llu "
                 "entries of other regions they depend on; %zu had their dependencies narrowed",
                 (unsigned long long)own, aside, (unsigned long long)(total - own), narrowed);
    }
    if (old != NULL) {
        sqlite3_stmt *leftover;
        while ((leftover = sqlite3_next_stmt(old, NULL)) != NULL) sqlite3_finalize(leftover);
        sqlite3_close_v2(old);
    }
    edge_buf_free(&msg);
    edge_vclock_close(&oldvv);
    edge_vclock_close(&sent);
    edge_vclock_close(&now);
    edge_vclock_close(&skip);
    return rv;
}
