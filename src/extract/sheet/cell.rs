//! How one spreadsheet cell is rendered as text: integers without `.0`, floats in their shortest form,
//! `TRUE`/`FALSE`, dates and date-times in ISO 8601 (`2010-10-10`, `2010-10-10T10:10:10`), times of day as
//! `10:10:10`, durations as `H:MM:SS` with hours past 24 (`255:10:10`), milliseconds as `.mmm` only when not zero,
//! and error values as Excel shows them (`#DIV/0!`).

use calamine::{Data, ExcelDateTime};

/// Milliseconds in a day, for Excel serial date fractions.
const MS_PER_DAY: f64 = 86_400_000.0;
const MS_PER_HOUR: u64 = 3_600_000;
const MS_PER_MINUTE: u64 = 60_000;
const MS_PER_SECOND: u64 = 1_000;
/// Floats with an integral value below this are shown without a fraction (f64 is exact up to 2^53).
const MAX_EXACT_INTEGER: f64 = 9_007_199_254_740_992.0;

/// Renders one cell; empty cells are the empty string.
pub fn render(cell: &Data) -> String {
    match cell {
        Data::Empty => String::new(),
        Data::Int(i) => i.to_string(),
        Data::Float(f) => render_float(*f),
        Data::String(s) => s.trim().to_owned(),
        Data::Bool(true) => "TRUE".to_owned(),
        Data::Bool(false) => "FALSE".to_owned(),
        Data::DateTime(dt) => render_datetime(dt),
        Data::DateTimeIso(s) => s.clone(),
        Data::DurationIso(s) => parse_iso_duration_ms(s).map_or_else(|| s.clone(), hms),
        Data::Error(e) => e.to_string(),
    }
}

fn render_float(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < MAX_EXACT_INTEGER {
        // Exact: the value is integral and within f64's exact integer range.
        format!("{}", f as i64)
    } else {
        f.to_string()
    }
}

fn render_datetime(dt: &ExcelDateTime) -> String {
    let serial = dt.as_f64();
    if dt.is_duration() {
        return hms(days_to_ms(serial));
    }
    if (0.0..1.0).contains(&serial) {
        // A time of day with no date part.
        return hms(days_to_ms(serial));
    }
    let (y, mo, d, h, mi, s, ms) = dt.to_ymd_hms_milli();
    let date = format!("{y:04}-{mo:02}-{d:02}");
    if (h, mi, s, ms) == (0, 0, 0, 0) {
        return date;
    }
    let millis = if ms == 0 {
        String::new()
    } else {
        format!(".{ms:03}")
    };
    format!("{date}T{h:02}:{mi:02}:{s:02}{millis}")
}

fn days_to_ms(days: f64) -> u64 {
    // Negative or non-finite serials are not valid times; show them as zero rather than wrap around.
    let ms = (days * MS_PER_DAY).round();
    if ms.is_finite() && ms > 0.0 {
        ms as u64
    } else {
        0
    }
}

/// `H:MM:SS`, with `.mmm` when there are milliseconds; hours are not wrapped at 24.
fn hms(total_ms: u64) -> String {
    let h = total_ms / MS_PER_HOUR;
    let m = total_ms % MS_PER_HOUR / MS_PER_MINUTE;
    let s = total_ms % MS_PER_MINUTE / MS_PER_SECOND;
    let ms = total_ms % MS_PER_SECOND;
    if ms == 0 {
        format!("{h:02}:{m:02}:{s:02}")
    } else {
        format!("{h:02}:{m:02}:{s:02}.{ms:03}")
    }
}

/// Parses an ISO 8601 duration of the form `PnDTnHnMn.nS` (what ODS stores) into milliseconds.
fn parse_iso_duration_ms(s: &str) -> Option<u64> {
    let rest = s.strip_prefix("PT").or_else(|| s.strip_prefix('P'))?;
    let mut total = 0.0f64;
    let mut number = String::new();
    for c in rest.chars() {
        match c {
            '0'..='9' | '.' => number.push(c),
            'T' if number.is_empty() => {}
            'D' | 'H' | 'M' | 'S' => {
                let value: f64 = number.parse().ok()?;
                number.clear();
                let unit_ms = match c {
                    'D' => MS_PER_DAY,
                    'H' => MS_PER_HOUR as f64,
                    'M' => MS_PER_MINUTE as f64,
                    _ => MS_PER_SECOND as f64,
                };
                total += value * unit_ms;
            }
            _ => return None,
        }
    }
    (number.is_empty() && total.is_finite()).then(|| total.round() as u64)
}

#[cfg(test)]
mod tests {
    use calamine::{CellErrorType, ExcelDateTimeType};

    use super::*;

    #[test]
    fn numbers_and_booleans() {
        assert_eq!(render(&Data::Float(1.0)), "1");
        assert_eq!(render(&Data::Float(1.1)), "1.1");
        // As stored in calamine_table_multiple.xlsx: 0.55000000000000004.
        assert_eq!(
            render(&Data::Float("0.55000000000000004".parse().expect("float"))),
            "0.55"
        );
        assert_eq!(render(&Data::Int(-3)), "-3");
        assert_eq!(render(&Data::Bool(true)), "TRUE");
        assert_eq!(render(&Data::Error(CellErrorType::Div0)), "#DIV/0!");
        assert_eq!(render(&Data::Empty), "");
    }

    #[test]
    fn dates_times_and_durations() {
        let dt = |v, t| Data::DateTime(ExcelDateTime::new(v, t, false));
        assert_eq!(
            render(&dt(40461.0, ExcelDateTimeType::DateTime)),
            "2010-10-10"
        );
        assert_eq!(
            render(&dt(
                40461.0 + 36610.0 / 86400.0,
                ExcelDateTimeType::DateTime
            )),
            "2010-10-10T10:10:10"
        );
        assert_eq!(
            render(&dt(36610.0 / 86400.0, ExcelDateTimeType::DateTime)),
            "10:10:10"
        );
        assert_eq!(
            render(&dt(36610.1 / 86400.0, ExcelDateTimeType::TimeDelta)),
            "10:10:10.100"
        );
        assert_eq!(
            render(&dt(918610.0 / 86400.0, ExcelDateTimeType::TimeDelta)),
            "255:10:10"
        );
        assert_eq!(
            render(&Data::DurationIso("PT255H10M10S".into())),
            "255:10:10"
        );
        assert_eq!(
            render(&Data::DurationIso("PT10H10M10.1S".into())),
            "10:10:10.100"
        );
        assert_eq!(render(&Data::DurationIso("nonsense".into())), "nonsense");
    }
}
