/* SPDX-License-Identifier: MIT */
/* One error space for the whole library. Every function returns EDGE_OK (0) or a
 * positive EDGE_E* code; the X-macro keeps the enum, the names and the messages in
 * one place (after libuv's UV_ERRNO_MAP). */
#ifndef EDGELITE_ERRORS_H
#define EDGELITE_ERRORS_H

#ifndef EDGE_API
#define EDGE_API __attribute__((visibility("default")))
#endif

#define EDGE_ERR_MAP(X)                                                   \
    X(OK, "success")                                                      \
    X(ENOMEM, "out of memory")                                            \
    X(EINVAL, "invalid argument")                                         \
    X(EAGAIN, "resource temporarily unavailable, try again")              \
    X(ECLOSED, "closed")                                                  \
    X(ETIMEDOUT, "timed out")                                             \
    X(EPROTO, "protocol error")                                           \
    X(ECORRUPT, "corrupt or truncated data")                              \
    X(ECONFLICT, "conflict")                                              \
    X(ESTORE, "storage error")                                            \
    X(ENOTFOUND, "not found")                                             \
    X(EEXIST, "already exists")                                           \
    X(ETOOBIG, "too large")                                               \
    X(EOVERFLOW, "value out of range")                                    \
    X(EAUTH, "authentication failed")                                     \
    X(EPERM, "permission denied")                                         \
    X(EIO, "input/output error")                                          \
    X(ECONFIG, "invalid configuration")                                   \
    X(EBUSY, "busy")                                                      \
    X(EINTERNAL, "internal error")                                        \
    X(ECONNREFUSED, "connection refused")

enum edge_err {
#define EDGE__ERR_ENUM(name, msg) EDGE_##name,
    EDGE_ERR_MAP(EDGE__ERR_ENUM)
#undef EDGE__ERR_ENUM
    EDGE__ERR_COUNT
};

/* Human-readable message for an error code; never NULL, static storage. */
EDGE_API const char *edge_strerror(int err);
/* Symbolic name ("EDGE_ENOMEM"); never NULL, static storage. */
EDGE_API const char *edge_err_name(int err);

#define EDGE_ERRMSG_SIZE 256

#endif
