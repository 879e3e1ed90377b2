/**
 * Live events over Socket.IO: one socket for the whole console (the session cookie
 * authenticates it), subscriptions per run or per customer, replay then live, and after a
 * reconnect a fresh `subscribe` with `after` so nothing is missed or seen twice.
 */
import { io, type Socket } from "socket.io-client";
import type { LiveEvent } from "./liveRun";

export type Watcher = (event: LiveEvent) => void;
export type Unwatch = () => void;

/** Where live events come from; the console uses [`SocketLive`], tests a fake. */
export interface LiveSource {
  /** Every event of the run, stored ones first. */
  watchRun(runId: string, watcher: Watcher): Unwatch;
  /** Every event of the customer's runs from now on (and the stored ones of its active runs). */
  watchCustomer(customerId: string, watcher: Watcher): Unwatch;
  /** Tells when the connection fails or comes back (`null`: fine). */
  onStatus(listener: (problem: string | null) => void): Unwatch;
}

interface Subscription {
  kind: "run" | "customer";
  id: string;
  watcher: Watcher;
  /** The highest `seq` this subscription saw, per run. */
  seen: Map<string, number>;
}

const LIVE_EVENT = /-(progress|completed|failed)$/;

/** A subscription delivers each stored event once, however many replays bring it. */
export function isFresh(sub: { seen: Map<string, number> }, runId: string, seq: number): boolean {
  if (seq === 0) return true; // not stored: sent live only, once
  const last = sub.seen.get(runId) ?? 0;
  if (seq <= last) return false;
  sub.seen.set(runId, seq);
  return true;
}

export class SocketLive implements LiveSource {
  private socket: Socket | null = null;
  private subs = new Set<Subscription>();
  private statusListeners = new Set<(problem: string | null) => void>();

  private connect(): Socket {
    if (this.socket) return this.socket;
    // Same origin: the browser sends the HttpOnly session cookie with the handshake.
    const socket = io({ path: "/socket.io", withCredentials: true });
    socket.on("connect", () => {
      this.status(null);
      for (const sub of this.subs) this.subscribe(sub);
    });
    socket.on("connect_error", (err: Error) => {
      this.status(
        socket.active
          ? `live updates interrupted (${err.message}); reconnecting…`
          : `live updates refused: ${err.message}; reload the page to sign in again`,
      );
    });
    socket.on("disconnect", (reason) => {
      if (reason !== "io client disconnect") this.status("live updates interrupted; reconnecting…");
    });
    socket.onAny((name: string, data: unknown) => {
      if (!LIVE_EVENT.test(name) || !data || typeof data !== "object") return;
      this.dispatch({ name, data: data as Record<string, unknown> });
    });
    this.socket = socket;
    return socket;
  }

  private status(problem: string | null) {
    for (const l of this.statusListeners) l(problem);
  }

  private dispatch(event: LiveEvent) {
    const runId = typeof event.data.runId === "string" ? event.data.runId : "";
    const customerId = typeof event.data.customerId === "string" ? event.data.customerId : "";
    const seq = typeof event.data.seq === "number" ? event.data.seq : 0;
    for (const sub of [...this.subs]) {
      const mine = sub.kind === "run" ? sub.id === runId : sub.id === customerId;
      if (mine && isFresh(sub, runId, seq)) sub.watcher(event);
    }
  }

  private subscribe(sub: Subscription) {
    const socket = this.socket;
    if (!socket?.connected) return; // `connect` subscribes everything
    const payload =
      sub.kind === "run"
        ? { runId: sub.id, after: sub.seen.get(sub.id) ?? 0 }
        : { customerId: sub.id };
    socket.emit("subscribe", payload, (ack: { ok: boolean; error?: string } | undefined) => {
      if (ack && !ack.ok) this.status(`live updates: ${ack.error ?? "subscription refused"}`);
    });
  }

  private watch(kind: Subscription["kind"], id: string, watcher: Watcher): Unwatch {
    this.connect();
    const sub: Subscription = { kind, id, watcher, seen: new Map() };
    this.subs.add(sub);
    this.subscribe(sub);
    return () => {
      this.subs.delete(sub);
      const still = [...this.subs].some((s) => s.kind === kind && s.id === id);
      if (!still && this.socket?.connected) {
        this.socket.emit("unsubscribe", kind === "run" ? { runId: id } : { customerId: id }, () => {});
      }
    };
  }

  watchRun(runId: string, watcher: Watcher): Unwatch {
    return this.watch("run", runId, watcher);
  }

  watchCustomer(customerId: string, watcher: Watcher): Unwatch {
    return this.watch("customer", customerId, watcher);
  }

  onStatus(listener: (problem: string | null) => void): Unwatch {
    this.statusListeners.add(listener);
    return () => this.statusListeners.delete(listener);
  }

  /** Closes the socket (at sign-out); the next watch opens a new one with the new session. */
  close(): void {
    this.socket?.disconnect();
    this.socket = null;
    this.subs.clear();
  }
}
