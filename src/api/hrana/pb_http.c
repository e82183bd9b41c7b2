/* SPDX-License-Identifier: MIT */
/* Hrana 3 over HTTP in protobuf: POST /v3-protobuf/pipeline. The body is decoded into
 * the JSON model (pb.c) and runs as a /v3/pipeline request would (http.c); the answer,
 * whether written here, after a majority wait or by the primary of a forwarded write,
 * is re-encoded when it is sent (edge__api_pipeline_answer). Errors that end the whole
 * request stay JSON, as the specification allows and @libsql/hrana-client reads them
 * (it parses an HTTP error body as an Error when its Content-Type is application/json). */
#include "api/node_int.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "api/hrana/pb.h"

/* application/x-protobuf (what the client sends) or application/protobuf, with or
 * without parameters. */
static bool is_protobuf_type(const char *ct)
{
    if (ct == NULL) return false;
    static const char *const types[] = {"application/x-protobuf", "application/protobuf"};
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        size_t n = strlen(types[i]);
        if (strncasecmp(ct, types[i], n) == 0 && (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ')) return true;
    }
    return false;
}

void edge__api_pb_pipeline_handle(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req,
                                  enum hrana_access access)
{
    struct edge_node *n = l->node;
    if (!is_protobuf_type(edge_http_header(req, "content-type"))) {
        edge__api_respond_error(n, c, req, EP_PIPELINE, 415, "HRANA_PROTO_ERROR",
                                "POST /v3-protobuf/pipeline takes a protobuf body "
                                "(Content-Type: application/x-protobuf)");
        return;
    }
    char err[256];
    json_t *body = NULL;
    int rv = hrana_pb_decode_pipeline((const uint8_t *)req->body.data, req->body.len, &body, err, sizeof(err));
    if (rv != EDGE_OK) {
        edge__api_respond_error(n, c, req, EP_PIPELINE, rv == EDGE_ETOOBIG ? 413 : rv == EDGE_ENOMEM ? 503 : 400,
                                rv == EDGE_ENOMEM ? "INTERNAL" : "HRANA_PROTO_ERROR", err);
        return;
    }
    if (hrana_validate_pipeline(body, 3, err, sizeof(err)) != EDGE_OK) {
        json_decref(body);
        edge__api_respond_error(n, c, req, EP_PIPELINE, 400, "HRANA_PROTO_ERROR", err);
        return;
    }
    edge__api_pipeline_run(l, c, req, body, 3, access, PIPE_PROTOBUF);
}

void edge__api_pb_pipeline_answer(struct edge_node *n, struct edge_http_conn *c, const char *extra, const char *body,
                                  size_t len, uint64_t start_ns)
{
    struct edge_buf out;
    edge_buf_init(&out, (size_t)1 << 31);
    int rv = hrana_pb_encode_pipeline(body, len, &out);
    if (rv != EDGE_OK) {
        /* What was done is done (a write may have committed); say so rather than guess. */
        char msg[160];
        snprintf(msg, sizeof(msg), "the response could not be encoded in protobuf (%s); the requests did run",
                 edge_strerror(rv));
        edge__api_observe(n, EP_PIPELINE, start_ns, true);
        edge_http_respond_error(c, 500, rv == EDGE_ETOOBIG ? "RESPONSE_TOO_LARGE" : "INTERNAL", msg);
    } else {
        edge__api_observe(n, EP_PIPELINE, start_ns, false);
        edge_http_respond(c, 200, "application/x-protobuf", extra, out.data ? out.data : "", out.len);
    }
    edge_buf_free(&out);
}
