//! The engine of one local chat model.
//!
//! Design note — what runs where:
//! - The model lives on its own OS thread (the *engine thread*), which owns the weights and the KV cache.
//!   Requests reach it through one bounded `std::sync::mpsc::sync_channel`; [`LocalChatModel::generate`]
//!   renders and tokenizes the prompt on the caller's thread (cheap), checks the window, and takes a queue
//!   place with `try_send`: a full queue is [`ChatError::Overloaded`] at once (503 + `Retry-After`).
//! - The engine advances up to `max_active` generations together, taking them from the queue in arrival order
//!   and giving each one step in turn: a batch of up to [`PREFILL_BATCH`] prompt tokens, or one new token. Each
//!   generation has its own copy of the model that shares the weights and keeps its own KV cache, so a long
//!   answer no longer holds up the requests behind it. Before every step it checks whether the client is still
//!   listening (`Sender::is_closed`): a dropped stream (client gone) cancels the generation. Deltas go to a
//!   channel with room for every event the generation can send, so a slow reader never stalls the engine.
//! - Model compute runs inside a dedicated rayon pool of `threads` threads: docpipe's CPU pass
//!   ([`super::cpu_llm`]) splits each step's matrix rows and attention heads over the current pool.
//! - Shutdown: [`LocalChatModel::shutdown`] queues a terminate message and joins the thread; requests queued
//!   behind it get [`ChatError::ShutDown`]. Nothing here takes a lock besides the join handle's mutex.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::Instant;

use tokio::sync::mpsc;

use super::gguf_tokenizer::GgufTokenizer;
use super::model::ChatModel;
use super::sampling::Sampler;
use super::template::ChatTemplate;
use super::text::{IncrementalDecoder, Matched, StopMatcher};
use super::{
    ChatBackend, ChatError, ChatModelInfo, FinishReason, GenerationEvent, GenerationRequest,
    GenerationStream, Prompt, SamplingParams, Usage,
};
use crate::models::device::DeviceSpec;

/// Prompt tokens per forward pass while processing the prompt (bounds the attention scratch memory).
pub const PREFILL_BATCH: usize = 512;
/// Events of a generation besides one per token: the held-back text flushed at the end, and `Done`.
const STREAM_EXTRA_EVENTS: usize = 2;
/// The prompt of the warm-up generation run at load.
const WARM_UP_PROMPT: &str = "Hello";
/// A sentence repeated into the prompt whose reading is timed at load (the prompt speed the grounding budget
/// follows): about 10 tokens.
const SPEED_SENTENCE: &str = "The quick brown fox jumps over the lazy dog near the river bank. ";
/// Repeats of it: about 250 tokens, one prefill batch.
const SPEED_REPEATS: usize = 25;
/// Timed prefills; the fastest counts.
const SPEED_RUNS: usize = 3;

/// How to start one local model.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The id clients pass as `model`.
    pub id: String,
    /// The GGUF file.
    pub path: PathBuf,
    /// Compute device.
    pub device: DeviceSpec,
    /// Compute threads.
    pub threads: usize,
    /// Requests that may wait for the engine.
    pub queue_capacity: usize,
    /// Generations advanced together (each with its own KV cache).
    pub max_active: usize,
    /// KV cache bytes the generations advanced together may reserve (each its prompt plus `max_tokens`).
    pub kv_budget_bytes: usize,
}

struct Job {
    tokens: Vec<u32>,
    params: SamplingParams,
    events: mpsc::Sender<Result<GenerationEvent, ChatError>>,
    span: tracing::Span,
}

enum Message {
    Generate(Box<Job>),
    Terminate,
}

/// What the caller's side needs to render and count prompts (shared with the engine thread's model).
struct Shared {
    tokenizer: Arc<GgufTokenizer>,
    template: Arc<ChatTemplate>,
}

/// A local chat model behind its engine thread; implements [`ChatBackend`].
pub struct LocalChatModel {
    info: ChatModelInfo,
    shared: Arc<Shared>,
    queue: SyncSender<Message>,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
    /// Bytes of weights in memory.
    pub weight_bytes: usize,
    /// `general.architecture` of the GGUF.
    pub architecture: String,
}

impl std::fmt::Debug for LocalChatModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalChatModel")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// Why a local model could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Loading failed.
    #[error(transparent)]
    Load(#[from] super::model::LoadError),
    /// The device could not be opened.
    #[error(transparent)]
    Device(#[from] crate::models::device::DeviceError),
    /// A setting is invalid.
    #[error("invalid chat engine setting: {0}")]
    Config(String),
    /// The warm-up generation failed.
    #[error("chat model warm-up failed: {0}")]
    WarmUp(String),
    /// The thread could not be started or died while loading.
    #[error("cannot start the chat engine thread: {0}")]
    Thread(String),
}

/// Times prefills of about 250 tokens on the loaded model (after the warm-up): its prompt tokens per second,
/// the best of [`SPEED_RUNS`] so that a moment of contention at start-up does not stick, at least 1.
fn prompt_speed(model: &mut ChatModel) -> Result<u32, StartError> {
    let text = SPEED_SENTENCE.repeat(SPEED_REPEATS);
    let tokens = model
        .tokenizer
        .encode(&text)
        .map_err(|e| StartError::WarmUp(e.to_string()))?;
    let mut best = f64::MAX;
    for _ in 0..SPEED_RUNS {
        let started = Instant::now();
        model
            .forward(&tokens, 0)
            .map_err(|e| StartError::WarmUp(e.to_string()))?;
        best = best.min(started.elapsed().as_secs_f64().max(1e-6));
    }
    // Token counts and rates are far below u32::MAX; the cast saturates anyway.
    Ok(((tokens.len() as f64 / best) as u32).max(1))
}

impl LocalChatModel {
    /// Loads the model on a new engine thread, warms it up and returns once it can serve. Blocks for the load
    /// (seconds): call it at start-up or from `spawn_blocking`.
    pub fn start(config: &EngineConfig) -> Result<Self, StartError> {
        if config.threads == 0 || config.queue_capacity == 0 || config.max_active == 0 {
            return Err(StartError::Config(
                "threads, queue capacity and active generations must be at least 1".to_owned(),
            ));
        }
        let device = config.device.open()?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(config.threads)
            .thread_name(|i| format!("chat-compute-{i}"))
            .build()
            .map_err(|e| StartError::Config(format!("compute pool: {e}")))?;
        let (queue, receiver) = sync_channel(config.queue_capacity);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let path = config.path.clone();
        let id = config.id.clone();
        let limits = Limits {
            max_active: config.max_active,
            kv_budget_bytes: config.kv_budget_bytes,
        };
        let started = Instant::now();
        let thread = std::thread::Builder::new()
            .name(format!("chat-{id}"))
            .spawn(move || {
                let loaded = pool.install(|| {
                    let mut model = ChatModel::load(&path, &device)?;
                    let shared = Shared {
                        tokenizer: Arc::clone(&model.tokenizer),
                        template: Arc::clone(&model.template),
                    };
                    let warm = model
                        .tokenizer
                        .encode(WARM_UP_PROMPT)
                        .map_err(|e| StartError::WarmUp(e.to_string()))?;
                    model
                        .forward(&warm, 0)
                        .map_err(|e| StartError::WarmUp(e.to_string()))?;
                    let rate = prompt_speed(&mut model)?;
                    Ok::<_, StartError>((model, shared, rate))
                });
                match loaded {
                    Ok((model, shared, rate)) => {
                        let facts = (
                            model.context_window,
                            model.weight_bytes,
                            model.architecture.clone(),
                            rate,
                        );
                        let _ = ready_tx.send(Ok((shared, facts)));
                        run_engine(model, &pool, &receiver, &id, limits);
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })
            .map_err(|e| StartError::Thread(e.to_string()))?;
        let (shared, (context_window, weight_bytes, architecture, rate)) = match ready_rx.recv() {
            Ok(Ok(ready)) => ready,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                return Err(StartError::Thread(
                    "the engine thread died while loading".to_owned(),
                ));
            }
        };
        let info = ChatModelInfo {
            id: config.id.clone(),
            context_window,
            owned_by: "docpipe".to_owned(),
            prompt_tokens_per_sec: Some(rate),
        };
        tracing::info!(
            model = %info.id,
            context_window,
            prompt_tokens_per_sec = rate,
            weight_mb = weight_bytes / (1 << 20),
            %architecture,
            threads = config.threads,
            load_ms = started.elapsed().as_millis(),
            "chat model ready"
        );
        Ok(Self {
            info,
            shared: Arc::new(shared),
            queue,
            thread: std::sync::Mutex::new(Some(thread)),
            weight_bytes,
            architecture,
        })
    }

    /// Finishes the generation in progress, stops the engine thread and joins it. Requests still queued get
    /// [`ChatError::ShutDown`].
    pub fn shutdown(&self) {
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(thread) = thread {
            // Waits for queue space; the engine is draining, so this is short.
            let _ = self.queue.send(Message::Terminate);
            if thread.join().is_err() {
                tracing::error!(model = %self.info.id, "the chat engine thread panicked");
            }
        }
    }

    /// The prompt's token ids, as the engine will see them.
    pub fn tokenize(&self, prompt: &Prompt) -> Result<Vec<u32>, ChatError> {
        let text = match prompt {
            Prompt::Chat(messages) => {
                if messages.is_empty() {
                    return Err(ChatError::InvalidParameter {
                        param: "messages",
                        message: "messages must not be empty".to_owned(),
                    });
                }
                self.shared
                    .template
                    .render(messages)
                    .map_err(|e| ChatError::InvalidParameter {
                        param: "messages",
                        message: e.to_string(),
                    })?
            }
            Prompt::Text(text) => text.clone(),
        };
        let tokens = self
            .shared
            .tokenizer
            .encode(&text)
            .map_err(|e| ChatError::Inference(e.to_string()))?;
        if tokens.is_empty() {
            return Err(ChatError::InvalidParameter {
                param: "prompt",
                message: "the prompt is empty".to_owned(),
            });
        }
        Ok(tokens)
    }
}

impl Drop for LocalChatModel {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl ChatBackend for LocalChatModel {
    fn info(&self) -> &ChatModelInfo {
        &self.info
    }

    fn count_prompt_tokens(&self, prompt: &Prompt) -> Result<usize, ChatError> {
        self.tokenize(prompt).map(|t| t.len())
    }

    fn generate(&self, request: GenerationRequest) -> Result<GenerationStream, ChatError> {
        validate(&request.params)?;
        let tokens = self.tokenize(&request.prompt)?;
        let window = self.info.context_window;
        let needed = tokens.len() + request.params.max_tokens;
        if needed > window {
            return Err(ChatError::ContextLengthExceeded {
                window,
                needed,
                prompt: tokens.len(),
                max_tokens: request.params.max_tokens,
            });
        }
        // Room for every event the generation can send (at most one per token, a flush and Done), so the
        // engine never waits for a slow reader and one stalled client cannot hold up the others.
        let (events, stream) = mpsc::channel(request.params.max_tokens + STREAM_EXTRA_EVENTS);
        let job = Job {
            tokens,
            params: request.params,
            events,
            span: request.span,
        };
        match self.queue.try_send(Message::Generate(Box::new(job))) {
            Ok(()) => Ok(stream),
            Err(TrySendError::Full(_)) => Err(ChatError::Overloaded),
            Err(TrySendError::Disconnected(_)) => Err(ChatError::ShutDown),
        }
    }
}

/// Checks the sampling parameters' ranges (OpenAI's).
fn validate(p: &SamplingParams) -> Result<(), ChatError> {
    let bad =
        |param: &'static str, message: String| Err(ChatError::InvalidParameter { param, message });
    if p.max_tokens == 0 {
        return bad("max_tokens", "max_tokens must be at least 1".to_owned());
    }
    if !(0.0..=2.0).contains(&p.temperature) {
        return bad(
            "temperature",
            format!("temperature must be between 0 and 2, got {}", p.temperature),
        );
    }
    if !(p.top_p > 0.0 && p.top_p <= 1.0) {
        return bad("top_p", format!("top_p must be in (0, 1], got {}", p.top_p));
    }
    for (param, v) in [
        ("presence_penalty", p.presence_penalty),
        ("frequency_penalty", p.frequency_penalty),
    ] {
        if !(-2.0..=2.0).contains(&v) {
            return bad(param, format!("{param} must be between -2 and 2, got {v}"));
        }
    }
    Ok(())
}

/// How many generations an engine advances together.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// At most this many.
    max_active: usize,
    /// And only while their KV reservations (prompt plus `max_tokens`, each) fit these bytes together; the first
    /// one always runs.
    kv_budget_bytes: usize,
}

/// The engine loop: takes jobs in arrival order while fewer than `max_active` run and the next one's KV
/// reservation fits beside theirs (waiting only when none runs), gives each running generation one step, and
/// repeats until `Terminate` (after finishing the running ones) or until every sender is gone. A job that does
/// not fit is held, and the queue behind it waits, until enough running ones finish. A model that cannot be
/// forked ([`ChatModel::fork`]) runs one generation at a time: the generation borrows the model and hands it
/// back when it is over.
fn run_engine(
    model: ChatModel,
    pool: &rayon::ThreadPool,
    receiver: &Receiver<Message>,
    id: &str,
    limits: Limits,
) {
    let forkable = model.fork().is_some();
    let max_active = if forkable { limits.max_active } else { 1 };
    let kv_bytes_per_token = model.kv_bytes_per_token;
    let mut spare = Some(model);
    let mut active: Vec<Generation> = Vec::with_capacity(max_active);
    let mut held: Option<Box<Job>> = None;
    let mut accepting = true;
    loop {
        while active.len() < max_active {
            let job = if let Some(job) = held.take() {
                job
            } else if accepting {
                let message = if active.is_empty() {
                    receiver.recv().ok()
                } else {
                    match receiver.try_recv() {
                        Ok(message) => Some(message),
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => None,
                    }
                };
                match message {
                    Some(Message::Generate(job)) => job,
                    Some(Message::Terminate) | None => {
                        accepting = false;
                        continue;
                    }
                }
            } else {
                break;
            };
            if job.events.is_closed() {
                continue;
            }
            let reservation = (job.tokens.len() + job.params.max_tokens) * kv_bytes_per_token;
            let reserved: usize = active.iter().map(|g| g.reservation).sum();
            if !active.is_empty() && reserved + reservation > limits.kv_budget_bytes {
                tracing::info!(
                    model = id,
                    reserved,
                    reservation,
                    "KV budget full: the next request waits"
                );
                held = Some(job);
                break;
            }
            let own = match &spare {
                Some(base) if forkable => base.fork(),
                _ => spare.take(),
            }
            .expect(
                "an unforkable model runs one generation at a time, so it is back. This is a bug.",
            );
            active.push(Generation::new(job, own, reservation));
        }
        if active.is_empty() {
            // Nothing runs, nothing is held (it would have been taken), and nothing more comes.
            break;
        }
        pool.install(|| {
            let mut index = 0;
            while index < active.len() {
                if active[index].step(id) {
                    let over = active.swap_remove(index);
                    if spare.is_none() {
                        spare = Some(over.model);
                    }
                } else {
                    index += 1;
                }
            }
        });
    }
    tracing::debug!(model = id, "chat engine stopped");
}

/// What a step of a generation led to.
enum Outcome {
    /// More steps to go.
    Running,
    /// Finished, with its usage (`Done` sent).
    Done(Usage),
    /// The client went away.
    Cancelled,
}

/// One running generation: its job, its own model copy (shared weights, own KV cache) and decoding state.
struct Generation {
    job: Box<Job>,
    model: ChatModel,
    /// KV cache bytes reserved: prompt plus `max_tokens`.
    reservation: usize,
    /// Prompt tokens already in the KV cache.
    prefilled: usize,
    /// Logits after the last token fed in.
    logits: Vec<f32>,
    sampler: Sampler,
    decoder: IncrementalDecoder,
    stops: StopMatcher,
    completion: usize,
    started: Instant,
}

impl Generation {
    fn new(job: Box<Job>, model: ChatModel, reservation: usize) -> Self {
        Self {
            reservation,
            sampler: Sampler::new(&job.params),
            stops: StopMatcher::new(&job.params.stop),
            job,
            model,
            prefilled: 0,
            logits: Vec::new(),
            decoder: IncrementalDecoder::default(),
            completion: 0,
            started: Instant::now(),
        }
    }

    /// Runs one step; true when the generation is over (finished, failed or cancelled), after logging it.
    fn step(&mut self, id: &str) -> bool {
        let span = self.job.span.clone();
        let _entered = span.enter();
        match self.advance(id) {
            Ok(Outcome::Running) => false,
            Ok(Outcome::Done(usage)) => {
                tracing::info!(
                    model = id,
                    prompt_tokens = usage.prompt_tokens,
                    completion_tokens = usage.completion_tokens,
                    ms = self.started.elapsed().as_millis(),
                    "generated"
                );
                true
            }
            Ok(Outcome::Cancelled) => {
                tracing::info!(model = id, "generation cancelled: the client went away");
                true
            }
            Err(e) => {
                tracing::error!(model = id, error = %e, "generation failed");
                let _ = self.job.events.blocking_send(Err(e));
                true
            }
        }
    }

    /// One forward pass and what follows from it.
    fn advance(&mut self, id: &str) -> Result<Outcome, ChatError> {
        let infer = |e: candle_core::Error| ChatError::Inference(e.to_string());
        if self.job.events.is_closed() {
            return Ok(Outcome::Cancelled);
        }
        let prompt_len = self.job.tokens.len();
        if self.prefilled < prompt_len {
            let end = (self.prefilled + PREFILL_BATCH).min(prompt_len);
            self.logits = self
                .model
                .forward(&self.job.tokens[self.prefilled..end], self.prefilled)
                .map_err(infer)?;
            self.prefilled = end;
            if end < prompt_len {
                return Ok(Outcome::Running);
            }
        }
        if self.completion >= self.job.params.max_tokens {
            return Ok(self.finish(FinishReason::Length, id));
        }
        let token = self.sampler.sample(&mut self.logits);
        self.completion += 1;
        if self.model.tokenizer.is_stop(token) {
            return Ok(self.finish(FinishReason::Stop, id));
        }
        let piece = self
            .decoder
            .push(&self.model.tokenizer, token)
            .map_err(|e| ChatError::Inference(e.to_string()))?;
        let (text, stopped) = match self.stops.push(&piece) {
            Matched::Continue(text) => (text, false),
            Matched::Stop(text) => (text, true),
        };
        if !text.is_empty() && !send(&self.job, GenerationEvent::Delta(text)) {
            return Ok(Outcome::Cancelled);
        }
        if stopped {
            return Ok(self.finish(FinishReason::Stop, id));
        }
        if self.completion >= self.job.params.max_tokens {
            return Ok(self.finish(FinishReason::Length, id));
        }
        // The sampled token goes in at the position after the prompt and the tokens before it.
        let pos = prompt_len + self.completion - 1;
        self.logits = self.model.forward(&[token], pos).map_err(infer)?;
        Ok(Outcome::Running)
    }

    /// Flushes held-back text and sends `Done`.
    fn finish(&mut self, finish_reason: FinishReason, id: &str) -> Outcome {
        let rest = self.stops.finish();
        if !rest.is_empty() && !send(&self.job, GenerationEvent::Delta(rest)) {
            return Outcome::Cancelled;
        }
        let usage = Usage {
            prompt_tokens: self.job.tokens.len(),
            completion_tokens: self.completion,
        };
        crate::telemetry::metrics::chat_tokens_generated(id, self.completion as u64);
        let done = GenerationEvent::Done {
            finish_reason,
            usage,
            model: id.to_owned(),
        };
        if send(&self.job, done) {
            Outcome::Done(usage)
        } else {
            Outcome::Cancelled
        }
    }
}

/// Sends an event (the channel always has room); false when the client has gone away.
fn send(job: &Job, event: GenerationEvent) -> bool {
    job.events.blocking_send(Ok(event)).is_ok()
}
