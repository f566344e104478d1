/*
 * The Nitro Secure Module (/dev/nsm inside a Nitro Enclave) for the runtime. The NSM takes
 * one CBOR request and gives one CBOR response per ioctl; this addon only moves the bytes
 * (src/attestation/nsm-device.ts encodes and decodes them):
 *
 *   request(path, requestBuffer) -> Promise<Buffer>   open, one NSM_IOCTL_RAW, close; the
 *                                                       system calls run on the libuv pool
 *   ioctlNumber                   -> number            NSM_IOCTL_RAW as this build computed it
 *   requestMaxBytes, responseMaxBytes                  the driver's NSM_REQUEST_MAX_SIZE and
 *                                                       NSM_RESPONSE_MAX_SIZE
 *
 * A failed system call rejects with an Error whose `code` is the errno name (ENOENT, ENOTTY,
 * EMSGSIZE, ...), with `errno`, `syscall` ('open' or 'ioctl') and `path` set. A request that
 * is empty or longer than NSM_REQUEST_MAX_SIZE throws a RangeError before anything runs.
 *
 * The descriptor is opened per request rather than kept: an enclave asks for an attestation
 * once per session, and nothing is left open between requests.
 */
#define _GNU_SOURCE
#define NAPI_VERSION 8
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <node_api.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <linux/ioctl.h>
#include <linux/types.h>
#include "errno-error.h"

/* The kernel's uapi header (Linux 6.8 and later) where the build machine has it; otherwise the
 * same definitions, from include/uapi/linux/nsm.h. */
#if defined(__has_include)
#if __has_include(<linux/nsm.h>)
#include <linux/nsm.h>
#define EGPU_HAVE_LINUX_NSM_H 1
#endif
#endif

#ifndef EGPU_HAVE_LINUX_NSM_H
#define NSM_MAGIC 0x0A
#define NSM_REQUEST_MAX_SIZE 0x1000
#define NSM_RESPONSE_MAX_SIZE 0x3000
struct nsm_iovec {
  __u64 addr; /* the buffer's address */
  __u64 len;  /* its length; for the response, the driver writes back how much it filled */
};
struct nsm_raw {
  struct nsm_iovec request;
  struct nsm_iovec response;
};
#define NSM_IOCTL_RAW _IOWR(NSM_MAGIC, 0x0, struct nsm_raw)
#endif

_Static_assert(sizeof(struct nsm_raw) == 32, "struct nsm_raw must be two pairs of 64-bit fields");

/* ---- one request ---------------------------------------------------------------------- */

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  char path[PATH_MAX];
  uint8_t request[NSM_REQUEST_MAX_SIZE];
  size_t request_length;
  uint8_t response[NSM_RESPONSE_MAX_SIZE];
  size_t response_length;
  int err;             /* 0, or the errno of the call that failed */
  const char *syscall; /* which call */
} nsm_call;

/* On a libuv pool thread: the only place that touches the device. */
static void execute(napi_env env, void *data) {
  (void)env;
  nsm_call *call = data;
  int fd;
  do fd = open(call->path, O_RDWR | O_CLOEXEC); while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    call->err = errno;
    call->syscall = "open";
    return;
  }
  struct nsm_raw raw;
  memset(&raw, 0, sizeof raw);
  raw.request.addr = (__u64)(uintptr_t)call->request;
  raw.request.len = call->request_length;
  raw.response.addr = (__u64)(uintptr_t)call->response;
  raw.response.len = sizeof call->response;
  /* No retry on EINTR: the driver waits uninterruptibly, and a request must not go twice. */
  if (ioctl(fd, NSM_IOCTL_RAW, &raw) < 0) {
    call->err = errno;
    call->syscall = "ioctl";
  } else if (raw.response.len > sizeof call->response) {
    /* The driver never reports more than it was given room for; if it did, say so. */
    call->err = EOVERFLOW;
    call->syscall = "ioctl";
  } else {
    call->response_length = (size_t)raw.response.len;
  }
  close(fd);
}

/* Back on the JavaScript thread: settle the promise and free the call. */
static void complete(napi_env env, napi_status status, void *data) {
  nsm_call *call = data;
  napi_value result;
  if (status != napi_ok) {
    napi_value code, message;
    napi_create_string_utf8(env, "ECANCELED", NAPI_AUTO_LENGTH, &code);
    napi_create_string_utf8(env, "the NSM request was cancelled", NAPI_AUTO_LENGTH, &message);
    napi_create_error(env, code, message, &result);
    napi_reject_deferred(env, call->deferred, result);
  } else if (call->err != 0) {
    napi_reject_deferred(env, call->deferred, errno_error(env, call->err, call->syscall, call->path));
  } else if (napi_create_buffer_copy(env, call->response_length, call->response, NULL, &result) == napi_ok) {
    napi_resolve_deferred(env, call->deferred, result);
  } else {
    napi_value code, message;
    napi_create_string_utf8(env, "ENOMEM", NAPI_AUTO_LENGTH, &code);
    napi_create_string_utf8(env, "cannot allocate the NSM response buffer", NAPI_AUTO_LENGTH, &message);
    napi_create_error(env, code, message, &result);
    napi_reject_deferred(env, call->deferred, result);
  }
  napi_delete_async_work(env, call->work);
  memset(call->response, 0, sizeof call->response);
  free(call);
}

/* request(path, requestBuffer): copies both (they may change once this returns) and queues the call. */
static napi_value request(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], promise, name;
  napi_valuetype type;
  bool is_buffer = false;
  void *bytes = NULL;
  size_t length = 0, path_length = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc != 2) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_COUNT", "request(path, request) takes two arguments");
    return NULL;
  }
  if (napi_typeof(env, argv[0], &type) != napi_ok || type != napi_string) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "the device path must be a string");
    return NULL;
  }
  if (napi_is_buffer(env, argv[1], &is_buffer) != napi_ok || !is_buffer) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "the request must be a Buffer");
    return NULL;
  }
  napi_get_buffer_info(env, argv[1], &bytes, &length);
  if (length == 0 || length > NSM_REQUEST_MAX_SIZE) {
    char text[120];
    snprintf(text, sizeof text, "an NSM request is 1 to %d bytes, this one is %zu", NSM_REQUEST_MAX_SIZE, length);
    napi_throw_range_error(env, "EMSGSIZE", text);
    return NULL;
  }
  nsm_call *call = calloc(1, sizeof *call);
  if (call == NULL) {
    napi_throw_error(env, "ENOMEM", "cannot allocate an NSM request");
    return NULL;
  }
  if (napi_get_value_string_utf8(env, argv[0], call->path, sizeof call->path, &path_length) != napi_ok
      || path_length == 0 || path_length >= sizeof call->path - 1 || strlen(call->path) != path_length) {
    free(call);
    napi_throw_type_error(env, "ERR_INVALID_ARG_VALUE", "the device path must be a non-empty path without NUL bytes, shorter than PATH_MAX");
    return NULL;
  }
  memcpy(call->request, bytes, length);
  call->request_length = length;
  napi_create_string_utf8(env, "egpu:nsm", NAPI_AUTO_LENGTH, &name);
  if (napi_create_promise(env, &call->deferred, &promise) != napi_ok
      || napi_create_async_work(env, NULL, name, execute, complete, call, &call->work) != napi_ok) {
    free(call);
    napi_throw_error(env, NULL, "cannot queue the NSM request");
    return NULL;
  }
  if (napi_queue_async_work(env, call->work) != napi_ok) {
    napi_delete_async_work(env, call->work);
    free(call);
    napi_throw_error(env, NULL, "cannot queue the NSM request");
    return NULL;
  }
  return promise;
}

/* ---- module --------------------------------------------------------------------------- */

static napi_value init(napi_env env, napi_value exports) {
  napi_value fn, number;
  napi_create_function(env, "request", NAPI_AUTO_LENGTH, request, NULL, &fn);
  napi_set_named_property(env, exports, "request", fn);
  napi_create_uint32(env, (uint32_t)NSM_IOCTL_RAW, &number);
  napi_set_named_property(env, exports, "ioctlNumber", number);
  napi_create_uint32(env, NSM_REQUEST_MAX_SIZE, &number);
  napi_set_named_property(env, exports, "requestMaxBytes", number);
  napi_create_uint32(env, NSM_RESPONSE_MAX_SIZE, &number);
  napi_set_named_property(env, exports, "responseMaxBytes", number);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
