//! ODF list styles (`text:list-style`): which levels are bulleted and how numbered levels are labelled.

use std::collections::HashMap;

use crate::extract::ExtractError;
use crate::extract::office::number_label;
use crate::extract::xml::{Node, Walker};

/// How one level of a list style marks its items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum LevelStyle {
    /// `text:list-level-style-bullet` (and images): rendered `"- "`.
    Bullet,
    /// `text:list-level-style-number`: `style:num-format` with its prefix and suffix.
    Number {
        format: String,
        prefix: String,
        suffix: String,
    },
}

impl LevelStyle {
    /// The marker (without the trailing space) of item `n`; `None` for a numbered level with an empty format.
    pub(super) fn marker(&self, n: u32) -> Option<String> {
        match self {
            LevelStyle::Bullet => Some("-".to_owned()),
            LevelStyle::Number {
                format,
                prefix,
                suffix,
            } => {
                let ooxml = match format.as_str() {
                    "" => return None,
                    "a" => "lowerLetter",
                    "A" => "upperLetter",
                    "i" => "lowerRoman",
                    "I" => "upperRoman",
                    _ => "decimal",
                };
                Some(format!("{prefix}{}{suffix}", number_label(ooxml, n)))
            }
        }
    }
}

/// List styles by name, each level (1-based) to its style.
#[derive(Debug, Default)]
pub(super) struct ListStyles {
    styles: HashMap<String, HashMap<u32, LevelStyle>>,
}

impl ListStyles {
    /// Adds the list styles defined anywhere in `bytes` (`content.xml` or `styles.xml`).
    pub(super) fn add_from(&mut self, bytes: &[u8], part: &str) -> Result<(), ExtractError> {
        let mut walker = Walker::new(bytes, part);
        let mut current: Option<String> = None;
        while let Some(node) = walker.next_node()? {
            match node {
                Node::Open(e) if e.name == "text:list-style" => {
                    current = e.attr("style:name").map(str::to_owned);
                }
                Node::Close(name) if name == "text:list-style" => current = None,
                Node::Open(e) if e.name.starts_with("text:list-level-style-") => {
                    let Some(style) = current.as_ref() else {
                        continue;
                    };
                    let level = e
                        .attr("text:level")
                        .and_then(|l| l.parse().ok())
                        .unwrap_or(1);
                    let def = if e.name == "text:list-level-style-number" {
                        LevelStyle::Number {
                            format: e.attr("style:num-format").unwrap_or_default().to_owned(),
                            prefix: e.attr("style:num-prefix").unwrap_or_default().to_owned(),
                            suffix: e.attr("style:num-suffix").unwrap_or_default().to_owned(),
                        }
                    } else {
                        LevelStyle::Bullet
                    };
                    self.styles
                        .entry(style.clone())
                        .or_default()
                        .insert(level, def);
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The style of `level` (1-based) in list style `name`; unknown styles and levels are bullets.
    pub(super) fn level(&self, name: Option<&str>, level: u32) -> LevelStyle {
        name.and_then(|n| self.styles.get(n))
            .and_then(|levels| levels.get(&level))
            .cloned()
            .unwrap_or(LevelStyle::Bullet)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_levels_and_labels() {
        let xml = br#"<s><text:list-style style:name="L1"><text:list-level-style-bullet text:level="1"/><text:list-level-style-number text:level="2" style:num-format="a" style:num-prefix="(" style:num-suffix=")"/></text:list-style></s>"#;
        let mut styles = ListStyles::default();
        styles.add_from(xml, "styles.xml").expect("parse");
        assert_eq!(styles.level(Some("L1"), 1), LevelStyle::Bullet);
        assert_eq!(
            styles.level(Some("L1"), 2).marker(3),
            Some("(c)".to_owned())
        );
        assert_eq!(styles.level(Some("nope"), 1), LevelStyle::Bullet);
        assert_eq!(styles.level(None, 4).marker(1), Some("-".to_owned()));
    }
}
