//! The facade of routed chat and chat with files: checks the files, retrieves their best chunks, asks the
//! router which tier answers, builds the grounded prompt for that tier and starts the generation.
//!
//! Everything here awaits (store, search, the router's first event); nothing blocks the runtime.

mod completions;
pub mod grounded;
mod guard;
mod retrieve;

pub use crate::models::chat::{
    ChatError, ChatMessage, FinishReason, GenerationEvent, GenerationStream, Role, SamplingParams,
    Usage,
};
pub use crate::router::{AUTO, Decision, OutputFormat, RouteError, Routed, Skipped};
pub use completions::{
    ChatTarget, CompletionError, DEFAULT_CHAT_MAX_TOKENS, DEFAULT_COMPLETION_MAX_TOKENS, Generation,
};

use std::collections::BTreeMap;
use std::time::Duration;

use crate::app::App;
use crate::index::service::{SearchError, SearchMode, SearchRequest, filter};
use crate::models::chat::{GenerationRequest, Prompt, SharedChatBackend};
use crate::pipeline::FileOpError;
use crate::router::{ComplexityInput, Tier, TierCounts, last_user_text};
use crate::store::{StoreError, chunk_id};
use crate::types::{FileRecord, FileStatus};
use grounded::{Candidate, Family, Source, Style};
use retrieve::{Cues, FileChunks};

/// Most files in one request.
pub const MAX_FILES: usize = 20;
/// Most chunks read per file to size and ground the answer.
const MAX_CHUNKS_PER_FILE: u32 = 5000;
/// Files a chat without `file_ids` answers from: those of the best search hits.
const MAX_BEST_FILES: usize = 4;
/// Hits fetched from search.
const SEARCH_HITS: usize = 12;
/// Longest a request may wait for its files to be ready.
pub const MAX_WAIT: Duration = Duration::from_secs(600);
/// How long a request waits for its files by default.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(120);
/// `max_tokens` of a chat with files that gives none: answers from sources are short, and the rest of the
/// window holds the sources (plain chat's default is [`DEFAULT_CHAT_MAX_TOKENS`]).
pub const DEFAULT_FILE_CHAT_MAX_TOKENS: usize = 256;
/// Tokens kept free for the chat template around the sources.
const TEMPLATE_MARGIN: usize = 48;
/// Characters of a chunk given as its snippet.
const SNIPPET_CHARS: usize = 300;

/// A chat request as the facade sees it.
#[derive(Debug, Clone)]
pub struct ChatTurn {
    /// `auto` or a model id.
    pub model: String,
    /// The conversation.
    pub messages: Vec<ChatMessage>,
    /// Files to answer from; empty: the files of the best search hits over all the tenant's files.
    pub file_ids: Vec<String>,
    /// Sampling.
    pub params: SamplingParams,
    /// True when the client set `max_tokens`.
    pub max_tokens_given: bool,
    /// Requested answer format.
    pub format: OutputFormat,
    /// How long to wait for files still queued or processing.
    pub wait: Duration,
}

/// Why a routed chat cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum ChatFilesError {
    /// A bad field.
    #[error("{0}")]
    BadRequest(String, &'static str),
    /// No such file for this tenant.
    #[error("no file with id {0}")]
    FileNotFound(String),
    /// The file is still being processed after the wait (or failed).
    #[error("{}", not_ready_message(id, status, progress.as_ref(), *waited))]
    FileNotReady {
        /// The file.
        id: String,
        /// Its status.
        status: &'static str,
        /// How far its processing got.
        progress: Option<crate::types::Progress>,
        /// How long the request waited for it.
        waited: Duration,
    },
    /// No such model.
    #[error("the model `{0}` does not exist; use `auto` or a model from GET /v1/models")]
    ModelNotFound(String),
    /// No tier can hold the request.
    #[error(transparent)]
    Route(#[from] RouteError),
    /// The model refused or failed.
    #[error(transparent)]
    Chat(#[from] ChatError),
    /// Retrieval failed.
    #[error(transparent)]
    Search(#[from] SearchError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<FileOpError> for ChatFilesError {
    fn from(e: FileOpError) -> ChatFilesError {
        match e {
            FileOpError::NotFound(id) => ChatFilesError::FileNotFound(id),
            FileOpError::NotReady { id, status } => ChatFilesError::FileNotReady {
                id,
                status,
                progress: None,
                waited: Duration::ZERO,
            },
            e @ FileOpError::NotExtracted { .. } => {
                ChatFilesError::BadRequest(e.to_string(), "file_ids")
            }
            FileOpError::Store(e) => ChatFilesError::Store(e),
        }
    }
}

/// A tier as an analysis shows it.
#[derive(Debug, Clone)]
pub struct TierView {
    /// Its name.
    pub name: String,
    /// Its model.
    pub model: String,
    /// `local` or `remote`.
    pub kind: &'static str,
    /// Its window, when it can serve.
    pub context_window: Option<usize>,
    /// Its score range.
    pub score_range: (f32, f32),
    /// Price per 1,000 tokens.
    pub cost_per_1k_tokens: f64,
}

/// The router's analysis of a request.
#[derive(Debug, Clone)]
pub struct Analysis {
    /// Score, plan and reason.
    pub decision: Decision,
    /// The tier that would answer.
    pub selected_tier: String,
    /// Its model.
    pub selected_model: String,
    /// Tokens of the attached files' text.
    pub file_context_tokens: usize,
    /// Every tier.
    pub tiers: Vec<TierView>,
}

/// A started chat with files.
pub struct FileChat {
    /// The answer (see [`crate::router::Routed`]), through the answer guard; `extra` holds the sources in
    /// the prompt.
    pub routed: crate::router::Routed<Vec<Source>>,
    /// The router's decision, for `auto`.
    pub decision: Option<Decision>,
    /// The question answered (sources quote what best matches it).
    pub question: String,
}

/// What a tier's prompt was built with: its sources and, for the answer guard, the plain prompt and model.
struct Prepared {
    sources: Vec<Source>,
    plain: GenerationRequest,
    backend: SharedChatBackend,
}

/// The message of a file that is not ready after the wait.
pub fn not_ready_message(
    id: &str,
    status: &str,
    progress: Option<&crate::types::Progress>,
    waited: Duration,
) -> String {
    if status == FileStatus::Failed.as_str() {
        return format!("file {id} failed to process; see GET /api/v1/files/{id} for its error");
    }
    let done = match progress {
        Some(p) if p.total > 0 => format!(" ({} of {} {} done)", p.done, p.total, p.unit),
        _ => String::new(),
    };
    format!(
        "file {id} is not ready: still {status}{done} after waiting {} s; retry later (see Retry-After), or \
         wait longer with `wait_timeout`",
        waited.as_secs()
    )
}

/// A ready file and its chunks, as candidates in document order, with their total tokens.
struct FileText {
    file: FileRecord,
    chunks: Vec<Candidate>,
    tokens: usize,
}

impl App {
    /// How often each tier answered or failed.
    pub fn router_metrics(&self) -> BTreeMap<String, TierCounts> {
        self.router.metrics().snapshot()
    }

    /// The chat model a client's `model` stands for: `auto` (also when it is missing), an alias's target
    /// (`[aliases.chat]` in the router configuration), or the name itself; case-insensitive.
    fn chat_model_name(&self, name: Option<&str>) -> String {
        let Some(n) = name.map(str::trim).filter(|n| !n.is_empty()) else {
            return AUTO.into();
        };
        let target = self
            .router
            .aliases()
            .chat
            .iter()
            .find(|(alias, _)| alias.eq_ignore_ascii_case(n))
            .map_or(n, |(_, t)| t.as_str());
        if target.eq_ignore_ascii_case(AUTO) {
            AUTO.into()
        } else {
            target.to_owned()
        }
    }

    /// The local model `auto` picks for a raw text prompt (`/v1/completions`): the first tier of the
    /// router's plan for it.
    fn routed_backend(&self, text: &str) -> Result<SharedChatBackend, ChatFilesError> {
        let turn = ChatTurn {
            model: AUTO.into(),
            messages: vec![ChatMessage {
                role: crate::models::chat::Role::User,
                content: text.to_owned(),
            }],
            file_ids: Vec::new(),
            params: SamplingParams::default(),
            max_tokens_given: false,
            format: OutputFormat::Text,
            wait: Duration::ZERO,
        };
        let decision = self.decide(&turn, &[])?;
        let tier = &self.router.tiers()[decision.plan.order[0]];
        tier.backend
            .clone()
            .ok_or_else(|| ChatFilesError::ModelNotFound(tier.config.model.clone()))
    }

    /// Scores a request and names the tier that would answer, without generating.
    #[tracing::instrument(skip_all, fields(tenant = %tenant, model = %turn.model, files = turn.file_ids.len()))]
    pub async fn analyze_complexity(
        &self,
        tenant: &str,
        turn: &ChatTurn,
    ) -> Result<Analysis, ChatFilesError> {
        check_turn(turn)?;
        let files = self
            .file_texts(tenant, &turn.file_ids, Duration::ZERO)
            .await?;
        let file_context_tokens = files.iter().map(|f| f.tokens).sum();
        let decision = self.decide(turn, &files)?;
        let first = &self.router.tiers()[decision.plan.order[0]];
        Ok(Analysis {
            selected_tier: first.config.name.clone(),
            selected_model: first.config.model.clone(),
            file_context_tokens,
            tiers: self.router.tiers().iter().map(tier_view).collect(),
            decision,
        })
    }

    /// Answers a conversation with `auto` (the `/v1/chat/completions` hook): scores it, picks the tier and
    /// falls back on failure.
    async fn chat_auto(
        &self,
        messages: Vec<ChatMessage>,
        params: SamplingParams,
        format: OutputFormat,
        max_tokens_given: bool,
    ) -> Result<(crate::router::Routed<()>, Decision), ChatFilesError> {
        let turn = ChatTurn {
            model: AUTO.into(),
            messages,
            file_ids: Vec::new(),
            params,
            max_tokens_given,
            format,
            wait: Duration::ZERO,
        };
        check_turn(&turn)?;
        let decision = self.decide(&turn, &[])?;
        let span = tracing::Span::current();
        let routed = self
            .router
            .generate(&decision.plan.order, |_| {
                Ok((
                    GenerationRequest {
                        prompt: Prompt::Chat(turn.messages.clone()),
                        params: turn.params.clone(),
                        span: span.clone(),
                    },
                    (),
                ))
            })
            .await?;
        Ok((routed, decision))
    }

    /// Chat with files: the files' best chunks as numbered sources, answered by the chosen (or routed) model.
    #[tracing::instrument(skip_all, fields(tenant = %tenant, model = %turn.model, files = turn.file_ids.len()))]
    pub async fn chat_with_files(
        &self,
        tenant: &str,
        turn: ChatTurn,
    ) -> Result<FileChat, ChatFilesError> {
        check_turn(&turn)?;
        let ids = if turn.file_ids.is_empty() {
            self.best_files(tenant, last_user_text(&turn.messages))
                .await?
        } else {
            turn.file_ids.clone()
        };
        let files = self.file_texts(tenant, &ids, turn.wait).await?;
        let model = self.chat_model_name(Some(&turn.model));
        let (order, decision, named) = if model == AUTO {
            let d = self.decide(&turn, &files)?;
            (d.plan.order.clone(), Some(d), None)
        } else {
            (Vec::new(), None, Some(self.named_model(&model)?))
        };
        let question = last_user_text(&turn.messages).to_owned();
        let candidates = self.candidates(tenant, &turn, files).await?;
        let grounding = self.router.grounding();
        let conversation_tokens = self.router.estimate_tokens(&turn.messages);
        let span = tracing::Span::current();
        let build = |tier: &Tier| {
            let backend: &SharedChatBackend = tier
                .backend
                .as_ref()
                .expect("the router only offers tiers with a backend. This is a bug.");
            let budget = source_budget(
                grounding,
                backend.info().prompt_tokens_per_sec,
                tier.window().unwrap_or_default(),
                turn.params.max_tokens,
                conversation_tokens,
            );
            let count = |s: &str| {
                backend
                    .count_prompt_tokens(&Prompt::Text(s.to_owned()))
                    .unwrap_or_else(|_| crate::router::estimate_text(s))
            };
            let limit = match &candidates {
                Candidates::Whole(_) => usize::MAX,
                Candidates::Ranked(_) => grounding.max_sources,
            };
            let (chosen, used) =
                grounded::select(candidates.list(), budget, limit, &question, &count);
            let family = Family::of(&backend.info().id);
            let plain = grounded::build(&turn.messages, chosen.clone(), used, family, Style::Plain);
            let g = grounded::build(&turn.messages, chosen, used, family, Style::Cited);
            tracing::info!(tier = %tier.config.name, sources = g.sources.len(), context_tokens = used, budget, "grounded prompt");
            let request = |messages| GenerationRequest {
                prompt: Prompt::Chat(messages),
                params: turn.params.clone(),
                span: span.clone(),
            };
            Ok((
                request(g.messages),
                Prepared {
                    sources: g.sources,
                    plain: request(plain.messages),
                    backend: backend.clone(),
                },
            ))
        };
        let routed = match named {
            Some(backend) => self.router.generate_with(backend, build).await?,
            None => self.router.generate(&order, build).await?,
        };
        let crate::router::Routed {
            stream,
            tier,
            model,
            extra,
            failed,
        } = routed;
        let stream = guard::guard(
            stream,
            guard::Repair {
                backend: extra.backend,
                request: extra.plain,
                sources: extra.sources.clone(),
                question: question.clone(),
            },
        );
        Ok(FileChat {
            routed: crate::router::Routed {
                stream,
                tier,
                model,
                extra: extra.sources,
                failed,
            },
            decision,
            question,
        })
    }

    /// The [`SEARCH_HITS`] best chunks for `question` by hybrid search, in the tenant's files or in `ids`.
    async fn best_chunks(
        &self,
        tenant: &str,
        question: &str,
        ids: Option<Vec<String>>,
    ) -> Result<Vec<crate::index::service::SearchResult>, ChatFilesError> {
        Ok(self
            .search
            .search(SearchRequest {
                query: Some(question.to_owned()),
                query_vector: None,
                top_k: SEARCH_HITS,
                mode: SearchMode::Hybrid,
                similarity_threshold: None,
                filter: filter(tenant, ids, None, None, None),
                fusion: crate::index::fusion::FusionConfig::default(),
            })
            .await?)
    }

    /// With no `file_ids`: the tenant's files that hold the question's best chunks, best first (at most
    /// [`MAX_BEST_FILES`]); 400 when the tenant has nothing indexed.
    async fn best_files(
        &self,
        tenant: &str,
        question: &str,
    ) -> Result<Vec<String>, ChatFilesError> {
        let hits = self.best_chunks(tenant, question, None).await?;
        let mut ids: Vec<String> = Vec::new();
        for hit in hits {
            if ids.len() < MAX_BEST_FILES && !ids.contains(&hit.file.file_id) {
                ids.push(hit.file.file_id);
            }
        }
        if ids.is_empty() {
            return Err(ChatFilesError::BadRequest(
                "none of your files is ready to answer from: upload one first (or name files in `file_ids`)"
                    .into(),
                "file_ids",
            ));
        }
        Ok(ids)
    }

    /// Scores a turn and plans its tiers.
    fn decide(&self, turn: &ChatTurn, files: &[FileText]) -> Result<Decision, ChatFilesError> {
        let context_tokens: usize = files.iter().map(|f| f.tokens).sum();
        let prompt_tokens = self.router.estimate_tokens(&turn.messages);
        let input = ComplexityInput {
            last_user_message: last_user_text(&turn.messages).to_owned(),
            prompt_tokens,
            context_tokens,
            files: files.iter().map(|f| f.file.category).collect(),
            max_tokens: turn.max_tokens_given.then_some(turn.params.max_tokens),
            format: turn.format,
        };
        // What the smallest budget puts in the prompt: enough to check the windows (the prompt is fitted to
        // the answering tier's window when it is built).
        let sent = if files.is_empty() {
            0
        } else {
            context_tokens.min(self.router.grounding().min_context_tokens) + TEMPLATE_MARGIN
        };
        let decision = self.router.decide(&input, sent, turn.params.max_tokens)?;
        tracing::info!(
            score = decision.complexity.score,
            level = decision.complexity.level.as_str(),
            tier = %self.router.tiers()[decision.plan.order[0]].config.name,
            reason = %decision.reason,
            "router decision"
        );
        Ok(decision)
    }

    /// The model a client named: a loaded local model, or a tier's (remote) model.
    fn named_model(&self, model: &str) -> Result<SharedChatBackend, ChatFilesError> {
        if let Some(local) = self.chat.get(model) {
            return Ok(local);
        }
        self.router
            .tiers()
            .iter()
            .filter_map(|t| t.backend.as_ref())
            .find(|b| b.info().id.eq_ignore_ascii_case(model))
            .cloned()
            .ok_or_else(|| ChatFilesError::ModelNotFound(model.to_owned()))
    }

    /// Each requested file (deduplicated, in order) with its chunks, waiting up to `wait` for files still
    /// queued or processing; 404 for unknown files, 409 for files failed or still not ready after the wait.
    async fn file_texts(
        &self,
        tenant: &str,
        ids: &[String],
        wait: Duration,
    ) -> Result<Vec<FileText>, ChatFilesError> {
        if ids.len() > MAX_FILES {
            return Err(ChatFilesError::BadRequest(
                format!("at most {MAX_FILES} files per request"),
                "file_ids",
            ));
        }
        let mut seen = Vec::new();
        for id in ids {
            if !seen.contains(id) {
                seen.push(id.clone());
            }
        }
        // Check every file's state before reading any text, so the error names the first bad file.
        let mut records = Vec::with_capacity(seen.len());
        for id in &seen {
            records.push(self.ingest.file(tenant, id).await?);
        }
        let started = tokio::time::Instant::now();
        for file in &mut records {
            if !file.status.is_terminal() {
                let left = wait.saturating_sub(started.elapsed());
                *file = self.ingest.wait_done(tenant, &file.id, left).await?;
            }
            if file.status != FileStatus::Ready {
                return Err(ChatFilesError::FileNotReady {
                    id: file.id.clone(),
                    status: file.status.as_str(),
                    progress: Some(file.progress.clone()),
                    waited: started.elapsed(),
                });
            }
        }
        let mut out = Vec::with_capacity(records.len());
        for file in records {
            let (_, chunks, _) = self
                .ingest
                .chunks(tenant, &file.id, MAX_CHUNKS_PER_FILE, 0)
                .await?;
            let tokens = chunks.iter().map(|c| c.token_count as usize).sum();
            let chunks = chunks
                .into_iter()
                .map(|c| Candidate {
                    chunk_id: chunk_id(&file.id, c.ordinal),
                    file_id: file.id.clone(),
                    filename: file.filename.clone(),
                    location: c.location,
                    text: c.text,
                    excerpt: None,
                })
                .collect();
            out.push(FileText {
                file,
                chunks,
                tokens,
            });
        }
        Ok(out)
    }

    /// The chunks that may become sources: every chunk when all files together fit the smallest budget,
    /// else the chunks the question points at by position or structure, the search's best chunks with the
    /// best one's neighbours (a small file's hit brings the whole small file along), and, when the files fit
    /// the largest budget, their other chunks last.
    async fn candidates(
        &self,
        tenant: &str,
        turn: &ChatTurn,
        files: Vec<FileText>,
    ) -> Result<Candidates, ChatFilesError> {
        let g = self.router.grounding();
        let total: usize = files.iter().map(|f| f.tokens).sum();
        if total <= g.min_context_tokens {
            return Ok(Candidates::Whole(
                files.into_iter().flat_map(|f| f.chunks).collect(),
            ));
        }
        let query = last_user_text(&turn.messages).to_owned();
        let ids: Vec<String> = files.iter().map(|f| f.file.id.clone()).collect();
        let hits = self.best_chunks(tenant, &query, Some(ids)).await?;
        let mut ranked_hits: Vec<Candidate> = Vec::new();
        for hit in hits {
            let small = files
                .iter()
                .find(|f| f.file.id == hit.file.file_id && f.tokens <= g.whole_file_tokens);
            match small {
                Some(f) => ranked_hits.extend(f.chunks.iter().cloned()),
                None => ranked_hits.push(Candidate {
                    chunk_id: hit.chunk_id,
                    file_id: hit.file.file_id,
                    filename: hit.file.filename,
                    location: hit.file.chunk.location,
                    text: hit.file.chunk.text,
                    excerpt: None,
                }),
            }
        }
        let views: Vec<FileChunks<'_>> = files
            .iter()
            .map(|f| FileChunks { chunks: &f.chunks })
            .collect();
        let structural = retrieve::structural(&Cues::of(&query), &views);
        Ok(Candidates::Ranked(retrieve::rank(
            structural,
            ranked_hits,
            &views,
            total <= g.max_context_tokens,
        )))
    }
}

/// Tokens of sources a tier gets: what its measured prompt speed reads in the time-to-first-token target
/// (less the conversation), within the configured floor and cap and the room the window leaves after the
/// conversation and the answer.
fn source_budget(
    g: &crate::router::GroundingConfig,
    prompt_tokens_per_sec: Option<u32>,
    window: usize,
    max_tokens: usize,
    conversation_tokens: usize,
) -> usize {
    let fixed = conversation_tokens + TEMPLATE_MARGIN;
    let by_speed = prompt_tokens_per_sec.map_or(g.max_context_tokens, |rate| {
        // Rates and targets are small; the product fits easily.
        let readable = u64::from(rate) * g.time_to_first_token_ms / 1000;
        usize::try_from(readable)
            .unwrap_or(usize::MAX)
            .saturating_sub(fixed)
    });
    let room = window.saturating_sub(max_tokens + fixed);
    by_speed
        .clamp(g.min_context_tokens, g.max_context_tokens)
        .min(room)
}

/// Source candidates and how they were found.
enum Candidates {
    /// Every chunk of every file, in order.
    Whole(Vec<Candidate>),
    /// Search hits, best first.
    Ranked(Vec<Candidate>),
}

impl Candidates {
    fn list(&self) -> Vec<Candidate> {
        match self {
            Candidates::Whole(c) | Candidates::Ranked(c) => c.clone(),
        }
    }
}

/// A source's snippet: the start of its text.
pub fn snippet(text: &str) -> String {
    let t = text.trim();
    match t.char_indices().nth(SNIPPET_CHARS) {
        Some((i, _)) => format!("{}…", &t[..i]),
        None => t.to_owned(),
    }
}

fn check_turn(turn: &ChatTurn) -> Result<(), ChatFilesError> {
    if turn.messages.is_empty() {
        return Err(ChatFilesError::BadRequest(
            "`messages` must not be empty".into(),
            "messages",
        ));
    }
    if last_user_text(&turn.messages).trim().is_empty() {
        return Err(ChatFilesError::BadRequest(
            "the conversation needs a user message with text".into(),
            "messages",
        ));
    }
    Ok(())
}

fn tier_view(t: &crate::router::Tier) -> TierView {
    TierView {
        name: t.config.name.clone(),
        model: t.config.model.clone(),
        kind: match t.config.kind {
            crate::router::TierKind::Local => "local",
            crate::router::TierKind::Remote => "remote",
        },
        context_window: t.window(),
        score_range: (t.config.min_score, t.config.max_score),
        cost_per_1k_tokens: t.config.cost_per_1k_tokens,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::GroundingConfig;

    #[test]
    fn budget_follows_prompt_speed_within_floor_cap_and_window() {
        let g = GroundingConfig::default();
        // 530 tokens/s for 1.3 s is ~689 tokens, less the conversation and the template margin.
        assert_eq!(source_budget(&g, Some(530), 32_768, 80, 40), 689 - 88);
        // A fast model is capped, a slow one gets the floor.
        assert_eq!(
            source_budget(&g, Some(5000), 32_768, 80, 40),
            g.max_context_tokens
        );
        assert_eq!(
            source_budget(&g, Some(50), 32_768, 80, 40),
            g.min_context_tokens
        );
        // Unknown speed (a remote provider): the cap.
        assert_eq!(
            source_budget(&g, None, 32_768, 80, 40),
            g.max_context_tokens
        );
        // The window always wins.
        assert_eq!(
            source_budget(&g, Some(5000), 1024, 512, 40),
            1024 - 512 - 88
        );
    }
}
