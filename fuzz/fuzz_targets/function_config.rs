//! Both functions' environment parsing (`Config::from_env`) on any set of
//! variables: a config or an error naming one variable; never a panic.
//!
//! Input: lines `NAME=value`.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let vars: HashMap<String, String> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if let Err(e) = image_replicator::config::Config::from_env(&vars) {
        assert!(!e.variable.is_empty());
        assert!(e.to_string().contains(&*e.variable), "{e}");
    }
    if let Err(e) = access_sync::config::Config::from_env(&vars) {
        assert!(!e.variable.is_empty());
        assert!(e.to_string().contains(&*e.variable), "{e}");
    }
});
