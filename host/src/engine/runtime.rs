//! The sandboxed step runtime: one wasmtime `Engine` per process, compiled components cached on
//! disk and in memory, and one short-lived `Store` per step with its limits attached (memory via a
//! limiter that counts all of an instance's memories together, wall-clock time and cancellation
//! via epoch deadlines and, for a guest blocked inside a WASI call, by racing the call's future
//! against the deadline and the cancel flag on a step thread the caller can leave behind; WASI
//! resource limits set explicitly).

use std::collections::HashMap;
use std::hash::{Hash as _, Hasher as _};
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use wasmtime::component::{Component, HasData, Linker, ResourceTable};
use wasmtime::{
    Config, Engine, ResourceLimiter, Store, StoreLimits, StoreLimitsBuilder, UpdateDeadline,
};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::engine::bindings::{Step, StepPre, types};
use crate::engine::caps::StepHost;
use crate::engine::plugins::PluginBytes;
use crate::events::{Event, EventSink, LogLevel};
use crate::pipeline::units::{human_bytes, human_duration};

mod compile_cache;
use compile_cache::CompileCache;

/// How often the epoch advances: the granularity of deadlines and cancellation.
const EPOCH_TICK: Duration = Duration::from_millis(10);
/// How long the caller waits past a deadline or cancel for the step's thread to answer before it
/// leaves a thread stuck in a system call behind. Host capabilities watch the same deadline and
/// clean up in this time (a granted program's process group is killed and reaped).
const ABANDON_GRACE: Duration = Duration::from_secs(1);
/// Bytes a guest may pass to the host in one call (WASI and ours).
const HOSTCALL_FUEL: usize = 16 << 20;
/// Live WASI resources (files, streams) per step.
const MAX_RESOURCES: usize = 4096;
/// Largest `get-random-bytes` request.
const MAX_RANDOM_BYTES: u64 = 1 << 20;
/// Lines of a step's stdout/stderr kept in the run log.
const MAX_STDIO_LINES: u64 = 10_000;

/// Why a step did not succeed. Every variant names the step and the cause.
#[derive(Debug, thiserror::Error)]
pub enum StepFailure {
    /// The memory limit stopped it.
    #[error("step {step} exceeded its {limit} memory limit")]
    Memory {
        /// Step id.
        step: String,
        /// The limit, human-readable.
        limit: String,
    },
    /// The deadline stopped it.
    #[error("step {step} ran past its {limit} time limit and was stopped")]
    Timeout {
        /// Step id.
        step: String,
        /// The limit, human-readable.
        limit: String,
    },
    /// The run was cancelled.
    #[error("step {step} was cancelled")]
    Cancelled {
        /// Step id.
        step: String,
    },
    /// The plugin trapped (a panic, or a wasm fault).
    #[error("step {step} crashed: {message}")]
    Trap {
        /// Step id.
        step: String,
        /// The trap, with the plugin's backtrace when there is one.
        message: String,
    },
    /// The plugin returned an error.
    #[error("step {step} failed ({kind}): {message}")]
    Plugin {
        /// Step id.
        step: String,
        /// Error kind as the plugin classified it.
        kind: String,
        /// The plugin's message.
        message: String,
    },
    /// The plugin returned something the host refuses (too many outputs, a bad artifact).
    #[error("step {step} returned an invalid result: {message}")]
    InvalidResult {
        /// Step id.
        step: String,
        /// What is wrong.
        message: String,
    },
    /// The host could not set the step up (plugin missing, grant refused, compile error).
    #[error("step {step}: {message}")]
    Setup {
        /// Step id.
        step: String,
        /// What failed, with what to do.
        message: String,
    },
}

/// Why the host interrupted a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopReason {
    Timeout,
    Cancelled,
}

/// The step's memory budget over all of its linear memories together (a component may have
/// several, and `StoreLimits` bounds each one alone), with tables and counts bounded by a
/// `StoreLimits`. It remembers when it refused memory, so the error names the limit instead of
/// the misleading trap a failed allocation turns into.
struct StepLimiter {
    inner: StoreLimits,
    /// Bytes the step may hold in all its memories together.
    budget: usize,
    /// Bytes of all memories together, as granted so far. A growth granted here that wasmtime
    /// then fails to carry out stays counted: erring towards refusing is the safe side, and
    /// `memory_grow_failed` cannot tell which growth failed (it is also called for growth this
    /// limiter never saw).
    used: usize,
    memory_refused: bool,
}

impl StepLimiter {
    fn new(budget: usize) -> Self {
        Self {
            inner: StoreLimitsBuilder::new()
                .instances(64)
                .tables(64)
                .memories(16)
                .table_elements(1_000_000)
                .build(),
            budget,
            used: 0,
            memory_refused: false,
        }
    }
}

impl ResourceLimiter for StepLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Memories only grow and live as long as the store, so the sum of each growth is the
        // sum of the current sizes.
        let grow = desired.saturating_sub(current);
        if maximum.is_some_and(|max| desired > max) {
            return Ok(false);
        }
        if self.used.saturating_add(grow) > self.budget {
            self.memory_refused = true;
            return Ok(false);
        }
        self.used += grow;
        Ok(true)
    }
    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }
    fn instances(&self) -> usize {
        self.inner.instances()
    }
    fn tables(&self) -> usize {
        self.inner.tables()
    }
    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

/// Store data of one step.
pub struct StepState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: StepLimiter,
    stop: Option<StopReason>,
    host: StepHost,
}

impl WasiView for StepState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Our capabilities see only the [`StepHost`], never the WASI state.
struct HostCaps;

impl HasData for HostCaps {
    type Data<'a> = &'a mut StepHost;
}

/// A step's stdout/stderr, forwarded line by line into the run log (capped).
#[derive(Clone)]
struct LogStream {
    step: String,
    events: Arc<dyn EventSink>,
    secrets: Arc<Vec<String>>,
    state: Arc<Mutex<(Vec<u8>, u64)>>,
    /// The last lines, kept to explain a crash (a panic message is on stderr).
    tail: Arc<Mutex<std::collections::VecDeque<String>>>,
}

impl LogStream {
    fn new(step: &str, events: Arc<dyn EventSink>, secrets: Vec<String>) -> Self {
        Self {
            step: step.to_owned(),
            events,
            secrets: Arc::new(secrets),
            state: Default::default(),
            tail: Default::default(),
        }
    }

    fn push(&self, bytes: &[u8], flush: bool) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (buf, lines) = &mut *st;
        buf.extend_from_slice(bytes);
        loop {
            let cut = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => i,
                None if flush && !buf.is_empty() => buf.len(),
                None if buf.len() > 4096 => 4096,
                None => break,
            };
            let line: Vec<u8> = buf.drain(..cut.min(buf.len())).collect();
            if buf.first() == Some(&b'\n') {
                buf.remove(0);
            }
            *lines += 1;
            let text = String::from_utf8_lossy(&line);
            {
                let mut tail = self.tail.lock().unwrap_or_else(|e| e.into_inner());
                if tail.len() == 4 {
                    tail.pop_front();
                }
                tail.push_back(crate::engine::caps::redact(text.trim_end(), &self.secrets));
            }
            if *lines <= MAX_STDIO_LINES {
                self.events.emit(Event::StepLog {
                    step: self.step.clone(),
                    level: LogLevel::Info,
                    message: crate::engine::caps::redact(
                        text.trim_end_matches('\r'),
                        &self.secrets,
                    ),
                });
            } else if *lines == MAX_STDIO_LINES + 1 {
                self.events.emit(Event::StepLog {
                    step: self.step.clone(),
                    level: LogLevel::Warn,
                    message: format!("stdout/stderr limit of {MAX_STDIO_LINES} lines reached; the rest is dropped"),
                });
            }
            if buf.is_empty() {
                break;
            }
        }
    }
}

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for LogStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.push(buf, false);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        self.push(&[], true);
        Poll::Ready(Ok(()))
    }
}

/// What one step call needs.
pub struct StepCall {
    /// The step's context as the plugin will see it.
    pub context: types::StepContext,
    /// Capabilities (mounts, grants, events, cancellation, deadline).
    pub host: StepHost,
    /// Memory limit in bytes.
    pub memory_bytes: u64,
    /// Wall-clock limit.
    pub timeout: Duration,
}

/// The engine, linker and compiled plugins of one host process.
pub struct Runtime {
    engine: Engine,
    linker: Linker<StepState>,
    cache: CompileCache,
    compiled: Mutex<HashMap<String, StepPre<StepState>>>,
    stop_ticker: Arc<AtomicBool>,
    step_threads: Arc<StepThreads>,
}

/// A job for a step thread.
type StepJob = Box<dyn FnOnce() + Send>;

/// The threads steps run on: started when none is idle, kept for the next step (starting a
/// thread per step tripled the per-step overhead). A thread left stuck in a system call is
/// simply not idle; it ends when its call returns.
#[derive(Default)]
struct StepThreads {
    idle: Mutex<Vec<std::sync::mpsc::Sender<StepJob>>>,
    closed: AtomicBool,
}

impl StepThreads {
    fn run(self: &Arc<Self>, job: StepJob) -> std::io::Result<()> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let job = match idle {
            Some(tx) => match tx.send(job) {
                Ok(()) => return Ok(()),
                Err(std::sync::mpsc::SendError(job)) => job,
            },
            None => job,
        };
        let threads = self.clone();
        std::thread::Builder::new()
            .name("qodify-step".into())
            .spawn(move || {
                let (tx, rx) = std::sync::mpsc::channel();
                let mut job = job;
                loop {
                    job();
                    if threads.closed.load(Ordering::Relaxed) {
                        break;
                    }
                    let mut idle = threads.idle.lock().unwrap_or_else(|e| e.into_inner());
                    idle.push(tx.clone());
                    drop(idle);
                    match rx.recv() {
                        Ok(next) => job = next,
                        Err(_) => break,
                    }
                }
            })?;
        Ok(())
    }

    /// Lets every thread end once it is idle.
    fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        let idle = std::mem::take(&mut *self.idle.lock().unwrap_or_else(|e| e.into_inner()));
        for tx in idle {
            // An empty job: the thread runs it, sees `closed` and ends.
            let _ = tx.send(Box::new(|| {}));
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
        self.step_threads.close();
    }
}

impl Runtime {
    /// Creates the engine and linker; compiled plugins are cached under `<data_dir>/cache`.
    pub fn new(data_dir: &Path) -> anyhow::Result<Self> {
        let mut config = Config::new();
        // Steps run async (`run_until`), so a guest waiting inside a WASI call (a sleep, a poll)
        // is a pending future the host can drop at its deadline or on cancel; epoch interruption
        // still stops a guest spinning in its own code.
        config.epoch_interruption(true);
        config.wasm_component_model(true);
        config.parallel_compilation(true);
        let engine = Engine::new(&config)
            .map_err(anyhow::Error::from)
            .context("creating the wasmtime engine")?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(anyhow::Error::from)?;
        Step::add_to_linker::<StepState, HostCaps>(&mut linker, |s: &mut StepState| &mut s.host)
            .map_err(anyhow::Error::from)?;

        let cache = CompileCache::open(
            data_dir
                .join("cache")
                .join("components")
                .join(engine_key(&engine)),
            &data_dir.join("cache").join("key"),
        );

        let stop_ticker = Arc::new(AtomicBool::new(false));
        {
            let engine = engine.weak();
            let stop = stop_ticker.clone();
            std::thread::Builder::new()
                .name("epoch-ticker".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        match engine.upgrade() {
                            Some(e) => e.increment_epoch(),
                            None => break,
                        }
                    }
                })
                .context("starting the epoch thread")?;
        }

        Ok(Self {
            engine,
            linker,
            cache,
            compiled: Mutex::new(HashMap::new()),
            stop_ticker,
            step_threads: Arc::default(),
        })
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Where compiled plugins are cached.
    pub fn cache_dir(&self) -> &Path {
        self.cache.dir()
    }

    /// Compiles (or loads from the caches) a plugin and pre-links it.
    pub fn prepare(&self, plugin: &PluginBytes) -> anyhow::Result<StepPre<StepState>> {
        if let Some(pre) = self
            .compiled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&plugin.sha256)
        {
            return Ok(pre.clone());
        }
        let component = self.load_component(plugin)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .context("the plugin needs imports the host does not provide; is it built against qodify:pipeline@0.1.x?")?;
        let pre = StepPre::new(pre)
            .map_err(anyhow::Error::from)
            .context("the plugin does not export the qodify:pipeline step world")?;
        self.compiled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(plugin.sha256.clone(), pre.clone());
        Ok(pre)
    }

    fn load_component(&self, plugin: &PluginBytes) -> anyhow::Result<Component> {
        if let Some(component) = self.cache.load(&self.engine, &plugin.sha256) {
            return Ok(component);
        }
        let component = Component::new(&self.engine, &plugin.bytes)
            .map_err(anyhow::Error::from)
            .context("compiling the plugin (is it a wasm32-wasip2 component?)")?;
        if let Err(e) = self.cache.store(&plugin.sha256, &component) {
            tracing::warn!(
                "cannot write compile cache in {}: {e:#}",
                self.cache.dir().display()
            );
        }
        Ok(component)
    }

    /// Runs one step to completion in a fresh store. Returns the plugin's result and the
    /// capabilities (whose mounts the caller uses to check artifacts).
    ///
    /// The store runs on a thread of its own, so the step ends for the caller at its deadline or
    /// on cancel even when the guest is stuck in a blocking system call the host cannot
    /// interrupt (the `open` of a FIFO without a writer): after a short grace the caller gets
    /// the timeout or the cancel, and the step's thread ends by itself when the call returns,
    /// interrupted by the epoch deadline before the guest runs on.
    pub fn call(
        &self,
        pre: &StepPre<StepState>,
        call: StepCall,
    ) -> Result<(types::StepResult, StepHost), StepFailure> {
        let step = call.host.step_id.clone();
        let cancel = call.host.cancel.clone();
        let limit = human_duration(call.timeout);
        let deadline = Instant::now() + call.timeout;
        let (engine, pre) = (self.engine.clone(), pre.clone());
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        // The step's span goes along: what the step's thread logs names its run and step.
        let span = tracing::Span::current();
        self.step_threads
            .run(Box::new(move || {
                let _in_step = span.entered();
                // A panic is sent back to unwind in the caller, as if the step ran there.
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    run_step(&engine, &pre, call, deadline)
                }));
                let _ = tx.send(result);
            }))
            .map_err(|e| StepFailure::Setup {
                step: step.clone(),
                message: format!("starting a thread for the step: {e}"),
            })?;
        let mut stopping_since = None;
        loop {
            match rx.recv_timeout(EPOCH_TICK) {
                Ok(Ok(result)) => return result,
                // The host panicked while running the step: unwind here as before.
                Ok(Err(panic)) => std::panic::resume_unwind(panic),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(StepFailure::Trap {
                        step,
                        message: "the step's thread ended without a result".into(),
                    });
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            }
            let now = Instant::now();
            let reason = if cancel.is_cancelled() {
                StopReason::Cancelled
            } else if now >= deadline {
                StopReason::Timeout
            } else {
                continue;
            };
            // The step's own thread stops the guest and answers within milliseconds, unless the
            // guest is stuck in a system call; only then is it left behind.
            if now - *stopping_since.get_or_insert(now) < ABANDON_GRACE {
                continue;
            }
            tracing::warn!(
                "step {step} is stuck in a system call; it is failed now and its thread ends when the call returns"
            );
            return Err(match reason {
                StopReason::Cancelled => StepFailure::Cancelled { step },
                StopReason::Timeout => StepFailure::Timeout { step, limit },
            });
        }
    }
}

/// Runs one step in a fresh store on the current thread, racing the call against `deadline` and
/// the cancel flag.
fn run_step(
    engine: &Engine,
    pre: &StepPre<StepState>,
    call: StepCall,
    deadline: Instant,
) -> Result<(types::StepResult, StepHost), StepFailure> {
    let step = call.host.step_id.clone();
    let setup = |message: String| StepFailure::Setup {
        step: step.clone(),
        message,
    };

    let mut wasi = WasiCtxBuilder::new();
    let secrets = call.host.secrets.clone();
    let stderr = LogStream::new(&step, call.host.events.clone(), secrets.clone());
    let stderr_tail = stderr.tail.clone();
    wasi.stdout(LogStream::new(&step, call.host.events.clone(), secrets))
        .stderr(stderr)
        .max_random_size(MAX_RANDOM_BYTES)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        // File I/O inline on the step's thread: handing every call to a blocking thread made
        // an archive of many small files 1.8× slower. A call that never returns (a FIFO) is
        // covered by `Runtime::call` leaving the thread behind.
        .allow_blocking_current_thread(true);
    for m in call.host.mounts.iter() {
        let perms = if m.writable {
            FsPerms::ReadWrite
        } else {
            FsPerms::ReadOnly
        };
        wasi.preopened_dir(m.reopen_path(), &m.guest, perms)
            .map_err(|e| setup(format!("preopening mount {}: {e}", m.guest)))?;
    }
    let mut table = ResourceTable::new();
    table.set_max_capacity(MAX_RESOURCES);

    let memory = usize::try_from(call.memory_bytes).unwrap_or(usize::MAX);
    let limiter = StepLimiter::new(memory);
    let mut host = call.host;
    host.deadline = host.deadline.min(deadline);
    let state = StepState {
        wasi: wasi.build(),
        table,
        limiter,
        stop: None,
        host,
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limiter);
    store.set_hostcall_fuel(HOSTCALL_FUEL);
    store.set_max_component_handles(MAX_RESOURCES);
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |mut ctx| {
        let data = ctx.data_mut();
        if data.host.cancel.is_cancelled() {
            data.stop = Some(StopReason::Cancelled);
            return Ok(UpdateDeadline::Interrupt);
        }
        if Instant::now() >= deadline {
            data.stop = Some(StopReason::Timeout);
            return Ok(UpdateDeadline::Interrupt);
        }
        Ok(UpdateDeadline::Continue(1))
    });

    let cancel = store.data().host.cancel.clone();
    let (outcome, stopped) = run_until(deadline, &cancel, async {
        let inst = pre.instantiate_async(&mut store).await?;
        inst.call_run(&mut store, &call.context).await
    })
    .map_err(|e| setup(format!("starting the step's async runtime: {e}")))?;
    let mut state = store.into_data();
    if stopped.is_some() {
        state.stop = stopped;
    }
    // The deadline or the cancel won the race and the call's future was dropped.
    let outcome = outcome.unwrap_or_else(|| Err(wasmtime::format_err!("stopped by the host")));
    let classify = |trap: wasmtime::Error| -> StepFailure {
        match state.stop {
            Some(StopReason::Cancelled) => {
                return StepFailure::Cancelled { step: step.clone() };
            }
            Some(StopReason::Timeout) => {
                return StepFailure::Timeout {
                    step: step.clone(),
                    limit: human_duration(call.timeout),
                };
            }
            None => {}
        }
        if state.limiter.memory_refused {
            return StepFailure::Memory {
                step: step.clone(),
                limit: human_bytes(call.memory_bytes),
            };
        }
        if let Some(bt) = trap.downcast_ref::<wasmtime::WasmBacktrace>() {
            state.host.emit(Event::StepLog {
                step: step.clone(),
                level: LogLevel::Debug,
                message: format!("wasm backtrace:\n{bt}"),
            });
        }
        let cause = match trap.downcast_ref::<wasmtime::Trap>() {
            Some(t) => t.to_string(),
            None => trap.root_cause().to_string(),
        };
        // A Rust panic prints `panicked at file:line:col:` and the message on stderr.
        let tail: Vec<String> = stderr_tail
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect();
        let message = match tail.iter().position(|l| l.contains("panicked at")) {
            Some(i) => {
                let at = tail[i]
                    .split("panicked at")
                    .nth(1)
                    .unwrap_or_default()
                    .trim()
                    .trim_end_matches(':');
                let what = tail.get(i + 1).map(String::as_str).unwrap_or_default();
                format!("panicked at {at}: {what} ({cause})")
            }
            None => cause,
        };
        StepFailure::Trap {
            step: step.clone(),
            message,
        }
    };
    match outcome {
        Ok(Ok(result)) => Ok((result, state.host)),
        Ok(Err(e)) => {
            if state.host.cancel.is_cancelled() {
                return Err(StepFailure::Cancelled { step });
            }
            let mut message = state.host.redact(&e.message);
            // A plugin that catches its own allocation failure (a JS engine's "out of memory")
            // still failed because of the limit: say so.
            if state.limiter.memory_refused {
                message.push_str(&format!(
                    " (the step reached its memory limit of {}; raise the step's limits.memory if it needs more)",
                    human_bytes(call.memory_bytes)
                ));
            }
            Err(StepFailure::Plugin {
                step,
                kind: error_kind(e.kind).to_owned(),
                message,
            })
        }
        Err(trap) => Err(classify(trap)),
    }
}

/// Drives `call` to completion unless the deadline passes or the run is cancelled first; then the
/// call's future is dropped, which ends the guest wherever it waits (a WASI sleep, a read that
/// never returns), and the reason is given instead of a result.
///
/// Runs on a current-thread tokio runtime of its own (on the step's own thread, so never inside
/// another runtime), shut down without waiting for blocking tasks the guest may have left.
fn run_until<T>(
    deadline: Instant,
    cancel: &crate::engine::caps::CancelToken,
    call: impl std::future::Future<Output = T>,
) -> std::io::Result<(Option<T>, Option<StopReason>)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    let out = rt.block_on(async {
        let cancelled = async {
            while !cancel.is_cancelled() {
                tokio::time::sleep(EPOCH_TICK).await;
            }
        };
        tokio::select! {
            biased;
            out = call => (Some(out), None),
            () = cancelled => (None, Some(StopReason::Cancelled)),
            () = tokio::time::sleep_until(deadline.into()) => (None, Some(StopReason::Timeout)),
        }
    });
    rt.shutdown_background();
    Ok(out)
}

/// The WIT name of an error kind.
fn error_kind(kind: types::ErrorKind) -> &'static str {
    use types::ErrorKind as K;
    match kind {
        K::InvalidConfig => "invalid-config",
        K::NotFound => "not-found",
        K::PermissionDenied => "permission-denied",
        K::Io => "io",
        K::CommandFailed => "command-failed",
        K::Cancelled => "cancelled",
        K::Internal => "internal",
    }
}

/// A stable key for this engine's compiled code: wasmtime's own compatibility hash (features,
/// target, tunables) plus the wasmtime version, so a cache is never loaded by an engine that
/// cannot run it.
fn engine_key(engine: &Engine) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    format!("wasmtime-48-{:016x}", h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_budget_counts_all_memories_together() {
        const MIB: usize = 1 << 20;
        let mut limiter = StepLimiter::new(100 * MIB);
        // Two memories of 60% each: each fits alone, together they do not.
        assert!(limiter.memory_growing(0, 60 * MIB, None).unwrap());
        assert!(!limiter.memory_refused);
        assert!(!limiter.memory_growing(0, 60 * MIB, None).unwrap());
        assert!(
            limiter.memory_refused,
            "the refusal must name the memory limit"
        );
        // What is left is still granted, to any memory.
        assert!(limiter.memory_growing(60 * MIB, 90 * MIB, None).unwrap());
        assert!(!limiter.memory_growing(0, 11 * MIB, None).unwrap());
        // A memory's own declared maximum refuses too, without blaming the step's limit.
        let mut limiter = StepLimiter::new(100 * MIB);
        assert!(!limiter.memory_growing(0, 2 * MIB, Some(MIB)).unwrap());
        assert!(!limiter.memory_refused);
    }

    #[test]
    fn tables_stay_bounded() {
        let mut limiter = StepLimiter::new(100 << 20);
        assert!(limiter.table_growing(0, 1_000, None).unwrap());
        assert!(!limiter.table_growing(0, 2_000_000, None).unwrap());
    }
}
