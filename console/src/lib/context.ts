/** The contexts every page reads: who is signed in, and where live events come from. */
import { createContext, useContext } from "react";
import type { Role } from "../api/client";
import type { LiveSource } from "./live";

export interface SessionInfo {
  name: string;
  role: Role;
  expiresAt: string;
}

export interface SessionValue {
  session: SessionInfo;
  /** Operators and admins run backups, restores, upgrades, approvals and deletes. */
  canOperate: boolean;
  /** Admins manage tokens. */
  isAdmin: boolean;
  signOut: () => void;
}

export const SessionContext = createContext<SessionValue | null>(null);

export function useSession(): SessionValue {
  const value = useContext(SessionContext);
  if (!value) throw new Error("useSession outside a signed-in console");
  return value;
}

/** Roles as capabilities. */
export function sessionValue(session: SessionInfo, signOut: () => void): SessionValue {
  return {
    session,
    canOperate: session.role === "operator" || session.role === "admin",
    isAdmin: session.role === "admin",
    signOut,
  };
}

const idle: LiveSource = {
  watchRun: () => () => {},
  watchCustomer: () => () => {},
  onStatus: () => () => {},
};

export const LiveContext = createContext<LiveSource>(idle);
