/* SPDX-License-Identifier: MIT */
/* Endpoints between regions: GET /v1/snapshot (seeding) and the /v1/peer upgrade. */
#include "api/node_int.h"

#include <errno.h>
#include <sodium.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/log.h"
#include "repl/compact.h"
#include "repl/proto.h"
#include "repl/session.h"

/* GET /v1/snapshot: a consistent copy of the database (SQLite backup API) for seeding a
 * region. Needs another region's X-Edge-Cluster-Auth (api/cluster_auth.c), since it holds
 * all data; the cluster secret itself is not accepted (it would have travelled).
 *
 * DESIGN: the copy is made on the thread pool into an unlinked temporary file
 * (repl/compact.h), then streamed from it: headers with its size and SHA-256, then
 * chunks read from the file while the connection's unsent output is below
 * SNAP_UNSENT_MAX. The node never holds more than that of it in memory, whatever the
 * database's size; a reader that stops reading stops the reads from the file. */
#define SNAP_CHUNK (256u << 10)
#define SNAP_UNSENT_MAX (2u << 20)
#define SNAP_PUMP_MS 2

struct snapshot_job {
    uv_work_t work;
    uv_timer_t pump;
    struct loop *l;
    struct edge_http_conn *conn;
    uint64_t start_ns;
    int rv;
    char err[256];
    int fd;
    uint64_t size, off;
    char sha256[65];
    uint8_t *chunk;
    struct edge_repl_http_auth auth; /* the request's: the answer's MAC is bound to it */
};

static void snapshot_work(uv_work_t *w)
{
    struct snapshot_job *j = w->data;
    j->rv = edge_repl_snapshot_take(j->l->node->db_path, &j->fd, &j->size, j->sha256, j->err, sizeof(j->err));
}

static void snapshot_free(uv_handle_t *h)
{
    struct snapshot_job *j = h->data;
    if (j->fd >= 0) close(j->fd);
    edge_http_conn_unref(j->conn);
    edge_free(j->chunk);
    sodium_memzero(&j->auth, sizeof(j->auth));
    edge_free(j);
}

/* Loop thread, every SNAP_PUMP_MS: top the connection's output up from the file. */
static void snapshot_pump(uv_timer_t *t)
{
    struct snapshot_job *j = t->data;
    bool done = edge_http_conn_is_closed(j->conn);
    for (int i = 0; !done && i < 64 && edge_http_conn_unsent(j->conn) < SNAP_UNSENT_MAX; i++) {
        size_t want = j->size - j->off < SNAP_CHUNK ? (size_t)(j->size - j->off) : SNAP_CHUNK;
        ssize_t n = want > 0 ? pread(j->fd, j->chunk, want, (off_t)j->off) : 0;
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0 || edge_http_stream_write(j->conn, j->chunk, (size_t)n) != EDGE_OK) {
            /* The end, or a failure: a short body tells the receiver (size and hash). */
            if (j->off < j->size) {
                EDGE_LOG(EDGE_LOG_WARN, EDGE_MOD_API, "snapshot: stream ended at %llu of %llu bytes",
                         (unsigned long long)j->off, (unsigned long long)j->size);
            }
            edge_http_stream_end(j->conn);
            done = true;
            break;
        }
        j->off += (uint64_t)n;
    }
    if (done) {
        uv_timer_stop(t);
        uv_close((uv_handle_t *)t, snapshot_free);
    }
}

static void snapshot_after(uv_work_t *w, int status)
{
    (void)status;
    struct snapshot_job *j = w->data;
    struct edge_node *n = j->l->node;
    j->chunk = j->rv == EDGE_OK ? edge_malloc(SNAP_CHUNK) : NULL;
    if (!edge_http_conn_is_closed(j->conn)) {
        edge__api_observe(n, EP_STATUS, j->start_ns, j->rv != EDGE_OK);
        char extra[640], mhex[65];
        uint8_t mac[EDGE_REPL_MAC_LEN] = {0};
        const struct edge_conf *conf = n->cfg.conf;
        if (j->rv == EDGE_OK && edge_repl_http_snapshot_mac(conf->cluster_secret, &j->auth, conf->cluster_name,
                                                            n->region, j->size, j->sha256, mac) != EDGE_OK) {
            j->rv = EDGE_EINVAL;
            snprintf(j->err, sizeof(j->err), "cannot compute the snapshot's MAC");
        }
        edge_repl_hex32(mac, mhex);
        snprintf(extra, sizeof(extra),
                 "X-Edge-Region: %s\r\nContent-Length: %llu\r\nX-Edge-Snapshot-Size: %llu\r\n"
                 "X-Edge-Snapshot-Sha256: %s\r\n%s: %s\r\n",
                 n->region, (unsigned long long)j->size, (unsigned long long)j->size, j->sha256,
                 EDGE_REPL_SNAPSHOT_MAC_HEADER, mhex);
        if (j->rv == EDGE_OK && j->chunk == NULL) {
            edge_http_respond_error(j->conn, 503, "INTERNAL", "out of memory");
        } else if (j->rv != EDGE_OK) {
            edge_http_respond_error(j->conn, 500, "SNAPSHOT_FAILED", j->err);
        } else if (edge_http_stream_begin(j->conn, "application/vnd.sqlite3", extra) == EDGE_OK) {
            EDGE_LOG(EDGE_LOG_INFO, EDGE_MOD_API, "snapshot: streaming %llu bytes (sha256 %.16s...)",
                     (unsigned long long)j->size, j->sha256);
            uv_timer_init(&j->l->loop, &j->pump);
            j->pump.data = j;
            uv_timer_start(&j->pump, snapshot_pump, 0, SNAP_PUMP_MS);
            return;
        }
    }
    if (j->fd >= 0) close(j->fd);
    edge_http_conn_unref(j->conn);
    edge_free(j->chunk);
    sodium_memzero(&j->auth, sizeof(j->auth));
    edge_free(j);
}

void edge__api_snapshot_handle(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req)
{
    struct edge_node *n = l->node;
    if (!n->repl.cluster || n->cfg.conf->cluster_secret == NULL) {
        edge__api_respond_error(n, c, req, EP_STATUS, 404, "NOT_A_CLUSTER", "this node does not replicate");
        return;
    }
    const char *why = NULL;
    if (!edge__api_auth_cluster_request(n, req, &why)) {
        char msg[200];
        snprintf(msg, sizeof(msg), "a snapshot needs another region's X-Edge-Cluster-Auth: %s", why);
        edge__api_respond_error(n, c, req, EP_STATUS, 401, "AUTH_CLUSTER", msg);
        return;
    }
    struct snapshot_job *j = edge_calloc(1, sizeof(*j));
    if (j == NULL) {
        edge__api_respond_error(n, c, req, EP_STATUS, 503, "INTERNAL", "out of memory");
        return;
    }
    /* checked just now, so it parses: its nonces bind the answer's MAC to this request */
    (void)edge_repl_http_auth_parse(edge_http_header(req, "x-edge-cluster-auth"), &j->auth);
    j->l = l;
    j->fd = -1;
    j->conn = c;
    edge_http_conn_ref(c);
    j->start_ns = req->start_ns;
    j->work.data = j;
    if (uv_queue_work(&l->loop, &j->work, snapshot_work, snapshot_after) != 0) {
        edge_http_conn_unref(c);
        edge_free(j);
        edge__api_respond_error(n, c, req, EP_STATUS, 503, "INTERNAL", "cannot queue the snapshot");
    }
}

/* A peer session's finished ENTRIES batch comes back through the loop's inbox. */
static void peer_post(void *ud, struct edge_task *t)
{
    edge__api_loop_post(ud, t);
}

/* GET /v1/peer (WebSocket upgrade): an inbound replication link (repl/session.h). */
void edge__api_peer_upgrade(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req)
{
    struct edge_node *n = l->node;
    if (!n->repl.cluster) {
        edge__api_respond_error(n, c, req, EP_OTHER, 404, "NOT_A_CLUSTER", "this node does not replicate");
        return;
    }
    if (n->tls_peers_verified && !edge_http_conn_peer_verified(c)) {
        /* TLS with cluster.ca_file: a peer proves itself with a certificate of the CA. */
        edge__api_respond_error(n, c, req, EP_OTHER, 403, "PEER_CERT_REQUIRED",
                                "a peer link needs a client certificate signed by the cluster's CA");
        return;
    }
    struct edge_peer_session_host host = {peer_post, l};
    if (edge_peer_session_accept(&n->repl, c, &host) == EDGE_ENOMEM) {
        edge__api_respond_error(n, c, req, EP_OTHER, 503, "INTERNAL", "out of memory");
    }
}
