//! After warm-up, a decode step allocates nothing on the heap (a counting global allocator).

mod common;

use common::counting_alloc::{allocations, Counting};
use quill::math::argmax;
use quill::Model;

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Decodes tokens after a short prompt until the context is full, and counts the heap allocations
/// the decode steps make.
///
/// The steps run on a thread of rayon's pool, started beforehand. Two things in rayon allocate
/// otherwise, outside Quill: its workers, while they start; and every 63rd job handed to the
/// pool from a thread outside it (its global injector takes a new 1.5 KiB block).
fn decode_allocations(fixture: &str) -> usize {
    let model = Model::load(&common::data_dir().join(fixture), &Default::default()).unwrap();
    let mut session = model.session(None).unwrap();
    let mut next = argmax(session.feed(&[464, 3290, 318, 257]).unwrap()) as u32;
    next = argmax(session.feed(&[next]).unwrap()) as u32;
    rayon::broadcast(|_| ());
    rayon::scope(|_| {
        let before = allocations();
        while session.len() < session.capacity() {
            next = argmax(session.feed(&[next]).unwrap()) as u32;
        }
        allocations() - before
    })
}

/// One test only: the counter is global, and a second test thread (or the harness reporting it)
/// would allocate while this one counts.
#[test]
fn decode_steps_do_not_allocate() {
    let n = decode_allocations("tiny-gpt2-hub");
    assert_eq!(n, 0, "GPT-2 decode steps made {n} heap allocations");
    // GPT-Neo: past the attention window and around the local layers' KV ring.
    let n = decode_allocations("tiny-gpt-neo");
    assert_eq!(n, 0, "GPT-Neo decode steps made {n} heap allocations");
}
