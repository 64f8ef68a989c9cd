//! The guard on python-calamine's `calamine_base.xls`, whole and with one structure made hostile.

use super::*;

const BASE: &[u8] = include_bytes!("../../../../fixtures/sheet/calamine_base.xls");
/// Sector size of `BASE`; its FAT is sector 0, its directory chain is sectors 1 then 38.
const SECTOR: usize = 512;

fn limits() -> Limits {
    Limits::default()
}

/// `BASE` with `patch` written at `at`.
fn patched(at: usize, patch: &[u8]) -> Vec<u8> {
    let mut bytes = BASE.to_vec();
    bytes[at..at + patch.len()].copy_from_slice(patch);
    bytes
}

/// Offset in `BASE` of the first record of type `typ` and data length `len`.
fn record_at(typ: u16, len: u16) -> usize {
    let mut head = typ.to_le_bytes().to_vec();
    head.extend(len.to_le_bytes());
    BASE.windows(4)
        .position(|w| w == head.as_slice())
        .expect("the record is in the fixture")
}

/// The FAT entry of `sector` in `BASE`.
fn fat_entry(sector: usize) -> usize {
    SECTOR + 4 * sector
}

#[test]
fn a_real_workbook_passes() {
    check(BASE, &limits()).expect("calamine_base.xls is fine");
    // Not a compound file, or cut short: left to calamine, which reports it.
    check(b"not an xls", &limits()).expect("left to calamine");
    check(&BASE[..BASE.len() / 2], &limits()).expect("left to calamine");
}

#[test]
fn a_looping_directory_chain_is_corrupt() {
    // Directory chain 1 -> 38 -> 1: calamine reads directories until the chain ends, so never.
    let bytes = patched(fat_entry(38), &1u32.to_le_bytes());
    let err = check(&bytes, &limits()).expect_err("loops");
    assert_eq!(err.code(), "corrupt_file");
    assert_eq!(
        err.to_string(),
        "the file is corrupt or truncated: not a readable xls workbook: a sector chain loops"
    );
}

#[test]
fn a_looping_workbook_chain_is_corrupt() {
    // The Workbook stream (sectors 4, 5, ...) loops back to its start after two sectors.
    let bytes = patched(fat_entry(5), &4u32.to_le_bytes());
    let err = check(&bytes, &limits()).expect_err("loops");
    assert_eq!(err.code(), "corrupt_file");
}

#[test]
fn a_fat_listing_one_sector_many_times_is_corrupt() {
    // 109 header DIFAT entries all naming sector 0, in a file of 41 sectors.
    let bytes = patched(76, &[0u8; 436]);
    let err = check(&bytes, &limits()).expect_err("too many FAT sectors");
    assert_eq!(
        err.to_string(),
        "the file is corrupt or truncated: not a readable xls workbook: the FAT lists more sectors \
         than the file has"
    );
}

#[test]
fn a_huge_declared_dimension_is_over_the_cell_limit() {
    // The first sheet's Dimensions (BIFF8: rows as u32) claims 16 million rows of its columns.
    let at = record_at(0x0200, 14) + 4;
    let bytes = patched(at, &[0, 0, 0, 0, 0, 0, 0, 1]);
    let err = check(&bytes, &limits()).expect_err("declared too large");
    assert_eq!(
        err.to_string(),
        "limit exceeded: more than 5000000 spreadsheet cells"
    );
    // A first row past the last wraps around in calamine's arithmetic: as large.
    let bytes = patched(at, &[9, 0, 0, 0, 1, 0, 0, 0]);
    assert_eq!(
        check(&bytes, &limits()).expect_err("wraps").code(),
        "limit_exceeded"
    );
}

#[test]
fn cells_far_apart_are_over_the_cell_limit() {
    // A LabelSst cell moved to row 65536, column 256: the dense range spans 16.7 million cells.
    let at = record_at(0x00FD, 10) + 4;
    let bytes = patched(at, &[0xFF, 0xFF, 0xFF, 0x00]);
    let err = check(&bytes, &limits()).expect_err("too sparse");
    assert_eq!(err.code(), "limit_exceeded");
    // Within a raised limit it is left to calamine.
    let roomy = Limits {
        max_cells: 20_000_000,
        ..Limits::default()
    };
    check(&bytes, &roomy).expect("within the limit");
}

#[test]
fn declared_cells_follow_calamine() {
    // BIFF8: rows 0..10 (last + 1), columns 0..4.
    let mut d = Vec::new();
    for v in [0u32, 10] {
        d.extend(v.to_le_bytes());
    }
    d.extend([0, 0, 4, 0, 0, 0]);
    assert_eq!(declared_cells(&d), Some(40));
    // Empty sheet (last row 0): one cell.
    assert_eq!(declared_cells(&[0; 14]), Some(1));
    // A length calamine rejects.
    assert_eq!(declared_cells(&[0; 12]), None);
}
