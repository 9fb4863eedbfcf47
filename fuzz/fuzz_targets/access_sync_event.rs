//! Access sync's event parser (`access_sync::event::parse`) on any JSON:
//! every stream record is either a change or a malformed record (never lost,
//! never a panic), and errors stay short.
#![no_main]

use access_sync::event::{parse, Invocation};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(payload) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    for attribute in ["user_id", "id"] {
        match parse(&payload, attribute) {
            Ok(Invocation::Stream {
                changes,
                malformed,
                ttl_deletions,
            }) => {
                let records = payload["Records"].as_array().map_or(0, Vec::len);
                assert_eq!(changes.len() + malformed.len(), records);
                assert!(ttl_deletions <= changes.len());
                assert!(changes.iter().all(|c| !c.user_id.is_empty()));
                for m in &malformed {
                    assert!(m.index < records);
                    assert!(m.error.to_string().len() < 4096);
                }
            }
            Ok(Invocation::Users(users)) => {
                assert!(!users.is_empty() && users.iter().all(|u| !u.is_empty()));
            }
            Ok(Invocation::FullReconcile) => {}
            Err(e) => assert!(e.to_string().len() < 4096),
        }
    }
});
