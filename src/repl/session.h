/* SPDX-License-Identifier: MIT */
/* Peer links, server side: the /v1/peer WebSocket session of one inbound link from
 * another region (that region's outbound link thread, repl/peer.h). The session
 * answers the CHALLENGE/HELLO handshake with the cluster secret, PINGs with PONGs, and
 * applies every ENTRIES batch on the writer thread, alone, answering with an ACK of
 * the version vector the database then holds. Loop thread, except where noted. */
#ifndef EDGE_REPL_SESSION_H
#define EDGE_REPL_SESSION_H

#include "core/task.h"
#include "net/http.h"
#include "repl/state.h"

/* What the embedding layer provides. */
struct edge_peer_session_host {
    /* Any thread: run t->run(t) on the loop thread of the session's connection. */
    void (*post)(void *ud, struct edge_task *t);
    void *ud;
};

/* Upgrade the request on c to a peer link and send the CHALLENGE. The session routes
 * the connection's messages to itself and frees itself when it closes. EDGE_OK, or
 * EDGE_ENOMEM (the request is not answered: the caller answers it), or EDGE_EPROTO
 * (the upgrade failed and was answered). host is copied. */
int edge_peer_session_accept(struct edge_repl_state *st, struct edge_http_conn *c,
                             const struct edge_peer_session_host *host);

#endif
