/* SPDX-License-Identifier: MIT */
/* Error names and messages generated from EDGE_ERR_MAP, plus the translators from
 * foreign error spaces (errno), and the one formatter of errmsg buffers. SQLite codes are
 * translated in src/store. */
#include "core/err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

static const char *const messages[] = {
#define X(name, msg) msg,
    EDGE_ERR_MAP(X)
#undef X
};

static const char *const names[] = {
#define X(name, msg) "EDGE_" #name,
    EDGE_ERR_MAP(X)
#undef X
};

const char *edge_strerror(int err)
{
    if (err < 0 || err >= EDGE__ERR_COUNT) {
        return "unknown error";
    }
    return messages[err];
}

const char *edge_err_name(int err)
{
    if (err < 0 || err >= EDGE__ERR_COUNT) {
        return "EDGE_EUNKNOWN";
    }
    return names[err];
}

int edge__err_from_errno(int e)
{
    switch (e) {
    case 0: return EDGE_OK;
    case ENOMEM: return EDGE_ENOMEM;
    case EINVAL: return EDGE_EINVAL;
    case EAGAIN: return EDGE_EAGAIN;
    case ETIMEDOUT: return EDGE_ETIMEDOUT;
    case ENOENT: return EDGE_ENOTFOUND;
    case EEXIST: return EDGE_EEXIST;
    case EACCES:
    case EPERM: return EDGE_EPERM;
    case EPIPE:
    case ECONNRESET: return EDGE_ECLOSED;
    default: return EDGE_EIO;
    }
}

void edge__errmsg_set(char *errmsg, size_t n, const char *fmt, ...)
{
    if (errmsg == NULL || n == 0) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errmsg, n, fmt, ap);
    va_end(ap);
}
