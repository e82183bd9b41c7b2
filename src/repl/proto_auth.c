/* SPDX-License-Identifier: MIT */
/* The peer protocol's cryptography (repl/proto.h): the HELLO and HELLO_OK MACs that let
 * each side prove the cluster secret against the other's fresh nonce, the session key
 * derived from both nonces, and the per-frame seal.
 *
 * DESIGN: the handshake MACs and the key derivation are HMAC-SHA256 under SHA-256(secret)
 * (fixed-size key whatever the configured length), each with its own label, so a MAC of
 * one kind can never stand for another. The frame tag is keyed BLAKE2b-256 under the
 * session key: one pass over each frame, and frames are whole batches (up to 1 MiB), so
 * the cheaper hash matters there while the handshake runs once per connection. */
#include "repl/proto.h"

#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "edgelite/errors.h"

#define LABEL_HELLO "edgelite-peer3 hello"
#define LABEL_HELLO_OK "edgelite-peer3 hello-ok"
#define LABEL_SESSION "edgelite-peer3 session"
#define LABEL_HTTP_PROOF "edgelite-http1 challenge"
#define LABEL_HTTP_REQUEST "edgelite-http1 request"
#define LABEL_HTTP_SIGNED "edgelite-http1 signed"
#define LABEL_HTTP_SNAPSHOT "edgelite-http1 snapshot"

/* One HMAC-SHA256 computation under K = SHA-256(secret). */
struct mac {
    crypto_auth_hmacsha256_state st;
};

static int mac_begin(struct mac *m, const char *secret, const char *label)
{
    if (secret == NULL || sodium_init() < 0) {
        return EDGE_EINVAL;
    }
    uint8_t key[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(key, (const unsigned char *)secret, strlen(secret));
    crypto_auth_hmacsha256_init(&m->st, key, sizeof(key));
    sodium_memzero(key, sizeof(key));
    /* the label with its NUL */
    crypto_auth_hmacsha256_update(&m->st, (const unsigned char *)label, strlen(label) + 1);
    return EDGE_OK;
}

static void mac_raw(struct mac *m, const uint8_t *p, size_t n)
{
    crypto_auth_hmacsha256_update(&m->st, p, n);
}

/* A string and its NUL: no string holds one, so fields cannot shift into each other. */
static int mac_str(struct mac *m, const char *s)
{
    if (s == NULL || memchr(s, 0, EDGE_REPL_STR_MAX + 1) == NULL) {
        return EDGE_EINVAL;
    }
    mac_raw(m, (const uint8_t *)s, strlen(s) + 1);
    return EDGE_OK;
}

/* A version vector in its canonical encoding. */
static int mac_vv(struct mac *m, const struct edge_vclock *vv)
{
    struct edge_buf b;
    edge_buf_init(&b, EDGE_REPL_FRAME_MAX);
    int rv = edge_vclock_encode(vv, &b);
    if (rv == EDGE_OK) {
        mac_raw(m, (const uint8_t *)b.data, b.len);
    }
    edge_buf_free(&b);
    return rv;
}

static void mac_end(struct mac *m, int rv, uint8_t out[EDGE_REPL_MAC_LEN])
{
    uint8_t tmp[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_final(&m->st, tmp);
    if (rv == EDGE_OK) {
        memcpy(out, tmp, EDGE_REPL_MAC_LEN);
    }
    sodium_memzero(tmp, sizeof(tmp));
    sodium_memzero(&m->st, sizeof(m->st));
}

/* The part every handshake MAC shares: both nonces, cluster, client region. */
static int mac_common(struct mac *m, const uint8_t ns[EDGE_REPL_NONCE_LEN], const struct edge_repl_hello *h)
{
    mac_raw(m, ns, EDGE_REPL_NONCE_LEN);
    mac_raw(m, h->nonce, EDGE_REPL_NONCE_LEN);
    int rv = mac_str(m, h->cluster);
    if (rv == EDGE_OK) {
        rv = mac_str(m, h->region);
    }
    return rv;
}

int edge_repl_hello_mac(const char *secret, const uint8_t server_nonce[EDGE_REPL_NONCE_LEN],
                        const struct edge_repl_hello *h, uint8_t out_mac[EDGE_REPL_MAC_LEN])
{
    struct mac m;
    int rv = mac_begin(&m, secret, LABEL_HELLO);
    if (rv != EDGE_OK) {
        return rv;
    }
    rv = mac_common(&m, server_nonce, h);
    if (rv == EDGE_OK) {
        rv = mac_str(&m, h->to_region);
    }
    if (rv == EDGE_OK) {
        rv = mac_vv(&m, &h->vv);
    }
    mac_end(&m, rv, out_mac);
    return rv;
}

int edge_repl_hello_verify(const struct edge_repl_hello *h, const char *cluster, const char *secret,
                           const uint8_t server_nonce[EDGE_REPL_NONCE_LEN])
{
    uint8_t mac[EDGE_REPL_MAC_LEN];
    if (h->version != EDGE_REPL_PROTO_VERSION) {
        return EDGE_EPROTO;
    }
    if (cluster == NULL || strcmp(h->cluster, cluster) != 0) {
        return EDGE_EAUTH;
    }
    if (edge_repl_hello_mac(secret, server_nonce, h, mac) != EDGE_OK) {
        return EDGE_EAUTH;
    }
    int rv = sodium_memcmp(mac, h->mac, EDGE_REPL_MAC_LEN) == 0 ? EDGE_OK : EDGE_EAUTH;
    sodium_memzero(mac, sizeof(mac));
    return rv;
}

int edge_repl_hello_ok_mac(const char *secret, const uint8_t server_nonce[EDGE_REPL_NONCE_LEN],
                           const struct edge_repl_hello *h, const char *server_region,
                           const struct edge_vclock *server_vv, uint8_t out_mac[EDGE_REPL_MAC_LEN])
{
    struct mac m;
    int rv = mac_begin(&m, secret, LABEL_HELLO_OK);
    if (rv != EDGE_OK) {
        return rv;
    }
    rv = mac_common(&m, server_nonce, h);
    if (rv == EDGE_OK) {
        rv = mac_str(&m, server_region);
    }
    if (rv == EDGE_OK) {
        rv = mac_vv(&m, server_vv);
    }
    mac_end(&m, rv, out_mac);
    return rv;
}

int edge_repl_hello_ok_verify(const struct edge_repl_hello_ok *ok, const char *secret,
                              const uint8_t server_nonce[EDGE_REPL_NONCE_LEN], const struct edge_repl_hello *h)
{
    uint8_t mac[EDGE_REPL_MAC_LEN];
    if (edge_repl_hello_ok_mac(secret, server_nonce, h, ok->region, &ok->vv, mac) != EDGE_OK) {
        return EDGE_EAUTH;
    }
    int rv = sodium_memcmp(mac, ok->mac, EDGE_REPL_MAC_LEN) == 0 ? EDGE_OK : EDGE_EAUTH;
    sodium_memzero(mac, sizeof(mac));
    return rv;
}

int edge_repl_seal_init(struct edge_repl_seal *s, const char *secret, const uint8_t server_nonce[EDGE_REPL_NONCE_LEN],
                        const struct edge_repl_hello *h, const char *server_region, bool client)
{
    struct mac m;
    memset(s, 0, sizeof(*s));
    int rv = mac_begin(&m, secret, LABEL_SESSION);
    if (rv != EDGE_OK) {
        return rv;
    }
    rv = mac_common(&m, server_nonce, h);
    if (rv == EDGE_OK) {
        rv = mac_str(&m, server_region);
    }
    mac_end(&m, rv, s->key);
    s->tx_dir = client ? EDGE_REPL_DIR_C2S : EDGE_REPL_DIR_S2C;
    s->rx_dir = client ? EDGE_REPL_DIR_S2C : EDGE_REPL_DIR_C2S;
    return rv;
}

void edge_repl_seal_wipe(struct edge_repl_seal *s)
{
    sodium_memzero(s, sizeof(*s));
}

static void frame_tag(const struct edge_repl_seal *s, uint8_t dir, uint64_t seq, const uint8_t *p, size_t len,
                      uint8_t out[EDGE_REPL_MAC_LEN])
{
    uint8_t hdr[9];
    hdr[0] = dir;
    for (int i = 0; i < 8; i++) {
        hdr[1 + i] = (uint8_t)(seq >> (56 - 8 * i));
    }
    crypto_generichash_state st;
    crypto_generichash_init(&st, s->key, EDGE_REPL_KEY_LEN, EDGE_REPL_MAC_LEN);
    crypto_generichash_update(&st, hdr, sizeof(hdr));
    if (len > 0) {
        crypto_generichash_update(&st, p, len);
    }
    crypto_generichash_final(&st, out, EDGE_REPL_MAC_LEN);
    sodium_memzero(&st, sizeof(st));
}

int edge_repl_seal_frame(struct edge_repl_seal *s, struct edge_buf *b)
{
    uint8_t tag[EDGE_REPL_MAC_LEN];
    frame_tag(s, s->tx_dir, s->tx_seq, (const uint8_t *)b->data, b->len, tag);
    int rv = edge_buf_append(b, tag, sizeof(tag));
    if (rv == EDGE_OK) {
        s->tx_seq++;
    }
    return rv;
}

int edge_repl_open_frame(struct edge_repl_seal *s, const uint8_t *p, size_t len, size_t *out_len)
{
    uint8_t tag[EDGE_REPL_MAC_LEN];
    if (p == NULL || len < EDGE_REPL_MAC_LEN) {
        return EDGE_EAUTH;
    }
    size_t n = len - EDGE_REPL_MAC_LEN;
    frame_tag(s, s->rx_dir, s->rx_seq, p, n, tag);
    int rv = sodium_memcmp(tag, p + n, EDGE_REPL_MAC_LEN) == 0 ? EDGE_OK : EDGE_EAUTH;
    sodium_memzero(tag, sizeof(tag));
    if (rv == EDGE_OK) {
        s->rx_seq++;
        *out_len = n;
    }
    return rv;
}

/* ---- HTTP requests between regions ---- */

int edge_repl_http_proof(const char *secret, const uint8_t cnonce[EDGE_REPL_NONCE_LEN],
                         const uint8_t nonce[EDGE_REPL_NONCE_LEN], const char *cluster, const char *server_region,
                         uint8_t out_mac[EDGE_REPL_MAC_LEN])
{
    struct mac m;
    int rv = mac_begin(&m, secret, LABEL_HTTP_PROOF);
    if (rv != EDGE_OK) {
        return rv;
    }
    mac_raw(&m, cnonce, EDGE_REPL_NONCE_LEN);
    mac_raw(&m, nonce, EDGE_REPL_NONCE_LEN);
    rv = mac_str(&m, cluster);
    if (rv == EDGE_OK) {
        rv = mac_str(&m, server_region);
    }
    mac_end(&m, rv, out_mac);
    return rv;
}

int edge_repl_http_mac(const char *secret, const struct edge_repl_http_auth *a, const char *cluster,
                       const char *method, const char *path, uint8_t out_mac[EDGE_REPL_MAC_LEN])
{
    struct mac m;
    int rv = mac_begin(&m, secret, LABEL_HTTP_REQUEST);
    if (rv != EDGE_OK) {
        return rv;
    }
    mac_raw(&m, a->nonce, EDGE_REPL_NONCE_LEN);
    mac_raw(&m, a->cnonce, EDGE_REPL_NONCE_LEN);
    rv = mac_str(&m, cluster);
    if (rv == EDGE_OK) {
        rv = mac_str(&m, a->region);
    }
    if (rv == EDGE_OK) {
        rv = mac_str(&m, method);
    }
    if (rv == EDGE_OK) {
        rv = mac_str(&m, path);
    }
    mac_end(&m, rv, out_mac);
    return rv;
}

int edge_repl_http_verify(const char *secret, const struct edge_repl_http_auth *a, const char *cluster,
                          const char *method, const char *path)
{
    uint8_t mac[EDGE_REPL_MAC_LEN];
    if (edge_repl_http_mac(secret, a, cluster, method, path, mac) != EDGE_OK) {
        return EDGE_EAUTH;
    }
    int rv = sodium_memcmp(mac, a->mac, EDGE_REPL_MAC_LEN) == 0 ? EDGE_OK : EDGE_EAUTH;
    sodium_memzero(mac, sizeof(mac));
    return rv;
}

int edge_repl_http_snapshot_mac(const char *secret, const struct edge_repl_http_auth *a, const char *cluster,
                                const char *server_region, uint64_t size, const char *sha256_hex,
                                uint8_t out_mac[EDGE_REPL_MAC_LEN])
{
    struct mac m;
    char sz[24];
    int rv = mac_begin(&m, secret, LABEL_HTTP_SNAPSHOT);
    if (rv != EDGE_OK) {
        return rv;
    }
    snprintf(sz, sizeof(sz), "%llu", (unsigned long long)size);
    mac_raw(&m, a->nonce, EDGE_REPL_NONCE_LEN);
    mac_raw(&m, a->cnonce, EDGE_REPL_NONCE_LEN);
    const char *const strs[] = {cluster, server_region, a->region, sz, sha256_hex};
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]) && rv == EDGE_OK; i++) {
        rv = mac_str(&m, strs[i]);
    }
    mac_end(&m, rv, out_mac);
    return rv;
}

int edge_repl_http_sig_mac(const char *secret, const char *cluster, const struct edge_repl_http_sig *s,
                           const char *to_region, const char *method, const char *path, const char *query,
                           const void *body, size_t len, uint8_t out_mac[EDGE_REPL_MAC_LEN])
{
    struct mac m;
    uint8_t ts[8], bh[crypto_hash_sha256_BYTES];
    int rv = mac_begin(&m, secret, LABEL_HTTP_SIGNED);
    if (rv != EDGE_OK) {
        return rv;
    }
    const char *const strs[] = {cluster, s->region, to_region, method, path, query != NULL ? query : ""};
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]) && rv == EDGE_OK; i++) {
        rv = mac_str(&m, strs[i]);
    }
    for (int i = 0; i < 8; i++) {
        ts[i] = (uint8_t)((uint64_t)s->ts_ms >> (56 - 8 * i));
    }
    mac_raw(&m, ts, sizeof(ts));
    mac_raw(&m, s->nonce, EDGE_REPL_NONCE_LEN);
    crypto_hash_sha256(bh, body != NULL ? body : (const void *)"", body != NULL ? len : 0);
    mac_raw(&m, bh, sizeof(bh));
    mac_end(&m, rv, out_mac);
    return rv;
}

int edge_repl_http_sig_verify(const char *secret, const char *cluster, const struct edge_repl_http_sig *s,
                              const char *to_region, const char *method, const char *path, const char *query,
                              const void *body, size_t len)
{
    uint8_t mac[EDGE_REPL_MAC_LEN];
    if (edge_repl_http_sig_mac(secret, cluster, s, to_region, method, path, query, body, len, mac) != EDGE_OK) {
        return EDGE_EAUTH;
    }
    int rv = sodium_memcmp(mac, s->mac, EDGE_REPL_MAC_LEN) == 0 ? EDGE_OK : EDGE_EAUTH;
    sodium_memzero(mac, sizeof(mac));
    return rv;
}

void edge_repl_hex32(const uint8_t v[32], char out[65])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = digits[v[i] >> 4];
        out[2 * i + 1] = digits[v[i] & 15];
    }
    out[64] = '\0';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int edge_repl_unhex32(const char *s, size_t len, uint8_t out[32])
{
    if (s == NULL || len != 64) {
        return EDGE_EINVAL;
    }
    for (int i = 0; i < 32; i++) {
        int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            return EDGE_EINVAL;
        }
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return EDGE_OK;
}

/* "key=" then the value up to the next space (or the end) at *p; *p moves past it. */
static int take_field(const char **p, const char *key, const char **out_v, size_t *out_len)
{
    size_t kl = strlen(key);
    if (strncmp(*p, key, kl) != 0 || (*p)[kl] != '=') {
        return EDGE_EINVAL;
    }
    const char *v = *p + kl + 1;
    size_t n = strcspn(v, " ");
    *out_v = v;
    *out_len = n;
    *p = v[n] == ' ' ? v + n + 1 : v + n;
    return EDGE_OK;
}

/* "region=" and a valid region id at *p into out (EDGE_VCLOCK_REGION_MAX + 1 bytes). */
static int take_region(const char **p, char *out)
{
    const char *v = NULL;
    size_t n = 0;
    int rv = take_field(p, "region", &v, &n);
    if (rv == EDGE_OK && (n == 0 || n > EDGE_VCLOCK_REGION_MAX)) {
        rv = EDGE_EINVAL;
    }
    if (rv == EDGE_OK) {
        memcpy(out, v, n);
        out[n] = '\0';
        rv = edge_vclock_region_valid(out) ? EDGE_OK : EDGE_EINVAL;
    }
    return rv;
}

/* "key=" and 64 hex digits at *p into out. */
static int take_hex32(const char **p, const char *key, uint8_t out[32])
{
    const char *v = NULL;
    size_t n = 0;
    int rv = take_field(p, key, &v, &n);
    return rv == EDGE_OK ? edge_repl_unhex32(v, n, out) : rv;
}

int edge_repl_http_auth_parse(const char *value, struct edge_repl_http_auth *out)
{
    const char *p = value;
    if (value == NULL || strnlen(value, 1024) >= 1024) {
        return EDGE_EINVAL;
    }
    memset(out, 0, sizeof(*out));
    int rv = take_region(&p, out->region);
    if (rv == EDGE_OK) rv = take_hex32(&p, "nonce", out->nonce);
    if (rv == EDGE_OK) rv = take_hex32(&p, "cnonce", out->cnonce);
    if (rv == EDGE_OK) rv = take_hex32(&p, "mac", out->mac);
    if (rv == EDGE_OK && *p != '\0') {
        rv = EDGE_EINVAL;
    }
    return rv;
}

int edge_repl_http_auth_format(const struct edge_repl_http_auth *a, char *out, size_t cap)
{
    char ns[65], nc[65], mac[65];
    if (!edge_vclock_region_valid(a->region)) {
        return EDGE_EINVAL;
    }
    edge_repl_hex32(a->nonce, ns);
    edge_repl_hex32(a->cnonce, nc);
    edge_repl_hex32(a->mac, mac);
    int n = snprintf(out, cap, "region=%s nonce=%s cnonce=%s mac=%s", a->region, ns, nc, mac);
    return n > 0 && (size_t)n < cap ? EDGE_OK : EDGE_EINVAL;
}

int edge_repl_http_sig_parse(const char *value, struct edge_repl_http_sig *out)
{
    const char *p = value, *v = NULL;
    size_t n = 0;
    if (value == NULL || strnlen(value, 1024) >= 1024) {
        return EDGE_EINVAL;
    }
    memset(out, 0, sizeof(*out));
    int rv = take_region(&p, out->region);
    if (rv == EDGE_OK) rv = take_field(&p, "ts", &v, &n);
    if (rv == EDGE_OK) {
        /* 1..15 digits: far beyond any real clock, far below overflow */
        int64_t ts = 0;
        rv = n >= 1 && n <= 15 ? EDGE_OK : EDGE_EINVAL;
        for (size_t i = 0; rv == EDGE_OK && i < n; i++) {
            rv = v[i] >= '0' && v[i] <= '9' ? EDGE_OK : EDGE_EINVAL;
            ts = ts * 10 + (v[i] - '0');
        }
        out->ts_ms = ts;
    }
    if (rv == EDGE_OK) rv = take_hex32(&p, "nonce", out->nonce);
    if (rv == EDGE_OK) rv = take_hex32(&p, "mac", out->mac);
    if (rv == EDGE_OK && *p != '\0') {
        rv = EDGE_EINVAL;
    }
    return rv;
}

int edge_repl_http_sig_format(const struct edge_repl_http_sig *s, char *out, size_t cap)
{
    char ns[65], mac[65];
    if (!edge_vclock_region_valid(s->region) || s->ts_ms < 0) {
        return EDGE_EINVAL;
    }
    edge_repl_hex32(s->nonce, ns);
    edge_repl_hex32(s->mac, mac);
    int n = snprintf(out, cap, "region=%s ts=%lld nonce=%s mac=%s", s->region, (long long)s->ts_ms, ns, mac);
    return n > 0 && (size_t)n < cap ? EDGE_OK : EDGE_EINVAL;
}
