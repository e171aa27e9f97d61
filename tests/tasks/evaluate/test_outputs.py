"""The degenerate-output figures the gate refuses by (tasks/evaluate/outputs.py), as a table of outputs with known
answers: runaway repetitions in scripts written with spaces between words and without."""

import pytest

from tasks.evaluate import outputs


@pytest.mark.parametrize("text, runaway", [
    ("the file the file the file the file", True),
    ("null null null null", True),
    ("null null null", False),
    ("这是" + "的" * 60, True),  # Chinese looping on one character until the length limit
    ("机器翻译" + "质量" * 30, True),
    ("ฉันไป" + "ไป" * 40, True),  # Thai
    ("ファイル" + "を開く" * 10, True),  # Japanese
    ("我们今天去公园散步。", False),
    ("文件无法打开。请重试。", False),
    ("哈哈哈", False),
    ("-------- ........ 00000000 1111111111", False),  # rules, leaders and numbers are no words repeating
    ("Mississippi", False),
])
def test_a_runaway_output_is_found_with_or_without_spaces_between_words(text, runaway):
    assert outputs.is_runaway(text) is runaway


def test_a_chinese_candidate_that_loops_on_a_fifth_of_its_outputs_shows_it():
    hypotheses = ["我们今天去公园散步。", "这是测试句子。", "机器翻译" + "质量" * 30, "文件无法打开。", "请重试。"]
    assert outputs.statistics(hypotheses, ["a", "b", "c", "d", "e"])["runaway"] == 0.2
