/* SPDX-License-Identifier: MIT */
/* Caller's side of the HTTP challenge-response between regions (see http_auth.h). */
#include "repl/http_auth.h"

#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "core/clock.h"
#include "edgelite/errors.h"
#include "repl/proto.h"

/* GET /v1/cluster/challenge?cnonce=HEX and check the peer's proof: a->nonce on success. */
static int ask_challenge(const struct edge_conf *conf, const char *peer_id, const struct edge_httpc_url *u,
                         struct edge_repl_http_auth *a, int timeout_ms, char *err, size_t errlen)
{
    char path[128], nc[65];
    edge_repl_hex32(a->cnonce, nc);
    snprintf(path, sizeof(path), "/v1/cluster/challenge?cnonce=%s", nc);
    struct edge_httpc_resp resp;
    int rv = edge_httpc_request_ex(u, "GET", path, NULL, NULL, NULL, 0, timeout_ms, 4096, &resp);
    if (rv != EDGE_OK || resp.status != 200) {
        snprintf(err, errlen, "challenge: %s", rv != EDGE_OK ? edge_strerror(rv) : "not a 200 answer");
        if (rv == EDGE_OK) rv = EDGE_EPROTO;
        edge_httpc_resp_free(&resp);
        return rv;
    }
    json_t *doc = json_loadb(resp.body.data ? resp.body.data : "", resp.body.len, 0, NULL);
    const char *region = json_string_value(json_object_get(doc, "region"));
    const char *ns = json_string_value(json_object_get(doc, "nonce"));
    const char *pr = json_string_value(json_object_get(doc, "proof"));
    uint8_t proof[EDGE_REPL_MAC_LEN], want[EDGE_REPL_MAC_LEN];
    rv = EDGE_EAUTH;
    if (region == NULL || strcmp(region, peer_id) != 0 || ns == NULL || pr == NULL ||
        edge_repl_unhex32(ns, strlen(ns), a->nonce) != EDGE_OK || edge_repl_unhex32(pr, strlen(pr), proof) != EDGE_OK) {
        snprintf(err, errlen, "challenge: not the answer of region %s", peer_id);
    } else if (edge_repl_http_proof(conf->cluster_secret, a->cnonce, a->nonce, conf->cluster_name, peer_id, want) !=
                   EDGE_OK ||
               sodium_memcmp(want, proof, EDGE_REPL_MAC_LEN) != 0) {
        snprintf(err, errlen, "challenge: %s did not prove the cluster secret", peer_id);
    } else {
        rv = EDGE_OK;
    }
    sodium_memzero(want, sizeof(want));
    json_decref(doc);
    edge_httpc_resp_free(&resp);
    return rv;
}

int edge_repl_http_auth_header(const struct edge_conf *conf, const char *region, const char *peer_id,
                               const struct edge_httpc_url *u, const char *method, const char *path,
                               int timeout_ms, char *out, size_t cap, char *err, size_t errlen)
{
    struct edge_repl_http_auth a;
    char value[320];
    if (conf == NULL || conf->cluster_secret == NULL || sodium_init() < 0 ||
        strlen(region) >= sizeof(a.region)) {
        snprintf(err, errlen, "no cluster secret");
        return EDGE_EINVAL;
    }
    memset(&a, 0, sizeof(a));
    snprintf(a.region, sizeof(a.region), "%s", region);
    randombytes_buf(a.cnonce, sizeof(a.cnonce));
    int rv = ask_challenge(conf, peer_id, u, &a, timeout_ms, err, errlen);
    if (rv == EDGE_OK) rv = edge_repl_http_mac(conf->cluster_secret, &a, conf->cluster_name, method, path, a.mac);
    if (rv == EDGE_OK) rv = edge_repl_http_auth_format(&a, value, sizeof(value));
    if (rv == EDGE_OK) {
        int n = snprintf(out, cap, "%s: %s\r\n", EDGE_REPL_HTTP_AUTH_HEADER, value);
        rv = n > 0 && (size_t)n < cap ? EDGE_OK : EDGE_EINVAL;
    }
    sodium_memzero(&a, sizeof(a));
    return rv;
}

int edge_repl_http_sig_header(const struct edge_conf *conf, const char *region, const char *to, const char *method,
                              const char *target, const void *body, size_t len, char *out, size_t cap)
{
    struct edge_repl_http_sig s;
    char path[EDGE_REPL_STR_MAX + 1], value[320];
    const char *q = strchr(target, '?');
    size_t plen = q != NULL ? (size_t)(q - target) : strlen(target);
    if (conf == NULL || conf->cluster_secret == NULL || sodium_init() < 0 || strlen(region) >= sizeof(s.region) ||
        plen >= sizeof(path)) {
        return EDGE_EINVAL;
    }
    memcpy(path, target, plen);
    path[plen] = '\0';
    memset(&s, 0, sizeof(s));
    snprintf(s.region, sizeof(s.region), "%s", region);
    s.ts_ms = (int64_t)edge_wall_ms(); /* compared with the callee's clock: wall time, not monotonic */
    randombytes_buf(s.nonce, sizeof(s.nonce));
    int rv = edge_repl_http_sig_mac(conf->cluster_secret, conf->cluster_name, &s, to, method, path,
                                    q != NULL ? q + 1 : NULL, body, len, s.mac);
    if (rv == EDGE_OK) rv = edge_repl_http_sig_format(&s, value, sizeof(value));
    if (rv == EDGE_OK) {
        int n = snprintf(out, cap, "%s: %s\r\n", EDGE_REPL_HTTP_SIG_HEADER, value);
        rv = n > 0 && (size_t)n < cap ? EDGE_OK : EDGE_EINVAL;
    }
    sodium_memzero(&s, sizeof(s));
    return rv;
}
