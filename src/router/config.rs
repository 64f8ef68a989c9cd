//! The router's configuration: tiers (local models and remote OpenAI-compatible providers) with their score
//! ranges, and the grounding budget of chat with files. The default is `pipelines/router.toml`, built into the
//! binary; `DOCPIPE_ROUTER_CONFIG` names a file that replaces it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The built-in configuration.
pub const BUILT_IN: &str = include_str!("../../pipelines/router.toml");
/// Default wait for a remote tier's answer to start (and between its streamed pieces).
const DEFAULT_TIMEOUT_SECS: u64 = 60;

/// Where a tier's model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TierKind {
    /// A model loaded by this process.
    #[default]
    Local,
    /// An OpenAI-compatible server.
    Remote,
}

/// One tier as written in the file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierConfig {
    /// Shown in analyses, logs and metrics.
    pub name: String,
    /// Local model id, or the remote provider's model name.
    pub model: String,
    /// `local` (default) or `remote`.
    #[serde(default)]
    pub kind: TierKind,
    /// Lowest complexity score this tier takes.
    pub min_score: f32,
    /// Highest complexity score this tier takes.
    pub max_score: f32,
    /// Context window in tokens; required for remote tiers, taken from the model for local ones.
    pub context_window: Option<usize>,
    /// Price per 1,000 tokens, shown in analyses.
    #[serde(default)]
    pub cost_per_1k_tokens: f64,
    /// Remote only: the API base, e.g. `http://host:8000/v1` or `https://provider/v1`.
    pub base_url: Option<String>,
    /// Remote only: the environment variable holding the API key (sent as a bearer token).
    pub api_key_env: Option<String>,
    /// Remote only: seconds to wait for the answer to start and between streamed pieces.
    pub timeout_secs: Option<u64>,
}

impl TierConfig {
    /// The remote timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS))
    }

    /// True when `score` is in this tier's range.
    pub fn takes(&self, score: f32) -> bool {
        (self.min_score..=self.max_score).contains(&score)
    }
}

/// How chat with files fills the prompt and who answers it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GroundingConfig {
    /// The tier that answers questions about attached files (`auto` only; chit-chat keeps its score's tier).
    /// `None` routes grounded questions by score like any other.
    pub tier: Option<String>,
    /// Time to the first answer token the source budget aims at, in milliseconds: a tier gets as many source
    /// tokens as its measured prompt speed reads in this time (minus the conversation's own tokens).
    pub time_to_first_token_ms: u64,
    /// Least tokens of sources in one prompt, whatever the speed (a slow machine still gets evidence).
    pub min_context_tokens: usize,
    /// Most tokens of sources in one prompt (further capped by the model's window minus the answer).
    pub max_context_tokens: usize,
    /// Most numbered sources.
    pub max_sources: usize,
    /// Files of at most this many tokens go in whole when they fit.
    pub whole_file_tokens: usize,
}

impl Default for GroundingConfig {
    fn default() -> Self {
        GroundingConfig {
            tier: None,
            time_to_first_token_ms: 1300,
            min_context_tokens: 512,
            max_context_tokens: 2048,
            max_sources: 8,
            whole_file_tokens: 400,
        }
    }
}

/// The model names clients send that stand for one of ours (`gpt-4o-mini` for `auto`, say).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AliasConfig {
    /// Chat model aliases: alias -> `auto` or a chat model id.
    pub chat: std::collections::BTreeMap<String, String>,
    /// Embedding model aliases: alias -> the embedding model id.
    pub embeddings: std::collections::BTreeMap<String, String>,
}

/// The whole router configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterConfig {
    /// Tiers, in fallback order.
    pub tiers: Vec<TierConfig>,
    /// Chat-with-files budget.
    #[serde(default)]
    pub grounding: GroundingConfig,
    /// Model names that stand for ours.
    #[serde(default)]
    pub aliases: AliasConfig,
}

/// A configuration that cannot be used; names the file.
#[derive(Debug, thiserror::Error)]
#[error("router configuration {file}: {reason}")]
pub struct RouterConfigError {
    /// The file (`pipelines/router.toml` for the built-in one).
    pub file: PathBuf,
    /// What is wrong.
    pub reason: String,
}

impl RouterConfig {
    /// Loads `path`, or the built-in configuration when `None`.
    pub fn load(path: Option<&Path>) -> Result<RouterConfig, RouterConfigError> {
        match path {
            None => RouterConfig::parse(Path::new("pipelines/router.toml"), BUILT_IN),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| RouterConfigError {
                    file: p.to_owned(),
                    reason: format!("cannot read: {e}"),
                })?;
                RouterConfig::parse(p, &text)
            }
        }
    }

    /// Parses and validates; `file` names the source in errors.
    pub fn parse(file: &Path, text: &str) -> Result<RouterConfig, RouterConfigError> {
        let fail = |reason: String| RouterConfigError {
            file: file.to_owned(),
            reason,
        };
        let config: RouterConfig = toml::from_str(text).map_err(|e| fail(e.to_string()))?;
        config.validate().map_err(fail)?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        if self.tiers.is_empty() {
            return Err("at least one [[tiers]] is needed".into());
        }
        for (i, t) in self.tiers.iter().enumerate() {
            if t.name.trim().is_empty() || t.model.trim().is_empty() {
                return Err(format!("tier {} needs a name and a model", i + 1));
            }
            if self.tiers[..i].iter().any(|o| o.name == t.name) {
                return Err(format!("tier name `{}` is used twice", t.name));
            }
            if !(0.0..=1.0).contains(&t.min_score)
                || !(0.0..=1.0).contains(&t.max_score)
                || t.min_score > t.max_score
            {
                return Err(format!(
                    "tier `{}`: need 0 <= min_score <= max_score <= 1",
                    t.name
                ));
            }
            match t.kind {
                TierKind::Remote => {
                    let url = t.base_url.as_deref().unwrap_or_default();
                    if !(url.starts_with("http://") || url.starts_with("https://")) {
                        return Err(format!(
                            "remote tier `{}` needs a base_url starting with http:// or https://",
                            t.name
                        ));
                    }
                    if t.context_window.is_none_or(|w| w == 0) {
                        return Err(format!("remote tier `{}` needs a context_window", t.name));
                    }
                    if t.timeout_secs == Some(0) {
                        return Err(format!("tier `{}`: timeout_secs must be > 0", t.name));
                    }
                }
                TierKind::Local => {
                    if t.base_url.is_some() || t.api_key_env.is_some() || t.timeout_secs.is_some() {
                        return Err(format!(
                            "local tier `{}` takes no base_url, api_key_env or timeout_secs (set kind = \"remote\")",
                            t.name
                        ));
                    }
                }
            }
        }
        // Every score must have a tier.
        let mut ranges: Vec<(f32, f32)> = self
            .tiers
            .iter()
            .map(|t| (t.min_score, t.max_score))
            .collect();
        ranges.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut covered = 0.0_f32;
        for (lo, hi) in ranges {
            if lo > covered {
                return Err(format!(
                    "no tier takes scores between {covered} and {lo}: the ranges must cover 0 to 1"
                ));
            }
            covered = covered.max(hi);
        }
        if covered < 1.0 {
            return Err(format!(
                "no tier takes scores above {covered}: the ranges must cover 0 to 1"
            ));
        }
        let g = &self.grounding;
        if g.max_context_tokens == 0 || g.max_sources == 0 {
            return Err("grounding.max_context_tokens and max_sources must be > 0".into());
        }
        if g.min_context_tokens > g.max_context_tokens {
            return Err("grounding.min_context_tokens must be at most max_context_tokens".into());
        }
        if let Some(t) = &g.tier
            && !self.tiers.iter().any(|x| &x.name == t)
        {
            return Err(format!("grounding.tier `{t}` is not a tier name"));
        }
        for (alias, target) in &self.aliases.chat {
            if alias.trim().is_empty() || target.trim().is_empty() {
                return Err("aliases.chat: empty alias or target".into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RouterConfig, String> {
        RouterConfig::parse(Path::new("router.toml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn built_in_config_is_valid() {
        let c = RouterConfig::load(None).expect("built-in");
        assert_eq!(c.tiers.len(), 2);
        assert_eq!(c.tiers[0].name, "fast");
        assert!(c.tiers[0].takes(0.0) && c.tiers[1].takes(1.0));
        assert_eq!(c.grounding.tier.as_deref(), Some("strong"));
        assert_eq!(
            c.aliases.chat.get("gpt-4o-mini").map(String::as_str),
            Some("auto")
        );
        assert_eq!(
            c.aliases
                .embeddings
                .get("text-embedding-3-small")
                .map(String::as_str),
            Some("all-MiniLM-L6-v2")
        );
    }

    #[test]
    fn remote_tier_needs_url_and_window() {
        let base = "[[tiers]]\nname = \"r\"\nmodel = \"m\"\nkind = \"remote\"\nmin_score = 0.0\nmax_score = 1.0\n";
        assert!(parse(base).unwrap_err().contains("base_url"));
        let with_url = format!("{base}base_url = \"http://x/v1\"\n");
        assert!(parse(&with_url).unwrap_err().contains("context_window"));
        let https = base.replace(
            "min_score",
            "base_url = \"https://x/v1\"\ncontext_window = 9\nmin_score",
        );
        assert!(
            parse(&https).is_ok(),
            "https providers are reached over TLS"
        );
        let ftp = base.replace(
            "min_score",
            "base_url = \"ftp://x/v1\"\ncontext_window = 9\nmin_score",
        );
        assert!(parse(&ftp).unwrap_err().contains("https://"));
        let ok = format!("{with_url}context_window = 4096\ntimeout_secs = 3\n");
        let c = parse(&ok).expect("valid");
        assert_eq!(c.tiers[0].timeout(), Duration::from_secs(3));
    }

    #[test]
    fn gaps_overlaps_and_typos_are_refused() {
        let gap = "[[tiers]]\nname = \"a\"\nmodel = \"m\"\nmin_score = 0.0\nmax_score = 0.4\n\
                   [[tiers]]\nname = \"b\"\nmodel = \"m\"\nmin_score = 0.5\nmax_score = 1.0\n";
        assert!(parse(gap).unwrap_err().contains("between 0.4 and 0.5"));
        let short = "[[tiers]]\nname = \"a\"\nmodel = \"m\"\nmin_score = 0.0\nmax_score = 0.9\n";
        assert!(parse(short).unwrap_err().contains("above 0.9"));
        let typo = "[[tiers]]\nname = \"a\"\nmodel = \"m\"\nmin_scor = 0.0\nmax_score = 1.0\n";
        assert!(parse(typo).unwrap_err().contains("min_scor"));
        let twice = "[[tiers]]\nname = \"a\"\nmodel = \"m\"\nmin_score = 0.0\nmax_score = 1.0\n\
                     [[tiers]]\nname = \"a\"\nmodel = \"n\"\nmin_score = 0.0\nmax_score = 1.0\n";
        assert!(parse(twice).unwrap_err().contains("twice"));
        let local_url = "[[tiers]]\nname = \"a\"\nmodel = \"m\"\nmin_score = 0.0\nmax_score = 1.0\nbase_url = \"http://x\"\n";
        assert!(parse(local_url).unwrap_err().contains("set kind"));
    }
}
