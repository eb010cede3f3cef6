//! Exact fixed-point decimals: Daml's `Numeric 10`, 38 significant digits of which 10 are
//! after the point. Arithmetic is checked: overflow and division by zero are errors.

use std::cmp::Ordering;
use std::fmt;

use ethnum::I256;

/// Digits after the point.
pub const SCALE: u32 = 10;
/// Total significant digits.
pub const PRECISION: u32 = 38;
const ONE: i128 = 10_i128.pow(SCALE);
/// Largest unscaled magnitude: 10^38 - 1.
const MAX_UNSCALED: i128 = 10_i128.pow(PRECISION) - 1;

/// A decimal with exactly 10 digits after the point and at most 28 before it, stored as an
/// `i128` count of 10^-10 units. Products and quotients that need more than 10 fractional
/// digits are rounded half-to-even, as Daml does.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Decimal(i128);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecimalError {
    #[error("not a decimal number")]
    Syntax,
    #[error("decimal out of range (at most 28 digits before and 10 after the point)")]
    OutOfRange,
    #[error("decimal has more than 10 digits after the point")]
    TooPrecise,
    #[error("decimal overflow")]
    Overflow,
    #[error("division by zero")]
    DivisionByZero,
}

impl Decimal {
    pub const ZERO: Decimal = Decimal(0);

    fn checked(unscaled: i128) -> Result<Decimal, DecimalError> {
        if unscaled.unsigned_abs() > MAX_UNSCALED.unsigned_abs() {
            Err(DecimalError::Overflow)
        } else {
            Ok(Decimal(unscaled))
        }
    }

    pub fn from_i64(n: i64) -> Decimal {
        // |i64| < 10^19, times 10^10 stays below 10^29: always in range.
        Decimal(i128::from(n) * ONE)
    }

    /// Parses `-?digits(.digits)?`. Fractional digits beyond the 10th must be zeros, so no
    /// value is ever silently rounded.
    pub fn parse(s: &str) -> Result<Decimal, DecimalError> {
        let (neg, body) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s.strip_prefix('+').unwrap_or(s)),
        };
        let (int, frac) = body.split_once('.').unwrap_or((body, ""));
        let digits_ok = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
        if int.is_empty() || !digits_ok(int) || !digits_ok(frac) || body.ends_with('.') {
            return Err(DecimalError::Syntax);
        }
        let int = int.trim_start_matches('0');
        if int.len() > (PRECISION - SCALE) as usize {
            return Err(DecimalError::OutOfRange);
        }
        let (kept, dropped) = frac.split_at(frac.len().min(SCALE as usize));
        if dropped.bytes().any(|b| b != b'0') {
            return Err(DecimalError::TooPrecise);
        }
        let mut unscaled: i128 = 0;
        for b in int.bytes().chain(kept.bytes()) {
            unscaled = unscaled * 10 + i128::from(b - b'0');
        }
        unscaled *= 10_i128.pow(SCALE - kept.len() as u32);
        Ok(Decimal(if neg { -unscaled } else { unscaled }))
    }

    pub fn checked_add(self, o: Decimal) -> Result<Decimal, DecimalError> {
        Self::checked(self.0.checked_add(o.0).ok_or(DecimalError::Overflow)?)
    }

    pub fn checked_sub(self, o: Decimal) -> Result<Decimal, DecimalError> {
        Self::checked(self.0.checked_sub(o.0).ok_or(DecimalError::Overflow)?)
    }

    pub fn checked_mul(self, o: Decimal) -> Result<Decimal, DecimalError> {
        let product = I256::from(self.0) * I256::from(o.0);
        Self::from_wide(div_half_even(product, I256::from(ONE)))
    }

    pub fn checked_div(self, o: Decimal) -> Result<Decimal, DecimalError> {
        if o.0 == 0 {
            return Err(DecimalError::DivisionByZero);
        }
        let numerator = I256::from(self.0) * I256::from(ONE);
        Self::from_wide(div_half_even(numerator, I256::from(o.0)))
    }

    pub fn checked_neg(self) -> Decimal {
        // The range is symmetric, so negation cannot leave it.
        Decimal(-self.0)
    }

    fn from_wide(v: I256) -> Result<Decimal, DecimalError> {
        let narrow = i128::try_from(v).map_err(|_| DecimalError::Overflow)?;
        Self::checked(narrow)
    }

    pub fn is_positive(self) -> bool {
        self.0 > 0
    }

    /// The count of 10^-10 units.
    pub fn unscaled(self) -> i128 {
        self.0
    }

    pub fn from_unscaled(unscaled: i128) -> Result<Decimal, DecimalError> {
        Self::checked(unscaled).map_err(|_| DecimalError::OutOfRange)
    }
}

/// `n / d` rounded half to even; `d` is non-zero.
fn div_half_even(n: I256, d: I256) -> I256 {
    let q = n / d;
    let r = n % d;
    if r == I256::ZERO {
        return q;
    }
    let twice = r.abs() * 2;
    let away = match twice.cmp(&d.abs()) {
        Ordering::Greater => true,
        Ordering::Less => false,
        Ordering::Equal => q % 2 != I256::ZERO,
    };
    if !away {
        q
    } else if (n < I256::ZERO) != (d < I256::ZERO) {
        q - 1
    } else {
        q + 1
    }
}

impl fmt::Display for Decimal {
    /// Canonical form: no trailing zeros beyond the first fractional digit (`1.0`, `-0.25`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let one = ONE.unsigned_abs();
        let frac = format!("{:010}", abs % one);
        let frac = frac.trim_end_matches('0');
        let frac = if frac.is_empty() { "0" } else { frac };
        write!(f, "{sign}{}.{frac}", abs / one)
    }
}

impl fmt::Debug for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Decimal({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::parse(s).expect("valid decimal")
    }

    #[test]
    fn parse_and_display() {
        for (input, shown) in [
            ("1", "1.0"),
            ("-0.25", "-0.25"),
            ("+3.10", "3.1"),
            ("0.0000000001", "0.0000000001"),
            ("1.000000000000", "1.0"),
            (
                "9999999999999999999999999999.9999999999",
                "9999999999999999999999999999.9999999999",
            ),
        ] {
            assert_eq!(d(input).to_string(), shown, "{input}");
        }
        assert_eq!(Decimal::parse("12x"), Err(DecimalError::Syntax));
        assert_eq!(Decimal::parse("1."), Err(DecimalError::Syntax));
        assert_eq!(Decimal::parse(".5"), Err(DecimalError::Syntax));
        assert_eq!(Decimal::parse("1e5"), Err(DecimalError::Syntax));
        assert_eq!(
            Decimal::parse("0.00000000001"),
            Err(DecimalError::TooPrecise)
        );
        assert_eq!(
            Decimal::parse(&"9".repeat(29)),
            Err(DecimalError::OutOfRange)
        );
    }

    #[test]
    fn arithmetic_is_exact_and_checked() {
        assert_eq!(d("0.1").checked_add(d("0.2")), Ok(d("0.3")));
        assert_eq!(d("1.5").checked_mul(d("2.5")), Ok(d("3.75")));
        assert_eq!(d("1").checked_div(d("3")), Ok(d("0.3333333333")));
        assert_eq!(d("2").checked_div(d("3")), Ok(d("0.6666666667")));
        // Half to even: 0.00000000005 * 1 rounds to 0, 0.00000000015 rounds to 0.0000000002.
        assert_eq!(d("0.0000000001").checked_div(d("2")), Ok(d("0")));
        assert_eq!(d("0.0000000003").checked_div(d("2")), Ok(d("0.0000000002")));
        assert_eq!(
            d("-0.0000000003").checked_div(d("2")),
            Ok(d("-0.0000000002"))
        );
        let big = d("9999999999999999999999999999");
        assert_eq!(big.checked_add(d("1")), Err(DecimalError::Overflow));
        assert_eq!(big.checked_mul(big), Err(DecimalError::Overflow));
        assert_eq!(
            d("1").checked_div(d("0")),
            Err(DecimalError::DivisionByZero)
        );
        assert_eq!(
            big.checked_mul(d("0.5")),
            Ok(d("4999999999999999999999999999.5"))
        );
    }
}
