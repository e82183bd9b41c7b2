/* SPDX-License-Identifier: MIT */
/* TLS sessions over memory BIOs (see tls.h).
 *
 * DESIGN
 * Each session has two memory BIOs: `in` holds records received and not yet processed,
 * `out` holds records OpenSSL produced and the owner has not sent yet. OpenSSL never
 * sees a socket, so it can never block a loop or a thread and the owner keeps its own
 * reading, writing and backpressure. `in` answers "retry" when empty (not EOF): an
 * empty buffer means "more bytes may come", the owner reports the real EOF by closing.
 *
 * TLS 1.2 is the floor; renegotiation is refused (a client could otherwise make the
 * server redo handshakes on one connection); idle sessions release their record
 * buffers (SSL_MODE_RELEASE_BUFFERS), so thousands of idle connections cost little. */
#include "net/tls.h"

#include <limits.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/err.h"

struct edge_tls_ctx {
    SSL_CTX *ssl;
    bool client;
};

struct edge_tls {
    SSL *ssl;
    BIO *in, *out; /* owned by ssl */
    char err[256];
};

/* The newest error of OpenSSL's (per-thread) queue, or `fallback`. */
static void last_error(char *buf, size_t len, const char *what, const char *fallback)
{
    unsigned long e = ERR_peek_last_error();
    char reason[200];
    if (e != 0) {
        ERR_error_string_n(e, reason, sizeof(reason));
    } else {
        snprintf(reason, sizeof(reason), "%s", fallback);
    }
    snprintf(buf, len, "%s: %s", what, reason);
    ERR_clear_error();
}

static SSL_CTX *ctx_base(bool client)
{
    SSL_CTX *ssl = SSL_CTX_new(client ? TLS_client_method() : TLS_server_method());
    if (ssl == NULL) return NULL;
    if (SSL_CTX_set_min_proto_version(ssl, TLS1_2_VERSION) != 1) {
        SSL_CTX_free(ssl);
        return NULL;
    }
    SSL_CTX_set_options(ssl, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ssl, SSL_MODE_RELEASE_BUFFERS);
    return ssl;
}

int edge_tls_ctx_server_new(const char *cert_file, const char *key_file, struct edge_tls_ctx **out, char *err,
                            size_t err_len)
{
    int rv = EDGE_EIO;
    ERR_clear_error();
    struct edge_tls_ctx *c = edge_calloc(1, sizeof(*c));
    if (c == NULL) return EDGE_ENOMEM;
    c->ssl = ctx_base(false);
    if (c->ssl == NULL) {
        last_error(err, err_len, "TLS", "cannot create a context");
        goto out;
    }
    if (SSL_CTX_use_certificate_chain_file(c->ssl, cert_file) != 1) {
        char what[300];
        snprintf(what, sizeof(what), "TLS certificate %s", cert_file);
        last_error(err, err_len, what, "cannot be read");
        goto out;
    }
    if (SSL_CTX_use_PrivateKey_file(c->ssl, key_file, SSL_FILETYPE_PEM) != 1) {
        char what[300];
        snprintf(what, sizeof(what), "TLS key %s", key_file);
        last_error(err, err_len, what, "cannot be read");
        goto out;
    }
    if (SSL_CTX_check_private_key(c->ssl) != 1) {
        char what[600];
        snprintf(what, sizeof(what), "TLS key %s does not match certificate %s", key_file, cert_file);
        last_error(err, err_len, what, "mismatch");
        rv = EDGE_EINVAL;
        goto out;
    }
    *out = c;
    return EDGE_OK;
out:
    edge_tls_ctx_free(c);
    return rv;
}

int edge_tls_ctx_client_new(const char *ca_file, struct edge_tls_ctx **out, char *err, size_t err_len)
{
    ERR_clear_error();
    struct edge_tls_ctx *c = edge_calloc(1, sizeof(*c));
    if (c == NULL) return EDGE_ENOMEM;
    c->client = true;
    c->ssl = ctx_base(true);
    if (c->ssl == NULL) {
        last_error(err, err_len, "TLS", "cannot create a context");
        goto fail;
    }
    SSL_CTX_set_verify(c->ssl, SSL_VERIFY_PEER, NULL);
    int ok = ca_file != NULL ? SSL_CTX_load_verify_locations(c->ssl, ca_file, NULL)
                             : SSL_CTX_set_default_verify_paths(c->ssl);
    if (ok != 1) {
        char what[300];
        snprintf(what, sizeof(what), "TLS CA file %s", ca_file != NULL ? ca_file : "(system default)");
        last_error(err, err_len, what, "cannot be read");
        goto fail;
    }
    *out = c;
    return EDGE_OK;
fail:
    edge_tls_ctx_free(c);
    return EDGE_EIO;
}

int edge_tls_ctx_set_cert(struct edge_tls_ctx *ctx, const char *cert_file, const char *key_file, char *err,
                          size_t err_len)
{
    char what[600];
    ERR_clear_error();
    if (SSL_CTX_use_certificate_chain_file(ctx->ssl, cert_file) != 1) {
        snprintf(what, sizeof(what), "TLS certificate %s", cert_file);
        last_error(err, err_len, what, "cannot be read");
        return EDGE_EIO;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx->ssl, key_file, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx->ssl) != 1) {
        snprintf(what, sizeof(what), "TLS key %s (of certificate %s)", key_file, cert_file);
        last_error(err, err_len, what, "cannot be used");
        return EDGE_EINVAL;
    }
    return EDGE_OK;
}

int edge_tls_ctx_verify_clients(struct edge_tls_ctx *ctx, const char *ca_file, char *err, size_t err_len)
{
    ERR_clear_error();
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca_file);
    if (SSL_CTX_load_verify_locations(ctx->ssl, ca_file, NULL) != 1 || names == NULL) {
        sk_X509_NAME_pop_free(names, X509_NAME_free);
        char what[300];
        snprintf(what, sizeof(what), "TLS CA file %s", ca_file);
        last_error(err, err_len, what, "cannot be read");
        return EDGE_EIO;
    }
    SSL_CTX_set_client_CA_list(ctx->ssl, names); /* takes names */
    /* Ask, do not require: applications' clients have no certificate. */
    SSL_CTX_set_verify(ctx->ssl, SSL_VERIFY_PEER, NULL);
    return EDGE_OK;
}

bool edge_tls_peer_verified(const struct edge_tls *t)
{
    X509 *peer = SSL_get0_peer_certificate(t->ssl);
    return peer != NULL && SSL_get_verify_result(t->ssl) == X509_V_OK;
}

bool edge_tls_peer_names(const struct edge_tls *t, const char *name, bool dns_only)
{
    X509 *peer = edge_tls_peer_verified(t) ? SSL_get0_peer_certificate(t->ssl) : NULL;
    if (peer == NULL || name == NULL || name[0] == '\0') return false;
    if (!dns_only && X509_check_ip_asc(peer, name, 0) == 1) return true;
    /* SANs only (no fall-back to the subject's CN), no partial wildcards */
    return X509_check_host(peer, name, strlen(name),
                           X509_CHECK_FLAG_NEVER_CHECK_SUBJECT | X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS, NULL) == 1;
}

void edge_tls_ctx_free(struct edge_tls_ctx *ctx)
{
    if (ctx == NULL) return;
    SSL_CTX_free(ctx->ssl); /* sessions hold their own reference (SSL_new) */
    edge_free(ctx);
}

int edge_tls_new(struct edge_tls_ctx *ctx, const char *peer_name, struct edge_tls **out)
{
    if (ctx->client != (peer_name != NULL)) return EDGE_EINVAL;
    int rv = EDGE_ENOMEM;
    struct edge_tls *t = edge_calloc(1, sizeof(*t));
    if (t == NULL) return EDGE_ENOMEM;
    t->ssl = SSL_new(ctx->ssl);
    t->in = BIO_new(BIO_s_mem());
    t->out = BIO_new(BIO_s_mem());
    if (t->ssl == NULL || t->in == NULL || t->out == NULL) {
        BIO_free(t->in);
        BIO_free(t->out);
        SSL_free(t->ssl);
        edge_free(t);
        return EDGE_ENOMEM;
    }
    BIO_set_mem_eof_return(t->in, -1); /* empty is "later", not EOF */
    SSL_set_bio(t->ssl, t->in, t->out);
    if (ctx->client) {
        /* An address literal is checked against the IP SANs; a name against the DNS
         * names, and sent as SNI (never an address: RFC 6066 section 3). */
        X509_VERIFY_PARAM *param = SSL_get0_param(t->ssl);
        if (X509_VERIFY_PARAM_set1_ip_asc(param, peer_name) != 1) {
            if (SSL_set1_host(t->ssl, peer_name) != 1 || SSL_set_tlsext_host_name(t->ssl, peer_name) != 1) {
                rv = EDGE_EINVAL;
                goto fail;
            }
        }
        SSL_set_connect_state(t->ssl);
    } else {
        SSL_set_accept_state(t->ssl);
    }
    *out = t;
    return EDGE_OK;
fail:
    edge_tls_free(t);
    return rv;
}

void edge_tls_free(struct edge_tls *t)
{
    if (t == NULL) return;
    SSL_free(t->ssl); /* frees both BIOs */
    edge_free(t);
}

int edge_tls_feed(struct edge_tls *t, const void *data, size_t len)
{
    while (len > 0) {
        int n = len > INT_MAX ? INT_MAX : (int)len;
        int w = BIO_write(t->in, data, n);
        if (w <= 0) return EDGE_ENOMEM;
        data = (const char *)data + w;
        len -= (size_t)w;
    }
    return EDGE_OK;
}

/* What an SSL_* call that returned r <= 0 means. */
static int fail_of(struct edge_tls *t, int r, const char *what)
{
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        ERR_clear_error();
        return EDGE_EAGAIN;
    }
    if (e == SSL_ERROR_ZERO_RETURN) {
        ERR_clear_error();
        return EDGE_ECLOSED;
    }
    long v = SSL_get_verify_result(t->ssl);
    if (v != X509_V_OK) {
        snprintf(t->err, sizeof(t->err), "%s: certificate verify failed: %s", what, X509_verify_cert_error_string(v));
        ERR_clear_error();
    } else {
        last_error(t->err, sizeof(t->err), what, e == SSL_ERROR_SYSCALL ? "unexpected end of input" : "TLS error");
    }
    return EDGE_EPROTO;
}

int edge_tls_handshake(struct edge_tls *t)
{
    if (SSL_is_init_finished(t->ssl)) return EDGE_OK;
    ERR_clear_error();
    int r = SSL_do_handshake(t->ssl);
    if (r == 1) return EDGE_OK;
    int rv = fail_of(t, r, "TLS handshake");
    return rv == EDGE_ECLOSED ? EDGE_EPROTO : rv;
}

bool edge_tls_established(const struct edge_tls *t) { return SSL_is_init_finished(t->ssl); }

int edge_tls_read(struct edge_tls *t, void *buf, size_t cap, size_t *got)
{
    *got = 0;
    ERR_clear_error();
    int r = SSL_read(t->ssl, buf, cap > INT_MAX ? INT_MAX : (int)cap);
    if (r > 0) {
        *got = (size_t)r;
        return EDGE_OK;
    }
    int rv = fail_of(t, r, SSL_is_init_finished(t->ssl) ? "TLS" : "TLS handshake");
    return rv == EDGE_EAGAIN ? EDGE_OK : rv;
}

int edge_tls_write(struct edge_tls *t, const void *data, size_t len)
{
    ERR_clear_error();
    while (len > 0) {
        int n = len > (1u << 20) ? 1 << 20 : (int)len;
        int r = SSL_write(t->ssl, data, n);
        if (r <= 0) {
            /* The output BIO grows as needed, so even a "retry" means the session cannot
             * send (closed, failed, or the handshake not done: a caller's bug). */
            (void)fail_of(t, r, "TLS write");
            return EDGE_EPROTO;
        }
        data = (const char *)data + r;
        len -= (size_t)r;
    }
    return EDGE_OK;
}

void edge_tls_shutdown(struct edge_tls *t)
{
    ERR_clear_error();
    if (SSL_is_init_finished(t->ssl)) (void)SSL_shutdown(t->ssl);
    ERR_clear_error();
}

size_t edge_tls_out_pending(const struct edge_tls *t) { return BIO_ctrl_pending(t->out); }

size_t edge_tls_out_take(struct edge_tls *t, void *buf, size_t cap)
{
    int n = BIO_read(t->out, buf, cap > INT_MAX ? INT_MAX : (int)cap);
    return n > 0 ? (size_t)n : 0;
}

const char *edge_tls_error(const struct edge_tls *t) { return t->err[0] != '\0' ? t->err : "TLS error"; }
