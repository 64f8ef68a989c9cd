//! The vector index's single-file format, written atomically (temp file, fsync, rename).
//!
//! Layout, all integers little-endian:
//! ```text
//! MAGIC (8 bytes) | header length u64 | header JSON (VectorFileHeader)
//!                 | entries length u64 | entries JSON ([(key, ChunkMeta)])
//!                 | usearch length u64 | usearch serialized index
//! ```
//! The header comes first and is small, so a model or dimension mismatch is reported without
//! reading the rest. One file, not a file per part, so a crash can never pair an index with the
//! wrong key map.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::index::ChunkMeta;

/// Identifies a docpipe vector index file.
const MAGIC: &[u8; 8] = b"DPVECIX1";
/// Version of the layout above; bump on any incompatible change.
pub const FORMAT_VERSION: u32 = 1;
/// Refuse sections larger than this (a corrupt length would otherwise allocate without bound).
const MAX_SECTION_BYTES: u64 = 64 << 30;

/// What built the index: checked against the caller's expectation on open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VectorFileHeader {
    /// Layout version ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// Name of the embedding model whose vectors the index holds.
    pub model: String,
    /// Vector dimensions.
    pub dims: usize,
    /// HNSW connectivity the graph was built with.
    pub connectivity: usize,
    /// HNSW expansion at insertion the graph was built with.
    pub expansion_add: usize,
    /// Next key to assign (keys are never reused).
    pub next_key: u64,
    /// Number of vectors, to cross-check the sections.
    pub count: usize,
}

/// The temp file a save writes before renaming it over `path`.
fn temp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn write_section(w: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    w.write_all(&(bytes.len() as u64).to_le_bytes())?;
    w.write_all(bytes)
}

fn read_section(r: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 8];
    r.read_exact(&mut len)?;
    let len = u64::from_le_bytes(len);
    if len > MAX_SECTION_BYTES {
        return Err(invalid(format!("section of {len} bytes is implausible")));
    }
    let len = usize::try_from(len).map_err(|_| invalid("section too large for this platform"))?;
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf)?;
    Ok(buf)
}

/// Writes the whole index to `path` atomically: a reader sees the old file or the new one.
/// `entries_json` is the JSON of the `[(key, ChunkMeta)]` key map.
pub fn write(
    path: &Path,
    header: &VectorFileHeader,
    entries_json: &[u8],
    index_bytes: &[u8],
) -> io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent)?;
    }
    let tmp = temp_path(path);
    let file = File::create(&tmp)?;
    let mut w = BufWriter::new(file);
    w.write_all(MAGIC)?;
    write_section(&mut w, &serde_json::to_vec(header)?)?;
    write_section(&mut w, entries_json)?;
    write_section(&mut w, index_bytes)?;
    let file = w.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, path)?;
    // Make the rename itself durable.
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        File::open(parent)?.sync_all()?;
    }
    Ok(())
}

fn open_checked(path: &Path) -> io::Result<BufReader<File>> {
    let mut r = BufReader::new(File::open(path)?);
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic)?;
    if &magic != MAGIC {
        return Err(invalid("not a docpipe vector index file"));
    }
    Ok(r)
}

/// Reads only the header.
pub fn read_header(path: &Path) -> io::Result<VectorFileHeader> {
    let mut r = open_checked(path)?;
    Ok(serde_json::from_slice(&read_section(&mut r)?)?)
}

/// Everything in a vector index file.
pub struct VectorFileContents {
    /// The header.
    pub header: VectorFileHeader,
    /// Key and metadata of every vector.
    pub entries: Vec<(u64, ChunkMeta)>,
    /// The serialized usearch index.
    pub index_bytes: Vec<u8>,
}

/// Reads the whole file and cross-checks its sections.
pub fn read(path: &Path) -> io::Result<VectorFileContents> {
    let mut r = open_checked(path)?;
    let header: VectorFileHeader = serde_json::from_slice(&read_section(&mut r)?)?;
    if header.format_version != FORMAT_VERSION {
        return Err(invalid(format!(
            "format version {} is not supported (expected {FORMAT_VERSION})",
            header.format_version
        )));
    }
    let entries: Vec<(u64, ChunkMeta)> = serde_json::from_slice(&read_section(&mut r)?)?;
    if entries.len() != header.count {
        return Err(invalid(format!(
            "header says {} vectors, key map has {}",
            header.count,
            entries.len()
        )));
    }
    let index_bytes = read_section(&mut r)?;
    Ok(VectorFileContents {
        header,
        entries,
        index_bytes,
    })
}

/// Removes a temp file left by a save that crashed.
pub fn remove_stale_temp(path: &Path) {
    let _ = fs::remove_file(temp_path(path));
}
