//! The mapping config parser (`MappingConfig::from_json`) on any text, and a
//! parsed config's decisions on any repository name and tag: every problem
//! is named by its path, and `decide`, `explain` and `route` agree.
//!
//! Input: `<config>` or `<config>\0<repository>[\0<tag>]`.
#![no_main]

use ecr_bridge::mapping::{Decision, MappingConfig, Verdict};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |&b| b == 0);
    let Ok(text) = std::str::from_utf8(parts.next().unwrap_or_default()) else {
        return;
    };
    let config = match MappingConfig::from_json(text) {
        Ok(c) => c,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            for p in e.problems() {
                // Values are quoted clipped: a hostile document cannot flood the logs.
                assert!(
                    p.to_string().len() < 4096,
                    "{} bytes: {p}",
                    p.to_string().len()
                );
            }
            return;
        }
    };
    let repository = parts
        .next()
        .map(String::from_utf8_lossy)
        .unwrap_or_else(|| "kuali-coeus".into());
    let tag = parts.next().map(String::from_utf8_lossy);
    let decision = config.decide(&repository, tag.as_deref());
    let verdicts = config.explain(&repository, tag.as_deref());
    assert_eq!(verdicts.len(), config.rules().len());
    let winner = verdicts.iter().find(|v| {
        matches!(
            v.verdict,
            Verdict::Replicate(_) | Verdict::TagFiltered { .. }
        )
    });
    match (&decision, winner) {
        (Decision::NoMatchingRule, None) => {}
        (Decision::Replicate(r), Some(v)) => {
            assert!(matches!(&v.verdict, Verdict::Replicate(e) if e == r));
        }
        (Decision::TagFiltered { rule_index, .. }, Some(v)) => {
            assert_eq!(*rule_index, v.rule_index);
            assert!(matches!(v.verdict, Verdict::TagFiltered { .. }));
        }
        (d, w) => panic!("decide says {d:?}, explain says {w:?}"),
    }
    // route() ignores the tag: it finds a rule exactly when decide() does.
    assert_eq!(
        config.route(&repository).is_some(),
        !matches!(decision, Decision::NoMatchingRule)
    );
});
