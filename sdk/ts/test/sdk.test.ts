// The SDK's pure parts under Node: SHA-256 against Node's, config schemas, globs with the rules
// of the Rust `glob-rules` crate, error mapping, and the test context.
import { createHash, randomBytes } from 'node:crypto';
import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  Context,
  GlobSet,
  InvalidConfig,
  NotFound,
  Output,
  Recorder,
  Sha256,
  StepError,
  parseConfig,
  parseSize,
  sha256Hex,
  t,
  toStepError,
} from '@qodify/plugin-sdk';

test('sha256 matches node:crypto for every size around the block boundaries, in any chunking', () => {
  for (const size of [0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 1000, 100_003]) {
    const data = randomBytes(size);
    const want = createHash('sha256').update(data).digest('hex');
    assert.equal(sha256Hex(data), want, `one piece, ${size} bytes`);
    const h = new Sha256();
    for (let at = 0; at < size; ) {
      const n = 1 + ((at * 7) % 97);
      h.update(data.subarray(at, at + n));
      at += n;
    }
    assert.equal(h.hex(), want, `chunked, ${size} bytes`);
    assert.equal(h.bytes, size);
  }
  assert.equal(sha256Hex('abc'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
});

const cfg = t.object({
  source: t.string(),
  exclude: t.array(t.string()).default([]),
  limit: t.size().optional(),
  mode: t.enum(['fast', 'slow']).default('fast'),
});

test('config: a valid table parses, defaults filled in, optional fields absent', () => {
  const c = parseConfig(cfg, '{"source":"/s","limit":"2KiB"}');
  assert.deepEqual(c, { source: '/s', exclude: [], limit: 2048, mode: 'fast' });
  const typed: { source: string; exclude: string[]; limit?: number; mode: 'fast' | 'slow' } = c;
  assert.ok(typed);
});

test('config errors are invalid-config and name the field path', () => {
  const err = (json: string) => {
    try {
      parseConfig(cfg, json);
    } catch (e) {
      assert.ok(e instanceof InvalidConfig, String(e));
      return e.message;
    }
    assert.fail(`${json} parsed`);
  };
  assert.equal(err('{"source":"/s","exclude":["a",3]}'), 'config field `exclude[1]`: expected a string, got 3');
  assert.match(err('{"source":"/s","exlude":[]}'), /^config field `exlude`: unknown field, expected one of `source`/);
  assert.equal(err('{}'), 'config field `source`: missing');
  assert.match(err('{"source":"/s","mode":"medium"}'), /^config field `mode`: expected one of "fast", "slow"/);
  assert.match(err('{"source":"/s","limit":"lots"}'), /^config field `limit`: expected a size/);
  assert.match(err('[1]'), /^config: expected a table/);
});

test('an empty or null config is an empty table', () => {
  for (const json of ['', 'null', '{}', '  ']) assert.deepEqual(parseConfig(t.object({}), json), {});
  assert.throws(() => parseConfig(t.object({}), '{"x":1}'), InvalidConfig);
});

test('sizes: bytes, binary and decimal units', () => {
  assert.equal(parseSize(10), 10);
  assert.equal(parseSize('10GiB'), 10 * 2 ** 30);
  assert.equal(parseSize('1.5 KiB'), 1536);
  assert.equal(parseSize('2GB'), 2e9);
  assert.equal(parseSize('7'), 7);
  assert.equal(parseSize('7 parsecs'), undefined);
  assert.equal(parseSize(-1), undefined);
});

// The cases of plugins/glob-rules/src/lib.rs.
test('globs are anchored at the root and `*` does not cross `/`', () => {
  const ex = GlobSet.build('exclude', ['tmp/**', 'logs/*.log', 'uploads'])!;
  for (const yes of ['tmp', 'tmp/a/b', 'logs/a.log', 'uploads']) assert.ok(ex.matches(yes), yes);
  for (const no of ['a/tmp/b', 'a/tmp', 'logs/old/a.log', 'backend/logs/a.log', 'public/uploads'])
    assert.ok(!ex.matches(no), no);
  const top = GlobSet.build('exclude', ['*.log'])!;
  assert.ok(top.matches('a.log'));
  assert.ok(!top.matches('logs/a.log'));
});

test('globs: `**/x/**` matches x at any depth, including the folder itself', () => {
  const ex = GlobSet.build('exclude', ['**/node_modules/**'])!;
  for (const yes of ['node_modules', 'node_modules/x', 'a/b/node_modules', 'a/b/node_modules/c/d']) assert.ok(ex.matches(yes), yes);
  for (const no of ['a/node_modules_old', 'my_node_modules']) assert.ok(!ex.matches(no), no);
  const carry = GlobSet.build('carry', ['**/node_modules'])!;
  assert.ok(carry.matches('node_modules') && carry.matches('packages/a/node_modules'));
  assert.ok(!carry.matches('my_node_modules'));
  const mid = GlobSet.build('exclude', ['a/**/z.txt', '{x,y}.bin', 'f[0-9].txt', 'g[!0-9].txt', 'h?.txt'])!;
  for (const yes of ['a/z.txt', 'a/b/c/z.txt', 'x.bin', 'y.bin', 'f3.txt', 'gx.txt', 'h1.txt']) assert.ok(mid.matches(yes), yes);
  for (const no of ['az.txt', 'b/a/z.txt', 'xy.bin', 'fx.txt', 'g3.txt', 'h/.txt', 'h12.txt']) assert.ok(!mid.matches(no), no);
});

test('globs: leading `/` and `./` and a trailing `/` are ignored; empty and bad patterns refused', () => {
  const ex = GlobSet.build('exclude', ['/dist/', './.next/**'])!;
  assert.ok(ex.matches('dist') && ex.matches('.next/cache') && !ex.matches('a/dist'));
  assert.equal(GlobSet.build('include', []), undefined);
  for (const empty of ['', '/', './', '//']) {
    assert.throws(() => GlobSet.build('carry', ['uploads', empty]), { message: `carry pattern \`${empty}\` is empty` });
  }
  assert.throws(() => GlobSet.build('include', ['./a[']), (e: unknown) => e instanceof InvalidConfig && e.message.startsWith('include pattern `./a[`: '));
  assert.throws(() => GlobSet.build('exclude', ['a**']), InvalidConfig);
});

test('whatever a step throws becomes a typed step error', () => {
  assert.deepEqual(toStepError(new NotFound('no /data/x')).toWit(), { kind: 'not-found', message: 'no /data/x' });
  assert.deepEqual(toStepError({ kind: 'io', message: 'disk full' }).toWit(), { kind: 'io', message: 'disk full' });
  const internal = toStepError(new TypeError('x is undefined'));
  assert.equal(internal.kind, 'internal');
  assert.match(internal.message, /^TypeError: x is undefined/);
  assert.equal(toStepError('boom').message, 'the step threw "boom"');
  assert.equal(new StepError('io', 'disk full').context('writing /out/a').message, 'writing /out/a: disk full');
});

test('a test context records progress and logs, and can be cancelled', () => {
  const rec = new Recorder();
  const ctx = Context.forTest({ params: { 'include.logs': true, retention: 5n, tier: 'paid' }, mounts: [{ guestPath: '/src', writable: false }, { guestPath: '/src/out', writable: true }] }, rec);
  assert.equal(ctx.paramBool('include.logs'), true);
  assert.equal(ctx.paramInt('retention'), 5);
  assert.equal(ctx.paramString('tier'), 'paid');
  assert.equal(ctx.paramInt('tier'), undefined);
  assert.equal(ctx.mountFor('/src/out/x')?.writable, true);
  assert.equal(ctx.mountFor('/src/a')?.writable, false);
  assert.equal(ctx.mountFor('/srcx'), undefined);
  ctx.report(150, 'done');
  ctx.warn('disk almost full');
  assert.deepEqual(rec.reports, [[100, 'done']]);
  assert.deepEqual(rec.logged('warn'), ['disk almost full']);
  ctx.checkCancelled();
  rec.cancelled = true;
  assert.throws(() => ctx.checkCancelled(), (e: unknown) => e instanceof StepError && e.kind === 'cancelled');
});

test('outputs keep their order and print values as text', () => {
  const out = new Output().value('files', 3).value('bytes', 10n).value('ok', true);
  assert.deepEqual(out.toWit().outputs, [
    { key: 'files', value: '3' },
    { key: 'bytes', value: '10' },
    { key: 'ok', value: 'true' },
  ]);
});
