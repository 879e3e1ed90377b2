// Generates the guest TypeScript declarations of the `step-ts` world (sdk/ts/wit: the `step`
// world of wit/pipeline.wit plus wasi:filesystem) into sdk/ts/generated/. Usage: node scripts/types.mjs
//
// jco 1.35's CLI cannot read any WIT file: its WASI shim (preview2-shim 0.26) starts with no
// preopens, so `jco types` fails with "No such file or directory (os error 44)". We grant the
// shim instance that jco-transpile uses the one folder it needs, then call its API.
import { createRequire } from 'node:module';
import { dirname, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { mkdir, writeFile } from 'node:fs/promises';

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = resolve(here, '../../..');
const witDir = resolve(here, '../wit');
const outDir = resolve(here, '../generated');

// Resolve the shim exactly as jco-transpile resolves it, so we configure the same module instance.
const transpileRequire = createRequire(
  createRequire(import.meta.url).resolve('@bytecodealliance/jco-transpile'),
);
const shimUrl = pathToFileURL(transpileRequire.resolve('@bytecodealliance/preview2-shim/filesystem'));
const { _setPreopens } = await import(shimUrl.href);
// The repo root, not only sdk/ts/wit: wit/deps/qodify-pipeline links to the repo's wit/.
_setPreopens({ [repoRoot]: repoRoot });

const { generateGuestTypes } = await import('@bytecodealliance/jco-transpile');
const files = await generateGuestTypes(witDir, {
  worldName: 'step-ts',
  outDir: '',
});
await mkdir(outDir, { recursive: true });
for (const [name, bytes] of Object.entries(files)) {
  const path = resolve(outDir, name);
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, bytes);
  console.log(`wrote ${path}`);
}
