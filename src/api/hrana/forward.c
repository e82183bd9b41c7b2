/* SPDX-License-Identifier: MIT */
/* Forwarding a strong write or schema change from a replica to the primary. */
#include "api/node_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "net/httpc.h"

/* Forwarding a strong write to the primary (on the thread pool: blocking HTTP). */
struct forward {
    uv_work_t work;
    struct loop *l;
    struct edge_http_conn *conn;
    char *body;
    size_t body_len;
    char headers[1024];
    int mode;
    uint64_t start_ns;
    struct edge_httpc_resp resp;
    int rv;
};

static void forward_work(uv_work_t *w)
{
    struct forward *f = w->data;
    struct edge_node *n = f->l->node;
    /* Under WAN emulation the hop to the primary crosses the emulated WAN too: half the
     * round trip each way, as the peer links do. */
    double rtt = n->cfg.wan ? edge_regions_rtt_ms(n->cfg.wan, n->region, n->repl.primary) : 0;
    if (rtt > 0) usleep((useconds_t)(rtt * 500.0));
    struct edge_httpc_url u;
    f->rv = edge_httpc_url_parse(edge_repl_state_primary_url(&n->repl), &u);
    if (f->rv == EDGE_OK) {
        f->rv = edge_httpc_request_ex(&u, "POST", "/v2/pipeline", NULL, f->headers, f->body, f->body_len,
                                      (int)n->cfg.strong_timeout_ms + 2000, (size_t)1 << 30, &f->resp);
    }
    if (rtt > 0) usleep((useconds_t)(rtt * 500.0));
}

static void forward_after(uv_work_t *w, int status)
{
    (void)status;
    struct forward *f = w->data;
    struct edge_node *n = f->l->node;
    if (!edge_http_conn_is_closed(f->conn)) {
        if (f->rv != EDGE_OK) {
            char msg[256];
            snprintf(msg, sizeof(msg), "the primary region %s could not be reached: %s", n->repl.primary,
                     edge_strerror(f->rv));
            edge__api_observe(n, EP_PIPELINE, f->start_ns, true);
            edge_http_respond_error(f->conn, 503, "PRIMARY_UNREACHABLE", msg);
        } else if (f->resp.status == 200) {
            /* The primary's bookmark orders reads everywhere. */
            char origin[EDGE_VCLOCK_REGION_MAX + 1] = "";
            uint64_t seq = 0;
            if (!edge__api_bookmark_parse(f->resp.bookmark, origin, &seq)) seq = 0; /* none: answer without one */
            edge__api_pipeline_answer(n, f->conn, f->mode, seq ? origin : NULL, seq, f->resp.body.data ? f->resp.body.data : "",
                            f->resp.body.len, f->start_ns);
        } else {
            edge__api_observe(n, f->mode == PIPE_HRANA ? EP_PIPELINE : EP_REPLICATE, f->start_ns, true);
            edge_http_respond(f->conn, f->resp.status, "application/json", NULL, f->resp.body.data ? f->resp.body.data : "",
                              f->resp.body.len);
        }
    }
    edge_httpc_resp_free(&f->resp);
    edge_http_conn_unref(f->conn);
    edge_free(f->body);
    edge_free(f);
}

void edge__api_forward(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req, json_t *body,
                           int mode, bool strong)
{
    struct edge_node *n = l->node;
    struct forward *f = edge_calloc(1, sizeof(*f));
    char *text = json_dumps(body, JSON_COMPACT);
    if (f == NULL || text == NULL || edge_repl_state_primary_url(&n->repl) == NULL) {
        edge_free(f);
        free(text);
        edge__api_respond_error(n, c, req, EP_PIPELINE, 503, "PRIMARY_UNREACHABLE", "cannot forward to the primary region");
        return;
    }
    f->body = edge_strdup(text);
    free(text);
    f->body_len = f->body ? strlen(f->body) : 0;
    f->l = l;
    f->conn = c;
    edge_http_conn_ref(c);
    f->mode = mode;
    f->start_ns = req->start_ns;
    const char *auth = edge_http_header(req, "authorization");
    snprintf(f->headers, sizeof(f->headers), "%sX-Edge-Forwarded: %s\r\n%s%s%s",
             strong ? "X-Edge-Consistency: strong\r\n" : "", n->region, auth ? "Authorization: " : "", auth ? auth : "",
             auth ? "\r\n" : "");
    f->work.data = f;
    if (f->body == NULL || uv_queue_work(&l->loop, &f->work, forward_work, forward_after) != 0) {
        edge_http_conn_unref(c);
        edge_free(f->body);
        edge_free(f);
        edge__api_respond_error(n, c, req, EP_PIPELINE, 503, "PRIMARY_UNREACHABLE", "cannot forward to the primary region");
    }
}
