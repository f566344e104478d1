/**
 * The health endpoint: GET /health answers 200 with what SGS is doing, for load balancers,
 * systemd watchdogs and people. Everything else is 404 (405 for other methods on /health).
 * Slow or idle clients are cut off so the endpoint cannot be held open.
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Address, TransportError, formatAddress } from '../protocol/transport';

export interface HealthStatus {
  readonly status: 'ok' | 'draining';
  /** Sessions open, including those being set up. */
  readonly sessions: number;
  /** Operations waiting for the context. */
  readonly queued: number;
  /** Operations at the context. */
  readonly inFlight: number;
  /** Ciphertext held for queued and arriving operations, bytes. */
  readonly bufferedBytes: number;
  /** Metric data dropped because CloudWatch was unreachable and the buffer full. */
  readonly metricsDropped: number;
}

export interface HealthEndpoint {
  /** tcp:host:port, with the port actually bound. */
  readonly address: string;
  close(): Promise<void>;
}

export function startHealthServer(address: Extract<Address, { kind: 'tcp' }>, status: () => HealthStatus): Promise<HealthEndpoint> {
  const server = http.createServer((request, response) => {
    const path = (request.url ?? '').split('?')[0];
    if (path !== '/health') return reply(response, 404, { error: 'not found: GET /health' });
    if (request.method !== 'GET' && request.method !== 'HEAD') return reply(response, 405, { error: 'use GET' });
    return reply(response, 200, status());
  });
  server.headersTimeout = 5_000;
  server.requestTimeout = 5_000;
  server.keepAliveTimeout = 5_000;
  server.maxHeadersCount = 50;
  return new Promise((resolve, reject) => {
    server.once('error', (error) => reject(new TransportError('LISTEN', `cannot listen for health checks on ${formatAddress(address)}: ${error.message}`)));
    server.listen(address.port, address.host, () => {
      const bound = server.address() as AddressInfo;
      resolve({
        address: formatAddress({ kind: 'tcp', host: address.host, port: bound.port }),
        close: () => new Promise((done) => {
          server.close(() => done());
          server.closeAllConnections();
        }),
      });
    });
  });
}

function reply(response: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  response.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  response.end(text);
}
