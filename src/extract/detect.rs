//! File-type detection from magic bytes, with the extension only used to tell apart formats that share
//! a container (ZIP, OLE2, plain text) and to catch files whose extension contradicts their content.

use std::io::Cursor;

use crate::types::Category;

/// A supported file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Pdf,
    Docx,
    Pptx,
    Odt,
    Xlsx,
    Xls,
    Xlsb,
    Ods,
    Csv,
    Tsv,
    Text,
    Markdown,
    Json,
    Html,
    Xml,
    /// Source code; the payload is the language name (`python`, `rust`, ...).
    Code(&'static str),
    Png,
    Jpeg,
    Gif,
    Bmp,
    Webp,
    Tiff,
    Mp3,
    Wav,
    M4a,
    Aac,
    Ogg,
    Flac,
}

/// Why an upload was refused at detection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DetectError {
    #[error("the file is empty")]
    Empty,
    #[error("unsupported file type: detected {detected}")]
    Unsupported { detected: String },
    #[error("the extension .{extension} does not match the content, which is {detected}")]
    Mismatch { extension: String, detected: String },
}

/// Extension -> format for everything recognised by name. Code languages share [`Format::Code`].
const BY_EXTENSION: &[(&str, Format)] = &[
    ("pdf", Format::Pdf),
    ("docx", Format::Docx),
    ("pptx", Format::Pptx),
    ("odt", Format::Odt),
    ("xlsx", Format::Xlsx),
    ("xlsm", Format::Xlsx),
    ("xls", Format::Xls),
    ("xlsb", Format::Xlsb),
    ("ods", Format::Ods),
    ("csv", Format::Csv),
    ("tsv", Format::Tsv),
    ("tab", Format::Tsv),
    ("txt", Format::Text),
    ("text", Format::Text),
    ("log", Format::Text),
    ("md", Format::Markdown),
    ("markdown", Format::Markdown),
    ("json", Format::Json),
    ("html", Format::Html),
    ("htm", Format::Html),
    ("xml", Format::Xml),
    ("py", Format::Code("python")),
    ("js", Format::Code("javascript")),
    ("mjs", Format::Code("javascript")),
    ("ts", Format::Code("typescript")),
    ("rs", Format::Code("rust")),
    ("go", Format::Code("go")),
    ("java", Format::Code("java")),
    ("c", Format::Code("c")),
    ("h", Format::Code("c")),
    ("cpp", Format::Code("cpp")),
    ("cc", Format::Code("cpp")),
    ("hpp", Format::Code("cpp")),
    ("css", Format::Code("css")),
    ("sh", Format::Code("shell")),
    ("bash", Format::Code("shell")),
    ("sql", Format::Code("sql")),
    ("yaml", Format::Code("yaml")),
    ("yml", Format::Code("yaml")),
    ("toml", Format::Code("toml")),
    ("png", Format::Png),
    ("jpg", Format::Jpeg),
    ("jpeg", Format::Jpeg),
    ("gif", Format::Gif),
    ("bmp", Format::Bmp),
    ("webp", Format::Webp),
    ("tif", Format::Tiff),
    ("tiff", Format::Tiff),
    ("mp3", Format::Mp3),
    ("wav", Format::Wav),
    ("m4a", Format::M4a),
    ("mp4", Format::M4a),
    ("aac", Format::Aac),
    ("ogg", Format::Ogg),
    ("oga", Format::Ogg),
    ("flac", Format::Flac),
];

/// Every distinct format, for listing and round-tripping names.
const ALL: &[Format] = &[
    Format::Pdf,
    Format::Docx,
    Format::Pptx,
    Format::Odt,
    Format::Xlsx,
    Format::Xls,
    Format::Xlsb,
    Format::Ods,
    Format::Csv,
    Format::Tsv,
    Format::Text,
    Format::Markdown,
    Format::Json,
    Format::Html,
    Format::Xml,
    Format::Png,
    Format::Jpeg,
    Format::Gif,
    Format::Bmp,
    Format::Webp,
    Format::Tiff,
    Format::Mp3,
    Format::Wav,
    Format::M4a,
    Format::Aac,
    Format::Ogg,
    Format::Flac,
];

impl Format {
    /// A short stable name: `pdf`, `docx`, ..., or the language for code (`python`).
    pub fn name(self) -> &'static str {
        match self {
            Format::Pdf => "pdf",
            Format::Docx => "docx",
            Format::Pptx => "pptx",
            Format::Odt => "odt",
            Format::Xlsx => "xlsx",
            Format::Xls => "xls",
            Format::Xlsb => "xlsb",
            Format::Ods => "ods",
            Format::Csv => "csv",
            Format::Tsv => "tsv",
            Format::Text => "text",
            Format::Markdown => "markdown",
            Format::Json => "json",
            Format::Html => "html",
            Format::Xml => "xml",
            Format::Code(lang) => lang,
            Format::Png => "png",
            Format::Jpeg => "jpeg",
            Format::Gif => "gif",
            Format::Bmp => "bmp",
            Format::Webp => "webp",
            Format::Tiff => "tiff",
            Format::Mp3 => "mp3",
            Format::Wav => "wav",
            Format::M4a => "m4a",
            Format::Aac => "aac",
            Format::Ogg => "ogg",
            Format::Flac => "flac",
        }
    }

    /// Parses a name produced by [`Format::name`].
    pub fn parse(name: &str) -> Option<Format> {
        ALL.iter()
            .copied()
            .chain(BY_EXTENSION.iter().map(|(_, f)| *f))
            .find(|f| f.name() == name)
    }

    /// The MIME type reported to clients.
    pub fn mime(self) -> &'static str {
        match self {
            Format::Pdf => "application/pdf",
            Format::Docx => {
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
            }
            Format::Pptx => {
                "application/vnd.openxmlformats-officedocument.presentationml.presentation"
            }
            Format::Odt => "application/vnd.oasis.opendocument.text",
            Format::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            Format::Xls => "application/vnd.ms-excel",
            Format::Xlsb => "application/vnd.ms-excel.sheet.binary.macroEnabled.12",
            Format::Ods => "application/vnd.oasis.opendocument.spreadsheet",
            Format::Csv => "text/csv",
            Format::Tsv => "text/tab-separated-values",
            Format::Text => "text/plain",
            Format::Markdown => "text/markdown",
            Format::Json => "application/json",
            Format::Html => "text/html",
            Format::Xml => "application/xml",
            Format::Code("python") => "text/x-python",
            Format::Code("javascript") => "text/javascript",
            Format::Code("css") => "text/css",
            Format::Code("shell") => "application/x-sh",
            Format::Code("sql") => "application/sql",
            Format::Code("yaml") => "application/yaml",
            Format::Code("toml") => "application/toml",
            Format::Code(_) => "text/plain",
            Format::Png => "image/png",
            Format::Jpeg => "image/jpeg",
            Format::Gif => "image/gif",
            Format::Bmp => "image/bmp",
            Format::Webp => "image/webp",
            Format::Tiff => "image/tiff",
            Format::Mp3 => "audio/mpeg",
            Format::Wav => "audio/wav",
            Format::M4a => "audio/mp4",
            Format::Aac => "audio/aac",
            Format::Ogg => "audio/ogg",
            Format::Flac => "audio/flac",
        }
    }

    /// The category, which selects the pipeline.
    pub fn category(self) -> Category {
        use Format as F;
        match self {
            F::Pdf => Category::Pdf,
            F::Docx | F::Pptx | F::Odt => Category::Office,
            F::Xlsx | F::Xls | F::Xlsb | F::Ods | F::Csv | F::Tsv => Category::Sheet,
            F::Text | F::Markdown | F::Json | F::Html | F::Xml | F::Code(_) => Category::Text,
            F::Png | F::Jpeg | F::Gif | F::Bmp | F::Webp | F::Tiff => Category::Image,
            F::Mp3 | F::Wav | F::M4a | F::Aac | F::Ogg | F::Flac => Category::Audio,
        }
    }

    /// True for formats read as (encoded) text.
    pub fn is_text_like(self) -> bool {
        matches!(self.category(), Category::Text) || matches!(self, Format::Csv | Format::Tsv)
    }
}

fn extension_of(filename: &str) -> Option<String> {
    let (stem, ext) = filename.rsplit_once('.')?;
    (!stem.is_empty() && !ext.is_empty() && ext.len() <= 10).then(|| ext.to_ascii_lowercase())
}

/// Detects the format of `bytes`, named `filename` by the client.
pub fn detect(bytes: &[u8], filename: &str) -> Result<Format, DetectError> {
    if bytes.is_empty() {
        return Err(DetectError::Empty);
    }
    let ext = extension_of(filename);
    let by_ext = ext
        .as_deref()
        .and_then(|e| BY_EXTENSION.iter().find(|(x, _)| *x == e).map(|(_, f)| *f));
    let sniffed = sniff_binary(bytes, by_ext)?;
    let detected = match sniffed {
        Some(format) => format,
        None => sniff_text(bytes, by_ext)?,
    };
    match (by_ext, ext) {
        (Some(claimed), Some(ext)) if !compatible(claimed, detected) => {
            Err(DetectError::Mismatch {
                extension: ext,
                detected: describe(detected),
            })
        }
        _ => Ok(detected),
    }
}

fn describe(format: Format) -> String {
    format!("{} ({})", format.name(), format.mime())
}

/// Whether a file claiming `claimed` by extension may hold `detected` content.
fn compatible(claimed: Format, detected: Format) -> bool {
    if claimed == detected {
        return true;
    }
    // Every text-like extension may hold any text (a .txt with JSON in it, a .log with HTML in it).
    if claimed.is_text_like() && detected.is_text_like() {
        return true;
    }
    // MP4 audio and raw AAC are one family for users.
    matches!(
        (claimed, detected),
        (Format::Aac, Format::M4a) | (Format::M4a, Format::Aac)
    )
}

/// Identifies binary formats by magic bytes; `Ok(None)` means "no binary signature, try text".
fn sniff_binary(bytes: &[u8], by_ext: Option<Format>) -> Result<Option<Format>, DetectError> {
    // A UTF-16 byte-order mark also looks like an MPEG frame sync: text wins.
    if bytes.starts_with(&[0xFF, 0xFE]) || bytes.starts_with(&[0xFE, 0xFF]) {
        return Ok(None);
    }
    let Some(kind) = infer::get(bytes) else {
        return Ok(sniff_audio_frames(bytes));
    };
    let format = match kind.mime_type() {
        "application/pdf" => Format::Pdf,
        "image/png" => Format::Png,
        "image/jpeg" => Format::Jpeg,
        "image/gif" => Format::Gif,
        "image/bmp" => Format::Bmp,
        "image/webp" => Format::Webp,
        "image/tiff" => Format::Tiff,
        "audio/mpeg" => Format::Mp3,
        "audio/x-wav" | "audio/wav" => Format::Wav,
        "audio/ogg" | "audio/opus" => Format::Ogg,
        "audio/x-flac" | "audio/flac" => Format::Flac,
        "audio/aac" => Format::Aac,
        "audio/m4a" | "audio/mp4" | "video/mp4" | "audio/x-m4a" => Format::M4a,
        "application/x-ole-storage" | "application/vnd.ms-excel" | "application/msword" => {
            return sniff_ole(bytes, by_ext).map(Some);
        }
        ZIP_MIME
        | "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
        | "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        | "application/vnd.openxmlformats-officedocument.presentationml.presentation"
        | "application/vnd.oasis.opendocument.text"
        | "application/vnd.oasis.opendocument.spreadsheet"
        | "application/vnd.oasis.opendocument.presentation" => {
            return sniff_zip(bytes, by_ext).map(Some);
        }
        mime if mime.starts_with("text/") || mime == "application/x-shellscript" => {
            return Ok(None);
        }
        other => {
            return Err(DetectError::Unsupported {
                detected: other.to_owned(),
            });
        }
    };
    Ok(Some(format))
}

/// MP3 files without an ID3 tag start with an MPEG frame sync; infer misses some of them.
fn sniff_audio_frames(bytes: &[u8]) -> Option<Format> {
    match bytes {
        [0xFF, b, ..] if b & 0xE0 == 0xE0 && b & 0x06 != 0 => Some(Format::Mp3),
        [0xFF, b, ..] if b & 0xF6 == 0xF0 => Some(Format::Aac),
        _ => None,
    }
}

/// Tells the ZIP-based office formats apart by their members (without inflating anything). A damaged
/// archive named as a ZIP-based format is passed on as that format, so its extractor fails it as corrupt.
fn sniff_zip(bytes: &[u8], by_ext: Option<Format>) -> Result<Format, DetectError> {
    let Ok(archive) = zip::ZipArchive::new(Cursor::new(bytes)) else {
        return match by_ext {
            Some(
                f @ (Format::Docx
                | Format::Pptx
                | Format::Odt
                | Format::Xlsx
                | Format::Xlsb
                | Format::Ods),
            ) => Ok(f),
            _ => Err(DetectError::Unsupported {
                detected: "a damaged ZIP archive".to_owned(),
            }),
        };
    };
    zip_format(&archive, bytes)
}

/// The ZIP-based document format of an opened archive, told by its members; `head` is the start of the
/// file (OpenDocument's MIME type is its first, stored member). A plain archive is unsupported as
/// `application/zip`.
pub fn zip_format<R: std::io::Read + std::io::Seek>(
    archive: &zip::ZipArchive<R>,
    head: &[u8],
) -> Result<Format, DetectError> {
    let has = |name: &str| archive.index_for_name(name).is_some();
    if has("word/document.xml") {
        return Ok(Format::Docx);
    }
    if has("xl/workbook.xml") {
        return Ok(Format::Xlsx);
    }
    if has("xl/workbook.bin") {
        return Ok(Format::Xlsb);
    }
    if has("ppt/presentation.xml") {
        return Ok(Format::Pptx);
    }
    let odf_mime = head
        .get(30..)
        .filter(|rest| rest.starts_with(b"mimetype"))
        .and_then(|rest| rest.get(8..))
        .map(|rest| String::from_utf8_lossy(&rest[..rest.len().min(60)]).into_owned())
        .unwrap_or_default();
    if odf_mime.starts_with("application/vnd.oasis.opendocument.text") {
        return Ok(Format::Odt);
    }
    if odf_mime.starts_with("application/vnd.oasis.opendocument.spreadsheet") {
        return Ok(Format::Ods);
    }
    let detected = if odf_mime.starts_with("application/vnd.oasis.opendocument.") {
        odf_mime
            .split(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '/' | '-')))
            .next()
            .unwrap_or_default()
            .to_owned()
    } else {
        ZIP_MIME.to_owned()
    };
    Err(DetectError::Unsupported { detected })
}

/// What a plain ZIP archive is detected as.
pub const ZIP_MIME: &str = "application/zip";

/// Archive and compression formats: none is a document, and a folder sent as a ZIP may not nest them.
const ARCHIVE_MIMES: &[&str] = &[
    ZIP_MIME,
    "application/x-tar",
    "application/gzip",
    "application/x-bzip2",
    "application/x-xz",
    "application/zstd",
    "application/x-7z-compressed",
    "application/vnd.rar",
    "application/x-rar-compressed",
    "application/x-compress",
    "application/x-lzip",
    "application/x-cpio",
    "application/x-ar",
];

/// True when `bytes` are an archive or compressed stream (a plain ZIP, tar, gzip, 7z, RAR, ...), not a
/// document. A ZIP-based document (DOCX, XLSX, ...) is not an archive here.
pub fn is_archive(bytes: &[u8]) -> bool {
    match infer::get(bytes).map(|k| k.mime_type()) {
        Some(ZIP_MIME) => matches!(
            detect(bytes, ""),
            Err(DetectError::Unsupported { detected }) if detected == ZIP_MIME
        ),
        Some(mime) => ARCHIVE_MIMES.contains(&mime),
        None => false,
    }
}

/// OLE2 compound files: legacy Excel workbooks are supported; an encrypted OOXML file is also an OLE2
/// container and is passed on under its claimed format so its extractor reports `password_protected`.
fn sniff_ole(bytes: &[u8], by_ext: Option<Format>) -> Result<Format, DetectError> {
    match by_ext {
        Some(f @ (Format::Xls | Format::Xlsx | Format::Xlsb | Format::Docx | Format::Pptx)) => {
            Ok(f)
        }
        _ if contains(bytes, &utf16("Workbook")) || contains(bytes, &utf16("Book")) => {
            Ok(Format::Xls)
        }
        _ => Err(DetectError::Unsupported {
            detected: "a legacy OLE2 document (.doc/.ppt are not supported; save as .docx/.pptx)"
                .to_owned(),
        }),
    }
}

fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Bytes without a binary signature: text if they decode as text, by extension or by content.
fn sniff_text(bytes: &[u8], by_ext: Option<Format>) -> Result<Format, DetectError> {
    if !looks_like_text(bytes) {
        return Err(DetectError::Unsupported {
            detected: "binary data (application/octet-stream)".to_owned(),
        });
    }
    if let Some(f) = by_ext.filter(|f| f.is_text_like()) {
        return Ok(f);
    }
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).to_ascii_lowercase();
    let head = head.trim_start_matches('\u{feff}').trim_start();
    Ok(
        if head.starts_with("<!doctype html") || head.starts_with("<html") {
            Format::Html
        } else if head.starts_with("<?xml") {
            Format::Xml
        } else if (head.starts_with('{') || head.starts_with('['))
            && serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok()
        {
            Format::Json
        } else {
            Format::Text
        },
    )
}

/// UTF-16 with a BOM, or bytes without NULs and with few control characters.
fn looks_like_text(bytes: &[u8]) -> bool {
    if bytes.starts_with(&[0xFF, 0xFE]) || bytes.starts_with(&[0xFE, 0xFF]) {
        return true;
    }
    let sample = &bytes[..bytes.len().min(8192)];
    let controls = sample
        .iter()
        .filter(|&&b| b < 0x20 && !matches!(b, b'\n' | b'\r' | b'\t' | 0x0C | 0x1B))
        .count();
    !sample.contains(&0) && controls * 100 <= sample.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_is_refused() {
        assert_eq!(detect(b"", "a.txt"), Err(DetectError::Empty));
    }

    #[test]
    fn text_by_extension_and_content() {
        assert_eq!(detect(b"hello", "a.txt"), Ok(Format::Text));
        assert_eq!(detect(b"# Title", "a.md"), Ok(Format::Markdown));
        assert_eq!(detect(b"fn main() {}", "main.rs"), Ok(Format::Code("rust")));
        assert_eq!(detect(b"{\"a\": 1}", "noext"), Ok(Format::Json));
        assert_eq!(detect(b"<!DOCTYPE html><p>x</p>", "page"), Ok(Format::Html));
        assert_eq!(detect(b"a,b\n1,2\n", "t.csv"), Ok(Format::Csv));
    }

    #[test]
    fn extension_contradicting_magic_is_a_mismatch() {
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
        assert_eq!(
            detect(png, "report.pdf"),
            Err(DetectError::Mismatch {
                extension: "pdf".into(),
                detected: "png (image/png)".into()
            })
        );
        assert!(matches!(
            detect(b"plain words", "x.pdf"),
            Err(DetectError::Mismatch { .. })
        ));
    }

    #[test]
    fn binary_garbage_is_unsupported() {
        assert!(matches!(
            detect(&[0u8, 1, 2, 3, 0, 0, 9], "x.bin"),
            Err(DetectError::Unsupported { .. })
        ));
        assert!(matches!(
            detect(b"MZ\x90\0\x03\0\0\0\x04\0\0\0", "x.exe"),
            Err(DetectError::Unsupported { .. })
        ));
    }

    #[test]
    fn utf16_text_is_not_mistaken_for_mp3() {
        let utf16: Vec<u8> = [0xFF, 0xFE]
            .into_iter()
            .chain("a,b\n".encode_utf16().flat_map(u16::to_le_bytes))
            .collect();
        assert_eq!(detect(&utf16, "t.csv"), Ok(Format::Csv));
        assert_eq!(detect(&utf16, "t.txt"), Ok(Format::Text));
    }

    #[test]
    fn a_damaged_office_file_is_passed_on_to_fail_as_corrupt() {
        assert_eq!(
            detect(b"PK\x03\x04 truncated", "book.xlsx"),
            Ok(Format::Xlsx)
        );
        assert!(matches!(
            detect(b"PK\x03\x04 truncated", "a.zip"),
            Err(DetectError::Unsupported { .. })
        ));
    }

    #[test]
    fn names_round_trip() {
        for (_, f) in BY_EXTENSION {
            assert_eq!(Format::parse(f.name()), Some(*f), "{f:?}");
        }
    }
}
