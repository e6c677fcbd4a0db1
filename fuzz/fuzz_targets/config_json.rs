//! Arbitrary bytes as config.json (GPT-2 or GPT-Neo): JSON, then every field's checks.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(json) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = quill::config::ModelConfig::from_json(&json);
    }
});
