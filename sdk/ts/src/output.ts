// What a step returns on success: the files it produced (artifacts, which the host re-hashes)
// and key/value outputs for later steps and the run record.
import type { Artifact, StepResult } from 'qodify:pipeline/types@0.1.2';

import { openRead } from './fs';
import { Sha256 } from './sha256';

export type { Artifact };

/** A value an output can hold; it is stored as text. */
export type Printable = string | number | bigint | boolean;

/** A step's result, built with chained calls: `new Output().value('files', 3).artifact(a)`. */
export class Output {
  readonly values: Array<[string, string]> = [];
  readonly artifacts: Artifact[] = [];

  /** Adds a key/value output. */
  value(key: string, value: Printable): this {
    this.values.push([key, String(value)]);
    return this;
  }

  /** Adds an artifact (see `artifact()` to hash a file). */
  artifact(artifact: Artifact): this {
    this.artifacts.push(artifact);
    return this;
  }

  /** The WIT record. */
  toWit(): StepResult {
    return {
      artifacts: this.artifacts,
      outputs: this.values.map(([key, value]) => ({ key, value })),
    };
  }
}

/**
 * What a step function may return: an `Output`, a plain object with values and artifacts, or
 * nothing. `values` must be an object type, not an `interface` (which has no index signature).
 */
export type StepReturn =
  | Output
  | { values?: Record<string, Printable> | Array<[string, Printable]>; artifacts?: Artifact[] }
  | void;

/** Normalises what a step function returned. */
export function toOutput(result: StepReturn): Output {
  if (result instanceof Output) return result;
  const out = new Output();
  if (result === undefined) return out;
  const values = result.values ?? [];
  for (const [k, v] of Array.isArray(values) ? values : Object.entries(values)) out.value(k, v);
  for (const a of result.artifacts ?? []) out.artifact(a);
  return out;
}

/**
 * An artifact for the file at guest path `path`: its size and SHA-256, read in chunks (the host
 * checks both again before it records the artifact).
 */
export function artifact(name: string, path: string): Artifact {
  const reader = openRead(path);
  const hash = new Sha256();
  try {
    for (const chunk of reader.chunks()) hash.update(chunk);
  } finally {
    reader.close();
  }
  return { name, path, size: BigInt(hash.bytes), sha256: hash.hex() };
}
