//! Checks run on an XLS file before calamine opens it, so a small crafted file cannot make calamine
//! allocate without bound.
//!
//! calamine 0.38 reads the whole workbook inside `Xls::new`, with no hook for limits, and three things in
//! it grow with what the file *declares* rather than with its size (cargo fuzz found all three, 5 KiB
//! inputs allocating more than 2 GiB):
//! - its compound-file (CFB) reader follows a sector chain until the declared stream length (the
//!   directory chain has none), so a FAT chain that loops grows a buffer forever;
//! - a sheet's `Dimensions` record reserves rows x columns cells up front;
//! - every sheet becomes a dense range spanning its first to its last cell (and one for its formulas).
//!
//! So the chains calamine will follow are walked here the same way, with a visited set, and the BIFF
//! records are scanned as calamine scans them, summing those sizes against `max_cells`. A loop is
//! [`ExtractError::Corrupt`]; too many cells is [`ExtractError::LimitExceeded`] (the same answer the
//! extractor gives later for a sheet that really is that large). Everything else calamine rejects, or
//! panics on, is left to it: its calls are under `catch_unwind` in [`super`]. The checks cost one pass
//! over the file.

use crate::extract::{ExtractError, Limits};

/// End of a sector chain.
const ENDOFCHAIN: u32 = 0xFFFF_FFFE;
/// Sector ids from here up are markers, not sectors.
const RESERVED_SECTORS: u32 = 0xFFFF_FFFA;
/// Marks a DIFAT sector in the FAT; FAT sector ids below it are real.
const DIFSECT: u32 = 0xFFFF_FFFC;
/// The fixed header of a compound file.
const HEADER_LEN: usize = 512;
/// Bytes of the DIFAT kept in the header.
const HEADER_DIFAT: std::ops::Range<usize> = 76..512;
/// A mini stream sector.
const MINI_SECTOR: usize = 64;
/// Streams shorter than this live in the mini stream.
const MINI_STREAM_CUTOFF: usize = 4096;
/// A directory entry.
const DIR_ENTRY: usize = 128;
/// The sheets together may make the scan read the Workbook stream this many times over (they are
/// disjoint in a real file, so once); more means sheets overlapping on purpose.
const MAX_SCAN_FACTOR: usize = 4;

/// BIFF record types calamine acts on (MS-XLS 2.4).
mod record {
    pub const BOF: u16 = 0x0809;
    pub const EOF: u16 = 0x000A;
    pub const CONTINUE: u16 = 0x003C;
    pub const FILE_PASS: u16 = 0x002F;
    pub const BOUND_SHEET: u16 = 0x0085;
    pub const DIMENSIONS: u16 = 0x0200;
    pub const FORMULA: u16 = 0x0006;
    pub const MUL_RK: u16 = 0x00BD;
    /// Cell records whose row and column are their first two `u16`s.
    pub const CELLS: [u16; 6] = [0x0203, 0x0204, 0x00D6, 0x0205, 0x027E, 0x00FD];
    /// A formula's string value, placed at the preceding formula's cell.
    pub const STRING: u16 = 0x0207;
}

/// Fails the file when calamine would follow a looping sector chain or allocate more than
/// `limits.max_cells` cells for it; `Ok` otherwise, including for files calamine will reject itself.
pub fn check(bytes: &[u8], limits: &Limits) -> Result<(), ExtractError> {
    let Some(stream) = workbook_stream(bytes)? else {
        return Ok(());
    };
    check_records(&stream, limits.max_cells)
}

fn corrupt(what: &str) -> ExtractError {
    ExtractError::Corrupt(format!("not a readable xls workbook: {what}"))
}

fn too_many_cells(max_cells: u64) -> ExtractError {
    ExtractError::LimitExceeded(format!("more than {max_cells} spreadsheet cells"))
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// The whole `u32`s of a sector (calamine asserts there is no remainder; a short last sector panics
/// there, which is caught).
fn u32s(b: &[u8]) -> impl Iterator<Item = u32> + '_ {
    b.chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
}

/// Sectors of one size laid out over some bytes, as calamine's `Sectors` sees them: sector `id` starts at
/// `id * size`, the last one may be short, and ids past `max_id` are errors.
struct Sectors<'a> {
    data: &'a [u8],
    size: usize,
    max_id: u32,
    /// Whether a sector not wholly inside `data` is an error: for the mini stream, where calamine would
    /// fill it from whatever the file reader reads next.
    whole: bool,
}

impl<'a> Sectors<'a> {
    fn get(&self, id: u32) -> Option<&'a [u8]> {
        if id > self.max_id {
            return None;
        }
        let start = (id as usize).saturating_mul(self.size).min(self.data.len());
        let end = start.saturating_add(self.size).min(self.data.len());
        Some(&self.data[start..end])
    }

    /// The chain from `id` through `fat` up to `len` bytes, as calamine's `get_chain` reads it; `Ok(None)`
    /// where calamine fails cleanly (a sector past the end), an error where it would loop.
    fn chain(&self, mut id: u32, fat: &[u32], len: usize) -> Result<Option<Vec<u8>>, ExtractError> {
        let mut out = Vec::new();
        let mut seen = vec![false; fat.len()];
        while id != ENDOFCHAIN {
            let Some(sector) = self.get(id) else {
                return Ok(None);
            };
            if self.whole && sector.len() < self.size.min(len - out.len()) {
                return Err(corrupt(
                    "a stream's mini sector lies outside the mini stream",
                ));
            }
            let take = sector.len().min(len - out.len());
            out.extend_from_slice(&sector[..take]);
            if out.len() >= len {
                break;
            }
            let Some(visited) = seen.get_mut(id as usize) else {
                // calamine indexes its FAT with the id and panics; that is caught.
                return Ok(None);
            };
            if *visited {
                return Err(corrupt("a sector chain loops"));
            }
            *visited = true;
            id = fat[id as usize];
        }
        Ok(Some(out))
    }
}

/// A directory entry's name, first sector and stream length.
struct Entry {
    name: String,
    start: u32,
    len: usize,
}

fn entry(buf: &[u8], large: bool) -> Option<Entry> {
    let units: Vec<u16> = buf[..64]
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    let mut name = String::from_utf16_lossy(&units);
    if let Some(nul) = name.find('\0') {
        name.truncate(nul);
    }
    let len = if large {
        usize::try_from(u64_at(buf, 120)?).ok()?
    } else {
        u32_at(buf, 120)? as usize
    };
    Some(Entry {
        name,
        start: u32_at(buf, 116)?,
        len,
    })
}

/// The Workbook (or Book) stream as calamine will read it; `Ok(None)` when calamine will fail on the
/// file before reading any sheet (not a compound file, a chain past the end, no such stream).
fn workbook_stream(bytes: &[u8]) -> Result<Option<Vec<u8>>, ExtractError> {
    let Some(header) = bytes.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let size = match u16_at(header, 30) {
        Some(0x0009) => 512,
        Some(0x000C) => 4096,
        _ => return Ok(None),
    };
    let (Some(dir_start), Some(mini_fat_start), Some(mini_fat_len), Some(difat_start)) = (
        u32_at(header, 48),
        u32_at(header, 60),
        u32_at(header, 64),
        u32_at(header, 68),
    ) else {
        return Ok(None);
    };
    let version = u16_at(header, 26).unwrap_or_default();
    let max_id = u32::try_from(bytes.len() / size).unwrap_or(u32::MAX);
    let sectors = Sectors {
        data: bytes.get(size..).unwrap_or_default(),
        size,
        max_id,
        whole: false,
    };

    // DIFAT: the header's part, then its own chain (calamine bounds that chain by the sector count).
    let mut difat: Vec<u32> = u32s(&header[HEADER_DIFAT]).collect();
    let mut id = difat_start;
    let mut difat_sectors = 0usize;
    while id < RESERVED_SECTORS {
        difat_sectors += 1;
        if difat_sectors > max_id as usize + 1 {
            return Ok(None);
        }
        let Some(sector) = sectors.get(id) else {
            return Ok(None);
        };
        difat.extend(u32s(sector));
        let Some(next) = difat.pop() else {
            return Ok(None);
        };
        id = next;
    }
    // Every FAT sector is a sector of the file: listing more (the same one over and over) would make
    // calamine's FAT larger than the file many times over.
    let fat_sectors: Vec<u32> = difat.into_iter().filter(|id| *id < DIFSECT).collect();
    if fat_sectors.len() > max_id as usize + 1 {
        return Err(corrupt("the FAT lists more sectors than the file has"));
    }
    let mut fat = Vec::new();
    for id in fat_sectors {
        let Some(sector) = sectors.get(id) else {
            return Ok(None);
        };
        fat.extend(u32s(sector));
    }

    let Some(dirs) = sectors.chain(dir_start, &fat, usize::MAX)? else {
        return Ok(None);
    };
    let entries: Vec<Entry> = dirs
        .chunks_exact(DIR_ENTRY)
        .filter_map(|c| entry(c, size == 4096))
        .collect();
    let Some(root) = entries.first() else {
        return Ok(None);
    };
    if version != 3 && root.start == ENDOFCHAIN {
        return Ok(None);
    }
    let (mini_fat, mini_stream) = if mini_fat_len > 0 {
        let Some(mini_stream) = sectors.chain(root.start, &fat, root.len)? else {
            return Ok(None);
        };
        let Some(mini_fat) = sectors.chain(mini_fat_start, &fat, mini_fat_len as usize * size)?
        else {
            return Ok(None);
        };
        (u32s(&mini_fat).collect::<Vec<u32>>(), mini_stream)
    } else {
        (Vec::new(), Vec::new())
    };

    // calamine reads "Workbook", and "Book" when that fails for any reason.
    let mini = Sectors {
        data: &mini_stream,
        size: MINI_SECTOR,
        // calamine allows eight mini sectors per sector of the file, wherever the mini stream ends.
        max_id: max_id.saturating_mul(8),
        whole: true,
    };
    for name in ["Workbook", "Book"] {
        let Some(book) = entries
            .iter()
            .find(|e| e.name.as_bytes().eq_ignore_ascii_case(name.as_bytes()))
        else {
            continue;
        };
        let stream = if book.len >= MINI_STREAM_CUTOFF {
            sectors.chain(book.start, &fat, book.len)?
        } else {
            mini.chain(book.start, &mini_fat, book.len)?
        };
        if stream.is_some() {
            return Ok(stream);
        }
    }
    Ok(None)
}

/// One BIFF record: its type and data (CONTINUE records that follow are skipped with it).
struct Record<'a> {
    typ: u16,
    data: &'a [u8],
}

/// The records of a stream from its start, as calamine's `RecordIter` splits them; stops at the first
/// malformed one (where calamine fails).
fn records(stream: &[u8]) -> impl Iterator<Item = Record<'_>> {
    let mut rest = stream;
    std::iter::from_fn(move || {
        let typ = u16_at(rest, 0)?;
        let len = u16_at(rest, 2)? as usize;
        let data = rest.get(4..4 + len)?;
        rest = &rest[4 + len..];
        while rest.len() > 4 && u16_at(rest, 0) == Some(record::CONTINUE) {
            let len = u16_at(rest, 2)? as usize;
            rest = rest.get(4 + len..)?;
        }
        Some(Record { typ, data })
    })
}

/// The smallest rectangle around some cells.
#[derive(Default)]
struct Extent(Option<(u32, u32, u32, u32)>);

impl Extent {
    fn add(&mut self, row: u32, col: u32) {
        self.0 = Some(match self.0 {
            None => (row, row, col, col),
            Some((r0, r1, c0, c1)) => (r0.min(row), r1.max(row), c0.min(col), c1.max(col)),
        });
    }

    /// The cells of calamine's dense range over it.
    fn cells(&self) -> u64 {
        self.0.map_or(0, |(r0, r1, c0, c1)| {
            u64::from(r1 - r0 + 1) * u64::from(c1 - c0 + 1)
        })
    }
}

/// The cells calamine reserves for a `Dimensions` record (with its wrapping arithmetic), or `None` when
/// calamine rejects the record.
fn declared_cells(data: &[u8]) -> Option<u64> {
    let (rf, rl, mut cf, cl) = match data.len() {
        10 => (
            u32::from(u16_at(data, 0)?),
            u32::from(u16_at(data, 2)?),
            u32::from(u16_at(data, 4)?),
            u32::from(u16_at(data, 6)?),
        ),
        14 | 16 => (
            u32_at(data, 0)?,
            u32_at(data, 4)?,
            u32::from(u16_at(data, 8)?),
            u32::from(u16_at(data, 10)?),
        ),
        _ => return None,
    };
    if 0xFF < cf || cl < cf {
        cf = 0;
    }
    if rl == 0 || cl == 0 {
        return Some(1);
    }
    let rows = (rl - 1).wrapping_sub(rf).wrapping_add(1);
    let cols = (cl - 1).wrapping_sub(cf).wrapping_add(1);
    Some(u64::from(rows).saturating_mul(u64::from(cols)))
}

/// Scans the globals for the sheets' offsets, then each sheet as calamine does, and fails when the cells
/// it would reserve or lay out exceed `max_cells`.
fn check_records(stream: &[u8], max_cells: u64) -> Result<(), ExtractError> {
    let mut positions = Vec::new();
    for r in records(stream) {
        match r.typ {
            record::FILE_PASS if u16_at(r.data, 0).is_some_and(|v| v != 0) => return Ok(()),
            record::BOUND_SHEET => match u32_at(r.data, 0) {
                Some(pos) => positions.push(pos as usize),
                None => return Ok(()),
            },
            record::EOF => break,
            _ => {}
        }
    }
    let budget = stream.len().saturating_mul(MAX_SCAN_FACTOR);
    let mut scanned = 0usize;
    let mut total: u64 = 0;
    for pos in positions {
        let Some(sheet) = stream.get(pos..) else {
            return Ok(()); // calamine panics slicing there (caught)
        };
        let (cells, formulas, read) = scan_sheet(sheet, max_cells)?;
        scanned = scanned.saturating_add(read);
        if scanned > budget {
            return Err(ExtractError::LimitExceeded(
                "the XLS sheets overlap (each is read again from the same records)".into(),
            ));
        }
        total = total.saturating_add(cells).saturating_add(formulas);
        if total > max_cells {
            return Err(too_many_cells(max_cells));
        }
    }
    Ok(())
}

/// One sheet from its BOF: the cells of its dense value and formula ranges and the bytes read.
fn scan_sheet(sheet: &[u8], max_cells: u64) -> Result<(u64, u64, usize), ExtractError> {
    let mut values = Extent::default();
    let mut formulas = Extent::default();
    let mut formula_at = (0, 0);
    let mut seen_bof = false;
    let mut depth = 0usize;
    let mut read = 0;
    for r in records(sheet) {
        read += 4 + r.data.len();
        if depth > 0 {
            match r.typ {
                record::BOF => depth += 1,
                record::EOF => depth -= 1,
                _ => {}
            }
            continue;
        }
        let at = || Some((u32::from(u16_at(r.data, 0)?), u32::from(u16_at(r.data, 2)?)));
        match r.typ {
            record::BOF if seen_bof => depth += 1,
            record::BOF => seen_bof = true,
            record::EOF => break,
            record::DIMENSIONS if declared_cells(r.data).is_some_and(|n| n > max_cells) => {
                return Err(too_many_cells(max_cells));
            }
            record::STRING => values.add(formula_at.0, formula_at.1),
            record::FORMULA => {
                if let Some((row, col)) = at() {
                    formula_at = (row, col);
                    values.add(row, col);
                    formulas.add(row, col);
                }
            }
            record::MUL_RK => {
                if let (Some((row, first)), Some(last)) =
                    (at(), u16_at(r.data, r.data.len().saturating_sub(2)))
                {
                    values.add(row, first);
                    values.add(row, u32::from(last).max(first));
                }
            }
            t if record::CELLS.contains(&t) => {
                if let Some((row, col)) = at() {
                    values.add(row, col);
                }
            }
            _ => {}
        }
    }
    Ok((values.cells(), formulas.cells(), read))
}

#[cfg(test)]
mod tests;
