//! The CLI's words for the library's settings: each [`Setting`] is a flag here, and an error the
//! library returns is printed with the flags that would change the outcome.

use crate::error::{gib, Error, Setting};

/// The flag that sets `setting`.
pub(crate) fn flag(setting: Setting) -> &'static str {
    match setting {
        Setting::Ctx => "--ctx",
        Setting::Stride => "--stride",
        Setting::MaxNewTokens => "--max-new-tokens",
        Setting::RepetitionPenalty => "--repetition-penalty",
        Setting::Temperature => "--temperature",
        Setting::TopP => "--top-p",
        Setting::MinP => "--min-p",
        Setting::NumBeams => "--num-beams",
        Setting::NumReturnSequences => "--num-return-sequences",
        Setting::LengthPenalty => "--length-penalty",
        Setting::Kv => "--kv",
    }
}

/// `e` as the CLI prints it: the settings the library names become flags, and the context and
/// memory errors say which flags make room.
pub(crate) fn message(e: &Error) -> String {
    let text = match *e {
        Error::ContextFull { tokens, used, capacity, n_positions } => format!(
            "{tokens} tokens do not fit the context: {used} already used of {capacity} positions{}",
            if capacity < n_positions {
                format!(" (--ctx can raise it up to n_positions = {n_positions})")
            } else {
                " (the model's n_positions): shorten the prompt or --max-new-tokens".to_string()
            }
        ),
        Error::PromptTooLong { tokens, room, capacity, n_positions } => format!(
            "the prompt has {tokens} tokens but the context holds {room} (n_positions {n_positions}{}): shorten the prompt",
            if capacity < n_positions { ", or raise --ctx" } else { "" }
        ),
        Error::KvTooLarge { ctx, bytes, available, fits } => format!(
            "the KV cache for {ctx} positions needs {:.1} GiB, but only {:.1} GiB of memory is available: \
             use --ctx {fits} or less (or --kv f16 to halve it)",
            gib(bytes),
            gib(available)
        ),
        Error::In { ref context, ref source } => format!("{context}: {}", message(source)),
        _ => e.to_string(),
    };
    Setting::ALL.iter().fold(text, |text, &s| text.replace(&s.to_string(), flag(s)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_settings_print_as_flags() {
        let e = Error::out_of_range(Setting::Stride, 33, format!("it must be 1 to {} (32)", Setting::Ctx));
        assert_eq!(e.to_string(), "`stride` 33 is out of range: it must be 1 to `ctx` (32)");
        assert_eq!(message(&e), "--stride 33 is out of range: it must be 1 to --ctx (32)");
        assert_eq!(e.exit_code(), 2);
        let full = Error::ContextFull { tokens: 5, used: 60, capacity: 64, n_positions: 64 };
        assert!(!full.to_string().contains("--"));
        assert!(message(&full).ends_with("shorten the prompt or --max-new-tokens"));
        for s in Setting::ALL {
            assert!(flag(s).starts_with("--") && s.name().chars().all(|c| c.is_ascii_lowercase() || c == '_'));
        }
    }
}
