// Summarises a V8 .cpuprofile (from `node --cpu-prof`): the top frames by self time.
//
//   node bench/cpu-profile.ts FILE.cpuprofile [TOP]
import { readFileSync } from 'node:fs';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  hitCount?: number;
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** One frame's share of the samples. */
export interface Frame {
  frame: string;
  selfMs: number;
  selfPct: number;
}

function shortUrl(url: string): string {
  if (url === '') return '';
  const nm = url.lastIndexOf('node_modules/');
  if (nm !== -1) return url.slice(nm + 'node_modules/'.length);
  const src = url.search(/\/(src|dist)\//);
  if (src !== -1) return url.slice(src + 1);
  return url.replace(/^file:\/\//, '');
}

/** The `top` frames by self time (function + file:line, so same-named functions stay apart). */
export function topSelfFrames(file: string, top = 15): Frame[] {
  const p = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<string, number>();
  let total = 0;
  for (let i = 0; i < p.samples.length; i++) {
    const node = byId.get(p.samples[i]!);
    const dt = p.timeDeltas[i] ?? 0;
    if (node === undefined) continue;
    const cf = node.callFrame;
    const name = cf.functionName === '' ? '(anonymous)' : cf.functionName;
    const where = shortUrl(cf.url);
    const key = where === '' ? name : `${name} ${where}:${cf.lineNumber + 1}`;
    selfUs.set(key, (selfUs.get(key) ?? 0) + dt);
    total += dt;
  }
  return [...selfUs]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([frame, us]) => ({ frame, selfMs: us / 1000, selfPct: (100 * us) / total }));
}

/** Self time by where the code lives: meshlet's own code, each package, Node internals, native/GC. */
export function selfByArea(file: string): { area: string; selfPct: number }[] {
  const p = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const areas = new Map<string, number>();
  let total = 0;
  for (let i = 0; i < p.samples.length; i++) {
    const node = byId.get(p.samples[i]!);
    if (node === undefined) continue;
    const dt = p.timeDeltas[i] ?? 0;
    const url = node.callFrame.url;
    let area: string;
    const nm = url.lastIndexOf('node_modules/');
    if (nm !== -1) area = url.slice(nm + 'node_modules/'.length).split('/')[0]!;
    else if (/\/(src|dist)\//.test(url)) area = 'meshlet (src/, dist/)';
    else if (url.startsWith('node:')) area = 'Node internals (JS)';
    else if (url === '')
      area = node.callFrame.functionName.startsWith('(')
        ? node.callFrame.functionName
        : 'native (syscalls, C++)';
    else area = 'other';
    areas.set(area, (areas.get(area) ?? 0) + dt);
    total += dt;
  }
  return [...areas].sort((a, b) => b[1] - a[1]).map(([area, us]) => ({ area, selfPct: (100 * us) / total }));
}

if (import.meta.main) {
  const file = process.argv[2];
  if (file === undefined) {
    process.stderr.write('usage: node bench/cpu-profile.ts FILE.cpuprofile [TOP]\n');
    process.exit(2);
  }
  for (const f of topSelfFrames(file, Number(process.argv[3] ?? 15))) {
    process.stdout.write(
      `${f.selfPct.toFixed(1).padStart(5)}%  ${f.selfMs.toFixed(0).padStart(7)} ms  ${f.frame}\n`,
    );
  }
}
