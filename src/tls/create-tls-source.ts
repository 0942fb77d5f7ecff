// Picks and builds the certificate source `tls.source` names (files or Consul Connect).
import type { MeshletConfig } from '../config/schema.ts';
import { readToken } from '../registry/consul/consul-client.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { TlsMetrics } from '../telemetry/tls-metrics.ts';
import { ConnectCaSource } from './connect-ca-source.ts';
import { FilesTlsSource } from './files-source.ts';
import type { TlsSource } from './tls-source.ts';

/** The source for `config.tls` (validated: files has its paths; consul has registry consul and a service). */
export function createTlsSource(config: MeshletConfig, logger: Logger, metrics: TlsMetrics): TlsSource {
  const tls = config.tls!;
  if (tls.source === 'files') {
    return new FilesTlsSource({
      paths: { cert: tls.cert!, key: tls.key!, ca: tls.ca! },
      trustDomain: tls.trustDomain,
      logger,
      metrics,
    });
  }
  if (config.registry.type !== 'consul' || config.service === undefined) {
    throw new Error('tls.source consul needs registry.type consul and service');
  }
  const { consul } = config.registry;
  return new ConnectCaSource({
    address: consul.address,
    token: readToken(consul.token, consul.tokenFile),
    agentTls: consul.tls,
    service: config.service.name,
    trustDomain: tls.trustDomain,
    logger,
    metrics,
    waitMs: config.registry.watch.wait,
  });
}
