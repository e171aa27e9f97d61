import pytest

from tasks import batching


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
