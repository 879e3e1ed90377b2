// HTTP requests to the origins the step's `http` grants allow (health checks): GET and HEAD over
// plain `http://`, no redirects, bodies capped at 1 MiB by the host.
import * as wit from 'qodify:pipeline/http@0.1.2';
import type { HttpError } from 'qodify:pipeline/http@0.1.2';

import { Cancelled, InvalidConfig, Io, PermissionDenied, StepError } from './errors';

/** A response (any status: the caller decides what is healthy). */
export class Response {
  constructor(
    readonly status: number,
    /** Headers, names lowercase. */
    readonly headers: ReadonlyArray<readonly [string, string]>,
    /** The body (at most 1 MiB). */
    readonly body: Uint8Array,
  ) {}

  /** The first header named `name` (case-insensitive). */
  header(name: string): string | undefined {
    const lower = name.toLowerCase();
    return this.headers.find(([n]) => n === lower)?.[1];
  }

  /** The body as text. */
  text(): string {
    return new TextDecoder().decode(this.body);
  }

  /** The body parsed as JSON. */
  json(): unknown {
    return JSON.parse(this.text());
  }
}

/** Request options. */
export interface RequestOptions {
  headers?: Record<string, string>;
  /** Default 10 s; never longer than what is left of the step's deadline. */
  timeoutMs?: number;
}

function httpError(method: string, url: string, timeoutMs: number, thrown: unknown): StepError {
  if (thrown instanceof StepError) return thrown;
  const payload = (thrown as { payload?: HttpError } | null)?.payload;
  if (payload === undefined) return new Io(`${method} ${url}: ${String(thrown)}`);
  switch (payload.tag) {
    case 'not-granted':
      return new PermissionDenied(`${method} ${url}: ${payload.val}`);
    case 'bad-url':
      return new InvalidConfig(`${method} ${url}: ${payload.val}`);
    case 'transport':
      return new Io(`${method} ${url}: ${payload.val}`);
    case 'timed-out':
      return new Io(`${method} ${url}: no response within ${timeoutMs} ms`);
    case 'cancelled':
      return new Cancelled();
  }
}

/** Sends one request and waits for the response; a failure to get one is a `StepError`. */
export function send(method: 'GET' | 'HEAD', url: string, options: RequestOptions = {}): Response {
  const timeoutMs = options.timeoutMs ?? 10_000;
  try {
    const r = wit.send({
      method,
      url,
      headers: Object.entries(options.headers ?? {}),
      timeoutMs: BigInt(Math.max(0, Math.round(timeoutMs))),
    });
    return new Response(r.status, r.headers, r.body);
  } catch (e) {
    throw httpError(method, url, timeoutMs, e);
  }
}

/** `GET url`. */
export function get(url: string, options?: RequestOptions): Response {
  return send('GET', url, options);
}

/** `HEAD url`. */
export function head(url: string, options?: RequestOptions): Response {
  return send('HEAD', url, options);
}
