//! Arbitrary bytes as a safetensors file: header and tensor-table validation, then every tensor
//! viewed with its own shape, as f32 and as a weight.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quill::checkpoint::Checkpoint;

fuzz_target!(|data: &[u8]| {
    let Ok(ckpt) = Checkpoint::from_bytes(std::path::Path::new("fuzz.safetensors"), data) else { return };
    let names: Vec<String> = ckpt.names().map(str::to_string).collect();
    for name in names {
        let shape = ckpt.get(&name).expect("listed").shape.clone();
        if let Ok(t) = ckpt.tensor_f32(&name, &shape) {
            let _ = t.data().iter().sum::<f32>();
        }
        if let Ok(w) = ckpt.weight(&name, &shape) {
            let d = w.data();
            if !d.is_empty() {
                let _ = d.get(d.len() - 1);
            }
        }
    }
});
