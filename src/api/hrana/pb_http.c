/* SPDX-License-Identifier: MIT */
/* Hrana 3 over HTTP in protobuf: POST /v3-protobuf/pipeline and /v3-protobuf/cursor. The
 * body is decoded into the JSON model (pb.c) and runs as a /v3/pipeline or /v3/cursor
 * request would (http.c); the answer,
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

typedef int (*decode_fn)(const uint8_t *data, size_t len, json_t **out_body, char *err, size_t errlen);

/* The body of a protobuf request as its JSON form, or NULL once answered with why not. */
static json_t *decode_body(struct edge_node *n, struct edge_http_conn *c, struct edge_http_req *req, decode_fn decode,
                           const char *what)
{
    char err[256];
    if (!is_protobuf_type(edge_http_header(req, "content-type"))) {
        snprintf(err, sizeof(err), "POST %s takes a protobuf body (Content-Type: application/x-protobuf)", what);
        edge__api_respond_error(n, c, req, EP_PIPELINE, 415, "HRANA_PROTO_ERROR", err);
        return NULL;
    }
    json_t *body = NULL;
    int rv = decode((const uint8_t *)req->body.data, req->body.len, &body, err, sizeof(err));
    if (rv != EDGE_OK) {
        edge__api_respond_error(n, c, req, EP_PIPELINE, rv == EDGE_ETOOBIG ? 413 : rv == EDGE_ENOMEM ? 503 : 400,
                                rv == EDGE_ENOMEM ? "INTERNAL" : "HRANA_PROTO_ERROR", err);
        return NULL;
    }
    return body;
}

void edge__api_pb_pipeline_handle(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req,
                                  enum hrana_access access)
{
    struct edge_node *n = l->node;
    json_t *body = decode_body(n, c, req, hrana_pb_decode_pipeline, "/v3-protobuf/pipeline");
    if (body == NULL) return;
    char err[256];
    if (hrana_validate_pipeline(body, 3, err, sizeof(err)) != EDGE_OK) {
        json_decref(body);
        edge__api_respond_error(n, c, req, EP_PIPELINE, 400, "HRANA_PROTO_ERROR", err);
        return;
    }
    edge__api_pipeline_run(l, c, req, body, 3, access, PIPE_PROTOBUF);
}

/* The cursor is then run as POST /v3/cursor runs it: a pipeline of one batch request. */
void edge__api_pb_cursor_handle(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req,
                                enum hrana_access access)
{
    struct edge_node *n = l->node;
    json_t *body = decode_body(n, c, req, hrana_pb_decode_cursor, "/v3-protobuf/cursor");
    if (body == NULL) return;
    char err[256];
    if (hrana_validate_cursor(body, err, sizeof(err)) != EDGE_OK) {
        json_decref(body);
        edge__api_respond_error(n, c, req, EP_PIPELINE, 400, "HRANA_PROTO_ERROR", err);
        return;
    }
    json_t *pipe = json_pack("{s:O,s:[{s:s,s:O}]}", "baton", json_object_get(body, "baton"), "requests", "type",
                             "batch", "batch", json_object_get(body, "batch"));
    json_decref(body);
    if (pipe == NULL) {
        edge__api_respond_error(n, c, req, EP_PIPELINE, 503, "INTERNAL", "out of memory");
        return;
    }
    edge__api_pipeline_run(l, c, req, pipe, 3, access, PIPE_PB_CURSOR);
}

/* Re-encode a JSON answer (pipeline body or cursor lines) as protobuf and send it. What was
 * done is done (a write may have committed), so an encoding failure says so rather than guess. */
static void pb_answer(struct edge_node *n, struct edge_http_conn *c, const char *extra, const char *body, size_t len,
                      uint64_t start_ns, int (*encode)(const char *, size_t, struct edge_buf *), const char *what)
{
    struct edge_buf out;
    edge_buf_init(&out, (size_t)1 << 31);
    int rv = encode(body, len, &out);
    if (rv != EDGE_OK) {
        char msg[160];
        snprintf(msg, sizeof(msg), "the %s could not be encoded in protobuf (%s); it did run", what, edge_strerror(rv));
        edge__api_observe(n, EP_PIPELINE, start_ns, true);
        edge_http_respond_error(c, 500, rv == EDGE_ETOOBIG ? "RESPONSE_TOO_LARGE" : "INTERNAL", msg);
    } else {
        edge__api_observe(n, EP_PIPELINE, start_ns, false);
        edge_http_respond(c, 200, "application/x-protobuf", extra, out.data ? out.data : "", out.len);
    }
    edge_buf_free(&out);
}

void edge__api_pb_cursor_answer(struct edge_node *n, struct edge_http_conn *c, const char *extra, const char *body,
                                size_t len, uint64_t start_ns)
{
    pb_answer(n, c, extra, body, len, start_ns, hrana_pb_encode_cursor, "cursor");
}

void edge__api_pb_pipeline_answer(struct edge_node *n, struct edge_http_conn *c, const char *extra, const char *body,
                                  size_t len, uint64_t start_ns)
{
    pb_answer(n, c, extra, body, len, start_ns, hrana_pb_encode_pipeline, "response");
}
