import { describe, expect, it } from "vitest";
import { isFresh } from "./live";

describe("isFresh", () => {
  it("lets each stored event through once per subscription, and unstored ones always", () => {
    const sub = { seen: new Map<string, number>() };
    expect(isFresh(sub, "r1", 1)).toBe(true);
    expect(isFresh(sub, "r1", 2)).toBe(true);
    // A replay after a reconnect brings 2 again.
    expect(isFresh(sub, "r1", 2)).toBe(false);
    expect(isFresh(sub, "r2", 1)).toBe(true);
    expect(isFresh(sub, "r1", 0)).toBe(true);
    expect(isFresh(sub, "r1", 0)).toBe(true);
  });
});
