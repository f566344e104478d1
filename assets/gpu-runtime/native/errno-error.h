/*
 * The Error the addons raise for a failed system call, shared by vsock.c and nsm.c so there
 * is one table of errno names. Static functions: each addon gets its own copy when it builds.
 */
#ifndef EGPU_ERRNO_ERROR_H
#define EGPU_ERRNO_ERROR_H

#include <errno.h>
#include <limits.h>
#include <node_api.h>
#include <stdio.h>
#include <string.h>

/* The errno's name (the Error's code, as Node's own errors carry), UNKNOWN for others. */
static inline const char *errno_name(int err) {
  switch (err) {
#define NAME(e) case e: return #e;
    NAME(EACCES) NAME(EADDRINUSE) NAME(EADDRNOTAVAIL) NAME(EAFNOSUPPORT) NAME(EAGAIN) NAME(EBADF)
    NAME(EBUSY) NAME(ECANCELED) NAME(ECONNABORTED) NAME(ECONNREFUSED) NAME(ECONNRESET) NAME(EFAULT)
    NAME(EHOSTUNREACH) NAME(EINTR) NAME(EINVAL) NAME(EIO) NAME(EISDIR) NAME(ELOOP) NAME(EMFILE)
    NAME(EMSGSIZE) NAME(ENAMETOOLONG) NAME(ENETUNREACH) NAME(ENFILE) NAME(ENOBUFS) NAME(ENODATA)
    NAME(ENODEV) NAME(ENOENT) NAME(ENOMEM) NAME(ENOTCONN) NAME(ENOTDIR) NAME(ENOTSOCK) NAME(ENOTTY)
    NAME(ENXIO) NAME(EOPNOTSUPP) NAME(EOVERFLOW) NAME(EPERM) NAME(EPIPE) NAME(EPROTONOSUPPORT)
    NAME(EPROTOTYPE) NAME(EROFS) NAME(ESOCKTNOSUPPORT) NAME(ETIMEDOUT)
#undef NAME
    default: return "UNKNOWN";
  }
}

/* An Error "syscall: strerror" ("syscall path: strerror" with a path) with code (the errno
 * name), errno, syscall and, with a path, path properties. */
static inline napi_value errno_error(napi_env env, int err, const char *syscall, const char *path) {
  char text[PATH_MAX + 160];
  napi_value code, message, error, number, call, where;
  if (path != NULL) snprintf(text, sizeof text, "%s %s: %s", syscall, path, strerror(err));
  else snprintf(text, sizeof text, "%s: %s", syscall, strerror(err));
  napi_create_string_utf8(env, errno_name(err), NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &message);
  napi_create_error(env, code, message, &error);
  napi_create_int32(env, err, &number);
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &call);
  napi_set_named_property(env, error, "errno", number);
  napi_set_named_property(env, error, "syscall", call);
  if (path != NULL) {
    napi_create_string_utf8(env, path, NAPI_AUTO_LENGTH, &where);
    napi_set_named_property(env, error, "path", where);
  }
  return error;
}

#endif
