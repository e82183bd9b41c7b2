/* SPDX-License-Identifier: MIT */
/* Snapshots of the database and seeding a region from a peer's (see compact.h). */
#include "repl/compact.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/log.h"
#include "net/httpc.h"

int edge_repl_snapshot_take(const char *db_path, uint8_t **out_data, size_t *out_len, char *err, size_t errlen)
{
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s.snapshot-%p", db_path, (void *)out_data);
    sqlite3 *src = NULL, *dst = NULL;
    int rv = EDGE_ESTORE;
    *out_data = NULL;
    *out_len = 0;
    if (sqlite3_open_v2(db_path, &src, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_open_v2(tmp, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) == SQLITE_OK) {
        sqlite3_busy_timeout(src, 5000);
        sqlite3_backup *b = sqlite3_backup_init(dst, "main", src, "main");
        if (b != NULL) {
            int rc;
            /* One step (-1) copies everything under one read lock: a multi-step copy would
             * restart on every commit of the writer and might never finish. */
            while ((rc = sqlite3_backup_step(b, -1)) == SQLITE_OK || rc == SQLITE_BUSY || rc == SQLITE_LOCKED) {
                if (rc != SQLITE_OK) sqlite3_sleep(5);
            }
            sqlite3_backup_finish(b);
            if (rc == SQLITE_DONE) rv = EDGE_OK;
        }
        if (rv != EDGE_OK) snprintf(err, errlen, "backup failed: %s", sqlite3_errmsg(dst));
    } else {
        snprintf(err, errlen, "cannot open the database for a snapshot");
    }
    sqlite3_close_v2(src);
    if (dst != NULL) {
        /* A self-contained file: no WAL next to it. */
        sqlite3_exec(dst, "PRAGMA journal_mode=DELETE", NULL, NULL, NULL);
        sqlite3_close_v2(dst);
    }
    if (rv == EDGE_OK) {
        FILE *f = fopen(tmp, "rb");
        rv = EDGE_EIO;
        if (f != NULL && fseek(f, 0, SEEK_END) == 0) {
            long sz = ftell(f);
            if (sz > 0 && sz < (1L << 30) && fseek(f, 0, SEEK_SET) == 0) {
                *out_data = edge_malloc((size_t)sz);
                if (*out_data != NULL && fread(*out_data, 1, (size_t)sz, f) == (size_t)sz) {
                    *out_len = (size_t)sz;
                    rv = EDGE_OK;
                }
            }
        }
        if (f != NULL) fclose(f);
        if (rv != EDGE_OK) snprintf(err, errlen, "cannot read the snapshot file");
    }
    unlink(tmp);
    return rv;
}

/* Is the existing database behind what the other regions can still send? That is the
 * case when a peer's log no longer holds entries this database lacks (compacted), or
 * when a peer has more of this region's own entries than the database (it was restored
 * from an old copy: writing on would reuse sequence numbers). Then the database is set
 * aside and the region is seeded from a snapshot like a new one. */
bool edge_repl_behind_the_logs(struct edge_repl_state *n)
{
    struct stat stt;
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
        struct edge_httpc_url u;
        if (strcmp(r->id, n->region) == 0 || r->url == NULL || edge_httpc_url_parse(r->url, &u) != EDGE_OK) continue;
        /* /v1/status needs a token when the peer has JWT keys; the cluster secret opens it too. */
        char headers[512] = "";
        if (conf->cluster_secret != NULL) {
            snprintf(headers, sizeof(headers), "X-Edge-Cluster-Secret: %s\r\n", conf->cluster_secret);
        }
        struct edge_httpc_resp resp;
        if (edge_httpc_request_ex(&u, "GET", "/v1/status", NULL, headers, NULL, 0, 2000, 1 << 20, &resp) == EDGE_OK &&
            resp.status == 200) {
            json_t *doc = json_loadb(resp.body.data ? resp.body.data : "", resp.body.len, 0, NULL);
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
        edge_httpc_resp_free(&resp);
    }
    edge_vclock_close(&local);
    if (behind) {
        char aside[4300], from[4300];
        const struct edge_clock *clk = edge_clock_system();
        uint64_t now = clk->wall_ms(clk->ud);
        const char *suffix[] = {"", "-wal", "-shm"};
        for (int k = 0; k < 3; k++) {
            snprintf(from, sizeof(from), "%s%s", n->db_path, suffix[k]);
            snprintf(aside, sizeof(aside), "%s.behind-%llu%s", n->db_path, (unsigned long long)now, suffix[k]);
            rename(from, aside);
        }
        EDGE_LOG(EDGE_LOG_WARN, EDGE_MOD_REPL, "set the old database aside as %s.behind-%llu; seeding from a peer",
                 n->db_path, (unsigned long long)now);
    }
    return behind;
}

/* Before the first start of a region with an empty data directory: copy a peer's
 * database, so the region starts with everything (and that peer's version vector)
 * instead of replaying the whole history, which compaction may have removed. */
void edge_repl_seed(struct edge_repl_state *n)
{
    struct stat st;
    if (!n->cluster || n->conf->cluster_secret == NULL || stat(n->db_path, &st) == 0) return;
    const struct edge_conf *conf = n->conf;
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < conf->n_regions; i++) {
            const struct edge_conf_region *r = &conf->regions[i];
            if (strcmp(r->id, n->region) == 0 || r->url == NULL) continue;
            struct edge_httpc_url u;
            if (edge_httpc_url_parse(r->url, &u) != EDGE_OK) continue;
            char headers[512];
            snprintf(headers, sizeof(headers), "X-Edge-Cluster-Secret: %s\r\n", conf->cluster_secret);
            struct edge_httpc_resp resp;
            int rv = edge_httpc_request_ex(&u, "GET", "/v1/snapshot", NULL, headers, NULL, 0, 30000, (size_t)1 << 30,
                                           &resp);
            if (rv == EDGE_OK && resp.status == 200 && resp.body.len >= 100 &&
                memcmp(resp.body.data, "SQLite format 3", 15) == 0) {
                char tmp[4200];
                snprintf(tmp, sizeof(tmp), "%s.seed", n->db_path);
                FILE *f = fopen(tmp, "wb");
                bool ok = f != NULL && fwrite(resp.body.data, 1, resp.body.len, f) == resp.body.len;
                if (f != NULL) ok = (fflush(f) == 0 && fsync(fileno(f)) == 0 && fclose(f) == 0) && ok;
                if (ok && rename(tmp, n->db_path) == 0) {
                    EDGE_LOG(EDGE_LOG_INFO, EDGE_MOD_REPL, "seeded from a snapshot of %s (%zu bytes)", r->id,
                             resp.body.len);
                    edge_httpc_resp_free(&resp);
                    return;
                }
                unlink(tmp);
            }
            edge_httpc_resp_free(&resp);
        }
        if (pass == 0) sqlite3_sleep(500); /* peers may be starting too */
    }
    EDGE_LOG(EDGE_LOG_INFO, EDGE_MOD_REPL, "no peer snapshot available; starting empty and replaying the logs");
}

