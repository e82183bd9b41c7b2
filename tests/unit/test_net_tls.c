/* SPDX-License-Identifier: MIT */
/* TLS sessions over memory buffers (src/net/tls.c), a client and a server pumped
 * against each other in memory: the handshake and data both ways (a large write too),
 * close_notify, a certificate of another CA, a certificate for another address, a key
 * that does not match, input that is not TLS (plain HTTP, garbage), and client
 * certificates (none, the CA's, another CA's). The CA and the
 * certificates are made here with OpenSSL into a temporary directory. Every pump is a
 * bounded number of passes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "core/err.h"
#include "net/tls.h"

static char dir[64];
static char path_ca[128], path_ca2[128], path_srv[128], path_srv_key[128], path_other[128], path_other_key[128];

static void add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    assert_non_null(e);
    X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
}

/* A certificate for key, signed by (issuer, issuer_key), or self-signed when issuer is NULL. */
static X509 *make_cert(EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key, const char *cn, const char *san)
{
    static long serial = 1;
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, key);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(issuer != NULL ? issuer : x));
    add_ext(x, issuer != NULL ? issuer : x, NID_basic_constraints, issuer == NULL ? "critical,CA:TRUE" : "CA:FALSE");
    if (issuer == NULL) add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign");
    if (san != NULL) add_ext(x, issuer, NID_subject_alt_name, san);
    assert_true(X509_sign(x, issuer_key != NULL ? issuer_key : key, EVP_sha256()) > 0);
    return x;
}

static void write_cert(const char *path, X509 *x)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_X509(f, x), 1);
    fclose(f);
}

static void write_key(const char *path, EVP_PKEY *k)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL), 1);
    fclose(f);
}

static int setup_all(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/edgelite-tls-unit-XXXXXX");
    if (mkdtemp(dir) == NULL) return -1;
    snprintf(path_ca, sizeof(path_ca), "%s/ca.crt", dir);
    snprintf(path_ca2, sizeof(path_ca2), "%s/ca2.crt", dir);
    snprintf(path_srv, sizeof(path_srv), "%s/srv.crt", dir);
    snprintf(path_srv_key, sizeof(path_srv_key), "%s/srv.key", dir);
    snprintf(path_other, sizeof(path_other), "%s/other.crt", dir);
    snprintf(path_other_key, sizeof(path_other_key), "%s/other.key", dir);
    EVP_PKEY *ca_key = EVP_EC_gen("P-256"), *ca2_key = EVP_EC_gen("P-256");
    EVP_PKEY *srv_key = EVP_EC_gen("P-256"), *other_key = EVP_EC_gen("P-256");
    X509 *ca = make_cert(ca_key, NULL, NULL, "test CA", NULL);
    X509 *ca2 = make_cert(ca2_key, NULL, NULL, "other CA", NULL);
    X509 *srv = make_cert(srv_key, ca, ca_key, "127.0.0.1", "IP:127.0.0.1,DNS:node.test");
    X509 *other = make_cert(other_key, ca2, ca2_key, "127.0.0.1", "IP:127.0.0.1");
    write_cert(path_ca, ca);
    write_cert(path_ca2, ca2);
    write_cert(path_srv, srv);
    write_key(path_srv_key, srv_key);
    write_cert(path_other, other);
    write_key(path_other_key, other_key);
    X509_free(ca);
    X509_free(ca2);
    X509_free(srv);
    X509_free(other);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(ca2_key);
    EVP_PKEY_free(srv_key);
    EVP_PKEY_free(other_key);
    return 0;
}

static int teardown_all(void **state)
{
    (void)state;
    const char *files[] = {path_ca, path_ca2, path_srv, path_srv_key, path_other, path_other_key};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) unlink(files[i]);
    rmdir(dir);
    return 0;
}

/* Move every pending byte from a to b. */
static void move(struct edge_tls *a, struct edge_tls *b)
{
    char buf[16384];
    for (int i = 0; i < 10000; i++) {
        size_t n = edge_tls_out_take(a, buf, sizeof(buf));
        if (n == 0) return;
        assert_int_equal(edge_tls_feed(b, buf, n), EDGE_OK);
    }
    fail_msg("output never ran dry");
}

/* Run both handshakes; the client's result. The server's goes to *srv_rv. */
static int handshake(struct edge_tls *c, struct edge_tls *s, int *srv_rv)
{
    int crv = EDGE_EAGAIN, srv = EDGE_EAGAIN;
    for (int pass = 0; pass < 20 && (crv == EDGE_EAGAIN || srv == EDGE_EAGAIN); pass++) {
        if (crv == EDGE_EAGAIN) crv = edge_tls_handshake(c);
        move(c, s);
        if (srv == EDGE_EAGAIN) srv = edge_tls_handshake(s);
        move(s, c);
        if (crv == EDGE_EPROTO || srv == EDGE_EPROTO) break;
    }
    if (crv == EDGE_EAGAIN) crv = edge_tls_handshake(c);
    *srv_rv = srv;
    return crv;
}

/* Read all the decrypted bytes of t into out (cap), after feeding. */
static size_t read_all(struct edge_tls *t, char *out, size_t cap)
{
    size_t have = 0;
    for (int i = 0; i < 100000; i++) {
        size_t got = 0;
        assert_int_equal(edge_tls_read(t, out + have, cap - have, &got), EDGE_OK);
        if (got == 0) return have;
        have += got;
    }
    fail_msg("read never ended");
    return have;
}

struct pair {
    struct edge_tls_ctx *sctx, *cctx;
    struct edge_tls *s, *c;
};

static void pair_open(struct pair *p, const char *cert, const char *key, const char *ca, const char *name)
{
    char err[512];
    memset(p, 0, sizeof(*p));
    assert_int_equal(edge_tls_ctx_server_new(cert, key, &p->sctx, err, sizeof(err)), EDGE_OK);
    assert_int_equal(edge_tls_ctx_client_new(ca, &p->cctx, err, sizeof(err)), EDGE_OK);
    assert_int_equal(edge_tls_new(p->sctx, NULL, &p->s), EDGE_OK);
    assert_int_equal(edge_tls_new(p->cctx, name, &p->c), EDGE_OK);
    /* Sessions keep their context alive: free the contexts at once. */
    edge_tls_ctx_free(p->sctx);
    edge_tls_ctx_free(p->cctx);
}

static void pair_close(struct pair *p)
{
    edge_tls_free(p->s);
    edge_tls_free(p->c);
}

static void test_round_trip(void **state)
{
    (void)state;
    struct pair p;
    pair_open(&p, path_srv, path_srv_key, path_ca, "127.0.0.1");
    int srv;
    assert_int_equal(handshake(p.c, p.s, &srv), EDGE_OK);
    assert_int_equal(srv, EDGE_OK);
    assert_true(edge_tls_established(p.c) && edge_tls_established(p.s));
    /* client -> server */
    const char *req = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_int_equal(edge_tls_write(p.c, req, strlen(req)), EDGE_OK);
    move(p.c, p.s);
    char buf[4096];
    size_t n = read_all(p.s, buf, sizeof(buf));
    assert_int_equal(n, strlen(req));
    assert_memory_equal(buf, req, n);
    /* server -> client, 1 MiB in many records */
    size_t big = (size_t)1 << 20;
    char *out = malloc(big), *in = malloc(big);
    for (size_t i = 0; i < big; i++) out[i] = (char)(i * 31 + 7);
    assert_int_equal(edge_tls_write(p.s, out, big), EDGE_OK);
    assert_true(edge_tls_out_pending(p.s) > big);
    move(p.s, p.c);
    assert_int_equal(read_all(p.c, in, big), big);
    assert_memory_equal(in, out, big);
    free(out);
    free(in);
    /* close_notify */
    edge_tls_shutdown(p.c);
    move(p.c, p.s);
    size_t got = 1;
    assert_int_equal(edge_tls_read(p.s, buf, sizeof(buf), &got), EDGE_ECLOSED);
    assert_int_equal(got, 0);
    pair_close(&p);
}

static void test_dns_name(void **state)
{
    (void)state;
    struct pair p;
    pair_open(&p, path_srv, path_srv_key, path_ca, "node.test");
    int srv;
    assert_int_equal(handshake(p.c, p.s, &srv), EDGE_OK);
    pair_close(&p);
}

static void test_other_ca_refused(void **state)
{
    (void)state;
    struct pair p;
    pair_open(&p, path_other, path_other_key, path_ca, "127.0.0.1");
    int srv;
    assert_int_equal(handshake(p.c, p.s, &srv), EDGE_EPROTO);
    assert_non_null(strstr(edge_tls_error(p.c), "certificate verify failed"));
    assert_false(edge_tls_established(p.c));
    assert_int_equal(edge_tls_write(p.c, "x", 1), EDGE_EPROTO);
    pair_close(&p);
}

static void test_wrong_name_refused(void **state)
{
    (void)state;
    const char *names[] = {"127.0.0.2", "other.test", "::1"};
    for (size_t i = 0; i < 3; i++) {
        struct pair p;
        pair_open(&p, path_srv, path_srv_key, path_ca, names[i]);
        int srv;
        assert_int_equal(handshake(p.c, p.s, &srv), EDGE_EPROTO);
        assert_non_null(strstr(edge_tls_error(p.c), "certificate verify failed"));
        pair_close(&p);
    }
}

static void test_not_tls(void **state)
{
    (void)state;
    const char *inputs[] = {"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "\x16\x03\x01\xff\xffgarbage garbage garbage",
                            "\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c"};
    for (size_t i = 0; i < 3; i++) {
        char err[512];
        struct edge_tls_ctx *ctx;
        struct edge_tls *s;
        assert_int_equal(edge_tls_ctx_server_new(path_srv, path_srv_key, &ctx, err, sizeof(err)), EDGE_OK);
        assert_int_equal(edge_tls_new(ctx, NULL, &s), EDGE_OK);
        assert_int_equal(edge_tls_feed(s, inputs[i], strlen(inputs[i])), EDGE_OK);
        char buf[256];
        size_t got = 0;
        int rv = edge_tls_read(s, buf, sizeof(buf), &got);
        if (i == 1 && rv == EDGE_OK) {
            /* a record header announcing 65535 bytes: waits for them (the server's handshake
             * deadline ends it), or is refused at once as oversized */
            assert_int_equal(got, 0);
        } else {
            assert_int_equal(rv, EDGE_EPROTO);
            assert_true(strlen(edge_tls_error(s)) > 0);
        }
        assert_int_equal(got, 0);
        edge_tls_free(s);
        edge_tls_ctx_free(ctx);
    }
}

/* Client certificates: asked for, verified when sent, refused when another CA signed them. */
static void test_client_cert(void **state)
{
    (void)state;
    const char *certs[] = {NULL, path_srv, path_other};
    const char *keys[] = {NULL, path_srv_key, path_other_key};
    for (int i = 0; i < 3; i++) {
        struct pair p;
        char err[512];
        memset(&p, 0, sizeof(p));
        struct edge_tls_ctx *sctx, *cctx;
        assert_int_equal(edge_tls_ctx_server_new(path_srv, path_srv_key, &sctx, err, sizeof(err)), EDGE_OK);
        assert_int_equal(edge_tls_ctx_verify_clients(sctx, path_ca, err, sizeof(err)), EDGE_OK);
        assert_int_equal(edge_tls_ctx_client_new(path_ca, &cctx, err, sizeof(err)), EDGE_OK);
        if (certs[i] != NULL) assert_int_equal(edge_tls_ctx_set_cert(cctx, certs[i], keys[i], err, sizeof(err)), EDGE_OK);
        assert_int_equal(edge_tls_new(sctx, NULL, &p.s), EDGE_OK);
        assert_int_equal(edge_tls_new(cctx, "127.0.0.1", &p.c), EDGE_OK);
        edge_tls_ctx_free(sctx);
        edge_tls_ctx_free(cctx);
        int srv;
        int crv = handshake(p.c, p.s, &srv);
        if (i < 2) {
            assert_int_equal(crv, EDGE_OK);
            assert_int_equal(srv, EDGE_OK);
            assert_int_equal(edge_tls_peer_verified(p.s), i == 1);
            assert_true(edge_tls_peer_verified(p.c));
        } else {
            assert_int_equal(srv, EDGE_EPROTO); /* the server refuses the other CA's certificate */
            assert_false(edge_tls_peer_verified(p.s));
        }
        pair_close(&p);
    }
}

static void test_bad_files(void **state)
{
    (void)state;
    char err[512] = "";
    struct edge_tls_ctx *ctx = NULL;
    assert_int_not_equal(edge_tls_ctx_server_new(path_srv, path_other_key, &ctx, err, sizeof(err)), EDGE_OK);
    assert_non_null(strstr(err, "other.key"));
    assert_int_not_equal(edge_tls_ctx_server_new("/nonexistent.crt", path_srv_key, &ctx, err, sizeof(err)), EDGE_OK);
    assert_non_null(strstr(err, "/nonexistent.crt"));
    assert_int_not_equal(edge_tls_ctx_client_new("/nonexistent-ca.crt", &ctx, err, sizeof(err)), EDGE_OK);
    assert_non_null(strstr(err, "/nonexistent-ca.crt"));
    /* a client session needs a name, a server session none */
    assert_int_equal(edge_tls_ctx_server_new(path_srv, path_srv_key, &ctx, err, sizeof(err)), EDGE_OK);
    struct edge_tls *t = NULL;
    assert_int_equal(edge_tls_new(ctx, "127.0.0.1", &t), EDGE_EINVAL);
    edge_tls_ctx_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),        cmocka_unit_test(test_dns_name),
        cmocka_unit_test(test_other_ca_refused),  cmocka_unit_test(test_wrong_name_refused),
        cmocka_unit_test(test_not_tls),           cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_client_cert),
    };
    return cmocka_run_group_tests(tests, setup_all, teardown_all);
}
