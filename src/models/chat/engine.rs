//! The engine of one local chat model.
//!
//! Design note — what runs where:
//! - The model lives on its own OS thread (the *engine thread*), which owns the weights and the KV cache.
//!   Requests reach it through one bounded `std::sync::mpsc::sync_channel`; [`LocalChatModel::generate`]
//!   renders and tokenizes the prompt on the caller's thread (cheap), checks the window, and takes a queue
//!   place with `try_send`: a full queue is [`ChatError::Overloaded`] at once (503 + `Retry-After`).
//! - The engine runs one generation at a time, in arrival order: the prompt in batches of
//!   [`PREFILL_BATCH`] tokens, then one token per step. Before every step it checks whether the client is still
//!   listening (`Sender::is_closed`): a dropped stream (client gone) cancels the generation. Deltas go to a
//!   channel with room for every event the generation can send, so a slow reader never stalls the engine.
//! - Model compute runs inside a dedicated rayon pool of `threads` threads (candle's f32 matmuls use the current
//!   pool; its quantized matmuls use the process-wide pool sized by `CANDLE_NUM_THREADS`, set in `main`).
//! - Shutdown: [`LocalChatModel::shutdown`] queues a terminate message and joins the thread; requests queued
//!   behind it get [`ChatError::ShutDown`]. Nothing here takes a lock besides the join handle's mutex.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
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
    /// Tensors re-quantised to Q8_0 at load.
    pub requantized: usize,
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

impl LocalChatModel {
    /// Loads the model on a new engine thread, warms it up and returns once it can serve. Blocks for the load
    /// (seconds): call it at start-up or from `spawn_blocking`.
    pub fn start(config: &EngineConfig) -> Result<Self, StartError> {
        if config.threads == 0 || config.queue_capacity == 0 {
            return Err(StartError::Config(
                "threads and queue capacity must be at least 1".to_owned(),
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
                    Ok::<_, StartError>((model, shared))
                });
                match loaded {
                    Ok((mut model, shared)) => {
                        let facts = (
                            model.context_window,
                            model.requantized,
                            model.architecture.clone(),
                        );
                        let _ = ready_tx.send(Ok((shared, facts)));
                        run_engine(&mut model, &pool, &receiver, &id);
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })
            .map_err(|e| StartError::Thread(e.to_string()))?;
        let (shared, (context_window, requantized, architecture)) = match ready_rx.recv() {
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
        };
        tracing::info!(
            model = %info.id,
            context_window,
            requantized,
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
            requantized,
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

/// The engine loop: one job at a time until `Terminate` or every sender is gone.
fn run_engine(
    model: &mut ChatModel,
    pool: &rayon::ThreadPool,
    receiver: &Receiver<Message>,
    id: &str,
) {
    while let Ok(Message::Generate(job)) = receiver.recv() {
        if job.events.is_closed() {
            continue;
        }
        let span = job.span.clone();
        let _entered = span.enter();
        let started = Instant::now();
        let outcome = pool.install(|| generate(model, &job, id));
        match outcome {
            Ok(Some(usage)) => tracing::info!(
                model = id,
                prompt_tokens = usage.prompt_tokens,
                completion_tokens = usage.completion_tokens,
                ms = started.elapsed().as_millis(),
                "generated"
            ),
            Ok(None) => tracing::info!(model = id, "generation cancelled: the client went away"),
            Err(e) => {
                tracing::error!(model = id, error = %e, "generation failed");
                let _ = job.events.blocking_send(Err(e));
            }
        }
    }
    tracing::debug!(model = id, "chat engine stopped");
}

/// Runs one generation; `Ok(None)` when the client went away.
fn generate(model: &mut ChatModel, job: &Job, id: &str) -> Result<Option<Usage>, ChatError> {
    let infer = |e: candle_core::Error| ChatError::Inference(e.to_string());
    let mut logits = Vec::new();
    for (i, batch) in job.tokens.chunks(PREFILL_BATCH).enumerate() {
        if job.events.is_closed() {
            return Ok(None);
        }
        logits = model.forward(batch, i * PREFILL_BATCH).map_err(infer)?;
    }
    let mut sampler = Sampler::new(&job.params);
    let mut decoder = IncrementalDecoder::default();
    let mut stops = StopMatcher::new(&job.params.stop);
    let mut pos = job.tokens.len();
    let mut completion = 0;
    let finish = loop {
        if completion >= job.params.max_tokens {
            break FinishReason::Length;
        }
        let token = sampler.sample(&mut logits);
        completion += 1;
        if model.tokenizer.is_stop(token) {
            break FinishReason::Stop;
        }
        let piece = decoder
            .push(&model.tokenizer, token)
            .map_err(|e| ChatError::Inference(e.to_string()))?;
        match stops.push(&piece) {
            Matched::Continue(text) => {
                if !text.is_empty() && !send(job, GenerationEvent::Delta(text)) {
                    return Ok(None);
                }
            }
            Matched::Stop(text) => {
                if !text.is_empty() && !send(job, GenerationEvent::Delta(text)) {
                    return Ok(None);
                }
                break FinishReason::Stop;
            }
        }
        if completion >= job.params.max_tokens {
            break FinishReason::Length;
        }
        if job.events.is_closed() {
            return Ok(None);
        }
        logits = model.forward(&[token], pos).map_err(infer)?;
        pos += 1;
    };
    let rest = stops.finish();
    if !rest.is_empty() && !send(job, GenerationEvent::Delta(rest)) {
        return Ok(None);
    }
    let usage = Usage {
        prompt_tokens: job.tokens.len(),
        completion_tokens: completion,
    };
    crate::telemetry::metrics::chat_tokens_generated(id, completion as u64);
    let done = GenerationEvent::Done {
        finish_reason: finish,
        usage,
        model: id.to_owned(),
    };
    Ok(send(job, done).then_some(usage))
}

/// Sends an event (the channel always has room); false when the client has gone away.
fn send(job: &Job, event: GenerationEvent) -> bool {
    job.events.blocking_send(Ok(event)).is_ok()
}
