//! Small helpers shared by the ZIP+XML extractors (DOCX, PPTX, ODT): a flat event walker over quick-xml
//! that yields opened elements, closed elements and decoded text, plus OPC relationship parsing.
//!
//! Elements are matched by their qualified name (`a:p`, `text:h`). The prefixes of OOXML and ODF parts are
//! fixed by convention and every producer we know of uses them, so a namespace-resolving reader is not needed.

use quick_xml::Reader;
use quick_xml::events::Event;

use super::ExtractError;

/// One step of a walk over an XML part.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// An element was opened (empty elements yield `Open` then `Close`).
    Open(Element),
    /// An element was closed; carries its qualified name.
    Close(String),
    /// Character data with entities and character references resolved.
    Text(String),
}

/// An opened element: its qualified name and attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct Element {
    /// Qualified name, e.g. `text:p`.
    pub name: String,
    attrs: Vec<(String, String)>,
}

impl Element {
    /// The value of the attribute with this qualified name, e.g. `r:id`.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A streaming walk over one XML part.
pub struct Walker<'a> {
    reader: Reader<&'a [u8]>,
    part: &'a str,
}

impl<'a> Walker<'a> {
    /// Starts a walk over `bytes`; `part` names the part in error messages.
    pub fn new(bytes: &'a [u8], part: &'a str) -> Walker<'a> {
        let mut reader = Reader::from_reader(bytes);
        reader.config_mut().expand_empty_elements = true;
        Walker { reader, part }
    }

    /// The next node, or `None` at the end of the part. Malformed XML is a corrupt file.
    pub fn next_node(&mut self) -> Result<Option<Node>, ExtractError> {
        loop {
            let event = self.reader.read_event().map_err(|e| self.corrupt(&e))?;
            let node = match event {
                Event::Start(e) => {
                    let name = e.name().as_ref().to_owned();
                    let mut attrs = Vec::new();
                    for attr in e.attributes() {
                        let attr = attr.map_err(|e| self.corrupt(&e))?;
                        let key = attr.key.as_ref().to_owned();
                        let value = attr
                            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                            .map_err(|e| self.corrupt(&e))?
                            .into_owned();
                        attrs.push((key, value));
                    }
                    Node::Open(Element { name, attrs })
                }
                Event::End(e) => Node::Close(e.name().as_ref().to_owned()),
                Event::Text(t) => Node::Text(t.xml10_content().into_owned()),
                Event::CData(t) => Node::Text(t.xml10_content().into_owned()),
                Event::GeneralRef(r) => {
                    let resolved = match r.resolve_char_ref().map_err(|e| self.corrupt(&e))? {
                        Some(c) => c.to_string(),
                        None => {
                            let name = r.xml10_content();
                            match quick_xml::escape::resolve_predefined_entity(&name) {
                                Some(s) => s.to_owned(),
                                None => format!("&{name};"),
                            }
                        }
                    };
                    Node::Text(resolved)
                }
                Event::Eof => return Ok(None),
                Event::Empty(_)
                | Event::Comment(_)
                | Event::Decl(_)
                | Event::PI(_)
                | Event::DocType(_) => {
                    continue;
                }
            };
            return Ok(Some(node));
        }
    }

    fn corrupt(&self, e: &dyn std::fmt::Display) -> ExtractError {
        ExtractError::Corrupt(format!("{}: malformed XML: {e}", self.part))
    }
}

/// Fails with `Corrupt` unless `bytes` is one well-formed XML element tree. docx-rs's parser loops forever
/// on some truncated XML (an unclosed `<w:p>`), so every part is checked with quick-xml before it gets there.
pub fn check_well_formed(bytes: &[u8], part: &str) -> Result<(), ExtractError> {
    well_formed_count(bytes, part, &[]).map(drop)
}

/// [`check_well_formed`] that also counts the elements whose local name (after any `prefix:`) is one of
/// `names`, e.g. DOCX paragraphs, rows and cells before the whole part is parsed into a tree.
pub fn well_formed_count(bytes: &[u8], part: &str, names: &[&str]) -> Result<u64, ExtractError> {
    let mut walker = Walker::new(bytes, part);
    let (mut depth, mut elements) = (0usize, 0usize);
    let mut counted = 0u64;
    while let Some(node) = walker.next_node()? {
        match node {
            Node::Open(e) => {
                depth += 1;
                elements += 1;
                let local = e.name.rsplit(':').next().unwrap_or(&e.name);
                if names.contains(&local) {
                    counted += 1;
                }
            }
            Node::Close(_) => depth = depth.saturating_sub(1),
            Node::Text(_) => {}
        }
    }
    if depth != 0 || elements == 0 {
        return Err(ExtractError::Corrupt(format!(
            "{part}: malformed XML: the document is incomplete"
        )));
    }
    Ok(counted)
}

/// One relationship of an OPC part (`*.rels`).
#[derive(Debug, Clone, PartialEq)]
pub struct Rel {
    /// `Id`, e.g. `rId2`.
    pub id: String,
    /// `Type`, a URI such as `.../relationships/slide`.
    pub rel_type: String,
    /// `Target`, resolved to a part name inside the container (external targets are kept as given).
    pub target: String,
    /// True for `TargetMode="External"` (hyperlinks and the like).
    pub external: bool,
}

impl Rel {
    /// True when the relationship type's last path segment is exactly `kind` (e.g. `slide`, `notesSlide`).
    pub fn is(&self, kind: &str) -> bool {
        self.rel_type.rsplit('/').next() == Some(kind)
    }
}

/// The relationships part of `part`: `word/document.xml` -> `word/_rels/document.xml.rels`.
pub fn rels_part(part: &str) -> String {
    match part.rsplit_once('/') {
        Some((dir, name)) => format!("{dir}/_rels/{name}.rels"),
        None => format!("_rels/{part}.rels"),
    }
}

/// Parses a `.rels` part of `source` (the part the relationships belong to; `""` for the package).
pub fn parse_rels(bytes: &[u8], source: &str) -> Result<Vec<Rel>, ExtractError> {
    let rels_name = rels_part(source);
    let mut walker = Walker::new(bytes, &rels_name);
    let mut rels = Vec::new();
    while let Some(node) = walker.next_node()? {
        if let Node::Open(e) = node
            && e.name == "Relationship"
        {
            let external = e.attr("TargetMode") == Some("External");
            let raw = e.attr("Target").unwrap_or_default();
            rels.push(Rel {
                id: e.attr("Id").unwrap_or_default().to_owned(),
                rel_type: e.attr("Type").unwrap_or_default().to_owned(),
                target: if external {
                    raw.to_owned()
                } else {
                    resolve_target(source, raw)
                },
                external,
            });
        }
    }
    Ok(rels)
}

/// Resolves a relationship target against the part it is relative to, normalising `.` and `..`.
pub fn resolve_target(source: &str, target: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    if let Some(absolute) = target.strip_prefix('/') {
        return normalise(&mut parts, absolute);
    }
    if let Some((dir, _)) = source.rsplit_once('/') {
        parts.extend(dir.split('/').filter(|s| !s.is_empty()));
    }
    normalise(&mut parts, target)
}

fn normalise<'a>(parts: &mut Vec<&'a str>, path: &'a str) -> String {
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(xml: &str) -> Vec<Node> {
        let mut w = Walker::new(xml.as_bytes(), "test.xml");
        let mut out = Vec::new();
        while let Some(n) = w.next_node().expect("well-formed") {
            out.push(n);
        }
        out
    }

    #[test]
    fn decodes_entities_and_expands_empty_elements() {
        let got = nodes(r#"<a x="1 &amp; 2"><b/>R&amp;D &#233;t&#xE9;</a>"#);
        let Node::Open(a) = &got[0] else {
            panic!("open a")
        };
        assert_eq!(a.attr("x"), Some("1 & 2"));
        assert_eq!(got[2], Node::Close("b".into()));
        let text: String = got
            .iter()
            .filter_map(|n| {
                if let Node::Text(t) = n {
                    Some(t.as_str())
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(text, "R&D été");
    }

    #[test]
    fn malformed_xml_is_corrupt() {
        let mut w = Walker::new(b"<a><b></a>", "x.xml");
        let err = loop {
            match w.next_node() {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("must fail"),
                Err(e) => break e,
            }
        };
        assert_eq!(err.code(), "corrupt_file");
    }

    #[test]
    fn resolves_targets() {
        assert_eq!(
            resolve_target("ppt/slides/slide1.xml", "../notesSlides/notesSlide1.xml"),
            "ppt/notesSlides/notesSlide1.xml"
        );
        assert_eq!(
            resolve_target("ppt/presentation.xml", "slides/slide1.xml"),
            "ppt/slides/slide1.xml"
        );
        assert_eq!(
            resolve_target("word/document.xml", "/word/header1.xml"),
            "word/header1.xml"
        );
        assert_eq!(resolve_target("", "word/document.xml"), "word/document.xml");
        assert_eq!(
            rels_part("ppt/presentation.xml"),
            "ppt/_rels/presentation.xml.rels"
        );
        assert_eq!(rels_part(""), "_rels/.rels");
    }

    #[test]
    fn parses_rels() {
        let xml = br#"<Relationships><Relationship Id="rId1" Type="http://x/relationships/slide" Target="slides/slide1.xml"/><Relationship Id="rId2" Type="http://x/relationships/hyperlink" Target="http://e.com" TargetMode="External"/></Relationships>"#;
        let rels = parse_rels(xml, "ppt/presentation.xml").expect("rels");
        assert_eq!(rels.len(), 2);
        assert!(rels[0].is("slide"));
        assert_eq!(rels[0].target, "ppt/slides/slide1.xml");
        assert!(rels[1].external);
    }
}

/// Helpers for the extractor tests of DOCX, PPTX and ODT.
#[cfg(test)]
pub(crate) mod testing {
    use std::io::{Cursor, Write};
    use std::time::{Duration, Instant};

    use crate::extract::{Context, ExtractError, Extractor, Format, Input, Limits};
    use crate::types::{Document, Location, Segment};

    /// A `Section` location.
    pub(crate) fn section(path: &[&str], block: u32) -> Location {
        Location::Section {
            heading_path: path.iter().map(|s| (*s).to_owned()).collect(),
            block,
        }
    }

    /// The segment with exactly this text; panics with the document when there is none.
    pub(crate) fn find<'a>(doc: &'a Document, text: &str) -> &'a Segment {
        doc.segments
            .iter()
            .find(|s| s.text == text)
            .unwrap_or_else(|| panic!("no segment {text:?} in {:#?}", doc.segments))
    }

    /// Runs `extractor` over `bytes` with `limits` and a generous deadline.
    pub(crate) fn run(
        extractor: &dyn Extractor,
        bytes: &[u8],
        format: Format,
        limits: &Limits,
    ) -> Result<Document, ExtractError> {
        let progress = |_: u64, _: u64, _: &'static str| {};
        let ctx = Context {
            limits,
            deadline: Instant::now() + Duration::from_secs(60),
            progress: &progress,
        };
        extractor.extract(&Input { bytes, format }, &ctx)
    }

    /// Runs `extractor` with a deadline already passed.
    pub(crate) fn run_expired(
        extractor: &dyn Extractor,
        bytes: &[u8],
        format: Format,
    ) -> Result<Document, ExtractError> {
        let limits = Limits::default();
        let progress = |_: u64, _: u64, _: &'static str| {};
        let ctx = Context {
            limits: &limits,
            deadline: Instant::now(),
            progress: &progress,
        };
        extractor.extract(&Input { bytes, format }, &ctx)
    }

    /// A deflated ZIP with these members.
    pub(crate) fn zip_of(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        let mut w = zip::ZipWriter::new(&mut out);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, data) in members {
            w.start_file(*name, opts).expect("start");
            w.write_all(data).expect("write");
        }
        w.finish().expect("finish");
        out.into_inner()
    }

    /// Deterministic pseudo-random bytes (xorshift), for "not a file at all" tests.
    pub(crate) fn noise(len: usize) -> Vec<u8> {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x.to_le_bytes()[0]
            })
            .collect()
    }
}
