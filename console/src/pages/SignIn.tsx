/** The sign-in screen: a token in, a session cookie out (the token is never stored). */
import { useState, type FormEvent } from "react";
import { api, call, errorText } from "../api/client";
import type { Session } from "../api/client";
import { ErrorAlert } from "../components/ui";

export function SignIn({
  notice,
  onSignedIn,
}: {
  notice: string | null;
  onSignedIn: (session: Session) => void;
}) {
  const [token, setToken] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const session = await call(api.POST("/api/session", { body: { token: token.trim() } }));
      setToken("");
      onSignedIn(session);
    } catch (err) {
      setError(errorText(err));
      setBusy(false);
    }
  }

  return (
    <main id="main" className="signin">
      <h1>qodify-host console</h1>
      {notice && <p role="status">{notice}</p>}
      <form onSubmit={submit} className="card">
        <label htmlFor="token">Token</label>
        <input
          id="token"
          type="password"
          autoComplete="current-password"
          required
          value={token}
          onChange={(e) => setToken(e.target.value)}
        />
        <p className="hint">
          A named token from <code>qodify-host tokens add &lt;name&gt; --role …</code>. It is sent
          once; the browser then keeps a session cookie.
        </p>
        <button type="submit" className="primary" disabled={busy}>
          Sign in
        </button>
        <ErrorAlert error={error} />
      </form>
    </main>
  );
}
