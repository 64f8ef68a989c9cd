//! Placeholder: replaced by the real extractor.

use super::{Context, ExtractError, Extractor, Input};
use crate::types::Document;

/// Extractor for this module's formats.
pub struct ImageExtractor;

impl Extractor for ImageExtractor {
    fn extract(&self, _input: &Input<'_>, _ctx: &Context<'_>) -> Result<Document, ExtractError> {
        Err(ExtractError::Corrupt("extractor not built yet".into()))
    }
}
