// Builds a TypeScript step plugin: tsc (type-check + emit) then componentize-js.
// Usage: node sdk/ts/build.mjs <plugin dir with tsconfig.json> <out.wasm>
import { componentize } from '@bytecodealliance/componentize-js';
import { execFileSync } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const [pluginDir, out] = process.argv.slice(2);
if (!pluginDir || !out) {
  console.error('usage: node sdk/ts/build.mjs <plugin dir> <out.wasm>');
  process.exit(2);
}
const here = dirname(fileURLToPath(import.meta.url));
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');

let t = performance.now();
execFileSync(process.execPath, [tsc, '-p', resolve(pluginDir, 'tsconfig.json')], { stdio: 'inherit' });
const tscMs = performance.now() - t;

t = performance.now();
const source = await readFile(resolve(pluginDir, 'dist/index.js'), 'utf8');
const { component, imports } = await componentize(source, {
  witPath: resolve(here, process.env.QODIFY_WIT ?? 'wit'),
  worldName: process.env.QODIFY_WORLD ?? 'qodify:plugin-ts/step-ts@0.1.1',
  disableFeatures: ['stdio', 'random', 'clocks', 'http', 'fetch-event'],
});
const componentizeMs = performance.now() - t;
await writeFile(out, component);
console.log(
  `${out}: ${component.length} bytes; tsc ${tscMs.toFixed(0)} ms, componentize ${componentizeMs.toFixed(0)} ms`,
);
console.log(`imports: ${JSON.stringify(imports)}`);
