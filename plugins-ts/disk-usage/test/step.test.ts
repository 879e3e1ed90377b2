// The built component on test/fixture through the real host (`qodify-host step`): the outputs,
// logs and progress are the expected JSON. Runs when QODIFY_HOST and QODIFY_PLUGINS_DIR are set
// (`cargo xtask test` sets them; CI must).
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';

import { hostSetup, pluginDir, readJson, runStep } from '@qodify/plugin-sdk/testing';

const setup = hostSetup();

test('qodify-host step on the fixture gives the expected JSON', { skip: setup === undefined && 'QODIFY_HOST is not set' }, () => {
  const report = runStep(setup!, {
    plugin: 'disk-usage',
    fixture: join(pluginDir(), 'test/fixture'),
    config: { root: '/customer', exclude: ['**/*.log'], maxBytes: '1KiB' },
  });
  assert.deepEqual(report, readJson(join(pluginDir(), 'test/step.expected.json')));
});

test('over its quota the step fails with a typed error naming it', { skip: setup === undefined && 'QODIFY_HOST is not set' }, () => {
  const report = runStep(setup!, {
    plugin: 'disk-usage',
    fixture: join(pluginDir(), 'test/fixture'),
    config: { root: '/customer', maxBytes: 50 },
  });
  assert.equal(report.status, 'failed');
  assert.match(String(report.error), /failed \(io\): \/customer uses 95 B \(95 bytes\), over its quota of 50 B \(maxBytes = 50\)$/);
});
