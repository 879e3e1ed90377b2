// Builds TypeScript step plugins into WebAssembly components, and runs their Node unit tests.
//
//   node sdk/ts/build.mjs build [--force] <plugin dir>=<out.wasm> ...
//   node sdk/ts/build.mjs test <dir> ...
//
// `build` (what `cargo xtask build` runs, once for every plugin): for each plugin folder
// (src/index.ts exporting `run`, tsconfig.json), unless its stamp says nothing changed:
// type-check with tsc, bundle plugin + SDK into one ES module with esbuild (the `qodify:*` and
// `wasi:*` imports stay imports: they are the component's WIT imports), componentize-js it
// against sdk/ts/wit's `step-ts` world with every optional engine feature off (`http` would
// import wasi:http, which the host refuses), append the folder's qodify-plugin.toml as the
// `qodify-manifest` custom section, and write <out.wasm> only when its bytes changed. The stamp
// (<out.wasm>.stamp) holds a SHA-256 over the plugin's files, the SDK, the WIT, this script and
// the lock file, so an unchanged plugin costs a hash.
//
// A plugin folder may hold `componentize.json` ({ "enableFeatures": ["http", "fetch-event"] })
// to keep some of those features: only the test that proves such a component is refused does.
//
// `test`: bundles every <dir>/test/**/*.test.ts (imports of `qodify:*`/`wasi:*` become stubs
// that throw, so only logic that does not call the host can run; use `Context.forTest`) into a
// temporary folder and runs `node --test` on them, with QODIFY_PLUGIN_DIR=<dir>. With
// QODIFY_HOST and QODIFY_PLUGINS_DIR set (`cargo xtask test` sets them), a test can run the
// built plugin on a fixture through the real host (`@qodify/plugin-sdk/testing`, `runStep`).
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const sdkEntry = join(here, 'src/index.ts');
const witDir = join(here, 'wit');
const worldName = 'qodify:plugin-ts/step-ts@0.1.1';
const defaultDisabled = ['stdio', 'random', 'clocks', 'http', 'fetch-event'];
const MANIFEST_FILE = 'qodify-plugin.toml';
const MANIFEST_SECTION = 'qodify-manifest';

/** Files of a folder, recursively, sorted; build output and dependencies left out. */
function filesUnder(dir) {
  const out = [];
  const walk = (d) => {
    for (const e of readdirSync(d, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      if (['node_modules', 'dist', 'generated', '.git'].includes(e.name)) continue;
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) out.push(p);
    }
  };
  walk(dir);
  return out;
}

/** What a plugin's component depends on: its folder, the SDK, the WIT, this script, the lock. */
function inputsHash(pluginDir) {
  const h = createHash('sha256');
  const add = (root, files) => {
    for (const f of files) {
      h.update(`${relative(root, f)}\0`);
      h.update(readFileSync(f));
      h.update('\0');
    }
  };
  // Its Node tests and fixtures are not part of the component.
  add(pluginDir, filesUnder(pluginDir).filter((f) => !relative(pluginDir, f).startsWith('test/')));
  add(here, filesUnder(join(here, 'src')));
  add(here, filesUnder(join(here, 'types')));
  // The WIT folder links to the repository's wit/pipeline.wit: read through the link.
  add(here, filesUnder(witDir));
  add(here, [join(here, 'build.mjs'), join(here, 'package-lock.json'), join(here, 'tsconfig.base.json')]);
  h.update(process.version);
  return h.digest('hex');
}

/**
 * Regenerates the WIT's TypeScript declarations (sdk/ts/generated, made by `npm ci`'s `prepare`)
 * when the WIT changed since: the types must be the contract the component is built against.
 */
function ensureTypes() {
  const h = createHash('sha256');
  for (const f of filesUnder(witDir)) h.update(`${relative(witDir, f)}\0`).update(readFileSync(f)).update('\0');
  const want = h.digest('hex');
  const stamp = join(here, 'generated/.wit-sha256');
  if (existsSync(stamp) && readFileSync(stamp, 'utf8').trim() === want) return;
  const r = spawnSync(process.execPath, [join(here, 'scripts/types.mjs')], { stdio: ['ignore', 'ignore', 'inherit'] });
  if (r.status !== 0) throw new Error('generating the WIT types failed (node sdk/ts/scripts/types.mjs)');
  writeFileSync(stamp, `${want}\n`);
}

/**
 * Type-checks the files of a tsconfig.json (only those under `only` when given: a build checks
 * src/, which must not see Node's types); returns the formatted errors, or '' when clean.
 */
async function typeCheck(ts, configPath, extra = {}, only = undefined) {
  const host = { ...ts.sys, onUnRecoverableConfigFileDiagnostic: (d) => { throw new Error(ts.flattenDiagnosticMessageText(d.messageText, '\n')); } };
  const parsed = ts.getParsedCommandLineOfConfigFile(configPath, extra, host);
  // StarlingMonkey's globals clash with Node's: a build checks against the former, tests the latter.
  const engineTypes = join(here, 'types/starlingmonkey.d.ts');
  const rootNames =
    only === undefined
      ? parsed.fileNames.filter((f) => resolve(f) !== engineTypes)
      : [...parsed.fileNames.filter((f) => resolve(f).startsWith(`${only}/`)), engineTypes];
  const program = ts.createProgram({ rootNames, options: { ...parsed.options, noEmit: true } });
  const diagnostics = [...parsed.errors, ...ts.getPreEmitDiagnostics(program)];
  if (diagnostics.length === 0) return '';
  return ts.formatDiagnostics(diagnostics, {
    getCanonicalFileName: (f) => f,
    getCurrentDirectory: () => process.cwd(),
    getNewLine: () => '\n',
  });
}

/** Bundles `entry` with the SDK into one ES module; host imports stay external (or stubbed). */
async function bundle(esbuild, entry, { stubHost = false, outfile } = {}) {
  const plugins = [
    {
      name: 'qodify-sdk',
      setup(b) {
        // The SDK is source, not an npm package: plugins import it by name wherever they are.
        b.onResolve({ filter: /^@qodify\/plugin-sdk$/ }, () => ({ path: sdkEntry }));
        // Node-only helpers for a plugin's tests; a component never imports them.
        b.onResolve({ filter: /^@qodify\/plugin-sdk\/testing$/ }, () => {
          if (!stubHost) return { errors: [{ text: '@qodify/plugin-sdk/testing is for tests under Node, not for a plugin' }] };
          return { path: join(here, 'src/testing.ts') };
        });
        if (stubHost) {
          b.onResolve({ filter: /^(qodify|wasi):/ }, (a) => ({ path: a.path, namespace: 'host-stub' }));
          b.onLoad({ filter: /.*/, namespace: 'host-stub' }, (a) => ({ contents: hostStub(a.path), loader: 'js' }));
        }
      },
    },
  ];
  const result = await esbuild.build({
    entryPoints: [entry],
    bundle: true,
    format: 'esm',
    platform: stubHost ? 'node' : 'neutral',
    target: 'es2022',
    external: stubHost ? [] : ['qodify:*', 'wasi:*'],
    write: outfile !== undefined,
    outfile,
    plugins,
    logLevel: 'silent',
    legalComments: 'none',
    // Readable names in stack traces of internal errors.
    keepNames: true,
  });
  return result.outputFiles?.[0]?.text;
}

/** A module standing in for a WIT interface under Node: every export throws "needs the host". */
function hostStub(specifier) {
  const names = new Set();
  for (const f of filesUnder(join(here, 'generated'))) {
    const text = readFileSync(f, 'utf8');
    const start = text.indexOf(`declare module '${specifier}' {`);
    if (start < 0) continue;
    const end = text.indexOf('\n}', start);
    for (const m of text.slice(start, end).matchAll(/^ {2}export (?:function|class) (\w+)/gm)) names.add(m[1]);
  }
  const fail = `throw new Error(${JSON.stringify(`${specifier} needs the host: run the plugin with qodify-host`)} + ' (' + name + ')')`;
  return [...names]
    .map((n) => `export function ${n}() { const name = ${JSON.stringify(n)}; ${fail}; }`)
    .join('\n');
}

/** A wasm custom section: id 0, size, name (LEB128 length + bytes), payload. */
export function customSection(name, payload) {
  const leb = (n) => {
    const out = [];
    do {
      let b = n & 0x7f;
      n >>>= 7;
      if (n !== 0) b |= 0x80;
      out.push(b);
    } while (n !== 0);
    return Buffer.from(out);
  };
  const nameBytes = Buffer.from(name, 'utf8');
  const body = Buffer.concat([leb(nameBytes.length), nameBytes, payload]);
  return Buffer.concat([Buffer.from([0]), leb(body.length), body]);
}

function readFeatures(pluginDir) {
  const path = join(pluginDir, 'componentize.json');
  if (!existsSync(path)) return defaultDisabled;
  const { enableFeatures = [] } = JSON.parse(readFileSync(path, 'utf8'));
  return defaultDisabled.filter((f) => !enableFeatures.includes(f));
}

async function build(args) {
  const force = args.includes('--force');
  const jobs = args
    .filter((a) => a !== '--force')
    .map((a) => {
      const at = a.lastIndexOf('=');
      if (at < 0) throw new Error(`expected <plugin dir>=<out.wasm>, got ${a}`);
      return { dir: resolve(a.slice(0, at)), out: resolve(a.slice(at + 1)) };
    });
  let tools;
  const load = async () => {
    // Loaded only when something must be built, so an up-to-date build stays a hash.
    tools ??= {
      ts: (await import('typescript')).default,
      esbuild: await import('esbuild'),
      componentize: (await import('@bytecodealliance/componentize-js')).componentize,
    };
    return tools;
  };
  let failed = 0;
  for (const { dir, out } of jobs) {
    const id = basename(out, '.wasm');
    const stampPath = `${out}.stamp`;
    const hash = inputsHash(dir);
    if (!force && existsSync(out) && existsSync(stampPath) && readFileSync(stampPath, 'utf8').trim() === hash) {
      continue;
    }
    const { ts, esbuild, componentize } = await load();
    ensureTypes();
    const started = performance.now();
    const errors = await typeCheck(ts, join(dir, 'tsconfig.json'), {}, join(dir, 'src'));
    if (errors !== '') {
      process.stderr.write(`${id}: type errors\n${errors}`);
      failed += 1;
      continue;
    }
    const checked = performance.now();
    let source;
    try {
      source = await bundle(esbuild, join(dir, 'src/index.ts'));
    } catch (e) {
      process.stderr.write(`${id}: bundling failed: ${e.message}\n`);
      failed += 1;
      continue;
    }
    const bundled = performance.now();
    let component;
    try {
      ({ component } = await componentize(source, {
        witPath: witDir,
        worldName,
        disableFeatures: readFeatures(dir),
      }));
    } catch (e) {
      process.stderr.write(`${id}: componentize failed: ${e.message ?? e}\n`);
      failed += 1;
      continue;
    }
    let bytes = Buffer.from(component);
    const manifest = join(dir, MANIFEST_FILE);
    if (existsSync(manifest)) {
      const text = readFileSync(manifest);
      try {
        new TextDecoder('utf-8', { fatal: true }).decode(text);
      } catch {
        process.stderr.write(`${id}: ${manifest} is not UTF-8 text\n`);
        failed += 1;
        continue;
      }
      bytes = Buffer.concat([bytes, customSection(MANIFEST_SECTION, text)]);
    }
    mkdirSync(dirname(out), { recursive: true });
    // Written only on change, so the host's compile cache and file times stay as they were.
    if (!existsSync(out) || !readFileSync(out).equals(bytes)) {
      const tmp = `${out}.tmp-${process.pid}`;
      writeFileSync(tmp, bytes);
      renameSync(tmp, out);
    }
    writeFileSync(stampPath, `${hash}\n`);
    const done = performance.now();
    console.error(
      `ts plugin ${id}: ${(bytes.length / 1e6).toFixed(1)} MB (tsc ${ms(checked - started)}, esbuild ${ms(bundled - checked)}, componentize ${ms(done - bundled)})`,
    );
  }
  if (failed > 0) {
    console.error(`${failed} TypeScript plugin(s) failed to build`);
    process.exit(1);
  }
}

function ms(n) {
  return `${n.toFixed(0)} ms`;
}

async function test(dirs) {
  ensureTypes();
  const ts = (await import('typescript')).default;
  const esbuild = await import('esbuild');
  const work = mkdtempSync(join(tmpdir(), 'qodify-ts-test-'));
  try {
    let ran = 0;
    for (const d of dirs.map((x) => resolve(x))) {
      const outs = [];
      const testDir = join(d, 'test');
      if (!existsSync(testDir)) continue;
      const files = filesUnder(testDir).filter((f) => f.endsWith('.test.ts'));
      if (files.length === 0) continue;
      const config = join(d, 'tsconfig.json');
      // Tests run under Node: they get Node's types, which a plugin's own code never sees.
      const errors = await typeCheck(ts, config, {
        types: ['node'],
        typeRoots: [join(here, 'node_modules/@types')],
      });
      if (errors !== '') {
        process.stderr.write(`${relative(process.cwd(), d)}: type errors\n${errors}`);
        process.exit(1);
      }
      for (const f of files) {
        const outfile = join(work, basename(d), relative(testDir, f).replace(/\.ts$/, '.mjs'));
        await bundle(esbuild, f, { stubHost: true, outfile });
        outs.push(outfile);
      }
      // One `node --test` per folder, told which folder it tests (fixtures are found from it).
      const r = spawnSync(process.execPath, ['--test', ...outs], {
        stdio: 'inherit',
        env: { ...process.env, QODIFY_PLUGIN_DIR: d },
      });
      if (r.status !== 0) process.exit(r.status ?? 1);
      ran += outs.length;
    }
    if (ran === 0) console.error('no test/**/*.test.ts files');
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

const [command, ...rest] = process.argv.slice(2);
if (command === 'build') await build(rest);
else if (command === 'test') await test(rest);
else {
  console.error('usage: node sdk/ts/build.mjs build [--force] <plugin dir>=<out.wasm>... | test <dir>...');
  process.exit(2);
}
