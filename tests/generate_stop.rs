//! Stop strings while streaming: what is shown at each step, never any part of a stop string
//! that then completes, and everything else eventually.

mod generate_util;

use proptest::prelude::*;
use quill::generate::stop::{StopMatcher, TextStream};
use quill::tokenizer::Tokenizer;

/// Feeds `pieces`; returns what was shown after each push (and at the end), and the final text.
fn stream(stops: &[String], pieces: &[String]) -> (Vec<String>, String) {
    let mut m = StopMatcher::new(stops.to_vec());
    let mut shown = Vec::new();
    for p in pieces {
        let (s, stopped) = m.push(p);
        shown.push(s.to_string());
        if stopped {
            break;
        }
    }
    shown.push(m.finish().to_string());
    (shown, m.text().to_string())
}

fn first_stop(text: &str, stops: &[String]) -> Option<usize> {
    stops.iter().filter_map(|s| text.find(s.as_str())).min()
}

/// The text before the first stop string to be completed (the earliest-starting one of those
/// complete at that piece), or all of it.
fn want_text(stops: &[String], pieces: &[String]) -> String {
    let mut received = String::new();
    for p in pieces {
        received.push_str(p);
        if let Some(at) = first_stop(&received, stops) {
            received.truncate(at);
            return received;
        }
    }
    received
}

#[test]
fn the_first_stop_string_completed_ends_the_text() {
    // "é" completes first; "\né\n", which would start earlier, is not complete yet.
    let stops = ["é".to_string(), "\né\n".to_string()];
    let (shown, text) = stream(&stops, &["\né".to_string(), "\n\n".to_string()]);
    assert_eq!(text, "\n");
    assert_eq!(shown.concat(), "\n");
    // Both complete in the same piece: the earliest start wins.
    let (_, text) = stream(&stops, &["\n".to_string(), "é\n".to_string()]);
    assert_eq!(text, "");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn shown_text_is_the_text_before_the_first_stop(
        pieces in prop::collection::vec("[abé\n]{0,4}", 0..12),
        stops in prop::collection::vec("[abé\n]{1,4}", 1..3),
    ) {
        let (shown, text) = stream(&stops, &pieces);
        let want = want_text(&stops, &pieces);
        prop_assert_eq!(&shown.concat(), &want);
        prop_assert_eq!(&text, &want);
        // At every step, what is shown is a prefix of the answer, and it holds back less than
        // the longest stop string.
        let longest = stops.iter().map(String::len).max().unwrap();
        let mut so_far = String::new();
        let mut received = String::new();
        for (i, s) in shown.iter().enumerate().take(pieces.len()) {
            so_far.push_str(s);
            received.push_str(&pieces[i]);
            prop_assert!(want.starts_with(&so_far));
            if first_stop(&received, &stops).is_none() {
                prop_assert!(received.len() - so_far.len() < longest);
            }
        }
    }
}

#[test]
fn streaming_tokens_holds_back_the_start_of_a_stop_string() {
    let tok = Tokenizer::from_model_dir(&generate_util::hub()).unwrap();
    let text = "It was the best of times, it was the worst of times";
    let ids = tok.encode(text);
    // Stop at "the worst": " the" is held back until " worst" shows it was a stop.
    let mut s = TextStream::new(vec!["the worst".to_string(), "xyz".to_string()], false);
    let mut shown = String::new();
    let mut steps = Vec::new();
    for &id in &ids {
        let (piece, stopped) = s.push(&tok, id).unwrap();
        shown.push_str(piece);
        steps.push((tok.decode(&[id]).unwrap(), shown.clone(), stopped));
        if stopped {
            break;
        }
    }
    shown.push_str(&s.finish());
    assert_eq!(shown, "It was the best of times, it was ");
    // Right after the second " the", its "the" is held back: it could start "the worst".
    let second_the = steps.iter().enumerate().filter(|(_, (t, _, _))| t == " the").nth(1).unwrap().0;
    assert_eq!(steps[second_the].1, "It was the best of times, it was ");
    assert!(!steps[second_the].2);
    assert!(steps.last().unwrap().2, "the stop string was found");
    // When the held-back text turns out not to be a stop string, it is shown after all.
    let mut s = TextStream::new(vec!["the worse".to_string()], false);
    let mut all = String::new();
    for &id in &ids {
        all.push_str(s.push(&tok, id).unwrap().0);
    }
    all.push_str(&s.finish());
    assert_eq!(all, text);
}
