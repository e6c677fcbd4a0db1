//! GPT-2 byte-level BPE tokenizer, behaving exactly like transformers' slow `GPT2Tokenizer`.
//!
//! Encoding: optional prefix space → split at added tokens (`<|endoftext|>`) → pre-tokenize each
//! text part with GPT-2's pattern (`pretokenize.rs`) → map each piece's UTF-8 bytes through the
//! byte table (`byte_map.rs`) → merge by rank (`bpe.rs`) → ids. `encode.rs` runs that loop with
//! its shortcuts (whole-token pieces via `vocab_index.rs`, a piece cache) and in parallel;
//! `read.rs` encodes a text as it is read, block by block.
//! Decoding: ids → bytes (one arena, `vocab_index.rs`) → UTF-8 with Python's `errors=` modes.

mod batch;
mod bpe;
mod byte_map;
mod encode;
mod fast_hash;
mod load;
mod pretokenize;
mod read;
mod special;
mod stream;
mod vocab_index;

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

use crate::error::{read_file, Error, Result};

pub use batch::{Batch, BatchOptions, Padding};
pub use stream::StreamDecoder;

use bpe::{Merges, NO_TOKEN};
use encode::EncodeState;
use load::{AddedSpec, Parts};
use special::{AddedToken, AddedTokens};
use vocab_index::{TokenBytes, VocabIndex};

/// What to do with bytes that are not valid UTF-8 when decoding (Python's `errors=`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DecodeErrors {
    /// Each invalid sequence becomes U+FFFD (GPT2Tokenizer's default, `errors="replace"`).
    #[default]
    Replace,
    /// Invalid sequences are dropped.
    Ignore,
    /// Invalid sequences are an [`Error::Input`].
    Strict,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenizerOptions {
    /// Prepend one space to the text before tokenizing (transformers prepends it always, even to
    /// empty text or text that already starts with whitespace).
    pub add_prefix_space: bool,
    /// `false`: added tokens such as `<|endoftext|>` written in the text encode to their id;
    /// `true`: they are encoded as ordinary text.
    pub split_special_tokens: bool,
    pub errors: DecodeErrors,
    /// Put the bos id first in what `encode` returns (`add_bos_token` in
    /// `tokenizer_config.json`, as `GPT2Tokenizer` does then); off by default, as GPT-2's.
    pub add_bos_token: bool,
}

/// GPT-2's pre-tokenizer on its own: the pieces (words with their leading space, number runs,
/// punctuation runs, whitespace runs) that BPE then works on. They concatenate back to `text`.
pub fn pre_tokenize(text: &str) -> impl Iterator<Item = &str> {
    pretokenize::pieces(text)
}

/// The default GPT-2 special token (bos, eos and unk of `GPT2Tokenizer`).
const ENDOFTEXT: &str = "<|endoftext|>";

#[derive(Clone, Debug)]
pub struct Tokenizer {
    /// Every token string (vocabulary and added tokens) → id. The fast hasher: building the
    /// merge table looks up three strings per merge, where SipHash's cost shows in loading time.
    encoder: HashMap<String, u32, fast_hash::Seeded>,
    /// id → token string; `None` for ids not used by the files.
    tokens: Vec<Option<String>>,
    /// id → the bytes it decodes to.
    token_bytes: TokenBytes,
    /// id of the one-byte token for each byte (or `NO_TOKEN`).
    byte_ids: [u32; 256],
    merges: Merges,
    /// Vocabulary tokens by their bytes, for the whole-token shortcut (see `encode.rs`).
    vocab_index: VocabIndex,
    added: AddedTokens,
    bos: Option<u32>,
    eos: Option<u32>,
    unk: Option<u32>,
    pad: Option<u32>,
    /// `additional_special_tokens`' ids.
    additional_special: Vec<u32>,
    options: TokenizerOptions,
}

impl Tokenizer {
    /// GPT-2's `vocab.json` (token → id) and `merges.txt` (`#version` line, then `left right`).
    pub fn from_vocab_merges(vocab_json: &Path, merges_txt: &Path) -> Result<Self> {
        let vocab = read_file(vocab_json)?;
        let merges = read_file(merges_txt)?;
        let parts = load::parts_from_vocab_merges(&vocab, vocab_json, &merges, merges_txt)?;
        Self::from_parts(parts, vocab_json, merges_txt)
    }

    /// Same as [`Tokenizer::from_vocab_merges`] from bytes in memory; `origin` names them in
    /// errors (`origin/vocab.json`, `origin/merges.txt`).
    pub fn from_bytes_vocab_merges(vocab: &[u8], merges: &[u8], origin: &Path) -> Result<Self> {
        let vocab_origin = origin.join("vocab.json");
        let merges_origin = origin.join("merges.txt");
        let parts = load::parts_from_vocab_merges(vocab, &vocab_origin, merges, &merges_origin)?;
        Self::from_parts(parts, &vocab_origin, &merges_origin)
    }

    /// Hugging Face tokenizers' `tokenizer.json` with a byte-level BPE model: `model.vocab`,
    /// `model.merges` (`"a b"` strings or `["a", "b"]` pairs), `added_tokens`, and the
    /// ByteLevel pre-tokenizer's `add_prefix_space`.
    pub fn from_tokenizer_json(path: &Path) -> Result<Self> {
        Self::from_bytes_tokenizer_json(&read_file(path)?, path)
    }

    /// Same as [`Tokenizer::from_tokenizer_json`] from bytes in memory; `origin` names them in
    /// errors.
    pub fn from_bytes_tokenizer_json(bytes: &[u8], origin: &Path) -> Result<Self> {
        let parts = load::parts_from_tokenizer_json(bytes, origin)?;
        Self::from_parts(parts, origin, origin)
    }

    /// Whether `dir` holds tokenizer files [`Tokenizer::from_model_dir`] reads (`vocab.json` and
    /// `merges.txt`, or `tokenizer.json`); a folder may carry weights only.
    pub fn in_folder(dir: &Path) -> bool {
        (dir.join("vocab.json").is_file() && dir.join("merges.txt").is_file())
            || dir.join("tokenizer.json").is_file()
            || (dir.join(crate::tf::VOCAB).is_file() && dir.join(crate::tf::MERGES).is_file())
    }

    /// A model folder: `vocab.json` + `merges.txt` when both exist, else `tokenizer.json` (else an
    /// OpenAI checkpoint folder's `encoder.json` + `vocab.bpe`); then
    /// `tokenizer_config.json` when present (bos/eos/unk/pad tokens, `added_tokens_decoder`,
    /// `add_prefix_space`, `errors`, `split_special_tokens`). Configs without
    /// `added_tokens_decoder` (older transformers) are completed, as transformers does, by
    /// `special_tokens_map.json` (which then takes precedence), `added_tokens.json`, and the
    /// `added_tokens` of a `tokenizer.json` next to vocab.json/merges.txt.
    pub fn from_model_dir(dir: &Path) -> Result<Self> {
        let vocab = dir.join("vocab.json");
        let merges = dir.join("merges.txt");
        let tokenizer_json = dir.join("tokenizer.json");
        let (encoder, bpe) = (dir.join(crate::tf::VOCAB), dir.join(crate::tf::MERGES));
        let mut tok = if vocab.is_file() && merges.is_file() {
            Self::from_vocab_merges(&vocab, &merges)?
        } else if tokenizer_json.is_file() {
            Self::from_tokenizer_json(&tokenizer_json)?
        } else if encoder.is_file() && bpe.is_file() {
            // An OpenAI checkpoint folder: the same two files under their original names.
            Self::from_vocab_merges(&encoder, &bpe)?
        } else {
            return Err(Error::bad_file(
                dir,
                "no tokenizer found: expected vocab.json and merges.txt, or tokenizer.json (or an OpenAI \
                 checkpoint's encoder.json and vocab.bpe), in this folder",
            ));
        };
        // As transformers' `from_pretrained`: tokenizer_config.json always; special_tokens_map.json,
        // added_tokens.json and tokenizer.json's added tokens only for "legacy" configs that have
        // no `added_tokens_decoder`.
        let config_path = dir.join("tokenizer_config.json");
        let mut legacy = true;
        if config_path.is_file() {
            let value = load::parse_json_bytes(&read_file(&config_path)?, &config_path)?;
            legacy = value.get("added_tokens_decoder").is_none();
            tok.apply_config(&value, &config_path)?;
        }
        if legacy {
            let map_path = dir.join("special_tokens_map.json");
            if map_path.is_file() {
                let value = load::parse_json_bytes(&read_file(&map_path)?, &map_path)?;
                tok.apply_config(&value, &map_path)?;
            }
            let added_path = dir.join("added_tokens.json");
            if added_path.is_file() {
                let value = load::parse_json_bytes(&read_file(&added_path)?, &added_path)?;
                for (content, id) in load::parse_vocab(&value, &added_path, "added_tokens.json")? {
                    let special = [tok.bos, tok.eos, tok.unk, tok.pad]
                        .iter()
                        .any(|&s| s.is_some() && s == tok.token_to_id(&content));
                    let spec = AddedSpec { content, id: Some(id), special, lstrip: false, rstrip: false };
                    tok.add_token(spec, &added_path)?;
                }
            }
            if tokenizer_json.is_file() && vocab.is_file() && merges.is_file() {
                let parts = load::parts_from_tokenizer_json(&read_file(&tokenizer_json)?, &tokenizer_json)?;
                for spec in parts.added {
                    tok.add_token(spec, &tokenizer_json)?;
                }
            }
        }
        Ok(tok)
    }

    fn from_parts(parts: Parts, vocab_origin: &Path, merges_origin: &Path) -> Result<Self> {
        let Parts { vocab, merges: merge_list, added, add_prefix_space } = parts;
        let size = vocab.iter().map(|&(_, id)| id as usize + 1).max().unwrap_or(0);
        let mut tokens: Vec<Option<String>> = vec![None; size];
        let mut encoder = HashMap::with_capacity_and_hasher(vocab.len() + 1, fast_hash::Seeded::default());
        for (token, id) in vocab {
            if let Some(other) = &tokens[id as usize] {
                return Err(Error::bad_file(vocab_origin, format!("tokens {other:?} and {token:?} both have id {id}")));
            }
            tokens[id as usize] = Some(token.clone());
            encoder.insert(token, id);
        }
        let mut byte_ids = [NO_TOKEN; 256];
        for (b, slot) in byte_ids.iter_mut().enumerate() {
            let s = byte_map::byte_to_char(b as u8).to_string();
            if let Some(&id) = encoder.get(&s) {
                *slot = id;
            }
        }
        let mut merges = Merges::default();
        let mut joined = String::new();
        for (rank, (a, b, loc)) in merge_list.iter().enumerate() {
            let id_of = |t: &str| {
                encoder.get(t).copied().ok_or_else(|| {
                    Error::bad_file(
                        merges_origin,
                        format!(
                            "{}: merge {a:?} {b:?} uses token {t:?}, which is not in the vocabulary",
                            load::describe_merge(merges_origin, *loc)
                        ),
                    )
                })
            };
            let (ia, ib) = (id_of(a)?, id_of(b)?);
            joined.clear();
            joined.push_str(a);
            joined.push_str(b);
            let merged = id_of(&joined)?;
            merges.insert(ia, ib, rank as u32, merged);
        }
        let mut token_bytes = TokenBytes::default();
        let mut buf = Vec::new();
        for (id, token) in tokens.iter().enumerate() {
            if let Some(token) = token {
                buf.clear();
                byte_map::token_to_bytes(token, &mut buf);
                token_bytes.set(id as u32, &buf);
            }
        }
        let vocab_index = VocabIndex::new(&token_bytes, 0..tokens.len() as u32);
        let mut tok = Tokenizer {
            encoder,
            tokens,
            token_bytes,
            byte_ids,
            merges,
            vocab_index,
            added: AddedTokens::default(),
            bos: None,
            eos: None,
            unk: None,
            pad: None,
            additional_special: Vec::new(),
            options: TokenizerOptions {
                add_prefix_space: add_prefix_space.unwrap_or(false),
                ..TokenizerOptions::default()
            },
        };
        for spec in added {
            tok.add_token(spec, vocab_origin)?;
        }
        // GPT2Tokenizer's defaults: bos = eos = unk = "<|endoftext|>", no pad token.
        let eot = tok.add_token(
            AddedSpec { content: ENDOFTEXT.to_owned(), id: None, special: true, lstrip: false, rstrip: false },
            vocab_origin,
        )?;
        tok.bos = Some(eot);
        tok.eos = Some(eot);
        tok.unk = Some(eot);
        Ok(tok)
    }

    /// Registers an added token; returns its id. A token already registered keeps its flags;
    /// one already in the vocabulary keeps its id; a new one gets the next free id.
    fn add_token(&mut self, spec: AddedSpec, origin: &Path) -> Result<u32> {
        if spec.content.is_empty() {
            return Err(Error::bad_file(origin, "an added token has empty content"));
        }
        if spec.id.is_none() {
            if let Some(existing) = self.added.get(&spec.content) {
                return Ok(existing.id);
            }
        }
        let id = match (self.encoder.get(&spec.content), spec.id) {
            (Some(&have), Some(want)) if have != want => {
                return Err(Error::bad_file(
                    origin,
                    format!("added token {:?} has id {want}, but the vocabulary gives it id {have}", spec.content),
                ))
            }
            (Some(&have), _) => have,
            (None, Some(want)) => {
                if let Some(Some(other)) = self.tokens.get(want as usize) {
                    return Err(Error::bad_file(
                        origin,
                        format!("added token {:?} has id {want}, which is already {other:?}", spec.content),
                    ));
                }
                want
            }
            (None, None) => self.tokens.len() as u32,
        };
        let idx = id as usize;
        if idx >= self.tokens.len() {
            self.tokens.resize(idx + 1, None);
        }
        self.tokens[idx] = Some(spec.content.clone());
        // The whole-token shortcut was proven for the old bytes only.
        if let Some(entry) = self.token_bytes.get(id).and_then(|b| self.vocab_index.find(b)) {
            if entry.id == id {
                entry.set_whole(false);
            }
        }
        self.token_bytes.set(id, spec.content.as_bytes());
        self.encoder.insert(spec.content.clone(), id);
        self.added.insert(AddedToken {
            content: spec.content,
            id,
            special: spec.special,
            lstrip: spec.lstrip,
            rstrip: spec.rstrip,
        });
        Ok(id)
    }

    /// tokenizer_config.json / special_tokens_map.json settings.
    fn apply_config(&mut self, cfg: &Value, path: &Path) -> Result<()> {
        if !cfg.is_object() {
            return Err(Error::bad_file(path, "expected a JSON object"));
        }
        if let Some(decoder) = cfg.get("added_tokens_decoder").and_then(Value::as_object) {
            for (key, v) in decoder {
                let id = key.parse::<u64>().ok().filter(|&id| id < load::MAX_VOCAB).ok_or_else(|| {
                    Error::bad_file(path, format!("added_tokens_decoder: key {key:?} is not a token id"))
                })?;
                let spec = load::parse_added_token(v, Some(id as u32), path, &format!("added_tokens_decoder.{key}"))?;
                self.add_token(spec, path)?;
            }
        }
        for (key, slot) in [("bos_token", 0), ("eos_token", 1), ("unk_token", 2), ("pad_token", 3)] {
            let Some(entry) = load::special_token_entry(cfg, key, path)? else {
                continue;
            };
            let id = match entry {
                Some(spec) => Some(self.add_token(spec, path)?),
                None => None,
            };
            match slot {
                0 => self.bos = id,
                1 => self.eos = id,
                2 => self.unk = id,
                _ => self.pad = id,
            }
        }
        if let Some(list) = cfg.get("additional_special_tokens") {
            let Value::Array(items) = list else {
                return Err(Error::bad_file(path, format!("additional_special_tokens: expected a list, found {list}")));
            };
            self.additional_special.clear();
            for (i, item) in items.iter().enumerate() {
                let key = format!("additional_special_tokens[{i}]");
                if let Some(Some(spec)) = load::special_token_value(Some(item), &key, path)? {
                    let id = self.add_token(spec, path)?;
                    self.additional_special.push(id);
                }
            }
        }
        if let Some(b) = load::config_bool(cfg, "add_prefix_space", path)? {
            self.options.add_prefix_space = b;
        }
        if let Some(b) = load::config_bool(cfg, "split_special_tokens", path)? {
            self.options.split_special_tokens = b;
        }
        if let Some(b) = load::config_bool(cfg, "add_bos_token", path)? {
            self.options.add_bos_token = b;
        }
        match cfg.get("errors") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s == "replace" => self.options.errors = DecodeErrors::Replace,
            Some(Value::String(s)) if s == "ignore" => self.options.errors = DecodeErrors::Ignore,
            Some(Value::String(s)) if s == "strict" => self.options.errors = DecodeErrors::Strict,
            Some(v) => {
                return Err(Error::bad_file(
                    path,
                    format!("errors: expected \"replace\", \"ignore\" or \"strict\", found {v}"),
                ))
            }
        }
        Ok(())
    }

    pub fn options(&self) -> &TokenizerOptions {
        &self.options
    }

    pub fn options_mut(&mut self) -> &mut TokenizerOptions {
        &mut self.options
    }

    /// Token ids for `text`, as `GPT2Tokenizer.encode(text)`: no eos, and the bos id first only
    /// with [`TokenizerOptions::add_bos_token`].
    ///
    /// ```
    /// # let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tiny-gpt2-hub");
    /// let tokenizer = quill::Tokenizer::from_model_dir(&dir)?;
    /// let ids = tokenizer.encode("Hello world");
    /// assert_eq!(ids, [15496, 995]);
    /// assert_eq!(tokenizer.decode(&ids)?, "Hello world");
    /// # Ok::<(), quill::Error>(())
    /// ```
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let text = self.with_prefix(text);
        self.with_bos(self.encode_segments(&self.segments(&text), &mut EncodeState::default()))
    }

    /// `ids` with the bos id first when the options ask for it.
    pub(crate) fn with_bos(&self, mut ids: Vec<u32>) -> Vec<u32> {
        if let (true, Some(bos)) = (self.options.add_bos_token, self.bos) {
            ids.insert(0, bos);
        }
        ids
    }

    /// The bytes token `id` stands for.
    pub(crate) fn token_bytes(&self, id: u32) -> Result<&[u8]> {
        self.token_bytes.get(id).ok_or_else(|| self.unknown_id(id))
    }

    fn unknown_id(&self, id: u32) -> Error {
        Error::input(format!("token id {id} is not in the vocabulary (vocab size {})", self.vocab_size()))
    }

    /// The bytes of the text `ids` stand for (before UTF-8 decoding).
    pub fn decode_bytes(&self, ids: &[u32]) -> Result<Vec<u8>> {
        self.token_bytes.concat(ids).map_err(|id| self.unknown_id(id))
    }

    /// Whether `id` is one of the special tokens `decode` can skip (transformers'
    /// `all_special_ids`): bos, eos, unk, pad and the `additional_special_tokens`.
    pub fn is_special_id(&self, id: u32) -> bool {
        [self.bos, self.eos, self.unk, self.pad].contains(&Some(id)) || self.additional_special.contains(&id)
    }

    /// [`Tokenizer::decode`] of `ids` without the special ones, as transformers'
    /// `decode(ids, skip_special_tokens=True)`.
    pub fn decode_skipping_special(&self, ids: &[u32]) -> Result<String> {
        let kept: Vec<u32> = ids.iter().copied().filter(|&id| !self.is_special_id(id)).collect();
        self.decode(&kept)
    }

    /// Text for `ids`, invalid UTF-8 handled per `options().errors`.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        // Valid UTF-8 (the usual case) becomes the String without a copy.
        String::from_utf8(self.decode_bytes(ids)?).or_else(|e| {
            let bytes = e.into_bytes();
            let mut out = String::with_capacity(bytes.len());
            stream::decode_utf8_into(&bytes, self.options.errors, true, &mut out)?;
            Ok(out)
        })
    }

    /// The token string for `id` (`"Ġlong"` form, as `convert_ids_to_tokens`).
    pub fn id_to_token(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize)?.as_deref()
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.encoder.get(token).copied()
    }

    /// Largest id + 1, added tokens included (50257 for GPT-2).
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    pub fn eos_id(&self) -> Option<u32> {
        self.eos
    }

    pub fn unk_id(&self) -> Option<u32> {
        self.unk
    }

    pub fn pad_id(&self) -> Option<u32> {
        self.pad
    }

    /// Number of merge rules.
    pub fn merges_len(&self) -> usize {
        self.merges.len()
    }

    /// Encodes several texts with truncation and padding (see [`BatchOptions`]).
    pub fn encode_batch(&self, texts: &[&str], opts: &BatchOptions) -> Batch {
        let encoded = texts.iter().map(|t| self.encode(t)).collect();
        let pad = self.pad.or(self.eos).unwrap_or(0);
        batch::assemble(encoded, opts, pad)
    }
}

#[cfg(test)]
mod tests;
