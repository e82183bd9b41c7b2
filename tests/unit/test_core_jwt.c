/* SPDX-License-Identifier: MIT */
/* Unit tests of src/core/jwt: token round trips, expiry and leeway, every rejection
 * path (wrong key, tampering, alg confusion, garbage), claim mapping, Authorization
 * header parsing, and public/private key loading in all accepted formats, including
 * fixtures produced by node's crypto and OpenSSL (RFC 8410 example key). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <sodium.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/jwt.h"

#define NOW 1700000000u

/* Generated once with node 20:
 *   crypto.generateKeyPairSync("ed25519"); header {"alg":"EdDSA","typ":"JWT"},
 *   payload {"a":"ro","iat":1700000000,"exp":1700003600}, crypto.sign(null, ...). */
static const char node_pub_pem[] = "-----BEGIN PUBLIC KEY-----\n"
                                   "MCowBQYDK2VwAyEAK9rHEXOLEJAHUfLu/0+SVrqEmymfA579iQzbrEu7QZE=\n"
                                   "-----END PUBLIC KEY-----\n";
static const char node_token[] =
    "eyJhbGciOiJFZERTQSIsInR5cCI6IkpXVCJ9.eyJhIjoicm8iLCJpYXQiOjE3MDAwMDAwMDAsImV4cCI6MTcw"
    "MDAwMzYwMH0.OTtY_bp7fKo-ak568zSGM1LW6D7y3WZixcJMYpLRybeHxo1DjVH6sW6Yk00cJgdE72fnElSFaQ"
    "ys3HG8BZfVDg";

/* RFC 8410 section 10.3 example key pair (checked with `openssl pkey -pubout`). */
static const char rfc_priv_pem[] = "-----BEGIN PRIVATE KEY-----\n"
                                   "MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n"
                                   "-----END PRIVATE KEY-----\n";
static const char rfc_pub_pem[] = "-----BEGIN PUBLIC KEY-----\n"
                                  "MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n"
                                  "-----END PUBLIC KEY-----\n";

struct fixture {
    uint8_t pk[EDGE_JWT_PK_LEN];
    uint8_t sk[EDGE_JWT_SK_LEN];
    uint8_t pk2[EDGE_JWT_PK_LEN];
    uint8_t sk2[EDGE_JWT_SK_LEN];
    struct edge_jwt_keys *keys; /* holds pk only */
    struct edge_buf tok;
    char dir[64];
};

static struct edge_jwt_keys *keys_from_raw(const uint8_t pk[EDGE_JWT_PK_LEN])
{
    struct edge_buf b;
    struct edge_jwt_keys *k = NULL;
    char msg[EDGE_ERRMSG_SIZE];
    edge_buf_init(&b, 4096);
    assert_int_equal(edge_buf_base64url(&b, pk, EDGE_JWT_PK_LEN), EDGE_OK);
    assert_int_equal(edge_jwt_keys_parse(b.data, b.len, &k, msg, sizeof(msg)), EDGE_OK);
    edge_buf_free(&b);
    return k;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    assert_int_equal(edge_jwt_keygen(f->pk, f->sk), EDGE_OK);
    assert_int_equal(edge_jwt_keygen(f->pk2, f->sk2), EDGE_OK);
    f->keys = keys_from_raw(f->pk);
    edge_buf_init(&f->tok, 1 << 16);
    snprintf(f->dir, sizeof(f->dir), "/tmp/edge_jwt_XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char cmd[128];
    edge_jwt_keys_free(f->keys);
    edge_buf_free(&f->tok);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static int verify(const struct edge_jwt_keys *k, const char *tok, uint64_t now,
                  enum edge_jwt_access *acc, const char **code)
{
    return edge_jwt_verify(k, tok, strlen(tok), now, acc, code);
}

/* Build "<b64 header>.<b64 payload>.<sig>" signed by sk over the real signing input. */
static void make_token(struct edge_buf *out, const char *header, const char *payload,
                       const uint8_t sk[EDGE_JWT_SK_LEN])
{
    uint8_t sig[crypto_sign_BYTES];
    edge_buf_reset(out);
    assert_int_equal(edge_buf_base64url(out, (const uint8_t *)header, strlen(header)), EDGE_OK);
    assert_int_equal(edge_buf_putc(out, '.'), EDGE_OK);
    assert_int_equal(edge_buf_base64url(out, (const uint8_t *)payload, strlen(payload)),
                     EDGE_OK);
    crypto_sign_detached(sig, NULL, (const uint8_t *)out->data, out->len, sk);
    assert_int_equal(edge_buf_putc(out, '.'), EDGE_OK);
    assert_int_equal(edge_buf_base64url(out, sig, sizeof(sig)), EDGE_OK);
}

static void write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(text, 1, strlen(text), fp), strlen(text));
    assert_int_equal(fclose(fp), 0);
}

/* ---- tokens ---- */

static void test_roundtrip(void **state)
{
    struct fixture *f = *state;
    enum edge_jwt_access acc;
    const char *code;

    assert_int_equal(edge_jwt_create(f->sk, EDGE_JWT_RW, 0, NOW, &f->tok), EDGE_OK);
    assert_int_equal(verify(f->keys, f->tok.data, NOW, &acc, &code), EDGE_OK);
    assert_int_equal(acc, EDGE_JWT_RW);
    assert_null(code);
    /* No exp: valid forever. */
    assert_int_equal(verify(f->keys, f->tok.data, UINT64_C(1) << 40, &acc, &code), EDGE_OK);

    edge_buf_reset(&f->tok);
    assert_int_equal(edge_jwt_create(f->sk, EDGE_JWT_RO, NOW + 3600, NOW, &f->tok), EDGE_OK);
    assert_int_equal(verify(f->keys, f->tok.data, NOW + 10, &acc, &code), EDGE_OK);
    assert_int_equal(acc, EDGE_JWT_RO);

    /* The header is exactly what libSQL clients and sqld expect. */
    const char *dot = strchr(f->tok.data, '.');
    assert_non_null(dot);
    uint8_t *hdr = NULL;
    size_t hlen = 0;
    assert_int_equal(edge_base64_decode(f->tok.data, (size_t)(dot - f->tok.data), &hdr, &hlen),
                     EDGE_OK);
    assert_int_equal(hlen, strlen("{\"alg\":\"EdDSA\",\"typ\":\"JWT\"}"));
    assert_memory_equal(hdr, "{\"alg\":\"EdDSA\",\"typ\":\"JWT\"}", hlen);
    edge_free(hdr);

    assert_int_equal(edge_jwt_create(f->sk, EDGE_JWT_NONE, 0, NOW, &f->tok), EDGE_EINVAL);
}

static void test_expiry_and_leeway(void **state)
{
    struct fixture *f = *state;
    enum edge_jwt_access acc;
    const char *code;

    assert_int_equal(edge_jwt_create(f->sk, EDGE_JWT_RW, NOW, NOW - 100, &f->tok), EDGE_OK);
    assert_int_equal(verify(f->keys, f->tok.data, NOW, &acc, &code), EDGE_OK);
    assert_int_equal(verify(f->keys, f->tok.data, NOW + 60, &acc, &code), EDGE_OK);
    assert_int_equal(verify(f->keys, f->tok.data, NOW + 61, &acc, &code), EDGE_EAUTH);
    assert_string_equal(code, "AUTH_JWT_EXPIRED");
    assert_int_equal(acc, EDGE_JWT_NONE);

    /* Expiry is only reported once the signature holds. */
    struct edge_jwt_keys *other = keys_from_raw(f->pk2);
    assert_int_equal(verify(other, f->tok.data, NOW + 1000, &acc, &code), EDGE_EAUTH);
    assert_string_equal(code, "AUTH_JWT_INVALID");
    edge_jwt_keys_free(other);

    /* A non-numeric exp is malformed, not "never expires". */
    make_token(&f->tok, "{\"alg\":\"EdDSA\"}", "{\"exp\":\"never\"}", f->sk);
    assert_int_equal(verify(f->keys, f->tok.data, NOW, &acc, &code), EDGE_EAUTH);
    assert_string_equal(code, "AUTH_JWT_INVALID");
    /* Fractional exp is a JSON number too. */
    make_token(&f->tok, "{\"alg\":\"EdDSA\"}", "{\"exp\":1700000000.5}", f->sk);
    assert_int_equal(verify(f->keys, f->tok.data, NOW + 60, &acc, &code), EDGE_OK);
    assert_int_equal(verify(f->keys, f->tok.data, NOW + 61, &acc, &code), EDGE_EAUTH);
}

static void test_wrong_key_and_tampering(void **state)
{
    struct fixture *f = *state;
    enum edge_jwt_access acc;
    const char *code;
    struct edge_buf forged;

    assert_int_equal(edge_jwt_create(f->sk2, EDGE_JWT_RW, 0, NOW, &f->tok), EDGE_OK);
    assert_int_equal(verify(f->keys, f->tok.data, NOW, &acc, &code), EDGE_EAUTH);
    assert_string_equal(code, "AUTH_JWT_INVALID");

    /* Read-only token whose payload is swapped for a read-write one. */
    edge_buf_reset(&f->tok);
    assert_int_equal(edge_jwt_create(f->sk, EDGE_JWT_RO, 0, NOW, &f->tok), EDGE_OK);
    assert_int_equal(verify(f->keys, f->tok.data, NOW, &acc, &code), EDGE_OK);
    const char *d1 = strchr(f->tok.data, '.');
    const char *d2 = strchr(d1 + 1, '.');
    edge_buf_init(&forged, 4096);
    const char rw[] = "{\"iat\":1700000000,\"a\":\"rw\"}";
    assert_int_equal(edge_buf_append(&forged, f->tok.data, (size_t)(d1 - f->tok.data) + 1),
                     EDGE_OK);
    assert_int_equal(edge_buf_base64url(&forged, (const uint8_t *)rw, sizeof(rw) - 1), EDGE_OK);
    assert_int_equal(edge_buf_puts(&forged, d2), EDGE_OK);
    assert_int_equal(verify(f->keys, forged.data, NOW, &acc, &code), EDGE_EAUTH);
    assert_string_equal(code, "AUTH_JWT_INVALID");
    assert_int_equal(acc, EDGE_JWT_NONE);

    /* Flip one signature character (first char of the signature keeps all 6 bits
     * significant, so the decoded bytes change). */
    edge_buf_reset(&forged);
    assert_int_equal(edge_buf_puts(&forged, f->tok.data), EDGE_OK);
    size_t si = (size_t)(d2 - f->tok.data) + 1;
    forged.data[si] = forged.data[si] == 'A' ? 'B' : 'A';
    assert_int_equal(verify(f->keys, forged.data, NOW, &acc, &code), EDGE_EAUTH);
    assert_string_equal(code, "AUTH_JWT_INVALID");

    /* Signature of the wrong length (last 4 characters dropped). */
    edge_buf_reset(&forged);
    assert_int_equal(edge_buf_append(&forged, f->tok.data, f->tok.len - 4), EDGE_OK);
    assert_int_equal(verify(f->keys, forged.data, NOW, &acc, &code), EDGE_EAUTH);
    edge_buf_free(&forged);
}

static void test_alg_confusion(void **state)
{
    struct fixture *f = *state;
    enum edge_jwt_access acc;
    const char *code;
    static const char *bad_headers[] = {
        "{\"alg\":\"none\"}", "{\"alg\":\"HS256\",\"typ\":\"JWT\"}", "{\"alg\":\"ES256\"}",
        "{\"alg\":\"eddsa\"}", "{\"typ\":\"JWT\"}", "{\"alg\":null}", "[\"EdDSA\"]",
        "{\"alg\":\"EdDSA\",\"alg\":\"EdDSA\"}",
    };
    for (size_t i = 0; i < sizeof(bad_headers) / sizeof(bad_headers[0]); i++) {
        /* Even with a genuine Ed25519 signature the header must be refused. */
        make_token(&f->tok, bad_headers[i], "{\"a\":\"rw\"}", f->sk);
        assert_int_equal(verify(f->keys, f->tok.data, NOW, &acc, &code), EDGE_EAUTH);
        assert_string_equal(code, "AUTH_JWT_INVALID");
    }
    /* Unsigned "none" token. */
    const char none_tok[] = "eyJhbGciOiJub25lIn0.eyJhIjoicnciLCJpYXQiOjE3MDAwMDAwMDB9.";
    assert_int_equal(verify(f->keys, none_tok, NOW, &acc, &code), EDGE_EAUTH);
    /* The same body under the right alg still verifies (control). */
    make_token(&f->tok, "{\"alg\":\"EdDSA\"}", "{\"a\":\"rw\"}", f->sk);
    assert_int_equal(verify(f->keys, f->tok.data, NOW, &acc, &code), EDGE_OK);
}

static void test_garbage_and_truncation(void **state)
{
    struct fixture *f = *state;
    enum edge_jwt_access acc;
    const char *code;
    static const char *garbage[] = {
        "", ".", "..", "...", "abc", "a.b", "a.b.c", "a.b.c.d", "eyJ.eyJ.xx",
        "Bearer x.y.z", "\xff\xfe.\x01.\x02", "e30.e30.", "e30..AAAA",
    };
    for (size_t i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++) {
        assert_int_equal(verify(f->keys, garbage[i], NOW, &acc, &code), EDGE_EAUTH);
        assert_string_equal(code, "AUTH_JWT_INVALID");
    }
    assert_int_equal(edge_jwt_create(f->sk, EDGE_JWT_RW, NOW + 100, NOW, &f->tok), EDGE_OK);
    /* Every proper prefix of a valid token is rejected. */
    for (size_t n = 0; n < f->tok.len; n++) {
        assert_int_equal(edge_jwt_verify(f->keys, f->tok.data, n, NOW, &acc, &code), EDGE_EAUTH);
    }
    assert_int_equal(edge_jwt_verify(f->keys, f->tok.data, f->tok.len, NOW, &acc, &code),
                     EDGE_OK);
    /* Embedded NUL and oversize input. */
    char big[EDGE_JWT_MAX_TOKEN + 2];
    memset(big, 'A', sizeof(big));
    assert_int_equal(edge_jwt_verify(f->keys, big, sizeof(big), NOW, &acc, &code), EDGE_EAUTH);
    /* Non-object payload under a valid signature. */
    make_token(&f->tok, "{\"alg\":\"EdDSA\"}", "[1,2]", f->sk);
    assert_int_equal(verify(f->keys, f->tok.data, NOW, &acc, &code), EDGE_EAUTH);
    make_token(&f->tok, "{\"alg\":\"EdDSA\"}", "{\"a\":\"rw\"", f->sk);
    assert_int_equal(verify(f->keys, f->tok.data, NOW, &acc, &code), EDGE_EAUTH);
}

static void test_claims(void **state)
{
    struct fixture *f = *state;
    enum edge_jwt_access acc;
    const char *code;
    static const struct {
        const char *payload;
        int rv;
        enum edge_jwt_access acc;
    } cases[] = {
        {"{}", EDGE_OK, EDGE_JWT_RW},
        {"{\"a\":\"rw\"}", EDGE_OK, EDGE_JWT_RW},
        {"{\"a\":\"ro\"}", EDGE_OK, EDGE_JWT_RO},
        {"{\"a\":\"roa\"}", EDGE_OK, EDGE_JWT_RO},
        {"{\"a\":\"admin\"}", EDGE_EAUTH, EDGE_JWT_NONE},
        {"{\"a\":1}", EDGE_EAUTH, EDGE_JWT_NONE},
        {"{\"a\":\"ro\",\"p\":{\"rw\":{\"ns\":[\"default\"]}}}", EDGE_OK, EDGE_JWT_RW},
        {"{\"p\":{\"rwa\":{}}}", EDGE_OK, EDGE_JWT_RW},
        {"{\"p\":{\"ddl\":{}}}", EDGE_OK, EDGE_JWT_RW},
        {"{\"a\":\"rw\",\"p\":{\"ro\":{\"ns\":[\"default\"]}}}", EDGE_OK, EDGE_JWT_RO},
        {"{\"p\":{\"roa\":{}}}", EDGE_OK, EDGE_JWT_RO},
        {"{\"p\":{}}", EDGE_EAUTH, EDGE_JWT_NONE},
        {"{\"p\":\"rw\"}", EDGE_EAUTH, EDGE_JWT_NONE},
        {"{\"id\":\"default\",\"nbf\":9999999999}", EDGE_OK, EDGE_JWT_RW},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        make_token(&f->tok, "{\"alg\":\"EdDSA\",\"typ\":\"JWT\"}", cases[i].payload, f->sk);
        assert_int_equal(verify(f->keys, f->tok.data, NOW, &acc, &code), cases[i].rv);
        assert_int_equal(acc, cases[i].acc);
        if (cases[i].rv != EDGE_OK) {
            assert_string_equal(code, "AUTH_JWT_INVALID");
        }
    }
}

static void test_node_fixture(void **state)
{
    (void)state;
    struct edge_jwt_keys *k = NULL;
    char msg[EDGE_ERRMSG_SIZE];
    enum edge_jwt_access acc;
    const char *code;
    assert_int_equal(edge_jwt_keys_parse(node_pub_pem, strlen(node_pub_pem), &k, msg,
                                         sizeof(msg)),
                     EDGE_OK);
    assert_int_equal(verify(k, node_token, 1700000100u, &acc, &code), EDGE_OK);
    assert_int_equal(acc, EDGE_JWT_RO);
    assert_int_equal(verify(k, node_token, 1700003600u + 61u, &acc, &code), EDGE_EAUTH);
    assert_string_equal(code, "AUTH_JWT_EXPIRED");
    edge_jwt_keys_free(k);
}

static void test_bearer(void **state)
{
    (void)state;
    const char *tok, *code;
    size_t n;
    static const struct {
        const char *in;
        const char *tok;
        const char *code;
    } cases[] = {
        {"Bearer abc.def.ghi", "abc.def.ghi", NULL},
        {"  bearer \t abc  ", "abc", NULL},
        {"BEARER x", "x", NULL},
        {"Basic dXNlcjpwYXNz", NULL, "AUTH_HEADER_MALFORMED"},
        {"Bearer", NULL, "AUTH_HEADER_MALFORMED"},
        {"Bearer    ", NULL, "AUTH_HEADER_MALFORMED"},
        {"Bearerabc", NULL, "AUTH_HEADER_MALFORMED"},
        {"Bearer a b", NULL, "AUTH_HEADER_MALFORMED"},
        {"", NULL, "AUTH_HEADER_MALFORMED"},
        {"abc.def.ghi", NULL, "AUTH_HEADER_MALFORMED"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rv = edge_jwt_bearer(cases[i].in, strlen(cases[i].in), &tok, &n, &code);
        if (cases[i].tok != NULL) {
            assert_int_equal(rv, EDGE_OK);
            assert_int_equal(n, strlen(cases[i].tok));
            assert_memory_equal(tok, cases[i].tok, n);
            assert_null(code);
        } else {
            assert_int_equal(rv, EDGE_EAUTH);
            assert_string_equal(code, cases[i].code);
            assert_null(tok);
        }
    }
    assert_int_equal(edge_jwt_bearer(NULL, 0, &tok, &n, &code), EDGE_EAUTH);
    assert_string_equal(code, "AUTH_HEADER_NOT_FOUND");
}

/* ---- keys ---- */

static void test_pubkey_formats(void **state)
{
    struct fixture *f = *state;
    struct edge_jwt_keys *k = NULL;
    char msg[EDGE_ERRMSG_SIZE];
    struct edge_buf b;
    enum edge_jwt_access acc;
    const char *code;

    assert_int_equal(edge_jwt_create(f->sk, EDGE_JWT_RW, 0, NOW, &f->tok), EDGE_OK);
    edge_buf_init(&b, 1 << 16);

    /* base64url raw key with surrounding whitespace. */
    assert_int_equal(edge_buf_puts(&b, "\n  "), EDGE_OK);
    assert_int_equal(edge_buf_base64url(&b, f->pk, sizeof(f->pk)), EDGE_OK);
    assert_int_equal(edge_buf_puts(&b, "  \n\n"), EDGE_OK);
    assert_int_equal(edge_jwt_keys_parse(b.data, b.len, &k, msg, sizeof(msg)), EDGE_OK);
    assert_int_equal(edge_jwt_keys_count(k), 1);
    assert_int_equal(verify(k, f->tok.data, NOW, &acc, &code), EDGE_OK);
    edge_jwt_keys_free(k);

    /* Standard base64 with padding. */
    edge_buf_reset(&b);
    assert_int_equal(edge_buf_base64(&b, f->pk, sizeof(f->pk)), EDGE_OK);
    assert_non_null(strchr(b.data, '='));
    assert_int_equal(edge_jwt_keys_parse(b.data, b.len, &k, msg, sizeof(msg)), EDGE_OK);
    assert_int_equal(verify(k, f->tok.data, NOW, &acc, &code), EDGE_OK);
    edge_jwt_keys_free(k);

    /* Two PEM keys; the second one signed the token. */
    edge_buf_reset(&b);
    assert_int_equal(edge_jwt_pubkey_pem(f->pk2, &b), EDGE_OK);
    assert_int_equal(edge_buf_puts(&b, "\n"), EDGE_OK);
    assert_int_equal(edge_jwt_pubkey_pem(f->pk, &b), EDGE_OK);
    assert_non_null(strstr(b.data, "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA"));
    assert_int_equal(edge_jwt_keys_parse(b.data, b.len, &k, msg, sizeof(msg)), EDGE_OK);
    assert_int_equal(edge_jwt_keys_count(k), 2);
    assert_int_equal(verify(k, f->tok.data, NOW, &acc, &code), EDGE_OK);
    assert_int_equal(acc, EDGE_JWT_RW);
    edge_jwt_keys_free(k);

    /* From a file, with CRLF line ends. */
    char path[128];
    snprintf(path, sizeof(path), "%s/pub.pem", f->dir);
    write_file(path, "-----BEGIN PUBLIC KEY-----\r\n"
                     "MCowBQYDK2VwAyEAK9rHEXOLEJAHUfLu/0+SVrqEmymfA579iQzbrEu7QZE=\r\n"
                     "-----END PUBLIC KEY-----\r\n");
    assert_int_equal(edge_jwt_keys_load(path, &k, msg, sizeof(msg)), EDGE_OK);
    assert_int_equal(verify(k, node_token, 1700000100u, &acc, &code), EDGE_OK);
    edge_jwt_keys_free(k);
    edge_buf_free(&b);
}

static void test_pubkey_bad(void **state)
{
    struct fixture *f = *state;
    struct edge_jwt_keys *k = NULL;
    char msg[EDGE_ERRMSG_SIZE];
    static const struct {
        const char *text;
        const char *msg;
    } cases[] = {
        {"", "no key found"},
        {"   \n\t ", "no key found"},
        {"not a key!", "expected PEM public key"},
        {"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "expected PEM public key"}, /* 31 B */
        {"-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAK9rHEXOLEJAHUfLu/0+SVrqEmymfA579iQzbrEu7QZE=\n",
         "no END line"},
        {"-----BEGIN PUBLIC KEY-----\n!!!!\n-----END PUBLIC KEY-----\n", "not valid base64"},
        /* An RSA-style prefix (wrong OID): ed448 SPKI 30 43 30 05 06 03 2b 65 71 ... */
        {"-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VxAyEAK9rHEXOLEJAHUfLu/0+SVrqEmymfA579iQzbrEu7QZE=\n"
         "-----END PUBLIC KEY-----\n",
         "not an Ed25519 key"},
        {rfc_priv_pem, "not a PUBLIC KEY"},
        {"-----BEGIN PUBLIC KEY", "malformed PEM header"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        msg[0] = '\0';
        assert_int_equal(
            edge_jwt_keys_parse(cases[i].text, strlen(cases[i].text), &k, msg, sizeof(msg)),
            EDGE_EINVAL);
        assert_null(k);
        if (strstr(msg, cases[i].msg) == NULL) {
            fail_msg("case %zu: message '%s' lacks '%s'", i, msg, cases[i].msg);
        }
    }
    /* Files: missing, and a bad one (message names the path). */
    char path[128];
    snprintf(path, sizeof(path), "%s/missing.pem", f->dir);
    assert_int_equal(edge_jwt_keys_load(path, &k, msg, sizeof(msg)), EDGE_EIO);
    assert_non_null(strstr(msg, "missing.pem"));
    snprintf(path, sizeof(path), "%s/bad.pem", f->dir);
    write_file(path, "garbage\n");
    assert_int_equal(edge_jwt_keys_load(path, &k, msg, sizeof(msg)), EDGE_EINVAL);
    assert_non_null(strstr(msg, "bad.pem: expected PEM"));
}

static void test_seckey_formats(void **state)
{
    struct fixture *f = *state;
    uint8_t sk[EDGE_JWT_SK_LEN];
    char msg[EDGE_ERRMSG_SIZE];
    struct edge_buf b;
    struct edge_jwt_keys *k = NULL;
    enum edge_jwt_access acc;
    const char *code;

    edge_buf_init(&b, 1 << 16);
    /* PKCS#8 PEM round trip. */
    assert_int_equal(edge_jwt_seckey_pem(f->sk, &b), EDGE_OK);
    assert_non_null(strstr(b.data, "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEI"));
    assert_int_equal(edge_jwt_seckey_parse(b.data, b.len, sk, msg, sizeof(msg)), EDGE_OK);
    assert_memory_equal(sk, f->sk, sizeof(sk));

    /* Raw base64url seed and 64-byte key. */
    edge_buf_reset(&b);
    assert_int_equal(edge_buf_base64url(&b, f->sk, EDGE_JWT_SEED_LEN), EDGE_OK);
    assert_int_equal(edge_jwt_seckey_parse(b.data, b.len, sk, msg, sizeof(msg)), EDGE_OK);
    assert_memory_equal(sk, f->sk, sizeof(sk));
    edge_buf_reset(&b);
    assert_int_equal(edge_buf_base64url(&b, f->sk, EDGE_JWT_SK_LEN), EDGE_OK);
    assert_int_equal(edge_jwt_seckey_parse(b.data, b.len, sk, msg, sizeof(msg)), EDGE_OK);
    assert_memory_equal(sk, f->sk, sizeof(sk));

    /* 64-byte key whose public half belongs to another key. */
    uint8_t mixed[EDGE_JWT_SK_LEN];
    memcpy(mixed, f->sk, EDGE_JWT_SEED_LEN);
    memcpy(mixed + EDGE_JWT_SEED_LEN, f->pk2, EDGE_JWT_PK_LEN);
    edge_buf_reset(&b);
    assert_int_equal(edge_buf_base64url(&b, mixed, sizeof(mixed)), EDGE_OK);
    assert_int_equal(edge_jwt_seckey_parse(b.data, b.len, sk, msg, sizeof(msg)), EDGE_EINVAL);
    assert_non_null(strstr(msg, "does not match"));

    /* Public key PEM and garbage are not private keys. */
    assert_int_equal(edge_jwt_seckey_parse(rfc_pub_pem, strlen(rfc_pub_pem), sk, msg,
                                           sizeof(msg)),
                     EDGE_EINVAL);
    assert_non_null(strstr(msg, "not a PRIVATE KEY"));
    assert_int_equal(edge_jwt_seckey_parse("xyz", 3, sk, msg, sizeof(msg)), EDGE_EINVAL);

    /* RFC 8410 example: OpenSSL's PKCS#8 and SPKI encodings of one key pair. A token
     * signed with the parsed private key verifies under the public PEM. */
    assert_int_equal(edge_jwt_seckey_parse(rfc_priv_pem, strlen(rfc_priv_pem), sk, msg,
                                           sizeof(msg)),
                     EDGE_OK);
    assert_int_equal(edge_jwt_keys_parse(rfc_pub_pem, strlen(rfc_pub_pem), &k, msg, sizeof(msg)),
                     EDGE_OK);
    edge_buf_reset(&f->tok);
    assert_int_equal(edge_jwt_create(sk, EDGE_JWT_RO, 0, NOW, &f->tok), EDGE_OK);
    assert_int_equal(verify(k, f->tok.data, NOW, &acc, &code), EDGE_OK);
    assert_int_equal(acc, EDGE_JWT_RO);
    /* And we write that key back byte-for-byte as OpenSSL does. */
    edge_buf_reset(&b);
    assert_int_equal(edge_jwt_seckey_pem(sk, &b), EDGE_OK);
    assert_string_equal(b.data, rfc_priv_pem);
    edge_buf_reset(&b);
    assert_int_equal(edge_jwt_pubkey_pem(sk + EDGE_JWT_SEED_LEN, &b), EDGE_OK);
    assert_string_equal(b.data, rfc_pub_pem);
    edge_jwt_keys_free(k);

    /* From a file. */
    char path[128];
    snprintf(path, sizeof(path), "%s/k.key", f->dir);
    write_file(path, rfc_priv_pem);
    uint8_t sk2[EDGE_JWT_SK_LEN];
    assert_int_equal(edge_jwt_seckey_load(path, sk2, msg, sizeof(msg)), EDGE_OK);
    assert_memory_equal(sk, sk2, sizeof(sk));
    snprintf(path, sizeof(path), "%s/nope.key", f->dir);
    assert_int_equal(edge_jwt_seckey_load(path, sk2, msg, sizeof(msg)), EDGE_EIO);
    edge_buf_free(&b);
}

static void test_oom(void **state)
{
    struct fixture *f = *state;
    enum edge_jwt_access acc;
    const char *code;
    struct edge_jwt_keys *k = NULL;
    char msg[EDGE_ERRMSG_SIZE];
    struct edge_buf b;

    assert_int_equal(edge_jwt_create(f->sk, EDGE_JWT_RW, 0, NOW, &f->tok), EDGE_OK);
    edge_buf_init(&b, 1 << 16);
    assert_int_equal(edge_jwt_pubkey_pem(f->pk, &b), EDGE_OK);
    /* Fail the 1st, 2nd, ... allocation: every path returns ENOMEM or succeeds, with
     * no leak (ASan) and no partial result. */
    int saw_ok = 0;
    for (int i = 0; i < 40 && !saw_ok; i++) {
        edge__alloc_fault_config(i, 1);
        int rv = verify(f->keys, f->tok.data, NOW, &acc, &code);
        int rv2 = edge_jwt_keys_parse(b.data, b.len, &k, msg, sizeof(msg));
        edge__alloc_fault_config(-1, 0);
        assert_true(rv == EDGE_OK || rv == EDGE_ENOMEM);
        assert_true(rv2 == EDGE_OK || rv2 == EDGE_ENOMEM);
        if (rv == EDGE_ENOMEM) {
            assert_null(code);
        }
        if (rv2 == EDGE_OK) {
            edge_jwt_keys_free(k);
        } else {
            assert_null(k);
        }
        saw_ok = rv == EDGE_OK && rv2 == EDGE_OK;
    }
    assert_true(saw_ok);
    edge_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expiry_and_leeway, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_key_and_tampering, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alg_confusion, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_and_truncation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_claims, setup, teardown),
        cmocka_unit_test_setup_teardown(test_node_fixture, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bearer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pubkey_formats, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pubkey_bad, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seckey_formats, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oom, setup, teardown),
    };
    return cmocka_run_group_tests_name("core_jwt", tests, NULL, NULL);
}
