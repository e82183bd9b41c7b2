/* SPDX-License-Identifier: MIT */
/* /v1/crdt/...: CRDT operations run on the writer thread (api/crdt_http.h). */
#include "api/node_int.h"

#include <http_parser.h>

#include "api/crdt_http.h"
#include "core/alloc.h"

void edge__api_crdt_handle(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req, const char *sub)
{
    struct edge_node *n = l->node;
    json_t *body = json_stringn(req->body.data ? req->body.data : "", req->body.len);
    if (body == NULL && req->body.len > 0) {
        edge__api_respond_error(n, c, req, EP_CRDT, 400, "CRDT_BAD_REQUEST", "the body is not valid UTF-8");
        return;
    }
    struct unit *u = edge__api_unit_new(l, c, body);
    if (u == NULL) {
        json_decref(body);
        edge__api_respond_error(n, c, req, EP_CRDT, 503, "INTERNAL", "out of memory");
        return;
    }
    u->start_ns = req->start_ns;
    u->crdt_method = edge_strdup(http_method_str((enum http_method)req->method));
    u->crdt_path = edge_strdup(sub);
    if (u->crdt_method == NULL || u->crdt_path == NULL) {
        edge__api_unit_free(u);
        edge__api_respond_error(n, c, req, EP_CRDT, 503, "INTERNAL", "out of memory");
        return;
    }
    /* The handler works in a savepoint, so CRDT operations join the group commit. */
    u->wjob.run = edge__api_unit_writer_run;
    u->wjob.complete = edge__api_unit_writer_complete;
    if (edge_writer_submit(n->writer, &u->wjob) != EDGE_OK) {
        u->commit_status = EDGE_ECLOSED;
        edge__api_unit_finish(u);
    }
}
