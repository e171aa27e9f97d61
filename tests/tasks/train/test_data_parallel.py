"""Several GPUs: `python -m tasks train` re-runs itself under torchrun, and the ranks train one model.

No GPU is needed to test this: the relaunch decision is a pure function, and a real two-process
data-parallel run works on CPU with the gloo backend.
"""

import json
import subprocess
import sys

import pytest

from support.corpora import digit_pairs
from support.runs import REPO_ROOT, cli, cli_env, make_run, write_splits
from tasks.__main__ import data_parallel_command
from tasks.train import step as train

ARGV = ["train", "--run-dir", "s3://runs/r1"]
TORCHRUN = ["py", "-m", "torch.distributed.run", "--standalone"]


@pytest.mark.parametrize("step, env, gpus, expected", [
    ("train", {}, 4, TORCHRUN + ["--nproc_per_node=4", "-m", "tasks", *ARGV]),
    ("train", {}, 1, None),  # one GPU: train right here
    ("train", {}, 0, None),  # CPU only
    ("train", {"LOCAL_RANK": "0", "WORLD_SIZE": "4"}, 4, None),  # already started by torchrun
    ("train", {"TORCHELASTIC_RUN_ID": "x"}, 4, None),
    ("train", {"MT_TRAIN_PROCESSES": "2"}, 8, TORCHRUN + ["--nproc_per_node=2", "-m", "tasks", *ARGV]),
    ("train", {"MT_TRAIN_PROCESSES": "1"}, 8, None),  # the deployment turned it off
    ("train", {"MT_TRAIN_PROCESSES": "2"}, 0, TORCHRUN + ["--nproc_per_node=2", "-m", "tasks", *ARGV]),  # gloo
    ("evaluate", {}, 4, None),  # decoding is not data-parallel
])
def test_when_training_relaunches_under_torchrun(step, env, gpus, expected):
    argv = [step, *ARGV[1:]]
    assert data_parallel_command(step, argv, env, gpus, python="py") == expected


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_a_bad_process_count_is_a_clear_error(value):
    with pytest.raises(ValueError, match="MT_TRAIN_PROCESSES must be a whole number"):
        data_parallel_command("train", ARGV, {"MT_TRAIN_PROCESSES": value}, 2)


def test_two_processes_train_one_model_on_cpu_with_gloo(tmp_path, tiny_model):
    cfg = make_run(tmp_path / "artifacts", base_model=str(tiny_model), max_steps=4, num_train_epochs=10,
                   eval_every_steps=2, checkpoint_every_steps=2, early_stopping_patience=0, max_tokens_per_batch=512)
    pairs = digit_pairs(220, seed=9)
    write_splits(cfg, tmp_path, train=pairs[:200], validation=pairs[200:])
    env = {**cli_env(), "MT_TRAIN_PROCESSES": "2"}  # stands in for a pod with two GPUs

    done = subprocess.run(cli("train", cfg.run_dir), env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "data-parallel training: " in done.stderr and "--nproc_per_node=2" in done.stderr
    report = train.result(cfg)
    assert report["world_size"] == 2 and report["steps"] == 4 and report["saved"] is True
    assert [json.loads(line)["world_size"] for line in done.stdout.splitlines() if line.startswith("{")] == [2]
    # Only rank 0 logs progress and saves: one line per logged step, one checkpoint per checkpoint step.
    assert done.stderr.count("step 4/4") == 1
    assert sorted(p.name for p in (tmp_path / "artifacts").rglob("step-*")) == ["step-00000002", "step-00000004"]


RANKS_WITH_UNEVEN_BATCHES = '''
import sys
sys.path.insert(0, sys.argv[3])  # the tests' own folder, for their corpora
import torch
import torch.distributed as dist
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer
from support.corpora import digit_pairs
from tasks.train import adaptation, batching, feed, passes, tokenloss
from tasks.train.precision import Precision

dist.init_process_group("gloo")
rank = dist.get_rank()
model_dir, out = sys.argv[1], sys.argv[2]
tokenizer = AutoTokenizer.from_pretrained(model_dir)
pairs = digit_pairs(40, seed=11)
data = batching.encode(tokenizer, [s for s, _ in pairs], [t for _, t in pairs], 32, 32)
batches = [list(range(0, 3)), list(range(3, 40))]  # rank 0 sees few target tokens, rank 1 many more
fp32, off = Precision("fp32", "test"), torch.amp.GradScaler("cpu", enabled=False)


def pieces(batch):
    return feed.prepare(data, batch, 64, model.config.pad_token_id, model.config.decoder_start_token_id, 1)


def load():
    loaded = AutoModelForSeq2SeqLM.from_pretrained(model_dir).eval()  # no dropout: both runs see one network
    adaptation.freeze_fixed_tables(loaded)  # as the train step does: DDP syncs only once every weight has a gradient
    return loaded


model = load()
net = torch.nn.parallel.DistributedDataParallel(tokenloss.token_loss_module(model))
passes.forward_backward(net, pieces(batches[rank]), torch.device("cpu"), fp32, off, 2)
if rank == 0:
    alone = load()
    both = pieces(batches[0]) + pieces(batches[1])
    passes.forward_backward(tokenloss.token_loss_module(alone), both, torch.device("cpu"), fp32, off, 1)
    ddp = dict(net.module.model.named_parameters())
    # Over all weights at once: a key projection's bias gets a gradient of ~1e-12 (softmax ignores it), noise
    # that no per-weight ratio survives.
    want = torch.cat([p.grad.flatten() for n, p in alone.named_parameters() if p.grad is not None])
    got = torch.cat([ddp[n].grad.flatten() for n, p in alone.named_parameters() if p.grad is not None])
    with open(out, "w") as fh:
        fh.write(str(float((got - want).norm() / want.norm())))
dist.destroy_process_group()
'''


def test_two_ranks_with_uneven_batches_give_the_gradient_of_their_union(tmp_path, tiny_model):
    """A token weighs the same whichever rank saw it: two ranks' gradient equals one process's over both
    batches, even when one rank's batch holds far fewer target tokens than the other's."""
    script = tmp_path / "ranks.py"
    script.write_text(RANKS_WITH_UNEVEN_BATCHES)
    out = tmp_path / "difference.txt"
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(script), str(tiny_model), str(out), str(REPO_ROOT / "tests")],
                          env=cli_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert float(out.read_text()) < 1e-4
