import { screen, waitFor } from "@testing-library/react";
import { render } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it } from "vitest";
import { App } from "./App";
import { FakeLive, mockApi } from "./test/helpers";

const session = { name: "ayse", role: "operator", expiresAt: "2099-01-01T00:00:00Z", csrfToken: "csrf-123" };

describe("sign-in", () => {
  it("signs in with a token, shows who is signed in, and sends the CSRF token on mutations", async () => {
    let signedIn = false;
    const calls = mockApi({
      "GET /api/session": () => (signedIn ? { body: session } : { status: 401, body: { detail: "not signed in" } }),
      "POST /api/session": (req) => {
        if ((req.body as { token: string }).token !== "s3cret") return { status: 401, body: { detail: "unknown token" } };
        signedIn = true;
        return { body: session };
      },
      "DELETE /api/session": { status: 204 },
      "GET /api/customers": { body: { customers: [] } },
    });
    const user = userEvent.setup();
    render(<App live={new FakeLive()} />);

    const token = await screen.findByLabelText("Token");
    expect(token.getAttribute("type")).toBe("password");
    // A browser that never signed in is not sent to the host for a 401 first.
    expect(calls).toHaveLength(0);
    await user.type(token, "wrong");
    await user.click(screen.getByRole("button", { name: "Sign in" }));
    expect((await screen.findByRole("alert")).textContent).toContain("unknown token");

    await user.clear(token);
    await user.type(token, "s3cret");
    await user.click(screen.getByRole("button", { name: "Sign in" }));
    expect(await screen.findByText("Signed in as ayse (operator)")).toBeTruthy();
    expect(screen.getByRole("link", { name: "Customers" })).toBeTruthy();
    expect(screen.getByRole("link", { name: "Audit log" })).toBeTruthy();
    // Tokens are for admins.
    expect(screen.queryByRole("link", { name: "Tokens" })).toBeNull();
    // The token went in the body only, never in the address or storage.
    expect(calls.every((c) => !c.search.includes("s3cret"))).toBe(true);
    expect(JSON.stringify({ ...localStorage })).not.toContain("s3cret");
    expect(localStorage.getItem("qodify-console.signed-in")).toBe("1");

    await user.click(screen.getByRole("button", { name: "Sign out" }));
    expect(await screen.findByLabelText("Token")).toBeTruthy();
    const signOut = calls.find((c) => c.method === "DELETE" && c.path === "/api/session");
    expect(signOut?.headers.get("X-CSRF-Token")).toBe("csrf-123");
    expect(calls.filter((c) => c.method === "GET").every((c) => !c.headers.has("X-CSRF-Token"))).toBe(true);
  });

  it("goes back to sign-in when the host answers 401 to a page", async () => {
    localStorage.setItem("qodify-console.signed-in", "1");
    mockApi({
      "GET /api/session": { body: { ...session, role: "admin" } },
      "GET /api/customers": { status: 401, body: { detail: "session expired" } },
    });
    render(<App live={new FakeLive()} />);
    expect(await screen.findByLabelText("Token")).toBeTruthy();
    await waitFor(() => expect(screen.getByRole("status").textContent).toContain("session has ended"));
    expect(localStorage.getItem("qodify-console.signed-in")).toBeNull();
  });

  it("shows admins the Tokens link when the session is still there", async () => {
    localStorage.setItem("qodify-console.signed-in", "1");
    mockApi({
      "GET /api/session": { body: { ...session, role: "admin" } },
      "GET /api/customers": { body: { customers: [] } },
    });
    render(<App live={new FakeLive()} />);
    expect(await screen.findByRole("link", { name: "Tokens" })).toBeTruthy();
  });
});
