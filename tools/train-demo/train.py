#!/usr/bin/env python3
"""Train Quill's demo model: a small GPT-2 (GPT-2's real tokenizer, vocab 50257) on the
King James Bible, every book but Revelation; Revelation is held out for evaluation.

Input: the folder written by prepare_data.py (train.txt, revelation.txt).
Output (--out):
  model/            the trained model, float32: config.json, model.safetensors
                    (save_pretrained, safe_serialization), generation_config.json,
                    vocab.json, merges.txt, eval.json (held-out loss / perplexity)
  loss.csv          step, lr, train loss (mean of the last --log-every steps),
                    held-out loss and perplexity at the eval points, elapsed seconds
  ckpt.pt           resumable checkpoint (model, optimizer, step, log), rewritten every
                    --ckpt-minutes; a rerun of the same command resumes from it
  train.log         (when run as in README.md, via shell redirection)

Everything is seeded and the data order is a pure function of (seed, step), so a rerun
(or a resumed run) on the same machine and thread count gives the same weights; on other
hardware, float summation order differs and the result differs slightly.

Held-out perplexity uses the strided recipe of the transformers docs ("Perplexity of
fixed-length models"): windows of --eval-max-length tokens moving by --eval-stride, each
window scoring only its tokens not scored before, token-weighted (the number of labels
that are not -100, after the shift).
"""
import argparse
import csv
import json
import math
import os
import random
import shutil
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast, GenerationConfig

HERE = os.path.dirname(os.path.abspath(__file__))
TOK_DIR = os.path.join(HERE, "..", "..", "tests", "data", "gpt2-tokenizer")
VOCAB_FILE = os.path.join(TOK_DIR, "encoder.json")  # == GPT-2 vocab.json
MERGES_FILE = os.path.join(TOK_DIR, "vocab.bpe")  # == GPT-2 merges.txt
EOT_TEXT = "<|endoftext|>"
EOT_ID = 50256
CSV_FIELDS = ["step", "lr", "train_loss", "heldout_loss", "heldout_ppl", "elapsed_s"]


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.path.join(HERE, "out", "data"), help="folder from prepare_data.py")
    ap.add_argument("--out", default=os.path.join(HERE, "out"))
    ap.add_argument("--n-layer", type=int, default=6)
    ap.add_argument("--n-embd", type=int, default=256)
    ap.add_argument("--n-head", type=int, default=4)
    ap.add_argument("--n-positions", type=int, default=512)
    ap.add_argument("--block-size", type=int, default=512, help="tokens per training sequence")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--min-lr-ratio", type=float, default=0.1, help="cosine decays to lr * this")
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--beta2", type=float, default=0.95)
    ap.add_argument("--grad-clip", type=float, default=1.0)
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bf16", action="store_true",
                    help="bfloat16 autocast for the training forward/backward (weights, optimizer and "
                         "evaluation stay float32); fast on CPUs with AMX, slow on others")
    ap.add_argument("--log-every", type=int, default=20)
    ap.add_argument("--eval-every", type=int, default=200, help="0: only at the end")
    ap.add_argument("--eval-max-length", type=int, default=512)
    ap.add_argument("--eval-stride", type=int, default=256)
    ap.add_argument("--ckpt-minutes", type=float, default=10.0)
    ap.add_argument("--stop-after", type=int, default=0,
                    help="timing runs: stop after this many steps of this invocation, save nothing")
    ap.add_argument("--no-resume", action="store_true", help="ignore an existing ckpt.pt")
    return ap.parse_args(argv)


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_tokenizer():
    return GPT2TokenizerFast(vocab_file=VOCAB_FILE, merges_file=MERGES_FILE)


def encode_train(tok, path):
    """Every book's tokens, each book preceded by <|endoftext|> (token 50256)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    books = text.split("\n" + EOT_TEXT + "\n")
    ids = []
    for book in books:
        ids.append(EOT_ID)
        ids.extend(tok(book)["input_ids"])
    return torch.tensor(ids, dtype=torch.long), len(books)


def encode_heldout(tok, path):
    with open(path, encoding="utf-8") as f:
        return torch.tensor(tok(f.read())["input_ids"], dtype=torch.long)


class Batches:
    """Contiguous blocks of the token stream: block_size inputs plus the next token as the
    last target, so every token of the stream is predicted once an epoch (blocks overlap
    by that one token). Each epoch starts the blocks at an offset in [0, block_size) and
    visits them in a shuffled order, both drawn from a generator seeded with (seed, epoch):
    batch(step) depends only on (seed, step)."""

    def __init__(self, ids, block_size, batch_size, seed):
        self.ids, self.block, self.bs, self.seed = ids, block_size, batch_size, seed
        self.blocks_per_epoch = (len(ids) - block_size - 1) // block_size  # room for any offset
        self._epoch, self._order, self._offset = None, None, None

    def _plan(self, epoch):
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 1000003 + epoch)
            self._offset = int(torch.randint(0, self.block, (1,), generator=g))
            self._order = torch.randperm(self.blocks_per_epoch, generator=g)
            self._epoch = epoch

    def batch(self, step):
        rows = []
        for i in range(step * self.bs, (step + 1) * self.bs):
            epoch, j = divmod(i, self.blocks_per_epoch)
            self._plan(epoch)
            start = self._offset + int(self._order[j]) * self.block
            rows.append(self.ids[start:start + self.block + 1])
        return torch.stack(rows)

    def epochs(self, steps):
        return steps * self.bs / self.blocks_per_epoch


def train_loss(model, x):
    """Mean next-token cross-entropy of x[:, 1:] given x[:, :-1]: what model(x, labels=x).loss
    computes, without the shifted copy of the [batch, block, 50257] logits (and its
    zero-filled gradient) that the transformers loss makes, a quarter of a CPU step."""
    hidden = model.transformer(x[:, :-1]).last_hidden_state
    logits = model.lm_head(hidden).float()
    return F.cross_entropy(logits.view(-1, logits.size(-1)), x[:, 1:].reshape(-1))


def lr_at(step, args):
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    t = (step - args.warmup) / max(1, args.steps - args.warmup)
    t = min(t, 1.0)
    lo = args.lr * args.min_lr_ratio
    return lo + 0.5 * (args.lr - lo) * (1.0 + math.cos(math.pi * t))


@torch.no_grad()
def heldout_loss(model, ids, max_length=512, stride=256):
    """Mean NLL per scored token, transformers' strided recipe (token-weighted)."""
    was_training = model.training
    model.eval()
    ids = ids.unsqueeze(0)
    seq_len = ids.size(1)
    nll_sum, n_tokens, prev_end = 0.0, 0, 0
    for begin in range(0, seq_len, stride):
        end = min(begin + max_length, seq_len)
        trg_len = end - prev_end
        input_ids = ids[:, begin:end]
        target = input_ids.clone()
        target[:, :-trg_len] = -100
        loss = model(input_ids, labels=target).loss
        n = int((target != -100).sum()) - target.size(0)  # labels are shifted left by one
        nll_sum += float(loss) * n
        n_tokens += n
        prev_end = end
        if end == seq_len:
            break
    if was_training:
        model.train()
    return nll_sum / n_tokens, n_tokens


def make_optimizer(model, args):
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr, betas=(0.9, args.beta2), eps=1e-8,
    )


def write_csv(path, rows):
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


def save_checkpoint(path, model, opt, step, rows, elapsed, args):
    tmp = path + ".tmp"
    torch.save({
        "model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
        "rows": rows, "elapsed": elapsed, "args": vars(args),
        "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
    }, tmp)
    os.replace(tmp, path)


def save_model(model, out_dir, heldout, n_heldout_tokens, args, train_tokens, elapsed, final_loss):
    os.makedirs(out_dir, exist_ok=True)
    model = model.to(torch.float32)
    model.save_pretrained(out_dir, safe_serialization=True)
    shutil.copyfile(VOCAB_FILE, os.path.join(out_dir, "vocab.json"))
    shutil.copyfile(MERGES_FILE, os.path.join(out_dir, "merges.txt"))
    GenerationConfig(
        bos_token_id=EOT_ID, eos_token_id=EOT_ID, pad_token_id=EOT_ID,
        do_sample=True, temperature=0.8, top_k=40, top_p=1.0, max_new_tokens=80,
    ).save_pretrained(out_dir)
    with open(os.path.join(out_dir, "eval.json"), "w") as f:
        json.dump({
            "heldout": "Revelation (revelation.txt)", "heldout_tokens_scored": n_heldout_tokens,
            "eval_max_length": args.eval_max_length, "eval_stride": args.eval_stride,
            "heldout_loss": heldout, "heldout_ppl": math.exp(heldout),
            "final_train_loss": final_loss, "train_tokens": train_tokens, "steps": args.steps,
            "train_seconds": round(elapsed, 1), "args": vars(args),
        }, f, indent=2)
        f.write("\n")


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    seed_everything(args.seed)
    os.makedirs(args.out, exist_ok=True)
    ckpt_path = os.path.join(args.out, "ckpt.pt")
    csv_path = os.path.join(args.out, "loss.csv")

    tok = load_tokenizer()
    t0 = time.time()
    train_ids, n_books = encode_train(tok, os.path.join(args.data, "train.txt"))
    held_ids = encode_heldout(tok, os.path.join(args.data, "revelation.txt"))
    batches = Batches(train_ids, args.block_size, args.batch_size, args.seed)
    print(f"train: {n_books} books, {len(train_ids)} tokens ({batches.blocks_per_epoch} blocks of "
          f"{args.block_size}); held out: {len(held_ids)} tokens; tokenized in {time.time() - t0:.1f}s")
    print(f"{args.steps} steps x {args.batch_size} x {args.block_size} = "
          f"{batches.epochs(args.steps):.2f} epochs", flush=True)

    config = GPT2Config(
        vocab_size=50257, n_positions=args.n_positions, n_embd=args.n_embd, n_layer=args.n_layer,
        n_head=args.n_head, resid_pdrop=args.dropout, embd_pdrop=args.dropout, attn_pdrop=args.dropout,
        bos_token_id=EOT_ID, eos_token_id=EOT_ID,
    )
    model = GPT2LMHeadModel(config)
    n_params = sum(p.numel() for p in model.parameters())
    n_wte = model.transformer.wte.weight.numel()
    print(f"model: {n_params} parameters ({n_wte} in the tied embedding)", flush=True)
    opt = make_optimizer(model, args)

    step, rows, elapsed = 0, [], 0.0
    if os.path.exists(ckpt_path) and not args.no_resume and not args.stop_after:
        ck = torch.load(ckpt_path, weights_only=False)
        free = {"data", "out", "no_resume", "ckpt_minutes"}  # may differ without changing the run
        diff = {k: (ck["args"].get(k), v) for k, v in vars(args).items()
                if k not in free and ck["args"].get(k) != v}
        if diff:
            sys.exit(f"{ckpt_path} was made with other arguments {diff} (saved, now); "
                     "pass --no-resume or remove it")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        step, rows, elapsed = ck["step"], ck["rows"], ck["elapsed"]
        torch.set_rng_state(ck["rng"]["torch"])
        np.random.set_state(ck["rng"]["numpy"])
        random.setstate(ck["rng"]["python"])
        print(f"resumed from {ckpt_path} at step {step}", flush=True)

    model.train()
    last_ckpt = time.time()
    t_start = time.time() - elapsed
    window = []
    run_steps = 0
    while step < args.steps:
        lr = lr_at(step, args)
        for group in opt.param_groups:
            group["lr"] = lr
        x = batches.batch(step)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            loss = train_loss(model, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        opt.step()
        window.append(float(loss))
        step += 1
        run_steps += 1

        row = None
        if step % args.log_every == 0 or step == args.steps:
            row = {"step": step, "lr": f"{lr:.6g}", "train_loss": f"{sum(window) / len(window):.4f}",
                   "heldout_loss": "", "heldout_ppl": "", "elapsed_s": f"{time.time() - t_start:.1f}"}
            window = []
        if (args.eval_every and step % args.eval_every == 0) or step == args.steps:
            hl, _ = heldout_loss(model, held_ids, args.eval_max_length, args.eval_stride)
            row = row or {"step": step, "lr": f"{lr:.6g}", "train_loss": "", "elapsed_s": ""}
            row.update(heldout_loss=f"{hl:.4f}", heldout_ppl=f"{math.exp(hl):.3f}",
                       elapsed_s=f"{time.time() - t_start:.1f}")
        if row:
            rows.append(row)
            print(" ".join(f"{k}={v}" for k, v in row.items() if v != ""), flush=True)
            if not args.stop_after:
                write_csv(csv_path, rows)
        if args.stop_after and run_steps >= args.stop_after:
            dt = time.time() - t_start
            print(f"timing run: {run_steps} steps in {dt:.1f}s = {dt / run_steps:.2f} s/step", flush=True)
            return
        if time.time() - last_ckpt > args.ckpt_minutes * 60 and step < args.steps:
            save_checkpoint(ckpt_path, model, opt, step, rows, time.time() - t_start, args)
            last_ckpt = time.time()
            print(f"checkpoint at step {step}", flush=True)

    elapsed = time.time() - t_start
    hl, n_scored = heldout_loss(model, held_ids, args.eval_max_length, args.eval_stride)
    final_train = float(rows[-1]["train_loss"]) if rows and rows[-1]["train_loss"] else float("nan")
    model_dir = os.path.join(args.out, "model")
    save_model(model, model_dir, hl, n_scored, args, len(train_ids), elapsed, final_train)
    save_checkpoint(ckpt_path, model, opt, step, rows, elapsed, args)
    print(f"done: {step} steps in {elapsed / 60:.1f} min; final train loss {final_train:.4f}; "
          f"held-out (Revelation, {n_scored} tokens) loss {hl:.4f}, perplexity {math.exp(hl):.3f}")
    print(f"saved {model_dir}", flush=True)


if __name__ == "__main__":
    main()
