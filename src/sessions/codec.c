/* SPDX-License-Identifier: MIT */
/* Session records: the key ring, ids, zstd + XChaCha20-Poly1305 sealing, and JSON
 * Merge Patch (sessions.h). */
#include "sessions/sessions.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "core/alloc.h"
#include "core/jwt.h"

#define BLOB_FORMAT 1
#define NONCE_LEN crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define TAG_LEN crypto_aead_xchacha20poly1305_ietf_ABYTES
#define KEY_FILE_MAX (64 * 1024)

/* ---- keys ---- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int keys_parse(const char *path, char *text, struct edge_sess_keys *out, char *errmsg, size_t errmsg_len)
{
    memset(out, 0, sizeof(*out));
    int line = 0, rv = EDGE_OK;
    for (char *save = NULL, *ln = strtok_r(text, "\n", &save); ln != NULL && rv == EDGE_OK;
         ln = strtok_r(NULL, "\n", &save)) {
        line++;
        while (*ln == ' ' || *ln == '\t' || *ln == '\r') ln++;
        size_t len = strlen(ln);
        while (len > 0 && (ln[len - 1] == ' ' || ln[len - 1] == '\t' || ln[len - 1] == '\r')) ln[--len] = '\0';
        if (len == 0 || ln[0] == '#') continue;
        char *end = NULL;
        errno = 0;
        unsigned long long id = strtoull(ln, &end, 10);
        if (end == ln || errno != 0 || id == 0 || id > 0xffffffffull || (*end != ' ' && *end != '\t')) {
            snprintf(errmsg, errmsg_len, "%s: key line %d: expected '<id 1..4294967295> <64 hex digits>'", path,
                     line);
            rv = EDGE_ECONFIG;
            break;
        }
        while (*end == ' ' || *end == '\t') end++;
        if (strlen(end) != 64) {
            snprintf(errmsg, errmsg_len, "%s: key line %d: the key must be 64 hex digits (32 bytes)", path, line);
            rv = EDGE_ECONFIG;
            break;
        }
        if (out->n == EDGE_SESS_KEYS_MAX) {
            snprintf(errmsg, errmsg_len, "%s: more than %d keys", path, EDGE_SESS_KEYS_MAX);
            rv = EDGE_ECONFIG;
            break;
        }
        for (int i = 0; i < out->n; i++) {
            if (out->id[i] == (uint32_t)id) {
                snprintf(errmsg, errmsg_len, "%s: key line %d: key id %llu appears twice", path, line, id);
                rv = EDGE_ECONFIG;
            }
        }
        for (int i = 0; i < 32 && rv == EDGE_OK; i++) {
            int h = hexval(end[2 * i]), l = hexval(end[2 * i + 1]);
            if (h < 0 || l < 0) {
                snprintf(errmsg, errmsg_len, "%s: key line %d: the key must be 64 hex digits (32 bytes)", path, line);
                rv = EDGE_ECONFIG;
            }
            out->key[out->n][i] = (uint8_t)(h << 4 | l);
        }
        if (rv != EDGE_OK) break;
        out->id[out->n] = (uint32_t)id;
        if (out->id[out->n] > out->id[out->newest]) out->newest = out->n;
        out->n++;
    }
    if (rv == EDGE_OK && out->n == 0) {
        snprintf(errmsg, errmsg_len, "%s: no key (expected lines '<id> <64 hex digits>')", path);
        rv = EDGE_ECONFIG;
    }
    if (rv != EDGE_OK) edge_sess_keys_wipe(out);
    return rv;
}

int edge_sess_keys_load(const char *path, struct edge_sess_keys *out, char *errmsg, size_t errmsg_len)
{
    char *text = NULL;
    size_t len = 0;
    int rv = edge__read_file(path, KEY_FILE_MAX, &text, &len, errmsg, errmsg_len);
    if (rv != EDGE_OK) return rv;
    rv = keys_parse(path, text, out, errmsg, errmsg_len);
    sodium_memzero(text, len);
    edge_free(text);
    return rv;
}

int edge_sess_keys_ensure(const char *path, struct edge_sess_keys *out, char *errmsg, size_t errmsg_len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) {
        uint8_t k[32];
        char line[256];
        randombytes_buf(k, sizeof(k));
        int n = snprintf(line, sizeof(line), "# edgelite session keys: <id> <hex key>; the highest id seals\n1 ");
        for (int i = 0; i < 32; i++) n += snprintf(line + n, sizeof(line) - (size_t)n, "%02x", k[i]);
        line[n++] = '\n';
        bool ok = write(fd, line, (size_t)n) == n && fsync(fd) == 0;
        sodium_memzero(k, sizeof(k));
        sodium_memzero(line, sizeof(line));
        close(fd);
        if (!ok) {
            snprintf(errmsg, errmsg_len, "cannot write %s: %s", path, strerror(errno));
            unlink(path);
            return EDGE_EIO;
        }
    } else if (errno != EEXIST) {
        snprintf(errmsg, errmsg_len, "cannot create %s: %s", path, strerror(errno));
        return EDGE_EIO;
    }
    return edge_sess_keys_load(path, out, errmsg, errmsg_len);
}

void edge_sess_keys_wipe(struct edge_sess_keys *k)
{
    sodium_memzero(k, sizeof(*k));
}

static const uint8_t *key_find(const struct edge_sess_keys *k, uint32_t id)
{
    for (int i = 0; i < k->n; i++) {
        if (k->id[i] == id) return k->key[i];
    }
    return NULL;
}

/* ---- ids ---- */

bool edge_sess_id_valid(const char *id, size_t len)
{
    if (id == NULL || len == 0 || len > EDGE_SESS_ID_MAX || id[0] == '_' || id[0] == '.') return false;
    if (len == 5 && memcmp(id, "stats", 5) == 0) return false;
    for (size_t i = 0; i < len; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
              c == '.')) {
            return false;
        }
    }
    return true;
}

void edge_sess_id_random(char out[33])
{
    uint8_t b[16];
    randombytes_buf(b, sizeof(b));
    for (int i = 0; i < 16; i++) snprintf(out + 2 * i, 3, "%02x", b[i]);
}

/* ---- sealing ---- */

/* The associated data: the id and the key id, so a record cannot be moved to another
 * session or relabelled with another key. */
static size_t make_ad(uint8_t *ad, const char *id, uint32_t key_id)
{
    size_t n = strlen(id);
    memcpy(ad, id, n);
    ad[n] = 0;
    ad[n + 1] = (uint8_t)(key_id >> 24);
    ad[n + 2] = (uint8_t)(key_id >> 16);
    ad[n + 3] = (uint8_t)(key_id >> 8);
    ad[n + 4] = (uint8_t)key_id;
    return n + 5;
}

/* One compression context per thread: contexts are costly to make and not shareable.
 * A thread-specific key frees them when the thread ends (the loops at stop).
 *
 * The thread's nonce stream lives there too. XChaCha20-Poly1305 needs a nonce that never
 * repeats under a key; its 192 bits leave room for a random 128-bit prefix, drawn once
 * per thread from the system's generator, followed by a 64-bit counter. Two threads (of
 * this process, of another region, of an earlier run) share a prefix with probability
 * about t^2 / 2^129 for t threads ever started, and a counter does not wrap in 2^64
 * seals, so nonces stay unique, without a getrandom system call per seal (about 1% of a
 * node's CPU under PUT load). */
struct zctx {
    ZSTD_CCtx *c;
    ZSTD_DCtx *d;
    bool nonce_ready;
    uint8_t nonce_prefix[NONCE_LEN - 8];
    uint64_t nonce_ctr;
};

/* The next nonce of this thread's stream (see struct zctx). */
static void nonce_next(struct zctx *z, uint8_t *out)
{
    if (!z->nonce_ready) {
        randombytes_buf(z->nonce_prefix, sizeof(z->nonce_prefix));
        z->nonce_ctr = 0;
        z->nonce_ready = true;
    }
    uint64_t c = z->nonce_ctr++;
    memcpy(out, z->nonce_prefix, sizeof(z->nonce_prefix));
    for (int i = 0; i < 8; i++) out[sizeof(z->nonce_prefix) + (size_t)i] = (uint8_t)(c >> (56 - 8 * i));
}
static pthread_key_t zkey;
static pthread_once_t zonce = PTHREAD_ONCE_INIT;

static void zctx_free(void *p)
{
    struct zctx *z = p;
    ZSTD_freeCCtx(z->c);
    ZSTD_freeDCtx(z->d);
    sodium_memzero(z, sizeof(*z));
    free(z);
}

static void zkey_make(void) { (void)pthread_key_create(&zkey, zctx_free); }

static struct zctx *zctx_get(void)
{
    pthread_once(&zonce, zkey_make);
    struct zctx *z = pthread_getspecific(zkey);
    if (z == NULL) {
        z = calloc(1, sizeof(*z));
        if (z == NULL) return NULL;
        if (pthread_setspecific(zkey, z) != 0) {
            free(z);
            return NULL;
        }
    }
    return z;
}

int edge_sess_seal(const struct edge_sess_keys *k, int level, const char *id, const void *json, size_t len,
                   struct edge_buf *blob, uint32_t *out_key_id)
{
    if (k->n == 0 || strlen(id) > EDGE_SESS_ID_MAX) return EDGE_EINVAL;
    struct zctx *zc = zctx_get();
    if (zc != NULL && zc->c == NULL) zc->c = ZSTD_createCCtx();
    if (zc == NULL || zc->c == NULL) return EDGE_ENOMEM;
    size_t bound = ZSTD_compressBound(len);
    uint8_t stackbuf[4096];
    uint8_t *z = bound <= sizeof(stackbuf) ? stackbuf : edge_malloc(bound);
    if (z == NULL) return EDGE_ENOMEM;
    int rv = EDGE_OK;
    size_t zlen = ZSTD_compressCCtx(zc->c, z, bound, json, len, level);
    if (ZSTD_isError(zlen)) {
        rv = EDGE_EINTERNAL;
        goto out;
    }
    edge_buf_reset(blob);
    rv = edge_buf_reserve(blob, 1 + NONCE_LEN + zlen + TAG_LEN);
    if (rv != EDGE_OK) goto out;
    uint8_t *p = (uint8_t *)blob->data;
    p[0] = BLOB_FORMAT;
    nonce_next(zc, p + 1);
    uint8_t ad[EDGE_SESS_ID_MAX + 8];
    uint32_t kid = k->id[k->newest];
    size_t adlen = make_ad(ad, id, kid);
    unsigned long long clen = 0;
    crypto_aead_xchacha20poly1305_ietf_encrypt(p + 1 + NONCE_LEN, &clen, z, zlen, ad, adlen, NULL, p + 1,
                                               k->key[k->newest]);
    blob->len = 1 + NONCE_LEN + (size_t)clen;
    *out_key_id = kid;
out:
    if (z != stackbuf) edge_free(z);
    return rv;
}

int edge_sess_open(const struct edge_sess_keys *k, const char *id, uint32_t key_id, const void *blob, size_t len,
                   size_t max_plain, struct edge_buf *out)
{
    const uint8_t *b = blob;
    const uint8_t *key = key_find(k, key_id);
    if (key == NULL) return EDGE_ENOTFOUND;
    if (len < 1 + NONCE_LEN + TAG_LEN || b[0] != BLOB_FORMAT || strlen(id) > EDGE_SESS_ID_MAX) return EDGE_ECORRUPT;
    size_t zcap = len - 1 - NONCE_LEN - TAG_LEN;
    uint8_t stackbuf[4096];
    uint8_t *z = zcap <= sizeof(stackbuf) ? stackbuf : edge_malloc(zcap);
    if (z == NULL) return EDGE_ENOMEM;
    uint8_t ad[EDGE_SESS_ID_MAX + 8];
    size_t adlen = make_ad(ad, id, key_id);
    unsigned long long zlen = 0;
    int rv = EDGE_OK;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(z, &zlen, NULL, b + 1 + NONCE_LEN, len - 1 - NONCE_LEN, ad, adlen,
                                                   b + 1, key) != 0) {
        rv = EDGE_ECORRUPT;
        goto out;
    }
    unsigned long long plain = ZSTD_getFrameContentSize(z, (size_t)zlen);
    if (plain == ZSTD_CONTENTSIZE_ERROR || plain == ZSTD_CONTENTSIZE_UNKNOWN) {
        rv = EDGE_ECORRUPT;
        goto out;
    }
    if (plain > max_plain) {
        rv = EDGE_ETOOBIG;
        goto out;
    }
    struct zctx *zc = zctx_get();
    if (zc != NULL && zc->d == NULL) zc->d = ZSTD_createDCtx();
    edge_buf_reset(out);
    rv = zc == NULL || zc->d == NULL ? EDGE_ENOMEM : edge_buf_reserve(out, (size_t)plain + 1);
    if (rv != EDGE_OK) goto out;
    size_t got = ZSTD_decompressDCtx(zc->d, out->data, (size_t)plain, z, (size_t)zlen);
    if (ZSTD_isError(got) || got != plain) {
        rv = EDGE_ECORRUPT;
        goto out;
    }
    out->len = got;
    out->data[got] = '\0';
out:
    if (z != stackbuf) {
        sodium_memzero(z, zcap);
        edge_free(z);
    } else {
        sodium_memzero(stackbuf, sizeof(stackbuf));
    }
    return rv;
}

/* ---- RFC 7396 ---- */

json_t *edge_sess_merge_patch(json_t *target, json_t *patch)
{
    if (!json_is_object(patch)) {
        json_decref(target);
        return json_deep_copy(patch);
    }
    if (!json_is_object(target)) {
        json_decref(target);
        target = json_object();
        if (target == NULL) return NULL;
    }
    const char *key;
    json_t *val;
    json_object_foreach(patch, key, val) {
        if (json_is_null(val)) {
            json_object_del(target, key);
            continue;
        }
        json_t *cur = json_object_get(target, key);
        json_t *merged = edge_sess_merge_patch(cur ? json_incref(cur) : json_null(), val);
        if (merged == NULL || json_object_set_new(target, key, merged) != 0) {
            json_decref(target);
            return NULL;
        }
    }
    return target;
}
