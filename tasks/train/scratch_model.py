"""Build an untrained Marian translation model and its tokenizer from local text, with no download.

Used where no pretrained weights can be fetched: the offline demo builds its base model this way (then
trains it on bundled general-domain text), and the tests build tiny models in seconds. The tokenizer is a
joint sentencepiece model in Marian's layout (source.spm, target.spm, vocab.json), so the result loads with
`AutoTokenizer`/`AutoModelForSeq2SeqLM` exactly like an opus-mt model from the Hub.
"""

from __future__ import annotations

import io
import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

import sentencepiece as spm


@dataclass(frozen=True)
class ModelSize:
    vocab_size: int
    d_model: int
    layers: int
    heads: int
    ffn_dim: int
    decoder_layers: int | None = None  # a shallower decoder trains and decodes faster on CPU
    dropout: float = 0.1


SIZES = {
    "tiny": ModelSize(vocab_size=600, d_model=64, layers=2, heads=2, ffn_dim=128, dropout=0.0),  # tests
    # Dropout off: these models train for minutes, far from overfitting, and dropout only slows them down.
    # The demo's base: small enough that 5 minutes on 2 CPU cores (about 11k tokens/s, 3M tokens) take it past
    # the phase where it writes one sentence for every input (d_model 256 managed 3k tokens/s and did not).
    "small": ModelSize(vocab_size=2000, d_model=128, layers=2, heads=4, ffn_dim=512, decoder_layers=2,
                       dropout=0.0),
}


def train_sentencepiece(texts: Iterable[str], vocab_size: int) -> bytes:
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=model, vocab_size=vocab_size, model_type="unigram",
        character_coverage=1.0, byte_fallback=True, num_threads=2,
        # Marian's ids: </s>=0, <unk>=1, and <pad> appended after the pieces (see vocab.json below).
        eos_id=0, unk_id=1, bos_id=-1, pad_id=-1, hard_vocab_limit=False,
        minloglevel=2,
    )
    return model.getvalue()


def build(texts: Iterable[str], out_dir: Path, size: str = "tiny", seed: int = 0, *,
          max_length: int = 256) -> Path:
    """Write an untrained MarianMT model + tokenizer to `out_dir` (replacing what is there)."""
    import torch  # heavy, like transformers: imported only when a model is built
    from transformers import MarianConfig, MarianMTModel, MarianTokenizer

    dims = SIZES[size]
    spm_bytes = train_sentencepiece(texts, dims.vocab_size)
    processor = spm.SentencePieceProcessor(model_proto=spm_bytes)
    pieces = [processor.id_to_piece(i) for i in range(processor.get_piece_size())]
    vocab = {piece: i for i, piece in enumerate(pieces)}
    pad_id = len(vocab)
    vocab["<pad>"] = pad_id

    tmp = out_dir.with_name(out_dir.name + ".building")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in ("source.spm", "target.spm"):
        (tmp / name).write_bytes(spm_bytes)
    (tmp / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    tokenizer = MarianTokenizer(source_spm=str(tmp / "source.spm"), target_spm=str(tmp / "target.spm"),
                                vocab=str(tmp / "vocab.json"), model_max_length=max_length)
    tokenizer.save_pretrained(tmp)

    config = MarianConfig(
        vocab_size=len(vocab), decoder_vocab_size=len(vocab), d_model=dims.d_model,
        encoder_layers=dims.layers, decoder_layers=dims.decoder_layers or dims.layers,
        encoder_attention_heads=dims.heads, decoder_attention_heads=dims.heads,
        encoder_ffn_dim=dims.ffn_dim, decoder_ffn_dim=dims.ffn_dim,
        max_position_embeddings=max_length, pad_token_id=pad_id, eos_token_id=0,
        decoder_start_token_id=pad_id, forced_eos_token_id=0, share_encoder_decoder_embeddings=True,
        scale_embedding=True, dropout=dims.dropout, attention_dropout=0.0, activation_dropout=0.0,
    )
    torch.manual_seed(seed)
    model = MarianMTModel(config)
    model.generation_config.update(num_beams=4, bad_words_ids=[[pad_id]])
    model.save_pretrained(tmp)
    (tmp / "scratch_model.json").write_text(json.dumps({"size": size, **asdict(dims), "seed": seed}))
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return out_dir
