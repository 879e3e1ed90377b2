// The walk on a made-up tree: what counts, what is skipped, ties, and the report's exact text.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Context, GlobSet, Recorder } from '@qodify/plugin-sdk';

import { type Entry, human, reportJson, walk } from '../src/usage';

const tree: Record<string, Entry[]> = {
  '/c': [
    { name: 'backend', kind: 'directory', size: 0n },
    { name: 'current', kind: 'symlink', size: 12n },
    { name: 'notes.txt', kind: 'file', size: 5n },
    { name: 'tmp', kind: 'directory', size: 0n },
  ],
  '/c/backend': [
    { name: 'a.js', kind: 'file', size: 100n },
    { name: 'logs', kind: 'directory', size: 0n },
    { name: 'z.js', kind: 'file', size: 100n },
  ],
  '/c/backend/logs': [{ name: 'x.log', kind: 'file', size: 1000n }],
  '/c/tmp': [{ name: 'big', kind: 'file', size: 10_000n }],
};
const list = (p: string): Entry[] => {
  const e = tree[p];
  if (e === undefined) throw new Error(`listed ${p}`);
  return e;
};

test('files count, symlinks do not, excluded folders are skipped whole', () => {
  const rec = new Recorder();
  const usage = walk(Context.forTest({}, rec), list, '/c', GlobSet.build('exclude', ['tmp/**', '**/*.log']));
  assert.equal(usage.files, 3);
  assert.equal(usage.bytes, 205n);
  assert.deepEqual(usage.largest, { path: 'backend/a.js', bytes: 100n }, 'the first of equals wins');
  assert.deepEqual(usage.entries, [
    { name: 'backend', bytes: 200n },
    { name: 'notes.txt', bytes: 5n },
  ]);
  assert.deepEqual(rec.reports.at(-1), [100, '3 files, 205 bytes']);
});

test('without excludes everything is walked', () => {
  const usage = walk(Context.forTest(), list, '/c/', undefined);
  assert.equal(usage.files, 5);
  assert.deepEqual(usage.largest, { path: 'tmp/big', bytes: 10_000n });
});

test('a cancelled run stops the walk', () => {
  const rec = new Recorder();
  rec.cancelled = true;
  assert.throws(() => walk(Context.forTest({}, rec), list, '/c', undefined), { name: 'StepError' });
});

test('the report is the JSON the Rust twin writes', () => {
  const usage = walk(Context.forTest(), list, '/c', GlobSet.build('exclude', ['tmp']));
  assert.equal(
    reportJson('/c', usage, 2048),
    `{
  "root": "/c",
  "files": 4,
  "bytes": 1205,
  "largest": {
    "path": "backend/logs/x.log",
    "bytes": 1000
  },
  "entries": [
    {
      "name": "backend",
      "bytes": 1200
    },
    {
      "name": "notes.txt",
      "bytes": 5
    }
  ],
  "maxBytes": 2048
}
`,
  );
  assert.match(reportJson('/c', { files: 0, bytes: 0n, largest: undefined, entries: [] }, undefined), /"largest": null,\n  "entries": \[\],\n  "maxBytes": null\n/);
});

test('sizes for people', () => {
  assert.equal(human(5n), '5 B');
  assert.equal(human(1536), '1.5 KiB');
  assert.equal(human(10n * 2n ** 30n), '10.0 GiB');
});
