//! The search filter both indexes apply: tenant (always), and optionally file ids,
//! categories and a creation-time range.
//!
//! The text index turns it into tantivy clauses (see `text.rs`); the vector index evaluates
//! [`SearchFilter::matches`] against the [`ChunkMeta`] it keeps per vector.

use chrono::{DateTime, Utc};

use crate::index::ChunkMeta;
use crate::types::Category;

/// Which chunks a search may return.
///
/// The time range is half-open: `created_after <= created_at < created_before`, compared at
/// one-second resolution (the indexes store unix seconds).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SearchFilter {
    /// The tenant whose chunks are searched. Required: another tenant's chunks are never returned.
    pub tenant: String,
    /// Only chunks of these files. `Some(vec![])` matches nothing.
    pub file_ids: Option<Vec<String>>,
    /// Only chunks of files in these categories. `Some(vec![])` matches nothing.
    pub categories: Option<Vec<Category>>,
    /// Only chunks of files created at or after this instant (inclusive).
    pub created_after: Option<DateTime<Utc>>,
    /// Only chunks of files created before this instant (exclusive).
    pub created_before: Option<DateTime<Utc>>,
}

impl SearchFilter {
    /// A filter that admits every chunk of `tenant`.
    pub fn tenant(tenant: impl Into<String>) -> SearchFilter {
        SearchFilter {
            tenant: tenant.into(),
            ..SearchFilter::default()
        }
    }

    /// Restricts to the given files.
    pub fn with_file_ids<I, S>(mut self, file_ids: I) -> SearchFilter
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.file_ids = Some(file_ids.into_iter().map(Into::into).collect());
        self
    }

    /// Restricts to the given categories.
    pub fn with_categories(
        mut self,
        categories: impl IntoIterator<Item = Category>,
    ) -> SearchFilter {
        self.categories = Some(categories.into_iter().collect());
        self
    }

    /// Restricts to files created in `[after, before)`; either bound may be open.
    pub fn with_created(
        mut self,
        after: Option<DateTime<Utc>>,
        before: Option<DateTime<Utc>>,
    ) -> SearchFilter {
        self.created_after = after;
        self.created_before = before;
        self
    }

    /// The inclusive lower bound in unix seconds, if any.
    pub fn after_secs(&self) -> Option<i64> {
        self.created_after.map(|t| t.timestamp())
    }

    /// The exclusive upper bound in unix seconds, if any.
    pub fn before_secs(&self) -> Option<i64> {
        self.created_before.map(|t| t.timestamp())
    }

    /// True when the filter restricts nothing but the tenant.
    pub fn is_tenant_only(&self) -> bool {
        self.file_ids.is_none()
            && self.categories.is_none()
            && self.created_after.is_none()
            && self.created_before.is_none()
    }

    /// True when no chunk can match (an empty id or category list, or an empty time range),
    /// so a search can answer without touching an index.
    pub fn matches_nothing(&self) -> bool {
        let empty_files = self.file_ids.as_ref().is_some_and(Vec::is_empty);
        let empty_categories = self.categories.as_ref().is_some_and(Vec::is_empty);
        let empty_range = match (self.after_secs(), self.before_secs()) {
            (Some(after), Some(before)) => after >= before,
            _ => false,
        };
        empty_files || empty_categories || empty_range
    }

    /// Whether a chunk with this metadata passes the filter.
    pub fn matches(&self, meta: &ChunkMeta) -> bool {
        if meta.tenant != self.tenant {
            return false;
        }
        if let Some(files) = &self.file_ids
            && !files.contains(&meta.file_id)
        {
            return false;
        }
        if let Some(categories) = &self.categories
            && !categories.contains(&meta.category)
        {
            return false;
        }
        if let Some(after) = self.after_secs()
            && meta.created_at < after
        {
            return false;
        }
        if let Some(before) = self.before_secs()
            && meta.created_at >= before
        {
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn meta(tenant: &str, file: &str, category: Category, created_at: i64) -> ChunkMeta {
        ChunkMeta {
            chunk_id: format!("{file}-0"),
            file_id: file.to_owned(),
            tenant: tenant.to_owned(),
            category,
            created_at,
        }
    }

    #[test]
    fn tenant_is_always_checked() {
        let f = SearchFilter::tenant("a");
        assert!(f.matches(&meta("a", "f1", Category::Pdf, 0)));
        assert!(!f.matches(&meta("b", "f1", Category::Pdf, 0)));
    }

    #[test]
    fn files_categories_and_half_open_range() {
        let t = |s| Utc.timestamp_opt(s, 0).single().expect("valid timestamp");
        let f = SearchFilter::tenant("a")
            .with_file_ids(["f1", "f2"])
            .with_categories([Category::Pdf])
            .with_created(Some(t(100)), Some(t(200)));
        assert!(f.matches(&meta("a", "f1", Category::Pdf, 100)));
        assert!(f.matches(&meta("a", "f2", Category::Pdf, 199)));
        assert!(!f.matches(&meta("a", "f2", Category::Pdf, 200)));
        assert!(!f.matches(&meta("a", "f2", Category::Pdf, 99)));
        assert!(!f.matches(&meta("a", "f3", Category::Pdf, 150)));
        assert!(!f.matches(&meta("a", "f1", Category::Text, 150)));
    }

    #[test]
    fn empty_lists_match_nothing() {
        assert!(
            SearchFilter::tenant("a")
                .with_file_ids(Vec::<String>::new())
                .matches_nothing()
        );
        assert!(
            SearchFilter::tenant("a")
                .with_categories([])
                .matches_nothing()
        );
        assert!(!SearchFilter::tenant("a").matches_nothing());
    }
}
