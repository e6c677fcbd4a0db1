//! Builds the demo model into the binary when the repository has it (models/kjv-demo.safetensors):
//! `quill` then runs it when no `-m` is given.

fn main() {
    const MODEL: &str = "models/kjv-demo.safetensors";
    println!("cargo::rustc-check-cfg=cfg(quill_builtin_model)");
    println!("cargo::rerun-if-changed={MODEL}");
    println!("cargo::rerun-if-changed=build.rs");
    if std::path::Path::new(MODEL).is_file() {
        println!("cargo::rustc-cfg=quill_builtin_model");
    }
}
