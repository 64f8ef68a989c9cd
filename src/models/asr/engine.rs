//! The engine thread and its handle (see the design note in `asr.rs`).

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::Instant;

use tokio::sync::oneshot;
use whisper_rs::{
    FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters, WhisperState,
};

use super::{
    AsrConfig, AsrError, LANGUAGE, ProgressFn, SAMPLE_RATE, Segment, TranscribeOptions, Transcript,
    Word,
};

/// Name of the engine thread.
const ENGINE_THREAD_NAME: &str = "asr-engine";
/// whisper.cpp timestamps are in centiseconds.
const CENTIS_PER_SECOND: f64 = 100.0;
/// One second of silence transcribed after loading, so the first request does not pay for allocations.
const WARM_UP_SAMPLES: usize = SAMPLE_RATE as usize;
/// Beam search patience (whisper.cpp ignores values other than -1).
const NO_PATIENCE: f32 = -1.0;

type Reply = Result<Transcript, AsrError>;

struct Request {
    samples: Vec<f32>,
    options: TranscribeOptions,
    progress: Option<ProgressFn>,
    reply: oneshot::Sender<Reply>,
    span: tracing::Span,
}

enum Message {
    Transcribe(Request),
    Terminate,
}

/// Cheap, cloneable access to the engine thread; `Send + Sync`.
#[derive(Clone)]
pub struct AsrHandle {
    queue: SyncSender<Message>,
    config: std::sync::Arc<AsrConfig>,
}

impl std::fmt::Debug for AsrHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsrHandle")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl AsrHandle {
    /// The engine's settings.
    pub fn config(&self) -> &AsrConfig {
        &self.config
    }

    /// Transcribes 16 kHz mono samples. Never waits for queue space: a full queue is [`AsrError::Overloaded`].
    pub async fn transcribe(
        &self,
        samples: Vec<f32>,
        options: TranscribeOptions,
    ) -> Result<Transcript, AsrError> {
        check_language(&options)?;
        let (reply, rx) = oneshot::channel();
        let message = Message::Transcribe(Request {
            samples,
            options,
            progress: None,
            reply,
            span: tracing::Span::current(),
        });
        match self.queue.try_send(message) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(AsrError::Overloaded),
            Err(TrySendError::Disconnected(_)) => return Err(AsrError::ShutDown),
        }
        rx.await.map_err(|_| AsrError::ShutDown)?
    }

    /// Transcribes on a thread that may block (never async code). With `wait_for_queue`, waits for queue
    /// space (backpressure); without, a full queue is [`AsrError::Overloaded`] at once.
    pub fn transcribe_blocking(
        &self,
        samples: Vec<f32>,
        options: TranscribeOptions,
        progress: Option<ProgressFn>,
        wait_for_queue: bool,
    ) -> Result<Transcript, AsrError> {
        check_language(&options)?;
        let (reply, rx) = oneshot::channel();
        let message = Message::Transcribe(Request {
            samples,
            options,
            progress,
            reply,
            span: tracing::Span::current(),
        });
        if wait_for_queue {
            self.queue.send(message).map_err(|_| AsrError::ShutDown)?;
        } else {
            match self.queue.try_send(message) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => return Err(AsrError::Overloaded),
                Err(TrySendError::Disconnected(_)) => return Err(AsrError::ShutDown),
            }
        }
        rx.blocking_recv().map_err(|_| AsrError::ShutDown)?
    }
}

fn check_language(options: &TranscribeOptions) -> Result<(), AsrError> {
    match options.language.as_deref() {
        None | Some("") | Some(LANGUAGE) => Ok(()),
        Some(other) if other.eq_ignore_ascii_case("english") => Ok(()),
        Some(other) => Err(AsrError::Language(other.to_owned())),
    }
}

/// Owner of the engine thread.
pub struct AsrService {
    handle: AsrHandle,
    thread: Option<JoinHandle<()>>,
}

impl AsrService {
    /// Loads the model on a new engine thread and warms it up; returns when the model is ready.
    pub fn start(config: AsrConfig) -> Result<AsrService, AsrError> {
        config.validate()?;
        let (queue, rx) = sync_channel(config.queue);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let engine_config = config.clone();
        let thread = std::thread::Builder::new()
            .name(ENGINE_THREAD_NAME.to_owned())
            .spawn(move || match Engine::load(&engine_config) {
                Ok(mut engine) => {
                    let _ = ready_tx.send(Ok(()));
                    engine.run(&rx);
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            })
            .map_err(AsrError::Spawn)?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(AsrError::ShutDown);
            }
        }
        tracing::info!(
            model = %config.model.display(),
            threads = config.threads,
            beam_size = config.beam_size,
            queue = config.queue,
            "transcription engine ready"
        );
        Ok(AsrService {
            handle: AsrHandle {
                queue,
                config: std::sync::Arc::new(config),
            },
            thread: Some(thread),
        })
    }

    /// A handle for callers.
    pub fn handle(&self) -> AsrHandle {
        self.handle.clone()
    }

    /// Stops the engine after the request in progress and joins its thread.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(thread) = self.thread.take() {
            // A full queue makes this wait for the requests ahead, which is what a clean shutdown wants.
            let _ = self.handle.queue.send(Message::Terminate);
            let _ = thread.join();
        }
    }
}

impl Drop for AsrService {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The model and its decoding state, living on the engine thread.
struct Engine {
    state: WhisperState,
    // Keeps the model alive for the state.
    _ctx: WhisperContext,
    threads: usize,
    beam_size: usize,
}

impl Engine {
    fn load(config: &AsrConfig) -> Result<Engine, AsrError> {
        let load_err = |message: String| AsrError::Load {
            path: config.model.clone(),
            message,
        };
        let path = config
            .model
            .to_str()
            .ok_or_else(|| load_err("the path is not UTF-8".into()))?;
        let mut params = WhisperContextParameters::default();
        params.use_gpu(config.use_gpu);
        let ctx =
            WhisperContext::new_with_params(path, params).map_err(|e| load_err(e.to_string()))?;
        let state = ctx.create_state().map_err(|e| load_err(e.to_string()))?;
        let mut engine = Engine {
            state,
            _ctx: ctx,
            threads: config.threads,
            beam_size: config.beam_size,
        };
        engine
            .transcribe(
                &vec![0.0; WARM_UP_SAMPLES],
                &TranscribeOptions::default(),
                None,
            )
            .map_err(|e| load_err(format!("warm-up failed: {e}")))?;
        Ok(engine)
    }

    fn run(&mut self, rx: &Receiver<Message>) {
        while let Ok(Message::Transcribe(request)) = rx.recv() {
            let Request {
                samples,
                options,
                progress,
                reply,
                span,
            } = request;
            let _entered = span.enter();
            let started = Instant::now();
            let result = if options.deadline.is_some_and(|d| Instant::now() >= d) {
                Err(AsrError::Timeout)
            } else {
                self.transcribe(&samples, &options, progress)
            };
            let audio_secs = samples.len() as f64 / f64::from(SAMPLE_RATE);
            tracing::debug!(
                audio_secs,
                secs = started.elapsed().as_secs_f64(),
                ok = result.is_ok(),
                "transcribed"
            );
            // The caller may have gone away (HTTP client disconnected); nothing to do then.
            let _ = reply.send(result);
        }
        tracing::debug!("transcription engine stopped");
    }

    fn transcribe(
        &mut self,
        samples: &[f32],
        options: &TranscribeOptions,
        progress: Option<ProgressFn>,
    ) -> Result<Transcript, AsrError> {
        if samples.is_empty() {
            return Ok(Transcript::default());
        }
        let beam = options.beam_size.unwrap_or(self.beam_size);
        let strategy = if beam <= 1 {
            SamplingStrategy::Greedy { best_of: 1 }
        } else {
            SamplingStrategy::BeamSearch {
                beam_size: beam as i32,
                patience: NO_PATIENCE,
            }
        };
        let mut params = FullParams::new(strategy);
        params.set_n_threads(self.threads as i32);
        params.set_language(Some(LANGUAGE));
        params.set_translate(false);
        params.set_print_progress(false);
        params.set_print_realtime(false);
        params.set_print_special(false);
        params.set_print_timestamps(false);
        params.set_temperature(options.temperature);
        params.set_token_timestamps(options.word_timestamps);
        if let Some(prompt) = options.prompt.as_deref().filter(|p| !p.trim().is_empty()) {
            params.set_initial_prompt(prompt);
        }
        if let Some(mut progress) = progress {
            params.set_progress_callback_safe(move |pct: i32| progress(pct));
        }
        if let Some(deadline) = options.deadline {
            params.set_abort_callback_safe(move || Instant::now() >= deadline);
        }
        let outcome = self.state.full(params, samples);
        if options.deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(AsrError::Timeout);
        }
        outcome.map_err(|e| AsrError::Inference(e.to_string()))?;
        Ok(Transcript {
            segments: self.segments(options.word_timestamps),
        })
    }

    fn segments(&self, words: bool) -> Vec<Segment> {
        let mut out = Vec::new();
        for segment in self.state.as_iter() {
            let text = segment
                .to_str_lossy()
                .map(|t| t.into_owned())
                .unwrap_or_default();
            if super::is_non_speech_marker(&text) {
                continue;
            }
            let mut tokens = Vec::new();
            let mut logprob_sum = 0.0;
            let mut timed: Vec<Word> = Vec::new();
            for i in 0..segment.n_tokens() {
                let Some(token) = segment.get_token(i) else {
                    continue;
                };
                let data = token.token_data();
                // Special tokens (timestamps, <|endoftext|>, ...) come after the text tokens.
                if data.id >= self.eot() {
                    continue;
                }
                tokens.push(data.id);
                logprob_sum += f64::from(data.plog);
                if words {
                    let piece = token
                        .to_str_lossy()
                        .map(|t| t.into_owned())
                        .unwrap_or_default();
                    let (t0, t1) = (
                        data.t0 as f64 / CENTIS_PER_SECOND,
                        data.t1 as f64 / CENTIS_PER_SECOND,
                    );
                    match timed.last_mut() {
                        // A piece without a leading space continues the previous word.
                        Some(last) if !piece.starts_with(' ') => {
                            last.word.push_str(&piece);
                            last.end = t1.max(last.end);
                        }
                        _ => timed.push(Word {
                            word: piece.trim_start().to_owned(),
                            start: t0,
                            end: t1,
                        }),
                    }
                }
            }
            let avg_logprob = if tokens.is_empty() {
                0.0
            } else {
                logprob_sum / tokens.len() as f64
            };
            out.push(Segment {
                start: segment.start_timestamp() as f64 / CENTIS_PER_SECOND,
                end: segment.end_timestamp() as f64 / CENTIS_PER_SECOND,
                text: text.trim().to_owned(),
                tokens,
                avg_logprob,
                no_speech_prob: f64::from(segment.no_speech_probability()),
                words: timed.into_iter().filter(|w| !w.word.is_empty()).collect(),
            });
        }
        out
    }

    fn eot(&self) -> i32 {
        self._ctx.token_eot()
    }
}
