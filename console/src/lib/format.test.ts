import { describe, expect, it } from "vitest";
import {
  formatBytes,
  formatDuration,
  formatEta,
  formatExact,
  formatPercent,
  formatRelative,
  isOverdue,
} from "./format";

describe("formatBytes", () => {
  it.each([
    [null, "—"],
    [0, "0 B"],
    [999, "999 B"],
    [1000, "1 KB"],
    [1536, "1.54 KB"],
    [12_345_678, "12.3 MB"],
    [524_288_000, "524 MB"],
    [1_500_000_000, "1.5 GB"],
    [2_000_000_000_000, "2 TB"],
  ])("%s bytes read as %s", (bytes, text) => {
    expect(formatBytes(bytes)).toBe(text);
  });
});

describe("formatDuration", () => {
  it.each([
    [undefined, "—"],
    [450, "450 ms"],
    [4200, "4.2 s"],
    [12_000, "12 s"],
    [72_000, "1 m 12 s"],
    [120_000, "2 m"],
    [7_500_000, "2 h 5 m"],
    [273_600_000, "3 d 4 h"],
  ])("%s ms reads as %s", (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
  });

  it("says how long is left", () => {
    expect(formatEta(72)).toBe("about 1 m 12 s left");
    expect(formatEta(null)).toBe("");
  });
});

describe("formatRelative", () => {
  const now = new Date("2026-11-26T12:00:00Z");
  it.each([
    ["2026-11-26T11:59:40Z", "just now"],
    ["2026-11-26T11:55:00Z", "5 m ago"],
    ["2026-11-26T09:00:00Z", "3 h ago"],
    ["2026-11-24T12:00:00Z", "2 d ago"],
    ["2026-11-26T12:10:00Z", "in 10 m"],
  ])("%s is %s", (at, text) => {
    expect(formatRelative(at, now)).toBe(text);
  });

  it("shows the date past a month and the exact time with its zone", () => {
    expect(formatRelative("2026-01-02T12:00:00Z", now)).toMatch(/^2026-01-0[12]$/);
    expect(formatExact("2026-11-26T10:15:00Z")).toMatch(
      /^2026-11-2[56] \d\d:\d\d:00 \(UTC[+-]\d\d:\d\d\)$/,
    );
  });

  it("flags backups older than 26 h, and none at all, as overdue", () => {
    expect(isOverdue("2026-11-25T11:00:00Z", now)).toBe(false);
    expect(isOverdue("2026-11-25T09:00:00Z", now)).toBe(true);
    expect(isOverdue(null, now)).toBe(true);
  });

  it("keeps one decimal of a percent", () => {
    expect(formatPercent(41.66)).toBe("41.7 %");
    expect(formatPercent(100)).toBe("100 %");
  });
});
