//! AWS region codes.

use super::text_identifier;

/// `us-east-1`, `us-gov-west-1`, `us-isob-east-1`, `cn-north-1`,
/// `eusc-de-east-1`: three or more lowercase words joined by `-`, the first
/// of 2-4 letters, the last a number of 1-2 digits; at most 32 characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Region(String);

text_identifier!(Region, RegionError, valid: is_region);

fn is_region(r: &str) -> bool {
    let words: Vec<&str> = r.split('-').collect();
    let Some((number, names)) = words.split_last() else {
        return false;
    };
    r.len() <= 32
        && names.len() >= 2
        && (1..=2).contains(&number.len())
        && number.bytes().all(|b| b.is_ascii_digit())
        && names
            .iter()
            .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()))
        && (2..=4).contains(&names[0].len())
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an AWS region code like us-east-1 or us-gov-west-1")]
pub struct RegionError(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_region_shapes_when_checked_then_partitions_pass_and_typos_fail() {
        for ok in [
            "us-east-1",
            "eu-west-2",
            "us-gov-west-1",
            "cn-north-1",
            "cn-northwest-1",
            "us-iso-east-1",
            "us-isob-east-1",
            "ap-southeast-7",
            "eusc-de-east-1",
        ] {
            assert!(ok.parse::<Region>().is_ok(), "{ok}");
        }
        for bad in [
            "us-east",
            "useast1",
            "US-EAST-1",
            "us-east-1a",
            "us--east-1",
            "-us-east-1",
            "us-east-123",
            "US East",
            "us-east-1.evil.example.com/",
            "",
        ] {
            assert!(bad.parse::<Region>().is_err(), "{bad}");
        }
    }
}
