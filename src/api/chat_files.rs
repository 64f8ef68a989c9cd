//! Chat with files: `POST /api/v1/chat/multimodal` and `/api/v1/chat/multimodal-audio`. An OpenAI chat
//! request plus `file_ids`; the answer is an OpenAI chat completion plus the numbered `sources` it was given.

use super::json_body::JsonBody;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi, Union};

use super::ApiTags;
use super::auth::Caller;
use super::chat::{ChunkKind, ChunkMeta, Collected, collect, events, finish_name};
use super::chat_types::{CompletionUsage, Reply};
use super::chat_wire::{ChatBody, ChatUse, RoutingDto, turn_of};
use super::error::{ApiError, ErrorBody};
use crate::app::App;
use crate::app::chat::grounded::{Source, best_quote, cited_numbers, location_label};
use crate::app::chat::{FileChat, FinishReason, Usage, snippet};

/// A source the answer was given, numbered as the answer cites it.
#[derive(Debug, Clone, Object)]
pub struct SourceDto {
    /// The number in the prompt and in the answer's citations (`[1]`), from 1.
    pub number: u32,
    /// The file.
    pub file_id: String,
    /// The file's name.
    pub filename: String,
    /// The chunk (`<file id>#<ordinal>`, as in `/api/v1/files/{id}/chunks` and search results).
    pub chunk_id: String,
    /// Where the text is: pages, slides, sheet and cell range, heading path, lines or time range.
    pub location: serde_json::Value,
    /// The location in words, e.g. `page 3`, `Sheet1!A1:D9`, `1:05-1:20`.
    pub location_label: String,
    /// The start of the source's text.
    pub snippet: String,
    /// True when the answer cites this number.
    pub cited: bool,
    /// The sentence, line or table row of the source that best matches the question and the answer: the
    /// evidence to show, even when the answer is weak.
    #[oai(nullable)]
    pub quote: Option<QuoteDto>,
}

/// The evidence inside a source, with its place in the chunk's text.
#[derive(Debug, Clone, Object)]
pub struct QuoteDto {
    /// The quoted text, verbatim from the chunk.
    pub text: String,
    /// Offset of its first character in the chunk's text (`GET /api/v1/files/{id}/chunks`), counted in
    /// Unicode code points.
    pub start: u32,
    /// Offset just past its last character, in code points.
    pub end: u32,
}

fn sources_dto(sources: &[Source], question: &str, answer: &str) -> Vec<SourceDto> {
    let cited = cited_numbers(answer);
    let offset = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    sources
        .iter()
        .map(|s| SourceDto {
            number: u32::try_from(s.number).unwrap_or(u32::MAX),
            file_id: s.chunk.file_id.clone(),
            filename: s.chunk.filename.clone(),
            chunk_id: s.chunk.chunk_id.clone(),
            location_label: location_label(&s.chunk.location),
            location: s.chunk.location.clone(),
            snippet: snippet(&s.chunk.text),
            cited: cited.contains(&s.number),
            quote: best_quote(&s.chunk.text, question, answer).map(|q| QuoteDto {
                text: q.text,
                start: offset(q.start),
                end: offset(q.end),
            }),
        })
        .collect()
}

/// The assistant's message.
#[derive(Debug, Clone, Object)]
pub struct AnswerMessage {
    /// Always `assistant`.
    pub role: String,
    /// The answer, citing sources as `[n]`.
    pub content: String,
}

/// One answer.
#[derive(Debug, Clone, Object)]
pub struct AnswerChoice {
    /// Always 0.
    pub index: u32,
    /// The answer.
    pub message: AnswerMessage,
    /// `stop` (end of answer or a stop sequence) or `length` (`max_tokens` reached).
    pub finish_reason: String,
}

/// A chat completion with the sources it was given.
#[derive(Debug, Clone, Object)]
pub struct FileChatCompletion {
    /// `chatcmpl-...`.
    pub id: String,
    /// Always `chat.completion`.
    pub object: String,
    /// Unix seconds.
    pub created: i64,
    /// The model that answered.
    pub model: String,
    /// The answer.
    pub choices: Vec<AnswerChoice>,
    /// Token counts.
    pub usage: CompletionUsage,
    /// The numbered sources in the prompt; the answer's `[n]` citations refer to `number`.
    pub sources: Vec<SourceDto>,
    /// How the router chose the model (when `model` was `auto`).
    pub routing: RoutingDto,
}

/// The changed part of a streamed answer.
#[derive(Debug, Clone, Object)]
pub struct AnswerDelta {
    /// `assistant` in the first chunk.
    pub role: Option<String>,
    /// The next piece of text.
    pub content: Option<String>,
}

/// One streamed choice.
#[derive(Debug, Clone, Object)]
pub struct ChunkChoice {
    /// Always 0.
    pub index: u32,
    /// What changed.
    pub delta: AnswerDelta,
    /// Set in the last chunk.
    #[oai(nullable)]
    pub finish_reason: Option<String>,
}

/// One server-sent event of a streamed answer (`chat.completion.chunk`). The last chunk carries
/// `finish_reason`, `sources` and `routing`; with `stream_options.include_usage` one more chunk with empty
/// `choices` carries `usage`; then `data: [DONE]`. An error after the stream started arrives as
/// `data: {"error": {...}}` before `[DONE]`.
#[derive(Debug, Clone, Object)]
pub struct FileChatChunk {
    /// Same for every chunk of an answer.
    pub id: String,
    /// Always `chat.completion.chunk`.
    pub object: String,
    /// Unix seconds.
    pub created: i64,
    /// The model that answers.
    pub model: String,
    /// The piece (empty in the usage chunk).
    pub choices: Vec<ChunkChoice>,
    /// Token counts (usage chunk only).
    #[oai(nullable)]
    pub usage: Option<CompletionUsage>,
    /// The numbered sources (last chunk only).
    #[oai(nullable)]
    pub sources: Option<Vec<SourceDto>>,
    /// How the model was chosen (last chunk only).
    #[oai(nullable)]
    pub routing: Option<RoutingDto>,
}

/// What one server-sent event of a streamed answer carries: a chunk, or an error that ended the stream early.
#[derive(Debug, Clone, Union)]
pub enum FileChatStreamEvent {
    /// A chunk.
    Chunk(FileChatChunk),
    /// The error that ended the stream (then `data: [DONE]`).
    Error(ErrorBody),
}

/// The answer: a chat completion with `sources`, or (with `stream: true`) server-sent
/// `chat.completion.chunk` events ending with `data: [DONE]`; the last chunk carries `sources`.
pub type ChatReply = Reply<FileChatCompletion, FileChatStreamEvent>;

/// How a streamed answer shapes its chunks: the last one carries the sources and the routing.
struct FileChunks {
    /// The answer so far (to mark the cited sources and pick quotes at the end).
    text: String,
    sources: Vec<Source>,
    question: String,
    routing: RoutingDto,
}

impl FileChunks {
    fn chunk(meta: &ChunkMeta, delta: AnswerDelta, finish: Option<FinishReason>) -> FileChatChunk {
        FileChatChunk {
            id: meta.id.clone(),
            object: "chat.completion.chunk".into(),
            created: meta.created,
            model: meta.model.clone(),
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                finish_reason: finish.map(|r| finish_name(r).to_owned()),
            }],
            usage: None,
            sources: None,
            routing: None,
        }
    }
}

impl ChunkKind for FileChunks {
    type Event = FileChatStreamEvent;

    fn opening(&mut self, meta: &ChunkMeta) -> Option<FileChatStreamEvent> {
        let delta = AnswerDelta {
            role: Some("assistant".into()),
            content: Some(String::new()),
        };
        Some(FileChatStreamEvent::Chunk(Self::chunk(meta, delta, None)))
    }

    fn text(&mut self, meta: &ChunkMeta, text: String) -> FileChatStreamEvent {
        self.text.push_str(&text);
        let delta = AnswerDelta {
            role: None,
            content: Some(text),
        };
        FileChatStreamEvent::Chunk(Self::chunk(meta, delta, None))
    }

    fn finish(&mut self, meta: &ChunkMeta, reason: FinishReason) -> FileChatStreamEvent {
        let delta = AnswerDelta {
            role: None,
            content: None,
        };
        let mut last = Self::chunk(meta, delta, Some(reason));
        last.sources = Some(sources_dto(&self.sources, &self.question, &self.text));
        last.routing = Some(self.routing.clone());
        FileChatStreamEvent::Chunk(last)
    }

    fn usage(&mut self, meta: &ChunkMeta, usage: Usage) -> FileChatStreamEvent {
        let delta = AnswerDelta {
            role: None,
            content: None,
        };
        let mut chunk = Self::chunk(meta, delta, None);
        chunk.choices.clear();
        chunk.usage = Some(CompletionUsage::from(usage));
        FileChatStreamEvent::Chunk(chunk)
    }

    fn error(&mut self, body: ErrorBody) -> FileChatStreamEvent {
        FileChatStreamEvent::Error(body)
    }
}

/// Turns a started chat into the reply the client asked for.
pub async fn reply(
    chat: FileChat,
    stream: bool,
    include_usage: bool,
) -> Result<ChatReply, ApiError> {
    let FileChat {
        routed,
        decision,
        question,
    } = chat;
    let routing = RoutingDto::of(&routed.tier, decision.as_ref(), &routed.failed);
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
    let created = chrono::Utc::now().timestamp();
    if stream {
        let kind = FileChunks {
            text: String::new(),
            sources: routed.extra,
            question,
            routing,
        };
        let meta = ChunkMeta::new(id, created, routed.model, include_usage);
        return Ok(Reply::Stream(events(routed.stream, meta, kind)));
    }
    let Collected {
        text,
        finish_reason,
        usage,
        model,
    } = collect(routed.stream).await?;
    Ok(Reply::Whole(Json(FileChatCompletion {
        id,
        object: "chat.completion".into(),
        created,
        model,
        sources: sources_dto(&routed.extra, &question, &text),
        choices: vec![AnswerChoice {
            index: 0,
            message: AnswerMessage {
                role: "assistant".into(),
                content: text,
            },
            finish_reason: finish_name(finish_reason).to_owned(),
        }],
        usage: CompletionUsage::from(usage),
        routing,
    })))
}

/// Chat with files.
pub struct ChatFilesApi {
    pub app: App,
}

impl ChatFilesApi {
    async fn answer(&self, caller: &Caller, body: ChatBody) -> Result<ChatReply, ApiError> {
        let (stream, include_usage) = (body.chat.streamed(), body.chat.include_usage());
        let turn = turn_of(body.chat, body.file_ids, body.wait_timeout, ChatUse::Files)?;
        let chat = self.app.chat_with_files(&caller.tenant, turn).await?;
        reply(chat, stream, include_usage).await
    }
}

#[OpenApi(tag = "ApiTags::Chat")]
impl ChatFilesApi {
    /// Chat with files
    ///
    /// An OpenAI chat request plus `file_ids`. The most relevant chunks of those files (hybrid search scoped
    /// to them; all of their text when it fits the budget) become numbered sources in the prompt, the model
    /// answers citing them as `[n]`, and the response adds `sources` (number, file, location, snippet,
    /// whether cited, and the `quote` that best matches the question). `model` defaults to `auto` (the
    /// complexity router picks it; `routing` says how) and `temperature` to 0. With `stream: true` the answer
    /// comes as `chat.completion.chunk` events and the last chunk carries `sources`. Files still queued or
    /// processing are waited for (`wait_timeout`, default 120 s); after that 409 `file_not_ready` with
    /// `Retry-After` and the file's progress; an unknown file 404.
    #[oai(path = "/api/v1/chat/multimodal", method = "post")]
    async fn multimodal(
        &self,
        caller: Caller,
        body: JsonBody<ChatBody>,
    ) -> Result<ChatReply, ApiError> {
        self.answer(&caller, body.0).await
    }

    /// Chat with files, audio included
    ///
    /// The same as `/api/v1/chat/multimodal`, for conversations over recordings as well as documents: an
    /// audio file's sources are transcript segments and their `location` is a time range in seconds.
    #[oai(path = "/api/v1/chat/multimodal-audio", method = "post")]
    async fn multimodal_audio(
        &self,
        caller: Caller,
        body: JsonBody<ChatBody>,
    ) -> Result<ChatReply, ApiError> {
        self.answer(&caller, body.0).await
    }
}
