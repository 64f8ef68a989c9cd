//! The one interface every chat model is reached through: local GGUF engines (`models::chat::local`, one
//! thread per model) and remote OpenAI-compatible providers (`router::remote`) alike.
//!
//! Design note: [`ChatBackend::generate`] never blocks and never awaits. It validates the request, takes a
//! place in the backend's bounded queue (a full queue is [`ChatError::Overloaded`] at once) and returns a
//! [`GenerationStream`]. The backend sends text deltas, then exactly one [`GenerationEvent::Done`], or one
//! `Err` and nothing more. Dropping the stream cancels the generation: the backend checks
//! `Sender::is_closed` between decoding steps and stops.

pub mod cpu_llm;
pub mod engine;
pub mod gguf_tokenizer;
pub mod model;
pub mod registry;
pub mod sampling;
pub mod template;
pub mod text;

use std::sync::Arc;

use tokio::sync::mpsc;

pub use engine::LocalChatModel;
pub use registry::{ChatConfig, ChatModels};

/// Who wrote a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Instructions for the model.
    System,
    /// The person asking.
    User,
    /// The model's earlier answers.
    Assistant,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// Who wrote it.
    pub role: Role,
    /// Its text.
    pub content: String,
}

/// What to generate from: a conversation (rendered with the model's chat template) or a raw prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prompt {
    /// `/v1/chat/completions`: rendered with the model's chat template, ending with the assistant's turn.
    Chat(Vec<ChatMessage>),
    /// `/v1/completions`: tokenized as is.
    Text(String),
}

/// How to sample, with OpenAI's meanings and defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// 0 is greedy (deterministic).
    pub temperature: f32,
    /// Nucleus sampling mass, in (0, 1].
    pub top_p: f32,
    /// Seed of the sampler; the same seed and request give the same answer.
    pub seed: Option<u64>,
    /// Generation stops before any of these strings; they are not part of the answer.
    pub stop: Vec<String>,
    /// OpenAI's presence penalty, in [-2, 2].
    pub presence_penalty: f32,
    /// OpenAI's frequency penalty, in [-2, 2].
    pub frequency_penalty: f32,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            max_tokens: 256,
            temperature: 1.0,
            top_p: 1.0,
            seed: None,
            stop: Vec::new(),
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
        }
    }
}

/// One generation request.
#[derive(Debug, Clone)]
pub struct GenerationRequest {
    /// What to continue.
    pub prompt: Prompt,
    /// How to sample.
    pub params: SamplingParams,
    /// The request's tracing span, so the engine thread logs under it.
    pub span: tracing::Span,
}

/// Why generation ended (OpenAI's `finish_reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// End of sequence or a stop string.
    Stop,
    /// `max_tokens` reached.
    Length,
}

/// Token counts of a finished generation (OpenAI's `usage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Tokens in the rendered prompt.
    pub prompt_tokens: usize,
    /// Tokens generated.
    pub completion_tokens: usize,
}

/// What a backend sends on a [`GenerationStream`].
#[derive(Debug, Clone, PartialEq)]
pub enum GenerationEvent {
    /// The next piece of the answer (valid UTF-8; stop strings already held back and removed).
    Delta(String),
    /// The last event.
    Done {
        /// Why it ended.
        finish_reason: FinishReason,
        /// Token counts.
        usage: Usage,
        /// The model that answered (for a remote provider: the name it reported).
        model: String,
    },
}

/// The receiving end of a generation; dropping it cancels the generation.
pub type GenerationStream = mpsc::Receiver<Result<GenerationEvent, ChatError>>;

/// What a chat model tells about itself (`/v1/models`, the router).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatModelInfo {
    /// The id clients pass as `model`.
    pub id: String,
    /// Context window in tokens (prompt + completion).
    pub context_window: usize,
    /// Who serves it: `docpipe` for local models, the provider's name otherwise.
    pub owned_by: String,
    /// Prompt tokens read per second, measured when a local model loads (`None` for remote providers).
    pub prompt_tokens_per_sec: Option<u32>,
}

/// Why a generation could not start or did not finish.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// Prompt plus `max_tokens` does not fit the model's window.
    #[error(
        "this model's maximum context length is {window} tokens, but the request needs {needed} ({prompt} in the prompt + {max_tokens} to generate)"
    )]
    ContextLengthExceeded {
        /// The model's window.
        window: usize,
        /// Prompt + max_tokens.
        needed: usize,
        /// Tokens in the prompt.
        prompt: usize,
        /// Requested completion tokens.
        max_tokens: usize,
    },
    /// A parameter is out of range; `param` names it.
    #[error("{message}")]
    InvalidParameter {
        /// The offending field, as the client spelled it.
        param: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The bounded queue is full; retry later.
    #[error("the model is busy; retry later")]
    Overloaded,
    /// The backend is stopping.
    #[error("the model is shutting down")]
    ShutDown,
    /// A remote provider failed, timed out or answered with an error.
    #[error("remote provider failed: {0}")]
    Remote(String),
    /// The model failed while generating.
    #[error("inference failed: {0}")]
    Inference(String),
}

/// A chat model: a local engine or a remote provider.
pub trait ChatBackend: Send + Sync {
    /// Id, window and owner.
    fn info(&self) -> &ChatModelInfo;
    /// Tokens `prompt` takes once rendered with this model's template (for remote providers an estimate).
    fn count_prompt_tokens(&self, prompt: &Prompt) -> Result<usize, ChatError>;
    /// Queues `request` and returns its stream at once (see the module note).
    fn generate(&self, request: GenerationRequest) -> Result<GenerationStream, ChatError>;
}

/// A shareable chat model.
pub type SharedChatBackend = Arc<dyn ChatBackend>;
