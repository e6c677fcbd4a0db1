//! Arbitrary command lines (NUL-separated arguments) through the argument parser: numbers,
//! lists, enums, conflicts. Parsing only; nothing runs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let args = std::iter::once("quill".to_string()).chain(text.split('\0').map(str::to_string));
    let _ = quill::cli::parse_args(args);
});
