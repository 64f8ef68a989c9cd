//! What a DOCX paragraph is (heading, list item or body text), from its own properties and its style
//! chain, and the list counters that turn numbering definitions into `"- "` / `"1. "` prefixes.

use std::collections::HashMap;

use docx_rs::{Numberings, ParagraphProperty, Styles};

/// Word's outline levels run 0..=8; 9 means body text.
const OUTLINE_LEVELS: usize = 9;
/// The deepest list level Word defines (0-based levels 0..=8).
const LIST_LEVELS: usize = 9;
/// How deep a `basedOn` chain is followed (guards against cycles).
const MAX_STYLE_DEPTH: usize = 16;
/// Heading level given to the `Title` style: above `Heading 1`.
const TITLE_LEVEL: usize = 0;

/// What a paragraph is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ParagraphClass {
    /// A heading of this level (`Title` 0, `Heading N` N).
    Heading(usize),
    /// An item of list `num_id` at 0-based `level`.
    List { num_id: usize, level: usize },
    /// Anything else.
    Body,
}

/// The facts a paragraph style contributes, after following `basedOn`.
#[derive(Debug, Clone, Default)]
struct StyleFacts {
    heading: Option<usize>,
    num_id: Option<usize>,
    num_level: Option<usize>,
    based_on: Option<String>,
}

/// Paragraph styles by id, with heading levels and numbering resolved through `basedOn`.
#[derive(Debug, Default)]
pub(super) struct StyleMap {
    styles: HashMap<String, StyleFacts>,
}

impl StyleMap {
    /// Indexes the paragraph styles of `styles.xml`.
    pub(super) fn new(styles: &Styles) -> StyleMap {
        let mut own = HashMap::new();
        for style in &styles.styles {
            if style.style_type != docx_rs::StyleType::Paragraph {
                continue;
            }
            let name = serde_json::to_value(&style.name)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let heading = heading_from_name(&style.style_id)
                .or_else(|| heading_from_name(&name))
                .or_else(|| outline_level(&style.paragraph_property));
            let numbering = style.paragraph_property.numbering_property.as_ref();
            own.insert(
                style.style_id.clone(),
                StyleFacts {
                    heading,
                    num_id: numbering.and_then(|n| n.id.as_ref()).map(|id| id.id),
                    num_level: numbering.and_then(|n| n.level.as_ref()).map(|l| l.val),
                    based_on: style
                        .based_on
                        .as_ref()
                        .and_then(|b| serde_json::to_value(b).ok())
                        .and_then(|v| v.as_str().map(str::to_owned)),
                },
            );
        }
        let mut resolved = HashMap::new();
        for id in own.keys() {
            resolved.insert(id.clone(), resolve(&own, id));
        }
        StyleMap { styles: resolved }
    }

    /// Classifies a paragraph by its own properties first, then its style's.
    pub(super) fn classify(&self, p: &ParagraphProperty) -> ParagraphClass {
        let style = p.style.as_ref().and_then(|s| self.styles.get(&s.val));
        let heading = outline_level(p).or_else(|| style.and_then(|s| s.heading));
        if let Some(level) = heading {
            return ParagraphClass::Heading(level);
        }
        let own = p.numbering_property.as_ref();
        let num_id = own
            .and_then(|n| n.id.as_ref())
            .map(|id| id.id)
            .or_else(|| style.and_then(|s| s.num_id));
        let level = own
            .and_then(|n| n.level.as_ref())
            .map(|l| l.val)
            .or_else(|| style.and_then(|s| s.num_level))
            .unwrap_or(0);
        match num_id {
            // numId 0 explicitly removes numbering.
            Some(num_id) if num_id != 0 => ParagraphClass::List {
                num_id,
                level: level.min(LIST_LEVELS - 1),
            },
            _ => ParagraphClass::Body,
        }
    }
}

/// Merges a style with its `basedOn` ancestors: the nearest definition of each fact wins.
fn resolve(own: &HashMap<String, StyleFacts>, id: &str) -> StyleFacts {
    let mut out = StyleFacts::default();
    let mut current = own.get(id);
    for _ in 0..MAX_STYLE_DEPTH {
        let Some(s) = current else { break };
        out.heading = out.heading.or(s.heading);
        out.num_id = out.num_id.or(s.num_id);
        out.num_level = out.num_level.or(s.num_level);
        current = s.based_on.as_deref().and_then(|b| own.get(b));
    }
    out
}

/// `Title` -> 0; `Heading1` / `heading 1` -> 1 ... 9.
fn heading_from_name(name: &str) -> Option<usize> {
    let lower = name.to_ascii_lowercase();
    if lower == "title" {
        return Some(TITLE_LEVEL);
    }
    let rest = lower.strip_prefix("heading")?.trim_start();
    let level: usize = rest.parse().ok()?;
    (1..=OUTLINE_LEVELS).contains(&level).then_some(level)
}

/// An explicit outline level 0..=8 as heading level 1..=9.
fn outline_level(p: &ParagraphProperty) -> Option<usize> {
    p.outline_lvl
        .as_ref()
        .map(|o| o.v)
        .filter(|v| *v < OUTLINE_LEVELS)
        .map(|v| v + 1)
}

/// How a list item is marked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ListFormat {
    /// A bullet (rendered `"- "`).
    Bullet,
    /// A numbered item with its label, e.g. `1.`, `b.`, `iv.`.
    Numbered(String),
    /// Numbering format `none`: no marker.
    None,
}

/// One list level's number format and start value.
#[derive(Debug, Clone)]
struct LevelDef {
    format: String,
    start: u32,
}

/// List counters per numbering instance (`numId`).
pub(super) struct ListState<'a> {
    numberings: Option<&'a Numberings>,
    counters: HashMap<usize, [u32; LIST_LEVELS]>,
}

impl<'a> ListState<'a> {
    /// Counters over the definitions of `numbering.xml` (when the document has one).
    pub(super) fn new(numberings: Option<&'a Numberings>) -> ListState<'a> {
        ListState {
            numberings,
            counters: HashMap::new(),
        }
    }

    /// Advances list `num_id` at `level` and returns the item's marker. Unknown lists are bullets.
    pub(super) fn next(&mut self, num_id: usize, level: usize) -> ListFormat {
        let Some(def) = self.level_def(num_id, level) else {
            return ListFormat::Bullet;
        };
        match def.format.as_str() {
            "bullet" => return ListFormat::Bullet,
            "none" => return ListFormat::None,
            _ => {}
        }
        let counters = self.counters.entry(num_id).or_insert([0; LIST_LEVELS]);
        counters[level] = if counters[level] == 0 {
            def.start
        } else {
            counters[level] + 1
        };
        for deeper in counters.iter_mut().skip(level + 1) {
            *deeper = 0;
        }
        ListFormat::Numbered(format!("{}.", label(&def.format, counters[level])))
    }

    fn level_def(&self, num_id: usize, level: usize) -> Option<LevelDef> {
        let numberings = self.numberings?;
        let num = numberings.numberings.iter().find(|n| n.id == num_id)?;
        let overridden = num
            .level_overrides
            .iter()
            .find(|o| o.level == level)
            .and_then(|o| o.override_level.as_ref());
        let level_def = match overridden {
            Some(l) => l,
            None => numberings
                .abstract_nums
                .iter()
                .find(|a| a.id == num.abstract_num_id)?
                .levels
                .iter()
                .find(|l| l.level == level)?,
        };
        let start = serde_json::to_value(&level_def.start)
            .ok()
            .and_then(|v| v.as_u64())
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(1);
        Some(LevelDef {
            format: level_def.format.val.clone(),
            start,
        })
    }
}

/// The label of item `n` in a numbering format; formats other than letters and roman numerals are decimal.
pub(crate) fn label(format: &str, n: u32) -> String {
    match format {
        "lowerLetter" => letters(n),
        "upperLetter" => letters(n).to_ascii_uppercase(),
        "lowerRoman" => roman(n),
        "upperRoman" => roman(n).to_ascii_uppercase(),
        _ => n.to_string(),
    }
}

/// 1 -> a, 26 -> z, 27 -> aa (Word repeats the letter).
fn letters(n: u32) -> String {
    if n == 0 {
        return "0".to_owned();
    }
    let idx = (n - 1) % 26;
    let repeat = (n - 1) / 26 + 1;
    let c = char::from(b'a' + u8::try_from(idx).expect("idx < 26. This is a bug."));
    std::iter::repeat_n(c, repeat as usize).collect()
}

fn roman(mut n: u32) -> String {
    const TABLE: [(u32, &str); 13] = [
        (1000, "m"),
        (900, "cm"),
        (500, "d"),
        (400, "cd"),
        (100, "c"),
        (90, "xc"),
        (50, "l"),
        (40, "xl"),
        (10, "x"),
        (9, "ix"),
        (5, "v"),
        (4, "iv"),
        (1, "i"),
    ];
    let mut out = String::new();
    for (value, digits) in TABLE {
        while n >= value {
            out.push_str(digits);
            n -= value;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heading_names() {
        assert_eq!(heading_from_name("Title"), Some(0));
        assert_eq!(heading_from_name("Heading2"), Some(2));
        assert_eq!(heading_from_name("heading 3"), Some(3));
        assert_eq!(heading_from_name("Heading10"), None);
        assert_eq!(heading_from_name("Normal"), None);
    }

    #[test]
    fn labels() {
        assert_eq!(label("decimal", 3), "3");
        assert_eq!(label("lowerLetter", 2), "b");
        assert_eq!(label("upperLetter", 28), "BB");
        assert_eq!(label("lowerRoman", 14), "xiv");
        assert_eq!(label("upperRoman", 4), "IV");
    }
}
