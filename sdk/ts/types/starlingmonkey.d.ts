// The globals StarlingMonkey (componentize-js's JS engine) offers a step plugin with every
// componentize-js feature disabled. Deliberately not `lib: ["DOM"]`: fetch, timers and
// crypto.getRandomValues are not there.
declare class TextEncoder {
  encode(input?: string): Uint8Array;
}
declare class TextDecoder {
  constructor(label?: string);
  decode(input?: Uint8Array): string;
}
