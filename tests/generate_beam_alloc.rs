//! Beam search allocates per run, not per step: a longer search makes no more heap allocations
//! than a shorter one (counting global allocator), the beams' KV copies included.

mod generate_util;

use generate_util::common::counting_alloc::{allocations, Counting};
use quill::generate::beam::{BeamOptions, BeamSearch, EarlyStopping};
use quill::generate::DecodeOptions;
use quill::Model;

#[global_allocator]
static GLOBAL: Counting = Counting;

/// One test only: the counter is global. Runs on a thread of rayon's pool (see tests/no_alloc.rs).
#[test]
fn beam_search_allocates_per_run_not_per_step() {
    let model = Model::load(&generate_util::hub(), &Default::default()).unwrap();
    let prompt = [464, 13458, 7696];
    rayon::broadcast(|_| ());
    let counts: Vec<usize> = rayon::scope(|_| {
        [1, 5, 40, 5]
            .into_iter()
            .map(|n| {
                let opts = DecodeOptions {
                    eos_token_ids: vec![50256, 32276],
                    repetition_penalty: 1.2,
                    no_repeat_ngram_size: 2,
                    min_new_tokens: 3,
                    ..DecodeOptions::greedy(n)
                };
                let beam = BeamOptions {
                    num_beams: 3,
                    length_penalty: 0.5,
                    early_stopping: EarlyStopping::Never,
                    num_return_sequences: 2,
                };
                let mut search = BeamSearch::new(&model, None, opts, beam).unwrap();
                // Warm-up run: first-time allocations outside the loop.
                search.run(&prompt).unwrap();
                let before = allocations();
                let g = search.run(&prompt).unwrap();
                let count = allocations() - before;
                assert_eq!(g.sequences.len(), 2);
                // The 40-token search runs 31 steps (it is done then), with reorders and copies.
                assert!(n < 40 || g.steps > 20, "{} steps", g.steps);
                assert!(g.sequences.iter().all(|s| s.new_ids.len() <= n));
                count
            })
            .collect()
    });
    assert!(counts.windows(2).all(|w| w[0] == w[1]), "allocations per run of 1, 5, 40, 5 tokens: {counts:?}");
}
