/* SPDX-License-Identifier: MIT */
/* Snapshots of the database and seeding a region from a peer's (see compact.h). */
#include "repl/compact.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/log.h"
#include "net/httpc.h"
#include "repl/http_auth.h"

/* SHA-256 of the file open at fd, read from its start in 1 MiB chunks, as hex. */
static int file_sha256(int fd, uint64_t *out_size, char hex[65])
{
    enum { CHUNK = 1 << 20 };
    uint8_t *buf = edge_malloc(CHUNK);
    if (buf == NULL) return EDGE_ENOMEM;
    crypto_hash_sha256_state h;
    crypto_hash_sha256_init(&h);
    uint64_t off = 0;
    int rv = EDGE_OK;
    for (;;) {
        ssize_t n = pread(fd, buf, CHUNK, (off_t)off);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) rv = EDGE_EIO;
        if (n <= 0) break;
        crypto_hash_sha256_update(&h, buf, (unsigned long long)n);
        off += (uint64_t)n;
    }
    uint8_t md[crypto_hash_sha256_BYTES];
    crypto_hash_sha256_final(&h, md);
    sodium_bin2hex(hex, 65, md, sizeof(md));
    *out_size = off;
    edge_free(buf);
    return rv;
}

int edge_repl_snapshot_take(const char *db_path, int *out_fd, uint64_t *out_size, char sha256_hex[65], char *err,
                            size_t errlen)
{
    /* A name of its own per snapshot (concurrent requests), unlinked as soon as it is
     * open: a crash leaves nothing behind but the copy of a running transfer. */
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s.snapshot-%ld-%p", db_path, (long)getpid(), (void *)out_fd);
    sqlite3 *src = NULL, *dst = NULL;
    int rv = EDGE_ESTORE;
    int fd = -1;
    *out_fd = -1;
    *out_size = 0;
    sha256_hex[0] = '\0';
    unlink(tmp);
    if (sqlite3_open_v2(db_path, &src, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_open_v2(tmp, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) == SQLITE_OK) {
        sqlite3_busy_timeout(src, 5000);
        /* The copy goes page by page through the destination's small page cache onto
         * disk: memory stays flat whatever the database's size. No sync of the copy: it
         * lives only as long as the transfer, and the receiver checks its hash. */
        sqlite3_exec(dst, "PRAGMA synchronous=OFF", NULL, NULL, NULL);
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
        fd = open(tmp, O_RDONLY | O_CLOEXEC);
        rv = fd >= 0 ? file_sha256(fd, out_size, sha256_hex) : EDGE_EIO;
        if (rv != EDGE_OK) snprintf(err, errlen, "cannot read the snapshot file");
    }
    unlink(tmp);
    if (rv == EDGE_OK) {
        *out_fd = fd;
    } else if (fd >= 0) {
        close(fd);
    }
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
        u.tls_ctx = n->peer_tls;
        /* /v1/status needs a token when the peer has JWT keys; another region's challenge-response
         * opens it too (repl/http_auth.h): the secret itself never travels. */
        char headers[512] = "", why[160];
        if (conf->cluster_secret != NULL &&
            edge_repl_http_auth_header(conf, n->region, r->id, &u, "GET", "/v1/status", 2000, headers,
                                       sizeof(headers), why, sizeof(why)) != EDGE_OK) {
            EDGE_LOG(EDGE_LOG_INFO, EDGE_MOD_REPL, "not asking %s for its status: %s", r->id, why);
            continue;
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

/* One attempt to copy r's snapshot to db_path: streamed into db_path.seed, synced,
 * checked against the size and SHA-256 the peer announced and the SQLite magic, then
 * renamed over db_path (and the directory synced). Memory: one receive buffer. */
static bool seed_from(struct edge_repl_state *n, const struct edge_conf_region *r)
{
    const struct edge_conf *conf = n->conf;
    struct edge_httpc_url u;
    if (edge_httpc_url_parse(r->url, &u) != EDGE_OK) return false;
    u.tls_ctx = n->peer_tls;
    /* another region's challenge-response (repl/http_auth.h): the secret itself never travels */
    char headers[512], why[160];
    if (edge_repl_http_auth_header(conf, n->region, r->id, &u, "GET", "/v1/snapshot", 5000, headers, sizeof(headers),
                                   why, sizeof(why)) != EDGE_OK) {
        EDGE_LOG(EDGE_LOG_INFO, EDGE_MOD_REPL, "no snapshot from %s: %s", r->id, why);
        return false;
    }
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s.seed", n->db_path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        EDGE_LOG(EDGE_LOG_WARN, EDGE_MOD_REPL, "seed: cannot create %s: %s", tmp, strerror(errno));
        return false;
    }
    char head[4096], want_size[32] = "", want_hash[80] = "", got_hash[65] = "";
    int status = 0;
    uint64_t len = 0, on_disk = 0;
    /* The peer makes its copy before it answers: the head may take a while on a large
     * database; after that, only a stalled transfer times out. */
    int rv = edge_httpc_get_to_fd(&u, "/v1/snapshot", headers, 300000, 30000, UINT64_MAX, fd, &status, head,
                                  sizeof(head), &len);
    bool ok = rv == EDGE_OK && status == 200;
    if (ok) {
        ok = edge_httpc_head_value(head, "x-edge-snapshot-size", want_size, sizeof(want_size)) == EDGE_OK &&
             edge_httpc_head_value(head, "x-edge-snapshot-sha256", want_hash, sizeof(want_hash)) == EDGE_OK &&
             strtoull(want_size, NULL, 10) == len;
        if (!ok) {
            EDGE_LOG(EDGE_LOG_WARN, EDGE_MOD_REPL, "seed: snapshot of %s incomplete: %llu of %s bytes", r->id,
                     (unsigned long long)len, want_size[0] ? want_size : "?");
        }
    } else if (rv != EDGE_OK || status != 503) {
        EDGE_LOG(EDGE_LOG_INFO, EDGE_MOD_REPL, "seed: no snapshot from %s (%s, HTTP %d)", r->id, edge_strerror(rv),
                 status);
    }
    ok = ok && fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
    char magic[16] = "";
    if (ok) {
        int rfd = open(tmp, O_RDONLY | O_CLOEXEC);
        ok = rfd >= 0 && pread(rfd, magic, 15, 0) == 15 && memcmp(magic, "SQLite format 3", 15) == 0 &&
             file_sha256(rfd, &on_disk, got_hash) == EDGE_OK && on_disk == len && strcmp(got_hash, want_hash) == 0;
        if (rfd >= 0) close(rfd);
        if (!ok) {
            EDGE_LOG(EDGE_LOG_WARN, EDGE_MOD_REPL, "seed: snapshot of %s fails its check (sha256 %s, announced %s)",
                     r->id, got_hash, want_hash);
        }
    }
    if (ok && rename(tmp, n->db_path) == 0) {
        char dir[4200];
        snprintf(dir, sizeof(dir), "%s", n->db_path);
        char *slash = strrchr(dir, '/');
        if (slash != NULL) *slash = '\0';
        int dfd = open(slash != NULL ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            (void)fsync(dfd); /* the rename survives a crash */
            close(dfd);
        }
        EDGE_LOG(EDGE_LOG_INFO, EDGE_MOD_REPL, "seeded from a snapshot of %s (%llu bytes, sha256 %s)", r->id,
                 (unsigned long long)len, got_hash);
        return true;
    }
    unlink(tmp);
    return false;
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
            if (seed_from(n, r)) return;
        }
        if (pass == 0) sqlite3_sleep(500); /* peers may be starting too */
    }
    EDGE_LOG(EDGE_LOG_INFO, EDGE_MOD_REPL, "no peer snapshot available; starting empty and replaying the logs");
}
