//! Search: keyword (BM25), vector and hybrid queries over the tenant's ready files.

use tracing::instrument;

pub use crate::index::fusion::{FusionConfig, FusionMethod, ScoreNorm};
pub use crate::index::service::{SearchError, SearchMode, SearchRequest, SearchResult, filter};
pub use crate::models::embed::DIMENSIONS;

use super::App;

impl App {
    /// Runs a search (the request's filter carries the tenant).
    #[instrument(skip_all, fields(mode = ?req.mode, top_k = req.top_k))]
    pub async fn search(&self, req: SearchRequest) -> Result<Vec<SearchResult>, SearchError> {
        self.search.search(req).await
    }
}
