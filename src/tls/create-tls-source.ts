// Picks and builds the certificate source `tls.source` names (files or Consul Connect).
import type { MeshletConfig } from '../config/schema.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { TlsMetrics } from '../telemetry/tls-metrics.ts';
import { FilesTlsSource } from './files-source.ts';
import type { TlsSource } from './tls-source.ts';

/** Builds the certificate source once its code is loaded. */
export type TlsSourceFactory = (config: MeshletConfig, logger: Logger, metrics: TlsMetrics) => TlsSource;

/**
 * The factory for `config.tls` (validated: files has its paths; consul has registry consul and a
 * service). The Connect CA source and the Consul client are loaded only in Consul mode.
 */
export async function tlsSourceFactoryFor(config: MeshletConfig): Promise<TlsSourceFactory> {
  if (config.tls?.source !== 'consul') return filesSource;
  const [{ ConnectCaSource }, { readToken }] = await Promise.all([
    import('./connect-ca-source.ts'),
    import('../registry/consul/consul-client.ts'),
  ]);
  return (c, logger, metrics) => {
    if (c.registry.type !== 'consul' || c.service === undefined) {
      throw new Error('tls.source consul needs registry.type consul and service');
    }
    const { consul } = c.registry;
    return new ConnectCaSource({
      address: consul.address,
      token: readToken(consul.token, consul.tokenFile),
      agentTls: consul.tls,
      service: c.service.name,
      trustDomain: c.tls!.trustDomain,
      logger,
      metrics,
      waitMs: c.registry.watch.wait,
    });
  };
}

function filesSource(config: MeshletConfig, logger: Logger, metrics: TlsMetrics): TlsSource {
  const tls = config.tls!;
  return new FilesTlsSource({
    paths: { cert: tls.cert!, key: tls.key!, ca: tls.ca! },
    trustDomain: tls.trustDomain,
    logger,
    metrics,
  });
}
