/**
 * Routes the host is gaining in issue 12 that are not in `docs/openapi.json` yet, typed by hand
 * in the shape `openapi-typescript` generates, so the client can use them through the same
 * openapi-fetch client. When the host's document lists them, run `npm run gen:api` and delete
 * the matching entries here (`ApiPaths` in `client.ts` lets the generated ones win otherwise).
 */
import type { components } from "./schema";

type Schemas = components["schemas"];
type Headers = { [name: string]: unknown };
type Json<T> = { headers: Headers; content: { "application/json": T } };
type Problem = { headers: Headers; content: { "application/problem+json": Schemas["ApiProblem"] } };
type NoContent = { headers: Headers; content?: never };
type Body<T> = { content: { "application/json": T } };
type NoParams = { query?: never; header?: never; path?: never; cookie?: never };
type PathParams<P> = { query?: never; header?: never; path: P; cookie?: never };
type Errors = { 400: Problem; 401: Problem; 403: Problem; 404: Problem; 409: Problem; 500: Problem; 503: Problem };

/** What a signed-in person may do: viewers read, operators run things, admins manage tokens. */
export type Role = "viewer" | "operator" | "admin";

/** `GET|POST /api/session`: who is signed in, until when, and the CSRF token for mutations. */
export interface Session {
  name: string;
  role: Role;
  expiresAt: string;
  csrfToken: string;
}

/** One named token (never its secret). */
export interface TokenInfo {
  name: string;
  role: Role;
  createdAt: string;
  lastUsedAt: string | null;
}

/** `POST /api/tokens`: the only answer that carries the token itself. */
export interface CreatedToken {
  name: string;
  role: Role;
  token: string;
}

/** How the customer's folder is laid out. */
export type Layout = "current" | "blue-green" | "missing";

/** A customer's newest backup, as the customers list shows it. */
export interface LastBackup {
  backupId: string | null;
  date: string;
  result: string;
  size: number | null;
  runId: string;
}

/** A customer's queued or running run, as the customers list shows it. */
export interface ActiveRun {
  runId: string;
  pipeline: string;
  state: Schemas["RunState"];
  percent: number | null;
  step: string | null;
}

/** One line of `GET /api/customers`. */
export interface CustomerSummary {
  id: string;
  domain: string;
  tier: string | null;
  layout: Layout;
  release: string | null;
  lastBackup: LastBackup | null;
  activeRun: ActiveRun | null;
}

/** `.env` keys a release adds, changes or removes (names only). */
export interface EnvChanges {
  added: string[];
  changed: string[];
  removed: string[];
}

/** One release of the catalog, and whether this customer may upgrade to it. */
export interface UpgradeTarget {
  version: string;
  allowed: boolean;
  reason: string | null;
  notes: string | null;
  envChanges?: EnvChanges;
}

/** `GET /api/customers/{id}/upgrades`. */
export interface UpgradeCatalog {
  current: { layout: Layout; release: string | null };
  targets: UpgradeTarget[];
}

/** Paths in the shape of the generated `paths`. */
export interface PendingPaths {
  "/api/session": {
    parameters: NoParams;
    get: {
      parameters: NoParams;
      requestBody?: never;
      responses: { 200: Json<Session>; 401: Problem };
    };
    post: {
      parameters: NoParams;
      requestBody: Body<{ token: string }>;
      responses: { 200: Json<Session>; 400: Problem; 401: Problem };
    };
    delete: {
      parameters: NoParams;
      requestBody?: never;
      responses: { 204: NoContent; 401: Problem; 403: Problem };
    };
  };
  "/api/tokens": {
    parameters: NoParams;
    get: {
      parameters: NoParams;
      requestBody?: never;
      responses: { 200: Json<{ tokens: TokenInfo[] }> } & Errors;
    };
    post: {
      parameters: NoParams;
      requestBody: Body<{ name: string; role: Role }>;
      responses: { 201: Json<CreatedToken> } & Errors;
    };
  };
  "/api/tokens/{name}": {
    parameters: NoParams;
    delete: {
      parameters: PathParams<{ name: string }>;
      requestBody?: never;
      responses: { 204: NoContent } & Errors;
    };
  };
  "/api/customers": {
    parameters: NoParams;
    get: {
      parameters: {
        query?: { q?: string; limit?: number; before?: string };
        header?: never;
        path?: never;
        cookie?: never;
      };
      requestBody?: never;
      responses: {
        200: Json<{ customers: CustomerSummary[]; nextBefore?: string | null }>;
      } & Errors;
    };
  };
  "/api/customers/{id}/upgrades": {
    parameters: NoParams;
    get: {
      parameters: PathParams<{ id: string }>;
      requestBody?: never;
      responses: { 200: Json<UpgradeCatalog> } & Errors;
    };
    post: {
      parameters: PathParams<{ id: string }>;
      requestBody: Body<Schemas["CreateUpgrade"]>;
      responses: { 202: Json<Schemas["RunSubmitted"]> } & Errors;
    };
  };
  "/api/runs": {
    parameters: NoParams;
    get: {
      parameters: {
        query?: { customer?: string; limit?: number; state?: string; before?: string };
        header?: never;
        path?: never;
        cookie?: never;
      };
      requestBody?: never;
      responses: { 200: Json<Schemas["RunList"] & { nextBefore?: string | null }> } & Errors;
    };
  };
  "/api/audit": {
    parameters: NoParams;
    get: {
      parameters: {
        query?: {
          customer?: string;
          limit?: number;
          action?: string;
          actor?: string;
          before?: string;
        };
        header?: never;
        path?: never;
        cookie?: never;
      };
      requestBody?: never;
      responses: { 200: Json<Schemas["AuditList"] & { nextBefore?: string | null }> } & Errors;
    };
  };
}
