/* SPDX-License-Identifier: MIT */
/* Hrana 3's protobuf encoding over HTTP (src/api/hrana/hrana.proto), as a codec onto
 * the JSON model of hrana.h: a protobuf pipeline request becomes the same jansson tree
 * a JSON request parses into, and the JSON pipeline response that execution writes
 * becomes its protobuf form. Validation, classification and execution are shared. */
#ifndef EDGE_API_HRANA_PB_H
#define EDGE_API_HRANA_PB_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

/* Limits on what one protobuf body may unfold into (a compact body can stand for a
 * large tree): nesting of messages, JSON nodes, and the decoder's memory. */
#define HRANA_PB_MAX_DEPTH 100
#define HRANA_PB_MAX_NODES (1u << 21)
#define HRANA_PB_MAX_ARENA ((size_t)128 << 20)

/* Decode a PipelineReqBody into {"baton":..,"requests":[...]} as the JSON path reads
 * it (the caller validates it with hrana_validate_pipeline). On success *out_body is a
 * new reference. On failure returns EDGE_EPROTO (malformed, or a value JSON cannot
 * carry: text that is not UTF-8, a float that is not finite), EDGE_ETOOBIG (over the
 * limits) or EDGE_ENOMEM, with a message in err; nothing is allocated. */
int hrana_pb_decode_pipeline(const uint8_t *data, size_t len, json_t **out_body, char *err, size_t errlen);

/* Encode a pipeline response body in JSON ({"baton","base_url","results"}, as
 * edge__api_pipeline_finish writes it, or a primary's answer to a forwarded request)
 * as a PipelineRespBody appended to out. EDGE_EPROTO when json is not of that shape,
 * EDGE_ETOOBIG/EDGE_ENOMEM when out cannot hold it; out is unchanged on failure. */
int hrana_pb_encode_pipeline(const char *json, size_t len, struct edge_buf *out);

/* Cursors (POST /v3-protobuf/cursor): a CursorReqBody decoded into {"baton","batch"}
 * (validated with hrana_validate_cursor), and a cursor's JSON lines (a CursorRespBody
 * line, then CursorEntry lines, as POST /v3/cursor answers) re-encoded as
 * length-delimited protobuf messages appended to out. Errors as above. */
int hrana_pb_decode_cursor(const uint8_t *data, size_t len, json_t **out_body, char *err, size_t errlen);
int hrana_pb_encode_cursor(const char *lines, size_t len, struct edge_buf *out);

#endif
