//! The one chat request and its validation, for every chat endpoint: the OpenAI chat request
//! ([`ChatRequest`], `/v1/chat/completions`), the same plus the files to answer from ([`ChatBody`], chat with
//! files and the complexity analysis), the sampling fields the legacy completion shares, and the routing
//! summary of an answer.

use poem_openapi::Object;
use serde_json::Value;

use super::chat_types::{ChatMessageIn, ChatRole, ContentPart, MessageContent, StreamOptions};
use super::error::{ApiError, ErrorCode};
use crate::app::chat::{
    AUTO, ChatMessage, ChatTurn, DEFAULT_FILE_CHAT_MAX_TOKENS, DEFAULT_WAIT, Decision, MAX_WAIT,
    OutputFormat, Role, SamplingParams, Skipped,
};

/// Most stop sequences (OpenAI's limit).
const MAX_STOP: usize = 4;

/// An OpenAI chat completion request.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct ChatRequest {
    /// A chat model id from `GET /v1/models` (`smollm2-135m-instruct`, `qwen2.5-coder-0.5b-instruct`), an
    /// alias listed there (`gpt-4o-mini`, ...), or `auto` (the default): the complexity router picks the model
    /// (see `POST /api/v1/analyze-complexity`) and `model` in the answer names the one that answered.
    /// Case-insensitive.
    #[oai(nullable)]
    pub model: Option<String>,
    /// The conversation so far; in chat with files the last user message is the question.
    #[oai(validator(min_items = 1))]
    pub messages: Vec<ChatMessageIn>,
    /// Most tokens to generate, at least 1. Default: in plain chat what fits the window, at most 512; in chat
    /// with files 256 (answers from sources are short, and the rest of the window holds sources). Prompt
    /// plus this must fit the model's context window, else 400 `context_length_exceeded`.
    #[oai(nullable, validator(minimum(value = "1")))]
    pub max_tokens: Option<u32>,
    /// Same as `max_tokens` (OpenAI's newer name); wins when both are given.
    #[oai(nullable, validator(minimum(value = "1")))]
    pub max_completion_tokens: Option<u32>,
    /// Temperature, nucleus mass, stop sequences, seed and penalties.
    #[oai(flatten)]
    pub sampling: SamplingFields,
    /// Answer as server-sent events (`chat.completion.chunk` objects, then `data: [DONE]`).
    #[oai(nullable)]
    pub stream: Option<bool>,
    /// Streaming options.
    #[oai(nullable)]
    pub stream_options: Option<StreamOptions>,
    /// The answer's format; with `model: auto` a JSON format counts towards complexity.
    #[oai(nullable)]
    pub response_format: Option<ResponseFormat>,
    /// Ignored; accepted for compatibility.
    #[oai(nullable)]
    pub user: Option<String>,
}

impl SamplingFields {
    /// The sampling of the examples Swagger UI sends: greedy, so "Try it out" answers the same each time.
    pub fn example() -> SamplingFields {
        SamplingFields {
            temperature: Some(0.0),
            top_p: Some(1.0),
            n: Some(1),
            ..SamplingFields::default()
        }
    }
}

impl poem_openapi::types::Example for ChatRequest {
    /// What Swagger UI's "Try it out" sends: a short answer from the router's pick.
    fn example() -> ChatRequest {
        ChatRequest {
            model: Some("auto".into()),
            messages: vec![ChatMessageIn {
                role: ChatRole::User,
                content: Some(MessageContent::Text("Say hello in five words.".into())),
                name: None,
            }],
            max_tokens: Some(64),
            max_completion_tokens: None,
            sampling: SamplingFields::example(),
            stream: Some(false),
            stream_options: None,
            response_format: None,
            user: None,
        }
    }
}

impl ChatRequest {
    /// Whether the answer is streamed.
    pub fn streamed(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    /// `stream_options.include_usage`.
    pub fn include_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false)
    }
}

/// An OpenAI chat request plus the files to answer from.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct ChatBody {
    /// The chat request.
    #[oai(flatten)]
    pub chat: ChatRequest,
    /// Ids of files to answer from (`/api/v1/upload` or `/v1/files`); files still processing are waited for
    /// (see `wait_timeout`). Empty or absent: the answer comes from the files (at most 4) that hold the
    /// question's best matches among all your ready files.
    #[oai(default, nullable)]
    pub file_ids: Vec<String>,
    /// Seconds to wait for files in `file_ids` that are still queued or processing (default 120, at most
    /// 600, 0 to not wait); after it the answer is 409 `file_not_ready` with `Retry-After`.
    #[oai(nullable, validator(minimum(value = "0"), maximum(value = "600")))]
    pub wait_timeout: Option<f64>,
}

impl poem_openapi::types::Example for ChatBody {
    /// What Swagger UI's "Try it out" sends: a question over all your files (or name some in `file_ids`).
    fn example() -> ChatBody {
        let mut chat = ChatRequest::example();
        chat.messages[0].content = Some(MessageContent::Text(
            "What do my files say about the total?".into(),
        ));
        ChatBody {
            chat,
            file_ids: Vec::new(),
            wait_timeout: Some(30.0),
        }
    }
}

/// The format an answer is asked in (OpenAI's `response_format`).
#[derive(Debug, Clone, Object)]
pub struct ResponseFormat {
    /// `text` (the default), `json_object` or `json_schema` (the model is told to answer in JSON; the
    /// schema itself is not enforced).
    #[oai(rename = "type")]
    pub kind: ResponseFormatType,
    /// With `json_schema`: OpenAI's `{"name", "schema", "strict"}`; accepted, not enforced.
    #[oai(nullable)]
    pub json_schema: Option<Value>,
}

/// What `response_format.type` may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, poem_openapi::Enum)]
#[oai(rename_all = "snake_case")]
pub enum ResponseFormatType {
    /// Free text.
    Text,
    /// A JSON object.
    JsonObject,
    /// JSON following a schema.
    JsonSchema,
}

/// Which endpoint a chat request came to: their defaults differ (see [`ChatRequest`]'s fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatUse {
    /// `/v1/chat/completions`: text parts only.
    Plain,
    /// Chat with files: image and audio parts are skipped (the files carry those).
    Files,
}

fn bad(message: impl Into<String>, param: &str) -> ApiError {
    ApiError::with_param(ErrorCode::InvalidRequest, message, Some(param))
}

fn text_of(content: Option<&MessageContent>, i: usize, used: ChatUse) -> Result<String, ApiError> {
    let parts = match content {
        None => return Ok(String::new()),
        Some(MessageContent::Text(s)) => return Ok(s.clone()),
        Some(MessageContent::Parts(parts)) => parts,
    };
    let mut out = Vec::new();
    for part in parts {
        match part {
            ContentPart::Text(t) => out.push(t.text.as_str()),
            ContentPart::ImageUrl(_) | ContentPart::InputAudio(_) if used == ChatUse::Files => {}
            ContentPart::ImageUrl(_) | ContentPart::InputAudio(_) => {
                return Err(bad(
                    "only text parts are supported here; to ask about images or audio, upload them and \
                     use /api/v1/chat/multimodal with file_ids",
                    &format!("messages[{i}].content"),
                ));
            }
        }
    }
    Ok(out.join("\n"))
}

/// The sampling fields every generation request has (flattened into each request body).
#[derive(Debug, Clone, Default, Object)]
pub struct SamplingFields {
    /// 0 to 2; 0 is greedy and deterministic. Default 1 (OpenAI's), except in chat with files: 0 (what
    /// answers from sources best).
    #[oai(nullable, validator(minimum(value = "0"), maximum(value = "2")))]
    pub temperature: Option<f64>,
    /// Nucleus sampling mass in (0, 1] (default 1).
    #[oai(
        nullable,
        validator(minimum(value = "0", exclusive), maximum(value = "1"))
    )]
    pub top_p: Option<f64>,
    /// Choices to generate; only 1 is supported.
    #[oai(nullable, validator(minimum(value = "1"), maximum(value = "1")))]
    pub n: Option<u32>,
    /// A string or up to 4 non-empty strings; generation stops before any of them, which are not returned.
    #[oai(nullable)]
    pub stop: Option<Value>,
    /// Seed of the sampler: the same seed and request give the same answer.
    #[oai(nullable)]
    pub seed: Option<i64>,
    /// -2 to 2: penalises tokens that already appeared.
    #[oai(nullable, validator(minimum(value = "-2"), maximum(value = "2")))]
    pub presence_penalty: Option<f64>,
    /// -2 to 2: penalises tokens by how often they appeared.
    #[oai(nullable, validator(minimum(value = "-2"), maximum(value = "2")))]
    pub frequency_penalty: Option<f64>,
}

impl SamplingFields {
    /// Checks every field and gives the engine's parameters; `max_tokens` (the request's) is
    /// `default_max_tokens` when the request gives none (the caller may replace it by what fits the window).
    pub fn params(
        &self,
        max_tokens: Option<u32>,
        default_temperature: f64,
        default_max_tokens: usize,
    ) -> Result<SamplingParams, ApiError> {
        if self.n.is_some_and(|n| n != 1) {
            return Err(bad("only n = 1 is supported", "n"));
        }
        // The upper bound is the model's window less the prompt: `context_length_exceeded` names it.
        if max_tokens == Some(0) {
            return Err(bad("max_tokens must be at least 1", "max_tokens"));
        }
        let temperature = self.temperature.unwrap_or(default_temperature);
        if !(0.0..=2.0).contains(&temperature) {
            return Err(bad("temperature must be between 0 and 2", "temperature"));
        }
        let top_p = self.top_p.unwrap_or(1.0);
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(bad("top_p must be in (0, 1]", "top_p"));
        }
        for (v, name) in [
            (self.presence_penalty, "presence_penalty"),
            (self.frequency_penalty, "frequency_penalty"),
        ] {
            if v.is_some_and(|p| !(-2.0..=2.0).contains(&p)) {
                return Err(bad(format!("{name} must be between -2 and 2"), name));
            }
        }
        let stop = match &self.stop {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) if !s.is_empty() => vec![s.clone()],
            Some(Value::Array(a))
                if a.len() <= MAX_STOP
                    && a.iter().all(|s| s.as_str().is_some_and(|s| !s.is_empty())) =>
            {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            }
            Some(_) => {
                return Err(bad(
                    format!(
                        "stop must be a string or an array of up to {MAX_STOP} non-empty strings"
                    ),
                    "stop",
                ));
            }
        };
        Ok(SamplingParams {
            max_tokens: max_tokens.map_or(default_max_tokens, |m| m as usize),
            temperature: temperature as f32,
            top_p: top_p as f32,
            seed: self.seed.map(|s| u64::from_ne_bytes(s.to_ne_bytes())),
            stop,
            presence_penalty: self.presence_penalty.unwrap_or(0.0) as f32,
            frequency_penalty: self.frequency_penalty.unwrap_or(0.0) as f32,
        })
    }
}

/// Converts and checks a chat request: the one validation of every chat endpoint. Plain chat passes no
/// files and the default wait.
pub fn turn_of(
    req: ChatRequest,
    file_ids: Vec<String>,
    wait_timeout: Option<f64>,
    used: ChatUse,
) -> Result<ChatTurn, ApiError> {
    if req.messages.is_empty() {
        return Err(bad("messages must not be empty", "messages"));
    }
    let mut messages = Vec::with_capacity(req.messages.len());
    for (i, m) in req.messages.iter().enumerate() {
        let role = match m.role {
            ChatRole::System | ChatRole::Developer => Role::System,
            ChatRole::User => Role::User,
            ChatRole::Assistant => Role::Assistant,
        };
        messages.push(ChatMessage {
            role,
            content: text_of(m.content.as_ref(), i, used)?,
        });
    }
    let max_tokens = req.max_completion_tokens.or(req.max_tokens);
    let default_temperature = match used {
        ChatUse::Plain => 1.0,
        ChatUse::Files => 0.0,
    };
    let params = req.sampling.params(
        max_tokens,
        default_temperature,
        DEFAULT_FILE_CHAT_MAX_TOKENS,
    )?;
    let format = match req.response_format.map(|f| f.kind) {
        None | Some(ResponseFormatType::Text) => OutputFormat::Text,
        Some(ResponseFormatType::JsonObject | ResponseFormatType::JsonSchema) => OutputFormat::Json,
    };
    Ok(ChatTurn {
        model: req.model.unwrap_or_else(|| AUTO.into()),
        messages,
        file_ids,
        params,
        max_tokens_given: max_tokens.is_some(),
        format,
        wait: wait_of(wait_timeout)?,
    })
}

/// The wait for unready files: `wait_timeout` seconds (0 to 600), 120 by default.
pub fn wait_of(seconds: Option<f64>) -> Result<std::time::Duration, ApiError> {
    let Some(s) = seconds else {
        return Ok(DEFAULT_WAIT);
    };
    if !s.is_finite() || s < 0.0 || s > MAX_WAIT.as_secs_f64() {
        return Err(bad(
            format!(
                "wait_timeout must be between 0 and {} seconds",
                MAX_WAIT.as_secs()
            ),
            "wait_timeout",
        ));
    }
    Ok(std::time::Duration::from_secs_f64(s))
}

/// A tier that failed before the one that answered.
#[derive(Debug, Clone, Object)]
pub struct FallbackDto {
    /// The tier.
    pub tier: String,
    /// Its error.
    pub error: String,
}

/// How the answering model was chosen.
#[derive(Debug, Clone, Object)]
pub struct RoutingDto {
    /// The tier that answered.
    pub tier: String,
    /// The complexity score, when the router chose (`model: auto`).
    pub complexity_score: Option<f32>,
    /// `low`, `medium` or `high`, when the router chose.
    pub level: Option<String>,
    /// Why this tier, when the router chose.
    pub reason: Option<String>,
    /// Tiers that failed first and fell back.
    pub fallbacks: Vec<FallbackDto>,
}

impl RoutingDto {
    /// From the router's decision and the tiers that failed.
    pub fn of(tier: &str, decision: Option<&Decision>, failed: &[Skipped]) -> RoutingDto {
        RoutingDto {
            tier: tier.to_owned(),
            complexity_score: decision.map(|d| d.complexity.score),
            level: decision.map(|d| d.complexity.level.as_str().to_owned()),
            reason: decision.map(|d| d.reason.clone()),
            fallbacks: failed
                .iter()
                .map(|f| FallbackDto {
                    tier: f.tier.clone(),
                    error: f.reason.clone(),
                })
                .collect(),
        }
    }
}
