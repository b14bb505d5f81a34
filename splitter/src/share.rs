//! The canary share as an exact number of basis points (1 bp = 0.01%).

use crate::error::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// A canary share in basis points, `0..=10_000`. 12.5% is `BasisPoints(1250)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct BasisPoints(u16);

impl BasisPoints {
    pub const ZERO: BasisPoints = BasisPoints(0);
    pub const FULL: BasisPoints = BasisPoints(10_000);

    /// Basis points from an integer, refusing anything above 10 000.
    pub fn new(bp: u32) -> Result<Self> {
        if bp > 10_000 {
            return Err(Error::invalid(
                "share",
                format!("{bp}bp is more than 100% (10000bp)"),
            ));
        }
        Ok(BasisPoints(bp as u16))
    }

    /// A whole percentage, as older documents store it (`canary_percentage`).
    pub fn from_percent(percent: u32) -> Result<Self> {
        Self::new(percent.saturating_mul(100))
    }

    pub fn get(self) -> u16 {
        self.0
    }

    /// The whole percentage rounded down, for readers that only know `canary_percentage`.
    /// Rounding down never sends an older reader's tenants to canary that this share would not.
    pub fn whole_percent_floor(self) -> u8 {
        (self.0 / 100) as u8
    }

    /// The share as a fraction in `0.0..=1.0`, for display and statistics only.
    pub fn fraction(self) -> f64 {
        f64::from(self.0) / 10_000.0
    }

    /// Parses `12.5`, `12.5%`, `0.01 %` or `1250bp`. Percentages take at most two decimals.
    pub fn parse(input: &str) -> Result<Self> {
        input.parse()
    }
}

impl FromStr for BasisPoints {
    type Err = Error;

    fn from_str(input: &str) -> Result<Self> {
        let s = input.trim();
        let bad = |why: &str| Error::invalid("share", format!("'{input}' {why}"));
        if s.is_empty() {
            return Err(bad(
                "is empty: give a percentage such as 12.5 or 12.5%, or basis points such as 1250bp",
            ));
        }
        if let Some(bp) = s.strip_suffix("bp") {
            let bp = bp.trim_end();
            if bp.starts_with('-') {
                return Err(bad("is negative: a share is between 0bp and 10000bp"));
            }
            if bp.is_empty() || !bp.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("is not a whole number of basis points (e.g. 1250bp)"));
            }
            let value: u32 = bp.parse().map_err(|_| bad("is more than 100% (10000bp)"))?;
            return BasisPoints::new(value).map_err(|_| bad("is more than 100% (10000bp)"));
        }
        let number = s.strip_suffix('%').map(str::trim_end).unwrap_or(s);
        if number.starts_with('-') {
            return Err(bad("is negative: a share is between 0% and 100%"));
        }
        let well_formed = number.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            && number.bytes().filter(|&b| b == b'.').count() <= 1
            && number.bytes().any(|b| b.is_ascii_digit());
        if !well_formed {
            return Err(bad("is not a number: give a percentage such as 12.5 or 12.5%, or basis points such as 1250bp"));
        }
        let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
        if frac.len() > 2 {
            return Err(bad(
                "has more than two decimals: the finest step is 0.01% (1bp)",
            ));
        }
        let too_big = || bad("is more than 100%");
        let whole: u32 = if whole.is_empty() {
            0
        } else if whole.len() > 6 {
            return Err(too_big());
        } else {
            whole.parse().map_err(|_| too_big())?
        };
        let mut frac_bp: u32 = if frac.is_empty() {
            0
        } else {
            frac.parse().map_err(|_| bad("is not a number"))?
        };
        if frac.len() == 1 {
            frac_bp *= 10;
        }
        BasisPoints::new(whole * 100 + frac_bp).map_err(|_| too_big())
    }
}

/// Formats as the shortest exact percentage: `12.5%`, `0.01%`, `100%`.
impl fmt::Display for BasisPoints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0 / 100;
        let frac = self.0 % 100;
        match frac {
            0 => write!(f, "{whole}%"),
            _ if frac.is_multiple_of(10) => write!(f, "{whole}.{}%", frac / 10),
            _ => write!(f, "{whole}.{frac:02}%"),
        }
    }
}

impl serde::Serialize for BasisPoints {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_u16(self.0)
    }
}

impl<'de> serde::Deserialize<'de> for BasisPoints {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let bp = u32::deserialize(d)?;
        BasisPoints::new(bp).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bp(s: &str) -> u16 {
        BasisPoints::parse(s).unwrap().get()
    }

    #[test]
    fn accepted_forms() {
        assert_eq!(bp("12.5"), 1250);
        assert_eq!(bp("12.5%"), 1250);
        assert_eq!(bp(" 12.5 % "), 1250);
        assert_eq!(bp("1250bp"), 1250);
        assert_eq!(bp("0"), 0);
        assert_eq!(bp("100"), 10_000);
        assert_eq!(bp("100.00%"), 10_000);
        assert_eq!(bp("0.01"), 1);
        assert_eq!(bp(".5"), 50);
        assert_eq!(bp("7."), 700);
        assert_eq!(bp("10000bp"), 10_000);
        assert_eq!(bp("0bp"), 0);
    }

    #[test]
    fn refused_forms_say_why() {
        for (input, why) in [
            ("-1", "negative"),
            ("-0.5%", "negative"),
            ("100.01", "more than 100%"),
            ("150", "more than 100%"),
            ("10001bp", "more than 100%"),
            ("99999999999999999999", "more than 100%"),
            ("NaN", "not a number"),
            ("abc", "not a number"),
            ("inf", "not a number"),
            ("1e2", "not a number"),
            ("12.345", "more than two decimals"),
            ("", "empty"),
            ("%", "not a number"),
            (".", "not a number"),
            ("12.5bp", "whole number of basis points"),
            ("bp", "whole number of basis points"),
            ("+5", "not a number"),
            ("1 2", "not a number"),
        ] {
            let err = BasisPoints::parse(input).unwrap_err().to_string();
            assert!(err.contains(why), "{input:?}: {err}");
            assert!(err.starts_with("share: "), "{input:?}: {err}");
        }
    }

    #[test]
    fn display_is_exact() {
        assert_eq!(BasisPoints(1250).to_string(), "12.5%");
        assert_eq!(BasisPoints(1).to_string(), "0.01%");
        assert_eq!(BasisPoints(10).to_string(), "0.1%");
        assert_eq!(BasisPoints(1205).to_string(), "12.05%");
        assert_eq!(BasisPoints(10_000).to_string(), "100%");
        assert_eq!(BasisPoints(0).to_string(), "0%");
    }
}
