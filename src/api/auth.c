/* SPDX-License-Identifier: MIT */
/* Token checks for HTTP (Authorization: Bearer) and WebSocket (hello jwt). */
#include "api/node_int.h"

#include <string.h>
#include <time.h>

/* Check a token; returns true with the access level, or false with an error code. */
bool edge__api_auth_token(struct edge_node *n, const char *tok, size_t len, enum hrana_access *access,
                        const char **code)
{
    if (n->keys == NULL) {
        *access = HRANA_ACCESS_RW;
        return true;
    }
    enum edge_jwt_access a = EDGE_JWT_NONE;
    if (edge_jwt_verify(n->keys, tok, len, (uint64_t)time(NULL), &a, code) != EDGE_OK || a == EDGE_JWT_NONE) {
        if (*code == NULL) *code = "AUTH_JWT_INVALID";
        return false;
    }
    *access = a == EDGE_JWT_RO ? HRANA_ACCESS_RO : HRANA_ACCESS_RW;
    return true;
}

bool edge__api_auth_http(struct edge_node *n, struct edge_http_req *req, enum hrana_access *access,
                            const char **code)
{
    if (n->keys == NULL) {
        *access = HRANA_ACCESS_RW;
        return true;
    }
    const char *h = edge_http_header(req, "authorization");
    const char *tok = NULL;
    size_t len = 0;
    if (edge_jwt_bearer(h, h ? strlen(h) : 0, &tok, &len, code) != EDGE_OK) {
        return false;
    }
    return edge__api_auth_token(n, tok, len, access, code);
}
