//! `GET /api/runs/{runId}/events`: a run's live events over SSE, with the plan's names
//! (`backup-progress`, `backup-completed`, `backup-failed`, `restore-…`, `upgrade-…`).
//!
//! A client first gets the stored events after `Last-Event-ID` (or `?after=`), then the live ones;
//! the SSE `id` is the event's per-run sequence number, so a reconnecting client resumes where it
//! stopped. The stream ends after the run's `*-completed` or `*-failed` event, or once the run is
//! found finished.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde::Deserialize;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::{Instant, Interval, MissedTickBehavior};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::blocking;
use super::error::{ApiError, ApiProblem, PROBLEM_JSON};
use super::extract::{self, ApiPath, ApiQuery, RunPath};
use crate::ops::{AppState, LiveEvent};
use crate::store::Store;

/// Comment lines that keep proxies from closing an idle stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How often a quiet stream checks whether its run has ended without a final event (a run
/// cancelled while queued, or a host that died); such a stream ends one period after.
const POLL: Duration = Duration::from_secs(2);

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(events))
}

/// Is this the last event of a run?
pub(super) fn is_terminal(name: &str) -> bool {
    name.ends_with("-completed") || name.ends_with("-failed")
}

/// One event of a run's stream as SSE frames it: the schema of `text/event-stream`, one event.
#[derive(ToSchema)]
#[schema(as = RunEvent)]
struct RunEvent {
    /// The event's per-run sequence number; send the last one back as `Last-Event-ID` to resume.
    /// (An event the store could not keep is sent live without one.)
    #[schema(pattern = "^[0-9]+$", nullable = false)]
    id: Option<String>,
    /// `backup-progress`, `backup-completed`, `backup-failed`, `restore-progress`,
    /// `restore-completed` or `restore-failed`; the stream ends after a `*-completed` or
    /// `*-failed` one.
    #[schema(example = "backup-progress")]
    event: String,
    /// The payload, JSON: `{runId, percent, step, message}` for progress, `{runId, backupId,
    /// size, durationMs}` when completed, `{runId, state, error, durationMs}` when failed.
    #[schema(content_media_type = "application/json")]
    data: String,
}

/// `?after=<seq>` of the event stream.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    /// Replay only the events after this sequence number (what `Last-Event-ID` says, for
    /// clients that cannot set headers).
    #[param(minimum = 0)]
    after: Option<u64>,
}

/// One event to send.
struct Item {
    seq: u64,
    name: String,
    data: serde_json::Value,
}

impl From<LiveEvent> for Item {
    fn from(e: LiveEvent) -> Self {
        Self {
            seq: e.seq,
            name: e.name,
            data: e.data,
        }
    }
}

/// The state of one client's stream.
struct Follow {
    store: Arc<dyn Store>,
    run_id: String,
    rx: broadcast::Receiver<LiveEvent>,
    queue: VecDeque<Item>,
    last_seq: u64,
    /// Send what is queued, then end.
    ending: bool,
    /// The run was seen finished; end at the next tick unless its final event comes first.
    finished_seen: bool,
    poll: Interval,
}

impl Follow {
    /// Queues the stored events after the last one sent.
    async fn refill(&mut self) {
        let (store, run_id, after) = (self.store.clone(), self.run_id.clone(), self.last_seq);
        match tokio::task::spawn_blocking(move || store.events(&run_id, after)).await {
            Ok(Ok(events)) => self.queue.extend(events.into_iter().map(|e| Item {
                seq: e.seq,
                name: e.name,
                data: e.data,
            })),
            Ok(Err(e)) => tracing::warn!("reading the events of run {}: {e}", self.run_id),
            Err(e) => tracing::warn!("reading the events of run {}: {e}", self.run_id),
        }
    }

    /// Is the run still queued or running? (`true` when that cannot be told.)
    async fn run_active(&self) -> bool {
        let (store, run_id) = (self.store.clone(), self.run_id.clone());
        match tokio::task::spawn_blocking(move || store.run(&run_id)).await {
            Ok(Ok(Some(run))) => run.state.is_active(),
            Ok(Ok(None)) => false,
            Ok(Err(e)) => {
                tracing::warn!("reading run {}: {e}", self.run_id);
                true
            }
            Err(_) => true,
        }
    }

    /// The next event to send, or `None` when the stream is over.
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(item) = self.queue.pop_front() {
                // seq 0: the hub could not store it; send it live, without an id.
                if item.seq != 0 {
                    if item.seq <= self.last_seq {
                        continue;
                    }
                    self.last_seq = item.seq;
                }
                if is_terminal(&item.name) {
                    self.queue.clear();
                    self.ending = true;
                }
                return Some(to_sse(item));
            }
            if self.ending {
                return None;
            }
            tokio::select! {
                received = self.rx.recv() => match received {
                    Ok(ev) if ev.run_id == self.run_id => self.queue.push_back(ev.into()),
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => self.refill().await,
                    Err(RecvError::Closed) => {
                        self.refill().await;
                        self.ending = true;
                    }
                },
                _ = self.poll.tick() => {
                    if self.finished_seen {
                        self.refill().await;
                        self.ending = true;
                    } else if !self.run_active().await {
                        self.finished_seen = true;
                    }
                }
            }
        }
    }
}

fn to_sse(item: Item) -> Event {
    let frame = RunEvent {
        id: (item.seq != 0).then(|| item.seq.to_string()),
        event: item.name,
        data: item.data.to_string(),
    };
    let mut event = Event::default();
    if let Some(id) = frame.id {
        event = event.id(id);
    }
    // Names come from the host; a line break would break the SSE framing (and axum panics on it).
    if !frame.event.contains(['\n', '\r']) {
        event = event.event(frame.event);
    }
    event.data(frame.data)
}

/// Follows a run's events (Server-Sent Events): first the stored ones after `Last-Event-ID` (or
/// `?after=`), then live ones, until the run's `*-completed` or `*-failed` event.
#[utoipa::path(
    get,
    path = "/runs/{runId}/events",
    tag = "runs",
    operation_id = "runEvents",
    params(
        RunPath,
        EventsQuery,
        ("Last-Event-ID" = Option<u64>, Header, nullable = false, description = "Resume after this event (the `id` of the last one received)."),
    ),
    responses(
        (status = 200, description = "An SSE stream: `id` is the event's per-run sequence number, `event` its name (`backup-progress`, `backup-completed`, `backup-failed`, `restore-…`), `data` its JSON payload.",
         content_type = "text/event-stream", body = RunEvent),
        (status = 400, description = "A bad run id, query or `Last-Event-ID`.", body = ApiProblem, content_type = PROBLEM_JSON),
        (status = 404, description = "No such run.", body = ApiProblem, content_type = PROBLEM_JSON),
    ),
)]
async fn events(
    State(state): State<AppState>,
    ApiPath(RunPath { run_id }): ApiPath<RunPath>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Result<Response, ApiError> {
    let run_id = extract::run_id(&run_id)?;
    let after = match headers.get("last-event-id") {
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .ok_or_else(|| {
                ApiError::bad_request("Last-Event-ID must be an event id (a sequence number)")
            })?,
        None => q.after.unwrap_or(0),
    };
    // Subscribe before reading what is stored, so no event falls between the two.
    let rx = state.hub.subscribe();
    let (replay, run) = {
        let (store, run_id) = (state.store.clone(), run_id.clone());
        blocking(move || Ok((store.events(&run_id, after)?, store.run(&run_id)?))).await?
    };
    let Some(run) = run else {
        return Err(ApiError::not_found(format!("no run {run_id}")));
    };
    let mut poll = tokio::time::interval_at(Instant::now() + POLL, POLL);
    poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let follow = Follow {
        store: state.store.clone(),
        run_id,
        rx,
        queue: replay
            .into_iter()
            .map(|e| Item {
                seq: e.seq,
                name: e.name,
                data: e.data,
            })
            .collect(),
        last_seq: after,
        ending: false,
        finished_seen: !run.state.is_active(),
        poll,
    };
    let mut response = Sse::new(stream(follow))
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response();
    // Reverse proxies (nginx) would otherwise buffer the stream.
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

fn stream(follow: Follow) -> impl Stream<Item = Result<Event, Infallible>> + Send {
    futures_util::stream::unfold(follow, |mut f| async move {
        f.next().await.map(|event| (Ok(event), f))
    })
}
