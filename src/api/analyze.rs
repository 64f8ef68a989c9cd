//! `POST /api/v1/analyze-complexity`: the router's explainable analysis of a chat request and the model it
//! would pick, without generating.

use super::json_body::JsonBody;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use super::ApiTags;
use super::auth::Caller;
use super::chat_wire::{ChatBody, ChatUse, turn_of};
use super::error::ApiError;
use crate::app::App;
use crate::app::chat::Analysis;

/// One named part of the score.
#[derive(Debug, Clone, Object)]
pub struct FactorDto {
    /// `prompt_tokens`, `context_tokens`, `files`, `task` or `output`.
    pub name: String,
    /// What was measured.
    pub detail: String,
    /// Its share of the score.
    pub contribution: f32,
    /// The most it can add.
    pub max_contribution: f32,
}

/// A tier the router could skip.
#[derive(Debug, Clone, Object)]
pub struct SkippedTierDto {
    /// The tier.
    pub tier: String,
    /// Why it cannot take this request.
    pub reason: String,
}

/// A configured tier.
#[derive(Debug, Clone, Object)]
pub struct TierDto {
    /// Its name.
    pub name: String,
    /// Its model.
    pub model: String,
    /// `local` or `remote`.
    pub kind: String,
    /// Context window in tokens; absent when its model is not loaded.
    #[oai(nullable)]
    pub context_window: Option<u64>,
    /// Lowest score it takes.
    pub min_score: f32,
    /// Highest score it takes.
    pub max_score: f32,
    /// Price per 1,000 tokens.
    pub cost_per_1k_tokens: f64,
}

/// The analysis.
#[derive(Debug, Clone, Object)]
pub struct ComplexityAnalysis {
    /// In [0, 1]: the sum of the factors' contributions.
    pub complexity_score: f32,
    /// `low`, `medium` or `high`.
    pub level: String,
    /// The task asked for: `code`, `compare`, `analyse`, `extract`, `summarise`, `question` or `chat`.
    pub task: String,
    /// Every factor with its contribution.
    pub factors: Vec<FactorDto>,
    /// The model `auto` would use.
    pub selected_model: String,
    /// Its tier.
    pub selected_tier: String,
    /// Why, in words.
    pub reason: String,
    /// Estimated prompt tokens: the conversation plus the file context that would be sent.
    pub estimated_prompt_tokens: u64,
    /// Prompt plus `max_tokens`: what a model's window must hold.
    pub needed_tokens: u64,
    /// Tokens of the attached files' whole text.
    pub file_context_tokens: u64,
    /// Tiers in the order they would be tried (fallbacks after the first).
    pub fallback_order: Vec<String>,
    /// Tiers that cannot take the request, and why.
    pub skipped_tiers: Vec<SkippedTierDto>,
    /// All configured tiers.
    pub tiers: Vec<TierDto>,
}

/// The response.
#[derive(Debug, Clone, Object)]
pub struct AnalyzeResponse {
    /// The analysis.
    pub complexity_analysis: ComplexityAnalysis,
}

impl From<Analysis> for AnalyzeResponse {
    fn from(a: Analysis) -> AnalyzeResponse {
        let d = a.decision;
        let names: Vec<String> = a.tiers.iter().map(|t| t.name.clone()).collect();
        AnalyzeResponse {
            complexity_analysis: ComplexityAnalysis {
                complexity_score: d.complexity.score,
                level: d.complexity.level.as_str().into(),
                task: d.complexity.task.as_str().into(),
                factors: d
                    .complexity
                    .factors
                    .iter()
                    .map(|f| FactorDto {
                        name: f.name.into(),
                        detail: f.detail.clone(),
                        contribution: f.contribution,
                        max_contribution: f.max,
                    })
                    .collect(),
                selected_model: a.selected_model,
                selected_tier: a.selected_tier,
                reason: d.reason,
                estimated_prompt_tokens: d.estimated_prompt_tokens as u64,
                needed_tokens: d.needed_tokens as u64,
                file_context_tokens: a.file_context_tokens as u64,
                fallback_order: d.plan.order.iter().map(|&i| names[i].clone()).collect(),
                skipped_tiers: d
                    .plan
                    .skipped
                    .into_iter()
                    .map(|s| SkippedTierDto {
                        tier: s.tier,
                        reason: s.reason,
                    })
                    .collect(),
                tiers: a
                    .tiers
                    .into_iter()
                    .map(|t| TierDto {
                        name: t.name,
                        model: t.model,
                        kind: t.kind.into(),
                        context_window: t.context_window.map(|w| w as u64),
                        min_score: t.score_range.0,
                        max_score: t.score_range.1,
                        cost_per_1k_tokens: t.cost_per_1k_tokens,
                    })
                    .collect(),
            },
        }
    }
}

/// The complexity analysis endpoint.
pub struct AnalyzeApi {
    pub app: App,
}

#[OpenApi(tag = "ApiTags::Chat")]
impl AnalyzeApi {
    /// Analyse a request's complexity
    ///
    /// Takes the body of a chat request (`messages`, optional `file_ids`, `max_tokens`, `response_format`) and
    /// explains how the router would answer it: a score in [0, 1] made of named factors (conversation
    /// tokens, tokens of the files' text, number and kinds of files, the task asked for, requested output
    /// length and format), its level, the tier and model `model: "auto"` would use and why, the estimated
    /// prompt tokens, and the tiers that cannot take it (a model whose window cannot hold the request is
    /// never chosen). Nothing is generated.
    #[oai(path = "/api/v1/analyze-complexity", method = "post")]
    async fn analyze(
        &self,
        caller: Caller,
        body: JsonBody<ChatBody>,
    ) -> Result<Json<AnalyzeResponse>, ApiError> {
        let body = body.0;
        let turn = turn_of(body.chat, body.file_ids, body.wait_timeout, ChatUse::Files)?;
        let analysis = self.app.analyze_complexity(&caller.tenant, &turn).await?;
        Ok(Json(analysis.into()))
    }
}
