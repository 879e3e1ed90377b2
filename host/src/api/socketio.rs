//! Live events over Socket.IO at `/socket.io`, for clients that would rather use
//! `socket.io-client` than SSE: the same event names and payloads as
//! `GET /api/runs/{runId}/events` (plus `customerId` and `seq`), in rooms per run and per
//! customer. A client `subscribe`s to a run or a customer, first gets the stored events it missed,
//! then the live ones; a token (the handshake's `auth.token` or `Authorization: Bearer`) or the
//! console's session cookie is required to connect (any role: events are reads).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Map, Value, json};
use socketioxide::extract::{AckSender, SocketRef, TryData};
use socketioxide::handler::ConnectHandler as _;
use socketioxide::layer::SocketIoLayer;
use socketioxide::socket::Sid;
use socketioxide::{ParserError, SendError, SocketError, SocketIo};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{mpsc, oneshot};

use super::auth::{SESSION_COOKIE, bearer, cookie};
use super::events::is_terminal;
use super::extract;
use crate::ops::access;
use crate::ops::{AppState, LiveEvent};
use crate::store::{RunFilter, Store};

/// Packets waiting for one client; a replay is paced to what the client takes.
const MAX_BUFFER: usize = 1024;
/// An engine.io connection that has not joined the namespace by then is closed (a client that
/// was refused, or never sent its token).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A replay gives up on a client that takes nothing for this long, so one stuck client cannot
/// hold everybody's live events back for longer.
const REPLAY_STALL: Duration = Duration::from_secs(10);
/// How long a replay's high-water mark is remembered to drop live copies of replayed events; far
/// longer than the hub's channel ever holds an event.
const DEDUPE_FOR: Duration = Duration::from_secs(60);
/// A customer subscription replays its active runs among this many newest runs.
const CUSTOMER_RUNS: usize = 100;

/// Why a connection is refused (sent to the client as the `connect_error` message).
#[derive(Debug, thiserror::Error)]
enum AuthError {
    #[error(
        "Socket.IO is disabled because no token is configured: set QODIFY_API_TOKEN (or api_token \
         in qodify-host.toml) and restart qodify-host serve, or add a named token with \
         qodify-host tokens add"
    )]
    Disabled,
    #[error(
        "send a token in the handshake, `io(url, {{ auth: {{ token }} }})`, or as \
         `Authorization: Bearer <token>`, or sign in to the console"
    )]
    Missing,
    #[error("the token is wrong, or it was revoked")]
    Wrong,
    #[error("your session has ended; sign in again")]
    SessionEnded,
    #[error("the state store failed; see the host log")]
    Store,
}

/// What a client subscribes to (or unsubscribes from).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Run { run_id: String, after: u64 },
    Customer { customer_id: String },
}

impl Target {
    fn room(&self) -> String {
        match self {
            Target::Run { run_id, .. } => run_room(run_id),
            Target::Customer { customer_id } => customer_room(customer_id),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SubscribeRequest {
    run_id: Option<String>,
    customer_id: Option<String>,
    after: Option<u64>,
}

/// Work for the forwarder, which alone emits into rooms, so a replay and the live events after
/// it reach a client in order.
enum Command {
    Subscribe {
        socket: SocketRef,
        target: Target,
        reply: oneshot::Sender<Result<usize, String>>,
    },
    Unsubscribe {
        socket: SocketRef,
        target: Target,
        reply: oneshot::Sender<Result<usize, String>>,
    },
}

/// What every handler shares.
struct Shared {
    state: AppState,
    /// The forwarder's queue, started by the first connection (so a router built only for
    /// in-process requests starts no task).
    forwarder: OnceLock<mpsc::Sender<Command>>,
}

/// The Socket.IO layer for [`super::router`]: it answers `/socket.io/` and passes every other
/// request on.
pub(super) fn layer(state: &AppState) -> SocketIoLayer {
    let (layer, io) = SocketIo::builder()
        .max_buffer_size(MAX_BUFFER)
        .connect_timeout(CONNECT_TIMEOUT)
        .build_layer();
    let shared = Arc::new(Shared {
        state: state.clone(),
        forwarder: OnceLock::new(),
    });
    let auth = {
        let shared = shared.clone();
        move |socket: SocketRef, TryData(auth): TryData<Value>| async move {
            authorize(&shared.state, &socket, auth).await
        }
    };
    let connected = move |socket: SocketRef, io: SocketIo| async move {
        let tx = shared
            .forwarder
            .get_or_init(|| {
                let (tx, rx) = mpsc::channel(256);
                tokio::spawn(forward(io, shared.state.clone(), rx));
                tx
            })
            .clone();
        // Lets the forwarder leave one socket out of a room broadcast (see `Replayed`).
        socket.join(socket_room(socket.id));
        let on_subscribe = tx.clone();
        socket.on(
            "subscribe",
            move |socket: SocketRef, TryData(data): TryData<Value>, ack: AckSender| async move {
                let reply = match parse(data, true) {
                    Ok(target) => {
                        request(&on_subscribe, |reply| Command::Subscribe {
                            socket,
                            target,
                            reply,
                        })
                        .await
                    }
                    Err(e) => Err(e),
                };
                answer(ack, reply.map(|n| json!({ "ok": true, "replayed": n })));
            },
        );
        socket.on(
            "unsubscribe",
            move |socket: SocketRef, TryData(data): TryData<Value>, ack: AckSender| async move {
                let reply = match parse(data, false) {
                    Ok(target) => {
                        request(&tx, |reply| Command::Unsubscribe {
                            socket,
                            target,
                            reply,
                        })
                        .await
                    }
                    Err(e) => Err(e),
                };
                answer(ack, reply.map(|_| json!({ "ok": true })));
            },
        );
    };
    io.ns("/", connected.with(auth));
    layer
}

/// Deny by default, as for `/api`: the handshake's `auth.token`, else `Authorization: Bearer`,
/// else the session cookie.
async fn authorize(
    state: &AppState,
    socket: &SocketRef,
    auth: Result<Value, ParserError>,
) -> Result<(), AuthError> {
    let headers = &socket.req_parts().headers;
    let token = auth
        .ok()
        .and_then(|v| v.get("token").and_then(Value::as_str).map(str::to_owned))
        .or_else(|| bearer(headers).map(str::to_owned));
    let session = cookie(headers, SESSION_COOKIE).map(str::to_owned);
    let state = state.clone();
    tokio::task::spawn_blocking(move || {
        let store_failed = |e: access::AccessError| {
            tracing::warn!("Socket.IO sign-in: {e}");
            AuthError::Store
        };
        if let Some(token) = token {
            return match access::authenticate(&state, &token).map_err(store_failed)? {
                Some(_) => Ok(()),
                None if !access::enabled(&state).map_err(store_failed)? => Err(AuthError::Disabled),
                None => Err(AuthError::Wrong),
            };
        }
        if let Some(cookie) = session {
            return match access::session(&state, &cookie).map_err(store_failed)? {
                Some(_) => Ok(()),
                None => Err(AuthError::SessionEnded),
            };
        }
        if access::enabled(&state).map_err(store_failed)? {
            Err(AuthError::Missing)
        } else {
            Err(AuthError::Disabled)
        }
    })
    .await
    .map_err(|_| AuthError::Store)?
}

/// `{runId, after?}` or `{customerId}`; `after` only on subscribe.
fn parse(data: Result<Value, ParserError>, subscribe: bool) -> Result<Target, String> {
    const SHAPE: &str = "send { runId } (optionally with after: <seq>) or { customerId }";
    let data = data.map_err(|_| SHAPE.to_owned())?;
    let req: SubscribeRequest =
        serde_json::from_value(data).map_err(|e| format!("{SHAPE}: {e}"))?;
    match (req.run_id, req.customer_id) {
        (Some(id), None) => {
            if req.after.is_some() && !subscribe {
                return Err("`after` is for subscribe only".into());
            }
            Ok(Target::Run {
                run_id: extract::run_id(&id).map_err(|e| e.detail().to_owned())?,
                after: req.after.unwrap_or(0),
            })
        }
        (None, Some(id)) => {
            if req.after.is_some() {
                return Err(
                    "`after` is a run's sequence number: use it with runId, not customerId".into(),
                );
            }
            Ok(Target::Customer {
                customer_id: extract::customer_id(&id)
                    .map_err(|e| e.detail().to_owned())?
                    .to_owned(),
            })
        }
        _ => Err(format!("{SHAPE}, exactly one of them")),
    }
}

/// Hands a command to the forwarder and waits for its answer.
async fn request(
    tx: &mpsc::Sender<Command>,
    command: impl FnOnce(oneshot::Sender<Result<usize, String>>) -> Command,
) -> Result<usize, String> {
    const GONE: &str = "live events are not available: the host is stopping";
    let (reply, answer) = oneshot::channel();
    tx.send(command(reply)).await.map_err(|_| GONE.to_owned())?;
    answer.await.unwrap_or_else(|_| Err(GONE.to_owned()))
}

fn answer(ack: AckSender, reply: Result<Value, String>) {
    let body = reply.unwrap_or_else(|error| json!({ "ok": false, "error": error }));
    // The client may have sent no callback, or be gone; either way there is nobody to tell.
    let _ = ack.send(&body);
}

fn run_room(run_id: &str) -> String {
    format!("run:{run_id}")
}

fn customer_room(customer_id: &str) -> String {
    format!("customer:{customer_id}")
}

fn socket_room(sid: Sid) -> String {
    format!("socket:{sid}")
}

/// The SSE payload with `runId`, `customerId` and `seq` added, so a client that follows several
/// runs, or reconnects, can tell events apart and drop one it already has.
fn payload(run_id: &str, customer_id: &str, seq: u64, data: Value) -> Value {
    let mut obj = match data {
        Value::Object(m) => m,
        other => {
            let mut m = Map::new();
            m.insert("data".into(), other);
            m
        }
    };
    obj.insert("runId".into(), json!(run_id));
    obj.insert("customerId".into(), json!(customer_id));
    obj.insert("seq".into(), json!(seq));
    Value::Object(obj)
}

/// Replays' high-water marks: an event can be both stored (so replayed to a client that just
/// subscribed) and still waiting in the hub's channel; its live copy must skip that client.
#[derive(Default)]
struct Replayed {
    /// run id → (socket, last seq it got by replay, when).
    marks: HashMap<String, Vec<(Sid, u64, Instant)>>,
}

impl Replayed {
    fn mark(&mut self, run_id: &str, sid: Sid, seq: u64) {
        let marks = self.marks.entry(run_id.to_owned()).or_default();
        marks.retain(|(s, _, _)| *s != sid);
        marks.push((sid, seq, Instant::now()));
    }

    /// The sockets that already have `seq` of `run_id`; forgets marks that can no longer matter.
    fn skip(&mut self, run_id: &str, seq: u64, last: bool) -> Vec<Sid> {
        let Some(marks) = self.marks.get_mut(run_id) else {
            return Vec::new();
        };
        let skip = marks
            .iter()
            .filter(|(_, through, _)| *through >= seq)
            .map(|(sid, _, _)| *sid)
            .collect();
        marks.retain(|(_, through, _)| *through > seq);
        if last || marks.is_empty() {
            self.marks.remove(run_id);
        }
        skip
    }

    fn forget(&mut self, run_id: &str, sid: Sid) {
        if let Some(marks) = self.marks.get_mut(run_id) {
            marks.retain(|(s, _, _)| *s != sid);
        }
    }

    /// Marks of runs whose events stopped coming (finished before the replay, or a client gone).
    fn expire(&mut self) {
        self.marks.retain(|_, marks| {
            marks.retain(|(_, _, at)| at.elapsed() < DEDUPE_FOR);
            !marks.is_empty()
        });
    }
}

/// Emits every live event into its run's and its customer's room, and runs subscriptions in
/// between, so a client's replay comes before the live events it did not get by replay.
async fn forward(io: SocketIo, state: AppState, mut commands: mpsc::Receiver<Command>) {
    // Subscribed before any replay is read, so no event falls between the two.
    let mut rx = state.hub.subscribe();
    let mut replayed = Replayed::default();
    loop {
        tokio::select! {
            received = rx.recv() => match received {
                Ok(event) => emit_live(&io, &mut replayed, event).await,
                Err(RecvError::Lagged(n)) => tracing::warn!(
                    "Socket.IO clients missed {n} live events (the host fell behind); they get \
                     them by subscribing again with `after`"
                ),
                Err(RecvError::Closed) => return,
            },
            Some(command) = commands.recv() => match command {
                Command::Subscribe { socket, target, reply } => {
                    replayed.expire();
                    let result = subscribe(&state, &mut replayed, &socket, &target).await;
                    let _ = reply.send(result);
                }
                Command::Unsubscribe { socket, target, reply } => {
                    socket.leave(target.room());
                    if let Target::Run { run_id, .. } = &target {
                        replayed.forget(run_id, socket.id);
                    }
                    let _ = reply.send(Ok(0));
                }
            },
        }
    }
}

async fn emit_live(io: &SocketIo, replayed: &mut Replayed, e: LiveEvent) {
    // seq 0: the hub could not store it; it goes out live only, like on SSE.
    let skip = if e.seq == 0 {
        Vec::new()
    } else {
        replayed.skip(&e.run_id, e.seq, is_terminal(&e.name))
    };
    let mut to = io.to([run_room(&e.run_id), customer_room(&e.customer_id)]);
    if !skip.is_empty() {
        to = to.except(skip.into_iter().map(socket_room).collect::<Vec<_>>());
    }
    let data = payload(&e.run_id, &e.customer_id, e.seq, e.data);
    // Fails only for clients whose buffer is full or that are going away; at debug level so one
    // stuck client cannot flood the log (it catches up by subscribing again with `after`).
    if let Err(err) = to.emit(&e.name, &data).await {
        tracing::debug!(
            "emitting {} of run {} over Socket.IO: {err}",
            e.name,
            e.run_id
        );
    }
}

/// Replays what the client missed, then joins the room; returns how many events were replayed.
async fn subscribe(
    state: &AppState,
    replayed: &mut Replayed,
    socket: &SocketRef,
    target: &Target,
) -> Result<usize, String> {
    let store = state.store.clone();
    let t = target.clone();
    // (customer id, run id, the run's events after the client's mark, that mark)
    let runs = tokio::task::spawn_blocking(move || stored(store.as_ref(), &t))
        .await
        .map_err(|e| format!("reading the stored events failed: {e}"))??;
    let mut count = 0;
    for (customer_id, run_id, events, after) in runs {
        let mut through = after;
        for e in events {
            let name = e.name.clone();
            send_paced(
                socket,
                &name,
                &payload(&run_id, &customer_id, e.seq, e.data),
            )
            .await?;
            through = through.max(e.seq);
            count += 1;
        }
        if through > 0 {
            replayed.mark(&run_id, socket.id, through);
        }
    }
    socket.join(target.room());
    Ok(count)
}

type StoredRun = (String, String, Vec<crate::store::EventRecord>, u64);

/// The stored events a subscription replays: a run's after `after`; a customer's active runs', all
/// of them, oldest run first.
fn stored(store: &dyn Store, target: &Target) -> Result<Vec<StoredRun>, String> {
    let failed = |e: crate::store::StoreError| {
        tracing::warn!("Socket.IO replay: {e}");
        "reading the stored events failed".to_owned()
    };
    match target {
        Target::Run { run_id, after } => {
            let run = store
                .run(run_id)
                .map_err(failed)?
                .ok_or_else(|| format!("no run {run_id}"))?;
            let events = store.events(run_id, *after).map_err(failed)?;
            Ok(vec![(run.customer_id, run.id, events, *after)])
        }
        Target::Customer { customer_id } => {
            if store.customer(customer_id).map_err(failed)?.is_none() {
                return Err(format!("no customer {customer_id}"));
            }
            let runs = store
                .runs(&RunFilter {
                    customer_id: Some(customer_id.clone()),
                    limit: Some(CUSTOMER_RUNS),
                })
                .map_err(failed)?;
            let mut out = Vec::new();
            for run in runs.into_iter().rev().filter(|r| r.state.is_active()) {
                let events = store.events(&run.id, 0).map_err(failed)?;
                out.push((run.customer_id, run.id, events, 0));
            }
            Ok(out)
        }
    }
}

/// Emits to one client, waiting while its buffer is full rather than dropping a replayed event.
async fn send_paced(socket: &SocketRef, name: &str, data: &Value) -> Result<(), String> {
    let mut stalled_since: Option<Instant> = None;
    loop {
        match socket.emit(name, data) {
            Ok(()) => return Ok(()),
            Err(SendError::Socket(SocketError::InternalChannelFull))
                if stalled_since.is_none_or(|t| t.elapsed() < REPLAY_STALL) =>
            {
                stalled_since.get_or_insert_with(Instant::now);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => return Err(format!("the replay stopped: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUN: &str = "0190f1c2-7a3b-7c4d-8e5f-0123456789ab";

    #[test]
    fn subscriptions_name_a_run_or_a_customer() {
        assert_eq!(
            parse(Ok(json!({ "runId": RUN.to_uppercase(), "after": 3 })), true),
            Ok(Target::Run {
                run_id: RUN.into(),
                after: 3
            })
        );
        assert_eq!(
            parse(Ok(json!({ "customerId": "42" })), true),
            Ok(Target::Customer {
                customer_id: "42".into()
            })
        );
        for bad in [
            json!({}),
            json!({ "runId": RUN, "customerId": "42" }),
            json!({ "customerId": "42", "after": 1 }),
            json!({ "runId": "nope" }),
            json!({ "customerId": "../x" }),
            json!({ "runId": RUN, "extra": true }),
            json!("42"),
        ] {
            assert!(parse(Ok(bad.clone()), true).is_err(), "{bad}");
        }
        assert!(parse(Ok(json!({ "runId": RUN, "after": 1 })), false).is_err());
    }

    #[test]
    fn payloads_carry_run_customer_and_seq() {
        let p = payload(RUN, "42", 7, json!({ "runId": RUN, "percent": 50.0 }));
        assert_eq!(
            p,
            json!({ "runId": RUN, "customerId": "42", "seq": 7, "percent": 50.0 })
        );
    }

    #[test]
    fn live_copies_of_replayed_events_skip_that_client_only() {
        let (a, b) = (Sid::new(), Sid::new());
        let mut r = Replayed::default();
        r.mark(RUN, a, 5);
        r.mark(RUN, b, 3);
        assert_eq!(r.skip(RUN, 3, false), vec![a, b]);
        assert_eq!(r.skip(RUN, 5, false), vec![a]);
        assert!(r.skip(RUN, 6, false).is_empty());
        assert!(r.marks.is_empty());
        r.mark(RUN, a, 9);
        assert_eq!(r.skip(RUN, 4, true), vec![a]);
        assert!(r.marks.is_empty(), "the final event ends the run's marks");
    }
}
