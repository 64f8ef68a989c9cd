//! Bounds on what a PDF's streams expand to, checked before pdf-extract decodes any of them.
//!
//! lopdf inflates a stream whole, without a cap, whenever its content is asked for, and adobe-cmap-parser
//! expands every ToUnicode range into a map entry per code: a 1 MB FlateDecode bomb becomes gigabytes, and
//! one `<00000000> <FFFFFFFF>` range four billion entries. So every FlateDecode stream is inflated here into a
//! counter (nothing is kept) and the file fails when one passes `max_stream_bytes` or all together pass
//! `max_inflated_bytes`; a ToUnicode CMap mapping more than `max_cmap_codes` codes is dropped (its font is
//! then read without it).

use std::collections::HashSet;
use std::io::Read;

use flate2::read::ZlibDecoder;
use lopdf::{Document, Object, ObjectId};

use crate::extract::{ExtractError, Limits};

/// Most bytes an object stream (`/Type /ObjStm`) may inflate to. lopdf inflates and parses object streams
/// while it loads the file, before [`check`] can see them, through a load filter that is a plain `fn`; so
/// this bound is fixed rather than per pipeline. Real object streams hold a few hundred small objects.
pub const MAX_OBJECT_STREAM_BYTES: u64 = 64 * 1024 * 1024;
/// The type an oversized object stream is given (with its content emptied) so lopdf keeps it unparsed.
const OVERSIZED_OBJECT_STREAM: &[u8] = b"DocpipeOversizedObjStm";

/// Largest ToUnicode CMap read to count its codes (real ones are a few kilobytes).
const MAX_CMAP_TEXT: u64 = 16 * 1024 * 1024;

/// What the check changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct StreamReport {
    /// ToUnicode CMaps dropped for mapping too many codes.
    pub cmaps_dropped: usize,
}

/// lopdf's load filter: empties an object stream that inflates past [`MAX_OBJECT_STREAM_BYTES`] (counted
/// without keeping it) and retypes it, so [`check_object_streams`] fails the file instead of lopdf inflating
/// it whole.
pub fn load_filter(id: ObjectId, obj: &mut Object) -> Option<(ObjectId, Object)> {
    if let Object::Stream(stream) = obj
        && stream.dict.has_type(b"ObjStm")
        && stream
            .filters()
            .is_ok_and(|f| f.first() == Some(&b"FlateDecode".as_slice()))
        && inflated_size(&stream.content, MAX_OBJECT_STREAM_BYTES) > MAX_OBJECT_STREAM_BYTES
    {
        stream.dict.remove(b"Filter");
        stream.dict.remove(b"DecodeParms");
        stream
            .dict
            .set("Type", Object::Name(OVERSIZED_OBJECT_STREAM.to_vec()));
        stream.set_content(Vec::new());
    }
    // lopdf keeps `obj` itself for top-level objects and the returned one for objects inside object streams,
    // which are never streams (PDF 32000-1, 7.5.7): a stream is not copied, only a small inner object is.
    if matches!(obj, Object::Stream(_)) {
        Some((id, Object::Null))
    } else {
        Some((id, obj.clone()))
    }
}

/// Fails when [`load_filter`] found an oversized object stream (whatever else the file has, it cannot be
/// read without it).
pub fn check_object_streams(doc: &Document) -> Result<(), ExtractError> {
    if let Some((id, _)) = doc.objects.iter().find(|(_, o)| {
        o.as_stream()
            .is_ok_and(|s| s.dict.has_type(OVERSIZED_OBJECT_STREAM))
    }) {
        return Err(ExtractError::LimitExceeded(format!(
            "PDF object stream {} {} inflates to more than {MAX_OBJECT_STREAM_BYTES} bytes",
            id.0, id.1
        )));
    }
    Ok(())
}

/// Checks every stream's inflated size and drops oversized ToUnicode CMaps.
pub fn check(doc: &mut Document, limits: &Limits) -> Result<StreamReport, ExtractError> {
    let mut total: u64 = 0;
    for (id, obj) in &doc.objects {
        let Object::Stream(stream) = obj else {
            continue;
        };
        let first = stream.filters().ok().and_then(|f| f.first().copied());
        if first != Some(b"FlateDecode".as_slice()) {
            continue;
        }
        let budget = limits
            .max_stream_bytes
            .min(limits.max_inflated_bytes.saturating_sub(total));
        let size = inflated_size(&stream.content, budget);
        if size > limits.max_stream_bytes {
            return Err(ExtractError::LimitExceeded(format!(
                "PDF object {} {} inflates to more than {} bytes (max_stream_bytes)",
                id.0, id.1, limits.max_stream_bytes
            )));
        }
        total = total.saturating_add(size);
        if total > limits.max_inflated_bytes {
            return Err(ExtractError::LimitExceeded(format!(
                "the PDF's streams inflate to more than {} bytes in all (max_inflated_bytes)",
                limits.max_inflated_bytes
            )));
        }
    }
    let mut report = StreamReport::default();
    for id in to_unicode_streams(doc) {
        let Some(Object::Stream(stream)) = doc.objects.get(&id) else {
            continue;
        };
        let text = match stream.filters().ok().and_then(|f| f.first().copied()) {
            None => stream.content.clone(),
            Some(b"FlateDecode") => inflate(&stream.content, MAX_CMAP_TEXT),
            Some(_) => continue,
        };
        if cmap_codes(&text) > limits.max_cmap_codes
            && let Some(Object::Stream(stream)) = doc.objects.get_mut(&id)
        {
            stream.set_plain_content(Vec::new());
            report.cmaps_dropped += 1;
        }
    }
    Ok(report)
}

/// Streams named by a `/ToUnicode` entry of any dictionary (fonts are dictionaries or streams' dictionaries).
fn to_unicode_streams(doc: &Document) -> HashSet<ObjectId> {
    let mut ids = HashSet::new();
    for obj in doc.objects.values() {
        let dict = match obj {
            Object::Dictionary(d) => d,
            Object::Stream(s) => &s.dict,
            _ => continue,
        };
        if let Ok(id) = dict.get(b"ToUnicode").and_then(Object::as_reference) {
            ids.insert(id);
        }
    }
    ids
}

/// Bytes `data` inflates to, counted up to `cap + 1` (more is not inflated). A broken stream counts what
/// inflated before the error.
fn inflated_size(data: &[u8], cap: u64) -> u64 {
    let mut decoder = ZlibDecoder::new(data).take(cap.saturating_add(1));
    std::io::copy(&mut decoder, &mut std::io::sink()).unwrap_or(0)
}

/// `data` inflated, at most `cap` bytes of it.
fn inflate(data: &[u8], cap: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = ZlibDecoder::new(data).take(cap).read_to_end(&mut out);
    out
}

/// Codes a CMap maps: the sizes of its `bfrange` ranges summed, plus one per `bfchar` entry pair.
pub fn cmap_codes(text: &[u8]) -> u64 {
    let mut total: u64 = 0;
    let mut rest = text;
    while let Some(start) = find(rest, b"beginbfrange") {
        rest = &rest[start + b"beginbfrange".len()..];
        let end = find(rest, b"endbfrange").unwrap_or(rest.len());
        total = total.saturating_add(range_codes(&rest[..end]));
        rest = &rest[end..];
    }
    total
}

/// The codes of the `<lo> <hi> <dst>` / `<lo> <hi> [...]` entries of one `bfrange` section.
fn range_codes(section: &[u8]) -> u64 {
    let mut total: u64 = 0;
    // Position in the current entry: 0 expects lo, 1 hi, 2 the destination.
    let mut position = 0;
    let mut lo: u64 = 0;
    let mut i = 0;
    while i < section.len() {
        match section[i] {
            b'<' => {
                let end = section[i..]
                    .iter()
                    .position(|&b| b == b'>')
                    .map_or(section.len(), |p| i + p);
                let value = hex_value(&section[i + 1..end]);
                match position {
                    0 => lo = value,
                    1 => total = total.saturating_add(value.saturating_sub(lo).saturating_add(1)),
                    _ => {}
                }
                position = (position + 1) % 3;
                i = end + 1;
            }
            b'[' => {
                let end = section[i..]
                    .iter()
                    .position(|&b| b == b']')
                    .map_or(section.len(), |p| i + p);
                position = 0;
                i = end + 1;
            }
            _ => i += 1,
        }
    }
    total
}

/// A hexadecimal code (whitespace ignored); saturates past 64 bits.
fn hex_value(digits: &[u8]) -> u64 {
    let mut value: u64 = 0;
    for &d in digits {
        let Some(v) = char::from(d).to_digit(16) else {
            continue;
        };
        value = value.saturating_mul(16).saturating_add(u64::from(v));
    }
    value
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmap_ranges_are_summed_and_huge_ones_saturate() {
        let cmap = b"1 begincodespacerange <0000> <FFFF> endcodespacerange\n\
            2 beginbfrange\n<0020> <007E> <0020>\n<0100> <0101> [<0041> <0042>]\nendbfrange\n\
            1 beginbfchar <0003> <0020> endbfchar";
        assert_eq!(cmap_codes(cmap), 95 + 2);
        let huge = b"1 beginbfrange <00000000> <FFFFFFFF> <0041> endbfrange";
        assert_eq!(cmap_codes(huge), 1 << 32);
        let absurd = b"1 beginbfrange <00> <FFFFFFFFFFFFFFFFFFFFFFFF> <0041> endbfrange";
        assert_eq!(cmap_codes(absurd), u64::MAX);
    }

    #[test]
    fn inflated_sizes_are_counted_up_to_the_cap() {
        use std::io::Write as _;
        let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&vec![b'A'; 10 * 1024 * 1024])
            .expect("compress");
        let bomb = enc.finish().expect("compress");
        assert!(bomb.len() < 64 * 1024);
        assert_eq!(inflated_size(&bomb, u64::MAX), 10 * 1024 * 1024);
        assert_eq!(inflated_size(&bomb, 1000), 1001);
        assert_eq!(inflate(&bomb, 10).len(), 10);
    }
}
