// Follows qodify-host's live events over Socket.IO with the real socket.io-client, for
// tests/tests/socketio_pg.rs. Prints one JSON line per thing that happens on stdout:
//   {"ack": {...}}                      the answer to `subscribe`
//   {"event": "<name>", "data": {...}}  every event, exactly as received (no client-side dedupe,
//                                       so the test sees what the server sent)
//   {"connectError": "<message>"}       the server refused the connection
//   {"timeout": true}
// Exit: 0 after a `*-completed`, 1 after a `*-failed` or on timeout, 2 when the connection is
// refused, 3 when `subscribe` is refused.
//
// node watch.mjs <baseUrl> (--run <runId> [--after <seq>] | --customer <id>)
//                [--token <t> | --header-token <t> | --no-token] [--timeout <seconds>]
// The token defaults to $QODIFY_API_TOKEN; --header-token sends it as `Authorization: Bearer`.

import { io } from "socket.io-client";

const args = process.argv.slice(2);
const base = args.shift();
const opt = (name) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const runId = opt("--run");
const customerId = opt("--customer");
const timeout = Number(opt("--timeout") ?? 120) * 1000;
const headerToken = opt("--header-token");
const token = args.includes("--no-token")
  ? undefined
  : (opt("--token") ?? (headerToken ? undefined : process.env.QODIFY_API_TOKEN));

if (!base || (!runId && !customerId)) {
  console.error("usage: node watch.mjs <baseUrl> (--run <runId> [--after <seq>] | --customer <id>) [--token <t>]");
  process.exit(64);
}

const print = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const exit = (code) => {
  socket.close();
  process.exit(code);
};

const socket = io(base, {
  auth: token === undefined ? {} : { token },
  extraHeaders: headerToken ? { Authorization: `Bearer ${headerToken}` } : {},
  reconnectionDelayMax: 2000,
});

// The highest seq seen, so a reconnect resumes after it instead of replaying everything.
let lastSeq = Number(opt("--after") ?? 0);
// The server acks a subscribe after its replay, so a replayed final event comes before the ack;
// the exit waits for the ack so that it is printed too.
let acked = false;
let exitCode = null;
const finish = (code) => (acked ? exit(code) : (exitCode = code));

socket.on("connect", () => {
  acked = false;
  const request = runId ? { runId, after: lastSeq } : { customerId };
  socket.emit("subscribe", request, (ack) => {
    print({ ack });
    if (!ack.ok) exit(3);
    acked = true;
    if (exitCode !== null) exit(exitCode);
  });
});

socket.on("connect_error", (err) => {
  // A refusal by the server (its middleware) is final: socket.io-client does not retry it.
  if (!socket.active) {
    print({ connectError: err.message });
    exit(2);
  }
});

socket.onAny((event, data) => {
  print({ event, data });
  if (runId && typeof data?.seq === "number" && data.seq > lastSeq) lastSeq = data.seq;
  if (event.endsWith("-completed")) finish(0);
  if (event.endsWith("-failed")) finish(1);
});

setTimeout(() => {
  print({ timeout: true });
  exit(1);
}, timeout);
