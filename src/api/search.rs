//! `POST /api/v1/search`: keyword (BM25), vector and hybrid search over every ready file's chunks.

use super::json_body::JsonBody;
use chrono::{DateTime, Utc};
use poem_openapi::payload::Json;
use poem_openapi::{Enum, Object, OpenApi};

use super::ApiTags;
use super::auth::Caller;
use super::error::{ApiError, ErrorCode};
use super::types::CategoryDto;
use crate::app::App;
use crate::app::search::{
    DIMENSIONS, FusionConfig, FusionMethod, ScoreNorm, SearchMode, SearchRequest, SearchResult,
    filter,
};

/// Largest `top_k`.
const MAX_TOP_K: u32 = 100;
/// Default `top_k`.
const DEFAULT_TOP_K: u32 = 10;

/// Search mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum ModeDto {
    /// BM25 and vector results fused (default).
    Hybrid,
    /// Keywords only.
    Bm25,
    /// Meaning only.
    Vector,
}

/// Fusion method for hybrid search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum FusionMethodDto {
    /// Min-max normalised scores combined as `alpha * vector + (1 - alpha) * bm25` (default).
    Normalized,
    /// Weighted reciprocal rank fusion.
    Rrf,
}

/// Hybrid fusion settings; every field is optional and defaults to the server's tuned values.
#[derive(Debug, Clone, Object, Default)]
pub struct FusionDto {
    /// Fusion method.
    pub method: Option<FusionMethodDto>,
    /// Weight of the vector score for `normalized` (0..1).
    pub alpha: Option<f32>,
    /// RRF rank constant.
    pub rrf_k: Option<f32>,
    /// RRF weight of the BM25 list.
    pub rrf_bm25_weight: Option<f32>,
    /// RRF weight of the vector list.
    pub rrf_vector_weight: Option<f32>,
}

/// Filters; all must match.
#[derive(Debug, Clone, Object, Default)]
pub struct SearchFilters {
    /// Only these files.
    pub file_ids: Option<Vec<String>>,
    /// Only these categories.
    pub categories: Option<Vec<CategoryDto>>,
    /// Only files uploaded at or after this time.
    pub created_after: Option<DateTime<Utc>>,
    /// Only files uploaded before this time.
    pub created_before: Option<DateTime<Utc>>,
}

/// A search request.
#[derive(Debug, Clone, Object)]
pub struct SearchBody {
    /// Text to search for (keywords for `bm25`, meaning for `vector`, both for `hybrid`).
    pub query: Option<String>,
    /// A 384-dimension query vector (all-MiniLM-L6-v2 space) instead of or besides `query`.
    pub query_vector: Option<Vec<f32>>,
    /// Results to return (1-100, default 10).
    pub top_k: Option<u32>,
    /// `hybrid` (default), `bm25` or `vector`.
    pub mode: Option<String>,
    /// Drop results whose cosine similarity to the query is below this (vector and hybrid modes).
    pub similarity_threshold: Option<f32>,
    /// Filters.
    pub filters: Option<SearchFilters>,
    /// Fusion settings for hybrid mode.
    pub fusion: Option<FusionDto>,
}

/// Scores of a result.
#[derive(Debug, Clone, Object)]
pub struct ScoresDto {
    /// BM25 score, when the keyword search found the chunk.
    pub bm25: Option<f32>,
    /// Cosine similarity, when the vector search found the chunk.
    pub vector: Option<f32>,
    /// The score results are ordered by.
    pub fused: f32,
}

/// One result.
#[derive(Debug, Clone, Object)]
pub struct SearchHitDto {
    /// The chunk (`<file id>#<ordinal>`).
    pub chunk_id: String,
    /// The file.
    pub file_id: String,
    /// The file's name.
    pub filename: String,
    /// Where the chunk is: pages, slides, sheet and cell range, heading path, lines or time range.
    pub location: serde_json::Value,
    /// The chunk's text.
    pub text: String,
    /// The best matching passage; matched words are wrapped in `<b>...</b>` (HTML-escaped otherwise).
    pub snippet: String,
    /// Scores.
    pub scores: ScoresDto,
}

/// Search results.
#[derive(Debug, Clone, Object)]
pub struct SearchResponse {
    /// Best first.
    pub results: Vec<SearchHitDto>,
    /// The mode used.
    pub mode: ModeDto,
    /// Results returned.
    pub count: u32,
}

impl From<SearchResult> for SearchHitDto {
    fn from(r: SearchResult) -> SearchHitDto {
        SearchHitDto {
            chunk_id: r.chunk_id,
            file_id: r.file.file_id,
            filename: r.file.filename,
            location: r.file.chunk.location,
            text: r.file.chunk.text,
            snippet: r.snippet,
            scores: ScoresDto {
                bm25: r.scores.bm25,
                vector: r.scores.vector,
                fused: r.scores.fused,
            },
        }
    }
}

fn bad(message: String, param: &str) -> ApiError {
    ApiError::with_param(ErrorCode::InvalidRequest, message, Some(param))
}

fn fusion_config(dto: Option<FusionDto>) -> Result<FusionConfig, ApiError> {
    let mut f = FusionConfig::default();
    let Some(d) = dto else { return Ok(f) };
    if let Some(m) = d.method {
        f.method = match m {
            FusionMethodDto::Normalized => FusionMethod::Normalized,
            FusionMethodDto::Rrf => FusionMethod::Rrf,
        };
        f.norm = ScoreNorm::MinMax;
    }
    if let Some(a) = d.alpha {
        if !(0.0..=1.0).contains(&a) {
            return Err(bad(
                "fusion.alpha must be between 0 and 1".into(),
                "fusion.alpha",
            ));
        }
        f.alpha = a;
    }
    for (value, slot, name) in [
        (d.rrf_k, &mut f.rrf_k, "fusion.rrf_k"),
        (
            d.rrf_bm25_weight,
            &mut f.rrf_bm25_weight,
            "fusion.rrf_bm25_weight",
        ),
        (
            d.rrf_vector_weight,
            &mut f.rrf_vector_weight,
            "fusion.rrf_vector_weight",
        ),
    ] {
        if let Some(v) = value {
            if !(v.is_finite() && v >= 0.0) {
                return Err(bad(format!("{name} must be a non-negative number"), name));
            }
            *slot = v;
        }
    }
    Ok(f)
}

/// The search endpoint.
pub struct SearchApi {
    pub app: App,
}

#[OpenApi(tag = "ApiTags::Search")]
impl SearchApi {
    /// Search chunks
    ///
    /// Finds the chunks of ready files that best match `query` (and/or `query_vector`): by keywords (BM25),
    /// by meaning (all-MiniLM-L6-v2 vectors), or both fused (default). Each result has its file, location,
    /// text, a highlighted snippet and its scores.
    #[oai(path = "/api/v1/search", method = "post")]
    async fn search(
        &self,
        caller: Caller,
        body: JsonBody<SearchBody>,
    ) -> Result<Json<SearchResponse>, ApiError> {
        let b = body.0;
        let top_k = b.top_k.unwrap_or(DEFAULT_TOP_K);
        if !(1..=MAX_TOP_K).contains(&top_k) {
            return Err(bad(
                format!("top_k must be between 1 and {MAX_TOP_K}"),
                "top_k",
            ));
        }
        if let Some(v) = &b.query_vector
            && (v.len() != DIMENSIONS || v.iter().any(|x| !x.is_finite()))
        {
            return Err(bad(
                format!(
                    "query_vector must have {DIMENSIONS} finite numbers, got {}",
                    v.len()
                ),
                "query_vector",
            ));
        }
        if let Some(t) = b.similarity_threshold
            && !(-1.0..=1.0).contains(&t)
        {
            return Err(bad(
                "similarity_threshold must be between -1 and 1".into(),
                "similarity_threshold",
            ));
        }
        let mode = match b.mode.as_deref() {
            None | Some("hybrid") => ModeDto::Hybrid,
            Some("bm25") => ModeDto::Bm25,
            Some("vector") => ModeDto::Vector,
            Some(other) => {
                return Err(bad(
                    format!("mode must be hybrid, bm25 or vector, not `{other}`"),
                    "mode",
                ));
            }
        };
        let f = b.filters.unwrap_or_default();
        let request = SearchRequest {
            query: b.query,
            query_vector: b.query_vector,
            top_k: top_k as usize,
            mode: match mode {
                ModeDto::Hybrid => SearchMode::Hybrid,
                ModeDto::Bm25 => SearchMode::Bm25,
                ModeDto::Vector => SearchMode::Vector,
            },
            similarity_threshold: b.similarity_threshold,
            filter: filter(
                &caller.tenant,
                f.file_ids,
                f.categories
                    .map(|c| c.into_iter().map(Into::into).collect()),
                f.created_after,
                f.created_before,
            ),
            fusion: fusion_config(b.fusion)?,
        };
        let results: Vec<SearchHitDto> = self
            .app
            .search(request)
            .await?
            .into_iter()
            .map(Into::into)
            .collect();
        Ok(Json(SearchResponse {
            count: u32::try_from(results.len()).unwrap_or(u32::MAX),
            results,
            mode,
        }))
    }
}
