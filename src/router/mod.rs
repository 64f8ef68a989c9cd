//! The complexity router: scores a request ([`complexity`]), picks the tier whose score range holds it and
//! whose context window fits it, and generates with fallback to the next tiers when a tier fails.
//!
//! Design note: [`Router::generate`] runs on the async runtime but never blocks: each attempt calls
//! [`ChatBackend::generate`] (which only queues) and awaits the first event. A tier that fails before its
//! first event (error, timeout, full queue) is skipped for the next; once an answer has started it is the
//! answer. A forwarding task then relays the rest, so the caller sees one [`GenerationStream`]; dropping it
//! drops the tier's stream, which cancels the generation.

pub mod complexity;
pub mod config;
pub mod metrics;
pub mod remote;

use std::sync::Arc;

use crate::models::chat::{
    ChatError, ChatMessage, GenerationEvent, GenerationRequest, GenerationStream, Prompt, Role,
    SharedChatBackend,
};
pub use complexity::{Complexity, ComplexityInput, Level, OutputFormat, TaskKind, is_chit_chat};
pub use config::{
    AliasConfig, GroundingConfig, RouterConfig, RouterConfigError, TierConfig, TierKind,
};
pub use metrics::{RouterMetrics, TierCounts};

/// The model id that asks for routing.
pub const AUTO: &str = "auto";
/// Tokens a chat template adds per message (role markers), for estimates without a tokenizer.
const TEMPLATE_TOKENS_PER_MESSAGE: usize = 4;
/// Characters per token, for estimates without a tokenizer (English BPE averages about 4).
const CHARS_PER_TOKEN: usize = 4;
/// Buffer of the forwarding channel.
const FORWARD_BUFFER: usize = 32;

/// A configured tier with its backend.
pub struct Tier {
    /// As configured.
    pub config: TierConfig,
    /// The model that serves it; `None` when the local model is not loaded.
    pub backend: Option<SharedChatBackend>,
}

impl Tier {
    /// Its context window, when it can serve.
    pub fn window(&self) -> Option<usize> {
        let backend = self.backend.as_ref()?;
        Some(
            self.config
                .context_window
                .unwrap_or_else(|| backend.info().context_window),
        )
    }
}

/// Why a tier is not in the plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    /// The tier.
    pub tier: String,
    /// Why.
    pub reason: String,
}

/// The router's decision for a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Tier indexes to try, the chosen one first.
    pub order: Vec<usize>,
    /// The tier whose score range holds the score (may differ from `order[0]` when it does not fit).
    pub scored: usize,
    /// Tiers left out and why.
    pub skipped: Vec<Skipped>,
}

/// The whole router's view of a request: score, plan and the reason in words.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The complexity analysis.
    pub complexity: Complexity,
    /// Tiers to try.
    pub plan: Plan,
    /// Tokens the request needs (prompt estimate + completion).
    pub needed_tokens: usize,
    /// Estimated prompt tokens (conversation + file context that will be sent).
    pub estimated_prompt_tokens: usize,
    /// Why the first tier was chosen.
    pub reason: String,
}

/// No tier can take the request.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// Every tier is unavailable or too small.
    #[error(
        "no model can take this request: it needs about {needed} tokens (prompt + max_tokens); {details}"
    )]
    NothingFits {
        /// Tokens needed.
        needed: usize,
        /// Each tier and why it was skipped.
        details: String,
    },
    /// No tier has a model (local models not loaded, no remote tier).
    #[error("no chat model is available: {0}")]
    NoModel(String),
    /// Every tier that was tried failed; the last error.
    #[error("every model tier failed; last error: {0}")]
    AllFailed(ChatError),
}

/// A started, routed generation.
pub struct Routed<T> {
    /// The answer's events.
    pub stream: GenerationStream,
    /// The tier that answers.
    pub tier: String,
    /// Its model id.
    pub model: String,
    /// What the request builder returned with the answering tier's request.
    pub extra: T,
    /// Tiers that failed before it, with their errors.
    pub failed: Vec<Skipped>,
}

/// The router: tiers, grounding budget and decision counters.
pub struct Router {
    tiers: Vec<Tier>,
    grounding: GroundingConfig,
    aliases: AliasConfig,
    metrics: RouterMetrics,
}

impl Router {
    /// Builds the tiers: local tiers take the loaded model with their id (case-insensitive), remote tiers
    /// get a client. A local tier whose model is not loaded stays in the list, unavailable.
    pub fn new(config: RouterConfig, locals: &[SharedChatBackend]) -> Router {
        let tiers = config
            .tiers
            .into_iter()
            .map(|t| {
                let backend = match t.kind {
                    TierKind::Local => {
                        let found = locals
                            .iter()
                            .find(|b| b.info().id.eq_ignore_ascii_case(&t.model))
                            .cloned();
                        if found.is_none() {
                            tracing::warn!(tier = %t.name, model = %t.model, "router tier's local model is not loaded; the tier is unavailable");
                        }
                        found
                    }
                    TierKind::Remote => {
                        Some(Arc::new(remote::RemoteBackend::new(&t)) as SharedChatBackend)
                    }
                };
                Tier { config: t, backend }
            })
            .collect();
        Router {
            tiers,
            grounding: config.grounding,
            aliases: config.aliases,
            metrics: RouterMetrics::default(),
        }
    }

    /// The tiers, in configured order.
    pub fn tiers(&self) -> &[Tier] {
        &self.tiers
    }

    /// The chat-with-files budget.
    pub fn grounding(&self) -> &GroundingConfig {
        &self.grounding
    }

    /// Model names that stand for ours.
    pub fn aliases(&self) -> &AliasConfig {
        &self.aliases
    }

    /// The tier that answers questions about files (`[grounding] tier`), when the request is one: files are
    /// attached and the message is not chit-chat.
    fn grounding_tier(&self, input: &ComplexityInput) -> Option<usize> {
        if input.files.is_empty() || is_chit_chat(&input.last_user_message) {
            return None;
        }
        let name = self.grounding.tier.as_deref()?;
        self.tiers.iter().position(|t| t.config.name == name)
    }

    /// Decision counters.
    pub fn metrics(&self) -> &RouterMetrics {
        &self.metrics
    }

    /// Estimated prompt tokens of a conversation: the first local tier's tokenizer when one is loaded,
    /// else about four characters a token.
    pub fn estimate_tokens(&self, messages: &[ChatMessage]) -> usize {
        let counter = self
            .tiers
            .iter()
            .filter(|t| t.config.kind == TierKind::Local)
            .find_map(|t| t.backend.as_ref());
        if let Some(b) = counter
            && let Ok(n) = b.count_prompt_tokens(&Prompt::Chat(messages.to_vec()))
        {
            return n;
        }
        estimate_chars(messages)
    }

    /// Scores the request and plans which tiers to try. `context_tokens_sent` is the file context that will
    /// go into the prompt (at most the grounding budget).
    pub fn decide(
        &self,
        input: &ComplexityInput,
        context_tokens_sent: usize,
        completion_tokens: usize,
    ) -> Result<Decision, RouteError> {
        let complexity = complexity::analyse(input);
        let estimated_prompt_tokens = input.prompt_tokens + context_tokens_sent;
        let needed = estimated_prompt_tokens + completion_tokens;
        let grounded = self.grounding_tier(input);
        let plan = match grounded {
            Some(i) => plan_at(&self.tiers, i, needed),
            None => plan(&self.tiers, complexity.score, needed),
        };
        let Some(&first) = plan.order.first() else {
            if self.tiers.iter().all(|t| t.backend.is_none()) {
                return Err(RouteError::NoModel(
                    "none of the router's tiers has its model loaded".into(),
                ));
            }
            let details = plan
                .skipped
                .iter()
                .map(|s| format!("{}: {}", s.tier, s.reason))
                .collect::<Vec<_>>()
                .join("; ");
            return Err(RouteError::NothingFits { needed, details });
        };
        let tier = &self.tiers[first];
        let top: Vec<String> = {
            let mut f: Vec<_> = complexity
                .factors
                .iter()
                .filter(|f| f.contribution > 0.0)
                .collect();
            f.sort_by(|a, b| b.contribution.total_cmp(&a.contribution));
            f.iter()
                .take(3)
                .map(|f| format!("{} {} (+{:.2})", f.name, f.detail, f.contribution))
                .collect()
        };
        let mut reason = format!(
            "complexity {:.2} ({}){}; ",
            complexity.score,
            complexity.level.as_str(),
            if top.is_empty() {
                String::new()
            } else {
                format!(" from {}", top.join(", "))
            }
        );
        if let Some(g) = grounded {
            reason.push_str(&format!(
                "a question about attached files goes to tier `{}` (`[grounding] tier`: it answers facts from \
                 sources best), whatever the score",
                self.tiers[g].config.name
            ));
            if first != g {
                let why = plan
                    .skipped
                    .iter()
                    .find(|s| s.tier == self.tiers[g].config.name)
                    .map_or("it is unavailable", |s| s.reason.as_str());
                reason.push_str(&format!(", but {why}, so tier `{}`", tier.config.name));
            }
        } else if first == plan.scored {
            reason.push_str(&format!(
                "tier `{}` takes scores {:.2}-{:.2}",
                tier.config.name, tier.config.min_score, tier.config.max_score
            ));
        } else {
            let scored = &self.tiers[plan.scored].config.name;
            let why = plan
                .skipped
                .iter()
                .find(|s| &s.tier == scored)
                .map_or("it is unavailable", |s| s.reason.as_str());
            reason.push_str(&format!(
                "tier `{scored}` would take that score but {why}, so tier `{}`",
                tier.config.name
            ));
        }
        reason.push_str(&format!(
            " and its {}-token window holds the ~{needed} tokens needed",
            tier.window().unwrap_or_default()
        ));
        Ok(Decision {
            complexity,
            plan,
            needed_tokens: needed,
            estimated_prompt_tokens,
            reason,
        })
    }

    /// Tries the plan's tiers in order until one starts answering. `build` makes each tier's request (for
    /// chat with files, a prompt sized to that tier) plus a value returned with the answering tier.
    pub async fn generate<T>(
        &self,
        order: &[usize],
        build: impl FnMut(&Tier) -> Result<(GenerationRequest, T), ChatError>,
    ) -> Result<Routed<T>, RouteError> {
        let tiers: Vec<&Tier> = order.iter().map(|&i| &self.tiers[i]).collect();
        self.generate_on(&tiers, build).await
    }

    /// Generates with one model named by the client (no routing, no fallback), as a one-off tier named
    /// after the model.
    pub async fn generate_with<T>(
        &self,
        backend: SharedChatBackend,
        build: impl FnMut(&Tier) -> Result<(GenerationRequest, T), ChatError>,
    ) -> Result<Routed<T>, RouteError> {
        let info = backend.info().clone();
        let tier = Tier {
            config: TierConfig {
                name: info.id.clone(),
                model: info.id,
                kind: TierKind::Local,
                min_score: 0.0,
                max_score: 1.0,
                context_window: Some(info.context_window),
                cost_per_1k_tokens: 0.0,
                base_url: None,
                api_key_env: None,
                timeout_secs: None,
            },
            backend: Some(backend),
        };
        self.generate_on(&[&tier], build).await
    }

    async fn generate_on<T>(
        &self,
        tiers: &[&Tier],
        mut build: impl FnMut(&Tier) -> Result<(GenerationRequest, T), ChatError>,
    ) -> Result<Routed<T>, RouteError> {
        let mut failed = Vec::new();
        let mut last = None;
        for &tier in tiers {
            let Some(backend) = &tier.backend else {
                continue;
            };
            let attempt = match build(tier) {
                Ok((request, extra)) => first_event(backend, request)
                    .await
                    .map(|(first, inner)| (first, inner, extra)),
                Err(e) => Err(e),
            };
            match attempt {
                Ok((first, inner, extra)) => {
                    self.metrics.decided(&tier.config.name, !failed.is_empty());
                    tracing::info!(tier = %tier.config.name, model = %tier.config.model, fallbacks = failed.len(), "router: tier answering");
                    return Ok(Routed {
                        stream: forward(first, inner),
                        tier: tier.config.name.clone(),
                        model: backend.info().id.clone(),
                        extra,
                        failed,
                    });
                }
                Err(e) => {
                    tracing::warn!(tier = %tier.config.name, error = %e, "router: tier failed, falling back");
                    self.metrics.failed(&tier.config.name);
                    failed.push(Skipped {
                        tier: tier.config.name.clone(),
                        reason: e.to_string(),
                    });
                    last = Some(e);
                }
            }
        }
        Err(RouteError::AllFailed(last.unwrap_or(ChatError::ShutDown)))
    }
}

/// Starts a generation and waits for its first event (a failure before it lets the router fall back).
async fn first_event(
    backend: &SharedChatBackend,
    request: GenerationRequest,
) -> Result<(GenerationEvent, GenerationStream), ChatError> {
    let mut stream = backend.generate(request)?;
    match stream.recv().await {
        Some(Ok(first)) => Ok((first, stream)),
        Some(Err(e)) => Err(e),
        None => Err(ChatError::Inference(
            "the model stopped without answering".into(),
        )),
    }
}

/// Relays `first` and the rest of `inner` into a fresh stream; stops (dropping `inner`, which cancels the
/// generation) when the receiver goes away.
fn forward(first: GenerationEvent, mut inner: GenerationStream) -> GenerationStream {
    let (tx, rx) = tokio::sync::mpsc::channel(FORWARD_BUFFER);
    tokio::spawn(async move {
        if tx.send(Ok(first)).await.is_err() {
            return;
        }
        loop {
            tokio::select! {
                () = tx.closed() => return,
                event = inner.recv() => match event {
                    Some(e) => if tx.send(e).await.is_err() { return },
                    None => return,
                },
            }
        }
    });
    rx
}

/// Character-based token estimate of a conversation.
pub fn estimate_chars(messages: &[ChatMessage]) -> usize {
    messages
        .iter()
        .map(|m| m.content.chars().count().div_ceil(CHARS_PER_TOKEN) + TEMPLATE_TOKENS_PER_MESSAGE)
        .sum::<usize>()
        + TEMPLATE_TOKENS_PER_MESSAGE
}

/// Character-based token estimate of a text.
pub fn estimate_text(text: &str) -> usize {
    text.chars().count().div_ceil(CHARS_PER_TOKEN)
}

/// The text of the last user message.
pub fn last_user_text(messages: &[ChatMessage]) -> &str {
    messages
        .iter()
        .rev()
        .find(|m| m.role == Role::User)
        .map_or("", |m| m.content.as_str())
}

/// Orders the tiers for a score: the first tier whose range holds it, unless unavailable or too small; then
/// the later tiers that fit, then the earlier ones nearest first.
pub fn plan(tiers: &[Tier], score: f32, needed: usize) -> Plan {
    let scored = tiers
        .iter()
        .position(|t| t.config.takes(score))
        .unwrap_or(tiers.len().saturating_sub(1));
    plan_at(tiers, scored, needed)
}

/// Orders the tiers starting from tier `scored`: it first unless unavailable or too small; then the later
/// tiers that fit, then the earlier ones nearest first.
pub fn plan_at(tiers: &[Tier], scored: usize, needed: usize) -> Plan {
    let mut skipped = Vec::new();
    let mut fits = vec![false; tiers.len()];
    for (i, t) in tiers.iter().enumerate() {
        match t.window() {
            None => skipped.push(Skipped {
                tier: t.config.name.clone(),
                reason: format!("its model `{}` is not loaded", t.config.model),
            }),
            Some(w) if w < needed => skipped.push(Skipped {
                tier: t.config.name.clone(),
                reason: format!("its {w}-token window cannot hold the ~{needed} tokens needed"),
            }),
            Some(_) => fits[i] = true,
        }
    }
    let order = (scored..tiers.len())
        .chain((0..scored).rev())
        .filter(|&i| fits[i])
        .collect();
    Plan {
        order,
        scored,
        skipped,
    }
}

#[cfg(test)]
mod tests;
