// The globals StarlingMonkey (componentize-js's JS engine) offers a step plugin with every
// componentize-js feature disabled. Deliberately not `lib: ["DOM"]`: fetch, timers and
// crypto.getRandomValues are not there. `console` is the SDK's: each call is a run-log line.
declare class TextEncoder {
  encode(input?: string): Uint8Array;
}
declare class TextDecoder {
  constructor(label?: string);
  decode(input?: Uint8Array): string;
}
declare var console: {
  log(...args: unknown[]): void;
  info(...args: unknown[]): void;
  debug(...args: unknown[]): void;
  trace(...args: unknown[]): void;
  warn(...args: unknown[]): void;
  error(...args: unknown[]): void;
};
