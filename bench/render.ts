// Re-renders a run's markdown from its JSON (after a change to lib/report.ts): writes FILE.md beside it;
// with --latest also bench/results/latest.md and the table in bench/README.md.
//
//   node bench/render.ts bench/results/DATE.json [--latest]
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { type BenchResults, renderMarkdown, summarise, updateReadme } from './lib/report.ts';

const file = process.argv[2];
if (file === undefined || !file.endsWith('.json')) {
  process.stderr.write('usage: node bench/render.ts bench/results/DATE.json [--latest]\n');
  process.exit(2);
}
const results = JSON.parse(readFileSync(file, 'utf8')) as BenchResults;
const md = renderMarkdown(results, summarise(results));
writeFileSync(file.replace(/\.json$/, '.md'), md);
if (process.argv.includes('--latest')) {
  writeFileSync(join(dirname(file), 'latest.md'), md);
  updateReadme(join(dirname(file), '..', 'README.md'), md);
}
process.stdout.write(md);
