import pytest

from tasks.train import batching


def _data(lengths):
    return batching.Encoded([[5] * n for n in lengths], [[6] * max(1, n - 1) for n in lengths])


@pytest.mark.parametrize("max_tokens, max_sentences", [(64, 512), (256, 512), (256, 3), (1000, 100)])
def test_batches_cover_every_pair_once_within_the_budget(max_tokens, max_sentences):
    data = _data([1, 3, 7, 8, 9, 15, 16, 17, 31, 40] * 7)
    batches = batching.make_batches(data, max_tokens, max_sentences, seed=1, epoch=0)
    assert sorted(i for b in batches for i in b) == list(range(len(data)))
    for b in batches:
        padded = max(-(-max(len(data.sources[i]), len(data.targets[i])) // 8) * 8 for i in b)
        assert len(b) == 1 or padded * len(b) <= max_tokens
        assert len(b) <= max_sentences


def test_batch_order_is_reproducible_per_epoch_and_differs_between_epochs():
    data = _data(list(range(1, 60)) * 4)
    first = batching.make_batches(data, 128, 512, seed=3, epoch=0)
    assert first == batching.make_batches(data, 128, 512, seed=3, epoch=0)
    assert first != batching.make_batches(data, 128, 512, seed=3, epoch=1)


def test_collate_pads_to_multiples_of_8_and_masks_labels():
    data = batching.Encoded([[4, 5, 0], [7, 0]], [[8, 9, 10, 0], [11, 0]])
    t = batching.collate(data, [0, 1], pad_id=99, decoder_start_id=99)
    assert t["input_ids"].shape == (2, 8) and t["labels"].shape == (2, 8)
    assert t["input_ids"][1].tolist() == [7, 0] + [99] * 6
    assert t["attention_mask"][1].tolist() == [1, 1] + [0] * 6
    assert t["labels"][0].tolist() == [8, 9, 10, 0] + [-100] * 4
    assert t["decoder_input_ids"][0].tolist()[:4] == [99, 8, 9, 10]


def test_cpu_batches_are_padded_to_the_longest_and_gpu_batches_to_multiples_of_8():
    import torch

    assert batching.pad_multiple(torch.device("cuda")) == 8
    assert batching.pad_multiple(torch.device("cpu")) == 1
    data = batching.Encoded([[4, 5, 0], [7, 0]], [[8, 9, 10, 11, 0], [11, 0]])
    t = batching.collate(data, [0, 1], pad_id=99, decoder_start_id=99, multiple=1)
    assert t["input_ids"].shape == (2, 3) and t["labels"].shape == (2, 5)
    # Without rounding, more sentences fit the same budget: 12 pairs of 9 tokens, 9 × 12 ≤ 108 < 16 × 12.
    nines = _data([9] * 12)
    assert len(batching.make_batches(nines, 108, 512, seed=0, epoch=0, multiple=1)) == 1
    assert len(batching.make_batches(nines, 108, 512, seed=0, epoch=0)) == 2


@pytest.mark.parametrize("max_tokens", [0, 16, 64, 10_000])
def test_micro_batches_split_a_batch_within_the_budget_and_lose_nothing(max_tokens):
    data = _data([1, 3, 7, 8, 9, 15, 16, 17, 31, 40])
    batch = [9, 0, 4, 2, 8, 1]
    pieces = batching.micro_batches(data, batch, max_tokens)
    assert sorted(i for p in pieces for i in p) == sorted(batch)
    if max_tokens in (0, 10_000):
        assert len(pieces) == 1
    for p in pieces:
        padded = max(-(-data.length(i) // 8) * 8 for i in p)
        assert len(p) == 1 or max_tokens == 0 or padded * len(p) <= max_tokens


def test_accumulated_micro_batches_give_the_whole_batchs_gradient(tiny_model):
    """The CPU's micro-batches change how a step is computed, not what it computes."""
    import torch
    from transformers import AutoModelForSeq2SeqLM

    from tasks.train import feed, tokenloss
    from tasks.train import passes
    from tasks.train.precision import choose_precision

    model = AutoModelForSeq2SeqLM.from_pretrained(tiny_model)
    model.config.dropout = 0.0
    model.train()
    g = torch.Generator().manual_seed(0)
    lengths = [3, 5, 9, 12, 17, 4, 22, 8]
    data = batching.Encoded([torch.randint(5, 100, (n,), generator=g).tolist() + [0] for n in lengths],
                            [torch.randint(5, 100, (n + 2,), generator=g).tolist() + [0] for n in lengths])
    batch, device = list(range(len(lengths))), torch.device("cpu")
    precision = choose_precision(device, "fp32")
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    pad = model.config.pad_token_id
    net = tokenloss.token_loss_module(model)

    def gradients(micro_tokens):
        model.zero_grad(set_to_none=True)
        pieces = feed.prepare(data, batch, micro_tokens, pad, pad, multiple=1)
        loss = passes.forward_backward(net, pieces, device, precision, scaler, 1)
        return loss.item(), [p.grad.clone() for p in model.parameters() if p.grad is not None]

    whole_loss, whole = gradients(0)
    split_loss, split = gradients(40)
    assert len(batching.micro_batches(data, batch, 40)) > 2
    assert split_loss == pytest.approx(whole_loss, rel=1e-5)
    for a, b in zip(whole, split):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_each_side_is_truncated_by_its_own_limit_and_keeps_its_end_of_sentence(tiny_model):
    """Targets used to be cut at max_source_length and then sliced, which dropped `</s>` (and a longer target
    limit did nothing)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    long_text = " ".join(["eins zwei drei vier"] * 10)
    data = batching.encode(tokenizer, [long_text], [long_text], max_source_length=8, max_target_length=20)
    assert len(data.sources[0]) == 8 and len(data.targets[0]) == 20
    assert data.sources[0][-1] == data.targets[0][-1] == tokenizer.eos_token_id
    short = batching.encode(tokenizer, [long_text], [long_text], max_source_length=20, max_target_length=6)
    assert len(short.targets[0]) == 6 and short.targets[0][-1] == tokenizer.eos_token_id


@pytest.mark.parametrize("model_fixture, target_lang", [("tiny_model", "de"), ("tiny_m2m100", "de"),
                                                         ("tiny_m2m100", "ru")])
def test_tokenizing_in_worker_processes_gives_the_same_ids_as_in_one(request, monkeypatch, model_fixture,
                                                                      target_lang):
    """Each worker gets the tokenizer as the caller prepared it: for M2M100 the language codes the family set, which
    a tokenizer loaded afresh in the worker would not have (a wrong target code in every label)."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from support.corpora import digit_pairs

    folder = request.getfixturevalue(model_fixture)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    from tasks.train import families

    families.prepare(AutoModelForSeq2SeqLM.from_pretrained(folder), tokenizer, "en", target_lang)
    pairs = digit_pairs(300, seed=5)
    sources, targets = [s for s, _ in pairs], [t for _, t in pairs]
    monkeypatch.setattr(batching, "ENCODE_CHUNK", 32)  # 10 pieces of work for 3 workers, out of order
    alone = batching.encode(tokenizer, sources, targets, 16, 6)
    parallel = batching.encode(tokenizer, sources, targets, 16, 6, workers=3)
    assert parallel == alone and len(parallel) == 300
    assert max(map(len, parallel.targets)) == 6 and parallel.targets[0][-1] == tokenizer.eos_token_id
    if model_fixture == "tiny_m2m100":
        assert {ids[0] for ids in parallel.targets} == {tokenizer.get_lang_id(target_lang)}


def test_only_a_large_corpus_and_a_slow_tokenizer_are_tokenized_in_several_processes(monkeypatch):
    from tasks import hardware

    slow, fast = type("Slow", (), {"is_fast": False})(), type("Fast", (), {"is_fast": True})()
    monkeypatch.setattr(hardware, "usable_cpus", lambda: 64)
    assert batching.encode_workers(slow, batching.PARALLEL_MIN_PAIRS - 1) == 1  # starting them would cost more
    assert batching.encode_workers(fast, 10**7) == 1  # a Rust tokenizer uses several threads already
    assert batching.encode_workers(slow, 10**6) == batching.MAX_ENCODE_WORKERS
    # 8 training processes share the machine's MAX_ENCODE_WORKERS (each worker imports transformers).
    assert batching.encode_workers(slow, 10**6, processes_here=8) == batching.MAX_ENCODE_WORKERS // 8
    monkeypatch.setattr(hardware, "usable_cpus", lambda: 3)
    assert batching.encode_workers(slow, 10**6, processes_here=8) == 1


def test_a_tokenizer_that_cannot_travel_to_workers_tokenizes_in_this_process(caplog):
    class Unpicklable:
        is_fast = False

        def __reduce__(self):
            raise TypeError("cannot pickle a handle")

        def __call__(self, texts=None, text_target=None, max_length=0, truncation=True):
            return {"input_ids": [[len(t)] for t in (texts if texts is not None else text_target)]}

    data = batching.encode(Unpicklable(), ["a", "bb"] * 5000, ["c"] * 10000, 8, 8, workers=4)
    assert data.sources[:2] == [[1], [2]] and len(data) == 10000
    assert "tokenizing in this process only: the tokenizer cannot be sent to workers (TypeError" in caplog.text


@pytest.mark.parametrize("ranks", [2, 4, 8])
def test_data_parallel_ranks_share_every_batch_of_an_epoch(ranks):
    """Each rank takes every `ranks`-th batch and a step is one batch of each (tasks/train/loop.py): a remainder of
    batches was left out of the epoch, a tenth of the pairs with 36 batches on 8 GPUs."""
    data = _data([3, 5, 9, 12, 17, 20, 31, 40] * 30)
    batches = batching.make_batches(data, 256, 512, seed=1, epoch=0)
    assert len(batches) % ranks  # the case that lost pairs
    shared = batching.for_ranks(batches, ranks)
    steps = len(shared) // ranks
    taken = [i for rank in range(ranks) for b in shared[rank::ranks][:steps] for i in b]
    assert sorted(taken) == list(range(len(data)))  # every pair, once
    for b in shared:
        padded = max(-(-data.length(i) // 8) * 8 for i in b)
        assert len(b) == 1 or padded * len(b) <= 256
    assert batching.for_ranks(batches, 1) == batches


def test_too_few_pairs_to_split_leave_the_batches_as_they_are():
    data = _data([3, 5])
    batches = batching.make_batches(data, 8, 512, seed=1, epoch=0)
    assert sorted(map(len, batching.for_ranks(batches, 4))) == [1, 1]


def test_the_training_loop_gives_its_ranks_every_batch_of_an_epoch():
    from types import SimpleNamespace

    from tasks.train import loop

    data = _data([3, 5, 9, 12, 17, 20, 31, 40] * 30)
    run = SimpleNamespace(train_data=data, multiple=8, world_size=8, settings=SimpleNamespace(
        max_tokens_per_batch=256, max_sentences_per_batch=512, seed=1))
    for epoch in range(3):
        batches = loop._Training._batches(run, epoch)
        assert len(batches) % 8 == 0 and sorted(i for b in batches for i in b) == list(range(len(data)))
