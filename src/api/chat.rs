//! OpenAI-compatible text generation: `POST /v1/chat/completions` (also `/api/v1/chat/completions`) and
//! `POST /v1/completions`, as JSON or as server-sent events with `stream: true`.
//!
//! Handlers read the wire request, ask the facade ([`App::chat_completion`], [`App::complete`]) to start a
//! generation and either collect it or forward it as SSE chunks. Dropping the response (the client went away) drops the
//! stream, which cancels the generation on the engine thread.

use super::json_body::JsonBody;
use futures::StreamExt as _;
use poem::web::sse::Event;
use poem_openapi::OpenApi;
use poem_openapi::payload::{EventStream, Json};
use poem_openapi::types::ToJSON as _;

use super::ApiTags;
use super::auth::Caller;
use super::chat_types::{
    ChatChoice, ChatChunkChoice, ChatCompletion, ChatCompletionChunk, ChatDelta, ChatMessageOut,
    ChatStreamEvent, Completion, CompletionChoice, CompletionRequest, CompletionStreamEvent,
    CompletionUsage, Events, Reply,
};
use super::chat_wire::{ChatRequest, ChatUse, turn_of};
use super::error::{ApiError, ErrorBody, ErrorCode, REQUEST_ID, chat_error};
use crate::app::App;
use crate::app::chat::{
    ChatError, DEFAULT_COMPLETION_MAX_TOKENS, FinishReason, Generation, GenerationEvent,
    GenerationStream, Usage,
};

/// Keep-alive comment interval of generation streams (reading a long prompt can take a while).
const KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(10);

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
        body: JsonBody<ChatRequest>,
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
        body: JsonBody<ChatRequest>,
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

async fn chat(
    app: &App,
    req: ChatRequest,
) -> Result<Reply<ChatCompletion, ChatStreamEvent>, ApiError> {
    // The model is resolved first: an unknown one is 404 whatever the rest of the body says.
    let target = app.chat_target(req.model.as_deref())?;
    let (streamed, include_usage) = (req.streamed(), req.include_usage());
    let turn = turn_of(req, Vec::new(), None, ChatUse::Plain)?;
    let asked = turn
        .max_tokens_given
        .then(|| u32::try_from(turn.params.max_tokens).unwrap_or(u32::MAX));
    let Generation { stream, model } = app
        .chat_completion(target, turn.messages, asked, turn.params, turn.format)
        .await?;
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
    let created = chrono::Utc::now().timestamp();
    if streamed {
        let meta = ChunkMeta::new(id, created, model, include_usage);
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
    let target = app.completion_target(req.model.as_deref(), &text)?;
    let params = req
        .sampling
        .params(req.max_tokens, 1.0, DEFAULT_COMPLETION_MAX_TOKENS)?;
    let Generation { stream, model } = app.complete(target, text, req.max_tokens, params)?;
    let id = format!("cmpl-{}", uuid::Uuid::new_v4().simple());
    let created = chrono::Utc::now().timestamp();
    if req.stream.unwrap_or(false) {
        let include_usage = req
            .stream_options
            .and_then(|o| o.include_usage)
            .unwrap_or(false);
        let meta = ChunkMeta::new(id, created, model, include_usage);
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
pub struct Collected {
    pub text: String,
    pub finish_reason: FinishReason,
    pub usage: Usage,
    pub model: String,
}

/// Reads a whole generation.
pub async fn collect(mut stream: GenerationStream) -> Result<Collected, ApiError> {
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
pub struct ChunkMeta {
    pub id: String,
    pub created: i64,
    pub model: String,
    pub include_usage: bool,
    pub request_id: Option<String>,
}

impl ChunkMeta {
    /// The stream's identity; the request id is the current request's.
    pub fn new(id: String, created: i64, model: String, include_usage: bool) -> ChunkMeta {
        ChunkMeta {
            id,
            created,
            model,
            include_usage,
            request_id: REQUEST_ID.try_with(Clone::clone).ok(),
        }
    }
}

/// How one kind of stream shapes its chunks (plain chat, completions, chat with files).
pub trait ChunkKind: Send + 'static {
    type Event: poem_openapi::types::Type + poem_openapi::types::ToJSON + Send + 'static;
    /// The chunk before any text (chat sends the role), if any.
    fn opening(&mut self, meta: &ChunkMeta) -> Option<Self::Event>;
    fn text(&mut self, meta: &ChunkMeta, text: String) -> Self::Event;
    fn finish(&mut self, meta: &ChunkMeta, reason: FinishReason) -> Self::Event;
    fn usage(&mut self, meta: &ChunkMeta, usage: Usage) -> Self::Event;
    fn error(&mut self, body: ErrorBody) -> Self::Event;
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

    fn opening(&mut self, meta: &ChunkMeta) -> Option<ChatStreamEvent> {
        let delta = ChatDelta {
            role: Some("assistant".to_owned()),
            content: Some(String::new()),
        };
        Some(Self::chunk(meta, Self::choice(delta, None), None))
    }

    fn text(&mut self, meta: &ChunkMeta, text: String) -> ChatStreamEvent {
        let delta = ChatDelta {
            role: None,
            content: Some(text),
        };
        Self::chunk(meta, Self::choice(delta, None), None)
    }

    fn finish(&mut self, meta: &ChunkMeta, reason: FinishReason) -> ChatStreamEvent {
        let delta = ChatDelta {
            role: None,
            content: None,
        };
        Self::chunk(meta, Self::choice(delta, Some(reason)), None)
    }

    fn usage(&mut self, meta: &ChunkMeta, u: Usage) -> ChatStreamEvent {
        Self::chunk(meta, Vec::new(), Some(CompletionUsage::from(u)))
    }

    fn error(&mut self, body: ErrorBody) -> ChatStreamEvent {
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

    fn opening(&mut self, _meta: &ChunkMeta) -> Option<CompletionStreamEvent> {
        None
    }

    fn text(&mut self, meta: &ChunkMeta, text: String) -> CompletionStreamEvent {
        Self::chunk(meta, Self::choice(text, None), None)
    }

    fn finish(&mut self, meta: &ChunkMeta, reason: FinishReason) -> CompletionStreamEvent {
        Self::chunk(meta, Self::choice(String::new(), Some(reason)), None)
    }

    fn usage(&mut self, meta: &ChunkMeta, u: Usage) -> CompletionStreamEvent {
        Self::chunk(meta, Vec::new(), Some(CompletionUsage::from(u)))
    }

    fn error(&mut self, body: ErrorBody) -> CompletionStreamEvent {
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

/// The SSE body of a generation, the one encoder of every generation stream: the kind's chunks, then
/// `data: [DONE]`, with keep-alive comments while nothing else is sent.
pub fn events<K: ChunkKind>(
    generation: GenerationStream,
    meta: ChunkMeta,
    kind: K,
) -> Events<K::Event> {
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
                            st.kind.error(stream_error(e, st.meta.request_id.clone()))
                        }
                        None => {
                            st.stage = Stage::Done;
                            st.kind.error(stream_error(
                                ChatError::ShutDown,
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
    EventStream::new(stream.boxed())
        .keep_alive(KEEP_ALIVE)
        .to_event(|item| match item {
            Some(event) => Event::message(event.to_json_string()),
            None => Event::message("[DONE]"),
        })
}

/// The error body sent in a stream that failed after it started (the status is already 200).
fn stream_error(e: ChatError, request_id: Option<String>) -> ErrorBody {
    let mut body = chat_error(e, "messages").into_body();
    body.error.request_id = request_id;
    body
}
