/**
 * The console's shell: the session (signed in or the sign-in screen), the header with who is
 * signed in, the navigation, and the page of the current route.
 */
import { lazy, Suspense, useCallback, useEffect, useMemo, useRef, useState } from "react";
import { api, call, setCsrfToken, setUnauthorizedHandler } from "./api/client";
import type { Session } from "./api/client";
import { LiveContext, SessionContext, sessionValue, useSession, type SessionInfo } from "./lib/context";
import { SocketLive, type LiveSource } from "./lib/live";
import { Link, segments, useRoute } from "./lib/router";
import { Loading } from "./components/ui";
import { SignIn } from "./pages/SignIn";
import { Customers } from "./pages/Customers";
import { CustomerPage } from "./pages/Customer";

// Pages people open less often load on demand, so the first load stays small.
const Runs = lazy(() => import("./pages/Runs").then((m) => ({ default: m.Runs })));
const RunPage = lazy(() => import("./pages/RunPage").then((m) => ({ default: m.RunPage })));
const Audit = lazy(() => import("./pages/Audit").then((m) => ({ default: m.Audit })));
const Tokens = lazy(() => import("./pages/Tokens").then((m) => ({ default: m.Tokens })));

/**
 * Whether this browser signed in before (a flag, never the token): without it the console shows
 * the sign-in screen at once instead of asking the host, whose 401 browsers log as an error.
 */
const SIGNED_IN_FLAG = "qodify-console.signed-in";

function rememberSignedIn(on: boolean) {
  try {
    if (on) localStorage.setItem(SIGNED_IN_FLAG, "1");
    else localStorage.removeItem(SIGNED_IN_FLAG);
  } catch {
    // Storage may be off; then the console just asks the host each time.
  }
}

function maybeSignedIn(): boolean {
  try {
    return localStorage.getItem(SIGNED_IN_FLAG) === "1";
  } catch {
    return true;
  }
}

type Phase =
  | { kind: "checking" }
  | { kind: "signed-out"; notice: string | null }
  | { kind: "signed-in"; session: SessionInfo };

export interface AppProps {
  /** Where live events come from (tests pass a fake); a Socket.IO client by default. */
  live?: LiveSource;
}

export function App({ live: liveOverride }: AppProps) {
  const [phase, setPhase] = useState<Phase>({ kind: "checking" });

  const signedIn = useCallback((s: Session) => {
    setCsrfToken(s.csrfToken);
    rememberSignedIn(true);
    setPhase({ kind: "signed-in", session: { name: s.name, role: s.role, expiresAt: s.expiresAt } });
  }, []);

  useEffect(() => {
    setUnauthorizedHandler(() => {
      setCsrfToken(null);
      rememberSignedIn(false);
      setPhase({ kind: "signed-out", notice: "Your session has ended. Sign in again." });
    });
    let active = true;
    if (!maybeSignedIn()) {
      setPhase({ kind: "signed-out", notice: null });
      return;
    }
    call(api.GET("/api/session")).then(
      (s) => active && signedIn(s),
      () => {
        rememberSignedIn(false);
        if (active) setPhase({ kind: "signed-out", notice: null });
      },
    );
    return () => {
      active = false;
    };
  }, [signedIn]);

  const signOut = useCallback(() => {
    void call(api.DELETE("/api/session")).catch(() => {
      // Signed out either way: the cookie is gone or no longer valid.
    });
    setCsrfToken(null);
    rememberSignedIn(false);
    // The next person starts at the customers, not on a page their role may not have.
    window.history.replaceState(null, "", window.location.pathname);
    setPhase({ kind: "signed-out", notice: "You are signed out." });
  }, []);

  if (phase.kind === "checking") {
    return (
      <main id="main" className="center">
        <Loading what="the console" />
      </main>
    );
  }
  if (phase.kind === "signed-out") {
    return <SignIn notice={phase.notice} onSignedIn={signedIn} />;
  }
  return (
    <SignedIn session={phase.session} signOut={signOut} liveOverride={liveOverride} />
  );
}

function SignedIn({
  session,
  signOut,
  liveOverride,
}: {
  session: SessionInfo;
  signOut: () => void;
  liveOverride?: LiveSource;
}) {
  // One socket per session, closed at sign-out.
  const socket = useMemo(() => (liveOverride ? null : new SocketLive()), [liveOverride, session.name]);
  useEffect(() => () => socket?.close(), [socket]);
  const live = liveOverride ?? socket!;
  const value = useMemo(() => sessionValue(session, signOut), [session, signOut]);
  const [liveProblem, setLiveProblem] = useState<string | null>(null);
  useEffect(() => live.onStatus(setLiveProblem), [live]);

  return (
    <SessionContext.Provider value={value}>
      <LiveContext.Provider value={live}>
        <Shell liveProblem={liveProblem} />
      </LiveContext.Provider>
    </SessionContext.Provider>
  );
}

function Shell({ liveProblem }: { liveProblem: string | null }) {
  const route = useRoute();
  const parts = segments(route);
  const section = parts[0] ?? "customers";
  const { session, isAdmin, signOut } = useSession();
  const main = useRef<HTMLElement>(null);
  const first = useRef(true);
  useEffect(() => {
    // After following a link, start reading at the new page (as a page load would).
    if (first.current) {
      first.current = false;
      return;
    }
    main.current?.focus();
  }, [route]);

  const nav = [
    { to: "/customers", label: "Customers", key: "customers" },
    { to: "/runs", label: "Runs", key: "runs" },
    { to: "/audit", label: "Audit log", key: "audit" },
    ...(isAdmin ? [{ to: "/tokens", label: "Tokens", key: "tokens" }] : []),
  ];

  return (
    <>
      <a className="skip" href="#main" onClick={(e) => {
        e.preventDefault();
        main.current?.focus();
      }}>
        Skip to content
      </a>
      <header className="top">
        <div className="brand">qodify-host</div>
        <nav aria-label="Main">
          <ul>
            {nav.map((n) => (
              <li key={n.key}>
                <Link to={n.to} aria-current={section === n.key ? "page" : undefined}>
                  {n.label}
                </Link>
              </li>
            ))}
          </ul>
        </nav>
        <div className="who">
          <span>
            Signed in as {session.name} ({session.role})
          </span>
          <button type="button" onClick={signOut}>
            Sign out
          </button>
        </div>
      </header>
      <main id="main" ref={main} tabIndex={-1}>
        {liveProblem && <p className="notice" role="status">{liveProblem}</p>}
        <Suspense fallback={<Loading what="the page" />}>
          <Page parts={parts} isAdmin={isAdmin} />
        </Suspense>
      </main>
    </>
  );
}

function Page({ parts, isAdmin }: { parts: string[]; isAdmin: boolean }) {
  const [section, id, tab] = parts;
  switch (section ?? "customers") {
    case "customers":
      return id ? <CustomerPage key={id} id={id} tab={tab} /> : <Customers />;
    case "runs":
      return id ? <RunPage key={id} runId={id} /> : <Runs />;
    case "audit":
      return <Audit />;
    case "tokens":
      return isAdmin ? <Tokens /> : <NotFound what="Tokens are for admins." />;
    default:
      return <NotFound what={`There is no page ${parts.join("/")}.`} />;
  }
}

function NotFound({ what }: { what: string }) {
  return (
    <>
      <h1>Not found</h1>
      <p>{what}</p>
      <p>
        <Link to="/customers">Back to the customers</Link>
      </p>
    </>
  );
}
