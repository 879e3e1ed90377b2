// `console.*` into the run log: with componentize-js's `stdio` feature off a component has no
// stdout, so a stray `console.log` would vanish; here it becomes a `progress.log` line.
import { log } from 'qodify:pipeline/progress@0.1.2';
import type { Level } from 'qodify:pipeline/progress@0.1.2';

/** One argument as text: strings as they are, errors by name and message, the rest as JSON. */
export function formatArg(value: unknown): string {
  if (typeof value === 'string') return value;
  if (value instanceof Error) return `${value.name}: ${value.message}`;
  if (typeof value === 'bigint') return value.toString();
  if (value === undefined || typeof value === 'function' || typeof value === 'symbol') return String(value);
  try {
    return JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)) ?? String(value);
  } catch {
    return String(value);
  }
}

let routed = false;

/** Replaces `console` (once) so its methods write to the run log. */
export function routeConsole(): void {
  if (routed) return;
  routed = true;
  const at =
    (level: Level) =>
    (...args: unknown[]): void =>
      log(level, args.map(formatArg).join(' '));
  const routedConsole = {
    log: at('info'),
    info: at('info'),
    debug: at('debug'),
    trace: at('trace'),
    warn: at('warn'),
    error: at('error'),
  };
  Object.defineProperty(globalThis, 'console', { value: routedConsole, writable: true, configurable: true });
}
