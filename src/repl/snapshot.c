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
#include "repl/proto.h"

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

/* The answer's X-Edge-Snapshot-Mac against the size and hash it announced, under the
 * nonces of our own X-Edge-Cluster-Auth header (repl/proto.h): true when they match. */
static bool answer_mac_ok(const struct edge_conf *conf, const char *peer_id, const char *auth_header,
                          const char *head, const char *size, const char *sha256_hex)
{
    struct edge_repl_http_auth a;
    char value[320], got[80];
    uint8_t want[EDGE_REPL_MAC_LEN], mac[EDGE_REPL_MAC_LEN];
    const char *v = strchr(auth_header, ':');
    size_t vlen = v != NULL ? strcspn(v + 2, "\r\n") : 0;
    bool ok = v != NULL && vlen < sizeof(value);
    if (ok) {
        memcpy(value, v + 2, vlen);
        value[vlen] = '\0';
        ok = edge_repl_http_auth_parse(value, &a) == EDGE_OK &&
             edge_httpc_head_value(head, "x-edge-snapshot-mac", got, sizeof(got)) == EDGE_OK &&
             edge_repl_unhex32(got, strlen(got), mac) == EDGE_OK &&
             edge_repl_http_snapshot_mac(conf->cluster_secret, &a, conf->cluster_name, peer_id,
                                         strtoull(size, NULL, 10), sha256_hex, want) == EDGE_OK &&
             sodium_memcmp(want, mac, sizeof(mac)) == 0;
    }
    sodium_memzero(&a, sizeof(a));
    sodium_memzero(want, sizeof(want));
    return ok;
}

/* One attempt to copy r's snapshot to db_path: streamed into db_path.seed, synced,
 * checked against the size and SHA-256 the peer announced (and MACed for this request)
 * and the SQLite magic, then
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
        } else if (!answer_mac_ok(conf, r->id, headers, head, want_size, want_hash)) {
            /* the hash guards the body against corruption; the MAC guards the hash */
            EDGE_LOG(EDGE_LOG_WARN, EDGE_MOD_REPL,
                     "seed: snapshot of %s refused: its X-Edge-Snapshot-Mac is missing or does not match its size and "
                     "sha256 (altered on the way, or an older node)", r->id);
            ok = false;
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

/* Before the node opens its database, when there is none: copy a peer's, so the region
 * starts with everything (and that peer's version vector) instead of replaying the whole
 * history, which compaction may have removed. A new region (must false) tries every peer
 * twice and else starts empty: the regions of a new cluster start together, each with
 * nothing to give. A region that must be seeded (its database was set aside) tries until
 * one answers, backing off up to 5 s, and stops only when cancelled says so. */
int edge_repl_seed(struct edge_repl_state *n, bool must, bool (*cancelled)(void *ud), void *ud)
{
    struct stat st;
    if (!n->cluster || n->conf->cluster_secret == NULL || stat(n->db_path, &st) == 0) return EDGE_OK;
    const struct edge_conf *conf = n->conf;
    int wait_ms = 500;
    struct edge__seed_peer *peers = edge_calloc(conf->n_regions, sizeof(*peers));
    if (peers == NULL) return EDGE_ENOMEM;
    int rv = EDGE_OK;
    for (uint64_t pass = 0; pass < UINT64_MAX; pass++) {
        /* the most advanced peer that answers first: the first in the configuration may be
         * behind (cut off from some region's writes, stuck) */
        size_t count = edge__repl_seed_order(n, peers);
        for (size_t k = 0; k < count; k++) {
            if (cancelled != NULL && cancelled(ud)) {
                rv = EDGE_ECLOSED;
                goto out;
            }
            if (seed_from(n, &conf->regions[peers[k].region])) goto out;
        }
        if (!must && pass >= 1) break;
        if (must && pass % 10 == 0) {
            EDGE_LOG(EDGE_LOG_WARN, EDGE_MOD_REPL, "seed: no peer gave a snapshot yet; serving 503 SEEDING until one does");
        }
        /* peers may be starting too; sleep in small steps so a stop is seen */
        for (int t = 0; t < wait_ms; t += 100) {
            if (cancelled != NULL && cancelled(ud)) {
                rv = EDGE_ECLOSED;
                goto out;
            }
            sqlite3_sleep(100);
        }
        wait_ms = wait_ms >= 2500 ? 5000 : wait_ms * 2;
    }
    EDGE_LOG(EDGE_LOG_INFO, EDGE_MOD_REPL, "no peer snapshot available; starting empty and replaying the logs");
out:
    edge_free(peers);
    return rv;
}
