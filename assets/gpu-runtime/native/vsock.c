/*
 * AF_VSOCK for the runtime. Node cannot wrap an AF_VSOCK descriptor in a net.Socket (libuv's
 * uv_guess_handle does not know the family), so this addon bridges: for every connected
 * stream socket it creates an AF_UNIX socketpair, starts a thread that copies bytes both
 * ways between the socket and one end, and returns the other end, which JavaScript wraps
 * with `new net.Socket({ fd })` like any Unix socket. Everything above the socket is the
 * same code as for unix: and tcp: addresses.
 *
 *   connect(cid, port)                      -> Promise<fd>  (the blocking connect runs on the libuv pool)
 *   listen(cid, port, backlog, onConnection) -> listener    (accepts on a thread of its own)
 *   serve(fd, onConnection)                 -> listener    a listening stream socket of any family, taken over
 *   bridge(fd)                              -> fd          a connected stream socket of any family, taken over
 *   duplicate(fd)                           -> fd          dup(2) with close-on-exec (for tests)
 *   activeBridges()                         -> number      bridge threads still running
 *
 * onConnection(error, fd) is called on the JavaScript thread with a bridged fd per accepted
 * connection, or with an Error (code, errno, syscall, fatal) when accept fails; fatal is true
 * when the accept loop has stopped for good (the listening socket failed), false when it
 * goes on (out of descriptors or memory: it retries; a connection that could not be bridged). A listener has
 * close(), address() -> {cid, port} | null, ref() and unref(). Failed system calls throw or
 * reject with an Error whose `code` is the errno name (EAFNOSUPPORT, ECONNREFUSED, ...).
 *
 * A bridge thread owns both of its descriptors: it half-closes one side (shutdown SHUT_WR)
 * when the other reaches end-of-file, ends once both directions have or once the JavaScript
 * socket is gone (closed, not just half-closed) after its end-of-file, and on any error
 * closes everything, with SO_LINGER 0 on the external socket so that its peer sees a reset.
 * The JavaScript end then reads end-of-file (AF_UNIX has no reset to pass on).
 */
#define _GNU_SOURCE
#define NAPI_VERSION 8
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <limits.h>
#include <node_api.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/vm_sockets.h>
#include "errno-error.h"

#define BRIDGE_BUFFER_BYTES (128 * 1024)
#define THREAD_STACK_BYTES (128 * 1024)
#define ACCEPT_RETRY_MS 100

/* ---- errors --------------------------------------------------------------------------- */

static void throw_errno(napi_env env, int err, const char *syscall) {
  napi_throw(env, errno_error(env, err, syscall, NULL));
}

/* ---- the bridge ----------------------------------------------------------------------- */

static int active_bridges = 0; /* atomically updated */

typedef struct {
  char *data;
  size_t length, offset; /* bytes read into data, and how many of them are written on */
  int eof;               /* the source reached end-of-file */
  int done;              /* ... and everything is written and the destination half-closed */
} direction;

typedef struct {
  int external, local;
  direction in, out; /* in: external -> local; out: local -> external */
  char buffers[2 * BRIDGE_BUFFER_BYTES];
} bridge;

static int set_nonblocking(int fd) {
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0) return -1;
  return (flags & O_NONBLOCK) ? 0 : fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

/* Moves what it can from src to dst without blocking: reads when the buffer is empty, writes
 * what is buffered, half-closes dst once src has ended and everything is written.
 * Returns -1 (errno set) on an error of either socket. */
static int pump(int src, int dst, direction *d) {
  if (d->done) return 0;
  if (d->length == 0 && !d->eof) {
    ssize_t n;
    do n = recv(src, d->data, BRIDGE_BUFFER_BYTES, 0); while (n < 0 && errno == EINTR);
    if (n > 0) {
      d->length = (size_t)n;
      d->offset = 0;
    } else if (n == 0) {
      d->eof = 1;
    } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
      return -1;
    }
  }
  while (d->offset < d->length) {
    ssize_t n = send(dst, d->data + d->offset, d->length - d->offset, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
      return -1;
    }
    d->offset += (size_t)n;
  }
  d->length = d->offset = 0;
  if (d->eof) {
    if (shutdown(dst, SHUT_WR) < 0 && errno != ENOTCONN) return -1;
    d->done = 1;
  }
  return 0;
}

/* What a direction waits for: its destination writable (bytes pending) or its source readable. */
static void wait_for(const direction *d, struct pollfd *src, struct pollfd *dst) {
  if (d->done) return;
  if (d->length > d->offset) dst->events |= POLLOUT;
  else if (!d->eof) src->events |= POLLIN;
}

static void *bridge_main(void *arg) {
  bridge *b = arg;
  int failed = 0;
  for (;;) {
    if (pump(b->external, b->local, &b->in) < 0 || pump(b->local, b->external, &b->out) < 0) {
      failed = 1;
      break;
    }
    if (b->in.done && b->out.done) break;
    struct pollfd fds[2] = {{b->external, 0, 0}, {b->local, 0, 0}};
    wait_for(&b->in, &fds[0], &fds[1]);
    wait_for(&b->out, &fds[1], &fds[0]);
    /* Once the JavaScript side has ended its sending (out.done) while the peer may still
     * send, the JavaScript end is watched for a hang-up even with nothing to write to it: a
     * hang-up there means the JavaScript socket is gone (a half-close is no hang-up), so
     * nothing more can be delivered, and waiting for the peer to send or close could take
     * forever. Any other socket nothing waits on is left out: its POLLHUP or POLLERR would
     * wake poll forever; its error surfaces at the next read or write of it. */
    int watch_local = b->out.done && !b->in.done;
    if (fds[0].events == 0) fds[0].fd = -1;
    if (fds[1].events == 0 && !watch_local) fds[1].fd = -1;
    if (poll(fds, 2, -1) < 0 && errno != EINTR) {
      failed = 1;
      break;
    }
    if (watch_local && (fds[1].revents & (POLLHUP | POLLERR))) {
      failed = b->in.length > b->in.offset; /* bytes the peer sent that cannot be delivered: reset */
      break;
    }
  }
  if (failed) {
    struct linger reset = {1, 0};
    setsockopt(b->external, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
  }
  close(b->external);
  close(b->local);
  free(b);
  __atomic_sub_fetch(&active_bridges, 1, __ATOMIC_SEQ_CST);
  return NULL;
}

/* Starts a thread with every signal blocked (signals are the JavaScript thread's business). */
static int start_thread(pthread_t *thread, int detached, void *(*main)(void *), void *arg) {
  pthread_attr_t attr;
  sigset_t all, previous;
  int err = pthread_attr_init(&attr);
  if (err != 0) return err;
  size_t stack = THREAD_STACK_BYTES;
  if (stack < (size_t)PTHREAD_STACK_MIN) stack = (size_t)PTHREAD_STACK_MIN;
  pthread_attr_setstacksize(&attr, stack);
  if (detached) pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &previous);
  err = pthread_create(thread, &attr, main, arg);
  pthread_sigmask(SIG_SETMASK, &previous, NULL);
  pthread_attr_destroy(&attr);
  return err;
}

/* Bridges a connected stream socket, taking it over (it is closed on failure too). Returns
 * the JavaScript end of the socketpair, or -1 with *err and *syscall set. */
static int make_bridge(int external, int *err, const char **syscall) {
  int pair[2] = {-1, -1}, type = 0;
  socklen_t size = sizeof type;
  bridge *b = NULL;
  pthread_t thread;
  *syscall = "getsockopt";
  if (getsockopt(external, SOL_SOCKET, SO_TYPE, &type, &size) < 0) goto fail;
  if (type != SOCK_STREAM) {
    errno = EPROTOTYPE;
    goto fail;
  }
  *syscall = "socketpair";
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) < 0) goto fail;
  *syscall = "fcntl";
  if (set_nonblocking(external) < 0 || set_nonblocking(pair[0]) < 0) goto fail;
  *syscall = "malloc";
  if ((b = malloc(sizeof *b)) == NULL) {
    errno = ENOMEM;
    goto fail;
  }
  memset(b, 0, offsetof(bridge, buffers));
  b->external = external;
  b->local = pair[0];
  b->in.data = b->buffers;
  b->out.data = b->buffers + BRIDGE_BUFFER_BYTES;
  __atomic_add_fetch(&active_bridges, 1, __ATOMIC_SEQ_CST);
  *syscall = "pthread_create";
  int started = start_thread(&thread, 1, bridge_main, b);
  if (started != 0) {
    __atomic_sub_fetch(&active_bridges, 1, __ATOMIC_SEQ_CST);
    errno = started;
    goto fail;
  }
  return pair[1];
fail:
  *err = errno;
  free(b);
  if (external >= 0) close(external);
  if (pair[0] >= 0) close(pair[0]);
  if (pair[1] >= 0) close(pair[1]);
  return -1;
}

/* ---- arguments ------------------------------------------------------------------------ */

static int get_uint32(napi_env env, napi_value value, const char *name, uint32_t *out) {
  double number;
  char message[96];
  if (napi_get_value_double(env, value, &number) != napi_ok || number != number || number < 0 ||
      number > 4294967295.0 || number != (double)(uint32_t)number) {
    snprintf(message, sizeof message, "%s must be an integer from 0 to 4294967295", name);
    napi_throw_range_error(env, "ERR_VSOCK_ARGUMENT", message);
    return 0;
  }
  *out = (uint32_t)number;
  return 1;
}

/* A descriptor number: an integer in 0..INT_MAX. napi_get_value_int32 would read NaN, 0.5 and
 * 2^32 as 0 (another descriptor, which bridge() would then take over and close). */
static int get_fd(napi_env env, napi_value value, int *out) {
  double number;
  if (napi_get_value_double(env, value, &number) != napi_ok || number != number || number < 0 ||
      number > (double)INT_MAX || number != (double)(int)number) {
    napi_throw_type_error(env, "ERR_VSOCK_ARGUMENT", "fd must be a non-negative integer");
    return 0;
  }
  *out = (int)number;
  return 1;
}

static int get_function(napi_env env, napi_value value, const char *name) {
  napi_valuetype type;
  char message[96];
  if (napi_typeof(env, value, &type) != napi_ok || type != napi_function) {
    snprintf(message, sizeof message, "%s must be a function", name);
    napi_throw_type_error(env, "ERR_VSOCK_ARGUMENT", message);
    return 0;
  }
  return 1;
}

static int get_args(napi_env env, napi_callback_info info, size_t expected, napi_value *argv, const char *usage) {
  size_t argc = expected;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return 0;
  if (argc != expected) {
    napi_throw_type_error(env, "ERR_VSOCK_ARGUMENT", usage);
    return 0;
  }
  return 1;
}

static napi_value int_value(napi_env env, int32_t n) {
  napi_value value;
  napi_create_int32(env, n, &value);
  return value;
}

/* ---- bridge(fd), duplicate(fd), activeBridges() ---------------------------------------- */

static napi_value js_bridge(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int fd, err = 0;
  const char *syscall;
  if (!get_args(env, info, 1, argv, "expected (fd)") || !get_fd(env, argv[0], &fd)) return NULL;
  int local = make_bridge(fd, &err, &syscall);
  if (local < 0) {
    throw_errno(env, err, syscall);
    return NULL;
  }
  return int_value(env, local);
}

static napi_value js_duplicate(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int fd;
  if (!get_args(env, info, 1, argv, "expected (fd)") || !get_fd(env, argv[0], &fd)) return NULL;
  int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (copy < 0) {
    throw_errno(env, errno, "fcntl");
    return NULL;
  }
  return int_value(env, copy);
}

static napi_value js_active_bridges(napi_env env, napi_callback_info info) {
  (void)info;
  return int_value(env, __atomic_load_n(&active_bridges, __ATOMIC_SEQ_CST));
}

/* ---- connect(cid, port) ---------------------------------------------------------------- */

typedef struct {
  uint32_t cid, port;
  int fd, err;
  const char *syscall;
  napi_deferred deferred;
  napi_async_work work;
} connect_request;

static void connect_execute(napi_env env, void *data) {
  (void)env;
  connect_request *r = data;
  struct sockaddr_vm address;
  r->syscall = "socket";
  int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    r->err = errno;
    return;
  }
  memset(&address, 0, sizeof address);
  address.svm_family = AF_VSOCK;
  address.svm_cid = r->cid;
  address.svm_port = r->port;
  r->syscall = "connect";
  if (connect(fd, (struct sockaddr *)&address, sizeof address) < 0) {
    int err = errno;
    if (err == EINTR) {
      /* The connection goes on in the kernel: wait for it and read its outcome. */
      struct pollfd pfd = {fd, POLLOUT, 0};
      socklen_t size = sizeof err;
      while (poll(&pfd, 1, -1) < 0 && errno == EINTR) {
      }
      if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &size) < 0) err = errno;
    }
    if (err != 0) {
      r->err = err;
      close(fd);
      return;
    }
  }
  r->fd = make_bridge(fd, &r->err, &r->syscall);
}

static void connect_complete(napi_env env, napi_status status, void *data) {
  connect_request *r = data;
  if (status != napi_ok && r->err == 0) r->err = ECANCELED;
  if (r->err != 0) {
    if (r->fd >= 0) close(r->fd);
    napi_reject_deferred(env, r->deferred, errno_error(env, r->err, r->syscall, NULL));
  } else {
    napi_resolve_deferred(env, r->deferred, int_value(env, r->fd));
  }
  napi_delete_async_work(env, r->work);
  free(r);
}

static napi_value js_connect(napi_env env, napi_callback_info info) {
  napi_value argv[2], promise, name;
  uint32_t cid, port;
  if (!get_args(env, info, 2, argv, "expected (cid, port)") || !get_uint32(env, argv[0], "cid", &cid) ||
      !get_uint32(env, argv[1], "port", &port)) {
    return NULL;
  }
  connect_request *r = calloc(1, sizeof *r);
  if (r == NULL) {
    throw_errno(env, ENOMEM, "malloc");
    return NULL;
  }
  r->cid = cid;
  r->port = port;
  r->fd = -1;
  napi_create_string_utf8(env, "vsock.connect", NAPI_AUTO_LENGTH, &name);
  if (napi_create_promise(env, &r->deferred, &promise) != napi_ok ||
      napi_create_async_work(env, NULL, name, connect_execute, connect_complete, r, &r->work) != napi_ok ||
      napi_queue_async_work(env, r->work) != napi_ok) {
    bool pending = false;
    if (r->work != NULL) napi_delete_async_work(env, r->work);
    free(r);
    if (napi_is_exception_pending(env, &pending) != napi_ok || !pending) {
      napi_throw_error(env, "ERR_VSOCK", "vsock.connect could not be queued");
    }
    return NULL;
  }
  return promise;
}

/* ---- listeners ------------------------------------------------------------------------ */

typedef struct {
  int fd, wake[2];
  pthread_t thread;
  int stopped;
  int owners; /* the JavaScript object and the threadsafe function; freed when both let go */
  napi_env env;
  napi_threadsafe_function tsfn;
} listener;

typedef struct {
  int fd, err;
  int fatal; /* the accept loop has stopped after this error */
  const char *syscall;
} accept_event;

static void release_listener(listener *l) {
  if (--l->owners == 0) free(l);
}

/* Runs on the JavaScript thread for each accepted connection or accept error. */
static void deliver(napi_env env, napi_value callback, void *context, void *data) {
  (void)context;
  accept_event *e = data;
  if (env == NULL || callback == NULL) { /* the function is being torn down */
    if (e->fd >= 0) close(e->fd);
    free(e);
    return;
  }
  napi_value argv[2], undefined, exception;
  napi_get_undefined(env, &undefined);
  if (e->err != 0) {
    argv[0] = errno_error(env, e->err, e->syscall, NULL);
    argv[1] = undefined;
    napi_value fatal;
    napi_get_boolean(env, e->fatal != 0, &fatal);
    napi_set_named_property(env, argv[0], "fatal", fatal);
  } else {
    napi_get_null(env, &argv[0]);
    argv[1] = int_value(env, e->fd);
  }
  free(e);
  if (napi_call_function(env, undefined, callback, 2, argv, NULL) == napi_pending_exception &&
      napi_get_and_clear_last_exception(env, &exception) == napi_ok) {
    napi_fatal_exception(env, exception);
  }
}

static void tsfn_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  release_listener(data);
}

/* Queues an event; 0 when the listener is closing (the event is dropped, its fd closed). */
static int post(listener *l, int fd, int err, const char *syscall, int fatal) {
  accept_event *e = malloc(sizeof *e);
  if (e == NULL) {
    if (fd >= 0) close(fd);
    return 1; /* out of memory: drop this one, keep accepting */
  }
  e->fd = fd;
  e->err = err;
  e->syscall = syscall;
  e->fatal = fatal;
  if (napi_call_threadsafe_function(l->tsfn, e, napi_tsfn_nonblocking) != napi_ok) {
    if (fd >= 0) close(fd);
    free(e);
    return 0;
  }
  return 1;
}

static void *accept_main(void *arg) {
  listener *l = arg;
  for (;;) {
    struct pollfd fds[2] = {{l->fd, POLLIN, 0}, {l->wake[0], POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      post(l, -1, errno, "poll", 1);
      return NULL;
    }
    if (fds[1].revents != 0) return NULL; /* close() */
    if (fds[0].revents == 0) continue;
    int fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
      int err = errno;
      if (err == EINTR || err == EAGAIN || err == EWOULDBLOCK || err == ECONNABORTED || err == EPROTO) continue;
      int transient = err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
      if (!post(l, -1, err, "accept", !transient)) return NULL;
      if (transient) {
        /* Out of descriptors or memory: wait a little (or for close()) and try again. */
        struct pollfd wake = {l->wake[0], POLLIN, 0};
        if (poll(&wake, 1, ACCEPT_RETRY_MS) > 0) return NULL;
        continue;
      }
      return NULL; /* the listening socket itself failed */
    }
    int err = 0;
    const char *syscall;
    int local = make_bridge(fd, &err, &syscall);
    if (!(local >= 0 ? post(l, local, 0, NULL, 0) : post(l, -1, err, syscall, 0))) return NULL;
  }
}

/* Stops the accept thread and closes the sockets; the threadsafe function is released. */
static void stop_listener(listener *l) {
  if (l->stopped) return;
  l->stopped = 1;
  ssize_t written;
  do written = write(l->wake[1], "x", 1); while (written < 0 && errno == EINTR);
  pthread_join(l->thread, NULL);
  close(l->fd);
  close(l->wake[0]);
  close(l->wake[1]);
  l->fd = -1;
  napi_release_threadsafe_function(l->tsfn, napi_tsfn_release);
}

static void cleanup_hook(void *data) {
  stop_listener(data);
}

static listener *this_listener(napi_env env, napi_callback_info info) {
  void *data = NULL;
  napi_get_cb_info(env, info, NULL, NULL, NULL, &data);
  return data;
}

static napi_value js_listener_close(napi_env env, napi_callback_info info) {
  listener *l = this_listener(env, info);
  if (!l->stopped) {
    napi_remove_env_cleanup_hook(env, cleanup_hook, l);
    stop_listener(l);
  }
  return NULL;
}

static napi_value js_listener_address(napi_env env, napi_callback_info info) {
  listener *l = this_listener(env, info);
  struct sockaddr_vm address;
  socklen_t size = sizeof address;
  napi_value result, cid, port;
  memset(&address, 0, sizeof address);
  if (l->stopped || getsockname(l->fd, (struct sockaddr *)&address, &size) < 0 || address.svm_family != AF_VSOCK) {
    napi_get_null(env, &result);
    return result;
  }
  napi_create_object(env, &result);
  napi_create_uint32(env, address.svm_cid, &cid);
  napi_create_uint32(env, address.svm_port, &port);
  napi_set_named_property(env, result, "cid", cid);
  napi_set_named_property(env, result, "port", port);
  return result;
}

static napi_value js_listener_ref(napi_env env, napi_callback_info info) {
  listener *l = this_listener(env, info);
  if (!l->stopped) napi_ref_threadsafe_function(env, l->tsfn);
  return NULL;
}

static napi_value js_listener_unref(napi_env env, napi_callback_info info) {
  listener *l = this_listener(env, info);
  if (!l->stopped) napi_unref_threadsafe_function(env, l->tsfn);
  return NULL;
}

static void listener_object_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  release_listener(data); /* an unreferenced listener that was not closed keeps running */
}

/* Takes over a listening socket: the accept thread, and the object JavaScript holds. */
static napi_value start_listener(napi_env env, int fd, napi_value callback) {
  napi_value object, name;
  listener *l = calloc(1, sizeof *l);
  const char *syscall = "malloc";
  int err = ENOMEM;
  if (l == NULL) goto fail;
  l->fd = fd;
  l->wake[0] = l->wake[1] = -1;
  syscall = "fcntl";
  if (set_nonblocking(fd) < 0) goto fail_errno;
  syscall = "pipe2";
  if (pipe2(l->wake, O_CLOEXEC | O_NONBLOCK) < 0) goto fail_errno;
  napi_create_string_utf8(env, "vsock.accept", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, callback, NULL, name, 0, 1, l, tsfn_finalize, NULL, deliver, &l->tsfn) != napi_ok) {
    close(l->wake[0]);
    close(l->wake[1]);
    close(fd);
    free(l);
    return NULL; /* N-API has thrown */
  }
  l->owners = 2;
  l->env = env;
  err = start_thread(&l->thread, 0, accept_main, l);
  if (err != 0) {
    syscall = "pthread_create";
    close(l->wake[0]);
    close(l->wake[1]);
    close(fd);
    l->stopped = 1;
    l->owners = 1; /* no JavaScript object: the release below frees it through tsfn_finalize */
    napi_release_threadsafe_function(l->tsfn, napi_tsfn_abort);
    throw_errno(env, err, syscall);
    return NULL;
  }
  napi_add_env_cleanup_hook(env, cleanup_hook, l);
  napi_property_descriptor methods[] = {
      {"close", NULL, js_listener_close, NULL, NULL, NULL, napi_enumerable, l},
      {"address", NULL, js_listener_address, NULL, NULL, NULL, napi_enumerable, l},
      {"ref", NULL, js_listener_ref, NULL, NULL, NULL, napi_enumerable, l},
      {"unref", NULL, js_listener_unref, NULL, NULL, NULL, napi_enumerable, l},
  };
  napi_create_object(env, &object);
  napi_define_properties(env, object, 4, methods);
  napi_add_finalizer(env, object, l, listener_object_finalize, NULL, NULL);
  return object;
fail_errno:
  err = errno;
fail:
  if (l != NULL) {
    if (l->wake[0] >= 0) close(l->wake[0]);
    if (l->wake[1] >= 0) close(l->wake[1]);
    free(l);
  }
  close(fd);
  throw_errno(env, err, syscall);
  return NULL;
}

static napi_value js_listen(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  uint32_t cid, port, backlog;
  struct sockaddr_vm address;
  if (!get_args(env, info, 4, argv, "expected (cid, port, backlog, onConnection)") ||
      !get_uint32(env, argv[0], "cid", &cid) || !get_uint32(env, argv[1], "port", &port) ||
      !get_uint32(env, argv[2], "backlog", &backlog) || !get_function(env, argv[3], "onConnection")) {
    return NULL;
  }
  int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    throw_errno(env, errno, "socket");
    return NULL;
  }
  memset(&address, 0, sizeof address);
  address.svm_family = AF_VSOCK;
  address.svm_cid = cid;
  address.svm_port = port;
  const char *syscall = "bind";
  if (bind(fd, (struct sockaddr *)&address, sizeof address) < 0 ||
      (syscall = "listen", listen(fd, backlog > INT_MAX ? INT_MAX : (int)backlog) < 0)) {
    int err = errno;
    close(fd);
    throw_errno(env, err, syscall);
    return NULL;
  }
  return start_listener(env, fd, argv[3]);
}

static napi_value js_serve(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int fd, listening = 0, type = 0;
  socklen_t size = sizeof listening;
  if (!get_args(env, info, 2, argv, "expected (fd, onConnection)") || !get_fd(env, argv[0], &fd) ||
      !get_function(env, argv[1], "onConnection")) {
    return NULL;
  }
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &size) < 0 ||
      (size = sizeof type, getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &size) < 0)) {
    throw_errno(env, errno, "getsockopt");
    return NULL;
  }
  if (!listening || type != SOCK_STREAM) {
    napi_throw_type_error(env, "ERR_VSOCK_ARGUMENT", "fd must be a listening stream socket");
    return NULL;
  }
  return start_listener(env, fd, argv[1]);
}

NAPI_MODULE_INIT() {
  napi_property_descriptor functions[] = {
      {"connect", NULL, js_connect, NULL, NULL, NULL, napi_enumerable, NULL},
      {"listen", NULL, js_listen, NULL, NULL, NULL, napi_enumerable, NULL},
      {"serve", NULL, js_serve, NULL, NULL, NULL, napi_enumerable, NULL},
      {"bridge", NULL, js_bridge, NULL, NULL, NULL, napi_enumerable, NULL},
      {"duplicate", NULL, js_duplicate, NULL, NULL, NULL, napi_enumerable, NULL},
      {"activeBridges", NULL, js_active_bridges, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof functions / sizeof functions[0], functions);
  return exports;
}
