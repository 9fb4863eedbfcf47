//! Merging our statement into a repository policy (`access::policy::merge_policy`)
//! on any current policy text and set of accounts: never a panic, and a
//! merged write is a policy that merging again leaves alone.
//!
//! Input: first byte = how many accounts (0-3) to grant, then the policy text.
#![no_main]

use std::collections::BTreeSet;

use ecr_bridge::access::{merge_policy, AccountId, PolicyChange, PolicySpec};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let Ok(current) = std::str::from_utf8(rest) else {
        return;
    };
    let accounts: BTreeSet<AccountId> = ["111111111111", "222222222222", "012345678901"]
        .iter()
        .take((first % 4) as usize)
        .map(|a| a.parse().unwrap())
        .collect();
    let spec = PolicySpec::default_for(if first & 0x80 != 0 { "aws-cn" } else { "aws" });
    let merged = match merge_policy(Some(current), &accounts, &spec) {
        Ok(p) => p,
        Err(e) => {
            assert!(e.to_string().len() < 4096);
            return;
        }
    };
    match &merged.change {
        PolicyChange::Keep => {}
        PolicyChange::Delete => assert!(accounts.is_empty(), "deleting a policy that should grant"),
        PolicyChange::Put(text) => {
            let again = merge_policy(Some(text), &accounts, &spec).expect("our own policy parses");
            assert_eq!(again.change, PolicyChange::Keep, "not converged: {text}");
        }
    }
});
