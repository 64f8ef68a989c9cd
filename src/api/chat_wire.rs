//! Wire types shared by chat with files and the complexity analysis: the OpenAI chat request body (plus
//! `file_ids`), usage, the routing summary, and the mapping of chat errors to API errors.

use poem_openapi::Object;
use serde_json::Value;

use super::chat_types::ChatMessageIn;
use super::error::{ApiError, ErrorCode};
use crate::app::chat::{
    AUTO, ChatError, ChatFilesError, ChatMessage, ChatTurn, DEFAULT_WAIT, Decision, MAX_WAIT,
    OutputFormat, Role, RouteError, SamplingParams, Skipped,
};

/// Completion tokens when the request does not say.
pub const DEFAULT_MAX_TOKENS: usize = 256;
/// Largest `max_tokens`.
const MAX_MAX_TOKENS: u32 = 8192;
/// Most stop sequences (OpenAI's limit).
const MAX_STOP: usize = 4;

/// An OpenAI chat request plus the files to answer from.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct ChatBody {
    /// `auto` (the default: the complexity router picks), a chat model id from `GET /v1/models` or an alias
    /// listed there (`gpt-4o-mini`, ...); case-insensitive.
    #[oai(nullable)]
    pub model: Option<String>,
    /// The conversation; the last user message is the question.
    #[oai(validator(min_items = 1))]
    pub messages: Vec<ChatMessageIn>,
    /// Ids of files to answer from (`/api/v1/upload` or `/v1/files`); files still processing are waited for
    /// (see `wait_timeout`).
    #[oai(default, nullable)]
    pub file_ids: Vec<String>,
    /// Most tokens to generate (default 256).
    #[oai(nullable, validator(minimum(value = "1"), maximum(value = "8192")))]
    pub max_tokens: Option<u32>,
    /// Newer name of `max_tokens`.
    #[oai(nullable, validator(minimum(value = "1"), maximum(value = "8192")))]
    pub max_completion_tokens: Option<u32>,
    /// 0-2; default 0 (greedy, what answers from sources best).
    #[oai(nullable, validator(minimum(value = "0"), maximum(value = "2")))]
    pub temperature: Option<f32>,
    /// Nucleus sampling mass in (0, 1]; default 1.
    #[oai(
        nullable,
        validator(minimum(value = "0", exclusive), maximum(value = "1"))
    )]
    pub top_p: Option<f32>,
    /// Sampling seed.
    #[oai(nullable)]
    pub seed: Option<u64>,
    /// A stop string or up to 4 of them.
    #[oai(nullable)]
    pub stop: Option<Value>,
    /// -2 to 2.
    #[oai(nullable, validator(minimum(value = "-2"), maximum(value = "2")))]
    pub presence_penalty: Option<f32>,
    /// -2 to 2.
    #[oai(nullable, validator(minimum(value = "-2"), maximum(value = "2")))]
    pub frequency_penalty: Option<f32>,
    /// Stream the answer as server-sent events.
    #[oai(nullable)]
    pub stream: Option<bool>,
    /// `{"include_usage": true}` adds a usage chunk before `[DONE]`.
    #[oai(nullable)]
    pub stream_options: Option<Value>,
    /// `{"type": "text" | "json_object" | "json_schema"}`; a JSON format counts towards complexity.
    #[oai(nullable)]
    pub response_format: Option<Value>,
    /// Seconds to wait for files in `file_ids` that are still queued or processing (default 120, at most
    /// 600, 0 to not wait); after it the answer is 409 `file_not_ready` with `Retry-After`.
    #[oai(nullable, validator(minimum(value = "0"), maximum(value = "600")))]
    pub wait_timeout: Option<f64>,
}

impl poem_openapi::types::Example for ChatBody {
    /// What Swagger UI's "Try it out" sends (add the ids of uploaded files to `file_ids`).
    fn example() -> ChatBody {
        ChatBody {
            model: Some("auto".into()),
            messages: vec![ChatMessageIn {
                role: "user".into(),
                content: Some(Value::String(
                    "What do my files say about the total?".into(),
                )),
                name: None,
            }],
            file_ids: Vec::new(),
            max_tokens: Some(64),
            max_completion_tokens: None,
            temperature: Some(0.0),
            top_p: Some(1.0),
            seed: None,
            stop: None,
            presence_penalty: None,
            frequency_penalty: None,
            stream: Some(false),
            stream_options: None,
            response_format: None,
            wait_timeout: Some(30.0),
        }
    }
}

impl ChatBody {
    /// `stream_options.include_usage`.
    pub fn include_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }
}

fn bad(message: impl Into<String>, param: &str) -> ApiError {
    ApiError::with_param(ErrorCode::InvalidRequest, message, Some(param))
}

fn text_of(content: Option<&Value>, i: usize) -> Result<String, ApiError> {
    let param = format!("messages[{i}].content");
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => {
            let mut out = Vec::new();
            for p in parts {
                match (
                    p.get("type").and_then(Value::as_str),
                    p.get("text").and_then(Value::as_str),
                ) {
                    (Some("text"), Some(t)) => out.push(t),
                    (Some("text"), None) => return Err(bad("a text part needs `text`", &param)),
                    // Images and audio parts: the files in `file_ids` carry those.
                    _ => {}
                }
            }
            Ok(out.join("\n"))
        }
        Some(_) => Err(bad("content must be a string or an array of parts", &param)),
    }
}

/// Converts and checks a request body. `file_chat` makes the defaults those of chat with files.
pub fn turn_of(body: ChatBody, file_chat: bool) -> Result<ChatTurn, ApiError> {
    let mut messages = Vec::with_capacity(body.messages.len());
    for (i, m) in body.messages.iter().enumerate() {
        let role = match m.role.as_str() {
            "system" | "developer" => Role::System,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            other => {
                return Err(bad(
                    format!("role must be system, user or assistant, not `{other}`"),
                    &format!("messages[{i}].role"),
                ));
            }
        };
        messages.push(ChatMessage {
            role,
            content: text_of(m.content.as_ref(), i)?,
        });
    }
    let max = body.max_completion_tokens.or(body.max_tokens);
    if let Some(m) = max
        && !(1..=MAX_MAX_TOKENS).contains(&m)
    {
        return Err(bad(
            format!("max_tokens must be between 1 and {MAX_MAX_TOKENS}"),
            "max_tokens",
        ));
    }
    let temperature = body
        .temperature
        .unwrap_or(if file_chat { 0.0 } else { 1.0 });
    if !(0.0..=2.0).contains(&temperature) {
        return Err(bad("temperature must be between 0 and 2", "temperature"));
    }
    let top_p = body.top_p.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(bad("top_p must be in (0, 1]", "top_p"));
    }
    for (v, name) in [
        (body.presence_penalty, "presence_penalty"),
        (body.frequency_penalty, "frequency_penalty"),
    ] {
        if v.is_some_and(|p| !(-2.0..=2.0).contains(&p)) {
            return Err(bad(format!("{name} must be between -2 and 2"), name));
        }
    }
    let stop = match &body.stop {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
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
                format!("stop must be a string or an array of up to {MAX_STOP} non-empty strings"),
                "stop",
            ));
        }
    };
    let format = match body
        .response_format
        .as_ref()
        .and_then(|f| f.get("type"))
        .and_then(Value::as_str)
    {
        None | Some("text") => OutputFormat::Text,
        Some("json_object" | "json_schema") => OutputFormat::Json,
        Some(other) => {
            return Err(bad(
                format!(
                    "response_format.type must be text, json_object or json_schema, not `{other}`"
                ),
                "response_format",
            ));
        }
    };
    let wait = wait_of(body.wait_timeout)?;
    Ok(ChatTurn {
        model: body.model.unwrap_or_else(|| AUTO.into()),
        messages,
        file_ids: body.file_ids,
        params: SamplingParams {
            max_tokens: max.map_or(DEFAULT_MAX_TOKENS, |m| m as usize),
            temperature,
            top_p,
            seed: body.seed,
            stop,
            presence_penalty: body.presence_penalty.unwrap_or(0.0),
            frequency_penalty: body.frequency_penalty.unwrap_or(0.0),
        },
        max_tokens_given: max.is_some(),
        format,
        wait,
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
    #[oai(nullable)]
    pub complexity_score: Option<f32>,
    /// `low`, `medium` or `high`, when the router chose.
    #[oai(nullable)]
    pub level: Option<String>,
    /// Why this tier, when the router chose.
    #[oai(nullable)]
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

/// Maps a chat failure to its API error.
pub fn chat_error(e: ChatFilesError) -> ApiError {
    let message = e.to_string();
    match e {
        ChatFilesError::BadRequest(m, param) => bad(m, param),
        ChatFilesError::FileNotFound(_) => {
            ApiError::with_param(ErrorCode::FileNotFound, message, Some("file_ids"))
        }
        ChatFilesError::FileNotReady { status, .. } if status != "failed" => {
            ApiError::not_ready(message, "file_ids")
        }
        ChatFilesError::FileNotReady { .. } => {
            ApiError::with_param(ErrorCode::FileNotReady, message, Some("file_ids"))
        }
        ChatFilesError::ModelNotFound(_) => {
            ApiError::with_param(ErrorCode::ModelNotFound, message, Some("model"))
        }
        ChatFilesError::Route(RouteError::NothingFits { .. }) => {
            ApiError::with_param(ErrorCode::ContextLengthExceeded, message, Some("messages"))
        }
        ChatFilesError::Route(RouteError::NoModel(_)) => {
            ApiError::new(ErrorCode::Overloaded, message)
        }
        ChatFilesError::Route(RouteError::AllFailed(e)) | ChatFilesError::Chat(e) => {
            chat_failure(e)
        }
        ChatFilesError::Search(e) => ApiError::from(e),
        ChatFilesError::Store(e) => ApiError::internal(&e),
    }
}

fn chat_failure(e: ChatError) -> ApiError {
    let message = e.to_string();
    match e {
        ChatError::ContextLengthExceeded { .. } => {
            ApiError::with_param(ErrorCode::ContextLengthExceeded, message, Some("messages"))
        }
        ChatError::InvalidParameter { param, .. } => bad(message, param),
        ChatError::Overloaded | ChatError::ShutDown | ChatError::Remote(_) => {
            ApiError::new(ErrorCode::Overloaded, message)
        }
        ChatError::Inference(_) => ApiError::internal(&e),
    }
}
