//! The image replicator's event parser (`image_replicator::event::parse`) on
//! any JSON: an action, an ignore or a short, specific error; never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(payload) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    match image_replicator::event::parse(&payload) {
        Ok(incoming) => {
            let _ = format!("{incoming:?}");
        }
        Err(e) => {
            let message = e.to_string();
            // Errors quote the payload clipped: a hostile event cannot flood the logs.
            assert!(message.len() < 4096, "error of {} bytes", message.len());
        }
    }
});
