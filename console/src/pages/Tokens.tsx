/** Tokens (admins): the named tokens people sign in with; create one (shown once) or revoke one. */
import { useState, type FormEvent } from "react";
import { api, call, errorText } from "../api/client";
import type { CreatedToken, Role } from "../api/client";
import { Dialog, ErrorAlert, Loading, Time } from "../components/ui";
import { useSession } from "../lib/context";
import { useLoad } from "../lib/hooks";

const ROLES: Role[] = ["viewer", "operator", "admin"];

export function Tokens() {
  const { session } = useSession();
  const list = useLoad(() => call(api.GET("/api/tokens")), []);
  const [name, setName] = useState("");
  const [role, setRole] = useState<Role>("viewer");
  const [created, setCreated] = useState<CreatedToken | null>(null);
  const [copied, setCopied] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  // The token whose revocation waits for a confirmation.
  const [revoking, setRevoking] = useState<string | null>(null);

  async function create(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    setError(null);
    setCopied(false);
    try {
      const token = await call(api.POST("/api/tokens", { body: { name: name.trim(), role } }));
      setCreated(token);
      setName("");
      list.reload();
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  }

  async function revoke(tokenName: string) {
    setError(null);
    setBusy(true);
    try {
      await call(api.DELETE("/api/tokens/{name}", { params: { path: { name: tokenName } } }));
      if (created?.name === tokenName) setCreated(null);
      list.reload();
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
      setRevoking(null);
    }
  }

  async function copy() {
    if (!created) return;
    try {
      await navigator.clipboard.writeText(created.token);
      setCopied(true);
    } catch {
      setError("the browser did not allow copying; select the token and copy it by hand");
    }
  }

  return (
    <>
      <h1>Tokens</h1>
      <p className="muted">
        People sign in with a named token; its role says what they may do (viewer reads, operator
        runs backups, restores, upgrades and deletes, admin also manages tokens).
      </p>
      <ErrorAlert error={list.error ?? error} />
      {list.loading && !list.data ? (
        <Loading what="tokens" />
      ) : (
        <div className="table-wrap" tabIndex={0} role="region" aria-label="Tokens table">
          <table>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Role</th>
                <th scope="col">Created</th>
                <th scope="col">Last used</th>
                <th scope="col">Actions</th>
              </tr>
            </thead>
            <tbody>
              {(list.data?.tokens ?? []).map((t) => (
                <tr key={t.name}>
                  <td>{t.name}</td>
                  <td>{t.role}</td>
                  <td>
                    <Time value={t.createdAt} />
                  </td>
                  <td>{t.lastUsedAt ? <Time value={t.lastUsedAt} /> : "never"}</td>
                  <td>
                    <button
                      type="button"
                      className="danger"
                      aria-label={`Revoke ${t.name}`}
                      onClick={() => setRevoking(t.name)}
                    >
                      Revoke
                    </button>
                    {t.name === session.name && <span className="muted small"> (yours)</span>}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <Dialog open={revoking != null} title={`Revoke token ${revoking ?? ""}`} onClose={() => setRevoking(null)}>
        <p>
          <strong>{revoking}</strong> stops working at once, and every console session opened with it
          ends. It cannot be undone: the person needs a new token.
          {revoking === session.name && " This is your own token: you will be signed out."}
        </p>
        <div className="actions">
          <button type="button" className="danger" disabled={busy} onClick={() => revoking && revoke(revoking)}>
            Revoke token
          </button>
          <button type="button" onClick={() => setRevoking(null)}>
            Keep it
          </button>
        </div>
      </Dialog>
      <h2>Create a token</h2>
      <form onSubmit={create} className="stack card">
        <label htmlFor="token-name">Name</label>
        <input
          id="token-name"
          required
          placeholder="e.g. ayse"
          value={name}
          onChange={(e) => setName(e.target.value)}
        />
        <label htmlFor="token-role">Role</label>
        <select id="token-role" value={role} onChange={(e) => setRole(e.target.value as Role)}>
          {ROLES.map((r) => (
            <option key={r} value={r}>
              {r}
            </option>
          ))}
        </select>
        <div className="actions">
          <button type="submit" className="primary" disabled={busy}>
            Create token
          </button>
        </div>
      </form>
      {created && (
        <section className="card" aria-labelledby="new-token-head">
          <h2 id="new-token-head">
            Token created for {created.name} ({created.role})
          </h2>
          <p>Copy it now: it is shown only once.</p>
          <div className="row">
            <label htmlFor="new-token">New token</label>
            <input
              id="new-token"
              readOnly
              value={created.token}
              onFocus={(e) => e.currentTarget.select()}
            />
            <button type="button" onClick={copy}>
              Copy
            </button>
          </div>
          {copied && <p role="status">Copied.</p>}
        </section>
      )}
    </>
  );
}
