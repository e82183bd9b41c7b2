/* SPDX-License-Identifier: MIT */
/* Endpoints between regions: GET /v1/snapshot (seeding) and the /v1/peer upgrade. */
#include "api/node_int.h"

#include <string.h>

#include "core/alloc.h"
#include "repl/compact.h"
#include "repl/session.h"

/* GET /v1/snapshot: a consistent copy of the database (SQLite backup API) for seeding a
 * new region. Needs the cluster secret (X-Edge-Cluster-Secret), since it holds all data. */
struct snapshot_job {
    uv_work_t work;
    struct loop *l;
    struct edge_http_conn *conn;
    uint64_t start_ns;
    int rv;
    char err[256];
    uint8_t *data;
    size_t len;
};

static void snapshot_work(uv_work_t *w)
{
    struct snapshot_job *j = w->data;
    j->rv = edge_repl_snapshot_take(j->l->node->db_path, &j->data, &j->len, j->err, sizeof(j->err));
}

static void snapshot_after(uv_work_t *w, int status)
{
    (void)status;
    struct snapshot_job *j = w->data;
    struct edge_node *n = j->l->node;
    if (!edge_http_conn_is_closed(j->conn)) {
        edge__api_observe(n, EP_STATUS, j->start_ns, j->rv != EDGE_OK);
        if (j->rv == EDGE_OK) {
            char extra[128];
            snprintf(extra, sizeof(extra), "X-Edge-Region: %s\r\n", n->region);
            edge_http_respond(j->conn, 200, "application/vnd.sqlite3", extra, j->data, j->len);
        } else {
            edge_http_respond_error(j->conn, 500, "SNAPSHOT_FAILED", j->err);
        }
    }
    edge_http_conn_unref(j->conn);
    edge_free(j->data);
    edge_free(j);
}

void edge__api_snapshot_handle(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req)
{
    struct edge_node *n = l->node;
    if (!n->repl.cluster || n->cfg.conf->cluster_secret == NULL) {
        edge__api_respond_error(n, c, req, EP_STATUS, 404, "NOT_A_CLUSTER", "this node does not replicate");
        return;
    }
    if (!edge__api_auth_cluster(n, req)) {
        edge__api_respond_error(n, c, req, EP_STATUS, 401, "AUTH_CLUSTER", "a snapshot needs the cluster secret");
        return;
    }
    struct snapshot_job *j = edge_calloc(1, sizeof(*j));
    if (j == NULL) {
        edge__api_respond_error(n, c, req, EP_STATUS, 503, "INTERNAL", "out of memory");
        return;
    }
    j->l = l;
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
    struct edge_peer_session_host host = {peer_post, l};
    if (edge_peer_session_accept(&n->repl, c, &host) == EDGE_ENOMEM) {
        edge__api_respond_error(n, c, req, EP_OTHER, 503, "INTERNAL", "out of memory");
    }
}
