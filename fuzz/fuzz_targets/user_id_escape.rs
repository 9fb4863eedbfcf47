//! Gen3's user-id escape and its inverse on any user id: the escape of a
//! user is among the candidates read back from it, repository naming never
//! panics, and reading back any name (hostile repository names included)
//! stays within its budget.
#![no_main]

use ecr_bridge::access::naming::{escape, repository_name, unescape_candidates};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let escaped = escape(text);
    let _ = repository_name("nextflow-approved", text);
    if !text.is_empty() {
        if let Some(candidates) = unescape_candidates(&escaped, 64) {
            assert!(
                candidates.iter().any(|c| c == text),
                "{text:?} not read back from {escaped:?}"
            );
            assert!(candidates.iter().all(|c| escape(c) == escaped));
        }
    }
    // The text itself as an (escaped) repository name.
    if let Some(candidates) = unescape_candidates(text, 64) {
        assert!(candidates.len() <= 64);
        assert!(candidates.iter().all(|c| escape(c) == text));
    }
});
