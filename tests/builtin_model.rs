//! The model built into the binary (models/kjv-demo.safetensors): every command runs it when no
//! `-m` is given; a build without it says how to give one.

mod common;

use common::quill;

#[test]
fn commands_without_a_model_run_the_built_in_one_or_say_what_to_do() {
    let (code, out, err) = quill(&["generate", "And God said", "-n", "8", "--seed", "1"]);
    if quill::builtin::available() {
        assert_eq!(code, 0, "{err}");
        assert!(out.starts_with("And God said") && out.len() > "And God said".len(), "{out}");
        let (code, out, err) = quill(&["info"]);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("<built-in demo model>"), "{out}");
        let (code, out, _) = quill(&["tokenize", "And God said"]);
        assert_eq!((code, out.trim()), (0, "1870 1793 531"));
    } else {
        assert_eq!(code, 2);
        assert!(err.contains("no model given: pass -m MODEL"), "{err}");
    }
}
