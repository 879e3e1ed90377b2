/** Numbers for people: sizes, durations, relative and exact times. */

/** Bytes as B, KB, MB, GB or TB (decimal units, like disk vendors and browsers' downloads). */
export function formatBytes(bytes: number | null | undefined): string {
  if (bytes == null || !Number.isFinite(bytes)) return "—";
  if (bytes < 1000) return `${bytes} B`;
  const units = ["KB", "MB", "GB", "TB", "PB"];
  let value = bytes;
  let unit = -1;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  // Three significant digits at most: 1.23 GB, 12.3 MB, 123 KB.
  const digits = value < 10 ? 2 : value < 100 ? 1 : 0;
  return `${trim(value.toFixed(digits))} ${units[unit]}`;
}

function trim(fixed: string): string {
  return fixed.includes(".") ? fixed.replace(/\.?0+$/, "") : fixed;
}

/** A duration such as "450 ms", "4.2 s", "1 m 12 s", "2 h 5 m" or "3 d 4 h". */
export function formatDuration(ms: number | null | undefined): string {
  if (ms == null || !Number.isFinite(ms) || ms < 0) return "—";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 10_000) return `${trim((ms / 1000).toFixed(1))} s`;
  const total = Math.round(ms / 1000);
  const d = Math.floor(total / 86_400);
  const h = Math.floor((total % 86_400) / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const pair = (a: number, ua: string, b: number, ub: string) =>
    b === 0 ? `${a} ${ua}` : `${a} ${ua} ${b} ${ub}`;
  if (d > 0) return pair(d, "d", h, "h");
  if (h > 0) return pair(h, "h", m, "m");
  if (m > 0) return pair(m, "m", s, "s");
  return `${s} s`;
}

/** "about 1 m 12 s left", or an empty string when nothing is known. */
export function formatEta(seconds: number | null | undefined): string {
  if (seconds == null || !Number.isFinite(seconds) || seconds < 0) return "";
  if (seconds < 1) return "almost done";
  return `about ${formatDuration(seconds * 1000)} left`;
}

function toDate(value: string | number | Date): Date {
  return value instanceof Date ? value : new Date(value);
}

/** "just now", "5 m ago", "3 h ago", "2 d ago", "in 10 m", or the date past a month. */
export function formatRelative(value: string | number | Date, now: Date = new Date()): string {
  const date = toDate(value);
  if (Number.isNaN(date.getTime())) return "—";
  const seconds = Math.round((now.getTime() - date.getTime()) / 1000);
  const abs = Math.abs(seconds);
  const ago = (n: number, unit: string) => (seconds >= 0 ? `${n} ${unit} ago` : `in ${n} ${unit}`);
  if (abs < 45) return seconds >= 0 ? "just now" : "in a moment";
  if (abs < 3600) return ago(Math.max(1, Math.round(abs / 60)), "m");
  if (abs < 86_400) return ago(Math.floor(abs / 3600), "h");
  if (abs < 30 * 86_400) return ago(Math.floor(abs / 86_400), "d");
  return formatDate(date);
}

/** The day, e.g. "2026-11-26" (ISO order, unambiguous in every locale). */
export function formatDate(value: string | number | Date): string {
  const d = toDate(value);
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

/** The exact local time with its offset, e.g. "2026-11-26 10:15:00 (UTC+01:00)". */
export function formatExact(value: string | number | Date): string {
  const d = toDate(value);
  if (Number.isNaN(d.getTime())) return "";
  const pad = (n: number) => String(Math.abs(n)).padStart(2, "0");
  const offset = -d.getTimezoneOffset();
  const sign = offset >= 0 ? "+" : "-";
  const zone = `UTC${sign}${pad(Math.trunc(offset / 60))}:${pad(offset % 60)}`;
  return `${formatDate(d)} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())} (${zone})`;
}

/** Hours after which a customer's newest backup counts as overdue (the alert's 26 h). */
export const OVERDUE_HOURS = 26;

/** True when the backup is older than [`OVERDUE_HOURS`]. */
export function isOverdue(date: string | null | undefined, now: Date = new Date()): boolean {
  if (!date) return true;
  const t = new Date(date).getTime();
  return Number.isNaN(t) || now.getTime() - t > OVERDUE_HOURS * 3600 * 1000;
}

/** A percent with at most one decimal: "41.7 %". */
export function formatPercent(p: number | null | undefined): string {
  if (p == null || !Number.isFinite(p)) return "—";
  return `${trim(p.toFixed(1))} %`;
}
