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
    #[oai(nullable)]
    pub method: Option<FusionMethodDto>,
    /// Weight of the vector score for `normalized` (0..1).
    #[oai(nullable, validator(minimum(value = "0"), maximum(value = "1")))]
    pub alpha: Option<f32>,
    /// RRF rank constant.
    #[oai(nullable, validator(minimum(value = "0")))]
    pub rrf_k: Option<f32>,
    /// RRF weight of the BM25 list.
    #[oai(nullable, validator(minimum(value = "0")))]
    pub rrf_bm25_weight: Option<f32>,
    /// RRF weight of the vector list.
    #[oai(nullable, validator(minimum(value = "0")))]
    pub rrf_vector_weight: Option<f32>,
}

/// Filters; all must match. Unknown keys are refused (400 naming the key), so a mistyped filter never
/// returns unfiltered results.
#[derive(Debug, Clone, Object, Default)]
#[oai(deny_unknown_fields)]
pub struct SearchFilters {
    /// Only these files.
    #[oai(nullable)]
    pub file_ids: Option<Vec<String>>,
    /// Only these categories.
    #[oai(nullable)]
    pub categories: Option<Vec<CategoryDto>>,
    /// Only files uploaded at or after this time.
    #[oai(nullable)]
    pub created_after: Option<DateTime<Utc>>,
    /// Only files uploaded before this time.
    #[oai(nullable)]
    pub created_before: Option<DateTime<Utc>>,
}

/// A search request.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct SearchBody {
    /// Text to search for (keywords for `bm25`, meaning for `vector`, both for `hybrid`).
    #[oai(nullable)]
    pub query: Option<String>,
    /// A 384-dimension query vector (all-MiniLM-L6-v2 space) instead of or besides `query`.
    #[oai(nullable, validator(min_items = 384, max_items = 384))]
    pub query_vector: Option<Vec<f32>>,
    /// Results to return (1-100, default 10).
    #[oai(nullable, validator(minimum(value = "1"), maximum(value = "100")))]
    pub top_k: Option<u32>,
    /// `hybrid` (default), `bm25` or `vector`.
    #[oai(nullable)]
    pub mode: Option<ModeDto>,
    /// Drop results whose cosine similarity to the query is below this (vector and hybrid modes).
    #[oai(nullable, validator(minimum(value = "-1"), maximum(value = "1")))]
    pub similarity_threshold: Option<f32>,
    /// Filters.
    #[oai(nullable)]
    pub filters: Option<SearchFilters>,
    /// Fusion settings for hybrid mode.
    #[oai(nullable)]
    pub fusion: Option<FusionDto>,
}

impl poem_openapi::types::Example for SearchBody {
    /// What Swagger UI's "Try it out" sends.
    fn example() -> SearchBody {
        SearchBody {
            query: Some("total amount due".into()),
            query_vector: None,
            top_k: Some(5),
            mode: Some(ModeDto::Hybrid),
            similarity_threshold: None,
            filters: None,
            fusion: None,
        }
    }
}

/// Scores of a result.
#[derive(Debug, Clone, Object)]
pub struct ScoresDto {
    /// BM25 score, when the keyword search found the chunk.
    #[oai(nullable)]
    pub bm25: Option<f32>,
    /// Cosine similarity, when the vector search found the chunk.
    #[oai(nullable)]
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

/// The fusion settings; their ranges are checked by the schema's validators.
fn fusion_config(dto: Option<FusionDto>) -> FusionConfig {
    let mut f = FusionConfig::default();
    let Some(d) = dto else { return f };
    if let Some(m) = d.method {
        f.method = match m {
            FusionMethodDto::Normalized => FusionMethod::Normalized,
            FusionMethodDto::Rrf => FusionMethod::Rrf,
        };
        f.norm = ScoreNorm::MinMax;
    }
    for (value, slot) in [
        (d.alpha, &mut f.alpha),
        (d.rrf_k, &mut f.rrf_k),
        (d.rrf_bm25_weight, &mut f.rrf_bm25_weight),
        (d.rrf_vector_weight, &mut f.rrf_vector_weight),
    ] {
        if let Some(v) = value {
            *slot = v;
        }
    }
    f
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
        // top_k, similarity_threshold, mode and fusion are range-checked by the schema's validators.
        let top_k = b.top_k.unwrap_or(DEFAULT_TOP_K);
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
        let mode = b.mode.unwrap_or(ModeDto::Hybrid);
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
            fusion: fusion_config(b.fusion),
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
