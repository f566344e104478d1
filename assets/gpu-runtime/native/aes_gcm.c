/*
 * AES-256-GCM for the ABE frames, through the EVP interface of the OpenSSL that Node itself
 * is linked with (Node exports those symbols; nothing else is linked). It exists because
 * node:crypto's Cipher always returns a freshly allocated output Buffer, which must then be
 * copied where it belongs: at 1 MiB that costs about a third of the throughput (npm run
 * bench prints both). Here the output is the caller's memory, either the input itself (in
 * place) or a separate buffer of the same length.
 *
 *   seal(key, nonce, aad, input, output, tag)  -> undefined; writes output and the 16-byte tag
 *   open(key, nonce, aad, input, output, tag)  -> true when the tag verifies, false otherwise
 *
 * All arguments are Uint8Arrays (Buffers). A wrong length throws a RangeError (code
 * ERR_AES_GCM_LENGTH) whose message names the argument and both lengths. The tag comparison
 * is OpenSSL's (the final GCM step, constant time). On a
 * false return the output holds unauthenticated plaintext: the caller must wipe it (the
 * TypeScript wrapper does, for both backends alike).
 */
#define NAPI_VERSION 8
#include <limits.h>
#include <node_api.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define KEY_BYTES 32
#define NONCE_BYTES 12
#define TAG_BYTES 16

/* The cipher is fetched once per Node environment (main thread or worker): an implicit
 * fetch on every EVP_CipherInit_ex would look the provider up again for each frame. */
typedef struct {
  EVP_CIPHER *cipher;
} addon_state;

typedef struct {
  uint8_t *data;
  size_t length;
} bytes;

/* Reads a Uint8Array argument; `expected` is its exact length, or SIZE_MAX for any. */
static int get_bytes(napi_env env, napi_value value, const char *name, size_t expected, bytes *out) {
  bool is_typed = false;
  napi_typedarray_type type;
  void *data = NULL;
  size_t length = 0;
  char message[128];
  if (napi_is_typedarray(env, value, &is_typed) != napi_ok || !is_typed ||
      napi_get_typedarray_info(env, value, &type, &length, &data, NULL, NULL) != napi_ok ||
      type != napi_uint8_array) {
    snprintf(message, sizeof message, "%s must be a Buffer or Uint8Array", name);
    napi_throw_type_error(env, "ERR_AES_GCM_ARGUMENT", message);
    return 0;
  }
  if (expected != SIZE_MAX && length != expected) {
    snprintf(message, sizeof message, "%s must be %zu bytes, got %zu", name, expected, length);
    napi_throw_range_error(env, "ERR_AES_GCM_LENGTH", message);
    return 0;
  }
  if (length > INT_MAX) { /* EVP lengths are ints */
    snprintf(message, sizeof message, "%s is %zu bytes, more than one call may process", name, length);
    napi_throw_range_error(env, "ERR_AES_GCM_LENGTH", message);
    return 0;
  }
  out->data = data;
  out->length = length;
  return 1;
}

typedef struct {
  bytes key, nonce, aad, input, output, tag;
} gcm_args;

static int get_args(napi_env env, napi_callback_info info, gcm_args *args) {
  size_t argc = 6;
  napi_value argv[6];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return 0;
  if (argc != 6) {
    napi_throw_type_error(env, "ERR_AES_GCM_ARGUMENT", "expected (key, nonce, aad, input, output, tag)");
    return 0;
  }
  if (!get_bytes(env, argv[0], "key", KEY_BYTES, &args->key) ||
      !get_bytes(env, argv[1], "nonce", NONCE_BYTES, &args->nonce) ||
      !get_bytes(env, argv[2], "aad", SIZE_MAX, &args->aad) ||
      !get_bytes(env, argv[3], "input", SIZE_MAX, &args->input) ||
      !get_bytes(env, argv[4], "output", args->input.length, &args->output) ||
      !get_bytes(env, argv[5], "tag", TAG_BYTES, &args->tag)) {
    return 0;
  }
  /* OpenSSL allows exact in-place operation but not partially overlapping buffers. */
  uintptr_t in = (uintptr_t)args->input.data, out = (uintptr_t)args->output.data;
  size_t n = args->input.length;
  if (in != out && n > 0 && in < out + n && out < in + n) {
    napi_throw_range_error(env, "ERR_AES_GCM_OVERLAP", "output must be the input itself or not overlap it");
    return 0;
  }
  return 1;
}

/* One AES-256-GCM operation. Returns 1 on success, 0 when the tag does not verify (decrypt),
 * -1 on an OpenSSL failure. The context is freed (and its key schedule cleansed) before return. */
static int run_gcm(const EVP_CIPHER *cipher, const gcm_args *a, int encrypt) {
  EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
  uint8_t final_block[EVP_MAX_BLOCK_LENGTH]; /* GCM's final step outputs nothing; OpenSSL wants somewhere to write it */
  int ok = -1, len = 0;
  if (ctx == NULL) return -1;
  if (EVP_CipherInit_ex(ctx, cipher, NULL, NULL, NULL, encrypt) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, NONCE_BYTES, NULL) != 1 ||
      EVP_CipherInit_ex(ctx, NULL, NULL, a->key.data, a->nonce.data, encrypt) != 1 ||
      (a->aad.length > 0 && EVP_CipherUpdate(ctx, NULL, &len, a->aad.data, (int)a->aad.length) != 1) ||
      (a->input.length > 0 &&
       EVP_CipherUpdate(ctx, a->output.data, &len, a->input.data, (int)a->input.length) != 1)) {
    goto done;
  }
  if (encrypt) {
    if (EVP_CipherFinal_ex(ctx, final_block, &len) == 1 &&
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_BYTES, a->tag.data) == 1) {
      ok = 1;
    }
  } else if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG_BYTES, a->tag.data) == 1) {
    /* GCM's final step compares the tag with CRYPTO_memcmp. */
    ok = EVP_CipherFinal_ex(ctx, final_block, &len) == 1 ? 1 : 0;
  }
done:
  EVP_CIPHER_CTX_free(ctx);
  return ok;
}

static addon_state *state_of(napi_env env) {
  addon_state *state = NULL;
  napi_get_instance_data(env, (void **)&state);
  return state;
}

static napi_value seal(napi_env env, napi_callback_info info) {
  gcm_args args;
  if (!get_args(env, info, &args)) return NULL;
  if (run_gcm(state_of(env)->cipher, &args, 1) != 1) {
    napi_throw_error(env, "ERR_AES_GCM_OPENSSL", "AES-256-GCM encryption failed in OpenSSL");
  }
  return NULL;
}

static napi_value open_(napi_env env, napi_callback_info info) {
  gcm_args args;
  napi_value result;
  if (!get_args(env, info, &args)) return NULL;
  int ok = run_gcm(state_of(env)->cipher, &args, 0);
  if (ok < 0) {
    napi_throw_error(env, "ERR_AES_GCM_OPENSSL", "AES-256-GCM decryption failed in OpenSSL");
    return NULL;
  }
  napi_get_boolean(env, ok == 1, &result);
  return result;
}

static void free_state(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  addon_state *state = data;
  EVP_CIPHER_free(state->cipher);
  free(state);
}

NAPI_MODULE_INIT() {
  addon_state *state = calloc(1, sizeof *state);
  if (state == NULL || (state->cipher = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL)) == NULL) {
    free(state);
    napi_throw_error(env, "ERR_AES_GCM_OPENSSL", "OpenSSL has no AES-256-GCM implementation available");
    return NULL;
  }
  if (napi_set_instance_data(env, state, free_state, NULL) != napi_ok) {
    free_state(env, state, NULL);
    return NULL;
  }
  napi_property_descriptor functions[] = {
      {"seal", NULL, seal, NULL, NULL, NULL, napi_enumerable, NULL},
      {"open", NULL, open_, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, 2, functions);
  return exports;
}
