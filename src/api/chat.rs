//! OpenAI-compatible text generation: `POST /v1/chat/completions` (also `/api/v1/chat/completions`) and
//! `POST /v1/completions`, as JSON or as server-sent events with `stream: true`.
//!
//! Handlers read the wire request, ask the facade ([`App::chat_completion`], [`App::complete`]) to start a
//! generation and either collect it or forward it as SSE chunks. Dropping the response (the client went away) drops the
//! stream, which cancels the generation on the engine thread.

use super::json_body::JsonBody;
use futures::StreamExt as _;
use futures::stream::BoxStream;
use poem::web::sse::Event;
use poem_openapi::OpenApi;
use poem_openapi::payload::{EventStream, Json};
use poem_openapi::types::ToJSON as _;

use super::ApiTags;
use super::auth::Caller;
use super::chat_types::{
    ChatChoice, ChatChunkChoice, ChatCompletion, ChatCompletionChunk, ChatCompletionRequest,
    ChatDelta, ChatMessageIn, ChatMessageOut, ChatStreamEvent, Completion, CompletionChoice,
    CompletionRequest, CompletionStreamEvent, CompletionUsage, Reply, StreamOptions,
};
use super::error::{ApiError, ErrorBody, ErrorCode, REQUEST_ID};
use crate::app::App;
use crate::app::chat::{
    ChatError, ChatMessage, CompletionError, FinishReason, Generation, GenerationEvent,
    GenerationStream, Role, SamplingParams, Usage,
};

/// Most stop sequences per request (OpenAI's limit).
const MAX_STOP_SEQUENCES: usize = 4;

/// Chat and completion endpoints.
pub struct ChatApi {
    pub app: App,
}

#[OpenApi(tag = "ApiTags::OpenAi")]
impl ChatApi {
    /// Create a chat completion
    ///
    /// OpenAI-compatible chat with a local model (see `GET /v1/models`): `messages` are rendered with the
    /// model's chat template. With `stream: true` the answer comes as server-sent events
    /// (`chat.completion.chunk` objects, then `data: [DONE]`; `stream_options.include_usage` adds a usage
    /// chunk). A prompt that with `max_tokens` exceeds the model's window is refused with 400
    /// `context_length_exceeded`; a full queue gives 503 with `Retry-After`. Closing the connection cancels
    /// the generation.
    #[oai(path = "/v1/chat/completions", method = "post")]
    async fn chat_completions(
        &self,
        _caller: Caller,
        body: JsonBody<ChatCompletionRequest>,
    ) -> Result<Reply<ChatCompletion, ChatStreamEvent>, ApiError> {
        chat(&self.app, body.0).await
    }

    /// Create a chat completion (pipeline API path)
    ///
    /// The same as `POST /v1/chat/completions`.
    #[oai(path = "/api/v1/chat/completions", method = "post")]
    async fn api_chat_completions(
        &self,
        _caller: Caller,
        body: JsonBody<ChatCompletionRequest>,
    ) -> Result<Reply<ChatCompletion, ChatStreamEvent>, ApiError> {
        chat(&self.app, body.0).await
    }

    /// Create a completion
    ///
    /// OpenAI-compatible (legacy) completion: continues `prompt` as is, without a chat template. Streams
    /// `text_completion` chunks with `stream: true`.
    #[oai(path = "/v1/completions", method = "post")]
    async fn completions(
        &self,
        _caller: Caller,
        body: JsonBody<CompletionRequest>,
    ) -> Result<Reply<Completion, CompletionStreamEvent>, ApiError> {
        complete(&self.app, body.0).await
    }
}

fn bad(message: impl Into<String>, param: &str) -> ApiError {
    ApiError::with_param(ErrorCode::InvalidRequest, message, Some(param))
}

/// The error response for a backend error; `prompt_param` is blamed for a prompt that does not fit.
pub fn chat_error(e: ChatError, prompt_param: &str) -> ApiError {
    let message = e.to_string();
    match e {
        ChatError::ContextLengthExceeded { .. } => ApiError::with_param(
            ErrorCode::ContextLengthExceeded,
            message,
            Some(prompt_param),
        ),
        ChatError::InvalidParameter { param, .. } => bad(message, param),
        ChatError::Overloaded | ChatError::ShutDown => {
            ApiError::new(ErrorCode::Overloaded, message)
        }
        ChatError::Remote(_) | ChatError::Inference(_) => ApiError::internal(&e),
    }
}

/// The error response for a chat or completion that cannot start.
fn completion_error(e: CompletionError) -> ApiError {
    let message = e.to_string();
    match e {
        CompletionError::ModelNotFound { .. } => {
            ApiError::with_param(ErrorCode::ModelNotFound, message, Some("model"))
        }
        CompletionError::Chat {
            source,
            prompt_param,
        } => chat_error(source, prompt_param),
        CompletionError::Routed(e) => super::chat_wire::chat_error(e),
    }
}

/// The sampling fields shared by both request kinds.
struct WireSampling<'a> {
    temperature: Option<f64>,
    top_p: Option<f64>,
    n: Option<u32>,
    stop: Option<&'a serde_json::Value>,
    seed: Option<i64>,
    presence_penalty: Option<f64>,
    frequency_penalty: Option<f64>,
}

/// The sampling parameters of a request; `max_tokens` is left to the facade, which knows the model's window.
fn sampling(w: &WireSampling<'_>) -> Result<SamplingParams, ApiError> {
    if w.n.is_some_and(|n| n != 1) {
        return Err(bad("only n = 1 is supported", "n"));
    }
    let stop = match w.stop {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(serde_json::Value::String(s)) => vec![s.clone()],
        Some(serde_json::Value::Array(items)) => {
            if items.len() > MAX_STOP_SEQUENCES {
                return Err(bad(
                    format!("at most {MAX_STOP_SEQUENCES} stop sequences"),
                    "stop",
                ));
            }
            items
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| bad("stop must be a string or an array of strings", "stop"))
                })
                .collect::<Result<_, _>>()?
        }
        Some(_) => return Err(bad("stop must be a string or an array of strings", "stop")),
    };
    Ok(SamplingParams {
        max_tokens: 0,
        temperature: w.temperature.unwrap_or(1.0) as f32,
        top_p: w.top_p.unwrap_or(1.0) as f32,
        seed: w.seed.map(|s| u64::from_ne_bytes(s.to_ne_bytes())),
        stop,
        presence_penalty: w.presence_penalty.unwrap_or(0.0) as f32,
        frequency_penalty: w.frequency_penalty.unwrap_or(0.0) as f32,
    })
}

fn message(m: ChatMessageIn, i: usize) -> Result<ChatMessage, ApiError> {
    let role = match m.role.as_str() {
        "system" | "developer" => Role::System,
        "user" => Role::User,
        "assistant" => Role::Assistant,
        other => {
            return Err(bad(
                format!("messages[{i}].role {other:?} is not supported (system, user, assistant)"),
                "messages",
            ));
        }
    };
    let content = match m.content {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(s)) => s,
        Some(serde_json::Value::Array(parts)) => {
            let mut text = String::new();
            for part in parts {
                match (part["type"].as_str(), part["text"].as_str()) {
                    (Some("text"), Some(t)) => text.push_str(t),
                    _ => {
                        return Err(bad(
                            format!("messages[{i}].content: only text parts are supported"),
                            "messages",
                        ));
                    }
                }
            }
            text
        }
        Some(_) => {
            return Err(bad(
                format!("messages[{i}].content must be a string or an array of text parts"),
                "messages",
            ));
        }
    };
    Ok(ChatMessage { role, content })
}

async fn chat(
    app: &App,
    req: ChatCompletionRequest,
) -> Result<Reply<ChatCompletion, ChatStreamEvent>, ApiError> {
    // The model is resolved first: an unknown one is 404 whatever the rest of the body says.
    let target = app
        .chat_target(req.model.as_deref())
        .map_err(completion_error)?;
    if req.messages.is_empty() {
        return Err(bad("messages must not be empty", "messages"));
    }
    let messages = req
        .messages
        .into_iter()
        .enumerate()
        .map(|(i, m)| message(m, i))
        .collect::<Result<Vec<_>, _>>()?;
    let params = sampling(&WireSampling {
        temperature: req.temperature,
        top_p: req.top_p,
        n: req.n,
        stop: req.stop.as_ref(),
        seed: req.seed,
        presence_penalty: req.presence_penalty,
        frequency_penalty: req.frequency_penalty,
    })?;
    let asked = req.max_completion_tokens.or(req.max_tokens);
    let Generation { stream, model } = app
        .chat_completion(target, messages, asked, params)
        .await
        .map_err(completion_error)?;
    reply_chat(req.stream, req.stream_options, stream, model).await
}

/// A chat completion (or its chunk stream) from a started generation of `model`.
async fn reply_chat(
    stream_wanted: Option<bool>,
    stream_options: Option<StreamOptions>,
    stream: GenerationStream,
    model: String,
) -> Result<Reply<ChatCompletion, ChatStreamEvent>, ApiError> {
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
    let created = chrono::Utc::now().timestamp();
    if stream_wanted.unwrap_or(false) {
        let include_usage = stream_options
            .and_then(|o| o.include_usage)
            .unwrap_or(false);
        let meta = ChunkMeta {
            id,
            created,
            model,
            include_usage,
            request_id: REQUEST_ID.try_with(Clone::clone).ok(),
        };
        return Ok(Reply::Stream(events(stream, meta, ChatChunks)));
    }
    let done = collect(stream).await?;
    Ok(Reply::Whole(Json(ChatCompletion {
        id,
        object: "chat.completion".to_owned(),
        created,
        model: done.model,
        choices: vec![ChatChoice {
            index: 0,
            message: ChatMessageOut {
                role: "assistant".to_owned(),
                content: done.text,
            },
            finish_reason: finish_name(done.finish_reason).to_owned(),
            logprobs: None,
        }],
        usage: CompletionUsage::from(done.usage),
    })))
}

async fn complete(
    app: &App,
    req: CompletionRequest,
) -> Result<Reply<Completion, CompletionStreamEvent>, ApiError> {
    let text = match req.prompt {
        serde_json::Value::String(s) => s,
        serde_json::Value::Array(items) if items.len() == 1 && items[0].is_string() => {
            items[0].as_str().unwrap_or_default().to_owned()
        }
        _ => {
            return Err(bad(
                "prompt must be a string (or an array holding one string)",
                "prompt",
            ));
        }
    };
    let target = app
        .completion_target(req.model.as_deref(), &text)
        .map_err(completion_error)?;
    let params = sampling(&WireSampling {
        temperature: req.temperature,
        top_p: req.top_p,
        n: req.n,
        stop: req.stop.as_ref(),
        seed: req.seed,
        presence_penalty: req.presence_penalty,
        frequency_penalty: req.frequency_penalty,
    })?;
    let Generation { stream, model } = app
        .complete(target, text, req.max_tokens, params)
        .map_err(completion_error)?;
    let id = format!("cmpl-{}", uuid::Uuid::new_v4().simple());
    let created = chrono::Utc::now().timestamp();
    if req.stream.unwrap_or(false) {
        let include_usage = req
            .stream_options
            .and_then(|o| o.include_usage)
            .unwrap_or(false);
        let meta = ChunkMeta {
            id,
            created,
            model,
            include_usage,
            request_id: REQUEST_ID.try_with(Clone::clone).ok(),
        };
        return Ok(Reply::Stream(events(stream, meta, CompletionChunks)));
    }
    let done = collect(stream).await?;
    Ok(Reply::Whole(Json(Completion {
        id,
        object: "text_completion".to_owned(),
        created,
        model: done.model,
        choices: vec![CompletionChoice {
            text: done.text,
            index: 0,
            finish_reason: Some(finish_name(done.finish_reason).to_owned()),
            logprobs: None,
        }],
        usage: Some(CompletionUsage::from(done.usage)),
    })))
}

/// OpenAI's name of a finish reason.
pub fn finish_name(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
    }
}

/// A finished generation, collected.
struct Collected {
    text: String,
    finish_reason: FinishReason,
    usage: Usage,
    model: String,
}

async fn collect(mut stream: GenerationStream) -> Result<Collected, ApiError> {
    let mut text = String::new();
    while let Some(event) = stream.recv().await {
        match event.map_err(|e| chat_error(e, "messages"))? {
            GenerationEvent::Delta(piece) => text.push_str(&piece),
            GenerationEvent::Done {
                finish_reason,
                usage,
                model,
            } => {
                return Ok(Collected {
                    text,
                    finish_reason,
                    usage,
                    model,
                });
            }
        }
    }
    Err(chat_error(ChatError::ShutDown, "messages"))
}

/// What every chunk of one stream shares.
struct ChunkMeta {
    id: String,
    created: i64,
    model: String,
    include_usage: bool,
    request_id: Option<String>,
}

/// How one kind of stream shapes its chunks.
trait ChunkKind: Send + 'static {
    type Event: poem_openapi::types::Type + poem_openapi::types::ToJSON + Send + 'static;
    /// The chunk before any text (chat sends the role), if any.
    fn opening(&self, meta: &ChunkMeta) -> Option<Self::Event>;
    fn text(&self, meta: &ChunkMeta, text: String) -> Self::Event;
    fn finish(&self, meta: &ChunkMeta, reason: FinishReason) -> Self::Event;
    fn usage(&self, meta: &ChunkMeta, usage: Usage) -> Self::Event;
    fn error(&self, body: ErrorBody) -> Self::Event;
}

struct ChatChunks;

impl ChatChunks {
    fn chunk(
        meta: &ChunkMeta,
        choices: Vec<ChatChunkChoice>,
        usage: Option<CompletionUsage>,
    ) -> ChatStreamEvent {
        ChatStreamEvent::Chunk(ChatCompletionChunk {
            id: meta.id.clone(),
            object: "chat.completion.chunk".to_owned(),
            created: meta.created,
            model: meta.model.clone(),
            choices,
            usage,
        })
    }

    fn choice(delta: ChatDelta, finish_reason: Option<FinishReason>) -> Vec<ChatChunkChoice> {
        vec![ChatChunkChoice {
            index: 0,
            delta,
            finish_reason: finish_reason.map(|r| finish_name(r).to_owned()),
            logprobs: None,
        }]
    }
}

impl ChunkKind for ChatChunks {
    type Event = ChatStreamEvent;

    fn opening(&self, meta: &ChunkMeta) -> Option<ChatStreamEvent> {
        let delta = ChatDelta {
            role: Some("assistant".to_owned()),
            content: Some(String::new()),
        };
        Some(Self::chunk(meta, Self::choice(delta, None), None))
    }

    fn text(&self, meta: &ChunkMeta, text: String) -> ChatStreamEvent {
        let delta = ChatDelta {
            role: None,
            content: Some(text),
        };
        Self::chunk(meta, Self::choice(delta, None), None)
    }

    fn finish(&self, meta: &ChunkMeta, reason: FinishReason) -> ChatStreamEvent {
        let delta = ChatDelta {
            role: None,
            content: None,
        };
        Self::chunk(meta, Self::choice(delta, Some(reason)), None)
    }

    fn usage(&self, meta: &ChunkMeta, u: Usage) -> ChatStreamEvent {
        Self::chunk(meta, Vec::new(), Some(CompletionUsage::from(u)))
    }

    fn error(&self, body: ErrorBody) -> ChatStreamEvent {
        ChatStreamEvent::Error(body)
    }
}

struct CompletionChunks;

impl CompletionChunks {
    fn chunk(
        meta: &ChunkMeta,
        choices: Vec<CompletionChoice>,
        usage: Option<CompletionUsage>,
    ) -> CompletionStreamEvent {
        CompletionStreamEvent::Chunk(Completion {
            id: meta.id.clone(),
            object: "text_completion".to_owned(),
            created: meta.created,
            model: meta.model.clone(),
            choices,
            usage,
        })
    }

    fn choice(text: String, finish_reason: Option<FinishReason>) -> Vec<CompletionChoice> {
        vec![CompletionChoice {
            text,
            index: 0,
            finish_reason: finish_reason.map(|r| finish_name(r).to_owned()),
            logprobs: None,
        }]
    }
}

impl ChunkKind for CompletionChunks {
    type Event = CompletionStreamEvent;

    fn opening(&self, _meta: &ChunkMeta) -> Option<CompletionStreamEvent> {
        None
    }

    fn text(&self, meta: &ChunkMeta, text: String) -> CompletionStreamEvent {
        Self::chunk(meta, Self::choice(text, None), None)
    }

    fn finish(&self, meta: &ChunkMeta, reason: FinishReason) -> CompletionStreamEvent {
        Self::chunk(meta, Self::choice(String::new(), Some(reason)), None)
    }

    fn usage(&self, meta: &ChunkMeta, u: Usage) -> CompletionStreamEvent {
        Self::chunk(meta, Vec::new(), Some(CompletionUsage::from(u)))
    }

    fn error(&self, body: ErrorBody) -> CompletionStreamEvent {
        CompletionStreamEvent::Error(body)
    }
}

/// Where a stream is.
enum Stage {
    Opening,
    Body,
    Usage(Usage),
    Done,
    End,
}

struct StreamState<K: ChunkKind> {
    generation: GenerationStream,
    meta: ChunkMeta,
    kind: K,
    stage: Stage,
}

/// The SSE body of a generation: the kind's chunks, then `data: [DONE]`.
fn events<K: ChunkKind>(
    generation: GenerationStream,
    meta: ChunkMeta,
    kind: K,
) -> EventStream<BoxStream<'static, Option<K::Event>>> {
    let state = StreamState {
        generation,
        meta,
        kind,
        stage: Stage::Opening,
    };
    let stream = futures::stream::unfold(state, |mut st| async move {
        loop {
            match std::mem::replace(&mut st.stage, Stage::End) {
                Stage::Opening => {
                    st.stage = Stage::Body;
                    if let Some(event) = st.kind.opening(&st.meta) {
                        return Some((Some(event), st));
                    }
                }
                Stage::Body => {
                    let event = match st.generation.recv().await {
                        Some(Ok(GenerationEvent::Delta(text))) => {
                            st.stage = Stage::Body;
                            st.kind.text(&st.meta, text)
                        }
                        Some(Ok(GenerationEvent::Done {
                            finish_reason,
                            usage,
                            ..
                        })) => {
                            st.stage = if st.meta.include_usage {
                                Stage::Usage(usage)
                            } else {
                                Stage::Done
                            };
                            st.kind.finish(&st.meta, finish_reason)
                        }
                        Some(Err(e)) => {
                            st.stage = Stage::Done;
                            st.kind.error(stream_error(&e, st.meta.request_id.clone()))
                        }
                        None => {
                            st.stage = Stage::Done;
                            st.kind.error(stream_error(
                                &ChatError::ShutDown,
                                st.meta.request_id.clone(),
                            ))
                        }
                    };
                    return Some((Some(event), st));
                }
                Stage::Usage(usage) => {
                    st.stage = Stage::Done;
                    return Some((Some(st.kind.usage(&st.meta, usage)), st));
                }
                Stage::Done => {
                    st.stage = Stage::End;
                    return Some((None, st));
                }
                Stage::End => return None,
            }
        }
    });
    EventStream::new(stream.boxed()).to_event(|item| match item {
        Some(event) => Event::message(event.to_json_string()),
        None => Event::message("[DONE]"),
    })
}

/// The error body sent in a stream that failed after it started (the status is already 200).
fn stream_error(e: &ChatError, request_id: Option<String>) -> ErrorBody {
    let code = match e {
        ChatError::Overloaded | ChatError::ShutDown => ErrorCode::Overloaded,
        ChatError::ContextLengthExceeded { .. } => ErrorCode::ContextLengthExceeded,
        ChatError::InvalidParameter { .. } => ErrorCode::InvalidRequest,
        ChatError::Remote(_) | ChatError::Inference(_) => ErrorCode::Internal,
    };
    let mut body = ErrorBody::new(code, e.to_string(), None);
    body.error.request_id = request_id;
    body
}
