{
  # Three addons, each optional (the runtime falls back, or refuses what needs it, without
  # them); build.mjs copies them to dist/.
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
  # Linux only: the AF_VSOCK bridge (AF_VSOCK, accept4, socketpair bridging on a thread), and
  # the Nitro Secure Module device (/dev/nsm: one NSM_IOCTL_RAW per request, on the libuv pool).
  "conditions": [
    ["OS=='linux'", {
      "targets": [
        {
          "target_name": "vsock",
          "sources": ["native/vsock.c"],
          "cflags": ["-O2", "-Wall", "-Wextra", "-Werror", "-pthread"],
          "ldflags": ["-pthread"]
        },
        {
          "target_name": "nsm",
          "sources": ["native/nsm.c"],
          "cflags": ["-O2", "-Wall", "-Wextra", "-Werror"]
        }
      ]
    }]
  ]
}
