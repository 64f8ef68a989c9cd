//! Wire types of the OpenAI-compatible chat and completion endpoints, and their conversion to the engine's
//! request types. Field docs are the API documentation.

use poem_openapi::payload::{EventStream, Json};
use poem_openapi::registry::{MetaMediaType, MetaResponse, MetaResponses, Registry};
use poem_openapi::types::{ToJSON, Type};
use poem_openapi::{ApiResponse, Object, Union};

use super::error::ErrorBody;

/// One message of the conversation.
#[derive(Debug, Clone, Object)]
pub struct ChatMessageIn {
    /// Who wrote it (`developer` is OpenAI's newer name for `system`).
    pub role: ChatRole,
    /// The text: a string, or a list of content parts of which the `text` parts are used.
    #[oai(nullable)]
    pub content: Option<MessageContent>,
    /// Ignored; accepted for compatibility.
    #[oai(nullable)]
    pub name: Option<String>,
}

/// The author of a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, poem_openapi::Enum)]
#[oai(rename_all = "lowercase")]
pub enum ChatRole {
    /// Instructions for the model.
    System,
    /// Same as `system`.
    Developer,
    /// The person asking.
    User,
    /// The model's earlier answers.
    Assistant,
}

/// A message's content: a string, or a list of parts.
#[derive(Debug, Clone, Union)]
pub enum MessageContent {
    /// Plain text.
    Text(String),
    /// Content parts, in order.
    Parts(Vec<ContentPart>),
}

/// One part of a message's content, by its `type`. Chat with files uses the `text` parts and skips the
/// others (upload images and audio as files instead); plain chat refuses them with 400.
#[derive(Debug, Clone, Union)]
#[oai(discriminator_name = "type")]
pub enum ContentPart {
    /// `{"type": "text", "text": ...}`.
    #[oai(mapping = "text")]
    Text(TextPart),
    /// `{"type": "image_url", "image_url": {"url": ...}}`.
    #[oai(mapping = "image_url")]
    ImageUrl(ImageUrlPart),
    /// `{"type": "input_audio", "input_audio": {"data": ..., "format": ...}}`.
    #[oai(mapping = "input_audio")]
    InputAudio(InputAudioPart),
}

/// A text part.
#[derive(Debug, Clone, Object)]
pub struct TextPart {
    /// The text.
    pub text: String,
}

/// An image part (OpenAI's shape).
#[derive(Debug, Clone, Object)]
pub struct ImageUrlPart {
    /// `{"url": ..., "detail": ...}`.
    pub image_url: serde_json::Value,
}

/// An audio part (OpenAI's shape).
#[derive(Debug, Clone, Object)]
pub struct InputAudioPart {
    /// `{"data": <base64>, "format": "wav" | "mp3"}`.
    pub input_audio: serde_json::Value,
}

/// Streaming options.
#[derive(Debug, Clone, Object)]
pub struct StreamOptions {
    /// Send one more chunk before `data: [DONE]` with `usage` and empty `choices`.
    #[oai(nullable)]
    pub include_usage: Option<bool>,
}

/// An OpenAI (legacy) completion request.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct CompletionRequest {
    /// A chat model id from `GET /v1/models`, an alias listed there, or `auto` (the default: the router
    /// picks by the prompt). Case-insensitive.
    #[oai(nullable)]
    pub model: Option<String>,
    /// The text to continue (a string, or an array holding one string), tokenized as is.
    pub prompt: serde_json::Value,
    /// Most tokens to generate (default 16, as OpenAI).
    #[oai(nullable, validator(minimum(value = "1")))]
    pub max_tokens: Option<u32>,
    /// Temperature, nucleus mass, stop sequences, seed and penalties.
    #[oai(flatten)]
    pub sampling: super::chat_wire::SamplingFields,
    /// Answer as server-sent events (`text_completion` objects, then `data: [DONE]`).
    #[oai(nullable)]
    pub stream: Option<bool>,
    /// Streaming options.
    #[oai(nullable)]
    pub stream_options: Option<StreamOptions>,
    /// Ignored; accepted for compatibility.
    #[oai(nullable)]
    pub user: Option<String>,
}

impl poem_openapi::types::Example for CompletionRequest {
    /// What Swagger UI's "Try it out" sends.
    fn example() -> CompletionRequest {
        CompletionRequest {
            model: Some("auto".into()),
            prompt: serde_json::json!("The capital of France is"),
            max_tokens: Some(16),
            sampling: super::chat_wire::SamplingFields::example(),
            stream: Some(false),
            stream_options: None,
            user: None,
        }
    }
}

/// Token counts (OpenAI's `usage`).
#[derive(Debug, Clone, Copy, Object)]
pub struct CompletionUsage {
    /// Tokens in the rendered prompt (with the sources, in chat with files).
    pub prompt_tokens: u64,
    /// Tokens generated.
    pub completion_tokens: u64,
    /// The sum.
    pub total_tokens: u64,
}

impl From<crate::app::chat::Usage> for CompletionUsage {
    fn from(u: crate::app::chat::Usage) -> CompletionUsage {
        CompletionUsage {
            prompt_tokens: u.prompt_tokens as u64,
            completion_tokens: u.completion_tokens as u64,
            total_tokens: (u.prompt_tokens + u.completion_tokens) as u64,
        }
    }
}

/// The assistant's message.
#[derive(Debug, Clone, Object)]
pub struct ChatMessageOut {
    /// Always `assistant`.
    pub role: String,
    /// The answer.
    pub content: String,
}

/// One choice of a chat completion.
#[derive(Debug, Clone, Object)]
pub struct ChatChoice {
    /// Always 0.
    pub index: u32,
    /// The answer.
    pub message: ChatMessageOut,
    /// `stop` (end of turn or a stop sequence) or `length` (`max_tokens` reached).
    pub finish_reason: String,
    /// Always null.
    #[oai(nullable)]
    pub logprobs: Option<serde_json::Value>,
}

/// An OpenAI chat completion.
#[derive(Debug, Clone, Object)]
pub struct ChatCompletion {
    /// `chatcmpl-...`
    pub id: String,
    /// Always `chat.completion`.
    pub object: String,
    /// Unix seconds.
    pub created: i64,
    /// The model that answered.
    pub model: String,
    /// One choice.
    pub choices: Vec<ChatChoice>,
    /// Token counts.
    pub usage: CompletionUsage,
}

/// The new part of the assistant's message in a stream chunk.
#[derive(Debug, Clone, Object)]
pub struct ChatDelta {
    /// `assistant` in the first chunk only.
    #[oai(skip_serializing_if_is_none)]
    pub role: Option<String>,
    /// The next piece of text.
    #[oai(skip_serializing_if_is_none)]
    pub content: Option<String>,
}

/// One choice of a stream chunk.
#[derive(Debug, Clone, Object)]
pub struct ChatChunkChoice {
    /// Always 0.
    pub index: u32,
    /// What is new.
    pub delta: ChatDelta,
    /// Set in the last content chunk: `stop` or `length`.
    #[oai(nullable)]
    pub finish_reason: Option<String>,
    /// Always null.
    #[oai(nullable)]
    pub logprobs: Option<serde_json::Value>,
}

/// A streamed piece of a chat completion (`data:` of one server-sent event).
#[derive(Debug, Clone, Object)]
pub struct ChatCompletionChunk {
    /// The same for every chunk of a completion.
    pub id: String,
    /// Always `chat.completion.chunk`.
    pub object: String,
    /// Unix seconds.
    pub created: i64,
    /// The model that answers.
    pub model: String,
    /// One choice; empty in the usage chunk.
    pub choices: Vec<ChatChunkChoice>,
    /// Null, except in the extra last chunk sent with `stream_options.include_usage`.
    #[oai(nullable)]
    pub usage: Option<CompletionUsage>,
}

/// One choice of a text completion (also a stream chunk's choice).
#[derive(Debug, Clone, Object)]
pub struct CompletionChoice {
    /// The generated text (in a stream: the next piece).
    pub text: String,
    /// Always 0.
    pub index: u32,
    /// `stop` or `length`; null in stream chunks before the last.
    #[oai(nullable)]
    pub finish_reason: Option<String>,
    /// Always null.
    #[oai(nullable)]
    pub logprobs: Option<serde_json::Value>,
}

/// An OpenAI text completion, or one streamed piece of it.
#[derive(Debug, Clone, Object)]
pub struct Completion {
    /// `cmpl-...`
    pub id: String,
    /// Always `text_completion`.
    pub object: String,
    /// Unix seconds.
    pub created: i64,
    /// The model that answered.
    pub model: String,
    /// One choice; empty in the usage chunk of a stream.
    pub choices: Vec<CompletionChoice>,
    /// Token counts (in a stream: only in the usage chunk).
    #[oai(nullable)]
    pub usage: Option<CompletionUsage>,
}

/// What one server-sent event of a chat stream carries: a chunk, or an error that ended the stream early.
#[derive(Debug, Clone, Union)]
pub enum ChatStreamEvent {
    /// A chunk.
    Chunk(ChatCompletionChunk),
    /// The error that ended the stream (then `data: [DONE]`).
    Error(ErrorBody),
}

/// What one server-sent event of a completion stream carries.
#[derive(Debug, Clone, Union)]
pub enum CompletionStreamEvent {
    /// A chunk.
    Chunk(Completion),
    /// The error that ended the stream (then `data: [DONE]`).
    Error(ErrorBody),
}

/// An event stream of `E`; `None` is the closing `data: [DONE]`. Built by `chat::events`, the one encoder
/// of generation streams (it sends keep-alive comments while the prompt is read).
pub type Events<E> = EventStream<futures::stream::BoxStream<'static, Option<E>>>;

/// The successful answer of every generation endpoint: the whole `T` as JSON, or server-sent events of `E`
/// with `stream: true`.
pub enum Reply<T, E: 'static> {
    /// The whole completion.
    Whole(Json<T>),
    /// Server-sent events, each `data:` one chunk, ending with `data: [DONE]`.
    Stream(Events<E>),
}

impl<T: Type + ToJSON, E: Type + ToJSON + 'static> poem::IntoResponse for Reply<T, E> {
    fn into_response(self) -> poem::Response {
        match self {
            Reply::Whole(json) => json.into_response(),
            Reply::Stream(events) => events.into_response(),
        }
    }
}

impl<T: Type + ToJSON, E: Type + ToJSON + 'static> ApiResponse for Reply<T, E> {
    fn meta() -> MetaResponses {
        use poem_openapi::payload::Payload as _;
        MetaResponses {
            responses: vec![MetaResponse {
                description: "The completion as JSON; with `stream: true`, server-sent events whose `data` \
                              are chunks, ending with `data: [DONE]`.",
                status: Some(200),
                status_range: None,
                content: vec![
                    MetaMediaType {
                        content_type: "application/json; charset=utf-8",
                        schema: Json::<T>::schema_ref(),
                    },
                    MetaMediaType {
                        content_type: "text/event-stream",
                        schema: Events::<E>::schema_ref(),
                    },
                ],
                headers: vec![],
            }],
        }
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
        E::register(registry);
    }
}
