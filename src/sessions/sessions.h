/* SPDX-License-Identifier: MIT */
/* Distributed sessions (docs/sessions.md): the sealed record, the key ring, the JSON
 * Merge Patch, and the session table's reads and writes.
 *
 * DESIGN
 * A session is one row of _edge_sessions, replicated by the log like any user row
 * (repl/capture.c captures this one internal table): every region holds every session
 * and serves reads from its own copy. The row's `home` is the only region that writes
 * it; `epoch` grows by one each time the home moves, and every write at the home checks
 * home and epoch inside the writer's transaction, so a write that races a move either
 * commits before it or finds the row moved (EDGE_SESS_MOVED) and is retried at the new
 * home. Expiry times are the home's clock in unix ms: `expires_at` slides with reads
 * (never past `max_expires_at`, the absolute lifetime), and every region treats a row
 * whose expires_at has passed as absent, before the home's GC deletes it.
 *
 * The data is JSON text, compressed with zstd and sealed with XChaCha20-Poly1305
 * (libsodium) before it reaches SQLite or the log; the associated data is the session
 * id and the key id, so a record moved to another id (or relabelled with another key)
 * fails to open. blob = 0x01 | nonce[24] | ciphertext+tag. */
#ifndef EDGE_SESSIONS_SESSIONS_H
#define EDGE_SESSIONS_SESSIONS_H

#include <jansson.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "store/store.h"

#define EDGE_SESS_ID_MAX 128
#define EDGE_SESS_REGION_MAX 64
#define EDGE_SESS_KEYS_MAX 32
#define EDGE_SESS_TABLE "_edge_sessions"

/* ---- keys ---- */
struct edge_sess_keys {
    int n;
    uint32_t id[EDGE_SESS_KEYS_MAX];
    uint8_t key[EDGE_SESS_KEYS_MAX][32];
    int newest; /* index of the highest id: new records are sealed with it */
};

/* A key file: one key a line, "<id> <64 hex digits>" (id 1..4294967295); blank lines
 * and lines starting with '#' are skipped. EDGE_ECONFIG with a message naming the line. */
int edge_sess_keys_load(const char *path, struct edge_sess_keys *out, char *errmsg, size_t errmsg_len);
/* The node's own key file (single node without sessions.key_file): created with one
 * random key (mode 0600) when missing, then loaded. */
int edge_sess_keys_ensure(const char *path, struct edge_sess_keys *out, char *errmsg, size_t errmsg_len);
void edge_sess_keys_wipe(struct edge_sess_keys *k);

/* ---- ids ---- */
/* 1..128 of [A-Za-z0-9_.-], not starting with '_' or '.' (reserved), not "stats". */
bool edge_sess_id_valid(const char *id, size_t len);
/* 32 hex digits of a random 128-bit id. */
void edge_sess_id_random(char out[33]);

/* ---- sealing ---- */
/* Compress (zstd, level) and encrypt json[0..len) for session id with the newest key.
 * blob is reset first. */
int edge_sess_seal(const struct edge_sess_keys *k, int level, const char *id, const void *json, size_t len,
                   struct edge_buf *blob, uint32_t *out_key_id);
/* The JSON text of a sealed record (NUL-terminated in out). EDGE_ENOTFOUND: no key with
 * that id; EDGE_ECORRUPT: authentication failed or bad framing; EDGE_ETOOBIG: larger
 * than max_plain. */
int edge_sess_open(const struct edge_sess_keys *k, const char *id, uint32_t key_id, const void *blob, size_t len,
                   size_t max_plain, struct edge_buf *out);

/* ---- JSON Merge Patch (RFC 7396) ---- */
/* target patched by patch; returns the new value (a new reference; target's reference
 * is consumed), or NULL when out of memory. */
json_t *edge_sess_merge_patch(json_t *target, json_t *patch);

/* ---- the body of a PUT or POST ---- */
enum edge_sess_ttl_kind { EDGE_SESS_TTL_ABSENT, EDGE_SESS_TTL_NULL, EDGE_SESS_TTL_INT, EDGE_SESS_TTL_OTHER };
struct edge_sess_body {
    bool is_object;      /* the body is a JSON object */
    bool has_data;       /* it has a member "data" ... */
    bool data_is_object; /* ... whose value is an object */
    enum edge_sess_ttl_kind ttl;
    long long ttl_s; /* EDGE_SESS_TTL_INT */
};
/* Check that body[0..len) is one JSON text (the grammar jansson's json_loadb accepts with
 * no flags: UTF-8, no \u0000, integers within int64, depth at most 2048) and, for an
 * object, copy the value of its member "data" into data without whitespace between
 * tokens (the last "data" wins). EDGE_EINVAL with a message in err for bad JSON;
 * EDGE_ENOMEM/EDGE_ETOOBIG when data does not fit. */
int edge_sess_body_scan(const void *body, size_t len, struct edge_buf *data, struct edge_sess_body *out, char *err,
                        size_t err_len);

/* ---- the table ---- */
struct edge_sess_row {
    char id[EDGE_SESS_ID_MAX + 1];
    char home[EDGE_SESS_REGION_MAX + 1];
    int64_t epoch, version, ttl_ms, created_at, expires_at, max_expires_at, raw_len;
    uint32_t key_id;
    struct edge_buf blob; /* owned; init before use, edge_buf_free after */
};

/* Create the table and its index (writer connection, before the writer starts). */
int edge_sess_schema(sqlite3 *db);
/* Read a row on conn (a loop's read connection or the writer's). EDGE_ENOTFOUND when absent. */
int edge_sess_get(struct edge_store_conn *conn, const char *id, struct edge_sess_row *row);

/* What a write at the home wants; run by edge_sess_write on the writer connection. */
enum edge_sess_kind {
    EDGE_SESS_CREATE,
    EDGE_SESS_REPLACE, /* PUT, and PATCH with base_version set */
    EDGE_SESS_DELETE,
    EDGE_SESS_MIGRATE, /* hand the home to `target` */
};
enum edge_sess_result {
    EDGE_SESS_OK = 0,
    EDGE_SESS_NOT_FOUND, /* absent or expired */
    EDGE_SESS_EXISTS,    /* create of a live id */
    EDGE_SESS_VERSION,   /* If-Match differs (412) */
    EDGE_SESS_MOVED,     /* home is elsewhere: out_home, out_epoch */
    EDGE_SESS_RETRY,     /* PATCH: the row changed since it was read; read again */
};
struct edge_sess_write {
    enum edge_sess_kind kind;
    const char *id;
    const char *region;  /* this node's region: the home that writes */
    int64_t now_ms;      /* the home's clock */
    int64_t ttl_ms;      /* CREATE, and REPLACE when > 0 (a new ttl) */
    int64_t lifetime_ms; /* CREATE: max_expires_at = now + lifetime */
    int64_t if_match;    /* -1: none */
    int64_t base_version; /* REPLACE from a PATCH: the version the patch was applied to; -1: none */
    int64_t base_epoch;   /* MIGRATE: the epoch the decision saw */
    const char *target;   /* MIGRATE */
    const void *blob;
    size_t blob_len;
    uint32_t key_id;
    int64_t raw_len;
    /* sessions.partition_mode: available: the region counted in the record's version
     * vector (this node's; NULL when the mode is unavailable and vv stays as it is), and
     * partitioned: a REPLACE taken here while the home is unreachable (no home check). */
    const char *vv_region;
    bool partitioned;
    /* out */
    enum edge_sess_result result;
    int64_t out_version, out_epoch, out_expires_at;
    char out_home[EDGE_SESS_REGION_MAX + 1];
};
/* EDGE_OK with w->result set (nothing written unless EDGE_SESS_OK), or a storage error. */
int edge_sess_write(struct edge_store_conn *conn, struct edge_sess_write *w);

/* Slide the TTL of the live sessions of `region` among ids: expires_at becomes
 * min(now + ttl, max_expires_at) where that moves it by at least min_step_ms. */
int edge_sess_touch(struct edge_store_conn *conn, const char *region, int64_t now_ms, int64_t min_step_ms,
                    char *const *ids, size_t n, size_t *out_touched);
/* Delete at most limit expired sessions homed at region, oldest first, stopping once
 * budget_ns (by clock_ns) has passed. */
int edge_sess_gc(struct edge_store_conn *conn, const char *region, int64_t now_ms, int limit, uint64_t budget_ns,
                 uint64_t (*clock_ns)(void), int *out_deleted);
/* Live sessions homed at region. */
int edge_sess_count_home(struct edge_store_conn *conn, const char *region, int64_t now_ms, int64_t *out);
/* Live sessions, their sealed bytes and their JSON bytes before compression; rows: every
 * row stored, expired ones not yet collected included. */
int edge_sess_totals(struct edge_store_conn *conn, int64_t now_ms, int64_t *live, int64_t *sealed, int64_t *raw,
                     int64_t *rows);

/* Live session ids starting with prefix, after `after`, in id order, at most limit. */
int edge_sess_list(struct edge_store_conn *conn, const char *prefix, const char *after, int64_t now_ms, int limit,
                   void (*cb)(void *ud, const char *id), void *ud);

#endif
