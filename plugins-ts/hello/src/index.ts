// Feasibility prototype (issue 14 item 1): a TypeScript step plugin that reads its config,
// reports progress, writes one file into a writable mount and returns it as an artifact, and
// (with `probe = true`) tries to leave its mounts.
import { log, report } from 'qodify:pipeline/progress@0.1.1';
import { stat } from 'qodify:pipeline/files@0.1.1';
import type { StepContext, StepResult, StepError } from 'qodify:pipeline/types@0.1.1';
import { getDirectories } from 'wasi:filesystem/preopens@0.2.12';
import type { Descriptor } from 'wasi:filesystem/types@0.2.12';

interface Config {
  output: string;
  greeting?: string;
  probe?: boolean;
}

/// The preopen holding a guest path, and the path relative to it.
function locate(path: string): [Descriptor, string] {
  let best: [Descriptor, string] | undefined;
  let bestLen = -1;
  for (const [dir, guest] of getDirectories()) {
    const prefix = guest.endsWith('/') ? guest : guest + '/';
    if ((path === guest || path.startsWith(prefix)) && guest.length > bestLen) {
      best = [dir, path === guest ? '.' : path.slice(prefix.length)];
      bestLen = guest.length;
    }
  }
  if (!best) throw fail('permission-denied', `${path} is outside the step's mounts`);
  return best;
}

function writeFile(path: string, data: Uint8Array): void {
  const [dir, rel] = locate(path);
  const file = dir.openAt({}, rel, { create: true, truncate: true }, { write: true });
  let off = 0;
  while (off < data.length) off += Number(file.write(data.subarray(off), BigInt(off)));
}

function readFile(dir: Descriptor, rel: string): Uint8Array {
  const file = dir.openAt({}, rel, {}, { read: true });
  const [bytes] = file.read(1n << 20n, 0n);
  return bytes;
}

function fail(kind: StepError['kind'], message: string): StepError {
  return { kind, message };
}

/// Describes what a denied call threw (componentize-js throws `ComponentError` with `payload`).
function describe(e: unknown): string {
  const payload = (e as { payload?: unknown }).payload;
  return `denied: ${JSON.stringify(payload ?? String(e))}`;
}

function probes(): string[] {
  const results: string[] = [];
  const attempt = (name: string, f: () => unknown) => {
    try {
      const r = f();
      results.push(`${name}: ALLOWED ${JSON.stringify(r, (_k, v) => (typeof v === 'bigint' ? String(v) : v))?.slice(0, 80)}`);
    } catch (e) {
      results.push(`${name}: ${describe(e)}`);
    }
  };
  const [root] = getDirectories()[0];
  attempt('preopens', () => getDirectories().map(([, g]) => g));
  attempt('open /etc/passwd (absolute, via a mount)', () => readFile(root, '/etc/passwd').length);
  attempt('open ../../../../etc/passwd', () => readFile(root, '../../../../etc/passwd').length);
  attempt('open .. (parent of mount)', () => root.openAt({}, '..', { directory: true }, { read: true }));
  attempt('files.stat /etc/passwd', () => stat('/etc/passwd'));
  attempt('locate /etc/passwd', () => locate('/etc/passwd'));
  return results;
}

export function run(ctx: StepContext): StepResult {
  const config: Config = JSON.parse(ctx.config.trim() === '' ? '{}' : ctx.config);
  if (typeof config.output !== 'string') throw fail('invalid-config', 'config field `output`: missing');
  report(10, 'starting');
  log('info', `hello from TypeScript for ${ctx.customer.domain}; mounts ${ctx.mounts.map((m) => m.guestPath).join(', ')}`);
  const text = `${config.greeting ?? 'hello'} ${ctx.customer.domain}\n`;
  const data = new TextEncoder().encode(text);
  writeFile(config.output, data);
  report(100, 'done');
  const outputs = [{ key: 'greeting', value: text.trim() }];
  if (config.probe) outputs.push(...probes().map((value, i) => ({ key: `probe-${i}`, value })));
  return {
    artifacts: [{ name: 'hello', path: config.output, size: BigInt(data.length), sha256: sha256Hex(data) }],
    outputs,
  };
}

// SHA-256 in plain JS: StarlingMonkey's crypto.subtle is async, `run` is not.
function sha256Hex(data: Uint8Array): string {
  const K = new Uint32Array([
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
  ]);
  const h = new Uint32Array([
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
  ]);
  const len = data.length;
  const padded = new Uint8Array(((len + 9 + 63) >> 6) << 6);
  padded.set(data);
  padded[len] = 0x80;
  const view = new DataView(padded.buffer);
  view.setUint32(padded.length - 8, Math.floor(len / 0x20000000));
  view.setUint32(padded.length - 4, (len << 3) >>> 0);
  const w = new Uint32Array(64);
  const rotr = (x: number, n: number) => (x >>> n) | (x << (32 - n));
  for (let off = 0; off < padded.length; off += 64) {
    for (let i = 0; i < 16; i++) w[i] = view.getUint32(off + i * 4);
    for (let i = 16; i < 64; i++) {
      const s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >>> 3);
      const s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >>> 10);
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) >>> 0;
    }
    let [a, b, c, d, e, f, g, hh] = h;
    for (let i = 0; i < 64; i++) {
      const t1 = (hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i]) >>> 0;
      const t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) >>> 0;
      hh = g; g = f; f = e; e = (d + t1) >>> 0; d = c; c = b; b = a; a = (t1 + t2) >>> 0;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
  }
  return Array.from(h, (x) => x.toString(16).padStart(8, '0')).join('');
}
