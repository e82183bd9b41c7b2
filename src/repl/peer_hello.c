/* SPDX-License-Identifier: MIT */
/* The outbound link's handshake (repl/peer_int.h): the server's CHALLENGE, our HELLO
 * (protocol version, cluster, regions, our log's VV, a fresh nonce and the MAC over the
 * challenge), the HELLO_OK that must prove the secret over our nonce before anything of
 * it is believed, and the session key every later frame is sealed with. It is serial,
 * so it sleeps the emulated WAN delay instead of queueing like the push loop. */
#include "repl/peer_int.h"

#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "core/log.h"
#include "edgelite/errors.h"
#include "repl/batch.h"
#include "repl/proto.h"

#define IO_TIMEOUT_MS 10000

/* Send the protocol message in p->out as one binary frame after sleeping the emulated
 * delay: only for the serial handshake, where nothing could overlap anyway. */
static int send_now(struct edge_peer *p)
{
    int rv = edge_wsc_sleep(&p->ws, p->one_way_delay_ms);
    if (rv == EDGE_OK) {
        rv = edge_wsc_send(&p->ws, 0x2, (const uint8_t *)p->out.data, p->out.len);
    }
    return rv;
}

/* Handshake only: next whole message into p->ws.msg, waiting until deadline (*out_have
 * false on timeout), then sleeping the emulated receive delay. */
static int next_msg(struct edge_peer *p, uint64_t deadline, bool *out_have)
{
    *out_have = false;
    for (int i = 0; i < 1000000; i++) {
        int rv = edge_wsc_parse(&p->ws, out_have);
        if (rv != EDGE_OK) {
            return rv;
        }
        if (*out_have) {
            return edge_wsc_sleep(&p->ws, p->one_way_delay_ms);
        }
        uint64_t now = edge__peer_now_ms();
        if (now >= deadline) {
            return EDGE_OK;
        }
        rv = edge_wsc_recv(&p->ws, (int)(deadline - now));
        if (rv != EDGE_OK) {
            return rv;
        }
    }
    return EDGE_OK;
}

int edge__peer_error(struct edge_peer *p, const uint8_t *m, size_t len)
{
    struct edge_repl_error er;
    if (edge_repl_decode_error(m, len, &er) != EDGE_OK) {
        edge__peer_set_err(p, "protocol: malformed ERROR");
        return EDGE_EPROTO;
    }
    /* A node of protocol 2 cannot parse a protocol 3 HELLO and says so this way. */
    bool old = !p->sealed && strcmp(er.code, "PROTOCOL") == 0 && strcmp(er.message, "malformed HELLO") == 0;
    edge__peer_set_err(p, "peer error %s: %s%s", er.code, er.message,
            old ? " (an older node? this one speaks peer protocol " EDGE_REPL_PROTO_VERSION_STR ")" : "");
    if (strcmp(er.code, "AUTH") != 0) return EDGE_EPROTO;
    pthread_mutex_lock(&p->mu);
    p->st.auth_failures++;
    pthread_mutex_unlock(&p->mu);
    return EDGE_EAUTH;
}

static int expect(struct edge_peer *p, int want, const char *what)
{
    bool have = false;
    int type = 0;
    int rv = next_msg(p, edge__peer_now_ms() + IO_TIMEOUT_MS, &have);
    if (rv != EDGE_OK) {
        return rv;
    }
    if (!have) {
        edge__peer_set_err(p, "timed out waiting for %s", what);
        return EDGE_ETIMEDOUT;
    }
    if (edge_repl_msg_type((const uint8_t *)p->ws.msg.data, p->ws.msg.len, &type) != EDGE_OK) {
        edge__peer_set_err(p, "protocol: bad message type while waiting for %s", what);
        return EDGE_EPROTO;
    }
    if (type == EDGE_REPL_MSG_ERROR) {
        return edge__peer_error(p, (const uint8_t *)p->ws.msg.data, p->ws.msg.len);
    }
    if (type != want) {
        edge__peer_set_err(p, "protocol: got type %d while waiting for %s", type, what);
        return EDGE_EPROTO;
    }
    return EDGE_OK;
}

int edge__peer_hello(struct edge_peer *p)
{
    uint8_t nonce[EDGE_REPL_NONCE_LEN];
    struct edge_repl_hello h;
    struct edge_repl_hello_ok ok;
    memset(&h, 0, sizeof(h));
    edge_vclock_init(&h.vv);
    p->state = ST_CHALLENGE;
    int rv = expect(p, EDGE_REPL_MSG_CHALLENGE, "CHALLENGE");
    if (rv != EDGE_OK) {
        goto out;
    }
    if (edge_repl_decode_challenge((const uint8_t *)p->ws.msg.data, p->ws.msg.len, nonce) != EDGE_OK) {
        edge__peer_set_err(p, "protocol: malformed CHALLENGE");
        rv = EDGE_EPROTO;
        goto out;
    }
    h.version = EDGE_REPL_PROTO_VERSION;
    snprintf(h.cluster, sizeof(h.cluster), "%s", p->cluster);
    snprintf(h.region, sizeof(h.region), "%s", p->local_region);
    snprintf(h.to_region, sizeof(h.to_region), "%s", p->peer_region);
    randombytes_buf(h.nonce, sizeof(h.nonce)); /* the server proves the secret against this */
    rv = edge_repl_log_vv(p->db, &h.vv, p->err, sizeof(p->err));
    if (rv == EDGE_OK) {
        rv = edge_repl_hello_mac(p->secret, nonce, &h, h.mac);
    }
    if (rv == EDGE_OK) {
        edge_buf_reset(&p->out);
        rv = edge_repl_encode_hello(&p->out, &h);
    }
    if (rv == EDGE_OK) {
        p->state = ST_HELLO;
        rv = send_now(p);
    }
    if (rv == EDGE_OK) {
        rv = expect(p, EDGE_REPL_MSG_HELLO_OK, "HELLO_OK");
    }
    if (rv != EDGE_OK) {
        goto out;
    }
    if (edge_repl_decode_hello_ok((const uint8_t *)p->ws.msg.data, p->ws.msg.len, &ok) != EDGE_OK) {
        edge__peer_set_err(p, "protocol: malformed HELLO_OK");
        rv = EDGE_EPROTO;
        goto out;
    }
    /* Before anything of it is believed: a server without the secret cannot make this MAC
     * over our fresh nonce, so nothing is pushed to it. */
    if (edge_repl_hello_ok_verify(&ok, p->secret, nonce, &h) != EDGE_OK) {
        edge__peer_set_err(p, "AUTH: the peer did not prove the cluster secret (HELLO_OK MAC)");
        pthread_mutex_lock(&p->mu);
        p->st.auth_failures++;
        pthread_mutex_unlock(&p->mu);
        edge_vclock_close(&ok.vv);
        rv = EDGE_EAUTH;
        goto out;
    }
    if (strcmp(ok.region, p->peer_region) != 0) {
        edge__peer_set_err(p, "peer is region %s, expected %s", ok.region, p->peer_region);
        edge_vclock_close(&ok.vv);
        rv = EDGE_ECONFIG;
        goto out;
    }
    rv = edge_repl_seal_init(&p->seal, p->secret, nonce, &h, p->peer_region, true);
    if (rv != EDGE_OK) {
        edge__peer_set_err(p, "cannot derive the session key");
        edge_vclock_close(&ok.vv);
        goto out;
    }
    p->sealed = true;
    edge_vclock_close(&p->peer_vv);
    p->peer_vv = ok.vv;
    /* Whatever was on the wire before is lost or answered: start from the peer's word. */
    rv = edge_vclock_copy(&p->sent, &p->peer_vv);
    if (rv == EDGE_OK) {
        rv = edge_vclock_copy(&p->progress, &p->peer_vv);
    }
    if (rv != EDGE_OK) {
        edge__peer_set_err(p, "HELLO_OK: %s", edge_strerror(rv));
        goto out;
    }
    p->state = ST_READY;
    bool t = true;
    edge__peer_publish(p, edge__peer_pub_acked, p);
    edge__peer_publish(p, edge__peer_pub_connected, &t);
out:
    sodium_memzero(nonce, sizeof(nonce));
    edge_repl_hello_close(&h);
    return rv;
}
