/**
 * A tiny hash router: `#/customers/42/backups`. Hash routes need nothing from the server (any
 * path of the console is `/`), and links are real links, so they work with the keyboard,
 * middle-click and the back button.
 */
import { useSyncExternalStore, type AnchorHTMLAttributes } from "react";

function subscribe(onChange: () => void) {
  window.addEventListener("hashchange", onChange);
  return () => window.removeEventListener("hashchange", onChange);
}

function current(): string {
  const hash = window.location.hash.replace(/^#/, "");
  return hash.startsWith("/") ? hash : "/";
}

/** The current route, e.g. `/customers/42/backups?x=1` (always starting with `/`). */
export function useRoute(): string {
  return useSyncExternalStore(subscribe, current, () => "/");
}

/** Goes to a route (adds a history entry). */
export function navigate(to: string): void {
  window.location.hash = to;
}

/** The href of a route. */
export function href(to: string): string {
  return `#${to}`;
}

/** Splits `/customers/42/backups` into its decoded segments. */
export function segments(route: string): string[] {
  return route
    .split("?")[0]
    .split("/")
    .filter(Boolean)
    .map((s) => decodeURIComponent(s));
}

type LinkProps = { to: string } & Omit<AnchorHTMLAttributes<HTMLAnchorElement>, "href">;

export function Link({ to, ...rest }: LinkProps) {
  return <a href={href(to)} {...rest} />;
}
