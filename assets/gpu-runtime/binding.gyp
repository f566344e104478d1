{
  # Two addons, each optional (the runtime falls back without them); build.mjs copies them to dist/.
  #
  # The in-place AES-256-GCM addon. It compiles against the OpenSSL headers that ship with
  # Node (include/node/openssl) and links no libcrypto: the EVP symbols resolve against the
  # node binary at load time, so the addon always uses Node's own OpenSSL build.
  "targets": [
    {
      "target_name": "aes_gcm",
      "sources": ["native/aes_gcm.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Werror"],
      "xcode_settings": { "OTHER_CFLAGS": ["-Wall", "-Wextra"] }
    }
  ],
  # The AF_VSOCK bridge (Linux only: AF_VSOCK, accept4, socketpair bridging on a thread).
  "conditions": [
    ["OS=='linux'", {
      "targets": [
        {
          "target_name": "vsock",
          "sources": ["native/vsock.c"],
          "cflags": ["-O2", "-Wall", "-Wextra", "-Werror", "-pthread"],
          "ldflags": ["-pthread"]
        }
      ]
    }]
  ]
}
