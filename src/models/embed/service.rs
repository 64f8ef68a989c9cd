//! The engine thread and its handle (see the design note in `embed.rs`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use super::engine::{Embedder, TokenCounter};
use super::{DIMENSIONS, EmbedConfig, EmbedError, Embedding, Embeddings, MAX_TOKENS, MODEL_NAME};
use crate::models::device::device_name;

/// Name of the engine thread (visible in `top -H` and panics).
const ENGINE_THREAD_NAME: &str = "embed-engine";
/// Sizes candle's process-wide pool for element-wise ops, once, at its first use (see `embed.rs`).
const CANDLE_THREADS_ENV: &str = "CANDLE_NUM_THREADS";
/// Text embedded once after loading so the first request does not pay for first-touch allocations.
const WARM_UP_TEXT: &str = "warm up";

/// What the engine sends back for one request.
type Reply = Result<Embeddings, EmbedError>;

/// One embedding request as queued for the engine.
struct Request {
    texts: Vec<String>,
    reply: oneshot::Sender<Reply>,
    span: tracing::Span,
}

/// What the engine thread receives.
enum Message {
    Embed(Request),
    Terminate,
}

/// What the engine reports about itself, for logs and `/v1/models`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbedderInfo {
    /// Model name.
    pub model: &'static str,
    /// Dimensions of each vector.
    pub dimensions: usize,
    /// Window in tokens; longer inputs are truncated.
    pub max_tokens: usize,
    /// Device the model runs on (`cpu`, `cuda:0`).
    pub device: String,
    /// Compute threads.
    pub threads: usize,
    /// Texts per forward pass.
    pub max_batch: usize,
    /// Texts allowed in one request.
    pub max_inputs_per_request: usize,
}

/// Cheap, cloneable access to the engine thread; `Send + Sync`.
#[derive(Clone)]
pub struct EmbedderHandle {
    queue: SyncSender<Message>,
    tokens: TokenCounter,
    info: Arc<EmbedderInfo>,
}

impl EmbedderHandle {
    /// Embeds `texts` (in order). Never waits for queue space: a full queue is [`EmbedError::Overloaded`].
    pub async fn embed(&self, texts: Vec<String>) -> Result<Embeddings, EmbedError> {
        let Some((message, reply)) = self.request(texts)? else {
            return Ok(Embeddings::default());
        };
        match self.queue.try_send(message) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(EmbedError::Overloaded),
            Err(TrySendError::Disconnected(_)) => return Err(EmbedError::ShutDown),
        }
        let out = reply.await.map_err(|_| EmbedError::ShutDown)??;
        crate::telemetry::metrics::embeddings_computed(out.items.len() as u64);
        Ok(out)
    }

    /// Embeds `texts`, waiting for queue space (backpressure). For pipeline workers on blocking threads:
    /// it blocks, so never call it from async code.
    pub fn embed_blocking(&self, texts: Vec<String>) -> Result<Embeddings, EmbedError> {
        let Some((message, reply)) = self.request(texts)? else {
            return Ok(Embeddings::default());
        };
        self.queue.send(message).map_err(|_| EmbedError::ShutDown)?;
        let out = reply.blocking_recv().map_err(|_| EmbedError::ShutDown)??;
        crate::telemetry::metrics::embeddings_computed(out.items.len() as u64);
        Ok(out)
    }

    /// Tokens of `text` including `[CLS]` and `[SEP]`, before truncation (runs on the caller's thread).
    pub fn count_tokens(&self, text: &str) -> usize {
        self.tokens.count(text)
    }

    /// A token counter for the chunker, sharing the embedder's tokenizer.
    pub fn token_counter(&self) -> TokenCounter {
        self.tokens.clone()
    }

    /// What the engine runs.
    pub fn info(&self) -> &EmbedderInfo {
        &self.info
    }

    /// Checks the request and builds its message; `None` for an empty request.
    fn request(
        &self,
        texts: Vec<String>,
    ) -> Result<Option<(Message, oneshot::Receiver<Reply>)>, EmbedError> {
        if texts.is_empty() {
            return Ok(None);
        }
        let max = self.info.max_inputs_per_request;
        if texts.len() > max {
            return Err(EmbedError::TooManyInputs {
                got: texts.len(),
                max,
            });
        }
        let (reply, receiver) = oneshot::channel();
        let request = Request {
            texts,
            reply,
            span: tracing::Span::current(),
        };
        Ok(Some((Message::Embed(request), receiver)))
    }
}

/// Owns the engine thread; shut it down with [`EmbedderService::shutdown`] (dropping it does the same).
pub struct EmbedderService {
    handle: EmbedderHandle,
    thread: Option<JoinHandle<()>>,
}

impl EmbedderService {
    /// Starts the engine thread, loads the model on it and warms it up; returns when it is ready to serve.
    /// Blocks for the load (a second or so): call it at startup or from `spawn_blocking`.
    pub fn start(config: EmbedConfig) -> Result<Self, EmbedError> {
        config.validate()?;
        let device = config.device.open()?;
        let device_label = device_name(&device);
        if device.is_cpu() {
            check_candle_threads(config.threads);
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(config.threads)
            .thread_name(|i| format!("embed-compute-{i}"))
            .build()
            .map_err(|err| EmbedError::InvalidConfig(format!("compute pool: {err}")))?;
        let (queue, receiver) = sync_channel(config.queue_capacity);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let max_batch = config.max_batch;
        let model_dir = config.model_dir.clone();
        let thread = std::thread::Builder::new()
            .name(ENGINE_THREAD_NAME.to_owned())
            .spawn(move || {
                let loaded = pool.install(|| {
                    let embedder = Embedder::load(&model_dir, &device, max_batch)?;
                    embedder.embed_detailed(&[WARM_UP_TEXT])?;
                    Ok::<_, EmbedError>(embedder)
                });
                match loaded {
                    Ok(embedder) => {
                        // The receiver only goes away if `start` itself is gone; the engine then just idles out.
                        let _ = ready_tx.send(Ok(embedder.token_counter()));
                        run_engine(&embedder, &pool, &receiver, max_batch);
                    }
                    Err(err) => {
                        let _ = ready_tx.send(Err(err));
                    }
                }
            })
            .map_err(EmbedError::Spawn)?;
        let tokens = match ready_rx.recv() {
            Ok(Ok(tokens)) => tokens,
            Ok(Err(err)) => {
                let _ = thread.join();
                return Err(err);
            }
            // The thread died while loading (a panic); joining reports nothing more useful than this.
            Err(_) => return Err(EmbedError::ShutDown),
        };
        let info = EmbedderInfo {
            model: MODEL_NAME,
            dimensions: DIMENSIONS,
            max_tokens: MAX_TOKENS,
            device: device_label,
            threads: config.threads,
            max_batch,
            max_inputs_per_request: config.max_inputs_per_request,
        };
        tracing::info!(?info, "embedding engine ready");
        Ok(Self {
            handle: EmbedderHandle {
                queue,
                tokens,
                info: Arc::new(info),
            },
            thread: Some(thread),
        })
    }

    /// A handle for callers; clone it freely.
    pub fn handle(&self) -> EmbedderHandle {
        self.handle.clone()
    }

    /// Finishes the requests queued so far, stops the engine thread and joins it.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        // Waits for queue space: the engine is draining, so this is short. Fails only if the thread is gone.
        let _ = self.handle.queue.send(Message::Terminate);
        if thread.join().is_err() {
            tracing::error!("the embedding engine thread panicked");
        }
    }
}

impl Drop for EmbedderService {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A request being answered slice by slice: its embeddings so far.
struct Pending {
    request: Request,
    done: Vec<Embedding>,
}

impl Pending {
    fn new(request: Request) -> Pending {
        let done = Vec::with_capacity(request.texts.len());
        Pending { request, done }
    }

    /// Texts still to embed.
    fn left(&self) -> usize {
        self.request.texts.len() - self.done.len()
    }

    /// Sends the finished embeddings.
    fn finish(self) {
        let Pending { request, done } = self;
        // A caller that stopped waiting is not an engine error.
        let _ = request.reply.send(Ok(Embeddings { items: done }));
    }
}

/// The engine loop. Requests are answered in slices of at most `slice` texts (one forward pass per
/// thread). Requests not yet started go first, together, in arrival order; then the started ones take
/// turns, a slice each. So a search's one query waits for at most the slice being computed when it
/// arrives (not for a large request's thousands of texts), and large requests share the engine evenly.
/// Stops on `Terminate` or when every sender is gone.
fn run_engine(
    embedder: &Embedder,
    pool: &rayon::ThreadPool,
    receiver: &Receiver<Message>,
    max_batch: usize,
) {
    let slice = max_batch * pool.current_num_threads().max(1);
    // Not yet started, and started (each has had a slice), both in order.
    let mut fresh: VecDeque<Pending> = VecDeque::new();
    let mut line: VecDeque<Pending> = VecDeque::new();
    let mut terminate = false;
    while !terminate {
        if fresh.is_empty() && line.is_empty() {
            match receiver.recv() {
                Ok(Message::Embed(request)) => fresh.push_back(Pending::new(request)),
                Ok(Message::Terminate) | Err(_) => break,
            }
        }
        loop {
            match receiver.try_recv() {
                Ok(Message::Embed(request)) => fresh.push_back(Pending::new(request)),
                Ok(Message::Terminate) => {
                    terminate = true;
                    break;
                }
                Err(_) => break,
            }
        }
        // A caller that has gone away (timeout, disconnect) does not need its answer computed.
        fresh.retain(|p| !p.request.reply.is_closed());
        line.retain(|p| !p.request.reply.is_closed());
        let queue = if fresh.is_empty() {
            &mut line
        } else {
            &mut fresh
        };
        let mut turn = Vec::new();
        let mut room = slice;
        while room > 0
            && let Some(p) = queue.pop_front()
        {
            let take = p.left().min(room);
            room -= take;
            turn.push((p, take));
        }
        if !turn.is_empty() {
            pool.install(|| answer(embedder, &mut turn));
        }
        for (p, _) in turn {
            if p.left() > 0 {
                line.push_back(p);
            } else {
                p.finish();
            }
        }
    }
    tracing::debug!("embedding engine stopped");
}

/// Embeds the next `take` texts of each request in one call and adds them to what each has; a request
/// whose slice fails gets the error and leaves the turn.
fn answer(embedder: &Embedder, turn: &mut Vec<(Pending, usize)>) {
    let texts: Vec<&str> = turn
        .iter()
        .flat_map(|(p, take)| {
            p.request.texts[p.done.len()..p.done.len() + take]
                .iter()
                .map(String::as_str)
        })
        .collect();
    let batch_texts = texts.len();
    let started = std::time::Instant::now();
    let result = embedder.embed_detailed(&texts);
    let elapsed = started.elapsed();
    drop(texts);
    match result {
        Ok(embeddings) => {
            let mut items = embeddings.items.into_iter();
            for (p, take) in turn.iter_mut() {
                p.done.extend(items.by_ref().take(*take));
                p.request.span.in_scope(|| {
                    tracing::debug!(texts = *take, batch_texts, ?elapsed, "embedded");
                });
            }
        }
        Err(err) => {
            tracing::error!(error = %err, batch_texts, "embedding batch failed");
            for (p, _) in turn.drain(..) {
                let _ = p.request.reply.send(Err(batch_error(&err)));
            }
        }
    }
}

/// The error one failed batch reports to each of its requests (candle's errors cannot be cloned).
fn batch_error(err: &EmbedError) -> EmbedError {
    match err {
        EmbedError::Tokenize(message) => EmbedError::Tokenize(message.clone()),
        EmbedError::Inference(message) => EmbedError::Inference(message.clone()),
        other => EmbedError::Inference(other.to_string()),
    }
}

/// Warns when candle's element-wise pool may use more cores than the engine was given: on a busy machine its
/// spinning worker halves throughput (measured: 67 instead of 129 sentences/s on 1 thread).
fn check_candle_threads(threads: usize) {
    let configured = std::env::var(CANDLE_THREADS_ENV).ok();
    if configured.as_deref().and_then(|v| v.parse::<usize>().ok()) != Some(threads) {
        tracing::warn!(
            env = CANDLE_THREADS_ENV,
            value = ?configured,
            threads,
            "set {CANDLE_THREADS_ENV} to the embedding thread count so candle's element-wise ops use no more cores"
        );
    }
}
