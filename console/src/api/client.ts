/**
 * The one API client: openapi-fetch typed from `schema.d.ts`, which `npm run gen:api` generates
 * from the host's `docs/openapi.json`. Requests carry the session cookie (never a token), every
 * non-GET request the CSRF header, and a 401 anywhere but the sign-in itself sends the person
 * back to sign in.
 */
import createClient, { type Middleware } from "openapi-fetch";
import type { components, paths } from "./schema";
export type ApiPaths = paths;
export type Schemas = components["schemas"];
/** What a signed-in person may do: viewers read, operators run things, admins manage tokens. */
export type Role = Schemas["Role"];
/** `GET|POST /api/session`: who is signed in, until when, and the CSRF token for changes. */
export type Session = Schemas["Session"];
/** `POST /api/tokens`: the only answer that carries the token itself. */
export type CreatedToken = Schemas["CreatedToken"];
export type CustomerSummary = Schemas["CustomerSummary"];
export type UpgradeTarget = Schemas["UpgradeTarget"];
export type Problem = Schemas["ApiProblem"];
export type Run = Schemas["Run"];
export type RunState = Schemas["RunState"];

let csrfToken: string | null = null;
let onUnauthorized: () => void = () => {};

/** The session's CSRF token, sent as `X-CSRF-Token` on every request that changes something. */
export function setCsrfToken(token: string | null): void {
  csrfToken = token;
}

/** What to do when the host says the session is gone (401). */
export function setUnauthorizedHandler(handler: () => void): void {
  onUnauthorized = handler;
}

const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

const session: Middleware = {
  onRequest({ request }) {
    if (!SAFE_METHODS.has(request.method) && csrfToken) {
      request.headers.set("X-CSRF-Token", csrfToken);
    }
    return request;
  },
  onResponse({ request, response }) {
    // The session routes answer 401 as part of signing in; elsewhere it means "signed out".
    if (response.status === 401 && !new URL(request.url).pathname.startsWith("/api/session")) {
      onUnauthorized();
    }
    return response;
  },
};

export const api = createClient<ApiPaths>({
  baseUrl: globalThis.location?.origin ?? "",
  credentials: "same-origin",
  // Looked up per call, so tests can replace `fetch` after this module loads.
  fetch: (request) => globalThis.fetch(request),
});
api.use(session);

/** A failed API call, with the problem's `detail` as its message. */
export class ApiError extends Error {
  readonly status: number;
  readonly problem: Partial<Problem> | null;

  constructor(status: number, message: string, problem: Partial<Problem> | null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.problem = problem;
  }
}

/**
 * Awaits an openapi-fetch call and gives its data, or throws an `ApiError` whose message says
 * what went wrong (the problem's `detail` when there is one).
 */
export async function call<T>(
  request: Promise<{ data?: T; error?: unknown; response: Response }>,
): Promise<T> {
  let result: { data?: T; error?: unknown; response: Response };
  try {
    result = await request;
  } catch (e) {
    throw new ApiError(
      0,
      `cannot reach the host (${e instanceof Error ? e.message : String(e)}); check that qodify-host serve is running and reload`,
      null,
    );
  }
  const { data, error, response } = result;
  if (response.ok) return data as T;
  const problem =
    error && typeof error === "object" ? (error as Partial<Problem>) : null;
  const detail =
    problem?.detail ??
    `the host answered ${response.status} ${response.statusText || ""}`.trim();
  throw new ApiError(response.status, detail, problem);
}

/** A message for people from anything thrown. */
export function errorText(e: unknown): string {
  if (e instanceof Error) return e.message;
  return String(e);
}
