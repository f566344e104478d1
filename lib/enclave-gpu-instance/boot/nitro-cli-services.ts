/** Package that provides nitro-cli, the allocator and vsock-proxy on Amazon Linux 2023. */
export const NITRO_CLI_PACKAGE = 'aws-nitro-enclaves-cli';

/** Reserves the enclave's CPUs and huge-page memory from `/etc/nitro_enclaves/allocator.yaml`. */
export const ALLOCATOR_SERVICE = 'nitro-enclaves-allocator.service';

/** Forwards the enclave's vsock connections to the allowlisted KMS endpoint. */
export const VSOCK_PROXY_SERVICE = 'nitro-enclaves-vsock-proxy.service';
