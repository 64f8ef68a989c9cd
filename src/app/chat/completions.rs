//! Plain chat and completions (`/v1/chat/completions`, `/v1/completions`): a named local model, or `auto`
//! (the complexity router picks the tier). No files, no sources.

use tracing::instrument;

use super::ChatFilesError;
use crate::app::App;
use crate::models::chat::{
    ChatError, ChatMessage, GenerationRequest, GenerationStream, Prompt, SamplingParams,
    SharedChatBackend,
};
use crate::router::{AUTO, OutputFormat};

/// `max_tokens` of a chat request that gives none: this many, or what is left of the window if less.
pub const DEFAULT_CHAT_MAX_TOKENS: usize = 512;
/// `max_tokens` of a completion request that gives none (OpenAI's default).
pub const DEFAULT_COMPLETION_MAX_TOKENS: usize = 16;

/// The model a chat or completion request goes to, resolved before its body is read further.
pub struct ChatTarget(Option<SharedChatBackend>);

/// A started generation and the model that runs it.
pub struct Generation {
    /// The events: text deltas, then one `Done`.
    pub stream: GenerationStream,
    /// The model's id.
    pub model: String,
}

/// Why a chat or completion cannot start.
#[derive(Debug, thiserror::Error)]
pub enum CompletionError {
    /// No loaded chat model has this name.
    #[error("the model `{model}` does not exist or is not loaded; chat models: {}", known.join(", "))]
    ModelNotFound {
        /// The name asked for.
        model: String,
        /// The loaded chat models.
        known: Vec<String>,
    },
    /// The model refused the request (`prompt_param` names the request field holding the prompt).
    #[error("{source}")]
    Chat {
        /// The model's error.
        source: ChatError,
        /// `messages` or `prompt`.
        prompt_param: &'static str,
    },
    /// The router could not serve `auto`.
    #[error(transparent)]
    Routed(#[from] ChatFilesError),
}

impl App {
    /// The chat model a client's `model` names (`auto` when missing), or 404 when no such model is loaded.
    pub fn chat_target(&self, model: Option<&str>) -> Result<ChatTarget, CompletionError> {
        let model = self.chat_model_name(model);
        if model == AUTO {
            return Ok(ChatTarget(None));
        }
        self.loaded_model(&model).map(|b| ChatTarget(Some(b)))
    }

    /// Starts a chat completion. `params.max_tokens` is replaced by `max_tokens`, or when that is `None` by
    /// [`DEFAULT_CHAT_MAX_TOKENS`] capped by what is left of the model's window. `format` counts towards the
    /// complexity when the router picks the tier.
    #[instrument(skip_all, fields(messages = messages.len()))]
    pub async fn chat_completion(
        &self,
        target: ChatTarget,
        messages: Vec<ChatMessage>,
        max_tokens: Option<u32>,
        mut params: SamplingParams,
        format: OutputFormat,
    ) -> Result<Generation, CompletionError> {
        let Some(backend) = target.0 else {
            // `auto`: the complexity router picks the tier (never one whose window cannot hold the request)
            // and falls back to the next when a tier fails; the answer names the model that answered.
            params.max_tokens = max_tokens.map_or(DEFAULT_CHAT_MAX_TOKENS, |n| n as usize);
            let (routed, _) = self
                .chat_auto(messages, params, format, max_tokens.is_some())
                .await?;
            return Ok(Generation {
                stream: routed.stream,
                model: routed.model,
            });
        };
        let prompt = Prompt::Chat(messages);
        params.max_tokens = limit(
            max_tokens,
            DEFAULT_CHAT_MAX_TOKENS,
            &backend,
            &prompt,
            "messages",
        )?;
        start(&backend, prompt, params, "messages")
    }

    /// The model a completion request goes to: a named loaded model, or for `auto` the first tier the
    /// router plans for `text`.
    pub fn completion_target(
        &self,
        model: Option<&str>,
        text: &str,
    ) -> Result<ChatTarget, CompletionError> {
        let model = self.chat_model_name(model);
        let backend = if model == AUTO {
            self.routed_backend(text)?
        } else {
            self.loaded_model(&model)?
        };
        Ok(ChatTarget(Some(backend)))
    }

    /// Starts a completion of `text`, continued as is. `params.max_tokens` is replaced by `max_tokens`, or
    /// when that is `None` by [`DEFAULT_COMPLETION_MAX_TOKENS`] capped by what is left of the window.
    #[instrument(skip_all)]
    pub fn complete(
        &self,
        target: ChatTarget,
        text: String,
        max_tokens: Option<u32>,
        mut params: SamplingParams,
    ) -> Result<Generation, CompletionError> {
        let backend = match target.0 {
            Some(b) => b,
            None => self.routed_backend(&text)?,
        };
        let prompt = Prompt::Text(text);
        params.max_tokens = limit(
            max_tokens,
            DEFAULT_COMPLETION_MAX_TOKENS,
            &backend,
            &prompt,
            "prompt",
        )?;
        start(&backend, prompt, params, "prompt")
    }

    /// The loaded local model named `model`.
    fn loaded_model(&self, model: &str) -> Result<SharedChatBackend, CompletionError> {
        self.chat
            .get(model)
            .ok_or_else(|| CompletionError::ModelNotFound {
                model: model.to_owned(),
                known: self.chat.infos().into_iter().map(|i| i.id).collect(),
            })
    }
}

/// Starts the generation on the backend's engine thread.
fn start(
    backend: &SharedChatBackend,
    prompt: Prompt,
    params: SamplingParams,
    prompt_param: &'static str,
) -> Result<Generation, CompletionError> {
    let stream = backend
        .generate(GenerationRequest {
            prompt,
            params,
            span: tracing::Span::current(),
        })
        .map_err(|source| CompletionError::Chat {
            source,
            prompt_param,
        })?;
    Ok(Generation {
        stream,
        model: backend.info().id.clone(),
    })
}

/// `max_tokens` as asked, or the default capped by what is left of the window.
fn limit(
    asked: Option<u32>,
    default: usize,
    backend: &SharedChatBackend,
    prompt: &Prompt,
    prompt_param: &'static str,
) -> Result<usize, CompletionError> {
    if let Some(n) = asked {
        return Ok(n as usize);
    }
    let used = backend
        .count_prompt_tokens(prompt)
        .map_err(|source| CompletionError::Chat {
            source,
            prompt_param,
        })?;
    let left = backend.info().context_window.saturating_sub(used);
    Ok(default.min(left).max(1))
}
