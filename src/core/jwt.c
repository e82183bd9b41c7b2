/* SPDX-License-Identifier: MIT */
/* Ed25519 JWT verification and creation, compatible with sqld's `auth/` module.
 *
 * DESIGN: verification order follows jsonwebtoken (which sqld uses): structure and
 * header first, then the signature against every key, and only then the claims, so an
 * attacker learns nothing about claim handling without a valid signature. Keys are
 * fixed-size arrays; DER is matched against the one constant prefix Ed25519 allows
 * rather than parsed generically, which keeps this file free of an ASN.1 parser. */
#include "core/jwt.h"

#include <errno.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/err.h"

struct edge_jwt_keys {
    size_t n;
    uint8_t pk[][EDGE_JWT_PK_LEN];
};

/* RFC 8410 section 4 / 7: the only encodings of an Ed25519 key in SPKI and PKCS#8. */
static const uint8_t spki_prefix[12] = {0x30, 0x2a, 0x30, 0x05, 0x06, 0x03,
                                        0x2b, 0x65, 0x70, 0x03, 0x21, 0x00};
static const uint8_t pkcs8_prefix[16] = {0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06,
                                         0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20};

#define KEYFILE_MAX (64 * 1024)
#define PEM_NOMEM (-2) /* pem_next: out of memory; -1 is a malformed block */

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
}

static void trim(const char **s, size_t *len)
{
    while (*len > 0 && is_space((*s)[0])) {
        (*s)++;
        (*len)--;
    }
    while (*len > 0 && is_space((*s)[*len - 1])) {
        (*len)--;
    }
}

static const char *memfind(const char *h, size_t hlen, const char *needle)
{
    size_t nlen = strlen(needle);
    if (nlen > hlen) {
        return NULL;
    }
    for (size_t i = 0; i + nlen <= hlen; i++) {
        if (memcmp(h + i, needle, nlen) == 0) {
            return h + i;
        }
    }
    return NULL;
}

/* Decode base64 that may contain whitespace (PEM bodies wrap at 64 columns). */
static int b64_decode_ws(const char *s, size_t len, uint8_t **out, size_t *out_len)
{
    char *clean = edge_malloc(len + 1);
    int rv;
    size_t o = 0;
    if (clean == NULL) {
        return EDGE_ENOMEM;
    }
    for (size_t i = 0; i < len; i++) {
        if (!is_space(s[i])) {
            clean[o++] = s[i];
        }
    }
    rv = edge_base64_decode(clean, o, out, out_len);
    edge_free(clean);
    return rv;
}

/* ------------------------------------------------------------------------------------
 * PEM
 * ---------------------------------------------------------------------------------- */

/* Find the next PEM block at or after *pos. Returns 1 and fills label/DER when found,
 * 0 when there is none, -1 with errmsg set when a block is broken, PEM_NOMEM on OOM.
 * *der is caller-freed. */
static int pem_next(const char *text, size_t len, size_t *pos, char *label, size_t label_len,
                    uint8_t **der, size_t *der_len, char *errmsg, size_t errmsg_len)
{
    static const char begin[] = "-----BEGIN ";
    const char *b = memfind(text + *pos, len - *pos, begin);
    if (b == NULL) {
        return 0;
    }
    const char *lab = b + sizeof(begin) - 1;
    const char *end_lab = memfind(lab, (size_t)(text + len - lab), "-----");
    if (end_lab == NULL || (size_t)(end_lab - lab) >= label_len ||
        memchr(lab, '\n', (size_t)(end_lab - lab)) != NULL) {
        edge__errmsg_set(errmsg, errmsg_len, "malformed PEM header");
        return -1;
    }
    memcpy(label, lab, (size_t)(end_lab - lab));
    label[end_lab - lab] = '\0';
    const char *body = end_lab + 5;
    char footer[96];
    snprintf(footer, sizeof(footer), "-----END %s-----", label);
    const char *f = memfind(body, (size_t)(text + len - body), footer);
    if (f == NULL) {
        edge__errmsg_set(errmsg, errmsg_len, "PEM block '%s' has no END line", label);
        return -1;
    }
    int rv = b64_decode_ws(body, (size_t)(f - body), der, der_len);
    if (rv == EDGE_ENOMEM) {
        edge__errmsg_set(errmsg, errmsg_len, "out of memory");
        return PEM_NOMEM;
    }
    if (rv != EDGE_OK) {
        edge__errmsg_set(errmsg, errmsg_len, "PEM block '%s' is not valid base64", label);
        return -1;
    }
    *pos = (size_t)(f - text) + strlen(footer);
    return 1;
}

static int pem_append(struct edge_buf *out, const char *label, const uint8_t *der, size_t n)
{
    struct edge_buf b64;
    int rv;
    edge_buf_init(&b64, 64 * 1024);
    rv = edge_buf_base64(&b64, der, n);
    if (rv != EDGE_OK) {
        goto out;
    }
    rv = edge_buf_printf(out, "-----BEGIN %s-----\n", label);
    for (size_t i = 0; rv == EDGE_OK && i < b64.len; i += 64) {
        size_t chunk = b64.len - i < 64 ? b64.len - i : 64;
        rv = edge_buf_append(out, b64.data + i, chunk);
        if (rv == EDGE_OK) {
            rv = edge_buf_putc(out, '\n');
        }
    }
    if (rv == EDGE_OK) {
        rv = edge_buf_printf(out, "-----END %s-----\n", label);
    }
out:
    edge_buf_free(&b64);
    return rv;
}

int edge_jwt_seckey_pem(const uint8_t sk[EDGE_JWT_SK_LEN], struct edge_buf *out)
{
    uint8_t der[sizeof(pkcs8_prefix) + EDGE_JWT_SEED_LEN];
    int rv;
    memcpy(der, pkcs8_prefix, sizeof(pkcs8_prefix));
    /* libsodium's secret key is seed || public key; PKCS#8 stores the seed. */
    memcpy(der + sizeof(pkcs8_prefix), sk, EDGE_JWT_SEED_LEN);
    rv = pem_append(out, "PRIVATE KEY", der, sizeof(der));
    sodium_memzero(der, sizeof(der));
    return rv;
}

int edge_jwt_pubkey_pem(const uint8_t pk[EDGE_JWT_PK_LEN], struct edge_buf *out)
{
    uint8_t der[sizeof(spki_prefix) + EDGE_JWT_PK_LEN];
    memcpy(der, spki_prefix, sizeof(spki_prefix));
    memcpy(der + sizeof(spki_prefix), pk, EDGE_JWT_PK_LEN);
    return pem_append(out, "PUBLIC KEY", der, sizeof(der));
}

/* ------------------------------------------------------------------------------------
 * Files
 * ---------------------------------------------------------------------------------- */

int edge__read_file(const char *path, size_t max, char **out, size_t *out_len, char *errmsg,
                    size_t errmsg_len)
{
    FILE *f = NULL;
    char *data = NULL;
    size_t len = 0;
    int rv = EDGE_EIO;

    *out = NULL;
    *out_len = 0;
    f = fopen(path, "rb");
    if (f == NULL) {
        edge__errmsg_set(errmsg, errmsg_len, "%s: %s", path, strerror(errno));
        goto out;
    }
    data = edge_malloc(max + 2);
    if (data == NULL) {
        rv = EDGE_ENOMEM;
        edge__errmsg_set(errmsg, errmsg_len, "%s: out of memory", path);
        goto out;
    }
    /* Read one byte past the cap to tell "exactly max" from "too big". */
    len = fread(data, 1, max + 1, f);
    if (ferror(f)) {
        edge__errmsg_set(errmsg, errmsg_len, "%s: read error", path);
        goto out;
    }
    if (len > max) {
        rv = EDGE_ETOOBIG;
        edge__errmsg_set(errmsg, errmsg_len, "%s: file larger than %zu bytes", path, max);
        goto out;
    }
    data[len] = '\0';
    *out = data;
    *out_len = len;
    data = NULL;
    rv = EDGE_OK;
out:
    if (f != NULL) {
        fclose(f);
    }
    edge_free(data);
    return rv;
}

/* ------------------------------------------------------------------------------------
 * Public keys
 * ---------------------------------------------------------------------------------- */

int edge_jwt_keys_parse(const char *text, size_t len, struct edge_jwt_keys **out,
                        char *errmsg, size_t errmsg_len)
{
    struct edge_jwt_keys *k = NULL;
    uint8_t *der = NULL;
    size_t der_len = 0;
    int rv = EDGE_ENOMEM;

    *out = NULL;
    trim(&text, &len);
    k = edge_calloc(1, sizeof(*k) + EDGE_JWT_MAX_KEYS * EDGE_JWT_PK_LEN);
    if (k == NULL) {
        edge__errmsg_set(errmsg, errmsg_len, "out of memory");
        goto out;
    }
    if (len == 0) {
        rv = EDGE_EINVAL;
        edge__errmsg_set(errmsg, errmsg_len, "no key found (empty)");
        goto out;
    }
    if (memfind(text, len, "-----BEGIN") == NULL) {
        /* sqld's other accepted form: one raw key in base64url. */
        rv = b64_decode_ws(text, len, &der, &der_len);
        if (rv == EDGE_ENOMEM) {
            edge__errmsg_set(errmsg, errmsg_len, "out of memory");
            goto out;
        }
        if (rv != EDGE_OK || der_len != EDGE_JWT_PK_LEN) {
            rv = EDGE_EINVAL;
            edge__errmsg_set(errmsg, errmsg_len,
                   "expected PEM public key(s) or a base64url 32-byte Ed25519 key");
            goto out;
        }
        memcpy(k->pk[0], der, EDGE_JWT_PK_LEN);
        k->n = 1;
        rv = EDGE_OK;
        goto out;
    }
    size_t pos = 0;
    for (int guard = 0; guard <= EDGE_JWT_MAX_KEYS; guard++) {
        char label[64];
        edge_free(der);
        der = NULL;
        int r = pem_next(text, len, &pos, label, sizeof(label), &der, &der_len, errmsg,
                         errmsg_len);
        if (r == 0) {
            break;
        }
        if (r < 0) {
            rv = r == PEM_NOMEM ? EDGE_ENOMEM : EDGE_EINVAL;
            goto out;
        }
        rv = EDGE_EINVAL;
        if (strcmp(label, "PUBLIC KEY") != 0) {
            edge__errmsg_set(errmsg, errmsg_len, "PEM block '%s' is not a PUBLIC KEY", label);
            goto out;
        }
        if (der_len != sizeof(spki_prefix) + EDGE_JWT_PK_LEN ||
            memcmp(der, spki_prefix, sizeof(spki_prefix)) != 0) {
            edge__errmsg_set(errmsg, errmsg_len, "PEM public key %zu is not an Ed25519 key", k->n + 1);
            goto out;
        }
        if (k->n == EDGE_JWT_MAX_KEYS) {
            edge__errmsg_set(errmsg, errmsg_len, "more than %d keys", EDGE_JWT_MAX_KEYS);
            goto out;
        }
        memcpy(k->pk[k->n++], der + sizeof(spki_prefix), EDGE_JWT_PK_LEN);
    }
    if (k->n == 0) {
        rv = EDGE_EINVAL;
        edge__errmsg_set(errmsg, errmsg_len, "no PEM public key found");
        goto out;
    }
    rv = EDGE_OK;
out:
    edge_free(der);
    if (rv == EDGE_OK) {
        *out = k;
    } else {
        edge_free(k);
    }
    return rv;
}

int edge_jwt_keys_load(const char *path, struct edge_jwt_keys **out, char *errmsg,
                       size_t errmsg_len)
{
    char *text = NULL;
    size_t len = 0;
    char inner[EDGE_ERRMSG_SIZE];
    int rv;

    *out = NULL;
    rv = edge__read_file(path, KEYFILE_MAX, &text, &len, errmsg, errmsg_len);
    if (rv != EDGE_OK) {
        return rv;
    }
    inner[0] = '\0';
    rv = edge_jwt_keys_parse(text, len, out, inner, sizeof(inner));
    if (rv != EDGE_OK) {
        edge__errmsg_set(errmsg, errmsg_len, "%s: %s", path, inner);
    }
    edge_free(text);
    return rv;
}

void edge_jwt_keys_free(struct edge_jwt_keys *k)
{
    edge_free(k);
}

size_t edge_jwt_keys_count(const struct edge_jwt_keys *k)
{
    return k == NULL ? 0 : k->n;
}

/* ------------------------------------------------------------------------------------
 * Secret keys
 * ---------------------------------------------------------------------------------- */

static int sk_from_seed(const uint8_t seed[EDGE_JWT_SEED_LEN], uint8_t out_sk[EDGE_JWT_SK_LEN])
{
    uint8_t pk[EDGE_JWT_PK_LEN];
    if (sodium_init() < 0 || crypto_sign_seed_keypair(pk, out_sk, seed) != 0) {
        return EDGE_EINTERNAL;
    }
    return EDGE_OK;
}

int edge_jwt_seckey_parse(const char *text, size_t len, uint8_t out_sk[EDGE_JWT_SK_LEN],
                          char *errmsg, size_t errmsg_len)
{
    uint8_t *der = NULL;
    size_t der_len = 0;
    int rv = EDGE_EINVAL;

    trim(&text, &len);
    if (memfind(text, len, "-----BEGIN") != NULL) {
        char label[64];
        size_t pos = 0;
        int r = pem_next(text, len, &pos, label, sizeof(label), &der, &der_len, errmsg,
                         errmsg_len);
        if (r <= 0) {
            rv = r == PEM_NOMEM ? EDGE_ENOMEM : EDGE_EINVAL;
            if (r == 0) {
                edge__errmsg_set(errmsg, errmsg_len, "no PEM block found");
            }
            goto out;
        }
        if (strcmp(label, "PRIVATE KEY") != 0) {
            edge__errmsg_set(errmsg, errmsg_len, "PEM block '%s' is not a PRIVATE KEY (PKCS#8)", label);
            goto out;
        }
        if (der_len != sizeof(pkcs8_prefix) + EDGE_JWT_SEED_LEN ||
            memcmp(der, pkcs8_prefix, sizeof(pkcs8_prefix)) != 0) {
            edge__errmsg_set(errmsg, errmsg_len, "PEM private key is not an Ed25519 PKCS#8 key");
            goto out;
        }
        rv = sk_from_seed(der + sizeof(pkcs8_prefix), out_sk);
        goto out;
    }
    rv = b64_decode_ws(text, len, &der, &der_len);
    if (rv == EDGE_ENOMEM) {
        goto out;
    }
    rv = EDGE_EINVAL;
    if (der != NULL && der_len == EDGE_JWT_SEED_LEN) {
        rv = sk_from_seed(der, out_sk);
    } else if (der != NULL && der_len == EDGE_JWT_SK_LEN) {
        /* A 64-byte key carries its public half; a mismatch means a corrupt or
         * hand-assembled key that would sign tokens nobody can verify. */
        rv = sk_from_seed(der, out_sk);
        if (rv == EDGE_OK && sodium_memcmp(out_sk + EDGE_JWT_SEED_LEN, der + EDGE_JWT_SEED_LEN,
                                           EDGE_JWT_PK_LEN) != 0) {
            rv = EDGE_EINVAL;
            edge__errmsg_set(errmsg, errmsg_len, "64-byte secret key: public half does not match seed");
        }
    } else {
        edge__errmsg_set(errmsg, errmsg_len,
               "expected a PKCS#8 PEM private key or a base64url 32-byte seed / 64-byte key");
    }
out:
    if (der != NULL) {
        sodium_memzero(der, der_len);
    }
    edge_free(der);
    if (rv != EDGE_OK) {
        sodium_memzero(out_sk, EDGE_JWT_SK_LEN);
        if (rv == EDGE_ENOMEM) {
            edge__errmsg_set(errmsg, errmsg_len, "out of memory");
        }
    }
    return rv;
}

int edge_jwt_seckey_load(const char *path, uint8_t out_sk[EDGE_JWT_SK_LEN], char *errmsg,
                         size_t errmsg_len)
{
    char *text = NULL;
    size_t len = 0;
    char inner[EDGE_ERRMSG_SIZE];
    int rv;

    rv = edge__read_file(path, KEYFILE_MAX, &text, &len, errmsg, errmsg_len);
    if (rv != EDGE_OK) {
        return rv;
    }
    inner[0] = '\0';
    rv = edge_jwt_seckey_parse(text, len, out_sk, inner, sizeof(inner));
    if (rv != EDGE_OK) {
        edge__errmsg_set(errmsg, errmsg_len, "%s: %s", path, inner);
    }
    sodium_memzero(text, len);
    edge_free(text);
    return rv;
}

int edge_jwt_keygen(uint8_t out_pk[EDGE_JWT_PK_LEN], uint8_t out_sk[EDGE_JWT_SK_LEN])
{
    if (sodium_init() < 0 || crypto_sign_keypair(out_pk, out_sk) != 0) {
        return EDGE_EINTERNAL;
    }
    return EDGE_OK;
}

/* ------------------------------------------------------------------------------------
 * Tokens
 * ---------------------------------------------------------------------------------- */

int edge_jwt_create(const uint8_t sk[EDGE_JWT_SK_LEN], enum edge_jwt_access a,
                    int64_t exp_unix_s, uint64_t iat, struct edge_buf *out)
{
    static const char header[] = "{\"alg\":\"EdDSA\",\"typ\":\"JWT\"}";
    struct edge_buf payload;
    uint8_t sig[crypto_sign_BYTES];
    size_t start = out->len;
    int rv;

    if (a != EDGE_JWT_RO && a != EDGE_JWT_RW) {
        return EDGE_EINVAL;
    }
    if (sodium_init() < 0) {
        return EDGE_EINTERNAL;
    }
    edge_buf_init(&payload, 1024);
    rv = edge_buf_printf(&payload, "{\"iat\":%llu", (unsigned long long)iat);
    if (rv == EDGE_OK && exp_unix_s != 0) {
        rv = edge_buf_printf(&payload, ",\"exp\":%lld", (long long)exp_unix_s);
    }
    if (rv == EDGE_OK) {
        rv = edge_buf_printf(&payload, ",\"a\":\"%s\"}", a == EDGE_JWT_RO ? "ro" : "rw");
    }
    if (rv == EDGE_OK) {
        rv = edge_buf_base64url(out, (const uint8_t *)header, sizeof(header) - 1);
    }
    if (rv == EDGE_OK) {
        rv = edge_buf_putc(out, '.');
    }
    if (rv == EDGE_OK) {
        rv = edge_buf_base64url(out, (const uint8_t *)payload.data, payload.len);
    }
    if (rv != EDGE_OK) {
        goto out;
    }
    /* The signing input is exactly what precedes the second dot. */
    crypto_sign_detached(sig, NULL, (const uint8_t *)out->data + start, out->len - start, sk);
    rv = edge_buf_putc(out, '.');
    if (rv == EDGE_OK) {
        rv = edge_buf_base64url(out, sig, sizeof(sig));
    }
out:
    if (rv != EDGE_OK && out->data != NULL) {
        out->len = start;
        out->data[start] = '\0';
    }
    edge_buf_free(&payload);
    return rv;
}

static int is_b64url(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_')) {
            return 0;
        }
    }
    return 1;
}

/* Decode one base64url segment and parse it as a JSON object. Returns EDGE_OK,
 * EDGE_EAUTH (not base64url / not a JSON object) or EDGE_ENOMEM. */
static int decode_json_part(const char *s, size_t len, json_t **out)
{
    uint8_t *raw = NULL;
    size_t raw_len = 0;
    json_error_t jerr;
    int rv;

    *out = NULL;
    if (len == 0 || !is_b64url(s, len)) {
        return EDGE_EAUTH;
    }
    rv = edge_base64_decode(s, len, &raw, &raw_len);
    if (rv != EDGE_OK) {
        return rv == EDGE_ENOMEM ? EDGE_ENOMEM : EDGE_EAUTH;
    }
    *out = json_loadb((const char *)raw, raw_len, JSON_REJECT_DUPLICATES, &jerr);
    edge_free(raw);
    if (*out == NULL) {
        return EDGE_EAUTH;
    }
    if (!json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        return EDGE_EAUTH;
    }
    return EDGE_OK;
}

/* Map the claims to an access level (sqld: `p` overrides `a`; no claim = full). */
static enum edge_jwt_access claims_access(json_t *payload)
{
    json_t *p = json_object_get(payload, "p");
    if (p != NULL) {
        if (!json_is_object(p)) {
            return EDGE_JWT_NONE;
        }
        if (json_object_get(p, "rw") != NULL || json_object_get(p, "rwa") != NULL ||
            json_object_get(p, "ddl") != NULL) {
            return EDGE_JWT_RW;
        }
        if (json_object_get(p, "ro") != NULL || json_object_get(p, "roa") != NULL) {
            return EDGE_JWT_RO;
        }
        return EDGE_JWT_NONE;
    }
    json_t *a = json_object_get(payload, "a");
    if (a == NULL) {
        return EDGE_JWT_RW;
    }
    const char *s = json_string_value(a);
    if (s == NULL) {
        return EDGE_JWT_NONE;
    }
    if (strcmp(s, "rw") == 0) {
        return EDGE_JWT_RW;
    }
    if (strcmp(s, "ro") == 0 || strcmp(s, "roa") == 0) {
        return EDGE_JWT_RO;
    }
    return EDGE_JWT_NONE;
}

int edge_jwt_verify(const struct edge_jwt_keys *k, const char *token, size_t len,
                    uint64_t now_unix_s, enum edge_jwt_access *out_access,
                    const char **out_code)
{
    json_t *header = NULL;
    json_t *payload = NULL;
    uint8_t *sig = NULL;
    size_t sig_len = 0;
    const char *d1, *d2;
    int rv = EDGE_EAUTH;

    *out_access = EDGE_JWT_NONE;
    *out_code = EDGE_JWT_CODE_INVALID;
    if (k == NULL || token == NULL || len == 0 || len > EDGE_JWT_MAX_TOKEN) {
        goto out;
    }
    d1 = memchr(token, '.', len);
    if (d1 == NULL) {
        goto out;
    }
    d2 = memchr(d1 + 1, '.', (size_t)(token + len - d1 - 1));
    if (d2 == NULL || memchr(d2 + 1, '.', (size_t)(token + len - d2 - 1)) != NULL) {
        goto out;
    }
    rv = decode_json_part(token, (size_t)(d1 - token), &header);
    if (rv != EDGE_OK) {
        goto out;
    }
    /* alg is the only header field with meaning here; "none" and HMAC algorithms
     * are refused outright (the classic JWT algorithm-confusion attacks). */
    const char *alg = json_string_value(json_object_get(header, "alg"));
    if (alg == NULL || strcmp(alg, "EdDSA") != 0) {
        rv = EDGE_EAUTH;
        goto out;
    }
    const char *sig_b64 = d2 + 1;
    size_t sig_b64_len = (size_t)(token + len - sig_b64);
    if (!is_b64url(sig_b64, sig_b64_len)) {
        rv = EDGE_EAUTH;
        goto out;
    }
    rv = edge_base64_decode(sig_b64, sig_b64_len, &sig, &sig_len);
    if (rv != EDGE_OK || sig_len != crypto_sign_BYTES) {
        rv = rv == EDGE_ENOMEM ? EDGE_ENOMEM : EDGE_EAUTH;
        goto out;
    }
    if (sodium_init() < 0) {
        rv = EDGE_EINTERNAL;
        goto out;
    }
    rv = EDGE_EAUTH;
    for (size_t i = 0; i < k->n; i++) {
        if (crypto_sign_verify_detached(sig, (const uint8_t *)token, (size_t)(d2 - token),
                                        k->pk[i]) == 0) {
            rv = EDGE_OK;
            break;
        }
    }
    if (rv != EDGE_OK) {
        goto out;
    }
    rv = decode_json_part(d1 + 1, (size_t)(d2 - d1 - 1), &payload);
    if (rv != EDGE_OK) {
        goto out;
    }
    rv = EDGE_EAUTH;
    json_t *exp = json_object_get(payload, "exp");
    if (exp != NULL) {
        if (!json_is_number(exp)) {
            goto out;
        }
        if ((double)now_unix_s > json_number_value(exp) + (double)EDGE_JWT_LEEWAY_S) {
            *out_code = EDGE_JWT_CODE_EXPIRED;
            goto out;
        }
    }
    enum edge_jwt_access acc = claims_access(payload);
    if (acc == EDGE_JWT_NONE) {
        goto out;
    }
    *out_access = acc;
    *out_code = NULL;
    rv = EDGE_OK;
out:
    if (rv == EDGE_ENOMEM || rv == EDGE_EINTERNAL) {
        *out_code = NULL;
    }
    edge_free(sig);
    json_decref(header);
    json_decref(payload);
    return rv;
}

int edge_jwt_bearer(const char *value, size_t len, const char **out_token, size_t *out_len,
                    const char **out_code)
{
    static const char scheme[] = "bearer";
    const size_t slen = sizeof(scheme) - 1;

    *out_token = NULL;
    *out_len = 0;
    if (value == NULL) {
        *out_code = EDGE_JWT_CODE_NO_HEADER;
        return EDGE_EAUTH;
    }
    *out_code = EDGE_JWT_CODE_BAD_HEADER;
    while (len > 0 && (value[0] == ' ' || value[0] == '\t')) {
        value++;
        len--;
    }
    while (len > 0 && (value[len - 1] == ' ' || value[len - 1] == '\t')) {
        len--;
    }
    if (len <= slen || (value[slen] != ' ' && value[slen] != '\t')) {
        return EDGE_EAUTH;
    }
    for (size_t i = 0; i < slen; i++) {
        char c = value[i];
        if (c >= 'A' && c <= 'Z') {
            c = (char)(c - 'A' + 'a');
        }
        if (c != scheme[i]) {
            return EDGE_EAUTH;
        }
    }
    const char *t = value + slen;
    size_t tlen = len - slen;
    while (tlen > 0 && (t[0] == ' ' || t[0] == '\t')) {
        t++;
        tlen--;
    }
    if (tlen == 0 || memchr(t, ' ', tlen) != NULL || memchr(t, '\t', tlen) != NULL) {
        return EDGE_EAUTH;
    }
    *out_token = t;
    *out_len = tlen;
    *out_code = NULL;
    return EDGE_OK;
}
