/* SPDX-License-Identifier: MIT */
/* Ed25519 JSON Web Tokens as libSQL servers (sqld) accept them: header
 * {"alg":"EdDSA"}, optional `exp` with 60 s leeway, access from claim `a` or `p`
 * (see /work/shared/protocols/hrana.md section 3 and docs/internals/auth.md).
 * Key files are PEM (SPKI / PKCS#8, readable by OpenSSL and node's crypto) or a raw
 * base64url key. No I/O except the *_load helpers, which read one small file. */
#ifndef EDGE_CORE_JWT_H
#define EDGE_CORE_JWT_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "edgelite/errors.h"

#define EDGE_JWT_PK_LEN 32   /* Ed25519 public key */
#define EDGE_JWT_SK_LEN 64   /* libsodium secret key: seed || public key */
#define EDGE_JWT_SEED_LEN 32 /* Ed25519 seed, what PKCS#8 stores */
#define EDGE_JWT_MAX_KEYS 64 /* public keys per set */
#define EDGE_JWT_MAX_TOKEN 16384 /* longer tokens are rejected before decoding */
#define EDGE_JWT_LEEWAY_S 60 /* jsonwebtoken's default, which sqld uses */

/* Stable codes the Hrana layer reports to clients (static strings). */
#define EDGE_JWT_CODE_INVALID "AUTH_JWT_INVALID"
#define EDGE_JWT_CODE_EXPIRED "AUTH_JWT_EXPIRED"
#define EDGE_JWT_CODE_NO_HEADER "AUTH_HEADER_NOT_FOUND"
#define EDGE_JWT_CODE_BAD_HEADER "AUTH_HEADER_MALFORMED"

/* A set of Ed25519 public keys; a token verifies if any key accepts it. Immutable
 * once loaded, so it may be shared read-only between threads. */
struct edge_jwt_keys;

enum edge_jwt_access {
    EDGE_JWT_NONE = 0, /* no access at all */
    EDGE_JWT_RO,       /* reads only */
    EDGE_JWT_RW,       /* reads and writes (incl. DDL) */
};

/* Parse public keys from text: one or more PEM blocks "-----BEGIN PUBLIC KEY-----"
 * (Ed25519 SubjectPublicKeyInfo), or one raw 32-byte key in base64url or standard
 * base64; surrounding whitespace is ignored. Text is copied, not retained. On success
 * *out is caller-owned (edge_jwt_keys_free). Returns EDGE_OK, EDGE_EINVAL (message in
 * errmsg), EDGE_ENOMEM. */
int edge_jwt_keys_parse(const char *text, size_t len, struct edge_jwt_keys **out,
                        char *errmsg, size_t errmsg_len);
/* Same, from a file; messages start with the path. EDGE_EIO if it cannot be read. */
int edge_jwt_keys_load(const char *path, struct edge_jwt_keys **out, char *errmsg,
                       size_t errmsg_len);
void edge_jwt_keys_free(struct edge_jwt_keys *k);
/* Number of keys in the set (>= 1 for a set returned by the functions above). */
size_t edge_jwt_keys_count(const struct edge_jwt_keys *k);

/* Verify a compact JWT (token is borrowed, need not be NUL-terminated) at time
 * now_unix_s. On EDGE_OK *out_access is RO or RW. On failure returns EDGE_EAUTH with
 * *out_code EDGE_JWT_CODE_INVALID (bad structure, alg other than EdDSA, no key
 * verifies the signature, bad claims, or a `p` claim granting nothing) or
 * EDGE_JWT_CODE_EXPIRED (valid signature, now > exp + 60 s), *out_access NONE; or
 * EDGE_ENOMEM (*out_code NULL). The signature is checked before any claim. */
int edge_jwt_verify(const struct edge_jwt_keys *k, const char *token, size_t len,
                    uint64_t now_unix_s, enum edge_jwt_access *out_access,
                    const char **out_code);

/* Extract the token from an HTTP Authorization header value (borrowed; NULL when the
 * header is absent). Scheme "Bearer" is case-insensitive, spaces and tabs around it
 * are trimmed. On EDGE_OK *out_token and *out_len point into value. Otherwise returns
 * EDGE_EAUTH with *out_code EDGE_JWT_CODE_NO_HEADER (NULL value) or
 * EDGE_JWT_CODE_BAD_HEADER (other scheme, empty token, token with spaces). */
int edge_jwt_bearer(const char *value, size_t len, const char **out_token, size_t *out_len,
                    const char **out_code);

/* Create a token signed with sk (libsodium layout, borrowed) granting `a` (RO or RW,
 * else EDGE_EINVAL), with claims iat and, when exp_unix_s != 0, exp. The header is
 * {"alg":"EdDSA","typ":"JWT"}. Appends to out. EDGE_OK, EDGE_EINVAL, EDGE_ENOMEM,
 * EDGE_ETOOBIG (out's cap). */
int edge_jwt_create(const uint8_t sk[EDGE_JWT_SK_LEN], enum edge_jwt_access a,
                    int64_t exp_unix_s, uint64_t iat, struct edge_buf *out);

/* A fresh random key pair (libsodium layout). EDGE_OK or EDGE_EINTERNAL. */
int edge_jwt_keygen(uint8_t out_pk[EDGE_JWT_PK_LEN], uint8_t out_sk[EDGE_JWT_SK_LEN]);

/* Parse a private key: PEM "-----BEGIN PRIVATE KEY-----" (PKCS#8 Ed25519), or a raw
 * base64url/base64 32-byte seed or 64-byte libsodium secret key (whose public half
 * must match its seed). Writes the libsodium secret key to out_sk. EDGE_OK,
 * EDGE_EINVAL (message in errmsg), EDGE_ENOMEM. */
int edge_jwt_seckey_parse(const char *text, size_t len, uint8_t out_sk[EDGE_JWT_SK_LEN],
                          char *errmsg, size_t errmsg_len);
/* Same, from a file; messages start with the path. EDGE_EIO if it cannot be read. */
int edge_jwt_seckey_load(const char *path, uint8_t out_sk[EDGE_JWT_SK_LEN], char *errmsg,
                         size_t errmsg_len);

/* Append PEM encodings (64-column lines, trailing newline) to out: the secret key as
 * PKCS#8 "PRIVATE KEY" (seed only), the public key as SPKI "PUBLIC KEY". */
int edge_jwt_seckey_pem(const uint8_t sk[EDGE_JWT_SK_LEN], struct edge_buf *out);
int edge_jwt_pubkey_pem(const uint8_t pk[EDGE_JWT_PK_LEN], struct edge_buf *out);

/* Read a whole small file (at most max bytes) into *out (NUL-terminated, caller frees
 * with edge_free). EDGE_OK, EDGE_EIO (errno message in errmsg), EDGE_ETOOBIG,
 * EDGE_ENOMEM. Shared by the key and config loaders. */
int edge__read_file(const char *path, size_t max, char **out, size_t *out_len, char *errmsg,
                    size_t errmsg_len);

#endif
