//! The facade of routed chat and chat with files: checks the files, retrieves their best chunks, asks the
//! router which tier answers, builds the grounded prompt for that tier and starts the generation.
//!
//! Everything here awaits (store, search, the router's first event); nothing blocks the runtime.

use std::collections::BTreeMap;

use crate::app::App;
use crate::index::service::{SearchError, SearchMode, SearchRequest, filter};
use crate::models::chat::{
    ChatError, ChatMessage, GenerationRequest, Prompt, SamplingParams, SharedChatBackend,
};
use crate::pipeline::FileOpError;
use crate::router::grounded::{self, Candidate, Source};
use crate::router::{
    AUTO, ComplexityInput, Decision, OutputFormat, RouteError, Router, Tier, TierCounts,
    last_user_text,
};
use crate::store::{StoreError, chunk_id};
use crate::types::{FileRecord, FileStatus};

/// Most files in one request.
pub const MAX_FILES: usize = 20;
/// Most chunks read per file to size and ground the answer.
const MAX_CHUNKS_PER_FILE: u32 = 5000;
/// Candidates fetched from search per source wanted.
const CANDIDATES_PER_SOURCE: usize = 3;
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
    /// Files to answer from (may be empty).
    pub file_ids: Vec<String>,
    /// Sampling.
    pub params: SamplingParams,
    /// True when the client set `max_tokens`.
    pub max_tokens_given: bool,
    /// Requested answer format.
    pub format: OutputFormat,
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
    /// The file is still being processed (or failed).
    #[error("file {id} is {status}, not ready; retry when its status is ready")]
    FileNotReady {
        /// The file.
        id: String,
        /// Its status.
        status: &'static str,
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
            FileOpError::NotReady { id, status } => ChatFilesError::FileNotReady { id, status },
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
    /// The answer (see [`crate::router::Routed`]); `extra` holds the sources in the prompt.
    pub routed: crate::router::Routed<Vec<Source>>,
    /// The router's decision, for `auto`.
    pub decision: Option<Decision>,
}

/// A ready file and its chunks, as candidates in document order, with their total tokens.
struct FileText {
    file: FileRecord,
    chunks: Vec<Candidate>,
    tokens: usize,
}

impl App {
    /// The router.
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// How often each tier answered or failed.
    pub fn router_metrics(&self) -> BTreeMap<String, TierCounts> {
        self.router.metrics().snapshot()
    }

    /// Scores a request and names the tier that would answer, without generating.
    pub async fn analyze_complexity(
        &self,
        tenant: &str,
        turn: &ChatTurn,
    ) -> Result<Analysis, ChatFilesError> {
        check_turn(turn)?;
        let files = self.file_texts(tenant, &turn.file_ids).await?;
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
    pub async fn chat_auto(
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
    pub async fn chat_with_files(
        &self,
        tenant: &str,
        turn: ChatTurn,
    ) -> Result<FileChat, ChatFilesError> {
        check_turn(&turn)?;
        if turn.file_ids.is_empty() {
            return Err(ChatFilesError::BadRequest(
                "give at least one id in `file_ids`".into(),
                "file_ids",
            ));
        }
        let files = self.file_texts(tenant, &turn.file_ids).await?;
        let (order, decision, named) = if turn.model.eq_ignore_ascii_case(AUTO) {
            let d = self.decide(&turn, &files)?;
            (d.plan.order.clone(), Some(d), None)
        } else {
            (Vec::new(), None, Some(self.named_model(&turn.model)?))
        };
        let candidates = self.candidates(tenant, &turn, files).await?;
        let grounding = self.router.grounding();
        let conversation_tokens = self.router.estimate_tokens(&turn.messages);
        let span = tracing::Span::current();
        let build = |tier: &Tier| {
            let backend: &SharedChatBackend = tier
                .backend
                .as_ref()
                .expect("the router only offers tiers with a backend. This is a bug.");
            let window = tier.window().unwrap_or_default();
            let room = window
                .saturating_sub(turn.params.max_tokens + conversation_tokens + TEMPLATE_MARGIN);
            let budget = grounding.max_context_tokens.min(room);
            let count = |s: &str| {
                backend
                    .count_prompt_tokens(&Prompt::Text(s.to_owned()))
                    .unwrap_or_else(|_| crate::router::estimate_text(s))
            };
            let limit = match &candidates {
                Candidates::Whole(_) => usize::MAX,
                Candidates::Ranked(_) => grounding.max_sources,
            };
            let (chosen, used) = grounded::select(candidates.list(), budget, limit, &count);
            let g = grounded::build(&turn.messages, chosen, used);
            tracing::info!(tier = %tier.config.name, sources = g.sources.len(), context_tokens = used, "grounded prompt");
            Ok((
                GenerationRequest {
                    prompt: Prompt::Chat(g.messages),
                    params: turn.params.clone(),
                    span: span.clone(),
                },
                g.sources,
            ))
        };
        let routed = match named {
            Some(backend) => self.router.generate_with(backend, build).await?,
            None => self.router.generate(&order, build).await?,
        };
        Ok(FileChat { routed, decision })
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
        let sent = if files.is_empty() {
            0
        } else {
            context_tokens.min(self.router.grounding().max_context_tokens) + TEMPLATE_MARGIN
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

    /// Each requested file (deduplicated, in order) with its chunks; 404/409 for unknown or unready files.
    async fn file_texts(
        &self,
        tenant: &str,
        ids: &[String],
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
            let file = self.ingest.file(tenant, id).await?;
            if file.status != FileStatus::Ready {
                return Err(ChatFilesError::FileNotReady {
                    id: id.clone(),
                    status: file.status.as_str(),
                });
            }
            records.push(file);
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

    /// The chunks that may become sources: every chunk when all files together fit the budget, else the
    /// search's best chunks, where a small file's hit brings the whole (small) file along.
    async fn candidates(
        &self,
        tenant: &str,
        turn: &ChatTurn,
        files: Vec<FileText>,
    ) -> Result<Candidates, ChatFilesError> {
        let g = self.router.grounding();
        let total: usize = files.iter().map(|f| f.tokens).sum();
        if total <= g.max_context_tokens {
            return Ok(Candidates::Whole(
                files.into_iter().flat_map(|f| f.chunks).collect(),
            ));
        }
        let query = last_user_text(&turn.messages).to_owned();
        let ids: Vec<String> = files.iter().map(|f| f.file.id.clone()).collect();
        let hits = self
            .ingest
            .search()
            .search(SearchRequest {
                query: Some(query),
                query_vector: None,
                top_k: g.max_sources * CANDIDATES_PER_SOURCE,
                mode: SearchMode::Hybrid,
                similarity_threshold: None,
                filter: filter(tenant, Some(ids), None, None, None),
                fusion: crate::index::fusion::FusionConfig::default(),
            })
            .await?;
        let mut out: Vec<Candidate> = Vec::new();
        for hit in hits {
            if out.iter().any(|c| c.chunk_id == hit.chunk_id) {
                continue;
            }
            let small = files
                .iter()
                .find(|f| f.file.id == hit.file.file_id && f.tokens <= g.whole_file_tokens);
            match small {
                Some(f) => out.extend(
                    f.chunks
                        .iter()
                        .filter(|c| !out.iter().any(|o| o.chunk_id == c.chunk_id))
                        .cloned()
                        .collect::<Vec<_>>(),
                ),
                None => out.push(Candidate {
                    chunk_id: hit.chunk_id,
                    file_id: hit.file.file_id,
                    filename: hit.file.filename,
                    location: hit.file.chunk.location,
                    text: hit.file.chunk.text,
                }),
            }
        }
        Ok(Candidates::Ranked(out))
    }
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
