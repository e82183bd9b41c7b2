/* SPDX-License-Identifier: MIT */
/* The caller's side of the challenge-response for HTTP requests between regions
 * (repl/proto.h, "HTTP requests between regions"): ask a peer for a nonce, check that the
 * peer proved the secret, and build the X-Edge-Cluster-Auth header for one request. Used
 * by seeding (GET /v1/snapshot) and the start-up check of the peers (GET /v1/status),
 * both blocking, before the node serves; and the signature of requests that cannot wait
 * for a challenge. */
#ifndef EDGE_REPL_HTTP_AUTH_H
#define EDGE_REPL_HTTP_AUTH_H

#include <stddef.h>

#include "core/conf.h"
#include "net/httpc.h"

/* Into out[cap] (at least 400 bytes): "X-Edge-Cluster-Auth: ...\r\n" for method and path at
 * the peer peer_id behind u, as region `region` of conf's cluster. EDGE_OK; EDGE_EAUTH when
 * the peer's answer does not prove the secret (another cluster, or not a region at all);
 * another code when it cannot be asked (err says why). Blocking, up to timeout_ms. */
int edge_repl_http_auth_header(const struct edge_conf *conf, const char *region, const char *peer_id,
                               const struct edge_httpc_url *u, const char *method, const char *path,
                               int timeout_ms, char *out, size_t cap, char *err, size_t errlen);

/* Into out[cap] (at least 400 bytes): "X-Edge-Cluster-Sig: ...\r\n" signing one request of
 * region `region` to region `to` (repl/proto.h, "Signed HTTP requests"): method, target
 * (the path as sent, with its query if any) and body[0..len). No round trip, so fit for
 * the hot paths (session access reports, broadcast relays, the router's read index).
 * EDGE_OK, or EDGE_EINVAL (no secret, a name too long, out too small). */
int edge_repl_http_sig_header(const struct edge_conf *conf, const char *region, const char *to, const char *method,
                              const char *target, const void *body, size_t len, char *out, size_t cap);

#endif
