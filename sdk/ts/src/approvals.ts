// Asking people to approve a decision (e.g. an `.env` merge that changes existing keys): the run
// shows the request to its watchers and waits for `qodify-host approve` or the API.
import * as wit from 'qodify:pipeline/approvals@0.1.2';
import type { ApprovalError } from 'qodify:pipeline/approvals@0.1.2';

import { Cancelled, CommandFailed, StepError } from './errors';

/**
 * Asks for approval and blocks until someone decides: `true` approved, `false` rejected. Throws
 * `CommandFailed` when nobody decided within `timeoutMs`, `Cancelled` when the run was cancelled.
 * `details` is shown as structured data: never put secret values in it.
 */
export function request(summary: string, details: unknown, timeoutMs: number): boolean {
  try {
    return wit.request(summary, JSON.stringify(details ?? null), BigInt(Math.max(0, Math.round(timeoutMs))));
  } catch (e) {
    if (e instanceof StepError) throw e;
    const payload = (e as { payload?: ApprovalError } | null)?.payload;
    if (payload?.tag === 'cancelled') throw new Cancelled();
    throw new CommandFailed(`nobody approved \`${summary}\` within ${Math.round(timeoutMs / 1000)}s; the step gave up`);
  }
}
