"""The evaluate and gate steps: the champion lookup, decoding engines, sacrebleu scoring, the promotion gate and the
evaluation report."""
