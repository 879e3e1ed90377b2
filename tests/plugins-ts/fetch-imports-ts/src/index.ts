// `fetch-imports-ts` test plugin: an ordinary step built with componentize-js's `http` and
// `fetch-event` features on (componentize.json), so its component imports wasi:http; the host
// must refuse it before it runs.
import { defineStep } from '@qodify/plugin-sdk';

export const run = defineStep((ctx) => {
  ctx.info('this step must never run');
});
