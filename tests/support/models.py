"""Tiny models built locally in seconds: no weights are downloaded in tests."""

from __future__ import annotations

import tempfile
from pathlib import Path

from support.corpora import digit_pairs, write_jsonl
from tasks.train import loop as trainloop
from tasks.train import scratch_model
from tasks.train import step as train


def build_digits_model(out_dir: Path) -> Path:
    """An untrained tiny Marian model whose tokenizer knows the digit-reading task's words."""
    texts = [side for pair in digit_pairs(400, seed=99) for side in pair]
    return scratch_model.build(texts, out_dir, size="tiny")


def build_digits_m2m100(out_dir: Path) -> Path:
    """A tiny untrained M2M100 (a forced-BOS, many-to-many family) with the real M2M100 tokenizer class."""
    import json

    from transformers import M2M100Config, M2M100ForConditionalGeneration, M2M100Tokenizer

    texts = [side for pair in digit_pairs(400, seed=99) for side in pair]
    spm_bytes = scratch_model.train_sentencepiece(texts, 400)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "sentencepiece.bpe.model").write_bytes(spm_bytes)
    import sentencepiece as spm

    processor = spm.SentencePieceProcessor(model_proto=spm_bytes)
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for i in range(processor.get_piece_size()):
        vocab.setdefault(processor.id_to_piece(i), len(vocab))
    (out_dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    tokenizer = M2M100Tokenizer(vocab_file=str(out_dir / "vocab.json"),
                                spm_file=str(out_dir / "sentencepiece.bpe.model"), language_codes="wmt21")
    tokenizer.save_pretrained(out_dir)
    # Language tokens (and fairseq's made-up words) sit after the sentencepiece vocabulary.
    vocab_size = max(tokenizer.lang_token_to_id.values()) + 1 + tokenizer.num_madeup_words
    config = M2M100Config(vocab_size=vocab_size, d_model=64, encoder_layers=2, decoder_layers=2,
                          encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=128,
                          decoder_ffn_dim=128, max_position_embeddings=64, pad_token_id=1, bos_token_id=0,
                          eos_token_id=2, decoder_start_token_id=2, dropout=0.0, scale_embedding=True)
    M2M100ForConditionalGeneration(config).save_pretrained(out_dir)
    return out_dir


def train_digits_model(base_dir: Path, out_dir: Path, steps: int = 300,
                       pairs: list[tuple[str, str]] | None = None) -> Path:
    """`base_dir` fine-tuned on the digit-reading task until it reads 3–7 digits correctly (or on `pairs`)."""
    pairs = pairs or digit_pairs(1300, seed=21)
    settings = train.TrainSettings("en", "de", 32, 32, trainloop.LoopSettings(
        learning_rate=3e-3, weight_decay=0.01, num_train_epochs=100, max_tokens_per_batch=512, max_steps=steps,
        warmup_steps=0.1, eval_every_steps=steps, precision="fp32", checkpoint_every_steps=10**6))
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        train.fine_tune(str(base_dir), write_jsonl(scratch / "train.jsonl", pairs[:1200]),
                        write_jsonl(scratch / "validation.jsonl", pairs[1200:]), settings, output_dir=out_dir,
                        checkpoints=trainloop.CheckpointDir(scratch / "checkpoints"))
    return out_dir
