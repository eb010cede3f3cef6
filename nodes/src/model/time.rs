//! Ledger time and dates: microsecond timestamps and calendar dates in years 0001–9999,
//! written as RFC 3339 (`2024-05-01T12:00:00.5Z`) and ISO dates (`2024-05-01`).

use std::fmt;

/// Microseconds since 1970-01-01T00:00:00Z, within 0001-01-01 ..= 9999-12-31T23:59:59.999999Z.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Timestamp(i64);

/// Days since 1970-01-01, within 0001-01-01 ..= 9999-12-31.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Date(i32);

const MICROS_PER_DAY: i64 = 86_400_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error("not an RFC 3339 timestamp")]
    TimestampSyntax,
    #[error("not a date (YYYY-MM-DD)")]
    DateSyntax,
    #[error("out of range (years 0001 to 9999)")]
    OutOfRange,
    #[error("timestamp has more than 6 fractional digits")]
    TooPrecise,
}

impl Timestamp {
    pub fn from_micros(micros: i64) -> Result<Timestamp, TimeError> {
        let days = micros.div_euclid(MICROS_PER_DAY);
        Date::from_days(i32::try_from(days).map_err(|_| TimeError::OutOfRange)?)?;
        Ok(Timestamp(micros))
    }

    pub fn micros(self) -> i64 {
        self.0
    }

    /// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`; fractional digits beyond the
    /// sixth must be zeros, so nothing is silently truncated.
    pub fn parse(s: &str) -> Result<Timestamp, TimeError> {
        let syntax = TimeError::TimestampSyntax;
        let b = s.as_bytes();
        if b.len() < 20 || !matches!(b[10], b'T' | b't') {
            return Err(syntax);
        }
        let date = Date::parse(s.get(..10).ok_or(syntax)?).map_err(|e| match e {
            TimeError::DateSyntax => syntax,
            other => other,
        })?;
        let (hh, mm, ss) = (num(b, 11, 2)?, num(b, 14, 2)?, num(b, 17, 2)?);
        if b[13] != b':' || b[16] != b':' || hh > 23 || mm > 59 || ss > 59 {
            return Err(syntax);
        }
        let mut i = 19;
        let mut micros = 0_i64;
        if b.get(i) == Some(&b'.') {
            let start = i + 1;
            i = start;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            micros = fraction_micros(&b[start..i])?;
        }
        let offset_secs = parse_offset(&b[i..])?;
        let secs = i64::from(hh) * 3600 + i64::from(mm) * 60 + i64::from(ss) - offset_secs;
        let total = i64::from(date.0) * MICROS_PER_DAY + secs * 1_000_000 + micros;
        Timestamp::from_micros(total)
    }
}

fn fraction_micros(digits: &[u8]) -> Result<i64, TimeError> {
    if digits.is_empty() {
        return Err(TimeError::TimestampSyntax);
    }
    if digits.iter().skip(6).any(|&d| d != b'0') {
        return Err(TimeError::TooPrecise);
    }
    let mut micros = 0_i64;
    for k in 0..6 {
        micros = micros * 10 + digits.get(k).map_or(0, |d| i64::from(d - b'0'));
    }
    Ok(micros)
}

fn parse_offset(b: &[u8]) -> Result<i64, TimeError> {
    match b {
        [b'Z' | b'z'] => Ok(0),
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (h, m) = (num(b, 1, 2)?, num(b, 4, 2)?);
            if h > 23 || m > 59 {
                return Err(TimeError::TimestampSyntax);
            }
            let secs = i64::from(h) * 3600 + i64::from(m) * 60;
            Ok(if *sign == b'-' { -secs } else { secs })
        }
        _ => Err(TimeError::TimestampSyntax),
    }
}

fn num(b: &[u8], at: usize, len: usize) -> Result<u32, TimeError> {
    let digits = b.get(at..at + len).ok_or(TimeError::TimestampSyntax)?;
    digits.iter().try_fold(0_u32, |acc, d| {
        if d.is_ascii_digit() {
            Ok(acc * 10 + u32::from(d - b'0'))
        } else {
            Err(TimeError::TimestampSyntax)
        }
    })
}

impl fmt::Display for Timestamp {
    /// `2024-05-01T12:00:00Z`, with 3 or 6 fractional digits only when needed (as Java's
    /// `Instant.toString`, which Canton prints).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.0.div_euclid(MICROS_PER_DAY);
        let in_day = self.0.rem_euclid(MICROS_PER_DAY);
        let secs = in_day / 1_000_000;
        let micros = in_day % 1_000_000;
        // The constructor keeps days within the i32 range.
        let date = Date(days as i32);
        write!(
            f,
            "{date}T{:02}:{:02}:{:02}",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )?;
        if micros % 1000 == 0 && micros != 0 {
            write!(f, ".{:03}", micros / 1000)?;
        } else if micros != 0 {
            write!(f, ".{micros:06}")?;
        }
        f.write_str("Z")
    }
}

impl Date {
    pub fn from_days(days: i32) -> Result<Date, TimeError> {
        let (y, _, _) = civil_from_days(i64::from(days));
        if (1..=9999).contains(&y) {
            Ok(Date(days))
        } else {
            Err(TimeError::OutOfRange)
        }
    }

    pub fn days(self) -> i32 {
        self.0
    }

    pub fn parse(s: &str) -> Result<Date, TimeError> {
        let b = s.as_bytes();
        let syntax = |_| TimeError::DateSyntax;
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return Err(TimeError::DateSyntax);
        }
        let y = num(b, 0, 4).map_err(syntax)?;
        let m = num(b, 5, 2).map_err(syntax)?;
        let d = num(b, 8, 2).map_err(syntax)?;
        if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
            return Err(TimeError::DateSyntax);
        }
        if y == 0 {
            return Err(TimeError::OutOfRange);
        }
        let days = days_from_civil(i64::from(y), m, d);
        // Years 1..=9999 keep the day count far inside i32.
        Ok(Date(days as i32))
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = civil_from_days(i64::from(self.0));
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

fn days_in_month(y: u32, m: u32) -> u32 {
    match m {
        2 if y.is_multiple_of(4) && (!y.is_multiple_of(100) || y.is_multiple_of(400)) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Howard Hinnant's `days_from_civil`: proleptic Gregorian date to days since 1970-01-01.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip() {
        for (input, shown) in [
            ("1970-01-01T00:00:00Z", "1970-01-01T00:00:00Z"),
            ("2024-02-29T23:59:59.5Z", "2024-02-29T23:59:59.500Z"),
            ("2024-02-29T23:59:59.000001Z", "2024-02-29T23:59:59.000001Z"),
            ("2024-03-01T01:00:00+01:00", "2024-03-01T00:00:00Z"),
            ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00Z"),
            ("9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59.999999Z"),
            ("1969-12-31T23:59:59.1000000Z", "1969-12-31T23:59:59.100Z"),
        ] {
            let t = Timestamp::parse(input).expect(input);
            assert_eq!(t.to_string(), shown);
            assert_eq!(Timestamp::parse(shown), Ok(t));
        }
        assert_eq!(
            Timestamp::parse("2023-02-29T00:00:00Z"),
            Err(TimeError::TimestampSyntax)
        );
        assert_eq!(
            Timestamp::parse("2024-01-01T00:00:00.0000001Z"),
            Err(TimeError::TooPrecise)
        );
        assert_eq!(
            Timestamp::parse("2024-01-01 00:00:00Z"),
            Err(TimeError::TimestampSyntax)
        );
        assert_eq!(
            Timestamp::parse("0001-01-01T00:00:00+00:01"),
            Err(TimeError::OutOfRange)
        );
    }

    #[test]
    fn dates() {
        let d = Date::parse("2000-02-29").expect("leap day");
        assert_eq!(d.to_string(), "2000-02-29");
        assert_eq!(Date::parse("1970-01-01").map(Date::days), Ok(0));
        assert_eq!(Date::parse("1900-02-29"), Err(TimeError::DateSyntax));
        assert_eq!(Date::parse("0000-01-01"), Err(TimeError::OutOfRange));
        assert_eq!(
            Date::from_days(-719_162).map(|d| d.to_string()),
            Ok("0001-01-01".into())
        );
    }
}
