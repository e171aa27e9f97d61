"""Decoding with transformers' own `generate`: every family, on CPU or GPU (bf16 where the GPU has it)."""

from __future__ import annotations

from tasks.evaluate.decoding import Decoder
from tasks.train import batching, families
from tasks.train.precision import cuda_has_native_bf16, shape_agnostic_attention


class TransformersDecoder(Decoder):
    engine = "transformers"

    def _load(self) -> None:
        import torch
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        model = families.load_model(self.model_dir)  # fp32, then bf16 below where the GPU has it
        self.family = families.prepare(model, self.tokenizer, self.source_lang, self.target_lang)
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        shape_agnostic_attention(device)
        if device.type == "cuda" and cuda_has_native_bf16():
            # bf16 keeps fp32's exponent range; fp16 is not used because Marian overflows in it. A GPU that
            # only emulates bf16 (V100, T4) decodes in fp32: emulated bf16 is slower than fp32 there.
            model, self.precision = model.to(torch.bfloat16), "bf16"
        self.model, self.device = model.to(device).eval(), device.type

    def _decode(self, batch: list[list[int]], max_new_tokens: int) -> list[str]:
        import torch

        inputs = self.tokenizer.pad({"input_ids": batch}, return_tensors="pt",
                                    pad_to_multiple_of=batching.PAD_MULTIPLE).to(self.model.device)
        with torch.inference_mode():
            out = self.model.generate(**inputs, num_beams=self.settings.num_beams, max_new_tokens=max_new_tokens,
                                      early_stopping=self.settings.early_stopping, **self.family.generate_kwargs)
        # The forced target-language token is not always flagged special (M2M100), so it is dropped by id.
        drop = self.family.generate_kwargs.get("forced_bos_token_id")
        return self.tokenizer.batch_decode([[t for t in row if t != drop] for row in out.tolist()],
                                           skip_special_tokens=True)
